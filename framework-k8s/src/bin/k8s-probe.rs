//! `k8s-probe [--cacert CA] [--cert CERT --key KEY] URL`: GETs a health endpoint over HTTP or
//! TLS (trusting only CA, optionally with a client certificate); exit 0 on 2xx, 1 otherwise.
//! Used by the readiness checks of the Kubernetes deploy plan.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;

#[derive(Parser)]
#[command(name = "k8s-probe")]
struct Args {
    /// CA certificate to trust (required for https).
    #[arg(long)]
    cacert: Option<String>,
    /// Client certificate.
    #[arg(long, requires = "key")]
    cert: Option<String>,
    /// Client key.
    #[arg(long, requires = "cert")]
    key: Option<String>,
    /// Seconds to wait for an answer.
    #[arg(long, default_value_t = 5.0)]
    timeout: f64,
    /// The URL.
    url: String,
}

async fn probe(a: Args) -> anyhow::Result<bool> {
    let tls = match &a.cacert {
        Some(ca) => {
            let ca = std::fs::read_to_string(ca).with_context(|| format!("--cacert {ca}"))?;
            let client = match (&a.cert, &a.key) {
                (Some(c), Some(k)) => Some((
                    std::fs::read_to_string(c).with_context(|| format!("--cert {c}"))?,
                    std::fs::read_to_string(k).with_context(|| format!("--key {k}"))?,
                )),
                _ => None,
            };
            let cfg = proffer_k8s::tlsutil::client_config(
                &ca,
                client.as_ref().map(|(c, k)| (c.as_str(), k.as_str())),
                "--cacert",
            )?;
            Some(cfg)
        }
        None => None,
    };
    let timeout = Duration::from_secs_f64(a.timeout.max(0.1));
    let r = proffer_k8s::http::request("GET", &a.url, None, tls, timeout).await?;
    println!("{} {}", r.status, r.body.trim());
    Ok((200..300).contains(&r.status))
}

fn main() -> ExitCode {
    let args = Args::parse();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("k8s-probe: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(probe(args)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("k8s-probe: {e:#}");
            ExitCode::FAILURE
        }
    }
}
