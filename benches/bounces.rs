//! The bounce intake: DSNs through rapport's SMTP listener, as a relay delivers them after a
//! newsletter to a stale list.
//!
//! REPORTS (default 10,000) subscribed profiles in SQLite and a newsletter run queued for
//! them (not sent: the intake needs only the deliveries); then CONNS (default 4) SMTP
//! connections deliver one hard-bounce DSN per delivery, each to that delivery's VERP
//! address, one transaction after another, as Postfix does. Prints reports/s from the
//! first connection to the last reply, and checks that every address ended up bounced.
//! Goal (issue 16): 10,000 reports in under 10 s on SQLite.
//!
//! Run: `cargo bench --bench bounces` (in-process: the listener, intake and store are the
//! same code `serve` runs).

mod common;

use std::time::Instant;

use rapport::bounce::{Intake, Listener};
use rapport::profile::{Answers, Email, Status};
use rapport::site::Site;
use rapport::store::Store;
use rapport::track::Signer;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const DOMAIN: &str = "bounces.example.com";

async fn reply(r: &mut BufReader<TcpStream>) -> String {
    let mut all = String::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).await.unwrap() == 0 {
            return all;
        }
        all.push_str(&line);
        if line.as_bytes().get(3) != Some(&b'-') {
            return all;
        }
    }
}

async fn say(r: &mut BufReader<TcpStream>, what: &[u8], expect: &str) {
    r.get_mut().write_all(what).await.unwrap();
    let got = reply(r).await;
    assert!(got.starts_with(expect), "{got}");
}

fn dsn(verp: &str, n: usize) -> String {
    format!(
        "From: MAILER-DAEMON@relay.example\r\nTo: {verp}\r\nSubject: Undelivered Mail Returned to Sender\r\n\
         Auto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=delivery-status; boundary=\"b\"\r\n\r\n\
         --b\r\nContent-Type: text/plain\r\n\r\nThis is the mail system at host relay.example.\r\n\
         I'm sorry to have to inform you that your message could not be delivered.\r\n\
         --b\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; relay.example\r\n\r\n\
         Final-Recipient: rfc822; p{n}@bench.example\r\nAction: failed\r\nStatus: 5.1.1\r\n\
         Diagnostic-Code: smtp; 550 5.1.1 <p{n}@bench.example>: Recipient address rejected: User unknown\r\n\r\n\
         --b\r\nContent-Type: text/rfc822-headers\r\n\r\nReturn-Path: <{verp}>\r\n\
         From: Contoso <hello@contoso.example>\r\nTo: p{n}@bench.example\r\nSubject: Your monthly news\r\n\
         --b--\r\n.\r\n"
    )
}

#[tokio::main]
async fn main() {
    let n: usize = common::knob("REPORTS", 10_000);
    let conns: usize = common::knob("CONNS", 4);
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("bench.db").display());
    let store = Store::open(&db).await.unwrap();
    let mut batch = Vec::new();
    for i in 0..n {
        batch.push((
            Email::parse(&format!("p{i}@bench.example")).unwrap(),
            Answers::default(),
        ));
    }
    store
        .insert_profiles(&batch, Status::Subscribed, "bench")
        .await
        .unwrap();
    let site = Site::load(common::root()).unwrap();
    rapport::schedule::manual_run(&store, &site, site.campaign("newsletter").unwrap())
        .await
        .unwrap();
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&db).await.unwrap();
    let ids: Vec<i64> = sqlx::query_scalar("SELECT id FROM deliveries ORDER BY id")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(ids.len(), n);
    let signer = Signer::new(b"bench-secret-0123456789abcdef");
    let intake = Intake::new(store.clone(), signer.clone(), 3);
    let listener = Listener::bind("127.0.0.1:0".parse().unwrap(), DOMAIN, intake.clone())
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let (_stop, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(listener.run(stop_rx));

    let t = Instant::now();
    let mut tasks = Vec::new();
    for part in ids.chunks(n.div_ceil(conns)) {
        let messages: Vec<(String, String)> = part
            .iter()
            .enumerate()
            .map(|(i, id)| {
                let verp = format!("{}@{DOMAIN}", signer.bounce_local_part(*id));
                (verp.clone(), dsn(&verp, i))
            })
            .collect();
        tasks.push(tokio::spawn(async move {
            let mut r = BufReader::new(TcpStream::connect(addr).await.unwrap());
            assert!(reply(&mut r).await.starts_with("220"));
            say(&mut r, b"EHLO relay.example\r\n", "250").await;
            for (verp, body) in messages {
                say(&mut r, b"MAIL FROM:<>\r\n", "250").await;
                say(&mut r, format!("RCPT TO:<{verp}>\r\n").as_bytes(), "250").await;
                say(&mut r, b"DATA\r\n", "354").await;
                say(&mut r, body.as_bytes(), "250").await;
            }
            say(&mut r, b"QUIT\r\n", "221").await;
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let secs = t.elapsed().as_secs_f64();
    let bounced: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM profiles WHERE status = 'bounced'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(bounced as usize, n, "every address bounced");
    println!(
        "bounce intake: {n} DSNs over {conns} SMTP connections in {secs:.2} s: {:.0} reports/s (SQLite); tally {:?}",
        n as f64 / secs,
        intake
            .tally()
            .counts()
            .into_iter()
            .filter(|(_, c)| *c > 0)
            .map(|(o, c)| format!("{}={c}", o.as_str()))
            .collect::<Vec<_>>()
    );
}
