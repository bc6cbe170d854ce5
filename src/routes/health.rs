//! `/health/live`, `/health/ready`, `/metrics`.

use std::time::Duration;

use actix_web::http::header;
use actix_web::{HttpResponse, web};
use serde_json::json;

use crate::state::AppState;

/// How long readiness waits for the database to answer.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/health/live", web::get().to(live))
        .route("/health/ready", web::get().to(ready))
        .route("/metrics", web::get().to(metrics));
}

/// The process answers.
async fn live() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "up"}))
}

/// `200` when the engine runs and the database and the bus answer, `503` otherwise (`"starting"` while
/// the node waits for its database to start the engine).
async fn ready(state: web::Data<AppState>) -> HttpResponse {
    let database = matches!(
        tokio::time::timeout(READY_TIMEOUT, state.db.ping()).await,
        Ok(Ok(()))
    );
    let Some(engine) = state.engine.get() else {
        // Still waiting for the database to start the engine.
        return HttpResponse::ServiceUnavailable()
            .insert_header((header::RETRY_AFTER, "1"))
            .json(json!({
                "status": "starting",
                "checks": {
                    "database": if database { "up" } else { "down" },
                    "bus": { "status": "not started" },
                },
            }));
    };
    let (transport, bus) = engine.bus();
    // The cache is reported but does not decide readiness: without it, reads go to the database.
    let cache = engine.cache.is_up().await;
    let ready = database && bus;
    let body = json!({
        "status": if ready { "ready" } else { "unavailable" },
        "checks": {
            "database": if database { "up" } else { "down" },
            "bus": { "transport": transport, "status": if bus { "up" } else { "down" } },
            "cache": { "backend": engine.cache.backend().as_str(), "status": if cache { "up" } else { "down" } },
        },
    });
    if ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

/// Prometheus text format.
async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    state.metrics.run_upkeep();
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(state.metrics.render())
}
