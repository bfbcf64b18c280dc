//! `proffer run` (and the demo of `proffer local`): runs a batch framework and prints progress.

use proffer_sdk::{BatchError, BatchProgress, BatchSpec, BatchSummary, run_batch};
use tokio_util::sync::CancellationToken;

/// Counts shown in progress lines.
#[derive(Debug, Default)]
struct Counts {
    total: usize,
    launched: usize,
    finished: usize,
    failed: usize,
}

/// One progress line for an event, updating the counts (`None` for events not worth a line).
fn progress_line(counts: &mut Counts, event: &BatchProgress) -> Option<String> {
    match event {
        BatchProgress::Subscribed { framework_id } => {
            Some(format!("subscribed as framework {framework_id}"))
        }
        BatchProgress::Offer {
            agent_id,
            resources,
        } => Some(format!("offer from agent {agent_id}: {resources}")),
        BatchProgress::Launched { task_id, agent_id } => {
            counts.launched += 1;
            Some(format!(
                "[{}/{} launched] {task_id} -> agent {agent_id}",
                counts.launched, counts.total
            ))
        }
        BatchProgress::Update {
            task_id,
            state,
            message,
        } => {
            match state.as_str() {
                "TASK_FINISHED" => counts.finished += 1,
                "TASK_FAILED" | "TASK_KILLED" | "TASK_LOST" | "TASK_ERROR" => counts.failed += 1,
                _ => {}
            }
            let detail = if message.is_empty() {
                String::new()
            } else {
                format!(" ({message})")
            };
            Some(format!(
                "[{}/{} finished, {} failed] {task_id} {state}{detail}",
                counts.finished, counts.total, counts.failed
            ))
        }
        BatchProgress::Done => Some("all tasks ended; framework torn down".to_owned()),
    }
}

/// Runs `spec` against `master`, printing progress and the summary to stdout. Returns the
/// summary when the batch ran to the end (whether or not every task finished).
pub async fn run(
    master: &str,
    spec: BatchSpec,
    cancel: CancellationToken,
) -> anyhow::Result<BatchSummary> {
    let mut counts = Counts {
        total: spec.tasks,
        ..Counts::default()
    };
    crate::output::text(&format!(
        "running {} x `{}` ({} cpus, {} MB each) on {master}",
        spec.tasks, spec.cmd, spec.cpus, spec.mem
    ));
    let progress = move |event: &BatchProgress| {
        if let Some(line) = progress_line(&mut counts, event) {
            crate::output::text(&line);
        }
    };
    match run_batch(master, spec, progress, cancel).await {
        Ok(summary) => {
            crate::output::text(&summary.to_string());
            Ok(summary)
        }
        Err(BatchError::Cancelled { summary }) => {
            crate::output::text(&summary.to_string());
            anyhow::bail!("batch cancelled")
        }
        Err(BatchError::NeverFits(why)) => anyhow::bail!("{why}"),
        Err(BatchError::Aborted { reason, summary }) => {
            crate::output::text(&summary.to_string());
            anyhow::bail!("batch aborted: {reason}")
        }
        Err(err) => Err(err.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_lines_count_tasks() {
        let mut counts = Counts {
            total: 2,
            ..Counts::default()
        };
        let launched = BatchProgress::Launched {
            task_id: "b-0000".into(),
            agent_id: "a1".into(),
        };
        assert_eq!(
            progress_line(&mut counts, &launched).as_deref(),
            Some("[1/2 launched] b-0000 -> agent a1")
        );
        let running = BatchProgress::Update {
            task_id: "b-0000".into(),
            state: "TASK_RUNNING".into(),
            message: String::new(),
        };
        assert_eq!(
            progress_line(&mut counts, &running).as_deref(),
            Some("[0/2 finished, 0 failed] b-0000 TASK_RUNNING")
        );
        let finished = BatchProgress::Update {
            task_id: "b-0000".into(),
            state: "TASK_FINISHED".into(),
            message: "exit 0".into(),
        };
        assert_eq!(
            progress_line(&mut counts, &finished).as_deref(),
            Some("[1/2 finished, 0 failed] b-0000 TASK_FINISHED (exit 0)")
        );
        let failed = BatchProgress::Update {
            task_id: "b-0001".into(),
            state: "TASK_FAILED".into(),
            message: String::new(),
        };
        assert_eq!(
            progress_line(&mut counts, &failed).as_deref(),
            Some("[1/2 finished, 1 failed] b-0001 TASK_FAILED")
        );
    }
}
