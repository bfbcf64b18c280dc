//! Launches per second through the master core alone (issue 21: ≥ 50,000/s with 10,000
//! agents): `cargo bench -p proffer-sim --bench launch_core [-- AGENTS TASKS FRAMEWORKS]
//! [AGENT_RESOURCES…]`.
//! Prints its figures (one run each of a few shapes); nothing is asserted.
#![allow(missing_docs)]

use proffer_proto::Resources;
use proffer_sim::core_bench::{CoreBenchParams, run};

// The allocator of the `proffer` binary, which runs the master.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    // `cargo bench` passes `--bench`; numbers are ours.
    let nums: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let agents = nums.first().copied().unwrap_or(10_000) as usize;
    let tasks = nums.get(1).copied().unwrap_or(500_000);
    let frameworks = nums.get(2).copied().unwrap_or(10) as usize;
    println!(
        "{:>7} {:>5} {:>18} {:>9} {:>8} {:>8} {:>12} {:>14} {:>12} {:>11}",
        "agents",
        "fws",
        "agent",
        "tasks",
        "setup s",
        "wall s",
        "launches/s",
        "per CPU-second",
        "in core only",
        "tasks/offer"
    );
    // Agent shapes given (`cpus:…`), else three: 8, 2 and 1 task slots per agent.
    let mut shapes: Vec<String> = std::env::args().filter(|a| a.contains("cpus:")).collect();
    if shapes.is_empty() {
        shapes = ["cpus:8;mem:8192", "cpus:2;mem:2048", "cpus:1;mem:1024"]
            .map(String::from)
            .to_vec();
    }
    for agent in &shapes {
        let p = CoreBenchParams {
            agents,
            frameworks,
            tasks,
            agent_resources: Resources::parse(agent)?,
            ..CoreBenchParams::default()
        };
        let r = run(&p)?;
        println!(
            "{:>7} {:>5} {:>18} {:>9} {:>8.2} {:>8.2} {:>12.0} {:>14.0} {:>12.0} {:>11.2}",
            agents,
            frameworks,
            agent,
            r.finished,
            r.setup.as_secs_f64(),
            r.wall.as_secs_f64(),
            r.launches_per_s(),
            r.launches_per_cpu_s().unwrap_or(f64::NAN),
            r.launches_per_core_s(),
            r.tasks_per_offer()
        );
    }
    Ok(())
}
