//! `kube-apiserver-standin`: checks the apiserver's flags and certificates, writes
//! `/registry/standin/kube-apiserver/<advertise-address>:<port>` into the real etcd and serves
//! `/livez`, `/readyz`, `/healthz` and `/version` over TLS on `--secure-port` (6443).
//! `/readyz` answers 200 only while etcd answers.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use clap::Parser;

use super::{
    StandinError, bind, load_pair, read_flag_file, refuse, require_signed, required, serve_all,
};
use crate::cidr::Cidr;
use crate::etcd::{Etcd, EtcdTls};
use crate::http::{Handler, RequestInfo, Url};
use crate::tlsutil::{self, check_san};

/// The kube-apiserver flags the stand-in reads (others of the real program are ignored).
#[derive(Debug, Parser)]
#[command(name = "kube-apiserver-standin")]
pub struct Flags {
    /// The address advertised to the cluster (must be covered by the serving certificate).
    #[arg(long)]
    pub advertise_address: Option<String>,
    /// Listen address.
    #[arg(long, default_value = "0.0.0.0")]
    pub bind_address: String,
    /// HTTPS port.
    #[arg(long, default_value_t = 6443)]
    pub secure_port: u16,
    /// Comma-separated etcd client URLs.
    #[arg(long)]
    pub etcd_servers: Option<String>,
    /// etcd CA.
    #[arg(long)]
    pub etcd_cafile: Option<String>,
    /// etcd client certificate.
    #[arg(long)]
    pub etcd_certfile: Option<String>,
    /// etcd client key.
    #[arg(long)]
    pub etcd_keyfile: Option<String>,
    /// Serving certificate.
    #[arg(long)]
    pub tls_cert_file: Option<String>,
    /// Serving key.
    #[arg(long)]
    pub tls_private_key_file: Option<String>,
    /// CA of client certificates.
    #[arg(long)]
    pub client_ca_file: Option<String>,
    /// Service-account verification key (public or private PEM).
    #[arg(long)]
    pub service_account_key_file: Option<String>,
    /// Service-account signing key.
    #[arg(long)]
    pub service_account_signing_key_file: Option<String>,
    /// Service-account token issuer.
    #[arg(long)]
    pub service_account_issuer: Option<String>,
    /// The Service network.
    #[arg(long)]
    pub service_cluster_ip_range: Option<String>,
    /// apiserver → kubelet client certificate.
    #[arg(long)]
    pub kubelet_client_certificate: Option<String>,
    /// apiserver → kubelet client key.
    #[arg(long)]
    pub kubelet_client_key: Option<String>,
    /// Front-proxy client certificate.
    #[arg(long)]
    pub proxy_client_cert_file: Option<String>,
    /// Front-proxy client key.
    #[arg(long)]
    pub proxy_client_key_file: Option<String>,
    /// Front-proxy CA.
    #[arg(long)]
    pub requestheader_client_ca_file: Option<String>,
    /// Authorizers.
    #[arg(long, default_value = "Node,RBAC")]
    pub authorization_mode: String,
}

/// Entry point: parse, check, serve.
pub async fn run(args: Vec<String>) -> Result<(), StandinError> {
    let f: Flags = super::parse_flags(args, true)?;
    let checked = check(&f)?;
    let listener = bind("secure-port", &f.bind_address, f.secure_port).await?;
    let ready = Arc::new(AtomicBool::new(false));
    let key = format!(
        "/registry/standin/kube-apiserver/{}:{}",
        checked.advertise, f.secure_port
    );
    tokio::spawn(etcd_loop(checked.etcd, key, ready.clone()));
    serve_all(vec![(listener, Some(checked.tls), handler(ready))]).await
}

/// What the checks produced.
struct Checked {
    advertise: String,
    etcd: Etcd,
    tls: Arc<rustls::ServerConfig>,
}

fn check(f: &Flags) -> Result<Checked, StandinError> {
    let advertise = required("advertise-address", &f.advertise_address)?;
    advertise.parse::<std::net::IpAddr>().map_err(|_| {
        refuse(format!(
            "--advertise-address: `{advertise}` is not an IP address"
        ))
    })?;
    let servers = required("etcd-servers", &f.etcd_servers)?;
    let mut endpoints = Vec::new();
    let mut any_tls = false;
    for s in servers.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let u = Url::parse(s).map_err(|e| refuse(format!("--etcd-servers: {e}")))?;
        any_tls |= u.tls;
        endpoints.push(s.to_string());
    }
    if endpoints.is_empty() {
        return Err(refuse("--etcd-servers is empty"));
    }
    let etcd_tls = if any_tls {
        let ca_path = required("etcd-cafile", &f.etcd_cafile)
            .map_err(|e| refuse(format!("{e} for https etcd servers")))?;
        let cert = required("etcd-certfile", &f.etcd_certfile)?;
        let key = required("etcd-keyfile", &f.etcd_keyfile)?;
        let ca = read_flag_file("etcd-cafile", ca_path)?;
        let (c, k) = load_pair("etcd-certfile", cert, "etcd-keyfile", key)?;
        require_signed("etcd-certfile", &c, "etcd-cafile", &ca)?;
        Some(
            EtcdTls::new(&ca, Some((&c, &k)), "--etcd-cafile")
                .map_err(|e| refuse(e.to_string()))?,
        )
    } else {
        None
    };
    let range = required("service-cluster-ip-range", &f.service_cluster_ip_range)?;
    let range: Cidr = range
        .parse()
        .map_err(|e| refuse(format!("--service-cluster-ip-range: {e}")))?;
    let service_ip = range
        .nth(1)
        .ok_or_else(|| refuse("--service-cluster-ip-range has no first address"))?;
    let client_ca = read_flag_file(
        "client-ca-file",
        required("client-ca-file", &f.client_ca_file)?,
    )?;
    let (cert, key) = load_pair(
        "tls-cert-file",
        required("tls-cert-file", &f.tls_cert_file)?,
        "tls-private-key-file",
        required("tls-private-key-file", &f.tls_private_key_file)?,
    )?;
    require_signed("tls-cert-file", &cert, "client-ca-file", &client_ca)?;
    for (host, why) in [
        (advertise.to_string(), "--advertise-address"),
        (
            service_ip.to_string(),
            "the first address of --service-cluster-ip-range",
        ),
    ] {
        check_san(&cert, &host, "--tls-cert-file").map_err(|e| refuse(format!("{e} ({why})")))?;
    }
    check_service_account(f)?;
    required("service-account-issuer", &f.service_account_issuer)?;
    if f.kubelet_client_certificate.is_some() || f.kubelet_client_key.is_some() {
        let (c, _) = load_pair(
            "kubelet-client-certificate",
            required("kubelet-client-certificate", &f.kubelet_client_certificate)?,
            "kubelet-client-key",
            required("kubelet-client-key", &f.kubelet_client_key)?,
        )?;
        require_signed(
            "kubelet-client-certificate",
            &c,
            "client-ca-file",
            &client_ca,
        )?;
    }
    if f.proxy_client_cert_file.is_some() || f.proxy_client_key_file.is_some() {
        let (c, _) = load_pair(
            "proxy-client-cert-file",
            required("proxy-client-cert-file", &f.proxy_client_cert_file)?,
            "proxy-client-key-file",
            required("proxy-client-key-file", &f.proxy_client_key_file)?,
        )?;
        let path = required(
            "requestheader-client-ca-file",
            &f.requestheader_client_ca_file,
        )?;
        let ca = read_flag_file("requestheader-client-ca-file", path)?;
        require_signed(
            "proxy-client-cert-file",
            &c,
            "requestheader-client-ca-file",
            &ca,
        )?;
    }
    for m in f.authorization_mode.split(',') {
        if !matches!(
            m,
            "AlwaysAllow" | "AlwaysDeny" | "ABAC" | "Webhook" | "RBAC" | "Node"
        ) {
            return Err(refuse(format!(
                "--authorization-mode: unknown authorizer `{m}`"
            )));
        }
    }
    let tls = tlsutil::server_config(&cert, &key, Some(&client_ca), "--tls-cert-file")
        .map_err(|e| refuse(e.to_string()))?;
    Ok(Checked {
        advertise: advertise.to_string(),
        etcd: Etcd::new(endpoints, etcd_tls),
        tls,
    })
}

fn check_service_account(f: &Flags) -> Result<(), StandinError> {
    let signing_path = required(
        "service-account-signing-key-file",
        &f.service_account_signing_key_file,
    )?;
    let signing = read_flag_file("service-account-signing-key-file", signing_path)?;
    let signing = rcgen::KeyPair::from_pem(&signing).map_err(|e| {
        refuse(format!(
            "--service-account-signing-key-file: not a private key: {e}"
        ))
    })?;
    let verify_path = required("service-account-key-file", &f.service_account_key_file)?;
    let verify = read_flag_file("service-account-key-file", verify_path)?;
    let public = if verify.contains("PUBLIC KEY") {
        verify.trim().to_string()
    } else {
        rcgen::KeyPair::from_pem(&verify)
            .map_err(|e| refuse(format!("--service-account-key-file: not a key: {e}")))?
            .public_key_pem()
            .trim()
            .to_string()
    };
    if public != signing.public_key_pem().trim() {
        return Err(refuse(
            "--service-account-key-file does not verify tokens signed with --service-account-signing-key-file",
        ));
    }
    Ok(())
}

/// Registers in etcd, then keeps `ready` equal to "etcd answered a read within the last
/// second".
async fn etcd_loop(etcd: Etcd, key: String, ready: Arc<AtomicBool>) {
    let record =
        serde_json::json!({"component": "kube-apiserver", "pid": std::process::id()}).to_string();
    loop {
        let registered = async {
            etcd.put(&key, record.as_bytes()).await.ok()?;
            let back = etcd.get(&key).await.ok()??;
            (back == record.as_bytes()).then_some(())
        }
        .await;
        if registered.is_some() {
            ready.store(true, Ordering::SeqCst);
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // As kube-apiserver's etcd readiness check: a read through the client (any member) within
    // 2 s (`--etcd-healthcheck-timeout`), so a leader election that ends in time is no outage.
    let etcd = etcd.with_timeout(Duration::from_secs(2));
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        ready.store(etcd.get(&key).await.is_ok(), Ordering::SeqCst);
    }
}

fn handler(ready: Arc<AtomicBool>) -> Handler {
    Arc::new(move |req: &RequestInfo| match req.path.as_str() {
        "/livez" => (200, "ok".into()),
        "/readyz" | "/healthz" => {
            if ready.load(Ordering::SeqCst) {
                (200, "ok".into())
            } else {
                (
                    500,
                    "[-]etcd failed: etcd not answering\nreadyz check failed\n".into(),
                )
            }
        }
        "/version" => (
            200,
            serde_json::json!({"gitVersion": "standin", "platform": "linux"}).to_string(),
        ),
        "/standin/whoami" => match &req.client_cn {
            Some(cn) => (200, cn.clone()),
            None => (401, "Unauthorized".into()),
        },
        _ => (404, "404 page not found\n".into()),
    })
}
