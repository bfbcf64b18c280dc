//! The Proffer master's pure part, shared by the server, the in-process harness and the
//! simulator: no async runtime, no network, no disk, no clock.
//!
//! # Layout
//! - [`core`]: the sans-IO state machine (registration, offers, tasks, timeouts, persistence
//!   ops, recovery, partitions); driven by `handle(now, input)` / `tick(now)` / `take_outbox()`.
//! - [`authz`]: Mesos-style ACLs and the [`authz::Authorizer`] that evaluates them.
//! - [`allocator`]: synchronous, I/O-free allocator (DRF sorter, filters, suppression).
//! - [`registry`]: what must survive a restart: the records, the trait backends implement, an
//!   in-memory backend and the conformance suite.
//! - [`time`]: [`time::Timestamp`], the time values the core and the allocator are given.
//! - [`rng`]: the seeded [`rng::SplitMix64`].

pub mod allocator;
pub mod authz;
pub mod core;
pub mod registry;
pub mod rng;
pub mod time;
