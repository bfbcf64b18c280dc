//! `k8s-probe [--cacert CA] [--cert CERT --key KEY] URL`: GETs a health endpoint over HTTP or
//! TLS (trusting only CA, optionally with a client certificate); exit 0 on 2xx, 1 otherwise.
//! Used by the readiness checks of the Kubernetes deploy plan (run as `proffer k8s-probe`).

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

/// GETs a health endpoint over HTTP or TLS; exit status 0 on a 2xx answer, 1 otherwise.
#[derive(Debug, Parser)]
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

/// Why a probe could not be made.
#[derive(Debug, thiserror::Error)]
enum ProbeError {
    #[error("--{flag} {path}: {source}")]
    Read {
        flag: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Tls(#[from] crate::tlsutil::TlsError),
    #[error(transparent)]
    Http(#[from] crate::http::HttpError),
}

fn read(flag: &'static str, path: &str) -> Result<String, ProbeError> {
    std::fs::read_to_string(path).map_err(|source| ProbeError::Read {
        flag,
        path: path.to_string(),
        source,
    })
}

async fn probe(a: Args) -> Result<bool, ProbeError> {
    let tls = match &a.cacert {
        Some(ca) => {
            let ca = read("cacert", ca)?;
            let client = match (&a.cert, &a.key) {
                (Some(c), Some(k)) => Some((read("cert", c)?, read("key", k)?)),
                _ => None,
            };
            Some(crate::tlsutil::client_config(
                &ca,
                client.as_ref().map(|(c, k)| (c.as_str(), k.as_str())),
                "--cacert",
            )?)
        }
        None => None,
    };
    let timeout = Duration::from_secs_f64(a.timeout.max(0.1));
    let r = crate::http::request("GET", &a.url, None, tls, timeout).await?;
    println!("{} {}", r.status, r.body.trim());
    Ok((200..300).contains(&r.status))
}

/// `k8s-probe`'s main: `args[0]` is the program name.
pub fn main(args: Vec<String>) -> ExitCode {
    let args = match Args::try_parse_from(args) {
        Ok(a) => a,
        Err(e) => return clap_exit(&e),
    };
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
            eprintln!("k8s-probe: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Prints a clap error (or the help it stands for) and returns its exit status.
pub(crate) fn clap_exit(e: &clap::Error) -> ExitCode {
    let _ = e.print();
    if e.use_stderr() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
