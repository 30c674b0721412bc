//! How fast the copy may go: a token bucket of rows per second (`--rate`), and backing off
//! while the source is busy or its replicas lag.
//!
//! Thresholds (defaults of [`ThrottleSettings`]): the source's `Threads_running` above 32
//! (statements executing at once; an OLTP primary at ease runs a handful) or any configured
//! replica of the source data source more than 10 s behind (`Seconds_Behind_Master`, or
//! replication stopped) pauses the copy, 250 ms at first and doubling up to 4 s, until both
//! are below again. Load is looked at before a chunk, at most once a second. A replica that
//! cannot be reached is logged and not waited for (it cannot fall further behind by our
//! copy than by the proxy's writes).

use std::time::Duration;

use backend::{BackendConn, ConnectOptions};
use tokio::time::Instant;

use crate::metrics::RebalanceMetrics;
use crate::RebalanceError;

/// The copy's limits.
#[derive(Debug, Clone)]
pub struct ThrottleSettings {
    /// Rows per second at most; `None` for as fast as the servers go.
    pub rows_per_second: Option<u32>,
    /// Pause while the source's `Threads_running` is above this.
    pub max_threads_running: u64,
    /// Pause while a replica of the source is further behind than this.
    pub max_replica_lag: Duration,
}

impl Default for ThrottleSettings {
    fn default() -> Self {
        ThrottleSettings {
            rows_per_second: None,
            max_threads_running: 32,
            max_replica_lag: Duration::from_secs(10),
        }
    }
}

const LOAD_CHECK_EVERY: Duration = Duration::from_secs(1);
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(4);

/// The throttle of one copy.
pub(crate) struct Throttle {
    settings: ThrottleSettings,
    metrics: RebalanceMetrics,
    /// Rows that may go now; negative when ahead of the rate (then the copy sleeps).
    tokens: f64,
    refilled: Instant,
    load_checked: Option<Instant>,
}

impl Throttle {
    pub(crate) fn new(settings: ThrottleSettings, metrics: RebalanceMetrics) -> Throttle {
        Throttle {
            tokens: f64::from(settings.rows_per_second.unwrap_or(0)),
            settings,
            metrics,
            refilled: Instant::now(),
            load_checked: None,
        }
    }

    /// Counts `rows` copied against the rate, sleeping as long as the copy is ahead of it.
    pub(crate) async fn take(&mut self, rows: usize) {
        let Some(rate) = self.settings.rows_per_second.filter(|r| *r > 0) else {
            return;
        };
        let rate = f64::from(rate);
        let now = Instant::now();
        // At most one second of rows may go in a burst.
        self.tokens =
            (self.tokens + now.duration_since(self.refilled).as_secs_f64() * rate).min(rate);
        self.refilled = now;
        self.tokens -= rows as f64;
        if self.tokens < 0.0 {
            let wait = Duration::from_secs_f64(-self.tokens / rate);
            self.metrics
                .throttled
                .with_label_values(&["rate"])
                .inc_by(wait.as_secs_f64());
            tokio::time::sleep(wait).await;
        }
    }

    /// Waits while the source or one of `replicas` is over its threshold (looked at once a
    /// second at most).
    pub(crate) async fn wait_for_load(
        &mut self,
        source: &mut BackendConn,
        replicas: &[ConnectOptions],
    ) -> Result<(), RebalanceError> {
        if self
            .load_checked
            .is_some_and(|at| at.elapsed() < LOAD_CHECK_EVERY)
        {
            return Ok(());
        }
        let mut backoff = FIRST_BACKOFF;
        loop {
            self.load_checked = Some(Instant::now());
            let reason = if threads_running(source).await? > self.settings.max_threads_running {
                Some("threads_running")
            } else if replica_lag(replicas).await > Some(self.settings.max_replica_lag) {
                Some("replica_lag")
            } else {
                None
            };
            let Some(reason) = reason else {
                return Ok(());
            };
            tracing::info!(reason, wait = ?backoff, "the copy backs off");
            self.metrics
                .throttled
                .with_label_values(&[reason])
                .inc_by(backoff.as_secs_f64());
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }
}

async fn threads_running(source: &mut BackendConn) -> Result<u64, RebalanceError> {
    let result = source
        .query("SHOW GLOBAL STATUS LIKE 'Threads_running'")
        .await?;
    Ok(result
        .rows
        .first()
        .and_then(|r| r.get(1).cloned().flatten())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0))
}

/// The largest lag of the replicas that answer; a stopped replication counts as lagging
/// without end.
async fn replica_lag(replicas: &[ConnectOptions]) -> Option<Duration> {
    let mut worst = None;
    for replica in replicas {
        let lag = async {
            let mut conn = BackendConn::connect(replica).await?;
            let status = conn.query("SHOW ALL SLAVES STATUS").await?;
            Ok::<_, backend::BackendError>(
                (0..status.rows.len())
                    .map(|row| {
                        status
                            .value(row, "Seconds_Behind_Master")
                            .and_then(|v| v.parse().ok())
                            .map_or(Duration::MAX, Duration::from_secs)
                    })
                    .max(),
            )
        }
        .await;
        match lag {
            Ok(lag) => worst = worst.max(lag),
            Err(error) => {
                tracing::warn!(replica = %replica.address, %error, "replica lag unknown (not waited for)")
            }
        }
    }
    worst
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_rate_is_kept_over_time() {
        let mut throttle = Throttle::new(
            ThrottleSettings {
                rows_per_second: Some(1000),
                ..ThrottleSettings::default()
            },
            RebalanceMetrics::new(),
        );
        let started = tokio::time::Instant::now();
        for _ in 0..10 {
            throttle.take(500).await;
        }
        // 5,000 rows at 1,000/s, the first second's burst free: 4 s.
        let took = started.elapsed();
        assert!(
            took >= Duration::from_secs(4) && took < Duration::from_millis(4100),
            "{took:?}"
        );
    }
}
