//! Finding references: which store paths a tree mentions.
//!
//! A reference is the 32-character hash part of a store path appearing anywhere in a
//! file's bytes or a symlink's target (as `/nexis/store/<hash>-…` or alone). The scanner
//! makes one pass over each file, tracking the current run of base-32 characters; at
//! every position where the run is at least 32 long, the last 32 bytes are looked up in
//! the set of candidates' hash parts. Files are scanned in parallel.

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::io::Read as _;
use std::path::Path;

use rayon::prelude::*;

use crate::base32::ALPHABET;
use crate::path::{HASH_CHARS, StorePath};
use crate::store::{StoreError, io_err};

/// Which bytes may appear in a hash part.
const fn base32_table() -> [bool; 256] {
    let mut t = [false; 256];
    let mut i = 0;
    while i < ALPHABET.len() {
        t[ALPHABET[i] as usize] = true;
        i += 1;
    }
    t
}

static IS_BASE32: [bool; 256] = base32_table();

/// The last `HASH_CHARS - 1` bytes of each read stay in front of the next one, so a hash
/// part split across two reads is still seen whole.
const KEEP: usize = HASH_CHARS - 1;

/// A set of candidate hash parts to look for.
#[derive(Debug)]
pub struct RefScanner {
    wanted: HashMap<[u8; HASH_CHARS], StorePath>,
}

impl RefScanner {
    /// Look for references to any of `candidates`.
    pub fn new<'a>(candidates: impl IntoIterator<Item = &'a StorePath>) -> RefScanner {
        let wanted = candidates
            .into_iter()
            .map(|p| {
                let mut key = [0u8; HASH_CHARS];
                key.copy_from_slice(p.hash_part().as_bytes());
                (key, p.clone())
            })
            .collect();
        RefScanner { wanted }
    }

    /// Look at `data[from..]` for candidates; `data[..from]` holds the bytes before
    /// (up to 31 of them), and `run` the length of the base-32 run ending at `from`.
    fn scan_chunk(
        &self,
        data: &[u8],
        from: usize,
        run: &mut usize,
        found: &mut BTreeSet<StorePath>,
    ) {
        for i in from..data.len() {
            if IS_BASE32[data[i] as usize] {
                *run += 1;
                if *run >= HASH_CHARS {
                    let window: &[u8; HASH_CHARS] = data[i + 1 - HASH_CHARS..=i]
                        .try_into()
                        .expect("the window is HASH_CHARS long");
                    if let Some(p) = self.wanted.get(window) {
                        found.insert(p.clone());
                    }
                }
            } else {
                *run = 0;
            }
        }
    }

    /// Scan bytes held in memory.
    pub fn scan_bytes(&self, bytes: &[u8]) -> BTreeSet<StorePath> {
        let mut found = BTreeSet::new();
        self.scan_chunk(bytes, 0, &mut 0, &mut found);
        found
    }

    /// Scan every file and symlink target under `root` (not following symlinks).
    pub fn scan_tree(&self, root: &Path) -> Result<BTreeSet<StorePath>, StoreError> {
        if self.wanted.is_empty() {
            return Ok(BTreeSet::new());
        }
        let mut items = Vec::new();
        collect(root, &mut items)?;
        let sets = items
            .par_iter()
            .map(|path| self.scan_one(path))
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(sets.into_iter().flatten().collect())
    }

    fn scan_one(&self, path: &Path) -> Result<BTreeSet<StorePath>, StoreError> {
        let meta = fs::symlink_metadata(path).map_err(io_err(path))?;
        if meta.file_type().is_symlink() {
            let target = fs::read_link(path).map_err(io_err(path))?;
            return Ok(self.scan_bytes(target.as_os_str().as_encoded_bytes()));
        }
        let mut found = BTreeSet::new();
        let mut file = fs::File::open(path).map_err(io_err(path))?;
        let mut buf = vec![0u8; KEEP + 256 * 1024];
        let (mut kept, mut run) = (0, 0);
        loop {
            let n = file.read(&mut buf[kept..]).map_err(io_err(path))?;
            if n == 0 {
                break;
            }
            let end = kept + n;
            self.scan_chunk(&buf[..end], kept, &mut run, &mut found);
            let keep = end.min(KEEP);
            buf.copy_within(end - keep..end, 0);
            kept = keep;
        }
        Ok(found)
    }
}

/// Files and symlinks under `root` (the root itself when it is one).
fn collect(root: &Path, out: &mut Vec<std::path::PathBuf>) -> Result<(), StoreError> {
    let meta = fs::symlink_metadata(root).map_err(io_err(root))?;
    if meta.is_dir() {
        for entry in fs::read_dir(root).map_err(io_err(root))? {
            collect(&entry.map_err(io_err(root))?.path(), out)?;
        }
    } else {
        out.push(root.to_owned());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::path::ContentKind;

    fn sp(name: &str) -> StorePath {
        StorePath::new(
            &ContentKind::Output { output: "out" },
            blake3::hash(name.as_bytes()).as_bytes(),
            name,
        )
        .unwrap()
    }

    #[test]
    fn finds_hash_parts_anywhere() {
        let (a, b, c) = (sp("a"), sp("b"), sp("c"));
        let scanner = RefScanner::new([&a, &b, &c]);
        let text = format!("PATH={a}/bin:x{}y\n#!{}/bin/sh", b.hash_part(), a);
        assert_eq!(
            scanner.scan_bytes(text.as_bytes()),
            [a.clone(), b.clone()].into()
        );
        // A hash part inside a longer base-32 run still counts (as in Nix).
        let long = format!("zz{}zz", c.hash_part());
        assert_eq!(scanner.scan_bytes(long.as_bytes()), [c.clone()].into());
        // 31 characters do not.
        assert!(
            scanner
                .scan_bytes(&c.hash_part().as_bytes()[1..])
                .is_empty()
        );
    }

    #[test]
    fn scans_across_buffer_boundaries_and_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (sp("a"), sp("b"));
        let mut big = vec![b'.'; 256 * 1024 - 10];
        big.extend_from_slice(a.to_string().as_bytes());
        fs::write(dir.path().join("big"), &big).unwrap();
        std::os::unix::fs::symlink(format!("{b}/lib"), dir.path().join("link")).unwrap();
        let found = RefScanner::new([&a, &b]).scan_tree(dir.path()).unwrap();
        assert_eq!(found, [a, b].into());
    }
}
