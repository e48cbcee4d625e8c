//! After the send: bounces (DSNs), complaints (ARF) and auto-replies coming back, read
//! from the SMTP listener of `serve` (`RAPPORT_BOUNCE_BIND`) or from files
//! (`rapport bounces`), attributed to the delivery they are about and recorded with the
//! suppression policy (see `Store::record_returned`).
//!
//! A report counts only when it names a delivery through something rapport signed: the
//! VERP envelope sender (`track::verp`) it was sent back to or quotes, or the
//! `List-Unsubscribe` link of the quoted original. An address named in a report is never
//! enough by itself, so a forged report cannot take someone off the list.

mod listener;
pub mod mailbox;
mod report;

pub use listener::{ListenError, Listener};
pub use report::{Failure, Kind, Report, ReportError, parse};

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::store::{Recorded, Returned, Store, StoreError};
use crate::track::{Origin, Purpose, Signer, origin_of};

/// What became of one message that came back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum Outcome {
    /// A permanent failure recorded; the address is `bounced`.
    HardBounce,
    /// A transient failure recorded (the address is `bounced` when it was one too many).
    SoftBounce,
    /// A complaint recorded; the address is `complained`.
    Complaint,
    /// The same report about the same delivery came before.
    Duplicate,
    /// An out-of-office or other automatic answer: ignored.
    AutoReply,
    /// A report that reports nothing to act on, or no report at all.
    Ignored,
    /// A bounce or complaint that names no delivery of this installation.
    Unattributed,
    /// Not readable as mail.
    Unreadable,
}

impl Outcome {
    /// Every outcome, in the order `/metrics` and `rapport bounces` list them.
    pub const ALL: [Outcome; 8] = [
        Outcome::HardBounce,
        Outcome::SoftBounce,
        Outcome::Complaint,
        Outcome::Duplicate,
        Outcome::AutoReply,
        Outcome::Ignored,
        Outcome::Unattributed,
        Outcome::Unreadable,
    ];

    /// The name in `/metrics` and logs.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// Messages taken in so far, per outcome (for `/metrics` and the CLI's summary).
#[derive(Debug, Default)]
pub struct Tally([AtomicU64; 8]);

impl Tally {
    fn add(&self, o: Outcome) {
        self.0[Outcome::ALL.iter().position(|x| *x == o).unwrap_or(0)]
            .fetch_add(1, Ordering::Relaxed);
    }

    /// (outcome, count) for every outcome.
    pub fn counts(&self) -> Vec<(Outcome, u64)> {
        Outcome::ALL
            .iter()
            .zip(&self.0)
            .map(|(o, n)| (*o, n.load(Ordering::Relaxed)))
            .collect()
    }
}

/// Takes in messages that came back: reads, attributes, records. Cheap to clone.
#[derive(Clone)]
pub struct Intake {
    store: Store,
    signer: Signer,
    soft_limit: i64,
    tally: Arc<Tally>,
}

impl Intake {
    /// An intake recording into `store`, verifying with `signer`, marking an address
    /// bounced after `soft_limit` soft bounces.
    pub fn new(store: Store, signer: Signer, soft_limit: i64) -> Intake {
        Intake {
            store,
            signer,
            soft_limit,
            tally: Arc::default(),
        }
    }

    /// The counts so far.
    pub fn tally(&self) -> &Tally {
        &self.tally
    }

    /// Reads one message (`envelope_to`: the SMTP recipients it came for, when it came by
    /// SMTP) and records what it reports. Only a failing store is an error.
    pub async fn take(&self, raw: Vec<u8>, envelope_to: &[String]) -> Result<Outcome, StoreError> {
        // Parsing is CPU work on input of any size: off the async threads.
        let parsed = tokio::task::spawn_blocking(move || parse(&raw))
            .await
            .unwrap_or_else(|_| Err(ReportError::panicked()));
        let outcome = match parsed {
            Err(e) => {
                tracing::warn!(error = %e, "a message to the bounce address could not be read");
                Outcome::Unreadable
            }
            Ok(report) => self.record(&report, envelope_to).await?,
        };
        self.tally.add(outcome);
        Ok(outcome)
    }

    async fn record(&self, report: &Report, envelope_to: &[String]) -> Result<Outcome, StoreError> {
        let returned = match &report.kind {
            Kind::AutoReply => return Ok(Outcome::AutoReply),
            Kind::Other => return Ok(Outcome::Ignored),
            Kind::Bounce(failures) => {
                // A DSN about one message: the hard failure if any, else the first.
                let Some(f) = failures.iter().find(|f| f.hard).or(failures.first()) else {
                    return Ok(Outcome::Ignored);
                };
                Returned::Bounce {
                    hard: f.hard,
                    status: &f.status,
                    diagnostic: f.diagnostic.as_deref().unwrap_or_default(),
                }
            }
            Kind::Complaint { feedback_type } => Returned::Complaint { feedback_type },
        };
        let Some(delivery) = self.delivery(report, envelope_to) else {
            tracing::info!(message_id = ?report.quoted_message_id, kind = ?returned,
                "a report names no delivery of ours (no VERP address or signed link): counted, not applied");
            return Ok(Outcome::Unattributed);
        };
        let recorded = self
            .store
            .record_returned(delivery, &returned, self.soft_limit, crate::store::now())
            .await?;
        tracing::info!(delivery, kind = ?returned, ?recorded, "report recorded");
        Ok(match (recorded, &returned) {
            (Recorded::UnknownDelivery, _) => Outcome::Unattributed,
            (Recorded::Duplicate, _) => Outcome::Duplicate,
            (_, Returned::Complaint { .. }) => Outcome::Complaint,
            (_, Returned::Bounce { hard: true, .. }) => Outcome::HardBounce,
            (_, Returned::Bounce { hard: false, .. }) => Outcome::SoftBounce,
        })
    }

    /// The delivery a report is about: a VERP address it came to or quotes, or the signed
    /// unsubscribe link of the quoted message.
    pub fn delivery(&self, report: &Report, envelope_to: &[String]) -> Option<i64> {
        let verp = envelope_to
            .iter()
            .chain(&report.addresses)
            .filter_map(|a| a.rsplit_once('@').map(|(local, _)| local))
            .find_map(|local| self.signer.bounce_delivery(local.trim_start_matches('<')));
        verp.or_else(|| {
            let header = report.quoted_unsubscribe.as_deref()?;
            header.split(['<', '>', ',']).find_map(|link| {
                let token = link.trim().split("/unsubscribe/").nth(1)?;
                let claims = self
                    .signer
                    .verify(Purpose::Unsubscribe, token.trim(), crate::store::now())
                    .ok()?;
                match origin_of(&claims.nonce) {
                    Origin::Delivery(id) => Some(id),
                    Origin::Campaign(_) => None,
                }
            })
        })
    }
}
