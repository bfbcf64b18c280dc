//! Mesos's operator call parts → Proffer's operator requests, and maintenance in Mesos's
//! machine terms (pure). Proffer keys maintenance by agent; Mesos by machine (hostname or IP):
//! a machine is every agent registered with that hostname.

use std::collections::BTreeMap;

use proffer_proto::mesos::v1 as m;
use proffer_proto::resources::to_milli;
use proffer_proto::{Resources, v1};
use serde_json::Value;

use super::api::ApiError;
use super::to_mesos::window_start;

/// `/metrics/snapshot`'s map as Mesos `Metric`s.
pub fn metrics(map: &Value) -> Vec<m::Metric> {
    map.as_object()
        .map(|o| {
            o.iter()
                .map(|(name, v)| m::Metric {
                    name: name.clone(),
                    value: v.as_f64(),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Agents by hostname and hostnames by agent.
#[derive(Debug, Default)]
pub struct Hosts {
    agents: BTreeMap<String, Vec<String>>,
    hostname: BTreeMap<String, String>,
}

impl Hosts {
    /// From the snapshot's agents.
    pub fn of(state: &v1::StateSnapshot) -> Hosts {
        let mut h = Hosts::default();
        for a in &state.agents {
            h.agents
                .entry(a.hostname.clone())
                .or_default()
                .push(a.id.clone());
            h.hostname.insert(a.id.clone(), a.hostname.clone());
        }
        h
    }

    /// The agents on `machines` (by hostname, else by IP given as the hostname); a machine
    /// with no agent is an error naming it.
    pub fn agents_of(&self, machines: &[m::MachineId]) -> Result<Vec<String>, ApiError> {
        let mut out = Vec::new();
        for machine in machines {
            let name = machine
                .hostname
                .as_deref()
                .or(machine.ip.as_deref())
                .unwrap_or("");
            match self.agents.get(name) {
                Some(ids) => out.extend(ids.iter().cloned()),
                None => {
                    return Err(ApiError::BadRequest(format!(
                        "no agent is registered on machine '{name}'"
                    )));
                }
            }
        }
        Ok(out)
    }

    fn machine(&self, agent_id: &str) -> m::MachineId {
        m::MachineId {
            hostname: Some(
                self.hostname
                    .get(agent_id)
                    .cloned()
                    .unwrap_or_else(|| agent_id.to_string()),
            ),
            ip: None,
        }
    }
}

/// Proffer's maintenance windows as Mesos's schedule (absolute times from `now_ms`).
pub fn schedule(
    windows: &[v1::MaintenanceWindow],
    hosts: &Hosts,
    now_ms: u64,
) -> m::maintenance::Schedule {
    m::maintenance::Schedule {
        windows: windows
            .iter()
            .map(|w| {
                let u = w.unavailability.unwrap_or_default();
                m::maintenance::Window {
                    machine_ids: vec![hosts.machine(&w.agent_id)],
                    unavailability: m::Unavailability {
                        start: window_start(now_ms, u.starts_in_ms),
                        duration: Some(m::DurationInfo {
                            nanoseconds: i64::try_from(u.duration_ms)
                                .unwrap_or(i64::MAX / 1_000_000)
                                .saturating_mul(1_000_000),
                        }),
                    },
                }
            })
            .collect(),
    }
}

/// Machines in maintenance: started windows are down, the others draining.
pub fn cluster_status(
    windows: &[v1::MaintenanceWindow],
    hosts: &Hosts,
) -> m::maintenance::ClusterStatus {
    let mut status = m::maintenance::ClusterStatus::default();
    for w in windows {
        if w.started {
            status.down_machines.push(hosts.machine(&w.agent_id));
        } else {
            status
                .draining_machines
                .push(m::maintenance::cluster_status::DrainingMachine {
                    id: hosts.machine(&w.agent_id),
                    statuses: Vec::new(),
                });
        }
    }
    status
}

/// A Mesos schedule as (agent, seconds from now, seconds long) per agent; a window without a
/// duration lasts 100 years (Mesos: until further notice).
pub fn windows(
    schedule: &m::maintenance::Schedule,
    hosts: &Hosts,
    now_ms: u64,
) -> Result<Vec<(String, f64, f64)>, ApiError> {
    let now_ns = i128::from(now_ms) * 1_000_000;
    let mut out = Vec::new();
    for w in &schedule.windows {
        let starts_in = (i128::from(w.unavailability.start.nanoseconds) - now_ns).max(0);
        let duration = match &w.unavailability.duration {
            Some(d) if d.nanoseconds < 0 => {
                return Err(ApiError::BadRequest(format!(
                    "invalid unavailability.duration: {} ns is negative",
                    d.nanoseconds
                )));
            }
            Some(d) => d.nanoseconds as f64 / 1e9,
            None => (crate::core::Master::MAX_MAINTENANCE_MS / 1000) as f64,
        };
        for agent in hosts.agents_of(&w.machine_ids)? {
            out.push((agent, starts_in as f64 / 1e9, duration));
        }
    }
    Ok(out)
}

fn scalar_bag(
    role: &str,
    what: &str,
    map: &std::collections::HashMap<String, m::value::Scalar>,
) -> Result<Resources, ApiError> {
    let mut bag = Resources::new();
    let mut names: Vec<&String> = map.keys().collect();
    names.sort();
    for name in names {
        let value = map.get(name).map_or(0.0, |s| s.value);
        let milli = to_milli(name, value).map_err(|e| {
            ApiError::BadRequest(format!("invalid {what}.{name} of role '{role}': {e}"))
        })?;
        bag.add(&Resources::scalar(name, milli));
    }
    Ok(bag)
}

/// A `QuotaConfig` as (role, guarantees, limits); no guarantees and no limits remove the
/// role's quota.
pub fn quota(
    config: &m::quota::QuotaConfig,
) -> Result<(String, Resources, Option<Resources>), ApiError> {
    let role = config.role.clone();
    let guarantees = scalar_bag(&role, "guarantees", &config.guarantees)?;
    let limits = scalar_bag(&role, "limits", &config.limits)?;
    Ok((role, guarantees, (!limits.is_empty()).then_some(limits)))
}

/// Mesos `Resource`s → Proffer's, with the scheduler API's translation (scalars, ranges,
/// sets, reservations with their principal, persistent volumes).
pub fn resources(list: &[m::Resource]) -> Result<Resources, ApiError> {
    let protos = list
        .iter()
        .enumerate()
        .map(|(i, r)| {
            crate::server::mesos_api::to_proffer::resource(r.clone(), &format!("resources[{i}]"))
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| match e {
            crate::server::mesos_api::to_proffer::TranslateError::Unsupported(what) => {
                ApiError::NotImplemented(format!("{what} is not supported by Proffer"))
            }
            other => ApiError::BadRequest(other.to_string()),
        })?;
    Resources::from_proto(&protos)
        .map_err(|e| ApiError::BadRequest(format!("invalid resources: {e}")))
}
