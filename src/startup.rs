//! Building the application from `Settings`: database, engine, HTTP server.
//!
//! `Application::build` binds the listener (port 0 picks a free port, which tests use), so `port()` is
//! known before `run_until_stopped()` serves.

use std::net::TcpListener;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

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

/// Pauses between attempts to reach the database at start: doubled from the first to the last.
const FIRST_RETRY: Duration = Duration::from_millis(500);
const LAST_RETRY: Duration = Duration::from_secs(10);

impl Application {
    /// Connects to the database, applies migrations, starts the engine and binds the listener.
    /// Must run inside an actix system.
    ///
    /// On SQLite (a local file) all of that happens before this returns, and a failure stops the start.
    /// On a server database the node does not wait for it: it listens at once, answers readiness `503`
    /// (`"starting"`) and every other route `503` with `Retry-After`, and reaches for the database with
    /// back-off until it answers; then it migrates and starts the engine.
    pub async fn build(settings: Settings) -> anyhow::Result<Application> {
        // One bound for the process's engine (a node runs one).
        actors::db::set_work_timeout(std::time::Duration::from_secs(
            settings.database.work_timeout_seconds,
        ));
        if settings.database_kind()? != DatabaseKind::Sqlite {
            let db = database::connect_lazy(&settings).await?;
            return Self::start(settings, db, None, Start::WhenTheDatabaseAnswers).await;
        }
        // Before the connection opens, so that its thread starts on the same core (see `affinity`).
        let pinned = if settings.sqlite_pin_threads {
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
        Self::start(settings, db, pinned, Start::Now).await
    }

    /// Like `build`, with a database connection that is already migrated (and no thread pinned).
    pub async fn build_with_db(settings: Settings, db: DatabaseConnection) -> anyhow::Result<Application> {
        Self::start(settings, db, None, Start::Now).await
    }

    async fn start(
        settings: Settings,
        db: DatabaseConnection,
        pinned: Option<Pinned>,
        start: Start,
    ) -> anyhow::Result<Application> {
        let templates = crate::dashboard::templates().context("the dashboard templates do not parse")?;
        let listener = TcpListener::bind(settings.bind_addr()?)
            .with_context(|| format!("cannot listen on {}", settings.bind))?;
        let port = listener.local_addr()?.port();
        let node_id = settings.node_identity(port);
        tracing::info!(%node_id, "node identity");
        let config = engine_config(&settings, node_id);
        let workers = settings.http_workers;
        let body_limit = settings.body_limit_bytes;
        let shutdown_timeout = settings.shutdown_timeout_seconds;
        let throttle = crate::throttle::Throttle::new(&settings.auth);
        let reads = database::connect_readers(&settings)
            .await?
            .unwrap_or_else(|| db.clone());
        let state = web::Data::new(AppState {
            settings: Arc::new(settings),
            db,
            reads,
            engine: OnceLock::new(),
            metrics: observability::metrics_handle(),
            throttle,
            templates,
            draining: Default::default(),
        });
        match start {
            Start::Now => {
                let engine = Engine::start(state.db.clone(), config).await?;
                let _ = state.engine.set(engine);
            }
            Start::WhenTheDatabaseAnswers => {
                actix_web::rt::spawn(start_when_the_database_answers(state.clone(), config));
            }
        }

        let app_state = state.clone();
        let mut server = HttpServer::new(move || {
            // Called once on each worker's thread as it starts.
            if let Some(pinned) = &pinned {
                pinned.release_current_thread();
            }
            App::new()
                .wrap(from_fn(crate::deadline::request_deadline))
                .wrap(from_fn(routes::starting_gate))
                .wrap(Compress::default())
                .wrap(from_fn(observability::trace_id))
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
        .listen(listener)?
        // `run_until_stopped` handles SIGTERM and SIGINT: the engine stops after the HTTP server.
        .disable_signals()
        .shutdown_timeout(shutdown_timeout);
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

    /// Serves until SIGTERM or SIGINT, then shuts down within `shutdown_timeout_seconds`: readiness
    /// turns `503` and new requests are refused, the server stops accepting connections and lets the
    /// requests in flight finish, then the engine's consumers finish the batches they are applying and
    /// the relay stops. A second signal stops at once (what was cut off is done at the next start).
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let Application { server, state, .. } = self;
        let handle = server.handle();
        let mut server = std::pin::pin!(server);
        let signal = tokio::select! {
            served = &mut server => return served.context("the HTTP server failed"),
            signal = shutdown_signal() => signal,
        };
        let bound = Duration::from_secs(state.settings.shutdown_timeout_seconds);
        let started = Instant::now();
        tracing::info!(signal, timeout_seconds = bound.as_secs(), "shutting down");
        state.draining.store(true, Ordering::Relaxed);
        let finished = async {
            // Stops accepting, and waits for the requests in flight (at most the bound). The command is
            // carried out by the server's own future, so that is what is awaited.
            let stopping = handle.stop(true);
            let served = server.await;
            stopping.await;
            let stopped = match state.engine.get() {
                Some(engine) => engine.shutdown(bound.saturating_sub(started.elapsed())).await,
                None => true,
            };
            (served, stopped)
        };
        tokio::select! {
            (served, stopped) = finished => {
                served.context("the HTTP server failed")?;
                if !stopped {
                    tracing::warn!(
                        "shutdown: the consumers had not finished within shutdown_timeout_seconds; \
                         what they were applying is done again at the next start"
                    );
                }
                tracing::info!(elapsed_ms = started.elapsed().as_millis() as u64, "stopped");
                Ok(())
            }
            signal = shutdown_signal() => {
                anyhow::bail!("{signal} during the shutdown: stopped at once; the next start finishes what was cut off")
            }
        }
    }
}

/// Resolves with the signal's name at the next SIGTERM or SIGINT.
async fn shutdown_signal() -> &'static str {
    let interrupt = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut terminate) => tokio::select! {
            () = interrupt => "SIGINT",
            _ = terminate.recv() => "SIGTERM",
        },
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGTERM; SIGINT only");
            interrupt.await;
            "SIGINT"
        }
    }
}

/// When the engine starts.
enum Start {
    /// Before the node listens (SQLite, or a database already migrated).
    Now,
    /// Once the server database answers; the node listens meanwhile.
    WhenTheDatabaseAnswers,
}

/// Reaches for the database with back-off until it answers, migrates it, and starts the engine.
async fn start_when_the_database_answers(state: web::Data<AppState>, config: EngineConfig) {
    let mut pause = FIRST_RETRY;
    let mut attempts: u32 = 0;
    loop {
        attempts += 1;
        let reached = async {
            state.db.ping().await.context("the database does not answer")?;
            database::migrate(&state.db).await
        }
        .await;
        match reached {
            Ok(()) => break,
            Err(e) => {
                metrics::counter!("startup_database_attempts_failed_total").increment(1);
                tracing::warn!(
                    attempt = attempts,
                    retry_in_ms = pause.as_millis() as u64,
                    error = format!("{e:#}"),
                    "the database is not reachable yet; the node answers 503 until it is"
                );
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(LAST_RETRY);
            }
        }
    }
    loop {
        match Engine::start(state.db.clone(), config.clone()).await {
            Ok(engine) => {
                let _ = state.engine.set(engine);
                tracing::info!(attempts, "the database answers: the engine runs");
                return;
            }
            Err(e) => {
                tracing::error!(error = format!("{e:#}"), "the engine did not start; trying again");
                tokio::time::sleep(pause).await;
            }
        }
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
        admission: settings.admission.clone(),
        bus: settings.bus.clone(),
        redis_url: settings.redis_url.clone(),
        cache: settings.cache.clone(),
        catalog: settings.catalog.clone(),
    }
}
