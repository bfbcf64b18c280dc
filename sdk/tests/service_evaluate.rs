//! Table tests of the offer evaluator with synthetic offers, including the exact `why` text.

use proffer_proto::Resources;
use proffer_sdk::service::evaluate::{EvalConfig, OfferView, StepRequest, evaluate};
use proffer_sdk::service::placement::{AgentView, Placement};
use proffer_sdk::service::{PodSpec, ServiceSpec};

const SPEC: &str = r#"
name: eval
role: svc
pods:
  db:
    count: 3
    placement:
      - one-per-agent
    volumes:
      data: {path: data, size: 100}
    tasks:
      server:
        cmd: db
        cpus: 1
        memory: 512
        ports:
          client: {port: 5432}
          metrics: {}
  web:
    count: 4
    placement:
      - max-per: {attribute: rack, max: 2}
      - attribute-like: {attribute: zone, pattern: "eu-*"}
      - avoid: db
    tasks:
      server:
        cmd: web
        cpus: 0.5
        memory: 128
        ports:
          http: {}
  cache:
    count: 1
    placement:
      - colocate: db
      - attribute-equals: {attribute: disk, value: ssd}
    tasks:
      redis:
        cmd: redis
        cpus: 0.25
        memory: 64
"#;

struct Agent {
    id: &'static str,
    host: &'static str,
    attrs: Vec<(String, String)>,
}

fn agent(id: &'static str, host: &'static str, attrs: &[(&str, &str)]) -> Agent {
    Agent {
        id,
        host,
        attrs: attrs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

fn placed(pod: &str, index: u32, a: &Agent) -> Placement {
    Placement {
        pod: pod.into(),
        index,
        agent_id: a.id.into(),
        hostname: a.host.into(),
        attributes: a.attrs.clone(),
    }
}

struct Case {
    what: &'static str,
    pod: &'static str,
    index: u32,
    agent: Agent,
    offer: &'static str,
    others: Vec<Placement>,
    pinned: Option<(&'static str, &'static str)>,
    reservations: bool,
    /// `Ok(notes joined by " | ")` or `Err(reason)`.
    expect: Result<&'static str, &'static str>,
}

fn run(spec: &ServiceSpec, c: &Case) -> Result<String, String> {
    let pod: &PodSpec = spec.pod(c.pod).ok_or("no pod")?;
    let offer = Resources::parse(c.offer).map_err(|e| e.to_string())?;
    let req = StepRequest {
        step: format!("{}-{}", c.pod, c.index),
        pod_name: c.pod,
        index: c.index,
        pod,
        tasks: pod.tasks.iter().map(|(t, _)| t.clone()).collect(),
        pinned: c.pinned.map(|(a, w)| (a.to_string(), w.to_string())),
        tag: format!("eval.{}-{}", c.pod, c.index),
    };
    let view = OfferView {
        agent: AgentView {
            agent_id: c.agent.id,
            hostname: c.agent.host,
            attributes: &c.agent.attrs,
        },
        remaining: &offer,
    };
    let cfg = EvalConfig {
        role: spec.role.clone(),
        reservations: c.reservations,
    };
    evaluate(&cfg, &view, &req, &c.others).map(|m| {
        let ports: Vec<String> = m
            .tasks
            .iter()
            .flat_map(|t| t.ports.iter().map(|(e, p)| format!("{e}={p}")))
            .collect();
        format!(
            "{} | ports {} | ops {}",
            m.notes.join(" | "),
            ports.join(","),
            m.operations.len()
        )
    })
}

#[test]
fn evaluator_table() -> anyhow::Result<()> {
    let spec = ServiceSpec::parse(SPEC, &Default::default())?;
    let a1 = || {
        agent(
            "a1",
            "host1",
            &[("rack", "r1"), ("zone", "eu-west"), ("disk", "ssd")],
        )
    };
    let a2 = || agent("a2", "host2", &[("rack", "r1"), ("zone", "eu-east")]);
    let a3 = || agent("a3", "host3", &[("rack", "r2"), ("zone", "us-east")]);
    let a4 = || agent("a4", "host4", &[("zone", "eu-north")]);
    let big = "cpus:4;mem:4096;disk:1000;ports:[5000-5500]";
    let cases = vec![
        Case {
            what: "db fits an empty agent; fixed and dynamic ports chosen",
            pod: "db",
            index: 0,
            agent: a1(),
            offer: big,
            others: vec![],
            pinned: None,
            reservations: false,
            expect: Ok(
                "agent: any | placement: 1 rule(s) met | resources: using cpus:1;disk:100;mem:512;ports:[5000-5000,5432-5432] | reservation: disabled (unreserved resources are launched directly) | volumes: data → sandbox directory `data` (NOT persistent: reservations disabled) | ports PORT_CLIENT=5432,PORT_METRICS=5000 | ops 0",
            ),
        },
        Case {
            what: "every shortfall is listed",
            pod: "db",
            index: 0,
            agent: a1(),
            offer: "cpus:0.5;mem:4096;disk:50;ports:[6000-6000]",
            others: vec![],
            pinned: None,
            reservations: false,
            expect: Err(
                "resources: insufficient cpus: need 1, offer has 0.5; insufficient disk: need 100, offer has 50; port 5432 (server.client) not offered; insufficient ports: need 1 more, offer has 0",
            ),
        },
        Case {
            what: "dynamic port needs a free port besides the fixed one",
            pod: "db",
            index: 0,
            agent: a1(),
            offer: "cpus:4;mem:4096;disk:1000;ports:[5432-5432]",
            others: vec![],
            pinned: None,
            reservations: false,
            expect: Err("resources: insufficient ports: need 1 more, offer has 0"),
        },
        Case {
            what: "one-per-agent names the instance already there",
            pod: "db",
            index: 1,
            agent: a1(),
            offer: big,
            others: vec![placed("db", 0, &a1())],
            pinned: None,
            reservations: false,
            expect: Err("placement: one-per-agent: agent host1 already runs db-0"),
        },
        Case {
            what: "the instance itself does not count against one-per-agent",
            pod: "db",
            index: 0,
            agent: a1(),
            offer: big,
            others: vec![placed("db", 0, &a1())],
            pinned: None,
            reservations: false,
            expect: Ok(
                "agent: any | placement: 1 rule(s) met | resources: using cpus:1;disk:100;mem:512;ports:[5000-5000,5432-5432] | reservation: disabled (unreserved resources are launched directly) | volumes: data → sandbox directory `data` (NOT persistent: reservations disabled) | ports PORT_CLIENT=5432,PORT_METRICS=5000 | ops 0",
            ),
        },
        Case {
            what: "pinned to another agent (transient recovery)",
            pod: "db",
            index: 0,
            agent: a2(),
            offer: big,
            others: vec![],
            pinned: Some(("a1", "restart in place")),
            reservations: false,
            expect: Err("agent: db-0 must return to agent a1 (restart in place)"),
        },
        Case {
            what: "max-per rack, attribute-like and avoid all reported together",
            pod: "web",
            index: 2,
            agent: a2(),
            offer: big,
            others: vec![
                placed("web", 0, &a1()),
                placed("web", 1, &a1()),
                placed("db", 0, &a2()),
            ],
            pinned: None,
            reservations: false,
            expect: Err(
                "placement: max-per rack: rack=r1 already has 2 of at most 2 (web-0, web-1); avoid db: agent host2 runs db-0",
            ),
        },
        Case {
            what: "attribute-like refuses a us zone",
            pod: "web",
            index: 0,
            agent: a3(),
            offer: big,
            others: vec![],
            pinned: None,
            reservations: false,
            expect: Err("placement: attribute-like zone~eu-*: agent host3 has zone=us-east"),
        },
        Case {
            what: "missing attribute for max-per",
            pod: "web",
            index: 0,
            agent: a4(),
            offer: big,
            others: vec![],
            pinned: None,
            reservations: false,
            expect: Err("placement: max-per rack: agent host4 has no attribute `rack`"),
        },
        Case {
            what: "colocate needs a db on the agent; attribute-equals needs ssd",
            pod: "cache",
            index: 0,
            agent: a2(),
            offer: big,
            others: vec![placed("db", 0, &a1())],
            pinned: None,
            reservations: false,
            expect: Err(
                "placement: colocate db: agent host2 runs no db instance; attribute-equals disk=ssd: agent host2 has no attribute `disk`",
            ),
        },
        Case {
            what: "colocate met",
            pod: "cache",
            index: 0,
            agent: a1(),
            offer: big,
            others: vec![placed("db", 0, &a1())],
            pinned: Some(("a1", "x")),
            reservations: false,
            expect: Ok(
                "agent: pinned to a1 | placement: 2 rule(s) met | resources: using cpus:0.25;mem:64 | reservation: disabled (unreserved resources are launched directly) | volumes: none | ports  | ops 0",
            ),
        },
        Case {
            what: "with reservations: RESERVE then CREATE; another instance's reservation is left alone",
            pod: "db",
            index: 0,
            agent: a1(),
            offer: "cpus(svc,dynamic=eval.db-1):4;cpus:4;mem:4096;disk:1000;ports:[5000-5500]",
            others: vec![],
            pinned: None,
            reservations: true,
            expect: Ok(
                "agent: any | placement: 1 rule(s) met | resources: using cpus:1;disk:100;mem:512;ports:[5000-5000,5432-5432] | reservation: RESERVE cpus(svc,dynamic=eval.db-0):1;disk(svc,dynamic=eval.db-0):100;mem(svc,dynamic=eval.db-0):512;ports(svc,dynamic=eval.db-0):[5000-5000,5432-5432] | volumes: CREATE disk(svc,dynamic=eval.db-0)[eval.db-0.data:data]:100 | ports PORT_CLIENT=5432,PORT_METRICS=5000 | ops 2",
            ),
        },
        Case {
            what: "relaunch in place on its own reservation and volume: no new operation",
            pod: "db",
            index: 0,
            agent: a1(),
            offer: "cpus(svc,dynamic=eval.db-0):1;mem(svc,dynamic=eval.db-0):512;ports(svc,dynamic=eval.db-0):[5000-5000,5432-5432];disk(svc,dynamic=eval.db-0)[eval.db-0.data:data]:100;cpus:1",
            others: vec![],
            pinned: Some(("a1", "restart in place")),
            reservations: true,
            expect: Ok(
                "agent: pinned to a1 | placement: 1 rule(s) met | resources: using cpus(svc,dynamic=eval.db-0):1;disk(svc,dynamic=eval.db-0)[eval.db-0.data:data]:100;mem(svc,dynamic=eval.db-0):512;ports(svc,dynamic=eval.db-0):[5000-5000,5432-5432] | reservation: using the reservation of eval.db-0 | volumes: reusing disk(svc,dynamic=eval.db-0)[eval.db-0.data:data]:100 | ports PORT_CLIENT=5432,PORT_METRICS=5000 | ops 0",
            ),
        },
    ];
    let mut failures = Vec::new();
    for c in &cases {
        let got = run(&spec, c);
        let want = c.expect.map(str::to_string).map_err(str::to_string);
        if got != want {
            failures.push(format!("{}:\n  want {want:?}\n   got {got:?}", c.what));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    Ok(())
}
