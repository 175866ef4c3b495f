//! The Linux-namespace build sandbox (`docs/sandbox.md`).
//!
//! [`run`] starts the builder of a [`SandboxSpec`] in new user, mount, pid, network
//! (unless `network`), ipc, uts and cgroup namespaces, on a fresh tmpfs root holding only
//! what the spec binds, as uid 1000 / gid 100 without capabilities, under a seccomp
//! filter, and waits for it. The sandbox's PID 1 is a small init of ours that reaps
//! every process and exits when the builder does, which ends the whole pid namespace:
//! nothing started by a build outlives it.
//!
//! The parent (`run`) prepares everything in [`plan`], clones the child, writes its uid
//! and gid maps, and waits on a pidfd with the timeout. The child ([`child`]) only makes
//! async-signal-safe system calls until `execve`.

mod child;
mod error;
mod plan;
mod seccomp;

use std::ffi::{OsString, c_int, c_ulong};
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub use error::{SandboxError, Step};

use child::{Fds, Phase, RECORD_SIZE, Record};
use plan::Plan;

/// The builder's uid inside the sandbox (Nix's choice too).
pub const BUILD_UID: u32 = 1000;
/// The builder's gid inside the sandbox.
pub const BUILD_GID: u32 = 100;
/// Where `build_dir` is mounted inside the sandbox; the builder's working directory.
pub const BUILD_DIR: &str = "/build";

/// What to run in the sandbox and what it may see.
///
/// Paths called *inside* are as the builder sees them; *host* paths are bound to them.
#[derive(Debug)]
pub struct SandboxSpec {
    /// The builder, as a path inside the sandbox (e.g. `/bin/sh`). `argv[0]` is this path.
    pub program: PathBuf,
    pub args: Vec<OsString>,
    /// The whole environment of the builder: nothing is inherited.
    pub env: Vec<(OsString, OsString)>,
    /// The store directory inside the sandbox (e.g. `/nexis/store`); read-only.
    pub store_dir: PathBuf,
    /// (host path, inside path under `store_dir`), bound read-only. A host symlink is
    /// recreated as a symlink.
    pub inputs: Vec<(PathBuf, PathBuf)>,
    /// (host directory, inside path under `store_dir`), bound read-write. The host
    /// directory must exist and be writable by the caller.
    pub outputs: Vec<(PathBuf, PathBuf)>,
    /// A host directory mounted read-write at `/build`, the builder's working directory.
    pub build_dir: PathBuf,
    /// (host path, inside path), bound read-only, e.g. `/usr` → `/usr`. A host path that
    /// is a symlink (`/bin` → `usr/bin`) is recreated as the same symlink inside.
    pub extra_paths: Vec<(PathBuf, PathBuf)>,
    /// `false`: a new network namespace with only `lo`. `true` (fixed-output builds):
    /// the host's network, with its `/etc/resolv.conf`, `/etc/hosts` and
    /// `/etc/services` bound read-only when present.
    pub network: bool,
    pub hostname: String,
    /// The builder's stdout and stderr (stdin is `/dev/null`).
    pub log: File,
    /// Kill the build after this long (from the start of the sandbox).
    pub timeout: Option<Duration>,
}

impl SandboxSpec {
    /// A spec with no inputs, outputs or extra paths, no network, hostname `localhost`,
    /// store directory `/nexis/store` and no timeout.
    pub fn new(program: impl Into<PathBuf>, build_dir: impl Into<PathBuf>, log: File) -> Self {
        SandboxSpec {
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
            store_dir: PathBuf::from("/nexis/store"),
            inputs: Vec::new(),
            outputs: Vec::new(),
            build_dir: build_dir.into(),
            extra_paths: Vec::new(),
            network: false,
            hostname: "localhost".to_owned(),
            log,
            timeout: None,
        }
    }
}

/// How a build that ran ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// The builder's exit status: a code, or the signal that killed it.
    pub status: ExitStatus,
    /// From creating the sandbox to the end of its last process.
    pub wall_time: Duration,
    /// From creating the sandbox to the builder's `execve` (the sandbox's set-up cost).
    pub setup_time: Duration,
}

fn pipe(flags: c_int) -> Result<(OwnedFd, OwnedFd), SandboxError> {
    let mut fds: [RawFd; 2] = [-1; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), flags) } < 0 {
        return Err(SandboxError::Prepare {
            what: "creating a pipe",
            source: io::Error::last_os_error(),
        });
    }
    // SAFETY: pipe2 succeeded: both are open descriptors nobody else owns.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Kills and reaps the sandbox's init unless disarmed, so that no early return leaves
/// a sandbox running or a zombie behind.
struct Child {
    pid: libc::pid_t,
    armed: bool,
}

impl Child {
    fn kill(&self) {
        // SAFETY: `pid` is our child and not reaped yet, so the number is still its.
        unsafe { libc::kill(self.pid, libc::SIGKILL) };
    }

    fn wait(&mut self) -> io::Result<ExitStatus> {
        loop {
            let mut status: c_int = 0;
            // SAFETY: `status` is a valid out pointer.
            let r = unsafe { libc::waitpid(self.pid, &raw mut status, 0) };
            if r == self.pid {
                self.armed = false;
                return Ok(ExitStatus::from_raw(status));
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                self.armed = false;
                return Err(err);
            }
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if self.armed {
            self.kill();
            let _ = self.wait();
        }
    }
}

fn write_proc(pid: libc::pid_t, name: &str, contents: &str) -> Result<(), SandboxError> {
    let path = PathBuf::from(format!("/proc/{pid}/{name}"));
    OpenOptions::new()
        .write(true)
        .open(&path)
        .and_then(|mut f| f.write_all(contents.as_bytes()))
        .map_err(|source| SandboxError::IdMap { path, source })
}

/// Waits until the pidfd is readable (the process ended) or the deadline passes.
/// `Ok(false)`: the deadline passed.
fn wait_readable(pidfd: &OwnedFd, deadline: Option<Instant>) -> io::Result<bool> {
    loop {
        let timeout_ms = match deadline {
            None => -1,
            Some(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Ok(false);
                }
                // Round up, so that the deadline has passed when poll times out.
                c_int::try_from(left.as_nanos().div_ceil(1_000_000)).unwrap_or(c_int::MAX)
            }
        };
        let mut pfd = libc::pollfd {
            fd: pidfd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let r = unsafe { libc::poll(&raw mut pfd, 1, timeout_ms) };
        if r > 0 {
            return Ok(true);
        }
        if r < 0 {
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(err);
            }
        }
    }
}

/// Reads every record the sandbox wrote (the pipe is non-blocking: once the sandbox's
/// processes are gone, all that will come is there).
fn read_records(fd: &OwnedFd) -> Vec<Record> {
    let mut bytes = Vec::new();
    let mut buf = [0u8; 256];
    loop {
        // SAFETY: reading into `buf`, of the given length.
        let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        match usize::try_from(n) {
            Ok(0) => break,
            Ok(n) => bytes.extend_from_slice(&buf[..n]),
            Err(_) if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break, // EAGAIN: nothing more.
        }
    }
    bytes
        .chunks_exact(RECORD_SIZE)
        .map(|c| Record::from_bytes(c.try_into().expect("chunks of RECORD_SIZE")))
        .collect()
}

fn phase_step(phase: Phase) -> Step {
    match phase {
        Phase::WaitForIdMaps => Step::WaitForIdMaps,
        // Exec is reported as `SandboxError::Exec`; it has no step of its own.
        Phase::StartBuilder | Phase::Exec => Step::StartBuilder,
        Phase::RedirectOutput => Step::RedirectOutput,
        Phase::ResetSignals => Step::ResetSignals,
        Phase::CloseFds => Step::CloseFds,
        Phase::NoNewPrivs => Step::NoNewPrivs,
        Phase::Seccomp => Step::Seccomp,
    }
}

/// Where this process's command line is (`arg_start`, `arg_end` of /proc/self/stat),
/// for the sandbox's init to overwrite in its copy: the builder then sees
/// `nexis-sandbox-init` as PID 1, not the command line of the process that started the
/// build.
fn argv_area() -> Option<child::ArgvArea> {
    static AREA: OnceLock<Option<(usize, usize)>> = OnceLock::new();
    let (start, end) = (*AREA.get_or_init(|| {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        // The fields after the command name, which may contain anything but ends with
        // the last ')': field 3 (state) first, so arg_start (48) is the 46th.
        let fields: Vec<&str> = stat[stat.rfind(')')? + 1..].split_whitespace().collect();
        let start: usize = fields.get(45)?.parse().ok()?;
        let end: usize = fields.get(46)?.parse().ok()?;
        (start != 0 && end > start).then_some((start, end))
    }))?;
    Some(child::ArgvArea {
        start: std::ptr::with_exposed_provenance_mut(start),
        len: end - start,
    })
}

/// A copy of `fd` numbered 3 or more, close-on-exec.
fn high_dup(file: &File, what: &'static str) -> Result<OwnedFd, SandboxError> {
    // try_clone uses F_DUPFD_CLOEXEC with a minimum of 3.
    file.try_clone()
        .map(OwnedFd::from)
        .map_err(|source| SandboxError::Prepare { what, source })
}

/// Runs the spec's builder in a new sandbox and waits for it (or for the timeout).
///
/// The caller may be root or not; in both cases the builder runs as uid 1000 in a user
/// namespace, mapped to the caller's effective uid and gid outside.
pub fn run(spec: &SandboxSpec) -> Result<Outcome, SandboxError> {
    let plan = Plan::new(spec)?;
    let log = high_dup(&spec.log, "duplicating the log file")?;
    let null = File::open("/dev/null").map_err(|source| SandboxError::Prepare {
        what: "opening /dev/null",
        source,
    })?;
    let null = high_dup(&null, "duplicating /dev/null")?;
    let (sync_read, sync_write) = pipe(libc::O_CLOEXEC)?;
    let (report_read, report_write) = pipe(libc::O_CLOEXEC | libc::O_NONBLOCK)?;
    let fds = Fds {
        sync_read: sync_read.as_raw_fd(),
        sync_write: sync_write.as_raw_fd(),
        report_read: report_read.as_raw_fd(),
        report_write: report_write.as_raw_fd(),
        log: log.as_raw_fd(),
        null: null.as_raw_fd(),
    };
    // The kernel lets an unprivileged process map only its effective ids.
    // SAFETY: geteuid/getegid cannot fail.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    let uid_map = format!("{BUILD_UID} {uid} 1\n");
    let gid_map = format!("{BUILD_GID} {gid} 1\n");

    let mut flags = libc::CLONE_NEWUSER
        | libc::CLONE_NEWNS
        | libc::CLONE_NEWPID
        | libc::CLONE_NEWIPC
        | libc::CLONE_NEWUTS
        | libc::CLONE_NEWCGROUP
        | libc::CLONE_PIDFD
        | libc::SIGCHLD;
    if !spec.network {
        flags |= libc::CLONE_NEWNET;
    }
    let argv = argv_area();
    let mut pidfd: c_int = -1;
    let started = Instant::now();
    let started_ns = child::monotonic_ns();
    #[allow(clippy::cast_sign_loss)] // the flags are a bit set.
    // SAFETY: a fork-like clone: no CLONE_VM and no new stack, so the child runs on a
    // copy of this address space; it only calls `child::init`, which never returns and
    // keeps to async-signal-safe calls on memory prepared above (see child.rs). With
    // CLONE_PIDFD the pidfd is written to the third argument (parent_tid) on every
    // architecture.
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone,
            flags as c_ulong,
            0 as c_ulong,
            &raw mut pidfd,
            0 as c_ulong,
            0 as c_ulong,
        )
    };
    if pid == 0 {
        child::init(&plan, fds, argv);
    }
    if pid < 0 {
        return Err(SandboxError::Clone {
            source: io::Error::last_os_error(),
        });
    }
    #[allow(clippy::cast_possible_truncation)] // a pid fits in pid_t.
    let mut sandbox = Child {
        pid: pid as libc::pid_t,
        armed: true,
    };
    // SAFETY: clone succeeded with CLONE_PIDFD, so `pidfd` is an open descriptor we own.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
    drop(sync_read);
    drop(report_write);

    write_proc(sandbox.pid, "uid_map", &uid_map)?;
    write_proc(sandbox.pid, "setgroups", "deny")?;
    write_proc(sandbox.pid, "gid_map", &gid_map)?;
    File::from(sync_write)
        .write_all(b"x")
        .map_err(|source| SandboxError::Prepare {
            what: "starting the sandbox's init",
            source,
        })?;

    let deadline = spec.timeout.map(|t| started + t);
    let ended = wait_readable(&pidfd, deadline).map_err(|source| SandboxError::Wait { source })?;
    if !ended {
        sandbox.kill();
        sandbox
            .wait()
            .map_err(|source| SandboxError::Wait { source })?;
        return Err(SandboxError::Timeout {
            timeout: spec.timeout.unwrap_or_default(),
        });
    }
    let init_status = sandbox
        .wait()
        .map_err(|source| SandboxError::Wait { source })?;
    let wall_time = started.elapsed();

    let records = read_records(&report_read);
    let os_error = |value: i64| io::Error::from_raw_os_error(i32::try_from(value).unwrap_or(0));
    let mut status = None;
    let mut exec_at = None;
    for record in &records {
        match record.kind {
            child::OP_FAILED => {
                let step = plan
                    .steps
                    .get(record.index as usize)
                    .cloned()
                    .unwrap_or(Step::StartBuilder);
                return Err(SandboxError::Setup {
                    step,
                    source: os_error(record.value),
                });
            }
            child::PHASE_FAILED => {
                let phase = Phase::from_index(record.index).unwrap_or(Phase::StartBuilder);
                if phase == Phase::Exec {
                    return Err(SandboxError::Exec {
                        program: spec.program.clone(),
                        source: os_error(record.value),
                    });
                }
                return Err(SandboxError::Setup {
                    step: phase_step(phase),
                    source: os_error(record.value),
                });
            }
            child::BUILDER_STATUS => {
                status = Some(ExitStatus::from_raw(
                    i32::try_from(record.value).unwrap_or(0),
                ));
            }
            child::EXEC_AT => exec_at = Some(record.value),
            _ => {}
        }
    }
    let Some(status) = status else {
        return Err(SandboxError::Lost {
            status: init_status,
        });
    };
    let setup_time = exec_at
        .and_then(|at| u64::try_from(at - started_ns).ok())
        .map_or(Duration::ZERO, Duration::from_nanos);
    Ok(Outcome {
        status,
        wall_time,
        setup_time,
    })
}

impl Outcome {
    /// The builder exited with code 0.
    pub fn success(&self) -> bool {
        self.status.success()
    }
}

/// The paths a builder on a conventional Linux host needs to run host tools: `/usr`,
/// `/bin`, `/lib`, `/lib64` (those that exist), each bound at the same place.
pub fn host_tool_paths() -> Vec<(PathBuf, PathBuf)> {
    ["/usr", "/bin", "/lib", "/lib64"]
        .iter()
        .map(Path::new)
        .filter(|p| p.symlink_metadata().is_ok())
        .map(|p| (p.to_owned(), p.to_owned()))
        .collect()
}
