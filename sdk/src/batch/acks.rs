//! Acknowledgements off the batch's event loop, in batches: statuses queue on a channel; a
//! worker takes everything queued (up to 256) and sends it as one `AcknowledgeBatch` call, up
//! to 16 calls in flight. When the master refuses a batch, its acknowledgements go one by one:
//! those of distinct tasks concurrently, a task's own in order, one round after another.

use std::collections::HashMap;

use futures::future::join_all;
use proffer_proto::v1;
use tokio::sync::mpsc;

use crate::driver::Driver;

/// The most acknowledgements in one batch.
const MAX_IN_FLIGHT: usize = 256;
/// The most batches in flight at once.
const MAX_BATCHES: usize = 16;

/// Queues acknowledgements for the worker.
#[derive(Debug)]
pub(crate) struct Acker {
    tx: Option<mpsc::UnboundedSender<v1::TaskStatus>>,
    worker: Option<tokio::task::JoinHandle<()>>,
}

impl Acker {
    /// Starts the worker acknowledging through `driver`.
    pub(crate) fn start(driver: Driver) -> Acker {
        let (tx, rx) = mpsc::unbounded_channel();
        let worker = tokio::spawn(run(driver, rx));
        Acker {
            tx: Some(tx),
            worker: Some(worker),
        }
    }

    /// Queues `status` for acknowledgement (statuses without a uuid need none).
    pub(crate) fn ack(&self, status: &v1::TaskStatus) {
        if status.uuid.is_empty() {
            return;
        }
        if let Some(tx) = &self.tx {
            let _ = tx.send(status.clone());
        }
    }

    /// Waits until every queued acknowledgement was sent, for at most `within`; what is not
    /// sent by then is dropped (the run is over: the framework is about to be torn down).
    pub(crate) async fn finish(&mut self, within: std::time::Duration) {
        self.tx = None;
        if let Some(mut w) = self.worker.take()
            && tokio::time::timeout(within, &mut w).await.is_err()
        {
            w.abort();
        }
    }
}

/// Splits `statuses` into rounds: each round holds at most one status per task, in arrival
/// order, and a task's later statuses go in later rounds.
pub(crate) fn rounds(statuses: Vec<v1::TaskStatus>) -> Vec<Vec<v1::TaskStatus>> {
    let mut rounds: Vec<Vec<v1::TaskStatus>> = Vec::new();
    let mut seen: HashMap<(String, String), usize> = HashMap::new();
    for s in statuses {
        let n = seen
            .entry((s.agent_id.clone(), s.task_id.clone()))
            .or_insert(0);
        if rounds.len() <= *n {
            rounds.push(Vec::new());
        }
        rounds[*n].push(s);
        *n += 1;
    }
    rounds
}

async fn run(driver: Driver, mut rx: mpsc::UnboundedReceiver<v1::TaskStatus>) {
    // Batches go out without waiting for the previous one's replies (a master may answer an
    // acknowledgement only once it is persisted): a task's next update comes only after its
    // previous acknowledgement reached the agent, so batches cannot reorder one task's.
    let mut in_flight = tokio::task::JoinSet::new();
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_IN_FLIGHT {
            match rx.try_recv() {
                Ok(s) => batch.push(s),
                Err(_) => break,
            }
        }
        while in_flight.len() >= MAX_BATCHES {
            let _ = in_flight.join_next().await;
        }
        while in_flight.try_join_next().is_some() {}
        in_flight.spawn(send_batch(driver.clone(), batch));
    }
    while in_flight.join_next().await.is_some() {}
}

/// Sends one batch's acknowledgements in one call; if the master refuses it (one bad entry
/// refuses all, or the master predates the call), one by one, round after round, so every good
/// acknowledgement still lands and each bad one is logged with its task.
async fn send_batch(driver: Driver, batch: Vec<v1::TaskStatus>) {
    let Err(e) = driver.acknowledge_batch(&batch).await else {
        return;
    };
    tracing::debug!(error = %e, n = batch.len(), "batch acknowledgement refused; one by one");
    for round in rounds(batch) {
        let sent = join_all(round.iter().map(|s| driver.acknowledge(s))).await;
        for (s, r) in round.iter().zip(sent) {
            if let Err(e) = r {
                tracing::warn!(task_id = %s.task_id, agent_id = %s.agent_id, error = %e,
                    "acknowledge failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(task: &str, uuid: u8) -> v1::TaskStatus {
        v1::TaskStatus {
            task_id: task.into(),
            agent_id: "a".into(),
            uuid: vec![uuid],
            ..Default::default()
        }
    }

    #[test]
    fn a_tasks_acknowledgements_stay_in_order_across_rounds() {
        let r = rounds(vec![
            status("t1", 1),
            status("t2", 2),
            status("t1", 3),
            status("t3", 4),
            status("t1", 5),
        ]);
        let ids: Vec<Vec<u8>> = r
            .iter()
            .map(|round| round.iter().map(|s| s.uuid[0]).collect())
            .collect();
        assert_eq!(ids, vec![vec![1, 2, 4], vec![3], vec![5]]);
        assert!(rounds(Vec::new()).is_empty());
    }
}
