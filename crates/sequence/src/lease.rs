//! Worker-id leases: how proxies running side by side get distinct snowflake
//! worker ids from the meta data source.
//!
//! A proxy takes a worker id whose lease has expired or that is free
//! ([`MetaStore::acquire_worker`]), then renews it every
//! [`LeaseOptions::heartbeat`] in a background task. Each successful renewal
//! makes the id valid for two thirds of [`LeaseOptions::timeout`], counted on
//! the [`Clock`] from when the renewal was sent; the snowflake generators read
//! that deadline with every id ([`LeaseCell`]) and stop issuing ids once it
//! passes, before any other proxy may take the id over (after the full
//! timeout, by the meta database's clock). The remaining third absorbs clock
//! differences between proxies and the database. A lease found taken over is
//! dropped at once and a new one acquired.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::clock::Clock;
use crate::store::MetaStore;

/// Timing of worker-id leases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseOptions {
    /// A lease not renewed for this long may be taken over by another proxy. Default 30 s.
    pub timeout: Duration,
    /// How often the lease is renewed. Default 5 s.
    pub heartbeat: Duration,
}

impl Default for LeaseOptions {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(30),
            heartbeat: Duration::from_secs(5),
        }
    }
}

impl LeaseOptions {
    /// How long after a renewal was sent ids may still be issued: two thirds of the timeout.
    pub fn validity(&self) -> Duration {
        self.timeout * 2 / 3
    }
}

/// The current worker id and until when it may be used, in one atomic word so the
/// generators read both consistently: `valid_until_ms << 16 | worker_id`, 0 for none.
#[derive(Debug, Default)]
pub(crate) struct LeaseCell {
    packed: AtomicU64,
    /// Why there is no valid lease, for error messages (slow path only).
    problem: Mutex<String>,
}

impl LeaseCell {
    /// The worker id valid at clock time `now_ms`, or why there is none.
    pub(crate) fn worker_at(&self, now_ms: u64) -> Result<u16, String> {
        let packed = self.packed.load(Ordering::Acquire);
        let valid_until = packed >> 16;
        if packed != 0 && now_ms < valid_until {
            // The low 16 bits hold a worker id below 1024.
            return Ok((packed & 0x3ff) as u16);
        }
        let problem = self
            .problem
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        Err(if packed == 0 {
            format!("no worker-id lease yet ({problem})")
        } else {
            format!(
                "the lease of worker id {} was not renewed in time ({problem})",
                packed & 0x3ff
            )
        })
    }

    /// The worker id currently held, valid or not.
    pub(crate) fn worker(&self) -> Option<u16> {
        let packed = self.packed.load(Ordering::Acquire);
        (packed != 0).then_some((packed & 0x3ff) as u16)
    }

    fn set(&self, worker_id: u16, valid_until_ms: u64) {
        self.packed.store(
            (valid_until_ms << 16) | u64::from(worker_id & 0x3ff),
            Ordering::Release,
        );
    }

    fn clear(&self) {
        self.packed.store(0, Ordering::Release);
    }

    fn note(&self, problem: String) {
        *self.problem.lock().unwrap_or_else(PoisonError::into_inner) = problem;
    }
}

/// One proxy's worker-id lease.
pub(crate) struct Lease {
    store: Arc<dyn MetaStore>,
    owner: String,
    options: LeaseOptions,
    clock: Arc<dyn Clock>,
    cell: Arc<LeaseCell>,
}

impl Lease {
    pub(crate) fn new(
        store: Arc<dyn MetaStore>,
        owner: String,
        options: LeaseOptions,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let cell = Arc::new(LeaseCell::default());
        cell.note("not acquired yet".to_owned());
        Self {
            store,
            owner,
            options,
            clock,
            cell,
        }
    }

    pub(crate) fn cell(&self) -> Arc<LeaseCell> {
        Arc::clone(&self.cell)
    }

    /// Renews the lease held, or acquires one; records the outcome in the cell.
    pub(crate) async fn tick(&self) {
        let sent_at = self.clock.now_ms();
        let valid_ms = u64::try_from(self.options.validity().as_millis()).unwrap_or(u64::MAX);
        let valid_until = sent_at.saturating_add(valid_ms);
        if let Some(worker) = self.cell.worker() {
            match self.store.renew_worker(worker, &self.owner).await {
                Ok(true) => {
                    self.cell.set(worker, valid_until);
                    return;
                }
                Ok(false) => {
                    tracing::warn!(
                        worker,
                        owner = %self.owner,
                        "worker-id lease was taken over; acquiring another"
                    );
                    self.cell.clear();
                    self.cell
                        .note(format!("the lease of worker id {worker} was taken over"));
                }
                Err(e) => {
                    // Keep the id until its deadline passes; the next heartbeat tries again.
                    tracing::warn!(worker, error = %e, "cannot renew worker-id lease");
                    self.cell.note(e.to_string());
                    return;
                }
            }
        }
        match self
            .store
            .acquire_worker(&self.owner, self.options.timeout)
            .await
        {
            Ok(Some(worker)) => {
                tracing::info!(worker, owner = %self.owner, "leased snowflake worker id");
                self.cell.set(worker, valid_until);
            }
            Ok(None) => {
                let msg = "all 1024 worker ids are leased by live proxies".to_owned();
                tracing::warn!("{msg}");
                self.cell.note(msg);
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot lease a worker id");
                self.cell.note(e.to_string());
            }
        }
    }

    /// Renews forever; without a lease, retries at least every second.
    pub(crate) async fn run(self: Arc<Self>) {
        loop {
            let pause = if self.cell.worker().is_some() {
                self.options.heartbeat
            } else {
                self.options.heartbeat.min(Duration::from_secs(1))
            };
            tokio::time::sleep(pause).await;
            self.tick().await;
        }
    }

    /// Gives the lease up; ids stop at once.
    pub(crate) async fn release(&self) {
        if let Some(worker) = self.cell.worker() {
            self.cell.clear();
            self.cell.note("released at shutdown".to_owned());
            if let Err(e) = self.store.release_worker(worker, &self.owner).await {
                tracing::warn!(worker, error = %e, "cannot release worker-id lease");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::error::SequenceError;
    use crate::memory::MemoryStore;
    use crate::snowflake::{decode, Snowflake, Worker};

    const T0: u64 = 1_800_000_000_000;
    const EPOCH: u64 = 1_704_067_200_000;

    fn options() -> LeaseOptions {
        LeaseOptions {
            timeout: Duration::from_secs(30),
            heartbeat: Duration::from_secs(5),
        }
    }

    struct World {
        clock: Arc<ManualClock>,
        store: Arc<MemoryStore>,
    }

    impl World {
        fn new() -> Self {
            let clock = Arc::new(ManualClock::new(T0));
            let store = Arc::new(MemoryStore::new(clock.clone()));
            Self { clock, store }
        }

        fn lease(&self, owner: &str) -> Lease {
            Lease::new(
                self.store.clone(),
                owner.into(),
                options(),
                self.clock.clone(),
            )
        }
    }

    fn snowflake(lease: &Lease, clock: &Arc<ManualClock>) -> Snowflake {
        let rule = rules::SnowflakeRule {
            worker_id: None,
            epoch_ms: EPOCH,
            max_clock_backward_ms: 5,
        };
        Snowflake::with_worker("s", &rule, Worker::Leased(lease.cell()), clock.clone())
    }

    #[tokio::test]
    async fn four_proxies_get_distinct_worker_ids() {
        let w = World::new();
        let mut ids = Vec::new();
        for p in 0..4 {
            let lease = w.lease(&format!("proxy-{p}"));
            lease.tick().await;
            ids.push(lease.cell().worker().unwrap());
        }
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), 4);
    }

    #[tokio::test]
    async fn no_ids_before_a_lease_nor_after_it_lapses() {
        let w = World::new();
        let lease = w.lease("a");
        let s = snowflake(&lease, &w.clock);
        let err = s.next().await.unwrap_err();
        assert!(
            matches!(&err, SequenceError::NoWorkerId { reason, .. } if reason.contains("no worker-id lease yet")),
            "{err}"
        );
        lease.tick().await;
        let worker = lease.cell().worker().unwrap();
        let id = s.next().await.unwrap();
        assert_eq!(decode(id, EPOCH).worker_id, worker);
        // The meta data source goes down: renewals fail, ids go on until 2/3 of the timeout.
        w.store.set_available(false);
        w.clock.advance(5_000);
        lease.tick().await;
        w.clock.advance(14_999);
        assert!(s.next().await.is_ok());
        w.clock.advance(1);
        let err = s.next().await.unwrap_err();
        assert!(
            matches!(&err, SequenceError::NoWorkerId { reason, .. }
                if reason.contains("not renewed in time") && reason.contains("unavailable")),
            "{err}"
        );
        // Back up: the renewal succeeds (nobody took the id over) and ids resume.
        w.store.set_available(true);
        lease.tick().await;
        assert_eq!(lease.cell().worker(), Some(worker));
        assert!(s.next().await.unwrap() > id);
    }

    #[tokio::test]
    async fn an_expired_lease_is_taken_over_and_the_old_owner_moves_on() {
        let w = World::new();
        let a = w.lease("a");
        a.tick().await;
        let taken = a.cell().worker().unwrap();
        let sa = snowflake(&a, &w.clock);
        sa.next().await.unwrap();
        // `a` stalls for longer than the timeout; `b` takes its id over.
        w.clock.advance(30_001);
        assert!(sa.next().await.is_err(), "a stopped before the takeover");
        let b = w.lease("b");
        b.tick().await;
        assert_eq!(b.cell().worker(), Some(taken));
        assert_eq!(w.store.lease_owner(taken).as_deref(), Some("b"));
        // `a` wakes up, finds its lease gone and leases another id.
        a.tick().await;
        let moved = a.cell().worker().unwrap();
        assert_ne!(moved, taken);
        let id = sa.next().await.unwrap();
        assert_eq!(decode(id, EPOCH).worker_id, moved);
    }

    #[tokio::test]
    async fn a_live_lease_is_not_taken_over() {
        let w = World::new();
        w.store.put_lease(0, "other", T0 - 29_000);
        let a = w.lease("a");
        a.tick().await;
        assert_eq!(a.cell().worker(), Some(1));
        // All 1024 held by live proxies: no id, a clear reason.
        for id in 0..crate::store::WORKER_IDS {
            w.store.put_lease(id, "other", T0);
        }
        let b = w.lease("b");
        b.tick().await;
        let s = snowflake(&b, &w.clock);
        let err = s.next().await.unwrap_err();
        assert!(err.to_string().contains("all 1024 worker ids"), "{err}");
    }

    #[tokio::test]
    async fn release_frees_the_id_at_once() {
        let w = World::new();
        let a = w.lease("a");
        a.tick().await;
        let id = a.cell().worker().unwrap();
        let s = snowflake(&a, &w.clock);
        a.release().await;
        assert!(s.next().await.is_err());
        assert_eq!(w.store.lease_owner(id), None);
        let b = w.lease("b");
        b.tick().await;
        assert_eq!(b.cell().worker(), Some(id));
    }
}
