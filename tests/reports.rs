//! Response-rate and opt-in exports: the exact columns of docs/contract.md, numbers computed by hand,
//! automated hits left out, bad periods refused. On SQLite and PostgreSQL.

mod common;

use rapport::delivery::Transport;
use rapport::delivery::worker::{Worker, WorkerConfig};
use rapport::profile::{Answers, Email, Status};
use rapport::schedule::manual_run;
use rapport::site::{Site, SiteHandle};

on_both_databases!(
    response_rates_by_campaign_run_and_segment,
    every_export_neutralises_formula_cells,
    optin_funnel_per_day,
    feedback_export_counts_each_persons_last_vote_with_the_comment,
    links_export_counts_people_per_run_and_link
);

const BROWSER: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";
const SCANNER: &str = "Mozilla/5.0 (compatible; Barracuda Sentinel)";

/// GETs `url` as a client with user agent `ua` (a person's browser or a link scanner);
/// returns the status.
async fn get_as(app: &common::TestApp, url: String, ua: &str) -> u16 {
    app.client
        .get(url)
        .header("user-agent", ua)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

fn rows(csv: &str) -> Vec<Vec<String>> {
    csv.lines()
        .map(|l| l.split(',').map(str::to_string).collect())
        .collect()
}

/// Runs the example newsletter now, sends it with a worker of the test's own (to an
/// outbox folder it returns) and dates the sends an hour back, so that clicks count as a
/// person's rather than a scanner's first look.
async fn send_newsletter(
    app: &common::TestApp,
    expected: usize,
) -> (rapport::schedule::Queued, tempfile::TempDir) {
    let site = Site::load(std::path::Path::new(env!("CARGO_MANIFEST_DIR"))).unwrap();
    let run = manual_run(&app.store, &site, site.campaign("newsletter").unwrap())
        .await
        .unwrap();
    let outbox = tempfile::tempdir().unwrap();
    let worker = Worker::new(
        app.store.clone(),
        SiteHandle::new(site),
        rapport::mail::Mailer::new(app.signer.clone(), app.address.clone()),
        Transport::outbox(outbox.path()).unwrap(),
        WorkerConfig {
            batch: 10,
            concurrency: 2,
            rate: None,
            max_attempts: 3,
            lease: 60,
            confirm_ttl: 86_400,
            domain_rates: None,
        },
    );
    assert_eq!(worker.run_once().await.unwrap(), expected);
    let raw = common::raw_pool(&app.database_url).await;
    sqlx::query("UPDATE deliveries SET sent_at = sent_at - 3600")
        .execute(&raw)
        .await
        .unwrap();
    (run, outbox)
}

/// Every CSV rapport writes, from the CLI and from /admin, neutralises cells that a
/// spreadsheet would run as a formula (an address is valid with `=` and `|` in it).
async fn every_export_neutralises_formula_cells(db: common::Db) {
    let Some(app) = common::spawn_app_with(db, &[("RAPPORT_WORKER", "off")]).await else {
        return;
    };
    let evil = "=cmd|'/Ccalc'!A0@example.com";
    let learner = Answers {
        engagement: Some("learner".into()),
        employees: Some(10),
        ..Answers::default()
    };
    app.store
        .insert_profiles(
            &[(Email::parse(evil).unwrap(), learner)],
            Status::Subscribed,
            "test",
        )
        .await
        .unwrap();
    let (_, outbox) = send_newsletter(&app, 1).await;
    let mail = common::read_messages(outbox.path()).remove(0);
    let r = app
        .client
        .get(mail.link("/c/").unwrap())
        .header("user-agent", BROWSER)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 302);
    let mut clicks = String::new();
    for _ in 0..400 {
        clicks = app.cli(&["export", "clicks"]).1;
        if clicks.lines().count() == 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert!(
        clicks.contains(",'=cmd|'/Ccalc'!A0@example.com,"),
        "{clicks}"
    );
    let mut outputs = vec![clicks];
    for args in [
        &["export", "response-rates"][..],
        &["export", "response-rates", "--by", "run"],
        &["export", "response-rates", "--by", "segment"],
        &["export", "optin"],
    ] {
        let (code, out, err) = app.cli(args);
        assert_eq!(code, 0, "{args:?}: {err}");
        outputs.push(out);
    }
    for path in ["response-rates.csv", "optin.csv", "clicks.csv"] {
        let r = app
            .client
            .get(app.url(&format!("/admin/reports/{path}")))
            .bearer_auth(common::ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200, "{path}");
        outputs.push(r.text().await.unwrap());
    }
    assert!(
        outputs.last().unwrap().contains("'=cmd|"),
        "the admin's clicks.csv too"
    );
    for csv in &outputs {
        let mut reader = csv::Reader::from_reader(csv.as_bytes());
        for record in reader.records() {
            for cell in record.unwrap().iter() {
                assert!(
                    !cell.starts_with(['=', '+', '-', '@', '\t', '\r']),
                    "{cell:?} in\n{csv}"
                );
            }
        }
    }
}

async fn response_rates_by_campaign_run_and_segment(db: common::Db) {
    let Some(app) = common::spawn_app_with(db, &[("RAPPORT_WORKER", "off")]).await else {
        return;
    };
    let learner = Answers {
        engagement: Some("learner".into()),
        employees: Some(10),
        ..Answers::default()
    };
    let rows_in: Vec<(Email, Answers)> = (0..2)
        .map(|i| {
            (
                Email::parse(&format!("r{i}@example.com")).unwrap(),
                learner.clone(),
            )
        })
        .collect();
    app.store
        .insert_profiles(&rows_in, Status::Subscribed, "test")
        .await
        .unwrap();
    let (run, outbox) = send_newsletter(&app, 2).await;
    let raw = common::raw_pool(&app.database_url).await;
    let mails = common::read_messages(outbox.path());
    let to = |who: &str| mails.iter().find(|m| m.to.contains(who)).unwrap().clone();
    let (r0, r1) = (to("r0@"), to("r1@"));
    // r0: a person's click and a scanner's click; unsubscribes. r1: only a scanner; says yes.
    assert_eq!(get_as(&app, r0.link("/c/").unwrap(), BROWSER).await, 302);
    assert_eq!(get_as(&app, r0.link("/c/").unwrap(), SCANNER).await, 302);
    assert_eq!(get_as(&app, r1.link("/c/").unwrap(), SCANNER).await, 302);
    assert_eq!(
        app.post_form(&r0.link("/unsubscribe/").unwrap(), &[])
            .await
            .status,
        200
    );
    assert_eq!(get_as(&app, r1.link("?v=yes").unwrap(), BROWSER).await, 200);
    // Clicks are written in batches off the request path: wait for the three.
    common::wait_for_count(
        &raw,
        "SELECT COUNT(*) FROM events WHERE kind = 'click' AND delivery_id IS NOT NULL",
        3,
    )
    .await;

    let (code, csv, err) = app.cli(&["export", "response-rates"]);
    assert_eq!(code, 0, "{err}");
    let t = rows(&csv);
    assert_eq!(
        csv.lines().next().unwrap(),
        "campaign,run,segment,recipients,delivered,bounced,unique_opens,open_rate,unique_clicks,click_rate,click_to_open_rate,unsubscribes,unsubscribe_rate,feedback_yes,feedback_no"
    );
    assert_eq!(t.len(), 3, "{csv}");
    assert_eq!(
        t[1],
        [
            "newsletter",
            "",
            "",
            "2",
            "2",
            "0",
            "1",
            "0.5000",
            "1",
            "0.5000",
            "1.0000",
            "1",
            "0.5000",
            "1",
            "0"
        ]
    );
    // The person's training click queued the follow-up (not sent yet: rates empty).
    assert_eq!(
        t[2],
        [
            "training-follow-up",
            "",
            "",
            "1",
            "0",
            "0",
            "0",
            "",
            "0",
            "",
            "",
            "0",
            "",
            "0",
            "0"
        ]
    );

    let (_, csv, _) = app.cli(&["export", "response-rates", "--by", "run"]);
    let t = rows(&csv);
    assert_eq!(t.len(), 3);
    let runs = app.store.runs_of("newsletter").await.unwrap();
    assert_eq!(runs[0].0, run.run_id);
    assert_eq!(t[1][1], runs[0].1, "the run's key");
    assert_eq!(t[1][9], "0.5000");

    let file = tempfile::NamedTempFile::new().unwrap();
    let (code, _, _) = app.cli(&[
        "export",
        "response-rates",
        "--by",
        "segment",
        "-o",
        file.path().to_str().unwrap(),
    ]);
    assert_eq!(code, 0);
    let csv = std::fs::read_to_string(file.path()).unwrap();
    let t = rows(&csv);
    let learners = t
        .iter()
        .find(|r| r[2] == "small-learners")
        .expect("a row per campaign and segment");
    assert_eq!(
        learners[..5],
        ["newsletter", "", "small-learners", "2", "2"]
    );
    assert!(
        !t.iter().any(|r| r[2] == "connectors"),
        "segments without deliveries have no row: {csv}"
    );

    let (code, _, err) = app.cli(&[
        "export",
        "response-rates",
        "--from",
        "2026-11-02",
        "--to",
        "2026-11-01",
    ]);
    assert_eq!(code, 1);
    assert!(
        err.contains("--from 2026-11-02 is after --to 2026-11-01"),
        "{err}"
    );
    let (code, _, err) = app.cli(&["export", "response-rates", "--from", "yesterday"]);
    assert_eq!(code, 1);
    assert!(err.contains("YYYY-MM-DD"), "{err}");
    let (code, _, err) = app.cli(&["export", "response-rates", "--by", "colour"]);
    assert_eq!(code, 1);
    assert!(err.contains("campaign, run or segment"), "{err}");
    let (_, csv, _) = app.cli(&[
        "export",
        "response-rates",
        "--from",
        "2000-01-01",
        "--to",
        "2000-01-31",
    ]);
    assert_eq!(
        rows(&csv).len(),
        1,
        "header only for a period without sends"
    );
}

async fn optin_funnel_per_day(db: common::Db) {
    let Some(app) = common::spawn_app(db).await else {
        return;
    };
    app.get("/").await;
    app.get("/").await;
    app.subscribed("f0@example.com", &[]).await;
    app.subscribe("f1@example.com", &[]).await;
    let (code, csv, err) = app.cli(&["export", "optin"]);
    assert_eq!(code, 0, "{err}");
    let t = rows(&csv);
    assert_eq!(
        t[0],
        [
            "day",
            "form_views",
            "submissions",
            "confirmations",
            "confirmation_rate",
            "new_profiles",
            "fully_profiled",
            "fully_profiled_share",
            "lapsed"
        ]
    );
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    assert_eq!(
        t[1],
        [
            today.as_str(),
            "2",
            "2",
            "1",
            "0.5000",
            "2",
            "0",
            "0.0000",
            "0"
        ]
    );
}

/// Three recipients: f0 votes no, then yes, and comments (with a NUL and an ESC, which are
/// dropped); a scanner fetches both of f1's vote links; f2 votes no. The export has one row
/// per counted vote, and the response rates count the same.
async fn feedback_export_counts_each_persons_last_vote_with_the_comment(db: common::Db) {
    let Some(app) = common::spawn_app_with(db, &[("RAPPORT_WORKER", "off")]).await else {
        return;
    };
    let owner = Answers {
        industry: Some("retail".into()),
        employees: Some(12),
        engagement: Some("learner".into()),
        ..Answers::default()
    };
    let people: Vec<(Email, Answers)> = (0..3)
        .map(|i| {
            (
                Email::parse(&format!("f{i}@example.com")).unwrap(),
                owner.clone(),
            )
        })
        .collect();
    app.store
        .insert_profiles(&people, Status::Subscribed, "test")
        .await
        .unwrap();
    let (run, outbox) = send_newsletter(&app, 3).await;
    let mails = common::read_messages(outbox.path());
    let to = |who: &str| mails.iter().find(|m| m.to.contains(who)).unwrap().clone();
    let vote = |m: &common::Mail, v: &str, ua: &'static str| {
        get_as(&app, m.link(&format!("?v={v}")).unwrap(), ua)
    };
    let (f0, f1, f2) = (to("f0@"), to("f1@"), to("f2@"));
    assert_eq!(vote(&f0, "no", BROWSER).await, 200);
    assert_eq!(vote(&f0, "yes", BROWSER).await, 200);
    let action = f0
        .link("?v=yes")
        .unwrap()
        .split('?')
        .next()
        .unwrap()
        .to_string();
    let page = app
        .post_form(&action, &[("comment", "Great \u{0}tips\u{1b}[31m thanks")])
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert_eq!(vote(&f1, "yes", SCANNER).await, 200);
    assert_eq!(vote(&f1, "no", SCANNER).await, 200);
    assert_eq!(vote(&f2, "no", BROWSER).await, 200);

    let (code, csv, err) = app.cli(&["export", "feedback"]);
    assert_eq!(code, 0, "{err}");
    let t = rows(&csv);
    assert_eq!(
        csv.lines().next().unwrap(),
        "at,campaign,run,vote,comment,email,industry,employees,engagement"
    );
    assert_eq!(t.len(), 3, "two counted votes: {csv}");
    let row = |who: &str| t.iter().find(|r| r[5].starts_with(who)).unwrap().clone();
    let runs = app.store.runs_of("newsletter").await.unwrap();
    let period = runs.iter().find(|r| r.0 == run.run_id).unwrap().1.clone();
    assert_eq!(
        row("f0@")[1..],
        [
            "newsletter",
            &period,
            "yes",
            "Great tips[31m thanks",
            "f0@example.com",
            "retail",
            "12",
            "learner"
        ]
    );
    assert_eq!(
        row("f2@")[1..],
        [
            "newsletter",
            &period,
            "no",
            "",
            "f2@example.com",
            "retail",
            "12",
            "learner"
        ]
    );
    assert!(row("f0@")[0].ends_with('Z'), "RFC 3339 UTC: {csv}");

    let (_, rates, _) = app.cli(&["export", "response-rates"]);
    let r = rows(&rates);
    assert_eq!(r[1][0], "newsletter", "{rates}");
    assert_eq!(
        (r[1][13].as_str(), r[1][14].as_str()),
        ("1", "1"),
        "one yes (f0's last), one no (f2); the scanner's two not at all: {rates}"
    );

    // The same file from /admin.
    let page = app
        .client
        .get(app.url("/admin/reports/feedback.csv"))
        .header("authorization", format!("Bearer {}", common::ADMIN_TOKEN))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert_eq!(page.text().await.unwrap(), csv);
}

/// Three recipients of one run: l0 clicks the tracked link twice, l1 once, a scanner
/// follows l2's. One row for that link: a person clicked it in 2 of the 3 messages.
async fn links_export_counts_people_per_run_and_link(db: common::Db) {
    let Some(app) = common::spawn_app_with(db, &[("RAPPORT_WORKER", "off")]).await else {
        return;
    };
    let people: Vec<(Email, Answers)> = (0..3)
        .map(|i| {
            (
                Email::parse(&format!("l{i}@example.com")).unwrap(),
                Answers {
                    engagement: Some("learner".into()),
                    employees: Some(10),
                    ..Answers::default()
                },
            )
        })
        .collect();
    app.store
        .insert_profiles(&people, Status::Subscribed, "test")
        .await
        .unwrap();
    let (run, outbox) = send_newsletter(&app, 3).await;
    let mails = common::read_messages(outbox.path());
    let to = |who: &str| mails.iter().find(|m| m.to.contains(who)).unwrap().clone();
    let (l0, l1, l2) = (to("l0@"), to("l1@"), to("l2@"));
    // Every tracked link of the message, in order: the first is the one people click.
    let links = |m: &common::Mail| -> Vec<String> {
        let html = html_escape::decode_html_entities(&m.html).into_owned();
        html.match_indices("href=\"")
            .map(|(i, _)| {
                let rest = &html[i + 6..];
                rest[..rest.find('"').unwrap()].to_string()
            })
            .filter(|u| u.contains("/c/"))
            .collect()
    };
    let (first0, first1, all2) = (links(&l0)[0].clone(), links(&l1)[0].clone(), links(&l2));
    assert_eq!(get_as(&app, first0.clone(), BROWSER).await, 302);
    assert_eq!(get_as(&app, first0, BROWSER).await, 302);
    assert_eq!(get_as(&app, first1, BROWSER).await, 302);
    assert_eq!(get_as(&app, all2[0].clone(), SCANNER).await, 302);
    let raw = common::raw_pool(&app.database_url).await;
    common::wait_for_count(&raw, "SELECT COUNT(*) FROM events WHERE kind = 'click'", 4).await;
    let (code, csv, err) = app.cli(&["export", "links"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        csv.lines().next().unwrap(),
        "campaign,run,url,tag,unique_clicks,click_rate,item"
    );
    let t = rows(&csv);
    assert_eq!(t.len(), 2, "one link clicked in the run: {csv}");
    let runs = app.store.runs_of("newsletter").await.unwrap();
    let period = runs.iter().find(|r| r.0 == run.run_id).unwrap().1.clone();
    assert_eq!(t[1][0..2], ["newsletter", period.as_str()]);
    assert!(t[1][2].starts_with("https://"), "the stored URL: {csv}");
    assert_eq!(t[1][4..], ["2", "0.6667", ""], "{csv}");

    let page = app
        .client
        .get(app.url("/admin/reports/links.csv"))
        .header("authorization", format!("Bearer {}", common::ADMIN_TOKEN))
        .send()
        .await
        .unwrap();
    assert_eq!(page.text().await.unwrap(), csv);
}
