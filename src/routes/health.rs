//! `/health/live`, `/health/ready`, `/metrics`, and the same under the Spring Boot Actuator paths the
//! seed system's operators use: `/actuator/health` (readiness), `/actuator/health/liveness`,
//! `/actuator/health/readiness`, `/actuator/info`, `/actuator/prometheus`.

use std::time::Duration;

use actix_web::http::header;
use actix_web::{HttpResponse, web};
use serde_json::{Value, json};

use crate::state::AppState;

/// How long readiness waits for the database to answer.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// The commit the binary was built from, when the build said so (`ORDERSAGA_GIT_COMMIT` in the build's
/// environment; no build script asks git).
const GIT_COMMIT: Option<&str> = option_env!("ORDERSAGA_GIT_COMMIT");

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/health/live", web::get().to(live))
        .route("/health/ready", web::get().to(ready))
        .route("/metrics", web::get().to(metrics))
        .route("/actuator/health", web::get().to(actuator_readiness))
        .route("/actuator/health/liveness", web::get().to(actuator_liveness))
        .route("/actuator/health/readiness", web::get().to(actuator_readiness))
        .route("/actuator/info", web::get().to(info))
        .route("/actuator/prometheus", web::get().to(metrics));
}

/// The process answers.
async fn live() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "up"}))
}

/// Where readiness stands.
enum Readiness {
    /// The engine runs and the database and the bus answer.
    Ready(Value),
    /// The engine runs but the database or the bus does not answer.
    Unavailable(Value),
    /// The node waits for its database to start the engine.
    Starting(Value),
    /// The node shuts down: load balancers take it out of rotation while its work in flight finishes.
    Draining,
}

async fn readiness(state: &AppState) -> Readiness {
    if state.draining() {
        return Readiness::Draining;
    }
    let database = matches!(
        tokio::time::timeout(READY_TIMEOUT, state.db.ping()).await,
        Ok(Ok(()))
    );
    let database_status = if database { "up" } else { "down" };
    let Some(engine) = state.engine.get() else {
        return Readiness::Starting(json!({
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
        Readiness::Ready(checks)
    } else {
        Readiness::Unavailable(checks)
    }
}

/// The `status` words of a readiness answer, for ready, unavailable, starting and draining.
type Words = [&'static str; 4];

/// The answer to a readiness probe in `words`: `200` when ready, else `503` (with `Retry-After` while
/// starting or draining); `checks` as [`readiness`] found them.
async fn answer(state: &AppState, [ready, unavailable, starting, draining]: Words) -> HttpResponse {
    match readiness(state).await {
        Readiness::Ready(checks) => HttpResponse::Ok().json(json!({"status": ready, "checks": checks})),
        Readiness::Unavailable(checks) => {
            HttpResponse::ServiceUnavailable().json(json!({"status": unavailable, "checks": checks}))
        }
        Readiness::Starting(checks) => HttpResponse::ServiceUnavailable()
            .insert_header((header::RETRY_AFTER, "1"))
            .json(json!({"status": starting, "checks": checks})),
        Readiness::Draining => HttpResponse::ServiceUnavailable()
            .insert_header((header::RETRY_AFTER, "1"))
            .json(json!({"status": draining})),
    }
}

/// `200` when the engine runs and the database and the bus answer, `503` otherwise (`"starting"` while
/// the node waits for its database to start the engine, `"draining"` once it shuts down).
async fn ready(state: web::Data<AppState>) -> HttpResponse {
    answer(&state, ["ready", "unavailable", "starting", "draining"]).await
}

/// Actuator liveness: `{"status":"UP"}` while the process answers.
async fn actuator_liveness() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "UP"}))
}

/// Actuator health and readiness: readiness in Spring's words, `200 {"status":"UP"}`, or `503` with
/// `DOWN` (the database or the bus does not answer) or `OUT_OF_SERVICE` (starting, or shutting down);
/// `checks` as in `/health/ready`.
async fn actuator_readiness(state: web::Data<AppState>) -> HttpResponse {
    answer(&state, ["UP", "DOWN", "OUT_OF_SERVICE", "OUT_OF_SERVICE"]).await
}

/// What is running: `{"app":{"name","version"},"build":{"name","version"}}`, and `git.commit.id` when
/// the build gave it.
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
async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    state.metrics.run_upkeep();
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(state.metrics.render())
}
