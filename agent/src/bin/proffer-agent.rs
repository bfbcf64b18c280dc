//! `proffer-agent`: the agent crate's own small binary, so the crate's tests can run real
//! executor and agent processes without the `proffer` CLI:
//!
//! - `proffer-agent executor (--probe | --run-dir DIR)`: the per-task executor (the same code
//!   as `proffer executor`);
//! - `proffer-agent agent --master HOST:PORT[,HOST:PORT…] --work-dir DIR [--resources TEXT]
//!   [--status-retry-ms N] [--keep-tasks] [--http ADDR]`: an agent whose executors are this
//!   binary (tests kill it with SIGKILL and start it again).

use std::io::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use proffer_agent::{AgentConfig, ExecutorLauncher};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("executor") => executor(&args),
        Some("agent") => agent(&args[1..]),
        _ => {
            eprintln!("usage: proffer-agent (executor ARGS | agent ARGS)");
            ExitCode::from(2)
        }
    }
}

fn executor(args: &[String]) -> ExitCode {
    let mode = match proffer_agent::executor::parse_args(args) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    if let Some(runtime) = proffer_agent::executor::oci_runtime_arg(args) {
        proffer_agent::executor::container::set_runtime_override(runtime);
    }
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("executor: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = rt.block_on(proffer_agent::executor::run_process(mode));
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

fn agent(args: &[String]) -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    match build_config(args) {
        Ok(config) => {
            let rt = match tokio::runtime::Runtime::new() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("agent: cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let cancel = tokio_util::sync::CancellationToken::new();
            let c = cancel.clone();
            let result = rt.block_on(async move {
                tokio::spawn(async move {
                    if let Ok(mut term) =
                        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    {
                        term.recv().await;
                        c.cancel();
                    }
                });
                proffer_agent::run(config, cancel).await
            });
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    // Not `eprintln!`, which panics when stderr cannot be written (its file on
                    // the full disk that stopped the agent).
                    let _ = writeln!(std::io::stderr(), "agent: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Err(e) => {
            eprintln!("agent: {e}");
            ExitCode::from(2)
        }
    }
}

fn build_config(args: &[String]) -> Result<AgentConfig, String> {
    let mut master = None;
    let mut work_dir = None;
    let mut resources = None;
    let mut retry = None;
    let mut http = None;
    let mut keep_tasks = false;
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--master" => master = Some(value()?),
            "--work-dir" => work_dir = Some(value()?),
            "--resources" => {
                let v = value()?;
                let parsed =
                    proffer_proto::Resources::parse(&v).map_err(|e| format!("--resources: {e}"))?;
                proffer_agent::config::check_resources(&parsed)
                    .map_err(|e| format!("--resources: {e}"))?;
                resources = Some(parsed);
            }
            "--status-retry-ms" => {
                let ms: u64 = value()?
                    .parse()
                    .map_err(|e| format!("--status-retry-ms: {e}"))?;
                retry = Some(Duration::from_millis(ms));
            }
            "--http" => {
                http = Some(
                    value()?
                        .parse::<std::net::SocketAddr>()
                        .map_err(|e| format!("--http: {e}"))?,
                )
            }
            "--keep-tasks" => keep_tasks = true,
            other => return Err(format!("unknown flag {other}")),
        }
    }
    let mut config = AgentConfig::new(
        master.ok_or("--master is required")?,
        work_dir.ok_or("--work-dir is required")?,
    );
    config.reconnect_initial = Duration::from_millis(50);
    config.reconnect_max = Duration::from_millis(500);
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this binary: {e}"))?;
    config.executor = ExecutorLauncher::Binary {
        program: exe,
        args: vec!["executor".into()],
    };
    if resources.is_some() {
        config.resources = resources;
    }
    if let Some(r) = retry {
        config.status_retry_initial = r;
    }
    config.http_listen = http;
    config.kill_tasks_on_shutdown = !keep_tasks;
    Ok(config)
}
