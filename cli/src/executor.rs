//! `proffer executor`: the per-task executor the agent starts for every task (not meant to be
//! run by hand). See `proffer_agent::executor`.

use std::path::PathBuf;

use proffer_agent::executor::{ExecutorMode, run_process};

/// Flags of `proffer executor`.
#[derive(Debug, clap::Args)]
pub struct ExecutorArgs {
    /// Print the protocol version and exit (the agent checks its executor binary with it).
    #[arg(long, conflicts_with = "run_dir")]
    probe: bool,
    /// The task's run directory (`task.pb`, `spec.json`, `events.jsonl`).
    #[arg(long, required_unless_present = "probe")]
    run_dir: Option<PathBuf>,
}

/// Runs the executor; `Ok(false)` when it could not record the task's end.
pub async fn run(args: ExecutorArgs) -> anyhow::Result<bool> {
    let mode = match (args.probe, args.run_dir) {
        (true, _) => ExecutorMode::Probe,
        (false, Some(dir)) => ExecutorMode::Run(dir),
        (false, None) => anyhow::bail!("--run-dir is required"),
    };
    Ok(run_process(mode).await == 0)
}
