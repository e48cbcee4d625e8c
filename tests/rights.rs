//! Data rights: export of everything held about a person (CLI and profile centre), and
//! erasure that keeps counts and stops imports from bringing the address back. On SQLite
//! and PostgreSQL.

mod common;

use common::TestApp;
use rapport::profile::Email;

on_both_backends!(export_and_erase);

async fn export_and_erase(app: TestApp) {
    let centre = app
        .subscribed(
            "dana@example.com",
            &[("name", "Dana Doe"), ("employees", "7")],
        )
        .await;
    let (code, json, err) = app.cli(&["profile", "export", "dana@example.com"]);
    assert_eq!(code, 0, "{err}");
    let data: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(data["profile"]["name"], "Dana Doe");
    assert_eq!(data["consents"].as_array().unwrap().len(), 2);
    assert_eq!(data["consents"][0]["action"], "opt_in_requested");

    // The same from the profile centre.
    let page = app.get(&centre).await;
    assert!(page.body.contains("Download my data"));
    let r = app
        .client
        .get(app.url(&format!("{centre}/data")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(
        r.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .contains("attachment")
    );
    let web: serde_json::Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
    assert_eq!(web["profile"]["email"], "dana@example.com");

    let (code, _, err) = app.cli(&["profile", "erase", "Dana@Example.com"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        app.store
            .profile_by_email(&Email::parse("dana@example.com").unwrap())
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        app.store.profile_count().await.unwrap(),
        1,
        "the anonymous profile stays for the counts"
    );
    // Erasure revokes every link the person was sent.
    let token = centre.rsplit('/').next().unwrap();
    let id: i64 = app
        .signer
        .verify(rapport::track::Purpose::Profile, token, 0)
        .unwrap()
        .id;
    let unsubscribe = app
        .signer
        .sign(rapport::track::Purpose::Unsubscribe, id, None, "");
    let feedback = app
        .signer
        .sign(rapport::track::Purpose::Feedback, id, None, "");
    for path in [
        centre.clone(),
        format!("{centre}/data"),
        format!("/unsubscribe/{unsubscribe}"),
        format!("/feedback/{feedback}?v=yes"),
    ] {
        assert_eq!(app.get(&path).await.status, 404, "{path} after erasure");
    }
    let posted = app.post_form(&centre, &[("name", "Mallory")]).await;
    assert_eq!(posted.status, 404, "the profile centre takes no answers");
    let posted = app
        .post_form(&format!("/unsubscribe/{unsubscribe}"), &[])
        .await;
    assert_eq!(posted.status, 404);
    let raw = common::raw_pool(&app.database_url).await;
    let name: Option<String> = sqlx::query_scalar("SELECT name FROM profiles WHERE id = $1")
        .bind(id)
        .fetch_one(&raw)
        .await
        .unwrap();
    assert_eq!(name, None, "nothing was written into the erased row");
    let (code, _, err) = app.cli(&["profile", "export", "dana@example.com"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("no profile with the address dana@example.com"),
        "{err}"
    );
    let (code, _, err) = app.cli(&["profile", "erase", "nobody@example.com"]);
    assert_eq!(code, 1);
    assert!(err.contains("no profile"), "{err}");

    // An import does not bring the erased address back.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("old-list.csv");
    std::fs::write(
        &file,
        "email,name\ndana@example.com,Dana Doe\nnew@example.com,New Person\n",
    )
    .unwrap();
    let (code, out, _) = app.cli(&["import", file.to_str().unwrap(), "--source", "old-crm"]);
    assert_eq!(code, 1);
    assert!(
        out.contains(":2: dana@example.com was erased on request"),
        "{out}"
    );
    assert!(
        app.store
            .profile_by_email(&Email::parse("dana@example.com").unwrap())
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        app.store
            .profile_by_email(&Email::parse("new@example.com").unwrap())
            .await
            .unwrap()
            .is_some()
    );
}
