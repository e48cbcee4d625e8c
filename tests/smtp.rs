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
    assert!(mail.subject.contains("confirm"), "{}", mail.subject);
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
async fn smtp_refusal_is_reported_and_the_profile_kept() {
    // Every RCPT TO is refused (smtp-sink's -r answers 450).
    let Some(sink) = SmtpSink::start(&["-r", "rcpt"]) else {
        return;
    };
    let app = common::spawn_app_with(common::Db::Sqlite, &[("RAPPORT_SMTP_URL", &sink.url())])
        .await
        .unwrap();
    let page = app.subscribe("hal@example.com", &[("name", "Hal")]).await;
    assert_eq!(page.status, 503);
    assert!(page.body.contains("saved your details"), "{}", page.body);
    let p = app
        .store
        .profile_by_email(&rapport::profile::Email::parse("hal@example.com").unwrap())
        .await
        .unwrap();
    assert_eq!(
        p.unwrap().answers.name.as_deref(),
        Some("Hal"),
        "nothing the person sent is lost"
    );
}
