//! The engine's settings sections. The service's `Settings` (in the root crate) embeds them, so one
//! `ordersaga.toml` configures everything; each `validate` names the offending key as `key: problem`.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A secret string that never prints.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    /// The secret itself, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Behaviour of the mock payment gateway.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum PaymentMode {
    /// Every payment succeeds.
    Success,
    /// Every payment fails.
    Fail,
    /// Deterministic per order id: about half succeed, exactly those the seed system approves (the
    /// order id's Java `UUID.hashCode()` is even; see `consumers::payment::approves`).
    Hashed,
}

impl PaymentMode {
    pub fn as_str(self) -> &'static str {
        match self {
            PaymentMode::Success => "SUCCESS",
            PaymentMode::Fail => "FAIL",
            PaymentMode::Hashed => "HASHED",
        }
    }
}

/// Token issuing and verification, and the guards of the login routes.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSettings {
    /// Whether `POST /api/auth/token` issues tokens to anyone (development and load tests). Unset: on
    /// only for the embedded defaults (SQLite) on a loopback address; a node reachable from elsewhere,
    /// or on a server database, has it on only when this says `true`.
    pub mock_issuer: Option<bool>,
    /// Whether tokens the mock issuer signed (claim `"mock": true`) are accepted. Unset: as long as this
    /// node's mock issuer is on.
    pub accept_mock_tokens: Option<bool>,
    /// Clock leeway allowed on `exp`, in seconds.
    pub leeway_seconds: u64,
    /// Lifetime of tokens from login, and the default of the mock issuer.
    pub default_ttl_seconds: u64,
    /// Longest lifetime the mock issuer grants.
    pub max_ttl_seconds: u64,
    /// Password hashes (argon2, 19 MiB each) computed at once by logins and registrations. Unset: one
    /// per core.
    pub hash_concurrency: Option<usize>,
    /// How long a login or registration waits for a turn to hash before it is answered `503`.
    pub hash_wait_ms: u64,
    /// Login and registration attempts allowed per client address within `limit_period_seconds`
    /// (0: no limit). Beyond it: `429` with `Retry-After`.
    pub limit_per_address: u32,
    /// Login and registration attempts allowed per username within `limit_period_seconds` (0: no limit).
    pub limit_per_username: u32,
    /// The window of the two limits; an attempt comes back every `period / limit`.
    pub limit_period_seconds: u64,
    /// Take the client address from the last `X-Forwarded-For` entry (behind a proxy that sets it)
    /// instead of the connection's peer.
    pub trust_forwarded_for: bool,
    /// A PEM private key (RSA: RS256, or EC P-256: ES256) this node's issuer signs with instead of the
    /// shared secret; its public key is served at `/.well-known/jwks.json`. Tokens signed with the
    /// secret still verify.
    pub signing_key_file: Option<String>,
    /// The JWKS of an identity provider whose RS256/ES256 tokens verify here: an `http(s)://` URL, or a
    /// file (`file:///path` or a path). Read at start and every `jwks_refresh_seconds`, and again (at
    /// most every 10 s) when a token names a `kid` it does not hold.
    pub jwks_url: Option<String>,
    /// The `iss` the provider's tokens carry. Unset: `jwt_issuer`.
    pub jwks_issuer: Option<String>,
    /// The `aud` the provider's tokens must carry. Unset: not checked.
    pub audience: Option<String>,
    /// How often the provider's JWKS is read again.
    pub jwks_refresh_seconds: u64,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            mock_issuer: None,
            accept_mock_tokens: None,
            leeway_seconds: 5,
            default_ttl_seconds: 3600,
            max_ttl_seconds: 86_400,
            hash_concurrency: None,
            hash_wait_ms: 1_000,
            limit_per_address: 30,
            limit_per_username: 10,
            limit_period_seconds: 60,
            trust_forwarded_for: false,
            signing_key_file: None,
            jwks_url: None,
            jwks_issuer: None,
            audience: None,
            jwks_refresh_seconds: 300,
        }
    }
}

impl AuthSettings {
    pub fn validate(&self) -> Result<(), String> {
        if self.leeway_seconds > 300 {
            return Err("leeway_seconds: must be at most 300".into());
        }
        if self.default_ttl_seconds == 0 || self.default_ttl_seconds > self.max_ttl_seconds {
            return Err("default_ttl_seconds: must be between 1 and max_ttl_seconds".into());
        }
        if matches!(self.hash_concurrency, Some(n) if n == 0 || n > 256) {
            return Err("hash_concurrency: must be between 1 and 256".into());
        }
        if self.hash_wait_ms > 60_000 {
            return Err("hash_wait_ms: must be at most 60000".into());
        }
        if self.limit_period_seconds == 0 || self.limit_period_seconds > 86_400 {
            return Err("limit_period_seconds: must be between 1 and 86400".into());
        }
        if let Some(path) = &self.signing_key_file {
            let pem =
                std::fs::read(path).map_err(|e| format!("signing_key_file: cannot read {path}: {e}"))?;
            crate::auth::keys::SigningKey::from_pem(&pem)
                .map_err(|e| format!("signing_key_file: {path}: {e}"))?;
        }
        if let Some(url) = &self.jwks_url
            && crate::auth::keys::JwksSource::parse(url).is_none()
        {
            return Err("jwks_url: must be an http:// or https:// URL, a file:// URL or a path".into());
        }
        if !(10..=86_400).contains(&self.jwks_refresh_seconds) {
            return Err("jwks_refresh_seconds: must be between 10 and 86400".into());
        }
        Ok(())
    }

    /// Whether the mock issuer is on (after start-up has decided an unset `mock_issuer`).
    pub fn mock_issuer_on(&self) -> bool {
        self.mock_issuer.unwrap_or(false)
    }

    /// Whether tokens marked as the mock issuer's are accepted.
    pub fn accepts_mock_tokens(&self) -> bool {
        self.accept_mock_tokens.unwrap_or(self.mock_issuer_on())
    }

    /// Hashes at once.
    pub fn hash_permits(&self) -> usize {
        self.hash_concurrency
            .unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1))
    }
}

/// The saga's timing.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SagaSettings {
    /// How long a saga waits in `AWAITING_PAYMENT` before it compensates with `PAYMENT_TIMEOUT`.
    pub payment_timeout_seconds: u64,
    /// A saga waiting for the inventory (`AWAITING_INVENTORY`, `COMPENSATING`) that has not moved for
    /// this long has its events published again: a message the broker lost on the way is sent again,
    /// and the consumers drop what they had applied already (the inbox).
    pub redeliver_after_seconds: u64,
}

impl Default for SagaSettings {
    fn default() -> Self {
        Self {
            payment_timeout_seconds: 30,
            redeliver_after_seconds: 60,
        }
    }
}

impl SagaSettings {
    pub fn validate(&self) -> Result<(), String> {
        if self.payment_timeout_seconds == 0 {
            return Err("payment_timeout_seconds: must be at least 1".into());
        }
        if self.redeliver_after_seconds == 0 {
            return Err("redeliver_after_seconds: must be at least 1".into());
        }
        Ok(())
    }
    pub fn payment_timeout(&self) -> Duration {
        Duration::from_secs(self.payment_timeout_seconds)
    }
    pub fn redeliver_after(&self) -> Duration {
        Duration::from_secs(self.redeliver_after_seconds)
    }
}

/// The mock payment gateway's simulated behaviour (tests and load).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PaymentSettings {
    /// Simulated gateway latency per payment, in milliseconds.
    pub latency_ms: u64,
    /// Share of payment attempts (0.0–1.0) that fail transiently and are retried.
    pub transient_failure_rate: f64,
}

impl PaymentSettings {
    pub fn validate(&self) -> Result<(), String> {
        if !(0.0..=1.0).contains(&self.transient_failure_rate) {
            return Err("transient_failure_rate: must be between 0.0 and 1.0".into());
        }
        if self.latency_ms > 600_000 {
            return Err("latency_ms: must be at most 600000".into());
        }
        Ok(())
    }
}

/// Retries of transient consumer failures.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetrySettings {
    /// Attempts in all (the first delivery included) before a message is dead-lettered.
    pub max_attempts: u32,
    /// Delay before the first retry; doubled on each further one.
    pub initial_delay_ms: u64,
    /// Upper bound of the delay.
    pub max_delay_ms: u64,
}

impl Default for RetrySettings {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            initial_delay_ms: 100,
            max_delay_ms: 5_000,
        }
    }
}

impl RetrySettings {
    pub fn validate(&self) -> Result<(), String> {
        if self.max_attempts == 0 {
            return Err("max_attempts: must be at least 1".into());
        }
        if self.initial_delay_ms == 0 || self.initial_delay_ms > self.max_delay_ms {
            return Err("initial_delay_ms: must be between 1 and max_delay_ms".into());
        }
        Ok(())
    }

    /// Every delay a retry can wait, shortest first (one per back-off step, without repeats).
    pub fn delays(&self) -> Vec<Duration> {
        let mut delays: Vec<Duration> = (1..self.max_attempts.max(2))
            .map(|a| self.delay_after(a))
            .collect();
        delays.dedup();
        delays
    }

    /// The longest delay a retry waits (the last back-off step): how long a message waits between tries
    /// while the database cannot be reached at all.
    pub fn longest_delay(&self) -> Duration {
        self.delay_after(self.max_attempts.saturating_sub(1).max(1))
    }

    /// Delay before attempt `attempt + 1`, after `attempt` (≥ 1) attempts failed: bounded exponential.
    pub fn delay_after(&self, attempt: u32) -> Duration {
        let exp = attempt.saturating_sub(1).min(30);
        let ms = self
            .initial_delay_ms
            .saturating_mul(1u64 << exp)
            .min(self.max_delay_ms);
        Duration::from_millis(ms)
    }
}

/// The outbox relay.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutboxSettings {
    /// Rows claimed per round.
    pub batch_size: u64,
    /// Polling interval when no commit woke the relay, in milliseconds.
    pub poll_interval_ms: u64,
    /// After this many seconds a row claimed by another node that did not publish it may be claimed
    /// again (a node takes back its own claims at once when it restarts). At most half of the payment
    /// deadline.
    pub claim_lease_seconds: u64,
}

impl Default for OutboxSettings {
    fn default() -> Self {
        Self {
            batch_size: 256,
            poll_interval_ms: 500,
            claim_lease_seconds: 5,
        }
    }
}

impl OutboxSettings {
    pub fn validate(&self) -> Result<(), String> {
        if self.batch_size == 0 || self.batch_size > 10_000 {
            return Err("batch_size: must be between 1 and 10000".into());
        }
        if self.poll_interval_ms == 0 {
            return Err("poll_interval_ms: must be at least 1".into());
        }
        if self.claim_lease_seconds == 0 {
            return Err("claim_lease_seconds: must be at least 1".into());
        }
        Ok(())
    }
}

/// RabbitMQ (used when `amqp_url` is set). Retries on the broker follow `[retry]` like everywhere else.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BrokerSettings {
    /// HMAC-SHA256 key that signs every envelope (`x-signature`); all nodes must share it. Unset: the
    /// token secret (`jwt_secret`) is used.
    pub signing_key: Option<Secret>,
    /// Unacknowledged messages per consumer queue.
    pub prefetch: u16,
    /// Prefix of the exchange and queue names (isolates deployments sharing a vhost).
    pub name_prefix: String,
    /// Declare the queues as quorum queues (replicated; for a RabbitMQ cluster). Queues that exist with
    /// another type must be deleted first: RabbitMQ does not change a queue's type.
    pub quorum_queues: bool,
    /// AMQP heartbeat asked of the broker, in seconds (the lower of this and the broker's wins; a
    /// `heartbeat=` in `amqp_url` overrides it). A connection that has carried nothing for two of them
    /// is dead: a broker cut off by the network is noticed within that, not after the broker's default
    /// of 60 s twice or TCP's retransmission timeout of many minutes.
    pub heartbeat_seconds: u16,
    /// Longest a connection attempt (TCP, AMQP handshake, topology) may take before it is given up and
    /// tried again; a broker behind a cut network never answers the attempt.
    pub connect_timeout_seconds: u64,
}

impl Default for BrokerSettings {
    fn default() -> Self {
        Self {
            signing_key: None,
            prefetch: 256,
            name_prefix: String::new(),
            quorum_queues: false,
            heartbeat_seconds: 10,
            connect_timeout_seconds: 10,
        }
    }
}

impl BrokerSettings {
    pub fn validate(&self) -> Result<(), String> {
        if self.prefetch == 0 {
            return Err("prefetch: must be at least 1".into());
        }
        if self.heartbeat_seconds == 0 {
            return Err(
                "heartbeat_seconds: must be at least 1 (a dead connection would go unnoticed)".into(),
            );
        }
        if self.connect_timeout_seconds == 0 {
            return Err("connect_timeout_seconds: must be at least 1".into());
        }
        if let Some(key) = &self.signing_key
            && key.expose().len() < 32
        {
            return Err("signing_key: must be at least 32 bytes".into());
        }
        if self.name_prefix.len() > 64 || self.name_prefix.chars().any(|c| c.is_whitespace()) {
            return Err("name_prefix: must be at most 64 characters without spaces".into());
        }
        Ok(())
    }
}

/// The in-process bus.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BusSettings {
    /// Deliveries a queue keeps in memory; beyond them it keeps outbox row ids and reads the events back
    /// when its consumer gets to them, so a slow consumer costs little memory and holds back only itself.
    pub in_memory_per_queue: usize,
}

impl Default for BusSettings {
    fn default() -> Self {
        Self {
            in_memory_per_queue: 10_000,
        }
    }
}

impl BusSettings {
    pub fn validate(&self) -> Result<(), String> {
        if self.in_memory_per_queue == 0 {
            return Err("in_memory_per_queue: must be at least 1".into());
        }
        Ok(())
    }
}

/// The read cache of products and stock (`crate::cache`): in memory, or on Redis when `redis_url` is set.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheSettings {
    /// Whether hot reads (`GET /api/stocks/{skuId}`, the catalog's GETs, the placement's product check)
    /// are cached; `false`: every read goes to the database.
    pub enabled: bool,
    /// Longest life of an entry, and so the longest a node can answer a value that another node changed
    /// without this node seeing the invalidation (in-memory cache on several nodes, or a Redis that was
    /// away during the write).
    pub ttl_seconds: u64,
    /// In-memory cache: most entries kept (least recently used go first).
    pub max_entries: u64,
    /// Redis: prefix of every key, so that deployments (or tests) sharing a Redis do not meet.
    pub key_prefix: String,
    /// Redis: the longest a call may take before the read goes to the database instead.
    pub redis_timeout_ms: u64,
}

impl Default for CacheSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            ttl_seconds: 5,
            max_entries: 100_000,
            key_prefix: "ordersaga:".to_owned(),
            redis_timeout_ms: 250,
        }
    }
}

impl CacheSettings {
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=86_400).contains(&self.ttl_seconds) {
            return Err("ttl_seconds: must be between 1 and 86400".into());
        }
        if self.max_entries == 0 {
            return Err("max_entries: must be at least 1".into());
        }
        if !(1..=10_000).contains(&self.redis_timeout_ms) {
            return Err("redis_timeout_ms: must be between 1 and 10000".into());
        }
        if self.key_prefix.len() > 64
            || self
                .key_prefix
                .chars()
                .any(|c| c.is_whitespace() || c.is_control())
        {
            return Err("key_prefix: at most 64 characters, no spaces".into());
        }
        Ok(())
    }
}

/// What placing an order checks against the product catalog.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CatalogSettings {
    /// Refuse (`400` `/problems/price-mismatch`) an order line whose price is not its product's catalog
    /// price (products without a price are not checked). Off: the client's price is taken as given.
    pub check_prices: bool,
}

/// Admission control of `POST /api/orders`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdmissionSettings {
    /// New orders are refused (`503` with `Retry-After`) while this many sagas wait on the engine itself
    /// (being placed, waiting for their stock, compensating) — this node's on the in-process bus, all
    /// nodes' together over RabbitMQ (`crate::admission`); `0`: no bound. Work the node
    /// cannot keep up with then waits in the clients' retries instead of in its queues, so the sagas it
    /// accepted finish in bounded time.
    pub max_backlog: u64,
}

impl Default for AdmissionSettings {
    fn default() -> Self {
        Self { max_backlog: 2_000 }
    }
}

/// Largest `archive.chunk_size`: the ids of a chunk are bound parameters of one statement, and
/// PostgreSQL allows 65 535 of them.
pub const MAX_ARCHIVE_CHUNK_SIZE: u64 = 10_000;

/// The archiver of terminal orders.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ArchiveSettings {
    /// Whether the daily archive run happens.
    pub enabled: bool,
    /// Terminal orders older than this many days move to `orders_archive`.
    pub after_days: u32,
    /// Orders moved per transaction.
    pub chunk_size: u64,
    /// Seconds between runs.
    pub interval_seconds: u64,
}

impl Default for ArchiveSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            after_days: 30,
            chunk_size: 500,
            interval_seconds: 86_400,
        }
    }
}

impl ArchiveSettings {
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=MAX_ARCHIVE_CHUNK_SIZE).contains(&self.chunk_size) {
            return Err(format!("chunk_size: must be from 1 to {MAX_ARCHIVE_CHUNK_SIZE}"));
        }
        if self.interval_seconds == 0 {
            return Err("interval_seconds: must be at least 1".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delay_doubles_and_is_bounded() {
        let r = RetrySettings {
            max_attempts: 10,
            initial_delay_ms: 100,
            max_delay_ms: 1_000,
        };
        assert_eq!(r.delay_after(1), Duration::from_millis(100));
        assert_eq!(r.delay_after(2), Duration::from_millis(200));
        assert_eq!(r.delay_after(4), Duration::from_millis(800));
        assert_eq!(r.delay_after(5), Duration::from_millis(1_000));
        assert_eq!(r.delay_after(60), Duration::from_millis(1_000));
        let ms: Vec<u128> = r.delays().iter().map(Duration::as_millis).collect();
        assert_eq!(
            ms,
            [100, 200, 400, 800, 1_000],
            "one level per step, the cap once"
        );
    }

    #[test]
    fn secrets_do_not_print() {
        assert_eq!(format!("{:?}", Secret::new("very secret")), "Secret(***)");
    }
}
