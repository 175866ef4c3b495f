//! `nexis switch`, `test`, `boot`, `rollback`, `generations` and `diff` on temporary
//! roots, with a copy of the demo configuration.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

mod common;

use common::{failed, nexis, ok};

fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &dest);
        } else {
            fs::copy(entry.path(), dest).unwrap();
        }
    }
}

/// A copy of the demo configuration, to edit.
fn demo_copy(dir: &Path) -> PathBuf {
    copy_tree(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/demo"),
        dir,
    );
    dir.join("nexis.toml")
}

/// A fresh root, and a copy of the demo configuration in its own folder (kept alive by
/// the second value).
fn demo() -> (tempfile::TempDir, tempfile::TempDir, PathBuf) {
    let root = tempfile::tempdir().unwrap();
    let conf = tempfile::tempdir().unwrap();
    let config = demo_copy(conf.path());
    (root, conf, config)
}

/// Read `/etc/NAME` inside `root`, resolving links in the root's namespace.
fn read_etc(root: &Path, name: &str) -> String {
    read_in(root, &format!("etc/{name}"))
}

/// Read the file at `path` (relative) inside `root`, resolving links in the root's
/// namespace.
fn read_in(root: &Path, path: &str) -> String {
    let name = path;
    let mut queue: std::collections::VecDeque<std::ffi::OsString> = [path]
        .iter()
        .flat_map(|p| Path::new(p).iter().map(std::ffi::OsStr::to_os_string))
        .collect();
    let mut resolved = PathBuf::from("/");
    let mut hops = 0;
    while let Some(c) = queue.pop_front() {
        let candidate = resolved.join(&c);
        let physical = root.join(candidate.strip_prefix("/").unwrap());
        match fs::read_link(&physical) {
            Ok(target) => {
                hops += 1;
                assert!(hops < 40, "too many links for /{name}");
                if target.is_absolute() {
                    resolved = PathBuf::from("/");
                }
                for (i, part) in target.iter().filter(|p| *p != "/").enumerate() {
                    queue.insert(i, part.to_os_string());
                }
            }
            Err(_) => resolved = candidate,
        }
    }
    fs::read_to_string(root.join(resolved.strip_prefix("/").unwrap())).unwrap()
}

/// Replace `from` by `to` in the file at `path`, which must contain it.
fn edit(path: &Path, from: &str, to: &str) {
    let text = fs::read_to_string(path).unwrap();
    assert!(text.contains(from), "{} has no {from:?}", path.display());
    fs::write(path, text.replace(from, to)).unwrap();
}

fn generations(root: &Path, config: &Path) -> serde_json::Value {
    let (out, _) = ok(&nexis(root, config, &["--json", "generations"]));
    serde_json::from_str(&out).unwrap()
}

#[test]
fn switch_change_switch_rollback_and_generations() {
    let (root, _conf, config) = demo();

    // The first switch: generation 1, running and the boot default.
    let (out, err) = ok(&nexis(root.path(), &config, &["switch"]));
    assert!(
        out.contains("+ /etc/hostname") && out.contains("+ local#hello 2.12.1"),
        "{out}"
    );
    assert!(err.contains("activated: generation 1"), "{err}");
    assert_eq!(read_etc(root.path(), "hostname"), "nexis-demo\n");
    assert_eq!(read_etc(root.path(), "motd"), "Welcome to nexis-demo\n");
    let g = generations(root.path(), &config);
    assert_eq!(g.as_array().unwrap().len(), 1);
    assert_eq!(g[0]["boot-default"], true);
    assert_eq!(g[0]["running"], true);
    let first = g[0]["toplevel"].as_str().unwrap().to_owned();
    // The toplevel holds the system profile.
    let sw = root
        .path()
        .join(first.trim_start_matches('/'))
        .join("sw/bin");
    assert!(fs::symlink_metadata(sw.join("hello")).is_ok());

    // The same configuration again: the same generation.
    let (out, _) = ok(&nexis(root.path(), &config, &["switch"]));
    assert!(out.contains("no changes"), "{out}");
    assert_eq!(
        generations(root.path(), &config).as_array().unwrap().len(),
        1
    );

    // A file made by hand where the generation has one is kept and reported.
    fs::remove_file(root.path().join("etc/motd")).unwrap();
    fs::write(root.path().join("etc/motd"), "mine\n").unwrap();

    // Change the configuration: another host name, no /etc/issue, a new file.
    let text = fs::read_to_string(&config)
        .unwrap()
        .replace("hostname = \"nexis-demo\"", "hostname = \"box\"")
        .replace(
            "[files.\"/etc/issue\"]\nsource = \"files/issue\"\ntemplate = true\nvars = { release = \"0.1\" }\n",
            "[files.\"/etc/nexis/note\"]\ntext = \"second\\n\"\nmode = \"0600\"\n",
        );
    fs::write(&config, text).unwrap();
    let (diff, _) = ok(&nexis(root.path(), &config, &["diff"]));
    assert!(
        diff.contains("~ /etc/hostname")
            && diff.contains("- /etc/issue")
            && diff.contains("+ /etc/nexis/note"),
        "{diff}"
    );
    let (_, err) = ok(&nexis(root.path(), &config, &["switch"]));
    assert!(err.contains("activated: generation 2"), "{err}");
    assert!(
        err.contains("/etc/motd was made or changed by hand"),
        "{err}"
    );
    assert_eq!(
        fs::read_to_string(root.path().join("etc/motd")).unwrap(),
        "mine\n"
    );
    assert_eq!(read_etc(root.path(), "hostname"), "box\n");
    // The drift check lists it, with a file added by hand and a mode changed by hand.
    fs::write(root.path().join("etc/extra.conf"), "x\n").unwrap();
    let note = root.path().join("etc/nexis/note");
    fs::set_permissions(&note, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let o = nexis(root.path(), &config, &["check", "--drift"]);
    assert_eq!(o.status.code(), Some(1));
    let out = String::from_utf8(o.stdout).unwrap();
    assert_eq!(
        out,
        "added   /etc/extra.conf\nchanged /etc/motd\nmode    /etc/nexis/note (0644, expected 0600)\n",
    );
    fs::remove_file(root.path().join("etc/extra.conf")).unwrap();
    fs::set_permissions(&note, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    assert!(fs::symlink_metadata(root.path().join("etc/issue")).is_err());
    // A file with its own mode is a real file with that mode.
    let note = root.path().join("etc/nexis/note");
    let meta = fs::symlink_metadata(&note).unwrap();
    assert!(meta.is_file());
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777,
        0o600
    );

    // Rollback: generation 1 is running and the boot default again.
    let (_, err) = ok(&nexis(root.path(), &config, &["rollback"]));
    assert!(err.contains("activated: generation 1"), "{err}");
    assert_eq!(read_etc(root.path(), "hostname"), "nexis-demo\n");
    assert!(read_etc(root.path(), "issue").contains("0.1"));
    assert!(fs::symlink_metadata(&note).is_err());
    let g = generations(root.path(), &config);
    assert_eq!(g[0]["running"], true);
    assert_eq!(g[0]["boot-default"], true);

    // `diff 1 2` between generations, and switching to one by number.
    let (diff, _) = ok(&nexis(root.path(), &config, &["diff", "1", "2"]));
    assert!(diff.contains("~ /etc/hostname"), "{diff}");
    ok(&nexis(
        root.path(),
        &config,
        &["switch", "--generation", "2"],
    ));
    assert_eq!(read_etc(root.path(), "hostname"), "box\n");

    // The current generation cannot be deleted; another can, and gc frees it.
    let o = nexis(root.path(), &config, &["generations", "delete", "2"]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("generation 2 is the one the system boots")
    );
    // GC keeps every generation's closure.
    ok(&nexis(root.path(), &config, &["gc"]));
    assert!(root.path().join(first.trim_start_matches('/')).exists());
    ok(&nexis(
        root.path(),
        &config,
        &["generations", "delete", "1"],
    ));
    assert_eq!(
        generations(root.path(), &config).as_array().unwrap().len(),
        1
    );
}

#[test]
fn test_and_boot_change_only_what_they_say() {
    let (root, _conf, config) = demo();
    ok(&nexis(root.path(), &config, &["switch"]));
    edit(
        &config,
        "hostname = \"nexis-demo\"",
        "hostname = \"tested\"",
    );

    // `test`: running now, not the boot default.
    ok(&nexis(root.path(), &config, &["test"]));
    assert_eq!(read_etc(root.path(), "hostname"), "tested\n");
    let g = generations(root.path(), &config);
    assert_eq!(g[1]["running"], true);
    assert_eq!(g[1]["boot-default"], false);
    assert_eq!(g[0]["boot-default"], true);

    // `boot`: the boot default, nothing changes now.
    edit(&config, "hostname = \"tested\"", "hostname = \"later\"");
    ok(&nexis(root.path(), &config, &["boot"]));
    assert_eq!(read_etc(root.path(), "hostname"), "tested\n");
    let g = generations(root.path(), &config);
    assert_eq!(g[2]["boot-default"], true);
    assert_eq!(g[2]["running"], false);

    // --dry-run prints the plan and changes nothing.
    let (out, _) = ok(&nexis(root.path(), &config, &["switch", "--dry-run"]));
    assert!(out.contains("~ /etc/hostname"), "{out}");
    assert_eq!(read_etc(root.path(), "hostname"), "tested\n");
    assert_eq!(
        generations(root.path(), &config).as_array().unwrap().len(),
        3
    );

    // The running generation (2, from `test`) may be deleted, but gc keeps what runs.
    let running = g[1]["toplevel"].as_str().unwrap().to_owned();
    ok(&nexis(
        root.path(),
        &config,
        &["generations", "delete", "2"],
    ));
    ok(&nexis(root.path(), &config, &["gc"]));
    assert!(
        root.path()
            .join(running.trim_start_matches('/'))
            .join("etc/hostname")
            .exists()
    );
    assert_eq!(read_etc(root.path(), "hostname"), "tested\n");
}

#[test]
fn an_interrupted_activation_is_finished_by_the_next_command() {
    let (root, _conf, config) = demo();
    ok(&nexis(root.path(), &config, &["switch"]));
    edit(
        &config,
        "hostname = \"nexis-demo\"",
        "hostname = \"second\"",
    );
    ok(&nexis(root.path(), &config, &["boot"]));
    // As if a `switch` to 2 had been killed right after writing its journal.
    fs::write(
        root.path().join("nexis/var/nexis/activating"),
        "switch\n2\n",
    )
    .unwrap();
    let (_, err) = ok(&nexis(root.path(), &config, &["rollback"]));
    assert!(err.contains("finished an interrupted activation"), "{err}");
    // The interrupted switch to 2 was finished, then rolled back to 1.
    assert_eq!(read_etc(root.path(), "hostname"), "nexis-demo\n");
    assert!(!root.path().join("nexis/var/nexis/activating").exists());
}

/// Whether `/etc` of `root` is exactly what the manifest of `toplevel` says: every entry
/// in place, `/etc/static` pointing at its `etc/`, and none of `others` (files only
/// another generation has) present.
fn etc_matches(root: &Path, toplevel: &str, others: &[&str]) -> Result<(), String> {
    let physical = root.join(toplevel.trim_start_matches('/'));
    let manifest: serde_json::Value =
        serde_json::from_slice(&fs::read(physical.join("manifest.json")).unwrap()).unwrap();
    let stat = fs::read_link(root.join("etc/static")).map_err(|e| format!("etc/static: {e}"))?;
    if stat != Path::new(toplevel).join("etc") {
        return Err(format!("etc/static -> {}", stat.display()));
    }
    for (rel, entry) in manifest["etc"].as_object().unwrap() {
        let dest = root.join("etc").join(rel);
        let want = entry["hash"].as_str().unwrap();
        let got = match entry["kind"].as_str().unwrap() {
            "link" => {
                let t = fs::read_link(&dest).map_err(|e| format!("{rel}: {e}"))?;
                if t != Path::new("/etc/static").join(rel) {
                    return Err(format!("{rel} -> {}", t.display()));
                }
                continue;
            }
            "symlink" => blake3::hash(
                fs::read_link(&dest)
                    .map_err(|e| format!("{rel}: {e}"))?
                    .as_os_str()
                    .as_encoded_bytes(),
            ),
            _ => blake3::hash(&fs::read(&dest).map_err(|e| format!("{rel}: {e}"))?),
        };
        if got.to_hex().as_str() != want {
            return Err(format!("{rel}: other content"));
        }
    }
    for rel in others {
        if !manifest["etc"].as_object().unwrap().contains_key(*rel)
            && fs::symlink_metadata(root.join("etc").join(rel)).is_ok()
        {
            return Err(format!("{rel} is left from the other generation"));
        }
    }
    Ok(())
}

#[test]
fn a_switch_killed_at_any_instant_leaves_one_generation_in_full() {
    let (root, _conf, config) = demo();
    ok(&nexis(root.path(), &config, &["switch"]));
    // Generation 2 differs in a linked file, a real file and a removed one.
    let text = fs::read_to_string(&config)
        .unwrap()
        .replace("hostname = \"nexis-demo\"", "hostname = \"other\"")
        .replace(
            "[files.\"/etc/issue\"]\nsource = \"files/issue\"\ntemplate = true\nvars = { release = \"0.1\" }\n",
            "[files.\"/etc/nexis/secret\"]\ntext = \"s\\n\"\nmode = \"0600\"\n",
        );
    fs::write(&config, text).unwrap();
    ok(&nexis(root.path(), &config, &["boot"]));
    ok(&nexis(
        root.path(),
        &config,
        &["switch", "--generation", "1"],
    ));
    let g = generations(root.path(), &config);
    let tops: Vec<String> = (0..2)
        .map(|i| g[i]["toplevel"].as_str().unwrap().to_owned())
        .collect();
    let others = ["issue", "nexis/secret"];

    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let mut killed = 0;
    let mut outcomes = std::collections::BTreeSet::new();
    for trial in 0..60 {
        let target = if trial % 2 == 0 { "2" } else { "1" };
        let mut child = Command::new(env!("CARGO_BIN_EXE_nexis"))
            .arg("--root")
            .arg(root.path())
            .arg("--config")
            .arg(&config)
            .args(["switch", "--generation", target])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(std::time::Duration::from_micros(seed % 12_000));
        let _ = child.kill();
        if !child.wait().unwrap().success() {
            killed += 1;
        }
        // The next command finishes what was interrupted.
        ok(&nexis(
            root.path(),
            &config,
            &["switch", "--dry-run", "--generation", "1"],
        ));
        let g = generations(root.path(), &config);
        let running: Vec<usize> = (0..2).filter(|&i| g[i]["running"] == true).collect();
        let boot: Vec<usize> = (0..2).filter(|&i| g[i]["boot-default"] == true).collect();
        assert_eq!(running.len(), 1, "trial {trial}: {g}");
        assert_eq!(
            running, boot,
            "trial {trial}: running and boot default differ: {g}"
        );
        let now = running[0];
        outcomes.insert(now);
        if let Err(e) = etc_matches(root.path(), &tops[now], &others) {
            panic!("trial {trial}: /etc is not generation {}'s: {e}", now + 1);
        }
        assert!(!root.path().join("nexis/var/nexis/activating").exists());
        let drift = nexis(root.path(), &config, &["check", "--drift"]);
        assert!(
            drift.status.success(),
            "trial {trial}: drift after recovery: {}",
            String::from_utf8_lossy(&drift.stdout)
        );
    }
    eprintln!("{killed} of 60 switches were interrupted");
    assert!(
        killed >= 10,
        "only {killed} of 60 switches were interrupted"
    );
    assert_eq!(
        outcomes.len(),
        2,
        "every trial ended in the same generation"
    );
}

fn mode_of(path: &Path) -> u32 {
    std::os::unix::fs::PermissionsExt::mode(&fs::symlink_metadata(path).unwrap().permissions())
        & 0o7777
}

#[test]
fn users_groups_and_home_files() {
    use std::os::unix::fs::MetadataExt as _;
    let (root, conf, config) = demo();
    let is_root =
        fs::metadata("/proc/self").is_ok_and(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0);

    // Alice already has a git config of her own: it is moved aside, not lost.
    let git = root.path().join("home/alice/.config/git");
    fs::create_dir_all(&git).unwrap();
    fs::write(git.join("config"), "mine\n").unwrap();

    let (out, err) = ok(&nexis(root.path(), &config, &["switch"]));
    assert!(
        out.contains("users:") && out.contains("+ alice (uid 1000)"),
        "{out}"
    );
    assert!(out.contains("+ developers (gid 1500)"), "{out}");
    assert!(
        err.contains(
            "/home/alice/.config/git/config was in the way: moved aside to config.nexis-backup"
        ),
        "{err}"
    );
    assert_eq!(
        fs::read_to_string(git.join("config.nexis-backup")).unwrap(),
        "mine\n"
    );
    assert_eq!(
        fs::read_link(git.join("config")).unwrap(),
        Path::new("/run/current-system/home/alice/.config/git/config")
    );
    assert!(read_in(root.path(), "home/alice/.config/git/config").contains("name = Alice"));

    let passwd = read_etc(root.path(), "passwd");
    let busybox_sh = passwd
        .lines()
        .find(|l| l.starts_with("alice:"))
        .unwrap()
        .rsplit(':')
        .next()
        .unwrap()
        .to_owned();
    assert!(
        busybox_sh.starts_with("/nexis/store/") && busybox_sh.ends_with("-busybox-1.36.1/bin/sh"),
        "the shell's ${{pkgs.busybox}} is the built path: {passwd}"
    );
    assert!(
        passwd.contains("bob:x:1001:100::/home/bob:/bin/sh\n"),
        "{passwd}"
    );
    let group = read_etc(root.path(), "group");
    assert!(group.contains("developers:x:1500:alice,bob\n"), "{group}");
    assert!(group.contains("wheel:x:1:alice\n"), "{group}");
    // The account database is real files; the secrets are root's alone.
    let shadow = root.path().join("etc/shadow");
    assert!(fs::symlink_metadata(&shadow).unwrap().is_file());
    assert_eq!(mode_of(&shadow), 0o600);
    assert!(
        fs::read_to_string(&shadow)
            .unwrap()
            .contains("alice:$y$j9T$")
    );
    assert!(read_etc(root.path(), "ssh/authorized_keys.d/alice").starts_with("ssh-ed25519 "));

    // Bob's home was made for him; his private .profile is a real file of his.
    let bob = root.path().join("home/bob");
    assert_eq!(mode_of(&bob), 0o700);
    let profile = bob.join(".profile");
    assert!(fs::symlink_metadata(&profile).unwrap().is_file());
    assert_eq!(mode_of(&profile), 0o600);
    assert_eq!(fs::read_to_string(&profile).unwrap(), "export EDITOR=vi\n");
    // A declared file outside /etc is written in place, owned as declared.
    let index = root.path().join("var/lib/web/index.html");
    assert_eq!(fs::read_to_string(&index).unwrap(), "<h1>nexis-demo</h1>\n");
    if is_root {
        assert_eq!(
            (
                fs::metadata(&bob).unwrap().uid(),
                fs::metadata(&bob).unwrap().gid()
            ),
            (1001, 100)
        );
        assert_eq!(fs::metadata(&profile).unwrap().uid(), 1001);
        assert_eq!(fs::metadata(&index).unwrap().uid(), 1001);
    } else {
        eprintln!("not root: ownership is not checked");
    }

    // Bob leaves, Carol arrives without a uid, Alice leaves wheel.
    let users = conf.path().join("modules/users.toml");
    let text = fs::read_to_string(&users).unwrap();
    let text = text
        .replace(
            "[users.bob]\nuid = 1001\ngroups = [\"developers\"]\n\n[users.bob.files.\".profile\"]\ntext = \"export EDITOR=vi\\n\"\nmode = \"0600\"\n",
            "[users.carol]\ngroups = [\"developers\"]\n",
        )
        .replace("groups = [\"wheel\", \"developers\"]", "groups = [\"developers\"]");
    assert!(
        text.contains("users.carol") && !text.contains("users.bob"),
        "{text}"
    );
    fs::write(&users, text).unwrap();
    let services = conf.path().join("modules/services.toml");
    let text = fs::read_to_string(&services)
        .unwrap()
        .replace("user = \"bob\"", "user = \"carol\"")
        .replace("owner = \"bob\"", "owner = \"carol\"");
    fs::write(&services, text).unwrap();

    let (diff, _) = ok(&nexis(root.path(), &config, &["diff"]));
    assert!(
        diff.contains("+ carol (uid 1002)"),
        "bob's uid 1001 is not reused: {diff}"
    );
    assert!(
        diff.contains("- bob (uid 1001; /home/bob is kept)"),
        "{diff}"
    );
    assert!(diff.contains("~ alice: groups developers"), "{diff}");
    assert!(diff.contains("- /home/bob/.profile"), "{diff}");
    ok(&nexis(root.path(), &config, &["switch"]));
    let passwd = read_etc(root.path(), "passwd");
    assert!(
        passwd.contains("carol:x:1002:100::/home/carol:/bin/sh\n"),
        "{passwd}"
    );
    assert!(!passwd.contains("bob:"), "{passwd}");
    assert!(read_etc(root.path(), "group").contains("wheel:x:1:\n"));
    // Bob's home stays; the file nexis put there is gone.
    assert!(bob.is_dir());
    assert!(fs::symlink_metadata(&profile).is_err());
    assert!(root.path().join("home/carol").is_dir());

    // Rolling back brings bob back with his uid.
    ok(&nexis(root.path(), &config, &["rollback"]));
    assert!(read_etc(root.path(), "passwd").contains("bob:x:1001:"));
    assert_eq!(fs::read_to_string(&profile).unwrap(), "export EDITOR=vi\n");
}

#[test]
fn boot_entries_follow_the_generations() {
    let (root, conf, config) = demo();
    // A stand-in kernel package: an image file and an initrd.
    fs::write(
        conf.path().join("packages/linux.toml"),
        "name = \"linux\"\nversion = \"6.6.1\"\n\n[build]\nsystem = \"script\"\n\
         script = \"mkdir -p $out && echo kernel > $out/bzImage && echo initrd > $out/initrd\"\n",
    )
    .unwrap();
    let with_kernel = |hostname: &str| {
        let text = fs::read_to_string(&config).unwrap();
        let text = text
            .replace(
                "loader = \"grub\"\n",
                "loader = \"grub\"\nkernel = \"linux\"\n",
            )
            .replace(
                "hostname = \"nexis-demo\"",
                &format!("hostname = \"{hostname}\""),
            )
            .replace("hostname = \"h1\"", &format!("hostname = \"{hostname}\""))
            .replace("hostname = \"h2\"", &format!("hostname = \"{hostname}\""))
            .replace("hostname = \"h3\"", &format!("hostname = \"{hostname}\""));
        fs::write(
            &config,
            text.replace(
                "kernel = \"linux\"\nkernel = \"linux\"\n",
                "kernel = \"linux\"\n",
            ),
        )
        .unwrap();
    };
    let grub = root.path().join("boot/grub/grub.cfg");
    let entries = |text: &str| text.matches("menuentry ").count();

    // The demo forces keep-generations = 3.
    for (i, host) in ["h1", "h2", "h3", "h4"].iter().enumerate() {
        with_kernel(host);
        let (_, err) = ok(&nexis(root.path(), &config, &["switch"]));
        assert!(
            err.contains(&format!("activated: generation {}", i + 1)),
            "{err}"
        );
        let text = fs::read_to_string(&grub).unwrap();
        assert_eq!(entries(&text), (i + 1).min(3), "{text}");
        assert!(
            text.contains(&format!("set default=nexis-generation-{}", i + 1)),
            "{text}"
        );
    }
    let text = fs::read_to_string(&grub).unwrap();
    assert!(!text.contains("generation 1 "), "{text}");
    assert!(text.contains("initrd "), "{text}");
    let toplevel = generations(root.path(), &config)[3]["toplevel"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(text.contains(&format!("init={toplevel}/init")), "{text}");
    // The kernel is copied once: every generation has the same one.
    let copies: Vec<_> = fs::read_dir(root.path().join("boot/nexis"))
        .unwrap()
        .collect();
    assert_eq!(copies.len(), 2, "one kernel and one initrd");

    // Rolling back makes generation 3 the default; deleting 4 removes its entry.
    ok(&nexis(root.path(), &config, &["rollback"]));
    assert!(
        fs::read_to_string(&grub)
            .unwrap()
            .contains("set default=nexis-generation-3")
    );
    ok(&nexis(
        root.path(),
        &config,
        &["generations", "delete", "4"],
    ));
    let text = fs::read_to_string(&grub).unwrap();
    assert!(!text.contains("nexis-generation-4"), "{text}");
    assert_eq!(
        entries(&text),
        3,
        "generations 1 to 3 are the newest three now: {text}"
    );

    // Keep the newest one (3, which also boots and runs): 1 and 2 go.
    ok(&nexis(
        root.path(),
        &config,
        &["generations", "delete", "--keep", "1"],
    ));
    let numbers: Vec<u64> = generations(root.path(), &config)
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["number"].as_u64().unwrap())
        .collect();
    assert_eq!(numbers, [3]);
    assert_eq!(entries(&fs::read_to_string(&grub).unwrap()), 1);
}

/// A `runsvdir` watching a root's scan directory, killed with its `runsv`s at the end.
struct Runsvdir(std::process::Child);

impl Runsvdir {
    fn start(root: &Path) -> Option<Runsvdir> {
        use std::os::unix::process::CommandExt as _;
        let scan = root.join("run/runit/service");
        fs::create_dir_all(&scan).unwrap();
        let child = Command::new("runsvdir")
            .arg(&scan)
            .process_group(0)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .ok()?;
        Some(Runsvdir(child))
    }
}

impl Drop for Runsvdir {
    fn drop(&mut self) {
        // The whole group: runsvdir, its runsv and the services.
        let group = i32::try_from(self.0.id()).unwrap();
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{group}")])
            .status();
        let _ = self.0.wait();
    }
}

fn sv_status(root: &Path, service: &str) -> String {
    let o = Command::new("sv")
        .arg("status")
        .arg(root.join("run/runit/service").join(service))
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn services_are_switched_on_a_running_supervisor() {
    let root = tempfile::tempdir().unwrap();
    let conf = tempfile::tempdir().unwrap();
    let config = conf.path().join("nexis.toml");
    let write = |extra: &str| {
        fs::write(
            &config,
            format!(
                "[system]\nhostname = \"svc\"\ninit = \"runit\"\n\n\
                 [services.a]\ncommand = \"/bin/sleep 1000\"\n\n\
                 [services.b]\ndepends-on = [\"a\"]\n{extra}"
            ),
        )
        .unwrap();
    };
    // Without a supervisor for the root the services are only installed.
    write("command = \"/bin/sleep 2000\"\n");
    let (_, err) = ok(&nexis(root.path(), &config, &["switch"]));
    assert!(!err.contains("runit: start"), "{err}");
    assert!(root.path().join("run/runit/service/a/run").exists());

    let Some(_supervisor) = Runsvdir::start(root.path()) else {
        eprintln!("skipping the live part: no runsvdir (Debian's runit package)");
        return;
    };
    // The services run once runsvdir has seen them; a switch to the same generation
    // changes nothing.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while !sv_status(root.path(), "b").starts_with("run:") {
        assert!(
            std::time::Instant::now() < deadline,
            "{}",
            sv_status(root.path(), "b")
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let (out, err) = ok(&nexis(root.path(), &config, &["switch"]));
    assert!(
        out.contains("no changes") && !err.contains("runit:"),
        "{out}{err}"
    );

    // b changes, c is new and fails at once: the switch says so and exits 1.
    write("command = \"/bin/sleep 3000\"\n\n[services.c]\ncommand = \"/bin/sh -c 'exit 1'\"\n");
    let (plan, _) = ok(&nexis(root.path(), &config, &["switch", "--dry-run"]));
    assert!(plan.contains("services:\n  restart b\n  start c"), "{plan}");
    let o = nexis(root.path(), &config, &["switch"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("runit: restart b"), "{err}");
    assert!(err.contains("start c: failed"), "{err}");
    assert!(
        err.contains("generation 2 is in effect, but 1 service action failed"),
        "{err}"
    );
    assert!(sv_status(root.path(), "b").starts_with("run:"));
    assert!(
        !err.lines().any(|l| l.ends_with(" a")),
        "a did not change: {err}"
    );

    // Rolling back stops and removes c and restarts b with its old command.
    let (_, err) = ok(&nexis(root.path(), &config, &["rollback"]));
    assert!(
        err.contains("runit: stop c") && err.contains("runit: restart b"),
        "{err}"
    );
    assert!(!root.path().join("run/runit/service/c").exists());
    let (out, _) = ok(&nexis(root.path(), &config, &["check", "--drift"]));
    assert!(out.is_empty(), "{out}");
}

#[test]
fn a_changed_source_file_makes_a_new_generation_and_an_unchanged_one_does_not() {
    let root = tempfile::tempdir().unwrap();
    let conf = tempfile::tempdir().unwrap();
    let config = conf.path().join("nexis.toml");
    fs::write(
        &config,
        "[files.\"/etc/banner\"]\nsource = \"banner.txt\"\n",
    )
    .unwrap();
    fs::write(conf.path().join("banner.txt"), "one\n").unwrap();
    ok(&nexis(root.path(), &config, &["switch"]));
    // The same inputs: the toplevel is found again, not rebuilt, and nothing changes.
    let (out, _) = ok(&nexis(root.path(), &config, &["switch"]));
    assert!(out.contains("no changes"), "{out}");
    assert_eq!(
        generations(root.path(), &config).as_array().unwrap().len(),
        1
    );
    // Only the file's bytes change: a new generation with them.
    fs::write(conf.path().join("banner.txt"), "two\n").unwrap();
    let (out, _) = ok(&nexis(root.path(), &config, &["switch"]));
    assert!(out.contains("~ /etc/banner"), "{out}");
    assert_eq!(read_etc(root.path(), "banner"), "two\n");
    assert_eq!(
        generations(root.path(), &config).as_array().unwrap().len(),
        2
    );
    // A collection does not leave the remembered toplevel pointing at nothing.
    ok(&nexis(
        root.path(),
        &config,
        &["generations", "delete", "1"],
    ));
    ok(&nexis(root.path(), &config, &["gc"]));
    fs::write(conf.path().join("banner.txt"), "one\n").unwrap();
    ok(&nexis(root.path(), &config, &["switch"]));
    assert_eq!(read_etc(root.path(), "banner"), "one\n");
}

#[test]
fn two_packages_with_one_file_collide_unless_one_has_priority() {
    let (root, conf, config) = demo();
    fs::write(
        conf.path().join("packages/toybox.toml"),
        "name = \"toybox\"\nversion = \"0.8.11\"\n\n[build]\nsystem = \"script\"\n\
         script = \"mkdir -p $out/bin && echo toybox > $out/bin/ls && echo toybox > $out/bin/toybox\"\n",
    )
    .unwrap();
    let text = fs::read_to_string(&config)
        .unwrap()
        .replace("install = [\"hello\",", "install = [\"toybox\", \"hello\",");
    fs::write(&config, &text).unwrap();
    let err = failed(&nexis(root.path(), &config, &["switch"]));
    assert!(
        err.contains("packages local#busybox and local#toybox both provide sw/bin/ls")
            && err.contains("`[packages] priority`"),
        "{err}"
    );
    // Nothing was activated.
    assert!(!root.path().join("run/current-system").exists());

    fs::write(
        &config,
        text.replace("[packages]\n", "[packages]\npriority = { toybox = 1 }\n"),
    )
    .unwrap();
    let (_, err) = ok(&nexis(root.path(), &config, &["switch"]));
    assert!(err.contains("activated: generation 1"), "{err}");
    let top = fs::read_link(root.path().join("run/current-system")).unwrap();
    let sw = root
        .path()
        .join(top.strip_prefix("/").unwrap())
        .join("sw/bin");
    let ls = fs::read_link(sw.join("ls")).unwrap();
    assert!(
        ls.to_string_lossy().contains("-toybox-0.8.11/bin/ls"),
        "{}",
        ls.display()
    );
    assert!(
        fs::read_link(sw.join("cat"))
            .unwrap()
            .to_string_lossy()
            .contains("-busybox-")
    );
}

#[test]
fn an_enabled_security_tool_gets_its_files_and_its_service() {
    let (root, conf, config) = demo();
    // The demo enables the firewall with ports 22 and 8080.
    let (out, _) = ok(&nexis(root.path(), &config, &["switch"]));
    assert!(
        out.contains("+ /etc/firewalld/zones/public.xml") && out.contains("start firewalld"),
        "{out}"
    );
    let zone = read_etc(root.path(), "firewalld/zones/public.xml");
    assert!(
        zone.contains("<port protocol=\"tcp\" port=\"22\"/>")
            && zone.contains("<port protocol=\"tcp\" port=\"8080\"/>"),
        "{zone}"
    );
    assert!(read_etc(root.path(), "firewalld/firewalld.conf").contains("\nDefaultZone=public\n"));
    // Its service runs the firewalld that was built.
    let top = fs::read_link(root.path().join("run/current-system")).unwrap();
    let top = root.path().join(top.strip_prefix("/").unwrap());
    let manifest: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(top.join("manifest.json")).unwrap()).unwrap();
    let firewalld = manifest["packages"]["local#firewalld"]["path"]
        .as_str()
        .unwrap()
        .to_owned();
    let dinit = fs::read_to_string(top.join("services/dinit/firewalld")).unwrap();
    assert!(
        dinit.contains(&format!(
            "\ncommand = {firewalld}/sbin/firewalld --nofork --nopid --system-config /etc/firewalld\n"
        )),
        "{dinit}"
    );
    assert!(
        root.path()
            .join(firewalld.trim_start_matches('/'))
            .join("sbin/firewalld")
            .is_file()
    );
    assert!(
        manifest["services"]["firewalld"]["enable"]
            .as_bool()
            .unwrap()
    );

    // Disabling the firewall stops its service and removes its files.
    let security = conf.path().join("modules/security.toml");
    let text = fs::read_to_string(&security).unwrap();
    assert!(
        text.contains("[security.firewall]\nenable = true\n"),
        "{text}"
    );
    fs::write(
        &security,
        text.replace(
            "[security.firewall]\nenable = true\n",
            "[security.firewall]\nenable = false\n",
        ),
    )
    .unwrap();
    let (diff, _) = ok(&nexis(root.path(), &config, &["diff"]));
    assert!(
        diff.contains("services:\n  stop firewalld")
            && diff.contains("- /etc/firewalld/zones/public.xml")
            && diff.contains("- local#firewalld 2.1.2"),
        "{diff}"
    );
}
