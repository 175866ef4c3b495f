//! Versions, requirements and package references: parsing never panics, and the order
//! on versions is a total order consistent with equality.
//!
//! The input is split into lines: the first three are versions `a`, `b`, `c`, the fourth
//! a requirement, the fifth a package reference.

#![no_main]

use std::cmp::Ordering;

use libfuzzer_sys::fuzz_target;
use nexis_config::{PackageRef, Version, VersionReq};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.split('\n');
    let mut next = || lines.next().unwrap_or("");
    let (a, b, c, req, pkg) = (next(), next(), next(), next(), next());

    let versions: Vec<Version> = [a, b, c]
        .iter()
        .filter_map(|s| Version::parse(s).ok())
        .collect();
    for v in &versions {
        // Round trip through the text.
        assert_eq!(Version::parse(v.as_str()).as_ref(), Ok(v));
        assert_eq!(v.cmp(v), Ordering::Equal);
    }
    for x in &versions {
        for y in &versions {
            // Antisymmetry, and `Ord` agrees with `Eq`.
            assert_eq!(x.cmp(y), y.cmp(x).reverse(), "{x} vs {y}");
            assert_eq!(x.cmp(y) == Ordering::Equal, x == y, "{x} vs {y}");
            for z in &versions {
                // Transitivity.
                if x <= y && y <= z {
                    assert!(x <= z, "{x} <= {y} <= {z} but not {x} <= {z}");
                }
            }
        }
    }

    if let Ok(r) = req.parse::<VersionReq>() {
        let again: VersionReq = r.as_str().parse().expect("a requirement re-parses");
        for v in &versions {
            assert_eq!(r.matches(v), again.matches(v));
        }
    }

    if let Ok(p) = pkg.parse::<PackageRef>() {
        assert_eq!(p.as_str(), pkg);
        let again: PackageRef = p.as_str().parse().expect("a reference re-parses");
        assert_eq!(again, p);
        if let Some(r) = p.requirement() {
            for v in &versions {
                let _ = r.matches(v);
            }
        }
    }
});
