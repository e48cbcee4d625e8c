//! `rapport demo`: demo profiles and history that the dashboard and exports show, clearly
//! marked, and never mixed into a store with real profiles unless forced. On SQLite and
//! PostgreSQL.

mod common;

use common::TestApp;

on_both_backends!(
    demo_fills_reports_and_refuses_real_stores,
    demo_profiles_are_never_mailed
);

async fn demo_fills_reports_and_refuses_real_stores(app: TestApp) {
    let (code, out, err) = app.cli(&["demo", "--profiles", "120"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("120 profiles") && out.contains("6 runs"),
        "{out}"
    );
    assert_eq!(app.store.real_profile_count().await.unwrap(), 0);
    assert_eq!(app.store.profile_count().await.unwrap(), 120);

    let (_, csv, _) = app.cli(&["export", "response-rates", "--by", "run"]);
    let rows: Vec<Vec<&str>> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect())
        .collect();
    assert_eq!(rows.len(), 6, "{csv}");
    for r in &rows {
        assert_eq!(r[0], "newsletter");
        let open_rate: f64 = r[7].parse().unwrap();
        let click_rate: f64 = r[9].parse().unwrap();
        assert!(open_rate > 0.2 && open_rate < 0.8, "{csv}");
        assert!(click_rate > 0.0 && click_rate < open_rate, "{csv}");
    }
    let (_, funnel, _) = app.cli(&["export", "optin"]);
    assert!(
        funnel.lines().count() >= 30,
        "a month of sign-ups: {funnel}"
    );

    let page = app
        .client
        .get(app.url("/admin"))
        .header("authorization", format!("Bearer {}", common::ADMIN_TOKEN))
        .send()
        .await
        .unwrap();
    let body = page.text().await.unwrap();
    assert!(body.contains("newsletter") && !body.contains("Nothing sent yet"));

    // A store with a real profile is refused, unless forced.
    app.subscribe("real@example.com", &[]).await;
    let (code, _, err) = app.cli(&["demo", "--profiles", "10"]);
    assert_eq!(code, 1);
    assert!(err.contains("1 profile(s) that are not demo data"), "{err}");
    assert_eq!(app.store.profile_count().await.unwrap(), 121);
}

/// `serve` on demo data with a newsletter run queued: its worker sends nothing to a demo
/// profile; each delivery is closed as skipped, saying why.
async fn demo_profiles_are_never_mailed(app: TestApp) {
    let (code, _, err) = app.cli(&["demo", "--profiles", "40"]);
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = app.cli(&["run", "newsletter"]);
    assert_eq!(code, 0, "{err}");
    // "queued run N of newsletter: M recipient(s)" (the demo's unsubscribed are not).
    let queued: i64 = out
        .rsplit(": ")
        .next()
        .and_then(|t| t.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{out}"));
    assert!(queued > 30, "{out}");
    let raw = common::raw_pool(&app.database_url).await;
    let mut skipped = 0;
    for _ in 0..200 {
        skipped = sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM deliveries WHERE status = 'skipped' AND last_error LIKE '%demo data is never mailed%'",
        )
        .fetch_one(&raw)
        .await
        .unwrap();
        if skipped == queued {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(skipped, queued);
    assert!(app.outbox_messages().is_empty(), "nothing was sent");
}

/// A project whose form leaves out a question and gives it no choices: the demo answers
/// only what the form asks (it drew from every question's choices and panicked on an
/// empty list).
#[tokio::test]
async fn a_question_the_form_does_not_ask_gets_no_demo_answers() {
    let dir = common::example_copy();
    let path = dir.path().join("campaigns.toml");
    let toml = std::fs::read_to_string(&path).unwrap();
    let unasked = toml
        .replacen(
            "[\"industry\", \"business_need\", \"products\"]",
            "[\"business_need\", \"products\"]",
            1,
        )
        .lines()
        .map(|l| {
            if l.starts_with("industry = [") {
                "industry = []"
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert_ne!(unasked, toml);
    std::fs::write(&path, unasked).unwrap();
    // The library's item for two industries would name unknown ones now.
    std::fs::remove_file(dir.path().join("content/retail-season.md")).unwrap();
    let db = format!("sqlite://{}", dir.path().join("demo.db").display());
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rapport"))
        .arg("--dir")
        .arg(dir.path())
        .args(["--database-url", &db, "demo", "--profiles", "30"])
        .env("RAPPORT_SECRET", common::SECRET)
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0), "{said}");
    assert!(said.contains("demo data: 30 profiles"), "{said}");
    let raw = common::raw_pool(&db).await;
    let answered: (i64, i64) = sqlx::query_as(
        "SELECT COUNT(industry), COUNT(business_need) FROM profiles WHERE email LIKE '%demo.example'",
    )
    .fetch_one(&raw)
    .await
    .unwrap();
    assert_eq!(answered.0, 0, "industry is not asked");
    assert!(answered.1 > 0, "business_need is");
}
