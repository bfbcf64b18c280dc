//! Framework subscriptions: subscribe and re-subscribe, disconnection, failover, removal.

use proffer_proto::v1::{self, TaskState, event::Event};

use super::state::{ConnOwner, FrameworkState};
use super::validate;
use super::{ConnId, Master, MasterError, Output, Timestamp};

impl Master {
    pub(crate) fn on_subscribe(
        &mut self,
        now: Timestamp,
        conn: ConnId,
        mut info: v1::FrameworkInfo,
    ) -> Result<(), MasterError> {
        validate::framework_limits(&info)?;
        let roles = validate::framework_info(&info, self.config.max_failover_timeout_secs)?;
        let min_offers = validate::offer_filters(&info, &roles)?;
        if self.conns.contains_key(&conn) {
            return Err(MasterError::InvalidField {
                field: "subscribe".into(),
                reason: format!("connection {conn} is already subscribed"),
            });
        }
        if self.removed_frameworks.contains(&info.id) {
            return Err(MasterError::FrameworkRemoved {
                framework_id: info.id,
            });
        }
        self.check_subscriber(&info, &roles)?;
        let role = roles[0].clone();
        info.roles = roles.clone();
        let stream_id = self.random_hex();
        let new_id = info.id.is_empty();
        let framework_id = if new_id {
            self.counters.frameworks += 1;
            format!("{}-{:04}", self.master_id, self.counters.frameworks)
        } else {
            info.id.clone()
        };
        info.id = framework_id.clone();
        let heartbeat = now.plus_ms(self.config.framework_heartbeat_interval_ms);
        let offer_limit = info.max_outstanding_offers;
        match self.frameworks.get_mut(&framework_id) {
            Some(f) => {
                // Failover: the new subscription replaces the old one.
                let old = f.conn.take();
                f.info = info;
                f.role = role;
                f.conn = Some(conn);
                f.stream_id = stream_id.clone();
                f.disconnected_at = None;
                f.next_heartbeat = heartbeat;
                if let Some(old) = old.filter(|c| *c != conn) {
                    self.conns.remove(&old);
                    self.push(Output::ToFramework {
                        conn: old,
                        event: v1::Event {
                            event: Some(Event::Error(v1::Error {
                                message: "framework failed over to a new subscription".into(),
                            })),
                        },
                    });
                    self.push(Output::CloseFramework { conn: old });
                }
                let offers: Vec<String> = self
                    .frameworks
                    .get(&framework_id)
                    .map(|f| f.offers.iter().cloned().collect())
                    .unwrap_or_default();
                for id in offers {
                    self.remove_offer(&id, None);
                }
                tracing::info!(framework_id = %framework_id, "framework re-subscribed");
            }
            None => {
                tracing::info!(framework_id = %framework_id, name = %info.name, role = %role,
                    "framework subscribed");
                self.frameworks.insert(
                    framework_id.clone(),
                    FrameworkState {
                        info,
                        role,
                        conn: Some(conn),
                        stream_id: stream_id.clone(),
                        disconnected_at: None,
                        tasks: Default::default(),
                        offers: Default::default(),
                        next_heartbeat: heartbeat,
                    },
                );
            }
        }
        // New or failed over: roles, the offer limit and the offer filters may have changed.
        self.allocator.add_framework(&framework_id, &roles, true);
        self.allocator.set_offer_limit(&framework_id, offer_limit);
        self.allocator.set_min_offers(&framework_id, &min_offers);
        self.conns
            .insert(conn, ConnOwner::Framework(framework_id.clone()));
        if new_id {
            self.persist_counters();
        }
        self.persist_framework(&framework_id, now);
        self.send_event(
            &framework_id,
            Event::Subscribed(v1::Subscribed {
                framework_id: framework_id.clone(),
                stream_id,
                heartbeat_interval_seconds: self.config.framework_heartbeat_interval_ms as f64
                    / 1000.0,
                master_id: self.master_id.clone(),
            }),
        );
        self.allocation_pending = true;
        Ok(())
    }

    /// UPDATE_FRAMEWORK: replaces the caller's FrameworkInfo. The offer limit and the minimum
    /// offers apply from the next cycle (offers already out stay out); `user` and `roles` may
    /// not change.
    pub(crate) fn update_framework(
        &mut self,
        fw: &str,
        req: v1::UpdateFrameworkRequest,
    ) -> Result<(), MasterError> {
        let bad = |field: &str, reason: String| MasterError::InvalidField {
            field: field.into(),
            reason,
        };
        let mut info = req
            .framework_info
            .ok_or_else(|| bad("framework_info", "missing".into()))?;
        if info.id != fw {
            return Err(bad(
                "framework_info.id",
                format!("`{}` is not the calling framework `{fw}`", info.id),
            ));
        }
        let Some(current) = self.frameworks.get(fw) else {
            return Err(MasterError::NotSubscribed {
                framework_id: fw.into(),
            });
        };
        if info.roles.is_empty() {
            info.roles = current.info.roles.clone();
        }
        validate::framework_limits(&info)?;
        let roles = validate::framework_info(&info, self.config.max_failover_timeout_secs)?;
        let (mut old, mut new) = (current.info.roles.clone(), roles.clone());
        old.sort();
        new.sort();
        if old != new {
            return Err(bad(
                "framework_info.roles",
                format!(
                    "{new:?} differs from the subscribed roles {old:?}; roles change only by re-subscribing"
                ),
            ));
        }
        // Who registered it never changes.
        info.principal = current.info.principal.clone();
        if info.user != current.info.user {
            return Err(bad(
                "framework_info.user",
                format!(
                    "cannot change from `{}` to `{}`",
                    current.info.user, info.user
                ),
            ));
        }
        let min_offers = validate::offer_filters(&info, &roles)?;
        // A higher limit (or a lower minimum) may let the framework take more at once; a
        // lower one needs no early cycle.
        let limit = |l: Option<u32>| l.filter(|l| *l > 0).unwrap_or(u32::MAX);
        let more = limit(info.max_outstanding_offers) > limit(current.info.max_outstanding_offers)
            || info.offer_filters != current.info.offer_filters;
        self.allocator
            .set_offer_limit(fw, info.max_outstanding_offers);
        self.allocator.set_min_offers(fw, &min_offers);
        tracing::debug!(framework_id = %fw, max_outstanding_offers = ?info.max_outstanding_offers,
            "framework updated");
        if let Some(f) = self.frameworks.get_mut(fw) {
            f.info = info;
        }
        self.persist_framework(fw, Timestamp(0));
        self.allocation_pending |= more;
        Ok(())
    }

    pub(crate) fn on_framework_disconnected(&mut self, now: Timestamp, conn: ConnId) {
        let Some(ConnOwner::Framework(fw)) = self.conns.remove(&conn) else {
            return;
        };
        let Some(f) = self.frameworks.get_mut(&fw) else {
            return;
        };
        if f.conn != Some(conn) {
            return;
        }
        f.conn = None;
        f.disconnected_at = Some(now);
        let offers: Vec<String> = f.offers.iter().cloned().collect();
        let failover_ms = f.failover_ms();
        tracing::warn!(framework_id = %fw, failover_ms, "framework disconnected");
        for id in offers {
            self.remove_offer(&id, None);
        }
        self.allocator.deactivate_framework(&fw);
        if failover_ms == 0 {
            self.remove_framework(now, &fw, "framework disconnected with failover_timeout 0");
        }
    }

    pub(crate) fn tick_frameworks(&mut self, now: Timestamp) {
        let mut expired = Vec::new();
        let mut beats = Vec::new();
        for (id, f) in &mut self.frameworks {
            match (f.conn, f.disconnected_at) {
                (Some(conn), _) if now >= f.next_heartbeat => {
                    f.next_heartbeat = now.plus_ms(self.config.framework_heartbeat_interval_ms);
                    beats.push(conn);
                }
                (None, Some(at)) if now.since(at) >= f.failover_ms() => expired.push(id.clone()),
                _ => {}
            }
        }
        for conn in beats {
            self.push(Output::ToFramework {
                conn,
                event: v1::Event {
                    event: Some(Event::Heartbeat(v1::Heartbeat {})),
                },
            });
        }
        for id in expired {
            self.remove_framework(now, &id, "failover timeout expired");
        }
    }

    /// Removes a framework for good: its tasks are killed, offers dropped, stream closed.
    pub(crate) fn remove_framework(&mut self, now: Timestamp, framework_id: &str, why: &str) {
        let Some(f) = self.frameworks.get(framework_id).cloned() else {
            return;
        };
        tracing::info!(framework_id = %framework_id, why, "removing framework");
        // Written first: the kills and updates below wait for it.
        self.persist_framework_removed(framework_id, now);
        for id in &f.offers {
            self.remove_offer(id, None);
        }
        let mut agents = std::collections::BTreeSet::new();
        for (task_id, t) in &f.tasks {
            if !t.state.is_terminal() {
                agents.insert(t.agent_id.clone());
            }
            let status = super::tasks::master_status(
                task_id,
                &t.agent_id,
                TaskState::TaskKilled,
                "REASON_FRAMEWORK_REMOVED",
                why,
                now,
            );
            self.apply_status(framework_id, &status);
            self.retire_task(framework_id, task_id);
        }
        for agent_id in agents {
            self.send_agent(
                &agent_id,
                v1::master_message::Msg::ShutdownFramework(v1::ShutdownFramework {
                    framework_id: framework_id.to_string(),
                }),
            );
        }
        if let Some(conn) = f.conn {
            self.conns.remove(&conn);
            self.push(Output::CloseFramework { conn });
        }
        self.frameworks.shift_remove(framework_id);
        self.allocator.remove_framework(framework_id);
        self.removed_frameworks.insert(framework_id.to_string());
        self.counters.frameworks_removed += 1;
        self.allocation_pending = true;
    }

    /// Checks a call's header: the framework must be subscribed on that stream.
    pub(crate) fn authenticate(
        &self,
        header: Option<&v1::CallHeader>,
    ) -> Result<String, MasterError> {
        let h = header.ok_or_else(|| MasterError::InvalidField {
            field: "header".into(),
            reason: "missing (framework_id and stream_id are required)".into(),
        })?;
        let not_subscribed = || MasterError::NotSubscribed {
            framework_id: h.framework_id.clone(),
        };
        let f = self
            .frameworks
            .get(&h.framework_id)
            .ok_or_else(not_subscribed)?;
        if f.conn.is_none() {
            return Err(not_subscribed());
        }
        if f.stream_id != h.stream_id {
            return Err(MasterError::WrongStream {
                framework_id: h.framework_id.clone(),
                stream_id: h.stream_id.clone(),
            });
        }
        Ok(h.framework_id.clone())
    }
}
