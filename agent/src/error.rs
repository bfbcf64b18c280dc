//! The agent's error type.

use std::path::PathBuf;

/// Everything that can go wrong in the agent outside of a single task.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// A file-system operation failed.
    #[error("{context} {path}: {source}")]
    Io {
        /// What the agent was doing, e.g. "writing agent id".
        context: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// `--attributes` text could not be parsed.
    #[error("invalid attributes {input:?}: {reason}")]
    InvalidAttributes {
        /// The text given.
        input: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Resource detection or parsing failed.
    #[error("resources: {0}")]
    Resources(String),
    /// The resources to offer are below Mesos's minimum allocatable resources.
    #[error("nothing allocatable: {resources} (an agent needs at least cpus 0.01 or mem 32 MB)")]
    NothingAllocatable {
        /// What was given, e.g. "only `disk:100`" or "no resources at all".
        resources: String,
    },
    /// Isolation that was required is not available on this host.
    #[error("isolation: {0}")]
    Isolation(String),
    /// The agent's HTTP endpoint could not be started.
    #[error("http endpoint on {address}: {source}")]
    Http {
        /// The address.
        address: std::net::SocketAddr,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The checkpoint journal could not be written (a full disk, an I/O error): the agent
    /// stopped, leaving its tasks running under their executors ([`crate::run`]).
    #[error(
        "the checkpoint journal cannot be written ({0}): the agent stopped rather than report \
         what it could not remember after a restart; its tasks run on under their executors, and \
         the agent started again once its journal can be written (free disk space) recovers them"
    )]
    JournalFailed(Box<AgentError>),
    /// The master address is not usable as a URL.
    #[error("invalid master address {address:?}: {reason}")]
    InvalidMaster {
        /// The address given.
        address: String,
        /// Why it is rejected.
        reason: String,
    },
}

impl AgentError {
    /// Builds an [`AgentError::Io`].
    pub(crate) fn io(
        context: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        AgentError::Io {
            context,
            path: path.into(),
            source,
        }
    }
}
