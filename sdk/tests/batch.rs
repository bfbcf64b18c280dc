//! Batch framework tests against the fake scheduler server.

mod common;

use std::collections::{BTreeSet, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use common::{Call, Completion, Fake, FakeConfig};
use proffer_proto::{Resources, v1};
use proffer_sdk::{BatchError, BatchProgress, BatchSpec, BatchSummary, run_batch};
use tokio_util::sync::CancellationToken;

/// Bound on every run (each ends as soon as the run does): generous for a loaded CI machine.
const WAIT: Duration = Duration::from_secs(60);

type Log = Arc<Mutex<Vec<BatchProgress>>>;

fn recorder() -> (Log, impl FnMut(&BatchProgress) + Send + 'static) {
    let log: Log = Arc::default();
    let l = log.clone();
    (log, move |p: &BatchProgress| {
        l.lock().unwrap_or_else(|e| e.into_inner()).push(p.clone())
    })
}

fn spec(name: &str, tasks: usize, cpus: f64, mem: f64) -> BatchSpec {
    BatchSpec {
        cpus,
        mem,
        ..BatchSpec::new(name, tasks, "echo hi")
    }
}

/// A fake master with one agent, `a1`, of `resources`.
async fn one_agent(resources: &str) -> Result<Fake> {
    Fake::start(FakeConfig {
        agents: vec![("a1".into(), resources.into())],
        ..Default::default()
    })
    .await
}

/// `spec` submitted at `rate` tasks/s.
fn at_rate(spec: BatchSpec, rate: f64) -> BatchSpec {
    BatchSpec {
        rate: Some(rate),
        ..spec
    }
}

async fn run(
    fake: &Fake,
    spec: BatchSpec,
    progress: impl FnMut(&BatchProgress) + Send + 'static,
) -> Result<BatchSummary> {
    let r = tokio::time::timeout(
        WAIT,
        run_batch(&fake.master(), spec, progress, CancellationToken::new()),
    )
    .await?;
    Ok(r?)
}

fn accepts(fake: &Fake) -> Vec<v1::AcceptRequest> {
    fake.calls()
        .into_iter()
        .filter_map(|c| match c {
            Call::Accept(a) => Some(a),
            _ => None,
        })
        .collect()
}

fn launched_tasks(a: &v1::AcceptRequest) -> Vec<v1::TaskInfo> {
    a.operations
        .iter()
        .filter_map(|op| match &op.op {
            Some(v1::operation::Op::Launch(l)) => Some(l.tasks.clone()),
            _ => None,
        })
        .flatten()
        .collect()
}

fn refuse(f: &Option<v1::Filters>) -> Option<f64> {
    f.as_ref().and_then(|f| f.refuse_seconds)
}

#[tokio::test]
async fn packs_four_per_offer_acks_everything_and_summarises() -> Result<()> {
    let fake = one_agent("cpus:1;mem:256").await?;
    let (log, progress) = recorder();
    let summary = run(&fake, spec("b", 10, 0.25, 64.0), progress).await?;

    assert_eq!(
        (summary.tasks, summary.launched, summary.finished),
        (10, 10, 10)
    );
    assert_eq!(
        (
            summary.failed,
            summary.killed,
            summary.lost,
            summary.errored
        ),
        (0, 0, 0, 0)
    );
    assert!(summary.all_finished());
    assert!(
        summary.to_string().contains("10/10 tasks finished"),
        "{summary}"
    );

    let accepts = accepts(&fake);
    let sizes: Vec<usize> = accepts.iter().map(|a| launched_tasks(a).len()).collect();
    assert_eq!(sizes, [4, 4, 2]);
    assert_eq!(
        accepts
            .iter()
            .map(|a| refuse(&a.filters))
            .collect::<Vec<_>>(),
        [Some(1.0), Some(1.0), Some(60.0)]
    );
    let mut ids = BTreeSet::new();
    for a in &accepts {
        for t in launched_tasks(a) {
            assert_eq!(t.agent_id, "a1");
            assert_eq!(
                Resources::from_proto(&t.resources)?,
                Resources::parse("cpus:0.25;mem:64")?
            );
            let cmd = t.command.context("task without command")?;
            assert!(cmd.shell);
            assert_eq!(cmd.value, "echo hi");
            ids.insert(t.task_id);
        }
    }
    let expected: BTreeSet<String> = (0..10).map(|i| format!("b-{i:04}")).collect();
    assert_eq!(ids, expected);

    let st = fake.state();
    assert!(st.violations.is_empty(), "{:?}", st.violations);
    assert!(st.bad_headers.is_empty(), "{:?}", st.bad_headers);
    // The offer limit follows the queue: 10 waiting → 16 (a power of two, the cap), then
    // lowered once a quarter or less of it is wanted (2 left after the second launch → 2).
    assert_eq!(st.subscribes[0].max_outstanding_offers, Some(16));
    let limits: Vec<Option<u32>> = st
        .calls
        .iter()
        .filter_map(|c| match c {
            Call::UpdateFramework(u) => u.framework_info.as_ref().map(|i| i.max_outstanding_offers),
            _ => None,
        })
        .collect();
    assert_eq!(limits, [Some(2)]);
    let acked: Vec<Vec<u8>> = st.calls.iter().flat_map(|c| c.acked(false)).collect();
    assert!(
        st.calls.iter().any(|c| c.name() == "acknowledge_batch"),
        "acknowledgements go in batches"
    );
    assert_eq!(
        acked.len(),
        30,
        "3 updates per task, each acknowledged once"
    );
    assert_eq!(
        acked.iter().collect::<HashSet<_>>(),
        st.sent_uuids.iter().collect::<HashSet<_>>()
    );
    // Every offer the batch saw was used or declined (an offer still in flight when the last
    // task ended is left to the teardown).
    let declines: Vec<_> = st
        .calls
        .iter()
        .filter_map(|c| match c {
            Call::Decline(d) => Some(d.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(accepts.len() + declines.len(), summary.offers_received);
    assert!(summary.offers_received <= st.offers_sent);
    assert_eq!(summary.offers_declined, declines.len());
    assert!(
        declines.iter().all(|d| refuse(&d.filters) == Some(60.0)),
        "offers after the last launch are refused 60 s"
    );
    let names: Vec<_> = st.calls.iter().map(Call::name).collect();
    assert_eq!(names.iter().filter(|n| **n == "suppress").count(), 1);
    let last_accept = names
        .iter()
        .rposition(|n| *n == "accept")
        .context("no accept")?;
    let suppress = names
        .iter()
        .position(|n| *n == "suppress")
        .context("no suppress")?;
    assert!(
        suppress > last_accept,
        "suppress comes after the last launch: {names:?}"
    );
    assert_eq!(names.last(), Some(&"teardown"));
    drop(st);

    let log = log.lock().unwrap_or_else(|e| e.into_inner()).clone();
    assert_eq!(
        log.first(),
        Some(&BatchProgress::Subscribed {
            framework_id: "fw-1".into()
        })
    );
    assert_eq!(log.last(), Some(&BatchProgress::Done));
    assert_eq!(
        log.iter()
            .filter(|p| matches!(p, BatchProgress::Launched { .. }))
            .count(),
        10
    );
    assert_eq!(
        log.iter()
            .filter(|p| matches!(p, BatchProgress::Update { .. }))
            .count(),
        30
    );
    assert!(log.contains(&BatchProgress::Update {
        task_id: "b-0009".into(),
        state: "TASK_FINISHED".into(),
        message: "TASK_FINISHED from the fake".into()
    }));
    Ok(())
}

#[tokio::test]
async fn max_tasks_per_offer_is_respected() -> Result<()> {
    let fake = one_agent("cpus:4;mem:4096").await?;
    let s = BatchSpec {
        max_tasks_per_offer: 1,
        ..spec("one", 3, 0.5, 32.0)
    };
    let summary = run(&fake, s, |_| {}).await?;
    assert!(summary.all_finished());
    let sizes: Vec<usize> = accepts(&fake)
        .iter()
        .map(|a| launched_tasks(a).len())
        .collect();
    assert_eq!(sizes, [1, 1, 1]);
    Ok(())
}

#[tokio::test]
async fn at_a_rate_no_task_launches_before_it_arrives_and_offers_wait_for_arrivals() -> Result<()> {
    let fake = one_agent("cpus:4;mem:4096").await?;
    // 20 tasks/s: task i arrives i × 50 ms after the run starts.
    let rate = 20.0;
    let s = at_rate(spec("r", 6, 0.25, 32.0), rate);
    let launches: Arc<Mutex<Vec<(String, tokio::time::Instant)>>> = Arc::default();
    let l = launches.clone();
    let t0 = tokio::time::Instant::now();
    let summary = run(&fake, s, move |p: &BatchProgress| {
        if let BatchProgress::Launched { task_id, .. } = p {
            let now = tokio::time::Instant::now();
            l.lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((task_id.clone(), now));
        }
    })
    .await?;
    assert!(summary.all_finished(), "{summary}");
    let launches = launches.lock().unwrap_or_else(|e| e.into_inner()).clone();
    assert_eq!(launches.len(), 6);
    for (i, (id, at)) in launches.iter().enumerate() {
        assert_eq!(id, &format!("r-{i:04}"), "tasks launch in order");
        let arrival = t0 + Duration::from_secs_f64(i as f64 / rate);
        assert!(*at >= arrival, "{id} launched before it arrived");
    }
    let waited = summary.arrival_to_launch.context("arrival→launch")?;
    assert_eq!(waited.count, 6);
    // While more tasks are to arrive, what an ACCEPT leaves is not refused (the next
    // arrivals need it); the last ACCEPT refuses it for a minute. No offer is declined before
    // the last arrival: offers that came with no task waiting were held.
    let refusals: Vec<Option<f64>> = accepts(&fake).iter().map(|a| refuse(&a.filters)).collect();
    let (last, before) = refusals.split_last().context("no accept")?;
    assert_eq!(*last, Some(60.0), "{refusals:?}");
    assert!(before.iter().all(|r| *r == Some(0.0)), "{refusals:?}");
    let st = fake.state();
    let declines = st.calls.iter().filter(|c| c.name() == "decline").count();
    let names: Vec<_> = st.calls.iter().map(Call::name).collect();
    let last_accept = names
        .iter()
        .rposition(|n| *n == "accept")
        .context("accept")?;
    assert!(
        names[..last_accept].iter().all(|n| *n != "decline"),
        "no decline before the last launch: {names:?}"
    );
    assert_eq!(summary.offers_declined, declines);
    Ok(())
}

#[tokio::test]
async fn at_a_slow_rate_offers_go_back_between_arrivals() -> Result<()> {
    let fake = one_agent("cpus:4;mem:4096").await?;
    // 5 tasks/s: a task every 200 ms, far more than the 50 ms an offer is held for.
    let rate = 5.0;
    let s = at_rate(spec("slow", 3, 0.25, 32.0), rate);
    let t0 = tokio::time::Instant::now();
    let summary = run(&fake, s, |_| {}).await?;
    assert!(summary.all_finished(), "{summary}");
    let accepts = accepts(&fake);
    assert_eq!(accepts.len(), 3, "one launch per arrival");
    let st = fake.state();
    let names: Vec<_> = st.calls.iter().map(Call::name).collect();
    // Between two launches the framework suppressed offers, and revived them when the next
    // task arrived; nothing was held meanwhile.
    let launches: Vec<usize> = names
        .iter()
        .enumerate()
        .filter(|(_, n)| **n == "accept")
        .map(|(i, _)| i)
        .collect();
    for w in launches.windows(2) {
        let between = &names[w[0]..w[1]];
        let suppress = between.iter().position(|n| *n == "suppress");
        let revive = between.iter().rposition(|n| *n == "revive");
        assert!(
            matches!((suppress, revive), (Some(s), Some(r)) if s < r),
            "suppress, then revive between launches: {names:?}"
        );
    }
    assert_eq!(
        names.iter().filter(|n| **n == "revive").count(),
        2,
        "{names:?}"
    );
    for d in st.calls.iter().filter_map(|c| match c {
        Call::Decline(d) => Some(d),
        _ => None,
    }) {
        assert!(
            matches!(refuse(&d.filters), Some(r) if r == 1.0 || r == 60.0),
            "{d:?}"
        );
    }
    drop(st);
    let elapsed = t0.elapsed();
    let last_arrival = Duration::from_secs_f64(2.0 / rate);
    assert!(
        elapsed >= last_arrival,
        "the last task arrived at {last_arrival:?}"
    );
    Ok(())
}

/// The tasks launched by all ACCEPTs the fake saw, counted with repeats: more than the batch's
/// tasks when an ACCEPT was refused and its tasks launched again.
fn launched_in_accepts(fake: &Fake) -> usize {
    accepts(fake).iter().map(|a| launched_tasks(a).len()).sum()
}

/// Progress that does `act` when the second offer arrives (the first one after the first
/// launch, which a batch at 20 tasks/s holds for its next arrival).
fn on_second_offer(act: impl Fn() + Send + 'static) -> impl FnMut(&BatchProgress) + Send {
    let mut offers = 0;
    move |p: &BatchProgress| {
        if matches!(p, BatchProgress::Offer { .. }) {
            offers += 1;
            if offers == 2 {
                act();
            }
        }
    }
}

#[tokio::test]
async fn a_held_offer_that_is_rescinded_is_not_used() -> Result<()> {
    let fake = one_agent("cpus:4;mem:4096").await?;
    let f = fake.clone();
    // The master takes the held offer back at once (and offers the agent again under a new id).
    let progress = on_second_offer(move || f.rescind_outstanding());
    let summary = run(&fake, at_rate(spec("rs", 4, 0.25, 32.0), 20.0), progress).await?;
    assert!(summary.all_finished(), "{summary}");
    assert_eq!(launched_in_accepts(&fake), 4, "no ACCEPT was refused");
    let st = fake.state();
    assert!(!st.rescinded.is_empty(), "an offer was rescinded");
    let named: Vec<&String> = st
        .calls
        .iter()
        .flat_map(|c| match c {
            Call::Accept(a) => a.offer_ids.iter().collect::<Vec<_>>(),
            Call::Decline(d) => d.offer_ids.iter().collect(),
            _ => Vec::new(),
        })
        .collect();
    assert!(
        named.iter().all(|id| !st.rescinded.contains(id)),
        "a rescinded offer was named: {named:?}, rescinded {:?}",
        st.rescinded
    );
    Ok(())
}

#[tokio::test]
async fn held_offers_are_dropped_with_the_session_that_made_them() -> Result<()> {
    let fake = one_agent("cpus:4;mem:4096").await?;
    let f = fake.clone();
    // The stream breaks while that offer is held.
    let progress = on_second_offer(move || f.drop_stream());
    let s = BatchSpec {
        failover_timeout_secs: 60.0,
        ..at_rate(spec("ss", 4, 0.25, 32.0), 20.0)
    };
    let summary = run(&fake, s, progress).await?;
    assert!(summary.all_finished(), "{summary}");
    assert_eq!(fake.state().subscribes.len(), 2);
    assert_eq!(
        launched_in_accepts(&fake),
        4,
        "no ACCEPT named an offer of the old session"
    );
    Ok(())
}

#[tokio::test]
async fn a_rate_that_is_not_positive_is_refused() -> Result<()> {
    for bad in [0.0, -5.0, f64::NAN, f64::INFINITY] {
        let s = at_rate(spec("x", 1, 0.1, 32.0), bad);
        match run_batch("127.0.0.1:1", s, |_| {}, CancellationToken::new()).await {
            Err(BatchError::InvalidSpec(m)) => assert!(m.contains("rate"), "{m}"),
            other => bail!("rate {bad}: expected InvalidSpec, got {other:?}"),
        }
    }
    Ok(())
}

#[tokio::test]
async fn failures_are_counted_once_and_small_offers_declined() -> Result<()> {
    let fake = Fake::start(FakeConfig {
        agents: vec![
            ("small".into(), "cpus:0.1;mem:32".into()),
            ("big".into(), "cpus:2;mem:1024".into()),
        ],
        fail_tasks: ["f-0001".to_string(), "f-0003".to_string()].into(),
        ..Default::default()
    })
    .await?;
    let summary = run(&fake, spec("f", 5, 0.5, 128.0), |_| {}).await?;
    assert_eq!(
        (summary.launched, summary.finished, summary.failed),
        (5, 3, 2)
    );
    assert!(!summary.all_finished());
    assert!(summary.to_string().contains("failed 2"), "{summary}");
    let calls = fake.calls();
    let small_offer_declined = calls
        .iter()
        .any(|c| matches!(c, Call::Decline(d) if refuse(&d.filters) == Some(1.0)));
    assert!(
        small_offer_declined,
        "the too-small offer is declined with refuse 1 s while tasks remain"
    );
    assert!(
        accepts(&fake)
            .iter()
            .flat_map(launched_tasks)
            .all(|t| t.agent_id == "big")
    );
    assert!(summary.offers_declined >= 1);
    assert!(fake.state().violations.is_empty());
    Ok(())
}

#[tokio::test]
async fn invalid_specs_fail_before_connecting() -> Result<()> {
    let cases = [
        (
            BatchSpec {
                tasks: 0,
                ..spec("x", 1, 0.1, 32.0)
            },
            "tasks",
        ),
        (spec("x", 1, 0.0, 32.0), "cpus"),
        (spec("x", 1, 0.1, -5.0), "mem"),
        (
            BatchSpec {
                cmd: String::new(),
                ..spec("x", 1, 0.1, 32.0)
            },
            "cmd",
        ),
    ];
    for (s, word) in cases {
        // Port 1 on localhost is not a master; validation must fail first.
        match run_batch("127.0.0.1:1", s, |_| {}, CancellationToken::new()).await {
            Err(e @ BatchError::InvalidSpec(_)) => assert!(e.to_string().contains(word), "{e}"),
            other => bail!("expected InvalidSpec mentioning {word}, got {other:?}"),
        }
    }
    match run_batch(
        "127.0.0.1:1",
        spec("x", 1, 0.1, 32.0),
        |_| {},
        CancellationToken::new(),
    )
    .await
    {
        Err(BatchError::Driver(e)) => assert!(e.to_string().contains("127.0.0.1:1"), "{e}"),
        other => bail!("expected a connect error, got {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn cancel_tears_down_and_reports_partial_counts() -> Result<()> {
    let fake = Fake::start(FakeConfig {
        agents: vec![("a1".into(), "cpus:4;mem:4096".into())],
        completion: Completion::Never,
        ..Default::default()
    })
    .await?;
    let cancel = CancellationToken::new();
    let c = cancel.clone();
    let progress = move |p: &BatchProgress| {
        if matches!(p, BatchProgress::Update { state, .. } if state == "TASK_RUNNING") {
            c.cancel();
        }
    };
    let r = tokio::time::timeout(
        WAIT,
        run_batch(&fake.master(), spec("c", 4, 0.5, 64.0), progress, cancel),
    )
    .await?;
    match r {
        Err(BatchError::Cancelled { summary }) => {
            assert_eq!((summary.launched, summary.finished), (4, 0));
            assert!(!summary.all_finished());
        }
        other => bail!("expected Cancelled, got {other:?}"),
    }
    assert_eq!(fake.call_names().last(), Some(&"teardown"));
    Ok(())
}

#[tokio::test]
async fn master_error_aborts_the_run() -> Result<()> {
    let fake = Fake::start(FakeConfig {
        agents: vec![("a1".into(), "cpus:4;mem:4096".into())],
        completion: Completion::Never,
        ..Default::default()
    })
    .await?;
    let f = fake.clone();
    let progress = move |p: &BatchProgress| {
        if matches!(p, BatchProgress::Launched { .. }) {
            f.send_error("framework removed by operator");
        }
    };
    match tokio::time::timeout(
        WAIT,
        run_batch(
            &fake.master(),
            spec("e", 2, 0.5, 64.0),
            progress,
            CancellationToken::new(),
        ),
    )
    .await?
    {
        Err(BatchError::Aborted { reason, summary }) => {
            assert!(reason.contains("framework removed by operator"), "{reason}");
            assert_eq!(summary.launched, 2);
        }
        other => bail!("expected Aborted, got {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn a_master_without_batch_acknowledgements_gets_them_one_by_one() -> Result<()> {
    let fake = Fake::start(FakeConfig {
        agents: vec![("a1".into(), "cpus:1;mem:256".into())],
        no_ack_batch: true,
        ..Default::default()
    })
    .await?;
    let (_log, progress) = recorder();
    let summary = run(&fake, spec("o", 6, 0.25, 64.0), progress).await?;
    assert!(summary.all_finished(), "{summary}");
    let st = fake.state();
    assert!(st.violations.is_empty(), "{:?}", st.violations);
    let acked: Vec<Vec<u8>> = st.calls.iter().flat_map(|c| c.acked(true)).collect();
    assert_eq!(
        acked.len(),
        18,
        "3 updates per task, each acknowledged once"
    );
    assert_eq!(
        acked.iter().collect::<HashSet<_>>(),
        st.sent_uuids.iter().collect::<HashSet<_>>()
    );
    Ok(())
}

#[tokio::test]
async fn survives_a_broken_stream_by_resubscribing_and_reconciling() -> Result<()> {
    let fake = Fake::start(FakeConfig {
        agents: vec![("a1".into(), "cpus:4;mem:4096".into())],
        completion: Completion::OnReconcile,
        ..Default::default()
    })
    .await?;
    let f = fake.clone();
    let mut dropped = false;
    let progress = move |p: &BatchProgress| {
        if !dropped && matches!(p, BatchProgress::Update { state, .. } if state == "TASK_RUNNING") {
            dropped = true;
            f.drop_stream();
        }
    };
    let s = BatchSpec {
        failover_timeout_secs: 60.0,
        ..spec("r", 3, 0.5, 64.0)
    };
    let summary = run(&fake, s, progress).await?;
    assert!(summary.all_finished(), "{summary}");
    let st = fake.state();
    assert_eq!(st.subscribes.len(), 2);
    assert_eq!(st.subscribes[1].id, "fw-1");
    let reconcile = st
        .calls
        .iter()
        .find(|c| c.name() == "reconcile")
        .context("no reconcile")?;
    assert_eq!(
        reconcile.header().map(|h| h.stream_id),
        Some("stream-2".to_string())
    );
    let finished_acks = st
        .calls
        .iter()
        .filter(|c| c.header().is_some_and(|h| h.stream_id == "stream-2"))
        .map(|c| c.acked(false).len())
        .sum::<usize>();
    assert!(
        finished_acks >= 3,
        "terminal updates on the new stream are acknowledged with its header"
    );
    Ok(())
}
