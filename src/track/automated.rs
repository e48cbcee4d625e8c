//! Which clicks and opens are not people. Link scanners (corporate mail gateways, security
//! products) follow every link of a message as it arrives, and mail-privacy proxies fetch
//! every image. Their hits are recorded with `automated = 1` and left out of response
//! rates; they stay in the raw data.
//!
//! A hit is automated when any of these holds:
//! - it is a `HEAD` request (browsers send GET);
//! - the user agent names a known scanner, proxy or HTTP library;
//! - it comes within [`TOO_SOON_SECS`] seconds of the message being accepted by the mail
//!   server (no person opens and clicks that fast);
//! - it makes [`ALL_AT_ONCE_LINKS`] or more different links of the same message clicked within
//!   [`ALL_AT_ONCE_SECS`] seconds (the earlier clicks of that burst are flagged too, and so
//!   are that message's further clicks within the window).

/// Seconds after sending within which a hit is not a person.
pub const TOO_SOON_SECS: i64 = 5;
/// Distinct links of one message clicked within [`ALL_AT_ONCE_SECS`] that make a burst.
pub const ALL_AT_ONCE_LINKS: i64 = 3;
/// The width of a burst.
pub const ALL_AT_ONCE_SECS: i64 = 10;

/// Lower-case fragments of user agents that are scanners, proxies or tools, not people.
const KNOWN: &[&str] = &[
    "bot",
    "crawler",
    "spider",
    "slurp",
    "preview",
    "scanner",
    "python-requests",
    "python-urllib",
    "curl/",
    "wget/",
    "go-http-client",
    "java/",
    "okhttp",
    "libwww",
    "httpclient",
    "barracuda",
    "proofpoint",
    "mimecast",
    "symantec",
    "messagelabs",
    "trend micro",
    "trendmicro",
    "forcepoint",
    "zscaler",
    "fortinet",
    "sophos",
    "cisco",
    "ironport",
    "safelinks",
    "safe links",
    "microsoft office",
    "ms-office",
    "outlook-ios-linkpreview",
    "googleimageproxy",
    "google-safety",
    "yahoomailproxy",
    "ymailproxy",
    "linkchecker",
    "headlesschrome",
    "phantomjs",
];

/// Whether the request itself (method, user agent, timing) marks the hit as automated.
pub fn looks_automated(
    is_head: bool,
    user_agent: Option<&str>,
    seconds_since_send: Option<i64>,
) -> bool {
    if is_head {
        return true;
    }
    let ua = user_agent.unwrap_or("").to_ascii_lowercase();
    if ua.trim().is_empty() || KNOWN.iter().any(|k| ua.contains(k)) {
        return true;
    }
    seconds_since_send.is_some_and(|s| (0..TOO_SOON_SECS).contains(&s))
}

/// The links of each message that people clicked in the last [`ALL_AT_ONCE_SECS`], as
/// this process saw them. It decides which clicks can change a message's count of
/// distinct links, so that only those are counted again in the database (which also holds
/// the clicks other `serve` processes recorded); repeated clicks on a link already seen
/// cost nothing. Messages found to be bursts are remembered for the same window, so their
/// further clicks are recorded as automated at once.
#[derive(Debug, Default)]
pub struct RecentClicks {
    /// (delivery, link) → last click.
    seen: std::collections::HashMap<(i64, i64), i64>,
    /// delivery → when its burst was found.
    bursts: std::collections::HashMap<i64, i64>,
    pruned_at: i64,
}

impl RecentClicks {
    /// Notes a person's click; true when that link of that message was not clicked within
    /// the window before, i.e. the message's count of distinct links may have grown.
    pub fn note(&mut self, delivery: i64, link: i64, at: i64) -> bool {
        let before = self.seen.insert((delivery, link), at);
        before.is_none_or(|t| at - t >= ALL_AT_ONCE_SECS)
    }

    /// Whether the message was found to be a burst within the window before `at`.
    pub fn in_burst(&self, delivery: i64, at: i64) -> bool {
        self.bursts
            .get(&delivery)
            .is_some_and(|t| at - t < ALL_AT_ONCE_SECS)
    }

    /// Remembers that the message's clicks are a burst.
    pub fn burst(&mut self, delivery: i64, at: i64) {
        self.bursts.insert(delivery, at);
    }

    /// Forgets what is older than the window (at most once a second).
    pub fn prune(&mut self, now: i64) {
        if now == self.pruned_at {
            return;
        }
        self.pruned_at = now;
        self.seen.retain(|_, t| now - *t < ALL_AT_ONCE_SECS);
        self.bursts.retain(|_, t| now - *t < ALL_AT_ONCE_SECS);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";

    #[test]
    fn people_and_machines() {
        assert!(!looks_automated(false, Some(FIREFOX), Some(3600)));
        assert!(looks_automated(true, Some(FIREFOX), Some(3600)), "HEAD");
        assert!(looks_automated(
            false,
            Some("Mozilla/5.0 (compatible; Barracuda Sentinel)"),
            Some(3600)
        ));
        assert!(looks_automated(
            false,
            Some("python-requests/2.31"),
            Some(3600)
        ));
        assert!(
            looks_automated(false, None, Some(3600)),
            "no user agent at all"
        );
        assert!(
            looks_automated(false, Some(FIREFOX), Some(2)),
            "two seconds after sending"
        );
        assert!(!looks_automated(false, Some(FIREFOX), None));
    }

    #[test]
    fn recent_clicks_ask_again_only_for_new_links() {
        let mut r = RecentClicks::default();
        assert!(r.note(1, 10, 100), "first click on a link");
        assert!(!r.note(1, 10, 101), "the same link again");
        assert!(r.note(1, 11, 101), "another link of the message");
        assert!(r.note(2, 10, 101), "the same link id in another message");
        assert!(r.note(1, 10, 101 + ALL_AT_ONCE_SECS), "after the window");
        assert!(!r.in_burst(1, 105));
        r.burst(1, 105);
        assert!(r.in_burst(1, 106));
        assert!(!r.in_burst(1, 105 + ALL_AT_ONCE_SECS));
        r.prune(200);
        assert!(r.seen.is_empty() && r.bursts.is_empty());
    }
}
