//! Update previews (`proffer service plan-update`): the diff of two specs over the running
//! instances (which restart, in which order, which are launched, stopped or move) and the
//! placement check against the cluster's agents, as tables and a golden text.
//!
//! Regenerate the golden file with `UPDATE_GOLDEN=1 cargo test -p proffer-sdk --test
//! service_update_preview`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, Result};
use proffer_proto::Resources;
use proffer_sdk::capacity::AgentCapacity;
use proffer_sdk::service::ServiceSpec;
use proffer_sdk::service::core::config_hash;
use proffer_sdk::service::diff::{InstanceAction, PodChangeKind, diff};
use proffer_sdk::service::preview::UpdatePreview;
use proffer_sdk::service::store::TaskRecord;

fn spec(yaml: &str) -> Result<ServiceSpec> {
    Ok(ServiceSpec::parse(yaml, &BTreeMap::new())?)
}

/// A web pod of `count` instances of `cpus` each, plus `extra` YAML under `pods:`.
fn web(count: u32, cpus: &str, extra: &str) -> Result<ServiceSpec> {
    spec(&format!(
        r#"
name: shop
pods:
  web:
    count: {count}
    placement: [one-per-agent]
    tasks:
      server:
        cmd: "serve --greeting hi"
        cpus: {cpus}
        memory: 64
        ports:
          http: {{port: 0}}
{extra}"#
    ))
}

/// Records of `pod-i` (task `task`) running on agent `a{i}` with `spec`'s configuration.
fn running(spec: &ServiceSpec, pod: &str, task: &str, n: u32) -> BTreeMap<String, TaskRecord> {
    (0..n)
        .map(|i| {
            let name = format!("{pod}-{i}-{task}");
            let rec = TaskRecord {
                name: name.clone(),
                task_id: format!("{name}__1"),
                pod: pod.into(),
                index: i,
                task: task.into(),
                agent_id: format!("a{i}"),
                hostname: format!("host-a{i}"),
                attributes: Vec::new(),
                state: "TASK_RUNNING".into(),
                message: String::new(),
                config: config_hash(spec, pod),
                ready: true,
                launches: 1,
                resources: String::new(),
                ports: Vec::new(),
                reserved: String::new(),
                permanent_failure: false,
            };
            (name, rec)
        })
        .collect()
}

fn agent(i: usize, total: &str, attrs: &[(&str, &str)]) -> AgentCapacity {
    let total = Resources::parse(total).unwrap_or_default();
    AgentCapacity {
        id: format!("a{i}"),
        hostname: format!("host-a{i}"),
        attributes: attrs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        available: total.clone(),
        total,
    }
}

fn agents(n: usize, total: &str) -> Vec<AgentCapacity> {
    (0..n).map(|i| agent(i, total, &[])).collect()
}

const SMALL: &str = "cpus:2;mem:1024;disk:1024;ports:[31000-31009]";

fn golden(name: &str, actual: &str) -> Result<()> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual)?;
    }
    let expected = std::fs::read_to_string(&path)
        .with_context(|| format!("missing golden file {} (UPDATE_GOLDEN=1)", path.display()))?;
    assert_eq!(actual, expected, "golden file {} differs", path.display());
    Ok(())
}

#[test]
fn a_changed_scaled_and_added_service_previews_as_text() -> Result<()> {
    let old = web(3, "0.5", "")?;
    let new = web(
        2,
        "1",
        "  cache:\n    count: 1\n    tasks:\n      redis: {cmd: redis, cpus: 0.5, memory: 128}\n",
    )?;
    let tasks = running(&old, "web", "server", 3);
    let cluster = agents(3, SMALL);
    let p = UpdatePreview::build(&old, &new, &tasks, Ok(&cluster), false);
    assert!(p.placeable());
    assert_eq!(p.refusal(), None);
    golden("update-preview.txt", &p.render())
}

#[test]
fn restarts_follow_the_update_plan_and_stops_come_first() -> Result<()> {
    let old = web(3, "0.5", "")?;
    let new = web(2, "1", "")?;
    let d = diff(&old, &new, &running(&old, "web", "server", 3), false);
    let rows: Vec<(u32, &str, InstanceAction, Option<&str>)> = d
        .instances
        .iter()
        .map(|i| {
            (
                i.order,
                i.instance.as_str(),
                i.action,
                i.hostname.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            (0, "web-2", InstanceAction::Stop, Some("host-a2")),
            (1, "web-0", InstanceAction::Restart, Some("host-a0")),
            (2, "web-1", InstanceAction::Restart, Some("host-a1")),
        ]
    );
    assert_eq!(d.pods[0].kind, PodChangeKind::Changed);
    assert_eq!(
        (
            d.pods[0].fields[0].path.as_str(),
            d.pods[0].fields[0].old.as_deref(),
            d.pods[0].fields[0].new.as_deref()
        ),
        ("tasks.server.cpus", Some("0.5"), Some("1.0"))
    );
    // Where the scheduler starts replacements first (no volumes, no fixed ports), it says so.
    let tasks = running(&old, "web", "server", 3);
    let d = diff(&old, &new, &tasks, true);
    let firsts: Vec<bool> = d.instances.iter().map(|i| i.start_first).collect();
    assert_eq!(firsts, [false, true, true]);
    let p = UpdatePreview::build(&old, &new, &tasks, Ok(&agents(3, SMALL)), true);
    assert!(
        p.render().contains(
            "     1  restart web-0 [server] on any agent that fits; the one on host-a0 stops once it is ready\n"
        ),
        "{}",
        p.render()
    );
    // Scaling alone launches the new instances and restarts nothing.
    let d = diff(
        &old,
        &web(4, "0.5", "")?,
        &running(&old, "web", "server", 3),
        false,
    );
    assert_eq!(d.pods[0].kind, PodChangeKind::Scaled);
    assert_eq!(d.instances.len(), 1);
    assert_eq!(
        (d.instances[0].instance.as_str(), d.instances[0].action),
        ("web-3", InstanceAction::Launch)
    );
    // The same spec changes nothing.
    let d = diff(&old, &old, &running(&old, "web", "server", 3), false);
    assert!(d.is_empty());
    Ok(())
}

#[test]
fn a_parallel_or_dependency_update_plan_restarts_together() -> Result<()> {
    let yaml = |v: &str| {
        format!(
            r#"
name: tiers
pods:
  db: {{count: 2, tasks: {{t: {{cmd: "db {v}", cpus: 0.1, memory: 8}}}}}}
  api: {{count: 2, tasks: {{t: {{cmd: "api {v}", cpus: 0.1, memory: 8}}}}}}
plans:
  update:
    strategy: dependency
    phases:
      dbs: {{pod: db, strategy: serial}}
      apis: {{pod: api, strategy: parallel, depends: [dbs]}}
"#
        )
    };
    let old = spec(&yaml("v1"))?;
    let new = spec(&yaml("v2"))?;
    let mut tasks = running(&old, "db", "t", 2);
    tasks.extend(running(&old, "api", "t", 2));
    let d = diff(&old, &new, &tasks, false);
    let order: Vec<(u32, &str)> = d
        .instances
        .iter()
        .map(|i| (i.order, i.instance.as_str()))
        .collect();
    assert_eq!(
        order,
        [(1, "db-0"), (2, "db-1"), (3, "api-0"), (3, "api-1")]
    );
    assert_eq!(d.plan, "update (dependency: dbs serial, apis parallel)");
    Ok(())
}

#[test]
fn placement_problems_name_the_pod_the_resource_and_the_largest_agent() -> Result<()> {
    let old = web(2, "0.5", "")?;
    let tasks = running(&old, "web", "server", 2);
    let mut cluster = agents(2, SMALL);
    cluster.push(agent(
        2,
        "cpus:3;mem:512;ports:[31000-31009]",
        &[("rack", "r1")],
    ));
    let cases: Vec<(ServiceSpec, &str)> = vec![
        (
            web(2, "4", "")?,
            "pod web cannot be placed: an instance asks cpus:4;mem:64;ports:1 and no agent has enough cpus: the largest agent has cpus:3 (a2 (host-a2)) (3 agents, role *)",
        ),
        (
            web(4, "0.5", "")?,
            "pod web cannot be placed: one-per-agent with count 4 needs 4 agents, 3 can hold an instance",
        ),
        (
            spec(
                "name: shop\npods:\n  web:\n    count: 2\n    placement: [{attribute-equals: {attribute: rack, value: r9}}]\n    tasks:\n      server: {cmd: serve, cpus: 0.5, memory: 64}\n",
            )?,
            "pod web cannot be placed: no agent meets its placement rules (3 agents; e.g. attribute-equals rack=r9: agent host-a0 has no attribute `rack`)",
        ),
        (
            spec(
                "name: shop\npods:\n  web:\n    count: 3\n    placement: [{max-per: {attribute: rack, max: 1}}]\n    tasks:\n      server: {cmd: serve, cpus: 0.5, memory: 64}\n",
            )?,
            "pod web cannot be placed: max-per rack 1 with count 3 needs 3 values of rack, the agents that can hold an instance have 1",
        ),
        (
            spec(
                "name: shop\npods:\n  web:\n    count: 2\n    tasks:\n      server: {cmd: serve, cpus: 0.5, memory: 2048}\n",
            )?,
            "pod web cannot be placed: an instance asks cpus:0.5;mem:2048 and no agent has enough mem: the largest agent has mem:1024 MB (a0 (host-a0)) (3 agents, role *)",
        ),
        (
            spec(
                "name: shop\npods:\n  web:\n    count: 2\n    tasks:\n      server:\n        cmd: serve\n        cpus: 0.5\n        memory: 64\n        ports: {http: {port: 80}}\n",
            )?,
            "pod web cannot be placed: an instance asks cpus:0.5;mem:64;ports:1 and no agent has port 80: port 80 is in no agent's port ranges (3 agents, role *)",
        ),
    ];
    for (new, want) in cases {
        let p = UpdatePreview::build(&old, &new, &tasks, Ok(&cluster), false);
        let fit = p.fit.as_ref().context("no fit report")?;
        assert_eq!(fit.problems(), [want.to_string()], "{}", p.render());
        assert!(!p.placeable());
        let refusal = p.refusal().context("not refused")?;
        assert!(refusal.starts_with("update refused, nothing was changed: pod web"));
    }
    Ok(())
}

#[test]
fn a_restart_its_agent_cannot_hold_moves_and_unknown_agents_refuse_nothing() -> Result<()> {
    let old = web(2, "0.5", "")?;
    let new = web(2, "3", "")?;
    let tasks = running(&old, "web", "server", 2);
    let mut cluster = agents(2, SMALL);
    cluster.push(agent(2, "cpus:4;mem:1024;ports:[31000-31009]", &[]));
    cluster.push(agent(3, "cpus:4;mem:1024;ports:[31000-31009]", &[]));
    let p = UpdatePreview::build(&old, &new, &tasks, Ok(&cluster), false);
    assert!(p.placeable(), "{}", p.render());
    for i in &p.diff.instances {
        let host = i.hostname.as_deref().unwrap_or_default();
        assert_eq!(
            i.moves.as_deref(),
            Some(
                format!(
                    "{host} cannot hold cpus:3;mem:64;ports:1 (it has cpus:2): it moves to another agent once its agent's wait times out"
                )
                .as_str()
            )
        );
    }
    let p = UpdatePreview::build(
        &old,
        &web(2, "64", "")?,
        &tasks,
        Err("no master".into()),
        false,
    );
    assert!(p.placeable());
    assert!(p.render().ends_with("placement not checked: no master\n"));
    Ok(())
}
