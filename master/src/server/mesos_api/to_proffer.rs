//! Mesos v1 scheduler calls → Proffer v1 calls (pure). Field by field; what Proffer has no
//! equivalent for is refused with a [`TranslateError::Unsupported`] naming it (see
//! `docs/mesos-api.md`).

use std::collections::HashMap;

use proffer_proto::mesos::v1 as m;
use proffer_proto::mesos::v1::scheduler::{self as ms, call::Type as CallType};
use proffer_proto::v1;

use crate::core::Call;

/// Why a Mesos call cannot be translated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum TranslateError {
    /// A field the call needs is absent (400).
    #[error("Expecting '{0}' to be present")]
    Missing(String),
    /// A field has a value that cannot be used (400).
    #[error("'{field}' is invalid: {reason}")]
    Invalid {
        /// The field, as a path (`accept.operations[0].launch`).
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A feature Proffer does not have (501).
    #[error("{0} is not supported by Proffer")]
    Unsupported(String),
}

type Result<T> = std::result::Result<T, TranslateError>;

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> TranslateError {
    TranslateError::Invalid {
        field: field.into(),
        reason: reason.into(),
    }
}

/// What the server shell does with a (non-SUBSCRIBE) call.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Action {
    /// Feed these calls to the core, in order.
    Core(Vec<Call>),
    /// Nothing to do (REQUEST: Mesos's allocator ignores resource requests too).
    Nothing,
    /// RECONCILE_OPERATIONS: answer each operation (id, agent id) with OPERATION_UNKNOWN, as
    /// Proffer keeps no operation ids (an empty list asks for none).
    ReconcileOperations(Vec<(String, Option<String>)>),
}

/// A SUBSCRIBE call: the framework to subscribe, and the roles to suppress right after.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Subscribe {
    /// The framework.
    pub(crate) info: v1::FrameworkInfo,
    /// `subscribe.suppressed_roles`.
    pub(crate) suppressed_roles: Vec<String>,
}

/// Translates a SUBSCRIBE call.
pub(crate) fn subscribe(call: ms::Call) -> Result<Subscribe> {
    let sub = call
        .subscribe
        .ok_or_else(|| TranslateError::Missing("subscribe".into()))?;
    if sub.offer_constraints.is_some() {
        return Err(TranslateError::Unsupported(
            "'subscribe.offer_constraints'".into(),
        ));
    }
    let info = framework_info(sub.framework_info, "subscribe.framework_info")?;
    if let Some(id) = call.framework_id.filter(|id| id.value != info.id) {
        return Err(invalid(
            "framework_id",
            format!(
                "`{}` differs from 'subscribe.framework_info.id' (`{}`)",
                id.value, info.id
            ),
        ));
    }
    Ok(Subscribe {
        info,
        suppressed_roles: sub.suppressed_roles,
    })
}

/// The payload of a call, or [`TranslateError::Missing`] naming it.
fn need<T>(payload: Option<T>, name: &str) -> Result<T> {
    payload.ok_or_else(|| TranslateError::Missing(name.into()))
}

/// Translates a call other than SUBSCRIBE, for the framework and stream in `header`.
pub(crate) fn call(call: ms::Call, header: &v1::CallHeader) -> Result<Action> {
    let h = Some(header.clone());
    let calls = match call.r#type() {
        CallType::Subscribe => return Err(invalid("type", "SUBSCRIBE is not answered here")),
        CallType::Unknown => return Err(TranslateError::Missing("type".into())),
        CallType::Request => return Ok(Action::Nothing),
        CallType::ReconcileOperations => return Ok(reconcile_operations(call)),
        CallType::AcknowledgeOperationStatus => return Err(acknowledge_operation(call)),
        CallType::UpdateFramework => update_framework(call, h)?,
        CallType::Accept
        | CallType::Decline
        | CallType::AcceptInverseOffers
        | CallType::DeclineInverseOffers => vec![offer_call(call, h)?],
        _ => vec![task_call(call, h)?],
    };
    Ok(Action::Core(calls))
}

/// ACCEPT, DECLINE and the inverse-offer answers.
fn offer_call(call: ms::Call, h: Option<v1::CallHeader>) -> Result<Call> {
    let ids = |ids: Vec<m::OfferId>| ids.into_iter().map(|o| o.value).collect();
    Ok(match call.r#type() {
        CallType::Accept => {
            let a = need(call.accept, "accept")?;
            let operations = a
                .operations
                .into_iter()
                .enumerate()
                .map(|(i, op)| operation(op, &format!("accept.operations[{i}]")))
                .collect::<Result<Vec<_>>>()?;
            Call::Accept(v1::AcceptRequest {
                header: h,
                offer_ids: ids(a.offer_ids),
                operations,
                filters: a.filters.map(filters),
            })
        }
        CallType::Decline => {
            let d = need(call.decline, "decline")?;
            Call::Decline(v1::DeclineRequest {
                header: h,
                offer_ids: ids(d.offer_ids),
                filters: d.filters.map(filters),
            })
        }
        CallType::AcceptInverseOffers => {
            let a = need(call.accept_inverse_offers, "accept_inverse_offers")?;
            Call::AcceptInverseOffers(v1::InverseOffersRequest {
                header: h,
                inverse_offer_ids: ids(a.inverse_offer_ids),
            })
        }
        _ => {
            let d = need(call.decline_inverse_offers, "decline_inverse_offers")?;
            Call::DeclineInverseOffers(v1::InverseOffersRequest {
                header: h,
                inverse_offer_ids: ids(d.inverse_offer_ids),
            })
        }
    })
}

/// TEARDOWN, REVIVE, SUPPRESS and the calls about tasks.
fn task_call(call: ms::Call, h: Option<v1::CallHeader>) -> Result<Call> {
    Ok(match call.r#type() {
        CallType::Teardown => Call::Teardown(v1::TeardownRequest { header: h }),
        CallType::Revive => Call::Revive(v1::ReviveRequest {
            header: h,
            roles: call.revive.map(|r| r.roles).unwrap_or_default(),
        }),
        CallType::Suppress => Call::Suppress(v1::SuppressRequest {
            header: h,
            roles: call.suppress.map(|r| r.roles).unwrap_or_default(),
        }),
        CallType::Kill => {
            let k = need(call.kill, "kill")?;
            let grace = k
                .kill_policy
                .and_then(|p| p.grace_period)
                .map(|d| duration_ms(d.nanoseconds, "kill.kill_policy.grace_period"))
                .transpose()?;
            Call::Kill(v1::KillRequest {
                header: h,
                task_id: k.task_id.value,
                agent_id: k.agent_id.map(|a| a.value).unwrap_or_default(),
                kill_grace_period_ms: grace,
            })
        }
        // Proffer runs each command task in an executor named after the task.
        CallType::Shutdown => {
            let s = need(call.shutdown, "shutdown")?;
            Call::Kill(v1::KillRequest {
                header: h,
                task_id: s.executor_id.value,
                agent_id: s.agent_id.value,
                kill_grace_period_ms: None,
            })
        }
        CallType::Acknowledge => {
            let a = need(call.acknowledge, "acknowledge")?;
            Call::Acknowledge(v1::AcknowledgeRequest {
                header: h,
                agent_id: a.agent_id.value,
                task_id: a.task_id.value,
                uuid: a.uuid,
            })
        }
        CallType::Reconcile => Call::Reconcile(v1::ReconcileRequest {
            header: h,
            tasks: call
                .reconcile
                .map(|r| r.tasks)
                .unwrap_or_default()
                .into_iter()
                .map(|t| v1::ReconcileTask {
                    task_id: t.task_id.value,
                    agent_id: t.agent_id.map(|a| a.value).unwrap_or_default(),
                })
                .collect(),
        }),
        other => {
            let msg = need(call.message, "message").map_err(|e| match other {
                CallType::Message => e,
                _ => invalid(
                    "type",
                    format!("{} is not a task call", other.as_str_name()),
                ),
            })?;
            Call::Message(v1::MessageRequest {
                header: h,
                agent_id: msg.agent_id.value,
                task_id: msg.executor_id.value,
                data: msg.data,
            })
        }
    })
}

/// UPDATE_FRAMEWORK, then a SUPPRESS of `suppressed_roles` (if any).
fn update_framework(call: ms::Call, h: Option<v1::CallHeader>) -> Result<Vec<Call>> {
    let u = need(call.update_framework, "update_framework")?;
    if u.offer_constraints.is_some() {
        return Err(TranslateError::Unsupported(
            "'update_framework.offer_constraints'".into(),
        ));
    }
    let info = framework_info(u.framework_info, "update_framework.framework_info")?;
    let mut calls = vec![Call::UpdateFramework(Box::new(
        v1::UpdateFrameworkRequest {
            header: h.clone(),
            framework_info: Some(info),
        },
    ))];
    if !u.suppressed_roles.is_empty() {
        calls.push(Call::Suppress(v1::SuppressRequest {
            header: h,
            roles: u.suppressed_roles,
        }));
    }
    Ok(calls)
}

/// RECONCILE_OPERATIONS: the operations asked about.
fn reconcile_operations(call: ms::Call) -> Action {
    Action::ReconcileOperations(
        call.reconcile_operations
            .map(|r| r.operations)
            .unwrap_or_default()
            .into_iter()
            .map(|o| (o.operation_id.value, o.agent_id.map(|a| a.value)))
            .collect(),
    )
}

/// ACKNOWLEDGE_OPERATION_STATUS: always refused, naming the operation.
fn acknowledge_operation(call: ms::Call) -> TranslateError {
    match need(
        call.acknowledge_operation_status,
        "acknowledge_operation_status",
    ) {
        Err(missing) => missing,
        Ok(a) => invalid(
            "acknowledge_operation_status.operation_id",
            format!(
                "operation `{}` has no status update to acknowledge: Proffer sends none \
                 that need one (operation feedback is not supported)",
                a.operation_id.value
            ),
        ),
    }
}

/// Whole milliseconds of a Mesos duration in nanoseconds (refused when negative).
fn duration_ms(nanos: i64, field: &str) -> Result<u64> {
    u64::try_from(nanos)
        .map(|n| n / 1_000_000)
        .map_err(|_| invalid(field, format!("{nanos} ns is negative")))
}

/// Whole milliseconds of a Mesos duration in seconds (refused when negative or not finite).
fn seconds_ms(seconds: f64, field: &str) -> Result<u64> {
    if !seconds.is_finite() || seconds < 0.0 {
        return Err(invalid(
            field,
            format!("{seconds} s is not a non-negative number"),
        ));
    }
    Ok((seconds * 1000.0).round() as u64)
}

fn filters(f: m::Filters) -> v1::Filters {
    v1::Filters {
        refuse_seconds: f.refuse_seconds,
    }
}

fn labels(l: Option<m::Labels>) -> HashMap<String, String> {
    l.map(|l| l.labels)
        .unwrap_or_default()
        .into_iter()
        .map(|l| (l.key, l.value.unwrap_or_default()))
        .collect()
}

/// Mesos `FrameworkInfo` → Proffer's (`field`: where it is in the call, for errors).
#[allow(deprecated)] // Mesos's single `role`, still sent by older frameworks.
pub(crate) fn framework_info(info: m::FrameworkInfo, field: &str) -> Result<v1::FrameworkInfo> {
    let roles = if info.roles.is_empty() {
        info.role.into_iter().collect()
    } else {
        info.roles
    };
    let capabilities = info
        .capabilities
        .iter()
        .filter_map(|c| c.r#type)
        .filter_map(|t| m::framework_info::capability::Type::try_from(t).ok())
        .filter(|t| *t != m::framework_info::capability::Type::Unknown)
        .map(|t| t.as_str_name().to_string())
        .collect();
    let mut offer_filters = HashMap::new();
    for (role, f) in info.offer_filters {
        let quantities = f
            .min_allocatable_resources
            .map(|m| m.quantities)
            .unwrap_or_default()
            .into_iter()
            .map(|q| v1::offer_filters::ResourceQuantities {
                quantities: q
                    .quantities
                    .into_iter()
                    .map(|(k, v)| (k, v.value))
                    .collect(),
            })
            .collect();
        offer_filters.insert(
            role,
            v1::OfferFilters {
                min_allocatable_resources: Some(v1::offer_filters::MinAllocatableResources {
                    quantities,
                }),
            },
        );
    }
    let failover_timeout = info.failover_timeout.unwrap_or(0.0);
    if !failover_timeout.is_finite() || failover_timeout < 0.0 {
        return Err(invalid(
            format!("{field}.failover_timeout"),
            format!("{failover_timeout} is not a non-negative number of seconds"),
        ));
    }
    Ok(v1::FrameworkInfo {
        id: info.id.map(|i| i.value).unwrap_or_default(),
        name: info.name,
        user: info.user,
        roles,
        failover_timeout,
        hostname: info.hostname.unwrap_or_default(),
        labels: labels(info.labels),
        max_outstanding_offers: None,
        offer_filters,
        capabilities,
        principal: info.principal.unwrap_or_default(),
    })
}

/// Mesos `Offer.Operation` → Proffer's.
fn operation(op: m::offer::Operation, field: &str) -> Result<v1::Operation> {
    use m::offer::operation::Type as T;
    use v1::operation::Op;
    if let Some(id) = &op.id {
        return Err(TranslateError::Unsupported(format!(
            "operation feedback ('{field}.id' = `{}`)",
            id.value
        )));
    }
    let resources = |list: Vec<m::Resource>, name: &str| -> Result<Vec<v1::Resource>> {
        list.into_iter()
            .enumerate()
            .map(|(i, r)| resource(r, &format!("{field}.{name}[{i}]")))
            .collect()
    };
    let missing = |name: &str| TranslateError::Missing(format!("{field}.{name}"));
    let op = match op.r#type() {
        T::Launch => {
            let l = op.launch.ok_or_else(|| missing("launch"))?;
            Op::Launch(v1::Launch {
                tasks: tasks(l.task_infos, &format!("{field}.launch.task_infos"))?,
            })
        }
        T::LaunchGroup => {
            // The executor is Proffer's own; only the tasks are used.
            let g = op.launch_group.ok_or_else(|| missing("launch_group"))?;
            Op::LaunchGroup(v1::LaunchGroup {
                tasks: tasks(
                    g.task_group.tasks,
                    &format!("{field}.launch_group.task_group.tasks"),
                )?,
            })
        }
        T::Reserve => {
            let r = op.reserve.ok_or_else(|| missing("reserve"))?;
            Op::Reserve(v1::Reserve {
                resources: resources(r.resources, "reserve.resources")?,
            })
        }
        T::Unreserve => {
            let r = op.unreserve.ok_or_else(|| missing("unreserve"))?;
            Op::Unreserve(v1::Unreserve {
                resources: resources(r.resources, "unreserve.resources")?,
            })
        }
        T::Create => {
            let c = op.create.ok_or_else(|| missing("create"))?;
            Op::Create(v1::CreateVolume {
                volumes: resources(c.volumes, "create.volumes")?,
            })
        }
        T::Destroy => {
            let d = op.destroy.ok_or_else(|| missing("destroy"))?;
            Op::Destroy(v1::DestroyVolume {
                volumes: resources(d.volumes, "destroy.volumes")?,
            })
        }
        T::Unknown => return Err(missing("type")),
        other => {
            return Err(TranslateError::Unsupported(format!(
                "operation {} ('{field}.type')",
                other.as_str_name()
            )));
        }
    };
    Ok(v1::Operation { op: Some(op) })
}

fn tasks(list: Vec<m::TaskInfo>, field: &str) -> Result<Vec<v1::TaskInfo>> {
    list.into_iter()
        .enumerate()
        .map(|(i, t)| task(t, &format!("{field}[{i}]")))
        .collect()
}

/// Mesos `TaskInfo` → Proffer's.
pub(crate) fn task(t: m::TaskInfo, field: &str) -> Result<v1::TaskInfo> {
    if t.executor.is_some() {
        return Err(TranslateError::Unsupported(format!(
            "a custom executor ('{field}.executor')"
        )));
    }
    let container = t
        .container
        .as_ref()
        .map(|c| container_info(c, &format!("{field}.container")))
        .transpose()?
        .flatten();
    if t.max_completion_time.is_some() {
        return Err(TranslateError::Unsupported(format!(
            "'{field}.max_completion_time'"
        )));
    }
    let command = t
        .command
        .ok_or_else(|| TranslateError::Missing(format!("{field}.command")))?;
    let grace = t
        .kill_policy
        .and_then(|p| p.grace_period)
        .map(|d| duration_ms(d.nanoseconds, &format!("{field}.kill_policy.grace_period")))
        .transpose()?
        .unwrap_or(0);
    Ok(v1::TaskInfo {
        name: t.name,
        task_id: t.task_id.value,
        agent_id: t.agent_id.value,
        resources: t
            .resources
            .into_iter()
            .enumerate()
            .map(|(i, r)| resource(r, &format!("{field}.resources[{i}]")))
            .collect::<Result<_>>()?,
        command: Some(command_info(command, &format!("{field}.command"))?),
        kill_grace_period_ms: grace,
        labels: labels(t.labels),
        health_check: t
            .health_check
            .map(|h| health_check(h, &format!("{field}.health_check")))
            .transpose()?,
        readiness_check: None,
        pids_limit: 0,
        container,
    })
}

/// Mesos `ContainerInfo{type: MESOS, mesos.image}` → Proffer's: a Docker image name that is
/// a path, `file://`, or `http(s)://` URL of an image archive or layout (no registry pulls).
fn container_info(c: &m::ContainerInfo, field: &str) -> Result<Option<v1::ContainerInfo>> {
    if c.docker.is_some() {
        return Err(TranslateError::Unsupported(format!(
            "the Docker containerizer ('{field}.docker'): use type MESOS with mesos.image"
        )));
    }
    let Some(image) = c.mesos.as_ref().and_then(|m| m.image.as_ref()) else {
        return Ok(None);
    };
    let name = image.docker.as_ref().map(|d| d.name.as_str()).unwrap_or("");
    let local = name.starts_with('/')
        || ["file://", "http://", "https://"]
            .iter()
            .any(|p| name.starts_with(p));
    if !local {
        return Err(TranslateError::Unsupported(format!(
            "image {name:?} ('{field}.mesos.image'): registry pulls; name an image archive or \
             layout by path, file://, http:// or https://"
        )));
    }
    Ok(Some(v1::ContainerInfo {
        image: name.to_string(),
        image_sha256: String::new(),
    }))
}

/// Mesos `CommandInfo` → Proffer's (Mesos defaults: `shell` true, URIs extracted).
fn command_info(c: m::CommandInfo, field: &str) -> Result<v1::CommandInfo> {
    let mut environment = HashMap::new();
    for (i, var) in c
        .environment
        .map(|e| e.variables)
        .unwrap_or_default()
        .into_iter()
        .enumerate()
    {
        if var.secret.is_some() || var.r#type() == m::environment::variable::Type::Secret {
            return Err(TranslateError::Unsupported(format!(
                "a secret ('{field}.environment.variables[{i}]')"
            )));
        }
        environment.insert(var.name, var.value.unwrap_or_default());
    }
    Ok(v1::CommandInfo {
        value: c.value.unwrap_or_default(),
        shell: c.shell.unwrap_or(true),
        arguments: c.arguments,
        environment,
        uris: c
            .uris
            .into_iter()
            .map(|u| v1::Uri {
                value: u.value,
                executable: u.executable.unwrap_or(false),
                extract: u.extract.unwrap_or(true),
                cache: u.cache.unwrap_or(false),
                output_file: u.output_file.unwrap_or_default(),
                sha256: String::new(),
            })
            .collect(),
        user: c.user.unwrap_or_default(),
    })
}

/// Mesos `HealthCheck` → Proffer's.
fn health_check(h: m::HealthCheck, field: &str) -> Result<v1::HealthCheck> {
    use m::health_check::Type as T;
    use v1::health_check::CheckType;
    let ms = |s: Option<f64>, name: &str| {
        s.map(|s| seconds_ms(s, &format!("{field}.{name}")))
            .transpose()
    };
    let (kind, command, port, path) = match h.r#type() {
        T::Command => {
            let c = h
                .command
                .ok_or_else(|| TranslateError::Missing(format!("{field}.command")))?;
            (
                CheckType::Command,
                Some(command_info(c, &format!("{field}.command"))?),
                0,
                String::new(),
            )
        }
        T::Http => {
            let http = h
                .http
                .ok_or_else(|| TranslateError::Missing(format!("{field}.http")))?;
            (
                CheckType::Http,
                None,
                http.port,
                http.path.unwrap_or_else(|| "/".into()),
            )
        }
        T::Tcp => {
            let tcp = h
                .tcp
                .ok_or_else(|| TranslateError::Missing(format!("{field}.tcp")))?;
            (CheckType::Tcp, None, tcp.port, String::new())
        }
        T::Unknown => return Err(TranslateError::Missing(format!("{field}.type"))),
    };
    Ok(v1::HealthCheck {
        r#type: kind as i32,
        command,
        port,
        path,
        delay_ms: ms(h.delay_seconds, "delay_seconds")?,
        interval_ms: ms(h.interval_seconds, "interval_seconds")?,
        timeout_ms: ms(h.timeout_seconds, "timeout_seconds")?,
        consecutive_failures: h.consecutive_failures,
        grace_period_ms: ms(h.grace_period_seconds, "grace_period_seconds")?,
    })
}

/// Mesos `Resource` → Proffer's. Reservations in either Mesos format: `reservations` (the last
/// one is the resource's), or the older `role` with an optional `reservation`.
#[allow(deprecated)] // the older format's `role`, still sent by older frameworks.
pub(crate) fn resource(r: m::Resource, field: &str) -> Result<v1::Resource> {
    use m::value::Type as T;
    use v1::resource::Value;
    let value = match r.r#type() {
        T::Scalar => {
            let s = r
                .scalar
                .ok_or_else(|| TranslateError::Missing(format!("{field}.scalar")))?;
            if !s.value.is_finite() || s.value < 0.0 || s.value > 1e15 {
                return Err(invalid(
                    format!("{field}.scalar.value"),
                    format!("{} is not a non-negative amount", s.value),
                ));
            }
            Value::ScalarMilli((s.value * 1000.0).round() as i64)
        }
        T::Ranges => Value::Ranges(v1::Ranges {
            range: r
                .ranges
                .map(|r| r.range)
                .unwrap_or_default()
                .into_iter()
                .map(|r| v1::Range {
                    begin: r.begin,
                    end: r.end,
                })
                .collect(),
        }),
        T::Set => Value::Set(v1::Set {
            item: r.set.map(|s| s.item).unwrap_or_default(),
        }),
        T::Text => {
            return Err(invalid(
                format!("{field}.type"),
                "a resource is SCALAR, RANGES or SET, not TEXT",
            ));
        }
    };
    let (role, kind, principal) = if let Some(last) = r.reservations.last() {
        let kind = match last.r#type() {
            m::resource::reservation_info::Type::Static => v1::ReservationType::Static,
            _ => v1::ReservationType::Dynamic,
        };
        (
            last.role.clone().unwrap_or_default(),
            kind,
            last.principal.clone().unwrap_or_default(),
        )
    } else {
        let role = r.role.clone().unwrap_or_else(|| "*".into());
        match &r.reservation {
            Some(res) => (
                role,
                v1::ReservationType::Dynamic,
                res.principal.clone().unwrap_or_default(),
            ),
            None if role != "*" => (role, v1::ReservationType::Static, String::new()),
            None => (role, v1::ReservationType::Unspecified, String::new()),
        }
    };
    let volume = r.disk.and_then(|d| {
        let id = d.persistence?.id;
        Some(v1::PersistentVolume {
            id,
            container_path: d.volume.map(|v| v.container_path).unwrap_or_default(),
        })
    });
    Ok(v1::Resource {
        name: r.name,
        value: Some(value),
        role,
        reservation_type: kind as i32,
        principal,
        volume,
    })
}

/// The call's type name as Mesos spells it (`ACCEPT`), for logs and errors.
pub(crate) fn type_name(call: &ms::Call) -> &'static str {
    call.r#type().as_str_name()
}
