//! `proffer agent` and `proffer run` (`proffer master` is in `master_cmd`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use proffer_agent::{AgentConfig, IsolationMode};
use proffer_proto::Resources;
use proffer_sdk::BatchSpec;
use tokio_util::sync::CancellationToken;

use crate::duration::parse_duration;

/// Flags of `proffer agent`.
#[derive(Debug, clap::Args)]
pub struct AgentArgs {
    /// The master, HOST:PORT, or several, comma-separated (h1:5050,h2:5050,h3:5050): the
    /// leader is found and followed across failovers.
    #[arg(long, env = "PROFFER_MASTER")]
    master: String,
    /// Directory for sandboxes and the agent's checkpoint.
    #[arg(long, env = "PROFFER_AGENT_WORK_DIR")]
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
    #[arg(long, env = "PROFFER_AGENT_PORT", default_value_t = 5051)]
    port: u16,
    /// Serve the agent's HTTP endpoint (sandbox files, `/state`, `/metrics`) on this address,
    /// e.g. `0.0.0.0:5051` (default: no HTTP endpoint).
    /// Anything but loopback needs TLS (--tls-cert) or --authenticate-http-readonly, or
    /// --insecure.
    #[arg(long = "http", env = "PROFFER_AGENT_HTTP")]
    http: Option<SocketAddr>,
    /// Serve --http on a non-loopback address without TLS and without authentication
    /// (anyone who reaches it reads every sandbox).
    #[arg(long, env = "PROFFER_AGENT_INSECURE")]
    insecure: bool,
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
    /// system is fuller than this fraction of its blocks or of its inodes (Mesos
    /// `--gc_disk_headroom` 0.1 = 0.9 here; 1 = never).
    #[arg(
        long,
        env = "PROFFER_GC_MAX_DISK_FRACTION",
        default_value_t = 0.9,
        allow_negative_numbers = true
    )]
    gc_max_disk_fraction: f64,
    /// A group commit (the fsync of the agent's journal before updates go out) waits until
    /// this long after the previous one, so the inputs arriving meanwhile share it; an agent
    /// quiet that long commits at once (`0ms`: after every batch of ready inputs).
    #[arg(long, env = "PROFFER_COMMIT_WINDOW", default_value = "2ms", value_parser = parse_duration)]
    commit_window: Duration,
    /// The OCI runtime (runc or crun) running tasks in containers (default: crun, then runc,
    /// found on PATH; docs/containers.md).
    #[arg(long, env = "PROFFER_OCI_RUNTIME")]
    oci_runtime: Option<std::path::PathBuf>,
    /// Authentication and ACLs of the agent's HTTP endpoint (its session to the master
    /// presents --principal/--secret-file).
    #[command(flatten)]
    auth: crate::security_args::AgentAuthArgs,
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
            proffer_agent::config::check_resources(&resources)
                .with_context(|| format!("invalid --resources `{text}`"))?;
            config.resources = Some(resources);
        }
        if let Some(text) = &self.attributes {
            config.attributes = proffer_agent::parse_attributes(text)
                .with_context(|| format!("invalid --attributes `{text}`"))?;
        }
        if let Some(hostname) = &self.hostname {
            config.hostname = hostname.clone();
        }
        config.port = u32::from(self.port);
        config.http_listen = self.http;
        config.isolation = self.isolation.into();
        config.cgroups_enable_cfs = self.cgroups_enable_cfs;
        config.pid_namespace = self.pid_namespace;
        config.kill_tasks_on_shutdown = !self.keep_tasks_on_shutdown;
        if let Some(runtime) = &self.oci_runtime {
            // The executors (this binary) run the containers: they are told the runtime.
            config.executor = proffer_agent::ExecutorLauncher::Binary {
                program: std::env::current_exe()?,
                args: vec![
                    "executor".into(),
                    "--oci-runtime".into(),
                    runtime.display().to_string(),
                ],
            };
        }
        let f = self.gc_max_disk_fraction;
        anyhow::ensure!(
            f.is_finite() && f > 0.0 && f <= 1.0,
            "--gc-max-disk-fraction must be within (0, 1], got {f}"
        );
        config.gc_max_disk_fraction = f;
        anyhow::ensure!(
            self.commit_window <= Duration::from_secs(1),
            "--commit-window must be at most 1s (it delays every update), got {:?}",
            self.commit_window
        );
        config.commit_window = self.commit_window;
        config.http_security = self.auth.http_security()?;
        if let Some(addr) = self.http {
            crate::security_args::check_exposure(
                "the agent's HTTP endpoint",
                addr,
                config.http_security.tls.is_some(),
                config.http_security.authenticate_http_readonly,
                self.insecure,
            )?;
        }
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
    /// The master, HOST:PORT, or several, comma-separated (h1:5050,h2:5050,h3:5050): the
    /// leader is found and followed across failovers.
    #[arg(long, env = "PROFFER_MASTER", default_value = "127.0.0.1:5050")]
    master: String,
    /// How many tasks.
    #[arg(long, default_value_t = 1, allow_negative_numbers = true)]
    tasks: usize,
    /// The shell command each task runs.
    #[arg(long)]
    cmd: String,
    /// CPUs per task.
    #[arg(long, default_value_t = 0.1, allow_negative_numbers = true)]
    cpus: f64,
    /// Memory per task (MB).
    #[arg(long, default_value_t = 32.0, allow_negative_numbers = true)]
    mem: f64,
    /// Submit the tasks at this steady rate (tasks/s) instead of all at once: task i is
    /// launched no sooner than i/rate seconds after the start.
    #[arg(long, allow_negative_numbers = true)]
    rate: Option<f64>,
    /// Framework name (task ids are `<name>-<index>`).
    #[arg(long, default_value = "batch")]
    name: String,
    /// Role of the framework.
    #[arg(long, default_value = "*")]
    role: String,
    /// How long the master keeps the batch's tasks if `proffer run` loses the master (it
    /// re-subscribes meanwhile, so a master restart does not end the batch). 0 = the batch
    /// is torn down as soon as its connection drops.
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    failover_timeout: Duration,
    /// Run each task in a container from this image: an OCI image layout directory, a tar of
    /// one, or a `docker save` archive, by absolute path, file:// or http(s):// (--cmd runs
    /// under /bin/sh -c inside the image).
    #[arg(long)]
    image: Option<String>,
    /// The image archive's sha256 (hex), checked by the agent before it is used.
    #[arg(long, requires = "image")]
    image_sha256: Option<String>,
    #[command(flatten)]
    output: crate::progress::OutputArgs,
}

/// Checks a per-task resource flag (`--cpus`, `--mem`, …): a positive finite number that
/// does not round to zero at the resources' resolution (0.001).
pub fn check_task_scalar(flag: &str, resource: &str, value: f64) -> anyhow::Result<()> {
    anyhow::ensure!(value > 0.0, "{flag} must be positive, got {value}");
    anyhow::ensure!(value.is_finite(), "{flag} must be finite, got {value}");
    proffer_proto::resources::to_milli(resource, value)
        .with_context(|| format!("invalid {flag} {value}"))?;
    Ok(())
}

/// Checks `--rate` when given: a positive finite number of tasks per second.
pub fn check_rate(rate: Option<f64>) -> anyhow::Result<()> {
    if let Some(r) = rate {
        anyhow::ensure!(
            r.is_finite() && r > 0.0,
            "--rate must be a positive number of tasks per second, got {r}"
        );
    }
    Ok(())
}

/// Checks a task-count flag (`--tasks`, …): at least one.
pub fn check_task_count(flag: &str, value: usize) -> anyhow::Result<()> {
    anyhow::ensure!(value >= 1, "{flag} must be at least 1, got {value}");
    Ok(())
}

impl RunArgs {
    /// The batch these flags describe, after checking the numbers.
    fn spec(self) -> anyhow::Result<(String, BatchSpec)> {
        check_task_count("--tasks", self.tasks)?;
        check_task_scalar("--cpus", "cpus", self.cpus)?;
        check_task_scalar("--mem", "mem", self.mem)?;
        check_rate(self.rate)?;
        let spec = BatchSpec {
            name: self.name,
            tasks: self.tasks,
            cmd: self.cmd,
            cpus: self.cpus,
            mem: self.mem,
            role: self.role,
            max_tasks_per_offer: 0,
            failover_timeout_secs: self.failover_timeout.as_secs_f64(),
            image: self.image.map(|image| proffer_proto::v1::ContainerInfo {
                image,
                image_sha256: self.image_sha256.unwrap_or_default(),
            }),
            rate: self.rate,
        };
        Ok((self.master, spec))
    }
}

/// `proffer run`: `Ok(true)` only if every task finished.
pub async fn run(args: RunArgs, cancel: CancellationToken) -> anyhow::Result<bool> {
    let style = args.output.style();
    let (master, spec) = args.spec()?;
    let summary = crate::batch::run_with(&master, spec, style, cancel).await?;
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
            insecure: false,
            isolation: Isolation::Auto,
            cgroups_enable_cfs: false,
            pid_namespace: false,
            keep_tasks_on_shutdown: false,
            gc_max_disk_fraction: 0.9,
            commit_window: proffer_agent::config::DEFAULT_COMMIT_WINDOW,
            oci_runtime: None,
            auth: Default::default(),
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

    #[test]
    fn the_oci_runtime_flag_reaches_the_executors() -> anyhow::Result<()> {
        let config = parse_agent(&["--oci-runtime", "/opt/runc"])?;
        match config.executor {
            proffer_agent::ExecutorLauncher::Binary { args, .. } => {
                assert_eq!(args, ["executor", "--oci-runtime", "/opt/runc"]);
            }
            other => anyhow::bail!("expected executor arguments, got {other:?}"),
        }
        Ok(())
    }

    #[test]
    fn agent_resources_must_be_allocatable() {
        let table = [
            ("", "nothing allocatable"),
            ("disk:100;ports:[31000-31100]", "nothing allocatable"),
            ("cpus:0.001", "nothing allocatable"),
            (
                "cpus:1e-9",
                "resource `cpus`: invalid scalar 1e-9: rounds to zero",
            ),
            ("gpus:0.5;cpus:1", "gpus are allocated whole"),
            ("cpus:1;ports:[1-70000]", "ports end at 65535"),
        ];
        for (text, want) in table {
            let flag = format!("--resources={text}");
            let err = parse_agent(&[flag.as_str()]).err();
            let err = err.map(|e| format!("{e:#}")).unwrap_or_default();
            assert!(
                err.contains("--resources") && err.contains(want),
                "`{text}`: `{err}` lacks `{want}`"
            );
            if want == "nothing allocatable" {
                assert!(err.contains("cpus 0.01 or mem 32 MB"), "{err}");
            }
        }
        assert!(parse_agent(&["--resources", "mem:32"]).is_ok());
        assert!(parse_agent(&["--port", "70000"]).is_err());
    }

    #[derive(Debug, clap::Parser)]
    struct RunCmd {
        #[command(flatten)]
        args: RunArgs,
    }

    fn parse_run(extra: &[&str]) -> anyhow::Result<BatchSpec> {
        use clap::Parser;
        let base = ["proffer-run", "--cmd", "true"];
        let cmd = RunCmd::try_parse_from(base.iter().chain(extra))?;
        Ok(cmd.args.spec()?.1)
    }

    #[test]
    fn run_numbers_are_checked_with_the_flag_named() -> anyhow::Result<()> {
        let spec = parse_run(&["--cpus", "0.5", "--mem", "64", "--tasks", "3"])?;
        assert_eq!((spec.cpus, spec.mem, spec.tasks), (0.5, 64.0, 3));
        assert_eq!(spec.rate, None);
        assert_eq!(parse_run(&["--rate", "250"])?.rate, Some(250.0));
        let table: &[(&[&str], &str)] = &[
            (&["--cpus", "-1"], "--cpus must be positive, got -1"),
            (&["--cpus", "0"], "--cpus must be positive, got 0"),
            (&["--cpus", "NaN"], "--cpus must be positive, got NaN"),
            (&["--cpus", "inf"], "--cpus must be finite, got inf"),
            (&["--cpus", "0.0001"], "rounds to zero"),
            (&["--mem", "-32"], "--mem must be positive, got -32"),
            (&["--mem", "1e300"], "too large"),
            (&["--tasks", "0"], "--tasks must be at least 1, got 0"),
            (&["--tasks", "-2"], "invalid value '-2' for '--tasks"),
            (
                &["--rate", "0"],
                "--rate must be a positive number of tasks per second, got 0",
            ),
            (
                &["--rate", "-10"],
                "--rate must be a positive number of tasks per second, got -10",
            ),
            (
                &["--rate", "inf"],
                "--rate must be a positive number of tasks per second, got inf",
            ),
        ];
        for (args, want) in table {
            let err = parse_run(args).err();
            let err = err.map(|e| format!("{e:#}")).unwrap_or_default();
            assert!(err.contains(want), "{args:?}: `{err}` lacks `{want}`");
        }
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
            "--insecure",
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
        // Safe defaults: open to the network without TLS or authentication is refused.
        let err = parse_agent(&["--http", "0.0.0.0:5051"]).err();
        let err = err.map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("without TLS or authentication"), "{err}");
        assert!(parse_agent(&["--http", "127.0.0.1:5051"]).is_ok());
        assert_eq!(config.gc_max_disk_fraction, defaults.gc_max_disk_fraction);
        let gc = parse_agent(&["--gc-max-disk-fraction", "1"])?;
        assert_eq!(gc.gc_max_disk_fraction, 1.0);
        assert_eq!(config.commit_window, defaults.commit_window);
        let window = parse_agent(&["--commit-window", "0ms"])?;
        assert_eq!(window.commit_window, Duration::ZERO);
        for bad in ["2s", "soon", "-1ms"] {
            let flag = format!("--commit-window={bad}");
            let err = parse_agent(&[flag.as_str()]).err();
            let err = err.map(|e| e.to_string()).unwrap_or_default();
            assert!(
                err.contains("commit") || err.contains("invalid"),
                "{bad}: {err}"
            );
        }
        for bad in ["0", "1.5", "-0.2", "NaN"] {
            let flag = format!("--gc-max-disk-fraction={bad}");
            let err = parse_agent(&[flag.as_str()]).err();
            let err = err.map(|e| e.to_string()).unwrap_or_default();
            assert!(err.contains("--gc-max-disk-fraction"), "{bad}: {err}");
        }
        // A negative value after a space reaches the check too (not read as a flag).
        let err = parse_agent(&["--gc-max-disk-fraction", "-0.2"]).err();
        let err = err.map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("must be within (0, 1], got -0.2"), "{err}");
        Ok(())
    }
}
