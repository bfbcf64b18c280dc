//! Proffer's snapshot summaries → Mesos's v1 operator messages (`mesos.v1.master.Response`
//! and `Event` parts). Pure functions.

use std::collections::HashMap;

use proffer_proto::mesos::v1 as m;
use proffer_proto::mesos::v1::master::response as r;
use proffer_proto::resources::Value as RValue;
use proffer_proto::{Resources, v1};

use super::mesos_json::{MESOS_VERSION, MasterIdent, parse};

fn some_text(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_string())
}

/// Unix ms → Mesos's `TimeInfo` (ns).
fn time(ms: u64) -> Option<m::TimeInfo> {
    (ms > 0).then(|| m::TimeInfo {
        nanoseconds: i64::try_from(ms).unwrap_or(i64::MAX / 1_000_000) * 1_000_000,
    })
}

/// A bag of resources as Mesos's `Resource` list, with the scheduler API's translation
/// (reserved entries carry their role in both the old `role` field and `reservations`, with
/// the principal; persistent volumes as `disk.persistence` and `disk.volume`).
pub fn resources(r: &Resources) -> Vec<m::Resource> {
    r.to_proto()
        .into_iter()
        .map(|p| crate::server::mesos_api::to_mesos::resource(p, None))
        .collect()
}

/// Text form → Mesos's `Resource` list.
pub fn text_resources(text: &str) -> Vec<m::Resource> {
    resources(&parse(text))
}

fn attributes(list: &[v1::Attribute]) -> Vec<m::Attribute> {
    list.iter()
        .map(|a| match a.value.parse::<f64>() {
            Ok(value) if !a.value.is_empty() => m::Attribute {
                name: a.name.clone(),
                r#type: m::value::Type::Scalar as i32,
                scalar: Some(m::value::Scalar { value }),
                ..Default::default()
            },
            _ => m::Attribute {
                name: a.name.clone(),
                r#type: m::value::Type::Text as i32,
                text: Some(m::value::Text {
                    value: a.value.clone(),
                }),
                ..Default::default()
            },
        })
        .collect()
}

/// Offered resources per agent and per framework.
#[derive(Debug, Default)]
pub struct OfferedBy {
    agent: HashMap<String, Resources>,
    framework: HashMap<String, Resources>,
}

impl OfferedBy {
    /// Sums the snapshot's outstanding offers.
    pub fn of(state: &v1::StateSnapshot) -> OfferedBy {
        let mut o = OfferedBy::default();
        for offer in &state.offers {
            let res = parse(&offer.resources);
            o.agent.entry(offer.agent_id.clone()).or_default().add(&res);
            o.framework
                .entry(offer.framework_id.clone())
                .or_default()
                .add(&res);
        }
        o
    }
}

/// One agent (`GET_AGENTS`, `AGENT_ADDED`).
pub fn agent(a: &v1::AgentSummary, offered: &OfferedBy) -> r::get_agents::Agent {
    let offers = offered.agent.get(&a.id).cloned().unwrap_or_default();
    let allocated = parse(&a.allocated);
    let used = allocated.checked_sub(&offers).unwrap_or(allocated);
    r::get_agents::Agent {
        agent_info: m::AgentInfo {
            hostname: a.hostname.clone(),
            port: i32::try_from(a.port).ok(),
            resources: text_resources(&a.total),
            attributes: attributes(&a.attributes),
            id: Some(m::AgentId {
                value: a.id.clone(),
            }),
            ..Default::default()
        },
        active: a.state == "active" || a.state == "draining",
        deactivated: Some(a.draining),
        version: MESOS_VERSION.into(),
        pid: Some(format!("slave(1)@{}:{}", a.hostname, a.port)),
        total_resources: text_resources(&a.total),
        allocated_resources: resources(&used),
        offered_resources: resources(&offers),
        ..Default::default()
    }
}

/// A framework's `FrameworkInfo`.
pub fn framework_info(f: &v1::FrameworkSummary) -> m::FrameworkInfo {
    m::FrameworkInfo {
        user: f.user.clone(),
        name: f.name.clone(),
        id: Some(m::FrameworkId {
            value: f.id.clone(),
        }),
        failover_timeout: Some(f.failover_timeout),
        roles: f.roles.clone(),
        principal: some_text(&f.principal),
        capabilities: vec![m::framework_info::Capability {
            r#type: Some(m::framework_info::capability::Type::MultiRole as i32),
        }],
        ..Default::default()
    }
}

/// One framework (`GET_FRAMEWORKS`, `FRAMEWORK_ADDED/UPDATED`), with its offers.
pub fn framework(
    f: &v1::FrameworkSummary,
    state: &v1::StateSnapshot,
    offered: &OfferedBy,
) -> r::get_frameworks::Framework {
    let offers = offered.framework.get(&f.id).cloned().unwrap_or_default();
    let allocated = parse(&f.allocated);
    let used = allocated.checked_sub(&offers).unwrap_or(allocated);
    r::get_frameworks::Framework {
        framework_info: framework_info(f),
        active: f.connected,
        connected: f.connected,
        recovered: false,
        offers: state
            .offers
            .iter()
            .filter(|o| o.framework_id == f.id)
            .map(offer)
            .collect(),
        allocated_resources: resources(&used),
        offered_resources: resources(&offers),
        ..Default::default()
    }
}

fn offer(o: &v1::OfferSummary) -> m::Offer {
    m::Offer {
        id: m::OfferId {
            value: o.id.clone(),
        },
        framework_id: m::FrameworkId {
            value: o.framework_id.clone(),
        },
        agent_id: m::AgentId {
            value: o.agent_id.clone(),
        },
        resources: text_resources(&o.resources),
        ..Default::default()
    }
}

/// A task state name (`TASK_RUNNING`) as Mesos's enum.
pub fn task_state(name: &str) -> m::TaskState {
    m::TaskState::from_str_name(name).unwrap_or(m::TaskState::TaskUnknown)
}

/// The latest status of a task.
/// The state of the last update forwarded to the task's framework (`status_update_state`;
/// a summary from before that field has only `state`).
pub fn forwarded_state(t: &v1::TaskSummary) -> &str {
    if t.status_update_state.is_empty() {
        &t.state
    } else {
        &t.status_update_state
    }
}

/// The task's last status forwarded to its framework.
pub fn task_status(t: &v1::TaskSummary) -> m::TaskStatus {
    let at = if t.ended_ms > 0 {
        t.ended_ms
    } else {
        t.started_ms
    };
    m::TaskStatus {
        task_id: m::TaskId {
            value: t.id.clone(),
        },
        state: task_state(forwarded_state(t)) as i32,
        message: some_text(&t.message),
        reason: m::task_status::Reason::from_str_name(&t.reason).map(|r| r as i32),
        agent_id: some_text(&t.agent_id).map(|value| m::AgentId { value }),
        timestamp: (at > 0).then(|| at as f64 / 1000.0),
        ..Default::default()
    }
}

/// One task.
pub fn task(t: &v1::TaskSummary) -> m::Task {
    m::Task {
        name: t.name.clone(),
        task_id: m::TaskId {
            value: t.id.clone(),
        },
        framework_id: m::FrameworkId {
            value: t.framework_id.clone(),
        },
        agent_id: m::AgentId {
            value: t.agent_id.clone(),
        },
        state: task_state(&t.state) as i32,
        status_update_state: Some(task_state(forwarded_state(t)) as i32),
        resources: text_resources(&t.resources),
        statuses: vec![task_status(t)],
        user: some_text(&t.user),
        container: (!t.image.is_empty()).then(|| container(&t.image)),
        ..Default::default()
    }
}

/// A task's image as a Mesos `ContainerInfo{type: MESOS, mesos.image}` (a Docker image name,
/// the form the scheduler API takes).
fn container(image: &str) -> m::ContainerInfo {
    m::ContainerInfo {
        r#type: m::container_info::Type::Mesos as i32,
        mesos: Some(m::container_info::MesosInfo {
            image: Some(m::Image {
                r#type: m::image::Type::Docker as i32,
                docker: Some(m::image::Docker {
                    name: image.to_string(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
        }),
        ..Default::default()
    }
}

/// `GET_AGENTS`.
pub fn get_agents(state: &v1::StateSnapshot) -> r::GetAgents {
    let offered = OfferedBy::of(state);
    r::GetAgents {
        agents: state.agents.iter().map(|a| agent(a, &offered)).collect(),
        recovered_agents: Vec::new(),
    }
}

/// `GET_FRAMEWORKS`.
pub fn get_frameworks(state: &v1::StateSnapshot) -> r::GetFrameworks {
    let offered = OfferedBy::of(state);
    r::GetFrameworks {
        frameworks: state
            .frameworks
            .iter()
            .map(|f| framework(f, state, &offered))
            .collect(),
        ..Default::default()
    }
}

/// `GET_TASKS`: live tasks (unreachable ones apart) and completed ones.
pub fn get_tasks(state: &v1::StateSnapshot) -> r::GetTasks {
    let (unreachable, live): (Vec<_>, Vec<_>) = state
        .tasks
        .iter()
        .partition(|t| t.state == "TASK_UNREACHABLE");
    r::GetTasks {
        tasks: live.into_iter().map(task).collect(),
        unreachable_tasks: unreachable.into_iter().map(task).collect(),
        completed_tasks: state.completed_tasks.iter().map(task).collect(),
        ..Default::default()
    }
}

/// `GET_STATE`.
pub fn get_state(state: &v1::StateSnapshot) -> r::GetState {
    r::GetState {
        get_tasks: Some(get_tasks(state)),
        get_executors: Some(r::GetExecutors::default()),
        get_frameworks: Some(get_frameworks(state)),
        get_agents: Some(get_agents(state)),
    }
}

/// `GET_ROLES`.
pub fn get_roles(roles: &[v1::RoleSummary]) -> r::GetRoles {
    r::GetRoles {
        roles: roles
            .iter()
            .map(|role| m::Role {
                name: role.role.clone(),
                weight: role.weight,
                frameworks: role
                    .frameworks
                    .iter()
                    .map(|f| m::FrameworkId { value: f.clone() })
                    .collect(),
                resources: text_resources(&role.allocated),
            })
            .collect(),
    }
}

fn scalars(text: &str) -> HashMap<String, m::value::Scalar> {
    parse(text)
        .iter()
        .filter_map(|(key, value)| match value {
            RValue::Scalar(milli) => Some((key.name.to_string(), *milli)),
            _ => None,
        })
        .fold(HashMap::new(), |mut map, (name, milli)| {
            map.entry(name)
                .or_insert(m::value::Scalar { value: 0.0 })
                .value += milli as f64 / 1000.0;
            map
        })
}

/// `GET_QUOTA`: a config per role with a quota.
#[allow(deprecated)] // QuotaInfo (`infos`) is what clients before Mesos 1.9 read.
pub fn get_quota(roles: &[v1::RoleSummary]) -> r::GetQuota {
    let with_quota = roles
        .iter()
        .filter(|r| !r.guarantees.is_empty() || !r.limits.is_empty());
    r::GetQuota {
        status: m::quota::QuotaStatus {
            infos: with_quota
                .clone()
                .map(|r| m::quota::QuotaInfo {
                    role: Some(r.role.clone()),
                    guarantee: text_resources(&r.guarantees),
                    ..Default::default()
                })
                .collect(),
            configs: with_quota
                .map(|r| m::quota::QuotaConfig {
                    role: r.role.clone(),
                    guarantees: scalars(&r.guarantees),
                    limits: scalars(&r.limits),
                })
                .collect(),
        },
    }
}

/// `GET_WEIGHTS`.
pub fn get_weights(roles: &[v1::RoleSummary]) -> r::GetWeights {
    r::GetWeights {
        weight_infos: roles
            .iter()
            .map(|r| m::WeightInfo {
                weight: r.weight,
                role: Some(r.role.clone()),
            })
            .collect(),
    }
}

/// `GET_VERSION`.
pub fn get_version() -> r::GetVersion {
    r::GetVersion {
        version_info: m::VersionInfo {
            version: MESOS_VERSION.into(),
            git_tag: Some(format!("proffer-{}", env!("CARGO_PKG_VERSION"))),
            ..Default::default()
        },
    }
}

/// `GET_MASTER`.
pub fn get_master(state: &v1::StateSnapshot, who: &MasterIdent) -> r::GetMaster {
    let port = who
        .advertise
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .unwrap_or(0);
    let start = state.now_ms.saturating_sub(state.uptime_ms) as f64 / 1000.0;
    r::GetMaster {
        master_info: Some(m::MasterInfo {
            id: who.id.clone(),
            port,
            pid: Some(who.pid()),
            hostname: Some(who.hostname().to_string()),
            version: Some(MESOS_VERSION.into()),
            ..Default::default()
        }),
        start_time: Some(start),
        elected_time: Some(start),
    }
}

/// A maintenance window's start as Mesos's absolute time (Proffer keeps it relative to now).
pub fn window_start(now_ms: u64, starts_in_ms: u64) -> m::TimeInfo {
    time(now_ms.saturating_add(starts_in_ms)).unwrap_or(m::TimeInfo { nanoseconds: 0 })
}
