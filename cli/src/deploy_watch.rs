//! Following a service's plan (deploy, update, uninstall) as it advances, for `proffer service
//! run`, `proffer k8s install` and `proffer k8s upgrade`: counts of steps by status (a bar on a
//! terminal, plain lines otherwise, see [`crate::progress`]), one line per failed task (with
//! the end of its stderr when its agent serves files) or step in ERROR, and a summary when the
//! plan is COMPLETE or has failed.
//!
//! The plan is read in-process from a running scheduler ([`Source::Local`]) or polled from its
//! HTTP API ([`Source::Api`], `GET /v1/plans/NAME` and `/v1/pod`) every [`POLL_EVERY`].

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use proffer_proto::leader::MasterList;
use proffer_proto::v1::TaskState;
use proffer_sdk::service::http::{Shared, request};
use proffer_sdk::service::runner::{RunConfig, RunHandle, RunOutcome, run_service};
use proffer_sdk::service::store::TaskRecord;
use proffer_sdk::service::{Plan, RollupStatus, StepStatus};
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::progress::{Failure, PLAIN_EVERY, Reporter, Style, Tally, short_duration};
use crate::sandbox_tail::SandboxLookup;

/// How often the plan is looked at.
pub const POLL_EVERY: Duration = Duration::from_millis(250);
/// How long the scheduler's API may fail to answer before following it stops.
const API_PATIENCE: Duration = Duration::from_secs(15);

/// Where the plan is read from.
#[derive(Debug, Clone)]
pub enum Source {
    /// A scheduler running in this process.
    Local(Arc<Shared>),
    /// A scheduler's HTTP API, `HOST:PORT`.
    Api(String),
}

/// What one look at the scheduler shows.
#[derive(Debug, Clone)]
struct View {
    plan: Plan,
    tasks: Vec<TaskRecord>,
    framework_id: String,
}

impl Source {
    /// The plan `name` (default: the scheduler's first plan, deploy/update/uninstall) and
    /// the tasks; `None` when there is no such plan.
    async fn look(&self, name: Option<&str>) -> Result<Option<View>> {
        match self {
            Source::Local(shared) => {
                let core = shared.core.lock().unwrap_or_else(|e| e.into_inner());
                let plan = match name {
                    Some(n) => core.plan(n),
                    None => core.plans().first(),
                };
                Ok(plan.map(|p| View {
                    plan: p.clone(),
                    tasks: core.tasks().values().cloned().collect(),
                    framework_id: core.framework_id().ok().flatten().unwrap_or_default(),
                }))
            }
            Source::Api(api) => {
                let name = name.unwrap_or("deploy");
                let plan = match request(api, "GET", &format!("/v1/plans/{name}"), "").await {
                    Ok(body) => body,
                    Err(proffer_sdk::service::http::ClientError::Status {
                        status: 404, ..
                    }) => {
                        return Ok(None);
                    }
                    Err(e) => return Err(e.into()),
                };
                let plan: Plan = serde_json::from_str(&plan)
                    .with_context(|| format!("unexpected answer for plan {name}"))?;
                let pods = request(api, "GET", "/v1/pod", "").await?;
                let pods: BTreeMap<String, Vec<TaskRecord>> =
                    serde_json::from_str(&pods).context("unexpected answer from /v1/pod")?;
                Ok(Some(View {
                    plan,
                    tasks: pods.into_values().flatten().collect(),
                    framework_id: String::new(),
                }))
            }
        }
    }
}

/// The step status labels, in display order.
const LABELS: [&str; 6] = [
    "pending", "prepared", "starting", "started", "complete", "error",
];

/// The count label of a step status.
fn label(s: StepStatus) -> &'static str {
    match s {
        StepStatus::Pending => "pending",
        StepStatus::Prepared => "prepared",
        StepStatus::Starting => "starting",
        StepStatus::Started => "started",
        StepStatus::Complete => "complete",
        StepStatus::Error => "error",
    }
}

/// The plan's steps counted by status (done = complete).
pub fn plan_tally(plan: &Plan) -> Tally {
    let mut counts: HashMap<&'static str, u64> = HashMap::new();
    for (_, step) in plan.steps() {
        *counts.entry(label(step.status)).or_default() += 1;
    }
    Tally {
        total: counts.values().sum(),
        done: counts.get("complete").copied().unwrap_or(0),
        states: LABELS
            .iter()
            .map(|l| (*l, counts.get(l).copied().unwrap_or(0)))
            .collect(),
    }
}

/// True for task states that mean the task failed (not finished, not killed on purpose).
fn failed_state(state: &str) -> bool {
    TaskState::parse_name(state).is_some_and(|s| {
        s.is_terminal() && !matches!(s, TaskState::TaskFinished | TaskState::TaskKilled)
    })
}

/// A failure seen in one look: the line to show and, for a task, where to find its sandbox.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    failure: Failure,
    /// `(task id, agent id)` of a failed task (`None` for a step in ERROR).
    task: Option<(String, String)>,
    /// The step it belongs to.
    step: String,
    /// How many times this task (by name) failed while followed.
    count: u32,
}

/// Remembers what was already reported, across looks.
#[derive(Debug, Default)]
struct Tracker {
    /// Task ids whose failure was reported (or that had failed before following began).
    reported: HashSet<String>,
    /// Steps whose ERROR was reported.
    errored: HashSet<String>,
    /// Failures per task name.
    counts: HashMap<String, u32>,
}

impl Tracker {
    /// A tracker that does not report what had already failed in `view`.
    fn new(view: &View) -> Tracker {
        let mut t = Tracker::default();
        for r in view.tasks.iter().filter(|r| failed_state(&r.state)) {
            t.reported.insert(r.task_id.clone());
        }
        t
    }

    /// New failures of the plan's tasks and steps since the last look.
    fn failures(&mut self, view: &View) -> Vec<Seen> {
        let mut step_of: HashMap<String, &str> = HashMap::new();
        let mut out = Vec::new();
        for (_, step) in view.plan.steps() {
            for t in &step.tasks {
                step_of.insert(format!("{}-{}-{t}", step.pod, step.index), &step.name);
            }
            if step.status == StepStatus::Error && self.errored.insert(step.name.clone()) {
                out.push(Seen {
                    failure: Failure {
                        id: step.name.clone(),
                        state: "ERROR".into(),
                        message: step.message.clone(),
                        ..Failure::default()
                    },
                    task: None,
                    step: step.name.clone(),
                    count: 0,
                });
            }
        }
        for r in &view.tasks {
            let Some(step) = step_of.get(&r.name) else {
                continue;
            };
            if !failed_state(&r.state) || !self.reported.insert(r.task_id.clone()) {
                continue;
            }
            let count = self.counts.entry(r.name.clone()).or_default();
            *count += 1;
            out.push(Seen {
                failure: Failure {
                    id: r.name.clone(),
                    state: r.state.clone(),
                    message: r.message.clone(),
                    agent: r.hostname.clone(),
                    ..Failure::default()
                },
                task: Some((r.task_id.clone(), r.agent_id.clone())),
                step: (*step).to_string(),
                count: *count,
            });
        }
        out
    }
}

/// How following a plan ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// The plan is COMPLETE.
    Complete,
    /// The plan failed (a step in ERROR, or a task failed too often).
    Failed {
        /// The plan.
        plan: String,
        /// Why, naming the step.
        why: String,
    },
    /// Following was cancelled.
    Cancelled,
}

/// The summary line of a followed plan.
pub fn summary_text(plan: &str, tally: &Tally, failures: u32, end: &End, took: Duration) -> String {
    let failed = match failures {
        0 => String::new(),
        1 => ", 1 task failure".to_string(),
        n => format!(", {n} task failures"),
    };
    let body = format!(
        "{}/{} steps complete{failed} in {}",
        tally.done,
        tally.total,
        short_duration(took)
    );
    match end {
        End::Complete => format!("{plan} COMPLETE: {body}"),
        End::Failed { why, .. } => format!("{plan} FAILED: {why}\n  {body}"),
        End::Cancelled => format!("{plan}: {body} (stopped following)"),
    }
}

/// How to follow a plan.
#[derive(Debug, Clone)]
pub struct Watch {
    /// Where the plan is read.
    pub source: Source,
    /// The plan (default: the scheduler's first plan).
    pub plan: Option<String>,
    /// How progress is shown.
    pub style: Style,
    /// The masters, to find failed tasks' agents (and their stderr).
    pub masters: Option<MasterList>,
    /// Stop (failed) once one task failed this many times; `None`: never.
    pub max_failures: Option<u32>,
}

impl Watch {
    /// Follows one round: until the plan is COMPLETE, failed, or `cancel`.
    pub async fn round(&self, cancel: &CancellationToken) -> Result<End> {
        let mut lookup = SandboxLookup::new(self.masters.clone());
        let start = Instant::now();
        let mut last_ok = Instant::now();
        let mut state: Option<(Reporter, Tracker, Tally)> = None;
        let mut failures = 0u32;
        let mut poll = tokio::time::interval(POLL_EVERY);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => {
                    // One last look: the plan may have completed since the last one.
                    let last = self.source.look(self.plan.as_deref()).await.ok().flatten();
                    let end = match &last {
                        Some(v) if v.plan.status() == RollupStatus::Complete => End::Complete,
                        _ => End::Cancelled,
                    };
                    if let Some((reporter, _, mut tally)) = state {
                        let plan = last.as_ref().map_or("deploy", |v| v.plan.name.as_str());
                        if let Some(v) = &last {
                            tally = plan_tally(&v.plan);
                        }
                        self.finish(reporter, plan, &tally, failures, &end, start);
                    }
                    return Ok(end);
                }
                _ = poll.tick() => {}
            }
            let view = match self.source.look(self.plan.as_deref()).await {
                Ok(Some(view)) => view,
                Ok(None) | Err(_) if last_ok.elapsed() < API_PATIENCE => continue,
                Ok(None) => anyhow::bail!("no plan {}", self.plan.as_deref().unwrap_or("")),
                Err(e) => return Err(e.context("following the plan")),
            };
            last_ok = Instant::now();
            let tally = plan_tally(&view.plan);
            let (reporter, tracker, last) = state.get_or_insert_with(|| {
                let r = Reporter::new(self.style, tally.total, "steps");
                r.note(&format!(
                    "following plan {} ({} steps)",
                    view.plan.name, tally.total
                ));
                (r, Tracker::new(&view), tally.clone())
            });
            *last = tally.clone();
            let mut end = None;
            for seen in tracker.failures(&view) {
                failures += u32::from(seen.task.is_some());
                end = end.or_else(|| self.fatal(&view.plan.name, &seen));
                let mut f = seen.failure;
                if let Some((task_id, agent_id)) = &seen.task
                    && reporter.wants_failure()
                {
                    let stderr = reporter.wants_detail();
                    let fw = &view.framework_id;
                    lookup.describe(&mut f, fw, task_id, agent_id, stderr).await;
                }
                reporter.failure(&f);
            }
            reporter.progress(&tally);
            let end = match view.plan.status() {
                RollupStatus::Complete => Some(End::Complete),
                _ => end,
            };
            if let Some(end) = end {
                if let Some((reporter, _, _)) = state.take() {
                    self.finish(reporter, &view.plan.name, &tally, failures, &end, start);
                }
                return Ok(end);
            }
        }
    }

    /// Whether `seen` ends the round: a step in ERROR, or a task that failed too often.
    fn fatal(&self, plan: &str, seen: &Seen) -> Option<End> {
        let f = &seen.failure;
        let why = match (&seen.task, self.max_failures) {
            (None, _) => format!("step {} is in ERROR: {}", seen.step, f.message),
            (Some(_), Some(max)) if seen.count >= max => format!(
                "step {}: task {} failed {} times (last: {} {})",
                seen.step, f.id, seen.count, f.state, f.message
            ),
            _ => return None,
        };
        Some(End::Failed {
            plan: plan.to_string(),
            why,
        })
    }

    fn finish(
        &self,
        reporter: Reporter,
        plan: &str,
        tally: &Tally,
        failures: u32,
        end: &End,
        start: Instant,
    ) {
        let took = start.elapsed();
        let (status, error) = match end {
            End::Complete => ("COMPLETE", None),
            End::Failed { why, .. } => ("FAILED", Some(why.as_str())),
            End::Cancelled => ("STOPPED", None),
        };
        let json = json!({
            "ok": *end == End::Complete,
            "plan": plan,
            "status": status,
            "error": error,
            "steps": tally.total,
            "complete": tally.done,
            "task_failures": failures,
        });
        reporter.finish(&summary_text(plan, tally, failures, end, took), json);
    }

    /// Follows round after round until `cancel`: a COMPLETE (or failed) plan is followed again
    /// once it changes (an update, a restart of a pod).
    pub async fn follow(&self, cancel: &CancellationToken) -> Result<()> {
        loop {
            if self.round(cancel).await? == End::Cancelled {
                return Ok(());
            }
            let Some(settled) = self.source.look(self.plan.as_deref()).await? else {
                return Ok(());
            };
            let settled = (settled.plan.name.clone(), settled.plan.status());
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(PLAIN_EVERY / 5) => {}
                }
                let now = self.source.look(self.plan.as_deref()).await?;
                if now.is_some_and(|v| (v.plan.name.clone(), v.plan.status()) != settled) {
                    break;
                }
            }
        }
    }
}

/// How a followed scheduler run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ran {
    /// `--wait`: the plan completed and the scheduler was stopped.
    Waited,
    /// The scheduler ended by itself (cancelled, or the uninstall plan completed).
    Ended(RunOutcome),
}

/// Runs the scheduler while `watch` follows its plan. With `wait`, the scheduler is stopped
/// once the plan is COMPLETE ([`Ran::Waited`]) or has failed (an error naming the step);
/// without, the plan is followed round after round for as long as the scheduler runs.
pub async fn run_watched(
    handle: RunHandle,
    listener: Option<TcpListener>,
    cfg: RunConfig,
    watch: &Watch,
    wait: bool,
    cancel: CancellationToken,
) -> Result<Ran> {
    let scheduler = cancel.child_token();
    let service = run_service(handle, listener, cfg, scheduler.clone());
    tokio::pin!(service);
    let following = cancel.child_token();
    if !wait {
        let follow = watch.follow(&following);
        tokio::pin!(follow);
        let outcome = tokio::select! {
            r = &mut service => {
                // The scheduler ended by itself: show where the plan got to.
                following.cancel();
                follow.await?;
                r
            }
            r = &mut follow => {
                r?;
                service.await
            }
        };
        return Ok(Ran::Ended(outcome?));
    }
    let round = watch.round(&following);
    tokio::pin!(round);
    let (end, outcome) = tokio::select! {
        r = &mut service => {
            // The scheduler ended first: the round takes its last look and says so.
            following.cancel();
            (round.await?, Some(r?))
        }
        end = &mut round => (end?, None),
    };
    let outcome = match outcome {
        Some(outcome) => outcome,
        None => {
            scheduler.cancel();
            service.await?
        }
    };
    match (end, outcome) {
        (End::Complete, RunOutcome::Uninstalled) => Ok(Ran::Ended(RunOutcome::Uninstalled)),
        (End::Complete, RunOutcome::Stopped) => Ok(Ran::Waited),
        (End::Failed { plan, why }, _) => anyhow::bail!("{plan} failed: {why}"),
        (End::Cancelled, _) => anyhow::bail!("stopped before the plan completed"),
    }
}

#[cfg(test)]
#[path = "deploy_watch_tests.rs"]
mod tests;
