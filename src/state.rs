//! What every request handler can reach: built once at start, shared by all HTTP workers.

use std::sync::Arc;

use metrics_exporter_prometheus::PrometheusHandle;
use sea_orm::DatabaseConnection;

use crate::config::Settings;
use actors::Engine;

/// The application state behind `web::Data`.
pub struct AppState {
    pub settings: Arc<Settings>,
    pub db: DatabaseConnection,
    pub engine: Engine,
    pub metrics: PrometheusHandle,
    /// The dashboard templates, parsed once at start.
    pub templates: tera::Tera,
    /// The limits of the password routes.
    pub throttle: crate::throttle::Throttle,
}
