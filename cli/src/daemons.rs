//! `proffer master`, `proffer agent` and `proffer run`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use proffer_agent::{AgentConfig, IsolationMode};
use proffer_master::core::MasterConfig;
use proffer_master::server::{ServerConfig, serve};
use proffer_proto::Resources;
use proffer_sdk::BatchSpec;
use tokio_util::sync::CancellationToken;

use crate::duration::{millis, parse_duration};

/// Flags of `proffer master`.
#[derive(Debug, clap::Args)]
pub struct MasterArgs {
    /// Address to listen on (gRPC and HTTP).
    #[arg(long, env = "PROFFER_LISTEN", default_value = "0.0.0.0:5050")]
    listen: SocketAddr,
    /// Batch allocation interval.
    #[arg(long, env = "PROFFER_ALLOCATION_INTERVAL", default_value = "1s", value_parser = parse_duration)]
    allocation_interval: Duration,
    /// Interval between pings to each agent.
    #[arg(long, env = "PROFFER_AGENT_PING_INTERVAL", default_value = "15s", value_parser = parse_duration)]
    agent_ping_interval: Duration,
    /// Unanswered pings after which an agent is removed.
    #[arg(long, env = "PROFFER_AGENT_MAX_MISSED_PINGS", default_value_t = 5)]
    agent_max_missed_pings: u32,
    /// Rescind offers not answered within this time (default: never).
    #[arg(long, env = "PROFFER_OFFER_TIMEOUT", value_parser = parse_duration)]
    offer_timeout: Option<Duration>,
    /// Seed for ids and random choices (default: random).
    #[arg(long, env = "PROFFER_SEED")]
    seed: Option<u64>,
}

impl MasterArgs {
    /// The server configuration these flags describe.
    pub fn server_config(&self) -> anyhow::Result<ServerConfig> {
        anyhow::ensure!(
            !self.allocation_interval.is_zero(),
            "--allocation-interval must be > 0"
        );
        anyhow::ensure!(
            !self.agent_ping_interval.is_zero(),
            "--agent-ping-interval must be > 0"
        );
        anyhow::ensure!(
            self.agent_max_missed_pings > 0,
            "--agent-max-missed-pings must be > 0"
        );
        let master = MasterConfig {
            allocation_interval_ms: millis(self.allocation_interval),
            agent_ping_interval_ms: millis(self.agent_ping_interval),
            agent_max_missed_pings: self.agent_max_missed_pings,
            offer_timeout_ms: self.offer_timeout.map(millis),
            ..MasterConfig::default()
        };
        let mut config = ServerConfig::new(master);
        config.seed = self.seed.unwrap_or_else(random_seed);
        Ok(config)
    }
}

/// A seed from the clock and the process id.
pub fn random_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    nanos ^ (u64::from(std::process::id()) << 32)
}

/// `proffer master`.
pub async fn master(args: MasterArgs, cancel: CancellationToken) -> anyhow::Result<()> {
    let config = args.server_config()?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    serve(listener, config, cancel)
        .await
        .context("master server")
}

/// Flags of `proffer agent`.
#[derive(Debug, clap::Args)]
pub struct AgentArgs {
    /// The master, HOST:PORT.
    #[arg(long, env = "PROFFER_MASTER")]
    master: String,
    /// Directory for sandboxes and the agent's checkpoint.
    #[arg(long, env = "PROFFER_WORK_DIR")]
    work_dir: PathBuf,
    /// Resources to offer, e.g. `cpus:2;mem:1024;ports:[31000-32000]` (default: detected).
    #[arg(long, env = "PROFFER_RESOURCES")]
    resources: Option<String>,
    /// Attributes, e.g. `rack:a;zone:1`.
    #[arg(long, env = "PROFFER_ATTRIBUTES")]
    attributes: Option<String>,
    /// Hostname to advertise (default: this machine's).
    #[arg(long, env = "PROFFER_HOSTNAME")]
    hostname: Option<String>,
    /// Port to advertise.
    #[arg(long, env = "PROFFER_PORT", default_value_t = 5051)]
    port: u32,
    /// Serve the agent's HTTP endpoint (sandbox files, `/state`, `/metrics`) on this address,
    /// e.g. `0.0.0.0:5051` (default: no HTTP endpoint).
    #[arg(long = "http", env = "PROFFER_AGENT_HTTP")]
    http: Option<SocketAddr>,
    /// Task isolation: `auto` (cgroups where the host allows, plain processes otherwise),
    /// `posix` (process groups, no limits) or `cgroups` (required; refuse to start without).
    #[arg(long, env = "PROFFER_ISOLATION", value_enum, default_value_t = Isolation::Auto)]
    isolation: Isolation,
    /// Hard cpu limits: a CFS quota of cpus × period per task (Mesos `--cgroups_enable_cfs`).
    #[arg(long, env = "PROFFER_CGROUPS_ENABLE_CFS")]
    cgroups_enable_cfs: bool,
    /// Run every task in its own PID and mount namespaces (needs util-linux `unshare`; the
    /// agent refuses to start when it is unavailable).
    #[arg(long, env = "PROFFER_PID_NAMESPACE")]
    pid_namespace: bool,
    /// On shutdown leave the tasks running under their executors; the next agent started on
    /// the same work directory re-attaches to them (default: tasks are killed).
    #[arg(long, env = "PROFFER_KEEP_TASKS_ON_SHUTDOWN")]
    keep_tasks_on_shutdown: bool,
    /// Remove sandboxes of ended tasks early, oldest first, while the work directory's file
    /// system is fuller than this fraction (Mesos `--gc_disk_headroom` 0.1 = 0.9 here; 1 = never).
    #[arg(long, env = "PROFFER_GC_MAX_DISK_FRACTION", default_value_t = 0.9)]
    gc_max_disk_fraction: f64,
}

/// `--isolation` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Isolation {
    /// cgroups where the host allows them, plain processes otherwise.
    Auto,
    /// Plain processes (process groups), no resource limits.
    Posix,
    /// cgroups required.
    Cgroups,
}

impl From<Isolation> for IsolationMode {
    fn from(i: Isolation) -> Self {
        match i {
            Isolation::Auto => IsolationMode::Auto,
            Isolation::Posix => IsolationMode::Posix,
            Isolation::Cgroups => IsolationMode::Cgroups,
        }
    }
}

impl AgentArgs {
    /// The agent configuration these flags describe.
    pub fn agent_config(&self) -> anyhow::Result<AgentConfig> {
        let mut config = AgentConfig::new(self.master.clone(), self.work_dir.clone());
        if let Some(text) = &self.resources {
            let resources =
                Resources::parse(text).with_context(|| format!("invalid --resources `{text}`"))?;
            config.resources = Some(resources);
        }
        if let Some(text) = &self.attributes {
            config.attributes = proffer_agent::parse_attributes(text)
                .with_context(|| format!("invalid --attributes `{text}`"))?;
        }
        if let Some(hostname) = &self.hostname {
            config.hostname = hostname.clone();
        }
        config.port = self.port;
        config.http_listen = self.http;
        config.isolation = self.isolation.into();
        config.cgroups_enable_cfs = self.cgroups_enable_cfs;
        config.pid_namespace = self.pid_namespace;
        config.kill_tasks_on_shutdown = !self.keep_tasks_on_shutdown;
        let f = self.gc_max_disk_fraction;
        anyhow::ensure!(
            f.is_finite() && f > 0.0 && f <= 1.0,
            "--gc-max-disk-fraction must be within (0, 1], got {f}"
        );
        config.gc_max_disk_fraction = f;
        Ok(config)
    }
}

/// `proffer agent`.
pub async fn agent(args: AgentArgs, cancel: CancellationToken) -> anyhow::Result<()> {
    let config = args.agent_config()?;
    proffer_agent::run(config, cancel).await.context("agent")
}

/// Flags of `proffer run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The master, HOST:PORT.
    #[arg(long, env = "PROFFER_MASTER", default_value = "127.0.0.1:5050")]
    master: String,
    /// How many tasks.
    #[arg(long, default_value_t = 1)]
    tasks: usize,
    /// The shell command each task runs.
    #[arg(long)]
    cmd: String,
    /// CPUs per task.
    #[arg(long, default_value_t = 0.1)]
    cpus: f64,
    /// Memory per task (MB).
    #[arg(long, default_value_t = 32.0)]
    mem: f64,
    /// Framework name (task ids are `<name>-<index>`).
    #[arg(long, default_value = "batch")]
    name: String,
    /// Role of the framework.
    #[arg(long, default_value = "*")]
    role: String,
}

/// `proffer run`: `Ok(true)` only if every task finished.
pub async fn run(args: RunArgs, cancel: CancellationToken) -> anyhow::Result<bool> {
    let spec = BatchSpec {
        name: args.name,
        tasks: args.tasks,
        cmd: args.cmd,
        cpus: args.cpus,
        mem: args.mem,
        role: args.role,
        max_tasks_per_offer: 0,
        failover_timeout_secs: 0.0,
    };
    let summary = crate::batch::run(&args.master, spec, cancel).await?;
    Ok(summary.all_finished())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_flags_build_a_config() -> anyhow::Result<()> {
        let args = AgentArgs {
            master: "m:5050".into(),
            work_dir: "/tmp/w".into(),
            resources: Some("cpus:2;mem:1024".into()),
            attributes: Some("rack:a".into()),
            hostname: Some("h1".into()),
            port: 6000,
            http: None,
            isolation: Isolation::Auto,
            cgroups_enable_cfs: false,
            pid_namespace: false,
            keep_tasks_on_shutdown: false,
            gc_max_disk_fraction: 0.9,
        };
        let config = args.agent_config()?;
        assert_eq!(config.http_listen, None);
        assert_eq!(config.isolation, IsolationMode::Auto);
        assert!(!config.cgroups_enable_cfs && !config.pid_namespace);
        assert!(config.kill_tasks_on_shutdown);
        assert_eq!(config.master, "m:5050");
        assert_eq!(config.resources.map(|r| r.cpus_milli()), Some(2000));
        assert_eq!(config.attributes, vec![("rack".to_owned(), "a".to_owned())]);
        assert_eq!(config.hostname, "h1");
        assert_eq!(config.port, 6000);
        let bad = AgentArgs {
            resources: Some("cpus:x".into()),
            ..args
        };
        assert!(bad.agent_config().is_err());
        Ok(())
    }

    #[derive(Debug, clap::Parser)]
    struct AgentCmd {
        #[command(flatten)]
        args: AgentArgs,
    }

    fn parse_agent(extra: &[&str]) -> anyhow::Result<AgentConfig> {
        use clap::Parser;
        let base = [
            "proffer-agent",
            "--master",
            "m:5050",
            "--work-dir",
            "/tmp/w",
        ];
        let cmd = AgentCmd::try_parse_from(base.iter().chain(extra))?;
        cmd.args.agent_config()
    }

    #[test]
    fn agent_isolation_and_shutdown_flags_map_to_the_config() -> anyhow::Result<()> {
        // Defaults, as AgentConfig::new.
        let config = parse_agent(&[])?;
        let defaults = AgentConfig::new("m:5050", "/tmp/w");
        assert_eq!(config.http_listen, defaults.http_listen);
        assert_eq!(config.isolation, defaults.isolation);
        assert_eq!(config.cgroups_enable_cfs, defaults.cgroups_enable_cfs);
        assert_eq!(config.pid_namespace, defaults.pid_namespace);
        assert_eq!(
            config.kill_tasks_on_shutdown,
            defaults.kill_tasks_on_shutdown
        );

        let config = parse_agent(&[
            "--http",
            "0.0.0.0:5051",
            "--isolation",
            "cgroups",
            "--cgroups-enable-cfs",
            "--pid-namespace",
            "--keep-tasks-on-shutdown",
        ])?;
        assert_eq!(config.http_listen, Some("0.0.0.0:5051".parse()?));
        assert_eq!(config.isolation, IsolationMode::Cgroups);
        assert!(config.cgroups_enable_cfs);
        assert!(config.pid_namespace);
        assert!(!config.kill_tasks_on_shutdown);

        assert_eq!(
            parse_agent(&["--isolation", "posix"])?.isolation,
            IsolationMode::Posix
        );
        assert!(parse_agent(&["--isolation", "docker"]).is_err());
        assert!(parse_agent(&["--http", "not-an-address"]).is_err());
        assert_eq!(config.gc_max_disk_fraction, defaults.gc_max_disk_fraction);
        let gc = parse_agent(&["--gc-max-disk-fraction", "1"])?;
        assert_eq!(gc.gc_max_disk_fraction, 1.0);
        for bad in ["0", "1.5", "-0.2", "NaN"] {
            let flag = format!("--gc-max-disk-fraction={bad}");
            let err = parse_agent(&[flag.as_str()]).err();
            let err = err.map(|e| e.to_string()).unwrap_or_default();
            assert!(err.contains("--gc-max-disk-fraction"), "{bad}: {err}");
        }
        Ok(())
    }
}
