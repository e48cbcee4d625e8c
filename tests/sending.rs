//! Sending through a real SMTP server (Postfix's smtp-sink): the welcome after
//! confirmation, manual and scheduled runs, bounces, retries, the checks made right before
//! each send, and follow-ups. Each on SQLite and PostgreSQL.

mod common;

use std::time::Duration;

use chrono::TimeZone;
use common::smtp::SmtpSink;
use common::{Db, TestApp};
use rapport::delivery::Transport;
use rapport::delivery::worker::{Worker, WorkerConfig};
use rapport::profile::{Answers, Email, Status};
use rapport::schedule::{Happened, manual_run, tick, trigger, trigger_many};
use rapport::site::{Site, SiteHandle};
use rapport::store::{ConsentMeta, EventKind, now};

on_both_databases!(
    welcome_follows_confirmation_once,
    manual_runs_reach_each_subscriber_once_per_run,
    scheduled_runs_are_created_once_per_period,
    a_new_install_never_sends_a_missed_newsletter,
    a_server_started_on_the_first_after_nine_queues_nothing,
    permanent_refusal_bounces_the_address,
    transient_failure_is_retried,
    status_and_unless_are_checked_right_before_sending,
    a_batch_of_clicks_starts_each_follow_up_once_per_person,
    confirmations_leave_through_the_queue_ahead_of_a_newsletter,
    a_request_during_the_send_of_its_confirmation_gets_its_own_email,
);

fn site() -> Site {
    Site::load(std::path::Path::new(env!("CARGO_MANIFEST_DIR"))).expect("example project")
}

async fn add_subscribers(app: &TestApp, prefix: &str, n: usize, answers: Answers) -> Vec<i64> {
    let rows: Vec<(Email, Answers)> = (0..n)
        .map(|i| {
            (
                Email::parse(&format!("{prefix}{i}@example.com")).unwrap(),
                answers.clone(),
            )
        })
        .collect();
    app.store
        .insert_profiles(&rows, Status::Subscribed, "test")
        .await
        .unwrap();
    let mut ids = Vec::new();
    for (e, _) in rows {
        ids.push(app.store.profile_by_email(&e).await.unwrap().unwrap().id);
    }
    ids
}

/// A worker driven by the test itself (the server's own is off), writing to an outbox.
fn own_worker(app: &TestApp, outbox: &std::path::Path) -> Worker {
    Worker::new(
        app.store.clone(),
        SiteHandle::new(site()),
        rapport::mail::Mailer::new(app.signer.clone(), app.address.clone()),
        Transport::outbox(outbox).unwrap(),
        WorkerConfig {
            batch: 50,
            concurrency: 4,
            rate: None,
            max_attempts: 3,
            lease: 60,
            confirm_ttl: 86_400,
            domain_rates: None,
        },
    )
}

async fn wait_progress(
    app: &TestApp,
    run_id: i64,
    done: impl Fn(&rapport::store::RunProgress) -> bool,
) -> rapport::store::RunProgress {
    for _ in 0..800 {
        let p = app.store.run_progress(run_id).await.unwrap();
        if done(&p) {
            return p;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!(
        "run {run_id} never reached the expected state: {:?}",
        app.store.run_progress(run_id).await.unwrap()
    );
}

async fn welcome_follows_confirmation_once(db: Db) {
    let Some(sink) = SmtpSink::start(&[]) else {
        return;
    };
    let Some(app) = common::spawn_app_with(db, &[("RAPPORT_SMTP_URL", &sink.url())]).await else {
        return;
    };
    app.subscribe("wel@example.com", &[("name", "Wendy Lee")])
        .await;
    let confirm = sink.wait_for(1).await[0].link("/confirm/").unwrap();
    assert_eq!(app.get(&confirm).await.status, 200);
    let mails = sink.wait_for(2).await;
    let welcome = mails
        .iter()
        .find(|m| m.subject == "Welcome, Wendy")
        .expect("welcome sent");
    let header = |k: &str| {
        welcome
            .headers
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    assert!(
        header("List-Unsubscribe").contains("/unsubscribe/")
            && header("List-Unsubscribe").contains("mailto:")
    );
    assert_eq!(
        header("List-Unsubscribe-Post"),
        "List-Unsubscribe=One-Click"
    );
    assert!(header("Message-ID").ends_with("@contoso.example>"));
    assert!(!header("Date").is_empty());
    assert!(welcome.html.contains("1 Example Way, Springfield"));
    assert!(
        welcome.text.contains("Unsubscribe"),
        "the text part says what the HTML says"
    );
    // Confirming again does not send a second welcome.
    app.get(&confirm).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(sink.messages().len(), 2);
    let p = app
        .store
        .profile_by_email(&Email::parse("wel@example.com").unwrap())
        .await
        .unwrap()
        .unwrap();
    let sent = app.store.event_summary(p.id).await.unwrap();
    assert!(
        sent.iter()
            .any(|e| e.kind == EventKind::Sent && e.campaign.as_deref() == Some("welcome"))
    );
}

async fn manual_runs_reach_each_subscriber_once_per_run(db: Db) {
    let Some(sink) = SmtpSink::start(&[]) else {
        return;
    };
    let Some(app) = common::spawn_app_with(db, &[("RAPPORT_SMTP_URL", &sink.url())]).await else {
        return;
    };
    add_subscribers(
        &app,
        "nl",
        5,
        Answers {
            engagement: Some("learner".into()),
            employees: Some(10),
            ..Answers::default()
        },
    )
    .await;
    let rows = vec![(
        Email::parse("pending@example.com").unwrap(),
        Answers::default(),
    )];
    app.store
        .insert_profiles(&rows, Status::Pending, "test")
        .await
        .unwrap();
    let rows = vec![(
        Email::parse("gone@example.com").unwrap(),
        Answers::default(),
    )];
    app.store
        .insert_profiles(&rows, Status::Unsubscribed, "test")
        .await
        .unwrap();

    let site = site();
    let campaign = site.campaign("newsletter").unwrap();
    let first = manual_run(&app.store, &site, campaign).await.unwrap();
    assert_eq!(first.recipients, 5, "subscribed profiles only");
    sink.wait_for(5).await;
    let second = manual_run(&app.store, &site, campaign).await.unwrap();
    assert_ne!(first.run_id, second.run_id, "each call is a new run");
    sink.wait_for(10).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let per = sink.per_recipient();
    assert_eq!(per.len(), 5, "{per:?}");
    assert!(per.values().all(|n| *n == 2), "once per run: {per:?}");
    let mail = &sink.messages()[0];
    assert!(
        mail.html.contains("Learn something this month"),
        "content selected per person"
    );
    let p = wait_progress(&app, second.run_id, |p| p.finished()).await;
    assert_eq!(p.sent, 5);
}

async fn scheduled_runs_are_created_once_per_period(db: Db) {
    let Some(app) = common::spawn_app_with(db, &[("RAPPORT_WORKER", "off")]).await else {
        return;
    };
    add_subscribers(&app, "sch", 3, Answers::default()).await;
    let site = site();
    let grace = Duration::from_secs(24 * 3600);
    let at = utc;
    assert!(
        tick(&app.store, &site, at("2026-12-01 08:00:00"), grace)
            .await
            .unwrap()
            .is_empty(),
        "not due yet (and now the schedule is known)"
    );
    let q = tick(&app.store, &site, at("2026-12-01 09:00:05"), grace)
        .await
        .unwrap();
    assert_eq!(q.len(), 1);
    assert_eq!((q[0].campaign.as_str(), q[0].recipients), ("newsletter", 3));
    assert!(
        tick(&app.store, &site, at("2026-12-01 09:30:00"), grace)
            .await
            .unwrap()
            .is_empty(),
        "never twice for a period"
    );
    assert!(
        tick(&app.store, &site, at("2027-01-02 10:00:00"), grace)
            .await
            .unwrap()
            .is_empty(),
        "25 h late: outside the grace window"
    );
    let q = tick(&app.store, &site, at("2027-01-01 20:00:00"), grace)
        .await
        .unwrap();
    assert_eq!(
        q.len(),
        1,
        "missed while down, started within the grace window"
    );
    // In a configured time zone, 09:00 is 09:00 there.
    let ny = rapport::schedule::tick_in(
        &app.store,
        &site,
        at("2027-02-01 09:00:05"),
        grace,
        chrono_tz::America::New_York,
    )
    .await
    .unwrap();
    assert!(ny.is_empty(), "09:00 UTC is 04:00 in New York");
    let ny = rapport::schedule::tick_in(
        &app.store,
        &site,
        at("2027-02-01 14:00:05"),
        grace,
        chrono_tz::America::New_York,
    )
    .await
    .unwrap();
    assert_eq!(ny.len(), 1);
    let runs = app.store.runs_of("newsletter").await.unwrap();
    assert_eq!(runs.last().unwrap().1, "2027-02-01T14:00:00Z");
    let runs = &runs[..2];
    let keys: Vec<&str> = runs.iter().map(|r| r.1.as_str()).collect();
    assert_eq!(keys, ["2026-12-01T09:00:00Z", "2027-01-01T09:00:00Z"]);
}

fn utc(s: &str) -> chrono::DateTime<chrono::Utc> {
    chrono::Utc
        .from_utc_datetime(&chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").unwrap())
}

/// A database that first sees the schedule at 21:00 on the 1st does not send that day's
/// 09:00 newsletter (inside the grace window, but from before rapport knew the schedule);
/// the next month's is sent, and catch-up after downtime still works for it.
async fn a_new_install_never_sends_a_missed_newsletter(db: Db) {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let vars = [("RAPPORT_WORKER", "off")];
    let Some(app) = common::spawn_app_at(db, root, &vars, utc("2026-12-01 21:00:00")).await else {
        return;
    };
    add_subscribers(&app, "new", 2, Answers::default()).await;
    let site = site();
    let grace = Duration::from_secs(24 * 3600);
    for t in ["2026-12-01 21:00:00", "2026-12-02 08:00:00"] {
        assert!(
            tick(&app.store, &site, utc(t), grace)
                .await
                .unwrap()
                .is_empty(),
            "{t}: the 1 December run predates the install"
        );
    }
    // Down from before 09:00 on 1 January until 20:00: caught up.
    let q = tick(&app.store, &site, utc("2027-01-01 20:00:00"), grace)
        .await
        .unwrap();
    assert_eq!(q.len(), 1);
    let runs = app.store.runs_of("newsletter").await.unwrap();
    let keys: Vec<&str> = runs.iter().map(|r| r.1.as_str()).collect();
    assert_eq!(keys, ["2027-01-01T09:00:00Z"]);
    // A changed schedule is a new schedule: its past occurrences are not caught up.
    let dir = common::example_copy();
    let toml = std::fs::read_to_string(dir.path().join("campaigns.toml")).unwrap();
    std::fs::write(
        dir.path().join("campaigns.toml"),
        toml.replace("0 0 9 1 * *", "0 0 9 2 * *"),
    )
    .unwrap();
    let changed = Site::load(dir.path()).unwrap();
    assert!(
        tick(&app.store, &changed, utc("2027-01-02 12:00:00"), grace)
            .await
            .unwrap()
            .is_empty()
    );
}

/// The whole server, its clock on the 1st at 10:00 (an hour after the example newsletter's
/// time, inside its grace window), on a fresh database: the scheduler queues nothing, so
/// no test's counts depend on the day the suite runs.
async fn a_server_started_on_the_first_after_nine_queues_nothing(db: Db) {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let Some(app) = common::spawn_app_at(db, root, &[], utc("2026-12-01 10:00:00")).await else {
        return;
    };
    add_subscribers(&app, "first", 2, Answers::default()).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(app.store.runs_of("newsletter").await.unwrap().is_empty());
    // The server keeps ticking: when the clock reaches the next occurrence, it is sent.
    app.clock.set(utc("2027-01-01 09:00:01"));
    for _ in 0..200 {
        if app.store.runs_of("newsletter").await.unwrap().len() == 1 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the scheduler never queued the January run");
}

async fn permanent_refusal_bounces_the_address(db: Db) {
    // Every RCPT TO refused with a 5xx.
    let Some(sink) = SmtpSink::start(&["-f", "rcpt", "-B", "550 5.1.1 No such user here"]) else {
        return;
    };
    let Some(app) = common::spawn_app_with(db, &[("RAPPORT_SMTP_URL", &sink.url())]).await else {
        return;
    };
    let ids = add_subscribers(&app, "bnc", 1, Answers::default()).await;
    let site = site();
    let run = manual_run(&app.store, &site, site.campaign("newsletter").unwrap())
        .await
        .unwrap();
    let p = wait_progress(&app, run.run_id, |p| p.failed == 1).await;
    assert_eq!(p.sent, 0);
    // The recipient's refusal, not what the server said to DATA after it (the envelope
    // and DATA are pipelined: smtp-sink offers PIPELINING).
    let raw = common::raw_pool(&app.database_url).await;
    let (error,): (String,) = sqlx::query_as("SELECT last_error FROM deliveries WHERE run_id = $1")
        .bind(run.run_id)
        .fetch_one(&raw)
        .await
        .unwrap();
    assert!(error.contains("No such user here"), "{error}");
    let profile = app.store.profile(ids[0]).await.unwrap().unwrap();
    assert_eq!(profile.status, Status::Bounced);
    let events = app.store.event_summary(ids[0]).await.unwrap();
    assert!(events.iter().any(|e| e.kind == EventKind::Bounce));
    // A bounced address gets nothing more.
    let again = manual_run(&app.store, &site, site.campaign("newsletter").unwrap())
        .await
        .unwrap();
    assert_eq!(again.recipients, 0);
}

async fn transient_failure_is_retried(db: Db) {
    // Every RCPT TO refused with a 4xx.
    let Some(soft) = SmtpSink::start(&["-r", "rcpt"]) else {
        return;
    };
    let port = soft.port;
    let Some(app) = common::spawn_app_with(db, &[("RAPPORT_SMTP_URL", &soft.url())]).await else {
        return;
    };
    add_subscribers(&app, "tmp", 1, Answers::default()).await;
    let site = site();
    let run = manual_run(&app.store, &site, site.campaign("newsletter").unwrap())
        .await
        .unwrap();
    let raw = common::raw_pool(&app.database_url).await;
    for _ in 0..200 {
        let (attempts, status): (i64, String) =
            sqlx::query_as("SELECT attempts, status FROM deliveries WHERE run_id = $1")
                .bind(run.run_id)
                .fetch_one(&raw)
                .await
                .unwrap();
        if attempts == 1 && status == "queued" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let (next, error): (i64, String) =
        sqlx::query_as("SELECT next_attempt_at, last_error FROM deliveries WHERE run_id = $1")
            .bind(run.run_id)
            .fetch_one(&raw)
            .await
            .unwrap();
    assert!(next > now() + 10, "retried later, with backoff");
    assert!(error.contains("4"), "the server's answer is kept: {error}");
    soft.stop();
    let Some(ok) = SmtpSink::start_on(port, &[]) else {
        return;
    };
    sqlx::query("UPDATE deliveries SET next_attempt_at = 0 WHERE run_id = $1")
        .bind(run.run_id)
        .execute(&raw)
        .await
        .unwrap();
    ok.wait_for(1).await;
    let p = wait_progress(&app, run.run_id, |p| p.sent == 1).await;
    assert_eq!(p.failed, 0);
}

async fn status_and_unless_are_checked_right_before_sending(db: Db) {
    let Some(app) = common::spawn_app_with(db, &[("RAPPORT_WORKER", "off")]).await else {
        return;
    };
    let outbox = tempfile::tempdir().unwrap();
    let worker = own_worker(&app, outbox.path());
    let ids = add_subscribers(&app, "chk", 3, Answers::default()).await;
    let site = site();
    let run = manual_run(&app.store, &site, site.campaign("newsletter").unwrap())
        .await
        .unwrap();
    app.store
        .unsubscribe(
            ids[1],
            &ConsentMeta {
                source: "test".into(),
                ..Default::default()
            },
            &Default::default(),
        )
        .await
        .unwrap();
    assert_eq!(worker.run_once().await.unwrap(), 3);
    let p = app.store.run_progress(run.run_id).await.unwrap();
    assert_eq!(
        (p.sent, p.skipped),
        (2, 1),
        "unsubscribed after queuing: not sent"
    );

    // Follow-up: a training click queues it 3 days out; unless = took-second-course.
    for id in [ids[0], ids[2]] {
        app.store
            .record_event(
                id,
                EventKind::Click,
                Some("welcome"),
                Some("training"),
                now(),
            )
            .await
            .unwrap();
        let n = trigger(
            &app.store,
            &site,
            id,
            Happened::Click {
                tag: Some("training"),
                campaign: Some("welcome"),
            },
        )
        .await
        .unwrap();
        assert_eq!(n, 1);
        let again = trigger(
            &app.store,
            &site,
            id,
            Happened::Click {
                tag: Some("training"),
                campaign: Some("welcome"),
            },
        )
        .await
        .unwrap();
        assert_eq!(again, 0, "a follow-up once per person");
    }
    assert_eq!(
        trigger(
            &app.store,
            &site,
            ids[0],
            Happened::Click {
                tag: Some("community"),
                campaign: None
            }
        )
        .await
        .unwrap(),
        0
    );
    assert_eq!(
        worker.run_once().await.unwrap(),
        0,
        "not due for three days"
    );
    app.store
        .record_event(
            ids[2],
            EventKind::Click,
            Some("welcome"),
            Some("course-2"),
            now(),
        )
        .await
        .unwrap();
    let raw = common::raw_pool(&app.database_url).await;
    sqlx::query("UPDATE deliveries SET next_attempt_at = 0 WHERE campaign = 'training-follow-up'")
        .execute(&raw)
        .await
        .unwrap();
    assert_eq!(worker.run_once().await.unwrap(), 2);
    let runs = app.store.runs_of("training-follow-up").await.unwrap();
    let p = app.store.run_progress(runs[0].0).await.unwrap();
    assert_eq!(
        (p.sent, p.skipped),
        (1, 1),
        "the one who took the second course is left out"
    );
    let mails = common::read_messages(outbox.path());
    assert!(
        mails.iter().any(|m| m.subject == "Your next step"),
        "{:?}",
        mails.iter().map(|m| &m.subject).collect::<Vec<_>>()
    );
}

/// The click writer starts follow-ups for a whole batch at once: more people than one
/// statement holds, each of them clicking twice, one of them already queued, and clicks
/// that start nothing.
async fn a_batch_of_clicks_starts_each_follow_up_once_per_person(db: Db) {
    let Some(app) = common::spawn_app_with(db, &[("RAPPORT_WORKER", "off")]).await else {
        return;
    };
    let ids = add_subscribers(&app, "batch", 450, Answers::default()).await;
    let site = site();
    let training = Happened::Click {
        tag: Some("training"),
        campaign: Some("newsletter"),
    };
    assert_eq!(
        trigger(&app.store, &site, ids[0], training).await.unwrap(),
        1
    );
    let mut clicks = Vec::new();
    for id in &ids {
        clicks.push((*id, training));
        clicks.push((*id, training));
        clicks.push((
            *id,
            Happened::Click {
                tag: Some("community"),
                campaign: Some("newsletter"),
            },
        ));
    }
    let queued = trigger_many(&app.store, &site, &clicks).await.unwrap();
    assert_eq!(
        queued, 449,
        "everyone once, the one already queued not again"
    );
    assert_eq!(trigger_many(&app.store, &site, &clicks).await.unwrap(), 0);
    let runs = app.store.runs_of("training-follow-up").await.unwrap();
    assert_eq!(runs.len(), 1, "one standing run");
    assert_eq!(runs[0].2, 450, "the run counts each recipient once");
    let p = app.store.run_progress(runs[0].0).await.unwrap();
    assert_eq!(p.queued, 450);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_are_dkim_signed_when_a_key_is_configured() {
    use base64::Engine;
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("dkim.key");
    let seed: [u8; 32] = rand::random();
    std::fs::write(&key, base64::engine::general_purpose::STANDARD.encode(seed)).unwrap();
    let key = key.display().to_string();
    let app = common::spawn_app_with(
        Db::Sqlite,
        &[
            ("RAPPORT_DKIM_KEY_FILE", &key),
            ("RAPPORT_DKIM_SELECTOR", "mail"),
        ],
    )
    .await
    .unwrap();
    app.subscribe("dk@example.com", &[]).await;
    let mail = &app.wait_for_messages(1).await[0];
    let sig = mail
        .headers
        .iter()
        .find(|(k, _)| k == "DKIM-Signature")
        .map(|(_, v)| v.clone())
        .expect("signed");
    for part in [
        "d=contoso.example",
        "s=mail",
        "a=ed25519-sha256",
        "list-unsubscribe",
    ] {
        assert!(
            sig.to_lowercase().contains(&part.to_lowercase()),
            "{part} in {sig}"
        );
    }
}

/// A web-only instance (worker off) queues the confirmation and sends nothing itself; a
/// worker sends it ahead of a newsletter run queued earlier; a second request queues it
/// again; it is no campaign message (no `sent` event, no response-rate row).
async fn confirmations_leave_through_the_queue_ahead_of_a_newsletter(db: Db) {
    let Some(app) = common::spawn_app_with(db, &[("RAPPORT_WORKER", "off")]).await else {
        return;
    };
    add_subscribers(&app, "bulk", 60, Answers::default()).await;
    let site = site();
    let run = manual_run(&app.store, &site, site.campaign("newsletter").unwrap())
        .await
        .unwrap();
    // Two requests before any worker ran: one email, with the latest request's link.
    app.subscribe("quinn@example.com", &[]).await;
    let page = app
        .subscribe("quinn@example.com", &[("name", "Quinn")])
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        app.outbox_messages().is_empty(),
        "the web side sends nothing"
    );

    let outbox = tempfile::tempdir().unwrap();
    let worker = own_worker(&app, outbox.path());
    assert_eq!(worker.run_once().await.unwrap(), 50);
    let mails = common::read_messages(outbox.path());
    let to_quinn: Vec<_> = mails.iter().filter(|m| m.to.contains("quinn@")).collect();
    assert_eq!(
        to_quinn.len(),
        1,
        "the confirmation went in the first batch"
    );
    let progress = app.store.run_progress(run.run_id).await.unwrap();
    assert_eq!(
        (progress.sent, progress.queued),
        (49, 11),
        "the newsletter waits"
    );
    let confirm = to_quinn[0].link("/confirm/").expect("a confirmation link");
    assert_eq!(app.get(&confirm).await.status, 200);
    let quinn = app
        .store
        .profile_by_email(&Email::parse("quinn@example.com").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(quinn.status, Status::Subscribed);
    assert_eq!(
        quinn.answers.name.as_deref(),
        Some("Quinn"),
        "the link was the second request's"
    );

    // Sending the form again queues the same delivery again: the note for a subscriber.
    app.subscribe("quinn@example.com", &[]).await;
    while worker.run_once().await.unwrap() > 0 {}
    let mails = common::read_messages(outbox.path());
    let subjects: Vec<&str> = mails
        .iter()
        .filter(|m| m.to.contains("quinn@"))
        .map(|m| m.subject.as_str())
        .collect();
    assert_eq!(subjects.len(), 3, "{subjects:?}");
    assert!(
        subjects
            .iter()
            .any(|s| s.starts_with("You are already subscribed"))
    );
    assert!(subjects.contains(&"Welcome, Quinn"), "{subjects:?}");

    let events = app.store.event_summary(quinn.id).await.unwrap();
    let sent: Vec<_> = events
        .iter()
        .filter(|e| e.kind == EventKind::Sent)
        .map(|e| e.campaign.clone().unwrap_or_default())
        .collect();
    assert_eq!(
        sent,
        ["welcome"],
        "a confirmation is not a campaign message"
    );
    let (code, csv, err) = app.cli(&["export", "response-rates"]);
    assert_eq!(code, 0, "{err}");
    assert!(!csv.contains("@confirmation"), "{csv}");
    assert!(csv.contains("newsletter"), "{csv}");
}

/// A second request arriving while the worker sends the first one's confirmation (claimed,
/// not yet recorded): once the send is recorded, the delivery is queued again.
async fn a_request_during_the_send_of_its_confirmation_gets_its_own_email(db: Db) {
    let Some(app) = common::spawn_app_with(db, &[("RAPPORT_WORKER", "off")]).await else {
        return;
    };
    app.subscribe("mid@example.com", &[]).await;
    let claimed = app.store.claim_deliveries(10, 60).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].campaign, "@confirmation");
    app.subscribe("mid@example.com", &[("name", "Mia")]).await;
    app.store
        .deliveries_sent(&[rapport::store::Sent {
            delivery: claimed[0].clone(),
            message_id: "first@example.com".into(),
            items: Vec::new(),
        }])
        .await
        .unwrap();
    let raw = common::raw_pool(&app.database_url).await;
    let (status, attempts): (String, i64) =
        sqlx::query_as("SELECT status, attempts FROM deliveries WHERE id = $1")
            .bind(claimed[0].id)
            .fetch_one(&raw)
            .await
            .unwrap();
    assert_eq!((status.as_str(), attempts), ("queued", 0));
    let outbox = tempfile::tempdir().unwrap();
    assert_eq!(own_worker(&app, outbox.path()).run_once().await.unwrap(), 1);
    let mail = &common::read_messages(outbox.path())[0];
    let confirm = mail.link("/confirm/").expect("a confirmation");
    assert_eq!(app.get(&confirm).await.status, 200);
    let p = app
        .store
        .profile_by_email(&Email::parse("mid@example.com").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        p.answers.name.as_deref(),
        Some("Mia"),
        "the second request's link"
    );
}
