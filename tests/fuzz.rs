//! Property-based fuzzing of what marketers and strangers can send: segment TOML, template
//! sets (loaded, checked and rendered the way `check` and the worker do), form fields and
//! form bodies. Whatever the input: an error or a result, never a panic or a stack
//! overflow (each case runs on a thread with tokio's 2 MiB stack).
//!
//! `cargo nextest run --test fuzz` runs a few hundred cases per target; CI runs more
//! (`PROPTEST_CASES`, see `.ci/run`), bounded by the case count, not by the clock.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use proptest::prelude::*;
use rapport::profile::{Email, Purpose};
use rapport::segment::{Names, Segment};
use rapport::site::Site;

/// Runs `f` on a thread with a worker's stack, as the server would: an overflow aborts the
/// test process, which is the failure this file looks for.
fn on_worker_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(f)
        .unwrap()
        .join()
        .expect("no panic")
}

fn example() -> &'static Site {
    static SITE: std::sync::OnceLock<Site> = std::sync::OnceLock::new();
    SITE.get_or_init(|| Site::load(Path::new(env!("CARGO_MANIFEST_DIR"))).unwrap())
}

/// Pieces of segment files, valid and not, to be strung together.
fn segment_piece() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("[rule]\n".to_string()),
        Just("description = \"x\"\n".to_string()),
        Just("all = [".to_string()),
        Just("any = [".to_string()),
        Just("not = ".to_string()),
        Just("{ not = ".to_string()),
        Just("{ any = [".to_string()),
        Just("{ field = \"employees\", lt = 50 }".to_string()),
        Just("{ field = \"industry\", in = [\"retail\", \"other\"] }".to_string()),
        Just("{ field = \"products\", contains = \"office\" }".to_string()),
        Just("{ clicked_tag = \"training\", within_days = 90 }".to_string()),
        Just("{ opened = \"newsletter\" }".to_string()),
        Just("{ did = \"course_completed\", within_days = 30, times_at_least = 2 }".to_string()),
        Just("field = \"name\"\npresent = true\n".to_string()),
        Just("]".to_string()),
        Just("}".to_string()),
        Just(", ".to_string()),
        Just("\n".to_string()),
        "[ -~]{0,12}",
        any::<String>(),
    ]
}

fn template_piece() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("{{#if first_name}}".to_string()),
        Just("{{else}}".to_string()),
        Just("{{/if}}".to_string()),
        Just("{{#each sections}}".to_string()),
        Just("{{/each}}".to_string()),
        Just("{{first_name}}".to_string()),
        Just("{{{unsubscribe_url}}}".to_string()),
        Just("{{> a}}".to_string()),
        Just("{{> b}}".to_string()),
        Just("{{#> a}}x{{/a}}".to_string()),
        Just("{{> (lookup this \"template\")}}".to_string()),
        Just("{{#*inline \"a\"}}{{> a}}{{/inline}}".to_string()),
        Just("{{!-- c --}}".to_string()),
        Just("{{{{raw}}}}{{> a}}{{{{/raw}}}}".to_string()),
        Just("<p><a href=\"https://example.com/x\" data-tag=\"t\">x</a></p>".to_string()),
        Just("{{".to_string()),
        Just("}}".to_string()),
        "[ -~]{0,10}",
    ]
}

/// Pieces of library items: front matter lines right and wrong, Markdown, raw HTML, control
/// characters and anything at all.
fn library_piece() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("+++\n".to_string()),
        Just("title = \"A guide\"\n".to_string()),
        Just("url = \"https://learn.example/a\"\n".to_string()),
        Just("topics = [\"training\", \"security\"]\n".to_string()),
        Just("topics = [\"cooking\"]\n".to_string()),
        Just("segments = [\"connectors\"]\n".to_string()),
        Just("industries = [\"retail\"]\n".to_string()),
        Just("level = \"advanced\"\n".to_string()),
        Just("published = 2026-01-01\n".to_string()),
        Just("expires = \"2026-02-30\"\n".to_string()),
        Just("published = 2026-01-01T10:00:00Z\n".to_string()),
        Just("[x]\n".to_string()),
        Just("**bold** [link](https://a.example/?q=1&r=2) ".to_string()),
        Just("<a href=\"https://b.example/\">raw</a>\n".to_string()),
        Just("\u{1}\u{FDD0}{{x}}".to_string()),
        any::<String>(),
    ]
}

fn pieces(p: impl Strategy<Value = String>, n: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(p, 0..n).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(256),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Segment files: parsed, and when accepted, compiled to SQL and matched in Rust.
    #[test]
    fn segment_files_never_crash(src in pieces(segment_piece(), 40)) {
        on_worker_stack(move || {
            let site = example();
            let names = rapport::campaign::names(&site.project);
            if let Ok(seg) = Segment::parse(Path::new("segments/f.toml"), "f", &src, &site.project.form, &names) {
                let _ = rapport::store::AudienceQuery::new(&seg.rule, 0);
                let email = Email::parse("p@example.com").unwrap();
                let _ = seg.rule.matches(&email, &Default::default(), &rapport::segment::NoFacts);
            }
        });
    }

    /// Library items: loaded (or refused with located problems) and selected from, never a
    /// panic; every problem names a line inside its file.
    #[test]
    fn library_items_never_crash(files in prop::collection::vec(pieces(library_piece(), 16), 1..4)) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("content")).unwrap();
        for (i, text) in files.iter().enumerate() {
            std::fs::write(dir.path().join(format!("content/i{i}.md")), text).unwrap();
        }
        let topics: Vec<String> = ["training", "security"].map(String::from).to_vec();
        let segments: Vec<String> = vec!["connectors".into()];
        let industries: Vec<String> = vec!["retail".into()];
        let names = rapport::library::Names { topics: &topics, segments: &segments, industries: &industries };
        match rapport::library::Library::load(dir.path(), &names) {
            Ok(library) => {
                let memberships = [("connectors".to_string(), true)].into_iter().collect();
                let picked = library.select(&rapport::library::Reader {
                    topics: &topics,
                    segments: &memberships,
                    industry: Some("retail"),
                    sent: &[],
                    today: chrono::NaiveDate::from_ymd_opt(2026, 6, 1).unwrap(),
                }, 3);
                prop_assert!(picked.len() <= 3);
            }
            Err(problems) => {
                for p in problems {
                    let text = std::fs::read_to_string(&p.file).unwrap_or_default();
                    prop_assert!(p.line >= 1 && p.line <= text.lines().count().max(1) + 1, "{p}");
                }
            }
        }
    }

    /// Form fields as strangers send them, through the form's parser for both purposes.
    #[test]
    fn form_fields_never_crash(
        pairs in prop::collection::vec(
            (prop_oneof![
                Just("email".to_string()), Just("name".to_string()), Just("employees".to_string()),
                Just("products".to_string()), Just("industry".to_string()), Just("consent".to_string()),
                Just("step".to_string()), Just("website".to_string()), Just("topics".to_string()),
                Just("frequency".to_string()), any::<String>(),
            ], any::<String>()),
            0..12,
        ),
        body in prop::collection::vec(any::<u8>(), 0..200),
    ) {
        let form = &example().project.form;
        let pairs: Vec<(String, String)> = pairs;
        let sub = form.parse(&pairs, Purpose::Subscribe);
        if let Some(email) = &sub.email {
            prop_assert!(Email::parse(email.as_str()).is_ok(), "a parsed address parses again");
        }
        let _ = form.parse(&pairs, Purpose::ProfileCentre);
        if let Ok(decoded) = rapport::web::form_body::decode(&body) {
            let _ = form.parse(&decoded, Purpose::Subscribe);
        }
        let _ = Email::parse(&String::from_utf8_lossy(&body));
    }
}

/// How many cases a target runs: `PROPTEST_CASES` (CI sets more), divided by `share` for
/// the targets whose every case does a lot (a template set is loaded, checked and rendered
/// for every campaign and sample person; a nesting thousands deep is read).
fn cases(share: u32) -> u32 {
    let all = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(256u32);
    (all / share).max(1)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(4),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Deep nesting written out: refused with a message, never an overflow.
    #[test]
    fn deeply_nested_input_is_refused_not_overflowed(depth in 1usize..20_000) {
        on_worker_stack(move || {
            let site = example();
            let toml = format!("[rule]\nnot = {}{{ field = \"pcs\", lt = 1 }}{}", "{ not = ".repeat(depth), " }".repeat(depth));
            let _ = Segment::parse(Path::new("s.toml"), "s", &toml, &site.project.form, &Names::default());
            let arrays = format!("[rule]\nany = {}{}", "[".repeat(depth), "]".repeat(depth));
            let _ = Segment::parse(Path::new("s.toml"), "s", &arrays, &site.project.form, &Names::default());
        });
        let dir = common::example_copy();
        let deep = "{{#if first_name}}".repeat(depth) + &"{{/if}}".repeat(depth);
        std::fs::write(dir.path().join("templates/newsletter.hbs"), deep).unwrap();
        let path = dir.path().to_path_buf();
        on_worker_stack(move || {
            if let Ok(site) = Site::load_for_check(&path) {
                let _ = rapport::mail::check(&site);
            }
        });
    }

    /// Template sets as a marketer can write them: loaded (which refuses loops and deep
    /// nesting), and when accepted, checked as `rapport check` does (every campaign
    /// rendered for sample people).
    #[test]
    fn template_sets_never_crash(
        newsletter in pieces(template_piece(), 24),
        a in pieces(template_piece(), 12),
        b in pieces(template_piece(), 12),
    ) {
        let dir = common::example_copy();
        let t = dir.path().join("templates");
        std::fs::write(t.join("newsletter.hbs"), &newsletter).unwrap();
        std::fs::create_dir_all(t.join("partials")).unwrap();
        std::fs::write(t.join("partials/a.hbs"), &a).unwrap();
        std::fs::write(t.join("partials/b.hbs"), &b).unwrap();
        let path = dir.path().to_path_buf();
        on_worker_stack(move || {
            if let Ok(site) = Site::load_for_check(&path) {
                let _ = rapport::mail::check(&site);
            }
        });
    }
}

/// Pieces of mail reports: header lines, MIME boundaries and parts, DSN and ARF fields,
/// mbox separators and raw bytes, valid and not.
fn report_piece() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(
            b"Content-Type: multipart/report; report-type=delivery-status; boundary=\"b\"\r\n"
                .to_vec()
        ),
        Just(
            b"Content-Type: multipart/report; report-type=feedback-report; boundary=b\r\n".to_vec()
        ),
        Just(b"Content-Type: message/delivery-status\r\n".to_vec()),
        Just(b"Content-Type: message/feedback-report\r\n".to_vec()),
        Just(b"Content-Type: message/rfc822\r\n".to_vec()),
        Just(b"Content-Type: text/rfc822-headers\r\n".to_vec()),
        Just(b"Content-Transfer-Encoding: base64\r\n".to_vec()),
        Just(b"Content-Transfer-Encoding: quoted-printable\r\n".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"--b\r\n".to_vec()),
        Just(b"--b--\r\n".to_vec()),
        Just(b"Action: failed\r\nStatus: 5.1.1\r\n".to_vec()),
        Just(b"Action: delayed\r\nStatus: 4.\r\n".to_vec()),
        Just(b"Final-Recipient: rfc822;\r\n".to_vec()),
        Just(b"Feedback-Type: abuse\r\nOriginal-Mail-From: <b-1-00@x>\r\n".to_vec()),
        Just(b"List-Unsubscribe: <https://x/unsubscribe/AAAA>, <\r\n".to_vec()),
        Just(b"To: \"a\" <b-ff-0123456789abcdef0123@x>, (group:;\r\n".to_vec()),
        Just(b"Auto-Submitted: auto-replied\r\nSubject: =?utf-8?q?Out_of_office?=\r\n".to_vec()),
        Just(b"From MAILER-DAEMON Mon Dec  1 10:00:00 2026\n".to_vec()),
        Just(b" folded continuation\r\n".to_vec()),
        prop::collection::vec(any::<u8>(), 0..40),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(1),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Mail reports as any mail server or stranger can send them to the bounce address:
    /// read (or refused), attributed, split as an mbox file; never a panic.
    #[test]
    fn mail_reports_never_crash(pieces in prop::collection::vec(report_piece(), 0..40)) {
        let raw = pieces.concat();
        on_worker_stack(move || {
            let signer = rapport::track::Signer::new(b"fuzz-secret-0123456789abcdef");
            for found in rapport::bounce::mailbox::split(Path::new("f"), raw) {
                if let Ok(report) = rapport::bounce::parse(&found.raw) {
                    for a in &report.addresses {
                        let local = a.rsplit_once('@').map_or(a.as_str(), |(l, _)| l);
                        let _ = signer.bounce_delivery(local);
                    }
                }
            }
        });
    }
}

/// Every depth up to past the toml parser's own limit, for both ways of nesting a rule:
/// `not = { not = … }` 60 deep once overflowed a 2 MiB stack while being read into
/// rapport's types (found by the bounded CI run of `deeply_nested_input_…`). Now the file
/// is refused before it is parsed, with its place.
#[test]
fn every_nesting_depth_of_a_segment_file_is_safe() {
    on_worker_stack(|| {
        let site = example();
        for depth in 1..=100 {
            for toml in [
                format!(
                    "[rule]\nnot = {}{{ field = \"pcs\", lt = 1 }}{}",
                    "{ not = ".repeat(depth),
                    " }".repeat(depth)
                ),
                format!(
                    "[rule]\nany = [{}{{ field = \"pcs\", lt = 1 }}{}]",
                    "{ any = [".repeat(depth),
                    "] }".repeat(depth)
                ),
            ] {
                let r = Segment::parse(
                    Path::new("s.toml"),
                    "s",
                    &toml,
                    &site.project.form,
                    &Names::default(),
                );
                if depth > 16 {
                    assert!(r.is_err(), "{depth} levels accepted");
                }
            }
        }
    });
}

/// The template sets the fuzz cases build also include the ones that matter most: a and b
/// including each other, which must be refused (not rendered until the stack runs out).
#[test]
fn the_probe_s_partial_loop_is_refused() {
    let dir = common::example_copy();
    let t = dir.path().join("templates");
    std::fs::create_dir_all(t.join("partials")).unwrap();
    std::fs::write(t.join("partials/a.hbs"), "a{{> b}}").unwrap();
    std::fs::write(t.join("partials/b.hbs"), "b{{> a}}").unwrap();
    std::fs::write(t.join("newsletter.hbs"), "{{> a}}").unwrap();
    let problems: BTreeMap<String, String> = match Site::load_for_check(dir.path()) {
        Ok(_) => panic!("a loop of partials was accepted"),
        Err(d) => {
            d.0.into_iter()
                .map(|d| (d.file.display().to_string(), d.message))
                .collect()
        }
    };
    assert!(
        problems.values().any(|m| m.contains("includes itself")),
        "{problems:?}"
    );
}
