//! Prometheus metrics of the rebalancer, a value passed in and registered in the caller's
//! registry (the `dbmesh rebalance` process's, with the binlog followers' beside them).

use prometheus::{CounterVec, IntCounterVec, Opts, Registry};

/// The rebalancer's metrics; clones share the same series.
#[derive(Clone)]
pub struct RebalanceMetrics {
    pub(crate) rows_copied: IntCounterVec,
    pub(crate) chunks_copied: IntCounterVec,
    pub(crate) throttled: CounterVec,
    pub(crate) rows_verified: IntCounterVec,
    pub(crate) chunks_verified: IntCounterVec,
}

impl Default for RebalanceMetrics {
    fn default() -> Self {
        RebalanceMetrics::new()
    }
}

impl RebalanceMetrics {
    pub fn new() -> RebalanceMetrics {
        let counter = |name: &str, help: &str, labels: &[&str]| {
            IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric")
        };
        RebalanceMetrics {
            rows_copied: counter(
                "dbmesh_rebalance_rows_copied_total",
                "Rows of moving slices copied from a source physical table to the destination",
                &["source"],
            ),
            chunks_copied: counter(
                "dbmesh_rebalance_chunks_copied_total",
                "Chunks (primary-key ranges) copied, each in one destination transaction",
                &["source"],
            ),
            throttled: CounterVec::new(
                Opts::new(
                    "dbmesh_rebalance_throttle_seconds_total",
                    "Seconds the copy waited: for its rows/s limit (rate), or for a busy source (threads_running) or lagging replica (replica_lag)",
                ),
                &["reason"],
            )
            .expect("valid metric"),
            rows_verified: counter(
                "dbmesh_rebalance_rows_verified_total",
                "Source rows of moving slices checksummed against the destination",
                &["source"],
            ),
            chunks_verified: counter(
                "dbmesh_rebalance_chunks_verified_total",
                "Checksummed chunks: equal, or different after every re-check",
                &["result"],
            ),
        }
    }

    /// Registers every series in `registry`.
    pub fn register(&self, registry: &Registry) -> prometheus::Result<()> {
        registry.register(Box::new(self.rows_copied.clone()))?;
        registry.register(Box::new(self.chunks_copied.clone()))?;
        registry.register(Box::new(self.throttled.clone()))?;
        registry.register(Box::new(self.rows_verified.clone()))?;
        registry.register(Box::new(self.chunks_verified.clone()))
    }

    /// Rows copied so far from source physical table `source` (`ds.table`).
    pub fn rows_copied(&self, source: &str) -> u64 {
        self.rows_copied.with_label_values(&[source]).get()
    }
}
