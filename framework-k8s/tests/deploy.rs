//! The generated service spec validates with the SDK and orders the deploy plan
//! etcd → apiserver → controller-manager → scheduler → node → coredns → addons.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use proffer_k8s::config::ClusterConfig;
use proffer_k8s::deploy::{DeployOptions, instance_ports, pki_request, service_spec};
use proffer_k8s::pki::{ClusterPki, Host};
use proffer_k8s::programs::Programs;
use proffer_sdk::service::ServiceSpec;
use proffer_sdk::service::compile::{deploy_plan, render_plan};

const CONFIG: &str = "name: prod
control-plane-count: 3
node-count: 4
port-base: 31000
artifacts:
  etcd: {path: /usr/bin/etcd}
  kube-apiserver: {url: 'https://dl.k8s.io/release/v1.31.2/bin/linux/amd64/kube-apiserver', sha256: 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa'}
  kube-controller-manager: {path: /opt/standin/kube-controller-manager-standin}
  kube-scheduler: {path: /opt/standin/kube-scheduler-standin}
  kubelet: {path: /opt/standin/kubelet-standin}
  kube-proxy: {path: /opt/standin/kube-proxy-standin}
  coredns: {path: /opt/standin/coredns-standin}
  kubectl: {path: kubectl}
";

fn options(local: bool) -> DeployOptions {
    DeployOptions {
        pki_dir: "/var/lib/proffer/k8s-prod".into(),
        programs: Programs::Separate {
            probe: "/opt/standin/k8s-probe".into(),
        },
        control_plane: (0..3)
            .map(|i| Host {
                name: format!("cp-{i}"),
                ip: Some(if local {
                    IpAddr::V4(Ipv4Addr::LOCALHOST)
                } else {
                    IpAddr::V4(Ipv4Addr::new(10, 0, 0, 11 + i))
                }),
            })
            .collect(),
        local,
        nodes_per_agent: 1,
        pki_url: None,
    }
}

#[test]
fn spec_validates_and_plan_is_ordered() {
    for local in [false, true] {
        let cluster = ClusterConfig::parse(CONFIG, Some(4)).unwrap();
        let spec = service_spec(&cluster, &options(local)).unwrap();
        let yaml = proffer_k8s::deploy::spec_yaml(&spec).unwrap();
        // The SDK parses and validates the generated YAML, and it is the same spec.
        let parsed =
            ServiceSpec::parse(&yaml, &BTreeMap::new()).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
        assert_eq!(parsed, spec, "the YAML round-trips");
        assert_eq!(parsed.name, "k8s-prod");
        assert_eq!(parsed.role, "k8s-prod");
        assert_eq!(parsed.pods.len(), 3 * 4 + 3);
        let plan = deploy_plan(&parsed, "deploy");
        let rendered = render_plan(&plan);
        let order: Vec<&str> = plan.phases.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(
            order,
            [
                "etcd-0",
                "etcd-1",
                "etcd-2",
                "apiserver-0",
                "apiserver-1",
                "apiserver-2",
                "controller-manager-0",
                "controller-manager-1",
                "controller-manager-2",
                "scheduler-0",
                "scheduler-1",
                "scheduler-2",
                "node",
                "coredns",
                "addons"
            ]
        );
        let deps = |name: &str| {
            plan.phases
                .iter()
                .find(|p| p.name == name)
                .unwrap()
                .depends
                .clone()
        };
        assert!(
            deps("etcd-1").is_empty(),
            "etcd members start together (quorum)"
        );
        assert_eq!(deps("apiserver-2"), ["etcd-0", "etcd-1", "etcd-2"]);
        assert_eq!(
            deps("controller-manager-0"),
            ["apiserver-0", "apiserver-1", "apiserver-2"]
        );
        assert_eq!(
            deps("scheduler-1"),
            [
                "controller-manager-0",
                "controller-manager-1",
                "controller-manager-2"
            ]
        );
        assert_eq!(deps("node"), ["scheduler-0", "scheduler-1", "scheduler-2"]);
        assert_eq!(deps("coredns"), ["node"]);
        assert_eq!(deps("addons"), ["coredns"]);
        assert_eq!(
            plan.phases
                .iter()
                .find(|p| p.name == "node")
                .unwrap()
                .steps
                .len(),
            4
        );
        assert!(rendered.contains("node"), "{rendered}");

        // Commands carry the real flags; URL artifacts are checksummed before they run.
        let api = parsed
            .pod("apiserver-1")
            .unwrap()
            .task("apiserver")
            .unwrap();
        let ip = if local { "127.0.0.1" } else { "10.0.0.12" };
        let p = instance_ports(&cluster, 1, local);
        assert!(
            api.cmd.contains(&format!(
                "--advertise-address={ip} --secure-port={}",
                p.apiserver
            )),
            "{}",
            api.cmd
        );
        assert!(api.cmd.contains("sha256sum -c -"), "{}", api.cmd);
        assert_eq!(
            api.uris,
            ["https://dl.k8s.io/release/v1.31.2/bin/linux/amd64/kube-apiserver"]
        );
        let etcd_servers = (0..3)
            .map(|i| {
                let ip = if local {
                    "127.0.0.1".to_string()
                } else {
                    format!("10.0.0.{}", 11 + i)
                };
                format!(
                    "https://{ip}:{}",
                    instance_ports(&cluster, i, local).etcd_client
                )
            })
            .collect::<Vec<_>>()
            .join(",");
        assert!(
            api.cmd.contains(&format!("--etcd-servers={etcd_servers}")),
            "{}",
            api.cmd
        );
        let ready = api
            .readiness_check
            .as_ref()
            .unwrap()
            .cmd
            .as_deref()
            .unwrap();
        assert!(
            ready.ends_with(&format!("https://{ip}:{}/readyz", p.apiserver)),
            "{ready}"
        );
        let etcd = parsed.pod("etcd-2").unwrap();
        assert_eq!(etcd.volumes[0].1.path, "data");
        assert_eq!(etcd.placement.len(), 2, "etcd-2 avoids etcd-0 and etcd-1");
        assert!(
            etcd.task("member")
                .unwrap()
                .cmd
                .contains("install -D -m 600 '/var/lib/proffer/k8s-prod/pki/etcd/server-cp-2.key'")
        );
        let node = parsed.pod("node").unwrap();
        assert_eq!(node.count, 4);
        let kubelet = node.task("kubelet").unwrap();
        assert!(
            kubelet
                .cmd
                .contains("--hostname-override=node-{{POD_INDEX}}"),
            "{}",
            kubelet.cmd
        );
        assert_eq!(kubelet.ports[0].1.port, if local { 0 } else { 31005 });
        assert_eq!(
            parsed.pod("addons").unwrap().task("apply").unwrap().goal,
            proffer_sdk::service::Goal::Finish
        );
        if !local {
            let ports = cluster.ports;
            assert_eq!(p, ports, "fixed ports on distinct machines");
        }
    }
}

#[test]
fn pki_matches_the_deploy() {
    let cluster = ClusterConfig::parse(CONFIG, None).unwrap();
    let opts = options(false);
    let req = pki_request(&cluster, &opts).unwrap();
    assert_eq!(req.apiserver_url, "https://10.0.0.11:31002");
    let pki = ClusterPki::generate(&req).unwrap();
    let spec = service_spec(&cluster, &opts).unwrap();
    // Every bundle file a task installs exists in the PKI bundle.
    let files: Vec<String> = pki.files().into_iter().map(|f| f.path).collect();
    for (pod_name, pod) in &spec.pods {
        for (_, t) in &pod.tasks {
            for part in t.cmd.split("'/var/lib/proffer/k8s-prod/").skip(1) {
                let rel = part.split('\'').next().unwrap();
                let rel = rel.replace("{{POD_INDEX}}", "0");
                assert!(
                    files.contains(&rel),
                    "{pod_name} installs {rel}, not in the bundle"
                );
            }
        }
    }
}

#[test]
fn wrong_host_count_is_refused() {
    let cluster = ClusterConfig::parse(CONFIG, None).unwrap();
    let mut opts = options(false);
    opts.control_plane.pop();
    let e = service_spec(&cluster, &opts).unwrap_err();
    assert!(
        e.to_string()
            .contains("2 control-plane hosts given for control-plane-count 3"),
        "{e}"
    );
}

/// Stand-in artifacts and the helpers run as subcommands of one binary (`proffer`), by its
/// absolute path, quoted for the shell.
#[test]
fn standins_and_helpers_run_from_the_proffer_binary() {
    let yaml = "name: local\nartifacts:\n  etcd: {path: etcd}\n  kube-apiserver: {standin: true}\n  \
                kube-controller-manager: {standin: true}\n  kube-scheduler: {standin: true}\n  \
                kubelet: {standin: true}\n  kube-proxy: {standin: true}\n  coredns: {standin: true}\n  \
                kubectl: {path: 'true'}\n";
    let cluster = ClusterConfig::parse(yaml, None).unwrap();
    assert_eq!(cluster.standins().len(), 6);
    let mut opts = options(true);
    opts.control_plane.truncate(1);
    opts.programs = Programs::Subcommands {
        binary: "/opt/my tools/proffer".into(),
    };
    let spec = service_spec(&cluster, &opts).unwrap();
    let bin = "'/opt/my tools/proffer'";
    let cmd = |pod: &str, task: &str| spec.pod(pod).unwrap().task(task).unwrap().clone();
    for (pod, task, program) in [
        ("apiserver-0", "apiserver", "kube-apiserver-standin"),
        (
            "controller-manager-0",
            "controller-manager",
            "kube-controller-manager-standin",
        ),
        ("scheduler-0", "scheduler", "kube-scheduler-standin"),
        ("node", "kubelet", "kubelet-standin"),
        ("node", "kube-proxy", "kube-proxy-standin"),
        ("coredns", "coredns", "coredns-standin"),
    ] {
        let t = cmd(pod, task);
        assert!(
            t.cmd.contains(&format!("exec {bin} {program} ")),
            "{pod}/{task}: {}",
            t.cmd
        );
    }
    let etcd = cmd("etcd-0", "member");
    assert!(
        etcd.cmd
            .contains(&format!("JOIN=$({bin} k8s-etcd-member --name cp-0")),
        "{}",
        etcd.cmd
    );
    assert!(etcd.cmd.contains("BIN='etcd'"), "{}", etcd.cmd);
    let ready = etcd.readiness_check.unwrap().cmd.unwrap();
    assert!(
        ready.starts_with(&format!("{bin} k8s-probe --cacert")),
        "{ready}"
    );
    // A stand-in for a component without one, or with a path too, is refused by field.
    for (good, bad, field) in [
        (
            "etcd: {path: etcd}",
            "etcd: {standin: true}",
            "artifacts.etcd.standin",
        ),
        (
            "kubelet: {standin: true}",
            "kubelet: {standin: true, path: /x}",
            "artifacts.kubelet",
        ),
    ] {
        let e = ClusterConfig::parse(&yaml.replace(good, bad), None).unwrap_err();
        assert_eq!(e.path, field, "{e}");
    }
}
