//! The system toplevel: one store path per generation holding `etc/` (every file the
//! generation puts under `/etc`), `files/` (declared files elsewhere), `home/USER/`
//! (declared home files), `services/` (the service definitions), `sw/` (the system
//! packages as one symlink forest), `kernel`/`initrd` links when the system has a kernel,
//! and `manifest.json`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::fs;
use std::io;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use nexis_config::SystemSpec;
use nexis_store::{Store, StorePath, remove_tree};

use crate::boot::{find_initrd, find_kernel};
use crate::manifest::{
    BootFiles, FileEntry, FileKind, MANIFEST_FILE, MANIFEST_VERSION, Manifest, ManifestPackage,
};
use crate::services::{ServiceError, write_services};
use crate::users::{Accounts, AccountsError, Ids, accounts};

/// A package of the system profile: its id, version and output path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemPackage {
    /// `input#name`.
    pub id: String,
    /// Its version.
    pub version: String,
    /// Its output.
    pub path: StorePath,
    /// Which package provides a file two of them have (`[packages] priority`): the
    /// higher.
    pub priority: i32,
}

/// What a system is made of: its configuration and the store paths it was built into.
#[derive(Debug, Clone, Copy)]
pub struct SystemInputs<'a> {
    /// The evaluated configuration.
    pub spec: &'a SystemSpec,
    /// The system profile's packages (`sw/`).
    pub packages: &'a [SystemPackage],
    /// Every `${pkgs.…}` reference of the configuration (the text between `pkgs.` and
    /// `}`) and the output it stands for.
    pub references: &'a BTreeMap<String, StorePath>,
    /// The configuration's revision, recorded in the manifest.
    pub config_revision: Option<&'a str>,
    /// The output of the kernel package (`[boot] kernel`), if any.
    pub kernel: Option<&'a StorePath>,
    /// The package output of each enabled security tool, by tool (`firewall`, `clamav`,
    /// `maldet`, `falco`, `suricata`: the `security.TOOL` it was resolved for). Its
    /// services run these programs; a tool missing here runs the system profile's.
    pub security: &'a BTreeMap<String, StorePath>,
}

/// The toplevel could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ToplevelError {
    /// Two packages provide the same file in `sw/`.
    #[error(
        "packages {first} and {second} both provide sw/{file}; remove one of them from the system packages, or give one a higher `[packages] priority`"
    )]
    Collision {
        /// The file, relative to the profile.
        file: String,
        /// One package.
        first: String,
        /// The other.
        second: String,
    },
    /// Users or groups could not be given ids.
    #[error(transparent)]
    Accounts(#[from] AccountsError),
    /// A service cannot be written.
    #[error(transparent)]
    Services(#[from] ServiceError),
    /// A declared file's source cannot be read.
    #[error("{file}: cannot read its source {}", source_path.display())]
    Source {
        /// The file under `/etc`.
        file: String,
        /// Its source.
        source_path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The kernel package has no kernel image.
    #[error(
        "the kernel package {path} has no kernel image (bzImage, vmlinuz, Image or boot/vmlinuz*)"
    )]
    NoKernelImage {
        /// The package's output.
        path: StorePath,
    },
    /// Writing the tree failed.
    #[error("writing the system toplevel at {}", path.display())]
    Io {
        /// Where.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The store failed.
    #[error("adding the system toplevel to the store")]
    Store(#[source] Box<dyn std::error::Error + Send + Sync>),
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> ToplevelError + '_ {
    move |source| ToplevelError::Io {
        path: path.to_owned(),
        source,
    }
}

/// What goes into one file under `/etc`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Content {
    /// Bytes.
    Text(Vec<u8>),
    /// A symbolic link to this target.
    Link(String),
}

/// A file to put in place, with its owner and mode.
#[derive(Debug, Clone)]
struct EtcFile {
    content: Content,
    mode: u32,
    owner: String,
    group: String,
    /// Written in place even when a link would do (the account database).
    real: bool,
}

impl EtcFile {
    fn text(content: impl Into<Vec<u8>>) -> EtcFile {
        EtcFile {
            content: Content::Text(content.into()),
            mode: 0o644,
            owner: "root".into(),
            group: "root".into(),
            real: false,
        }
    }
}

/// Every file the system puts under `/etc`, by path relative to `/etc`: the ones derived
/// from `[system]`, `[network]`, the accounts and the enabled security tools (`tool`
/// gives a tool's package output), and the declared `[files."/etc/…"]`, which replace
/// a generated file of the same path.
fn etc_files(
    spec: &SystemSpec,
    accounts: &Accounts,
    subst: &dyn Fn(&str) -> String,
    tool: &dyn Fn(&str) -> Option<String>,
) -> Result<BTreeMap<String, EtcFile>, ToplevelError> {
    let mut out = BTreeMap::new();
    // The account database is written in place (programs such as `passwd` rewrite it);
    // the secrets are readable by root only.
    for (name, text, mode) in [
        ("passwd", accounts.passwd(), 0o644),
        ("group", accounts.group(), 0o644),
        ("shadow", accounts.shadow(), 0o600),
        ("gshadow", accounts.gshadow(), 0o600),
    ] {
        out.insert(
            name.to_owned(),
            EtcFile {
                mode,
                real: true,
                ..EtcFile::text(text)
            },
        );
    }
    for (name, user) in &spec.users {
        if !user.authorized_keys.is_empty() {
            let mut keys = String::new();
            for k in &user.authorized_keys {
                keys.push_str(&k.value);
                keys.push('\n');
            }
            out.insert(
                format!("ssh/authorized_keys.d/{}", name.value),
                EtcFile::text(keys),
            );
        }
    }
    let s = &spec.system;
    out.insert(
        "hostname".into(),
        EtcFile::text(format!("{}\n", s.hostname.value)),
    );
    let mut hosts = format!(
        "127.0.0.1 localhost\n::1 localhost\n127.0.1.1 {}\n",
        s.hostname.value
    );
    for (addr, names) in &spec.network.hosts {
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let _ = writeln!(hosts, "{} {}", addr.value, names.join(" "));
    }
    out.insert("hosts".into(), EtcFile::text(hosts));
    out.insert(
        "localtime".into(),
        EtcFile {
            content: Content::Link(format!("/usr/share/zoneinfo/{}", s.timezone.value)),
            ..EtcFile::text("")
        },
    );
    out.insert(
        "timezone".into(),
        EtcFile::text(format!("{}\n", s.timezone.value)),
    );
    out.insert(
        "locale.conf".into(),
        EtcFile::text(format!("LANG={}\n", s.locale.value)),
    );
    out.insert(
        "vconsole.conf".into(),
        EtcFile::text(format!("KEYMAP={}\n", s.keymap.value)),
    );
    if !spec.network.nameservers.is_empty() {
        let mut text = String::new();
        for ns in &spec.network.nameservers {
            let _ = writeln!(text, "nameserver {}", ns.value);
        }
        out.insert("resolv.conf".into(), EtcFile::text(text));
    }
    for (rel, text) in crate::security::etc_files(spec, tool) {
        out.insert(rel, EtcFile::text(subst(&text)));
    }
    for (path, file) in &spec.files {
        if let Some(rel) = path.value.strip_prefix("/etc/") {
            out.insert(rel.to_owned(), declared(file, &path.value, subst)?);
        }
    }
    Ok(out)
}

/// A declared file's content: its text (`${pkgs.…}` replaced), or its source's bytes.
fn content_of(
    text: Option<&nexis_config::Spanned<String>>,
    source: Option<&nexis_config::Spanned<String>>,
    name: &str,
    subst: &dyn Fn(&str) -> String,
) -> Result<Vec<u8>, ToplevelError> {
    match (text, source) {
        (Some(text), _) => Ok(subst(&text.value).into_bytes()),
        (None, Some(src)) => fs::read(&src.value).map_err(|source| ToplevelError::Source {
            file: name.to_owned(),
            source_path: PathBuf::from(&src.value),
            source,
        }),
        (None, None) => Ok(Vec::new()),
    }
}

fn declared(
    file: &nexis_config::FileSpec,
    name: &str,
    subst: &dyn Fn(&str) -> String,
) -> Result<EtcFile, ToplevelError> {
    Ok(EtcFile {
        content: Content::Text(content_of(
            file.text.as_ref(),
            file.source.as_ref(),
            name,
            subst,
        )?),
        mode: file.mode.as_ref().map_or(0o644, |m| m.value.0),
        owner: file
            .owner
            .as_ref()
            .map_or("root", |o| o.value.as_str())
            .to_owned(),
        group: file
            .group
            .as_ref()
            .map_or("root", |g| g.value.as_str())
            .to_owned(),
        real: false,
    })
}

/// Declared files outside `/etc`, by absolute path: always written in place.
fn other_files(
    spec: &SystemSpec,
    subst: &dyn Fn(&str) -> String,
) -> Result<BTreeMap<String, EtcFile>, ToplevelError> {
    let mut out = BTreeMap::new();
    for (path, file) in &spec.files {
        if !path.value.starts_with("/etc/") {
            out.insert(path.value.clone(), declared(file, &path.value, subst)?);
        }
    }
    Ok(out)
}

/// Each user's declared home files, by path relative to the home directory. Owned by
/// the user; linked into the generation when the mode allows it.
fn home_files(
    spec: &SystemSpec,
    accounts: &Accounts,
    subst: &dyn Fn(&str) -> String,
) -> Result<BTreeMap<String, BTreeMap<String, EtcFile>>, ToplevelError> {
    let mut out = BTreeMap::new();
    for (name, user) in &spec.users {
        let mut files = BTreeMap::new();
        let group = accounts
            .users
            .get(&name.value)
            .and_then(|u| accounts.groups.iter().find(|(_, g)| g.gid == u.gid))
            .map_or_else(|| "users".to_owned(), |(n, _)| n.clone());
        for (rel, file) in &user.files {
            let shown = format!("~{}/{}", name.value, rel.value);
            files.insert(
                rel.value.clone(),
                EtcFile {
                    content: Content::Text(content_of(
                        file.text.as_ref(),
                        file.source.as_ref(),
                        &shown,
                        subst,
                    )?),
                    mode: file.mode.as_ref().map_or(0o644, |m| m.value.0),
                    owner: name.value.clone(),
                    group: group.clone(),
                    real: false,
                },
            );
        }
        if !files.is_empty() {
            out.insert(name.value.clone(), files);
        }
    }
    Ok(out)
}

/// Replace every `${pkgs.REF}` whose `REF` is in `refs` by the output's path.
pub(crate) fn substitute(text: &str, refs: &BTreeMap<String, StorePath>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("${pkgs.") {
        out.push_str(&rest[..at]);
        let after = &rest[at + "${pkgs.".len()..];
        if let Some((end, path)) = after
            .find('}')
            .and_then(|end| Some((end, refs.get(&after[..end])?)))
        {
            out.push_str(&path.to_string());
            rest = &after[end + 1..];
        } else {
            out.push_str("${pkgs.");
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// How a file is put in place: a link into the generation unless the store's read-only
/// copy (owned by root, mode 0444 or 0555) would not do. In a home the owner does not
/// matter (the file only has to be readable); elsewhere it must be root's.
fn kind_of(file: &EtcFile, in_home: bool) -> FileKind {
    match file.content {
        Content::Link(_) => FileKind::Symlink,
        Content::Text(_) => {
            let plain_mode = matches!(file.mode, 0o644 | 0o444 | 0o755 | 0o555);
            let plain_owner = in_home || (file.owner == "root" && file.group == "root");
            if plain_mode && plain_owner && !file.real {
                FileKind::Link
            } else {
                FileKind::Real
            }
        }
    }
}

/// A system toplevel added to the store.
#[derive(Debug, Clone)]
pub struct Toplevel {
    /// Its store path.
    pub path: StorePath,
    /// Its manifest.
    pub manifest: Manifest,
}

/// Make the toplevel of `system` and add it to the store, named
/// `nexis-system-HOSTNAME`. Users and groups without a declared id get one from `ids`
/// (which the caller saves). The same system gives the same path.
pub fn build_toplevel(
    store: &Store,
    system: &SystemInputs<'_>,
    ids: &mut Ids,
) -> Result<Toplevel, ToplevelError> {
    let spec = system.spec;
    let subst = |s: &str| substitute(s, system.references);
    let tool = |t: &str| system.security.get(t).map(ToString::to_string);
    let accounts = accounts(spec, ids, &subst)?;
    // The same inputs made a toplevel before: that one, without writing a file.
    let memo = fingerprint(system, &accounts).map(|f| store.state_dir().join("toplevels").join(f));
    if let Some(top) = memo.as_deref().and_then(|m| remembered(store, m)) {
        return Ok(top);
    }
    let scratch = store
        .temp_dir()
        .map_err(|e| ToplevelError::Store(Box::new(e)))?;
    let result = (|| {
        let top = scratch.join("toplevel");
        fs::create_dir(&top).map_err(io_at(&top))?;
        let etc = write_tree(
            &top.join("etc"),
            &etc_files(spec, &accounts, &subst, &tool)?,
            false,
        )?;
        let files = write_tree(&top.join("files"), &other_files(spec, &subst)?, false)?;
        let mut home = BTreeMap::new();
        for (user, tree) in home_files(spec, &accounts, &subst)? {
            let entries = write_tree(&top.join("home").join(&user), &tree, true)?;
            home.insert(user, entries);
        }
        let mut services: BTreeMap<String, nexis_config::Service> = spec
            .services
            .iter()
            .map(|(k, v)| (k.value.clone(), v.clone()))
            .collect();
        // Validation refuses a declared service with a security tool's name; one that
        // got through anyway is kept as declared.
        for (name, svc) in crate::security::services(spec, &tool) {
            services.entry(name).or_insert(svc);
        }
        let services_dir = top.join("services");
        fs::create_dir(&services_dir).map_err(io_at(&services_dir))?;
        let services = write_services(&services_dir, &services, &subst)?;
        let sw = top.join("sw");
        profile(store, system.packages, &sw)?;
        let boot = match system.kernel {
            Some(kernel) => Some(boot_files(store, spec, kernel, &top)?),
            None => None,
        };
        let manifest = Manifest {
            version: MANIFEST_VERSION,
            hostname: spec.system.hostname.value.clone(),
            config_revision: system.config_revision.map(str::to_owned),
            packages: system
                .packages
                .iter()
                .map(|p| {
                    (
                        p.id.clone(),
                        ManifestPackage {
                            version: p.version.clone(),
                            path: p.path.clone(),
                        },
                    )
                })
                .collect(),
            etc,
            files,
            users: accounts.users.clone(),
            groups: accounts.groups.clone(),
            home,
            init: spec.system.init,
            services,
            boot,
        };
        let file = top.join(MANIFEST_FILE);
        fs::write(&file, manifest.to_json()).map_err(io_at(&file))?;
        let candidates: Vec<StorePath> = system
            .packages
            .iter()
            .map(|p| p.path.clone())
            .chain(system.references.values().cloned())
            .chain(system.security.values().cloned())
            .chain(system.kernel.cloned())
            .collect();
        let name = format!("nexis-system-{}", spec.system.hostname.value);
        let added = store
            .add_path_with_references(&top, Some(&name), &candidates)
            .map_err(|e| ToplevelError::Store(Box::new(e)))?;
        if let Some(memo) = &memo {
            // A cache: when it cannot be written, the next switch builds again.
            let _ = crate::fsutil::replace_link(memo, Path::new(&added.path.to_string()));
        }
        Ok(Toplevel {
            path: added.path,
            manifest,
        })
    })();
    let _ = remove_tree(&scratch);
    result
}

/// The kernel and initrd of the kernel package, linked from the toplevel as `kernel`
/// and `initrd`, with the boot settings.
fn boot_files(
    store: &Store,
    spec: &SystemSpec,
    kernel: &StorePath,
    top: &Path,
) -> Result<BootFiles, ToplevelError> {
    let out = store.physical(kernel);
    let logical = |file: &Path| {
        let rel = file.strip_prefix(&out).expect("found inside the package");
        PathBuf::from(kernel.to_string()).join(rel)
    };
    let image = find_kernel(&out).ok_or_else(|| ToplevelError::NoKernelImage {
        path: kernel.clone(),
    })?;
    let image = logical(&image);
    symlink(&image, top.join("kernel")).map_err(io_at(top))?;
    let initrd = find_initrd(&out).map(|f| logical(&f));
    if let Some(initrd) = &initrd {
        symlink(initrd, top.join("initrd")).map_err(io_at(top))?;
    }
    let b = &spec.boot;
    Ok(BootFiles {
        kernel: image.display().to_string(),
        initrd: initrd.map(|p| p.display().to_string()),
        params: b.kernel_params.iter().map(|p| p.value.clone()).collect(),
        loader: b.loader,
        timeout: b.timeout.value,
        keep: b.keep_generations.value,
    })
}

/// What a toplevel is made of, hashed: the configuration, the store paths it names, the
/// accounts' ids, the bytes of every file it copies from the configuration's folder and
/// the manifest format. None when a source file cannot be read (building reports it).
fn fingerprint(system: &SystemInputs<'_>, accounts: &Accounts) -> Option<String> {
    let spec = system.spec;
    let mut sources = BTreeMap::new();
    let files = spec.files.values().map(|f| (&f.text, &f.source));
    let home = spec
        .users
        .values()
        .flat_map(|u| u.files.values().map(|f| (&f.text, &f.source)));
    for (text, source) in files.chain(home) {
        if let (None, Some(src)) = (text, source) {
            let bytes = fs::read(&src.value).ok()?;
            sources.insert(src.value.clone(), blake3::hash(&bytes).to_hex().to_string());
        }
    }
    let packages: Vec<(&str, &str, String)> = system
        .packages
        .iter()
        .map(|p| (p.id.as_str(), p.version.as_str(), p.path.to_string()))
        .collect();
    let inputs = serde_json::json!({
        "manifest-version": MANIFEST_VERSION,
        "nexis": env!("CARGO_PKG_VERSION"),
        "spec": spec,
        "packages": packages,
        "references": system.references,
        "config-revision": system.config_revision,
        "kernel": system.kernel,
        "security": system.security,
        "users": accounts.users,
        "groups": accounts.groups,
        "sources": sources,
    });
    Some(
        blake3::hash(inputs.to_string().as_bytes())
            .to_hex()
            .to_string(),
    )
}

/// The toplevel a memo link names, if it is still valid (and now a temporary root of
/// this process, so a collection cannot take it away while it is used).
fn remembered(store: &Store, memo: &Path) -> Option<Toplevel> {
    let target = fs::read_link(memo).ok()?;
    let path = StorePath::parse(&target.to_string_lossy()).ok()?;
    store.add_temp_root(&path).ok()?;
    if !store.with_db(|db| db.is_valid(&path)).ok()? {
        return None;
    }
    let manifest = Manifest::read(&store.physical(&path)).ok()?;
    Some(Toplevel { path, manifest })
}

/// Write `files` under `dir` (created even when empty) and describe each.
fn write_tree(
    dir: &Path,
    files: &BTreeMap<String, EtcFile>,
    in_home: bool,
) -> Result<BTreeMap<String, FileEntry>, ToplevelError> {
    fs::create_dir_all(dir).map_err(io_at(dir))?;
    let mut entries = BTreeMap::new();
    for (name, file) in files {
        let dest = dir.join(name.trim_start_matches('/'));
        let parent = dest.parent().expect("below the tree");
        fs::create_dir_all(parent).map_err(io_at(parent))?;
        let hash = match &file.content {
            Content::Text(bytes) => {
                fs::write(&dest, bytes).map_err(io_at(&dest))?;
                blake3::hash(bytes).to_hex().to_string()
            }
            Content::Link(target) => {
                symlink(target, &dest).map_err(io_at(&dest))?;
                blake3::hash(target.as_bytes()).to_hex().to_string()
            }
        };
        entries.insert(
            name.clone(),
            FileEntry {
                kind: kind_of(file, in_home),
                hash,
                mode: format!("{:04o}", file.mode),
                owner: file.owner.clone(),
                group: file.group.clone(),
            },
        );
    }
    Ok(entries)
}

/// Make `dir` the union of the packages' trees: directories are merged, each file or
/// link becomes a link to the package's own (logical) path. Two packages with the same
/// file are an error naming both.
fn profile(store: &Store, packages: &[SystemPackage], dir: &Path) -> Result<(), ToplevelError> {
    fs::create_dir(dir).map_err(io_at(dir))?;
    let mut owners: BTreeMap<PathBuf, &SystemPackage> = BTreeMap::new();
    for pkg in packages {
        let root = store.physical(&pkg.path);
        if !root.is_dir() {
            continue;
        }
        merge(&root, dir, Path::new(""), pkg, &mut owners)?;
    }
    Ok(())
}

/// Merge the tree of `pkg` (at `src`) below `rel` into `dest`. A file another package
/// provides too goes to the one with the higher priority; equal priorities collide.
fn merge<'a>(
    src: &Path,
    dest: &Path,
    rel: &Path,
    pkg: &'a SystemPackage,
    owners: &mut BTreeMap<PathBuf, &'a SystemPackage>,
) -> Result<(), ToplevelError> {
    let mut names = BTreeSet::new();
    for entry in fs::read_dir(src.join(rel)).map_err(io_at(&src.join(rel)))? {
        names.insert(entry.map_err(io_at(src))?.file_name());
    }
    let logical = PathBuf::from(pkg.path.to_string());
    for name in names {
        let r = rel.join(&name);
        let meta = fs::symlink_metadata(src.join(&r)).map_err(io_at(&src.join(&r)))?;
        let target = dest.join(&r);
        if meta.is_dir() {
            match fs::symlink_metadata(&target) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => return Err(collision(&r, owners, pkg)),
                Err(_) => fs::create_dir(&target).map_err(io_at(&target))?,
            }
            owners.entry(r.clone()).or_insert(pkg);
            merge(src, dest, &r, pkg, owners)?;
        } else {
            if fs::symlink_metadata(&target).is_ok() {
                match owners.get(&r) {
                    Some(owner) if owner.priority > pkg.priority => continue,
                    Some(owner) if owner.priority < pkg.priority && !target.is_dir() => {
                        fs::remove_file(&target).map_err(io_at(&target))?;
                    }
                    _ => return Err(collision(&r, owners, pkg)),
                }
            }
            symlink(logical.join(&r), &target).map_err(io_at(&target))?;
            owners.insert(r, pkg);
        }
    }
    Ok(())
}

fn collision(
    rel: &Path,
    owners: &BTreeMap<PathBuf, &SystemPackage>,
    pkg: &SystemPackage,
) -> ToplevelError {
    ToplevelError::Collision {
        file: rel.display().to_string(),
        first: owners
            .get(rel)
            .map_or_else(|| "another package".to_owned(), |p| p.id.clone()),
        second: pkg.id.clone(),
    }
}
