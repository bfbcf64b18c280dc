//! The block of ports `proffer local`'s agents offer to tasks.
//!
//! Two local clusters on one host must not offer the same ports: a task of one would find its
//! port taken by a task of the other. Each `proffer local` therefore claims a block with an
//! advisory file lock (`$TMPDIR/proffer-local-ports/BEGIN.lock`), held for the life of the
//! process and released by the kernel when it exits, even on `kill -9`. Without `--agent-ports`
//! it takes the first free block of [`CANDIDATES`], all below the kernel's ephemeral range.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::PathBuf;

use anyhow::Context;

/// The blocks tried in order when `--agent-ports` is not given (inclusive bounds). The
/// first is Mesos's and the agent's default; the others stay clear of the ports
/// `proffer local --k8s` gives its control plane (20000-30000) and of 32768 and above.
pub const CANDIDATES: [(u64, u64); 4] = [
    (31000, 31999),
    (32000, 32767),
    (10000, 10999),
    (11000, 11999),
];

/// A claimed block of ports; the claim lasts as long as this value.
#[derive(Debug)]
pub struct PortBlock {
    /// First port of the block.
    pub begin: u64,
    /// Last port of the block (inclusive).
    pub end: u64,
    /// The held lock (None when the lock directory cannot be used).
    _lock: Option<File>,
}

impl PortBlock {
    /// `ports:[BEGIN-END]`.
    pub fn resources_text(&self) -> String {
        format!("ports:[{}-{}]", self.begin, self.end)
    }
}

/// Parses `BEGIN-END` (inclusive, `BEGIN ≤ END`, both in 1..=65535).
pub fn parse_block(text: &str) -> Result<(u64, u64), String> {
    let (a, b) = text
        .split_once('-')
        .ok_or_else(|| format!("`{text}` is not BEGIN-END (for example 31000-31999)"))?;
    let port = |s: &str| -> Result<u64, String> {
        let p: u64 = s
            .trim()
            .parse()
            .map_err(|_| format!("`{s}` in `{text}` is not a port number"))?;
        if p == 0 || p > 65535 {
            return Err(format!("port {p} in `{text}` is outside 1-65535"));
        }
        Ok(p)
    };
    let (begin, end) = (port(a)?, port(b)?);
    if begin > end {
        return Err(format!("`{text}`: the first port is above the last"));
    }
    Ok((begin, end))
}

/// Claims `explicit` (in use by another `proffer local` → an error naming it), or else the
/// first free block of [`CANDIDATES`] (all in use → an error saying to pass `--agent-ports`).
pub fn claim(explicit: Option<(u64, u64)>) -> anyhow::Result<PortBlock> {
    let dir = lock_dir();
    if let Some((begin, end)) = explicit {
        return match try_lock(&dir, begin)? {
            Claim::Held(lock) => Ok(PortBlock {
                begin,
                end,
                _lock: lock,
            }),
            Claim::Busy => anyhow::bail!(
                "--agent-ports {begin}-{end}: another `proffer local` on this host offers the \
                 block starting at {begin} (lock {})",
                dir.join(format!("{begin}.lock")).display()
            ),
        };
    }
    for (begin, end) in CANDIDATES {
        if let Claim::Held(lock) = try_lock(&dir, begin)? {
            return Ok(PortBlock {
                begin,
                end,
                _lock: lock,
            });
        }
    }
    anyhow::bail!(
        "every default agent port block ({}) is used by another `proffer local` on this host: \
         pass --agent-ports BEGIN-END",
        CANDIDATES
            .iter()
            .map(|(b, e)| format!("{b}-{e}"))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// The outcome of trying one block's lock.
enum Claim {
    /// Locked by us (or unlockable here: `None`, claimed without a lock).
    Held(Option<File>),
    /// Locked by another process.
    Busy,
}

/// Where the locks live: `$TMPDIR/proffer-local-ports`.
fn lock_dir() -> PathBuf {
    std::env::temp_dir().join("proffer-local-ports")
}

/// Tries the lock of the block starting at `begin`. A directory or file that cannot be
/// created (read-only /tmp, another user's file) is not a reason to refuse to start: the
/// block is then used without a claim, as before locks existed.
fn try_lock(dir: &std::path::Path, begin: u64) -> anyhow::Result<Claim> {
    let path = dir.join(format!("{begin}.lock"));
    let file = std::fs::create_dir_all(dir).and_then(|()| {
        OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
    });
    let file = match file {
        Ok(f) => f,
        Err(e) => {
            tracing::warn!(lock = %path.display(), error = %e, "cannot claim the agent port block; using it unclaimed");
            return Ok(Claim::Held(None));
        }
    };
    match file.try_lock() {
        Ok(()) => Ok(Claim::Held(Some(file))),
        Err(TryLockError::WouldBlock) => Ok(Claim::Busy),
        Err(TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("locking {}", path.display()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_parse_or_say_what_is_wrong() {
        assert_eq!(parse_block("31000-31999"), Ok((31000, 31999)));
        assert_eq!(parse_block("5-5"), Ok((5, 5)));
        for (text, want) in [
            ("31000", "is not BEGIN-END"),
            ("a-5", "`a` in `a-5` is not a port number"),
            ("0-5", "port 0 in `0-5` is outside 1-65535"),
            ("5-70000", "port 70000"),
            ("9-5", "the first port is above the last"),
        ] {
            let err = parse_block(text).err().unwrap_or_default();
            assert!(err.contains(want), "{text}: `{err}` lacks `{want}`");
        }
    }

    #[test]
    fn a_second_claim_takes_the_next_block_and_an_explicit_one_is_refused() -> anyhow::Result<()> {
        // Ports far from the candidates, so that a running `proffer local` does not interfere.
        let first = claim(Some((64000, 64009)))?;
        assert_eq!((first.begin, first.end), (64000, 64009));
        let err = claim(Some((64000, 64009))).err().map(|e| format!("{e:#}"));
        let err = err.unwrap_or_default();
        assert!(err.contains("another `proffer local`"), "{err}");
        drop(first);
        let again = claim(Some((64000, 64009)))?;
        assert_eq!(again.resources_text(), "ports:[64000-64009]");
        Ok(())
    }
}
