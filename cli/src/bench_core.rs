//! `proffer bench core`: launches per second through the master core alone, with simulated
//! agents and frameworks and no I/O (see `proffer_sim::core_bench`).

use proffer_proto::Resources;
use proffer_sim::core_bench::{CoreBenchParams, run};
use serde_json::json;

/// Flags of `proffer bench core`.
#[derive(Debug, clap::Args)]
pub struct CoreArgs {
    /// Simulated agents.
    #[arg(long, default_value_t = 10_000)]
    agents: usize,
    /// Frameworks (one role each).
    #[arg(long, default_value_t = 10)]
    frameworks: usize,
    /// Tasks to run to FINISHED (each: launched, RUNNING, FINISHED, both acknowledged).
    #[arg(long, default_value_t = 500_000)]
    tasks: u64,
    /// Resources of each agent.
    #[arg(long, default_value = "cpus:8;mem:8192")]
    agent_resources: String,
    /// Resources of each task.
    #[arg(long, default_value = "cpus:1;mem:128")]
    task_resources: String,
    /// Virtual milliseconds between rounds (allocation ticks).
    #[arg(long, default_value_t = 5)]
    round_ms: u64,
    /// Seeds the master.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Print the figures as JSON.
    #[arg(long)]
    json: bool,
}

/// Runs `proffer bench core`.
pub fn core(a: CoreArgs) -> anyhow::Result<bool> {
    let parse = |flag: &str, text: &str| {
        Resources::parse(text).map_err(|e| anyhow::anyhow!("{flag} `{text}`: {e}"))
    };
    let p = CoreBenchParams {
        agents: a.agents,
        frameworks: a.frameworks,
        tasks: a.tasks,
        agent_resources: parse("--agent-resources", &a.agent_resources)?,
        task_resources: parse("--task-resources", &a.task_resources)?,
        round_ms: a.round_ms,
        seed: a.seed,
        ..CoreBenchParams::default()
    };
    if cfg!(debug_assertions) {
        tracing::warn!("a debug build: its figures are far below a release build's");
    }
    let r = run(&p)?;
    if a.json {
        crate::output::text(
            &json!({
                "agents": a.agents,
                "frameworks": a.frameworks,
                "agent_resources": a.agent_resources,
                "task_resources": a.task_resources,
                "tasks": r.finished,
                "setup_s": r.setup.as_secs_f64(),
                "wall_s": r.wall.as_secs_f64(),
                "launches_per_s": r.launches_per_s(),
            "cpu_s": r.cpu.map(|c| c.as_secs_f64()),
            "launches_per_cpu_s": r.launches_per_cpu_s(),
            "core_s": r.core.as_secs_f64(),
            "launches_per_core_s": r.launches_per_core_s(),
                "offers": r.offers,
                "tasks_per_offer": r.tasks_per_offer(),
                "rounds": r.rounds,
                "inputs": r.inputs,
                "outputs": r.outputs,
                "refused": r.refused,
            })
            .to_string(),
        );
        return Ok(true);
    }
    crate::output::text(&format!(
        "master core alone: {} agents ({}), {} frameworks, {} tasks ({})\n\
         setup (register, subscribe): {:.2} s\n\
         launch → RUNNING → FINISHED → acknowledged: {:.2} s, {} rounds, {} offers \
         ({:.2} tasks per offer), {} inputs, {} outputs, {} refused\n\
         launches/s: {:.0} (per CPU-second of the loop: {}; per second inside the core's \
         own calls: {:.0})",
        a.agents,
        a.agent_resources,
        a.frameworks,
        r.finished,
        a.task_resources,
        r.setup.as_secs_f64(),
        r.wall.as_secs_f64(),
        r.rounds,
        r.offers,
        r.tasks_per_offer(),
        r.inputs,
        r.outputs,
        r.refused,
        r.launches_per_s(),
        r.launches_per_cpu_s()
            .map_or_else(|| "unknown".to_string(), |v| format!("{v:.0}")),
        r.launches_per_core_s()
    ));
    Ok(true)
}
