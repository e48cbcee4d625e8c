//! Webhooks over real HTTP: a receiver (a small axum server) answers 500 first, then 2xx;
//! it sees each event twice with the same id and a valid signature. Failed deliveries are
//! listed and sent again from the command line; `/admin` names the failing endpoint.

mod common;

use common::hooks::{Receiver, signature_valid};
use common::{Db, TestApp, example_copy, spawn_app_in};
use serde_json::json;

const SECRET_VAR: &str = "RAPPORT_TEST_HOOK_SECRET";
const SECRET: &str = "whsec-test-3f9a";

/// The example project with a `[[webhook]]` for every event type to `url`, and one for
/// clicks only to `other`.
fn project(url: &str, other: &str) -> tempfile::TempDir {
    let dir = example_copy();
    let toml = dir.path().join("campaigns.toml");
    let mut s = std::fs::read_to_string(&toml).unwrap();
    s.push_str(&format!(
        "\n[[webhook]]\nurl = \"{url}\"\nevents = [\"subscribed\", \"unsubscribed\", \"profile_updated\", \"clicked\", \"bounced\", \"complained\", \"feedback\"]\nsecret_env = \"{SECRET_VAR}\"\n\
         \n[[webhook]]\nurl = \"{other}\"\nevents = [\"unsubscribed\"]\nsecret_env = \"{SECRET_VAR}\"\n"
    ));
    std::fs::write(&toml, s).unwrap();
    dir
}

async fn spawn(db: Db, dir: &std::path::Path) -> Option<TestApp> {
    // Each test is a process of its own (nextest): setting the variable here is seen by
    // the server this test starts and by nobody else.
    unsafe { std::env::set_var(SECRET_VAR, SECRET) };
    spawn_app_in(db, dir, &[("RAPPORT_WEBHOOK_BACKOFF", "1s")]).await
}

fn token(app: &TestApp, scopes: &str) -> String {
    let (code, out, err) = app.cli(&["token", "create", "crm", "--scopes", scopes]);
    assert_eq!(code, 0, "{err}");
    out.trim().to_string()
}

async fn events_reach_the_receiver_signed_and_retried(db: Db) {
    let receiver = Receiver::start(0, true).await;
    let down = format!("http://127.0.0.1:{}/hooks", common::free_port());
    let dir = project(&receiver.url, &down);
    let Some(app) = spawn(db, dir.path()).await else {
        return common::skip_postgres("events_reach_the_receiver_signed_and_retried");
    };
    app.subscribed("ann@example.com", &[("name", "Ann Lee")])
        .await;

    // subscribed: refused once (500), sent again with the same id, signed both times.
    let seen = receiver
        .wait_for(20, |s| s.iter().filter(|s| s.status == 204).count() >= 1)
        .await;
    assert_eq!(seen.len(), 2, "{seen:#?}");
    assert_eq!((seen[0].status, seen[1].status), (500, 204));
    assert_eq!(seen[0].event_id, seen[1].event_id);
    assert_eq!(seen[0].body, seen[1].body);
    for s in &seen {
        assert!(signature_valid(SECRET, &s.signature, &s.body), "{s:?}");
        assert!(!signature_valid("another secret", &s.signature, &s.body));
    }
    let body = seen[0].json();
    assert_eq!(body["id"], seen[0].event_id.as_str());
    assert_eq!(body["type"], "subscribed");
    assert_eq!(body["data"]["email"], "ann@example.com");
    assert_eq!(body["data"]["answers"]["name"], "Ann Lee");
    assert!(
        chrono::DateTime::parse_from_rfc3339(body["at"].as_str().unwrap()).is_ok(),
        "{body}"
    );

    // clicked: a person's click on the welcome's link, not a link scanner's.
    let welcome = app
        .wait_for_mail(|m| {
            m.to.contains("ann@example.com")
                && m.link("/c/").is_some()
                && m.link("/confirm/").is_none()
        })
        .await;
    let link = welcome.link("/c/").unwrap();
    // As if sent an hour ago: hits right after sending count as automated.
    sqlx::query("UPDATE deliveries SET sent_at = sent_at - 3600")
        .execute(&common::raw_pool(&app.database_url).await)
        .await
        .unwrap();
    let scanner = app
        .client
        .get(&link)
        .header("user-agent", "Mozilla/5.0 (compatible; Barracuda Sentinel)")
        .send()
        .await
        .unwrap();
    assert_eq!(scanner.status(), 302);
    assert_eq!(app.client.get(&link).send().await.unwrap().status(), 302);
    let clicked = |s: &[common::hooks::Seen]| {
        s.iter()
            .filter(|s| s.status == 204 && s.json()["type"] == "clicked")
            .map(|s| s.json())
            .collect::<Vec<_>>()
    };
    let seen = receiver.wait_for(20, |s| !clicked(s).is_empty()).await;
    let click = &clicked(&seen)[0];
    assert_eq!(click["data"]["email"], "ann@example.com");
    assert_eq!(click["data"]["campaign"], "welcome");
    assert!(
        click["data"]["url"].as_str().unwrap().starts_with("http"),
        "{click}"
    );

    // profile_updated and unsubscribed through the API.
    let crm = token(&app, "profiles:write");
    let r = app
        .client
        .patch(app.url("/api/v1/profiles/ann@example.com"))
        .bearer_auth(&crm)
        .header("content-type", "application/json")
        .body(json!({"answers": {"employees": 12}}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = app
        .client
        .post(app.url("/api/v1/profiles/ann@example.com/unsubscribe"))
        .bearer_auth(&crm)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let seen = receiver
        .wait_for(20, |s| {
            s.iter()
                .filter(|s| s.status == 204)
                .map(|s| s.json()["type"].as_str().unwrap().to_string())
                .filter(|t| t == "profile_updated" || t == "unsubscribed")
                .count()
                == 2
        })
        .await;
    let updated = seen
        .iter()
        .find(|s| s.json()["type"] == "profile_updated")
        .unwrap()
        .json();
    assert_eq!(updated["data"]["changed"], json!(["employees"]));
    assert_eq!(updated["data"]["answers"]["employees"], 12);
    let ids: std::collections::BTreeSet<String> = seen.iter().map(|s| s.event_id.clone()).collect();
    assert_eq!(ids.len(), 4, "four events, each sent twice");
    assert_eq!(
        seen.iter()
            .filter(|s| s.json()["type"] == "clicked")
            .count(),
        2,
        "one click (the scanner's is not told), refused once"
    );

    // The endpoint that is down: retried, then (its window made to end) kept as failed.
    let pool = common::raw_pool(&app.database_url).await;
    sqlx::query("UPDATE webhook_deliveries SET give_up_at = 0 WHERE endpoint = $1")
        .bind(&down)
        .execute(&pool)
        .await
        .unwrap();
    let mut failed = String::new();
    for _ in 0..200 {
        let (code, out, err) = app.cli(&["webhooks", "failed"]);
        assert_eq!(code, 0, "{err}");
        if out.lines().count() == 2 {
            failed = out;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let line = failed.lines().nth(1).expect("one failed delivery");
    assert!(
        line.contains(&down) && line.contains("unsubscribed"),
        "{line}"
    );
    assert!(line.contains("cannot reach the endpoint"), "{line}");
    let admin = app.admin("/admin").await;
    assert!(
        admin.contains("Webhooks") && admin.contains(&down),
        "{admin}"
    );
    assert!(admin.contains("failing"));
    let metrics = app.get("/metrics").await.body;
    assert!(
        metrics.contains("rapport_webhook_deliveries{status=\"failed\"} 1"),
        "{metrics}"
    );

    // Retried by hand: the endpoint is up now (a receiver on that port), and it gets it.
    let id = line.split('\t').next().unwrap();
    let port: u16 = down
        .rsplit(':')
        .next()
        .unwrap()
        .trim_end_matches("/hooks")
        .parse()
        .unwrap();
    let back = Receiver::start(port, false).await;
    let (code, _, err) = app.cli(&["webhooks", "retry", id]);
    assert_eq!(code, 0, "{err}");
    let got = back.wait_for(20, |s| !s.is_empty()).await;
    assert_eq!(got[0].json()["type"], "unsubscribed");
    assert_eq!(got[0].json()["data"]["email"], "ann@example.com");
    let (code, out, _) = app.cli(&["webhooks", "failed"]);
    assert_eq!((code, out.lines().count()), (0, 1), "{out}");
    let (code, _, err) = app.cli(&["webhooks", "retry", id]);
    assert_eq!(code, 1);
    assert!(err.contains("no failed webhook delivery"), "{err}");
}

async fn erasure_takes_the_queued_webhooks_with_it(db: Db) {
    let down = format!("http://127.0.0.1:{}/hooks", common::free_port());
    let dir = project(&down, &down);
    let Some(app) = spawn(db, dir.path()).await else {
        return common::skip_postgres("erasure_takes_the_queued_webhooks_with_it");
    };
    app.subscribed("eve@example.com", &[]).await;
    let pool = common::raw_pool(&app.database_url).await;
    let count = || async {
        let n: (i64,) = sqlx::query_as("SELECT COUNT(*) FROM webhook_deliveries")
            .fetch_one(&pool)
            .await
            .unwrap();
        n.0
    };
    assert_eq!(
        count().await,
        1,
        "subscribed, queued for the endpoint that is down"
    );
    let (code, _, err) = app.cli(&["profile", "erase", "eve@example.com"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(count().await, 0);
}

/// Feedback, complaints and bounces (as recorded by the feedback page and the bounce
/// intake) are queued with what they record; a link scanner's vote is not.
async fn feedback_complaints_and_bounces_are_queued(db: Db) {
    use rapport::store::{EventOrigin, Returned};
    let down = format!("http://127.0.0.1:{}/hooks", common::free_port());
    let other = format!("http://127.0.0.1:{}/hooks", common::free_port());
    let dir = project(&down, &other);
    let Some(app) = spawn(db, dir.path()).await else {
        return common::skip_postgres("feedback_complaints_and_bounces_are_queued");
    };
    app.subscribed("kim@example.com", &[]).await;
    let site = rapport::site::Site::load(dir.path()).unwrap();
    app.store
        .set_hook_routes(rapport::webhook::routes(&site.project));
    let p = app
        .store
        .profile_by_email(&rapport::profile::Email::parse("kim@example.com").unwrap())
        .await
        .unwrap()
        .unwrap();
    let origin = EventOrigin {
        campaign: Some("welcome".into()),
        ..EventOrigin::default()
    };
    app.store
        .record_feedback(p.id, &origin, "yes", None, false)
        .await
        .unwrap();
    app.store
        .record_feedback(p.id, &origin, "no", Some("Barracuda"), true)
        .await
        .unwrap();
    let pool = common::raw_pool(&app.database_url).await;
    let delivery: i64 =
        sqlx::query_scalar("SELECT id FROM deliveries WHERE profile_id = $1 ORDER BY id LIMIT 1")
            .bind(p.id)
            .fetch_one(&pool)
            .await
            .unwrap();
    let now = rapport::store::now();
    app.store
        .record_returned(
            delivery,
            &Returned::Complaint {
                feedback_type: "abuse",
            },
            3,
            now,
        )
        .await
        .unwrap();
    app.store
        .record_returned(
            delivery,
            &Returned::Bounce {
                hard: true,
                status: "5.1.1",
                diagnostic: "550 no such user",
            },
            3,
            now,
        )
        .await
        .unwrap();
    let rows: Vec<(String, String, String)> =
        sqlx::query_as("SELECT endpoint, kind, data FROM webhook_deliveries ORDER BY id")
            .fetch_all(&pool)
            .await
            .unwrap();
    let kinds: Vec<&str> = rows.iter().map(|r| r.1.as_str()).collect();
    assert_eq!(
        kinds,
        ["subscribed", "feedback", "complained", "bounced"],
        "{rows:?}"
    );
    assert!(rows.iter().all(|r| r.0 == down), "{rows:?}");
    assert!(rows[1].2.contains("\"vote\":\"yes\""), "{rows:?}");
    assert!(rows[2].2.contains("abuse"), "{rows:?}");
    assert!(rows[3].2.contains("5.1.1"), "{rows:?}");
}

/// An endpoint that takes longer than 10 s to answer has not taken the event: the request
/// is abandoned at 10 s and the event sent again (the receiver sees it twice).
async fn a_silent_endpoint_times_out_and_is_tried_again(db: Db) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let calls = std::sync::Arc::new(AtomicUsize::new(0));
    let ids = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let (c, seen) = (calls.clone(), ids.clone());
    let app = axum::Router::new().route(
        "/hooks",
        axum::routing::post(move |headers: axum::http::HeaderMap| {
            let (c, seen) = (c.clone(), seen.clone());
            async move {
                let id = headers["rapport-event-id"].to_str().unwrap().to_string();
                seen.lock().unwrap().push(id);
                if c.fetch_add(1, Ordering::SeqCst) == 0 {
                    tokio::time::sleep(std::time::Duration::from_secs(12)).await;
                }
                axum::http::StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hooks", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let dir = project(&url, &url);
    let Some(app) = spawn(db, dir.path()).await else {
        return common::skip_postgres("a_silent_endpoint_times_out_and_is_tried_again");
    };
    let started = std::time::Instant::now();
    app.subscribed("tim@example.com", &[]).await;
    for _ in 0..600 {
        if calls.load(Ordering::SeqCst) >= 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let ids = ids.lock().unwrap().clone();
    assert_eq!(ids.len(), 2, "tried again after the time-out: {ids:?}");
    assert_eq!(ids[0], ids[1]);
    assert!(
        started.elapsed() >= std::time::Duration::from_secs(10),
        "not before the 10 s time-out"
    );
}

on_both_databases!(
    a_silent_endpoint_times_out_and_is_tried_again,
    events_reach_the_receiver_signed_and_retried,
    erasure_takes_the_queued_webhooks_with_it,
    feedback_complaints_and_bounces_are_queued
);
