//! Golden tests of spec parsing and plan compilation, and table tests of spec errors (each
//! naming the offending field's path).
//!
//! Regenerate the golden files with `UPDATE_GOLDEN=1 cargo test -p proffer-sdk --test service_spec`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, Result};
use proffer_sdk::service::compile::{compile, render_plans};
use proffer_sdk::service::validate::validate_update;
use proffer_sdk::service::{ServiceSpec, SpecError};

fn examples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples-specs")
}

fn golden(name: &str, actual: &str) -> Result<()> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(format!("{name}.txt"));
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual)?;
        return Ok(());
    }
    let expected = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "missing golden file {} (run with UPDATE_GOLDEN=1)",
            path.display()
        )
    })?;
    assert_eq!(actual, expected, "golden file {} differs", path.display());
    Ok(())
}

fn load(name: &str, overrides: &[(&str, &str)]) -> Result<ServiceSpec> {
    let text = std::fs::read_to_string(examples().join(format!("{name}.yaml")))?;
    let o: BTreeMap<String, String> = overrides
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Ok(ServiceSpec::parse(&text, &o)?)
}

#[test]
fn example_specs_match_their_golden_files() -> Result<()> {
    for name in ["hello-world", "batch", "etcd", "kitchen-sink"] {
        let spec = load(name, &[])?;
        let plans = compile(&spec, "deploy");
        let text = format!(
            "{}\n--- spec ---\n{}\n",
            render_plans(&plans),
            serde_json::to_string_pretty(&spec)?
        );
        golden(name, &text)?;
    }
    Ok(())
}

#[test]
fn options_override_defaults() -> Result<()> {
    let spec = load("hello-world", &[("WEB_COUNT", "4"), ("GREETING", "hi")])?;
    let web = spec.pod("web").context("web pod")?;
    assert_eq!(web.count, 4);
    let server = web.task("server").context("server task")?;
    assert_eq!(
        server.env.get("GREETING").map(String::as_str),
        Some("hi from {{POD_NAME}}")
    );
    let plans = compile(&spec, "deploy");
    assert_eq!(plans[0].phases[0].steps.len(), 4);
    assert_eq!(plans[0].phases[0].steps[3].name, "web-3:[server]");
    Ok(())
}

const BASE: &str = "name: svc\npods:\n  web:\n    count: 1\n    tasks:\n      server:\n        cpus: 0.1\n        memory: 32\n        cmd: run\n";

/// Applies a small edit to BASE and returns the error text.
fn error_of(yaml: &str) -> String {
    match ServiceSpec::parse(yaml, &BTreeMap::new()) {
        Ok(_) => "accepted".to_string(),
        Err(e) => e.to_string(),
    }
}

#[test]
fn invalid_specs_name_the_field() {
    let cases: Vec<(String, &str)> = vec![
        (
            BASE.replace("cpus: 0.1", "cpus: 0"),
            "pods.web.tasks.server.cpus: cpus must be > 0 (got 0)",
        ),
        (
            BASE.replace("cpus: 0.1", "cpu: 0.1"),
            "pods.web.tasks.server.cpu: unknown field `cpu`, expected one of `goal`, `cmd`, `cpus`, `memory`, `disk`, `ports`, `env`, `uris`, `health-check`, `readiness-check`, `kill-grace-period`, `image` at line 7 column 9",
        ),
        (
            BASE.replace("memory: 32", "memory: lots"),
            "pods.web.tasks.server.memory: invalid type: string \"lots\", expected f64 at line 8 column 17",
        ),
        (
            BASE.replace("cmd: run", "cmd: \"  \""),
            "pods.web.tasks.server.cmd: must not be empty",
        ),
        (
            BASE.replace("cmd: run", "cmd: run\n        image: \" \""),
            "pods.web.tasks.server.image: must not be empty",
        ),
        (
            BASE.replace("count: 1", "count: -1"),
            "pods.web.count: invalid type: integer `-1`, expected u32 at line 4 column 12",
        ),
        (
            BASE.replace("name: svc", "name: Svc"),
            "name: invalid name `Svc`: use lowercase letters, digits and single inner `-` (at most 63)",
        ),
        (
            BASE.replace("cmd: run", "cmd: run {{NOPE}}"),
            "template error on line 9: unknown template variable `NOPE`",
        ),
        (
            BASE.replace("cmd: run", "cmd: \"run {{POD_INDEX}} {{OOPS}}\"")
                .replace("name: svc", "name: svc\noptions:\n  OOPS: '{{POD_INDEX}}x'"),
            "accepted",
        ),
        (
            BASE.replace("web:", "web_1:"),
            "pods.web_1: invalid name `web_1`: use lowercase letters, digits and single inner `-` (at most 63)",
        ),
        (
            format!("{BASE}    placement:\n      - avoid: db\n"),
            "pods.web.placement[0]: unknown pod type `db`",
        ),
        (
            format!("{BASE}    placement:\n      - colocate: web\n"),
            "pods.web.placement[0]: a pod cannot be colocated with itself",
        ),
        (
            format!("{BASE}    placement:\n      - max-per: {{attribute: rack, max: 0}}\n"),
            "pods.web.placement[0].max: must be at least 1",
        ),
        (
            format!("{BASE}    placement:\n      - nearby: web\n"),
            "pods.web.placement[0]: unknown variant `nearby`, expected one of `one-per-agent`, `max-per`, `attribute-equals`, `attribute-like`, `avoid`, `colocate` at line 11 column 9",
        ),
        (
            format!("{BASE}    volumes:\n      data: {{path: /abs, size: 10}}\n"),
            "pods.web.volumes.data.path: `/abs` must be a relative path inside the sandbox without `.`/`..`",
        ),
        (
            format!("{BASE}    volumes:\n      data: {{path: data, size: 0}}\n"),
            "pods.web.volumes.data.size: a volume needs a size > 0 MB",
        ),
        (
            format!("{BASE}        readiness-check:\n          http: {{port: web}}\n"),
            "pods.web.tasks.server.readiness-check.http.port: the task has no port named `web`",
        ),
        (
            format!("{BASE}        health-check:\n          interval: 3\n"),
            "pods.web.tasks.server.health-check: give exactly one of `cmd` or `http`",
        ),
        (
            format!("{BASE}        ports:\n          a: {{port: 70000}}\n"),
            "pods.web.tasks.server.ports.a.port: 70000 is not a port",
        ),
        (
            format!("{BASE}        env:\n          1BAD: x\n"),
            "pods.web.tasks.server.env.1BAD: invalid environment variable name `1BAD`",
        ),
        (
            format!("{BASE}plans:\n  deploy:\n    phases:\n      p:\n        pod: nope\n"),
            "plans.deploy.phases.p.pod: unknown pod type `nope`",
        ),
        (
            format!(
                "{BASE}plans:\n  deploy:\n    phases:\n      p:\n        pod: web\n        tasks: [server, other]\n"
            ),
            "plans.deploy.phases.p.tasks[1]: pod `web` has no task `other`",
        ),
        (
            format!(
                "{BASE}plans:\n  deploy:\n    strategy: dependency\n    phases:\n      a: {{pod: web, depends: [b]}}\n      b: {{pod: web, depends: [a]}}\n"
            ),
            "plans.deploy.phases: dependency cycle among a, b",
        ),
        (
            format!(
                "{BASE}plans:\n  deploy:\n    phases:\n      a: {{pod: web, depends: [b]}}\n      b: {{pod: web}}\n"
            ),
            "plans.deploy.phases.a.depends: depends needs `strategy: dependency` on the plan",
        ),
        (
            format!(
                "{}plans:\n  update:\n    phases:\n      a: {{pod: web}}\n",
                BASE.replace(
                    "pods:\n",
                    "pods:\n  db:\n    count: 1\n    tasks:\n      t: {cpus: 0.1, memory: 8, cmd: x}\n"
                )
            ),
            "plans.update.phases: pod type `db` is in no phase; an update plan must roll every pod type",
        ),
        (
            format!("{BASE}plans:\n  recovery:\n    phases:\n      a: {{pod: web}}\n"),
            "plans.recovery: `recovery` is a reserved plan name",
        ),
        (
            BASE.replace("    count: 1\n", "    count: 1\n    count: 2\n"),
            "pods.web: duplicate entry with key \"count\" at line 4 column 5",
        ),
        (
            "name: svc\npods: {}\n".to_string(),
            "pods: a service needs at least one pod type",
        ),
        (
            "name: [\n".to_string(),
            "did not find expected node content at line 2 column 1, while parsing a flow node",
        ),
    ];
    let mut failures = Vec::new();
    for (yaml, expected) in &cases {
        let got = error_of(yaml);
        if got != *expected {
            failures.push(format!(
                "spec:\n{yaml}\nexpected: {expected}\n     got: {got}\n"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn spec_changes_that_cannot_be_applied_are_refused() -> Result<()> {
    let with_volume = format!("{BASE}    volumes:\n      data: {{path: data, size: 100}}\n");
    let old = ServiceSpec::parse(&with_volume, &BTreeMap::new())?;
    let check = |new: &str| -> String {
        match ServiceSpec::parse(new, &BTreeMap::new()) {
            Ok(n) => match validate_update(&old, &n) {
                Ok(()) => "allowed".to_string(),
                Err(e) => e.to_string(),
            },
            Err(e) => format!("parse: {e}"),
        }
    };
    assert_eq!(
        check(&with_volume.replace("size: 100", "size: 50")),
        "pods.web.volumes.data.size: cannot shrink a volume (100 → 50 MB)"
    );
    assert_eq!(
        check(&with_volume.replace("size: 100", "size: 200")),
        "allowed"
    );
    assert_eq!(
        check(&with_volume.replace("path: data", "path: other")),
        "pods.web.volumes.data.path: cannot move a volume (`data` → `other`)"
    );
    assert_eq!(
        check(BASE),
        "pods.web.volumes.data: cannot remove a persistent volume"
    );
    assert_eq!(
        check(&with_volume.replace("count: 1", "count: 5")),
        "allowed"
    );
    assert_eq!(
        check(&with_volume.replace("name: svc", "name: other")),
        "name: cannot rename a deployed service (`svc` → `other`)"
    );
    assert_eq!(
        check(&with_volume.replace("web", "api")),
        "pods.web: cannot remove a deployed pod type; set its count to 0 first"
    );
    let e: SpecError = SpecError::Field {
        path: String::new(),
        reason: "r".into(),
    };
    assert_eq!(e.to_string(), "r");
    Ok(())
}

#[test]
fn every_example_spec_round_trips_through_yaml() -> Result<()> {
    let mut seen = 0;
    for entry in std::fs::read_dir(examples())? {
        let path = entry?.path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path)?;
        let spec = ServiceSpec::parse(&text, &BTreeMap::new())
            .with_context(|| format!("parsing {}", path.display()))?;
        let yaml = serde_norway::to_string(&spec)?;
        assert!(
            !yaml.contains('!'),
            "tag in serialized {}:\n{yaml}",
            path.display()
        );
        let back = ServiceSpec::parse(&yaml, &BTreeMap::new())
            .with_context(|| format!("re-parsing serialized {}:\n{yaml}", path.display()))?;
        assert_eq!(back, spec, "round trip of {}", path.display());
        seen += 1;
    }
    assert!(seen >= 4, "only {seen} example specs found");
    Ok(())
}

#[test]
fn every_placement_rule_serializes_as_it_is_written() -> Result<()> {
    let text = r#"
name: rules
pods:
  db:
    count: 1
    tasks:
      t: {cmd: "true", cpus: 0.1, memory: 8}
  web:
    count: 2
    placement:
      - one-per-agent
      - max-per: {attribute: rack, max: 2}
      - attribute-equals: {attribute: disk, value: ssd}
      - attribute-like: {attribute: zone, pattern: "us-*"}
      - avoid: db
    tasks:
      t: {cmd: "true", cpus: 0.1, memory: 8}
  side:
    count: 1
    placement:
      - colocate: db
    tasks:
      t: {cmd: "true", cpus: 0.1, memory: 8}
"#;
    let spec = ServiceSpec::parse(text, &BTreeMap::new())?;
    let yaml = serde_norway::to_string(&spec)?;
    assert!(yaml.contains("- avoid: db"), "{yaml}");
    assert!(yaml.contains("- colocate: db"), "{yaml}");
    assert!(yaml.contains("- one-per-agent"), "{yaml}");
    assert!(!yaml.contains('!'), "{yaml}");
    assert_eq!(ServiceSpec::parse(&yaml, &BTreeMap::new())?, spec);
    Ok(())
}

/// Found by the spec fuzz target: a volume of 9223372036854775 MB was accepted, and evaluating
/// an offer for its pod overflowed while adding up the disk it needs (a panic in the
/// scheduler). Sizes the resources form cannot hold are refused, naming the field.
#[test]
fn regression_volume_size_beyond_the_largest_scalar_is_refused() {
    let yaml = "name: web\npods:\n  web:\n    count: 1\n    tasks:\n      web:\n        cmd: a\n        cpus: 0.1\n        disk: 1.0\n        memory: 0.1\n    volumes:\n      web:\n        path: data\n        size: 9223372036854775\n";
    assert_eq!(
        error_of(yaml),
        "pods.web.volumes.web.size: 9223372036854775 MB is more than the largest size, 1000000000000 MB"
    );
    let ok = yaml.replace("9223372036854775", "1000000000000");
    assert_eq!(error_of(&ok), "accepted");
}

/// Found by the spec fuzz target: `count: 4000000000` was accepted, and compiling the deploy
/// plan (a step per instance) tried to allocate 416 GB and aborted the scheduler (reachable
/// by POST /v1/update). Counts above MAX_POD_COUNT are refused, naming the field.
#[test]
fn regression_pod_count_is_bounded() {
    let yaml = "name: web\npods:\n  web:\n    count: 4000000000\n    tasks:\n      web:\n        cmd: a\n        cpus: 0.1\n        memory: 32\n";
    assert_eq!(
        error_of(yaml),
        "pods.web.count: 4000000000 instances are more than the 100000 one pod type may have"
    );
    assert_eq!(error_of(&yaml.replace("4000000000", "100000")), "accepted");
}
