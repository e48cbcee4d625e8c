//! The library inside a sending run: PROFILES (100,000) people with topics and industries,
//! ITEMS (1,000) library items, 3 per newsletter, against the same run of the same people
//! without a library, side by side: plain, library, plain, library (ROUNDS pairs), each on a
//! fresh SQLite database, a release `rapport serve` sending to Postfix's smtp-sink.
//!
//! For each run: messages/s from the first message accepted to the last delivery recorded,
//! and `serve`'s CPU per message; then per pair the ratio library / plain.
//!
//! Run: `cargo build --release && cargo bench --bench library` (needs smtp-sink).

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use rapport::profile::Answers;
use rapport::store::Store;

const TOPICS: [&str; 5] = ["training", "security", "growth", "community", "experts"];
const INDUSTRIES: [&str; 4] = [
    "retail",
    "professional_services",
    "manufacturing",
    "healthcare",
];
const SEGMENTS: [&str; 3] = ["small-learners", "connectors", "collaborators"];

/// A copy of the example project; with `items`, a library of that many items and three
/// per newsletter, else no library at all.
fn project(items: Option<usize>) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for sub in ["segments", "templates"] {
        let ok = Command::new("cp")
            .arg("-r")
            .arg(common::root().join(sub))
            .arg(dir.path())
            .status()
            .unwrap()
            .success();
        assert!(ok, "copy {sub}");
    }
    let toml = std::fs::read_to_string(common::root().join("campaigns.toml")).unwrap();
    let content = dir.path().join("content");
    std::fs::create_dir(&content).unwrap();
    let toml = match items {
        Some(n) => {
            for i in 0..n {
                let topics = format!("\"{}\", \"{}\"", TOPICS[i % 5], TOPICS[(i / 5) % 5]);
                let mut extra = String::new();
                if i % 7 == 0 {
                    extra.push_str(&format!("segments = [\"{}\"]\n", SEGMENTS[i % 3]));
                }
                if i % 11 == 0 {
                    extra.push_str(&format!("industries = [\"{}\"]\n", INDUSTRIES[i % 4]));
                }
                if i % 2 == 0 {
                    extra.push_str(["level = \"beginner\"\n", "level = \"advanced\"\n"][i % 4 / 2]);
                }
                std::fs::write(
                    content.join(format!("item-{i:04}.md")),
                    format!(
                        "+++\ntitle = \"Guide number {i}\"\nurl = \"https://learn.example/guides/{i}\"\ntopics = [{topics}]\n{extra}published = 2025-{:02}-{:02}\n+++\nWhat guide {i} covers, in **two** short sentences. Read it in five minutes.\n",
                        1 + i % 12,
                        1 + i % 28
                    ),
                )
                .unwrap();
            }
            toml
        }
        None => toml
            .replacen("[campaign.library]", "", 1)
            .replacen("items = 3", "", 1),
    };
    std::fs::write(dir.path().join("campaigns.toml"), toml).unwrap();
    dir
}

/// One end-to-end run on the project in `dir`: (messages/s, serve CPU µs per message,
/// messages whose library items were recorded).
async fn run(dir: &Path, n: usize, port: u16) -> (f64, f64, i64) {
    let db_dir = tempfile::tempdir().unwrap();
    let db = common::database_url(db_dir.path());
    let store = Store::open(&db).await.unwrap();
    let engagements = ["learner", "connector", "collaborator"];
    common::people(&store, n, |i| Answers {
        name: Some(format!("Person{i} Example")),
        employees: Some((i % 200) as i64 + 1),
        engagement: Some(engagements[i % 3].to_string()),
        industry: Some(INDUSTRIES[i % 4].to_string()),
        topics: Some(vec![
            TOPICS[i % 5].to_string(),
            TOPICS[(i / 3) % 5].to_string(),
        ]),
        ..Answers::default()
    })
    .await;
    common::rapport(dir, &db, &["run", "newsletter"]);
    let run_id = store.runs_of("newsletter").await.unwrap()[0].0;
    let smtp = format!("smtp://127.0.0.1:{port}");
    let (child, _) = common::serve(
        dir,
        &db,
        &db_dir.path().join("outbox"),
        &[("RAPPORT_SMTP_URL", &smtp), ("RAPPORT_SMTP_POOL", "16")],
    );
    let serve = common::Kill(child);
    let watch = common::pool(&db).await;
    let mut first: Option<(Instant, f64)> = None;
    loop {
        tokio::time::sleep(Duration::from_millis(20)).await;
        if first.is_none() && common::any_sent(&watch).await {
            first = Some((Instant::now(), common::cpu_seconds(serve.0.id())));
        }
        let p = store.run_progress(run_id).await.unwrap();
        if p.finished() {
            let (t, cpu_before) = first.unwrap_or((Instant::now(), 0.0));
            let secs = t.elapsed().as_secs_f64();
            let cpu = common::cpu_seconds(serve.0.id()) - cpu_before;
            let items: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM library_sent")
                .fetch_one(&watch)
                .await
                .unwrap();
            assert_eq!(p.failed, 0, "no message may fail");
            return (p.sent as f64 / secs, cpu * 1e6 / p.sent as f64, items);
        }
    }
}

fn main() {
    common::block_on_two_threads(async {
        let n: usize = common::knob("PROFILES", 100_000);
        let items: usize = common::knob("ITEMS", 1_000);
        let rounds: usize = common::knob("ROUNDS", 2);
        let port = common::free_port();
        let _sink = common::sink(port, None);
        let plain = project(None);
        let library = project(Some(items));
        println!("{n} people; a library of {items} items, 3 per message; smtp-sink on loopback");
        let mut ratios = Vec::new();
        for round in 1..=rounds {
            let (a, a_cpu, _) = run(plain.path(), n, port).await;
            println!(
                "round {round}, no library: {a:.0} msg/s, serve {a_cpu:.0} µs CPU per message"
            );
            let (b, b_cpu, sent_items) = run(library.path(), n, port).await;
            println!(
                "round {round}, library: {b:.0} msg/s, serve {b_cpu:.0} µs CPU per message ({sent_items} messages' items recorded)"
            );
            ratios.push(b / a);
            println!("round {round}: library / no library = {:.3}", b / a);
        }
        let mean = ratios.iter().sum::<f64>() / ratios.len() as f64;
        println!("mean ratio library / no library over {rounds} round(s): {mean:.3}");
    });
}
