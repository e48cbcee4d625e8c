//! Behaviour facts: what a profile did, read from the events table either for one profile
//! (content selection, `unless`, previews) or for a whole audience at once.

use std::collections::{HashMap, HashSet};

use super::rule::{Activity, Behaviour, Facts};
use crate::store::{EventFilter, EventKind, EventSummary, Store, StoreError};

fn since(now: i64, within_days: Option<u32>) -> i64 {
    within_days.map_or(i64::MIN, |d| now - i64::from(d) * 86_400)
}

/// The behaviour of one profile: the last time of each (kind, campaign, tag) it has.
#[derive(Debug, Clone, Default)]
pub struct EventFacts {
    pub events: Vec<EventSummary>,
    pub now: i64,
}

impl EventFacts {
    /// Reads one profile's behaviour.
    pub async fn load(store: &Store, profile_id: i64, now: i64) -> Result<EventFacts, StoreError> {
        Ok(EventFacts {
            events: store.event_summary(profile_id).await?,
            now,
        })
    }
}

impl Facts for EventFacts {
    fn has(&self, b: &Behaviour) -> bool {
        let (kind, campaign, tag, within) = parts(b);
        let from = since(self.now, within);
        self.events.iter().any(|e| {
            e.kind == kind
                && (campaign.is_none() || e.campaign.as_deref() == campaign)
                && (tag.is_none() || e.tag.as_deref() == tag)
                && e.last_at >= from
        })
    }
}

/// A behaviour as an event query: kind, campaign, tag, window.
fn parts(b: &Behaviour) -> (EventKind, Option<&str>, Option<&str>, Option<u32>) {
    match b {
        Behaviour::ClickedTag { tag, within_days } => {
            (EventKind::Click, None, Some(tag.as_str()), *within_days)
        }
        Behaviour::Campaign {
            activity,
            campaign,
            within_days,
        } => {
            let kind = match activity {
                Activity::Received => EventKind::Sent,
                Activity::Opened => EventKind::Open,
                Activity::Clicked => EventKind::Click,
            };
            (kind, Some(campaign.as_str()), None, *within_days)
        }
    }
}

/// The behaviour of a whole audience: for each fact the rules ask about, the ids of the
/// profiles that have it. Loaded once per run, then each profile is checked in memory.
#[derive(Debug, Clone, Default)]
pub struct AudienceFacts {
    pub sets: HashMap<Behaviour, HashSet<i64>>,
}

impl AudienceFacts {
    /// Loads the profiles behind each behaviour the rules mention, as of `now`.
    pub async fn load(
        store: &Store,
        rules: &[&super::Rule],
        now: i64,
    ) -> Result<AudienceFacts, StoreError> {
        let mut wanted = Vec::new();
        for r in rules {
            r.behaviours(&mut wanted);
        }
        let mut sets = HashMap::new();
        for b in wanted {
            let (kind, campaign, tag, within) = parts(&b);
            let filter = EventFilter {
                kind,
                campaign,
                tag,
                since: since(now, within),
            };
            let ids = store.profiles_with(&filter).await?;
            sets.insert(b, ids);
        }
        Ok(AudienceFacts { sets })
    }

    /// A view of the facts for one profile.
    pub fn of(&self, profile_id: i64) -> ProfileView<'_> {
        ProfileView {
            facts: self,
            id: profile_id,
        }
    }
}

/// [`AudienceFacts`] seen from one profile.
pub struct ProfileView<'a> {
    facts: &'a AudienceFacts,
    id: i64,
}

impl Facts for ProfileView<'_> {
    fn has(&self, b: &Behaviour) -> bool {
        self.facts.sets.get(b).is_some_and(|s| s.contains(&self.id))
    }
}
