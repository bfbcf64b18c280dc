//! Proffer agent: registers with the master over a gRPC session stream and runs tasks as real
//! processes in per-task sandboxes, reporting their states reliably.
//!
//! # Layout
//! - [`config`]: [`AgentConfig`] (Mesos defaults) and `--attributes` parsing.
//! - [`detect`]: resource auto-detection (cpus, mem, disk, ports) as Mesos does it.
//! - [`sandbox`]: id checks and the sandbox directory layout.
//! - [`checkpoint`]: the persisted `agent_id` file (atomic writes).
//! - [`core`]: the agent's pure core (inputs with a timestamp → effects): the status update
//!   stream (per-task FIFO, retry with backoff until acked, write-ahead commits), task states by
//!   the shared transition table. [`status_updates`] re-exports its update manager.
//! - [`process`]: task commands: environment, cgroup entry wrapper, user, exit classification.
//! - [`executor`]: the per-task executor (`proffer executor`) and its file protocol with the agent.
//! - [`containerizer`]: the agent's side of executors: launch, watch, kill, re-attach.
//! - [`cgroups`]: cgroups v1/v2 detection, limits, OOM detection, usage.
//! - [`checks`]: health and readiness checks (COMMAND, HTTP, TCP; Mesos defaults).
//! - [`fetcher`]: URIs into the sandbox (file, http, https via curl; extract, checksum, cache).
//! - [`image`]: the image store (OCI layout / `docker save`, verified, layer cache, LRU GC).
//! - [`oci`]: running containers with `crun`/`runc` (runtime spec, bundle, writable rootfs).
//! - [`http`]: the agent's HTTP endpoint (state, metrics, sandbox browsing, drain).
//! - [`http_auth`]: authentication and `access_sandboxes` on the HTTP endpoint.
//! - [`files`]: safe opening of sandbox files for the endpoint (no symlinks, no FIFOs).
//! - `session`: one connection to the master (dial, bidi stream, forward messages).
//! - `agent`: the agent loop tying connection, tasks and status updates together
//!   (`agent::tasks`: task lifecycle and recovery; `agent::housekeeping`: HTTP view, GC).
//! - [`error`]: the crate error type, [`AgentError`].

pub mod cgroups;
pub mod checkpoint;
pub mod checks;
pub mod config;
pub mod containerizer;
pub mod core;
pub mod detect;
pub mod error;
pub mod executor;
pub mod fetcher;
pub mod files;
pub mod http;
pub mod http_auth;
pub mod image;
pub mod journal;
pub mod oci;
pub mod process;
pub mod sandbox;
/// The status update manager, now part of the [`core`] (kept under its old path).
pub mod status_updates {
    pub use crate::core::updates::*;
}

mod agent;
mod session;

pub use config::{AgentConfig, ExecutorLauncher, IsolationMode, parse_attributes};
pub use detect::detect_resources;
pub use error::AgentError;

use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// Runs the agent until `cancel` fires: registers (or re-registers with the saved id), runs
/// the tasks the master sends, reconnects with backoff when the master goes away. With several
/// masters (`AgentConfig::master` = `h1:5050,h2:5050`) it follows a standby's hint to the
/// leader at once and otherwise tries the next master after the backoff. On cancel every task
/// is killed (SIGTERM, SIGKILL after its grace period) and `Ok(())` is returned.
///
/// Fails on start-up problems (master list, work directory, resource detection), and with
/// [`AgentError::JournalFailed`] when its checkpoint journal cannot be written (a full disk):
/// then it stops without killing its tasks, which run on under their executors for the agent
/// started next.
pub async fn run(config: AgentConfig, cancel: CancellationToken) -> Result<(), AgentError> {
    let span = tracing::info_span!("agent", master = %config.master, work_dir = %config.work_dir.display());
    let agent = agent::Agent::new(config)?;
    agent.run(cancel).instrument(span).await
}
