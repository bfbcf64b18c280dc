//! The web UI test's cluster: a master and two agents (`proffer` processes) whose HTTP
//! endpoints are where they say they are, optionally with authentication and a sandbox ACL, and
//! a framework (SDK driver) with running, finished and failed tasks.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use proffer_proto::Resources;
use proffer_proto::auth::Credential;
use proffer_proto::v1::{self, TaskState, event::Event};
use proffer_sdk::driver::{Driver, DriverConfig, DriverEvent, EventStream, command_task};
use proffer_tests::procs::{Proc, free_port, wait_for};
use serde_json::Value;

pub(crate) const AGENT_RES: &str = "cpus:4;mem:4096;disk:1000;ports:[31000-31099]";
pub(crate) const LIMIT: Duration = Duration::from_secs(60);
/// A name that is markup: the UI must show it as text.
pub(crate) const XSS_NAME: &str = "<img src=x onerror=window.__xss=1>";
/// In every long task's command line, so leftovers can be found and stopped (one per test).
pub(crate) const MARKER: &str = "webui-e2e-7d41";
pub(crate) const MARKER_SECURED: &str = "webui-e2e-secured-5c2e";
/// The principals of the secured cluster: `web` may read sandboxes, `eve` may not.
pub(crate) const CREDENTIALS: &str = r#"{"credentials": [
  {"principal": "web", "secret": "web-secret"}, {"principal": "eve", "secret": "eve-secret"}]}"#;
pub(crate) const SANDBOX_ACLS: &str = r#"{"access_sandboxes": [
  {"principals": {"values": ["web"]}, "users": {"type": "ANY"}},
  {"principals": {"type": "ANY"}, "users": {"type": "NONE"}}]}"#;
pub(crate) const STDOUT_TEXT: &str = "hello from the web ui test";
pub(crate) const STDERR_TEXT: &str = "a line on stderr";

/// The tasks the framework launches: (id, name, command).
pub(crate) fn task_specs(marker: &str) -> Vec<(&'static str, String, String)> {
    vec![
        (
            "sleeper",
            "sleeper".into(),
            // Not `exec`: the shell stays, its command line carries the marker, and killing it
            // at the end (`stop_leftovers`) ends the task (`exec sleep` left an hour's sleep).
            format!("sleep 3600; : {marker}"),
        ),
        (
            "ticker",
            "ticker".into(),
            format!("i=0; while true; do i=$((i+1)); echo tick $i; sleep 0.2; done # {marker}"),
        ),
        (
            "echo",
            "echo".into(),
            format!("echo '{STDOUT_TEXT}'; echo '{STDERR_TEXT}' >&2"),
        ),
        ("fails", "fails".into(), "echo failing >&2; exit 3".into()),
        ("xss", XSS_NAME.into(), "echo xss".into()),
    ]
}

/// A master and two agents serving their HTTP endpoint at the address they advertise.
pub(crate) struct UiCluster {
    pub(crate) master: String,
    /// The `authorization` header value the test's own requests carry (secured cluster).
    pub(crate) auth: Option<String>,
    _procs: Vec<Proc>,
    pub(crate) dir: tempfile::TempDir,
}

/// `authorization` of `principal` with secret `<principal>-secret`.
pub(crate) fn basic(principal: &str) -> Result<String> {
    Ok(Credential::basic(principal, format!("{principal}-secret"))?.authorization())
}

impl UiCluster {
    /// Starts the cluster; `secured`: operator reads on the master and the agents' file API
    /// need a principal ([`CREDENTIALS`]) and the agents allow only `web` to read sandboxes.
    pub(crate) fn start(secured: bool) -> Result<UiCluster> {
        let dir = tempfile::tempdir()?;
        let path = |name: &str| dir.path().join(name).to_string_lossy().to_string();
        let (creds, acls) = (path("credentials.json"), path("acls.json"));
        std::fs::write(&creds, CREDENTIALS)?;
        std::fs::write(&acls, SANDBOX_ACLS)?;
        let master = format!("127.0.0.1:{}", free_port()?);
        let work = path("master");
        let mut args = vec!["master", "--listen", &master, "--work-dir", &work];
        args.extend(["--allocation-interval", "100ms"]);
        if secured {
            args.extend(["--credentials", &creds, "--authenticate-http-readonly"]);
        }
        let mut procs = vec![Proc::start("master", &args, dir.path())?];
        wait_for("the master", LIMIT, || {
            get(&master, "/health", None)
                .ok()
                .filter(|(s, _)| s.contains("200"))
        })?;
        for i in 0..2 {
            let port = free_port()?.to_string();
            let http = format!("127.0.0.1:{port}");
            let work = path(&format!("agent{i}"));
            std::fs::create_dir_all(&work)?;
            let mut args = vec!["agent", "--master", &master, "--work-dir", &work];
            args.extend(["--resources", AGENT_RES, "--hostname", "127.0.0.1"]);
            args.extend([
                "--port",
                &port,
                "--http",
                &http,
                "--gc-max-disk-fraction",
                "1",
            ]);
            if secured {
                args.extend(["--credentials", &creds, "--authenticate-http-readonly"]);
                args.extend(["--acls", &acls]);
            }
            procs.push(Proc::start(&format!("agent{i}"), &args, dir.path())?);
        }
        let cluster = UiCluster {
            master,
            auth: secured.then(|| basic("web")).transpose()?,
            _procs: procs,
            dir,
        };
        wait_for("two agents", LIMIT, || {
            let s = cluster.json("/state").ok()?;
            let n = s["agents"]
                .as_array()?
                .iter()
                .filter(|a| a["connected"] == true)
                .count();
            (n == 2).then_some(())
        })?;
        Ok(cluster)
    }

    /// `GET path` on the master as JSON (failing on a non-200 answer).
    pub(crate) fn json(&self, path: &str) -> Result<Value> {
        let (status, body) = get(&self.master, path, self.auth.as_deref())?;
        if !status.contains(" 200 ") {
            bail!("GET {path}: {status}: {body}");
        }
        serde_json::from_str(&body).with_context(|| format!("GET {path}: {body}"))
    }

    pub(crate) fn url(&self, route: &str) -> String {
        format!("http://{}/{route}", self.master)
    }

    pub(crate) fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("{name}.log"))).unwrap_or_default()
    }
}

/// A plain HTTP/1.1 GET of `path` on `addr` with an `authorization` header: (status line, body).
pub(crate) fn get(addr: &str, path: &str, auth: Option<&str>) -> Result<(String, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let auth = auth
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n"
    )?;
    let mut raw = String::new();
    stream.read_to_string(&mut raw)?;
    let (head, body) = raw
        .split_once("\r\n\r\n")
        .context("no end of the HTTP head")?;
    Ok((
        head.lines().next().unwrap_or_default().to_string(),
        body.to_string(),
    ))
}

/// `POST path` with a JSON body on `addr`; fails unless 200.
pub(crate) fn http_post(addr: &str, path: &str, body: &Value) -> Result<()> {
    use std::io::{Read, Write};
    let body = body.to_string();
    let mut stream = std::net::TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    if !answer.starts_with("HTTP/1.1 200") {
        bail!("POST {path}: {answer}");
    }
    Ok(())
}

/// Subscribes a framework, launches [`task_specs`] and returns once the long tasks run and the
/// others ended; a background task then acknowledges updates and holds later offers (so the
/// UI has outstanding offers to show).
pub(crate) async fn launch(
    master: &str,
    marker: &str,
) -> Result<(Driver, String, tokio::task::JoinHandle<()>)> {
    let info = v1::FrameworkInfo {
        name: "web-ui-e2e".into(),
        ..Default::default()
    };
    let (driver, mut events) = Driver::subscribe(DriverConfig::new(master, info)).await?;
    let framework_id = driver.framework_id().to_string();
    let mut pending = task_specs(marker);
    let mut running = std::collections::HashSet::new();
    let mut ended = std::collections::HashSet::new();
    let deadline = tokio::time::Instant::now() + LIMIT;
    while running.len() < 2 || ended.len() < 3 {
        match next(&mut events, deadline).await? {
            Event::Offers(o) => {
                for offer in o.offers {
                    if pending.is_empty() {
                        continue; // held: an outstanding offer
                    }
                    let res = Resources::parse("cpus:0.5;mem:64")?;
                    let tasks: Vec<_> = pending
                        .drain(..)
                        .map(|(id, name, cmd)| command_task(id, &name, &offer.agent_id, &cmd, &res))
                        .collect();
                    driver.launch(vec![offer.id], tasks, None).await?;
                }
            }
            Event::Update(u) => {
                let s = u.status.context("update without status")?;
                driver.acknowledge(&s).await?;
                let state = TaskState::try_from(s.state)?;
                if state == TaskState::TaskRunning && ["sleeper", "ticker"].contains(&&*s.task_id) {
                    running.insert(s.task_id.clone());
                } else if state.is_terminal() {
                    if ["sleeper", "ticker"].contains(&&*s.task_id) {
                        bail!("a long task ended: {s:?}");
                    }
                    ended.insert(s.task_id.clone());
                }
            }
            _ => {}
        }
    }
    let acker = driver.clone();
    let background = tokio::spawn(async move {
        while let Some(e) = events.next().await {
            if let DriverEvent::Event(v1::Event {
                event: Some(Event::Update(u)),
                ..
            }) = e
                && let Some(s) = u.status
            {
                let _ = acker.acknowledge(&s).await;
            }
        }
    });
    Ok((driver, framework_id, background))
}

pub(crate) async fn next(
    events: &mut EventStream,
    deadline: tokio::time::Instant,
) -> Result<Event> {
    loop {
        let e = tokio::time::timeout_at(deadline, events.next())
            .await
            .context("timed out waiting for a framework event")?
            .context("the framework's event stream ended")?;
        if let DriverEvent::Event(v1::Event { event: Some(e), .. }) = e {
            return Ok(e);
        }
    }
}

/// Stops the long tasks' processes (the framework's teardown normally has).
pub(crate) fn stop_leftovers(marker: &str) {
    let _ = std::process::Command::new("pkill")
        .args(["-f", marker])
        .status();
}

/// Starts a cluster, launches the tasks, runs `body` on a blocking thread, and cleans up
/// (printing the master's log when `body` failed).
pub(crate) async fn with_cluster(
    secured: bool,
    marker: &str,
    body: impl FnOnce(&UiCluster, &str) -> Result<()>,
) -> Result<()> {
    stop_leftovers(marker);
    let cluster = tokio::task::block_in_place(|| UiCluster::start(secured))?;
    let (driver, framework_id, background) = launch(&cluster.master, marker).await?;
    let result = tokio::task::block_in_place(|| body(&cluster, &framework_id));
    let _ = driver.teardown().await;
    background.abort();
    stop_leftovers(marker);
    if result.is_err() {
        eprintln!("master log:\n{}", cluster.log("master"));
    }
    result
}
