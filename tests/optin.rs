//! The SMB owner's path over HTTP: opt-in form, confirmation, progressive profiling, the
//! profile centre, and every kind of bad input. Each test runs on SQLite and PostgreSQL.

mod common;

use common::{Page, TestApp, profile_path};
use rapport::profile::{Email, Status};
use rapport::store::ConsentMeta;
use rapport::track::Purpose;

on_both_backends!(
    form_shows_first_step_with_consent,
    opt_in_confirm_and_answer_steps,
    confirmation_is_idempotent,
    link_scanners_do_not_confirm,
    resubmitting_never_duplicates_or_erases,
    unsubscribed_need_a_fresh_confirmation,
    each_bad_field_is_shown_back_and_nothing_stored,
    oversized_and_non_form_bodies_are_refused,
    bad_tokens_get_404_and_change_nothing,
    honeypot_stores_nothing,
    profile_centre_validates_and_keeps_answers,
    profile_centre_can_clear_answers,
    health_and_unknown_paths,
    a_claimed_confirmation_outlives_its_process,
    a_known_address_asking_again_gets_one_email,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_without_a_worker_confirmations_wait_in_the_queue() {
    without_a_worker_confirmations_wait_in_the_queue(common::Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_without_a_worker_confirmations_wait_in_the_queue() {
    without_a_worker_confirmations_wait_in_the_queue(common::Db::Postgres).await;
}

async fn profile_of(app: &TestApp, email: &str) -> Option<rapport::profile::Profile> {
    app.store
        .profile_by_email(&Email::parse(email).unwrap())
        .await
        .unwrap()
}

fn field_error(page: &Page, key: &str) -> bool {
    page.body.contains(&format!("id=\"{key}-error\""))
}

async fn form_shows_first_step_with_consent(app: TestApp) {
    let page = app.get("/").await;
    assert_eq!(page.status, 200);
    for field in [
        "name=\"email\"",
        "name=\"name\"",
        "name=\"employees\"",
        "name=\"consent\"",
        "name=\"website\"",
    ] {
        assert!(page.body.contains(field), "missing {field}");
    }
    assert!(
        page.body.contains("<label for=\"email\">"),
        "fields are labelled"
    );
    assert!(
        page.body.contains("name=\"viewport\""),
        "readable on a phone"
    );
    assert!(!page.body.contains("<script"), "works without JavaScript");
    assert!(
        !page.body.contains("name=\"industry\""),
        "later steps are not asked up front"
    );
}

async fn opt_in_confirm_and_answer_steps(app: TestApp) {
    let page = app
        .subscribe(
            "Ann.Lee@Example.COM",
            &[("name", "Ann Lee"), ("employees", "12")],
        )
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("Check your inbox"));

    let p = profile_of(&app, "ann.lee@example.com")
        .await
        .expect("stored");
    assert_eq!(p.status, Status::Pending);
    assert_eq!(p.email.as_str(), "Ann.Lee@example.com");
    assert_eq!(p.answers.name.as_deref(), Some("Ann Lee"));
    assert_eq!(p.answers.employees, Some(12));

    let mails = app.wait_for_messages(1).await;
    let mail = &mails[0];
    assert!(mail.to.contains("ann.lee@example.com"), "{}", mail.to);
    assert!(mail.raw.contains("multipart/alternative"));
    assert!(mail.raw.contains("Message-ID: <"));
    assert!(
        mail.raw
            .contains("From: \"Contoso for Small Business\" <hello@contoso.example>"),
        "{}",
        mail.raw
    );
    assert!(
        mail.text.contains("/confirm/"),
        "text part carries the link: {}",
        mail.text
    );
    assert!(
        mail.html.contains("1 Example Way, Springfield"),
        "postal address in the footer"
    );
    let confirm = mail.link("/confirm/").expect("confirm link");
    assert!(
        confirm.starts_with(&app.address),
        "links use the public URL: {confirm}"
    );

    let page = app.get(&confirm).await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("One more step"), "{}", page.body);
    assert!(
        page.body.contains("name=\"role\"") && page.body.contains("name=\"engagement\""),
        "step 2 asked next"
    );
    assert_eq!(
        profile_of(&app, "ann.lee@example.com")
            .await
            .unwrap()
            .status,
        Status::Subscribed
    );

    let consents = app.store.consents(p.id).await.unwrap();
    let actions: Vec<&str> = consents.iter().map(|c| c.0.as_str()).collect();
    assert_eq!(actions, ["opt_in_requested", "opt_in_confirmed"]);
    assert_eq!(consents[0].1, "form");
    assert!(
        consents[0].2.as_deref().is_some_and(|v| !v.is_empty()),
        "form version recorded"
    );

    // Step 2, then step 3; the next unanswered step follows each time.
    let centre = profile_path(&page.body).unwrap();
    let page = app
        .post_form(
            &centre,
            &[("step", "2"), ("role", "owner"), ("engagement", "learner")],
        )
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.body.contains("name=\"industry\""),
        "step 3 next: {}",
        page.body
    );
    let page = app
        .post_form(
            &centre,
            &[
                ("step", "3"),
                ("industry", "retail"),
                ("business_need", "grow_sales"),
                ("products", "office"),
                ("products", "cloud"),
            ],
        )
        .await;
    assert!(page.body.contains("name=\"challenge\""), "step 4 next");
    let page = app
        .post_form(
            &centre,
            &[
                ("step", "4"),
                ("challenge", "Finding time\r\nto train"),
                ("pcs", "8"),
                ("servers", "0"),
            ],
        )
        .await;
    assert_eq!(page.status, 200);
    // The example declares [topics]: the last step asks what to hear about and how often.
    assert!(
        page.body.contains("name=\"topics\"") && page.body.contains("name=\"frequency\""),
        "step 5 next: {}",
        page.body
    );
    let page = app
        .post_form(
            &centre,
            &[
                ("step", "5"),
                ("topics", "training"),
                ("frequency", "monthly"),
            ],
        )
        .await;
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains("Thank you") && page.body.contains("Finding time"),
        "{}",
        page.body
    );

    let p = profile_of(&app, "ann.lee@example.com").await.unwrap();
    assert_eq!(p.answers.role.as_deref(), Some("owner"));
    assert_eq!(
        p.answers.products,
        Some(vec!["office".to_string(), "cloud".to_string()])
    );
    assert_eq!(
        p.answers.challenge.as_deref(),
        Some("Finding time\nto train")
    );
    assert_eq!(p.answers.servers, Some(0));

    // Earlier answers can be changed; the page is filled with what is stored.
    let page = app.get(&format!("{centre}?step=1")).await;
    assert!(page.body.contains("value=\"Ann Lee\""), "{}", page.body);
    app.post_form(&centre, &[("step", "1"), ("employees", "14")])
        .await;
    let p = profile_of(&app, "ann.lee@example.com").await.unwrap();
    assert_eq!(p.answers.employees, Some(14));
    assert_eq!(p.answers.name.as_deref(), Some("Ann Lee"));
}

async fn confirmation_is_idempotent(app: TestApp) {
    app.subscribe("bo@example.com", &[]).await;
    let link = app.wait_for_messages(1).await[0].link("/confirm/").unwrap();
    assert_eq!(app.get(&link).await.status, 200);
    assert_eq!(app.get(&link).await.status, 200);
    let p = profile_of(&app, "bo@example.com").await.unwrap();
    assert_eq!(p.status, Status::Subscribed);
    assert_eq!(
        app.store.consents(p.id).await.unwrap().len(),
        2,
        "one confirmation recorded"
    );
    // Skipping a step moves on rather than asking the same step again.
    let page = app.get(&link).await;
    let centre = profile_path(&page.body).unwrap();
    let page = app.post_form(&centre, &[("step", "1")]).await;
    assert!(
        page.body.contains("name=\"role\""),
        "after skipping step 1, step 2: {}",
        page.body
    );
}

/// A `HEAD`, or a `GET` from a scanner, on the confirmation link changes nothing and gets
/// a page with one button; the button confirms, and the consent record says it was the
/// button. A person's browser confirms by the link, recorded as such.
async fn link_scanners_do_not_confirm(app: TestApp) {
    app.subscribe("scan@example.com", &[]).await;
    let link = app.wait_for_messages(1).await[0].link("/confirm/").unwrap();
    let r = app.client.head(app.url(&link)).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    for ua in ["Mozilla/5.0 (compatible; Barracuda Sentinel)", ""] {
        let r = app
            .client
            .get(app.url(&link))
            .header("user-agent", ua)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        let body = r.text().await.unwrap();
        assert!(
            body.contains("Yes, subscribe me") && body.contains("method=\"post\""),
            "{body}"
        );
    }
    let p = profile_of(&app, "scan@example.com").await.unwrap();
    assert_eq!(p.status, Status::Pending, "nothing changed");
    assert_eq!(app.store.consents(p.id).await.unwrap().len(), 1);
    let page = app.post_form(&link, &[]).await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("One more step"), "{}", page.body);
    let p = profile_of(&app, "scan@example.com").await.unwrap();
    assert_eq!(p.status, Status::Subscribed);
    let consents = app.store.consents(p.id).await.unwrap();
    assert_eq!(
        (consents[1].0.as_str(), consents[1].1.as_str()),
        ("opt_in_confirmed", "confirmation-button")
    );

    app.subscribe("person@example.com", &[]).await;
    let link = app
        .wait_for_mail(|m| m.to.contains("person@"))
        .await
        .link("/confirm/")
        .unwrap();
    assert!(app.get(&link).await.body.contains("One more step"));
    let p = profile_of(&app, "person@example.com").await.unwrap();
    let consents = app.store.consents(p.id).await.unwrap();
    assert_eq!(consents[1].1, "confirmation-link");
    // A bad token on the button is a 404 like on the link.
    assert_eq!(app.post_form("/confirm/nonsense", &[]).await.status, 404);
}

async fn resubmitting_never_duplicates_or_erases(app: TestApp) {
    app.subscribe(
        "cy@example.com",
        &[("name", "Cy Twombly"), ("employees", "40")],
    )
    .await;
    // (A request made while the previous one's email is still queued shares that email.)
    app.wait_for_messages(1).await;
    let page = app
        .subscribe(
            "CY@EXAMPLE.com",
            &[("name", "Somebody Else"), ("industry", "retail")],
        )
        .await;
    assert_eq!(page.status, 200);
    assert_eq!(app.store.profile_count().await.unwrap(), 1);
    let p = profile_of(&app, "cy@example.com").await.unwrap();
    assert_eq!(
        p.answers.name.as_deref(),
        Some("Cy Twombly"),
        "an earlier answer is never overwritten from the public form"
    );
    assert_eq!(p.answers.employees, Some(40));
    assert_eq!(
        p.answers.industry, None,
        "answers for a known address wait for the confirmation link"
    );
    // Both confirmation emails work: the second did not invalidate the first. The first
    // does not apply the second request's answers; the second's link does (gaps only).
    let mails = app.wait_for_messages(2).await;
    let first = mails[0].link("/confirm/").unwrap();
    assert_eq!(app.get(&first).await.status, 200);
    assert_eq!(
        profile_of(&app, "cy@example.com")
            .await
            .unwrap()
            .answers
            .industry,
        None
    );
    let second = mails[1].link("/confirm/").unwrap();
    assert_eq!(app.get(&second).await.status, 200);
    let p = profile_of(&app, "cy@example.com").await.unwrap();
    assert_eq!(
        p.answers.industry.as_deref(),
        Some("retail"),
        "a gap filled"
    );
    assert_eq!(
        p.answers.name.as_deref(),
        Some("Cy Twombly"),
        "never overwritten"
    );
    // A subscriber who sends the form again is not asked to confirm again.
    app.subscribe("cy@example.com", &[]).await;
    let reminder = app
        .wait_for_mail(|m| m.subject.contains("already subscribed"))
        .await;
    assert!(reminder.link("/profile/").is_some());
    assert!(reminder.link("/confirm/").is_none(), "nothing to confirm");
    // A stranger who knows the address sends answers: nothing changes, and the person
    // can add them from the email if it was them.
    app.subscribe(
        "cy@example.com",
        &[("name", "Mallory"), ("engagement", "connector")],
    )
    .await;
    let p = profile_of(&app, "cy@example.com").await.unwrap();
    assert_eq!(
        p.answers.engagement, None,
        "the public form stored no answer"
    );
    let mail = app
        .wait_for_mail(|m| {
            m.subject.contains("already subscribed") && m.link("/confirm/").is_some()
        })
        .await;
    assert!(
        mail.html.contains("add them to your profile"),
        "{}",
        mail.html
    );
    assert_eq!(app.get(&mail.link("/confirm/").unwrap()).await.status, 200);
    let p = profile_of(&app, "cy@example.com").await.unwrap();
    assert_eq!(p.answers.engagement.as_deref(), Some("connector"));
    assert_eq!(p.answers.name.as_deref(), Some("Cy Twombly"));
    assert_eq!(
        profile_of(&app, "cy@example.com").await.unwrap().status,
        Status::Subscribed
    );
}

async fn unsubscribed_need_a_fresh_confirmation(app: TestApp) {
    app.subscribed("di@example.com", &[]).await;
    let old_link = app.outbox_messages()[0].link("/confirm/").unwrap();
    let p = profile_of(&app, "di@example.com").await.unwrap();
    let meta = ConsentMeta {
        source: "test".into(),
        ..Default::default()
    };
    assert!(
        app.store
            .unsubscribe(p.id, &meta, &Default::default())
            .await
            .unwrap()
    );
    assert!(
        !app.store
            .unsubscribe(p.id, &meta, &Default::default())
            .await
            .unwrap(),
        "idempotent"
    );

    app.subscribe("di@example.com", &[]).await;
    assert_eq!(
        profile_of(&app, "di@example.com").await.unwrap().status,
        Status::Unsubscribed,
        "not re-subscribed by the form alone"
    );
    assert_eq!(
        app.get(&old_link).await.status,
        404,
        "an old confirmation link does not re-subscribe"
    );
    assert_eq!(
        profile_of(&app, "di@example.com").await.unwrap().status,
        Status::Unsubscribed
    );

    let fresh = app
        .wait_for_mail(|m| m.link("/confirm/").is_some_and(|l| l != old_link))
        .await
        .link("/confirm/")
        .unwrap();
    assert_eq!(app.get(&fresh).await.status, 200);
    assert_eq!(
        profile_of(&app, "di@example.com").await.unwrap().status,
        Status::Subscribed
    );
}

async fn each_bad_field_is_shown_back_and_nothing_stored(app: TestApp) {
    let long_challenge = "x".repeat(501);
    let long_name = "n".repeat(101);
    // (posted pairs, field whose message must show, text the page must show)
    type Case<'a> = (Vec<(&'a str, &'a str)>, &'a str, &'a str);
    let cases: Vec<Case> = vec![
        (
            vec![("email", "not-an-address"), ("consent", "yes")],
            "email",
            "not-an-address",
        ),
        (
            vec![("email", ""), ("consent", "yes")],
            "email",
            "Please enter your email",
        ),
        (
            vec![("email", "ok@example.com")],
            "consent",
            "ok@example.com",
        ),
        (
            vec![
                ("email", "ok@example.com"),
                ("consent", "yes"),
                ("name", "Ann\u{7}Lee"),
            ],
            "name",
            "ok@example.com",
        ),
        (
            vec![
                ("email", "ok@example.com"),
                ("consent", "yes"),
                ("name", "Ann\r\nBcc: evil@example.com"),
            ],
            "name",
            "line breaks",
        ),
        (
            vec![
                ("email", "ok@example.com"),
                ("consent", "yes"),
                ("name", &long_name),
            ],
            "name",
            "100 characters",
        ),
        (
            vec![
                ("email", "ok@example.com"),
                ("consent", "yes"),
                ("employees", "a dozen"),
            ],
            "employees",
            "a dozen",
        ),
        (
            vec![
                ("email", "ok@example.com"),
                ("consent", "yes"),
                ("employees", "0"),
            ],
            "employees",
            "from 1 to 100000",
        ),
        (
            vec![
                ("email", "ok@example.com"),
                ("consent", "yes"),
                ("employees", "100001"),
            ],
            "employees",
            "from 1 to 100000",
        ),
        (
            vec![
                ("email", "ok@example.com"),
                ("consent", "yes"),
                ("industry", "retial"),
            ],
            "industry",
            "retial",
        ),
        (
            vec![
                ("email", "ok@example.com"),
                ("consent", "yes"),
                ("challenge", &long_challenge),
            ],
            "challenge",
            "500 characters",
        ),
        (
            vec![
                ("email", "ok@example.com"),
                ("consent", "yes"),
                ("colour", "blue"),
            ],
            "_form",
            "colour",
        ),
    ];
    for (pairs, field, shown) in cases {
        let page = app.post_form("/subscribe", &pairs).await;
        assert_eq!(page.status, 422, "{pairs:?}: {}", page.body);
        if field != "_form" {
            assert!(
                field_error(&page, field),
                "{pairs:?}: no message next to {field}"
            );
        }
        assert!(
            page.body.contains(shown),
            "{pairs:?}: page does not show {shown:?}"
        );
        assert!(
            page.body.contains("role=\"alert\""),
            "error summary announced"
        );
    }
    assert_eq!(
        app.store.profile_count().await.unwrap(),
        0,
        "nothing stored on error"
    );
    assert!(app.outbox_messages().is_empty(), "no email on error");
}

async fn oversized_and_non_form_bodies_are_refused(app: TestApp) {
    let big = "x".repeat(17 * 1024);
    let page = app
        .post_form(
            "/subscribe",
            &[
                ("email", "big@example.com"),
                ("consent", "yes"),
                ("challenge", &big),
            ],
        )
        .await;
    assert_eq!(page.status, 413);
    assert!(page.body.contains("16 KiB"));
    let r = app
        .client
        .post(app.url("/subscribe"))
        .header("content-type", "application/json")
        .body(r#"{"email":"json@example.com","consent":true}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 415);
    let raw = |content_type: &'static str, body: &'static [u8]| {
        let c = app.client.clone();
        let url = app.url("/subscribe");
        async move {
            let r = c
                .post(url)
                .header("content-type", content_type)
                .body(body)
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    let form = "application/x-www-form-urlencoded";
    let (status, _) = raw(
        "application/x-www-form-urlencodedXYZ",
        b"email=x%40example.com&consent=yes",
    )
    .await;
    assert_eq!(status, 415, "the content type is compared whole");
    let (status, body) = raw(form, b"email=%FF%FE%40example.com&consent=yes").await;
    assert_eq!(
        status, 400,
        "bytes that are not UTF-8 are refused, not stored as \u{fffd}"
    );
    assert!(body.contains("email") && body.contains("UTF-8"), "{body}");
    let (status, _) = raw(
        "application/x-www-form-urlencoded; charset=UTF-8",
        b"email=ok%40example.com&consent=yes",
    )
    .await;
    assert_eq!(status, 200, "parameters of the content type are fine");
    // Invisible characters make an address look like someone else's: refused.
    for (bad, shown) in [
        ("a%E2%80%8B10%40example.com", "a\u{200b}10"),
        ("a%E2%80%AE30%40example.com", "a\u{202e}30"),
    ] {
        let body: &'static [u8] = Box::leak(
            format!("email={bad}&consent=yes")
                .into_bytes()
                .into_boxed_slice(),
        );
        let (status, page) = raw(form, body).await;
        assert_eq!(status, 422, "{shown:?}");
        assert!(page.contains("invisible characters"), "{page}");
    }
    assert_eq!(
        app.store.profile_count().await.unwrap(),
        1,
        "only ok@example.com"
    );
}

async fn bad_tokens_get_404_and_change_nothing(app: TestApp) {
    app.subscribe("ed@example.com", &[]).await;
    let link = app.wait_for_messages(1).await[0].link("/confirm/").unwrap();
    let token = link.rsplit('/').next().unwrap().to_string();
    let p = profile_of(&app, "ed@example.com").await.unwrap();

    let mut tampered = token.clone().into_bytes();
    let i = tampered.len() / 2;
    tampered[i] = if tampered[i] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    let profile_token = app.signer.sign(Purpose::Profile, p.id, None, "");
    let expired = app.signer.sign(
        Purpose::Confirm,
        p.id,
        Some(1),
        p.confirm_nonce.as_deref().unwrap(),
    );
    let foreign = rapport::track::Signer::new(b"some other installation's secret").sign(
        Purpose::Confirm,
        p.id,
        None,
        p.confirm_nonce.as_deref().unwrap(),
    );
    let long = "A".repeat(5000);
    for path in [
        format!("/confirm/{tampered}"),
        format!("/confirm/{profile_token}"),
        format!("/confirm/{expired}"),
        format!("/confirm/{foreign}"),
        format!("/confirm/{long}"),
        "/confirm/%00%ff".to_string(),
        format!("/profile/{token}"),
        format!("/profile/{tampered}"),
    ] {
        let page = app.get(&path).await;
        assert_eq!(page.status, 404, "{path}");
        assert!(
            page.body.contains("This link is not valid"),
            "{path}: a page, not a bare error"
        );
    }
    let r = app
        .post_form(&format!("/profile/{token}"), &[("name", "Mallory")])
        .await;
    assert_eq!(r.status, 404);
    let after = profile_of(&app, "ed@example.com").await.unwrap();
    assert_eq!(after.status, Status::Pending);
    assert_eq!(after.answers, p.answers);
}

async fn honeypot_stores_nothing(app: TestApp) {
    let page = app
        .subscribe("bot@example.com", &[("website", "http://spam.example")])
        .await;
    assert_eq!(page.status, 200, "bots are told it worked");
    assert_eq!(app.store.profile_count().await.unwrap(), 0);
    assert!(app.outbox_messages().is_empty());
}

async fn profile_centre_validates_and_keeps_answers(app: TestApp) {
    let centre = app
        .subscribed("fay@example.com", &[("employees", "5")])
        .await;
    let page = app
        .post_form(
            &centre,
            &[("step", "1"), ("employees", "-3"), ("name", "Fay")],
        )
        .await;
    assert_eq!(page.status, 422);
    assert!(field_error(&page, "employees"));
    assert!(
        page.body.contains("value=\"-3\""),
        "what was typed is shown back"
    );
    assert!(page.body.contains("value=\"Fay\""));
    let p = profile_of(&app, "fay@example.com").await.unwrap();
    assert_eq!(p.answers.employees, Some(5), "nothing saved on error");
    assert_eq!(p.answers.name, None);

    let page = app
        .post_form(&centre, &[("email", "other@example.com"), ("name", "Fay")])
        .await;
    assert_eq!(
        page.status, 422,
        "the address is not changed from the profile centre"
    );
    let page = app.post_form(&centre, &[("engagement", "lurker")]).await;
    assert_eq!(page.status, 422);
    assert!(page.body.contains("lurker"));
    let page = app.post_form(&centre, &[("colour", "red")]).await;
    assert_eq!(page.status, 422);
}

/// Unticking every product or emptying the name in the profile centre removes the answer
/// (it used to "save" and keep the old one); answers of other steps stay.
async fn profile_centre_can_clear_answers(app: TestApp) {
    let centre = app
        .subscribed("gil@example.com", &[("name", "Gil"), ("employees", "5")])
        .await;
    let page = app
        .post_form(
            &centre,
            &[
                ("step", "3"),
                ("industry", "retail"),
                ("products", "office"),
                ("products", "cloud"),
            ],
        )
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    let p = profile_of(&app, "gil@example.com").await.unwrap();
    assert_eq!(p.answers.products.as_deref().map(<[String]>::len), Some(2));
    // Step 3 sent again with no product ticked, industry kept; step 1 with the name empty.
    let page = app
        .post_form(&centre, &[("step", "3"), ("industry", "retail")])
        .await;
    assert_eq!(page.status, 200);
    let page = app
        .post_form(&centre, &[("step", "1"), ("name", ""), ("employees", "5")])
        .await;
    assert_eq!(page.status, 200);
    let p = profile_of(&app, "gil@example.com").await.unwrap();
    assert_eq!(p.answers.products, None, "every product unticked");
    assert_eq!(p.answers.name, None, "the name emptied");
    assert_eq!(p.answers.industry.as_deref(), Some("retail"));
    assert_eq!(p.answers.employees, Some(5));
    // The public form still only fills gaps: it never clears.
    app.subscribe("gil@example.com", &[("employees", "")]).await;
    let p = profile_of(&app, "gil@example.com").await.unwrap();
    assert_eq!(p.answers.employees, Some(5));
}

async fn health_and_unknown_paths(app: TestApp) {
    let page = app.get("/healthz").await;
    assert_eq!(page.status, 200);
    let page = app.get("/no/such/page").await;
    assert_eq!(page.status, 404);
    assert!(page.body.contains("<html"));
    let page = app.get("/profile/").await;
    assert_eq!(page.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_is_rate_limited_per_client() {
    let app = common::spawn_app_with(common::Db::Sqlite, &[("RAPPORT_SUBSCRIBE_LIMIT", "3")])
        .await
        .unwrap();
    for i in 0..3 {
        let page = app.subscribe(&format!("r{i}@example.com"), &[]).await;
        assert_eq!(page.status, 200);
    }
    let page = app.subscribe("r9@example.com", &[]).await;
    assert_eq!(page.status, 429);
    assert_eq!(page.headers.get("retry-after").unwrap(), "60");
    assert!(page.body.contains("wait a minute"));
    assert!(profile_of(&app, "r9@example.com").await.is_none());
}

/// However many clients ask, one address gets at most RAPPORT_CONFIRM_LIMIT confirmation
/// emails a day; the page reads the same either way (no address enumeration).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirmation_emails_per_address_are_limited() {
    let app = common::spawn_app_with(common::Db::Sqlite, &[("RAPPORT_CONFIRM_LIMIT", "3")])
        .await
        .unwrap();
    // Each request waits for its email: requests made while one is still queued share it.
    let mut pages = Vec::new();
    for i in 0..6 {
        pages.push(app.subscribe("victim@example.com", &[]).await);
        if i < 3 {
            app.wait_for_messages(i + 1).await;
        }
    }
    let other = app.subscribe("other@example.com", &[]).await;
    assert!(pages.iter().all(|p| p.status == 200));
    let same = |p: &Page| p.body.replace("victim@example.com", "X");
    assert!(
        pages.iter().all(|p| same(p) == same(&pages[0])),
        "the same page each time"
    );
    assert_eq!(
        same(&other).replace("other@example.com", "X"),
        same(&pages[0])
    );
    app.wait_for_messages(4).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let to_victim = app
        .outbox_messages()
        .iter()
        .filter(|m| m.to.contains("victim@"))
        .count();
    assert_eq!(to_victim, 3);
    assert_eq!(
        app.outbox_messages().len(),
        4,
        "other addresses are not affected"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_is_generated_once_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("s.db").display());
    let store = rapport::store::Store::connect(&url).await.unwrap();
    store.migrate().await.unwrap();
    let a = store.signing_secret().await.unwrap();
    let b = store.signing_secret().await.unwrap();
    assert_eq!(a, b);
    assert_eq!(a.len(), 32);
}

/// The confirmation's delivery: its status, attempts and whether it holds a lease.
async fn confirmation_delivery(app: &TestApp, email: &str) -> (String, i64, bool) {
    let pool = common::raw_pool(&app.database_url).await;
    let (status, attempts, leased): (String, i64, i32) = sqlx::query_as(
        "SELECT d.status, d.attempts, CASE WHEN d.lease_until IS NULL THEN 0 ELSE 1 END FROM deliveries d \
         JOIN profiles p ON p.id = d.profile_id WHERE p.email = $1 AND d.campaign = $2",
    )
    .bind(email)
    .bind(rapport::store::CONFIRMATION)
    .fetch_one(&pool)
    .await
    .unwrap();
    (status, attempts, leased == 1)
}

/// A form request's confirmation is written already claimed for its own process's worker,
/// which sends it at once; a process that dies first leaves it claimed, and when the lease
/// runs out it is queued again and any worker sends it.
async fn a_claimed_confirmation_outlives_its_process(app: TestApp) {
    // Through the form: handed to this server's worker, sent once, one attempt.
    app.subscribe("handed@example.com", &[]).await;
    app.wait_for_mail(|m| m.to.contains("handed@example.com"))
        .await;
    assert_eq!(
        settled_confirmation(&app, "handed@example.com").await,
        ("sent".to_string(), 1, false)
    );

    // Claimed by a process that is gone (its lease already ran out; nobody was handed it).
    let email = Email::parse("orphan@example.com").unwrap();
    let meta = ConsentMeta {
        source: "form".into(),
        ..Default::default()
    };
    let (_, claimed) = app
        .store
        .request_opt_in(&email, &Default::default(), &meta, None, Some(-1))
        .await
        .unwrap();
    let claimed = claimed.expect("the delivery comes back claimed");
    assert_eq!(claimed.attempts, 1);
    assert_eq!(
        confirmation_delivery(&app, "orphan@example.com").await,
        ("sending".to_string(), 1, true)
    );
    assert_eq!(app.store.reclaim_expired().await.unwrap(), 1);
    let mail = app
        .wait_for_mail(|m| m.to.contains("orphan@example.com"))
        .await;
    assert!(mail.link("/confirm/").is_some(), "{}", mail.text);
}

/// The confirmation's delivery once its send is recorded (`sent`), or as it stands after
/// three seconds without.
async fn settled_confirmation(app: &TestApp, email: &str) -> (String, i64, bool) {
    let mut d = confirmation_delivery(app, email).await;
    for _ in 0..150 {
        if d.0 == "sent" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        d = confirmation_delivery(app, email).await;
    }
    d
}

/// A known address that asks again after its first confirmation went out gets exactly one
/// more: the request claims the person's delivery for its worker, and must not also mark
/// it to be queued again once sent (that is only for a delivery another send holds).
async fn a_known_address_asking_again_gets_one_email(app: TestApp) {
    let to_known = |app: &TestApp| {
        app.outbox_messages()
            .iter()
            .filter(|m| m.to.contains("known@example.com"))
            .count()
    };
    app.subscribe("known@example.com", &[]).await;
    app.wait_for_mail(|m| m.to.contains("known@example.com"))
        .await;
    assert_eq!(
        settled_confirmation(&app, "known@example.com").await.0,
        "sent"
    );

    app.subscribe("known@example.com", &[]).await;
    app.wait_for_messages(2).await;
    assert_eq!(to_known(&app), 2, "the second request's email");
    assert_eq!(
        settled_confirmation(&app, "known@example.com").await,
        ("sent".to_string(), 1, false),
        "recorded as sent, not queued for a third email"
    );
    // Whatever wakes the queue now finds nothing of theirs to send.
    app.subscribe("someone-else@example.com", &[]).await;
    app.wait_for_mail(|m| m.to.contains("someone-else@")).await;
    app.store.reclaim_expired().await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(to_known(&app), 2, "no third email");
}

/// Where no worker runs, a request claims nothing: its confirmation waits in the queue,
/// unleased, for whichever worker runs next.
async fn without_a_worker_confirmations_wait_in_the_queue(db: common::Db) {
    let Some(app) = common::spawn_app_with(db, &[("RAPPORT_WORKER", "off")]).await else {
        return;
    };
    assert_eq!(app.subscribe("waiting@example.com", &[]).await.status, 200);
    assert_eq!(
        confirmation_delivery(&app, "waiting@example.com").await,
        ("queued".to_string(), 0, false)
    );
}
