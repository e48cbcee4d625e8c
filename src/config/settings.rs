//! Operator settings: where the data lives, how mail leaves, and limits. They come from
//! `RAPPORT_*` environment variables (and the CLI's global flags), never from the
//! marketer's files, so the same project directory runs on a laptop and in production.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Everything `serve` and the other commands need besides the marketer's files.
#[derive(Debug, Clone)]
pub struct Settings {
    /// sqlx URL: `sqlite://rapport.db` (default) or `postgres://...`.
    pub database_url: String,
    /// Prefix of every link in emails; default `http://` + the bind address.
    pub public_url: Option<String>,
    /// Where the default transport writes `.eml` files.
    pub outbox_dir: PathBuf,
    /// lettre SMTP URL; when set, mail goes out by SMTP instead of the outbox folder.
    pub smtp_url: Option<String>,
    /// Overrides the signing secret stored in the database.
    pub secret: Option<String>,
    /// How long a confirmation link stays valid.
    pub confirm_ttl: Duration,
    /// Opt-in submissions allowed per client address and minute; `None` turns the limit off.
    pub subscribe_per_minute: Option<u32>,
    /// Confirmation emails at most per address and 24 hours, whoever asks; `None`: no limit.
    pub confirm_per_day: Option<u32>,
    /// Take the client address from `X-Forwarded-For` (only behind a reverse proxy you run).
    pub trust_proxy: bool,
    /// SMTP connections kept open, and so messages in flight at once.
    pub smtp_pool: usize,
    /// Messages per second at most; `None` sends as fast as the server takes them.
    pub send_rate: Option<u32>,
    /// How late a scheduled run may still start (after downtime) before it is skipped.
    pub schedule_grace: Duration,
    /// The time zone schedules are read in (UTC by default).
    pub schedule_tz: chrono_tz::Tz,
    /// Attempts before a transiently failing delivery is given up.
    pub max_attempts: i64,
    /// Whether this process sends (false: web and scheduler only, e.g. a web-only instance).
    pub worker: bool,
    /// The token `/admin` asks for; generated on first start when unset.
    pub admin_token: Option<String>,
    /// DKIM: the private key file and the selector published in DNS.
    pub dkim: Option<(PathBuf, String)>,
    /// How long a claimed delivery stays with its worker without a renewal; after a crash,
    /// its deliveries are picked up again this long after the last renewal.
    pub delivery_lease: Duration,
    /// Time a client has to send its request headers, and then its body; also how long an
    /// idle connection stays open.
    pub http_timeout: Duration,
    /// HTTP connections served at once.
    pub max_connections: usize,
    /// `RAPPORT_BOUNCE_DOMAIN`: messages go out with VERP envelope senders
    /// `b-{token}@domain`, so bounces and complaints name their delivery.
    pub bounce_domain: Option<String>,
    /// `RAPPORT_BOUNCE_BIND`: where `serve` listens for bounces and complaints by SMTP.
    pub bounce_bind: Option<SocketAddr>,
    /// Soft bounces on different deliveries, with nothing opened or clicked between, that
    /// mark an address bounced.
    pub soft_bounce_limit: i64,
    /// `RAPPORT_DOMAIN_RATES`: messages per second per receiving domain, on top of
    /// `send_rate`; `None`: no pacing per domain.
    pub domain_rates: Option<DomainRates>,
    /// `RAPPORT_WEBHOOK_BACKOFF`: the wait after a webhook's first failed attempt (doubled
    /// after each further one, with jitter, for 24 hours).
    pub webhook_backoff: Duration,
    /// `RAPPORT_API_RATE`: requests per second each API token may make (bursts of four
    /// seconds' worth); more get 429.
    pub api_rate: u32,
    /// The clock the scheduler reads; the system clock except in tests (not an env setting).
    pub clock: crate::clock::Clock,
}

/// A setting that could not be read; the message names the variable and the fix.
#[derive(Debug, thiserror::Error)]
#[error("{var}={value:?}: {problem}")]
pub struct SettingError {
    pub var: &'static str,
    pub value: String,
    pub problem: String,
}

impl Settings {
    /// Defaults for a database URL, with the rest taken from the environment.
    pub fn from_env(database_url: String) -> Result<Settings, SettingError> {
        Settings::from_lookup(database_url, |k| std::env::var(k).ok())
    }

    /// Reads settings through `get` (the environment, or a map in tests).
    pub fn from_lookup(
        database_url: String,
        get: impl Fn(&str) -> Option<String>,
    ) -> Result<Settings, SettingError> {
        let non_empty = |k: &str| get(k).filter(|v| !v.trim().is_empty());
        // A duration of at least `min` seconds (`90s`, `2h`, `7d`), or `default` when unset.
        let duration =
            |var: &'static str, default: u64, min: u64| -> Result<Duration, SettingError> {
                match non_empty(var) {
                    None => Ok(Duration::from_secs(default)),
                    Some(v) => parse_duration(&v)
                        .and_then(|d| {
                            (d.as_secs() >= min)
                                .then_some(d)
                                .ok_or_else(|| format!("expected a duration of at least {min}s"))
                        })
                        .map_err(|problem| SettingError {
                            var,
                            value: v.clone(),
                            problem,
                        }),
                }
            };
        let confirm_ttl = duration("RAPPORT_CONFIRM_TTL", 7 * 24 * 3600, 1)?;
        let subscribe_per_minute = match non_empty("RAPPORT_SUBSCRIBE_LIMIT") {
            None => Some(60),
            Some(v) if matches!(v.trim(), "off" | "0" | "none") => None,
            Some(v) => Some(
                v.trim()
                    .trim_end_matches("/min")
                    .parse::<u32>()
                    .map_err(|_| SettingError {
                        var: "RAPPORT_SUBSCRIBE_LIMIT",
                        value: v.clone(),
                        problem:
                            "expected submissions per minute and client, like 60 or 60/min, or off"
                                .into(),
                    })?,
            ),
        };
        let trust_proxy = match non_empty("RAPPORT_TRUST_PROXY") {
            None => false,
            Some(v) => parse_bool(&v).ok_or_else(|| SettingError {
                var: "RAPPORT_TRUST_PROXY",
                value: v.clone(),
                problem: "expected true or false".into(),
            })?,
        };
        let number = |var: &'static str, default: u64, min: u64| -> Result<u64, SettingError> {
            match non_empty(var) {
                None => Ok(default),
                Some(v) => v
                    .trim()
                    .parse::<u64>()
                    .ok()
                    .filter(|n| *n >= min)
                    .ok_or_else(|| SettingError {
                        var,
                        value: v.clone(),
                        problem: format!("expected a whole number of at least {min}"),
                    }),
            }
        };
        let smtp_pool = number("RAPPORT_SMTP_POOL", 8, 1)? as usize;
        let http_timeout = duration("RAPPORT_HTTP_TIMEOUT", 10, 1)?;
        let max_connections = number("RAPPORT_MAX_CONNECTIONS", 1024, 1)? as usize;
        let confirm_per_day = match non_empty("RAPPORT_CONFIRM_LIMIT") {
            Some(v) if matches!(v.trim(), "off" | "none") => None,
            _ => Some(number("RAPPORT_CONFIRM_LIMIT", 5, 1)? as u32),
        };
        let send_rate = match non_empty("RAPPORT_SEND_RATE") {
            Some(v) if matches!(v.trim(), "off" | "0" | "none") => None,
            Some(_) => Some(number("RAPPORT_SEND_RATE", 0, 1)? as u32),
            None => None,
        };
        let max_attempts = number("RAPPORT_MAX_ATTEMPTS", 8, 1)? as i64;
        let schedule_grace = duration("RAPPORT_SCHEDULE_GRACE", 24 * 3600, 0)?;
        let worker = match non_empty("RAPPORT_WORKER") {
            None => true,
            Some(v) => parse_bool(&v).ok_or_else(|| SettingError {
                var: "RAPPORT_WORKER",
                value: v.clone(),
                problem: "expected on or off".into(),
            })?,
        };
        let delivery_lease = duration("RAPPORT_DELIVERY_LEASE", 60, 1)?;
        let dkim = match (
            non_empty("RAPPORT_DKIM_KEY_FILE"),
            non_empty("RAPPORT_DKIM_SELECTOR"),
        ) {
            (Some(f), Some(s)) => Some((PathBuf::from(f), s.trim().to_string())),
            (None, None) => None,
            (Some(f), None) => {
                return Err(SettingError {
                    var: "RAPPORT_DKIM_SELECTOR",
                    value: String::new(),
                    problem: format!(
                        "RAPPORT_DKIM_KEY_FILE={f} needs the selector published in DNS too"
                    ),
                });
            }
            (None, Some(s)) => {
                return Err(SettingError {
                    var: "RAPPORT_DKIM_KEY_FILE",
                    value: String::new(),
                    problem: format!("RAPPORT_DKIM_SELECTOR={s} needs the private key file too"),
                });
            }
        };
        let schedule_tz = match non_empty("RAPPORT_TIMEZONE") {
            None => chrono_tz::UTC,
            Some(v) => v
                .trim()
                .parse::<chrono_tz::Tz>()
                .map_err(|_| SettingError {
                    var: "RAPPORT_TIMEZONE",
                    value: v.clone(),
                    problem:
                        "expected an IANA time zone name, like Europe/Berlin or America/New_York"
                            .into(),
                })?,
        };
        let bounce_domain = optional(
            "RAPPORT_BOUNCE_DOMAIN",
            non_empty("RAPPORT_BOUNCE_DOMAIN"),
            parse_domain,
            "expected a domain name whose mail comes to rapport, like bounces.example.com",
        )?;
        let bounce_bind = optional(
            "RAPPORT_BOUNCE_BIND",
            non_empty("RAPPORT_BOUNCE_BIND"),
            |v| v.trim().parse::<SocketAddr>().ok(),
            "expected an address and port to listen on, like 127.0.0.1:2525",
        )?;
        if bounce_bind.is_some() && bounce_domain.is_none() {
            return Err(SettingError {
                var: "RAPPORT_BOUNCE_DOMAIN",
                value: String::new(),
                problem: "RAPPORT_BOUNCE_BIND listens for mail to the bounce domain: set RAPPORT_BOUNCE_DOMAIN too".into(),
            });
        }
        let domain_rates = match non_empty("RAPPORT_DOMAIN_RATES") {
            None => None,
            Some(v) => Some(DomainRates::parse(&v).map_err(|problem| SettingError {
                var: "RAPPORT_DOMAIN_RATES",
                value: v.clone(),
                problem,
            })?),
        };
        let soft_bounce_limit = number("RAPPORT_SOFT_BOUNCE_LIMIT", 3, 1)? as i64;
        let webhook_backoff = duration("RAPPORT_WEBHOOK_BACKOFF", 30, 1)?;
        let api_rate = number("RAPPORT_API_RATE", 50, 1)? as u32;
        let public_url = optional(
            "RAPPORT_PUBLIC_URL",
            non_empty("RAPPORT_PUBLIC_URL"),
            parse_public_url,
            "expected the http:// or https:// address people reach rapport at, like https://news.example.com (every link in every email starts with it)",
        )?;
        Ok(Settings {
            api_rate,
            webhook_backoff,
            domain_rates,
            bounce_domain,
            bounce_bind,
            soft_bounce_limit,
            schedule_tz,
            admin_token: non_empty("RAPPORT_ADMIN_TOKEN").map(|t| t.trim().to_string()),
            dkim,
            worker,
            delivery_lease,
            smtp_pool,
            send_rate,
            max_attempts,
            schedule_grace,
            database_url,
            public_url,
            outbox_dir: non_empty("RAPPORT_OUTBOX_DIR")
                .map_or_else(|| PathBuf::from("outbox"), PathBuf::from),
            smtp_url: non_empty("RAPPORT_SMTP_URL"),
            secret: non_empty("RAPPORT_SECRET"),
            confirm_ttl,
            subscribe_per_minute,
            confirm_per_day,
            http_timeout,
            max_connections,
            trust_proxy,
            clock: crate::clock::Clock::System,
        })
    }

    /// The public URL, or `http://` + the address the server listens on.
    pub fn public_url_for(&self, bind: SocketAddr) -> String {
        self.public_url
            .clone()
            .unwrap_or_else(|| format!("http://{bind}"))
    }
}

/// An optional setting's `value` read by `parse`; one that does not parse is refused with
/// `problem`, naming `var`.
fn optional<T>(
    var: &'static str,
    value: Option<String>,
    parse: impl FnOnce(&str) -> Option<T>,
    problem: &str,
) -> Result<Option<T>, SettingError> {
    let Some(value) = value else {
        return Ok(None);
    };
    match parse(&value) {
        Some(v) => Ok(Some(v)),
        None => Err(SettingError {
            var,
            value,
            problem: problem.into(),
        }),
    }
}

/// The public URL without its trailing `/`, when it is an http(s) address with a host and
/// neither query nor fragment (links are made by appending paths to it).
fn parse_public_url(v: &str) -> Option<String> {
    let v = v.trim();
    let url = url::Url::parse(v).ok()?;
    let fits = matches!(url.scheme(), "http" | "https")
        && url.host_str().is_some_and(|h| !h.is_empty())
        && url.query().is_none()
        && url.fragment().is_none();
    fits.then(|| v.trim_end_matches('/').to_string())
}

/// Messages per second per receiving domain: named domains, and `*` for each other domain
/// (without `*`, other domains are not paced).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainRates {
    /// (domain, rate), domains lower-cased.
    pub named: Vec<(String, u32)>,
    /// The rate of each domain not named.
    pub others: Option<u32>,
}

impl DomainRates {
    /// Reads `gmail.com=10,outlook.com=5,*=50`.
    pub fn parse(s: &str) -> Result<DomainRates, String> {
        let mut rates = DomainRates {
            named: Vec::new(),
            others: None,
        };
        for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let bad = || {
                format!(
                    "{item:?}: expected DOMAIN=MESSAGES_PER_SECOND pairs separated by commas, like gmail.com=10,outlook.com=5,*=50"
                )
            };
            let (domain, rate) = item.split_once('=').ok_or_else(bad)?;
            let rate: u32 = rate
                .trim()
                .parse()
                .ok()
                .filter(|r| *r > 0)
                .ok_or_else(bad)?;
            match domain.trim() {
                "*" => rates.others = Some(rate),
                d => {
                    let d = parse_domain(d).ok_or_else(bad)?;
                    if rates.named.iter().any(|(n, _)| *n == d) {
                        return Err(format!("{d} is given twice"));
                    }
                    rates.named.push((d, rate));
                }
            }
        }
        if rates.named.is_empty() && rates.others.is_none() {
            return Err("no rates given".into());
        }
        Ok(rates)
    }

    /// The rate for a receiving domain (lower-case), if it is paced.
    pub fn for_domain(&self, domain: &str) -> Option<u32> {
        self.named
            .iter()
            .find(|(d, _)| d == domain)
            .map(|(_, r)| *r)
            .or(self.others)
    }
}

/// Parses durations as marketers write them: `0s`, `10m`, `3d`, `1h 30m`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim())
        .map_err(|e| format!("{e}; write a duration like 0s, 10m, 2h or 3d"))
}

/// A domain name as DNS writes it (letters, digits, hyphens; dots between labels),
/// lower-cased.
fn parse_domain(s: &str) -> Option<String> {
    let d = s.trim().trim_end_matches('.').to_ascii_lowercase();
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    (d.len() <= 253 && d.contains('.') && d.split('.').all(label_ok)).then_some(d)
}

fn parse_bool(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn with(vars: &[(&str, &str)]) -> Result<Settings, SettingError> {
        let m: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::from_lookup("sqlite://x.db".into(), |k| m.get(k).cloned())
    }

    /// Each of `values` for `var` is refused, naming `var`.
    fn refused(var: &str, values: &[&str]) {
        for bad in values {
            let e = with(&[(var, bad)]).unwrap_err();
            assert_eq!(e.var, var, "{bad}");
        }
    }

    #[test]
    fn defaults_and_overrides() {
        let s = with(&[]).unwrap();
        assert_eq!(s.confirm_ttl, Duration::from_secs(604800));
        assert_eq!(s.subscribe_per_minute, Some(60));
        assert_eq!(s.outbox_dir, PathBuf::from("outbox"));
        assert_eq!((s.smtp_pool, s.send_rate, s.max_attempts), (8, None, 8));
        assert_eq!(s.schedule_grace, Duration::from_secs(86_400));
        let s = with(&[("RAPPORT_SEND_RATE", "50"), ("RAPPORT_SMTP_POOL", "16")]).unwrap();
        assert_eq!((s.smtp_pool, s.send_rate), (16, Some(50)));
        assert!(with(&[("RAPPORT_SMTP_POOL", "0")]).is_err());
        assert_eq!(
            with(&[("RAPPORT_TIMEZONE", "Europe/Berlin")])
                .unwrap()
                .schedule_tz,
            chrono_tz::Europe::Berlin
        );
        assert!(with(&[("RAPPORT_TIMEZONE", "Mars/Olympus")]).is_err());
        let s = with(&[
            ("RAPPORT_CONFIRM_TTL", "2d"),
            ("RAPPORT_SUBSCRIBE_LIMIT", "off"),
            ("RAPPORT_PUBLIC_URL", "https://x.example/"),
        ])
        .unwrap();
        assert_eq!(s.confirm_ttl, Duration::from_secs(172800));
        assert_eq!(s.subscribe_per_minute, None);
        assert_eq!(s.public_url.as_deref(), Some("https://x.example"));
    }

    #[test]
    fn bad_values_name_the_variable() {
        let e = with(&[("RAPPORT_CONFIRM_TTL", "soon")]).unwrap_err();
        assert!(
            e.to_string().starts_with("RAPPORT_CONFIRM_TTL=\"soon\""),
            "{e}"
        );
        assert!(with(&[("RAPPORT_SUBSCRIBE_LIMIT", "lots")]).is_err());
        refused(
            "RAPPORT_PUBLIC_URL",
            &[
                "notaurl",
                "news.example.com",
                "ftp://news.example.com",
                "https://news.example.com/?x=1",
                "https://news.example.com/#top",
                "mailto:news@example.com",
            ],
        );
        for (good, kept) in [
            ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
            (" https://example.com/news/ ", "https://example.com/news"),
        ] {
            let s = with(&[("RAPPORT_PUBLIC_URL", good)]).unwrap();
            assert_eq!(s.public_url.as_deref(), Some(kept));
        }
        refused(
            "RAPPORT_BOUNCE_DOMAIN",
            &["localhost", "bounces..example", "b@x.example", "-x.example"],
        );
        let e = with(&[("RAPPORT_BOUNCE_BIND", "127.0.0.1:2525")]).unwrap_err();
        assert!(
            e.to_string().contains("set RAPPORT_BOUNCE_DOMAIN too"),
            "{e}"
        );
        let s = with(&[
            ("RAPPORT_BOUNCE_DOMAIN", "Bounces.Example.COM."),
            ("RAPPORT_BOUNCE_BIND", "127.0.0.1:2525"),
            ("RAPPORT_SOFT_BOUNCE_LIMIT", "5"),
        ])
        .unwrap();
        assert_eq!(s.bounce_domain.as_deref(), Some("bounces.example.com"));
        assert_eq!(s.soft_bounce_limit, 5);
        assert_eq!(with(&[]).unwrap().soft_bounce_limit, 3);
        assert!(with(&[("RAPPORT_SOFT_BOUNCE_LIMIT", "0")]).is_err());
        let r = with(&[("RAPPORT_DOMAIN_RATES", "Gmail.com=10, outlook.com=5,*=50")])
            .unwrap()
            .domain_rates
            .unwrap();
        assert_eq!(
            (
                r.for_domain("gmail.com"),
                r.for_domain("outlook.com"),
                r.for_domain("x.example")
            ),
            (Some(10), Some(5), Some(50))
        );
        assert_eq!(
            DomainRates::parse("gmail.com=10")
                .unwrap()
                .for_domain("x.example"),
            None
        );
        refused(
            "RAPPORT_DOMAIN_RATES",
            &[
                "gmail.com",
                "gmail.com=0",
                "gmail.com=ten",
                "a.com=1,a.com=2",
                ",",
                "x=1",
            ],
        );
        assert!(
            parse_duration("3d").is_ok()
                && parse_duration("0s").is_ok()
                && parse_duration("10m").is_ok()
        );
    }
}
