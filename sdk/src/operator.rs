//! Calls to the master's `Operator` service on the leader among several masters.
//!
//! [`call`] connects to the current master of a [`MasterList`] and makes one call; a standby
//! that names the leader is followed at once, a master that cannot be reached (or a standby
//! that knows no leader) is skipped for the next, each at most once.

use std::time::Duration;

use proffer_proto::auth::{AuthChannel, Authorize, Credential};
use proffer_proto::leader::{KEEPALIVE_INTERVAL, KEEPALIVE_TIMEOUT, MasterList};
use proffer_proto::v1::operator_client::OperatorClient;

/// A client of the `Operator` service whose calls carry a credential.
pub type Operator = OperatorClient<AuthChannel>;

/// How long to wait for a TCP connection to a master.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why an operator call did not get the leader's answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum OperatorError {
    /// No master could be reached, or none was the leader.
    #[error("{detail}")]
    Unreachable {
        /// The masters tried.
        masters: String,
        /// What went wrong, for people (with the last master's error).
        detail: String,
    },
    /// The leader answered with an error.
    #[error("{}: {}", .0.code(), .0.message())]
    Status(tonic::Status),
}

/// A client of the `Operator` service of `master` (`HOST:PORT`) over a fresh connection,
/// presenting `credential` (else the process credential, if any).
pub async fn connect(master: &str, credential: Option<&Credential>) -> Result<Operator, String> {
    let url = format!("{}://{master}", proffer_net::tls::scheme());
    let endpoint = proffer_net::tls::grpc_endpoint(master)
        .map_err(|e| format!("invalid master address {url}: {e}"))?
        .connect_timeout(CONNECT_TIMEOUT)
        .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
        .keep_alive_timeout(KEEPALIVE_TIMEOUT)
        .keep_alive_while_idle(true);
    let channel = endpoint.connect().await.map_err(|e| {
        format!(
            "cannot connect to the master at {url}: {}",
            crate::driver::error_chain(&e)
        )
    })?;
    Ok(OperatorClient::with_interceptor(
        channel,
        Authorize::new(credential),
    ))
}

/// Makes the call `f` on the leading master of `masters` and returns its reply. `f` may run
/// several times (once per master tried), so it must build its request each time.
/// `masters` is left on the master that answered. Calls present the process credential, if
/// any ([`call_as`] names one).
pub async fn call<T, F>(masters: &mut MasterList, f: F) -> Result<T, OperatorError>
where
    F: AsyncFnMut(&mut Operator) -> Result<tonic::Response<T>, tonic::Status>,
{
    call_as(masters, None, f).await
}

/// [`call`] presenting `credential` (`None`: the process credential, if any).
pub async fn call_as<T, F>(
    masters: &mut MasterList,
    credential: Option<&Credential>,
    mut f: F,
) -> Result<T, OperatorError>
where
    F: AsyncFnMut(&mut Operator) -> Result<tonic::Response<T>, tonic::Status>,
{
    let mut failures = 0;
    let mut started = None;
    loop {
        if failures >= masters.masters().len() {
            failures = 0;
            tokio::time::sleep(crate::driver::ELECTION_RETRY).await;
        }
        let master = masters.current().to_string();
        let failure = match connect(&master, credential).await {
            Err(e) => e,
            Ok(mut client) => match f(&mut client).await {
                Ok(reply) => {
                    masters.settled();
                    return Ok(reply.into_inner());
                }
                Err(status) if masters.follow(&status) => {
                    tracing::debug!(standby = %master, leader = %masters.current(), "following the leader");
                    continue;
                }
                Err(status) if status.code() == tonic::Code::Unavailable => {
                    format!(
                        "the master at {master} is unavailable: {}",
                        status.message()
                    )
                }
                Err(status) => return Err(OperatorError::Status(status)),
            },
        };
        failures += 1;
        // Several masters that all fail may be between leaders: try them again for a while.
        if failures >= masters.masters().len()
            && !crate::driver::election_wait(&mut started, masters.masters().len())
        {
            let detail = if masters.masters().len() == 1 {
                failure
            } else {
                format!("no leading master among {masters}; last: {failure}")
            };
            return Err(OperatorError::Unreachable {
                masters: masters.to_string(),
                detail,
            });
        }
        tracing::debug!(%master, error = %failure, "trying the next master");
        masters.advance();
    }
}

/// [`call`] on a comma-separated master list (`HOST:PORT[,HOST:PORT…]`).
pub async fn call_list<T, F>(masters: &str, f: F) -> Result<T, OperatorError>
where
    F: AsyncFnMut(&mut Operator) -> Result<tonic::Response<T>, tonic::Status>,
{
    let mut list = MasterList::parse(masters).map_err(|e| OperatorError::Unreachable {
        masters: masters.to_string(),
        detail: e.to_string(),
    })?;
    call(&mut list, f).await
}
