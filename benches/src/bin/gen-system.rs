//! Write the generated target-size configuration to a folder, for the end-to-end build
//! benchmark (`benches/build-noop.sh`).
//!
//! `gen-system DIR [trivial|autotools]`: `DIR/nexis.toml`, `DIR/modules/`, `DIR/pkgs/`;
//! with trivial recipes also `DIR/system.nix`, the same packages and dependencies as Nix
//! derivations (for the side-by-side run through Nix 2.8).

#![allow(clippy::print_stderr)]

use std::path::Path;
use std::process::ExitCode;

use nexis_benches::{Recipes, Shape, large_system_with};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (dir, recipes) = match args.as_slice() {
        [dir] => (dir, Recipes::Trivial),
        [dir, kind] if kind == "trivial" => (dir, Recipes::Trivial),
        [dir, kind] if kind == "autotools" => (dir, Recipes::Autotools),
        _ => {
            eprintln!("usage: gen-system DIR [trivial|autotools]");
            return ExitCode::FAILURE;
        }
    };
    let loader = large_system_with(Shape::TARGET, recipes);
    for (path, text) in loader.files() {
        let rel = path.strip_prefix("/bench").expect("generated under /bench");
        let dest = Path::new(dir).join(rel);
        let written = dest
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| std::fs::write(&dest, text));
        if let Err(e) = written {
            eprintln!("{}: {e}", dest.display());
            return ExitCode::FAILURE;
        }
    }
    if recipes == Recipes::Trivial {
        let evaluation = match nexis_config::evaluate(&loader, nexis_benches::ROOT.as_ref()) {
            Ok(e) => e,
            Err(e) => {
                eprintln!("{}", e.render(false));
                return ExitCode::FAILURE;
            }
        };
        let nix = nix_expression(&evaluation.packages);
        if let Err(e) = std::fs::write(Path::new(dir).join("system.nix"), nix) {
            eprintln!("system.nix: {e}");
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}

/// The packages as Nix derivations: each a `/bin/sh` builder writing one file with its
/// dependencies' paths (as the trivial recipes do with `$PATH`); the value is the list of
/// the packages the system asks for.
fn nix_expression(packages: &nexis_config::PackageGraph) -> String {
    use std::fmt::Write as _;
    let attr = |id: &str| id.replace(['#', '.', '/'], "_");
    let mut out = String::from(
        "let\n  mk = name: deps: derivation {\n    inherit name;\n    system = \"x86_64-linux\";\n    \
         builder = \"/bin/sh\";\n    args = [ \"-c\" \"/bin/mkdir -p $out/share; echo ${name} ${toString deps} > $out/share/${name}\" ];\n  };\n  \
         p = rec {\n",
    );
    for pkg in packages.iter() {
        let mut deps: Vec<String> = packages
            .deps(&pkg.id, nexis_config::DepKind::Build)
            .into_iter()
            .chain(packages.deps(&pkg.id, nexis_config::DepKind::Runtime))
            .map(attr)
            .collect();
        deps.sort();
        let _ = writeln!(
            out,
            "    {} = mk \"{}-{}\" [ {} ];",
            attr(&pkg.id),
            pkg.name,
            pkg.version,
            deps.join(" ")
        );
    }
    out.push_str("  };\nin [\n");
    for id in packages.roots.keys() {
        let _ = writeln!(out, "  p.{}", attr(id));
    }
    out.push_str("]\n");
    out
}
