//! The read cache: hot reads of products and stock (`GET /api/stocks/{skuId}`, the catalog's GETs, the
//! placement's product check) served from memory (moka, one per node, the default) or from Redis
//! (`redis_url`, shared by every node). The database stays the truth: the saga's stock arithmetic and
//! every write read it, never the cache.
//!
//! **Invalidated on write.** Whoever changes a product or a stock row invalidates its entry after the
//! commit (the catalog upsert, the stock upsert, each reservation and release). Invalidating writes a
//! *tombstone* rather than deleting, and a reader that missed fills the entry only if it still holds what
//! the reader saw before reading the database (a compare-and-set: a Lua script on Redis, a per-key
//! compute in moka). So a read that started before a write and finished after it cannot put the old row
//! back: the write's tombstone is in the way.
//!
//! **The bound.** Every entry, tombstones included, lives at most `cache.ttl_seconds`. On the node that
//! wrote, and on every node sharing the Redis, a write is read fresh once its invalidation is done
//! (right after the commit). A node with the in-memory cache does not see other nodes' invalidations:
//! it may answer the old value for up to `cache.ttl_seconds`. A Redis that missed an invalidation
//! (it was away) holds the old value at most as long.
//!
//! **Redis away.** Every Redis call is bounded by `cache.redis_timeout_ms`; a failure answers from the
//! database (`cache_requests_total{result="error"}`, `cache_errors_total`), and after one the node
//! leaves Redis alone for [`REDIS_BACKOFF`] (reads go to the database) so that an outage costs no
//! timeout per request. Invalidations are always tried.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::config::CacheSettings;

mod memory;
mod redis;

/// How long a node reads past Redis after a Redis call failed.
pub const REDIS_BACKOFF: Duration = Duration::from_secs(1);

/// The caches, as the metrics label them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CacheName {
    /// Products by SKU (the catalog's GETs, the placement's check).
    Products,
    /// Stock rows by SKU (`GET /api/stocks/{skuId}`).
    Stocks,
}

impl CacheName {
    pub fn as_str(self) -> &'static str {
        match self {
            CacheName::Products => "products",
            CacheName::Stocks => "stocks",
        }
    }
}

/// Which store the cache uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheBackend {
    Memory,
    Redis,
    Off,
}

impl CacheBackend {
    pub fn as_str(self) -> &'static str {
        match self {
            CacheBackend::Memory => "memory",
            CacheBackend::Redis => "redis",
            CacheBackend::Off => "off",
        }
    }
}

/// What a store holds for a key.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Slot {
    /// A cached value (JSON text).
    Hit(String),
    /// Nothing usable: empty (`None`) or a tombstone (its text). A fill must find the same.
    Miss(Option<String>),
    /// The store did not answer: read the database and do not fill.
    Unavailable,
}

/// Tombstones start with this; cached values are JSON, which never does.
const TOMBSTONE: &str = "T:";

fn is_tombstone(raw: &str) -> bool {
    raw.starts_with(TOMBSTONE)
}

fn tombstone() -> String {
    format!("{TOMBSTONE}{}", uuid::Uuid::new_v4().simple())
}

enum Store {
    Memory(memory::MemoryStore),
    Redis(redis::RedisStore),
    Off,
}

/// The read cache of a node. Cloning shares it.
#[derive(Clone)]
pub struct Cache {
    store: Arc<Store>,
}

impl Cache {
    /// The cache the settings ask for: off, in memory, or on Redis when `redis_url` is set. Redis is
    /// connected lazily: a node starts (and answers from its database) while Redis is away.
    pub fn new(settings: &CacheSettings, redis_url: Option<&str>) -> Result<Cache, String> {
        let store = if !settings.enabled {
            Store::Off
        } else if let Some(url) = redis_url {
            Store::Redis(redis::RedisStore::connect(url, settings)?)
        } else {
            Store::Memory(memory::MemoryStore::new(settings))
        };
        Ok(Cache {
            store: Arc::new(store),
        })
    }

    /// No cache: every read goes to the database.
    pub fn off() -> Cache {
        Cache {
            store: Arc::new(Store::Off),
        }
    }

    pub fn backend(&self) -> CacheBackend {
        match self.store.as_ref() {
            Store::Memory(_) => CacheBackend::Memory,
            Store::Redis(_) => CacheBackend::Redis,
            Store::Off => CacheBackend::Off,
        }
    }

    /// Whether the store answers now (Redis: a `PING` within the timeout; memory and off: always).
    pub async fn is_up(&self) -> bool {
        match self.store.as_ref() {
            Store::Redis(redis) => redis.ping().await,
            _ => true,
        }
    }

    /// The value of `key`, from the cache or else from `load` (whose answer, `None` included, is
    /// cached unless a write invalidated the key meanwhile).
    pub async fn get_or_load<T, E, F, Fut>(&self, name: CacheName, key: &str, load: F) -> Result<Option<T>, E>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<T>, E>>,
    {
        let keys = [key.to_owned()];
        let mut found = self
            .get_many_or_load(name, &keys, |_| async move {
                Ok(load()
                    .await?
                    .map(|value| (key.to_owned(), value))
                    .into_iter()
                    .collect())
            })
            .await?;
        Ok(found.remove(key))
    }

    /// The values of `keys` that exist, from the cache where it has them and from one call of `load`
    /// (given the keys the cache did not have) for the rest; keys `load` does not answer are cached as
    /// absent.
    pub async fn get_many_or_load<T, E, F, Fut>(
        &self,
        name: CacheName,
        keys: &[String],
        load: F,
    ) -> Result<HashMap<String, T>, E>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce(Vec<String>) -> Fut,
        Fut: Future<Output = Result<Vec<(String, T)>, E>>,
    {
        let slots = match self.store.as_ref() {
            Store::Off => keys.iter().map(|_| Slot::Unavailable).collect(),
            Store::Memory(memory) => memory.lookup(name, keys),
            Store::Redis(redis) => redis.lookup(name, keys).await,
        };
        let off = matches!(self.store.as_ref(), Store::Off);
        let mut found = HashMap::with_capacity(keys.len());
        // The keys to read from the database, each with what the store held for it (the condition of
        // its fill), or `None`: do not fill (the store did not answer).
        let mut missing: Vec<(String, Option<Option<String>>)> = Vec::new();
        for (key, slot) in keys.iter().zip(slots) {
            match slot {
                Slot::Hit(json) => match serde_json::from_str::<Option<T>>(&json) {
                    Ok(value) => {
                        count(name, "hit");
                        if let Some(value) = value {
                            found.insert(key.clone(), value);
                        }
                    }
                    Err(e) => {
                        tracing::warn!(cache = name.as_str(), %key, error = %e, "an unreadable cache entry; reading the database");
                        count(name, "miss");
                        missing.push((key.clone(), Some(Some(json))));
                    }
                },
                Slot::Miss(held) => {
                    count(name, "miss");
                    missing.push((key.clone(), Some(held)));
                }
                Slot::Unavailable => {
                    if !off {
                        count(name, "error");
                    }
                    missing.push((key.clone(), None));
                }
            }
        }
        if missing.is_empty() {
            return Ok(found);
        }
        let mut loaded: HashMap<String, T> = load(missing.iter().map(|(key, _)| key.clone()).collect())
            .await?
            .into_iter()
            .collect();
        let mut fills = Vec::new();
        for (key, held) in missing {
            let value = loaded.remove(&key);
            if let Some(held) = held {
                match serde_json::to_string(&value) {
                    Ok(json) => fills.push(Fill {
                        key: key.clone(),
                        held,
                        json,
                    }),
                    Err(e) => {
                        tracing::warn!(cache = name.as_str(), %key, error = %e, "a value the cache cannot hold")
                    }
                }
            }
            if let Some(value) = value {
                found.insert(key, value);
            }
        }
        match self.store.as_ref() {
            Store::Memory(memory) => memory.fill(name, fills),
            Store::Redis(redis) => redis.fill(name, fills).await,
            Store::Off => {}
        }
        Ok(found)
    }

    /// Invalidates `keys` of a write that has committed: in memory at once, on Redis in the background
    /// (for the after-commit hooks of the engine, which do not wait).
    pub fn invalidate(&self, name: CacheName, keys: Vec<String>) {
        match self.store.as_ref() {
            Store::Off => {}
            Store::Memory(memory) => memory.invalidate(name, &keys),
            Store::Redis(_) => match tokio::runtime::Handle::try_current() {
                Ok(runtime) => {
                    let cache = self.clone();
                    runtime.spawn(async move { cache.invalidate_now(name, &keys).await });
                }
                Err(_) => tracing::warn!(
                    cache = name.as_str(),
                    "no runtime to invalidate on; the entries expire"
                ),
            },
        }
    }

    /// Invalidates `keys` of a write that has committed, and returns once that is done (or failed).
    pub async fn invalidate_now(&self, name: CacheName, keys: &[String]) {
        match self.store.as_ref() {
            Store::Off => {}
            Store::Memory(memory) => memory.invalidate(name, keys),
            Store::Redis(redis) => redis.invalidate(name, keys).await,
        }
    }
}

/// A value read from the database, to be cached if the store still holds `held` for its key.
struct Fill {
    key: String,
    held: Option<String>,
    json: String,
}

/// Counts a store's failure (a read, fill or invalidation that did not reach it).
fn failed(name: CacheName, operation: &'static str, error: &dyn std::fmt::Display) {
    metrics::counter!("cache_errors_total", "cache" => name.as_str(), "operation" => operation).increment(1);
    tracing::warn!(cache = name.as_str(), operation, %error, "the cache store failed; answering from the database");
}

fn count(name: CacheName, result: &'static str) {
    metrics::counter!("cache_requests_total", "cache" => name.as_str(), "result" => result).increment(1);
}
