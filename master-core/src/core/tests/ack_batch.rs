//! ACKNOWLEDGE in batches: each entry is checked as a single acknowledgement is, all before
//! any is applied; a good batch reaches the agents in order and retires finished tasks.

use proffer_proto::v1::{self, TaskState, master_message::Msg as AOut};

use super::harness::{H, task};
use super::scenarios::{A1, F1, one_offer};
use crate::core::calls::MAX_ACK_BATCH;
use crate::core::{Call, ErrorKind, MasterError};

fn entry(agent: &str, task: &str, uuid: &[u8]) -> v1::Acknowledgement {
    v1::Acknowledgement {
        agent_id: agent.into(),
        task_id: task.into(),
        uuid: uuid.to_vec(),
    }
}

fn batch(
    h: &mut H,
    fw: &v1::CallHeader,
    acks: Vec<v1::Acknowledgement>,
) -> Result<(), MasterError> {
    h.call(Call::AcknowledgeBatch(v1::AcknowledgeBatchRequest {
        header: Some(fw.clone()),
        acknowledgements: acks,
    }))
}

/// Tasks `t1` and `t2` launched on agent `A1` (its outputs drained).
pub(super) fn two_launched() -> (H, String, v1::CallHeader) {
    let (mut h, agent, fw, offer) = one_offer();
    h.launch(
        &fw,
        &[&offer.id],
        vec![task("t1", "cpus:1;mem:512"), task("t2", "cpus:1;mem:512")],
    )
    .expect("launch");
    h.drain();
    (h, agent, fw)
}

/// Two tasks launched, each RUNNING (uuid `r-<task>`) then FINISHED (uuid `f-<task>`).
fn two_finished() -> (H, String, v1::CallHeader) {
    let (mut h, agent, fw) = two_launched();
    for t in ["t1", "t2"] {
        let (r, f) = (format!("r-{t}"), format!("f-{t}"));
        h.status(
            A1,
            &fw.framework_id,
            t,
            TaskState::TaskRunning,
            r.as_bytes(),
        )
        .expect("running");
        h.status(
            A1,
            &fw.framework_id,
            t,
            TaskState::TaskFinished,
            f.as_bytes(),
        )
        .expect("finished");
    }
    assert_eq!(h.updates(F1).len(), 4);
    (h, agent, fw)
}

fn acks(h: &mut H) -> Vec<(String, Vec<u8>)> {
    h.agent_msgs(A1)
        .into_iter()
        .filter_map(|m| match m {
            AOut::Ack(a) => Some((a.task_id, a.uuid)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_batch_reaches_the_agent_in_order_and_retires_finished_tasks() {
    let (mut h, agent, fw) = two_finished();
    let all = vec![
        entry(&agent, "t1", b"r-t1"),
        entry(&agent, "t2", b"r-t2"),
        entry(&agent, "t1", b"f-t1"),
        entry(&agent, "t2", b"f-t2"),
    ];
    batch(&mut h, &fw, all).expect("batch");
    let sent = acks(&mut h);
    let want: Vec<(String, Vec<u8>)> = [
        ("t1", "r-t1"),
        ("t2", "r-t2"),
        ("t1", "f-t1"),
        ("t2", "f-t2"),
    ]
    .iter()
    .map(|(t, u)| (t.to_string(), u.as_bytes().to_vec()))
    .collect();
    assert_eq!(sent, want);
    let snap = h.m.snapshot(Default::default());
    assert!(snap.tasks.is_empty(), "both finished tasks are retired");
    assert_eq!(snap.completed_tasks.len(), 2);
}

#[test]
fn one_bad_entry_refuses_the_whole_batch_and_names_it() {
    let (mut h, agent, fw) = two_finished();
    let cases: [(v1::Acknowledgement, ErrorKind, &str); 2] = [
        (
            entry("no-such-agent", "t2", b"f-t2"),
            ErrorKind::NotFound,
            "acknowledgements[1] (task `t2`): unknown agent `no-such-agent`",
        ),
        (
            entry(&agent, "t2", b""),
            ErrorKind::InvalidArgument,
            "acknowledgements[1] (task `t2`): invalid uuid: must not be empty",
        ),
    ];
    for (bad, kind, text) in cases {
        let err = batch(&mut h, &fw, vec![entry(&agent, "t1", b"f-t1"), bad]).expect_err("refused");
        assert_eq!(err.kind(), kind);
        assert!(err.to_string().starts_with(text), "{err}");
        assert!(acks(&mut h).is_empty(), "nothing reaches the agent");
        let snap = h.m.snapshot(Default::default());
        assert_eq!(snap.tasks.len(), 2, "no task is retired");
    }
}

#[test]
fn an_oversized_batch_is_refused() {
    let (mut h, agent, fw) = two_finished();
    let many = vec![entry(&agent, "t1", b"f-t1"); MAX_ACK_BATCH + 1];
    let err = batch(&mut h, &fw, many).expect_err("refused");
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert!(
        err.to_string().contains(&format!(
            "{} entries, at most {MAX_ACK_BATCH}",
            MAX_ACK_BATCH + 1
        )),
        "{err}"
    );
    assert!(acks(&mut h).is_empty());
}

#[test]
fn an_empty_batch_does_nothing_and_a_stranger_is_refused() {
    let (mut h, agent, fw) = two_finished();
    batch(&mut h, &fw, Vec::new()).expect("empty batch");
    assert!(acks(&mut h).is_empty());
    let stranger = v1::CallHeader {
        framework_id: "not-subscribed".into(),
        stream_id: fw.stream_id.clone(),
    };
    let err = batch(&mut h, &stranger, vec![entry(&agent, "t1", b"f-t1")]).expect_err("refused");
    assert_eq!(err.kind(), ErrorKind::PermissionDenied);
    assert!(acks(&mut h).is_empty());
}
