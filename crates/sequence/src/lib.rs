//! Global unique ids for dbmesh: sequences that replace AUTO_INCREMENT when one
//! logical table is split over many databases and many proxies.
//!
//! [`Sequences`] is built from the rule file's `[sequences.<name>]`
//! ([`rules::SequenceRule`]) and answers `next` / `next_n` / `reserve_range`
//! by name, and [`Sequences::for_column`] tells the write path which sequence
//! fills a column an INSERT omits. Two generators:
//!
//! - [`Segment`] (`segment`): consecutive ids from blocks reserved atomically in
//!   the meta data source, double-buffered so steady-state ids come from memory.
//! - [`Snowflake`] (`snowflake`): 64-bit time-ordered ids (41 bits of ms, 10 bits
//!   of worker id, 12 bits of counter); worker ids are fixed in the rule file or
//!   leased from the meta data source with heartbeats (`lease`).
//!
//! State that outlives a proxy lives behind [`MetaStore`]: [`MysqlStore`] on the
//! rule file's `proxy.meta_data_source`, [`MemoryStore`] in tests and benchmarks.
//! Time comes from a [`Clock`], so tests can step it backwards. Errors carry the
//! MySQL code and SQLSTATE a client should get ([`SequenceError::code`]).
//!
//! ```
//! use std::sync::Arc;
//! use protocol::ClientError;
//! use sequence::{MemoryStore, MetaStore, SequenceOptions, Sequences, SystemClock};
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let rules = rules::parse_str(r#"
//!     [proxy]
//!     meta_data_source = "ds_0"
//!     [[users]]
//!     name = "app"
//!     [schema]
//!     name = "bank"
//!     default_data_source = "ds_0"
//!     [data_sources.ds_0]
//!     address = "127.0.0.1:3306"
//!     user = "root"
//!     database = "bank"
//!     [sequences.payment_seq]
//!     kind = "segment"
//!     table = "payment"
//!     column = "payment_id"
//!     "#, std::path::Path::new("bank.toml"))?;
//! // A real proxy calls `Sequences::start(&rules, options)`, which uses the meta data source.
//! let store: Arc<dyn MetaStore> = Arc::new(MemoryStore::new(Arc::new(SystemClock)));
//! let seqs = Sequences::with_store(rules.sequences.values(), Some(store), SequenceOptions::default()).await?;
//! assert_eq!(seqs.for_column("payment", "payment_id"), Some("payment_seq"));
//! assert_eq!(seqs.next("payment_seq").await?, 1);
//! assert_eq!(seqs.next_n("payment_seq", 3).await?, [2, 3, 4]);
//! assert_eq!(seqs.next("nope").await.unwrap_err().code(), 4091);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```

mod clock;
mod error;
mod lease;
mod memory;
mod mysql;
mod segment;
mod snowflake;
mod store;

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use rules::{ColumnRef, Rules, SequenceKind, SequenceRule};
use tokio::task::JoinHandle;

pub use clock::{Clock, ManualClock, SystemClock};
pub use error::{SequenceError, StoreError, StoreFailure};
pub use lease::LeaseOptions;
pub use memory::MemoryStore;
pub use mysql::MysqlStore;
pub use segment::{RetryPolicy, Segment, MAX_IDS_PER_CALL};
pub use snowflake::{
    decode as decode_snowflake, Snowflake, SnowflakeParts, COUNTER_BITS, TIMESTAMP_BITS,
    WORKER_BITS,
};
pub use store::{BoxFuture, MetaStore, Reservation, WORKER_IDS};

use lease::Lease;
use snowflake::Worker;

/// How [`Sequences`] talks to the meta data source and keeps time.
#[derive(Clone)]
pub struct SequenceOptions {
    /// The clock snowflake ids and leases use. Default [`SystemClock`].
    pub clock: Arc<dyn Clock>,
    /// Retries of block reservations.
    pub retry: RetryPolicy,
    /// Worker-id lease timing.
    pub lease: LeaseOptions,
    /// This proxy's name in `dbmesh_worker_lease.owner` (at most 128 characters). Default
    /// `<host>/<pid>/<random>`, unique per process.
    pub owner: String,
    /// Connect timeout towards the meta data source. Default 2 s.
    pub connect_timeout: Duration,
    /// Per-statement timeout towards the meta data source. Default 2 s.
    pub query_timeout: Duration,
}

impl Default for SequenceOptions {
    fn default() -> Self {
        Self {
            clock: Arc::new(SystemClock),
            retry: RetryPolicy::default(),
            lease: LeaseOptions::default(),
            owner: default_owner(),
            connect_timeout: Duration::from_secs(2),
            query_timeout: Duration::from_secs(2),
        }
    }
}

impl std::fmt::Debug for SequenceOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SequenceOptions")
            .field("retry", &self.retry)
            .field("lease", &self.lease)
            .field("owner", &self.owner)
            .field("connect_timeout", &self.connect_timeout)
            .field("query_timeout", &self.query_timeout)
            .finish_non_exhaustive()
    }
}

/// `<host>/<pid>/<random>`: distinct for every process, readable by an operator.
fn default_owner() -> String {
    use std::hash::{BuildHasher, Hasher};
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "dbmesh".to_owned());
    let host: String = host.chars().take(80).collect();
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    format!("{host}/{}/{:08x}", std::process::id(), random as u32)
}

enum Generator {
    Segment(Segment),
    Snowflake(Snowflake),
}

/// Every sequence of a rule file, ready to hand out ids.
///
/// Dropping it stops the lease heartbeat without releasing the lease (like a crash: the
/// lease expires); [`Sequences::shutdown`] releases it.
pub struct Sequences {
    generators: HashMap<String, Generator>,
    /// Columns filled by a sequence, with the sequence's name (few: scanned, no allocation).
    columns: Vec<(ColumnRef, String)>,
    lease: Option<Arc<Lease>>,
    heartbeat: Option<JoinHandle<()>>,
    /// The store on the meta data source when it is the rule file's (see [`Self::follow`]).
    mysql: Option<Arc<MysqlStore>>,
}

impl Sequences {
    /// The sequences of `rules`, on its `proxy.meta_data_source`. Leases a worker id now if
    /// a snowflake sequence needs one; if the meta data source does not answer, the proxy
    /// still starts, those sequences answer with an error and the lease is retried in the
    /// background. Must run on a tokio runtime.
    pub async fn start(rules: &Rules, options: SequenceOptions) -> Result<Self, SequenceError> {
        let mysql = MysqlStore::from_rules(rules, options.connect_timeout, options.query_timeout)
            .map(Arc::new);
        let store = mysql.clone().map(|s| s as Arc<dyn MetaStore>);
        let mut sequences = Self::with_store(rules.sequences.values(), store, options).await?;
        sequences.mysql = mysql;
        Ok(sequences)
    }

    /// Follows the meta data source of `rules` (a reload, or its primary switched): the next
    /// block reservation and lease heartbeat go to the server the rules name now.
    pub fn follow(&self, rules: &Rules) {
        if let Some(store) = &self.mysql {
            store.follow(rules);
        }
    }

    /// Like [`Self::start`] with any store (e.g. a [`MemoryStore`]); `store` may be `None`
    /// only if no sequence keeps state in the meta data source.
    pub async fn with_store<'a>(
        sequences: impl IntoIterator<Item = &'a SequenceRule>,
        store: Option<Arc<dyn MetaStore>>,
        options: SequenceOptions,
    ) -> Result<Self, SequenceError> {
        let mut generators = HashMap::new();
        let mut columns = Vec::new();
        let mut lease: Option<Arc<Lease>> = None;
        for rule in sequences {
            let name = rule.name.as_str();
            let needs_store = || {
                store.clone().ok_or_else(|| {
                    SequenceError::Config(format!(
                        "sequence '{name}' needs the meta data source (proxy.meta_data_source)"
                    ))
                })
            };
            let generator = match &rule.kind {
                SequenceKind::Segment(seg) => {
                    Generator::Segment(Segment::new(name, seg, needs_store()?, options.retry))
                }
                SequenceKind::Snowflake(flake) => {
                    let worker = match flake.worker_id {
                        Some(id) => Worker::Fixed(id),
                        None => {
                            let lease = match &lease {
                                Some(l) => Arc::clone(l),
                                None => {
                                    let l = Arc::new(Lease::new(
                                        needs_store()?,
                                        options.owner.clone(),
                                        options.lease,
                                        Arc::clone(&options.clock),
                                    ));
                                    lease = Some(Arc::clone(&l));
                                    l
                                }
                            };
                            Worker::Leased(lease.cell())
                        }
                    };
                    Generator::Snowflake(Snowflake::with_worker(
                        name,
                        flake,
                        worker,
                        Arc::clone(&options.clock),
                    ))
                }
            };
            if let Some(fills) = &rule.fills {
                columns.push((fills.clone(), rule.name.clone()));
            }
            generators.insert(rule.name.clone(), generator);
        }
        let heartbeat = match &lease {
            Some(l) => {
                l.tick().await;
                Some(tokio::spawn(Arc::clone(l).run()))
            }
            None => None,
        };
        Ok(Self {
            generators,
            columns,
            lease,
            heartbeat,
            mysql: None,
        })
    }

    fn generator(&self, name: &str) -> Result<&Generator, SequenceError> {
        self.generators
            .get(name)
            .or_else(|| {
                self.generators
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(name))
                    .map(|(_, g)| g)
            })
            .ok_or_else(|| SequenceError::Unknown {
                name: name.to_owned(),
            })
    }

    /// The next id of sequence `name` (matched case-insensitively).
    pub async fn next(&self, name: &str) -> Result<u64, SequenceError> {
        match self.generator(name)? {
            Generator::Segment(s) => s.next().await,
            Generator::Snowflake(s) => s.next().await,
        }
    }

    /// `n` strictly increasing ids of sequence `name` (1 to [`MAX_IDS_PER_CALL`]), e.g.
    /// one per row of a multi-row INSERT.
    pub async fn next_n(&self, name: &str, n: usize) -> Result<Vec<u64>, SequenceError> {
        match self.generator(name)? {
            Generator::Segment(s) => s.next_n(n).await,
            Generator::Snowflake(s) => {
                if n == 0 || n as u64 > MAX_IDS_PER_CALL {
                    return Err(SequenceError::BadCount {
                        name: s.name().to_owned(),
                        count: n as u64,
                        limit: MAX_IDS_PER_CALL,
                    });
                }
                let mut ids = Vec::with_capacity(n);
                for _ in 0..n {
                    ids.push(s.next().await?);
                }
                Ok(ids)
            }
        }
    }

    /// The range form, for batch loaders: `n` consecutive ids of segment sequence `name`
    /// reserved in one round trip to the meta data source (see [`Segment::reserve_range`]).
    /// Snowflake ids are not consecutive: [`SequenceError::NotSupported`].
    pub async fn reserve_range(&self, name: &str, n: u64) -> Result<Range<u64>, SequenceError> {
        match self.generator(name)? {
            Generator::Segment(s) => s.reserve_range(n).await,
            Generator::Snowflake(s) => Err(SequenceError::NotSupported {
                name: s.name().to_owned(),
                what: "reserving a range of consecutive ids",
                kind: "snowflake",
            }),
        }
    }

    /// The sequence filling `column` of logical table `table` (both matched
    /// case-insensitively), if any.
    pub fn for_column(&self, table: &str, column: &str) -> Option<&str> {
        self.columns
            .iter()
            .find(|(c, _)| {
                c.table.eq_ignore_ascii_case(table) && c.column.eq_ignore_ascii_case(column)
            })
            .map(|(_, name)| name.as_str())
    }

    /// The sequence names, as written in the rule file.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.generators.keys().map(String::as_str)
    }

    /// The worker id this proxy holds a lease on, if any (valid or not).
    pub fn worker_id(&self) -> Option<u16> {
        self.lease.as_ref().and_then(|l| l.cell().worker())
    }

    /// Stops the heartbeat and releases the worker-id lease, so another proxy can take the
    /// id at once. Snowflake sequences with a leased worker id stop issuing ids.
    pub async fn shutdown(&self) {
        if let Some(h) = &self.heartbeat {
            h.abort();
        }
        if let Some(l) = &self.lease {
            l.release().await;
        }
    }
}

impl Drop for Sequences {
    fn drop(&mut self) {
        if let Some(h) = &self.heartbeat {
            h.abort();
        }
    }
}
