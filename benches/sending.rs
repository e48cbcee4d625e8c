//! End-to-end sending against Postfix's smtp-sink on loopback, beside the raw rate of bare
//! lettre connections to the same sink measured in the same run.
//!
//! 1. raw: 8/16/32 lettre `AsyncSmtpConnection`s (TCP_NODELAY) sending one prebuilt
//!    newsletter-sized message as fast as the sink takes it, 3 s each; then the same at the
//!    pool size over rapport's `SmtpStream`, which pipelines as rapport's pool does;
//! 2. end to end: PROFILES (default 100,000) subscribed profiles in SQLite, `rapport run
//!    newsletter` (three sections, personalised, CSS inlined, text part), then a release
//!    `rapport serve` sends them all: messages/s from starting `serve` (process start,
//!    migrations check and template loading included) and from the first message accepted,
//!    each to the last delivery recorded, the serve process's peak RSS (VmHWM), and the CPU
//!    time per message of `serve` and of the sink; then the raw rate at the pool size
//!    again, and the ratio of end to end to the mean of the two raw rates (this machine's
//!    speed drifts between runs), and the same for the pipelined raw rate;
//! 3. latency: 200 people subscribe and confirm over HTTP; time from the form's response
//!    to the confirmation landing at the sink (it goes through the delivery queue), and
//!    from the confirmation page's response to the welcome landing there (p50, p99).
//!
//! With `FLOOD=N`, `serve` also runs its bounce listener and N connections send it junk
//! (64 KiB of noise per message, one after another) for the whole end-to-end run, to show
//! whether a flood of junk slows sending.
//!
//! Run: `cargo build --release && cargo bench --bench sending` (needs smtp-sink).

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use lettre::transport::smtp::client::{AsyncSmtpConnection, AsyncTokioStream};
use lettre::transport::smtp::extension::ClientId;
use rapport::profile::{Answers, Email, Status};
use rapport::store::Store;

/// Messages/s of `conns` bare lettre connections sending `message` for 3 s; `pipelined`
/// puts rapport's stream (corking, RFC 2920 pipelining) under each connection.
async fn raw_rate(port: u16, conns: usize, message: &lettre::Message, pipelined: bool) -> f64 {
    let bytes = message.formatted();
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let bytes = bytes.clone();
        let envelope = message.envelope().clone();
        tasks.push(tokio::spawn(async move {
            let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .unwrap();
            tcp.set_nodelay(true).unwrap();
            let stream: Box<dyn AsyncTokioStream> = if pipelined {
                Box::new(rapport::delivery::SmtpStream::new(tcp))
            } else {
                Box::new(tcp)
            };
            let mut c = AsyncSmtpConnection::connect_with_transport(
                stream,
                &ClientId::Domain("contoso.example".into()),
            )
            .await
            .unwrap();
            let mut n = 0u64;
            while Instant::now() < deadline {
                c.send(&envelope, &bytes).await.unwrap();
                n += 1;
            }
            n
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    total as f64 / 3.0
}

/// Peak resident memory of a process, in MB (VmHWM).
fn peak_rss_mb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

/// Sends junk to the bounce listener on `port` until `on` turns false: 64 KiB messages of
/// noise to the bounce domain, one after another, counting those taken.
async fn junk_flood(
    port: u16,
    seed: usize,
    on: std::sync::Arc<std::sync::atomic::AtomicBool>,
    taken: std::sync::Arc<std::sync::atomic::AtomicU64>,
) {
    use std::sync::atomic::Ordering;
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let stream = loop {
        match tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
            Ok(s) => break s,
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    };
    let mut r = BufReader::new(stream);
    let mut line = String::new();
    // Any failure ends this connection's flood (serve stops at the end of the run).
    let mut say = async |r: &mut BufReader<tokio::net::TcpStream>, what: &[u8]| {
        line.clear();
        r.get_mut().write_all(what).await.is_ok()
            && r.read_line(&mut line).await.is_ok()
            && (line.starts_with('2') || line.starts_with('3'))
    };
    say(&mut r, b"EHLO junk.example\r\n").await;
    let mut body = format!("Subject: junk {seed}\r\nContent-Type: text/plain\r\n\r\n").into_bytes();
    let mut x = seed as u64 + 1;
    while body.len() < 65_536 {
        for _ in 0..76 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            body.push(b'!' + (x % 90) as u8);
        }
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b".\r\n");
    while on.load(Ordering::Relaxed) {
        let ok = say(&mut r, b"MAIL FROM:<>\r\n").await
            && say(&mut r, b"RCPT TO:<fbl@bounces.example.com>\r\n").await
            && say(&mut r, b"DATA\r\n").await
            && say(&mut r, &body).await;
        if !ok {
            return;
        }
        taken.fetch_add(1, Ordering::Relaxed);
    }
}

#[tokio::main]
async fn main() {
    let root = common::root();
    let bin = common::release_binary();
    let n: usize = common::knob("PROFILES", 100_000);
    let pool: usize = common::knob("POOL", 16);
    // Connections sending junk to the bounce listener during the end-to-end run (0: none).
    let flood: usize = common::knob("FLOOD", 0);
    let port = common::free_port();
    let _sink = common::sink(port, None);

    // A message of the size rapport sends: the example newsletter for one person.
    let site = rapport::site::Site::load(root).unwrap();
    let campaign = site.campaign("newsletter").unwrap();
    let profile = rapport::profile::Profile {
        id: 1,
        email: Email::parse("ann@example.com").unwrap(),
        status: Status::Subscribed,
        answers: Answers {
            name: Some("Ann Lee".into()),
            ..Answers::default()
        },
        confirm_nonce: None,
        pending_nonce: None,
        created_at: 0,
        updated_at: 0,
    };
    let signer = rapport::track::Signer::new(b"bench secret bench secret bench!");
    let mailer = rapport::mail::Mailer::new(signer, "https://news.example.com");
    let person = mailer.person(
        &site,
        campaign,
        &profile,
        &rapport::segment::NoFacts,
        rapport::track::Origin::Campaign("newsletter"),
        1_800_000_000,
        &[],
    );
    let msg = mailer
        .campaign(
            &site,
            campaign,
            &person,
            &mut rapport::render::KeepLinks::default(),
            rapport::mail::Sending::Preview,
            true,
        )
        .unwrap()
        .message;
    println!("message size: {} bytes", msg.formatted().len());
    let mut raw_at_pool = 0.0;
    for conns in [8, 16, 32] {
        let rate = raw_rate(port, conns, &msg, false).await;
        if conns == pool {
            raw_at_pool = rate;
        }
        println!("raw lettre, {conns} connections: {rate:.0} msg/s");
    }
    // rapport pipelines where the server offers it (smtp-sink does); bare lettre does not.
    // The same bare connections over rapport's stream give the stricter reference.
    let piped_before = raw_rate(port, pool, &msg, true).await;
    println!(
        "raw lettre over rapport's pipelining stream, {pool} connections: {piped_before:.0} msg/s"
    );

    // End to end.
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("bench.db").display());
    let store = Store::open(&db).await.unwrap();
    let engagements = ["learner", "connector", "collaborator"];
    common::people(&store, n, |i| Answers {
        name: Some(format!("Person{i} Example")),
        employees: Some((i % 200) as i64 + 1),
        engagement: Some(engagements[i % 3].to_string()),
        ..Answers::default()
    })
    .await;
    print!("{}", common::rapport(root, &db, &["run", "newsletter"]));
    let run_id = store.runs_of("newsletter").await.unwrap()[0].0;
    let sink_cpu_before = common::cpu_seconds(_sink.0.id());
    let bind = format!("127.0.0.1:{}", common::free_port());
    let bounce_port = common::free_port();
    let t = Instant::now();
    let mut cmd = Command::new(&bin);
    cmd.arg("--dir")
        .arg(root)
        .args(["--database-url", &db, "serve", "--bind", &bind])
        .env("RAPPORT_SMTP_URL", format!("smtp://127.0.0.1:{port}"))
        .env("RAPPORT_SMTP_POOL", pool.to_string())
        .env("RAPPORT_LOG", "error")
        .stdout(Stdio::null());
    if flood > 0 {
        cmd.env("RAPPORT_BOUNCE_DOMAIN", "bounces.example.com")
            .env("RAPPORT_BOUNCE_BIND", format!("127.0.0.1:{bounce_port}"));
    }
    let serve = common::Kill(cmd.spawn().unwrap());
    let pid = serve.0.id();
    let flooding = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(flood > 0));
    let flooded = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    for c in 0..flood {
        tokio::spawn(junk_flood(
            bounce_port,
            c,
            flooding.clone(),
            flooded.clone(),
        ));
    }
    let watch = common::pool(&db).await;
    let mut first_sent: Option<Instant> = None;
    let p = common::finish_run(&store, &watch, run_id, || first_sent = Some(Instant::now())).await;
    flooding.store(false, std::sync::atomic::Ordering::Relaxed);
    if flood > 0 {
        let n = flooded.load(std::sync::atomic::Ordering::Relaxed);
        println!(
            "junk flood: {n} messages of 64 KiB ({:.0} MB) taken by the bounce listener over {flood} connections during the run",
            n as f64 * 65_536.0 / 1e6
        );
    }
    let serve_cpu = common::cpu_seconds(pid);
    let sink_cpu = common::cpu_seconds(_sink.0.id()) - sink_cpu_before;
    let secs = t.elapsed().as_secs_f64();
    let sending = first_sent.map_or(secs, |f| f.elapsed().as_secs_f64());
    println!(
        "end to end: {} sent, {} failed in {secs:.1} s from starting serve: {:.0} msg/s; {:.0} msg/s from the first message accepted (pool {pool}); serve peak RSS {:.1} MB",
        p.sent,
        p.failed,
        p.sent as f64 / secs,
        p.sent as f64 / sending,
        peak_rss_mb(pid)
    );
    println!(
        "CPU per message: rapport serve {:.0} µs, smtp-sink {:.0} µs",
        serve_cpu * 1e6 / p.sent as f64,
        sink_cpu * 1e6 / p.sent as f64
    );
    // The machine's speed can drift over a run (shared hosts): the raw rate is
    // measured again right after, and the ratio is taken to the mean of both.
    drop(serve);
    if raw_at_pool > 0.0 {
        let after = raw_rate(port, pool, &msg, false).await;
        let mean = (raw_at_pool + after) / 2.0;
        println!(
            "raw lettre, {pool} connections, after the run: {after:.0} msg/s; end to end / raw at {pool} (mean of before and after): {:.2}",
            p.sent as f64 / sending / mean
        );
    }
    let piped_after = raw_rate(port, pool, &msg, true).await;
    println!(
        "raw lettre over rapport's stream, {pool} connections, after the run: {piped_after:.0} msg/s; end to end / that (mean of before and after): {:.2}",
        p.sent as f64 / sending / ((piped_before + piped_after) / 2.0)
    );

    // Welcome latency: confirmation page answered -> welcome accepted by the sink (it
    // writes each message once the transaction is over, i.e. at its 250).
    let dump = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        dump.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let wport = common::free_port();
    let _wsink = common::sink(wport, Some(dump.path()));
    let bind = format!("127.0.0.1:{}", common::free_port());
    let _serve = common::Kill(
        Command::new(&bin)
            .arg("--dir")
            .arg(root)
            .args(["--database-url", &db, "serve", "--bind", &bind])
            .env("RAPPORT_SMTP_URL", format!("smtp://127.0.0.1:{wport}"))
            .env("RAPPORT_SUBSCRIBE_LIMIT", "off")
            .env("RAPPORT_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let files = |dir: &Path| -> Vec<std::path::PathBuf> {
        std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .collect()
    };
    // A person's browser: a request without a browser's user agent counts as a link
    // scanner, which is shown a button instead of being confirmed.
    let client = reqwest::Client::builder()
        .user_agent("Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0")
        .build()
        .unwrap();
    let mut latencies = Vec::new();
    let mut confirm_latencies = Vec::new();
    for i in 0..200 {
        let email = format!("w{i}@latency.example");
        let known: std::collections::HashSet<_> = files(dump.path()).into_iter().collect();
        client
            .post(format!("http://{bind}/subscribe"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("email={email}&name=Wil&consent=yes"))
            .send()
            .await
            .unwrap();
        let t_sub = Instant::now();
        let link = loop {
            let found = files(dump.path())
                .into_iter()
                .filter(|p| !known.contains(p))
                .filter_map(|p| std::fs::read(p).ok())
                .find_map(|raw| {
                    let mail = mailparse::parse_mail(&raw).ok()?;
                    let html = mail
                        .subparts
                        .iter()
                        .find(|p| p.ctype.mimetype == "text/html")?
                        .get_body()
                        .ok()?;
                    if !html.contains(&email) {
                        return None;
                    }
                    let start = html.find("/confirm/")?;
                    let end = start + html[start..].find('"')?;
                    Some(html[start..end].to_string())
                });
            if let Some(l) = found {
                confirm_latencies.push(t_sub.elapsed());
                break l;
            }
            assert!(
                t_sub.elapsed() < Duration::from_secs(10),
                "confirmation never came"
            );
            tokio::time::sleep(Duration::from_micros(500)).await;
        };
        let before: std::collections::HashSet<_> = files(dump.path()).into_iter().collect();
        client
            .get(format!("http://{bind}{link}"))
            .send()
            .await
            .unwrap();
        let t0 = Instant::now();
        loop {
            let welcome = files(dump.path())
                .into_iter()
                .filter(|p| !before.contains(p))
                .any(|p| std::fs::read_to_string(p).is_ok_and(|m| m.contains("Subject: Welcome")));
            if welcome {
                latencies.push(t0.elapsed());
                break;
            }
            assert!(t0.elapsed() < Duration::from_secs(10), "welcome never came");
            tokio::time::sleep(Duration::from_micros(500)).await;
        }
    }
    latencies.sort();
    confirm_latencies.sort();
    println!(
        "confirmation latency (form page answered -> confirmation at the SMTP sink, through the queue), 200 people: p50 {:.1} ms, p99 {:.1} ms",
        confirm_latencies[confirm_latencies.len() / 2].as_secs_f64() * 1000.0,
        confirm_latencies[confirm_latencies.len() * 99 / 100].as_secs_f64() * 1000.0
    );
    println!(
        "welcome latency (confirmation page answered -> welcome at the SMTP sink), 200 people: p50 {:.1} ms, p99 {:.1} ms",
        latencies[latencies.len() / 2].as_secs_f64() * 1000.0,
        latencies[latencies.len() * 99 / 100].as_secs_f64() * 1000.0
    );
}
