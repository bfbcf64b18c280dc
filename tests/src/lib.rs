//! Shared helpers for Proffer's cross-crate tests.
//!
//! # Layout
//! - [`procs`]: start the real `proffer` binary (master, agents, frameworks) as child processes,
//!   find free loopback ports, and wait for readiness — with cleanup on drop.

pub mod procs;
