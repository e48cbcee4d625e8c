//! Mail through a real SMTP server (Postfix's smtp-sink): the confirmation email arrives
//! with the right envelope, EHLO name and MIME structure.

mod common;

use common::smtp::SmtpSink;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirmation_goes_out_by_smtp() {
    let Some(sink) = SmtpSink::start(&[]) else {
        return;
    };
    let app = common::spawn_app_with(common::Db::Sqlite, &[("RAPPORT_SMTP_URL", &sink.url())])
        .await
        .unwrap();
    let page = app.subscribe("gus@example.com", &[("name", "Gus")]).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let mails = sink.wait_for(1).await;
    let mail = &mails[0];
    let header = |k: &str| {
        mail.headers
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    assert_eq!(header("X-Rcpt-Args"), "<gus@example.com>");
    // Composed before the pool had met the server: encoded, no BODY= parameter.
    assert_eq!(header("X-Mail-Args"), "<hello@contoso.example>");
    assert_eq!(
        header("X-Helo-Args"),
        "contoso.example",
        "EHLO names the sender's domain, not this host"
    );
    // The example's `confirm_subject` (compiled once with the site) greets by first name.
    assert_eq!(
        mail.subject, "Please confirm your subscription, Gus",
        "{}",
        mail.subject
    );
    assert!(mail.link("/confirm/").is_some());
    assert!(
        app.outbox_messages().is_empty(),
        "SMTP replaces the outbox folder"
    );

    // The server offered 8BITMIME: the next confirmation (its footer has a non-ASCII "·",
    // its lines fit) goes as it is, 8bit, and the client says so.
    let page = app.subscribe("ida@example.com", &[("name", "Ida")]).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let mails = sink.wait_for(2).await;
    let ida = mails
        .iter()
        .find(|m| m.to.contains("ida@"))
        .expect("Ida's mail");
    let mail_args = ida.headers.iter().find(|(n, _)| n == "X-Mail-Args");
    assert_eq!(
        mail_args.map(|(_, v)| v.as_str()),
        Some("<hello@contoso.example> BODY=8BITMIME")
    );
    assert!(
        ida.raw.contains("Content-Transfer-Encoding: 8bit"),
        "{}",
        ida.raw
    );
    assert!(ida.html.contains('\u{b7}') && ida.link("/confirm/").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_8bitmime_every_message_is_encoded() {
    // smtp-sink -8: 8BITMIME is not offered.
    let Some(sink) = SmtpSink::start(&["-8"]) else {
        return;
    };
    let app = common::spawn_app_with(common::Db::Sqlite, &[("RAPPORT_SMTP_URL", &sink.url())])
        .await
        .unwrap();
    for who in ["jo@example.com", "kim@example.com"] {
        let page = app.subscribe(who, &[("name", "Jo")]).await;
        assert_eq!(page.status, 200, "{}", page.body);
    }
    for mail in sink.wait_for(2).await {
        let mail_args = mail.headers.iter().find(|(n, _)| n == "X-Mail-Args");
        assert_eq!(
            mail_args.map(|(_, v)| v.as_str()),
            Some("<hello@contoso.example>")
        );
        assert!(!mail.raw.contains("Content-Transfer-Encoding: 8bit"));
        assert!(mail.raw.is_ascii(), "nothing 8-bit on the wire");
        assert!(mail.html.contains('\u{b7}'), "decoded, the text is intact");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_confirmation_is_retried_from_the_queue_and_the_form_answers_at_once() {
    // Every RCPT TO is refused (smtp-sink's -r answers 450).
    let Some(sink) = SmtpSink::start(&["-r", "rcpt"]) else {
        return;
    };
    let app = common::spawn_app_with(common::Db::Sqlite, &[("RAPPORT_SMTP_URL", &sink.url())])
        .await
        .unwrap();
    let page = app.subscribe("hal@example.com", &[("name", "Hal")]).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("Check your inbox"), "{}", page.body);
    let p = app
        .store
        .profile_by_email(&rapport::profile::Email::parse("hal@example.com").unwrap())
        .await
        .unwrap()
        .expect("the profile is stored");
    assert_eq!(
        p.answers.name.as_deref(),
        Some("Hal"),
        "nothing the person sent is lost"
    );
    // The worker tried, heard 450, and queued the confirmation again for later.
    let raw = common::raw_pool(&app.database_url).await;
    let mut row: Option<(String, i64, Option<String>)> = None;
    for _ in 0..200 {
        row = sqlx::query_as(
            "SELECT status, attempts, last_error FROM deliveries WHERE profile_id = $1 AND campaign = '@confirmation'",
        )
        .bind(p.id)
        .fetch_optional(&raw)
        .await
        .unwrap();
        if matches!(&row, Some((_, n, _)) if *n > 0) && row.as_ref().unwrap().0 == "queued" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    let (status, attempts, error) = row.expect("the confirmation is a delivery");
    assert_eq!((status.as_str(), attempts), ("queued", 1));
    assert!(
        error.unwrap_or_default().contains("450"),
        "the server's reply is kept"
    );
}

/// A confirmation handed to the worker of the instance that took the request, but kept
/// waiting behind a slow mail server for longer than its lease allows, is sent once: the
/// worker leaves it to the queue (its lease runs out, it is queued again and claimed like
/// any other) instead of sending it beside the queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_confirmation_kept_waiting_past_its_lease_is_sent_once() {
    // Every message takes two seconds to be accepted, over one connection.
    let Some(sink) = SmtpSink::start(&["-w", "2"]) else {
        return;
    };
    let app = common::spawn_app_with(
        common::Db::Sqlite,
        &[
            ("RAPPORT_SMTP_URL", &sink.url()),
            ("RAPPORT_SMTP_POOL", "1"),
            ("RAPPORT_DELIVERY_LEASE", "3s"),
        ],
    )
    .await
    .unwrap();
    // Two go out in the first group (four seconds); the third, handed once that group has
    // started, waits past its lease.
    for who in ["first", "second"] {
        assert_eq!(
            app.subscribe(&format!("{who}@example.com"), &[])
                .await
                .status,
            200
        );
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(app.subscribe("third@example.com", &[]).await.status, 200);
    sink.wait_for(3).await;
    // Long enough for a second copy of any of them to arrive, were one sent.
    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    let per = sink.per_recipient();
    for who in ["first", "second", "third"] {
        assert_eq!(
            per.get(&format!("<{who}@example.com>")),
            Some(&1),
            "{per:?}"
        );
    }
}
