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

/// Runtime workers of a supervising executor: twice the cores, at least 4 and at most 16.
/// Its workers block in system calls while they start tasks: a spawn waits for the child's
/// `execve`, each move of the spawning thread into a task's v1 cgroups may wait for an RCU
/// grace period, and creating a task's files may wait for the file system's journal. With
/// one worker per core, tasks handed over together waited for each other's blocked spawns
/// (measured: `docs/launch-performance.md`, seventh session). `None`: the default, one per
/// core.
pub fn worker_threads(args: &ExecutorArgs) -> Option<usize> {
    args.supervisor.then(|| {
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        (2 * cores).clamp(4, 16)
    })
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, clap::Parser)]
    struct Cmd {
        #[command(flatten)]
        args: ExecutorArgs,
    }

    fn args(argv: &[&str]) -> ExecutorArgs {
        Cmd::try_parse_from(std::iter::once("executor").chain(argv.iter().copied()))
            .expect("flags parse")
            .args
    }

    #[test]
    fn only_a_supervisor_gets_more_workers_than_cores_within_bounds() {
        let n = worker_threads(&args(&["--supervisor"])).expect("a supervisor's count");
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        assert!((4..=16).contains(&n), "{n} workers");
        assert_eq!(n, (2 * cores).clamp(4, 16));
        assert_eq!(worker_threads(&args(&["--run-dir", "/tmp/x"])), None);
        assert_eq!(worker_threads(&args(&["--probe"])), None);
    }
}
