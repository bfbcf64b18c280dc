//! `proffer local`: a master (or, with `--masters N`, an HA group: `local_ha`) and N agents,
//! plus a demo batch framework.

use std::io::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use proffer_agent::AgentConfig;
use proffer_master::core::MasterConfig;
use proffer_master::registry::RedbRegistry;
use proffer_master::server::{ServerConfig, serve_with_registry};
use proffer_proto::Resources;
use proffer_proto::resources::format_milli;
use proffer_sdk::BatchSpec;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::duration::{millis, parse_duration};

/// Smallest memory share an agent gets, in MB.
const MIN_MEM_MB: i64 = 128;
/// How long shutdown may take before the command stops waiting.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(15);

/// Flags of `proffer local`.
#[derive(Debug, clap::Args)]
pub struct LocalArgs {
    /// Number of agents to start.
    #[arg(
        long,
        env = "PROFFER_LOCAL_AGENTS",
        default_value_t = 2,
        allow_negative_numbers = true
    )]
    agents: usize,
    /// Port of the master (gRPC and HTTP) on 127.0.0.1; 0 picks a free one.
    #[arg(long, env = "PROFFER_LOCAL_PORT", default_value_t = 5050)]
    port: u16,
    /// Work directory (default: /tmp/proffer-local-<pid>, removed on exit unless --keep);
    /// each agent gets a subdirectory. A directory given here is kept.
    #[arg(long, env = "PROFFER_LOCAL_WORK_DIR")]
    work_dir: Option<PathBuf>,
    /// Keep the default work directory (sandboxes, logs, registry) on exit.
    #[arg(long)]
    keep: bool,
    /// Tasks the demo batch framework runs.
    #[arg(long, default_value_t = 30, allow_negative_numbers = true)]
    demo_tasks: usize,
    /// Shell command of each demo task.
    #[arg(long, default_value = "sleep 0.2")]
    demo_cmd: String,
    /// CPUs per demo task.
    #[arg(long, default_value_t = 0.1, allow_negative_numbers = true)]
    demo_cpus: f64,
    /// Memory per demo task (MB).
    #[arg(long, default_value_t = 32.0, allow_negative_numbers = true)]
    demo_mem: f64,
    /// Do not run the demo; just serve.
    #[arg(long)]
    no_demo: bool,
    /// Exit after the demo (status 0 only if every task finished) instead of serving on.
    #[arg(long, conflicts_with = "no_demo")]
    exit_after_demo: bool,
    /// Instead of the demo batch, install Kubernetes on the agents (1 control plane, 1 node;
    /// the real etcd, stand-in kube-* programs), as `proffer k8s install` does; with
    /// --exit-after-demo, exit once its deploy plan is COMPLETE (0) or has failed.
    #[arg(long)]
    k8s: bool,
    /// Batch allocation interval of the master.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    allocation_interval: Duration,
    /// Masters to run. Above 1, a 3-member etcd (the distribution's `etcd`, on loopback ports
    /// in the work dir) holds the registry and elects the leader, and each master is a
    /// `proffer master` process of its own: `kill -9` the leader to watch a failover.
    #[arg(long, default_value_t = 1)]
    masters: usize,
    /// Everything on: a cluster CA in the work dir, TLS on the master and the agents,
    /// agents with client certificates (mutual TLS), and an `admin` credential required for
    /// every call; prints how to point other `proffer` commands at it.
    #[arg(long)]
    secure: bool,
    /// Ports the agents offer to tasks, split between them, e.g. `31000-31999`. Default: the
    /// first of 31000-31999, 32000-32767, 10000-10999, 11000-11999 that no other
    /// `proffer local` on this host holds (a lock file in $TMPDIR/proffer-local-ports).
    #[arg(long, env = "PROFFER_LOCAL_AGENT_PORTS", value_parser = crate::local_ports::parse_block)]
    agent_ports: Option<(u64, u64)>,
}

/// Agent `index`'s equal share (of `agents`) of the machine's `total` resources: at least one
/// cpu and 128 MB, an equal slice of the disk and a disjoint slice of the first port range.
pub fn agent_share(total: &Resources, agents: usize, index: usize) -> anyhow::Result<Resources> {
    anyhow::ensure!(agents > 0 && index < agents, "agent {index} of {agents}");
    let n = i64::try_from(agents).context("too many agents")?;
    let cpus = (total.cpus_milli() / n).max(1000);
    let mem = (total.mem_milli() / n).max(MIN_MEM_MB * 1000);
    let mut text = format!("cpus:{};mem:{}", format_milli(cpus), format_milli(mem));
    let disk = total.scalar_milli("disk") / n;
    if disk > 0 {
        text.push_str(&format!(";disk:{}", format_milli(disk)));
    }
    if let Some(&(begin, end)) = total.ranges("ports").ranges().first() {
        let span = (end - begin + 1) / agents as u64;
        if span > 0 {
            let first = begin + index as u64 * span;
            text.push_str(&format!(";ports:[{}-{}]", first, first + span - 1));
        }
    }
    Resources::parse(&text).with_context(|| format!("agent share `{text}`"))
}

impl LocalArgs {
    /// Checks the numbers before anything starts.
    fn check(&self) -> anyhow::Result<()> {
        crate::daemons::check_task_count("--agents", self.agents)?;
        anyhow::ensure!(
            !(self.secure && self.masters > 1),
            "--secure runs one master (TLS for an HA group: `proffer master --tls-*` per master)"
        );
        if !self.no_demo {
            crate::daemons::check_task_count("--demo-tasks", self.demo_tasks)?;
            crate::daemons::check_task_scalar("--demo-cpus", "cpus", self.demo_cpus)?;
            crate::daemons::check_task_scalar("--demo-mem", "mem", self.demo_mem)?;
        }
        Ok(())
    }
}

/// Runs the local cluster. Returns whether the run counts as a success: with
/// `--exit-after-demo`, every demo task finished; otherwise a clean shutdown.
pub async fn run(args: LocalArgs, seed: u64, cancel: CancellationToken) -> anyhow::Result<bool> {
    args.check()?;
    let work_dir = args.work_dir.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("proffer-local-{}", std::process::id()))
    });
    std::fs::create_dir_all(&work_dir)
        .with_context(|| format!("cannot create work dir {}", work_dir.display()))?;

    let secure = match args.secure {
        true => Some(crate::local_secure::setup(&work_dir)?),
        false => None,
    };
    if let Some(s) = &secure {
        s.install_admin();
    }
    let scheme = if secure.is_some() { "https" } else { "http" };
    let (master, masters) = start_masters(&args, &work_dir, seed, secure.as_ref(), &cancel).await?;

    let ports = crate::local_ports::claim(args.agent_ports)?;
    let agents = start_agents(&args, &work_dir, &master, &ports, secure.as_ref(), &cancel)?;
    match &masters {
        Masters::One { addr, .. } => crate::output::text(&format!(
            "master listening on {addr} (gRPC); web UI at {scheme}://{addr}/, state at {scheme}://{addr}/state"
        )),
        Masters::Group(_) => crate::output::text(&format!(
            "masters {master}: `curl http://HOST:PORT/health` says which leads; \
             `kill -9` its pid to watch a standby take over"
        )),
    }
    crate::output::text(&format!("work dir {}", work_dir.display()));
    if let Some(s) = &secure {
        crate::output::text(&format!(
            "secure: TLS everywhere, agents with client certificates, principal `admin` required; \
             `source {}` to use it from another shell",
            s.env_file.display()
        ));
    }

    let mut success = true;
    if args.k8s {
        success =
            match crate::k8s_local::run(&master, &work_dir, args.exit_after_demo, cancel.clone())
                .await
            {
                Ok(ok) => ok,
                Err(err) => {
                    eprintln!("error: {err:#}");
                    false
                }
            };
    } else if !args.no_demo {
        let mut spec = BatchSpec::new("demo", args.demo_tasks, args.demo_cmd.clone());
        spec.cpus = args.demo_cpus;
        spec.mem = args.demo_mem;
        success = match crate::batch::run(&master, spec, cancel.clone()).await {
            Ok(summary) => summary.all_finished(),
            Err(err) => {
                eprintln!("demo failed: {err:#}");
                false
            }
        };
    }
    if args.exit_after_demo {
        cancel.cancel();
    } else if !cancel.is_cancelled() {
        crate::output::text(&format!(
            "serving on {master}; try `proffer state --master {master}`; Ctrl-C stops"
        ));
        cancel.cancelled().await;
        success = true;
    }
    match masters {
        Masters::One { server, .. } => shutdown(Some(server), agents).await,
        Masters::Group(group) => {
            shutdown(None, agents).await;
            group.stop().await;
        }
    }
    if args.work_dir.is_none() && !args.keep {
        if let Err(e) = std::fs::remove_dir_all(&work_dir) {
            tracing::warn!(dir = %work_dir.display(), error = %e, "cannot remove the work dir");
        }
    } else {
        crate::output::text(&format!("kept the work dir {}", work_dir.display()));
    }
    Ok(success)
}

/// Starts the agents, each with an equal share of this machine, serving its HTTP API (sandbox
/// files, `/state`, `/metrics`) at the address the master shows for it.
fn start_agents(
    args: &LocalArgs,
    work_dir: &std::path::Path,
    master: &str,
    ports: &crate::local_ports::PortBlock,
    secure: Option<&crate::local_secure::Secure>,
    cancel: &CancellationToken,
) -> anyhow::Result<Vec<tokio::task::JoinHandle<Result<(), proffer_agent::AgentError>>>> {
    let detected = proffer_agent::detect_resources(work_dir).context("detecting resources")?;
    let total = detected
        .filtered(|key| key.name != "ports")
        .plus(&Resources::parse(&ports.resources_text())?);
    let mut agents = Vec::with_capacity(args.agents);
    for index in 0..args.agents {
        let dir = work_dir.join(format!("agent-{index}"));
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let share = agent_share(&total, args.agents, index)?;
        let port = if args.port == 0 {
            crate::local_ha::free_port()?
        } else {
            args.port
                .checked_add(1 + u16::try_from(index).unwrap_or(u16::MAX))
                .context("agent port above 65535: choose a lower --port")?
        };
        let mut agent = AgentConfig::new(master.to_owned(), dir);
        if let Some(s) = secure {
            agent.master_tls = Some(s.agent_client.clone());
            agent.http_security = s.agent_http.clone();
        }
        let scheme = if secure.is_some() { "https" } else { "http" };
        crate::output::text(&format!(
            "agent {index}: {scheme}://127.0.0.1:{port} (files, /state)  {}",
            crate::table::round_resources(&share.to_string())
        ));
        agent.resources = Some(share);
        // The master shows agents by HOST:PORT: make that where this one answers.
        agent.hostname = "127.0.0.1".to_owned();
        agent.port = u32::from(port);
        agent.http_listen = Some(std::net::SocketAddr::from(([127, 0, 0, 1], port)));
        agent.attributes = vec![("local_agent".to_owned(), index.to_string())];
        let stop = cancel.clone();
        agents.push(tokio::spawn(async move {
            let ran = proffer_agent::run(agent, stop).await;
            if let Err(e) = &ran {
                // Said at once (the rest of the cluster goes on), not only at shutdown; not
                // `eprintln!`, which panics when stderr cannot be written (a full disk).
                let _ = writeln!(std::io::stderr(), "error: agent {index} stopped: {e}");
            }
            ran
        }));
    }
    Ok(agents)
}

/// The master of `proffer local`, or its HA group.
enum Masters {
    /// One master in this process.
    One {
        addr: String,
        server: tokio::task::JoinHandle<Result<(), proffer_master::server::ServerError>>,
    },
    /// `--masters N`: etcd and N master processes.
    Group(crate::local_ha::Masters),
}

/// Starts the master(s); returns what clients take as `--master` and the handle.
async fn start_masters(
    args: &LocalArgs,
    work_dir: &std::path::Path,
    seed: u64,
    secure: Option<&crate::local_secure::Secure>,
    cancel: &CancellationToken,
) -> anyhow::Result<(String, Masters)> {
    if args.masters > 1 {
        let interval = format!("{}ms", millis(args.allocation_interval));
        let group =
            crate::local_ha::Masters::start(args.masters, args.port, work_dir, &interval, seed)
                .await?;
        return Ok((group.list.clone(), Masters::Group(group)));
    }
    let listener = TcpListener::bind(("127.0.0.1", args.port))
        .await
        .with_context(|| format!("cannot listen on 127.0.0.1:{}", args.port))?;
    let addr = format!("127.0.0.1:{}", listener.local_addr()?.port());
    let mut config = ServerConfig::new(MasterConfig {
        allocation_interval_ms: millis(args.allocation_interval),
        ..MasterConfig::default()
    });
    config.seed = seed;
    if let Some(s) = secure {
        config.tls = Some(s.master_tls.clone());
        config.security = s.security.clone();
    }
    // The master's registry lives in the work dir (a temporary one unless --work-dir is
    // given, so each `proffer local` starts afresh).
    let registry = RedbRegistry::open(&work_dir.join("master"))
        .with_context(|| format!("cannot open the registry in {}", work_dir.display()))?;
    let server = tokio::spawn(serve_with_registry(
        listener,
        config,
        Some(Box::new(registry)),
        cancel.clone(),
    ));
    Ok((addr.clone(), Masters::One { addr, server }))
}

/// Waits (bounded) for the server and the agents to stop, logging their errors.
async fn shutdown(
    server: Option<tokio::task::JoinHandle<Result<(), proffer_master::server::ServerError>>>,
    agents: Vec<tokio::task::JoinHandle<Result<(), proffer_agent::AgentError>>>,
) {
    let wait = async {
        for (index, agent) in agents.into_iter().enumerate() {
            match agent.await {
                Ok(Ok(())) => {}
                Ok(Err(err)) => tracing::error!(index, %err, "agent failed"),
                Err(err) => tracing::error!(index, %err, "agent task panicked"),
            }
        }
        let Some(server) = server else { return };
        match server.await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => tracing::error!(%err, "master failed"),
            Err(err) => tracing::error!(%err, "master task panicked"),
        }
    };
    if tokio::time::timeout(SHUTDOWN_WAIT, wait).await.is_err() {
        tracing::warn!("shutdown took longer than {SHUTDOWN_WAIT:?}; exiting anyway");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_split_the_machine() -> anyhow::Result<()> {
        let total = Resources::parse("cpus:4;mem:8192;disk:1000;ports:[31000-32000]")?;
        let a = agent_share(&total, 2, 0)?;
        let b = agent_share(&total, 2, 1)?;
        assert_eq!(
            a.to_string(),
            "cpus:2;disk:500;mem:4096;ports:[31000-31499]"
        );
        assert_eq!(
            b.to_string(),
            "cpus:2;disk:500;mem:4096;ports:[31500-31999]"
        );
        Ok(())
    }

    #[derive(Debug, clap::Parser)]
    struct LocalCmd {
        #[command(flatten)]
        args: LocalArgs,
    }

    #[test]
    fn demo_numbers_are_checked_before_starting() -> anyhow::Result<()> {
        use clap::Parser;
        let check = |extra: &[&str]| -> anyhow::Result<()> {
            LocalCmd::try_parse_from(["local"].iter().chain(extra))?
                .args
                .check()
        };
        check(&[])?;
        check(&["--no-demo", "--demo-cpus", "-1"])?;
        let table: &[(&[&str], &str)] = &[
            (
                &["--demo-cpus", "-1"],
                "--demo-cpus must be positive, got -1",
            ),
            (
                &["--demo-mem", "NaN"],
                "--demo-mem must be positive, got NaN",
            ),
            (&["--demo-tasks", "0"], "--demo-tasks must be at least 1"),
            (&["--agents", "0"], "--agents must be at least 1"),
        ];
        for (args, want) in table {
            let err = check(args)
                .err()
                .map(|e| format!("{e:#}"))
                .unwrap_or_default();
            assert!(err.contains(want), "{args:?}: `{err}` lacks `{want}`");
        }
        Ok(())
    }

    #[test]
    fn shares_have_a_floor() -> anyhow::Result<()> {
        let total = Resources::parse("cpus:2;mem:300")?;
        let share = agent_share(&total, 3, 2)?;
        assert_eq!(share.cpus_milli(), 1000);
        assert_eq!(share.mem_milli(), 128_000);
        assert!(share.ranges("ports").is_empty());
        assert!(agent_share(&total, 3, 3).is_err());
        Ok(())
    }
}
