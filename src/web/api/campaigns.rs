//! `/api/v1/campaigns`: the campaigns with their last runs, and manual runs started by
//! other systems (with `Idempotency-Key`, a retry returns the same run).

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};

use super::{ApiError, ApiPath, Authorized, CampaignsRun};
use crate::web::AppState;

/// Runs shown per campaign.
const LAST_RUNS: usize = 5;

/// The campaigns, for `GET /api/v1/campaigns`.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct CampaignList {
    campaigns: Vec<CampaignView>,
}

/// A campaign and its last runs.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct CampaignView {
    id: String,
    /// welcome, newsletter or follow_up.
    kind: String,
    /// The subject template.
    subject: String,
    /// The segment that receives it.
    audience: String,
    /// Newest first, at most five.
    last_runs: Vec<RunView>,
}

/// One run of a campaign.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct RunView {
    id: i64,
    /// The occurrence (scheduled runs), `manual-…` or the standing run of a trigger.
    period_key: String,
    recipients: i64,
    sent: i64,
    failed: i64,
    /// Unix seconds.
    created_at: i64,
}

/// A run started (or found again by its `Idempotency-Key`).
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct RunStarted {
    run: i64,
    campaign: String,
    recipients: i64,
    /// false: the key was seen before; this is that run, nothing new was sent.
    started: bool,
}

/// The campaign in the path.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct CampaignPath {
    /// A campaign id of campaigns.toml.
    id: String,
}

/// `GET /api/v1/campaigns` (`campaigns:run`): every campaign of `campaigns.toml`, with its
/// last runs, newest first.
#[utoipa::path(get, path = "/campaigns", tag = "campaigns",
    security(("token" = ["campaigns:run"])), responses((status = 200, body = CampaignList)))]
pub async fn list(
    _: Authorized<CampaignsRun>,
    State(state): State<AppState>,
) -> Result<Json<CampaignList>, ApiError> {
    let site = state.site();
    let runs = state.store.recent_runs(500).await?;
    let campaigns = site
        .campaigns
        .iter()
        .map(|c| CampaignView {
            id: c.id.clone(),
            kind: c.kind.as_str().to_string(),
            subject: c.subject.clone(),
            audience: c.audience.clone(),
            last_runs: runs
                .iter()
                .filter(|r| r.1 == c.id)
                .take(LAST_RUNS)
                .map(|(id, _, key, recipients, sent, failed, created)| RunView {
                    id: *id,
                    period_key: key.clone(),
                    recipients: *recipients,
                    sent: *sent,
                    failed: *failed,
                    created_at: *created,
                })
                .collect(),
        })
        .collect();
    Ok(Json(CampaignList { campaigns }))
}

/// `POST /api/v1/campaigns/{id}/runs` (`campaigns:run`): a manual run now, as `rapport run`
/// starts one: 201 with the run; with an `Idempotency-Key` seen before for this campaign,
/// 200 with that key's run and nothing new sent.
#[utoipa::path(post, path = "/campaigns/{id}/runs", tag = "campaigns", params(CampaignPath,
        ("Idempotency-Key" = Option<String>, Header, description = "a retry with the same key returns the same run")),
    security(("token" = ["campaigns:run"])),
    responses((status = 201, body = RunStarted), (status = 200, description = "the key's run", body = RunStarted),
        (status = 404, body = super::ErrorBody)))]
pub async fn run(
    _: Authorized<CampaignsRun>,
    State(state): State<AppState>,
    ApiPath(CampaignPath { id }): ApiPath<CampaignPath>,
    headers: HeaderMap,
) -> Result<(StatusCode, Json<RunStarted>), ApiError> {
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
        Json(RunStarted {
            run: queued.run_id,
            campaign: queued.campaign,
            recipients: queued.recipients,
            started,
        }),
    ))
}
