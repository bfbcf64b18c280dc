//! The declarative service layer, in the spirit of DC/OS Commons.
//!
//! A YAML [`ServiceSpec`] (pods → tasks, resources, ports, volumes, checks, placement rules,
//! templates, custom plans) compiles into plans → phases → steps. The scheduler matches pending
//! steps to offers through an evaluation pipeline that records, for every offer, why it was used
//! or declined, and for every waiting step what it waits for (the `why` view). State lives in a
//! redb store so a restarted scheduler resumes without duplicating tasks.
//!
//! Modules: [`spec`] (model, parsing), [`template`], [`validate`] (by field path, and spec
//! changes), [`plan`] (model, strategies, operator actions), [`compile`] (spec → plans),
//! [`placement`], [`evaluate`] (offer pipeline: agent, placement, resources, reservation,
//! volumes), [`store`] (redb), [`core`] (the sans-network scheduler state machine), [`runner`]
//! (the driver loop), [`http`] (the framework API and a small client), [`diff`] (what an update
//! changes, in rollout order), [`fit`] (whether its pods can be placed on the current agents)
//! and [`preview`] (both, as `proffer service plan-update` shows them; an update that cannot be
//! placed is refused unless forced). A restart starts the replacement before stopping the old
//! task where the spec allows it (no volumes, no fixed ports, no reservations), falling back
//! to stop-first when there is no room for both or the replacement fails.
//!
//! Readiness is read from `TaskStatus.ready` when an update carries it, else from the agent's
//! older convention (RUNNING with reason `REASON_TASK_CHECK_STATUS_UPDATED` and a message
//! `ready: …`). A lost agent (FAILURE event) starts the permanent-failure clock of its pods;
//! they move after `permanent_after_ms`.

pub mod compile;
pub mod core;
pub mod diff;
pub mod evaluate;
pub mod fit;
pub mod http;
pub mod placement;
pub mod plan;
pub mod preview;
pub mod runner;
pub mod spec;
pub mod store;
pub mod template;
pub mod validate;

pub use plan::{Phase, Plan, RollupStatus, Step, StepStatus};
pub use spec::{Goal, PlacementRule, PodSpec, ServiceSpec, StrategyKind, TaskSpec};

/// An invalid spec or spec change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// A field is wrong; `path` is dotted (`pods.web.tasks.server.cpus`), empty for the document.
    #[error("{}{reason}", if .path.is_empty() { String::new() } else { format!("{}: ", .path) })]
    Field {
        /// Where.
        path: String,
        /// Why.
        reason: String,
    },
    /// A template placeholder cannot be filled.
    #[error("template error on line {line}: {reason}")]
    Template {
        /// 1-based line of the YAML text.
        line: usize,
        /// Why.
        reason: String,
    },
}
