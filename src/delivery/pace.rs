//! Pacing per receiving domain (`RAPPORT_DOMAIN_RATES`): each domain gets a lane of send
//! slots, one every `1/rate` seconds. A message takes the next slot of its domain's lane and
//! waits for it when it is near; when it is further off ([`HOLD_AT_MOST`]), the delivery is
//! put back in the queue for that time instead of holding a sending slot that messages to
//! other domains could use. A deferral (4xx) from a domain doubles the spacing of its lane
//! (up to [`MAX_SLOWDOWN`] times); each accepted message halves it back. Other domains are
//! not touched: one provider's throttling never slows the rest of a run.
//!
//! Hand-written because it is ours: the rate limiters we know (governor) answer "now or
//! not", while a queue of deliveries wants "when", to put a message back for that moment.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::DomainRates;

/// The longest a message waits in the worker for its slot; later slots are queued again.
pub const HOLD_AT_MOST: Duration = Duration::from_secs(2);
/// The most a domain's deferrals stretch its spacing.
pub const MAX_SLOWDOWN: u32 = 64;

/// What a message to a domain should do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pace {
    /// Not paced, or its slot is now: send.
    Now,
    /// Its slot is this close: wait, then send.
    Wait(Duration),
    /// Its slot is further off: queue it again for then (the slot is not taken).
    Later(Duration),
}

#[derive(Debug)]
struct Lane {
    next: Instant,
    slowdown: u32,
}

/// The lanes of every paced domain. Shared by a worker's sends.
#[derive(Debug)]
pub struct Pacer {
    rates: DomainRates,
    lanes: Mutex<HashMap<String, Lane>>,
}

impl Pacer {
    /// Lanes at these rates.
    pub fn new(rates: DomainRates) -> Pacer {
        Pacer {
            rates,
            lanes: Mutex::new(HashMap::new()),
        }
    }

    fn spacing(rate: u32, slowdown: u32) -> Duration {
        Duration::from_secs_f64(f64::from(slowdown) / f64::from(rate))
    }

    /// Takes the next slot of `domain` (lower-case) at `now`, unless it is further off than
    /// [`HOLD_AT_MOST`].
    pub fn pace(&self, domain: &str, now: Instant) -> Pace {
        let Some(rate) = self.rates.for_domain(domain) else {
            return Pace::Now;
        };
        let mut lanes = self.lanes.lock().unwrap_or_else(|e| e.into_inner());
        let lane = lanes.entry(domain.to_string()).or_insert(Lane {
            next: now,
            slowdown: 1,
        });
        let slot = lane.next.max(now);
        let wait = slot - now;
        if wait > HOLD_AT_MOST {
            return Pace::Later(wait);
        }
        lane.next = slot + Pacer::spacing(rate, lane.slowdown);
        if wait.is_zero() {
            Pace::Now
        } else {
            Pace::Wait(wait)
        }
    }

    /// `domain` deferred a message (4xx): its lane's spacing doubles, from `now` on.
    pub fn deferred(&self, domain: &str, now: Instant) {
        let Some(rate) = self.rates.for_domain(domain) else {
            return;
        };
        let mut lanes = self.lanes.lock().unwrap_or_else(|e| e.into_inner());
        let lane = lanes.entry(domain.to_string()).or_insert(Lane {
            next: now,
            slowdown: 1,
        });
        lane.slowdown = (lane.slowdown * 2).min(MAX_SLOWDOWN);
        lane.next = lane.next.max(now) + Pacer::spacing(rate, lane.slowdown);
    }

    /// `domain` accepted a message: its lane's spacing halves back towards its rate.
    pub fn accepted(&self, domain: &str) {
        let mut lanes = self.lanes.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(lane) = lanes.get_mut(domain) {
            lane.slowdown = (lane.slowdown / 2).max(1);
        }
    }

    /// How many times its rate's spacing a domain's lane is at (1 when never deferred).
    pub fn slowdown(&self, domain: &str) -> u32 {
        let lanes = self.lanes.lock().unwrap_or_else(|e| e.into_inner());
        lanes.get(domain).map_or(1, |l| l.slowdown)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pacer() -> Pacer {
        Pacer::new(DomainRates::parse("slow.example=2,*=10").unwrap())
    }

    #[test]
    fn slots_are_spaced_per_domain_and_far_ones_go_back_to_the_queue() {
        let p = pacer();
        let t = Instant::now();
        let ms = Duration::from_millis;
        // Two a second for slow.example: now, +500 ms, ..., +2 s; the next is too far.
        let slow: Vec<Pace> = (0..6).map(|_| p.pace("slow.example", t)).collect();
        assert_eq!(
            slow,
            [
                Pace::Now,
                Pace::Wait(ms(500)),
                Pace::Wait(ms(1000)),
                Pace::Wait(ms(1500)),
                Pace::Wait(ms(2000)),
                Pace::Later(ms(2500)),
            ]
        );
        // A refused slot is not taken: asking later finds it.
        assert_eq!(p.pace("slow.example", t + ms(2500)), Pace::Now);
        // Other domains have their own lanes at `*`'s rate.
        assert_eq!(p.pace("a.example", t), Pace::Now);
        assert_eq!(p.pace("b.example", t), Pace::Now);
        assert_eq!(p.pace("a.example", t), Pace::Wait(ms(100)));
        // Not paced without `*`.
        let named = Pacer::new(DomainRates::parse("slow.example=1").unwrap());
        assert_eq!(named.pace("x.example", t), Pace::Now);
        assert_eq!(named.pace("x.example", t), Pace::Now);
    }

    #[test]
    fn a_deferral_slows_that_domain_only_and_acceptance_recovers() {
        let p = pacer();
        let t = Instant::now();
        let ms = Duration::from_millis;
        assert_eq!(p.pace("a.example", t), Pace::Now);
        p.deferred("a.example", t);
        p.deferred("a.example", t);
        assert_eq!(p.slowdown("a.example"), 4);
        // 100 ms spacing, then 200 ms, then 400 ms: the next slot is 700 ms out.
        assert_eq!(p.pace("a.example", t), Pace::Wait(ms(700)));
        assert_eq!(p.pace("b.example", t), Pace::Now, "b is not slowed");
        assert_eq!(p.pace("b.example", t), Pace::Wait(ms(100)));
        p.accepted("a.example");
        assert_eq!(p.slowdown("a.example"), 2);
        for _ in 0..10 {
            p.deferred("a.example", t);
        }
        assert_eq!(p.slowdown("a.example"), MAX_SLOWDOWN);
    }
}
