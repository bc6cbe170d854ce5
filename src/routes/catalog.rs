//! The product catalog: `PUT /api/catalog/products/{skuId}`, `GET /api/catalog/products/{skuId}`,
//! `GET /api/catalog/products?page=&size=&active=`. Reads go through the read cache.

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};

use crate::error::ApiError;
use crate::extract::Authenticated;
use crate::routes::orders::{AmountText, MAX_PRICE};
use crate::routes::paging::{Page, given, parse_page, quoted};
use crate::state::AppState;
use actors::auth::ROLE_ADMIN;
use actors::catalog::{self, ProductUpsert};
use actors::ids::SkuId;
use actors::read;
use entities::{Money, products};

/// Longest product name, in characters.
pub const MAX_NAME_CHARS: usize = 255;
/// Longest description, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 4000;

crate::routes! {
    pub fn configure, pub const ROUTES;
    get "/catalog/products" => list;
    put "/catalog/products/{skuId}" => put;
    get "/catalog/products/{skuId}" => get;
}

/// The paths of this module, for the document.
#[derive(OpenApi)]
#[openapi(paths(list, put, get), components(schemas(ProductView, UpsertRequest)))]
pub struct Doc;

/// A product as the API shows it (the seed catalog's shape).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProductView {
    pub sku_id: String,
    pub name: String,
    /// Empty when none was given.
    pub description: String,
    /// `null` for a product the catalog has not priced (one the stock upsert created).
    #[schema(value_type = Option<crate::openapi::Amount>)]
    pub price: Option<Money>,
    pub active: bool,
    pub updated_at: DateTime<Utc>,
}

impl From<products::Model> for ProductView {
    fn from(m: products::Model) -> Self {
        ProductView {
            sku_id: m.sku_id,
            name: m.name,
            description: m.description.unwrap_or_default(),
            price: m.price,
            active: m.active,
            updated_at: m.updated_at,
        }
    }
}

/// A product to create or replace.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = ProductRequest)]
pub struct UpsertRequest {
    /// 1–255 characters, not blank.
    #[schema(min_length = 1, max_length = 255)]
    pub name: String,
    /// At most 4000 characters.
    #[schema(max_length = 4000)]
    pub description: Option<String>,
    /// Above 0 and at most 10⁹.
    #[schema(value_type = crate::openapi::AmountInput)]
    pub price: AmountText,
    /// Absent: `true`.
    pub active: Option<bool>,
}

fn sku(text: &str) -> Result<SkuId, ApiError> {
    SkuId::parse(text).map_err(|e| ApiError::BadRequest(format!("skuId {e}")))
}

/// Checks an upsert: a name of 1–255 characters (not blank), a description of at most 4000, a price
/// above 0 and at most 10⁹ in the amount format of orders. Public for the fuzzers (`tests/fuzz`).
pub fn product(sku_id: SkuId, body: UpsertRequest) -> Result<ProductUpsert, ApiError> {
    let name = body.name.trim().to_owned();
    if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
        return Err(ApiError::BadRequest(format!(
            "name must be 1 to {MAX_NAME_CHARS} characters, not blank"
        )));
    }
    crate::routes::paging::without_nul("name", &name)?;
    let description = body.description.filter(|d| !d.is_empty());
    if description
        .as_ref()
        .is_some_and(|d| d.chars().count() > MAX_DESCRIPTION_CHARS)
    {
        return Err(ApiError::BadRequest(format!(
            "description must be at most {MAX_DESCRIPTION_CHARS} characters"
        )));
    }
    if let Some(description) = &description {
        crate::routes::paging::without_nul("description", description)?;
    }
    let price =
        Money::parse_amount(&body.price.0).map_err(|why| ApiError::BadRequest(format!("price {why}")))?;
    if price.0 <= Decimal::ZERO || price.0 > Decimal::from(MAX_PRICE) {
        return Err(ApiError::BadRequest(format!(
            "price must be above 0 and at most {MAX_PRICE}"
        )));
    }
    Ok(ProductUpsert {
        sku_id,
        name,
        description,
        price,
        active: body.active.unwrap_or(true),
    })
}

/// Creates or replaces a product (`admin`); `200` with the product as written.
#[utoipa::path(put, path = "/api/catalog/products/{skuId}", tag = "catalog", request_body = UpsertRequest, security(("bearer" = [])),
    params(("skuId" = String, Path, pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$", description = "The SKU")),
    responses(
        (status = 200, description = "The product as written", body = ProductView),
        (status = 400, description = "A bad SKU, name, description or price"),
        (status = 403, description = "The token lacks `admin`")))]
async fn put(
    state: web::Data<AppState>,
    caller: Authenticated,
    sku_id: web::Path<String>,
    body: web::Json<UpsertRequest>,
) -> Result<HttpResponse, ApiError> {
    caller.require(ROLE_ADMIN)?;
    let upsert = product(sku(&sku_id)?, body.into_inner())?;
    let row = state.engine()?.upsert_product(upsert).await?;
    Ok(HttpResponse::Ok().json(ProductView::from(row)))
}

/// One product; `404` if the SKU has none.
#[utoipa::path(get, path = "/api/catalog/products/{skuId}", tag = "catalog",
    params(("skuId" = String, Path, pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$", description = "The SKU")),
    responses(
        (status = 200, description = "The product", body = ProductView),
        (status = 400, description = "A bad SKU"),
        (status = 404, description = "The SKU has no product")))]
async fn get(state: web::Data<AppState>, sku_id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let sku_id = sku(&sku_id)?;
    let engine = state.engine()?;
    match catalog::product(&engine.cache, &state.db, sku_id.as_str()).await? {
        Some(row) => Ok(HttpResponse::Ok().json(ProductView::from(row))),
        None => Err(ApiError::NotFound(format!("no product `{sku_id}`"))),
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    pub page: Option<String>,
    pub size: Option<String>,
    pub active: Option<String>,
}

/// A page of products ordered by SKU, only active or inactive ones with `active=true|false`. Pages are
/// read from the database (only single products are cached).
#[utoipa::path(get, path = "/api/catalog/products", tag = "catalog",
    params(
        ("page" = Option<u64>, Query, maximum = 10000000, description = "From 0 (default 0)"),
        ("size" = Option<u64>, Query, minimum = 1, maximum = 100, description = "1–100 (default 20)"),
        ("active" = Option<bool>, Query, description = "Only active (`true`) or inactive (`false`) products")),
    responses(
        (status = 200, description = "A page of products ordered by SKU", body = Page<ProductView>),
        (status = 400, description = "Bad paging or `active`")))]
async fn list(state: web::Data<AppState>, query: web::Query<ListQuery>) -> Result<HttpResponse, ApiError> {
    let request = parse_page(&query.page, &query.size)?;
    let active = match given(&query.active) {
        None => None,
        Some(text) if text.eq_ignore_ascii_case("true") => Some(true),
        Some(text) if text.eq_ignore_ascii_case("false") => Some(false),
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "active must be true or false, not `{}`",
                quoted(other)
            )));
        }
    };
    let (rows, total) = read::products::page(&state.reads, active, request.page, request.size).await?;
    let items = rows.into_iter().map(ProductView::from).collect();
    Ok(HttpResponse::Ok().json(Page::new(items, request, total)))
}
