//! `proffer events` (follows the master's operator event stream: Mesos's `SUBSCRIBE` on
//! `POST /api/v1`, RecordIO over chunked HTTP, with the process's TLS and credential) and
//! `proffer completions bash|zsh|fish` (shell completion scripts, from clap).

use proffer_proto::leader::MasterList;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Flags of `proffer events`.
#[derive(Debug, clap::Args)]
pub struct EventsArgs {
    /// The master, HOST:PORT, or several, comma-separated: the first that accepts the
    /// subscription is followed.
    #[arg(long, env = "PROFFER_MASTER", default_value = "127.0.0.1:5050")]
    pub master: MasterList,
    /// Print each event as one line of Mesos JSON (heartbeats included).
    #[arg(long)]
    pub json: bool,
    /// Stop after this many events (SUBSCRIBED included); 0: follow until interrupted.
    #[arg(long, default_value_t = 0)]
    pub count: u64,
}

/// Flags of `proffer completions`.
#[derive(Debug, clap::Args)]
pub struct CompletionsArgs {
    /// The shell.
    pub shell: clap_complete::Shell,
}

/// `proffer completions SHELL`: writes the completion script for `command` to stdout.
pub fn completions(args: &CompletionsArgs, command: &mut clap::Command) {
    let name = command.get_name().to_string();
    clap_complete::generate(args.shell, command, name, &mut std::io::stdout());
}

/// Undoes chunked transfer coding and RecordIO framing, as bytes arrive.
#[derive(Debug, Default)]
pub struct RecordReader {
    raw: Vec<u8>,
    payload: Vec<u8>,
}

impl RecordReader {
    /// Adds bytes of the (chunked) body.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.raw.extend_from_slice(bytes);
        loop {
            let Some(eol) = self.raw.windows(2).position(|w| w == b"\r\n") else {
                return;
            };
            let size = String::from_utf8_lossy(&self.raw[..eol]).trim().to_string();
            let Ok(size) = usize::from_str_radix(&size, 16) else {
                return;
            };
            if self.raw.len() < eol + 2 + size + 2 {
                return;
            }
            self.payload
                .extend_from_slice(&self.raw[eol + 2..eol + 2 + size]);
            self.raw.drain(..eol + 2 + size + 2);
        }
    }

    /// The next complete record, if any; an unreadable length is an error.
    pub fn next_record(&mut self) -> anyhow::Result<Option<Vec<u8>>> {
        let Some(nl) = self.payload.iter().position(|b| *b == b'\n') else {
            return Ok(None);
        };
        let text = String::from_utf8_lossy(&self.payload[..nl]).to_string();
        let len: usize = text
            .trim()
            .parse()
            .map_err(|_| anyhow::anyhow!("bad RecordIO length `{text}` in the event stream"))?;
        if self.payload.len() < nl + 1 + len {
            return Ok(None);
        }
        let record = self.payload[nl + 1..nl + 1 + len].to_vec();
        self.payload.drain(..nl + 1 + len);
        Ok(Some(record))
    }
}

fn id(v: &Value) -> &str {
    v["value"].as_str().unwrap_or("?")
}

/// One line for people about a Mesos operator event (None: nothing to show, a heartbeat).
pub fn describe(event: &Value) -> Option<String> {
    let kind = event["type"].as_str().unwrap_or("UNKNOWN");
    Some(match kind {
        "SUBSCRIBED" => {
            let s = &event["subscribed"]["get_state"];
            let n = |v: &Value| v.as_array().map_or(0, Vec::len);
            format!(
                "SUBSCRIBED          {} agents, {} frameworks, {} tasks",
                n(&s["get_agents"]["agents"]),
                n(&s["get_frameworks"]["frameworks"]),
                n(&s["get_tasks"]["tasks"])
            )
        }
        "HEARTBEAT" => return None,
        "TASK_ADDED" => {
            let t = &event["task_added"]["task"];
            format!(
                "TASK_ADDED          {} of {} on {} {}",
                id(&t["task_id"]),
                id(&t["framework_id"]),
                id(&t["agent_id"]),
                t["state"].as_str().unwrap_or("")
            )
        }
        "TASK_UPDATED" => {
            let u = &event["task_updated"];
            format!(
                "TASK_UPDATED        {} of {} {}",
                id(&u["status"]["task_id"]),
                id(&u["framework_id"]),
                u["state"].as_str().unwrap_or("")
            )
        }
        "AGENT_ADDED" => {
            let a = &event["agent_added"]["agent"]["agent_info"];
            format!(
                "AGENT_ADDED         {} {}:{}",
                id(&a["id"]),
                a["hostname"].as_str().unwrap_or(""),
                a["port"].as_i64().unwrap_or(0)
            )
        }
        "AGENT_REMOVED" => format!(
            "AGENT_REMOVED       {}",
            id(&event["agent_removed"]["agent_id"])
        ),
        "FRAMEWORK_ADDED" | "FRAMEWORK_UPDATED" => {
            let key = kind.to_ascii_lowercase();
            let f = &event[key.as_str()]["framework"];
            format!(
                "{kind:<19} {} {} connected={}",
                id(&f["framework_info"]["id"]),
                f["framework_info"]["name"].as_str().unwrap_or(""),
                f["connected"].as_bool().unwrap_or(false)
            )
        }
        "FRAMEWORK_REMOVED" => {
            let f = &event["framework_removed"]["framework_info"];
            format!(
                "FRAMEWORK_REMOVED   {} {}",
                id(&f["id"]),
                f["name"].as_str().unwrap_or("")
            )
        }
        other => other.to_string(),
    })
}

/// Opens the stream on `addr`: the status line's code, the head, and the connection.
async fn open(
    addr: &str,
) -> anyhow::Result<(u16, String, Box<dyn proffer_net::tls::Stream>, Vec<u8>)> {
    let mut stream = proffer_net::tls::connect(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot connect to master {addr}: {e}"))?;
    let body = br#"{"type":"SUBSCRIBE"}"#;
    let auth = proffer_proto::auth::process_credential().map_or(String::new(), |c| {
        format!("Authorization: {}\r\n", c.authorization())
    });
    let request = format!(
        "POST /api/v1 HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Type: application/json\r\n\
         Accept: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(request.as_bytes()).await?;
    stream.write_all(body).await?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let end = loop {
        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break end;
        }
        let n = stream.read(&mut buf).await?;
        anyhow::ensure!(
            n > 0,
            "master {addr} closed the connection before answering"
        );
        raw.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&raw[..end]).to_string();
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let rest = raw[end + 4..].to_vec();
    Ok((code, head, stream, rest))
}

/// `proffer events`.
pub async fn events(args: EventsArgs) -> anyhow::Result<()> {
    let mut last_error = anyhow::anyhow!("no master given");
    for addr in args.master.masters() {
        let (code, head, mut stream, rest) = match open(addr).await {
            Ok(x) => x,
            Err(e) => {
                last_error = e;
                continue;
            }
        };
        if code != 200 {
            let mut body = rest;
            let _ = tokio::time::timeout(
                std::time::Duration::from_secs(2),
                stream.read_to_end(&mut body),
            )
            .await;
            let first = head.lines().next().unwrap_or("").to_string();
            last_error = anyhow::anyhow!(
                "master {addr} refused the subscription: {first}: {}",
                String::from_utf8_lossy(&body).trim()
            );
            continue;
        }
        return follow(&args, stream.as_mut(), rest).await;
    }
    Err(last_error)
}

async fn follow(
    args: &EventsArgs,
    stream: &mut dyn proffer_net::tls::Stream,
    first: Vec<u8>,
) -> anyhow::Result<()> {
    let mut reader = RecordReader::default();
    reader.feed(&first);
    let mut seen = 0u64;
    let mut buf = [0u8; 64 * 1024];
    loop {
        while let Some(record) = reader.next_record()? {
            let event: Value = serde_json::from_slice(&record)
                .map_err(|e| anyhow::anyhow!("unreadable event from the master: {e}"))?;
            if args.json {
                crate::output::text(&event.to_string());
            } else if let Some(line) = describe(&event) {
                crate::output::text(&line);
            }
            seen += 1;
            if args.count > 0 && seen >= args.count {
                return Ok(());
            }
        }
        let n = stream.read(&mut buf).await?;
        anyhow::ensure!(n > 0, "the master closed the event stream");
        reader.feed(&buf[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_read_across_chunks() -> anyhow::Result<()> {
        let mut r = RecordReader::default();
        // Two records ("abc", "hello") split over chunks at awkward places.
        r.feed(b"4\r\n3\nab\r\n");
        assert_eq!(r.next_record()?, None);
        r.feed(b"3\r\nc5\n\r\n5\r\nhello\r\n");
        assert_eq!(r.next_record()?, Some(b"abc".to_vec()));
        assert_eq!(r.next_record()?, Some(b"hello".to_vec()));
        assert_eq!(r.next_record()?, None);
        r.feed(b"2\r\nx\n\r\n");
        assert!(r.next_record().is_err(), "a bad length is an error");
        Ok(())
    }

    #[test]
    fn events_are_described_in_one_line() {
        let added = serde_json::json!({"type": "TASK_ADDED", "task_added": {"task": {
            "task_id": {"value": "t1"}, "framework_id": {"value": "f1"},
            "agent_id": {"value": "a1"}, "state": "TASK_STAGING"}}});
        assert_eq!(
            describe(&added).as_deref(),
            Some("TASK_ADDED          t1 of f1 on a1 TASK_STAGING")
        );
        assert_eq!(describe(&serde_json::json!({"type": "HEARTBEAT"})), None);
        let gone = serde_json::json!({"type": "AGENT_REMOVED",
            "agent_removed": {"agent_id": {"value": "a9"}}});
        assert_eq!(describe(&gone).as_deref(), Some("AGENT_REMOVED       a9"));
    }
}
