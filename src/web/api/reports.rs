//! `/api/v1/reports/response-rates`: the response-rate export's rows as JSON objects.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;

use super::{ApiError, ApiQuery, Authorized, ReportsRead};
use crate::report::{GroupByArg, Period, RateRow, ReportError};
use crate::web::AppState;

/// The query: `by=campaign|run|segment`, `from` and `to` as `YYYY-MM-DD` (UTC days, both
/// included), each optional.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RatesQuery {
    /// campaign (default), run or segment.
    by: Option<String>,
    /// The first UTC day, YYYY-MM-DD.
    from: Option<String>,
    /// The last UTC day, YYYY-MM-DD.
    to: Option<String>,
}

/// The rows of the response-rate report.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct RateRows {
    rows: Vec<RateRow>,
}

/// `GET /api/v1/reports/response-rates` (`reports:read`): `{"rows": [...]}`, each row with
/// the CSV's columns; counts are numbers, rates numbers or `null`.
#[utoipa::path(get, path = "/reports/response-rates", tag = "reports", params(RatesQuery),
    security(("token" = ["reports:read"])),
    responses((status = 200, body = RateRows), (status = 422, body = super::ErrorBody)))]
pub async fn response_rates(
    _: Authorized<ReportsRead>,
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<RatesQuery>,
) -> Result<Json<RateRows>, ApiError> {
    let invalid = |field: &str, e: ReportError| {
        ApiError::invalid(
            "the report cannot be made for these parameters",
            BTreeMap::from([(field.to_string(), e.to_string())]),
        )
    };
    let GroupByArg(by) =
        q.by.as_deref()
            .unwrap_or_default()
            .parse()
            .map_err(|e| invalid("by", e))?;
    let period = Period::parse(q.from.as_deref(), q.to.as_deref()).map_err(|e| {
        let field = match &e {
            ReportError::BadDate("--to", _) => "to",
            _ => "from",
        };
        invalid(field, e)
    })?;
    let rows = crate::report::response_rates(&state.store, &state.site(), by, period, |_| {})
        .await
        .map_err(|e| match e {
            ReportError::Store(s) => ApiError::from(s),
            other => invalid("by", other),
        })?;
    let rows = rows.iter().map(RateRow::of).collect();
    Ok(Json(RateRows { rows }))
}
