//! `/admin`: the dashboard, the CSV reports and their authentication. Every `/admin` path
//! needs `Authorization: Bearer TOKEN`, or HTTP basic with the token as password.

use axum::extract::{RawQuery, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use base64::Engine;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::{AppError, AppState};
use crate::report::{GroupByArg, Period, ReportError};
use crate::store::{AudienceQuery, GroupBy, Store, StoreError, now};

/// The admin token, kept as its SHA-256.
#[derive(Debug, Clone)]
pub struct AdminKey([u8; 32]);

impl AdminKey {
    fn of(token: &str) -> AdminKey {
        AdminKey(Sha256::digest(token.as_bytes()).into())
    }

    /// `RAPPORT_ADMIN_TOKEN`, or the token generated on the first start of this database
    /// (printed once on stderr; only its hash is kept).
    pub async fn load(configured: Option<&str>, store: &Store) -> Result<AdminKey, StoreError> {
        if let Some(t) = configured {
            return Ok(AdminKey::of(t));
        }
        if let Some(h) = store.admin_token_hash().await? {
            let mut key = [0u8; 32];
            hex::decode_to_slice(h.trim(), &mut key).map_err(|e| {
                StoreError::Corrupt(format!("settings.admin_token_sha256 {h:?}: {e}"))
            })?;
            return Ok(AdminKey(key));
        }
        let bytes: [u8; 24] = rand::random();
        let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        let key = AdminKey::of(&token);
        if store.set_admin_token_hash(&hex::encode(key.0)).await? {
            eprintln!(
                "rapport: generated an admin token for /admin (shown only this once; set RAPPORT_ADMIN_TOKEN to choose your own):\n  {token}"
            );
            Ok(key)
        } else {
            // Another instance generated one first.
            Box::pin(AdminKey::load(None, store)).await
        }
    }

    /// Whether the request carries the token: `Authorization: Bearer TOKEN`, or HTTP basic
    /// with the token as the password (any user name). Compared in constant time.
    pub fn admits(&self, headers: &HeaderMap) -> bool {
        use axum_extra::headers::authorization::{Basic, Bearer};
        use axum_extra::headers::{Authorization, HeaderMapExt};
        let token =
            if let Some(Authorization(bearer)) = headers.typed_get::<Authorization<Bearer>>() {
                bearer.token().trim().to_string()
            } else if let Some(Authorization(basic)) = headers.typed_get::<Authorization<Basic>>() {
                basic.password().to_string()
            } else {
                return false;
            };
        subtle::ConstantTimeEq::ct_eq(&AdminKey::of(&token).0[..], &self.0[..]).into()
    }
}

/// Refuses `/admin` requests without the token: 401 with a basic-auth challenge.
pub async fn require_token(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    if state.admin.admits(request.headers()) {
        return next.run(request).await;
    }
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Basic realm=\"rapport admin\", charset=\"UTF-8\"")],
        "This page needs the admin token: Authorization: Bearer TOKEN, or basic auth with the token as password.\n",
    )
        .into_response()
}

fn param(query: &Option<String>, key: &str) -> Option<String> {
    query.as_deref().and_then(|q| {
        form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.into_owned())
    })
}

fn csv_response(body: Vec<u8>, name: &str) -> Response {
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
            (header::CACHE_CONTROL, "no-store".to_string()),
        ],
        body,
    )
        .into_response()
}

/// A CSV report as a response: 400 with the message for a bad parameter, the file otherwise.
fn csv_or_error(result: Result<Vec<u8>, ReportError>, name: &str) -> Result<Response, AppError> {
    match result {
        Ok(body) => Ok(csv_response(body, name)),
        Err(ReportError::Store(s)) => Err(AppError::Store(s)),
        Err(other) => Ok((StatusCode::BAD_REQUEST, format!("{other}\n")).into_response()),
    }
}

fn period(query: &Option<String>) -> Result<Period, ReportError> {
    Period::parse(
        param(query, "from").as_deref(),
        param(query, "to").as_deref(),
    )
}

/// A CSV report over the period of the query (`?from=DATE&to=DATE`), written into the
/// response body by `write`; a bad parameter is a 400 naming it.
async fn period_csv(
    query: &Option<String>,
    name: &str,
    write: impl AsyncFnOnce(Period, &mut Vec<u8>) -> Result<usize, ReportError>,
) -> Result<Response, AppError> {
    let mut body = Vec::new();
    let written = match period(query) {
        Ok(p) => write(p, &mut body).await,
        Err(e) => Err(e),
    };
    csv_or_error(written.map(|_| body), name)
}

/// `GET /admin/reports/response-rates.csv?by=campaign|run|segment&from=DATE&to=DATE`.
pub async fn response_rates_csv(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Response, AppError> {
    let by = param(&query, "by").unwrap_or_default();
    period_csv(&query, "response-rates.csv", async |p, out| {
        let GroupByArg(by) = by.parse()?;
        let site = state.site();
        crate::report::response_rates_csv(&state.store, &site, by, p, out, |_| {}).await
    })
    .await
}

/// `GET /admin/reports/optin.csv?from=DATE&to=DATE`.
pub async fn optin_csv(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Response, AppError> {
    period_csv(&query, "optin.csv", async |p, out| {
        crate::report::optin_csv(&state.store, &state.site(), p, out).await
    })
    .await
}

/// `GET /admin/reports/clicks.csv?from=DATE&to=DATE`.
pub async fn clicks_csv(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Response, AppError> {
    period_csv(&query, "clicks.csv", async |p, out| {
        crate::report::clicks_csv(&state.store, p, out, |_| {}).await
    })
    .await
}

/// `GET /admin/reports/links.csv?from=DATE&to=DATE`.
pub async fn links_csv(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Response, AppError> {
    period_csv(&query, "links.csv", async |p, out| {
        crate::report::links_csv(&state.store, p, out).await
    })
    .await
}

/// `GET /admin/reports/deliverability.csv?from=DATE&to=DATE`.
pub async fn deliverability_csv(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Response, AppError> {
    period_csv(&query, "deliverability.csv", async |p, out| {
        crate::report::deliverability_csv(&state.store, p, out).await
    })
    .await
}

/// `GET /admin/reports/feedback.csv?from=DATE&to=DATE`.
pub async fn feedback_csv(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Response, AppError> {
    period_csv(&query, "feedback.csv", async |p, out| {
        crate::report::feedback_csv(&state.store, p, out, |_| {}).await
    })
    .await
}

/// A horizontal bar for a rate, as inline SVG (nothing loaded from elsewhere).
fn bar(rate: f64) -> String {
    let w = (rate.clamp(0.0, 1.0) * 100.0).round();
    format!(
        "<svg width=\"100\" height=\"12\" role=\"img\" aria-label=\"{:.1}%\"><rect width=\"100\" height=\"12\" fill=\"#e6e9ef\"/><rect width=\"{w}\" height=\"12\" fill=\"#1f5fbf\"/></svg>",
        rate * 100.0
    )
}

/// `GET /admin`: response rates per campaign and run (with a chart of the last twelve runs
/// of each campaign), the latest comments, the opt-in funnel, segment sizes and the last
/// runs, as server-rendered tables and SVG (no JavaScript).
pub async fn dashboard(State(state): State<AppState>) -> Result<Response, AppError> {
    let site = state.site();
    let all = Period::parse(None, None).expect("an open period");
    let ratio = |n: i64, d: i64| if d == 0 { 0.0 } else { n as f64 / d as f64 };
    let per_run = state
        .store
        .response_rates(GroupBy::Run, all.from, all.to)
        .await?;
    let campaigns: Vec<_> = per_run
        .iter()
        .map(|c| {
            let votes = c.feedback_yes + c.feedback_no;
            json!({
                "campaign": c.campaign, "run": c.run, "delivered": c.delivered,
                "open_rate": crate::report::rate(c.unique_opens, c.delivered),
                "click_rate": crate::report::rate(c.unique_clicks, c.delivered),
                "open_bar": bar(ratio(c.unique_opens, c.delivered)),
                "click_bar": bar(ratio(c.unique_clicks, c.delivered)),
                "unsubscribes": c.unsubscribes, "feedback_yes": c.feedback_yes, "feedback_no": c.feedback_no,
                "useful_rate": crate::report::rate(c.feedback_yes, votes),
            })
        })
        .collect();
    // One chart per campaign: its last twelve runs, oldest first.
    let mut charts = Vec::new();
    let mut names: Vec<&str> = per_run.iter().map(|c| c.campaign.as_str()).collect();
    names.dedup();
    for name in names {
        let runs: Vec<_> = per_run.iter().filter(|c| c.campaign == name).collect();
        let last = &runs[runs.len().saturating_sub(12)..];
        let points: Vec<RunRates> = last
            .iter()
            .map(|c| RunRates {
                label: short_run(&c.run),
                open: ratio(c.unique_opens, c.delivered),
                click: ratio(c.unique_clicks, c.delivered),
                useful: (c.feedback_yes + c.feedback_no > 0)
                    .then(|| ratio(c.feedback_yes, c.feedback_yes + c.feedback_no)),
            })
            .collect();
        charts.push(json!({ "campaign": name, "svg": rate_chart(name, &points) }));
    }
    let deliverability = deliverability(&state.store).await?;
    let webhooks = webhooks(&state.store, &site).await?;
    let latest = state.store.latest_comments(10).await?;
    let ids: Vec<i64> = latest.iter().map(|c| c.profile_id).collect();
    let people = state.store.profiles_by_ids(&ids).await?;
    let mut comments = Vec::new();
    for c in latest {
        comments.push(json!({
            "at": chrono::DateTime::from_timestamp(c.at, 0).map(|t| t.format("%Y-%m-%d").to_string()),
            "campaign": c.campaign,
            "comment": c.comment,
            "segments": super::segments_of(&state.store, &site, people.get(&c.profile_id)).await?.join(", "),
        }));
    }
    let questions = site.project.form.questions();
    let today = now() / 86_400;
    let funnel: Vec<_> = state
        .store
        .optin_days(today - 30, today, &questions)
        .await?
        .into_iter()
        .map(|d| {
            let day = chrono::DateTime::from_timestamp(d.day * 86_400, 0).map(|t| t.format("%Y-%m-%d").to_string());
            json!({
                "day": day, "views": d.form_views, "submissions": d.submissions, "confirmations": d.confirmations,
                "confirmation_bar": bar(ratio(d.confirmations, d.submissions)),
            })
        })
        .collect();
    let mut segments = Vec::new();
    for seg in site.segments.iter() {
        let size = state
            .store
            .audience_count(&AudienceQuery::new(&seg.rule, now()))
            .await?;
        segments.push(json!({ "name": seg.name, "description": seg.description, "size": size }));
    }
    let runs: Vec<_> = state
        .store
        .recent_runs(20)
        .await?
        .into_iter()
        .map(|(id, campaign, key, recipients, sent, failed, _)| {
            json!({ "id": id, "campaign": campaign, "key": key, "recipients": recipients, "sent": sent, "failed": failed,
                    "done": sent + failed >= recipients })
        })
        .collect();
    let html = site.templates.render(
        "pages/admin",
        &json!({
            "title": "Dashboard",
            "site": { "name": site.project.sender.name(), "postal_address": site.project.sender.postal_address },
            "campaigns": campaigns, "funnel": funnel, "segments": segments, "runs": runs,
            "charts": charts, "comments": comments, "deliverability": deliverability,
            "webhooks": webhooks,
        }),
    )?;
    Ok(Html(html).into_response())
}

/// The dashboard's webhook card: each `[[webhook]]` endpoint with its deliveries given up
/// and being retried, failing ones first (an endpoint no longer configured still shows
/// while it has failures).
async fn webhooks(
    store: &Store,
    site: &crate::site::Site,
) -> Result<serde_json::Value, StoreError> {
    let failing = store.failing_endpoints().await?;
    let mut rows: Vec<serde_json::Value> = failing
        .iter()
        .map(|f| {
            json!({ "endpoint": f.endpoint, "failed": f.failed, "retrying": f.retrying,
                    "last_error": f.last_error, "failing": true })
        })
        .collect();
    for w in &site.project.webhooks {
        if !failing.iter().any(|f| f.endpoint == w.url.as_str()) {
            rows.push(json!({ "endpoint": w.url.as_str(), "failed": 0, "retrying": 0, "failing": false, "last_error": null }));
        }
    }
    let mut counts = json!({ "queued": 0, "sending": 0, "sent": 0, "failed": 0 });
    for (status, n) in store.hook_counts().await? {
        counts[status] = json!(n);
    }
    Ok(json!({ "endpoints": rows, "counts": counts, "any": !rows.is_empty() }))
}

/// Gmail's line for complaints (spam reports per delivered message): above it, mail is
/// filtered or refused; under a third of it is what Google asks senders to keep.
const COMPLAINT_LIMIT: f64 = 0.003;

/// The dashboard's deliverability card: people bounced and complained, and per receiving
/// domain over the last 30 days, sent, bounced and complained with the complaint rate
/// against [`COMPLAINT_LIMIT`].
async fn deliverability(store: &Store) -> Result<serde_json::Value, StoreError> {
    let to = now() + 1;
    let rows = store.deliverability(to - 30 * 86_400, to).await?;
    // Only the statuses: `totals` would also count every event ever recorded.
    let statuses = store.profiles_by_status().await?;
    let people = |status: &str| {
        statuses
            .iter()
            .find(|(s, _)| s == status)
            .map_or(0, |(_, n)| *n)
    };
    let (delivered, complaints) = rows
        .iter()
        .fold((0, 0), |(d, c), r| (d + r.delivered(), c + r.complaints));
    let rate = |c: i64, d: i64| if d == 0 { 0.0 } else { c as f64 / d as f64 };
    let domains: Vec<_> = rows
        .iter()
        .take(10)
        .map(|r| {
            json!({
                "domain": r.domain, "sent": r.sent, "delivered": r.delivered(),
                "bounced_hard": r.bounced_hard, "bounced_soft": r.bounced_soft, "complaints": r.complaints,
                "complaint_rate": percent(rate(r.complaints, r.delivered())),
                "gauge": complaint_gauge(rate(r.complaints, r.delivered())),
            })
        })
        .collect();
    Ok(json!({
        "bounced": people("bounced"), "complained": people("complained"),
        "lapsed": people("lapsed"),
        "delivered": delivered, "complaints": complaints,
        "complaint_rate": percent(rate(complaints, delivered)),
        "gauge": complaint_gauge(rate(complaints, delivered)),
        "over_limit": rate(complaints, delivered) > COMPLAINT_LIMIT,
        "domains": domains,
    }))
}

/// `0.0012` as `0.12%`.
fn percent(rate: f64) -> String {
    format!("{:.2}%", rate * 100.0)
}

/// A complaint rate on a scale to twice Gmail's line, with the line drawn: green under a
/// third of it, amber under it, red over it. Inline SVG.
fn complaint_gauge(rate: f64) -> String {
    let scale = 2.0 * COMPLAINT_LIMIT;
    let w = (rate.clamp(0.0, scale) / scale * 160.0).round();
    let fill = if rate > COMPLAINT_LIMIT {
        "#c0392b"
    } else if rate > COMPLAINT_LIMIT / 3.0 {
        "#d68910"
    } else {
        "#1e8449"
    };
    format!(
        "<svg width=\"160\" height=\"14\" role=\"img\" aria-label=\"complaint rate {} against Gmail's 0.30% line\">\
         <rect width=\"160\" height=\"14\" fill=\"#e6e9ef\"/><rect width=\"{w}\" height=\"14\" fill=\"{fill}\"/>\
         <line x1=\"80\" x2=\"80\" y1=\"0\" y2=\"14\" stroke=\"#222\" stroke-width=\"2\"/></svg>",
        percent(rate)
    )
}

/// A run's label on a chart: the date of a scheduled run, `manual` or `standing`.
fn short_run(key: &str) -> String {
    if let Some(rest) = key.strip_prefix("manual-") {
        return format!("manual {}", rest.get(..8).unwrap_or(rest));
    }
    key.get(..10).unwrap_or(key).to_string()
}

/// Reads one of a run's rates (`None`: no value to plot).
type RateOf = fn(&RunRates) -> Option<f64>;

/// One run on a chart: its open, click and useful rates (0..=1; useful only with votes).
struct RunRates {
    label: String,
    open: f64,
    click: f64,
    useful: Option<f64>,
}

/// Open, click and useful rates per run as an SVG line chart that scales to its container
/// (a `viewBox`, no fixed width): one line per rate, a legend, a 0–100 % axis. The labels
/// are text, and every value is also in the table below it.
fn rate_chart(campaign: &str, runs: &[RunRates]) -> String {
    const W: f64 = 640.0;
    const H: f64 = 220.0;
    const LEFT: f64 = 44.0;
    const RIGHT: f64 = 12.0;
    const TOP: f64 = 28.0;
    const BOTTOM: f64 = 36.0;
    let plot_w = W - LEFT - RIGHT;
    let plot_h = H - TOP - BOTTOM;
    let x = |i: usize| {
        if runs.len() <= 1 {
            LEFT + plot_w / 2.0
        } else {
            LEFT + plot_w * i as f64 / (runs.len() - 1) as f64
        }
    };
    let y = |v: f64| TOP + plot_h * (1.0 - v.clamp(0.0, 1.0));
    let esc = |s: &str| html_escape::encode_text(s).into_owned();
    let mut svg = format!(
        "<svg viewBox=\"0 0 {W} {H}\" width=\"100%\" role=\"img\" aria-label=\"{}: open, click and useful rates of the last {} runs\" style=\"max-width:{W}px;height:auto\">",
        esc(campaign),
        runs.len()
    );
    for pct in [0, 25, 50, 75, 100] {
        let yy = y(pct as f64 / 100.0);
        svg.push_str(&format!(
            "<line x1=\"{LEFT}\" x2=\"{}\" y1=\"{yy}\" y2=\"{yy}\" stroke=\"#e6e9ef\"/><text x=\"{}\" y=\"{}\" font-size=\"11\" text-anchor=\"end\" fill=\"#5a6475\">{pct}%</text>",
            W - RIGHT,
            LEFT - 6.0,
            yy + 4.0
        ));
    }
    let lines: [(&str, &str, RateOf); 3] = [
        ("Opens", "#1f5fbf", |r| Some(r.open)),
        ("Clicks", "#2e8540", |r| Some(r.click)),
        ("Useful", "#c05600", |r| r.useful),
    ];
    for (n, (name, colour, value)) in lines.iter().enumerate() {
        let points: Vec<String> = runs
            .iter()
            .enumerate()
            .filter_map(|(i, r)| value(r).map(|v| format!("{:.1},{:.1}", x(i), y(v))))
            .collect();
        if points.len() > 1 {
            svg.push_str(&format!(
                "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\" points=\"{}\"/>",
                points.join(" ")
            ));
        }
        for p in &points {
            let (px, py) = p.split_once(',').unwrap_or(("0", "0"));
            svg.push_str(&format!(
                "<circle cx=\"{px}\" cy=\"{py}\" r=\"3\" fill=\"{colour}\"/>"
            ));
        }
        let lx = LEFT + n as f64 * 90.0;
        svg.push_str(&format!(
            "<rect x=\"{lx}\" y=\"8\" width=\"10\" height=\"10\" fill=\"{colour}\"/><text x=\"{}\" y=\"17\" font-size=\"12\" fill=\"#1d2330\">{name}</text>",
            lx + 14.0
        ));
    }
    // Run labels: every one when they fit, else every other.
    let step = if runs.len() > 6 { 2 } else { 1 };
    for (i, r) in runs.iter().enumerate() {
        if i % step == 0 || i + 1 == runs.len() {
            // The first and last labels end at the plot's edges, so that none is cut off.
            let anchor = match i {
                _ if runs.len() == 1 => "middle",
                0 => "start",
                _ if i + 1 == runs.len() => "end",
                _ => "middle",
            };
            svg.push_str(&format!(
                "<text x=\"{:.1}\" y=\"{}\" font-size=\"10\" text-anchor=\"{anchor}\" fill=\"#5a6475\">{}</text>",
                x(i),
                H - BOTTOM + 16.0,
                esc(&r.label)
            ));
        }
    }
    svg.push_str("</svg>");
    svg
}

/// `GET /metrics`: Prometheus text format.
pub async fn metrics(State(state): State<AppState>) -> Result<Response, AppError> {
    let t = state.store.totals().await?;
    let mut out = String::new();
    let mut counter = |name: &str, help: &str, kind: &str, value: i64| {
        out.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
        ));
    };
    counter(
        "rapport_subscribes_total",
        "Opt-in form submissions (consent records).",
        "counter",
        t.opt_in_requests,
    );
    counter(
        "rapport_confirmations_total",
        "Confirmed subscriptions.",
        "counter",
        t.confirmations,
    );
    counter(
        "rapport_sends_total",
        "Campaign messages accepted by the mail server.",
        "counter",
        t.sent,
    );
    counter(
        "rapport_send_failures_total",
        "Campaign deliveries that failed for good.",
        "counter",
        t.failed,
    );
    counter(
        "rapport_queue_depth",
        "Deliveries waiting or being sent.",
        "gauge",
        t.queued,
    );
    counter(
        "rapport_clicks_total",
        "Clicks by people (automated hits excluded).",
        "counter",
        t.clicks,
    );
    counter(
        "rapport_automated_hits_total",
        "Clicks and opens flagged as automated.",
        "counter",
        t.automated_hits,
    );
    counter(
        "rapport_late_bounces_total",
        "Deliveries a DSN reported as failed for good (hard) after the send.",
        "counter",
        t.late_bounces,
    );
    counter(
        "rapport_soft_bounces_total",
        "Deliveries a DSN reported as failed for now (soft).",
        "counter",
        t.soft_bounces,
    );
    counter(
        "rapport_complaints_total",
        "Deliveries reported as spam (ARF abuse reports).",
        "counter",
        t.complaints,
    );
    out.push_str("# HELP rapport_bounce_intake_total Messages that came back to the bounce listener, by outcome (since start).\n# TYPE rapport_bounce_intake_total counter\n");
    for (outcome, n) in state.intake.tally().counts() {
        out.push_str(&format!(
            "rapport_bounce_intake_total{{outcome=\"{}\"}} {n}\n",
            outcome.as_str()
        ));
    }
    out.push_str("# HELP rapport_webhook_deliveries Webhook deliveries by status (queued, sending, sent, failed).\n# TYPE rapport_webhook_deliveries gauge\n");
    for (status, n) in state.store.hook_counts().await? {
        out.push_str(&format!(
            "rapport_webhook_deliveries{{status=\"{status}\"}} {n}\n"
        ));
    }
    out.push_str("# HELP rapport_profiles Profiles by status.\n# TYPE rapport_profiles gauge\n");
    for (status, n) in &t.profiles {
        out.push_str(&format!("rapport_profiles{{status=\"{status}\"}} {n}\n"));
    }
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
        .into_response())
}
