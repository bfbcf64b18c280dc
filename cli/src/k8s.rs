//! `proffer k8s …`: Kubernetes clusters on Proffer (see framework-k8s/README.md).
//!
//! `check` validates a `cluster.yaml`; `spec` writes the PKI bundle and prints the generated
//! service spec; `install` does both and runs the cluster's scheduler in the foreground
//! (`--uninstall` tears the cluster down); `kubeconfig` writes the admin kubeconfig;
//! `scale-nodes N` updates a running cluster's node count. Plans,
//! pods and `why` of a running cluster are `proffer service … --api` against its scheduler.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use proffer_k8s::config::{Cluster, ClusterConfig};
use proffer_k8s::deploy::{DeployOptions, pki_request, service_spec, spec_yaml};
use proffer_k8s::pki::{ClusterPki, Host, write_file};
use proffer_sdk::service::ServiceSpec;
use proffer_sdk::service::core::CoreConfig;
use proffer_sdk::service::runner::{RunConfig, RunOutcome, prepare, run_service};
use tokio_util::sync::CancellationToken;

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
}

#[derive(Debug, Args)]
struct InstallArgs {
    #[command(flatten)]
    deploy: DeployArgs,
    /// The master, HOST:PORT.
    #[arg(long, env = "PROFFER_MASTER", default_value = "127.0.0.1:5050")]
    master: String,
    /// Serve the scheduler's HTTP API here (for `proffer service plan --api`).
    #[arg(long)]
    http: Option<SocketAddr>,
    /// Run the uninstall plan and exit.
    #[arg(long)]
    uninstall: bool,
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
    Ok(DeployOptions {
        pki_dir: pki_dir.display().to_string(),
        probe,
        control_plane: hosts,
        local: a.local,
        nodes_per_agent: a.nodes_per_agent,
    })
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
        K8sCommand::Install(a) => {
            let spec = prepare_spec(&a.deploy)?;
            let cfg = RunConfig {
                master: a.master,
                state_dir: a.deploy.state.join("scheduler"),
                core: CoreConfig {
                    framework_host: "127.0.0.1".into(),
                    ..CoreConfig::default()
                },
                http: a.http,
                options: BTreeMap::new(),
                uninstall: a.uninstall,
            };
            let (handle, listener) = prepare(spec, &cfg).await?;
            if let Some(addr) = handle.http_addr {
                eprintln!("k8s: scheduler API on {addr} (proffer service plan --api {addr})");
            }
            let outcome = run_service(handle, listener, cfg, cancel).await?;
            if outcome == RunOutcome::Uninstalled {
                eprintln!("k8s: uninstalled");
            }
            Ok(true)
        }
        K8sCommand::ScaleNodes(a) => {
            let mut cluster = load_cluster(&a.deploy.config, None)?;
            cluster.config.node_count = a.nodes;
            let cluster = cluster.config.validate(None)?;
            let opts = deploy_options(&cluster, &a.deploy)?;
            let added = proffer_k8s::pki::add_nodes(
                Path::new(&opts.pki_dir),
                &pki_request(&cluster, &opts)?,
            )?;
            if !added.is_empty() {
                eprintln!("k8s: issued certificates for {}", added.join(", "));
            }
            let yaml = spec_yaml(&service_spec(&cluster, &opts)?)?;
            let answer =
                proffer_sdk::service::http::request(&a.api, "POST", "/v1/update", &yaml).await?;
            println!("{}", answer.trim());
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
