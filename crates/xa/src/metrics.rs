//! Prometheus metrics of distributed transactions. Like the frontend's metrics, they are a
//! value passed down explicitly (no process-wide statics) and registered in the caller's
//! registry, so tests can run many coordinators in one process.

use prometheus::{IntCounterVec, IntGauge, Opts, Registry};

use crate::log::Outcome;

/// How a commit through the coordinator ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CommitResult {
    /// One participant: `XA COMMIT … ONE PHASE`, no log write.
    OnePhase,
    /// Two-phase, committed.
    Committed,
    /// Two-phase, rolled back (failed prepare, refused decision).
    RolledBack,
    /// Two-phase, left prepared for recovery.
    Unknown,
}

impl CommitResult {
    fn label(self) -> &'static str {
        match self {
            CommitResult::OnePhase => "one_phase",
            CommitResult::Committed => "committed",
            CommitResult::RolledBack => "rolled_back",
            CommitResult::Unknown => "unknown",
        }
    }
}

/// The coordinator's and recovery's metrics; clones share the same series.
#[derive(Clone)]
pub struct XaMetrics {
    in_doubt: IntGauge,
    oldest_in_doubt_seconds: IntGauge,
    recovered: IntCounterVec,
    commits: IntCounterVec,
    lease_taken: IntGauge,
}

impl XaMetrics {
    pub fn new() -> XaMetrics {
        XaMetrics {
            in_doubt: IntGauge::new(
                "dbmesh_xa_in_doubt",
                "Prepared dbmesh XA branches left unresolved by the last recovery round (owner alive, or resolving failed)",
            )
            .expect("valid metric"),
            oldest_in_doubt_seconds: IntGauge::new(
                "dbmesh_xa_oldest_in_doubt_seconds",
                "Age of the oldest of them, from the begin time in its gtrid",
            )
            .expect("valid metric"),
            recovered: IntCounterVec::new(
                Opts::new(
                    "dbmesh_xa_recovered_total",
                    "XA branches resolved by recovery, by outcome",
                ),
                &["outcome"],
            )
            .expect("valid metric"),
            commits: IntCounterVec::new(
                Opts::new(
                    "dbmesh_xa_commits_total",
                    "Commits through the XA coordinator, by how they ended",
                ),
                &["result"],
            )
            .expect("valid metric"),
            lease_taken: IntGauge::new(
                "dbmesh_xa_lease_taken",
                "1 once another proxy registered under this proxy's name on the meta data source (two live proxies share proxy.number): this proxy refuses distributed transactions",
            )
            .expect("valid metric"),
        }
    }

    /// Registers every series in `registry` (the proxy's, served at `/metrics`).
    pub fn register(&self, registry: &Registry) -> prometheus::Result<()> {
        registry.register(Box::new(self.in_doubt.clone()))?;
        registry.register(Box::new(self.oldest_in_doubt_seconds.clone()))?;
        registry.register(Box::new(self.recovered.clone()))?;
        registry.register(Box::new(self.commits.clone()))?;
        registry.register(Box::new(self.lease_taken.clone()))
    }

    /// 1 once another proxy took this proxy's name (see [`crate::XaError::LeaseTaken`]).
    pub fn lease_taken(&self) -> i64 {
        self.lease_taken.get()
    }

    pub(crate) fn set_lease_taken(&self) {
        self.lease_taken.set(1);
    }

    /// Prepared branches the last recovery round left unresolved.
    pub fn in_doubt(&self) -> i64 {
        self.in_doubt.get()
    }

    /// Age in seconds of the oldest of them.
    pub fn oldest_in_doubt_seconds(&self) -> i64 {
        self.oldest_in_doubt_seconds.get()
    }

    /// Branches recovery resolved with `outcome`.
    pub fn recovered(&self, outcome: Outcome) -> u64 {
        self.recovered
            .with_label_values(&[outcome_label(outcome)])
            .get()
    }

    pub(crate) fn set_in_doubt(&self, count: usize, oldest_seconds: u64) {
        self.in_doubt.set(i64::try_from(count).unwrap_or(i64::MAX));
        self.oldest_in_doubt_seconds
            .set(i64::try_from(oldest_seconds).unwrap_or(i64::MAX));
    }

    pub(crate) fn recovered_branch(&self, outcome: Outcome) {
        self.recovered
            .with_label_values(&[outcome_label(outcome)])
            .inc();
    }

    pub(crate) fn commit(&self, result: CommitResult) {
        self.commits.with_label_values(&[result.label()]).inc();
    }
}

impl Default for XaMetrics {
    fn default() -> Self {
        Self::new()
    }
}

fn outcome_label(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Commit => "commit",
        Outcome::Rollback => "rollback",
    }
}
