//! `kube-controller-manager-standin` (HTTPS `/healthz` on `--secure-port` 10257) and
//! `kube-scheduler-standin` (HTTPS `/healthz`, `/livez`, `/readyz` on 10259).
//!
//! Both check their kubeconfigs (client certificate signed by the kubeconfig's CA, the right
//! identity) and report healthy once the apiserver named there answered `/readyz` with those
//! credentials, standing for the leader election the real ones run against the apiserver.

use std::sync::Arc;

use clap::Parser;

use super::{
    StandinError, bind, health_handler, load_kubeconfig, load_pair, probe_apiserver,
    read_flag_file, refuse, require_signed, required, serve_all,
};
use crate::cidr::Cidr;
use crate::tlsutil::{self, inspect};

/// The serving certificate: `--tls-cert-file`/`--tls-private-key-file`, or a self-signed one
/// generated at start (what the real components do without them).
fn serving(
    cert: &Option<String>,
    key: &Option<String>,
    cn: &str,
) -> Result<Arc<rustls::ServerConfig>, StandinError> {
    let (c, k) = match (cert, key) {
        (Some(c), Some(k)) => load_pair("tls-cert-file", c, "tls-private-key-file", k)?,
        (None, None) => {
            let ck = rcgen::generate_simple_self_signed(vec![
                "localhost".to_string(),
                "127.0.0.1".to_string(),
            ])
            .map_err(|e| StandinError::Io(format!("self-signed certificate for {cn}: {e}")))?;
            (ck.cert.pem(), ck.signing_key.serialize_pem())
        }
        _ => {
            return Err(refuse(
                "--tls-cert-file and --tls-private-key-file go together",
            ));
        }
    };
    tlsutil::server_config(&c, &k, None, "--tls-cert-file").map_err(|e| refuse(e.to_string()))
}

fn bool_flag(flag: &str, v: &Option<String>) -> Result<bool, StandinError> {
    match v.as_deref() {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(o) => Err(refuse(format!("--{flag}: `{o}` is not true or false"))),
    }
}

/// kube-controller-manager flags read by the stand-in.
#[derive(Debug, Parser)]
#[command(name = "kube-controller-manager-standin")]
pub struct CmFlags {
    /// Kubeconfig (identity `system:kube-controller-manager`).
    #[arg(long)]
    pub kubeconfig: Option<String>,
    /// Kubeconfig for delegated authentication.
    #[arg(long)]
    pub authentication_kubeconfig: Option<String>,
    /// Kubeconfig for delegated authorization.
    #[arg(long)]
    pub authorization_kubeconfig: Option<String>,
    /// Listen address.
    #[arg(long, default_value = "0.0.0.0")]
    pub bind_address: String,
    /// HTTPS port.
    #[arg(long, default_value_t = 10257)]
    pub secure_port: u16,
    /// The Pod network.
    #[arg(long)]
    pub cluster_cidr: Option<String>,
    /// The Service network.
    #[arg(long)]
    pub service_cluster_ip_range: Option<String>,
    /// Allocate Pod CIDRs to nodes (`true`/`false`).
    #[arg(long)]
    pub allocate_node_cidrs: Option<String>,
    /// CA certificate that signs kubelet certificates.
    #[arg(long)]
    pub cluster_signing_cert_file: Option<String>,
    /// Its key.
    #[arg(long)]
    pub cluster_signing_key_file: Option<String>,
    /// Root CA put into service-account token secrets.
    #[arg(long)]
    pub root_ca_file: Option<String>,
    /// Service-account token signing key.
    #[arg(long)]
    pub service_account_private_key_file: Option<String>,
    /// Leader election (`true`/`false`).
    #[arg(long)]
    pub leader_elect: Option<String>,
    /// Serving certificate.
    #[arg(long)]
    pub tls_cert_file: Option<String>,
    /// Serving key.
    #[arg(long)]
    pub tls_private_key_file: Option<String>,
}

/// kube-controller-manager stand-in entry point.
pub async fn run_controller_manager(args: Vec<String>) -> Result<(), StandinError> {
    let f: CmFlags = super::parse_flags(args, true)?;
    let kc = required("kubeconfig", &f.kubeconfig)?;
    let creds = load_kubeconfig(
        "kubeconfig",
        kc,
        Some("system:kube-controller-manager"),
        None,
    )?;
    for (flag, v) in [
        ("authentication-kubeconfig", &f.authentication_kubeconfig),
        ("authorization-kubeconfig", &f.authorization_kubeconfig),
    ] {
        if let Some(p) = v {
            load_kubeconfig(flag, p, None, None)?;
        }
    }
    if let Some(root) = &f.root_ca_file {
        let root = read_flag_file("root-ca-file", root)?;
        if root.trim() != creds.ca_pem.trim() {
            return Err(refuse("--root-ca-file is not the CA of --kubeconfig"));
        }
    }
    if f.cluster_signing_cert_file.is_some() || f.cluster_signing_key_file.is_some() {
        let (c, _) = load_pair(
            "cluster-signing-cert-file",
            required("cluster-signing-cert-file", &f.cluster_signing_cert_file)?,
            "cluster-signing-key-file",
            required("cluster-signing-key-file", &f.cluster_signing_key_file)?,
        )?;
        let info = inspect(&c, "--cluster-signing-cert-file").map_err(|e| refuse(e.to_string()))?;
        if !(info.is_ca && info.key_cert_sign) {
            return Err(refuse(
                "--cluster-signing-cert-file is not a CA certificate",
            ));
        }
        require_signed(
            "cluster-signing-cert-file",
            &c,
            "cluster-signing-cert-file",
            &c,
        )?;
    }
    if let Some(p) = &f.service_account_private_key_file {
        let k = read_flag_file("service-account-private-key-file", p)?;
        rcgen::KeyPair::from_pem(&k).map_err(|e| {
            refuse(format!(
                "--service-account-private-key-file: not a private key: {e}"
            ))
        })?;
    }
    let pods = match &f.cluster_cidr {
        Some(c) => Some(
            c.parse::<Cidr>()
                .map_err(|e| refuse(format!("--cluster-cidr: {e}")))?,
        ),
        None => None,
    };
    if bool_flag("allocate-node-cidrs", &f.allocate_node_cidrs)? && pods.is_none() {
        return Err(refuse("--allocate-node-cidrs=true needs --cluster-cidr"));
    }
    if let Some(s) = &f.service_cluster_ip_range {
        let svc: Cidr = s
            .parse()
            .map_err(|e| refuse(format!("--service-cluster-ip-range: {e}")))?;
        if let Some(p) = pods
            && p.overlaps(&svc)
        {
            return Err(refuse(format!(
                "--cluster-cidr {p} overlaps --service-cluster-ip-range {svc}"
            )));
        }
    }
    bool_flag("leader-elect", &f.leader_elect)?;
    let tls = serving(
        &f.tls_cert_file,
        &f.tls_private_key_file,
        "kube-controller-manager",
    )?;
    let listener = bind("secure-port", &f.bind_address, f.secure_port).await?;
    let leader = probe_apiserver(&creds)?;
    let h = health_handler(vec![("/healthz", Some((leader, "leaderElection")))]);
    serve_all(vec![(listener, Some(tls), h)]).await
}

/// kube-scheduler flags read by the stand-in.
#[derive(Debug, Parser)]
#[command(name = "kube-scheduler-standin")]
pub struct SchedFlags {
    /// Kubeconfig (identity `system:kube-scheduler`).
    #[arg(long)]
    pub kubeconfig: Option<String>,
    /// Kubeconfig for delegated authentication.
    #[arg(long)]
    pub authentication_kubeconfig: Option<String>,
    /// Kubeconfig for delegated authorization.
    #[arg(long)]
    pub authorization_kubeconfig: Option<String>,
    /// Listen address.
    #[arg(long, default_value = "0.0.0.0")]
    pub bind_address: String,
    /// HTTPS port.
    #[arg(long, default_value_t = 10259)]
    pub secure_port: u16,
    /// Leader election (`true`/`false`).
    #[arg(long)]
    pub leader_elect: Option<String>,
    /// KubeSchedulerConfiguration file.
    #[arg(long)]
    pub config: Option<String>,
    /// Serving certificate.
    #[arg(long)]
    pub tls_cert_file: Option<String>,
    /// Serving key.
    #[arg(long)]
    pub tls_private_key_file: Option<String>,
}

/// kube-scheduler stand-in entry point.
pub async fn run_scheduler(args: Vec<String>) -> Result<(), StandinError> {
    let f: SchedFlags = super::parse_flags(args, true)?;
    let kc = required("kubeconfig", &f.kubeconfig)?;
    let creds = load_kubeconfig("kubeconfig", kc, Some("system:kube-scheduler"), None)?;
    for (flag, v) in [
        ("authentication-kubeconfig", &f.authentication_kubeconfig),
        ("authorization-kubeconfig", &f.authorization_kubeconfig),
    ] {
        if let Some(p) = v {
            load_kubeconfig(flag, p, None, None)?;
        }
    }
    if let Some(p) = &f.config {
        let text = read_flag_file("config", p)?;
        let v: serde_norway::Value = serde_norway::from_str(&text)
            .map_err(|e| refuse(format!("--config: not YAML: {e}")))?;
        let kind = v.get("kind").and_then(|k| k.as_str()).unwrap_or_default();
        if kind != "KubeSchedulerConfiguration" {
            return Err(refuse(format!(
                "--config: kind is `{kind}`, expected KubeSchedulerConfiguration"
            )));
        }
    }
    bool_flag("leader-elect", &f.leader_elect)?;
    let tls = serving(&f.tls_cert_file, &f.tls_private_key_file, "kube-scheduler")?;
    let listener = bind("secure-port", &f.bind_address, f.secure_port).await?;
    let leader = probe_apiserver(&creds)?;
    let h = health_handler(vec![
        ("/healthz", Some((leader.clone(), "leaderElection"))),
        ("/livez", None),
        ("/readyz", Some((leader, "leaderElection"))),
    ]);
    serve_all(vec![(listener, Some(tls), h)]).await
}
