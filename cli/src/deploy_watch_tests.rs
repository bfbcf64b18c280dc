//! Tests of [`super`]: counting steps, spotting failures once, ending rounds, summaries.

use proffer_sdk::service::spec::StrategyKind;
use proffer_sdk::service::{Phase, Step};

use super::*;

fn plan(statuses: &[StepStatus]) -> Plan {
    let steps = statuses
        .iter()
        .enumerate()
        .map(|(i, s)| Step {
            status: *s,
            message: format!("step {i}"),
            ..Step::new("web", i as u32, vec!["server".into()])
        })
        .collect();
    Plan {
        name: "deploy".into(),
        strategy: StrategyKind::Serial,
        phases: vec![Phase {
            name: "web".into(),
            strategy: StrategyKind::Serial,
            depends: Vec::new(),
            steps,
            interrupted: false,
        }],
        interrupted: false,
    }
}

fn record(index: u32, task_id: &str, state: &str) -> TaskRecord {
    TaskRecord {
        name: format!("web-{index}-server"),
        task_id: task_id.into(),
        pod: "web".into(),
        index,
        task: "server".into(),
        agent_id: "S1".into(),
        hostname: "host1".into(),
        attributes: Vec::new(),
        state: state.into(),
        message: "command exited with status 1".into(),
        config: String::new(),
        ready: false,
        launches: 1,
        resources: String::new(),
        ports: Vec::new(),
        reserved: String::new(),
        permanent_failure: false,
    }
}

fn view(statuses: &[StepStatus], tasks: Vec<TaskRecord>) -> View {
    View {
        plan: plan(statuses),
        tasks,
        framework_id: "F".into(),
    }
}

#[test]
fn steps_are_counted_by_status() {
    use StepStatus::*;
    let t = plan_tally(&plan(&[Complete, Starting, Pending, Pending]));
    assert_eq!((t.total, t.done), (4, 1));
    assert_eq!(
        crate::progress::counts_text(&t),
        "2 pending, 1 starting, 1 complete"
    );
    assert_eq!(
        crate::progress::progress_line("steps", &t, Duration::from_secs(2)),
        "1/4 steps done: 2 pending, 1 starting, 1 complete [2.0s]"
    );
}

#[test]
fn each_failed_launch_is_reported_once_and_counted_by_task() {
    use StepStatus::*;
    let before = view(&[Starting, Pending], vec![record(0, "old", "TASK_FAILED")]);
    let mut tracker = Tracker::new(&before);
    // What had failed before following began is not reported.
    assert!(tracker.failures(&before).is_empty());
    let now = view(
        &[Starting, Pending],
        vec![
            record(0, "t1", "TASK_FAILED"),
            record(1, "t2", "TASK_RUNNING"),
        ],
    );
    let seen = tracker.failures(&now);
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].failure.id, "web-0-server");
    assert_eq!(seen[0].failure.agent, "host1");
    assert_eq!(seen[0].step, "web-0:[server]");
    assert_eq!(seen[0].task, Some(("t1".into(), "S1".into())));
    assert_eq!(seen[0].count, 1);
    assert!(tracker.failures(&now).is_empty(), "reported once");
    let again = view(&[Starting, Pending], vec![record(0, "t3", "TASK_LOST")]);
    assert_eq!(tracker.failures(&again)[0].count, 2);
    // Finished and killed tasks are no failures.
    let fine = view(
        &[Starting, Pending],
        vec![
            record(0, "t4", "TASK_FINISHED"),
            record(1, "t5", "TASK_KILLED"),
        ],
    );
    assert!(tracker.failures(&fine).is_empty());
}

#[test]
fn a_step_in_error_or_a_crash_loop_ends_the_round() {
    use StepStatus::*;
    let watch = Watch {
        source: Source::Api("127.0.0.1:1".into()),
        plan: None,
        style: Style::Quiet,
        masters: None,
        max_failures: Some(2),
    };
    let mut tracker = Tracker::default();
    let errored = tracker.failures(&view(&[Error, Pending], Vec::new()));
    assert_eq!(errored.len(), 1);
    assert_eq!(
        watch.fatal("deploy", &errored[0]),
        Some(End::Failed {
            plan: "deploy".into(),
            why: "step web-0:[server] is in ERROR: step 0".into()
        })
    );
    let first = tracker.failures(&view(&[Error], vec![record(0, "a", "TASK_FAILED")]));
    assert_eq!(watch.fatal("deploy", &first[0]), None);
    let second = tracker.failures(&view(&[Error], vec![record(0, "b", "TASK_FAILED")]));
    assert_eq!(
        watch.fatal("deploy", &second[0]),
        Some(End::Failed {
            plan: "deploy".into(),
            why: "step web-0:[server]: task web-0-server failed 2 times (last: TASK_FAILED command exited with status 1)".into()
        })
    );
}

#[test]
fn summaries_say_how_the_plan_ended() {
    use StepStatus::*;
    let t = plan_tally(&plan(&[Complete, Complete]));
    let took = Duration::from_millis(12_300);
    assert_eq!(
        summary_text("deploy", &t, 0, &End::Complete, took),
        "deploy COMPLETE: 2/2 steps complete in 12.3s"
    );
    let t = plan_tally(&plan(&[Complete, Error]));
    assert_eq!(
        summary_text(
            "update",
            &t,
            3,
            &End::Failed {
                plan: "update".into(),
                why: "step x is in ERROR: y".into()
            },
            took
        ),
        "update FAILED: step x is in ERROR: y\n  1/2 steps complete, 3 task failures in 12.3s"
    );
    assert_eq!(
        summary_text("deploy", &t, 1, &End::Cancelled, took),
        "deploy: 1/2 steps complete, 1 task failure in 12.3s (stopped following)"
    );
}

#[tokio::test]
async fn a_complete_plan_ends_the_round_at_once() -> Result<()> {
    use proffer_sdk::service::core::{CoreConfig, ServiceCore};
    use proffer_sdk::service::store::StateStore;
    let dir = tempfile::tempdir()?;
    let spec = proffer_sdk::service::ServiceSpec::parse(
        "name: s\npods:\n  web:\n    count: 1\n    tasks:\n      server:\n        goal: RUNNING\n        cmd: sleep 100\n        cpus: 0.1\n        memory: 32\n",
        &BTreeMap::new(),
    )?;
    let core = ServiceCore::open(spec, CoreConfig::default(), StateStore::open(dir.path())?)?;
    let shared = Arc::new(Shared {
        core: std::sync::Mutex::new(core),
        notify: tokio::sync::Notify::new(),
        options: BTreeMap::new(),
    });
    let watch = Watch {
        source: Source::Local(shared.clone()),
        plan: None,
        style: Style::Quiet,
        masters: None,
        max_failures: Some(3),
    };
    // Nothing launches (no master): the round goes on until cancelled.
    let cancel = CancellationToken::new();
    let stop = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(POLL_EVERY * 3).await;
        stop.cancel();
    });
    assert_eq!(watch.round(&cancel).await?, End::Cancelled);
    // Force-completed by an operator: the plan is COMPLETE, the round ends.
    shared
        .core
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .plan_action(1, "deploy", "force-complete", None, None)?;
    assert_eq!(watch.round(&CancellationToken::new()).await?, End::Complete);
    Ok(())
}

#[tokio::test]
async fn a_plan_is_followed_over_the_http_api() -> Result<()> {
    use proffer_sdk::service::core::CoreConfig;
    use proffer_sdk::service::runner::{RunConfig, prepare, run_service};
    let dir = tempfile::tempdir()?;
    let spec = proffer_sdk::service::ServiceSpec::parse(
        "name: s\npods:\n  web:\n    count: 2\n    tasks:\n      server:\n        goal: RUNNING\n        cmd: sleep 100\n        cpus: 0.1\n        memory: 32\n",
        &BTreeMap::new(),
    )?;
    // A master without agents: nothing launches, the API serves the plans.
    let master_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let master = master_listener.local_addr()?.to_string();
    let stop = CancellationToken::new();
    let server = tokio::spawn(proffer_master::server::serve(
        master_listener,
        proffer_master::server::ServerConfig::new(proffer_master::core::MasterConfig::default()),
        stop.clone(),
    ));
    let cfg = RunConfig {
        master,
        state_dir: dir.path().to_path_buf(),
        core: CoreConfig::default(),
        http: Some("127.0.0.1:0".parse()?),
        options: BTreeMap::new(),
        uninstall: false,
    };
    let (handle, listener) = prepare(spec, &cfg).await?;
    let api = handle.http_addr.context("no API address")?.to_string();
    let shared = handle.shared.clone();
    let scheduler = tokio::spawn(run_service(handle, listener, cfg, stop.clone()));
    let watch = Watch {
        source: Source::Api(api),
        plan: Some("deploy".into()),
        style: Style::Quiet,
        masters: None,
        max_failures: Some(3),
    };
    let view = watch
        .source
        .look(Some("deploy"))
        .await?
        .context("no plan")?;
    assert_eq!(plan_tally(&view.plan).total, 2);
    assert!(watch.source.look(Some("nope")).await?.is_none());
    let follow = tokio::spawn(async move { watch.round(&CancellationToken::new()).await });
    tokio::time::sleep(POLL_EVERY * 2).await;
    shared
        .core
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .plan_action(1, "deploy", "force-complete", None, None)?;
    let end = tokio::time::timeout(Duration::from_secs(10), follow).await???;
    assert_eq!(end, End::Complete);
    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), scheduler).await;
    let _ = tokio::time::timeout(Duration::from_secs(10), server).await;
    Ok(())
}
