//! Trace readers: the shipped samples parse as documented, bad records name file, line and
//! field, and a trace-driven scenario runs through the master.

use std::path::{Path, PathBuf};

use proffer_sim::scenario::TraceSpec;
use proffer_sim::trace::{self, Record};
use proffer_sim::{Policy, Scenario, Sim, SimError, report};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scenarios")
}

fn spec(toml_text: &str) -> anyhow::Result<TraceSpec> {
    #[derive(serde::Deserialize)]
    struct W {
        traces: Vec<TraceSpec>,
    }
    let w: W = toml::from_str(toml_text)?;
    w.traces
        .into_iter()
        .next()
        .ok_or_else(|| anyhow::anyhow!("no trace"))
}

fn parse(format: &str, text: &str) -> Result<Vec<Record>, SimError> {
    let s = spec(&format!(
        "[[traces]]\nformat = \"{format}\"\npath = \"x\"\ncpu_scale = 10\nmem_scale_mb = 1000\n"
    ))
    .map_err(|e| SimError::Plot {
        path: "spec".into(),
        message: e.to_string(),
    })?;
    trace::parse(text, Path::new("t.csv"), &s)
}

/// The error's (line, field), or a panic naming what came back instead.
fn where_(r: Result<Vec<Record>, SimError>) -> (usize, String) {
    match r {
        Err(SimError::Trace {
            path, line, field, ..
        }) => {
            assert_eq!(path, Path::new("t.csv"));
            (line, field)
        }
        other => panic!("expected a trace error, got {other:?}"),
    }
}

#[test]
fn google_reader() -> anyhow::Result<()> {
    let text = "\
0,,7,0,,0,alice,1,9,0.5,0.25,0,0
0,,7,1,,0,alice,1,9,0.1,0.1,0,0
5000000,,7,0,42,1,alice,1,9,0.5,0.25,0,0
65000000,,7,0,42,4,alice,1,9,0.5,0.25,0,0
70000000,,8,0,,0,bob,0,0,,,0,0
";
    let r = parse("google2011", text)?;
    // Task (7,0): arrives at 0, 5 cpus (0.5 × 10), 250 MB, runs 60 s; (7,1) never scheduled;
    // (8,0) has no requests and is skipped.
    assert_eq!(r.len(), 2);
    assert_eq!(r[0].key, "alice");
    assert_eq!(
        (
            r[0].task.cpus_milli,
            r[0].task.mem_milli,
            r[0].task.duration_ms
        ),
        (5000, 250_000, Some(60_000))
    );
    assert_eq!(r[1].task.duration_ms, None);
    assert_eq!(
        where_(parse("google2011", "0,,7,0,,0,a,1,9,0.5\n")),
        (1, "columns".into())
    );
    assert_eq!(
        where_(parse(
            "google2011",
            &format!("{}x,,7,0,,0,a,1,9,0.5,0.2,0,0\n", text)
        )),
        (6, "timestamp".into())
    );
    assert_eq!(
        where_(parse("google2011", "0,,7,0,,12,a,1,9,0.5,0.2,0,0\n")),
        (1, "event_type".into())
    );
    assert_eq!(
        where_(parse("google2011", "0,,7,0,,0,a,1,9,half,0.2,0,0\n")),
        (1, "cpu_request".into())
    );
    Ok(())
}

#[test]
fn alibaba_reader() -> anyhow::Result<()> {
    let text = "\
M1,3,j_1,1,Terminated,100,160,50,1.5
R2_1,1,j_2,1,Running,130,0,200,0.5
M3,1,j_2,1,Terminated,140,150,,
";
    let r = parse("alibaba2018", text)?;
    assert_eq!(
        r.len(),
        4,
        "three instances, one running task, one skipped row"
    );
    let first = r[0].task;
    // 50/100 cores × 10 = 5 cpus; 1.5 % of 1000 MB = 15 MB; 60 s.
    assert_eq!(
        (
            first.time_ms,
            first.cpus_milli,
            first.mem_milli,
            first.duration_ms
        ),
        (100_000, 5000, 15_000, Some(60_000))
    );
    assert_eq!(r[3].key, "j_2");
    assert_eq!(r[3].task.duration_ms, None);
    assert_eq!(
        where_(parse("alibaba2018", "M1,3,j_1,1\n")),
        (1, "columns".into())
    );
    assert_eq!(
        where_(parse(
            "alibaba2018",
            &format!("{text}M1,x,j_1,1,Terminated,1,2,50,1\n")
        )),
        (4, "instance_num".into())
    );
    assert_eq!(
        where_(parse("alibaba2018", "M1,1,,1,Terminated,1,2,50,1\n")),
        (1, "job_name".into())
    );
    assert_eq!(
        where_(parse("alibaba2018", "M1,1,j,1,Terminated,1,2,50,-1\n")),
        (1, "plan_mem".into())
    );
    Ok(())
}

#[test]
fn own_csv_and_json_readers() -> anyhow::Result<()> {
    let csv = "time_s,framework,cpus,mem_mb,duration_s,count\n0,a,1,512,10,2\n5,b,0.5,256,,1\n";
    let r = parse("csv", csv)?;
    assert_eq!(r.len(), 3);
    assert_eq!((r[2].key.as_str(), r[2].task.duration_ms), ("b", None));
    assert_eq!(
        where_(parse("csv", "time,framework\n")),
        (1, "header".into())
    );
    assert_eq!(
        where_(parse("csv", &format!("{csv}7,c,zero,1,1,1\n"))),
        (4, "cpus".into())
    );
    assert_eq!(
        where_(parse("csv", &format!("{csv}7,c,1,0,1,1\n"))),
        (4, "mem_mb".into())
    );
    assert_eq!(
        where_(parse(
            "csv",
            "time_s,framework,cpus,mem_mb,duration_s\n1,,1,1,1\n"
        )),
        (2, "framework".into())
    );
    let json = "[\n {\"time_s\": 1, \"framework\": \"a\", \"cpus\": 1, \"mem_mb\": 64},\n {\"time_s\": 2, \"framework\": \"a\", \"cpus\": 1, \"mem_mb\": 64, \"count\": 2, \"duration_s\": 3}\n]";
    let r = parse("json", json)?;
    assert_eq!(r.len(), 3);
    assert_eq!(r[2].task.duration_ms, Some(3000));
    let bad = "[\n {\"time_s\": 1, \"framework\": \"a\", \"cpus\": 1, \"mem_mb\": 64},\n {\"time_s\": 2, \"framework\": \"a\", \"cpu\": 1, \"mem_mb\": 64}\n]";
    assert_eq!(where_(parse("json", bad)), (3, "cpu".into()));
    let bad = "[\n {\"time_s\": 1, \"framework\": \"a\", \"cpus\": -1, \"mem_mb\": 64}\n]";
    assert_eq!(where_(parse("json", bad)), (2, "cpus".into()));
    assert_eq!(where_(parse("json", "[\n{\"time_s\": 1,,}\n]")).0, 2);
    Ok(())
}

#[test]
fn keys_fold_onto_max_frameworks() {
    let rec = |k: &str, t: u64| Record {
        key: k.into(),
        task: trace::TraceTask {
            time_ms: t,
            cpus_milli: 1000,
            mem_milli: 1000,
            duration_ms: Some(4000),
        },
    };
    let recs: Vec<Record> = (0..50).map(|i| rec(&format!("job{i}"), 1000 + i)).collect();
    let g = trace::group(recs, 4, 2.0);
    assert!(g.len() <= 4 && g.len() > 1);
    assert_eq!(g.iter().map(|(_, t)| t.len()).sum::<usize>(), 50);
    let first = g.iter().flat_map(|(_, t)| t).map(|t| t.time_ms).min();
    assert_eq!(first, Some(0), "shifted to start at 0");
    assert!(
        g.iter()
            .flat_map(|(_, t)| t)
            .all(|t| t.duration_ms == Some(2000))
    );
}

#[test]
fn shipped_samples_replay_through_the_master() -> anyhow::Result<()> {
    let s = Scenario::load(&dir().join("traces.toml"))?;
    let mut sim = Sim::new(&s, Policy::Drf)?;
    sim.run();
    let summary = report::summarize(&sim);
    assert_eq!(summary.counters.master_errors, 0);
    let names: Vec<&str> = summary
        .per_framework
        .iter()
        .map(|f| f.name.as_str())
        .collect();
    assert!(names.iter().any(|n| n.starts_with("trace0-")), "{names:?}");
    assert!(names.contains(&"trace2-etl"), "{names:?}");
    for f in &summary.per_framework {
        assert!(f.launched > 0, "{} launched nothing", f.name);
    }
    assert!(summary.tasks_finished > 0);
    // A missing trace file names the file.
    let mut broken = s.clone();
    broken.traces[0].path = "traces/nope.csv".into();
    let err = Sim::new(&broken, Policy::Drf).err().map(|e| e.to_string());
    assert!(err.is_some_and(|e| e.contains("nope.csv")));
    Ok(())
}

/// Found by the trace fuzz target: a JSON record with an empty key (`"": 0.5`) was refused
/// naming the empty field ``; it names the record instead.
#[test]
fn regression_json_record_with_an_empty_key_names_the_record() {
    let text = "[\n{\"time_s\": 0, \"framework\": \"a\", \"cpus\": 1, \"\": 0.5, \"mem_mb\": 1}\n]";
    assert_eq!(where_(parse("json", text)), (2, "record".to_string()));
}
