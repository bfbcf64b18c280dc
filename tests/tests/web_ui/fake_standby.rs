//! A stand-in for a master that has become a standby, on a given address: `GET /health` says
//! `standby` and names the leader, every other request is redirected there (`307`), as
//! `proffer_master::server::standby` answers. Served by a thread until dropped.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Result;

/// The fake standby; stops serving when dropped.
pub(crate) struct FakeStandby {
    stop: Arc<AtomicBool>,
}

impl Drop for FakeStandby {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl FakeStandby {
    /// Serves on `addr` (free again: its master was killed), pointing at `leader`.
    pub(crate) fn start(addr: &str, leader: &str) -> Result<FakeStandby> {
        let listener = TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let (flag, leader) = (stop.clone(), leader.to_string());
        std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let _ = answer(stream, &leader);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Ok(FakeStandby { stop })
    }
}

/// Reads one request's head and answers it.
fn answer(mut stream: TcpStream, leader: &str) -> Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&head);
    let path = text.split_whitespace().nth(1).unwrap_or("/");
    let reply = if path == "/health" {
        let body = format!(r#"{{"status":"ok","role":"standby","leader":"{leader}"}}"#);
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{body}",
            body.len()
        )
    } else {
        format!(
            "HTTP/1.1 307 Temporary Redirect\r\nLocation: http://{leader}{path}\r\n\
             Content-Length: 0\r\nConnection: close\r\n\r\n"
        )
    };
    stream.write_all(reply.as_bytes())?;
    Ok(())
}
