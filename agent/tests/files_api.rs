//! The agent's HTTP file API (`/files/browse`, `/files/read`, `/files/download`) against
//! hostile sandboxes (issue 15, item 3): real HTTP on 127.0.0.1 to the agent's router,
//! served in-process on its own runtime over a temporary work directory (no master, no
//! agent loop: the file API only needs the work directory).
//!
//! - FIFOs, sockets and devices are refused at once with 400, and the endpoint keeps answering;
//! - a task swapping a file (and a directory) for symlinks leading out, in a tight loop,
//!   never gets a byte from outside served;
//! - a 1 GiB sparse file downloads streaming with the right `Content-Length` while this
//!   process's peak RSS grows by less than 100 MiB.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use proffer_agent::http::{self, View};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Bound on any one HTTP exchange, so a regression (a handler blocked on a FIFO) fails the
/// test instead of hanging it.
const EXCHANGE: Duration = Duration::from_secs(30);

/// The router on 127.0.0.1:0 over `work_dir`, served by its own runtime (2 workers, as on
/// the test machine) on a detached thread: a handler that blocks cannot hang the test's
/// runtime, so a regression fails the test (its requests time out) instead of hanging it.
fn serve(work_dir: &Path) -> Result<SocketAddr> {
    let app = http::router(
        Arc::new(Mutex::new(View::default())),
        work_dir.to_path_buf(),
        Arc::default(),
    );
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0))?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    std::thread::spawn(move || {
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener)?;
            axum::serve(listener, app).await
        })
    });
    Ok(addr)
}

/// A work directory with the sandbox `sandboxes/fw/t` (returned).
fn work_dir() -> Result<(tempfile::TempDir, PathBuf)> {
    let dir = tempfile::tempdir()?;
    let sb = dir.path().join("sandboxes/fw/t");
    std::fs::create_dir_all(&sb)?;
    Ok((dir, sb))
}

/// One GET (HTTP/1.0, the whole answer): status and body.
async fn get(addr: SocketAddr, path: &str) -> Result<(u16, Vec<u8>)> {
    tokio::time::timeout(EXCHANGE, async {
        let mut s = tokio::net::TcpStream::connect(addr).await?;
        s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
            .await?;
        let mut out = Vec::new();
        s.read_to_end(&mut out).await?;
        let end = find(&out, b"\r\n\r\n").context("no end of headers")?;
        let code = status(&out[..end])?;
        Ok((code, out[end + 4..].to_vec()))
    })
    .await
    .with_context(|| format!("GET {path}: no answer within {EXCHANGE:?}"))?
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn status(head: &[u8]) -> Result<u16> {
    String::from_utf8_lossy(head)
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .context("bad status line")
}

/// A GET whose body is counted, not kept: status, `Content-Length`, bytes received, and
/// whether every byte was zero.
async fn get_counted(addr: SocketAddr, path: &str) -> Result<(u16, Option<u64>, u64, bool)> {
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await?;
    let mut head = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let (end, mut body, mut zeros) = loop {
        let n = s.read(&mut buf).await?;
        ensure!(n > 0, "closed before the end of headers");
        head.extend_from_slice(&buf[..n]);
        if let Some(end) = find(&head, b"\r\n\r\n") {
            let rest = &head[end + 4..];
            break (end, rest.len() as u64, rest.iter().all(|b| *b == 0));
        }
    };
    let text = String::from_utf8_lossy(&head[..end]).to_ascii_lowercase();
    let length = text
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok());
    loop {
        let n = s.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        body += n as u64;
        zeros &= buf[..n].iter().all(|b| *b == 0);
    }
    Ok((status(&head[..end])?, length, body, zeros))
}

fn vm_kib(field: &str) -> Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no {field} in /proc/self/status"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifos_sockets_and_devices_are_refused_at_once() -> Result<()> {
    let (dir, sb) = work_dir()?;
    let addr = serve(dir.path())?;
    nix::unistd::mkfifo(&sb.join("fifo"), nix::sys::stat::Mode::S_IRWXU)?;
    let _socket = std::os::unix::net::UnixListener::bind(sb.join("sock"))?;
    let mut special = vec![("fifo", "FIFO"), ("sock", "socket")];
    // A task with CAP_MKNOD could create a device in its sandbox; only root can do it here.
    let dev = nix::sys::stat::mknod(
        &sb.join("null"),
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::S_IRUSR,
        nix::sys::stat::makedev(1, 3),
    );
    match dev {
        Ok(()) => special.push(("null", "character device")),
        Err(e) => eprintln!("not testing a device (mknod: {e})"),
    }
    for (name, kind) in special {
        for op in ["read", "download", "browse"] {
            let started = Instant::now();
            let (code, body) =
                get(addr, &format!("/files/{op}?path=sandboxes/fw/t/{name}")).await?;
            let body = String::from_utf8_lossy(&body);
            eprintln!(
                "{op} {name}: {code} in {:?}: {}",
                started.elapsed(),
                body.trim()
            );
            assert_eq!(code, 400, "{op} {name}: {body}");
            assert!(
                body.contains(&format!("sandboxes/fw/t/{name}")) && body.contains(kind),
                "{op} {name}: the refusal names the path and its type: {body}"
            );
            let (code, body) = get(addr, "/health").await?;
            assert_eq!((code, body.as_slice()), (200, b"ok\n".as_slice()));
        }
    }
    // The listing shows them for what they are, without opening them.
    let (code, body) = get(addr, "/files/browse?path=sandboxes/fw/t").await?;
    assert_eq!(code, 200);
    let listing: serde_json::Value = serde_json::from_slice(&body)?;
    let kinds: Vec<(String, String)> = listing
        .as_array()
        .context("array")?
        .iter()
        .map(|e| (e["name"].to_string(), e["kind"].to_string()))
        .collect();
    assert!(
        kinds.contains(&("\"fifo\"".into(), "\"fifo\"".into())),
        "{kinds:?}"
    );
    assert!(
        kinds.contains(&("\"sock\"".into(), "\"socket\"".into())),
        "{kinds:?}"
    );
    Ok(())
}

/// Flips `a` and `b` atomically (`renameat2(RENAME_EXCHANGE)`) until `stop` or `limit`
/// exchanges; signals `started` after the first one. Returns the number of exchanges.
fn swapper(
    pairs: Vec<(PathBuf, PathBuf)>,
    stop: Arc<AtomicBool>,
    limit: u64,
    started: std::sync::mpsc::Sender<()>,
) -> Result<u64> {
    let mut n = 0;
    while n < limit && !stop.load(Ordering::Relaxed) {
        for (a, b) in &pairs {
            rustix::fs::renameat_with(
                rustix::fs::CWD,
                a,
                rustix::fs::CWD,
                b,
                rustix::fs::RenameFlags::EXCHANGE,
            )?;
        }
        n += 1;
        if n == 1 {
            let _ = started.send(());
        }
    }
    Ok(n)
}

/// 3,000 `/files/read` and 3,000 `/files/download` of `f` and of `d/f` while a thread swaps
/// `f` with a symlink to a secret file outside the sandboxes, and `d` with a symlink to a
/// directory outside holding a secret `f`: every answer is the good content or a 403, never
/// a byte of the secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn symlink_swaps_never_serve_outside_bytes() -> Result<()> {
    const SECRET: &str = "SECRET-MARKER-0f9c";
    const GOOD: &str = "good sandbox content\n";
    const EACH: usize = 3_000;
    let (dir, sb) = work_dir()?;
    let outside = dir.path().join("outside");
    std::fs::create_dir_all(&outside)?;
    std::fs::write(outside.join("f"), format!("{SECRET}\n"))?;
    std::fs::write(sb.join("f"), GOOD)?;
    std::os::unix::fs::symlink(outside.join("f"), sb.join("f.alt"))?;
    std::fs::create_dir(sb.join("d"))?;
    std::fs::write(sb.join("d/f"), GOOD)?;
    std::os::unix::fs::symlink(&outside, sb.join("d.alt"))?;
    let addr = serve(dir.path())?;

    let stop = Arc::new(AtomicBool::new(false));
    let (started_tx, started_rx) = std::sync::mpsc::channel();
    let pairs = vec![
        (sb.join("f"), sb.join("f.alt")),
        (sb.join("d"), sb.join("d.alt")),
    ];
    let swaps = std::thread::spawn({
        let stop = stop.clone();
        move || swapper(pairs, stop, 50_000_000, started_tx)
    });
    started_rx.recv().context("the swapper never swapped")?;

    let started = Instant::now();
    let (ok, refused) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut clients = Vec::new();
    for client in 0..4 {
        let (ok, refused) = (ok.clone(), refused.clone());
        clients.push(tokio::spawn(async move {
            for i in (client..2 * EACH).step_by(4) {
                let file = if i % 4 < 2 { "f" } else { "d/f" };
                let (op, path) = if i % 2 == 0 {
                    (
                        "read",
                        format!("/files/read?path=sandboxes/fw/t/{file}&length=4096"),
                    )
                } else {
                    (
                        "download",
                        format!("/files/download?path=sandboxes/fw/t/{file}"),
                    )
                };
                let (code, body) = get(addr, &path).await?;
                let text = String::from_utf8_lossy(&body);
                if find(&body, SECRET.as_bytes()).is_some() || find(&body, b"SECRET").is_some() {
                    bail!("{op} {file} served the secret: {text}");
                }
                match code {
                    200 if op == "download" => ensure!(text == GOOD, "{op} {file}: {text}"),
                    200 => {
                        let v: serde_json::Value = serde_json::from_slice(&body)?;
                        ensure!(v["data"] == GOOD, "{op} {file}: {text}");
                    }
                    403 => ensure!(text.contains("symlink"), "{op} {file}: {text}"),
                    _ => bail!("{op} {file}: unexpected {code}: {text}"),
                }
                let counter = if code == 200 { &ok } else { &refused };
                counter.fetch_add(1, Ordering::Relaxed);
            }
            anyhow::Ok(())
        }));
    }
    let mut outcome = Ok(());
    for c in clients {
        if let Err(e) = c.await? {
            outcome = Err(e);
        }
    }
    stop.store(true, Ordering::Relaxed);
    let swaps = swaps
        .join()
        .map_err(|_| anyhow::anyhow!("swapper panicked"))??;
    let (ok, refused) = (ok.load(Ordering::Relaxed), refused.load(Ordering::Relaxed));
    eprintln!(
        "{} requests in {:?}: {ok} served the good content, {refused} refused (symlink); \
         {swaps} swaps",
        2 * EACH,
        started.elapsed()
    );
    outcome?;
    assert_eq!(ok + refused, 2 * EACH as u64);
    Ok(())
}

/// A 1 GiB sparse file downloads in full, with `Content-Length` right, while the peak
/// resident memory of this process (server and client both) grows by less than 100 MiB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_download_streams_in_flat_memory() -> Result<()> {
    const SIZE: u64 = 1 << 30;
    let (dir, sb) = work_dir()?;
    std::fs::File::create(sb.join("sparse"))?.set_len(SIZE)?;
    let addr = serve(dir.path())?;
    // Reset the peak (VmHWM) to the current RSS, so the peak below is this download's.
    let reset = std::fs::write("/proc/self/clear_refs", "5");
    let before = vm_kib("VmRSS:")?;
    let started = Instant::now();
    let (code, length, received, zeros) =
        get_counted(addr, "/files/download?path=sandboxes/fw/t/sparse").await?;
    let elapsed = started.elapsed();
    let peak = vm_kib("VmHWM:")?;
    let growth_mib = peak.saturating_sub(before) / 1024;
    eprintln!(
        "1 GiB in {elapsed:?}; RSS before {} MiB, peak {} MiB (+{growth_mib} MiB; \
         peak reset: {reset:?})",
        before / 1024,
        peak / 1024
    );
    assert_eq!(code, 200);
    assert_eq!(length, Some(SIZE), "Content-Length from the handle's fstat");
    assert_eq!(received, SIZE);
    assert!(zeros, "a sparse file reads as zeros");
    assert!(growth_mib < 100, "peak RSS grew by {growth_mib} MiB");
    Ok(())
}
