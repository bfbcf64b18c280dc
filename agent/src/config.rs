//! Agent configuration and `--attributes` parsing.

use std::path::PathBuf;
use std::time::Duration;

use proffer_proto::Resources;

use crate::AgentError;

/// How an agent is configured (the CLI fills this in).
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// `HOST:PORT` of the master (gRPC over plain HTTP/2), or several, comma-separated
    /// (`h1:5050,h2:5050,h3:5050`): the agent finds the leader among them and follows it
    /// across failovers (see [`proffer_proto::leader::MasterList`]).
    pub master: String,
    /// Sandboxes and the `agent_id` file live here.
    pub work_dir: PathBuf,
    /// Resources to advertise; `None` means auto-detect (see [`crate::detect_resources`]).
    pub resources: Option<Resources>,
    /// Attributes advertised to the master, e.g. `[("rack", "r1")]`.
    pub attributes: Vec<(String, String)>,
    /// Hostname advertised to the master.
    pub hostname: String,
    /// Port advertised to the master (the agent does not listen yet).
    pub port: u32,
    /// First status-update retry interval (Mesos: 10 s).
    pub status_retry_initial: Duration,
    /// Cap of the status-update retry backoff (Mesos: 10 min).
    pub status_retry_max: Duration,
    /// First reconnect delay; doubles on every failure.
    pub reconnect_initial: Duration,
    /// Cap of the reconnect delay.
    pub reconnect_max: Duration,
    /// SIGTERM → SIGKILL grace when neither the kill nor the task gives one (Mesos: 3 s).
    pub default_kill_grace: Duration,
    /// How per-task executors are started.
    pub executor: ExecutorLauncher,
    /// How tasks are isolated.
    pub isolation: IsolationMode,
    /// Name of the agent's cgroup under each hierarchy (task cgroups go below it).
    pub cgroups_root: String,
    /// Hard cpu limits (CFS quota = cpus × period), as Mesos's `--cgroups_enable_cfs`.
    pub cgroups_enable_cfs: bool,
    /// Run every task in its own PID and mount namespaces (it is pid 1 and sees only its own
    /// processes in its `/proc`), with util-linux `unshare`; the agent refuses to start when
    /// this is asked for and unavailable.
    pub pid_namespace: bool,
    /// When the agent is stopped (cancel), kill its tasks. Off, tasks keep running under their
    /// executors and the next agent started on the same work directory re-attaches to them.
    pub kill_tasks_on_shutdown: bool,
    /// Size bound of the fetcher's shared cache (Mesos: 2 GB).
    pub fetcher_cache_bytes: u64,
    /// Address of the agent's HTTP endpoint (sandbox browsing, `/state`, `/metrics`);
    /// `None`: no HTTP endpoint.
    pub http_listen: Option<std::net::SocketAddr>,
    /// Sandboxes of ended tasks are removed after this long (Mesos `--gc_delay`: 1 week).
    pub gc_delay: Duration,
    /// A group commit waits until this long after the previous one, taking in the inputs
    /// that arrive meanwhile: one fsync and fewer, larger messages for all of them. An agent
    /// that was quiet that long commits at once, so a lone task pays nothing. Zero: commit
    /// after every batch of ready inputs. Default 2 ms ([`DEFAULT_COMMIT_WINDOW`]).
    pub commit_window: Duration,
    /// Sandboxes of ended tasks are removed earlier, oldest first, while the work directory's
    /// file system is fuller than this fraction, of its blocks or of its inodes (Mesos
    /// `--gc_disk_headroom` 0.1 → 0.9 here).
    pub gc_max_disk_fraction: f64,
    /// Who the agent is to the master (`authorization` on its session; the master records the
    /// principal as the agent id's owner). `None`: the process credential, if any.
    pub credential: Option<proffer_proto::auth::Credential>,
    /// Authentication and ACLs of the HTTP endpoint (default: open).
    pub http_security: crate::http_auth::HttpSecurity,
    /// TLS to the master (the CA that verifies it, the agent's certificate for mutual TLS).
    /// `None`: the process's client TLS, if any (`proffer_net::tls::process_tls`).
    pub master_tls: Option<proffer_net::tls::ClientTls>,
}

/// How the agent starts per-task executors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecutorLauncher {
    /// Probe the agent's own binary (`executor --probe`); when it answers, executors are
    /// `current_exe executor --run-dir DIR` processes, else they run inside the agent (and
    /// the agent logs a warning at start).
    Auto,
    /// `program args… --run-dir DIR` (e.g. `proffer` with `["executor"]`).
    Binary {
        /// The program.
        program: PathBuf,
        /// Arguments before `--run-dir`.
        args: Vec<String>,
    },
    /// Supervise tasks inside the agent process (tasks die with the agent).
    InProcess,
}

/// How tasks are isolated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IsolationMode {
    /// cgroups where the host allows them (said at start), plain processes otherwise.
    Auto,
    /// Plain processes (process groups), no resource limits.
    Posix,
    /// cgroups are required: the agent refuses to start without cpu and memory controllers.
    Cgroups,
}

/// The default [`AgentConfig::commit_window`]: with 80 `true` tasks at a time on two cores,
/// 2 ms gave 952 tasks/s against 880 with none, 5 ms no more (docs/launch-performance.md).
pub const DEFAULT_COMMIT_WINDOW: Duration = Duration::from_millis(2);

impl AgentConfig {
    /// A configuration with Mesos defaults, auto-detected resources and the local hostname.
    pub fn new(master: impl Into<String>, work_dir: impl Into<PathBuf>) -> Self {
        AgentConfig {
            master: master.into(),
            work_dir: work_dir.into(),
            resources: None,
            attributes: Vec::new(),
            hostname: local_hostname(),
            port: 5051,
            status_retry_initial: Duration::from_secs(10),
            status_retry_max: Duration::from_secs(600),
            reconnect_initial: Duration::from_millis(200),
            reconnect_max: Duration::from_secs(10),
            default_kill_grace: Duration::from_secs(3),
            executor: ExecutorLauncher::Auto,
            isolation: IsolationMode::Auto,
            cgroups_root: "proffer".into(),
            cgroups_enable_cfs: false,
            pid_namespace: false,
            kill_tasks_on_shutdown: true,
            fetcher_cache_bytes: 2 << 30,
            http_listen: None,
            gc_delay: Duration::from_secs(7 * 24 * 3600),
            commit_window: DEFAULT_COMMIT_WINDOW,
            gc_max_disk_fraction: 0.9,
            credential: None,
            http_security: Default::default(),
            master_tls: None,
        }
    }
}

/// The machine's hostname, or `localhost` when it cannot be read.
fn local_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

/// Checks the resources an agent is to offer: below Mesos's minimum allocatable resources
/// (cpus 0.01 or mem 32 MB, any role) nothing of them could ever be offered, so an agent
/// refuses to start with them rather than register and sit idle.
pub fn check_resources(resources: &Resources) -> Result<(), AgentError> {
    if resources.is_allocatable() {
        Ok(())
    } else {
        Err(AgentError::NothingAllocatable {
            resources: if resources.is_empty() {
                "no resources at all".into()
            } else {
                format!("only `{resources}`")
            },
        })
    }
}

/// Parses Mesos attribute text, `name:value;name:value` (e.g. `rack:r1;zone:a`).
///
/// Whitespace around names and values is trimmed; empty segments (a trailing `;`) are skipped.
/// The value may itself contain `:` (only the first one separates). Names must be non-empty
/// and unique; values must be non-empty.
pub fn parse_attributes(s: &str) -> Result<Vec<(String, String)>, AgentError> {
    let err = |reason: String| AgentError::InvalidAttributes {
        input: s.to_string(),
        reason,
    };
    let mut out: Vec<(String, String)> = Vec::new();
    for part in s.split(';') {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        let (name, value) = part
            .split_once(':')
            .ok_or_else(|| err(format!("{part:?} is not of the form name:value")))?;
        let (name, value) = (name.trim(), value.trim());
        if name.is_empty() {
            return Err(err(format!("{part:?} has an empty name")));
        }
        if value.is_empty() {
            return Err(err(format!("attribute {name:?} has an empty value")));
        }
        if out.iter().any(|(n, _)| n == name) {
            return Err(err(format!("attribute {name:?} given twice")));
        }
        out.push((name.to_string(), value.to_string()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn attribute_table() {
        let ok: &[(&str, &[(&str, &str)])] = &[
            ("", &[]),
            ("rack:r1", &[("rack", "r1")]),
            ("rack:r1;zone:a", &[("rack", "r1"), ("zone", "a")]),
            (" rack : r1 ; zone:a ;", &[("rack", "r1"), ("zone", "a")]),
            ("url:http://x:80", &[("url", "http://x:80")]),
            ("n:1.5", &[("n", "1.5")]),
        ];
        for (input, want) in ok {
            assert_eq!(parse_attributes(input).ok(), Some(pairs(want)), "{input:?}");
        }
        for bad in ["rack", ":r1", "rack:", "rack:r1;rack:r2", "a:b;c"] {
            let got = parse_attributes(bad);
            assert!(got.is_err(), "{bad:?} must fail ({got:?})");
        }
    }

    #[test]
    fn resources_must_be_allocatable() -> Result<(), proffer_proto::ResourceError> {
        let table = [
            ("", false),
            ("disk:1000;ports:[31000-32000]", false),
            ("cpus:0.005;mem:16", false),
            ("cpus:0.01", true),
            ("mem:32", true),
            ("cpus(web):1", true),
        ];
        for (text, ok) in table {
            let got = check_resources(&Resources::parse(text)?);
            assert_eq!(got.is_ok(), ok, "`{text}`: {got:?}");
            if let Err(e) = got {
                let msg = e.to_string();
                assert!(
                    msg.contains("nothing allocatable") && msg.contains("cpus 0.01 or mem 32 MB"),
                    "{msg}"
                );
            }
        }
        Ok(())
    }

    #[test]
    fn defaults_are_mesos() {
        let c = AgentConfig::new("127.0.0.1:5050", "/tmp/x");
        assert_eq!(c.port, 5051);
        assert_eq!(c.status_retry_initial, Duration::from_secs(10));
        assert_eq!(c.status_retry_max, Duration::from_secs(600));
        assert_eq!(c.default_kill_grace, Duration::from_secs(3));
        assert!(!c.hostname.is_empty());
    }
}
