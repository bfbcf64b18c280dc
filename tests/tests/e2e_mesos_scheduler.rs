//! The Mesos v1 scheduler HTTP API (`POST /api/v1/scheduler`) of the real `proffer` binary,
//! driven by clients we did not design around Proffer:
//! - `tests/python/mesos_scheduler_client.py`, a stdlib-only Python client written from
//!   Mesos's published API docs (JSON): subscribe → offers → launch → updates → acknowledge →
//!   TASK_FINISHED → reconcile → teardown;
//! - a raw HTTP/1.1 client speaking protobuf (`application/x-protobuf`) with Mesos's own
//!   generated messages.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use proffer_proto::mesos::v1 as m;
use proffer_proto::mesos::v1::scheduler as ms;
use proffer_proto::prost::Message;
use proffer_tests::procs::{Cluster, state_json};

const AGENT_RES: &str = "cpus:2;mem:1024";
const PATH: &str = "/api/v1/scheduler";

/// `python3`, if installed (the test is skipped with a message otherwise).
fn python3() -> Option<PathBuf> {
    let ok = Command::new("python3")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    ok.then(|| PathBuf::from("python3"))
}

#[test]
fn python_client_runs_a_framework_through_the_mesos_api() -> Result<()> {
    let Some(python) = python3() else {
        println!("SKIPPED: python3 is not installed");
        return Ok(());
    };
    let cluster = Cluster::start(1, AGENT_RES, &["--allocation-interval", "100ms"])?;
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("python/mesos_scheduler_client.py");
    let out = Command::new(python)
        .arg(&script)
        .args([
            "--master",
            &cluster.master,
            "--tasks",
            "3",
            "--timeout",
            "60",
        ])
        .output()
        .context("running the Python client")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "Python client failed:\n{stdout}\n{}\nmaster log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        cluster.log("master")
    );
    let summary: serde_json::Value =
        serde_json::from_str(stdout.trim()).context("the client's summary")?;
    for i in 0..3 {
        let task = format!("py-task-{i}");
        assert_eq!(summary["tasks"][&task], "TASK_FINISHED", "{summary}");
        assert!(
            summary["reconciled"][&task].is_string(),
            "reconciled {task}: {summary}"
        );
    }
    // Each task's RUNNING and FINISHED (at least) came with a uuid and were acknowledged.
    assert!(summary["acknowledged"].as_u64() >= Some(6), "{summary}");
    assert!(summary["events"]["OFFERS"].as_u64() >= Some(1), "{summary}");
    assert_eq!(summary["closed_after_teardown"], true, "{summary}");
    assert_eq!(summary["call_after_teardown"], 403, "{summary}");
    assert!(summary["heartbeat_interval_seconds"].as_f64() > Some(0.0));

    // The master agrees: the tasks finished, the framework is gone.
    let state = state_json(&cluster.master)?;
    let finished = state["completed_tasks"]
        .as_array()
        .context("completed_tasks")?
        .iter()
        .filter(|t| {
            t["id"]
                .as_str()
                .is_some_and(|id| id.starts_with("py-task-"))
                && t["state"] == "TASK_FINISHED"
        })
        .count();
    assert_eq!(finished, 3, "{state}");
    let framework = summary["framework_id"].as_str().context("framework id")?;
    let connected = state["frameworks"]
        .as_array()
        .context("frameworks")?
        .iter()
        .any(|f| f["id"] == framework && f["connected"] == true);
    assert!(!connected, "torn down framework still connected: {state}");
    Ok(())
}

/// A `Read` over an HTTP/1.1 chunked body.
struct Chunked<R> {
    inner: R,
    left: usize,
    done: bool,
}

impl<R: BufRead> Read for Chunked<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.done {
            return Ok(0);
        }
        if self.left == 0 {
            let mut line = String::new();
            self.inner.read_line(&mut line)?;
            let size = usize::from_str_radix(line.trim(), 16)
                .map_err(|e| std::io::Error::other(format!("chunk size {line:?}: {e}")))?;
            if size == 0 {
                self.done = true;
                return Ok(0);
            }
            self.left = size;
        }
        let want = buf.len().min(self.left);
        let n = self.inner.read(&mut buf[..want])?;
        self.left -= n;
        if self.left == 0 {
            let mut crlf = [0u8; 2];
            self.inner.read_exact(&mut crlf)?;
        }
        Ok(n)
    }
}

/// An HTTP answer: the status, the headers (lower-cased names) and the connection positioned
/// at the body.
type Answer = (u16, Vec<(String, String)>, BufReader<TcpStream>);

/// A POST of a protobuf call.
fn post(master: &str, call: &ms::Call, stream_id: Option<&str>) -> Result<Answer> {
    let mut stream = TcpStream::connect(master)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let body = call.encode_to_vec();
    let mut head = format!(
        "POST {PATH} HTTP/1.1\r\nHost: {master}\r\nContent-Type: application/x-protobuf\r\n\
         Accept: application/x-protobuf\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(id) = stream_id {
        head.push_str(&format!("Mesos-Stream-Id: {id}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(&body)?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .context("status line")?
        .parse()?;
    let mut headers = Vec::new();
    loop {
        line.clear();
        reader.read_line(&mut line)?;
        let Some((k, v)) = line.trim_end().split_once(':') else {
            break;
        };
        headers.push((k.to_ascii_lowercase(), v.trim().to_string()));
    }
    Ok((status, headers, reader))
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// A call (not SUBSCRIBE) that must be answered 202.
fn call(master: &str, stream_id: &str, call: ms::Call) -> Result<()> {
    let kind = call.r#type().as_str_name();
    let (status, headers, mut reader) = post(master, &call, Some(stream_id))?;
    if status != 202 {
        let len: usize = header(&headers, "content-length")
            .and_then(|l| l.parse().ok())
            .unwrap_or(0);
        let mut text = vec![0u8; len];
        reader.read_exact(&mut text)?;
        bail!(
            "{kind} answered {status}: {}",
            String::from_utf8_lossy(&text)
        );
    }
    Ok(())
}

/// The next RecordIO record of a protobuf event stream.
fn next_event(body: &mut BufReader<Chunked<BufReader<TcpStream>>>) -> Result<ms::Event> {
    let mut len = Vec::new();
    body.read_until(b'\n', &mut len)?;
    if len.is_empty() {
        bail!("the event stream ended");
    }
    let len: usize = String::from_utf8_lossy(&len).trim().parse()?;
    let mut record = vec![0u8; len];
    body.read_exact(&mut record)?;
    Ok(ms::Event::decode(record.as_slice())?)
}

fn scalar(name: &str, value: f64) -> m::Resource {
    m::Resource {
        name: name.into(),
        r#type: m::value::Type::Scalar as i32,
        scalar: Some(m::value::Scalar { value }),
        ..Default::default()
    }
}

#[test]
fn protobuf_framework_launches_a_task_to_finished() -> Result<()> {
    let cluster = Cluster::start(
        1,
        AGENT_RES,
        &[
            "--allocation-interval",
            "100ms",
            "--max-request-bytes",
            "65536",
        ],
    )?;
    let master = cluster.master.as_str();
    let subscribe = ms::Call {
        r#type: Some(ms::call::Type::Subscribe as i32),
        subscribe: Some(ms::call::Subscribe {
            framework_info: m::FrameworkInfo {
                user: "nobody".into(),
                name: "protobuf-e2e".into(),
                ..Default::default()
            },
            ..Default::default()
        }),
        ..Default::default()
    };
    let (status, headers, reader) = post(master, &subscribe, None)?;
    assert_eq!(status, 200);
    assert_eq!(
        header(&headers, "content-type"),
        Some("application/x-protobuf")
    );
    assert_eq!(header(&headers, "transfer-encoding"), Some("chunked"));
    let stream_id = header(&headers, "mesos-stream-id")
        .context("Mesos-Stream-Id")?
        .to_string();
    let mut events = BufReader::new(Chunked {
        inner: reader,
        left: 0,
        done: false,
    });
    let first = next_event(&mut events)?;
    let framework_id = first.subscribed.context("SUBSCRIBED first")?.framework_id;
    let base = |t: ms::call::Type| ms::Call {
        r#type: Some(t as i32),
        framework_id: Some(framework_id.clone()),
        ..Default::default()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut launched = false;
    loop {
        if Instant::now() > deadline {
            bail!("no TASK_FINISHED within 60 s:\n{}", cluster.log("master"));
        }
        let event = next_event(&mut events)?;
        match event.r#type() {
            ms::event::Type::Offers if !launched => {
                let offer = event
                    .offers
                    .and_then(|o| o.offers.into_iter().next())
                    .context("an offer")?;
                let task = m::TaskInfo {
                    name: "pb".into(),
                    task_id: m::TaskId {
                        value: "pb-task".into(),
                    },
                    agent_id: offer.agent_id.clone(),
                    resources: vec![scalar("cpus", 0.1), scalar("mem", 16.0)],
                    command: Some(m::CommandInfo {
                        value: Some("true".into()),
                        ..Default::default()
                    }),
                    ..Default::default()
                };
                let mut accept = base(ms::call::Type::Accept);
                accept.accept = Some(ms::call::Accept {
                    offer_ids: vec![offer.id],
                    operations: vec![m::offer::Operation {
                        r#type: Some(m::offer::operation::Type::Launch as i32),
                        launch: Some(m::offer::operation::Launch {
                            task_infos: vec![task],
                        }),
                        ..Default::default()
                    }],
                    filters: None,
                });
                call(master, &stream_id, accept)?;
                launched = true;
            }
            ms::event::Type::Update => {
                let status = event.update.context("update")?.status;
                if let Some(uuid) = status.uuid.clone() {
                    let mut ack = base(ms::call::Type::Acknowledge);
                    ack.acknowledge = Some(ms::call::Acknowledge {
                        agent_id: status.agent_id.clone().context("agent id")?,
                        task_id: status.task_id.clone(),
                        uuid,
                    });
                    call(master, &stream_id, ack)?;
                }
                let state = m::TaskState::try_from(status.state)?;
                assert!(
                    !matches!(
                        state,
                        m::TaskState::TaskFailed | m::TaskState::TaskError | m::TaskState::TaskLost
                    ),
                    "{status:?}"
                );
                if state == m::TaskState::TaskFinished {
                    break;
                }
            }
            _ => {}
        }
    }
    // A body over --max-request-bytes is refused with 413.
    let mut big = base(ms::call::Type::Message);
    big.message = Some(ms::call::Message {
        agent_id: m::AgentId { value: "a".into() },
        executor_id: m::ExecutorId { value: "e".into() },
        data: vec![0; 70_000],
    });
    let (status, _, _) = post(master, &big, Some(&stream_id))?;
    assert_eq!(status, 413);
    call(master, &stream_id, base(ms::call::Type::Teardown))?;
    // The master ends the stream after TEARDOWN.
    let mut rest = Vec::new();
    events.read_to_end(&mut rest)?;
    Ok(())
}
