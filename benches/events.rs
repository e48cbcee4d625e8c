//! `POST /api/v1/events` under wrk on loopback: batches of 100 events (`course_completed`
//! for 100 different people of PEOPLE, default 10,000) from another system, against the
//! release `rapport serve`, beside a bare axum handler that reads the same JSON body and
//! answers 200 in the same run (the HTTP and JSON ceiling of this machine). Prints events/s
//! for both and their ratio, and checks that every event was stored.
//! Goal (issue 18): 50,000 events/s on SQLite on two cores.
//!
//! Run: `cargo build --release && cargo bench --bench events` (needs wrk); with
//! `DATABASE_URL=postgres://...` on PostgreSQL.

mod common;

use std::process::Command;
use std::time::Duration;

use rapport::store::Store;

const BATCH: usize = 100;

/// wrk POSTing the body in `script`'s folder to `url`: (requests/s, non-2xx, requests).
fn wrk(url: &str, script: &std::path::Path) -> (f64, u64, u64) {
    let out = Command::new("wrk")
        .arg("-s")
        .arg(script)
        .args(["-t2", "-c32", "-d10s", url])
        .output()
        .expect("wrk (apt-get install wrk)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let rate = text
        .lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("wrk said: {text}"));
    let bad = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Non-2xx or 3xx responses:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let requests = text
        .lines()
        .find_map(|l| {
            l.split_once(" requests in")
                .map(|(n, _)| n.trim().to_string())
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    (rate, bad, requests)
}

async fn bare(port: u16) {
    use axum::routing::post;
    let app = axum::Router::new().route(
        "/api/v1/events",
        post(|body: axum::Json<serde_json::Value>| async move {
            let n = body["events"].as_array().map_or(0, Vec::len);
            axum::Json(serde_json::json!({ "recorded": n, "unknown_people": 0 }))
        }),
    );
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    axum::serve(listener, app).await.unwrap();
}

fn main() {
    common::block_on_two_threads(run());
}

async fn run() {
    let root = common::root();
    let bin = common::release_binary();
    let dir = tempfile::tempdir().unwrap();
    let db = common::database_url(dir.path());
    let store = Store::open(&db).await.unwrap();
    let people: usize = common::knob("PEOPLE", 10_000);
    common::subscribers(&store, people).await;
    let token = Command::new(&bin)
        .arg("--dir")
        .arg(root)
        .args([
            "--database-url",
            &db,
            "token",
            "create",
            "lms",
            "--scopes",
            "events:write",
        ])
        .output()
        .unwrap();
    let token = String::from_utf8_lossy(&token.stdout).trim().to_string();
    assert!(token.starts_with("rpt_"), "a token: {token}");
    // Each request: 100 events for 100 different people, so that a run covers them all.
    let bodies: Vec<String> = (0..people / BATCH)
        .map(|b| {
            let events: Vec<serde_json::Value> = (0..BATCH)
                .map(|i| {
                    serde_json::json!({"email": format!("p{}@bench.example", b * BATCH + i),
                        "name": "course_completed", "properties": {"course": "bookkeeping-101"}})
                })
                .collect();
            serde_json::json!({ "events": events }).to_string()
        })
        .collect();
    let script = dir.path().join("events.lua");
    std::fs::write(
        &script,
        format!(
            "local bodies = {{{}}}\nlocal n = 0\nwrk.method = \"POST\"\nwrk.headers[\"Content-Type\"] = \"application/json\"\nwrk.headers[\"Authorization\"] = \"Bearer {token}\"\nrequest = function()\n  n = n + 1\n  return wrk.format(nil, nil, nil, bodies[(n % #bodies) + 1])\nend\n",
            common::lua_strings(&bodies)
        ),
    )
    .unwrap();
    let (mut serve, port) = common::serve(
        root,
        &db,
        &dir.path().join("outbox"),
        &[("RAPPORT_API_RATE", "1000000"), ("RAPPORT_WORKER", "off")],
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let bare_port = common::free_port();
    tokio::spawn(bare(bare_port));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let url = |p: u16| format!("http://127.0.0.1:{p}/api/v1/events");
    let mut taken = 0;
    for round in 1..=2 {
        let (r, bad, requests) = wrk(&url(port), &script);
        taken += requests as i64 * BATCH as i64;
        assert_eq!(bad, 0, "every batch taken");
        let (b, _, _) = wrk(&url(bare_port), &script);
        println!(
            "round {round}: rapport {:.0} events/s ({requests} batches of {BATCH}), bare axum {:.0} events/s, ratio {:.2}",
            r * BATCH as f64,
            b * BATCH as f64,
            r / b
        );
    }
    serve.kill().unwrap();
    serve.wait().unwrap();
    let stored: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM events WHERE kind = 'external'")
        .fetch_one(&common::pool(&db).await)
        .await
        .unwrap();
    println!("stored {stored} events ({taken} answered 200)");
    assert!(stored >= taken, "every event answered for is stored");
}
