//! An update as the scheduler would carry it out, before it does: the [`diff`](super::diff)
//! and the placement check ([`fit`](super::fit)), with the text `proffer service plan-update`
//! prints and the reason an update is refused.

use serde::{Deserialize, Serialize};

use super::diff::{InstanceAction, InstanceChange, PodChangeKind, UpdateDiff, diff};
use super::fit::{FitReport, check};
use super::spec::ServiceSpec;
use super::store::TaskRecord;
use crate::capacity::AgentCapacity;

/// The diff of an update and, when the cluster could be asked, its placement check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdatePreview {
    /// What changes.
    pub diff: UpdateDiff,
    /// Whether it can be placed (none when the cluster could not be asked).
    pub fit: Option<FitReport>,
    /// Why the cluster could not be asked (an update is not refused then).
    pub fit_unknown: Option<String>,
}

impl UpdatePreview {
    /// Previews `old` → `new` over the task records, checked against `agents` (or the reason
    /// they are not known); `start_first`: whether the scheduler starts replacements before
    /// stopping the old instances where the spec allows it.
    pub fn build(
        old: &ServiceSpec,
        new: &ServiceSpec,
        tasks: &std::collections::BTreeMap<String, TaskRecord>,
        agents: Result<&[AgentCapacity], String>,
        start_first: bool,
    ) -> UpdatePreview {
        let mut d = diff(old, new, tasks, start_first);
        let (fit, fit_unknown) = match agents {
            Ok(a) => (Some(check(new, &mut d, a)), None),
            Err(e) => (None, Some(e)),
        };
        UpdatePreview {
            diff: d,
            fit,
            fit_unknown,
        }
    }

    /// False when some new or changed pod cannot be placed.
    pub fn placeable(&self) -> bool {
        self.fit.as_ref().is_none_or(FitReport::placeable)
    }

    /// Why the update is refused (none when it can be placed).
    pub fn refusal(&self) -> Option<String> {
        let fit = self.fit.as_ref()?;
        let problems = fit.problems();
        (!problems.is_empty()).then(|| {
            format!(
                "update refused, nothing was changed: {} (force it to apply anyway)",
                problems.join("; ")
            )
        })
    }

    /// The preview as text: pods, rollout order, placement.
    pub fn render(&self) -> String {
        let d = &self.diff;
        let mut out = format!("service {}: {}\n", d.service, d.plan);
        if d.is_empty() {
            out.push_str("no change: the new spec is the one that runs\n");
        }
        for p in &d.pods {
            let (mark, what) = match p.kind {
                PodChangeKind::Added => ("+", format!("new, {} instance(s)", p.new_count)),
                PodChangeKind::Unchanged => continue,
                PodChangeKind::Changed | PodChangeKind::Scaled if p.old_count != p.new_count => {
                    ("~", format!("{} → {} instances", p.old_count, p.new_count))
                }
                PodChangeKind::Changed | PodChangeKind::Scaled => {
                    ("~", format!("{} instance(s)", p.new_count))
                }
            };
            out.push_str(&format!("  {mark} pod {}: {what}\n", p.pod));
            for f in &p.fields {
                let v = |x: &Option<String>| x.clone().unwrap_or_else(|| "(none)".into());
                out.push_str(&format!(
                    "      {}: {} → {}\n",
                    f.path,
                    v(&f.old),
                    v(&f.new)
                ));
            }
        }
        if !d.instances.is_empty() {
            out.push_str("rollout (instances with the same number go together):\n");
            for i in &d.instances {
                out.push_str(&instance_line(i));
            }
        }
        match (&self.fit, &self.fit_unknown) {
            (Some(f), _) if !f.pods.is_empty() => {
                out.push_str(&format!(
                    "placement on the current agents ({}, role {}):\n",
                    f.agents, f.role
                ));
                for p in &f.pods {
                    match &p.problem {
                        Some(problem) => out.push_str(&format!("  FAIL {problem}\n")),
                        None => out.push_str(&format!(
                            "  ok   pod {}: {} instance(s) of {}; {} agent(s) can hold one, {} with room now\n",
                            p.pod, p.placed, p.demand, p.fitting, p.room_now
                        )),
                    }
                    for w in &p.warnings {
                        out.push_str(&format!("       warning: {w}\n"));
                    }
                }
            }
            (None, Some(why)) => {
                out.push_str(&format!("placement not checked: {why}\n"));
            }
            _ => {}
        }
        out
    }
}

fn instance_line(i: &InstanceChange) -> String {
    let when = if i.action == InstanceAction::Stop {
        "now".to_string()
    } else {
        i.order.to_string()
    };
    let tasks = if i.tasks.is_empty() {
        String::new()
    } else {
        format!(" [{}]", i.tasks.join(","))
    };
    let place = match (&i.action, &i.hostname) {
        (InstanceAction::Stop, Some(h)) => format!(" on {h} (above the new count)"),
        (InstanceAction::Stop, None) => " (above the new count)".to_string(),
        (_, Some(h)) if i.start_first => {
            format!(" on any agent that fits; the one on {h} stops once it is ready")
        }
        (_, Some(h)) => format!(" in place on {h}"),
        (_, None) => " on any agent that fits".to_string(),
    };
    let moves = i
        .moves
        .as_ref()
        .map(|m| format!("\n         moves: {m}"))
        .unwrap_or_default();
    format!(
        "  {when:>4}  {:<7} {}{tasks}{place}{moves}\n",
        i.action.name(),
        i.instance
    )
}
