//! `proffer executor`: the executor the agent starts for every task, or once per framework
//! with `--supervisor` (not meant to be run by hand). See `proffer_agent::executor`.

use std::path::PathBuf;

use proffer_agent::executor::{ExecutorMode, run_process};

/// Flags of `proffer executor`.
#[derive(Debug, clap::Args)]
pub struct ExecutorArgs {
    /// Print the protocol version and exit (the agent checks its executor binary with it).
    #[arg(long, conflicts_with = "run_dir")]
    probe: bool,
    /// The task's run directory (its launch files `task.pb` and `spec.json`; `events.jsonl`).
    #[arg(long, required_unless_present_any = ["probe", "supervisor"], conflicts_with = "supervisor")]
    run_dir: Option<PathBuf>,
    /// Supervise every task the agent names on stdin (one executor per framework per agent).
    #[arg(long, conflicts_with = "probe")]
    supervisor: bool,
    /// The OCI runtime (runc, crun) for tasks in containers (default: detected on PATH).
    #[arg(long)]
    oci_runtime: Option<PathBuf>,
}

/// Runs the executor; `Ok(false)` when it could not record the task's end.
pub async fn run(args: ExecutorArgs) -> anyhow::Result<bool> {
    let mode = match (args.probe, args.supervisor, args.run_dir) {
        (true, _, _) => ExecutorMode::Probe,
        (false, true, _) => ExecutorMode::Supervisor,
        (false, false, Some(dir)) => ExecutorMode::Run(dir),
        (false, false, None) => anyhow::bail!("--run-dir is required"),
    };
    if let Some(runtime) = args.oci_runtime {
        proffer_agent::executor::container::set_runtime_override(runtime);
    }
    Ok(run_process(mode).await == 0)
}
