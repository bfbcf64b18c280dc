//! Proffer SDK: a client library for writing frameworks (schedulers) against a Proffer master.
//!
//! # Layout
//! - [`driver`]: the async scheduler client ([`Driver`], [`EventStream`]): subscribe, calls, re-subscription.
//! - [`operator`]: `Operator` calls on the leading master of a list ([`operator::call`]).
//! - [`capacity`]: whether any agent could ever hold a piece of work (the largest agent when not).
//! - [`batch`]: an example batch framework ([`run_batch`]) that packs shell tasks into offers.
//! - [`service`]: the declarative service layer (YAML spec, plans/phases/steps, offer evaluation with a `why` view, redb state store, scheduler, HTTP API).

pub mod batch;
pub mod capacity;
pub mod driver;
pub mod operator;
pub mod service;

pub use batch::{BatchError, BatchProgress, BatchSpec, BatchSummary, run_batch};
pub use driver::{Driver, DriverConfig, DriverError, DriverEvent, EventStream, command_task};
