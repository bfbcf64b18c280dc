//! The Mesos v1 scheduler HTTP API, `POST /api/v1/scheduler` (issue 19), another shell over
//! the core next to the gRPC `Scheduler` service: a Mesos framework and a gRPC framework share
//! one cluster and one allocator, and the core does not know which protocol a framework speaks.
//!
//! # Layout
//! - `handler`: the endpoint (method, content negotiation, body limit, decoding, the
//!   `Mesos-Stream-Id` checks, SUBSCRIBE's RecordIO event stream, errors as text).
//! - `to_proffer`: Mesos calls → Proffer calls (pure).
//! - `to_mesos`: Proffer events → Mesos events (pure).
//! - `media`: `Content-Type` / `Accept` negotiation (pure).
//! - `recordio`: RecordIO framing (pure).

mod handler;
pub(crate) mod media;
pub(crate) mod recordio;
pub(crate) mod to_mesos;
pub(crate) mod to_proffer;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_auth;
#[cfg(test)]
mod tests_translate;

pub(crate) use handler::routes;
