//! Semantic checks on the decoded configuration: formats, ranges, paths, the mutability
//! policy, and references between users, groups, files and services.

use std::collections::{BTreeMap, BTreeSet};

use crate::de::Spanned;
use crate::diagnostic::{Diagnostic, did_you_mean};
use crate::source::Span;
use crate::spec::{
    ScanEngine, Service, ServiceType, SystemSpec, valid_input_name, valid_input_path,
};
use crate::value::Table;

/// Groups every NexisOS system has, which users may join without declaring them.
pub const BUILTIN_GROUPS: &[&str] = &[
    "root", "wheel", "users", "nogroup", "audio", "video", "input", "kvm", "disk", "tty",
    "dialout", "network", "log",
];

/// Services the system itself provides, which user services may depend on.
pub const BUILTIN_SERVICES: &[&str] = &["boot", "early-fs", "network", "syslog"];

/// Files generated from other sections, which `[files]` may not declare.
const GENERATED_FILES: &[(&str, &str)] = &[
    ("/etc/passwd", "[users]"),
    ("/etc/shadow", "[users]"),
    ("/etc/group", "[groups]"),
    ("/etc/gshadow", "[groups]"),
    ("/etc/hostname", "system.hostname"),
    ("/etc/localtime", "system.timezone"),
    ("/etc/hosts", "system.hostname and [network.hosts]"),
];

/// Home directories whose contents are the user's own data (mutable, never declared).
const PERSONAL_DIRS: &[&str] = &[
    "Downloads",
    "Documents",
    "Desktop",
    "Music",
    "Pictures",
    "Videos",
    "Public",
    "Templates",
];

const KEY_TYPES: &[&str] = &[
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
];

/// The reference schemes an input may use.
pub(crate) const INPUT_SCHEMES: &[&str] = &[
    "path:",
    "git+https://",
    "git+http://",
    "git+ssh://",
    "git+file://",
    "https://",
    "http://",
    "file://",
];

struct V<'a> {
    fallback: Span,
    tree: &'a Table,
    diags: &'a mut Vec<Diagnostic>,
}

impl V<'_> {
    /// Where the key at `path` was written (its nearest written ancestor when it was
    /// not, as for a default).
    fn key(&self, path: &[&str]) -> Span {
        (1..=path.len())
            .rev()
            .find_map(|n| self.tree.key_span(&path[..n]))
            .unwrap_or(self.fallback)
    }

    fn at<T>(&self, s: &Spanned<T>) -> Span {
        s.span.unwrap_or(self.fallback)
    }

    fn err(
        &mut self,
        kind: &'static str,
        at: Span,
        message: String,
        label: &str,
        help: Option<String>,
    ) {
        self.diags.push(
            Diagnostic::new(kind, message)
                .primary(at, label)
                .help_opt(help),
        );
    }
}

/// Run every check, pushing one diagnostic per problem.
pub(crate) fn validate(
    spec: &SystemSpec,
    tree: &Table,
    fallback: Span,
    diags: &mut Vec<Diagnostic>,
) {
    let mut v = V {
        fallback,
        tree,
        diags,
    };
    inputs(&mut v, spec);
    packages(&mut v, spec);
    system(&mut v, spec);
    boot(&mut v, spec);
    users_and_groups(&mut v, spec);
    files(&mut v, spec);
    services(&mut v, spec);
    security(&mut v, spec);
    network(&mut v, spec);
    store(&mut v, spec);
    build(&mut v, spec);
}

/// Every `priority` key names a package of `install`.
fn packages(v: &mut V<'_>, spec: &SystemSpec) {
    let installed: Vec<String> = spec
        .packages
        .install
        .iter()
        .map(|p| match &p.value.input {
            Some(input) => format!("{input}#{}", p.value.name),
            None => p.value.name.clone(),
        })
        .collect();
    for key in spec.packages.priority.keys() {
        if !installed.contains(&key.value) {
            let candidates: Vec<&str> = installed.iter().map(String::as_str).collect();
            let help = did_you_mean(&key.value, candidates).unwrap_or_else(|| {
                "priorities order the packages of `packages.install`; write one as it is listed there, without its `@requirement`".to_owned()
            });
            v.err(
                "unknown",
                v.at(key),
                format!(
                    "priority for `{}`, which is not in packages.install",
                    key.value
                ),
                "not an installed package",
                Some(help),
            );
        }
    }
}

fn build(v: &mut V<'_>, spec: &SystemSpec) {
    for p in &spec.build.extra_sandbox_paths {
        let path = p.value.as_str();
        let clean = path.starts_with('/')
            && path != "/"
            && !path.ends_with('/')
            && path
                .split('/')
                .skip(1)
                .all(|c| !c.is_empty() && c != "." && c != "..");
        let reserved = ["/nexis", "/build", "/proc", "/dev", "/tmp", "/etc"]
            .iter()
            .any(|r| path == *r || path.starts_with(&format!("{r}/")));
        if !clean || reserved {
            v.err(
                "invalid-value",
                v.at(p),
                format!("`{path}` cannot be an extra sandbox path"),
                if clean {
                    "the sandbox makes this itself"
                } else {
                    "not a clean absolute path"
                },
                Some("give host folders such as `/usr`, `/bin`, `/lib`, `/lib64`".into()),
            );
        }
    }
    for (what, n) in [
        ("max-jobs", &spec.build.max_jobs),
        ("cores", &spec.build.cores),
    ] {
        if let Some(n) = n
            && n.value == 0
        {
            v.err(
                "invalid-value",
                v.at(n),
                format!("`build.{what}` must be at least 1"),
                "zero",
                None,
            );
        }
    }
}

fn store(v: &mut V<'_>, spec: &SystemSpec) {
    let mut seen = BTreeSet::new();
    for url in &spec.store.substituters {
        let u = url.value.as_str();
        let scheme_ok = u
            .strip_prefix("file://")
            .is_some_and(|p| p.starts_with('/'))
            || u.strip_prefix("https://").is_some_and(|h| !h.is_empty())
            || u.strip_prefix("http://").is_some_and(|h| !h.is_empty());
        if !scheme_ok {
            v.err(
                "invalid-value",
                v.at(url),
                format!("`{u}` is not a binary cache URL"),
                "not file:///DIR, http://… or https://…",
                Some("a cache on this machine is `file:///var/cache/nexis`".into()),
            );
        } else if !seen.insert(u) {
            v.err(
                "duplicate",
                v.at(url),
                format!("binary cache `{u}` is listed twice"),
                "listed again",
                None,
            );
        }
    }
    for key in &spec.store.trusted_public_keys {
        if !public_key_form(&key.value) {
            v.err(
                "invalid-value",
                v.at(key),
                format!("`{}` is not a public key", key.value),
                "expected NAME:BASE64",
                Some(
                    "use the second line `nexis store generate-key NAME` prints, e.g. \
                     `cache.example.org-1:` and 44 base64 characters"
                        .into(),
                ),
            );
        }
    }
}

/// `NAME:BASE64` with a 32-byte key: name of letters, digits, `.`, `_`, `-`; 43 base64
/// characters and one `=`.
fn public_key_form(key: &str) -> bool {
    let Some((name, b64)) = key.split_once(':') else {
        return false;
    };
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        && b64.len() == 44
        && b64.ends_with('=')
        && b64[..43]
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '/')
}

fn inputs(v: &mut V<'_>, spec: &SystemSpec) {
    for (name, input) in &spec.inputs {
        let url = &input.url;
        if !valid_input_name(name) || name.value == "self" {
            v.err(
                "invalid-value",
                v.at(name),
                format!("`{name}` cannot name an input"),
                "bad input name",
                Some("input names start with a letter and use letters, digits, `_` and `-`; `self` is reserved for inline recipes".into()),
            );
        }
        if !INPUT_SCHEMES.iter().any(|s| url.starts_with(s)) {
            v.err(
                "invalid-value",
                v.at(url),
                format!("input `{name}`: `{}` is not an input reference", url.value),
                "unknown scheme",
                Some("write `path:./dir`, `git+https://host/repo?ref=main`, `git+file:///path` or `https://host/x.tar.gz`".into()),
            );
        }
        for (inner, target) in &input.follows {
            for (path, what) in [(inner, "an input of the input"), (target, "an input")] {
                if !valid_input_path(path) {
                    v.err(
                        "invalid-value",
                        v.at(path),
                        format!("input `{name}`: `{path}` does not name {what}"),
                        "bad input name",
                        Some(
                            "name an input (`base`), or an input of an input (`core/base`)".into(),
                        ),
                    );
                }
            }
        }
    }
}

fn system(v: &mut V<'_>, spec: &SystemSpec) {
    let s = &spec.system;
    let host = &s.hostname.value;
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if host.len() > 253 || !host.split('.').all(label_ok) {
        v.err(
            "invalid-value",
            v.at(&s.hostname),
            format!("`{host}` is not a valid host name"),
            "invalid host name",
            Some("use letters, digits and `-` (not at either end), at most 63 per label".into()),
        );
    }
    let tz = &s.timezone.value;
    let tz_ok = !tz.is_empty()
        && !tz.starts_with('/')
        && tz.split('/').all(|p| {
            !p.is_empty()
                && p != ".."
                && p != "."
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_+-".contains(c))
        });
    if !tz_ok {
        v.err(
            "invalid-value",
            v.at(&s.timezone),
            format!("`{tz}` is not a time zone name"),
            "invalid time zone",
            Some("write an IANA name such as `UTC` or `Europe/Paris`".into()),
        );
    }
    if !valid_locale(&s.locale.value) {
        v.err(
            "invalid-value",
            v.at(&s.locale),
            format!("`{}` is not a locale name", s.locale.value),
            "invalid locale",
            Some("write e.g. `en_US.UTF-8`, `de_DE.UTF-8` or `C.UTF-8`".into()),
        );
    }
    if s.keymap.is_empty()
        || !s
            .keymap
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
    {
        v.err(
            "invalid-value",
            v.at(&s.keymap),
            format!("`{}` is not a keymap name", s.keymap.value),
            "invalid keymap",
            Some("write e.g. `us`, `de-latin1` or `fr`".into()),
        );
    }
}

fn valid_locale(l: &str) -> bool {
    if matches!(l, "C" | "POSIX" | "C.UTF-8" | "C.utf8") {
        return true;
    }
    let (main, modifier) = l.split_once('@').map_or((l, None), |(a, b)| (a, Some(b)));
    let (lang_region, codeset) = main
        .split_once('.')
        .map_or((main, None), |(a, b)| (a, Some(b)));
    let (lang, region) = lang_region
        .split_once('_')
        .map_or((lang_region, None), |(a, b)| (a, Some(b)));
    (2..=3).contains(&lang.len())
        && lang.chars().all(|c| c.is_ascii_lowercase())
        && region.is_none_or(|r| r.len() == 2 && r.chars().all(|c| c.is_ascii_uppercase()))
        && codeset.is_none_or(|c| {
            !c.is_empty() && c.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
        && modifier.is_none_or(|m| !m.is_empty() && m.chars().all(|c| c.is_ascii_alphanumeric()))
}

fn boot(v: &mut V<'_>, spec: &SystemSpec) {
    let b = &spec.boot;
    if !(1..=1000).contains(&b.keep_generations.value) {
        v.err(
            "range",
            v.at(&b.keep_generations),
            format!(
                "keep-generations is {}, outside 1–1000",
                b.keep_generations.value
            ),
            "out of range",
            Some("at least the current generation is kept".into()),
        );
    }
    if b.timeout.value > 600 {
        v.err(
            "range",
            v.at(&b.timeout),
            format!("boot timeout {} s is longer than 600 s", b.timeout.value),
            "out of range",
            None,
        );
    }
    for p in &b.kernel_params {
        if p.is_empty() || p.chars().any(char::is_whitespace) {
            v.err(
                "invalid-value",
                v.at(p),
                format!("kernel parameter `{}` is empty or contains spaces", p.value),
                "one parameter per string",
                Some(
                    "write `[\"quiet\", \"console=ttyS0\"]`, not `[\"quiet console=ttyS0\"]`"
                        .into(),
                ),
            );
        }
    }
    for m in &b.initrd_modules {
        if m.is_empty()
            || !m
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            v.err(
                "invalid-value",
                v.at(m),
                format!("`{}` is not a kernel module name", m.value),
                "invalid module name",
                None,
            );
        }
    }
}

fn valid_account_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 32
        && n.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && n.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

/// Check an absolute path: starts with `/`, no `.`/`..`/empty components, no trailing `/`.
fn check_abs_path(v: &mut V<'_>, p: &Spanned<String>, what: &str) -> bool {
    let s = &p.value;
    let ok = s == "/"
        || (s.starts_with('/')
            && !s.ends_with('/')
            && s[1..]
                .split('/')
                .all(|c| !c.is_empty() && c != "." && c != ".."));
    if !ok {
        v.err(
            "path",
            v.at(p),
            format!("{what} `{s}` is not a normalised absolute path"),
            "must be absolute, without `.`, `..`, `//` or a trailing `/`",
            None,
        );
    }
    ok
}

/// Words for the account kinds in messages.
#[derive(Clone, Copy)]
struct Account {
    noun: &'static str,
    id: &'static str,
}

const USER: Account = Account {
    noun: "user",
    id: "uid",
};
const GROUP: Account = Account {
    noun: "group",
    id: "gid",
};

/// Range and uniqueness of a uid or gid.
fn account_id<'a>(
    v: &mut V<'_>,
    kind: Account,
    name: &'a Spanned<String>,
    id: &Spanned<u32>,
    system: bool,
    seen: &mut BTreeMap<u32, &'a Spanned<String>>,
) {
    let (noun, key, n) = (kind.noun, kind.id, id.value);
    if n == 0 && name.value != "root" {
        v.err(
            "range",
            v.at(id),
            format!("{noun} `{}` has {key} 0", name.value),
            &format!("only root has {key} 0"),
            Some(format!(
                "{key} 0 is root whatever the name; pick another {key}"
            )),
        );
    } else if n > 65533 {
        v.err(
            "range",
            v.at(id),
            format!("{key} {n} of {noun} `{}` is above 65533", name.value),
            "out of range",
            Some("65534 is `nobody` and larger ids are not portable".into()),
        );
    } else if system && n >= 1000 {
        v.err(
            "range",
            v.at(id),
            format!("system {noun} `{}` has {key} {n}", name.value),
            &format!("system {noun}s have {key}s below 1000"),
            None,
        );
    }
    if let Some(other) = seen.insert(n, name) {
        v.diags.push(
            Diagnostic::new(
                "duplicate",
                format!(
                    "{noun}s `{}` and `{}` share {key} {n}",
                    other.value, name.value
                ),
            )
            .primary(v.at(id), "second use")
            .secondary(
                other.span.unwrap_or(v.fallback),
                format!("first {noun} with it"),
            )
            .help(format!(
                "every {noun} needs its own {key}; leave `{key}` out to have one allocated"
            )),
        );
    }
}

fn users_and_groups(v: &mut V<'_>, spec: &SystemSpec) {
    let mut uids: BTreeMap<u32, &Spanned<String>> = BTreeMap::new();
    for (name, user) in &spec.users {
        if !valid_account_name(name) {
            v.err(
                "invalid-value",
                v.at(name),
                format!("`{}` is not a valid user name", name.value),
                "invalid user name",
                Some("user names are lower-case letters, digits, `_` and `-`, starting with a letter or `_`, at most 32 characters".into()),
            );
        }
        if let Some(uid) = &user.uid {
            account_id(v, USER, name, uid, user.system, &mut uids);
        }
        if let Some(home) = &user.home {
            check_abs_path(v, home, "home directory");
        }
        if let Some(shell) = &user.shell
            && !shell.starts_with("${pkgs.")
        {
            check_abs_path(v, shell, "shell");
        }
        for g in &user.groups {
            if !spec.groups.contains_key(g.value.as_str())
                && !BUILTIN_GROUPS.contains(&g.value.as_str())
            {
                let candidates = spec
                    .groups
                    .keys()
                    .map(|k| k.value.as_str())
                    .chain(BUILTIN_GROUPS.iter().copied());
                v.err(
                    "reference",
                    v.at(g),
                    format!(
                        "user `{}` is in group `{}`, which is not declared",
                        name.value, g.value
                    ),
                    "unknown group",
                    Some(
                        did_you_mean(g, candidates)
                            .unwrap_or_else(|| format!("declare it with `[groups.{}]`", g.value)),
                    ),
                );
            }
        }
        if let Some(hash) = &user.password_hash {
            let h = hash.value.as_str();
            let ok = matches!(h, "!" | "*" | "!*" | "")
                || (h.starts_with('$') && h.split('$').filter(|p| !p.is_empty()).count() >= 3)
                || (h.starts_with('!') && h[1..].starts_with('$'));
            if !ok {
                v.err(
                    "invalid-value",
                    v.at(hash),
                    format!("password-hash of `{}` is not a crypt(3) hash", name.value),
                    "looks like a plain-text password",
                    Some("store a hash made with `mkpasswd -m yescrypt` (`$y$…`) or `$6$…`, or `!` to lock the account".into()),
                );
            }
        }
        for key in &user.authorized_keys {
            let ok = key
                .split_whitespace()
                .collect::<Vec<_>>()
                .windows(2)
                .any(|w| {
                    KEY_TYPES.contains(&w[0])
                        && !w[1].is_empty()
                        && w[1]
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || "+/=".contains(c))
                });
            if !ok {
                v.err(
                    "invalid-value",
                    v.at(key),
                    format!("authorized key of `{}` is not an OpenSSH public key", name.value),
                    "not `TYPE BASE64 [comment]`",
                    Some("paste a line from `~/.ssh/id_ed25519.pub`, such as `ssh-ed25519 AAAA… alice@laptop`".into()),
                );
            }
        }
        for (path, file) in &user.files {
            home_file(
                v,
                &name.value,
                path,
                file.text.as_ref(),
                file.source.as_ref(),
            );
        }
    }
    let mut gids: BTreeMap<u32, &Spanned<String>> = BTreeMap::new();
    for (name, group) in &spec.groups {
        if !valid_account_name(name) {
            v.err(
                "invalid-value",
                v.at(name),
                format!("`{}` is not a valid group name", name.value),
                "invalid group name",
                Some("group names follow the rules of user names".into()),
            );
        }
        if let Some(gid) = &group.gid {
            account_id(v, GROUP, name, gid, group.system, &mut gids);
        }
        for m in &group.members {
            if !spec.users.contains_key(m.value.as_str()) && m.value != "root" {
                v.err(
                    "reference",
                    v.at(m),
                    format!(
                        "group `{}` lists member `{}`, who is not a declared user",
                        name.value, m.value
                    ),
                    "unknown user",
                    did_you_mean(m, spec.users.keys().map(|k| k.value.as_str())),
                );
            }
        }
    }
}

fn content(
    v: &mut V<'_>,
    at: Span,
    what: &str,
    text: Option<&Spanned<String>>,
    source: Option<&Spanned<String>>,
) {
    match (text, source) {
        (Some(_), Some(s)) => v.err(
            "invalid-value",
            v.at(s),
            format!("{what} has both `text` and `source`"),
            "second content",
            Some("keep one of them".into()),
        ),
        (None, None) => v.err(
            "missing-key",
            at,
            format!("{what} has neither `text` nor `source`"),
            "no content",
            Some("add `text = \"…\"` or `source = \"file\"`".into()),
        ),
        (None, Some(s)) => {
            if s.starts_with('/') || s.split('/').any(|c| c == "..") {
                v.err(
                    "path",
                    v.at(s),
                    format!(
                        "source `{}` of {what} leaves the configuration folder",
                        s.value
                    ),
                    "absolute or uses `..`",
                    Some("copy the file next to the module and name it relatively".into()),
                );
            }
        }
        (Some(_), None) => {}
    }
}

fn home_file(
    v: &mut V<'_>,
    user: &str,
    path: &Spanned<String>,
    text: Option<&Spanned<String>>,
    source: Option<&Spanned<String>>,
) {
    let at = v.at(path);
    let p = &path.value;
    if p.is_empty()
        || p.starts_with('/')
        || p.starts_with('~')
        || p.ends_with('/')
        || p.split('/').any(|c| c.is_empty() || c == "." || c == "..")
    {
        v.err(
            "path",
            at,
            format!("home file `{p}` of `{user}` is not a plain relative path"),
            "must be relative to the home directory",
            Some(
                "write e.g. `.config/git/config`, without `~`, `/` at the start, `.` or `..`"
                    .into(),
            ),
        );
        return;
    }
    let first = p.split('/').next().unwrap_or_default();
    if PERSONAL_DIRS.contains(&first) {
        v.err(
            "policy",
            at,
            format!("`~/{first}` of `{user}` holds personal data and cannot be declared"),
            "personal files are mutable",
            Some("NexisOS manages configuration (`~/.config`, `~/.local/share`, dotfiles); the user's own folders stay theirs".into()),
        );
    }
    content(v, at, &format!("home file `{p}` of `{user}`"), text, source);
}

fn files(v: &mut V<'_>, spec: &SystemSpec) {
    for (path, file) in &spec.files {
        let at = v.at(path);
        if check_abs_path(v, path, "file") {
            if let Some(why) = policy(&path.value) {
                v.err(
                    "policy",
                    at,
                    format!("`{}` cannot be declared in [files]", path.value),
                    "outside the declarable areas",
                    Some(why),
                );
            } else if path.value == "/etc/resolv.conf" && !spec.network.nameservers.is_empty() {
                v.err(
                    "policy",
                    at,
                    "`/etc/resolv.conf` is generated from network.nameservers".into(),
                    "generated file",
                    Some("declare it here only when `network.nameservers` is empty".into()),
                );
            } else if let Some((_, from)) = GENERATED_FILES.iter().find(|(f, _)| *f == path.value) {
                v.err(
                    "policy",
                    at,
                    format!("`{}` is generated from {from}", path.value),
                    "generated file",
                    Some(format!("set {from} instead")),
                );
            } else if path.value == "/etc/dinit.d" || path.starts_with("/etc/dinit.d/") {
                v.err(
                    "policy",
                    at,
                    format!("`{}` is a service file", path.value),
                    "generated from [services]",
                    Some("declare the service under `[services.NAME]`".into()),
                );
            }
        }
        content(
            v,
            at,
            &format!("file `{}`", path.value),
            file.text.as_ref(),
            file.source.as_ref(),
        );
        if let Some(owner) = &file.owner
            && !spec.users.contains_key(owner.value.as_str())
            && owner.value != "root"
        {
            v.err(
                "reference",
                v.at(owner),
                format!(
                    "owner `{}` of `{}` is not a declared user",
                    owner.value, path.value
                ),
                "unknown user",
                did_you_mean(owner, spec.users.keys().map(|k| k.value.as_str())),
            );
        }
        if let Some(group) = &file.group
            && !spec.groups.contains_key(group.value.as_str())
            && !BUILTIN_GROUPS.contains(&group.value.as_str())
        {
            v.err(
                "reference",
                v.at(group),
                format!(
                    "group `{}` of `{}` is not declared",
                    group.value, path.value
                ),
                "unknown group",
                did_you_mean(
                    group,
                    spec.groups
                        .keys()
                        .map(|k| k.value.as_str())
                        .chain(BUILTIN_GROUPS.iter().copied()),
                ),
            );
        }
    }
}

/// Why a path outside `/etc` and `/var/lib` cannot be declared, per the mutability policy.
fn policy(path: &str) -> Option<String> {
    let under = |dir: &str| path == dir || path.starts_with(&format!("{dir}/"));
    if (under("/etc") && path != "/etc") || (under("/var/lib") && path != "/var/lib") {
        return None;
    }
    if path == "/etc" || path == "/var/lib" {
        return Some(format!(
            "`{path}` is a directory; declare the files below it"
        ));
    }
    Some(if under("/home") || under("/root") {
        "home files are declared per user, under `[users.NAME.files]`".into()
    } else if under("/var/log")
        || under("/run")
        || under("/tmp")
        || under("/var/tmp")
        || under("/var/cache")
    {
        "this area holds runtime state, which is mutable and never declared".into()
    } else if ["/usr", "/bin", "/sbin", "/lib", "/lib64", "/lib32", "/opt"]
        .iter()
        .any(|d| under(d))
    {
        "this area is provided by packages; install a package that ships the file".into()
    } else if under("/nexis") {
        "the store is written by nexis itself".into()
    } else {
        "the root filesystem is immutable; declared files live under /etc or /var/lib".into()
    })
}

/// Services generated from `[security]` when enabled, with the option that enables each.
fn security_services(spec: &SystemSpec) -> Vec<(&'static str, &'static str, bool)> {
    let s = &spec.security;
    vec![
        ("firewalld", "security.firewall.enable", s.firewall.enable),
        ("clamd", "security.clamav.enable", s.clamav.enable),
        (
            "freshclam",
            "security.clamav.freshclam",
            s.clamav.enable && s.clamav.freshclam,
        ),
        (
            "clamonacc",
            "security.clamav.on-access",
            s.clamav.enable && s.clamav.on_access,
        ),
        ("maldet", "security.maldet.enable", s.maldet.enable),
        ("falco", "security.falco.enable", s.falco.enable),
        ("suricata", "security.suricata.enable", s.suricata.enable),
    ]
}

fn services(v: &mut V<'_>, spec: &SystemSpec) {
    let generated = security_services(spec);
    for (name, svc) in &spec.services {
        let at = v.at(name);
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
            || name.starts_with('.')
        {
            // `@` is out: Dinit reads `NAME@ARG` as an instance of the template `NAME`.
            v.err(
                "invalid-value",
                at,
                format!("`{}` is not a valid service name", name.value),
                "invalid service name",
                Some("use letters, digits and `_.-` (not first: `.`)".into()),
            );
        }
        if BUILTIN_SERVICES.contains(&name.value.as_str()) {
            v.err(
                "conflict",
                at,
                format!("service `{}` is built in", name.value),
                "reserved name",
                Some("pick another name, or depend on the built-in one".into()),
            );
        }
        if let Some((_, option, _)) = generated.iter().find(|(n, _, _)| *n == name.value) {
            v.err(
                "conflict",
                at,
                format!("service `{}` is generated by {option}", name.value),
                "reserved name",
                Some(format!(
                    "configure it through `{}` instead",
                    option.trim_end_matches(".enable")
                )),
            );
        }
        service_fields(v, spec, &name.value, at, svc);
    }
    dependency_cycles(v, spec);
}

fn service_fields(v: &mut V<'_>, spec: &SystemSpec, name: &str, at: Span, svc: &Service) {
    let needs_command = !matches!(svc.kind, ServiceType::Internal | ServiceType::Triggered);
    match (&svc.command, needs_command) {
        (None, true) => v.err(
            "missing-key",
            at,
            format!("service `{name}` has no `command`"),
            "missing `command`",
            Some("add `command = \"…\"`, or `type = \"internal\"` for a milestone".into()),
        ),
        (Some(c), false) => v.err(
            "invalid-value",
            v.at(c),
            format!("service `{name}` is internal but has a `command`"),
            "never run",
            Some("remove `command` or choose another `type`".into()),
        ),
        (Some(c), true) if c.trim().is_empty() => v.err(
            "invalid-value",
            v.at(c),
            format!("service `{name}` has an empty `command`"),
            "empty",
            None,
        ),
        _ => {}
    }
    if svc.kind == ServiceType::Bgprocess && svc.pid_file.is_none() {
        v.err(
            "missing-key",
            at,
            format!("bgprocess service `{name}` has no `pid-file`"),
            "missing `pid-file`",
            Some("Dinit finds the forked process through its PID file".into()),
        );
    }
    if let Some(s) = &svc.stop_command
        && svc.kind != ServiceType::Scripted
    {
        v.err(
            "invalid-value",
            v.at(s),
            format!("`stop-command` of `{name}` applies to scripted services only"),
            "ignored for this type",
            Some("set `type = \"scripted\"` or drop `stop-command`".into()),
        );
    }
    for p in [&svc.pid_file, &svc.working_dir].into_iter().flatten() {
        check_abs_path(v, p, "path");
    }
    if let Some(log) = &svc.logfile
        && check_abs_path(v, log, "logfile")
        && !log.starts_with("/var/log/")
    {
        v.err(
            "policy",
            v.at(log),
            format!("logfile `{}` of `{name}` is outside /var/log", log.value),
            "logs belong in /var/log",
            Some("only /var/log, /run and /tmp are writable at run time".into()),
        );
    }
    if let Some(user) = &svc.user
        && !spec.users.contains_key(user.value.as_str())
        && user.value != "root"
    {
        v.err(
            "reference",
            v.at(user),
            format!(
                "service `{name}` runs as `{}`, who is not a declared user",
                user.value
            ),
            "unknown user",
            did_you_mean(user, spec.users.keys().map(|k| k.value.as_str())),
        );
    }
    if let Some(group) = &svc.group
        && !spec.groups.contains_key(group.value.as_str())
        && !BUILTIN_GROUPS.contains(&group.value.as_str())
    {
        v.err(
            "reference",
            v.at(group),
            format!(
                "service `{name}` runs with group `{}`, which is not declared",
                group.value
            ),
            "unknown group",
            None,
        );
    }
    for key in svc.environment.keys() {
        if !(key.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        {
            v.err(
                "invalid-value",
                v.at(key),
                format!("`{}` is not an environment variable name", key.value),
                "invalid name",
                Some("use letters, digits and `_`, not starting with a digit".into()),
            );
        }
    }
    let generated = security_services(spec);
    for dep in svc
        .depends_on
        .iter()
        .chain(&svc.depends_ms)
        .chain(&svc.waits_for)
    {
        let d = dep.value.as_str();
        if spec.services.contains_key(d) || BUILTIN_SERVICES.contains(&d) {
            continue;
        }
        if let Some((_, option, enabled)) = generated.iter().find(|(n, _, _)| *n == d) {
            if !enabled {
                v.err(
                    "reference",
                    v.at(dep),
                    format!("service `{name}` depends on `{d}`, which is not enabled"),
                    "not enabled",
                    Some(format!("set `{option} = true`")),
                );
            }
            continue;
        }
        let candidates: Vec<&str> = spec
            .services
            .keys()
            .map(|k| k.value.as_str())
            .chain(BUILTIN_SERVICES.iter().copied())
            .chain(generated.iter().filter(|g| g.2).map(|g| g.0))
            .collect();
        v.err(
            "reference",
            v.at(dep),
            format!("service `{name}` depends on unknown service `{d}`"),
            "unknown service",
            Some(
                did_you_mean(d, candidates)
                    .unwrap_or_else(|| format!("declare it with `[services.{d}]`")),
            ),
        );
    }
}

/// Report each cycle in the service dependency graph once, with its chain.
fn dependency_cycles(v: &mut V<'_>, spec: &SystemSpec) {
    let index: BTreeMap<&str, usize> = spec
        .services
        .keys()
        .enumerate()
        .map(|(i, n)| (n.value.as_str(), i))
        .collect();
    let mut graph = petgraph::graph::DiGraph::<&str, Span>::new();
    let nodes: Vec<_> = spec
        .services
        .keys()
        .map(|n| graph.add_node(n.value.as_str()))
        .collect();
    for (i, svc) in spec.services.values().enumerate() {
        for dep in svc
            .depends_on
            .iter()
            .chain(&svc.depends_ms)
            .chain(&svc.waits_for)
        {
            if let Some(&j) = index.get(dep.value.as_str()) {
                graph.add_edge(nodes[i], nodes[j], v.at(dep));
            }
        }
    }
    for cycle in crate::cycles::find(&graph, |n| (*n).to_owned()) {
        v.diags.push(
            Diagnostic::new(
                "cycle",
                format!(
                    "services depend on each other in a cycle: {}",
                    cycle.chain.join(" -> ")
                ),
            )
            .primary(cycle.closing, "this dependency closes the cycle")
            .help("Dinit could start none of them; remove one of these dependencies"),
        );
    }
}

fn security(v: &mut V<'_>, spec: &SystemSpec) {
    let s = &spec.security;
    for port in s
        .firewall
        .allowed_tcp_ports
        .iter()
        .chain(&s.firewall.allowed_udp_ports)
    {
        if port.value == 0 {
            v.err(
                "range",
                v.at(port),
                "port 0 cannot be opened".into(),
                "ports are 1–65535",
                None,
            );
        }
    }
    for iface in &s.firewall.trusted_interfaces {
        known_interface(v, spec, iface, "security.firewall.trusted-interfaces");
    }
    // The zone is also a file name, `/etc/firewalld/zones/ZONE.xml`; firewalld before
    // 1.0 allowed 17 characters.
    let zone = &s.firewall.default_zone;
    if !(1..=17).contains(&zone.len()) || !zone.chars().all(firewalld_name_char) {
        v.err(
            "invalid-value",
            v.at(zone),
            format!("`{}` is not a firewalld zone name", zone.value),
            "invalid zone name",
            Some("use 1–17 letters, digits, `_` and `-`".into()),
        );
    }
    for svc in &s.firewall.allowed_services {
        if svc.is_empty() || !svc.chars().all(firewalld_name_char) {
            v.err(
                "invalid-value",
                v.at(svc),
                format!("`{}` is not a firewalld service name", svc.value),
                "invalid service name",
                Some("firewalld's services are named with letters, digits, `_` and `-` (`ssh`, `http`)".into()),
            );
        }
    }
    // These go into line-based files (clamd.conf, maldet's monitor_paths) and YAML.
    for p in s
        .clamav
        .on_access_paths
        .iter()
        .chain(&s.clamav.exclude_paths)
        .chain(&s.maldet.monitor_paths)
        .chain(&s.falco.rules_files)
        .chain(&s.suricata.rules_files)
    {
        if p.contains(char::is_control) {
            v.err(
                "path",
                v.at(p),
                format!("path `{}` has a control character", p.value.escape_debug()),
                "control character",
                None,
            );
        }
    }
    let c = &s.clamav;
    if !(1..=50).contains(&c.checks_per_day.value) {
        v.err(
            "range",
            v.at(&c.checks_per_day),
            format!("checks-per-day is {}, outside 1–50", c.checks_per_day.value),
            "out of range",
            Some("freshclam checks at most 50 times a day".into()),
        );
    }
    if !(1..=4095).contains(&c.max_file_size_mb.value) {
        v.err(
            "range",
            v.at(&c.max_file_size_mb),
            format!(
                "max-file-size-mb is {}, outside 1–4095",
                c.max_file_size_mb.value
            ),
            "out of range",
            None,
        );
    }
    for p in c.on_access_paths.iter().chain(&c.exclude_paths) {
        check_abs_path(v, p, "path");
    }
    if c.enable && c.on_access && c.on_access_paths.is_empty() {
        v.diags.push(
            Diagnostic::new(
                "missing-key",
                "on-access scanning is on but `on-access-paths` is empty",
            )
            .primary(v.key(&["security", "clamav", "on-access"]), "needs paths")
            .help("list the directories to watch, e.g. `on-access-paths = [\"/home\"]`"),
        );
    }
    let m = &s.maldet;
    for p in &m.monitor_paths {
        check_abs_path(v, p, "path");
    }
    if m.enable && m.monitor_paths.is_empty() {
        v.diags.push(Diagnostic::new("missing-key", "maldet is enabled but `monitor-paths` is empty").primary(v.key(&["security", "maldet", "enable"]), "needs paths to watch").help("list the directories maldet watches, e.g. `monitor-paths = [\"/home\", \"/var/www\"]`"));
    }
    if m.enable && m.scan_engine == ScanEngine::Clamav && !c.enable {
        v.diags.push(
            Diagnostic::new(
                "reference",
                "maldet uses the ClamAV engine but ClamAV is not enabled",
            )
            .primary(
                v.key(&["security", "maldet", "scan-engine"]),
                "needs ClamAV",
            )
            .help(
                "set `security.clamav.enable = true` or `security.maldet.scan-engine = \"native\"`",
            ),
        );
    }
    if let Some(mail) = &m.email_alert {
        let ok = mail.split_once('@').is_some_and(|(a, b)| {
            !a.is_empty() && b.contains('.') && !mail.contains(char::is_whitespace)
        });
        if !ok {
            v.err(
                "invalid-value",
                v.at(mail),
                format!("`{}` is not a mail address", mail.value),
                "invalid address",
                None,
            );
        }
    }
    for f in s.falco.rules_files.iter().chain(&s.suricata.rules_files) {
        if !f.starts_with("${pkgs.") {
            check_abs_path(v, f, "rules file");
        }
    }
    let su = &s.suricata;
    if su.enable && su.interfaces.is_empty() {
        v.diags.push(
            Diagnostic::new(
                "missing-key",
                "suricata is enabled but `interfaces` is empty",
            )
            .primary(
                v.key(&["security", "suricata", "enable"]),
                "needs interfaces",
            )
            .help("list the interfaces to watch, e.g. `interfaces = [\"eth0\"]`"),
        );
    }
    for iface in &su.interfaces {
        known_interface(v, spec, iface, "security.suricata.interfaces");
    }
}

fn firewalld_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

/// When `[network.interfaces]` is declared, other sections may only name those (or `lo`).
fn known_interface(v: &mut V<'_>, spec: &SystemSpec, iface: &Spanned<String>, key: &str) {
    let declared = &spec.network.interfaces;
    if declared.is_empty() || iface.value == "lo" || declared.contains_key(iface.value.as_str()) {
        return;
    }
    v.err(
        "reference",
        v.at(iface),
        format!(
            "{key} names interface `{}`, which [network.interfaces] does not declare",
            iface.value
        ),
        "unknown interface",
        did_you_mean(iface, declared.keys().map(|k| k.value.as_str())),
    );
}

fn network(v: &mut V<'_>, spec: &SystemSpec) {
    for (name, iface) in &spec.network.interfaces {
        if name.is_empty()
            || name.len() > 15
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
        {
            v.err(
                "invalid-value",
                v.at(name),
                format!("`{}` is not an interface name", name.value),
                "invalid name",
                Some(
                    "Linux interface names have at most 15 letters, digits, `_`, `.` or `-`".into(),
                ),
            );
        }
        if !iface.dhcp && iface.addresses.is_empty() {
            v.err(
                "missing-key",
                v.at(name),
                format!(
                    "interface `{}` has neither `dhcp = true` nor `addresses`",
                    name.value
                ),
                "unconfigured",
                None,
            );
        }
    }
    for addr in spec.network.hosts.keys() {
        if addr.parse::<std::net::IpAddr>().is_err() {
            v.err(
                "invalid-value",
                v.at(addr),
                format!("`{}` in [network.hosts] is not an IP address", addr.value),
                "not an address",
                None,
            );
        }
    }
}
