//! Derivations: the exact, hashed plan for building one package.
//!
//! A derivation says everything a build may depend on: the builder and its arguments, the
//! environment, the store paths it reads (sources and the outputs of its dependencies),
//! the host paths it may see (`extra-sandbox-paths`), and the expected hash of a
//! fixed-output build. Its hash is blake3 over a canonical serialisation (`docs/derivation.md`),
//! and the output path is derived from that hash: changing anything the build can see
//! changes the output path, and nothing else does (maps are sorted, the configuration's
//! folder never appears: sources are content-addressed store paths).

use std::collections::{BTreeMap, BTreeSet};

use nexis_store::{ContentKind, PathError, StorePath};
use serde::{Deserialize, Serialize};

/// The first line of a derivation's canonical form; a new format gets a new one.
pub const DERIVATION_FORMAT: &str = "nexis-derivation-v1";

/// The name of the (single) output.
pub const OUT: &str = "out";

/// A build plan. Field order is the canonical order; every collection is sorted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Derivation {
    /// The package name.
    pub name: String,
    /// The package version.
    pub version: String,
    /// The platform it builds for, `x86_64-linux`.
    pub system: String,
    /// The program run in the sandbox (an absolute path inside it).
    pub builder: String,
    /// Its arguments.
    pub args: Vec<String>,
    /// The environment, besides what every build gets (`out`, `PATH`, `HOME`, … —
    /// see `docs/derivation.md`) and `NEXIS_BUILD_CORES`, which does not change outputs.
    pub env: BTreeMap<String, String>,
    /// Content-addressed inputs: the source tree, patches.
    pub sources: BTreeSet<StorePath>,
    /// Outputs of the build dependencies (their `bin` goes on `PATH`).
    pub deps: BTreeSet<StorePath>,
    /// Outputs of the run-time dependencies: available to the build, and references of
    /// the output whether or not its files name them.
    pub runtime_deps: BTreeSet<StorePath>,
    /// Host paths bound read-only into the sandbox (`/usr`, …), from the configuration.
    pub extra_sandbox_paths: BTreeSet<String>,
    /// For a fixed-output derivation, the output's expected tree hash (`blake3-…`): it
    /// may use the network, and its output must have exactly this hash.
    pub fixed_output: Option<String>,
}

impl Derivation {
    /// The canonical bytes: the format line, then the derivation as compact JSON with
    /// fields in declaration order and sorted collections.
    pub fn canonical(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(512);
        out.extend_from_slice(DERIVATION_FORMAT.as_bytes());
        out.push(b'\n');
        serde_json::to_writer(&mut out, self).expect("a derivation serialises");
        out
    }

    /// The derivation's hash: blake3 of [`Derivation::canonical`].
    pub fn hash(&self) -> [u8; 32] {
        *blake3::hash(&self.canonical()).as_bytes()
    }

    /// The derivation's hash as 64 hex digits.
    pub fn hash_hex(&self) -> String {
        blake3::Hash::from_bytes(self.hash()).to_hex().to_string()
    }

    /// The store path of the output: `<hash>-NAME-VERSION`, addressed by the derivation.
    pub fn output_path(&self) -> Result<StorePath, PathError> {
        StorePath::new(
            &ContentKind::Output { output: OUT },
            &self.hash(),
            &format!("{}-{}", self.name, self.version),
        )
    }

    /// Every store path the build reads.
    pub fn inputs(&self) -> impl Iterator<Item = &StorePath> {
        self.sources
            .iter()
            .chain(&self.deps)
            .chain(&self.runtime_deps)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Derivation {
        Derivation {
            name: "hello".into(),
            version: "1.0".into(),
            system: "x86_64-linux".into(),
            builder: "/bin/sh".into(),
            args: vec!["-ec".into(), "echo hi > $out".into()],
            env: BTreeMap::from([("B".into(), "2".into()), ("A".into(), "1".into())]),
            sources: BTreeSet::new(),
            deps: BTreeSet::new(),
            runtime_deps: BTreeSet::new(),
            extra_sandbox_paths: BTreeSet::from(["/usr".into()]),
            fixed_output: None,
        }
    }

    #[test]
    fn canonical_form_is_stable_and_sorted() {
        let d = sample();
        let text = String::from_utf8(d.canonical()).unwrap();
        assert_eq!(
            text,
            "nexis-derivation-v1\n{\"name\":\"hello\",\"version\":\"1.0\",\"system\":\"x86_64-linux\",\
             \"builder\":\"/bin/sh\",\"args\":[\"-ec\",\"echo hi > $out\"],\"env\":{\"A\":\"1\",\"B\":\"2\"},\
             \"sources\":[],\"deps\":[],\"runtime-deps\":[],\"extra-sandbox-paths\":[\"/usr\"],\"fixed-output\":null}"
        );
        let back: Derivation = serde_json::from_str(text.split_once('\n').unwrap().1).unwrap();
        assert_eq!(back, d);
    }

    #[test]
    fn every_field_changes_the_output_path() {
        let base = sample().output_path().unwrap();
        assert!(base.to_string().ends_with("-hello-1.0"), "{base}");
        let changes: [fn(&mut Derivation); 7] = [
            |d| d.version = "1.1".into(),
            |d| d.builder = "/usr/bin/sh".into(),
            |d| d.args.push("x".into()),
            |d| {
                d.env.insert("C".into(), "3".into());
            },
            |d| {
                d.extra_sandbox_paths.insert("/lib".into());
            },
            |d| d.fixed_output = Some("blake3-x".into()),
            |d| {
                d.sources.insert(
                    StorePath::parse("/nexis/store/00000000000000000000000000000000-src").unwrap(),
                );
            },
        ];
        for change in changes {
            let mut d = sample();
            change(&mut d);
            assert_ne!(d.output_path().unwrap(), base, "{d:?}");
        }
        // The same derivation, built from maps in another order, is the same path.
        let mut d = sample();
        d.env = BTreeMap::from([("A".into(), "1".into()), ("B".into(), "2".into())]);
        assert_eq!(d.output_path().unwrap(), base);
    }
}
