//! `proffer k8s …`: Kubernetes clusters on Proffer (see framework-k8s/README.md).
//!
//! `check` validates a `cluster.yaml` and checks every program and artifact the deploy runs
//! (`k8s_check`); `spec` writes the PKI bundle and prints the generated service spec; `install`
//! does both and runs the cluster's scheduler in the foreground (`k8s_install`; `--uninstall`
//! tears the cluster down when no scheduler runs); `kubeconfig` writes the admin kubeconfig.
//! Against a running scheduler's HTTP API (`--api`, default: the install's): `scale-nodes N`
//! and `upgrade --version V` rewrite the config file and send the regenerated spec, starting
//! from what the cluster was installed with (`k8s_options`); `status` shows plans and pods;
//! `plan` is `proffer service plan`; `uninstall` starts the uninstall plan. `why`, `pod` and
//! the offer log are `proffer service … --api`. The helper programs the deploy launches are
//! hidden subcommands of `proffer` (`k8s_tools`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Args, FromArgMatches, Subcommand};
use proffer_k8s::config::{Cluster, ClusterConfig};
use proffer_k8s::deploy::{DeployOptions, pki_request, service_spec, spec_yaml};
use proffer_k8s::installed::Installed;
use proffer_k8s::pki::write_file;
use proffer_proto::leader::MasterList;
use proffer_sdk::service::ServiceSpec;
use tokio_util::sync::CancellationToken;

use crate::deploy_watch::{End, Source, Watch};
use crate::k8s_check::CheckArgs;
use crate::k8s_install::{InstallArgs, install, prepare_spec};
use crate::k8s_options::{DeployArgs, Resolved};
use crate::output::text as out;

/// Flags of `proffer k8s`.
#[derive(Debug, Args)]
pub struct K8sArgs {
    #[command(subcommand)]
    command: K8sCommand,
}

#[derive(Debug, Subcommand)]
enum K8sCommand {
    /// Validate a cluster.yaml, print the resolved values and check every program and
    /// artifact the deploy runs (exists, executable, checksum) and that etcd is installed.
    Check(CheckArgs),
    /// Write the PKI bundle (once) and print the generated service spec.
    Spec(DeployArgs),
    /// Write the PKI bundle (once) and run the cluster's scheduler in the foreground.
    Install(InstallArgs),
    /// Write the admin kubeconfig of an installed cluster (mode 0600).
    Kubeconfig(KubeconfigArgs),
    /// Change the node count of a running cluster (issues certificates for new nodes).
    ScaleNodes(ScaleArgs),
    /// Rolling upgrade of a running cluster to another Kubernetes version.
    Upgrade(UpgradeArgs),
    /// Plans and pods of a running cluster.
    Status(StatusArgs),
    /// The plans of a running cluster (as `proffer service plan`).
    Plan(PlanArgs),
    /// Tear a running cluster down (its scheduler runs the uninstall plan, then exits).
    Uninstall(ApiArgs),
}

/// Where the running scheduler's API is.
#[derive(Debug, Args)]
struct ApiArgs {
    /// The running scheduler's HTTP API, HOST:PORT (or --state).
    #[arg(long, env = "PROFFER_SERVICE")]
    api: Option<String>,
    /// The cluster's state directory: its API is the one the install served.
    #[arg(long, conflicts_with = "api")]
    state: Option<PathBuf>,
}

impl ApiArgs {
    /// `--api`, else the API recorded in `--state`.
    fn api(&self) -> Result<String> {
        if let Some(api) = &self.api {
            return Ok(api.clone());
        }
        let Some(state) = &self.state else {
            bail!(
                "--api is required (the running scheduler's HTTP API), or --state of the cluster"
            );
        };
        let installed = Installed::load(state)?;
        installed.and_then(|i| i.api).with_context(|| {
            format!(
                "--api is required: {} records no API (the install ran without --http)",
                Installed::path(state).display()
            )
        })
    }
}

#[derive(Debug, Args)]
struct UpgradeArgs {
    #[command(flatten)]
    deploy: DeployArgs,
    /// The running scheduler's HTTP API, HOST:PORT (default: the one the install served).
    #[arg(long, env = "PROFFER_SERVICE")]
    api: Option<String>,
    /// The Kubernetes version to roll to (vMAJOR.MINOR.PATCH).
    #[arg(long)]
    version: String,
    #[command(flatten)]
    check: crate::service::service_update::CheckArgs,
    #[command(flatten)]
    follow: FollowArgs,
}

/// How `upgrade` follows the update plan it starts.
#[derive(Debug, Clone, Args)]
struct FollowArgs {
    /// Follow the update plan until it is COMPLETE (status 0) or has failed (non-zero,
    /// naming the step), also when stdout is not a terminal (on a terminal it is followed
    /// unless --detach).
    #[arg(long, conflicts_with = "detach")]
    wait: bool,
    /// Return once the scheduler accepted the change; do not follow the plan.
    #[arg(long)]
    detach: bool,
    /// Give up following once one task failed this many times.
    #[arg(long, default_value_t = 3)]
    max_failures: u32,
    /// The master(s), to find failed tasks' agents and show the end of their stderr.
    #[arg(long, env = "PROFFER_MASTER")]
    master: Option<MasterList>,
    #[command(flatten)]
    output: crate::progress::OutputArgs,
}

#[derive(Debug, Args)]
struct StatusArgs {
    #[command(flatten)]
    api: ApiArgs,
    /// Print JSON (`{"plans": …, "pods": …}`).
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct PlanArgs {
    #[command(flatten)]
    api: ApiArgs,
    /// The plan (default: all).
    name: Option<String>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct ScaleArgs {
    #[command(flatten)]
    deploy: DeployArgs,
    /// The running scheduler's HTTP API, HOST:PORT (default: the one the install served).
    #[arg(long, env = "PROFFER_SERVICE")]
    api: Option<String>,
    /// The new node count.
    nodes: u32,
    #[command(flatten)]
    check: crate::service::service_update::CheckArgs,
}

#[derive(Debug, Args)]
struct KubeconfigArgs {
    /// State directory of the cluster.
    #[arg(long)]
    state: PathBuf,
    /// Where to write it (default: print to stdout).
    #[arg(long)]
    out: Option<PathBuf>,
}

/// Runs `proffer k8s …`.
pub async fn run(args: K8sArgs, cancel: CancellationToken) -> Result<bool> {
    match args.command {
        K8sCommand::Check(a) => crate::k8s_check::check(&a),
        K8sCommand::Spec(a) => {
            let (spec, _) = prepare_spec(&a)?;
            print!("{}", spec_yaml(&spec)?);
            Ok(true)
        }
        K8sCommand::Install(a) => install(a, cancel).await,
        K8sCommand::ScaleNodes(a) => scale_nodes(&a).await,
        K8sCommand::Upgrade(a) => upgrade(&a, cancel).await,
        K8sCommand::Status(a) => status(&a).await,
        K8sCommand::Plan(a) => {
            let api = a.api.api()?;
            let mut argv = vec!["service", "plan", "--api", api.as_str()];
            if a.json {
                argv.push("--json");
            }
            if let Some(n) = &a.name {
                argv.push(n);
            }
            let cmd = crate::service::ServiceArgs::augment_args(clap::Command::new("proffer"));
            let m = cmd
                .try_get_matches_from(&argv)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let args = crate::service::ServiceArgs::from_arg_matches(&m)?;
            crate::service::run(args, cancel).await
        }
        K8sCommand::Uninstall(a) => {
            let api = a.api()?;
            let answer =
                proffer_sdk::service::http::request(&api, "POST", "/v1/uninstall", "").await?;
            out(&crate::service_text::uninstalling(&api, &answer));
            Ok(true)
        }
        K8sCommand::Kubeconfig(a) => {
            let src = a.state.join("pki/admin.conf");
            let text = std::fs::read_to_string(&src).with_context(|| {
                format!("no admin kubeconfig at {} (install first)", src.display())
            })?;
            match a.out {
                Some(out) => {
                    write_file(&out, text.as_bytes(), true)?;
                    eprintln!(
                        "k8s: wrote {} (use: kubectl --kubeconfig {} get nodes)",
                        out.display(),
                        out.display()
                    );
                }
                None => print!("{text}"),
            }
            Ok(true)
        }
    }
}

/// `proffer k8s scale-nodes N`: issues certificates for new nodes, sends the spec with the
/// new count and rewrites `node-count` in the config.
async fn scale_nodes(a: &ScaleArgs) -> Result<bool> {
    let installed = a.deploy.installed()?;
    let config = a.deploy.config_path(installed.as_ref())?;
    let text = set_top_level(&read_config(&config)?, "node-count", &a.nodes.to_string());
    let r = a
        .deploy
        .resolve_with(Some(text))
        .with_context(|| format!("node count {}", a.nodes))?;
    if a.check.dry_run {
        let api = api_of(a.api.as_deref(), &r)?;
        return send_update(&api, &r.cluster, &r.opts, a.check).await;
    }
    let added = proffer_k8s::pki::add_nodes(
        Path::new(&r.opts.pki_dir),
        &pki_request(&r.cluster, &r.opts)?,
    )?;
    if !added.is_empty() {
        eprintln!("k8s: issued certificates for {}", added.join(", "));
    }
    let api = api_of(a.api.as_deref(), &r)?;
    send_update(&api, &r.cluster, &r.opts, a.check).await?;
    save_config(&r.config, &r.text)?;
    remember(&a.deploy.state, &r, &api)?;
    Ok(true)
}

/// `proffer k8s upgrade --version V`: sends the spec at the new version, rewrites the config
/// and follows the update plan.
async fn upgrade(a: &UpgradeArgs, cancel: CancellationToken) -> Result<bool> {
    let installed = a.deploy.installed()?;
    let config = a.deploy.config_path(installed.as_ref())?;
    let text = read_config(&config)?;
    let old = ClusterConfig::parse(&text, None)
        .with_context(|| format!("invalid cluster config {}", config.display()))?;
    let (text, cluster) = with_version(&text, &a.version)?;
    if old.config.kubernetes_version == cluster.config.kubernetes_version {
        bail!(
            "the cluster is already at {} (nothing to upgrade)",
            a.version
        );
    }
    for (name, art) in &cluster.config.artifacts {
        if art
            .url
            .as_deref()
            .is_some_and(|u| u.contains(&old.config.kubernetes_version))
        {
            eprintln!(
                "k8s: warning: artifacts.{name} still names {} ({})",
                old.config.kubernetes_version,
                art.url.as_deref().unwrap_or_default()
            );
        }
    }
    let r = a.deploy.resolve_with(Some(text))?;
    let api = api_of(a.api.as_deref(), &r)?;
    if a.check.dry_run {
        return send_update(&api, &r.cluster, &r.opts, a.check).await;
    }
    send_update(&api, &r.cluster, &r.opts, a.check).await?;
    save_config(&r.config, &r.text)?;
    remember(&a.deploy.state, &r, &api)?;
    eprintln!(
        "k8s: rolling {} → {} (follow with: proffer k8s plan --api {api} update)",
        old.config.kubernetes_version, r.cluster.config.kubernetes_version
    );
    let mut follow = a.follow.clone();
    if follow.master.is_none() {
        let master = r.installed.as_ref().and_then(|i| i.master.as_deref());
        follow.master = master.and_then(|m| m.parse().ok());
    }
    follow_update(&api, &follow, cancel).await
}

/// The scheduler's API: `--api`, else the one the install served.
fn api_of(given: Option<&str>, r: &Resolved) -> Result<String> {
    match (given, r.installed.as_ref().and_then(|i| i.api.as_deref())) {
        (Some(api), _) | (None, Some(api)) => Ok(api.to_string()),
        (None, None) => bail!(
            "--api is required (the running scheduler's HTTP API; the install recorded none: \
             it ran without --http)"
        ),
    }
}

/// Keeps what the cluster now runs with (the settings just sent, the API that took them).
fn remember(state: &Path, r: &Resolved, api: &str) -> Result<()> {
    let record = Installed {
        api: Some(api.to_string()),
        ..r.record.clone()
    };
    if r.installed.as_ref() != Some(&record) {
        record.save(state)?;
    }
    Ok(())
}

fn read_config(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

/// Writes the changed config back (through a temporary file, so a failure leaves the old one).
fn save_config(path: &Path, text: &str) -> Result<()> {
    let tmp = path.with_extension("yaml.tmp");
    std::fs::write(&tmp, text).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot replace {}", path.display()))?;
    eprintln!("k8s: updated {}", path.display());
    Ok(())
}

/// `text` with the top-level `key:` line set to `value` (appended when absent). Comments after
/// the old value are dropped; nested keys of the same name are left alone.
fn set_top_level(text: &str, key: &str, value: &str) -> String {
    let prefix = format!("{key}:");
    let mut found = false;
    let mut out: Vec<String> = text
        .lines()
        .map(|l| {
            if !found && l.starts_with(&prefix) {
                found = true;
                format!("{key}: {value}")
            } else {
                l.to_string()
            }
        })
        .collect();
    if !found {
        out.push(format!("{key}: {value}"));
    }
    out.join("\n") + "\n"
}

/// The config text at `version`, and the cluster it resolves to (the version is validated).
fn with_version(text: &str, version: &str) -> Result<(String, Cluster)> {
    let text = set_top_level(text, "kubernetes-version", version);
    let cluster =
        ClusterConfig::parse(&text, None).with_context(|| format!("--version {version}"))?;
    Ok((text, cluster))
}

/// Regenerates the spec and sends it to the scheduler's update API, which previews it (what
/// restarts, in which order) and refuses it when it cannot be placed unless `--force`; with
/// `--dry-run` only the preview is printed (false when it cannot be placed).
async fn send_update(
    api: &str,
    cluster: &Cluster,
    opts: &DeployOptions,
    check: crate::service::service_update::CheckArgs,
) -> Result<bool> {
    let yaml = spec_yaml(&service_spec(cluster, opts)?)?;
    ServiceSpec::parse(&yaml, &BTreeMap::new()).context("the generated spec does not validate")?;
    let how = crate::service::service_update::Send {
        dry_run: check.dry_run,
        force: check.force,
        json: false,
    };
    crate::service::service_update::send(api, &yaml, how).await
}

/// Follows the update plan at `api` after a change, as `follow` asks: on a terminal or with
/// `--wait`, until it is COMPLETE (`Ok(true)`) or has failed (an error naming the step).
async fn follow_update(api: &str, follow: &FollowArgs, cancel: CancellationToken) -> Result<bool> {
    if follow.detach || !(follow.wait || crate::progress::is_terminal()) {
        return Ok(true);
    }
    let watch = Watch {
        source: Source::Api(api.to_string()),
        plan: Some("update".into()),
        style: follow.output.style(),
        masters: follow.master.clone(),
        max_failures: Some(follow.max_failures),
    };
    match watch.round(&cancel).await? {
        End::Complete => Ok(true),
        End::Failed { plan, why } => bail!("{plan} failed: {why}"),
        End::Cancelled => {
            eprintln!(
                "k8s: stopped following; the update goes on (proffer k8s plan --api {api} update)"
            );
            Ok(true)
        }
    }
}

/// `proffer k8s status`: every plan's status, then one line per task.
async fn status(a: &StatusArgs) -> Result<bool> {
    use proffer_sdk::service::store::TaskRecord;
    let api = a.api.api()?;
    let plans = proffer_sdk::service::http::request(&api, "GET", "/v1/plans", "").await?;
    let pods = proffer_sdk::service::http::request(&api, "GET", "/v1/pod", "").await?;
    if a.json {
        let plans: serde_json::Value = serde_json::from_str(&plans).context("/v1/plans")?;
        let pods: serde_json::Value = serde_json::from_str(&pods).context("/v1/pod")?;
        out(&serde_json::to_string_pretty(
            &serde_json::json!({"plans": plans, "pods": pods}),
        )?);
        return Ok(true);
    }
    let plans: Vec<serde_json::Value> = serde_json::from_str(&plans).context("/v1/plans")?;
    let line: Vec<String> = plans
        .iter()
        .map(|p| {
            format!(
                "{} {}",
                p["name"].as_str().unwrap_or("?"),
                p["status"].as_str().unwrap_or("?")
            )
        })
        .collect();
    let mut text = format!("plans: {}\n", line.join(", "));
    let pods: BTreeMap<String, Vec<TaskRecord>> = serde_json::from_str(&pods).context("/v1/pod")?;
    text.push_str(&crate::service_text::pods_table(&pods));
    out(&text);
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = "name: prod\nkubernetes-version: v1.31.2 # pinned\nnode-count: 3\nartifacts: {etcd: {path: e}, kube-apiserver: {path: a}, kube-controller-manager: {path: c}, kube-scheduler: {path: s}, kubelet: {path: k}, kube-proxy: {path: p}, coredns: {path: d}, kubectl: {path: t}}\n";

    #[test]
    fn set_top_level_replaces_or_appends() {
        assert_eq!(
            set_top_level(CONFIG, "kubernetes-version", "v1.31.3"),
            CONFIG.replace("v1.31.2 # pinned", "v1.31.3")
        );
        assert_eq!(
            set_top_level("name: x\nresources:\n  node-count: 1", "node-count", "5"),
            "name: x\nresources:\n  node-count: 1\nnode-count: 5\n"
        );
    }

    #[test]
    fn with_version_validates_the_version() -> Result<()> {
        let (text, c) = with_version(CONFIG, "v1.32.0")?;
        assert_eq!(c.config.kubernetes_version, "v1.32.0");
        assert!(text.contains("kubernetes-version: v1.32.0\n"));
        for bad in ["1.32.0", "v1.32", "latest", ""] {
            let e = with_version(CONFIG, bad).err().map(|e| format!("{e:#}"));
            assert!(
                e.as_deref()
                    .is_some_and(|e| e.contains("kubernetes-version")),
                "{bad}: {e:?}"
            );
        }
        Ok(())
    }
}
