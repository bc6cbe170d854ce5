//! Stock: `POST /api/stocks`, `PUT /api/stocks/{skuId}`, `GET /api/stocks/{skuId}`, `GET /api/stocks`,
//! and direct reservations: `POST /api/stocks/reserve` (ordersaga's) and `POST /api/stocks/reservations`
//! (the seed system's reservation resource), one reservation path behind both.

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};

use crate::error::ApiError;
use crate::extract::Authenticated;
use crate::routes::paging::{Page, PageQuery};
use crate::state::AppState;
use actors::auth::ROLE_ADMIN;
use actors::consumers::inventory::{self, Reservation};
use actors::envelope::SkuQuantity;
use actors::ids::{OrderId, SkuId};
use actors::read;
use entities::stocks;

crate::routes! {
    pub fn configure, pub const ROUTES;
    post "/stocks/reserve" => reserve;
    post "/stocks/reservations" => reservations;
    post "/stocks" => upsert;
    get "/stocks" => list;
    put "/stocks/{skuId}" => put;
    get "/stocks/{skuId}" => get;
}

/// The paths of this module, for the document.
#[derive(OpenApi)]
#[openapi(
    paths(reserve, reservations, upsert, list, put, get),
    components(schemas(
        StockView,
        UpsertRequest,
        PutRequest,
        ReserveRequest,
        ReserveLine,
        Reserved,
        ReservationView
    ))
)]
pub struct Doc;

/// A reservation made by `POST /api/stocks/reserve`.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct Reserved {
    pub reservation_id: String,
    pub order_id: String,
    /// `RESERVED`.
    pub status: String,
    pub items: Vec<ReserveLine>,
}

/// A stock row as the API shows it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StockView {
    pub sku_id: String,
    pub available_qty: i64,
    pub reserved_qty: i64,
    pub version: i64,
    pub updated_at: DateTime<Utc>,
}

impl From<stocks::Model> for StockView {
    fn from(m: stocks::Model) -> Self {
        StockView {
            sku_id: m.sku_id,
            available_qty: m.available_qty,
            reserved_qty: m.reserved_qty,
            version: m.version,
            updated_at: m.updated_at,
        }
    }
}

/// A SKU's available quantity.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = StockRequest)]
pub struct UpsertRequest {
    /// 1–64 of `A-Za-z0-9-_.`, starting with a letter or digit.
    #[schema(pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
    pub sku_id: String,
    /// 0…10¹².
    #[schema(minimum = 0, maximum = 1_000_000_000_000_i64)]
    pub available_qty: i64,
}

/// A SKU's available quantity, the SKU in the path.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = StockQuantity)]
pub struct PutRequest {
    /// 0…10¹².
    #[schema(minimum = 0, maximum = 1_000_000_000_000_i64)]
    pub available_qty: i64,
}

async fn set(state: &AppState, sku_id: &str, available_qty: i64) -> Result<HttpResponse, ApiError> {
    let sku_id = SkuId::parse(sku_id).map_err(|e| ApiError::BadRequest(format!("skuId {e}")))?;
    let row = state.engine()?.set_stock(sku_id, available_qty).await?;
    Ok(HttpResponse::Ok().json(StockView::from(row)))
}

/// Sets a SKU's available quantity, creating the SKU if new (`admin`).
#[utoipa::path(post, path = "/api/stocks", tag = "stock", request_body = UpsertRequest, security(("bearer" = [])),
    responses(
        (status = 200, description = "The stock row; `version` grows by one on each change", body = StockView),
        (status = 400, description = "A bad SKU or quantity"),
        (status = 403, description = "The token lacks `admin`")))]
async fn upsert(
    state: web::Data<AppState>,
    caller: Authenticated,
    body: web::Json<UpsertRequest>,
) -> Result<HttpResponse, ApiError> {
    caller.require(ROLE_ADMIN)?;
    let body = body.into_inner();
    set(&state, &body.sku_id, body.available_qty).await
}

/// The same as `POST /api/stocks`, with the SKU in the path (`admin`).
#[utoipa::path(put, path = "/api/stocks/{skuId}", tag = "stock", request_body = PutRequest, security(("bearer" = [])),
    params(("skuId" = String, Path, pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$", description = "The SKU")),
    responses(
        (status = 200, description = "The stock row", body = StockView),
        (status = 400, description = "A bad SKU or quantity"),
        (status = 403, description = "The token lacks `admin`")))]
async fn put(
    state: web::Data<AppState>,
    caller: Authenticated,
    sku_id: web::Path<String>,
    body: web::Json<PutRequest>,
) -> Result<HttpResponse, ApiError> {
    caller.require(ROLE_ADMIN)?;
    set(&state, &sku_id, body.available_qty).await
}

/// One SKU, through the read cache; `404` if unknown.
#[utoipa::path(get, path = "/api/stocks/{skuId}", tag = "stock",
    params(("skuId" = String, Path, pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$", description = "The SKU")),
    responses(
        (status = 200, description = "The stock row", body = StockView),
        (status = 404, description = "Unknown SKU")))]
async fn get(state: web::Data<AppState>, sku_id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let sku_id = sku_id.into_inner();
    // A SKU that could not be written has no stock; asking the database would only risk what it
    // cannot compare (PostgreSQL refuses a NUL character: a `500`).
    if SkuId::parse(&sku_id).is_err() {
        return Err(ApiError::NotFound(format!(
            "no stock for SKU `{}`",
            crate::routes::paging::quoted(&sku_id)
        )));
    }
    let engine = state.engine()?;
    match read::stock::get_cached(&engine.cache, &state.db, &sku_id).await? {
        Some(row) => Ok(HttpResponse::Ok().json(StockView::from(row))),
        None => Err(ApiError::NotFound(format!("no stock for SKU `{sku_id}`"))),
    }
}

/// A page of SKUs ordered by id.
#[utoipa::path(get, path = "/api/stocks", tag = "stock",
    params(
        ("page" = Option<u64>, Query, maximum = 10000000, description = "From 0 (default 0)"),
        ("size" = Option<u64>, Query, minimum = 1, maximum = 100, description = "1–100 (default 20)")),
    responses(
        (status = 200, description = "A page of stock rows", body = Page<StockView>),
        (status = 400, description = "Bad paging")))]
async fn list(state: web::Data<AppState>, query: web::Query<PageQuery>) -> Result<HttpResponse, ApiError> {
    let request = query.validate()?;
    let (rows, total) = read::stock::page(&state.reads, request.page, request.size).await?;
    let items = rows.into_iter().map(StockView::from).collect();
    Ok(HttpResponse::Ok().json(Page::new(items, request, total)))
}

/// The lines to reserve for an order.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReserveRequest {
    /// A UUID.
    #[schema(pattern = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")]
    pub order_id: String,
    #[schema(min_items = 1, max_items = 100)]
    pub items: Vec<ReserveLine>,
}

/// A SKU and a quantity (1…10⁶).
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReserveLine {
    #[schema(pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
    pub sku_id: String,
    #[schema(minimum = 1, maximum = 1_000_000)]
    pub quantity: i64,
}

/// A reserve request, checked: the order id and its lines. Public for the fuzzers (`tests/fuzz`).
pub fn reserve_lines(body: ReserveRequest) -> Result<(OrderId, Vec<SkuQuantity>), ApiError> {
    let order_id =
        OrderId::parse(&body.order_id).map_err(|e| ApiError::BadRequest(format!("orderId {e}")))?;
    if body.items.is_empty() || body.items.len() > crate::routes::orders::MAX_LINES {
        return Err(ApiError::BadRequest(format!(
            "items must have 1 to {} lines",
            crate::routes::orders::MAX_LINES
        )));
    }
    let mut items = Vec::with_capacity(body.items.len());
    for (i, line) in body.items.into_iter().enumerate() {
        let sku_id =
            SkuId::parse(&line.sku_id).map_err(|e| ApiError::BadRequest(format!("items[{i}].skuId {e}")))?;
        if !(1..=i64::from(crate::routes::orders::MAX_QUANTITY)).contains(&line.quantity) {
            return Err(ApiError::BadRequest(format!(
                "items[{i}].quantity must be between 1 and {}",
                crate::routes::orders::MAX_QUANTITY
            )));
        }
        items.push(SkuQuantity {
            sku_id: sku_id.into_string(),
            quantity: line.quantity as i32,
        });
    }
    Ok((order_id, items))
}

/// Reserves a request's lines (`admin`), all or none, idempotent per `orderId`: the one path of both
/// reservation routes.
async fn reserve_for(
    state: &AppState,
    caller: &Authenticated,
    body: ReserveRequest,
) -> Result<(OrderId, Vec<SkuQuantity>, Reservation), ApiError> {
    caller.require(ROLE_ADMIN)?;
    let (order_id, items) = reserve_lines(body)?;
    let reservation = state.engine()?.reserve(order_id.clone(), items.clone()).await?;
    Ok((order_id, items, reservation))
}

fn line_views(items: Vec<SkuQuantity>) -> Vec<ReserveLine> {
    items
        .into_iter()
        .map(|i| ReserveLine {
            sku_id: i.sku_id,
            quantity: i64::from(i.quantity),
        })
        .collect()
}

/// Reserves stock for an order directly (`admin`): all lines or none, idempotent per `orderId`.
/// `200` with the reservation; `409` when a SKU is unknown or short (nothing is held then).
#[utoipa::path(post, path = "/api/stocks/reserve", tag = "stock", request_body = ReserveRequest, security(("bearer" = [])),
    responses(
        (status = 200, description = "Every line is held (the same reservation for a repeated `orderId`)", body = Reserved),
        (status = 400, description = "A bad body"),
        (status = 403, description = "The token lacks `admin`"),
        (status = 409, description = "A SKU is unknown (`/problems/unknown-sku`) or short (`/problems/insufficient-stock`); nothing is held")))]
async fn reserve(
    state: web::Data<AppState>,
    caller: Authenticated,
    body: web::Json<ReserveRequest>,
) -> Result<HttpResponse, ApiError> {
    match reserve_for(&state, &caller, body.into_inner()).await? {
        (
            order_id,
            _,
            Reservation::Reserved {
                reservation_id,
                items,
                ..
            },
        ) => Ok(HttpResponse::Ok().json(serde_json::json!({
            "reservationId": reservation_id,
            "orderId": order_id,
            "status": inventory::ReservationStatus::Reserved.as_str(),
            "items": line_views(items),
        }))),
        (_, _, Reservation::Refused(refusal)) => Err(ApiError::stock_refused(refusal.reason)),
    }
}

/// The seed system's reservation resource: `{reservationId, orderId, status, reason, items, createdAt}`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReservationView {
    /// `null` when `FAILED`: a refusal holds nothing and is not stored.
    pub reservation_id: Option<String>,
    pub order_id: String,
    /// `RESERVED` or `FAILED`.
    pub status: &'static str,
    /// Why it failed: `INSUFFICIENT_STOCK:SKU-001 available=1 requested=2`, `SKU_NOT_FOUND:SKU-001`.
    pub reason: Option<String>,
    pub items: Vec<ReserveLine>,
    pub created_at: DateTime<Utc>,
}

/// A refused reservation's status in the seed system's resource.
pub const RESERVATION_FAILED: &str = "FAILED";

/// `POST /api/stocks/reservations` (`admin`): the seed system's reservation resource. `200` whatever
/// the outcome, with `status` `RESERVED` (the reservation, the same one for a repeated `orderId`) or
/// `FAILED` (nothing held, `reason` naming the SKU and the quantities); `400` for a bad body.
#[utoipa::path(post, path = "/api/stocks/reservations", tag = "stock", request_body = ReserveRequest, security(("bearer" = [])),
    responses(
        (status = 200, description = "`RESERVED`, or `FAILED` with the reason (nothing held)", body = ReservationView),
        (status = 400, description = "A bad body"),
        (status = 403, description = "The token lacks `admin`")))]
async fn reservations(
    state: web::Data<AppState>,
    caller: Authenticated,
    body: web::Json<ReserveRequest>,
) -> Result<HttpResponse, ApiError> {
    let view = match reserve_for(&state, &caller, body.into_inner()).await? {
        (
            order_id,
            _,
            Reservation::Reserved {
                reservation_id,
                items,
                created_at,
            },
        ) => ReservationView {
            reservation_id: Some(reservation_id),
            order_id: order_id.into_string(),
            status: inventory::ReservationStatus::Reserved.as_str(),
            reason: None,
            items: line_views(items),
            created_at,
        },
        (order_id, requested, Reservation::Refused(refusal)) => ReservationView {
            reservation_id: None,
            order_id: order_id.into_string(),
            status: RESERVATION_FAILED,
            reason: Some(refusal.detail()),
            items: line_views(requested),
            created_at: Utc::now(),
        },
    };
    Ok(HttpResponse::Ok().json(view))
}
