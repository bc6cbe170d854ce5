//! `GET /api/notifications?orderId=&page=&size=`: the notifications the `order.created` consumer wrote,
//! newest first. With `orderId`, that order's (its owner or an admin, as `GET /api/orders/{orderId}`);
//! without, the caller's own, or everyone's for an admin.

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};

use crate::error::ApiError;
use crate::extract::Authenticated;
use crate::routes::paging::{Page, parse_page};
use crate::routes::release_events::parse_order_id;
use crate::state::AppState;
use actors::read::{self, notifications::NotificationFilter};
use entities::notifications;

crate::routes! {
    pub fn configure, pub const ROUTES;
    get "/notifications" => list;
}

/// The paths of this module, for the document.
#[derive(OpenApi)]
#[openapi(paths(list), components(schemas(NotificationView)))]
pub struct Doc;

/// The query string, every value as text so that a `400` names the parameter at fault.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NotificationQuery {
    pub order_id: Option<String>,
    pub page: Option<String>,
    pub size: Option<String>,
}

/// A notification as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NotificationView {
    pub id: i64,
    /// The `event_id` of the `order.created` event it was written for (one notification per event).
    pub event_id: String,
    pub order_id: String,
    pub user_id: String,
    /// `ORDER_PLACED`.
    pub kind: String,
    pub message: String,
    pub created_at: DateTime<Utc>,
}

impl From<notifications::Model> for NotificationView {
    fn from(m: notifications::Model) -> Self {
        NotificationView {
            id: m.id,
            event_id: m.event_id,
            order_id: m.order_id,
            user_id: m.user_id,
            kind: m.kind,
            message: m.message,
            created_at: m.created_at,
        }
    }
}

/// A page of notifications: of one order (its owner or an admin), else the caller's own (everyone's for
/// an admin).
#[utoipa::path(get, path = "/api/notifications", tag = "notifications", security(("bearer" = [])),
    params(
        ("orderId" = Option<String>, Query, pattern = "^([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})?$", description = "Only this order's (a UUID; empty: all); its owner or `admin`"),
        ("page" = Option<u64>, Query, maximum = 10000000, description = "From 0 (default 0)"),
        ("size" = Option<u64>, Query, minimum = 1, maximum = 100, description = "1–100 (default 20)")),
    responses(
        (status = 200, description = "A page of notifications, newest first", body = Page<NotificationView>),
        (status = 400, description = "A bad `orderId`, `page` or `size`"),
        (status = 403, description = "The order is another user's"),
        (status = 404, description = "No such order")))]
async fn list(
    state: web::Data<AppState>,
    caller: Authenticated,
    query: web::Query<NotificationQuery>,
) -> Result<HttpResponse, ApiError> {
    let query = query.into_inner();
    let order_id = parse_order_id(&query.order_id)?;
    let request = parse_page(&query.page, &query.size)?;
    let filter = match order_id {
        Some(order_id) => {
            let record = read::orders::find(&state.reads, &order_id)
                .await?
                .ok_or_else(|| ApiError::NotFound(format!("no order {order_id}")))?;
            caller.require_owner_or_admin(&record.order.user_id)?;
            NotificationFilter {
                order_id: Some(order_id),
                user_id: None,
            }
        }
        None if caller.identity().is_admin() => NotificationFilter::default(),
        None => NotificationFilter {
            order_id: None,
            user_id: Some(caller.identity().user_id.clone()),
        },
    };
    let (rows, total) = read::notifications::page(&state.reads, &filter, request.page, request.size).await?;
    let items = rows.into_iter().map(NotificationView::from).collect();
    Ok(HttpResponse::Ok().json(Page::new(items, request, total)))
}
