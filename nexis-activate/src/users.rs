//! Users and groups: stable numeric ids and the account files (`passwd`, `group`,
//! `shadow`, `gshadow`).
//!
//! Ids given in the configuration are used as they are. The others are allocated once
//! and recorded in the root's state (`/nexis/var/nexis/ids.json`), never forgotten: a
//! user removed from the configuration keeps its entry, so its uid is not given to a new
//! user (files it owned would change hands), and it gets the same uid back if it
//! returns. People get ids from 1000 up, system accounts from 400 up to 999; the
//! lowest id free in the range is taken.
//!
//! Built-in accounts have fixed ids: `root` (0), `nobody`/`nogroup` (65534), and the
//! groups of [`BUILTIN_GROUP_IDS`]. A person's primary group is `users`, a system
//! account's is `nogroup`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};

use nexis_config::SystemSpec;
use serde::{Deserialize, Serialize};

/// The built-in groups and their fixed ids (the names `nexis_config` accepts without a
/// declaration).
pub const BUILTIN_GROUP_IDS: &[(&str, u32)] = &[
    ("root", 0),
    ("wheel", 1),
    ("tty", 5),
    ("disk", 6),
    ("dialout", 20),
    ("audio", 63),
    ("video", 26),
    ("input", 24),
    ("kvm", 61),
    ("network", 90),
    ("log", 91),
    ("users", 100),
    ("nogroup", 65534),
];

/// The state file of allocated ids, relative to the store's state folder.
pub const IDS_FILE: &str = "ids.json";

const PEOPLE: (u32, u32) = (1000, 59999);
const SYSTEM: (u32, u32) = (400, 999);
const NOBODY: u32 = 65534;

/// Every id ever given to a user or group name on this root.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Ids {
    /// User name → uid.
    pub users: BTreeMap<String, u32>,
    /// Group name → gid.
    pub groups: BTreeMap<String, u32>,
}

/// Accounts could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum AccountsError {
    /// The id state cannot be read or written.
    #[error("the id state {}", path.display())]
    State {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A declared id belongs to a built-in account.
    #[error(
        "{noun} `{name}` asks for {key} {id}, which is the built-in {noun} `{owner}`'s; leave `{key}` out to have one allocated"
    )]
    Builtin {
        /// `user` or `group`.
        noun: &'static str,
        /// `uid` or `gid`.
        key: &'static str,
        /// The declared account.
        name: String,
        /// The id.
        id: u32,
        /// The built-in account.
        owner: String,
    },
    /// No id is left in a range.
    #[error("no {key} is free for {noun} `{name}` in {}–{}", range.0, range.1)]
    Exhausted {
        /// `user` or `group`.
        noun: &'static str,
        /// `uid` or `gid`.
        key: &'static str,
        /// The account.
        name: String,
        /// The range searched.
        range: (u32, u32),
    },
}

impl Ids {
    /// The state of the root whose state folder is `state_dir` (empty when none yet).
    pub fn load(state_dir: &Path) -> Result<Ids, AccountsError> {
        let path = state_dir.join(IDS_FILE);
        let err = |source| AccountsError::State {
            path: path.clone(),
            source,
        };
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| err(io::Error::new(io::ErrorKind::InvalidData, e))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Ids::default()),
            Err(e) => Err(err(e)),
        }
    }

    /// Write the state (atomically: temporary, sync, rename, sync the folder).
    pub fn save(&self, state_dir: &Path) -> Result<(), AccountsError> {
        let path = state_dir.join(IDS_FILE);
        let mut text = serde_json::to_string_pretty(self).expect("ids serialise");
        text.push('\n');
        crate::fsutil::write_atomic(&path, text.as_bytes())
            .map_err(|source| AccountsError::State { path, source })
    }
}

/// A user account as the system has it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct UserEntry {
    /// Numeric id.
    pub uid: u32,
    /// Primary group's id.
    pub gid: u32,
    /// GECOS field.
    pub description: String,
    /// Home directory.
    pub home: String,
    /// Login shell.
    pub shell: String,
    /// Supplementary groups.
    pub groups: BTreeSet<String>,
    /// A system account.
    pub system: bool,
}

/// A group as the system has it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct GroupEntry {
    /// Numeric id.
    pub gid: u32,
    /// Members (user names).
    pub members: BTreeSet<String>,
}

/// Every account of a system, with the secrets that stay out of the manifest.
#[derive(Debug, Clone, Default)]
pub struct Accounts {
    /// Users by name, `root` and `nobody` included.
    pub users: BTreeMap<String, UserEntry>,
    /// Groups by name, the built-in ones included.
    pub groups: BTreeMap<String, GroupEntry>,
    /// Password hashes (`!` when locked) by user name.
    passwords: BTreeMap<String, String>,
}

/// Give every account of `spec` its ids, allocating (and recording in `ids`) those the
/// configuration leaves out. `subst` replaces `${pkgs.…}` in shells.
pub fn accounts(
    spec: &SystemSpec,
    ids: &mut Ids,
    subst: &dyn Fn(&str) -> String,
) -> Result<Accounts, AccountsError> {
    let mut out = Accounts::default();
    for &(name, gid) in BUILTIN_GROUP_IDS {
        out.groups.insert(
            name.to_owned(),
            GroupEntry {
                gid,
                members: BTreeSet::new(),
            },
        );
    }
    let builtin_gids: BTreeMap<u32, &str> =
        BUILTIN_GROUP_IDS.iter().map(|&(n, g)| (g, n)).collect();
    // Explicit ids first, so that allocation steps around them.
    let explicit_gids: BTreeSet<u32> = spec
        .groups
        .values()
        .filter_map(|g| g.gid.as_ref().map(|s| s.value))
        .collect();
    for (name, group) in &spec.groups {
        let name = &name.value;
        let gid = id_for(
            GROUP,
            name,
            group.gid.as_ref().map(|g| g.value),
            group.system,
            &ids.groups,
            &explicit_gids,
            &builtin_gids,
        )?;
        ids.groups.insert(name.clone(), gid);
        out.groups.insert(
            name.clone(),
            GroupEntry {
                gid,
                members: group.members.iter().map(|m| m.value.clone()).collect(),
            },
        );
    }

    out.users.insert(
        "root".into(),
        UserEntry {
            uid: 0,
            gid: 0,
            description: "System administrator".into(),
            home: "/root".into(),
            shell: "/bin/sh".into(),
            groups: BTreeSet::new(),
            system: true,
        },
    );
    out.users.insert(
        "nobody".into(),
        UserEntry {
            uid: NOBODY,
            gid: NOBODY,
            description: "Unprivileged account".into(),
            home: "/var/empty".into(),
            shell: "/sbin/nologin".into(),
            groups: BTreeSet::new(),
            system: true,
        },
    );
    out.passwords.insert("root".into(), "!".into());
    out.passwords.insert("nobody".into(), "!".into());
    let explicit_uids: BTreeSet<u32> = spec
        .users
        .values()
        .filter_map(|u| u.uid.as_ref().map(|s| s.value))
        .collect();
    for (name, user) in &spec.users {
        let name = &name.value;
        let uid = id_for(
            USER,
            name,
            user.uid.as_ref().map(|u| u.value),
            user.system,
            &ids.users,
            &explicit_uids,
            &BTreeMap::from([(0, "root"), (NOBODY, "nobody")]),
        )?;
        ids.users.insert(name.clone(), uid);
        let primary = if user.system { "nogroup" } else { "users" };
        let home = user.home.as_ref().map_or_else(
            || {
                if user.system {
                    "/var/empty".to_owned()
                } else {
                    format!("/home/{name}")
                }
            },
            |h| h.value.clone(),
        );
        let shell = user.shell.as_ref().map_or_else(
            || {
                if user.system {
                    "/sbin/nologin"
                } else {
                    "/bin/sh"
                }
                .to_owned()
            },
            |s| subst(&s.value),
        );
        let groups: BTreeSet<String> = user.groups.iter().map(|g| g.value.clone()).collect();
        for g in &groups {
            if let Some(entry) = out.groups.get_mut(g) {
                entry.members.insert(name.clone());
            }
        }
        out.users.insert(
            name.clone(),
            UserEntry {
                uid,
                gid: out.groups[primary].gid,
                description: user.description.clone(),
                home,
                shell,
                groups,
                system: user.system,
            },
        );
        out.passwords.insert(
            name.clone(),
            user.password_hash
                .as_ref()
                .map_or_else(|| "!".to_owned(), |h| h.value.clone()),
        );
    }
    Ok(out)
}

/// `user`/`uid` or `group`/`gid`, for messages.
type Kind = (&'static str, &'static str);
const USER: Kind = ("user", "uid");
const GROUP: Kind = ("group", "gid");

/// The id of account `name`: the declared one (unless a built-in account of another
/// name has it), else the one recorded for it (unless another account now declares it),
/// else the lowest id of its range that no recorded, declared or built-in account has.
fn id_for(
    (noun, key): Kind,
    name: &str,
    declared: Option<u32>,
    system: bool,
    recorded: &BTreeMap<String, u32>,
    claimed: &BTreeSet<u32>,
    builtin: &BTreeMap<u32, &str>,
) -> Result<u32, AccountsError> {
    if let Some(id) = declared {
        return match builtin.get(&id) {
            Some(owner) if *owner != name => Err(AccountsError::Builtin {
                noun,
                key,
                name: name.to_owned(),
                id,
                owner: (*owner).to_owned(),
            }),
            _ => Ok(id),
        };
    }
    if let Some(&id) = recorded.get(name)
        && !claimed.contains(&id)
    {
        return Ok(id);
    }
    let range = if system { SYSTEM } else { PEOPLE };
    (range.0..=range.1)
        .find(|id| {
            !claimed.contains(id)
                && !builtin.contains_key(id)
                && !recorded.iter().any(|(n, r)| r == id && n != name)
        })
        .ok_or_else(|| AccountsError::Exhausted {
            noun,
            key,
            name: name.to_owned(),
            range,
        })
}

impl Accounts {
    /// `/etc/passwd`, by uid.
    pub fn passwd(&self) -> String {
        let mut users: Vec<(&String, &UserEntry)> = self.users.iter().collect();
        users.sort_by_key(|(n, u)| (u.uid, *n));
        let mut text = String::new();
        for (name, u) in users {
            let _ = writeln!(
                text,
                "{name}:x:{}:{}:{}:{}:{}",
                u.uid, u.gid, u.description, u.home, u.shell
            );
        }
        text
    }

    /// `/etc/shadow`: the hashes, no password ageing (`lastchg` empty).
    pub fn shadow(&self) -> String {
        let mut users: Vec<(&String, &UserEntry)> = self.users.iter().collect();
        users.sort_by_key(|(n, u)| (u.uid, *n));
        let mut text = String::new();
        for (name, _) in users {
            let hash = self.passwords.get(name).map_or("!", String::as_str);
            let _ = writeln!(text, "{name}:{hash}::0:99999:7:::");
        }
        text
    }

    /// `/etc/group`, by gid.
    pub fn group(&self) -> String {
        self.groups_text(|name, g| format!("{name}:x:{}:{}", g.gid, join(&g.members)))
    }

    /// `/etc/gshadow`.
    pub fn gshadow(&self) -> String {
        self.groups_text(|name, g| format!("{name}:!::{}", join(&g.members)))
    }

    fn groups_text(&self, line: impl Fn(&str, &GroupEntry) -> String) -> String {
        let mut groups: Vec<(&String, &GroupEntry)> = self.groups.iter().collect();
        groups.sort_by_key(|(n, g)| (g.gid, *n));
        let mut text = String::new();
        for (name, g) in groups {
            text.push_str(&line(name, g));
            text.push('\n');
        }
        text
    }
}

fn join(members: &BTreeSet<String>) -> String {
    members
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use nexis_config::{Group, Spanned, User};

    fn user(uid: Option<u32>, system: bool) -> User {
        User {
            uid: uid.map(Spanned::unspanned),
            system,
            ..User::default()
        }
    }

    fn spec(users: &[(&str, User)]) -> SystemSpec {
        let mut s = SystemSpec::default();
        for (n, u) in users {
            s.users
                .insert(Spanned::unspanned((*n).to_owned()), u.clone());
        }
        s
    }

    fn same(s: &str) -> String {
        s.to_owned()
    }

    #[test]
    fn allocated_ids_are_stable_and_never_reused() {
        let mut ids = Ids::default();
        let a = accounts(
            &spec(&[
                ("alice", user(Some(1000), false)),
                ("bob", user(None, false)),
                ("daemon", user(None, true)),
            ]),
            &mut ids,
            &same,
        )
        .unwrap();
        assert_eq!(a.users["bob"].uid, 1001);
        assert_eq!(a.users["daemon"].uid, 400);
        assert_eq!(a.users["bob"].gid, 100);
        assert_eq!(a.users["daemon"].gid, NOBODY);
        // bob goes, carol comes: carol does not get bob's uid.
        let b = accounts(
            &spec(&[
                ("alice", user(Some(1000), false)),
                ("carol", user(None, false)),
            ]),
            &mut ids,
            &same,
        )
        .unwrap();
        assert_eq!(b.users["carol"].uid, 1002);
        assert!(!b.users.contains_key("bob"));
        // bob comes back with his uid.
        let c = accounts(&spec(&[("bob", user(None, false))]), &mut ids, &same).unwrap();
        assert_eq!(c.users["bob"].uid, 1001);
    }

    #[test]
    fn account_files() {
        let mut ids = Ids::default();
        let mut s = spec(&[(
            "alice",
            User {
                uid: Some(Spanned::unspanned(1000)),
                groups: [Spanned::unspanned("wheel".to_owned())].into(),
                password_hash: Some(Spanned::unspanned("$6$x$y".to_owned())),
                ..User::default()
            },
        )]);
        s.groups.insert(
            Spanned::unspanned("dev".to_owned()),
            Group {
                members: [Spanned::unspanned("alice".to_owned())].into(),
                ..Group::default()
            },
        );
        let a = accounts(&s, &mut ids, &same).unwrap();
        assert_eq!(
            a.passwd(),
            "root:x:0:0:System administrator:/root:/bin/sh\n\
             alice:x:1000:100::/home/alice:/bin/sh\n\
             nobody:x:65534:65534:Unprivileged account:/var/empty:/sbin/nologin\n"
        );
        assert!(a.shadow().contains("alice:$6$x$y::0:99999:7:::\n"));
        assert!(a.shadow().starts_with("root:!::"));
        let group = a.group();
        assert!(group.contains("wheel:x:1:alice\n"), "{group}");
        assert!(group.contains("dev:x:1000:alice\n"), "{group}");
        assert!(a.gshadow().contains("dev:!::alice\n"));
        assert_eq!(ids.groups["dev"], 1000);
    }

    #[test]
    fn a_builtin_id_is_refused_by_name() {
        let mut s = SystemSpec::default();
        s.groups.insert(
            Spanned::unspanned("staff".to_owned()),
            Group {
                gid: Some(Spanned::unspanned(100)),
                ..Group::default()
            },
        );
        let e = accounts(&s, &mut Ids::default(), &same).unwrap_err();
        assert_eq!(
            e.to_string(),
            "group `staff` asks for gid 100, which is the built-in group `users`'s; leave `gid` out to have one allocated"
        );
        let e = accounts(
            &spec(&[("daemon", user(Some(NOBODY), true))]),
            &mut Ids::default(),
            &same,
        )
        .unwrap_err();
        assert!(
            e.to_string().starts_with(
                "user `daemon` asks for uid 65534, which is the built-in user `nobody`'s"
            ),
            "{e}"
        );
        // The built-in account itself may say its own id.
        accounts(
            &spec(&[("root", user(Some(0), true))]),
            &mut Ids::default(),
            &same,
        )
        .unwrap();
    }
}
