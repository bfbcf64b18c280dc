//! The registry writer: a blocking thread that commits the core's persist batches in order,
//! coalescing whatever queued up while it wrote (group commit), and acknowledges each batch to
//! the core. A failing registry is retried every second; meanwhile the core holds everything
//! that depends on it, `/health` says why and `/metrics` counts the failures.

use std::sync::mpsc::{Receiver, Sender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;
use tokio_util::sync::CancellationToken;

use super::core_task::CoreHandle;
use crate::registry::{Registry, RegistryInfo, RegistryOp};

/// A batch for the writer: its sequence number and ops.
pub(crate) type Batch = (u64, Vec<RegistryOp>);

/// What `/state`, `/health` and `/metrics` show about the registry.
#[derive(Debug)]
pub(crate) struct RegistryStatus {
    /// Backend and location.
    pub info: RegistryInfo,
    /// How many times this registry has been recovered from (1 = first start).
    pub recoveries: u64,
    /// Commits done.
    pub writes: Counter,
    /// Commits that failed.
    pub failures: Counter,
    /// Record bytes written.
    pub bytes: Counter,
    /// Commit latency in seconds.
    pub latency: Histogram,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    last_write_unix_ms: Option<u64>,
    error: Option<String>,
}

impl RegistryStatus {
    /// A status for `info`.
    pub fn new(info: RegistryInfo, recoveries: u64) -> Self {
        RegistryStatus {
            info,
            recoveries,
            writes: Counter::default(),
            failures: Counter::default(),
            bytes: Counter::default(),
            // 100 µs … ~3 s.
            latency: Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
                0.0001, 2.0, 16,
            )),
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// When the last commit succeeded (Unix ms).
    pub fn last_write_unix_ms(&self) -> Option<u64> {
        self.lock().last_write_unix_ms
    }

    /// The current write error, if the registry is failing.
    pub fn error(&self) -> Option<String> {
        self.lock().error.clone()
    }
}

/// Starts the writer thread; batches sent on the returned channel are committed in order and
/// acknowledged to `core`. The thread ends when the sender is dropped or `cancel` fires; join
/// it to know the registry is closed (a restart on the same work dir can then open it).
pub(crate) fn spawn(
    registry: Box<dyn Registry>,
    core: CoreHandle,
    status: Arc<RegistryStatus>,
    cancel: CancellationToken,
) -> std::io::Result<(Sender<Batch>, std::thread::JoinHandle<()>)> {
    let (tx, rx) = std::sync::mpsc::channel::<Batch>();
    let thread = std::thread::Builder::new()
        .name("registry-writer".into())
        .spawn(move || write_loop(registry, rx, core, &status, &cancel))?;
    Ok((tx, thread))
}

fn write_loop(
    mut registry: Box<dyn Registry>,
    rx: Receiver<Batch>,
    core: CoreHandle,
    status: &RegistryStatus,
    cancel: &CancellationToken,
) {
    while let Ok((mut seq, mut ops)) = rx.recv() {
        // Group commit: everything queued meanwhile goes into the same transaction.
        loop {
            match rx.try_recv() {
                Ok((s, more)) => {
                    seq = s;
                    ops.extend(more);
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => break,
            }
        }
        if !commit_until_done(registry.as_mut(), &ops, status, cancel) {
            return;
        }
        if core.persisted(seq).is_err() {
            return;
        }
    }
}

/// Commits `ops`, retrying every second while the registry fails; false if cancelled first,
/// or if the write was fenced off (this master no longer leads: it cancels the server).
fn commit_until_done(
    registry: &mut dyn Registry,
    ops: &[RegistryOp],
    status: &RegistryStatus,
    cancel: &CancellationToken,
) -> bool {
    loop {
        let started = Instant::now();
        match registry.commit(ops) {
            Ok(stats) => {
                status.latency.observe(started.elapsed().as_secs_f64());
                status.writes.inc();
                status.bytes.inc_by(stats.bytes as u64);
                let mut inner = status.lock();
                if inner.error.take().is_some() {
                    tracing::info!(registry = %status.info.location, "registry writes succeed again");
                }
                inner.last_write_unix_ms = Some(super::unix_ms());
                return true;
            }
            Err(e @ crate::registry::RegistryError::Fenced { .. }) => {
                status.failures.inc();
                tracing::error!(registry = %status.info.location, error = %e,
                    "registry write fenced off: another master leads; stepping down");
                status.lock().error = Some(e.to_string());
                cancel.cancel();
                return false;
            }
            Err(e) => {
                status.failures.inc();
                tracing::error!(registry = %status.info.location, error = %e,
                    "registry write failed; the master holds every change until it succeeds (retrying every second)");
                status.lock().error = Some(e.to_string());
                for _ in 0..10 {
                    if cancel.is_cancelled() {
                        return false;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    }
}
