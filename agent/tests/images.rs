//! The image store against hand-made images: OCI layouts (plain and gzipped layers, a tar
//! archive of a layout), `docker save` archives, whiteouts, hard links and symlinks, digest
//! mismatches, path traversal, and LRU garbage collection.

mod support_images;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use proffer_agent::image::{ImageError, ImageStore};
use support_images::{Layer, docker_archive, gzip, oci_layout};

fn base_layer() -> Vec<u8> {
    Layer::new()
        .dir("bin/", 0o755)
        .file("bin/tool", b"#!/bin/sh\necho tool\n", 0o755)
        .symlink("bin/alias", "tool")
        .symlink("bin/abs", "/bin/tool")
        .hardlink("bin/tool-hard", "bin/tool")
        .dir("secret/", 0o750)
        .file("secret/key", b"k", 0o600)
        .dir("etc/", 0o755)
        .file("etc/a", b"a", 0o644)
        .file("etc/b", b"b", 0o644)
        .dir("opt/x/", 0o755)
        .file("opt/x/1", b"1", 0o644)
        .file("opt/x/2", b"2", 0o644)
        .finish()
}

fn whiteout_layer() -> Vec<u8> {
    Layer::new()
        .file("etc/.wh.a", b"", 0o644)
        .file("opt/x/.wh..wh..opq", b"", 0o644)
        .file("opt/x/3", b"3", 0o644)
        .file("etc/c", b"c", 0o644)
        .finish()
}

#[test]
fn an_oci_layout_unpacks_with_modes_links_and_config() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let base = base_layer();
    let layout = oci_layout(&tmp.path().join("image"), &[gzip(&base)], &[base]);
    let store = ImageStore::new(tmp.path().join("cache"))?;
    let image = store.pull(&layout)?;
    let root = &image.rootfs;
    assert_eq!(
        fs::read_to_string(root.join("bin/tool"))?,
        "#!/bin/sh\necho tool\n"
    );
    assert_eq!(
        fs::metadata(root.join("bin/tool"))?.permissions().mode() & 0o7777,
        0o755
    );
    assert_eq!(
        fs::metadata(root.join("secret"))?.permissions().mode() & 0o7777,
        0o750
    );
    assert_eq!(
        fs::metadata(root.join("secret/key"))?.permissions().mode() & 0o7777,
        0o600
    );
    assert_eq!(fs::read_link(root.join("bin/alias"))?, Path::new("tool"));
    assert_eq!(fs::read_link(root.join("bin/abs"))?, Path::new("/bin/tool"));
    assert_eq!(
        fs::metadata(root.join("bin/tool-hard"))?.ino(),
        fs::metadata(root.join("bin/tool"))?.ino()
    );
    assert_eq!(image.defaults.entrypoint, vec!["/bin/sh", "-c"]);
    assert_eq!(image.defaults.cmd, vec!["echo default"]);
    assert_eq!(
        image.defaults.command(None),
        vec!["/bin/sh", "-c", "echo default"]
    );
    assert_eq!(image.defaults.env, vec!["FROM_IMAGE=yes"]);
    assert_eq!(image.defaults.working_dir.as_deref(), Some("/work"));
    assert_eq!(image.defaults.user.as_deref(), Some("1000:1000"));
    // The layer is in the content-addressed cache under its (compressed) digest.
    assert_eq!(image.layers.len(), 1);
    assert!(
        tmp.path()
            .join("cache/layers/sha256")
            .join(&image.layers[0])
            .join("rootfs/bin/tool")
            .is_file()
    );
    // A second pull reuses the cache and gives the same image.
    let again = store.pull(&layout)?;
    assert_eq!((again.id, again.rootfs), (image.id, image.rootfs));
    Ok(())
}

#[test]
fn whiteouts_hide_lower_layer_files_and_opaque_dirs() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let (l1, l2) = (base_layer(), whiteout_layer());
    let layout = oci_layout(
        &tmp.path().join("image"),
        &[l1.clone(), gzip(&l2)],
        &[l1, l2],
    );
    let image = ImageStore::new(tmp.path().join("cache"))?.pull(&layout)?;
    let root = &image.rootfs;
    assert!(!root.join("etc/a").exists(), "etc/a is whited out");
    assert!(root.join("etc/b").is_file() && root.join("etc/c").is_file());
    let mut x: Vec<String> = fs::read_dir(root.join("opt/x"))?
        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<Result<_, _>>()?;
    x.sort();
    assert_eq!(
        x,
        vec!["3"],
        "opaque dir keeps only the upper layer's files"
    );
    assert!(!root.join("etc/.wh.a").exists() && !root.join("opt/x/.wh..wh..opq").exists());
    Ok(())
}

#[test]
fn a_tar_archive_of_a_layout_and_a_docker_save_archive_both_load() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let base = base_layer();
    let layout = oci_layout(
        &tmp.path().join("image"),
        std::slice::from_ref(&base),
        std::slice::from_ref(&base),
    );
    let mut archive = tar::Builder::new(Vec::new());
    archive.append_dir_all(".", &layout)?;
    let archive_path = tmp.path().join("image.tar");
    fs::write(&archive_path, archive.into_inner()?)?;
    let store = ImageStore::new(tmp.path().join("cache"))?;
    let from_archive = store.pull(&archive_path)?;
    assert!(from_archive.rootfs.join("bin/tool").is_file());

    let docker = tmp.path().join("docker.tar");
    docker_archive(&docker, &[base, whiteout_layer()]);
    let image = store.pull(&docker)?;
    assert!(image.rootfs.join("etc/c").is_file() && !image.rootfs.join("etc/a").exists());
    assert_eq!(image.defaults.cmd, vec!["/bin/sh"]);
    Ok(())
}

#[test]
fn a_digest_mismatch_is_refused_and_nothing_is_cached() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let base = base_layer();
    let layout = oci_layout(
        &tmp.path().join("image"),
        std::slice::from_ref(&base),
        std::slice::from_ref(&base),
    );
    let blob = layout
        .join("blobs/sha256")
        .join(support_images::sha256(&base));
    let mut tampered = base.clone();
    tampered[600] ^= 1;
    fs::write(&blob, tampered)?;
    let store = ImageStore::new(tmp.path().join("cache"))?;
    let err = store
        .pull(&layout)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.contains("digest mismatch") && err.contains(&support_images::sha256(&base)),
        "{err}"
    );
    assert_eq!(
        fs::read_dir(tmp.path().join("cache/layers/sha256"))?.count(),
        0
    );

    // A docker save archive whose layer does not match its diff id.
    let docker = tmp.path().join("docker.tar");
    docker_archive(&docker, &[base]);
    let mut bytes = fs::read(&docker)?;
    let at = bytes
        .windows(11)
        .position(|w| w == b"echo tool\n\0")
        .unwrap_or(0);
    bytes[at] = b'E';
    fs::write(&docker, bytes)?;
    let err = store
        .pull(&docker)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("digest mismatch"), "{err}");
    Ok(())
}

/// Pulls an image made of `layer` and returns the error text (empty when it loads).
fn pull_error(tmp: &Path, layer: Vec<u8>) -> anyhow::Result<String> {
    let layout = oci_layout(
        &tmp.join("image"),
        std::slice::from_ref(&layer),
        std::slice::from_ref(&layer),
    );
    let result = ImageStore::new(tmp.join("cache"))?.pull(&layout);
    Ok(match result {
        Ok(_) => String::new(),
        Err(e @ ImageError::UnsafeEntry { .. }) => e.to_string(),
        Err(e) => format!("unexpected error kind: {e}"),
    })
}

#[test]
fn malicious_layers_cannot_write_outside_their_root() -> anyhow::Result<()> {
    let outside = tempfile::tempdir()?;
    let target = outside.path().display().to_string();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "dot-dot",
            Layer::new().file("../../escaped", b"x", 0o644).finish(),
            "`..` in path",
        ),
        (
            "absolute",
            Layer::new()
                .file(&format!("{target}/escaped"), b"x", 0o644)
                .finish(),
            "absolute path",
        ),
        (
            "relative symlink escape",
            Layer::new().symlink("evil", "../../../../../..").finish(),
            "escapes the image root",
        ),
        (
            "write through an absolute symlink",
            Layer::new()
                .symlink("link", &target)
                .file("link/escaped", b"x", 0o644)
                .finish(),
            "is a symlink",
        ),
        (
            "hard link to a host file",
            Layer::new()
                .hardlink("passwd", "../../../../../etc/passwd")
                .finish(),
            "hard link target",
        ),
    ];
    for (name, layer, reason) in cases {
        let tmp = tempfile::tempdir()?;
        let err = pull_error(tmp.path(), layer)?;
        assert!(
            err.contains("refused") && err.contains(reason),
            "{name}: {err}"
        );
        assert_eq!(
            fs::read_dir(outside.path())?.count(),
            0,
            "{name}: wrote outside the root"
        );
        assert_eq!(
            fs::read_dir(tmp.path().join("cache/layers/sha256"))?.count(),
            0,
            "{name}: cached"
        );
    }
    Ok(())
}

#[test]
fn gc_evicts_least_recently_used_images_not_in_use() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let store = ImageStore::new(tmp.path().join("cache"))?;
    let one = Layer::new().file("one", &[1u8; 4096], 0o644).finish();
    let two = Layer::new().file("two", &[2u8; 4096], 0o644).finish();
    let a = store.pull(&oci_layout(
        &tmp.path().join("a"),
        std::slice::from_ref(&one),
        std::slice::from_ref(&one),
    ))?;
    let b = store.pull(&oci_layout(
        &tmp.path().join("b"),
        std::slice::from_ref(&two),
        std::slice::from_ref(&two),
    ))?;
    assert!(
        store.gc(u64::MAX, &[])?.is_empty(),
        "nothing to evict under the limit"
    );
    let before = store.total_size()?;
    let evicted = store.gc(0, std::slice::from_ref(&a.id))?;
    let after = store.total_size()?;
    assert!(after > 0 && after < before, "{before} → {after}");
    assert!(
        evicted.iter().any(|k| k.ends_with(&b.id))
            && evicted.iter().any(|k| k.ends_with(&b.layers[0])),
        "{evicted:?}"
    );
    assert!(a.rootfs.join("one").is_file(), "the image in use stays");
    assert!(
        tmp.path()
            .join("cache/layers/sha256")
            .join(&a.layers[0])
            .is_dir(),
        "its layer stays"
    );
    assert!(!b.rootfs.exists());
    // Pulling again after eviction rebuilds it.
    let b2 = store.pull(&oci_layout(
        &tmp.path().join("b"),
        std::slice::from_ref(&two),
        std::slice::from_ref(&two),
    ))?;
    assert!(b2.rootfs.join("two").is_file());
    Ok(())
}

#[test]
fn whiteouts_under_a_symlink_do_not_reach_outside() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let outside = tempfile::tempdir()?;
    fs::write(outside.path().join("victim"), "keep")?;
    let target = outside.path().display().to_string();
    let lower = Layer::new()
        .symlink("lnk", &target)
        .symlink("lnk2", &target)
        .finish();
    let upper = Layer::new()
        .file("lnk/.wh.victim", b"", 0o644)
        .file("lnk2/.wh..wh..opq", b"", 0o644)
        .finish();
    let layout = oci_layout(
        &tmp.path().join("image"),
        &[lower.clone(), upper.clone()],
        &[lower, upper],
    );
    ImageStore::new(tmp.path().join("cache"))?.pull(&layout)?;
    assert_eq!(fs::read_to_string(outside.path().join("victim"))?, "keep");
    Ok(())
}

#[test]
fn an_image_archive_with_an_absolute_symlink_is_refused() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let archive = tmp.path().join("evil.tar");
    fs::write(
        &archive,
        Layer::new()
            .symlink("manifest.json", "/etc/hostname")
            .finish(),
    )?;
    let err = ImageStore::new(tmp.path().join("cache"))?
        .pull(&archive)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.contains("absolute symlink") && err.contains("manifest.json"),
        "{err}"
    );
    let junk = tmp.path().join("junk");
    fs::create_dir(&junk)?;
    let err = ImageStore::new(tmp.path().join("cache"))?
        .pull(&junk)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("neither an OCI image layout"), "{err}");
    Ok(())
}

#[test]
fn a_plain_root_filesystem_directory_is_used_where_it_is() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let root = tmp.path().join("rootfs");
    fs::create_dir_all(root.join("bin"))?;
    fs::write(root.join("bin/tool"), "#!/bin/sh\n")?;
    let store = ImageStore::new(tmp.path().join("cache"))?;
    let image = store.pull(&root)?;
    assert!(image.is_plain_dir());
    assert_eq!(image.rootfs, fs::canonicalize(&root)?);
    assert_eq!(image.digest(), format!("dir:{}", image.rootfs.display()));
    assert!(image.layers.is_empty() && image.defaults.cmd.is_empty());
    // Nothing was copied into the cache.
    assert_eq!(store.total_size()?, 0);
    Ok(())
}
