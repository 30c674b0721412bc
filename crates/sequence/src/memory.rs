//! [`MemoryStore`]: a [`MetaStore`] in memory, for tests and benchmarks.
//!
//! It behaves like the SQL store (atomic reservations, leases judged by a
//! [`Clock`]) and can be switched off to play a meta data source that is
//! down, slowed down, and asked how often it was called.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use crate::clock::Clock;
use crate::error::StoreError;
use crate::store::{BoxFuture, MetaStore, Reservation, WORKER_IDS};

/// An in-memory meta store shared by every `Sequences` given the same `Arc`.
pub struct MemoryStore {
    clock: Arc<dyn Clock>,
    state: Mutex<State>,
    available: AtomicBool,
    delay_us: AtomicU64,
    reserve_calls: AtomicU64,
}

#[derive(Default)]
struct State {
    next_values: HashMap<String, u64>,
    /// worker id → (owner, last heartbeat in clock ms).
    leases: BTreeMap<u16, (String, u64)>,
}

impl MemoryStore {
    /// An empty store; leases are timed by `clock`.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            clock,
            state: Mutex::new(State::default()),
            available: AtomicBool::new(true),
            delay_us: AtomicU64::new(0),
            reserve_calls: AtomicU64::new(0),
        }
    }

    /// Makes every call fail (`false`) or succeed again (`true`), like a server going down.
    pub fn set_available(&self, available: bool) {
        self.available.store(available, Ordering::SeqCst);
    }

    /// Makes every call take `delay` first (a slow network).
    pub fn set_delay(&self, delay: Duration) {
        let us = u64::try_from(delay.as_micros()).unwrap_or(u64::MAX);
        self.delay_us.store(us, Ordering::SeqCst);
    }

    /// How many times [`MetaStore::reserve`] was called (failed calls included).
    pub fn reserve_calls(&self) -> u64 {
        self.reserve_calls.load(Ordering::SeqCst)
    }

    /// The next value of sequence `name`, if it has a row.
    pub fn next_value(&self, name: &str) -> Option<u64> {
        self.lock().next_values.get(name).copied()
    }

    /// Sets a lease as if `owner` had renewed it at `heartbeat_ms` (for takeover tests).
    pub fn put_lease(&self, worker_id: u16, owner: &str, heartbeat_ms: u64) {
        self.lock()
            .leases
            .insert(worker_id, (owner.to_owned(), heartbeat_ms));
    }

    /// The owner of `worker_id`'s lease, if any.
    pub fn lease_owner(&self, worker_id: u16) -> Option<String> {
        self.lock().leases.get(&worker_id).map(|(o, _)| o.clone())
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn enter(&self) -> Result<(), StoreError> {
        let us = self.delay_us.load(Ordering::SeqCst);
        if us > 0 {
            tokio::time::sleep(Duration::from_micros(us)).await;
        }
        if self.available.load(Ordering::SeqCst) {
            Ok(())
        } else {
            Err(StoreError::new("memory", "unavailable (switched off)"))
        }
    }
}

impl MetaStore for MemoryStore {
    fn source_name(&self) -> &str {
        "memory"
    }

    fn reserve<'a>(
        &'a self,
        r: &'a Reservation,
    ) -> BoxFuture<'a, Result<Option<Range<u64>>, StoreError>> {
        Box::pin(async move {
            self.reserve_calls.fetch_add(1, Ordering::SeqCst);
            self.enter().await?;
            let mut state = self.lock();
            let next = state.next_values.entry(r.name.clone()).or_insert(r.start);
            let first = (*next).max(r.start);
            if first > r.max {
                return Ok(None);
            }
            let end = first.saturating_add(r.count);
            *next = end;
            Ok(Some(first..end))
        })
    }

    fn acquire_worker<'a>(
        &'a self,
        owner: &'a str,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Option<u16>, StoreError>> {
        Box::pin(async move {
            self.enter().await?;
            let now = self.clock.now_ms();
            let timeout = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
            let mut state = self.lock();
            let held = state
                .leases
                .iter()
                .find(|(_, (o, _))| o == owner)
                .map(|(w, _)| *w);
            let expired = || {
                state
                    .leases
                    .iter()
                    .find(|(_, (_, beat))| beat.saturating_add(timeout) < now)
                    .map(|(w, _)| *w)
            };
            let free = || (0..WORKER_IDS).find(|w| !state.leases.contains_key(w));
            let Some(worker) = held.or_else(expired).or_else(free) else {
                return Ok(None);
            };
            state.leases.insert(worker, (owner.to_owned(), now));
            Ok(Some(worker))
        })
    }

    fn renew_worker<'a>(
        &'a self,
        worker_id: u16,
        owner: &'a str,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            self.enter().await?;
            let now = self.clock.now_ms();
            let mut state = self.lock();
            match state.leases.get_mut(&worker_id) {
                Some((o, beat)) if o == owner => {
                    *beat = now;
                    Ok(true)
                }
                _ => Ok(false),
            }
        })
    }

    fn release_worker<'a>(
        &'a self,
        worker_id: u16,
        owner: &'a str,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            self.enter().await?;
            let mut state = self.lock();
            if state
                .leases
                .get(&worker_id)
                .is_some_and(|(o, _)| o == owner)
            {
                state.leases.remove(&worker_id);
            }
            Ok(())
        })
    }
}
