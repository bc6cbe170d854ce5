//! What every request handler can reach: built once at start, shared by all HTTP workers.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use metrics_exporter_prometheus::PrometheusHandle;
use sea_orm::DatabaseConnection;

use crate::config::Settings;
use crate::error::ApiError;
use actors::Engine;

/// The application state behind `web::Data`.
pub struct AppState {
    pub settings: Arc<Settings>,
    pub db: DatabaseConnection,
    /// Where the API's reads go: on SQLite its read-only connections beside the writer, else the same
    /// pool as `db`.
    pub reads: DatabaseConnection,
    /// The engine, once it runs: a node on a server database starts serving before the database
    /// answers, and starts its engine when it does.
    pub engine: OnceLock<Engine>,
    pub metrics: PrometheusHandle,
    /// The dashboard templates, parsed once at start.
    pub templates: tera::Tera,
    /// The limits of the password routes.
    pub throttle: crate::throttle::Throttle,
    /// Set when the node begins to shut down: readiness answers `503` and new requests are refused.
    pub draining: AtomicBool,
}

impl AppState {
    /// The engine, or `503` while the node is still waiting for its database.
    pub fn engine(&self) -> Result<&Engine, ApiError> {
        self.engine.get().ok_or_else(Self::not_started)
    }

    /// The answer while the engine has not started.
    pub fn not_started() -> ApiError {
        ApiError::Unavailable(
            "the node is starting: its database is not reachable yet; try again shortly".to_owned(),
        )
    }

    /// Whether the engine runs.
    pub fn started(&self) -> bool {
        self.engine.get().is_some()
    }

    /// Whether the node is shutting down.
    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// The answer to a new request while the node shuts down: another node (or this one, restarted)
    /// takes it.
    pub fn shutting_down() -> ApiError {
        ApiError::Problem(
            actix_web::http::StatusCode::SERVICE_UNAVAILABLE,
            "shutting-down",
            "the node is shutting down; try again (another node, or this one once it is back)".to_owned(),
        )
    }
}
