//! Long-lived streams (framework subscriptions, agent sessions) per principal: at most
//! [`ConnLimits::max_streams_per_principal`](super::ConnLimits::max_streams_per_principal)
//! open at once for one authenticated principal, or for one peer IP address when the caller is
//! unauthenticated. One more is refused with `RESOURCE_EXHAUSTED` naming the limit.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::ConnectInfo;
use tonic::Status;

use super::security::Authenticated;

/// Open streams per key (`principal NAME` or `peer IP`).
#[derive(Debug)]
pub(crate) struct StreamSlots {
    max: usize,
    open: Mutex<HashMap<String, usize>>,
}

/// One open stream; dropping it frees the slot.
#[derive(Debug)]
pub(crate) struct Slot {
    slots: Arc<StreamSlots>,
    key: String,
}

impl StreamSlots {
    /// At most `max` streams per key.
    pub(crate) fn new(max: usize) -> Arc<Self> {
        Arc::new(StreamSlots {
            max,
            open: Mutex::new(HashMap::new()),
        })
    }

    /// Whose stream `request` opens: its principal, else its peer's IP address.
    pub(crate) fn key_of<T>(request: &tonic::Request<T>) -> String {
        let ext = request.extensions();
        Self::key_from(
            ext.get::<Authenticated>().and_then(|a| a.0.as_deref()),
            ext.get::<ConnectInfo<SocketAddr>>().map(|c| &c.0),
        )
    }

    /// Whose stream it is, from the authenticated principal and the peer's address.
    pub(crate) fn key_from(principal: Option<&str>, peer: Option<&SocketAddr>) -> String {
        if let Some(p) = principal {
            return format!("principal `{p}`");
        }
        match peer {
            Some(addr) => format!("peer {}", addr.ip()),
            None => "an unknown peer".to_string(),
        }
    }

    /// A slot for `key`, or `RESOURCE_EXHAUSTED` if it has `max` open.
    pub(crate) fn acquire(self: &Arc<Self>, key: String) -> Result<Slot, Status> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let n = open.entry(key.clone()).or_insert(0);
        if *n >= self.max {
            return Err(Status::resource_exhausted(format!(
                "{key} has {n} streams open, the limit is {}",
                self.max
            )));
        }
        *n += 1;
        Ok(Slot {
            slots: self.clone(),
            key,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.slots.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_most_max_per_key_and_a_dropped_slot_is_freed() {
        let slots = StreamSlots::new(2);
        let a1 = slots.acquire("a".into()).expect("1st");
        let _a2 = slots.acquire("a".into()).expect("2nd");
        let err = slots.acquire("a".into()).expect_err("3rd");
        assert_eq!(err.code(), tonic::Code::ResourceExhausted);
        assert!(
            err.message().contains("the limit is 2"),
            "{}",
            err.message()
        );
        let _b = slots.acquire("b".into()).expect("another key");
        drop(a1);
        let _a3 = slots.acquire("a".into()).expect("freed");
    }
}
