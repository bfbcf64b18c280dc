//! The cluster configuration (`cluster.yaml`): serde model, defaults and validation.
//!
//! Every field but `name` has a default. [`ClusterConfig::parse`] reads the YAML (unknown fields
//! are refused, with the field's path), fills the defaults and validates the semantics; every
//! error names the field it is about (`kubernetes-version: ...`). Artifacts default to the
//! upstream release binaries of the chosen version (`dl.k8s.io` URLs); their sha256 must be
//! given, because a default cannot know it without downloading.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use proffer_proto::resources::{to_milli, validate_role};
use proffer_sdk::service::validate::{MAX_POD_COUNT, check_name_text};

use crate::cidr::Cidr;

/// A configuration error: the dotted path of the field and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct ConfigError {
    /// The field (`control-plane-count`, `artifacts.kubelet.sha256`, ...).
    pub path: String,
    /// What is wrong.
    pub reason: String,
}

fn err(path: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        path: path.into(),
        reason: reason.into(),
    }
}

/// The components of a cluster, in deploy order.
pub const COMPONENTS: [&str; 8] = [
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubelet",
    "kube-proxy",
    "coredns",
    "kubectl",
];

/// A Kubernetes cluster to stand up on Proffer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ClusterConfig {
    /// The cluster's name (lowercase letters, digits, `-`).
    pub name: String,
    /// The Kubernetes version, `vMAJOR.MINOR.PATCH`.
    #[serde(default = "default_version")]
    pub kubernetes_version: String,
    /// The CoreDNS version (`MAJOR.MINOR.PATCH`, no `v`).
    #[serde(default = "default_coredns_version")]
    pub coredns_version: String,
    /// The etcd version used for the default etcd artifact URL.
    #[serde(default = "default_etcd_version")]
    pub etcd_version: String,
    /// CPU architecture of the release artifacts (`amd64`, `arm64`).
    #[serde(default = "default_arch")]
    pub arch: String,
    /// Control-plane instances (etcd, apiserver, controller-manager, scheduler): 1 or 3.
    #[serde(default = "one")]
    pub control_plane_count: u32,
    /// Worker nodes (kubelet + kube-proxy), at most one per agent.
    #[serde(default = "three")]
    pub node_count: u32,
    /// The Proffer framework name (default `k8s-<name>`).
    #[serde(default)]
    pub framework_name: Option<String>,
    /// The role resources are reserved for (default `k8s-<name>`).
    #[serde(default)]
    pub role: Option<String>,
    /// First port of this cluster's port block; unset means the upstream default ports
    /// (2379, 6443, 10257, ...). Set it to run two clusters on the same agents.
    #[serde(default)]
    pub port_base: Option<u16>,
    /// The Service network.
    #[serde(default = "default_service_cidr")]
    pub service_cidr: String,
    /// The Pod network.
    #[serde(default = "default_cluster_cidr")]
    pub cluster_cidr: String,
    /// The cluster DNS Service IP (inside `service-cidr`; default its 10th address).
    #[serde(default)]
    pub dns_ip: Option<String>,
    /// The cluster DNS domain.
    #[serde(default = "default_domain")]
    pub dns_domain: String,
    /// Resources per component instance (missing components take the defaults).
    #[serde(default)]
    pub resources: BTreeMap<String, ComponentResources>,
    /// Where each component's binary comes from (missing components take the defaults).
    #[serde(default)]
    pub artifacts: BTreeMap<String, Artifact>,
}

/// Resources of one component instance.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ComponentResources {
    /// CPUs (> 0).
    pub cpus: f64,
    /// Memory in MB (> 0).
    pub memory: f64,
    /// Disk in MB (a persistent volume for etcd, scratch otherwise).
    #[serde(default)]
    pub disk: f64,
}

/// Where a component's binary comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Artifact {
    /// A URL fetched into the sandbox by the agent's fetcher (exclusive with `path`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The hex sha256 of the file at `url` (required with `url`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// A binary already on every agent (absolute path or a name on `PATH`), e.g. the
    /// distribution's `etcd`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Run the component's stand-in (a test double that checks its flags and serves health,
    /// see [`crate::standin`]) from the deploy's programs: `proffer kube-apiserver-standin …`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub standin: bool,
    /// Run the component in a container from this image (docs/containers.md): an OCI image
    /// layout directory, a tar of one or a `docker save` archive, by absolute path, `file://`
    /// or `http(s)://`. `path` is then a program inside the image (default: the component's
    /// name on the image's `PATH`); a `url` artifact or a stand-in is fetched into the sandbox.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
}

fn default_version() -> String {
    "v1.31.2".into()
}
fn default_coredns_version() -> String {
    "1.11.3".into()
}
fn default_etcd_version() -> String {
    "3.5.16".into()
}
fn default_arch() -> String {
    "amd64".into()
}
fn one() -> u32 {
    1
}
fn three() -> u32 {
    3
}
fn default_service_cidr() -> String {
    "10.96.0.0/12".into()
}
fn default_cluster_cidr() -> String {
    "10.244.0.0/16".into()
}
fn default_domain() -> String {
    "cluster.local".into()
}

/// The default resources of a component.
pub fn default_resources(component: &str) -> ComponentResources {
    let (cpus, memory, disk) = match component {
        "etcd" => (0.5, 1024.0, 1024.0),
        "kube-apiserver" => (0.5, 1024.0, 0.0),
        "kube-controller-manager" => (0.25, 512.0, 0.0),
        "kube-scheduler" => (0.25, 256.0, 0.0),
        "kubelet" => (0.5, 1024.0, 1024.0),
        "kube-proxy" => (0.1, 128.0, 0.0),
        "coredns" => (0.1, 128.0, 0.0),
        _ => (0.1, 64.0, 0.0),
    };
    ComponentResources { cpus, memory, disk }
}

/// A parsed `vMAJOR.MINOR.PATCH` version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct KubeVersion {
    /// Major.
    pub major: u32,
    /// Minor.
    pub minor: u32,
    /// Patch.
    pub patch: u32,
}

impl KubeVersion {
    /// Parses `vMAJOR.MINOR.PATCH` (the `v` is required, no pre-release suffix).
    pub fn parse(s: &str) -> Result<Self, String> {
        let bad =
            || format!("unknown version format `{s}` (expected vMAJOR.MINOR.PATCH, e.g. v1.31.2)");
        let rest = s.strip_prefix('v').ok_or_else(bad)?;
        let parts: Vec<&str> = rest.split('.').collect();
        if parts.len() != 3
            || parts
                .iter()
                .any(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) || p.len() > 6)
        {
            return Err(bad());
        }
        let n = |i: usize| parts[i].parse::<u32>().map_err(|_| bad());
        Ok(KubeVersion {
            major: n(0)?,
            minor: n(1)?,
            patch: n(2)?,
        })
    }
}

/// The ports one cluster's components listen on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Ports {
    /// etcd client port (2379).
    pub etcd_client: u16,
    /// etcd peer port (2380).
    pub etcd_peer: u16,
    /// kube-apiserver secure port (6443).
    pub apiserver: u16,
    /// kube-controller-manager secure port (10257).
    pub controller_manager: u16,
    /// kube-scheduler secure port (10259).
    pub scheduler: u16,
    /// kubelet healthz port (10248).
    pub kubelet_healthz: u16,
    /// kubelet API port (10250).
    pub kubelet: u16,
    /// kube-proxy healthz port (10256).
    pub kube_proxy_healthz: u16,
    /// CoreDNS DNS port (53).
    pub coredns_dns: u16,
    /// CoreDNS health port (8080).
    pub coredns_health: u16,
    /// CoreDNS ready port (8181).
    pub coredns_ready: u16,
}

impl Ports {
    /// The upstream default ports.
    pub const UPSTREAM: Ports = Ports {
        etcd_client: 2379,
        etcd_peer: 2380,
        apiserver: 6443,
        controller_manager: 10257,
        scheduler: 10259,
        kubelet_healthz: 10248,
        kubelet: 10250,
        kube_proxy_healthz: 10256,
        coredns_dns: 53,
        coredns_health: 8080,
        coredns_ready: 8181,
    };

    /// How many consecutive ports a `port-base` block takes.
    pub const BLOCK: u16 = 11;

    /// The block `base .. base + BLOCK`, in the field order above.
    pub fn from_base(base: u16) -> Ports {
        Ports {
            etcd_client: base,
            etcd_peer: base + 1,
            apiserver: base + 2,
            controller_manager: base + 3,
            scheduler: base + 4,
            kubelet_healthz: base + 5,
            kubelet: base + 6,
            kube_proxy_healthz: base + 7,
            coredns_dns: base + 8,
            coredns_health: base + 9,
            coredns_ready: base + 10,
        }
    }

    /// All ports, for overlap checks.
    pub fn all(&self) -> [u16; 11] {
        [
            self.etcd_client,
            self.etcd_peer,
            self.apiserver,
            self.controller_manager,
            self.scheduler,
            self.kubelet_healthz,
            self.kubelet,
            self.kube_proxy_healthz,
            self.coredns_dns,
            self.coredns_health,
            self.coredns_ready,
        ]
    }
}

/// A validated configuration with the derived values filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct Cluster {
    /// The configuration with every default made explicit.
    pub config: ClusterConfig,
    /// The parsed version.
    pub version: KubeVersion,
    /// The Service network.
    pub service_cidr: Cidr,
    /// The Pod network.
    pub cluster_cidr: Cidr,
    /// The `kubernetes` Service IP (first address of the Service network).
    pub api_service_ip: Ipv4Addr,
    /// The cluster DNS IP.
    pub dns_ip: Ipv4Addr,
    /// The ports.
    pub ports: Ports,
}

impl Cluster {
    /// The framework name.
    pub fn framework_name(&self) -> &str {
        self.config.framework_name.as_deref().unwrap_or_default()
    }

    /// The role.
    pub fn role(&self) -> &str {
        self.config.role.as_deref().unwrap_or_default()
    }

    /// Resources of a component (always present after validation).
    pub fn resources(&self, component: &str) -> ComponentResources {
        self.config
            .resources
            .get(component)
            .copied()
            .unwrap_or_else(|| default_resources(component))
    }

    /// The artifact of a component (always present after validation).
    pub fn artifact(&self, component: &str) -> Option<&Artifact> {
        self.config.artifacts.get(component)
    }

    /// The image component `component` runs in, if it names one.
    pub fn image(&self, component: &str) -> Option<&str> {
        self.artifact(component).and_then(|a| a.image.as_deref())
    }

    /// The components that run as stand-ins (`standin: true`), in deploy order.
    pub fn standins(&self) -> Vec<&'static str> {
        COMPONENTS
            .into_iter()
            .filter(|c| self.artifact(c).is_some_and(|a| a.standin))
            .collect()
    }
}

/// The default artifact of a component for a configuration: the upstream release binary of
/// its version (no checksum: it must be given), and the distribution's `etcd` for etcd.
pub fn default_artifact(config: &ClusterConfig, component: &str) -> Artifact {
    let v = &config.kubernetes_version;
    let arch = &config.arch;
    let url = match component {
        "etcd" => {
            return Artifact {
                url: None,
                sha256: None,
                path: Some("etcd".into()),
                standin: false,
                image: None,
            };
        }
        "coredns" => {
            let c = &config.coredns_version;
            format!(
                "https://github.com/coredns/coredns/releases/download/v{c}/coredns_{c}_linux_{arch}.tgz"
            )
        }
        other => format!("https://dl.k8s.io/release/{v}/bin/linux/{arch}/{other}"),
    };
    Artifact {
        url: Some(url),
        sha256: None,
        path: None,
        standin: false,
        image: None,
    }
}

impl ClusterConfig {
    /// Parses and validates a `cluster.yaml`. `agents` is the number of agents when known
    /// (node and control-plane counts are checked against it).
    pub fn parse(yaml: &str, agents: Option<usize>) -> Result<Cluster, ConfigError> {
        let de = serde_norway::Deserializer::from_str(yaml);
        let config: ClusterConfig = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let path = if path == "." { String::new() } else { path };
            err(path, e.into_inner().to_string())
        })?;
        config.validate(agents)
    }

    /// Fills the defaults and validates; see [`ClusterConfig::parse`].
    pub fn validate(mut self, agents: Option<usize>) -> Result<Cluster, ConfigError> {
        if self.name.is_empty()
            || self.name.len() > 40
            || !self
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            || self.name.starts_with('-')
            || self.name.ends_with('-')
            || self.name.contains("--")
        {
            return Err(err(
                "name",
                format!(
                    "`{}` must be 1-40 of a-z, 0-9 and single inner `-`",
                    self.name
                ),
            ));
        }
        let version = KubeVersion::parse(&self.kubernetes_version)
            .map_err(|r| err("kubernetes-version", r))?;
        if version.major != 1 {
            return Err(err(
                "kubernetes-version",
                format!(
                    "unsupported major version in `{}` (only v1.x)",
                    self.kubernetes_version
                ),
            ));
        }
        KubeVersion::parse(&format!("v{}", self.coredns_version)).map_err(|_| {
            err(
                "coredns-version",
                format!("`{}` is not MAJOR.MINOR.PATCH", self.coredns_version),
            )
        })?;
        KubeVersion::parse(&format!("v{}", self.etcd_version)).map_err(|_| {
            err(
                "etcd-version",
                format!("`{}` is not MAJOR.MINOR.PATCH", self.etcd_version),
            )
        })?;
        if !matches!(self.arch.as_str(), "amd64" | "arm64") {
            return Err(err(
                "arch",
                format!("`{}` is not amd64 or arm64", self.arch),
            ));
        }
        if !matches!(self.control_plane_count, 1 | 3) {
            return Err(err(
                "control-plane-count",
                format!(
                    "{} is not 1 or 3 (etcd needs an odd member count; 3 gives HA)",
                    self.control_plane_count
                ),
            ));
        }
        if self.node_count == 0 {
            return Err(err("node-count", "must be at least 1"));
        }
        if self.node_count > MAX_POD_COUNT {
            return Err(err(
                "node-count",
                format!("{} is more than {MAX_POD_COUNT}", self.node_count),
            ));
        }
        if let Some(agents) = agents {
            if self.node_count as usize > agents {
                return Err(err(
                    "node-count",
                    format!(
                        "{} nodes need {} agents (at most one node per agent), the cluster has {agents}",
                        self.node_count, self.node_count
                    ),
                ));
            }
            if self.control_plane_count as usize > agents {
                return Err(err(
                    "control-plane-count",
                    format!(
                        "{} instances need {} distinct agents, the cluster has {agents}",
                        self.control_plane_count, self.control_plane_count
                    ),
                ));
            }
        }
        let service_cidr: Cidr = self
            .service_cidr
            .parse()
            .map_err(|r| err("service-cidr", r))?;
        let cluster_cidr: Cidr = self
            .cluster_cidr
            .parse()
            .map_err(|r| err("cluster-cidr", r))?;
        if service_cidr.prefix() > 28 {
            return Err(err(
                "service-cidr",
                format!("`{service_cidr}` is too small (at most /28)"),
            ));
        }
        if service_cidr.overlaps(&cluster_cidr) {
            return Err(err(
                "cluster-cidr",
                format!("`{cluster_cidr}` overlaps service-cidr `{service_cidr}`"),
            ));
        }
        let api_service_ip = service_cidr
            .nth(1)
            .ok_or_else(|| err("service-cidr", "has no first address"))?;
        let dns_ip = match &self.dns_ip {
            Some(s) => s
                .parse::<Ipv4Addr>()
                .map_err(|_| err("dns-ip", format!("`{s}` is not an IPv4 address")))?,
            None => service_cidr
                .nth(10)
                .ok_or_else(|| err("service-cidr", "has no 10th address for the DNS IP"))?,
        };
        if !service_cidr.contains(dns_ip) || dns_ip == api_service_ip {
            return Err(err(
                "dns-ip",
                format!(
                    "{dns_ip} must be inside service-cidr `{service_cidr}` and not {api_service_ip}"
                ),
            ));
        }
        self.dns_ip = Some(dns_ip.to_string());
        if self.dns_domain.is_empty()
            || !self.dns_domain.split('.').all(|label| {
                !label.is_empty()
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            })
        {
            return Err(err(
                "dns-domain",
                format!("`{}` is not a domain", self.dns_domain),
            ));
        }
        let ports = match self.port_base {
            None => Ports::UPSTREAM,
            Some(b) if b < 1024 || u32::from(b) + u32::from(Ports::BLOCK) > 65536 => {
                return Err(err(
                    "port-base",
                    format!("{b} must leave {} ports in 1024..=65535", Ports::BLOCK),
                ));
            }
            Some(b) => Ports::from_base(b),
        };
        let default_id = format!("k8s-{}", self.name);
        // The deploy is a service of this name and role: they must be valid there.
        if let Some(name) = &self.framework_name {
            check_name_text(name).map_err(|r| err("framework-name", r))?;
        }
        if let Some(role) = &self.role {
            validate_role(role).map_err(|r| err("role", format!("`{role}`: {r}")))?;
        }
        self.framework_name
            .get_or_insert_with(|| default_id.clone());
        self.role.get_or_insert(default_id);
        for (key, res) in &self.resources {
            if !COMPONENTS.contains(&key.as_str()) {
                return Err(err(format!("resources.{key}"), unknown_component(key)));
            }
            for (field, v) in [("cpus", res.cpus), ("memory", res.memory)] {
                if !(v.is_finite() && v > 0.0) {
                    return Err(err(
                        format!("resources.{key}.{field}"),
                        format!("{v} must be > 0"),
                    ));
                }
            }
            if !(res.disk.is_finite() && res.disk >= 0.0) {
                return Err(err(
                    format!("resources.{key}.disk"),
                    format!("{} must be >= 0", res.disk),
                ));
            }
            // What the deploy's tasks (or etcd's volume) can ask for.
            for (field, name, v) in [
                ("cpus", "cpus", res.cpus),
                ("memory", "mem", res.memory),
                ("disk", "disk", res.disk),
            ] {
                match to_milli(name, v) {
                    Ok(m) if m > 0 || field == "disk" => {}
                    Ok(_) => {
                        return Err(err(
                            format!("resources.{key}.{field}"),
                            format!("{v} rounds to zero (resolution 0.001)"),
                        ));
                    }
                    Err(e) => return Err(err(format!("resources.{key}.{field}"), e.to_string())),
                }
            }
        }
        for c in COMPONENTS {
            self.resources
                .entry(c.to_string())
                .or_insert_with(|| default_resources(c));
        }
        for key in self.artifacts.keys() {
            if !COMPONENTS.contains(&key.as_str()) {
                return Err(err(format!("artifacts.{key}"), unknown_component(key)));
            }
        }
        for c in COMPONENTS {
            let default = default_artifact(&self, c);
            let a = self.artifacts.entry(c.to_string()).or_insert(default);
            if let Some(image) = &a.image {
                check_image(&format!("artifacts.{c}.image"), image)?;
                // In an image, the program defaults to the component's name on its `PATH`.
                if a.url.is_none() && a.path.is_none() && !a.standin {
                    a.path = Some(c.to_string());
                }
            }
            check_artifact(c, a)?;
        }
        Ok(Cluster {
            config: self,
            version,
            service_cidr,
            cluster_cidr,
            api_service_ip,
            dns_ip,
            ports,
        })
    }
}

fn unknown_component(key: &str) -> String {
    format!(
        "unknown component `{key}` (known: {})",
        COMPONENTS.join(", ")
    )
}

/// An image reference the agents can pull: an absolute path, `file://PATH` or an
/// `http(s)://` URL (no registry pulls), usable in a task command (no `{{`).
fn check_image(path: &str, image: &str) -> Result<(), ConfigError> {
    if image.trim().is_empty() {
        return Err(err(path, "is empty"));
    }
    if image.contains("{{") || image.chars().any(char::is_control) {
        return Err(err(
            path,
            format!("`{image}` must not contain `{{{{` or control characters"),
        ));
    }
    let local = image
        .strip_prefix("file://")
        .map_or_else(|| image.starts_with('/'), |p| p.starts_with('/'));
    let remote = ["http://", "https://"]
        .iter()
        .any(|s| image.strip_prefix(s).is_some_and(|rest| !rest.is_empty()));
    if !(local || remote) {
        return Err(err(
            path,
            format!(
                "`{image}` is not an absolute path, file:// or http(s):// URL of an image \
                 (registry names are not pulled)"
            ),
        ));
    }
    Ok(())
}

/// The local file or directory of an image named by path or `file://` URL (`None` for a URL
/// the agents download).
pub fn local_image_path(image: &str) -> Option<&str> {
    match image.strip_prefix("file://") {
        Some(p) => Some(p),
        None => image.starts_with('/').then_some(image),
    }
}

fn check_artifact(component: &str, a: &Artifact) -> Result<(), ConfigError> {
    let base = format!("artifacts.{component}");
    // Both end up in the deploy's task commands, where `{{` starts a template variable.
    for (field, v) in [("url", &a.url), ("path", &a.path)] {
        if let Some(v) = v
            && v.contains("{{")
        {
            return Err(err(
                format!("{base}.{field}"),
                format!("`{v}` must not contain `{{{{`"),
            ));
        }
    }
    if a.standin {
        if crate::programs::standin_of(component).is_none() {
            return Err(err(
                format!("{base}.standin"),
                format!(
                    "there is no stand-in for {component} (stand-ins: {})",
                    crate::programs::STANDINS.map(|(c, _)| c).join(", ")
                ),
            ));
        }
        if a.url.is_some() || a.path.is_some() || a.sha256.is_some() {
            return Err(err(
                base,
                "`standin: true` takes no `url`, `sha256` or `path`",
            ));
        }
        return Ok(());
    }
    match (&a.url, &a.path) {
        (Some(_), Some(_)) => Err(err(
            base,
            "give either `url` (with `sha256`) or `path`, not both",
        )),
        (None, None) => Err(err(
            base,
            "give `url` (with `sha256`), `path` or `standin: true`",
        )),
        (None, Some(p)) => {
            if a.sha256.is_some() {
                return Err(err(
                    format!("{base}.sha256"),
                    "only checked for `url` artifacts",
                ));
            }
            if p.is_empty() {
                return Err(err(format!("{base}.path"), "is empty"));
            }
            Ok(())
        }
        (Some(url), None) => {
            if !(url.starts_with("https://")
                || url.starts_with("http://")
                || url.starts_with("file://"))
            {
                return Err(err(
                    format!("{base}.url"),
                    format!("`{url}` is not an http(s) or file URL"),
                ));
            }
            match &a.sha256 {
                None => Err(err(
                    format!("{base}.sha256"),
                    format!(
                        "missing checksum for `{url}` (upstream publishes it at `{url}.sha256`)"
                    ),
                )),
                Some(s) if s.len() != 64 || !s.bytes().all(|b| b.is_ascii_hexdigit()) => Err(err(
                    format!("{base}.sha256"),
                    format!("`{s}` is not 64 hex digits"),
                )),
                Some(_) => Ok(()),
            }
        }
    }
}

/// Checks that clusters can run side by side: distinct names, framework names, roles and
/// disjoint port sets.
pub fn check_coexist(clusters: &[&Cluster]) -> Result<(), ConfigError> {
    for (i, a) in clusters.iter().enumerate() {
        for b in &clusters[..i] {
            let (an, bn) = (&a.config.name, &b.config.name);
            if an == bn {
                return Err(err("name", format!("two clusters are named `{an}`")));
            }
            if a.framework_name() == b.framework_name() {
                return Err(err(
                    "framework-name",
                    format!(
                        "`{an}` and `{bn}` share framework name `{}`",
                        a.framework_name()
                    ),
                ));
            }
            if a.role() == b.role() {
                return Err(err(
                    "role",
                    format!("`{an}` and `{bn}` share role `{}`", a.role()),
                ));
            }
            let bp = b.ports.all();
            if let Some(p) = a.ports.all().iter().find(|p| bp.contains(p)) {
                return Err(err(
                    "port-base",
                    format!(
                        "`{an}` and `{bn}` both use port {p}; give them distinct port-base blocks"
                    ),
                ));
            }
        }
    }
    Ok(())
}
