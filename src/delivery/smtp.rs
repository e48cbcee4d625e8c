//! A pool of SMTP connections built on lettre's public `AsyncSmtpConnection` API, over TCP
//! streams with `TCP_NODELAY` set. lettre 0.11.23's own transport leaves Nagle's algorithm
//! on, which holds each SMTP command back until the previous reply's ACK and caps one
//! connection at about 23 messages a second on loopback; its fix is not released yet.
//! STARTTLS and AUTH go through lettre's API. `smtps://` (TLS from the first byte) uses
//! lettre's own pooled transport instead.
//!
//! Under each connection, [`SmtpStream`] corks and pipelines: a message takes two round
//! trips instead of lettre's four.
//!
//! The mail transaction itself ([`transact`]) is written here with lettre's public
//! commands, as lettre's `send` writes it, byte for byte: lettre makes the message
//! transparent (a period doubled at the start of a line) by looking at every byte of it
//! and pushing it into a new buffer, about a tenth of `rapport serve`'s instructions per
//! message (BENCHMARKS.md, "Sending"); here the line starts are found with `memchr`.

use std::time::Duration;

use lettre::address::Envelope;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, TlsParameters};
use lettre::transport::smtp::commands::{Data, Mail, Rcpt};
use lettre::transport::smtp::extension::{ClientId, Extension, MailBodyParameter, MailParameter};
use tokio::net::TcpStream;
use tokio::sync::Mutex;

use super::stream::SmtpStream;

/// How STARTTLS is used on `smtp://` URLs (`?tls=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartTls {
    /// No TLS (the default for `smtp://`, e.g. a local relay).
    Never,
    /// Upgrade when the server offers it.
    Opportunistic,
    /// Refuse to send without it.
    Required,
}

/// Where and how to connect.
#[derive(Debug, Clone)]
pub struct SmtpConfig {
    pub host: String,
    pub port: u16,
    pub tls: StartTls,
    pub credentials: Option<(String, String)>,
    pub hello: String,
    pub timeout: Duration,
}

impl SmtpConfig {
    /// Reads an `smtp://[user:pass@]host[:port][?tls=required|opportunistic]` URL.
    pub fn from_url(raw: &str, hello: &str) -> Result<SmtpConfig, String> {
        let url = url::Url::parse(raw).map_err(|e| e.to_string())?;
        if url.scheme() != "smtp" {
            return Err(format!(
                "scheme {:?}: this pool handles smtp:// only",
                url.scheme()
            ));
        }
        let host = url.host_str().ok_or("no host")?.to_string();
        let tls = match url
            .query_pairs()
            .find(|(k, _)| k == "tls")
            .map(|(_, v)| v.into_owned())
        {
            None => StartTls::Never,
            Some(v) if v == "required" => StartTls::Required,
            Some(v) if v == "opportunistic" => StartTls::Opportunistic,
            Some(v) if v == "none" => StartTls::Never,
            Some(v) => return Err(format!("tls={v}: use required, opportunistic or none")),
        };
        let decode = |s: &str| percent_decode(s);
        let credentials = (!url.username().is_empty())
            .then(|| (decode(url.username()), decode(url.password().unwrap_or(""))));
        Ok(SmtpConfig {
            host,
            port: url
                .port()
                .unwrap_or(if tls == StartTls::Never { 25 } else { 587 }),
            tls,
            credentials,
            hello: hello.to_string(),
            timeout: Duration::from_secs(30),
        })
    }
}

fn percent_decode(s: &str) -> String {
    form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// A failed SMTP exchange: the server's answer, or the network.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("{0}")]
    Smtp(#[from] lettre::transport::smtp::Error),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The message needs an extension the server did not offer (it is not sent; the
    /// connection is closed, as lettre does).
    #[error("{0}")]
    Unsupported(&'static str),
}

impl PoolError {
    /// A 5xx answer: retrying will not help.
    pub fn is_permanent(&self) -> bool {
        matches!(self, PoolError::Smtp(e) if e.is_permanent())
    }
}

/// A connection between two messages.
struct Pooled {
    conn: AsyncSmtpConnection,
    since: std::time::Instant,
    /// The same socket (a duplicate descriptor), to look at without lettre: see
    /// [`closed_by_server`].
    socket: std::net::TcpStream,
}

/// After this long unused, a connection is looked at before it is used again.
const LOOK_AFTER: Duration = Duration::from_secs(1);

/// After this long unused, a connection must answer a NOOP before it is used again.
const ASK_AFTER: Duration = Duration::from_secs(20);

/// Whether the server has closed the connection or, on a plain one, said something
/// unasked (a `421` before it closes): either way it cannot carry the next message. (Over
/// TLS, unasked bytes may be TLS's own, such as a session ticket.) A peek that does not
/// wait: one system call, no round trip. Servers close idle connections (Postfix after
/// 300 s, some relays after seconds) and restart; without this look, the next message on
/// such a connection failed (`incomplete response`), and a confirmation email sent while a
/// person waits failed with it.
fn closed_by_server(socket: &std::net::TcpStream, encrypted: bool) -> bool {
    let mut byte = [0u8; 1];
    match socket.peek(&mut byte) {
        Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
        Ok(0) => true,
        Ok(_) => !encrypted,
    }
}

/// `work`, or a time-out error once `limit` has passed: lettre waits for a server's
/// replies without limit, and a server that accepts a connection and then says nothing
/// must not hold a send (or a person waiting for a confirmation email) for ever.
async fn within<T>(
    limit: Duration,
    doing: &str,
    work: impl std::future::Future<Output = T>,
) -> Result<T, PoolError> {
    tokio::time::timeout(limit, work).await.map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("SMTP server did not answer in time {doing}"),
        )
        .into()
    })
}

/// Idle connections, reused until the server closes them.
pub struct SmtpPool {
    config: SmtpConfig,
    idle: Mutex<Vec<Pooled>>,
    max_idle: usize,
    /// At most `max_idle` connections exist at once: senders beyond that wait their turn.
    slots: tokio::sync::Semaphore,
    /// The server offered 8BITMIME on the latest connection (false until one has said so:
    /// messages composed before that are encoded, which every server takes).
    eight_bit: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for SmtpPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SmtpPool({}:{})", self.config.host, self.config.port)
    }
}

impl SmtpPool {
    /// A pool keeping up to `max_idle` connections open.
    pub fn new(config: SmtpConfig, max_idle: usize) -> SmtpPool {
        SmtpPool {
            config,
            idle: Mutex::new(Vec::new()),
            max_idle,
            slots: tokio::sync::Semaphore::new(max_idle),
            eight_bit: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Whether the server takes 8-bit bodies (as far as the pool knows).
    pub fn eight_bit(&self) -> bool {
        self.eight_bit.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// A new connection, and a duplicate of its socket for [`closed_by_server`].
    async fn connect(&self) -> Result<(AsyncSmtpConnection, std::net::TcpStream), PoolError> {
        within(self.config.timeout, "while connecting", self.open()).await?
    }

    /// Connects, greets and, as configured, upgrades to TLS and logs in.
    async fn open(&self) -> Result<(AsyncSmtpConnection, std::net::TcpStream), PoolError> {
        let c = &self.config;
        let tcp = TcpStream::connect((c.host.as_str(), c.port)).await?;
        tcp.set_nodelay(true)?;
        let std_tcp = tcp.into_std()?;
        let socket = std_tcp.try_clone()?;
        let tcp = TcpStream::from_std(std_tcp)?;
        let hello = ClientId::Domain(c.hello.clone());
        let mut conn =
            AsyncSmtpConnection::connect_with_transport(Box::new(SmtpStream::new(tcp)), &hello)
                .await?;
        let offered = conn.can_starttls();
        if c.tls == StartTls::Required || (c.tls == StartTls::Opportunistic && offered) {
            conn.starttls(TlsParameters::new(c.host.clone())?, &hello)
                .await?;
        }
        self.eight_bit.store(
            conn.server_info().supports_feature(Extension::EightBitMime),
            std::sync::atomic::Ordering::Relaxed,
        );
        if let Some((user, pass)) = &c.credentials {
            conn.auth(
                &[Mechanism::Plain, Mechanism::Login],
                &Credentials::new(user.clone(), pass.clone()),
            )
            .await?;
        }
        Ok((conn, socket))
    }

    /// Sends one message on an idle connection (or a new one), and keeps the connection for
    /// the next message unless it broke.
    pub async fn send(&self, message: &lettre::Message) -> Result<(), PoolError> {
        let _slot = self
            .slots
            .acquire()
            .await
            .expect("the pool's semaphore is never closed");
        let pooled = self.idle.lock().await.pop();
        let (mut conn, socket) = match pooled {
            // A connection idle for a while may have been closed by the server: look, and
            // after longer, ask.
            Some(mut p) if p.since.elapsed() > LOOK_AFTER => {
                if !closed_by_server(&p.socket, p.conn.is_encrypted())
                    && (p.since.elapsed() <= ASK_AFTER
                        || within(self.config.timeout, "to NOOP", p.conn.test_connected())
                            .await
                            .unwrap_or(false))
                {
                    (p.conn, p.socket)
                } else {
                    self.connect().await?
                }
            }
            Some(p) => (p.conn, p.socket),
            None => self.connect().await?,
        };
        let result = within(
            self.config.timeout,
            "while sending",
            transact(&mut conn, message.envelope(), message.formatted()),
        )
        .await
        .and_then(|r| r);
        // Only a connection whose transaction finished is reused: lettre closes one that got
        // a refusal, and one that timed out may still have a reply on its way.
        if result.is_ok() && !conn.has_broken() {
            let mut idle = self.idle.lock().await;
            if idle.len() < self.max_idle {
                idle.push(Pooled {
                    conn,
                    since: std::time::Instant::now(),
                    socket,
                });
            }
        }
        result.map(|_| ())
    }
}

/// One mail transaction (`MAIL FROM`, `RCPT TO`, `DATA`, the message) on `conn`, with the
/// same commands, parameters and bytes as lettre's `AsyncSmtpConnection::send`: `SMTPUTF8`
/// for non-ASCII addresses and `BODY=8BITMIME` for a non-ASCII message, refused when the
/// server does not offer them; on any error the connection is closed (`has_broken`).
async fn transact(
    conn: &mut AsyncSmtpConnection,
    envelope: &Envelope,
    message: Vec<u8>,
) -> Result<(), PoolError> {
    // Composed messages are UTF-8; anything else goes through lettre's own encoder.
    let mut text = match String::from_utf8(message) {
        Ok(text) => text,
        Err(e) => {
            conn.send(envelope, e.as_bytes()).await?;
            return Ok(());
        }
    };
    let mut parameters = Vec::new();
    let mut addresses = envelope.from().into_iter().chain(envelope.to());
    if addresses.any(|a: &lettre::Address| !AsRef::<str>::as_ref(a).is_ascii()) {
        if !conn.server_info().supports_feature(Extension::SmtpUtfEight) {
            conn.abort().await;
            return Err(PoolError::Unsupported(
                "the envelope has non-ASCII addresses and the SMTP server does not offer SMTPUTF8",
            ));
        }
        parameters.push(MailParameter::SmtpUtfEight);
    }
    if !text.is_ascii() {
        if !conn.server_info().supports_feature(Extension::EightBitMime) {
            conn.abort().await;
            return Err(PoolError::Unsupported(
                "the message is not ASCII and the SMTP server does not offer 8BITMIME",
            ));
        }
        parameters.push(MailParameter::Body(MailBodyParameter::EightBitMime));
    }
    text.push_str(END_OF_DATA);
    let result = async {
        conn.command(Mail::new(envelope.from().cloned(), parameters))
            .await?;
        for to in envelope.to() {
            conn.command(Rcpt::new(to.clone(), Vec::new())).await?;
        }
        conn.command(Data).await?;
        conn.command(Transparent(&text)).await
    }
    .await;
    if result.is_err() {
        conn.abort().await;
    }
    result.map(|_| ()).map_err(PoolError::from)
}

/// What ends the message of a `DATA` command, after the message itself (lettre writes it
/// after every message, whether or not the message ends with a line break).
const END_OF_DATA: &str = "\r\n.\r\n";

/// A message followed by [`END_OF_DATA`], written transparent (RFC 5321 §4.5.2): a line
/// that starts with a period gets a second one, so that no line of the message reads as
/// the end of the data. A line starts at the beginning and after each CRLF.
struct Transparent<'a>(&'a str);

impl std::fmt::Display for Transparent<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        static LINE_WITH_PERIOD: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
            std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"\r\n."));
        let text = self.0;
        // The end of the data is the one period that stays single.
        let message = text.strip_suffix(END_OF_DATA).unwrap_or(text);
        let end = &text[message.len()..];
        if message.starts_with('.') {
            f.write_str(".")?;
        }
        let mut from = 0;
        for at in LINE_WITH_PERIOD.find_iter(message.as_bytes()) {
            // Up to and with the period's line start; the period comes again next.
            f.write_str(&message[from..at + 2])?;
            f.write_str(".")?;
            from = at + 2;
        }
        if from == 0 {
            // No line to double: the whole data in one piece, so that `to_string` makes
            // it in one allocation.
            return f.write_str(text);
        }
        f.write_str(&message[from..])?;
        f.write_str(end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::delivery::test_server::{ONE_MESSAGE, converse, message};

    /// lettre 0.11.23's `ClientCodec::encode` (a state machine over every byte), followed
    /// by the end it writes: the model [`Transparent`] must write the same as.
    fn lettre_data(message: &str) -> String {
        #[derive(Clone, Copy, PartialEq)]
        enum At {
            Middle,
            AfterCr,
            LineStart,
        }
        let (mut out, mut at) = (String::new(), At::LineStart);
        for c in message.chars() {
            out.push(c);
            at = match (c, at) {
                ('\r', _) => At::AfterCr,
                ('\n', At::AfterCr) => At::LineStart,
                ('.', At::LineStart) => {
                    out.push('.');
                    At::Middle
                }
                _ => At::Middle,
            };
        }
        out + "\r\n.\r\n"
    }

    fn transparent(message: &str) -> String {
        Transparent(&format!("{message}\r\n.\r\n")).to_string()
    }

    #[test]
    fn periods_at_line_starts_are_doubled_as_lettre_does() {
        for m in [
            "",
            ".",
            "..",
            ".a\r\n.b\r\n",
            "a\r\n.\r\n.",
            "a\n.b\r.c\r\r\n.d",
            "é\r\n.é",
            "no period",
        ] {
            assert_eq!(transparent(m), lettre_data(m), "{m:?}");
        }
        assert_eq!(transparent("x\r\n.y"), "x\r\n..y\r\n.\r\n");
        // Without its end (never so in rapport), still no panic.
        assert_eq!(Transparent(".").to_string(), "..");
        assert_eq!(Transparent("").to_string(), "");
    }

    proptest::proptest! {
        #[test]
        fn transparent_data_is_lettres(m in "[a.\r\né]{0,80}") {
            proptest::prop_assert_eq!(transparent(&m), lettre_data(&m));
        }
    }

    /// What a scripted server whose EHLO reply is `ehlo` (it offers PIPELINING) read when
    /// `message` was sent on a new connection, by lettre's `send` or by [`transact`]; and
    /// how the sending ended.
    async fn on_the_wire(
        ehlo: &'static str,
        message: &lettre::Message,
        by_lettre: bool,
    ) -> (Vec<String>, Result<(), String>, bool) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let steps = [ehlo, ONE_MESSAGE[1], ONE_MESSAGE[2]];
            converse(&mut s, &steps, usize::MAX).await
        });
        let (mut conn, _) = pool(port, Duration::from_secs(5), 1)
            .connect()
            .await
            .unwrap();
        let result = if by_lettre {
            conn.send(message.envelope(), &message.formatted())
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        } else {
            transact(&mut conn, message.envelope(), message.formatted())
                .await
                .map_err(|e| e.to_string())
        };
        let broken = conn.has_broken();
        drop(conn);
        let reads = tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .map(|r| r.unwrap())
            .unwrap_or_default();
        (reads, result, broken)
    }

    #[tokio::test]
    async fn a_transaction_is_what_lettre_sends_byte_for_byte() {
        let body = "Hello,\r\n.a line that starts with a period\r\n..and two\r\n.\r\nend";
        let ascii = lettre::Message::builder()
            .from("a@x.example".parse().unwrap())
            .to("b@y.example".parse().unwrap())
            .subject("hi")
            .header(lettre::message::header::ContentTransferEncoding::SevenBit)
            .body(String::from(body))
            .unwrap();
        let eight_bit = lettre::Message::builder()
            .from("a@x.example".parse().unwrap())
            .to("b@y.example".parse().unwrap())
            .subject("hi")
            .header(lettre::message::header::ContentTransferEncoding::EightBit)
            .body(format!("Grüße\r\n{body}"))
            .unwrap();
        let ehlo = "250-test\r\n250-8BITMIME\r\n250 PIPELINING\r\n";
        for message in [&ascii, &eight_bit] {
            let lettre = on_the_wire(ehlo, message, true).await;
            let ours = on_the_wire(ehlo, message, false).await;
            assert_eq!(ours, lettre);
            assert_eq!(ours.1, Ok(()));
            assert!(!ours.2, "the connection is kept");
        }
        let (reads, ..) = on_the_wire(ehlo, &ascii, false).await;
        assert!(
            reads[2].contains(
                "\r\n..a line that starts with a period\r\n...and two\r\n..\r\nend\r\n.\r\n"
            ),
            "{:?}",
            reads[2]
        );
        assert!(
            reads[1].starts_with("MAIL FROM:<a@x.example>\r\n"),
            "{:?}",
            reads[1]
        );
        let (reads, ..) = on_the_wire(ehlo, &eight_bit, false).await;
        assert!(
            reads[1].starts_with("MAIL FROM:<a@x.example> BODY=8BITMIME\r\n"),
            "{:?}",
            reads[1]
        );
    }

    #[tokio::test]
    async fn an_eight_bit_message_is_not_sent_to_a_server_without_8bitmime() {
        let message = lettre::Message::builder()
            .from("a@x.example".parse().unwrap())
            .to("b@y.example".parse().unwrap())
            .subject("hi")
            .header(lettre::message::header::ContentTransferEncoding::EightBit)
            .body(String::from("Grüße"))
            .unwrap();
        let (reads, result, broken) =
            on_the_wire("250-test\r\n250 PIPELINING\r\n", &message, false).await;
        let e = result.unwrap_err();
        assert!(e.contains("8BITMIME"), "{e}");
        assert!(broken, "closed, as lettre closes it");
        assert!(
            reads.iter().all(|r| !r.contains("MAIL FROM")),
            "nothing of the message went out: {reads:?}"
        );
    }

    /// A pool of `size` connections to 127.0.0.1:`port` whose exchanges time out after
    /// `timeout`.
    fn pool(port: u16, timeout: Duration, size: usize) -> SmtpPool {
        let mut config =
            SmtpConfig::from_url(&format!("smtp://127.0.0.1:{port}"), "t.example").unwrap();
        config.timeout = timeout;
        SmtpPool::new(config, size)
    }

    #[tokio::test]
    async fn a_connection_that_timed_out_is_not_reused() {
        use tokio::io::AsyncReadExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            converse(&mut s, ONE_MESSAGE, usize::MAX).await;
            // The second message's envelope gets no answer.
            let _ = s.read(&mut [0u8; 4096]).await.unwrap();
            tokio::time::sleep(Duration::from_secs(5)).await;
        });
        let pool = pool(port, Duration::from_millis(300), 2);
        pool.send(&message()).await.unwrap();
        assert_eq!(pool.idle.lock().await.len(), 1, "kept for the next message");
        let e = pool.send(&message()).await.unwrap_err();
        assert!(e.to_string().contains("did not answer"), "{e}");
        assert!(
            pool.idle.lock().await.is_empty(),
            "its late reply would be read as the next command's"
        );
        server.abort();
    }

    #[tokio::test]
    async fn a_connection_the_server_closed_is_replaced() {
        use tokio::io::AsyncWriteExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        // Each connection carries one message; then the server says 421 and hangs up, as
        // a server does at its idle timeout or when it restarts.
        let server = tokio::spawn(async move {
            for _ in 0..2 {
                let (mut s, _) = listener.accept().await.unwrap();
                converse(&mut s, ONE_MESSAGE, usize::MAX).await;
                s.write_all(b"421 4.4.2 Timeout\r\n").await.unwrap();
            }
        });
        let pool = pool(port, Duration::from_secs(30), 2);
        pool.send(&message()).await.unwrap();
        tokio::time::sleep(LOOK_AFTER + Duration::from_millis(100)).await;
        pool.send(&message())
            .await
            .expect("sent on a new connection, not on the closed one");
        server.await.unwrap();
    }

    #[tokio::test]
    async fn a_server_that_never_greets_times_out() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (s, _) = listener.accept().await.unwrap();
            tokio::time::sleep(Duration::from_secs(5)).await;
            drop(s);
        });
        let pool = pool(port, Duration::from_millis(300), 1);
        let started = std::time::Instant::now();
        let e = pool.send(&message()).await.unwrap_err();
        assert!(e.to_string().contains("while connecting"), "{e}");
        assert!(!e.is_permanent(), "retried later");
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "did not wait for the server"
        );
        server.abort();
    }

    #[test]
    fn reads_urls() {
        let c = SmtpConfig::from_url(
            "smtp://mailer:p%40ss@smtp.example.com:587?tls=required",
            "contoso.example",
        )
        .unwrap();
        assert_eq!(
            (c.host.as_str(), c.port, c.tls),
            ("smtp.example.com", 587, StartTls::Required)
        );
        assert_eq!(c.credentials, Some(("mailer".into(), "p@ss".into())));
        let c = SmtpConfig::from_url("smtp://127.0.0.1:2525", "x").unwrap();
        assert_eq!(
            (c.port, c.tls, c.credentials),
            (2525, StartTls::Never, None)
        );
        assert!(SmtpConfig::from_url("smtp://h?tls=maybe", "x").is_err());
    }
}
