//! Framework calls: ACCEPT (LAUNCH, RESERVE, UNRESERVE, CREATE, DESTROY), DECLINE, REVIVE, SUPPRESS, KILL,
//! ACKNOWLEDGE (one or a batch), RECONCILE, MESSAGE and TEARDOWN. Each call is validated whole before anything changes.

use std::collections::BTreeSet;

use proffer_proto::Resources;
use proffer_proto::v1::{self, TaskState, event::Event, master_message::Msg, operation::Op};

use super::operations::{Conversion, OpContext};
use super::state::TaskRecord;
use super::tasks::master_status;
use super::validate;
use super::{Call, Master, MasterError, Timestamp};

/// One validated operation of an ACCEPT, applied in order once all passed.
enum Planned {
    /// RESERVE, UNRESERVE, CREATE or DESTROY.
    Convert(Conversion),
    /// A task with its resources.
    Launch(Box<v1::TaskInfo>, Resources),
    /// Tasks launched together (LAUNCH_GROUP): they share a sandbox parent and a lifetime.
    LaunchGroup(Vec<(v1::TaskInfo, Resources)>),
}

/// Default kill grace period (Mesos: 3 s).
const DEFAULT_KILL_GRACE_MS: u64 = 3_000;

/// The most acknowledgements in one ACKNOWLEDGE batch.
pub(crate) const MAX_ACK_BATCH: usize = 4096;

impl Master {
    pub(crate) fn on_call(&mut self, now: Timestamp, call: Call) -> Result<(), MasterError> {
        match call {
            Call::Accept(req) => {
                let fw = self.authenticate(req.header.as_ref())?;
                self.accept(now, &fw, req)
            }
            Call::Decline(req) => {
                let fw = self.authenticate(req.header.as_ref())?;
                let refuse =
                    validate::refuse_ms(req.filters.as_ref(), self.config.default_refuse_ms)?;
                self.check_offers(&fw, &req.offer_ids)?;
                for id in &req.offer_ids {
                    self.remove_offer(id, Some(now.plus_ms(refuse)));
                }
                Ok(())
            }
            Call::Revive(req) => {
                let fw = self.authenticate(req.header.as_ref())?;
                self.allocator.revive(&fw);
                self.allocation_pending = true;
                Ok(())
            }
            Call::Suppress(req) => {
                let fw = self.authenticate(req.header.as_ref())?;
                self.allocator.suppress(&fw);
                Ok(())
            }
            Call::UpdateFramework(req) => {
                let fw = self.authenticate(req.header.as_ref())?;
                self.update_framework(&fw, *req)
            }
            Call::Kill(req) => {
                let fw = self.authenticate(req.header.as_ref())?;
                self.kill(now, &fw, req)
            }
            Call::Acknowledge(req) => {
                let fw = self.authenticate(req.header.as_ref())?;
                let ack = v1::Acknowledgement {
                    agent_id: req.agent_id,
                    task_id: req.task_id,
                    uuid: req.uuid,
                };
                self.check_ack(&ack)?;
                self.apply_ack(&fw, ack);
                Ok(())
            }
            Call::AcknowledgeBatch(req) => {
                let fw = self.authenticate(req.header.as_ref())?;
                self.acknowledge_batch(&fw, req.acknowledgements)
            }
            Call::Reconcile(req) => {
                let fw = self.authenticate(req.header.as_ref())?;
                self.reconcile(now, &fw, req);
                Ok(())
            }
            Call::Message(req) => {
                self.authenticate(req.header.as_ref())?;
                Err(MasterError::Unsupported {
                    what: "MESSAGE (tasks have no executors yet)".into(),
                })
            }
            Call::Teardown(req) => {
                let fw = self.authenticate(req.header.as_ref())?;
                self.remove_framework(now, &fw, "framework requested teardown");
                Ok(())
            }
            Call::AcceptInverseOffers(req) => {
                let fw = self.authenticate(req.header.as_ref())?;
                self.answer_inverse_offers(&fw, &req.inverse_offer_ids, true)
            }
            Call::DeclineInverseOffers(req) => {
                let fw = self.authenticate(req.header.as_ref())?;
                self.answer_inverse_offers(&fw, &req.inverse_offer_ids, false)
            }
        }
    }

    /// All offer ids must exist, belong to `fw` and be distinct.
    fn check_offers(&self, fw: &str, offer_ids: &[String]) -> Result<(), MasterError> {
        let mut seen = BTreeSet::new();
        for id in offer_ids {
            if !seen.insert(id) {
                return Err(MasterError::InvalidField {
                    field: "offer_ids".into(),
                    reason: format!("offer `{id}` is listed twice"),
                });
            }
            match self.offers.get(id) {
                Some(o) if o.framework_id == fw => {}
                _ => {
                    return Err(MasterError::UnknownOffer {
                        offer_id: id.clone(),
                    });
                }
            }
        }
        Ok(())
    }

    fn accept(
        &mut self,
        now: Timestamp,
        fw: &str,
        req: v1::AcceptRequest,
    ) -> Result<(), MasterError> {
        let refuse = validate::refuse_ms(req.filters.as_ref(), self.config.default_refuse_ms)?;
        if req.offer_ids.is_empty() {
            return Err(MasterError::InvalidField {
                field: "offer_ids".into(),
                reason: "at least one offer is required".into(),
            });
        }
        self.check_offers(fw, &req.offer_ids)?;
        let mut agent_id: Option<String> = None;
        let mut available = Resources::new();
        for id in &req.offer_ids {
            let Some(o) = self.offers.get(id) else {
                return Err(MasterError::UnknownOffer {
                    offer_id: id.clone(),
                });
            };
            match &agent_id {
                Some(a) if *a != o.agent_id => {
                    return Err(MasterError::InvalidField {
                        field: "offer_ids".into(),
                        reason: format!(
                            "offers are on different agents (`{a}` and `{}`)",
                            o.agent_id
                        ),
                    });
                }
                _ => agent_id = Some(o.agent_id.clone()),
            }
            available.add(&o.resources);
        }
        let agent_id = agent_id.unwrap_or_default();
        // Validate every operation before changing anything, in order: each one sees what the
        // operations before it left of the offers.
        let roles = self
            .frameworks
            .get(fw)
            .map(|f| f.info.roles.clone())
            .unwrap_or_default();
        let mut planned: Vec<Planned> = Vec::new();
        let mut ids = BTreeSet::new();
        // The request is consumed: tasks move into the plan instead of being copied.
        for (i, op) in req.operations.into_iter().enumerate() {
            let (tasks, group) = match op.op {
                Some(Op::Launch(l)) => (l.tasks, false),
                Some(Op::LaunchGroup(g)) => {
                    if g.tasks.is_empty() {
                        return Err(MasterError::InvalidField {
                            field: format!("operations[{i}].launch_group.tasks"),
                            reason: "a task group needs at least one task".into(),
                        });
                    }
                    (g.tasks, true)
                }
                Some(other) => {
                    self.authorize_operation(fw, &other)?;
                    let ctx = OpContext {
                        roles: &roles,
                        agent_id: &agent_id,
                        index: i,
                    };
                    let c = self.check_conversion(&ctx, &other, &mut available)?;
                    planned.push(Planned::Convert(c));
                    continue;
                }
                None => {
                    return Err(MasterError::InvalidField {
                        field: format!("operations[{i}]"),
                        reason: "empty operation".into(),
                    });
                }
            };
            let mut members = Vec::new();
            for task in tasks {
                let res = self.validate_task(fw, &agent_id, &task, &mut ids)?;
                self.authorize_launch(fw, &task)?;
                self.check_task_volumes(&agent_id, &task.task_id, &res)?;
                available = available.checked_sub(&res).ok_or_else(|| {
                    MasterError::ResourcesNotInOffer {
                        task_id: task.task_id.clone(),
                        needed: res.to_string(),
                        available: available.to_string(),
                    }
                })?;
                if group {
                    members.push((task, res));
                } else {
                    planned.push(Planned::Launch(Box::new(task), res));
                }
            }
            if group {
                planned.push(Planned::LaunchGroup(members));
            }
        }
        // Commit: consume the offers, apply the operations in order, give back what is left.
        for id in &req.offer_ids {
            if let Some(o) = self.offers.swap_remove(id) {
                self.allocator.offer_closed(&o.framework_id);
                if let Some(f) = self.frameworks.get_mut(&o.framework_id) {
                    f.offers.swap_remove(id);
                }
            }
        }
        for step in planned {
            match step {
                Planned::Convert(c) => {
                    self.apply_conversion(fw, &agent_id, &c);
                    let volume_ids = c.destroyed_volumes();
                    if !volume_ids.is_empty() {
                        self.send_agent(
                            &agent_id,
                            Msg::DestroyVolumes(v1::DestroyVolumes { volume_ids }),
                        );
                    }
                }
                Planned::Launch(task, resources) => {
                    let task = self.record_task(now, fw, &agent_id, task, resources);
                    self.send_agent(
                        &agent_id,
                        Msg::RunTask(v1::RunTask {
                            framework_id: fw.to_string(),
                            task: Some(task),
                        }),
                    );
                }
                Planned::LaunchGroup(members) => {
                    let tasks: Vec<v1::TaskInfo> = members
                        .into_iter()
                        .map(|(task, res)| {
                            *self.record_task(now, fw, &agent_id, Box::new(task), res)
                        })
                        .collect();
                    self.send_agent(
                        &agent_id,
                        Msg::RunTaskGroup(v1::RunTaskGroup {
                            framework_id: fw.to_string(),
                            tasks,
                        }),
                    );
                }
            }
        }
        if !available.is_empty() {
            self.allocator
                .recover(fw, &agent_id, &available, Some(now.plus_ms(refuse)));
        }
        Ok(())
    }

    /// Records a new STAGING task on `agent_id` and returns its info with the agent set.
    fn record_task(
        &mut self,
        now: Timestamp,
        fw: &str,
        agent_id: &str,
        mut task: Box<v1::TaskInfo>,
        resources: Resources,
    ) -> Box<v1::TaskInfo> {
        task.agent_id = agent_id.to_string();
        self.counters.tasks_launched += 1;
        let task_id = task.task_id.clone();
        tracing::info!(framework_id = %fw, agent_id = %agent_id, task_id = %task_id,
            resources = %resources, "launching task");
        let status = master_status(&task_id, agent_id, TaskState::TaskStaging, "", "", now);
        let user = self.frameworks.get(fw).map_or_else(String::new, |f| {
            super::authz::task_user(&task, &f.info.user).to_string()
        });
        if let Some(f) = self.frameworks.get_mut(fw) {
            f.tasks.insert(
                task_id.clone(),
                Box::new(TaskRecord {
                    name: task.name.clone(),
                    kill_grace_period_ms: task.kill_grace_period_ms,
                    agent_id: agent_id.to_string(),
                    resources,
                    state: TaskState::TaskStaging,
                    latest_state: None,
                    status,
                    resources_recovered: false,
                    started_ms: 0,
                    user,
                    container: task.container.clone().map(Box::new),
                }),
            );
        }
        if let Some(a) = self.agents.get_mut(agent_id) {
            a.tasks.insert((fw.to_string(), task_id));
        }
        task
    }

    fn validate_task(
        &self,
        fw: &str,
        agent_id: &str,
        task: &v1::TaskInfo,
        ids: &mut BTreeSet<String>,
    ) -> Result<Resources, MasterError> {
        let invalid = |reason: String| MasterError::InvalidTask {
            task_id: task.task_id.clone(),
            reason,
        };
        validate::id("task_id", &task.task_id).map_err(|e| invalid(e.to_string()))?;
        if task.name.len() > 1024 {
            return Err(invalid("name is longer than 1024 bytes".into()));
        }
        validate::labels("labels", task.labels.iter()).map_err(|e| invalid(e.to_string()))?;
        validate::resource_list("resources", &task.resources)
            .map_err(|e| invalid(e.to_string()))?;
        if !ids.insert(task.task_id.clone())
            || self
                .frameworks
                .get(fw)
                .is_some_and(|f| f.tasks.contains_key(&task.task_id))
        {
            return Err(MasterError::DuplicateTaskId {
                framework_id: fw.to_string(),
                task_id: task.task_id.clone(),
            });
        }
        if !task.agent_id.is_empty() && task.agent_id != agent_id {
            return Err(invalid(format!(
                "agent_id `{}` differs from the offers' agent `{agent_id}`",
                task.agent_id
            )));
        }
        match &task.command {
            Some(c) if !c.value.trim().is_empty() => {}
            _ => return Err(invalid("command.value must not be empty".into())),
        }
        let res =
            Resources::from_proto(&task.resources).map_err(|source| MasterError::Resources {
                field: format!("task `{}` resources", task.task_id),
                source,
            })?;
        if res.cpus_milli() <= 0 {
            return Err(invalid("cpus must be greater than 0".into()));
        }
        if res.mem_milli() <= 0 {
            return Err(invalid("mem must be greater than 0".into()));
        }
        Ok(res)
    }

    fn kill(&mut self, now: Timestamp, fw: &str, req: v1::KillRequest) -> Result<(), MasterError> {
        let unknown = || MasterError::UnknownTask {
            framework_id: fw.to_string(),
            task_id: req.task_id.clone(),
        };
        let task = self
            .frameworks
            .get(fw)
            .and_then(|f| f.tasks.get(&req.task_id))
            .ok_or_else(unknown)?;
        if task.state.is_terminal() {
            return Ok(());
        }
        let agent_id = task.agent_id.clone();
        let grace = req
            .kill_grace_period_ms
            .unwrap_or(if task.kill_grace_period_ms > 0 {
                task.kill_grace_period_ms
            } else {
                DEFAULT_KILL_GRACE_MS
            });
        let connected = self.agents.get(&agent_id).is_some_and(|a| a.conn.is_some());
        if connected {
            self.send_agent(
                &agent_id,
                Msg::KillTask(v1::KillTask {
                    framework_id: fw.to_string(),
                    task_id: req.task_id.clone(),
                    kill_grace_period_ms: grace,
                }),
            );
        } else if !self.agents.contains_key(&agent_id) {
            self.end_task(
                now,
                fw,
                &req.task_id,
                TaskState::TaskKilled,
                "REASON_TASK_KILLED",
                "killed while its agent was gone",
            );
        } else {
            // The agent is disconnected: the kill is re-sent when it re-registers? Mesos waits too;
            // tell the framework so it is not left guessing.
            return Err(MasterError::InvalidField {
                field: "task_id".into(),
                reason: format!(
                    "agent `{agent_id}` of task `{}` is disconnected; retry later",
                    req.task_id
                ),
            });
        }
        Ok(())
    }

    /// An acknowledgement names a known agent and carries an update's uuid.
    fn check_ack(&self, ack: &v1::Acknowledgement) -> Result<(), MasterError> {
        if ack.uuid.is_empty() {
            return Err(MasterError::InvalidField {
                field: "uuid".into(),
                reason: "must not be empty (only agent updates carry a uuid to acknowledge)".into(),
            });
        }
        if !self.agents.contains_key(&ack.agent_id) {
            return Err(MasterError::UnknownAgent {
                agent_id: ack.agent_id.clone(),
            });
        }
        Ok(())
    }

    /// Passes a checked acknowledgement to its agent; the acknowledgement of a terminal task's
    /// last update retires the task.
    fn apply_ack(&mut self, fw: &str, ack: v1::Acknowledgement) {
        let v1::Acknowledgement {
            agent_id,
            task_id,
            uuid,
        } = ack;
        let retire = self
            .frameworks
            .get(fw)
            .and_then(|f| f.tasks.get(&task_id))
            .is_some_and(|t| t.state.is_terminal() && t.status.uuid == uuid);
        self.send_agent(
            &agent_id,
            Msg::Ack(v1::StatusUpdateAck {
                framework_id: fw.to_string(),
                task_id: task_id.clone(),
                uuid,
            }),
        );
        if retire {
            self.retire_task(fw, &task_id);
        }
    }

    /// Checks every acknowledgement of a batch, then applies them in order.
    fn acknowledge_batch(
        &mut self,
        fw: &str,
        acks: Vec<v1::Acknowledgement>,
    ) -> Result<(), MasterError> {
        if acks.len() > MAX_ACK_BATCH {
            return Err(MasterError::InvalidField {
                field: "acknowledgements".into(),
                reason: format!("{} entries, at most {MAX_ACK_BATCH}", acks.len()),
            });
        }
        for (index, a) in acks.iter().enumerate() {
            self.check_ack(a).map_err(|e| MasterError::InBatch {
                list: "acknowledgements",
                index,
                task_id: a.task_id.clone(),
                source: Box::new(e),
            })?;
        }
        for a in acks {
            self.apply_ack(fw, a);
        }
        Ok(())
    }

    fn reconcile(&mut self, now: Timestamp, fw: &str, req: v1::ReconcileRequest) {
        let Some(f) = self.frameworks.get(fw) else {
            return;
        };
        // The task's latest status, re-stamped as a reconciliation answer (nothing to acknowledge).
        let known = |t: &super::state::TaskRecord| {
            let mut s = t.status.clone();
            s.reason = "REASON_RECONCILIATION".into();
            s.uuid.clear();
            s
        };
        // A task the master does not know may still run on an agent that has not re-registered
        // since the master recovered: no answer for it until the agent is back or its
        // re-registration timeout passed (as Mesos), so no framework relaunches a live task.
        // Otherwise: TASK_LOST, or for partition-aware frameworks TASK_UNREACHABLE, TASK_GONE
        // or TASK_UNKNOWN as the agent is.
        let statuses: Vec<v1::TaskStatus> = if req.tasks.is_empty() {
            f.tasks.values().map(|t| known(t)).collect()
        } else {
            req.tasks
                .iter()
                .filter_map(|q| match f.tasks.get(&q.task_id) {
                    Some(t) => Some(known(t)),
                    None => self
                        .unknown_task_state(fw, &q.agent_id)
                        .map(|(state, reason)| {
                            master_status(
                                &q.task_id,
                                &q.agent_id,
                                state,
                                reason,
                                "task is unknown to the master",
                                now,
                            )
                        }),
                })
                .collect()
        };
        for s in statuses {
            self.send_event(fw, Event::Update(v1::Update { status: Some(s) }));
        }
    }
}
