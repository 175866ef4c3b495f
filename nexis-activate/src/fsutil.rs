//! Atomic file and link replacement, shared by every part of activation.
//!
//! Both write a temporary beside the destination, rename it over the destination (one
//! atomic step: readers see the old or the new, never a mix) and sync the folder so the
//! rename survives a crash. Errors name the path that failed.

use std::fs;
use std::io::{self, Write as _};
use std::os::unix::fs::{PermissionsExt as _, symlink};
use std::path::Path;

fn at(path: &Path) -> impl FnOnce(io::Error) -> io::Error + '_ {
    move |e| io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

/// What temporary names end with.
pub(crate) const TMP_SUFFIX: &str = ".nexis-tmp";

/// The temporary name beside `path`, `.NAME.nexis-tmp`. It is the same for every process
/// (activations hold a lock), so the temporary of a killed activation is reused, not
/// left behind.
pub(crate) fn temp_beside(path: &Path) -> std::path::PathBuf {
    path.with_file_name(format!(
        ".{}{TMP_SUFFIX}",
        path.file_name()
            .expect("a path with a name")
            .to_string_lossy()
    ))
}

/// Make the renames in `dir` durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(at(dir))
}

/// Replace the file at `path` with `bytes` (mode 0644 unless `mode`), durably.
/// `prepare` runs on the temporary before the rename (to set an owner, say). On failure
/// the temporary is removed.
pub(crate) fn write_atomic_with(
    path: &Path,
    bytes: &[u8],
    mode: u32,
    prepare: impl FnOnce(&Path) -> io::Result<()>,
) -> io::Result<()> {
    let dir = path.parent().expect("a file has a folder");
    fs::create_dir_all(dir).map_err(at(dir))?;
    let tmp = temp_beside(path);
    let written = (|| {
        let mut f = fs::File::create(&tmp).map_err(at(&tmp))?;
        f.write_all(bytes).map_err(at(&tmp))?;
        f.set_permissions(fs::Permissions::from_mode(mode))
            .map_err(at(&tmp))?;
        prepare(&tmp).map_err(at(&tmp))?;
        f.sync_all().map_err(at(&tmp))?;
        drop(f);
        fs::rename(&tmp, path).map_err(at(path))
    })();
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written?;
    sync_dir(dir)
}

/// Replace the file at `path` with `bytes`, mode 0644, durably.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_atomic_with(path, bytes, 0o644, |_| Ok(()))
}

/// Point the symbolic link `link` at `target` (creating or replacing it), durably.
pub(crate) fn replace_link(link: &Path, target: &Path) -> io::Result<()> {
    let dir = link.parent().expect("a link has a folder");
    fs::create_dir_all(dir).map_err(at(dir))?;
    let tmp = temp_beside(link);
    let _ = fs::remove_file(&tmp);
    symlink(target, &tmp).map_err(at(&tmp))?;
    fs::rename(&tmp, link).map_err(at(link))?;
    sync_dir(dir)
}
