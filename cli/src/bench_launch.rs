//! `proffer bench launch`: how fast this machine runs short tasks through Proffer, next to how
//! fast it spawns the same command in a plain loop.
//!
//! In one run it measures, in order:
//! 1. the raw spawn rate of the command (spawn + wait in a loop, on one thread and on one thread
//!    per core), run directly when it needs no shell (as the agent does), else by `/bin/sh -c`;
//! 2. Proffer end to end: a master and `--agents` agents in this process (or `--master`), and the
//!    batch framework of `proffer run` running `--tasks` tasks: tasks/s from the first launch to
//!    the last terminal update, launch→STARTING, launch→RUNNING and launch→FINISHED percentiles;
//! 3. CPU seconds per task of the master's threads, the agents' threads and the executors and
//!    tasks (reaped children), read from `/proc/self`.
//!
//! The master and the agents run on runtimes of their own whose threads are named
//! `pf-master` / `pf-agent`, so their CPU time is told apart by thread (`/proc/self/task/*`).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use proffer_agent::AgentConfig;
use proffer_master::core::MasterConfig;
use proffer_master::registry::RedbRegistry;
use proffer_master::server::{ServerConfig, serve_with_registry};
use proffer_proto::Resources;
use proffer_sdk::batch::Percentiles;
use proffer_sdk::{BatchProgress, BatchSpec, BatchSummary};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::duration::{millis, parse_duration};

/// Thread name of the master's runtime (at most 15 bytes: the kernel's `comm`).
const MASTER_THREADS: &str = "pf-master";
/// Thread name of the agents' runtime.
const AGENT_THREADS: &str = "pf-agent";
/// Clock ticks per second of `/proc/*/stat` times (USER_HZ, 100 on Linux).
const USER_HZ: f64 = 100.0;

/// `proffer bench …`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    what: BenchCommand,
}

#[derive(Debug, clap::Subcommand)]
enum BenchCommand {
    /// Short tasks end to end: raw spawn rate, Proffer's tasks/s, latencies, CPU per task.
    Launch(LaunchArgs),
    /// Launches per second through the master core alone (simulated agents, no I/O).
    Core(crate::bench_core::CoreArgs),
}

/// Flags of `proffer bench launch`.
#[derive(Debug, clap::Args)]
pub struct LaunchArgs {
    /// Tasks to run through Proffer.
    #[arg(long, default_value_t = 1000)]
    tasks: usize,
    /// Agents to start in this process (ignored with --master).
    #[arg(long, default_value_t = 1)]
    agents: usize,
    /// The shell command of every task (and of the raw spawn loop).
    #[arg(long, default_value = "true")]
    cmd: String,
    /// Run against this master (HOST:PORT) and its agents instead of starting them here
    /// (then the master's and agents' CPU is not measured).
    #[arg(long)]
    master: Option<String>,
    /// With --master: the master's pid, to measure its CPU time.
    #[arg(long, requires = "master")]
    master_pid: Option<u32>,
    /// With --master: an agent's pid (repeat for several), to measure its CPU time and its
    /// executors' and tasks'.
    #[arg(long, requires = "master")]
    agent_pid: Vec<u32>,
    /// Submit the tasks at this steady rate (tasks/s) instead of all at once, to measure
    /// latencies at that load rather than at saturation (offers that come while no task waits
    /// are held when the next one is due within 50 ms).
    #[arg(long)]
    rate: Option<f64>,
    /// CPUs per task.
    #[arg(long, default_value_t = 0.1)]
    cpus: f64,
    /// Memory per task (MB).
    #[arg(long, default_value_t = 32.0)]
    mem: f64,
    /// Resources of each agent started here.
    #[arg(long, default_value = "cpus:8;mem:8192")]
    agent_resources: String,
    /// The master's allocation interval (resources that come back are offered sooner anyway,
    /// once --offer-coalesce has passed).
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    allocation_interval: Duration,
    /// How long the master gathers resources that come back before offering them
    /// (`0ms`: at the end of each batch of inputs it handles).
    #[arg(long, default_value = "3ms", value_parser = parse_duration)]
    offer_coalesce: Duration,
    /// How long each agent gathers inputs after a group commit before the next one (its
    /// journal's fsync); `0ms`: after every batch of ready inputs.
    #[arg(long, default_value = "2ms", value_parser = parse_duration)]
    commit_window: Duration,
    /// Run tasks without cgroups (posix isolation), even where cgroups are usable.
    #[arg(long)]
    no_cgroups: bool,
    /// Spawns in each raw loop (0 skips the raw measurement).
    #[arg(long, default_value_t = 1000)]
    raw_spawns: usize,
    /// Work directory of the agents and the master (default: /tmp/proffer-bench-<pid>,
    /// removed at the end). A directory given here is kept, but for the tasks' sandboxes and
    /// run directories (three inodes and more per task), which are removed at the end.
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Print the figures as JSON.
    #[arg(long)]
    json: bool,
}

/// The work directory of the agent `index` started here.
fn agent_dir(work_dir: &Path, index: usize) -> PathBuf {
    work_dir.join(format!("agent-{index}"))
}

/// Removes the work directory made for this run, or, in one given with `--work-dir`, what
/// the agents started here left of their tasks (sandboxes and run directories, which their
/// garbage collection removes only later): repeated runs would otherwise fill a small file
/// system's inodes.
fn remove_task_files(args: &LaunchArgs, work_dir: &Path) {
    let remove = |dir: &Path| {
        if let Err(e) = std::fs::remove_dir_all(dir)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot remove");
        }
    };
    if args.work_dir.is_none() {
        remove(work_dir);
        return;
    }
    if args.master.is_some() {
        return;
    }
    for index in 0..args.agents {
        let agent = agent_dir(work_dir, index);
        remove(&agent.join("sandboxes"));
        remove(&agent.join("meta").join("tasks"));
    }
}

/// Runs `proffer bench …`.
pub async fn run(args: BenchArgs, cancel: CancellationToken) -> anyhow::Result<bool> {
    match args.what {
        BenchCommand::Launch(a) => launch(a, cancel).await,
        BenchCommand::Core(a) => crate::bench_core::core(a),
    }
}

/// The raw spawn loop's figures.
#[derive(Debug, Clone, Copy)]
struct Raw {
    /// Spawns per second on one thread.
    one_thread: f64,
    /// Spawns per second on one thread per core.
    all_cores: f64,
    /// Threads of the second loop.
    threads: usize,
    /// Whether the command ran without a shell.
    direct: bool,
}

/// CPU time read from `/proc/self`, in seconds.
#[derive(Debug, Clone, Copy, Default)]
struct Cpu {
    master: f64,
    agents: f64,
    process: f64,
    children: f64,
}

impl Cpu {
    fn since(self, before: Cpu) -> Cpu {
        Cpu {
            master: self.master - before.master,
            agents: self.agents - before.agents,
            process: self.process - before.process,
            children: self.children - before.children,
        }
    }
}

/// When the first task was launched and the last one ended.
#[derive(Debug, Default)]
struct Span {
    first_launch: Option<Instant>,
    last_end: Option<Instant>,
}

async fn launch(args: LaunchArgs, cancel: CancellationToken) -> anyhow::Result<bool> {
    crate::daemons::check_task_count("--tasks", args.tasks)?;
    crate::daemons::check_task_scalar("--cpus", "cpus", args.cpus)?;
    crate::daemons::check_task_scalar("--mem", "mem", args.mem)?;
    crate::daemons::check_rate(args.rate)?;
    anyhow::ensure!(
        args.master.is_some() || args.agents > 0,
        "--agents must be at least 1"
    );
    let agent_resources = Resources::parse(&args.agent_resources)
        .with_context(|| format!("--agent-resources `{}`", args.agent_resources))?;
    let raw = if args.raw_spawns > 0 {
        let (cmd, n) = (args.cmd.clone(), args.raw_spawns);
        Some(
            tokio::task::spawn_blocking(move || raw_spawn_rate(&cmd, n))
                .await
                .context("raw spawn loop")??,
        )
    } else {
        None
    };
    if let Some(r) = &raw
        && !args.json
    {
        crate::output::text(&format!(
            "raw spawn loop of `{}` ({}): {:.0}/s on 1 thread, {:.0}/s on {} threads",
            args.cmd,
            if r.direct {
                "direct exec"
            } else {
                "/bin/sh -c"
            },
            r.one_thread,
            r.all_cores,
            r.threads
        ));
    }

    let work_dir = args.work_dir.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("proffer-bench-{}", std::process::id()))
    });
    std::fs::create_dir_all(&work_dir)
        .with_context(|| format!("creating the work dir {}", work_dir.display()))?;
    if args.master.is_none()
        && !args.json
        && let Some(fs) = crate::bench_fs::describe(&work_dir)
    {
        crate::output::text(&fs);
        crate::output::text(&favordynmods_line());
    }
    let stop = cancel.child_token();
    let cluster = match &args.master {
        Some(m) => Cluster::External(m.clone()),
        None => Cluster::start(&args, &agent_resources, &work_dir, &stop).await?,
    };
    let mut spec = BatchSpec::new("bench", args.tasks, args.cmd.clone());
    spec.cpus = args.cpus;
    spec.mem = args.mem;
    spec.rate = args.rate;
    let span = Arc::new(Mutex::new(Span::default()));
    let recorder = span.clone();
    let progress = move |p: &BatchProgress| record_span(&recorder, p);
    let before = read_cpu(&args);
    let result = proffer_sdk::run_batch(cluster.master(), spec, progress, cancel.clone()).await;
    let after = read_cpu(&args);
    cluster.stop(&stop).await;
    remove_task_files(&args, &work_dir);
    let summary = result.context("the benchmark batch")?;
    let cpu = after.since(before);
    let span = span.lock().map(|s| (s.first_launch, s.last_end)).ok();
    let elapsed = match span {
        Some((Some(a), Some(b))) => b.saturating_duration_since(a),
        _ => summary.elapsed,
    };
    let measured_here =
        args.master.is_none() || (args.master_pid.is_some() && !args.agent_pid.is_empty());
    let report = Report {
        args: &args,
        raw,
        summary: &summary,
        elapsed,
        cpu: measured_here.then_some(cpu),
    };
    if args.json {
        crate::output::text(&report.json().to_string());
    } else {
        crate::output::text(&report.text());
    }
    Ok(summary.all_finished())
}

fn record_span(span: &Mutex<Span>, p: &BatchProgress) {
    let Ok(mut s) = span.lock() else { return };
    match p {
        BatchProgress::Launched { .. } => {
            s.first_launch.get_or_insert_with(Instant::now);
        }
        BatchProgress::Update { state, .. } if is_terminal(state) => {
            s.last_end = Some(Instant::now());
        }
        _ => {}
    }
}

fn is_terminal(state: &str) -> bool {
    matches!(
        state,
        "TASK_FINISHED"
            | "TASK_FAILED"
            | "TASK_KILLED"
            | "TASK_LOST"
            | "TASK_ERROR"
            | "TASK_DROPPED"
            | "TASK_GONE"
    )
}

/// The figures of one run, for printing.
struct Report<'a> {
    args: &'a LaunchArgs,
    raw: Option<Raw>,
    summary: &'a BatchSummary,
    elapsed: Duration,
    cpu: Option<Cpu>,
}

impl Report<'_> {
    fn rate(&self) -> f64 {
        self.summary.finished as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    fn text(&self) -> String {
        let s = self.summary;
        let mut out = format!(
            "proffer: {}/{} `{}` tasks finished on {} in {:.2} s: {:.1} tasks/s",
            s.finished,
            s.tasks,
            self.args.cmd,
            match &self.args.master {
                Some(m) => format!("the cluster of {m}"),
                None => format!(
                    "{} agent(s) ({}{})",
                    self.args.agents,
                    self.args.agent_resources,
                    if self.args.no_cgroups {
                        ", no cgroups"
                    } else {
                        ""
                    }
                ),
            },
            self.elapsed.as_secs_f64(),
            self.rate()
        );
        if let Some(r) = self.args.rate {
            out.push_str(&format!(" (submitted at {r} tasks/s)"));
        }
        if let Some(r) = &self.raw {
            out.push_str(&format!(
                " ({:.1} % of the raw rate on all cores)",
                100.0 * self.rate() / r.all_cores.max(1e-9)
            ));
        }
        out.push_str(&format!(
            "\n  offers: {} received, {} declined ({:.1} tasks per offer)",
            s.offers_received,
            s.offers_declined,
            s.launched as f64 / s.offers_received.max(1) as f64
        ));
        for (label, p) in [
            ("arrival→launch (waiting for offers)", &s.arrival_to_launch),
            ("launch→STARTING", &s.launch_to_starting),
            ("launch→RUNNING", &s.launch_to_running),
            ("launch→FINISHED", &s.launch_to_end),
        ] {
            if let Some(p) = p {
                out.push_str(&format!(
                    "\n  {label}: p50 {}, p99 {}, max {}",
                    proffer_sdk::batch::format_ms(p.p50),
                    proffer_sdk::batch::format_ms(p.p99),
                    proffer_sdk::batch::format_ms(p.max)
                ));
            }
        }
        match &self.cpu {
            Some(c) => {
                let per = |v: f64| 1000.0 * v / s.finished.max(1) as f64;
                out.push_str(&format!(
                    "\n  CPU per task: master {:.2} ms, agents {:.2} ms, executors+tasks {:.2} ms, \
                     framework and the rest of this process {:.2} ms",
                    per(c.master),
                    per(c.agents),
                    per(c.children),
                    per(c.process - c.master - c.agents)
                ));
            }
            None => out.push_str(
                "\n  CPU per task: not measured (external master without --master-pid and --agent-pid)",
            ),
        }
        out
    }

    fn json(&self) -> serde_json::Value {
        let s = self.summary;
        let pct = |p: &Option<Percentiles>| {
            p.map(|p| {
                json!({
                    "p50_ms": p.p50.as_secs_f64() * 1000.0,
                    "p99_ms": p.p99.as_secs_f64() * 1000.0,
                    "max_ms": p.max.as_secs_f64() * 1000.0,
                })
            })
        };
        let per = |v: f64| 1000.0 * v / s.finished.max(1) as f64;
        json!({
            "cmd": self.args.cmd,
            "tasks": s.tasks,
            "finished": s.finished,
            "agents": self.args.master.is_none().then_some(self.args.agents),
            "cgroups": !self.args.no_cgroups,
            "elapsed_secs": self.elapsed.as_secs_f64(),
            "tasks_per_sec": self.rate(),
            "submitted_per_sec": self.args.rate,
            "raw_per_sec_one_thread": self.raw.map(|r| r.one_thread),
            "raw_per_sec_all_cores": self.raw.map(|r| r.all_cores),
            "offers_received": s.offers_received,
            "offers_declined": s.offers_declined,
            "arrival_to_launch": pct(&s.arrival_to_launch),
            "launch_to_starting": pct(&s.launch_to_starting),
            "launch_to_running": pct(&s.launch_to_running),
            "launch_to_finished": pct(&s.launch_to_end),
            "cpu_ms_per_task": self.cpu.map(|c| json!({
                "master": per(c.master),
                "agents": per(c.agents),
                "executors_and_tasks": per(c.children),
                "rest_of_process": per(c.process - c.master - c.agents),
            })),
        })
    }
}

/// The master and agents of a run.
enum Cluster {
    /// Started here, on runtimes of their own.
    Local {
        addr: String,
        master_rt: tokio::runtime::Runtime,
        agent_rt: tokio::runtime::Runtime,
        handles: Vec<tokio::task::JoinHandle<()>>,
    },
    /// Somebody else's.
    External(String),
}

impl Cluster {
    async fn start(
        args: &LaunchArgs,
        resources: &Resources,
        work_dir: &Path,
        stop: &CancellationToken,
    ) -> anyhow::Result<Cluster> {
        let runtime = |name: &str| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name(name)
                // Blocking threads keep their CPU counts until the run is measured.
                .thread_keep_alive(Duration::from_secs(3600))
                .enable_all()
                .build()
                .with_context(|| format!("starting the {name} runtime"))
        };
        let master_rt = runtime(MASTER_THREADS)?;
        let agent_rt = runtime(AGENT_THREADS)?;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").context("binding the master")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?.to_string();
        let config = ServerConfig::new(MasterConfig {
            allocation_interval_ms: millis(args.allocation_interval),
            offer_coalesce_ms: millis(args.offer_coalesce),
            ..MasterConfig::default()
        });
        let registry = RedbRegistry::open(&work_dir.join("master"))
            .with_context(|| format!("opening the registry in {}", work_dir.display()))?;
        let mut handles = Vec::new();
        let token = stop.clone();
        handles.push(master_rt.spawn(async move {
            let listener = match tokio::net::TcpListener::from_std(listener) {
                Ok(l) => l,
                Err(e) => {
                    tracing::error!(error = %e, "master listener");
                    return;
                }
            };
            if let Err(e) =
                serve_with_registry(listener, config, Some(Box::new(registry)), token).await
            {
                tracing::error!(error = %e, "master failed");
            }
        }));
        for index in 0..args.agents {
            let dir = agent_dir(work_dir, index);
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            let mut cfg = AgentConfig::new(addr.clone(), dir);
            cfg.resources = Some(resources.clone());
            cfg.hostname = "127.0.0.1".into();
            cfg.reconnect_initial = Duration::from_millis(50);
            cfg.gc_max_disk_fraction = 1.0;
            cfg.commit_window = args.commit_window;
            if args.no_cgroups {
                cfg.isolation = proffer_agent::IsolationMode::Posix;
            }
            let token = stop.clone();
            handles.push(agent_rt.spawn(async move {
                if let Err(e) = proffer_agent::run(cfg, token).await {
                    tracing::error!(index, error = %e, "agent failed");
                }
            }));
        }
        Ok(Cluster::Local {
            addr,
            master_rt,
            agent_rt,
            handles,
        })
    }

    fn master(&self) -> &str {
        match self {
            Cluster::Local { addr, .. } => addr,
            Cluster::External(m) => m,
        }
    }

    async fn stop(self, stop: &CancellationToken) {
        let Cluster::Local {
            master_rt,
            agent_rt,
            handles,
            ..
        } = self
        else {
            return;
        };
        stop.cancel();
        let wait = async {
            for h in handles {
                let _ = h.await;
            }
        };
        if tokio::time::timeout(Duration::from_secs(15), wait)
            .await
            .is_err()
        {
            tracing::warn!("the master or an agent took over 15 s to stop");
        }
        master_rt.shutdown_background();
        agent_rt.shutdown_background();
    }
}

/// Whether cgroup moves wait for RCU grace periods here (the supervisor moves a thread six
/// times per task): figures taken with and without `cgroup_favordynmods` differ.
fn favordynmods_line() -> String {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    if proffer_agent::cgroups::favors_dynmods(&proffer_agent::cgroups::parse_mounts(&mounts)) {
        "cgroup favordynmods: on".to_string()
    } else {
        "cgroup favordynmods: off (boot with cgroup_favordynmods=true for faster cgroup moves)"
            .to_string()
    }
}

/// Spawns `cmd` `n` times in a loop on one thread, then `n` times on one thread per core.
fn raw_spawn_rate(cmd: &str, n: usize) -> anyhow::Result<Raw> {
    let direct = proffer_agent::process::direct_argv(cmd);
    let argv = match &direct {
        Some(a) => a.clone(),
        None => vec!["/bin/sh".into(), "-c".into(), cmd.to_string()],
    };
    let one = |count: usize| -> anyhow::Result<()> {
        for _ in 0..count {
            std::process::Command::new(&argv[0])
                .args(&argv[1..])
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status()
                .with_context(|| format!("spawning `{cmd}`"))?;
        }
        Ok(())
    };
    let t = Instant::now();
    one(n)?;
    let one_thread = n as f64 / t.elapsed().as_secs_f64().max(1e-9);
    let threads = std::thread::available_parallelism().map_or(1, |p| p.get());
    let t = Instant::now();
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|i| {
                let share = n / threads + usize::from(i < n % threads);
                s.spawn(move || one(share))
            })
            .collect();
        workers.into_iter().try_for_each(|w| {
            w.join()
                .map_err(|_| anyhow::anyhow!("spawn loop panicked"))?
        })
    })?;
    let all_cores = n as f64 / t.elapsed().as_secs_f64().max(1e-9);
    Ok(Raw {
        one_thread,
        all_cores,
        threads,
        direct: direct.is_some(),
    })
}

/// CPU time of the master, the agents (their own), their executors and tasks (reaped or
/// live children), and this whole process: by thread name when they run here, by pid
/// (`--master-pid`, `--agent-pid`) when they do not.
fn read_cpu(args: &LaunchArgs) -> Cpu {
    let me = std::process::id();
    let mut cpu = Cpu::default();
    let secs =
        |t: [u64; 4], from: usize, to: usize| t[from..to].iter().sum::<u64>() as f64 / USER_HZ;
    if let Some(t) = pid_times(me) {
        cpu.process = secs(t, 0, 2);
    }
    if args.master.is_some() {
        if let Some(t) = args.master_pid.and_then(pid_times) {
            cpu.master = secs(t, 0, 4);
        }
        for &pid in &args.agent_pid {
            if let Some(t) = pid_times(pid) {
                cpu.agents += secs(t, 0, 2);
                cpu.children += secs(t, 2, 4);
            }
            cpu.children += live_children_secs(pid);
        }
        // Neither runs in this process: all of it is the framework's.
        cpu.process += cpu.master + cpu.agents;
        return cpu;
    }
    if let Some(t) = pid_times(me) {
        cpu.children = secs(t, 2, 4);
    }
    cpu.children += live_children_secs(me);
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return cpu;
    };
    for task in tasks.flatten() {
        let dir = task.path();
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        let Some(t) = std::fs::read_to_string(dir.join("stat"))
            .ok()
            .and_then(|s| stat_times(&s))
        else {
            continue;
        };
        if comm.starts_with(MASTER_THREADS) {
            cpu.master += secs(t, 0, 2);
        } else if comm.starts_with(AGENT_THREADS) {
            cpu.agents += secs(t, 0, 2);
        }
    }
    cpu
}

/// utime, stime, cutime, cstime of process `pid`.
fn pid_times(pid: u32) -> Option<[u64; 4]> {
    stat_times(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// CPU seconds of the live children of `parent` (an agent's supervising executors) and of
/// the children they reaped.
fn live_children_secs(parent: u32) -> f64 {
    let parent = parent.to_string();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    let mut ticks = 0u64;
    for p in procs.flatten() {
        let Ok(stat) = std::fs::read_to_string(p.path().join("stat")) else {
            continue;
        };
        let ppid = stat
            .rfind(')')
            .and_then(|i| stat[i + 1..].split_whitespace().nth(1));
        if ppid == Some(parent.as_str())
            && let Some(t) = stat_times(&stat)
        {
            ticks += t.iter().sum::<u64>();
        }
    }
    ticks as f64 / USER_HZ
}

/// utime, stime, cutime, cstime (fields 14–17) of a `/proc/*/stat` line.
fn stat_times(stat: &str) -> Option<[u64; 4]> {
    // The command name (field 2) may hold spaces and parentheses: fields start after the last `)`.
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state): field N is f[N - 3].
    let get = |n: usize| f.get(n - 3).and_then(|v| v.parse::<u64>().ok());
    Some([get(14)?, get(15)?, get(16)?, get(17)?])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_read_after_the_command_name() {
        let line = "42 (pf agent) x) S 1 42 42 0 -1 4194560 100 0 0 0 7 3 11 13 20 0 9 0 5 1 1";
        assert_eq!(stat_times(line), Some([7, 3, 11, 13]));
        assert_eq!(stat_times("42 (short) S 1"), None);
        assert_eq!(stat_times("garbage"), None);
    }

    #[test]
    fn raw_loop_counts_spawns_of_a_plain_command() -> anyhow::Result<()> {
        let r = raw_spawn_rate("true", 4)?;
        assert!(r.direct);
        assert!(r.one_thread > 0.0 && r.all_cores > 0.0 && r.threads >= 1);
        let r = raw_spawn_rate("true && true", 2)?;
        assert!(!r.direct);
        Ok(())
    }
}
