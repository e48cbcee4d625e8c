//! Test harness: `spawn_app` starts the real server on a random port with a fresh database
//! (a SQLite file in a temporary folder, or a new PostgreSQL database when
//! `RAPPORT_TEST_POSTGRES_URL` is set) and an outbox folder of its own.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rapport::config::Settings;
use rapport::startup::Application;
use rapport::store::Store;
use rapport::track::Signer;

pub mod hooks;
pub mod postfix;
pub mod smtp;

/// The secret every test server signs with, so tests can forge tokens on purpose.
pub const SECRET: &str = "test-secret-0123456789abcdef0123456789";

/// The admin token of test servers (pass `("RAPPORT_ADMIN_TOKEN", "")` to have none).
pub const ADMIN_TOKEN: &str = "test-admin-token";

/// Where the clock of every test server stands unless a test moves it: mid-month, far from
/// any example schedule, so no test depends on the day the suite runs.
pub fn test_now() -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339("2026-06-15T12:00:00Z")
        .unwrap()
        .to_utc()
}

/// The user agent of the test client: a person's browser (a request without one counts as
/// automated; a test that plays a scanner says so per request).
pub const BROWSER: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

/// A running server and what a test needs to look at it.
pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub store: Store,
    pub outbox: PathBuf,
    pub signer: Signer,
    pub db: Db,
    pub database_url: String,
    /// The server's scheduler clock (manual: tests move it).
    pub clock: rapport::clock::Clock,
    /// The SMTP listener for bounces, when `RAPPORT_BOUNCE_BIND` was given.
    pub bounce: Option<std::net::SocketAddr>,
    _tmp: tempfile::TempDir,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Says that a PostgreSQL test did not run, and why.
pub fn skip_postgres(name: &str) {
    eprintln!(
        "SKIPPED {name} on PostgreSQL: set RAPPORT_TEST_POSTGRES_URL (e.g. postgres://postgres@127.0.0.1:5432/postgres) to run it"
    );
}

/// A fresh PostgreSQL database, or `None` when `RAPPORT_TEST_POSTGRES_URL` is unset.
pub use rapport::store::fresh_postgres_url;

/// A loopback port nobody listens on.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts the server on the example project of this repository.
pub async fn spawn_app(db: Db) -> Option<TestApp> {
    spawn_app_with(db, &[]).await
}

/// Starts the server with extra `RAPPORT_*` settings.
pub async fn spawn_app_with(db: Db, vars: &[(&str, &str)]) -> Option<TestApp> {
    spawn_app_in(db, Path::new(env!("CARGO_MANIFEST_DIR")), vars).await
}

/// Starts the server on the project in `dir` with extra settings.
pub async fn spawn_app_in(db: Db, dir: &Path, vars: &[(&str, &str)]) -> Option<TestApp> {
    spawn_app_at(db, dir, vars, test_now()).await
}

/// Starts the server with its scheduler's clock standing at `now`.
pub async fn spawn_app_at(
    db: Db,
    dir: &Path,
    vars: &[(&str, &str)],
    now: chrono::DateTime<chrono::Utc>,
) -> Option<TestApp> {
    if let Ok(filter) = std::env::var("TEST_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_test_writer()
            .try_init();
    }
    let tmp = tempfile::tempdir().expect("temp dir");
    let database_url = match db {
        Db::Sqlite => format!("sqlite://{}", tmp.path().join("rapport.db").display()),
        Db::Postgres => fresh_postgres_url().await?,
    };
    let outbox = tmp.path().join("outbox");
    let mut env: HashMap<String, String> = HashMap::from([
        ("RAPPORT_OUTBOX_DIR".into(), outbox.display().to_string()),
        ("RAPPORT_SECRET".into(), SECRET.into()),
        ("RAPPORT_SUBSCRIBE_LIMIT".into(), "off".into()),
        ("RAPPORT_ADMIN_TOKEN".into(), ADMIN_TOKEN.into()),
    ]);
    for (k, v) in vars {
        if v.is_empty() {
            env.remove(*k);
        }
    }
    for (k, v) in vars.iter().filter(|(_, v)| !v.is_empty()) {
        env.insert(k.to_string(), v.to_string());
    }
    let mut settings =
        Settings::from_lookup(database_url.clone(), |k| env.get(k).cloned()).expect("settings");
    let clock = rapport::clock::Clock::manual(now);
    settings.clock = clock.clone();
    let app = Application::build(settings, dir, "127.0.0.1:0".parse().unwrap())
        .await
        .expect("server starts");
    let address = format!("http://{}", app.address());
    let bounce = app.bounce_address();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(app.run_until(async move {
        let _ = rx.await;
    }));
    let store = Store::connect(&database_url).await.expect("test store");
    let database_url = database_url.clone();
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .user_agent(BROWSER)
        .build()
        .unwrap();
    Some(TestApp {
        address,
        client,
        store,
        outbox,
        signer: Signer::new(SECRET.as_bytes()),
        db,
        database_url,
        clock,
        bounce,
        _tmp: tmp,
        shutdown: Some(tx),
    })
}

/// `POST /api/v1/profiles` with `body` and an API token: (status, JSON body).
pub async fn create_profile(
    app: &TestApp,
    token: &str,
    body: serde_json::Value,
) -> (u16, serde_json::Value) {
    let r = app
        .client
        .post(app.url("/api/v1/profiles"))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (
        status,
        serde_json::from_str(&r.text().await.unwrap()).unwrap(),
    )
}

/// A response's status and body.
pub struct Page {
    pub status: u16,
    pub body: String,
    pub headers: reqwest::header::HeaderMap,
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        if path.starts_with("http") {
            path.to_string()
        } else {
            format!("{}{path}", self.address)
        }
    }

    pub async fn get(&self, path: &str) -> Page {
        let r = self.client.get(self.url(path)).send().await.expect("GET");
        page(r).await
    }

    /// A `/admin` page or report, with the admin token; its body.
    pub async fn admin(&self, path: &str) -> String {
        let r = self
            .client
            .get(self.url(path))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .expect("GET /admin");
        assert_eq!(r.status(), 200, "{path}");
        r.text().await.unwrap()
    }

    /// Posts form pairs, URL-encoded like a browser does.
    pub async fn post_form(&self, path: &str, pairs: &[(&str, &str)]) -> Page {
        let body: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish();
        let r = self
            .client
            .post(self.url(path))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("user-agent", "rapport-tests/1.0")
            .body(body)
            .send()
            .await
            .expect("POST");
        page(r).await
    }

    /// Opts in `email` with consent and the given extra fields.
    pub async fn subscribe(&self, email: &str, extra: &[(&str, &str)]) -> Page {
        let mut pairs = vec![("email", email), ("consent", "yes")];
        pairs.extend_from_slice(extra);
        self.post_form("/subscribe", &pairs).await
    }

    /// Every message in the outbox, oldest first, as (raw text, parsed).
    pub fn outbox_messages(&self) -> Vec<Mail> {
        read_messages(&self.outbox)
    }

    /// Waits until the outbox holds `n` messages and returns them.
    pub async fn wait_for_messages(&self, n: usize) -> Vec<Mail> {
        for _ in 0..400 {
            let m = self.outbox_messages();
            if m.len() >= n {
                return m;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "expected {n} messages in the outbox, found {}",
            self.outbox_messages().len()
        );
    }

    /// Runs the `rapport` binary on this app's database and the example project; returns
    /// (exit code, stdout, stderr). It blocks its thread until the command ends, so every
    /// test runs on a multi-thread runtime: on a current-thread one the app's own tasks
    /// (the send recorder halfway through a transaction, say) would stop with it, and a
    /// CLI writing to SQLite would wait on the app's write lock until the busy timeout.
    pub fn cli(&self, args: &[&str]) -> (i32, String, String) {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_rapport"))
            .args([
                "--dir",
                env!("CARGO_MANIFEST_DIR"),
                "--database-url",
                &self.database_url,
            ])
            .args(args)
            .env("RAPPORT_SECRET", SECRET)
            .output()
            .expect("run rapport");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Waits for a message that `pred` accepts among those after the first `skip`.
    pub async fn wait_for_new_mail(&self, skip: usize, pred: impl Fn(&Mail) -> bool) -> Mail {
        for _ in 0..400 {
            if let Some(m) = self
                .outbox_messages()
                .into_iter()
                .skip(skip)
                .find(|m| pred(m))
            {
                return m;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "no such new message in the outbox; subjects: {:?}",
            self.outbox_messages()
                .iter()
                .map(|m| m.subject.clone())
                .collect::<Vec<_>>()
        );
    }

    /// Waits for an outbox message that `pred` accepts.
    pub async fn wait_for_mail(&self, pred: impl Fn(&Mail) -> bool) -> Mail {
        for _ in 0..400 {
            if let Some(m) = self.outbox_messages().into_iter().find(|m| pred(m)) {
                return m;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "no such message in the outbox; subjects: {:?}",
            self.outbox_messages()
                .iter()
                .map(|m| m.subject.clone())
                .collect::<Vec<_>>()
        );
    }

    /// Subscribes and confirms `email`; returns the profile-centre path.
    pub async fn subscribed(&self, email: &str, extra: &[(&str, &str)]) -> String {
        let before = self.outbox_messages().len();
        assert_eq!(self.subscribe(email, extra).await.status, 200);
        // The confirmation leaves through the queue, maybe after other mail (a welcome).
        let to = email.to_lowercase();
        let confirm = self
            .wait_for_new_mail(before, |m| {
                m.to.contains(&to) && m.link("/confirm/").is_some()
            })
            .await
            .link("/confirm/")
            .expect("confirm link");
        let page = self.get(&confirm).await;
        assert_eq!(page.status, 200, "{}", page.body);
        profile_path(&page.body).expect("profile-centre form on the confirmation page")
    }
}

async fn page(r: reqwest::Response) -> Page {
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let body = r.text().await.unwrap_or_default();
    Page {
        status,
        body,
        headers,
    }
}

/// A received message, decoded.
#[derive(Debug, Clone)]
pub struct Mail {
    pub raw: String,
    pub to: String,
    pub subject: String,
    pub html: String,
    pub text: String,
    pub headers: Vec<(String, String)>,
}

impl Mail {
    /// Parses one RFC 5322 message.
    pub fn parse(raw: &[u8]) -> Mail {
        let parsed = mailparse::parse_mail(raw).expect("a MIME message");
        let header = |name: &str| {
            use mailparse::MailHeaderMap;
            parsed.headers.get_first_value(name).unwrap_or_default()
        };
        let mut html = String::new();
        let mut text = String::new();
        for part in parsed.subparts.iter() {
            match part.ctype.mimetype.as_str() {
                "text/html" => html = part.get_body().unwrap(),
                "text/plain" => text = part.get_body().unwrap(),
                _ => {}
            }
        }
        Mail {
            raw: String::from_utf8_lossy(raw).into_owned(),
            to: header("To").to_lowercase(),
            subject: header("Subject"),
            html,
            text,
            headers: parsed
                .headers
                .iter()
                .map(|h| (h.get_key(), h.get_value()))
                .collect(),
        }
    }

    /// The first link in the HTML part whose URL contains `marker`, as a full URL.
    pub fn link(&self, marker: &str) -> Option<String> {
        // Attribute values as a browser reads them (Handlebars escapes `=` as `&#x3D;`).
        let html = html_escape::decode_html_entities(&self.html);
        let start = html.find(marker)?;
        let begin = html[..start].rfind("href=\"")? + 6;
        let end = begin + html[begin..].find('"')?;
        Some(html[begin..end].to_string())
    }
}

/// Reads every `.eml` file in `dir`, oldest first.
pub fn read_messages(dir: &Path) -> Vec<Mail> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<(std::time::SystemTime, PathBuf)> = entries
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "eml"))
        .map(|e| {
            (
                e.metadata()
                    .and_then(|m| m.modified())
                    .unwrap_or(std::time::UNIX_EPOCH),
                e.path(),
            )
        })
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|(_, p)| Mail::parse(&std::fs::read(p).unwrap()))
        .collect()
}

/// The profile-centre form action (`/profile/TOKEN`) on a page.
pub fn profile_path(body: &str) -> Option<String> {
    let start = body.find("action=\"/profile/")? + 8;
    let end = start + body[start..].find('"')?;
    Some(body[start..end].to_string())
}

/// Generates a SQLite and a PostgreSQL test for each `async fn NAME(app: TestApp)`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let app = $crate::common::spawn_app($crate::common::Db::Sqlite).await.expect("sqlite app");
                    super::$name(app).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                #[cfg_attr(not(rapport_pg), ignore = "PostgreSQL half skipped: set RAPPORT_TEST_POSTGRES_URL to run it")]
                async fn $name() {
                    match $crate::common::spawn_app($crate::common::Db::Postgres).await {
                        Some(app) => super::$name(app).await,
                        None => $crate::common::skip_postgres(stringify!($name)),
                    }
                }
            )*
        }
    };
}

/// Like `on_both_backends!` for tests that start their own server (`async fn NAME(db: Db)`).
#[macro_export]
macro_rules! on_both_databases {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::common::Db::Sqlite).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                #[cfg_attr(not(rapport_pg), ignore = "PostgreSQL half skipped: set RAPPORT_TEST_POSTGRES_URL to run it")]
                async fn $name() {
                    super::$name($crate::common::Db::Postgres).await;
                }
            )*
        }
    };
}

/// A direct connection to a test database, for setting up states the product never makes
/// on its own (moving a retry's due time to now).
pub async fn raw_pool(database_url: &str) -> sqlx::AnyPool {
    sqlx::any::install_default_drivers();
    sqlx::AnyPool::connect(database_url)
        .await
        .expect("raw pool")
}

/// Waits (up to twenty seconds) until `count_sql`, a `SELECT COUNT(*)`, counts `n`: for what
/// the server writes off the request path (hits, webhook attempts). Panics when it never
/// does, naming the query and the last count.
pub async fn wait_for_count(pool: &sqlx::AnyPool, count_sql: &str, n: i64) {
    let mut last = 0;
    for _ in 0..800 {
        last = sqlx::query_scalar(count_sql).fetch_one(pool).await.unwrap();
        if last == n {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("{count_sql} counted {last}, not {n}, after twenty seconds");
}

/// A copy of this repository's example project in a temporary folder.
pub fn example_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    copy_tree(&root.join("segments"), &dir.path().join("segments"));
    copy_tree(&root.join("templates"), &dir.path().join("templates"));
    copy_tree(&root.join("content"), &dir.path().join("content"));
    std::fs::copy(
        root.join("campaigns.toml"),
        dir.path().join("campaigns.toml"),
    )
    .unwrap();
    dir
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            copy_tree(&p, &to.join(e.file_name()));
        } else {
            std::fs::copy(&p, to.join(e.file_name())).unwrap();
        }
    }
}
