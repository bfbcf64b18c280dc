//! `proffer local` cleans up after itself: its default work dir is removed on exit unless
//! `--keep` is given.

use std::process::Stdio;
use std::time::Duration;

/// Runs a one-task demo; returns the work dir it printed.
async fn demo(extra: &[&str]) -> anyhow::Result<std::path::PathBuf> {
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_proffer"))
        .args(["local", "--port", "0", "--agents", "1", "--demo-tasks", "1"])
        .args(["--demo-cmd", "true", "--exit-after-demo"])
        .args(["--allocation-interval", "100ms"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let output = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output()).await??;
    let stdout = String::from_utf8_lossy(&output.stdout);
    anyhow::ensure!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let dir = stdout
        .lines()
        .find_map(|l| l.strip_prefix("work dir "))
        .ok_or_else(|| anyhow::anyhow!("no `work dir` line in:\n{stdout}"))?;
    Ok(dir.trim().into())
}

#[tokio::test]
async fn the_default_work_dir_is_removed_unless_kept() -> anyhow::Result<()> {
    let gone = demo(&[]).await?;
    assert!(!gone.exists(), "{} still exists", gone.display());
    let kept = demo(&["--keep"]).await?;
    assert!(
        kept.join("master").exists(),
        "{} was removed",
        kept.display()
    );
    std::fs::remove_dir_all(&kept)?;
    Ok(())
}
