//! The Proffer master.
//!
//! # Layout
//! - [`core`]: the sans-IO state machine (registration, offers, tasks, timeouts); no clock, socket,
//!   file or unseeded RNG inside — driven by `handle(now, input)` / `tick(now)` / `take_outbox()`.
//! - [`allocator`]: synchronous, I/O-free allocator (DRF sorter, filters, suppression).
//! - [`registry`]: where the master's records survive restarts (trait; in-memory and redb
//!   backends).
//! - [`server`]: the tokio shell: tonic services and axum HTTP on one port, feeding the core.

pub mod allocator;
pub mod core;
pub mod registry;
pub mod server;
