//! Delivery: the one seam through which every message leaves rapport. By default messages
//! are written as `.eml` files to the outbox folder; with `RAPPORT_SMTP_URL` they go to an
//! SMTP server over pooled connections. Failures say whether a retry can help.

pub mod pace;
mod smtp;
mod stream;
#[cfg(test)]
mod test_server;

pub use stream::SmtpStream;
pub mod worker;

use std::path::{Path, PathBuf};

use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

/// Writes one message to `dir` as `RANDOM.eml`: first under a hidden temporary name, then
/// renamed (atomic within a folder).
async fn write_eml(dir: &Path, raw: &[u8]) -> std::io::Result<()> {
    let name = format!("{:032x}", rand::random::<u128>());
    let tmp = dir.join(format!(".{name}.tmp"));
    tokio::fs::write(&tmp, raw).await?;
    tokio::fs::rename(&tmp, dir.join(format!("{name}.eml"))).await
}

/// The message as a mailbox stores it: a `Return-Path` line with the envelope sender (the
/// VERP address when a bounce domain is set), then the message.
fn with_return_path(message: &Message) -> Vec<u8> {
    let from = message
        .envelope()
        .from()
        .map(ToString::to_string)
        .unwrap_or_default();
    let mut raw = format!("Return-Path: <{from}>\r\n").into_bytes();
    raw.extend_from_slice(&message.formatted());
    raw
}

/// A failed send. `permanent` failures (SMTP 5xx) will not succeed on retry.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct SendError {
    pub permanent: bool,
    pub message: String,
}

fn smtp_error(e: lettre::transport::smtp::Error) -> SendError {
    SendError {
        permanent: e.is_permanent(),
        message: format!("SMTP: {e}"),
    }
}

/// A transport that could not be set up from the settings.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error(
        "RAPPORT_SMTP_URL is not a valid SMTP URL ({0}); write it like smtp://user:pass@host:587"
    )]
    SmtpUrl(String),
    #[error("cannot create the outbox folder {0}: {1}")]
    Outbox(PathBuf, std::io::Error),
    #[error("RAPPORT_DKIM_KEY_FILE {0}: {1}")]
    Dkim(PathBuf, String),
}

/// Reads a DKIM key: PEM PKCS#1 RSA (`-----BEGIN RSA PRIVATE KEY-----`) or a base64
/// Ed25519 seed, and signs for `domain` with `selector`. The signed headers are those a
/// receiver checks: From, To, Subject, Date, Message-ID, MIME-Version, Content-Type and the
/// List-Unsubscribe pair (RFC 8058 asks for them to be signed).
pub fn dkim_config(
    key_file: &Path,
    selector: &str,
    domain: &str,
) -> Result<lettre::message::dkim::DkimConfig, TransportError> {
    use lettre::message::dkim::{
        DkimCanonicalization, DkimCanonicalizationType, DkimConfig, DkimSigningAlgorithm,
        DkimSigningKey,
    };
    use lettre::message::header::HeaderName;
    let bad = |m: String| TransportError::Dkim(key_file.to_path_buf(), m);
    let text = std::fs::read_to_string(key_file).map_err(|e| bad(e.to_string()))?;
    let algorithm = if text.contains("-----BEGIN") {
        DkimSigningAlgorithm::Rsa
    } else {
        DkimSigningAlgorithm::Ed25519
    };
    let key = DkimSigningKey::new(text.trim(), algorithm).map_err(|e| {
        bad(format!(
            "not a PKCS#1 RSA PEM key or a base64 Ed25519 key ({e:?})"
        ))
    })?;
    let headers = [
        "From",
        "To",
        "Subject",
        "Date",
        "Message-ID",
        "MIME-Version",
        "Content-Type",
        "List-Unsubscribe",
        "List-Unsubscribe-Post",
    ]
    .into_iter()
    .map(HeaderName::new_from_ascii_str)
    .collect();
    let relaxed = DkimCanonicalization {
        header: DkimCanonicalizationType::Relaxed,
        body: DkimCanonicalizationType::Relaxed,
    };
    Ok(DkimConfig::new(
        selector.to_string(),
        domain.to_string(),
        key,
        headers,
        relaxed,
    ))
}

/// Where messages go.
#[derive(Clone)]
pub enum Route {
    /// `.eml` files in a folder: the embedded default, and what a newcomer opens.
    /// Each message is written whole under a hidden name, then renamed to `ID.eml`, so a
    /// program watching the folder never reads half a message.
    Outbox { dir: PathBuf },
    /// An SMTP server over `smtp://` (plain or STARTTLS): our pool of no-delay connections.
    Smtp {
        url: String,
        pool: std::sync::Arc<smtp::SmtpPool>,
    },
    /// An SMTP server over `smtps://` (implicit TLS): lettre's pooled transport.
    Smtps {
        url: String,
        smtp: AsyncSmtpTransport<Tokio1Executor>,
    },
}

/// The one way out for every message: a route, and DKIM signing when a key is configured.
#[derive(Clone)]
pub struct Transport {
    route: Route,
    dkim: Option<std::sync::Arc<lettre::message::dkim::DkimConfig>>,
}

impl From<Route> for Transport {
    fn from(route: Route) -> Transport {
        Transport { route, dkim: None }
    }
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl Transport {
    /// An outbox folder, created if missing.
    pub fn outbox(dir: &Path) -> Result<Transport, TransportError> {
        std::fs::create_dir_all(dir).map_err(|e| TransportError::Outbox(dir.to_path_buf(), e))?;
        Ok(Transport::from(Route::Outbox {
            dir: dir.to_path_buf(),
        }))
    }

    /// An SMTP transport from a lettre-style URL keeping up to `pool_size` connections; the
    /// EHLO name is the sender's domain rather than this machine's host name.
    pub fn smtp(
        url: &str,
        ehlo_domain: &str,
        pool_size: usize,
    ) -> Result<Transport, TransportError> {
        let shown = crate::store::redact(url);
        if url.starts_with("smtps:") {
            let smtp = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
                .map_err(|e| TransportError::SmtpUrl(e.to_string()))?
                .hello_name(ClientId::Domain(ehlo_domain.to_string()))
                .pool_config(lettre::transport::smtp::PoolConfig::new().max_size(pool_size as u32))
                .build();
            return Ok(Route::Smtps { url: shown, smtp }.into());
        }
        let config =
            smtp::SmtpConfig::from_url(url, ehlo_domain).map_err(TransportError::SmtpUrl)?;
        Ok(Route::Smtp {
            url: shown,
            pool: std::sync::Arc::new(smtp::SmtpPool::new(config, pool_size)),
        }
        .into())
    }

    /// Signs every message with DKIM (`d=` the sender's domain) from now on.
    pub fn with_dkim(mut self, dkim: lettre::message::dkim::DkimConfig) -> Transport {
        self.dkim = Some(std::sync::Arc::new(dkim));
        self
    }

    /// SMTP when a URL is given, the outbox folder otherwise.
    pub fn from_settings(
        smtp_url: Option<&str>,
        outbox_dir: &Path,
        ehlo_domain: &str,
        pool_size: usize,
    ) -> Result<Transport, TransportError> {
        match smtp_url {
            Some(url) => Transport::smtp(url, ehlo_domain, pool_size),
            None => Transport::outbox(outbox_dir),
        }
    }

    /// Says where mail goes, for logs.
    pub fn describe(&self) -> String {
        let route = match &self.route {
            Route::Outbox { dir, .. } => format!("outbox folder {}", dir.display()),
            Route::Smtp { url, .. } | Route::Smtps { url, .. } => format!("SMTP {url}"),
        };
        if self.dkim.is_some() {
            format!("{route}, DKIM-signed")
        } else {
            route
        }
    }

    /// Whether messages may carry 8-bit bodies: files may; an SMTP server must offer
    /// 8BITMIME, which our pool learns on connecting (until then messages are encoded).
    /// `smtps://` goes through lettre's transport, which does not tell: encoded.
    pub fn eight_bit(&self) -> bool {
        match &self.route {
            Route::Outbox { .. } => true,
            Route::Smtps { .. } => false,
            Route::Smtp { pool, .. } => pool.eight_bit(),
        }
    }

    /// Hands one message over.
    pub async fn send(&self, mut message: Message) -> Result<(), SendError> {
        if let Some(dkim) = &self.dkim {
            lettre::message::dkim::dkim_sign(&mut message, dkim);
        }
        match &self.route {
            Route::Outbox { dir } => {
                write_eml(dir, &with_return_path(&message))
                    .await
                    .map_err(|e| SendError {
                        permanent: false,
                        message: format!(
                            "cannot write to the outbox folder {}: {e}",
                            dir.display()
                        ),
                    })
            }
            Route::Smtp { pool, .. } => pool.send(&message).await.map_err(|e| SendError {
                permanent: e.is_permanent(),
                message: format!("SMTP: {e}"),
            }),
            Route::Smtps { smtp, .. } => smtp.send(message).await.map(|_| ()).map_err(smtp_error),
        }
    }
}
