//! How long a statement may run, as its text says: MariaDB's `SET STATEMENT
//! max_statement_time = N FOR …`, MySQL's `SELECT /*+ MAX_EXECUTION_TIME(ms) */ …` hint, and
//! `SET [SESSION] max_statement_time = N`, which sets the session's limit.
//!
//! MariaDB: <https://mariadb.com/kb/en/aborting-statements/>, MySQL:
//! <https://dev.mysql.com/doc/refman/8.0/en/optimizer-hints.html#optimizer-hints-execution-time>.

use std::time::Duration;

use crate::client_charset::{assignments, is_word, session_variable, tokens};
use crate::lexer::{Lexer, Tok};

/// What a statement's own text says about its time limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeLimit {
    /// The session's limit applies: a read or a write, which `max_statement_time` bounds.
    Session,
    /// Its own limit (`MAX_EXECUTION_TIME`); `None`: none (0).
    Own(Option<Duration>),
    /// No limit: transaction control, SET and the like, which must not be cut short (a
    /// COMMIT stopped halfway would commit some shards and not others).
    Unbounded,
}

/// The statements the session's limit bounds, by first word.
const BOUNDED: [&str; 8] = [
    "SELECT", "WITH", "VALUES", "TABLE", "INSERT", "REPLACE", "UPDATE", "DELETE",
];

/// What `sql`'s text says about its time limit.
pub fn time_limit(sql: &str) -> TimeLimit {
    let mut lexer = Lexer::new(sql);
    let Some(first) = lexer.next_token() else {
        return TimeLimit::Unbounded;
    };
    let text = |t: crate::Token| sql.get(t.start..t.end).unwrap_or("");
    match first.kind {
        Tok::Punct(b'(') => TimeLimit::Session,
        Tok::Word if text(first).eq_ignore_ascii_case("SELECT") => {
            // The hint counts only right after the statement's first SELECT, as in MySQL.
            match lexer.next_token() {
                Some(hint) if hint.kind == Tok::KeptComment => {
                    match max_execution_time(text(hint)) {
                        Some(ms) => TimeLimit::Own((ms > 0).then(|| Duration::from_millis(ms))),
                        None => TimeLimit::Session,
                    }
                }
                _ => TimeLimit::Session,
            }
        }
        Tok::Word if BOUNDED.iter().any(|w| text(first).eq_ignore_ascii_case(w)) => {
            TimeLimit::Session
        }
        _ => TimeLimit::Unbounded,
    }
}

/// The milliseconds of `MAX_EXECUTION_TIME(ms)` in an optimizer-hint comment `/*+ … */`.
fn max_execution_time(comment: &str) -> Option<u64> {
    let hints = comment.strip_prefix("/*+")?;
    let hints = hints.strip_suffix("*/").unwrap_or(hints);
    let tokens = tokens(hints);
    tokens.windows(4).find_map(|w| match w {
        [name, (Tok::Punct(b'('), _), (Tok::Int, ms), (Tok::Punct(b')'), _)]
            if is_word(name, "MAX_EXECUTION_TIME") =>
        {
            ms.parse().ok()
        }
        _ => None,
    })
}

/// `SET STATEMENT max_statement_time = N FOR statement`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SetStatement {
    /// The limit; `None` for none (0).
    pub limit: Option<Duration>,
    /// Where the statement after `FOR` starts in the text.
    pub statement_at: usize,
}

/// `sql` as a `SET STATEMENT … FOR …`: `None` for any other statement; an error naming what
/// the proxy does not take (a variable other than `max_statement_time`, a value it cannot
/// read, no `FOR`).
pub fn set_statement(sql: &str) -> Option<Result<SetStatement, String>> {
    let mut lexer = Lexer::new(sql);
    let mut tokens = Vec::new();
    let mut statement_at = None;
    let mut depth = 0usize;
    while let Some(t) = lexer.next_token() {
        let token = (t.kind, sql.get(t.start..t.end).unwrap_or(""));
        match tokens.len() {
            0 if !is_word(&token, "SET") => return None,
            1 if !is_word(&token, "STATEMENT") => return None,
            _ => {}
        }
        match token.0 {
            Tok::Punct(b'(') => depth += 1,
            Tok::Punct(b')') => depth = depth.saturating_sub(1),
            Tok::Word if depth == 0 && is_word(&token, "FOR") => {
                statement_at = Some(t.end);
                break;
            }
            _ => {}
        }
        tokens.push(token);
    }
    if tokens.len() < 2 {
        return None;
    }
    let Some(statement_at) = statement_at else {
        return Some(Err("SET STATEMENT without FOR".into()));
    };
    let mut limit = None;
    for assignment in assignments(&tokens[2..]) {
        match session_variable(assignment) {
            Some((name, value)) if name == "max_statement_time" => match seconds(value) {
                Some(seconds) => limit = seconds,
                None => return Some(Err("SET STATEMENT max_statement_time = <expression>".into())),
            },
            Some((name, _)) => return Some(Err(format!("SET STATEMENT {name}"))),
            None => return Some(Err("this SET STATEMENT".into())),
        }
    }
    let rest = &sql[statement_at..];
    let statement_at = statement_at + (rest.len() - rest.trim_start().len());
    Some(Ok(SetStatement {
        limit,
        statement_at,
    }))
}

/// What a SET statement does to the session's `max_statement_time`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaxStatementTime {
    /// Sets it to this limit (`None`: no limit, 0).
    Limit(Option<Duration>),
    /// Sets it back to its default.
    Default,
    /// Sets it to an expression only the server can evaluate.
    Unknown,
}

/// The last change of the session's `max_statement_time` a SET statement makes; `None` for a
/// SET that leaves it alone (a `GLOBAL` assignment included) and for any other statement.
pub fn max_statement_time(sql: &str) -> Option<MaxStatementTime> {
    let tokens = tokens(sql);
    let (first, rest) = tokens.split_first()?;
    if !is_word(first, "SET") || rest.first().is_some_and(|t| is_word(t, "STATEMENT")) {
        return None;
    }
    assignments(rest)
        .into_iter()
        .filter_map(|a| match session_variable(a)? {
            (name, value) if name == "max_statement_time" => Some(match value {
                [default] if is_word(default, "DEFAULT") => MaxStatementTime::Default,
                _ => seconds(value).map_or(MaxStatementTime::Unknown, MaxStatementTime::Limit),
            }),
            _ => None,
        })
        .next_back()
}

/// A value of seconds as `max_statement_time` takes it (a non-negative number, fractions
/// allowed): `Some(None)` for 0 (no limit), `None` for anything the proxy cannot read.
fn seconds(value: &[(Tok, &str)]) -> Option<Option<Duration>> {
    match value {
        [(Tok::Int | Tok::Decimal, number)] => {
            let seconds: f64 = number.parse().ok()?;
            if !(seconds.is_finite() && seconds >= 0.0) {
                return None;
            }
            // MariaDB's largest value: 31536000 seconds (a year).
            let seconds = seconds.min(31_536_000.0);
            Some((seconds > 0.0).then(|| Duration::from_secs_f64(seconds)))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_and_statement_kinds() {
        assert_eq!(
            time_limit("SELECT /*+ MAX_EXECUTION_TIME(1500) */ * FROM t"),
            TimeLimit::Own(Some(Duration::from_millis(1500)))
        );
        assert_eq!(
            time_limit("select /*+ BKA(t) max_execution_time(0) */ 1"),
            TimeLimit::Own(None)
        );
        assert_eq!(
            time_limit("SELECT /* MAX_EXECUTION_TIME(5) */ 1"),
            TimeLimit::Session
        );
        assert_eq!(
            time_limit("SELECT 1, /*+ MAX_EXECUTION_TIME(5) */ 2"),
            TimeLimit::Session
        );
        assert_eq!(time_limit("update t set a = 1"), TimeLimit::Session);
        assert_eq!(
            time_limit("(SELECT 1) UNION (SELECT 2)"),
            TimeLimit::Session
        );
        assert_eq!(time_limit("COMMIT"), TimeLimit::Unbounded);
        assert_eq!(time_limit("SET autocommit = 0"), TimeLimit::Unbounded);
    }

    #[test]
    fn set_statement_takes_max_statement_time_only() {
        let sql = "SET STATEMENT max_statement_time = 0.5 FOR  SELECT SLEEP(2)";
        let set = set_statement(sql).unwrap().unwrap();
        assert_eq!(set.limit, Some(Duration::from_millis(500)));
        assert_eq!(&sql[set.statement_at..], "SELECT SLEEP(2)");
        let sql = "set statement max_statement_time=0 for select 1";
        let set = set_statement(sql).unwrap().unwrap();
        assert_eq!(set.limit, None);
        assert_eq!(&sql[set.statement_at..], "select 1");
        assert!(
            set_statement("SET STATEMENT sort_buffer_size = 1 FOR SELECT 1")
                .unwrap()
                .is_err()
        );
        assert!(
            set_statement("SET STATEMENT max_statement_time = @t FOR SELECT 1")
                .unwrap()
                .is_err()
        );
        assert!(set_statement("SET STATEMENT max_statement_time = 1")
            .unwrap()
            .is_err());
        assert_eq!(set_statement("SET max_statement_time = 1"), None);
        assert_eq!(set_statement("SELECT 1"), None);
    }

    #[test]
    fn session_settings() {
        assert_eq!(
            max_statement_time("SET max_statement_time = 2"),
            Some(MaxStatementTime::Limit(Some(Duration::from_secs(2))))
        );
        assert_eq!(
            max_statement_time("SET SESSION sql_mode = '', @@session.max_statement_time := 0"),
            Some(MaxStatementTime::Limit(None))
        );
        assert_eq!(
            max_statement_time("SET @@max_statement_time = DEFAULT"),
            Some(MaxStatementTime::Default)
        );
        assert_eq!(
            max_statement_time("SET max_statement_time = @x"),
            Some(MaxStatementTime::Unknown)
        );
        assert_eq!(
            max_statement_time("SET GLOBAL max_statement_time = 1"),
            None
        );
        assert_eq!(
            max_statement_time("SET STATEMENT max_statement_time = 1 FOR SELECT 1"),
            None
        );
        assert_eq!(max_statement_time("SET autocommit = 1"), None);
    }
}
