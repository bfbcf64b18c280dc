//! proptest: random sequences of RESERVE, UNRESERVE, CREATE, DESTROY, LAUNCH and task ends
//! never change an agent's quantities, keep the allocator's view equal to the core's, never let
//! the allocator hold more than the agent has, and leave everything unchanged when refused.

use proffer_proto::Resources;
use proffer_proto::v1::{self, TaskState, event::Event, operation::Op};
use proptest::prelude::*;

use super::harness::{H, task};
use crate::core::{Call, Timestamp};

const A1: u64 = 1;
const F1: u64 = 101;
const AGENT: &str = "cpus:4;mem:1024;disk:100";

#[derive(Debug, Clone)]
enum Step {
    /// An ACCEPT of the current offer with these operations.
    Accept(Vec<Ops>),
    /// The oldest running task finishes.
    Finish,
}

#[derive(Debug, Clone, Copy)]
enum Ops {
    ReserveCpu,
    ReserveDisk,
    UnreserveCpu,
    UnreserveDisk,
    Create,
    Destroy,
    LaunchPlain,
    LaunchReserved,
    LaunchVolume,
}

fn wire(text: &str) -> Vec<v1::Resource> {
    Resources::parse(text)
        .map(|r| r.to_proto())
        .unwrap_or_default()
}

fn operation(op: Ops, n: usize) -> v1::Operation {
    let op = match op {
        Ops::ReserveCpu => Op::Reserve(v1::Reserve {
            resources: wire("cpus(web,dynamic):1"),
        }),
        Ops::ReserveDisk => Op::Reserve(v1::Reserve {
            resources: wire("disk(web,dynamic):50"),
        }),
        Ops::UnreserveCpu => Op::Unreserve(v1::Unreserve {
            resources: wire("cpus(web,dynamic):1"),
        }),
        Ops::UnreserveDisk => Op::Unreserve(v1::Unreserve {
            resources: wire("disk(web,dynamic):50"),
        }),
        Ops::Create => Op::Create(v1::CreateVolume {
            volumes: wire("disk(web,dynamic)[v:v]:50"),
        }),
        Ops::Destroy => Op::Destroy(v1::DestroyVolume {
            volumes: wire("disk(web,dynamic)[v:v]:50"),
        }),
        Ops::LaunchPlain => Op::Launch(v1::Launch {
            tasks: vec![task(&format!("p{n}"), "cpus:1;mem:64")],
        }),
        Ops::LaunchReserved => Op::Launch(v1::Launch {
            tasks: vec![task(&format!("r{n}"), "cpus(web,dynamic):1;mem:64")],
        }),
        Ops::LaunchVolume => Op::Launch(v1::Launch {
            tasks: vec![task(
                &format!("v{n}"),
                "cpus:0.5;mem:64;disk(web,dynamic)[v:v]:50",
            )],
        }),
    };
    v1::Operation { op: Some(op) }
}

fn arb_step() -> impl Strategy<Value = Step> {
    let op = prop::sample::select(vec![
        Ops::ReserveCpu,
        Ops::ReserveDisk,
        Ops::UnreserveCpu,
        Ops::UnreserveDisk,
        Ops::Create,
        Ops::Destroy,
        Ops::LaunchPlain,
        Ops::LaunchReserved,
        Ops::LaunchVolume,
    ]);
    prop_oneof![
        4 => prop::collection::vec(op, 1..4).prop_map(Step::Accept),
        1 => Just(Step::Finish),
    ]
}

fn quantities(r: &Resources) -> (i64, i64, i64) {
    (r.cpus_milli(), r.mem_milli(), r.scalar_milli("disk"))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]
    #[test]
    fn operations_keep_the_books_straight(steps in prop::collection::vec(arb_step(), 1..40)) {
        let mut h = H::new();
        h.register_agent(A1, "host1", AGENT);
        let info = v1::FrameworkInfo {
            name: "fw".into(),
            roles: vec!["web".into()],
            ..Default::default()
        };
        let fw = h.try_subscribe(F1, info).map_err(TestCaseError::fail)?;
        let want = quantities(&Resources::parse(AGENT).unwrap_or_default());
        let mut running: Vec<String> = Vec::new();
        let mut offer: Option<v1::Offer> = None;
        for (n, step) in steps.into_iter().enumerate() {
            h.advance(1_000);
            for e in h.events(F1) {
                match e {
                    Event::Offers(o) => offer = o.offers.into_iter().next().or(offer.take()),
                    Event::Rescind(_) => offer = None,
                    _ => {}
                }
            }
            h.drain();
            match step {
                Step::Finish => {
                    if !running.is_empty() {
                        let t = running.remove(0);
                        let uuid = format!("u{n}");
                        h.status(A1, &fw.framework_id, &t, TaskState::TaskFinished, uuid.as_bytes())
                            .map_err(|e| TestCaseError::fail(e.to_string()))?;
                    }
                }
                Step::Accept(ops) => {
                    let Some(o) = offer.clone() else { continue };
                    let before = h.m.snapshot(Timestamp(h.now));
                    let launched: Vec<String> = ops.iter().filter_map(|op| match op {
                        Ops::LaunchPlain => Some(format!("p{n}")),
                        Ops::LaunchReserved => Some(format!("r{n}")),
                        Ops::LaunchVolume => Some(format!("v{n}")),
                        _ => None,
                    }).collect();
                    // One task id per kind per step: duplicates are refused like any bad input.
                    let result = h.call(Call::Accept(v1::AcceptRequest {
                        header: Some(fw.clone()),
                        offer_ids: vec![o.id.clone()],
                        operations: ops.iter().map(|op| operation(*op, n)).collect(),
                        filters: Some(v1::Filters { refuse_seconds: Some(0.0) }),
                    }));
                    match result {
                        Ok(()) => {
                            offer = None;
                            running.extend(launched);
                        }
                        Err(_) => {
                            prop_assert_eq!(h.m.snapshot(Timestamp(h.now)), before, "refused but changed");
                        }
                    }
                }
            }
            // The books: quantities never change; core and allocator agree; nothing over-held.
            let snap = h.m.snapshot(Timestamp(h.now));
            let agent = snap.agents.first().ok_or_else(|| TestCaseError::fail("no agent"))?;
            let total = Resources::parse(&agent.total).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(quantities(&total), want);
            prop_assert_eq!(h.m.allocator().total(), &total, "allocator total differs from the core's");
            let held = h.m.allocator().allocated_on(&agent.id);
            prop_assert!(total.contains(&held), "held {} exceeds total {}", held, total);
        }
    }
}
