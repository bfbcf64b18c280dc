//! Runs the real `proffer frameworks|agents|events|logs|completions` against a master served in
//! this process (agents and tasks: `tests/tests/e2e_mesos_operator.rs`).

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

fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn views_events_and_completions() -> anyhow::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let master = listener.local_addr()?.to_string();
    let cancel = CancellationToken::new();
    let server = tokio::spawn(serve(listener, ServerConfig::default(), cancel.clone()));

    let o = stdout(&proffer(&master, &["agents"]).await?);
    assert!(o.starts_with("ID") && o.contains("ADDRESS"), "{o}");
    let o = stdout(&proffer(&master, &["agents", "--json"]).await?);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&o)?,
        serde_json::json!([])
    );
    let o = stdout(&proffer(&master, &["frameworks"]).await?);
    assert!(o.contains("SHARE"), "{o}");
    let o = stdout(&proffer(&master, &["frameworks", "--json"]).await?);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&o)?,
        serde_json::json!([])
    );

    let o = stdout(&proffer(&master, &["events", "--count", "1", "--json"]).await?);
    let first: serde_json::Value = serde_json::from_str(o.trim())?;
    assert_eq!(first["type"], "SUBSCRIBED", "{o}");
    let o = stdout(&proffer(&master, &["events", "--count", "1"]).await?);
    assert!(o.starts_with("SUBSCRIBED          0 agents"), "{o}");

    // An unknown task, and a master that is not there: non-zero exit, a message.
    let out = proffer(&master, &["logs", "nope"]).await?;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no task `nope`"));
    let out = proffer("127.0.0.1:1", &["events"]).await?;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("127.0.0.1:1"));

    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let o = stdout(&proffer(&master, &["completions", shell]).await?);
        assert!(o.contains("frameworks") && o.contains("logs"), "{shell}");
    }
    let out = proffer(&master, &["completions", "tcsh"]).await?;
    assert!(!out.status.success(), "an unknown shell is refused");

    cancel.cancel();
    server.await??;
    Ok(())
}
