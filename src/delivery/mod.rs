//! Delivery: the one seam through which every message leaves rapport. By default messages
//! are written as `.eml` files to the outbox folder; with `RAPPORT_SMTP_URL` they go to an
//! SMTP server over pooled connections. Failures say whether a retry can help.

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
    /// An SMTP server (plain, STARTTLS or TLS as the URL says), connections pooled.
    Smtp {
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

    /// An SMTP transport from a lettre URL; the EHLO name is the sender's domain rather than
    /// this machine's host name.
    pub fn smtp(url: &str, ehlo_domain: &str) -> Result<Transport, TransportError> {
        let smtp = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .map_err(|e| TransportError::SmtpUrl(e.to_string()))?
            .hello_name(ClientId::Domain(ehlo_domain.to_string()))
            .build();
        Ok(Transport::Smtp {
            url: crate::store::redact(url),
            smtp,
        })
    }

    /// SMTP when a URL is given, the outbox folder otherwise.
    pub fn from_settings(
        smtp_url: Option<&str>,
        outbox_dir: &Path,
        ehlo_domain: &str,
    ) -> Result<Transport, TransportError> {
        match smtp_url {
            Some(url) => Transport::smtp(url, ehlo_domain),
            None => Transport::outbox(outbox_dir),
        }
    }

    /// Says where mail goes, for logs.
    pub fn describe(&self) -> String {
        match self {
            Transport::Outbox { dir, .. } => format!("outbox folder {}", dir.display()),
            Transport::Smtp { url, .. } => format!("SMTP {url}"),
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
            Transport::Smtp { smtp, .. } => {
                smtp.send(message).await.map(|_| ()).map_err(|e| SendError {
                    permanent: e.is_permanent(),
                    message: format!("SMTP: {e}"),
                })
            }
        }
    }
}
