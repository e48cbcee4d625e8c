//! Events from the company's other systems: `POST /api/v1/events` over real HTTP, a
//! reported event putting a person into a segment (`did`) and starting a follow-up
//! (`after = { event = ... }`), and every kind of bad batch, on both databases.

mod common;

use common::{Db, TestApp, example_copy, spawn_app_in};
use serde_json::{Value, json};

/// The example project plus a follow-up started by `course_completed` and a segment of
/// people who completed two courses within 30 days.
fn project() -> tempfile::TempDir {
    let dir = example_copy();
    let toml = dir.path().join("campaigns.toml");
    let mut s = std::fs::read_to_string(&toml).unwrap();
    s.push_str(
        "\n[[campaign]]\nid = \"after-course\"\nkind = \"follow_up\"\n\
         after = { event = \"course_completed\", delay = \"0s\" }\n\
         subject = \"Well done{{#if first_name}}, {{first_name}}{{/if}}\"\n\
         template = \"training-follow-up\"\n",
    );
    std::fs::write(&toml, s).unwrap();
    std::fs::write(
        dir.path().join("segments/graduates.toml"),
        "[rule]\nall = [{ did = \"course_completed\", within_days = 30, times_at_least = 2 }]\n",
    )
    .unwrap();
    dir
}

fn token(app: &TestApp, name: &str, scopes: &str) -> String {
    let (code, out, err) = app.cli(&["token", "create", name, "--scopes", scopes]);
    assert_eq!(code, 0, "{err}");
    out.trim().to_string()
}

/// `POST /api/v1/events` with a raw body: (status, JSON body).
async fn post(
    app: &TestApp,
    token: Option<&str>,
    content_type: &str,
    body: String,
) -> (u16, Value) {
    let mut r = app
        .client
        .post(app.url("/api/v1/events"))
        .header("content-type", content_type)
        .body(body);
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    let r = r.send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn events(app: &TestApp, token: &str, events: Value) -> (u16, Value) {
    post(
        app,
        Some(token),
        "application/json",
        json!({ "events": events }).to_string(),
    )
    .await
}

async fn segments(app: &TestApp, token: &str, email: &str) -> Vec<String> {
    let r = app
        .client
        .get(app.url(&format!("/api/v1/profiles/{email}")))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
    serde_json::from_value(body["segments"].clone()).unwrap()
}

async fn an_event_segments_a_person_and_starts_a_follow_up(db: Db) {
    let dir = project();
    let Some(app) = spawn_app_in(db, dir.path(), &[]).await else {
        return common::skip_postgres("an_event_segments_a_person_and_starts_a_follow_up");
    };
    app.subscribed("ann@example.com", &[("name", "Ann Lee")])
        .await;
    let training = token(&app, "training-site", "events:write");
    let reader = token(&app, "reader", "profiles:read");
    assert!(
        !segments(&app, &reader, "ann@example.com")
            .await
            .contains(&"graduates".into())
    );

    let before = app.outbox_messages().len();
    let (s, body) = events(
        &app,
        &training,
        json!([
            {"email": "Ann@Example.com", "name": "course_completed",
             "properties": {"course": "bookkeeping-101"}},
            {"email": "stranger@example.com", "name": "course_completed"},
        ]),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body, json!({"recorded": 1, "unknown_people": 1}));
    let mail = app
        .wait_for_new_mail(before, |m| m.subject.starts_with("Well done"))
        .await;
    assert!(mail.to.contains("ann@example.com"), "{}", mail.to);
    assert_eq!(mail.subject, "Well done, Ann");
    // One course is not two.
    assert!(
        !segments(&app, &reader, "ann@example.com")
            .await
            .contains(&"graduates".into())
    );

    // A second course, dated an hour ago: a graduate now, and no second follow-up.
    let an_hour_ago = (chrono::Utc::now() - chrono::Duration::hours(1)).to_rfc3339();
    let (s, body) = events(
        &app,
        &training,
        json!([{"email": "ann@example.com", "name": "course_completed", "at": an_hour_ago}]),
    )
    .await;
    assert_eq!((s, &body["recorded"]), (200, &json!(1)), "{body}");
    let now_in = segments(&app, &reader, "ann@example.com").await;
    assert!(now_in.contains(&"graduates".into()), "{now_in:?}");
    assert!(now_in.contains(&"took-second-course".into()), "{now_in:?}");
    let stored: Vec<(String, Option<String>)> =
        sqlx::query_as("SELECT tag, value FROM events WHERE kind = 'external' ORDER BY id")
            .fetch_all(&common::raw_pool(&app.database_url).await)
            .await
            .unwrap();
    assert_eq!(stored.len(), 2);
    assert_eq!(
        stored[0].1.as_deref(),
        Some(r#"{"course":"bookkeeping-101"}"#)
    );
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let follow_ups = app
        .outbox_messages()
        .iter()
        .filter(|m| m.subject.starts_with("Well done"))
        .count();
    assert_eq!(follow_ups, 1, "a follow-up once per person");
}

async fn bad_batches_are_refused_whole(db: Db) {
    let dir = project();
    let Some(app) = spawn_app_in(db, dir.path(), &[]).await else {
        return common::skip_postgres("bad_batches_are_refused_whole");
    };
    app.subscribed("bob@example.com", &[]).await;
    let shop = token(&app, "shop", "events:write");
    let reader = token(&app, "reader", "profiles:read");
    let one = json!([{"email": "bob@example.com", "name": "trial_started"}]);

    // Tokens: none, unknown, without the scope.
    let body = json!({ "events": one }).to_string();
    assert_eq!(
        post(&app, None, "application/json", body.clone()).await.0,
        401
    );
    assert_eq!(
        post(&app, Some("rpt_x"), "application/json", body.clone())
            .await
            .0,
        401
    );
    let (s, b) = post(&app, Some(&reader), "application/json", body.clone()).await;
    assert_eq!(s, 403, "{b}");
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("events:write")
    );

    // Undeclared name, unknown field, bad time: 422 per event, nothing stored.
    let (s, b) = events(
        &app,
        &shop,
        json!([
            {"email": "bob@example.com", "name": "trial_started"},
            {"email": "bob@example.com", "name": "webinar_attended"},
            {"email": "bob@example.com", "name": "trial_started", "colour": "red"},
            {"email": "bob@example.com", "name": "trial_started", "at": "last week"},
        ]),
    )
    .await;
    assert_eq!(s, 422, "{b}");
    let fields = b["error"]["fields"].as_object().unwrap();
    let keys: Vec<&str> = fields.keys().map(String::as_str).collect();
    assert_eq!(keys, ["events[1].name", "events[2].colour", "events[3].at"]);
    assert!(
        fields["events[1].name"]
            .as_str()
            .unwrap()
            .contains("not a declared event")
    );

    // 1,001 events.
    let many: Vec<Value> = (0..1_001)
        .map(|_| json!({"email": "bob@example.com", "name": "trial_started"}))
        .collect();
    let (s, b) = events(&app, &shop, Value::Array(many)).await;
    assert_eq!(s, 422, "{b}");
    assert!(
        b["error"]["fields"]["events"]
            .as_str()
            .unwrap()
            .contains("at most 1000")
    );

    // Malformed JSON names line and column; other content types are 415.
    let (s, b) = post(
        &app,
        Some(&shop),
        "application/json",
        "{\"events\": [\n  {\"email\": }]}".into(),
    )
    .await;
    assert_eq!(s, 400, "{b}");
    let message = b["error"]["message"].as_str().unwrap();
    assert!(message.contains("(line 2, column"), "{b}");
    assert!(!message.contains(" at line "), "the place said once: {b}");
    let (s, _) = post(&app, Some(&shop), "text/plain", body.clone()).await;
    assert_eq!(s, 415);

    let stored: (i64,) = sqlx::query_as("SELECT COUNT(*) FROM events WHERE kind = 'external'")
        .fetch_one(&common::raw_pool(&app.database_url).await)
        .await
        .unwrap();
    assert_eq!(stored.0, 0, "nothing of a refused batch is stored");

    // The good one goes in.
    let (s, b) = events(&app, &shop, one).await;
    assert_eq!((s, &b["recorded"]), (200, &json!(1)), "{b}");
}

on_both_databases!(
    an_event_segments_a_person_and_starts_a_follow_up,
    bad_batches_are_refused_whole
);
