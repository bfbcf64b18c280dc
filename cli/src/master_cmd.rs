//! `proffer master`: one master with its registry in redb, or a member of an HA group whose
//! registry and leader election are in etcd.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use proffer_master::core::MasterConfig;
use proffer_master::etcd::{EtcdConfig, EtcdTls};
use proffer_master::registry::{RedbRegistry, Registry};
use proffer_master::server::{ConnLimits, HaConfig, ServerConfig, serve_ha, serve_with_registry};
use tokio_util::sync::CancellationToken;

use crate::duration::{millis, parse_duration};

/// Flags of `proffer master`.
#[derive(Debug, clap::Args)]
pub struct MasterArgs {
    /// Address to listen on (gRPC and HTTP). Anything but loopback needs TLS (--tls-cert) or
    /// authentication (--authenticate-*), or --insecure.
    #[arg(long, env = "PROFFER_LISTEN", default_value = "0.0.0.0:5050")]
    listen: SocketAddr,
    /// Serve on a non-loopback address without TLS and without authentication (anyone who
    /// reaches the port controls the cluster).
    #[arg(long, env = "PROFFER_MASTER_INSECURE")]
    insecure: bool,
    /// Batch allocation interval.
    #[arg(long, env = "PROFFER_ALLOCATION_INTERVAL", default_value = "1s", value_parser = parse_duration)]
    allocation_interval: Duration,
    /// Resources that come back (a task ended, an offer declined, an agent joined) are offered
    /// together this long after the first of them came back, so one offer carries every slot
    /// freed meanwhile; 0 offers each at once. Only while offers flow: after a quiet spell (no
    /// allocation this long) what comes back is offered at once.
    #[arg(long, env = "PROFFER_OFFER_COALESCE", default_value = "3ms", value_parser = parse_duration)]
    offer_coalesce: Duration,
    /// Interval between pings to each agent.
    #[arg(long, env = "PROFFER_AGENT_PING_INTERVAL", default_value = "15s", value_parser = parse_duration)]
    agent_ping_interval: Duration,
    /// Unanswered pings after which an agent is removed.
    #[arg(long, env = "PROFFER_AGENT_MAX_MISSED_PINGS", default_value_t = 5)]
    agent_max_missed_pings: u32,
    /// Rescind offers not answered within this time (default: never).
    #[arg(long, env = "PROFFER_OFFER_TIMEOUT", value_parser = parse_duration)]
    offer_timeout: Option<Duration>,
    /// Seed for ids and random choices (default: random).
    #[arg(long, env = "PROFFER_SEED")]
    seed: Option<u64>,
    /// The registry: `redb` (a file in --work-dir; this master alone) or
    /// `etcd://HOST:PORT[,HOST:PORT…]` (an etcd v3 cluster: the masters started on the same
    /// etcd and prefix form an HA group; one leads, the others stand by).
    #[arg(long, env = "PROFFER_REGISTRY", default_value = "redb")]
    registry: String,
    /// Key prefix of the records in etcd.
    #[arg(
        long,
        env = "PROFFER_REGISTRY_PREFIX",
        default_value = "/proffer/default"
    )]
    registry_prefix: String,
    /// Where the master keeps its registry (`registry.redb`): agents, frameworks, weights,
    /// quotas, reservations, maintenance. A master started again on the same directory
    /// recovers all of it.
    #[arg(
        long,
        env = "PROFFER_MASTER_WORK_DIR",
        default_value = "./proffer-master"
    )]
    work_dir: std::path::PathBuf,
    /// After a restart, how long agents have to re-register before they are removed (their
    /// resources are not offered until they are back).
    #[arg(long, env = "PROFFER_AGENT_REREGISTER_TIMEOUT", default_value = "10m", value_parser = parse_duration)]
    agent_reregister_timeout: Duration,
    /// Unreachable agents are forgotten (marked gone) after this long.
    #[arg(long, env = "PROFFER_REGISTRY_MAX_AGENT_AGE", default_value = "2w", value_parser = parse_duration)]
    registry_max_agent_age: Duration,
    /// At most this many unreachable agents are kept; the oldest beyond are marked gone.
    #[arg(
        long,
        env = "PROFFER_REGISTRY_MAX_AGENT_COUNT",
        default_value_t = 102_400
    )]
    registry_max_agent_count: usize,
    /// This master's address as clients and the other masters reach it, named by `/health`
    /// and given to clients by standbys (default: the --listen address, with 127.0.0.1 for
    /// 0.0.0.0).
    #[arg(long, env = "PROFFER_ADVERTISE")]
    advertise: Option<String>,
    /// With an etcd registry: the leader lease's TTL. A leader that dies or loses etcd is
    /// replaced within about this long; it stops acting a fifth of it earlier. Whole seconds, ≥ 2s.
    #[arg(long, env = "PROFFER_LEADER_LEASE_TTL", default_value = "5s", value_parser = parse_duration)]
    leader_lease_ttl: Duration,
    /// CA certificate (PEM) to verify etcd's serving certificate; implies https:// to etcd.
    #[arg(long, env = "PROFFER_ETCD_CACERT")]
    etcd_cacert: Option<PathBuf>,
    /// Client certificate (PEM) for etcd; with --etcd-key.
    #[arg(long, env = "PROFFER_ETCD_CERT")]
    etcd_cert: Option<PathBuf>,
    /// Key (PEM) of --etcd-cert.
    #[arg(long, env = "PROFFER_ETCD_KEY")]
    etcd_key: Option<PathBuf>,
    /// Most connections open at once; beyond it a new connection is closed at once. Lowered
    /// (with a warning) to fit the file-descriptor limit (`ulimit -n`).
    #[arg(long, env = "PROFFER_MAX_CONNECTIONS", default_value_t = 10_000)]
    max_connections: usize,
    /// A connection with no byte read or written for this long is closed.
    #[arg(long, env = "PROFFER_IDLE_TIMEOUT", default_value = "5m", value_parser = parse_duration)]
    idle_timeout: Duration,
    /// An HTTP/1 request's header must arrive within this.
    #[arg(long, env = "PROFFER_HEADER_READ_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    header_read_timeout: Duration,
    /// How often HTTP/2 (gRPC) connections are pinged; an unanswered ping closes the connection
    /// after --keepalive-timeout (half-open connections are dropped).
    #[arg(long, env = "PROFFER_KEEPALIVE_INTERVAL", default_value = "30s", value_parser = parse_duration)]
    keepalive_interval: Duration,
    /// Most framework subscriptions and agent sessions open at once per authenticated
    /// principal (per peer IP address when unauthenticated).
    #[arg(
        long,
        env = "PROFFER_MAX_STREAMS_PER_PRINCIPAL",
        default_value_t = 10_000
    )]
    max_streams_per_principal: usize,
    /// Largest accepted request: an HTTP body above it is answered 413, a gRPC message is
    /// refused (RESOURCE_EXHAUSTED).
    #[arg(
        long,
        env = "PROFFER_MAX_REQUEST_BYTES",
        default_value_t = proffer_master::server::MAX_MESSAGE_BYTES
    )]
    max_request_bytes: usize,
    /// How long an HTTP/2 ping may go unanswered.
    #[arg(long, env = "PROFFER_KEEPALIVE_TIMEOUT", default_value = "20s", value_parser = parse_duration)]
    keepalive_timeout: Duration,
    /// Authentication (--credentials, --authenticate-*) and ACLs (--acls).
    #[command(flatten)]
    auth: crate::security_args::MasterAuthArgs,
}

impl MasterArgs {
    /// The server configuration these flags describe.
    pub fn server_config(&self) -> anyhow::Result<ServerConfig> {
        anyhow::ensure!(
            !self.allocation_interval.is_zero(),
            "--allocation-interval must be > 0"
        );
        anyhow::ensure!(
            !self.agent_ping_interval.is_zero(),
            "--agent-ping-interval must be > 0"
        );
        anyhow::ensure!(
            self.agent_max_missed_pings > 0,
            "--agent-max-missed-pings must be > 0"
        );
        anyhow::ensure!(
            self.agent_reregister_timeout >= Duration::from_secs(10),
            "--agent-reregister-timeout must be at least 10s (as Mesos), got {:?}",
            self.agent_reregister_timeout
        );
        let master = MasterConfig {
            allocation_interval_ms: millis(self.allocation_interval),
            offer_coalesce_ms: millis(self.offer_coalesce),
            agent_ping_interval_ms: millis(self.agent_ping_interval),
            agent_max_missed_pings: self.agent_max_missed_pings,
            offer_timeout_ms: self.offer_timeout.map(millis),
            agent_reregister_timeout_ms: millis(self.agent_reregister_timeout),
            registry_max_agent_age_ms: millis(self.registry_max_agent_age),
            registry_max_agent_count: self.registry_max_agent_count,
            ..MasterConfig::default()
        };
        let mut config = ServerConfig::new(master);
        config.seed = self.seed.unwrap_or_else(random_seed);
        config.security = self.auth.security()?;
        config.connections = self.connection_limits()?;
        anyhow::ensure!(
            self.max_request_bytes > 0,
            "--max-request-bytes must be > 0"
        );
        config.max_request_bytes = self.max_request_bytes;
        config.tls = crate::security_args::server_tls(true)?;
        // Mutual TLS: with a CA, agents must prove themselves with an agent certificate.
        config.security.require_agent_certificates =
            config.tls.as_ref().is_some_and(|t| t.verifies_clients());
        crate::security_args::check_exposure(
            "the master",
            self.listen,
            config.tls.is_some(),
            config.security.requires_authentication(),
            self.insecure,
        )?;
        Ok(config)
    }

    /// The connection limits these flags describe.
    fn connection_limits(&self) -> anyhow::Result<ConnLimits> {
        anyhow::ensure!(self.max_connections > 0, "--max-connections must be > 0");
        anyhow::ensure!(
            self.max_streams_per_principal > 0,
            "--max-streams-per-principal must be > 0"
        );
        for (flag, d) in [
            ("--idle-timeout", self.idle_timeout),
            ("--header-read-timeout", self.header_read_timeout),
            ("--keepalive-interval", self.keepalive_interval),
            ("--keepalive-timeout", self.keepalive_timeout),
        ] {
            anyhow::ensure!(!d.is_zero(), "{flag} must be > 0");
        }
        anyhow::ensure!(
            self.idle_timeout > self.keepalive_interval,
            "--idle-timeout ({:?}) must be longer than --keepalive-interval ({:?}), or idle \
             gRPC streams would be closed",
            self.idle_timeout,
            self.keepalive_interval
        );
        Ok(ConnLimits {
            max_connections: self.max_connections,
            header_read_timeout: self.header_read_timeout,
            idle_timeout: self.idle_timeout,
            keep_alive_interval: self.keepalive_interval,
            keep_alive_timeout: self.keepalive_timeout,
            max_streams_per_principal: self.max_streams_per_principal,
        })
    }
}

/// A seed from the clock and the process id.
pub fn random_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    nanos ^ (u64::from(std::process::id()) << 32)
}

/// `proffer master`.
pub async fn master(args: MasterArgs, cancel: CancellationToken) -> anyhow::Result<()> {
    let mut config = args.server_config()?;
    config.advertise = Some(args.advertise_address());
    if let Some(etcd) = args.etcd()? {
        let listener = std::net::TcpListener::bind(args.listen)
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        let ha = HaConfig::new(
            etcd,
            &args.registry_prefix,
            args.advertise_address(),
            args.leader_lease_ttl,
        );
        return serve_ha(listener, config, ha, cancel)
            .await
            .context("master server");
    }
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let registry = open_redb(&args)?;
    serve_with_registry(listener, config, Some(registry), cancel)
        .await
        .context("master server")
}

impl MasterArgs {
    /// The etcd settings when `--registry etcd://…`; None for `redb`.
    fn etcd(&self) -> anyhow::Result<Option<EtcdConfig>> {
        let Some(list) = self.registry.strip_prefix("etcd://") else {
            anyhow::ensure!(
                self.registry == "redb",
                "--registry `{}`: expected `redb` or `etcd://HOST:PORT[,HOST:PORT…]`",
                self.registry
            );
            return Ok(None);
        };
        let tls =
            (self.etcd_cacert.is_some() || self.etcd_cert.is_some() || self.etcd_key.is_some())
                .then(|| EtcdTls {
                    ca: self.etcd_cacert.clone(),
                    cert: self.etcd_cert.clone(),
                    key: self.etcd_key.clone(),
                });
        let etcd = EtcdConfig::parse(list, tls).map_err(|e| {
            anyhow::anyhow!(
                "--registry {}: {e}, e.g. etcd://127.0.0.1:2379",
                self.registry
            )
        })?;
        // Read the TLS files now, so a typo fails at start rather than on every retry.
        etcd.connect_options(None)?;
        Ok(Some(etcd))
    }

    /// `--advertise`, or the listen address (loopback for an unspecified IP).
    fn advertise_address(&self) -> String {
        if let Some(a) = &self.advertise {
            return a.clone();
        }
        let mut addr = self.listen;
        if addr.ip().is_unspecified() {
            addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        addr.to_string()
    }
}

/// The redb registry in `--work-dir`.
fn open_redb(args: &MasterArgs) -> anyhow::Result<Box<dyn Registry>> {
    let registry = RedbRegistry::open(&args.work_dir).with_context(|| {
        format!(
            "cannot open the master's registry in --work-dir {}",
            args.work_dir.display()
        )
    })?;
    Ok(Box::new(registry))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: MasterArgs,
    }

    /// `proffer master` on loopback (open to the network it would need TLS or auth) + `extra`.
    fn parse(extra: &[&str]) -> anyhow::Result<MasterArgs> {
        let listen: &[&str] = if extra.contains(&"--listen") {
            &[]
        } else {
            &["--listen", "127.0.0.1:5050"]
        };
        let argv = std::iter::once("master")
            .chain(listen.iter().copied())
            .chain(extra.iter().copied());
        Ok(Cli::try_parse_from(argv)?.args)
    }

    #[test]
    fn open_to_the_network_needs_tls_or_authentication_or_insecure() -> anyhow::Result<()> {
        let open = |extra: &[&str]| -> anyhow::Result<ServerConfig> {
            let argv = ["master", "--listen", "0.0.0.0:5050"]
                .into_iter()
                .chain(extra.iter().copied());
            Cli::try_parse_from(argv)?.args.server_config()
        };
        let err = open(&[]).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(
            err.contains("refusing to serve the master on 0.0.0.0:5050"),
            "{err}"
        );
        assert!(err.contains("proffer pki init"), "says how: {err}");
        assert!(open(&["--insecure"]).is_ok());
        let dir = tempfile::tempdir()?;
        let creds = dir.path().join("c.json");
        std::fs::write(
            &creds,
            r#"{"credentials":[{"principal":"a","secret":"b"}]}"#,
        )?;
        let creds = creds.to_str().unwrap_or_default();
        assert!(open(&["--credentials", creds, "--authenticate-frameworks"]).is_ok());
        Ok(())
    }

    #[test]
    fn connection_flags_set_the_limits() -> anyhow::Result<()> {
        let default = parse(&[])?.server_config()?.connections;
        assert_eq!(default, ConnLimits::default());
        let set = parse(&[
            "--max-connections",
            "5",
            "--idle-timeout",
            "2m",
            "--header-read-timeout",
            "5s",
            "--keepalive-interval",
            "10s",
            "--keepalive-timeout",
            "3s",
            "--max-streams-per-principal",
            "7",
        ])?
        .server_config()?
        .connections;
        assert_eq!(set.max_connections, 5);
        assert_eq!(set.idle_timeout, Duration::from_secs(120));
        assert_eq!(set.header_read_timeout, Duration::from_secs(5));
        assert_eq!(set.keep_alive_interval, Duration::from_secs(10));
        assert_eq!(set.keep_alive_timeout, Duration::from_secs(3));
        assert_eq!(set.max_streams_per_principal, 7);
        for bad in [
            &["--max-connections", "0"][..],
            &["--idle-timeout", "10s", "--keepalive-interval", "30s"],
        ] {
            let err = parse(bad)?.server_config().expect_err("refused");
            assert!(err.to_string().contains(bad[0]), "{err}");
        }
        Ok(())
    }

    #[test]
    fn registry_flags_choose_the_backend() -> anyhow::Result<()> {
        assert!(parse(&[])?.etcd()?.is_none());
        let a = parse(&["--registry", "etcd://10.0.0.1:2379,10.0.0.2:2379"])?;
        let etcd = a.etcd()?.expect("etcd");
        assert_eq!(
            etcd.endpoints,
            ["http://10.0.0.1:2379", "http://10.0.0.2:2379"]
        );
        assert_eq!(a.advertise_address(), "127.0.0.1:5050");
        let err = parse(&["--registry", "zk://x"])?
            .etcd()
            .expect_err("unknown backend");
        assert!(err.to_string().contains("zk://x"), "{err}");
        let err = parse(&["--registry", "etcd://"])?
            .etcd()
            .expect_err("no endpoint");
        assert!(err.to_string().contains("no etcd endpoint"), "{err}");
        let err = parse(&[
            "--registry",
            "etcd://a:1",
            "--etcd-cacert",
            "/nonexistent.pem",
        ])?
        .etcd()
        .expect_err("missing CA");
        assert!(err.to_string().contains("/nonexistent.pem"), "{err}");
        let b = parse(&[
            "--listen",
            "10.1.1.1:6000",
            "--advertise",
            "m1.example:6000",
        ])?;
        assert_eq!(b.advertise_address(), "m1.example:6000");
        Ok(())
    }
}
