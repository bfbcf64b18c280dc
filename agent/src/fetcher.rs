//! The fetcher: puts a task's URIs into its sandbox before the command starts.
//!
//! `file://` (or a plain absolute path) is copied, `http://` is downloaded with a small
//! HTTP/1.0 client (redirects followed), `https://` goes through `curl` when it is installed.
//! Then: optional sha256 check (`sha256sum`), executable bit, extraction of `.tar`, `.tar.gz`,
//! `.tgz`, `.tar.bz2`, `.tar.xz` (with `tar`) and `.zip` (with `unzip`), as Mesos's fetcher
//! does. With `cache` set, the file is kept in a size-bounded cache shared by all tasks of the
//! agent (least recently used files are evicted first).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use proffer_proto::v1::Uri;

/// Redirects followed by the HTTP client.
const MAX_REDIRECTS: usize = 5;
/// Socket timeout of the HTTP client.
const IO_TIMEOUT: Duration = Duration::from_secs(60);

/// The shared download cache.
#[derive(Debug, Clone)]
pub struct Cache {
    /// Its directory.
    pub dir: PathBuf,
    /// Bound on the total size of the files in it.
    pub max_bytes: u64,
}

/// Fetches every URI into `sandbox`, writing one log line per step to `log`.
pub fn fetch_all(
    uris: &[Uri],
    sandbox: &Path,
    cache: Option<&Cache>,
    log: &mut dyn Write,
) -> Result<(), String> {
    for uri in uris {
        fetch_one(uri, sandbox, cache, log).map_err(|e| format!("fetching {}: {e}", uri.value))?;
    }
    Ok(())
}

/// The file name a URI is saved under: `output_file`, else the last path segment.
pub fn output_name(uri: &Uri) -> Result<PathBuf, String> {
    let name = if uri.output_file.is_empty() {
        let no_query = uri.value.split(['?', '#']).next().unwrap_or("");
        no_query.rsplit('/').next().unwrap_or("").to_string()
    } else {
        uri.output_file.clone()
    };
    let p = PathBuf::from(&name);
    if name.is_empty() || p.components().any(|c| !matches!(c, Component::Normal(_))) {
        return Err(format!(
            "output name {name:?} must be a relative path without '..'"
        ));
    }
    Ok(p)
}

fn fetch_one(
    uri: &Uri,
    sandbox: &Path,
    cache: Option<&Cache>,
    log: &mut dyn Write,
) -> Result<(), String> {
    let name = output_name(uri)?;
    let dest = sandbox.join(&name);
    if let Some(parent) = dest.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| format!("creating {}: {e}", parent.display()))?;
    }
    let cached = cache
        .filter(|_| uri.cache)
        .map(|c| (c, c.dir.join(cache_key(&uri.value, &name))));
    let hit = cached.as_ref().is_some_and(|(_, p)| p.is_file());
    if let (true, Some((_, path))) = (hit, &cached) {
        std::fs::copy(path, &dest)
            .map_err(|e| format!("copying from cache {}: {e}", path.display()))?;
        let _ = std::fs::File::options()
            .append(true)
            .open(path)
            .and_then(|f| f.set_modified(std::time::SystemTime::now()));
        let _ = writeln!(
            log,
            "fetcher: cache hit for {} ({})",
            uri.value,
            path.display()
        );
    } else {
        let part = sandbox.join(format!(
            ".{}.part",
            name.display().to_string().replace('/', "_")
        ));
        download(&uri.value, &part)?;
        std::fs::rename(&part, &dest)
            .map_err(|e| format!("renaming into {}: {e}", dest.display()))?;
        let _ = writeln!(
            log,
            "fetcher: downloaded {} to {}",
            uri.value,
            dest.display()
        );
    }
    if !uri.sha256.is_empty() {
        let got = sha256_of(&dest)?;
        if !got.eq_ignore_ascii_case(uri.sha256.trim()) {
            let _ = std::fs::remove_file(&dest);
            return Err(format!(
                "sha256 mismatch: expected {}, got {got}",
                uri.sha256
            ));
        }
        let _ = writeln!(log, "fetcher: sha256 verified for {}", dest.display());
    }
    if let (false, Some((c, path))) = (hit, &cached) {
        store_in_cache(c, &dest, path)?;
    }
    if uri.executable {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| format!("chmod {}: {e}", dest.display()))?;
    }
    if uri.extract {
        extract(&dest, sandbox)?;
        let _ = writeln!(log, "fetcher: extracted {}", dest.display());
    }
    Ok(())
}

/// Cache file name: a hash of the URI plus the output name (for humans).
fn cache_key(uri: &str, name: &Path) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in uri.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    let base = name
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    format!("{h:016x}-{base}")
}

fn store_in_cache(cache: &Cache, src: &Path, path: &Path) -> Result<(), String> {
    std::fs::create_dir_all(&cache.dir)
        .map_err(|e| format!("creating cache {}: {e}", cache.dir.display()))?;
    let size = std::fs::metadata(src).map(|m| m.len()).unwrap_or(0);
    if size > cache.max_bytes {
        return Ok(()); // larger than the whole cache: not cached
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::copy(src, &tmp).map_err(|e| format!("caching {}: {e}", src.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("caching {}: {e}", path.display()))?;
    evict(cache);
    Ok(())
}

/// Removes the least recently used cache files until the total fits `max_bytes`.
pub fn evict(cache: &Cache) {
    let Ok(rd) = std::fs::read_dir(&cache.dir) else {
        return;
    };
    let mut files: Vec<(std::time::SystemTime, u64, PathBuf)> = rd
        .flatten()
        .filter_map(|e| {
            let m = e.metadata().ok()?;
            m.is_file().then(|| {
                (
                    m.modified().unwrap_or(std::time::UNIX_EPOCH),
                    m.len(),
                    e.path(),
                )
            })
        })
        .collect();
    files.sort();
    let mut total: u64 = files.iter().map(|f| f.1).sum();
    for (_, len, p) in files {
        if total <= cache.max_bytes {
            break;
        }
        if std::fs::remove_file(&p).is_ok() {
            total = total.saturating_sub(len);
        }
    }
}

fn download(uri: &str, dest: &Path) -> Result<(), String> {
    if let Some(path) = uri.strip_prefix("file://") {
        return copy_local(Path::new(path), dest);
    }
    if uri.starts_with('/') {
        return copy_local(Path::new(uri), dest);
    }
    if uri.starts_with("http://") {
        return http_get(uri, dest);
    }
    if uri.starts_with("https://") {
        return curl(uri, dest);
    }
    Err("unsupported URI scheme (file://, http://, https:// or an absolute path)".into())
}

fn copy_local(src: &Path, dest: &Path) -> Result<(), String> {
    std::fs::copy(src, dest)
        .map(|_| ())
        .map_err(|e| format!("copying {}: {e}", src.display()))
}

fn curl(uri: &str, dest: &Path) -> Result<(), String> {
    let out = std::process::Command::new("curl")
        .args(["-fsSL", "--max-redirs", "5", "-o"])
        .arg(dest)
        .arg(uri)
        .output()
        .map_err(|e| format!("https needs curl, which could not be run: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "curl failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Splits `http://host[:port]/path` into (host:port, path).
fn split_http(uri: &str) -> Result<(String, String), String> {
    let rest = uri.strip_prefix("http://").ok_or("not an http:// URI")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() {
        return Err("URI has no host".into());
    }
    let authority = if authority.contains(':') {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    Ok((authority, path.to_string()))
}

fn http_get(uri: &str, dest: &Path) -> Result<(), String> {
    let mut current = uri.to_string();
    for _ in 0..=MAX_REDIRECTS {
        let (authority, path) = split_http(&current)?;
        let stream = TcpStream::connect(&authority)
            .map_err(|e| format!("connecting to {authority}: {e}"))?;
        stream
            .set_read_timeout(Some(IO_TIMEOUT))
            .map_err(|e| e.to_string())?;
        let mut w = stream.try_clone().map_err(|e| e.to_string())?;
        write!(w, "GET {path} HTTP/1.0\r\nHost: {authority}\r\nUser-Agent: proffer-fetcher\r\nConnection: close\r\n\r\n")
            .map_err(|e| format!("sending request: {e}"))?;
        let mut r = BufReader::new(stream);
        let mut status = String::new();
        r.read_line(&mut status)
            .map_err(|e| format!("reading response: {e}"))?;
        let code: u16 = status
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| format!("bad HTTP status line {:?}", status.trim()))?;
        let mut length: Option<u64> = None;
        let mut location = None;
        loop {
            let mut line = String::new();
            r.read_line(&mut line)
                .map_err(|e| format!("reading headers: {e}"))?;
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':') {
                match k.trim().to_ascii_lowercase().as_str() {
                    "content-length" => length = v.trim().parse().ok(),
                    "location" => location = Some(v.trim().to_string()),
                    _ => {}
                }
            }
        }
        if matches!(code, 301 | 302 | 303 | 307 | 308) {
            let loc = location.ok_or("redirect without Location")?;
            current = if loc.starts_with('/') {
                format!("http://{authority}{loc}")
            } else {
                loc
            };
            continue;
        }
        if code != 200 {
            return Err(format!("HTTP status {code}"));
        }
        let mut f =
            std::fs::File::create(dest).map_err(|e| format!("creating {}: {e}", dest.display()))?;
        let copied = std::io::copy(&mut r.by_ref().take(length.unwrap_or(u64::MAX)), &mut f)
            .map_err(|e| format!("downloading: {e}"))?;
        if let Some(l) = length
            && copied != l
        {
            return Err(format!("short download: {copied} of {l} bytes"));
        }
        return f
            .sync_all()
            .map_err(|e| format!("writing {}: {e}", dest.display()));
    }
    Err(format!("more than {MAX_REDIRECTS} redirects"))
}

/// The hex sha256 of a file (with `sha256sum`).
pub fn sha256_of(path: &Path) -> Result<String, String> {
    let out = std::process::Command::new("sha256sum")
        .arg(path)
        .output()
        .map_err(|e| format!("running sha256sum: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "sha256sum failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .map(str::to_string)
        .ok_or_else(|| "sha256sum printed nothing".into())
}

fn extract(archive: &Path, into: &Path) -> Result<(), String> {
    let name = archive
        .file_name()
        .map(|n| n.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    let mut cmd = if [
        ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz",
    ]
    .iter()
    .any(|s| name.ends_with(s))
    {
        let mut c = std::process::Command::new("tar");
        c.arg("-C").arg(into).arg("-xf").arg(archive);
        c
    } else if name.ends_with(".zip") {
        let mut c = std::process::Command::new("unzip");
        c.arg("-q").arg("-o").arg("-d").arg(into).arg(archive);
        c
    } else {
        return Err(format!("cannot extract {name}: not a known archive type"));
    };
    let out = cmd
        .output()
        .map_err(|e| format!("running the extractor: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "extracting {name} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uri(v: &str) -> Uri {
        Uri {
            value: v.into(),
            ..Default::default()
        }
    }

    #[test]
    fn output_names() {
        assert_eq!(
            output_name(&uri("http://h/a/b.tgz?x=1")),
            Ok(PathBuf::from("b.tgz"))
        );
        let mut u = uri("http://h/a");
        u.output_file = "bin/tool".into();
        assert_eq!(output_name(&u), Ok(PathBuf::from("bin/tool")));
        u.output_file = "../x".into();
        assert!(output_name(&u).is_err());
        u.output_file = "/etc/passwd".into();
        assert!(output_name(&u).is_err());
        assert!(output_name(&uri("http://h/")).is_err());
    }

    #[test]
    fn http_uri_split() {
        assert_eq!(
            split_http("http://h:8/p/q"),
            Ok(("h:8".into(), "/p/q".into()))
        );
        assert_eq!(split_http("http://h"), Ok(("h:80".into(), "/".into())));
        assert!(split_http("http:///x").is_err());
    }

    #[test]
    fn local_copy_checksum_executable_and_eviction() {
        let dir = tempfile::tempdir().expect("tempdir");
        let src = dir.path().join("tool.sh");
        std::fs::write(&src, "#!/bin/sh\necho hi\n").expect("write");
        let sandbox = dir.path().join("sb");
        std::fs::create_dir_all(&sandbox).expect("mkdir");
        let mut u = uri(&format!("file://{}", src.display()));
        u.executable = true;
        u.sha256 = sha256_of(&src).expect("sha");
        let mut log = Vec::new();
        fetch_all(&[u.clone()], &sandbox, None, &mut log).expect("fetch");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(sandbox.join("tool.sh"))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755);
        u.sha256 = "00".repeat(32);
        let e = fetch_all(&[u], &sandbox, None, &mut log)
            .err()
            .unwrap_or_default();
        assert!(e.contains("sha256 mismatch"), "{e}");

        let cache = Cache {
            dir: dir.path().join("cache"),
            max_bytes: 10,
        };
        std::fs::create_dir_all(&cache.dir).expect("mkdir");
        for (i, n) in [(1u64, 6usize), (2, 6)] {
            let p = cache.dir.join(format!("f{i}"));
            std::fs::write(&p, vec![0u8; n]).expect("write");
            let t = std::time::UNIX_EPOCH + Duration::from_secs(1000 * i);
            std::fs::File::options()
                .append(true)
                .open(&p)
                .and_then(|f| f.set_modified(t))
                .expect("mtime");
        }
        evict(&cache);
        assert!(!cache.dir.join("f1").exists(), "oldest evicted");
        assert!(cache.dir.join("f2").exists());
    }
}
