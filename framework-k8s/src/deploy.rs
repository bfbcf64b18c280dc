//! The deploy plan as a Proffer service spec: etcd → kube-apiserver → kube-controller-manager
//! → kube-scheduler → nodes (kubelet + kube-proxy) → CoreDNS → addons.
//!
//! Control-plane instances are pod types of their own (`etcd-0`, `apiserver-1`, ...) so that
//! each gets its own certificates, addresses and ports and distinct agents (`avoid` rules);
//! nodes and CoreDNS are counted pod types. The update plan (upgrades, config changes) rolls one
//! instance at a time: etcd, apiservers, controller-managers, schedulers, nodes, CoreDNS, addons.
//! The deploy plan uses the `dependency` strategy:
//! every group's phases wait for all phases of the previous group, each step for its task's
//! readiness check (TLS probes with `k8s-probe` trusting the cluster CA).
//!
//! Certificates come from a PKI bundle directory ([`crate::pki::ClusterPki::write_to`]) that the
//! agents can read; each task copies only the files it needs into its sandbox, keys with mode
//! 0600. Artifacts given by URL are fetched by the agent (`uris`) and checked with
//! `sha256sum -c` before they run.

use proffer_sdk::service::spec::{
    CheckSpec, Goal, IndexedMap, PhaseSpec, PlacementRule, PlanSpec, PodSpec, PortSpec,
    ServiceSpec, StrategyKind, TaskSpec, VolumeSpec,
};

use crate::bundle::{Bundle, is_secret};
use crate::config::{COMPONENTS, Cluster, Ports};
use crate::container::{SANDBOX, programs_in_sandbox};
use crate::pki::{Host, PkiRequest};
use crate::programs::{ETCD_MEMBER, PROBE, Programs, shell_quote, standin_of};

/// Where the deploy runs.
#[derive(Debug, Clone, PartialEq)]
pub struct DeployOptions {
    /// Absolute path of the PKI bundle, readable on every agent.
    pub pki_dir: String,
    /// Where tasks find `k8s-probe` (readiness checks), `k8s-etcd-member` (run before each
    /// etcd member starts) and the stand-ins of `standin: true` artifacts.
    pub programs: Programs,
    /// One host per control-plane instance (its name and the address it advertises).
    pub control_plane: Vec<Host>,
    /// All agents share one address (a local test cluster): control-plane instance `i` uses
    /// the port block `port-base + i × 11` (not declared as port resources: choose a
    /// `port-base` outside the agents' offered ranges), and node and CoreDNS ports are any
    /// offered ones. Otherwise every port is the cluster's fixed one, declared as a resource.
    pub local: bool,
    /// Nodes one agent may host (1, the default, is one node per agent; more packs nodes, as
    /// benchmarks on few agents do).
    pub nodes_per_agent: u32,
    /// Where tasks fetch their PKI files (`http://HOST:PORT/pki/TOKEN`, served by
    /// [`crate::bundle::serve`]) instead of copying them from `pki_dir`.
    pub pki_url: Option<String>,
}

/// A deploy that cannot be generated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DeployError(pub String);

/// The ports of control-plane instance `i`.
pub fn instance_ports(cluster: &Cluster, i: u32, local: bool) -> Ports {
    match (local, cluster.config.port_base) {
        (true, base) => {
            let base = u32::from(base.unwrap_or(30000)) + i * u32::from(Ports::BLOCK);
            Ports::from_base(u16::try_from(base).unwrap_or(u16::MAX - Ports::BLOCK))
        }
        (false, _) => cluster.ports,
    }
}

fn address(h: &Host) -> String {
    h.ip.map_or_else(|| h.name.clone(), |ip| ip.to_string())
}

/// The PKI request matching the deploy: control-plane hosts, nodes `node-0..N`, the first
/// apiserver as the kubeconfig server.
pub fn pki_request(cluster: &Cluster, opts: &DeployOptions) -> Result<PkiRequest, DeployError> {
    let first = opts
        .control_plane
        .first()
        .ok_or_else(|| DeployError("no control-plane hosts".into()))?;
    let api = instance_ports(cluster, 0, opts.local).apiserver;
    Ok(PkiRequest {
        cluster_name: cluster.config.name.clone(),
        api_service_ip: cluster.api_service_ip,
        dns_domain: cluster.config.dns_domain.clone(),
        apiserver_url: format!("https://{}:{api}", address(first)),
        control_plane: opts.control_plane.clone(),
        nodes: (0..cluster.config.node_count)
            .map(|i| Host {
                name: format!("node-{i}"),
                ip: None,
            })
            .collect(),
        extra_sans: Vec::new(),
        validity: std::time::Duration::from_secs(365 * 86400),
    })
}

/// A task's shell prelude (`&&`-joined), the URIs the agent fetches, the words that run
/// the component (after `exec`), and the helper programs as the task sees them.
struct Prelude {
    sh: String,
    uris: Vec<String>,
    bin: String,
    /// The words that start a `k8s-probe` check command (in a container: from the sandbox).
    probe: String,
    programs: Programs,
}

/// The shell prelude of a task: put the files of `bundle` into the sandbox (copied from the
/// shared bundle directory, or fetched as `BUNDLE.tar` from [`DeployOptions::pki_url`] and
/// unpacked) and resolve the component's binary into `$BIN` (a stand-in runs from the deploy's
/// programs).
fn prelude(cluster: &Cluster, opts: &DeployOptions, component: &str, bundle: &Bundle) -> Prelude {
    let mut sh = vec!["set -e".to_string(), "umask 077".into()];
    let mut uris = Vec::new();
    let mut programs = opts.programs.clone();
    let mut probe = programs.command(PROBE);
    if cluster.image(component).is_some() {
        // The image's working directory may be elsewhere: the files are in the sandbox.
        sh.insert(0, format!("cd {SANDBOX}"));
        let mut needed = vec![PROBE];
        needed.extend(
            standin_of(component)
                .filter(|_| cluster.artifact(component).is_some_and(|a| a.standin)),
        );
        if component == "etcd" {
            needed.push(ETCD_MEMBER);
        }
        let (inside, fetched, steps) = programs_in_sandbox(&opts.programs, &needed);
        uris.extend(fetched);
        sh.extend(steps);
        programs = inside;
        // Checks run in the container too (`RUNTIME exec`), from its working directory.
        probe = format!("cd {SANDBOX} && {}", programs.command(PROBE));
    }
    match &opts.pki_url {
        Some(base) => {
            let name = bundle.name();
            uris.push(format!("{}/{name}.tar", base.trim_end_matches('/')));
            sh.push(format!("tar -xpf '{name}.tar'"));
            sh.push(format!("rm -f '{name}.tar'"));
        }
        None => {
            for (src, dst) in bundle.files(&opts.control_plane).unwrap_or_default() {
                let mode = if is_secret(&dst) { "600" } else { "644" };
                sh.push(format!(
                    "install -D -m {mode} '{}/{src}' '{dst}'",
                    opts.pki_dir
                ));
            }
        }
    }
    let mut bin = "\"$BIN\"".to_string();
    match cluster.artifact(component) {
        Some(a) if a.standin => {
            let program = standin_of(component).unwrap_or(component);
            bin = programs.command(program);
        }
        Some(a) if a.url.is_some() => {
            let url = a.url.clone().unwrap_or_default();
            let file = url.rsplit('/').next().unwrap_or(component).to_string();
            uris.push(url);
            sh.push(format!(
                "echo '{}  {file}' | sha256sum -c -",
                a.sha256.clone().unwrap_or_default()
            ));
            sh.push(format!("chmod +x '{file}'"));
            sh.push(format!("BIN=./{file}"));
        }
        Some(a) => sh.push(format!(
            "BIN={}",
            shell_quote(a.path.as_deref().unwrap_or_default())
        )),
        None => sh.push(format!("BIN={component}")),
    }
    Prelude {
        sh: sh.join(" && "),
        uris,
        bin,
        probe,
        programs,
    }
}

fn probe_check(cmd: String) -> CheckSpec {
    CheckSpec {
        cmd: Some(cmd),
        http: None,
        interval: 1.0,
        delay: 0.0,
        timeout: 5.0,
        max_consecutive_failures: 3,
        grace_period: 0.0,
    }
}

fn task(
    cluster: &Cluster,
    component: &str,
    cmd: String,
    uris: Vec<String>,
    ready: CheckSpec,
) -> TaskSpec {
    let r = cluster.resources(component);
    TaskSpec {
        goal: Goal::Running,
        cmd,
        cpus: r.cpus,
        memory: r.memory,
        disk: if component == "etcd" { 0.0 } else { r.disk },
        ports: Vec::new(),
        // The version is part of every task's configuration, so changing it restarts each
        // task through the update plan even when the binary's path stays the same.
        env: [(
            "KUBERNETES_VERSION".to_string(),
            cluster.config.kubernetes_version.clone(),
        )]
        .into(),
        uris,
        health_check: None,
        readiness_check: Some(ready),
        kill_grace_period: Some(10.0),
        image: cluster.image(component).map(str::to_string),
    }
}

fn port(name: &str, port: u16) -> (String, PortSpec) {
    (
        name.to_string(),
        PortSpec {
            port: u64::from(port),
            env: None,
        },
    )
}

fn pod(
    placement: Vec<PlacementRule>,
    volumes: IndexedMap<VolumeSpec>,
    tasks: IndexedMap<TaskSpec>,
    count: u32,
) -> PodSpec {
    PodSpec {
        count,
        placement,
        volumes,
        tasks,
    }
}

/// Instance `i` of `kind` avoids the agents of the other instances (both ways, so that a
/// replacement of any instance also lands on an agent of its own).
fn avoid_others(kind: &str, i: u32, n: u32) -> Vec<PlacementRule> {
    (0..n)
        .filter(|&j| j != i)
        .map(|j| PlacementRule::Avoid(format!("{kind}-{j}")))
        .collect()
}

/// Generates the service spec of a cluster.
pub fn service_spec(cluster: &Cluster, opts: &DeployOptions) -> Result<ServiceSpec, DeployError> {
    let n = cluster.config.control_plane_count;
    if opts.control_plane.len() != n as usize {
        return Err(DeployError(format!(
            "{} control-plane hosts given for control-plane-count {n}",
            opts.control_plane.len()
        )));
    }
    if opts.pki_url.is_none()
        && let Some(c) = COMPONENTS.iter().find(|c| cluster.image(c).is_some())
    {
        return Err(DeployError(format!(
            "artifacts.{c}.image: a component in a container cannot read the PKI directory \
             {}; serve the PKI files over HTTP instead (`proffer k8s install --serve-pki IP:PORT`)",
            opts.pki_dir
        )));
    }
    let mut pods: IndexedMap<PodSpec> = Vec::new();
    let hosts = &opts.control_plane;
    let ports: Vec<Ports> = (0..n)
        .map(|i| instance_ports(cluster, i, opts.local))
        .collect();
    let initial = hosts
        .iter()
        .zip(&ports)
        .map(|(h, p)| format!("{}=https://{}:{}", h.name, address(h), p.etcd_peer))
        .collect::<Vec<_>>()
        .join(",");
    let etcd_servers = hosts
        .iter()
        .zip(&ports)
        .map(|(h, p)| format!("https://{}:{}", address(h), p.etcd_client))
        .collect::<Vec<_>>()
        .join(",");
    let etcd_client_probe = "--cacert pki/etcd/ca.crt --cert pki/apiserver-etcd-client.crt --key pki/apiserver-etcd-client.key";
    for (i, (h, p)) in (0u32..).zip(hosts.iter().zip(&ports)) {
        let (ip, m) = (address(h), &h.name);
        let Prelude {
            sh: pre,
            uris,
            bin,
            probe,
            programs,
        } = prelude(cluster, opts, "etcd", &Bundle::Etcd(i));
        // The member's data lives on the pod's volume `data`: a relaunch on its volume (update
        // plan, crash) restarts the member from its data; a member without data decides with
        // `k8s-etcd-member` whether to bootstrap or to join (remove + add) the running cluster.
        // The data directory and cluster token carry an id of this cluster's etcd CA: a
        // volume left on an agent by an earlier cluster of the same name (agents keep volume
        // directories after DESTROY) is not taken for this one's data, and its members cannot
        // join this cluster.
        let cmd = format!(
            "{pre} && ID=$(sha256sum pki/etcd/ca.crt | cut -c1-16) \
             && JOIN=$({member} --name {m} --peer-url https://{ip}:{pp} \
             --client-url https://{ip}:{c} --endpoints {etcd_servers} --initial-cluster {initial} \
             --data-dir \"data/etcd-$ID\" {etcd_client_probe}) && eval \"$JOIN\" \
             && exec {bin} --name {m} --data-dir \"data/etcd-$ID\" \
             --listen-client-urls https://{ip}:{c} --advertise-client-urls https://{ip}:{c} \
             --listen-peer-urls https://{ip}:{pp} --initial-advertise-peer-urls https://{ip}:{pp} \
             --initial-cluster \"$K8S_ETCD_CLUSTER\" --initial-cluster-state \"$K8S_ETCD_STATE\" \
             --initial-cluster-token \"{name}-$ID\" \
             --cert-file pki/etcd/server.crt --key-file pki/etcd/server.key --trusted-ca-file pki/etcd/ca.crt \
             --client-cert-auth=true --peer-cert-file pki/etcd/peer.crt --peer-key-file pki/etcd/peer.key \
             --peer-trusted-ca-file pki/etcd/ca.crt --peer-client-cert-auth=true",
            c = p.etcd_client,
            pp = p.etcd_peer,
            name = cluster.framework_name(),
            member = programs.command(ETCD_MEMBER),
        );
        let ready = probe_check(format!(
            "{probe} {etcd_client_probe} https://{ip}:{}/health",
            p.etcd_client
        ));
        let mut t = task(cluster, "etcd", cmd, uris, ready);
        if !opts.local {
            t.ports = vec![port("client", p.etcd_client), port("peer", p.etcd_peer)];
        }
        let disk = cluster.resources("etcd").disk.max(1.0) as u64;
        let vols = vec![(
            "data".to_string(),
            VolumeSpec {
                path: "data".into(),
                size: disk,
            },
        )];
        pods.push((
            format!("etcd-{i}"),
            pod(
                avoid_others("etcd", i, n),
                vols,
                vec![("member".into(), t)],
                1,
            ),
        ));
    }
    for (i, (h, p)) in (0u32..).zip(hosts.iter().zip(&ports)) {
        let ip = address(h);
        let Prelude {
            sh: pre,
            uris,
            bin,
            probe,
            ..
        } = prelude(cluster, opts, "kube-apiserver", &Bundle::Apiserver(i));
        let cmd = format!(
            "{pre} && exec {bin} --advertise-address={ip} --secure-port={port} --etcd-servers={etcd_servers} \
             --etcd-cafile=pki/etcd/ca.crt --etcd-certfile=pki/apiserver-etcd-client.crt \
             --etcd-keyfile=pki/apiserver-etcd-client.key --tls-cert-file=pki/apiserver.crt \
             --tls-private-key-file=pki/apiserver.key --client-ca-file=pki/ca.crt \
             --service-account-key-file=pki/sa.pub --service-account-signing-key-file=pki/sa.key \
             --service-account-issuer=https://kubernetes.default.svc.{domain} \
             --service-cluster-ip-range={svc} --kubelet-client-certificate=pki/apiserver-kubelet-client.crt \
             --kubelet-client-key=pki/apiserver-kubelet-client.key --proxy-client-cert-file=pki/front-proxy-client.crt \
             --proxy-client-key-file=pki/front-proxy-client.key --requestheader-client-ca-file=pki/front-proxy-ca.crt \
             --requestheader-allowed-names=front-proxy-client --requestheader-username-headers=X-Remote-User \
             --requestheader-group-headers=X-Remote-Group --requestheader-extra-headers-prefix=X-Remote-Extra- \
             --authorization-mode=Node,RBAC --enable-admission-plugins=NodeRestriction --allow-privileged=true",
            port = p.apiserver,
            domain = cluster.config.dns_domain,
            svc = cluster.service_cidr,
        );
        let ready = probe_check(format!(
            "{probe} --cacert pki/ca.crt https://{ip}:{}/readyz",
            p.apiserver
        ));
        let mut t = task(cluster, "kube-apiserver", cmd, uris, ready);
        if !opts.local {
            t.ports = vec![port("https", p.apiserver)];
        }
        pods.push((
            format!("apiserver-{i}"),
            pod(
                avoid_others("apiserver", i, n),
                Vec::new(),
                vec![("apiserver".into(), t)],
                1,
            ),
        ));
    }
    for (kind, component, key) in [
        (
            "controller-manager",
            "kube-controller-manager",
            "controller-manager",
        ),
        ("scheduler", "kube-scheduler", "scheduler"),
    ] {
        for (i, p) in (0u32..).zip(&ports) {
            let secure = if kind == "scheduler" {
                p.scheduler
            } else {
                p.controller_manager
            };
            let bundle = if kind == "scheduler" {
                Bundle::Scheduler(i)
            } else {
                Bundle::ControllerManager(i)
            };
            let Prelude {
                sh: pre,
                uris,
                bin,
                probe,
                ..
            } = prelude(cluster, opts, component, &bundle);
            let mut cmd = format!(
                "{pre} && exec {bin} --kubeconfig={key}.conf --authentication-kubeconfig={key}.conf \
                 --authorization-kubeconfig={key}.conf --bind-address=0.0.0.0 --secure-port={secure} \
                 --leader-elect=true --tls-cert-file=pki/serving.crt --tls-private-key-file=pki/serving.key"
            );
            if kind == "controller-manager" {
                cmd.push_str(&format!(
                    " --cluster-name={} --cluster-cidr={} --service-cluster-ip-range={} --allocate-node-cidrs=true \
                     --cluster-signing-cert-file=pki/ca.crt --cluster-signing-key-file=pki/ca.key --root-ca-file=pki/ca.crt \
                     --service-account-private-key-file=pki/sa.key --use-service-account-credentials=true \
                     --controllers=*,bootstrapsigner,tokencleaner",
                    cluster.config.name, cluster.cluster_cidr, cluster.service_cidr
                ));
            }
            let ready = probe_check(format!(
                "{probe} --cacert pki/ca.crt https://127.0.0.1:{secure}/healthz"
            ));
            let mut t = task(cluster, component, cmd, uris, ready);
            if !opts.local {
                t.ports = vec![port("https", secure)];
            }
            pods.push((
                format!("{kind}-{i}"),
                pod(
                    avoid_others(kind, i, n),
                    Vec::new(),
                    vec![(kind.into(), t)],
                    1,
                ),
            ));
        }
    }
    pods.push(("node".into(), node_pod(cluster, opts)));
    pods.push(("coredns".into(), coredns_pod(cluster, opts)));
    pods.push(("addons".into(), addons_pod(cluster, opts)));
    Ok(ServiceSpec {
        name: cluster.framework_name().to_string(),
        role: cluster.role().to_string(),
        failover_timeout: 600.0,
        options: Default::default(),
        plans: vec![
            ("deploy".into(), deploy_plan(&pods, n)),
            ("update".into(), update_plan(&pods, n)),
        ],
        pods,
    })
}

fn node_pod(cluster: &Cluster, opts: &DeployOptions) -> PodSpec {
    let fixed = |p: u16| if opts.local { 0 } else { p };
    let Prelude {
        sh: pre, uris, bin, ..
    } = prelude(
        cluster,
        opts,
        "kubelet",
        &Bundle::Kubelet("{{POD_INDEX}}".into()),
    );
    let kubelet_cmd = format!(
        "{pre} && printf 'apiVersion: kubelet.config.k8s.io/v1beta1\\nkind: KubeletConfiguration\\nclusterDomain: {domain}\\nclusterDNS: [{dns}]\\nauthentication:\\n  x509:\\n    clientCAFile: pki/ca.crt\\n' > kubelet.yaml \
         && exec {bin} --kubeconfig=kubelet.conf --config=kubelet.yaml --hostname-override=node-{{{{POD_INDEX}}}} \
         --healthz-port=$PORT_HEALTHZ --healthz-bind-address=127.0.0.1 --container-runtime-endpoint=unix:///run/containerd/containerd.sock",
        domain = cluster.config.dns_domain,
        dns = cluster.dns_ip,
    );
    let mut kubelet = task(
        cluster,
        "kubelet",
        kubelet_cmd,
        uris,
        http_check("healthz", "/healthz"),
    );
    kubelet.ports = vec![port("healthz", fixed(cluster.ports.kubelet_healthz))];
    let Prelude {
        sh: pre, uris, bin, ..
    } = prelude(cluster, opts, "kube-proxy", &Bundle::KubeProxy);
    let proxy_cmd = format!(
        "{pre} && exec {bin} --kubeconfig=kube-proxy.conf --hostname-override=node-{{{{POD_INDEX}}}} \
         --cluster-cidr={} --healthz-bind-address=0.0.0.0:$PORT_PROXY_HEALTHZ --proxy-mode=iptables",
        cluster.cluster_cidr
    );
    let mut proxy = task(
        cluster,
        "kube-proxy",
        proxy_cmd,
        uris,
        http_check("proxy-healthz", "/healthz"),
    );
    proxy.ports = vec![port(
        "proxy-healthz",
        fixed(cluster.ports.kube_proxy_healthz),
    )];
    let placement = if opts.nodes_per_agent <= 1 {
        PlacementRule::OnePerAgent
    } else {
        PlacementRule::MaxPer {
            attribute: "hostname".into(),
            max: opts.nodes_per_agent,
        }
    };
    pod(
        vec![placement],
        Vec::new(),
        vec![("kubelet".into(), kubelet), ("kube-proxy".into(), proxy)],
        cluster.config.node_count,
    )
}

fn http_check(port: &str, path: &str) -> CheckSpec {
    CheckSpec {
        cmd: None,
        http: Some(proffer_sdk::service::spec::HttpCheckSpec {
            port: port.into(),
            path: path.into(),
        }),
        ..probe_check(String::new())
    }
}

fn coredns_pod(cluster: &Cluster, opts: &DeployOptions) -> PodSpec {
    let fixed = |p: u16| if opts.local { 0 } else { p };
    let Prelude {
        sh: pre, uris, bin, ..
    } = prelude(cluster, opts, "coredns", &Bundle::Coredns);
    let cmd = format!(
        "{pre} && printf '.:53 {{\\n  errors\\n  health :%s\\n  ready :%s\\n  kubernetes {domain} in-addr.arpa ip6.arpa {{\\n    kubeconfig coredns.conf\\n    pods insecure\\n    fallthrough in-addr.arpa ip6.arpa\\n  }}\\n  forward . /etc/resolv.conf\\n  cache 30\\n  loop\\n  reload\\n}}\\n' \
         \"$PORT_HEALTH\" \"$PORT_READY\" > Corefile && exec {bin} -conf Corefile -dns.port $PORT_DNS",
        domain = cluster.config.dns_domain
    );
    let mut t = task(cluster, "coredns", cmd, uris, http_check("ready", "/ready"));
    t.ports = vec![
        port("dns", fixed(cluster.ports.coredns_dns)),
        port("health", fixed(cluster.ports.coredns_health)),
        port("ready", fixed(cluster.ports.coredns_ready)),
    ];
    let placement = if opts.local {
        Vec::new()
    } else {
        vec![PlacementRule::OnePerAgent]
    };
    pod(placement, Vec::new(), vec![("coredns".into(), t)], 2)
}

/// The cluster-DNS Service applied by the addons step.
pub fn addons_manifest(cluster: &Cluster) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: kube-dns\n  namespace: kube-system\n  labels: {{k8s-app: kube-dns}}\nspec:\n  clusterIP: {}\n  selector: {{k8s-app: kube-dns}}\n  ports:\n  - {{name: dns, port: 53, protocol: UDP}}\n  - {{name: dns-tcp, port: 53, protocol: TCP}}\n",
        cluster.dns_ip
    )
}

fn addons_pod(cluster: &Cluster, opts: &DeployOptions) -> PodSpec {
    let Prelude {
        sh: pre, uris, bin, ..
    } = prelude(cluster, opts, "kubectl", &Bundle::Addons);
    let manifest = addons_manifest(cluster).replace('\n', "\\n");
    let cmd = format!(
        "{pre} && printf '{manifest}' > addons.yaml && exec {bin} --kubeconfig=admin.conf apply -f addons.yaml"
    );
    let mut t = task(cluster, "kubectl", cmd, uris, probe_check("true".into()));
    t.goal = Goal::Finish;
    t.readiness_check = None;
    pod(Vec::new(), Vec::new(), vec![("apply".into(), t)], 1)
}

/// The deploy plan: per-instance control-plane phases, each group after the previous one.
fn deploy_plan(pods: &IndexedMap<PodSpec>, n: u32) -> PlanSpec {
    let group = |kind: &str| (0..n).map(|i| format!("{kind}-{i}")).collect::<Vec<_>>();
    let mut phases: IndexedMap<PhaseSpec> = Vec::new();
    let mut previous: Vec<String> = Vec::new();
    for kind in ["etcd", "apiserver", "controller-manager", "scheduler"] {
        for name in group(kind) {
            phases.push((
                name.clone(),
                phase(&name, StrategyKind::Serial, previous.clone()),
            ));
        }
        previous = group(kind);
    }
    for name in ["node", "coredns", "addons"] {
        if pods.iter().any(|(p, _)| p == name) {
            phases.push((
                name.into(),
                phase(name, StrategyKind::Parallel, previous.clone()),
            ));
            previous = vec![name.into()];
        }
    }
    PlanSpec {
        strategy: StrategyKind::Dependency,
        phases,
    }
}

/// The update plan (rolling upgrade or config change): strictly one instance at a time, in the
/// order etcd, apiservers, controller-managers, schedulers, then nodes, CoreDNS and addons.
fn update_plan(pods: &IndexedMap<PodSpec>, n: u32) -> PlanSpec {
    let mut phases: IndexedMap<PhaseSpec> = Vec::new();
    for kind in ["etcd", "apiserver", "controller-manager", "scheduler"] {
        for i in 0..n {
            let name = format!("{kind}-{i}");
            phases.push((name.clone(), phase(&name, StrategyKind::Serial, Vec::new())));
        }
    }
    for name in ["node", "coredns", "addons"] {
        if pods.iter().any(|(p, _)| p == name) {
            phases.push((name.into(), phase(name, StrategyKind::Serial, Vec::new())));
        }
    }
    PlanSpec {
        strategy: StrategyKind::Serial,
        phases,
    }
}

fn phase(pod: &str, strategy: StrategyKind, depends: Vec<String>) -> PhaseSpec {
    PhaseSpec {
        strategy,
        pod: pod.into(),
        tasks: Vec::new(),
        depends,
    }
}

/// The spec as YAML the SDK parses back (the SDK serializes specs in the form it reads).
pub fn spec_yaml(spec: &ServiceSpec) -> Result<String, DeployError> {
    serde_norway::to_string(spec).map_err(|e| DeployError(format!("serializing the spec: {e}")))
}
