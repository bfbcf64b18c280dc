//! High-availability benchmarks on a local 3-member etcd (prints figures; `cargo bench -p
//! proffer-master --bench failover`; skipped with a message when `etcd` is not installed):
//! 1. registry writes, fenced on the election key as a leader writes them, side by side with
//!    redb: throughput and latency percentiles for batches of 1, 100 and 1,000 records;
//! 2. failover of a cluster of 10,000 agents and 1,000 frameworks held in the etcd registry,
//!    with the real election on the real etcd, for lease TTLs of 2 s and 5 s (the default):
//!    - detection: from the leader's death (its lease keep-alive stops without a revoke, as
//!      `kill -9` leaves it) until the standby's campaign returns; the lease expires at etcd
//!      `TTL` after the last keep-alive, so this is `TTL - (time since that keep-alive)` plus
//!      etcd's own lag (its expiry loop, then the watch that ends the campaign);
//!    - recovery: the new leader connects its fenced registry, loads it and recovers the core;
//!    - re-registration: 10,000 agents re-register and 1,000 frameworks re-subscribe through
//!      the core (no network), their writes committed to etcd, fenced;
//!    - first allocation: one full cycle (every offer is sent at its end).
//!
//!    "After the lease expires" is measured from the lease's nominal expiry (the last
//!    keep-alive sent + TTL) to the end of the first cycle: the goal is ≤ 2 s.
#![allow(missing_docs)]

mod common;

use std::time::{Duration, Instant};

use common::{AGENTS, FRAMEWORKS, TakeOver, ms, or_die, percentile};
use proffer_master::core::Timestamp;
use proffer_master::etcd::EtcdConfig;
use proffer_master::etcd::election::{Candidate, ElectionConfig, ElectionError, Leadership};
use proffer_master::etcd::launch::{ETCD_PACKAGE, EtcdCluster, etcd_installed};
use proffer_master::registry::{EtcdRegistry, RedbRegistry, Registry};

/// Lease TTLs tried (5 s is the default `--leader-lease-ttl`).
const TTLS: [u64; 2] = [2, 5];
/// Failovers per TTL; the leaders die at evenly spread points of their keep-alive period.
const TRIALS: usize = 3;
/// The cluster's registry prefix (the election is `PREFIX/leader`, as `proffer master` names it).
const PREFIX: &str = "/proffer/bench";

fn election(etcd: &EtcdConfig, name: &str, ttl_s: u64, who: &str) -> ElectionConfig {
    ElectionConfig {
        etcd: etcd.clone(),
        name: name.to_string(),
        advertise: format!("{who}:5050"),
        ttl: Duration::from_secs(ttl_s),
    }
}

/// Connects, takes a lease and campaigns until elected.
async fn lead(config: ElectionConfig) -> Result<(Candidate, Leadership), ElectionError> {
    let candidate = Candidate::connect(config).await?;
    let lease = candidate.lease().await?;
    let leadership = candidate.campaign(lease).await?;
    Ok((candidate, leadership))
}

/// Part 1: fenced etcd writes next to redb, same batches, same record size.
fn registry_writes(rt: &tokio::runtime::Runtime, etcd: &EtcdConfig, dir: &std::path::Path) {
    let prefix = "/proffer/bench-writes";
    let config = election(etcd, &format!("{prefix}/leader"), 5, "writer");
    let (candidate, leadership) = or_die(rt.block_on(lead(config)), "elect the writer");
    let mut fenced = or_die(EtcdRegistry::new(etcd.clone(), prefix), "etcd registry")
        .fenced(leadership.fence.clone());
    or_die(fenced.load(), "load from etcd");
    let mut redb = or_die(RedbRegistry::open(&dir.join("writes")), "open redb");
    or_die(redb.load(), "load redb");
    for per_batch in [1, 100, 1_000] {
        let batches = if per_batch == 1 { 500 } else { 100 };
        common::writes("redb", &mut redb, batches, per_batch, 300);
        common::writes("etcd-fenced", &mut fenced, batches, per_batch, 300);
    }
    rt.block_on(candidate.resign(leadership));
}

/// One failover's figures.
struct Failover {
    /// How long the dead leader's lease had been without a keep-alive when it died.
    since_keep_alive: Duration,
    /// From its death to the standby's campaign returning.
    detection: Duration,
    /// From the lease's nominal expiry to the campaign returning.
    lag: Duration,
    /// The new leader's take-over, from its campaign returning.
    take_over: TakeOver,
}

impl Failover {
    fn after_expiry(&self) -> Duration {
        self.lag + self.take_over.done
    }
}

/// The clock's margin (`LeaseClock`: TTL/5, at least 200 ms): its deadline is the last
/// keep-alive sent + TTL - margin.
fn clock_margin(ttl: Duration) -> Duration {
    (ttl / 5).max(Duration::from_millis(200))
}

/// Elects a leader with `ttl_s`, lets a standby campaign behind it, kills the leader `phase`
/// into its keep-alive period, and times the standby's election and take-over.
fn failover(
    rt: &tokio::runtime::Runtime,
    etcd: &EtcdConfig,
    ttl_s: u64,
    trial: usize,
    phase: Duration,
    cluster: (&[String], &[String]),
) -> (Failover, Candidate, Leadership) {
    let name = format!("{PREFIX}/leader");
    let ttl = Duration::from_secs(ttl_s);
    let doomed = election(etcd, &name, ttl_s, &format!("leader-{trial}"));
    let (doomed_candidate, doomed) = or_die(rt.block_on(lead(doomed)), "elect the leader");
    let standby = election(etcd, &name, ttl_s, &format!("standby-{trial}"));
    let waiting = rt.spawn(async move {
        let won = lead(standby).await;
        (won, Instant::now())
    });
    // The standby's key is in (behind the leader's) long before this.
    std::thread::sleep(Duration::from_millis(300) + phase);
    let last_keep_alive = doomed.lease.clock.valid_until() + clock_margin(ttl) - ttl;
    let killed = Instant::now();
    // kill -9: the keep-alive stops, nothing is revoked, the connection goes away.
    drop(doomed);
    drop(doomed_candidate);
    let (won, elected) = or_die(rt.block_on(waiting), "join the standby");
    let (candidate, leadership) = or_die(won, "elect the standby");
    let mut registry = or_die(EtcdRegistry::new(etcd.clone(), PREFIX), "etcd registry")
        .fenced(leadership.fence.clone());
    let now = Timestamp(100_000 * (trial as u64 + 1));
    let seed = 10 + trial as u64;
    let take_over = common::take_over(&mut registry, elected, seed, now, cluster.0, cluster.1);
    let expiry = last_keep_alive + ttl;
    let figures = Failover {
        since_keep_alive: killed.saturating_duration_since(last_keep_alive),
        detection: elected - killed,
        lag: elected.saturating_duration_since(expiry),
        take_over,
    };
    (figures, candidate, leadership)
}

fn print_trial(ttl_s: u64, f: &Failover) {
    let t = &f.take_over;
    println!(
        "failover/ttl={ttl_s}s: killed {:.0} ms after a keep-alive; detection {:.0} ms (campaign returned {:.0} ms after the lease expired); recovery {:.0} ms (load {} records, {:.1} MB, {:.0} ms + recover {:.0} ms); re-registration {:.0} ms ({} agents {:.0} ms + {} frameworks {:.0} ms, of which {} etcd commits {:.0} ms); first allocation {:.0} ms ({} offers); after the lease expired: {:.0} ms",
        ms(f.since_keep_alive),
        ms(f.detection),
        ms(f.lag),
        ms(t.recovered),
        t.records,
        t.bytes as f64 / 1e6,
        ms(t.loaded),
        ms(t.recovered - t.loaded),
        ms(t.resubscribed - t.recovered),
        t.active,
        ms(t.reregistered - t.recovered),
        FRAMEWORKS,
        ms(t.resubscribed - t.reregistered),
        t.commits,
        ms(t.commit_time),
        ms(t.done - t.resubscribed),
        t.offers,
        ms(f.after_expiry()),
    );
}

fn print_summary(ttl_s: u64, runs: &[Failover]) {
    let stat = |f: &dyn Fn(&Failover) -> Duration| {
        let mut v: Vec<Duration> = runs.iter().map(f).collect();
        v.sort_unstable();
        format!(
            "{:.0}/{:.0}/{:.0}",
            ms(v[0]),
            ms(percentile(&v, 0.5)),
            ms(v[v.len() - 1])
        )
    };
    let t = |f: &Failover| f.take_over.clone();
    println!(
        "failover/ttl={ttl_s}s/summary (min/median/max ms over {} runs): detection {}, campaign after expiry {}, recovery {}, re-registration {}, first allocation {}, from the leader's death to the first offer {}, after the lease expired {}",
        runs.len(),
        stat(&|f| f.detection),
        stat(&|f| f.lag),
        stat(&|f| t(f).recovered),
        stat(&|f| t(f).resubscribed - t(f).recovered),
        stat(&|f| t(f).done - t(f).resubscribed),
        stat(&|f| f.detection + f.take_over.done),
        stat(&|f| f.after_expiry()),
    );
}

/// Part 2: the cluster made by a first leader, then failovers for each TTL.
fn failovers(rt: &tokio::runtime::Runtime, etcd: &EtcdConfig) {
    let first = election(etcd, &format!("{PREFIX}/leader"), 5, "master-0");
    let (mut candidate, mut leadership) = or_die(rt.block_on(lead(first)), "elect");
    let t = Instant::now();
    let mut registry =
        or_die(EtcdRegistry::new(etcd.clone(), PREFIX), "etcd").fenced(leadership.fence.clone());
    let (ids, fws) = common::populate(&mut registry);
    drop(registry);
    println!(
        "failover/populate: {} agents and {} frameworks registered and persisted in etcd (fenced) in {:.1} s",
        ids.len(),
        fws.len(),
        t.elapsed().as_secs_f64()
    );
    let mut trial = 0;
    for ttl_s in TTLS {
        let mut runs = Vec::new();
        for k in 0..TRIALS {
            // The previous leader resigns, so this trial's leader (with this TTL) leads at once.
            rt.block_on(candidate.resign(leadership));
            let phase = Duration::from_secs(ttl_s) / 3 * k as u32 / TRIALS as u32;
            let (f, c, l) = failover(rt, etcd, ttl_s, trial, phase, (&ids, &fws));
            print_trial(ttl_s, &f);
            runs.push(f);
            (candidate, leadership) = (c, l);
            trial += 1;
        }
        print_summary(ttl_s, &runs);
    }
    rt.block_on(candidate.resign(leadership));
}

fn main() {
    if !etcd_installed() {
        println!("failover: skipped: `etcd` is not installed (apt-get install {ETCD_PACKAGE})");
        return;
    }
    let dir = or_die(tempfile::tempdir(), "tempdir");
    let t = Instant::now();
    let cluster = match EtcdCluster::start(&dir.path().join("etcd"), 3) {
        Ok(c) => c,
        Err(e) => {
            println!("failover: skipped: {e}");
            return;
        }
    };
    println!(
        "etcd: 3 members on {} ready in {:.1} s ({AGENTS} agents, {FRAMEWORKS} frameworks; default lease TTL 5 s)",
        cluster.endpoints(),
        t.elapsed().as_secs_f64()
    );
    let etcd = or_die(EtcdConfig::parse(&cluster.endpoints(), None), "endpoints");
    let rt = or_die(
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build(),
        "runtime",
    );
    registry_writes(&rt, &etcd, dir.path());
    failovers(&rt, &etcd);
    drop(rt);
    drop(cluster);
}
