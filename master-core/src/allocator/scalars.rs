//! The four scalar resources that shares, quotas and limits are computed over, as a fixed array
//! (fast arithmetic, no allocation).

use proffer_proto::Resources;
use proffer_proto::resources::{Kind, UNRESERVED, Value};

/// Scalar names in array order.
pub const NAMES: [&str; 4] = ["cpus", "mem", "disk", "gpus"];

/// Milli-unit amounts of cpus, mem, disk, gpus.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Scalars(pub [i64; 4]);

fn index(name: &str) -> Option<usize> {
    NAMES.iter().position(|n| *n == name)
}

impl Scalars {
    /// The scalars of `r`, over all roles.
    pub fn of(r: &Resources) -> Scalars {
        let mut s = Scalars::default();
        for (k, v) in r.iter() {
            if let (Kind::Scalar, Value::Scalar(m), Some(i)) = (k.kind, v, index(&k.name)) {
                s.0[i] += m;
            }
        }
        s
    }

    /// The scalars of the unreserved part of `r`.
    pub fn unreserved(r: &Resources) -> Scalars {
        let mut s = Scalars::default();
        for (k, v) in r.iter() {
            if k.role != UNRESERVED {
                continue;
            }
            if let (Kind::Scalar, Value::Scalar(m), Some(i)) = (k.kind, v, index(&k.name)) {
                s.0[i] += m;
            }
        }
        s
    }

    /// Element-wise sum.
    pub fn plus(self, o: Scalars) -> Scalars {
        Scalars(std::array::from_fn(|i| self.0[i] + o.0[i]))
    }

    /// Element-wise difference (may go negative).
    pub fn minus(self, o: Scalars) -> Scalars {
        Scalars(std::array::from_fn(|i| self.0[i] - o.0[i]))
    }

    /// Element-wise max with zero.
    pub fn positive(self) -> Scalars {
        Scalars(self.0.map(|x| x.max(0)))
    }

    /// Element-wise min.
    pub fn min(self, o: Scalars) -> Scalars {
        Scalars(std::array::from_fn(|i| self.0[i].min(o.0[i])))
    }

    /// True if all entries are zero or less.
    pub fn is_empty(self) -> bool {
        self.0.iter().all(|x| *x <= 0)
    }

    /// The largest `self[r] / total[r]` over resources present in `total`.
    pub fn dominant_share(self, total: Scalars) -> f64 {
        let mut best = 0.0f64;
        for i in 0..4 {
            if total.0[i] > 0 {
                best = best.max(self.0[i] as f64 / total.0[i] as f64);
            }
        }
        best
    }

    /// As resources (unreserved scalars).
    pub fn to_resources(self) -> Resources {
        let mut r = Resources::new();
        for (i, name) in NAMES.iter().enumerate() {
            if self.0[i] > 0 {
                r.add(&Resources::scalar(name, self.0[i]));
            }
        }
        r
    }
}

/// A cap per scalar; `i64::MAX` = no cap.
pub const UNCAPPED: Scalars = Scalars([i64::MAX; 4]);

/// `r` with its unreserved scalars cut down to `caps` (reserved entries and non-scalars kept).
pub fn chop(r: &Resources, caps: Scalars) -> Resources {
    if caps == UNCAPPED {
        return r.clone();
    }
    let have = Scalars::unreserved(r);
    let mut excess = Resources::new();
    for (i, name) in NAMES.iter().enumerate() {
        let over = have.0[i] - caps.0[i].max(0);
        if over > 0 {
            excess.add(&Resources::scalar(name, over));
        }
    }
    if excess.is_empty() {
        return r.clone();
    }
    let mut out = r.clone();
    out.subtract(&excess);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalars_and_chop() {
        let r = Resources::parse("cpus:4;mem:1024;cpus(web):1;ports:[1-2]").unwrap_or_default();
        assert_eq!(Scalars::of(&r).0, [5000, 1_024_000, 0, 0]);
        assert_eq!(Scalars::unreserved(&r).0, [4000, 1_024_000, 0, 0]);
        let c = chop(&r, Scalars([1000, 512_000, 0, 0]));
        assert_eq!(c.to_string(), "cpus:1;cpus(web):1;mem:512;ports:[1-2]");
        assert_eq!(chop(&r, UNCAPPED), r);
        let total = Scalars([10_000, 2_048_000, 0, 0]);
        assert!((Scalars::of(&r).dominant_share(total) - 0.5).abs() < 1e-9);
    }
}
