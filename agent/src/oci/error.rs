//! The OCI runtime module's error type.

use std::path::PathBuf;

/// What can go wrong finding the runtime, writing a bundle or running a container.
#[derive(Debug, thiserror::Error)]
pub enum OciError {
    /// No OCI runtime was found.
    #[error("no OCI runtime: {0}")]
    NoRuntime(String),
    /// A file-system operation failed.
    #[error("{context} {path}: {source}")]
    Io {
        /// What was being done.
        context: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The runtime spec could not be built or written.
    #[error("runtime spec for {what}: {reason}")]
    Spec {
        /// Which part of the spec.
        what: &'static str,
        /// The error.
        reason: String,
    },
    /// A container id or task description is unusable.
    #[error("invalid {what} {value:?}: {reason}")]
    Invalid {
        /// What was invalid, e.g. "container id".
        what: &'static str,
        /// The value given.
        value: String,
        /// Why.
        reason: String,
    },
    /// The runtime could not be started.
    #[error("running {runtime} {args}: {source}")]
    Spawn {
        /// The runtime binary.
        runtime: PathBuf,
        /// Its arguments.
        args: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The runtime (or `mount`) ran and reported a failure.
    #[error("{command} failed ({status}): {stderr}")]
    Failed {
        /// The command line.
        command: String,
        /// Its exit status.
        status: String,
        /// What it wrote to stderr (trimmed).
        stderr: String,
    },
}

impl OciError {
    /// Builds an [`OciError::Io`].
    pub(crate) fn io(
        context: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| OciError::Io {
            context,
            path,
            source,
        }
    }
}
