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
            // Only a real directory reached without symlinks: never one a symlink points at.
            let Some(dir) = real_path(root, dir) else {
                continue;
            };
            if fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir()) {
                for e in fs::read_dir(&dir).map_err(ImageError::io("listing", &dir))? {
                    let e = e.map_err(ImageError::io("listing", &dir))?;
                    remove_path(&e.path())?;
                }
            }
        }
        for path in &self.removed {
            if let Some(path) = real_path(root, path) {
                remove_path(&path)?;
            }
        }
        Ok(())
    }
}

/// `root/rel` when none of its parent directories under `root` is a symlink (nor missing):
/// whiteouts under a symlinked directory hide nothing and must not follow the link.
fn real_path(root: &Path, rel: &Path) -> Option<PathBuf> {
    if rel.as_os_str().is_empty() {
        return Some(root.to_path_buf());
    }
    let mut current = root.to_path_buf();
    for c in rel.parent()?.components() {
        current.push(c);
        if !fs::symlink_metadata(&current).is_ok_and(|m| m.is_dir()) {
            return None;
        }
    }
    Some(root.join(rel))
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

/// How strict unpacking is about symlinks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// An image layer: absolute symlink targets are fine (they resolve in the container).
    Layer,
    /// An image archive unpacked for reading on the host: absolute symlinks are refused.
    Archive,
}

/// Unpacks the (already decompressed) layer tarball `reader` into `dest` (which must exist),
/// returning its whiteouts. `layer` names the layer in errors.
pub fn unpack_layer<R: Read>(layer: &str, reader: R, dest: &Path) -> Result<Whiteouts, ImageError> {
    unpack(layer, reader, dest, Mode::Layer)
}

/// Unpacks an image archive (an OCI layout or `docker save` tarball) into `dest` to be read on
/// the host: as [`unpack_layer`], but absolute symlinks are refused too (they would point at
/// host files) and whiteout names are not special.
pub fn unpack_archive<R: Read>(label: &str, reader: R, dest: &Path) -> Result<(), ImageError> {
    unpack(label, reader, dest, Mode::Archive).map(drop)
}

/// What one entry asks for once its path is checked.
enum Step {
    Whiteout(PathBuf),
    Opaque(PathBuf),
    Write(PathBuf),
}

fn classify(rel: PathBuf, mode: Mode) -> Result<Step, String> {
    let name = rel
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if mode == Mode::Archive {
        return Ok(Step::Write(rel));
    }
    if name == OPAQUE_MARKER {
        return Ok(Step::Opaque(
            rel.parent().map(Path::to_path_buf).unwrap_or_default(),
        ));
    }
    match name.strip_prefix(WHITEOUT_PREFIX) {
        Some(hidden) if hidden.is_empty() || hidden == "." || hidden == ".." => {
            Err(format!("malformed whiteout name {name:?}"))
        }
        Some(hidden) => Ok(Step::Whiteout(rel.with_file_name(hidden))),
        None => Ok(Step::Write(rel)),
    }
}

fn unpack<R: Read>(
    layer: &str,
    reader: R,
    dest: &Path,
    mode: Mode,
) -> Result<Whiteouts, ImageError> {
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
        match classify(rel, mode).map_err(refuse)? {
            Step::Whiteout(path) => whiteouts.removed.push(path),
            Step::Opaque(path) => whiteouts.opaque.push(path),
            Step::Write(rel) => {
                prepare_parent(dest, &rel).map_err(refuse)?;
                if let Some(dir) =
                    write_entry(&mut entry, &rel, dest, mode).map_err(|e| match e {
                        EntryError::Refused(reason) => refuse(reason),
                        EntryError::Tar(source) => tar_err(source),
                        EntryError::Image(e) => e,
                    })?
                {
                    dirs.push(dir);
                }
            }
        }
    }
    for (dir, mode, uid, gid) in dirs.into_iter().rev() {
        set_owner(&dir, uid, gid)?;
        fs::set_permissions(&dir, fs::Permissions::from_mode(mode))
            .map_err(ImageError::io("setting permissions on", &dir))?;
    }
    Ok(whiteouts)
}

/// Why writing one entry failed.
enum EntryError {
    Refused(String),
    Tar(io::Error),
    Image(ImageError),
}

impl From<ImageError> for EntryError {
    fn from(e: ImageError) -> Self {
        EntryError::Image(e)
    }
}

/// A directory whose mode and owner are applied once the layer is unpacked.
type PendingDir = (PathBuf, u32, u32, u32);

/// Creates one entry at `dest/rel` (whose parents are real directories).
fn write_entry<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    rel: &Path,
    dest: &Path,
    mode: Mode,
) -> Result<Option<PendingDir>, EntryError> {
    let target = dest.join(rel);
    let header = entry.header();
    let perm = header.mode().map_err(EntryError::Tar)? & 0o7777;
    let uid = header.uid().map_err(EntryError::Tar)? as u32;
    let gid = header.gid().map_err(EntryError::Tar)? as u32;
    let kind = header.entry_type();
    if kind.is_dir() {
        if !fs::symlink_metadata(&target).is_ok_and(|m| m.is_dir()) {
            remove_path(&target)?;
            fs::create_dir(&target).map_err(ImageError::io("creating directory", &target))?;
        }
        return Ok(Some((target, perm, uid, gid)));
    }
    remove_path(&target)?;
    if kind.is_file() || kind == tar::EntryType::Continuous {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&target)
            .map_err(ImageError::io("creating", &target))?;
        io::copy(entry, &mut file).map_err(EntryError::Tar)?;
        drop(file);
        set_owner(&target, uid, gid)?;
        fs::set_permissions(&target, fs::Permissions::from_mode(perm))
            .map_err(ImageError::io("setting permissions on", &target))?;
    } else if kind.is_symlink() {
        let link = link_name(entry, "symlink")?;
        if !symlink_stays_inside(rel, &link) {
            return Err(EntryError::Refused(format!(
                "symlink to {} escapes the image root",
                link.display()
            )));
        }
        if mode == Mode::Archive && link.is_absolute() {
            return Err(EntryError::Refused(format!(
                "absolute symlink to {} in an image archive",
                link.display()
            )));
        }
        symlink(&link, &target).map_err(ImageError::io("creating symlink", &target))?;
        set_owner(&target, uid, gid)?;
    } else if kind.is_hard_link() {
        let source = hard_link_source(dest, &link_name(entry, "hard link")?)?;
        fs::hard_link(&source, &target).map_err(ImageError::io("creating hard link", &target))?;
    } else if kind.is_fifo() {
        nix::unistd::mkfifo(&target, nix::sys::stat::Mode::from_bits_truncate(perm))
            .map_err(|e| ImageError::io("creating fifo", &target)(io::Error::from(e)))?;
        set_owner(&target, uid, gid)?;
    } else {
        // Devices and other entry types: the OCI runtime populates /dev; skip.
        tracing::debug!(entry = %rel.display(), "skipping special layer entry");
    }
    Ok(None)
}

fn link_name<R: Read>(entry: &tar::Entry<'_, R>, what: &str) -> Result<PathBuf, EntryError> {
    entry
        .link_name()
        .map_err(EntryError::Tar)?
        .map(|l| l.into_owned())
        .ok_or_else(|| EntryError::Refused(format!("{what} without a target")))
}

/// The existing regular file of this layer a hard link points at.
fn hard_link_source(dest: &Path, link: &Path) -> Result<PathBuf, EntryError> {
    let refuse =
        |r: String| EntryError::Refused(format!("hard link target {}: {r}", link.display()));
    let rel = safe_relative(link)
        .map_err(refuse)?
        .ok_or_else(|| refuse("the root".into()))?;
    prepare_parent(dest, &rel).map_err(refuse)?;
    let source = dest.join(&rel);
    if !fs::symlink_metadata(&source).is_ok_and(|m| m.is_file()) {
        return Err(refuse("not a file of this layer".into()));
    }
    Ok(source)
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
