//! Running `nexis` on a temporary root with a configuration, and reading its outcome;
//! shared by the test binaries that drive whole commands.

// Each test binary uses a part of these, and `pub` is how a test module shares them.
#![allow(dead_code, unreachable_pub)]

use std::path::Path;
use std::process::{Command, Output};

/// `nexis --root ROOT --config CONFIG ARGS…`, run in `cwd` (where `result` links go).
pub fn nexis_in(cwd: &Path, root: &Path, config: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nexis"))
        .current_dir(cwd)
        .arg("--root")
        .arg(root)
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .unwrap()
}

/// [`nexis_in`] the configuration's folder.
pub fn nexis(root: &Path, config: &Path, args: &[&str]) -> Output {
    nexis_in(config.parent().unwrap(), root, config, args)
}

/// The stdout and stderr of a command that must have succeeded.
pub fn ok(o: &Output) -> (String, String) {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    (
        String::from_utf8(o.stdout.clone()).unwrap(),
        String::from_utf8(o.stderr.clone()).unwrap(),
    )
}

/// The stderr of a command that must have failed.
pub fn failed(o: &Output) -> String {
    assert!(
        !o.status.success(),
        "should fail: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    String::from_utf8(o.stderr.clone()).unwrap()
}
