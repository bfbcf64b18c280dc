//! Building small images in tests: layer tarballs (including malicious ones), OCI image
//! layouts and `docker save` archives, with no registry.
#![allow(dead_code)]

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// The hex sha256 of `data`.
pub fn sha256(data: &[u8]) -> String {
    format!("{:x}", Sha256::digest(data))
}

/// Builds one layer tarball.
pub struct Layer {
    builder: tar::Builder<Vec<u8>>,
}

impl Default for Layer {
    fn default() -> Self {
        Layer::new()
    }
}

impl Layer {
    /// An empty layer.
    pub fn new() -> Self {
        Layer {
            builder: tar::Builder::new(Vec::new()),
        }
    }

    fn header(kind: tar::EntryType, name: &[u8], mode: u32, size: u64) -> tar::Header {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        // Written raw so that tests can build entries the tar crate would refuse (`..`, `/`).
        let field = &mut h.as_old_mut().name;
        field[..name.len()].copy_from_slice(name);
        h
    }

    fn append(&mut self, mut h: tar::Header, data: &[u8]) -> &mut Self {
        h.set_cksum();
        self.builder
            .append(&h, data)
            .expect("appending to an in-memory tar");
        self
    }

    /// A directory entry.
    pub fn dir(&mut self, path: &str, mode: u32) -> &mut Self {
        let h = Self::header(tar::EntryType::Directory, path.as_bytes(), mode, 0);
        self.append(h, &[])
    }

    /// A regular file entry (the path is written as given, even `../x` or `/x`).
    pub fn file(&mut self, path: &str, content: &[u8], mode: u32) -> &mut Self {
        let h = Self::header(
            tar::EntryType::Regular,
            path.as_bytes(),
            mode,
            content.len() as u64,
        );
        self.append(h, content)
    }

    fn link(&mut self, kind: tar::EntryType, path: &str, target: &str) -> &mut Self {
        let mut h = Self::header(kind, path.as_bytes(), 0o777, 0);
        let field = &mut h.as_old_mut().linkname;
        field[..target.len()].copy_from_slice(target.as_bytes());
        self.append(h, &[])
    }

    /// A symlink entry.
    pub fn symlink(&mut self, path: &str, target: &str) -> &mut Self {
        self.link(tar::EntryType::Symlink, path, target)
    }

    /// A hard link entry.
    pub fn hardlink(&mut self, path: &str, target: &str) -> &mut Self {
        self.link(tar::EntryType::Link, path, target)
    }

    /// The tarball.
    pub fn finish(&mut self) -> Vec<u8> {
        let builder = std::mem::replace(&mut self.builder, tar::Builder::new(Vec::new()));
        builder.into_inner().expect("finishing an in-memory tar")
    }
}

/// Gzips `data`.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).expect("gzip in memory");
    enc.finish().expect("gzip in memory")
}

/// An image config JSON with these defaults and diff ids.
pub fn config_json(
    entrypoint: &[&str],
    cmd: &[&str],
    env: &[&str],
    diff_ids: &[String],
) -> Vec<u8> {
    let diff_ids: Vec<String> = diff_ids.iter().map(|d| format!("sha256:{d}")).collect();
    serde_json::to_vec(&serde_json::json!({
        "architecture": match std::env::consts::ARCH { "x86_64" => "amd64", "aarch64" => "arm64", a => a },
        "os": "linux",
        "config": {"Entrypoint": entrypoint, "Cmd": cmd, "Env": env, "WorkingDir": "/work", "User": "1000:1000"},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))
    .expect("json")
}

fn write_blob(dir: &Path, data: &[u8]) -> String {
    let hex = sha256(data);
    let blobs = dir.join("blobs/sha256");
    fs::create_dir_all(&blobs).expect("blobs dir");
    fs::write(blobs.join(&hex), data).expect("blob");
    hex
}

/// Writes an OCI image layout at `dir` with these layer blobs (plain or gzipped tarballs, whose
/// uncompressed forms are `uncompressed`) and returns `dir`.
pub fn oci_layout(dir: &Path, blobs: &[Vec<u8>], uncompressed: &[Vec<u8>]) -> PathBuf {
    let diff_ids: Vec<String> = uncompressed.iter().map(|l| sha256(l)).collect();
    let config = config_json(
        &["/bin/sh", "-c"],
        &["echo default"],
        &["FROM_IMAGE=yes"],
        &diff_ids,
    );
    let config_hex = write_blob(dir, &config);
    let layers: Vec<serde_json::Value> = blobs
        .iter()
        .map(|b| {
            let gz = b.starts_with(&[0x1f, 0x8b]);
            serde_json::json!({
                "mediaType": if gz { "application/vnd.oci.image.layer.v1.tar+gzip" } else { "application/vnd.oci.image.layer.v1.tar" },
                "digest": format!("sha256:{}", write_blob(dir, b)),
                "size": b.len(),
            })
        })
        .collect();
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": format!("sha256:{config_hex}"), "size": config.len()},
        "layers": layers,
    }))
    .expect("json");
    let manifest_hex = write_blob(dir, &manifest);
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": format!("sha256:{manifest_hex}"), "size": manifest.len()}],
    });
    fs::write(
        dir.join("index.json"),
        serde_json::to_vec(&index).expect("json"),
    )
    .expect("index");
    fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).expect("oci-layout");
    dir.to_path_buf()
}

/// Writes a `docker save` archive of these (uncompressed) layers at `path`.
pub fn docker_archive(path: &Path, layers: &[Vec<u8>]) {
    let diff_ids: Vec<String> = layers.iter().map(|l| sha256(l)).collect();
    let config = config_json(&[], &["/bin/sh"], &[], &diff_ids);
    let config_name = format!("{}.json", sha256(&config));
    let mut archive = Layer::new();
    let mut names = Vec::new();
    for (i, layer) in layers.iter().enumerate() {
        let name = format!("layer{i}/layer.tar");
        archive
            .dir(&format!("layer{i}/"), 0o755)
            .file(&name, layer, 0o644);
        names.push(name);
    }
    let manifest =
        serde_json::json!([{"Config": config_name, "RepoTags": ["test:latest"], "Layers": names}]);
    archive.file(&config_name, &config, 0o644).file(
        "manifest.json",
        &serde_json::to_vec(&manifest).expect("json"),
        0o644,
    );
    fs::write(path, archive.finish()).expect("archive");
}

/// A layer with the host's static busybox as `/bin/busybox`, applet symlinks, and a marker
/// file only the image has; `None` (with a message) when busybox is not installed.
pub fn busybox_layer() -> Option<Vec<u8>> {
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .find(|p| Path::new(p).is_file())?;
    let data = fs::read(busybox).ok()?;
    let mut layer = Layer::new();
    layer.dir("bin/", 0o755).file("bin/busybox", &data, 0o755);
    for applet in [
        "sh", "echo", "ls", "cat", "sleep", "test", "id", "pwd", "env",
    ] {
        layer.symlink(&format!("bin/{applet}"), "busybox");
    }
    layer
        .dir("etc/", 0o755)
        .file("etc/image-marker", b"only-in-the-image\n", 0o644);
    layer.dir("work/", 0o777);
    Some(layer.finish())
}
