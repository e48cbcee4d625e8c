//! After the send: VERP envelope senders, the SMTP bounce listener, `rapport bounces`, the
//! bounce and complaint policy, and the deliverability report, on both backends.

mod common;

use common::{Mail, TestApp};
use lettre::AsyncTransport;

const BOUNCE_DOMAIN: &str = "bounces.example.com";

async fn spawn(db: common::Db, extra: &[(&str, &str)]) -> Option<TestApp> {
    let mut vars = vec![
        ("RAPPORT_BOUNCE_DOMAIN", BOUNCE_DOMAIN),
        ("RAPPORT_BOUNCE_BIND", "127.0.0.1:0"),
    ];
    vars.extend_from_slice(extra);
    common::spawn_app_with(db, &vars).await
}

/// The envelope sender a message went out with (the outbox file's Return-Path).
fn return_path(m: &Mail) -> String {
    let (k, v) = &m.headers[0];
    assert_eq!(k, "Return-Path", "the outbox file starts with Return-Path");
    v.trim().trim_matches(['<', '>']).to_string()
}

/// A DSN as a relay writes it, sent back to `to` about `recipient`.
fn dsn(to: &str, recipient: &str, action: &str, status: &str, quoted: &str) -> String {
    format!(
        "From: Mail Delivery System <MAILER-DAEMON@relay.example>\r\n\
         To: {to}\r\n\
         Subject: Undelivered Mail Returned to Sender\r\n\
         Auto-Submitted: auto-replied\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=delivery-status; boundary=\"B0\"\r\n\
         \r\n\
         --B0\r\n\
         Content-Type: text/plain\r\n\
         \r\n\
         I'm sorry to have to inform you that your message could not be delivered.\r\n\
         --B0\r\n\
         Content-Type: message/delivery-status\r\n\
         \r\n\
         Reporting-MTA: dns; relay.example\r\n\
         \r\n\
         Final-Recipient: rfc822; {recipient}\r\n\
         Action: {action}\r\n\
         Status: {status}\r\n\
         Diagnostic-Code: smtp; 550 {status} <{recipient}>: no such mailbox\r\n\
         \r\n\
         --B0\r\n\
         Content-Type: text/rfc822-headers\r\n\
         \r\n\
         {quoted}\r\n\
         --B0--\r\n"
    )
}

/// An ARF abuse report to the feedback-loop address, quoting `original` whole.
fn arf(original: &str) -> String {
    format!(
        "From: Feedback Loop <fbl@mailbox-provider.example>\r\n\
         To: fbl@{BOUNCE_DOMAIN}\r\n\
         Subject: complaint about message\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=feedback-report; boundary=\"A1\"\r\n\
         \r\n\
         --A1\r\n\
         Content-Type: text/plain\r\n\
         \r\n\
         This is an email abuse report.\r\n\
         --A1\r\n\
         Content-Type: message/feedback-report\r\n\
         \r\n\
         Feedback-Type: abuse\r\n\
         User-Agent: ExampleFBL/1.0\r\n\
         Version: 1\r\n\
         \r\n\
         --A1\r\n\
         Content-Type: message/rfc822\r\n\
         \r\n\
         {original}\r\n\
         --A1--\r\n"
    )
}

/// Sends `raw` to the bounce listener by SMTP with the null sender, as reports come.
async fn deliver(app: &TestApp, to: &str, raw: &str) -> Result<(), lettre::transport::smtp::Error> {
    let addr = app.bounce.expect("bounce listener");
    let smtp = lettre::AsyncSmtpTransport::<lettre::Tokio1Executor>::builder_dangerous(
        addr.ip().to_string(),
    )
    .port(addr.port())
    .build();
    let envelope = lettre::address::Envelope::new(None, vec![to.parse().unwrap()]).unwrap();
    smtp.send_raw(&envelope, raw.as_bytes()).await.map(|_| ())
}

async fn status(app: &TestApp, email: &str) -> String {
    let p = app
        .store
        .profile_by_email(&rapport::profile::Email::parse(email).unwrap())
        .await
        .unwrap()
        .unwrap();
    p.status.as_str().to_string()
}

/// The welcome message `email` received.
async fn welcome(app: &TestApp, email: &str) -> Mail {
    app.wait_for_mail(|m| m.to.contains(email) && m.link("/confirm/").is_none())
        .await
}

async fn metrics(app: &TestApp) -> String {
    app.client
        .get(format!("{}/metrics", app.address))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Reports over SMTP: a hard bounce, a complaint attributed through the quoted message's
/// unsubscribe link, an out-of-office, junk; another domain is refused (never a relay).
async fn reports_by_smtp_apply_the_policy(app: TestApp) {
    for who in ["ann@a.example", "bob@b.example", "cat@c.example"] {
        app.subscribed(who, &[]).await;
    }
    let ann = welcome(&app, "ann@a.example").await;
    let verp = return_path(&ann);
    assert!(
        verp.starts_with("b-") && verp.ends_with(&format!("@{BOUNCE_DOMAIN}")),
        "{verp}"
    );
    // Confirmations go out with their own VERP address too.
    let confirmation = app
        .wait_for_mail(|m| m.to.contains("ann@a.example") && m.link("/confirm/").is_some())
        .await;
    let conf_verp = return_path(&confirmation);
    assert!(conf_verp.starts_with("b-") && conf_verp != verp);

    // A hard bounce to the VERP address: bounced at once.
    let quoted = format!("Return-Path: <{verp}>\r\nSubject: {}", ann.subject);
    deliver(
        &app,
        &verp,
        &dsn(&verp, "ann@a.example", "failed", "5.1.1", &quoted),
    )
    .await
    .expect("a DSN is taken");
    assert_eq!(status(&app, "ann@a.example").await, "bounced");

    // Nothing for another domain: 550, whoever asks.
    let e = deliver(
        &app,
        "someone@elsewhere.example",
        "Subject: relay me\r\n\r\nhi\r\n",
    )
    .await
    .unwrap_err();
    assert!(e.is_permanent(), "{e}");

    // A complaint without VERP: the quoted original's List-Unsubscribe link names it.
    let bob = welcome(&app, "bob@b.example").await;
    let original = bob.raw.split_once("\r\n").unwrap().1; // without Return-Path
    deliver(&app, &format!("fbl@{BOUNCE_DOMAIN}"), &arf(original))
        .await
        .unwrap();
    assert_eq!(status(&app, "bob@b.example").await, "complained");
    let p = app
        .store
        .profile_by_email(&rapport::profile::Email::parse("bob@b.example").unwrap())
        .await
        .unwrap()
        .unwrap();
    let consents = app.store.consents(p.id).await.unwrap();
    assert!(
        consents.iter().any(|c| c.0 == "complaint"),
        "a complaint consent record: {consents:?}"
    );

    // An out-of-office to cat's VERP address, and junk: taken (250), changing nothing.
    let cat = return_path(&welcome(&app, "cat@c.example").await);
    let ooo = format!(
        "From: cat@c.example\r\nTo: {cat}\r\nSubject: Out of Office: back on Monday\r\n\r\nI am away.\r\n"
    );
    deliver(&app, &cat, &ooo).await.unwrap();
    deliver(&app, &cat, "no headers at all, just words\r\n")
        .await
        .unwrap();
    // A forged report naming cat without a signed token: counted, not applied.
    let forged = dsn(
        &format!("b-1-00000000000000000000@{BOUNCE_DOMAIN}"),
        "cat@c.example",
        "failed",
        "5.1.1",
        "Subject: x",
    );
    deliver(
        &app,
        &format!("b-1-00000000000000000000@{BOUNCE_DOMAIN}"),
        &forged,
    )
    .await
    .unwrap();
    assert_eq!(status(&app, "cat@c.example").await, "subscribed");
    // The same DSN again changes nothing more.
    deliver(
        &app,
        &verp,
        &dsn(&verp, "ann@a.example", "failed", "5.1.1", &quoted),
    )
    .await
    .unwrap();

    let m = metrics(&app).await;
    for line in [
        "rapport_bounce_intake_total{outcome=\"hard_bounce\"} 1",
        "rapport_bounce_intake_total{outcome=\"complaint\"} 1",
        "rapport_bounce_intake_total{outcome=\"auto_reply\"} 1",
        "rapport_bounce_intake_total{outcome=\"duplicate\"} 1",
        "rapport_bounce_intake_total{outcome=\"unattributed\"} 1",
        "rapport_bounce_intake_total{outcome=\"unreadable\"} 1",
        "rapport_late_bounces_total 1",
        "rapport_complaints_total 1",
        "rapport_profiles{status=\"bounced\"} 1",
        "rapport_profiles{status=\"complained\"} 1",
    ] {
        assert!(m.contains(line), "{line} in\n{m}");
    }

    // Per receiving domain, by hand: each got a confirmation and a welcome.
    let csv = app.admin("/admin/reports/deliverability.csv").await;
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "domain,sent,delivered,bounced_hard,bounced_soft,complaints,complaint_rate"
    );
    for row in [
        "a.example,2,1,1,0,0,0.0000",
        "b.example,2,2,0,0,1,0.5000",
        "c.example,2,2,0,0,0,0.0000",
    ] {
        assert!(lines.contains(&row), "{row} in\n{csv}");
    }
    // /admin shows the people taken off and the complaint rate against Gmail's line.
    let admin = app.admin("/admin").await;
    assert!(admin.contains("1 people bounced · 1 complained"), "{admin}");
    assert!(admin.contains("over Gmail&#x27;s line") || admin.contains("over Gmail's line"));
    assert!(
        admin.contains("complaint rate 50.00% against Gmail"),
        "b.example's gauge"
    );
    // The response rates count the late bounce of the welcome.
    let (code, out, err) = app.cli(&["export", "response-rates"]);
    assert_eq!(code, 0, "{err}");
    let welcome_row = out.lines().find(|l| l.starts_with("welcome,")).unwrap();
    let cells: Vec<&str> = welcome_row.split(',').collect();
    assert_eq!((cells[3], cells[5]), ("3", "1"), "{welcome_row}");

    // Neither is mailed again: a newsletter run goes to cat only.
    let before = app.outbox_messages().len();
    let (code, _, err) = app.cli(&["run", "newsletter"]);
    assert_eq!(code, 0, "{err}");
    app.wait_for_new_mail(before, |m| m.to.contains("cat@c.example"))
        .await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let after: Vec<String> = app
        .outbox_messages()
        .iter()
        .skip(before)
        .map(|m| m.to.clone())
        .collect();
    assert_eq!(after.len(), 1, "{after:?}");

    // The form does not silently take a complained address back: it asks to confirm.
    let before = app.outbox_messages().len();
    assert_eq!(app.subscribe("bob@b.example", &[]).await.status, 200);
    app.wait_for_new_mail(before, |m| {
        m.to.contains("bob@b.example") && m.link("/confirm/").is_some()
    })
    .await;
    assert_eq!(status(&app, "bob@b.example").await, "complained");
}

/// `rapport bounces` over an mbox file and a Maildir: soft bounces count per delivery, a
/// person's open in between starts the count again, the limit marks the address bounced.
async fn soft_bounces_from_files_reach_the_limit(app: TestApp) {
    app.subscribed("dan@d.example", &[]).await;
    let conf = return_path(
        &app.wait_for_mail(|m| m.to.contains("dan@d.example") && m.link("/confirm/").is_some())
            .await,
    );
    let welcome = return_path(&welcome(&app, "dan@d.example").await);
    let before = app.outbox_messages().len();
    let (code, _, err) = app.cli(&["run", "newsletter"]);
    assert_eq!(code, 0, "{err}");
    let news = return_path(
        &app.wait_for_new_mail(before, |m| m.to.contains("dan@d.example"))
            .await,
    );
    let soft = |to: &str, action: &str, status: &str| {
        dsn(to, "dan@d.example", action, status, "Subject: x")
    };
    let dir = tempfile::tempdir().unwrap();
    // An mbox file: a delayed DSN about the confirmation, and an auto-reply.
    let mbox = dir.path().join("bounces.mbox");
    std::fs::write(
        &mbox,
        format!(
            "From MAILER-DAEMON Mon Jun 15 12:00:00 2026\n{}\nFrom dan@d.example Mon Jun 15 12:01:00 2026\nFrom: dan@d.example\nTo: {welcome}\nAuto-Submitted: auto-replied\nSubject: away\n\n>From Monday on I am away.\n",
            soft(&conf, "delayed", "4.4.7").replace("\r\n", "\n")
        ),
    )
    .unwrap();
    let run = |files: &[&std::path::Path]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_rapport"))
            .args([
                "--dir",
                env!("CARGO_MANIFEST_DIR"),
                "--database-url",
                &app.database_url,
                "bounces",
            ])
            .args(files)
            .env("RAPPORT_SECRET", common::SECRET)
            .env("RAPPORT_SOFT_BOUNCE_LIMIT", "2")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, out, err) = run(&[&mbox]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("soft_bounce   1") && out.contains("auto_reply    1"),
        "{out}"
    );
    assert_eq!(status(&app, "dan@d.example").await, "subscribed");

    // A person's open since: the count starts again.
    let profile = app
        .store
        .profile_by_email(&rapport::profile::Email::parse("dan@d.example").unwrap())
        .await
        .unwrap()
        .unwrap();
    let pool = common::raw_pool(&app.database_url).await;
    sqlx::query(
        "INSERT INTO events (profile_id, kind, automated, created_at) VALUES ($1, 'open', 0, 1)",
    )
    .bind(profile.id)
    .execute(&pool)
    .await
    .unwrap();

    // A Maildir with a soft bounce of the welcome ("failed" with 4.x.x: given up on, still
    // transient): one since the open, under the limit of 2.
    let maildir = dir.path().join("Maildir");
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(maildir.join(sub)).unwrap();
    }
    std::fs::write(
        maildir.join("new/1.host"),
        soft(&welcome, "failed", "4.2.2"),
    )
    .unwrap();
    std::fs::write(maildir.join("tmp/2.host"), soft(&news, "failed", "4.2.2")).unwrap();
    let (code, out, err) = run(&[&maildir]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("soft_bounce   1"), "tmp/ is left out: {out}");
    assert_eq!(status(&app, "dan@d.example").await, "subscribed");

    // The welcome's soft bounce again (a relay may report twice): the same delivery counts
    // once, so still one since the open.
    let again = dir.path().join("again.eml");
    std::fs::write(&again, soft(&welcome, "delayed", "4.4.1")).unwrap();
    let (code, out, err) = run(&[&again]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("duplicate     1"), "{out}");
    assert_eq!(status(&app, "dan@d.example").await, "subscribed");

    // The newsletter's soft bounce makes two different deliveries since the open: bounced.
    let eml = dir.path().join("news.eml");
    std::fs::write(&eml, soft(&news, "delayed", "4.4.1")).unwrap();
    let (code, _, err) = run(&[&eml, &dir.path().join("missing.eml")]);
    assert_eq!(code, Some(1), "a missing file fails the command");
    assert!(err.contains("missing.eml"), "{err}");
    assert_eq!(status(&app, "dan@d.example").await, "bounced");
}

/// Without a bounce domain, the envelope sender is the from address.
async fn without_a_bounce_domain_the_from_address_is_the_envelope_sender(app: TestApp) {
    app.subscribed("eve@e.example", &[]).await;
    let m = welcome(&app, "eve@e.example").await;
    assert_eq!(return_path(&m), "hello@contoso.example");
}

mod with_listener {
    use super::*;

    async fn reports(db: common::Db) {
        match spawn(db, &[]).await {
            Some(app) => reports_by_smtp_apply_the_policy(app).await,
            None => common::skip_postgres("reports_by_smtp_apply_the_policy"),
        }
    }

    async fn soft(db: common::Db) {
        match spawn(db, &[]).await {
            Some(app) => soft_bounces_from_files_reach_the_limit(app).await,
            None => common::skip_postgres("soft_bounces_from_files_reach_the_limit"),
        }
    }

    on_both_databases!(reports, soft);
}

on_both_backends!(without_a_bounce_domain_the_from_address_is_the_envelope_sender);

/// A real relay: rapport sends through a private Postfix, whose next hop refuses the
/// recipient (550 5.1.1); Postfix writes its own DSN to the VERP address, delivers it to
/// rapport's listener, and the address is bounced.
async fn postfix_dsn_marks_the_address_bounced(db: common::Db) {
    let Some(sink) = common::smtp::SmtpSink::start(&[
        "-f",
        "RCPT",
        "-B",
        "550 5.1.1 Recipient address rejected: User unknown",
    ]) else {
        return;
    };
    let relay = common::postfix::Postfix::reserve_port();
    let url = format!("smtp://127.0.0.1:{relay}");
    let Some(app) = spawn(db, &[("RAPPORT_SMTP_URL", &url)]).await else {
        return common::skip_postgres("postfix_dsn_marks_the_address_bounced");
    };
    let Some(postfix) =
        common::postfix::Postfix::start(relay, sink.port, BOUNCE_DOMAIN, app.bounce.unwrap())
    else {
        return;
    };
    // The confirmation goes to Postfix, which accepts it, then learns it cannot deliver.
    assert_eq!(app.subscribe("gone@a.example", &[]).await.status, 200);
    for _ in 0..400 {
        if status(&app, "gone@a.example").await == "bounced" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(
        status(&app, "gone@a.example").await,
        "bounced",
        "Postfix's log:\n{}",
        postfix.log()
    );
    let pool = common::raw_pool(&app.database_url).await;
    let (tag, value): (String, String) =
        sqlx::query_as("SELECT tag, value FROM events WHERE kind = 'bounce'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(tag, "5.1.1");
    assert!(value.contains("User unknown"), "{value}");
    let m = metrics(&app).await;
    assert!(
        m.contains("rapport_bounce_intake_total{outcome=\"hard_bounce\"} 1"),
        "{m}"
    );
}

mod through_postfix {
    use super::*;
    on_both_databases!(postfix_dsn_marks_the_address_bounced);
}

/// `RAPPORT_DOMAIN_RATES`: a slow receiving domain's messages are spaced out, those past
/// the worker's hold go back to the queue for their slot (no attempt counted), and the
/// other domains are not held up; everything arrives.
async fn receiving_domains_are_paced_apart(db: common::Db) {
    let Some(app) =
        common::spawn_app_with(db, &[("RAPPORT_DOMAIN_RATES", "slow.example=1,*=1000")]).await
    else {
        return common::skip_postgres("receiving_domains_are_paced_apart");
    };
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("list.csv");
    let people: Vec<String> = (0..5)
        .map(|i| format!("s{i}@slow.example"))
        .chain((0..3).map(|i| format!("f{i}@fast.example")))
        .collect();
    std::fs::write(&list, format!("email\n{}\n", people.join("\n"))).unwrap();
    let (code, _, err) = app.cli(&["import", list.to_str().unwrap(), "--source", "shop"]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = app.cli(&["run", "newsletter"]);
    assert_eq!(code, 0, "{err}");
    for who in &people {
        app.wait_for_mail(|m| m.to.contains(who.as_str())).await;
    }
    let pool = common::raw_pool(&app.database_url).await;
    // Postponed deliveries keep the time they were queued again for.
    let rows: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT p.email, d.attempts, d.next_attempt_at FROM deliveries d \
         JOIN profiles p ON p.id = d.profile_id WHERE d.campaign = 'newsletter' AND d.status = 'sent'",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(rows.len(), 8, "{rows:?}");
    let queued_at = rows.iter().map(|r| r.2).min().unwrap();
    let postponed: Vec<&str> = rows
        .iter()
        .filter(|(_, _, at)| *at > queued_at + 2)
        .map(|(email, _, _)| email.as_str())
        .collect();
    // One a second: slots at 0, 1 and 2 s are waited for, the next two queued again.
    assert_eq!(postponed.len(), 2, "{rows:?}");
    assert!(postponed.iter().all(|e| e.ends_with("@slow.example")));
    assert!(
        rows.iter().all(|(_, attempts, _)| *attempts == 1),
        "postponing counts no attempt: {rows:?}"
    );
}

mod paced {
    use super::*;
    on_both_databases!(receiving_domains_are_paced_apart);
}
