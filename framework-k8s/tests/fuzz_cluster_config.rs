//! Fuzz target of `cluster.yaml`: configurations built as trees shaped like real ones (name,
//! versions, architecture, counts, framework name and role, port base, CIDRs, DNS, resources and
//! artifacts per component), with values at the edges, wrong types and unknown fields here and
//! there, written as YAML and mutated at the byte level; the golden configurations are mutated
//! too.
//!
//! Properties: parsing never panics; an error gives a reason (and the field's path where there
//! is one); an accepted configuration writes back to YAML that parses to the same cluster,
//! coexists with a differently named copy of itself when their port blocks differ, and its
//! deploy (the service spec of the cluster) is generated and accepted by the SDK as it is.
//!
//! `PROFFER_FUZZ_CASES=N` runs N cases, `PROFFER_FUZZ_SEED=S` another seed.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use proffer_k8s::config::{COMPONENTS, ClusterConfig, check_coexist};
use proffer_k8s::deploy::{DeployOptions, service_spec, spec_yaml};
use proffer_k8s::pki::Host;
use proffer_k8s::programs::Programs;
use proffer_proto::fuzzing;
use proffer_sdk::service::ServiceSpec;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};
use serde_json::{Value, json};

fn config() -> Config {
    Config {
        cases: fuzzing::cases(1_000),
        rng_seed: RngSeed::Fixed(fuzzing::seed(0x8C0F_F022)),
        failure_persistence: None,
        max_shrink_iters: 2_000,
        ..Config::default()
    }
}

const GOLDEN: &[&str] = &[
    include_str!("golden/minimal.yaml"),
    include_str!("golden/ha.yaml"),
];

/// Mostly one of `good`, sometimes one of `bad`.
fn pick(good: Vec<&'static str>, bad: Vec<&'static str>) -> BoxedStrategy<Value> {
    prop_oneof![
        12 => prop::sample::select(good).prop_map(|s| json!(s)),
        1 => prop::sample::select(bad).prop_map(|s| json!(s)),
    ]
    .boxed()
}

fn junk() -> BoxedStrategy<Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        "\\PC{0,8}".prop_map(Value::String),
        Just(json!([])),
        Just(json!({"x": 1})),
    ]
    .boxed()
}

fn amount() -> BoxedStrategy<Value> {
    prop_oneof![
        20 => prop::sample::select(vec![0.1, 0.5, 1.0, 2.0, 64.0, 512.0, 2048.0]).prop_map(|f| json!(f)),
        1 => prop::sample::select(vec![0.0, -1.0, 1e300, f64::NAN]).prop_map(|f| json!(f)),
        1 => junk(),
    ]
    .boxed()
}

fn component() -> BoxedStrategy<String> {
    prop_oneof![
        12 => prop::sample::select(COMPONENTS.to_vec()).prop_map(String::from),
        1 => prop::sample::select(vec!["kube-dns", "", "etcd "]).prop_map(String::from),
    ]
    .boxed()
}

fn artifact() -> BoxedStrategy<Value> {
    let sha = prop_oneof![
        10 => Just("a".repeat(64)),
        1 => prop::sample::select(vec!["", "xyz", "A"]).prop_map(|s| s.repeat(64)),
        1 => Just("a".repeat(63)),
    ];
    prop_oneof![
        30 => prop::sample::select(vec!["/usr/bin/etcd", "kubectl", "/opt/x"]).prop_map(|p| json!({"path": p})),
        20 => (prop::sample::select(vec!["https://h/x", "http://h/x", "file:///x", "ftp://h/x"]), sha)
            .prop_map(|(u, s)| json!({"url": u, "sha256": s})),
        10 => Just(json!({"standin": true})),
        1 => Just(json!({"url": "https://h/x"})),
        1 => Just(json!({"path": "/x", "url": "https://h/x"})),
        1 => Just(json!({"path": ""})),
        1 => Just(json!({})),
        1 => junk(),
    ]
    .boxed()
}

/// A configuration-shaped tree, as YAML, maybe mutated.
fn config_text() -> BoxedStrategy<String> {
    (
        (
            pick(vec!["prod", "dev", "a-1", "k"], vec!["", "-x", "x-", "a--b", "Prod", "a_b", "nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn"]),
            prop::option::of(pick(
                vec!["v1.31.2", "v1.30.4", "v1.0.0"],
                vec!["1.31.2", "v2.0.0", "v1.31", "v1.31.2-rc1", "v9999999.0.0"],
            )),
            prop::option::of(pick(vec!["1.11.3"], vec!["v1.11.3", "1.11"])),
            prop::option::of(pick(vec!["3.5.15"], vec!["x"])),
            prop::option::of(pick(vec!["amd64", "arm64"], vec!["x86"])),
            prop::option::of(prop_oneof![10 => prop::sample::select(vec![1u32, 3]).prop_map(|n| json!(n)), 1 => any::<u32>().prop_map(|n| json!(n))]),
            prop::option::of(prop_oneof![10 => (1u32..6).prop_map(|n| json!(n)), 1 => any::<u32>().prop_map(|n| json!(n)), 1 => Just(json!(0))]),
        ),
        (
            prop::option::of(pick(vec!["fw", "k8s-a"], vec!["", "a b", "-x"])),
            prop::option::of(pick(vec!["k8s", "eng/k8s"], vec!["", "a b", "..", "-x", "*"])),
            prop::option::of(prop_oneof![10 => (1024u32..65_000).prop_map(|n| json!(n)), 1 => any::<u16>().prop_map(|n| json!(n)), 1 => Just(json!(70_000))]),
            prop::option::of(pick(
                vec!["10.96.0.0/12", "10.32.0.0/16", "172.16.0.0/28"],
                vec!["10.96.0.1/12", "10.0.0.0/29", "10.0.0.0/33", "x", "0.0.0.0/0", "10.244.0.0/16"],
            )),
            prop::option::of(pick(
                vec!["10.244.0.0/16", "192.168.0.0/16"],
                vec!["10.96.0.0/12", "nope", "10.0.0.0/8"],
            )),
            prop::option::of(pick(vec!["10.96.0.10", "10.32.0.53"], vec!["10.96.0.1", "1.2.3.4", "x", "::1"])),
            prop::option::of(pick(vec!["cluster.local", "k8s.example"], vec!["", ".local", "local."])),
        ),
        (
            prop::option::of(prop::collection::btree_map(
                component(),
                (amount(), amount(), prop::option::of(amount()))
                    .prop_map(|(c, m, d)| match d {
                        Some(d) => json!({"cpus": c, "memory": m, "disk": d}),
                        None => json!({"cpus": c, "memory": m}),
                    }),
                0..3,
            )),
            prop_oneof![
                1 => Just(None),
                1 => prop::collection::btree_map(component(), artifact(), 0..3).prop_map(Some),
                // Every component given (the defaults need a checksum), one maybe odd.
                8 => (prop::collection::vec(artifact(), COMPONENTS.len()), any::<usize>(), component(), artifact())
                    .prop_map(|(list, drop, extra, with)| {
                        let mut m: BTreeMap<String, Value> = COMPONENTS
                            .iter()
                            .zip(list)
                            .map(|(c, a)| (c.to_string(), a))
                            .collect();
                        match drop % 8 {
                            0 => {
                                m.remove(COMPONENTS[drop % COMPONENTS.len()]);
                            }
                            1 => {
                                m.insert(extra, with);
                            }
                            _ => {}
                        }
                        Some(m)
                    }),
            ],
            prop_oneof![12 => Just(None), 1 => "[a-z-]{1,8}".prop_map(Some)],
            prop_oneof![
                6 => Just(Vec::new()),
                1 => prop::collection::vec(any::<(u8, usize, usize, u32)>(), 1..3),
            ],
        ),
    )
        .prop_map(
            |(
                (name, version, coredns, etcd, arch, cp, nodes),
                (fw, role, port_base, svc, pods, dns, domain),
                (resources, artifacts, unknown, ops),
            )| {
                let mut m = serde_json::Map::new();
                m.insert("name".into(), name);
                for (k, v) in [
                    ("kubernetes-version", version),
                    ("coredns-version", coredns),
                    ("etcd-version", etcd),
                    ("arch", arch),
                    ("control-plane-count", cp),
                    ("node-count", nodes),
                    ("framework-name", fw),
                    ("role", role),
                    ("port-base", port_base),
                    ("service-cidr", svc),
                    ("cluster-cidr", pods),
                    ("dns-ip", dns),
                    ("dns-domain", domain),
                    ("resources", resources.map(|r| json!(r))),
                    ("artifacts", artifacts.map(|a| json!(a))),
                ] {
                    if let Some(v) = v {
                        m.insert(k.into(), v);
                    }
                }
                if let Some(k) = unknown {
                    m.insert(k, json!(1));
                }
                let text = serde_norway::to_string(&Value::Object(m)).unwrap_or_default();
                fuzzing::mutate(&text, &ops)
            },
        )
        .boxed()
}

fn mutated_golden() -> impl Strategy<Value = String> {
    (
        prop::sample::select(GOLDEN),
        prop::collection::vec(any::<(u8, usize, usize, u32)>(), 0..6),
    )
        .prop_map(|(s, ops)| fuzzing::mutate(s, &ops))
}

fn deploy_options(n: u32, local: bool) -> DeployOptions {
    DeployOptions {
        pki_dir: "/var/lib/proffer/k8s".into(),
        programs: Programs::Separate {
            probe: "/opt/k8s-probe".into(),
        },
        control_plane: (0..n)
            .map(|i| Host {
                name: format!("cp-{i}"),
                ip: Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 11 + i as u8))),
            })
            .collect(),
        local,
        nodes_per_agent: 1,
        pki_url: None,
    }
}

fn check(yaml: &str, agents: Option<usize>) -> Result<(), TestCaseError> {
    let cluster = match ClusterConfig::parse(yaml, agents) {
        Ok(c) => c,
        Err(e) => {
            prop_assert!(!e.reason.trim().is_empty(), "{yaml:?}: {e:?}");
            return Ok(());
        }
    };
    // Written back, it reads as the same cluster.
    let again =
        serde_norway::to_string(&cluster.config).map_err(|e| TestCaseError::fail(e.to_string()))?;
    match ClusterConfig::parse(&again, agents) {
        Ok(back) => prop_assert_eq!(&back, &cluster, "{:?} written as {:?}", yaml, again),
        Err(e) => prop_assert!(false, "{yaml:?} written as {again:?} fails: {e}"),
    }
    // A copy under another name: coexists exactly when the port blocks differ.
    let mut other = cluster.config.clone();
    other.name = format!("{}-b", cluster.config.name.trim_end_matches('-'))
        .chars()
        .take(40)
        .collect();
    other.framework_name = None;
    other.role = None;
    other.port_base = Some(if cluster.config.port_base == Some(40_000) {
        41_000
    } else {
        40_000
    });
    if let Ok(other) = other.validate(agents) {
        let _ = check_coexist(&[&cluster, &other]);
        prop_assert!(check_coexist(&[&cluster, &cluster]).is_err());
    }
    // Its deploy is a spec the SDK accepts as it is.
    for local in [false, true] {
        let opts = deploy_options(cluster.config.control_plane_count, local);
        match service_spec(&cluster, &opts) {
            Ok(spec) => {
                let text = spec_yaml(&spec).map_err(|e| TestCaseError::fail(e.to_string()))?;
                match ServiceSpec::parse(&text, &BTreeMap::new()) {
                    Ok(parsed) => prop_assert_eq!(&parsed, &spec, "{:?}", yaml),
                    Err(e) => prop_assert!(
                        false,
                        "{yaml:?}: the generated deploy spec is refused: {e}\n{text}"
                    ),
                }
            }
            Err(e) => prop_assert!(!e.0.is_empty()),
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn cluster_configs_never_panic_and_deploy(
        yaml in config_text(),
        agents in prop::option::of(0usize..8),
    ) {
        check(&yaml, agents)?;
    }

    #[test]
    fn mutated_golden_configs_never_panic_and_deploy(
        yaml in mutated_golden(),
        agents in prop::option::of(0usize..8),
    ) {
        check(&yaml, agents)?;
    }
}
