//! `rapport check` over project directories: the example is clean, and each kind of mistake
//! gives exit 1 and a `file:line:col: message` line at the right place. Each case is the
//! example project with one file changed, built in its own temporary directory.

use std::path::{Path, PathBuf};
use std::process::Command;

mod common;

use common::example_copy;

const BIN: &str = env!("CARGO_BIN_EXE_rapport");

struct Outcome {
    code: i32,
    stdout: String,
    stderr: String,
}

fn check(dir: &Path) -> Outcome {
    let out = Command::new(BIN)
        .arg("--dir")
        .arg(dir)
        .arg("check")
        .output()
        .unwrap();
    Outcome {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Replaces `from` by `to` in `file` (which must contain it).
fn edit(dir: &Path, file: &str, from: &str, to: &str) {
    let p = dir.join(file);
    let s = std::fs::read_to_string(&p).unwrap();
    assert!(s.contains(from), "{file} does not contain {from:?}");
    std::fs::write(&p, s.replacen(from, to, 1)).unwrap();
}

fn write(dir: &Path, file: &str, content: &str) {
    let p: PathBuf = dir.join(file);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, content).unwrap();
}

/// Asserts exit 1 and a line `FILE:LINE:COL: ...TEXT...`.
fn assert_problem(o: &Outcome, file: &str, line: usize, col: Option<usize>, text: &str) {
    assert_eq!(o.code, 1, "stdout: {}\nstderr: {}", o.stdout, o.stderr);
    let found = o.stdout.lines().any(|l| {
        let Some((loc, msg)) = l.split_once(": ") else {
            return false;
        };
        let mut parts = loc.rsplitn(3, ':');
        let c: usize = parts.next().and_then(|c| c.parse().ok()).unwrap_or(0);
        let ln: usize = parts.next().and_then(|c| c.parse().ok()).unwrap_or(0);
        let f = parts.next().unwrap_or("");
        f.ends_with(file) && ln == line && col.is_none_or(|col| col == c) && msg.contains(text)
    });
    assert!(
        found,
        "no line {file}:{line}:{col:?}: ...{text}... in:\n{}",
        o.stdout
    );
}

/// The line number (1-based) of the first line of `file` containing `needle`.
fn line_of(dir: &Path, file: &str, needle: &str) -> usize {
    let s = std::fs::read_to_string(dir.join(file)).unwrap();
    s.lines()
        .position(|l| l.contains(needle))
        .expect("needle in file")
        + 1
}

#[test]
fn the_example_project_is_clean() {
    let dir = example_copy();
    let o = check(dir.path());
    assert_eq!(o.code, 0, "{}\n{}", o.stdout, o.stderr);
    assert!(o.stdout.is_empty());
    assert!(o.stderr.contains("ok:"));
}

#[test]
fn broken_toml_syntax() {
    let dir = example_copy();
    edit(dir.path(), "campaigns.toml", "[sender]", "[sender");
    assert_problem(
        &check(dir.path()),
        "campaigns.toml",
        line_of(dir.path(), "campaigns.toml", "[sender"),
        None,
        "",
    );
}

#[test]
fn wrong_type() {
    let dir = example_copy();
    edit(dir.path(), "campaigns.toml", "delay = \"0s\"", "delay = 5");
    let line = line_of(dir.path(), "campaigns.toml", "delay = 5");
    assert_problem(
        &check(dir.path()),
        "campaigns.toml",
        line,
        Some(9),
        "string",
    );
    // Numbers are asked for in words, not Rust's type names; a library item's front
    // matter is read the same way.
    edit(dir.path(), "campaigns.toml", "delay = 5", "delay = \"0s\"");
    for (file, from, to, col, text) in [
        (
            "campaigns.toml",
            "after_days = 180",
            "after_days = \"soon\"",
            14,
            "invalid type: string \"soon\", expected a whole number",
        ),
        (
            "content/first-course.md",
            "level = \"beginner\"",
            "level = 2",
            9,
            "invalid type: integer `2`, expected a string",
        ),
    ] {
        edit(dir.path(), file, from, to);
        let line = line_of(dir.path(), file, to);
        assert_problem(&check(dir.path()), file, line, Some(col), text);
        edit(dir.path(), file, to, from);
    }
}

#[test]
fn unknown_key() {
    let dir = example_copy();
    edit(
        dir.path(),
        "campaigns.toml",
        "kind = \"welcome\"",
        "kind = \"welcome\"\ncolour = \"red\"",
    );
    let line = line_of(dir.path(), "campaigns.toml", "colour");
    assert_problem(
        &check(dir.path()),
        "campaigns.toml",
        line,
        Some(1),
        "colour",
    );
}

#[test]
fn unknown_segment_names_the_known_ones() {
    let dir = example_copy();
    edit(
        dir.path(),
        "campaigns.toml",
        "segment = \"connectors\"",
        "segment = \"learnerz\"",
    );
    let line = line_of(dir.path(), "campaigns.toml", "learnerz");
    let o = check(dir.path());
    assert_problem(
        &o,
        "campaigns.toml",
        line,
        Some(13),
        "unknown segment \"learnerz\"; known: collaborators, connectors, small-learners",
    );
}

#[test]
fn unknown_template() {
    let dir = example_copy();
    edit(
        dir.path(),
        "campaigns.toml",
        "template = \"welcome\"",
        "template = \"welcom\"",
    );
    let line = line_of(dir.path(), "campaigns.toml", "\"welcom\"");
    assert_problem(
        &check(dir.path()),
        "campaigns.toml",
        line,
        Some(12),
        "unknown template \"welcom\"",
    );
}

#[test]
fn bad_cron_and_bad_delay_are_both_reported() {
    let dir = example_copy();
    edit(
        dir.path(),
        "campaigns.toml",
        "schedule = \"0 0 9 1 * *\"",
        "schedule = \"0 0 25 1 * *\"",
    );
    edit(
        dir.path(),
        "campaigns.toml",
        "delay = \"3d\"",
        "delay = \"3 fortnights\"",
    );
    let o = check(dir.path());
    assert_problem(
        &o,
        "campaigns.toml",
        line_of(dir.path(), "campaigns.toml", "0 0 25 1"),
        Some(12),
        "schedule",
    );
    assert_problem(
        &o,
        "campaigns.toml",
        line_of(dir.path(), "campaigns.toml", "fortnights"),
        None,
        "delay",
    );
    assert_eq!(
        o.stdout.lines().count(),
        2,
        "all problems, not just the first:\n{}",
        o.stdout
    );
}

#[test]
fn unknown_field_and_operator_in_segments() {
    let dir = example_copy();
    write(
        dir.path(),
        "segments/big.toml",
        "description = \"x\"\n[rule]\nfield = \"employes\"\ngt = 50\n",
    );
    write(
        dir.path(),
        "segments/odd.toml",
        "[rule]\nfield = \"employees\"\nbetween = 50\n",
    );
    let o = check(dir.path());
    assert_problem(
        &o,
        "segments/big.toml",
        3,
        Some(9),
        "unknown field \"employes\"",
    );
    assert_problem(&o, "segments/odd.toml", 3, Some(1), "between");
}

/// Big lists pass and run (they compile to `IN (…)`); what no database could run is
/// refused by `check`: too many values, or all/any/not nested too deep.
#[test]
fn segments_the_database_cannot_run_are_refused() {
    let list = |n: usize| {
        (0..n)
            .map(|i| format!("\"n{i}\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let dir = example_copy();
    let any: String = (0..600)
        .map(|i| format!("{{ field = \"employees\", eq = {i} }}"))
        .collect::<Vec<_>>()
        .join(",\n");
    write(
        dir.path(),
        "segments/named.toml",
        &format!("[rule]\nfield = \"name\"\nin = [{}]\n", list(500)),
    );
    write(
        dir.path(),
        "segments/sizes.toml",
        &format!("[rule]\nany = [\n{any}\n]\n"),
    );
    let o = check(dir.path());
    assert_eq!(o.code, 0, "{}{}", o.stdout, o.stderr);

    let dir = example_copy();
    write(
        dir.path(),
        "segments/named.toml",
        &format!(
            "description = \"x\"\n[rule]\nfield = \"name\"\nin = [{}]\n",
            list(10_001)
        ),
    );
    let deep = "{ not = ".repeat(16) + "{ field = \"employees\", lt = 5 }" + &" }".repeat(16);
    write(
        dir.path(),
        "segments/deep.toml",
        &format!("[rule]\nnot = {deep}\n"),
    );
    let o = check(dir.path());
    assert_problem(
        &o,
        "segments/named.toml",
        2,
        None,
        "10001 values; at most 10000",
    );
    assert_problem(
        &o,
        "segments/deep.toml",
        1,
        None,
        "18 levels deep; at most 16",
    );
}

#[test]
fn a_choice_typo_is_an_error_not_an_empty_segment() {
    let dir = example_copy();
    write(
        dir.path(),
        "segments/shops.toml",
        "[rule]\nfield = \"industry\"\neq = \"retial\"\n",
    );
    assert_problem(
        &check(dir.path()),
        "segments/shops.toml",
        3,
        Some(6),
        "\"retial\" is not a choice of industry",
    );
}

#[test]
fn handlebars_syntax_error() {
    let dir = example_copy();
    write(
        dir.path(),
        "templates/welcome.hbs",
        "<p>Hello</p>\n<p>{{#if first_name}}never closed</p>\n",
    );
    assert_problem(
        &check(dir.path()),
        "templates/welcome.hbs",
        2,
        Some(4),
        "{{#if first_name}} is never closed; close it with {{/if}}",
    );
}

/// Partials that include each other, and thousands of nested blocks, overflowed the
/// stack (exit 134); now a located error, and `serve` refuses the set at start.
#[test]
fn recursive_partials_and_deep_nesting_are_located_not_a_crash() {
    let dir = example_copy();
    write(dir.path(), "templates/partials/a.hbs", "a{{> b}}");
    write(dir.path(), "templates/partials/b.hbs", "b\n  {{> a}}");
    edit(
        dir.path(),
        "templates/newsletter.hbs",
        "{{#each",
        "{{> a}}{{#each",
    );
    let o = check(dir.path());
    assert_problem(
        &o,
        "templates/partials/b.hbs",
        2,
        Some(3),
        "includes itself",
    );
    let serve = Command::new(BIN)
        .arg("--dir")
        .arg(dir.path())
        .args([
            "--database-url",
            &format!("sqlite://{}", dir.path().join("r.db").display()),
        ])
        .args(["serve", "--bind", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert_eq!(
        serve.status.code(),
        Some(1),
        "refused at start, not a crash"
    );
    assert!(String::from_utf8_lossy(&serve.stderr).contains("includes itself"));

    let dir = example_copy();
    let deep = "{{#if first_name}}".repeat(5_000) + &"{{/if}}".repeat(5_000);
    write(
        dir.path(),
        "templates/welcome.hbs",
        &format!("<p>Hi</p>\n{deep}\n"),
    );
    let o = check(dir.path());
    assert_problem(&o, "templates/welcome.hbs", 2, None, "nest");
}

#[test]
fn missing_partial() {
    let dir = example_copy();
    write(
        dir.path(),
        "templates/welcome.hbs",
        "<p>Hello</p>\n{{> signature}}\n",
    );
    assert_problem(
        &check(dir.path()),
        "templates/welcome.hbs",
        2,
        None,
        "signature",
    );
}

#[test]
fn variable_that_does_not_exist() {
    let dir = example_copy();
    write(
        dir.path(),
        "templates/sections/training.hbs",
        "<h2>Learn</h2>\n<p>Hi {{frist_name}}</p>\n",
    );
    let o = check(dir.path());
    assert_problem(
        &o,
        "templates/sections/training.hbs",
        2,
        Some(7),
        "frist_name",
    );
    assert!(
        o.stdout
            .contains("rendering for a sample person in segment"),
        "says which sample person hit it: {}",
        o.stdout
    );
    assert!(
        o.stdout
            .contains("unknown variable \"frist_name\"; templates see: first_name"),
        "{}",
        o.stdout
    );
}

#[test]
fn unknown_segment_in_template_helper() {
    let dir = example_copy();
    write(
        dir.path(),
        "templates/welcome.hbs",
        "<p>Hello</p>\n{{#if (in_segment \"learnerz\")}}<p>x</p>{{/if}}\n",
    );
    assert_problem(
        &check(dir.path()),
        "templates/welcome.hbs",
        2,
        None,
        "unknown segment \"learnerz\"",
    );
}

#[test]
fn missing_campaigns_file() {
    let dir = tempfile::tempdir().unwrap();
    let o = check(dir.path());
    assert_problem(
        &o,
        "campaigns.toml",
        1,
        Some(1),
        "cannot read campaigns.toml",
    );
}

#[test]
fn the_confirmation_email_is_checked_too() {
    let dir = example_copy();
    write(
        dir.path(),
        "templates/confirmation.hbs",
        "<html><body>\n<p>Hello {{first_name}},</p>\n<p><a href=\"{{confirm_link}}\">Confirm</a></p>\n</body></html>\n",
    );
    let o = check(dir.path());
    assert_problem(
        &o,
        "templates/confirmation.hbs",
        3,
        Some(13),
        "confirm_link",
    );
    assert!(
        o.stdout.contains("the confirmation email")
            && o.stdout
                .contains("templates see: first_name, name, email, sender_name"),
        "{}",
        o.stdout
    );
}

#[test]
fn a_section_loop_that_writes_out_objects_fails_naming_the_line() {
    let dir = example_copy();
    edit(
        dir.path(),
        "templates/newsletter.hbs",
        "{{> (lookup this \"template\") }}",
        "{{{this}}}",
    );
    let line = line_of(dir.path(), "templates/newsletter.hbs", "{{{this}}}");
    let o = check(dir.path());
    assert_problem(
        &o,
        "templates/newsletter.hbs",
        line,
        Some(1),
        "contains \"[object]\"",
    );
    assert!(
        o.stdout
            .contains("{{#each sections}}{{> (lookup this \"template\")}}{{/each}}"),
        "says how to write the loop: {}",
        o.stdout
    );
}

#[test]
fn undeclared_event_in_a_segment_or_a_follow_up() {
    let dir = example_copy();
    write(
        dir.path(),
        "segments/trialists.toml",
        "[rule]\nall = [\n  { did = \"trial_begun\", within_days = 7 },\n]\n",
    );
    edit(
        dir.path(),
        "campaigns.toml",
        "after = { event = \"click\", tag = \"training\", delay = \"3d\" }",
        "after = { event = \"course_complete\", delay = \"1d\" }",
    );
    let o = check(dir.path());
    assert_problem(
        &o,
        "segments/trialists.toml",
        3,
        Some(11),
        "undeclared event \"trial_begun\"; declared: course_completed, trial_started",
    );
    // The segment's mistake stops the load before the campaigns are read; fix it and the
    // follow-up's is found.
    write(
        dir.path(),
        "segments/trialists.toml",
        "[rule]\nall = [{ did = \"trial_started\", within_days = 7, times_at_least = 2 }]\n",
    );
    let line = line_of(dir.path(), "campaigns.toml", "course_complete\"");
    assert_problem(
        &check(dir.path()),
        "campaigns.toml",
        line,
        Some(19),
        "unknown event \"course_complete\"; known: click, open, profile_update, or a declared event: course_completed",
    );
    edit(
        dir.path(),
        "campaigns.toml",
        "course_complete\"",
        "course_completed\"",
    );
    let o = check(dir.path());
    assert_eq!(o.code, 0, "{}\n{}", o.stdout, o.stderr);
}

#[test]
fn library_items_are_checked_with_their_place() {
    // A wrong type, a date that does not parse and an unknown topic: each located.
    let dir = example_copy();
    write(
        dir.path(),
        "content/wrong-type.md",
        "+++\ntitle = 3\nurl = \"https://x.example/a\"\n+++\nBody.\n",
    );
    write(
        dir.path(),
        "content/bad-date.md",
        "+++\ntitle = \"A\"\nurl = \"https://x.example/b\"\ntopics = [\"training\"]\npublished = \"2026-02-30\"\n+++\nBody.\n",
    );
    write(
        dir.path(),
        "content/unknown-topic.md",
        "+++\ntitle = \"A\"\nurl = \"https://x.example/c\"\ntopics = [\"training\", \"cooking\"]\n+++\nBody.\n",
    );
    let o = check(dir.path());
    assert_problem(&o, "content/wrong-type.md", 2, Some(9), "string");
    assert_problem(&o, "content/bad-date.md", 5, Some(13), "published");
    assert_problem(
        &o,
        "content/unknown-topic.md",
        4,
        Some(23),
        "unknown topic \"cooking\"",
    );
}

#[test]
fn a_shared_library_url_is_a_warning_and_no_content_folder_is_fine() {
    let dir = example_copy();
    let url = "https://learn.contoso.example/guides/backup-basics";
    write(
        dir.path(),
        "content/copy.md",
        &format!("+++\ntitle = \"Copy\"\nurl = \"{url}\"\n+++\nBody.\n"),
    );
    let o = check(dir.path());
    assert_eq!(o.code, 0, "{}\n{}", o.stdout, o.stderr);
    assert!(
        o.stderr.contains("warning:") && o.stderr.contains("count as one item"),
        "{}",
        o.stderr
    );
    assert!(
        o.stderr.contains("content/copy.md:3:7: url "),
        "at the url: {}",
        o.stderr
    );
    std::fs::remove_dir_all(dir.path().join("content")).unwrap();
    let o = check(dir.path());
    assert_eq!(o.code, 0, "{}\n{}", o.stdout, o.stderr);
    assert!(o.stderr.contains("0 library item(s)"), "{}", o.stderr);
}

#[test]
fn library_topics_and_sunset_settings_are_checked() {
    let dir = example_copy();
    edit(dir.path(), "campaigns.toml", "items = 3", "items = 0");
    edit(
        dir.path(),
        "campaigns.toml",
        "campaign = \"still-interested\"",
        "campaign = \"welcome\"",
    );
    edit(
        dir.path(),
        "campaigns.toml",
        "security = \"Keeping your data safe\"",
        "Security = \"Keeping your data safe\"",
    );
    let o = check(dir.path());
    assert_problem(
        &o,
        "campaigns.toml",
        line_of(dir.path(), "campaigns.toml", "Security = "),
        Some(1),
        "[topics] key",
    );
    // The topics are wrong, so the rest waits; fix them and look again.
    edit(
        dir.path(),
        "campaigns.toml",
        "Security = \"Keeping your data safe\"",
        "security = \"Keeping your data safe\"",
    );
    let o = check(dir.path());
    assert_problem(
        &o,
        "campaigns.toml",
        line_of(dir.path(), "campaigns.toml", "items = 0"),
        Some(11),
        "items = 0: use 1 to 20",
    );
    assert_problem(
        &o,
        "campaigns.toml",
        line_of(dir.path(), "campaigns.toml", "campaign = \"welcome\""),
        Some(12),
        "reconfirm",
    );
}

/// Windows editors may start a file with a byte-order mark: every kind of marketer's file
/// reads as without it, and locations count from after it.
#[test]
fn files_saved_with_a_byte_order_mark_read_as_without_it() {
    let dir = example_copy();
    let files = [
        "campaigns.toml",
        "segments/small-learners.toml",
        "templates/newsletter.hbs",
        "content/first-course.md",
    ];
    for file in files {
        let p = dir.path().join(file);
        let text = std::fs::read_to_string(&p).unwrap();
        std::fs::write(&p, format!("\u{feff}{text}")).unwrap();
    }
    let o = check(dir.path());
    assert_eq!(o.code, 0, "stdout: {}\nstderr: {}", o.stdout, o.stderr);
    assert!(o.stderr.contains("6 library item(s)"), "{}", o.stderr);
    edit(
        dir.path(),
        "content/first-course.md",
        "+++\ntitle",
        "+++ x\ntitle",
    );
    assert_problem(
        &check(dir.path()),
        "content/first-course.md",
        1,
        Some(1),
        "front matter",
    );
}

/// A mistake in campaigns.toml is reported alone, not with false mistakes in the segments
/// that refer to what it declares (every declared event "undeclared"); a template's
/// mistake leaves the segments checked.
#[test]
fn a_broken_campaigns_file_does_not_make_the_segments_look_wrong() {
    let dir = example_copy();
    edit(
        dir.path(),
        "campaigns.toml",
        "after_days = 180",
        "after_days = \"soon\"",
    );
    write(
        dir.path(),
        "segments/typo.toml",
        "[rule]\nfield = \"engagment\"\neq = \"learner\"\n",
    );
    let o = check(dir.path());
    let line = line_of(dir.path(), "campaigns.toml", "after_days");
    assert_problem(&o, "campaigns.toml", line, Some(14), "invalid type");
    assert_eq!(o.stdout.lines().count(), 1, "{}", o.stdout);

    edit(
        dir.path(),
        "campaigns.toml",
        "after_days = \"soon\"",
        "after_days = 180",
    );
    write(dir.path(), "templates/broken.hbs", "{{#if x}}never closed");
    let o = check(dir.path());
    assert_problem(&o, "templates/broken.hbs", 1, None, "");
    assert_problem(&o, "segments/typo.toml", 2, None, "engagment");
    assert!(
        !o.stdout.contains("took-second-course"),
        "its declared event is found: {}",
        o.stdout
    );
}

/// A programme without a library: no `[topics]`, no `[campaign.library]`, no `content/`.
/// The sample people were drawn from every question's choices, and `topics` then has none
/// (the check panicked).
#[test]
fn a_project_without_topics_or_a_library_checks_clean() {
    let dir = example_copy();
    edit(
        dir.path(),
        "campaigns.toml",
        "[topics]\ntraining = \"Training and how-to guides\"\nsecurity = \"Keeping your data safe\"\ngrowth = \"Growing sales\"\ncommunity = \"Peers and community\"\nexperts = \"Experts' articles\"\n",
        "",
    );
    edit(dir.path(), "campaigns.toml", "[campaign.library]", "");
    edit(dir.path(), "campaigns.toml", "items = 3\n", "");
    std::fs::remove_dir_all(dir.path().join("content")).unwrap();
    let o = check(dir.path());
    assert_eq!(o.code, 0, "stdout: {}\nstderr: {}", o.stdout, o.stderr);
    assert!(o.stderr.contains("0 library item(s)"), "{}", o.stderr);
}
