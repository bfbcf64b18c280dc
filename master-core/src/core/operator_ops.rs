//! Operator operations on an agent's unused resources (Mesos's `/reserve`, `/unreserve`,
//! `/create-volumes`, `/destroy-volumes` and the v1 operator API's RESERVE_RESOURCES,
//! UNRESERVE_RESOURCES, CREATE_VOLUMES, DESTROY_VOLUMES): relabel resources no task uses,
//! outside any offer. Outstanding offers on the agent are rescinded first (their resources
//! are needed); on error nothing changes.

use proffer_proto::Resources;
use proffer_proto::resources::{Reservation, ResourceKey};
use proffer_proto::v1;

use super::{Master, MasterError};
use crate::authz::Action;

/// An operator operation on an agent's unused resources.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OperatorOp {
    /// Dynamically reserve unreserved resources (`cpus(web,dynamic=ops):2`).
    Reserve,
    /// Give back dynamic reservations without volumes.
    Unreserve,
    /// Create persistent volumes on reserved disk (`disk(web,dynamic=ops)[data:data]:100`).
    CreateVolumes,
    /// Destroy persistent volumes no live task uses (the agent deletes their directories).
    DestroyVolumes,
}

impl OperatorOp {
    /// The ACL action that authorizes it.
    pub fn action(self) -> Action {
        match self {
            OperatorOp::Reserve => Action::ReserveResources,
            OperatorOp::Unreserve => Action::UnreserveResources,
            OperatorOp::CreateVolumes => Action::CreateVolume,
            OperatorOp::DestroyVolumes => Action::DestroyVolume,
        }
    }

    /// (name, verb) for messages.
    fn words(self) -> (&'static str, &'static str) {
        match self {
            OperatorOp::Reserve => ("reserve", "reserving"),
            OperatorOp::Unreserve => ("unreserve", "unreserving"),
            OperatorOp::CreateVolumes => ("create_volumes", "creating"),
            OperatorOp::DestroyVolumes => ("destroy_volumes", "destroying"),
        }
    }
}

impl Master {
    /// Operator RESERVE (Mesos `/reserve`): see [`Master::operator_operation`].
    pub fn reserve_resources(
        &mut self,
        agent_id: &str,
        resources: &Resources,
    ) -> Result<(), MasterError> {
        self.operator_operation(OperatorOp::Reserve, agent_id, resources)
    }

    /// Operator UNRESERVE (Mesos `/unreserve`): see [`Master::operator_operation`].
    pub fn unreserve_resources(
        &mut self,
        agent_id: &str,
        resources: &Resources,
    ) -> Result<(), MasterError> {
        self.operator_operation(OperatorOp::Unreserve, agent_id, resources)
    }

    /// Applies `op` to `resources` of `agent_id` that no task uses; on error nothing changes.
    pub fn operator_operation(
        &mut self,
        op: OperatorOp,
        agent_id: &str,
        resources: &Resources,
    ) -> Result<(), MasterError> {
        let (name, verb) = op.words();
        let bad = |reason: String| MasterError::InvalidField {
            field: format!("{name}.resources"),
            reason,
        };
        let Some(agent_total) = self.agents.get(agent_id).map(|a| a.total.clone()) else {
            return Err(MasterError::UnknownAgent {
                agent_id: agent_id.to_string(),
            });
        };
        if resources.is_empty() {
            return Err(bad("names no resources".into()));
        }
        let to_reserve = self.check_entries(op, agent_id, &agent_total, resources)?;
        let (from, to) = match op {
            OperatorOp::Reserve => (to_reserve.unreserved(), to_reserve),
            OperatorOp::Unreserve => (resources.clone(), resources.unreserved()),
            OperatorOp::CreateVolumes => (resources.without_volumes(), resources.clone()),
            OperatorOp::DestroyVolumes => (resources.clone(), resources.without_volumes()),
        };
        let offer_ids = self.check_unused(agent_id, &agent_total, &from, verb, &bad)?;
        for id in offer_ids {
            self.rescind_offer(&id, None);
        }
        let mut total = agent_total;
        total.subtract(&from);
        total.add(&to);
        tracing::info!(agent_id = %agent_id, %from, %to, "operator {name}");
        if let Some(a) = self.agents.get_mut(agent_id) {
            a.total = total.clone();
        }
        self.allocator.update_agent_total(agent_id, total);
        self.persist_agent(agent_id);
        self.send_checkpoint(agent_id);
        if op == OperatorOp::DestroyVolumes {
            let mut volume_ids: Vec<String> =
                from.volumes().map(|(_, v, _)| v.id.clone()).collect();
            volume_ids.sort();
            volume_ids.dedup();
            self.send_agent(
                agent_id,
                v1::master_message::Msg::DestroyVolumes(v1::DestroyVolumes { volume_ids }),
            );
        }
        self.allocation_pending = true;
        Ok(())
    }

    /// Checks each entry of `resources` for `op`; for RESERVE returns the reservations to
    /// make (always dynamic, with the principal given, if any).
    fn check_entries(
        &self,
        op: OperatorOp,
        agent_id: &str,
        agent_total: &Resources,
        resources: &Resources,
    ) -> Result<Resources, MasterError> {
        let (name, verb) = op.words();
        let bad = |reason: String| MasterError::InvalidField {
            field: format!("{name}.resources"),
            reason,
        };
        let mut to = Resources::new();
        for entry in resources.entries() {
            let Some((key, value)) = entry.iter().next() else {
                continue;
            };
            if !key.is_reserved() {
                return Err(bad(format!("{verb} {entry} which names no role")));
            }
            let volumes_op = matches!(op, OperatorOp::CreateVolumes | OperatorOp::DestroyVolumes);
            match (&key.volume, volumes_op) {
                (Some(_), false) => {
                    return Err(bad(format!(
                        "{verb} {entry}: it holds a persistent volume (CREATE_VOLUMES and \
                         DESTROY_VOLUMES handle volumes)"
                    )));
                }
                (None, true) => {
                    return Err(bad(format!(
                        "{verb} {entry} without a volume; write disk(ROLE,dynamic=P)[ID:PATH]:SIZE"
                    )));
                }
                _ => {}
            }
            match op {
                OperatorOp::Reserve => {
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
                OperatorOp::Unreserve if !key.is_dynamic() => {
                    return Err(bad(format!(
                        "{verb} {entry} which is reserved statically (only the agent's \
                         configuration can change it)"
                    )));
                }
                OperatorOp::Unreserve => {}
                OperatorOp::CreateVolumes => {
                    let Some(vol) = &key.volume else { continue };
                    proffer_proto::resources::reservation::validate_volume(vol)
                        .map_err(|e| bad(format!("{verb} {entry}: {e}")))?;
                    let taken = agent_total.volumes().any(|(_, v, _)| v.id == vol.id)
                        || resources
                            .volumes()
                            .filter(|(_, v, _)| v.id == vol.id)
                            .count()
                            > 1;
                    if taken {
                        return Err(bad(format!(
                            "{verb} {entry}: volume `{}` exists on agent `{agent_id}` already",
                            vol.id
                        )));
                    }
                }
                OperatorOp::DestroyVolumes => {
                    let Some(vol) = &key.volume else { continue };
                    if let Some(task) = self.task_using_volume(agent_id, &vol.id) {
                        return Err(bad(format!(
                            "{verb} volume `{}` which task `{task}` uses",
                            vol.id
                        )));
                    }
                }
            }
        }
        Ok(to)
    }

    /// The ids of the agent's outstanding offers, if `from` is unused there (the agent's total
    /// less what the allocator holds, plus what is only offered); else why not.
    fn check_unused(
        &self,
        agent_id: &str,
        agent_total: &Resources,
        from: &Resources,
        verb: &str,
        bad: &dyn Fn(String) -> MasterError,
    ) -> Result<Vec<String>, MasterError> {
        let offer_ids: Vec<String> = self
            .offers
            .iter()
            .filter(|(_, o)| o.agent_id == agent_id)
            .map(|(id, _)| id.clone())
            .collect();
        let mut unused = agent_total
            .checked_sub(&self.allocator.allocated_on(agent_id))
            .unwrap_or_default();
        for id in &offer_ids {
            if let Some(o) = self.offers.get(id) {
                unused.add(&o.resources);
            }
        }
        if !unused.contains(from) {
            return Err(bad(format!(
                "{verb} {from} on agent `{agent_id}`: not available unused there (unused: {})",
                if unused.is_empty() {
                    "nothing".to_string()
                } else {
                    unused.to_string()
                }
            )));
        }
        Ok(offer_ids)
    }
}
