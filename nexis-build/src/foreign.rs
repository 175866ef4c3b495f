//! What an output names that will not be there after its build: store paths its build
//! could not have been given, and the build folder (`/build`).

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::Path;

use nexis_store::{BASE32_ALPHABET, HASH_CHARS, STORE_DIR, StorePath};

/// What an output names that it must not.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Leaks {
    /// Hash parts of store paths outside the allowed set, sorted.
    pub(crate) foreign: BTreeSet<String>,
    /// The first file (relative to the output, in walking order) that names the build
    /// folder, `/build/…`.
    pub(crate) build_dir: Option<String>,
}

/// Scan the files and symlink targets under `root` (one read each) for store paths not
/// among `allowed` and for the build folder `build_dir`.
pub(crate) fn leaks(
    root: &Path,
    allowed: &BTreeSet<StorePath>,
    build_dir: &str,
) -> io::Result<Leaks> {
    let allowed: BTreeSet<String> = allowed.iter().map(StorePath::hash_part).collect();
    let needle = format!("{build_dir}/");
    let mut out = Leaks::default();
    visit(root, Path::new(""), &mut |rel, bytes| {
        scan(bytes, &allowed, &mut out.foreign);
        if out.build_dir.is_none() && memchr::memmem::find(bytes, needle.as_bytes()).is_some() {
            out.build_dir = Some(rel.display().to_string());
        }
    })?;
    Ok(out)
}

/// Call `f` with the path (relative to `root`) and the content of every file, and the
/// target of every symlink, under `root`.
fn visit(root: &Path, rel: &Path, f: &mut dyn FnMut(&Path, &[u8])) -> io::Result<()> {
    let path = root.join(rel);
    let meta = fs::symlink_metadata(&path)?;
    if meta.file_type().is_symlink() {
        f(rel, fs::read_link(&path)?.as_os_str().as_encoded_bytes());
    } else if meta.is_dir() {
        for entry in fs::read_dir(&path)? {
            visit(root, &rel.join(entry?.file_name()), f)?;
        }
    } else if meta.is_file() {
        f(rel, &fs::read(&path)?);
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
        let found = leaks(dir.path(), &BTreeSet::from([ok.clone()]), "/build").unwrap();
        assert_eq!(found.foreign, BTreeSet::from([bad.to_owned()]));
        assert_eq!(found.build_dir, None);
        fs::write(dir.path().join("a"), ok.to_string()).unwrap();
        fs::remove_file(dir.path().join("l")).unwrap();
        assert_eq!(
            leaks(dir.path(), &BTreeSet::from([ok]), "/build").unwrap(),
            Leaks::default()
        );
    }

    #[test]
    fn names_the_first_file_that_names_the_build_folder() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("lib")).unwrap();
        fs::write(dir.path().join("lib/x.pc"), "prefix=/build/src/out\n").unwrap();
        // `/build` alone, or a longer name, is not the build folder.
        fs::write(dir.path().join("a"), "/build /buildroot/x").unwrap();
        let found = leaks(dir.path(), &BTreeSet::new(), "/build").unwrap();
        assert_eq!(found.build_dir.as_deref(), Some("lib/x.pc"));
    }
}
