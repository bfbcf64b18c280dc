//! `proffer run` (and the demo of `proffer local`): runs a batch framework and shows its
//! progress (see [`crate::progress`]: a bar on a terminal, plain lines otherwise, `--quiet`,
//! `--json`), one line per failed task with the end of its stderr, and the summary.

use std::collections::HashMap;

use proffer_proto::leader::MasterList;
use proffer_proto::v1::TaskState;
use proffer_sdk::{BatchError, BatchProgress, BatchSpec, BatchSummary, run_batch};
use serde_json::json;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::progress::{Failure, PLAIN_EVERY, Reporter, Style, Tally};
use crate::sandbox_tail::SandboxLookup;

/// The states a batch's tasks are counted in, in display order.
const LABELS: [&str; 9] = [
    "pending", "staging", "starting", "running", "finished", "failed", "killed", "lost", "error",
];

/// The count label of a task state name (`TASK_RUNNING` → `running`).
fn label(state: &str) -> &'static str {
    match TaskState::parse_name(state) {
        Some(TaskState::TaskStaging) => "staging",
        Some(TaskState::TaskStarting) => "starting",
        Some(TaskState::TaskRunning) => "running",
        Some(TaskState::TaskFinished) => "finished",
        Some(TaskState::TaskFailed) => "failed",
        Some(TaskState::TaskKilled | TaskState::TaskKilling) => "killed",
        Some(TaskState::TaskError) => "error",
        Some(s) if s.is_terminal() => "lost",
        _ => "running",
    }
}

/// Where each task of a batch is, from its progress events.
#[derive(Debug, Default)]
struct Board {
    total: usize,
    framework_id: String,
    /// Task id → (agent id, state name).
    tasks: HashMap<String, (String, String)>,
    /// Tasks that ended without finishing, in the order they ended.
    failed: Vec<String>,
}

/// A task that just ended without finishing.
#[derive(Debug, Clone, PartialEq)]
struct Ended {
    task_id: String,
    agent_id: String,
    state: String,
    message: String,
}

impl Board {
    fn new(total: usize) -> Board {
        Board {
            total,
            ..Board::default()
        }
    }

    /// Applies one event; returns the task when it just failed (each task at most once).
    fn apply(&mut self, event: &BatchProgress) -> Option<Ended> {
        match event {
            BatchProgress::Subscribed { framework_id } => {
                self.framework_id.clone_from(framework_id);
                None
            }
            BatchProgress::Launched { task_id, agent_id } => {
                self.tasks
                    .insert(task_id.clone(), (agent_id.clone(), "TASK_STAGING".into()));
                None
            }
            BatchProgress::Update {
                task_id,
                state,
                message,
            } => {
                let entry = self.tasks.entry(task_id.clone()).or_default();
                if is_terminal(&entry.1) {
                    return None;
                }
                entry.1.clone_from(state);
                let failed = is_terminal(state) && state != "TASK_FINISHED";
                failed.then(|| {
                    self.failed.push(task_id.clone());
                    Ended {
                        task_id: task_id.clone(),
                        agent_id: entry.0.clone(),
                        state: state.clone(),
                        message: message.clone(),
                    }
                })
            }
            BatchProgress::Offer { .. } | BatchProgress::Done => None,
        }
    }

    /// The counts by state (tasks not launched yet are `pending`).
    fn tally(&self) -> Tally {
        let mut counts: HashMap<&'static str, u64> = HashMap::new();
        let mut done = 0;
        for (_, state) in self.tasks.values() {
            *counts.entry(label(state)).or_default() += 1;
            done += u64::from(is_terminal(state));
        }
        let tracked = self.tasks.len().min(self.total);
        counts.insert("pending", (self.total - tracked) as u64);
        Tally {
            total: self.total as u64,
            done,
            states: LABELS
                .iter()
                .map(|l| (*l, counts.get(l).copied().unwrap_or(0)))
                .collect(),
        }
    }
}

fn is_terminal(state: &str) -> bool {
    TaskState::parse_name(state).is_some_and(|s| s.is_terminal())
}

/// Runs `spec` against `master` with the output style chosen for this terminal (a bar, or
/// plain lines). Returns the summary when the batch ran to the end (whether or not every task
/// finished).
pub async fn run(
    master: &str,
    spec: BatchSpec,
    cancel: CancellationToken,
) -> anyhow::Result<BatchSummary> {
    run_with(master, spec, Style::auto(), cancel).await
}

/// Runs `spec` against `master`, showing progress in `style`, then the summary on stdout.
pub async fn run_with(
    master: &str,
    spec: BatchSpec,
    style: Style,
    cancel: CancellationToken,
) -> anyhow::Result<BatchSummary> {
    let reporter = Reporter::new(style, spec.tasks as u64, "tasks");
    reporter.note(&format!(
        "running {} x `{}` ({} cpus, {} MB each) on {master}",
        spec.tasks, spec.cmd, spec.cpus, spec.mem
    ));
    let (tx, rx) = mpsc::unbounded_channel();
    let lookup = SandboxLookup::new(MasterList::parse(master).ok());
    let shown = tokio::spawn(show(rx, reporter, Board::new(spec.tasks), lookup));
    // The callback is dropped when the batch ends, which closes the channel and ends `show`.
    let result = run_batch(
        master,
        spec,
        move |event: &BatchProgress| {
            let _ = tx.send(event.clone());
        },
        cancel,
    )
    .await;
    let (reporter, board) = shown.await?;
    let summary = match &result {
        Ok(summary) => Ok(summary),
        Err(BatchError::Cancelled { summary } | BatchError::Aborted { summary, .. }) => {
            Ok(&**summary)
        }
        Err(e) => Err(e),
    };
    match summary {
        Ok(summary) => reporter.finish(&summary.to_string(), summary_json(summary, &board)),
        Err(e) => reporter.finish_error(&e.to_string()),
    }
    match result {
        Ok(summary) => Ok(summary),
        Err(BatchError::Cancelled { .. }) => anyhow::bail!("batch cancelled"),
        Err(e) => Err(e.into()),
    }
}

/// The `--json` summary of a batch.
fn summary_json(s: &BatchSummary, board: &Board) -> serde_json::Value {
    json!({
        "ok": s.all_finished(),
        "framework_id": board.framework_id,
        "tasks": s.tasks,
        "launched": s.launched,
        "finished": s.finished,
        "failed": s.failed,
        "killed": s.killed,
        "lost": s.lost,
        "errored": s.errored,
        "tasks_per_sec": s.tasks_per_sec,
        "elapsed_secs": s.elapsed.as_secs_f64(),
        "offers_received": s.offers_received,
        "offers_declined": s.offers_declined,
        "arrival_to_launch_ms": percentiles_json(s.arrival_to_launch.as_ref()),
        "launch_to_running_ms": percentiles_json(s.launch_to_running.as_ref()),
        "launch_to_end_ms": percentiles_json(s.launch_to_end.as_ref()),
        "failed_tasks": board.failed,
    })
}

/// `{"p50": …, "p99": …, "max": …}` in milliseconds, or null.
fn percentiles_json(p: Option<&proffer_sdk::batch::Percentiles>) -> serde_json::Value {
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1000.0;
    p.map_or(
        serde_json::Value::Null,
        |p| json!({"p50": ms(p.p50), "p99": ms(p.p99), "max": ms(p.max)}),
    )
}

/// Shows events as they come until the batch ends; returns the reporter for the summary.
async fn show(
    mut events: mpsc::UnboundedReceiver<BatchProgress>,
    mut reporter: Reporter,
    mut board: Board,
    mut lookup: SandboxLookup,
) -> (Reporter, Board) {
    let mut tick = tokio::time::interval(PLAIN_EVERY / 5);
    loop {
        let event = tokio::select! {
            e = events.recv() => e,
            _ = tick.tick() => {
                reporter.tick();
                continue;
            }
        };
        let Some(event) = event else {
            return (reporter, board);
        };
        if let BatchProgress::Subscribed { framework_id } = &event {
            reporter.note(&format!("subscribed as framework {framework_id}"));
        }
        if let Some(ended) = board.apply(&event) {
            let mut failure = Failure {
                id: ended.task_id.clone(),
                state: ended.state,
                message: ended.message,
                ..Failure::default()
            };
            if reporter.wants_failure() {
                let fw = board.framework_id.clone();
                let stderr = reporter.wants_detail();
                lookup
                    .describe(&mut failure, &fw, &ended.task_id, &ended.agent_id, stderr)
                    .await;
            }
            reporter.failure(&failure);
        }
        reporter.progress(&board.tally());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(task: &str, state: &str, message: &str) -> BatchProgress {
        BatchProgress::Update {
            task_id: task.into(),
            state: state.into(),
            message: message.into(),
        }
    }

    fn count(t: &Tally, label: &str) -> u64 {
        t.states
            .iter()
            .find(|(l, _)| *l == label)
            .map_or(0, |(_, n)| *n)
    }

    #[test]
    fn the_board_counts_tasks_by_state() {
        let mut b = Board::new(3);
        b.apply(&BatchProgress::Subscribed {
            framework_id: "F".into(),
        });
        for t in ["b-0000", "b-0001"] {
            b.apply(&BatchProgress::Launched {
                task_id: t.into(),
                agent_id: "a1".into(),
            });
        }
        let t = b.tally();
        assert_eq!((t.total, t.done), (3, 0));
        assert_eq!((count(&t, "pending"), count(&t, "staging")), (1, 2));
        assert_eq!(b.apply(&update("b-0000", "TASK_RUNNING", "")), None);
        assert_eq!(b.apply(&update("b-0000", "TASK_FINISHED", "exit 0")), None);
        let failed = b.apply(&update("b-0001", "TASK_FAILED", "exit 3"));
        assert_eq!(
            failed,
            Some(Ended {
                task_id: "b-0001".into(),
                agent_id: "a1".into(),
                state: "TASK_FAILED".into(),
                message: "exit 3".into(),
            })
        );
        // A repeated terminal update is not a second failure.
        assert_eq!(b.apply(&update("b-0001", "TASK_FAILED", "exit 3")), None);
        let t = b.tally();
        assert_eq!(t.done, 2);
        assert_eq!(
            crate::progress::counts_text(&t),
            "1 pending, 1 finished, 1 failed"
        );
        assert_eq!(b.failed, vec!["b-0001".to_string()]);
        assert_eq!(b.framework_id, "F");
    }

    #[test]
    fn states_map_to_labels() {
        assert_eq!(label("TASK_LOST"), "lost");
        assert_eq!(label("TASK_GONE"), "lost");
        assert_eq!(label("TASK_KILLED"), "killed");
        assert_eq!(label("TASK_ERROR"), "error");
        assert_eq!(label("TASK_STARTING"), "starting");
    }
}
