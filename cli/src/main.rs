//! `proffer`: the single binary for the master, agents, a local cluster, the batch framework
//! and operator commands.
//!
//! # Layout
//! - `daemons`: `proffer master` and `proffer agent`.
//! - `local`: `proffer local` (master + agents in-process, demo batch).
//! - `batch`: `proffer run` (batch framework with progress output).
//! - `operator`: `proffer state` / `proffer tasks`.
//! - `roles`: `proffer quota set|rm`, `proffer weight set`, `proffer roles`, `proffer why`,
//!   `proffer reserve|unreserve`.
//! - `service`: `proffer service …` (declarative service scheduler and its HTTP API).
//! - `sim`: `proffer sim run|compare|gen|bench` (the offline simulator).
//! - `security_args`: --principal/--secret-file for every command; the master's and agents'
//!   --credentials, --authenticate-*, --acls.
//! - `duration`, `table`, `output`: flag parsing, text tables, stdout that tolerates a closed pipe.
//!
//! Logs go to stderr (filter with `RUST_LOG`); user-facing output goes to stdout.

/// mimalloc instead of the system allocator: the master core and the simulator allocate many
/// small short-lived values (offers, ids, resource bags); glibc's malloc spent about a third of
/// the simulator's time in its free lists.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod batch;
mod bench_core;
mod bench_fs;
mod bench_launch;
mod cluster_views;
mod daemons;
mod deploy_watch;
mod duration;
mod events_cmd;
mod executor;
#[cfg(test)]
mod help_tests;
mod k8s;
mod k8s_check;
mod k8s_install;
mod k8s_local;
mod k8s_options;
mod k8s_tools;
mod local;
mod local_ha;
mod local_ports;
mod local_secure;
mod master_cmd;
mod operator;
mod output;
mod pki_cmd;
mod progress;
mod roles;
mod sandbox_tail;
mod security_args;
mod service;
mod service_text;
mod sim;
mod table;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

/// Proffer: a two-level cluster scheduler (Mesos-style resource offers).
#[derive(Debug, Parser)]
#[command(name = "proffer", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Who this command is to masters and agents (--principal, --secret-file).
    #[command(flatten)]
    auth: security_args::ClientAuthArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the master (gRPC and HTTP on one port).
    Master(Box<master_cmd::MasterArgs>),
    /// Run an agent that offers this machine's resources and runs tasks.
    Agent(daemons::AgentArgs),
    /// Run a batch of identical shell tasks to completion.
    Run(daemons::RunArgs),
    /// Start a master and agents in this process and run a demo batch.
    Local(local::LocalArgs),
    /// Show the master's agents and frameworks.
    State(StateArgs),
    /// Show the master's tasks.
    Tasks(TasksArgs),
    /// Show the master's agents (a table, or --json).
    Agents(cluster_views::ViewArgs),
    /// Show the master's frameworks (a table, or --json).
    Frameworks(cluster_views::ViewArgs),
    /// Print a task's stdout (or --stderr), read from its agent; --follow until it ends.
    Logs(cluster_views::LogsArgs),
    /// Follow the master's operator event stream (tasks, agents, frameworks).
    Events(events_cmd::EventsArgs),
    /// Print a shell completion script (bash, zsh, fish, …).
    Completions(events_cmd::CompletionsArgs),
    /// Set or remove a role's quota (guarantees and limits).
    Quota(roles::QuotaArgs),
    /// Set a role's weight.
    Weight(roles::WeightArgs),
    /// Drain an agent for maintenance: no new offers; its tasks are killed with their grace.
    Drain(roles::DrainArgs),
    /// End an agent's drain: its resources are offered again.
    Reactivate(roles::DrainArgs),
    /// Mark an agent gone for good (it was decommissioned): its tasks end, it may never
    /// come back with its id.
    AgentGone(roles::AgentGoneArgs),
    /// Tear a framework down for good: its tasks are killed, its id may not subscribe again.
    Teardown(roles::TeardownArgs),
    /// Maintenance windows: schedule (inverse offers, then drain), status.
    Maintenance(roles::MaintenanceArgs),
    /// Show roles: weights, quotas, allocations, frameworks.
    Roles(roles::RolesArgs),
    /// Explain why a framework or role gets what it gets.
    Why(roles::WhyArgs),
    /// Dynamically reserve unused resources of an agent for a role.
    Reserve(roles::ReserveArgs),
    /// Give back dynamic reservations no task uses.
    Unreserve(roles::ReserveArgs),
    /// The per-task executor the agent starts (internal).
    #[command(hide = true)]
    Executor(executor::ExecutorArgs),
    /// Run a declarative service scheduler from a YAML spec, or talk to a running one.
    Service(service::ServiceArgs),
    /// Kubernetes clusters on Proffer: check, spec, install, kubeconfig, scale-nodes, upgrade,
    /// status, plan, uninstall.
    K8s(k8s::K8sArgs),
    /// Simulate workloads offline through the real allocator (run, compare, gen, bench).
    Sim(sim::SimArgs),
    /// Benchmarks on this machine: `bench launch` (short tasks end to end), `bench core` (the
    /// master core alone).
    Bench(bench_launch::BenchArgs),
    /// The cluster PKI: `pki init DIR` (a CA), `pki issue` (master, agent, client certificates).
    Pki(pki_cmd::PkiArgs),
    /// Readiness probe of Kubernetes deploys, run by their tasks (internal).
    #[command(hide = true, name = "k8s-probe", disable_help_flag = true)]
    K8sProbe(k8s_tools::Passthrough),
    /// etcd membership helper of Kubernetes deploys (internal).
    #[command(hide = true, name = "k8s-etcd-member", disable_help_flag = true)]
    K8sEtcdMember(k8s_tools::Passthrough),
    /// Stand-in kube-apiserver of Kubernetes deploys (internal).
    #[command(hide = true, name = "kube-apiserver-standin", disable_help_flag = true)]
    KubeApiserverStandin(k8s_tools::Passthrough),
    /// Stand-in kube-controller-manager (internal).
    #[command(
        hide = true,
        name = "kube-controller-manager-standin",
        disable_help_flag = true
    )]
    KubeControllerManagerStandin(k8s_tools::Passthrough),
    /// Stand-in kube-scheduler (internal).
    #[command(hide = true, name = "kube-scheduler-standin", disable_help_flag = true)]
    KubeSchedulerStandin(k8s_tools::Passthrough),
    /// Stand-in kubelet (internal).
    #[command(hide = true, name = "kubelet-standin", disable_help_flag = true)]
    KubeletStandin(k8s_tools::Passthrough),
    /// Stand-in kube-proxy (internal).
    #[command(hide = true, name = "kube-proxy-standin", disable_help_flag = true)]
    KubeProxyStandin(k8s_tools::Passthrough),
    /// Stand-in CoreDNS (internal).
    #[command(hide = true, name = "coredns-standin", disable_help_flag = true)]
    CorednsStandin(k8s_tools::Passthrough),
}

/// The Kubernetes helper program a hidden subcommand runs, and its arguments.
fn k8s_program(command: &Command) -> Option<(&'static str, &[String])> {
    let (program, a) = match command {
        Command::K8sProbe(a) => ("k8s-probe", a),
        Command::K8sEtcdMember(a) => ("k8s-etcd-member", a),
        Command::KubeApiserverStandin(a) => ("kube-apiserver-standin", a),
        Command::KubeControllerManagerStandin(a) => ("kube-controller-manager-standin", a),
        Command::KubeSchedulerStandin(a) => ("kube-scheduler-standin", a),
        Command::KubeletStandin(a) => ("kubelet-standin", a),
        Command::KubeProxyStandin(a) => ("kube-proxy-standin", a),
        Command::CorednsStandin(a) => ("coredns-standin", a),
        _ => return None,
    };
    Some((program, &a.args))
}

/// Flags of `proffer state`.
#[derive(Debug, clap::Args)]
struct StateArgs {
    /// The master, HOST:PORT, or several, comma-separated (h1:5050,h2:5050): whichever leads
    /// answers.
    #[arg(long, env = "PROFFER_MASTER", default_value = "127.0.0.1:5050")]
    master: proffer_proto::leader::MasterList,
    /// Print the raw snapshot as JSON.
    #[arg(long)]
    json: bool,
}

/// The tokio runtime a command runs on: one worker per core, but for a supervising executor
/// ([`executor::worker_threads`]). `TOKIO_WORKER_THREADS` still sets the count for any command.
fn runtime_for(command: &Command) -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    if let Command::Executor(args) = command
        && std::env::var_os("TOKIO_WORKER_THREADS").is_none()
        && let Some(n) = executor::worker_threads(args)
    {
        builder.worker_threads(n);
    }
    builder.build()
}

/// Flags of `proffer tasks`.
#[derive(Debug, clap::Args)]
struct TasksArgs {
    /// The master, HOST:PORT, or several, comma-separated (h1:5050,h2:5050): whichever leads
    /// answers.
    #[arg(long, env = "PROFFER_MASTER", default_value = "127.0.0.1:5050")]
    master: proffer_proto::leader::MasterList,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    /// Include completed tasks.
    #[arg(long)]
    all: bool,
}

fn main() -> ExitCode {
    // Run under a helper program's name (a link `k8s-probe -> proffer`), be that program.
    if let Some(code) = k8s_tools::run_as_argv0() {
        return code;
    }
    let cli = Cli::parse();
    // Helper programs run on their own (each builds its own runtime, logs its own way).
    if let Some((program, args)) = k8s_program(&cli.command) {
        return k8s_tools::run(program, args);
    }
    // The simulator drives the core millions of times: no log subscriber, so its logs cost nothing.
    if !matches!(cli.command, Command::Sim(_)) {
        init_tracing(matches!(
            cli.command,
            Command::Local(_) | Command::Run(_) | Command::Bench(_)
        ));
    }
    // Every client this command makes presents the credential.
    if let Err(err) = cli.auth.install() {
        eprintln!("error: {err:#}");
        return ExitCode::FAILURE;
    }
    let runtime = match runtime_for(&cli.command) {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("error: cannot start the tokio runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli.command)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(err) => {
            eprintln!("error: {}", error_text(&format!("{err:#}")));
            ExitCode::FAILURE
        }
    }
}

/// An error for people: a segment repeated by nested errors said once (`tcp connect error: tcp
/// connect error: …`), and a hint when nothing answers at the master's address.
fn error_text(raw: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in raw.split(": ") {
        if parts.last() != Some(&part) {
            parts.push(part);
        }
    }
    let mut text = parts.join(": ");
    if text.contains("Connection refused") && text.contains("master") {
        text.push_str("\n  hint: is `proffer local` or `proffer master` running there? (--master HOST:PORT, env PROFFER_MASTER)");
    }
    text
}

/// Runs a command; `Ok(false)` means it ran but did not succeed (e.g. tasks failed).
async fn dispatch(command: Command) -> anyhow::Result<bool> {
    let cancel = CancellationToken::new();
    match command {
        Command::Master(args) => {
            cancel_on_signals(cancel.clone());
            master_cmd::master(*args, cancel).await.map(|()| true)
        }
        Command::Agent(args) => {
            cancel_on_signals(cancel.clone());
            daemons::agent(args, cancel).await.map(|()| true)
        }
        Command::Run(args) => {
            cancel_on_signals(cancel.clone());
            daemons::run(args, cancel).await
        }
        Command::Local(args) => {
            cancel_on_signals(cancel.clone());
            local::run(args, master_cmd::random_seed(), cancel).await
        }
        Command::State(args) => operator::state(&args.master, args.json)
            .await
            .map(|()| true),
        Command::Tasks(args) => operator::tasks(&args.master, args.json, args.all)
            .await
            .map(|()| true),
        Command::Agents(args) => cluster_views::agents(args).await.map(|()| true),
        Command::Frameworks(args) => cluster_views::frameworks(args).await.map(|()| true),
        Command::Logs(args) => cluster_views::logs(args).await.map(|()| true),
        Command::Events(args) => events_cmd::events(args).await.map(|()| true),
        Command::Completions(args) => {
            events_cmd::completions(&args, &mut <Cli as clap::CommandFactory>::command());
            Ok(true)
        }
        Command::Quota(args) => roles::quota(args).await.map(|()| true),
        Command::Weight(args) => roles::weight(args).await.map(|()| true),
        Command::Drain(args) => roles::drain(args, true).await.map(|()| true),
        Command::Reactivate(args) => roles::drain(args, false).await.map(|()| true),
        Command::AgentGone(args) => roles::agent_gone(args).await.map(|()| true),
        Command::Teardown(args) => roles::teardown(args).await.map(|()| true),
        Command::Maintenance(args) => roles::maintenance(args).await.map(|()| true),
        Command::Roles(args) => roles::roles(args).await.map(|()| true),
        Command::Why(args) => roles::why(args).await.map(|()| true),
        Command::Reserve(args) => roles::reserve(args, true).await.map(|()| true),
        Command::Unreserve(args) => roles::reserve(args, false).await.map(|()| true),
        Command::Executor(args) => executor::run(args).await,
        Command::Sim(args) => sim::run(args),
        Command::Pki(args) => pki_cmd::run(args).map(|()| true),
        Command::Bench(args) => {
            cancel_on_signals(cancel.clone());
            bench_launch::run(args, cancel).await
        }
        Command::K8sProbe(_)
        | Command::K8sEtcdMember(_)
        | Command::KubeApiserverStandin(_)
        | Command::KubeControllerManagerStandin(_)
        | Command::KubeSchedulerStandin(_)
        | Command::KubeletStandin(_)
        | Command::KubeProxyStandin(_)
        | Command::CorednsStandin(_) => anyhow::bail!("helper programs run before dispatch"),
        Command::K8s(args) => {
            cancel_on_signals(cancel.clone());
            k8s::run(args, cancel).await
        }
        Command::Service(args) => {
            cancel_on_signals(cancel.clone());
            service::run(args, cancel).await
        }
    }
}

/// Logs to stderr; `RUST_LOG` overrides the default (info for proffer crates, warn otherwise;
/// interactive commands that print progress default to warn so the output stays readable).
fn init_tracing(quiet: bool) {
    let default = if quiet {
        "warn"
    } else {
        "warn,proffer=info,proffer_cli=info,proffer_master=info,proffer_agent=info,proffer_sdk=info"
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(progress::log_writer)
        .with_ansi(ansi)
        .init();
}

/// Cancels on Ctrl-C or SIGTERM; a second signal exits at once.
fn cancel_on_signals(cancel: CancellationToken) {
    tokio::spawn(async move {
        wait_for_signal().await;
        eprintln!("shutting down (signal again to exit at once)");
        cancel.cancel();
        wait_for_signal().await;
        std::process::exit(130);
    });
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(err) => {
            tracing::warn!(%err, "cannot listen for SIGTERM");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn master_flags_parse_durations() -> anyhow::Result<()> {
        let cli = Cli::try_parse_from([
            "proffer",
            "master",
            "--listen",
            "127.0.0.1:6000",
            "--allocation-interval",
            "500ms",
            "--offer-timeout",
            "2m",
        ])?;
        let Command::Master(args) = cli.command else {
            anyhow::bail!("not master")
        };
        let config = args.server_config()?;
        assert_eq!(config.master.allocation_interval_ms, 500);
        assert_eq!(config.master.offer_timeout_ms, Some(120_000));
        assert_eq!(config.master.agent_ping_interval_ms, 15_000);
        assert_eq!(config.master.offer_coalesce_ms, 3, "the default window");
        assert!(Cli::try_parse_from(["proffer", "master", "--allocation-interval", "5"]).is_err());
        Ok(())
    }

    #[test]
    fn run_requires_a_command() {
        assert!(Cli::try_parse_from(["proffer", "run", "--tasks", "3"]).is_err());
        assert!(Cli::try_parse_from(["proffer", "run", "--tasks", "3", "--cmd", "true"]).is_ok());
    }

    #[test]
    fn errors_say_each_part_once_with_a_hint() {
        let t = error_text(
            "cannot connect to the master at http://127.0.0.1:1: transport error: tcp connect error: tcp connect error: Connection refused (os error 111)",
        );
        assert!(
            t.starts_with("cannot connect to the master at http://127.0.0.1:1: transport error: tcp connect error: Connection refused"),
            "{t}"
        );
        assert!(
            t.contains("hint: is `proffer local` or `proffer master` running"),
            "{t}"
        );
        assert_eq!(error_text("invalid --cpus -1"), "invalid --cpus -1");
    }
}
