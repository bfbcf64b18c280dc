//! Launch throughput and latency on one agent, through the real master: a minimal framework
//! (the gRPC scheduler API directly) launches `true` tasks into every offer; we measure tasks/s (first launch to
//! last TASK_FINISHED) and launch→TASK_RUNNING latency (ACCEPT sent → RUNNING received).
//!
//! `cargo test -p proffer-agent --release --test launch_bench -- --ignored --nocapture`
//! runs the full benchmark (PROFFER_BENCH_TASKS tasks, default 500); the small variant runs
//! with the normal tests. Figures are printed, never asserted.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use proffer_agent::AgentConfig;
use proffer_master::core::MasterConfig;
use proffer_master::server::{ServerConfig, serve};
use proffer_proto::Resources;
use proffer_proto::v1::scheduler_client::SchedulerClient;
use proffer_proto::v1::{self, TaskState, event::Event};
use tokio_util::sync::CancellationToken;

/// Figures of one run.
struct Figures {
    tasks: usize,
    elapsed: Duration,
    p50: Duration,
    p99: Duration,
    max: Duration,
}

async fn run_bench(tasks: usize) -> Result<Figures> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?.to_string();
    let cancel = CancellationToken::new();
    let master = MasterConfig {
        allocation_interval_ms: 50,
        ..MasterConfig::default()
    };
    let server = tokio::spawn(serve(listener, ServerConfig::new(master), cancel.clone()));
    let dir = tempfile::tempdir()?;
    let mut cfg = AgentConfig::new(addr.clone(), dir.path());
    cfg.resources = Some(Resources::parse("cpus:8;mem:8192;ports:[31000-31099]")?);
    cfg.executor = common::executor_launcher();
    if std::env::var_os("PROFFER_BENCH_POSIX").is_some() {
        cfg.isolation = proffer_agent::IsolationMode::Posix;
    }
    cfg.reconnect_initial = Duration::from_millis(50);
    let agent = tokio::spawn(proffer_agent::run(cfg, cancel.child_token()));

    let mut client = SchedulerClient::connect(format!("http://{addr}")).await?;
    let info = v1::FrameworkInfo {
        name: "launch-bench".into(),
        ..Default::default()
    };
    let mut events = client
        .subscribe(v1::SubscribeRequest {
            framework_info: Some(info),
        })
        .await?
        .into_inner();
    let header = match events.message().await?.and_then(|e| e.event) {
        Some(Event::Subscribed(s)) => v1::CallHeader {
            framework_id: s.framework_id,
            stream_id: s.stream_id,
        },
        other => bail!("expected SUBSCRIBED, got {other:?}"),
    };
    let no_refusal = Some(v1::Filters {
        refuse_seconds: Some(0.0),
    });
    let res = Resources::parse("cpus:0.1;mem:32")?;
    let mut next = 0usize;
    let mut launched_at: HashMap<String, Instant> = HashMap::new();
    let mut latencies = Vec::with_capacity(tasks);
    let mut finished = 0usize;
    let mut first_launch = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(600);
    while finished < tasks {
        let ev = tokio::time::timeout_at(deadline, events.message())
            .await
            .context("benchmark timed out")??;
        let Some(e) = ev else {
            bail!("event stream ended");
        };
        match e.event {
            Some(Event::Offers(o)) => {
                for offer in o.offers {
                    let have = Resources::from_proto(&offer.resources)?;
                    let fit =
                        usize::try_from((have.cpus_milli() / 100).min(have.mem_milli() / 32_000))
                            .unwrap_or(0);
                    let n = fit.min(tasks - next);
                    if n == 0 {
                        client
                            .decline(v1::DeclineRequest {
                                header: Some(header.clone()),
                                offer_ids: vec![offer.id.clone()],
                                filters: no_refusal,
                            })
                            .await?;
                        continue;
                    }
                    let batch: Vec<v1::TaskInfo> = (next..next + n)
                        .map(|i| {
                            let id = format!("bench-{i:05}");
                            v1::TaskInfo {
                                agent_id: offer.agent_id.clone(),
                                resources: res.to_proto(),
                                ..common::shell_task(&id, "true")
                            }
                        })
                        .collect();
                    next += n;
                    let now = Instant::now();
                    first_launch.get_or_insert(now);
                    for t in &batch {
                        launched_at.insert(t.task_id.clone(), now);
                    }
                    client
                        .accept(v1::AcceptRequest {
                            header: Some(header.clone()),
                            offer_ids: vec![offer.id.clone()],
                            operations: vec![v1::Operation {
                                op: Some(v1::operation::Op::Launch(v1::Launch { tasks: batch })),
                            }],
                            filters: no_refusal,
                        })
                        .await?;
                }
            }
            Some(Event::Update(u)) => {
                let s = u.status.context("status")?;
                if !s.uuid.is_empty() {
                    client
                        .acknowledge(v1::AcknowledgeRequest {
                            header: Some(header.clone()),
                            agent_id: s.agent_id.clone(),
                            task_id: s.task_id.clone(),
                            uuid: s.uuid.clone(),
                        })
                        .await?;
                }
                let state = TaskState::try_from(s.state).unwrap_or(TaskState::Unspecified);
                if state == TaskState::TaskRunning
                    && let Some(t) = launched_at.get(&s.task_id)
                {
                    latencies.push(t.elapsed());
                }
                if state.is_terminal() {
                    if state != TaskState::TaskFinished {
                        bail!("task ended {}: {s:?}", state.name());
                    }
                    finished += 1;
                }
            }
            _ => {}
        }
    }
    let elapsed = first_launch.map(|t| t.elapsed()).unwrap_or_default();
    client
        .teardown(v1::TeardownRequest {
            header: Some(header.clone()),
        })
        .await?;
    cancel.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(30), agent).await;
    let _ = tokio::time::timeout(Duration::from_secs(30), server).await;
    latencies.sort();
    let pct = |p: f64| {
        let i = ((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len().max(1)) - 1;
        latencies.get(i).copied().unwrap_or_default()
    };
    Ok(Figures {
        tasks,
        elapsed,
        p50: pct(0.50),
        p99: pct(0.99),
        max: latencies.last().copied().unwrap_or_default(),
    })
}

fn print(f: &Figures) {
    println!(
        "launch benchmark: {} `true` tasks on one agent (cpus:8, 0.1 cpu/task, real executors{}): {:.1} tasks/s over {:.2} s; launch→RUNNING p50 {} ms, p99 {} ms, max {} ms",
        f.tasks,
        if common::cgroups_unavailable().is_none()
            && std::env::var_os("PROFFER_BENCH_POSIX").is_none()
        {
            " + cgroups"
        } else {
            ""
        },
        f.tasks as f64 / f.elapsed.as_secs_f64().max(1e-9),
        f.elapsed.as_secs_f64(),
        f.p50.as_millis(),
        f.p99.as_millis(),
        f.max.as_millis(),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn launch_throughput_small() -> Result<()> {
    let f = run_bench(40).await?;
    print(&f);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run with --ignored --nocapture"]
async fn launch_throughput() -> Result<()> {
    let tasks = std::env::var("PROFFER_BENCH_TASKS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500);
    let f = run_bench(tasks).await?;
    print(&f);
    Ok(())
}
