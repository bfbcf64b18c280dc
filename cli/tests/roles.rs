//! Runs the real `proffer quota|weight|roles|why` against a master served in this process.

use std::process::Output;
use std::time::Duration;

use proffer_master::server::{ServerConfig, serve};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

async fn proffer(master: &str, args: &[&str]) -> anyhow::Result<Output> {
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_proffer"))
        .args(args)
        .env("PROFFER_MASTER", master)
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .output();
    Ok(tokio::time::timeout(Duration::from_secs(30), child).await??)
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn quota_weight_roles_and_why_commands() -> anyhow::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let master = listener.local_addr()?.to_string();
    let cancel = CancellationToken::new();
    let server = tokio::spawn(serve(listener, ServerConfig::default(), cancel.clone()));

    let ok = |out: &Output| {
        let (o, e) = text(out);
        assert!(out.status.success(), "stdout:\n{o}\nstderr:\n{e}");
        o
    };
    let o = ok(&proffer(
        &master,
        &[
            "quota",
            "set",
            "eng",
            "--guarantee",
            "cpus:4;mem:4096",
            "--limit",
            "cpus:8",
        ],
    )
    .await?);
    assert!(o.contains("quota of role eng set"), "{o}");
    ok(&proffer(&master, &["weight", "set", "eng", "2"]).await?);
    let o = ok(&proffer(&master, &["roles"]).await?);
    assert!(o.starts_with("ROLE"), "{o}");
    let eng = o
        .lines()
        .find(|l| l.starts_with("eng "))
        .unwrap_or_default();
    assert!(
        eng.contains(" 2 ") && eng.contains("cpus:4;mem:4096") && eng.contains("cpus:8"),
        "{o}"
    );
    let o = ok(&proffer(&master, &["roles", "--json"]).await?);
    let json: serde_json::Value = serde_json::from_str(&o)?;
    assert_eq!(json[0]["role"], "eng");
    let o = ok(&proffer(&master, &["why", "--role", "eng"]).await?);
    assert!(o.starts_with("- "), "{o}");
    let o = ok(&proffer(&master, &["why", "eng"]).await?);
    assert!(o.starts_with("- "), "a role by its name: {o}");
    ok(&proffer(&master, &["quota", "rm", "eng"]).await?);

    // Refusals: non-zero exit and a message naming the problem.
    for (args, want) in [
        (
            vec!["quota", "set", "eng", "--guarantee", "cpus:-1"],
            "negative",
        ),
        (
            vec!["quota", "set", "eng", "--guarantee", "ports:[1-2]"],
            "not a quota resource",
        ),
        (
            vec!["quota", "set", "a//b", "--guarantee", "cpus:1"],
            "empty path segment",
        ),
        (vec!["quota", "set", "eng"], "--guarantee and/or --limit"),
        (vec!["quota", "rm", "eng"], "has no quota"),
        (vec!["weight", "set", "eng", "0"], "positive finite"),
        (vec!["weight", "set", "eng", "-3"], "positive finite"),
        (
            vec!["reserve", "nope", "cpus(web):1"],
            "unknown agent `nope`",
        ),
        (
            vec!["unreserve", "nope", "cpus(web,dynamic):1"],
            "unknown agent `nope`",
        ),
        (
            vec!["reserve", "nope", "cpus(*,dynamic):1"],
            "needs a role other than `*`",
        ),
        (
            vec!["why", "UNKNOWN_ID"],
            "no framework or role named `UNKNOWN_ID`",
        ),
        (vec!["why", "--role", "nobody"], "no role named `nobody`"),
        (
            vec!["quota", "set", "eng", "--limit", "cpus:1e13"],
            "too large",
        ),
        (
            vec!["quota", "set", "eng", "--guarantee", "gpus:0.5"],
            "gpus are allocated whole",
        ),
        (vec!["weight", "set", "eng", "NaN"], "positive finite"),
        (
            vec!["maintenance", "schedule", "nope", "--for", "99999999999h"],
            "more than the maximum 3153600000 s",
        ),
        (
            vec![
                "maintenance",
                "schedule",
                "nope",
                "--in",
                "-5s",
                "--for",
                "1h",
            ],
            "`-5s`: a duration cannot be negative",
        ),
    ] {
        let out = proffer(&master, &args).await?;
        let (o, e) = text(&out);
        assert!(!out.status.success(), "{args:?} succeeded: {o}");
        assert!(e.contains(want), "{args:?}: stderr `{e}` lacks `{want}`");
    }
    let out = proffer(&master, &["why"]).await?;
    assert!(!out.status.success(), "why without a subject must fail");

    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(10), server).await???;
    Ok(())
}
