//! Dead letters (`admin`): `GET /api/admin/dead-letters`, `POST …/{id}/replay`, `POST …/{id}/discard`.

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::extract::Authenticated;
use crate::routes::paging::{Page, parse_page};
use crate::state::AppState;
use actors::auth::ROLE_ADMIN;
use actors::mailbox::dead_letters::DeadLetterStatus;
use actors::read;
use entities::dead_letters as rows;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/admin/dead-letters", web::get().to(list))
        .route("/admin/dead-letters/{id}/replay", web::post().to(replay))
        .route("/admin/dead-letters/{id}/discard", web::post().to(discard));
}

#[derive(Debug, Deserialize)]
pub struct DeadLetterQuery {
    pub consumer: Option<String>,
    pub status: Option<String>,
    pub page: Option<String>,
    pub size: Option<String>,
}

/// A dead letter as the API shows it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetterView {
    pub id: String,
    pub message_id: String,
    pub consumer: String,
    pub routing_key: String,
    pub event_type: String,
    pub reason: String,
    pub attempts: i32,
    pub trace_id: Option<String>,
    pub status: String,
    pub payload: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<rows::Model> for DeadLetterView {
    fn from(m: rows::Model) -> Self {
        DeadLetterView {
            id: m.id,
            message_id: m.message_id,
            consumer: m.consumer,
            routing_key: m.routing_key,
            event_type: m.event_type,
            reason: m.reason,
            attempts: m.attempts,
            trace_id: m.trace_id,
            status: m.status,
            payload: m.payload,
            created_at: m.created_at,
            updated_at: m.updated_at,
        }
    }
}

/// Dead letters, newest first; `status` defaults to every status.
async fn list(
    state: web::Data<AppState>,
    caller: Authenticated,
    query: web::Query<DeadLetterQuery>,
) -> Result<HttpResponse, ApiError> {
    caller.require(ROLE_ADMIN)?;
    let query = query.into_inner();
    let request = parse_page(&query.page, &query.size)?;
    let status = query
        .status
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<DeadLetterStatus>())
        .transpose()
        .map_err(|e| ApiError::BadRequest(format!("status: {e}")))?;
    let consumer = query.consumer.as_deref().filter(|s| !s.is_empty());
    let (rows, total) =
        read::dead_letters::page(&state.db, consumer, status, request.page, request.size).await?;
    let items = rows.into_iter().map(DeadLetterView::from).collect();
    Ok(HttpResponse::Ok().json(Page::new(items, request, total)))
}

/// Sends a dead letter back to the queue that gave up on it.
async fn replay(
    state: web::Data<AppState>,
    caller: Authenticated,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    caller.require(ROLE_ADMIN)?;
    let row = state.engine()?.replay_dead_letter(&id).await?;
    Ok(HttpResponse::Ok().json(DeadLetterView::from(row)))
}

/// Drops a dead letter for good.
async fn discard(
    state: web::Data<AppState>,
    caller: Authenticated,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    caller.require(ROLE_ADMIN)?;
    let row = state.engine()?.discard_dead_letter(&id).await?;
    Ok(HttpResponse::Ok().json(DeadLetterView::from(row)))
}
