//! File-tree helpers for the image store: copying a tree (modes, owners, symlinks, hard links
//! kept), measuring its size, removing paths without following symlinks.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::Path;

use super::error::ImageError;

/// Copies the tree under `src` into `dst` (created if missing), merging with what is there:
/// an existing non-directory at a destination path is replaced. Symlinks are copied as links
/// (never followed), hard links inside `src` stay hard links in `dst`, modes are kept and,
/// when running as root, owners too. Device nodes are skipped (the runtime provides `/dev`).
pub fn copy_tree(src: &Path, dst: &Path) -> Result<(), ImageError> {
    let mut links = HashMap::new();
    fs::create_dir_all(dst).map_err(ImageError::io("creating directory", dst))?;
    copy_dir_contents(src, dst, &mut links)?;
    let meta = fs::symlink_metadata(src).map_err(ImageError::io("reading", src))?;
    apply_meta(dst, &meta)
}

fn copy_dir_contents(
    src: &Path,
    dst: &Path,
    links: &mut HashMap<(u64, u64), std::path::PathBuf>,
) -> Result<(), ImageError> {
    let entries = fs::read_dir(src).map_err(ImageError::io("listing", src))?;
    for entry in entries {
        let entry = entry.map_err(ImageError::io("listing", src))?;
        let from = entry.path();
        let to = dst.join(entry.file_name());
        let meta = fs::symlink_metadata(&from).map_err(ImageError::io("reading", &from))?;
        let ft = meta.file_type();
        if ft.is_dir() {
            match fs::symlink_metadata(&to) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => {
                    remove_path(&to)?;
                    fs::create_dir(&to).map_err(ImageError::io("creating directory", &to))?;
                }
                Err(_) => fs::create_dir(&to).map_err(ImageError::io("creating directory", &to))?,
            }
            copy_dir_contents(&from, &to, links)?;
            apply_meta(&to, &meta)?;
            continue;
        }
        if fs::symlink_metadata(&to).is_ok() {
            remove_path(&to)?;
        }
        if ft.is_symlink() {
            let target = fs::read_link(&from).map_err(ImageError::io("reading link", &from))?;
            symlink(&target, &to).map_err(ImageError::io("creating symlink", &to))?;
            lchown_if_root(&to, &meta)?;
        } else if ft.is_file() {
            let key = (meta.dev(), meta.ino());
            if meta.nlink() > 1
                && let Some(first) = links.get(&key)
            {
                fs::hard_link(first, &to).map_err(ImageError::io("creating hard link", &to))?;
                continue;
            }
            fs::copy(&from, &to).map_err(ImageError::io("copying", &from))?;
            apply_meta(&to, &meta)?;
            if meta.nlink() > 1 {
                links.insert(key, to);
            }
        } else if is_fifo(&meta) {
            nix::unistd::mkfifo(&to, nix::sys::stat::Mode::from_bits_truncate(meta.mode()))
                .map_err(|e| ImageError::io("creating fifo", &to)(io::Error::from(e)))?;
            apply_meta(&to, &meta)?;
        }
        // Character and block devices are skipped: the OCI runtime populates /dev.
    }
    Ok(())
}

fn is_fifo(meta: &fs::Metadata) -> bool {
    use std::os::unix::fs::FileTypeExt;
    meta.file_type().is_fifo()
}

/// Sets `path`'s mode (and owner when root) from `meta`.
fn apply_meta(path: &Path, meta: &fs::Metadata) -> Result<(), ImageError> {
    lchown_if_root(path, meta)?;
    fs::set_permissions(path, fs::Permissions::from_mode(meta.mode() & 0o7777))
        .map_err(ImageError::io("setting permissions on", path))
}

fn lchown_if_root(path: &Path, meta: &fs::Metadata) -> Result<(), ImageError> {
    set_owner(path, meta.uid(), meta.gid())
}

/// Sets the owner of `path` (not following a symlink) when running as root; a no-op otherwise.
pub fn set_owner(path: &Path, uid: u32, gid: u32) -> Result<(), ImageError> {
    if !running_as_root() {
        return Ok(());
    }
    std::os::unix::fs::lchown(path, Some(uid), Some(gid)).map_err(ImageError::io("chown", path))
}

/// Whether this process runs as root (the owner of `/proc/self` is its effective uid).
pub fn running_as_root() -> bool {
    static ROOT: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ROOT.get_or_init(|| {
        fs::metadata("/proc/self")
            .map(|m| m.uid() == 0)
            .unwrap_or(false)
    })
}

/// Removes `path` whatever it is (a directory recursively), never following a symlink.
/// A missing path is not an error.
pub fn remove_path(path: &Path) -> Result<(), ImageError> {
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(ImageError::io("reading", path)(e)),
        Ok(m) if m.is_dir() => {
            make_writable(path);
            fs::remove_dir_all(path).map_err(ImageError::io("removing", path))
        }
        Ok(_) => fs::remove_file(path).map_err(ImageError::io("removing", path)),
    }
}

/// Gives the owner write permission on every directory under `path` so that it can be removed
/// when not running as root (layers may contain read-only directories).
fn make_writable(path: &Path) {
    if let Ok(m) = fs::symlink_metadata(path)
        && m.is_dir()
    {
        let _ = fs::set_permissions(
            path,
            fs::Permissions::from_mode((m.mode() & 0o7777) | 0o700),
        );
        if let Ok(entries) = fs::read_dir(path) {
            for e in entries.flatten() {
                make_writable(&e.path());
            }
        }
    }
}

/// Total size in bytes of the regular files under `path` (hard links counted once).
pub fn tree_size(path: &Path) -> u64 {
    let mut seen = std::collections::HashSet::new();
    let mut total = 0;
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(m) = fs::symlink_metadata(e.path()) else {
                continue;
            };
            if m.is_dir() {
                stack.push(e.path());
            } else if m.is_file() && seen.insert((m.dev(), m.ino())) {
                total += m.len();
            }
        }
    }
    total
}
