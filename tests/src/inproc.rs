//! A real master server and real agents in this process, on loopback gRPC: for end-to-end
//! tests that need no child processes.

use std::time::Duration;

use anyhow::{Result, bail};
use proffer_agent::{AgentConfig, AgentError};
use proffer_master::core::MasterConfig;
use proffer_master::server::{ServerConfig, ServerError, serve};
use proffer_proto::Resources;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A running master and agents; [`InProcess::stop`] shuts them down.
pub struct InProcess {
    /// The master's address (`HOST:PORT`).
    pub addr: String,
    /// Each agent's work directory, in start order (agent `i` is `agent-i`).
    pub dirs: Vec<tempfile::TempDir>,
    cancel: CancellationToken,
    server: JoinHandle<Result<(), ServerError>>,
    agents: Vec<JoinHandle<Result<(), AgentError>>>,
}

impl InProcess {
    /// Starts a master (allocation every 100 ms) and one agent per entry of `agents` (its
    /// resources in text form), with a 1 s status-update retry and fast reconnects.
    pub async fn start(agents: &[&str]) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?.to_string();
        let cancel = CancellationToken::new();
        let master = MasterConfig {
            allocation_interval_ms: 100,
            ..MasterConfig::default()
        };
        let server = tokio::spawn(serve(listener, ServerConfig::new(master), cancel.clone()));
        let mut dirs = Vec::new();
        let mut handles = Vec::new();
        for (i, resources) in agents.iter().enumerate() {
            let dir = tempfile::tempdir()?;
            let mut cfg = AgentConfig::new(addr.clone(), dir.path());
            cfg.resources = Some(Resources::parse(resources)?);
            cfg.hostname = format!("agent-{i}");
            cfg.status_retry_initial = Duration::from_secs(1);
            cfg.reconnect_initial = Duration::from_millis(50);
            handles.push(tokio::spawn(proffer_agent::run(cfg, cancel.child_token())));
            dirs.push(dir);
        }
        Ok(InProcess {
            addr,
            dirs,
            cancel,
            server,
            agents: handles,
        })
    }

    /// Stops the agents and the master; each must end cleanly within 30 s.
    pub async fn stop(self) -> Result<()> {
        self.cancel.cancel();
        for a in self.agents {
            match tokio::time::timeout(Duration::from_secs(30), a).await {
                Ok(Ok(Ok(()))) => {}
                other => bail!("agent did not stop cleanly: {other:?}"),
            }
        }
        match tokio::time::timeout(Duration::from_secs(30), self.server).await {
            Ok(Ok(Ok(()))) => {}
            other => bail!("master did not stop cleanly: {other:?}"),
        }
        Ok(())
    }
}
