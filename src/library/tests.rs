use super::*;

fn names() -> (Vec<String>, Vec<String>, Vec<String>) {
    (
        vec!["training".into(), "security".into(), "community".into()],
        vec!["small".into(), "large".into()],
        vec!["retail".into(), "construction".into()],
    )
}

fn library(files: &[(&str, &str)]) -> Result<Library, Vec<Diagnostic>> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join(CONTENT_DIR)).unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(CONTENT_DIR).join(name), text).unwrap();
    }
    let (topics, segments, industries) = names();
    Library::load(
        dir.path(),
        &Names {
            topics: &topics,
            segments: &segments,
            industries: &industries,
        },
    )
}

fn item(url: &str, extra: &str) -> String {
    format!(
        "+++\ntitle = \"T {url}\"\nurl = \"https://x.example/{url}\"\n{extra}\n+++\nSome **bold** text.\n"
    )
}

fn select(
    lib: &Library,
    topics: &[&str],
    segs: &[&str],
    industry: Option<&str>,
    sent: &[&str],
    n: usize,
) -> Vec<String> {
    let topics: Vec<String> = topics.iter().map(|s| s.to_string()).collect();
    let segments: BTreeMap<String, bool> = ["small", "large"]
        .iter()
        .map(|s| (s.to_string(), segs.contains(s)))
        .collect();
    let sent: Vec<String> = sent
        .iter()
        .map(|u| format!("https://x.example/{u}"))
        .collect();
    lib.select(
        &Reader {
            topics: &topics,
            segments: &segments,
            industry,
            sent: &sent,
            today: NaiveDate::from_ymd_opt(2030, 6, 1).unwrap(),
        },
        n,
    )
    .iter()
    .map(|i| i.id.clone())
    .collect()
}

#[test]
fn reads_items_and_renders_the_summary() {
    let lib = library(&[(
        "a.md",
        &item("a", "topics = [\"training\"]\npublished = 2030-01-02"),
    )])
    .unwrap();
    let a = &lib.items()[0];
    assert_eq!(a.id, "a");
    assert_eq!(a.summary, "<p>Some <strong>bold</strong> text.</p>");
    assert_eq!(a.published.as_deref(), Some("2030-01-02"));
    assert!(lib.by_url("https://x.example/a").is_some());
}

#[test]
fn orders_by_topic_segment_industry_level_then_newest() {
    let lib = library(&[
        (
            "old-training.md",
            &item("ot", "topics = [\"training\"]\npublished = 2029-01-01"),
        ),
        (
            "new-training.md",
            &item("nt", "topics = [\"training\"]\npublished = 2030-01-01"),
        ),
        (
            "community.md",
            &item("c", "topics = [\"community\"]\npublished = 2030-05-01"),
        ),
        (
            "for-small.md",
            &item(
                "s",
                "topics = [\"community\"]\nsegments = [\"small\"]\npublished = 2029-01-01",
            ),
        ),
        (
            "for-large.md",
            &item(
                "l",
                "topics = [\"training\"]\nsegments = [\"large\"]\npublished = 2030-05-01",
            ),
        ),
        (
            "retail.md",
            &item(
                "r",
                "topics = [\"community\"]\nindustries = [\"retail\"]\npublished = 2028-01-01",
            ),
        ),
        (
            "builders.md",
            &item(
                "b",
                "topics = [\"training\"]\nindustries = [\"construction\"]\npublished = 2030-05-02",
            ),
        ),
        (
            "advanced.md",
            &item(
                "adv",
                "topics = [\"security\"]\nlevel = \"advanced\"\npublished = 2030-05-01",
            ),
        ),
        (
            "beginner.md",
            &item(
                "beg",
                "topics = [\"security\"]\nlevel = \"beginner\"\npublished = 2029-05-01",
            ),
        ),
        (
            "expired.md",
            &item("x", "topics = [\"training\"]\nexpires = 2030-06-01"),
        ),
        (
            "future.md",
            &item("f", "topics = [\"training\"]\npublished = 2030-06-02"),
        ),
    ])
    .unwrap();
    // Topics first (newest first among them); items for another segment or industry never.
    assert_eq!(
        select(&lib, &["training"], &["small"], Some("retail"), &[], 3),
        ["new-training", "old-training", "for-small"]
    );
    // Segment, then industry, then level among items of no chosen topic.
    assert_eq!(
        select(&lib, &[], &["small"], Some("retail"), &[], 4),
        ["for-small", "retail", "beginner", "advanced"]
    );
    // Unknown industry: industry items are not excluded.
    assert!(select(&lib, &["training"], &[], None, &[], 3).contains(&"builders".to_string()));
    // Items sent before never come again; expired or future ones never come.
    let all = select(
        &lib,
        &["training", "security", "community"],
        &["small", "large"],
        None,
        &["nt"],
        20,
    );
    assert!(!all.contains(&"new-training".to_string()), "{all:?}");
    assert!(
        !all.iter().any(|i| i == "expired" || i == "future"),
        "{all:?}"
    );
    assert_eq!(all.len(), 8, "{all:?}");
    // After six items, advanced ranks above beginner.
    let six = ["a1", "a2", "a3", "a4", "a5", "a6"];
    assert_eq!(
        select(&lib, &["security"], &[], None, &six, 1),
        ["advanced"]
    );
    assert_eq!(select(&lib, &["security"], &[], None, &[], 1), ["beginner"]);
}

#[test]
fn locates_bad_front_matter() {
    let e = library(&[
        (
            "a.md",
            "+++\ntitle = 3\nurl = \"https://x.example/a\"\n+++\nx",
        ),
        (
            "b.md",
            "+++\ntitle = \"B\"\nurl = \"https://x.example/b\"\npublished = \"2026-13-45\"\n+++\nx",
        ),
        (
            "c.md",
            "+++\ntitle = \"C\"\nurl = \"https://x.example/c\"\ntopics = [\"cooking\"]\n+++\nx",
        ),
        ("d.md", "no front matter"),
    ])
    .unwrap_err();
    assert_eq!(e.len(), 4, "{e:?}");
    assert_eq!((e[0].line, e[0].col), (2, 9), "{e:?}");
    assert!(
        e[1].message.contains("published") && e[1].line == 4,
        "{e:?}"
    );
    assert!(
        e[2].message.contains("unknown topic \"cooking\"") && e[2].line == 4,
        "{e:?}"
    );
    assert!(e[3].message.contains("front matter"), "{e:?}");
}

#[test]
fn a_shared_url_is_a_warning() {
    let lib = library(&[("a.md", &item("same", "")), ("b.md", &item("same", ""))]).unwrap();
    assert_eq!(lib.items().len(), 2);
    assert_eq!(lib.warnings.len(), 1);
    assert!(lib.warnings[0].message.contains("count as one item"));
}

/// Readers of one kind share a kept ranking; whatever each was sent before, what they get
/// is what ranking the items for them alone gives.
#[test]
fn kept_rankings_give_each_reader_their_own_selection() {
    let topics = ["training", "security", "community"];
    let files: Vec<(String, String)> = (0..40)
        .map(|i| {
            let extra = format!(
                "topics = [\"{}\"]\n{}{}published = 2029-{:02}-{:02}",
                topics[i % 3],
                if i % 5 == 0 {
                    "segments = [\"small\"]\n"
                } else {
                    ""
                },
                if i % 4 == 0 {
                    "level = \"advanced\"\n"
                } else {
                    ""
                },
                1 + i % 12,
                1 + i % 28,
            );
            (format!("item-{i}.md"), item(&format!("u{i}"), &extra))
        })
        .collect();
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let lib = library(&refs).unwrap();
    // A small deterministic generator: the same readers every run.
    let mut seed = 7u64;
    let mut next = |m: u64| {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) % m
    };
    for _ in 0..400 {
        let chosen: Vec<String> = topics
            .iter()
            .filter(|_| next(2) == 0)
            .map(|t| t.to_string())
            .collect();
        let segments: BTreeMap<String, bool> = [("small".to_string(), next(2) == 0)].into();
        let sent: Vec<String> = (0..next(30))
            .map(|_| format!("https://x.example/u{}", next(40)))
            .collect();
        let reader = Reader {
            topics: &chosen,
            segments: &segments,
            industry: None,
            sent: &sent,
            today: NaiveDate::from_ymd_opt(2030, 6, 1).unwrap(),
        };
        let n = 1 + next(4) as usize;
        let got: Vec<String> = lib
            .select(&reader, n)
            .iter()
            .map(|i| i.id.clone())
            .collect();
        let sent_idx: Vec<usize> = sent
            .iter()
            .filter_map(|u| lib.by_url.get(u).copied())
            .collect();
        let alone: Vec<String> = lib
            .rank(&lib.key(&reader, n), &sent_idx, n)
            .iter()
            .map(|&i| lib.items[i].id.clone())
            .collect();
        assert_eq!(got, alone, "topics {chosen:?}, sent {sent:?}, n {n}");
    }
    assert!(
        lib.lock_rankings().len() > 1,
        "rankings were kept and shared"
    );
}

#[test]
fn values_lent_to_a_message_come_back_for_the_next_with_the_same_slot() {
    let lib = library(&[("a.md", &item("a", "")), ("b.md", &item("b", ""))]).unwrap();
    let by_id = |id: &str| lib.items().iter().find(|i| i.id == id).unwrap().clone();
    let (a, b) = (by_id("a"), by_id("b"));
    let with_url = |url: &str| {
        let mut v = a.template_values().clone();
        v["url"] = serde_json::Value::String(url.into());
        serde_json::Value::Object(v)
    };
    let first = a.lend_values("slot 1");
    assert_eq!(first, with_url("slot 1"));
    a.give_back(first);
    assert_eq!(a.lock_spare().len(), 1, "kept");
    // Another slot gets its own values; the kept ones wait for their slot.
    assert_eq!(a.lend_values("slot 2"), with_url("slot 2"));
    assert_eq!(a.lock_spare().len(), 1);
    assert_eq!(a.lend_values("slot 1"), with_url("slot 1"));
    assert!(a.lock_spare().is_empty(), "taken");
    // Another item's values are not kept, and no more than SPARE_VALUES are.
    a.give_back(b.lend_values("slot 1"));
    assert!(a.lock_spare().is_empty(), "b's values are not a's");
    for _ in 0..SPARE_VALUES + 2 {
        a.give_back(a.lend_values("slot 3"));
        let lent: Vec<_> = (0..SPARE_VALUES + 2)
            .map(|_| a.lend_values("slot 3"))
            .collect();
        lent.into_iter().for_each(|v| a.give_back(v));
    }
    assert_eq!(a.lock_spare().len(), SPARE_VALUES);
    assert!(
        Item::clone(&a).lock_spare().is_empty(),
        "a clone starts with none"
    );
}
