//! Unpacking one layer tarball into its own directory, safely: no entry may write outside the
//! directory (absolute paths, `..`, paths through symlinks, symlinks or hard links escaping the
//! root are refused). OCI whiteouts (`.wh.NAME`, `.wh..wh..opq`) are not materialised; they
//! are returned so that they can be applied to the layers below when the rootfs is assembled.

use std::fs;
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::error::ImageError;
use super::fsutil::{remove_path, set_owner};

/// Prefix of a whiteout entry's file name.
const WHITEOUT_PREFIX: &str = ".wh.";
/// File name of an opaque-directory marker.
const OPAQUE_MARKER: &str = ".wh..wh..opq";

/// The whiteouts of one layer: paths (relative to the root) hiding what lower layers have.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Whiteouts {
    /// Paths removed from the layers below (`dir/.wh.NAME` → `dir/NAME`).
    pub removed: Vec<PathBuf>,
    /// Directories whose lower-layer contents are hidden (`dir/.wh..wh..opq` → `dir`).
    pub opaque: Vec<PathBuf>,
}

impl Whiteouts {
    /// Applies these whiteouts to `root` (the assembled layers below this one).
    pub fn apply(&self, root: &Path) -> Result<(), ImageError> {
        for dir in &self.opaque {
            let dir = root.join(dir);
            if let Ok(m) = fs::symlink_metadata(&dir)
                && m.is_dir()
            {
                for e in fs::read_dir(&dir).map_err(ImageError::io("listing", &dir))? {
                    let e = e.map_err(ImageError::io("listing", &dir))?;
                    remove_path(&e.path())?;
                }
            }
        }
        for path in &self.removed {
            remove_path(&root.join(path))?;
        }
        Ok(())
    }
}

/// A reader that hashes (sha256) what passes through it.
pub struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> HashingReader<R> {
    /// Wraps `inner`.
    pub fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Sha256::new(),
        }
    }

    /// Reads what is left and returns the hex sha256 of everything read.
    pub fn finish(mut self) -> io::Result<String> {
        io::copy(&mut self, &mut io::sink())?;
        Ok(format!("{:x}", self.hasher.finalize()))
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// Wraps `reader` in a gzip decoder when its content starts with the gzip magic bytes.
pub fn maybe_gunzip<'a, R: Read + 'a>(reader: R) -> io::Result<Box<dyn Read + 'a>> {
    let mut buffered = BufReader::new(reader);
    let head = buffered.fill_buf()?;
    if head.starts_with(&[0x1f, 0x8b]) {
        Ok(Box::new(flate2::read::GzDecoder::new(buffered)))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "zstd-compressed layers are not supported (gzip or plain tar only)",
        ))
    } else {
        Ok(Box::new(buffered))
    }
}

/// Turns a tar entry path into a safe relative path; `None` for the root itself.
pub fn safe_relative(raw: &Path) -> Result<Option<PathBuf>, String> {
    let mut out = PathBuf::new();
    for c in raw.components() {
        match c {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => {
                return Err("absolute path".to_string());
            }
            Component::ParentDir => return Err("`..` in path".to_string()),
        }
    }
    Ok((!out.as_os_str().is_empty()).then_some(out))
}

/// Whether symlink `target`, placed at `link` (relative to the root), stays inside the root
/// when resolved lexically (absolute targets resolve from the container's root).
pub fn symlink_stays_inside(link: &Path, target: &Path) -> bool {
    let mut depth: Vec<&std::ffi::OsStr> = match link.parent() {
        Some(p) if !target.is_absolute() => p
            .components()
            .filter_map(|c| match c {
                Component::Normal(s) => Some(s),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    for c in target.components() {
        match c {
            Component::Normal(s) => depth.push(s),
            Component::ParentDir => {
                if depth.pop().is_none() {
                    return false;
                }
            }
            Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
        }
    }
    true
}

/// Creates the parent directories of `rel` under `root`, refusing to go through a symlink.
fn prepare_parent(root: &Path, rel: &Path) -> Result<(), String> {
    let mut current = root.to_path_buf();
    let Some(parent) = rel.parent() else {
        return Ok(());
    };
    for c in parent.components() {
        current.push(c);
        match fs::symlink_metadata(&current) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(format!(
                    "its parent {} is a symlink",
                    display_rel(root, &current)
                ));
            }
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                fs::remove_file(&current).map_err(|e| e.to_string())?;
                fs::create_dir(&current).map_err(|e| e.to_string())?;
            }
            Err(_) => fs::create_dir(&current).map_err(|e| e.to_string())?,
        }
    }
    Ok(())
}

fn display_rel(root: &Path, p: &Path) -> String {
    p.strip_prefix(root).unwrap_or(p).display().to_string()
}

/// Unpacks the (already decompressed) layer tarball `reader` into `dest` (which must exist),
/// returning its whiteouts. `layer` names the layer in errors.
pub fn unpack_layer<R: Read>(layer: &str, reader: R, dest: &Path) -> Result<Whiteouts, ImageError> {
    let tar_err = |source| ImageError::Tar {
        layer: layer.to_string(),
        source,
    };
    let mut archive = tar::Archive::new(reader);
    let mut whiteouts = Whiteouts::default();
    let mut dirs = Vec::new();
    for entry in archive.entries().map_err(tar_err)? {
        let mut entry = entry.map_err(tar_err)?;
        let raw = entry.path().map_err(tar_err)?.into_owned();
        let refuse = |reason: String| ImageError::UnsafeEntry {
            layer: layer.to_string(),
            entry: raw.display().to_string(),
            reason,
        };
        let Some(rel) = safe_relative(&raw).map_err(refuse)? else {
            continue;
        };
        let name = rel
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if name == OPAQUE_MARKER {
            whiteouts
                .opaque
                .push(rel.parent().map(Path::to_path_buf).unwrap_or_default());
            continue;
        }
        if let Some(hidden) = name.strip_prefix(WHITEOUT_PREFIX) {
            if hidden.is_empty() || hidden == "." || hidden == ".." {
                return Err(refuse(format!("malformed whiteout name {name:?}")));
            }
            whiteouts.removed.push(rel.with_file_name(hidden));
            continue;
        }
        prepare_parent(dest, &rel).map_err(refuse)?;
        let target = dest.join(&rel);
        let header = entry.header();
        let mode = header.mode().map_err(tar_err)? & 0o7777;
        let uid = header.uid().map_err(tar_err)? as u32;
        let gid = header.gid().map_err(tar_err)? as u32;
        let kind = header.entry_type();
        if kind.is_dir() {
            match fs::symlink_metadata(&target) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => {
                    remove_path(&target)?;
                    fs::create_dir(&target)
                        .map_err(ImageError::io("creating directory", &target))?;
                }
                Err(_) => fs::create_dir(&target)
                    .map_err(ImageError::io("creating directory", &target))?,
            }
            dirs.push((target, mode, uid, gid));
            continue;
        }
        remove_path(&target)?;
        if kind.is_file() || kind == tar::EntryType::Continuous {
            let mut file = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&target)
                .map_err(ImageError::io("creating", &target))?;
            io::copy(&mut entry, &mut file).map_err(tar_err)?;
            drop(file);
            set_owner(&target, uid, gid)?;
            fs::set_permissions(&target, fs::Permissions::from_mode(mode))
                .map_err(ImageError::io("setting permissions on", &target))?;
        } else if kind.is_symlink() {
            let link = entry
                .link_name()
                .map_err(tar_err)?
                .ok_or_else(|| refuse("symlink without a target".into()))?;
            if !symlink_stays_inside(&rel, &link) {
                return Err(refuse(format!(
                    "symlink to {} escapes the image root",
                    link.display()
                )));
            }
            symlink(&link, &target).map_err(ImageError::io("creating symlink", &target))?;
            set_owner(&target, uid, gid)?;
        } else if kind.is_hard_link() {
            let link = entry
                .link_name()
                .map_err(tar_err)?
                .ok_or_else(|| refuse("hard link without a target".into()))?;
            let link_rel = safe_relative(&link)
                .map_err(|r| refuse(format!("hard link target {}: {r}", link.display())))?
                .ok_or_else(|| refuse("hard link to the root".into()))?;
            prepare_parent(dest, &link_rel)
                .map_err(|r| refuse(format!("hard link target: {r}")))?;
            let source = dest.join(&link_rel);
            match fs::symlink_metadata(&source) {
                Ok(m) if m.is_file() => {}
                _ => {
                    return Err(refuse(format!(
                        "hard link target {} is not a file of this layer",
                        link.display()
                    )));
                }
            }
            fs::hard_link(&source, &target)
                .map_err(ImageError::io("creating hard link", &target))?;
        } else if kind.is_fifo() {
            nix::unistd::mkfifo(&target, nix::sys::stat::Mode::from_bits_truncate(mode))
                .map_err(|e| ImageError::io("creating fifo", &target)(io::Error::from(e)))?;
            set_owner(&target, uid, gid)?;
        } else {
            // Devices and other entry types: the OCI runtime populates /dev; skip.
            tracing::debug!(layer, entry = %raw.display(), "skipping special layer entry");
        }
    }
    for (dir, mode, uid, gid) in dirs.into_iter().rev() {
        set_owner(&dir, uid, gid)?;
        fs::set_permissions(&dir, fs::Permissions::from_mode(mode))
            .map_err(ImageError::io("setting permissions on", &dir))?;
    }
    Ok(whiteouts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_are_checked() {
        assert_eq!(
            safe_relative(Path::new("./a/b")),
            Ok(Some(PathBuf::from("a/b")))
        );
        assert_eq!(safe_relative(Path::new("./")), Ok(None));
        assert!(safe_relative(Path::new("/etc/passwd")).is_err());
        assert!(safe_relative(Path::new("a/../../b")).is_err());
    }

    #[test]
    fn symlink_escapes_are_detected() {
        assert!(symlink_stays_inside(
            Path::new("bin/sh"),
            Path::new("busybox")
        ));
        assert!(symlink_stays_inside(
            Path::new("bin/sh"),
            Path::new("/bin/busybox")
        ));
        assert!(symlink_stays_inside(
            Path::new("a/b/c"),
            Path::new("../../x")
        ));
        assert!(!symlink_stays_inside(
            Path::new("a/b/c"),
            Path::new("../../../x")
        ));
        assert!(!symlink_stays_inside(
            Path::new("evil"),
            Path::new("../etc")
        ));
        assert!(!symlink_stays_inside(
            Path::new("evil"),
            Path::new("/../etc")
        ));
    }
}
