//! `/admin` and `/metrics`: the token (bearer or basic), the dashboard, the CSV endpoints
//! and their errors, a generated token. On SQLite and PostgreSQL.

mod common;

use base64::Engine;
use common::{ADMIN_TOKEN, TestApp};

on_both_backends!(
    admin_needs_the_token_and_serves_reports,
    dashboard_shows_comments_escaped_and_a_chart_per_campaign
);

async fn get(
    app: &TestApp,
    path: &str,
    auth: Option<String>,
) -> (u16, String, reqwest::header::HeaderMap) {
    let mut req = app.client.get(app.url(path));
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, r.text().await.unwrap(), headers)
}

async fn admin_needs_the_token_and_serves_reports(app: TestApp) {
    app.subscribed("adm@example.com", &[]).await;
    let bearer = Some(format!("Bearer {ADMIN_TOKEN}"));
    for path in [
        "/admin",
        "/admin/reports/response-rates.csv",
        "/admin/reports/optin.csv",
    ] {
        let (status, _, headers) = get(&app, path, None).await;
        assert_eq!(status, 401, "{path}");
        assert!(
            headers["www-authenticate"]
                .to_str()
                .unwrap()
                .starts_with("Basic")
        );
        assert_eq!(
            get(&app, path, Some("Bearer wrong".into())).await.0,
            401,
            "{path}"
        );
    }
    let (status, body, _) = get(&app, "/admin", bearer.clone()).await;
    assert_eq!(status, 200);
    for part in [
        "Response rates per run",
        "Opt-in funnel",
        "Segments",
        "small-learners",
        "Last runs",
        "<svg",
    ] {
        assert!(body.contains(part), "dashboard shows {part}");
    }
    assert!(
        !body.contains("src=\"http"),
        "nothing loaded from another host"
    );
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("analyst:{ADMIN_TOKEN}"));
    assert_eq!(
        get(&app, "/admin", Some(format!("Basic {basic}"))).await.0,
        200,
        "basic auth with the token as password"
    );

    let (status, csv, headers) = get(
        &app,
        "/admin/reports/response-rates.csv?by=run",
        bearer.clone(),
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    assert!(csv.starts_with("campaign,run,segment,recipients,delivered,bounced,unique_opens,open_rate,unique_clicks,click_rate,click_to_open_rate,unsubscribes,unsubscribe_rate,feedback_yes,feedback_no\n"));
    let (status, body, _) = get(
        &app,
        "/admin/reports/response-rates.csv?by=colour",
        bearer.clone(),
    )
    .await;
    assert_eq!(status, 400);
    assert!(body.contains("campaign, run or segment"));
    let (status, body, _) = get(
        &app,
        "/admin/reports/response-rates.csv?from=2026-11-02&to=2026-11-01",
        bearer.clone(),
    )
    .await;
    assert_eq!(status, 400);
    assert!(body.contains("after"));
    let (status, csv, _) = get(&app, "/admin/reports/optin.csv", bearer.clone()).await;
    assert_eq!(status, 200);
    assert!(csv.starts_with("day,form_views,submissions,confirmations,confirmation_rate"));
    assert_eq!(csv.lines().count(), 2, "{csv}");

    let (status, metrics, _) = get(&app, "/metrics", None).await;
    assert_eq!(status, 200);
    assert!(metrics.contains("rapport_subscribes_total 1"), "{metrics}");
    assert!(metrics.contains("rapport_confirmations_total 1"));
    assert!(metrics.contains("rapport_queue_depth"));
    assert!(metrics.contains("rapport_profiles{status=\"subscribed\"} 1"));

    // The welcome is the one send (the confirmation email is not a campaign delivery).
    let mut metrics = String::new();
    for _ in 0..100 {
        metrics = get(&app, "/metrics", None).await.1;
        if metrics.contains("rapport_sends_total 1") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(metrics.contains("rapport_sends_total 1"), "{metrics}");
    assert!(
        metrics.contains("rapport_send_failures_total 0"),
        "{metrics}"
    );
    assert!(metrics.contains("rapport_queue_depth 0"), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_is_generated_once_when_none_is_configured() {
    let app = common::spawn_app_with(common::Db::Sqlite, &[("RAPPORT_ADMIN_TOKEN", "")])
        .await
        .unwrap();
    let hash = app
        .store
        .admin_token_hash()
        .await
        .unwrap()
        .expect("generated and kept (as a hash)");
    assert_eq!(hash.len(), 64);
    assert_eq!(
        get(&app, "/admin", Some(format!("Bearer {ADMIN_TOKEN}")))
            .await
            .0,
        401
    );
}

/// On demo data plus a comment with markup: the comment is shown escaped with its
/// campaign, date and the person's segments; each campaign gets a chart of its last runs.
async fn dashboard_shows_comments_escaped_and_a_chart_per_campaign(app: TestApp) {
    let (code, _, err) = app.cli(&["demo", "--profiles", "120"]);
    assert_eq!(code, 0, "{err}");
    let raw = common::raw_pool(&app.database_url).await;
    // The newest comment, on the latest demo run, by a demo person who is a small learner.
    let (profile, run, delivery): (i64, i64, i64) = sqlx::query_as(
        "SELECT d.profile_id, d.run_id, d.id FROM deliveries d JOIN profiles p ON p.id = d.profile_id \
         WHERE p.engagement = 'learner' AND p.employees < 50 ORDER BY d.run_id DESC, d.id LIMIT 1",
    )
    .fetch_one(&raw)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO events (profile_id, kind, campaign, run_id, delivery_id, value, created_at) \
         VALUES ($1, 'feedback', 'newsletter', $2, $3, $4, $5)",
    )
    .bind(profile)
    .bind(run)
    .bind(delivery)
    .bind("comment: <script>alert(1)</script> & more on <b>payroll</b>")
    .bind(rapport::store::now() + 60)
    .execute(&raw)
    .await
    .unwrap();
    let (status, body, _) = get(&app, "/admin", Some(format!("Bearer {ADMIN_TOKEN}"))).await;
    assert_eq!(status, 200);
    assert!(
        !body.contains("<script>alert(1)"),
        "never raw markup from a reader"
    );
    let shown = "&lt;script&gt;alert(1)&lt;/script&gt; &amp; more on &lt;b&gt;payroll&lt;/b&gt;";
    let at = body.find(shown).expect("the comment, escaped");
    let meta = &body[at..at + body[at..].find("</li>").unwrap()];
    assert!(meta.contains("newsletter · "), "{meta}");
    assert!(
        meta.contains("small-learners"),
        "the person's segments: {meta}"
    );
    assert!(
        body.contains("newsletter: open, click and useful rates of the last 6 runs"),
        "a chart of the demo's six runs"
    );
    assert_eq!(
        body.matches("<polyline").count(),
        3,
        "opens, clicks, useful"
    );
    assert!(
        body.matches("<li><blockquote>").count() > 1,
        "the demo's comments too"
    );
}
