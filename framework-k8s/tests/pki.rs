//! PKI: certificates parsed back with x509-parser; SANs, CN/O, signatures, key usage, modes.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use proffer_k8s::kubeconfig::Kubeconfig;
use proffer_k8s::pki::{ClusterPki, Host, PkiRequest};
use proffer_k8s::tlsutil::{TlsError, check_san, inspect, verify_signed_by};

fn host(name: &str, ip: [u8; 4]) -> Host {
    Host {
        name: name.into(),
        ip: Some(IpAddr::from(ip)),
    }
}

fn request() -> PkiRequest {
    PkiRequest {
        cluster_name: "prod".into(),
        api_service_ip: Ipv4Addr::new(10, 96, 0, 1),
        dns_domain: "cluster.local".into(),
        apiserver_url: "https://10.0.0.11:6443".into(),
        control_plane: vec![
            host("cp-0", [10, 0, 0, 11]),
            host("cp-1", [10, 0, 0, 12]),
            host("cp-2", [10, 0, 0, 13]),
        ],
        nodes: vec![host("node-0", [10, 0, 1, 1]), host("node-1", [10, 0, 1, 2])],
        extra_sans: vec!["api.example.com".into(), "192.0.2.7".into()],
        validity: Duration::from_secs(365 * 86400),
    }
}

#[test]
fn cas_are_self_signed_cas() {
    let pki = ClusterPki::generate(&request()).unwrap();
    for (ca, cn) in [
        (&pki.ca, "kubernetes"),
        (&pki.etcd_ca, "etcd-ca"),
        (&pki.front_proxy_ca, "front-proxy-ca"),
    ] {
        let i = inspect(&ca.pair.cert_pem, cn).unwrap();
        assert_eq!(i.cn, cn);
        assert_eq!(i.issuer_cn, cn);
        assert!(i.is_ca && i.key_cert_sign, "{i:?}");
        verify_signed_by(&ca.pair.cert_pem, &ca.pair.cert_pem, cn).unwrap();
    }
    // Distinct CAs: one does not verify another's certificates.
    assert!(matches!(
        verify_signed_by(
            &pki.apiserver.cert_pem,
            &pki.etcd_ca.pair.cert_pem,
            "apiserver"
        ),
        Err(TlsError::NotSignedBy { .. })
    ));
}

#[test]
fn apiserver_serving_cert_has_the_right_sans() {
    let pki = ClusterPki::generate(&request()).unwrap();
    let ca = &pki.ca.pair.cert_pem;
    verify_signed_by(&pki.apiserver.cert_pem, ca, "apiserver").unwrap();
    let i = inspect(&pki.apiserver.cert_pem, "apiserver").unwrap();
    assert_eq!(i.cn, "kube-apiserver");
    assert!(i.server_auth && !i.client_auth && !i.is_ca && i.digital_signature);
    for d in [
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
        "localhost",
        "cp-0",
        "cp-1",
        "cp-2",
        "api.example.com",
    ] {
        assert!(
            i.dns_sans.iter().any(|s| s == d),
            "{d} missing from {:?}",
            i.dns_sans
        );
    }
    for ip in [
        "10.96.0.1",
        "127.0.0.1",
        "10.0.0.11",
        "10.0.0.12",
        "10.0.0.13",
        "192.0.2.7",
    ] {
        let ip: IpAddr = ip.parse().unwrap();
        assert!(i.ip_sans.contains(&ip), "{ip} missing from {:?}", i.ip_sans);
    }
    check_san(&pki.apiserver.cert_pem, "10.0.0.12", "apiserver").unwrap();
    let e = check_san(&pki.apiserver.cert_pem, "10.0.0.99", "apiserver").unwrap_err();
    assert!(e.to_string().contains("do not cover `10.0.0.99`"), "{e}");
    assert!(check_san(&pki.apiserver.cert_pem, "evil.example.com", "apiserver").is_err());
}

#[test]
fn component_identities() {
    let pki = ClusterPki::generate(&request()).unwrap();
    let ca = &pki.ca.pair.cert_pem;
    let want = [
        (
            "controller-manager",
            "system:kube-controller-manager",
            vec![],
        ),
        ("scheduler", "system:kube-scheduler", vec![]),
        (
            "kube-proxy",
            "system:kube-proxy",
            vec!["system:node-proxier"],
        ),
        ("admin", "kubernetes-admin", vec!["system:masters"]),
    ];
    for (key, cn, orgs) in want {
        let ck = &pki.clients[key];
        verify_signed_by(&ck.cert_pem, ca, key).unwrap();
        let i = inspect(&ck.cert_pem, key).unwrap();
        assert_eq!(i.cn, cn);
        assert_eq!(i.orgs, orgs);
        assert!(i.client_auth && !i.server_auth && !i.is_ca);
    }
    for n in ["node-0", "node-1"] {
        let i = inspect(&pki.kubelets[n].cert_pem, n).unwrap();
        assert_eq!(i.cn, format!("system:node:{n}"));
        assert_eq!(i.orgs, vec!["system:nodes"]);
        verify_signed_by(&pki.kubelets[n].cert_pem, ca, n).unwrap();
    }
    let i = inspect(&pki.apiserver_kubelet_client.cert_pem, "x").unwrap();
    assert_eq!(i.orgs, vec!["system:masters"]);
    for key in ["controller-manager", "scheduler"] {
        let s = &pki.serving[key].cert_pem;
        verify_signed_by(s, ca, key).unwrap();
        assert!(inspect(s, key).unwrap().server_auth);
        check_san(s, "127.0.0.1", key).unwrap();
        check_san(s, "cp-1", key).unwrap();
    }
    verify_signed_by(
        &pki.front_proxy_client.cert_pem,
        &pki.front_proxy_ca.pair.cert_pem,
        "front-proxy-client",
    )
    .unwrap();
}

#[test]
fn etcd_certs_are_per_member_and_signed_by_the_etcd_ca() {
    let pki = ClusterPki::generate(&request()).unwrap();
    let eca = &pki.etcd_ca.pair.cert_pem;
    assert_eq!(pki.etcd_server.len(), 3);
    for (m, ip) in [("cp-0", "10.0.0.11"), ("cp-2", "10.0.0.13")] {
        for ck in [&pki.etcd_server[m], &pki.etcd_peer[m]] {
            verify_signed_by(&ck.cert_pem, eca, m).unwrap();
            assert!(verify_signed_by(&ck.cert_pem, &pki.ca.pair.cert_pem, m).is_err());
            let i = inspect(&ck.cert_pem, m).unwrap();
            assert_eq!(i.cn, m);
            assert!(i.server_auth && i.client_auth);
            check_san(&ck.cert_pem, ip, m).unwrap();
            check_san(&ck.cert_pem, "127.0.0.1", m).unwrap();
        }
    }
    // A member's certificate does not cover another member's address.
    assert!(check_san(&pki.etcd_server["cp-0"].cert_pem, "10.0.0.12", "cp-0").is_err());
    verify_signed_by(&pki.apiserver_etcd_client.cert_pem, eca, "etcd client").unwrap();
    assert!(
        inspect(&pki.apiserver_etcd_client.cert_pem, "c")
            .unwrap()
            .client_auth
    );
}

#[test]
fn service_account_key_pair_matches() {
    let pki = ClusterPki::generate(&request()).unwrap();
    let kp = rcgen::KeyPair::from_pem(&pki.service_account.key_pem).unwrap();
    assert_eq!(kp.public_key_pem(), pki.service_account.cert_pem);
    assert!(
        pki.service_account
            .cert_pem
            .starts_with("-----BEGIN PUBLIC KEY-----")
    );
}

#[test]
fn kubeconfigs_round_trip_and_carry_ca_signed_credentials() {
    let pki = ClusterPki::generate(&request()).unwrap();
    let keys: Vec<&str> = pki.kubeconfigs.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "admin",
            "controller-manager",
            "kube-proxy",
            "kubelet-node-0",
            "kubelet-node-1",
            "scheduler"
        ]
    );
    for (key, kc) in &pki.kubeconfigs {
        let back = Kubeconfig::parse(&kc.to_yaml()).unwrap();
        assert_eq!(&back, kc);
        let c = back.credentials().unwrap();
        assert_eq!(c.server, "https://10.0.0.11:6443");
        assert_eq!(c.ca_pem, pki.ca.pair.cert_pem);
        verify_signed_by(&c.cert_pem, &c.ca_pem, key).unwrap();
        rcgen::KeyPair::from_pem(&c.key_pem).unwrap();
    }
    let admin = pki.kubeconfigs["admin"].to_yaml();
    assert!(
        admin.contains("apiVersion: v1") && admin.contains("kind: Config"),
        "{admin}"
    );
    assert!(
        admin.contains("current-context: kubernetes-admin@prod"),
        "{admin}"
    );
    assert!(admin.contains("certificate-authority-data:"), "{admin}");
}

#[test]
fn files_are_written_with_secret_modes() {
    let pki = ClusterPki::generate(&request()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    pki.write_to(dir.path()).unwrap();
    // Twice: rewriting keeps the modes.
    pki.write_to(dir.path()).unwrap();
    let mode = |p: &str| {
        std::fs::metadata(dir.path().join(p))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    for p in [
        "pki/ca.key",
        "pki/sa.key",
        "pki/etcd/server-cp-1.key",
        "admin.conf",
        "kubelet-node-1.conf",
    ] {
        assert_eq!(mode(p), 0o600, "{p}");
    }
    for p in [
        "pki/ca.crt",
        "pki/apiserver.crt",
        "pki/sa.pub",
        "pki/etcd/ca.crt",
    ] {
        assert_eq!(mode(p), 0o644, "{p}");
    }
    let crt = std::fs::read_to_string(dir.path().join("pki/apiserver.crt")).unwrap();
    assert_eq!(crt, pki.apiserver.cert_pem);
    assert!(
        pki.files()
            .iter()
            .all(|f| f.secret == (f.path.ends_with(".key") || f.path.ends_with(".conf")))
    );
}

#[test]
fn nodes_added_later_are_signed_by_the_bundle_ca() {
    let mut req = request();
    let pki = ClusterPki::generate(&req).unwrap();
    let dir = tempfile::tempdir().unwrap();
    pki.write_to(dir.path()).unwrap();
    let before = std::fs::read_to_string(dir.path().join("kubelet-node-0.conf")).unwrap();
    req.nodes.push(host("node-2", [10, 0, 1, 3]));
    let added = proffer_k8s::pki::add_nodes(dir.path(), &req).unwrap();
    assert_eq!(added, ["node-2"]);
    // Existing nodes are untouched; a second call adds nothing.
    assert_eq!(
        std::fs::read_to_string(dir.path().join("kubelet-node-0.conf")).unwrap(),
        before
    );
    assert!(
        proffer_k8s::pki::add_nodes(dir.path(), &req)
            .unwrap()
            .is_empty()
    );
    let kc = Kubeconfig::parse(
        &std::fs::read_to_string(dir.path().join("kubelet-node-2.conf")).unwrap(),
    )
    .unwrap();
    let c = kc.credentials().unwrap();
    verify_signed_by(&c.cert_pem, &pki.ca.pair.cert_pem, "node-2").unwrap();
    let i = inspect(&c.cert_pem, "node-2").unwrap();
    assert_eq!(i.cn, "system:node:node-2");
    assert_eq!(i.orgs, vec!["system:nodes"]);
    let mode = std::fs::metadata(dir.path().join("pki/kubelet-node-2-client.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}
