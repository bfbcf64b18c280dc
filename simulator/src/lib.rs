//! Proffer's simulator: deterministic, single-threaded discrete-event replays of workloads
//! through the **real** master core and allocator (`proffer_master_core::core::Master`), with
//! simulated agents and framework schedulers speaking the real protocol.
//!
//! ```no_run
//! # fn main() -> Result<(), proffer_sim::SimError> {
//! let scenario = proffer_sim::Scenario::load("simulator/scenarios/drf-paper.toml".as_ref())?;
//! let mut sim = proffer_sim::Sim::new(&scenario, scenario.master.policy)?;
//! sim.run();
//! let summary = proffer_sim::report::write_outputs(&sim, "out".as_ref(), true)?;
//! println!("{}", proffer_sim::report::table(&[&summary]));
//! # Ok(()) }
//! ```
//!
//! # Layout
//! - [`scenario`]: the TOML scenario format, parsed and checked (errors name file/line/field).
//! - [`dist`]: duration distributions and arrival processes (Poisson, bursty, diurnal).
//! - [`engine`]: event queue, simulated agents and frameworks, the run loop.
//! - [`metrics`]: samples over time, Jain's index, percentiles, timing.
//! - [`report`]: summary, CSV/JSON output, text tables.
//! - [`plot`]: SVG plots, prepared (series chosen, axes fitted) apart from drawing.
//! - [`trace`]: Google 2011, Alibaba 2018 and our own trace readers.
//! - [`generate`]: synthetic scenario generation (`proffer sim gen`).
//! - [`policy`]: the allocator policies a run can use.
//! - [`compare`]: one workload under several policies.
//! - [`core_bench`]: launches per second through the master core alone (`proffer bench core`).
//! - `id_hash`: a fast hasher for simulator-assigned integer keys.

pub mod compare;
pub mod core_bench;
pub mod dist;
pub mod engine;
pub mod error;
pub mod generate;
mod id_hash;
pub mod metrics;
pub mod plot;
pub mod policy;
pub mod report;
pub mod scenario;
pub mod trace;

pub use engine::Sim;
pub use error::SimError;
pub use policy::Policy;
pub use scenario::Scenario;
