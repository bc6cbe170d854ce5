//! Starting the engine's actors and handing out their addresses.

use std::sync::Arc;

use actix::prelude::*;
use sea_orm::DatabaseConnection;

use crate::auth::{AuthActor, TokenService};
use crate::config::{
    ArchiveSettings, AuthSettings, BrokerSettings, OutboxSettings, PaymentMode, PaymentSettings,
    RetrySettings, SagaSettings,
};
use crate::inventory::InventoryActor;

/// What the engine needs to know.
#[derive(Clone, Debug)]
pub struct EngineConfig {
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
    pub tokens: Arc<TokenService>,
    pub auth: Addr<AuthActor>,
    pub inventory: Addr<InventoryActor>,
}

impl Engine {
    /// Starts every actor on the current actix system.
    pub async fn start(db: DatabaseConnection, config: EngineConfig) -> anyhow::Result<Engine> {
        let tokens = Arc::new(TokenService::new(
            &config.jwt_secret,
            &config.jwt_issuer,
            config.auth.leeway_seconds,
        ));
        let auth = AuthActor::new(db.clone(), tokens.clone(), config.auth.clone()).start();
        let inventory = InventoryActor::new(db.clone()).start();
        Ok(Engine {
            tokens,
            auth,
            inventory,
        })
    }
}
