//! Boot loader entries on real files: GRUB and systemd-boot layouts, copies made once
//! and removed when no entry uses them, refusals that write nothing, and a full `/boot`
//! (a small tmpfs in a private mount namespace, as root).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use nexis_activate::{
    BootEntry, BootError, BootReport, BootSpec, find_initrd, find_kernel, write_boot_entries,
};
use nexis_config::BootLoader;
use nexis_store::{ContentKind, StorePath};

/// A store path for `name` (its hash made up from the name).
fn store_path(name: &str) -> StorePath {
    StorePath::new(
        &ContentKind::Text { references: &[] },
        blake3::hash(name.as_bytes()).as_bytes(),
        name,
    )
    .expect("a valid name")
}

/// A file of `size` bytes at `rel` inside the store path `name` under `root`; its
/// physical path.
fn store_file(root: &Path, name: &str, rel: &str, size: usize) -> PathBuf {
    let path = root
        .join("nexis/store")
        .join(store_path(name).base_name())
        .join(rel);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    let bytes: Vec<u8> = name.bytes().chain(rel.bytes()).cycle().take(size).collect();
    fs::write(&path, bytes).unwrap();
    path
}

fn toplevel(n: u32) -> String {
    store_path(&format!("nexis-system-demo-{n}")).to_string()
}

fn entry(generation: u32, kernel: &Path, initrd: Option<&Path>) -> BootEntry {
    BootEntry {
        generation,
        // 2024-03-0N 12:34 UTC.
        created: 1_709_296_440 + i64::from(generation - 1) * 86_400,
        toplevel: toplevel(generation),
        kernel: kernel.to_owned(),
        initrd: initrd.map(Path::to_owned),
        params: vec!["quiet".into(), "console=ttyS0,115200".into()],
    }
}

/// Every file under `dir` with its content.
fn tree(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(d) = todo.pop() {
        for item in fs::read_dir(&d).unwrap() {
            let path = item.unwrap().path();
            if path.is_dir() {
                todo.push(path);
            } else {
                out.insert(
                    path.strip_prefix(dir).unwrap().to_owned(),
                    fs::read(&path).unwrap(),
                );
            }
        }
    }
    out
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

/// Three generations: 1 with kernel A, 2 and 3 with kernel B and an initrd.
struct Three {
    _dir: tempfile::TempDir,
    boot: PathBuf,
    kernel_a: PathBuf,
    kernel_b: PathBuf,
    initrd: PathBuf,
    /// Copy names.
    copy_a: String,
    copy_b: String,
    copy_initrd: String,
}

impl Three {
    fn new() -> Three {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let boot = root.join("boot");
        fs::create_dir_all(&boot).unwrap();
        let kernel_a = store_file(&root, "linux-6.6.1", "bzImage", 6 * 1024);
        let kernel_b = store_file(&root, "linux-6.7.2", "boot/vmlinuz-6.7.2", 5 * 1024);
        let initrd = store_file(&root, "initrd-6.7.2", "initrd", 3 * 1024);
        Three {
            copy_a: format!("{}-bzImage", store_path("linux-6.6.1").base_name()),
            copy_b: format!(
                "{}-boot-vmlinuz-6.7.2",
                store_path("linux-6.7.2").base_name()
            ),
            copy_initrd: format!("{}-initrd", store_path("initrd-6.7.2").base_name()),
            _dir: dir,
            boot,
            kernel_a,
            kernel_b,
            initrd,
        }
    }

    fn spec(&self, loader: BootLoader, generations: &[u32], default: u32) -> BootSpec {
        BootSpec {
            loader,
            timeout: 7,
            default,
            entries: generations
                .iter()
                .map(|&n| match n {
                    1 => entry(1, &self.kernel_a, None),
                    _ => entry(n, &self.kernel_b, Some(&self.initrd)),
                })
                .collect(),
        }
    }
}

#[test]
fn grub_entries_newest_first_copied_once_and_pruned() {
    let t = Three::new();
    // Oldest first in the spec: the output is ordered by generation anyway.
    let spec = t.spec(BootLoader::Grub, &[1, 2, 3], 2);
    let report = write_boot_entries(&t.boot, &spec).unwrap();

    let nexis = t.boot.join("nexis");
    let mut copies = vec![t.copy_a.clone(), t.copy_b.clone(), t.copy_initrd.clone()];
    copies.sort();
    assert_eq!(names(&nexis), copies);
    assert_eq!(
        fs::read(nexis.join(&t.copy_a)).unwrap(),
        fs::read(&t.kernel_a).unwrap()
    );
    assert_eq!(
        fs::read(nexis.join(&t.copy_b)).unwrap(),
        fs::read(&t.kernel_b).unwrap()
    );
    assert_eq!(
        fs::read(nexis.join(&t.copy_initrd)).unwrap(),
        fs::read(&t.initrd).unwrap()
    );
    assert_eq!(report.copied_bytes, (6 + 5 + 3) * 1024);
    let grub_cfg = t.boot.join("grub/grub.cfg");
    let mut written = vec![
        nexis.join(&t.copy_a),
        nexis.join(&t.copy_b),
        nexis.join(&t.copy_initrd),
    ];
    written.sort();
    written.push(grub_cfg.clone());
    assert_eq!(report.written, written);
    assert!(report.removed.is_empty());

    // The boot folder is not a mount point here, so GRUB sees it as `/boot`.
    let menuentry = |n: u32, day: u32, kernel: &str, initrd: Option<&str>| {
        let initrd = initrd.map_or(String::new(), |i| format!("\tinitrd /boot/nexis/{i}\n"));
        format!(
            "\nmenuentry 'NexisOS — generation {n} (2024-03-0{day} 12:34)' --id nexis-generation-{n} {{\n\
             \tlinux /boot/nexis/{kernel} init={}/init quiet console=ttyS0,115200\n\
             {initrd}}}\n",
            toplevel(n)
        )
    };
    let custom = "\nif [ -f \"${config_directory}/custom.cfg\" ]; then\n\
                  \tsource \"${config_directory}/custom.cfg\"\nfi\n";
    let header = "# Written by nexis at every switch; changes here are lost.\n\
                  # Put entries of your own in custom.cfg beside this file.\n\
                  set timeout=7\nset default=nexis-generation-2\n";
    assert_eq!(
        fs::read_to_string(&grub_cfg).unwrap(),
        format!(
            "{header}{}{}{}{custom}",
            menuentry(3, 3, &t.copy_b, Some(&t.copy_initrd)),
            menuentry(2, 2, &t.copy_b, Some(&t.copy_initrd)),
            menuentry(1, 1, &t.copy_a, None),
        )
    );

    // The same spec again changes nothing.
    let before = tree(&t.boot);
    assert_eq!(
        write_boot_entries(&t.boot, &spec).unwrap(),
        BootReport::default()
    );
    assert_eq!(tree(&t.boot), before);

    // Without generation 1: its entry goes, and the kernel only it used.
    let spec = t.spec(BootLoader::Grub, &[2, 3], 3);
    let report = write_boot_entries(&t.boot, &spec).unwrap();
    assert_eq!(report.written, std::slice::from_ref(&grub_cfg));
    assert_eq!(report.removed, [nexis.join(&t.copy_a)]);
    assert_eq!(report.copied_bytes, 0);
    let mut kept = vec![t.copy_b.clone(), t.copy_initrd.clone()];
    kept.sort();
    assert_eq!(names(&nexis), kept);
    assert_eq!(
        fs::read_to_string(&grub_cfg).unwrap(),
        format!(
            "{}{}{}{custom}",
            header.replace("generation-2", "generation-3"),
            menuentry(3, 3, &t.copy_b, Some(&t.copy_initrd)),
            menuentry(2, 2, &t.copy_b, Some(&t.copy_initrd)),
        )
    );
}

#[test]
fn systemd_boot_entries_and_loader_conf_keep_foreign_files() {
    let t = Three::new();
    let entries = t.boot.join("loader/entries");
    fs::create_dir_all(&entries).unwrap();
    fs::write(entries.join("windows.conf"), "title Windows\n").unwrap();
    fs::write(t.boot.join("loader/loader.conf"), "timeout 3\neditor no\n").unwrap();
    fs::create_dir_all(t.boot.join("nexis")).unwrap();
    fs::write(t.boot.join("nexis/README"), "not ours\n").unwrap();

    let spec = t.spec(BootLoader::SystemdBoot, &[1, 2, 3], 3);
    let report = write_boot_entries(&t.boot, &spec).unwrap();
    assert_eq!(report.copied_bytes, (6 + 5 + 3) * 1024);
    assert!(!t.boot.join("grub").exists());
    assert_eq!(
        names(&entries),
        [
            "nexis-generation-1.conf",
            "nexis-generation-2.conf",
            "nexis-generation-3.conf",
            "windows.conf"
        ]
    );
    assert_eq!(
        fs::read_to_string(entries.join("nexis-generation-2.conf")).unwrap(),
        format!(
            "title NexisOS — generation 2 (2024-03-02 12:34)\nversion 2\nsort-key nexis\n\
             linux /nexis/{}\ninitrd /nexis/{}\n\
             options init={}/init quiet console=ttyS0,115200\n",
            t.copy_b,
            t.copy_initrd,
            toplevel(2)
        )
    );
    assert_eq!(
        fs::read_to_string(entries.join("nexis-generation-1.conf")).unwrap(),
        format!(
            "title NexisOS — generation 1 (2024-03-01 12:34)\nversion 1\nsort-key nexis\n\
             linux /nexis/{}\noptions init={}/init quiet console=ttyS0,115200\n",
            t.copy_a,
            toplevel(1)
        )
    );
    let loader_conf = "# default and timeout are written by nexis at every switch\n\
                       default nexis-generation-3.conf\ntimeout 7\neditor no\n";
    assert_eq!(
        fs::read_to_string(t.boot.join("loader/loader.conf")).unwrap(),
        loader_conf
    );
    // loader.conf last, after the entries it names.
    assert_eq!(
        report.written.last().unwrap(),
        &t.boot.join("loader/loader.conf")
    );

    let before = tree(&t.boot);
    assert_eq!(
        write_boot_entries(&t.boot, &spec).unwrap(),
        BootReport::default()
    );
    assert_eq!(tree(&t.boot), before);

    let spec = t.spec(BootLoader::SystemdBoot, &[2, 3], 3);
    let report = write_boot_entries(&t.boot, &spec).unwrap();
    assert!(report.written.is_empty(), "{report:?}");
    assert_eq!(
        report.removed,
        [
            entries.join("nexis-generation-1.conf"),
            t.boot.join("nexis").join(&t.copy_a)
        ]
    );
    assert_eq!(
        names(&entries),
        [
            "nexis-generation-2.conf",
            "nexis-generation-3.conf",
            "windows.conf"
        ]
    );
    assert_eq!(
        fs::read_to_string(entries.join("windows.conf")).unwrap(),
        "title Windows\n"
    );
    assert_eq!(
        fs::read_to_string(t.boot.join("nexis/README")).unwrap(),
        "not ours\n"
    );
    assert_eq!(
        fs::read_to_string(t.boot.join("loader/loader.conf")).unwrap(),
        loader_conf
    );
}

#[test]
fn odd_parameters_are_quoted_for_grub_and_verbatim_for_systemd_boot() {
    let t = Three::new();
    let mut spec = t.spec(BootLoader::Grub, &[1], 1);
    spec.entries[0].params = vec!["acpi_osi=Windows 2020".into(), "x=$y;'z'".into()];
    write_boot_entries(&t.boot, &spec).unwrap();
    let grub_cfg = fs::read_to_string(t.boot.join("grub/grub.cfg")).unwrap();
    assert!(
        grub_cfg.contains(" 'acpi_osi=Windows 2020' 'x=$y;'\\''z'\\'''\n"),
        "{grub_cfg}"
    );
    spec.loader = BootLoader::SystemdBoot;
    write_boot_entries(&t.boot, &spec).unwrap();
    let bls = fs::read_to_string(t.boot.join("loader/entries/nexis-generation-1.conf")).unwrap();
    assert!(bls.contains(" acpi_osi=Windows 2020 x=$y;'z'\n"), "{bls}");
}

#[test]
fn refused_specs_write_nothing() {
    let t = Three::new();
    let check = |spec: &BootSpec, want: &str| {
        let err = write_boot_entries(&t.boot, spec).unwrap_err();
        assert_eq!(err.to_string(), want);
        assert!(names(&t.boot).is_empty(), "{:?}", names(&t.boot));
    };

    let spec = t.spec(BootLoader::Grub, &[1, 2], 4);
    check(
        &spec,
        "the boot default, generation 4, is not among the boot entries",
    );

    let mut spec = t.spec(BootLoader::Grub, &[1, 2], 2);
    spec.entries[1].params.push("a\nb".into());
    check(
        &spec,
        r#"the kernel parameter "a\nb" of generation 2 has a control character"#,
    );

    let mut spec = t.spec(BootLoader::Grub, &[1, 2], 2);
    spec.entries[0].kernel = t.boot.join("vmlinuz");
    check(
        &spec,
        &format!(
            "the kernel of generation 1, {}, is not inside a store path (…/nexis/store/<hash>-<name>/…)",
            t.boot.join("vmlinuz").display()
        ),
    );

    let mut spec = t.spec(BootLoader::Grub, &[1, 2], 2);
    spec.entries[0].toplevel = "/etc".into();
    check(
        &spec,
        "the toplevel of generation 1, `/etc`, is not a store path",
    );

    let spec = t.spec(BootLoader::SystemdBoot, &[2, 2], 2);
    check(&spec, "generation 2 has two boot entries");

    let mut spec = t.spec(BootLoader::Grub, &[1, 2], 2);
    let missing = t.kernel_a.with_file_name("Image");
    spec.entries[0].kernel.clone_from(&missing);
    let err = write_boot_entries(&t.boot, &spec).unwrap_err();
    assert!(
        matches!(&err, BootError::Io { path, .. } if *path == missing),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        format!("cannot read {}", missing.display())
    );
    assert!(names(&t.boot).is_empty());
}

#[test]
fn no_loader_or_no_entries_does_nothing() {
    let t = Three::new();
    let spec = t.spec(BootLoader::None, &[1, 2], 2);
    assert_eq!(
        write_boot_entries(&t.boot, &spec).unwrap(),
        BootReport::default()
    );
    let spec = BootSpec {
        entries: Vec::new(),
        ..t.spec(BootLoader::Grub, &[], 1)
    };
    assert_eq!(
        write_boot_entries(&t.boot, &spec).unwrap(),
        BootReport::default()
    );
    assert!(names(&t.boot).is_empty());
}

#[test]
fn temporaries_of_an_interrupted_run_are_removed() {
    let t = Three::new();
    let spec = t.spec(BootLoader::Grub, &[2], 2);
    write_boot_entries(&t.boot, &spec).unwrap();
    let stray = [
        t.boot
            .join("nexis")
            .join(format!(".{}.nexis-tmp", t.copy_a)),
        t.boot.join("grub/.grub.cfg.nexis-tmp"),
    ];
    for s in &stray {
        fs::write(s, "half").unwrap();
    }
    let report = write_boot_entries(&t.boot, &spec).unwrap();
    assert!(report.written.is_empty());
    let mut removed = report.removed.clone();
    removed.sort();
    let mut want = stray.to_vec();
    want.sort();
    assert_eq!(removed, want);
    assert!(stray.iter().all(|s| !s.exists()));
}

#[test]
fn kernels_and_initrds_are_found_in_package_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let out = |name: &str, files: &[&str]| {
        let p = dir.path().join(name);
        for f in files {
            fs::create_dir_all(p.join(f).parent().unwrap()).unwrap();
            fs::write(p.join(f), "x").unwrap();
        }
        fs::create_dir_all(&p).unwrap();
        p
    };
    let x86 = out("x86", &["bzImage", "boot/vmlinuz-6.6", "lib/modules/6.6/x"]);
    assert_eq!(find_kernel(&x86), Some(x86.join("bzImage")));
    let arm = out("arm", &["Image", "initrd.img"]);
    assert_eq!(find_kernel(&arm), Some(arm.join("Image")));
    assert_eq!(find_initrd(&arm), Some(arm.join("initrd.img")));
    let distro = out(
        "distro",
        &[
            "boot/vmlinuz-6.8",
            "boot/vmlinuz-6.7",
            "boot/config-6.7",
            "boot/initramfs-6.7.img",
        ],
    );
    assert_eq!(find_kernel(&distro), Some(distro.join("boot/vmlinuz-6.7")));
    assert_eq!(
        find_initrd(&distro),
        Some(distro.join("boot/initramfs-6.7.img"))
    );
    let empty = out("empty", &["bin/sh"]);
    assert_eq!(find_kernel(&empty), None);
    assert_eq!(find_initrd(&x86), None);
    // A folder with an image's name is not an image.
    let odd = out("odd", &["vmlinuz/x"]);
    assert_eq!(find_kernel(&odd), None);
}

/// Set by [`a_full_boot_is_refused_cleanly`] when it runs itself again in a private
/// mount namespace.
const IN_NAMESPACE: &str = "NEXIS_BOOT_TEST_IN_NAMESPACE";

/// Unmounts the tmpfs even when an assertion fails (the namespace would drop it anyway;
/// this lets the temporary folder be removed).
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_full_boot_is_refused_cleanly() {
    const NAME: &str = "a_full_boot_is_refused_cleanly";
    if std::env::var_os(IN_NAMESPACE).is_none() {
        if !rustix::process::geteuid().is_root() {
            eprintln!("skipping {NAME}: mounting a small tmpfs as /boot needs root");
            return;
        }
        // This same test again, alone, in a mount namespace of its own: the tmpfs
        // mounted there is invisible to the host and goes away with the process.
        let output = Command::new("unshare")
            .args(["--mount", "--propagation", "private"])
            .arg(std::env::current_exe().unwrap())
            .args(["--exact", NAME, "--nocapture", "--test-threads=1"])
            .env(IN_NAMESPACE, "1")
            .output()
            .expect("run unshare (util-linux)");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{stdout}\n{stderr}");
        assert!(
            stdout.contains("1 passed"),
            "the inner test did not run:\n{stdout}\n{stderr}"
        );
        return;
    }

    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let boot = root.join("boot");
    fs::create_dir_all(&boot).unwrap();
    let status = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=256k", "nexis-test-boot"])
        .arg(&boot)
        .status()
        .unwrap();
    assert!(status.success(), "mount a tmpfs on {}", boot.display());
    let _mounted = Mounted(boot.clone());

    let small = store_file(&root, "linux-6.6.1", "bzImage", 4 * 1024);
    let spec = BootSpec {
        loader: BootLoader::Grub,
        timeout: 5,
        default: 1,
        entries: vec![entry(1, &small, None)],
    };
    write_boot_entries(&boot, &spec).unwrap();
    let grub_cfg = fs::read_to_string(boot.join("grub/grub.cfg")).unwrap();
    // A mount point: GRUB sees the copies at the root of this filesystem.
    assert!(grub_cfg.contains("\tlinux /nexis/"), "{grub_cfg}");
    let before = tree(&boot);

    let big = store_file(&root, "linux-6.9.0", "bzImage", 512 * 1024);
    for loader in [BootLoader::Grub, BootLoader::SystemdBoot] {
        let spec = BootSpec {
            loader,
            timeout: 5,
            default: 2,
            entries: vec![entry(1, &small, None), entry(2, &big, None)],
        };
        let err = write_boot_entries(&boot, &spec).unwrap_err();
        let BootError::NoSpace {
            boot_dir,
            needed,
            available,
        } = &err
        else {
            panic!("{err:?}");
        };
        assert_eq!(boot_dir, &boot);
        assert!(*needed >= 512 * 1024, "{err}");
        assert!(*available > 0 && *available < 256 * 1024, "{err}");
        let message = err.to_string();
        assert!(message.starts_with(&format!("not enough space in {}", boot.display())));
        assert!(
            message.contains(" needed, ") && message.contains(" free; "),
            "{message}"
        );
        assert!(
            message.ends_with(
                "delete old generations (`nexis generations delete …`) then `nexis gc`, or make /boot larger"
            ),
            "{message}"
        );
        // Nothing written: the old configuration byte for byte, no new files, no temps.
        assert_eq!(tree(&boot), before);
    }
}
