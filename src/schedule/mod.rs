//! When campaigns go out: newsletter schedules (cron, in UTC or `RAPPORT_TIMEZONE`), manual
//! runs, and the triggers of welcome and follow-up campaigns.
//!
//! The scheduler is a once-a-second tick rather than a timer per job: each tick asks croner
//! for the last occurrence of every schedule and creates the run for that occurrence if it
//! does not exist. A run missed while rapport was down is therefore started at the next
//! start, as long as it is within the grace window (24 h by default) and after rapport first
//! saw that schedule (so a new install, a fresh database or a changed schedule never sends a
//! "missed" run from before); the run's unique (campaign, period key) makes sure it is
//! created once, however many `serve` processes share the database. The time comes from a
//! [`Clock`], which tests set.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::campaign::{Campaign, Kind, Trigger};
use crate::clock::Clock;
use crate::site::Site;
use crate::store::{AudienceQuery, EventKind, RunOrigin, Store, StoreError, now};

/// A run that was created and queued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queued {
    pub campaign: String,
    pub run_id: i64,
    pub recipients: i64,
}

fn audience_query(site: &Site, campaign: &Campaign, at: i64) -> AudienceQuery {
    let seg = site
        .segments
        .get(&campaign.audience)
        .or_else(|| site.segments.get(crate::segment::EVERYONE));
    let rule = seg
        .map(|s| s.rule.clone())
        .unwrap_or(crate::segment::Rule::All(Vec::new()));
    AudienceQuery::new(&rule, at)
}

/// The time after which a newsletter sent to a `quarterly` reader keeps them out of a run
/// started at `at`.
fn quarterly_since(at: i64) -> i64 {
    at - crate::profile::QUARTERLY_GAP_DAYS * 86_400
}

/// The period key of a scheduled occurrence: its time in RFC 3339.
fn period_key(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Starts every scheduled run that is due at `at` (not older than `grace`, and not from
/// before rapport first saw the schedule, which this call records when it is new), with
/// schedules read in UTC, and finishes queuing runs a crash interrupted. Returns the runs
/// this call queued.
pub async fn tick(
    store: &Store,
    site: &Site,
    at: DateTime<Utc>,
    grace: Duration,
) -> Result<Vec<Queued>, StoreError> {
    tick_in(store, site, at, grace, chrono_tz::UTC).await
}

/// [`tick`] with schedules read in time zone `tz` (`RAPPORT_TIMEZONE`): `0 0 9 1 * *` is
/// 09:00 on the 1st there. Period keys stay in UTC.
pub async fn tick_in(
    store: &Store,
    site: &Site,
    at: DateTime<Utc>,
    grace: Duration,
    tz: chrono_tz::Tz,
) -> Result<Vec<Queued>, StoreError> {
    let mut out = Vec::new();
    let local = at.with_timezone(&tz);
    for campaign in site.campaigns.iter().filter(|c| c.kind == Kind::Newsletter) {
        let Some(schedule) = &campaign.schedule else {
            continue;
        };
        let Ok(last) = schedule.cron.find_previous_occurrence(&local, true) else {
            continue;
        };
        let first_seen = store
            .schedule_first_seen(&campaign.id, &schedule.source, at.timestamp())
            .await?;
        let last = last.with_timezone(&Utc);
        let late = (at - last).to_std().unwrap_or_default();
        if late > grace || last.timestamp() < first_seen {
            continue;
        }
        let key = period_key(last);
        if let Some(run_id) = store
            .create_run(&campaign.id, &key, RunOrigin::Schedule)
            .await?
        {
            let recipients = store
                .queue_audience(
                    run_id,
                    &campaign.id,
                    &audience_query(site, campaign, now()),
                    now(),
                    quarterly_since(at.timestamp()),
                )
                .await?;
            tracing::info!(campaign = %campaign.id, period = %key, run_id, recipients, "scheduled run queued");
            out.push(Queued {
                campaign: campaign.id.clone(),
                run_id,
                recipients,
            });
        }
    }
    for (run_id, campaign_id) in store.runs_still_queuing().await? {
        if let Some(campaign) = site.campaign(&campaign_id) {
            let recipients = store
                .queue_audience(
                    run_id,
                    &campaign_id,
                    &audience_query(site, campaign, now()),
                    now(),
                    quarterly_since(at.timestamp()),
                )
                .await?;
            tracing::warn!(campaign = %campaign_id, run_id, recipients, "finished queuing an interrupted run");
            out.push(Queued {
                campaign: campaign_id,
                run_id,
                recipients,
            });
        }
    }
    Ok(out)
}

/// `rapport run CAMPAIGN`: a new run now, whatever the schedule says; each call is a new run.
pub async fn manual_run(
    store: &Store,
    site: &Site,
    campaign: &Campaign,
) -> Result<Queued, StoreError> {
    Ok(manual_run_once(store, site, campaign, None).await?.0)
}

/// A manual run, as [`manual_run`]; with an `idempotency_key` (the API's `Idempotency-Key`),
/// a later call with the same key (a client's retry) returns the first call's run instead of
/// starting another. The flag says whether this call started it.
pub async fn manual_run_once(
    store: &Store,
    site: &Site,
    campaign: &Campaign,
    idempotency_key: Option<&str>,
) -> Result<(Queued, bool), StoreError> {
    use sha2::Digest;
    let key = match idempotency_key {
        // Hashed: the key is the client's, of any length and alphabet.
        Some(k) => format!(
            "api-{}",
            &hex::encode(sha2::Sha256::digest(k.as_bytes()))[..32]
        ),
        None => format!(
            "manual-{}-{}",
            Utc::now().format("%Y%m%dT%H%M%S"),
            uuid::Uuid::new_v4().simple()
        ),
    };
    let Some(run_id) = store
        .create_run(&campaign.id, &key, RunOrigin::Manual)
        .await?
    else {
        let (run_id, recipients) = store
            .run_with_key(&campaign.id, &key)
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("run {key} vanished")))?;
        let queued = Queued {
            campaign: campaign.id.clone(),
            run_id,
            recipients,
        };
        return Ok((queued, false));
    };
    let recipients = store
        .queue_audience(
            run_id,
            &campaign.id,
            &audience_query(site, campaign, now()),
            now(),
            quarterly_since(now()),
        )
        .await?;
    let queued = Queued {
        campaign: campaign.id.clone(),
        run_id,
        recipients,
    };
    Ok((queued, true))
}

/// Something a person did that may start triggered campaigns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Happened<'a> {
    /// They confirmed their subscription (welcome campaigns).
    Confirmed,
    /// They clicked a link, with its tag, in a message of `campaign`.
    Click {
        tag: Option<&'a str>,
        campaign: Option<&'a str>,
    },
    /// They opened a message of `campaign`.
    Open { campaign: Option<&'a str> },
    /// They answered or changed questions.
    ProfileUpdate,
    /// Another system reported that they did this (a declared event name).
    Event { name: &'a str },
}

fn starts(campaign: &Campaign, what: &Happened<'_>) -> bool {
    match (campaign.kind, &campaign.trigger, what) {
        (Kind::Welcome, _, Happened::Confirmed) => true,
        (Kind::FollowUp, Some(Trigger::Click { tag: want }), Happened::Click { tag, .. }) => {
            want.is_none() || want.as_deref() == *tag
        }
        (Kind::FollowUp, Some(Trigger::Open { campaign: want }), Happened::Open { campaign }) => {
            want.is_none() || want.as_deref() == *campaign
        }
        (Kind::FollowUp, Some(Trigger::ProfileUpdate), Happened::ProfileUpdate) => true,
        (Kind::FollowUp, Some(Trigger::Event { name: want }), Happened::Event { name }) => {
            want == name
        }
        _ => false,
    }
}

/// Queues the welcome / follow-ups that `what` starts for a profile, each due after its
/// delay. A person gets each of them once. Returns how many were queued.
pub async fn trigger(
    store: &Store,
    site: &Site,
    profile_id: i64,
    what: Happened<'_>,
) -> Result<usize, StoreError> {
    trigger_many(store, site, &[(profile_id, what)]).await
}

/// [`trigger`] for many (profile, what happened) pairs at once, e.g. a batch of clicks:
/// one statement per campaign started rather than one per person.
pub async fn trigger_many(
    store: &Store,
    site: &Site,
    happened: &[(i64, Happened<'_>)],
) -> Result<usize, StoreError> {
    let mut queued = 0;
    for campaign in &site.campaigns {
        let mut people: Vec<i64> = happened
            .iter()
            .filter(|(_, what)| starts(campaign, what))
            .map(|(id, _)| *id)
            .collect();
        if people.is_empty() {
            continue;
        }
        people.sort_unstable();
        people.dedup();
        let run_id = store.standing_run(&campaign.id).await?;
        let due = now() + campaign.delay.as_secs() as i64;
        let n = store
            .queue_deliveries(run_id, &campaign.id, &people, due)
            .await?;
        if n > 0 {
            tracing::info!(campaign = %campaign.id, people = n, due, "triggered deliveries queued");
        }
        queued += n as usize;
    }
    Ok(queued)
}

/// The event kind a [`Happened`] is recorded as, when it is one.
pub fn event_kind(what: &Happened<'_>) -> Option<EventKind> {
    match what {
        Happened::Click { .. } => Some(EventKind::Click),
        Happened::Open { .. } => Some(EventKind::Open),
        Happened::ProfileUpdate => Some(EventKind::ProfileUpdate),
        Happened::Event { .. } => Some(EventKind::External),
        Happened::Confirmed => None,
    }
}

/// The sunset at `at` (when `[sunset]` is set): queues the re-permission campaign for
/// everyone silent for `after_days`, due now, and makes `lapsed` those who did not click
/// it within `profile::LAPSE_DAYS`. Returns (queued, lapsed).
pub async fn sunset(store: &Store, site: &Site, at: i64) -> Result<(u64, usize), StoreError> {
    let Some(sunset) = &site.project.sunset else {
        return Ok((0, 0));
    };
    let Some(campaign) = site.campaign(&sunset.campaign) else {
        return Ok((0, 0));
    };
    let silent = store
        .silent_since(at - sunset.after_days * 86_400, &campaign.id)
        .await?;
    let mut queued = 0;
    if !silent.is_empty() {
        let run_id = store.standing_run(&campaign.id).await?;
        queued = store
            .queue_deliveries(run_id, &campaign.id, &silent, now())
            .await?;
        tracing::info!(campaign = %campaign.id, people = queued, "sunset: re-permission queued");
    }
    let lapsed = store
        .lapse(&campaign.id, at - crate::profile::LAPSE_DAYS * 86_400)
        .await?;
    if !lapsed.is_empty() {
        tracing::info!(
            people = lapsed.len(),
            "sunset: lapsed after no click on the re-permission message"
        );
    }
    Ok((queued, lapsed.len()))
}

/// How often (by the scheduler's clock) the sunset looks for the silent and the lapsed.
const SUNSET_EVERY: i64 = 3600;

/// Runs [`tick`] every second, at the time `clock` says, until `stop` turns true; and the
/// [`sunset`] every hour of that clock (at once when the clock is moved).
pub async fn run(
    store: Store,
    site: crate::site::SiteHandle,
    clock: Clock,
    grace: Duration,
    tz: chrono_tz::Tz,
    on_queued: impl Fn(),
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut last_sunset: Option<i64> = None;
    loop {
        if *stop.borrow() {
            break;
        }
        let at = clock.now();
        match tick_in(&store, &site.get(), at, grace, tz).await {
            Ok(q) if !q.is_empty() => on_queued(),
            Ok(_) => {}
            Err(e) => {
                tracing::error!(error = %e, "scheduler tick failed; trying again in a second")
            }
        }
        let t = at.timestamp();
        if last_sunset.is_none_or(|last| t - last >= SUNSET_EVERY || t < last) {
            last_sunset = Some(t);
            match sunset(&store, &site.get(), t).await {
                Ok((queued, _)) if queued > 0 => on_queued(),
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e, "sunset failed; trying again in an hour"),
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = stop.changed() => {}
        }
    }
}
