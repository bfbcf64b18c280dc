//! Reading an image source: an OCI image layout directory, or a tar archive of one, or a
//! `docker save` archive. Resolves the manifest, the config and the layer list, and verifies
//! the sha256 digests of the documents (layers are verified when they are unpacked).

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use oci_spec::image::{Descriptor, ImageConfiguration, ImageIndex, ImageManifest};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::error::ImageError;

/// How a layer file's content is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verify {
    /// The file as stored (possibly compressed) hashes to this hex digest (OCI layout).
    File(String),
    /// The decompressed tar stream hashes to this hex digest (a `docker save` diff id).
    Uncompressed(String),
}

impl Verify {
    /// The hex digest that names the layer in the cache.
    pub fn key(&self) -> &str {
        match self {
            Verify::File(h) | Verify::Uncompressed(h) => h,
        }
    }
}

/// One layer of a resolved image.
#[derive(Debug, Clone)]
pub struct LayerRef {
    /// The layer file.
    pub file: PathBuf,
    /// How it is verified; its key names it in the cache.
    pub verify: Verify,
}

/// An image source, resolved.
#[derive(Debug)]
pub struct Resolved {
    /// The image's id: the manifest digest (OCI) or the config digest (`docker save`), hex.
    pub id: String,
    /// The image configuration.
    pub config: ImageConfiguration,
    /// The layers, bottom first.
    pub layers: Vec<LayerRef>,
}

/// Parses `sha256:<64 hex>` into its hex part.
pub fn sha256_hex(digest: &str, path: &Path) -> Result<String, ImageError> {
    let bad = || ImageError::BadDigest {
        digest: digest.to_string(),
        path: path.to_path_buf(),
    };
    let hex = digest.strip_prefix("sha256:").ok_or_else(bad)?;
    if hex.len() != 64
        || !hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(bad());
    }
    Ok(hex.to_string())
}

/// The hex sha256 of a file's content.
pub fn sha256_file(path: &Path) -> Result<String, ImageError> {
    let mut file = fs::File::open(path).map_err(ImageError::io("opening", path))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file
            .read(&mut buf)
            .map_err(ImageError::io("reading", path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(format!("{:x}", hasher.finalize()))
}

fn verify_file(path: &Path, expected: &str) -> Result<(), ImageError> {
    let actual = sha256_file(path)?;
    if actual != expected {
        return Err(ImageError::DigestMismatch {
            path: path.to_path_buf(),
            expected: expected.to_string(),
            actual,
        });
    }
    Ok(())
}

fn bad_doc(what: &'static str, path: &Path) -> impl FnOnce(oci_spec::OciSpecError) -> ImageError {
    let path = path.to_path_buf();
    move |e| ImageError::BadDocument {
        what,
        path,
        reason: e.to_string(),
    }
}

/// Whether `dir` is a plain root filesystem: no `index.json` (OCI layout) or `manifest.json`
/// (`docker save`), and a `bin/` or `usr/` directory.
pub fn is_plain_rootfs(dir: &Path) -> bool {
    !dir.join("index.json").exists()
        && !dir.join("manifest.json").exists()
        && (dir.join("bin").is_dir() || dir.join("usr").is_dir())
}

/// Resolves an unpacked image directory: an OCI image layout (`index.json`) or the content of
/// a `docker save` archive (`manifest.json`).
pub fn resolve_dir(dir: &Path) -> Result<Resolved, ImageError> {
    if dir.join("index.json").is_file() {
        resolve_oci(dir)
    } else if dir.join("manifest.json").is_file() {
        resolve_docker(dir)
    } else {
        Err(ImageError::BadImage {
            path: dir.to_path_buf(),
            reason: "neither an OCI image layout (no index.json), a docker save archive (no manifest.json) nor a root filesystem (no bin/ or usr/)".into(),
        })
    }
}

fn blob_path(dir: &Path, desc: &Descriptor, index: &Path) -> Result<(PathBuf, String), ImageError> {
    let hex = sha256_hex(desc.digest().as_ref(), index)?;
    Ok((dir.join("blobs").join("sha256").join(&hex), hex))
}

/// The Go name of this machine's architecture, as image platforms spell it.
fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// Picks the manifest for this platform from an index: the first whose platform is absent or
/// linux on this architecture. Nested indexes are followed (two levels at most).
fn pick_manifest(
    dir: &Path,
    index_path: &Path,
    depth: u8,
) -> Result<(PathBuf, String), ImageError> {
    let index = ImageIndex::from_file(index_path).map_err(bad_doc("index", index_path))?;
    let fits = |d: &&Descriptor| match d.platform() {
        None => true,
        Some(p) => p.os().to_string() == "linux" && p.architecture().to_string() == host_arch(),
    };
    let desc = index
        .manifests()
        .iter()
        .find(fits)
        .ok_or_else(|| ImageError::BadImage {
            path: index_path.to_path_buf(),
            reason: format!("no manifest for linux/{}", host_arch()),
        })?;
    let (path, hex) = blob_path(dir, desc, index_path)?;
    verify_file(&path, &hex)?;
    let media = desc.media_type().to_string();
    if media.contains("index") || media.contains("manifest.list") {
        if depth >= 2 {
            return Err(ImageError::BadImage {
                path: index_path.to_path_buf(),
                reason: "image indexes nested too deeply".into(),
            });
        }
        return pick_manifest(dir, &path, depth + 1);
    }
    Ok((path, hex))
}

fn resolve_oci(dir: &Path) -> Result<Resolved, ImageError> {
    let (manifest_path, id) = pick_manifest(dir, &dir.join("index.json"), 0)?;
    let manifest =
        ImageManifest::from_file(&manifest_path).map_err(bad_doc("manifest", &manifest_path))?;
    let (config_path, config_hex) = blob_path(dir, manifest.config(), &manifest_path)?;
    verify_file(&config_path, &config_hex)?;
    let config =
        ImageConfiguration::from_file(&config_path).map_err(bad_doc("config", &config_path))?;
    let mut layers = Vec::new();
    for desc in manifest.layers() {
        let (file, hex) = blob_path(dir, desc, &manifest_path)?;
        layers.push(LayerRef {
            file,
            verify: Verify::File(hex),
        });
    }
    Ok(Resolved { id, config, layers })
}

/// One image of a `docker save` `manifest.json`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerManifest {
    config: String,
    layers: Vec<String>,
}

/// Joins a path from an archive's manifest to `dir`, refusing traversal.
fn inside(dir: &Path, rel: &str, manifest: &Path) -> Result<PathBuf, ImageError> {
    match super::unpack::safe_relative(Path::new(rel)) {
        Ok(Some(p)) => Ok(dir.join(p)),
        Ok(None) => Err(ImageError::BadImage {
            path: manifest.to_path_buf(),
            reason: format!("empty path {rel:?}"),
        }),
        Err(reason) => Err(ImageError::BadImage {
            path: manifest.to_path_buf(),
            reason: format!("path {rel:?}: {reason}"),
        }),
    }
}

fn resolve_docker(dir: &Path) -> Result<Resolved, ImageError> {
    let manifest_path = dir.join("manifest.json");
    let text = fs::read(&manifest_path).map_err(ImageError::io("reading", &manifest_path))?;
    let images: Vec<DockerManifest> =
        serde_json::from_slice(&text).map_err(|e| ImageError::BadDocument {
            what: "docker manifest",
            path: manifest_path.clone(),
            reason: e.to_string(),
        })?;
    let image = images
        .into_iter()
        .next()
        .ok_or_else(|| ImageError::BadImage {
            path: manifest_path.clone(),
            reason: "manifest.json lists no image".into(),
        })?;
    let config_path = inside(dir, &image.config, &manifest_path)?;
    let id = sha256_file(&config_path)?;
    // Older archives name the config `<digest>.json`, newer ones `blobs/sha256/<digest>`.
    let named = config_path
        .file_name()
        .map(|n| n.to_string_lossy().trim_end_matches(".json").to_string());
    if let Some(name) = named
        && name.len() == 64
        && name != id
    {
        return Err(ImageError::DigestMismatch {
            path: config_path,
            expected: name,
            actual: id,
        });
    }
    let config =
        ImageConfiguration::from_file(&config_path).map_err(bad_doc("config", &config_path))?;
    let diff_ids = config.rootfs().diff_ids();
    if diff_ids.len() != image.layers.len() {
        return Err(ImageError::BadImage {
            path: manifest_path,
            reason: format!(
                "{} layers but {} diff ids in the config",
                image.layers.len(),
                diff_ids.len()
            ),
        });
    }
    let mut layers = Vec::new();
    for (file, diff_id) in image.layers.iter().zip(diff_ids) {
        layers.push(LayerRef {
            file: inside(dir, file, &manifest_path)?,
            verify: Verify::Uncompressed(sha256_hex(diff_id, &config_path)?),
        });
    }
    Ok(Resolved { id, config, layers })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_must_be_sha256_hex() {
        let p = Path::new("x");
        let good = format!("sha256:{}", "a".repeat(64));
        assert_eq!(sha256_hex(&good, p).ok(), Some("a".repeat(64)));
        assert!(sha256_hex("sha512:abc", p).is_err());
        assert!(sha256_hex(&format!("sha256:{}", "A".repeat(64)), p).is_err());
        assert!(sha256_hex("sha256:../../etc", p).is_err());
    }
}
