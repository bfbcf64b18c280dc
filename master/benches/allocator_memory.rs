//! Allocator memory: resident memory growth for 100,000 agents × 1,000 frameworks, after one
//! full allocation cycle. Prints the figure (Linux `/proc/self/statm`).
#![allow(missing_docs)]

use proffer_master::allocator::Allocator;
use proffer_master::core::Timestamp;
use proffer_proto::Resources;

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn main() {
    let before = rss_bytes();
    let mut a = Allocator::new(7);
    for f in 0..1_000 {
        a.add_framework(&format!("framework-{f:05}"), &["*".to_string()], true);
    }
    let r =
        Resources::parse("cpus:16;mem:65536;disk:100000;ports:[31000-32000]").unwrap_or_default();
    for i in 0..100_000 {
        a.add_agent(&format!("agent-{i:06}"), r.clone(), &[]);
    }
    let start = std::time::Instant::now();
    let offers = a.allocate(Timestamp(0)).len();
    let cycle = start.elapsed();
    let after = rss_bytes();
    println!(
        "allocator_memory/100000x1000: {:.1} MiB resident after one cycle ({offers} offers, cycle {:.1} ms)",
        (after.saturating_sub(before)) as f64 / (1024.0 * 1024.0),
        cycle.as_secs_f64() * 1000.0
    );
}
