//! The TCP stream under each pooled SMTP connection. lettre's connection writes a command,
//! flushes it and waits for its reply, one at a time; this stream saves round trips under
//! it without changing what lettre sees:
//!
//! - **Corking.** What is written is held until the connection next reads, which is when
//!   lettre waits for the server. A message's body and its closing `.` (two writes, each
//!   flushed) then leave in one segment.
//! - **Pipelining** (RFC 2920), when the server's EHLO reply offers `PIPELINING` and the
//!   connection is not upgraded to TLS. `MAIL FROM` and `RCPT TO` are answered here with a
//!   provisional `250` and held; they go to the server together with `DATA`, in one
//!   segment, and the server's real replies are read together. When one of them is a
//!   refusal, lettre gets that reply in place of `DATA`'s, so it reports the server's own
//!   code and text (a refused recipient stays a refused recipient) and, as on any error,
//!   closes the connection. A message then takes two round trips instead of four.
//!
//! After `STARTTLS` the stream only corks: the commands are inside TLS, which lettre adds
//! above this stream.

use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// The reply given to lettre for a held `MAIL FROM` or `RCPT TO`.
const PROVISIONAL: &[u8] = b"250 2.0.0 Ok (pipelined)\r\n";

/// Bytes of replies held while waiting for the rest of them: far more than any server
/// sends (lettre allows 8 KB for one reply), so that a broken server cannot make the
/// stream hold without limit.
const MAX_REPLIES: usize = 64 * 1024;

/// What lettre waits for when it next reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Awaited {
    /// The provisional reply to a held command.
    Provisional,
    /// The server's reply to the command written last (and before it, those of the held
    /// commands).
    Server { ehlo: bool, data: bool },
}

impl Awaited {
    /// The server's reply to a command the stream does not look into.
    const PLAIN: Awaited = Awaited::Server {
        ehlo: false,
        data: false,
    };
}

/// A TCP stream that corks and, where the server allows, pipelines: see the module docs.
/// Public so that the sending benchmark can measure bare lettre over it too.
#[derive(Debug)]
pub struct SmtpStream {
    tcp: TcpStream,
    /// Written and not yet sent.
    pending: Vec<u8>,
    /// How much of `pending` has been sent.
    sent: usize,
    /// Read from the server and not yet handed on.
    inbound: Vec<u8>,
    /// A whole reply for lettre, and how much of it it has read.
    ready: Vec<u8>,
    given: usize,
    /// The server's latest EHLO reply offered PIPELINING, and the stream carries plain
    /// text.
    pipelining: bool,
    /// Commands answered provisionally whose real replies are still to be read.
    held: usize,
    awaited: Awaited,
    /// Between `DATA`'s 354 and the next read, what lettre writes is the message.
    in_body: bool,
    /// The server's replies could not be read (too long): the stream reads as closed from
    /// then on, so that lettre's QUIT does not wait on the rest of them.
    failed: bool,
}

impl SmtpStream {
    /// Wraps a connected stream (set TCP_NODELAY on it first).
    pub fn new(tcp: TcpStream) -> SmtpStream {
        SmtpStream {
            tcp,
            pending: Vec::new(),
            sent: 0,
            inbound: Vec::new(),
            ready: Vec::new(),
            given: 0,
            pipelining: false,
            held: 0,
            awaited: Awaited::PLAIN,
            in_body: false,
            failed: false,
        }
    }

    /// Sends what is held; ready once all of it is sent.
    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        while self.sent < self.pending.len() {
            match Pin::new(&mut self.tcp).poll_write(cx, &self.pending[self.sent..]) {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
                }
                Poll::Ready(Ok(n)) => self.sent += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        self.pending.clear();
        self.sent = 0;
        Poll::Ready(Ok(()))
    }

    /// Notes what lettre has just written: each command is one write, spelled as lettre
    /// spells it. The spellings matched hold a space, a colon or a line end, so no line of
    /// an AUTH exchange (base64) is taken for one of them.
    fn wrote(&mut self, buf: &[u8]) {
        if self.in_body {
            return;
        }
        let envelope = buf.starts_with(b"MAIL FROM:") || buf.starts_with(b"RCPT TO:");
        self.awaited = if envelope && self.pipelining {
            self.held += 1;
            Awaited::Provisional
        } else {
            if buf == b"STARTTLS\r\n" {
                // What follows is encrypted above this stream.
                self.pipelining = false;
            }
            Awaited::Server {
                ehlo: buf.starts_with(b"EHLO "),
                data: buf == b"DATA\r\n",
            }
        };
    }

    /// Reads from the server until `inbound` holds `n` whole replies; returns where each
    /// ends, or `None` at end of stream.
    fn poll_replies(
        &mut self,
        cx: &mut Context<'_>,
        n: usize,
    ) -> Poll<std::io::Result<Option<Vec<usize>>>> {
        loop {
            let ends = reply_ends(&self.inbound, n);
            if ends.len() == n {
                return Poll::Ready(Ok(Some(ends)));
            }
            if self.inbound.len() > MAX_REPLIES {
                self.failed = true;
                self.inbound = Vec::new();
                return Poll::Ready(Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "the SMTP server's replies are too long",
                )));
            }
            let mut chunk = [0u8; 4096];
            let mut rb = ReadBuf::new(&mut chunk);
            match Pin::new(&mut self.tcp).poll_read(cx, &mut rb) {
                Poll::Ready(Ok(())) if rb.filled().is_empty() => return Poll::Ready(Ok(None)),
                Poll::Ready(Ok(())) => self.inbound.extend_from_slice(rb.filled()),
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    /// Copies what is ready into `buf`; false when nothing is.
    fn give(&mut self, buf: &mut ReadBuf<'_>) -> bool {
        if self.given >= self.ready.len() {
            return false;
        }
        let n = buf.remaining().min(self.ready.len() - self.given);
        buf.put_slice(&self.ready[self.given..self.given + n]);
        self.given += n;
        true
    }

    /// Makes `reply` the next thing lettre reads.
    fn set_ready(&mut self, reply: &[u8]) {
        self.ready.clear();
        self.ready.extend_from_slice(reply);
        self.given = 0;
    }
}

/// Where each of the first `n` whole replies in `buf` ends (fewer when `buf` holds fewer).
/// A reply is one or more lines; every line but the last has `-` after its code.
fn reply_ends(buf: &[u8], n: usize) -> Vec<usize> {
    let mut ends = Vec::with_capacity(n);
    let mut at = 0;
    while ends.len() < n {
        let Some(nl) = memchr::memchr(b'\n', &buf[at..]) else {
            break;
        };
        let line = &buf[at..at + nl];
        at += nl + 1;
        if line.get(3) != Some(&b'-') {
            ends.push(at);
        }
    }
    ends
}

/// Whether an EHLO reply offers PIPELINING.
fn offers_pipelining(reply: &[u8]) -> bool {
    reply.split(|&b| b == b'\n').any(|line| {
        let keyword = line.get(4..).unwrap_or(b"").trim_ascii();
        keyword.eq_ignore_ascii_case(b"PIPELINING")
    })
}

impl AsyncWrite for SmtpStream {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        this.wrote(buf);
        this.pending.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    /// Held until the next read: see the module docs.
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        match this.poll_send(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut this.tcp).poll_shutdown(cx),
            other => other,
        }
    }
}

impl AsyncRead for SmtpStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if this.failed {
            return Poll::Ready(Ok(()));
        }
        if this.give(buf) {
            return Poll::Ready(Ok(()));
        }
        this.in_body = false;
        let (ehlo, data) = match this.awaited {
            Awaited::Provisional => {
                this.set_ready(PROVISIONAL);
                this.awaited = Awaited::PLAIN;
                this.give(buf);
                return Poll::Ready(Ok(()));
            }
            Awaited::Server { ehlo, data } => (ehlo, data),
        };
        match this.poll_send(cx) {
            Poll::Ready(Ok(())) => {}
            other => return other,
        }
        if !ehlo && !data && this.held == 0 {
            // Nothing to look at: the server's bytes go straight through.
            if !this.inbound.is_empty() {
                let n = buf.remaining().min(this.inbound.len());
                buf.put_slice(&this.inbound[..n]);
                this.inbound.drain(..n);
                return Poll::Ready(Ok(()));
            }
            return Pin::new(&mut this.tcp).poll_read(cx, buf);
        }
        let ends = match this.poll_replies(cx, this.held + 1) {
            Poll::Ready(Ok(Some(ends))) => ends,
            Poll::Ready(Ok(None)) => {
                // The server hung up mid-reply: hand on what came, then the end.
                std::mem::swap(&mut this.ready, &mut this.inbound);
                this.inbound.clear();
                this.given = 0;
                this.held = 0;
                this.give(buf);
                return Poll::Ready(Ok(()));
            }
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => return Poll::Pending,
        };
        // The first refusal among the held commands' replies stands for the whole
        // transaction; else the reply to the command lettre waits for (the last).
        let all = *ends.last().expect("at least one reply");
        let (mut start, mut end) = (0, all);
        for &e in &ends {
            if e == all || this.inbound[start] != b'2' {
                end = e;
                break;
            }
            start = e;
        }
        let last = end == all;
        this.ready.clear();
        this.ready.extend_from_slice(&this.inbound[start..end]);
        this.given = 0;
        this.inbound.drain(..all);
        this.held = 0;
        this.awaited = Awaited::PLAIN;
        if last && ehlo {
            this.pipelining = offers_pipelining(&this.ready);
        }
        this.in_body = last && data && this.ready.first() == Some(&b'3');
        this.give(buf);
        Poll::Ready(Ok(()))
    }
}

impl lettre::transport::smtp::client::AsyncTokioStream for SmtpStream {
    fn peer_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.tcp.peer_addr()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lettre::transport::smtp::client::AsyncSmtpConnection;
    use lettre::transport::smtp::extension::ClientId;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A server that greets, then for each step reads once (one segment, as it arrived)
    /// and answers with the step's reply. Returns what each read got.
    async fn scripted(
        steps: &'static [&'static str],
    ) -> (std::net::SocketAddr, tokio::task::JoinHandle<Vec<String>>) {
        scripted_in_pieces(steps, usize::MAX).await
    }

    /// As [`scripted`], with each reply sent `piece` bytes at a time, a segment each.
    async fn scripted_in_pieces(
        steps: &'static [&'static str],
        piece: usize,
    ) -> (std::net::SocketAddr, tokio::task::JoinHandle<Vec<String>>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            crate::delivery::test_server::converse(&mut s, steps, piece).await
        });
        (addr, server)
    }

    /// lettre's connection over an `SmtpStream`, greeted and past EHLO.
    async fn connect(
        addr: std::net::SocketAddr,
    ) -> Result<AsyncSmtpConnection, lettre::transport::smtp::Error> {
        let tcp = TcpStream::connect(addr).await.unwrap();
        AsyncSmtpConnection::connect_with_transport(
            Box::new(SmtpStream::new(tcp)),
            &ClientId::Domain("t.example".into()),
        )
        .await
    }

    fn envelope() -> lettre::address::Envelope {
        lettre::address::Envelope::new(
            Some("a@x.example".parse().unwrap()),
            vec!["b@y.example".parse().unwrap()],
        )
        .unwrap()
    }

    const MESSAGE: &[u8] = b"Subject: hi\r\n\r\nbody";

    #[tokio::test]
    async fn offered_pipelining_sends_a_message_in_two_round_trips() {
        let (addr, server) = scripted(&[
            "250-test\r\n250-PIPELINING\r\n250 8BITMIME\r\n",
            "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n",
            "250 2.0.0 Queued as 42\r\n",
            "221 Bye\r\n",
        ])
        .await;
        let mut c = connect(addr).await.unwrap();
        let reply = c.send(&envelope(), MESSAGE).await.unwrap();
        assert_eq!(reply.message().collect::<Vec<_>>(), ["2.0.0 Queued as 42"]);
        c.quit().await.unwrap();
        let reads = server.await.unwrap();
        assert_eq!(
            reads,
            [
                "EHLO t.example\r\n",
                "MAIL FROM:<a@x.example>\r\nRCPT TO:<b@y.example>\r\nDATA\r\n",
                "Subject: hi\r\n\r\nbody\r\n.\r\n",
                "QUIT\r\n",
            ],
            "the envelope and DATA in one segment, the body and its dot in one"
        );
    }

    #[tokio::test]
    async fn a_reply_without_end_is_refused_not_held_forever() {
        let endless: &'static str = Box::leak("250-more\r\n".repeat(8_000).into_boxed_str());
        let steps: &'static [&'static str] = Box::leak(Box::new([endless]));
        let (addr, _server) = scripted(steps).await;
        let e = connect(addr).await.err().expect("no reply ever ends");
        assert!(e.to_string().contains("too long"), "{e}");
    }

    #[tokio::test]
    async fn without_pipelining_each_command_waits_for_its_reply() {
        let (addr, server) = scripted(&[
            "250-test\r\n250 8BITMIME\r\n",
            "250 Ok\r\n",
            "250 Ok\r\n",
            "354 Go\r\n",
            "250 Queued\r\n",
        ])
        .await;
        let mut c = connect(addr).await.unwrap();
        c.send(&envelope(), MESSAGE).await.unwrap();
        let reads = server.await.unwrap();
        assert_eq!(
            reads[1..],
            [
                "MAIL FROM:<a@x.example>\r\n",
                "RCPT TO:<b@y.example>\r\n",
                "DATA\r\n",
                "Subject: hi\r\n\r\nbody\r\n.\r\n",
            ]
        );
    }

    #[tokio::test]
    async fn a_refused_recipient_is_reported_as_the_server_said() {
        // The replies whole, then three bytes at a time with the refusal on two lines: they
        // are gathered whole either way.
        for (steps, piece, said) in [
            (
                &[
                    "250-test\r\n250 PIPELINING\r\n",
                    "250 2.1.0 Ok\r\n550 5.1.1 <b@y.example>: No such user\r\n554 5.5.1 No valid recipients\r\n",
                    "221 Bye\r\n",
                ],
                usize::MAX,
                &["No such user"][..],
            ),
            (
                &[
                    "250-test\r\n250-PIPELINING\r\n250 8BITMIME\r\n",
                    "250 2.1.0 Ok\r\n550-5.1.1 No such\r\n550 5.1.1 user\r\n554 5.5.1 No valid recipients\r\n",
                    "221 Bye\r\n",
                ],
                3,
                &["No such", "user"][..],
            ),
        ] {
            let (addr, server) = scripted_in_pieces(steps, piece).await;
            let mut c = connect(addr).await.unwrap();
            let e = c.send(&envelope(), MESSAGE).await.unwrap_err();
            assert!(e.is_permanent(), "{e}");
            for words in said {
                assert!(
                    e.to_string().contains(words),
                    "every line of the reply: {e}"
                );
            }
            let reads = server.await.unwrap();
            assert_eq!(
                reads[1],
                "MAIL FROM:<a@x.example>\r\nRCPT TO:<b@y.example>\r\nDATA\r\n"
            );
            assert_eq!(
                reads[2], "QUIT\r\n",
                "the transaction's later replies were dropped; lettre closes the connection"
            );
        }
    }

    #[tokio::test]
    async fn held_writes_leave_together_when_the_stream_reads_or_shuts_down() {
        let (addr, server) = scripted(&["250 ok\r\n", ""]).await;
        let mut c = SmtpStream::new(TcpStream::connect(addr).await.unwrap());
        let mut greeting = [0u8; 16];
        c.read_exact(&mut greeting).await.unwrap();
        c.write_all(b"NOOP").await.unwrap();
        c.flush().await.unwrap();
        c.write_all(b"\r\n").await.unwrap();
        c.flush().await.unwrap();
        let mut reply = [0u8; 8];
        c.read_exact(&mut reply).await.unwrap();
        assert_eq!(&reply, b"250 ok\r\n");
        c.write_all(b"QUIT\r\n").await.unwrap();
        c.shutdown().await.unwrap();
        assert_eq!(server.await.unwrap(), ["NOOP\r\n", "QUIT\r\n"]);
    }

    #[tokio::test]
    async fn starttls_ends_pipelining() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let tcp = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let mut s = SmtpStream::new(tcp);
        s.pipelining = true;
        s.wrote(b"MAIL FROM:<a@x.example>\r\n");
        assert_eq!((s.awaited, s.held), (Awaited::Provisional, 1));
        s.held = 0;
        s.wrote(b"STARTTLS\r\n");
        assert!(!s.pipelining, "what follows is encrypted above the stream");
        s.wrote(b"MAIL FROM:<a@x.example>\r\n");
        assert_eq!(s.held, 0);
        assert!(matches!(s.awaited, Awaited::Server { .. }));
        // A base64 line of AUTH LOGIN is never taken for a command.
        s.pipelining = true;
        s.wrote(b"MAILbG9naW4=\r\n");
        assert_eq!(s.held, 0);
    }

    #[test]
    fn replies_end_at_their_last_line() {
        let buf = b"250-a\r\n250 b\r\n354 go\r\n550 partial";
        assert_eq!(reply_ends(buf, 5), vec![14, 22]);
        assert_eq!(reply_ends(buf, 1), vec![14]);
        assert!(offers_pipelining(
            b"250-smtp.example\r\n250-PIPELINING\r\n250 8BITMIME\r\n"
        ));
        assert!(offers_pipelining(b"250-x\r\n250 pipelining\r\n"));
        assert!(!offers_pipelining(
            b"250-x\r\n250-XPIPELININGX\r\n250 SIZE\r\n"
        ));
    }
}
