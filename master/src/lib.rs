//! The Proffer master: the server shell around the pure core of `proffer-master-core`.
//!
//! # Layout
//! - [`core`], [`allocator`]: re-exported from `proffer-master-core` (the sans-IO state machine
//!   and the allocator; no clock, socket, file or unseeded RNG inside).
//! - [`registry`]: the registry trait and records (from the core crate) and the redb backend.
//! - [`etcd`]: etcd connection settings, the leader election and a local etcd launcher.
//! - [`server`]: the tokio shell: tonic services and axum HTTP on one port, feeding the core,
//!   and the registry writer.

pub use proffer_master_core::{allocator, authz, core};

pub mod registry {
    //! Where the master's records survive restarts: the trait, the records and the in-memory
    //! backend from `proffer-master-core`, the embedded redb backend and the etcd backend.
    pub use proffer_master_core::registry::*;

    mod etcd_store;
    mod redb_store;
    pub use etcd_store::{EtcdRegistry, Fence};
    pub use redb_store::{FILE_NAME, RedbRegistry};
}

pub mod etcd;
pub mod server;
