//! The `why` of a step that waits for offers: the most telling reason over its recent declined
//! offers, not only the last one. A resource that no recent offer had comes first ("no offer of
//! the last 6 (from 3 agents) had cpus:4: the largest had cpus:2 (host-a1)"); otherwise the
//! reason met on the most agents (then the most offers), with the other reasons counted.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use proffer_proto::resources::format_milli;

/// Declined offers remembered per waiting step.
pub(super) const WINDOW: usize = 20;

/// The scalar resources a decline records, in this order.
const SCALARS: [&str; 3] = ["cpus", "mem", "disk"];

/// One offer a waiting step did not fit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Decline {
    /// The offer.
    pub offer_id: String,
    /// Its agent.
    pub agent_id: String,
    /// That agent's hostname.
    pub hostname: String,
    /// The evaluator's reason (`stage: part; part`).
    pub reason: String,
    /// What the offer had of cpus, mem, disk (milli-units).
    pub have: [i64; 3],
    /// What the step asked of cpus, mem, disk (milli-units).
    pub need: [i64; 3],
}

/// Remembers `d` in `window`, keeping the last [`WINDOW`].
pub(super) fn remember(window: &mut VecDeque<Decline>, d: Decline) {
    if window.len() >= WINDOW {
        window.pop_front();
    }
    window.push_back(d);
}

/// The message of a step that waits for a matching offer.
pub(super) fn summarize(window: &VecDeque<Decline>) -> String {
    let Some(last) = window.back() else {
        return "waiting for a matching offer".to_string();
    };
    let last_text = format!(
        "last offer {} from {}: {}",
        last.offer_id, last.hostname, last.reason
    );
    if window.len() == 1 {
        return format!("waiting for a matching offer; {last_text}");
    }
    let hosts: BTreeSet<&str> = window.iter().map(|d| d.agent_id.as_str()).collect();
    let over = format!(
        "the last {} offers (from {} agent{})",
        window.len(),
        hosts.len(),
        if hosts.len() == 1 { "" } else { "s" }
    );
    if let Some(short) = short_everywhere(window, &over) {
        return format!("waiting for a matching offer: {short}; {last_text}");
    }
    let ranked = rank(window);
    let Some((key, first)) = ranked.first() else {
        return format!("waiting for a matching offer; {last_text}");
    };
    let mut text = format!(
        "waiting for a matching offer: {} of {over} declined for {}",
        first.offers, first.example
    );
    if first.hosts.len() > 1 {
        text.push_str(&format!(" (on {} agents)", first.hosts.len()));
    }
    let others: Vec<String> = ranked
        .iter()
        .skip(1)
        .take(3)
        .filter(|(k, _)| k != key)
        .map(|(k, c)| format!("{k} ({})", c.offers))
        .collect();
    if !others.is_empty() {
        text.push_str(&format!("; also {}", others.join(", ")));
    }
    format!("{text}; {last_text}")
}

/// A resource that every offer of the window lacked, with the largest offered amount.
fn short_everywhere(window: &VecDeque<Decline>, over: &str) -> Option<String> {
    for (i, name) in SCALARS.iter().enumerate() {
        let need = window.iter().map(|d| d.need[i]).max().unwrap_or(0);
        if need <= 0 || !window.iter().all(|d| d.have[i] < d.need[i]) {
            continue;
        }
        // The first of the largest offers.
        let best = window.iter().rev().max_by_key(|d| d.have[i])?;
        let unit = if *name == "cpus" { "" } else { " MB" };
        return Some(format!(
            "no offer of {over} had {name}:{}{unit}: the largest had {name}:{}{unit} ({})",
            format_milli(need),
            format_milli(best.have[i]),
            best.hostname
        ));
    }
    None
}

/// How often one kind of reason was met.
#[derive(Debug, Default)]
struct Count<'a> {
    offers: usize,
    /// Agents (ids) it was met on.
    hosts: BTreeSet<&'a str>,
    /// The latest full part with this key (`placement: one-per-agent: agent h runs web-0`).
    example: String,
    /// Order of first appearance (ties keep it).
    first_seen: usize,
}

/// Reason kinds, most telling first: met on the most agents, then in the most offers; a step
/// pinned to an agent says so for every other agent, which tells least.
fn rank(window: &VecDeque<Decline>) -> Vec<(String, Count<'_>)> {
    let mut counts: BTreeMap<String, Count<'_>> = BTreeMap::new();
    for (n, d) in window.iter().enumerate() {
        let (stage, rest) = d.reason.split_once(": ").unwrap_or(("", d.reason.as_str()));
        let mut seen = BTreeSet::new();
        for part in rest.split("; ") {
            let head = match stage {
                "agent" => "must return to its agent",
                _ => part.split_once(':').map_or(part, |(h, _)| h),
            };
            let key = format!("{stage}: {head}");
            if !seen.insert(key.clone()) {
                continue;
            }
            let c = counts.entry(key).or_insert_with(|| Count {
                first_seen: n,
                ..Count::default()
            });
            c.offers += 1;
            c.hosts.insert(d.agent_id.as_str());
            c.example = format!("{stage}: {part}");
        }
    }
    let mut out: Vec<(String, Count<'_>)> = counts.into_iter().collect();
    out.sort_by_key(|(k, c)| {
        (
            k.starts_with("agent: "),
            std::cmp::Reverse(c.hosts.len()),
            std::cmp::Reverse(c.offers),
            c.first_seen,
        )
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(id: &str, host: &str, reason: &str, cpus: i64) -> Decline {
        Decline {
            offer_id: id.into(),
            agent_id: format!("id-{host}"),
            hostname: host.into(),
            reason: reason.into(),
            have: [cpus, 1_024_000, 0],
            need: [4_000, 64_000, 0],
        }
    }

    fn window(ds: Vec<Decline>) -> VecDeque<Decline> {
        let mut w = VecDeque::new();
        for x in ds {
            remember(&mut w, x);
        }
        w
    }

    #[test]
    fn a_resource_no_offer_had_comes_first() {
        let w = window(vec![
            d(
                "o1",
                "h1",
                "resources: insufficient cpus: need 4, offer has 2",
                2_000,
            ),
            d(
                "o2",
                "h2",
                "placement: one-per-agent: agent h2 already runs web-0",
                3_000,
            ),
            d(
                "o3",
                "h1",
                "resources: insufficient cpus: need 4, offer has 1",
                1_000,
            ),
        ]);
        assert_eq!(
            summarize(&w),
            "waiting for a matching offer: no offer of the last 3 offers (from 2 agents) had cpus:4: \
             the largest had cpus:3 (h2); last offer o3 from h1: resources: insufficient cpus: need 4, offer has 1"
        );
    }

    #[test]
    fn otherwise_the_reason_met_on_most_agents() {
        let one_per = |id: &str, h: &str| {
            d(
                id,
                h,
                &format!("placement: one-per-agent: agent {h} already runs web-0"),
                8_000,
            )
        };
        let w = window(vec![
            one_per("o1", "h1"),
            d(
                "o2",
                "h3",
                "agent: web-1 must return to agent a9 (web-1-server runs there)",
                8_000,
            ),
            one_per("o3", "h2"),
            d(
                "o4",
                "h4",
                "resources: insufficient cpus: need 4, offer has 1; port 80 (s.http) not offered",
                1_000,
            ),
            d("o5", "h4", "resources: port 80 (s.http) not offered", 8_000),
        ]);
        assert_eq!(
            summarize(&w),
            "waiting for a matching offer: 2 of the last 5 offers (from 4 agents) declined for \
             placement: one-per-agent: agent h2 already runs web-0 (on 2 agents); also resources: \
             port 80 (s.http) not offered (2), resources: insufficient cpus (1), agent: must return \
             to its agent (1); last offer o5 from h4: resources: port 80 (s.http) not offered"
        );
        let single = window(vec![one_per("o1", "h1")]);
        assert_eq!(
            summarize(&single),
            "waiting for a matching offer; last offer o1 from h1: placement: one-per-agent: agent h1 already runs web-0"
        );
        let mut full = VecDeque::new();
        for i in 0..30 {
            remember(&mut full, one_per(&format!("o{i}"), "h1"));
        }
        assert_eq!(full.len(), WINDOW);
        assert_eq!(full.front().map(|x| x.offer_id.as_str()), Some("o10"));
    }
}
