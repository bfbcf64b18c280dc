//! Proffer v1 events → Mesos v1 scheduler events (pure).

use std::net::Ipv4Addr;

use proffer_proto::mesos::v1 as m;
use proffer_proto::mesos::v1::scheduler::{self as ms, event::Type as EventType};
use proffer_proto::v1;
use proffer_proto::v1::event::Event as E;

/// What a translation needs besides the event: who the master is and the time now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Context {
    /// The master's id (from SUBSCRIBED).
    pub(crate) master_id: String,
    /// The master's address as clients reach it.
    pub(crate) hostname: String,
    /// Its IPv4 address, if it is one.
    pub(crate) ip: Option<Ipv4Addr>,
    /// Its port.
    pub(crate) port: u16,
    /// Unix time in ms (maintenance windows are relative in Proffer, absolute in Mesos).
    pub(crate) now_ms: u64,
}

fn fid(v: impl Into<String>) -> m::FrameworkId {
    m::FrameworkId { value: v.into() }
}
fn aid(v: impl Into<String>) -> m::AgentId {
    m::AgentId { value: v.into() }
}
fn oid(v: impl Into<String>) -> m::OfferId {
    m::OfferId { value: v.into() }
}
fn some_text(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

/// A Mesos event of type `t` with nothing set.
fn empty(t: EventType) -> ms::Event {
    ms::Event {
        r#type: Some(t as i32),
        ..Default::default()
    }
}

/// Proffer event → Mesos event (`None` for an empty event).
pub(crate) fn event(e: v1::Event, ctx: &Context) -> Option<ms::Event> {
    let out = match e.event? {
        E::Subscribed(s) => ms::Event {
            subscribed: Some(ms::event::Subscribed {
                framework_id: fid(s.framework_id),
                heartbeat_interval_seconds: Some(s.heartbeat_interval_seconds),
                master_info: Some(master_info(ctx)),
            }),
            ..empty(EventType::Subscribed)
        },
        E::Offers(o) => ms::Event {
            offers: Some(ms::event::Offers {
                offers: o.offers.into_iter().map(|o| offer(o, ctx)).collect(),
            }),
            ..empty(EventType::Offers)
        },
        E::Rescind(r) => ms::Event {
            rescind: Some(ms::event::Rescind {
                offer_id: oid(r.offer_id),
            }),
            ..empty(EventType::Rescind)
        },
        E::Update(u) => ms::Event {
            update: Some(ms::event::Update {
                status: task_status(u.status.unwrap_or_default()),
            }),
            ..empty(EventType::Update)
        },
        // Proffer's executor of a command task is named after the task.
        E::Message(msg) => ms::Event {
            message: Some(ms::event::Message {
                agent_id: aid(msg.agent_id),
                executor_id: m::ExecutorId { value: msg.task_id },
                data: msg.data,
            }),
            ..empty(EventType::Message)
        },
        E::Failure(f) => ms::Event {
            failure: Some(ms::event::Failure {
                agent_id: Some(aid(f.agent_id)),
                executor_id: None,
                status: None,
            }),
            ..empty(EventType::Failure)
        },
        E::Error(err) => error(err.message),
        E::Heartbeat(_) => empty(EventType::Heartbeat),
        E::InverseOffers(io) => ms::Event {
            inverse_offers: Some(ms::event::InverseOffers {
                inverse_offers: io
                    .inverse_offers
                    .into_iter()
                    .map(|o| m::InverseOffer {
                        id: oid(o.id),
                        url: None,
                        framework_id: fid(o.framework_id),
                        agent_id: Some(aid(o.agent_id)),
                        unavailability: unavailability(o.unavailability.as_ref(), ctx),
                        resources: Vec::new(),
                    })
                    .collect(),
            }),
            ..empty(EventType::InverseOffers)
        },
    };
    Some(out)
}

/// An ERROR event.
pub(crate) fn error(message: String) -> ms::Event {
    ms::Event {
        error: Some(ms::event::Error { message }),
        ..empty(EventType::Error)
    }
}

/// An UPDATE_OPERATION_STATUS event saying the master does not know operation `id`.
pub(crate) fn operation_unknown(id: String, agent_id: Option<String>) -> ms::Event {
    ms::Event {
        update_operation_status: Some(ms::event::UpdateOperationStatus {
            status: m::OperationStatus {
                operation_id: Some(m::OperationId { value: id }),
                state: m::OperationState::OperationUnknown as i32,
                message: Some("Proffer keeps no operation ids (no operation feedback)".into()),
                agent_id: agent_id.map(aid),
                ..Default::default()
            },
        }),
        ..empty(EventType::UpdateOperationStatus)
    }
}

fn master_info(ctx: &Context) -> m::MasterInfo {
    // Mesos puts the IPv4 address in network byte order into a uint32.
    let ip = ctx.ip.map_or(0, |ip| u32::from_le_bytes(ip.octets()));
    m::MasterInfo {
        id: ctx.master_id.clone(),
        ip,
        port: u32::from(ctx.port),
        hostname: Some(ctx.hostname.clone()),
        address: Some(m::Address {
            hostname: Some(ctx.hostname.clone()),
            ip: ctx.ip.map(|ip| ip.to_string()),
            port: i32::from(ctx.port),
        }),
        ..Default::default()
    }
}

/// A maintenance window, made absolute (Mesos) from Proffer's relative one.
fn unavailability(u: Option<&v1::Unavailability>, ctx: &Context) -> m::Unavailability {
    let nanos = |ms: u64| i64::try_from(ms.saturating_mul(1_000_000)).unwrap_or(i64::MAX);
    let starts = u.map_or(0, |u| u.starts_in_ms);
    m::Unavailability {
        start: m::TimeInfo {
            nanoseconds: nanos(ctx.now_ms.saturating_add(starts)),
        },
        duration: u.filter(|u| u.duration_ms > 0).map(|u| m::DurationInfo {
            nanoseconds: nanos(u.duration_ms),
        }),
    }
}

fn offer(o: v1::Offer, ctx: &Context) -> m::Offer {
    let role = o.allocation_role.clone();
    m::Offer {
        id: oid(o.id),
        framework_id: fid(o.framework_id),
        agent_id: aid(o.agent_id),
        hostname: o.hostname,
        resources: o
            .resources
            .into_iter()
            .map(|r| resource(r, Some(&role)))
            .collect(),
        attributes: o.attributes.into_iter().map(attribute).collect(),
        allocation_info: Some(m::resource::AllocationInfo {
            role: Some(role.clone()),
        }),
        unavailability: o
            .unavailability
            .as_ref()
            .map(|u| unavailability(Some(u), ctx)),
        ..Default::default()
    }
}

/// An attribute: a number is SCALAR, anything else TEXT.
fn attribute(a: v1::Attribute) -> m::Attribute {
    match a.value.trim().parse::<f64>() {
        Ok(value) if value.is_finite() => m::Attribute {
            name: a.name,
            r#type: m::value::Type::Scalar as i32,
            scalar: Some(m::value::Scalar { value }),
            ..Default::default()
        },
        _ => m::Attribute {
            name: a.name,
            r#type: m::value::Type::Text as i32,
            text: Some(m::value::Text { value: a.value }),
            ..Default::default()
        },
    }
}

/// Proffer `Resource` → Mesos's: both the older `role` field and `reservations`, so clients
/// of either format read it; `allocation_role` is the role it is offered in.
#[allow(deprecated)] // Mesos's `role` field, kept for older clients.
pub(crate) fn resource(r: v1::Resource, allocation_role: Option<&str>) -> m::Resource {
    use v1::resource::Value;
    let mut out = m::Resource {
        name: r.name,
        ..Default::default()
    };
    match r.value {
        Some(Value::ScalarMilli(milli)) => {
            out.r#type = m::value::Type::Scalar as i32;
            out.scalar = Some(m::value::Scalar {
                value: milli as f64 / 1000.0,
            });
        }
        Some(Value::Ranges(ranges)) => {
            out.r#type = m::value::Type::Ranges as i32;
            out.ranges = Some(m::value::Ranges {
                range: ranges
                    .range
                    .into_iter()
                    .map(|r| m::value::Range {
                        begin: r.begin,
                        end: r.end,
                    })
                    .collect(),
            });
        }
        Some(Value::Set(set)) => {
            out.r#type = m::value::Type::Set as i32;
            out.set = Some(m::value::Set { item: set.item });
        }
        None => out.r#type = m::value::Type::Scalar as i32,
    }
    let reserved = !r.role.is_empty() && r.role != "*";
    out.role = Some(if reserved { r.role.clone() } else { "*".into() });
    if reserved {
        let kind = match v1::ReservationType::try_from(r.reservation_type) {
            Ok(v1::ReservationType::Dynamic) => m::resource::reservation_info::Type::Dynamic,
            _ => m::resource::reservation_info::Type::Static,
        };
        out.reservations = vec![m::resource::ReservationInfo {
            r#type: Some(kind as i32),
            role: Some(r.role),
            principal: some_text(r.principal),
            labels: None,
        }];
    }
    if let Some(v) = r.volume {
        out.disk = Some(m::resource::DiskInfo {
            persistence: Some(m::resource::disk_info::Persistence {
                id: v.id,
                principal: None,
            }),
            volume: Some(m::Volume {
                mode: m::volume::Mode::Rw as i32,
                container_path: v.container_path,
                ..Default::default()
            }),
            source: None,
        });
    }
    out.allocation_info = allocation_role.map(|role| m::resource::AllocationInfo {
        role: Some(role.to_string()),
    });
    out
}

/// A Proffer reason as Mesos names it: the same name where Mesos has it, the closest Mesos
/// reason for two of Proffer's own, none for the others (the status message tells).
fn reason(name: &str) -> Option<m::task_status::Reason> {
    let mesos = match name {
        "REASON_FETCHER_FAILED" => "REASON_CONTAINER_LAUNCH_FAILED",
        "REASON_AGENT_UNREACHABLE" => "REASON_AGENT_DISCONNECTED",
        other => other,
    };
    m::task_status::Reason::from_str_name(mesos)
}

/// Proffer `TaskStatus` → Mesos's (states, sources and reasons have the same names).
pub(crate) fn task_status(s: v1::TaskStatus) -> m::TaskStatus {
    let state = v1::TaskState::try_from(s.state)
        .ok()
        .and_then(|st| m::TaskState::from_str_name(st.as_str_name()))
        .unwrap_or(m::TaskState::TaskUnknown);
    let source = v1::StatusSource::try_from(s.source)
        .ok()
        .and_then(|src| m::task_status::Source::from_str_name(src.as_str_name()));
    m::TaskStatus {
        task_id: m::TaskId { value: s.task_id },
        state: state as i32,
        message: some_text(s.message),
        source: source.map(|s| s as i32),
        reason: reason(&s.reason).map(|r| r as i32),
        agent_id: some_text(s.agent_id).map(aid),
        timestamp: Some(s.timestamp_ms as f64 / 1000.0),
        uuid: (!s.uuid.is_empty()).then_some(s.uuid),
        healthy: s.healthy,
        ..Default::default()
    }
}
