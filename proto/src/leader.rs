//! Finding the leading master among several (high availability, issue 17).
//!
//! Clients (agents, the SDK driver, the CLI) are given a [`MasterList`], e.g.
//! `h1:5050,h2:5050,h3:5050`. A standby master answers every gRPC call with `UNAVAILABLE` and
//! the leader's address in the [`LEADER_METADATA`] response metadata entry; a client then
//! [`MasterList::follow`]s that hint and calls again at once. Without a hint (a master that does
//! not answer, or a standby that knows no leader yet) it [`MasterList::advance`]s to the next
//! master, after its usual backoff.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// The ASCII gRPC metadata entry in which a standby master names the leader (`HOST:PORT`).
pub const LEADER_METADATA: &str = "proffer-leader";

/// How often a client pings (HTTP/2 PING) a master it has heard nothing from. With
/// [`KEEPALIVE_TIMEOUT`] this bounds how long a hung master (e.g. SIGSTOPped: its kernel still
/// accepts connections, nothing answers) keeps a client: at most the sum of the two after the
/// last frame received.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);

/// How long a client waits for a master to answer a keep-alive PING before it drops the
/// connection (see [`KEEPALIVE_INTERVAL`]).
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(5);

/// A master list that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MasterListError {
    /// Nothing was given.
    #[error("no master given: expected HOST:PORT or a comma-separated list of them")]
    Empty,
    /// One entry is not `HOST:PORT`.
    #[error("bad master #{position} `{entry}` in `{list}`: {reason}")]
    BadEntry {
        /// The list as given.
        list: String,
        /// The entry as given (untrimmed).
        entry: String,
        /// Its position in the list, from 1.
        position: usize,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// The masters a client may talk to, and which one it talks to now.
///
/// Entries are `HOST:PORT` (an `http://` prefix is accepted and dropped); duplicates are kept
/// once. [`fmt::Display`] joins them with commas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MasterList {
    masters: Vec<String>,
    current: usize,
    /// Hints followed since the last [`MasterList::settled`].
    follows: usize,
    /// How many masters were given (bounds `follows`).
    given: usize,
}

impl MasterList {
    /// Parses `h1:5050,h2:5050` (whitespace around entries is trimmed).
    pub fn parse(list: &str) -> Result<Self, MasterListError> {
        if list.trim().is_empty() {
            return Err(MasterListError::Empty);
        }
        let mut masters: Vec<String> = Vec::new();
        for (i, entry) in list.split(',').enumerate() {
            let address = normalize(entry).map_err(|reason| MasterListError::BadEntry {
                list: list.to_string(),
                entry: entry.to_string(),
                position: i + 1,
                reason,
            })?;
            if !masters.contains(&address) {
                masters.push(address);
            }
        }
        Ok(MasterList {
            given: masters.len(),
            masters,
            current: 0,
            follows: 0,
        })
    }

    /// The master to talk to now (`HOST:PORT`).
    pub fn current(&self) -> &str {
        // `masters` is never empty and `current` always indexes it.
        self.masters.get(self.current).map_or("", String::as_str)
    }

    /// The gRPC endpoint URL of the current master (`http://HOST:PORT`).
    pub fn current_url(&self) -> String {
        format!("http://{}", self.current())
    }

    /// Every master, in order (hinted leaders that were not given are appended).
    pub fn masters(&self) -> &[String] {
        &self.masters
    }

    /// Moves to the next master (round robin) and returns it.
    pub fn advance(&mut self) -> &str {
        self.current = (self.current + 1) % self.masters.len().max(1);
        self.current()
    }

    /// When `status` is a standby's `UNAVAILABLE` naming the leader, makes that leader the
    /// current master (appending it when it is not in the list) and returns true. Returns
    /// false — the caller then moves on as after any failure — when there is no hint, when the
    /// hint names the current master, or after as many follows in a row as masters were given
    /// without [`MasterList::settled`] (standbys with stale hints pointing at each other, or
    /// at ever new addresses, cannot make a client spin).
    pub fn follow(&mut self, status: &tonic::Status) -> bool {
        leader_hint(status).is_some_and(|leader| self.follow_address(&leader))
    }

    /// [`MasterList::follow`] for a hint already taken out of a status (`HOST:PORT`).
    pub fn follow_address(&mut self, leader: &str) -> bool {
        let Ok(leader) = normalize(leader) else {
            return false;
        };
        if leader == self.current() || self.follows >= self.given {
            return false;
        }
        self.follows += 1;
        self.current = match self.masters.iter().position(|m| *m == leader) {
            Some(i) => i,
            None => {
                self.masters.push(leader);
                self.masters.len() - 1
            }
        };
        true
    }

    /// Says the current master served the client (registered, subscribed, answered): hints
    /// may be followed again.
    pub fn settled(&mut self) {
        self.follows = 0;
    }
}

impl FromStr for MasterList {
    type Err = MasterListError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        MasterList::parse(s)
    }
}

impl fmt::Display for MasterList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masters.join(","))
    }
}

/// The leader a standby named in an `UNAVAILABLE` status (`HOST:PORT`), if any.
pub fn leader_hint(status: &tonic::Status) -> Option<String> {
    if status.code() != tonic::Code::Unavailable {
        return None;
    }
    let value = status.metadata().get(LEADER_METADATA)?.to_str().ok()?;
    normalize(value).ok()
}

/// `HOST:PORT` from one entry: trimmed, without `http://` or a trailing `/`.
fn normalize(entry: &str) -> Result<String, &'static str> {
    let mut s = entry.trim();
    if let Some(prefix) = s.get(..7)
        && prefix.eq_ignore_ascii_case("http://")
    {
        s = s.get(7..).unwrap_or_default();
    }
    let s = s.strip_suffix('/').unwrap_or(s);
    if s.is_empty() {
        return Err("empty entry");
    }
    if s.contains("://") {
        return Err("only http:// is supported");
    }
    if s.contains(|c: char| c == '/' || c.is_whitespace()) {
        return Err("expected HOST:PORT");
    }
    let Some((host, port)) = s.rsplit_once(':') else {
        return Err("missing :PORT");
    };
    if host.is_empty() {
        return Err("empty host");
    }
    if host.contains(':') && !(host.starts_with('[') && host.ends_with(']')) {
        return Err("an IPv6 address needs brackets, e.g. [::1]:5050");
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(s.to_string()),
        _ => Err("the port is not a number from 1 to 65535"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn standby(leader: Option<&str>) -> tonic::Status {
        let mut status = tonic::Status::unavailable("standby master");
        if let Some(l) = leader
            && let Ok(v) = l.parse()
        {
            status.metadata_mut().insert(LEADER_METADATA, v);
        }
        status
    }

    #[test]
    fn parse_table() {
        let ok: &[(&str, &[&str])] = &[
            ("h1:5050", &["h1:5050"]),
            ("h1:5050,h2:5050", &["h1:5050", "h2:5050"]),
            (" h1:5050 , h2:5051 ,h3:1", &["h1:5050", "h2:5051", "h3:1"]),
            ("http://h1:5050,HTTP://h2:5050/", &["h1:5050", "h2:5050"]),
            ("127.0.0.1:5050,127.0.0.1:5050", &["127.0.0.1:5050"]),
            ("[::1]:5050", &["[::1]:5050"]),
            ("hé:1", &["hé:1"]),
        ];
        for (input, want) in ok {
            let got = MasterList::parse(input);
            assert_eq!(
                got.as_ref().map(|l| l.masters().to_vec()).ok(),
                Some(want.iter().map(|s| s.to_string()).collect()),
                "{input:?}: {got:?}"
            );
        }
        let bad: &[(&str, usize, &str)] = &[
            ("h1:5050,,h2:5050", 2, "empty entry"),
            ("h1:5050,", 2, "empty entry"),
            (" ,h1:5050", 1, "empty entry"),
            ("h1", 1, "missing :PORT"),
            ("h1:5050,h2:x", 2, "the port is not"),
            ("h1:0", 1, "the port is not"),
            (":5050", 1, "empty host"),
            ("https://h1:5050", 1, "only http://"),
            ("h1:5050/path", 1, "expected HOST:PORT"),
            ("::1:5050", 1, "IPv6"),
            ("ééééé:1,x", 2, "missing :PORT"),
        ];
        for (input, position, reason) in bad {
            match MasterList::parse(input) {
                Err(e @ MasterListError::BadEntry { .. }) => {
                    let msg = e.to_string();
                    assert!(msg.contains(&format!("#{position}")), "{input:?}: {msg}");
                    assert!(msg.contains(reason), "{input:?}: {msg}");
                }
                other => panic!("{input:?} must be a bad entry, got {other:?}"),
            }
        }
        assert_eq!(MasterList::parse("  "), Err(MasterListError::Empty));
        assert!("h1:5050,h2:5050".parse::<MasterList>().is_ok());
    }

    #[test]
    fn advance_rotates_and_display_joins() -> Result<(), MasterListError> {
        let mut list = MasterList::parse("a:1,b:2,c:3")?;
        assert_eq!(list.current(), "a:1");
        assert_eq!(list.current_url(), "http://a:1");
        assert_eq!(list.advance(), "b:2");
        assert_eq!(list.advance(), "c:3");
        assert_eq!(list.advance(), "a:1");
        assert_eq!(list.to_string(), "a:1,b:2,c:3");
        let mut one = MasterList::parse("a:1")?;
        assert_eq!(one.advance(), "a:1");
        Ok(())
    }

    #[test]
    fn leader_hint_table() {
        let cases: Vec<(tonic::Status, Option<&str>)> = vec![
            (standby(Some("b:2")), Some("b:2")),
            (standby(Some("http://b:2")), Some("b:2")),
            (standby(None), None),
            (standby(Some("not an address")), None),
            (tonic::Status::internal("boom"), None),
            (
                {
                    let mut s = tonic::Status::not_found("x");
                    if let Ok(v) = "b:2".parse() {
                        s.metadata_mut().insert(LEADER_METADATA, v);
                    }
                    s
                },
                None,
            ),
        ];
        for (status, want) in cases {
            assert_eq!(
                leader_hint(&status).as_deref(),
                want,
                "{:?} {:?}",
                status.code(),
                status.metadata()
            );
        }
    }

    #[test]
    fn follow_moves_to_the_hinted_leader() -> Result<(), MasterListError> {
        let mut list = MasterList::parse("a:1,b:2")?;
        assert!(list.follow(&standby(Some("b:2"))));
        assert_eq!(list.current(), "b:2");
        // A hint naming the current master is no progress.
        assert!(!list.follow(&standby(Some("b:2"))));
        // No hint: nothing changes.
        assert!(!list.follow(&standby(None)));
        assert!(!list.follow(&tonic::Status::internal("boom")));
        assert_eq!(list.current(), "b:2");
        // An unknown leader is added.
        list.settled();
        assert!(list.follow(&standby(Some("c:3"))));
        assert_eq!(list.current(), "c:3");
        assert_eq!(list.to_string(), "a:1,b:2,c:3");
        // Ever new hints are bounded by the number of masters given, not the grown list.
        assert!(list.follow(&standby(Some("d:4"))));
        assert!(!list.follow(&standby(Some("e:5"))));
        assert_eq!(list.current(), "d:4");
        Ok(())
    }

    #[test]
    fn follows_in_a_row_are_bounded_until_settled() -> Result<(), MasterListError> {
        let mut list = MasterList::parse("a:1,b:2")?;
        // Two standbys pointing at each other: two follows, then the client must back off.
        assert!(list.follow(&standby(Some("b:2"))));
        assert!(list.follow(&standby(Some("a:1"))));
        assert!(!list.follow(&standby(Some("b:2"))));
        assert_eq!(list.current(), "a:1");
        list.settled();
        assert!(list.follow(&standby(Some("b:2"))));
        Ok(())
    }
}
