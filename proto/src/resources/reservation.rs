//! Reservation kinds and persistent volumes: the labels a resource carries besides its role.
//!
//! Mesos semantics: a resource is unreserved (role `*`), reserved **statically** for a role (by
//! the agent's `--resources`, changeable only by restarting the agent) or reserved
//! **dynamically** (by a RESERVE operation, undone by UNRESERVE, optionally recording the
//! principal who reserved it). Reserved `disk` may carry a **persistent volume** (CREATE /
//! DESTROY), which outlives the tasks that use it.

use super::{ResourceError, UNRESERVED};

/// How a reserved resource was reserved.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Reservation {
    /// Unreserved (role `*`), or reserved statically by the agent's configuration.
    #[default]
    Static,
    /// Reserved by a RESERVE operation; `principal` is who reserved it (may be empty).
    Dynamic {
        /// Who made the reservation (empty when unknown).
        principal: String,
    },
}

impl Reservation {
    /// A dynamic reservation made by `principal`.
    pub fn dynamic(principal: &str) -> Self {
        Reservation::Dynamic {
            principal: principal.to_string(),
        }
    }

    /// True for a dynamic reservation.
    pub fn is_dynamic(&self) -> bool {
        matches!(self, Reservation::Dynamic { .. })
    }
}

/// A persistent volume on reserved disk: `id` names it on its agent, `container_path` is
/// where tasks see it (relative to the sandbox).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Volume {
    /// The volume's id, unique on its agent.
    pub id: String,
    /// Mount point inside the task's sandbox (relative).
    pub container_path: String,
}

/// Checks a principal: at most 255 bytes, no whitespace or control characters, none of
/// `( ) [ ] { } , ; : =`.
pub fn validate_principal(principal: &str) -> Result<(), String> {
    if principal.len() > 255 {
        return Err("principal is longer than 255 bytes".into());
    }
    if let Some(c) = principal
        .chars()
        .find(|c| c.is_whitespace() || c.is_control() || "()[]{},;:=".contains(*c))
    {
        return Err(format!("character {c:?} is not allowed in a principal"));
    }
    Ok(())
}

/// Checks a volume: the id is `[A-Za-z0-9_.-]`, at most 255 bytes, not `.` or `..`; the
/// container path is relative, has no `..` segment and none of `[ ] ( ) ;` or whitespace.
pub fn validate_volume(volume: &Volume) -> Result<(), String> {
    let id = &volume.id;
    if id.is_empty() {
        return Err("volume id is empty".into());
    }
    if id.len() > 255 {
        return Err("volume id is longer than 255 bytes".into());
    }
    if id == "." || id == ".." {
        return Err(format!("volume id `{id}` is not allowed"));
    }
    if let Some(c) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
    {
        return Err(format!(
            "character {c:?} is not allowed in volume id `{id}`"
        ));
    }
    let path = &volume.container_path;
    if path.is_empty() {
        return Err(format!("volume `{id}` has an empty container path"));
    }
    if path.starts_with('/') {
        return Err(format!(
            "volume `{id}`: container path `{path}` must be relative to the sandbox"
        ));
    }
    if path.split('/').any(|seg| seg == "..") {
        return Err(format!(
            "volume `{id}`: container path `{path}` must not contain `..`"
        ));
    }
    if let Some(c) = path
        .chars()
        .find(|c| c.is_whitespace() || c.is_control() || "[]();".contains(*c))
    {
        return Err(format!(
            "volume `{id}`: character {c:?} is not allowed in a container path"
        ));
    }
    Ok(())
}

/// Checks the labels of one entry together: role name, reservation kind and volume.
pub(crate) fn validate_labels(
    name: &str,
    role: &str,
    reservation: &Reservation,
    volume: Option<&Volume>,
) -> Result<(), ResourceError> {
    super::validate_role(role).map_err(|reason| ResourceError::InvalidRole {
        name: name.to_string(),
        role: role.to_string(),
        reason,
    })?;
    let bad_reservation = |reason: String| ResourceError::InvalidReservation {
        name: name.to_string(),
        reason,
    };
    if let Reservation::Dynamic { principal } = reservation {
        if role == UNRESERVED {
            return Err(bad_reservation(
                "a dynamic reservation needs a role other than `*`".into(),
            ));
        }
        validate_principal(principal).map_err(bad_reservation)?;
    }
    if let Some(v) = volume {
        let bad_volume = |reason: String| ResourceError::InvalidVolume {
            name: name.to_string(),
            reason,
        };
        if name != "disk" {
            return Err(bad_volume("persistent volumes exist only on `disk`".into()));
        }
        if role == UNRESERVED {
            return Err(bad_volume(format!(
                "volume `{}` needs reserved disk (give a role)",
                v.id
            )));
        }
        validate_volume(v).map_err(bad_volume)?;
    }
    Ok(())
}

impl super::Resources {
    /// What the agent's configuration gives, without what operations did: dynamic
    /// reservations become unreserved again and volumes are dropped (static reservations
    /// stay). Used to compare an agent's checkpointed total with its configuration, and to
    /// re-apply the master's view of the operations to what an agent reports.
    pub fn without_operations(&self) -> super::Resources {
        self.map_labels(|k| {
            if k.is_dynamic() {
                super::ResourceKey::new(&k.name, UNRESERVED, k.kind)
            } else {
                super::ResourceKey {
                    volume: None,
                    ..k.clone()
                }
            }
        })
    }

    /// The ids of the persistent volumes in `self`.
    pub fn volume_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.volumes().map(|(_, v, _)| v.id.clone()).collect();
        ids.sort();
        ids.dedup();
        ids
    }

    /// Re-applies to `self` (what an agent reports, e.g. on re-registration) the dynamic
    /// reservations and persistent volumes recorded in `known` (the master's last view of that
    /// agent), as far as `self` still has the underlying resources. Agents do not checkpoint
    /// what RESERVE/CREATE did, so without this a re-registration would forget it.
    pub fn with_operations_of(&self, known: &super::Resources) -> super::Resources {
        let mut out = self.clone();
        for entry in known.entries() {
            let Some((key, _)) = entry.iter().next() else {
                continue;
            };
            if !key.is_dynamic() && key.volume.is_none() {
                continue;
            }
            // What the agent itself reports for this entry.
            let mut base = entry.without_volumes();
            if key.is_dynamic() {
                base = base.unreserved();
            }
            if let Some(rest) = out.checked_sub(&base) {
                out = rest.plus(&entry);
            }
        }
        out
    }
}
