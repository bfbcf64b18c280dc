//! Loopback ports for tests that start servers (in process or as child processes).
//!
//! Kept free of this crate's other modules: the agent crate's tests include this file by
//! path, since they cannot depend on this crate (it depends on the agent).

use std::net::SocketAddr;
use std::sync::Mutex;

/// A free TCP port on 127.0.0.1, reserved for the rest of this test binary: a socket stays
/// bound to it (SO_REUSEADDR, never listening), so neither `bind(0)` nor an outgoing connection
/// is given it before the server told to listen there does, and connecting to it is refused
/// until that server listens; the server binds it anyway (tokio and std listeners set
/// SO_REUSEADDR). A port that was bound and released at once could be taken by a concurrent
/// test in between.
pub fn free_port() -> anyhow::Result<u16> {
    static HELD: Mutex<Vec<tokio::net::TcpSocket>> = Mutex::new(Vec::new());
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(SocketAddr::from(([127, 0, 0, 1], 0)))?;
    let port = socket.local_addr()?.port();
    HELD.lock()
        .map_err(|_| anyhow::anyhow!("port list poisoned"))?
        .push(socket);
    Ok(port)
}
