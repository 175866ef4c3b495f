//! Turning a [`SandboxSpec`] into the list of operations the sandbox's init runs.
//!
//! Everything that allocates happens here, before `clone`: host paths are resolved,
//! every path becomes a `CString`, file contents are rendered, the argument and
//! environment arrays and the seccomp filter are built. The child only walks the list.
//!
//! The root is assembled in two stages (as bubblewrap does). A tmpfs is mounted on the
//! host's build directory (only in the sandbox's private mount namespace) and becomes
//! the root with `pivot_root`; the host's root is then at `/oldroot` and the sandbox's
//! future root, another tmpfs, at `/newroot`. Binds go from `/oldroot/<host path>` to
//! `/newroot/<inside path>`, so any host path can be bound, even one under the build
//! directory. Then `/oldroot` is detached, `/newroot` becomes the root, the staging
//! tmpfs is detached too, and the root is remounted read-only.

use std::collections::BTreeSet;
use std::ffi::{CString, OsStr, c_char, c_ulong};
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use libc::{MS_NODEV, MS_NOEXEC, MS_NOSUID, MS_RDONLY, mode_t, sock_filter};

use super::error::{SandboxError, Step};
use super::seccomp;
use super::{BUILD_DIR, BUILD_GID, BUILD_UID, SandboxSpec};

/// One thing the sandbox's init does before starting the builder.
#[derive(Debug)]
pub(super) enum Op {
    SetHostname(Vec<u8>),
    LoopbackUp,
    MakeMountsPrivate,
    Mount {
        source: CString,
        target: CString,
        fstype: CString,
        flags: c_ulong,
        data: CString,
    },
    Bind {
        source: CString,
        target: CString,
        recursive: bool,
    },
    /// A bind remount with these flags plus the mount's locked ones (`noexec`, `ro`,
    /// which a user namespace may not clear).
    Remount {
        target: CString,
        flags: c_ulong,
    },
    /// `mkdir`, an existing directory being fine.
    Mkdir {
        path: CString,
        mode: mode_t,
    },
    /// An empty file to bind a file onto.
    CreateFile {
        path: CString,
    },
    WriteFile {
        path: CString,
        contents: Vec<u8>,
    },
    Symlink {
        target: CString,
        link: CString,
    },
    Chdir(CString),
    PivotRoot {
        new_root: CString,
        put_old: CString,
    },
    /// `umount2(MNT_DETACH)`.
    Detach(CString),
}

/// What the child needs, prepared by the parent.
#[derive(Debug)]
pub(super) struct Plan {
    /// Run in order by the sandbox's init; `steps[i]` names `ops[i]` in errors.
    pub(super) ops: Vec<Op>,
    pub(super) steps: Vec<Step>,
    pub(super) program: CString,
    // The strings `argv`/`envp` point into (their heap buffers never move).
    _args: Vec<CString>,
    _env: Vec<CString>,
    /// Null-terminated.
    pub(super) argv: Vec<*const c_char>,
    /// Null-terminated.
    pub(super) envp: Vec<*const c_char>,
    pub(super) filter: Vec<sock_filter>,
}

const NEW_ROOT: &str = "/newroot";
const OLD_ROOT: &str = "/oldroot";

/// Devices bound from the host's `/dev` when it has them.
const DEVICES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];
/// With `network`, these host files are bound read-only into `/etc` when present.
const NETWORK_FILES: [&str; 3] = ["resolv.conf", "hosts", "services"];

fn passwd() -> String {
    format!(
        "root:x:0:0:root:/build:/noshell\n\
         nixbld:x:{BUILD_UID}:{BUILD_GID}:nexis build user:/homeless-shelter:/noshell\n\
         nobody:x:65534:65534:nobody:/:/noshell\n"
    )
}

fn group() -> String {
    format!("root:x:0:\nnixbld:!:{BUILD_GID}:\nnogroup:x:65534:\n")
}

const HOSTS: &str = "127.0.0.1 localhost\n::1 localhost\n";

fn c_bytes(bytes: &[u8], what: &'static str) -> Result<CString, SandboxError> {
    CString::new(bytes).map_err(|_| SandboxError::Nul {
        what,
        value: String::from_utf8_lossy(bytes).into_owned(),
    })
}

fn c_os(s: &OsStr, what: &'static str) -> Result<CString, SandboxError> {
    c_bytes(s.as_bytes(), what)
}

/// `prefix` + an absolute `path`.
fn prefixed(prefix: &str, path: &Path) -> Result<CString, SandboxError> {
    let mut bytes = prefix.as_bytes().to_vec();
    bytes.extend_from_slice(path.as_os_str().as_bytes());
    c_bytes(&bytes, "path")
}

/// A path inside the sandbox must be absolute, without `..`, and not the root.
fn check_inside(path: &Path) -> Result<(), SandboxError> {
    let invalid = |reason| SandboxError::InvalidPath {
        path: path.to_owned(),
        reason,
    };
    let mut components = path.components();
    if components.next() != Some(Component::RootDir) {
        return Err(invalid("a path inside the sandbox must be absolute"));
    }
    let mut depth = 0;
    for c in components {
        match c {
            Component::Normal(_) => depth += 1,
            _ => return Err(invalid("a path inside the sandbox must not contain `..`")),
        }
    }
    if depth == 0 {
        return Err(invalid("the sandbox's root itself cannot be bound"));
    }
    Ok(())
}

/// The kind of a host path, read without following a final symlink.
enum HostKind {
    Dir(PathBuf),
    File(PathBuf),
    Symlink(PathBuf),
}

fn host_path(path: &Path, follow: bool) -> Result<HostKind, SandboxError> {
    let err = |source| SandboxError::HostPath {
        path: path.to_owned(),
        source,
    };
    let meta = if follow {
        fs::metadata(path)
    } else {
        fs::symlink_metadata(path)
    }
    .map_err(err)?;
    if meta.file_type().is_symlink() {
        return Ok(HostKind::Symlink(fs::read_link(path).map_err(err)?));
    }
    // Resolve the rest so that binds from `/oldroot` never meet an absolute symlink,
    // which would be resolved against the staging root.
    let canonical = fs::canonicalize(path).map_err(err)?;
    Ok(if meta.is_dir() {
        HostKind::Dir(canonical)
    } else {
        HostKind::File(canonical)
    })
}

#[derive(Default)]
struct Builder {
    ops: Vec<Op>,
    steps: Vec<Step>,
    /// Directories of the new root made so far (inside paths).
    dirs: BTreeSet<PathBuf>,
}

impl Builder {
    fn push(&mut self, op: Op, step: Step) {
        self.ops.push(op);
        self.steps.push(step);
    }

    fn mkdir(&mut self, inside: &Path, mode: mode_t) -> Result<(), SandboxError> {
        if self.dirs.insert(inside.to_owned()) {
            let path = prefixed(NEW_ROOT, inside)?;
            self.push(
                Op::Mkdir { path, mode },
                Step::CreateDir {
                    path: inside.to_owned(),
                },
            );
        }
        Ok(())
    }

    /// `mkdir -p` of the parents of `inside`.
    fn parents(&mut self, inside: &Path) -> Result<(), SandboxError> {
        let mut ancestors: Vec<&Path> = inside.ancestors().skip(1).collect();
        ancestors.pop(); // "/"
        for dir in ancestors.into_iter().rev() {
            self.mkdir(dir, 0o755)?;
        }
        Ok(())
    }

    fn mount(
        &mut self,
        fstype: &'static str,
        inside: &Path,
        flags: c_ulong,
        data: &str,
    ) -> Result<(), SandboxError> {
        self.mkdir(inside, 0o755)?;
        self.push(
            Op::Mount {
                source: c_bytes(fstype.as_bytes(), "path")?,
                target: prefixed(NEW_ROOT, inside)?,
                fstype: c_bytes(fstype.as_bytes(), "path")?,
                flags,
                data: c_bytes(data.as_bytes(), "path")?,
            },
            Step::Mount {
                fstype,
                path: inside.to_owned(),
            },
        );
        Ok(())
    }

    fn symlink(&mut self, target: &Path, inside: &Path) -> Result<(), SandboxError> {
        self.parents(inside)?;
        self.push(
            Op::Symlink {
                target: c_os(target.as_os_str(), "path")?,
                link: prefixed(NEW_ROOT, inside)?,
            },
            Step::Symlink {
                path: inside.to_owned(),
                target: target.to_owned(),
            },
        );
        Ok(())
    }

    fn write(&mut self, inside: &Path, contents: &str) -> Result<(), SandboxError> {
        self.parents(inside)?;
        self.push(
            Op::WriteFile {
                path: prefixed(NEW_ROOT, inside)?,
                contents: contents.as_bytes().to_vec(),
            },
            Step::WriteFile {
                path: inside.to_owned(),
            },
        );
        Ok(())
    }

    /// Binds a host path (resolved by [`host_path`]) at `inside`; a host symlink is
    /// recreated instead. `remount`: the flags to remount the bind with, if any.
    fn bind(
        &mut self,
        host: HostKind,
        inside: &Path,
        recursive: bool,
        remount: Option<c_ulong>,
    ) -> Result<(), SandboxError> {
        let host = match host {
            HostKind::Symlink(target) => return self.symlink(&target, inside),
            HostKind::Dir(host) => {
                self.parents(inside)?;
                self.mkdir(inside, 0o755)?;
                host
            }
            HostKind::File(host) => {
                self.parents(inside)?;
                self.push(
                    Op::CreateFile {
                        path: prefixed(NEW_ROOT, inside)?,
                    },
                    Step::CreateFile {
                        path: inside.to_owned(),
                    },
                );
                host
            }
        };
        let target = prefixed(NEW_ROOT, inside)?;
        self.push(
            Op::Bind {
                source: prefixed(OLD_ROOT, &host)?,
                target: target.clone(),
                recursive,
            },
            Step::BindMount {
                host,
                path: inside.to_owned(),
            },
        );
        if let Some(flags) = remount {
            self.push(
                Op::Remount { target, flags },
                Step::Remount {
                    path: inside.to_owned(),
                    read_only: flags & MS_RDONLY != 0,
                },
            );
        }
        Ok(())
    }
}

const READ_ONLY: c_ulong = MS_RDONLY | MS_NOSUID | MS_NODEV;
const WRITABLE: c_ulong = MS_NOSUID | MS_NODEV;

/// Paths the sandbox makes itself, which `extra_paths` may not replace.
fn reserved(inside: &Path, store_dir: &Path) -> bool {
    ["/proc", "/dev", "/tmp", BUILD_DIR]
        .iter()
        .any(|r| inside.starts_with(r))
        || ["/etc", "/etc/passwd", "/etc/group", "/etc/hosts"]
            .iter()
            .any(|r| inside == Path::new(r))
        || inside.starts_with(store_dir)
        || store_dir.starts_with(inside)
}

impl Plan {
    pub(super) fn new(spec: &SandboxSpec) -> Result<Plan, SandboxError> {
        let mut b = Builder::default();

        // Checks first, so that a bad spec fails before any host path is read.
        check_inside(&spec.store_dir)?;
        for (_, inside) in spec.inputs.iter().chain(&spec.outputs) {
            check_inside(inside)?;
            if !inside.starts_with(&spec.store_dir) || inside == &spec.store_dir {
                return Err(SandboxError::InvalidPath {
                    path: inside.clone(),
                    reason: "inputs and outputs must be inside the store directory",
                });
            }
        }
        for (_, inside) in &spec.extra_paths {
            check_inside(inside)?;
            if reserved(inside, &spec.store_dir) {
                return Err(SandboxError::InvalidPath {
                    path: inside.clone(),
                    reason: "the sandbox makes this path itself",
                });
            }
        }

        // The namespaces that need no mounts.
        b.push(
            Op::SetHostname(spec.hostname.as_bytes().to_vec()),
            Step::SetHostname {
                name: spec.hostname.clone(),
            },
        );
        if !spec.network {
            b.push(Op::LoopbackUp, Step::LoopbackUp);
        }

        // Staging: a tmpfs on the build directory becomes the root; the host's root
        // moves to /oldroot, the sandbox's root is the tmpfs at /newroot.
        let HostKind::Dir(build_dir) = host_path(&spec.build_dir, true)? else {
            return Err(SandboxError::InvalidPath {
                path: spec.build_dir.clone(),
                reason: "the build directory must be a directory",
            });
        };
        let build_c = c_os(build_dir.as_os_str(), "path")?;
        b.push(Op::MakeMountsPrivate, Step::MakeMountsPrivate);
        b.push(
            Op::Mount {
                source: c"tmpfs".into(),
                target: build_c.clone(),
                fstype: c"tmpfs".into(),
                flags: MS_NOSUID | MS_NODEV,
                data: c"mode=0700".into(),
            },
            Step::MountStaging {
                host: build_dir.clone(),
            },
        );
        b.push(
            Op::Chdir(build_c),
            Step::Chdir {
                path: build_dir.clone(),
            },
        );
        for dir in ["newroot", "oldroot"] {
            b.push(
                Op::Mkdir {
                    path: c_bytes(dir.as_bytes(), "path")?,
                    mode: 0o700,
                },
                Step::CreateDir {
                    path: Path::new("/").join(dir),
                },
            );
        }
        b.push(
            Op::Mount {
                source: c"tmpfs".into(),
                target: c"newroot".into(),
                fstype: c"tmpfs".into(),
                flags: MS_NOSUID | MS_NODEV,
                data: c"mode=0755".into(),
            },
            Step::Mount {
                fstype: "tmpfs",
                path: "/".into(),
            },
        );
        b.push(
            Op::PivotRoot {
                new_root: c".".into(),
                put_old: c"oldroot".into(),
            },
            Step::PivotRoot {
                path: build_dir.clone(),
            },
        );
        b.push(Op::Chdir(c"/".into()), Step::Chdir { path: "/".into() });

        // Host paths, parents before children.
        let mut extra: Vec<&(PathBuf, PathBuf)> = spec.extra_paths.iter().collect();
        extra.sort_by(|a, b| a.1.cmp(&b.1));
        for (host, inside) in extra {
            b.bind(host_path(host, false)?, inside, true, Some(READ_ONLY))?;
        }
        b.parents(&spec.store_dir)?;
        b.mkdir(&spec.store_dir, 0o755)?;
        let mut store: Vec<(&PathBuf, &PathBuf, bool)> = spec
            .inputs
            .iter()
            .map(|(h, i)| (h, i, false))
            .chain(spec.outputs.iter().map(|(h, i)| (h, i, true)))
            .collect();
        store.sort_by(|a, b| a.1.cmp(b.1));
        for (host, inside, output) in store {
            if output {
                let HostKind::Dir(dir) = host_path(host, true)? else {
                    return Err(SandboxError::InvalidPath {
                        path: host.clone(),
                        reason: "an output must be an existing directory",
                    });
                };
                b.bind(HostKind::Dir(dir), inside, false, Some(WRITABLE))?;
            } else {
                b.bind(host_path(host, false)?, inside, false, Some(READ_ONLY))?;
            }
        }
        b.bind(
            HostKind::Dir(build_dir),
            Path::new(BUILD_DIR),
            false,
            Some(WRITABLE),
        )?;

        // /etc
        b.write(Path::new("/etc/passwd"), &passwd())?;
        b.write(Path::new("/etc/group"), &group())?;
        if spec.network {
            for name in NETWORK_FILES {
                let host = Path::new("/etc").join(name);
                if host.exists() {
                    b.bind(host_path(&host, true)?, &host, false, Some(READ_ONLY))?;
                }
            }
        } else {
            b.write(Path::new("/etc/hosts"), HOSTS)?;
        }

        // /dev: device nodes of the host (new ones cannot be made in a user namespace),
        // a private devpts and shm, the usual symlinks.
        b.mkdir(Path::new("/dev"), 0o755)?;
        for name in DEVICES {
            let host = Path::new("/dev").join(name);
            if host.exists() {
                b.bind(host_path(&host, true)?, &host, false, None)?;
            }
        }
        b.mount("tmpfs", Path::new("/dev/shm"), WRITABLE, "mode=1777")?;
        b.mount(
            "devpts",
            Path::new("/dev/pts"),
            MS_NOSUID | MS_NOEXEC,
            "newinstance,ptmxmode=0666,mode=0620",
        )?;
        for (link, target) in [
            ("ptmx", "pts/ptmx"),
            ("fd", "/proc/self/fd"),
            ("stdin", "/proc/self/fd/0"),
            ("stdout", "/proc/self/fd/1"),
            ("stderr", "/proc/self/fd/2"),
        ] {
            b.symlink(Path::new(target), &Path::new("/dev").join(link))?;
        }
        // A proc of the new pid namespace; mounted while the host's proc is still
        // visible at /oldroot/proc, which the kernel requires in a user namespace.
        b.mount("proc", Path::new("/proc"), WRITABLE | MS_NOEXEC, "")?;
        b.mount("tmpfs", Path::new("/tmp"), WRITABLE, "mode=1777")?;

        // Leave the host's root behind, make /newroot the root, drop the staging tmpfs.
        b.push(
            Op::Detach(c_bytes(OLD_ROOT.as_bytes(), "path")?),
            Step::DetachOldRoot,
        );
        b.push(
            Op::Chdir(c_bytes(NEW_ROOT.as_bytes(), "path")?),
            Step::Chdir { path: "/".into() },
        );
        b.push(
            Op::PivotRoot {
                new_root: c".".into(),
                put_old: c".".into(),
            },
            Step::PivotRoot { path: "/".into() },
        );
        b.push(Op::Detach(c".".into()), Step::DetachOldRoot);
        b.push(Op::Chdir(c"/".into()), Step::Chdir { path: "/".into() });
        b.push(
            Op::Remount {
                target: c"/".into(),
                flags: READ_ONLY,
            },
            Step::Remount {
                path: "/".into(),
                read_only: true,
            },
        );
        b.push(
            Op::Chdir(c_bytes(BUILD_DIR.as_bytes(), "path")?),
            Step::Chdir {
                path: BUILD_DIR.into(),
            },
        );

        // The builder's command line and environment.
        let program = c_os(spec.program.as_os_str(), "program")?;
        let mut args = vec![program.clone()];
        for arg in &spec.args {
            args.push(c_os(arg, "argument")?);
        }
        let mut env = Vec::with_capacity(spec.env.len());
        for (name, value) in &spec.env {
            if name.is_empty() || name.as_bytes().contains(&b'=') {
                return Err(SandboxError::EnvName {
                    name: name.to_string_lossy().into_owned(),
                });
            }
            let mut bytes = name.as_bytes().to_vec();
            bytes.push(b'=');
            bytes.extend_from_slice(value.as_bytes());
            env.push(c_bytes(&bytes, "environment variable")?);
        }
        let argv = args
            .iter()
            .map(|a| a.as_ptr())
            .chain([std::ptr::null()])
            .collect();
        let envp = env
            .iter()
            .map(|e| e.as_ptr())
            .chain([std::ptr::null()])
            .collect();
        if spec.hostname.as_bytes().contains(&0) {
            return Err(SandboxError::Nul {
                what: "hostname",
                value: spec.hostname.clone(),
            });
        }

        Ok(Plan {
            ops: b.ops,
            steps: b.steps,
            program,
            _args: args,
            _env: env,
            argv,
            envp,
            filter: seccomp::filter(),
        })
    }
}
