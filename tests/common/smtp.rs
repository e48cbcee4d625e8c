//! A real SMTP server for tests: Postfix's `smtp-sink` on a free loopback port, writing each
//! received message (with its envelope as `X-*` headers) to a file in a temporary folder.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::Mail;

/// A running `smtp-sink`; stopped when dropped.
pub struct SmtpSink {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Child,
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const SINK: &str = "/usr/sbin/smtp-sink";

impl SmtpSink {
    /// Starts a sink, or `None` (with a note) where Postfix is not installed. Under CI the
    /// sink must be there: `.ci/run` installs it.
    pub fn start(extra_args: &[&str]) -> Option<SmtpSink> {
        SmtpSink::start_on(super::free_port(), extra_args)
    }

    /// Starts a sink on a given port (to replace a stopped one).
    pub fn start_on(port: u16, extra_args: &[&str]) -> Option<SmtpSink> {
        if !Path::new(SINK).exists() {
            assert!(
                std::env::var("CI").is_err(),
                "{SINK} missing under CI: .ci/run installs postfix"
            );
            eprintln!("SKIPPED: {SINK} not installed (apt-get install postfix)");
            return None;
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let mut perms = std::fs::metadata(dir.path()).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o777);
        std::fs::set_permissions(dir.path(), perms).unwrap();
        let mut cmd = Command::new(SINK);
        // As root, smtp-sink must drop privileges to write its files.
        if running_as_root() {
            cmd.args(["-u", "nobody"]);
        }
        cmd.args(extra_args)
            .arg("-d")
            .arg(format!("{}/%M.", dir.path().display()))
            .arg(format!("127.0.0.1:{port}"))
            .arg("100")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = cmd.spawn().expect("start smtp-sink");
        let sink = SmtpSink { port, dir, child };
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Some(sink);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("smtp-sink did not start listening on port {port}");
    }

    /// `smtp://127.0.0.1:PORT` for `RAPPORT_SMTP_URL`.
    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// Every message received so far.
    pub fn messages(&self) -> Vec<Mail> {
        let mut files: Vec<_> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .collect();
        files.sort();
        files
            .iter()
            .filter_map(|p| std::fs::read(p).ok())
            .filter(|b| complete(b))
            .map(|b| Mail::parse(&b))
            .collect()
    }

    /// How many messages each recipient got.
    pub fn per_recipient(&self) -> std::collections::BTreeMap<String, usize> {
        let mut m = std::collections::BTreeMap::new();
        for mail in self.messages() {
            let rcpt = mail
                .headers
                .iter()
                .find(|(k, _)| k == "X-Rcpt-Args")
                .map(|(_, v)| v.clone())
                .unwrap_or_default();
            *m.entry(rcpt).or_insert(0) += 1;
        }
        m
    }

    /// Stops the sink now.
    pub fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits until `n` messages have arrived.
    pub async fn wait_for(&self, n: usize) -> Vec<Mail> {
        for _ in 0..800 {
            let m = self.messages();
            if m.len() >= n {
                return m;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!(
            "expected {n} messages at smtp-sink, got {}",
            self.messages().len()
        );
    }
}

pub fn running_as_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0"))
        .unwrap_or(false)
}

/// Whether smtp-sink has written the whole message: it writes a dump file as the data
/// arrives, so a file read too soon holds the start of a message. A multipart message
/// (every message rapport sends) is whole once its closing boundary is there.
fn complete(raw: &[u8]) -> bool {
    let text = String::from_utf8_lossy(raw);
    let Some(end) = text.find("\r\n\r\n").or_else(|| text.find("\n\n")) else {
        return false;
    };
    if !text[..end].to_ascii_lowercase().contains("multipart/") {
        return !raw.is_empty();
    }
    text.trim_end().ends_with("--")
}
