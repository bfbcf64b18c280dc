//! The `Operator` gRPC service (state, quota, weights, roles, explanations, operator
//! reservations) and the requests it
//! shares with the HTTP/JSON routes. Every change goes through the core task like any other input.

use proffer_proto::resources::validate_role;
use proffer_proto::{Resources, v1};

use super::Shared;
use super::core_task::{CoreGone, CoreHandle};
use super::status;
use crate::core::MasterError;

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
        reason: format!("`{role}`: {reason}"),
    })
}

/// Sets a role's quota.
pub(crate) async fn set_quota(
    core: &CoreHandle,
    role: String,
    guarantees: Resources,
    limits: Option<Resources>,
) -> Result<(), OperatorError> {
    check_role(&role)?;
    tracing::info!(%role, %guarantees, limits = ?limits.as_ref().map(ToString::to_string), "set quota");
    Ok(core
        .run(move |m, _| m.set_quota(&role, guarantees, limits))
        .await??)
}

/// Removes a role's quota.
pub(crate) async fn remove_quota(core: &CoreHandle, role: String) -> Result<(), OperatorError> {
    check_role(&role)?;
    tracing::info!(%role, "remove quota");
    Ok(core.run(move |m, _| m.remove_quota(&role)).await??)
}

/// Sets a role's weight.
pub(crate) async fn set_weight(
    core: &CoreHandle,
    role: String,
    weight: f64,
) -> Result<(), OperatorError> {
    check_role(&role)?;
    tracing::info!(%role, weight, "set weight");
    Ok(core.run(move |m, _| m.set_weight(&role, weight)).await??)
}

/// Schedules a maintenance window (seconds from now, seconds long).
pub(crate) async fn schedule(
    core: &CoreHandle,
    agent_id: String,
    starts_in_secs: f64,
    duration_secs: f64,
) -> Result<(), OperatorError> {
    let ms = |field: &str, v: f64| -> Result<u64, OperatorError> {
        if v.is_finite() && v >= 0.0 {
            Ok((v * 1000.0) as u64)
        } else {
            Err(crate::core::MasterError::InvalidField {
                field: field.to_string(),
                reason: format!("{v} is not a non-negative number of seconds"),
            }
            .into())
        }
    };
    let (start, duration) = (
        ms("starts_in_secs", starts_in_secs)?,
        ms("duration_secs", duration_secs)?,
    );
    tracing::info!(%agent_id, start, duration, "operator maintenance");
    Ok(core
        .run(move |m, now| m.schedule_maintenance(now, &agent_id, start, duration))
        .await??)
}

/// Drains (`drain` true) or reactivates an agent.
pub(crate) async fn drain(
    core: &CoreHandle,
    drain: bool,
    agent_id: String,
    reason: String,
) -> Result<(), OperatorError> {
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

/// Operator RESERVE (`reserve` true) or UNRESERVE of unused resources on an agent.
pub(crate) async fn relabel(
    core: &CoreHandle,
    reserve: bool,
    agent_id: String,
    resources: Resources,
) -> Result<(), OperatorError> {
    tracing::info!(%agent_id, %resources, reserve, "operator reservation");
    Ok(core
        .run(move |m, _| {
            if reserve {
                m.reserve_resources(&agent_id, &resources)
            } else {
                m.unreserve_resources(&agent_id, &resources)
            }
        })
        .await??)
}

/// Every role the allocator knows.
pub(crate) async fn roles(core: &CoreHandle) -> Result<Vec<v1::RoleSummary>, OperatorError> {
    Ok(core.run(|m, _| m.role_summaries()).await?)
}

/// Why a framework or role gets what it gets, one reason per line.
pub(crate) async fn why(
    core: &CoreHandle,
    subject: WhySubject,
) -> Result<Vec<String>, OperatorError> {
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
    Ok(core
        .run(move |m, now| match subject {
            WhySubject::Framework(id) => m.allocator().explain_framework(&id, now),
            WhySubject::Role(role) => m.allocator().explain_role(&role, now),
        })
        .await?)
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
}

type Reply<T> = Result<tonic::Response<T>, tonic::Status>;

#[tonic::async_trait]
impl v1::operator_server::Operator for OperatorService {
    async fn get_state(
        &self,
        _request: tonic::Request<v1::GetStateRequest>,
    ) -> Reply<v1::StateSnapshot> {
        let snapshot = self
            .shared
            .core
            .snapshot()
            .await
            .map_err(status::unavailable)?;
        Ok(tonic::Response::new(snapshot))
    }

    async fn set_quota(
        &self,
        request: tonic::Request<v1::SetQuotaRequest>,
    ) -> Reply<v1::OperatorResponse> {
        let req = request.into_inner();
        let parsed = quota_resources("guarantees", &req.guarantees).and_then(|g| {
            let limits = if req.limits.is_empty() {
                None
            } else {
                Some(quota_resources("limits", &req.limits)?)
            };
            Ok((g, limits))
        });
        let (guarantees, limits) = parsed.map_err(|e| status::from_master(&e))?;
        set_quota(&self.shared.core, req.role, guarantees, limits)
            .await
            .map_err(|e| e.status())?;
        Ok(tonic::Response::new(v1::OperatorResponse {}))
    }

    async fn remove_quota(
        &self,
        request: tonic::Request<v1::RemoveQuotaRequest>,
    ) -> Reply<v1::OperatorResponse> {
        remove_quota(&self.shared.core, request.into_inner().role)
            .await
            .map_err(|e| e.status())?;
        Ok(tonic::Response::new(v1::OperatorResponse {}))
    }

    async fn set_weight(
        &self,
        request: tonic::Request<v1::SetWeightRequest>,
    ) -> Reply<v1::OperatorResponse> {
        let req = request.into_inner();
        set_weight(&self.shared.core, req.role, req.weight)
            .await
            .map_err(|e| e.status())?;
        Ok(tonic::Response::new(v1::OperatorResponse {}))
    }

    async fn schedule_maintenance(
        &self,
        request: tonic::Request<v1::ScheduleMaintenanceRequest>,
    ) -> Reply<v1::OperatorResponse> {
        let req = request.into_inner();
        schedule(
            &self.shared.core,
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
        _request: tonic::Request<v1::GetMaintenanceRequest>,
    ) -> Reply<v1::GetMaintenanceResponse> {
        let windows = self
            .shared
            .core
            .run(|m, now| m.maintenance_schedule(now))
            .await
            .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
        Ok(tonic::Response::new(v1::GetMaintenanceResponse { windows }))
    }

    async fn drain_agent(
        &self,
        request: tonic::Request<v1::DrainAgentRequest>,
    ) -> Reply<v1::OperatorResponse> {
        let req = request.into_inner();
        drain(&self.shared.core, true, req.agent_id, req.reason)
            .await
            .map_err(|e| e.status())?;
        Ok(tonic::Response::new(v1::OperatorResponse {}))
    }

    async fn reactivate_agent(
        &self,
        request: tonic::Request<v1::ReactivateAgentRequest>,
    ) -> Reply<v1::OperatorResponse> {
        let req = request.into_inner();
        drain(&self.shared.core, false, req.agent_id, String::new())
            .await
            .map_err(|e| e.status())?;
        Ok(tonic::Response::new(v1::OperatorResponse {}))
    }

    async fn get_roles(
        &self,
        _request: tonic::Request<v1::GetRolesRequest>,
    ) -> Reply<v1::GetRolesResponse> {
        let roles = roles(&self.shared.core).await.map_err(|e| e.status())?;
        Ok(tonic::Response::new(v1::GetRolesResponse { roles }))
    }

    async fn reserve_resources(
        &self,
        request: tonic::Request<v1::ReserveResourcesRequest>,
    ) -> Reply<v1::OperatorResponse> {
        let req = request.into_inner();
        let resources =
            quota_resources("resources", &req.resources).map_err(|e| status::from_master(&e))?;
        relabel(&self.shared.core, true, req.agent_id, resources)
            .await
            .map_err(|e| e.status())?;
        Ok(tonic::Response::new(v1::OperatorResponse {}))
    }

    async fn unreserve_resources(
        &self,
        request: tonic::Request<v1::UnreserveResourcesRequest>,
    ) -> Reply<v1::OperatorResponse> {
        let req = request.into_inner();
        let resources =
            quota_resources("resources", &req.resources).map_err(|e| status::from_master(&e))?;
        relabel(&self.shared.core, false, req.agent_id, resources)
            .await
            .map_err(|e| e.status())?;
        Ok(tonic::Response::new(v1::OperatorResponse {}))
    }

    async fn why(&self, request: tonic::Request<v1::WhyRequest>) -> Reply<v1::WhyResponse> {
        let subject = match request.into_inner().subject {
            Some(v1::why_request::Subject::FrameworkId(id)) => WhySubject::Framework(id),
            Some(v1::why_request::Subject::Role(role)) => WhySubject::Role(role),
            None => {
                return Err(tonic::Status::invalid_argument(
                    "invalid subject: give a framework_id or a role",
                ));
            }
        };
        let lines = why(&self.shared.core, subject)
            .await
            .map_err(|e| e.status())?;
        Ok(tonic::Response::new(v1::WhyResponse { lines }))
    }
}
