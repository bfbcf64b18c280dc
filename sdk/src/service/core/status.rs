//! Status updates, step-state derivation, recovery, decommission and uninstall.

use proffer_proto::v1;

use super::{Action, CoreError, ServiceCore, config_hash, instances, is_terminal};
use crate::service::compile::instance_plan;
use crate::service::plan::{Phase, Plan, Step, StepStatus};
use crate::service::spec::{Goal, StrategyKind};
use crate::service::store::TaskRecord;

/// The pseudo-state of a record whose launch was sent but not yet confirmed by the master.
pub const PREPARED: &str = "PREPARED";

/// What a launch step needs now.
#[derive(Debug, Default)]
pub(super) struct StepNeeds {
    /// Tasks to launch.
    pub launch: Vec<String>,
    /// Old tasks to kill first: `(task_id, agent_id, name)`.
    pub kill: Vec<(String, String, String)>,
}

/// What one task of a launch step needs, given its record, its goal and the pod's current
/// configuration hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskNeed {
    /// Nothing: it runs with the current configuration, or reached its goal.
    Nothing,
    /// Launch it (no record, or it ended and must run again).
    Launch,
    /// Kill it first (it runs with another configuration), then launch it.
    Kill,
}

/// The rule [`ServiceCore`]'s launch steps follow (and update previews predict).
pub fn task_need(rec: Option<&TaskRecord>, goal: Goal, hash: &str) -> TaskNeed {
    let Some(r) = rec else {
        return TaskNeed::Launch;
    };
    let current = r.config == hash;
    let live = !is_terminal(&r.state);
    let done = match goal {
        Goal::Once => r.state == "TASK_FINISHED",
        Goal::Finish => current && r.state == "TASK_FINISHED",
        Goal::Running => false,
    };
    if done || (current && live) {
        TaskNeed::Nothing
    } else if live {
        TaskNeed::Kill
    } else {
        TaskNeed::Launch
    }
}

impl ServiceCore {
    /// Handles a status update; returns nothing (actions go to the outbox).
    pub fn handle_status(&mut self, now: u64, status: &v1::TaskStatus) -> Result<(), CoreError> {
        let state = v1::TaskState::try_from(status.state).unwrap_or(v1::TaskState::Unspecified);
        let Some(name) = self
            .tasks
            .values()
            .find(|r| r.task_id == status.task_id)
            .map(|r| r.name.clone())
        else {
            // Not ours (any more): a live unknown task is killed so it cannot duplicate a pod.
            if !state.is_terminal() && !status.task_id.is_empty() {
                self.kill(now, &status.task_id, &status.agent_id);
            }
            return Ok(());
        };
        let Some(rec) = self.tasks.get_mut(&name) else {
            return Ok(());
        };
        let was_live = !is_terminal(&rec.state);
        let was_ready = rec.ready && rec.state == "TASK_RUNNING";
        rec.state = state.name().to_string();
        rec.message = status.message.clone();
        let has_readiness = self
            .spec
            .pod(&rec.pod)
            .and_then(|p| p.task(&rec.task))
            .is_some_and(|t| t.readiness_check.is_some());
        // Readiness comes from `TaskStatus.ready` when the update carries it; otherwise from the
        // older convention: a RUNNING update with the Mesos reason
        // REASON_TASK_CHECK_STATUS_UPDATED and a message `ready: …`. Once ready, a task stays
        // ready while it runs.
        let ready_update = status.ready.unwrap_or_else(|| {
            status.reason == "REASON_TASK_CHECK_STATUS_UPDATED"
                && status.message.starts_with("ready")
        });
        rec.ready =
            state == v1::TaskState::TaskRunning && (!has_readiness || was_ready || ready_update);
        let rec = rec.clone();
        self.store.put_task(&rec)?;
        self.now = self.now.max(now);
        let instance = format!("{}-{}", rec.pod, rec.index);
        let intended = self.kills.contains_key(&rec.task_id);
        if state.is_terminal() {
            // The first end since the last launch (or the agent's loss) starts the clock.
            self.ended_at.entry(instance.clone()).or_insert(now);
            self.kills.remove(&rec.task_id);
            let failed = !matches!(
                state,
                v1::TaskState::TaskFinished | v1::TaskState::TaskKilled
            );
            if was_live && failed && !intended {
                // Crash loops back off: 0.5 s, 1 s, 2 s … up to 30 s between relaunches.
                let (n, _) = self.backoff.get(&instance).copied().unwrap_or((0, 0));
                let delay = (500u64 << n.min(6)).min(30_000);
                self.backoff.insert(instance.clone(), (n + 1, now + delay));
            }
            if was_live {
                self.on_task_ended(&rec, status);
                self.replacement_ended(now, &rec, failed && !intended);
            }
        } else if rec.ready {
            self.backoff.remove(&instance);
        }
        self.refresh(now);
        self.update_suppression();
        Ok(())
    }

    /// A task ended: a RUNNING-goal task of a completed deploy step gets a recovery step.
    fn on_task_ended(&mut self, rec: &TaskRecord, status: &v1::TaskStatus) {
        if self.uninstalling || self.goal(&rec.pod, &rec.task) != Some(Goal::Running) {
            return;
        }
        if rec.config != config_hash(&self.spec, &rec.pod) {
            return; // an intended kill for an update or restart
        }
        let deployed = self.plans.first().is_some_and(|p| {
            p.steps()
                .any(|(_, s)| s.pod == rec.pod && s.index == rec.index && s.is_complete())
        });
        if !deployed {
            return; // the deploy step relaunches it itself
        }
        let reason = if status.reason.is_empty() {
            String::new()
        } else {
            format!(" ({})", status.reason)
        };
        let step = Step {
            message: format!(
                "{} ended {}{reason}: {}; restarting",
                rec.name, rec.state, status.message
            ),
            ..Step::new(&rec.pod, rec.index, vec![rec.task.clone()])
        };
        self.add_recovery_step(step);
    }

    pub(super) fn add_recovery_step(&mut self, step: Step) {
        let idx = match self.plans.iter().position(|p| p.name == "recovery") {
            Some(i) => i,
            None => {
                self.plans.push(instance_plan("recovery", "recovery", &[]));
                self.plans.len() - 1
            }
        };
        let phase = &mut self.plans[idx].phases[0];
        phase
            .steps
            .retain(|s| s.instance() != step.instance() || !s.is_complete());
        if let Some(existing) = phase
            .steps
            .iter_mut()
            .find(|s| s.instance() == step.instance())
        {
            for t in &step.tasks {
                if !existing.tasks.contains(t) {
                    existing.tasks.push(t.clone());
                }
            }
            existing.name = format!("{}:[{}]", existing.instance(), existing.tasks.join(","));
            existing.message = step.message;
        } else {
            phase.steps.push(step);
        }
    }

    /// What a launch step needs: tasks to launch and stale tasks to kill first.
    pub(super) fn needs(&self, step: &Step) -> StepNeeds {
        let h = config_hash(&self.spec, &step.pod);
        let starts_first = self.starts_first(step);
        let mut out = StepNeeds::default();
        for t in &step.tasks {
            let name = format!("{}-{}-{t}", step.pod, step.index);
            let goal = self.goal(&step.pod, t).unwrap_or(Goal::Running);
            let rec = self.tasks.get(&name);
            match (task_need(rec, goal, &h), rec) {
                // Start-first: the old task runs on until its replacement is ready.
                (TaskNeed::Kill, Some(_)) if starts_first => out.launch.push(t.clone()),
                (TaskNeed::Kill, Some(r)) => {
                    out.kill.push((r.task_id.clone(), r.agent_id.clone(), name))
                }
                (TaskNeed::Launch, _) => out.launch.push(t.clone()),
                _ => {}
            }
        }
        if !starts_first {
            // Old tasks kept running for a replacement that is no longer started first.
            for r in self.live_retired(step) {
                out.kill
                    .push((r.task_id.clone(), r.agent_id.clone(), r.name.clone()));
            }
        }
        out
    }

    /// Derives a launch step's status and message from its task records.
    fn derive_launch(&self, step: &Step) -> (StepStatus, String) {
        let h = config_hash(&self.spec, &step.pod);
        let mut waiting = Vec::new();
        let mut prepared = Vec::new();
        let mut starting = Vec::new();
        let mut running = Vec::new();
        for t in &step.tasks {
            let name = format!("{}-{}-{t}", step.pod, step.index);
            let goal = self.goal(&step.pod, t).unwrap_or(Goal::Running);
            let Some(r) = self.tasks.get(&name) else {
                waiting.push(name);
                continue;
            };
            let current = r.config == h;
            let done = match goal {
                Goal::Once => r.state == "TASK_FINISHED",
                Goal::Finish => current && r.state == "TASK_FINISHED",
                Goal::Running => current && r.state == "TASK_RUNNING" && r.ready,
            };
            if done {
                continue;
            }
            if !current || is_terminal(&r.state) {
                waiting.push(name);
            } else if r.state == PREPARED {
                prepared.push(name);
            } else if r.state == "TASK_RUNNING" {
                let what = if goal == Goal::Running {
                    "its readiness check to pass"
                } else {
                    "it to finish"
                };
                running.push(format!("{name} is TASK_RUNNING, waiting for {what}"));
            } else {
                starting.push(format!("{name} is {}", r.state));
            }
        }
        if !waiting.is_empty() {
            let instance = step.instance();
            if let Some(&(n, until)) = self.backoff.get(&instance)
                && until > self.now
            {
                let ended: Vec<String> = step
                    .tasks
                    .iter()
                    .filter_map(|t| self.tasks.get(&format!("{instance}-{t}")))
                    .filter(|r| is_terminal(&r.state))
                    .map(|r| format!("{} ended {}: {}", r.name, r.state, r.message))
                    .collect();
                return (
                    StepStatus::Pending,
                    format!(
                        "{}; backing off after {n} failure(s), relaunch in {} ms",
                        ended.join("; "),
                        until - self.now
                    ),
                );
            }
            return (StepStatus::Pending, step.message.clone());
        }
        if !prepared.is_empty() {
            return (
                StepStatus::Prepared,
                format!(
                    "launch of {} sent; waiting for the master",
                    prepared.join(", ")
                ),
            );
        }
        if !starting.is_empty() {
            return (
                StepStatus::Starting,
                format!("waiting for TASK_RUNNING: {}", starting.join(", ")),
            );
        }
        if !running.is_empty() {
            return (StepStatus::Started, running.join("; "));
        }
        (StepStatus::Complete, String::new())
    }

    /// Recomputes every step's status from the task records (and runs decommission/uninstall).
    pub(super) fn refresh(&mut self, now: u64) {
        self.now = self.now.max(now);
        let mut plans = std::mem::take(&mut self.plans);
        for (pi, plan) in plans.iter_mut().enumerate() {
            let kind = plan.name.clone();
            for phase in &mut plan.phases {
                for step in &mut phase.steps {
                    if step.forced {
                        step.status = StepStatus::Complete;
                        continue;
                    }
                    if step.status == StepStatus::Error {
                        continue;
                    }
                    match kind.as_str() {
                        "decommission" => self.derive_decommission(now, step),
                        "uninstall" => self.derive_uninstall(now, &phase.name, step),
                        _ => {
                            let (st, msg) = self.derive_launch(step);
                            let latched = pi == 0
                                && step.status == StepStatus::Complete
                                && kind != "recovery"
                                && self.needs(step).kill.is_empty()
                                && step.tasks.iter().all(|t| {
                                    self.tasks
                                        .get(&format!("{}-{}-{t}", step.pod, step.index))
                                        .is_some_and(|r| {
                                            r.config == config_hash(&self.spec, &step.pod)
                                        })
                                });
                            if latched && st != StepStatus::Complete {
                                // Deployed once: failures are the recovery plan's business.
                                continue;
                            }
                            step.status = st;
                            if st != StepStatus::Pending || msg.contains("backing off") {
                                step.message = msg;
                            }
                        }
                    }
                }
            }
        }
        self.plans = plans;
        self.set_blocked_messages();
        if !self.uninstalling {
            self.replace_first_tick(now);
            self.kill_stale(now);
        }
    }

    /// Steps that may not work now say why.
    fn set_blocked_messages(&mut self) {
        for plan in &mut self.plans {
            let (_, blocked) = plan.candidates();
            for (r, why) in blocked {
                if let Some(s) = plan.step_mut(r)
                    && s.status == StepStatus::Pending
                {
                    s.message = why;
                }
            }
        }
    }

    /// Builds the decommission plan for instances beyond their pod's count.
    pub(super) fn rebuild_decommission(&mut self) {
        self.plans.retain(|p| p.name != "decommission");
        let extra: Vec<(String, u32, Vec<String>)> = instances(&self.tasks)
            .into_iter()
            .filter(|(pod, i)| self.spec.pod(pod).is_none_or(|p| *i >= p.count))
            .map(|(pod, i)| {
                let tasks = self
                    .tasks
                    .values()
                    .filter(|r| r.pod == pod && r.index == i)
                    .map(|r| r.task.clone())
                    .collect();
                (pod, i, tasks)
            })
            .collect();
        if !extra.is_empty() {
            self.plans
                .push(instance_plan("decommission", "decommission", &extra));
        }
    }

    fn records_of(&self, pod: &str, index: u32) -> Vec<TaskRecord> {
        self.tasks
            .values()
            .filter(|r| r.pod == pod && r.index == index)
            .cloned()
            .collect()
    }

    fn derive_decommission(&mut self, now: u64, step: &mut Step) {
        let recs = self.records_of(&step.pod, step.index);
        let live: Vec<&TaskRecord> = recs.iter().filter(|r| !is_terminal(&r.state)).collect();
        if live.is_empty() {
            for r in &recs {
                if self.store.remove_task(&r.name).is_ok() {
                    self.tasks.remove(&r.name);
                }
            }
            step.status = StepStatus::Complete;
            step.message = "decommissioned".to_string();
            return;
        }
        let names: Vec<String> = live.iter().map(|r| r.name.clone()).collect();
        let kills: Vec<(String, String)> = live
            .iter()
            .map(|r| (r.task_id.clone(), r.agent_id.clone()))
            .collect();
        for (t, a) in kills {
            self.kill(now, &t, &a);
        }
        step.status = StepStatus::Starting;
        step.message = format!("killing {}", names.join(", "));
    }

    /// Replaces every plan with the uninstall plan.
    pub(super) fn begin_uninstall_plan(&mut self) {
        self.uninstalling = true;
        let inst: Vec<(String, u32, Vec<String>)> = instances(&self.tasks)
            .into_iter()
            .map(|(p, i)| (p, i, Vec::new()))
            .collect();
        let kill = instance_plan("uninstall", "kill-tasks", &inst).phases;
        let single = |phase: &str, step: &str| Phase {
            name: phase.to_string(),
            strategy: StrategyKind::Serial,
            depends: Vec::new(),
            steps: vec![Step {
                name: step.to_string(),
                ..Step::new(step, 0, Vec::new())
            }],
            interrupted: false,
        };
        let mut phases = kill;
        phases.push(single("unreserve", "unreserve"));
        phases.push(single("deregister", "deregister"));
        self.plans = vec![Plan {
            name: "uninstall".to_string(),
            strategy: StrategyKind::Serial,
            phases,
            interrupted: false,
        }];
    }

    fn derive_uninstall(&mut self, now: u64, phase: &str, step: &mut Step) {
        match phase {
            "kill-tasks" => {
                let recs = self.records_of(&step.pod, step.index);
                let live: Vec<&TaskRecord> =
                    recs.iter().filter(|r| !is_terminal(&r.state)).collect();
                if live.is_empty() {
                    step.status = StepStatus::Complete;
                    step.message = "all tasks ended".to_string();
                } else {
                    let kills: Vec<(String, String)> = live
                        .iter()
                        .map(|r| (r.task_id.clone(), r.agent_id.clone()))
                        .collect();
                    step.message = format!(
                        "killing {}",
                        live.iter()
                            .map(|r| r.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    );
                    step.status = StepStatus::Starting;
                    for (t, a) in kills {
                        self.kill(now, &t, &a);
                    }
                }
            }
            "unreserve" => {
                if !self.plans_kill_done() {
                    return;
                }
                let ledger = self.ledger();
                let reserved: usize = ledger.values().map(|t| t.len()).sum();
                if reserved == 0 {
                    step.status = StepStatus::Complete;
                    step.message = if self.cfg.reservations {
                        "no reservations left".to_string()
                    } else {
                        "reservations disabled: nothing was reserved".to_string()
                    };
                } else {
                    step.status = StepStatus::Pending;
                    let agents: Vec<&str> = ledger.keys().map(String::as_str).collect();
                    step.message = format!(
                        "waiting for offers from {} to release {reserved} reservation(s)",
                        agents.join(", ")
                    );
                }
            }
            _ => {
                if !self.plans_kill_done() || !self.ledger().is_empty() {
                    return;
                }
                if !self.torn_down {
                    self.torn_down = true;
                    self.outbox.push(Action::Teardown);
                    if let Err(e) = self.store.wipe() {
                        step.message = format!("cannot wipe the state store: {e}");
                        step.status = StepStatus::Error;
                        return;
                    }
                    self.tasks.clear();
                }
                step.status = StepStatus::Complete;
                step.message = "framework torn down, state store wiped".to_string();
            }
        }
    }

    /// True when every task of the service has ended (uninstall).
    fn plans_kill_done(&self) -> bool {
        self.tasks.values().all(|r| is_terminal(&r.state))
    }

    /// True when some step waits for an offer (and is not blocked on kills).
    pub(super) fn wants_offers(&self) -> bool {
        if self.uninstalling {
            return !self.ledger().is_empty();
        }
        // Reservations no instance wants any more are released from offers.
        let unwanted = self
            .ledger()
            .iter()
            .any(|(agent, tags)| !tags.is_subset(&self.wanted_tags(agent)));
        unwanted || !self.launch_candidates().is_empty()
    }

    /// Launch candidates in priority order: `(plan index, step ref, launch set)`; emits kills for
    /// stale tasks of candidate steps as a side effect of the caller.
    pub(super) fn launch_candidates(&self) -> Vec<(usize, (usize, usize), Vec<String>)> {
        let mut out = Vec::new();
        let mut seen = std::collections::BTreeSet::new();
        // Recovery first: running services before new work.
        let mut order: Vec<usize> = (0..self.plans.len()).collect();
        order.sort_by_key(|&i| match self.plans[i].name.as_str() {
            "recovery" => 0,
            _ if i == 0 => 1,
            _ => 2,
        });
        for pi in order {
            let plan = &self.plans[pi];
            if matches!(plan.name.as_str(), "decommission" | "uninstall") {
                continue;
            }
            for r in plan.candidates().0 {
                let Some(step) = plan.step(r) else { continue };
                if step.status != StepStatus::Pending || !seen.insert(step.instance()) {
                    continue;
                }
                let needs = self.needs(step);
                let backing_off = self
                    .backoff
                    .get(&step.instance())
                    .is_some_and(|&(_, until)| until > self.now);
                if needs.kill.is_empty() && !needs.launch.is_empty() && !backing_off {
                    out.push((pi, r, needs.launch));
                }
            }
        }
        out
    }

    /// Kills stale tasks of candidate steps (config updates, restarts) and says so.
    pub(super) fn kill_stale(&mut self, now: u64) {
        let mut kills = Vec::new();
        for (pi, plan) in self.plans.iter().enumerate() {
            if matches!(plan.name.as_str(), "decommission" | "uninstall") {
                continue;
            }
            for r in plan.candidates().0 {
                let Some(step) = plan.step(r) else { continue };
                let needs = self.needs(step);
                if !needs.kill.is_empty() {
                    kills.push((pi, r, needs.kill));
                }
            }
        }
        for (pi, r, list) in kills {
            let names: Vec<String> = list.iter().map(|(_, _, n)| n.clone()).collect();
            for (t, a, _) in &list {
                self.kill(now, t, a);
            }
            if let Some(s) = self.plans[pi].step_mut(r) {
                s.message = format!(
                    "killing {} (launched with another configuration) before relaunching",
                    names.join(", ")
                );
            }
        }
    }
}
