//! `GET /metrics`: the master's state and counters in the Prometheus text format
//! (prometheus-client), built from one snapshot per scrape.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use proffer_proto::{Resources, v1};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::http::HttpState;
use crate::core::MasterStats;

type Labels = Vec<(String, String)>;

fn label(k: &str, v: &str) -> Labels {
    vec![(k.to_string(), v.to_string())]
}

/// Renders the registry for one snapshot and set of counters.
pub(crate) fn render(
    snap: &v1::StateSnapshot,
    stats: &MasterStats,
) -> Result<String, std::fmt::Error> {
    let mut reg = Registry::with_prefix("proffer");

    let agents = Family::<Labels, Gauge>::default();
    for a in &snap.agents {
        let state = if a.connected {
            "connected"
        } else {
            "disconnected"
        };
        agents.get_or_create(&label("state", state)).inc();
    }
    reg.register("agents", "Registered agents by connection state", agents);

    let frameworks = Family::<Labels, Gauge>::default();
    for f in &snap.frameworks {
        let state = if f.connected {
            "connected"
        } else {
            "disconnected"
        };
        frameworks.get_or_create(&label("state", state)).inc();
    }
    reg.register("frameworks", "Frameworks by connection state", frameworks);

    let tasks = Family::<Labels, Gauge>::default();
    for t in &snap.tasks {
        tasks.get_or_create(&label("state", &t.state)).inc();
    }
    reg.register("tasks", "Tasks the master tracks, by state", tasks);

    let offers = Gauge::<i64>::default();
    offers.set(snap.offers.len() as i64);
    reg.register(
        "offers_outstanding",
        "Offers made and not yet answered",
        offers,
    );

    let resources = Family::<Labels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
    let total = Resources::parse(&snap.total).unwrap_or_default();
    let allocated = Resources::parse(&snap.allocated).unwrap_or_default();
    for name in ["cpus", "mem", "disk", "gpus"] {
        for (kind, r) in [("total", &total), ("allocated", &allocated)] {
            let labels = vec![
                ("resource".to_string(), name.to_string()),
                ("kind".to_string(), kind.to_string()),
            ];
            resources
                .get_or_create(&labels)
                .set(r.scalar_milli(name) as f64 / 1000.0);
        }
    }
    reg.register(
        "resources",
        "Cluster resources (cpus, mem MB, disk MB, gpus)",
        resources,
    );

    let counter = |v: u64| {
        let c = Counter::<u64>::default();
        c.inc_by(v);
        c
    };
    reg.register(
        "offers_made",
        "Offers made since start",
        counter(stats.offers_made),
    );
    reg.register(
        "tasks_launched",
        "Tasks launched since start",
        counter(stats.tasks_launched),
    );
    let terminal = Family::<Labels, Counter>::default();
    for (state, n) in &stats.tasks_terminal {
        terminal.get_or_create(&label("state", state)).inc_by(*n);
    }
    reg.register(
        "tasks_terminal",
        "Tasks that reached a terminal state, by state",
        terminal,
    );
    reg.register(
        "agents_removed",
        "Agents removed since start",
        counter(stats.agents_removed),
    );
    reg.register(
        "frameworks_removed",
        "Frameworks removed since start",
        counter(stats.frameworks_removed),
    );
    reg.register(
        "allocation_cycles",
        "Allocation cycles run",
        counter(stats.allocation_cycles),
    );

    let mut out = String::new();
    encode(&mut out, &reg)?;
    Ok(out)
}

/// Adds the registry's metrics (write latency, writes, failures, bytes, recoveries) to `text`.
fn render_registry(
    status: &super::registry_writer::RegistryStatus,
    text: &mut String,
) -> Result<(), std::fmt::Error> {
    let mut reg = Registry::with_prefix("proffer_registry");
    reg.register(
        "write_seconds",
        "Time to commit one batch of registry writes",
        status.latency.clone(),
    );
    reg.register("writes", "Batches committed", status.writes.clone());
    reg.register(
        "write_failures",
        "Batch commits that failed (retried)",
        status.failures.clone(),
    );
    reg.register("bytes", "Record bytes written", status.bytes.clone());
    let recoveries = Gauge::<i64>::default();
    recoveries.set(i64::try_from(status.recoveries).unwrap_or(i64::MAX));
    reg.register(
        "recoveries",
        "Times the master has started from this registry",
        recoveries,
    );
    let mut out = String::new();
    encode(&mut out, &reg)?;
    // One exposition: drop the first part's end marker.
    if let Some(stripped) = text.strip_suffix("# EOF\n") {
        *text = stripped.to_string();
    }
    text.push_str(&out);
    Ok(())
}

/// `GET /metrics`.
pub(crate) async fn metrics(
    State(st): State<HttpState>,
    caller: super::security::Caller,
) -> Response {
    if let Err(e) = caller.authorize(
        proffer_master_core::authz::Action::GetEndpoint,
        Some("/metrics"),
    ) {
        return (axum::http::StatusCode::FORBIDDEN, format!("{e}\n")).into_response();
    }
    // From the published snapshot: polling `/metrics` runs nothing on the core task.
    let got = st
        .core
        .published()
        .await
        .map(|p| (p.state.clone(), p.stats.clone()));
    let rendered = got.map(|(snap, stats)| {
        let mut text = render(&snap, &stats)?;
        if let Some(r) = &st.registry {
            render_registry(r, &mut text)?;
        }
        Ok::<_, std::fmt::Error>(text)
    });
    match rendered {
        Ok(result) => match result {
            Ok(text) => (
                [(
                    header::CONTENT_TYPE,
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                )],
                text,
            )
                .into_response(),
            Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
        },
        Err(gone) => (StatusCode::SERVICE_UNAVAILABLE, gone.to_string()).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_state_and_counters() {
        let snap = v1::StateSnapshot {
            agents: vec![v1::AgentSummary {
                connected: true,
                ..Default::default()
            }],
            tasks: vec![v1::TaskSummary {
                state: "TASK_RUNNING".into(),
                ..Default::default()
            }],
            total: "cpus:4;mem:1024".into(),
            allocated: "cpus:1.5;mem:256".into(),
            ..Default::default()
        };
        let stats = MasterStats {
            tasks_launched: 3,
            tasks_terminal: vec![("TASK_FINISHED".into(), 2)],
            ..Default::default()
        };
        let text = render(&snap, &stats).unwrap_or_default();
        for want in [
            "proffer_agents{state=\"connected\"} 1",
            "proffer_tasks{state=\"TASK_RUNNING\"} 1",
            "proffer_tasks_launched_total 3",
            "proffer_tasks_terminal_total{state=\"TASK_FINISHED\"} 2",
            "proffer_resources{resource=\"cpus\",kind=\"allocated\"} 1.5",
            "proffer_resources{resource=\"mem\",kind=\"total\"} 1024.0",
        ] {
            assert!(text.contains(want), "missing `{want}` in:\n{text}");
        }
    }
}
