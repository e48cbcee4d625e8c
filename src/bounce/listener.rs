//! The SMTP side of the bounce intake: `serve` listens on `RAPPORT_BOUNCE_BIND` for mail to
//! the bounce domain (the domain's MX, or a Postfix transport, points here). `mailin` holds
//! the SMTP state machine; this file is the socket work and our limits: only the bounce
//! domain is accepted (550 for any other recipient, so never a relay), messages over
//! [`MAX_MESSAGE`] get 552, a silent client is dropped after [`IDLE`] and any after
//! [`MAX_SESSION`], at most [`MAX_CONNECTIONS`] are served at once (others get 421), and
//! all of them together read at most [`KIB_PER_SECOND`]. Messages are answered 250
//! once recorded, whatever they turned out to be; 451 (try later) when the store fails.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mailin::{Action, Response};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};

use super::Intake;

/// The largest message taken (reports quote the original; 10 MiB is plenty).
pub const MAX_MESSAGE: usize = 10 * 1024 * 1024;
/// The longest line taken (RFC 5321 allows 1,000 octets; some mailers write longer).
const MAX_LINE: u64 = 64 * 1024;
/// How long a client may stay silent.
pub const IDLE: Duration = Duration::from_secs(60);
/// How long one connection may last, however busy (a client trickling a byte a minute
/// would otherwise hold a slot for ever).
pub const MAX_SESSION: Duration = Duration::from_secs(600);
/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 32;
/// What all connections together may send, in KiB per second (8 MiB/s, with bursts of
/// 1 MiB): far above what bounces come at (a DSN is a few KiB; the bench takes thousands a
/// second), far below what a flood over loopback can push (a third of a gigabyte a second,
/// which took half the machine's CPU from sending before this budget; BENCHMARKS.md).
pub const KIB_PER_SECOND: u32 = 8 * 1024;
/// The burst of the budget: what may arrive at once after a quiet spell.
const BURST_KIB: u32 = 1024;
/// Bytes read by a connection between two payments out of the budget.
const PAY_STEP: usize = 64 * 1024;

type Budget = governor::DefaultDirectRateLimiter;

/// The listener could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen for bounces on {0} (RAPPORT_BOUNCE_BIND): {1}")]
pub struct ListenError(pub SocketAddr, pub std::io::Error);

/// A bound SMTP listener for the bounce domain.
pub struct Listener {
    listener: TcpListener,
    domain: String,
    intake: Intake,
}

impl Listener {
    /// Binds `addr` (port 0 picks a free one).
    pub async fn bind(
        addr: SocketAddr,
        domain: &str,
        intake: Intake,
    ) -> Result<Listener, ListenError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| ListenError(addr, e))?;
        Ok(Listener {
            listener,
            domain: domain.to_ascii_lowercase(),
            intake,
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `stop` turns true; sessions in progress finish their message.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        // No STARTTLS: the intake listens on a private address, or behind the MX host's TLS.
        let session = mailin::SessionBuilder::new(self.domain.clone());
        let per_second = std::num::NonZeroU32::new(KIB_PER_SECOND).expect("not zero");
        let burst = std::num::NonZeroU32::new(BURST_KIB).expect("not zero");
        let budget = Arc::new(governor::RateLimiter::direct(
            governor::Quota::per_second(per_second).allow_burst(burst),
        ));
        loop {
            let accepted = tokio::select! {
                a = self.listener.accept() => a,
                _ = stop.changed() => return,
            };
            let (mut stream, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "bounce listener: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                let _ = stream
                    .write_all(b"421 4.7.0 too many connections, try again later\r\n")
                    .await;
                continue;
            };
            let (domain, intake, builder, budget) = (
                self.domain.clone(),
                self.intake.clone(),
                session.clone(),
                budget.clone(),
            );
            tokio::spawn(async move {
                let session = serve(stream, peer, &builder, domain, &intake, &budget);
                match tokio::time::timeout(MAX_SESSION, session).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, error = %e, "bounce listener: session ended")
                    }
                    Err(_) => tracing::info!(%peer, "bounce listener: session too long, closed"),
                }
                drop(slot);
            });
        }
    }
}

/// One SMTP transaction's message, handed from the state machine to the socket loop.
#[derive(Default)]
struct Transaction {
    to: Vec<String>,
    data: Vec<u8>,
    too_big: bool,
    done: Option<(Vec<String>, Vec<u8>)>,
}

/// Decides on recipients and collects the message.
struct Handler {
    domain: String,
    tx: Arc<Mutex<Transaction>>,
}

impl Handler {
    fn tx(&self) -> std::sync::MutexGuard<'_, Transaction> {
        self.tx.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl mailin::Handler for Handler {
    fn rcpt(&mut self, to: &str) -> Response {
        let address = to.trim().trim_matches(['<', '>']);
        let ours = address
            .rsplit_once('@')
            .is_some_and(|(_, d)| d.eq_ignore_ascii_case(&self.domain));
        if ours {
            mailin::response::OK
        } else {
            Response::custom(
                550,
                format!(
                    "5.7.1 <{address}>: relay denied; this server takes mail for {} only",
                    self.domain
                ),
            )
        }
    }

    fn data_start(&mut self, _domain: &str, _from: &str, _is8bit: bool, to: &[String]) -> Response {
        let mut t = self.tx();
        *t = Transaction {
            to: to.to_vec(),
            ..Transaction::default()
        };
        mailin::response::OK
    }

    fn data(&mut self, buf: &[u8]) -> std::io::Result<()> {
        let mut t = self.tx();
        if t.data.len() + buf.len() > MAX_MESSAGE {
            t.too_big = true;
            t.data = Vec::new();
        } else if !t.too_big {
            t.data.extend_from_slice(buf);
        }
        Ok(())
    }

    fn data_end(&mut self) -> Response {
        let mut t = self.tx();
        if t.too_big {
            return Response::custom(
                552,
                format!("5.3.4 message larger than {MAX_MESSAGE} bytes"),
            );
        }
        let to = std::mem::take(&mut t.to);
        let data = std::mem::take(&mut t.data);
        t.done = Some((to, data));
        mailin::response::OK
    }
}

/// `mailin` 0.6 refuses the null reverse path `MAIL FROM:<>` as a syntax error, and that is
/// the envelope sender of every DSN (RFC 5321, 4.5.5): it is handed a placeholder instead.
fn null_sender(line: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    const NULL: &[u8] = b"MAIL FROM:<>";
    if line.len() >= NULL.len() && line[..NULL.len()].eq_ignore_ascii_case(NULL) {
        let mut l = b"MAIL FROM:<MAILER-DAEMON>".to_vec();
        l.extend_from_slice(&line[NULL.len()..]);
        return l.into();
    }
    line.into()
}

async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    builder: &mailin::SessionBuilder,
    domain: String,
    intake: &Intake,
    budget: &Budget,
) -> std::io::Result<()> {
    let _ = stream.set_nodelay(true);
    let tx = Arc::new(Mutex::new(Transaction::default()));
    let mut session = builder.build(
        peer.ip(),
        Handler {
            domain,
            tx: tx.clone(),
        },
    );
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    write.write_all(&session.greeting().buffer()?).await?;
    let mut line = Vec::with_capacity(1024);
    // Bytes read and not yet paid for out of the shared budget.
    let mut unpaid = 0usize;
    loop {
        line.clear();
        let n = tokio::time::timeout(
            IDLE,
            (&mut read).take(MAX_LINE).read_until(b'\n', &mut line),
        )
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "client silent"))??;
        if n == 0 {
            return Ok(());
        }
        // Paid in steps of 64 KiB: paying per line woke the waiting connections thousands
        // of times a second, which cost more CPU than reading the bytes.
        unpaid += n;
        if unpaid >= PAY_STEP {
            let kib = std::num::NonZeroU32::new((unpaid / 1024) as u32).expect("at least one");
            unpaid %= 1024;
            // At most 128 KiB (a step and a line), within the budget's burst.
            let _ = budget.until_n_ready(kib).await;
        }
        if !line.ends_with(b"\n") {
            if n as u64 == MAX_LINE {
                write.write_all(b"500 5.5.2 line too long\r\n").await?;
            }
            return Ok(());
        }
        if !line.ends_with(b"\r\n") {
            // A bare LF ends the line too (as most servers read it).
            line.pop();
            line.extend_from_slice(b"\r\n");
        }
        let mut response = session.process(&null_sender(&line));
        let finished = tx.lock().unwrap_or_else(|e| e.into_inner()).done.take();
        if let Some((to, data)) = finished {
            if let Err(e) = intake.take(data, &to).await {
                tracing::error!(error = %e, "bounce listener: cannot record a report; the sender will retry");
                response = Response::custom(
                    451,
                    "4.3.0 cannot record the message now, try again later".into(),
                );
            }
        }
        write.write_all(&response.buffer()?).await?;
        // After refusing a message at its end, `mailin` 0.6 stays in the DATA state and
        // would read the next commands as message text: end the session instead (the
        // client has its answer; it may connect again).
        if response.action == Action::Close || response.code == 552 {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn listener() -> (SocketAddr, watch::Sender<bool>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("r.db").display());
        let store = crate::store::Store::open(&url).await.unwrap();
        let intake = Intake::new(store, crate::track::Signer::new(b"0123456789abcdef"), 3);
        let l = Listener::bind(
            "127.0.0.1:0".parse().unwrap(),
            "Bounces.Example.com",
            intake,
        )
        .await
        .unwrap();
        let addr = l.local_addr().unwrap();
        let (stop, rx) = watch::channel(false);
        tokio::spawn(l.run(rx));
        (addr, stop, dir)
    }

    /// A client that reads one reply (all its lines) per command.
    struct Client(BufReader<TcpStream>);

    impl Client {
        async fn connect(addr: SocketAddr) -> (Client, String) {
            let mut c = Client(BufReader::new(TcpStream::connect(addr).await.unwrap()));
            let greeting = c.reply().await;
            (c, greeting)
        }

        async fn reply(&mut self) -> String {
            let mut all = String::new();
            loop {
                let mut line = String::new();
                if self.0.read_line(&mut line).await.unwrap() == 0 {
                    return all;
                }
                all.push_str(&line);
                if line.as_bytes().get(3) != Some(&b'-') {
                    return all;
                }
            }
        }

        async fn say(&mut self, line: &[u8]) -> String {
            self.0.get_mut().write_all(line).await.unwrap();
            self.reply().await
        }
    }

    #[tokio::test]
    async fn takes_the_bounce_domain_only_and_refuses_what_is_too_big() {
        let (addr, _stop, _dir) = listener().await;
        let (mut c, greeting) = Client::connect(addr).await;
        assert!(greeting.starts_with("220 "), "{greeting}");
        assert!(c.say(b"EHLO relay.example\r\n").await.starts_with("250"));
        assert!(
            c.say(b"MAIL FROM:<>\r\n").await.starts_with("250"),
            "the null sender of DSNs"
        );
        let relay = c.say(b"RCPT TO:<someone@elsewhere.example>\r\n").await;
        assert!(relay.starts_with("550 5.7.1"), "never a relay: {relay}");
        assert!(
            c.say(b"RCPT TO:<b-1-00@bounces.example.COM>\r\n")
                .await
                .starts_with("250")
        );
        assert!(c.say(b"DATA\r\n").await.starts_with("354"));
        let line = [b'x'; 999];
        let mut big = Vec::new();
        while big.len() <= MAX_MESSAGE {
            big.extend_from_slice(&line);
            big.extend_from_slice(b"\r\n");
        }
        c.0.get_mut().write_all(&big).await.unwrap();
        let too_big = c.say(b".\r\n").await;
        assert!(too_big.starts_with("552"), "{too_big}");
        // The session ends there; a new one takes a small report (250, though it names
        // nothing).
        let (mut c, _) = Client::connect(addr).await;
        assert!(c.say(b"HELO relay.example\r\n").await.starts_with("250"));
        assert!(c.say(b"MAIL FROM:<>\r\n").await.starts_with("250"));
        assert!(
            c.say(b"RCPT TO:<fbl@bounces.example.com>\r\n")
                .await
                .starts_with("250")
        );
        assert!(c.say(b"DATA\r\n").await.starts_with("354"));
        let ok = c
            .say(b"Subject: hello\r\n\r\n..a dot-stuffed line\r\n.\r\n")
            .await;
        assert!(ok.starts_with("250"), "{ok}");
        // A line without an end, longer than any command: refused, connection closed.
        c.0.get_mut().write_all(&[b'A'; 70 * 1024]).await.unwrap();
        let long = c.reply().await;
        assert!(long.starts_with("500"), "{long}");
        let mut rest = Vec::new();
        let _ = c.0.read_to_end(&mut rest).await;
    }

    #[tokio::test]
    async fn connections_over_the_limit_are_turned_away() {
        let (addr, _stop, _dir) = listener().await;
        let mut held = Vec::new();
        for _ in 0..MAX_CONNECTIONS {
            let (c, greeting) = Client::connect(addr).await;
            assert!(greeting.starts_with("220"));
            held.push(c);
        }
        let (_, busy) = Client::connect(addr).await;
        assert!(busy.starts_with("421"), "{busy}");
        drop(held.pop());
        // A freed slot is served again (the session's end is noticed shortly).
        for _ in 0..100 {
            let (_, greeting) = Client::connect(addr).await;
            if greeting.starts_with("220") {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("a freed slot was never served");
    }
}
