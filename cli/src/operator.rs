//! `proffer state` and `proffer tasks`: fetch the master's state over gRPC and print it; and
//! [`call`], how every operator command reaches the leading master of `--master h1,h2,…`.

use proffer_proto::leader::MasterList;
use proffer_proto::v1;
use proffer_sdk::operator::{Operator, OperatorError};

use crate::table::{render, round_resources};

/// Makes one `Operator` call on the leading master of `masters`: a standby's hint is followed,
/// an unreachable master skipped (see [`proffer_sdk::operator::call`]). `f` may run once per
/// master tried.
pub async fn call<T, F>(masters: &MasterList, f: F) -> Result<T, OperatorError>
where
    F: AsyncFnMut(&mut Operator) -> Result<tonic::Response<T>, tonic::Status>,
{
    let mut masters = masters.clone();
    proffer_sdk::operator::call(&mut masters, f).await
}

/// A failed [`call`] for people: `{what} refused by the master: …` when the leader said no,
/// the connection trouble otherwise.
pub fn refused(what: &str, err: OperatorError) -> anyhow::Error {
    match err {
        OperatorError::Status(status) => {
            anyhow::anyhow!("{what} refused by the master: {}", status.message())
        }
        unreachable @ OperatorError::Unreachable { .. } => anyhow::Error::new(unreachable),
    }
}

/// Fetches the state snapshot from the leading master.
pub async fn fetch_state(masters: &MasterList) -> anyhow::Result<v1::StateSnapshot> {
    call(masters, async |c| c.get_state(v1::GetStateRequest {}).await)
        .await
        .map_err(|e| refused("GetState", e))
}

/// `proffer state`: prints the snapshot as tables or JSON.
pub async fn state(master: &MasterList, json: bool) -> anyhow::Result<()> {
    let state = fetch_state(master).await?;
    if json {
        crate::output::text(&serde_json::to_string_pretty(&state)?);
    } else {
        crate::output::text(&render_state(&state));
    }
    Ok(())
}

/// `proffer tasks`: prints active tasks (and with `all` the completed ones) as a table or JSON.
pub async fn tasks(master: &MasterList, json: bool, all: bool) -> anyhow::Result<()> {
    let state = fetch_state(master).await?;
    let mut tasks = state.tasks;
    if all {
        tasks.extend(state.completed_tasks);
    }
    if json {
        crate::output::text(&serde_json::to_string_pretty(&tasks)?);
    } else {
        crate::output::text(&render_tasks(&tasks, state.now_ms));
    }
    Ok(())
}

/// Human-readable view of the master's state: a summary line, agents and frameworks.
pub fn render_state(s: &v1::StateSnapshot) -> String {
    let mut out = format!(
        "master {}  up {:.1}s  allocation cycles {}\ntotal: {}\nallocated: {}\n{}\
         {} agents, {} frameworks, {} active tasks, {} completed, {} outstanding offers\n\n",
        s.master_id,
        s.uptime_ms as f64 / 1000.0,
        s.allocation_cycles,
        or_dash(&round_resources(&s.total)),
        or_dash(&round_resources(&s.allocated)),
        registry_line(s),
        s.agents.len(),
        s.frameworks.len(),
        s.tasks.len(),
        s.completed_tasks.len(),
        s.offers.len(),
    );
    let agents: Vec<Vec<String>> = s
        .agents
        .iter()
        .map(|a| {
            vec![
                a.id.clone(),
                format!("{}:{}", a.hostname, a.port),
                or_dash(&round_resources(&a.total)),
                or_dash(&round_resources(&a.allocated)),
                or_dash(&a.state),
                yes_no(a.draining),
                a.active_tasks.to_string(),
            ]
        })
        .collect();
    out.push_str("AGENTS\n");
    out.push_str(&render(
        &[
            "ID",
            "ADDRESS",
            "TOTAL",
            "ALLOCATED",
            "STATE",
            "DRAINING",
            "TASKS",
        ],
        &agents,
    ));
    let frameworks: Vec<Vec<String>> = s
        .frameworks
        .iter()
        .map(|f| {
            vec![
                f.id.clone(),
                f.name.clone(),
                f.roles.join(","),
                yes_no(f.connected),
                f.active_tasks.to_string(),
                format!("{:.3}", f.dominant_share),
            ]
        })
        .collect();
    out.push_str("\nFRAMEWORKS\n");
    out.push_str(&render(
        &[
            "ID",
            "NAME",
            "ROLES",
            "CONNECTED",
            "TASKS",
            "DOMINANT SHARE",
        ],
        &frameworks,
    ));
    out
}

/// Table of tasks.
pub fn render_tasks(tasks: &[v1::TaskSummary], now_ms: u64) -> String {
    let rows: Vec<Vec<String>> = tasks
        .iter()
        .map(|t| {
            vec![
                t.id.clone(),
                t.framework_id.clone(),
                t.agent_id.clone(),
                t.state.clone(),
                or_dash(&round_resources(&t.resources)),
                clock(t.started_ms),
                ran(t.started_ms, t.ended_ms, now_ms),
                or_dash(&t.sandbox),
            ]
        })
        .collect();
    render(
        &[
            "ID",
            "FRAMEWORK",
            "AGENT",
            "STATE",
            "RESOURCES",
            "STARTED(UTC)",
            "RAN",
            "SANDBOX",
        ],
        &rows,
    )
}

/// `HH:MM:SS` (UTC) of a Unix time in ms; `-` for 0.
fn clock(ms: u64) -> String {
    if ms == 0 {
        return "-".into();
    }
    let s = (ms / 1000) % 86_400;
    format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

/// How long a task ran: until it ended, or until `now_ms` while it runs; `-` if it never ran.
fn ran(started_ms: u64, ended_ms: u64, now_ms: u64) -> String {
    if started_ms == 0 {
        return "-".into();
    }
    let end = if ended_ms > 0 { ended_ms } else { now_ms };
    let ms = end.saturating_sub(started_ms);
    let secs = ms / 1000;
    if secs < 60 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else if secs < 3600 {
        format!("{}m{:02}s", secs / 60, secs % 60)
    } else {
        format!("{}h{:02}m", secs / 3600, secs / 60 % 60)
    }
}

fn or_dash(s: &str) -> String {
    if s.is_empty() {
        "-".to_owned()
    } else {
        s.to_owned()
    }
}

fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.to_owned()
}

/// The registry line of `proffer state` (empty when the master persists nothing).
fn registry_line(s: &v1::StateSnapshot) -> String {
    let Some(r) = &s.registry else {
        return "registry: none (nothing survives a restart)\n".to_string();
    };
    let mut line = format!(
        "registry: {} {} (started from it {} times)",
        r.backend, r.location, r.recoveries
    );
    if !r.error.is_empty() {
        line.push_str(&format!("  WRITES FAIL: {}", r.error));
    }
    if s.gone_agents > 0 {
        line.push_str(&format!("  {} agents gone", s.gone_agents));
    }
    line.push('\n');
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot() -> v1::StateSnapshot {
        v1::StateSnapshot {
            master_id: "m1".into(),
            now_ms: 1_765_000_000_000,
            uptime_ms: 2500,
            registry: Some(v1::RegistrySummary {
                backend: "redb".into(),
                location: "/var/lib/proffer/registry.redb".into(),
                recoveries: 2,
                ..Default::default()
            }),
            allocation_cycles: 3,
            total: "cpus:4;mem:2048".into(),
            allocated: "cpus:1".into(),
            agents: vec![v1::AgentSummary {
                id: "a-1".into(),
                hostname: "h1".into(),
                port: 5051,
                total: "cpus:4;mem:2048".into(),
                allocated: "cpus:1".into(),
                connected: true,
                active_tasks: 2,
                state: "active".into(),
                ..Default::default()
            }],
            frameworks: vec![v1::FrameworkSummary {
                id: "f-1".into(),
                name: "batch".into(),
                roles: vec!["*".into()],
                connected: false,
                active_tasks: 2,
                dominant_share: 0.25,
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn state_tables() {
        let text = render_state(&snapshot());
        let want = "master m1  up 2.5s  allocation cycles 3\n\
                    total: cpus:4;mem:2048\n\
                    allocated: cpus:1\n\
                    registry: redb /var/lib/proffer/registry.redb (started from it 2 times)\n\
                    1 agents, 1 frameworks, 0 active tasks, 0 completed, 0 outstanding offers\n\
                    \n\
                    AGENTS\n\
                    ID   ADDRESS  TOTAL            ALLOCATED  STATE   DRAINING  TASKS\n\
                    a-1  h1:5051  cpus:4;mem:2048  cpus:1     active  no        2\n\
                    \n\
                    FRAMEWORKS\n\
                    ID   NAME   ROLES  CONNECTED  TASKS  DOMINANT SHARE\n\
                    f-1  batch  *      no         2      0.250\n";
        assert_eq!(text, want);
    }

    #[test]
    fn task_table() {
        let tasks = vec![v1::TaskSummary {
            id: "batch-0001".into(),
            framework_id: "f-1".into(),
            agent_id: "a-1".into(),
            state: "TASK_RUNNING".into(),
            resources: String::new(),
            ..Default::default()
        }];
        let want = "ID          FRAMEWORK  AGENT  STATE         RESOURCES  STARTED(UTC)  RAN  SANDBOX\n\
                    batch-0001  f-1        a-1    TASK_RUNNING  -          -             -    -\n";
        assert_eq!(render_tasks(&tasks, 0), want);
        // 2026-12-06 10:00:05 UTC, ran 65.5 s, then ended.
        let t0 = 1_796_551_205_000;
        let done = vec![v1::TaskSummary {
            id: "t".into(),
            state: "TASK_FINISHED".into(),
            resources: "cpus:0.1;mem:11540.5".into(),
            started_ms: t0,
            ended_ms: t0 + 65_500,
            sandbox: "/w/sandboxes/f/t".into(),
            ..Default::default()
        }];
        let text = render_tasks(&done, t0 + 999_999);
        assert!(text.contains("10:00:05"), "{text}");
        assert!(text.contains("1m05s"), "{text}");
        assert!(text.contains("/w/sandboxes/f/t"), "{text}");
        assert!(text.contains("cpus:0.1;mem:11541"), "{text}");
        assert_eq!(ran(t0, 0, t0 + 7_200_000), "2h00m");
    }
}

#[cfg(test)]
mod live_tests {
    use std::time::Duration;

    use proffer_master::server::{ServerConfig, serve};
    use tokio_util::sync::CancellationToken;

    use super::*;

    #[tokio::test]
    async fn fetches_state_from_a_running_master() -> anyhow::Result<()> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let master: MasterList = listener.local_addr()?.to_string().parse()?;
        let cancel = CancellationToken::new();
        let server = tokio::spawn(serve(listener, ServerConfig::default(), cancel.clone()));
        let state = tokio::time::timeout(Duration::from_secs(60), fetch_state(&master)).await??;
        assert!(!state.master_id.is_empty());
        assert!(render_state(&state).starts_with(&format!("master {}", state.master_id)));
        cancel.cancel();
        tokio::time::timeout(Duration::from_secs(60), server).await???;
        Ok(())
    }

    /// Every operator command goes through [`call`]: a standby first in the list (or alone,
    /// naming a leader not in the list) is followed to the leader; the leader's refusal is
    /// reported as its answer.
    #[tokio::test]
    async fn operator_calls_follow_a_standby_to_the_leader() -> anyhow::Result<()> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let leader = listener.local_addr()?.to_string();
        let cancel = CancellationToken::new();
        let server = tokio::spawn(serve(listener, ServerConfig::default(), cancel.clone()));
        let standby = proffer_tests::standby::Standby::start(Some(&leader)).await?;
        let direct = fetch_state(&leader.parse()?).await?;
        for list in [format!("{},{leader}", standby.addr), standby.addr.clone()] {
            let state = tokio::time::timeout(Duration::from_secs(60), fetch_state(&list.parse()?))
                .await??;
            assert_eq!(state.master_id, direct.master_id, "through {list}");
        }
        assert_eq!(standby.calls(), 2);
        let err = call(&standby.addr.parse()?, async |c| {
            c.set_weight(v1::SetWeightRequest {
                role: "web".into(),
                weight: -1.0,
            })
            .await
        })
        .await
        .map_err(|e| refused("weight", e));
        let text = err.err().map(|e| format!("{e:#}")).unwrap_or_default();
        assert!(text.starts_with("weight refused by the master: "), "{text}");
        cancel.cancel();
        tokio::time::timeout(Duration::from_secs(60), server).await???;
        Ok(())
    }

    #[tokio::test]
    async fn unreachable_master_is_a_clear_error() {
        // Port 1 on localhost is not a Proffer master.
        let err = fetch_state(&"127.0.0.1:1".parse().expect("a valid address"))
            .await
            .err()
            .map(|e| format!("{e:#}"));
        let err = err.unwrap_or_default();
        assert!(
            err.contains("cannot connect to the master at http://127.0.0.1:1"),
            "{err}"
        );
    }
}
