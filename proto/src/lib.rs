//! Proffer's wire protocol (`proffer.v1`) and the domain types built on it.
//!
//! # Layout
//! - [`v1`]: code generated from `proto/proffer/v1/proffer.proto` (messages and tonic services).
//! - [`mesos`]: Apache Mesos's own v1 messages (`proto/mesos/v1/…`, Apache-2.0), with serde JSON
//!   in Mesos's format, for the Mesos-compatible HTTP APIs.
//! - [`resources`]: fixed-point [`Resources`] with Mesos semantics, parsed from text and JSON.
//! - [`task_state`]: the task state machine ([`task_state::Transition`]: one transition table
//!   shared by agent and master), terminal states, names.
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

/// Apache Mesos's v1 API messages, generated from Mesos's own `.proto` files.
///
/// Every message implements `prost::Message` and serde `Serialize`/`Deserialize` in Mesos's JSON
/// format: proto field names, enums by name, `bytes` in base64, 64-bit integers as numbers
/// (strings are accepted too); unknown fields are skipped.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod mesos {
    /// Package `mesos.v1` and its sub-packages.
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/mesos.v1.rs"));
        include!(concat!(env!("OUT_DIR"), "/mesos.v1.serde.rs"));
        /// Package `mesos.v1.scheduler`.
        pub mod scheduler {
            include!(concat!(env!("OUT_DIR"), "/mesos.v1.scheduler.rs"));
            include!(concat!(env!("OUT_DIR"), "/mesos.v1.scheduler.serde.rs"));
        }
        /// Package `mesos.v1.master` (the operator API).
        pub mod master {
            include!(concat!(env!("OUT_DIR"), "/mesos.v1.master.rs"));
            include!(concat!(env!("OUT_DIR"), "/mesos.v1.master.serde.rs"));
        }
        /// Package `mesos.v1.quota`.
        pub mod quota {
            include!(concat!(env!("OUT_DIR"), "/mesos.v1.quota.rs"));
            include!(concat!(env!("OUT_DIR"), "/mesos.v1.quota.serde.rs"));
        }
        /// Package `mesos.v1.maintenance`.
        pub mod maintenance {
            include!(concat!(env!("OUT_DIR"), "/mesos.v1.maintenance.rs"));
            include!(concat!(env!("OUT_DIR"), "/mesos.v1.maintenance.serde.rs"));
        }
        /// Package `mesos.v1.allocator`.
        pub mod allocator {
            include!(concat!(env!("OUT_DIR"), "/mesos.v1.allocator.rs"));
            include!(concat!(env!("OUT_DIR"), "/mesos.v1.allocator.serde.rs"));
        }
    }
}

pub use resources::{ResourceError, Resources};

/// The protobuf runtime of the generated messages (its `Message` trait encodes and decodes
/// them), for users that do not depend on `prost` themselves.
pub use prost;

#[cfg(test)]
mod fuzz_tests;
#[cfg(test)]
mod mesos_tests;
