//! `proffer k8s …`: Kubernetes clusters on Proffer (see framework-k8s/README.md).
//!
//! `check` validates a `cluster.yaml`; `spec` writes the PKI bundle and prints the generated
//! service spec; `install` does both and runs the cluster's scheduler in the foreground
//! (`--uninstall` tears the cluster down when no scheduler runs); `kubeconfig` writes the admin
//! kubeconfig. Against a running scheduler's HTTP API (`--api`): `scale-nodes N` and
//! `upgrade --version V` rewrite the config file and send the regenerated spec; `status`
//! shows plans and pods; `plan` is `proffer service plan`; `uninstall` starts the uninstall
//! plan. `why`, `pod` and the offer log are `proffer service … --api`.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Args, FromArgMatches, Subcommand};
use proffer_k8s::config::{Cluster, ClusterConfig};
use proffer_k8s::deploy::{DeployOptions, pki_request, service_spec, spec_yaml};
use proffer_k8s::pki::{ClusterPki, Host, write_file};
use proffer_proto::leader::MasterList;
use proffer_sdk::service::ServiceSpec;
use proffer_sdk::service::core::CoreConfig;
use proffer_sdk::service::runner::{RunConfig, RunOutcome, prepare};
use tokio_util::sync::CancellationToken;

use crate::deploy_watch::{End, Ran, Source, Watch, run_watched};
use crate::output::text as out;

/// Flags of `proffer k8s`.
#[derive(Debug, Args)]
pub struct K8sArgs {
    #[command(subcommand)]
    command: K8sCommand,
}

#[derive(Debug, Subcommand)]
enum K8sCommand {
    /// Validate a cluster.yaml and print the resolved values.
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

#[derive(Debug, Args)]
struct ApiArgs {
    /// The running scheduler's HTTP API, HOST:PORT.
    #[arg(long, env = "PROFFER_SERVICE")]
    api: String,
}

#[derive(Debug, Args)]
struct UpgradeArgs {
    #[command(flatten)]
    deploy: DeployArgs,
    /// The running scheduler's HTTP API, HOST:PORT.
    #[arg(long, env = "PROFFER_SERVICE")]
    api: String,
    /// The Kubernetes version to roll to (vMAJOR.MINOR.PATCH).
    #[arg(long)]
    version: String,
    #[command(flatten)]
    follow: FollowArgs,
}

/// How `upgrade` follows the update plan it starts.
#[derive(Debug, Args)]
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
    /// The running scheduler's HTTP API, HOST:PORT.
    #[arg(long, env = "PROFFER_SERVICE")]
    api: String,
    /// Print JSON (`{"plans": …, "pods": …}`).
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct PlanArgs {
    /// The running scheduler's HTTP API, HOST:PORT.
    #[arg(long, env = "PROFFER_SERVICE")]
    api: String,
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
    /// The running scheduler's HTTP API, HOST:PORT.
    #[arg(long, env = "PROFFER_SERVICE")]
    api: String,
    /// The new node count.
    nodes: u32,
}

#[derive(Debug, Args)]
struct CheckArgs {
    /// The cluster configuration.
    #[arg(long)]
    config: PathBuf,
    /// The number of agents (checks node and control-plane counts).
    #[arg(long)]
    agents: Option<usize>,
}

#[derive(Debug, Args)]
struct DeployArgs {
    /// The cluster configuration.
    #[arg(long)]
    config: PathBuf,
    /// State directory of this cluster (the PKI bundle goes to STATE/pki).
    #[arg(long)]
    state: PathBuf,
    /// A control-plane host, NAME=IP (repeat once per control-plane instance).
    #[arg(long = "control-plane", value_name = "NAME=IP")]
    control_plane: Vec<String>,
    /// All agents on this machine: control-plane hosts default to 127.0.0.1 and instances
    /// get their own port blocks.
    #[arg(long)]
    local: bool,
    /// The k8s-probe program used by readiness checks (default: next to this binary).
    #[arg(long)]
    probe: Option<String>,
    /// Nodes one agent may host.
    #[arg(long, default_value_t = 1)]
    nodes_per_agent: u32,
    /// Tasks fetch their PKI files over HTTP from this address (which `install` serves)
    /// instead of reading STATE/pki on the agents. Plain HTTP, guarded by a random token in
    /// the URL (STATE/pki-token): for a trusted network only.
    #[arg(long, value_name = "IP:PORT")]
    serve_pki: Option<SocketAddr>,
}

#[derive(Debug, Args)]
struct InstallArgs {
    #[command(flatten)]
    deploy: DeployArgs,
    /// The master, HOST:PORT, or several, comma-separated (h1:5050,h2:5050,h3:5050): the
    /// scheduler subscribes to whichever leads and follows it across failovers.
    #[arg(long, env = "PROFFER_MASTER", default_value = "127.0.0.1:5050")]
    master: MasterList,
    /// Serve the scheduler's HTTP API here (for `proffer service plan --api`).
    #[arg(long)]
    http: Option<SocketAddr>,
    /// Run the uninstall plan and exit.
    #[arg(long)]
    uninstall: bool,
    /// Launch without reservations: etcd data then lives in the sandbox and a relaunched
    /// member rejoins by member remove/add instead of restarting from its volume.
    #[arg(long)]
    no_reservations: bool,
    /// Exit when the deploy plan is COMPLETE (status 0) or has failed (non-zero, naming the
    /// step); the cluster keeps running until the framework's failover timeout.
    #[arg(long)]
    wait: bool,
    /// With --wait: give up once one task failed this many times.
    #[arg(long, default_value_t = 3, requires = "wait")]
    max_failures: u32,
    #[command(flatten)]
    output: crate::progress::OutputArgs,
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

fn load_cluster(path: &Path, agents: Option<usize>) -> Result<Cluster> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    ClusterConfig::parse(&text, agents)
        .with_context(|| format!("invalid cluster config {}", path.display()))
}

fn deploy_options(cluster: &Cluster, a: &DeployArgs) -> Result<DeployOptions> {
    let n = cluster.config.control_plane_count as usize;
    let mut hosts = Vec::new();
    for h in &a.control_plane {
        let (name, ip) = h
            .split_once('=')
            .with_context(|| format!("--control-plane `{h}`: expected NAME=IP"))?;
        let ip: IpAddr = ip
            .parse()
            .with_context(|| format!("--control-plane `{h}`: bad IP"))?;
        hosts.push(Host {
            name: name.to_string(),
            ip: Some(ip),
        });
    }
    if hosts.is_empty() && a.local {
        hosts = (0..n)
            .map(|i| Host {
                name: format!("cp-{i}"),
                ip: Some(IpAddr::from([127, 0, 0, 1])),
            })
            .collect();
    }
    if hosts.len() != n {
        bail!(
            "{} --control-plane hosts given, control-plane-count is {n} (or use --local)",
            hosts.len()
        );
    }
    let probe = match &a.probe {
        Some(p) => p.clone(),
        None => std::env::current_exe()
            .ok()
            .and_then(|e| e.parent().map(|d| d.join("k8s-probe")))
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "k8s-probe".into()),
    };
    let pki_dir = std::path::absolute(a.state.join("pki")).context("state directory")?;
    let pki_url = match a.serve_pki {
        Some(addr) if addr.ip().is_unspecified() => {
            bail!("--serve-pki {addr}: give the address the agents reach, not a wildcard")
        }
        Some(addr) => Some(format!("http://{addr}/pki/{}", pki_token(&a.state)?)),
        None => None,
    };
    Ok(DeployOptions {
        pki_dir: pki_dir.display().to_string(),
        probe,
        control_plane: hosts,
        local: a.local,
        nodes_per_agent: a.nodes_per_agent,
        pki_url,
    })
}

/// The cluster's PKI token (STATE/pki-token, made once, mode 0600).
fn pki_token(state: &Path) -> Result<String> {
    let path = state.join("pki-token");
    if let Ok(t) = std::fs::read_to_string(&path) {
        return Ok(t.trim().to_string());
    }
    let token = proffer_k8s::bundle::random_token().context("random token")?;
    write_file(&path, token.as_bytes(), true)?;
    Ok(token)
}

/// Writes the PKI bundle unless one exists; returns the generated spec.
fn prepare_spec(a: &DeployArgs) -> Result<ServiceSpec> {
    let cluster = load_cluster(&a.config, None)?;
    let opts = deploy_options(&cluster, a)?;
    let dir = PathBuf::from(&opts.pki_dir);
    if dir.join("pki/ca.crt").exists() {
        eprintln!("k8s: keeping the existing PKI in {}", dir.display());
    } else {
        let pki = ClusterPki::generate(&pki_request(&cluster, &opts)?)?;
        pki.write_to(&dir)?;
        eprintln!("k8s: wrote the PKI bundle to {}", dir.display());
    }
    let yaml = spec_yaml(&service_spec(&cluster, &opts)?)?;
    ServiceSpec::parse(&yaml, &BTreeMap::new()).context("the generated spec does not validate")
}

/// Runs `proffer k8s …`.
pub async fn run(args: K8sArgs, cancel: CancellationToken) -> Result<bool> {
    match args.command {
        K8sCommand::Check(a) => {
            let c = load_cluster(&a.config, a.agents)?;
            println!(
                "cluster {} ({}), Kubernetes {}",
                c.config.name,
                c.framework_name(),
                c.config.kubernetes_version
            );
            println!(
                "role {}, control plane {}, nodes {}",
                c.role(),
                c.config.control_plane_count,
                c.config.node_count
            );
            println!(
                "service network {} (kubernetes {}, dns {}), pod network {}",
                c.service_cidr, c.api_service_ip, c.dns_ip, c.cluster_cidr
            );
            println!("ports {}", serde_json::to_string(&c.ports)?);
            for (name, art) in &c.config.artifacts {
                match (&art.url, &art.path) {
                    (Some(u), _) => println!(
                        "artifact {name}: {u} sha256 {}",
                        art.sha256.as_deref().unwrap_or("-")
                    ),
                    (None, Some(p)) => println!("artifact {name}: {p} (on every agent)"),
                    _ => {}
                }
            }
            Ok(true)
        }
        K8sCommand::Spec(a) => {
            let spec = prepare_spec(&a)?;
            print!("{}", spec_yaml(&spec)?);
            Ok(true)
        }
        K8sCommand::Install(a) => install(a, cancel).await,
        K8sCommand::ScaleNodes(a) => {
            let text = read_config(&a.deploy.config)?;
            let text = set_top_level(&text, "node-count", &a.nodes.to_string());
            let cluster = ClusterConfig::parse(&text, None)
                .with_context(|| format!("node count {}", a.nodes))?;
            let opts = deploy_options(&cluster, &a.deploy)?;
            let added = proffer_k8s::pki::add_nodes(
                Path::new(&opts.pki_dir),
                &pki_request(&cluster, &opts)?,
            )?;
            if !added.is_empty() {
                eprintln!("k8s: issued certificates for {}", added.join(", "));
            }
            send_update(&a.api, &cluster, &opts).await?;
            save_config(&a.deploy.config, &text)?;
            Ok(true)
        }
        K8sCommand::Upgrade(a) => {
            let text = read_config(&a.deploy.config)?;
            let old = ClusterConfig::parse(&text, None)
                .with_context(|| format!("invalid cluster config {}", a.deploy.config.display()))?;
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
            let opts = deploy_options(&cluster, &a.deploy)?;
            send_update(&a.api, &cluster, &opts).await?;
            save_config(&a.deploy.config, &text)?;
            eprintln!(
                "k8s: rolling {} → {} (follow with: proffer k8s plan --api {} update)",
                old.config.kubernetes_version, cluster.config.kubernetes_version, a.api
            );
            follow_update(&a.api, &a.follow, cancel).await
        }
        K8sCommand::Status(a) => status(&a).await,
        K8sCommand::Plan(a) => {
            let mut argv = vec!["service", "plan", "--api", a.api.as_str()];
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
            let answer =
                proffer_sdk::service::http::request(&a.api, "POST", "/v1/uninstall", "").await?;
            out(&crate::service_text::uninstalling(&a.api, &answer));
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

/// Regenerates the spec and sends it to the scheduler's update API.
async fn send_update(api: &str, cluster: &Cluster, opts: &DeployOptions) -> Result<()> {
    let yaml = spec_yaml(&service_spec(cluster, opts)?)?;
    ServiceSpec::parse(&yaml, &BTreeMap::new()).context("the generated spec does not validate")?;
    let answer = proffer_sdk::service::http::request(api, "POST", "/v1/update", &yaml).await?;
    out(&crate::service_text::updated(api, &answer));
    Ok(())
}

/// `proffer k8s install`: writes the PKI, runs the cluster's scheduler in the foreground and
/// follows its deploy plan (with `--wait`, until it is COMPLETE or has failed).
async fn install(a: InstallArgs, cancel: CancellationToken) -> Result<bool> {
    let spec = prepare_spec(&a.deploy)?;
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
    if let Some(addr) = a.deploy.serve_pki {
        let l = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("--serve-pki {addr}"))?;
        let cluster = load_cluster(&a.deploy.config, None)?;
        let opts = deploy_options(&cluster, &a.deploy)?;
        let token = pki_token(&a.deploy.state)?;
        tokio::spawn(proffer_k8s::bundle::serve(
            l,
            PathBuf::from(&opts.pki_dir),
            opts.control_plane,
            token,
        ));
        eprintln!("k8s: serving the PKI bundles on http://{addr}/pki/…");
    }
    if let Some(addr) = handle.http_addr {
        eprintln!("k8s: scheduler API on {addr} (proffer service plan --api {addr})");
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
            eprintln!("k8s: deployed; the scheduler stopped (the cluster keeps running)")
        }
        Ran::Ended(RunOutcome::Uninstalled) => eprintln!("k8s: uninstalled"),
        Ran::Ended(RunOutcome::Stopped) => {}
    }
    Ok(true)
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
    let plans = proffer_sdk::service::http::request(&a.api, "GET", "/v1/plans", "").await?;
    let pods = proffer_sdk::service::http::request(&a.api, "GET", "/v1/pod", "").await?;
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
