//! Tests of the containerizer: liveness, nudges and the watcher.

use super::*;

#[tokio::test]
async fn a_task_its_supervisor_gave_up_on_is_reported_gone_with_why_after_its_events() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = protocol::EventLog::open(dir.path()).expect("log");
    log.append(&ExecutorEvent::Started { pid: 7 })
        .expect("started");
    let (nudge_tx, nudge_rx) = mpsc::unbounded_channel();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let me = std::process::id();
    let key = TaskKey::new("fw", "t");
    let watcher = tokio::spawn(watch(
        dir.path().to_path_buf(),
        key,
        1,
        0,
        Liveness::Pid {
            pid: me,
            start_ticks: start_ticks(me),
        },
        Nudges::Supervisor(nudge_rx),
        tx,
    ));
    nudge_tx
        .send(Woken::GaveUp(
            "recording exited: No space left on device".into(),
        ))
        .expect("send");
    let first = rx.recv().await.expect("the started event");
    assert!(
        matches!(
            first.kind,
            EventKind::Executor {
                event: ExecutorEvent::Started { pid: 7 },
                ..
            }
        ),
        "{first:?}"
    );
    let gone = rx.recv().await.expect("gone");
    match gone.kind {
        EventKind::ExecutorGone { message } => {
            assert_eq!(message, "recording exited: No space left on device");
        }
        other => panic!("expected ExecutorGone, got {other:?}"),
    }
    watcher.await.expect("the watcher ends");
}

#[tokio::test]
async fn an_in_process_executor_that_gave_up_says_why() {
    let failing = tokio::spawn(async { Err::<(), _>("opening event log in /x: ENOSPC".into()) });
    let mut live = Liveness::Task(failing);
    while matches!(&live, Liveness::Task(h) if !h.is_finished()) {
        tokio::task::yield_now().await;
    }
    let why = Some("opening event log in /x: ENOSPC".to_string());
    assert_eq!(live.ended(), why);
    assert_eq!(
        live.ended(),
        why,
        "asked again, the same answer (no second poll)"
    );
    let mut fine = Liveness::Task(tokio::spawn(async { Ok(()) }));
    while matches!(&fine, Liveness::Task(h) if !h.is_finished()) {
        tokio::task::yield_now().await;
    }
    assert_eq!(fine.ended(), Some("in-process executor ended".to_string()));
}

#[test]
fn own_process_is_alive_with_matching_start_time() {
    let me = std::process::id();
    let t = start_ticks(me);
    assert!(t.is_some());
    assert!(alive(me, t));
    assert!(!alive(me, t.map(|t| t + 1)));
    assert!(!alive(u32::MAX - 1, None));
}
