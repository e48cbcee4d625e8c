//! Segment evaluation over a large store: fills a SQLite database with N subscribed
//! profiles (default 1,000,000; `PROFILES=N` to change) and click events for one in
//! twenty, then selects the example's `small-learners` audience (a number test, a nested
//! `any` and a behaviour test): counted, and paged through in id order as a run does.
//! Run: `cargo bench --bench segments`.

mod common;

use std::time::Instant;

use rapport::profile::Answers;
use rapport::store::{AudienceQuery, EventKind, Store, now};

#[tokio::main]
async fn main() {
    let n: usize = common::knob("PROFILES", 1_000_000);
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("bench.db").display());
    let store = Store::connect(&url).await.unwrap();
    store.migrate().await.unwrap();
    let root = common::root();
    let site = rapport::site::Site::load(root).expect("example project loads");
    let seg = site.segments.get("small-learners").unwrap();

    let t = Instant::now();
    let engagements = ["learner", "connector", "collaborator"];
    let industries = ["retail", "manufacturing", "healthcare", "other"];
    common::people(&store, n, |i| Answers {
        name: Some(format!("Person {i}")),
        employees: (i % 7 != 0).then_some((i % 300) as i64 + 1),
        engagement: (i % 5 != 0).then(|| engagements[i % 3].to_string()),
        industry: Some(industries[i % 4].to_string()),
        ..Answers::default()
    })
    .await;
    for id in (1..=n as i64).step_by(20) {
        store
            .record_event(
                id,
                EventKind::Click,
                Some("welcome"),
                Some("training"),
                now(),
            )
            .await
            .unwrap();
    }
    eprintln!("filled {n} profiles in {:.1?}", t.elapsed());

    for round in 1..=3 {
        let q = AudienceQuery::new(&seg.rule, now());
        let t = Instant::now();
        let count = store.audience_count(&q).await.unwrap();
        let counted = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let (mut after, mut paged) = (0, 0usize);
        loop {
            let page = store.audience_page(&q, after, 10_000).await.unwrap();
            let Some(last) = page.last() else { break };
            after = *last;
            paged += page.len();
        }
        let secs = t.elapsed().as_secs_f64();
        assert_eq!(paged as i64, count);
        println!(
            "round {round}: small-learners over {n} profiles: {count} matched; count {counted:.2} s, all ids paged {secs:.2} s"
        );
    }
}
