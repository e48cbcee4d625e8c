//! What a slow or silent client can hold: a socket that sends nothing, headers that never
//! finish and a body that stops half-way are each closed after the HTTP time-out, and no
//! more connections than the cap are served at once (the next waits, then is served).

mod common;

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn connect(app: &common::TestApp) -> TcpStream {
    TcpStream::connect(app.address.trim_start_matches("http://"))
        .await
        .unwrap()
}

/// Everything the server sends until it closes the connection, or `None` if it is still
/// open after `patience` (far longer than the 1 s time-out the test servers run with).
async fn read_until_closed(s: &mut TcpStream, patience: Duration) -> Option<String> {
    let mut out = Vec::new();
    match tokio::time::timeout(patience, s.read_to_end(&mut out)).await {
        Ok(_) => Some(String::from_utf8_lossy(&out).into_owned()),
        Err(_) => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_and_slow_clients_are_cut_off() {
    let app = common::spawn_app_with(common::Db::Sqlite, &[("RAPPORT_HTTP_TIMEOUT", "1s")])
        .await
        .unwrap();
    let patience = Duration::from_secs(20);

    // Connects and says nothing.
    let mut idle = connect(&app).await;
    assert!(
        read_until_closed(&mut idle, patience).await.is_some(),
        "an idle socket is closed"
    );

    // Headers that never end.
    let mut slow = connect(&app).await;
    slow.write_all(b"POST /subscribe HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n")
        .await
        .unwrap();
    assert!(
        read_until_closed(&mut slow, patience).await.is_some(),
        "unfinished headers"
    );

    // A body that stops after 10 of 100 bytes: answered with a 408 and closed.
    let mut partial = connect(&app).await;
    partial
        .write_all(b"POST /subscribe HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\nemail=a%40")
        .await
        .unwrap();
    let answer = read_until_closed(&mut partial, patience)
        .await
        .expect("a stalled body is cut off");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert_eq!(app.store.profile_count().await.unwrap(), 0);

    // A person's request on a fresh connection is still served.
    assert_eq!(app.get("/healthz").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_cap_wait_their_turn() {
    let app = common::spawn_app_with(
        common::Db::Sqlite,
        &[
            ("RAPPORT_MAX_CONNECTIONS", "2"),
            ("RAPPORT_HTTP_TIMEOUT", "30s"),
        ],
    )
    .await
    .unwrap();
    let mut first = connect(&app).await;
    let _second = connect(&app).await;
    // Both slots are taken (by sockets that say nothing yet): a third request waits.
    let mut third = connect(&app).await;
    third
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 64];
    assert!(
        tokio::time::timeout(Duration::from_millis(500), third.read(&mut buf))
            .await
            .is_err(),
        "not served while two connections are open"
    );
    // One of them finishes: the third is served.
    first
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let answer = read_until_closed(&mut first, Duration::from_secs(20))
        .await
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let answer = read_until_closed(&mut third, Duration::from_secs(20))
        .await
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}
