//! `proffer local --k8s`: once the local agents are up, a Kubernetes cluster of one control
//! plane and one node is installed on them, with the same code as `proffer k8s install`
//! (`k8s_install::install`): the real etcd (the distribution's), the stand-in kube-* programs
//! and helpers from this `proffer` binary's hidden subcommands, resources sized for the
//! stand-ins so that it fits `proffer local`'s agents on a small machine, and a free port block
//! for the control plane. With `--exit-after-demo` it ends once the deploy plan is COMPLETE
//! (or has failed, naming the step; the failed task's stderr is shown as it happens).

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use proffer_k8s::config::{Cluster, ClusterConfig, Ports};
use proffer_k8s::programs::{Programs, STANDINS, current_binary};
use tokio_util::sync::CancellationToken;

use crate::k8s_install::{InstallArgs, install};
use crate::k8s_options::DeployArgs;
use crate::output::text as out;
use crate::progress::OutputArgs;

/// How long `--exit-after-demo` waits for the deploy plan to be COMPLETE.
const DEPLOY_LIMIT: Duration = Duration::from_secs(300);

/// Resources per component instance: the stand-ins and a small etcd need little (the real
/// components' defaults, 2.4 cpus in all, would not fit `proffer local`'s agents on 2 cores).
const RESOURCES: &str = "resources:
  etcd: {cpus: 0.2, memory: 256, disk: 64}
  kube-apiserver: {cpus: 0.2, memory: 256}
  kube-controller-manager: {cpus: 0.1, memory: 64}
  kube-scheduler: {cpus: 0.1, memory: 64}
  kubelet: {cpus: 0.1, memory: 64, disk: 0}
  kube-proxy: {cpus: 0.05, memory: 32}
  coredns: {cpus: 0.05, memory: 32}
  kubectl: {cpus: 0.05, memory: 32}
";

/// The cluster.yaml of the local cluster: one control plane, one node, the control plane's
/// ports from `port_base`.
pub(crate) fn cluster_yaml(port_base: u16) -> String {
    let mut text = format!(
        "# written by `proffer local --k8s`\nname: local\ncontrol-plane-count: 1\n\
         node-count: 1\nport-base: {port_base}\n{RESOURCES}artifacts:\n  etcd: {{path: etcd}}\n"
    );
    for (component, _) in STANDINS {
        text.push_str(&format!("  {component}: {{standin: true}}\n"));
    }
    // There is no kubectl here (nor a stand-in): the addons step runs `true`.
    text.push_str("  kubectl: {path: 'true'}\n");
    text
}

/// A free block of [`Ports::BLOCK`] loopback ports below the kernel's ephemeral range and
/// outside the agents' offered ports (31000-32000), varied by process id so that two
/// `proffer local --k8s` started together do not pick the same one.
fn free_port_block() -> Result<u16> {
    const LOW: u32 = 20000;
    const HIGH: u32 = 30000;
    let block = u32::from(Ports::BLOCK);
    let slots = (HIGH - LOW) / block;
    let first = std::process::id() % slots;
    let free = |base: u32| {
        (base..base + block).all(|p| {
            u16::try_from(p).is_ok_and(|p| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok())
        })
    };
    (0..slots)
        .map(|k| LOW + (first + k) % slots * block)
        .find(|&b| free(b))
        .and_then(|b| u16::try_from(b).ok())
        .context("no free block of 11 ports in 20000-30000 for the control plane")
}

/// Installs the cluster on the agents of `master`; its files go to `work_dir/k8s`. Returns
/// when the deploy plan is COMPLETE (`exit_after`), or when `cancel` fires.
pub(crate) async fn run(
    master: &str,
    work_dir: &Path,
    exit_after: bool,
    cancel: CancellationToken,
) -> Result<bool> {
    let dir = work_dir.join("k8s");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let config = dir.join("cluster.yaml");
    let text = cluster_yaml(free_port_block()?);
    let cluster = ClusterConfig::parse(&text, None).context("the local cluster.yaml")?;
    std::fs::write(&config, &text).with_context(|| format!("cannot write {}", config.display()))?;
    announce(&cluster);
    let programs = Programs::Subcommands {
        binary: current_binary().context("cannot find the proffer binary")?,
    };
    let problems = crate::k8s_check::problems(&cluster, &programs, false);
    if !problems.is_empty() {
        bail!(
            "cannot install Kubernetes here:\n  {}",
            problems.join("\n  ")
        );
    }
    let state = dir.join("state");
    out(&format!(
        "  config {}, state {}",
        config.display(),
        state.display()
    ));
    if !exit_after {
        let s = state.display();
        out(&format!(
            "  once it is up: proffer k8s status --state {s}; proffer k8s scale-nodes --state {s} 2; \
             proffer k8s kubeconfig --state {s}"
        ));
    }
    let args = InstallArgs {
        deploy: DeployArgs {
            config: Some(config),
            state,
            local: true,
            ..DeployArgs::default()
        },
        master: master.parse().context("the master's address")?,
        http: Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0))),
        uninstall: false,
        no_reservations: false,
        wait: exit_after,
        max_failures: 3,
        output: OutputArgs::default(),
        embedded: true,
    };
    if exit_after {
        install_within(args, DEPLOY_LIMIT, cancel).await
    } else {
        install(args, cancel).await
    }
}

/// Says what is installed, which parts are stand-ins, and where the control plane listens.
fn announce(cluster: &Cluster) {
    out(
        "Kubernetes on the local agents: 1 control plane (etcd, kube-apiserver, \
         kube-controller-manager, kube-scheduler), 1 node (kubelet, kube-proxy), CoreDNS, addons",
    );
    if let Some(note) = crate::k8s_install::standins_note(cluster) {
        out(&format!("  {note}"));
    }
    let ports = proffer_k8s::deploy::instance_ports(cluster, 0, true);
    out(&format!(
        "  etcd https://127.0.0.1:{}, kube-apiserver https://127.0.0.1:{}",
        ports.etcd_client, ports.apiserver
    ));
}

/// Installs and waits for the deploy plan, giving up after `limit` (a deploy that never
/// completes, with nothing failing — nothing fits, say — ends too).
async fn install_within(
    args: InstallArgs,
    limit: Duration,
    cancel: CancellationToken,
) -> Result<bool> {
    let stop = cancel.child_token();
    let timer = {
        let stop = stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep(limit).await;
            stop.cancel();
        })
    };
    let result = install(args, stop.clone()).await;
    timer.abort();
    match result {
        Err(e) if stop.is_cancelled() && !cancel.is_cancelled() => Err(e.context(format!(
            "the deploy plan was not COMPLETE after {}s",
            limit.as_secs()
        ))),
        r => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_local_cluster_fits_two_one_cpu_agents() -> Result<()> {
        let cluster = ClusterConfig::parse(&cluster_yaml(20000), Some(2))?;
        assert_eq!(cluster.standins().len(), STANDINS.len());
        let mut cpus = 0.0;
        for c in proffer_k8s::config::COMPONENTS {
            let n = if c == "coredns" { 2.0 } else { 1.0 };
            cpus += n * cluster.resources(c).cpus;
        }
        assert!(cpus <= 1.0, "{cpus} cpus");
        let block = free_port_block()?;
        assert!((20000..30000).contains(&block));
        Ok(())
    }
}
