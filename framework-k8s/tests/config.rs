//! cluster.yaml: golden resolved configs and field-named errors.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::path::PathBuf;

use proffer_k8s::config::{ClusterConfig, Ports, check_coexist, default_artifact};

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

/// Resolves `NAME.yaml` and compares the explicit config (plus derived values) with
/// `NAME.resolved.yaml`; `UPDATE_GOLDEN=1` rewrites it.
fn golden(name: &str, agents: Option<usize>) {
    let dir = golden_dir();
    let input = std::fs::read_to_string(dir.join(format!("{name}.yaml"))).unwrap();
    let cluster = ClusterConfig::parse(&input, agents).unwrap();
    let mut out = serde_norway::to_string(&cluster.config).unwrap();
    out.push_str(&format!(
        "# derived\n# api-service-ip: {}\n# dns-ip: {}\n# ports: {}\n",
        cluster.api_service_ip,
        cluster.dns_ip,
        serde_json::to_string(&cluster.ports).unwrap()
    ));
    let path = dir.join(format!("{name}.resolved.yaml"));
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &out).unwrap();
    }
    let want = std::fs::read_to_string(&path).unwrap_or_default();
    assert_eq!(
        out, want,
        "golden {name} differs (UPDATE_GOLDEN=1 to rewrite)"
    );
    // The resolved config is a fixed point: parsing it again gives the same cluster.
    let again = ClusterConfig::parse(&out, agents).unwrap();
    assert_eq!(again, cluster);
}

#[test]
fn golden_minimal() {
    golden("minimal", None);
}

#[test]
fn golden_ha() {
    golden("ha", Some(5));
}

#[test]
fn default_artifacts_name_upstream_release() {
    let c: ClusterConfig =
        serde_norway::from_str("name: a\nkubernetes-version: v1.29.0\n").unwrap();
    let a = default_artifact(&c, "kube-apiserver");
    assert_eq!(
        a.url.as_deref(),
        Some("https://dl.k8s.io/release/v1.29.0/bin/linux/amd64/kube-apiserver")
    );
    assert_eq!(default_artifact(&c, "etcd").path.as_deref(), Some("etcd"));
    // The all-default config is refused: upstream checksums must be given.
    let e = ClusterConfig::parse("name: a\n", None).unwrap_err();
    assert_eq!(e.path, "artifacts.kube-apiserver.sha256");
    assert!(e.reason.contains("missing checksum"), "{e}");
    assert!(e.reason.contains("kube-apiserver.sha256`"), "{e}");
}

const OK_ARTIFACTS: &str = "artifacts:
  kube-apiserver: {path: a}
  kube-controller-manager: {path: a}
  kube-scheduler: {path: a}
  kubelet: {path: a}
  kube-proxy: {path: a}
  coredns: {path: a}
  kubectl: {path: a}
";

#[test]
fn errors_name_the_field() {
    let cases: &[(&str, Option<usize>, &str, &str)] = &[
        (
            "kubernetes-version: 1.31.2\n",
            None,
            "kubernetes-version",
            "unknown version format",
        ),
        (
            "kubernetes-version: v1.31\n",
            None,
            "kubernetes-version",
            "unknown version format",
        ),
        (
            "kubernetes-version: v1.31.2-rc.1\n",
            None,
            "kubernetes-version",
            "unknown version format",
        ),
        (
            "kubernetes-version: v2.0.0\n",
            None,
            "kubernetes-version",
            "only v1.x",
        ),
        (
            "control-plane-count: 2\n",
            None,
            "control-plane-count",
            "not 1 or 3",
        ),
        (
            "control-plane-count: 3\nnode-count: 1\n",
            Some(2),
            "control-plane-count",
            "distinct agents",
        ),
        (
            "node-count: 6\n",
            Some(5),
            "node-count",
            "one node per agent",
        ),
        ("node-count: 0\n", None, "node-count", "at least 1"),
        (
            "service-cidr: 10.96.0.1/12\n",
            None,
            "service-cidr",
            "host bits",
        ),
        (
            "cluster-cidr: 10.96.0.0/16\n",
            None,
            "cluster-cidr",
            "overlaps",
        ),
        ("dns-ip: 10.0.0.10\n", None, "dns-ip", "inside service-cidr"),
        ("port-base: 80\n", None, "port-base", "1024"),
        ("name: Bad_Name\n", None, "name", "a-z"),
        (
            "resources:\n  kube-apiserver: {cpus: 0, memory: 1}\n",
            None,
            "resources.kube-apiserver.cpus",
            "> 0",
        ),
        (
            "resources:\n  kube-nope: {cpus: 1, memory: 1}\n",
            None,
            "resources.kube-nope",
            "unknown component",
        ),
        ("arch: s390x\n", None, "arch", "amd64"),
        ("bogus: 1\n", None, "bogus", "unknown field `bogus`"),
        (
            "control-plane-count: many\n",
            None,
            "control-plane-count",
            "invalid type",
        ),
    ];
    for (extra, agents, path, needle) in cases {
        // Later keys of the same name would be duplicates, so `name` leads only when not overridden.
        let head = if extra.starts_with("name:") {
            ""
        } else {
            "name: t\n"
        };
        let yaml = format!("{head}{extra}{OK_ARTIFACTS}");
        let e = ClusterConfig::parse(&yaml, *agents).expect_err(extra);
        assert_eq!(&e.path, path, "{extra}: {e}");
        assert!(e.reason.contains(needle), "{extra}: `{e}` lacks `{needle}`");
    }
    let bad_sum = format!(
        "name: t\n{}",
        OK_ARTIFACTS.replace(
            "kubelet: {path: a}",
            "kubelet: {url: 'https://x/kubelet', sha256: abc}"
        )
    );
    let e = ClusterConfig::parse(&bad_sum, None).unwrap_err();
    assert_eq!(e.path, "artifacts.kubelet.sha256");
    assert!(e.reason.contains("64 hex"));
    let both = format!(
        "name: t\n{}",
        OK_ARTIFACTS.replace(
            "kubelet: {path: a}",
            "kubelet: {url: 'https://x/kubelet', path: /x}"
        )
    );
    assert_eq!(
        ClusterConfig::parse(&both, None).unwrap_err().path,
        "artifacts.kubelet"
    );
}

#[test]
fn two_clusters_coexist_only_with_distinct_ports_and_roles() {
    let a = ClusterConfig::parse(&format!("name: a\n{OK_ARTIFACTS}"), None).unwrap();
    let b = ClusterConfig::parse(&format!("name: b\n{OK_ARTIFACTS}"), None).unwrap();
    let e = check_coexist(&[&a, &b]).unwrap_err();
    assert_eq!(e.path, "port-base");
    assert!(e.reason.contains("2379"), "{e}");
    let b2 =
        ClusterConfig::parse(&format!("name: b\nport-base: 31000\n{OK_ARTIFACTS}"), None).unwrap();
    check_coexist(&[&a, &b2]).unwrap();
    assert_eq!(b2.ports, Ports::from_base(31000));
    assert_eq!(b2.framework_name(), "k8s-b");
    assert_eq!(b2.role(), "k8s-b");
    let same_role = ClusterConfig::parse(
        &format!("name: c\nrole: k8s-b\nport-base: 32000\n{OK_ARTIFACTS}"),
        None,
    )
    .unwrap();
    assert_eq!(check_coexist(&[&b2, &same_role]).unwrap_err().path, "role");
    assert_eq!(check_coexist(&[&a, &a]).unwrap_err().path, "name");
}

/// Found by the cluster.yaml fuzz target: each of these was accepted, and the deploy generated
/// from it was a service spec the SDK refuses (a name or role it cannot take, a task asking for
/// more than the largest scalar, a template variable in a URL or the DNS domain) — or, for
/// a huge node count, a plan whose compilation exhausted memory. Each is now refused at once,
/// naming its field.
#[test]
fn regression_what_the_deploy_spec_refuses_is_refused_in_cluster_yaml() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "name: t\nnode-count: 100001\n",
            "node-count",
            "more than 100000",
        ),
        (
            "name: t\nframework-name: ''\n",
            "framework-name",
            "invalid name",
        ),
        (
            "name: t\nrole: a b\n",
            "role",
            "`a b`: character ` ` is not allowed",
        ),
        ("name: x-\n", "name", "single inner `-`"),
        ("name: a--b\n", "name", "single inner `-`"),
        (
            "name: t\nresources:\n  kube-apiserver: {cpus: 92233720368547758071, memory: 2048}\n",
            "resources.kube-apiserver.cpus",
            "too large",
        ),
        (
            "name: t\nresources:\n  kubelet: {cpus: 0.0001, memory: 64}\n",
            "resources.kubelet.cpus",
            "rounds to zero",
        ),
        (
            "name: t\ndns-domain: '{{x}}'\n",
            "dns-domain",
            "not a domain",
        ),
    ];
    for (head, path, needle) in cases {
        let yaml = format!("{head}{OK_ARTIFACTS}");
        let e = ClusterConfig::parse(&yaml, None).expect_err(head);
        assert_eq!(&e.path, path, "{head}: {e}");
        assert!(e.reason.contains(needle), "{head}: `{e}` lacks `{needle}`");
    }
    let templated = format!(
        "name: t\n{}",
        OK_ARTIFACTS.replace("kubelet: {path: a}", "kubelet: {path: '/x/{{y}}'}")
    );
    let e = ClusterConfig::parse(&templated, None).unwrap_err();
    assert_eq!(e.path, "artifacts.kubelet.path");
}
