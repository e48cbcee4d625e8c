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

/// `GET /admin/reports/response-rates.csv?by=campaign|run|segment&from=DATE&to=DATE`.
pub async fn response_rates_csv(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Response, AppError> {
    let report = async {
        let GroupByArg(by) = param(&query, "by").unwrap_or_default().parse()?;
        let mut body = Vec::new();
        crate::report::response_rates_csv(
            &state.store,
            &state.site(),
            by,
            period(&query)?,
            &mut body,
            |_| {},
        )
        .await?;
        Ok(body)
    };
    csv_or_error(report.await, "response-rates.csv")
}

/// `GET /admin/reports/optin.csv?from=DATE&to=DATE`.
pub async fn optin_csv(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Response, AppError> {
    let report = async {
        let mut body = Vec::new();
        crate::report::optin_csv(&state.store, &state.site(), period(&query)?, &mut body).await?;
        Ok(body)
    };
    csv_or_error(report.await, "optin.csv")
}

/// `GET /admin/reports/clicks.csv?from=DATE&to=DATE`.
pub async fn clicks_csv(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Response, AppError> {
    let report = async {
        let mut body = Vec::new();
        crate::report::clicks_csv(&state.store, period(&query)?, &mut body, |_| {}).await?;
        Ok(body)
    };
    csv_or_error(report.await, "clicks.csv")
}

/// `GET /admin/reports/links.csv?from=DATE&to=DATE`.
pub async fn links_csv(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Response, AppError> {
    let report = async {
        let mut body = Vec::new();
        crate::report::links_csv(&state.store, period(&query)?, &mut body).await?;
        Ok(body)
    };
    csv_or_error(report.await, "links.csv")
}

/// `GET /admin/reports/feedback.csv?from=DATE&to=DATE`.
pub async fn feedback_csv(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Response, AppError> {
    let report = async {
        let mut body = Vec::new();
        crate::report::feedback_csv(&state.store, period(&query)?, &mut body, |_| {}).await?;
        Ok(body)
    };
    csv_or_error(report.await, "feedback.csv")
}

/// A horizontal bar for a rate, as inline SVG (nothing loaded from elsewhere).
fn bar(rate: f64) -> String {
    let w = (rate.clamp(0.0, 1.0) * 160.0).round();
    format!(
        "<svg width=\"170\" height=\"14\" role=\"img\" aria-label=\"{:.1}%\"><rect width=\"160\" height=\"14\" fill=\"#e6e9ef\"/><rect width=\"{w}\" height=\"14\" fill=\"#1f5fbf\"/></svg>",
        rate * 100.0
    )
}

/// `GET /admin`: response rates per campaign and run, the opt-in funnel, segment sizes and
/// the last runs, as server-rendered tables and bars.
pub async fn dashboard(State(state): State<AppState>) -> Result<Response, AppError> {
    let site = state.site();
    let all = Period::parse(None, None).expect("an open period");
    let ratio = |n: i64, d: i64| if d == 0 { 0.0 } else { n as f64 / d as f64 };
    let campaigns: Vec<_> = state
        .store
        .response_rates(GroupBy::Run, all.from, all.to)
        .await?
        .into_iter()
        .map(|c| {
            json!({
                "campaign": c.campaign, "run": c.run, "delivered": c.delivered,
                "open_rate": crate::report::rate(c.unique_opens, c.delivered),
                "click_rate": crate::report::rate(c.unique_clicks, c.delivered),
                "open_bar": bar(ratio(c.unique_opens, c.delivered)),
                "click_bar": bar(ratio(c.unique_clicks, c.delivered)),
                "unsubscribes": c.unsubscribes, "feedback_yes": c.feedback_yes, "feedback_no": c.feedback_no,
            })
        })
        .collect();
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
        }),
    )?;
    Ok(Html(html).into_response())
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
