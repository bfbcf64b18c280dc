//! `proffer k8s install` and `proffer k8s spec`: the PKI bundle (written once), the generated
//! service spec, and for `install` the cluster's scheduler in the foreground, following its
//! deploy plan. What the install ran with is remembered in `STATE/install.json` for the later
//! verbs. `proffer local --k8s` installs through the same function.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use proffer_k8s::config::Cluster;
use proffer_k8s::deploy::{pki_request, service_spec, spec_yaml};
use proffer_k8s::installed::Installed;
use proffer_k8s::pki::ClusterPki;
use proffer_proto::leader::MasterList;
use proffer_sdk::service::core::CoreConfig;
use proffer_sdk::service::http::Shared;
use proffer_sdk::service::runner::{RunConfig, RunOutcome, prepare};
use proffer_sdk::service::{RollupStatus, ServiceSpec};
use tokio_util::sync::CancellationToken;

use crate::deploy_watch::{POLL_EVERY, Ran, Source, Watch, run_watched};
use crate::k8s_options::{DeployArgs, Resolved, pki_token};
use crate::progress::{OutputArgs, Style, short_duration};

/// Flags of `proffer k8s install`.
#[derive(Debug, Args)]
pub(crate) struct InstallArgs {
    #[command(flatten)]
    pub(crate) deploy: DeployArgs,
    /// The master, HOST:PORT, or several, comma-separated (h1:5050,h2:5050,h3:5050): the
    /// scheduler subscribes to whichever leads and follows it across failovers.
    #[arg(long, env = "PROFFER_MASTER", default_value = "127.0.0.1:5050")]
    pub(crate) master: MasterList,
    /// Serve the scheduler's HTTP API here (for `proffer service plan --api`; port 0 picks a
    /// free one). The later verbs use it by default.
    #[arg(long)]
    pub(crate) http: Option<SocketAddr>,
    /// Run the uninstall plan and exit.
    #[arg(long)]
    pub(crate) uninstall: bool,
    /// Launch without reservations: etcd data then lives in the sandbox and a relaunched
    /// member rejoins by member remove/add instead of restarting from its volume.
    #[arg(long)]
    pub(crate) no_reservations: bool,
    /// Exit when the deploy plan is COMPLETE (status 0) or has failed (non-zero, naming the
    /// step); the cluster keeps running until the framework's failover timeout.
    #[arg(long)]
    pub(crate) wait: bool,
    /// With --wait: give up once one task failed this many times.
    #[arg(long, default_value_t = 3, requires = "wait")]
    pub(crate) max_failures: u32,
    #[command(flatten)]
    pub(crate) output: OutputArgs,
    /// Run by `proffer local --k8s`, which says what is a stand-in itself and stops the
    /// cluster when it exits.
    #[arg(skip)]
    pub(crate) embedded: bool,
}

/// Writes the PKI bundle unless one exists; returns the generated spec and what it was
/// generated from.
pub(crate) fn prepare_spec(a: &DeployArgs) -> Result<(ServiceSpec, Resolved)> {
    let r = a.resolve()?;
    let dir = PathBuf::from(&r.opts.pki_dir);
    if dir.join("pki/ca.crt").exists() {
        eprintln!("k8s: keeping the existing PKI in {}", dir.display());
    } else {
        let pki = ClusterPki::generate(&pki_request(&r.cluster, &r.opts)?)?;
        pki.write_to(&dir)?;
        eprintln!("k8s: wrote the PKI bundle to {}", dir.display());
    }
    let yaml = spec_yaml(&service_spec(&r.cluster, &r.opts)?)?;
    let spec = ServiceSpec::parse(&yaml, &BTreeMap::new())
        .context("the generated spec does not validate")?;
    Ok((spec, r))
}

/// Which components are stand-ins and which are real, in one line (`None` without
/// stand-ins).
pub(crate) fn standins_note(cluster: &Cluster) -> Option<String> {
    let standins = cluster.standins();
    if standins.is_empty() {
        return None;
    }
    let real: Vec<String> = proffer_k8s::config::COMPONENTS
        .iter()
        .filter(|c| !standins.contains(c))
        .map(|c| {
            let a = cluster.artifact(c);
            match (c, a.and_then(|a| a.path.as_deref())) {
                (&"kubectl", Some("true")) => {
                    "kubectl is `true` (the addons step applies nothing)".to_string()
                }
                (c, Some(p)) => match proffer_k8s::check::resolve(p) {
                    Ok(file) => format!("{c} ({})", file.display()),
                    Err(_) => format!("{c} ({p})"),
                },
                (c, None) => (*c).to_string(),
            }
        })
        .collect();
    Some(format!(
        "STAND-INS, not the real programs: {} (test doubles that check their flags and \
         certificates and serve health endpoints; no pods, no DNS answers). Real: {}.",
        standins.join(", "),
        real.join("; ")
    ))
}

/// `proffer k8s install`: writes the PKI, runs the cluster's scheduler in the foreground and
/// follows its deploy plan (with `--wait`, until it is COMPLETE or has failed).
pub(crate) async fn install(a: InstallArgs, cancel: CancellationToken) -> Result<bool> {
    let (spec, r) = prepare_spec(&a.deploy)?;
    if !a.uninstall
        && !a.embedded
        && let Some(note) = standins_note(&r.cluster)
    {
        eprintln!("k8s: {note}");
    }
    let cfg = RunConfig {
        master: a.master.to_string(),
        state_dir: a.deploy.state.join("scheduler"),
        core: CoreConfig {
            reservations: !a.no_reservations,
            framework_host: "127.0.0.1".into(),
            ..CoreConfig::default()
        },
        http: a.http,
        options: BTreeMap::new(),
        uninstall: a.uninstall,
    };
    let (handle, listener) = prepare(spec, &cfg).await?;
    if let Some(addr) = r.record.serve_pki {
        let l = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("--serve-pki {addr}"))?;
        let token = pki_token(&a.deploy.state)?;
        tokio::spawn(proffer_k8s::bundle::serve(
            l,
            PathBuf::from(&r.opts.pki_dir),
            r.opts.control_plane.clone(),
            token,
        ));
        eprintln!("k8s: serving the PKI bundles on http://{addr}/pki/…");
    }
    if let Some(addr) = handle.http_addr {
        eprintln!("k8s: scheduler API on {addr} (proffer k8s status --api {addr})");
    }
    if !a.uninstall {
        let record = Installed {
            master: Some(a.master.to_string()),
            api: handle.http_addr.map(|h| h.to_string()),
            reservations: !a.no_reservations,
            ..r.record.clone()
        };
        record.save(&a.deploy.state)?;
    }
    let style = a.output.style();
    let watch = Watch {
        source: Source::Local(handle.shared.clone()),
        plan: None,
        style,
        masters: Some(a.master.clone()),
        max_failures: a.wait.then_some(a.max_failures),
    };
    let phases = cancel.child_token();
    if style == Style::Lines {
        tokio::spawn(phase_lines(handle.shared.clone(), phases.clone()));
    }
    let ran = run_watched(handle, listener, cfg, &watch, a.wait, cancel).await;
    phases.cancel();
    match ran? {
        Ran::Waited if a.embedded => {}
        Ran::Waited => {
            eprintln!("k8s: deployed; the scheduler stopped (the cluster keeps running)")
        }
        Ran::Ended(RunOutcome::Uninstalled) => eprintln!("k8s: uninstalled"),
        Ran::Ended(RunOutcome::Stopped) => {}
    }
    Ok(true)
}

/// Plain lines as the plans' phases complete (`deploy: etcd-0 COMPLETE [1.2s]`), for logs and
/// pipes, where the progress counts alone do not say which part of the cluster is up; the
/// phases that complete the plan are in the watch's summary.
async fn phase_lines(shared: Arc<Shared>, stop: CancellationToken) {
    let start = Instant::now();
    let mut shown: BTreeSet<(String, String)> = BTreeSet::new();
    let mut poll = tokio::time::interval(POLL_EVERY);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = poll.tick() => {}
        }
        let done: Vec<(String, String)> = {
            let core = shared.core.lock().unwrap_or_else(|e| e.into_inner());
            // A plan that is COMPLETE is summed up by the watch (its last phases would come
            // after the summary).
            core.plans()
                .iter()
                .filter(|p| p.status() != RollupStatus::Complete)
                .flat_map(|p| {
                    p.phases
                        .iter()
                        .filter(|ph| ph.status() == RollupStatus::Complete)
                        .map(|ph| (p.name.clone(), ph.name.clone()))
                })
                .collect()
        };
        for (plan, phase) in done {
            let line = format!(
                "{plan}: {phase} COMPLETE [{}]",
                short_duration(start.elapsed())
            );
            if shown.insert((plan, phase)) {
                crate::output::text(&line);
            }
        }
    }
}
