//! The cluster's PKI, generated with rcgen: three CAs (cluster, etcd, front-proxy), serving and
//! client certificates for every component, the service-account key pair and the kubeconfigs.
//!
//! The layout of [`ClusterPki::files`] follows kubeadm (`pki/ca.crt`, `pki/etcd/ca.crt`,
//! `admin.conf`, ...). Keys are ECDSA P-256. Key files and kubeconfigs (which embed keys) are
//! marked secret and written with mode 0600.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::time::Duration;

pub use proffer_net::pki::{Ca, CertKey, PkiError, write_file};
use proffer_net::pki::{CertSpec, dns, gen_err, san};
use rcgen::{KeyPair, SanType};

use crate::kubeconfig::{Credentials, Kubeconfig};

/// A machine a certificate must be valid for.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Host {
    /// The hostname (also the node name for kubelets).
    pub name: String,
    /// Its address, when known.
    pub ip: Option<IpAddr>,
}

/// What to generate certificates for.
#[derive(Debug, Clone)]
pub struct PkiRequest {
    /// The cluster name (kubeconfig cluster entry).
    pub cluster_name: String,
    /// The `kubernetes` Service IP (first address of the Service network).
    pub api_service_ip: Ipv4Addr,
    /// The cluster DNS domain (`cluster.local`).
    pub dns_domain: String,
    /// The apiserver URL written into the kubeconfigs.
    pub apiserver_url: String,
    /// Control-plane machines (apiserver, etcd members, controller-manager, scheduler).
    pub control_plane: Vec<Host>,
    /// Worker nodes (one kubelet client certificate and kubeconfig each).
    pub nodes: Vec<Host>,
    /// Extra apiserver SANs (DNS names or IP addresses).
    pub extra_sans: Vec<String>,
    /// Certificate lifetime.
    pub validity: Duration,
}

/// One file of the PKI bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PkiFile {
    /// Path relative to the bundle root.
    pub path: String,
    /// Contents.
    pub contents: String,
    /// Holds a private key: written 0600.
    pub secret: bool,
}

/// Everything a cluster needs.
#[derive(Debug)]
pub struct ClusterPki {
    /// Cluster CA (CN `kubernetes`): signs apiserver and component certificates.
    pub ca: Ca,
    /// etcd CA: signs etcd member certificates and the apiserver's etcd client certificate.
    pub etcd_ca: Ca,
    /// Front-proxy CA: signs the aggregation-layer client certificate.
    pub front_proxy_ca: Ca,
    /// kube-apiserver serving certificate.
    pub apiserver: CertKey,
    /// kube-apiserver → kubelet client certificate (`system:masters`).
    pub apiserver_kubelet_client: CertKey,
    /// kube-apiserver → etcd client certificate.
    pub apiserver_etcd_client: CertKey,
    /// Front-proxy client certificate.
    pub front_proxy_client: CertKey,
    /// etcd member serving certificates, by member (control-plane host) name.
    pub etcd_server: BTreeMap<String, CertKey>,
    /// etcd member peer certificates, by member name.
    pub etcd_peer: BTreeMap<String, CertKey>,
    /// Client certificates: `controller-manager`, `scheduler`, `kube-proxy`, `admin`.
    pub clients: BTreeMap<String, CertKey>,
    /// Kubelet client certificates (`system:node:NAME` in `system:nodes`), by node name.
    pub kubelets: BTreeMap<String, CertKey>,
    /// Serving certificates of `controller-manager` and `scheduler` (secure ports).
    pub serving: BTreeMap<String, CertKey>,
    /// Service-account signing key (PKCS#8 PEM) and public key (SPKI PEM).
    pub service_account: CertKey,
    /// The kubeconfigs: `admin`, `controller-manager`, `scheduler`, `kube-proxy`,
    /// `kubelet-NAME`.
    pub kubeconfigs: BTreeMap<String, Kubeconfig>,
}

/// The identities of the component client certificates: (key, CN, O).
pub const CLIENTS: [(&str, &str, Option<&str>); 4] = [
    ("controller-manager", "system:kube-controller-manager", None),
    ("scheduler", "system:kube-scheduler", None),
    (
        "kube-proxy",
        "system:kube-proxy",
        Some("system:node-proxier"),
    ),
    ("admin", "kubernetes-admin", Some("system:masters")),
];

struct Spec<'a> {
    what: &'a str,
    cn: &'a str,
    org: Option<&'a str>,
    sans: Vec<SanType>,
    server: bool,
    client: bool,
}

fn client<'a>(what: &'a str, cn: &'a str, org: Option<&'a str>) -> Spec<'a> {
    Spec {
        what,
        cn,
        org,
        sans: Vec::new(),
        server: false,
        client: true,
    }
}

fn make_ca(req: &PkiRequest, cn: &str) -> Result<Ca, PkiError> {
    Ca::generate(cn, req.validity)
}

fn sign(req: &PkiRequest, ca: &Ca, spec: Spec<'_>) -> Result<CertKey, PkiError> {
    ca.issue(&CertSpec {
        what: spec.what.to_string(),
        cn: spec.cn.to_string(),
        org: spec.org.map(str::to_string),
        sans: spec.sans,
        server: spec.server,
        client: spec.client,
        validity: req.validity,
    })
}

fn host_sans(hosts: &[&Host], what: &str) -> Result<Vec<SanType>, PkiError> {
    let mut out = vec![
        dns("localhost", what)?,
        SanType::IpAddress(Ipv4Addr::LOCALHOST.into()),
    ];
    for h in hosts {
        let s = dns(&h.name, what)?;
        if !out.contains(&s) {
            out.push(s);
        }
        if let Some(ip) = h.ip {
            let s = SanType::IpAddress(ip);
            if !out.contains(&s) {
                out.push(s);
            }
        }
    }
    Ok(out)
}

/// The apiserver serving certificate's SANs, in order: the `kubernetes` Service names, the
/// Service IP, localhost, the control-plane hosts, then the extra SANs.
pub fn apiserver_sans(req: &PkiRequest) -> Result<Vec<SanType>, PkiError> {
    let what = "apiserver SANs";
    let d = &req.dns_domain;
    let mut out = Vec::new();
    for n in [
        "kubernetes".to_string(),
        "kubernetes.default".into(),
        "kubernetes.default.svc".into(),
        format!("kubernetes.default.svc.{d}"),
    ] {
        out.push(dns(&n, what)?);
    }
    out.push(SanType::IpAddress(req.api_service_ip.into()));
    let hosts: Vec<&Host> = req.control_plane.iter().collect();
    for s in host_sans(&hosts, what)? {
        if !out.contains(&s) {
            out.push(s);
        }
    }
    for e in &req.extra_sans {
        let s = san(e, what)?;
        if !out.contains(&s) {
            out.push(s);
        }
    }
    Ok(out)
}

impl ClusterPki {
    /// Generates the whole PKI for `req`.
    pub fn generate(req: &PkiRequest) -> Result<ClusterPki, PkiError> {
        let ca = make_ca(req, "kubernetes")?;
        let etcd_ca = make_ca(req, "etcd-ca")?;
        let front_proxy_ca = make_ca(req, "front-proxy-ca")?;
        let apiserver = sign(
            req,
            &ca,
            Spec {
                what: "apiserver",
                cn: "kube-apiserver",
                org: None,
                sans: apiserver_sans(req)?,
                server: true,
                client: false,
            },
        )?;
        let apiserver_kubelet_client = sign(
            req,
            &ca,
            client(
                "apiserver-kubelet-client",
                "kube-apiserver-kubelet-client",
                Some("system:masters"),
            ),
        )?;
        let apiserver_etcd_client = sign(
            req,
            &etcd_ca,
            client("apiserver-etcd-client", "kube-apiserver-etcd-client", None),
        )?;
        let front_proxy_client = sign(
            req,
            &front_proxy_ca,
            client("front-proxy-client", "front-proxy-client", None),
        )?;
        let mut etcd_server = BTreeMap::new();
        let mut etcd_peer = BTreeMap::new();
        for h in &req.control_plane {
            let sans = host_sans(&[h], "etcd member")?;
            for (map, what) in [
                (&mut etcd_server, "etcd server"),
                (&mut etcd_peer, "etcd peer"),
            ] {
                let spec = Spec {
                    what,
                    cn: &h.name,
                    org: None,
                    sans: sans.clone(),
                    server: true,
                    client: true,
                };
                map.insert(h.name.clone(), sign(req, &etcd_ca, spec)?);
            }
        }
        let mut clients = BTreeMap::new();
        for (key, cn, org) in CLIENTS {
            clients.insert(key.to_string(), sign(req, &ca, client(key, cn, org))?);
        }
        let mut kubelets = BTreeMap::new();
        for n in &req.nodes {
            let cn = format!("system:node:{}", n.name);
            kubelets.insert(
                n.name.clone(),
                sign(req, &ca, client("kubelet", &cn, Some("system:nodes")))?,
            );
        }
        let cp: Vec<&Host> = req.control_plane.iter().collect();
        let mut serving = BTreeMap::new();
        for (key, cn) in [
            ("controller-manager", "kube-controller-manager"),
            ("scheduler", "kube-scheduler"),
        ] {
            let spec = Spec {
                what: key,
                cn,
                org: None,
                sans: host_sans(&cp, key)?,
                server: true,
                client: false,
            };
            serving.insert(key.to_string(), sign(req, &ca, spec)?);
        }
        let sa = KeyPair::generate().map_err(gen_err("service-account key"))?;
        let service_account = CertKey {
            cert_pem: sa.public_key_pem(),
            key_pem: sa.serialize_pem(),
        };
        let mut pki = ClusterPki {
            ca,
            etcd_ca,
            front_proxy_ca,
            apiserver,
            apiserver_kubelet_client,
            apiserver_etcd_client,
            front_proxy_client,
            etcd_server,
            etcd_peer,
            clients,
            kubelets,
            serving,
            service_account,
            kubeconfigs: BTreeMap::new(),
        };
        pki.kubeconfigs = pki.make_kubeconfigs(req);
        Ok(pki)
    }

    fn make_kubeconfigs(&self, req: &PkiRequest) -> BTreeMap<String, Kubeconfig> {
        let mut out = BTreeMap::new();
        let mut add = |key: String, user: &str, ck: &CertKey| {
            let creds = Credentials {
                server: req.apiserver_url.clone(),
                ca_pem: self.ca.pair.cert_pem.clone(),
                cert_pem: ck.cert_pem.clone(),
                key_pem: ck.key_pem.clone(),
            };
            out.insert(
                key,
                Kubeconfig::new(&req.cluster_name, &req.apiserver_url, user, &creds),
            );
        };
        for (key, cn, _) in CLIENTS {
            if let Some(ck) = self.clients.get(key) {
                add(key.to_string(), cn, ck);
            }
        }
        for (name, ck) in &self.kubelets {
            add(
                format!("kubelet-{name}"),
                &format!("system:node:{name}"),
                ck,
            );
        }
        out
    }

    /// The bundle as files, kubeadm layout: `pki/...` certificates and keys, `NAME.conf`
    /// kubeconfigs.
    pub fn files(&self) -> Vec<PkiFile> {
        let mut out = Vec::new();
        let mut pair = |base: String, ck: &CertKey| {
            out.push(PkiFile {
                path: format!("{base}.crt"),
                contents: ck.cert_pem.clone(),
                secret: false,
            });
            out.push(PkiFile {
                path: format!("{base}.key"),
                contents: ck.key_pem.clone(),
                secret: true,
            });
        };
        pair("pki/ca".into(), &self.ca.pair);
        pair("pki/etcd/ca".into(), &self.etcd_ca.pair);
        pair("pki/front-proxy-ca".into(), &self.front_proxy_ca.pair);
        pair("pki/apiserver".into(), &self.apiserver);
        pair(
            "pki/apiserver-kubelet-client".into(),
            &self.apiserver_kubelet_client,
        );
        pair(
            "pki/apiserver-etcd-client".into(),
            &self.apiserver_etcd_client,
        );
        pair("pki/front-proxy-client".into(), &self.front_proxy_client);
        for (m, ck) in &self.etcd_server {
            pair(format!("pki/etcd/server-{m}"), ck);
        }
        for (m, ck) in &self.etcd_peer {
            pair(format!("pki/etcd/peer-{m}"), ck);
        }
        for (k, ck) in &self.clients {
            pair(format!("pki/{k}-client"), ck);
        }
        for (n, ck) in &self.kubelets {
            pair(format!("pki/kubelet-{n}-client"), ck);
        }
        for (k, ck) in &self.serving {
            pair(format!("pki/{k}"), ck);
        }
        out.push(PkiFile {
            path: "pki/sa.pub".into(),
            contents: self.service_account.cert_pem.clone(),
            secret: false,
        });
        out.push(PkiFile {
            path: "pki/sa.key".into(),
            contents: self.service_account.key_pem.clone(),
            secret: true,
        });
        for (k, kc) in &self.kubeconfigs {
            out.push(PkiFile {
                path: format!("{k}.conf"),
                contents: kc.to_yaml(),
                secret: true,
            });
        }
        out
    }

    /// Writes [`ClusterPki::files`] under `dir`: secrets 0600, certificates 0644.
    pub fn write_to(&self, dir: &Path) -> Result<(), PkiError> {
        for f in self.files() {
            write_file(&dir.join(&f.path), f.contents.as_bytes(), f.secret)?;
        }
        Ok(())
    }
}

/// Issues kubelet client certificates and kubeconfigs for the nodes of `req` that the bundle
/// in `dir` does not have yet, signed by the bundle's cluster CA (for scaling nodes up after
/// the bundle was written). Returns the names of the nodes added.
pub fn add_nodes(dir: &Path, req: &PkiRequest) -> Result<Vec<String>, PkiError> {
    let read = |rel: &str| {
        std::fs::read_to_string(dir.join(rel)).map_err(|source| PkiError::Read {
            path: dir.join(rel).display().to_string(),
            source,
        })
    };
    let ca_pem = read("pki/ca.crt")?;
    let ca = Ca::from_pem(&ca_pem, &read("pki/ca.key")?)?;
    let mut added = Vec::new();
    for n in &req.nodes {
        let conf = dir.join(format!("kubelet-{}.conf", n.name));
        if conf.exists() {
            continue;
        }
        let cn = format!("system:node:{}", n.name);
        let ck = sign(req, &ca, client("kubelet", &cn, Some("system:nodes")))?;
        let base = format!("pki/kubelet-{}-client", n.name);
        write_file(
            &dir.join(format!("{base}.crt")),
            ck.cert_pem.as_bytes(),
            false,
        )?;
        write_file(
            &dir.join(format!("{base}.key")),
            ck.key_pem.as_bytes(),
            true,
        )?;
        let creds = Credentials {
            server: req.apiserver_url.clone(),
            ca_pem: ca_pem.clone(),
            cert_pem: ck.cert_pem,
            key_pem: ck.key_pem,
        };
        let kc = Kubeconfig::new(&req.cluster_name, &req.apiserver_url, &cn, &creds);
        write_file(&conf, kc.to_yaml().as_bytes(), true)?;
        added.push(n.name.clone());
    }
    Ok(added)
}
