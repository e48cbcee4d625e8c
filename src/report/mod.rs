//! Reports for analysts: response rates per campaign, run or segment, and the opt-in funnel
//! per day, as CSV (the CLI's `export` and the admin endpoints write the same bytes).

mod csv_out;

pub use csv_out::{CsvOut, neutralise};

use std::io::Write;

use chrono::NaiveDate;

use crate::site::Site;
use crate::store::{AudienceQuery, GroupBy, RateCounts, Store, StoreError, now};

/// The response-rate CSV columns, in the order docs/contract.md gives.
pub const RESPONSE_RATE_COLUMNS: [&str; 15] = [
    "campaign",
    "run",
    "segment",
    "recipients",
    "delivered",
    "bounced",
    "unique_opens",
    "open_rate",
    "unique_clicks",
    "click_rate",
    "click_to_open_rate",
    "unsubscribes",
    "unsubscribe_rate",
    "feedback_yes",
    "feedback_no",
];

/// The opt-in funnel CSV columns.
pub const OPTIN_COLUMNS: [&str; 9] = [
    "day",
    "form_views",
    "submissions",
    "confirmations",
    "confirmation_rate",
    "new_profiles",
    "fully_profiled",
    "fully_profiled_share",
    "lapsed",
];

/// The deliverability CSV columns: one row per receiving domain.
pub const DELIVERABILITY_COLUMNS: [&str; 7] = [
    "domain",
    "sent",
    "delivered",
    "bounced_hard",
    "bounced_soft",
    "complaints",
    "complaint_rate",
];

/// A report that cannot be made; the message says what to change.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{0} {1:?} is not a date; write it as YYYY-MM-DD, like 2026-11-01")]
    BadDate(&'static str, String),
    #[error("--from {0} is after --to {1}; the period would be empty")]
    Reversed(String, String),
    #[error("unknown grouping {0:?}; use campaign, run or segment")]
    BadGroup(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot write the CSV: {0}")]
    Write(#[from] csv::Error),
    #[error("cannot write the CSV: {0}")]
    Io(#[from] std::io::Error),
}

/// A reporting period: whole UTC days, both ends included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    /// First second included (unix).
    pub from: i64,
    /// First second after the period (unix).
    pub to: i64,
}

impl Period {
    /// From optional `YYYY-MM-DD` dates; open ends reach the beginning and the end of time.
    pub fn parse(from: Option<&str>, to: Option<&str>) -> Result<Period, ReportError> {
        let day = |what: &'static str, s: &str| {
            NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d")
                .map_err(|_| ReportError::BadDate(what, s.to_string()))
                .map(|d| {
                    d.and_hms_opt(0, 0, 0)
                        .expect("midnight exists")
                        .and_utc()
                        .timestamp()
                })
        };
        let start = match from.filter(|s| !s.trim().is_empty()) {
            Some(s) => day("--from", s)?,
            None => 0,
        };
        let end = match to.filter(|s| !s.trim().is_empty()) {
            Some(s) => day("--to", s)? + 86_400,
            None => i64::MAX / 2,
        };
        if end <= start {
            return Err(ReportError::Reversed(
                from.unwrap_or("").to_string(),
                to.unwrap_or("").to_string(),
            ));
        }
        Ok(Period {
            from: start,
            to: end,
        })
    }
}

impl std::str::FromStr for GroupByArg {
    type Err = ReportError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "" | "campaign" => Ok(GroupByArg(GroupBy::Campaign)),
            "run" => Ok(GroupByArg(GroupBy::Run)),
            "segment" => Ok(GroupByArg(GroupBy::Segment)),
            other => Err(ReportError::BadGroup(other.to_string())),
        }
    }
}

/// `--by` / `?by=` as typed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupByArg(pub GroupBy);

/// `n / d` with four decimals (`0.1250`), empty when `d` is 0.
pub fn rate(n: i64, d: i64) -> String {
    if d == 0 {
        String::new()
    } else {
        format!("{:.4}", n as f64 / d as f64)
    }
}

/// Clicks per opener; empty when nothing was delivered or opened.
fn click_to_open(c: &RateCounts) -> String {
    if c.delivered == 0 {
        String::new()
    } else {
        rate(c.unique_clicks, c.unique_opens)
    }
}

fn rate_row(c: &RateCounts) -> [String; 15] {
    [
        c.campaign.clone(),
        c.run.clone(),
        c.segment.clone(),
        c.recipients.to_string(),
        c.delivered.to_string(),
        c.bounced.to_string(),
        c.unique_opens.to_string(),
        rate(c.unique_opens, c.delivered),
        c.unique_clicks.to_string(),
        rate(c.unique_clicks, c.delivered),
        click_to_open(c),
        c.unsubscribes.to_string(),
        rate(c.unsubscribes, c.delivered),
        c.feedback_yes.to_string(),
        c.feedback_no.to_string(),
    ]
}

/// The response-rate rows of a period, grouped by `by` (`--by segment`: per campaign and
/// segment, membership as of now); `progress` is called after each row.
pub async fn response_rates(
    store: &Store,
    site: &Site,
    by: GroupBy,
    period: Period,
    mut progress: impl FnMut(usize),
) -> Result<Vec<RateCounts>, ReportError> {
    let mut rows = Vec::new();
    match by {
        GroupBy::Segment => {
            for seg in site.segments.iter() {
                let q = AudienceQuery::new(&seg.rule, now());
                for c in store
                    .response_rates_for_segment(&seg.name, &q, period.from, period.to)
                    .await?
                {
                    rows.push(c);
                    progress(rows.len());
                }
            }
        }
        by => {
            for c in store.response_rates(by, period.from, period.to).await? {
                rows.push(c);
                progress(rows.len());
            }
        }
    }
    Ok(rows)
}

/// Writes the response-rate CSV; `progress` is called after each row. Returns the rows.
pub async fn response_rates_csv<W: Write>(
    store: &Store,
    site: &Site,
    by: GroupBy,
    period: Period,
    out: W,
    progress: impl FnMut(usize),
) -> Result<usize, ReportError> {
    let rows = response_rates(store, site, by, period, progress).await?;
    write_rows(out, &RESPONSE_RATE_COLUMNS, rows, |c| rate_row(&c)).await
}

/// One response-rate row as the API shows it: the CSV's columns, counts as numbers, rates
/// as the CSV writes them (fractions of `delivered`, 4 decimals) or `null` where the CSV
/// has an empty cell.
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct RateRow {
    pub campaign: String,
    /// The run's period key (`--by run`).
    pub run: Option<String>,
    /// The segment (`--by segment`).
    pub segment: Option<String>,
    pub recipients: i64,
    pub delivered: i64,
    pub bounced: i64,
    pub unique_opens: i64,
    pub open_rate: Option<f64>,
    pub unique_clicks: i64,
    pub click_rate: Option<f64>,
    pub click_to_open_rate: Option<f64>,
    pub unsubscribes: i64,
    pub unsubscribe_rate: Option<f64>,
    pub feedback_yes: i64,
    pub feedback_no: i64,
}

impl RateRow {
    /// The row of these counts.
    pub fn of(c: &RateCounts) -> RateRow {
        // The CSV's rounding, so that both say the same.
        let value = |cell: String| cell.parse::<f64>().ok();
        let text = |s: &str| (!s.is_empty()).then(|| s.to_string());
        RateRow {
            campaign: c.campaign.clone(),
            run: text(&c.run),
            segment: text(&c.segment),
            recipients: c.recipients,
            delivered: c.delivered,
            bounced: c.bounced,
            unique_opens: c.unique_opens,
            open_rate: value(rate(c.unique_opens, c.delivered)),
            unique_clicks: c.unique_clicks,
            click_rate: value(rate(c.unique_clicks, c.delivered)),
            click_to_open_rate: value(click_to_open(c)),
            unsubscribes: c.unsubscribes,
            unsubscribe_rate: value(rate(c.unsubscribes, c.delivered)),
            feedback_yes: c.feedback_yes,
            feedback_no: c.feedback_no,
        }
    }
}

/// Writes the opt-in funnel CSV, one row per UTC day with any activity.
pub async fn optin_csv<W: Write>(
    store: &Store,
    site: &Site,
    period: Period,
    out: W,
) -> Result<usize, ReportError> {
    let questions = site.project.form.questions();
    let days = store
        .optin_days(period.from / 86_400, (period.to - 1) / 86_400, &questions)
        .await?;
    let mut w = CsvOut::new(out, &OPTIN_COLUMNS)?;
    for d in &days {
        let date = chrono::DateTime::from_timestamp(d.day * 86_400, 0)
            .map(|t| t.format("%Y-%m-%d").to_string())
            .unwrap_or_default();
        w.row([
            date,
            d.form_views.to_string(),
            d.submissions.to_string(),
            d.confirmations.to_string(),
            rate(d.confirmations, d.submissions),
            d.new_profiles.to_string(),
            d.fully_profiled.to_string(),
            rate(d.fully_profiled, d.new_profiles),
            d.lapsed.to_string(),
        ])?;
    }
    w.flush()?;
    Ok(days.len())
}

/// The clicks CSV columns.
pub const CLICK_COLUMNS: [&str; 7] = [
    "clicked_at",
    "email",
    "campaign",
    "run",
    "url",
    "tag",
    "automated",
];

/// Writes every click of the period, streamed from the database row by row; `progress` is
/// called every thousand rows. Returns the rows.
pub async fn clicks_csv<W: Write>(
    store: &Store,
    period: Period,
    out: W,
    progress: impl FnMut(usize),
) -> Result<usize, ReportError> {
    write_stream(
        out,
        &CLICK_COLUMNS,
        store.clicks(period.from, period.to),
        progress,
        |c| {
            [
                timestamp(c.at),
                c.email.unwrap_or_default(),
                c.campaign,
                c.run,
                c.url,
                c.tag,
                if c.automated { "yes" } else { "no" }.to_string(),
            ]
        },
    )
    .await
}

/// The columns of the feedback export.
pub const FEEDBACK_COLUMNS: [&str; 9] = [
    "at",
    "campaign",
    "run",
    "vote",
    "comment",
    "email",
    "industry",
    "employees",
    "engagement",
];

/// Writes the counted "was this useful?" votes of the period (per message, a person's last
/// vote, with their last comment on it; link scanners' fetches left out), streamed;
/// `progress` is called every thousand rows. Returns the rows.
pub async fn feedback_csv<W: Write>(
    store: &Store,
    period: Period,
    out: W,
    progress: impl FnMut(usize),
) -> Result<usize, ReportError> {
    write_stream(
        out,
        &FEEDBACK_COLUMNS,
        store.feedback(period.from, period.to),
        progress,
        |f| {
            [
                timestamp(f.at),
                f.campaign,
                f.run,
                f.vote,
                f.comment,
                f.email.unwrap_or_default(),
                f.industry.unwrap_or_default(),
                f.employees.map(|e| e.to_string()).unwrap_or_default(),
                f.engagement.unwrap_or_default(),
            ]
        },
    )
    .await
}

/// The columns of the links export.
pub const LINK_COLUMNS: [&str; 7] = [
    "campaign",
    "run",
    "url",
    "tag",
    "unique_clicks",
    "click_rate",
    "item",
];

/// Writes, per run created in the period and link clicked in it, how many of the run's
/// delivered messages a person clicked it in, that as a fraction of them, and the library
/// item the link leads to (the column is last, so readers of the first six keep working).
/// Returns the rows.
pub async fn links_csv<W: Write>(
    store: &Store,
    period: Period,
    out: W,
) -> Result<usize, ReportError> {
    let rows = store.link_clicks(period.from, period.to).await?;
    write_rows(out, &LINK_COLUMNS, rows, |l| {
        [
            l.campaign,
            l.run,
            l.url,
            l.tag,
            l.unique_clicks.to_string(),
            rate(l.unique_clicks, l.delivered),
            l.item,
        ]
    })
    .await
}

/// The deliverability report: per receiving domain, messages sent in the period, how many
/// bounced for good or softly, and complaints (rate: a fraction of delivered). Returns the
/// rows.
pub async fn deliverability_csv<W: Write>(
    store: &Store,
    period: Period,
    out: W,
) -> Result<usize, ReportError> {
    let rows = store.deliverability(period.from, period.to).await?;
    write_rows(out, &DELIVERABILITY_COLUMNS, rows, |d| {
        let delivered = d.delivered();
        [
            d.domain,
            d.sent.to_string(),
            delivered.to_string(),
            d.bounced_hard.to_string(),
            d.bounced_soft.to_string(),
            d.complaints.to_string(),
            rate(d.complaints, delivered),
        ]
    })
    .await
}

/// [`write_stream`] for rows already read.
async fn write_rows<W: Write, T, const N: usize>(
    out: W,
    columns: &[&str; N],
    rows: Vec<T>,
    cells: impl Fn(T) -> [String; N],
) -> Result<usize, ReportError> {
    let rows = futures_util::stream::iter(rows.into_iter().map(Ok));
    write_stream(out, columns, rows, |_| {}, cells).await
}

/// Writes the rows of a stream from the database as they come, each turned into cells by
/// `cells`; `progress` is called every thousand rows. Returns the rows.
async fn write_stream<W: Write, T, const N: usize>(
    out: W,
    columns: &[&str; N],
    rows: impl futures_util::Stream<Item = Result<T, StoreError>>,
    mut progress: impl FnMut(usize),
    cells: impl Fn(T) -> [String; N],
) -> Result<usize, ReportError> {
    use futures_util::TryStreamExt;
    let mut w = CsvOut::new(out, columns)?;
    let mut rows = std::pin::pin!(rows);
    let mut n = 0;
    while let Some(row) = rows.try_next().await? {
        w.row(cells(row))?;
        n += 1;
        if n % 1000 == 0 {
            progress(n);
        }
    }
    w.flush()?;
    Ok(n)
}

/// Unix seconds as RFC 3339 UTC (`2026-12-01T09:00:00Z`).
fn timestamp(at: i64) -> String {
    chrono::DateTime::from_timestamp(at, 0)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_have_four_decimals_and_are_empty_without_a_base() {
        assert_eq!(rate(1, 8), "0.1250");
        assert_eq!(rate(1, 2), "0.5000");
        assert_eq!(rate(2, 3), "0.6667");
        assert_eq!(rate(0, 0), "");
    }

    #[test]
    fn periods() {
        let p = Period::parse(Some("2026-11-01"), Some("2026-11-01")).unwrap();
        assert_eq!(p.to - p.from, 86_400);
        assert!(matches!(
            Period::parse(Some("2026-11-02"), Some("2026-11-01")),
            Err(ReportError::Reversed(..))
        ));
        assert!(matches!(
            Period::parse(Some("1 Nov"), None),
            Err(ReportError::BadDate("--from", _))
        ));
        assert!(Period::parse(None, None).is_ok());
    }
}
