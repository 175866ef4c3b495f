//! The typed configuration: what a whole machine is, after merging and validation.
//!
//! These types are the schema: the JSON Schema that editors use is generated from them,
//! and every key is kebab-case. Sets (`BTreeSet`) merge across modules as unions; every
//! other value must agree between modules unless priorities decide (see `merge`).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::de::Spanned;
use crate::version::{Version, VersionReq};

/// A whole system, as declared.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct SystemSpec {
    /// Flake inputs: name → reference (`path:./pkgs`, `git+https://…?ref=main`, `https://…/x.tar.gz`),
    /// or a table with the reference as `url` and `follows`.
    #[serde(default)]
    pub inputs: BTreeMap<Spanned<String>, InputSpec>,
    /// Host identity and locale.
    #[serde(default)]
    pub system: System,
    /// Boot loader and kernel.
    #[serde(default)]
    pub boot: Boot,
    /// System-wide packages.
    #[serde(default)]
    pub packages: Packages,
    /// User accounts, by login name.
    #[serde(default)]
    pub users: BTreeMap<Spanned<String>, User>,
    /// Groups, by name.
    #[serde(default)]
    pub groups: BTreeMap<Spanned<String>, Group>,
    /// Files under `/etc` and `/var/lib`, by absolute path.
    #[serde(default)]
    pub files: BTreeMap<Spanned<String>, FileSpec>,
    /// Dinit services, by name.
    #[serde(default)]
    pub services: BTreeMap<Spanned<String>, Service>,
    /// Security tools.
    #[serde(default)]
    pub security: Security,
    /// Network interfaces and name resolution.
    #[serde(default)]
    pub network: Network,
    /// The store: binary caches and the keys trusted to sign what they serve.
    #[serde(default)]
    pub store: StoreSettings,
    /// How packages are built: parallelism and what builds may see of the host.
    #[serde(default)]
    pub build: BuildConfig,
    /// Package recipes defined inline (the `self` input).
    #[serde(default)]
    pub recipes: BTreeMap<Spanned<String>, Recipe>,
}

/// `[store]`: where substitutes come from and whose signatures are trusted.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct StoreSettings {
    /// Binary caches asked for substitutes, in order: `file:///DIR`, `http://…`,
    /// `https://…`.
    #[serde(default)]
    pub substituters: Vec<Spanned<String>>,
    /// Public keys (`NAME:BASE64`, as `nexis store generate-key` prints them) whose
    /// signatures are accepted on substituted and imported paths (a set).
    #[serde(default)]
    pub trusted_public_keys: BTreeSet<Spanned<String>>,
    /// Refuse substituted and imported paths that no trusted key signed.
    #[serde(default = "yes")]
    pub require_signatures: bool,
}

impl Default for StoreSettings {
    fn default() -> StoreSettings {
        StoreSettings {
            substituters: Vec::new(),
            trusted_public_keys: BTreeSet::new(),
            require_signatures: true,
        }
    }
}

/// `[build]`: how packages are built.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct BuildConfig {
    /// Host paths every build sees read-only, at the same place (e.g. `/usr`, `/bin`,
    /// `/lib`, `/lib64` to use the host's compiler as a bootstrap toolchain). Recorded in
    /// each derivation: changing them changes every output path.
    #[serde(default)]
    pub extra_sandbox_paths: BTreeSet<Spanned<String>>,
    /// Builds run at once (default: the number of cores).
    pub max_jobs: Option<Spanned<u32>>,
    /// Cores one build may use, `NEXIS_BUILD_CORES` (default: the number of cores).
    pub cores: Option<Spanned<u32>>,
}

/// `[system]`: host identity and locale.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct System {
    /// Host name (RFC 1123: letters, digits and `-`, labels of at most 63 characters).
    #[serde(default = "default_hostname")]
    pub hostname: Spanned<String>,
    /// IANA time zone such as `UTC` or `Europe/Paris`.
    #[serde(default = "default_timezone")]
    pub timezone: Spanned<String>,
    /// Locale such as `en_US.UTF-8`.
    #[serde(default = "default_locale")]
    pub locale: Spanned<String>,
    /// Console keymap such as `us` or `de-latin1`.
    #[serde(default = "default_keymap")]
    pub keymap: Spanned<String>,
    /// The service supervisor that runs `[services]`: `dinit` (the default) or `runit`.
    #[serde(default)]
    pub init: Init,
}

/// Which supervisor runs the services.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Init {
    /// Dinit: one service description per service, `dinitctl` to control it.
    #[default]
    Dinit,
    /// runit-style supervision (`runsvdir`/`sv`, as runit and busybox provide).
    Runit,
}

impl fmt::Display for Init {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Init::Dinit => "dinit",
            Init::Runit => "runit",
        })
    }
}

fn default_hostname() -> Spanned<String> {
    Spanned::unspanned("nexis".into())
}
fn default_timezone() -> Spanned<String> {
    Spanned::unspanned("UTC".into())
}
fn default_locale() -> Spanned<String> {
    Spanned::unspanned("en_US.UTF-8".into())
}
fn default_keymap() -> Spanned<String> {
    Spanned::unspanned("us".into())
}

impl Default for System {
    fn default() -> System {
        System {
            hostname: default_hostname(),
            timezone: default_timezone(),
            locale: default_locale(),
            keymap: default_keymap(),
            init: Init::default(),
        }
    }
}

/// `[boot]`: boot loader, kernel and generations kept.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Boot {
    /// The boot loader.
    #[serde(default)]
    pub loader: BootLoader,
    /// The kernel package (a package reference); none for containers.
    pub kernel: Option<Spanned<PackageRef>>,
    /// Kernel command line parameters (a set: merged from all modules, sorted).
    #[serde(default)]
    pub kernel_params: BTreeSet<Spanned<String>>,
    /// Kernel modules to put into the initramfs.
    #[serde(default)]
    pub initrd_modules: BTreeSet<Spanned<String>>,
    /// How many generations keep a boot entry (1–1000).
    #[serde(default = "default_keep")]
    pub keep_generations: Spanned<u32>,
    /// Seconds the boot menu waits (0–600).
    #[serde(default = "default_timeout")]
    pub timeout: Spanned<u32>,
}

fn default_keep() -> Spanned<u32> {
    Spanned::unspanned(10)
}
fn default_timeout() -> Spanned<u32> {
    Spanned::unspanned(5)
}

impl Default for Boot {
    fn default() -> Boot {
        Boot {
            loader: BootLoader::default(),
            kernel: None,
            kernel_params: BTreeSet::new(),
            initrd_modules: BTreeSet::new(),
            keep_generations: default_keep(),
            timeout: default_timeout(),
        }
    }
}

/// Which boot loader writes the boot entries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum BootLoader {
    /// GRUB 2 (BIOS and UEFI).
    #[default]
    Grub,
    /// systemd-boot (Boot Loader Specification entries, UEFI only).
    SystemdBoot,
    /// No boot loader (containers, or managed elsewhere).
    None,
}

/// `[packages]`: what goes into the system profile.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Packages {
    /// Package references: `name`, `input#name`, with an optional `@requirement`.
    #[serde(default)]
    pub install: BTreeSet<Spanned<PackageRef>>,
    /// When two packages of `install` provide the same file in the system profile, the
    /// one with the higher priority provides it (0 by default). Keys are packages of
    /// `install`, written as there without the requirement (`busybox`, `core#coreutils`).
    #[serde(default)]
    pub priority: BTreeMap<Spanned<String>, Spanned<i32>>,
}

/// A reference to a package: `[input#]name[@requirement]`, e.g. `core#openssl@>=3`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PackageRef {
    text: String,
    /// The input named before `#`, if any.
    pub input: Option<String>,
    /// The package name.
    pub name: String,
    req: Option<(String, VersionReqKey)>,
}

/// `VersionReq` kept beside its text so `PackageRef` can derive `Ord` on the text.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct VersionReqKey(VersionReq);
impl PartialOrd for VersionReqKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for VersionReqKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.as_str().cmp(other.0.as_str())
    }
}

impl PackageRef {
    /// The version requirement after `@`, if any.
    pub fn requirement(&self) -> Option<&VersionReq> {
        self.req.as_ref().map(|(_, r)| &r.0)
    }

    /// The reference as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

/// Whether `s` is a valid package name: a letter or digit, then letters, digits, `._+-`.
pub(crate) fn valid_package_name(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._+-".contains(c))
}

/// Whether `s` is a valid input name: a letter, then letters, digits, `_-`.
pub(crate) fn valid_input_name(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_alphabetic())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-".contains(c))
}

/// Whether `s` names an input, or an input of an input: names joined by `/` (`core/base`).
pub(crate) fn valid_input_path(s: &str) -> bool {
    s.split('/').all(valid_input_name)
}

/// `[inputs.NAME]`: where an input comes from, and which of its own inputs are replaced
/// by inputs of this configuration.
///
/// Written as the reference alone (`core = "git+https://…"`) or as a table
/// (`core = { url = "git+https://…", follows = { base = "base" } }`).
#[derive(Debug, Clone)]
pub struct InputSpec {
    /// The input reference.
    pub url: Spanned<String>,
    /// The input's own inputs (by name, or `a/b` for deeper ones) that are this
    /// configuration's input of the given name (`base`, or `core/base`) instead.
    pub follows: BTreeMap<Spanned<String>, Spanned<String>>,
}

impl InputSpec {
    /// An input given by its reference alone.
    pub fn new(url: impl Into<String>) -> InputSpec {
        InputSpec {
            url: Spanned::unspanned(url.into()),
            follows: BTreeMap::new(),
        }
    }
}

impl Serialize for InputSpec {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        if self.follows.is_empty() {
            return self.url.serialize(s);
        }
        let mut m = s.serialize_map(Some(2))?;
        m.serialize_entry("url", &self.url)?;
        m.serialize_entry("follows", &self.follows)?;
        m.end()
    }
}

/// The table form of [`InputSpec`].
#[derive(Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct InputTable {
    url: Spanned<String>,
    #[serde(default)]
    follows: BTreeMap<Spanned<String>, Spanned<String>>,
}

/// Either form of [`InputSpec`], before the reference of the short form gets its span.
enum RawInput {
    Url(String),
    Table(InputTable),
}

impl<'de> Deserialize<'de> for RawInput {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<RawInput, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = RawInput;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an input reference, or a table with `url` and `follows`")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<RawInput, E> {
                Ok(RawInput::Url(s.to_owned()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<RawInput, A::Error> {
                InputTable::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(RawInput::Table)
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for InputSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<InputSpec, D::Error> {
        let raw = Spanned::<RawInput>::deserialize(d)?;
        Ok(match raw.value {
            RawInput::Url(url) => InputSpec {
                url: Spanned {
                    span: raw.span,
                    value: url,
                },
                follows: BTreeMap::new(),
            },
            RawInput::Table(t) => InputSpec {
                url: t.url,
                follows: t.follows,
            },
        })
    }
}

impl JsonSchema for InputSpec {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "InputSpec".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let reference = "An input reference: `path:./dir`, `git+https://host/repo?ref=main`, `git+file:///path`, `https://host/x.tar.gz`";
        schemars::json_schema!({
            "description": "An input: its reference, or a table with the reference as `url` and the inner inputs that follow this configuration's",
            "anyOf": [
                { "type": "string", "description": reference },
                {
                    "type": "object",
                    "additionalProperties": false,
                    "required": ["url"],
                    "properties": {
                        "url": { "type": "string", "description": reference },
                        "follows": {
                            "type": "object",
                            "description": "inner input (`base`, `base/libs`) → this configuration's input (`base`, `core/base`)",
                            "additionalProperties": { "type": "string" }
                        }
                    }
                }
            ]
        })
    }
}

impl FromStr for PackageRef {
    type Err = String;

    fn from_str(text: &str) -> Result<PackageRef, String> {
        let (head, req) = match text.split_once('@') {
            Some((_, "")) => {
                return Err(format!(
                    "`{text}` ends with `@`; write a requirement after it, e.g. `{text}>=1.2`"
                ));
            }
            Some((h, r)) => (h, Some(r)),
            None => (text, None),
        };
        let (input, name) = match head.split_once('#') {
            Some((i, n)) => (Some(i), n),
            None => (None, head),
        };
        if let Some(input) = input
            && !valid_input_path(input)
        {
            return Err(format!(
                "`{text}`: `{input}` is not an input name (a letter, then letters, digits, `_` or `-`, with `/` between nested inputs: `core/base`)"
            ));
        }
        if !valid_package_name(name) {
            return Err(format!(
                "`{text}` is not a package reference; write `name`, `input#name` or `name@>=1.2`"
            ));
        }
        let req = match req {
            Some(r) => Some((
                r.to_owned(),
                VersionReqKey(r.parse().map_err(|e| format!("`{text}`: {e}"))?),
            )),
            None => None,
        };
        Ok(PackageRef {
            text: text.into(),
            input: input.map(str::to_owned),
            name: name.into(),
            req,
        })
    }
}

impl fmt::Display for PackageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Implement serde and schemars for a type that is written as a validated string.
macro_rules! string_type {
    ($ty:ty, $desc:literal) => {
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
        impl JsonSchema for $ty {
            fn schema_name() -> std::borrow::Cow<'static, str> {
                stringify!($ty).into()
            }
            fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
                schemars::json_schema!({ "type": "string", "description": $desc })
            }
        }
    };
}

string_type!(
    PackageRef,
    "A package reference: `name`, `input#name`, optionally `@requirement` such as `@>=1.2, <2`"
);

/// `[users.NAME]`: a user account.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct User {
    /// Numeric user id; allocated when absent (1000–59999 for people, 100–999 for system users).
    pub uid: Option<Spanned<u32>>,
    /// A system account (no login shell by default, uid below 1000).
    #[serde(default)]
    pub system: bool,
    /// Full name or purpose (GECOS field).
    #[serde(default)]
    pub description: String,
    /// Home directory; `/home/NAME` by default (`/var/empty` for system users).
    pub home: Option<Spanned<String>>,
    /// Login shell: an absolute path or `${pkgs.NAME}/bin/…`.
    pub shell: Option<Spanned<String>>,
    /// Supplementary groups (declared in `[groups]` or built in).
    #[serde(default)]
    pub groups: BTreeSet<Spanned<String>>,
    /// Password hash in crypt(3) form (`$6$…`, `$y$…`), or `!` for a locked account.
    pub password_hash: Option<Spanned<String>>,
    /// SSH public keys allowed to log in.
    #[serde(default)]
    pub authorized_keys: BTreeSet<Spanned<String>>,
    /// Packages in this user's profile.
    #[serde(default)]
    pub packages: BTreeSet<Spanned<PackageRef>>,
    /// Declared files in the home directory, by path relative to it (`.config/git/config`).
    #[serde(default)]
    pub files: BTreeMap<Spanned<String>, HomeFile>,
}

/// A declared file in a user's home directory.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct HomeFile {
    /// The file's content.
    pub text: Option<Spanned<String>>,
    /// Or: a file to copy, relative to the module that declares it.
    pub source: Option<Spanned<String>>,
    /// Substitute `${…}` in `source` as in `text`.
    #[serde(default)]
    pub template: bool,
    /// Variables for `${vars.NAME}` in this file.
    #[serde(default)]
    pub vars: BTreeMap<String, String>,
    /// Permission bits, `"0644"` by default.
    pub mode: Option<Spanned<Mode>>,
}

/// `[groups.NAME]`: a group.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Group {
    /// Numeric group id; allocated when absent.
    pub gid: Option<Spanned<u32>>,
    /// A system group (gid below 1000).
    #[serde(default)]
    pub system: bool,
    /// Members, besides users that list this group themselves.
    #[serde(default)]
    pub members: BTreeSet<Spanned<String>>,
}

/// `[files."/etc/…"]`: a declared system file.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct FileSpec {
    /// The file's content (`${…}` is substituted).
    pub text: Option<Spanned<String>>,
    /// Or: a file to copy, relative to the module that declares it.
    pub source: Option<Spanned<String>>,
    /// Substitute `${…}` in `source` as in `text`.
    #[serde(default)]
    pub template: bool,
    /// Variables for `${vars.NAME}` in this file.
    #[serde(default)]
    pub vars: BTreeMap<String, String>,
    /// Permission bits, `"0644"` by default.
    pub mode: Option<Spanned<Mode>>,
    /// Owner (a user), `root` by default.
    pub owner: Option<Spanned<String>>,
    /// Group, `root` by default.
    pub group: Option<Spanned<String>>,
}

/// Unix permission bits, written as an octal string (`"0644"`) or a TOML octal (`0o644`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Mode(pub u32);

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04o}", self.0)
    }
}

impl FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Mode, String> {
        if !(3..=4).contains(&s.len()) || !s.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
            return Err(format!(
                "`{s}` is not a file mode; write three or four octal digits such as \"0644\""
            ));
        }
        Mode::check(u32::from_str_radix(s, 8).expect("octal digits"))
    }
}

impl Mode {
    fn check(bits: u32) -> Result<Mode, String> {
        if bits > 0o7777 {
            return Err(format!("mode {bits:o} is larger than 7777"));
        }
        if bits & 0o7000 != 0 {
            return Err(format!(
                "mode {bits:04o} sets setuid, setgid or sticky bits, which declared files may not carry"
            ));
        }
        if bits & 0o002 != 0 {
            return Err(format!(
                "mode {bits:04o} makes the file world-writable; declared files are immutable"
            ));
        }
        Ok(Mode(bits))
    }
}

impl Serialize for Mode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Mode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Mode, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Mode;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a file mode such as \"0644\"")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Mode, E> {
                s.parse().map_err(E::custom)
            }
            fn visit_i64<E: serde::de::Error>(self, i: i64) -> Result<Mode, E> {
                let bits =
                    u32::try_from(i).map_err(|_| E::custom(format!("{i} is not a file mode")))?;
                Mode::check(bits).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

impl JsonSchema for Mode {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Mode".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "Permission bits as three or four octal digits, e.g. \"0644\"",
            "anyOf": [
                { "type": "string", "pattern": "^[0-7]{3,4}$" },
                { "type": "integer", "minimum": 0, "maximum": 511 }
            ]
        })
    }
}

/// `[services.NAME]`: a Dinit service.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Service {
    /// Dinit service type.
    #[serde(default, rename = "type")]
    pub kind: ServiceType,
    /// The command to run (required except for `internal` and `triggered` services).
    pub command: Option<Spanned<String>>,
    /// The command that stops a `scripted` service.
    pub stop_command: Option<Spanned<String>>,
    /// PID file of a `bgprocess` service.
    pub pid_file: Option<Spanned<String>>,
    /// Hard dependencies: started first, and this service stops if they stop.
    #[serde(default)]
    pub depends_on: BTreeSet<Spanned<String>>,
    /// Milestone dependencies: must start first, may stop later.
    #[serde(default)]
    pub depends_ms: BTreeSet<Spanned<String>>,
    /// Soft dependencies: started first, failures tolerated.
    #[serde(default)]
    pub waits_for: BTreeSet<Spanned<String>>,
    /// Restart policy: `true`/`"always"`, `"on-failure"`, `false`/`"never"`.
    #[serde(default)]
    pub restart: Restart,
    /// Run as this user (declared in `[users]`, or `root`).
    pub user: Option<Spanned<String>>,
    /// Run with this group.
    pub group: Option<Spanned<String>>,
    /// Log file (an absolute path under `/var/log`).
    pub logfile: Option<Spanned<String>>,
    /// Working directory (an absolute path).
    pub working_dir: Option<Spanned<String>>,
    /// Environment variables.
    #[serde(default)]
    pub environment: BTreeMap<Spanned<String>, String>,
    /// Start at boot (the service is installed either way).
    #[serde(default = "yes")]
    pub enable: bool,
}

fn yes() -> bool {
    true
}

/// Dinit's service types.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ServiceType {
    /// A long-running process supervised directly.
    #[default]
    Process,
    /// A process that forks into the background and writes a PID file.
    Bgprocess,
    /// A command that starts something and exits; `stop-command` stops it.
    Scripted,
    /// A grouping service with no process (a milestone).
    Internal,
    /// Started when an external trigger says so.
    Triggered,
}

/// When Dinit restarts a service.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Restart {
    /// Always restart when it stops.
    Always,
    /// Restart only when it exits with an error or a signal.
    OnFailure,
    /// Never restart.
    #[default]
    Never,
}

impl Serialize for Restart {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(match self {
            Restart::Always => "always",
            Restart::OnFailure => "on-failure",
            Restart::Never => "never",
        })
    }
}

impl<'de> Deserialize<'de> for Restart {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Restart, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Restart;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("true, false, \"always\", \"on-failure\" or \"never\"")
            }
            fn visit_bool<E: serde::de::Error>(self, b: bool) -> Result<Restart, E> {
                Ok(if b { Restart::Always } else { Restart::Never })
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Restart, E> {
                match s {
                    "always" => Ok(Restart::Always),
                    "on-failure" => Ok(Restart::OnFailure),
                    "never" => Ok(Restart::Never),
                    other => Err(E::unknown_variant(
                        other,
                        &["always", "on-failure", "never"],
                    )),
                }
            }
        }
        d.deserialize_any(V)
    }
}

impl JsonSchema for Restart {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Restart".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "Restart policy",
            "anyOf": [
                { "type": "boolean" },
                { "enum": ["always", "on-failure", "never"] }
            ]
        })
    }
}

/// `[security]`: the security tools.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Security {
    /// firewalld.
    #[serde(default)]
    pub firewall: Firewall,
    /// ClamAV antivirus (clamd and freshclam).
    #[serde(default)]
    pub clamav: Clamav,
    /// Linux Malware Detect.
    #[serde(default)]
    pub maldet: Maldet,
    /// Falco runtime security.
    #[serde(default)]
    pub falco: Falco,
    /// Suricata network IDS/IPS.
    #[serde(default)]
    pub suricata: Suricata,
}

fn pkg_default(name: &str) -> Spanned<PackageRef> {
    Spanned::unspanned(name.parse().expect("built-in package names are valid"))
}

/// `[security.firewall]`: firewalld.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Firewall {
    /// Run firewalld (service `firewalld`).
    #[serde(default)]
    pub enable: bool,
    /// The package providing firewalld.
    #[serde(default = "firewall_pkg")]
    pub package: Spanned<PackageRef>,
    /// Zone for interfaces not otherwise assigned.
    #[serde(default = "public_zone")]
    pub default_zone: Spanned<String>,
    /// TCP ports open in the default zone (1–65535).
    #[serde(default)]
    pub allowed_tcp_ports: BTreeSet<Spanned<u16>>,
    /// UDP ports open in the default zone (1–65535).
    #[serde(default)]
    pub allowed_udp_ports: BTreeSet<Spanned<u16>>,
    /// firewalld service names allowed in the default zone (`ssh`, `http`, …).
    #[serde(default)]
    pub allowed_services: BTreeSet<Spanned<String>>,
    /// Interfaces put in the `trusted` zone.
    #[serde(default)]
    pub trusted_interfaces: BTreeSet<Spanned<String>>,
    /// Log denied packets.
    #[serde(default)]
    pub log_denied: LogDenied,
}

fn firewall_pkg() -> Spanned<PackageRef> {
    pkg_default("firewalld")
}
fn public_zone() -> Spanned<String> {
    Spanned::unspanned("public".into())
}

impl Default for Firewall {
    fn default() -> Firewall {
        Firewall {
            enable: false,
            package: firewall_pkg(),
            default_zone: public_zone(),
            allowed_tcp_ports: BTreeSet::new(),
            allowed_udp_ports: BTreeSet::new(),
            allowed_services: BTreeSet::new(),
            trusted_interfaces: BTreeSet::new(),
            log_denied: LogDenied::default(),
        }
    }
}

/// firewalld's `LogDenied` setting.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum LogDenied {
    /// Log nothing.
    #[default]
    Off,
    /// Log every denied packet.
    All,
    /// Unicast only.
    Unicast,
    /// Broadcast only.
    Broadcast,
    /// Multicast only.
    Multicast,
}

/// `[security.clamav]`: ClamAV.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Clamav {
    /// Run the clamd daemon (service `clamd`).
    #[serde(default)]
    pub enable: bool,
    /// The package providing ClamAV.
    #[serde(default = "clamav_pkg")]
    pub package: Spanned<PackageRef>,
    /// Keep signatures fresh with freshclam (service `freshclam`).
    #[serde(default = "yes")]
    pub freshclam: bool,
    /// Signature checks per day (1–50, freshclam's `Checks`).
    #[serde(default = "default_checks")]
    pub checks_per_day: Spanned<u32>,
    /// Scan files when they are opened (clamonacc) under `on-access-paths`.
    #[serde(default)]
    pub on_access: bool,
    /// Absolute paths watched by on-access scanning.
    #[serde(default)]
    pub on_access_paths: BTreeSet<Spanned<String>>,
    /// Absolute paths never scanned.
    #[serde(default)]
    pub exclude_paths: BTreeSet<Spanned<String>>,
    /// Largest file scanned, in MiB (1–4095).
    #[serde(default = "default_max_file")]
    pub max_file_size_mb: Spanned<u32>,
}

fn clamav_pkg() -> Spanned<PackageRef> {
    pkg_default("clamav")
}
fn default_checks() -> Spanned<u32> {
    Spanned::unspanned(12)
}
fn default_max_file() -> Spanned<u32> {
    Spanned::unspanned(100)
}

impl Default for Clamav {
    fn default() -> Clamav {
        Clamav {
            enable: false,
            package: clamav_pkg(),
            freshclam: true,
            checks_per_day: default_checks(),
            on_access: false,
            on_access_paths: BTreeSet::new(),
            exclude_paths: BTreeSet::new(),
            max_file_size_mb: default_max_file(),
        }
    }
}

/// `[security.maldet]`: Linux Malware Detect.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Maldet {
    /// Run maldet's inotify monitor (service `maldet`).
    #[serde(default)]
    pub enable: bool,
    /// The package providing maldet.
    #[serde(default = "maldet_pkg")]
    pub package: Spanned<PackageRef>,
    /// Absolute paths monitored.
    #[serde(default)]
    pub monitor_paths: BTreeSet<Spanned<String>>,
    /// Move hits to quarantine instead of only reporting them.
    #[serde(default)]
    pub quarantine: bool,
    /// Scan engine: maldet's own, or ClamAV's (needs `security.clamav.enable`).
    #[serde(default)]
    pub scan_engine: ScanEngine,
    /// Mail address for alerts.
    pub email_alert: Option<Spanned<String>>,
}

fn maldet_pkg() -> Spanned<PackageRef> {
    pkg_default("maldet")
}

impl Default for Maldet {
    fn default() -> Maldet {
        Maldet {
            enable: false,
            package: maldet_pkg(),
            monitor_paths: BTreeSet::new(),
            quarantine: false,
            scan_engine: ScanEngine::default(),
            email_alert: None,
        }
    }
}

/// maldet's scan engine.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ScanEngine {
    /// maldet's own signatures.
    #[default]
    Native,
    /// ClamAV's engine.
    Clamav,
}

/// `[security.falco]`: Falco.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Falco {
    /// Run Falco (service `falco`).
    #[serde(default)]
    pub enable: bool,
    /// The package providing Falco.
    #[serde(default = "falco_pkg")]
    pub package: Spanned<PackageRef>,
    /// How Falco sees system calls.
    #[serde(default)]
    pub driver: FalcoDriver,
    /// Extra rules files (absolute paths, or `${pkgs.…}` paths).
    #[serde(default)]
    pub rules_files: BTreeSet<Spanned<String>>,
    /// Write alerts as JSON.
    #[serde(default)]
    pub json_output: bool,
    /// Lowest priority reported.
    #[serde(default)]
    pub priority: FalcoPriority,
}

fn falco_pkg() -> Spanned<PackageRef> {
    pkg_default("falco")
}

impl Default for Falco {
    fn default() -> Falco {
        Falco {
            enable: false,
            package: falco_pkg(),
            driver: FalcoDriver::default(),
            rules_files: BTreeSet::new(),
            json_output: false,
            priority: FalcoPriority::default(),
        }
    }
}

/// Falco's event source.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum FalcoDriver {
    /// CO-RE eBPF probe built into Falco (kernel 5.8+).
    #[default]
    ModernEbpf,
    /// Classic eBPF probe.
    Ebpf,
    /// Kernel module.
    Kmod,
}

/// Falco rule priorities.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
#[allow(missing_docs)]
pub enum FalcoPriority {
    Emergency,
    Alert,
    Critical,
    Error,
    Warning,
    #[default]
    Notice,
    Informational,
    Debug,
}

/// `[security.suricata]`: Suricata.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Suricata {
    /// Run Suricata (service `suricata`).
    #[serde(default)]
    pub enable: bool,
    /// The package providing Suricata.
    #[serde(default = "suricata_pkg")]
    pub package: Spanned<PackageRef>,
    /// Interfaces to watch (at least one when enabled).
    #[serde(default)]
    pub interfaces: BTreeSet<Spanned<String>>,
    /// Detect only (`ids`) or also block (`ips`, through NFQUEUE).
    #[serde(default)]
    pub mode: SuricataMode,
    /// `HOME_NET`: the networks to protect, in CIDR form.
    #[serde(default)]
    pub home_net: BTreeSet<Spanned<Cidr>>,
    /// Rules files (absolute paths, or `${pkgs.…}` paths).
    #[serde(default)]
    pub rules_files: BTreeSet<Spanned<String>>,
}

fn suricata_pkg() -> Spanned<PackageRef> {
    pkg_default("suricata")
}

impl Default for Suricata {
    fn default() -> Suricata {
        Suricata {
            enable: false,
            package: suricata_pkg(),
            interfaces: BTreeSet::new(),
            mode: SuricataMode::default(),
            home_net: BTreeSet::new(),
            rules_files: BTreeSet::new(),
        }
    }
}

/// Suricata's mode.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum SuricataMode {
    /// Detect and alert.
    #[default]
    Ids,
    /// Detect and drop (inline, through NFQUEUE).
    Ips,
}

/// An IP network in CIDR form (`192.168.1.0/24`, `fd00::/8`) or a single address.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cidr {
    /// The address.
    pub addr: std::net::IpAddr,
    /// The prefix length.
    pub prefix: u8,
}

impl FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Cidr, String> {
        let bad = || format!("`{s}` is not an address in CIDR form such as 192.168.1.10/24");
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: std::net::IpAddr = addr.parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(bad)?,
            None => max,
        };
        Ok(Cidr { addr, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

string_type!(
    Cidr,
    "An IP address with prefix length, e.g. 192.168.1.10/24"
);

/// An IP address (v4 or v6).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IpAddr(pub std::net::IpAddr);

impl FromStr for IpAddr {
    type Err = String;
    fn from_str(s: &str) -> Result<IpAddr, String> {
        s.parse()
            .map(IpAddr)
            .map_err(|_| format!("`{s}` is not an IP address"))
    }
}

impl fmt::Display for IpAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

string_type!(IpAddr, "An IPv4 or IPv6 address");

/// `[network]`: interfaces and name resolution.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Network {
    /// Interfaces by name (`eth0`, `enp1s0`).
    #[serde(default)]
    pub interfaces: BTreeMap<Spanned<String>, Interface>,
    /// DNS servers for `/etc/resolv.conf`.
    #[serde(default)]
    pub nameservers: BTreeSet<Spanned<IpAddr>>,
    /// Extra `/etc/hosts` entries: address → names.
    #[serde(default)]
    pub hosts: BTreeMap<Spanned<String>, BTreeSet<String>>,
}

/// `[network.interfaces.NAME]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Interface {
    /// Configure with DHCP.
    #[serde(default)]
    pub dhcp: bool,
    /// Static addresses in CIDR form.
    #[serde(default)]
    pub addresses: BTreeSet<Spanned<Cidr>>,
    /// Default gateway.
    pub gateway: Option<Spanned<IpAddr>>,
}

/// A package recipe: `packages/NAME.toml` in an input, or `[recipes.NAME]` inline.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Recipe {
    /// Package name; must match the file name (or the `[recipes.NAME]` key).
    pub name: Option<Spanned<String>>,
    /// Version, starting with a digit (`2.12.1`, `9.6p1`).
    pub version: Spanned<VersionString>,
    /// One-line description.
    pub description: Option<String>,
    /// SPDX license expression.
    pub license: Option<String>,
    /// Project home page.
    pub homepage: Option<String>,
    /// Where the source comes from; none for packages built from the script alone.
    pub source: Option<RecipeSource>,
    /// How it is built.
    #[serde(default)]
    pub build: Build,
}

/// A version as written in a recipe, validated.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VersionString(pub Version);

impl FromStr for VersionString {
    type Err = String;
    fn from_str(s: &str) -> Result<VersionString, String> {
        Version::parse(s)
            .map(VersionString)
            .map_err(|e| e.to_string())
    }
}

impl fmt::Display for VersionString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

string_type!(VersionString, "A version such as 2.12.1");

/// `[source]` of a recipe: exactly one of `url`, `git`, `path`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct RecipeSource {
    /// A tarball or file URL (needs `hash`).
    pub url: Option<Spanned<String>>,
    /// Further URLs for the same file, tried in order.
    #[serde(default)]
    pub mirrors: Vec<Spanned<String>>,
    /// A git repository URL (needs `rev`).
    pub git: Option<Spanned<String>>,
    /// The git commit: 40 hexadecimal digits.
    pub rev: Option<Spanned<String>>,
    /// A directory or file inside the input, relative to the recipe.
    pub path: Option<Spanned<String>>,
    /// Content hash in SRI form: `sha256-…` or `blake3-…` (base64).
    pub hash: Option<Spanned<Hash>>,
    /// Patches applied in order, relative to the recipe.
    #[serde(default)]
    pub patches: Vec<Spanned<String>>,
}

/// A content hash in SRI form.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Hash {
    /// `sha256` or `blake3`.
    pub algorithm: String,
    /// The base64 digest.
    pub digest: String,
}

impl FromStr for Hash {
    type Err = String;
    fn from_str(s: &str) -> Result<Hash, String> {
        let bad = |why: &str| {
            format!(
                "`{s}` is not a hash: {why}; write `sha256-` or `blake3-` and 44 base64 characters"
            )
        };
        let (alg, digest) = s
            .split_once('-')
            .ok_or_else(|| bad("no algorithm prefix"))?;
        if alg != "sha256" && alg != "blake3" {
            return Err(bad(&format!("unknown algorithm `{alg}`")));
        }
        let b64 = |c: u8| c.is_ascii_alphanumeric() || c == b'+' || c == b'/';
        let body = digest.strip_suffix('=').unwrap_or(digest);
        if digest.len() != 44 || !digest.ends_with('=') || !body.bytes().all(b64) {
            return Err(bad("the digest is not 32 bytes of base64"));
        }
        Ok(Hash {
            algorithm: alg.into(),
            digest: digest.into(),
        })
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.algorithm, self.digest)
    }
}

string_type!(Hash, "SRI hash: sha256-<base64> or blake3-<base64>");

/// `[build]` of a recipe.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Build {
    /// The build system.
    #[serde(default)]
    pub system: BuildSystem,
    /// Build-time dependencies (package references).
    #[serde(default)]
    pub deps: BTreeSet<Spanned<PackageRef>>,
    /// Run-time dependencies (package references).
    #[serde(default)]
    pub runtime_deps: BTreeSet<Spanned<PackageRef>>,
    /// Extra arguments to the configure step, in order.
    #[serde(default)]
    pub flags: Vec<String>,
    /// The build script (`system = "script"` only): run by `sh -e` in the source directory.
    pub script: Option<Spanned<String>>,
    /// Extra environment variables for the build.
    #[serde(default)]
    pub env: BTreeMap<Spanned<String>, String>,
}

/// How a recipe is built.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum BuildSystem {
    /// `./configure && make && make install`.
    #[default]
    Autotools,
    /// `make && make install PREFIX=$out`.
    Make,
    /// CMake with Ninja or make.
    Cmake,
    /// Meson and Ninja.
    Meson,
    /// `cargo build --release` and install.
    Cargo,
    /// The recipe's own `script`.
    Script,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_refs() {
        let r: PackageRef = "core#openssl@>=3, <4".parse().unwrap();
        assert_eq!(r.input.as_deref(), Some("core"));
        assert_eq!(r.name, "openssl");
        assert_eq!(r.requirement().unwrap().as_str(), ">=3, <4");
        assert!("bad name".parse::<PackageRef>().is_err());
        assert!("1x#foo".parse::<PackageRef>().is_err());
        assert!("foo@=>2".parse::<PackageRef>().is_err());
    }

    #[test]
    fn modes() {
        assert_eq!("0644".parse::<Mode>().unwrap(), Mode(0o644));
        assert!("0844".parse::<Mode>().is_err());
        assert!("4755".parse::<Mode>().is_err());
        assert!("0666".parse::<Mode>().is_err());
    }

    #[test]
    fn hashes_and_cidrs() {
        let h = "sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=";
        assert_eq!(h.parse::<Hash>().unwrap().to_string(), h);
        assert!("md5-abc".parse::<Hash>().is_err());
        assert!("10.0.0.1/33".parse::<Cidr>().is_err());
        assert_eq!("10.0.0.1".parse::<Cidr>().unwrap().prefix, 32);
    }
}
