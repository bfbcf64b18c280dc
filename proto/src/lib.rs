//! Proffer's wire protocol (`proffer.v1`) and the domain types built on it.
//!
//! # Layout
//! - [`v1`]: code generated from `proto/proffer/v1/proffer.proto` (messages and tonic services).
//! - [`resources`]: fixed-point [`Resources`] with Mesos semantics, parsed from text and JSON.
//! - [`task_state`]: helpers on [`v1::TaskState`] (terminal states, names).
//! - [`offer_filters`]: building [`v1::OfferFilters`].
//! - [`auth`]: credentials, the `authorization` header/metadata, the servers' gates.
//! - [`leader`]: [`leader::MasterList`], the masters a client may talk to, and following a
//!   standby's hint to the leader.

pub mod auth;
#[doc(hidden)]
pub mod fuzzing;
pub mod leader;
pub mod offer_filters;
pub mod resources;
pub mod task_state;

/// Generated protocol code, package `proffer.v1`.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod v1 {
    tonic::include_proto!("proffer.v1");
}

pub use resources::{ResourceError, Resources};

#[cfg(test)]
mod fuzz_tests;
