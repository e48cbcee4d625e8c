//! The library, topics and how often, on both databases: the newsletter assembled per person
//! from `content/*.md` (topic, segment, industry; never an item twice, never an expired
//! one; the same selection in `preview` as in the send; clicks reported per item), the
//! topics and frequency people choose (profile centre, import, API, segments, the
//! unsubscribe page), the quarterly skip of scheduled runs, and the sunset to `lapsed` and
//! back. Time moves with the scheduler's clock, never with sleeps.

mod common;

use chrono::{DateTime, Datelike, TimeZone, Utc};
use common::{Db, TestApp, example_copy, spawn_app_at};
use rapport::site::Site;

on_both_databases!(
    each_reader_gets_their_own_items_never_twice_and_preview_agrees,
    topics_and_frequency_from_the_form_the_import_the_api_and_segments,
    the_unsubscribe_page_offers_fewer_emails_and_dropping_topics,
    a_quarterly_reader_skips_scheduled_newsletters_for_80_days,
    the_silent_are_asked_once_then_lapse_and_come_back,
);

/// A library whose order is known: training items of three ages, one expired, one for
/// connectors only, one for retail only, one about security.
const ITEMS: &[(&str, &str)] = &[
    ("t-old", "topics = [\"training\"]\npublished = 2025-01-01"),
    ("t-mid", "topics = [\"training\"]\npublished = 2025-02-01"),
    ("t-new", "topics = [\"training\"]\npublished = 2025-03-01"),
    (
        "t-expired",
        "topics = [\"training\"]\npublished = 2025-04-01\nexpires = 2025-05-01",
    ),
    (
        "connectors-only",
        "topics = [\"community\"]\nsegments = [\"connectors\"]\npublished = 2025-01-05",
    ),
    (
        "retail-only",
        "topics = [\"growth\"]\nindustries = [\"retail\"]\npublished = 2025-01-06",
    ),
    (
        "security",
        "topics = [\"security\"]\npublished = 2025-01-07",
    ),
];

fn url_of(id: &str) -> String {
    format!("https://learn.example/{id}")
}

/// The example project with [`ITEMS`] as its library and two items per newsletter.
fn project() -> tempfile::TempDir {
    let dir = example_copy();
    let content = dir.path().join("content");
    std::fs::remove_dir_all(&content).unwrap();
    std::fs::create_dir(&content).unwrap();
    for (id, front) in ITEMS {
        std::fs::write(
            content.join(format!("{id}.md")),
            format!(
                "+++\ntitle = \"Item {id}\"\nurl = \"{}\"\n{front}\n+++\nAbout *{id}*.\n",
                url_of(id)
            ),
        )
        .unwrap();
    }
    let toml = dir.path().join("campaigns.toml");
    let s = std::fs::read_to_string(&toml).unwrap();
    std::fs::write(&toml, s.replacen("items = 3", "items = 2", 1)).unwrap();
    std::fs::write(
        dir.path().join("segments/security-readers.toml"),
        "[rule]\nfield = \"topics\"\ncontains = \"security\"\n",
    )
    .unwrap();
    dir
}

async fn spawn(db: Db, dir: &tempfile::TempDir, now: DateTime<Utc>) -> Option<TestApp> {
    spawn_app_at(db, dir.path(), &[], now).await
}

/// The library items (ids) in a newsletter message, in order.
fn items_in(html: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = html;
    while let Some(at) = rest.find("Item ") {
        let tail = &rest[at + 5..];
        let end = tail.find('<').unwrap_or(tail.len());
        out.push(tail[..end].trim().to_string());
        rest = &tail[end..];
    }
    out
}

/// A newsletter run started as `rapport run` starts it; waits until every message is sent.
async fn run_newsletter(app: &TestApp, dir: &tempfile::TempDir) -> i64 {
    let site = Site::load(dir.path()).unwrap();
    let campaign = site.campaign("newsletter").unwrap();
    let q = rapport::schedule::manual_run(&app.store, &site, campaign)
        .await
        .unwrap();
    wait_for_run(app, q.run_id).await;
    q.run_id
}

async fn wait_for_run(app: &TestApp, run_id: i64) {
    for _ in 0..400 {
        if app.store.run_progress(run_id).await.unwrap().finished() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("run {run_id} did not finish");
}

/// The newsletters `email` received, oldest first.
fn newsletters_to(app: &TestApp, email: &str) -> Vec<common::Mail> {
    app.outbox_messages()
        .into_iter()
        .filter(|m| m.to.contains(email) && m.subject.contains("briefing"))
        .collect()
}

async fn each_reader_gets_their_own_items_never_twice_and_preview_agrees(db: Db) {
    let dir = project();
    let Some(app) = spawn(db, &dir, Utc::now()).await else {
        return;
    };
    app.subscribed("ann@example.com", &[("topics", "training")])
        .await;
    app.subscribed(
        "bob@example.com",
        &[("topics", "growth"), ("industry", "retail")],
    )
    .await;
    app.subscribed(
        "cy@example.com",
        &[("topics", "growth"), ("industry", "construction")],
    )
    .await;

    run_newsletter(&app, &dir).await;
    // Ann: her topic, newest first; never the expired one.
    assert_eq!(
        items_in(&newsletters_to(&app, "ann@")[0].html),
        ["t-new", "t-mid"]
    );
    // Bob: his topic and industry first; Cy, in construction, never gets the retail item.
    assert_eq!(
        items_in(&newsletters_to(&app, "bob@")[0].html)[0],
        "retail-only"
    );
    let cy = items_in(&newsletters_to(&app, "cy@")[0].html);
    assert!(!cy.contains(&"retail-only".to_string()), "{cy:?}");
    // Nobody outside the connectors gets the connectors' item.
    for who in ["ann@", "bob@", "cy@"] {
        let got = items_in(&newsletters_to(&app, who)[0].html);
        assert!(
            !got.contains(&"connectors-only".to_string()),
            "{who} {got:?}"
        );
        assert!(!got.contains(&"t-expired".to_string()), "{who} {got:?}");
    }

    // Preview shows what the next run will send: not what was sent before.
    let site = Site::load(dir.path()).unwrap();
    let campaign = site.campaign("newsletter").unwrap();
    let ann = app
        .store
        .profile_by_email(&rapport::profile::Email::parse("ann@example.com").unwrap())
        .await
        .unwrap()
        .unwrap();
    let mailer = rapport::mail::Mailer::new(
        rapport::track::Signer::new(common::SECRET.as_bytes()),
        app.address.clone(),
    );
    let (_, preview) = rapport::mail::preview(
        &mailer,
        &app.store,
        &site,
        campaign,
        &ann,
        chrono::Utc::now().timestamp(),
    )
    .await
    .unwrap();
    let previewed = items_in(&preview.html);
    assert_eq!(previewed[0], "t-old", "{previewed:?}");
    assert!(!previewed.iter().any(|i| i == "t-new" || i == "t-mid"));

    run_newsletter(&app, &dir).await;
    let second = items_in(&newsletters_to(&app, "ann@")[1].html);
    assert_eq!(second, previewed, "the send differs from its preview");

    // A third run: Ann has had every training item; no item comes twice.
    run_newsletter(&app, &dir).await;
    let mut all: Vec<String> = newsletters_to(&app, "ann@")
        .iter()
        .flat_map(|m| items_in(&m.html))
        .collect();
    let n = all.len();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), n, "an item came twice: {all:?}");

    // A click on an item is reported per item in the links export.
    let first = &newsletters_to(&app, "ann@")[0];
    let html = html_escape::decode_html_entities(&first.html).into_owned();
    let at = html.find("Item t-new").expect("the item's title");
    let href = html[..at].rfind("href=\"").unwrap() + 6;
    let click = html[href..href + html[href..].find('"').unwrap()].to_string();
    assert!(click.contains("/c/"), "the item's link is tracked: {click}");
    let r = app.get(&click).await;
    assert_eq!(r.status, 302, "{}", r.body);
    assert_eq!(r.headers["location"], url_of("t-new").as_str());
    let mut csv = String::new();
    for _ in 0..100 {
        csv = app.admin("/admin/reports/links.csv").await;
        if csv.lines().count() > 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(csv.lines().next().unwrap().ends_with(",item"), "{csv}");
    assert!(
        csv.lines()
            .any(|l| l.contains(&url_of("t-new")) && l.ends_with(",t-new")),
        "{csv}"
    );
}

async fn topics_and_frequency_from_the_form_the_import_the_api_and_segments(db: Db) {
    let dir = project();
    let Some(app) = spawn(db, &dir, Utc::now()).await else {
        return;
    };
    // The profile centre asks both, as checkboxes and a choice.
    let centre = app.subscribed("dee@example.com", &[]).await;
    let page = app.get(&format!("{centre}?step=5")).await;
    assert!(
        page.body.contains("What would you like to hear about?"),
        "{}",
        page.body
    );
    assert!(page.body.contains("type=\"checkbox\"") && page.body.contains("value=\"security\""));
    assert!(page.body.contains("How often?") && page.body.contains("quarterly"));
    let saved = app
        .post_form(
            &centre,
            &[
                ("step", "5"),
                ("topics", "security"),
                ("topics", "training"),
                ("frequency", "quarterly"),
            ],
        )
        .await;
    assert_eq!(saved.status, 200, "{}", saved.body);
    let dee = app
        .store
        .profile_by_email(&rapport::profile::Email::parse("dee@example.com").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        dee.answers.topics.as_deref(),
        Some(&["security".to_string(), "training".to_string()][..])
    );
    assert!(dee.answers.quarterly());
    // A topic that is not declared is a field error, not stored.
    let bad = app
        .post_form(&centre, &[("step", "5"), ("topics", "cooking")])
        .await;
    assert_eq!(bad.status, 422);
    assert!(bad.body.contains("cooking"), "{}", bad.body);

    // The import: several topics in one cell, separated by ;.
    let csv = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        csv.path(),
        "email,topics,frequency\neve@example.com,training;security,monthly\nfay@example.com,training;cooking,\n",
    )
    .unwrap();
    let (code, out, err) = app.cli(&["import", csv.path().to_str().unwrap(), "--source", "crm"]);
    let said = format!("{out}{err}");
    assert_eq!(code, 1, "{said}");
    assert!(
        said.contains(":3: topics") && said.contains("cooking"),
        "{said}"
    );
    let eve = app
        .store
        .profile_by_email(&rapport::profile::Email::parse("eve@example.com").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(eve.answers.topics.as_ref().map(Vec::len), Some(2));
    assert_eq!(eve.answers.frequency.as_deref(), Some("monthly"));

    // The API: topics as a JSON list; segments test them.
    let (code, token, err) = app.cli(&[
        "token",
        "create",
        "crm",
        "--scopes",
        "profiles:write,profiles:read",
    ]);
    assert_eq!(code, 0, "{err}");
    let token = token.trim();
    let (status, body) = common::create_profile(
        &app,
        token,
        serde_json::json!({
            "email": "gil@example.com", "consent": { "source": "crm" }, "double_opt_in": false,
            "topics": ["security"], "frequency": "monthly"
        }),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let r = app
        .client
        .get(app.url("/api/v1/profiles/gil@example.com"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let body: serde_json::Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
    assert_eq!(body["answers"]["topics"], serde_json::json!(["security"]));
    assert!(
        body["segments"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s == "security-readers"),
        "{body}"
    );
    let (status, body) = common::create_profile(
        &app,
        token,
        serde_json::json!({
            "email": "hal@example.com", "consent": { "source": "crm" }, "double_opt_in": false,
            "topics": ["knitting"]
        }),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert!(body.to_string().contains("topics"), "{body}");
}

async fn the_unsubscribe_page_offers_fewer_emails_and_dropping_topics(db: Db) {
    let dir = project();
    let Some(app) = spawn(db, &dir, Utc::now()).await else {
        return;
    };
    app.subscribed(
        "ivy@example.com",
        &[("topics", "training"), ("topics", "security")],
    )
    .await;
    run_newsletter(&app, &dir).await;
    let mail = &newsletters_to(&app, "ivy@")[0];
    let unsubscribe = mail.link("/unsubscribe/").expect("unsubscribe link");
    let page = app.get(&unsubscribe).await;
    assert!(page.body.contains("Fewer emails"), "{}", page.body);
    assert!(
        page.body.contains("name=\"drop\" value=\"security\""),
        "{}",
        page.body
    );
    assert!(page.body.contains("Unsubscribe from everything"));

    let ivy = || async {
        app.store
            .profile_by_email(&rapport::profile::Email::parse("ivy@example.com").unwrap())
            .await
            .unwrap()
            .unwrap()
    };
    let r = app
        .post_form(&unsubscribe, &[("choice", "topics"), ("drop", "security")])
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let p = ivy().await;
    assert_eq!(p.status, rapport::profile::Status::Subscribed);
    assert_eq!(p.answers.topics, Some(vec!["training".to_string()]));

    let r = app.post_form(&unsubscribe, &[("choice", "fewer")]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let p = ivy().await;
    assert_eq!(p.status, rapport::profile::Status::Subscribed);
    assert!(p.answers.quarterly());
    // The page no longer offers what is done.
    let page = app.get(&unsubscribe).await;
    assert!(!page.body.contains("Fewer emails"), "{}", page.body);

    // The one-click POST of mail clients still unsubscribes from everything.
    let r = app
        .post_form(&unsubscribe, &[("List-Unsubscribe", "One-Click")])
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(ivy().await.status, rapport::profile::Status::Unsubscribed);
}

/// 09:00:30 UTC on the first day of the month `months` after `from`'s.
fn first_of_month(from: DateTime<Utc>, months: u32) -> DateTime<Utc> {
    let m0 = from.year() * 12 + from.month0() as i32 + months as i32;
    Utc.with_ymd_and_hms(m0 / 12, (m0 % 12) as u32 + 1, 1, 9, 0, 30)
        .unwrap()
}

async fn a_quarterly_reader_skips_scheduled_newsletters_for_80_days(db: Db) {
    let dir = project();
    let now = Utc::now();
    let Some(app) = spawn(db, &dir, now).await else {
        return;
    };
    app.subscribed("jo@example.com", &[("frequency", "quarterly")])
        .await;
    app.subscribed("kim@example.com", &[("frequency", "monthly")])
        .await;
    let app = &app;
    let queued = |n: usize| async move {
        for _ in 0..400 {
            // Queued (its recipients counted), then sent.
            let runs = app.store.runs_of("newsletter").await.unwrap();
            if runs.len() >= n && runs[n - 1].2 > 0 {
                wait_for_run(app, runs[n - 1].0).await;
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("scheduled run {n} never started");
    };
    // The next 1st: both get it (Jo had no newsletter yet).
    app.clock.set(first_of_month(now, 1));
    queued(1).await;
    assert_eq!(newsletters_to(app, "jo@").len(), 1);
    assert_eq!(newsletters_to(app, "kim@").len(), 1);
    // A month on (her last newsletter went out less than 80 days before): Jo is skipped.
    app.clock.set(first_of_month(now, 2));
    queued(2).await;
    assert_eq!(newsletters_to(app, "jo@").len(), 1);
    assert_eq!(newsletters_to(app, "kim@").len(), 2);
    // Four months on: more than 80 days since her last, Jo gets the newsletter again.
    app.clock.set(first_of_month(now, 5));
    queued(3).await;
    assert_eq!(newsletters_to(app, "jo@").len(), 2);
    assert_eq!(newsletters_to(app, "kim@").len(), 3);
}

async fn the_silent_are_asked_once_then_lapse_and_come_back(db: Db) {
    let dir = project();
    let now = Utc::now();
    let Some(app) = spawn(db, &dir, now).await else {
        return;
    };
    for who in ["lee", "max", "ned"] {
        app.subscribed(&format!("{who}@example.com"), &[]).await;
    }
    run_newsletter(&app, &dir).await;
    let status = |email: &'static str| {
        let app = &app;
        async move {
            app.store
                .profile_by_email(&rapport::profile::Email::parse(email).unwrap())
                .await
                .unwrap()
                .unwrap()
                .status
        }
    };
    let asked = |m: &common::Mail| m.subject.contains("still want to hear from us");

    // 181 days of silence: each is asked once.
    app.clock.set(now + chrono::Duration::days(181));
    for who in ["lee@", "max@", "ned@"] {
        app.wait_for_mail(|m| asked(m) && m.to.contains(who)).await;
    }
    let raw = common::raw_pool(&app.database_url).await;
    // As if they subscribed ten minutes ago and were asked two minutes ago: a click now is
    // a person's (one within seconds of the send is a link scanner's).
    sqlx::query(
        "UPDATE deliveries SET sent_at = sent_at - 120 WHERE campaign = 'still-interested'",
    )
    .execute(&raw)
    .await
    .unwrap();
    sqlx::query("UPDATE profiles SET confirmed_at = confirmed_at - 600")
        .execute(&raw)
        .await
        .unwrap();
    let keep_link = |who: &str| {
        app.outbox_messages()
            .into_iter()
            .find(|m| asked(m) && m.to.contains(who))
            .unwrap()
            .link("/c/")
            .expect("the keep link is tracked")
    };
    // Max clicks "keep me subscribed"; Lee's mail gateway follows his link (not a person).
    let r = app.get(&keep_link("max@")).await;
    assert_eq!(r.status, 302);
    let kept = app.get(r.headers["location"].to_str().unwrap()).await;
    assert!(kept.body.contains("you stay subscribed"), "{}", kept.body);
    let scan = app
        .client
        .get(keep_link("lee@"))
        .header("user-agent", "Mimecast Safe Links scanner")
        .send()
        .await
        .unwrap();
    assert_eq!(scan.status(), 302);
    // Hits are written off the request path: both are stored before the clock moves on.
    common::wait_for_count(
        &raw,
        "SELECT COUNT(*) FROM events WHERE kind = 'click' AND campaign = 'still-interested'",
        2,
    )
    .await;

    // Fifteen days on, no click by a person: Lee and Ned lapse; Max stays.
    app.clock.set(now + chrono::Duration::days(181 + 15));
    for _ in 0..400 {
        if status("ned@example.com").await == rapport::profile::Status::Lapsed {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(
        status("lee@example.com").await,
        rapport::profile::Status::Lapsed
    );
    assert_eq!(
        status("ned@example.com").await,
        rapport::profile::Status::Lapsed
    );
    assert_eq!(
        status("max@example.com").await,
        rapport::profile::Status::Subscribed
    );
    let admin = app.admin("/admin").await;
    assert!(
        admin.contains("2 lapsed"),
        "the dashboard counts the lapsed"
    );
    let optin = app.admin("/admin/reports/optin.csv").await;
    let header = optin.lines().next().unwrap();
    assert!(header.ends_with(",lapsed"), "{header}");
    let lapsed: i64 = optin
        .lines()
        .skip(1)
        .filter_map(|l| l.rsplit(',').next()?.parse::<i64>().ok())
        .sum();
    assert_eq!(lapsed, 2, "{optin}");
    // The lapsed get no newsletter; nobody is asked twice.
    let before = newsletters_to(&app, "lee@").len();
    run_newsletter(&app, &dir).await;
    assert_eq!(newsletters_to(&app, "lee@").len(), before);
    assert_eq!(newsletters_to(&app, "max@").len(), before + 1);
    let asks = app.outbox_messages().iter().filter(|m| asked(m)).count();
    assert_eq!(asks, 3);

    // Back through the form (a confirmation), and through the profile centre.
    app.subscribed("lee@example.com", &[]).await;
    assert_eq!(
        status("lee@example.com").await,
        rapport::profile::Status::Subscribed
    );
    let centre = newsletters_to(&app, "ned@")[0]
        .link("/profile/")
        .expect("profile link");
    let r = app
        .post_form(&centre, &[("step", "5"), ("frequency", "monthly")])
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        status("ned@example.com").await,
        rapport::profile::Status::Subscribed
    );
    // Coming back is an opt-in with its proof, like any other.
    let ned = app
        .store
        .profile_by_email(&rapport::profile::Email::parse("ned@example.com").unwrap())
        .await
        .unwrap()
        .unwrap();
    let last = app.store.consents(ned.id).await.unwrap().pop().unwrap();
    assert_eq!(
        (last.0.as_str(), last.1.as_str()),
        ("opt_in_confirmed", "profile-centre")
    );
    // When the sunset looks again, they stay.
    let later = now + chrono::Duration::days(181 + 15) + chrono::Duration::hours(2);
    let site = Site::load(dir.path()).unwrap();
    let (asked_again, lapsed) = rapport::schedule::sunset(&app.store, &site, later.timestamp())
        .await
        .unwrap();
    assert_eq!((asked_again, lapsed), (0, 0));
    assert_eq!(
        status("lee@example.com").await,
        rapport::profile::Status::Subscribed
    );
    assert_eq!(
        status("ned@example.com").await,
        rapport::profile::Status::Subscribed
    );
}
