//! Offer operations that relabel resources inside an ACCEPT: RESERVE, UNRESERVE, CREATE and
//! DESTROY (Apache Mesos semantics).
//!
//! Each operation is checked against what is left of the accepted offers after the operations
//! before it (so RESERVE → CREATE → LAUNCH on the result works in one ACCEPT) and becomes a
//! [`Conversion`] `from → to` of the same quantities. Nothing changes until every operation of
//! the ACCEPT passed; then [`Master::apply_conversion`] relabels the agent's total in the core
//! and in the allocator, where the chunk stays held by the framework.

use proffer_proto::Resources;
use proffer_proto::resources::{Reservation, ResourceKey, Value};
use proffer_proto::v1::{self, operation::Op};

use super::{Master, MasterError};

/// One validated relabelling of held resources on the accepted offers' agent.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Conversion {
    /// What the offers held before.
    pub from: Resources,
    /// What they hold after (same quantities, new labels).
    pub to: Resources,
}

impl Conversion {
    /// The ids of the persistent volumes this conversion removes (held before, gone after):
    /// what a DESTROY asks the agent to delete. Sorted and without duplicates.
    pub fn destroyed_volumes(&self) -> Vec<String> {
        let kept: std::collections::BTreeSet<&str> =
            self.to.volumes().map(|(_, v, _)| v.id.as_str()).collect();
        let gone: std::collections::BTreeSet<String> = self
            .from
            .volumes()
            .filter(|(_, v, _)| !kept.contains(v.id.as_str()))
            .map(|(_, v, _)| v.id.clone())
            .collect();
        gone.into_iter().collect()
    }
}

/// The operation's name for messages.
pub(crate) fn op_name(op: &Op) -> &'static str {
    match op {
        Op::Launch(_) => "LAUNCH",
        Op::LaunchGroup(_) => "LAUNCH_GROUP",
        Op::Reserve(_) => "RESERVE",
        Op::Unreserve(_) => "UNRESERVE",
        Op::Create(_) => "CREATE",
        Op::Destroy(_) => "DESTROY",
    }
}

/// What an operation that is not a launch needs: the framework's roles and the agent.
pub(crate) struct OpContext<'a> {
    /// The framework's roles.
    pub roles: &'a [String],
    /// The agent of the accepted offers.
    pub agent_id: &'a str,
    /// Index of the operation in the ACCEPT, for messages.
    pub index: usize,
}

impl OpContext<'_> {
    fn err(&self, op: &str, reason: String) -> MasterError {
        MasterError::InvalidField {
            field: format!("operations[{}] ({op})", self.index),
            reason,
        }
    }

    fn check_role(
        &self,
        op: &str,
        verb: &str,
        entry: &Resources,
        key: &ResourceKey,
    ) -> Result<(), MasterError> {
        if self.roles.iter().any(|r| *r == key.role) {
            return Ok(());
        }
        Err(self.err(
            op,
            format!(
                "{verb} {entry} which is reserved for role `{}`, not one of the framework's roles [{}]",
                key.role,
                self.roles.join(", ")
            ),
        ))
    }
}

/// Parses an operation's resources, naming the field on error.
fn parse(ctx: &OpContext<'_>, op: &str, list: &[v1::Resource]) -> Result<Resources, MasterError> {
    let res = Resources::from_proto(list).map_err(|source| MasterError::Resources {
        field: format!("operations[{}] ({op})", ctx.index),
        source,
    })?;
    if res.is_empty() {
        return Err(ctx.err(op, "names no resources".into()));
    }
    Ok(res)
}

/// Takes `from` out of `available` and puts `to` in, or explains what is missing.
fn swap(
    ctx: &OpContext<'_>,
    op: &str,
    what: &str,
    available: &mut Resources,
    from: &Resources,
    to: &Resources,
) -> Result<Conversion, MasterError> {
    let left = available.checked_sub(from).ok_or_else(|| {
        ctx.err(
            op,
            format!(
                "{what}: the offers' remaining resources do not contain {from} (left: {})",
                if available.is_empty() {
                    "nothing".to_string()
                } else {
                    available.to_string()
                }
            ),
        )
    })?;
    *available = left.plus(to);
    Ok(Conversion {
        from: from.clone(),
        to: to.clone(),
    })
}

impl Master {
    /// Validates a RESERVE, UNRESERVE, CREATE or DESTROY against `available` (what is left of
    /// the accepted offers) and updates `available` as if it were applied.
    pub(crate) fn check_conversion(
        &self,
        ctx: &OpContext<'_>,
        op: &Op,
        available: &mut Resources,
    ) -> Result<Conversion, MasterError> {
        let name = op_name(op);
        match op {
            Op::Reserve(r) => {
                let res = parse(ctx, name, &r.resources)?;
                let mut to = Resources::new();
                for entry in res.entries() {
                    let Some((key, value)) = entry.iter().next() else {
                        continue;
                    };
                    if !key.is_reserved() {
                        return Err(ctx.err(
                            name,
                            format!(
                                "reserving {entry} which names no role; write the role to reserve \
                                 for, e.g. {}(ROLE,dynamic):…",
                                key.name
                            ),
                        ));
                    }
                    ctx.check_role(name, "reserving", &entry, key)?;
                    if key.volume.is_some() {
                        return Err(ctx.err(
                            name,
                            format!(
                                "reserving {entry}: RESERVE cannot create a volume; use CREATE"
                            ),
                        ));
                    }
                    // RESERVE always makes a dynamic reservation (with the principal given, if any).
                    let principal = match &key.reservation {
                        Reservation::Dynamic { principal } => principal.clone(),
                        Reservation::Static => String::new(),
                    };
                    let dynamic = ResourceKey {
                        reservation: Reservation::Dynamic { principal },
                        ..key.clone()
                    };
                    to.add(&Resources::from_entry(dynamic, value.clone()));
                }
                let from = res.unreserved();
                swap(ctx, name, &format!("reserving {to}"), available, &from, &to)
            }
            Op::Unreserve(u) => {
                let res = parse(ctx, name, &u.resources)?;
                for entry in res.entries() {
                    let Some((key, _)) = entry.iter().next() else {
                        continue;
                    };
                    if !key.is_reserved() {
                        return Err(
                            ctx.err(name, format!("unreserving {entry} which is not reserved"))
                        );
                    }
                    ctx.check_role(name, "unreserving", &entry, key)?;
                    if !key.is_dynamic() {
                        return Err(ctx.err(
                            name,
                            format!(
                                "unreserving {entry} which is reserved statically (only the agent's \
                                 configuration can change it)"
                            ),
                        ));
                    }
                    if let Some(v) = &key.volume {
                        return Err(ctx.err(
                            name,
                            format!(
                                "unreserving {entry} which holds persistent volume `{}`; DESTROY it first",
                                v.id
                            ),
                        ));
                    }
                }
                let to = res.unreserved();
                swap(
                    ctx,
                    name,
                    &format!("unreserving {res}"),
                    available,
                    &res,
                    &to,
                )
            }
            Op::Create(c) => {
                let res = parse(ctx, name, &c.volumes)?;
                let existing = self
                    .agents
                    .get(ctx.agent_id)
                    .map(|a| a.total.clone())
                    .unwrap_or_default();
                for entry in res.entries() {
                    let Some((key, _)) = entry.iter().next() else {
                        continue;
                    };
                    let Some(vol) = &key.volume else {
                        return Err(ctx.err(
                            name,
                            format!(
                                "creating {entry} without a volume; write disk(ROLE)[ID:PATH]:SIZE"
                            ),
                        ));
                    };
                    ctx.check_role(name, "creating a volume on", &entry, key)?;
                    let taken = existing
                        .volumes()
                        .chain(available.volumes())
                        .any(|(_, v, _)| v.id == vol.id);
                    if taken || res.volumes().filter(|(_, v, _)| v.id == vol.id).count() > 1 {
                        return Err(ctx.err(
                            name,
                            format!(
                                "creating volume `{}` which already exists on agent `{}`",
                                vol.id, ctx.agent_id
                            ),
                        ));
                    }
                }
                let from = res.without_volumes();
                swap(
                    ctx,
                    name,
                    &format!("creating {res}"),
                    available,
                    &from,
                    &res,
                )
            }
            Op::Destroy(d) => {
                let res = parse(ctx, name, &d.volumes)?;
                for entry in res.entries() {
                    let Some((key, _)) = entry.iter().next() else {
                        continue;
                    };
                    let Some(vol) = &key.volume else {
                        return Err(ctx.err(
                            name,
                            format!("destroying {entry} which is not a persistent volume"),
                        ));
                    };
                    ctx.check_role(name, "destroying", &entry, key)?;
                    if let Some(task) = self.task_using_volume(ctx.agent_id, &vol.id) {
                        return Err(ctx.err(
                            name,
                            format!("destroying volume `{}` which task `{task}` uses", vol.id),
                        ));
                    }
                }
                let to = res.without_volumes();
                swap(
                    ctx,
                    name,
                    &format!("destroying {res}"),
                    available,
                    &res,
                    &to,
                )
            }
            Op::Launch(_) | Op::LaunchGroup(_) => Err(ctx.err(name, "is not a conversion".into())),
        }
    }

    /// A live task on `agent_id` whose resources hold volume `volume_id`.
    pub(crate) fn task_using_volume(&self, agent_id: &str, volume_id: &str) -> Option<String> {
        let agent = self.agents.get(agent_id)?;
        agent.tasks.iter().find_map(|(fw, task_id)| {
            let t = self.frameworks.get(fw)?.tasks.get(task_id)?;
            let uses =
                !t.state.is_terminal() && t.resources.volumes().any(|(_, v, _)| v.id == volume_id);
            uses.then(|| task_id.clone())
        })
    }

    /// Checks that a task uses each persistent volume it names whole (Mesos semantics).
    pub(crate) fn check_task_volumes(
        &self,
        agent_id: &str,
        task_id: &str,
        res: &Resources,
    ) -> Result<(), MasterError> {
        let Some(agent) = self.agents.get(agent_id) else {
            return Ok(());
        };
        for (key, vol, value) in res.volumes() {
            let whole = agent.total.iter().find(|(k, _)| *k == key).map(|(_, v)| v);
            if let (Some(Value::Scalar(have)), Value::Scalar(want)) = (whole, value)
                && have != want
            {
                return Err(MasterError::InvalidTask {
                    task_id: task_id.to_string(),
                    reason: format!(
                        "volume `{}` must be used whole ({} MB), not {} MB",
                        vol.id,
                        proffer_proto::resources::format_milli(*have),
                        proffer_proto::resources::format_milli(*want)
                    ),
                });
            }
        }
        Ok(())
    }

    /// Applies a validated conversion: the agent's total changes labels in the core and in the
    /// allocator, and the chunk stays held by the framework.
    pub(crate) fn apply_conversion(&mut self, framework_id: &str, agent_id: &str, c: &Conversion) {
        if let Some(a) = self.agents.get_mut(agent_id) {
            a.total.subtract(&c.from);
            a.total.add(&c.to);
        }
        tracing::info!(framework_id = %framework_id, agent_id = %agent_id,
            from = %c.from, to = %c.to, "resources relabelled");
        self.allocator
            .convert(framework_id, agent_id, &c.from, &c.to);
        self.persist_agent(agent_id);
        self.send_checkpoint(agent_id);
    }

    /// Tells `agent_id` its total, for it to checkpoint.
    pub(crate) fn send_checkpoint(&mut self, agent_id: &str) {
        if let Some(total) = self.agents.get(agent_id).map(|a| a.total.to_proto()) {
            self.send_agent(
                agent_id,
                v1::master_message::Msg::CheckpointResources(v1::CheckpointResources { total }),
            );
        }
    }
}
