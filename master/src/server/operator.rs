//! The `Operator` gRPC service (state, quota, weights, roles, explanations, operator
//! reservations) and the requests it
//! shares with the HTTP/JSON routes. Every change goes through the core task like any other input.

use proffer_proto::resources::{MAX_SCALAR_MILLI, Value, format_f64, format_milli, validate_role};
use proffer_proto::{Resources, v1};

use super::Shared;
use super::core_task::{CoreGone, CoreHandle};
use super::security::Caller;
use super::status;
use crate::allocator::Allocator;
use crate::core::{Master, MasterError, Timestamp};
use proffer_master_core::authz::Action;

/// What an operator request may fail with.
#[derive(Debug, thiserror::Error)]
pub(crate) enum OperatorError {
    /// The core refused the request (or the request was malformed).
    #[error(transparent)]
    Master(#[from] MasterError),
    /// The server is shutting down.
    #[error(transparent)]
    Gone(#[from] CoreGone),
}

impl OperatorError {
    /// The gRPC status for the error.
    pub(crate) fn status(&self) -> tonic::Status {
        match self {
            OperatorError::Master(e) => status::from_master(e),
            OperatorError::Gone(g) => status::unavailable(*g),
        }
    }
}

/// Whose allocation to explain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum WhySubject {
    /// A framework, by id.
    Framework(String),
    /// A role, by name.
    Role(String),
}

fn check_role(role: &str) -> Result<(), MasterError> {
    validate_role(role).map_err(|reason| MasterError::InvalidField {
        field: "role".into(),
        reason: format!("`{}`: {reason}", shown(role)),
    })
}

/// A role as error messages show it: at most 64 characters (a refused role may be megabytes).
fn shown(role: &str) -> String {
    match role.char_indices().nth(64) {
        Some((end, _)) => format!("{}…", &role[..end]),
        None => role.to_string(),
    }
}

/// Checks every quota guarantee and limit: scalars within `0..=MAX_SCALAR_MILLI` (10^12
/// whole units), so that sums over roles cannot overflow. Parsed resources are already within
/// it; this also covers resources built in code. The error names the role and the resource.
fn check_quota(
    role: &str,
    guarantees: &Resources,
    limits: Option<&Resources>,
) -> Result<(), MasterError> {
    for (what, list) in [("guarantees", Some(guarantees)), ("limits", limits)] {
        for (key, value) in list.into_iter().flat_map(Resources::iter) {
            if let Value::Scalar(m) = value
                && !(0..=MAX_SCALAR_MILLI).contains(m)
            {
                return Err(MasterError::InvalidField {
                    field: format!("quota of role `{role}`: {what}.{}", key.name),
                    reason: format!(
                        "{} is outside 0..={}",
                        format_milli(*m),
                        format_milli(MAX_SCALAR_MILLI)
                    ),
                });
            }
        }
    }
    Ok(())
}

/// Sets a role's quota.
pub(crate) async fn set_quota(
    core: &CoreHandle,
    caller: &Caller,
    role: String,
    guarantees: Resources,
    limits: Option<Resources>,
) -> Result<(), OperatorError> {
    check_role(&role)?;
    check_quota(&role, &guarantees, limits.as_ref())?;
    caller.authorize(Action::UpdateQuota, Some(&role))?;
    tracing::info!(%role, %guarantees, limits = ?limits.as_ref().map(ToString::to_string), "set quota");
    Ok(core
        .run(move |m, _| m.set_quota(&role, guarantees, limits))
        .await??)
}

/// Removes a role's quota.
pub(crate) async fn remove_quota(
    core: &CoreHandle,
    caller: &Caller,
    role: String,
) -> Result<(), OperatorError> {
    check_role(&role)?;
    caller.authorize(Action::UpdateQuota, Some(&role))?;
    tracing::info!(%role, "remove quota");
    Ok(core.run(move |m, _| m.remove_quota(&role)).await??)
}

/// Sets a role's weight.
pub(crate) async fn set_weight(
    core: &CoreHandle,
    caller: &Caller,
    role: String,
    weight: f64,
) -> Result<(), OperatorError> {
    check_role(&role)?;
    caller.authorize(Action::UpdateWeight, Some(&role))?;
    tracing::info!(%role, weight, "set weight");
    Ok(core.run(move |m, _| m.set_weight(&role, weight)).await??)
}

/// Seconds of a maintenance request as ms: a finite, non-negative number of at most
/// [`Master::MAX_MAINTENANCE_MS`] (100 years), so `1e300` is refused rather than saturated.
fn maintenance_ms(field: &str, secs: f64) -> Result<u64, MasterError> {
    let bad = |reason: String| MasterError::InvalidField {
        field: field.to_string(),
        reason,
    };
    if !(secs.is_finite() && secs >= 0.0) {
        return Err(bad(format!(
            "{} is not a non-negative number of seconds",
            format_f64(secs)
        )));
    }
    let ms = (secs * 1000.0).round();
    let max = Master::MAX_MAINTENANCE_MS;
    if ms > max as f64 {
        return Err(bad(format!(
            "{} s is more than the maximum {} s (100 years)",
            format_f64(secs),
            max / 1000
        )));
    }
    Ok(ms as u64)
}

/// Schedules a maintenance window (seconds from now, seconds long).
pub(crate) async fn schedule(
    core: &CoreHandle,
    caller: &Caller,
    agent_id: String,
    starts_in_secs: f64,
    duration_secs: f64,
) -> Result<(), OperatorError> {
    caller.authorize(Action::UpdateMaintenanceSchedule, Some(&agent_id))?;
    let (start, duration) = (
        maintenance_ms("starts_in_secs", starts_in_secs)?,
        maintenance_ms("duration_secs", duration_secs)?,
    );
    tracing::info!(%agent_id, start, duration, "operator maintenance");
    Ok(core
        .run(move |m, now| m.schedule_maintenance(now, &agent_id, start, duration))
        .await??)
}

/// Drains (`drain` true) or reactivates an agent.
pub(crate) async fn drain(
    core: &CoreHandle,
    caller: &Caller,
    drain: bool,
    agent_id: String,
    reason: String,
) -> Result<(), OperatorError> {
    let action = if drain {
        Action::DrainAgent
    } else {
        Action::ReactivateAgent
    };
    caller.authorize(action, Some(&agent_id))?;
    tracing::info!(%agent_id, drain, %reason, "operator drain");
    Ok(core
        .run(move |m, _| {
            if drain {
                m.drain_agent(&agent_id, &reason)
            } else {
                m.reactivate_agent(&agent_id)
            }
        })
        .await??)
}

/// Operator MARK_AGENT_GONE: the agent is gone for good.
pub(crate) async fn mark_gone(
    core: &CoreHandle,
    caller: &Caller,
    agent_id: String,
) -> Result<(), OperatorError> {
    caller.authorize(Action::MarkAgentGone, Some(&agent_id))?;
    tracing::info!(%agent_id, "operator marks agent gone");
    Ok(core
        .run(move |m, now| m.mark_agent_gone(now, &agent_id))
        .await??)
}

/// Operator RESERVE (`reserve` true) or UNRESERVE of unused resources on an agent.
pub(crate) async fn relabel(
    core: &CoreHandle,
    caller: &Caller,
    op: crate::core::OperatorOp,
    agent_id: String,
    resources: Resources,
) -> Result<(), OperatorError> {
    tracing::info!(%agent_id, %resources, ?op, "operator operation");
    let principal = caller.principal().map(str::to_string);
    Ok(core
        .run(move |m, _| {
            m.authorize_resources(principal.as_deref(), op.action(), &resources)?;
            m.operator_operation(op, &agent_id, &resources)
        })
        .await??)
}

/// Every role the allocator knows.
pub(crate) async fn roles(
    core: &CoreHandle,
    caller: &Caller,
) -> Result<Vec<v1::RoleSummary>, OperatorError> {
    let mut roles = core.run(|m, _| m.role_summaries()).await?;
    let before = roles.len();
    crate::core::filter_roles(caller.authorizer(), caller.principal(), &mut roles);
    caller.audit_filtered("roles", before - roles.len());
    Ok(roles)
}

/// The maintenance windows of the agents `caller` may see (`get_maintenance_schedules`).
pub(crate) async fn maintenance(
    core: &CoreHandle,
    caller: &Caller,
) -> Result<Vec<v1::MaintenanceWindow>, OperatorError> {
    let mut windows = core.run(|m, now| m.maintenance_schedule(now)).await?;
    let before = windows.len();
    windows.retain(|w| {
        caller.authorizer().is_allowed(
            caller.principal(),
            Action::GetMaintenanceSchedule,
            Some(&w.agent_id),
        )
    });
    caller.audit_filtered("maintenance", before - windows.len());
    Ok(windows)
}

/// Operator TEARDOWN of a framework (`teardown_frameworks` on its principal).
pub(crate) async fn teardown(
    core: &CoreHandle,
    caller: &Caller,
    framework_id: String,
) -> Result<(), OperatorError> {
    tracing::info!(%framework_id, principal = caller.principal().unwrap_or(""), "operator teardown");
    let principal = caller.principal().map(str::to_string);
    Ok(core
        .run(move |m, now| m.teardown_framework(now, principal.as_deref(), &framework_id))
        .await??)
}

/// Why a framework or role gets what it gets, one reason per line, with the subject explained
/// (a framework id that names no framework but a role explains the role, as `Master::why`).
/// A subject the allocator does not know is `NotFound`.
pub(crate) async fn why(
    core: &CoreHandle,
    caller: &Caller,
    subject: WhySubject,
) -> Result<(WhySubject, Vec<String>), OperatorError> {
    match &subject {
        WhySubject::Framework(id) if id.trim().is_empty() => {
            return Err(MasterError::InvalidField {
                field: "framework_id".into(),
                reason: "must not be empty".into(),
            }
            .into());
        }
        WhySubject::Framework(_) => {}
        WhySubject::Role(role) => check_role(role)?,
    }
    let caller = caller.clone();
    Ok(core
        .run(move |m, now| {
            let explained = explain(m.allocator(), subject, now)?;
            match &explained.0 {
                WhySubject::Role(role) => caller.authorize(Action::ViewRole, Some(role))?,
                WhySubject::Framework(id) => {
                    let user = m.framework_user(id).unwrap_or_default().to_string();
                    caller.authorize(Action::ViewFramework, Some(&user))?;
                }
            }
            Ok::<_, MasterError>(explained)
        })
        .await??)
}

/// The explanation of a subject the allocator knows, else [`MasterError::UnknownSubject`].
fn explain(
    a: &Allocator,
    subject: WhySubject,
    now: Timestamp,
) -> Result<(WhySubject, Vec<String>), MasterError> {
    // The allocator tracks every subscribed framework, connected or not.
    let framework_known = |id: &str| a.offers_outstanding(id).is_some();
    let role_known = |role: &str| a.roles().iter().any(|r| r.role == role);
    match subject {
        WhySubject::Framework(id) if framework_known(&id) => {
            let lines = a.explain_framework(&id, now);
            Ok((WhySubject::Framework(id), lines))
        }
        WhySubject::Framework(id) | WhySubject::Role(id) if role_known(&id) => {
            let lines = a.explain_role(&id, now);
            Ok((WhySubject::Role(id), lines))
        }
        WhySubject::Framework(name) => Err(MasterError::UnknownSubject {
            what: "framework or role",
            name,
        }),
        WhySubject::Role(name) => Err(MasterError::UnknownSubject { what: "role", name }),
    }
}

/// Converts wire resources of a request field, naming the field on error.
fn quota_resources(field: &str, list: &[v1::Resource]) -> Result<Resources, MasterError> {
    Resources::from_proto(list).map_err(|source| MasterError::Resources {
        field: field.to_string(),
        source,
    })
}

/// The `Operator` gRPC service.
#[derive(Debug, Clone)]
pub(crate) struct OperatorService {
    shared: Shared,
}

impl OperatorService {
    pub(crate) fn new(shared: Shared) -> Self {
        OperatorService { shared }
    }

    /// Who makes `request`.
    fn caller<T>(&self, request: &tonic::Request<T>) -> Caller {
        Caller::of(request, &self.shared.authorizer)
    }
}

type Reply<T> = Result<tonic::Response<T>, tonic::Status>;

#[tonic::async_trait]
impl v1::operator_server::Operator for OperatorService {
    async fn get_state(
        &self,
        request: tonic::Request<v1::GetStateRequest>,
    ) -> Reply<v1::StateSnapshot> {
        let caller = self.caller(&request);
        let snapshot = super::http::visible_state(&self.shared.core, &caller)
            .await
            .map_err(status::unavailable)?;
        Ok(tonic::Response::new(snapshot))
    }

    async fn teardown_framework(
        &self,
        request: tonic::Request<v1::TeardownFrameworkRequest>,
    ) -> Reply<v1::OperatorResponse> {
        let caller = self.caller(&request);
        teardown(
            &self.shared.core,
            &caller,
            request.into_inner().framework_id,
        )
        .await
        .map_err(|e| e.status())?;
        Ok(tonic::Response::new(v1::OperatorResponse {}))
    }

    async fn set_quota(
        &self,
        request: tonic::Request<v1::SetQuotaRequest>,
    ) -> Reply<v1::OperatorResponse> {
        let caller = self.caller(&request);
        let req = request.into_inner();
        let field = |what: &str| format!("{what} of role `{}`", req.role);
        let parsed = quota_resources(&field("guarantees"), &req.guarantees).and_then(|g| {
            let limits = if req.limits.is_empty() {
                None
            } else {
                Some(quota_resources(&field("limits"), &req.limits)?)
            };
            Ok((g, limits))
        });
        let (guarantees, limits) = parsed.map_err(|e| status::from_master(&e))?;
        set_quota(&self.shared.core, &caller, req.role, guarantees, limits)
            .await
            .map_err(|e| e.status())?;
        Ok(tonic::Response::new(v1::OperatorResponse {}))
    }

    async fn remove_quota(
        &self,
        request: tonic::Request<v1::RemoveQuotaRequest>,
    ) -> Reply<v1::OperatorResponse> {
        let caller = self.caller(&request);
        remove_quota(&self.shared.core, &caller, request.into_inner().role)
            .await
            .map_err(|e| e.status())?;
        Ok(tonic::Response::new(v1::OperatorResponse {}))
    }

    async fn set_weight(
        &self,
        request: tonic::Request<v1::SetWeightRequest>,
    ) -> Reply<v1::OperatorResponse> {
        let caller = self.caller(&request);
        let req = request.into_inner();
        set_weight(&self.shared.core, &caller, req.role, req.weight)
            .await
            .map_err(|e| e.status())?;
        Ok(tonic::Response::new(v1::OperatorResponse {}))
    }

    async fn schedule_maintenance(
        &self,
        request: tonic::Request<v1::ScheduleMaintenanceRequest>,
    ) -> Reply<v1::OperatorResponse> {
        let caller = self.caller(&request);
        let req = request.into_inner();
        schedule(
            &self.shared.core,
            &caller,
            req.agent_id,
            req.starts_in_secs,
            req.duration_secs,
        )
        .await
        .map_err(|e| e.status())?;
        Ok(tonic::Response::new(v1::OperatorResponse {}))
    }

    async fn get_maintenance(
        &self,
        request: tonic::Request<v1::GetMaintenanceRequest>,
    ) -> Reply<v1::GetMaintenanceResponse> {
        let caller = self.caller(&request);
        let windows = maintenance(&self.shared.core, &caller)
            .await
            .map_err(|e| e.status())?;
        Ok(tonic::Response::new(v1::GetMaintenanceResponse { windows }))
    }

    async fn drain_agent(
        &self,
        request: tonic::Request<v1::DrainAgentRequest>,
    ) -> Reply<v1::OperatorResponse> {
        let caller = self.caller(&request);
        let req = request.into_inner();
        drain(&self.shared.core, &caller, true, req.agent_id, req.reason)
            .await
            .map_err(|e| e.status())?;
        Ok(tonic::Response::new(v1::OperatorResponse {}))
    }

    async fn reactivate_agent(
        &self,
        request: tonic::Request<v1::ReactivateAgentRequest>,
    ) -> Reply<v1::OperatorResponse> {
        let caller = self.caller(&request);
        let req = request.into_inner();
        drain(
            &self.shared.core,
            &caller,
            false,
            req.agent_id,
            String::new(),
        )
        .await
        .map_err(|e| e.status())?;
        Ok(tonic::Response::new(v1::OperatorResponse {}))
    }

    async fn mark_agent_gone(
        &self,
        request: tonic::Request<v1::MarkAgentGoneRequest>,
    ) -> Reply<v1::OperatorResponse> {
        let caller = self.caller(&request);
        mark_gone(&self.shared.core, &caller, request.into_inner().agent_id)
            .await
            .map_err(|e| e.status())?;
        Ok(tonic::Response::new(v1::OperatorResponse {}))
    }

    async fn get_roles(
        &self,
        request: tonic::Request<v1::GetRolesRequest>,
    ) -> Reply<v1::GetRolesResponse> {
        let caller = self.caller(&request);
        let roles = roles(&self.shared.core, &caller)
            .await
            .map_err(|e| e.status())?;
        Ok(tonic::Response::new(v1::GetRolesResponse { roles }))
    }

    async fn reserve_resources(
        &self,
        request: tonic::Request<v1::ReserveResourcesRequest>,
    ) -> Reply<v1::OperatorResponse> {
        let caller = self.caller(&request);
        let req = request.into_inner();
        let resources =
            quota_resources("resources", &req.resources).map_err(|e| status::from_master(&e))?;
        relabel(
            &self.shared.core,
            &caller,
            crate::core::OperatorOp::Reserve,
            req.agent_id,
            resources,
        )
        .await
        .map_err(|e| e.status())?;
        Ok(tonic::Response::new(v1::OperatorResponse {}))
    }

    async fn unreserve_resources(
        &self,
        request: tonic::Request<v1::UnreserveResourcesRequest>,
    ) -> Reply<v1::OperatorResponse> {
        let caller = self.caller(&request);
        let req = request.into_inner();
        let resources =
            quota_resources("resources", &req.resources).map_err(|e| status::from_master(&e))?;
        relabel(
            &self.shared.core,
            &caller,
            crate::core::OperatorOp::Unreserve,
            req.agent_id,
            resources,
        )
        .await
        .map_err(|e| e.status())?;
        Ok(tonic::Response::new(v1::OperatorResponse {}))
    }

    async fn why(&self, request: tonic::Request<v1::WhyRequest>) -> Reply<v1::WhyResponse> {
        let caller = self.caller(&request);
        let subject = match request.into_inner().subject {
            Some(v1::why_request::Subject::FrameworkId(id)) => WhySubject::Framework(id),
            Some(v1::why_request::Subject::Role(role)) => WhySubject::Role(role),
            None => {
                return Err(tonic::Status::invalid_argument(
                    "invalid subject: give a framework_id or a role",
                ));
            }
        };
        let (_, lines) = why(&self.shared.core, &caller, subject)
            .await
            .map_err(|e| e.status())?;
        Ok(tonic::Response::new(v1::WhyResponse { lines }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maintenance_seconds_are_bounded() {
        assert_eq!(maintenance_ms("d", 1.5), Ok(1500));
        assert_eq!(maintenance_ms("d", 0.0), Ok(0));
        let max_secs = (Master::MAX_MAINTENANCE_MS / 1000) as f64;
        assert_eq!(
            maintenance_ms("d", max_secs),
            Ok(Master::MAX_MAINTENANCE_MS)
        );
        let table = [
            (-1.0, "-1 is not a non-negative number of seconds"),
            (f64::NAN, "NaN is not"),
            (f64::INFINITY, "inf is not"),
            (1e300, "1e300 s is more than the maximum 3153600000 s"),
            (max_secs + 1.0, "is more than the maximum"),
        ];
        for (secs, want) in table {
            let err = maintenance_ms("duration_secs", secs)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(
                err.starts_with("invalid duration_secs: ") && err.contains(want),
                "{secs}: `{err}` lacks `{want}`"
            );
        }
    }

    #[test]
    fn quotas_are_bounded_naming_role_and_resource() {
        let ok = Resources::scalar("cpus", MAX_SCALAR_MILLI);
        assert_eq!(check_quota("web", &ok, Some(&ok)), Ok(()));
        let huge = Resources::scalar("mem", i64::MAX);
        let err = check_quota("web", &Resources::new(), Some(&huge))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("quota of role `web`: limits.mem")
                && err.contains("is outside 0..=1000000000000"),
            "{err}"
        );
        let err = check_quota("eng/ml", &huge, None)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("role `eng/ml`: guarantees.mem"), "{err}");
    }
}
