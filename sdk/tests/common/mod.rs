//! A fake scheduler server for driver and batch tests.
//!
//! It hands out SUBSCRIBED and offers for a fixed set of agents, checks the call header on
//! every call, records all calls, verifies launched task resources lie within the offer, and
//! (by default) answers each launch with STARTING, RUNNING and FINISHED updates carrying uuids.
#![allow(dead_code, missing_docs)]

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use proffer_proto::v1::scheduler_server::{Scheduler, SchedulerServer};
use proffer_proto::{Resources, v1};
use tokio::sync::mpsc;
use tokio_stream::wrappers::{TcpListenerStream, UnboundedReceiverStream};
use tonic::{Code, Request, Response, Status};

pub mod fixtures;

/// When launched tasks end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Completion {
    /// STARTING, RUNNING, then FINISHED (or FAILED) right after the accept.
    Immediate,
    /// Only STARTING and RUNNING; the tasks never end.
    Never,
    /// STARTING and RUNNING; the terminal update is sent on a RECONCILE.
    OnReconcile,
}

#[derive(Debug, Clone)]
pub struct FakeConfig {
    pub agents: Vec<(String, String)>,
    pub fail_tasks: HashSet<String>,
    pub completion: Completion,
    pub accept_error: Option<(Code, String)>,
    pub refuse_subscribe: Option<String>,
    /// Answer `AcknowledgeBatch` with `Unimplemented`, as a master that predates it.
    pub no_ack_batch: bool,
}

impl Default for FakeConfig {
    fn default() -> Self {
        FakeConfig {
            agents: Vec::new(),
            fail_tasks: HashSet::new(),
            completion: Completion::Immediate,
            accept_error: None,
            refuse_subscribe: None,
            no_ack_batch: false,
        }
    }
}

/// One recorded call: its name, the header it carried, and the request.
// A test recorder: an UPDATE_FRAMEWORK's FrameworkInfo by value is fine here.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Call {
    Accept(v1::AcceptRequest),
    Decline(v1::DeclineRequest),
    Revive(v1::ReviveRequest),
    Suppress(v1::SuppressRequest),
    UpdateFramework(v1::UpdateFrameworkRequest),
    Kill(v1::KillRequest),
    Acknowledge(v1::AcknowledgeRequest),
    AcknowledgeBatch(v1::AcknowledgeBatchRequest),
    Reconcile(v1::ReconcileRequest),
    Message(v1::MessageRequest),
    Teardown(v1::TeardownRequest),
}

impl Call {
    pub fn name(&self) -> &'static str {
        match self {
            Call::Accept(_) => "accept",
            Call::Decline(_) => "decline",
            Call::Revive(_) => "revive",
            Call::Suppress(_) => "suppress",
            Call::UpdateFramework(_) => "update_framework",
            Call::Kill(_) => "kill",
            Call::Acknowledge(_) => "acknowledge",
            Call::AcknowledgeBatch(_) => "acknowledge_batch",
            Call::Reconcile(_) => "reconcile",
            Call::Message(_) => "message",
            Call::Teardown(_) => "teardown",
        }
    }

    /// The uuids this call acknowledged (none for a batch the fake refused).
    pub fn acked(&self, refused_batches: bool) -> Vec<Vec<u8>> {
        match self {
            Call::Acknowledge(a) => vec![a.uuid.clone()],
            Call::AcknowledgeBatch(b) if !refused_batches => {
                b.acknowledgements.iter().map(|a| a.uuid.clone()).collect()
            }
            _ => Vec::new(),
        }
    }

    pub fn header(&self) -> Option<v1::CallHeader> {
        match self {
            Call::Accept(r) => r.header.clone(),
            Call::Decline(r) => r.header.clone(),
            Call::Revive(r) => r.header.clone(),
            Call::Suppress(r) => r.header.clone(),
            Call::UpdateFramework(r) => r.header.clone(),
            Call::Kill(r) => r.header.clone(),
            Call::Acknowledge(r) => r.header.clone(),
            Call::AcknowledgeBatch(r) => r.header.clone(),
            Call::Reconcile(r) => r.header.clone(),
            Call::Message(r) => r.header.clone(),
            Call::Teardown(r) => r.header.clone(),
        }
    }
}

#[derive(Debug)]
struct Agent {
    id: String,
    total: Resources,
    used: Resources,
    /// (offer id, resources) of the outstanding offer.
    offer: Option<(String, Resources)>,
    /// Declined (or remainder declined) and nothing changed since.
    filtered: bool,
}

#[derive(Debug)]
struct RunningTask {
    agent: usize,
    resources: Resources,
}

#[derive(Debug, Default)]
pub struct State {
    config: Option<FakeConfig>,
    pub subscribes: Vec<v1::FrameworkInfo>,
    pub calls: Vec<Call>,
    pub bad_headers: Vec<String>,
    pub violations: Vec<String>,
    pub sent_uuids: Vec<Vec<u8>>,
    pub offers_sent: usize,
    /// Offers taken back with RESCIND.
    pub rescinded: Vec<String>,
    pub suppressed: bool,
    header: v1::CallHeader,
    tx: Option<mpsc::UnboundedSender<Result<v1::Event, Status>>>,
    agents: Vec<Agent>,
    tasks: HashMap<String, RunningTask>,
    seq: u64,
}

impl State {
    fn config(&self) -> FakeConfig {
        self.config.clone().unwrap_or_default()
    }

    fn next(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    fn send(&mut self, event: v1::event::Event) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(Ok(v1::Event { event: Some(event) }));
        }
    }

    fn send_offers(&mut self) {
        if self.suppressed || self.tx.is_none() {
            return;
        }
        let mut offers = Vec::new();
        for i in 0..self.agents.len() {
            let a = &self.agents[i];
            if a.offer.is_some() || a.filtered {
                continue;
            }
            let Some(free) = a.total.checked_sub(&a.used) else {
                continue;
            };
            if free.is_empty() {
                continue;
            }
            let id = format!("offer-{}", self.next());
            let a = &mut self.agents[i];
            a.offer = Some((id.clone(), free.clone()));
            offers.push(v1::Offer {
                id,
                framework_id: self.header.framework_id.clone(),
                agent_id: a.id.clone(),
                hostname: "localhost".into(),
                resources: free.to_proto(),
                ..Default::default()
            });
        }
        if !offers.is_empty() {
            self.offers_sent += offers.len();
            self.send(v1::event::Event::Offers(v1::Offers { offers }));
        }
    }

    fn update(&mut self, task_id: &str, agent_id: &str, state: v1::TaskState) {
        let n = self.next();
        let mut uuid = vec![0u8; 8];
        uuid.extend_from_slice(&n.to_be_bytes());
        self.sent_uuids.push(uuid.clone());
        let status = v1::TaskStatus {
            task_id: task_id.to_string(),
            state: state as i32,
            message: format!("{} from the fake", state.name()),
            source: v1::StatusSource::SourceAgent as i32,
            agent_id: agent_id.to_string(),
            uuid,
            ..Default::default()
        };
        self.send(v1::event::Event::Update(v1::Update {
            status: Some(status),
        }));
        if state.is_terminal()
            && let Some(t) = self.tasks.remove(task_id)
        {
            let a = &mut self.agents[t.agent];
            a.used.subtract(&t.resources);
            a.filtered = false;
        }
    }

    fn finish(&mut self, task_id: &str, agent_id: &str) {
        let state = if self.config().fail_tasks.contains(task_id) {
            v1::TaskState::TaskFailed
        } else {
            v1::TaskState::TaskFinished
        };
        self.update(task_id, agent_id, state);
    }

    /// Records the call and checks its header.
    fn check(&mut self, call: Call) -> Result<(), Status> {
        let header = call.header().unwrap_or_default();
        let name = call.name();
        self.calls.push(call);
        if header != self.header {
            self.bad_headers
                .push(format!("{name}: {header:?} (expected {:?})", self.header));
            return Err(Status::permission_denied(format!(
                "bad call header on {name}"
            )));
        }
        Ok(())
    }

    fn find_offer(&mut self, offer_id: &str) -> Option<(usize, Resources)> {
        let i = self
            .agents
            .iter()
            .position(|a| a.offer.as_ref().is_some_and(|(id, _)| id == offer_id))?;
        let (_, res) = self.agents[i].offer.take()?;
        Some((i, res))
    }

    fn accept(&mut self, req: v1::AcceptRequest) -> Result<(), Status> {
        self.check(Call::Accept(req.clone()))?;
        if let Some((code, message)) = self.config().accept_error {
            return Err(Status::new(code, message));
        }
        let [offer_id] = req.offer_ids.as_slice() else {
            return Err(Status::invalid_argument(
                "the fake takes exactly one offer per accept",
            ));
        };
        let Some((agent, offered)) = self.find_offer(offer_id) else {
            return Err(Status::not_found(format!("unknown offer {offer_id}")));
        };
        let mut tasks = Vec::new();
        for op in &req.operations {
            if let Some(v1::operation::Op::Launch(l)) = &op.op {
                tasks.extend(l.tasks.iter().cloned());
            }
        }
        let mut sum = Resources::new();
        let mut per_task = Vec::new();
        for t in &tasks {
            let r = Resources::from_proto(&t.resources)
                .map_err(|e| Status::invalid_argument(e.to_string()))?;
            if t.agent_id != self.agents[agent].id {
                self.violations
                    .push(format!("task {} on wrong agent {}", t.task_id, t.agent_id));
            }
            sum.add(&r);
            per_task.push(r);
        }
        if !offered.contains(&sum) {
            self.violations
                .push(format!("launch {sum} exceeds offer {offered}"));
            return Err(Status::invalid_argument("task resources exceed the offer"));
        }
        self.agents[agent].used.add(&sum);
        self.agents[agent].filtered = true;
        let agent_id = self.agents[agent].id.clone();
        for (t, r) in tasks.iter().zip(per_task) {
            self.tasks.insert(
                t.task_id.clone(),
                RunningTask {
                    agent,
                    resources: r,
                },
            );
            self.update(&t.task_id, &agent_id, v1::TaskState::TaskStarting);
            self.update(&t.task_id, &agent_id, v1::TaskState::TaskRunning);
            if self.config().completion == Completion::Immediate {
                self.finish(&t.task_id, &agent_id);
            }
        }
        self.send_offers();
        Ok(())
    }
}

/// The fake server handle (cheap to clone).
#[derive(Clone)]
pub struct Fake {
    state: Arc<Mutex<State>>,
    pub addr: SocketAddr,
}

impl Fake {
    /// Starts the fake on 127.0.0.1 with a free port.
    pub async fn start(config: FakeConfig) -> anyhow::Result<Fake> {
        let mut state = State::default();
        for (id, res) in &config.agents {
            state.agents.push(Agent {
                id: id.clone(),
                total: Resources::parse(res)?,
                used: Resources::new(),
                offer: None,
                filtered: false,
            });
        }
        state.config = Some(config);
        let state = Arc::new(Mutex::new(state));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let svc = FakeScheduler {
            state: state.clone(),
        };
        tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(SchedulerServer::new(svc))
                .serve_with_incoming(TcpListenerStream::new(listener))
                .await;
        });
        Ok(Fake { state, addr })
    }

    pub fn master(&self) -> String {
        self.addr.to_string()
    }

    pub fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn calls(&self) -> Vec<Call> {
        self.state().calls.clone()
    }

    pub fn call_names(&self) -> Vec<&'static str> {
        self.state().calls.iter().map(Call::name).collect()
    }

    /// Ends the current event stream (the client sees a clean end of stream).
    pub fn drop_stream(&self) {
        self.state().tx = None;
    }

    /// Rescinds every outstanding offer (RESCIND events), then offers what is free again
    /// under new ids, as a master does when it takes offers back.
    pub fn rescind_outstanding(&self) {
        let mut st = self.state();
        let ids: Vec<String> = st
            .agents
            .iter_mut()
            .filter_map(|a| a.offer.take().map(|(id, _)| id))
            .collect();
        for offer_id in ids {
            st.rescinded.push(offer_id.clone());
            st.send(v1::event::Event::Rescind(v1::Rescind { offer_id }));
        }
        st.send_offers();
    }

    /// Sends an ERROR event on the current stream.
    pub fn send_error(&self, message: &str) {
        self.state().send(v1::event::Event::Error(v1::Error {
            message: message.to_string(),
        }));
    }

    /// Sends any event on the current stream.
    pub fn send(&self, event: v1::event::Event) {
        self.state().send(event);
    }
}

struct FakeScheduler {
    state: Arc<Mutex<State>>,
}

impl FakeScheduler {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

type Reply = Result<Response<v1::CallResponse>, Status>;

fn ok() -> Reply {
    Ok(Response::new(v1::CallResponse {}))
}

#[tonic::async_trait]
impl Scheduler for FakeScheduler {
    type SubscribeStream = UnboundedReceiverStream<Result<v1::Event, Status>>;

    async fn subscribe(
        &self,
        request: Request<v1::SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let info = request.into_inner().framework_info.unwrap_or_default();
        let mut st = self.state();
        st.subscribes.push(info.clone());
        let (tx, rx) = mpsc::unbounded_channel();
        if let Some(message) = st.config().refuse_subscribe {
            let _ = tx.send(Ok(v1::Event {
                event: Some(v1::event::Event::Error(v1::Error { message })),
            }));
            return Ok(Response::new(UnboundedReceiverStream::new(rx)));
        }
        let framework_id = if info.id.is_empty() {
            "fw-1".to_string()
        } else {
            info.id.clone()
        };
        let stream_id = format!("stream-{}", st.subscribes.len());
        st.header = v1::CallHeader {
            framework_id: framework_id.clone(),
            stream_id: stream_id.clone(),
        };
        st.tx = Some(tx);
        st.suppressed = false;
        for a in &mut st.agents {
            a.offer = None;
            a.filtered = false;
        }
        st.send(v1::event::Event::Subscribed(v1::Subscribed {
            framework_id,
            stream_id,
            heartbeat_interval_seconds: 0.0,
            master_id: "fake-master".into(),
        }));
        st.send_offers();
        Ok(Response::new(UnboundedReceiverStream::new(rx)))
    }

    async fn accept(&self, request: Request<v1::AcceptRequest>) -> Reply {
        self.state().accept(request.into_inner())?;
        ok()
    }

    async fn decline(&self, request: Request<v1::DeclineRequest>) -> Reply {
        let req = request.into_inner();
        let mut st = self.state();
        st.check(Call::Decline(req.clone()))?;
        for id in &req.offer_ids {
            match st.find_offer(id) {
                Some((agent, _)) => st.agents[agent].filtered = true,
                None => return Err(Status::not_found(format!("unknown offer {id}"))),
            }
        }
        ok()
    }

    async fn revive(&self, request: Request<v1::ReviveRequest>) -> Reply {
        let mut st = self.state();
        st.check(Call::Revive(request.into_inner()))?;
        st.suppressed = false;
        for a in &mut st.agents {
            a.filtered = false;
        }
        st.send_offers();
        ok()
    }

    async fn accept_inverse_offers(&self, _request: Request<v1::InverseOffersRequest>) -> Reply {
        // The fake master never sends inverse offers.
        ok()
    }

    async fn decline_inverse_offers(&self, _request: Request<v1::InverseOffersRequest>) -> Reply {
        ok()
    }

    async fn suppress(&self, request: Request<v1::SuppressRequest>) -> Reply {
        let mut st = self.state();
        st.check(Call::Suppress(request.into_inner()))?;
        st.suppressed = true;
        ok()
    }

    async fn update_framework(&self, request: Request<v1::UpdateFrameworkRequest>) -> Reply {
        let mut st = self.state();
        st.check(Call::UpdateFramework(request.into_inner()))?;
        ok()
    }

    async fn kill(&self, request: Request<v1::KillRequest>) -> Reply {
        let req = request.into_inner();
        let mut st = self.state();
        st.check(Call::Kill(req.clone()))?;
        if st.tasks.contains_key(&req.task_id) {
            st.update(&req.task_id, &req.agent_id, v1::TaskState::TaskKilled);
        }
        ok()
    }

    async fn acknowledge(&self, request: Request<v1::AcknowledgeRequest>) -> Reply {
        let req = request.into_inner();
        let mut st = self.state();
        st.check(Call::Acknowledge(req.clone()))?;
        if !st.sent_uuids.contains(&req.uuid) {
            st.violations
                .push(format!("ack of unknown uuid for {}", req.task_id));
            return Err(Status::not_found("unknown uuid"));
        }
        ok()
    }

    async fn acknowledge_batch(&self, request: Request<v1::AcknowledgeBatchRequest>) -> Reply {
        let req = request.into_inner();
        let mut st = self.state();
        st.check(Call::AcknowledgeBatch(req.clone()))?;
        if st.config().no_ack_batch {
            return Err(Status::unimplemented("AcknowledgeBatch"));
        }
        for a in &req.acknowledgements {
            if !st.sent_uuids.contains(&a.uuid) {
                st.violations
                    .push(format!("batch ack of unknown uuid for {}", a.task_id));
                return Err(Status::not_found("unknown uuid"));
            }
        }
        ok()
    }

    async fn reconcile(&self, request: Request<v1::ReconcileRequest>) -> Reply {
        let mut st = self.state();
        st.check(Call::Reconcile(request.into_inner()))?;
        if st.config().completion == Completion::OnReconcile {
            let mut running: Vec<(String, String)> = st
                .tasks
                .iter()
                .map(|(id, t)| (id.clone(), st.agents[t.agent].id.clone()))
                .collect();
            running.sort();
            for (task_id, agent_id) in running {
                st.finish(&task_id, &agent_id);
            }
        }
        ok()
    }

    async fn message(&self, request: Request<v1::MessageRequest>) -> Reply {
        self.state().check(Call::Message(request.into_inner()))?;
        ok()
    }

    async fn teardown(&self, request: Request<v1::TeardownRequest>) -> Reply {
        let mut st = self.state();
        st.check(Call::Teardown(request.into_inner()))?;
        st.tx = None;
        ok()
    }
}
