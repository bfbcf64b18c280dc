//! The PKI through the fetcher: the bundle is served over HTTP (`bundle::serve`) and every task
//! fetches only its own subset as a tar; the spec never names the bundle directory. A cluster
//! deploys this way, each sandbox holds exactly its files (keys 0600), and the server refuses a
//! wrong token.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use common::REQUEST_TIMEOUT;
use common::cluster::{K8s, Proffer, ProfferOptions, cluster_yaml, etcd_path, free_block};

/// Every file named `name` under `root`.
fn find(root: &Path, name: &str, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(root) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        let Ok(ft) = e.file_type() else { continue };
        if ft.is_dir() {
            find(&p, name, out);
        } else if p.file_name().is_some_and(|n| n == name) {
            out.push(p);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_fetch_their_pki_subset_over_http() -> Result<()> {
    let Some(etcd) = etcd_path() else {
        println!("SKIP pki fetch: no `etcd` on PATH (apt-get install etcd-server)");
        return Ok(());
    };
    let block = free_block(3600);
    let proffer = Proffer::start(&ProfferOptions::new(2, block)).await?;
    let k8s = K8s::install_with(
        &proffer,
        cluster_yaml(1, 2, block, &etcd),
        1,
        K8s::core(),
        true,
    )
    .await?;
    let result = async {
        if k8s.spec_text.contains(&k8s.opts.pki_dir) {
            bail!("the spec names the bundle directory");
        }
        let url = k8s.opts.pki_url.clone().context("no pki url")?;
        if k8s.spec_text.matches(&format!("{url}/")).count() < 7 {
            bail!("not every task fetches its bundle: {}", k8s.spec_text);
        }
        let d = k8s.wait_deploy(Duration::from_secs(120)).await?;
        println!("deploy with fetched PKI COMPLETE in {:.2?}", d.took);
        if k8s.readyz(0).await? != 200 {
            bail!("apiserver not ready");
        }
        // Each sandbox got its own subset: the cluster CA key only reaches the
        // controller-manager (it signs certificates), etcd serving keys only the etcd member,
        // kubelet kubeconfigs their node; keys are 0600; no archive is left behind.
        let roots = proffer.roots();
        let files = |name: &str| {
            let mut out = Vec::new();
            for r in &roots {
                find(r, name, &mut out);
            }
            out
        };
        let sandboxes_of = |name: &str| -> Vec<String> {
            files(name)
                .iter()
                .filter(|p| !p.to_string_lossy().contains("/volumes/"))
                .filter_map(|p| {
                    p.ancestors()
                        .find(|a| a.join("stdout").exists())
                        .and_then(|s| s.file_name())
                        .map(|n| n.to_string_lossy().into_owned())
                })
                .collect()
        };
        let ca_key = sandboxes_of("ca.key");
        assert_eq!(ca_key.len(), 1, "ca.key in {ca_key:?}");
        assert!(ca_key[0].contains("controller-manager"), "{ca_key:?}");
        let etcd_key = sandboxes_of("server.key");
        assert_eq!(etcd_key.len(), 1, "server.key in {etcd_key:?}");
        assert!(etcd_key[0].contains("etcd-0"), "{etcd_key:?}");
        let kubelet = sandboxes_of("kubelet.conf");
        assert_eq!(kubelet.len(), 2, "kubelet.conf in {kubelet:?}");
        for name in [
            "ca.key",
            "server.key",
            "kubelet.conf",
            "apiserver.key",
            "sa.key",
        ] {
            for p in files(name) {
                let mode = std::fs::metadata(&p)?.permissions().mode() & 0o777;
                assert_eq!(mode, 0o600, "{}", p.display());
            }
        }
        for bundle in ["etcd-0.tar", "kubelet-0.tar", "apiserver-0.tar"] {
            assert!(files(bundle).is_empty(), "{bundle} left in a sandbox");
        }
        // The server answers only with the token.
        let wrong = url.rsplit_once('/').map(|(b, _)| b).unwrap_or(&url);
        let r = proffer_k8s::http::request(
            "GET",
            &format!("{wrong}/not-the-token/etcd-0.tar"),
            None,
            None,
            REQUEST_TIMEOUT,
        )
        .await?;
        assert_eq!(r.status, 404);
        let r = proffer_k8s::http::request(
            "GET",
            &format!("{url}/etcd-0.tar"),
            None,
            None,
            REQUEST_TIMEOUT,
        )
        .await?;
        assert_eq!(r.status, 200);
        Ok::<(), anyhow::Error>(())
    }
    .await;
    k8s.finish(proffer, result).await
}
