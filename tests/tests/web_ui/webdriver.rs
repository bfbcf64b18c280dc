//! A minimal W3C WebDriver client for the UI test: a `chromedriver` child process and one
//! headless Chromium session driven over plain HTTP/1.1 on loopback (no TLS, no extra crates).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

/// Bound on one WebDriver command (a page load included).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// How long chromedriver may take to start.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// `chromedriver` on a loopback port, killed on drop.
pub struct Driver {
    child: Child,
    addr: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Driver {
    /// Starts `chromedriver` on `port` (its log in `log`) and waits until it is ready.
    pub fn start(chromedriver: &Path, port: u16, log: &Path) -> Result<Driver> {
        let log = std::fs::File::create(log)?;
        let child = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("spawn {}", chromedriver.display()))?;
        let driver = Driver {
            child,
            addr: format!("127.0.0.1:{port}"),
        };
        let start = std::time::Instant::now();
        loop {
            match request(&driver.addr, "GET", "/status", None) {
                Ok(v) if v["value"]["ready"] == true => break,
                Ok(v) if start.elapsed() > READY_TIMEOUT => bail!("chromedriver is not ready: {v}"),
                Err(e) if start.elapsed() > READY_TIMEOUT => {
                    return Err(e.context("chromedriver did not start"));
                }
                _ => std::thread::sleep(Duration::from_millis(50)),
            }
        }
        Ok(driver)
    }

    /// A new headless session of the `chromium` binary, with a `width`×`height` window.
    pub fn session(&self, chromium: &Path, width: u32, height: u32) -> Result<Session> {
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium.to_string_lossy(),
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                    "--disable-dev-shm-usage", "--no-first-run", "--disable-extensions",
                    format!("--window-size={width},{height}")],
            },
        }}});
        let answer = request(&self.addr, "POST", "/session", Some(&caps))?;
        let id = answer["value"]["sessionId"]
            .as_str()
            .context("no sessionId in the new session's answer")?
            .to_string();
        Ok(Session {
            addr: self.addr.clone(),
            id,
        })
    }
}

/// One browser session, ended on drop.
pub struct Session {
    addr: String,
    id: String,
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = request(&self.addr, "DELETE", &format!("/session/{}", self.id), None);
    }
}

impl Session {
    fn cmd(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value> {
        let answer = request(
            &self.addr,
            method,
            &format!("/session/{}{path}", self.id),
            body,
        )?;
        Ok(answer["value"].clone())
    }

    /// Loads `url` (returns once the document has loaded).
    pub fn goto(&self, url: &str) -> Result<()> {
        self.cmd("POST", "/url", Some(&json!({ "url": url })))?;
        Ok(())
    }

    /// Runs `script` (a function body; `arguments` are `args`) and returns its result.
    pub fn exec(&self, script: &str, args: Value) -> Result<Value> {
        self.cmd(
            "POST",
            "/execute/sync",
            Some(&json!({ "script": script, "args": args })),
        )
    }

    /// A PNG of the viewport.
    pub fn screenshot(&self) -> Result<Vec<u8>> {
        let b64 = self.cmd("GET", "/screenshot", None)?;
        decode_base64(b64.as_str().context("screenshot is not a string")?)
    }
}

/// One WebDriver command: `method path` with a JSON body; the JSON answer, or the error it
/// names (`{"value":{"error","message"}}`).
fn request(addr: &str, method: &str, path: &str, body: Option<&Value>) -> Result<Value> {
    let mut stream = TcpStream::connect(addr).with_context(|| format!("connect {addr}"))?;
    stream.set_read_timeout(Some(COMMAND_TIMEOUT))?;
    let body = body.map(Value::to_string).unwrap_or_default();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body.as_bytes())?;
    // chromedriver keeps the connection open whatever the request says: read the head, then
    // the body by its length (or its chunks).
    let mut raw = Vec::new();
    let mut buf = [0u8; 64 * 1024];
    let split = loop {
        if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let n = stream
            .read(&mut buf)
            .with_context(|| format!("{method} {path}: reading the answer"))?;
        if n == 0 {
            bail!("{method} {path}: connection closed before the end of the head");
        }
        raw.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    let mut payload = raw[split + 4..].to_vec();
    let length = head.lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        (name.trim() == "content-length").then(|| value.trim().parse::<usize>().ok())?
    });
    let chunked = head.contains("transfer-encoding:") && head.contains("chunked");
    loop {
        let complete = match length {
            Some(n) => payload.len() >= n,
            None if chunked => payload.ends_with(b"0\r\n\r\n"),
            None => false,
        };
        if complete {
            break;
        }
        let n = stream
            .read(&mut buf)
            .with_context(|| format!("{method} {path}: reading the answer"))?;
        if n == 0 {
            break;
        }
        payload.extend_from_slice(&buf[..n]);
    }
    if let Some(n) = length {
        payload.truncate(n);
    } else if chunked {
        payload = dechunk(&payload)?;
    }
    let status = head
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_string();
    let value: Value = serde_json::from_slice(&payload)
        .with_context(|| format!("{method} {path}: answer is not JSON ({status})"))?;
    if status != "200" {
        bail!(
            "{method} {path}: {status} {}: {}",
            value["value"]["error"],
            value["value"]["message"]
        );
    }
    Ok(value)
}

/// The payload of a chunked body.
fn dechunk(mut raw: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = raw
            .windows(2)
            .position(|w| w == b"\r\n")
            .context("bad chunk header")?;
        let size_text = String::from_utf8_lossy(&raw[..line_end]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)?;
        raw = &raw[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        out.extend_from_slice(raw.get(..size).context("short chunk")?);
        raw = raw.get(size + 2..).context("short chunk end")?;
    }
}

/// Standard base64 (with padding) decoded.
fn decode_base64(text: &str) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' | b'\n' | b'\r' => continue,
            other => bail!("invalid base64 byte {other:#x}"),
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Ok(out)
}

#[test]
fn base64_and_chunks_decode() -> Result<()> {
    assert_eq!(decode_base64("aGVsbG8gd29ybGQ=")?, b"hello world");
    assert_eq!(decode_base64("YQ==")?, b"a");
    assert!(decode_base64("a*b").is_err());
    assert_eq!(
        dechunk(b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")?,
        b"hello world"
    );
    Ok(())
}
