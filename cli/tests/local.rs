//! Runs the real `proffer local --exit-after-demo`: a master and two agents in one process run
//! a small demo batch to completion.

use std::process::Stdio;
use std::time::Duration;

#[tokio::test]
async fn local_demo_finishes_every_task() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_proffer"))
        .args(["local", "--port", "0", "--agents", "2", "--demo-tasks", "6"])
        .args([
            "--demo-cmd",
            "true",
            "--exit-after-demo",
            "--allocation-interval",
            "100ms",
        ])
        .arg("--work-dir")
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let output = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output()).await??;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "status {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        output.status
    );
    assert!(
        stdout.contains("master listening on 127.0.0.1:"),
        "{stdout}"
    );
    assert!(stdout.contains("6/6 tasks finished"), "{stdout}");
    assert!(
        stdout.contains("launched 6, finished 6, failed 0"),
        "{stdout}"
    );
    // No line per task: a summary instead (plain output, not a terminal).
    assert!(!stdout.contains("TASK_FINISHED"), "{stdout}");
    Ok(())
}

#[tokio::test]
async fn run_against_no_master_fails() -> anyhow::Result<()> {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_proffer"))
        .args([
            "run",
            "--master",
            "127.0.0.1:1",
            "--tasks",
            "1",
            "--cmd",
            "true",
        ])
        .output();
    let output = tokio::time::timeout(Duration::from_secs(60), output).await??;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("error:"), "{stderr}");
    Ok(())
}
