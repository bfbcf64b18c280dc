//! `proffer agents`, `proffer frameworks` (tables of the master's state, or `--json`) and
//! `proffer logs TASK_ID [--stderr] [--follow]` (a task's stdout or stderr, read from its
//! agent's file API, `/files/read`, with the process's TLS and credential).

use std::time::Duration;

use proffer_proto::leader::MasterList;
use proffer_proto::v1;
use proffer_sdk::service::http::request_as;

use crate::sandbox_tail::sandbox_path;
use crate::table::{render, round_resources};

/// Flags of `proffer agents` and `proffer frameworks`.
#[derive(Debug, clap::Args)]
pub struct ViewArgs {
    /// The master, HOST:PORT, or several, comma-separated: whichever leads answers.
    #[arg(long, env = "PROFFER_MASTER", default_value = "127.0.0.1:5050")]
    pub master: MasterList,
    /// Print JSON (the master's summaries) instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Flags of `proffer logs`.
#[derive(Debug, clap::Args)]
pub struct LogsArgs {
    /// The task's id (live or completed).
    pub task_id: String,
    /// Print stderr instead of stdout.
    #[arg(long)]
    pub stderr: bool,
    /// Keep printing what the task writes until it ends.
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// With `--follow`, how often the file is read again.
    #[arg(long, default_value = "500ms", value_parser = crate::duration::parse_duration)]
    pub interval: Duration,
    /// Print a JSON object per read (`{"offset","data"}`) instead of the raw text.
    #[arg(long)]
    pub json: bool,
    /// The task's framework id, when frameworks share task ids (e.g. two `proffer run`s).
    #[arg(long)]
    pub framework: Option<String>,
    /// The master, HOST:PORT, or several, comma-separated: whichever leads answers.
    #[arg(long, env = "PROFFER_MASTER", default_value = "127.0.0.1:5050")]
    pub master: MasterList,
}

/// The agents as a table: id, address, state, total, allocated, tasks.
pub fn render_agents(agents: &[v1::AgentSummary]) -> String {
    let rows: Vec<Vec<String>> = agents
        .iter()
        .map(|a| {
            vec![
                a.id.clone(),
                format!("{}:{}", a.hostname, a.port),
                a.state.clone(),
                round_resources(&a.total),
                round_resources(&a.allocated),
                a.active_tasks.to_string(),
            ]
        })
        .collect();
    render(
        &["ID", "ADDRESS", "STATE", "TOTAL", "ALLOCATED", "TASKS"],
        &rows,
    )
}

/// The frameworks as a table: id, name, roles, connection, allocation, share, tasks, offers.
pub fn render_frameworks(frameworks: &[v1::FrameworkSummary]) -> String {
    let rows: Vec<Vec<String>> = frameworks
        .iter()
        .map(|f| {
            let status = match (f.connected, f.suppressed) {
                (true, false) => "connected",
                (true, true) => "suppressed",
                (false, _) => "disconnected",
            };
            vec![
                f.id.clone(),
                f.name.clone(),
                f.roles.join(","),
                status.to_string(),
                round_resources(&f.allocated),
                format!("{:.3}", f.dominant_share),
                f.active_tasks.to_string(),
                f.outstanding_offers.to_string(),
            ]
        })
        .collect();
    render(
        &[
            "ID",
            "NAME",
            "ROLES",
            "STATUS",
            "ALLOCATED",
            "SHARE",
            "TASKS",
            "OFFERS",
        ],
        &rows,
    )
}

/// `proffer agents`.
pub async fn agents(args: ViewArgs) -> anyhow::Result<()> {
    let state = crate::operator::fetch_state(&args.master).await?;
    if args.json {
        crate::output::text(&serde_json::to_string_pretty(&state.agents)?);
    } else {
        crate::output::text(&render_agents(&state.agents));
    }
    Ok(())
}

/// `proffer frameworks`.
pub async fn frameworks(args: ViewArgs) -> anyhow::Result<()> {
    let state = crate::operator::fetch_state(&args.master).await?;
    if args.json {
        crate::output::text(&serde_json::to_string_pretty(&state.frameworks)?);
    } else {
        crate::output::text(&render_frameworks(&state.frameworks));
    }
    Ok(())
}

/// Where a task's files are: its agent's address and its sandbox (relative to the agent's
/// work dir), and whether it has ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskPlace {
    /// `HOST:PORT` of the agent.
    pub agent: String,
    /// `sandboxes/FRAMEWORK/TASK`.
    pub sandbox: String,
    /// The task reached a terminal state.
    pub ended: bool,
}

/// Finds `task_id` (of `framework`, if given) in `state`: live tasks first, then completed
/// ones. An id that several frameworks use is an error naming them.
pub fn locate(
    state: &v1::StateSnapshot,
    task_id: &str,
    framework: Option<&str>,
) -> anyhow::Result<TaskPlace> {
    let of =
        |t: &&v1::TaskSummary| t.id == task_id && framework.is_none_or(|f| t.framework_id == f);
    let mut found: Vec<&v1::TaskSummary> = state.tasks.iter().filter(of).collect();
    let live_count = found.len();
    found.extend(state.completed_tasks.iter().filter(of));
    let mut frameworks: Vec<&str> = found.iter().map(|t| t.framework_id.as_str()).collect();
    frameworks.sort_unstable();
    frameworks.dedup();
    if frameworks.len() > 1 {
        anyhow::bail!(
            "task id `{task_id}` is used by frameworks {}: pass --framework ID",
            frameworks.join(", ")
        );
    }
    let task = *found.first().ok_or_else(|| match framework {
        Some(f) => anyhow::anyhow!("no task `{task_id}` of framework `{f}` is known to the master"),
        None => anyhow::anyhow!("no task `{task_id}` is known to the master"),
    })?;
    let agent = state
        .agents
        .iter()
        .find(|a| a.id == task.agent_id)
        .ok_or_else(|| {
            anyhow::anyhow!(
                "task `{task_id}` ran on agent `{}`, which the master no longer knows",
                task.agent_id
            )
        })?;
    Ok(TaskPlace {
        agent: format!("{}:{}", agent.hostname, agent.port),
        sandbox: sandbox_path(&task.framework_id, &task.id),
        ended: live_count == 0 || task.ended_ms > 0,
    })
}

use proffer_net::url::query_value;

/// Writes `data` to stdout as it is (a closed stdout is not an error, as in `output`).
fn write_raw(data: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(data.as_bytes()).and_then(|()| out.flush());
}

/// Bytes read per request.
const CHUNK: u64 = 64 * 1024;

/// Reads `file` on the agent from `offset`; returns the data (possibly empty).
async fn read_from(agent: &str, file: &str, offset: u64) -> anyhow::Result<String> {
    let path = format!(
        "/files/read?path={}&offset={offset}&length={CHUNK}",
        query_value(file)
    );
    let credential = proffer_proto::auth::process_credential();
    let body = tokio::time::timeout(
        Duration::from_secs(10),
        request_as(agent, "GET", &path, "", credential),
    )
    .await
    .map_err(|_| anyhow::anyhow!("agent {agent} did not answer in time"))?
    .map_err(|e| anyhow::anyhow!("cannot read {file} on agent {agent}: {e}"))?;
    let answer: serde_json::Value = serde_json::from_str(&body)
        .map_err(|e| anyhow::anyhow!("unexpected answer from agent {agent}: {e}"))?;
    Ok(answer
        .get("data")
        .and_then(serde_json::Value::as_str)
        .unwrap_or("")
        .to_string())
}

/// `proffer logs`.
pub async fn logs(args: LogsArgs) -> anyhow::Result<()> {
    let framework = args.framework.as_deref();
    let mut place = locate(
        &crate::operator::fetch_state(&args.master).await?,
        &args.task_id,
        framework,
    )?;
    let file = format!(
        "{}/{}",
        place.sandbox,
        if args.stderr { "stderr" } else { "stdout" }
    );
    let mut offset = 0u64;
    loop {
        let data = read_from(&place.agent, &file, offset).await?;
        if !data.is_empty() {
            if args.json {
                let line = serde_json::json!({ "offset": offset, "data": data });
                crate::output::text(&line.to_string());
            } else {
                write_raw(&data);
            }
            offset += data.len() as u64;
            if data.len() as u64 == CHUNK {
                continue;
            }
        }
        if !args.follow || place.ended {
            return Ok(());
        }
        tokio::time::sleep(args.interval).await;
        // Once the task has ended, one more read takes what it wrote last.
        if let Ok(state) = crate::operator::fetch_state(&args.master).await
            && let Ok(now) = locate(&state, &args.task_id, framework)
        {
            place = now;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> v1::StateSnapshot {
        v1::StateSnapshot {
            agents: vec![v1::AgentSummary {
                id: "a1".into(),
                hostname: "h1".into(),
                port: 5051,
                state: "active".into(),
                total: "cpus:4;mem:1024".into(),
                allocated: "cpus:1".into(),
                active_tasks: 1,
                ..Default::default()
            }],
            frameworks: vec![v1::FrameworkSummary {
                id: "f1".into(),
                name: "web".into(),
                roles: vec!["*".into()],
                connected: true,
                dominant_share: 0.25,
                ..Default::default()
            }],
            tasks: vec![v1::TaskSummary {
                id: "t1".into(),
                framework_id: "f1".into(),
                agent_id: "a1".into(),
                state: "TASK_RUNNING".into(),
                ..Default::default()
            }],
            completed_tasks: vec![v1::TaskSummary {
                id: "t0".into(),
                framework_id: "f1".into(),
                agent_id: "a1".into(),
                state: "TASK_FINISHED".into(),
                ended_ms: 5,
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn tables_name_every_column() {
        let s = state();
        let agents = render_agents(&s.agents);
        assert!(
            agents.contains("ADDRESS") && agents.contains("h1:5051"),
            "{agents}"
        );
        let fws = render_frameworks(&s.frameworks);
        assert!(fws.contains("web") && fws.contains("0.250"), "{fws}");
        assert!(fws.contains("connected"), "{fws}");
    }

    #[test]
    fn tasks_are_located_on_their_agents() -> anyhow::Result<()> {
        let s = state();
        let live = locate(&s, "t1", None)?;
        assert_eq!(live.agent, "h1:5051");
        assert_eq!(live.sandbox, "sandboxes/f1/t1");
        assert!(!live.ended);
        assert!(locate(&s, "t0", None)?.ended);
        let err = locate(&s, "nope", None).err().map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("no task `nope` is known to the master")
        );
        Ok(())
    }

    #[test]
    fn a_task_id_two_frameworks_use_needs_the_framework() -> anyhow::Result<()> {
        let mut s = state();
        let mut other = s.completed_tasks[0].clone();
        other.framework_id = "f2".into();
        s.completed_tasks.push(other);
        let err = locate(&s, "t0", None).err().map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("task id `t0` is used by frameworks f1, f2: pass --framework ID")
        );
        assert_eq!(locate(&s, "t0", Some("f2"))?.sandbox, "sandboxes/f2/t0");
        let err = locate(&s, "t0", Some("f9")).err().map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("no task `t0` of framework `f9` is known to the master")
        );
        Ok(())
    }
}
