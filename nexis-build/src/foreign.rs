//! Finding store paths an output names that its build could not have been given.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::Path;

use nexis_store::{BASE32_ALPHABET, HASH_CHARS, STORE_DIR, StorePath};

/// The hash parts of store paths (`/nexis/store/<hash>-…`) named in the files and symlink
/// targets under `root` that are not among `allowed`, sorted.
pub(crate) fn foreign_references(
    root: &Path,
    allowed: &BTreeSet<StorePath>,
) -> io::Result<BTreeSet<String>> {
    let allowed: BTreeSet<String> = allowed.iter().map(StorePath::hash_part).collect();
    let mut found = BTreeSet::new();
    visit(root, &mut |bytes| scan(bytes, &allowed, &mut found))?;
    Ok(found)
}

/// Call `f` with the content of every file and the target of every symlink under `path`.
fn visit(path: &Path, f: &mut dyn FnMut(&[u8])) -> io::Result<()> {
    let meta = fs::symlink_metadata(path)?;
    if meta.file_type().is_symlink() {
        f(fs::read_link(path)?.as_os_str().as_encoded_bytes());
    } else if meta.is_dir() {
        for entry in fs::read_dir(path)? {
            visit(&entry?.path(), f)?;
        }
    } else if meta.is_file() {
        f(&fs::read(path)?);
    }
    Ok(())
}

fn scan(bytes: &[u8], allowed: &BTreeSet<String>, found: &mut BTreeSet<String>) {
    let prefix = format!("{STORE_DIR}/");
    let prefix = prefix.as_bytes();
    for i in memchr::memmem::find_iter(bytes, prefix) {
        let start = i + prefix.len();
        let end = start + HASH_CHARS;
        if let Some(hash) = bytes.get(start..end)
            && bytes.get(end) == Some(&b'-')
            && hash.iter().all(|b| BASE32_ALPHABET.contains(b))
        {
            let hash = String::from_utf8_lossy(hash).into_owned();
            if !allowed.contains(&hash) {
                found.insert(hash);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_only_paths_outside_the_allowed_set() {
        let dir = tempfile::tempdir().unwrap();
        let ok = StorePath::parse("/nexis/store/00000000000000000000000000000000-ok").unwrap();
        let bad = "11111111111111111111111111111111";
        fs::write(
            dir.path().join("a"),
            format!("{ok}/bin /nexis/store/{bad}-evil /nexis/store/short-x"),
        )
        .unwrap();
        std::os::unix::fs::symlink(format!("/nexis/store/{bad}-evil"), dir.path().join("l"))
            .unwrap();
        let found = foreign_references(dir.path(), &BTreeSet::from([ok.clone()])).unwrap();
        assert_eq!(found, BTreeSet::from([bad.to_owned()]));
        fs::write(dir.path().join("a"), ok.to_string()).unwrap();
        fs::remove_file(dir.path().join("l")).unwrap();
        assert!(
            foreign_references(dir.path(), &BTreeSet::from([ok]))
                .unwrap()
                .is_empty()
        );
    }
}
