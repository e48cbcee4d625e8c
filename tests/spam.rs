//! Content filters: every kind of message rapport sends (confirmation, welcome, newsletter,
//! follow-up), with the example templates and with a marketer's two-line templates, scores
//! under 1 point on SpamAssassin's local rules (`spamassassin -L -t`, Debian package
//! `spamassassin`; `.ci/run` installs it).

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

const SPAMASSASSIN: &str = "/usr/bin/spamassassin";

/// SpamAssassin's score of a raw message and the rules that hit, offline (`-L`).
fn score(raw: &str) -> (f64, String) {
    let mut child = Command::new(SPAMASSASSIN)
        .args(["-L", "-t"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spamassassin");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(raw.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    let status = report
        .lines()
        .find(|l| l.starts_with("X-Spam-Status:"))
        .unwrap_or_else(|| panic!("no X-Spam-Status in:\n{report}"));
    let score: f64 = status
        .split("score=")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no score in {status}"));
    // The rule table of the report: "pts rule name description".
    let rules = report
        .lines()
        .skip_while(|l| !l.starts_with(" pts rule name"))
        .take_while(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("\n");
    (score, rules)
}

/// Sends one message of each kind to one person of the project in `dir`; returns them as
/// (kind, raw message).
async fn one_of_each(dir: &Path) -> Vec<(&'static str, String)> {
    let app = common::spawn_app_in(common::Db::Sqlite, dir, &[])
        .await
        .unwrap();
    let extra = [
        ("name", "Sam Smith"),
        ("employees", "8"),
        ("engagement", "learner"),
    ];
    app.subscribed("sam@example.com", &extra).await;
    let welcome = app
        .wait_for_mail(|m| m.subject.starts_with("Welcome"))
        .await;
    let confirmation = app.wait_for_mail(|m| m.link("/confirm/").is_some()).await;
    let (code, _, err) = app.cli(&["run", "newsletter"]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = app.cli(&["run", "training-follow-up"]);
    assert_eq!(code, 0, "{err}");
    let messages = app.wait_for_messages(4).await;
    let newsletter = messages
        .iter()
        .find(|m| m.subject.contains("briefing"))
        .expect("the newsletter");
    let follow_up = messages
        .iter()
        .find(|m| m.subject.starts_with("Your next step"))
        .expect("the follow-up");
    vec![
        ("confirmation", confirmation.raw),
        ("welcome", welcome.raw),
        ("newsletter", newsletter.raw.clone()),
        ("follow-up", follow_up.raw.clone()),
    ]
}

fn assert_under_one_point(project: &str, messages: &[(&str, String)]) {
    for (kind, raw) in messages {
        let (points, rules) = score(raw);
        assert!(
            points < 1.0,
            "{project}: the {kind} scores {points} points:\n{rules}\n\n{raw}"
        );
    }
}

fn installed() -> bool {
    if Path::new(SPAMASSASSIN).exists() {
        return true;
    }
    assert!(
        std::env::var("CI").is_err(),
        "spamassassin missing under CI: .ci/run installs it"
    );
    eprintln!("SKIPPED: install spamassassin to score the messages");
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_message_scores_under_one_point_with_the_example_templates() {
    if !installed() {
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    assert_under_one_point("example templates", &one_of_each(root).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_message_scores_under_one_point_with_two_line_templates() {
    if !installed() {
        return;
    }
    let dir = common::example_copy();
    let two_lines = [
        (
            "welcome.hbs",
            "<p>Hi {{first_name}}, welcome aboard.</p>\n<p>Start here: <a href=\"https://learn.contoso.example/start\">our first course</a>.</p>\n",
        ),
        (
            "newsletter.hbs",
            "<p>Hi {{first_name}}, here is {{month}}.</p>\n<p>New this month: <a href=\"https://learn.contoso.example/new\">the invoicing course</a>.</p>\n",
        ),
        (
            "training-follow-up.hbs",
            "<p>Hi {{first_name}}, how did the course go?</p>\n<p>Next: <a href=\"https://learn.contoso.example/next\">part two</a>.</p>\n",
        ),
        (
            "confirmation.hbs",
            "<p>Hi {{first_name}}, please confirm: <a href=\"{{confirm_url}}\">yes, subscribe me</a>.</p>\n<p>{{sender_name}}, {{postal_address}}</p>\n",
        ),
    ];
    for (file, text) in two_lines {
        std::fs::write(dir.path().join("templates").join(file), text).unwrap();
    }
    assert_under_one_point("two-line templates", &one_of_each(dir.path()).await);
}

/// What `track_opens = true` costs a short message: the filters read it as an image-only
/// message (the README states this trade-off).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_open_pixel_in_a_short_message_costs_points() {
    if !installed() {
        return;
    }
    let dir = common::example_copy();
    let toml = dir.path().join("campaigns.toml");
    // The newsletter without its library items: a short message.
    let text = std::fs::read_to_string(&toml)
        .unwrap()
        .replacen(
            "id = \"newsletter\"",
            "id = \"newsletter\"\ntrack_opens = true",
            1,
        )
        .replacen("[campaign.library]", "", 1)
        .replacen("items = 3", "", 1);
    std::fs::write(&toml, text).unwrap();
    let messages = one_of_each(dir.path()).await;
    let (_, newsletter) = messages.iter().find(|(k, _)| *k == "newsletter").unwrap();
    assert!(newsletter.contains("/o/"), "the pixel is in");
    let (points, rules) = score(newsletter);
    assert!(points >= 1.0, "{points}:\n{rules}");
    assert!(rules.contains("HTML_IMAGE_ONLY"), "{rules}");
}
