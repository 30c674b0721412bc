//! Statements about sessions: `KILL`, the process list, and whatever else would show the
//! backend server's sessions to a client. The proxy's backend account sees (and may kill)
//! every connection on its servers, other applications' included, so none of these may
//! reach a backend: the session answers them from the proxy's own sessions or refuses them.
//!
//! Recognised by words outside literals and comments (the content of `/*! … */` counts as
//! code), after a cheap check for the words that matter, so other statements pay little.

use protocol::ServerError;

/// What a statement about sessions asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum AboutSessions {
    /// `KILL [HARD|SOFT] [CONNECTION|QUERY] id`.
    Kill(Kill),
    /// `SHOW [FULL] PROCESSLIST`.
    ShowProcessList { full: bool },
    /// A statement reading `information_schema.PROCESSLIST`.
    ProcessListQuery,
    /// A statement that would show or touch the backend server's sessions; never relayed.
    Refused(ServerError),
}

/// A `KILL` statement.
#[derive(Debug, PartialEq, Eq)]
pub struct Kill {
    /// `KILL QUERY`: interrupt the statement only; otherwise the connection too.
    pub query_only: bool,
    pub target: KillTarget,
}

#[derive(Debug, PartialEq, Eq)]
pub enum KillTarget {
    /// A session id.
    Session(u64),
    /// `KILL USER name`: every session of that proxy user.
    User(String),
}

/// Words one of which a statement about sessions contains (lower case).
const NEEDLES: [&[u8]; 9] = [
    b"kill",
    b"processlist",
    b"performance_schema",
    b"sys",
    b"innodb_",
    b"engine",
    b"connection",
    b"explain",
    b"analyze",
];

/// Recognises a statement (or multi-statement text) about sessions; `None` for the rest.
pub fn about_sessions(sql: &str) -> Option<AboutSessions> {
    let lower = sql.as_bytes();
    if !NEEDLES.iter().any(|n| contains_ignore_case(lower, n)) {
        return None;
    }
    let statements = sql::split(sql);
    let mut found = statements.iter().filter_map(|s| statement(s));
    let first = found.next()?;
    if statements.len() > 1 {
        return Some(AboutSessions::Refused(ServerError::not_supported(
            "KILL or a process list in a multi-statement text",
        )));
    }
    Some(first)
}

fn contains_ignore_case(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle))
}

fn statement(sql: &str) -> Option<AboutSessions> {
    let words = sql::identifiers(sql);
    let is = |at: usize, w: &str| words.get(at).is_some_and(|x| x.eq_ignore_ascii_case(w));
    let has = |w: &str| words.iter().any(|x| x.eq_ignore_ascii_case(w));
    if is(0, "KILL") {
        return Some(kill(sql));
    }
    if is(0, "SHOW") {
        if is(1, "PROCESSLIST") && words.len() == 2 {
            return Some(AboutSessions::ShowProcessList { full: false });
        }
        if is(1, "FULL") && is(2, "PROCESSLIST") && words.len() == 3 {
            return Some(AboutSessions::ShowProcessList { full: true });
        }
        if is(1, "ENGINE") || is(1, "EXPLAIN") || is(1, "ANALYZE") || has("PROCESSLIST") {
            return Some(refused(
                "SHOW of another connection's statements or the backend's engine status",
            ));
        }
    }
    let for_connection = words
        .windows(2)
        .any(|w| w[0].eq_ignore_ascii_case("FOR") && w[1].eq_ignore_ascii_case("CONNECTION"));
    if for_connection {
        return Some(refused("EXPLAIN FOR CONNECTION"));
    }
    if has("PERFORMANCE_SCHEMA") || has("SYS") {
        return Some(refused(
            "performance_schema and sys (they describe the backend server's sessions)",
        ));
    }
    if ["INNODB_TRX", "INNODB_LOCKS", "INNODB_LOCK_WAITS"]
        .iter()
        .any(|t| has(t))
    {
        return Some(refused(
            "information_schema.INNODB_TRX and its lock tables (they describe the backend \
             server's transactions)",
        ));
    }
    has("PROCESSLIST").then_some(AboutSessions::ProcessListQuery)
}

fn refused(what: &str) -> AboutSessions {
    AboutSessions::Refused(ServerError::not_supported(what))
}

/// `KILL [HARD|SOFT] [CONNECTION|QUERY] id` or `KILL … USER name`
/// (<https://mariadb.com/kb/en/kill/>).
fn kill(sql: &str) -> AboutSessions {
    let mut rest = sql::strip_leading_words(sql, &["KILL"]).unwrap_or("");
    for word in ["HARD", "SOFT"] {
        if let Some(r) = sql::strip_leading_words(rest, &[word]) {
            rest = r;
        }
    }
    let mut query_only = false;
    if let Some(r) = sql::strip_leading_words(rest, &["QUERY"]) {
        (rest, query_only) = (r, true);
    } else if let Some(r) = sql::strip_leading_words(rest, &["CONNECTION"]) {
        rest = r;
    }
    let target = if let Some(user) = sql::strip_leading_words(rest, &["USER"]) {
        user_name(user).map(KillTarget::User)
    } else {
        rest.parse().ok().map(KillTarget::Session)
    };
    match target {
        Some(target) => AboutSessions::Kill(Kill { query_only, target }),
        None => refused("KILL of anything but a session id or a user name"),
    }
}

/// The user part of `name`, `'name'`, `"name"` or `` `name` ``, optionally followed by
/// `@host` (the proxy's users are not per host).
fn user_name(text: &str) -> Option<String> {
    let text = text.trim();
    let (user, rest) = match text.chars().next()? {
        q @ ('\'' | '"' | '`') => {
            let end = text[1..].find(q)? + 1;
            (&text[1..end], &text[end + 1..])
        }
        _ => match text.find('@') {
            Some(at) => (&text[..at], &text[at..]),
            None => (text, ""),
        },
    };
    let valid =
        |s: &str| !s.is_empty() && s.chars().all(|c| c.is_alphanumeric() || "_$.-".contains(c));
    (valid(user) && (rest.is_empty() || rest.starts_with('@'))).then(|| user.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kill(query_only: bool, target: KillTarget) -> Option<AboutSessions> {
        Some(AboutSessions::Kill(Kill { query_only, target }))
    }

    #[test]
    fn recognises_kill_in_every_form() {
        assert_eq!(
            about_sessions("KILL 5"),
            kill(false, KillTarget::Session(5))
        );
        assert_eq!(
            about_sessions("kill hard query 7"),
            kill(true, KillTarget::Session(7))
        );
        assert_eq!(
            about_sessions("/* x */ KILL SOFT CONNECTION 8 ;"),
            kill(false, KillTarget::Session(8))
        );
        assert_eq!(
            about_sessions("KILL USER 'app'@'%'"),
            kill(false, KillTarget::User("app".into()))
        );
        assert_eq!(
            about_sessions("kill query user app"),
            kill(true, KillTarget::User("app".into()))
        );
        for refused_form in ["KILL QUERY ID 5", "KILL (SELECT 1)", "KILL USER 'a'b'"] {
            assert!(
                matches!(
                    about_sessions(refused_form),
                    Some(AboutSessions::Refused(_))
                ),
                "{refused_form}"
            );
        }
    }

    #[test]
    fn recognises_process_lists_and_other_views_of_backend_sessions() {
        assert_eq!(
            about_sessions("SHOW PROCESSLIST"),
            Some(AboutSessions::ShowProcessList { full: false })
        );
        assert_eq!(
            about_sessions("show full processlist;"),
            Some(AboutSessions::ShowProcessList { full: true })
        );
        for sql in [
            "SELECT * FROM information_schema.PROCESSLIST",
            "select count(*) from `information_schema`.`processlist` where id > 1",
            "SELECT 1 FROM dual WHERE EXISTS (SELECT 1 FROM information_schema.processlist)",
            "/*!50000 SELECT * FROM information_schema.processlist */",
        ] {
            assert_eq!(
                about_sessions(sql),
                Some(AboutSessions::ProcessListQuery),
                "{sql}"
            );
        }
        for sql in [
            "SHOW ENGINE INNODB STATUS",
            "SHOW EXPLAIN FOR 12",
            "EXPLAIN FORMAT=JSON FOR CONNECTION 12",
            "SELECT * FROM performance_schema.threads",
            "SELECT * FROM sys.processlist",
            "SELECT trx_query FROM information_schema.INNODB_TRX",
            "SELECT 1; KILL 5",
            "SELECT 1; SELECT * FROM information_schema.PROCESSLIST",
        ] {
            assert!(
                matches!(about_sessions(sql), Some(AboutSessions::Refused(_))),
                "{sql}"
            );
        }
        for sql in [
            "SELECT 'KILL 5', 'processlist'",
            "SELECT * FROM payment WHERE note = 'for connection'",
            "SELECT system_user FROM users FOR UPDATE",
            "SHOW ENGINES",
        ] {
            assert_eq!(about_sessions(sql), None, "{sql}");
        }
    }
}
