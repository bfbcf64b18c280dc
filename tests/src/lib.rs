//! Shared helpers for Proffer's cross-crate tests.
//!
//! # Layout
//! - [`faults`]: a deterministic in-process cluster (real master core, simulated agents and
//!   frameworks, FIFO connections on a virtual clock) with seeded connection breaks and delays.
//! - [`procs`]: start the real `proffer` binary (master, agents, frameworks) as child processes,
//!   find free loopback ports, and wait for readiness — with cleanup on drop.
//! - [`ports`]: loopback ports reserved for a test binary.
//! - [`leftovers`]: end the task processes a test's killed agents leave behind.
//! - [`long_tasks`]: many long `sleep` tasks through the SDK driver, for failover tests.
//! - [`inproc`]: a real master server and agents in the test's own process.
//! - [`standby`]: a fake standby master that turns every gRPC call away to a leader.

pub mod faults;
pub mod inproc;
pub mod leftovers;
pub mod long_tasks;
pub mod ports;
pub mod procs;
pub mod standby;
