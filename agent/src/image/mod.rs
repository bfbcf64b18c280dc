//! The image store: images from an OCI image layout (directory or tar archive) or a
//! `docker save` archive, verified (sha256) and unpacked into a content-addressed cache shared
//! by tasks, garbage-collected by LRU under a size limit.
//!
//! # Cache layout (under the store's root, e.g. `<work_dir>/images`)
//! - `layers/sha256/<hex>/rootfs/`: one unpacked layer (whiteouts not materialised);
//!   `whiteouts.json` beside it lists them, `meta.json` has its size and last use.
//! - `rootfs/sha256/<image id>/rootfs/`: the image's layers assembled bottom-up with the
//!   whiteouts applied: the read-only lower layer of a task's root filesystem.
//! - `tmp/`: staging; everything appears in the cache by an atomic rename.
//!
//! # Modules
//! - [`source`]: resolving an image source (index, manifest, config, layer list, digests).
//! - [`unpack`]: safe unpacking of a layer tarball (traversal refused, whiteouts collected).
//! - [`gc`]: the pure LRU eviction decision.
//! - [`user`]: the image's `User` to numeric ids (with the image's `/etc/passwd`).
//! - [`fsutil`]: tree copy, size, removal.
//! - [`error`]: the error type, [`ImageError`].

pub mod error;
pub mod fsutil;
pub mod gc;
pub mod source;
pub mod unpack;
pub mod user;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

pub use error::ImageError;
use source::{LayerRef, Verify};
use unpack::{HashingReader, Whiteouts, maybe_gunzip, unpack_archive, unpack_layer};

/// What the image's config says about running it (all optional in images).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageDefaults {
    /// `Entrypoint`.
    pub entrypoint: Vec<String>,
    /// `Cmd`.
    pub cmd: Vec<String>,
    /// `Env`, as `NAME=value`.
    pub env: Vec<String>,
    /// `WorkingDir`.
    pub working_dir: Option<String>,
    /// `User` (`uid`, `uid:gid`, or names: resolving names is the launcher's job).
    pub user: Option<String>,
}

impl ImageDefaults {
    /// The command to run: the entrypoint followed by `args` when given, else by `Cmd`
    /// (Docker's rule). Empty when the image has neither and no args are given.
    pub fn command(&self, args: Option<&[String]>) -> Vec<String> {
        let mut out = self.entrypoint.clone();
        out.extend(
            args.map(<[String]>::to_vec)
                .unwrap_or_else(|| self.cmd.clone()),
        );
        out
    }
}

/// The id prefix of a plain root filesystem directory used as an image (`dir:/its/path`).
pub const PLAIN_DIR_PREFIX: &str = "dir:";

/// An image ready to run: its assembled root filesystem in the cache.
#[derive(Debug, Clone)]
pub struct Image {
    /// Its id: the manifest digest (OCI layout) or config digest (`docker save`), hex; for a
    /// plain root filesystem directory, `dir:` and its canonical path.
    pub id: String,
    /// The assembled root filesystem (read-only by convention: tasks get a writable layer).
    pub rootfs: PathBuf,
    /// The layer digests (hex), bottom first.
    pub layers: Vec<String>,
    /// Entrypoint, command, env, working dir, user.
    pub defaults: ImageDefaults,
}

impl Image {
    /// Whether this is a plain root filesystem directory (no digest, layers or config).
    pub fn is_plain_dir(&self) -> bool {
        self.id.starts_with(PLAIN_DIR_PREFIX)
    }

    /// How `/state` names it: `sha256:<id>`, or `dir:<path>` for a plain directory.
    pub fn digest(&self) -> String {
        if self.is_plain_dir() {
            self.id.clone()
        } else {
            format!("sha256:{}", self.id)
        }
    }
}

/// Size and last use of a cache entry, and for a rootfs its layers.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Meta {
    size: u64,
    last_used_ms: u64,
    #[serde(default)]
    layers: Vec<String>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A staging directory under `tmp/`, removed on drop unless renamed away.
struct Staging(PathBuf);

impl Drop for Staging {
    fn drop(&mut self) {
        let _ = fsutil::remove_path(&self.0);
    }
}

/// The image store rooted at one directory.
#[derive(Debug, Clone)]
pub struct ImageStore {
    root: PathBuf,
}

impl ImageStore {
    /// Opens (creating) the store under `root`; leftovers of interrupted pulls are removed.
    pub fn new(root: impl Into<PathBuf>) -> Result<Self, ImageError> {
        let root = root.into();
        let _ = fsutil::remove_path(&root.join("tmp"));
        for dir in ["layers/sha256", "rootfs/sha256", "tmp"] {
            let d = root.join(dir);
            fs::create_dir_all(&d).map_err(ImageError::io("creating directory", &d))?;
        }
        Ok(ImageStore { root })
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn staging(&self) -> Result<Staging, ImageError> {
        let dir = self.root.join("tmp").join(uuid::Uuid::new_v4().to_string());
        fs::create_dir_all(dir.join("rootfs"))
            .map_err(ImageError::io("creating directory", &dir))?;
        Ok(Staging(dir))
    }

    /// Reads the image at `source` (an OCI layout directory, or a tar archive of one or of
    /// `docker save`, optionally gzipped), verifies it, unpacks its layers into the cache
    /// (reusing cached ones) and assembles its root filesystem. A directory that is neither a
    /// layout nor an unpacked `docker save` but holds `bin/` or `usr/` is a plain root
    /// filesystem: used where it is (tasks still get their own writable layer over it), with
    /// no digest, no layers and no image config ([`Image::is_plain_dir`]).
    pub fn pull(&self, source: &Path) -> Result<Image, ImageError> {
        let meta = fs::metadata(source).map_err(ImageError::io("reading image", source))?;
        if meta.is_dir() && source::is_plain_rootfs(source) {
            let rootfs =
                fs::canonicalize(source).map_err(ImageError::io("reading image", source))?;
            return Ok(Image {
                id: format!("{PLAIN_DIR_PREFIX}{}", rootfs.display()),
                rootfs,
                layers: Vec::new(),
                defaults: ImageDefaults::default(),
            });
        }
        let staged;
        let dir = if meta.is_dir() {
            source.to_path_buf()
        } else {
            staged = self.staging()?;
            let file = fs::File::open(source).map_err(ImageError::io("opening image", source))?;
            let reader = maybe_gunzip(file).map_err(ImageError::io("reading image", source))?;
            let label = format!("archive {}", source.display());
            unpack_archive(&label, reader, &staged.0.join("rootfs"))?;
            staged.0.join("rootfs")
        };
        let resolved = source::resolve_dir(&dir)?;
        let mut layers = Vec::new();
        for layer in &resolved.layers {
            layers.push(self.ensure_layer(layer)?);
        }
        let rootfs = self.ensure_rootfs(&resolved.id, &layers)?;
        let defaults = resolved
            .config
            .config()
            .as_ref()
            .map(|c| ImageDefaults {
                entrypoint: c.entrypoint().clone().unwrap_or_default(),
                cmd: c.cmd().clone().unwrap_or_default(),
                env: c.env().clone().unwrap_or_default(),
                working_dir: c.working_dir().clone().filter(|w| !w.is_empty()),
                user: c.user().clone().filter(|u| !u.is_empty()),
            })
            .unwrap_or_default();
        Ok(Image {
            id: resolved.id,
            rootfs,
            layers,
            defaults,
        })
    }

    fn layer_dir(&self, hex: &str) -> PathBuf {
        self.root.join("layers").join("sha256").join(hex)
    }

    fn rootfs_dir(&self, id: &str) -> PathBuf {
        self.root.join("rootfs").join("sha256").join(id)
    }

    /// Unpacks one layer into the cache unless it is there; returns its key (hex digest).
    fn ensure_layer(&self, layer: &LayerRef) -> Result<String, ImageError> {
        let key = layer.verify.key().to_string();
        let dir = self.layer_dir(&key);
        if dir.join("meta.json").is_file() {
            touch(&dir)?;
            return Ok(key);
        }
        let span = tracing::info_span!("unpack_layer", layer = %key);
        let _enter = span.enter();
        let staging = self.staging()?;
        let file =
            fs::File::open(&layer.file).map_err(ImageError::io("opening layer", &layer.file))?;
        let label = format!("sha256:{key} ({})", layer.file.display());
        let whiteouts = match &layer.verify {
            Verify::File(hex) => {
                let actual = source::sha256_file(&layer.file)?;
                if &actual != hex {
                    return Err(ImageError::DigestMismatch {
                        path: layer.file.clone(),
                        expected: hex.clone(),
                        actual,
                    });
                }
                let reader =
                    maybe_gunzip(file).map_err(ImageError::io("reading layer", &layer.file))?;
                unpack_layer(&label, reader, &staging.0.join("rootfs"))?
            }
            Verify::Uncompressed(hex) => {
                let reader =
                    maybe_gunzip(file).map_err(ImageError::io("reading layer", &layer.file))?;
                let mut hashing = HashingReader::new(reader);
                let whiteouts = unpack_layer(&label, &mut hashing, &staging.0.join("rootfs"))?;
                let actual = hashing
                    .finish()
                    .map_err(ImageError::io("reading layer", &layer.file))?;
                if &actual != hex {
                    return Err(ImageError::DigestMismatch {
                        path: layer.file.clone(),
                        expected: hex.clone(),
                        actual,
                    });
                }
                whiteouts
            }
        };
        write_json(&staging.0.join("whiteouts.json"), &whiteouts)?;
        let size = fsutil::tree_size(&staging.0);
        write_meta(
            &staging.0,
            &Meta {
                size,
                last_used_ms: now_ms(),
                layers: Vec::new(),
            },
        )?;
        publish(staging, &dir)?;
        Ok(key)
    }

    /// Assembles the image's root filesystem from its cached layers unless it is there.
    fn ensure_rootfs(&self, id: &str, layers: &[String]) -> Result<PathBuf, ImageError> {
        let dir = self.rootfs_dir(id);
        if dir.join("meta.json").is_file() {
            touch(&dir)?;
            return Ok(dir.join("rootfs"));
        }
        let staging = self.staging()?;
        let target = staging.0.join("rootfs");
        for key in layers {
            let layer = self.layer_dir(key);
            let whiteouts: Whiteouts = read_json(&layer.join("whiteouts.json"))?;
            whiteouts.apply(&target)?;
            fsutil::copy_tree(&layer.join("rootfs"), &target)?;
        }
        let size = fsutil::tree_size(&staging.0);
        write_meta(
            &staging.0,
            &Meta {
                size,
                last_used_ms: now_ms(),
                layers: layers.to_vec(),
            },
        )?;
        publish(staging, &dir)?;
        Ok(dir.join("rootfs"))
    }

    /// The cache's size in bytes (layers and assembled root filesystems, from their metadata).
    pub fn total_size(&self) -> Result<u64, ImageError> {
        let mut total = 0u64;
        for dir in ["rootfs/sha256", "layers/sha256"] {
            let base = self.root.join(dir);
            for e in fs::read_dir(&base).map_err(ImageError::io("listing", &base))? {
                let e = e.map_err(ImageError::io("listing", &base))?;
                let meta: Meta = read_json(&e.path().join("meta.json")).unwrap_or_default();
                total = total.saturating_add(meta.size);
            }
        }
        Ok(total)
    }

    /// Evicts least recently used layers and root filesystems until the cache is at most
    /// `limit` bytes, never touching the images whose ids are in `in_use` (nor their layers).
    /// Must not run concurrently with [`ImageStore::pull`]. Returns the evicted entries.
    pub fn gc(&self, limit: u64, in_use: &[String]) -> Result<Vec<String>, ImageError> {
        let mut entries = Vec::new();
        let mut busy_layers = std::collections::HashSet::new();
        for (kind, dir) in [("rootfs", "rootfs/sha256"), ("layers", "layers/sha256")] {
            let base = self.root.join(dir);
            for e in fs::read_dir(&base).map_err(ImageError::io("listing", &base))? {
                let e = e.map_err(ImageError::io("listing", &base))?;
                let name = e.file_name().to_string_lossy().into_owned();
                let meta: Meta = read_json(&e.path().join("meta.json")).unwrap_or_default();
                let in_use = if kind == "rootfs" {
                    let used = in_use.contains(&name);
                    if used {
                        busy_layers.extend(meta.layers.iter().cloned());
                    }
                    used
                } else {
                    busy_layers.contains(&name)
                };
                entries.push(gc::CacheEntry {
                    key: format!("{dir}/{name}"),
                    size: meta.size,
                    last_used: meta.last_used_ms,
                    in_use,
                });
            }
        }
        let evicted = gc::select_evictions(&entries, limit);
        for key in &evicted {
            tracing::info!(entry = %key, "evicting from the image cache");
            fsutil::remove_path(&self.root.join(key))?;
        }
        Ok(evicted)
    }
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), ImageError> {
    let text = serde_json::to_vec(value).map_err(|e| ImageError::io("encoding", path)(e.into()))?;
    fs::write(path, text).map_err(ImageError::io("writing", path))
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, ImageError> {
    let text = fs::read(path).map_err(ImageError::io("reading", path))?;
    serde_json::from_slice(&text).map_err(|e| ImageError::BadDocument {
        what: "cache metadata",
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

fn write_meta(dir: &Path, meta: &Meta) -> Result<(), ImageError> {
    let tmp = dir.join("meta.json.tmp");
    write_json(&tmp, meta)?;
    let path = dir.join("meta.json");
    fs::rename(&tmp, &path).map_err(ImageError::io("writing", &path))
}

/// Records a use of the cache entry at `dir` now.
fn touch(dir: &Path) -> Result<(), ImageError> {
    let mut meta: Meta = read_json(&dir.join("meta.json"))?;
    meta.last_used_ms = now_ms();
    write_meta(dir, &meta)
}

/// Moves a finished staging directory into the cache; another pull may have won the race,
/// in which case its copy is kept and ours dropped.
fn publish(staging: Staging, dest: &Path) -> Result<(), ImageError> {
    match fs::rename(&staging.0, dest) {
        Ok(()) => {
            std::mem::forget(staging);
            Ok(())
        }
        Err(_) if dest.join("meta.json").is_file() => Ok(()),
        Err(e) => Err(ImageError::io("publishing into the image cache", dest)(e)),
    }
}
