//! `kubelet-standin` (HTTP `/healthz` on `127.0.0.1:10248`) and `kube-proxy-standin` (HTTP
//! `/healthz` and `/livez` on `0.0.0.0:10256`).
//!
//! The kubelet's identity is checked against its node name (`system:node:NAME` in
//! `system:nodes`); kube-proxy reports healthy once it reached the apiserver, as the real one
//! does after its first sync.

use std::net::IpAddr;

use clap::Parser;
use serde_norway::Value;

use super::{
    StandinError, bind, health_handler, load_kubeconfig, probe_apiserver, read_flag_file, refuse,
    serve_all,
};
use crate::cidr::Cidr;

fn yaml_file(flag: &str, path: &str, kind: &str) -> Result<Value, StandinError> {
    let text = read_flag_file(flag, path)?;
    let v: Value =
        serde_norway::from_str(&text).map_err(|e| refuse(format!("--{flag}: not YAML: {e}")))?;
    let got = v.get("kind").and_then(Value::as_str).unwrap_or_default();
    if got != kind {
        return Err(refuse(format!(
            "--{flag}: kind is `{got}`, expected {kind}"
        )));
    }
    Ok(v)
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut cur = v;
    for p in path {
        cur = cur.get(*p)?;
    }
    cur.as_str()
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_lowercase())
        .unwrap_or_else(|_| "localhost".into())
}

/// Splits `host:port` (IPv6 in brackets).
fn split_hostport(flag: &str, s: &str) -> Result<(String, u16), StandinError> {
    let bad = || refuse(format!("--{flag}: `{s}` is not HOST:PORT"));
    let (h, p) = s.rsplit_once(':').ok_or_else(bad)?;
    let h = h.trim_start_matches('[').trim_end_matches(']');
    let h = if h.is_empty() { "0.0.0.0" } else { h };
    Ok((h.to_string(), p.parse().map_err(|_| bad())?))
}

/// kubelet flags read by the stand-in.
#[derive(Debug, Parser)]
#[command(name = "kubelet-standin")]
pub struct KubeletFlags {
    /// Kubeconfig (identity `system:node:NAME`).
    #[arg(long)]
    pub kubeconfig: Option<String>,
    /// KubeletConfiguration file.
    #[arg(long)]
    pub config: Option<String>,
    /// Node name instead of the hostname.
    #[arg(long)]
    pub hostname_override: Option<String>,
    /// The node's IP.
    #[arg(long)]
    pub node_ip: Option<String>,
    /// Healthz port (overrides the config's healthzPort; 10248).
    #[arg(long)]
    pub healthz_port: Option<u16>,
    /// Healthz address (overrides the config's healthzBindAddress; 127.0.0.1).
    #[arg(long)]
    pub healthz_bind_address: Option<String>,
    /// CA of client certificates (must be the kubeconfig's CA).
    #[arg(long)]
    pub client_ca_file: Option<String>,
    /// Cluster DNS IPs (comma-separated).
    #[arg(long)]
    pub cluster_dns: Option<String>,
    /// Cluster domain.
    #[arg(long)]
    pub cluster_domain: Option<String>,
}

/// kubelet stand-in entry point.
pub async fn run_kubelet(args: Vec<String>) -> Result<(), StandinError> {
    let f: KubeletFlags = super::parse_flags(args, true)?;
    let cfg = match &f.config {
        Some(p) => Some(yaml_file("config", p, "KubeletConfiguration")?),
        None => None,
    };
    let node = f.hostname_override.clone().unwrap_or_else(hostname);
    let kc = super::required("kubeconfig", &f.kubeconfig)?;
    let creds = load_kubeconfig(
        "kubeconfig",
        kc,
        Some(&format!("system:node:{node}")),
        Some("system:nodes"),
    )?;
    let client_ca = f.client_ca_file.clone().or_else(|| {
        cfg.as_ref()
            .and_then(|c| str_at(c, &["authentication", "x509", "clientCAFile"]))
            .map(str::to_string)
    });
    if let Some(p) = client_ca {
        let ca = read_flag_file("client-ca-file", &p)?;
        if ca.trim() != creds.ca_pem.trim() {
            return Err(refuse("--client-ca-file is not the CA of --kubeconfig"));
        }
    }
    if let Some(ip) = &f.node_ip {
        ip.parse::<IpAddr>()
            .map_err(|_| refuse(format!("--node-ip: `{ip}` is not an IP address")))?;
    }
    if let Some(dns) = &f.cluster_dns {
        for ip in dns.split(',') {
            ip.parse::<IpAddr>()
                .map_err(|_| refuse(format!("--cluster-dns: `{ip}` is not an IP address")))?;
        }
    }
    let cfg_port = cfg
        .as_ref()
        .and_then(|c| c.get("healthzPort"))
        .and_then(Value::as_u64)
        .and_then(|p| u16::try_from(p).ok());
    let port = f.healthz_port.or(cfg_port).unwrap_or(10248);
    let addr = f
        .healthz_bind_address
        .clone()
        .or_else(|| {
            cfg.as_ref()
                .and_then(|c| str_at(c, &["healthzBindAddress"]))
                .map(str::to_string)
        })
        .unwrap_or_else(|| "127.0.0.1".into());
    let listener = bind("healthz-port", &addr, port).await?;
    serve_all(vec![(
        listener,
        None,
        health_handler(vec![("/healthz", None)]),
    )])
    .await
}

/// kube-proxy flags read by the stand-in.
#[derive(Debug, Parser)]
#[command(name = "kube-proxy-standin")]
pub struct ProxyFlags {
    /// Kubeconfig (identity `system:kube-proxy`); or the config's clientConnection.kubeconfig.
    #[arg(long)]
    pub kubeconfig: Option<String>,
    /// KubeProxyConfiguration file.
    #[arg(long)]
    pub config: Option<String>,
    /// Node name instead of the hostname.
    #[arg(long)]
    pub hostname_override: Option<String>,
    /// The Pod network.
    #[arg(long)]
    pub cluster_cidr: Option<String>,
    /// Healthz `HOST:PORT` (0.0.0.0:10256).
    #[arg(long)]
    pub healthz_bind_address: Option<String>,
    /// Proxy mode.
    #[arg(long)]
    pub proxy_mode: Option<String>,
}

/// kube-proxy stand-in entry point.
pub async fn run_proxy(args: Vec<String>) -> Result<(), StandinError> {
    let f: ProxyFlags = super::parse_flags(args, true)?;
    let cfg = match &f.config {
        Some(p) => Some(yaml_file("config", p, "KubeProxyConfiguration")?),
        None => None,
    };
    let get = |path: &[&str]| {
        cfg.as_ref()
            .and_then(|c| str_at(c, path))
            .map(str::to_string)
    };
    let kc = f
        .kubeconfig
        .clone()
        .or_else(|| get(&["clientConnection", "kubeconfig"]))
        .ok_or_else(|| {
            refuse("--kubeconfig is required (or clientConnection.kubeconfig in --config)")
        })?;
    let creds = load_kubeconfig("kubeconfig", &kc, Some("system:kube-proxy"), None)?;
    if let Some(c) = f.cluster_cidr.clone().or_else(|| get(&["clusterCIDR"])) {
        c.parse::<Cidr>()
            .map_err(|e| refuse(format!("--cluster-cidr: {e}")))?;
    }
    let mode = f
        .proxy_mode
        .clone()
        .or_else(|| get(&["mode"]))
        .unwrap_or_default();
    if !matches!(
        mode.as_str(),
        "" | "iptables" | "ipvs" | "nftables" | "kernelspace"
    ) {
        return Err(refuse(format!("--proxy-mode: unknown mode `{mode}`")));
    }
    let hp = f
        .healthz_bind_address
        .clone()
        .or_else(|| get(&["healthzBindAddress"]))
        .unwrap_or_else(|| "0.0.0.0:10256".into());
    let (addr, port) = split_hostport("healthz-bind-address", &hp)?;
    let listener = bind("healthz-bind-address", &addr, port).await?;
    let synced = probe_apiserver(&creds)?;
    let h = health_handler(vec![
        ("/healthz", Some((synced.clone(), "proxier sync"))),
        ("/livez", Some((synced, "proxier sync"))),
    ]);
    serve_all(vec![(listener, None, h)]).await
}
