//! proptest invariants over random sequences of inputs:
//! - no resources are in two outstanding offers (offers + tasks on an agent ≤ its total);
//! - tasks accepted on an agent never exceed its total;
//! - the allocator's count of a framework's outstanding offers is the core's, and a framework
//!   with `max_outstanding_offers` never holds more;
//! - a framework with a minimum offer (`offer_filters`) never gets a smaller one.

use proffer_proto::Resources;
use proffer_proto::v1::{self, TaskState};
use proptest::prelude::*;

use super::harness::{H, res, task};
use crate::core::{Call, Input};

#[derive(Debug, Clone)]
enum Step {
    Tick(u64),
    /// Accept the n-th outstanding offer of framework f with k tasks of (cpus milli, mem MB).
    Launch {
        f: usize,
        n: usize,
        k: usize,
        cpus: i64,
        mem: i64,
    },
    Decline {
        f: usize,
        n: usize,
    },
    /// Finish the n-th live task.
    Finish(usize),
    DisconnectAgent(usize),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (1u64..3_000).prop_map(Step::Tick),
        (0usize..3, 0usize..4, 1usize..4, 100i64..3_000, 64i64..3_000)
            .prop_map(|(f, n, k, cpus, mem)| Step::Launch { f, n, k, cpus, mem }),
        (0usize..3, 0usize..4).prop_map(|(f, n)| Step::Decline { f, n }),
        (0usize..20).prop_map(Step::Finish),
        (0usize..4).prop_map(Step::DisconnectAgent),
    ]
}

fn check(h: &H) -> Result<(), TestCaseError> {
    for (agent_id, agent) in &h.m.agents {
        let mut used = Resources::new();
        for o in h.m.offers.values().filter(|o| &o.agent_id == agent_id) {
            used.add(&o.resources);
        }
        let mut tasks = Resources::new();
        for f in h.m.frameworks.values() {
            for t in f
                .tasks
                .values()
                .filter(|t| &t.agent_id == agent_id && !t.state.is_terminal())
            {
                tasks.add(&t.resources);
            }
        }
        prop_assert!(
            agent.total.contains(&tasks),
            "tasks {tasks} exceed total {} on {agent_id}",
            agent.total
        );
        used.add(&tasks);
        prop_assert!(
            agent.total.contains(&used),
            "offers+tasks {used} exceed total {} on {agent_id}",
            agent.total
        );
        prop_assert!(h.m.allocator.allocated_on(agent_id).contains(&tasks));
    }
    for (id, f) in &h.m.frameworks {
        let (out, limit) = h.m.allocator.offers_outstanding(id).unwrap_or_default();
        prop_assert_eq!(out as usize, f.offers.len(), "outstanding offers of {}", id);
        if let Some(limit) = limit {
            prop_assert!(out <= limit, "{} holds {} offers, limit {}", id, out, limit);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 64,
        // Deterministic: a fixed seed, and no regression files written.
        rng_seed: proptest::test_runner::RngSeed::Fixed(0x005E_ED64),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]
    #[test]
    fn offers_never_overlap_and_tasks_fit(steps in proptest::collection::vec(step(), 1..60)) {
        let mut h = H::new();
        for a in 0..4u64 {
            h.register_agent(a, &format!("h{a}"), "cpus:4;mem:4096;ports:[1-100]");
        }
        // f0 asks for at most 2 outstanding offers.
        let info = v1::FrameworkInfo { name: "f0".into(), max_outstanding_offers: Some(2), ..Default::default() };
        let mut fws: Vec<v1::CallHeader> = vec![h.try_subscribe(100, info).map_err(TestCaseError::fail)?];
        fws.push(h.subscribe(101, "f1", 0.0));
        // f2 wants offers of at least 1.5 cpus.
        let min = v1::OfferFilters::minimum([("cpus", 1.5)]);
        let info = v1::FrameworkInfo { name: "f2".into(), offer_filters: [("*".to_string(), min)].into_iter().collect(), ..Default::default() };
        fws.push(h.try_subscribe(102, info).map_err(TestCaseError::fail)?);
        let mut offers: Vec<Vec<v1::Offer>> = vec![Vec::new(); 3];
        let mut live: Vec<(String, String, u64)> = Vec::new();
        let mut next_task = 0;
        for s in steps {
            match s {
                Step::Tick(ms) => h.advance(ms),
                Step::Launch { f, n, k, cpus, mem } => {
                    if let Some(o) = offers[f].get(n).cloned() {
                        let tasks: Vec<_> = (0..k).map(|_| { next_task += 1; task(&format!("t{next_task}"), &format!("cpus:{};mem:{mem}", cpus as f64 / 1000.0)) }).collect();
                        let ids: Vec<String> = tasks.iter().map(|t| t.task_id.clone()).collect();
                        let fits = res(&o).contains(&tasks.iter().fold(Resources::new(), |mut acc, t| { acc.add(&Resources::from_proto(&t.resources).unwrap_or_default()); acc }));
                        let r = h.launch(&fws[f], &[&o.id], tasks);
                        prop_assert_eq!(r.is_ok(), fits, "accept result must match whether the tasks fit");
                        if r.is_ok() {
                            offers[f].remove(n);
                            let conn = h.m.agents.get(&o.agent_id).and_then(|a| a.conn).unwrap_or(0);
                            live.extend(ids.into_iter().map(|id| (fws[f].framework_id.clone(), id, conn)));
                        }
                    }
                }
                Step::Decline { f, n } => {
                    if n < offers[f].len() {
                        let o = offers[f].remove(n);
                        let _ = h.call(Call::Decline(v1::DeclineRequest { header: Some(fws[f].clone()), offer_ids: vec![o.id], filters: None }));
                    }
                }
                Step::Finish(i) => {
                    if i < live.len() {
                        let (fw, id, conn) = live.remove(i);
                        let _ = h.status(conn, &fw, &id, TaskState::TaskFinished, b"");
                    }
                }
                Step::DisconnectAgent(a) => {
                    let _ = h.input(Input::AgentDisconnected { conn: a as u64 });
                }
            }
            // Collect new offers and forget rescinded ones.
            for (f, list) in offers.iter_mut().enumerate() {
                for e in h.events(100 + f as u64) {
                    match e {
                        v1::event::Event::Offers(o) => {
                            if f == 2 {
                                for x in &o.offers {
                                    prop_assert!(res(x).cpus_milli() >= 1_500, "f2 got {}", res(x));
                                }
                            }
                            list.extend(o.offers)
                        }
                        v1::event::Event::Rescind(r) => list.retain(|o| o.id != r.offer_id),
                        _ => {}
                    }
                }
            }
            h.drain();
            check(&h)?;
        }
    }
}
