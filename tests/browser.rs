//! The SMB owner's path in a real browser: headless Chromium at a phone-sized viewport,
//! driven through WebDriver (chromedriver). The opt-in form, an error shown next to its
//! field, the confirmation, and two progressive steps. Screenshots are kept in
//! `test-artifacts/` as test artefacts.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{ClientBuilder, Locator};
use rapport::profile::Email;

const CHROMIUM: &str = "/usr/bin/chromium";
const DRIVER: &str = "/usr/bin/chromedriver";

struct Driver(Child);
impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn artefacts() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn click(c: &fantoccini::Client, css: &str) {
    c.find(Locator::Css(css))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

async fn type_into(c: &fantoccini::Client, id: &str, text: &str) {
    c.find(Locator::Id(id))
        .await
        .unwrap()
        .send_keys(text)
        .await
        .unwrap();
}

async fn shot(c: &fantoccini::Client, name: &str) {
    let png = c.screenshot().await.unwrap();
    std::fs::write(artefacts().join(name), png).unwrap();
}

/// A headless Chromium session at `width` x `height`, with what must live as long as it;
/// `None` (skipped) when Chromium is not installed, which CI does not allow.
async fn browser(
    width: u32,
    height: u32,
) -> Option<(Driver, fantoccini::Client, tempfile::TempDir)> {
    if !Path::new(CHROMIUM).exists() || !Path::new(DRIVER).exists() {
        assert!(
            std::env::var("CI").is_err(),
            "chromium and chromium-driver missing under CI: .ci/run installs them"
        );
        eprintln!("SKIPPED: install chromium and chromium-driver to run the browser test");
        return None;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let driver = Driver(
        Command::new(DRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Two TLS back ends are linked (lettre's and the WebDriver client's): pick one.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let profile_dir = tempfile::tempdir().unwrap();
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": CHROMIUM,
            // Headless windows are at least 500 px wide: the viewport is emulated instead.
            "mobileEmulation": { "deviceMetrics": { "width": width, "height": height, "pixelRatio": 1.0, "mobile": width < 700 } },
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
                format!("--window-size={width},{height}"), format!("--user-data-dir={}", profile_dir.path().display()),
            ],
        }),
    );
    let c = ClientBuilder::rustls()
        .unwrap()
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .expect("chromedriver session");
    Some((driver, c, profile_dir))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opt_in_confirm_and_two_steps_on_a_phone() {
    let Some((_driver, c, _profile)) = browser(390, 844).await else {
        return;
    };
    let app = common::spawn_app(common::Db::Sqlite).await.unwrap();

    // The form fits a phone: no sideways scrolling.
    c.goto(&app.url("/")).await.unwrap();
    let fits = c
        .execute(
            "return document.documentElement.scrollWidth <= window.innerWidth",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        fits,
        serde_json::Value::Bool(true),
        "the form fits a 390 px wide screen"
    );
    shot(&c, "01-form.png").await;

    // A bad address: the message appears next to the field, what was typed is kept.
    type_into(&c, "email", "phone-at-example.com").await;
    type_into(&c, "name", "Pat Phone").await;
    c.find(Locator::Id("consent"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    click(&c, "button[type=submit]").await;
    let error = c
        .wait()
        .for_element(Locator::Id("email-error"))
        .await
        .unwrap();
    assert!(error.text().await.unwrap().contains("@"));
    let email = c.find(Locator::Id("email")).await.unwrap();
    assert_eq!(
        email.attr("aria-invalid").await.unwrap().as_deref(),
        Some("true")
    );
    assert_eq!(
        email.prop("value").await.unwrap().as_deref(),
        Some("phone-at-example.com")
    );
    assert_eq!(
        c.find(Locator::Id("name"))
            .await
            .unwrap()
            .prop("value")
            .await
            .unwrap()
            .as_deref(),
        Some("Pat Phone")
    );
    shot(&c, "02-error-next-to-field.png").await;

    // Corrected, sent: check your inbox.
    email.clear().await.unwrap();
    email.send_keys("pat@example.com").await.unwrap();
    type_into(&c, "employees", "7").await;
    let consent = c.find(Locator::Id("consent")).await.unwrap();
    if consent.prop("checked").await.unwrap().as_deref() != Some("true") {
        consent.click().await.unwrap();
    }
    click(&c, "button[type=submit]").await;
    c.wait()
        .for_element(Locator::XPath("//h1[contains(., 'Check your inbox')]"))
        .await
        .unwrap();
    shot(&c, "03-check-your-inbox.png").await;

    // The confirmation link, then step 2 (role, engagement) and step 3 (industry, ...).
    let confirm = app
        .wait_for_mail(|m| m.to.contains("pat@example.com"))
        .await
        .link("/confirm/")
        .unwrap();
    c.goto(&confirm).await.unwrap();
    // Headless Chromium says so in its user agent, as link scanners do: it gets the page
    // with one button, which a person would press.
    if c.find(Locator::XPath(
        "//h1[contains(., 'Confirm your subscription')]",
    ))
    .await
    .is_ok()
    {
        shot(&c, "04a-confirm-button.png").await;
        click(&c, "button[type=submit]").await;
    }
    c.wait()
        .for_element(Locator::XPath("//h1[contains(., 'One more step')]"))
        .await
        .unwrap();
    shot(&c, "04-confirmed-step-2.png").await;
    click(&c, "select#role option[value=owner]").await;
    click(&c, "input[name=engagement][value=learner]").await;
    click(&c, "button[type=submit]").await;
    c.wait()
        .for_element(Locator::Css("input[name=products]"))
        .await
        .unwrap();
    shot(&c, "05-step-3.png").await;
    click(&c, "select#industry option[value=retail]").await;
    click(&c, "input[name=products][value=office]").await;
    click(&c, "button[type=submit]").await;
    c.wait()
        .for_element(Locator::Id("challenge"))
        .await
        .unwrap();
    shot(&c, "06-step-4.png").await;

    let p = app
        .store
        .profile_by_email(&Email::parse("pat@example.com").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(p.status, rapport::profile::Status::Subscribed);
    assert_eq!(p.answers.name.as_deref(), Some("Pat Phone"));
    assert_eq!(p.answers.employees, Some(7));
    assert_eq!(p.answers.role.as_deref(), Some("owner"));
    assert_eq!(p.answers.engagement.as_deref(), Some("learner"));
    assert_eq!(p.answers.industry.as_deref(), Some("retail"));
    assert_eq!(p.answers.products, Some(vec!["office".to_string()]));
    c.close().await.unwrap();
}

/// Elements (tag, class, width) that reach past the right edge of the viewport.
const TOO_WIDE: &str = "return [...document.querySelectorAll('body *')]
    .filter(e => e.getBoundingClientRect().right > window.innerWidth + 0.5)
    .map(e => e.tagName + '.' + e.className + ' ' + Math.round(e.getBoundingClientRect().width))
    .concat(document.documentElement.scrollWidth > window.innerWidth ? ['page scrolls sideways'] : [])";

/// `/admin` on demo data, on a phone and on a laptop: nothing reaches past the viewport
/// (no sideways scrolling, no table cut off in its card); screenshots of both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_fits_a_phone_and_a_laptop() {
    let app = common::spawn_app(common::Db::Sqlite).await.unwrap();
    let (code, _, err) = app.cli(&["demo", "--profiles", "150"]);
    assert_eq!(code, 0, "{err}");
    for (width, height, name) in [
        (390, 844, "07-admin-390.png"),
        (1280, 900, "08-admin-1280.png"),
    ] {
        let Some((_driver, c, _profile)) = browser(width, height).await else {
            return;
        };
        // Basic auth in the address: any user name, the token as the password.
        let url = app.url("/admin").replacen(
            "http://",
            &format!("http://admin:{}@", common::ADMIN_TOKEN),
            1,
        );
        c.goto(&url).await.unwrap();
        c.wait()
            .for_element(Locator::XPath("//h2[contains(., 'What readers wrote')]"))
            .await
            .unwrap();
        let inner = c.execute("return window.innerWidth", vec![]).await.unwrap();
        assert!(
            inner
                .as_u64()
                .is_some_and(|w| w + 20 >= width as u64 && w <= width as u64),
            "viewport {inner} for a {width} px window"
        );
        let wide = c.execute(TOO_WIDE, vec![]).await.unwrap();
        assert_eq!(wide, serde_json::json!([]), "at {width} px: {wide}");
        shot(&c, name).await;
        c.close().await.unwrap();
    }
}
