//! Core tests with virtual time: tables of inputs → expected outputs, and proptest invariants.

mod accounting_props;
mod ack_batch;
mod bad_input;
mod coalesce;
mod fuzz_tests;
mod harness;
mod invariants;
mod latest_state;
mod limits;
mod maintenance;
mod offer_limit;
mod operator_reserve;
mod ownership;
mod partition;
mod persistence;
mod quota;
mod reservation_props;
mod reservations;
mod scenarios;
mod update_batch;

/// The core and the allocator stay sans-IO: no clock, socket, file, async runtime or unseeded RNG.
#[test]
fn core_is_pure() {
    let forbidden = [
        "Instant::now",
        "SystemTime",
        "std::time::Instant",
        "tokio::",
        "tonic::",
        "axum::",
        "std::fs",
        "std::net",
        "thread_rng",
        "rand::",
        "std::env",
        "std::thread",
    ];
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/src");
    let mut files = Vec::new();
    for dir in ["core", "core/tests", "allocator"] {
        let path = format!("{root}/{dir}");
        for entry in std::fs::read_dir(&path).unwrap_or_else(|e| panic!("{path}: {e}")) {
            let p = entry.map(|e| e.path()).unwrap_or_default();
            if p.extension().is_some_and(|x| x == "rs") && !p.ends_with("core/tests.rs") {
                files.push(p);
            }
        }
    }
    assert!(files.len() > 8, "found the sources");
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap_or_default();
        if f.ends_with("core/tests.rs") {
            continue;
        }
        for word in forbidden {
            assert!(!text.contains(word), "{} uses `{word}`", f.display());
        }
    }
}

/// The messages the core queues by the million (pings, acks, status updates) stay small: a
/// RUN_TASK's TaskInfo is boxed inside its message, so moving an agent message costs no
/// allocation and no 850-byte copy.
#[test]
fn queued_messages_stay_small() {
    use proffer_proto::v1;
    let sizes = [
        (
            "MasterMessage",
            std::mem::size_of::<v1::MasterMessage>(),
            96,
        ),
        ("Output", std::mem::size_of::<super::Output>(), 160),
        ("Input", std::mem::size_of::<super::Input>(), 192),
    ];
    for (name, size, max) in sizes {
        assert!(size <= max, "{name} is {size} bytes, more than {max}");
    }
}
