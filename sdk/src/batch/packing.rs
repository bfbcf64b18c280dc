//! Packing identical tasks into one offer.

use proffer_proto::resources::UNRESERVED;
use proffer_proto::{Resources, v1};

/// The resources one task needs, and the role it may draw reserved resources from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TaskShape {
    /// Milli-cpus per task.
    pub cpus_milli: i64,
    /// Milli-MB of memory per task.
    pub mem_milli: i64,
    /// The framework's role; resources reserved for it are used before unreserved ones.
    pub role: String,
}

/// Cuts up to `limit` task-sized pieces out of `offered`. Each piece lies within the offer
/// (reserved-for-role resources first, then unreserved), and the pieces never overlap.
pub(crate) fn pack(offered: &Resources, shape: &TaskShape, limit: usize) -> Vec<Resources> {
    let mut avail = offered.clone();
    let mut out = Vec::new();
    while out.len() < limit {
        let Some(task) = take_one(&avail, shape) else {
            break;
        };
        let Some(rest) = avail.checked_sub(&task) else {
            break;
        };
        avail = rest;
        out.push(task);
    }
    out
}

fn take_one(avail: &Resources, shape: &TaskShape) -> Option<Resources> {
    let mut parts = Vec::new();
    for (name, need) in [("cpus", shape.cpus_milli), ("mem", shape.mem_milli)] {
        parts.extend(take_scalar(avail, name, need, &shape.role)?);
    }
    Resources::from_proto(&parts).ok()
}

fn take_scalar(avail: &Resources, name: &str, need: i64, role: &str) -> Option<Vec<v1::Resource>> {
    let roles: &[&str] = if role == UNRESERVED {
        &[UNRESERVED]
    } else {
        &[role, UNRESERVED]
    };
    let mut left = need;
    let mut parts = Vec::new();
    for r in roles {
        let take = avail.for_role(r).scalar_milli(name).min(left);
        if take > 0 {
            parts.push(v1::Resource {
                name: name.to_string(),
                role: (*r).to_string(),
                value: Some(v1::resource::Value::ScalarMilli(take)),
                ..Default::default()
            });
            left -= take;
        }
    }
    (left <= 0).then_some(parts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proffer_proto::ResourceError;

    fn shape(cpus: i64, mem: i64, role: &str) -> TaskShape {
        TaskShape {
            cpus_milli: cpus,
            mem_milli: mem,
            role: role.to_string(),
        }
    }

    #[test]
    fn packs_as_many_as_fit() -> Result<(), ResourceError> {
        let offer = Resources::parse("cpus:1;mem:256;ports:[31000-31010]")?;
        let pieces = pack(&offer, &shape(250, 64_000, "*"), usize::MAX);
        assert_eq!(pieces.len(), 4);
        let mut sum = Resources::new();
        for p in &pieces {
            assert_eq!(*p, Resources::parse("cpus:0.25;mem:64")?);
            sum.add(p);
        }
        assert!(offer.contains(&sum));
        Ok(())
    }

    #[test]
    fn memory_can_be_the_limit_and_limit_is_respected() -> Result<(), ResourceError> {
        let offer = Resources::parse("cpus:8;mem:200")?;
        assert_eq!(pack(&offer, &shape(100, 64_000, "*"), usize::MAX).len(), 3);
        assert_eq!(pack(&offer, &shape(100, 64_000, "*"), 2).len(), 2);
        assert_eq!(pack(&offer, &shape(100, 64_000, "*"), 0).len(), 0);
        Ok(())
    }

    #[test]
    fn too_small_offer_gives_nothing() -> Result<(), ResourceError> {
        let offer = Resources::parse("cpus:0.1;mem:1024")?;
        assert!(pack(&offer, &shape(250, 64_000, "*"), usize::MAX).is_empty());
        assert!(pack(&Resources::new(), &shape(250, 64_000, "*"), usize::MAX).is_empty());
        Ok(())
    }

    #[test]
    fn reserved_resources_are_used_first_then_unreserved() -> Result<(), ResourceError> {
        let offer = Resources::parse("cpus(web):0.5;cpus:1;mem(web):64;mem:1024")?;
        let pieces = pack(&offer, &shape(400, 64_000, "web"), usize::MAX);
        assert_eq!(pieces.len(), 3);
        assert_eq!(pieces[0], Resources::parse("cpus(web):0.4;mem(web):64")?);
        assert_eq!(
            pieces[1],
            Resources::parse("cpus(web):0.1;cpus:0.3;mem:64")?
        );
        // Unreserved-role tasks never take another role's reservation.
        let only_reserved = Resources::parse("cpus(web):4;mem(web):1024")?;
        assert!(pack(&only_reserved, &shape(400, 64_000, "*"), usize::MAX).is_empty());
        Ok(())
    }
}
