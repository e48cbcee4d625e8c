//! Webhook fan-out: HOOKS (default 20,000) `clicked` events queued in SQLite (or
//! `DATABASE_URL`), sent by the release `rapport serve` to a local receiver (axum, 204),
//! beside a bare reqwest loop that POSTs the same number of bodies of the same size to the
//! same receiver with the same concurrency (32) in the same run: the ceiling of this
//! machine. Prints webhooks/s for both and their ratio, and checks each event arrived once.
//! Goal (issue 18): 2,000 webhooks/s to a local receiver.
//!
//! Run: `cargo build --release && cargo bench --bench webhooks`.

mod common;

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use rapport::store::{HookNote, Store};

/// Counts requests and the ids it saw; answers 204.
async fn receiver(port: u16, count: Arc<AtomicUsize>, ids: Arc<std::sync::Mutex<Vec<String>>>) {
    use axum::routing::post;
    let app = axum::Router::new().route(
        "/hooks",
        post(move |headers: axum::http::HeaderMap, _body: String| {
            let count = count.clone();
            let ids = ids.clone();
            async move {
                if let Some(id) = headers
                    .get("rapport-event-id")
                    .and_then(|v| v.to_str().ok())
                {
                    ids.lock().unwrap().push(id.to_string());
                }
                count.fetch_add(1, Ordering::Relaxed);
                axum::http::StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    axum::serve(listener, app).await.unwrap();
}

async fn wait_for(count: &AtomicUsize, n: usize) -> Duration {
    let mut started = None;
    loop {
        let c = count.load(Ordering::Relaxed);
        if c > 0 && started.is_none() {
            started = Some(Instant::now());
        }
        if c >= n {
            return started.unwrap().elapsed();
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

fn main() {
    common::block_on_two_threads(run());
}

async fn run() {
    let root = common::root();
    let n: usize = common::knob("HOOKS", 20_000);
    let dir = tempfile::tempdir().unwrap();
    let db = common::database_url(dir.path());
    let port = common::free_port();
    let url = format!("http://127.0.0.1:{port}/hooks");
    let project = tempfile::tempdir().unwrap();
    for sub in ["segments", "templates"] {
        Command::new("cp")
            .arg("-r")
            .arg(root.join(sub))
            .arg(project.path())
            .status()
            .unwrap();
    }
    let mut toml = std::fs::read_to_string(root.join("campaigns.toml")).unwrap();
    toml.push_str(&format!(
        "\n[[webhook]]\nurl = \"{url}\"\nevents = [\"clicked\"]\nsecret_env = \"BENCH_HOOK_SECRET\"\n"
    ));
    std::fs::write(project.path().join("campaigns.toml"), toml).unwrap();
    let site = rapport::site::Site::load(project.path()).unwrap();
    let store = Store::open(&db).await.unwrap();
    store.set_hook_routes(rapport::webhook::routes(&site.project));
    common::subscribers(&store, 1_000).await;
    let first: i64 = sqlx::query_scalar("SELECT MIN(id) FROM profiles")
        .fetch_one(&common::pool(&db).await)
        .await
        .unwrap();
    let notes: Vec<HookNote> = (0..n)
        .map(|i| HookNote {
            profile_id: first + (i % 1_000) as i64,
            data: serde_json::json!({"campaign": "newsletter",
                "url": "https://learn.contoso.example/courses/bookkeeping-101", "tag": "training"}),
        })
        .collect();
    store
        .queue_hooks_now(
            rapport::event::HookEvent::Clicked,
            &notes,
            rapport::store::now(),
        )
        .await
        .unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let ids = Arc::new(std::sync::Mutex::new(Vec::new()));
    tokio::spawn(receiver(port, count.clone(), ids.clone()));
    tokio::time::sleep(Duration::from_millis(200)).await;

    let (mut serve, _) = common::serve(
        project.path(),
        &db,
        &dir.path().join("outbox"),
        &[("BENCH_HOOK_SECRET", "whsec")],
    );
    let took = wait_for(&count, n).await;
    serve.kill().unwrap();
    serve.wait().unwrap();
    let rapport = n as f64 / took.as_secs_f64();
    let mut seen = ids.lock().unwrap().clone();
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), n, "each event once");

    // The ceiling: the same number of POSTs of a body of the same size, 32 at a time.
    count.store(0, Ordering::Relaxed);
    let client = reqwest::Client::new();
    let body = format!(
        "{{\"id\":\"{}\",\"type\":\"clicked\",\"at\":\"2027-01-15T08:00:00Z\",\"data\":{{\"campaign\":\"newsletter\",\"email\":\"p1@bench.example\",\"tag\":\"training\",\"url\":\"https://learn.contoso.example/courses/bookkeeping-101\"}}}}",
        uuid::Uuid::new_v4()
    );
    let started = Instant::now();
    futures_util::stream::iter(0..n)
        .map(|_| {
            let client = client.clone();
            let body = body.clone();
            let url = url.clone();
            async move {
                client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                    .unwrap();
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await;
    let bare = n as f64 / started.elapsed().as_secs_f64();
    println!(
        "{n} webhooks: rapport {rapport:.0}/s (first to last received), bare reqwest {bare:.0}/s, ratio {:.2}",
        rapport / bare
    );
}
