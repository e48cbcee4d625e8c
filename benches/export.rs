//! Response-rate export over a large event table: 200,000 subscribers, one newsletter run
//! delivered to all, and 10,000,000 events (opens, clicks, some automated, feedback,
//! unsubscribes) spread over the deliveries; then `rapport export response-rates` by
//! campaign, by run and by segment, timed; then `rapport export feedback` over the
//! 1,000,000 "was this useful?" votes among them (several per message, some automated)
//! and 50,000 comments. The events are generated in SQL (a recursive CTE) because
//! inserting ten million rows one by one would take longer than the export.
//! Run: `cargo build --release && cargo bench --bench export` (`EVENTS=N` to change).

mod common;

use std::time::Instant;

use rapport::profile::{Answers, Email, Status};
use rapport::store::Store;

#[tokio::main]
async fn main() {
    let root = common::root();
    let events: i64 = common::knob("EVENTS", 10_000_000);
    let people = 200_000usize;
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("export.db").display());
    let store = Store::open(&db).await.unwrap();
    let t = Instant::now();
    let rows: Vec<(Email, Answers)> = (0..people)
        .map(|i| {
            let a = Answers {
                employees: Some((i % 300) as i64 + 1),
                engagement: Some(["learner", "connector", "collaborator"][i % 3].into()),
                ..Answers::default()
            };
            (Email::parse(&format!("p{i}@export.example")).unwrap(), a)
        })
        .collect();
    store
        .insert_profiles(&rows, Status::Subscribed, "demo")
        .await
        .unwrap();
    let ids: Vec<i64> = (1..=people as i64).collect();
    let (run_id, _) = store
        .demo_run("newsletter", "2026-11-01T09:00:00Z", 1_790_000_000, &ids)
        .await
        .unwrap();
    sqlx::any::install_default_drivers();
    let raw = sqlx::AnyPool::connect(&db).await.unwrap();
    let sql = format!(
        "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < {last}) \
         INSERT INTO events (profile_id, kind, campaign, run_id, delivery_id, link_id, tag, value, automated, created_at) \
         SELECT 1 + i % {people}, CASE i % 10 WHEN 0 THEN 'click' WHEN 1 THEN 'click' WHEN 2 THEN 'feedback' ELSE 'open' END, \
         'newsletter', {run_id}, 1 + i % {people}, NULL, CASE i % 10 WHEN 0 THEN 'training' ELSE NULL END, \
         CASE i % 10 WHEN 2 THEN CASE WHEN i % 7 = 0 THEN 'no' ELSE 'yes' END ELSE NULL END, \
         CASE WHEN i % 13 = 0 THEN 1 ELSE 0 END, 1790000000 + i % 864000 FROM n",
        last = events - 1
    );
    sqlx::query(&sql).execute(&raw).await.unwrap();
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM events")
        .fetch_one(&raw)
        .await
        .unwrap();
    println!(
        "filled {people} profiles, 1 run, {n} events in {:.1?}",
        t.elapsed()
    );
    for by in ["campaign", "run", "segment"] {
        let t = Instant::now();
        let csv = export(root, &db, &["response-rates", "--by", by]);
        println!(
            "export response-rates --by {by}: {:.2} s, {} row(s); first: {}",
            t.elapsed().as_secs_f64(),
            csv.lines().count() - 1,
            csv.lines().nth(1).unwrap_or("")
        );
    }

    let comments = format!(
        "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 49999) \
         INSERT INTO events (profile_id, kind, campaign, run_id, delivery_id, value, automated, created_at) \
         SELECT 1 + (i * 4) % {people}, 'feedback', 'newsletter', {run_id}, 1 + (i * 4) % {people}, \
         'comment: More on invoicing, please (' || i || ')', 0, 1790900000 + i FROM n"
    );
    sqlx::query(&comments).execute(&raw).await.unwrap();
    let votes: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM events WHERE kind = 'feedback' AND value IN ('yes', 'no')",
    )
    .fetch_one(&raw)
    .await
    .unwrap();
    let t = Instant::now();
    let csv = export(root, &db, &["feedback"]);
    println!(
        "export feedback over {votes} votes and 50,000 comments: {:.2} s, {} counted vote(s); first: {}",
        t.elapsed().as_secs_f64(),
        csv.lines().count() - 1,
        csv.lines().nth(1).unwrap_or("")
    );
}

/// Runs `rapport export ARGS...` on the database and returns its CSV (fails loudly).
fn export(root: &std::path::Path, db: &str, args: &[&str]) -> String {
    let mut all = vec!["export"];
    all.extend_from_slice(args);
    common::rapport(root, db, &all)
}
