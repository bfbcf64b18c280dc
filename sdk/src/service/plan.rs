//! Plans → phases → steps: the model, the strategies that pick which steps may work now, the
//! status roll-up, and the operator actions (pause, resume, restart, force-complete).

use serde::{Deserialize, Serialize};

use super::spec::StrategyKind;

/// The state of one step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, PartialOrd, Ord, Hash)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum StepStatus {
    /// Waiting for its turn or for a matching offer.
    Pending,
    /// An offer matched; the operations (reserve, create, launch) are being sent.
    Prepared,
    /// The master accepted the launch; not every task has reached RUNNING yet.
    Starting,
    /// Every task runs; waiting for readiness (goal RUNNING) or completion (goal FINISH/ONCE).
    Started,
    /// The step reached its goal.
    Complete,
    /// The step cannot make progress without an operator (see its message).
    Error,
}

impl StepStatus {
    /// The upper-case name shown by the API.
    pub fn name(self) -> &'static str {
        match self {
            StepStatus::Pending => "PENDING",
            StepStatus::Prepared => "PREPARED",
            StepStatus::Starting => "STARTING",
            StepStatus::Started => "STARTED",
            StepStatus::Complete => "COMPLETE",
            StepStatus::Error => "ERROR",
        }
    }
}

/// The rolled-up state of a phase or plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RollupStatus {
    /// Nothing started yet.
    Pending,
    /// Some children started, not all complete.
    InProgress,
    /// Paused by an operator.
    Waiting,
    /// Every child complete.
    Complete,
    /// A child is in ERROR.
    Error,
}

impl RollupStatus {
    /// The upper-case name shown by the API.
    pub fn name(self) -> &'static str {
        match self {
            RollupStatus::Pending => "PENDING",
            RollupStatus::InProgress => "IN_PROGRESS",
            RollupStatus::Waiting => "WAITING",
            RollupStatus::Complete => "COMPLETE",
            RollupStatus::Error => "ERROR",
        }
    }
}

/// One step: bring one pod instance (some or all of its tasks) to their goal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    /// Display name, `POD-INDEX:[task,…]`.
    pub name: String,
    /// The pod type.
    pub pod: String,
    /// The instance index.
    pub index: u32,
    /// The tasks this step launches.
    pub tasks: Vec<String>,
    /// Where it is.
    pub status: StepStatus,
    /// Paused by an operator.
    pub interrupted: bool,
    /// Force-completed by an operator (kept across restarts).
    pub forced: bool,
    /// What it is doing or waiting for (the `why` line).
    pub message: String,
}

impl Step {
    /// A PENDING step.
    pub fn new(pod: &str, index: u32, tasks: Vec<String>) -> Step {
        Step {
            name: format!("{pod}-{index}:[{}]", tasks.join(",")),
            pod: pod.to_string(),
            index,
            tasks,
            status: StepStatus::Pending,
            interrupted: false,
            forced: false,
            message: String::new(),
        }
    }

    /// The pod instance name, `POD-INDEX`.
    pub fn instance(&self) -> String {
        format!("{}-{}", self.pod, self.index)
    }

    /// Complete (by reaching its goal or by force).
    pub fn is_complete(&self) -> bool {
        self.status == StepStatus::Complete
    }
}

/// A group of steps with a strategy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Phase {
    /// The phase name.
    pub name: String,
    /// How its steps are ordered.
    pub strategy: StrategyKind,
    /// Phases of the same plan that must complete first (dependency plans).
    pub depends: Vec<String>,
    /// The steps.
    pub steps: Vec<Step>,
    /// Paused by an operator.
    pub interrupted: bool,
}

/// A named plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// The plan name.
    pub name: String,
    /// How its phases are ordered.
    pub strategy: StrategyKind,
    /// The phases.
    pub phases: Vec<Phase>,
    /// Paused by an operator.
    pub interrupted: bool,
}

/// Addresses a step inside a plan.
pub type StepRef = (usize, usize);

fn rollup<'a>(
    statuses: impl Iterator<Item = (StepStatus, bool)> + 'a,
    interrupted: bool,
) -> RollupStatus {
    let all: Vec<(StepStatus, bool)> = statuses.collect();
    if all.iter().any(|(s, _)| *s == StepStatus::Error) {
        return RollupStatus::Error;
    }
    if all.iter().all(|(s, _)| *s == StepStatus::Complete) {
        return RollupStatus::Complete;
    }
    if interrupted
        || all.iter().any(|(_, i)| *i) && all.iter().all(|(s, i)| *i || *s == StepStatus::Complete)
    {
        return RollupStatus::Waiting;
    }
    if all.iter().any(|(s, _)| *s != StepStatus::Pending) {
        return RollupStatus::InProgress;
    }
    RollupStatus::Pending
}

impl Phase {
    /// The phase's rolled-up status.
    pub fn status(&self) -> RollupStatus {
        rollup(
            self.steps.iter().map(|s| (s.status, s.interrupted)),
            self.interrupted,
        )
    }

    /// Steps that may work now, with a reason for each step that may not.
    fn candidates(&self, out: &mut Vec<usize>, blocked: &mut Vec<(usize, String)>) {
        let open: Vec<usize> = (0..self.steps.len())
            .filter(|&i| !self.steps[i].is_complete())
            .collect();
        for (pos, &i) in open.iter().enumerate() {
            let step = &self.steps[i];
            if self.interrupted {
                blocked.push((i, format!("phase `{}` is paused", self.name)));
            } else if step.interrupted {
                blocked.push((i, "step is paused".to_string()));
            } else if step.status == StepStatus::Error {
                blocked.push((i, format!("step is in ERROR: {}", step.message)));
            } else if self.strategy == StrategyKind::Serial && pos > 0 {
                let first = &self.steps[open[0]];
                blocked.push((
                    i,
                    format!(
                        "serial strategy: waiting for step `{}` ({})",
                        first.name,
                        first.status.name()
                    ),
                ));
            } else {
                out.push(i);
            }
        }
    }
}

impl Plan {
    /// The plan's rolled-up status.
    pub fn status(&self) -> RollupStatus {
        let steps = self.phases.iter().flat_map(|p| {
            p.steps
                .iter()
                .map(move |s| (s.status, s.interrupted || p.interrupted))
        });
        let st = rollup(steps, self.interrupted);
        if self.phases.is_empty() {
            return RollupStatus::Complete;
        }
        st
    }

    /// Steps that may work now and, for every other incomplete step, why it may not.
    pub fn candidates(&self) -> (Vec<StepRef>, Vec<(StepRef, String)>) {
        let mut out = Vec::new();
        let mut blocked = Vec::new();
        let complete: Vec<bool> = self
            .phases
            .iter()
            .map(|p| p.status() == RollupStatus::Complete)
            .collect();
        let first_open = complete.iter().position(|c| !c);
        for (pi, phase) in self.phases.iter().enumerate() {
            if complete[pi] {
                continue;
            }
            let gate: Option<String> = if self.interrupted {
                Some(format!("plan `{}` is paused", self.name))
            } else {
                match self.strategy {
                    StrategyKind::Serial if Some(pi) != first_open => first_open.map(|f| {
                        format!(
                            "serial strategy: waiting for phase `{}`",
                            self.phases[f].name
                        )
                    }),
                    StrategyKind::Dependency => {
                        let missing: Vec<&str> = phase
                            .depends
                            .iter()
                            .filter(|d| {
                                !self
                                    .phases
                                    .iter()
                                    .zip(&complete)
                                    .any(|(p, c)| p.name == **d && *c)
                            })
                            .map(String::as_str)
                            .collect();
                        (!missing.is_empty())
                            .then(|| format!("waiting for phase(s) {}", missing.join(", ")))
                    }
                    _ => None,
                }
            };
            let mut steps = Vec::new();
            let mut why = Vec::new();
            phase.candidates(&mut steps, &mut why);
            match gate {
                Some(reason) => {
                    blocked.extend(steps.into_iter().map(|s| ((pi, s), reason.clone())));
                }
                None => out.extend(steps.into_iter().map(|s| (pi, s))),
            }
            blocked.extend(why.into_iter().map(|(s, r)| ((pi, s), r)));
        }
        (out, blocked)
    }

    /// The step at `r`.
    pub fn step(&self, r: StepRef) -> Option<&Step> {
        self.phases.get(r.0).and_then(|p| p.steps.get(r.1))
    }

    /// The step at `r`, mutable.
    pub fn step_mut(&mut self, r: StepRef) -> Option<&mut Step> {
        self.phases.get_mut(r.0).and_then(|p| p.steps.get_mut(r.1))
    }

    /// Every step with its address.
    pub fn steps(&self) -> impl Iterator<Item = (StepRef, &Step)> {
        self.phases
            .iter()
            .enumerate()
            .flat_map(|(pi, p)| p.steps.iter().enumerate().map(move |(si, s)| ((pi, si), s)))
    }

    /// Resolves an operator's target: the whole plan, a phase, or one step of a phase.
    fn select(&self, phase: Option<&str>, step: Option<&str>) -> Result<Vec<StepRef>, String> {
        match (phase, step) {
            (None, None) => Ok(self.steps().map(|(r, _)| r).collect()),
            (None, Some(_)) => Err("a step needs its phase".to_string()),
            (Some(ph), st) => {
                let pi = self
                    .phases
                    .iter()
                    .position(|p| p.name == ph)
                    .ok_or_else(|| format!("plan `{}` has no phase `{ph}`", self.name))?;
                let phase = &self.phases[pi];
                match st {
                    None => Ok((0..phase.steps.len()).map(|si| (pi, si)).collect()),
                    Some(s) => {
                        let si = phase
                            .steps
                            .iter()
                            .position(|x| x.name == s || x.instance() == s)
                            .ok_or_else(|| format!("phase `{ph}` has no step `{s}`"))?;
                        Ok(vec![(pi, si)])
                    }
                }
            }
        }
    }

    /// Pauses the plan, a phase or a step.
    pub fn pause(&mut self, phase: Option<&str>, step: Option<&str>) -> Result<(), String> {
        self.set_interrupted(phase, step, true)
    }

    /// Resumes the plan, a phase or a step.
    pub fn resume(&mut self, phase: Option<&str>, step: Option<&str>) -> Result<(), String> {
        self.set_interrupted(phase, step, false)
    }

    fn set_interrupted(
        &mut self,
        phase: Option<&str>,
        step: Option<&str>,
        v: bool,
    ) -> Result<(), String> {
        let refs = self.select(phase, step)?;
        match (phase, step) {
            (None, _) => {
                self.interrupted = v;
                if !v {
                    for p in &mut self.phases {
                        p.interrupted = false;
                        p.steps.iter_mut().for_each(|s| s.interrupted = false);
                    }
                }
            }
            (Some(_), None) => {
                if let Some(&(pi, _)) = refs.first() {
                    self.phases[pi].interrupted = v;
                    if !v {
                        self.phases[pi]
                            .steps
                            .iter_mut()
                            .for_each(|s| s.interrupted = false);
                    }
                } else if let Some(pi) =
                    phase.and_then(|n| self.phases.iter().position(|p| p.name == n))
                {
                    self.phases[pi].interrupted = v;
                }
            }
            (Some(_), Some(_)) => {
                for r in refs {
                    if let Some(s) = self.step_mut(r) {
                        s.interrupted = v;
                    }
                }
            }
        }
        Ok(())
    }

    /// Resets the selected steps to PENDING (the caller relaunches their tasks); returns them.
    pub fn restart(
        &mut self,
        phase: Option<&str>,
        step: Option<&str>,
    ) -> Result<Vec<StepRef>, String> {
        let refs = self.select(phase, step)?;
        for &r in &refs {
            if let Some(s) = self.step_mut(r) {
                s.status = StepStatus::Pending;
                s.forced = false;
                s.message = "restarted by operator".to_string();
            }
        }
        Ok(refs)
    }

    /// Marks the selected steps COMPLETE without waiting for their tasks.
    pub fn force_complete(
        &mut self,
        phase: Option<&str>,
        step: Option<&str>,
    ) -> Result<(), String> {
        for r in self.select(phase, step)? {
            if let Some(s) = self.step_mut(r) {
                s.status = StepStatus::Complete;
                s.forced = true;
                s.message = "force-completed by operator".to_string();
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(strategy: StrategyKind, phase_strategy: StrategyKind) -> Plan {
        let phase = |name: &str, depends: Vec<String>| Phase {
            name: name.to_string(),
            strategy: phase_strategy,
            depends,
            steps: (0..2)
                .map(|i| Step::new(name, i, vec!["t".into()]))
                .collect(),
            interrupted: false,
        };
        Plan {
            name: "deploy".into(),
            strategy,
            phases: vec![
                phase("a", vec![]),
                phase("b", vec!["a".into()]),
                phase("c", vec![]),
            ],
            interrupted: false,
        }
    }

    #[test]
    fn serial_plan_serial_phase_offers_one_step() {
        let p = plan(StrategyKind::Serial, StrategyKind::Serial);
        let (c, blocked) = p.candidates();
        assert_eq!(c, vec![(0, 0)]);
        assert_eq!(blocked.len(), 5);
        assert!(blocked.contains(&(
            (0, 1),
            "serial strategy: waiting for step `a-0:[t]` (PENDING)".into()
        )));
        assert!(blocked.contains(&((2, 0), "serial strategy: waiting for phase `a`".into())));
        assert_eq!(p.status(), RollupStatus::Pending);
    }

    #[test]
    fn parallel_and_dependency_strategies() {
        let p = plan(StrategyKind::Parallel, StrategyKind::Parallel);
        assert_eq!(p.candidates().0.len(), 6);
        let mut p = plan(StrategyKind::Dependency, StrategyKind::Parallel);
        let (c, blocked) = p.candidates();
        assert_eq!(c, vec![(0, 0), (0, 1), (2, 0), (2, 1)]);
        assert!(blocked.contains(&((1, 0), "waiting for phase(s) a".into())));
        p.force_complete(Some("a"), None).ok();
        assert_eq!(p.candidates().0, vec![(1, 0), (1, 1), (2, 0), (2, 1)]);
        assert_eq!(p.status(), RollupStatus::InProgress);
    }

    #[test]
    fn pause_resume_restart_force_complete() -> Result<(), String> {
        let mut p = plan(StrategyKind::Parallel, StrategyKind::Parallel);
        p.pause(None, None)?;
        assert!(p.candidates().0.is_empty());
        assert_eq!(p.status(), RollupStatus::Waiting);
        p.resume(None, None)?;
        p.pause(Some("b"), Some("b-1"))?;
        assert_eq!(p.candidates().0.len(), 5);
        p.force_complete(Some("a"), None)?;
        assert_eq!(p.phases[0].status(), RollupStatus::Complete);
        assert_eq!(p.status(), RollupStatus::InProgress);
        p.restart(Some("a"), Some("a-0:[t]"))?;
        assert_eq!(p.phases[0].steps[0].status, StepStatus::Pending);
        assert!(p.pause(Some("zz"), None).is_err());
        assert!(p.restart(None, Some("a-0")).is_err());
        p.force_complete(None, None)?;
        assert_eq!(p.status(), RollupStatus::Complete);
        Ok(())
    }
}
