//! `proffer k8s check`: validates a `cluster.yaml`, prints the resolved values, and checks
//! every program and artifact the deploy will run (exists, executable, checksum; etcd
//! installed, else the package to install) — see `proffer_k8s::check`.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;
use proffer_k8s::check::{Need, needs};
use proffer_k8s::config::{Cluster, ClusterConfig};
use proffer_k8s::installed::Installed;
use proffer_k8s::programs::Programs;

use crate::k8s_options::ProgramArgs;

/// Flags of `proffer k8s check`.
#[derive(Debug, Args)]
pub(crate) struct CheckArgs {
    /// The cluster configuration (default: the one the cluster in --state was installed
    /// with).
    #[arg(long)]
    config: Option<PathBuf>,
    /// The number of agents (checks node and control-plane counts).
    #[arg(long)]
    agents: Option<usize>,
    /// The state directory of an installed cluster: check with what it was installed with.
    #[arg(long)]
    state: Option<PathBuf>,
    #[command(flatten)]
    programs: ProgramArgs,
}

/// One line per need: `ok` or `MISSING`, what it is for, what runs, and the problem.
pub(crate) fn need_lines(needs: &[Need]) -> String {
    let width = needs.iter().map(|n| n.name.len()).max().unwrap_or(0);
    let mut text = String::new();
    for n in needs {
        let (mark, problem) = match &n.problem {
            None => ("ok     ", String::new()),
            Some(p) => ("PROBLEM", format!(": {p}")),
        };
        text.push_str(&format!(
            "  {mark} {:width$}  {}{problem}\n",
            n.name, n.what
        ));
    }
    text
}

/// The needs of `cluster` that are not usable here, as lines (empty: all fine).
pub(crate) fn problems(cluster: &Cluster, programs: &Programs, fetch_pki: bool) -> Vec<String> {
    needs(cluster, programs, fetch_pki)
        .into_iter()
        .filter_map(|n| n.problem.map(|p| format!("{}: {p}", n.name)))
        .collect()
}

/// Runs `proffer k8s check`.
pub(crate) fn check(a: &CheckArgs) -> Result<bool> {
    let installed = match &a.state {
        Some(s) => Installed::load(s)?,
        None => None,
    };
    let config = match (&a.config, &installed) {
        (Some(c), _) => c.clone(),
        (None, Some(rec)) => rec.config.clone(),
        (None, None) => bail!("--config is required (or --state of an installed cluster)"),
    };
    let text = std::fs::read_to_string(&config)
        .with_context(|| format!("cannot read {}", config.display()))?;
    let c = ClusterConfig::parse(&text, a.agents)
        .with_context(|| format!("invalid cluster config {}", config.display()))?;
    let mut out = format!(
        "cluster {} ({}), Kubernetes {}\nrole {}, control plane {}, nodes {}\n\
         service network {} (kubernetes {}, dns {}), pod network {}\nports {}\n",
        c.config.name,
        c.framework_name(),
        c.config.kubernetes_version,
        c.role(),
        c.config.control_plane_count,
        c.config.node_count,
        c.service_cidr,
        c.api_service_ip,
        c.dns_ip,
        c.cluster_cidr,
        serde_json::to_string(&c.ports)?
    );
    if let Some(note) = crate::k8s_install::standins_note(&c) {
        out.push_str(&format!("{note}\n"));
    }
    let programs = a.programs.resolve(installed.as_ref())?;
    let fetch_pki = installed.as_ref().is_some_and(|i| i.serve_pki.is_some());
    let needs = needs(&c, &programs, fetch_pki);
    out.push_str(
        "what the deploy runs (checked on this machine; agents elsewhere need the same):\n",
    );
    out.push_str(&need_lines(&needs));
    crate::output::text(out.trim_end());
    let bad = needs.iter().filter(|n| n.problem.is_some()).count();
    if bad > 0 {
        bail!(
            "{bad} of the {} programs and artifacts the deploy needs are not usable here",
            needs.len()
        );
    }
    Ok(true)
}
