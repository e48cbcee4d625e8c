//! The time that decisions by the calendar read (which scheduled newsletter is due): the
//! system clock in production, a clock a test sets in tests, so that no test depends on
//! the day it runs on.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{DateTime, Utc};

/// A source of "now" for the scheduler; cheap to clone (clones share a manual clock).
#[derive(Debug, Clone, Default)]
pub enum Clock {
    /// The machine's clock.
    #[default]
    System,
    /// A clock that stands still at the second it was last set to (tests).
    Manual(Arc<AtomicI64>),
}

impl Clock {
    /// A manual clock standing at `at`.
    pub fn manual(at: DateTime<Utc>) -> Clock {
        Clock::Manual(Arc::new(AtomicI64::new(at.timestamp())))
    }

    /// The current time by this clock.
    pub fn now(&self) -> DateTime<Utc> {
        match self {
            Clock::System => Utc::now(),
            Clock::Manual(t) => {
                DateTime::from_timestamp(t.load(Ordering::SeqCst), 0).unwrap_or_default()
            }
        }
    }

    /// Moves a manual clock to `at` (every clone sees it). The system clock cannot be set:
    /// returns false and changes nothing.
    pub fn set(&self, at: DateTime<Utc>) -> bool {
        match self {
            Clock::System => false,
            Clock::Manual(t) => {
                t.store(at.timestamp(), Ordering::SeqCst);
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_stands_still_and_clones_share_it() {
        let at = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let clock = Clock::manual(at);
        let clone = clock.clone();
        assert_eq!(clone.now(), at);
        assert!(clock.set(at + chrono::Duration::hours(1)));
        assert_eq!(clone.now(), at + chrono::Duration::hours(1));
        assert!(!Clock::System.set(at));
    }
}
