//! The databases guests reach through Spin's interfaces, on the spawned host against a real
//! PostgreSQL (a throwaway cluster on a free port; skipped, saying so, where PostgreSQL is
//! not installed, and `.ci/run` installs it): a burst of requests holds a bounded number of
//! connections, and PostgreSQL going away mid-run fails requests with a reason while the
//! host keeps serving, until it is back; TLS to PostgreSQL trusts `--ca-file` as outbound
//! HTTPS does. In a binary of its own, so its burst does not share the machine with
//! timing-sensitive tests.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use wasmfn_guest_artifacts as guests;

mod common;
use common::{PostgresServer, Server, function, get, manifest, post};

/// Active statements like `pattern` on `client`'s server, other than its own.
async fn active(client: &tokio_postgres::Client, pattern: &str) -> i64 {
    client
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE $1 AND pid <> pg_backend_pid()",
            &[&pattern],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_connections_stay_bounded_and_come_back_after_an_outage() {
    let Some(mut pg) = PostgresServer::start() else {
        return;
    };
    let (_dir, path) = manifest(&function(
        "events",
        guests::SPIN_EVENTS,
        &["/events/*"],
        &format!(
            "allowed_outbound_hosts = [\"postgres://127.0.0.1:{}\"]\nvariables = {{ database_url = \"{}\" }}",
            pg.port,
            pg.url()
        ),
    ));
    let server = Server::start_with(&path, &[]);
    let r = post(&server.url("/events/setup"), "").await;
    assert_eq!(r.status, 200, "{}", server.log());
    let r = post(&server.url("/events/acct?version=1&type=opened"), "{}").await;
    assert_eq!(r.status, 201, "{}", r.text());

    // 256 requests at once: every one is answered, and PostgreSQL never sees more than the
    // function's 8 connections at work.
    let (client, connection) = tokio_postgres::connect(&pg.url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let watching = Arc::new(AtomicBool::new(true));
    let watcher = {
        let watching = watching.clone();
        tokio::spawn(async move {
            let mut most = 0;
            while watching.load(Ordering::Relaxed) {
                most = most.max(active(&client, "SELECT pg_sleep%").await);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            most
        })
    };
    let url = server.url("/events/debug/sleep?s=0.01");
    let burst: Vec<_> = (0..256)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move {
                let r = get(&url).await;
                (r.status, r.text())
            })
        })
        .collect();
    for request in burst {
        let (status, text) = request.await.unwrap();
        assert_eq!(status, 200, "{text}");
    }
    watching.store(false, Ordering::Relaxed);
    let most = watcher.await.unwrap();
    assert!(
        (1..=8).contains(&most),
        "{most} connections at work at once"
    );

    // PostgreSQL goes away: a request that needs it fails with a reason, the host keeps
    // serving the rest, and the same host reaches PostgreSQL again once it is back.
    pg.stop();
    let r = get(&server.url("/events/acct")).await;
    assert_eq!(r.status, 500, "{}", r.text());
    assert!(r.text().starts_with("error: "), "{}", r.text());
    assert_eq!(get(&server.url("/events/debug/nope")).await.status, 404);
    assert_eq!(
        get(&server.url("/.well-known/wasmfn/ready")).await.status,
        200
    );
    pg.restart();
    let mut recovered = None;
    for _ in 0..50 {
        let r = get(&server.url("/events/acct")).await;
        if r.status == 200 {
            recovered = Some(r.text());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        recovered.as_deref(),
        Some("1 opened {}\n"),
        "{}",
        server.log()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_over_tls_trusts_the_extra_ca_only_when_configured() {
    // A CA made here, and PostgreSQL with a certificate for `localhost` it signed.
    let (ca_pem, cert, key) = common::localhost_certificate();
    let Some(pg) = PostgresServer::start_tls(&cert.pem(), &key.serialize_pem()) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca_pem).unwrap();
    let (_dir, path) = manifest(&function(
        "events",
        guests::SPIN_EVENTS,
        &["/events/*"],
        &format!(
            "allowed_outbound_hosts = [\"postgres://localhost:{port}\"]\nvariables = {{ database_url = \"postgres://postgres@localhost:{port}/postgres?sslmode=require\" }}",
            port = pg.port
        ),
    ));

    // Without the CA the host does not trust the server, and says so.
    let untrusting = Server::start_with(&path, &[]);
    let r = post(&untrusting.url("/events/setup"), "").await;
    assert_eq!(r.status, 500, "{}", r.text());
    assert!(r.text().contains("certificate"), "{}", r.text());

    // With it (`--ca-file`, as for outbound HTTPS), the connection is TLS.
    let trusting = Server::start_with(&path, &["--ca-file", ca_file.to_str().unwrap()]);
    let r = post(&trusting.url("/events/setup"), "").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let (client, connection) = tokio_postgres::connect(&pg.url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let encrypted: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE s.ssl AND a.backend_type = 'client backend'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(encrypted >= 1, "the host's pooled connection is over TLS");
}
