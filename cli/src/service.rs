//! `proffer service …`: run a declarative service scheduler from a YAML spec, and talk to a
//! running one over its HTTP API (plans, why, offers, pods, update, uninstall).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use proffer_proto::leader::MasterList;
use proffer_sdk::service::compile::render_plan;
use proffer_sdk::service::core::CoreConfig;
use proffer_sdk::service::http::request;
use proffer_sdk::service::runner::{RunConfig, RunOutcome, prepare};
use proffer_sdk::service::{Plan, ServiceSpec};
use tokio_util::sync::CancellationToken;

use crate::deploy_watch::{Ran, Source, Watch, run_watched};
use crate::duration::parse_duration;
use crate::output::text as out;
use service_update::UpdateArgs;

// A child of this module (its own file), so main.rs needs no new line.
#[path = "service_update.rs"]
pub(crate) mod service_update;

/// Flags of `proffer service`.
#[derive(Debug, Args)]
pub struct ServiceArgs {
    #[command(subcommand)]
    command: ServiceCommand,
}

#[derive(Debug, Subcommand)]
enum ServiceCommand {
    /// Run the scheduler for SPEC (resumes from --state after a restart).
    Run(RunArgs),
    /// Check a spec and print its plans without running anything.
    Check(CheckArgs),
    /// Show plans (all, or one by name), or act on one with --action.
    Plan(PlanArgs),
    /// Show every incomplete step and what it waits for.
    Why(ApiArgs),
    /// Show recent offers and why each was used or declined.
    Offers(ApiArgs),
    /// Show pod instances, or restart/replace one.
    Pod(PodArgs),
    /// Send a changed spec to the running scheduler (scale, configuration update); refused,
    /// before anything is killed, when a new or changed pod cannot be placed (--force to
    /// apply anyway); --dry-run prints what would change.
    Update(UpdateArgs),
    /// Print what an update to SPEC would change (pods, which instances restart in which
    /// order, which move) and whether every new or changed pod can be placed on the current
    /// agents; exits non-zero when it cannot. Nothing changes.
    PlanUpdate(UpdateArgs),
    /// Start the uninstall plan of the running scheduler.
    Uninstall(ApiArgs),
}

#[derive(Debug, Args)]
struct RunArgs {
    /// The YAML spec.
    spec: PathBuf,
    /// The master, HOST:PORT, or several, comma-separated (h1:5050,h2:5050,h3:5050): the
    /// scheduler subscribes to whichever leads and follows it across failovers.
    #[arg(long, env = "PROFFER_MASTER", default_value = "127.0.0.1:5050")]
    master: MasterList,
    /// Directory of the scheduler's state store.
    #[arg(long)]
    state: PathBuf,
    /// Serve the HTTP API on this address (e.g. 127.0.0.1:8080).
    #[arg(long)]
    http: Option<SocketAddr>,
    /// Option overrides, NAME=VALUE (repeatable).
    #[arg(long = "option", value_name = "NAME=VALUE")]
    options: Vec<String>,
    /// Reserve resources dynamically and create persistent volumes.
    #[arg(long)]
    reservations: bool,
    /// How long a failed pod waits for its agent before it may move (e.g. 5m).
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    permanent_after: std::time::Duration,
    /// The value of {{FRAMEWORK_HOST}} (default: this host's name).
    #[arg(long)]
    framework_host: Option<String>,
    /// Run the uninstall plan and exit.
    #[arg(long)]
    uninstall: bool,
    /// Exit when the deploy (or update, or uninstall) plan is COMPLETE (status 0) or has
    /// failed (non-zero, naming the step): a step in ERROR or a task that failed
    /// --max-failures times. The framework keeps its tasks until its failover timeout.
    #[arg(long)]
    wait: bool,
    /// With --wait: give up once one task failed this many times.
    #[arg(long, default_value_t = 3, requires = "wait")]
    max_failures: u32,
    #[command(flatten)]
    output: crate::progress::OutputArgs,
}

#[derive(Debug, Args)]
struct CheckArgs {
    /// The YAML spec.
    spec: PathBuf,
    /// Option overrides, NAME=VALUE (repeatable).
    #[arg(long = "option", value_name = "NAME=VALUE")]
    options: Vec<String>,
}

/// The scheduler's HTTP API and the output form.
#[derive(Debug, Args)]
pub struct ApiArgs {
    /// The scheduler's HTTP API, HOST:PORT.
    #[arg(long, env = "PROFFER_SERVICE")]
    pub api: String,
    /// Print the API's JSON answer instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
struct PlanArgs {
    #[command(flatten)]
    api: ApiArgs,
    /// The plan (default: all).
    name: Option<String>,
    /// pause, resume, start, restart or force-complete.
    #[arg(long, requires = "name")]
    action: Option<String>,
    /// Limit the action to a phase.
    #[arg(long)]
    phase: Option<String>,
    /// Limit the action to a step of --phase (name or POD-INDEX).
    #[arg(long, requires = "phase")]
    step: Option<String>,
}

#[derive(Debug, Args)]
struct PodArgs {
    #[command(flatten)]
    api: ApiArgs,
    /// A pod instance (POD-INDEX) to act on.
    name: Option<String>,
    /// restart (in place) or replace (move, dropping volumes).
    #[arg(requires = "name")]
    action: Option<String>,
}

fn parse_options(list: &[String]) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for o in list {
        let Some((k, v)) = o.split_once('=') else {
            bail!("--option `{o}`: expected NAME=VALUE");
        };
        out.insert(k.trim().to_string(), v.to_string());
    }
    Ok(out)
}

fn load(path: &PathBuf, options: &BTreeMap<String, String>) -> Result<ServiceSpec> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    ServiceSpec::parse(&text, options).with_context(|| format!("invalid spec {}", path.display()))
}

/// Runs `proffer service …`.
pub async fn run(args: ServiceArgs, cancel: CancellationToken) -> Result<bool> {
    match args.command {
        ServiceCommand::Run(a) => run_scheduler(a, cancel).await,
        ServiceCommand::Check(a) => {
            let spec = load(&a.spec, &parse_options(&a.options)?)?;
            for p in proffer_sdk::service::compile::compile(&spec, "deploy") {
                out(&render_plan(&p));
            }
            Ok(true)
        }
        ServiceCommand::Plan(a) => plan(a).await,
        ServiceCommand::Why(a) => {
            let body = request(&a.api, "GET", "/v1/why", "").await?;
            if a.json {
                out(&body);
                return Ok(true);
            }
            let lines: Vec<serde_json::Value> = serde_json::from_str(&body)?;
            if lines.is_empty() {
                out("every step is complete");
            }
            for l in lines {
                let s = |k: &str| l.get(k).and_then(|v| v.as_str()).unwrap_or("").to_string();
                out(&format!(
                    "{}/{} {}: {}\n",
                    s("plan"),
                    s("step"),
                    s("status"),
                    s("why")
                ));
            }
            Ok(true)
        }
        ServiceCommand::Offers(a) => {
            let body = request(&a.api, "GET", "/v1/debug/offers", "").await?;
            if a.json {
                out(&body);
                return Ok(true);
            }
            let list: Vec<serde_json::Value> = serde_json::from_str(&body)?;
            for o in list {
                let s = |k: &str| o.get(k).and_then(|v| v.as_str()).unwrap_or("").to_string();
                let strs = |k: &str| -> Vec<String> {
                    o.get(k)
                        .and_then(|v| v.as_array())
                        .map(|a| {
                            a.iter()
                                .filter_map(|x| x.as_str().map(String::from))
                                .collect()
                        })
                        .unwrap_or_default()
                };
                out(&format!(
                    "{} {} {} [{}] {}\n",
                    s("offer_id"),
                    s("hostname"),
                    s("outcome"),
                    s("resources"),
                    strs("used_by").join(", ")
                ));
                for r in strs("reasons") {
                    out(&format!("    {r}\n"));
                }
            }
            Ok(true)
        }
        ServiceCommand::Pod(a) => pod(a).await,
        ServiceCommand::Update(a) => service_update::update(&a).await,
        ServiceCommand::PlanUpdate(a) => service_update::plan_update(&a).await,
        ServiceCommand::Uninstall(a) => {
            let body = request(&a.api, "POST", "/v1/uninstall", "").await?;
            out(&if a.json {
                body
            } else {
                crate::service_text::uninstalling(&a.api, &body)
            });
            Ok(true)
        }
    }
}

/// `proffer service pod [NAME ACTION]`: the pods as a table, or the action's answer.
async fn pod(a: PodArgs) -> Result<bool> {
    let api = &a.api.api;
    let body = match (&a.name, &a.action) {
        (Some(n), Some(act)) => request(api, "POST", &format!("/v1/pod/{n}/{act}"), "").await?,
        _ => request(api, "GET", "/v1/pod", "").await?,
    };
    if a.api.json {
        out(&body);
        return Ok(true);
    }
    let text = match (&a.name, &a.action) {
        (Some(n), Some(act)) => crate::service_text::pod_action(n, act, &body),
        _ => crate::service_text::pods(&body)?,
    };
    out(&text);
    Ok(true)
}

async fn plan(a: PlanArgs) -> Result<bool> {
    let api = &a.api.api;
    if let (Some(name), Some(action)) = (&a.name, &a.action) {
        let mut q = Vec::new();
        if let Some(p) = &a.phase {
            q.push(format!("phase={p}"));
        }
        if let Some(s) = &a.step {
            q.push(format!("step={s}"));
        }
        let query = if q.is_empty() {
            String::new()
        } else {
            format!("?{}", q.join("&"))
        };
        request(
            api,
            "POST",
            &format!("/v1/plans/{name}/{action}{query}"),
            "",
        )
        .await?;
    }
    let names: Vec<String> = match &a.name {
        Some(n) => vec![n.clone()],
        None => {
            let body = request(api, "GET", "/v1/plans", "").await?;
            let list: Vec<serde_json::Value> = serde_json::from_str(&body)?;
            list.iter()
                .filter_map(|p| p.get("name").and_then(|n| n.as_str()).map(String::from))
                .collect()
        }
    };
    for n in names {
        let body = request(api, "GET", &format!("/v1/plans/{n}"), "").await?;
        if a.api.json {
            out(&body);
        } else {
            let p: Plan = serde_json::from_str(&body)
                .with_context(|| format!("unexpected answer for plan {n}"))?;
            out(&render_plan(&p));
        }
    }
    Ok(true)
}

async fn run_scheduler(a: RunArgs, cancel: CancellationToken) -> Result<bool> {
    let options = parse_options(&a.options)?;
    let spec = load(&a.spec, &options)?;
    let host = a.framework_host.clone().unwrap_or_else(|| {
        std::fs::read_to_string("/etc/hostname")
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "localhost".into())
    });
    let cfg = RunConfig {
        master: a.master.to_string(),
        state_dir: a.state.clone(),
        core: CoreConfig {
            reservations: a.reservations,
            framework_host: host,
            permanent_after_ms: a.permanent_after.as_millis() as u64,
            ..CoreConfig::default()
        },
        http: a.http,
        options,
        uninstall: a.uninstall,
    };
    let (handle, listener) = prepare(spec, &cfg).await?;
    if let Some(addr) = handle.http_addr {
        eprintln!("service API on http://{addr}/v1/plans");
    }
    let watch = Watch {
        source: Source::Local(handle.shared.clone()),
        plan: None,
        style: a.output.style(),
        masters: Some(a.master.clone()),
        max_failures: a.wait.then_some(a.max_failures),
    };
    match run_watched(handle, listener, cfg, &watch, a.wait, cancel).await? {
        Ran::Waited => {
            eprintln!("scheduler stopped; the tasks keep running until its failover timeout")
        }
        Ran::Ended(RunOutcome::Stopped) => {
            eprintln!("scheduler stopped; the framework keeps running until its failover timeout")
        }
        Ran::Ended(RunOutcome::Uninstalled) => {
            eprintln!("uninstalled: tasks killed, framework torn down, state wiped")
        }
    }
    Ok(true)
}
