//! Click redirects under wrk on loopback, beside a bare axum handler that answers the same
//! 302 in the same run: `rapport serve` verifies the signed token, finds the stored link
//! (from memory after the first time) and queues the click for the batched writer, which
//! classifies it and starts the follow-up. CLICKERS (default 2,000) people received the
//! newsletter; each request clicks the first link of one of their messages, chosen at
//! random, more than five seconds after sending (so the clicks count as people's). The bare
//! handler gets the same requests from the same wrk script, so that wrk spends the same
//! CPU per request on both sides of the comparison (a Lua `request` function costs wrk far
//! more than a fixed request, and wrk shares the two cores with the server).
//! Run: `cargo build --release && cargo bench --bench click` (needs wrk).

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use rapport::profile::{Answers, Email, Status};
use rapport::store::Store;

/// wrk against `url`, or against random paths of `paths` on `url`'s host.
fn wrk(url: &str, script: Option<&Path>) -> String {
    let mut cmd = Command::new("wrk");
    if let Some(s) = script {
        cmd.arg("-s").arg(s);
    }
    let out = cmd
        .args([
            "-t2",
            "-c64",
            "-d10s",
            "--latency",
            "-H",
            "User-Agent: Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0",
            url,
        ])
        .output()
        .expect("wrk (apt-get install wrk)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.lines()
        .filter(|l| l.contains("Requests/sec") || l.contains("99%") || l.contains("requests in"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::main]
async fn main() {
    let root = common::root();
    let bin = common::release_binary();
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("bench.db").display());
    let store = Store::open(&db).await.unwrap();
    let clickers: usize = common::knob("CLICKERS", 2_000);
    let learner = Answers {
        engagement: Some("learner".into()),
        employees: Some(5),
        ..Answers::default()
    };
    let people: Vec<(Email, Answers)> = (0..clickers)
        .map(|i| {
            (
                Email::parse(&format!("clicker{i}@example.com")).unwrap(),
                learner.clone(),
            )
        })
        .collect();
    store
        .insert_profiles(&people, Status::Subscribed, "bench")
        .await
        .unwrap();
    Command::new(&bin)
        .arg("--dir")
        .arg(root)
        .args(["--database-url", &db, "run", "newsletter"])
        .output()
        .unwrap();
    let outbox = dir.path().join("outbox");
    let (mut serve, port) = common::serve(root, &db, &outbox, &[]);
    for _ in 0..600 {
        let sent = std::fs::read_dir(&outbox).map(|d| d.count()).unwrap_or(0);
        if sent >= clickers {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Clicks within five seconds of sending are a scanner's (track::automated).
    tokio::time::sleep(Duration::from_secs(6)).await;
    let mut paths = Vec::new();
    for e in std::fs::read_dir(&outbox).unwrap() {
        let raw = std::fs::read(e.unwrap().path()).unwrap();
        let mail = mailparse::parse_mail(&raw).unwrap();
        let html = mail
            .subparts
            .iter()
            .find(|p| p.ctype.mimetype == "text/html")
            .unwrap()
            .get_body()
            .unwrap();
        let start = html.find("/c/").unwrap();
        let end = start + html[start..].find('"').unwrap();
        paths.push(html[start..end].to_string());
    }
    assert_eq!(paths.len(), clickers, "every newsletter was sent");
    let script = dir.path().join("clicks.lua");
    std::fs::write(
        &script,
        format!(
            "local paths = {{{}}}\nrequest = function()\n  return wrk.format(nil, paths[math.random(#paths)])\nend\n",
            common::lua_strings(&paths)
        ),
    )
    .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    println!(
        "rapport click redirect ({clickers} people's links, e.g. {base}{}):\n{}",
        paths[0],
        wrk(&base, Some(&script))
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let count = |sql: &'static str| {
        let db = db.clone();
        async move {
            sqlx::any::install_default_drivers();
            let pool = sqlx::AnyPool::connect(&db).await.unwrap();
            sqlx::query_scalar::<_, i64>(sql)
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    println!(
        "clicks recorded: {} ({} counted as people's); follow-ups queued: {}",
        count("SELECT COUNT(*) FROM events WHERE kind = 'click'").await,
        count("SELECT COUNT(*) FROM events WHERE kind = 'click' AND automated = 0").await,
        count("SELECT COUNT(*) FROM deliveries WHERE campaign = 'training-follow-up'").await,
    );
    let _ = serve.kill();
    let _ = serve.wait();

    // The same 302 from a bare axum handler, in this process.
    let bare_port = common::free_port();
    let target = "https://learn.contoso.example/courses/invoicing".to_string();
    let app = axum::Router::new().route(
        "/c/{token}",
        axum::routing::get(move || {
            let t = target.clone();
            async move {
                (
                    axum::http::StatusCode::FOUND,
                    [(axum::http::header::LOCATION, t)],
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", bare_port))
        .await
        .unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    // The same requests (the same script, so wrk does the same work per request).
    let bare = format!("http://127.0.0.1:{bare_port}");
    let bare_result = tokio::task::spawn_blocking(move || wrk(&bare, Some(&script)))
        .await
        .unwrap();
    println!("bare axum 302:\n{bare_result}");
}
