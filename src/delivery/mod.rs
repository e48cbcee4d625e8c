//! Delivery: the one seam through which every message leaves rapport. By default messages
//! are written as `.eml` files to the outbox folder; with `RAPPORT_SMTP_URL` they go to an
//! SMTP server over pooled connections. Failures say whether a retry can help.

mod smtp;
pub mod worker;

use std::path::{Path, PathBuf};

use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncFileTransport, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

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
}

/// Where messages go.
#[derive(Clone)]
pub enum Transport {
    /// `.eml` files in a folder: the embedded default, and what a newcomer opens.
    Outbox {
        dir: PathBuf,
        files: AsyncFileTransport<Tokio1Executor>,
    },
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

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl Transport {
    /// An outbox folder, created if missing.
    pub fn outbox(dir: &Path) -> Result<Transport, TransportError> {
        std::fs::create_dir_all(dir).map_err(|e| TransportError::Outbox(dir.to_path_buf(), e))?;
        Ok(Transport::Outbox {
            dir: dir.to_path_buf(),
            files: AsyncFileTransport::new(dir),
        })
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
            return Ok(Transport::Smtps { url: shown, smtp });
        }
        let config =
            smtp::SmtpConfig::from_url(url, ehlo_domain).map_err(TransportError::SmtpUrl)?;
        Ok(Transport::Smtp {
            url: shown,
            pool: std::sync::Arc::new(smtp::SmtpPool::new(config, pool_size)),
        })
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
        match self {
            Transport::Outbox { dir, .. } => format!("outbox folder {}", dir.display()),
            Transport::Smtp { url, .. } | Transport::Smtps { url, .. } => format!("SMTP {url}"),
        }
    }

    /// Hands one message over.
    pub async fn send(&self, message: Message) -> Result<(), SendError> {
        match self {
            Transport::Outbox { files, dir } => {
                files
                    .send(message)
                    .await
                    .map(|_| ())
                    .map_err(|e| SendError {
                        permanent: false,
                        message: format!(
                            "cannot write to the outbox folder {}: {e}",
                            dir.display()
                        ),
                    })
            }
            Transport::Smtp { pool, .. } => pool.send(&message).await.map_err(|e| SendError {
                permanent: e.is_permanent(),
                message: format!("SMTP: {e}"),
            }),
            Transport::Smtps { smtp, .. } => {
                smtp.send(message).await.map(|_| ()).map_err(smtp_error)
            }
        }
    }
}
