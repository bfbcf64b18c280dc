//! Authorization and ownership in the core (issue 18, items 4 and 6).
//!
//! - A framework belongs to the principal it subscribed with (`FrameworkInfo.principal`, set
//!   by the shell from the authenticated principal and kept in its registry record): a
//!   re-subscription with its id by any other principal, or by none, is refused, and so is a
//!   call by an authenticated principal that is not its owner.
//! - An agent belongs to the principal that registered it (`AgentInfo.principal`, kept in its
//!   registry record): re-registering with its id needs the same principal.
//! - An id recorded without a principal (registered before authentication was turned on, or a
//!   framework adopted from an agent's report after a restart without a registry) has no owner
//!   yet: the first principal that re-subscribes or re-registers with it claims it.
//! - The ACLs ([`crate::authz`]) decide `register_frameworks` (each role) on subscription,
//!   `run_tasks` (the task's user), `reserve_resources`/`unreserve_resources` and
//!   `create_volumes`/`destroy_volumes` for ACCEPT operations (with the framework's principal),
//!   and `teardown_frameworks` for operator teardowns. [`filter_snapshot`] and
//!   [`filter_roles`] cut the operator's views down to what a principal may see.

use proffer_proto::Resources;
use proffer_proto::resources::Reservation;
use proffer_proto::v1::{self, operation::Op};

use super::{Master, MasterError, Timestamp};
use crate::authz::{Action, Authorizer};

/// An empty principal is none.
fn principal_of(p: &str) -> Option<&str> {
    Some(p).filter(|p| !p.is_empty())
}

/// The user a task runs as for authorization: its command's, else its framework's.
pub(crate) fn task_user<'a>(task: &'a v1::TaskInfo, framework_user: &'a str) -> &'a str {
    task.command
        .as_ref()
        .map(|c| c.user.as_str())
        .filter(|u| !u.is_empty())
        .unwrap_or(framework_user)
}

impl Master {
    /// Uses `authorizer` for every decision from now on (the default allows everything).
    pub fn set_authorizer(&mut self, authorizer: Authorizer) {
        self.authorizer = authorizer;
    }

    /// The authorizer in use.
    pub fn authorizer(&self) -> &Authorizer {
        &self.authorizer
    }

    /// A subscription: the framework id (when re-subscribing) must be the subscriber's, and
    /// the ACLs must let it register in every one of its roles.
    pub(crate) fn check_subscriber(
        &self,
        info: &v1::FrameworkInfo,
        roles: &[String],
    ) -> Result<(), MasterError> {
        let principal = principal_of(&info.principal);
        if let Some(f) = self.frameworks.get(&info.id)
            && f.principal().is_some()
            && f.principal() != principal
        {
            tracing::warn!(target: crate::authz::AUDIT_TARGET, decision = "refused",
                framework_id = %info.id, principal = principal.unwrap_or(""),
                "re-subscription by a principal that does not own the framework");
            return Err(MasterError::NotOwner {
                what: "framework",
                id: info.id.clone(),
                verb: "re-subscribe as",
                claimant: principal.map(str::to_string),
            });
        }
        for role in roles {
            self.authorizer
                .authorize(principal, Action::RegisterFramework, Some(role))?;
        }
        Ok(())
    }

    /// A framework call made by `principal` (`None`: the call was not authenticated; the
    /// stream id proves the caller): an authenticated caller must be the framework's owner.
    pub fn check_caller(
        &self,
        framework_id: &str,
        principal: Option<&str>,
    ) -> Result<(), MasterError> {
        let Some(p) = principal else {
            return Ok(());
        };
        match self.frameworks.get(framework_id) {
            Some(f) if f.principal().is_some_and(|owner| owner != p) => {
                Err(MasterError::NotOwner {
                    what: "framework",
                    id: framework_id.to_string(),
                    verb: "make calls for",
                    claimant: Some(p.to_string()),
                })
            }
            _ => Ok(()),
        }
    }

    /// An agent's re-registration: the id must have been registered by the same principal.
    pub(crate) fn check_agent_owner(&self, info: &v1::AgentInfo) -> Result<(), MasterError> {
        let stored = if let Some(a) = self.agents.get(&info.id) {
            Some(a.info.principal.as_str())
        } else if let Some(r) = self.recovering.get(&info.id) {
            r.record.info.as_ref().map(|i| i.principal.as_str())
        } else {
            self.unreachable
                .get(&info.id)
                .and_then(|u| u.record.info.as_ref())
                .map(|i| i.principal.as_str())
        };
        match stored {
            Some(owner) if !owner.is_empty() && owner != info.principal => {
                let claimant = principal_of(&info.principal);
                tracing::warn!(target: crate::authz::AUDIT_TARGET, decision = "refused",
                    agent_id = %info.id, principal = claimant.unwrap_or(""),
                    "re-registration by a principal that does not own the agent id");
                Err(MasterError::NotOwner {
                    what: "agent",
                    id: info.id.clone(),
                    verb: "re-register as",
                    claimant: claimant.map(str::to_string),
                })
            }
            _ => Ok(()),
        }
    }

    /// The user framework `id` subscribed as, if it is known.
    pub fn framework_user(&self, id: &str) -> Option<&str> {
        self.frameworks.get(id).map(|f| f.info.user.as_str())
    }

    /// The principal of framework `fw` and its user.
    fn framework_identity(&self, fw: &str) -> (Option<&str>, &str) {
        self.frameworks
            .get(fw)
            .map_or((None, ""), |f| (f.principal(), f.info.user.as_str()))
    }

    /// `run_tasks` for a task of framework `fw`.
    pub(crate) fn authorize_launch(
        &self,
        fw: &str,
        task: &v1::TaskInfo,
    ) -> Result<(), MasterError> {
        let (principal, user) = self.framework_identity(fw);
        self.authorizer
            .authorize(principal, Action::RunTask, Some(task_user(task, user)))?;
        Ok(())
    }

    /// RESERVE (roles), UNRESERVE (reserver principals), CREATE (roles) and DESTROY (creator
    /// principals: the reservation's) of framework `fw`. A RESERVE naming a principal other
    /// than the framework's is refused too, as Mesos does.
    pub(crate) fn authorize_operation(&self, fw: &str, op: &Op) -> Result<(), MasterError> {
        let (principal, _) = self.framework_identity(fw);
        let (action, list) = match op {
            Op::Reserve(r) => (Action::ReserveResources, &r.resources),
            Op::Unreserve(u) => (Action::UnreserveResources, &u.resources),
            Op::Create(c) => (Action::CreateVolume, &c.volumes),
            Op::Destroy(d) => (Action::DestroyVolume, &d.volumes),
            Op::Launch(_) | Op::LaunchGroup(_) => return Ok(()),
        };
        // Malformed resources are refused later, naming the field.
        let Ok(resources) = Resources::from_proto(list) else {
            return Ok(());
        };
        self.authorize_resources(principal, action, &resources)?;
        if action == Action::ReserveResources
            && let Some(p) = principal
        {
            for (key, _) in resources.iter() {
                if let Reservation::Dynamic { principal: r } = &key.reservation
                    && !r.is_empty()
                    && reserver(r) != p
                {
                    return Err(MasterError::InvalidField {
                        field: "RESERVE".into(),
                        reason: format!(
                            "the reservation names principal `{r}` but the framework's principal is `{p}` (it may reserve as `{p}` or a sub-principal `{p}/…`)"
                        ),
                    });
                }
            }
        }
        Ok(())
    }

    /// Authorizes `action` on every reservation in `resources`: its role for reserving and
    /// creating, its reserver's principal for unreserving and destroying.
    pub fn authorize_resources(
        &self,
        principal: Option<&str>,
        action: Action,
        resources: &Resources,
    ) -> Result<(), MasterError> {
        let mut seen = std::collections::BTreeSet::new();
        for (key, _) in resources.iter() {
            let object = match action {
                Action::UnreserveResources | Action::DestroyVolume => match &key.reservation {
                    Reservation::Dynamic { principal } => reserver(principal),
                    Reservation::Static => "",
                },
                _ => key.role.as_str(),
            };
            if seen.insert(object.to_string()) {
                self.authorizer.authorize(principal, action, Some(object))?;
            }
        }
        Ok(())
    }

    /// Operator TEARDOWN by `principal`: `teardown_frameworks` on the framework's principal,
    /// then the framework is removed for good (its tasks killed).
    pub fn teardown_framework(
        &mut self,
        now: Timestamp,
        principal: Option<&str>,
        framework_id: &str,
    ) -> Result<(), MasterError> {
        let Some(f) = self.frameworks.get(framework_id) else {
            return Err(MasterError::UnknownSubject {
                what: "framework",
                name: framework_id.to_string(),
            });
        };
        let owner = f.info.principal.clone();
        self.authorizer
            .authorize(principal, Action::TeardownFramework, Some(&owner))?;
        self.remove_framework(now, framework_id, "torn down by an operator");
        Ok(())
    }
}

/// Cuts a state snapshot down to what `principal` may see: frameworks by `view_frameworks`
/// (their user), tasks by `view_tasks` (their user), agents by `view_agents` (their id),
/// offers of frameworks it may not see dropped. Returns how many entries were hidden.
pub fn filter_snapshot(
    authorizer: &Authorizer,
    principal: Option<&str>,
    snapshot: &mut v1::StateSnapshot,
) -> usize {
    if authorizer.allows_everything() {
        return 0;
    }
    let before = snapshot.frameworks.len()
        + snapshot.tasks.len()
        + snapshot.completed_tasks.len()
        + snapshot.agents.len()
        + snapshot.offers.len();
    let can = |action, object: &str| authorizer.is_allowed(principal, action, Some(object));
    snapshot
        .frameworks
        .retain(|f| can(Action::ViewFramework, &f.user));
    let visible: std::collections::HashSet<String> =
        snapshot.frameworks.iter().map(|f| f.id.clone()).collect();
    snapshot.tasks.retain(|t| can(Action::ViewTask, &t.user));
    snapshot
        .completed_tasks
        .retain(|t| can(Action::ViewTask, &t.user));
    snapshot.agents.retain(|a| can(Action::ViewAgent, &a.id));
    snapshot
        .offers
        .retain(|o| visible.contains(&o.framework_id));
    let after = snapshot.frameworks.len()
        + snapshot.tasks.len()
        + snapshot.completed_tasks.len()
        + snapshot.agents.len()
        + snapshot.offers.len();
    before - after
}

/// Cuts role summaries down to what `principal` may see: roles by `view_roles`, and quotas
/// (guarantees and limits, blanked) by `get_quotas`.
pub fn filter_roles(
    authorizer: &Authorizer,
    principal: Option<&str>,
    roles: &mut Vec<v1::RoleSummary>,
) {
    if authorizer.allows_everything() {
        return;
    }
    roles.retain(|r| authorizer.is_allowed(principal, Action::ViewRole, Some(&r.role)));
    for r in roles.iter_mut() {
        if !authorizer.is_allowed(principal, Action::GetQuota, Some(&r.role)) {
            r.guarantees.clear();
            r.limits.clear();
        }
    }
}

/// The principal a reservation's principal stands for: `P` for `P` and for a sub-principal
/// `P/…` (a framework authenticated as `P` tags its reservations `P/POD`; ACLs on reserver
/// principals see `P`).
pub(crate) fn reserver(principal: &str) -> &str {
    principal.split('/').next().unwrap_or(principal)
}
