//! Click redirects under wrk on loopback, beside a bare axum handler that answers the same
//! 302 in the same run: `rapport serve` verifies the signed token, finds the stored link
//! (from memory after the first time) and queues the click for the batched writer.
//! Run: `cargo build --release && cargo bench --bench click` (needs wrk).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use rapport::profile::{Answers, Email, Status};
use rapport::store::Store;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wrk(url: &str) -> String {
    let out = Command::new("wrk")
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
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let bin = root.join("target/release/rapport");
    assert!(
        bin.exists(),
        "build the release binary first: cargo build --release"
    );
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("bench.db").display());
    let store = Store::connect(&db).await.unwrap();
    store.migrate().await.unwrap();
    let learner = Answers {
        engagement: Some("learner".into()),
        employees: Some(5),
        ..Answers::default()
    };
    store
        .insert_profiles(
            &[(Email::parse("clicker@example.com").unwrap(), learner)],
            Status::Subscribed,
            "bench",
        )
        .await
        .unwrap();
    Command::new(&bin)
        .arg("--dir")
        .arg(root)
        .args(["--database-url", &db, "run", "newsletter"])
        .output()
        .unwrap();
    let outbox = dir.path().join("outbox");
    let port = free_port();
    let mut serve = Command::new(&bin)
        .arg("--dir")
        .arg(root)
        .args([
            "--database-url",
            &db,
            "serve",
            "--bind",
            &format!("127.0.0.1:{port}"),
        ])
        .env("RAPPORT_OUTBOX_DIR", &outbox)
        .env("RAPPORT_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut link = None;
    for _ in 0..200 {
        if let Some(Ok(e)) = std::fs::read_dir(&outbox).ok().and_then(|mut d| d.next()) {
            let raw = std::fs::read(e.path()).unwrap();
            let mail = mailparse::parse_mail(&raw).unwrap();
            let html = mail
                .subparts
                .iter()
                .find(|p| p.ctype.mimetype == "text/html")
                .unwrap()
                .get_body()
                .unwrap();
            let start = html.find("/c/").unwrap();
            let begin = html[..start].rfind("href=\"").unwrap() + 6;
            link = Some(html[begin..begin + html[begin..].find('"').unwrap()].to_string());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let link = link.expect("the newsletter was sent");
    println!("rapport click redirect ({link}):\n{}", wrk(&link));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let clicks: i64 =
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM events WHERE kind = 'click'")
            .fetch_one(&{
                sqlx::any::install_default_drivers();
                sqlx::AnyPool::connect(&db).await.unwrap()
            })
            .await
            .unwrap();
    println!("clicks recorded: {clicks}");
    let _ = serve.kill();
    let _ = serve.wait();

    // The same 302 from a bare axum handler, in this process.
    let bare_port = free_port();
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
    let bare = format!("http://127.0.0.1:{bare_port}/c/x");
    let bare_result = tokio::task::spawn_blocking(move || wrk(&bare))
        .await
        .unwrap();
    println!("bare axum 302:\n{bare_result}");
}
