//! Registry benchmarks (prints figures; `cargo bench -p proffer-master --bench registry`):
//! 1. redb write throughput and latency percentiles for batches of agent-sized records, side by
//!    side with the in-memory backend (the cost of the core's bookkeeping alone);
//! 2. restart of a master whose registry holds 10,000 agents and 1,000 frameworks: load the
//!    redb file, recover the core, take 10,000 agent re-registrations (through the core, no
//!    network) and run the first full allocation cycle.
//!
//! The same on etcd, with a failover: `--bench failover`.
#![allow(missing_docs)]

mod common;

use std::time::Instant;

use common::{AGENTS, FRAMEWORKS, ms, or_die};
use proffer_master::core::Timestamp;
use proffer_master::registry::{MemoryRegistry, RedbRegistry, Registry};

fn restart(dir: &std::path::Path, ids: &[String], fws: &[String]) {
    let t0 = Instant::now();
    let mut reg = or_die(RedbRegistry::open(dir), "open");
    let t = common::take_over(&mut reg, t0, 2, Timestamp(10_000), ids, fws);
    println!(
        "registry/restart/{AGENTS}x{FRAMEWORKS}: {} records ({:.1} MB) loaded in {:.0} ms, core recovered at {:.0} ms, {} agents re-registered at {:.0} ms, {} frameworks re-subscribed at {:.0} ms ({} commits, {:.0} ms), first full allocation cycle ({} offers, {:.0} ms) done at {:.0} ms",
        t.records,
        t.bytes as f64 / 1e6,
        ms(t.loaded),
        ms(t.recovered),
        t.active,
        ms(t.reregistered),
        fws.len(),
        ms(t.resubscribed),
        t.commits,
        ms(t.commit_time),
        t.offers,
        ms(t.cycle_alone),
        ms(t.done),
    );
}

fn main() {
    let dir = or_die(tempfile::tempdir(), "tempdir");
    let mut mem = MemoryRegistry::new();
    let _ = mem.load();
    let mut redb = or_die(RedbRegistry::open(&dir.path().join("writes")), "open");
    let _ = redb.load();
    for per_batch in [1, 100, 1_000] {
        let batches = if per_batch == 1 { 500 } else { 100 };
        common::writes("memory", &mut mem, batches, per_batch, 300);
        common::writes("redb", &mut redb, batches, per_batch, 300);
    }
    let restart_dir = dir.path().join("restart");
    let t = Instant::now();
    let mut reg = or_die(RedbRegistry::open(&restart_dir), "open");
    let (ids, fws) = common::populate(&mut reg);
    drop(reg);
    println!(
        "registry/populate: {} agents and {FRAMEWORKS} frameworks registered and persisted in {:.1} s",
        ids.len(),
        t.elapsed().as_secs_f64()
    );
    restart(&restart_dir, &ids, &fws);
}
