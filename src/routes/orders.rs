//! Orders: `POST /api/orders`, `GET /api/orders/{orderId}`, `GET /api/orders/{orderId}/saga`.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};

use crate::error::ApiError;
use crate::extract::{Authenticated, TraceId};
use crate::state::AppState;
use actors::auth::ROLE_BUYER;
use actors::ids::{OrderId, SkuId};
use actors::placement::{self, NewOrderLine, PlaceOrder, Placement};
use actors::read::{self, orders::OrderRecord};
use entities::Money;

/// Most lines in one order.
pub const MAX_LINES: usize = 100;
/// Largest quantity of one line.
pub const MAX_QUANTITY: i32 = 1_000_000;
/// Largest unit price.
pub const MAX_PRICE: i64 = 1_000_000_000;
/// The idempotency header.
pub const IDEMPOTENCY_KEY: &str = "Idempotency-Key";

crate::routes! {
    pub fn configure, pub const ROUTES;
    post "/orders" => place;
    get "/orders/{orderId}" => get;
    get "/orders/{orderId}/saga" => get_saga;
}

/// The paths of this module, for the document.
#[derive(OpenApi)]
#[openapi(
    paths(place, get, get_saga),
    components(schemas(
        OrderRequest,
        LineRequest,
        LineView,
        OrderView,
        PlacedView,
        SagaView,
        HistoryView,
        PaymentView,
        SagaIdentity
    ))
)]
pub struct Doc;

/// An order to place.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderRequest {
    /// The token's subject.
    pub user_id: String,
    /// 1–100 lines, no SKU twice.
    #[schema(min_items = 1, max_items = 100)]
    pub items: Vec<LineRequest>,
}

/// One line of an order to place.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LineRequest {
    #[schema(pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
    pub sku_id: String,
    /// 1…1 000 000.
    #[schema(minimum = 1, maximum = 1_000_000)]
    pub quantity: i64,
    /// 0…10⁹.
    #[schema(value_type = crate::openapi::AmountInput)]
    pub price: AmountText,
}

/// Who placed a saga's order.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct SagaIdentity {
    pub user_id: String,
    pub roles: Vec<String>,
}

/// An amount as the client wrote it, a JSON number or a string, read by [`Money::parse_amount`] once
/// the line is checked (so that a refusal can name the line).
#[derive(Debug)]
pub struct AmountText(pub String);

impl<'de> Deserialize<'de> for AmountText {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Numbers keep their exact text (serde_json's `arbitrary_precision`).
        match serde_json::Value::deserialize(deserializer)? {
            serde_json::Value::Number(n) => Ok(AmountText(n.to_string())),
            serde_json::Value::String(s) => Ok(AmountText(s)),
            other => Err(serde::de::Error::custom(format!(
                "price must be a number or a string, not {other}"
            ))),
        }
    }
}

/// One line of an order.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LineView {
    pub sku_id: String,
    pub quantity: i32,
    #[schema(value_type = crate::openapi::Amount)]
    pub price: Money,
}

/// An order as the API shows it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderView {
    pub order_id: String,
    pub user_id: String,
    /// `PENDING`, then `CONFIRMED` or `FAILED`.
    pub status: String,
    pub items: Vec<LineView>,
    /// Σ quantity × price, exact.
    #[schema(value_type = crate::openapi::Amount)]
    pub total_amount: Money,
    /// `INSUFFICIENT_STOCK`, `UNKNOWN_SKU`, `PAYMENT_FAILED` or `PAYMENT_TIMEOUT` once `FAILED`.
    pub failure_reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub trace_id: String,
}

impl From<OrderRecord> for OrderView {
    fn from(r: OrderRecord) -> Self {
        OrderView {
            order_id: r.order.id,
            user_id: r.order.user_id,
            status: r.order.status,
            items: r
                .items
                .into_iter()
                .map(|i| LineView {
                    sku_id: i.sku_id,
                    quantity: i.quantity,
                    price: i.price,
                })
                .collect(),
            total_amount: r.order.total_amount,
            failure_reason: r.order.failure_reason,
            created_at: r.order.created_at,
            updated_at: r.order.updated_at,
            trace_id: r.order.trace_id,
        }
    }
}

/// The answer to `POST /api/orders`: the order, and whether it is the original of a repeated key
/// (`reused`, the seed system's field; `Idempotent-Replayed` says the same in a header).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlacedView {
    #[serde(flatten)]
    pub order: OrderView,
    pub reused: bool,
}

/// The `Idempotency-Key`: 1–255 visible ASCII characters.
fn idempotency_key(req: &HttpRequest) -> Result<String, ApiError> {
    let value = req
        .headers()
        .get(IDEMPOTENCY_KEY)
        .ok_or_else(|| ApiError::BadRequest(format!("the {IDEMPOTENCY_KEY} header is required")))?;
    let bytes = value.as_bytes();
    if bytes.is_empty() || bytes.len() > 255 || !bytes.iter().all(|b| (0x21..=0x7e).contains(b)) {
        return Err(ApiError::BadRequest(format!(
            "{IDEMPOTENCY_KEY} must be 1-255 visible ASCII characters"
        )));
    }
    Ok(String::from_utf8_lossy(bytes).into_owned())
}

/// Checks the lines: known format, no SKU twice, quantity 1…10⁶, price 0…10⁹ in the amount format of
/// [`Money::parse_amount`] (at most four decimals, nothing rounded), a total that is exact. Public for
/// the fuzzers (`tests/fuzz`), which hold accepted lines to `docs/api.md`.
pub fn lines(items: Vec<LineRequest>) -> Result<Vec<NewOrderLine>, ApiError> {
    if items.is_empty() {
        return Err(ApiError::BadRequest("items must not be empty".to_owned()));
    }
    if items.len() > MAX_LINES {
        return Err(ApiError::BadRequest(format!(
            "an order has at most {MAX_LINES} lines"
        )));
    }
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let sku_id =
            SkuId::parse(&item.sku_id).map_err(|e| ApiError::BadRequest(format!("items[{i}].skuId {e}")))?;
        if !seen.insert(sku_id.clone()) {
            return Err(ApiError::BadRequest(format!(
                "items[{i}].skuId `{sku_id}` appears twice"
            )));
        }
        if item.quantity < 1 || item.quantity > i64::from(MAX_QUANTITY) {
            return Err(ApiError::BadRequest(format!(
                "items[{i}].quantity must be between 1 and {MAX_QUANTITY}"
            )));
        }
        let price = Money::parse_amount(&item.price.0)
            .map_err(|why| ApiError::BadRequest(format!("items[{i}].price {why}")))?;
        if price.0 > Decimal::from(MAX_PRICE) {
            return Err(ApiError::BadRequest(format!(
                "items[{i}].price must be between 0 and {MAX_PRICE}"
            )));
        }
        out.push(NewOrderLine {
            sku_id,
            quantity: item.quantity as i32,
            price,
        });
    }
    if placement::total(&out).is_none() {
        return Err(ApiError::BadRequest(
            "the order's total is too large to be computed exactly".to_owned(),
        ));
    }
    Ok(out)
}

/// Places an order (`buyer`). `201` for a new order, `200` with `Idempotent-Replayed: true` for the
/// original of a repeated key, `422` when the key came with another body.
#[utoipa::path(post, path = "/api/orders", tag = "orders", request_body = OrderRequest, security(("bearer" = [])),
    params(
        ("Idempotency-Key" = String, Header, pattern = "^[!-~]{1,255}$", description = "1–255 visible ASCII characters; a repeated key (same user, same body) answers the original order"),
        ("X-Trace-Id" = Option<String>, Header, description = "The client's trace id (1–64 of `A-Za-z0-9-_.:`), else the request id")),
    responses(
        (status = 201, description = "The order, `PENDING`", body = PlacedView,
            headers(("Location" = String, description = "`/api/orders/{orderId}`"))),
        (status = 200, description = "The original order of a repeated key (`Idempotent-Replayed: true`, `reused: true`)", body = PlacedView,
            headers(("Location" = String), ("Idempotent-Replayed" = String, description = "`true`"))),
        (status = 400, description = "A bad body or key, `userId` not the token's subject, or a line refused by the catalog (`/problems/product-inactive`, `/problems/price-mismatch`)"),
        (status = 403, description = "The token lacks `buyer`"),
        (status = 413, description = "The body is larger than `body_limit_bytes`"),
        (status = 415, description = "The body is not `application/json`"),
        (status = 422, description = "The key was used with another body (`/problems/idempotency-key-reused`)"),
        (status = 503, description = "Past the deadline, or the node's backlog is full (`/problems/overloaded`): retry with the same key (`Retry-After`)")))]
async fn place(
    state: web::Data<AppState>,
    caller: Authenticated,
    trace: TraceId,
    req: HttpRequest,
    body: web::Json<OrderRequest>,
) -> Result<HttpResponse, ApiError> {
    let identity = caller.require(ROLE_BUYER)?.clone();
    let key = idempotency_key(&req)?;
    let body = body.into_inner();
    if body.user_id != identity.user_id {
        return Err(ApiError::BadRequest(
            "userId must be the subject of the token".to_owned(),
        ));
    }
    let request = PlaceOrder {
        identity,
        trace_id: trace.0,
        idempotency_key: key,
        user_id: body.user_id,
        items: lines(body.items)?,
        deadline: crate::deadline::RequestDeadline::of(&req),
    };
    match state.engine()?.place_order(request).await {
        Ok(Placement::Created(record, _)) => {
            let view = OrderView::from(record);
            Ok(HttpResponse::Created()
                .insert_header((header::LOCATION, format!("/api/orders/{}", view.order_id)))
                .json(PlacedView {
                    order: view,
                    reused: false,
                }))
        }
        Ok(Placement::Replayed(record)) => {
            let view = OrderView::from(record);
            Ok(HttpResponse::Ok()
                .insert_header((header::LOCATION, format!("/api/orders/{}", view.order_id)))
                .insert_header(("Idempotent-Replayed", "true"))
                .json(PlacedView {
                    order: view,
                    reused: true,
                }))
        }
        Err(e) => Err(e.into()),
    }
}

async fn owned_order(state: &AppState, caller: &Authenticated, id: &str) -> Result<OrderRecord, ApiError> {
    let id = OrderId::parse(id).map_err(|e| ApiError::BadRequest(format!("the order id {e}")))?;
    let record = read::orders::find(&state.reads, id.as_str())
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no order {id}")))?;
    caller.require_owner_or_admin(&record.order.user_id)?;
    Ok(record)
}

/// One order (its owner or an admin).
#[utoipa::path(get, path = "/api/orders/{orderId}", tag = "orders", security(("bearer" = [])),
    params(("orderId" = String, Path, pattern = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$", description = "The order id (a UUID)")),
    responses(
        (status = 200, description = "The order", body = OrderView),
        (status = 400, description = "Not a UUID"),
        (status = 403, description = "Another user's order"),
        (status = 404, description = "Unknown order")))]
async fn get(
    state: web::Data<AppState>,
    caller: Authenticated,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let record = owned_order(&state, &caller, &path).await?;
    Ok(HttpResponse::Ok().json(OrderView::from(record)))
}

/// One step of a saga.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HistoryView {
    pub seq: i32,
    pub at: DateTime<Utc>,
    pub event_type: String,
    pub event_id: Option<String>,
    pub routing_key: Option<String>,
    pub from_state: Option<String>,
    pub to_state: String,
    pub detail: Option<String>,
}

/// The order's payment as the ledger has it: `SUCCEEDED`, `FAILED`, or `REFUNDED` (a payment that had
/// succeeded for an order that did not confirm, given back).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PaymentView {
    pub payment_id: String,
    pub status: String,
    #[schema(value_type = crate::openapi::Amount)]
    pub amount: Money,
    pub reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub refund_id: Option<String>,
    pub refund_reason: Option<String>,
    pub refunded_at: Option<DateTime<Utc>>,
}

impl From<entities::payment_records::Model> for PaymentView {
    fn from(p: entities::payment_records::Model) -> Self {
        PaymentView {
            payment_id: p.id,
            status: p.status,
            amount: p.amount,
            reason: p.reason,
            created_at: p.created_at,
            refund_id: p.refund_id,
            refund_reason: p.refund_reason,
            refunded_at: p.refunded_at,
        }
    }
}

/// A saga for inspection.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SagaView {
    pub order_id: String,
    pub state: String,
    pub version: i64,
    pub started_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
    pub deadline_at: Option<DateTime<Utc>>,
    pub trace_id: String,
    /// `{"userId","roles"}`.
    #[schema(value_type = Option<SagaIdentity>)]
    pub identity: serde_json::Value,
    pub failure_reason: Option<String>,
    pub reservation_id: Option<String>,
    pub payment_id: Option<String>,
    /// The payment, once the gateway answered.
    pub payment: Option<PaymentView>,
    pub history: Vec<HistoryView>,
}

/// The identity JSON of a saga row as the API shows it: `{"userId","roles"}`.
pub fn identity_view(raw: &str) -> serde_json::Value {
    match serde_json::from_str::<actors::auth::Identity>(raw) {
        Ok(i) => serde_json::json!({"userId": i.user_id, "roles": i.roles}),
        Err(_) => serde_json::Value::Null,
    }
}

/// The saga of an order with its history (its owner or an admin).
#[utoipa::path(get, path = "/api/orders/{orderId}/saga", tag = "orders", security(("bearer" = [])),
    params(("orderId" = String, Path, pattern = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$", description = "The order id (a UUID)")),
    responses(
        (status = 200, description = "The saga, its payment and its history", body = SagaView),
        (status = 400, description = "Not a UUID"),
        (status = 403, description = "Another user's order"),
        (status = 404, description = "Unknown order")))]
async fn get_saga(
    state: web::Data<AppState>,
    caller: Authenticated,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let record = owned_order(&state, &caller, &path).await?;
    let (saga, history) = read::sagas::find(&state.reads, &record.order.id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no saga for order {}", record.order.id)))?;
    let payment = read::payments::of_order(&state.reads, &record.order.id).await?;
    Ok(HttpResponse::Ok().json(SagaView {
        order_id: saga.order_id,
        state: saga.state,
        version: saga.version,
        started_at: saga.started_at,
        updated_at: saga.updated_at,
        completed_at: saga.completed_at,
        deadline_at: saga.deadline_at,
        trace_id: saga.trace_id,
        identity: identity_view(&saga.identity),
        failure_reason: saga.failure_reason,
        reservation_id: saga.reservation_id,
        payment_id: saga.payment_id,
        payment: payment.map(PaymentView::from),
        history: history
            .into_iter()
            .map(|h| HistoryView {
                seq: h.seq,
                at: h.at,
                event_type: h.event_type,
                event_id: h.event_id,
                routing_key: h.routing_key,
                from_state: h.from_state,
                to_state: h.to_state,
                detail: h.detail,
            })
            .collect(),
    }))
}
