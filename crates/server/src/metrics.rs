//! Prometheus metrics of the frontend. One `Metrics` value is created by the binary and passed
//! down explicitly (no process-wide statics), so tests can run many proxies in one process.

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};
use protocol::constants::com;

use crate::session::{PinReason, Pins};

pub struct Metrics {
    registry: Registry,
    pub client_connections: IntGauge,
    pub client_connections_total: IntCounter,
    pub client_connections_rejected: IntCounter,
    /// Statements by command, indexed by command byte so the hot path does no label lookup.
    statements: Vec<IntCounter>,
    errors: IntCounterVec,
    pub statement_seconds: Histogram,
    backend_connections: IntGaugeVec,
    pub auth_failures: IntCounter,
    plan_cache: IntGaugeVec,
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
}

/// The labels identifying one server.
const SERVER_LABELS: [&str; 3] = ["data_source", "role", "address"];

impl Metrics {
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
            "Client connections refused because max_connections was reached",
        )
        .expect("valid metric");
        let statements_vec = IntCounterVec::new(
            Opts::new("dbmesh_statements_total", "Client commands by command"),
            &["command"],
        )
        .expect("valid metric");
        let statements = (0u8..=0x1f)
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
        let plan_cache = IntGaugeVec::new(
            Opts::new(
                "dbmesh_plan_cache",
                "Router plan cache of the current rules: hits, misses, entries",
            ),
            &["stat"],
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
            "1 while the server is in service, 0 after a failed check or use",
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
        for c in [
            Box::new(client_connections.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(client_connections_total.clone()),
            Box::new(client_connections_rejected.clone()),
            Box::new(statements_vec),
            Box::new(errors.clone()),
            Box::new(statement_seconds.clone()),
            Box::new(backend_connections.clone()),
            Box::new(auth_failures.clone()),
            Box::new(plan_cache.clone()),
            Box::new(session_pinned_vec),
            Box::new(server_up.clone()),
            Box::new(server_lag.clone()),
            Box::new(server_stale.clone()),
            Box::new(server_queries.clone()),
            Box::new(server_errors.clone()),
            Box::new(server_connections.clone()),
            Box::new(broadcast_divergences.clone()),
        ] {
            registry.register(c).expect("metric names are unique");
        }
        Metrics {
            registry,
            client_connections,
            client_connections_total,
            client_connections_rejected,
            statements,
            errors,
            statement_seconds,
            backend_connections,
            auth_failures,
            plan_cache,
            session_pinned,
            server_up,
            server_lag,
            server_stale,
            server_queries,
            server_errors,
            server_connections,
            broadcast_divergences,
        }
    }

    /// Refreshes the per-server families from a data source's servers.
    pub fn set_servers(&self, cluster: &backend::Cluster) {
        for (server, replica) in cluster.servers() {
            let role = if replica { "replica" } else { "primary" };
            let labels = [cluster.name(), role, server.address()];
            let stats = server.stats();
            self.server_up
                .with_label_values(&labels)
                .set(i64::from(stats.up));
            if replica {
                let lag = stats.lag_secs.map_or(-1, |l| l as i64);
                self.server_lag.with_label_values(&labels).set(lag);
                let stale = stats.stale_secs.map_or(-1, |s| s as i64);
                self.server_stale.with_label_values(&labels).set(stale);
            }
            for (counter, total) in [
                (&self.server_queries, stats.queries),
                (&self.server_errors, stats.errors),
            ] {
                let counter = counter.with_label_values(&labels);
                // Counters only go up; a server rebuilt by a reload starts again from zero.
                counter.inc_by(total.saturating_sub(counter.get()));
            }
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

    pub fn set_plan_cache(&self, stats: router::CacheStats) {
        for (stat, value) in [
            ("hits", stats.hits),
            ("misses", stats.misses),
            ("entries", stats.entries as u64),
        ] {
            self.plan_cache.with_label_values(&[stat]).set(value as i64);
        }
    }

    pub fn statement(&self, command: u8) {
        if let Some(c) = self.statements.get(usize::from(command)) {
            c.inc();
        }
    }

    /// A write found the copies of broadcast `table` diverged.
    pub fn broadcast_divergence(&self, table: &str) {
        self.broadcast_divergences.with_label_values(&[table]).inc();
    }

    pub fn error(&self, code: u16) {
        self.errors.with_label_values(&[&code.to_string()]).inc();
    }

    pub fn set_backend_connections(&self, data_source: &str, stats: backend::PoolStats) {
        for (state, value) in [
            ("open", stats.open),
            ("idle", stats.idle),
            ("in_use", stats.in_use),
            ("max", stats.max),
        ] {
            self.backend_connections
                .with_label_values(&[data_source, state])
                .set(value as i64);
        }
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
