//! `k8s-etcd-member` (run as `proffer k8s-etcd-member`): run by an etcd task before etcd starts; decides how the member joins and
//! prints two shell assignments for the task's command (`K8S_ETCD_STATE=new|existing`,
//! `K8S_ETCD_CLUSTER=…` the `--initial-cluster` value).
//!
//! - The data directory holds a member with its WAL (a restart, or a relaunch on its
//!   persistent volume): start as configured; etcd ignores the initial-cluster flags then. A
//!   member directory without a WAL (etcd stopped during its first start) is moved aside.
//! - No other member answers: the cluster is being bootstrapped; start as configured (`new`).
//! - The running cluster lists this member as started before, but the data is gone (a
//!   replacement on another agent, or no persistent volume): `member remove` the old member,
//!   `member add` this one, start `existing`.
//! - Listed but never started: start `existing`. Not listed: `member add`, start `existing`.
//!
//! Membership calls go through etcd's gRPC API (the `etcd-client` crate) with the given client
//! certificate.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

use crate::etcd::{Etcd, EtcdError, EtcdTls, Join, Member, initial_cluster_of, join_decision};

/// Decides how an etcd member joins its cluster (run before etcd starts); prints
/// `K8S_ETCD_STATE=…` and `K8S_ETCD_CLUSTER='…'` for the task's shell to `eval`.
#[derive(Debug, Parser)]
#[command(name = "k8s-etcd-member")]
struct Args {
    /// This member's name.
    #[arg(long)]
    name: String,
    /// This member's peer URL.
    #[arg(long)]
    peer_url: String,
    /// This member's client URL (left out of the endpoints asked).
    #[arg(long)]
    client_url: String,
    /// Client URLs of every member, comma-separated.
    #[arg(long, value_delimiter = ',')]
    endpoints: Vec<String>,
    /// The configured `--initial-cluster`.
    #[arg(long)]
    initial_cluster: String,
    /// The member's data directory.
    #[arg(long)]
    data_dir: String,
    /// The etcd CA certificate.
    #[arg(long)]
    cacert: String,
    /// Client certificate.
    #[arg(long)]
    cert: String,
    /// Client key.
    #[arg(long)]
    key: String,
    /// Seconds to wait for each other member's answer (a member still bootstrapping holds
    /// requests until it has a quorum, so keep this short).
    #[arg(long, default_value_t = 1.0)]
    timeout: f64,
}

/// Why the decision could not be made.
#[derive(Debug, thiserror::Error)]
enum MemberError {
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Etcd(#[from] EtcdError),
    #[error(transparent)]
    Tls(#[from] crate::tlsutil::TlsError),
}

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> MemberError {
    let path = path.display().to_string();
    move |source| MemberError::Io { what, path, source }
}

/// The members, from the first other member that answers.
async fn running_members(a: &Args) -> Result<Option<(Etcd, Vec<Member>)>, MemberError> {
    let read = |p: &str| std::fs::read_to_string(p).map_err(io_err("reading", Path::new(p)));
    let (ca, cert, key) = (read(&a.cacert)?, read(&a.cert)?, read(&a.key)?);
    let tls = EtcdTls::new(&ca, Some((&cert, &key)), "etcd")?;
    let timeout = Duration::from_secs_f64(a.timeout.max(0.1));
    let own = a.client_url.trim_end_matches('/');
    for ep in a
        .endpoints
        .iter()
        .filter(|e| e.trim_end_matches('/') != own)
    {
        let client = Etcd::new(vec![ep.clone()], Some(tls.clone())).with_timeout(timeout);
        match client.members().await {
            Ok(m) => return Ok(Some((client, m))),
            Err(e) => eprintln!("k8s-etcd-member: {ep}: {e}"),
        }
    }
    Ok(None)
}

/// Whether the data directory holds a member etcd can restart from (a WAL). A member
/// directory without one (etcd stopped during its first start) is moved aside: etcd would
/// refuse to bootstrap over it.
fn has_member_data(data_dir: &Path) -> Result<bool, MemberError> {
    let member = data_dir.join("member");
    if !member.is_dir() {
        return Ok(false);
    }
    let wal = std::fs::read_dir(member.join("wal"))
        .map(|rd| {
            rd.flatten()
                .any(|e| e.file_name().to_string_lossy().ends_with(".wal"))
        })
        .unwrap_or(false);
    if !wal {
        let aside = data_dir.join("member.incomplete");
        let _ = std::fs::remove_dir_all(&aside);
        std::fs::rename(&member, &aside).map_err(io_err("moving aside", &member))?;
        eprintln!(
            "k8s-etcd-member: {} had no WAL; moved to {}",
            member.display(),
            aside.display()
        );
    }
    Ok(wal)
}

async fn decide(a: &Args) -> Result<(&'static str, String), MemberError> {
    let has_data = has_member_data(Path::new(&a.data_dir))?;
    let running = if has_data {
        None
    } else {
        running_members(a).await?
    };
    let decision = join_decision(
        has_data,
        running.as_ref().map(|(_, m)| m.as_slice()),
        &a.name,
        &a.peer_url,
    );
    eprintln!(
        "k8s-etcd-member: {} (data: {has_data}): {decision:?}",
        a.name
    );
    let Some((client, members)) = running else {
        return Ok(("new", a.initial_cluster.clone()));
    };
    let members = match decision {
        Join::AsConfigured => return Ok(("new", a.initial_cluster.clone())),
        Join::Existing => members,
        Join::Replace { id } => {
            client.remove_member(id).await?;
            client.add_member(&a.peer_url).await?.1
        }
        Join::Add => client.add_member(&a.peer_url).await?.1,
    };
    Ok((
        "existing",
        initial_cluster_of(&members, &a.name, &a.peer_url),
    ))
}

/// `k8s-etcd-member`'s main: `args[0]` is the program name. Prints `K8S_ETCD_STATE=…` and
/// `K8S_ETCD_CLUSTER='…'` for the task's shell to `eval`.
pub fn main(args: Vec<String>) -> ExitCode {
    let args = match Args::try_parse_from(args) {
        Ok(a) => a,
        Err(e) => return crate::probe::clap_exit(&e),
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("k8s-etcd-member: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(decide(&args)) {
        Ok((state, cluster)) => {
            println!("K8S_ETCD_STATE={state}");
            println!("K8S_ETCD_CLUSTER='{cluster}'");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("k8s-etcd-member: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a panic is the failure report
mod tests {
    use super::*;

    #[test]
    fn member_data_needs_a_wal() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!has_member_data(dir.path()).unwrap(), "empty");
        std::fs::create_dir_all(dir.path().join("member/snap")).unwrap();
        assert!(!has_member_data(dir.path()).unwrap(), "no WAL");
        assert!(!dir.path().join("member").exists(), "moved aside");
        assert!(dir.path().join("member.incomplete/snap").is_dir());
        std::fs::create_dir_all(dir.path().join("member/wal")).unwrap();
        std::fs::write(dir.path().join("member/wal/0-0.wal"), b"x").unwrap();
        assert!(has_member_data(dir.path()).unwrap(), "WAL present");
        assert!(dir.path().join("member/wal/0-0.wal").is_file(), "kept");
    }
}
