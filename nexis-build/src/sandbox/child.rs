//! The sandbox's side of `clone`: its init (PID 1) and the builder before `execve`.
//!
//! This code runs in a copy of a process that may have had other threads, whose locks
//! (the allocator's among them) may be held forever in the copy. So from `clone` to
//! `execve` it only makes async-signal-safe system calls on memory prepared by the
//! parent: no allocation, no panics, no locks, no destructors. Failures are sent to the
//! parent as fixed-size [`Record`]s on a `CLOEXEC` pipe.

use std::ffi::{CStr, c_int, c_ulong};
use std::io;
use std::mem::{MaybeUninit, size_of};
use std::ptr;

use libc::{MS_BIND, MS_NODEV, MS_NOEXEC, MS_NOSUID, MS_RDONLY, MS_REC, MS_REMOUNT, pid_t};

use super::plan::{Op, Plan};

/// What the child writes to the report pipe: 16 bytes, atomic on a pipe.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub(super) struct Record {
    pub(super) kind: u32,
    pub(super) index: u32,
    pub(super) value: i64,
}

pub(super) const RECORD_SIZE: usize = size_of::<Record>();

impl Record {
    pub(super) fn from_bytes(b: &[u8; RECORD_SIZE]) -> Record {
        let word = |i: usize| u32::from_ne_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let mut value = [0; 8];
        value.copy_from_slice(&b[8..16]);
        Record {
            kind: word(0),
            index: word(4),
            value: i64::from_ne_bytes(value),
        }
    }
}

/// `ops[index]` failed with errno `value`.
pub(super) const OP_FAILED: u32 = 1;
/// The [`Phase`] `index` failed with errno `value`.
pub(super) const PHASE_FAILED: u32 = 2;
/// The builder ended; `value` is its wait status.
pub(super) const BUILDER_STATUS: u32 = 3;
/// The builder is about to `execve`, at `CLOCK_MONOTONIC` nanoseconds `value`.
pub(super) const EXEC_AT: u32 = 4;

/// The steps outside the op list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub(super) enum Phase {
    WaitForIdMaps = 0,
    StartBuilder = 1,
    RedirectOutput = 2,
    ResetSignals = 3,
    CloseFds = 4,
    NoNewPrivs = 5,
    Seccomp = 6,
    Exec = 7,
}

impl Phase {
    pub(super) fn from_index(i: u32) -> Option<Phase> {
        [
            Phase::WaitForIdMaps,
            Phase::StartBuilder,
            Phase::RedirectOutput,
            Phase::ResetSignals,
            Phase::CloseFds,
            Phase::NoNewPrivs,
            Phase::Seccomp,
            Phase::Exec,
        ]
        .into_iter()
        .find(|p| *p as u32 == i)
    }
}

/// The descriptors the child is handed (raw numbers of the parent's `OwnedFd`s).
#[derive(Debug, Clone, Copy)]
pub(super) struct Fds {
    pub(super) sync_read: c_int,
    pub(super) sync_write: c_int,
    pub(super) report_read: c_int,
    pub(super) report_write: c_int,
    /// Both `>= 3` (see `run`), so the `dup2`s onto 0–2 cannot clobber them.
    pub(super) log: c_int,
    pub(super) null: c_int,
}

fn errno() -> i32 {
    // No allocation: an OS error is stored inline.
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// `Ok` for a non-negative syscall result, the errno otherwise.
fn check(result: c_int) -> Result<c_int, i32> {
    if result < 0 { Err(errno()) } else { Ok(result) }
}

fn report(fd: c_int, kind: u32, index: u32, value: i64) {
    let record = Record { kind, index, value };
    // SAFETY: the pointer and length describe `record`, a plain value on this stack.
    // A short write cannot happen on a pipe for 16 bytes (< PIPE_BUF).
    unsafe { libc::write(fd, (&raw const record).cast(), RECORD_SIZE) };
}

fn exit(code: c_int) -> ! {
    // SAFETY: `_exit` ends the process without running anything of the parent's (no
    // atexit handlers, no stdio flushing), which is what a forked copy must do.
    unsafe { libc::_exit(code) }
}

fn fail(fd: c_int, kind: u32, index: u32, errno: i32, code: c_int) -> ! {
    report(fd, kind, index, i64::from(errno));
    exit(code)
}

pub(super) fn monotonic_ns() -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out pointer; clock_gettime is async-signal-safe.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &raw mut ts) };
    ts.tv_sec
        .wrapping_mul(1_000_000_000)
        .wrapping_add(ts.tv_nsec)
}

fn close(fd: c_int) {
    // SAFETY: closing a descriptor number this process owns; the parent's `OwnedFd`
    // lives in another address space.
    unsafe { libc::close(fd) };
}

fn prctl(option: c_int, arg: c_ulong) -> Result<c_int, i32> {
    // SAFETY: the prctl options used here take integer arguments only.
    check(unsafe { libc::prctl(option, arg, 0 as c_ulong, 0 as c_ulong, 0 as c_ulong) })
}

fn mount(
    source: Option<&CStr>,
    target: &CStr,
    fstype: Option<&CStr>,
    flags: c_ulong,
    data: Option<&CStr>,
) -> Result<(), i32> {
    let ptr_or_null = |s: Option<&CStr>| s.map_or(ptr::null(), CStr::as_ptr);
    // SAFETY: all pointers are NUL-terminated strings that outlive the call, or null.
    check(unsafe {
        libc::mount(
            ptr_or_null(source),
            target.as_ptr(),
            ptr_or_null(fstype),
            flags,
            ptr_or_null(data).cast(),
        )
    })
    .map(drop)
}

/// The flags a user namespace may not clear on a mount it did not create (`ro`,
/// `noexec`; `nosuid`/`nodev` are always set by the caller), and `nosymfollow`.
#[allow(clippy::unnecessary_cast)] // f_flag is not c_ulong on every target.
fn locked_flags(target: &CStr) -> Result<c_ulong, i32> {
    let mut st = MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `target` is NUL-terminated and `st` is a valid out pointer of the right
    // type. (glibc's statvfs is the statfs syscall plus a conversion: the kernel reports
    // the mount flags, marked ST_VALID, so no file is read.)
    check(unsafe { libc::statvfs(target.as_ptr(), st.as_mut_ptr()) })?;
    // SAFETY: statvfs succeeded, so it filled `st`.
    let st = unsafe { st.assume_init() };
    let f = st.f_flag as c_ulong;
    let mut flags = 0;
    if f & libc::ST_RDONLY != 0 {
        flags |= MS_RDONLY;
    }
    if f & libc::ST_NOEXEC != 0 {
        flags |= MS_NOEXEC;
    }
    // ST_NOSYMFOLLOW is not in libc for every target; its value is fixed by the kernel.
    if f & 0x2000 != 0 {
        flags |= libc::MS_NOSYMFOLLOW;
    }
    Ok(flags)
}

fn loopback_up() -> Result<(), i32> {
    // SAFETY: plain socket(2) call.
    let sock =
        check(unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: `ifreq` is plain old data; all zeroes is a valid value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in ifr.ifr_name.iter_mut().zip(b"lo") {
        *dst = src.cast_signed();
    }
    #[allow(clippy::cast_possible_truncation)] // the IFF_ flags fit in a short.
    let flags = (libc::IFF_UP | libc::IFF_LOOPBACK | libc::IFF_RUNNING) as libc::c_short;
    ifr.ifr_ifru.ifru_flags = flags;
    // SAFETY: SIOCSIFFLAGS reads an `ifreq`, which `ifr` is.
    let result = check(unsafe { libc::ioctl(sock, libc::SIOCSIFFLAGS as _, &raw mut ifr) });
    close(sock);
    result.map(drop)
}

impl Op {
    fn run(&self) -> Result<(), i32> {
        match self {
            Op::SetHostname(name) => {
                // SAFETY: pointer and length describe `name`.
                check(unsafe { libc::sethostname(name.as_ptr().cast(), name.len()) }).map(drop)
            }
            Op::LoopbackUp => loopback_up(),
            Op::MakeMountsPrivate => mount(None, c"/", None, MS_REC | libc::MS_PRIVATE, None),
            Op::Mount {
                source,
                target,
                fstype,
                flags,
                data,
            } => mount(
                Some(source),
                target,
                Some(fstype),
                *flags,
                (!data.is_empty()).then_some(data.as_c_str()),
            ),
            Op::Bind {
                source,
                target,
                recursive,
            } => {
                let rec = if *recursive { MS_REC } else { 0 };
                mount(Some(source), target, None, MS_BIND | rec, None)
            }
            Op::Remount { target, flags } => {
                let locked = locked_flags(target)?;
                let flags = MS_BIND | MS_REMOUNT | MS_NOSUID | MS_NODEV | flags | locked;
                mount(None, target, None, flags, None)
            }
            Op::Mkdir { path, mode } => {
                // SAFETY: `path` is NUL-terminated.
                match check(unsafe { libc::mkdir(path.as_ptr(), *mode) }) {
                    Err(libc::EEXIST) | Ok(_) => Ok(()),
                    Err(e) => Err(e),
                }
            }
            Op::CreateFile { path } => {
                let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_CLOEXEC | libc::O_NOCTTY;
                // SAFETY: `path` is NUL-terminated.
                let fd = check(unsafe { libc::open(path.as_ptr(), flags, 0o444 as libc::c_uint) })?;
                close(fd);
                Ok(())
            }
            Op::WriteFile { path, contents } => {
                let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_CLOEXEC;
                // SAFETY: `path` is NUL-terminated.
                let fd = check(unsafe { libc::open(path.as_ptr(), flags, 0o644 as libc::c_uint) })?;
                let mut rest: &[u8] = contents;
                while !rest.is_empty() {
                    // SAFETY: pointer and length describe `rest`.
                    let n = unsafe { libc::write(fd, rest.as_ptr().cast(), rest.len()) };
                    match usize::try_from(n) {
                        Ok(n) => rest = rest.get(n..).unwrap_or_default(),
                        Err(_) if errno() == libc::EINTR => {}
                        Err(_) => {
                            let e = errno();
                            close(fd);
                            return Err(e);
                        }
                    }
                }
                close(fd);
                Ok(())
            }
            Op::Symlink { target, link } => {
                // SAFETY: both are NUL-terminated.
                check(unsafe { libc::symlink(target.as_ptr(), link.as_ptr()) }).map(drop)
            }
            Op::Chdir(path) => {
                // SAFETY: `path` is NUL-terminated.
                check(unsafe { libc::chdir(path.as_ptr()) }).map(drop)
            }
            Op::PivotRoot { new_root, put_old } => {
                // SAFETY: both are NUL-terminated; pivot_root has no libc wrapper.
                let r = unsafe {
                    libc::syscall(libc::SYS_pivot_root, new_root.as_ptr(), put_old.as_ptr())
                };
                if r < 0 { Err(errno()) } else { Ok(()) }
            }
            Op::Detach(path) => {
                // SAFETY: `path` is NUL-terminated.
                check(unsafe { libc::umount2(path.as_ptr(), libc::MNT_DETACH) }).map(drop)
            }
        }
    }
}

/// The memory holding this process's command line (the argument strings on the initial
/// stack), as /proc/self/stat reports it.
#[derive(Debug, Clone, Copy)]
pub(super) struct ArgvArea {
    pub(super) start: *mut u8,
    pub(super) len: usize,
}

const INIT_NAME: &[u8] = b"nexis-sandbox-init";

/// Names this copy `nexis-sandbox-init` in /proc/<pid>/cmdline and comm, so that the
/// builder does not see the command line of the process that started the build.
fn rename(argv: Option<ArgvArea>) {
    // SAFETY: PR_SET_NAME copies at most 16 bytes from a NUL-terminated string.
    unsafe { libc::prctl(libc::PR_SET_NAME, c"nexis-init".as_ptr()) };
    if let Some(area) = argv {
        // SAFETY: the kernel reported this range as the process's argument strings,
        // mapped and writable for the process's whole life (setproctitle writes there
        // too). This is the child's private copy of the memory; nothing in the child
        // reads the arguments. The last byte stays NUL so that the kernel reads the
        // area as NUL-separated strings.
        unsafe {
            std::ptr::write_bytes(area.start, 0, area.len);
            let n = INIT_NAME.len().min(area.len.saturating_sub(1));
            std::ptr::copy_nonoverlapping(INIT_NAME.as_ptr(), area.start, n);
        }
    }
}

/// PID 1 of the sandbox: waits for the uid/gid maps, runs the plan's ops, starts the
/// builder and reaps every process until the builder ends; then it exits, and the
/// kernel kills whatever is left in the pid namespace.
pub(super) fn init(plan: &Plan, fds: Fds, argv: Option<ArgvArea>) -> ! {
    let report_fd = fds.report_write;
    rename(argv);
    // Die with the thread that cloned us (a parent gone between clone and here is
    // noticed below: the sync pipe reads end-of-file).
    let _ = prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as c_ulong);
    close(fds.sync_write);
    close(fds.report_read);
    let mut byte = 0u8;
    loop {
        // SAFETY: reading one byte into `byte`.
        let n = unsafe { libc::read(fds.sync_read, (&raw mut byte).cast(), 1) };
        match n {
            1 => break,
            0 => fail(
                report_fd,
                PHASE_FAILED,
                Phase::WaitForIdMaps as u32,
                libc::EPIPE,
                1,
            ),
            _ if errno() == libc::EINTR => {}
            _ => fail(
                report_fd,
                PHASE_FAILED,
                Phase::WaitForIdMaps as u32,
                errno(),
                1,
            ),
        }
    }
    close(fds.sync_read);
    // Only now, with the maps written: the parent needed /proc/<pid>/uid_map writable.
    // Not dumpable: the builder (same uid) cannot open /proc/1/fd or ptrace us.
    let _ = prctl(libc::PR_SET_DUMPABLE, 0);
    // SAFETY: umask cannot fail.
    unsafe { libc::umask(0o022) };

    for (i, op) in plan.ops.iter().enumerate() {
        if let Err(e) = op.run() {
            fail(
                report_fd,
                OP_FAILED,
                u32::try_from(i).unwrap_or(u32::MAX),
                e,
                1,
            );
        }
    }

    // SAFETY: a fork-like clone (no shared memory, no new stack); the child only runs
    // `builder`, which keeps to async-signal-safe calls.
    let pid = unsafe { libc::syscall(libc::SYS_clone, libc::SIGCHLD as c_ulong, 0, 0, 0, 0) };
    if pid < 0 {
        fail(
            report_fd,
            PHASE_FAILED,
            Phase::StartBuilder as u32,
            errno(),
            1,
        );
    }
    if pid == 0 {
        builder(plan, fds);
    }
    #[allow(clippy::cast_possible_truncation)] // a pid fits in pid_t.
    let builder_pid = pid as pid_t;
    loop {
        let mut status: c_int = 0;
        // SAFETY: `status` is a valid out pointer.
        let r = unsafe { libc::waitpid(-1, &raw mut status, libc::__WALL) };
        if r == builder_pid {
            report(report_fd, BUILDER_STATUS, 0, i64::from(status));
            exit(0);
        }
        if r < 0 && errno() != libc::EINTR {
            // ECHILD cannot happen while the builder is unreaped.
            exit(1);
        }
    }
}

/// The builder process: stdio, signals, descriptors, `no_new_privs`, seccomp, `execve`.
fn builder(plan: &Plan, fds: Fds) -> ! {
    let report_fd = fds.report_write;
    let phase_failed = |phase: Phase| -> ! {
        let code = if phase == Phase::Exec { 127 } else { 1 };
        fail(report_fd, PHASE_FAILED, phase as u32, errno(), code)
    };
    // SAFETY: setsid has no memory arguments; failing (already a leader) is harmless.
    unsafe { libc::setsid() };
    for (from, to) in [(fds.null, 0), (fds.log, 1), (fds.log, 2)] {
        // SAFETY: dup2 has no memory arguments; `from` is open and >= 3.
        if unsafe { libc::dup2(from, to) } < 0 {
            phase_failed(Phase::RedirectOutput);
        }
    }

    // An ignored signal stays ignored across execve (Rust ignores SIGPIPE), and the
    // mask is inherited: reset both, as a shell would find them.
    let mut set = MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: sigemptyset initialises `set`; sigprocmask reads it.
    let r = unsafe {
        libc::sigemptyset(set.as_mut_ptr());
        libc::sigprocmask(libc::SIG_SETMASK, set.as_ptr(), ptr::null_mut())
    };
    if r < 0 {
        phase_failed(Phase::ResetSignals);
    }
    // 1..=64: every signal number Linux has (NSIG is 65 on the supported targets).
    for signal in 1..=64 {
        if signal != libc::SIGKILL && signal != libc::SIGSTOP {
            // SAFETY: setting the default disposition; errors (for signals libc keeps
            // for itself) are of no consequence.
            unsafe { libc::signal(signal, libc::SIG_DFL) };
        }
    }

    // Descriptors the parent process had open without CLOEXEC must not reach the
    // builder (an open directory outside the sandbox would be a way out).
    // SAFETY: close_range with integer arguments.
    let r = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3 as c_ulong,
            c_ulong::from(u32::MAX),
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if r < 0 {
        // Before Linux 5.11: mark them one by one.
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: `limit` is a valid out pointer.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut limit) } < 0 {
            phase_failed(Phase::CloseFds);
        }
        let max = c_int::try_from(limit.rlim_cur.min(1 << 20)).unwrap_or(1 << 20);
        for fd in 3..max {
            // SAFETY: fcntl on a number that may not be open (EBADF is fine).
            unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
        }
    }

    if prctl(libc::PR_SET_NO_NEW_PRIVS, 1).is_err() {
        phase_failed(Phase::NoNewPrivs);
    }
    let prog = libc::sock_fprog {
        len: u16::try_from(plan.filter.len()).unwrap_or(u16::MAX),
        filter: plan.filter.as_ptr().cast_mut(),
    };
    // SAFETY: `prog` points to the filter, which outlives the call (the kernel copies it).
    let r = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            0 as c_ulong,
            &raw const prog,
        )
    };
    if r < 0 {
        phase_failed(Phase::Seccomp);
    }

    report(report_fd, EXEC_AT, 0, monotonic_ns());
    // SAFETY: program, argv and envp are NUL-terminated strings and null-terminated
    // arrays of them, owned by `plan`, which lives until execve replaces this image.
    unsafe {
        libc::execve(
            plan.program.as_ptr(),
            plan.argv.as_ptr(),
            plan.envp.as_ptr(),
        )
    };
    phase_failed(Phase::Exec)
}
