//! Settings: built-in defaults, then an optional `ordersaga.toml` (or `--config FILE`), then the
//! `ORDERSAGA_*` environment. Unknown keys and bad values stop the start with one line naming the setting.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

use actors::config::{
    AdmissionSettings, ArchiveSettings, AuthSettings, BrokerSettings, BusSettings, CacheSettings,
    CatalogSettings, OutboxSettings, PaymentSettings, RetrySettings, SagaSettings,
};
pub use actors::config::{PaymentMode, Secret};

/// The file read when `--config` is not given, if it exists.
pub const DEFAULT_CONFIG_FILE: &str = "ordersaga.toml";
/// Prefix of every environment variable that configures ordersaga.
pub const ENV_PREFIX: &str = "ORDERSAGA_";
/// Default of `request_timeout_seconds`.
pub const DEFAULT_REQUEST_TIMEOUT_SECONDS: u64 = 5;
/// Default of `shutdown_timeout_seconds`.
pub const DEFAULT_SHUTDOWN_TIMEOUT_SECONDS: u64 = 20;
/// Minimum length of `jwt_secret` in bytes.
pub const MIN_SECRET_BYTES: usize = 32;

/// Environment variables with the prefix that configure the test suite, not the service.
const NOT_SETTINGS: &[&str] = &["test_", "require_services", "log"];

/// Everything that can be configured. Field names are the keys of `ordersaga.toml`; the environment
/// variable of a key is `ORDERSAGA_` + the key in capitals, with `__` between a section and its key
/// (`ORDERSAGA_DATABASE_URL`, `ORDERSAGA_AUTH__MOCK_ISSUER`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Address the HTTP server listens on.
    pub bind: String,
    /// This node's identity (its claims in the outbox are made in this name). Stable across restarts, so
    /// a node that comes back takes over what it left at once; unique among the running nodes. Unset:
    /// `<hostname>:<port>`.
    pub node_id: Option<String>,
    /// `sqlite://FILE?mode=rwc`, `postgres://…` or `mysql://…`.
    pub database_url: String,
    /// RabbitMQ URL; unset means the in-process bus.
    pub amqp_url: Option<String>,
    /// Redis URL of the read cache (`redis://host:6379`), shared by every node; unset means an
    /// in-memory cache per node.
    pub redis_url: Option<String>,
    /// HMAC key for tokens (at least 32 bytes). Unset: a random per-process key and a warning.
    pub jwt_secret: Option<Secret>,
    /// `iss` of issued tokens, required of verified ones.
    pub jwt_issuer: String,
    /// Behaviour of the mock payment gateway.
    pub payment_mode: PaymentMode,
    /// SQLite `synchronous` pragma: `FULL` or `NORMAL`.
    pub sqlite_synchronous: SqliteSynchronous,
    /// On SQLite, keep the engine's thread and the SQLite connection's thread on one core (the HTTP
    /// workers still use every core); see `affinity`.
    pub sqlite_pin_threads: bool,
    /// Largest JSON request body in bytes.
    pub body_limit_bytes: usize,
    /// Every request answers within this many seconds: past it, `503` and the work is abandoned where it
    /// can be (an order not yet committed is not placed). Keep it below the clients' own timeouts.
    pub request_timeout_seconds: u64,
    /// On SIGTERM or SIGINT the node stops within this many seconds: readiness turns `503`, new requests
    /// are refused, the requests and consumer transactions in flight finish, then it exits `0`.
    pub shutdown_timeout_seconds: u64,
    /// HTTP worker threads (default: one per core).
    pub http_workers: Option<usize>,
    /// Log lines as `text` or `json`.
    pub log_format: LogFormat,
    /// OTLP/HTTP endpoint the request spans are exported to (`http://collector:4318/v1/traces`); needs a
    /// build with the `otlp` feature. Unset: nothing is exported.
    pub otlp_endpoint: Option<String>,
    /// `service.name` of the exported spans.
    pub otlp_service_name: String,
    pub database: DatabaseSettings,
    pub auth: AuthSettings,
    pub saga: SagaSettings,
    pub payment: PaymentSettings,
    pub retry: RetrySettings,
    pub outbox: OutboxSettings,
    pub broker: BrokerSettings,
    pub archive: ArchiveSettings,
    pub admission: AdmissionSettings,
    pub bus: BusSettings,
    pub cache: CacheSettings,
    pub catalog: CatalogSettings,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            bind: "127.0.0.1:8080".to_owned(),
            node_id: None,
            database_url: "sqlite://ordersaga.db?mode=rwc".to_owned(),
            amqp_url: None,
            redis_url: None,
            jwt_secret: None,
            jwt_issuer: "ordersaga".to_owned(),
            payment_mode: PaymentMode::Success,
            sqlite_synchronous: SqliteSynchronous::Full,
            sqlite_pin_threads: true,
            body_limit_bytes: 64 * 1024,
            request_timeout_seconds: DEFAULT_REQUEST_TIMEOUT_SECONDS,
            shutdown_timeout_seconds: DEFAULT_SHUTDOWN_TIMEOUT_SECONDS,
            http_workers: None,
            log_format: LogFormat::Text,
            otlp_endpoint: None,
            otlp_service_name: "ordersaga".to_owned(),
            database: DatabaseSettings::default(),
            auth: AuthSettings::default(),
            saga: SagaSettings::default(),
            payment: PaymentSettings::default(),
            retry: RetrySettings::default(),
            outbox: OutboxSettings::default(),
            broker: BrokerSettings::default(),
            archive: ArchiveSettings::default(),
            admission: AdmissionSettings::default(),
            bus: BusSettings::default(),
            cache: CacheSettings::default(),
            catalog: CatalogSettings::default(),
        }
    }
}

/// Read-only SQLite connections beside the writer, by default.
pub const DEFAULT_SQLITE_READERS: u32 = 2;
/// Most read-only SQLite connections.
pub const MAX_SQLITE_READERS: u32 = 64;

/// Connection pool settings.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseSettings {
    /// Pool size (default: 16 for PostgreSQL/MySQL, 1 for SQLite).
    pub max_connections: Option<u32>,
    /// SQLite: read-only connections that serve the API's reads beside the one writer (0: reads use the
    /// writer's connection and wait behind its transactions). Unused on server databases.
    pub sqlite_readers: u32,
    /// Seconds to wait for a connection.
    pub connect_timeout_seconds: u64,
    /// Longest a unit of the engine's database work (a consumer's or a saga step's transaction, an
    /// outbox round, a placement batch, a sweep) may take; past it the work is dropped (rolled back) and
    /// done again on another connection. Bounds how long a connection the network lost silently (its
    /// server gone behind a cut, so the answer it waits for never comes) holds the engine up.
    pub work_timeout_seconds: u64,
    /// A profiling aid (unset by default): every statement the node sends is counted by its shape, with
    /// the time it took, and this file is rewritten every two seconds with the table.
    pub statement_stats_file: Option<std::path::PathBuf>,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            max_connections: None,
            sqlite_readers: DEFAULT_SQLITE_READERS,
            connect_timeout_seconds: 10,
            work_timeout_seconds: actors::db::DEFAULT_WORK_TIMEOUT.as_secs(),
            statement_stats_file: None,
        }
    }
}

/// SQLite durability.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum SqliteSynchronous {
    /// A `201` survives power loss.
    Full,
    /// Survives a process crash, not power loss; faster.
    Normal,
}

/// Log line format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// Whether a setting named `key` holds a secret.
fn is_secret(key: &str) -> bool {
    ["secret", "signing_key", "password"]
        .iter()
        .any(|word| key.contains(word))
}

/// Replaces secrets, and passwords inside URLs, by `***`.
fn redact(value: &mut toml::Value, key: &str) {
    match value {
        toml::Value::Table(table) => {
            for (key, value) in table.iter_mut() {
                redact(value, key);
            }
        }
        toml::Value::String(text) if is_secret(key) => *text = "***".to_owned(),
        toml::Value::String(text) => {
            if let Ok(mut url) = url::Url::parse(text)
                && url.password().is_some()
                && url.set_password(Some("***")).is_ok()
            {
                *text = url.to_string();
            }
        }
        _ => {}
    }
}

/// The kind of database a URL names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DatabaseKind {
    Sqlite,
    Postgres,
    MySql,
}

/// A configuration problem, phrased as the one line printed before exiting.
#[derive(Debug, thiserror::Error)]
#[error("configuration error: {0}")]
pub struct ConfigError(String);

impl ConfigError {
    fn setting(key: &str, problem: impl fmt::Display) -> Self {
        ConfigError(format!(
            "`{key}` ({}{}): {problem}",
            ENV_PREFIX,
            key.to_uppercase().replace('.', "__")
        ))
    }
}

impl ConfigError {
    /// Names the key a figment error is about, and where the bad value came from.
    fn from_figment(err: figment::Error) -> Self {
        use figment::error::Kind;
        let mut path: Vec<String> = err.path.iter().map(|p| p.to_lowercase()).collect();
        let problem = match &err.kind {
            Kind::UnknownField(field, _) => {
                if path.last() != Some(&field.to_lowercase()) {
                    path.push(field.to_lowercase());
                }
                "unknown setting".to_owned()
            }
            kind => kind.to_string(),
        };
        let source = err.metadata.as_ref().map(|m| match &m.source {
            Some(source) => format!(" (from {} {source})", m.name),
            None => format!(" (from {})", m.name),
        });
        let problem = format!("{problem}{}", source.unwrap_or_default());
        if path.is_empty() {
            ConfigError(problem)
        } else {
            ConfigError::setting(&path.join("."), problem)
        }
    }
}

impl Settings {
    /// The effective settings as TOML (`ordersaga config`), with every secret and every password in a
    /// URL replaced by `***`. Settings that are unset are left out.
    pub fn to_redacted_toml(&self) -> Result<String, ConfigError> {
        let render = |e: &dyn fmt::Display| ConfigError(format!("the settings cannot be shown as TOML: {e}"));
        let mut value = toml::Value::try_from(self).map_err(|e| render(&e))?;
        redact(&mut value, "");
        toml::to_string_pretty(&value).map_err(|e| render(&e))
    }

    /// Loads the settings: defaults, then `file` (or `ordersaga.toml` if it exists), then the environment.
    pub fn load(file: Option<&Path>) -> Result<Settings, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Settings::default()));
        match file {
            Some(path) => {
                if !path.is_file() {
                    return Err(ConfigError(format!(
                        "config file {} does not exist",
                        path.display()
                    )));
                }
                figment = figment.merge(Toml::file_exact(path));
            }
            None => {
                let default = PathBuf::from(DEFAULT_CONFIG_FILE);
                if default.is_file() {
                    figment = figment.merge(Toml::file_exact(default));
                }
            }
        }
        figment = figment.merge(
            Env::prefixed(ENV_PREFIX)
                .filter(|key| !NOT_SETTINGS.iter().any(|skip| key.as_str().starts_with(skip)))
                .split("__"),
        );
        let settings: Settings = figment.extract().map_err(|e| match e.into_iter().next() {
            Some(first) => ConfigError::from_figment(first),
            None => ConfigError("unreadable settings".to_owned()),
        })?;
        settings.validate()?;
        Ok(settings)
    }

    /// Checks what the types alone do not.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.bind_addr()?;
        self.database_kind()?;
        if let Some(url) = &self.amqp_url
            && !(url.starts_with("amqp://") || url.starts_with("amqps://"))
        {
            return Err(ConfigError::setting(
                "amqp_url",
                "must start with amqp:// or amqps://",
            ));
        }
        if let Some(url) = &self.redis_url
            && !url.starts_with("redis://")
        {
            return Err(ConfigError::setting("redis_url", "must start with redis://"));
        }
        if let Some(secret) = &self.jwt_secret
            && secret.expose().len() < MIN_SECRET_BYTES
        {
            return Err(ConfigError::setting(
                "jwt_secret",
                format!(
                    "must be at least {MIN_SECRET_BYTES} bytes, got {}",
                    secret.expose().len()
                ),
            ));
        }
        if let Some(id) = &self.node_id
            && !valid_node_id(id)
        {
            return Err(ConfigError::setting(
                "node_id",
                "must be 1-64 characters of letters, digits and -_.:",
            ));
        }
        if self.outbox.claim_lease_seconds.saturating_mul(2) > self.saga.payment_timeout_seconds {
            return Err(ConfigError::setting(
                "outbox.claim_lease_seconds",
                format!(
                    "must be at most half of saga.payment_timeout_seconds ({}), so that an event a dead \
                     node left behind is sent again well before the payment deadline",
                    self.saga.payment_timeout_seconds
                ),
            ));
        }
        if self.jwt_issuer.trim().is_empty() {
            return Err(ConfigError::setting("jwt_issuer", "must not be empty"));
        }
        if self.body_limit_bytes < 1024 {
            return Err(ConfigError::setting("body_limit_bytes", "must be at least 1024"));
        }
        if !(1..=600).contains(&self.request_timeout_seconds) {
            return Err(ConfigError::setting(
                "request_timeout_seconds",
                "must be between 1 and 600",
            ));
        }
        if !(1..=3600).contains(&self.shutdown_timeout_seconds) {
            return Err(ConfigError::setting(
                "shutdown_timeout_seconds",
                "must be between 1 and 3600",
            ));
        }
        if let Some(endpoint) = &self.otlp_endpoint {
            if !cfg!(feature = "otlp") {
                return Err(ConfigError::setting(
                    "otlp_endpoint",
                    "this build has no OTLP export: build with `--features otlp`",
                ));
            }
            if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
                return Err(ConfigError::setting(
                    "otlp_endpoint",
                    "must be an http:// or https:// URL",
                ));
            }
        }
        if self.http_workers == Some(0) {
            return Err(ConfigError::setting("http_workers", "must be at least 1"));
        }
        if self.database.max_connections == Some(0) {
            return Err(ConfigError::setting(
                "database.max_connections",
                "must be at least 1",
            ));
        }
        if self.database.sqlite_readers > MAX_SQLITE_READERS {
            return Err(ConfigError::setting(
                "database.sqlite_readers",
                format!("must be at most {MAX_SQLITE_READERS}"),
            ));
        }
        if self.database.work_timeout_seconds == 0 {
            return Err(ConfigError::setting(
                "database.work_timeout_seconds",
                "must be at least 1",
            ));
        }
        let checks: [(&str, Result<(), String>); 9] = [
            ("auth", self.auth.validate()),
            ("saga", self.saga.validate()),
            ("payment", self.payment.validate()),
            ("retry", self.retry.validate()),
            ("outbox", self.outbox.validate()),
            ("broker", self.broker.validate()),
            ("archive", self.archive.validate()),
            ("bus", self.bus.validate()),
            ("cache", self.cache.validate()),
        ];
        for (section, check) in checks {
            if let Err(problem) = check {
                // The section validators name the key inside the section first: "key: problem".
                let (key, problem) = problem.split_once(": ").unwrap_or(("", problem.as_str()));
                return Err(ConfigError::setting(&format!("{section}.{key}"), problem));
            }
        }
        Ok(())
    }

    /// Whether the mock token issuer is on: as `auth.mock_issuer` says, or, when that is unset, only for
    /// the embedded defaults (a SQLite database) on a loopback address. A node others can reach, or one
    /// on a server database, never has it on without being told.
    pub fn mock_issuer_on(&self) -> bool {
        self.auth.mock_issuer.unwrap_or_else(|| {
            let loopback = self.bind_addr().is_ok_and(|a| a.ip().is_loopback());
            let embedded = self.database_kind().is_ok_and(|k| k == DatabaseKind::Sqlite);
            loopback && embedded
        })
    }

    /// This node's identity: `node_id`, or `<hostname>:<port>` of the port it listens on.
    pub fn node_identity(&self, port: u16) -> String {
        match &self.node_id {
            Some(id) => id.clone(),
            None => {
                let host: String = gethostname::gethostname()
                    .to_string_lossy()
                    .chars()
                    .filter(|c| c.is_ascii_alphanumeric() || "-_.".contains(*c))
                    .take(48)
                    .collect();
                let host = if host.is_empty() { "node".to_owned() } else { host };
                format!("{host}:{port}")
            }
        }
    }

    /// The listen address.
    pub fn bind_addr(&self) -> Result<SocketAddr, ConfigError> {
        self.bind
            .parse()
            .map_err(|_| ConfigError::setting("bind", format!("`{}` is not HOST:PORT", self.bind)))
    }

    /// Which database `database_url` names.
    pub fn database_kind(&self) -> Result<DatabaseKind, ConfigError> {
        let url = self.database_url.as_str();
        if url.starts_with("sqlite:") {
            Ok(DatabaseKind::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(DatabaseKind::Postgres)
        } else if url.starts_with("mysql://") || url.starts_with("mariadb://") {
            Ok(DatabaseKind::MySql)
        } else {
            Err(ConfigError::setting(
                "database_url",
                "expected sqlite://FILE?mode=rwc, postgres://… or mysql://…",
            ))
        }
    }
}

fn valid_node_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_embedded() {
        let s = Settings::default();
        assert!(s.validate().is_ok());
        assert_eq!(s.database_kind().ok(), Some(DatabaseKind::Sqlite));
        assert!(s.amqp_url.is_none());
    }

    #[test]
    fn a_short_secret_is_named() {
        let s = Settings {
            jwt_secret: Some(Secret::new("short")),
            ..Settings::default()
        };
        let err = s.validate().err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("jwt_secret"), "{err}");
        assert!(err.contains("ORDERSAGA_JWT_SECRET"), "{err}");
    }

    #[test]
    fn a_bad_database_url_is_named() {
        let s = Settings {
            database_url: "oracle://x".to_owned(),
            ..Settings::default()
        };
        let err = s.validate().err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("database_url"), "{err}");
    }

    #[test]
    fn the_claim_lease_stays_well_below_the_payment_deadline() {
        let mut s = Settings::default();
        assert_eq!(s.outbox.claim_lease_seconds * 6, s.saga.payment_timeout_seconds);
        s.saga.payment_timeout_seconds = 8;
        s.outbox.claim_lease_seconds = 5;
        let err = s.validate().err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("outbox.claim_lease_seconds"), "{err}");
        s.outbox.claim_lease_seconds = 4;
        assert!(s.validate().is_ok());
    }

    #[test]
    fn the_mock_issuer_is_on_by_default_only_for_the_embedded_defaults_on_loopback() {
        let mut s = Settings::default();
        assert!(s.mock_issuer_on(), "the README's first command");
        s.bind = "0.0.0.0:8080".to_owned();
        assert!(!s.mock_issuer_on(), "reachable from elsewhere");
        s.bind = "[::1]:8080".to_owned();
        assert!(s.mock_issuer_on());
        s.database_url = "postgres://db/ordersaga".to_owned();
        assert!(!s.mock_issuer_on(), "a server database");
        s.auth.mock_issuer = Some(true);
        assert!(s.mock_issuer_on(), "switched on explicitly");
        let mut s = Settings::default();
        s.auth.mock_issuer = Some(false);
        assert!(!s.mock_issuer_on());
    }

    #[test]
    fn node_ids_default_to_host_and_port_and_are_checked() {
        let mut s = Settings::default();
        let id = s.node_identity(8080);
        assert!(id.ends_with(":8080") && valid_node_id(&id), "{id}");
        s.node_id = Some("node-a".to_owned());
        assert_eq!(s.node_identity(8080), "node-a");
        s.node_id = Some("two words".to_owned());
        let err = s.validate().err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("node_id"), "{err}");
    }

    #[test]
    fn the_cache_settings_are_checked() {
        let mut s = Settings::default();
        assert!(s.cache.enabled && s.redis_url.is_none(), "in memory by default");
        s.redis_url = Some("http://127.0.0.1:6379".to_owned());
        let err = s.validate().err().map(|e| e.to_string()).unwrap_or_default();
        assert!(
            err.contains("redis_url") && err.contains("ORDERSAGA_REDIS_URL"),
            "{err}"
        );
        s.redis_url = Some("redis://127.0.0.1:6379".to_owned());
        assert!(s.validate().is_ok());
        s.cache.ttl_seconds = 0;
        let err = s.validate().err().map(|e| e.to_string()).unwrap_or_default();
        assert!(
            err.contains("cache.ttl_seconds") && err.contains("ORDERSAGA_CACHE__TTL_SECONDS"),
            "{err}"
        );
    }

    #[test]
    fn a_nested_setting_names_its_section() {
        let mut s = Settings::default();
        s.retry.max_attempts = 0;
        let err = s.validate().err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("retry.max_attempts"), "{err}");
        assert!(err.contains("ORDERSAGA_RETRY__MAX_ATTEMPTS"), "{err}");
    }
}
