//! `/api/v1/campaigns`: the campaigns with their last runs, and manual runs started by
//! other systems (with `Idempotency-Key`, a retry returns the same run).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

use super::{ApiError, Authorized, CampaignsRun};
use crate::web::AppState;

/// Runs shown per campaign.
const LAST_RUNS: usize = 5;

/// `GET /api/v1/campaigns` (`campaigns:run`): every campaign of `campaigns.toml`, with its
/// last runs, newest first.
pub async fn list(
    _: Authorized<CampaignsRun>,
    State(state): State<AppState>,
) -> Result<Json<Value>, ApiError> {
    let site = state.site();
    let runs = state.store.recent_runs(500).await?;
    let campaigns: Vec<Value> = site
        .campaigns
        .iter()
        .map(|c| {
            let last: Vec<Value> = runs
                .iter()
                .filter(|r| r.1 == c.id)
                .take(LAST_RUNS)
                .map(|(id, _, key, recipients, sent, failed, created)| {
                    json!({ "id": id, "period_key": key, "recipients": recipients, "sent": sent,
                            "failed": failed, "created_at": created })
                })
                .collect();
            json!({
                "id": c.id, "kind": c.kind.as_str(), "subject": c.subject, "audience": c.audience,
                "last_runs": last,
            })
        })
        .collect();
    Ok(Json(json!({ "campaigns": campaigns })))
}

/// `POST /api/v1/campaigns/{id}/runs` (`campaigns:run`): a manual run now, as `rapport run`
/// starts one: 201 with the run; with an `Idempotency-Key` seen before for this campaign,
/// 200 with that key's run and nothing new sent.
pub async fn run(
    _: Authorized<CampaignsRun>,
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let key = match headers.get("idempotency-key") {
        None => None,
        Some(v) => match v.to_str().map(str::trim) {
            Ok(k) if !k.is_empty() && k.len() <= 255 => Some(k.to_string()),
            _ => {
                return Err(ApiError::invalid(
                    "the Idempotency-Key header must be 1 to 255 printable ASCII characters",
                    Default::default(),
                ));
            }
        },
    };
    let site = state.site();
    let Some(campaign) = site.campaign(&id) else {
        return Err(ApiError::not_found(format!(
            "no campaign {id:?} in campaigns.toml"
        )));
    };
    let (queued, started) =
        crate::schedule::manual_run_once(&state.store, &site, campaign, key.as_deref()).await?;
    if started {
        state.worker.wake();
    }
    let status = if started {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(json!({
            "run": queued.run_id, "campaign": queued.campaign, "recipients": queued.recipients,
            "started": started,
        })),
    ))
}
