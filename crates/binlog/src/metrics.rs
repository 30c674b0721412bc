//! Prometheus metrics of followers. Like the proxy's other metrics they are a value passed in
//! explicitly and registered in the caller's registry; series are labelled by source data
//! source, so one registry serves a follower per source.

use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry};

/// The followers' metrics; clones share the same series.
#[derive(Clone)]
pub struct FollowerMetrics {
    pub(crate) changes: IntCounterVec,
    pub(crate) transactions: IntCounterVec,
    pub(crate) lag_seconds: IntGaugeVec,
    pub(crate) lag_transactions: IntGaugeVec,
    pub(crate) reconnects: IntCounterVec,
}

impl Default for FollowerMetrics {
    fn default() -> Self {
        FollowerMetrics::new()
    }
}

impl FollowerMetrics {
    pub fn new() -> FollowerMetrics {
        let counter = |name: &str, help: &str, labels: &[&str]| {
            IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric")
        };
        FollowerMetrics {
            changes: counter(
                "dbmesh_binlog_changes_applied_total",
                "Row changes (row events' rows) applied to a destination by binlog followers",
                &["source"],
            ),
            transactions: counter(
                "dbmesh_binlog_transactions_total",
                "Source transactions a follower went past: applied (some routed change) or skipped (none)",
                &["source", "result"],
            ),
            lag_seconds: IntGaugeVec::new(
                Opts::new(
                    "dbmesh_binlog_lag_seconds",
                    "Age of the source transaction a follower applied last; 0 once it has applied all the source has",
                ),
                &["source"],
            )
            .expect("valid metric"),
            lag_transactions: IntGaugeVec::new(
                Opts::new(
                    "dbmesh_binlog_lag_transactions",
                    "Source transactions a follower has not yet gone past (from the source's @@gtid_binlog_pos, read every second)",
                ),
                &["source"],
            )
            .expect("valid metric"),
            reconnects: counter(
                "dbmesh_binlog_reconnects_total",
                "Times a follower lost its source or destination and connected again",
                &["source"],
            ),
        }
    }

    /// Registers every series in `registry` (the proxy's or the rebalancer's).
    pub fn register(&self, registry: &Registry) -> prometheus::Result<()> {
        registry.register(Box::new(self.changes.clone()))?;
        registry.register(Box::new(self.transactions.clone()))?;
        registry.register(Box::new(self.lag_seconds.clone()))?;
        registry.register(Box::new(self.lag_transactions.clone()))?;
        registry.register(Box::new(self.reconnects.clone()))
    }

    /// Row changes applied so far for `source` (what `dbmesh_binlog_changes_applied_total`
    /// shows).
    pub fn changes_applied(&self, source: &str) -> u64 {
        self.changes.with_label_values(&[source]).get()
    }

    /// Reconnections so far of the followers of `source`.
    pub fn reconnects(&self, source: &str) -> u64 {
        self.reconnects.with_label_values(&[source]).get()
    }
}
