//! The scheduler's decision logic, free of networking: events in ([`ServiceCore::handle_offers`],
//! [`ServiceCore::handle_status`], operator calls), [`Action`]s out. The async runner
//! ([`super::runner`]) executes the actions with the driver and feeds results back.
//!
//! Step states are derived from the task records after every event (`refresh`), so a restarted
//! scheduler rebuilds the same plans from its store. Task records are written before a launch is
//! sent; on restart every non-terminal record is reconciled with the master, which answers
//! TASK_LOST for tasks it never saw, and only those are launched again.

mod offers;
mod replace;
mod status;
mod why;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use proffer_proto::v1;
use serde::Serialize;

use super::compile;
use super::evaluate::EvalConfig;
use super::plan::{Plan, StepRef, StepStatus};
use super::preview::UpdatePreview;
use super::spec::{Goal, ServiceSpec};
use super::store::{StateStore, StoreError, TaskRecord};
use super::validate::validate_update;
pub use offers::OfferRecord;
pub use status::{TaskNeed, task_need};

/// Offers kept for `/v1/debug/offers`.
const OFFER_LOG: usize = 100;

/// Something the runner must do on the scheduler API.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Accept offers (one agent) with operations; `tasks` are the record names launched.
    Accept {
        /// The offers.
        offer_ids: Vec<String>,
        /// RESERVE/CREATE then LAUNCH.
        operations: Vec<v1::Operation>,
        /// Refuse seconds for the unused rest.
        refuse_seconds: f64,
        /// Record names of the launched tasks (for [`ServiceCore::accept_result`]).
        tasks: Vec<String>,
    },
    /// Decline offers.
    Decline {
        /// The offers.
        offer_ids: Vec<String>,
        /// Refuse seconds.
        refuse_seconds: f64,
    },
    /// Kill a task.
    Kill {
        /// The task id.
        task_id: String,
        /// Its agent.
        agent_id: String,
    },
    /// Ask the master for offers again.
    Revive,
    /// Stop offers.
    Suppress,
    /// Explicit reconciliation of `(task_id, agent_id)`.
    Reconcile(Vec<(String, String)>),
    /// Remove the framework (end of uninstall).
    Teardown,
}

/// How the scheduler runs (not part of the spec).
#[derive(Debug, Clone)]
pub struct CoreConfig {
    /// Reserve resources and create volumes (needs master support; default off).
    pub reservations: bool,
    /// The value of `{{FRAMEWORK_HOST}}`: where tasks reach the scheduler (its hostname).
    pub framework_host: String,
    /// How long a pod waits for its old agent before it may move (permanent failure).
    pub permanent_after_ms: u64,
    /// Seconds to refuse declined offers while steps wait for offers.
    pub refuse_pending_secs: f64,
    /// Seconds to refuse offers when nothing waits.
    pub refuse_idle_secs: f64,
    /// How long the replacement of a running instance may wait for an offer before the old
    /// instance is stopped first (start-first restarts, where the spec allows them: no volumes,
    /// no fixed ports, no reservations); 0 always stops first.
    pub replace_first_wait_ms: u64,
}

impl Default for CoreConfig {
    fn default() -> Self {
        CoreConfig {
            reservations: false,
            framework_host: "localhost".into(),
            permanent_after_ms: 300_000,
            refuse_pending_secs: 2.0,
            refuse_idle_secs: 30.0,
            replace_first_wait_ms: 30_000,
        }
    }
}

/// Errors of the service core.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A spec or spec change was refused.
    #[error("invalid spec: {0}")]
    Spec(#[from] super::SpecError),
    /// An operator request names something that does not exist or cannot be done.
    #[error("{0}")]
    Request(String),
}

/// The scheduler state.
#[derive(Debug)]
pub struct ServiceCore {
    spec: ServiceSpec,
    cfg: CoreConfig,
    eval: EvalConfig,
    store: StateStore,
    tasks: BTreeMap<String, TaskRecord>,
    plans: Vec<Plan>,
    offers: VecDeque<OfferRecord>,
    /// When each waiting step (by `plan/step`) started waiting for an offer.
    waiting_since: HashMap<String, u64>,
    /// Per waiting step (by `plan/step`): the recent offers it did not fit, and why.
    declines: HashMap<String, VecDeque<why::Decline>>,
    /// Task id → when a kill was last sent.
    kills: HashMap<String, u64>,
    /// Instance (`POD-INDEX`) → (consecutive failures, no relaunch before this time).
    backoff: HashMap<String, (u32, u64)>,
    /// The latest time seen (for back-off checks in pure queries).
    now: u64,
    /// Instance (`POD-INDEX`) → when its last task ended (starts the permanent-failure clock).
    ended_at: HashMap<String, u64>,
    /// Instance (`POD-INDEX`) → its start-first restart's state.
    replace_first: HashMap<String, replace::ReplaceFirst>,
    suppressed: bool,
    uninstalling: bool,
    torn_down: bool,
    outbox: Vec<Action>,
    /// The framework's authenticated principal, if any: reservations are then tagged
    /// `PRINCIPAL/SERVICE.POD-INDEX` (sub-principals of it), as the master requires.
    principal: Option<String>,
}

/// FNV-1a of the pod's configuration (everything but its count): the identity tasks are
/// launched with. A task whose hash differs from the target is relaunched by the update plan.
pub fn config_hash(spec: &ServiceSpec, pod: &str) -> String {
    let text = spec
        .pod(pod)
        .map(|p| super::spec::PodSpec {
            count: 0,
            ..p.clone()
        })
        .and_then(|p| serde_json::to_string(&p).ok())
        .unwrap_or_default();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// True for task state names that end a task.
pub fn is_terminal(state: &str) -> bool {
    v1::TaskState::parse_name(state).is_some_and(|s| s.is_terminal())
}

impl ServiceCore {
    /// Loads the store and compiles the plans for `spec`. A stored target spec that differs makes
    /// the deploy plan an `update` plan (after checking the change is allowed).
    pub fn open(
        spec: ServiceSpec,
        cfg: CoreConfig,
        store: StateStore,
    ) -> Result<ServiceCore, CoreError> {
        let mut deploy_name = "deploy";
        if let Some(old) = store.meta("target_spec")? {
            let old: ServiceSpec = serde_json::from_str(&old)
                .map_err(|e| CoreError::Request(format!("stored spec is unreadable: {e}")))?;
            validate_update(&old, &spec)?;
            if old != spec {
                deploy_name = "update";
            }
        }
        let eval = EvalConfig {
            role: spec.role.clone(),
            reservations: cfg.reservations,
        };
        let tasks = store.tasks()?;
        let mut core = ServiceCore {
            plans: compile::compile(&spec, deploy_name),
            spec,
            cfg,
            eval,
            store,
            tasks,
            principal: None,
            offers: VecDeque::new(),
            waiting_since: HashMap::new(),
            declines: HashMap::new(),
            kills: HashMap::new(),
            backoff: HashMap::new(),
            now: 0,
            ended_at: HashMap::new(),
            replace_first: HashMap::new(),
            suppressed: false,
            uninstalling: false,
            torn_down: false,
            outbox: Vec::new(),
        };
        core.save_spec()?;
        core.apply_flags()?;
        core.rebuild_decommission();
        if core.store.meta("uninstalling")?.is_some() {
            core.begin_uninstall_plan();
        }
        core.refresh(0);
        Ok(core)
    }

    fn save_spec(&self) -> Result<(), CoreError> {
        let json = serde_json::to_string(&self.spec)
            .map_err(|e| CoreError::Request(format!("cannot encode spec: {e}")))?;
        self.store.set_meta("target_spec", &json)?;
        Ok(())
    }

    /// The target spec.
    pub fn spec(&self) -> &ServiceSpec {
        &self.spec
    }

    /// The plans, deploy/update first.
    pub fn plans(&self) -> &[Plan] {
        &self.plans
    }

    /// The plan `name`.
    pub fn plan(&self, name: &str) -> Option<&Plan> {
        self.plans.iter().find(|p| p.name == name)
    }

    /// Task records by name.
    pub fn tasks(&self) -> &BTreeMap<String, TaskRecord> {
        &self.tasks
    }

    /// The stored framework id, if the framework subscribed before.
    pub fn framework_id(&self) -> Result<Option<String>, CoreError> {
        Ok(self.store.meta("framework_id")?)
    }

    /// Remembers the framework id (after SUBSCRIBED).
    pub fn set_framework_id(&self, id: &str) -> Result<(), CoreError> {
        Ok(self.store.set_meta("framework_id", id)?)
    }

    /// Recent offers and what happened to them, newest last.
    pub fn offer_log(&self) -> impl Iterator<Item = &OfferRecord> {
        self.offers.iter()
    }

    /// True once the uninstall plan tore the framework down.
    pub fn torn_down(&self) -> bool {
        self.torn_down
    }

    /// True while uninstalling.
    pub fn uninstalling(&self) -> bool {
        self.uninstalling
    }

    /// Takes the actions produced so far.
    pub fn take_actions(&mut self) -> Vec<Action> {
        std::mem::take(&mut self.outbox)
    }

    /// Actions to run right after (re-)subscribing: reconcile every task that may be alive, and
    /// revive or suppress (the master keeps a failed-over framework's suppression).
    pub fn on_subscribed(&mut self, now: u64) {
        let live: Vec<(String, String)> = self
            .tasks
            .values()
            .filter(|r| !is_terminal(&r.state))
            .map(|r| (r.task_id.clone(), r.agent_id.clone()))
            .collect();
        if !live.is_empty() {
            self.outbox.push(Action::Reconcile(live));
        }
        self.refresh(now);
        // A failed-over framework may still be suppressed on the master (its previous
        // subscription's state): say explicitly whether offers are wanted.
        self.suppressed = self.wants_offers();
        self.update_suppression();
    }

    /// The `why` view: for every incomplete step, its status and what it waits for.
    pub fn why(&self) -> Vec<WhyLine> {
        let mut out = Vec::new();
        for p in &self.plans {
            for (_, s) in p.steps() {
                if s.status != StepStatus::Complete {
                    out.push(WhyLine {
                        plan: p.name.clone(),
                        step: s.name.clone(),
                        status: s.status.name().to_string(),
                        why: s.message.clone(),
                    });
                }
            }
        }
        out
    }

    /// Pod instances and their tasks.
    pub fn pods(&self) -> BTreeMap<String, Vec<&TaskRecord>> {
        let mut out: BTreeMap<String, Vec<&TaskRecord>> = BTreeMap::new();
        for r in self.tasks.values() {
            out.entry(format!("{}-{}", r.pod, r.index))
                .or_default()
                .push(r);
        }
        out
    }

    fn plan_mut(&mut self, name: &str) -> Result<&mut Plan, CoreError> {
        self.plans
            .iter_mut()
            .find(|p| p.name == name)
            .ok_or_else(|| CoreError::Request(format!("no plan named `{name}`")))
    }

    /// Operator: pause, resume, start (resume + restart), restart or force-complete.
    pub fn plan_action(
        &mut self,
        now: u64,
        plan: &str,
        action: &str,
        phase: Option<&str>,
        step: Option<&str>,
    ) -> Result<(), CoreError> {
        let p = self.plan_mut(plan)?;
        let restarted: Vec<StepRef> = match action {
            "pause" => p.pause(phase, step).map(|()| Vec::new()),
            "resume" | "continue" => p.resume(phase, step).map(|()| Vec::new()),
            "force-complete" => p.force_complete(phase, step).map(|()| Vec::new()),
            "restart" => p.restart(phase, step),
            "start" => p.resume(phase, step).and_then(|()| p.restart(phase, step)),
            other => Err(format!(
                "unknown action `{other}` (pause, resume, start, restart, force-complete)"
            )),
        }
        .map_err(CoreError::Request)?;
        // Restarting a step relaunches its tasks: mark their records stale and kill live ones.
        let mut stale = Vec::new();
        for r in restarted {
            if let Some(s) = self.plan(plan).and_then(|p| p.step(r)) {
                for t in &s.tasks {
                    stale.push(format!("{}-{}-{t}", s.pod, s.index));
                }
            }
        }
        for name in stale {
            self.mark_stale(now, &name)?;
        }
        self.save_flags()?;
        self.refresh(now);
        self.update_suppression();
        Ok(())
    }

    /// Marks a task's record as launched with an outdated configuration (it will be relaunched)
    /// and kills it if it runs.
    fn mark_stale(&mut self, now: u64, name: &str) -> Result<(), CoreError> {
        if let Some(rec) = self.tasks.get_mut(name) {
            rec.config = "restart".to_string();
            let rec = rec.clone();
            self.store.put_task(&rec)?;
            if !is_terminal(&rec.state) {
                self.kill(now, &rec.task_id, &rec.agent_id);
            }
        }
        Ok(())
    }

    fn kill(&mut self, now: u64, task_id: &str, agent_id: &str) {
        let due = self
            .kills
            .get(task_id)
            .is_none_or(|&t| now.saturating_sub(t) >= 10_000);
        if due {
            self.kills.insert(task_id.to_string(), now);
            self.outbox.push(Action::Kill {
                task_id: task_id.to_string(),
                agent_id: agent_id.to_string(),
            });
        }
    }

    fn save_flags(&self) -> Result<(), CoreError> {
        let mut flags = BTreeMap::new();
        for p in &self.plans {
            if p.interrupted {
                flags.insert(p.name.clone(), "paused".to_string());
            } else if self.spec.plan(&p.name).is_some()
                && !matches!(p.name.as_str(), "deploy" | "update")
            {
                flags.insert(p.name.clone(), "started".to_string());
            }
            for ph in &p.phases {
                if ph.interrupted {
                    flags.insert(format!("{}/{}", p.name, ph.name), "paused".to_string());
                }
                for s in &ph.steps {
                    let key = format!("{}/{}/{}", p.name, ph.name, s.name);
                    let v = match (s.interrupted, s.forced) {
                        (true, true) => "paused,forced",
                        (true, false) => "paused",
                        (false, true) => "forced",
                        (false, false) => continue,
                    };
                    flags.insert(key, v.to_string());
                }
            }
        }
        Ok(self.store.set_flags(&flags)?)
    }

    fn apply_flags(&mut self) -> Result<(), CoreError> {
        let flags = self.store.flags()?;
        for p in &mut self.plans {
            match flags.get(&p.name).map(String::as_str) {
                Some("paused") => p.interrupted = true,
                Some("started") => p.interrupted = false,
                _ => {}
            }
            for ph in &mut p.phases {
                if flags
                    .get(&format!("{}/{}", p.name, ph.name))
                    .map(String::as_str)
                    == Some("paused")
                {
                    ph.interrupted = true;
                }
                for s in &mut ph.steps {
                    let v = flags
                        .get(&format!("{}/{}/{}", p.name, ph.name, s.name))
                        .map(String::as_str)
                        .unwrap_or("");
                    if v.split(',').any(|f| f == "paused") {
                        s.interrupted = true;
                    }
                    if v.split(',').any(|f| f == "forced") {
                        s.forced = true;
                        s.status = StepStatus::Complete;
                    }
                }
            }
        }
        Ok(())
    }

    /// Replaces the target spec (scale, configuration change). The change is checked first;
    /// the deploy plan becomes an `update` plan that rolls pods one at a time.
    pub fn update_spec(&mut self, now: u64, spec: ServiceSpec) -> Result<(), CoreError> {
        if self.uninstalling {
            return Err(CoreError::Request(
                "the service is being uninstalled".into(),
            ));
        }
        validate_update(&self.spec, &spec)?;
        self.check_placement_change(&spec)?;
        self.spec = spec;
        self.eval.role = self.spec.role.clone();
        self.save_spec()?;
        self.plans = compile::compile(&self.spec, "update");
        self.apply_flags()?;
        self.rebuild_decommission();
        self.refresh(now);
        self.update_suppression();
        Ok(())
    }

    /// What an update to `spec` would change and whether its new or changed pods can be placed
    /// on `agents` (or why the agents are not known). The change is checked as
    /// [`ServiceCore::update_spec`] checks it; nothing changes.
    pub fn preview_update(
        &self,
        spec: &ServiceSpec,
        agents: Result<&[crate::capacity::AgentCapacity], String>,
    ) -> Result<UpdatePreview, CoreError> {
        if self.uninstalling {
            return Err(CoreError::Request(
                "the service is being uninstalled".into(),
            ));
        }
        validate_update(&self.spec, spec)?;
        self.check_placement_change(spec)?;
        let start_first = self.cfg.replace_first_wait_ms > 0 && !self.cfg.reservations;
        Ok(UpdatePreview::build(
            &self.spec,
            spec,
            &self.tasks,
            agents,
            start_first,
        ))
    }

    /// Starts the uninstall plan: kill every task, release reservations, tear down.
    pub fn uninstall(&mut self, now: u64) -> Result<(), CoreError> {
        self.store.set_meta("uninstalling", "true")?;
        self.begin_uninstall_plan();
        self.refresh(now);
        self.update_suppression();
        Ok(())
    }

    /// The goal of task `task` of pod `pod` in the current spec.
    fn goal(&self, pod: &str, task: &str) -> Option<Goal> {
        self.spec
            .pod(pod)
            .and_then(|p| p.task(task))
            .map(|t| t.goal)
    }

    /// Emits Revive or Suppress when the need for offers changed.
    fn update_suppression(&mut self) {
        let wants = self.wants_offers();
        if wants && self.suppressed {
            self.suppressed = false;
            self.outbox.push(Action::Revive);
        } else if !wants && !self.suppressed {
            self.suppressed = true;
            self.outbox.push(Action::Suppress);
        }
    }

    /// True when the scheduler is suppressing offers.
    pub fn suppressed(&self) -> bool {
        self.suppressed
    }
}

/// One line of the `why` view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WhyLine {
    /// The plan.
    pub plan: String,
    /// The step.
    pub step: String,
    /// Its status.
    pub status: String,
    /// What it waits for.
    pub why: String,
}

/// Unique, sorted set of instance names (`POD-INDEX`) that have task records.
fn instances(tasks: &BTreeMap<String, TaskRecord>) -> BTreeSet<(String, u32)> {
    tasks.values().map(|r| (r.pod.clone(), r.index)).collect()
}

impl ServiceCore {
    /// Refuses new placement rules that running instances already violate (they would have to
    /// move; `replace` them first or relax the rule).
    fn check_placement_change(&self, new: &ServiceSpec) -> Result<(), CoreError> {
        use super::placement::{AgentView, Placement, check_rule};
        let mut live: Vec<Placement> = Vec::new();
        for r in self.tasks.values().filter(|r| !is_terminal(&r.state)) {
            if !live.iter().any(|p| p.pod == r.pod && p.index == r.index) {
                live.push(Placement {
                    pod: r.pod.clone(),
                    index: r.index,
                    agent_id: r.agent_id.clone(),
                    hostname: r.hostname.clone(),
                    attributes: r.attributes.clone(),
                });
            }
        }
        for (name, pod) in &new.pods {
            if self.spec.pod(name).map(|p| &p.placement) == Some(&pod.placement) {
                continue;
            }
            // Instances that stay, in index order; each is checked against those before it.
            let mut kept: Vec<Placement> = live
                .iter()
                .filter(|p| p.pod != *name || p.index < pod.count)
                .cloned()
                .collect();
            kept.sort_by_key(|p| (p.pod != *name, p.index));
            for p in kept.iter().filter(|p| p.pod == *name) {
                let others: Vec<Placement> = kept
                    .iter()
                    .filter(|o| o.pod != *name || o.index < p.index)
                    .cloned()
                    .collect();
                let agent = AgentView {
                    agent_id: &p.agent_id,
                    hostname: &p.hostname,
                    attributes: &p.attributes,
                };
                for (i, rule) in pod.placement.iter().enumerate() {
                    if let Err(e) = check_rule(rule, name, &agent, &others) {
                        return Err(super::SpecError::Field {
                            path: format!("pods.{name}.placement[{i}]"),
                            reason: format!(
                                "{} cannot stay where it runs ({e}); replace it first or relax the rule",
                                p.instance()
                            ),
                        }
                        .into());
                    }
                }
            }
        }
        Ok(())
    }

    /// Operator: restart a pod instance in place (`replace: false`) or move it to another agent,
    /// dropping its volumes (`replace: true`).
    pub fn pod_action(&mut self, now: u64, instance: &str, replace: bool) -> Result<(), CoreError> {
        let recs: Vec<TaskRecord> = self
            .tasks
            .values()
            .filter(|r| format!("{}-{}", r.pod, r.index) == instance)
            .cloned()
            .collect();
        let Some(first) = recs.first() else {
            return Err(CoreError::Request(format!("no pod instance `{instance}`")));
        };
        let (pod, index) = (first.pod.clone(), first.index);
        let tasks: Vec<String> = self
            .spec
            .pod(&pod)
            .map(|p| {
                p.tasks
                    .iter()
                    .filter(|(_, t)| t.goal == Goal::Running)
                    .map(|(n, _)| n.clone())
                    .collect()
            })
            .unwrap_or_default();
        for mut r in recs {
            if replace {
                r.permanent_failure = true;
                self.store.put_task(&r)?;
                self.tasks.insert(r.name.clone(), r.clone());
            }
            if !is_terminal(&r.state) {
                self.kill(now, &r.task_id, &r.agent_id);
            }
        }
        let what = if replace {
            "replace requested: moving to a new agent (volumes are dropped)"
        } else {
            "restart requested: restarting in place"
        };
        let step = super::plan::Step {
            message: what.to_string(),
            ..super::plan::Step::new(&pod, index, tasks)
        };
        self.add_recovery_step(step);
        self.refresh(now);
        self.update_suppression();
        Ok(())
    }

    /// The master lost an agent (FAILURE event): the permanent-failure clock of every pod
    /// instance there starts now, so after `permanent_after_ms` they may move elsewhere.
    /// The master removed the agent with its reservations and volumes, so they leave the
    /// ledger (an uninstall does not wait for offers from it).
    pub fn agent_lost(&mut self, now: u64, agent_id: &str) {
        let mut ledger = self.ledger();
        if ledger.remove(agent_id).is_some()
            && let Err(e) = self.set_ledger(&ledger)
        {
            tracing::warn!(agent_id, "cannot update the reservation ledger: {e}");
        }
        let lost: Vec<String> = self
            .tasks
            .values()
            .filter(|r| r.agent_id == agent_id)
            .map(|r| format!("{}-{}", r.pod, r.index))
            .collect();
        for i in lost {
            self.ended_at.entry(i).or_insert(now);
        }
        self.refresh(now);
        self.update_suppression();
    }

    /// Periodic work: resend kills, expire pins and back-offs, revive/suppress.
    pub fn tick(&mut self, now: u64) {
        self.now = now;
        self.refresh(now);
        self.update_suppression();
    }
}
