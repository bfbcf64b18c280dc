//! Proffer agent: registers with the master over a gRPC session stream and runs tasks as real
//! processes in per-task sandboxes, reporting their states reliably.
//!
//! # Layout
//! - [`config`]: [`AgentConfig`] (Mesos defaults) and `--attributes` parsing.
//! - [`detect`]: resource auto-detection (cpus, mem, disk, ports) as Mesos does it.
//! - [`sandbox`]: id checks and the sandbox directory layout.
//! - [`checkpoint`]: the persisted `agent_id` file (atomic writes).
//! - [`status_updates`]: the status update manager (per-task FIFO, retry with backoff until acked).
//! - [`process`]: task processes: command, environment, process groups, kill, exit classification.
//! - `session`: one connection to the master (dial, bidi stream, forward messages).
//! - `agent`: the agent loop tying connection, tasks and status updates together.
//! - [`error`]: the crate error type, [`AgentError`].

pub mod checkpoint;
pub mod config;
pub mod detect;
pub mod error;
pub mod process;
pub mod sandbox;
pub mod status_updates;

mod agent;
mod session;

pub use config::{AgentConfig, parse_attributes};
pub use detect::detect_resources;
pub use error::AgentError;

use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// Runs the agent until `cancel` fires: registers (or re-registers with the saved id), runs
/// the tasks the master sends, reconnects with backoff when the master goes away. On cancel
/// every task is killed (SIGTERM, SIGKILL after its grace period) and `Ok(())` is returned.
///
/// Fails only on start-up problems (work directory, resource detection).
pub async fn run(config: AgentConfig, cancel: CancellationToken) -> Result<(), AgentError> {
    if config.master.trim().is_empty() {
        return Err(AgentError::InvalidMaster {
            address: config.master.clone(),
            reason: "empty".into(),
        });
    }
    let span = tracing::info_span!("agent", master = %config.master, work_dir = %config.work_dir.display());
    let agent = agent::Agent::new(config)?;
    agent.run(cancel).instrument(span).await;
    Ok(())
}
