//! The slow-statement log and the sampled query log (`proxy.slow_statement_ms`,
//! `proxy.query_log_every`, `proxy.log_statement_text`): one structured event per statement,
//! on one line in either log format, naming the session, its user and database, the
//! statement's fingerprint, its route (how its targets combine and their data sources), its
//! rows, its duration and its first error code.
//!
//! A statement is named by its fingerprint (the query digest's key: literals replaced by `?`)
//! unless the rule file asks for its text: a bank's log must not hold customers' data by
//! default. The route names no physical SQL for the same reason.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use router::Combine;
use rules::ProxyConfig;

/// What the logs take, as the rules in force say (read per statement, so a reload applies to
/// the next statement of every session).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// Statements at least this long go to the slow log; `None`: off.
    pub slow: Option<Duration>,
    /// One statement in every this many goes to the query log; 0: off.
    pub every: u64,
    /// Events carry the statement's text rather than its fingerprint.
    pub text: bool,
}

impl Settings {
    pub fn of(proxy: &ProxyConfig) -> Settings {
        Settings {
            slow: (proxy.slow_statement_ms > 0)
                .then(|| Duration::from_millis(proxy.slow_statement_ms)),
            every: proxy.query_log_every,
            text: proxy.log_statement_text,
        }
    }

    /// Whether anything may be logged of a statement, so that its route is worth noting.
    pub fn any(&self) -> bool {
        self.slow.is_some() || self.every > 0
    }
}

/// Picks the statements of the query log: every `every`-th the proxy runs, counted over all
/// sessions.
#[derive(Debug, Default)]
pub struct Sampler {
    statements: AtomicU64,
}

impl Sampler {
    pub fn pick(&self, every: u64) -> bool {
        every > 0
            && self
                .statements
                .fetch_add(1, Ordering::Relaxed)
                .is_multiple_of(every)
    }
}

/// How a statement ran, as its log event tells it.
#[derive(Debug)]
pub struct Statement<'a> {
    pub connection_id: u32,
    pub user: &'a str,
    pub database: Option<&'a str>,
    /// The fingerprint, or the text when the rules ask for it.
    pub statement: &'a str,
    /// See [`route`]; empty when the statement had no plan (a protocol command, an error
    /// before routing, a statement the session answers itself).
    pub route: &'a str,
    pub rows: u64,
    pub backend_statements: u64,
    pub duration: Duration,
    /// The first error the client was answered, if any.
    pub error: Option<u16>,
}

/// One statement event: the same fields at the level and target of its log.
macro_rules! statement_event {
    ($level:expr, $target:literal, $message:literal, $statement:expr) => {{
        let s = $statement;
        tracing::event!(
            target: $target,
            $level,
            conn = s.connection_id,
            user = s.user,
            database = s.database.unwrap_or(""),
            statement = s.statement,
            route = s.route,
            rows = s.rows,
            backend_statements = s.backend_statements,
            duration_ms = millis(s.duration),
            error = s.error.unwrap_or(0),
            $message
        )
    }};
}

/// Logs `statement` to the slow log if it was slow, and to the query log if `sampled`.
/// Returns whether it was slow.
pub fn log(settings: &Settings, sampled: bool, statement: &Statement<'_>) -> bool {
    let slow = settings
        .slow
        .is_some_and(|limit| statement.duration >= limit);
    if slow {
        statement_event!(
            tracing::Level::WARN,
            "dbmesh::slow_statement",
            "slow statement",
            statement
        );
    }
    if sampled {
        statement_event!(
            tracing::Level::INFO,
            "dbmesh::query_log",
            "statement",
            statement
        );
    }
    slow
}

/// Milliseconds with microsecond digits.
fn millis(duration: Duration) -> f64 {
    (duration.as_micros() as f64) / 1000.0
}

/// A route as the logs show it: how the targets combine and their data sources, e.g.
/// `merge ds_0,ds_1`. No SQL and no values: those may hold literals.
pub fn route<'a>(combine: &Combine, data_sources: impl Iterator<Item = &'a str>) -> String {
    let mut text = String::from(match combine {
        Combine::Single => "single",
        Combine::SumAffected => "sum affected",
        Combine::OneByOne => "one by one",
        Combine::EveryCopy(_) => "every copy",
        Combine::AnyOne => "any one",
        Combine::Merge(_) => "merge",
        Combine::MoveRows(_) => "move rows",
    });
    let mut first = true;
    let mut seen: Vec<&str> = Vec::new();
    for ds in data_sources {
        if seen.contains(&ds) {
            continue;
        }
        seen.push(ds);
        text.push(if first { ' ' } else { ',' });
        first = false;
        text.push_str(ds);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_follow_the_rules() {
        let mut proxy = ProxyConfig::default();
        let s = Settings::of(&proxy);
        assert_eq!(s.slow, Some(Duration::from_millis(1000)));
        assert_eq!((s.every, s.text, s.any()), (0, false, true));
        proxy.slow_statement_ms = 0;
        assert!(!Settings::of(&proxy).any());
        proxy.query_log_every = 3;
        assert!(Settings::of(&proxy).any());
    }

    #[test]
    fn the_sampler_picks_one_in_every() {
        let sampler = Sampler::default();
        let picked = (0..9).filter(|_| sampler.pick(3)).count();
        assert_eq!(picked, 3);
        assert!(!(0..5).any(|_| sampler.pick(0)));
    }

    #[test]
    fn a_route_names_each_data_source_once_and_no_sql() {
        let r = route(&Combine::Single, ["ds_1"].into_iter());
        assert_eq!(r, "single ds_1");
        let r = route(&Combine::SumAffected, ["ds_0", "ds_1", "ds_0"].into_iter());
        assert_eq!(r, "sum affected ds_0,ds_1");
        assert_eq!(route(&Combine::AnyOne, std::iter::empty()), "any one");
    }
}
