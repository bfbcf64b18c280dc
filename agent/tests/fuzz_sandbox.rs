//! Fuzz targets of the agent's sandbox path checks and its HTTP file API, on a real directory
//! tree: sandboxes with files, directories, a FIFO, a socket, symlinks inside and out, and a
//! secret next to the sandboxes.
//!
//! Paths are built from the parts that matter (`sandboxes`, real and made-up names, `..`,
//! `.`, empty components, symlinks, the FIFO, the absolute work directory, `/etc/passwd`,
//! NUL, percent escapes, non-ASCII), then mutated at the byte level.
//!
//! Properties: nothing panics or blocks; `beneath_sandboxes` yields only normal components;
//! whatever `open_file` opens is a regular file inside the sandboxes (by device and inode),
//! never reached through a symlink, and `list_dir` lists only directories inside them; every
//! refusal maps to the status the API documents. Over HTTP (`/files/read`, `/files/browse`,
//! `/files/download` with any query): only 200, 400, 403 and 404 answers, never the secret's
//! bytes, and the endpoint keeps answering. Task ids that pass `validate_id` keep the sandbox
//! directory two levels below `sandboxes`; `--attributes` that parse print back to themselves.
//!
//! `PROFFER_FUZZ_CASES=N` runs N cases per target, `PROFFER_FUZZ_SEED=S` another seed.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::StatusCode;
use proffer_agent::files::{self, FilesError, SANDBOXES};
use proffer_agent::http::{self, View, status_of};
use proffer_agent::http_auth::HttpSecurity;
use proffer_agent::parse_attributes;
use proffer_agent::sandbox::{sandbox_dir, validate_id};
use proffer_proto::fuzzing;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn config(default_cases: u32) -> Config {
    Config {
        cases: fuzzing::cases(default_cases),
        rng_seed: RngSeed::Fixed(fuzzing::seed(0xA6E_F022)),
        failure_persistence: None,
        max_shrink_iters: 1_000,
        ..Config::default()
    }
}

const SECRET: &str = "SECRET-6f1d2a";

/// The work directory of the fixture and what may be opened in it.
struct Tree {
    _dir: tempfile::TempDir,
    work: PathBuf,
    /// (dev, ino) of the regular files inside the sandboxes.
    files: BTreeSet<(u64, u64)>,
    /// (dev, ino) of the directories inside (and including) the sandboxes.
    dirs: BTreeSet<(u64, u64)>,
    /// Keeps the socket bound.
    _socket: std::os::unix::net::UnixListener,
}

fn id(p: &Path) -> (u64, u64) {
    let m = std::fs::symlink_metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    (m.dev(), m.ino())
}

fn tree() -> Tree {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let work = dir.path().to_path_buf();
    let sb = work.join(SANDBOXES);
    let t = sb.join("fw/t");
    let mk = |p: &Path| std::fs::create_dir_all(p).unwrap_or_else(|e| panic!("{e}"));
    let write = |p: &Path, s: &str| std::fs::write(p, s).unwrap_or_else(|e| panic!("{e}"));
    let link =
        |to: &Path, at: &Path| std::os::unix::fs::symlink(to, at).unwrap_or_else(|e| panic!("{e}"));
    mk(&t.join("sub/deeper"));
    mk(&sb.join("fw/t2"));
    write(&t.join("stdout"), "hello from the task\n");
    write(&t.join("sub/x"), "x");
    write(&t.join("sub/deeper/y"), &"y".repeat(70_000));
    write(&t.join("é ü"), "unicode");
    write(&work.join("agent_id"), SECRET);
    mk(&work.join("private"));
    write(&work.join("private/key"), SECRET);
    link(&work.join("agent_id"), &t.join("out"));
    link(Path::new("../../../private"), &t.join("updir"));
    link(Path::new("stdout"), &t.join("in"));
    link(Path::new("/etc"), &t.join("etc"));
    link(&work, &sb.join("fw/work"));
    nix::unistd::mkfifo(&t.join("fifo"), nix::sys::stat::Mode::S_IRWXU)
        .unwrap_or_else(|e| panic!("mkfifo: {e}"));
    let socket = std::os::unix::net::UnixListener::bind(t.join("sock"))
        .unwrap_or_else(|e| panic!("bind: {e}"));
    let files = [
        t.join("stdout"),
        t.join("sub/x"),
        t.join("sub/deeper/y"),
        t.join("é ü"),
    ]
    .iter()
    .map(|p| id(p))
    .collect();
    let dirs = [
        sb.clone(),
        sb.join("fw"),
        t.clone(),
        t.join("sub"),
        t.join("sub/deeper"),
        sb.join("fw/t2"),
    ]
    .iter()
    .map(|p| id(p))
    .collect();
    Tree {
        _dir: dir,
        work,
        files,
        dirs,
        _socket: socket,
    }
}

/// A requested path: a root spelling, a walk of the tree (real entries, symlinks, `..`, the
/// FIFO), a few odd components, then byte mutations (the work directory's path is `@`).
fn requested() -> impl Strategy<Value = String> {
    let root = prop::sample::select(vec![
        "sandboxes",
        "sandboxes",
        "sandboxes",
        "./sandboxes",
        "@/sandboxes",
        "@/./sandboxes",
        "@//sandboxes",
        "sandboxes/.",
        "",
        "/",
        "@",
        "/etc",
        "../sandboxes",
        "sandboxesx",
        "@/private",
        "agent_id",
    ]);
    let walk = prop::sample::select(vec![
        "",
        "fw",
        "fw/t",
        "fw/t/stdout",
        "fw/t/sub",
        "fw/t/sub/x",
        "fw/t/sub/deeper",
        "fw/t/sub/deeper/y",
        "fw/t/é ü",
        "fw/t2",
        "fw/t/out",
        "fw/t/updir",
        "fw/t/updir/key",
        "fw/t/in",
        "fw/t/etc/passwd",
        "fw/work",
        "fw/work/agent_id",
        "fw/work/sandboxes/fw/t/stdout",
        "fw/t/fifo",
        "fw/t/sock",
        "fw/t/../../../agent_id",
        "fw/t/sub/../stdout",
        "fw/t/stdout/x",
        "fw/t/missing",
    ]);
    let odd = prop::sample::select(vec![
        "..", ".", "", "\0", "%2e%2e", "...", " ", "fifo", "in", "out", "stdout",
    ]);
    (
        root,
        walk,
        prop::collection::vec((odd, any::<usize>()), 0..2),
        prop::sample::select(vec!["/", "/", "/", "//", "/./"]),
        prop::sample::select(vec!["", "", "", "/"]),
        prop_oneof![
            4 => Just(Vec::new()),
            1 => prop::collection::vec(any::<(u8, usize, usize, u32)>(), 1..3),
        ],
    )
        .prop_map(|(root, walk, odd, sep, tail, ops)| {
            let mut parts: Vec<&str> = if root.is_empty() {
                Vec::new()
            } else {
                vec![root]
            };
            parts.extend(walk.split('/').filter(|p| !p.is_empty()));
            for (o, at) in odd {
                let at = at % (parts.len() + 1);
                parts.insert(at, o);
            }
            fuzzing::mutate(&format!("{}{tail}", parts.join(sep)), &ops)
        })
}

fn resolve(tree: &Tree, p: &str) -> String {
    p.replace('@', &tree.work.to_string_lossy())
}

/// Every refusal maps to one of the statuses the API documents.
fn status_is_documented(e: &FilesError) -> bool {
    matches!(
        status_of(e),
        StatusCode::FORBIDDEN | StatusCode::NOT_FOUND | StatusCode::BAD_REQUEST
    )
}

fn check_path(tree: &Tree, raw: &str) -> Result<(), TestCaseError> {
    let p = resolve(tree, raw);
    if let Ok(rel) = files::beneath_sandboxes(&tree.work, &p) {
        prop_assert!(
            rel == Path::new(".") || rel.components().all(|c| matches!(c, Component::Normal(_))),
            "{p:?} → {rel:?}"
        );
    }
    match files::open_file(&tree.work, &p) {
        Ok(f) => {
            let data = f
                .read_at(0, 1 << 20)
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert!(
                !String::from_utf8_lossy(&data).contains(SECRET),
                "{p:?} read the secret"
            );
            // The file opened is one of the sandboxes' own regular files.
            let rel = files::beneath_sandboxes(&tree.work, &p)
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            let real = tree.work.join(SANDBOXES).join(&rel);
            prop_assert!(tree.files.contains(&id(&real)), "{p:?} opened {real:?}");
        }
        Err(e) => prop_assert!(status_is_documented(&e), "{p:?}: {e}"),
    }
    match files::list_dir(&tree.work, &p) {
        Ok(entries) => {
            let rel = files::beneath_sandboxes(&tree.work, &p)
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            let real = tree.work.join(SANDBOXES).join(&rel);
            prop_assert!(tree.dirs.contains(&id(&real)), "{p:?} listed {real:?}");
            prop_assert!(
                entries
                    .iter()
                    .all(|e| e.name != "agent_id" && e.name != "private")
            );
        }
        Err(e) => prop_assert!(status_is_documented(&e), "{p:?}: {e}"),
    }
    Ok(())
}

/// One tree (it is only read) for every case.
#[test]
fn sandbox_paths_never_escape() {
    let tree = tree();
    let mut runner = proptest::test_runner::TestRunner::new(config(2_000));
    let result = runner.run(&prop::collection::vec(requested(), 1..8), |raw| {
        for p in &raw {
            check_path(&tree, p)?;
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// An HTTP/1.0 GET: the status and the body.
async fn get(addr: SocketAddr, target: &str) -> std::io::Result<(u16, String)> {
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.write_all(format!("GET {target} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
        .await?;
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut out))
        .await
        .map_err(|_| std::io::Error::other("no answer within 20 s"))??;
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Ok((code, body.to_string()))
}

/// Percent-encodes all but unreserved bytes (so any path reaches the handler as it is).
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

proptest! {
    #![proptest_config(config(2_000))]

    #[test]
    fn valid_ids_stay_one_component(fw in "\\PC{0,6}|\\.\\.|\\.|[a-z./]{0,6}", task in "\\PC{0,6}|\\.\\.|[a-z./]{0,6}") {
        if validate_id("framework", &fw).is_ok() && validate_id("task", &task).is_ok() {
            let dir = sandbox_dir(Path::new("/w"), &fw, &task);
            let rel = dir.strip_prefix("/w/sandboxes").map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(rel.components().count(), 2, "{:?}", dir);
            prop_assert!(rel.components().all(|c| matches!(c, Component::Normal(_))), "{:?}", dir);
        }
    }

    #[test]
    fn attributes_print_back(
        pairs in prop::collection::vec(("[a-z]{0,4}|\\PC{0,3}", "[a-z0-9]{0,4}|\\PC{0,3}"), 0..4),
        ops in prop::collection::vec(any::<(u8, usize, usize, u32)>(), 0..2),
    ) {
        let text = fuzzing::mutate(
            &pairs.iter().map(|(k, v)| format!("{k}:{v}")).collect::<Vec<_>>().join(";"),
            &ops,
        );
        match parse_attributes(&text) {
            Ok(list) => {
                let back: Vec<String> = list.iter().map(|(k, v)| format!("{k}:{v}")).collect();
                prop_assert_eq!(parse_attributes(&back.join(";")).ok(), Some(list));
            }
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }
}

proptest! {
    #![proptest_config(config(150))]

    #[test]
    fn the_file_api_answers_any_query(
        queries in prop::collection::vec(
            (
                prop::sample::select(vec!["read", "browse", "download"]),
                requested(),
                prop::option::of(prop_oneof![3 => 0u64..100_000, 1 => any::<u64>()]),
                prop::option::of(prop_oneof![3 => 0u64..100_000, 1 => any::<u64>()]),
                prop::sample::select(vec!["", "&path=x", "&offset=-1", "&length=x", "&bogus=1"]),
            ),
            1..6,
        ),
    ) {
        let tree = tree();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        rt.block_on(async {
            let app = http::router(
                Arc::new(Mutex::new(View::default())),
                tree.work.clone(),
                Arc::new(HttpSecurity::default()),
            );
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            let addr = listener.local_addr().map_err(|e| TestCaseError::fail(e.to_string()))?;
            tokio::spawn(async move { axum::serve(listener, app).await });
            for (route, path, offset, length, extra) in &queries {
                let mut target = format!("/files/{route}?path={}", encode(&resolve(&tree, path)));
                if let Some(o) = offset {
                    target.push_str(&format!("&offset={o}"));
                }
                if let Some(l) = length {
                    target.push_str(&format!("&length={l}"));
                }
                target.push_str(extra);
                let (code, body) = get(addr, &target)
                    .await
                    .map_err(|e| TestCaseError::fail(format!("{target}: {e}")))?;
                prop_assert!(
                    [200, 400, 403, 404].contains(&code),
                    "{target}: {code} {body}"
                );
                prop_assert!(!body.contains(SECRET), "{target}: the secret was served");
                let (health, _) = get(addr, "/health")
                    .await
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert_eq!(health, 200);
            }
            Ok(())
        })?;
    }
}
