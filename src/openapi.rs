//! The OpenAPI 3.1 document, generated from the route handlers' `#[utoipa::path]` annotations and the
//! request and response types (`ToSchema`). Each route module has a `Doc` of its paths; [`ApiDoc::build`]
//! merges them and adds what every route shares: the bearer scheme, problem documents for error
//! statuses without a body of their own, and a note on the `/api/v1` aliases.

use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder, ServerBuilder};
use utoipa::{OpenApi, PartialSchema, ToSchema};

use crate::error::Problem;
use crate::routes;

/// The content type of problem documents.
pub const PROBLEM_JSON: &str = "application/problem+json";
/// The name of the bearer security scheme.
pub const BEARER: &str = "bearer";

/// An exact decimal amount, answered as a JSON number written exactly (`39.80`): digits, optionally a
/// point and at most four digits after it.
pub struct Amount;

impl PartialSchema for Amount {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::Number)
            .description(Some(
                "An exact decimal amount (at most four digits after the point), a JSON number written exactly",
            ))
            .examples([serde_json::json!(19.90)])
            .into()
    }
}

impl ToSchema for Amount {}

/// An amount as a client may send it: a JSON number or a string of digits, at most four decimals.
pub struct AmountInput;

impl PartialSchema for AmountInput {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::schema::OneOfBuilder::new()
            .item(
                utoipa::openapi::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::Number),
            )
            .item(
                utoipa::openapi::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::String)
                    .pattern(Some(r"^(0|[1-9][0-9]*)(\.[0-9]{1,4})?$")),
            )
            .description(Some(
                "An amount: digits, optionally a point and at most four digits after it; a JSON number or a string",
            ))
            .into()
    }
}

impl ToSchema for AmountInput {}

/// The root of the document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "ordersaga",
        description = "An actor-based order saga engine: orders, stock, the catalog, sagas, the release audit, \
            dead letters, health and metrics.\n\n\
            Every route under `/api/` also answers under `/api/v1/` (the same route, the same answers); \
            the document lists each once, under `/api/`. Errors are `application/problem+json` documents \
            (`Problem`) whose `type` names the problem (`/problems/<kind>`, listed in docs/api.md)."
    ),
    components(schemas(Problem)),
    tags(
        (name = "auth", description = "Tokens, users and the node's public keys"),
        (name = "stock", description = "Stock levels and direct reservations"),
        (name = "catalog", description = "Products: name, price, whether sold"),
        (name = "notifications", description = "What the `order.created` consumer wrote, per order"),
        (name = "orders", description = "Placing and reading orders and their sagas"),
        (name = "sagas", description = "Every saga (admin)"),
        (name = "release-audit", description = "When reserved stock came back, and why"),
        (name = "dead-letters", description = "What the consumers gave up on (admin)"),
        (name = "operations", description = "Health, readiness, info and metrics (also at Spring Boot's actuator paths)"),
        (name = "dashboards", description = "HTML pages for operators"),
        (name = "docs", description = "This document and Swagger UI"),
    )
)]
pub struct ApiDoc;

impl ApiDoc {
    /// The whole document: every module's paths, the bearer scheme, problem documents, the servers.
    pub fn build() -> utoipa::openapi::OpenApi {
        let mut doc = ApiDoc::openapi();
        for part in [
            routes::health::Doc::openapi(),
            routes::auth::Doc::openapi(),
            routes::docs::Doc::openapi(),
            crate::dashboard::Doc::openapi(),
            routes::release_events::Doc::openapi(),
            routes::stocks::Doc::openapi(),
            routes::catalog::Doc::openapi(),
            routes::orders::Doc::openapi(),
            routes::notifications::Doc::openapi(),
            routes::sagas::Doc::openapi(),
            routes::admin::Doc::openapi(),
        ] {
            doc.merge(part);
        }
        doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
        let components = doc.components.get_or_insert_with(Default::default);
        let mut bearer = Http::new(HttpAuthScheme::Bearer);
        bearer.bearer_format = Some("JWT".to_owned());
        bearer.description = Some(
            "A token from `POST /api/auth/login` (or the mock issuer, `POST /api/auth/token`), or one of \
             an identity provider whose JWKS the node trusts"
                .to_owned(),
        );
        components.add_security_scheme(BEARER, SecurityScheme::Http(bearer));
        doc.servers = Some(vec![
            ServerBuilder::new()
                .url("/")
                .description(Some("This node"))
                .build(),
        ]);
        for (path, item) in doc.paths.paths.iter_mut() {
            for (method, operation) in [
                ("get", &mut item.get),
                ("put", &mut item.put),
                ("post", &mut item.post),
                ("delete", &mut item.delete),
                ("patch", &mut item.patch),
            ] {
                if let Some(operation) = operation {
                    operation.operation_id = Some(operation_id(method, path));
                    with_problems(operation);
                }
            }
        }
        doc
    }
}

/// A unique operation id from the method and the path: `GET /api/stocks/{skuId}` → `getApiStocksBySkuId`
/// (handlers of different modules share names such as `get` and `list`).
fn operation_id(method: &str, path: &str) -> String {
    let mut id = method.to_owned();
    for segment in path.split('/').filter(|s| !s.is_empty()) {
        let (prefix, name) = match segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            Some(parameter) => ("By", parameter),
            None => ("", segment),
        };
        id.push_str(prefix);
        for word in name
            .split(|c: char| !c.is_ascii_alphanumeric())
            .filter(|w| !w.is_empty())
        {
            let mut chars = word.chars();
            if let Some(first) = chars.next() {
                id.push(first.to_ascii_uppercase());
                id.extend(chars);
            }
        }
    }
    if path.len() > 1 && path.ends_with('/') {
        // `/dashboard/` beside `/dashboard`.
        id.push_str("Slash");
    }
    id
}

/// What a status means when it is an error shared by many routes.
fn common_meaning(status: &str) -> &'static str {
    match status {
        "400" => "A malformed body, or a bad field or parameter (the detail names it)",
        "401" => "No token, a malformed `Authorization` header, or a token that does not verify",
        "403" => "The token lacks the role, or the resource is another user's",
        "404" => "Not found",
        "409" => "Conflict",
        "413" => "The body is larger than `body_limit_bytes`",
        "415" => "The body is not `application/json`",
        "422" => "Well-formed but cannot be processed",
        "429" => "Too many attempts (`Retry-After`)",
        "503" => {
            "The database or the bus is away, the node is starting or shutting down, or the request ran \
             past its deadline (`Retry-After`)"
        }
        _ => "An error",
    }
}

/// Gives every error status without content a problem document, adds `503` (any route can answer it:
/// a node starting, shutting down or past a request's deadline), on an operation that takes the
/// bearer token `401`, and on one that takes a JSON body what its extractor answers: `400` (malformed),
/// `413` (over `body_limit_bytes`) and `415` (not `application/json`, or no body).
fn with_problems(operation: &mut Operation) {
    let secured = operation
        .security
        .as_ref()
        .is_some_and(|requirements| !requirements.is_empty());
    let has_body = operation.request_body.is_some();
    let responses = &mut operation.responses.responses;
    let mut wanted = vec!["503"];
    if secured {
        wanted.push("401");
    }
    if has_body {
        wanted.extend(["400", "413", "415"]);
    }
    for status in wanted {
        if !responses.contains_key(status) {
            responses.insert(
                status.to_owned(),
                ResponseBuilder::new().description(common_meaning(status)).into(),
            );
        }
    }
    for (status, response) in responses.iter_mut() {
        let utoipa::openapi::RefOr::T(response) = response else {
            continue;
        };
        let is_error = status.starts_with('4') || status.starts_with('5');
        if is_error && response.content.is_empty() {
            if response.description.is_empty() {
                response.description = common_meaning(status).to_owned();
            }
            response.content.insert(
                PROBLEM_JSON.to_owned(),
                utoipa::openapi::RefOr::T(
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("Problem")))
                        .build(),
                ),
            );
        }
    }
}
