//! The OpenAPI document of the routes (`GET /api/openapi.json`, and `GET /v3/api-docs`, springdoc's
//! path) and Swagger UI to browse it (`/swagger-ui/index.html`; `/swagger-ui.html` and `/docs` lead
//! there). The page's files come from the `utoipa-swagger-ui` crate, compiled into the binary: the page
//! loads nothing but this node's files. No token is needed.

use std::sync::{Arc, OnceLock};

use actix_web::http::header;
use actix_web::{HttpResponse, web};
use utoipa::OpenApi;
use utoipa_swagger_ui::Config;

use crate::openapi::ApiDoc;
use crate::routes;

/// Where the document is served (and what the page reads).
pub const DOCUMENT_PATH: &str = "/api/openapi.json";
/// The page.
pub const UI_INDEX: &str = "/swagger-ui/index.html";

/// Every page of Swagger UI says where its content may come from: this node only.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
     img-src 'self' data:; connect-src 'self'; font-src 'self'; form-action 'self'; base-uri 'none'; \
     frame-ancestors 'none'";

routes! {
    pub fn configure, pub const ROUTES;
    get "/v3/api-docs" => api_docs;
    get "/swagger-ui.html" => swagger_ui_html;
    get "/docs" => docs_page;
    get "/swagger-ui" => swagger_ui_root;
    get "/swagger-ui/{file:.*}" => swagger_ui_file;
}

routes! {
    pub fn configure_api, pub const API_ROUTES;
    get "/openapi.json" => openapi_json;
}

/// The document as JSON, built once.
pub fn document() -> &'static str {
    static DOCUMENT: OnceLock<String> = OnceLock::new();
    DOCUMENT.get_or_init(|| {
        ApiDoc::build().to_json().unwrap_or_else(|e| {
            tracing::error!(error = %e, "the OpenAPI document does not serialize");
            "{}".to_owned()
        })
    })
}

fn json_document() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(document())
}

/// The OpenAPI 3.1 document of every route.
#[utoipa::path(get, path = "/api/openapi.json", tag = "docs",
    responses((status = 200, description = "The OpenAPI 3.1 document of this API", content_type = "application/json", body = Object)))]
async fn openapi_json() -> HttpResponse {
    json_document()
}

/// The same document at springdoc's path.
#[utoipa::path(get, path = "/v3/api-docs", tag = "docs",
    responses((status = 200, description = "The OpenAPI 3.1 document (as `/api/openapi.json`)", content_type = "application/json", body = Object)))]
async fn api_docs() -> HttpResponse {
    json_document()
}

fn to_ui() -> HttpResponse {
    HttpResponse::Found()
        .insert_header((header::LOCATION, UI_INDEX))
        .finish()
}

/// springdoc's path of the page: a redirect to it.
#[utoipa::path(get, path = "/swagger-ui.html", tag = "docs",
    responses((status = 302, description = "To `/swagger-ui/index.html`", headers(("Location" = String)))))]
async fn swagger_ui_html() -> HttpResponse {
    to_ui()
}

/// A short path of the page: a redirect to it.
#[utoipa::path(get, path = "/docs", tag = "docs",
    responses((status = 302, description = "To `/swagger-ui/index.html`", headers(("Location" = String)))))]
async fn docs_page() -> HttpResponse {
    to_ui()
}

/// The page's folder: a redirect to the page.
#[utoipa::path(get, path = "/swagger-ui", tag = "docs",
    responses((status = 302, description = "To `/swagger-ui/index.html`", headers(("Location" = String)))))]
async fn swagger_ui_root() -> HttpResponse {
    to_ui()
}

fn ui_config() -> Arc<Config<'static>> {
    static CONFIG: OnceLock<Arc<Config<'static>>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            // `validatorUrl: none`: Swagger UI would otherwise send the document to an online validator.
            Arc::new(
                Config::from(DOCUMENT_PATH)
                    .validator_url("none")
                    .try_it_out_enabled(true),
            )
        })
        .clone()
}

/// Swagger UI's files (`index.html`, its scripts and styles), compiled into the binary; the
/// initializer points it at `/api/openapi.json`.
#[utoipa::path(get, path = "/swagger-ui/{file}", tag = "docs",
    params(("file" = String, Path, description = "`index.html`, or one of the page's scripts and styles")),
    responses(
        (status = 200, description = "The file", content(("text/html"), ("text/javascript"), ("text/css"), ("image/png"))),
        (status = 404, description = "No such file", content_type = "application/problem+json", body = crate::error::Problem)))]
async fn swagger_ui_file(file: web::Path<String>) -> Result<HttpResponse, crate::error::ApiError> {
    let name = file.into_inner();
    match utoipa_swagger_ui::serve(&name, ui_config()) {
        Ok(Some(found)) => {
            let mut response = HttpResponse::Ok();
            response
                .content_type(found.content_type)
                .insert_header((header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY))
                .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
                .insert_header((header::CACHE_CONTROL, "public, max-age=300"));
            if found.gzpipped {
                response.insert_header((header::CONTENT_ENCODING, "gzip"));
            }
            Ok(response.body(found.bytes.into_owned()))
        }
        Ok(None) => Err(crate::error::ApiError::NotFound(format!(
            "Swagger UI has no file `{}`",
            routes::paging::quoted(&name)
        ))),
        Err(e) => Err(crate::error::ApiError::Internal(anyhow::anyhow!(
            "Swagger UI's file {name}: {e}"
        ))),
    }
}

/// The paths of this module, for the document.
#[derive(OpenApi)]
#[openapi(paths(
    openapi_json,
    api_docs,
    swagger_ui_html,
    docs_page,
    swagger_ui_root,
    swagger_ui_file
))]
pub struct Doc;
