//! Dead letters (`admin`): `GET /api/admin/dead-letters`, `POST …/{id}/replay`, `POST …/{id}/discard`.

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};

use crate::error::ApiError;
use crate::extract::Authenticated;
use crate::routes::paging::{Page, parse_page};
use crate::state::AppState;
use actors::auth::ROLE_ADMIN;
use actors::mailbox::dead_letters::DeadLetterStatus;
use actors::read;
use entities::dead_letters as rows;

crate::routes! {
    pub fn configure, pub const ROUTES;
    get "/admin/dead-letters" => list;
    post "/admin/dead-letters/{id}/replay" => replay;
    post "/admin/dead-letters/{id}/discard" => discard;
}

/// The paths of this module, for the document.
#[derive(OpenApi)]
#[openapi(paths(list, replay, discard), components(schemas(DeadLetterView)))]
pub struct Doc;

#[derive(Debug, Deserialize)]
pub struct DeadLetterQuery {
    pub consumer: Option<String>,
    pub status: Option<String>,
    pub page: Option<String>,
    pub size: Option<String>,
}

/// A dead letter as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
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
#[utoipa::path(get, path = "/api/admin/dead-letters", tag = "dead-letters", security(("bearer" = [])),
    params(
        ("consumer" = Option<String>, Query, description = "A consumer's queue, e.g. `q.payment.inventory-reserved`"),
        ("status" = Option<String>, Query, description = "`DEAD`, `REPLAYED` or `DISCARDED`"),
        ("page" = Option<u64>, Query, maximum = 10000000, description = "From 0 (default 0)"),
        ("size" = Option<u64>, Query, minimum = 1, maximum = 100, description = "1–100 (default 20)")),
    responses(
        (status = 200, description = "A page of dead letters", body = Page<DeadLetterView>),
        (status = 400, description = "A bad status or paging"),
        (status = 403, description = "The token lacks `admin`")))]
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
    if let Some(consumer) = consumer {
        crate::routes::paging::without_nul("consumer", consumer)?;
    }
    let (rows, total) =
        read::dead_letters::page(&state.reads, consumer, status, request.page, request.size).await?;
    let items = rows.into_iter().map(DeadLetterView::from).collect();
    Ok(HttpResponse::Ok().json(Page::new(items, request, total)))
}

/// Sends a dead letter back to the queue that gave up on it.
#[utoipa::path(post, path = "/api/admin/dead-letters/{id}/replay", tag = "dead-letters", security(("bearer" = [])),
    params(("id" = String, Path, description = "The dead letter's id")),
    responses(
        (status = 200, description = "The letter, now `REPLAYED`", body = DeadLetterView),
        (status = 403, description = "The token lacks `admin`"),
        (status = 404, description = "Unknown dead letter"),
        (status = 409, description = "The letter is not `DEAD` (`/problems/dead-letter-not-dead`)")))]
async fn replay(
    state: web::Data<AppState>,
    caller: Authenticated,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    caller.require(ROLE_ADMIN)?;
    known_id(&id)?;
    let row = state.engine()?.replay_dead_letter(&id).await?;
    Ok(HttpResponse::Ok().json(DeadLetterView::from(row)))
}

/// `404` for an id no letter can have (a NUL character, which PostgreSQL cannot compare: a `500`).
fn known_id(id: &str) -> Result<(), ApiError> {
    if id.contains('\0') {
        return Err(ApiError::NotFound(format!(
            "no dead letter `{}`",
            crate::routes::paging::quoted(id)
        )));
    }
    Ok(())
}

/// Drops a dead letter for good.
#[utoipa::path(post, path = "/api/admin/dead-letters/{id}/discard", tag = "dead-letters", security(("bearer" = [])),
    params(("id" = String, Path, description = "The dead letter's id")),
    responses(
        (status = 200, description = "The letter, now `DISCARDED`", body = DeadLetterView),
        (status = 403, description = "The token lacks `admin`"),
        (status = 404, description = "Unknown dead letter"),
        (status = 409, description = "The letter is not `DEAD` (`/problems/dead-letter-not-dead`)")))]
async fn discard(
    state: web::Data<AppState>,
    caller: Authenticated,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    caller.require(ROLE_ADMIN)?;
    known_id(&id)?;
    let row = state.engine()?.discard_dead_letter(&id).await?;
    Ok(HttpResponse::Ok().json(DeadLetterView::from(row)))
}
