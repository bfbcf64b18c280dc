//! Errors returned by the scheduler driver.

/// What went wrong talking to the master. gRPC failures keep the status code and message.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DriverError {
    /// The master address could not be turned into an endpoint.
    #[error("invalid master address `{address}`: {message}")]
    InvalidAddress {
        /// The address as given.
        address: String,
        /// Why it was refused.
        message: String,
    },
    /// No connection could be opened to the master.
    #[error("cannot connect to master at {address}: {message}")]
    Connect {
        /// The address that was tried (`HOST:PORT`).
        address: String,
        /// The transport error, with its causes.
        message: String,
    },
    /// The `Subscribe` call itself failed with a gRPC status.
    #[error("subscribe to {address} failed: {code:?}: {message}")]
    Subscribe {
        /// The master address.
        address: String,
        /// The gRPC status code.
        code: tonic::Code,
        /// The status message.
        message: String,
        /// The leader a standby master named (`HOST:PORT`), when it turned the call away.
        leader: Option<String>,
    },
    /// The master answered the subscription with an ERROR event.
    #[error("master refused the subscription: {message}")]
    Refused {
        /// The master's message.
        message: String,
    },
    /// The event stream did not start with SUBSCRIBED (or ended before it).
    #[error("protocol error: {message}")]
    Protocol {
        /// What was wrong.
        message: String,
    },
    /// A unary call failed; `code` and `message` are the gRPC status.
    #[error("{call} failed: {code:?}: {message}")]
    Call {
        /// The call name, e.g. `accept`.
        call: &'static str,
        /// The gRPC status code.
        code: tonic::Code,
        /// The status message.
        message: String,
    },
}

impl DriverError {
    /// Wraps a gRPC status from call `call`.
    pub(crate) fn call(call: &'static str, status: &tonic::Status) -> Self {
        DriverError::Call {
            call,
            code: status.code(),
            message: status.message().to_string(),
        }
    }

    /// Wraps a failed `Subscribe` on `address`, keeping a standby's leader hint.
    pub(crate) fn subscribe(address: &str, status: &tonic::Status) -> Self {
        DriverError::Subscribe {
            address: address.to_string(),
            code: status.code(),
            message: status.message().to_string(),
            leader: proffer_proto::leader::leader_hint(status),
        }
    }

    /// The leader a standby master named when it refused the subscription (`HOST:PORT`).
    pub fn leader_hint(&self) -> Option<&str> {
        match self {
            DriverError::Subscribe { leader, .. } => leader.as_deref(),
            _ => None,
        }
    }

    /// The gRPC status code, when the error came from one.
    pub fn code(&self) -> Option<tonic::Code> {
        match self {
            DriverError::Subscribe { code, .. } | DriverError::Call { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// Renders an error with its whole `source()` chain (`a: b: c`).
pub(crate) fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        let s = e.to_string();
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        cur = e.source();
    }
    out
}
