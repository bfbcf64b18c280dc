//! Reads against a busy core (issue 19, item 3); prints figures (`cargo bench -p proffer-master
//! --bench operator_reads`).
//!
//! A master with 10,000 agents, 100 frameworks and 10,000 running tasks is driven through the
//! core's own inputs in simulated time (20 ms ticks, an allocation cycle every second, every
//! framework declining every offer with a 0 s filter so each cycle offers all 10,000 agents
//! again), single-threaded as the core task runs. Three read loads:
//!
//! - `none`: no reads;
//! - `published`: 50 GET_STATE a second, served the way the server serves them: the core's
//!   [`Publisher`] builds a snapshot when one is due (changed, wanted, and spaced: at least
//!   100 ms and at least 33 times the last build's duration since the last build), readers take
//!   the `Arc`;
//! - `subscribers`: 100 operator event subscribers (they keep a snapshot coming every 100 ms
//!   while anything changes; the diff and the encoding run on the subscribers' side);
//! - `closure` (for comparison, the old way): 50 GET_STATE a second, each a full snapshot built
//!   on the core task.
//!
//! With `OPERATOR_READS_PROFILE` set it only times snapshot builds (agents only, then with
//! the tasks), for profiling.
//!
//! Figures: mean allocation cycle time (the tick that allocates, plus the declines it brings),
//! the core's busy time per simulated second and its overhead over `none`, and the snapshots
//! built. Reader-side costs (JSON of one snapshot, one diff) are printed separately: they run
//! on the HTTP tasks, not on the core.
#![allow(missing_docs)]

/// The allocator of the `proffer` binary (snapshots allocate and free many small strings; the
/// system allocator's free lists would dominate the figures).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use proffer_master::core::{Call, ConnId, Input, Master, MasterConfig, Output, Timestamp};
use proffer_master::server::{Published, Publisher, Snapshots};
use proffer_proto::Resources;
use proffer_proto::v1::{self, agent_message::Msg as AIn};

const AGENTS: usize = 10_000;
const FRAMEWORKS: usize = 100;
const TICK_MS: u64 = 20;
const SECONDS: u64 = 40;

fn res(s: &str) -> Resources {
    Resources::parse(s).unwrap_or_default()
}

/// A master with the cluster registered; returns it with each framework's stream id.
fn cluster() -> (Master, HashMap<String, String>) {
    let mut m = Master::new(MasterConfig::default(), 1);
    let now = Timestamp(1);
    let agent_res = res("cpus:16;mem:65536;disk:100000;ports:[31000-32000]").to_proto();
    for i in 0..AGENTS {
        let info = v1::AgentInfo {
            hostname: format!("host-{i:05}"),
            port: 5051,
            resources: agent_res.clone(),
            ..Default::default()
        };
        let msg = AIn::Register(v1::RegisterAgent {
            info: Some(Box::new(info)),
        });
        let _ = m.handle(
            now,
            Input::Agent {
                conn: i as ConnId + 1,
                msg: v1::AgentMessage { msg: Some(msg) },
            },
        );
    }
    for f in 0..FRAMEWORKS {
        let info = v1::FrameworkInfo {
            name: format!("fw-{f}"),
            failover_timeout: 86_400.0,
            ..Default::default()
        };
        let _ = m.handle(
            now,
            Input::Subscribe {
                conn: 1_000_000 + f as ConnId,
                info: Box::new(info),
            },
        );
    }
    let mut streams = HashMap::new();
    for o in m.take_outbox() {
        if let Output::ToFramework { event, .. } = o
            && let Some(v1::event::Event::Subscribed(s)) = event.event
        {
            streams.insert(s.framework_id, s.stream_id);
        }
    }
    (m, streams)
}

/// Offer ids per framework, and each offer's agent.
fn offers(m: &mut Master) -> HashMap<String, Vec<(String, String)>> {
    let mut by_fw: HashMap<String, Vec<(String, String)>> = HashMap::new();
    for o in m.take_outbox() {
        if let Output::ToFramework { event, .. } = o
            && let Some(v1::event::Event::Offers(of)) = event.event
        {
            for x in of.offers {
                by_fw
                    .entry(x.framework_id.clone())
                    .or_default()
                    .push((x.id, x.agent_id));
            }
        }
    }
    by_fw
}

fn header(fw: &str, streams: &HashMap<String, String>) -> Option<v1::CallHeader> {
    Some(v1::CallHeader {
        framework_id: fw.to_string(),
        stream_id: streams.get(fw).cloned().unwrap_or_default(),
    })
}

/// The first cycle: every offer is accepted with one small task; the agents report them
/// running. Leaves 10,000 running tasks.
fn launch_tasks(m: &mut Master, streams: &HashMap<String, String>, now: Timestamp) {
    m.tick(now);
    let task_res = res("cpus:0.1;mem:32").to_proto();
    let mut n = 0;
    for (fw, list) in offers(m) {
        for (offer, agent) in list {
            n += 1;
            let task = v1::TaskInfo {
                name: format!("t{n}"),
                task_id: format!("task-{n:06}"),
                agent_id: agent,
                resources: task_res.clone(),
                command: Some(v1::CommandInfo {
                    value: "sleep 1000".into(),
                    shell: true,
                    ..Default::default()
                }),
                ..Default::default()
            };
            let op = v1::Operation {
                op: Some(v1::operation::Op::Launch(v1::Launch { tasks: vec![task] })),
            };
            let _ = m.handle(
                now,
                Input::Call(Call::Accept(v1::AcceptRequest {
                    header: header(&fw, streams),
                    offer_ids: vec![offer],
                    operations: vec![op],
                    filters: Some(v1::Filters {
                        refuse_seconds: Some(0.0),
                    }),
                })),
            );
        }
    }
    // The agents report their tasks running.
    let mut runs = Vec::new();
    for o in m.take_outbox() {
        if let Output::ToAgent { conn, msg } = o
            && let Some(v1::master_message::Msg::RunTask(run)) = msg.msg
            && let Some(task) = run.task
        {
            runs.push((conn, run.framework_id, task.task_id, task.agent_id));
        }
    }
    for (conn, framework_id, task_id, agent_id) in runs {
        let status = v1::TaskStatus {
            task_id,
            state: v1::TaskState::TaskRunning as i32,
            agent_id,
            uuid: format!("u-{conn}").into_bytes(),
            ..Default::default()
        };
        let msg = AIn::StatusUpdate(v1::StatusUpdate {
            framework_id,
            latest_state: None,
            status: Some(status),
        });
        let _ = m.handle(
            now,
            Input::Agent {
                conn,
                msg: v1::AgentMessage { msg: Some(msg) },
            },
        );
    }
    let _ = m.take_outbox();
}

#[derive(Clone, Copy, PartialEq)]
enum Load {
    None,
    Published,
    Subscribers,
    Closure,
}

struct Figures {
    cycle: Duration,
    busy: Duration,
    /// Core time spent building snapshots, per simulated second.
    reads: Duration,
    builds: u64,
    tasks: usize,
    /// The publisher's spacing of builds at the end (ms).
    interval_ms: u64,
}

/// Runs `SECONDS` simulated seconds under `load`.
fn run(load: Load) -> Figures {
    let (mut m, streams) = cluster();
    let mut t = 1_000;
    launch_tasks(&mut m, &streams, Timestamp(t));
    let snapshots = Snapshots::new();
    let mut publisher = Publisher::new(snapshots.clone(), Publisher::DEFAULT_MIN_INTERVAL_MS);
    let _subs: Vec<_> = if load == Load::Subscribers {
        (0..100).map(|_| snapshots.subscribe_events()).collect()
    } else {
        Vec::new()
    };
    let (mut cycles, mut cycle_time, mut busy, mut builds) =
        (0u32, Duration::ZERO, Duration::ZERO, 0);
    let reads_per_tick = 50.0 * TICK_MS as f64 / 1000.0;
    let mut read_debt = 0.0;
    let mut tasks = 0;
    let mut reads = Duration::ZERO;
    let end = t + SECONDS * 1000;
    while t < end {
        t += TICK_MS;
        let now = Timestamp(t);
        let start = Instant::now();
        let before = m.stats().allocation_cycles;
        m.tick(now);
        let allocated = m.stats().allocation_cycles > before;
        let by_fw = offers(&mut m);
        let mut changed = allocated;
        for (fw, list) in by_fw {
            changed = true;
            let _ = m.handle(
                now,
                Input::Call(Call::Decline(v1::DeclineRequest {
                    header: header(&fw, &streams),
                    offer_ids: list.into_iter().map(|(id, _)| id).collect(),
                    filters: Some(v1::Filters {
                        refuse_seconds: Some(0.0),
                    }),
                })),
            );
        }
        let _ = m.take_outbox();
        if allocated {
            cycles += 1;
            cycle_time += start.elapsed();
        }
        if changed {
            publisher.changed();
        }
        // Readers of this tick.
        read_debt += reads_per_tick;
        while read_debt >= 1.0 {
            read_debt -= 1.0;
            match load {
                Load::Published => snapshots.want(),
                Load::Closure => {
                    let t = Instant::now();
                    let s = m.snapshot(now);
                    reads += t.elapsed();
                    tasks = s.tasks.len();
                    builds += 1;
                }
                _ => {}
            }
        }
        if publisher.due(t) {
            let started = Instant::now();
            publisher.publish(t, || Published {
                version: 0,
                state: m.snapshot(now),
                roles: m.role_summaries(),
                stats: m.stats(),
            });
            reads += started.elapsed();
            tasks = snapshots.latest().state.tasks.len();
        }
        busy += start.elapsed();
    }
    Figures {
        cycle: cycle_time / cycles.max(1),
        busy: busy / SECONDS as u32,
        reads: reads / SECONDS as u32,
        builds: builds + snapshots.builds(),
        tasks,
        interval_ms: publisher.interval_ms(),
    }
}

/// One load's figures next to its baseline's.
fn print_figures(round: u32, name: &str, base: &Figures, f: &Figures) {
    println!(
        "  round {round} {name:<12} cycle {:.1} ms vs {:.1} ms without reads ({:+.1} %); core busy \
         {:.1} ms per s; reads took {:.1} ms of core time per s = {:.1} % of the core (what \
         allocation can lose when the core is saturated); {} snapshots built ({} tasks each; \
         builds spaced {} ms)",
        ms(f.cycle),
        ms(base.cycle),
        (ms(f.cycle) / ms(base.cycle) - 1.0) * 100.0,
        ms(f.busy),
        ms(f.reads),
        ms(f.reads) / 10.0,
        f.builds,
        f.tasks,
        f.interval_ms,
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    if std::env::var_os("OPERATOR_READS_PROFILE").is_some() {
        let (mut m, streams) = cluster();
        let t = Instant::now();
        for _ in 0..10 {
            let _ = m.snapshot(Timestamp(1_000));
        }
        println!("agents only: {:.1} ms", ms(t.elapsed()) / 10.0);
        launch_tasks(&mut m, &streams, Timestamp(1_000));
        let t = Instant::now();
        for _ in 0..100 {
            let _ = m.snapshot(Timestamp(1_000));
        }
        println!("with tasks: {:.1} ms", ms(t.elapsed()) / 100.0);
        return;
    }
    println!(
        "operator_reads: {AGENTS} agents, {FRAMEWORKS} frameworks, {SECONDS} simulated s \
         (20 ms ticks, a full cycle each second)"
    );
    // The machine may be shared: each load runs right after its own baseline, twice.
    let mut base = run(Load::None);
    for round in 1..=2 {
        for (name, load) in [
            ("published", Load::Published),
            ("subscribers", Load::Subscribers),
        ] {
            if round > 1 || name != "published" {
                base = run(Load::None);
            }
            print_figures(round, name, &base, &run(load));
        }
    }
    print_figures(1, "closure", &base, &run(Load::Closure));
    // Reader-side costs (on the HTTP tasks, not the core).
    let (mut m, streams) = cluster();
    launch_tasks(&mut m, &streams, Timestamp(1_000));
    let snap = m.snapshot(Timestamp(1_000));
    let t = Instant::now();
    let built = 5;
    for _ in 0..built {
        let _ = m.snapshot(Timestamp(1_000));
    }
    let build = t.elapsed() / built;
    let t = Instant::now();
    let json = serde_json::to_vec(&snap).map(|v| v.len()).unwrap_or(0);
    let encode = t.elapsed();
    println!(
        "  one snapshot: built in {:.1} ms on the core; its JSON ({} MB) {:.1} ms on a reader",
        ms(build),
        json / 1_000_000,
        ms(encode)
    );
}
