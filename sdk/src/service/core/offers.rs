//! Offers: match waiting steps through the evaluation pipeline, build the launches, and record
//! for every offer why it was used or declined.

use std::collections::{BTreeMap, BTreeSet};

use proffer_proto::{Resources, v1};
use serde::Serialize;

use super::status::PREPARED;
use super::why::{Decline, remember, summarize};
use super::{Action, CoreError, OFFER_LOG, ServiceCore, config_hash, is_terminal};
use crate::service::evaluate::{Matched, OfferView, StepRequest, evaluate};
use crate::service::placement::{AgentView, Placement};
use crate::service::plan::Step;
use crate::service::spec::Goal;
use crate::service::store::TaskRecord;
use crate::service::template::{builtins, render};

/// What happened to one offer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OfferRecord {
    /// When it was evaluated (ms since the epoch, as given by the caller).
    pub at_ms: u64,
    /// The offer id.
    pub offer_id: String,
    /// The agent.
    pub agent_id: String,
    /// The agent's hostname.
    pub hostname: String,
    /// The offered resources (text form).
    pub resources: String,
    /// `LAUNCHED` or `DECLINED`.
    pub outcome: String,
    /// Steps launched from it.
    pub used_by: Vec<String>,
    /// Why each step that was tried did not fit (`STEP: stage: reason`), or why nothing was tried.
    pub reasons: Vec<String>,
}

impl ServiceCore {
    /// Placements of every instance that holds (or will come back to) an agent.
    fn placements(&self) -> Vec<Placement> {
        let mut seen = BTreeSet::new();
        let mut out = Vec::new();
        for r in self.tasks.values() {
            let in_spec = self.spec.pod(&r.pod).is_some_and(|p| r.index < p.count);
            let goal = self.goal(&r.pod, &r.task);
            let holds = !is_terminal(&r.state)
                || (in_spec && !r.permanent_failure && goal == Some(Goal::Running));
            if holds && !r.agent_id.is_empty() && seen.insert((r.pod.clone(), r.index)) {
                out.push(Placement {
                    pod: r.pod.clone(),
                    index: r.index,
                    agent_id: r.agent_id.clone(),
                    hostname: r.hostname.clone(),
                    attributes: r.attributes.clone(),
                });
            }
        }
        out
    }

    /// Where the step's instance must go, if anywhere; lets a pin expire after the timeout.
    fn pin_for(
        &mut self,
        now: u64,
        key: &str,
        step: &Step,
        launch: &[String],
    ) -> Option<(String, String)> {
        let recs: Vec<TaskRecord> = self
            .tasks
            .values()
            .filter(|r| r.pod == step.pod && r.index == step.index && !r.agent_id.is_empty())
            .cloned()
            .collect();
        if let Some(r) = recs
            .iter()
            .find(|r| !is_terminal(&r.state) && !launch.contains(&r.task))
        {
            return Some((r.agent_id.clone(), format!("{} runs there", r.name)));
        }
        // A start-first replacement goes wherever it fits; the old task still runs.
        if recs
            .iter()
            .any(|r| !is_terminal(&r.state) && launch.contains(&r.task))
        {
            return None;
        }
        let prev = recs.iter().find(|r| !r.permanent_failure)?;
        let waiting = *self.waiting_since.entry(key.to_string()).or_insert(now);
        let since = self
            .ended_at
            .get(&step.instance())
            .copied()
            .unwrap_or(waiting);
        if now.saturating_sub(since) >= self.cfg.permanent_after_ms {
            for mut r in recs {
                r.permanent_failure = true;
                if self.store.put_task(&r).is_ok() {
                    self.tasks.insert(r.name.clone(), r);
                }
            }
            return None;
        }
        Some((
            prev.agent_id.clone(),
            format!(
                "restart in place; may move after {}s",
                (self
                    .cfg
                    .permanent_after_ms
                    .saturating_sub(now.saturating_sub(since)))
                    / 1000
            ),
        ))
    }

    /// Handles an OFFERS event; actions go to the outbox.
    pub fn handle_offers(&mut self, now: u64, offers: &[v1::Offer]) -> Result<(), CoreError> {
        self.now = self.now.max(now);
        if self.uninstalling {
            for o in offers {
                let res = Resources::from_proto(&o.resources).unwrap_or_default();
                let mut record = OfferRecord {
                    at_ms: now,
                    offer_id: o.id.clone(),
                    agent_id: o.agent_id.clone(),
                    hostname: o.hostname.clone(),
                    resources: res.to_string(),
                    outcome: "DECLINED".into(),
                    used_by: Vec::new(),
                    reasons: Vec::new(),
                };
                if !self.release_unwanted(o, &res, &mut record)? {
                    record
                        .reasons
                        .push("uninstalling: nothing of ours to release here yet".into());
                    // Reservations of tasks still being killed come back in later offers.
                    let refuse = if self.ledger().is_empty() {
                        self.cfg.refuse_idle_secs
                    } else {
                        self.cfg.refuse_pending_secs
                    };
                    self.decline(o, record, refuse);
                }
            }
            self.refresh(now);
            self.update_suppression();
            return Ok(());
        }
        let mut cands = self.launch_candidates();
        let mut placements = self.placements();
        for o in offers {
            let mut record = OfferRecord {
                at_ms: now,
                offer_id: o.id.clone(),
                agent_id: o.agent_id.clone(),
                hostname: o.hostname.clone(),
                resources: String::new(),
                outcome: "DECLINED".into(),
                used_by: Vec::new(),
                reasons: Vec::new(),
            };
            let mut remaining = match Resources::from_proto(&o.resources) {
                Ok(r) => r,
                Err(e) => {
                    record.reasons.push(format!("unreadable resources: {e}"));
                    self.decline(o, record, self.cfg.refuse_idle_secs);
                    continue;
                }
            };
            record.resources = remaining.to_string();
            if self.release_unwanted(o, &remaining, &mut record)? {
                continue;
            }
            let attrs: Vec<(String, String)> = o
                .attributes
                .iter()
                .map(|a| (a.name.clone(), a.value.clone()))
                .collect();
            if cands.is_empty() {
                record
                    .reasons
                    .push("nothing to launch: no step waits for an offer".to_string());
            }
            let mut ops = Vec::new();
            let mut launched = Vec::new();
            let mut used = Vec::new();
            for (ci, (pi, r, launch)) in cands.iter().enumerate() {
                let Some(step) = self.plans[*pi].step(*r).cloned() else {
                    continue;
                };
                let Some(pod) = self.spec.pod(&step.pod).cloned() else {
                    continue;
                };
                let key = format!("{}/{}", self.plans[*pi].name, step.name);
                let pinned = self.pin_for(now, &key, &step, launch);
                let req = StepRequest {
                    tag: self.tag(&step.pod, step.index),
                    step: step.name.clone(),
                    pod_name: &step.pod,
                    index: step.index,
                    pod: &pod,
                    tasks: launch.clone(),
                    pinned,
                };
                let view = OfferView {
                    agent: AgentView {
                        agent_id: &o.agent_id,
                        hostname: &o.hostname,
                        attributes: &attrs,
                    },
                    remaining: &remaining,
                };
                match evaluate(&self.eval, &view, &req, &placements) {
                    Ok(m) => {
                        let infos = self.build_launch(now, o, &attrs, &step, &m)?;
                        remaining.subtract(&m.consumed);
                        ops.extend(m.operations.clone());
                        launched.extend(infos);
                        placements.push(Placement {
                            pod: step.pod.clone(),
                            index: step.index,
                            agent_id: o.agent_id.clone(),
                            hostname: o.hostname.clone(),
                            attributes: attrs.clone(),
                        });
                        record.used_by.push(step.name.clone());
                        self.waiting_since.remove(&key);
                        self.declines.remove(&key);
                        used.push(ci);
                    }
                    Err(reason) => {
                        record.reasons.push(format!("{}: {reason}", step.name));
                        self.waiting_since.entry(key.clone()).or_insert(now);
                        let decline = Decline {
                            offer_id: o.id.clone(),
                            agent_id: o.agent_id.clone(),
                            hostname: o.hostname.clone(),
                            reason,
                            have: ["cpus", "mem", "disk"].map(|r| remaining.scalar_milli(r)),
                            need: need_of(&pod, launch),
                        };
                        let window = self.declines.entry(key).or_default();
                        remember(window, decline);
                        let message = summarize(window);
                        if let Some(s) = self.plans[*pi].step_mut(*r) {
                            s.message = message;
                        }
                    }
                }
            }
            for ci in used.into_iter().rev() {
                cands.remove(ci);
            }
            if launched.is_empty() {
                let refuse = if cands.is_empty() {
                    self.cfg.refuse_idle_secs
                } else {
                    self.cfg.refuse_pending_secs
                };
                self.decline(o, record, refuse);
            } else {
                let names: Vec<String> = launched.iter().map(|t| t.name.clone()).collect();
                ops.push(crate::driver::launch_operation(launched));
                record.outcome = "LAUNCHED".into();
                self.log_offer(record);
                self.outbox.push(Action::Accept {
                    offer_ids: vec![o.id.clone()],
                    operations: ops,
                    refuse_seconds: self.cfg.refuse_pending_secs,
                    tasks: names,
                });
            }
        }
        self.refresh(now);
        self.update_suppression();
        Ok(())
    }

    fn decline(&mut self, o: &v1::Offer, record: OfferRecord, refuse: f64) {
        self.log_offer(record);
        self.outbox.push(Action::Decline {
            offer_ids: vec![o.id.clone()],
            refuse_seconds: refuse,
        });
    }

    fn log_offer(&mut self, record: OfferRecord) {
        if self.offers.len() >= OFFER_LOG {
            self.offers.pop_front();
        }
        self.offers.push_back(record);
    }

    /// The principal tagging an instance's reservations: `SERVICE.POD-INDEX`, under the
    /// framework's own principal when it authenticates (`PRINCIPAL/SERVICE.POD-INDEX`).
    pub(super) fn tag(&self, pod: &str, index: u32) -> String {
        format!("{}{pod}-{index}", self.tag_prefix())
    }

    /// What every tag of this service starts with.
    fn tag_prefix(&self) -> String {
        match &self.principal {
            Some(p) => format!("{p}/{}.", self.spec.name),
            None => format!("{}.", self.spec.name),
        }
    }

    /// Reservations made from now on are tagged under `principal` (the framework's
    /// authenticated principal; None: plain `SERVICE.POD-INDEX` tags). An authenticated
    /// framework may only reserve as itself or a sub-principal of itself (`PRINCIPAL/…`).
    pub fn set_reservation_principal(&mut self, principal: Option<String>) {
        self.principal = principal.filter(|p| !p.is_empty());
    }

    /// Tags whose reservations on `agent` are still wanted (instances that may come back).
    pub(super) fn wanted_tags(&self, agent: &str) -> BTreeSet<String> {
        if self.uninstalling {
            return BTreeSet::new();
        }
        self.tasks
            .values()
            .filter(|r| r.agent_id == agent && !r.permanent_failure)
            .filter(|r| self.spec.pod(&r.pod).is_some_and(|p| r.index < p.count))
            .map(|r| self.tag(&r.pod, r.index))
            .collect()
    }

    /// The agent → tags ledger of reservations made (persisted).
    pub(super) fn ledger(&self) -> BTreeMap<String, BTreeSet<String>> {
        self.store
            .meta("reservations")
            .ok()
            .flatten()
            .and_then(|j| serde_json::from_str(&j).ok())
            .unwrap_or_default()
    }

    pub(super) fn set_ledger(
        &self,
        l: &BTreeMap<String, BTreeSet<String>>,
    ) -> Result<(), CoreError> {
        let json = serde_json::to_string(l)
            .map_err(|e| CoreError::Request(format!("cannot encode the ledger: {e}")))?;
        Ok(self.store.set_meta("reservations", &json)?)
    }

    /// Gives back (DESTROY + UNRESERVE) this service's reservations in the offer that no
    /// instance wants any more; true when the offer was used for that.
    fn release_unwanted(
        &mut self,
        o: &v1::Offer,
        res: &Resources,
        record: &mut OfferRecord,
    ) -> Result<bool, CoreError> {
        let prefix = self.tag_prefix();
        let wanted = self.wanted_tags(&o.agent_id);
        // What each instance reserved on this agent, from its task records. An offer may hold
        // only part of it (a task still being killed, or its resources not yet recovered):
        // releasing that part would drop the tag from the ledger and leak the rest, so a tag
        // is released only when the offer holds all of it (and none of its tasks is alive).
        let mut expected: BTreeMap<String, Resources> = BTreeMap::new();
        let mut busy: BTreeSet<String> = BTreeSet::new();
        for r in self.tasks.values().filter(|r| r.agent_id == o.agent_id) {
            let tag = self.tag(&r.pod, r.index);
            if !is_terminal(&r.state) {
                busy.insert(tag.clone());
            }
            if let Ok(x) = Resources::parse(&r.reserved) {
                expected.entry(tag).or_default().add(&x);
            }
        }
        let role = self.spec.role.clone();
        let principal_of = |k: &proffer_proto::resources::ResourceKey| match &k.reservation {
            proffer_proto::resources::Reservation::Dynamic { principal }
                if k.role == role && principal.starts_with(&prefix) =>
            {
                Some(principal.clone())
            }
            _ => None,
        };
        let complete: BTreeSet<String> = res
            .iter()
            .filter_map(|(k, _)| principal_of(k))
            .filter(|t| !wanted.contains(t) && !busy.contains(t))
            .filter(|t| {
                let offered = res.filtered(|k| principal_of(k).as_deref() == Some(t.as_str()));
                expected.get(t).is_none_or(|e| offered.contains(e))
            })
            .collect();
        let unwanted = res.filtered(|k| principal_of(k).is_some_and(|t| complete.contains(&t)));
        let released_tags: BTreeSet<String> = unwanted
            .iter()
            .filter_map(|(k, _)| match &k.reservation {
                proffer_proto::resources::Reservation::Dynamic { principal } => {
                    Some(principal.clone())
                }
                _ => None,
            })
            .collect();
        if unwanted.is_empty() {
            return Ok(false);
        }
        let volumes = unwanted.filtered(|k| k.volume.is_some());
        let mut ops = Vec::new();
        if !volumes.is_empty() {
            ops.push(v1::Operation {
                op: Some(v1::operation::Op::Destroy(v1::DestroyVolume {
                    volumes: volumes.to_proto(),
                })),
            });
        }
        let plain = unwanted.without_volumes();
        ops.push(v1::Operation {
            op: Some(v1::operation::Op::Unreserve(v1::Unreserve {
                resources: plain.to_proto(),
            })),
        });
        record.outcome = "RELEASED".into();
        record.used_by.push(format!("destroy/unreserve {unwanted}"));
        let rec = std::mem::replace(
            record,
            OfferRecord {
                at_ms: 0,
                offer_id: String::new(),
                agent_id: String::new(),
                hostname: String::new(),
                resources: String::new(),
                outcome: String::new(),
                used_by: Vec::new(),
                reasons: Vec::new(),
            },
        );
        self.log_offer(rec);
        self.outbox.push(Action::Accept {
            offer_ids: vec![o.id.clone()],
            operations: ops,
            refuse_seconds: 0.0,
            tasks: Vec::new(),
        });
        let mut ledger = self.ledger();
        if let Some(tags) = ledger.get_mut(&o.agent_id) {
            tags.retain(|t| !released_tags.contains(t));
            if tags.is_empty() {
                ledger.remove(&o.agent_id);
            }
        }
        self.set_ledger(&ledger)?;
        Ok(true)
    }

    /// Builds the TaskInfos of a matched step and writes their records (state PREPARED) first.
    fn build_launch(
        &mut self,
        now: u64,
        o: &v1::Offer,
        attrs: &[(String, String)],
        step: &Step,
        m: &Matched,
    ) -> Result<Vec<v1::TaskInfo>, CoreError> {
        let Some(pod) = self.spec.pod(&step.pod).cloned() else {
            return Ok(Vec::new());
        };
        let hash = config_hash(&self.spec, &step.pod);
        let mut out = Vec::new();
        for tr in &m.tasks {
            let Some(spec) = pod.task(&tr.task) else {
                continue;
            };
            let name = format!("{}-{}-{}", step.pod, step.index, tr.task);
            let vars = builtins(
                &self.spec.name,
                &self.cfg.framework_host,
                &self.spec.role,
                &step.pod,
                step.index,
                &tr.task,
            );
            let render_err = |what: &str, e: String| {
                CoreError::Request(format!("{name}: cannot render {what}: {e}"))
            };
            let mut cmd = render(&spec.cmd, &vars).map_err(|e| render_err("cmd", e))?;
            if !m.sandbox_volumes.is_empty() {
                cmd = format!("mkdir -p {} && {cmd}", m.sandbox_volumes.join(" "));
            }
            let mut env: BTreeMap<String, String> = BTreeMap::new();
            for k in [
                "POD_INDEX",
                "POD_NAME",
                "TASK_NAME",
                "FRAMEWORK_NAME",
                "FRAMEWORK_HOST",
            ] {
                if let Some(v) = vars.get(k) {
                    env.insert(k.to_string(), v.clone());
                }
            }
            for (k, v) in &tr.ports {
                env.insert(k.clone(), v.to_string());
            }
            for (k, v) in &spec.env {
                env.insert(k.clone(), render(v, &vars).map_err(|e| render_err(k, e))?);
            }
            let env_for_checks = env.clone();
            let mut uris = Vec::new();
            for u in &spec.uris {
                uris.push(v1::Uri {
                    value: render(u, &vars).map_err(|e| render_err("uri", e))?,
                    ..Default::default()
                });
            }
            // A start-first replacement: the old task keeps running under a retired name.
            self.retire(&name)?;
            let prev = self.tasks.get(&name);
            let launches = prev.map_or(0, |r| r.launches) + 1;
            let permanent = prev.is_some_and(|r| r.permanent_failure);
            let _ = permanent;
            let task_id = format!("{}.{name}__{launches}-{now:x}", self.spec.name);
            let reserved = if self.eval.reservations {
                tr.resources.to_string()
            } else {
                String::new()
            };
            let rec = TaskRecord {
                name: name.clone(),
                task_id: task_id.clone(),
                pod: step.pod.clone(),
                index: step.index,
                task: tr.task.clone(),
                agent_id: o.agent_id.clone(),
                hostname: o.hostname.clone(),
                attributes: attrs.to_vec(),
                state: PREPARED.to_string(),
                message: String::new(),
                config: hash.clone(),
                ready: false,
                launches,
                resources: tr.resources.to_string(),
                ports: tr.ports.clone(),
                reserved,
                permanent_failure: false,
            };
            self.store.put_task(&rec)?;
            self.tasks.insert(name.clone(), rec);
            self.ended_at.remove(&step.instance());
            if self.eval.reservations {
                let mut ledger = self.ledger();
                ledger
                    .entry(o.agent_id.clone())
                    .or_default()
                    .insert(self.tag(&step.pod, step.index));
                self.set_ledger(&ledger)?;
            }
            let mut labels = std::collections::HashMap::new();
            labels.insert("proffer.service/pod".to_string(), step.instance());
            labels.insert("proffer.service/config".to_string(), hash.clone());
            out.push(v1::TaskInfo {
                name,
                task_id,
                agent_id: o.agent_id.clone(),
                resources: tr.resources.to_proto(),
                command: Some(v1::CommandInfo {
                    value: cmd,
                    shell: true,
                    environment: env.clone().into_iter().collect(),
                    uris,
                    ..Default::default()
                }),
                kill_grace_period_ms: spec
                    .kill_grace_period
                    .map_or(0, |s| (s * 1000.0).round() as u64),
                labels,
                health_check: spec
                    .health_check
                    .as_ref()
                    .map(|c| check_proto(c, &tr.ports, spec, &vars, &env_for_checks)),
                readiness_check: spec
                    .readiness_check
                    .as_ref()
                    .map(|c| check_proto(c, &tr.ports, spec, &vars, &env_for_checks)),
                container: spec.image.as_ref().map(|image| v1::ContainerInfo {
                    image: image.clone(),
                    image_sha256: String::new(),
                }),
                ..Default::default()
            });
        }
        Ok(out)
    }

    /// The master accepted (`Ok`) or refused (`Err`) the launch of `tasks`.
    pub fn accept_result(
        &mut self,
        now: u64,
        tasks: &[String],
        result: Result<(), String>,
    ) -> Result<(), CoreError> {
        for n in tasks {
            let Some(r) = self.tasks.get_mut(n) else {
                continue;
            };
            if r.state != PREPARED {
                continue; // a status update already arrived
            }
            match &result {
                Ok(()) => r.state = "TASK_STAGING".into(),
                Err(e) => {
                    r.state = "TASK_ERROR".into();
                    r.message = format!("accept failed: {e}");
                }
            }
            let r = r.clone();
            self.store.put_task(&r)?;
            if result.is_err() {
                // A refused launch is retried with the same back-off as a crash.
                let instance = format!("{}-{}", r.pod, r.index);
                let (k, _) = self.backoff.get(&instance).copied().unwrap_or((0, 0));
                let delay = (500u64 << k.min(6)).min(30_000);
                self.backoff.insert(instance, (k + 1, now + delay));
            }
        }
        if let Err(e) = &result {
            for p in &mut self.plans {
                for ph in &mut p.phases {
                    for s in &mut ph.steps {
                        if s.tasks
                            .iter()
                            .any(|t| tasks.contains(&format!("{}-{}-{t}", s.pod, s.index)))
                        {
                            s.message = format!("the master refused the launch: {e}; retrying");
                        }
                    }
                }
            }
        }
        self.refresh(now);
        self.update_suppression();
        Ok(())
    }
}

/// What launching `tasks` of `pod` asks of cpus, mem and disk (milli-units).
fn need_of(pod: &crate::service::spec::PodSpec, tasks: &[String]) -> [i64; 3] {
    let mut need = [0i64; 3];
    for t in tasks.iter().filter_map(|t| pod.task(t)) {
        for (slot, (name, v)) in
            need.iter_mut()
                .zip([("cpus", t.cpus), ("mem", t.memory), ("disk", t.disk)])
        {
            *slot += proffer_proto::resources::to_milli(name, v).unwrap_or(0);
        }
    }
    need
}

/// The protocol form of a check; HTTP checks name one of the task's ports.
fn check_proto(
    c: &crate::service::spec::CheckSpec,
    ports: &[(String, u64)],
    task: &crate::service::spec::TaskSpec,
    vars: &BTreeMap<String, String>,
    env: &BTreeMap<String, String>,
) -> v1::HealthCheck {
    use v1::health_check::CheckType;
    let ms = |s: f64| Some((s * 1000.0).round() as u64);
    let mut hc = v1::HealthCheck {
        delay_ms: ms(c.delay),
        interval_ms: ms(c.interval),
        timeout_ms: ms(c.timeout),
        consecutive_failures: Some(c.max_consecutive_failures),
        grace_period_ms: ms(c.grace_period),
        ..Default::default()
    };
    if let Some(cmd) = &c.cmd {
        hc.r#type = CheckType::Command as i32;
        hc.command = Some(v1::CommandInfo {
            value: render(cmd, vars).unwrap_or_else(|_| cmd.clone()),
            shell: true,
            environment: env.clone().into_iter().collect(),
            ..Default::default()
        });
    } else if let Some(h) = &c.http {
        hc.r#type = CheckType::Http as i32;
        let env_name = task
            .ports
            .iter()
            .find(|(n, _)| *n == h.port)
            .map(|(n, p)| crate::service::validate::port_env(n, p.env.as_deref()));
        let port = ports
            .iter()
            .find(|(e, _)| Some(e) == env_name.as_ref())
            .map_or(0, |(_, p)| *p);
        hc.port = u32::try_from(port).unwrap_or(0);
        hc.path = h.path.clone();
    }
    hc
}
