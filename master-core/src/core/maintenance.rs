//! Maintenance windows (Mesos maintenance primitives): frameworks using an agent get inverse
//! offers before its window, answer ACCEPT or DECLINE, and the agent is drained for the window.

use std::collections::BTreeMap;

use proffer_proto::v1::{self, event::Event};

use super::{Master, MasterError, Timestamp};

/// A scheduled window on one agent.
#[derive(Debug, Clone)]
pub(crate) struct Window {
    pub start: Timestamp,
    pub end: Timestamp,
    pub started: bool,
    /// framework → Some(accepted) once it answered.
    pub answers: BTreeMap<String, bool>,
    /// Outstanding inverse offers: id → framework.
    pub outstanding: BTreeMap<String, String>,
}

impl Master {
    /// Latest start and longest duration of a maintenance window, in ms: 100 years. Beyond
    /// that a value is a typo (or `1e300`), and timestamps would saturate into a window that
    /// never starts or lasts 0 s.
    pub const MAX_MAINTENANCE_MS: u64 = 100 * 365 * 86_400 * 1000;

    /// Schedules maintenance on `agent_id` starting `starts_in_ms` from `now` for `duration_ms`
    /// (each at most [`Master::MAX_MAINTENANCE_MS`]).
    pub fn schedule_maintenance(
        &mut self,
        now: Timestamp,
        agent_id: &str,
        starts_in_ms: u64,
        duration_ms: u64,
    ) -> Result<(), MasterError> {
        if !self.agents.contains_key(agent_id) {
            return Err(MasterError::UnknownAgent {
                agent_id: agent_id.to_string(),
            });
        }
        if duration_ms == 0 {
            return Err(MasterError::InvalidField {
                field: "duration".into(),
                reason: "a maintenance window must last more than 0 s".into(),
            });
        }
        for (field, ms) in [("starts_in", starts_in_ms), ("duration", duration_ms)] {
            if ms > Self::MAX_MAINTENANCE_MS {
                return Err(MasterError::InvalidField {
                    field: field.into(),
                    reason: format!(
                        "{ms} ms is more than the maximum {} ms (100 years)",
                        Self::MAX_MAINTENANCE_MS
                    ),
                });
            }
        }
        let start = now.plus_ms(starts_in_ms);
        tracing::info!(agent_id = %agent_id, starts_in_ms, duration_ms, "maintenance scheduled");
        self.maintenance.insert(
            agent_id.to_string(),
            Window {
                start,
                end: start.plus_ms(duration_ms),
                started: false,
                answers: BTreeMap::new(),
                outstanding: BTreeMap::new(),
            },
        );
        self.persist_maintenance(agent_id);
        self.send_inverse_offers(now);
        Ok(())
    }

    /// The window of an agent as protocol data, relative to `now`.
    pub(crate) fn unavailability(
        &self,
        agent_id: &str,
        now: Timestamp,
    ) -> Option<v1::Unavailability> {
        self.maintenance.get(agent_id).map(|w| v1::Unavailability {
            starts_in_ms: w.start.since(now),
            duration_ms: w.end.since(w.start.max(now)),
        })
    }

    /// Sends an inverse offer to every framework with live tasks on an agent in a window that
    /// has neither answered nor got one outstanding.
    pub(crate) fn send_inverse_offers(&mut self, now: Timestamp) {
        let mut to_send: Vec<(String, v1::InverseOffer)> = Vec::new();
        let agents: Vec<String> = self.maintenance.keys().cloned().collect();
        for agent_id in agents {
            let users: Vec<String> = self
                .agents
                .get(&agent_id)
                .map(|a| {
                    a.tasks
                        .iter()
                        .map(|(fw, _)| fw.clone())
                        .collect::<std::collections::BTreeSet<_>>()
                })
                .unwrap_or_default()
                .into_iter()
                .collect();
            let unavailability = self.unavailability(&agent_id, now);
            for fw in users {
                let Some(w) = self.maintenance.get(&agent_id) else {
                    continue;
                };
                if w.started
                    || w.answers.contains_key(&fw)
                    || w.outstanding.values().any(|f| *f == fw)
                {
                    continue;
                }
                self.counters.offers += 1;
                let id = format!("{}-I{}", self.master_id, self.counters.offers);
                if let Some(w) = self.maintenance.get_mut(&agent_id) {
                    w.outstanding.insert(id.clone(), fw.clone());
                }
                to_send.push((
                    fw.clone(),
                    v1::InverseOffer {
                        id,
                        framework_id: fw,
                        agent_id: agent_id.clone(),
                        unavailability,
                    },
                ));
            }
        }
        let mut per_fw: BTreeMap<String, Vec<v1::InverseOffer>> = BTreeMap::new();
        for (fw, io) in to_send {
            per_fw.entry(fw).or_default().push(io);
        }
        for (fw, inverse_offers) in per_fw {
            self.send_event(
                &fw,
                Event::InverseOffers(v1::InverseOffers { inverse_offers }),
            );
        }
    }

    /// ACCEPT (`accept` true) or DECLINE inverse offers.
    pub(crate) fn answer_inverse_offers(
        &mut self,
        fw: &str,
        ids: &[String],
        accept: bool,
    ) -> Result<(), MasterError> {
        if ids.is_empty() {
            return Err(MasterError::InvalidField {
                field: "inverse_offer_ids".into(),
                reason: "at least one inverse offer is required".into(),
            });
        }
        for id in ids {
            let known = self
                .maintenance
                .values()
                .any(|w| w.outstanding.get(id).is_some_and(|f| f == fw));
            if !known {
                return Err(MasterError::UnknownOffer {
                    offer_id: id.clone(),
                });
            }
        }
        for w in self.maintenance.values_mut() {
            for id in ids {
                if let Some(f) = w.outstanding.remove(id) {
                    w.answers.insert(f, accept);
                }
            }
        }
        Ok(())
    }

    /// Starts and ends windows that are due.
    pub(crate) fn tick_maintenance(&mut self, now: Timestamp) {
        let due: Vec<(String, bool)> = self
            .maintenance
            .iter()
            .filter_map(|(a, w)| {
                if now >= w.end {
                    Some((a.clone(), false))
                } else if now >= w.start && !w.started {
                    Some((a.clone(), true))
                } else {
                    None
                }
            })
            .collect();
        for (agent_id, start) in due {
            if start {
                if let Some(w) = self.maintenance.get_mut(&agent_id) {
                    w.started = true;
                    w.outstanding.clear();
                }
                let _ = self.drain_agent(&agent_id, "maintenance window started");
            } else {
                self.maintenance.remove(&agent_id);
                self.persist_maintenance(&agent_id);
                let _ = self.reactivate_agent(&agent_id);
                tracing::info!(agent_id = %agent_id, "maintenance window ended");
            }
        }
    }

    /// The maintenance schedule for operators.
    pub fn maintenance_schedule(&self, now: Timestamp) -> Vec<v1::MaintenanceWindow> {
        self.maintenance
            .iter()
            .map(|(agent_id, w)| {
                let mut frameworks: Vec<v1::InverseOfferStatus> = w
                    .answers
                    .iter()
                    .map(|(f, ok)| v1::InverseOfferStatus {
                        framework_id: f.clone(),
                        status: if *ok { "ACCEPTED" } else { "DECLINED" }.into(),
                    })
                    .collect();
                frameworks.extend(w.outstanding.values().map(|f| v1::InverseOfferStatus {
                    framework_id: f.clone(),
                    status: "OUTSTANDING".into(),
                }));
                v1::MaintenanceWindow {
                    agent_id: agent_id.clone(),
                    unavailability: self.unavailability(agent_id, now),
                    started: w.started,
                    frameworks,
                }
            })
            .collect()
    }
}
