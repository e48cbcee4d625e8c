//! `rapport preview` shows exactly what a stored person would receive, with the sections
//! their segments choose; unknown campaigns and people are clear errors. Also: SIGHUP
//! reloads the files, and an invalid set is refused while the running one is kept.

mod common;

use std::process::Command;

use common::TestApp;
use rapport::profile::Email;
use rapport::store::EventKind;

on_both_backends!(preview_personalises_by_segment, preview_errors_are_clear);

const BIN: &str = env!("CARGO_BIN_EXE_rapport");

fn preview(app: &TestApp, campaign: &str, email: &str, format: &str) -> (i32, String, String) {
    let out = Command::new(BIN)
        .args([
            "--dir",
            env!("CARGO_MANIFEST_DIR"),
            "--database-url",
            &app.database_url,
        ])
        .args(["preview", campaign, "--email", email, "--format", format])
        .env("RAPPORT_SECRET", common::SECRET)
        .env("RAPPORT_PUBLIC_URL", "https://news.example.com")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn preview_personalises_by_segment(app: TestApp) {
    let learner = app
        .subscribed(
            "lea@example.com",
            &[("name", "Lea Stone"), ("employees", "8")],
        )
        .await;
    app.post_form(
        &learner,
        &[("step", "2"), ("engagement", "learner"), ("role", "owner")],
    )
    .await;
    let connector = app
        .subscribed(
            "con@example.com",
            &[("name", "Con Ray"), ("employees", "300")],
        )
        .await;
    app.post_form(&connector, &[("step", "2"), ("engagement", "connector")])
        .await;

    let (code, html, err) = preview(&app, "newsletter", "lea@example.com", "html");
    assert_eq!(code, 0, "{err}");
    assert!(
        html.contains("Learn something this month"),
        "learner under 50 gets the training section"
    );
    assert!(!html.contains("From the community"));
    assert!(!html.contains("data-tag"), "data-tag is consumed, not sent");
    assert!(html.contains("style=\""), "CSS is inlined");
    assert!(
        html.contains("1 Example Way, Springfield"),
        "footer with postal address"
    );
    assert!(
        html.contains("https://news.example.com/unsubscribe/"),
        "unsubscribe link on the public URL"
    );

    let (_, html, _) = preview(&app, "newsletter", "con@example.com", "html");
    assert!(html.contains("From the community"));
    assert!(
        !html.contains("Learn something this month"),
        "300 employees is not small"
    );

    // Behaviour counts as much as the declared type: a small connector who clicked a
    // training link is in small-learners.
    let p = app
        .store
        .profile_by_email(&Email::parse("con@example.com").unwrap())
        .await
        .unwrap()
        .unwrap();
    app.post_form(&connector, &[("employees", "20")]).await;
    app.store
        .record_event(
            p.id,
            EventKind::Click,
            Some("welcome"),
            Some("training"),
            rapport::store::now(),
        )
        .await
        .unwrap();
    let (_, html, _) = preview(&app, "newsletter", "con@example.com", "html");
    assert!(
        html.contains("Learn something this month"),
        "clicked_tag training within 90 days"
    );

    let (code, text, _) = preview(&app, "welcome", "lea@example.com", "text");
    assert_eq!(code, 0);
    assert!(text.contains("Hello Lea,"), "{text}");
    assert!(
        text.contains("https://learn.contoso.example/courses/one-calendar"),
        "links listed in the text part"
    );
    assert!(!text.contains('<'), "no markup in the text part");

    let (code, eml, _) = preview(&app, "welcome", "lea@example.com", "eml");
    assert_eq!(code, 0);
    let mail = common::Mail::parse(eml.as_bytes());
    assert_eq!(mail.subject, "Welcome, Lea");
    assert!(
        eml.contains("List-Unsubscribe: <https://news.example.com/unsubscribe/"),
        "{eml}"
    );
    assert!(eml.contains("List-Unsubscribe-Post: List-Unsubscribe=One-Click"));
    assert!(eml.contains("multipart/alternative"));
}

async fn preview_errors_are_clear(app: TestApp) {
    app.subscribed("ok@example.com", &[]).await;
    let (code, _, err) = preview(&app, "newsleter", "ok@example.com", "eml");
    assert_eq!(code, 1);
    assert!(
        err.contains(
            "unknown campaign \"newsleter\"; known: welcome, newsletter, training-follow-up"
        ),
        "{err}"
    );
    let (code, _, err) = preview(&app, "newsletter", "nobody@example.com", "eml");
    assert_eq!(code, 1);
    assert!(
        err.contains("no profile with the address nobody@example.com"),
        "{err}"
    );
    let (code, _, err) = preview(&app, "newsletter", "not an address", "eml");
    assert_eq!(code, 1);
    assert!(err.contains("--email"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_and_keeps_the_running_set_on_errors() {
    let dir = common::example_copy();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(BIN)
        .arg("--dir")
        .arg(dir.path())
        .args([
            "--database-url",
            &format!("sqlite://{}", dir.path().join("r.db").display()),
        ])
        .args(["--log-format", "json"])
        .args(["serve", "--bind", &format!("127.0.0.1:{port}")])
        .env("RAPPORT_OUTBOX_DIR", dir.path().join("outbox"))
        .stderr(std::fs::File::create(dir.path().join("serve.log")).unwrap())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}/");
    let get = || async { reqwest::get(&url).await.ok()?.text().await.ok() };
    let mut body = None;
    for _ in 0..100 {
        body = get().await;
        if body.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(body.unwrap().contains("Stay in touch"));
    let pid = child.id().to_string();
    let hup = || Command::new("kill").args(["-HUP", &pid]).status().unwrap();
    let page = dir.path().join("templates/pages/subscribe.hbs");

    std::fs::write(&page, "RELOADED {{heading}}").unwrap();
    hup();
    let mut ok = false;
    for _ in 0..100 {
        if get().await.is_some_and(|b| b.starts_with("RELOADED")) {
            ok = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(ok, "SIGHUP reloads the templates");

    std::fs::write(&page, "BROKEN {{#if}}").unwrap();
    hup();
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(
        get().await.unwrap().starts_with("RELOADED"),
        "an invalid set is refused; the running one stays"
    );
    // A set that would recurse for ever when rendered is refused too, and nothing aborts.
    std::fs::write(&page, "{{> loop}}").unwrap();
    std::fs::write(dir.path().join("templates/partials/loop.hbs"), "{{> loop}}").unwrap();
    hup();
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(
        get().await.unwrap().starts_with("RELOADED"),
        "a recursive set is refused; the running one stays"
    );
    assert!(
        child.try_wait().unwrap().is_none(),
        "serve is still running"
    );

    // The library is reloaded with the rest: an item more, then a broken one refused.
    std::fs::write(&page, "RELOADED {{heading}}").unwrap();
    std::fs::remove_file(dir.path().join("templates/partials/loop.hbs")).unwrap();
    let log = || std::fs::read_to_string(dir.path().join("serve.log")).unwrap();
    let logged = |needle: &'static str| async move {
        for _ in 0..100 {
            if log().contains(needle) {
                return true;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        false
    };
    std::fs::write(
        dir.path().join("content/new-guide.md"),
        "+++\ntitle = \"New guide\"\nurl = \"https://learn.contoso.example/new\"\ntopics = [\"training\"]\n+++\nNew.\n",
    )
    .unwrap();
    hup();
    assert!(logged("\"library_items\":7").await, "{}", log());
    std::fs::write(
        dir.path().join("content/new-guide.md"),
        "+++\ntitle = 3\n+++\n",
    )
    .unwrap();
    hup();
    assert!(
        logged("new-guide.md:2:9: invalid type: integer `3`, expected a string").await,
        "{}",
        log()
    );
    child.kill().unwrap();
    child.wait().unwrap();
}
