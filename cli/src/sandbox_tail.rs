//! Where a failed task ran and the last lines of its stderr, for the failure lines of
//! [`crate::progress`].
//!
//! The agent's address is the `hostname:port` it advertises (from the master's state); its
//! sandbox is `sandboxes/FRAMEWORK/TASK` under the agent's work dir. When the agent serves
//! its HTTP endpoint there (`proffer agent --http`, with `--port` the same port), the stderr
//! file is read from `/files/read`; otherwise the failure line names the sandbox path and the
//! status message only. Every request is bounded by [`LOOKUP_TIMEOUT`].

use std::collections::HashMap;
use std::time::{Duration, Instant};

use proffer_proto::leader::MasterList;
use proffer_sdk::service::http::request_as;

use crate::progress::{Failure, STDERR_LINES};

/// The longest one lookup request (master state, agent file) may take.
pub const LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);
/// How much of the end of a stderr file is read.
const TAIL_BYTES: u64 = 4096;
/// How often, at most, the master's agent list is fetched again for an unknown agent.
const REFRESH_EVERY: Duration = Duration::from_secs(2);

/// The sandbox of `task_id` of `framework_id`, relative to the agent's work dir.
pub fn sandbox_path(framework_id: &str, task_id: &str) -> String {
    format!("sandboxes/{framework_id}/{task_id}")
}

/// The last `n` non-empty lines of `text`, oldest first.
pub fn last_lines(text: &str, n: usize) -> Vec<String> {
    let mut lines: Vec<String> = text
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.is_empty())
        .rev()
        .take(n)
        .map(String::from)
        .collect();
    lines.reverse();
    lines
}

use proffer_net::url::query_value;

/// Finds agents' addresses (cached) and reads sandboxes.
#[derive(Debug)]
pub struct SandboxLookup {
    masters: Option<MasterList>,
    agents: HashMap<String, String>,
    refreshed: Option<Instant>,
}

impl SandboxLookup {
    /// A lookup asking `masters` for agents' addresses (`None`: only hostnames given by the
    /// caller are used).
    pub fn new(masters: Option<MasterList>) -> SandboxLookup {
        SandboxLookup {
            masters,
            agents: HashMap::new(),
            refreshed: None,
        }
    }

    /// The `hostname:port` agent `agent_id` advertises, if the master knows it.
    async fn agent_addr(&mut self, agent_id: &str) -> Option<String> {
        if let Some(addr) = self.agents.get(agent_id) {
            return Some(addr.clone());
        }
        let masters = self.masters.as_ref()?;
        if self.refreshed.is_some_and(|t| t.elapsed() < REFRESH_EVERY) {
            return None;
        }
        self.refreshed = Some(Instant::now());
        let state = tokio::time::timeout(LOOKUP_TIMEOUT, crate::operator::fetch_state(masters))
            .await
            .ok()?
            .ok()?;
        for a in state.agents {
            self.agents
                .insert(a.id.clone(), format!("{}:{}", a.hostname, a.port));
        }
        self.agents.get(agent_id).cloned()
    }

    /// Fills `failure`'s agent, sandbox and (with `stderr`) stderr lines as far as they can
    /// be found. With no `framework_id` the sandbox is unknown; `agent_id` is looked up on the
    /// master (without `stderr`, only in what is already known: no request is made).
    pub async fn describe(
        &mut self,
        failure: &mut Failure,
        framework_id: &str,
        task_id: &str,
        agent_id: &str,
        stderr: bool,
    ) {
        let addr = match (agent_id.is_empty(), stderr) {
            (true, _) => None,
            (false, true) => self.agent_addr(agent_id).await,
            (false, false) => self.agents.get(agent_id).cloned(),
        };
        if let Some(addr) = &addr {
            failure.agent = addr.clone();
        } else if failure.agent.is_empty() {
            failure.agent = agent_id.to_string();
        }
        if framework_id.is_empty() || task_id.is_empty() {
            return;
        }
        let sandbox = sandbox_path(framework_id, task_id);
        if let Some(addr) = addr
            && stderr
            && let Ok(lines) = stderr_tail(&addr, &sandbox).await
        {
            failure.stderr = lines;
        }
        failure.sandbox = Some(sandbox);
    }
}

/// The last [`STDERR_LINES`] lines of `sandbox/stderr` on the agent at `addr`.
async fn stderr_tail(addr: &str, sandbox: &str) -> Result<Vec<String>, String> {
    let path = query_value(&format!("{sandbox}/stderr"));
    let size = read(
        addr,
        &format!("/files/read?path={path}&offset={}&length=0", u64::MAX),
    )
    .await?
    .get("size")
    .and_then(serde_json::Value::as_u64)
    .ok_or("no size in the agent's answer")?;
    let offset = size.saturating_sub(TAIL_BYTES);
    let answer = read(
        addr,
        &format!("/files/read?path={path}&offset={offset}&length={TAIL_BYTES}"),
    )
    .await?;
    let data = answer
        .get("data")
        .and_then(serde_json::Value::as_str)
        .ok_or("no data in the agent's answer")?;
    // A cut first line is a fragment: drop it unless the file was read from its start.
    let text = match (offset, data.split_once('\n')) {
        (o, Some((_, rest))) if o > 0 => rest,
        _ => data,
    };
    Ok(last_lines(text, STDERR_LINES))
}

/// `GET path` on the agent at `addr`, as JSON.
async fn read(addr: &str, path: &str) -> Result<serde_json::Value, String> {
    // Sandbox reads may need a principal (the agent's --authenticate-http-readonly, --acls).
    let credential = proffer_proto::auth::process_credential();
    let body = tokio::time::timeout(
        LOOKUP_TIMEOUT,
        request_as(addr, "GET", path, "", credential),
    )
    .await
    .map_err(|_| format!("{addr} did not answer in time"))?
    .map_err(|e| e.to_string())?;
    serde_json::from_str(&body).map_err(|e| format!("unexpected answer from {addr}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_lines_skip_blank_ones() {
        assert_eq!(
            last_lines("a\nb\n\nc\nd\n\n", 3),
            vec!["b".to_string(), "c".into(), "d".into()]
        );
        assert_eq!(last_lines("only\n", 3), vec!["only".to_string()]);
        assert!(last_lines("", 3).is_empty());
    }

    #[test]
    fn sandbox_paths_and_query_values() {
        assert_eq!(sandbox_path("fw-1", "b-0003"), "sandboxes/fw-1/b-0003");
        assert_eq!(query_value("sandboxes/a b/c&d"), "sandboxes/a%20b/c%26d");
    }

    #[tokio::test]
    async fn unknown_agents_leave_the_sandbox_path_only() {
        let mut lookup = SandboxLookup::new(None);
        let mut f = Failure {
            id: "t".into(),
            ..Failure::default()
        };
        lookup.describe(&mut f, "fw", "t", "agent-1", true).await;
        assert_eq!(f.agent, "agent-1");
        assert_eq!(f.sandbox.as_deref(), Some("sandboxes/fw/t"));
        assert!(f.stderr.is_empty());
    }
}
