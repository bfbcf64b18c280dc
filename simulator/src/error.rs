//! The simulator's errors; each names the file, line and field at fault where there is one.

use std::path::PathBuf;

/// Errors from loading scenarios and traces, running, and writing results.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// A scenario file is malformed or inconsistent.
    #[error("{}:{line}: field `{field}`: {message}", path.display())]
    Scenario {
        /// The scenario file.
        path: PathBuf,
        /// 1-based line (0 when unknown).
        line: usize,
        /// The field at fault (a key or a dotted path).
        field: String,
        /// What is wrong.
        message: String,
    },
    /// A trace file has a bad record.
    #[error("{}:{line}: field `{field}`: {message}", path.display())]
    Trace {
        /// The trace file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// The column or field at fault.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A plot could not be drawn.
    #[error("plot {}: {message}", path.display())]
    Plot {
        /// The output file.
        path: PathBuf,
        /// What failed.
        message: String,
    },
    /// A policy named on the command line or in a scenario does not exist in this build.
    #[error("policy `{name}` is not available in this build (available: {available})")]
    UnknownPolicy {
        /// The name asked for.
        name: String,
        /// The names that exist.
        available: String,
    },
    /// The core benchmark (`proffer bench core`) was given parameters it cannot run, or made
    /// no progress.
    #[error("core benchmark: {0}")]
    Bench(String),
}

impl SimError {
    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        SimError::Io {
            path: path.into(),
            source,
        }
    }
}
