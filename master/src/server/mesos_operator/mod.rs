//! Mesos compatibility for operators and dashboards (issue 19, items 2 and 3): read snapshots
//! published by the core, the operator event stream, Mesos's legacy JSON endpoints and the
//! v1 operator API (`POST /api/v1`).
//!
//! # Layout
//! - `snapshots`: [`Snapshots`] (readers) and [`Publisher`] (the core task): every read is
//!   served from an `Arc<Published>` the core publishes, at most once per
//!   `Publisher::DEFAULT_MIN_INTERVAL_MS`, only when something changed and someone reads.
//! - `events`: the operator event stream as a Proffer-side API ([`OperatorEvent`], [`Change`],
//!   a `tokio::sync::broadcast` fed by diffing consecutive snapshots off the core task).
//! - `mesos_json`: Mesos's JSON model of the state (pure).
//! - `legacy`: the routes `/version`, `/master/state`, `/master/state-summary`,
//!   `/master/frameworks`, `/master/slaves`, `/master/tasks`, `/master/roles`,
//!   `/master/redirect`, `/metrics/snapshot`.
//! - `api`: `POST /api/v1`, the v1 operator API (`media`: content negotiation; `to_mesos`,
//!   `from_mesos`: conversions, pure; `stream`: `SUBSCRIBE`'s RecordIO event stream).
//!
//! Every route sits behind the server's authentication middleware and filters what it shows
//! by the caller's view ACLs, as `GET /state` does.

mod api;
pub(crate) mod events;
mod from_mesos;
mod legacy;
pub(crate) mod mesos_json;
pub(crate) mod snapshots;
pub(crate) mod stream;
#[cfg(test)]
mod tests_api;
#[cfg(test)]
mod tests_container;
#[cfg(test)]
mod tests_legacy;
mod to_mesos;

pub use events::{Change, OperatorEvent};
pub use snapshots::{EventSubscription, Published, Publisher, Snapshots};

/// The legacy endpoints and `POST /api/v1` (merged into the HTTP router).
pub(crate) fn routes() -> axum::Router<super::http::HttpState> {
    legacy::routes().merge(api::routes())
}
