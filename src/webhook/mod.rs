//! Webhooks: what happens to people (subscribed, unsubscribed, clicked, bounced, …), POSTed
//! as signed JSON to the endpoints of `[[webhook]]`. The store queues each event in the
//! transaction that records it; [`Sender`] takes due ones from that queue with a lease,
//! POSTs them (10 s time-out), and retries failures with exponential backoff and jitter for
//! 24 hours before keeping them as failed (`rapport webhooks failed`, `webhooks retry ID`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::config::Project;
use crate::site::SiteHandle;
use crate::store::{HookClaim, HookRoutes, Store, StoreError, now};

/// How long an endpoint has to answer.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// Deliveries claimed at once.
const BATCH: i64 = 256;

/// Requests in flight at once.
const IN_FLIGHT: usize = 32;

/// The routes of a project's `[[webhook]]` endpoints, for [`Store::set_hook_routes`].
pub fn routes(project: &Project) -> HookRoutes {
    let mut r = HookRoutes::default();
    for w in &project.webhooks {
        r.add(w.url.as_str(), &w.events);
    }
    r
}

/// The `Rapport-Signature` header of `body` sent at `t` (Unix seconds): `t=T,v1=HEX`, where
/// HEX is HMAC-SHA256 with the endpoint's secret over `"{t}.{body}"`. The time is signed
/// too, so a receiver can refuse a replay of an old request.
pub fn signature(secret: &[u8], t: i64, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// When to try again after `attempts` failed ones: 30 s (or `base`) doubled each time, at
/// most 4 hours, each wait drawn between half and all of that ("equal jitter", so that an
/// endpoint back from an outage is not hit by every retry at once). `None` once the next
/// try would fall after `give_up_at`.
pub fn next_attempt(base: Duration, attempts: i64, at: i64, give_up_at: i64) -> Option<i64> {
    use rand::Rng;
    let exp = attempts.clamp(1, 30) as u32 - 1;
    let full = (base.as_secs_f64() * 2f64.powi(exp as i32)).min(4.0 * 3_600.0);
    let wait = rand::rng().random_range(full / 2.0..=full).ceil() as i64;
    let next = at + wait.max(1);
    (next <= give_up_at).then_some(next)
}

/// Sends queued webhooks until told to stop.
#[derive(Clone)]
pub struct Sender {
    store: Store,
    site: SiteHandle,
    client: reqwest::Client,
    backoff: Duration,
    lease: Duration,
    wake: Arc<tokio::sync::Notify>,
}

/// What one POST came to.
enum Answer {
    Taken,
    Refused(String),
}

impl Sender {
    /// A sender over `store`'s queue, reading endpoints and secrets from `site`; failed
    /// attempts wait `backoff` (doubling) before the next. What it claims stays its own for
    /// `lease`, renewed while it sends: if the process dies, another (or the next) picks
    /// the deliveries up that long after.
    pub fn new(store: Store, site: SiteHandle, backoff: Duration, lease: Duration) -> Sender {
        let client = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .user_agent(concat!("rapport/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("a TLS backend is compiled in");
        Sender {
            store,
            site,
            client,
            backoff,
            lease: lease.max(Duration::from_secs(1)),
            wake: Arc::default(),
        }
    }

    /// Makes the sender look at the queue now rather than at its next second.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Sends one batch of due webhooks; returns how many were claimed.
    pub async fn run_once(&self) -> Result<usize, StoreError> {
        self.store.reclaim_expired_hooks().await?;
        let lease = self.lease.as_secs() as i64;
        let claimed = self.store.claim_hooks(BATCH, lease).await?;
        let n = claimed.len();
        let ids: Vec<i64> = claimed.iter().map(|c| c.id).collect();
        // Each endpoint's URL and secret, looked up once for the batch, not per request.
        let site = self.site.get();
        let mut targets: HashMap<String, Result<(url::Url, String), String>> = HashMap::new();
        for c in &claimed {
            targets.entry(c.endpoint.clone()).or_insert_with(|| {
                let hook = site
                    .project
                    .webhooks
                    .iter()
                    .find(|w| w.url.as_str() == c.endpoint)
                    .ok_or_else(|| {
                        format!(
                            "{} is no longer a [[webhook]] in campaigns.toml",
                            c.endpoint
                        )
                    })?;
                Ok((hook.url.clone(), hook.secret()?))
            });
        }
        let targets = &targets;
        let sending = futures_util::stream::iter(claimed)
            .map(|c| async move {
                let a = match &targets[&c.endpoint] {
                    Ok((url, secret)) => self.post(&c, url, secret).await,
                    Err(why) => Answer::Refused(why.clone()),
                };
                (c, a)
            })
            .buffer_unordered(IN_FLIGHT)
            .collect::<Vec<(HookClaim, Answer)>>();
        // The claim is renewed while the batch is out (a batch of slow endpoints takes
        // longer than a lease), so that no other sender takes these meanwhile.
        let renewing = async {
            loop {
                tokio::time::sleep(self.lease / 3).await;
                if let Err(e) = self.store.renew_hook_lease(&ids, lease).await {
                    tracing::warn!(error = %e, "cannot renew the claim on webhooks being sent");
                }
            }
        };
        let answers = tokio::select! {
            a = sending => a,
            _ = renewing => unreachable!("renewing never ends"),
        };
        let mut taken = Vec::new();
        for (c, a) in answers {
            match a {
                Answer::Taken => taken.push(c.id),
                Answer::Refused(why) => {
                    let retry = next_attempt(self.backoff, c.attempts, now(), c.give_up_at);
                    match retry {
                        Some(at) => tracing::warn!(endpoint = %c.endpoint, event = %c.event_id,
                            attempts = c.attempts, retry_at = at, "webhook not taken: {why}"),
                        None => tracing::error!(endpoint = %c.endpoint, event = %c.event_id,
                            attempts = c.attempts, "webhook given up after 24 hours: {why}"),
                    }
                    self.store.hook_failed(c.id, &why, retry).await?;
                }
            }
        }
        self.store.hooks_sent(&taken).await?;
        Ok(n)
    }

    async fn post(&self, c: &HookClaim, url: &url::Url, secret: &str) -> Answer {
        let sent = self
            .client
            .post(url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("Rapport-Event-Id", &c.event_id)
            .header(
                "Rapport-Signature",
                signature(secret.as_bytes(), now(), &c.body),
            )
            .body(c.body.clone())
            .send()
            .await;
        match sent {
            Ok(r) if r.status().is_success() => Answer::Taken,
            Ok(r) => Answer::Refused(format!("the endpoint answered {}", r.status())),
            Err(e) if e.is_timeout() => {
                Answer::Refused(format!("no answer within {} s", TIMEOUT.as_secs()))
            }
            Err(e) => Answer::Refused(format!("cannot reach the endpoint: {e}")),
        }
    }

    /// Sends until `stop` turns true: a batch whenever something is due, else a look at
    /// the queue every second (or when woken).
    pub async fn run(self, mut stop: tokio::sync::watch::Receiver<bool>) {
        loop {
            if *stop.borrow() {
                return;
            }
            let claimed = match self.run_once().await {
                Ok(n) => n,
                Err(e) => {
                    tracing::error!(error = %e, "webhook sender cannot reach the store; trying again in a second");
                    0
                }
            };
            if claimed > 0 {
                continue;
            }
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = stop.changed() => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hmac_of_time_and_body() {
        // Computed independently with Python's hmac module.
        assert_eq!(
            signature(b"whsec", 1_700_000_000, r#"{"a":1}"#),
            "t=1700000000,v1=8ad37ba156048ae0e0a5533c75cdf26fee88b07f93cb57ee4c80adb053012032"
        );
    }

    #[test]
    fn backoff_doubles_with_jitter_and_stops_after_the_window() {
        let base = Duration::from_secs(30);
        for attempts in 1..=12 {
            let full = (30.0 * 2f64.powi(attempts as i32 - 1)).min(14_400.0);
            let next = next_attempt(base, attempts, 1_000, i64::MAX).unwrap() - 1_000;
            assert!(
                (full / 2.0).floor() as i64 <= next && next <= full.ceil() as i64,
                "attempt {attempts}: {next}"
            );
        }
        assert_eq!(next_attempt(base, 1, 1_000, 1_010), None);
        assert!(next_attempt(base, 1, 1_000, 1_030).is_some());
    }
}
