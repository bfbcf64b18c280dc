//! The role tree: hierarchical roles (`eng/ml/batch`) with weights, quotas and allocations, and
//! the DRF order of children at every node.

use std::collections::BTreeMap;

use rustc_hash::FxHashMap as HashMap;

use proffer_proto::Resources;

use super::scalars::Scalars;
use super::sorter::{OrderedSet, share_key};

/// The pseudo-child of a node standing for the frameworks subscribed to that role itself (Mesos's
/// virtual `role/.` leaf).
pub(crate) const OWN: usize = usize::MAX;

/// A role's quota: guarantees are set aside for it; limits cap it (children included).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Quota {
    /// Resources the role is guaranteed (scalars only).
    pub guarantees: Resources,
    /// Most the role and its children may hold (scalars only); `None` = no limit.
    pub limits: Option<Resources>,
}

/// One node of the role tree.
#[derive(Debug, Clone)]
pub(crate) struct RoleNode {
    pub name: String,
    pub parent: Option<usize>,
    pub weight: f64,
    pub quota: Option<Quota>,
    pub guarantees: Scalars,
    pub limits: Option<Scalars>,
    /// Allocated to this role and its descendants.
    pub subtree: Scalars,
    /// Allocated to this role's own frameworks.
    pub own: Scalars,
    /// Child roles and [`OWN`], in DRF order.
    pub children: OrderedSet,
    /// Frameworks subscribed to this role, by their share in it.
    pub frameworks: OrderedSet,
    pub child_names: BTreeMap<String, usize>,
}

impl RoleNode {
    fn new(name: &str, parent: Option<usize>) -> Self {
        RoleNode {
            name: name.to_string(),
            parent,
            weight: 1.0,
            quota: None,
            guarantees: Scalars::default(),
            limits: None,
            subtree: Scalars::default(),
            own: Scalars::default(),
            children: OrderedSet::default(),
            frameworks: OrderedSet::default(),
            child_names: BTreeMap::new(),
        }
    }

    /// What the role still needs to reach its guarantees.
    pub fn unmet_guarantee(&self) -> Scalars {
        self.guarantees.minus(self.subtree).positive()
    }
}

/// All roles; node 0 is the root (name "").
#[derive(Debug, Clone)]
pub(crate) struct RoleTree {
    pub nodes: Vec<RoleNode>,
    by_name: HashMap<String, usize>,
}

impl Default for RoleTree {
    fn default() -> Self {
        RoleTree {
            nodes: vec![RoleNode::new("", None)],
            by_name: HashMap::default(),
        }
    }
}

impl RoleTree {
    /// The node of `role`, created (with its ancestors) if needed. `*` is a top-level role.
    pub fn ensure(&mut self, role: &str) -> usize {
        if let Some(i) = self.by_name.get(role) {
            return *i;
        }
        let segments: Vec<&str> = if role == "*" {
            vec!["*"]
        } else {
            role.split('/').collect()
        };
        let mut cur = 0;
        let mut path = String::new();
        for seg in segments {
            if !path.is_empty() {
                path.push('/');
            }
            path.push_str(seg);
            cur = match self.nodes[cur].child_names.get(seg) {
                Some(i) => *i,
                None => {
                    let idx = self.nodes.len();
                    self.nodes.push(RoleNode::new(&path, Some(cur)));
                    self.nodes[cur].child_names.insert(seg.to_string(), idx);
                    self.nodes[cur].children.set(idx, 0);
                    self.by_name.insert(path.clone(), idx);
                    idx
                }
            };
        }
        cur
    }

    /// The node of `role`, if it exists.
    pub fn get(&self, role: &str) -> Option<usize> {
        self.by_name.get(role).copied()
    }

    /// `idx` and its ancestors, excluding the root.
    pub fn chain(&self, idx: usize) -> impl Iterator<Item = usize> + '_ {
        std::iter::successors(Some(idx), move |i| self.nodes[*i].parent).filter(|i| *i != 0)
    }

    /// Adds `delta` (may be negative) to role `idx`'s own allocation and its ancestors' subtrees,
    /// and re-sorts along the path.
    pub fn add_alloc(&mut self, idx: usize, delta: Scalars, total: Scalars) {
        self.nodes[idx].own = self.nodes[idx].own.plus(delta);
        // Walks the path to the root twice rather than collecting it: this runs for every
        // offer, launch and decline.
        let mut i = Some(idx).filter(|i| *i != 0);
        while let Some(n) = i {
            self.nodes[n].subtree = self.nodes[n].subtree.plus(delta);
            i = self.nodes[n].parent.filter(|p| *p != 0);
        }
        self.rekey_own(idx, total);
        let mut i = Some(idx).filter(|i| *i != 0);
        while let Some(n) = i {
            self.rekey(n, total);
            i = self.nodes[n].parent.filter(|p| *p != 0);
        }
    }

    /// Updates node `idx`'s position among its siblings.
    pub fn rekey(&mut self, idx: usize, total: Scalars) {
        let n = &self.nodes[idx];
        let key = share_key(n.subtree.dominant_share(total) / n.weight);
        if let Some(p) = n.parent {
            self.nodes[p].children.set(idx, key);
        }
    }

    /// Updates the position of node `idx`'s own-frameworks leaf among its children.
    pub fn rekey_own(&mut self, idx: usize, total: Scalars) {
        let n = &mut self.nodes[idx];
        if n.frameworks.is_empty() {
            n.children.remove(OWN);
        } else {
            let key = share_key(n.own.dominant_share(total));
            n.children.set(OWN, key);
        }
    }

    /// Recomputes every key (after the cluster total changed or weights changed).
    pub fn rekey_all(&mut self, total: Scalars) {
        for i in 1..self.nodes.len() {
            self.rekey(i, total);
            self.rekey_own(i, total);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_paths_and_orders_children() {
        let mut t = RoleTree::default();
        let ml = t.ensure("eng/ml");
        let web = t.ensure("eng/web");
        let star = t.ensure("*");
        let eng = t.get("eng").unwrap_or(0);
        assert_eq!(t.nodes[ml].parent, Some(eng));
        assert_eq!(t.nodes[star].parent, Some(0));
        assert_eq!(t.chain(ml).collect::<Vec<_>>(), [ml, eng]);
        let total = Scalars([10_000, 10_000, 0, 0]);
        t.add_alloc(ml, Scalars([5_000, 0, 0, 0]), total);
        assert_eq!(t.nodes[eng].subtree.0[0], 5_000);
        // Under eng, web (share 0) now sorts before ml (share 0.5).
        assert_eq!(t.nodes[eng].children.iter().collect::<Vec<_>>(), [web, ml]);
        // At the root, `*` (0) sorts before eng (0.5).
        assert_eq!(t.nodes[0].children.iter().next(), Some(star));
    }
}
