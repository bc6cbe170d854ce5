//! `GET /api/sagas` (`admin`): a page of sagas, and counts per state.

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};

use crate::error::ApiError;
use crate::extract::Authenticated;
use crate::routes::paging::{Page, parse_page};
use crate::state::AppState;
use actors::auth::ROLE_ADMIN;
use actors::read::{self, sagas::SagaSearch};
use actors::saga::SagaState;

/// Largest `olderThanSeconds`: ten years (every database keeps times that far back).
pub const MAX_OLDER_THAN_SECONDS: u64 = 10 * 365 * 86_400;

crate::routes! {
    pub fn configure, pub const ROUTES;
    get "/sagas" => list;
}

/// The paths of this module, for the document.
#[derive(OpenApi)]
#[openapi(paths(list), components(schemas(SagaSummary, SagaPage)))]
pub struct Doc;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SagaQuery {
    pub state: Option<String>,
    pub older_than_seconds: Option<u64>,
    pub page: Option<String>,
    pub size: Option<String>,
}

/// A saga in a list.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SagaSummary {
    pub order_id: String,
    pub state: String,
    pub version: i64,
    pub user_id: String,
    pub failure_reason: Option<String>,
    pub trace_id: String,
    pub started_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
    pub deadline_at: Option<DateTime<Utc>>,
}

/// A page of sagas, and how many sagas are in each state.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct SagaPage {
    #[serde(flatten)]
    page: Page<SagaSummary>,
    /// Sagas per state, every state, whatever the filters.
    #[schema(value_type = std::collections::BTreeMap<String, u64>)]
    counts: serde_json::Map<String, serde_json::Value>,
}

/// Sagas, most recently updated first (`admin`).
#[utoipa::path(get, path = "/api/sagas", tag = "sagas", security(("bearer" = [])),
    params(
        ("state" = Option<String>, Query, description = "`AWAITING_INVENTORY`, `AWAITING_PAYMENT`, `COMPENSATING`, `COMPLETED`, `FAILED` or `COMPENSATED`"),
        ("olderThanSeconds" = Option<u64>, Query, maximum = 315360000, description = "Only sagas not updated for that long (at most ten years)"),
        ("page" = Option<u64>, Query, maximum = 10000000, description = "From 0 (default 0)"),
        ("size" = Option<u64>, Query, minimum = 1, maximum = 100, description = "1–100 (default 20)")),
    responses(
        (status = 200, description = "A page of sagas and the counts per state", body = SagaPage),
        (status = 400, description = "An unknown state, bad paging or `olderThanSeconds`"),
        (status = 403, description = "The token lacks `admin`")))]
async fn list(
    state: web::Data<AppState>,
    caller: Authenticated,
    query: web::Query<SagaQuery>,
) -> Result<HttpResponse, ApiError> {
    caller.require(ROLE_ADMIN)?;
    let query = query.into_inner();
    let request = parse_page(&query.page, &query.size)?;
    let wanted = match query.state.as_deref().filter(|s| !s.is_empty()) {
        Some(s) => Some(s.parse::<SagaState>().map_err(|_| {
            let known: Vec<&str> = SagaState::ALL.iter().map(|s| s.as_str()).collect();
            ApiError::BadRequest(format!("state must be one of {}", known.join(", ")))
        })?),
        None => None,
    };
    if let Some(seconds) = query.older_than_seconds
        && seconds > MAX_OLDER_THAN_SECONDS
    {
        return Err(ApiError::BadRequest(format!(
            "olderThanSeconds must be at most {MAX_OLDER_THAN_SECONDS} (ten years)"
        )));
    }
    let search = SagaSearch {
        state: wanted,
        not_moved_since: query.older_than_seconds.map(|seconds| {
            let age = chrono::Duration::seconds(i64::try_from(seconds).unwrap_or(i64::MAX));
            actors::db::now()
                .checked_sub_signed(age)
                .unwrap_or(DateTime::<Utc>::MIN_UTC)
        }),
        ..SagaSearch::default()
    };
    let (rows, total) = read::sagas::search(&state.reads, &search, request.page, request.size).await?;
    let counts = read::sagas::counts(&state.reads)
        .await?
        .into_iter()
        .map(|(s, n)| (s.as_str().to_owned(), serde_json::Value::from(n)))
        .collect();
    let items = rows
        .into_iter()
        .map(|r| SagaSummary {
            order_id: r.order_id,
            state: r.state,
            version: r.version,
            user_id: r.user_id,
            failure_reason: r.failure_reason,
            trace_id: r.trace_id,
            started_at: r.started_at,
            updated_at: r.updated_at,
            completed_at: r.completed_at,
            deadline_at: r.deadline_at,
        })
        .collect();
    Ok(HttpResponse::Ok().json(SagaPage {
        page: Page::new(items, request, total),
        counts,
    }))
}
