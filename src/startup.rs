//! Building the application from `Settings`: database, engine, HTTP server.
//!
//! `Application::build` binds the listener (port 0 picks a free port, which tests use), so `port()` is
//! known before `run_until_stopped()` serves.

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::dev::Server;
use actix_web::middleware::{Compress, from_fn};
use actix_web::{App, HttpServer, web};
use anyhow::Context;
use sea_orm::DatabaseConnection;
use tracing_actix_web::TracingLogger;

use crate::affinity::{self, Pinned};
use crate::config::{DatabaseKind, Settings};
use crate::error::handlers;
use crate::state::AppState;
use crate::{database, observability, routes};
use actors::{Engine, EngineConfig};

/// A built, listening application.
pub struct Application {
    port: u16,
    server: Server,
    state: web::Data<AppState>,
}

impl Application {
    /// Connects to the database, applies migrations, starts the engine and binds the listener.
    /// Must run inside an actix system.
    pub async fn build(settings: Settings) -> anyhow::Result<Application> {
        // Before the connection opens, so that its thread starts on the same core (see `affinity`).
        let pinned = if settings.sqlite_pin_threads && settings.database_kind()? == DatabaseKind::Sqlite {
            affinity::pin_current_thread()
        } else {
            None
        };
        if let Some(pinned) = &pinned {
            tracing::info!(
                core = pinned.core,
                "the engine and its SQLite connection run on one core"
            );
        }
        let db = database::connect(&settings).await?;
        database::migrate(&db).await?;
        Self::start(settings, db, pinned).await
    }

    /// Like `build`, with a database connection that is already migrated (and no thread pinned).
    pub async fn build_with_db(settings: Settings, db: DatabaseConnection) -> anyhow::Result<Application> {
        Self::start(settings, db, None).await
    }

    async fn start(
        settings: Settings,
        db: DatabaseConnection,
        pinned: Option<Pinned>,
    ) -> anyhow::Result<Application> {
        let templates = crate::dashboard::templates().context("the dashboard templates do not parse")?;
        let listener = TcpListener::bind(settings.bind_addr()?)
            .with_context(|| format!("cannot listen on {}", settings.bind))?;
        let port = listener.local_addr()?.port();
        let node_id = settings.node_identity(port);
        tracing::info!(%node_id, "node identity");
        let engine = Engine::start(db.clone(), engine_config(&settings, node_id)).await?;
        let workers = settings.http_workers;
        let body_limit = settings.body_limit_bytes;
        let throttle = crate::throttle::Throttle::new(&settings.auth);
        let state = web::Data::new(AppState {
            settings: Arc::new(settings),
            db,
            engine,
            metrics: observability::metrics_handle(),
            throttle,
            templates,
        });

        let app_state = state.clone();
        let mut server = HttpServer::new(move || {
            // Called once on each worker's thread as it starts.
            if let Some(pinned) = &pinned {
                pinned.release_current_thread();
            }
            App::new()
                .wrap(Compress::default())
                .wrap(from_fn(observability::http_metrics))
                .wrap(TracingLogger::<observability::RedactedRootSpan>::new())
                .app_data(app_state.clone())
                .app_data(
                    web::JsonConfig::default()
                        .limit(body_limit)
                        .error_handler(handlers::json),
                )
                .app_data(web::QueryConfig::default().error_handler(handlers::query))
                .app_data(web::PathConfig::default().error_handler(handlers::path))
                .configure(routes::configure)
                .default_service(web::to(routes::not_found))
        })
        .listen(listener)?;
        if let Some(workers) = workers {
            server = server.workers(workers);
        }
        let server = server.run();
        tracing::info!(port, "listening");
        Ok(Application { port, server, state })
    }

    /// The port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The shared state (tests use it to reach the database and the engine).
    pub fn state(&self) -> web::Data<AppState> {
        self.state.clone()
    }

    /// Serves until the server is stopped (SIGINT/SIGTERM).
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        self.server.await.context("the HTTP server failed")
    }
}

/// The engine's part of the settings. Without `jwt_secret`, a random key for this process only.
fn engine_config(settings: &Settings, node_id: String) -> EngineConfig {
    let jwt_secret = match &settings.jwt_secret {
        Some(secret) => secret.expose().as_bytes().to_vec(),
        None => {
            tracing::warn!(
                "ORDERSAGA_JWT_SECRET is not set: using a random key for this process; tokens will not \
                 survive a restart and other nodes will not accept them"
            );
            rand::random::<[u8; 32]>().to_vec()
        }
    };
    let mut auth = settings.auth.clone();
    auth.mock_issuer = Some(settings.mock_issuer_on());
    if auth.mock_issuer_on() {
        tracing::warn!(
            bind = %settings.bind,
            "the mock token issuer is on: anyone who reaches this node can mint any token, admin \
             included (POST /api/auth/token); set auth.mock_issuer = false where that matters"
        );
    }
    if !auth.accepts_mock_tokens() {
        tracing::info!("tokens of a mock issuer are refused");
    }
    EngineConfig {
        node_id,
        jwt_secret,
        jwt_issuer: settings.jwt_issuer.clone(),
        payment_mode: settings.payment_mode,
        amqp_url: settings.amqp_url.clone(),
        auth,
        saga: settings.saga.clone(),
        payment: settings.payment.clone(),
        retry: settings.retry.clone(),
        outbox: settings.outbox.clone(),
        broker: settings.broker.clone(),
        archive: settings.archive.clone(),
    }
}
