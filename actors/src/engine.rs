//! The engine of one node: `Engine::start` starts every actor, and the `Engine` is the façade the HTTP
//! layer reaches the engine through (placing orders, stock, tokens and logins, dead letters, the bus's
//! state); no route picks an actor address itself.

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use actix::prelude::*;
use sea_orm::{DatabaseConnection, DbBackend};

use crate::admission::Admission;
use crate::archive::ArchiveActor;
use crate::auth::keys::{JwksSource, SigningKey};
use crate::auth::tokens::Provider;
use crate::auth::{
    AuthActor, AuthError, Claims, Introspect, IssueToken, IssuedToken, Login, Register, TokenError,
    TokenService,
};
use crate::bus::Transport;
use crate::bus::amqp::{BrokerBridge, BrokerConfig};
use crate::bus::memory::InProcessTransport;
use crate::cache::{Cache, CacheName};
use crate::catalog::{self, ProductUpsert};
use crate::config::{
    AdmissionSettings, ArchiveSettings, AuthSettings, BrokerSettings, BusSettings, CacheSettings,
    CatalogSettings, OutboxSettings, PaymentMode, PaymentSettings, RetrySettings, SagaSettings,
};
use crate::consumers::inventory::{
    InventoryActor, InventoryError, Reservation, Reserve, SetStock, consumers as stock_consumers,
};
use crate::consumers::notification::{NotificationActor, consumer as notification_consumer};
use crate::consumers::payment::{PaymentActor, consumers as payment_consumers};
use crate::envelope::SkuQuantity;
use crate::ids::{OrderId, SkuId};
use crate::mailbox::Mailbox;
use crate::mailbox::dead_letters::{self, DeadLetterError};
use crate::outbox::{OutboxRelay, OutboxSignal, StopRelay};
use crate::placement::batcher::{Place, PlacementBatcher};
use crate::placement::{CatalogCheck, PlaceError, PlaceOrder, Placement};
use crate::saga::{Placed, Resume, SagaRegistry, consumers as saga_consumers};
use entities::{dead_letters as dead_letter_rows, products, stocks, users};

/// First and longest pause between two attempts at resuming the unfinished sagas.
const RESUME_RETRY: std::time::Duration = std::time::Duration::from_millis(500);
const RESUME_RETRY_MAX: std::time::Duration = std::time::Duration::from_secs(10);

/// What the engine needs to know.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// This node's identity: stable across restarts and unique among the running nodes.
    pub node_id: String,
    pub jwt_secret: Vec<u8>,
    pub jwt_issuer: String,
    pub payment_mode: PaymentMode,
    pub amqp_url: Option<String>,
    pub auth: AuthSettings,
    pub saga: SagaSettings,
    pub payment: PaymentSettings,
    pub retry: RetrySettings,
    pub outbox: OutboxSettings,
    pub broker: BrokerSettings,
    pub archive: ArchiveSettings,
    pub admission: AdmissionSettings,
    pub bus: BusSettings,
    /// The read cache's Redis; unset: in memory.
    pub redis_url: Option<String>,
    pub cache: CacheSettings,
    pub catalog: CatalogSettings,
}

/// The running engine of one node.
#[derive(Clone)]
pub struct Engine {
    pub db: DatabaseConnection,
    /// This node's id (claims in the outbox are made in its name).
    pub node_id: String,
    pub tokens: Arc<TokenService>,
    pub auth: Addr<AuthActor>,
    pub inventory: Addr<InventoryActor>,
    pub payment: Addr<PaymentActor>,
    pub sagas: Addr<SagaRegistry>,
    pub archive: Addr<ArchiveActor>,
    pub placements: Addr<PlacementBatcher>,
    pub relay: Addr<OutboxRelay>,
    pub transport: Arc<dyn Transport>,
    pub mailbox: Mailbox,
    /// The read cache of products and stock.
    pub cache: Cache,
    /// Whether a new order may be placed now (`admission.max_backlog`).
    admission: Admission,
}

impl Engine {
    /// Starts every actor on the current actix system, resumes unfinished sagas and starts the relay
    /// (which sends whatever the outbox still holds).
    pub async fn start(db: DatabaseConnection, config: EngineConfig) -> anyhow::Result<Engine> {
        let node_id = config.node_id.clone();
        let tokens = Arc::new(token_service(&config)?);
        if let Some(keys) = tokens.provider_keys()
            && let Some(source) = config.auth.jwks_url.as_deref().and_then(JwksSource::parse)
        {
            let every = std::time::Duration::from_secs(config.auth.jwks_refresh_seconds);
            actix::spawn(crate::auth::keys::refresh(keys, source, every));
        }
        let auth = AuthActor::new(db.clone(), tokens.clone(), config.auth.clone()).start();
        let outbox = OutboxSignal::new();
        // On SQLite the single connection serializes the work anyway, and every extra thread costs
        // wake-ups; on a server database the consumers get threads of their own.
        let sqlite = db.get_database_backend() == DbBackend::Sqlite;
        // Placement batches written at once, and workers per queue of the in-process bus: SQLite has one
        // writer, so more would only queue on its lock.
        let parallel = if sqlite { 1 } else { 4 };
        let home = |name: &str| {
            if sqlite {
                actix::Arbiter::current()
            } else {
                match actix::Arbiter::try_new() {
                    Ok(arbiter) => arbiter.handle(),
                    Err(e) => {
                        tracing::warn!(arbiter = name, error = %e, "no thread of its own; sharing the main one");
                        actix::Arbiter::current()
                    }
                }
            }
        };
        let (inventory_home, payment_home, saga_home) = (home("inventory"), home("payment"), home("saga"));
        let cache = Cache::new(&config.cache, config.redis_url.as_deref()).map_err(anyhow::Error::msg)?;
        tracing::info!(
            backend = cache.backend().as_str(),
            ttl_seconds = config.cache.ttl_seconds,
            "read cache"
        );
        let inventory = {
            let (db, cache) = (db.clone(), cache.clone());
            InventoryActor::start_in_arbiter(&inventory_home, move |_| InventoryActor::new(db, cache))
        };
        let payment = {
            let (mode, settings) = (config.payment_mode, config.payment.clone());
            PaymentActor::start_in_arbiter(&payment_home, move |_| PaymentActor::new(mode, settings))
        };
        let mailbox = Mailbox::new(db.clone(), config.retry.clone(), outbox.clone());
        let owed = Arc::new(AtomicUsize::new(0));
        let sagas = {
            let (mailbox, timeout, owed) = (mailbox.clone(), config.saga.payment_timeout(), owed.clone());
            // Only a broker can lose a message on the way (RabbitMQ's dead-lettering of a retry back to
            // its queue is not confirmed); the in-process bus settles a publication once it is applied.
            let redeliver_after = config.amqp_url.is_some().then(|| config.saga.redeliver_after());
            SagaRegistry::start_in_arbiter(&saga_home, move |_| {
                SagaRegistry::new(mailbox, timeout, owed).redelivering_after(redeliver_after)
            })
        };
        let notifications = NotificationActor::start_in_arbiter(&payment_home, |_| NotificationActor);
        let archive = ArchiveActor::new(db.clone(), config.archive.clone()).start();
        let placements = PlacementBatcher::new(
            mailbox.writer().clone(),
            parallel,
            CatalogCheck {
                cache: cache.clone(),
                check_prices: config.catalog.check_prices,
            },
            outbox.clone(),
        )
        .start();

        let [reserving, releasing] = stock_consumers(&inventory, &inventory_home);
        let [inventory_results, payment_results] = saga_consumers(&sagas, &saga_home);
        let [charging, refunding] = payment_consumers(&payment, &payment_home);
        let notifying = notification_consumer(&notifications, &payment_home);
        let consumers = vec![
            reserving,
            releasing,
            charging,
            refunding,
            inventory_results,
            payment_results,
            notifying,
        ];
        // Counters that alerts take `rate()` or `increase()` of exist from the start, at zero, so that
        // the first event is an increase and not the series' first appearance.
        for consumer in &consumers {
            let queue = consumer.queue;
            metrics::counter!("messages_consumed_total", "queue" => queue).increment(0);
            metrics::counter!("message_retries_total", "queue" => queue).increment(0);
            metrics::counter!("dead_letters_total", "queue" => queue).increment(0);
        }
        metrics::counter!("orders_refused_overloaded_total").increment(0);
        metrics::counter!("database_work_timed_out_total").increment(0);
        let transport: Arc<dyn Transport> = match &config.amqp_url {
            Some(url) => {
                let signing_key = match &config.broker.signing_key {
                    Some(key) => key.expose().as_bytes().to_vec(),
                    None => config.jwt_secret.clone(),
                };
                let broker = BrokerConfig {
                    url: url.clone(),
                    name_prefix: config.broker.name_prefix.clone(),
                    prefetch: config.broker.prefetch,
                    signing_key,
                    quorum_queues: config.broker.quorum_queues,
                    retry_delays: config.retry.delays(),
                    heartbeat: config.broker.heartbeat_seconds,
                    connect_timeout: std::time::Duration::from_secs(config.broker.connect_timeout_seconds),
                };
                BrokerBridge::start(broker, consumers, mailbox.clone())
            }
            None => InProcessTransport::start(
                consumers,
                mailbox.clone(),
                parallel,
                config.bus.in_memory_per_queue,
            ),
        };

        let admission = match &config.amqp_url {
            Some(_) => Admission::counted_in_database(config.admission.max_backlog, db.clone()),
            None => Admission::counted_by_registry(config.admission.max_backlog, owed),
        };
        let relay = OutboxRelay::new(
            db.clone(),
            transport.clone(),
            outbox.clone(),
            config.outbox.clone(),
            node_id.clone(),
        )
        .start();
        actix::spawn(crate::read::gauges::run(db.clone()));
        // A failed resume is not fatal: the sweep finds overdue deadlines anyway, and the resume is
        // tried again until it succeeds.
        match sagas.send(Resume).await {
            Ok(Ok(_)) => {}
            other => {
                tracing::warn!(outcome = ?other.map(|r| r.map(|_| ())), "resuming sagas failed; trying again");
                let sagas = sagas.clone();
                actix::spawn(async move {
                    let mut pause = RESUME_RETRY;
                    while !matches!(sagas.send(Resume).await, Ok(Ok(_))) {
                        tokio::time::sleep(pause).await;
                        pause = (pause * 2).min(RESUME_RETRY_MAX);
                    }
                });
            }
        }
        Ok(Engine {
            db,
            node_id,
            tokens,
            auth,
            inventory,
            payment,
            sagas,
            archive,
            placements,
            relay,
            transport,
            mailbox,
            cache,
            admission,
        })
    }

    /// Sagas that wait on the engine itself — being placed, waiting for their stock, compensating —
    /// as admission control counts them ([`crate::admission`]).
    pub fn backlog(&self) -> u64 {
        self.admission.backlog()
    }

    /// Places an order (or answers the one its idempotency key placed). A new order's saga starts once
    /// its transaction has committed, through the one after-commit path.
    ///
    /// Refused with [`PlaceError::Overloaded`] while the backlog is at `admission.max_backlog`.
    ///
    /// The batcher checks each batch against the catalog first (through the cache): an order for an
    /// inactive product, or with `catalog.check_prices` one at another price than the catalog's, is
    /// refused — unless its key placed an order before, which is then answered as usual.
    pub async fn place_order(&self, request: PlaceOrder) -> Result<Placement, PlaceError> {
        let Some(admitted) = self.admission.admit() else {
            metrics::counter!("orders_refused_overloaded_total").increment(1);
            return Err(PlaceError::Overloaded);
        };
        let placement = self.placements.send(Place(request)).await.map_err(|e| {
            PlaceError::Database(sea_orm::DbErr::Custom(format!("the placement batcher: {e}")))
        })??;
        if let Placement::Created(_, update) = &placement {
            // In flight until the registry counts the saga (dropped there).
            let (sagas, update) = (self.sagas.clone(), update.clone());
            self.mailbox
                .after_commit(vec![Box::new(move || sagas.do_send(Placed(update, admitted)))]);
        }
        Ok(placement)
    }

    /// Stops the engine's work for a shutdown: the consumers finish the batches they are applying (each
    /// one transaction) and take no more, then the relay stops claiming. `false` if the consumers took
    /// longer than `bound`; what was cut off then is done at the next start, as after a crash (the
    /// outbox and the inbox keep it).
    pub async fn shutdown(&self, bound: std::time::Duration) -> bool {
        let stopped = tokio::time::timeout(bound, self.transport.stop()).await.is_ok();
        let _ = self.relay.send(StopRelay).await;
        stopped
    }

    /// Verifies a bearer token.
    pub fn verify_token(&self, token: &str) -> Result<Claims, TokenError> {
        self.tokens.verify(token)
    }

    /// The mock issuer: a token for anyone (`404` when it is off).
    pub async fn issue_token(&self, request: IssueToken) -> Result<IssuedToken, AuthError> {
        self.auth.send(request).await.map_err(unavailable)?
    }

    /// What a token says, if it verifies.
    pub async fn introspect(&self, token: String) -> Result<Option<Claims>, AuthError> {
        self.auth.send(Introspect { token }).await.map_err(unavailable)
    }

    /// Creates a user with role `buyer`.
    pub async fn register(&self, username: String, password: String) -> Result<users::Model, AuthError> {
        self.auth
            .send(Register { username, password })
            .await
            .map_err(unavailable)?
    }

    /// A token for a user whose password matches.
    pub async fn login(&self, username: String, password: String) -> Result<IssuedToken, AuthError> {
        self.auth
            .send(Login { username, password })
            .await
            .map_err(unavailable)?
    }

    /// Sets a SKU's available quantity, creating it if new.
    pub async fn set_stock(
        &self,
        sku_id: SkuId,
        available_qty: i64,
    ) -> Result<stocks::Model, InventoryError> {
        self.inventory
            .send(SetStock {
                sku_id,
                available_qty,
            })
            .await
            .map_err(|e| InventoryError::Unavailable(format!("the inventory did not answer: {e}")))?
    }

    /// Creates or replaces a catalog product, and invalidates its cached entry before answering.
    pub async fn upsert_product(&self, product: ProductUpsert) -> Result<products::Model, sea_orm::DbErr> {
        let row = catalog::upsert(&self.db, &product).await?;
        self.cache
            .invalidate_now(CacheName::Products, std::slice::from_ref(&row.sku_id))
            .await;
        Ok(row)
    }

    /// Reserves all of an order's lines or none (`POST /api/stocks/reserve`).
    pub async fn reserve(
        &self,
        order_id: OrderId,
        items: Vec<SkuQuantity>,
    ) -> Result<Reservation, InventoryError> {
        self.inventory
            .send(Reserve { order_id, items })
            .await
            .map_err(|e| InventoryError::Unavailable(format!("the inventory did not answer: {e}")))?
    }

    /// Sends a dead letter back to the queue that gave up on it.
    pub async fn replay_dead_letter(&self, id: &str) -> Result<dead_letter_rows::Model, DeadLetterError> {
        dead_letters::replay(&self.db, self.transport.as_ref(), id).await
    }

    /// Drops a dead letter for good.
    pub async fn discard_dead_letter(&self, id: &str) -> Result<dead_letter_rows::Model, DeadLetterError> {
        dead_letters::discard(&self.db, id).await
    }

    /// The bus: its transport's name and whether it can publish now.
    pub fn bus(&self) -> (&'static str, bool) {
        (self.transport.name(), self.transport.is_ready())
    }
}

/// Signs with the shared secret or `auth.signing_key_file`, and verifies an identity provider's tokens
/// too when `auth.jwks_url` is set.
fn token_service(config: &EngineConfig) -> anyhow::Result<TokenService> {
    let auth = &config.auth;
    let mut tokens = TokenService::new(
        &config.jwt_secret,
        &config.jwt_issuer,
        auth.leeway_seconds,
        auth.accepts_mock_tokens(),
    );
    if let Some(path) = &auth.signing_key_file {
        let pem = std::fs::read(path)
            .map_err(|e| anyhow::anyhow!("auth.signing_key_file: cannot read {path}: {e}"))?;
        let key =
            SigningKey::from_pem(&pem).map_err(|e| anyhow::anyhow!("auth.signing_key_file: {path}: {e}"))?;
        tracing::info!(kid = %key.kid, algorithm = ?key.algorithm, "tokens are signed with the node's key");
        tokens = tokens.with_signing_key(key);
    }
    if auth.jwks_url.is_some() {
        let issuer = auth.jwks_issuer.as_deref().unwrap_or(&config.jwt_issuer);
        let provider = Provider::new(
            Arc::default(),
            issuer,
            auth.audience.as_deref(),
            auth.leeway_seconds,
        );
        tokens = tokens.with_provider(provider);
    }
    Ok(tokens)
}

/// The auth actor did not answer (the node is shutting down).
fn unavailable(e: MailboxError) -> AuthError {
    AuthError::Internal(format!("the auth actor did not answer: {e}"))
}
