//! [`MetaStore`]: the few atomic operations the generators need from the meta
//! data source, so the allocation logic never touches SQL.
//!
//! [`crate::MysqlStore`] implements them on a real MySQL/MariaDB database;
//! [`crate::MemoryStore`] in memory, for tests and benchmarks. Each operation
//! must be atomic with respect to every other proxy using the same store.

use std::future::Future;
use std::ops::Range;
use std::pin::Pin;
use std::time::Duration;

use crate::error::StoreError;

/// A boxed future, so the trait can be used as `Arc<dyn MetaStore>`. Store calls are rare
/// (one per block or heartbeat), so the allocation does not matter.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Snowflake worker ids are 10 bits.
pub const WORKER_IDS: u16 = 1024;

/// A request to advance a segment sequence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    /// The sequence.
    pub name: String,
    /// No id below this is handed out (the row is created at `start` if missing).
    pub start: u64,
    /// The configured block size, recorded in the row for operators.
    pub step: u32,
    /// How many ids to reserve now (`step` for a block, more for a range).
    pub count: u64,
    /// The largest id; a sequence whose next value is past it is exhausted.
    pub max: u64,
}

/// The operations a proxy needs from the meta data source.
pub trait MetaStore: Send + Sync {
    /// The data source's name, for messages.
    fn source_name(&self) -> &str;

    /// Atomically reserves `count` consecutive ids: the sequence's next value `v` (at least
    /// `start`) becomes `v + count` and `v..v + count` is returned. `None` when `v > max`
    /// (the range may extend past `max`; the caller trims it). No two calls, from any
    /// proxy, ever get overlapping ranges.
    fn reserve<'a>(
        &'a self,
        request: &'a Reservation,
    ) -> BoxFuture<'a, Result<Option<Range<u64>>, StoreError>>;

    /// Leases a worker id for `owner`: the one it already holds, else one that is free or
    /// whose heartbeat is older than `timeout`. `None` when all [`WORKER_IDS`] are held.
    fn acquire_worker<'a>(
        &'a self,
        owner: &'a str,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Option<u16>, StoreError>>;

    /// Renews `owner`'s lease of `worker_id`; `false` if someone else holds it now.
    fn renew_worker<'a>(
        &'a self,
        worker_id: u16,
        owner: &'a str,
    ) -> BoxFuture<'a, Result<bool, StoreError>>;

    /// Gives the lease up (at shutdown), if `owner` still holds it.
    fn release_worker<'a>(
        &'a self,
        worker_id: u16,
        owner: &'a str,
    ) -> BoxFuture<'a, Result<(), StoreError>>;
}
