//! Stand-ins for the kube-* programs, which cannot be downloaded on these machines.
//!
//! Each takes the flags the real component receives, refuses missing or inconsistent ones
//! (exit status 1, one `error:` line naming the flag), loads its certificates and serves the
//! health endpoints where the real one does. They do no Kubernetes work beyond that; the
//! apiserver stand-in reads and writes the real etcd. See the crate README.

pub mod apiserver;
pub mod controlplane;
pub mod coredns;
pub mod node;

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::net::TcpListener;

use crate::http::{self, Handler, RequestInfo};
use crate::kubeconfig::{Credentials, Kubeconfig};
use crate::tlsutil::{self, inspect, verify_signed_by};

/// Why a stand-in refuses to start or stopped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StandinError {
    /// A flag is missing, malformed or inconsistent with another.
    #[error("{0}")]
    Refused(String),
    /// Serving failed.
    #[error("{0}")]
    Io(String),
    /// `--help` or `--version` was asked for: the text to print, then exit 0.
    #[error("{0}")]
    Help(String),
}

fn refuse(msg: impl Into<String>) -> StandinError {
    StandinError::Refused(msg.into())
}

/// Runs a stand-in's main future with `args` (`args[0]` is the program name) on a tokio
/// runtime; prints `NAME: error: ...` and exits 1 on failure.
pub fn main_with<F>(name: &str, args: Vec<String>, run: impl FnOnce(Vec<String>) -> F) -> ExitCode
where
    F: std::future::Future<Output = Result<(), StandinError>>,
{
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{name}: error: tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(StandinError::Help(text)) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{name}: error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Parses `args` with `T`; with `allow_unknown`, flags `T` does not know are ignored when they
/// look like real flags given as `--name=value` (or bare booleans), as the real components
/// have hundreds of flags.
pub fn parse_flags<T: clap::Parser>(
    args: Vec<String>,
    allow_unknown: bool,
) -> Result<T, StandinError> {
    let cmd = T::command();
    let known: Vec<String> = cmd
        .get_arguments()
        .filter_map(|a| a.get_long().map(str::to_string))
        .chain(["help".to_string(), "version".to_string()])
        .collect();
    let mut kept = Vec::with_capacity(args.len());
    let mut iter = args.into_iter();
    if let Some(prog) = iter.next() {
        kept.push(prog);
    }
    for a in iter {
        if let Some(flag) = a.strip_prefix("--") {
            let name = flag.split_once('=').map_or(flag, |(n, _)| n);
            if !known.iter().any(|k| k == name) {
                let looks_valid = !name.is_empty()
                    && name.bytes().all(|b| {
                        b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.'
                    })
                    && !name.starts_with('-');
                if allow_unknown && looks_valid {
                    eprintln!("stand-in: ignoring flag --{name}");
                    continue;
                }
                return Err(refuse(format!("unknown flag --{name}")));
            }
        }
        kept.push(a);
    }
    T::try_parse_from(kept).map_err(|e| {
        if matches!(
            e.kind(),
            clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion
        ) {
            return StandinError::Help(e.to_string());
        }
        let text = e.to_string();
        let first = text
            .lines()
            .next()
            .unwrap_or_default()
            .trim_start_matches("error: ");
        let more: Vec<&str> = text
            .lines()
            .skip(1)
            .filter(|l| l.trim_start().starts_with("--"))
            .collect();
        refuse(format!("{first} {}", more.join(" ")).trim().to_string())
    })
}

/// Reads a file named by a flag.
pub fn read_flag_file(flag: &str, path: &str) -> Result<String, StandinError> {
    std::fs::read_to_string(path)
        .map_err(|e| refuse(format!("--{flag}: cannot read `{path}`: {e}")))
}

/// Requires a flag's value.
pub fn required<'a>(flag: &str, v: &'a Option<String>) -> Result<&'a str, StandinError> {
    match v.as_deref() {
        Some(s) if !s.is_empty() => Ok(s),
        _ => Err(refuse(format!("--{flag} is required"))),
    }
}

/// Loads a certificate/key pair given by two flags, checking that the key matches.
pub fn load_pair(
    cert_flag: &str,
    cert: &str,
    key_flag: &str,
    key: &str,
) -> Result<(String, String), StandinError> {
    let c = read_flag_file(cert_flag, cert)?;
    let k = read_flag_file(key_flag, key)?;
    tlsutil::server_config(&c, &k, None, &format!("--{cert_flag}/--{key_flag}"))
        .map_err(|e| refuse(e.to_string()))?;
    Ok((c, k))
}

/// Requires `cert` (from `cert_flag`) to be signed by `ca` (from `ca_flag`).
pub fn require_signed(
    cert_flag: &str,
    cert: &str,
    ca_flag: &str,
    ca: &str,
) -> Result<(), StandinError> {
    verify_signed_by(cert, ca, &format!("--{cert_flag}"))
        .map_err(|e| refuse(format!("{e} (given by --{ca_flag})")))
}

/// Loads a kubeconfig given by `--{flag}`: its client certificate must be signed by its CA and,
/// when given, have the expected CN and organization.
pub fn load_kubeconfig(
    flag: &str,
    path: &str,
    cn: Option<&str>,
    org: Option<&str>,
) -> Result<Credentials, StandinError> {
    let text = read_flag_file(flag, path)?;
    let kc = Kubeconfig::parse(&text).map_err(|e| refuse(format!("--{flag}: {e}")))?;
    let creds = kc
        .credentials()
        .map_err(|e| refuse(format!("--{flag}: {e}")))?;
    verify_signed_by(
        &creds.cert_pem,
        &creds.ca_pem,
        &format!("--{flag} client certificate"),
    )
    .map_err(|e| refuse(format!("{e} (the kubeconfig's certificate-authority-data)")))?;
    tlsutil::client_config(
        &creds.ca_pem,
        Some((&creds.cert_pem, &creds.key_pem)),
        &format!("--{flag}"),
    )
    .map_err(|e| refuse(e.to_string()))?;
    http::Url::parse(&creds.server).map_err(|e| refuse(format!("--{flag}: server: {e}")))?;
    let info = inspect(&creds.cert_pem, flag).map_err(|e| refuse(e.to_string()))?;
    if let Some(cn) = cn
        && info.cn != cn
    {
        return Err(refuse(format!(
            "--{flag}: client certificate CN is `{}`, expected `{cn}`",
            info.cn
        )));
    }
    if let Some(org) = org
        && !info.orgs.iter().any(|o| o == org)
    {
        return Err(refuse(format!(
            "--{flag}: client certificate organizations {:?} lack `{org}`",
            info.orgs
        )));
    }
    Ok(creds)
}

/// Binds `addr:port` for the endpoint configured by `flag`.
pub async fn bind(flag: &str, addr: &str, port: u16) -> Result<TcpListener, StandinError> {
    let target = if addr.contains(':') {
        format!("[{addr}]:{port}")
    } else {
        format!("{addr}:{port}")
    };
    TcpListener::bind(&target)
        .await
        .map_err(|e| StandinError::Io(format!("--{flag}: cannot listen on {target}: {e}")))
}

/// A readiness condition: set by a background probe, read by the health handler.
pub type Flag = Arc<AtomicBool>;

/// Serves `routes` (path → condition; `None` is always healthy): 200 `ok` when the condition
/// holds, 500 naming it otherwise, 404 for other paths.
pub fn health_handler(routes: Vec<(&'static str, Option<(Flag, &'static str)>)>) -> Handler {
    Arc::new(
        move |req: &RequestInfo| match routes.iter().find(|(p, _)| *p == req.path) {
            None => (404, "404 page not found\n".into()),
            Some((_, None)) => (200, "ok".into()),
            Some((_, Some((flag, what)))) => {
                if flag.load(Ordering::SeqCst) {
                    (200, "ok".into())
                } else {
                    (500, format!("[-]{what} failed: not ready\n"))
                }
            }
        },
    )
}

/// Spawns a probe of the apiserver's `/readyz` with the kubeconfig's credentials every
/// 500 ms; the flag is set once it answered 200 (and stays set, as leader election would).
pub fn probe_apiserver(creds: &Credentials) -> Result<Flag, StandinError> {
    let tls = tlsutil::client_config(
        &creds.ca_pem,
        Some((&creds.cert_pem, &creds.key_pem)),
        "kubeconfig",
    )
    .map_err(|e| refuse(e.to_string()))?;
    let url = format!("{}/readyz", creds.server.trim_end_matches('/'));
    let flag: Flag = Arc::new(AtomicBool::new(false));
    let f = flag.clone();
    tokio::spawn(async move {
        loop {
            if let Ok(r) =
                http::request("GET", &url, None, Some(tls.clone()), Duration::from_secs(2)).await
                && r.status == 200
            {
                f.store(true, Ordering::SeqCst);
                return;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });
    Ok(flag)
}

/// Serves until the process is killed.
pub async fn serve_all(
    servers: Vec<(TcpListener, Option<Arc<rustls::ServerConfig>>, Handler)>,
) -> Result<(), StandinError> {
    let mut set = tokio::task::JoinSet::new();
    for (l, tls, h) in servers {
        set.spawn(http::serve(l, tls, h));
    }
    while set.join_next().await.is_some() {}
    Err(StandinError::Io("all listeners stopped".into()))
}
