//! The Redis store: one key per entry, `<cache.key_prefix><cache>:<key>` (`ordersaga:stocks:SKU-1`),
//! written with an expiry of `cache.ttl_seconds`, shared by every node that names the same Redis and
//! prefix. Every call is bounded by `cache.redis_timeout_ms`.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::{CacheName, Fill, REDIS_BACKOFF, Slot, failed, is_tombstone, tombstone};
use crate::config::CacheSettings;

/// Sets `KEYS[1]` to `ARGV[2]` (expiring in `ARGV[3]` ms) only if it holds `ARGV[1]` (`""`: nothing).
const FILL_IF_UNCHANGED: &str = r"
local current = redis.call('GET', KEYS[1])
if (current == false and ARGV[1] == '') or current == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
";

pub struct RedisStore {
    manager: ConnectionManager,
    prefix: String,
    ttl_ms: u64,
    timeout: Duration,
    fill: redis::Script,
    /// After a failure, reads leave Redis alone until then.
    resting_until: Mutex<Option<Instant>>,
}

impl RedisStore {
    /// A store on `url`, connected on first use (and again after a failure).
    pub fn connect(url: &str, settings: &CacheSettings) -> Result<RedisStore, String> {
        let client = redis::Client::open(url).map_err(|e| format!("redis_url: {e}"))?;
        let timeout = Duration::from_millis(settings.redis_timeout_ms);
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1)
            .set_max_delay(REDIS_BACKOFF);
        let manager =
            ConnectionManager::new_lazy_with_config(client, config).map_err(|e| format!("redis_url: {e}"))?;
        Ok(RedisStore {
            manager,
            prefix: settings.key_prefix.clone(),
            ttl_ms: settings.ttl_seconds.saturating_mul(1000),
            timeout,
            fill: redis::Script::new(FILL_IF_UNCHANGED),
            resting_until: Mutex::new(None),
        })
    }

    fn key(&self, name: CacheName, key: &str) -> String {
        format!("{}{}:{key}", self.prefix, name.as_str())
    }

    fn resting(&self) -> bool {
        match self.resting_until.lock() {
            Ok(until) => until.is_some_and(|until| Instant::now() < until),
            Err(_) => false,
        }
    }

    fn failed(&self, name: CacheName, operation: &'static str, error: &dyn std::fmt::Display) {
        failed(name, operation, error);
        if let Ok(mut until) = self.resting_until.lock() {
            *until = Some(Instant::now() + REDIS_BACKOFF);
        }
    }

    /// Runs one Redis call within the timeout.
    async fn bounded<T>(
        &self,
        call: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, String> {
        match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {} ms", self.timeout.as_millis())),
        }
    }

    /// Whether Redis answers a `PING` now.
    pub async fn ping(&self) -> bool {
        let mut connection = self.manager.clone();
        let answered = self
            .bounded(redis::cmd("PING").query_async::<String>(&mut connection))
            .await
            .is_ok();
        if answered && let Ok(mut until) = self.resting_until.lock() {
            *until = None;
        }
        answered
    }

    pub async fn lookup(&self, name: CacheName, keys: &[String]) -> Vec<Slot> {
        if keys.is_empty() {
            return Vec::new();
        }
        if self.resting() {
            return keys.iter().map(|_| Slot::Unavailable).collect();
        }
        let mut connection = self.manager.clone();
        let full: Vec<String> = keys.iter().map(|key| self.key(name, key)).collect();
        let answer = self
            .bounded(
                redis::cmd("MGET")
                    .arg(&full)
                    .query_async::<Vec<Option<String>>>(&mut connection),
            )
            .await;
        match answer {
            Ok(values) if values.len() == keys.len() => values
                .into_iter()
                .map(|value| match value {
                    Some(raw) if is_tombstone(&raw) => Slot::Miss(Some(raw)),
                    Some(raw) => Slot::Hit(raw),
                    None => Slot::Miss(None),
                })
                .collect(),
            Ok(values) => {
                self.failed(
                    name,
                    "read",
                    &format!("MGET answered {} values for {} keys", values.len(), keys.len()),
                );
                keys.iter().map(|_| Slot::Unavailable).collect()
            }
            Err(e) => {
                self.failed(name, "read", &e);
                keys.iter().map(|_| Slot::Unavailable).collect()
            }
        }
    }

    /// Puts each value whose key still holds what its reader saw (a write's tombstone stops it).
    pub async fn fill(&self, name: CacheName, fills: Vec<Fill>) {
        for fill in fills {
            let mut connection = self.manager.clone();
            let mut invocation = self.fill.key(self.key(name, &fill.key));
            invocation
                .arg(fill.held.as_deref().unwrap_or(""))
                .arg(&fill.json)
                .arg(self.ttl_ms);
            if let Err(e) = self
                .bounded(invocation.invoke_async::<i64>(&mut connection))
                .await
            {
                self.failed(name, "fill", &e);
                return;
            }
        }
    }

    /// Writes a tombstone over each key (tried even while reads rest: a missed invalidation is what
    /// would leave an old value behind).
    pub async fn invalidate(&self, name: CacheName, keys: &[String]) {
        if keys.is_empty() {
            return;
        }
        let mut pipe = redis::pipe();
        for key in keys {
            pipe.cmd("SET")
                .arg(self.key(name, key))
                .arg(tombstone())
                .arg("PX")
                .arg(self.ttl_ms)
                .ignore();
        }
        let mut connection = self.manager.clone();
        if let Err(e) = self.bounded(pipe.query_async::<()>(&mut connection)).await {
            self.failed(name, "invalidate", &e);
        }
    }
}
