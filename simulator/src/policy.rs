//! Allocation policies the simulator can ask the real allocator for.
//!
//! Each name maps onto what `proffer_master_core::allocator::Policy` provides; nothing here
//! re-implements allocation. `drf` and `wdrf` both use the allocator's DRF sorter: `drf` leaves
//! every role at weight 1, `wdrf` sets the scenario's role weights on the master.

use proffer_master_core::allocator::Policy as AllocatorPolicy;
use proffer_master_core::core::MasterConfig;
use serde::Deserialize;

use crate::error::SimError;

/// A policy the simulator can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(try_from = "String", into = "String")]
pub enum Policy {
    /// Dominant Resource Fairness, all role weights 1.
    #[default]
    Drf,
    /// Weighted DRF: the scenario's framework `weight`s become role weights.
    WeightedDrf,
    /// The allocator's seeded random order (a baseline).
    Random,
}

/// Every policy this build offers, by name.
pub const AVAILABLE: &[Policy] = &[Policy::Drf, Policy::WeightedDrf, Policy::Random];

impl Policy {
    /// Parses a policy name (`drf`, `wdrf`, `random`).
    pub fn parse(name: &str) -> Result<Policy, SimError> {
        match name.trim().to_ascii_lowercase().as_str() {
            "drf" => Ok(Policy::Drf),
            "wdrf" | "weighted-drf" => Ok(Policy::WeightedDrf),
            "random" => Ok(Policy::Random),
            _ => Err(SimError::UnknownPolicy {
                name: name.to_string(),
                available: AVAILABLE
                    .iter()
                    .map(|p| p.name())
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
        }
    }

    /// The policy's name.
    pub fn name(self) -> &'static str {
        match self {
            Policy::Drf => "drf",
            Policy::WeightedDrf => "wdrf",
            Policy::Random => "random",
        }
    }

    /// Sets the allocator policy in a master configuration.
    pub fn apply(self, config: &mut MasterConfig) {
        config.policy = match self {
            Policy::Drf | Policy::WeightedDrf => AllocatorPolicy::Drf,
            Policy::Random => AllocatorPolicy::Random,
        };
    }

    /// True if role weights from the scenario are set on the master.
    pub fn uses_weights(self) -> bool {
        self == Policy::WeightedDrf
    }
}

impl TryFrom<String> for Policy {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Policy::parse(&s).map_err(|e| e.to_string())
    }
}

impl From<Policy> for String {
    fn from(p: Policy) -> String {
        p.name().to_string()
    }
}
