//! Fault injection and concurrency, driving the real `nexis` binary.
//!
//! `nexis store add`, `nexis gc` and `nexis store import` are killed with SIGKILL at
//! pseudo-random moments (a fixed seed, so a failure replays), and after each kill
//! `nexis store verify --all` must find the store clean: no valid path with partial or
//! wrong content, no valid path missing. Then two adders and a collector run at the same
//! time, and nothing a root or a running process's temp roots cover may be lost.
//!
//! The trials are small (trees of about 200 files) so that the whole file runs in well
//! under a minute in a debug build. Kills land within a window that adapts to how long
//! the command takes ([`Killer`]), so that they hit every phase of it.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use nexis_store::{ContentKind, Store, StorePath};

/// Trials per killed command.
const TRIALS: usize = 50;

/// xorshift64*: a small deterministic generator.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % n as u64).expect("less than n")
    }
}

fn nexis_cmd(root: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_nexis"));
    cmd.arg("--root").arg(root);
    cmd
}

fn nexis(root: &Path, args: &[&str]) -> Output {
    nexis_cmd(root).args(args).output().unwrap()
}

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout.clone()).unwrap()
}

/// Kills commands at pseudo-random moments within a window that adapts to how long they
/// take: it starts at 1.5 times the time the command takes when left alone (measured on a
/// scratch root, at least 30 ms), shrinks when a command finished before its kill, and
/// grows when it was killed, so that kills keep landing in every phase of the command
/// whatever the machine's speed.
struct Killer {
    rng: Rng,
    window: Duration,
    /// Commands that were still running when killed.
    interrupted: usize,
}

impl Killer {
    fn new(seed: u64, scratch: &Path, args: &[&str]) -> Killer {
        let start = Instant::now();
        ok(&nexis(scratch, args));
        Killer {
            rng: Rng(seed),
            window: (start.elapsed() * 3 / 2).max(Duration::from_millis(30)),
            interrupted: 0,
        }
    }

    /// Report how many of `trials` commands were killed midway, and require a fair share.
    fn assert_interrupted(&self, what: &str, trials: usize) {
        eprintln!("{what}: {} of {trials} killed midway", self.interrupted);
        assert!(
            self.interrupted > trials / 4,
            "only {} of {trials} {what} killed midway",
            self.interrupted
        );
    }

    /// Start `nexis ARGS`, let it run for a random time within the window, and kill it
    /// with SIGKILL (if it has not finished by then).
    fn kill_during(&mut self, root: &Path, args: &[&str]) {
        let mut child = nexis_cmd(root)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let micros = usize::try_from(self.window.as_micros()).expect("a short window");
        thread::sleep(Duration::from_micros(self.rng.below(micros) as u64));
        let running = child.try_wait().unwrap().is_none();
        // `kill` sends SIGKILL; an exited child is only reaped.
        let _ = child.kill();
        child.wait().unwrap();
        // Settles where about two thirds of the commands are killed midway.
        if running {
            self.interrupted += 1;
            self.window = self.window * 11 / 10;
        } else {
            self.window = (self.window * 4 / 5).max(Duration::from_millis(2));
        }
    }
}

/// `nexis store verify --all` must find nothing wrong.
fn assert_clean(root: &Path, context: &str) {
    let out = nexis(root, &["--json", "store", "verify", "--all"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{context}: verify printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert!(
        out.status.success() && report["clean"] == true,
        "{context}: {report:#}"
    );
}

/// A tree of `files` files in a few directories, some executable, some content shared
/// with other trees of the same `family` (so that dedup links are shared).
fn make_tree(dir: &Path, seed: u64, family: u64, files: usize) {
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    for i in 0..files {
        let sub = dir.join(format!("d{}", i % 7)).join(format!("e{}", i % 3));
        fs::create_dir_all(&sub).unwrap();
        let file = sub.join(format!("f{i}"));
        let content = if i % 4 == 0 {
            format!("shared {family} {i}\n").repeat(20)
        } else {
            format!("{seed} {i} {}\n", rng.next()).repeat(1 + rng.below(50))
        };
        fs::write(&file, content).unwrap();
        if i % 10 == 0 {
            fs::set_permissions(&file, fs::Permissions::from_mode(0o755)).unwrap();
        }
    }
    std::os::unix::fs::symlink("d0/e0/f0", dir.join("link")).unwrap();
}

/// The store path `nexis store add DIR` gives.
fn path_of(dir: &Path) -> StorePath {
    let hash = nexis_store::hash_path(dir).unwrap().hash;
    let name = dir.file_name().unwrap().to_str().unwrap();
    StorePath::new(&ContentKind::Source { references: &[] }, &hash, name).unwrap()
}

fn gc_root(root: &Path, name: &str, path: &StorePath) {
    let dir = root.join("nexis/var/nexis/gcroots");
    fs::create_dir_all(&dir).unwrap();
    let link = dir.join(name);
    let _ = fs::remove_file(&link);
    std::os::unix::fs::symlink(path.to_string(), link).unwrap();
}

fn valid(root: &Path, paths: &[StorePath]) -> Vec<bool> {
    let store = Store::open(root).unwrap();
    paths
        .iter()
        .map(|p| store.with_db(|db| db.is_valid(p)).unwrap())
        .collect()
}

fn strs(paths: &[PathBuf]) -> Vec<&str> {
    paths.iter().map(|p| p.to_str().unwrap()).collect()
}

fn assert_no_leftovers(root: &Path) {
    let store = root.join("nexis/store");
    assert_eq!(fs::read_dir(store.join(".trash")).unwrap().count(), 0);
    assert!(!root.join("nexis/var/nexis/gc-journal").exists());
}

#[test]
fn killing_add_leaves_a_clean_store() {
    let root = tempfile::tempdir().unwrap();
    let src = tempfile::tempdir().unwrap();
    let trees: Vec<PathBuf> = (0..6)
        .map(|i| {
            let dir = src.path().join(format!("tree{i}"));
            make_tree(&dir, i, i % 2, 200);
            dir
        })
        .collect();
    let mut two = vec!["store", "add"];
    two.extend(strs(&trees[..2]));
    let mut killer = Killer::new(0x5eed_0001, tempfile::tempdir().unwrap().path(), &two);
    let mut rng = Rng(0x5eed_1001);
    for trial in 0..TRIALS {
        // One to three trees per invocation, in any order.
        let count = 1 + rng.below(3);
        let args: Vec<PathBuf> = (0..count)
            .map(|_| trees[rng.below(trees.len())].clone())
            .collect();
        let mut cmd = vec!["store", "add"];
        cmd.extend(strs(&args));
        killer.kill_during(root.path(), &cmd);
        assert_clean(root.path(), &format!("add trial {trial}"));
        if trial % 4 == 3 {
            // Collecting what the killed adders left is safe too, and the next adds
            // install again rather than find their paths valid.
            ok(&nexis(root.path(), &["gc"]));
            assert_clean(root.path(), &format!("gc after add trial {trial}"));
        }
    }
    killer.assert_interrupted("adds", TRIALS);

    // Whatever the kills left, adding completes and gives the right content.
    let mut cmd = vec!["store", "add"];
    cmd.extend(strs(&trees));
    let out = ok(&nexis(root.path(), &cmd));
    let printed: Vec<&str> = out.lines().collect();
    let expected: Vec<String> = trees.iter().map(|t| path_of(t).to_string()).collect();
    assert_eq!(printed, expected);
    assert_clean(root.path(), "after a complete add");
    ok(&nexis(root.path(), &["gc"]));
    assert_clean(root.path(), "after the last gc");
    assert_no_leftovers(root.path());
}

#[test]
fn killing_gc_leaves_a_clean_store_and_every_root() {
    let root = tempfile::tempdir().unwrap();
    let src = tempfile::tempdir().unwrap();
    // Live: three trees rooted by symlinks in gcroots.
    let live: Vec<PathBuf> = (0..3)
        .map(|i| {
            let dir = src.path().join(format!("live{i}"));
            make_tree(&dir, 100 + i, 0, 200);
            dir
        })
        .collect();
    let live_paths: Vec<StorePath> = live.iter().map(|d| path_of(d)).collect();
    let mut cmd = vec!["store", "add"];
    cmd.extend(strs(&live));
    ok(&nexis(root.path(), &cmd));
    for (i, p) in live_paths.iter().enumerate() {
        gc_root(root.path(), &format!("live{i}"), p);
    }
    // Garbage: trees sharing content with the live ones, and many single files.
    let mut garbage: Vec<PathBuf> = (0..4)
        .map(|i| {
            let dir = src.path().join(format!("garbage{i}"));
            make_tree(&dir, 200 + i, 0, 200);
            dir
        })
        .collect();
    let singles = src.path().join("singles");
    fs::create_dir(&singles).unwrap();
    for i in 0..150 {
        let file = singles.join(format!("s{i}"));
        fs::write(&file, format!("single {i}\n")).unwrap();
        garbage.push(file);
    }
    let mut add_garbage = vec!["store", "add"];
    add_garbage.extend(strs(&garbage));

    let mut killer = {
        let scratch = tempfile::tempdir().unwrap();
        ok(&nexis(scratch.path(), &add_garbage));
        Killer::new(0x5eed_0002, scratch.path(), &["gc"])
    };
    for trial in 0..TRIALS {
        ok(&nexis(root.path(), &add_garbage));
        killer.kill_during(root.path(), &["gc"]);
        assert_clean(root.path(), &format!("gc trial {trial}"));
        assert!(
            valid(root.path(), &live_paths).iter().all(|v| *v),
            "gc trial {trial}: a rooted path was collected"
        );
    }
    killer.assert_interrupted("collections", TRIALS);

    // A collection run to the end finishes what the killed ones left.
    let report: serde_json::Value =
        serde_json::from_str(&ok(&nexis(root.path(), &["--json", "gc"]))).unwrap();
    assert_eq!(report["live"], 3, "{report}");
    assert_clean(root.path(), "after a complete gc");
    assert_no_leftovers(root.path());
    let store = Store::open(root.path()).unwrap();
    let left: BTreeSet<StorePath> = store
        .with_db(|db| db.all_valid())
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(left, live_paths.iter().cloned().collect());
    // Only the live paths' directories are left in the store.
    let on_disk = fs::read_dir(root.path().join("nexis/store"))
        .unwrap()
        .filter(|e| {
            !e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with('.')
        })
        .count();
    assert_eq!(on_disk, 3);
}

#[test]
fn killing_import_leaves_a_clean_store() {
    let has_import = nexis(Path::new("/nonexistent"), &["store", "import", "--help"])
        .status
        .success();
    if !has_import {
        eprintln!("`nexis store import` does not exist yet: trial skipped");
        return;
    }
    let from = tempfile::tempdir().unwrap();
    let src = tempfile::tempdir().unwrap();
    let trees: Vec<PathBuf> = (0..3)
        .map(|i| {
            let dir = src.path().join(format!("tree{i}"));
            make_tree(&dir, 300 + i, 0, 200);
            dir
        })
        .collect();
    let mut cmd = vec!["store", "add"];
    cmd.extend(strs(&trees));
    let added = ok(&nexis(from.path(), &cmd));
    let paths: Vec<&str> = added.lines().collect();
    let stream = src.path().join("export.zst");
    let mut cmd = vec!["store", "export", "--output", stream.to_str().unwrap()];
    cmd.extend(&paths);
    ok(&nexis(from.path(), &cmd));

    let root = tempfile::tempdir().unwrap();
    let import = [
        "store",
        "import",
        "--no-require-sigs",
        stream.to_str().unwrap(),
    ];
    let mut killer = Killer::new(0x5eed_0003, tempfile::tempdir().unwrap().path(), &import);
    for trial in 0..TRIALS {
        killer.kill_during(root.path(), &import);
        assert_clean(root.path(), &format!("import trial {trial}"));
        if trial % 3 == 2 {
            // Start again from an empty store now and then, so that kills keep landing
            // while paths are written rather than on an all-valid no-op.
            ok(&nexis(root.path(), &["gc"]));
            assert_clean(root.path(), &format!("gc after import trial {trial}"));
        }
    }
    killer.assert_interrupted("imports", TRIALS);
    let imported = ok(&nexis(root.path(), &import));
    let imported: BTreeSet<&str> = imported.lines().collect();
    assert_eq!(imported, paths.iter().copied().collect());
    assert_clean(root.path(), "after a complete import");
}

/// Sets its flag when dropped: a failing assertion in the concurrent test must stop the
/// collector thread too, or the scope would wait for it forever.
struct Stop<'a>(&'a AtomicBool);

impl Drop for Stop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

#[test]
fn concurrent_adders_and_collector_lose_nothing_covered() {
    let root = tempfile::tempdir().unwrap();
    let src = tempfile::tempdir().unwrap();
    let trees: Vec<PathBuf> = (0..8)
        .map(|i| {
            let dir = src.path().join(format!("t{i}"));
            make_tree(&dir, 400 + i, 0, 60);
            dir
        })
        .collect();
    let paths: Vec<StorePath> = trees.iter().map(|d| path_of(d)).collect();
    // t0..t2 are rooted before anything is added.
    for (i, p) in paths.iter().enumerate().take(3) {
        gc_root(root.path(), &format!("t{i}"), p);
    }
    ok(&nexis(root.path(), &["store", "verify", "--all"]));

    let done = AtomicBool::new(false);
    let rounds = 12;
    thread::scope(|s| {
        let stop = Stop(&done);
        // Two adders of overlapping sets, in different orders.
        let adder = |set: Vec<usize>| {
            let trees = &trees;
            let paths = &paths;
            let root = root.path();
            move || {
                for round in 0..rounds {
                    let args: Vec<PathBuf> = set.iter().map(|&i| trees[i].clone()).collect();
                    let mut cmd = vec!["store", "add"];
                    cmd.extend(strs(&args));
                    let out = ok(&nexis(root, &cmd));
                    let expected: Vec<String> = set.iter().map(|&i| paths[i].to_string()).collect();
                    assert_eq!(out.lines().collect::<Vec<_>>(), expected, "round {round}");
                }
            }
        };
        let a = s.spawn(adder(vec![0, 1, 3, 4, 5]));
        let b = s.spawn(adder(vec![5, 4, 6, 2, 0]));
        // A collector, all the time.
        let collector = s.spawn(|| {
            let mut runs = 0;
            while !done.load(Ordering::Relaxed) {
                ok(&nexis(root.path(), &["gc"]));
                runs += 1;
            }
            runs
        });
        // This process adds too: what it adds is a temp root while its store is open,
        // and must stay valid and whole however often the collector runs.
        let mine = Store::open(root.path()).unwrap();
        let mut held = Vec::new();
        for round in 0..rounds {
            let i = [7, 6, 3][round % 3];
            let added = mine.add_path(&trees[i], None).unwrap();
            assert_eq!(added.path, paths[i]);
            held.push(added.path);
            for p in &held {
                assert!(
                    mine.with_db(|db| db.is_valid(p)).unwrap(),
                    "round {round}: {p} was collected while a temp root"
                );
                assert!(mine.physical(p).exists(), "round {round}: {p} is gone");
            }
            // Rooted paths, once valid, stay valid.
            for p in paths.iter().take(3) {
                if mine.with_db(|db| db.is_valid(p)).unwrap() {
                    assert!(
                        mine.physical(p).exists(),
                        "round {round}: rooted {p} is gone"
                    );
                }
            }
            thread::sleep(Duration::from_millis(20));
        }
        a.join().unwrap();
        b.join().unwrap();
        let report = mine.verify(Some(&held), &|_| {}).unwrap();
        assert!(report.is_clean(), "{:?}", report.problems);
        drop(stop);
        let runs = collector.join().unwrap();
        assert!(runs >= 2, "the collector ran during the adds ({runs} runs)");
        drop(mine);
    });

    assert_clean(root.path(), "after the concurrent run");
    // The adders have exited; only the roots keep anything now. The rooted paths that
    // were added (t0, t1, t2: every adder's set includes one) are all valid.
    ok(&nexis(root.path(), &["gc"]));
    assert_eq!(
        valid(root.path(), &paths),
        [true, true, true, false, false, false, false, false]
    );
    assert_clean(root.path(), "after the last gc");
    assert_no_leftovers(root.path());
}
