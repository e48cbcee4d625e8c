//! Behaviour facts: what one profile did, read from the events table (content selection,
//! `unless`, previews; `Store::event_facts` reads them). Whole audiences are selected in SQL
//! (`store::AudienceQuery`).

use super::rule::{Behaviour, Facts};
use crate::event::EventSummary;

fn since(now: i64, within_days: Option<u32>) -> i64 {
    within_days.map_or(i64::MIN, |d| now - i64::from(d) * 86_400)
}

/// The behaviour of one profile: the last time of each (kind, campaign, tag) it has.
#[derive(Debug, Clone, Default)]
pub struct EventFacts {
    pub events: Vec<EventSummary>,
    pub now: i64,
}

impl Facts for EventFacts {
    fn has(&self, b: &Behaviour) -> bool {
        let q = b.event_query();
        let (kind, campaign, tag, within) = (q.kind, q.campaign, q.tag, q.within_days);
        let from = since(self.now, within);
        let times: i64 = self
            .events
            .iter()
            .filter(|e| {
                e.kind == kind
                    && (campaign.is_none() || e.campaign.as_deref() == campaign)
                    && (tag.is_none() || e.tag.as_deref() == tag)
                    && e.last_at >= from
            })
            .map(|e| e.count)
            .sum();
        times >= i64::from(q.times)
    }
}
