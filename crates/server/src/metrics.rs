//! Prometheus metrics of the frontend. One `Metrics` value is created by the binary and passed
//! down explicitly (no process-wide statics), so tests can run many proxies in one process.
//!
//! Every family a dashboard or an alert may query has its series from start: `rate()` of a
//! series that appears only with its first event misses that event, and an alert on it
//! cannot fire. deploy/grafana and deploy/prometheus query only such families (a test checks
//! their names against a running proxy's).

use std::sync::{Mutex, MutexGuard};

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};
use protocol::constants::com;

use executor::{CancelReason, MergeKind, PinReason, Pins, PlanCacheCounted};

/// The fingerprints the query digest keeps (about 1 KB each); statements of others are
/// counted in its `<other>` row.
const DIGEST_FINGERPRINTS: usize = 1000;

pub struct Metrics {
    registry: Registry,
    pub client_connections: IntGauge,
    pub client_connections_total: IntCounter,
    pub client_connections_rejected: IntCounter,
    /// Logins closed unfinished because their `login_timeout_ms` passed.
    pub client_logins_timed_out: IntCounter,
    /// Logins closed unfinished to make room under `max_authenticating`.
    pub client_logins_evicted: IntCounter,
    /// Statements by command, indexed by command byte so the hot path does no label lookup.
    statements: Vec<IntCounter>,
    errors: IntCounterVec,
    pub statement_seconds: Histogram,
    /// GROUP_CONCAT results the proxy's merge cut at `group_concat_max_len` (warning 1260).
    pub group_concat_cuts: IntCounter,
    /// Statements by fingerprint (`SHOW DBMESH DIGEST`, `GET /digest`).
    pub digest: crate::digest::Digest,
    backend_connections: IntGaugeVec,
    pub auth_failures: IntCounter,
    plan_cache_hits: IntCounter,
    plan_cache_misses: IntCounter,
    plan_cache_entries: IntGauge,
    /// Sessions keeping their backend connections now, indexed like `PinReason::ALL`.
    session_pinned: Vec<IntGauge>,
    /// Per server (primary or replica): state, lag, statements, errors, connections.
    server_up: IntGaugeVec,
    server_lag: IntGaugeVec,
    server_stale: IntGaugeVec,
    server_queries: IntCounterVec,
    server_errors: IntCounterVec,
    server_connections: IntGaugeVec,
    broadcast_divergences: IntCounterVec,
    table_physical_missing: IntGaugeVec,
    /// Backend statements interrupted (`KILL QUERY`), indexed like `CancelReason::ALL`.
    backend_cancellations: Vec<IntCounter>,
    /// Rows moved to another shard by UPDATEs of their sharding column.
    rows_moved: IntCounter,
    /// Statements merged across shards, indexed like `MergeKind::ALL`.
    merged_statements: Vec<IntCounter>,
    /// Statements the slow log logged (`proxy.slow_statement_ms`).
    pub slow_statements: IntCounter,
    /// Picks the query log's statements (`proxy.query_log_every`).
    pub query_log: crate::query_log::Sampler,
    rules_version: IntGauge,
    rules_info: IntGaugeVec,
    /// Each data source's recorded primary epoch (0: the rule file's primary).
    primary_epoch: IntGaugeVec,
    /// 1 while a data source has more than one writable server (`follow_topology`).
    split_brain: IntGaugeVec,
    /// The rule file in force, as `/health` shows it.
    rules_in_force: Mutex<RulesInForce>,
    /// Held while the per-server families are rebuilt and while they are rendered, so a
    /// scrape never sees them half rebuilt.
    servers_refresh: Mutex<()>,
}

/// The labels identifying one server.
const SERVER_LABELS: [&str; 3] = ["data_source", "role", "address"];

/// The error codes whose series exist from start: those the proxy sends of its own (its
/// refusals and failures: router, merge, sequence, XA, login, protocol and pool errors), and
/// the backend errors an alert watches (1205 lock wait timeout, 1213 deadlock). Other backend
/// errors pass through with their codes and get a series when first sent.
/// Each code has one SQLSTATE; docs/operations.md lists both.
pub const ERROR_CODES: [u16; 38] = [
    1038, 1040, 1043, 1045, 1047, 1048, 1049, 1064, 1065, 1094, 1095, 1105, 1136, 1146, 1153, 1156,
    1175, 1180, 1205, 1210, 1213, 1227, 1235, 1243, 1251, 1295, 1364, 1399, 1402, 1461, 1614, 1690,
    1927, 1969, 3159, 4031, 4084, 4091,
];

/// The rule file in force: how many files were applied since start (1 for the first) and
/// the SHA-256 of its text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RulesInForce {
    pub version: u64,
    pub sha256: String,
}

impl Metrics {
    /// The registry `GET /metrics` reads, for other components' metrics (XA).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    pub fn new() -> Metrics {
        let registry = Registry::new();
        let client_connections =
            IntGauge::new("dbmesh_client_connections", "Client connections open now")
                .expect("valid metric");
        let client_connections_total = IntCounter::new(
            "dbmesh_client_connections_total",
            "Client connections accepted",
        )
        .expect("valid metric");
        let client_connections_rejected = IntCounter::new(
            "dbmesh_client_connections_rejected_total",
            "Client connections refused because max_connections sessions were logged in",
        )
        .expect("valid metric");
        let logins_cut = IntCounterVec::new(
            Opts::new(
                "dbmesh_client_logins_cut_total",
                "Client connections closed before they finished logging in: reason=\"timeout\" \
                 (login_timeout_ms passed), reason=\"evicted\" (max_authenticating reached)",
            ),
            &["reason"],
        )
        .expect("valid metric");
        let client_logins_timed_out = logins_cut.with_label_values(&["timeout"]);
        let client_logins_evicted = logins_cut.with_label_values(&["evicted"]);
        let statements_vec = IntCounterVec::new(
            Opts::new("dbmesh_statements_total", "Client commands by command"),
            &["command"],
        )
        .expect("valid metric");
        let statements = (0u8..=0xff)
            .map(|c| statements_vec.with_label_values(&[com::name(c)]))
            .collect();
        let errors = IntCounterVec::new(
            Opts::new(
                "dbmesh_errors_total",
                "Error packets sent to clients, by MySQL error code",
            ),
            &["code"],
        )
        .expect("valid metric");
        let group_concat_cuts = IntCounter::new(
            "dbmesh_group_concat_cuts_total",
            "GROUP_CONCAT results merged across shards that were cut at group_concat_max_len \
             (warning 1260)",
        )
        .expect("valid metric");
        let statement_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "dbmesh_statement_duration_seconds",
                "Time from a command's arrival to the end of its response",
            )
            .buckets(vec![
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                1.0, 2.5, 10.0,
            ]),
        )
        .expect("valid metric");
        let backend_connections = IntGaugeVec::new(
            Opts::new(
                "dbmesh_backend_connections",
                "Backend connections by data source and state",
            ),
            &["data_source", "state"],
        )
        .expect("valid metric");
        let auth_failures = IntCounter::new("dbmesh_auth_failures_total", "Failed client logins")
            .expect("valid metric");
        let plan_cache_hits = IntCounter::new(
            "dbmesh_plan_cache_hits_total",
            "Statements routed from a cached plan template",
        )
        .expect("valid metric");
        let plan_cache_misses = IntCounter::new(
            "dbmesh_plan_cache_misses_total",
            "Statements parsed and planned because no cached template matched",
        )
        .expect("valid metric");
        let plan_cache_entries = IntGauge::new(
            "dbmesh_plan_cache_entries",
            "Plan templates the current rules' cache holds",
        )
        .expect("valid metric");
        let session_pinned_vec = IntGaugeVec::new(
            Opts::new(
                "dbmesh_session_pinned",
                "Sessions keeping their backend connections between statements, by reason",
            ),
            &["reason"],
        )
        .expect("valid metric");
        let session_pinned = PinReason::ALL
            .iter()
            .map(|r| session_pinned_vec.with_label_values(&[r.label()]))
            .collect();
        let server_gauge = |name: &str, help: &str, extra: &[&str]| {
            let labels: Vec<&str> = SERVER_LABELS.iter().chain(extra).copied().collect();
            IntGaugeVec::new(Opts::new(name, help), &labels).expect("valid metric")
        };
        let server_counter = |name: &str, help: &str| {
            IntCounterVec::new(Opts::new(name, help), &SERVER_LABELS).expect("valid metric")
        };
        let server_up = server_gauge(
            "dbmesh_backend_up",
            "1 while the proxy uses the server: a primary that passed its last check and use, a \
             replica that may serve reads (replicating within max_replica_lag_secs, or serving \
             without its primary as the rules allow); 0 otherwise. Only the servers of the \
             rules in force (a primary switched away from has no series)",
            &[],
        );
        let server_lag = server_gauge(
            "dbmesh_backend_replication_lag_seconds",
            "Replicas: Seconds_Behind_Master at the last check; -1 when replication is stopped or unknown",
            &[],
        );
        let server_stale = server_gauge(
            "dbmesh_backend_replica_stale_seconds",
            "Replicas serving reads without their unreachable primary: seconds since it was lost (their data is at least that old); -1 otherwise",
            &[],
        );
        let server_queries = server_counter(
            "dbmesh_backend_queries_total",
            "Statements sent to the server",
        );
        let server_errors = server_counter(
            "dbmesh_backend_errors_total",
            "Failed health checks and failed uses of the server",
        );
        let server_connections = server_gauge(
            "dbmesh_backend_server_connections",
            "Connections of each server's pool by state",
            &["state"],
        );
        let broadcast_divergences = IntCounterVec::new(
            Opts::new(
                "dbmesh_broadcast_divergences_total",
                "Writes whose copies of a broadcast table changed different numbers of rows \
                 (rolled back), by table",
            ),
            &["table"],
        )
        .expect("valid metric");
        let table_physical_missing = IntGaugeVec::new(
            Opts::new(
                "dbmesh_table_physical_missing",
                "Physical tables missing of a table of the rules whose other physical tables \
                 exist (a DDL fan-out that half failed), as the last SHOW TABLES found; 0 when \
                 all or none exist",
            ),
            &["table"],
        )
        .expect("valid metric");
        let backend_cancellations_vec = IntCounterVec::new(
            Opts::new(
                "dbmesh_backend_cancellations_total",
                "Statements interrupted on backends (KILL QUERY), by why: kill, client_gone, \
                 time_limit, stopped_early",
            ),
            &["reason"],
        )
        .expect("valid metric");
        let backend_cancellations = CancelReason::ALL
            .iter()
            .map(|r| backend_cancellations_vec.with_label_values(&[r.label()]))
            .collect();
        let rows_moved = IntCounter::new(
            "dbmesh_rows_moved_total",
            "Rows moved to another shard by UPDATEs of their sharding column (each in a \
             distributed transaction)",
        )
        .expect("valid metric");
        let merged_vec = IntCounterVec::new(
            Opts::new(
                "dbmesh_merged_statements_total",
                "Statements whose shards' results the proxy merged, by what the merge mainly \
                 did: set_operation, group, distinct, sort, concatenate",
            ),
            &["kind"],
        )
        .expect("valid metric");
        let merged_statements = MergeKind::ALL
            .iter()
            .map(|k| merged_vec.with_label_values(&[k.label()]))
            .collect();
        let slow_statements = IntCounter::new(
            "dbmesh_slow_statements_total",
            "Statements that took at least proxy.slow_statement_ms, each logged as a \
             slow_statement event",
        )
        .expect("valid metric");
        let rules_version = IntGauge::new(
            "dbmesh_rules_version",
            "Rule files applied since start: 1 for the first, one more per applied reload",
        )
        .expect("valid metric");
        let rules_info = IntGaugeVec::new(
            Opts::new(
                "dbmesh_rules_info",
                "1, labelled with the SHA-256 of the rule file in force",
            ),
            &["sha256"],
        )
        .expect("valid metric");
        let primary_epoch = IntGaugeVec::new(
            Opts::new(
                "dbmesh_primary_epoch",
                "Each data source's primary switch epoch, as recorded in the meta data source: \
                 0 for the rule file's primary, one more per switch",
            ),
            &["data_source"],
        )
        .expect("valid metric");
        let split_brain = IntGaugeVec::new(
            Opts::new(
                "dbmesh_split_brain",
                "1 while the data source has more than one writable server that replicates \
                 from nothing (replication.follow_topology): its writes stop; 0 otherwise",
            ),
            &["data_source"],
        )
        .expect("valid metric");
        for code in ERROR_CODES {
            errors.with_label_values(&[&code.to_string()]);
        }
        for c in [
            Box::new(client_connections.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(client_connections_total.clone()),
            Box::new(client_connections_rejected.clone()),
            Box::new(logins_cut),
            Box::new(statements_vec),
            Box::new(errors.clone()),
            Box::new(statement_seconds.clone()),
            Box::new(group_concat_cuts.clone()),
            Box::new(backend_connections.clone()),
            Box::new(auth_failures.clone()),
            Box::new(plan_cache_hits.clone()),
            Box::new(plan_cache_misses.clone()),
            Box::new(plan_cache_entries.clone()),
            Box::new(session_pinned_vec),
            Box::new(server_up.clone()),
            Box::new(server_lag.clone()),
            Box::new(server_stale.clone()),
            Box::new(server_queries.clone()),
            Box::new(server_errors.clone()),
            Box::new(server_connections.clone()),
            Box::new(broadcast_divergences.clone()),
            Box::new(table_physical_missing.clone()),
            Box::new(backend_cancellations_vec),
            Box::new(rows_moved.clone()),
            Box::new(merged_vec),
            Box::new(slow_statements.clone()),
            Box::new(rules_version.clone()),
            Box::new(rules_info.clone()),
            Box::new(primary_epoch.clone()),
            Box::new(split_brain.clone()),
        ] {
            registry.register(c).expect("metric names are unique");
        }
        Metrics {
            digest: crate::digest::Digest::new(DIGEST_FINGERPRINTS),
            registry,
            client_connections,
            client_connections_total,
            client_connections_rejected,
            client_logins_timed_out,
            client_logins_evicted,
            statements,
            errors,
            statement_seconds,
            group_concat_cuts,
            backend_connections,
            auth_failures,
            plan_cache_hits,
            plan_cache_misses,
            plan_cache_entries,
            session_pinned,
            server_up,
            server_lag,
            server_stale,
            server_queries,
            server_errors,
            server_connections,
            broadcast_divergences,
            table_physical_missing,
            backend_cancellations,
            rows_moved,
            merged_statements,
            slow_statements,
            query_log: crate::query_log::Sampler::default(),
            rules_version,
            rules_info,
            primary_epoch,
            split_brain,
            rules_in_force: Mutex::new(RulesInForce::default()),
            servers_refresh: Mutex::new(()),
        }
    }

    /// Rebuilds the per-server families from the data sources of the rules in force, so
    /// servers no longer used (a primary switched away from, a server a reload dropped) lose
    /// their series instead of keeping their last values.
    pub fn set_servers<'a>(&self, clusters: impl Iterator<Item = &'a backend::Cluster>) {
        let _refresh = lock(&self.servers_refresh);
        for family in [
            &self.backend_connections,
            &self.split_brain,
            &self.server_up,
            &self.server_lag,
            &self.server_stale,
            &self.server_connections,
        ] {
            family.reset();
        }
        self.server_queries.reset();
        self.server_errors.reset();
        for cluster in clusters {
            self.set_cluster(cluster);
        }
    }

    fn set_cluster(&self, cluster: &backend::Cluster) {
        let pool = cluster.primary().pool().stats();
        self.split_brain
            .with_label_values(&[cluster.name()])
            .set(i64::from(cluster.primary().is_split_brain()));
        for (state, value) in [
            ("open", pool.open),
            ("idle", pool.idle),
            ("in_use", pool.in_use),
            ("max", pool.max),
        ] {
            self.backend_connections
                .with_label_values(&[cluster.name(), state])
                .set(value as i64);
        }
        for (server, replica) in cluster.servers() {
            let role = if replica { "replica" } else { "primary" };
            let labels = [cluster.name(), role, server.address()];
            let stats = server.stats();
            self.server_up
                .with_label_values(&labels)
                .set(i64::from(cluster.in_service(server, replica)));
            if replica {
                let lag = stats.lag_secs.map_or(-1, |l| l as i64);
                self.server_lag.with_label_values(&labels).set(lag);
                let stale = stats.stale_secs.map_or(-1, |s| s as i64);
                self.server_stale.with_label_values(&labels).set(stale);
            }
            // The server's own totals: they only grow while it is in the rules (a server
            // rebuilt by a reload starts again from zero, which Prometheus reads as a reset).
            self.server_queries
                .with_label_values(&labels)
                .inc_by(stats.queries);
            self.server_errors
                .with_label_values(&labels)
                .inc_by(stats.errors);
            let pool = server.pool().stats();
            for (state, value) in [
                ("open", pool.open),
                ("idle", pool.idle),
                ("in_use", pool.in_use),
            ] {
                self.server_connections
                    .with_label_values(&[cluster.name(), role, server.address(), state])
                    .set(value as i64);
            }
        }
    }

    /// Sets each data source's primary epoch from the recorded primaries.
    pub fn set_primary_epochs(&self, rules: &rules::Rules, records: &crate::PrimaryRecords) {
        self.primary_epoch.reset();
        for name in rules.data_sources.keys() {
            let epoch = records.get(name).map_or(0, |r| r.epoch);
            self.primary_epoch
                .with_label_values(&[name])
                .set(i64::try_from(epoch).unwrap_or(i64::MAX));
        }
    }

    /// A session's pins changed from `before` to `after`.
    pub(crate) fn set_pinned(&self, before: Pins, after: Pins) {
        for (reason, gauge) in PinReason::ALL.iter().zip(&self.session_pinned) {
            match (before & reason.bit() != 0, after & reason.bit() != 0) {
                (false, true) => gauge.inc(),
                (true, false) => gauge.dec(),
                _ => {}
            }
        }
    }

    /// Adds to the plan-cache counters what `stats` of one cache hold beyond what `counted`
    /// says was added already.
    pub fn count_plan_cache(&self, counted: &PlanCacheCounted, stats: router::CacheStats) {
        counted.count(stats, |counted, stats| {
            self.plan_cache_hits
                .inc_by(stats.hits.saturating_sub(counted.hits));
            self.plan_cache_misses
                .inc_by(stats.misses.saturating_sub(counted.misses));
            self.plan_cache_entries.set(stats.entries as i64);
        });
    }

    /// A rule file was applied: the version goes up, the hash is the new file's. Returns the
    /// rule file in force before and now.
    pub fn rules_applied(&self, sha256: &str) -> (RulesInForce, RulesInForce) {
        let mut in_force = lock(&self.rules_in_force);
        let before = in_force.clone();
        in_force.version += 1;
        in_force.sha256 = sha256.to_string();
        self.rules_version.set(in_force.version as i64);
        self.rules_info.reset();
        self.rules_info.with_label_values(&[sha256]).set(1);
        (before, in_force.clone())
    }

    /// The rule file in force.
    pub fn rules_in_force(&self) -> RulesInForce {
        lock(&self.rules_in_force).clone()
    }

    pub fn statement(&self, command: u8) {
        if let Some(c) = self.statements.get(usize::from(command)) {
            c.inc();
        }
    }

    /// A write found the copies of broadcast `table` diverged.
    /// Counts `statements` interrupted on backends for `reason`.
    pub fn backend_cancelled(&self, reason: CancelReason, statements: u64) {
        if statements > 0 {
            // Built from `CancelReason::ALL`, which lists the reasons in declaration order.
            self.backend_cancellations[reason as usize].inc_by(statements);
        }
    }

    pub fn merged(&self, kind: MergeKind) {
        // Built from `MergeKind::ALL`, which lists the kinds in declaration order.
        self.merged_statements[kind as usize].inc();
    }

    pub fn rows_moved(&self, rows: u64) {
        self.rows_moved.inc_by(rows);
    }

    pub fn broadcast_divergence(&self, table: &str) {
        self.broadcast_divergences.with_label_values(&[table]).inc();
    }

    /// SHOW TABLES found `missing` physical tables of `table` missing while others exist.
    pub fn table_physical_missing(&self, table: &str, missing: usize) {
        self.table_physical_missing
            .with_label_values(&[table])
            .set(i64::try_from(missing).unwrap_or(i64::MAX));
    }

    pub fn error(&self, code: u16) {
        self.errors.with_label_values(&[&code.to_string()]).inc();
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let _refresh = lock(&self.servers_refresh);
        let mut out = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

/// A lock whose holder cannot leave the data half-updated (each value is replaced whole).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
