//! The `rapport` binary under stress: `kill -9` in the middle of a run and a restart (the
//! run finishes, nobody skipped, nobody twice), SIGTERM draining in-flight sends, and two
//! `serve` processes on one PostgreSQL database (the monthly run created once, each
//! recipient served once).

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::smtp::SmtpSink;
use rapport::profile::{Answers, Email, Status};
use rapport::store::Store;

const BIN: &str = env!("CARGO_BIN_EXE_rapport");

use common::free_port;

fn serve(dir: &Path, db: &str, vars: &[(&str, &str)]) -> Child {
    let port = free_port();
    let mut cmd = Command::new(BIN);
    cmd.arg("--dir").arg(dir).args([
        "--database-url",
        db,
        "serve",
        "--bind",
        &format!("127.0.0.1:{port}"),
    ]);
    cmd.env("RAPPORT_SECRET", common::SECRET)
        .env("RAPPORT_LOG", "warn");
    for (k, v) in vars {
        cmd.env(k, v);
    }
    cmd.stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

async fn subscribers(db: &str, prefix: &str, n: usize) {
    let store = Store::connect(db).await.unwrap();
    store.migrate().await.unwrap();
    let rows: Vec<(Email, Answers)> = (0..n)
        .map(|i| {
            (
                Email::parse(&format!("{prefix}{i}@example.com")).unwrap(),
                Answers::default(),
            )
        })
        .collect();
    store
        .insert_profiles(&rows, Status::Subscribed, "test")
        .await
        .unwrap();
}

fn run_campaign(dir: &Path, db: &str, campaign: &str) -> String {
    let out = Command::new(BIN)
        .arg("--dir")
        .arg(dir)
        .args(["--database-url", db, "run", campaign])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

async fn wait_until(what: &str, secs: u64, mut check: impl FnMut() -> bool) {
    for _ in 0..secs * 20 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_run_then_restart_finishes_the_run_once_each() {
    let Some(sink) = SmtpSink::start(&[]) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", tmp.path().join("r.db").display());
    subscribers(&db, "k", 60).await;
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = run_campaign(root, &db, "newsletter");
    assert!(out.contains("60 recipient(s)"), "{out}");
    let vars = [
        ("RAPPORT_SMTP_URL", sink.url()),
        ("RAPPORT_SEND_RATE", "20".into()),
        ("RAPPORT_DELIVERY_LEASE", "2s".into()),
    ];
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut first = serve(root, &db, &vars);
    // Kill mid-run, outside the window between an SMTP 250 and its database write
    // (documented in delivery::worker; a kill inside it would resend those messages, and it
    // grows when the machine is starved of CPU, as under the whole suite). The process is
    // frozen first (SIGSTOP), so that what the sink has and what is recorded cannot move
    // while they are compared; it is killed only when every message the sink has is
    // recorded, and let go on otherwise.
    let raw = common::raw_pool(&db).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    let signal = |sig: &str, pid: u32| {
        Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()
            .unwrap()
    };
    loop {
        assert!(
            std::time::Instant::now() < deadline,
            "the first process never sent 15 messages"
        );
        if sink.messages().len() >= 15 {
            signal("-STOP", first.id());
            // Let the sink finish writing a message whose 250 it has just sent.
            tokio::time::sleep(Duration::from_millis(100)).await;
            let recorded: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM deliveries WHERE status = 'sent'")
                    .fetch_one(&raw)
                    .await
                    .unwrap();
            if recorded as usize == sink.messages().len() {
                break;
            }
            signal("-CONT", first.id());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    first.kill().unwrap(); // SIGKILL
    first.wait().unwrap();
    let before = sink.messages().len();
    assert!(before < 60, "killed mid-run ({before} sent)");
    let mut second = serve(root, &db, &vars);
    wait_until("the rest after the restart", 90, || {
        sink.messages().len() >= 60
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    second.kill().unwrap();
    second.wait().unwrap();
    let per = sink.per_recipient();
    assert_eq!(per.len(), 60, "nobody skipped");
    let twice: Vec<_> = per.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "nobody twice: {twice:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_sends() {
    let Some(sink) = SmtpSink::start(&[]) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", tmp.path().join("r.db").display());
    subscribers(&db, "t", 40).await;
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    run_campaign(root, &db, "newsletter");
    let vars = [
        ("RAPPORT_SMTP_URL", sink.url()),
        ("RAPPORT_SEND_RATE", "20".into()),
    ];
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let child = serve(root, &db, &vars);
    wait_until("the first messages", 20, || sink.messages().len() >= 5).await;
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let mut child = child;
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success(), "exits cleanly on SIGTERM: {status:?}");
    // Every claimed delivery was sent and recorded before exit: none left in `sending`.
    let store = Store::connect(&db).await.unwrap();
    let runs = store.runs_of("newsletter").await.unwrap();
    let p = store.run_progress(runs[0].0).await.unwrap();
    assert_eq!(p.sending, 0, "{p:?}");
    assert_eq!(
        p.sent as usize,
        sink.messages().len(),
        "what was sent is recorded: {p:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(rapport_pg),
    ignore = "PostgreSQL half skipped: set RAPPORT_TEST_POSTGRES_URL to run it"
)]
async fn two_instances_on_one_postgres_create_the_run_once_and_send_once() {
    let Some(sink) = SmtpSink::start(&[]) else {
        return;
    };
    let Some(db) = common::fresh_postgres_url().await else {
        return;
    };
    subscribers(&db, "two", 80).await;
    // A project whose newsletter came due on 1 January, with a grace window that still
    // covers it: both instances find it due at start.
    let tmp = common::example_copy();
    let path = tmp.path().join("campaigns.toml");
    let campaigns = std::fs::read_to_string(&path)
        .unwrap()
        .replace("0 0 9 1 * *", "0 0 0 1 1 *");
    std::fs::write(&path, campaigns).unwrap();
    // rapport has known this schedule since 1970, so the occurrence is one it missed.
    sqlx::query("INSERT INTO schedules_seen (campaign, schedule, first_seen_at) VALUES ('newsletter', '0 0 0 1 1 *', 0)")
        .execute(&common::raw_pool(&db).await)
        .await
        .unwrap();
    let vars = [
        ("RAPPORT_SMTP_URL", sink.url()),
        ("RAPPORT_SCHEDULE_GRACE", "400d".into()),
    ];
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut a = serve(tmp.path(), &db, &vars);
    let mut b = serve(tmp.path(), &db, &vars);
    wait_until("80 messages", 30, || sink.messages().len() >= 80).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    a.kill().unwrap();
    b.kill().unwrap();
    a.wait().unwrap();
    b.wait().unwrap();
    let per = sink.per_recipient();
    assert_eq!(per.len(), 80);
    assert!(
        per.values().all(|n| *n == 1),
        "each recipient exactly once: {per:?}"
    );
    let store = Store::connect(&db).await.unwrap();
    let runs = store.runs_of("newsletter").await.unwrap();
    assert_eq!(runs.len(), 1, "the run is created once: {runs:?}");
    let year = chrono::Datelike::year(&chrono::Utc::now());
    assert_eq!(runs[0].1, format!("{year}-01-01T00:00:00Z"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clicks_received_before_sigterm_are_all_recorded() {
    let tmp = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", tmp.path().join("r.db").display());
    let store = Store::connect(&db).await.unwrap();
    store.migrate().await.unwrap();
    let learner = Answers {
        engagement: Some("learner".into()),
        employees: Some(5),
        ..Answers::default()
    };
    store
        .insert_profiles(
            &[(Email::parse("clk@example.com").unwrap(), learner)],
            Status::Subscribed,
            "test",
        )
        .await
        .unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    run_campaign(root, &db, "newsletter");
    let outbox = tmp.path().join("outbox");
    let port = free_port();
    let mut cmd = Command::new(BIN);
    cmd.arg("--dir").arg(root).args([
        "--database-url",
        &db,
        "serve",
        "--bind",
        &format!("127.0.0.1:{port}"),
    ]);
    cmd.env("RAPPORT_OUTBOX_DIR", &outbox)
        .env("RAPPORT_LOG", "warn")
        .env("RAPPORT_PUBLIC_URL", format!("http://127.0.0.1:{port}"));
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut mail = None;
    wait_until("the newsletter in the outbox", 30, || {
        mail = common::read_messages(&outbox).into_iter().next();
        mail.is_some()
    })
    .await;
    let link = mail.unwrap().link("/c/").expect("a tracked link");
    let raw = common::raw_pool(&db).await;
    sqlx::query("UPDATE deliveries SET sent_at = sent_at - 3600")
        .execute(&raw)
        .await
        .unwrap();
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let browser = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";
    let clicks = (0..300).map(|_| {
        let (client, link) = (client.clone(), link.clone());
        async move {
            client
                .get(link)
                .header("user-agent", browser)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    });
    let statuses = futures_util::future::join_all(clicks).await;
    assert!(statuses.iter().all(|s| *s == 302));
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let mut child = child;
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success());
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM events WHERE kind = 'click' AND delivery_id IS NOT NULL",
    )
    .fetch_one(&raw)
    .await
    .unwrap();
    assert_eq!(n, 300, "every click answered before the stop is recorded");
}

/// The example project with one `[[webhook]]` for `subscribed` events to `url`, and a store
/// on `db` that queues for it, with `n` people subscribed through it (one webhook each).
async fn queued_webhooks(db: &str, url: &str, n: usize) -> tempfile::TempDir {
    let dir = common::example_copy();
    let toml = dir.path().join("campaigns.toml");
    let mut s = std::fs::read_to_string(&toml).unwrap();
    s.push_str(&format!(
        "\n[[webhook]]\nurl = \"{url}\"\nevents = [\"subscribed\"]\nsecret_env = \"HOOK_SECRET\"\n"
    ));
    std::fs::write(&toml, s).unwrap();
    let site = rapport::site::Site::load(dir.path()).unwrap();
    let store = Store::open(db).await.unwrap();
    store.set_hook_routes(rapport::webhook::routes(&site.project));
    let meta = rapport::store::ConsentMeta {
        source: "test".into(),
        ..Default::default()
    };
    for i in 0..n {
        let email = Email::parse(&format!("hook{i}@example.com")).unwrap();
        store
            .subscribe_with_consent(&email, &Answers::default(), &meta)
            .await
            .unwrap()
            .expect("a new person");
    }
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_queued_before_kill_9_are_all_sent_after_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", tmp.path().join("w.db").display());
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/hooks");
    let dir = queued_webhooks(&db, &url, 30).await;
    let vars = [
        ("HOOK_SECRET", "s3cret"),
        ("RAPPORT_WEBHOOK_BACKOFF", "1s"),
        ("RAPPORT_DELIVERY_LEASE", "2s"),
    ];
    // The endpoint is down: the first process tries, fails, and is killed.
    let mut first = serve(dir.path(), &db, &vars);
    let raw = common::raw_pool(&db).await;
    common::wait_for_count(
        &raw,
        "SELECT COUNT(*) FROM webhook_deliveries WHERE attempts > 0",
        30,
    )
    .await;
    first.kill().unwrap(); // SIGKILL
    first.wait().unwrap();
    let receiver = common::hooks::Receiver::start(port, false).await;
    let mut second = serve(dir.path(), &db, &vars);
    let distinct = |s: &[common::hooks::Seen]| {
        s.iter()
            .map(|s| s.event_id.clone())
            .collect::<std::collections::BTreeSet<_>>()
            .len()
    };
    receiver.wait_for(60, |s| distinct(s) == 30).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    second.kill().unwrap();
    second.wait().unwrap();
    let seen = receiver.seen();
    assert_eq!(distinct(&seen), 30);
    for s in &seen {
        assert!(common::hooks::signature_valid(
            "s3cret",
            &s.signature,
            &s.body
        ));
    }
    let sent: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM webhook_deliveries WHERE status = 'sent'")
            .fetch_one(&raw)
            .await
            .unwrap();
    assert_eq!(sent, 30);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(rapport_pg),
    ignore = "PostgreSQL half skipped: set RAPPORT_TEST_POSTGRES_URL to run it"
)]
async fn two_instances_on_one_postgres_send_each_webhook_once() {
    let Some(db) = common::fresh_postgres_url().await else {
        return;
    };
    let receiver = common::hooks::Receiver::start(0, false).await;
    let dir = queued_webhooks(&db, &receiver.url, 300).await;
    let vars = [("HOOK_SECRET", "s3cret")];
    let mut a = serve(dir.path(), &db, &vars);
    let mut b = serve(dir.path(), &db, &vars);
    receiver.wait_for(60, |s| s.len() >= 300).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    a.kill().unwrap();
    b.kill().unwrap();
    a.wait().unwrap();
    b.wait().unwrap();
    let seen = receiver.seen();
    let ids: std::collections::BTreeSet<_> = seen.iter().map(|s| s.event_id.clone()).collect();
    assert_eq!(
        (seen.len(), ids.len()),
        (300, 300),
        "each event sent once, by one of the two"
    );
}
