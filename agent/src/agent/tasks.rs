//! The agent loop's task side: launching tasks (and task groups) under executors, turning
//! executor events into status updates, kills, acknowledgements, checkpointing every change,
//! recovery after a restart, drain and shutdown.

use std::time::Duration;

use proffer_proto::Resources;
use proffer_proto::v1::{self, TaskInfo, TaskState, agent_message};
use tokio::time::Instant;
use tracing::{debug, error, info, warn};

use super::launch_files::{LaunchFiles, write_launch_files_all};
use super::{Agent, TaskEntry, msg};
use crate::cgroups::{self, CgroupSpec, CgroupSupport};
use crate::checkpoint::{self, TaskCheckpoint};
use crate::config::IsolationMode;
use crate::containerizer::{self, EventKind};
use crate::core::{Effect, Host, Input, Need, Refusal, TaskKey};
use crate::executor::protocol::{self, ExecutorEvent, ExecutorSpec};
use crate::{AgentConfig, AgentError, process, sandbox};

/// Detects cgroups as configured; fails when cgroups are required but unusable.
pub(super) fn detect_isolation(config: &AgentConfig) -> Result<CgroupSupport, AgentError> {
    let support = match config.isolation {
        IsolationMode::Posix => CgroupSupport::none("isolation is posix (configured)"),
        IsolationMode::Auto | IsolationMode::Cgroups => {
            let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
            let mounts = cgroups::parse_mounts(&mounts);
            if process::is_root() {
                let support = cgroups::detect(&mounts, &config.cgroups_root);
                if support.version.is_some() && !cgroups::favors_dynmods(&mounts) {
                    info!(
                        "cgroup moves may wait for RCU grace periods: tasks start sooner with the kernel parameter cgroup_favordynmods=true (docs/launch-performance.md)"
                    );
                }
                support
            } else {
                CgroupSupport::none("the agent is not running as root")
            }
        }
    };
    if config.isolation == IsolationMode::Cgroups && !(support.has("cpu") && support.has("memory"))
    {
        return Err(AgentError::Isolation(format!(
            "cgroups are required but unusable: {}",
            support.summary()
        )));
    }
    if config.pid_namespace {
        process::check_pid_namespace()
            .map_err(|e| AgentError::Isolation(format!("PID namespaces were asked for: {e}")))?;
        info!("tasks run in their own PID and mount namespaces");
    }
    if support.version.is_none() && config.isolation == IsolationMode::Auto {
        warn!(isolation = %support.summary(), "no cgroups: tasks run without cpu/memory limits; tasks asking for a pids limit are refused");
    } else {
        info!(isolation = %support.summary(), "task isolation");
    }
    Ok(support)
}

impl Agent {
    /// Handles the executor and session events that are already queued (at most `max`), so
    /// one group commit covers them all.
    pub(super) fn handle_ready(&mut self, max: usize) {
        // A batch is also cut after a few milliseconds of work, so updates are not held long.
        let until = std::time::Instant::now() + READY_WORK;
        for _ in 0..max {
            if std::time::Instant::now() >= until {
                return;
            }
            if let Ok(ev) = self.containers_rx.try_recv() {
                self.on_container(ev);
            } else if let Ok(ev) = self.events_rx.try_recv() {
                self.on_session_event(ev);
            } else {
                return;
            }
        }
    }

    /// Group commit: writes the checkpoints marked since the last commit durably (fsyncs in
    /// parallel), then sends the updates held for them, in order, and starts the tasks
    /// launched since (their checkpoints name their executor).
    pub(super) async fn commit(&mut self) {
        if self.journal_failed.is_some() {
            // Nothing can be made durable: nothing is sent or started (the agent is stopping).
            return;
        }
        if !self.launches.is_empty() {
            let launches = std::mem::take(&mut self.launches);
            let keys: Vec<TaskKey> = launches.iter().map(|l| l.key.clone()).collect();
            for (key, written) in keys.iter().zip(write_launch_files_all(launches).await) {
                self.feed(Input::Prepared {
                    key: key.clone(),
                    result: written,
                });
            }
        }
        if self.core.is_clean() {
            // Checkpoints written after acknowledgements need no fsync of their own.
            if let Err(e) = self.journal.commit().await {
                self.journal_broke(e);
                return;
            }
            self.supervisors.flush();
            return;
        }
        let effects = self.core.handle(self.now(), Input::Commit);
        let mut checkpoints = 0;
        let mut held = Vec::new();
        let mut later = Vec::new();
        for e in effects {
            match e {
                Effect::Checkpoint {
                    key,
                    state,
                    updates,
                    ..
                } => {
                    checkpoints += 1;
                    self.journal_checkpoint(&key, state, &updates, true);
                }
                Effect::Send(u) => held.push(u),
                other => later.push(other),
            }
        }
        debug!(checkpoints, updates = held.len(), "group commit");
        self.last_batch = checkpoints;
        // Every checkpoint of the batch is durable (one fdatasync of the journal) before any
        // of its updates is sent, and before any of its tasks starts.
        if let Err(e) = self.journal.commit().await {
            self.journal_broke(e);
            return;
        }
        self.send_updates(held);
        self.apply(later);
        self.supervisors.flush();
    }

    /// Sends a commit's updates, in order: in one message when the master takes batches and
    /// there are several, else one message each.
    fn send_updates(&mut self, updates: Vec<v1::StatusUpdate>) {
        if self.batch_updates && updates.len() > 1 {
            self.send(msg(agent_message::Msg::StatusUpdates(v1::StatusUpdates {
                updates,
            })));
        } else {
            for u in updates {
                self.send(msg(agent_message::Msg::StatusUpdate(u)));
            }
        }
    }

    /// When the agent is busy (the previous commit had [`BUSY_BATCH`] checkpoints or more),
    /// there is something to commit and the previous commit was less than the commit window
    /// ago, waits for the rest of the window and takes in what arrived meanwhile, so the next
    /// commit covers it too (one fsync, larger batches of messages). A lightly loaded agent
    /// commits at once: the window would only add to its latency.
    pub(super) async fn gather_until_window(&mut self, last_commit: Instant) {
        let pending = !self.core.is_clean() || !self.launches.is_empty();
        let wait = window_left(
            self.config.commit_window,
            last_commit.elapsed(),
            self.last_batch,
            pending,
        );
        if let Some(wait) = wait {
            tokio::time::sleep(wait).await;
            self.handle_ready(super::READY_BATCH);
        }
    }

    /// Refuses a task: the core reports it ended with the refusal's state, reason and message.
    fn refuse(&mut self, key: &TaskKey, refusal: Refusal) {
        self.feed(Input::Refuse {
            key: key.clone(),
            refusal,
        });
    }

    /// Records the task's checkpoint (state, log offset, pending updates), without fsync.
    fn persist(&mut self, key: &TaskKey) {
        let state = self.core.state(key).unwrap_or(TaskState::TaskStaging);
        let queued = self.core.queued(key);
        self.journal_checkpoint(key, state, &queued, false);
        self.journal_write();
    }

    pub(super) fn run_task(&mut self, framework_id: String, task: TaskInfo) {
        self.launch_task(framework_id, task, None);
    }

    /// LAUNCH_GROUP: every task is launched; if one cannot be, the others are refused too.
    pub(super) fn run_task_group(&mut self, framework_id: String, tasks: Vec<TaskInfo>) {
        let group = tasks.first().map(|t| format!("group-{}", t.task_id));
        let refusal = tasks.iter().find_map(|t| {
            self.refusal(&framework_id, t)
                .err()
                .map(|r| (t.task_id.clone(), r))
        });
        if let Some((bad, why)) = refusal {
            for t in tasks {
                let key = TaskKey::new(framework_id.clone(), t.task_id.clone());
                self.refuse(&key, why.for_group(&bad));
            }
            return;
        }
        for t in tasks {
            self.launch_task(framework_id.clone(), t, group.clone());
        }
    }

    /// Why a task cannot run here, if it cannot: the core's admission, then the task's user.
    fn refusal(&self, framework_id: &str, task: &TaskInfo) -> Result<(), Refusal> {
        let isolation = self.cgroups.summary();
        let host = Host {
            pids_limit: self.cgroups.has("pids"),
            isolation: &isolation,
            cpus_milli: self.resources.cpus_milli(),
            mem_milli: self.resources.mem_milli(),
        };
        self.core.admit(framework_id, task, &host)?;
        let user = task.command.as_ref().map(|c| c.user.as_str()).unwrap_or("");
        if !user.is_empty() {
            if !process::is_root() {
                return Err(Refusal::unavailable(format!(
                    "the task asks to run as {user:?} but the agent is not root"
                )));
            }
            process::lookup_user(user).map_err(Refusal::unavailable)?;
        }
        Ok(())
    }

    fn launch_task(&mut self, framework_id: String, task: TaskInfo, group: Option<String>) {
        let key = TaskKey::new(framework_id.clone(), task.task_id.clone());
        if self.tasks.contains_key(&key) {
            warn!(agent_id = self.id_str(), framework_id = %key.framework_id, task_id = %key.task_id,
                  "duplicate RunTask for a known task ignored");
            return;
        }
        if let Err(r) = self.refusal(&framework_id, &task) {
            self.refuse(&key, r);
            return;
        }
        self.next_instance += 1;
        let run_dir = checkpoint::run_dir(&self.config.work_dir, &key.framework_id, &key.task_id);
        self.tasks.insert(
            key.clone(),
            TaskEntry {
                info: task.clone(),
                instance: self.next_instance,
                container: None,
                run_dir,
                spec: None,
                cp: TaskCheckpoint {
                    framework_id: framework_id.clone(),
                    group: group.clone(),
                    ..Default::default()
                },
                group: group.clone(),
            },
        );
        self.feed(Input::Launch {
            key: key.clone(),
            group,
            kill_grace_ms: task.kill_grace_period_ms,
            need: Need::of(&task),
        });
        if let Err(r) = self.launch(&key, &task) {
            self.refuse(&key, r);
        }
    }

    fn cgroup_spec(
        &self,
        task: &TaskInfo,
        container_id: &str,
    ) -> Result<Option<CgroupSpec>, String> {
        let Some(version) = self.cgroups.version else {
            return Ok(None);
        };
        let r = Resources::from_proto(&task.resources)
            .map_err(|e| format!("invalid task resources: {e}"))?;
        let cpus_milli = u64::try_from(r.cpus_milli()).unwrap_or(0);
        let mem_mb = u64::try_from(r.mem_milli()).unwrap_or(0) / 1000;
        let has = |c: &str| self.cgroups.has(c);
        Ok(Some(CgroupSpec {
            version,
            // Every hierarchy joined costs a cgroup migration (slow on v1): pids only when asked.
            parents: self
                .cgroups
                .usable
                .iter()
                .filter(|(c, _)| task.pids_limit > 0 || c.as_str() != "pids")
                .map(|(c, p)| (c.clone(), p.clone()))
                .collect(),
            name: container_id.to_string(),
            cpu_shares: (has("cpu") && cpus_milli > 0).then(|| (cpus_milli * 1024 / 1000).max(2)),
            cfs_quota_us: (has("cpu") && self.config.cgroups_enable_cfs && cpus_milli > 0)
                .then(|| cpus_milli * cgroups::CFS_PERIOD_US / 1000),
            // Mesos's minimum container memory is 32 MB.
            memory_bytes: (has("memory") && mem_mb > 0).then(|| mem_mb.max(32) << 20),
            pids_max: (has("pids") && task.pids_limit > 0).then_some(task.pids_limit),
        }))
    }

    /// Builds the task's executor spec and queues its files for the next commit, where the
    /// files of the whole batch are written in parallel ([`LaunchFiles`]) and the executor is
    /// started ([`Agent::start_prepared`]).
    fn launch(&mut self, key: &TaskKey, task: &TaskInfo) -> Result<(), Refusal> {
        let dir = sandbox::sandbox_dir(&self.config.work_dir, &key.framework_id, &key.task_id);
        let run_dir = checkpoint::run_dir(&self.config.work_dir, &key.framework_id, &key.task_id);
        let mut env =
            process::task_env(task, &key.framework_id, self.id_str(), &dir).map_err(|message| {
                Refusal {
                    state: TaskState::TaskError,
                    reason: "REASON_TASK_INVALID",
                    message,
                }
            })?;
        let mut shared = None;
        if let Some(group) = self.tasks.get(key).and_then(|t| t.group.clone()) {
            // Tasks of a group share `sandboxes/<framework>/<group>/` next to their own sandboxes.
            let dir = sandbox::sandbox_dir(&self.config.work_dir, &key.framework_id, &group);
            env.push((
                "PROFFER_GROUP_SANDBOX".into(),
                dir.to_string_lossy().into_owned(),
            ));
            shared = Some(dir);
        }
        let container_id = uuid::Uuid::new_v4().to_string();
        let cgroup = self
            .cgroup_spec(task, &container_id)
            .map_err(Refusal::unavailable)?;
        let user = task
            .command
            .as_ref()
            .map(|c| c.user.clone())
            .filter(|u| !u.is_empty());
        let spec = ExecutorSpec {
            framework_id: key.framework_id.clone(),
            agent_id: self.id_str().to_string(),
            container_id,
            sandbox: dir.clone(),
            env,
            default_kill_grace_ms: u64::try_from(
                self.core
                    .kill_grace(0, task.kill_grace_period_ms)
                    .as_millis(),
            )
            .unwrap_or(u64::MAX),
            cgroup,
            fetch_cache: Some((
                self.config.work_dir.join("cache"),
                self.config.fetcher_cache_bytes,
            )),
            user,
            pid_namespace: self.config.pid_namespace,
        };
        if let Err(e) = self.journal.launch(key, task, &spec) {
            return Err(Refusal::unavailable(format!(
                "checkpointing the launch: {e}"
            )));
        }
        if let Some(t) = self.tasks.get_mut(key) {
            t.spec = Some(spec);
        }
        self.launches.push(LaunchFiles {
            key: key.clone(),
            work_dir: self.config.work_dir.clone(),
            sandbox: dir,
            run_dir,
            shared,
            task: task.clone(),
        });
        Ok(())
    }

    /// Hands a task whose files are written to its executor ([`Effect::Start`]) and tells the
    /// core how that went.
    pub(super) fn start_prepared(&mut self, key: &TaskKey) {
        let Some(t) = self.tasks.get(key) else {
            return;
        };
        let instance = t.instance;
        let Some(spec) = t.spec.clone() else {
            self.feed(Input::Started {
                key: key.clone(),
                result: Err("the task has no executor spec".into()),
            });
            return;
        };
        let what = containerizer::ToLaunch {
            run_dir: t.run_dir.clone(),
            task: t.info.clone(),
            spec,
        };
        let result = containerizer::launch(
            &self.launcher,
            &mut self.supervisors,
            what,
            key.clone(),
            instance,
            self.containers_tx.clone(),
        );
        let result = match result {
            Ok(container) => {
                debug!(framework_id = %key.framework_id, task_id = %key.task_id, executor = ?container.executor, "executor started");
                if let Some(t) = self.tasks.get_mut(key) {
                    t.cp.executor = Some(container.executor.clone());
                    t.container = Some(container);
                }
                Ok(())
            }
            Err(e) => Err(e.to_string()),
        };
        // One checkpoint (with the executor) per launch: STARTING is written ahead of sending.
        self.feed(Input::Started {
            key: key.clone(),
            result,
        });
    }

    pub(super) fn kill_task(&mut self, framework_id: &str, task_id: &str, grace_ms: u64) {
        self.feed(Input::Kill {
            key: TaskKey::new(framework_id, task_id),
            grace_ms,
        });
    }

    /// An executor's event: checkpoint fields (log offset, pid, health, readiness) here, the
    /// status update and what follows from it in the core.
    pub(super) fn on_container(&mut self, ev: containerizer::ContainerEvent) {
        let key = ev.key;
        let Some(t) = self.tasks.get_mut(&key) else {
            debug!(framework_id = %key.framework_id, task_id = %key.task_id, "event of a forgotten task");
            return;
        };
        if t.instance != ev.instance {
            return;
        }
        match ev.kind {
            EventKind::Garbled { message, offset } => {
                warn!(task_id = %key.task_id, %message, "skipping a bad executor event");
                t.cp.offset = offset;
                self.persist(&key);
            }
            EventKind::Executor { event, offset } => {
                t.cp.offset = offset;
                match &event {
                    ExecutorEvent::Started { pid } => t.cp.task_pid = Some(*pid),
                    ExecutorEvent::Health { healthy, .. } => t.cp.healthy = Some(*healthy),
                    ExecutorEvent::Ready { .. } => t.cp.ready = true,
                    ExecutorEvent::Exited { .. } => t.container = None,
                }
                self.feed(Input::Executor { key, event });
            }
            EventKind::ExecutorGone { message } => {
                t.container = None;
                self.feed(Input::ExecutorGone { key, message });
            }
        }
    }

    /// An acknowledgement: the core sends the task's next update, or forgets the task once
    /// its end is acknowledged and its executor gone.
    pub(super) fn on_ack(&mut self, a: &v1::StatusUpdateAck) {
        self.feed(Input::Ack(a.clone()));
    }

    /// Rebuilds the task table from the checkpoints and re-attaches to live executors.
    pub(super) fn recover(&mut self) {
        let mut running = 0;
        let mut total = 0;
        for (fw, task_id, dir) in checkpoint::list_run_dirs(&self.config.work_dir) {
            let journaled = self
                .replayed
                .remove(&TaskKey::new(fw.clone(), task_id.clone()))
                .unwrap_or_default();
            // Launch files and `agent.json` in the run directory are what an agent before the
            // journal checkpointed.
            if journaled.launch.is_none() && !dir.join(protocol::TASK_FILE).exists() {
                // A forgotten task's run directory, left for the garbage collector.
                continue;
            }
            let launch = journaled.launch.map(Ok).unwrap_or_else(|| {
                let info = protocol::read_task(&dir)?;
                Ok::<_, std::io::Error>((info, protocol::read_spec(&dir)?))
            });
            let (info, spec) = match launch {
                Ok(l) => l,
                Err(e) => {
                    warn!(run_dir = %dir.display(), error = %e, "unusable task checkpoint removed");
                    let _ = std::fs::remove_dir_all(&dir);
                    continue;
                }
            };
            let cp = match journaled
                .checkpoint
                .map_or_else(|| checkpoint::read_task(&dir), |cp| Ok(Some(cp)))
            {
                Ok(Some(cp)) => cp,
                Ok(None) => TaskCheckpoint {
                    framework_id: fw.clone(),
                    state: TaskState::TaskStaging as i32,
                    ..Default::default()
                },
                Err(e) => {
                    warn!(error = %e, "unreadable task checkpoint; the task is reported failed");
                    TaskCheckpoint {
                        framework_id: fw.clone(),
                        state: TaskState::TaskStaging as i32,
                        ..Default::default()
                    }
                }
            };
            let key = TaskKey::new(fw, task_id);
            for u in cp.decoded_updates() {
                self.feed(Input::Recovered(u));
            }
            self.next_instance += 1;
            let instance = self.next_instance;
            let state = TaskState::try_from(cp.state).unwrap_or(TaskState::TaskStaging);
            let container = (!state.is_terminal()).then(|| {
                containerizer::recover(
                    &dir,
                    cp.executor.clone().unwrap_or_default(),
                    key.clone(),
                    instance,
                    cp.offset,
                    self.containers_tx.clone(),
                )
            });
            running += usize::from(container.is_some());
            total += 1;
            self.feed(Input::Track {
                key: key.clone(),
                state,
                group: cp.group.clone(),
                live: container.is_some(),
                kill_grace_ms: info.kill_grace_period_ms,
                need: Need::of(&info),
            });
            self.tasks.insert(
                key,
                TaskEntry {
                    info,
                    instance,
                    container,
                    run_dir: dir,
                    spec: Some(spec),
                    group: cp.group.clone(),
                    cp,
                },
            );
        }
        // Journaled tasks without a run directory were forgotten just before a crash.
        for key in std::mem::take(&mut self.replayed).into_keys() {
            if let Err(e) = self.journal.forget(&key) {
                self.journal_broke(e);
            }
        }
        if total > 0 {
            info!(
                tasks = total,
                live = running,
                pending_updates = self.core.has_pending_updates(),
                "recovered tasks from the checkpoint"
            );
        }
    }

    /// ShutdownAgent: kill everything, forget the id and pending updates, register afresh.
    pub(super) fn on_shutdown_agent(&mut self, reason: &str) {
        warn!(
            agent_id = self.id_str(),
            reason, "master shut this agent down; killing all tasks and registering afresh"
        );
        self.feed(Input::ShutdownAgent);
        if let Err(e) = checkpoint::delete_agent_id(&self.config.work_dir) {
            error!(error = %e, "could not delete the agent id");
        }
        self.backoff = self.config.reconnect_initial;
        self.connect();
    }

    /// Drain: no new tasks; every task is killed with its grace period.
    pub(crate) fn drain(&mut self) {
        if !self.core.draining() {
            info!(
                agent_id = self.id_str(),
                "draining: killing all tasks, accepting no new ones"
            );
        }
        self.feed(Input::Drain);
    }

    /// End of a drain (the master reactivated the agent): new tasks are accepted again.
    pub(crate) fn reactivate(&mut self) {
        if self.core.draining() {
            info!(
                agent_id = self.id_str(),
                "reactivated: accepting new tasks again"
            );
        }
        self.feed(Input::Reactivate);
    }

    /// On cancel: kill every task and wait (bounded) for their ends, or leave them running
    /// for the next agent; then close the session.
    pub(super) async fn shutdown(&mut self) {
        // Tasks being launched are started (and checkpointed) first, so they are killed or
        // left running like the others.
        self.commit().await;
        if self.config.kill_tasks_on_shutdown {
            self.feed(Input::KillAll);
            let longest = self
                .tasks
                .values()
                .filter(|t| t.container.is_some())
                .map(|t| self.core.kill_grace(0, t.info.kill_grace_period_ms))
                .max()
                .unwrap_or_default();
            let deadline = Instant::now() + longest + Duration::from_secs(5);
            while self.tasks.values().any(|t| t.container.is_some()) {
                match tokio::time::timeout_at(deadline, self.containers_rx.recv()).await {
                    Ok(Some(ev)) => self.on_container(ev),
                    _ => {
                        warn!("tasks did not end in time after being killed");
                        break;
                    }
                }
            }
        } else {
            self.leave_tasks_running();
        }
        self.commit().await;
        self.close_session().await;
        info!(agent_id = self.id_str(), "agent stopped");
    }

    /// Stops after the journal could not be written: nothing more is sent or checkpointed,
    /// the tasks run on under their executors (they survive the agent), the session closes.
    pub(super) async fn stop_on_journal_failure(&mut self) {
        self.leave_tasks_running();
        self.close_session().await;
        error!(
            agent_id = self.id_str(),
            "agent stopped: its checkpoint journal cannot be written"
        );
    }

    /// Detaches every task's container, so dropping the agent does not end it.
    fn leave_tasks_running(&self) {
        let live = self
            .tasks
            .values()
            .filter(|t| t.container.is_some())
            .count();
        for t in self.tasks.values() {
            if let Some(c) = &t.container {
                c.detach();
            }
        }
        info!(
            tasks = live,
            "leaving tasks running under their executors for the next agent"
        );
    }
}

/// Checkpoints in a group commit from which the agent counts as busy and waits for the
/// commit window before the next one (two slots of `true` tasks commit one or two at a
/// time; eighty, ten or more).
const BUSY_BATCH: usize = 4;

/// How long to wait before the next group commit: the rest of the commit `window` since the
/// previous one (`since` ago), when the previous one held `last_batch` checkpoints, at least
/// [`BUSY_BATCH`], and something is `pending`; `None`: commit now.
fn window_left(
    window: Duration,
    since: Duration,
    last_batch: usize,
    pending: bool,
) -> Option<Duration> {
    (pending && last_batch >= BUSY_BATCH)
        .then(|| window.checked_sub(since))
        .flatten()
        .filter(|left| !left.is_zero())
}

/// The most time spent handling queued inputs before a group commit.
const READY_WORK: Duration = Duration::from_millis(10);

/// Kills a task's process group and everything in its cgroup at once (no grace): for a task
/// whose executor is gone, or that the agent forgets.
pub(super) fn kill_now(t: &TaskEntry) {
    if let Some(pid) = t.cp.task_pid.and_then(|p| i32::try_from(p).ok()) {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    if let Some(cg) = t.spec.as_ref().and_then(|s| s.cgroup.clone()) {
        // Killing and removing may wait on the kernel: not on the agent loop.
        tokio::task::spawn_blocking(move || {
            cgroups::kill_all(&cg);
            cgroups::destroy(&cg);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_busy_agent_waits_for_the_rest_of_the_commit_window() {
        let ms = Duration::from_millis;
        let busy = BUSY_BATCH;
        // (window, since the last commit, its checkpoints, pending) → wait
        let table = [
            (ms(2), ms(0), busy, true, Some(ms(2))),
            (ms(2), ms(1), busy + 10, true, Some(ms(1))),
            (ms(2), ms(2), busy, true, None),
            (ms(2), ms(5), busy, true, None),
            (ms(2), ms(0), busy - 1, true, None),
            (ms(2), ms(0), 0, true, None),
            (ms(2), ms(0), busy, false, None),
            (ms(0), ms(0), busy, true, None),
        ];
        for (window, since, batch, pending, want) in table {
            assert_eq!(
                window_left(window, since, batch, pending),
                want,
                "{window:?} {since:?} {batch} {pending}"
            );
        }
    }
}
