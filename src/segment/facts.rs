//! Behaviour facts: what one profile did, read from the events table (content selection,
//! `unless`, previews). Whole audiences are selected in SQL (`store::AudienceQuery`).

use super::rule::{Activity, Behaviour, Facts};
use crate::store::{EventKind, EventSummary, Store, StoreError};

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
