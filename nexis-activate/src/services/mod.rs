//! Services: their definitions for the supervisor (Dinit, the default, or runit), and
//! putting a generation's services in effect on a running supervisor during a switch.
//!
//! Three steps, each in its own module:
//!
//! - **Generation** ([`write_services`], this module with `dinit.rs` and `runit.rs`):
//!   every `[services.NAME]`, and each built-in service others may depend on (`boot`,
//!   `early-fs`, `network`, `syslog`: `internal` placeholders unless declared), becomes
//!   files under the toplevel's `services/`, for both supervisors: `dinit/NAME` (with
//!   `dinit/NAME.env` and `dinit/boot.d/`) and `runit/NAME/{run,finish,control/t,down}`.
//!   Each service gets a [`ServiceEntry`] whose hash covers everything generated for it.
//!   The files are pure functions of the configuration: no timestamps, sorted.
//! - **Planning** ([`plan`], `plan.rs`, pure): two generations' entries give what to
//!   stop, reload, restart, start and forget, each list in dependency order.
//! - **Applying** ([`connect`], [`apply`], [`install`], `apply.rs`): a [`Supervisor`]
//!   talks to the supervisor running on the target root (`dinitctl`, `sv`); whether one
//!   runs is decided by the root itself, never by the host.
//!
//! # A switch on a running supervisor
//!
//! [`apply`] goes in this order, so that a stop uses the definition the service was
//! started with and a start or restart the new one:
//!
//! 1. **stop** what the new generation removes or no longer wants (dependents first),
//!    while the old definitions are still the installed ones;
//! 2. **install** the new generation's definitions ([`Supervisor::install`]: Dinit's
//!    services link, runit's scan directory without removing anything yet);
//! 3. **reload** changed services that are not restarted (Dinit rereads their
//!    description; runit reads `run` at each start anyway);
//! 4. **restart** changed services that run, then **start** new and newly enabled ones
//!    (dependencies first);
//! 5. after a short settle time, **check** that what was started or restarted still
//!    runs: a command that exits at once is reported failed, not "started";
//! 6. **remove** the services the new generation no longer has (Dinit unloads them,
//!    runit's service directories are deleted).
//!
//! A failure is recorded in the [`ServicesReport`] and does not stop the others. Where
//! no supervisor runs, [`connect`] says so (`None`) and the activation only calls
//! [`install`].
//!
//! # Paths
//!
//! The supervisor is given physical paths (`ROOT/…`): the services link and the runit
//! links point at the generation's `services/` as the caller names it on this machine,
//! which for the root `/` is the logical store path itself. Inside the generated files,
//! paths the files make to each other are relative (`env-file = NAME.env`,
//! `waits-for.d: boot.d`, `sv start ../DEP`), because a content-addressed toplevel cannot
//! name its own store path; Dinit resolves them from the description's folder and runit
//! runs `run` in the service's folder. Paths from the configuration (commands, log files,
//! pid files) are used as written, in the service's view of the system.
//!
//! # Commands
//!
//! A `command` or `stop-command` is split into words at white space; double quotes keep
//! white space in a word and a backslash takes the next character as it is (Dinit's own
//! rules). Nothing else is special: no shell runs it, and `$`, `'`, `#`, `;` are plain
//! characters in both supervisors (Dinit's variable substitution is escaped; the
//! configuration has its own `${…}` interpolation). The exact files are described in
//! `docs/services.md`.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use nexis_config::{BUILTIN_SERVICES, Init, Restart, Service, ServiceType};
use serde::{Deserialize, Serialize};

mod apply;
mod dinit;
mod plan;
mod runit;

pub use apply::{Action, Outcome, ServiceAction, ServicesReport, Supervisor, apply};
pub use plan::{ServicePlan, plan};

/// What activation keeps about one service of a generation (in its manifest): enough to
/// plan a switch without reading the files again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ServiceEntry {
    /// blake3 (hex) of everything generated for the service, for both supervisors, except
    /// runit's `down` marker: any change of its definition changes it; `enable` does not.
    pub hash: String,
    /// Started at boot, and by a switch.
    pub enable: bool,
    /// Every service it depends on (`depends-on`, `depends-ms`, `waits-for`), sorted.
    pub depends: Vec<String>,
    /// The ones it cannot start without (`depends-on`, `depends-ms`), sorted.
    pub hard: Vec<String>,
}

/// Services could not be written, installed, or talked to.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// A value that cannot be written into a service definition safely.
    #[error("service `{service}`: `{key}` {reason}")]
    Invalid {
        /// The service.
        service: String,
        /// The key (`command`, `environment.NAME`, …).
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A file or link could not be written.
    #[error("{}", path.display())]
    Io {
        /// Where.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A supervisor runs on the root but its control program is nowhere to be found.
    #[error("{backend} runs on the root but `{tool}` cannot be found: {hint}")]
    Tool {
        /// The supervisor.
        backend: Init,
        /// The program (`dinitctl`, `sv`).
        tool: &'static str,
        /// Where it was looked for.
        hint: String,
    },
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> ServiceError + '_ {
    move |source| ServiceError::Io {
        path: path.to_owned(),
        source,
    }
}

fn invalid(service: &str, key: &str, reason: impl Into<String>) -> ServiceError {
    ServiceError::Invalid {
        service: service.to_owned(),
        key: key.to_owned(),
        reason: reason.into(),
    }
}

/// One generated file, relative to the generation's `services/`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct GenFile {
    path: String,
    content: String,
    mode: u32,
}

impl GenFile {
    fn text(path: String, content: String) -> GenFile {
        GenFile {
            path,
            content,
            mode: 0o644,
        }
    }

    fn script(path: String, content: String) -> GenFile {
        GenFile {
            path,
            content,
            mode: 0o755,
        }
    }
}

/// A service as the generators see it: `${pkgs.…}` substituted, every value checked, the
/// command split into words.
#[derive(Debug, Clone)]
struct Def {
    name: String,
    kind: ServiceType,
    command: Option<Vec<String>>,
    stop_command: Option<Vec<String>>,
    pid_file: Option<String>,
    depends_on: Vec<String>,
    depends_ms: Vec<String>,
    waits_for: Vec<String>,
    /// The built-in `boot`: it waits for every enabled service, through Dinit's
    /// `waits-for.d: boot.d` (so `dinitctl enable` works) and runit's `sv start`.
    boot: bool,
    restart: Restart,
    user: Option<String>,
    group: Option<String>,
    logfile: Option<String>,
    working_dir: Option<String>,
    env: Vec<(String, String)>,
    enable: bool,
}

impl Def {
    /// A built-in placeholder: `internal`, no process; `boot` is enabled (it is what a
    /// supervisor starts at boot), the others start when something depends on them.
    fn builtin(name: &str, enabled: &[String]) -> Def {
        let boot = name == "boot";
        Def {
            name: name.to_owned(),
            kind: ServiceType::Internal,
            command: None,
            stop_command: None,
            pid_file: None,
            depends_on: Vec::new(),
            depends_ms: Vec::new(),
            waits_for: if boot { enabled.to_vec() } else { Vec::new() },
            boot,
            restart: Restart::Never,
            user: None,
            group: None,
            logfile: None,
            working_dir: None,
            env: Vec::new(),
            enable: boot,
        }
    }

    fn resolve(
        name: &str,
        svc: &Service,
        subst: &dyn Fn(&str) -> String,
    ) -> Result<Def, ServiceError> {
        let text = |key: &str, v: &str| -> Result<String, ServiceError> {
            let v = subst(v);
            check_text(name, key, &v)?;
            Ok(v)
        };
        let words = |key: &str, v: &str| -> Result<Vec<String>, ServiceError> {
            split_words(&text(key, v)?).map_err(|reason| invalid(name, key, reason))
        };
        let account = |key: &str, v: &str| -> Result<String, ServiceError> {
            if valid_account(v) {
                Ok(v.to_owned())
            } else {
                Err(invalid(
                    name,
                    key,
                    format!("`{v}` is not a valid name: use letters, digits and `_.-`"),
                ))
            }
        };
        let names = |set: &BTreeSet<nexis_config::Spanned<String>>| -> Vec<String> {
            set.iter().map(|s| s.value.clone()).collect()
        };
        // Validation makes sure of these; a definition without them would not load.
        let needs_command = !matches!(svc.kind, ServiceType::Internal | ServiceType::Triggered);
        if needs_command && svc.command.is_none() {
            return Err(invalid(name, "command", "is missing"));
        }
        if svc.kind == ServiceType::Bgprocess && svc.pid_file.is_none() {
            return Err(invalid(
                name,
                "pid-file",
                "is missing (a `bgprocess` needs one)",
            ));
        }
        let mut env = Vec::with_capacity(svc.environment.len());
        for (key, value) in &svc.environment {
            let key = &key.value;
            if !valid_env_name(key) {
                return Err(invalid(
                    name,
                    &format!("environment.{key}"),
                    "is not an environment variable name: use letters, digits and `_`, not starting with a digit",
                ));
            }
            env.push((key.clone(), text(&format!("environment.{key}"), value)?));
        }
        Ok(Def {
            name: name.to_owned(),
            kind: svc.kind,
            command: svc
                .command
                .as_ref()
                .map(|c| words("command", &c.value))
                .transpose()?,
            stop_command: svc
                .stop_command
                .as_ref()
                .map(|c| words("stop-command", &c.value))
                .transpose()?,
            pid_file: svc
                .pid_file
                .as_ref()
                .map(|p| text("pid-file", &p.value))
                .transpose()?,
            depends_on: names(&svc.depends_on),
            depends_ms: names(&svc.depends_ms),
            waits_for: names(&svc.waits_for),
            boot: false,
            restart: svc.restart,
            user: svc
                .user
                .as_ref()
                .map(|u| account("user", &u.value))
                .transpose()?,
            group: svc
                .group
                .as_ref()
                .map(|g| account("group", &g.value))
                .transpose()?,
            logfile: svc
                .logfile
                .as_ref()
                .map(|p| text("logfile", &p.value))
                .transpose()?,
            working_dir: svc
                .working_dir
                .as_ref()
                .map(|p| text("working-dir", &p.value))
                .transpose()?,
            env,
            enable: svc.enable,
        })
    }

    /// `depends-on` and `depends-ms`.
    fn hard(&self) -> impl Iterator<Item = &String> {
        self.depends_on.iter().chain(&self.depends_ms)
    }

    fn entry(&self, hash: String) -> ServiceEntry {
        let hard: BTreeSet<&String> = self.hard().collect();
        let all: BTreeSet<&String> = self.hard().chain(&self.waits_for).collect();
        ServiceEntry {
            hash,
            enable: self.enable,
            depends: all.into_iter().cloned().collect(),
            hard: hard.into_iter().cloned().collect(),
        }
    }
}

/// Writes the service definitions of `services` (and of the built-in services not among
/// them) under `dir`, for both supervisors, and returns each one's [`ServiceEntry`].
///
/// `subst` replaces `${pkgs.NAME}` in commands, paths and environment values. A value
/// that cannot be written safely (a newline in a command, an environment key that is not
/// a name, an unterminated quote, a dependency on a service that does not exist) is an
/// error naming the service and the key.
pub fn write_services(
    dir: &Path,
    services: &BTreeMap<String, Service>,
    subst: &dyn Fn(&str) -> String,
) -> Result<BTreeMap<String, ServiceEntry>, ServiceError> {
    let generated = generate(services, subst)?;
    let mut entries = BTreeMap::new();
    for (name, (entry, files)) in generated {
        for file in files {
            let path = dir.join(&file.path);
            let parent = path.parent().expect("a generated file is in a folder");
            fs::create_dir_all(parent).map_err(io_at(parent))?;
            fs::write(&path, &file.content).map_err(io_at(&path))?;
            fs::set_permissions(&path, fs::Permissions::from_mode(file.mode))
                .map_err(io_at(&path))?;
        }
        entries.insert(name, entry);
    }
    Ok(entries)
}

/// Every service's entry and files, in memory: what [`write_services`] writes.
fn generate(
    services: &BTreeMap<String, Service>,
    subst: &dyn Fn(&str) -> String,
) -> Result<BTreeMap<String, (ServiceEntry, Vec<GenFile>)>, ServiceError> {
    let mut defs = BTreeMap::new();
    for (name, svc) in services {
        check_name(name)?;
        defs.insert(name.clone(), Def::resolve(name, svc, subst)?);
    }
    let enabled: Vec<String> = defs
        .values()
        .filter(|d| d.enable)
        .map(|d| d.name.clone())
        .collect();
    for name in BUILTIN_SERVICES {
        defs.entry((*name).to_owned())
            .or_insert_with(|| Def::builtin(name, &enabled));
    }
    for def in defs.values() {
        for (key, deps) in [
            ("depends-on", &def.depends_on),
            ("depends-ms", &def.depends_ms),
            ("waits-for", &def.waits_for),
        ] {
            if let Some(dep) = deps.iter().find(|d| !defs.contains_key(*d)) {
                return Err(invalid(
                    &def.name,
                    key,
                    format!("names `{dep}`, which is not a service"),
                ));
            }
        }
    }
    check_collisions(&defs)?;
    let mut out = BTreeMap::new();
    for def in defs.values() {
        let mut files = dinit::files(def);
        files.extend(runit::files(def));
        files.sort_by(|a, b| a.path.cmp(&b.path));
        let hash = hash_files(&files);
        if !def.enable {
            // runit's convention for "not started by default"; not part of the hash, so
            // enabling or disabling a service is a start or stop, never a restart.
            files.push(GenFile::text(
                format!("runit/{}/down", def.name),
                String::new(),
            ));
        }
        out.insert(def.name.clone(), (def.entry(hash), files));
    }
    Ok(out)
}

/// blake3 over each file's path, mode, length and content, in path order.
fn hash_files(files: &[GenFile]) -> String {
    let mut h = blake3::Hasher::new();
    for f in files {
        h.update(f.path.as_bytes());
        h.update(&[0]);
        h.update(format!("{:o}", f.mode).as_bytes());
        h.update(&[0]);
        h.update(&(f.content.len() as u64).to_le_bytes());
        h.update(f.content.as_bytes());
    }
    h.finalize().to_hex().to_string()
}

/// Service names become file names: letters, digits and `_.-`, not starting with a dot
/// (Dinit refuses those). `@` is refused too: Dinit reads `NAME@ARG` from the file
/// `NAME` (a template with an argument), so such a service would not be found.
fn check_name(name: &str) -> Result<(), ServiceError> {
    if let Some((base, _)) = name.split_once('@') {
        return Err(invalid(
            name,
            "name",
            format!(
                "has `@`, which starts a Dinit service argument (it would read the description `{base}`): use another character"
            ),
        ));
    }
    let ok = !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(invalid(
            name,
            "name",
            "is not a valid service name: use letters, digits and `_.-`, not starting with `.`",
        ))
    }
}

/// `dinit/NAME.env` and `dinit/boot.d` share the folder with the descriptions: a service
/// named like one of them would be overwritten.
fn check_collisions(defs: &BTreeMap<String, Def>) -> Result<(), ServiceError> {
    for def in defs.values() {
        if !def.env.is_empty() && defs.contains_key(&format!("{}.env", def.name)) {
            return Err(invalid(
                &format!("{}.env", def.name),
                "name",
                format!(
                    "is the name of the environment file of service `{}`: rename one",
                    def.name
                ),
            ));
        }
        if def.boot && defs.contains_key("boot.d") {
            return Err(invalid(
                "boot.d",
                "name",
                "is the folder of the services `boot` waits for: rename it",
            ));
        }
    }
    Ok(())
}

/// A value is written on one line of a file: no newline, no NUL.
fn check_text(service: &str, key: &str, v: &str) -> Result<(), ServiceError> {
    if v.contains('\n') {
        Err(invalid(service, key, "contains a newline"))
    } else if v.contains('\0') {
        Err(invalid(service, key, "contains a NUL byte"))
    } else {
        Ok(())
    }
}

fn valid_env_name(k: &str) -> bool {
    let mut chars = k.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A user or group name: written bare into both supervisors' files.
fn valid_account(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with('-')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

/// Splits a command into words: white space separates, double quotes group, a backslash
/// takes the next character as it is (Dinit's rules, without its `$` substitution).
fn split_words(s: &str) -> Result<Vec<String>, &'static str> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quoted = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                word.push(chars.next().ok_or("ends with a lone backslash")?);
                in_word = true;
            }
            '"' => {
                quoted = !quoted;
                in_word = true;
            }
            c if c.is_whitespace() && !quoted => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            c => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if quoted {
        return Err("has an unterminated double quote");
    }
    if in_word {
        words.push(word);
    }
    if words.is_empty() {
        return Err("is empty");
    }
    Ok(words)
}

/// Characters that need no quoting in either supervisor's files.
fn plain(w: &str) -> bool {
    !w.is_empty()
        && w.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+:,@%".contains(c))
}

/// Puts the generation's services in place on `root` for `backend`, running or not:
/// Dinit's services link `ROOT/run/nexis/dinit.d → SERVICES/dinit`, or runit's scan
/// directory `ROOT/run/runit/service/NAME/` (real folders whose `run`, `finish` and
/// `control` link into the generation; `down` for disabled services; folders of other
/// services removed). `services_dir` is the physical path of the toplevel's `services/`.
///
/// On a root where the supervisor runs, use [`apply`] instead, which installs between
/// the stops and the starts.
pub fn install(backend: Init, root: &Path, services_dir: &Path) -> Result<(), ServiceError> {
    match backend {
        Init::Dinit => dinit::install(root, services_dir),
        Init::Runit => runit::install(root, services_dir, true),
    }
}

/// Talks to the supervisor running on `root`, if one runs there: Dinit when its control
/// socket `ROOT/run/dinitctl` accepts a connection, runit when a `runsv` answers in the
/// scan directory `ROOT/run/runit/service` (a `runsvdir` watches it). `Ok(None)`: nothing
/// runs, the activation only [`install`]s.
///
/// `dinitctl` is `$NEXIS_DINITCTL_BIN`, else the one beside `$NEXIS_DINIT_BIN`, else the
/// one on `PATH`; `sv` is the one on `PATH`, else `busybox sv`.
pub fn connect(
    backend: Init,
    root: &Path,
    services_dir: &Path,
) -> Result<Option<Box<dyn Supervisor>>, ServiceError> {
    Ok(match backend {
        Init::Dinit => {
            dinit::connect(root, services_dir)?.map(|s| Box::new(s) as Box<dyn Supervisor>)
        }
        Init::Runit => {
            runit::connect(root, services_dir)?.map(|s| Box::new(s) as Box<dyn Supervisor>)
        }
    })
}

/// The first executable file called `name` in `PATH`.
fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| {
            p.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// Replaces (or makes) the symbolic link `link` atomically: a new link beside it, renamed
/// over it, then the folder synced.
fn replace_link(link: &Path, target: &Path) -> Result<(), ServiceError> {
    let dir = link.parent().expect("a link has a folder");
    fs::create_dir_all(dir).map_err(io_at(dir))?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        link.file_name()
            .expect("a link has a name")
            .to_string_lossy(),
        std::process::id()
    ));
    let _ = fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp).map_err(io_at(&tmp))?;
    fs::rename(&tmp, link).map_err(io_at(link))?;
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_at(dir))
}

/// How long a started or restarted service must keep running to count as started:
/// both supervisors call a service "started" as soon as its process is launched.
const SETTLE: std::time::Duration = std::time::Duration::from_secs(1);

#[cfg(test)]
mod tests {
    use super::*;
    use nexis_config::Spanned;

    pub(super) fn svc(command: &str) -> Service {
        Service {
            command: Some(Spanned::unspanned(command.to_owned())),
            enable: true,
            ..Service::default()
        }
    }

    fn gen_one(
        name: &str,
        s: Service,
    ) -> Result<BTreeMap<String, (ServiceEntry, Vec<GenFile>)>, ServiceError> {
        generate(&BTreeMap::from([(name.to_owned(), s)]), &|s: &str| {
            s.replace("${pkgs.hello}", "/nexis/store/abc-hello")
        })
    }

    #[test]
    fn words_follow_dinit_rules() {
        assert_eq!(
            split_words(r#"/bin/sh -c "echo  a" b\ c"#).unwrap(),
            ["/bin/sh", "-c", "echo  a", "b c"]
        );
        assert_eq!(split_words("a '$x' #y").unwrap(), ["a", "'$x'", "#y"]);
        assert_eq!(split_words(r#"a "" b"#).unwrap(), ["a", "", "b"]);
        assert!(split_words("a \"b").is_err());
        assert!(split_words("a \\").is_err());
        assert!(split_words("  ").is_err());
    }

    #[test]
    fn newline_in_a_command_is_an_error_naming_service_and_key() {
        let err = gen_one("web", svc("/bin/web\n--evil")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "service `web`: `command` contains a newline"
        );
    }

    #[test]
    fn newline_in_an_environment_value_and_bad_keys_are_errors() {
        let mut s = svc("/bin/web");
        s.environment
            .insert(Spanned::unspanned("A".into()), "x\ny".into());
        let err = gen_one("web", s).unwrap_err();
        assert_eq!(
            err.to_string(),
            "service `web`: `environment.A` contains a newline"
        );
        let mut s = svc("/bin/web");
        s.environment
            .insert(Spanned::unspanned("1A".into()), "x".into());
        let err = gen_one("web", s).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("service `web`: `environment.1A` is not an environment variable name")
        );
    }

    #[test]
    fn unknown_dependency_and_bad_names_are_errors() {
        let mut s = svc("/bin/web");
        s.depends_on.insert(Spanned::unspanned("db".into()));
        let err = gen_one("web", s).unwrap_err();
        assert_eq!(
            err.to_string(),
            "service `web`: `depends-on` names `db`, which is not a service"
        );
        assert!(gen_one(".hidden", svc("/bin/x")).is_err());
        assert!(gen_one("a/b", svc("/bin/x")).is_err());
        assert!(gen_one("getty@tty1", svc("/bin/x")).is_err());
        let mut s = svc("/bin/web");
        s.user = Some(Spanned::unspanned("we b".into()));
        assert!(gen_one("web", s).is_err());
    }

    #[test]
    fn builtins_are_generated_and_boot_waits_for_enabled_services() {
        let mut off = svc("/bin/off");
        off.enable = false;
        let services =
            BTreeMap::from([("web".to_owned(), svc("/bin/web")), ("off".to_owned(), off)]);
        let out = generate(&services, &|s: &str| s.to_owned()).unwrap();
        let names: Vec<&str> = out.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            ["boot", "early-fs", "network", "off", "syslog", "web"]
        );
        let (boot, files) = &out["boot"];
        assert!(boot.enable);
        assert_eq!(boot.depends, ["web"]);
        assert!(boot.hard.is_empty());
        let paths: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["dinit/boot", "dinit/boot.d/web", "runit/boot/run"]);
        assert!(!out["network"].0.enable);
        assert!(
            out["network"]
                .1
                .iter()
                .any(|f| f.path == "runit/network/down")
        );
        assert!(out["off"].1.iter().any(|f| f.path == "runit/off/down"));
    }

    #[test]
    fn hash_changes_with_any_field_but_not_with_enable() {
        let base = || {
            let mut s = svc("/bin/web");
            s.environment
                .insert(Spanned::unspanned("A".into()), "1".into());
            s
        };
        let hash = |s: Service| gen_one("web", s).unwrap()["web"].0.hash.clone();
        let h0 = hash(base());
        assert_eq!(h0, hash(base()), "deterministic");
        let mut variants: Vec<Service> = Vec::new();
        let mut s = base();
        s.command = Some(Spanned::unspanned("/bin/web2".into()));
        variants.push(s);
        let mut s = base();
        s.environment
            .insert(Spanned::unspanned("A".into()), "2".into());
        variants.push(s);
        let mut s = base();
        s.restart = Restart::Always;
        variants.push(s);
        let mut s = base();
        s.user = Some(Spanned::unspanned("nobody".into()));
        variants.push(s);
        let mut s = base();
        s.group = Some(Spanned::unspanned("nogroup".into()));
        variants.push(s);
        let mut s = base();
        s.working_dir = Some(Spanned::unspanned("/srv".into()));
        variants.push(s);
        let mut s = base();
        s.logfile = Some(Spanned::unspanned("/var/log/web".into()));
        variants.push(s);
        let mut s = base();
        s.waits_for.insert(Spanned::unspanned("network".into()));
        variants.push(s);
        let mut s = base();
        s.kind = ServiceType::Scripted;
        variants.push(s);
        for v in variants {
            assert_ne!(hash(v), h0);
        }
        let mut s = base();
        s.enable = false;
        assert_eq!(hash(s), h0);
    }

    #[test]
    fn substitution_applies_to_commands_paths_and_environment() {
        let mut s = svc("${pkgs.hello}/bin/hello --greeting \"hi there\"");
        s.environment
            .insert(Spanned::unspanned("P".into()), "${pkgs.hello}/share".into());
        s.working_dir = Some(Spanned::unspanned("${pkgs.hello}".into()));
        let out = gen_one("hello", s).unwrap();
        let files = &out["hello"].1;
        let get = |p: &str| files.iter().find(|f| f.path == p).unwrap().content.clone();
        assert!(
            get("dinit/hello")
                .contains("command = /nexis/store/abc-hello/bin/hello --greeting \"hi there\"\n")
        );
        assert!(get("dinit/hello").contains("working-dir = /nexis/store/abc-hello\n"));
        assert_eq!(get("dinit/hello.env"), "P=/nexis/store/abc-hello/share\n");
        assert!(get("runit/hello/run").contains("export P=/nexis/store/abc-hello/share\n"));
    }
}
