//! Status updates in one agent message (`StatusUpdates`): each handled as if it came alone, in
//! order; a bad one is named by its index and does not hold back the others.

use proffer_proto::v1::{self, TaskState, agent_message::Msg as AIn, master_message::Msg as AOut};

use super::ack_batch::two_launched;
use super::harness::{H, agent_info, agent_update};
use super::scenarios::{A1, F1};
use crate::core::{ErrorKind, Input};

fn update(fw: &str, task: &str, state: TaskState, uuid: &[u8]) -> v1::StatusUpdate {
    agent_update(fw, task, state, uuid, None)
}

#[test]
fn the_master_says_it_takes_batches() {
    let mut h = H::new();
    h.input(Input::Agent {
        conn: A1,
        msg: v1::AgentMessage {
            msg: Some(AIn::Register(v1::RegisterAgent {
                info: Some(Box::new(agent_info("", "host1", "cpus:1;mem:128"))),
            })),
        },
    })
    .expect("register");
    let registered: Vec<bool> = h
        .agent_msgs(A1)
        .into_iter()
        .filter_map(|m| match m {
            AOut::Registered(r) => Some(r.takes_update_batches),
            _ => None,
        })
        .collect();
    assert_eq!(registered, [true]);
}

#[test]
fn a_batch_is_forwarded_in_order_and_a_bad_entry_holds_back_no_other() {
    let (mut h, _agent, fw) = two_launched();
    let id = fw.framework_id.clone();
    let mut bad = update(&id, "t2", TaskState::TaskRunning, b"x");
    if let Some(s) = bad.status.as_mut() {
        s.state = 99;
    }
    let result = h.input(Input::Agent {
        conn: A1,
        msg: v1::AgentMessage {
            msg: Some(AIn::StatusUpdates(v1::StatusUpdates {
                updates: vec![
                    update(&id, "t1", TaskState::TaskRunning, b"r1"),
                    bad,
                    update(&id, "t2", TaskState::TaskRunning, b"r2"),
                    update(&id, "t1", TaskState::TaskFinished, b"f1"),
                ],
            })),
        },
    });
    let err = result.expect_err("the bad entry is reported");
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert!(
        err.to_string().starts_with(
            "status_updates.updates[1] (task `t2`): invalid status_update.status.state"
        ),
        "{err}"
    );
    let forwarded: Vec<(String, Vec<u8>)> = h
        .updates(F1)
        .into_iter()
        .map(|s| (s.task_id, s.uuid))
        .collect();
    assert_eq!(
        forwarded,
        [
            ("t1".to_string(), b"r1".to_vec()),
            ("t2".to_string(), b"r2".to_vec()),
            ("t1".to_string(), b"f1".to_vec()),
        ],
        "the good ones, in order"
    );
    let snap = h.m.snapshot(Default::default());
    let state_of = |t: &str| {
        snap.tasks
            .iter()
            .find(|x| x.id == t)
            .map(|x| x.state.clone())
            .unwrap_or_default()
    };
    assert_eq!(state_of("t1"), "TASK_FINISHED");
    assert_eq!(state_of("t2"), "TASK_RUNNING");
    let errors: Vec<v1::AgentError> = h
        .agent_msgs(A1)
        .into_iter()
        .filter_map(|m| match m {
            AOut::Error(e) => Some(e),
            _ => None,
        })
        .collect();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(!errors[0].fatal, "a refused entry does not end the session");
    assert!(
        errors[0].message.starts_with("status_updates.updates[1]"),
        "{errors:?}"
    );
}
