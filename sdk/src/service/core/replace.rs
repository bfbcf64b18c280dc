//! Start-first restarts: where the spec allows it ([`can_start_first`]), an instance that runs
//! with an old configuration keeps running while its replacement is launched (on any agent that
//! fits) and is stopped once the replacement is ready. The old task's record is kept under
//! `NAME~LAUNCHES` (a retired record) until it ends.
//!
//! It falls back to stop-first for the instance when the replacement finds no offer within
//! `replace_first_wait_ms` (the cluster has no room for both) or fails before it is ready (for
//! example a port the spec does not declare): the old task is killed first, as without it.

use super::{ServiceCore, config_hash, is_terminal};
use crate::service::diff::can_start_first;
use crate::service::plan::Step;
use crate::service::store::TaskRecord;

/// The start-first state of one instance (`POD-INDEX`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ReplaceFirst {
    /// When its replacement started waiting for an offer.
    pub since: u64,
    /// Stop-first from now on (no room for both, or the replacement failed).
    pub given_up: bool,
}

/// The record name of a retired task: `NAME~LAUNCHES`.
fn retired_name(rec: &TaskRecord) -> String {
    format!("{}~{}", rec.name, rec.launches)
}

/// True for a retired record (an old task that runs until its replacement is ready).
pub(super) fn is_retired(rec: &TaskRecord) -> bool {
    rec.name.contains('~')
}

impl ServiceCore {
    /// True when `step`'s running tasks are replaced by starting the new ones first.
    pub(super) fn starts_first(&self, step: &Step) -> bool {
        self.cfg.replace_first_wait_ms > 0
            && !self
                .replace_first
                .get(&step.instance())
                .is_some_and(|r| r.given_up)
            && self
                .spec
                .pod(&step.pod)
                .is_some_and(|p| can_start_first(p, &step.tasks, self.cfg.reservations))
    }

    /// Retired records of `step`'s instance that still run, and whether the step now stops
    /// old tasks first (then they must end before the replacement is launched).
    pub(super) fn live_retired(&self, step: &Step) -> Vec<&TaskRecord> {
        self.tasks
            .values()
            .filter(|r| is_retired(r) && r.pod == step.pod && r.index == step.index)
            .filter(|r| step.tasks.contains(&r.task) && !is_terminal(&r.state))
            .collect()
    }

    /// Keeps the running task of record `name` under its retired name before a replacement is
    /// launched under `name` (written first: a restarted scheduler still knows the old task).
    pub(super) fn retire(&mut self, name: &str) -> Result<(), super::CoreError> {
        let Some(old) = self.tasks.get(name).filter(|r| !is_terminal(&r.state)) else {
            return Ok(());
        };
        let retired = TaskRecord {
            name: retired_name(old),
            ..old.clone()
        };
        self.store.put_task(&retired)?;
        self.tasks.insert(retired.name.clone(), retired);
        Ok(())
    }

    /// A task ended: if it was a replacement that failed while the old task still runs, the
    /// instance falls back to stop-first.
    pub(super) fn replacement_ended(&mut self, now: u64, rec: &TaskRecord, failed: bool) {
        if !failed || is_retired(rec) {
            return;
        }
        let old_runs = self.tasks.values().any(|r| {
            is_retired(r) && r.pod == rec.pod && r.index == rec.index && !is_terminal(&r.state)
        });
        if old_runs {
            let instance = format!("{}-{}", rec.pod, rec.index);
            tracing::info!(%instance, "the replacement failed: stopping the old task first");
            let e = self.replace_first.entry(instance).or_insert(ReplaceFirst {
                since: now,
                given_up: true,
            });
            e.given_up = true;
        }
    }

    /// Per refresh: starts (and expires) the wait of replacements that have no offer yet, stops
    /// retired tasks whose replacement is ready (or whose instance is gone), forgets ended ones.
    pub(super) fn replace_first_tick(&mut self, now: u64) {
        let wait = self.cfg.replace_first_wait_ms;
        // Replacements not launched yet: the step's record still is the old, running task.
        let mut waiting = Vec::new();
        for plan in &self.plans {
            for r in plan.candidates().0 {
                let Some(step) = plan.step(r) else { continue };
                let hash = config_hash(&self.spec, &step.pod);
                let old_runs = step.tasks.iter().any(|t| {
                    self.tasks
                        .get(&format!("{}-{}-{t}", step.pod, step.index))
                        .is_some_and(|r| r.config != hash && !is_terminal(&r.state))
                });
                if old_runs && self.starts_first(step) {
                    waiting.push(step.instance());
                }
            }
        }
        for instance in waiting {
            let e = self
                .replace_first
                .entry(instance.clone())
                .or_insert(ReplaceFirst {
                    since: now,
                    given_up: false,
                });
            if now.saturating_sub(e.since) >= wait {
                tracing::info!(%instance, "no room for a replacement: stopping the old task first");
                e.given_up = true;
            }
        }
        let retired: Vec<TaskRecord> = self
            .tasks
            .values()
            .filter(|r| is_retired(r))
            .cloned()
            .collect();
        for old in retired {
            if is_terminal(&old.state) {
                if self.store.remove_task(&old.name).is_ok() {
                    self.tasks.remove(&old.name);
                }
                continue;
            }
            let base = old.name.split('~').next().unwrap_or_default();
            let hash = config_hash(&self.spec, &old.pod);
            let ready = self
                .tasks
                .get(base)
                .is_some_and(|n| n.config == hash && n.state == "TASK_RUNNING" && n.ready);
            let in_spec = self.spec.pod(&old.pod).is_some_and(|p| old.index < p.count);
            if ready || !in_spec {
                self.kill(now, &old.task_id, &old.agent_id);
            }
        }
        // An instance is done with start-first once no old task of it runs any more.
        let busy: std::collections::BTreeSet<String> = self
            .tasks
            .values()
            .filter(|r| {
                is_retired(r)
                    || (!is_terminal(&r.state) && r.config != config_hash(&self.spec, &r.pod))
            })
            .map(|r| format!("{}-{}", r.pod, r.index))
            .collect();
        self.replace_first.retain(|i, _| busy.contains(i));
    }
}
