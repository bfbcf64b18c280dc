//! `image:` per component in `cluster.yaml`: validation, and the mapping to the service spec
//! (the task's image, its prelude run from the sandbox, the helper programs fetched into the
//! sandbox and run from there, checks from the sandbox too).

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use proffer_k8s::config::ClusterConfig;
use proffer_k8s::deploy::{DeployOptions, service_spec};
use proffer_k8s::pki::Host;
use proffer_k8s::programs::Programs;
use proffer_sdk::service::ServiceSpec;
use proffer_sdk::service::spec::TaskSpec;

const CONFIG: &str = "name: boxed
node-count: 1
artifacts:
  etcd: {image: 'file:///srv/images/etcd.tar'}
  kube-apiserver: {standin: true, image: /srv/images/base.tar}
  kube-controller-manager: {standin: true}
  kube-scheduler: {standin: true}
  kubelet: {standin: true}
  kube-proxy: {url: 'https://example.com/kube-proxy', sha256: 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', image: 'https://example.com/base.tar'}
  coredns: {standin: true}
  kubectl: {path: /bin/true}
";

fn options(pki_url: Option<&str>) -> DeployOptions {
    DeployOptions {
        pki_dir: "/var/lib/proffer/k8s-boxed".into(),
        programs: Programs::Subcommands {
            binary: "/usr/local/bin/proffer".into(),
        },
        control_plane: vec![Host {
            name: "cp-0".into(),
            ip: Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 11))),
        }],
        local: false,
        nodes_per_agent: 1,
        pki_url: pki_url.map(str::to_string),
    }
}

fn task<'a>(spec: &'a ServiceSpec, pod: &str, task: &str) -> &'a TaskSpec {
    let (_, p) = spec.pods.iter().find(|(n, _)| n == pod).unwrap();
    let (_, t) = p.tasks.iter().find(|(n, _)| n == task).unwrap();
    t
}

fn ready_cmd(t: &TaskSpec) -> &str {
    t.readiness_check
        .as_ref()
        .and_then(|c| c.cmd.as_deref())
        .unwrap_or_default()
}

#[test]
fn components_with_an_image_run_in_it_from_the_sandbox() {
    let cluster = ClusterConfig::parse(CONFIG, None).unwrap();
    let spec = service_spec(&cluster, &options(Some("http://10.0.0.1:7000/pki/tok"))).unwrap();
    let yaml = proffer_k8s::deploy::spec_yaml(&spec).unwrap();
    let parsed =
        ServiceSpec::parse(&yaml, &BTreeMap::new()).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    assert_eq!(
        parsed, spec,
        "the YAML round-trips and the SDK accepts the images"
    );

    let in_box = "'/mnt/mesos/sandbox/proffer'";
    // etcd: no program named, so `etcd` on the image's PATH; the member helper from the sandbox.
    let etcd = task(&spec, "etcd-0", "member");
    assert_eq!(etcd.image.as_deref(), Some("file:///srv/images/etcd.tar"));
    assert!(
        etcd.cmd.starts_with("cd /mnt/mesos/sandbox && set -e"),
        "{}",
        etcd.cmd
    );
    assert!(etcd.cmd.contains("BIN='etcd'"), "{}", etcd.cmd);
    assert!(
        etcd.cmd.contains(&format!("{in_box} k8s-etcd-member")),
        "{}",
        etcd.cmd
    );
    assert!(etcd.cmd.contains("chmod +x 'proffer'"), "{}", etcd.cmd);
    assert_eq!(
        etcd.uris,
        [
            "file:///usr/local/bin/proffer",
            "http://10.0.0.1:7000/pki/tok/etcd-0.tar"
        ]
    );
    assert!(
        ready_cmd(etcd).starts_with(&format!("cd /mnt/mesos/sandbox && {in_box} k8s-probe ")),
        "{}",
        ready_cmd(etcd)
    );
    // A stand-in in an image runs from the sandbox.
    let api = task(&spec, "apiserver-0", "apiserver");
    assert_eq!(api.image.as_deref(), Some("/srv/images/base.tar"));
    assert!(
        api.cmd
            .contains(&format!("exec {in_box} kube-apiserver-standin ")),
        "{}",
        api.cmd
    );
    // A URL artifact is fetched into the sandbox and checked there, in the image.
    let proxy = task(&spec, "node", "kube-proxy");
    assert_eq!(proxy.image.as_deref(), Some("https://example.com/base.tar"));
    assert!(
        proxy
            .uris
            .contains(&"https://example.com/kube-proxy".to_string()),
        "{:?}",
        proxy.uris
    );
    assert!(proxy.cmd.contains("BIN=./kube-proxy"), "{}", proxy.cmd);
    // Components without an image are host processes as before.
    let sched = task(&spec, "scheduler-0", "scheduler");
    assert_eq!(sched.image, None);
    assert!(!sched.cmd.contains("/mnt/mesos/sandbox"), "{}", sched.cmd);
    assert!(
        ready_cmd(sched).starts_with("'/usr/local/bin/proffer' k8s-probe "),
        "{}",
        ready_cmd(sched)
    );
    assert!(!sched.uris.iter().any(|u| u.starts_with("file://")));
}

#[test]
fn images_need_the_pki_served_over_http() {
    let cluster = ClusterConfig::parse(CONFIG, None).unwrap();
    let e = service_spec(&cluster, &options(None))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("artifacts.etcd.image") && e.contains("--serve-pki"),
        "{e}"
    );
}

#[test]
fn bad_images_are_refused_naming_the_field() {
    for (image, want) in [
        ("''", "is empty"),
        ("'  '", "is empty"),
        ("docker.io/library/etcd", "registry names are not pulled"),
        ("images/etcd.tar", "not an absolute path"),
        ("'file://images/etcd.tar'", "not an absolute path"),
        ("'https://'", "not an absolute path"),
        ("'/srv/{{x}}.tar'", "must not contain"),
    ] {
        let yaml = format!("name: t\nartifacts:\n  etcd: {{image: {image}}}\n");
        let e = ClusterConfig::parse(&yaml, None).unwrap_err();
        assert_eq!(e.path, "artifacts.etcd.image", "{image}: {e}");
        assert!(e.reason.contains(want), "{image}: {e}");
    }
    // An image does not relax the artifact's own rules.
    let e = ClusterConfig::parse(
        "name: t\nartifacts:\n  etcd: {image: /i.tar, path: etcd, url: 'https://x/etcd'}\n",
        None,
    )
    .unwrap_err();
    assert_eq!(e.path, "artifacts.etcd", "{e}");
}
