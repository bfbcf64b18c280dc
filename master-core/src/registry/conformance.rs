//! One suite for every backend: records round-trip, deletes stick, a fresh registry is marked
//! with the format version, a newer or unreadable format is refused. A backend's tests call
//! [`suite`] (the in-memory one here, redb in the server crate, etcd next).

use super::{FORMAT_KEY, FORMAT_VERSION, Registry, RegistryError, RegistryOp, Table};

fn put(table: Table, key: &str, value: &str) -> RegistryOp {
    RegistryOp {
        table,
        key: key.into(),
        value: Some(value.as_bytes().to_vec()),
    }
}

fn del(table: Table, key: &str) -> RegistryOp {
    RegistryOp {
        table,
        key: key.into(),
        value: None,
    }
}

/// The behaviour every backend must have; `reopen` gives a new handle on the same data (as
/// after a restart). Panics, naming what differs, on the first failure (it is a test).
pub fn suite(mut reopen: impl FnMut() -> Box<dyn Registry>) {
    let mut r = reopen();
    let fresh = r.load().expect("load fresh");
    assert!(fresh.is_empty(), "{fresh:?}");
    assert_eq!(
        fresh.get(Table::Meta, FORMAT_KEY).map(|v| v.as_slice()),
        Some(FORMAT_VERSION.to_string().as_bytes())
    );
    let stats = r
        .commit(&[
            put(Table::Agents, "a1", "one"),
            put(Table::Agents, "a2", "two"),
            put(Table::Frameworks, "f1", "fw"),
            put(Table::Roles, "web", "w"),
        ])
        .expect("commit");
    assert_eq!(stats.ops, 4);
    r.commit(&[del(Table::Agents, "a2"), put(Table::Agents, "a1", "uno")])
        .expect("commit 2");
    // One batch touching a key several times (group commit does that): the last op wins.
    r.commit(&[
        put(Table::Roles, "db", "1"),
        put(Table::Roles, "db", "2"),
        put(Table::Roles, "tmp", "x"),
        del(Table::Roles, "tmp"),
        del(Table::Roles, "gone"),
        put(Table::Roles, "gone", "back"),
    ])
    .expect("commit 3: repeated keys");
    drop(r);
    let mut r = reopen();
    let got = r.load().expect("reload");
    assert_eq!(
        got.get(Table::Agents, "a1").map(|v| v.as_slice()),
        Some(&b"uno"[..])
    );
    assert!(got.get(Table::Agents, "a2").is_none());
    assert_eq!(
        got.get(Table::Roles, "db").map(|v| v.as_slice()),
        Some(&b"2"[..])
    );
    assert!(got.get(Table::Roles, "tmp").is_none());
    assert_eq!(
        got.get(Table::Roles, "gone").map(|v| v.as_slice()),
        Some(&b"back"[..])
    );
    assert_eq!(
        got.get(Table::Frameworks, "f1").map(|v| v.as_slice()),
        Some(&b"fw"[..])
    );
    assert_eq!(got.table(Table::Roles).count(), 3); // web, db, gone
    assert!(!got.is_empty());
    // A newer format is refused, naming the version.
    r.commit(&[put(Table::Meta, FORMAT_KEY, "99")])
        .expect("mark newer");
    drop(r);
    let err = reopen().load().expect_err("newer format");
    assert!(matches!(err, RegistryError::NewerFormat { .. }), "{err}");
    assert!(err.to_string().contains("99"), "{err}");
    // Garbage in the marker is corruption.
    let mut r = reopen();
    r.commit(&[put(Table::Meta, FORMAT_KEY, "x")])
        .expect("mark garbage");
    drop(r);
    let err = reopen().load().expect_err("garbage format");
    assert!(matches!(err, RegistryError::Corrupt { .. }), "{err}");
    // Records without a marker: corruption, never a silent fresh start.
    let mut r = reopen();
    r.commit(&[del(Table::Meta, FORMAT_KEY)])
        .expect("drop marker");
    drop(r);
    let err = reopen().load().expect_err("no marker");
    assert!(err.to_string().contains("missing"), "{err}");
}
