//! One version of the rules with the servers that serve them: what a statement is routed and
//! run on from start to end, while a reload swaps in the next version for later statements.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use backend::{Cluster, ConnectOptions, Pool, Server};
use router::{CacheStats, Router};
use rules::{DataSourceConfig, LogicalNames, ReadsWhenPrimaryDown, Rules};

/// Statements whose plans the router keeps (by fingerprint).
pub const PLAN_CACHE_CAPACITY: usize = 4096;

/// One version of the rules with the servers that serve them.
pub struct Snapshot {
    pub rules: Arc<Rules>,
    /// Each data source's primary and replicas, by data source name.
    pub clusters: BTreeMap<String, Arc<Cluster>>,
    /// Routes statements by these rules; its plan cache lives and dies with the snapshot.
    pub router: Router,
    /// How much of the router's plan-cache hits and misses the metrics counted already.
    pub plan_cache_counted: PlanCacheCounted,
    /// The logical names of the physical ones in backends' error and warning texts.
    pub names: Arc<LogicalNames>,
    /// The version of the slice map in `rules` (0: the rule file's; later ones come from the
    /// meta data source, see the `meta` crate).
    pub slice_map_version: u64,
}

impl Snapshot {
    /// Builds the data sources' servers for `rules`, reusing those of `previous` that are
    /// reached the same way, so a reload keeps warm connections and known health.
    pub fn build(rules: Rules, previous: Option<&Snapshot>) -> Snapshot {
        let reuse = |name: &str, address: &str, ds: &DataSourceConfig| -> Arc<Server> {
            let old = previous.and_then(|p| {
                let old_ds = p.rules.data_sources.get(name)?;
                let cluster = p.clusters.get(name)?;
                if !same_connections(old_ds, ds) {
                    return None;
                }
                cluster
                    .servers()
                    .find(|(s, _)| s.address() == address)
                    .map(|(s, _)| s.clone())
            });
            old.unwrap_or_else(|| {
                let mut options = ConnectOptions::for_data_source(name, ds);
                options.address = address.to_string();
                Server::new(Pool::new(
                    options,
                    ds.pool.max,
                    ds.pool.min_idle,
                    Duration::from_millis(ds.pool.acquire_timeout_ms),
                ))
            })
        };
        let clusters = rules
            .data_sources
            .iter()
            .map(|(name, ds)| {
                let primary = reuse(name, &ds.address, ds);
                let replicas = ds
                    .replicas
                    .iter()
                    .map(|r| (reuse(name, &r.address, ds), r.weight))
                    .collect();
                let cluster = Cluster::new(
                    name.clone(),
                    primary,
                    replicas,
                    rules.replication.max_replica_lag_secs,
                    rules.replication.reads_when_primary_down == ReadsWhenPrimaryDown::Replicas,
                );
                (name.clone(), Arc::new(cluster))
            })
            .collect();
        let rules = Arc::new(rules);
        Snapshot {
            names: Arc::new(LogicalNames::new(&rules)),
            router: Router::new(rules.clone(), PLAN_CACHE_CAPACITY),
            plan_cache_counted: PlanCacheCounted::default(),
            rules,
            clusters,
            slice_map_version: 0,
        }
    }

    /// The primary's pool of the data source that holds every table without a rule.
    pub fn default_pool(&self) -> &Arc<Pool> {
        self.clusters
            .get(&self.rules.schema.default_data_source)
            .expect("validation guarantees the default data source exists")
            .primary()
            .pool()
    }
}

/// How much of one plan cache's hits and misses the metrics count already. A snapshot owns
/// one, as its router owns the cache; the cache starts at zero with each snapshot, the
/// counters do not.
#[derive(Debug, Default)]
pub struct PlanCacheCounted(Mutex<CacheStats>);

impl PlanCacheCounted {
    /// Counts `stats` with `count`, given what was counted before; they are counted now.
    pub fn count(&self, stats: CacheStats, count: impl FnOnce(&CacheStats, &CacheStats)) {
        let mut counted = self.0.lock().unwrap_or_else(|p| p.into_inner());
        count(&counted, &stats);
        *counted = stats;
    }
}

/// Whether connections opened for `a` serve `b` as well (same login, database, limits and
/// TLS).
fn same_connections(a: &DataSourceConfig, b: &DataSourceConfig) -> bool {
    a.user == b.user
        && a.password == b.password
        && a.database == b.database
        && a.pool == b.pool
        && a.tls == b.tls
        && a.tls_ca == b.tls_ca
}
