//! A small driver for table tests of [`Core`]: inputs at virtual times, effects in a compact
//! form.

use std::time::Duration;

use proffer_proto::v1::{StatusUpdate, StatusUpdateAck, TaskState, TaskStatus};

use crate::core::{Core, CoreConfig, Effect, Input, Need, TaskKey, Timestamp};

/// Framework of every task in these tests.
pub const FW: &str = "fw";

/// One effect, compactly: what the tests compare.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Eff {
    /// Sent the update of `task` with uuid byte `u`.
    Send(&'static str, u8),
    /// Checkpointed `task` in `state` with `n` pending updates, durably or not.
    Cp(&'static str, TaskState, usize, bool),
    /// Forgot `task`.
    Forget(&'static str),
    /// Handed `task` to its executor.
    Start(&'static str),
    /// Asked the executor to kill `task` with this grace (ms).
    Signal(&'static str, u64),
    /// Killed `task`'s processes at once.
    KillNow(&'static str),
}

/// A core retrying after 10 s, up to 40 s; kill grace 3 s by default; uuids from 0.
pub fn core() -> Core {
    Core::new(CoreConfig {
        retry_initial: Duration::from_secs(10),
        retry_max: Duration::from_secs(40),
        default_kill_grace: Duration::from_secs(3),
        agent_id: None,
        uuid_seed: 0,
    })
}

/// The master accepted the agent as `agent-1`.
pub fn registered() -> Input {
    Input::Registered {
        agent_id: "agent-1".into(),
    }
}

/// The key of a test task.
pub fn key(task: &str) -> TaskKey {
    TaskKey::new(FW, task)
}

/// An update of `task` to `state` with uuid `[u; 16]`.
pub fn update(task: &str, state: TaskState, u: u8) -> StatusUpdate {
    StatusUpdate {
        framework_id: FW.into(),
        latest_state: None,
        status: Some(TaskStatus {
            task_id: task.into(),
            state: state as i32,
            uuid: vec![u; 16],
            ..Default::default()
        }),
    }
}

/// Reports `task` in `state` (uuid `[u; 16]`).
pub fn report(task: &str, state: TaskState, u: u8) -> Input {
    Input::Report(update(task, state, u))
}

/// The master acknowledges uuid `[u; 16]` of `task`.
pub fn ack(task: &str, u: u8) -> Input {
    Input::Ack(StatusUpdateAck {
        framework_id: FW.into(),
        task_id: task.into(),
        uuid: vec![u; 16],
    })
}

/// A new task is accepted (STAGING, its files being written).
pub fn track(task: &str) -> Input {
    Input::Launch {
        key: key(task),
        group: None,
        kill_grace_ms: 0,
        need: Need::default(),
    }
}

/// A task recovered RUNNING with its executor.
pub fn track_live(task: &str) -> Input {
    Input::Track {
        key: key(task),
        state: TaskState::TaskRunning,
        group: None,
        live: true,
        kill_grace_ms: 0,
        need: Need::default(),
    }
}

fn leak(s: &str) -> &'static str {
    // Test task names are few and short: interned by a match on the known ones.
    match s {
        "a" => "a",
        "b" => "b",
        "c" => "c",
        "d" => "d",
        "t" => "t",
        "x" => "x",
        _ => "?",
    }
}

fn compact(e: &Effect) -> Eff {
    match e {
        Effect::Send(u) => {
            let s = u.status.clone().unwrap_or_default();
            // The last byte: the test's own uuids are one byte repeated, the core's count up.
            Eff::Send(leak(&s.task_id), s.uuid.last().copied().unwrap_or(0))
        }
        Effect::Checkpoint {
            key,
            state,
            updates,
            durable,
        } => Eff::Cp(leak(&key.task_id), *state, updates.len(), *durable),
        Effect::Forget(key) => Eff::Forget(leak(&key.task_id)),
        Effect::Start(key) => Eff::Start(leak(&key.task_id)),
        Effect::Signal { key, grace } => Eff::Signal(
            leak(&key.task_id),
            u64::try_from(grace.as_millis()).unwrap_or(u64::MAX),
        ),
        Effect::KillNow(key) => Eff::KillNow(leak(&key.task_id)),
    }
}

/// Runs the steps (seconds, input, expected effects) in order, failing at the first step whose
/// effects differ.
pub fn run(core: &mut Core, steps: Vec<(u64, Input, Vec<Eff>)>) {
    for (i, (secs, input, want)) in steps.into_iter().enumerate() {
        let shown = format!("{input:?}");
        let got: Vec<Eff> = core
            .handle(Timestamp::ZERO + Duration::from_secs(secs), input)
            .iter()
            .map(compact)
            .collect();
        assert_eq!(got, want, "step {i} at {secs} s: {shown}");
    }
}
