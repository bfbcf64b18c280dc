//! Every stand-in refuses missing or inconsistent flags with a clear error and non-zero exit.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;

use common::{Fixture, free_port, refused};

fn without(args: &[String], prefix: &str) -> Vec<String> {
    args.iter()
        .filter(|a| !a.starts_with(prefix))
        .cloned()
        .collect()
}

fn with(args: &[String], prefix: &str, value: String) -> Vec<String> {
    let mut out = without(args, prefix);
    out.push(value);
    out
}

fn expect(name: &str, case: &str, args: &[String], needle: &str) {
    let err = refused(name, args);
    assert!(
        err.contains(needle),
        "{name} [{case}]: stderr `{err}` lacks `{needle}`"
    );
    assert!(err.contains("error:"), "{name} [{case}]: {err}");
}

#[test]
fn apiserver_refusals() {
    let fx = Fixture::new(free_port());
    let other = Fixture::new(free_port());
    let good = fx.apiserver_args("https://127.0.0.1:1");
    let cases: Vec<(&str, Vec<String>, &str)> = vec![
        (
            "no etcd",
            without(&good, "--etcd-servers"),
            "--etcd-servers is required",
        ),
        (
            "bad etcd url",
            with(&good, "--etcd-servers", "--etcd-servers=etcd:2379".into()),
            "--etcd-servers: bad URL",
        ),
        (
            "https etcd without CA",
            without(&good, "--etcd-cafile"),
            "--etcd-cafile is required",
        ),
        (
            "etcd client cert from the wrong CA",
            with(
                &good,
                "--etcd-certfile",
                format!("--etcd-certfile={}", fx.p("pki/admin-client.crt")),
            )
            .into_iter()
            .map(|a| {
                if a.starts_with("--etcd-keyfile") {
                    format!("--etcd-keyfile={}", fx.p("pki/admin-client.key"))
                } else {
                    a
                }
            })
            .collect(),
            "not signed by the CA",
        ),
        (
            "serving cert from another cluster's CA",
            with(
                &good,
                "--tls-cert-file",
                format!("--tls-cert-file={}", other.p("pki/apiserver.crt")),
            )
            .into_iter()
            .map(|a| {
                if a.starts_with("--tls-private-key-file") {
                    format!("--tls-private-key-file={}", other.p("pki/apiserver.key"))
                } else {
                    a
                }
            })
            .collect(),
            "is not signed by the CA",
        ),
        (
            "serving key does not match",
            with(
                &good,
                "--tls-private-key-file",
                format!("--tls-private-key-file={}", fx.p("pki/ca.key")),
            ),
            "--tls-cert-file/--tls-private-key-file",
        ),
        (
            "SANs do not cover the advertised address",
            with(
                &good,
                "--advertise-address",
                "--advertise-address=10.1.2.3".into(),
            ),
            "do not cover `10.1.2.3`",
        ),
        (
            "SANs do not cover the service IP",
            with(
                &good,
                "--service-cluster-ip-range",
                "--service-cluster-ip-range=10.100.0.0/16".into(),
            ),
            "do not cover `10.100.0.1`",
        ),
        (
            "no serving cert",
            without(&good, "--tls-cert-file"),
            "--tls-cert-file is required",
        ),
        (
            "service-account keys differ",
            with(
                &good,
                "--service-account-key-file",
                format!("--service-account-key-file={}", other.p("pki/sa.pub")),
            ),
            "does not verify tokens",
        ),
        (
            "no issuer",
            without(&good, "--service-account-issuer"),
            "--service-account-issuer is required",
        ),
        (
            "front proxy cert from the wrong CA",
            with(
                &good,
                "--requestheader-client-ca-file",
                format!("--requestheader-client-ca-file={}", fx.p("pki/ca.crt")),
            ),
            "not signed by the CA",
        ),
        (
            "unknown authorizer",
            with(
                &good,
                "--authorization-mode",
                "--authorization-mode=Node,Magic".into(),
            ),
            "unknown authorizer `Magic`",
        ),
        (
            "garbage flag",
            with(&good, "--zzz", "--Not_A_Flag=1".into()),
            "unknown flag --Not_A_Flag",
        ),
        (
            "unreadable file",
            with(
                &good,
                "--client-ca-file",
                "--client-ca-file=/nonexistent/ca.crt".into(),
            ),
            "--client-ca-file: cannot read `/nonexistent/ca.crt`",
        ),
    ];
    for (case, args, needle) in cases {
        expect("kube-apiserver", case, &args, needle);
    }
}

#[test]
fn controller_manager_and_scheduler_refusals() {
    let fx = Fixture::new(free_port());
    let other = Fixture::new(free_port());
    // A kubeconfig whose client certificate is not signed by the CA it names.
    let mut forged = fx.pki.kubeconfigs["controller-manager"].clone();
    forged.clusters[0].cluster.certificate_authority_data = other.pki.kubeconfigs["admin"].clusters
        [0]
    .cluster
    .certificate_authority_data
    .clone();
    let forged = fx.write("forged.conf", &forged.to_yaml());
    let cm = |extra: &[String]| {
        let mut v = vec![
            format!("--kubeconfig={}", fx.p("controller-manager.conf")),
            "--secure-port=1".into(),
        ];
        v.extend_from_slice(extra);
        v
    };
    let cases: Vec<(&str, Vec<String>, &str)> = vec![
        (
            "no kubeconfig",
            vec!["--secure-port=1".into()],
            "--kubeconfig is required",
        ),
        (
            "scheduler's identity",
            vec![format!("--kubeconfig={}", fx.p("scheduler.conf"))],
            "CN is `system:kube-scheduler`, expected `system:kube-controller-manager`",
        ),
        (
            "client cert not signed by the kubeconfig CA",
            vec![format!("--kubeconfig={forged}")],
            "not signed by the CA",
        ),
        (
            "allocate without cluster cidr",
            cm(&["--allocate-node-cidrs=true".into()]),
            "--allocate-node-cidrs=true needs --cluster-cidr",
        ),
        (
            "overlapping networks",
            cm(&[
                "--cluster-cidr=10.96.0.0/16".into(),
                "--service-cluster-ip-range=10.96.0.0/12".into(),
            ]),
            "overlaps",
        ),
        (
            "root CA of another cluster",
            cm(&[format!("--root-ca-file={}", other.p("pki/ca.crt"))]),
            "--root-ca-file is not the CA of --kubeconfig",
        ),
        (
            "signing cert is not a CA",
            cm(&[
                format!("--cluster-signing-cert-file={}", fx.p("pki/apiserver.crt")),
                format!("--cluster-signing-key-file={}", fx.p("pki/apiserver.key")),
            ]),
            "not a CA certificate",
        ),
        (
            "bad boolean",
            cm(&["--leader-elect=yes".into()]),
            "--leader-elect: `yes`",
        ),
    ];
    for (case, args, needle) in cases {
        expect("kube-controller-manager", case, &args, needle);
    }
    expect(
        "kube-scheduler",
        "controller-manager's identity",
        &[format!("--kubeconfig={}", fx.p("controller-manager.conf"))],
        "expected `system:kube-scheduler`",
    );
    let bad_cfg = fx.write("sched.yaml", "apiVersion: v1\nkind: Pod\n");
    expect(
        "kube-scheduler",
        "wrong config kind",
        &[
            format!("--kubeconfig={}", fx.p("scheduler.conf")),
            format!("--config={bad_cfg}"),
        ],
        "expected KubeSchedulerConfiguration",
    );
    expect(
        "kube-scheduler",
        "no kubeconfig",
        &[],
        "--kubeconfig is required",
    );
}

#[test]
fn node_refusals() {
    let fx = Fixture::new(free_port());
    let other = Fixture::new(free_port());
    let kl = |node: &str, extra: &[String]| {
        let mut v = vec![
            format!("--kubeconfig={}", fx.p(&format!("kubelet-{node}.conf"))),
            format!("--hostname-override={node}"),
            "--healthz-port=1".into(),
        ];
        v.extend_from_slice(extra);
        v
    };
    let wrong_node: Vec<String> = vec![
        format!("--kubeconfig={}", fx.p("kubelet-node-0.conf")),
        "--hostname-override=node-1".into(),
    ];
    expect(
        "kubelet",
        "another node's identity",
        &wrong_node,
        "expected `system:node:node-1`",
    );
    expect(
        "kubelet",
        "admin identity",
        &[
            format!("--kubeconfig={}", fx.p("admin.conf")),
            "--hostname-override=node-0".into(),
        ],
        "expected `system:node:node-0`",
    );
    expect(
        "kubelet",
        "no kubeconfig",
        &["--hostname-override=node-0".into()],
        "--kubeconfig is required",
    );
    expect(
        "kubelet",
        "bad dns",
        &kl("node-0", &["--cluster-dns=10.96.0.x".into()]),
        "--cluster-dns",
    );
    expect(
        "kubelet",
        "client CA of another cluster",
        &kl(
            "node-0",
            &[format!("--client-ca-file={}", other.p("pki/ca.crt"))],
        ),
        "--client-ca-file is not the CA",
    );
    let cfg = fx.write("kubelet.yaml", "kind: KubeProxyConfiguration\n");
    expect(
        "kubelet",
        "wrong config kind",
        &kl("node-0", &[format!("--config={cfg}")]),
        "expected KubeletConfiguration",
    );

    expect(
        "kube-proxy",
        "no kubeconfig",
        &[],
        "--kubeconfig is required",
    );
    expect(
        "kube-proxy",
        "kubelet identity",
        &[format!("--kubeconfig={}", fx.p("kubelet-node-0.conf"))],
        "expected `system:kube-proxy`",
    );
    expect(
        "kube-proxy",
        "bad mode",
        &[
            format!("--kubeconfig={}", fx.p("kube-proxy.conf")),
            "--proxy-mode=magic".into(),
        ],
        "unknown mode `magic`",
    );
    expect(
        "kube-proxy",
        "bad healthz address",
        &[
            format!("--kubeconfig={}", fx.p("kube-proxy.conf")),
            "--healthz-bind-address=10256".into(),
        ],
        "is not HOST:PORT",
    );
}

#[test]
fn coredns_refusals() {
    let fx = Fixture::new(free_port());
    expect("coredns", "no conf", &[], "-conf is required");
    let no_k8s = fx.write(
        "Corefile.nok8s",
        ".:53 {\n  health\n  forward . /etc/resolv.conf\n}\n",
    );
    expect(
        "coredns",
        "no kubernetes plugin",
        &["-conf".into(), no_k8s],
        "no `kubernetes ZONE` plugin",
    );
    let ok = fx.write("Corefile", ".:53 {\n  kubernetes cluster.local\n}\n");
    expect(
        "coredns",
        "unknown flag",
        &["-conf".into(), ok.clone(), "-bogus".into()],
        "unknown flag -bogus",
    );
    let bad_kc = fx.write(
        "Corefile.badkc",
        ".:53 {\n  kubernetes cluster.local {\n    kubeconfig /nonexistent.conf\n  }\n}\n",
    );
    expect(
        "coredns",
        "missing kubeconfig",
        &["-conf".into(), bad_kc],
        "cannot read `/nonexistent.conf`",
    );
    expect(
        "coredns",
        "bad dns port",
        &["-conf".into(), ok, "-dns.port".into(), "x".into()],
        "-dns.port",
    );
}
