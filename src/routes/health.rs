//! `/health/live`, `/health/ready`, `/metrics`, and the same under the Spring Boot Actuator paths the
//! seed system's operators use: `/actuator/health` (readiness), `/actuator/health/liveness`,
//! `/actuator/health/readiness`, `/actuator/info`, `/actuator/prometheus`.

use std::time::Duration;

use actix_web::http::header;
use actix_web::{HttpResponse, web};
use serde_json::{Value, json};
use utoipa::{OpenApi, ToSchema};

use crate::state::AppState;

/// How long readiness waits for the database to answer.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// The commit the binary was built from, when the build said so (`ORDERSAGA_GIT_COMMIT` in the build's
/// environment; no build script asks git).
const GIT_COMMIT: Option<&str> = option_env!("ORDERSAGA_GIT_COMMIT");

crate::routes! {
    pub fn configure, pub const ROUTES;
    get "/health/live" => live;
    get "/health/ready" => ready;
    get "/metrics" => metrics;
    get "/actuator/health" => actuator_health;
    get "/actuator/health/liveness" => actuator_liveness;
    get "/actuator/health/readiness" => actuator_readiness;
    get "/actuator/info" => info;
    get "/actuator/prometheus" => actuator_prometheus;
}

/// A status: `{"status"}`.
#[derive(ToSchema)]
pub struct Status {
    /// `up` (`UP` at the actuator paths).
    pub status: String,
}

/// Readiness and what it checked.
#[derive(ToSchema)]
pub struct Readiness {
    /// `ready`, `unavailable`, `starting` or `draining` (`UP`, `DOWN`, `OUT_OF_SERVICE` at the actuator
    /// paths).
    pub status: String,
    /// `{"database":"up"|"down","bus":{"transport","status"},"cache":{"backend","status"}}`; absent
    /// while draining.
    pub checks: Option<Checks>,
}

/// What readiness checked.
#[derive(ToSchema)]
pub struct Checks {
    /// `up` or `down`.
    pub database: String,
    /// The bus: `{"transport","status"}` (`{"status":"not started"}` while starting).
    pub bus: Option<serde_json::Value>,
    /// The read cache, reported but not deciding readiness: `{"backend","status"}`.
    pub cache: Option<serde_json::Value>,
}

/// What is running.
#[derive(ToSchema)]
pub struct Info {
    /// `{"name","version"}`.
    #[schema(value_type = Object)]
    pub app: serde_json::Value,
    /// `{"name","artifact","version"}`.
    #[schema(value_type = Object)]
    pub build: serde_json::Value,
    /// `{"commit":{"id"}}` when the build said so.
    pub git: Option<serde_json::Value>,
}

/// The paths of this module, for the document.
#[derive(OpenApi)]
#[openapi(
    paths(
        live,
        ready,
        metrics,
        actuator_health,
        actuator_liveness,
        actuator_readiness,
        info,
        actuator_prometheus
    ),
    components(schemas(Status, Readiness, Checks, Info))
)]
pub struct Doc;

/// The process answers.
#[utoipa::path(get, path = "/health/live", tag = "operations",
    responses((status = 200, description = "`{\"status\":\"up\"}` while the process answers", body = Status)))]
async fn live() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "up"}))
}

/// Where readiness stands.
enum Standing {
    /// The engine runs and the database and the bus answer.
    Ready(Value),
    /// The engine runs but the database or the bus does not answer.
    Unavailable(Value),
    /// The node waits for its database to start the engine.
    Starting(Value),
    /// The node shuts down: load balancers take it out of rotation while its work in flight finishes.
    Draining,
}

async fn readiness(state: &AppState) -> Standing {
    if state.draining() {
        return Standing::Draining;
    }
    let database = matches!(
        tokio::time::timeout(READY_TIMEOUT, state.db.ping()).await,
        Ok(Ok(()))
    );
    let database_status = if database { "up" } else { "down" };
    let Some(engine) = state.engine.get() else {
        return Standing::Starting(json!({
            "database": database_status,
            "bus": { "status": "not started" },
        }));
    };
    let (transport, bus) = engine.bus();
    // The cache is reported but does not decide readiness: without it, reads go to the database.
    let cache = engine.cache.is_up().await;
    let checks = json!({
        "database": database_status,
        "bus": { "transport": transport, "status": if bus { "up" } else { "down" } },
        "cache": { "backend": engine.cache.backend().as_str(), "status": if cache { "up" } else { "down" } },
    });
    if database && bus {
        Standing::Ready(checks)
    } else {
        Standing::Unavailable(checks)
    }
}

/// `200` when the engine runs and the database and the bus answer, `503` otherwise (`"starting"` while
/// the node waits for its database to start the engine, `"draining"` once it shuts down).
#[utoipa::path(get, path = "/health/ready", tag = "operations",
    responses(
        (status = 200, description = "Ready: the engine runs and the database and the bus answer", body = Readiness),
        (status = 503, description = "`unavailable` (the database or the bus is down), `starting` or `draining` (with `Retry-After`)", body = Readiness)))]
async fn ready(state: web::Data<AppState>) -> HttpResponse {
    answer(&state, ["ready", "unavailable", "starting", "draining"]).await
}

/// Actuator liveness: `{"status":"UP"}` while the process answers.
#[utoipa::path(get, path = "/actuator/health/liveness", tag = "operations",
    responses((status = 200, description = "`{\"status\":\"UP\"}`", body = Status)))]
async fn actuator_liveness() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "UP"}))
}

/// Actuator health and readiness: readiness in Spring's words, `200 {"status":"UP"}`, or `503` with
/// `DOWN` (the database or the bus does not answer) or `OUT_OF_SERVICE` (starting, or shutting down);
/// `checks` as in `/health/ready`.
#[utoipa::path(get, path = "/actuator/health/readiness", tag = "operations",
    responses(
        (status = 200, description = "`UP`", body = Readiness),
        (status = 503, description = "`DOWN` or `OUT_OF_SERVICE` (with `Retry-After`)", body = Readiness)))]
async fn actuator_readiness(state: web::Data<AppState>) -> HttpResponse {
    spring_readiness(&state).await
}

/// Actuator health: readiness, as `/actuator/health/readiness`.
#[utoipa::path(get, path = "/actuator/health", tag = "operations",
    responses(
        (status = 200, description = "`UP`", body = Readiness),
        (status = 503, description = "`DOWN` or `OUT_OF_SERVICE` (with `Retry-After`)", body = Readiness)))]
async fn actuator_health(state: web::Data<AppState>) -> HttpResponse {
    spring_readiness(&state).await
}

async fn spring_readiness(state: &AppState) -> HttpResponse {
    answer(state, ["UP", "DOWN", "OUT_OF_SERVICE", "OUT_OF_SERVICE"]).await
}

/// The `status` words of a readiness answer, for ready, unavailable, starting and draining.
type Words = [&'static str; 4];

/// The answer to a readiness probe in `words`: `200` when ready, else `503` (with `Retry-After` while
/// starting or draining); `checks` as [`readiness`] found them.
async fn answer(state: &AppState, [ready, unavailable, starting, draining]: Words) -> HttpResponse {
    match readiness(state).await {
        Standing::Ready(checks) => HttpResponse::Ok().json(json!({"status": ready, "checks": checks})),
        Standing::Unavailable(checks) => {
            HttpResponse::ServiceUnavailable().json(json!({"status": unavailable, "checks": checks}))
        }
        Standing::Starting(checks) => HttpResponse::ServiceUnavailable()
            .insert_header((header::RETRY_AFTER, "1"))
            .json(json!({"status": starting, "checks": checks})),
        Standing::Draining => HttpResponse::ServiceUnavailable()
            .insert_header((header::RETRY_AFTER, "1"))
            .json(json!({"status": draining})),
    }
}

/// What is running: `{"app":{"name","version"},"build":{"name","version"}}`, and `git.commit.id` when
/// the build gave it.
#[utoipa::path(get, path = "/actuator/info", tag = "operations",
    responses((status = 200, description = "The name and version", body = Info)))]
async fn info() -> HttpResponse {
    let name = env!("CARGO_PKG_NAME");
    let version = env!("CARGO_PKG_VERSION");
    let mut body = json!({
        "app": { "name": name, "version": version },
        "build": { "name": name, "artifact": name, "version": version },
    });
    if let (Some(commit), Some(object)) = (GIT_COMMIT, body.as_object_mut()) {
        object.insert("git".to_owned(), json!({ "commit": { "id": commit } }));
    }
    HttpResponse::Ok().json(body)
}

/// Prometheus text format.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus metrics (the list is in docs/api.md)", content_type = "text/plain", body = String)))]
async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    prometheus(&state)
}

/// The same at Spring Boot's path.
#[utoipa::path(get, path = "/actuator/prometheus", tag = "operations",
    responses((status = 200, description = "As `/metrics`", content_type = "text/plain", body = String)))]
async fn actuator_prometheus(state: web::Data<AppState>) -> HttpResponse {
    prometheus(&state)
}

fn prometheus(state: &AppState) -> HttpResponse {
    state.metrics.run_upkeep();
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(state.metrics.render())
}
