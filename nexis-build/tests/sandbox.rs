//! The build sandbox, tested with real namespaces: each test is a build (the host's
//! `/bin/sh` or `/bin/bash`, bound with `/usr`, `/bin`, `/lib`, `/lib64`) that tries
//! something the sandbox must prevent, next to a control that shows the attempt itself
//! works where it is allowed.

use std::fs::{self, File};
use std::io::{self, Read};
use std::net::TcpListener;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use nexis_build::{SandboxError, SandboxSpec, host_tool_paths, run};

const STORE: &str = "/nexis/store";
const OUT: &str = "/nexis/store/0000000000000000000000000000000a-out";

/// A build's host side: a build directory, an output directory, a log file.
struct Fixture {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    build: PathBuf,
    out: PathBuf,
    log: PathBuf,
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().expect("a temporary directory");
    let root = tmp.path().to_owned();
    let build = root.join("build");
    let out = root.join("out");
    fs::create_dir(&build).expect("create the build directory");
    fs::create_dir(&out).expect("create the output directory");
    Fixture {
        _tmp: tmp,
        log: root.join("log"),
        root,
        build,
        out,
    }
}

impl Fixture {
    /// A spec running `program -c script` with a Nix-like environment.
    fn spec_with(&self, program: &str, script: &str) -> SandboxSpec {
        let log = File::create(&self.log).expect("create the log");
        let mut spec = SandboxSpec::new(program, &self.build, log);
        spec.args = vec!["-c".into(), script.into()];
        spec.env = vec![
            ("PATH".into(), "/usr/bin:/bin".into()),
            ("HOME".into(), "/homeless-shelter".into()),
            ("TMPDIR".into(), "/build".into()),
            ("out".into(), OUT.into()),
        ];
        spec.store_dir = STORE.into();
        spec.outputs = vec![(self.out.clone(), OUT.into())];
        spec.extra_paths = host_tool_paths();
        spec.timeout = Some(Duration::from_mins(1));
        spec
    }

    fn spec(&self, script: &str) -> SandboxSpec {
        self.spec_with("/bin/sh", script)
    }

    /// Runs a spec that must succeed; returns its log.
    fn run_ok(&self, spec: &SandboxSpec) -> String {
        let outcome = run(spec).expect("the sandbox runs");
        let log = self.log();
        assert!(outcome.success(), "the build failed: {outcome:?}\n{log}");
        log
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.log).expect("read the log")
    }

    fn out(&self, name: &str) -> String {
        fs::read_to_string(self.out.join(name))
            .unwrap_or_else(|e| panic!("read $out/{name}: {e}\nlog:\n{}", self.log()))
    }
}

/// A server on the test's 127.0.0.1 and a bash builder connecting to it.
fn connect(network: bool) -> (String, bool) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("listen on 127.0.0.1");
    listener
        .set_nonblocking(true)
        .expect("non-blocking listener");
    let port = listener.local_addr().expect("the port").port();
    let f = fixture();
    let script = format!(
        "if exec 3<>/dev/tcp/127.0.0.1/{port}; then echo connected >$out/net; \
         else echo failed >$out/net; fi"
    );
    let mut spec = f.spec_with("/bin/bash", &script);
    spec.network = network;
    f.run_ok(&spec);
    let accepted = match listener.accept() {
        Ok(_) => true,
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => false,
        Err(e) => panic!("accept: {e}"),
    };
    (format!("{}{}", f.out("net"), f.log()), accepted)
}

#[test]
fn network_is_cut_off_unless_asked_for() {
    let (text, accepted) = connect(false);
    assert!(text.starts_with("failed"), "{text}");
    // Refused by the sandbox's own loopback, which is up (unreachable if it were down).
    assert!(text.contains("Connection refused"), "{text}");
    assert!(!accepted, "the test's server saw a connection");

    let (text, accepted) = connect(true);
    assert!(text.starts_with("connected"), "{text}");
    assert!(accepted, "the server saw no connection with network = true");
}

#[test]
fn host_files_that_are_not_bound_are_invisible() {
    // Under /root when we may write there (as in CI), else in a temporary directory:
    // neither is bound into the sandbox.
    let secret_dir = tempfile::tempdir_in("/root")
        .or_else(|_| tempfile::tempdir())
        .expect("a directory for the secret");
    let secret = secret_dir.path().join("secret");
    fs::write(&secret, "the secret\n").expect("write the secret");
    let script = format!(
        "if test -e {0}; then echo visible; else echo absent; fi >$out/seen; \
         cat {0} >>$out/seen 2>&1; ls / >$out/root",
        secret.display()
    );
    let f = fixture();
    f.run_ok(&f.spec(&script));
    let seen = f.out("seen");
    assert!(seen.starts_with("absent\n"), "{seen}");
    assert!(!seen.contains("the secret"), "{seen}");
    let root: Vec<String> = f.out("root").lines().map(str::to_owned).collect();
    for name in [
        "root", "home", "var", "work", "old_root", "oldroot", "newroot", "sys",
    ] {
        assert!(
            !root.iter().any(|n| n == name),
            "/{name} is visible: {root:?}"
        );
    }

    // Control: the same script sees the file once its directory is bound.
    let f = fixture();
    let mut spec = f.spec(&script);
    spec.extra_paths
        .push((secret_dir.path().to_owned(), secret_dir.path().to_owned()));
    f.run_ok(&spec);
    assert_eq!(f.out("seen"), "visible\nthe secret\n");
}

#[test]
fn only_the_outputs_and_build_dir_are_writable() {
    let f = fixture();
    let input = f.root.join("input");
    fs::create_dir(&input).expect("create the input");
    fs::write(input.join("file"), "input\n").expect("write the input");
    let input_inside = "/nexis/store/0000000000000000000000000000000b-input";
    let script = format!(
        r#"
        try() {{ if eval "$1" 2>/dev/null; then echo "wrote: $1"; else echo "refused: $1"; fi; }}
        try 'echo x >{STORE}/other'
        try 'mkdir {STORE}/otherdir'
        try 'echo x >/x'
        try 'echo x >/etc/passwd'
        try 'echo x >>{input_inside}/file'
        try 'echo x >{input_inside}/new'
        try 'rm {input_inside}/file'
        try 'mkdir /homeless-shelter'
        try 'echo x >/usr/nexis-sandbox-test'
        try 'echo out >$out/ok'
        try 'echo build >/build/ok'
        try 'echo tmp >/tmp/ok'
        "#
    );
    let mut spec = f.spec(&script);
    spec.inputs = vec![(input.clone(), input_inside.into())];
    let log = f.run_ok(&spec);
    let wrote: Vec<&str> = log.lines().filter(|l| l.starts_with("wrote: ")).collect();
    assert_eq!(
        wrote,
        [
            "wrote: echo out >$out/ok",
            "wrote: echo build >/build/ok",
            "wrote: echo tmp >/tmp/ok"
        ],
        "{log}"
    );
    assert_eq!(
        log.lines().filter(|l| l.starts_with("refused: ")).count(),
        9,
        "{log}"
    );
    assert_eq!(f.out("ok"), "out\n");
    assert_eq!(
        fs::read_to_string(f.build.join("ok")).expect("/build/ok"),
        "build\n"
    );
    assert_eq!(
        fs::read_to_string(input.join("file")).expect("input"),
        "input\n"
    );
    assert!(!input.join("new").exists());
    assert!(!Path::new("/usr/nexis-sandbox-test").exists());
}

#[test]
fn host_processes_are_invisible() {
    let f = fixture();
    let script = "ls /proc | grep -c '^[0-9]' >$out/count; \
                  for c in /proc/[0-9]*/cmdline; do tr '\\0' ' ' <$c; echo; done >$out/cmdlines";
    f.run_ok(&f.spec(script));
    let count: usize = f.out("count").trim().parse().expect("a count");
    // init, sh, ls, grep (and perhaps a subshell).
    assert!((2..=6).contains(&count), "{count} processes visible");
    let cmdlines = f.out("cmdlines");
    // Control: the builder sees itself.
    assert!(cmdlines.contains("/bin/sh -c ls /proc"), "{cmdlines}");
    // PID 1 is the sandbox's init, not a copy of the test's command line.
    assert!(cmdlines.starts_with("nexis-sandbox-init "), "{cmdlines}");
    let me = std::env::current_exe().expect("the test binary");
    let me = me.to_string_lossy();
    assert!(
        !cmdlines.contains(me.as_ref()),
        "the test process is visible:\n{cmdlines}"
    );
}

#[test]
fn setuid_and_setgid_bits_cannot_be_set() {
    let f = fixture();
    let script = r#"
        touch $out/x $out/y $out/z
        chmod u+s $out/x && echo "chmod u+s: ok" || echo "chmod u+s: refused"
        chmod 2755 $out/y && echo "chmod 2755: ok" || echo "chmod 2755: refused"
        chmod 755 $out/z && echo "chmod 755: ok" || echo "chmod 755: refused"
        "#;
    let log = f.run_ok(&f.spec(script));
    assert!(log.contains("chmod u+s: refused"), "{log}");
    assert!(log.contains("chmod 2755: refused"), "{log}");
    // Control: a plain chmod works.
    assert!(log.contains("chmod 755: ok"), "{log}");
    for name in ["x", "y"] {
        let mode = fs::metadata(f.out.join(name)).expect("the file").mode();
        assert_eq!(mode & 0o6000, 0, "$out/{name} has mode {mode:o}");
    }
    let mode = fs::metadata(f.out.join("z")).expect("the file").mode();
    assert_eq!(mode & 0o777, 0o755);
}

/// `setxattr(2)` through perl's `syscall` (x86-64's number), printing the result.
#[cfg(target_arch = "x86_64")]
const SETXATTR: &str = r#"perl -e 'my ($p, $n, $v) = ($ARGV[0], "user.nexis", "v"); $r = syscall(188, $p, $n, $v, 1, 0); print "setxattr: ", ($r == 0 ? "ok" : "$!"), "\n"'"#;

#[cfg(target_arch = "x86_64")]
#[test]
fn extended_attributes_cannot_be_set() {
    let f = fixture();
    let log = f.run_ok(&f.spec(&format!("touch $out/x; {SETXATTR} $out/x")));
    assert_eq!(log, "setxattr: Operation not supported\n");
    // Control: the same call succeeds on the host, on the same file system.
    let output = Command::new("/bin/sh")
        .args(["-c", &format!("{SETXATTR} \"$1\""), "sh"])
        .arg(f.out.join("x"))
        .output()
        .expect("run perl on the host");
    assert_eq!(String::from_utf8_lossy(&output.stdout), "setxattr: ok\n");
}

#[test]
fn device_nodes_cannot_be_created() {
    let f = fixture();
    let script = r#"
        mknod $out/null c 1 3 && echo "mknod: ok" || echo "mknod: refused"
        mkfifo $out/fifo && echo "mkfifo: ok" || echo "mkfifo: refused"
        echo discarded >/dev/null && echo "/dev/null: ok"
        head -c 4 /dev/urandom | wc -c
        "#;
    let log = f.run_ok(&f.spec(script));
    assert!(log.contains("mknod: refused"), "{log}");
    assert!(!f.out.join("null").exists());
    // Controls: mknod itself works for a FIFO, and the bound devices work.
    assert!(log.contains("mkfifo: ok"), "{log}");
    assert!(log.contains("/dev/null: ok"), "{log}");
    assert!(log.lines().any(|l| l.trim() == "4"), "{log}");
}

/// The processes of the host whose command line contains `marker`.
fn processes_with(marker: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in fs::read_dir("/proc").expect("read /proc").flatten() {
        let Ok(cmdline) = fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(marker) {
            found.push(format!(
                "{}: {cmdline}",
                entry.file_name().to_string_lossy()
            ));
        }
    }
    found
}

#[test]
fn no_process_survives_the_build() {
    let f = fixture();
    let marker = format!("nexis-sandbox-marker-{}", std::process::id());
    let script = format!(
        r"
        sh -c 'sleep 1000; true' {marker}-bg &
        setsid sh -c 'sleep 1000; true' {marker}-setsid &
        nohup sh -c 'sleep 1000; true' {marker}-nohup >/dev/null 2>&1 &
        sleep 0.2
        grep -l {marker} /proc/[0-9]*/cmdline | wc -l >$out/running
        "
    );
    let started = Instant::now();
    f.run_ok(&f.spec(&script));
    assert!(started.elapsed() < Duration::from_secs(30));
    // Control: they were running in the sandbox (the grep matches itself too).
    let running: usize = f.out("running").trim().parse().expect("a count");
    assert!(running >= 3, "only {running} marked processes ran");
    let left = processes_with(&marker);
    assert!(left.is_empty(), "processes outlived the build: {left:?}");
}

#[test]
fn environment_hostname_user_and_directory_are_the_sandboxs() {
    let f = fixture();
    let mut spec = f.spec("");
    spec.program = "/usr/bin/env".into();
    spec.args = Vec::new();
    spec.env = vec![
        ("PATH".into(), "/usr/bin:/bin".into()),
        ("out".into(), OUT.into()),
        ("NEXIS_ODD".into(), "a b\nc".into()),
    ];
    let log = f.run_ok(&spec);
    assert_eq!(
        log,
        format!("PATH=/usr/bin:/bin\nout={OUT}\nNEXIS_ODD=a b\nc\n")
    );

    let f = fixture();
    let mut spec = f.spec(
        "cat /proc/sys/kernel/hostname; id -u; id -g; id -un; pwd; echo $HOME; \
         test -e $HOME && echo home-exists; true",
    );
    spec.hostname = "nexis-builder".into();
    let log = f.run_ok(&spec);
    assert_eq!(
        log,
        "nexis-builder\n1000\n100\nnixbld\n/build\n/homeless-shelter\n"
    );
}

#[test]
fn a_timeout_kills_the_build() {
    let f = fixture();
    let mut spec = f.spec("echo started; sleep 1000");
    spec.timeout = Some(Duration::from_millis(500));
    let started = Instant::now();
    let err = run(&spec).expect_err("the build must time out");
    let elapsed = started.elapsed();
    assert!(matches!(err, SandboxError::Timeout { .. }), "{err:?}");
    assert_eq!(err.to_string(), "the build timed out after 500 ms");
    assert!(elapsed >= Duration::from_millis(500), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");
    assert_eq!(f.log(), "started\n");
}

#[test]
fn a_missing_program_is_an_error_naming_it() {
    let f = fixture();
    let mut spec = f.spec("");
    spec.program = "/nexis/store/0000000000000000000000000000000c-missing/bin/build".into();
    let err = run(&spec).expect_err("the program does not exist");
    assert!(matches!(err, SandboxError::Exec { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "executing the builder /nexis/store/0000000000000000000000000000000c-missing/bin/build \
         in the sandbox"
    );
    let source = std::error::Error::source(&err)
        .expect("a cause")
        .to_string();
    assert!(source.contains("No such file or directory"), "{source}");
}

#[test]
fn a_failing_build_reports_its_status() {
    let f = fixture();
    let outcome = run(&f.spec("exit 3")).expect("the sandbox runs");
    assert_eq!(outcome.status.code(), Some(3));
    let outcome = run(&f.spec("kill -9 $$")).expect("the sandbox runs");
    assert_eq!(outcome.status.signal(), Some(9));
}

#[test]
fn bad_paths_are_refused_before_anything_runs() {
    let f = fixture();
    let mut spec = f.spec("true");
    spec.inputs = vec![(f.root.clone(), "/nexis/store/../../etc".into())];
    let err = run(&spec).expect_err("`..` is refused");
    assert!(matches!(err, SandboxError::InvalidPath { .. }), "{err}");

    let mut spec = f.spec("true");
    spec.inputs = vec![(f.root.join("missing"), "/nexis/store/x".into())];
    let err = run(&spec).expect_err("a missing input");
    assert!(
        err.to_string()
            .contains(&*f.root.join("missing").to_string_lossy()),
        "{err}"
    );

    let mut spec = f.spec("true");
    spec.extra_paths.push(("/usr".into(), "/proc".into()));
    let err = run(&spec).expect_err("/proc is the sandbox's");
    assert!(matches!(err, SandboxError::InvalidPath { .. }), "{err}");
}

#[test]
fn a_failed_setup_step_is_named() {
    // A mount point inside the read-only /usr cannot be made.
    let f = fixture();
    let mut spec = f.spec("true");
    spec.extra_paths
        .push((f.root.clone(), "/usr/nexis-sandbox-test-dir".into()));
    let err = run(&spec).expect_err("the mount point cannot be created");
    assert!(matches!(err, SandboxError::Setup { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "setting up the sandbox: creating the directory /usr/nexis-sandbox-test-dir"
    );
    let source = std::error::Error::source(&err)
        .expect("a cause")
        .to_string();
    assert!(source.contains("Read-only file system"), "{source}");
}

#[test]
fn inputs_can_be_files_and_symlinks() {
    let f = fixture();
    let file = f.root.join("file-input");
    fs::write(&file, "a file\n").expect("write the input");
    let link = f.root.join("link-input");
    std::os::unix::fs::symlink("0000000000000000000000000000000d-file", &link)
        .expect("make the symlink");
    let mut spec = f.spec(
        "cat /nexis/store/0000000000000000000000000000000d-file; \
         readlink /nexis/store/0000000000000000000000000000000e-link; \
         cat /nexis/store/0000000000000000000000000000000e-link",
    );
    spec.inputs = vec![
        (
            file,
            "/nexis/store/0000000000000000000000000000000d-file".into(),
        ),
        (
            link,
            "/nexis/store/0000000000000000000000000000000e-link".into(),
        ),
    ];
    let log = f.run_ok(&spec);
    assert_eq!(
        log,
        "a file\n0000000000000000000000000000000d-file\na file\n"
    );
}

#[test]
fn sandboxes_run_in_parallel() {
    let threads: Vec<_> = (0..4)
        .map(|i| {
            std::thread::spawn(move || {
                for j in 0..5 {
                    let f = fixture();
                    let log = f.run_ok(&f.spec(&format!("echo {i}-{j}")));
                    assert_eq!(log, format!("{i}-{j}\n"));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("a build thread");
    }
}

const HELPER_DIR: &str = "NEXIS_SANDBOX_HELPER_DIR";

/// The build the unprivileged test runs; in a helper process when the test is root.
fn unprivileged_build(dir: &Path) {
    let f = Fixture {
        _tmp: tempfile::tempdir_in(dir).expect("a scratch directory"),
        root: dir.to_owned(),
        build: dir.join("build"),
        out: dir.join("out"),
        log: dir.join("log"),
    };
    let input = dir.join("input");
    let mut spec = f.spec(
        "id -u >$out/id; cat /nexis/store/0000000000000000000000000000000b-input/file >>$out/id; \
         echo build >/build/ok; echo x >/nexis/store/other || echo refused >>$out/id",
    );
    spec.inputs = vec![(
        input,
        "/nexis/store/0000000000000000000000000000000b-input".into(),
    )];
    f.run_ok(&spec);
}

/// Run by `unprivileged_builds_work` as uid 65534; does nothing on its own.
#[test]
#[ignore = "a helper process of unprivileged_builds_work"]
fn unprivileged_helper() {
    let dir = std::env::var_os(HELPER_DIR).expect("run by unprivileged_builds_work");
    unprivileged_build(Path::new(&dir));
}

fn euid() -> u32 {
    // /proc/self belongs to the effective uid.
    fs::metadata("/proc/self").expect("stat /proc/self").uid()
}

#[test]
fn unprivileged_builds_work() {
    let tmp = tempfile::tempdir().expect("a temporary directory");
    let dir = tmp.path();
    for sub in ["build", "out", "input"] {
        fs::create_dir(dir.join(sub)).expect("create a directory");
    }
    fs::write(dir.join("input/file"), "input\n").expect("write the input");
    let caller = euid();
    let expected_owner = if caller == 0 {
        const NOBODY: u32 = 65534;
        for entry in [".", "build", "out", "input", "input/file"] {
            std::os::unix::fs::chown(dir.join(entry), Some(NOBODY), Some(NOBODY))
                .expect("chown the scratch directories");
        }
        fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).expect("chmod");
        let exe = std::env::current_exe().expect("the test binary");
        let output = Command::new(&exe)
            .uid(NOBODY)
            .gid(NOBODY)
            .args(["--exact", "unprivileged_helper", "--ignored", "--nocapture"])
            .env(HELPER_DIR, dir)
            .output()
            .expect("run the helper");
        let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&output.stderr));
        assert!(
            output.status.success(),
            "the unprivileged helper failed:\n{text}"
        );
        assert!(text.contains("1 passed"), "the helper did not run:\n{text}");
        NOBODY
    } else {
        unprivileged_build(dir);
        caller
    };
    let mut id = String::new();
    File::open(dir.join("out/id"))
        .and_then(|mut f| f.read_to_string(&mut id))
        .expect("read $out/id");
    assert_eq!(id, "1000\ninput\nrefused\n");
    // Files the builder made belong to the caller outside.
    let owner = fs::metadata(dir.join("build/ok")).expect("/build/ok").uid();
    assert_eq!(owner, expected_owner);
}
