//! Starting the engine's actors and handing out their addresses.

use std::sync::Arc;

use actix::prelude::*;
use sea_orm::{DatabaseConnection, DbBackend};

use crate::archive::ArchiveActor;
use crate::auth::{AuthActor, TokenService};
use crate::bus::Transport;
use crate::bus::amqp::{BrokerBridge, BrokerConfig};
use crate::bus::memory::InProcessTransport;
use crate::config::{
    ArchiveSettings, AuthSettings, BrokerSettings, OutboxSettings, PaymentMode, PaymentSettings,
    RetrySettings, SagaSettings,
};
use crate::inventory::InventoryActor;
use crate::mailbox::{Consumer, Mailbox};
use crate::notification::NotificationActor;
use crate::orders::{OrderDesk, Place, PlaceError, PlaceOrder, Placement};
use crate::outbox::{OutboxRelay, OutboxSignal};
use crate::payment::PaymentActor;
use crate::saga::{Resume, SagaRegistry, Track};
use crate::topology;

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
    pub desk: Addr<OrderDesk>,
    pub relay: Addr<OutboxRelay>,
    pub transport: Arc<dyn Transport>,
    pub outbox: OutboxSignal,
}

impl Engine {
    /// Starts every actor on the current actix system, resumes unfinished sagas and starts the relay
    /// (which sends whatever the outbox still holds).
    pub async fn start(db: DatabaseConnection, config: EngineConfig) -> anyhow::Result<Engine> {
        let node_id = config.node_id.clone();
        let tokens = Arc::new(TokenService::new(
            &config.jwt_secret,
            &config.jwt_issuer,
            config.auth.leeway_seconds,
            config.auth.accepts_mock_tokens(),
        ));
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
        let inventory = {
            let db = db.clone();
            InventoryActor::start_in_arbiter(&inventory_home, move |_| InventoryActor::new(db))
        };
        let payment = {
            let (mode, settings) = (config.payment_mode, config.payment.clone());
            PaymentActor::start_in_arbiter(&payment_home, move |_| PaymentActor::new(mode, settings))
        };
        let sagas = {
            let (db, timeout, outbox) = (db.clone(), config.saga.payment_timeout(), outbox.clone());
            SagaRegistry::start_in_arbiter(&saga_home, move |_| SagaRegistry::new(db, timeout, outbox))
        };
        let notifications = NotificationActor::start_in_arbiter(&payment_home, |_| NotificationActor);
        let archive = ArchiveActor::new(db.clone(), config.archive.clone()).start();
        let desk = OrderDesk::new(db.clone(), parallel).start();

        let consumers = vec![
            Consumer {
                queue: topology::Q_INVENTORY_ORDER_CREATED,
                apply: inventory.clone().recipient(),
                prepare: None,
                serial: true,
                home: inventory_home.clone(),
            },
            Consumer {
                queue: topology::Q_INVENTORY_RELEASE_REQUESTED,
                apply: inventory.clone().recipient(),
                prepare: None,
                serial: true,
                home: inventory_home.clone(),
            },
            Consumer {
                queue: topology::Q_PAYMENT_INVENTORY_RESERVED,
                apply: payment.clone().recipient(),
                prepare: Some(payment.clone().recipient()),
                serial: false,
                home: payment_home.clone(),
            },
            Consumer {
                queue: topology::Q_PAYMENT_REFUND_REQUESTED,
                apply: payment.clone().recipient(),
                prepare: Some(payment.clone().recipient()),
                serial: false,
                home: payment_home.clone(),
            },
            Consumer {
                queue: topology::Q_ORDER_INVENTORY_RESULT,
                apply: sagas.clone().recipient(),
                prepare: None,
                serial: false,
                home: saga_home.clone(),
            },
            Consumer {
                queue: topology::Q_ORDER_PAYMENT_RESULT,
                apply: sagas.clone().recipient(),
                prepare: None,
                serial: false,
                home: saga_home.clone(),
            },
            Consumer {
                queue: topology::Q_NOTIFICATION_ORDER_CREATED,
                apply: notifications.recipient(),
                prepare: None,
                serial: false,
                home: payment_home.clone(),
            },
        ];
        let mailbox = Mailbox::new(db.clone(), config.retry.clone(), outbox.clone());
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
                };
                BrokerBridge::start(broker, consumers, mailbox)
            }
            None => InProcessTransport::start(consumers, mailbox, parallel),
        };

        let relay = OutboxRelay::new(
            db.clone(),
            transport.clone(),
            outbox.clone(),
            config.outbox.clone(),
            node_id.clone(),
        )
        .start();
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
            desk,
            relay,
            transport,
            outbox,
        })
    }

    /// Places an order; a new one starts its saga and wakes the relay.
    pub async fn place_order(&self, request: PlaceOrder) -> Result<Placement, PlaceError> {
        let placement =
            self.desk.send(Place(request)).await.map_err(|e| {
                PlaceError::Database(sea_orm::DbErr::Custom(format!("the order desk: {e}")))
            })??;
        if let Placement::Created(_, update) = &placement {
            self.outbox.wake();
            self.sagas.do_send(Track(update.clone()));
        }
        Ok(placement)
    }
}
