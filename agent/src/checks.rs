//! Health and readiness checks (COMMAND, HTTP, TCP) with Mesos's timing defaults, run by the
//! executor next to the task.
//!
//! [`CheckConfig`] resolves a `HealthCheck` message against the defaults; [`run_once`] performs
//! one check; [`HealthTracker`] turns results into "became healthy / unhealthy / kill it"
//! decisions (consecutive failures, grace period).

use std::path::Path;
use std::time::Duration;

use proffer_proto::v1::{HealthCheck, health_check::CheckType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Mesos defaults: delay 15 s, interval 10 s, timeout 20 s, 3 consecutive failures, grace 10 s.
pub const DEFAULT_DELAY: Duration = Duration::from_secs(15);
/// See [`DEFAULT_DELAY`].
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);
/// See [`DEFAULT_DELAY`].
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(20);
/// See [`DEFAULT_DELAY`].
pub const DEFAULT_CONSECUTIVE_FAILURES: u32 = 3;
/// See [`DEFAULT_DELAY`].
pub const DEFAULT_GRACE: Duration = Duration::from_secs(10);

/// What one check does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckKind {
    /// `/bin/sh -c command` in the sandbox; exit 0 is success.
    Command(String),
    /// `GET http://127.0.0.1:port/path`; 2xx/3xx is success.
    Http {
        /// The port.
        port: u16,
        /// The path (starting with `/`).
        path: String,
    },
    /// A TCP connection to `127.0.0.1:port` succeeds.
    Tcp(u16),
}

/// A check with its timing resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckConfig {
    /// What to check.
    pub kind: CheckKind,
    /// Wait before the first check.
    pub delay: Duration,
    /// Between checks.
    pub interval: Duration,
    /// One check's time limit.
    pub timeout: Duration,
    /// Failures in a row that make a task unhealthy (and get it killed).
    pub consecutive_failures: u32,
    /// After the task starts, failures do not count until this much time passed (unless a
    /// check already succeeded).
    pub grace: Duration,
}

impl CheckConfig {
    /// Resolves a `HealthCheck` against the Mesos defaults.
    pub fn from_proto(c: &HealthCheck) -> Result<Self, String> {
        let port = |p: u32| {
            u16::try_from(p)
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| format!("check port {p} is not a valid port"))
        };
        let kind = match CheckType::try_from(c.r#type).unwrap_or(CheckType::Unspecified) {
            CheckType::Command => {
                let cmd = c
                    .command
                    .as_ref()
                    .map(|c| c.value.clone())
                    .unwrap_or_default();
                if cmd.is_empty() {
                    return Err("COMMAND check without a command".into());
                }
                CheckKind::Command(cmd)
            }
            CheckType::Http => {
                let path = if c.path.is_empty() {
                    "/".to_string()
                } else {
                    c.path.clone()
                };
                if !path.starts_with('/') || path.contains(['\r', '\n', ' ']) {
                    return Err(format!("HTTP check path {path:?} is invalid"));
                }
                CheckKind::Http {
                    port: port(c.port)?,
                    path,
                }
            }
            CheckType::Tcp => CheckKind::Tcp(port(c.port)?),
            CheckType::Unspecified => return Err("check type is not set".into()),
        };
        let ms = |v: Option<u64>, d: Duration| v.map_or(d, Duration::from_millis);
        Ok(CheckConfig {
            kind,
            delay: ms(c.delay_ms, DEFAULT_DELAY),
            interval: ms(c.interval_ms, DEFAULT_INTERVAL).max(Duration::from_millis(10)),
            timeout: ms(c.timeout_ms, DEFAULT_TIMEOUT).max(Duration::from_millis(10)),
            consecutive_failures: c
                .consecutive_failures
                .unwrap_or(DEFAULT_CONSECUTIVE_FAILURES)
                .max(1),
            grace: ms(c.grace_period_ms, DEFAULT_GRACE),
        })
    }
}

/// Runs one check, bounded by `timeout`; `Ok` carries a short description of success.
pub async fn run_once(
    kind: &CheckKind,
    timeout: Duration,
    sandbox: &Path,
    env: &[(String, String)],
) -> Result<String, String> {
    match tokio::time::timeout(timeout, attempt(kind, sandbox, env)).await {
        Ok(r) => r,
        Err(_) => Err(format!("check timed out after {} ms", timeout.as_millis())),
    }
}

async fn attempt(
    kind: &CheckKind,
    sandbox: &Path,
    env: &[(String, String)],
) -> Result<String, String> {
    match kind {
        CheckKind::Command(cmd) => {
            let status = tokio::process::Command::new("/bin/sh")
                .arg("-c")
                .arg(cmd)
                .current_dir(sandbox)
                .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .kill_on_drop(true)
                .status()
                .await
                .map_err(|e| format!("running check command: {e}"))?;
            if status.success() {
                Ok("command check exited 0".into())
            } else {
                Err(format!("command check failed: {status}"))
            }
        }
        CheckKind::Tcp(port) => tokio::net::TcpStream::connect(("127.0.0.1", *port))
            .await
            .map(|_| format!("connected to port {port}"))
            .map_err(|e| format!("TCP check of port {port}: {e}")),
        CheckKind::Http { port, path } => {
            let mut s = tokio::net::TcpStream::connect(("127.0.0.1", *port))
                .await
                .map_err(|e| format!("HTTP check of port {port}: {e}"))?;
            let req = format!(
                "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: proffer-check\r\n\r\n"
            );
            s.write_all(req.as_bytes())
                .await
                .map_err(|e| format!("HTTP check: {e}"))?;
            let mut head = vec![0u8; 256];
            let mut n = 0;
            while n < head.len() {
                let r = s
                    .read(&mut head[n..])
                    .await
                    .map_err(|e| format!("HTTP check: {e}"))?;
                if r == 0 || head[..n + r].contains(&b'\n') {
                    n += r;
                    break;
                }
                n += r;
            }
            let line = String::from_utf8_lossy(&head[..n]);
            let code: u16 = line
                .split_whitespace()
                .nth(1)
                .and_then(|c| c.parse().ok())
                .ok_or_else(|| {
                    format!(
                        "HTTP check: bad response {:?}",
                        line.lines().next().unwrap_or("")
                    )
                })?;
            if (200..400).contains(&code) {
                Ok(format!("HTTP {code} from {path}"))
            } else {
                Err(format!("HTTP check got status {code} from {path}"))
            }
        }
    }
}

/// What the executor should do after a health check result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthAction {
    /// Nothing changes.
    None,
    /// Report the new health state.
    Report(bool),
    /// Report unhealthy and kill the task.
    Kill,
}

/// Counts consecutive failures and applies the grace period.
#[derive(Debug, Clone, Default)]
pub struct HealthTracker {
    failures: u32,
    ever_healthy: bool,
    reported: Option<bool>,
}

impl HealthTracker {
    /// Feeds one result; `since_start` is the time since the task started.
    pub fn record(&mut self, ok: bool, since_start: Duration, cfg: &CheckConfig) -> HealthAction {
        if ok {
            self.failures = 0;
            self.ever_healthy = true;
            if self.reported != Some(true) {
                self.reported = Some(true);
                return HealthAction::Report(true);
            }
            return HealthAction::None;
        }
        if !self.ever_healthy && since_start < cfg.grace {
            return HealthAction::None; // still starting up
        }
        self.failures += 1;
        if self.failures >= cfg.consecutive_failures {
            self.reported = Some(false);
            return HealthAction::Kill;
        }
        if self.reported != Some(false) {
            self.reported = Some(false);
            return HealthAction::Report(false);
        }
        HealthAction::None
    }

    /// The last reported state.
    pub fn healthy(&self) -> Option<bool> {
        self.reported
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proffer_proto::v1::CommandInfo;

    fn cfg(n: u32, grace_ms: u64) -> CheckConfig {
        CheckConfig {
            kind: CheckKind::Tcp(1),
            delay: Duration::ZERO,
            interval: Duration::from_millis(10),
            timeout: Duration::from_millis(10),
            consecutive_failures: n,
            grace: Duration::from_millis(grace_ms),
        }
    }

    #[test]
    fn defaults_are_mesos() {
        let c = CheckConfig::from_proto(&HealthCheck {
            r#type: CheckType::Tcp as i32,
            port: 8080,
            ..Default::default()
        })
        .expect("valid");
        assert_eq!(c.delay, Duration::from_secs(15));
        assert_eq!(c.interval, Duration::from_secs(10));
        assert_eq!(c.timeout, Duration::from_secs(20));
        assert_eq!(c.consecutive_failures, 3);
        assert_eq!(c.grace, Duration::from_secs(10));
        assert!(CheckConfig::from_proto(&HealthCheck::default()).is_err());
        let bad = HealthCheck {
            r#type: CheckType::Http as i32,
            port: 70000,
            ..Default::default()
        };
        assert!(CheckConfig::from_proto(&bad).is_err());
        let cmd = HealthCheck {
            r#type: CheckType::Command as i32,
            command: Some(CommandInfo {
                value: "true".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            CheckConfig::from_proto(&cmd).map(|c| c.kind),
            Ok(CheckKind::Command("true".into()))
        );
    }

    #[test]
    fn tracker_counts_consecutive_failures_after_grace() {
        let c = cfg(3, 100);
        let mut t = HealthTracker::default();
        let early = Duration::from_millis(50);
        let late = Duration::from_millis(500);
        // Failures inside the grace period before any success are ignored.
        assert_eq!(t.record(false, early, &c), HealthAction::None);
        assert_eq!(t.record(true, early, &c), HealthAction::Report(true));
        assert_eq!(t.record(true, late, &c), HealthAction::None);
        assert_eq!(t.record(false, late, &c), HealthAction::Report(false));
        assert_eq!(t.record(false, late, &c), HealthAction::None);
        assert_eq!(t.record(true, late, &c), HealthAction::Report(true));
        assert_eq!(t.record(false, late, &c), HealthAction::Report(false));
        assert_eq!(t.record(false, late, &c), HealthAction::None);
        assert_eq!(t.record(false, late, &c), HealthAction::Kill);
    }

    #[tokio::test]
    async fn tcp_http_and_command_checks() {
        let dir = tempfile::tempdir().expect("tempdir");
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = l.local_addr().expect("addr").port();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let mut buf = [0u8; 512];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let req = String::from_utf8_lossy(&buf[..n]).to_string();
                let code = if req.starts_with("GET /ok ") {
                    "200 OK"
                } else {
                    "503 Unavailable"
                };
                let _ = s
                    .write_all(format!("HTTP/1.0 {code}\r\n\r\n").as_bytes())
                    .await;
            }
        });
        let t = Duration::from_secs(5);
        let env = [("X".to_string(), "1".to_string())];
        assert!(
            run_once(&CheckKind::Tcp(port), t, dir.path(), &env)
                .await
                .is_ok()
        );
        let ok = CheckKind::Http {
            port,
            path: "/ok".into(),
        };
        assert!(run_once(&ok, t, dir.path(), &env).await.is_ok());
        let bad = CheckKind::Http {
            port,
            path: "/bad".into(),
        };
        let e = run_once(&bad, t, dir.path(), &env)
            .await
            .err()
            .unwrap_or_default();
        assert!(e.contains("503"), "{e}");
        assert!(
            run_once(
                &CheckKind::Command("test \"$X\" = 1".into()),
                t,
                dir.path(),
                &env
            )
            .await
            .is_ok()
        );
        assert!(
            run_once(&CheckKind::Command("exit 1".into()), t, dir.path(), &env)
                .await
                .is_err()
        );
        let slow = run_once(
            &CheckKind::Command("sleep 5".into()),
            Duration::from_millis(50),
            dir.path(),
            &env,
        )
        .await;
        assert!(slow.err().unwrap_or_default().contains("timed out"));
    }
}
