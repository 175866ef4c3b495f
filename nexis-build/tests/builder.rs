//! `nexis_build::build` of single derivations: fixed-output builds (network, hash), and
//! `check`.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read as _, Write as _};

use nexis_build::{BuildError, BuildSettings, Derivation, build, check};
use nexis_store::Store;

fn drv(name: &str, script: &str) -> Derivation {
    Derivation {
        name: name.into(),
        version: "1".into(),
        system: nexis_build::system(),
        builder: "/bin/sh".into(),
        args: vec!["-ec".into(), script.into()],
        env: BTreeMap::new(),
        sources: BTreeSet::new(),
        deps: BTreeSet::new(),
        runtime_deps: BTreeSet::new(),
        extra_sandbox_paths: nexis_build::host_tool_paths()
            .into_iter()
            .map(|(p, _)| p.display().to_string())
            .collect(),
        fixed_output: None,
    }
}

/// The SRI tree hash of a tree holding `f` with `text`.
fn tree_hash_of(text: &str) -> String {
    use base64::Engine as _;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("f"), text).unwrap();
    let hash = nexis_store::hash_path(dir.path()).unwrap().hash;
    format!(
        "blake3-{}",
        base64::engine::general_purpose::STANDARD.encode(hash)
    )
}

#[test]
fn a_fixed_output_build_has_the_network_and_must_match_its_hash() {
    let root = tempfile::tempdir().unwrap();
    let store = Store::open(root.path()).unwrap();
    // A server on the host's loopback: a fixed-output build reaches it.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut buf = [0u8; 64];
        let _ = conn.read(&mut buf);
        conn.write_all(b"payload\n").unwrap();
    });
    let script = format!(
        "python3 -c 'import socket; s = socket.create_connection((\"127.0.0.1\", {port})); \
         s.send(b\"get\"); print(s.recv(64).decode(), end=\"\")' > $out/f"
    );
    let mut fetched = drv("fetched", &script);
    fetched.fixed_output = Some(tree_hash_of("payload\n"));
    let built = build(&store, &fetched, &BuildSettings::default()).unwrap();
    server.join().unwrap();
    assert!(!built.already_valid);
    let out = store.physical(&built.path);
    assert_eq!(std::fs::read_to_string(out.join("f")).unwrap(), "payload\n");

    // Another content than the hash says: refused, nothing registered.
    let mut wrong = drv("wrong", "echo other > $out/f");
    wrong.fixed_output = Some(tree_hash_of("payload\n"));
    let err = build(&store, &wrong, &BuildSettings::default()).unwrap_err();
    assert!(matches!(err, BuildError::HashMismatch { .. }), "{err}");
    let path = wrong.output_path().unwrap();
    assert!(!store.with_db(|db| db.is_valid(&path)).unwrap());
    assert!(!store.physical(&path).exists());

    // A build that is not fixed-output has no network.
    let offline = drv(
        "offline",
        "python3 -c 'import socket; socket.create_connection((\"127.0.0.1\", 9), timeout=2)' 2> $out/err || echo refused > $out/f",
    );
    let built = build(&store, &offline, &BuildSettings::default()).unwrap();
    let out = store.physical(&built.path);
    assert_eq!(std::fs::read_to_string(out.join("f")).unwrap(), "refused\n");
}

#[test]
fn check_rebuilds_and_compares() {
    let root = tempfile::tempdir().unwrap();
    let store = Store::open(root.path()).unwrap();
    let same = drv("same", "echo same > $out/f; mkdir $out/d; ln -s f $out/d/l");
    let err = check(&store, &same, &BuildSettings::default()).unwrap_err();
    assert!(matches!(err, BuildError::NotBuilt { .. }), "{err}");
    build(&store, &same, &BuildSettings::default()).unwrap();
    let report = check(&store, &same, &BuildSettings::default()).unwrap();
    assert!(
        report.identical && report.differences.is_empty(),
        "{report:?}"
    );

    let random = drv(
        "random",
        "echo same > $out/same; head -c 16 /dev/urandom > $out/noise",
    );
    build(&store, &random, &BuildSettings::default()).unwrap();
    let report = check(&store, &random, &BuildSettings::default()).unwrap();
    assert!(!report.identical);
    assert!(
        report.differences.contains(&"noise".to_owned()),
        "{report:?}"
    );
    assert!(
        !report.differences.contains(&"same".to_owned()),
        "{report:?}"
    );
}

#[test]
fn an_output_naming_the_build_folder_is_refused_and_registers_nothing() {
    let root = tempfile::tempdir().unwrap();
    let store = Store::open(root.path()).unwrap();
    let leaky = drv(
        "leaky",
        "mkdir -p $out/lib/pkgconfig; echo \"prefix=$TMPDIR/src/inst\" > $out/lib/pkgconfig/x.pc",
    );
    let err = build(&store, &leaky, &BuildSettings::default()).unwrap_err();
    assert!(
        matches!(&err, BuildError::BuildDirReference { file, .. } if file == "lib/pkgconfig/x.pc"),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("names the build folder (/build/…)"),
        "{err}"
    );
    let path = leaky.output_path().unwrap();
    assert!(!store.with_db(|db| db.is_valid(&path)).unwrap());
    assert!(!store.physical(&path).exists());
}
