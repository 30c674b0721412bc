//! The plan cache: fingerprint text → plan template, bounded, CLOCK eviction.
//!
//! Lookups take a shared lock and only set an atomic "referenced" bit, so
//! sessions routing cached statements do not serialise on the cache; inserts
//! (misses) take the exclusive lock and evict with the CLOCK hand, which gives
//! every entry a second chance if it was used since the hand last passed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::RwLock;

struct Slot<V> {
    key: String,
    value: V,
    referenced: AtomicBool,
}

struct Inner<V> {
    map: HashMap<String, usize>,
    slots: Vec<Slot<V>>,
    hand: usize,
}

/// A bounded map with CLOCK (second-chance) eviction.
pub(crate) struct ClockCache<V> {
    inner: RwLock<Inner<V>>,
    capacity: usize,
}

impl<V: Clone> ClockCache<V> {
    /// A cache holding at most `capacity` entries; 0 disables it.
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            inner: RwLock::new(Inner {
                map: HashMap::new(),
                slots: Vec::new(),
                hand: 0,
            }),
            capacity,
        }
    }

    /// The value for `key`, marking it recently used.
    pub(crate) fn get(&self, key: &str) -> Option<V> {
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        let &i = inner.map.get(key)?;
        let slot = inner.slots.get(i)?;
        slot.referenced.store(true, Ordering::Relaxed);
        Some(slot.value.clone())
    }

    /// Stores `value` under `key`, evicting an entry not used recently when full.
    pub(crate) fn insert(&self, key: String, value: V) {
        if self.capacity == 0 {
            return;
        }
        let mut guard = self.inner.write().unwrap_or_else(|e| e.into_inner());
        let inner = &mut *guard;
        if let Some(&i) = inner.map.get(&key) {
            if let Some(slot) = inner.slots.get_mut(i) {
                slot.value = value;
            }
            return;
        }
        let slot = Slot {
            key: key.clone(),
            value,
            referenced: AtomicBool::new(false),
        };
        if inner.slots.len() < self.capacity {
            inner.slots.push(slot);
            inner.map.insert(key, inner.slots.len() - 1);
            return;
        }
        // Advance the hand, clearing referenced bits, to the first entry not used since.
        loop {
            let n = inner.slots.len();
            let hand = inner.hand % n;
            inner.hand = (hand + 1) % n;
            if inner.slots[hand].referenced.swap(false, Ordering::Relaxed) {
                continue;
            }
            let old = std::mem::replace(&mut inner.slots[hand], slot);
            inner.map.remove(&old.key);
            inner.map.insert(key, hand);
            return;
        }
    }

    /// Entries held.
    pub(crate) fn len(&self) -> usize {
        self.inner
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .slots
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_with_second_chance() {
        let c = ClockCache::new(2);
        c.insert("a".into(), 1);
        c.insert("b".into(), 2);
        assert_eq!(c.get("a"), Some(1)); // a gets a second chance
        c.insert("c".into(), 3); // evicts b
        assert_eq!(c.len(), 2);
        assert_eq!(c.get("b"), None);
        assert_eq!(c.get("a"), Some(1));
        assert_eq!(c.get("c"), Some(3));
    }

    #[test]
    fn zero_capacity_holds_nothing() {
        let c = ClockCache::new(0);
        c.insert("a".into(), 1);
        assert_eq!(c.get("a"), None);
        assert_eq!(c.len(), 0);
    }
}
