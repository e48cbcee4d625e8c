//! A scripted SMTP server for the delivery tests (the pool's and the stream's).

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The replies to one message on a server that offers PIPELINING: EHLO, then the envelope
/// and DATA together, then the body.
pub(super) const ONE_MESSAGE: &[&str] = &[
    "250-test\r\n250 PIPELINING\r\n",
    "250 Ok\r\n250 Ok\r\n354 Go\r\n",
    "250 Queued\r\n",
];

/// Greets on `s`, then for each step reads once (one segment, as it arrived) and answers
/// with the step's reply, `piece` bytes at a time (a segment each). Returns what each read
/// got.
pub(super) async fn converse(s: &mut TcpStream, steps: &[&str], piece: usize) -> Vec<String> {
    s.set_nodelay(true).unwrap();
    s.write_all(b"220 test ESMTP\r\n").await.unwrap();
    let mut reads = Vec::new();
    for reply in steps {
        let mut got = vec![0u8; 4096];
        let n = s.read(&mut got).await.unwrap();
        reads.push(String::from_utf8_lossy(&got[..n]).into_owned());
        for chunk in reply.as_bytes().chunks(piece) {
            s.write_all(chunk).await.unwrap();
            if piece != usize::MAX {
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
        }
    }
    reads
}

/// A small message for the pool to send.
pub(super) fn message() -> lettre::Message {
    lettre::Message::builder()
        .from("a@x.example".parse().unwrap())
        .to("b@y.example".parse().unwrap())
        .subject("hi")
        .body(String::from("body"))
        .unwrap()
}
