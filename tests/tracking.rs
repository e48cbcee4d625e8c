//! The links in every campaign email: unsubscribe (page and RFC 8058 one-click) and
//! "was this useful?". On SQLite and PostgreSQL.

mod common;

use common::{Mail, TestApp};
use rapport::delivery::Transport;
use rapport::delivery::worker::{Worker, WorkerConfig};
use rapport::profile::{Answers, Email, Status};
use rapport::schedule::manual_run;
use rapport::site::{Site, SiteHandle};
use rapport::track::Purpose;

on_both_databases!(
    unsubscribe_page_and_one_click,
    feedback_votes_and_comments,
    clicks_and_opens
);

/// Three subscribers, a newsletter run sent to an outbox; returns the messages.
async fn newsletter_to_three(app: &TestApp, outbox: &std::path::Path) -> Vec<Mail> {
    // u0 and u1 are small learners (the training section); u1 also clicked community and
    // expert links before, so it gets all three sections; u2 answered nothing.
    let learner = Answers {
        engagement: Some("learner".into()),
        employees: Some(10),
        ..Answers::default()
    };
    let rows: Vec<(Email, Answers)> = (0..3)
        .map(|i| {
            (
                Email::parse(&format!("u{i}@example.com")).unwrap(),
                if i < 2 {
                    learner.clone()
                } else {
                    Answers::default()
                },
            )
        })
        .collect();
    app.store
        .insert_profiles(&rows, Status::Subscribed, "test")
        .await
        .unwrap();
    let u1 = app
        .store
        .profile_by_email(&rows[1].0)
        .await
        .unwrap()
        .unwrap()
        .id;
    for tag in ["community", "experts"] {
        app.store
            .record_event(
                u1,
                rapport::store::EventKind::Click,
                Some("welcome"),
                Some(tag),
                rapport::store::now(),
            )
            .await
            .unwrap();
    }
    // The example newsletter is short enough to go without the open pixel; this one asks
    // for it (`track_opens = true`).
    let project = common::example_copy();
    let toml = project.path().join("campaigns.toml");
    let text = std::fs::read_to_string(&toml).unwrap().replacen(
        "id = \"newsletter\"",
        "id = \"newsletter\"\ntrack_opens = true",
        1,
    );
    std::fs::write(&toml, text).unwrap();
    let site = Site::load(project.path()).unwrap();
    manual_run(&app.store, &site, site.campaign("newsletter").unwrap())
        .await
        .unwrap();
    let worker = Worker::new(
        app.store.clone(),
        SiteHandle::new(site),
        rapport::mail::Mailer::new(app.signer.clone(), app.address.clone()),
        Transport::outbox(outbox).unwrap(),
        WorkerConfig {
            batch: 50,
            concurrency: 2,
            rate: None,
            max_attempts: 3,
            lease: 60,
            confirm_ttl: 86_400,
            domain_rates: None,
        },
    );
    assert_eq!(worker.run_once().await.unwrap(), 3);
    common::read_messages(outbox)
}

fn to<'a>(mails: &'a [Mail], who: &str) -> &'a Mail {
    mails.iter().find(|m| m.to.contains(who)).unwrap()
}

async fn status_of(app: &TestApp, email: &str) -> Status {
    app.store
        .profile_by_email(&Email::parse(email).unwrap())
        .await
        .unwrap()
        .unwrap()
        .status
}

async fn unsubscribe_page_and_one_click(db: common::Db) {
    let Some(app) = common::spawn_app_with(db, &[("RAPPORT_WORKER", "off")]).await else {
        return;
    };
    let outbox = tempfile::tempdir().unwrap();
    let mails = newsletter_to_three(&app, outbox.path()).await;

    // The page: one button; following the link alone changes nothing (link scanners).
    let link = to(&mails, "u0@").link("/unsubscribe/").unwrap();
    let page = app.get(&link).await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("u0@example.com") && page.body.contains("<button"));
    assert_eq!(status_of(&app, "u0@example.com").await, Status::Subscribed);
    let page = app.post_form(&link, &[]).await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("You are unsubscribed"));
    assert_eq!(
        status_of(&app, "u0@example.com").await,
        Status::Unsubscribed
    );
    let again = app.post_form(&link, &[]).await;
    assert_eq!(again.status, 200, "idempotent");
    let p = app
        .store
        .profile_by_email(&Email::parse("u0@example.com").unwrap())
        .await
        .unwrap()
        .unwrap();
    let opt_outs: Vec<_> = app
        .store
        .consents(p.id)
        .await
        .unwrap()
        .into_iter()
        .filter(|c| c.0 == "opt_out")
        .collect();
    assert_eq!(opt_outs.len(), 1);
    assert_eq!(opt_outs[0].1, "unsubscribe-page");

    // RFC 8058: the List-Unsubscribe URL, POSTed by a mail client.
    let header = to(&mails, "u1@")
        .headers
        .iter()
        .find(|(k, _)| k == "List-Unsubscribe")
        .unwrap()
        .1
        .clone();
    let url = header
        .split('<')
        .nth(1)
        .unwrap()
        .split('>')
        .next()
        .unwrap()
        .to_string();
    let r = app
        .post_form(&url, &[("List-Unsubscribe", "One-Click")])
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        status_of(&app, "u1@example.com").await,
        Status::Unsubscribed
    );
    let p = app
        .store
        .profile_by_email(&Email::parse("u1@example.com").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert!(
        app.store
            .consents(p.id)
            .await
            .unwrap()
            .iter()
            .any(|c| c.1 == "list-unsubscribe-one-click")
    );

    // Tampered or foreign tokens: 404, nothing changes.
    let token = link.rsplit('/').next().unwrap();
    let mut bad = token.to_string().into_bytes();
    bad[5] = if bad[5] == b'A' { b'B' } else { b'A' };
    let bad = String::from_utf8(bad).unwrap();
    let p2 = app
        .store
        .profile_by_email(&Email::parse("u2@example.com").unwrap())
        .await
        .unwrap()
        .unwrap();
    let profile_token = app.signer.sign(Purpose::Profile, p2.id, None, "");
    for path in [
        format!("/unsubscribe/{bad}"),
        format!("/unsubscribe/{profile_token}"),
    ] {
        assert_eq!(app.post_form(&path, &[]).await.status, 404, "{path}");
        assert_eq!(app.get(&path).await.status, 404, "{path}");
    }
    assert_eq!(status_of(&app, "u2@example.com").await, Status::Subscribed);

    // No further email: the next run leaves them out.
    let site = Site::load(std::path::Path::new(env!("CARGO_MANIFEST_DIR"))).unwrap();
    let next = manual_run(&app.store, &site, site.campaign("newsletter").unwrap())
        .await
        .unwrap();
    assert_eq!(next.recipients, 1);
}

async fn feedback_votes_and_comments(db: common::Db) {
    let Some(app) = common::spawn_app_with(db, &[("RAPPORT_WORKER", "off")]).await else {
        return;
    };
    let outbox = tempfile::tempdir().unwrap();
    let mails = newsletter_to_three(&app, outbox.path()).await;
    let yes = to(&mails, "u0@").link("?v=yes").unwrap();
    let page = app.get(&yes).await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("glad it helped") && page.body.contains("name=\"comment\""));
    let maybe = yes.replace("v=yes", "v=maybe");
    assert_eq!(app.get(&maybe).await.status, 400);
    let action = yes.split('?').next().unwrap().to_string();
    let r = app
        .post_form(&action, &[("comment", "More on hiring, please")])
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(app.post_form(&action, &[("comment", "")]).await.status, 422);
    let r = app
        .post_form(
            &action,
            &[("comment", "Less\u{0}\u{1b}[31m jargon\r\nplease")],
        )
        .await;
    assert_eq!(r.status, 200);
    let p = app
        .store
        .profile_by_email(&Email::parse("u0@example.com").unwrap())
        .await
        .unwrap()
        .unwrap();
    let given = app.store.feedback_of(p.id).await.unwrap();
    assert_eq!(
        given,
        vec![
            (Some("newsletter".into()), Some("yes".into())),
            (
                Some("newsletter".into()),
                Some("comment: More on hiring, please".into())
            ),
            (
                Some("newsletter".into()),
                Some("comment: Less[31m jargon\nplease".into()),
                // control characters (NUL, ESC) dropped; the line break kept
            ),
        ]
    );
    let tampered = yes.replace("/feedback/A", "/feedback/B");
    assert_eq!(app.get(&tampered).await.status, 404);
}

const BROWSER: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";

async fn hits(app: &TestApp) -> Vec<(String, Option<String>, i64)> {
    let raw = common::raw_pool(&app.database_url).await;
    sqlx::query_as("SELECT kind, tag, automated FROM events WHERE kind IN ('click', 'open') AND delivery_id IS NOT NULL ORDER BY id")
        .fetch_all(&raw)
        .await
        .unwrap()
}

/// Waits until the recorded hits satisfy `done` (they are written in batches, off the
/// request path).
async fn hits_when(
    app: &TestApp,
    done: impl Fn(&[(String, Option<String>, i64)]) -> bool,
) -> Vec<(String, Option<String>, i64)> {
    for _ in 0..400 {
        let h = hits(app).await;
        if done(&h) {
            return h;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!(
        "hits never reached the expected state: {:?}",
        hits(app).await
    );
}

async fn clicks_and_opens(db: common::Db) {
    let Some(app) = common::spawn_app_with(db, &[("RAPPORT_WORKER", "off")]).await else {
        return;
    };
    let outbox = tempfile::tempdir().unwrap();
    let mails = newsletter_to_three(&app, outbox.path()).await;
    // As if sent an hour ago: hits right after sending count as automated.
    let raw = common::raw_pool(&app.database_url).await;
    sqlx::query("UPDATE deliveries SET sent_at = sent_at - 3600")
        .execute(&raw)
        .await
        .unwrap();

    let mail = to(&mails, "u0@");
    assert!(
        !mail.html.contains("href=\"https://learn.contoso.example"),
        "links are tracked"
    );
    assert!(
        mail.text.contains("/c/"),
        "in the text part too: {}",
        mail.text
    );
    let link = mail.link("/c/").unwrap();
    let click = |url: String, ua: &'static str| {
        let client = app.client.clone();
        async move {
            client
                .get(url)
                .header("user-agent", ua)
                .send()
                .await
                .unwrap()
        }
    };
    let r = click(link.clone(), BROWSER).await;
    assert_eq!(r.status().as_u16(), 302);
    let target = r.headers()["location"].to_str().unwrap().to_string();
    assert!(target.starts_with("https://"), "{target}");
    // A URL in the request is never followed.
    let r = click(format!("{link}?url=https://evil.example/"), BROWSER).await;
    assert_eq!(r.headers()["location"].to_str().unwrap(), target);
    // Scanners and HEAD requests are recorded but flagged.
    click(link.clone(), "Mozilla/5.0 (compatible; Barracuda Sentinel)").await;
    let head = app
        .client
        .head(&link)
        .header("user-agent", BROWSER)
        .send()
        .await
        .unwrap();
    assert_eq!(head.status().as_u16(), 302);
    let h = hits_when(&app, |h| h.len() >= 4).await;
    assert_eq!(
        h.iter().map(|x| x.2).collect::<Vec<_>>(),
        [0, 0, 1, 1],
        "{h:?}"
    );
    assert_eq!(
        (h[0].0.as_str(), h[0].1.as_deref()),
        ("click", Some("training"))
    );
    // The person's training click started the training follow-up, once. The writer stores
    // a batch's hits before it starts their follow-ups (the run, then its delivery), so
    // those may come a moment after the hits.
    common::wait_for_count(
        &raw,
        "SELECT COUNT(*) FROM deliveries WHERE campaign = 'training-follow-up'",
        1,
    )
    .await;
    let runs = app.store.runs_of("training-follow-up").await.unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(app.store.run_progress(runs[0].0).await.unwrap().queued, 1);

    // Opens: a GIF nobody caches.
    let pixel = mail
        .html
        .split("/o/")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();
    let r = app
        .client
        .get(app.url(&format!("/o/{pixel}")))
        .header("user-agent", BROWSER)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.headers()["content-type"], "image/gif");
    assert!(
        r.headers()["cache-control"]
            .to_str()
            .unwrap()
            .contains("no-store")
    );
    assert_eq!(r.bytes().await.unwrap().len(), 43);
    assert_eq!(
        hits_when(&app, |h| h.len() >= 5).await.last().unwrap().0,
        "open"
    );

    // Tampered and wrong-purpose tokens: 404, nothing recorded.
    let before = hits(&app).await.len();
    let token = link.rsplit('/').next().unwrap();
    let mut bad = token.to_string().into_bytes();
    bad[4] = if bad[4] == b'A' { b'B' } else { b'A' };
    let bad = String::from_utf8(bad).unwrap();
    for path in [
        format!("/c/{bad}"),
        format!("/o/{token}"),
        format!("/c/{pixel}"),
        format!("/c/{}", "A".repeat(3000)),
    ] {
        assert_eq!(app.get(&path).await.status, 404, "{path}");
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(hits(&app).await.len(), before);

    // A burst of every link of a message at once is a scanner's.
    let other = to(&mails, "u1@");
    let links: Vec<String> = other
        .html
        .match_indices("/c/")
        .map(|(i, _)| {
            let start = other.html[..i].rfind("href=\"").unwrap() + 6;
            let end = start + other.html[start..].find('"').unwrap();
            other.html[start..end].to_string()
        })
        .collect();
    assert!(links.len() >= 3, "{links:?}");
    let before = hits(&app).await.len();
    for l in &links[..3] {
        assert_eq!(click(l.clone(), BROWSER).await.status().as_u16(), 302);
    }
    let h = hits_when(&app, |h| {
        h.len() >= before + 3 && h[before..].iter().all(|x| x.2 == 1)
    })
    .await;
    assert!(
        h[before..].iter().all(|x| x.2 == 1),
        "every link of a message at once: automated {h:?}"
    );
}
