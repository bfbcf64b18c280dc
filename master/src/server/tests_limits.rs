//! Limits over real sockets (issue 18, item 6): roles per call and role names on the operator
//! routes, connections, header-read and idle timeouts.

use std::time::Instant;

use proffer_master_core::core::limits::MAX_ROLES_PER_CALL;

use super::tests::TestServer;

fn weights(n: usize, prefix: &str) -> String {
    let items: Vec<String> = (0..n)
        .map(|i| format!(r#"{{"role":"{prefix}{i}","weight":2}}"#))
        .collect();
    format!("[{}]", items.join(","))
}

#[tokio::test]
async fn weights_calls_are_bounded_in_roles() -> anyhow::Result<()> {
    let server = TestServer::start_seeded(3).await?;
    let (code, reply) = server
        .http("POST", "/weights", &weights(MAX_ROLES_PER_CALL, "ok"))
        .await?;
    assert_eq!(code, 200, "{reply}");
    let (code, reply) = server
        .http("POST", "/weights", &weights(MAX_ROLES_PER_CALL + 1, "no"))
        .await?;
    assert_eq!(code, 400, "{reply}");
    let msg = reply["error"].as_str().unwrap_or_default();
    assert!(
        msg.contains("1001 roles in one call, the limit is 1000"),
        "{msg}"
    );
    assert!(server.role("no0").await?.is_none(), "nothing applied");
    server.stop().await
}

/// Seen before the limit: 19.6 s, and `/roles` failed for good afterwards (reply over 4 MiB).
#[tokio::test]
async fn sixty_thousand_roles_in_one_post_weights_are_refused_quickly() -> anyhow::Result<()> {
    let server = TestServer::start_seeded(3).await?;
    let start = Instant::now();
    let (code, reply) = server
        .http("POST", "/weights", &weights(60_000, "r"))
        .await?;
    assert_eq!(code, 400, "{reply}");
    assert!(
        start.elapsed() < std::time::Duration::from_secs(10),
        "took {:?}",
        start.elapsed()
    );
    let (code, _) = server.http("GET", "/roles", "").await?;
    assert_eq!(code, 200, "/roles still answers");
    server.stop().await
}

#[tokio::test]
async fn a_role_name_of_3_9_mb_is_refused() -> anyhow::Result<()> {
    let server = TestServer::start_seeded(3).await?;
    let role = "r".repeat(3_900_000);
    for (path, body) in [
        ("/weights", format!(r#"{{"role":"{role}","weight":2}}"#)),
        (
            "/quota",
            format!(r#"{{"role":"{role}","guarantees":"cpus:1"}}"#),
        ),
    ] {
        let (code, reply) = server.http("POST", path, &body).await?;
        assert_eq!(code, 400, "{path}");
        let msg = reply["error"].as_str().unwrap_or_default();
        assert!(
            msg.contains("the limit is 256"),
            "{path}: {}",
            &msg[..msg.len().min(200)]
        );
        assert!(msg.len() < 1024, "{path}: the error does not echo the role");
    }
    server.stop().await
}
