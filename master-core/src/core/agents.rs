//! Agent sessions: registration, re-registration, pings, removal and status updates.

use std::collections::BTreeSet;

use proffer_proto::Resources;
use proffer_proto::v1::{self, TaskState, master_message::Msg};

use super::state::{AgentState, ConnOwner, FrameworkState, TaskRecord};
use super::tasks::master_status;
use super::validate;
use super::{ConnId, Master, MasterError, Output, Timestamp};

impl Master {
    pub(crate) fn on_agent_message(
        &mut self,
        now: Timestamp,
        conn: ConnId,
        msg: v1::AgentMessage,
    ) -> Result<(), MasterError> {
        use v1::agent_message::Msg as In;
        let result = match msg.msg {
            Some(In::Register(r)) => {
                self.on_register(now, conn, r.info.map(|i| *i).unwrap_or_default(), None)
            }
            Some(In::Reregister(r)) => self.on_register(
                now,
                conn,
                r.info.map(|i| *i).unwrap_or_default(),
                Some(r.tasks),
            ),
            Some(In::StatusUpdate(u)) => self.on_status_update(now, conn, u),
            Some(In::StatusUpdates(b)) => self.on_status_updates(now, conn, b.updates),
            Some(In::Pong(_)) => {
                if self.liveness.heard_on(conn, now) {
                    Ok(())
                } else {
                    Err(MasterError::NotRegistered { conn })
                }
            }
            None => Err(MasterError::InvalidField {
                field: "agent_message.msg".into(),
                reason: "empty message".into(),
            }),
        };
        if let Err(e) = &result {
            let fatal = matches!(
                e,
                MasterError::AgentIdConflict { .. } | MasterError::NotOwner { .. }
            );
            self.send_conn(
                conn,
                Msg::Error(v1::AgentError {
                    message: e.to_string(),
                    fatal,
                }),
            );
            if fatal {
                self.push(Output::CloseAgent { conn });
            }
        }
        result
    }

    fn agent_of(&self, conn: ConnId) -> Result<String, MasterError> {
        match self.conns.get(&conn) {
            Some(ConnOwner::Agent(id)) => Ok(id.clone()),
            _ => Err(MasterError::NotRegistered { conn }),
        }
    }

    fn touch_agent(&mut self, agent_id: &str, now: Timestamp) {
        if let Some(a) = self.agents.get(agent_id) {
            self.liveness.heard_from(a.live_slot, now);
        }
    }

    /// Register (`tasks` = None) or re-register (`tasks` = Some) an agent on `conn`.
    fn on_register(
        &mut self,
        now: Timestamp,
        conn: ConnId,
        mut info: v1::AgentInfo,
        tasks: Option<Vec<v1::RunningTask>>,
    ) -> Result<(), MasterError> {
        if let Some(ConnOwner::Agent(id)) = self.conns.get(&conn) {
            return Err(MasterError::InvalidField {
                field: "register".into(),
                reason: format!("this session is already registered as agent `{id}`"),
            });
        }
        validate::agent_info(&info)?;
        let total =
            Resources::from_proto(&info.resources).map_err(|source| MasterError::Resources {
                field: "agent_info.resources".into(),
                source,
            })?;
        let reregister = tasks.is_some();
        let tasks = tasks.unwrap_or_default();
        if !self.admit(now, conn, &mut info, reregister)? {
            return Ok(());
        }
        let agent_id = info.id.clone();
        // What the master knew of an agent away before it came back: after a master restart
        // (recovering), or after its ping timeout (unreachable).
        let recovered = if reregister {
            self.recovering.swap_remove(&agent_id)
        } else {
            None
        };
        // An unreachable agent that comes back.
        let returning = if reregister {
            self.unreachable.swap_remove(&agent_id)
        } else {
            None
        };
        let stored = recovered
            .as_ref()
            .map(|r| (&r.total, r.record.draining))
            .or(returning.as_ref().map(|r| (&r.total, r.record.draining)));
        let known_total = match (self.agents.get(&agent_id), stored) {
            (Some(k), _) if reregister => Some(&k.total),
            (None, Some((t, _))) => Some(t),
            _ => None,
        };
        let (total, missed_destroys) = registered_total(total, known_total);
        // Offers on an agent that re-registers are rescinded: its resources are recounted below.
        self.rescind_offers_on(&agent_id);
        // Replace a stale session of the same agent.
        if let Some(old) = self.agents.get(&agent_id).and_then(|a| a.conn)
            && old != conn
        {
            self.conns.remove(&old);
            self.push(Output::CloseAgent { conn: old });
        }
        let known: BTreeSet<(String, String)> = self
            .agents
            .get(&agent_id)
            .map(|a| a.tasks.clone())
            .unwrap_or_default();
        let reported: BTreeSet<(String, String)> = tasks
            .iter()
            .filter_map(|t| {
                t.task
                    .as_ref()
                    .map(|ti| (t.framework_id.clone(), ti.task_id.clone()))
            })
            .collect();
        let live_slot = self.liveness.register(
            self.agents.get(&agent_id).map(|a| a.live_slot),
            &agent_id,
            conn,
            now,
            self.config.agent_ping_interval_ms,
            self.agent_timeout_ms(),
        );
        let state = AgentState {
            info: info.clone(),
            total: total.clone(),
            conn: Some(conn),
            live_slot,
            tasks: known.clone(),
        };
        self.agents.insert(agent_id.clone(), state);
        self.conns.insert(conn, ConnOwner::Agent(agent_id.clone()));
        // Tasks the master knew but the agent no longer runs are lost (e.g. the agent restarted).
        for (fw, task_id) in known.difference(&reported) {
            self.end_task(
                now,
                fw,
                task_id,
                TaskState::TaskLost,
                "REASON_TASK_UNKNOWN",
                "task was not reported by the agent on re-registration",
            );
        }
        let mut kills = self.take_reported_tasks(now, &agent_id, tasks, returning.is_some());
        kills.extend(self.tasks_beyond_total(now, &agent_id));
        // Tasks killed on an earlier return that the agent no longer reports are over; the
        // ones killed now are remembered (and persisted with the agent below).
        self.killed_on_return.retain(|(fw, task), a| {
            *a != agent_id || reported.contains(&(fw.clone(), task.clone()))
        });
        for k in &kills {
            self.killed_on_return.insert(
                (k.framework_id.clone(), k.task_id.clone()),
                agent_id.clone(),
            );
        }
        // The allocator learns the agent with what its live tasks use.
        let used: Vec<(String, Resources)> = self.agents[&agent_id]
            .tasks
            .iter()
            .filter_map(|(fw, tid)| {
                self.frameworks
                    .get(fw)?
                    .tasks
                    .get(tid)
                    .map(|t| (fw.clone(), t.resources.clone()))
            })
            .collect();
        // A drain outlives the session: the allocator keeps it, and the agent is told again
        // (or told it is not drained) once it is registered, below.
        let draining = self.allocator.is_draining(&agent_id) || stored.is_some_and(|(_, d)| d);
        self.allocator.add_agent(&agent_id, total.clone(), &used);
        self.allocator.set_draining(&agent_id, draining);
        self.allocation_pending = true;
        if !reregister {
            self.persist_counters();
        }
        self.persist_agent(&agent_id);
        tracing::info!(agent_id = %agent_id, host = %info.hostname, resources = %total,
            reregister, "agent registered");
        self.send_registration(conn, &agent_id, draining, &total, missed_destroys, kills);
        Ok(())
    }

    /// Admits a (re-)registration: a new agent gets an id (replacing an agent gone from the same
    /// address); a re-registering one must not be removed (it is told to shut down: `false`)
    /// nor claim the id of another live agent.
    fn admit(
        &mut self,
        now: Timestamp,
        conn: ConnId,
        info: &mut v1::AgentInfo,
        reregister: bool,
    ) -> Result<bool, MasterError> {
        if reregister {
            validate::id("agent_info.id", &info.id)?;
            self.check_agent_owner(info)?;
            if self.removed_agents.contains(&info.id) {
                // Mesos: a removed agent must shut down its tasks and come back as a new agent.
                tracing::warn!(agent_id = %info.id, "removed agent tried to re-register; shutting it down");
                self.send_conn(
                    conn,
                    Msg::Shutdown(v1::ShutdownAgent {
                        reason: format!(
                            "agent `{}` was removed by the master; register afresh",
                            info.id
                        ),
                    }),
                );
                return Ok(false);
            }
            if let Some(existing) = self.agents.get(&info.id) {
                let claimant = format!("{}:{}", info.hostname, info.port);
                if existing.conn.is_some_and(|c| c != conn) && existing.address() != claimant {
                    return Err(MasterError::AgentIdConflict {
                        agent_id: info.id.clone(),
                        owner: existing.address(),
                        claimant,
                    });
                }
            }
        } else {
            self.counters.agents += 1;
            info.id = format!("{}-S{}", self.master_id, self.counters.agents);
            self.replaced_at_address(now, info);
        }
        Ok(true)
    }

    /// Takes in the tasks a (re-)registering agent reports; returns the ones to kill.
    /// Tasks the master did not know (e.g. after a master restart) are adopted if they fit in
    /// what the agent's other live tasks leave of its total (else killed); on an agent
    /// that was unreachable, tasks of partition-aware frameworks run again and the others'
    /// (their frameworks were told LOST) are killed; a task killed on an earlier return is
    /// never adopted, and killed again if it still runs.
    fn take_reported_tasks(
        &mut self,
        now: Timestamp,
        agent_id: &str,
        tasks: Vec<v1::RunningTask>,
        returning: bool,
    ) -> Vec<Kill> {
        let mut kills = Vec::new();
        // What the agent's live tasks leave of its total: a reported task beyond it is killed,
        // not adopted (the master would otherwise hold more than the agent has).
        let mut free = self
            .agents
            .get(agent_id)
            .map(|a| {
                let mut free = a.total.clone();
                for (fw, tid) in &a.tasks {
                    if let Some(t) = self.frameworks.get(fw).and_then(|f| f.tasks.get(tid)) {
                        free.subtract(&t.resources);
                    }
                }
                free
            })
            .unwrap_or_default();
        for t in tasks {
            let Some(info) = &t.task else { continue };
            let kill = Kill {
                framework_id: t.framework_id.clone(),
                task_id: info.task_id.clone(),
                grace_ms: info.kill_grace_period_ms,
            };
            let state = TaskState::try_from(t.state).unwrap_or(TaskState::TaskRunning);
            let key = (kill.framework_id.clone(), kill.task_id.clone());
            if self.killed_on_return.contains_key(&key) {
                if !state.is_terminal() {
                    kills.push(kill);
                }
                continue;
            }
            if returning && self.frameworks.contains_key(&t.framework_id) {
                if !self.is_partition_aware(&t.framework_id) {
                    kills.push(kill);
                    continue;
                }
                if self.task_returns(now, agent_id, &t.framework_id, &info.task_id, state) {
                    continue;
                }
            }
            if !self.adopt_task(now, agent_id, t, &mut free) {
                kills.push(kill);
            }
        }
        if returning {
            self.unreported_unreachable_tasks(now, agent_id);
        }
        kills
    }

    /// Tells a registered agent its id, whether it is drained, its total (to checkpoint),
    /// the volumes it missed the destruction of, and the tasks to kill.
    fn send_registration(
        &mut self,
        conn: ConnId,
        agent_id: &str,
        draining: bool,
        total: &Resources,
        missed_destroys: Vec<String>,
        kills: Vec<Kill>,
    ) {
        self.send_conn(
            conn,
            Msg::Registered(v1::AgentRegistered {
                agent_id: agent_id.to_string(),
                master_id: self.master_id.clone(),
                ping_interval_ms: self.config.agent_ping_interval_ms,
                takes_update_batches: true,
            }),
        );
        let drain_state = if draining {
            Msg::Drain(v1::DrainAgent {
                reason: "the agent is drained (re-sent on registration)".into(),
            })
        } else {
            Msg::Reactivate(v1::ReactivateAgent {})
        };
        self.send_conn(conn, drain_state);
        self.send_conn(
            conn,
            Msg::CheckpointResources(v1::CheckpointResources {
                total: total.to_proto(),
            }),
        );
        if !missed_destroys.is_empty() {
            tracing::info!(agent_id = %agent_id, volumes = ?missed_destroys,
                "destroying volumes the agent missed while it was away");
            self.send_conn(
                conn,
                Msg::DestroyVolumes(v1::DestroyVolumes {
                    volume_ids: missed_destroys,
                }),
            );
        }
        for k in kills {
            tracing::info!(agent_id = %agent_id, framework_id = %k.framework_id, task_id = %k.task_id,
                "killing a task its framework was told was lost (the agent came back)");
            self.send_conn(
                conn,
                Msg::KillTask(v1::KillTask {
                    framework_id: k.framework_id,
                    task_id: k.task_id,
                    kill_grace_period_ms: k.grace_ms,
                }),
            );
        }
    }

    /// Acknowledges `status` on the agent's session on behalf of framework `fw`.
    fn ack_for_framework(&mut self, conn: ConnId, fw: &str, status: &v1::TaskStatus) {
        self.send_conn(
            conn,
            Msg::Ack(v1::StatusUpdateAck {
                framework_id: fw.to_string(),
                task_id: status.task_id.clone(),
                uuid: status.uuid.clone(),
            }),
        );
    }

    /// (framework, task) of every task on `agent_id` whose state passes `keep`.
    pub(crate) fn tasks_on(
        &self,
        agent_id: &str,
        keep: impl Fn(TaskState) -> bool,
    ) -> Vec<(String, String)> {
        self.frameworks
            .iter()
            .flat_map(|(fw, f)| {
                f.tasks
                    .iter()
                    .filter(|(_, t)| t.agent_id == agent_id && keep(t.state))
                    .map(move |(id, _)| (fw.clone(), id.clone()))
            })
            .collect()
    }

    /// Tasks that waited as unreachable on `agent_id`, which came back without them: lost.
    fn unreported_unreachable_tasks(&mut self, now: Timestamp, agent_id: &str) {
        let missing = self.tasks_on(agent_id, |s| s == TaskState::TaskUnreachable);
        for (fw, task_id) in missing {
            self.end_task(
                now,
                &fw,
                &task_id,
                TaskState::TaskLost,
                "REASON_TASK_UNKNOWN",
                "the agent came back without the task",
            );
        }
    }

    /// Ends (LOST) the live tasks of a (re-)registered agent that its total cannot hold — it
    /// came back with fewer resources than its tasks use — and returns them to kill, so the
    /// master never holds more than an agent has.
    fn tasks_beyond_total(&mut self, now: Timestamp, agent_id: &str) -> Vec<Kill> {
        let Some(a) = self.agents.get(agent_id) else {
            return Vec::new();
        };
        let mut free = a.total.clone();
        let mut beyond = Vec::new();
        for (fw, tid) in &a.tasks {
            let Some(t) = self.frameworks.get(fw).and_then(|f| f.tasks.get(tid)) else {
                continue;
            };
            if free.contains(&t.resources) {
                free.subtract(&t.resources);
            } else {
                beyond.push(Kill {
                    framework_id: fw.clone(),
                    task_id: tid.clone(),
                    grace_ms: t.kill_grace_period_ms,
                });
            }
        }
        for k in &beyond {
            tracing::warn!(agent_id = %agent_id, framework_id = %k.framework_id,
                task_id = %k.task_id, "agent's resources no longer hold its task; killing it");
            self.end_task(
                now,
                &k.framework_id,
                &k.task_id,
                TaskState::TaskLost,
                "REASON_AGENT_REREGISTERED",
                "the agent registered with resources that no longer hold this task",
            );
        }
        beyond
    }

    /// Takes in a task an agent reports that the master does not know yet; false when it
    /// must be killed instead (it does not fit in `free`, what the agent has left).
    fn adopt_task(
        &mut self,
        now: Timestamp,
        agent_id: &str,
        t: v1::RunningTask,
        free: &mut Resources,
    ) -> bool {
        let Some(info) = t.task else { return true };
        let state = TaskState::try_from(t.state).unwrap_or(TaskState::TaskRunning);
        if validate::id("task_id", &info.task_id).is_err() {
            return true;
        }
        // A task that ended but whose end the framework has not acknowledged is kept as ended
        // (its resources are free), so reconciliation answers with its real end, not LOST.
        let ended = state.is_terminal();
        let fw = t.framework_id.clone();
        if self
            .frameworks
            .get(&fw)
            .is_some_and(|f| f.tasks.contains_key(&info.task_id))
        {
            return true;
        }
        // With a registry, every framework that ever subscribed is known: a task of any other
        // was never launched by this cluster's master, and is killed.
        let never_launched = self.persistence.enabled && !self.frameworks.contains_key(&fw);
        if never_launched {
            tracing::warn!(agent_id = %agent_id, framework_id = %fw, task_id = %info.task_id,
                "agent reports a task of a framework this master never knew; killing its tasks");
        }
        if never_launched
            || self.removed_frameworks.contains(&fw)
            || validate::id("framework_id", &fw).is_err()
        {
            self.send_agent(
                agent_id,
                Msg::ShutdownFramework(v1::ShutdownFramework { framework_id: fw }),
            );
            return true;
        }
        let Ok(resources) = Resources::from_proto(&info.resources) else {
            return true;
        };
        if !ended {
            if !free.contains(&resources) {
                tracing::warn!(agent_id = %agent_id, framework_id = %fw, task_id = %info.task_id,
                    resources = %resources, free = %free,
                    "agent reports a task beyond its resources; killing it");
                return false;
            }
            free.subtract(&resources);
        }
        if !self.frameworks.contains_key(&fw) {
            // A framework we have not seen since (our) restart: keep its tasks for it, and wait for
            // it to re-subscribe within the agent re-registration timeout (Mesos: 10 min).
            let info = v1::FrameworkInfo {
                id: fw.clone(),
                failover_timeout: 600.0,
                roles: vec!["*".into()],
                ..Default::default()
            };
            self.frameworks.insert(
                fw.clone(),
                FrameworkState::disconnected(info, "*".into(), now),
            );
            self.allocator.add_framework(&fw, &["*".to_string()], false);
        }
        let status = master_status(
            &info.task_id,
            agent_id,
            state,
            "REASON_RECONCILIATION",
            "reported by the agent on re-registration",
            now,
        );
        let task_id = info.task_id.clone();
        let user = self.frameworks.get(&fw).map_or_else(String::new, |f| {
            super::authz::task_user(&info, &f.info.user).to_string()
        });
        if let Some(f) = self.frameworks.get_mut(&fw) {
            f.tasks.insert(
                task_id.clone(),
                Box::new(TaskRecord {
                    name: info.name,
                    kill_grace_period_ms: info.kill_grace_period_ms,
                    agent_id: agent_id.to_string(),
                    resources,
                    state,
                    latest_state: None,
                    status,
                    resources_recovered: ended,
                    // Not known after a master failover (the agent reports no start time).
                    started_ms: 0,
                    user,
                    container: info.container.map(Box::new),
                }),
            );
        }
        if !ended && let Some(a) = self.agents.get_mut(agent_id) {
            a.tasks.insert((fw, task_id));
        }
        true
    }

    /// The updates of one agent message, each handled as if it came alone; the first refused
    /// one is reported (named by its index), the others are not held back.
    fn on_status_updates(
        &mut self,
        now: Timestamp,
        conn: ConnId,
        updates: Vec<v1::StatusUpdate>,
    ) -> Result<(), MasterError> {
        let mut first_refused = None;
        for (index, u) in updates.into_iter().enumerate() {
            let task_id = u
                .status
                .as_ref()
                .map(|s| s.task_id.clone())
                .unwrap_or_default();
            if let Err(e) = self.on_status_update(now, conn, u) {
                first_refused.get_or_insert(MasterError::InBatch {
                    list: "status_updates.updates",
                    index,
                    task_id,
                    source: Box::new(e),
                });
            }
        }
        first_refused.map_or(Ok(()), Err)
    }

    fn on_status_update(
        &mut self,
        now: Timestamp,
        conn: ConnId,
        update: v1::StatusUpdate,
    ) -> Result<(), MasterError> {
        let agent_id = self.agent_of(conn)?;
        self.touch_agent(&agent_id, now);
        let mut status = update.status.ok_or_else(|| MasterError::InvalidField {
            field: "status_update.status".into(),
            reason: "missing".into(),
        })?;
        if status.task_id.is_empty() {
            return Err(MasterError::InvalidField {
                field: "status_update.status.task_id".into(),
                reason: "empty".into(),
            });
        }
        let state = TaskState::try_from(status.state).unwrap_or(TaskState::Unspecified);
        if state == TaskState::Unspecified {
            return Err(MasterError::InvalidField {
                field: "status_update.status.state".into(),
                reason: format!("unknown task state {}", status.state),
            });
        }
        let latest = update
            .latest_state
            .map(|l| match TaskState::try_from(l) {
                Ok(s) if s != TaskState::Unspecified => Ok(s),
                _ => Err(MasterError::InvalidField {
                    field: "status_update.latest_state".into(),
                    reason: format!("unknown task state {l}"),
                }),
            })
            .transpose()?;
        status.agent_id = agent_id.clone();
        let fw = update.framework_id;
        // (The key is built only when some task waits here: the usual update allocates none.)
        if !self.killed_on_return.is_empty()
            && self
                .killed_on_return
                .contains_key(&(fw.clone(), status.task_id.clone()))
        {
            // Its framework was told the task was lost: acknowledge here, forward nothing.
            if !status.uuid.is_empty() {
                self.ack_for_framework(conn, &fw, &status);
            }
            // Kept (duplicates and retries of the end may still come) until the agent stops
            // reporting the task when it registers.
            return Ok(());
        }
        if !self.frameworks.contains_key(&fw) {
            if self.removed_frameworks.contains(&fw) && !status.uuid.is_empty() {
                // Nobody will acknowledge: do it on the framework's behalf, and stop its tasks.
                self.ack_for_framework(conn, &fw, &status);
                self.send_conn(
                    conn,
                    Msg::ShutdownFramework(v1::ShutdownFramework { framework_id: fw }),
                );
            }
            return Ok(());
        }
        let known = self.apply_status(&fw, &status);
        if let Some(latest) = latest {
            self.apply_latest_state(&fw, &status.task_id, latest);
        }
        tracing::debug!(framework_id = %fw, agent_id = %agent_id, task_id = %status.task_id,
            state = state.name(), latest = latest.map(TaskState::name), known, "status update");
        self.send_event(
            &fw,
            v1::event::Event::Update(v1::Update {
                status: Some(status),
            }),
        );
        Ok(())
    }

    pub(crate) fn on_agent_disconnected(&mut self, now: Timestamp, conn: ConnId) {
        let Some(ConnOwner::Agent(agent_id)) = self.conns.remove(&conn) else {
            return;
        };
        let Some(agent) = self.agents.get_mut(&agent_id) else {
            return;
        };
        if agent.conn != Some(conn) {
            return;
        }
        agent.conn = None;
        self.liveness.disconnected(conn);
        tracing::warn!(agent_id = %agent_id, "agent disconnected");
        let _ = now;
        self.allocator.deactivate_agent(&agent_id);
        self.rescind_offers_on(&agent_id);
    }

    /// Drains an agent (maintenance): no new offers on it, its outstanding offers are
    /// rescinded, and the agent kills its tasks with their grace periods.
    pub fn drain_agent(&mut self, agent_id: &str, reason: &str) -> Result<(), MasterError> {
        if !self.agents.contains_key(agent_id) {
            return Err(MasterError::UnknownAgent {
                agent_id: agent_id.to_string(),
            });
        }
        tracing::info!(agent_id = %agent_id, reason, "draining agent");
        self.allocator.set_draining(agent_id, true);
        self.persist_agent(agent_id);
        self.rescind_offers_on(agent_id);
        self.send_agent(
            agent_id,
            Msg::Drain(v1::DrainAgent {
                reason: reason.to_string(),
            }),
        );
        Ok(())
    }

    /// Ends a drain: the agent's resources are offered again (its tasks are not restarted).
    pub fn reactivate_agent(&mut self, agent_id: &str) -> Result<(), MasterError> {
        if !self.agents.contains_key(agent_id) {
            return Err(MasterError::UnknownAgent {
                agent_id: agent_id.to_string(),
            });
        }
        tracing::info!(agent_id = %agent_id, "reactivating agent");
        self.allocator.set_draining(agent_id, false);
        self.persist_agent(agent_id);
        self.allocation_pending = true;
        self.send_agent(agent_id, Msg::Reactivate(v1::ReactivateAgent {}));
        Ok(())
    }

    pub(crate) fn rescind_offers_on(&mut self, agent_id: &str) {
        let offers: Vec<String> = self
            .offers
            .iter()
            .filter(|(_, o)| o.agent_id == agent_id)
            .map(|(id, _)| id.clone())
            .collect();
        for id in offers {
            self.rescind_offer(&id, None);
        }
    }

    /// Time without a message after which an agent is removed.
    fn agent_timeout_ms(&self) -> u64 {
        self.config
            .agent_ping_interval_ms
            .saturating_mul(u64::from(self.config.agent_max_missed_pings.max(1)))
    }

    /// Pings the agents whose ping is due and removes those not heard from for longer than the
    /// timeout (only due agents are visited: see `liveness`).
    pub(crate) fn tick_agents(&mut self, now: Timestamp) {
        let mut due = std::mem::take(&mut self.due_scratch);
        let timeout_ms = self.agent_timeout_ms();
        self.liveness.due_into(
            now,
            self.config.agent_ping_interval_ms,
            timeout_ms,
            &mut due,
        );
        for &(conn, seq) in &due.pings {
            self.send_conn(conn, Msg::Ping(v1::Ping { seq }));
        }
        for id in &due.dead {
            self.mark_unreachable(now, id, "agent stopped answering pings");
        }
        self.due_scratch = due;
    }
}

/// A task to kill on an agent that registers.
struct Kill {
    framework_id: String,
    task_id: String,
    grace_ms: u64,
}

/// An agent's total when it registers, and the volumes to destroy on it. The master's view of
/// the operations (RESERVE, CREATE, …), when it has one, wins over what the agent checkpointed
/// (the master persists before it tells the agent, so it is never older): it is re-applied to
/// the agent's configured resources, and a volume the agent still has that the master
/// destroyed meanwhile is destroyed on the agent.
fn registered_total(reported: Resources, known: Option<&Resources>) -> (Resources, Vec<String>) {
    let total = match known {
        Some(k) => reported.without_operations().with_operations_of(k),
        None => return (reported, Vec::new()),
    };
    let kept = total.volume_ids();
    let missed = reported
        .volume_ids()
        .into_iter()
        .filter(|id| !kept.contains(id))
        .collect();
    (total, missed)
}
