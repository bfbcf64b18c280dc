use super::*;
use proptest::prelude::*;

fn cp(state: i32, offset: u64) -> TaskCheckpoint {
    TaskCheckpoint {
        framework_id: "fw".into(),
        state,
        offset,
        updates: vec![vec![1, 2, 3]],
        ..Default::default()
    }
}

fn temp_dir() -> Result<tempfile::TempDir, AgentError> {
    tempfile::tempdir().map_err(|e| AgentError::io("tempdir", "", e))
}

fn key(t: &str) -> TaskKey {
    TaskKey::new("fw", t)
}

/// The checkpoints of a replay.
fn checkpoints(replay: &Replay) -> BTreeMap<TaskKey, TaskCheckpoint> {
    replay
        .tasks
        .iter()
        .filter_map(|(k, r)| r.checkpoint.clone().map(|c| (k.clone(), c)))
        .collect()
}

fn spec(t: &str) -> ExecutorSpec {
    ExecutorSpec {
        container_id: format!("c-{t}"),
        ..ExecutorSpec::example(&PathBuf::from("/w/sandboxes/fw").join(t), &[("K", "v")])
    }
}

#[tokio::test]
async fn the_latest_checkpoint_of_each_live_task_survives_a_reopen() -> Result<(), AgentError> {
    let dir = temp_dir()?;
    let (mut j, replay) = Journal::open(dir.path())?;
    assert!(replay.tasks.is_empty());
    j.checkpoint(&key("a"), &cp(1, 10), true)?;
    j.checkpoint(&key("b"), &cp(1, 20), true)?;
    j.checkpoint(&key("a"), &cp(2, 30), false)?;
    j.commit().await?;
    j.forget(&key("b"))?;
    j.commit().await?;
    assert!(j.is_clean());
    drop(j);
    let (_, replay) = Journal::open(dir.path())?;
    assert_eq!(replay.cut_bytes, 0);
    assert_eq!(replay.tasks.len(), 1);
    assert_eq!(checkpoints(&replay).get(&key("a")), Some(&cp(2, 30)));
    assert_eq!(read(dir.path())?, checkpoints(&replay));
    Ok(())
}

#[tokio::test]
async fn a_torn_or_corrupt_tail_is_cut_off_and_appending_goes_on() -> Result<(), AgentError> {
    let dir = temp_dir()?;
    let (mut j, _) = Journal::open(dir.path())?;
    j.checkpoint(&key("a"), &cp(1, 1), true)?;
    j.commit().await?;
    let good = j.size();
    drop(j);
    let p = path(dir.path());
    // Half a frame: a crash in the middle of an append.
    let next = frame(&Record::Task {
        framework_id: "fw".into(),
        task_id: "b".into(),
        checkpoint: cp(1, 2),
    })
    .map_err(|e| AgentError::io("frame", &p, e))?;
    let mut bytes = std::fs::read(&p).map_err(|e| AgentError::io("read", &p, e))?;
    bytes.extend_from_slice(&next[..next.len() / 2]);
    std::fs::write(&p, &bytes).map_err(|e| AgentError::io("write", &p, e))?;
    let (mut j, replay) = Journal::open(dir.path())?;
    assert_eq!(replay.cut_bytes, (next.len() / 2) as u64);
    assert_eq!(replay.tasks.keys().collect::<Vec<_>>(), vec![&key("a")]);
    assert_eq!(j.size(), good);
    assert!(
        replay.tasks[&key("a")].launch.is_none(),
        "never launched here"
    );
    j.checkpoint(&key("c"), &cp(1, 3), true)?;
    j.commit().await?;
    drop(j);
    // A flipped byte in the last frame's payload fails its checksum: that frame is cut.
    let mut bytes = std::fs::read(&p).map_err(|e| AgentError::io("read", &p, e))?;
    let last = bytes.len() - 3;
    bytes[last] ^= 0x20;
    std::fs::write(&p, &bytes).map_err(|e| AgentError::io("write", &p, e))?;
    let (_, replay) = Journal::open(dir.path())?;
    assert!(replay.cut_bytes > 0);
    assert_eq!(replay.tasks.keys().collect::<Vec<_>>(), vec![&key("a")]);
    Ok(())
}

#[tokio::test]
async fn a_big_journal_is_compacted_to_its_live_tasks() -> Result<(), AgentError> {
    let dir = temp_dir()?;
    let (mut j, _) = Journal::open(dir.path())?;
    j.set_compact_min(4096);
    let mut appended = 0;
    for i in 0..200u64 {
        let k = key(&format!("t{i}"));
        let task = TaskInfo {
            task_id: format!("t{i}"),
            ..Default::default()
        };
        j.launch(&k, &task, &spec(&format!("t{i}")))?;
        j.checkpoint(&k, &cp(1, i), true)?;
        j.checkpoint(&k, &cp(2, i), true)?;
        if i % 10 != 0 {
            j.forget(&k)?;
        }
        appended += j.pending.len() as u64;
        j.commit().await?;
    }
    let on_disk = std::fs::metadata(path(dir.path()))
        .map_err(|e| AgentError::io("stat", "", e))?
        .len();
    assert_eq!(on_disk, j.size());
    // Compaction keeps it within four times its 20 live tasks' records, plus one round.
    let round = appended / 200 + 1;
    assert!(
        on_disk <= 4 * j.live_bytes + round && on_disk * 4 < appended,
        "compacted: {on_disk} bytes of {appended} appended, {} live",
        j.live_bytes
    );
    drop(j);
    let (_, replay) = Journal::open(dir.path())?;
    assert_eq!(replay.tasks.len(), 20);
    for i in (0..200u64).step_by(10) {
        let t = format!("t{i}");
        let got = replay.tasks.get(&key(&t));
        assert_eq!(got.and_then(|r| r.checkpoint.clone()), Some(cp(2, i)));
        let launched = got
            .and_then(|r| r.launch.clone())
            .map(|(info, s)| (info.task_id, s));
        assert_eq!(launched, Some((t.clone(), spec(&t))), "the launch is kept");
    }
    assert!(!tmp_path(&path(dir.path())).exists());
    Ok(())
}

#[test]
fn garbage_in_place_of_a_journal_replays_as_nothing_and_is_cut() -> Result<(), AgentError> {
    let dir = temp_dir()?;
    let p = path(dir.path());
    std::fs::create_dir_all(dir.path().join("meta")).map_err(|e| AgentError::io("mkdir", "", e))?;
    std::fs::write(&p, [0xffu8; 100]).map_err(|e| AgentError::io("write", &p, e))?;
    let (_, replay) = Journal::open(dir.path())?;
    assert!(replay.tasks.is_empty());
    assert_eq!(replay.cut_bytes, 100);
    Ok(())
}

#[derive(Debug, Clone)]
enum Op {
    Checkpoint(u8, i32),
    Forget(u8),
    Commit,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u8..6, 0i32..8).prop_map(|(t, s)| Op::Checkpoint(t, s)),
        (0u8..6).prop_map(Op::Forget),
        Just(Op::Commit),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Whatever the journal's bytes are cut to (a crash at any point of any write), a reopen
    /// gives exactly the state after some prefix of the records, and never more than was
    /// written.
    #[test]
    fn any_cut_replays_a_prefix_of_the_records(ops in proptest::collection::vec(op(), 1..40), cut in 0.0f64..1.0) {
        let dir = tempfile::tempdir().map_err(|e| TestCaseError::fail(e.to_string()))?;
        let (mut j, _) = Journal::open(dir.path()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let mut states = vec![BTreeMap::new()];
        let mut model = BTreeMap::new();
        for o in &ops {
            match o {
                Op::Checkpoint(t, s) => {
                    let c = cp(*s, u64::from(*t));
                    j.checkpoint(&key(&t.to_string()), &c, true).map_err(|e| TestCaseError::fail(e.to_string()))?;
                    model.insert(key(&t.to_string()), c);
                    states.push(model.clone());
                }
                Op::Forget(t) => {
                    j.forget(&key(&t.to_string())).map_err(|e| TestCaseError::fail(e.to_string()))?;
                    model.remove(&key(&t.to_string()));
                    states.push(model.clone());
                }
                Op::Commit => j.commit_now().map_err(|e| TestCaseError::fail(e.to_string()))?,
            }
        }
        j.commit_now().map_err(|e| TestCaseError::fail(e.to_string()))?;
        drop(j);
        let p = path(dir.path());
        let bytes = std::fs::read(&p).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let keep = (bytes.len() as f64 * cut) as usize;
        std::fs::write(&p, &bytes[..keep]).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let (_, replay) = Journal::open(dir.path()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let got = checkpoints(&replay);
        prop_assert!(states.contains(&got), "replayed {:?}", got);
        let full = read(dir.path()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(full, got);
    }
}

/// A compaction cut short before its rename leaves `journal.tmp` next to an intact journal: the
/// journal is replayed as it was and the leftover removed.
#[tokio::test]
async fn a_compaction_cut_short_leaves_the_journal_as_it_was() -> Result<(), AgentError> {
    let dir = temp_dir()?;
    let (mut j, _) = Journal::open(dir.path())?;
    j.checkpoint(&key("a"), &cp(3, 7), true)?;
    j.commit().await?;
    drop(j);
    let tmp = tmp_path(&path(dir.path()));
    std::fs::write(&tmp, b"half a snapshot").map_err(|e| AgentError::io("write", &tmp, e))?;
    let (_, replay) = Journal::open(dir.path())?;
    assert_eq!(replay.cut_bytes, 0);
    assert_eq!(checkpoints(&replay).get(&key("a")), Some(&cp(3, 7)));
    assert!(!tmp.exists(), "the leftover is removed");
    Ok(())
}
