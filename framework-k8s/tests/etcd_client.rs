//! The etcd client (`proffer_k8s::etcd`, over `etcd-client`) against a real TLS etcd with
//! client-certificate auth: reads and writes, the member list, health; endpoints that are down
//! or never answer are passed over in order; etcd's refusals and unreachable endpoints are
//! reported with the endpoint and the request. Skips with a message if `etcd` is absent.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;

use std::time::{Duration, Instant};

use common::{Fixture, etcd_binary, free_port, start_etcd};
use proffer_k8s::etcd::{Etcd, EtcdError, EtcdTls};

/// Waits until `client` reads from etcd (it has just been started).
async fn wait_ready(client: &Etcd) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match client.get("/ready").await {
            Ok(_) => return,
            Err(e) if Instant::now() > deadline => panic!("etcd never answered: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_against_a_real_tls_etcd() {
    let Some(etcd_bin) = etcd_binary() else {
        println!("SKIP etcd client: no `etcd` on PATH (apt-get install etcd-server)");
        return;
    };
    let fx = Fixture::new(free_port());
    let port = free_port();
    let url = format!("https://127.0.0.1:{port}");
    let data = tempfile::tempdir().unwrap();
    let mut etcd = start_etcd(&etcd_bin, &fx, data.path(), port);
    let pki = &fx.pki;
    let ca = &pki.etcd_ca.pair.cert_pem;
    let identity = (
        pki.apiserver_etcd_client.cert_pem.as_str(),
        pki.apiserver_etcd_client.key_pem.as_str(),
    );
    let tls = EtcdTls::new(ca, Some(identity), "etcd").unwrap();
    assert!(EtcdTls::new("not PEM", Some(identity), "etcd").is_err());

    // First an endpoint that accepts connections and never answers, then one that is down.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_url = format!("https://{}", silent.local_addr().unwrap());
    let down_url = format!("https://127.0.0.1:{}", free_port());
    let endpoints = vec![silent_url.clone(), down_url.clone(), url.clone()];
    let client = Etcd::new(endpoints, Some(tls.clone())).with_timeout(Duration::from_secs(1));
    wait_ready(&client).await;
    etcd.assert_alive();

    client.put("/k8s/a", b"value-a").await.unwrap();
    assert_eq!(client.get("/k8s/a").await.unwrap().unwrap(), b"value-a");
    assert_eq!(client.get("/k8s/none").await.unwrap(), None);
    let members = client.members().await.unwrap();
    assert_eq!(members.len(), 1, "{members:?}");
    assert_eq!(members[0].name, "cp-0");
    assert_eq!(members[0].client_urls, std::slice::from_ref(&url));
    assert_ne!(members[0].id, 0);
    client.health().await.unwrap();

    // etcd's refusal is the answer: the endpoint and the request are named.
    let direct = Etcd::new(vec![url.clone()], Some(tls.clone()));
    match direct.remove_member(members[0].id ^ 1).await {
        Err(e @ EtcdError::Status { .. }) => {
            let text = e.to_string();
            assert!(
                text.contains(&url) && text.contains("member remove"),
                "{text}"
            );
        }
        other => panic!("removing an unknown member: {other:?}"),
    }

    // No endpoint answers: every one is listed with why, in about one timeout each.
    let nobody = Etcd::new(vec![silent_url.clone(), down_url.clone()], Some(tls))
        .with_timeout(Duration::from_millis(500));
    let started = Instant::now();
    match nobody.get("/k8s/a").await {
        Err(EtcdError::Unreachable { what, failures }) => {
            assert_eq!(what, "get");
            assert_eq!(failures.len(), 2, "{failures:?}");
            assert!(failures[0].starts_with(&silent_url), "{failures:?}");
            assert!(failures[0].contains("no answer within"), "{failures:?}");
            assert!(failures[1].starts_with(&down_url), "{failures:?}");
        }
        other => panic!("no endpoint answering: {other:?}"),
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(matches!(
        Etcd::new(Vec::new(), None).get("/k8s/a").await,
        Err(EtcdError::NoEndpoints)
    ));

    // Without a client certificate etcd refuses the handshake: not an answer.
    let anonymous = EtcdTls::new(ca, None, "etcd").unwrap();
    let err = Etcd::new(vec![url.clone()], Some(anonymous))
        .get("/k8s/a")
        .await
        .unwrap_err();
    assert!(matches!(err, EtcdError::Unreachable { .. }), "{err}");

    // The client's connection survives etcd restarting on the same data.
    drop(etcd);
    let err = direct.get("/k8s/a").await.unwrap_err();
    assert!(matches!(err, EtcdError::Unreachable { .. }), "{err}");
    let _etcd = start_etcd(&etcd_bin, &fx, data.path(), port);
    wait_ready(&direct).await;
    assert_eq!(direct.get("/k8s/a").await.unwrap().unwrap(), b"value-a");
}
