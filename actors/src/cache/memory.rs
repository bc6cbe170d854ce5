//! The in-memory store: one moka cache per node, entries expiring `cache.ttl_seconds` after they were
//! written, at most `cache.max_entries` of them.

use std::sync::Arc;
use std::time::Duration;

use moka::ops::compute::Op;
use moka::sync::Cache as Moka;

use super::{CacheName, Fill, Slot, is_tombstone, tombstone};
use crate::config::CacheSettings;

pub struct MemoryStore {
    entries: Moka<(CacheName, String), Arc<str>>,
}

impl MemoryStore {
    pub fn new(settings: &CacheSettings) -> MemoryStore {
        MemoryStore {
            entries: Moka::builder()
                .max_capacity(settings.max_entries)
                .time_to_live(Duration::from_secs(settings.ttl_seconds))
                .build(),
        }
    }

    pub fn lookup(&self, name: CacheName, keys: &[String]) -> Vec<Slot> {
        keys.iter()
            .map(|key| match self.entries.get(&(name, key.clone())) {
                Some(raw) if is_tombstone(&raw) => Slot::Miss(Some(raw.to_string())),
                Some(raw) => Slot::Hit(raw.to_string()),
                None => Slot::Miss(None),
            })
            .collect()
    }

    /// Puts each value whose key still holds what its reader saw (a write's tombstone stops it).
    pub fn fill(&self, name: CacheName, fills: Vec<Fill>) {
        for fill in fills {
            let Fill { key, held, json } = fill;
            self.entries.entry((name, key)).and_compute_with(|current| {
                let current = current.map(|entry| entry.into_value());
                if current.as_deref() == held.as_deref() {
                    Op::Put(Arc::from(json))
                } else {
                    Op::Nop
                }
            });
        }
    }

    pub fn invalidate(&self, name: CacheName, keys: &[String]) {
        for key in keys {
            self.entries.insert((name, key.clone()), Arc::from(tombstone()));
        }
    }
}
