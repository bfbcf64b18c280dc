//! Stand-ins with good flags serve their health endpoints where the real ones do (TLS clients
//! trusting the cluster CA); the apiserver stand-in is ready only while the real etcd answers.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;

use common::{
    Fixture, bin, etcd_binary, free_port, start, start_etcd, wait_status, wait_status_tls,
};
use proffer_k8s::etcd::{Etcd, EtcdTls};
use proffer_k8s::tlsutil::client_config;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubelet_coredns_and_unready_controller_manager_without_etcd() {
    let fx = Fixture::new(free_port());
    // kubelet: port from the KubeletConfiguration file.
    let hp = free_port();
    let cfg = fx.write(
        "kubelet.yaml",
        &format!("apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nhealthzPort: {hp}\nhealthzBindAddress: 127.0.0.1\nclusterDomain: cluster.local\nclusterDNS: [10.96.0.10]\nauthentication:\n  x509:\n    clientCAFile: {}\n", fx.p("pki/ca.crt")),
    );
    let mut kubelet = start(
        bin("kubelet"),
        &[
            format!("--kubeconfig={}", fx.p("kubelet-node-0.conf")),
            format!("--config={cfg}"),
            "--hostname-override=node-0".into(),
            "--container-runtime-endpoint=unix:///run/containerd/containerd.sock".into(),
        ],
    );
    let r = wait_status(
        &format!("http://127.0.0.1:{hp}/healthz"),
        None,
        200,
        &mut kubelet,
    )
    .await;
    assert_eq!(r.body, "ok");
    // coredns: health and ready on the Corefile's ports (no kubeconfig: ready at once).
    let (h, rd) = (free_port(), free_port());
    let corefile = fx.write(
        "Corefile",
        &format!(".:53 {{\n  errors\n  health 127.0.0.1:{h}\n  ready 127.0.0.1:{rd}\n  kubernetes cluster.local in-addr.arpa ip6.arpa\n  forward . /etc/resolv.conf\n}}\n"),
    );
    let mut dns = start(
        bin("coredns"),
        &["-conf".into(), corefile, "-dns.port=1053".into()],
    );
    wait_status(&format!("http://127.0.0.1:{h}/health"), None, 200, &mut dns).await;
    wait_status(&format!("http://127.0.0.1:{rd}/ready"), None, 200, &mut dns).await;
    // controller-manager with no apiserver behind its kubeconfig: serving, but unhealthy.
    let cm_port = free_port();
    let mut cm = start(
        bin("kube-controller-manager"),
        &[
            format!("--kubeconfig={}", fx.p("controller-manager.conf")),
            "--bind-address=127.0.0.1".into(),
            format!("--secure-port={cm_port}"),
            format!("--tls-cert-file={}", fx.p("pki/controller-manager.crt")),
            format!(
                "--tls-private-key-file={}",
                fx.p("pki/controller-manager.key")
            ),
            "--controllers=*,bootstrapsigner,tokencleaner".into(),
        ],
    );
    let r = wait_status(
        &format!("https://127.0.0.1:{cm_port}/healthz"),
        Some(&fx.pki.ca.pair.cert_pem),
        500,
        &mut cm,
    )
    .await;
    assert!(r.body.contains("leaderElection"), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_plane_with_real_etcd() {
    let Some(etcd_bin) = etcd_binary() else {
        println!(
            "SKIP control_plane_with_real_etcd: no `etcd` on PATH (apt-get install etcd-server)"
        );
        return;
    };
    let api_port = free_port();
    let fx = Fixture::new(api_port);
    let ca = fx.pki.ca.pair.cert_pem.clone();
    let etcd_port = free_port();
    let etcd_url = format!("https://127.0.0.1:{etcd_port}");

    // The apiserver starts before etcd: live but not ready.
    let mut api = start(bin("kube-apiserver"), &fx.apiserver_args(&etcd_url));
    let base = format!("https://127.0.0.1:{api_port}");
    wait_status(&format!("{base}/livez"), Some(&ca), 200, &mut api).await;
    let r = wait_status(&format!("{base}/readyz"), Some(&ca), 500, &mut api).await;
    assert!(r.body.contains("etcd"), "{r:?}");

    // etcd comes up (TLS, client-certificate auth): the apiserver registers and turns ready.
    let data = tempfile::tempdir().unwrap();
    let mut etcd = start_etcd(&etcd_bin, &fx, data.path(), etcd_port);
    wait_status(&format!("{base}/readyz"), Some(&ca), 200, &mut api).await;
    etcd.assert_alive();
    let etcd_tls = EtcdTls::new(
        &fx.pki.etcd_ca.pair.cert_pem,
        Some((
            &fx.pki.apiserver_etcd_client.cert_pem,
            &fx.pki.apiserver_etcd_client.key_pem,
        )),
        "etcd",
    )
    .unwrap();
    let client = Etcd::new(vec![etcd_url.clone()], Some(etcd_tls));
    let rec = client
        .get(&format!(
            "/registry/standin/kube-apiserver/127.0.0.1:{api_port}"
        ))
        .await
        .unwrap()
        .expect("the apiserver registered itself in etcd");
    assert!(String::from_utf8_lossy(&rec).contains("kube-apiserver"));

    // Client certificates are verified against the cluster CA.
    let admin = &fx.pki.clients["admin"];
    let admin_tls = client_config(&ca, Some((&admin.cert_pem, &admin.key_pem)), "admin").unwrap();
    let r = wait_status_tls(
        &format!("{base}/standin/whoami"),
        Some(admin_tls),
        200,
        &mut api,
    )
    .await;
    assert_eq!(r.body, "kubernetes-admin");

    // controller-manager and scheduler: healthy once the apiserver answered them.
    for (name, key, conf) in [
        (
            "kube-controller-manager",
            "controller-manager",
            "controller-manager.conf",
        ),
        ("kube-scheduler", "scheduler", "scheduler.conf"),
    ] {
        let port = free_port();
        let mut p = start(
            bin(name),
            &[
                format!("--kubeconfig={}", fx.p(conf)),
                format!("--authentication-kubeconfig={}", fx.p(conf)),
                format!("--authorization-kubeconfig={}", fx.p(conf)),
                "--bind-address=127.0.0.1".into(),
                format!("--secure-port={port}"),
                "--leader-elect=true".into(),
                format!("--tls-cert-file={}", fx.p(&format!("pki/{key}.crt"))),
                format!("--tls-private-key-file={}", fx.p(&format!("pki/{key}.key"))),
            ],
        );
        let r = wait_status(
            &format!("https://127.0.0.1:{port}/healthz"),
            Some(&ca),
            200,
            &mut p,
        )
        .await;
        assert_eq!(r.body, "ok", "{name}");
    }

    // kube-proxy: healthy after reaching the apiserver.
    let pp = free_port();
    let mut proxy = start(
        bin("kube-proxy"),
        &[
            format!("--kubeconfig={}", fx.p("kube-proxy.conf")),
            format!("--healthz-bind-address=127.0.0.1:{pp}"),
            "--cluster-cidr=10.244.0.0/16".into(),
            "--proxy-mode=iptables".into(),
            "--hostname-override=node-0".into(),
        ],
    );
    wait_status(
        &format!("http://127.0.0.1:{pp}/healthz"),
        None,
        200,
        &mut proxy,
    )
    .await;

    // CoreDNS: ready once its kubernetes plugin reached the apiserver.
    let (h, rd) = (free_port(), free_port());
    let corefile = fx.write(
        "Corefile",
        &format!(
            ".:53 {{\n  health 127.0.0.1:{h}\n  ready 127.0.0.1:{rd}\n  kubernetes cluster.local {{\n    kubeconfig {}\n  }}\n}}\n",
            fx.p("admin.conf")
        ),
    );
    let mut dns = start(bin("coredns"), &["-conf".into(), corefile]);
    wait_status(&format!("http://127.0.0.1:{rd}/ready"), None, 200, &mut dns).await;

    // etcd stops: the apiserver stays live but is no longer ready.
    drop(etcd);
    wait_status(&format!("{base}/readyz"), Some(&ca), 500, &mut api).await;
    wait_status(&format!("{base}/livez"), Some(&ca), 200, &mut api).await;
}
