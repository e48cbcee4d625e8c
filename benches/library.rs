//! The library inside a sending run: PROFILES (100,000) people with topics and industries,
//! ITEMS (1,000) library items, 3 per newsletter, against two runs of the same people
//! without a library, side by side (ROUNDS rounds of three runs), each on a fresh SQLite
//! database, a release `rapport serve` sending to Postfix's smtp-sink:
//!
//! - no items: the example newsletter without its library block (smaller messages, three
//!   tracked links fewer);
//! - items written: the same newsletter with three items written into its template, the
//!   markup the library block renders: as many bytes and tracked links per message as the
//!   library run, chosen by nobody. Library / this run is the cost of the library itself
//!   (selection, per-person items, recording what was sent); library / "no items" adds
//!   the cost of sending a bigger message.
//!
//! For each run: messages/s from the first message accepted to the last delivery recorded,
//! and `serve`'s CPU per message; then per round both ratios.
//!
//! Run: `cargo build --release && cargo bench --bench library` (needs smtp-sink).

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Instant;

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

/// What the newsletter of a run holds besides its sections.
#[derive(Clone, Copy)]
enum Newsletter {
    /// No library, and the template's library block renders nothing.
    NoItems,
    /// No library; three items written into the template where the block was.
    Written,
    /// A library of this many items, three per newsletter.
    Library(usize),
}

/// A copy of the example project whose newsletter is `kind`.
fn project(kind: Newsletter) -> tempfile::TempDir {
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
    let toml = match kind {
        Newsletter::Library(n) => {
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
        Newsletter::NoItems | Newsletter::Written => toml
            .replacen("[campaign.library]", "", 1)
            .replacen("items = 3", "", 1),
    };
    if let Newsletter::Written = kind {
        // The same newsletter with three items written into the template: as many bytes
        // and tracked links as a library newsletter, chosen by no library.
        let path = dir.path().join("templates/newsletter.hbs");
        let hbs = std::fs::read_to_string(&path).unwrap();
        let (start, end) = (
            hbs.find("{{#if library}}").unwrap(),
            hbs.find("{{/if}}\n<p>Questions?").unwrap() + "{{/if}}\n".len(),
        );
        let mut fixed = String::from("<h2>Picked for you</h2>\n");
        for i in [101, 202, 303] {
            fixed.push_str(&format!(
                "<h3><a href=\"https://learn.example/guides/{i}\">Guide number {i}</a></h3>\n<p>What guide {i} covers, in <strong>two</strong> short sentences. Read it in five minutes.</p>\n"
            ));
        }
        std::fs::write(&path, format!("{}{fixed}{}", &hbs[..start], &hbs[end..])).unwrap();
    }
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
    let mut first = None;
    let p = common::finish_run(&store, &watch, run_id, || {
        first = Some((
            Instant::now(),
            common::cpu_seconds(serve.0.id()),
            common::cpu_by_thread(serve.0.id()),
        ));
    })
    .await;
    let (t, cpu_before, (threads_before, faults_before)) =
        first.unwrap_or_else(|| (Instant::now(), 0.0, Default::default()));
    let secs = t.elapsed().as_secs_f64();
    let cpu = common::cpu_seconds(serve.0.id()) - cpu_before;
    // Where serve's time went, by kind of thread, and how often it faulted in a page.
    let (threads, faults) = common::cpu_by_thread(serve.0.id());
    let per_message = |s: f64| s * 1e6 / p.sent.max(1) as f64;
    let split: Vec<String> = threads
        .iter()
        .map(|(name, s)| {
            let before = threads_before.get(name).copied().unwrap_or(0.0);
            format!("{name} {:.0} µs", per_message(s - before))
        })
        .filter(|s| !s.ends_with(" 0 µs"))
        .collect();
    println!(
        "    serve per message: {}; {:.2} minor page faults",
        split.join(", "),
        (faults - faults_before) / p.sent.max(1) as f64
    );
    let items: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM deliveries WHERE library_urls IS NOT NULL")
            .fetch_one(&watch)
            .await
            .unwrap();
    assert_eq!(p.failed, 0, "no message may fail");
    (p.sent as f64 / secs, cpu * 1e6 / p.sent as f64, items)
}

fn main() {
    common::block_on_two_threads(async {
        let n: usize = common::knob("PROFILES", 100_000);
        let items: usize = common::knob("ITEMS", 1_000);
        let rounds: usize = common::knob("ROUNDS", 2);
        let port = common::free_port();
        let _sink = common::sink(port, None);
        let plain = project(Newsletter::NoItems);
        let written = project(Newsletter::Written);
        let library = project(Newsletter::Library(items));
        println!("{n} people; a library of {items} items, 3 per message; smtp-sink on loopback");
        let mut ratios = Vec::new();
        let mut against_plain = Vec::new();
        for round in 1..=rounds {
            let (a, a_cpu, _) = run(plain.path(), n, port).await;
            println!(
                "round {round}, no library: {a:.0} msg/s, serve {a_cpu:.0} µs CPU per message"
            );
            let (w, w_cpu, _) = run(written.path(), n, port).await;
            println!(
                "round {round}, three items written in the template: {w:.0} msg/s, serve {w_cpu:.0} µs CPU per message"
            );
            let (b, b_cpu, sent_items) = run(library.path(), n, port).await;
            println!(
                "round {round}, library: {b:.0} msg/s, serve {b_cpu:.0} µs CPU per message ({sent_items} messages' items recorded)"
            );
            ratios.push(b / w);
            against_plain.push(b / a);
            println!(
                "round {round}: library / items written = {:.3}; library / no items = {:.3}",
                b / w,
                b / a
            );
        }
        let mean = |r: &[f64]| r.iter().sum::<f64>() / r.len() as f64;
        println!(
            "mean ratio library / no items at all over {rounds} round(s): {:.3}",
            mean(&against_plain)
        );
        println!(
            "mean ratio library / the same three items written in the template over {rounds} round(s): {:.3}",
            mean(&ratios)
        );
    });
}
