//! Services against real supervisors: a `runsvdir` (Debian's runit) and a `dinit` (when
//! `NEXIS_DINIT_BIN` is set or `dinit` is on PATH; skipped otherwise), each started as an
//! ordinary process on a temporary root. The same two generations go through both:
//!
//! - A: `a` (a long sleep), `b` depends on `a`, `c` exits 1 at once;
//! - B: `a` unchanged, `b` changed, `c` removed, `d` new.

use std::collections::BTreeMap;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nexis_activate::{
    Action, Outcome, ServiceEntry, ServicesReport, apply_services, connect_services,
    install_services, plan_services, write_services,
};
use nexis_config::{Init, Service, Spanned};
use rustix::process::{Pid, Signal};

fn service(command: &str, depends_on: &[&str]) -> Service {
    Service {
        command: Some(Spanned::unspanned(command.to_owned())),
        depends_on: depends_on
            .iter()
            .map(|d| Spanned::unspanned((*d).to_owned()))
            .collect(),
        enable: true,
        ..Service::default()
    }
}

/// `a` takes its argument from the environment: `$NAP` reaches `sh` as it is written,
/// and the supervisor gives it the value.
fn service_a() -> Service {
    let mut a = service("/bin/sh -c \"exec /bin/sleep $NAP\"", &[]);
    a.environment
        .insert(Spanned::unspanned("NAP".into()), "1000".into());
    a
}

fn generation_a() -> BTreeMap<String, Service> {
    BTreeMap::from([
        ("a".to_owned(), service_a()),
        ("b".to_owned(), service("/bin/sleep 1001", &["a"])),
        ("c".to_owned(), service("/bin/sh -c \"exit 1\"", &[])),
    ])
}

fn generation_b() -> BTreeMap<String, Service> {
    BTreeMap::from([
        ("a".to_owned(), service_a()),
        ("b".to_owned(), service("/bin/sleep 1002", &["a"])),
        ("d".to_owned(), service("/bin/sleep 1003", &[])),
    ])
}

/// Writes a generation's services where a toplevel would have them on the root, and
/// returns that folder (physical) and the entries.
fn write(
    root: &Path,
    name: &str,
    services: &BTreeMap<String, Service>,
) -> (PathBuf, BTreeMap<String, ServiceEntry>) {
    let dir = root.join(format!("nexis/store/{name}-nexis-system-test/services"));
    let entries =
        write_services(&dir, services, &|s: &str| s.to_owned()).expect("services are written");
    (dir, entries)
}

/// `(service, action, ok)` of each entry, to compare with what a switch should do.
fn summary(report: &ServicesReport) -> Vec<(String, Action, bool)> {
    report
        .actions
        .iter()
        .map(|a| (a.service.clone(), a.action, a.outcome == Outcome::Ok))
        .collect()
}

fn expect(list: &[(&str, Action, bool)]) -> Vec<(String, Action, bool)> {
    list.iter()
        .map(|(s, a, ok)| ((*s).to_owned(), *a, *ok))
        .collect()
}

fn cmdline(pid: u32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default()
}

fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd.output().expect("the command runs");
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// Waits until `connect` finds the supervisor (it has just been started).
fn connect(backend: Init, root: &Path, services: &Path) -> Box<dyn nexis_activate::Supervisor> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(sup) = connect_services(backend, root, services).expect("connect") {
            return sup;
        }
        assert!(
            Instant::now() < deadline,
            "{backend:?} does not answer on {}",
            root.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A supervisor started as a child in its own process group; stopped with `signal`, then
/// the whole group killed, when dropped.
struct Running {
    child: Child,
    signal: Signal,
    /// Service processes outside the group (dinit gives each its own session).
    strays: Vec<u32>,
}

impl Running {
    fn spawn(cmd: &mut Command, signal: Signal) -> Running {
        let child = cmd
            .process_group(0)
            .stdin(Stdio::null())
            .spawn()
            .expect("the supervisor starts");
        Running {
            child,
            signal,
            strays: Vec::new(),
        }
    }

    fn pid(&self) -> Pid {
        Pid::from_raw(i32::try_from(self.child.id()).expect("a pid")).expect("not 0")
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = rustix::process::kill_process(self.pid(), self.signal);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = rustix::process::kill_process_group(self.pid(), Signal::KILL);
        let _ = self.child.wait();
        for pid in &self.strays {
            if let Some(pid) = i32::try_from(*pid).ok().and_then(Pid::from_raw) {
                let _ = rustix::process::kill_process(pid, Signal::KILL);
            }
        }
    }
}

// ---------------------------------------------------------------------------- runit

fn sv_status(dir: &Path) -> String {
    run(Command::new("sv").arg("status").arg(dir)).1
}

/// The pid `sv status` shows for a running service.
fn sv_pid(dir: &Path) -> Option<u32> {
    let s = sv_status(dir);
    if !s.starts_with("run: ") {
        return None;
    }
    s.split("(pid ").nth(1)?.split(')').next()?.parse().ok()
}

#[test]
fn runit_switch_starts_stops_and_restarts_what_changed() {
    if on_path("runsvdir").is_none() || on_path("sv").is_none() {
        eprintln!("skipping: no runsvdir or sv (install Debian's runit)");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let scan = root.join("run/runit/service");
    let (dir_a, a) = write(root, "aaaa", &generation_a());

    // Installed on a root where nothing runs: the scan directory is filled, and the root
    // still does not count as running runit.
    install_services(Init::Runit, root, &dir_a).unwrap();
    assert!(
        connect_services(Init::Runit, root, &dir_a)
            .unwrap()
            .is_none()
    );
    assert!(scan.join("network/down").is_file() && !scan.join("a/down").exists());
    assert_eq!(
        std::fs::read_link(scan.join("a/run")).unwrap(),
        dir_a.join("runit/a/run")
    );

    let _runsvdir = Running::spawn(
        Command::new("runsvdir")
            .arg(&scan)
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
        // HUP: runsvdir sends TERM to each runsv, which stops its service and exits.
        Signal::HUP,
    );
    let started = Instant::now();
    let mut sup = connect(Init::Runit, root, &dir_a);
    let plan = plan_services(&BTreeMap::new(), &a);
    assert_eq!(plan.start, ["a", "b", "c", "boot"]);
    let report = apply_services(&plan, &mut *sup).unwrap();
    assert_eq!(report.supervisor, "runit");
    assert_eq!(
        summary(&report),
        expect(&[
            ("a", Action::Start, true),
            ("b", Action::Start, true),
            ("c", Action::Start, false),
            ("boot", Action::Start, true),
        ]),
        "{report:#?}"
    );
    assert!(report.failed());
    // Seen after the settle time, or by runsv's status while starting.
    let failure = report.failures().next().unwrap().to_string();
    assert!(
        failure.starts_with("start c: failed: stopped right after starting"),
        "{failure}"
    );
    eprintln!("runit: {failure}");
    assert!(
        sv_status(&scan.join("a")).starts_with("run: "),
        "{}",
        sv_status(&scan.join("a"))
    );
    assert!(sv_status(&scan.join("b")).starts_with("run: "));
    let a_pid = sv_pid(&scan.join("a")).unwrap();
    assert_eq!(cmdline(a_pid), "/bin/sleep 1000 ");
    let b_pid = sv_pid(&scan.join("b")).unwrap();
    assert!(cmdline(b_pid).contains("sleep 1001"));
    eprintln!("runit: generation A applied in {:?}", started.elapsed());

    let started = Instant::now();
    let (dir_b, b) = write(root, "bbbb", &generation_b());
    let mut sup = connect(Init::Runit, root, &dir_b);
    let plan = plan_services(&a, &b);
    let report = apply_services(&plan, &mut *sup).unwrap();
    assert_eq!(
        summary(&report),
        expect(&[
            ("c", Action::Stop, true),
            ("b", Action::Restart, true),
            ("boot", Action::Restart, true),
            ("d", Action::Start, true),
            ("c", Action::Remove, true),
        ]),
        "{report:#?}"
    );
    assert!(!report.failed());
    eprintln!(
        "runit: generation B applied in {:?} (d waited for runsvdir's rescan)",
        started.elapsed()
    );
    assert_eq!(
        sv_pid(&scan.join("a")),
        Some(a_pid),
        "a is unchanged: not restarted"
    );
    let new_b = sv_pid(&scan.join("b")).unwrap();
    assert_ne!(new_b, b_pid);
    assert!(cmdline(new_b).contains("sleep 1002"), "{}", cmdline(new_b));
    let d = sv_pid(&scan.join("d")).unwrap();
    assert!(cmdline(d).contains("sleep 1003"));
    assert!(!scan.join("c").exists(), "c's folder is gone");
    assert_eq!(
        std::fs::read_link(scan.join("b/run")).unwrap(),
        dir_b.join("runit/b/run")
    );
}

// ---------------------------------------------------------------------------- dinit

/// `dinit` from `NEXIS_DINIT_BIN` or PATH.
fn dinit_bin() -> Option<PathBuf> {
    std::env::var_os("NEXIS_DINIT_BIN")
        .map(PathBuf::from)
        .or_else(|| on_path("dinit"))
}

/// `NAME` beside `dinit`, or on PATH.
fn dinit_tool(dinit: &Path, name: &str) -> Option<PathBuf> {
    let beside = dinit.with_file_name(name);
    if beside.is_file() {
        Some(beside)
    } else {
        on_path(name)
    }
}

struct Dinitctl {
    bin: PathBuf,
    socket: PathBuf,
}

impl Dinitctl {
    fn run(&self, args: &[&str]) -> String {
        run(Command::new(&self.bin)
            .arg("--socket-path")
            .arg(&self.socket)
            .args(args))
        .1
    }

    /// The state line and pid of `dinitctl status`.
    fn status(&self, svc: &str) -> (String, Option<u32>) {
        let out = self.run(&["status", svc]);
        let field = |f: &str| {
            out.lines()
                .find_map(|l| l.trim().strip_prefix(f))
                .map(|v| v.trim().to_owned())
        };
        (
            field("State:").unwrap_or_else(|| out.clone()),
            field("Process ID:").and_then(|p| p.parse().ok()),
        )
    }
}

/// Every generated description passes `dinit-check`.
fn dinit_check(check: &Path, dir: &Path, entries: &BTreeMap<String, ServiceEntry>) {
    let (ok, out) = run(Command::new(check)
        .arg("--services-dir")
        .arg(dir.join("dinit"))
        .args(entries.keys()));
    assert!(ok, "dinit-check: {out}");
}

#[test]
fn dinit_switch_starts_stops_and_restarts_what_changed() {
    let Some(dinit) = dinit_bin() else {
        eprintln!("skipping: no dinit (set NEXIS_DINIT_BIN)");
        return;
    };
    let ctl = Dinitctl {
        bin: dinit_tool(&dinit, "dinitctl").expect("dinitctl beside dinit or on PATH"),
        socket: PathBuf::new(),
    };
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let ctl = Dinitctl {
        socket: root.join("run/dinitctl"),
        ..ctl
    };
    let (dir_a, a) = write(root, "aaaa", &generation_a());
    let (dir_b, b) = write(root, "bbbb", &generation_b());
    if let Some(check) = dinit_tool(&dinit, "dinit-check") {
        dinit_check(&check, &dir_a, &a);
        dinit_check(&check, &dir_b, &b);
    } else {
        eprintln!("no dinit-check beside dinit or on PATH: descriptions not checked");
    }

    install_services(Init::Dinit, root, &dir_a).unwrap();
    assert!(
        connect_services(Init::Dinit, root, &dir_a)
            .unwrap()
            .is_none()
    );
    let link = root.join("run/nexis/dinit.d");
    assert_eq!(std::fs::read_link(&link).unwrap(), dir_a.join("dinit"));

    // An ordinary process (container mode: no system management), reading the services
    // link, started with a placeholder so that the switch starts everything else.
    let mut running = Running::spawn(
        Command::new(&dinit)
            .args(["--container", "--quiet", "--log-file"])
            .arg(root.join("dinit.log"))
            .arg("--services-dir")
            .arg(&link)
            .arg("--socket-path")
            .arg(&ctl.socket)
            .args(["--service", "early-fs"]),
        // TERM: dinit stops every service and exits.
        Signal::TERM,
    );
    let started = Instant::now();
    let mut sup = connect(Init::Dinit, root, &dir_a);
    let plan = plan_services(&BTreeMap::new(), &a);
    let report = apply_services(&plan, &mut *sup).unwrap();
    for svc in ["a", "b"] {
        running.strays.extend(ctl.status(svc).1);
    }
    assert_eq!(report.supervisor, "dinit");
    assert_eq!(
        summary(&report),
        expect(&[
            ("a", Action::Start, true),
            ("b", Action::Start, true),
            ("c", Action::Start, false),
            ("boot", Action::Start, true),
        ]),
        "{report:#?}"
    );
    // Usually dinit calls it started (its exec worked), and the check finds it stopped;
    // should it end before dinit has seen the exec work, `dinitctl start` fails itself.
    let failure = report.failures().next().unwrap().to_string();
    assert!(
        failure.starts_with("start c: failed: stopped right after starting")
            || failure.starts_with("start c: failed: dinitctl start c:"),
        "{failure}"
    );
    eprintln!("dinit: {failure}");
    let (state, a_pid) = ctl.status("a");
    assert_eq!(state, "STARTED");
    assert_eq!(cmdline(a_pid.unwrap()), "/bin/sleep 1000 ");
    let (state, b_pid) = ctl.status("b");
    assert_eq!(state, "STARTED");
    assert!(cmdline(b_pid.unwrap()).contains("sleep 1001"));
    eprintln!("dinit: generation A applied in {:?}", started.elapsed());

    let started = Instant::now();
    let mut sup = connect(Init::Dinit, root, &dir_b);
    let report = apply_services(&plan_services(&a, &b), &mut *sup).unwrap();
    for svc in ["b", "d"] {
        running.strays.extend(ctl.status(svc).1);
    }
    assert_eq!(
        summary(&report),
        expect(&[
            ("c", Action::Stop, true),
            ("b", Action::Restart, true),
            ("boot", Action::Restart, true),
            ("d", Action::Start, true),
            ("c", Action::Remove, true),
        ]),
        "{report:#?}\n{}\n{}",
        ctl.run(&["list"]),
        ctl.run(&["status", "c"]),
    );
    eprintln!("dinit: generation B applied in {:?}", started.elapsed());
    assert_eq!(std::fs::read_link(&link).unwrap(), dir_b.join("dinit"));
    assert_eq!(
        ctl.status("a"),
        ("STARTED".to_owned(), a_pid),
        "a is unchanged: not restarted"
    );
    let (state, new_b) = ctl.status("b");
    assert_eq!(state, "STARTED");
    assert_ne!(new_b, b_pid);
    assert!(cmdline(new_b.unwrap()).contains("sleep 1002"));
    let (state, d) = ctl.status("d");
    assert_eq!(state, "STARTED");
    assert!(cmdline(d.unwrap()).contains("sleep 1003"));
    assert_eq!(ctl.status("boot").0, "STARTED");
    let list = ctl.run(&["list"]);
    assert!(
        !list
            .lines()
            .any(|l| l.ends_with("] c") || l.contains("] c ")),
        "c is unloaded: {list}"
    );
}

#[test]
fn nothing_runs_on_a_fresh_root() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, _) = write(tmp.path(), "aaaa", &generation_a());
    assert!(
        connect_services(Init::Dinit, tmp.path(), &dir)
            .unwrap()
            .is_none()
    );
    assert!(
        connect_services(Init::Runit, tmp.path(), &dir)
            .unwrap()
            .is_none()
    );
    // A socket file left by a dinit that is gone does not count.
    std::fs::create_dir_all(tmp.path().join("run")).unwrap();
    drop(std::os::unix::net::UnixListener::bind(tmp.path().join("run/dinitctl")).unwrap());
    assert!(
        connect_services(Init::Dinit, tmp.path(), &dir)
            .unwrap()
            .is_none()
    );
}

#[test]
fn runit_install_mirrors_the_generation() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let scan = root.join("run/runit/service");
    let (dir_a, _) = write(root, "aaaa", &generation_a());
    install_services(Init::Runit, root, &dir_a).unwrap();
    let mut b = generation_b();
    b.get_mut("a").unwrap().enable = false;
    let (dir_b, _) = write(root, "bbbb", &b);
    install_services(Init::Runit, root, &dir_b).unwrap();
    let mut names: Vec<String> = std::fs::read_dir(&scan)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["a", "b", "boot", "d", "early-fs", "network", "syslog"]
    );
    assert!(scan.join("a/down").is_file(), "disabled now");
    assert!(
        std::fs::symlink_metadata(scan.join("a")).unwrap().is_dir(),
        "a real folder"
    );
    assert_eq!(
        std::fs::read_link(scan.join("d/run")).unwrap(),
        dir_b.join("runit/d/run")
    );
    assert_eq!(
        std::fs::read_link(scan.join("d/finish")).unwrap(),
        dir_b.join("runit/d/finish")
    );
}
