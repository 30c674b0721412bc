//! What `dbmesh rebalance` shows while it works: one line that updates in place on a
//! terminal, or a log line every ten seconds otherwise.

use std::fmt;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use meta::Phase;

/// How often a log line is written when stderr is not a terminal.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// A move's progress at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct ProgressView {
    pub id: u64,
    pub phase: Phase,
    pub rows_copied: u64,
    pub rows_total: u64,
    /// Rows copied per second lately; `None` when unknown.
    pub rate: Option<f64>,
    /// Seconds the destination is behind its sources (the worst), once catching up.
    pub lag_seconds: Option<u64>,
    /// Source transactions still to go past, summed over the sources.
    pub lag_transactions: Option<u64>,
}

impl ProgressView {
    /// Seconds until the copy ends at the current rate.
    pub fn eta(&self) -> Option<Duration> {
        let rate = self.rate.filter(|r| *r > 0.0)?;
        let left = self.rows_total.saturating_sub(self.rows_copied) as f64;
        Some(Duration::from_secs_f64(left / rate))
    }
}

/// `move 3 copying: 12345/50000 rows (24.7%), 8200 rows/s, ETA 4 s; lag 0 s (0 transactions)`.
impl fmt::Display for ProgressView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "move {} {}: {}/{} rows",
            self.id, self.phase, self.rows_copied, self.rows_total
        )?;
        if self.rows_total > 0 {
            write!(
                f,
                " ({:.1}%)",
                self.rows_copied as f64 * 100.0 / self.rows_total as f64
            )?;
        }
        if self.phase == Phase::Copying {
            if let Some(rate) = self.rate {
                write!(f, ", {rate:.0} rows/s")?;
            }
            if let Some(eta) = self.eta() {
                write!(f, ", ETA {} s", eta.as_secs())?;
            }
        }
        if let Some(seconds) = self.lag_seconds {
            write!(f, "; lag {seconds} s")?;
            if let Some(n) = self.lag_transactions {
                write!(f, " ({n} transactions)")?;
            }
        }
        Ok(())
    }
}

/// Shows progress on stderr.
pub struct Reporter {
    terminal: bool,
    logged: Option<Instant>,
    shown: bool,
}

impl Default for Reporter {
    fn default() -> Self {
        Reporter::new()
    }
}

impl Reporter {
    /// One updating line when stderr is a terminal, log lines otherwise.
    pub fn new() -> Reporter {
        Reporter {
            terminal: std::io::stderr().is_terminal(),
            logged: None,
            shown: false,
        }
    }

    pub fn show(&mut self, view: &ProgressView) {
        if self.terminal {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[K{view}");
            let _ = err.flush();
            self.shown = true;
        } else if self.logged.is_none_or(|at| at.elapsed() >= LOG_EVERY) {
            tracing::info!(progress = %view, "rebalance");
            self.logged = Some(Instant::now());
        }
    }

    /// Ends the updating line (before other output).
    pub fn finish_line(&mut self) {
        if self.terminal && self.shown {
            let _ = writeln!(std::io::stderr());
            self.shown = false;
        }
    }
}

/// Rows per second from counts seen over time (since the first count seen).
#[derive(Debug, Default)]
pub struct RateMeter {
    first: Option<(Instant, u64)>,
}

impl RateMeter {
    pub fn rate(&mut self, rows: u64) -> Option<f64> {
        let (at, first) = *self.first.get_or_insert((Instant::now(), rows));
        let elapsed = at.elapsed().as_secs_f64();
        (elapsed >= 0.5).then(|| rows.saturating_sub(first) as f64 / elapsed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_says_where_the_move_is() {
        let mut view = ProgressView {
            id: 3,
            phase: Phase::Copying,
            rows_copied: 12_345,
            rows_total: 50_000,
            rate: Some(8_200.0),
            lag_seconds: None,
            lag_transactions: None,
        };
        assert_eq!(
            view.to_string(),
            "move 3 copying: 12345/50000 rows (24.7%), 8200 rows/s, ETA 4 s"
        );
        view.phase = Phase::CatchingUp;
        view.rows_copied = 50_000;
        view.lag_seconds = Some(0);
        view.lag_transactions = Some(2);
        assert_eq!(
            view.to_string(),
            "move 3 catching_up: 50000/50000 rows (100.0%); lag 0 s (2 transactions)"
        );
    }
}
