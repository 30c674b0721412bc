//! Values that belong to the client's session, not to the pooled backend connection that
//! runs its statement: `LAST_INSERT_ID()` (and `@@identity`, `@@last_insert_id`),
//! `ROW_COUNT()` and `FOUND_ROWS()`. The connection may have served another client last, so
//! the session finds every use of them in a statement's text (executable comments included)
//! and puts its own values in their place; a select item that held one is named by its text
//! as written, as the server would have named it.

use std::ops::Range;

use crate::lexer::{mentions, CodeTokens, Tok, Token, SELECT_LIST_END};

/// A value the session keeps for itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionValue {
    /// `LAST_INSERT_ID()`, `@@identity`, `@@last_insert_id`.
    LastInsertId,
    /// `ROW_COUNT()`.
    RowCount,
    /// `FOUND_ROWS()`.
    FoundRows,
    /// `CONNECTION_ID()`: the proxy session's id, not the backend connection's.
    ConnectionId,
    /// `USER()`, `SESSION_USER()`, `SYSTEM_USER()`: the client's login.
    User,
    /// `CURRENT_USER()` (or `CURRENT_USER` in a SELECT): the proxy account.
    CurrentUser,
    /// `@@port`, `@@global.port`: the proxy's port.
    Port,
    /// `@@max_statement_time`, `@@session.max_statement_time`: the limit the proxy holds the
    /// session's statements to, which may be a default of the proxy's that no backend knows.
    MaxStatementTime,
}

impl SessionValue {
    /// Whether a statement may change the value, so that a later statement of the same
    /// text cannot be given the value from before the text.
    fn changes_per_statement(self) -> bool {
        matches!(
            self,
            SessionValue::LastInsertId
                | SessionValue::RowCount
                | SessionValue::FoundRows
                | SessionValue::MaxStatementTime
        )
    }
}

/// What to do with one use of a session value.
pub enum Replacement {
    /// Leave it to the backend (its connection holds the session's value).
    Keep,
    /// Put this SQL expression in its place.
    With(String),
}

/// Why a statement's session values cannot be replaced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unreplaceable<E> {
    /// The caller refused this value.
    Refused(E),
    /// The value is used after the first statement of a multi-statement text, where the
    /// statements before it may have changed it.
    LaterStatement(SessionValue),
}

/// One use of a session value: where, which, and in which statement of the text.
struct Use {
    range: Range<usize>,
    value: SessionValue,
    statement: usize,
}

/// `sql` with every use of a session value replaced as `replace` says, and each select item
/// of the first statement that held a replaced use given its text as its name; `Ok(None)`
/// when nothing was replaced.
pub fn replace_session_values<E>(
    sql: &str,
    mut replace: impl FnMut(SessionValue) -> Result<Replacement, E>,
) -> Result<Option<String>, Unreplaceable<E>> {
    // Most statements use none of them: a byte scan spares those the lexing.
    let named = |w: &str| mentions(sql, w);
    let may_use = [
        "insert_id",
        "identity",
        "row_count",
        "found_rows",
        "connection_id",
        "user",
        "port",
    ]
    .into_iter()
    .any(named)
        || (sql.contains('@') && named("max_statement_time"));
    if !may_use {
        return Ok(None);
    }
    let (uses, items) = scan(sql);
    let mut edits: Vec<(Range<usize>, String)> = Vec::new();
    for u in uses {
        match replace(u.value).map_err(Unreplaceable::Refused)? {
            Replacement::Keep => {}
            Replacement::With(_) if u.statement > 0 && u.value.changes_per_statement() => {
                return Err(Unreplaceable::LaterStatement(u.value))
            }
            Replacement::With(expr) => edits.push((u.range, expr)),
        }
    }
    if edits.is_empty() {
        return Ok(None);
    }
    for item in items {
        if edits.iter().any(|(r, _)| item.contains(&r.start)) {
            let name = sql.get(item.clone()).unwrap_or("").replace('`', "``");
            edits.push((item.end..item.end, format!(" AS `{name}`")));
        }
    }
    edits.sort_by_key(|(r, _)| (r.start, r.end));
    let mut out = String::with_capacity(sql.len() + 64);
    let mut at = 0;
    for (range, text) in edits {
        out.push_str(sql.get(at..range.start).unwrap_or(""));
        out.push_str(&text);
        at = range.end;
    }
    out.push_str(sql.get(at..).unwrap_or(""));
    Ok(Some(out))
}

/// The uses of session values in `sql`, and the unnamed items of the first statement's
/// select list (as byte ranges).
fn scan(sql: &str) -> (Vec<Use>, Vec<Range<usize>>) {
    let tokens: Vec<Token> = CodeTokens::new(sql).collect();
    let text = |t: &Token| sql.get(t.start..t.end).unwrap_or("");
    let word = |i: usize, w: &str| {
        tokens
            .get(i)
            .is_some_and(|t| t.kind == Tok::Word && text(t).eq_ignore_ascii_case(w))
    };
    let punct = |i: usize, c: u8| tokens.get(i).is_some_and(|t| t.kind == Tok::Punct(c));
    // Adjacent: `@@identity`, not `@ @identity`.
    let tight = |i: usize| tokens.get(i).is_some_and(|t| !t.space_before);
    let mut uses = Vec::new();
    let mut statement = 0;
    let mut select_statement = word(0, "SELECT");
    let mut i = 0;
    while i < tokens.len() {
        let t = &tokens[i];
        let found = match t.kind {
            Tok::Semicolon => {
                statement += 1;
                select_statement = word(i + 1, "SELECT");
                None
            }
            Tok::Word
                if punct(i + 1, b'(') && punct(i + 2, b')') && !punct(i.wrapping_sub(1), b'.') =>
            {
                let value = match text(t).to_ascii_uppercase().as_str() {
                    "LAST_INSERT_ID" => Some(SessionValue::LastInsertId),
                    "ROW_COUNT" => Some(SessionValue::RowCount),
                    "FOUND_ROWS" => Some(SessionValue::FoundRows),
                    "CONNECTION_ID" => Some(SessionValue::ConnectionId),
                    "USER" | "SESSION_USER" | "SYSTEM_USER" => Some(SessionValue::User),
                    "CURRENT_USER" => Some(SessionValue::CurrentUser),
                    _ => None,
                };
                value.map(|v| (v, i + 2))
            }
            Tok::Punct(b'@') if punct(i + 1, b'@') && tight(i + 1) && tight(i + 2) => {
                // `@@name` or `@@session.name` / `@@local.name`.
                let scoped = (word(i + 2, "session") || word(i + 2, "local"))
                    && punct(i + 3, b'.')
                    && tight(i + 3)
                    && tight(i + 4);
                let name = if scoped { i + 4 } else { i + 2 };
                let global =
                    word(i + 2, "global") && punct(i + 3, b'.') && tight(i + 3) && tight(i + 4);
                if word(name, "identity") || word(name, "last_insert_id") {
                    Some((SessionValue::LastInsertId, name))
                } else if word(if global { i + 4 } else { i + 2 }, "port") {
                    Some((SessionValue::Port, if global { i + 4 } else { i + 2 }))
                } else if !global && word(name, "max_statement_time") {
                    Some((SessionValue::MaxStatementTime, name))
                } else {
                    None
                }
            }
            // `CURRENT_USER` without parentheses is a value only where an expression is; a
            // SELECT is where clients write it (elsewhere it may name an account: DEFINER).
            Tok::Word
                if text(t).eq_ignore_ascii_case("CURRENT_USER")
                    && !punct(i + 1, b'(')
                    && !punct(i + 1, b'.')
                    && !punct(i.wrapping_sub(1), b'.')
                    && select_statement =>
            {
                Some((SessionValue::CurrentUser, i))
            }
            _ => None,
        };
        if let Some((value, last)) = found {
            uses.push(Use {
                range: t.start..tokens[last].end,
                value,
                statement,
            });
            i = last;
        }
        i += 1;
    }
    (uses, select_items(sql, &tokens))
}

/// The items of the first statement's select list that have no alias, as byte ranges.
fn select_items(sql: &str, tokens: &[Token]) -> Vec<Range<usize>> {
    let text = |t: &Token| sql.get(t.start..t.end).unwrap_or("");
    let is_word = |t: &Token, w: &str| t.kind == Tok::Word && text(t).eq_ignore_ascii_case(w);
    let mut items = Vec::new();
    let Some(first) = tokens.first() else {
        return items;
    };
    if !is_word(first, "SELECT") {
        return items;
    }
    let mut depth = 0usize;
    // The tokens of the current item.
    let mut item: Vec<&Token> = Vec::new();
    let mut finish = |item: &mut Vec<&Token>| {
        if let (Some(first), Some(last)) = (item.first(), item.last()) {
            let before = item.len().checked_sub(2).map(|i| item[i]);
            // `expr AS name`, `expr name`: a name after a value or a closing parenthesis.
            let aliased = matches!(last.kind, Tok::Word | Tok::QuotedIdent | Tok::Str(_))
                && before.is_some_and(|b| {
                    is_word(b, "AS")
                        || matches!(
                            b.kind,
                            Tok::Punct(b')')
                                | Tok::QuotedIdent
                                | Tok::Str(_)
                                | Tok::Int
                                | Tok::Decimal
                        )
                });
            if !aliased {
                items.push(first.start..last.end);
            }
        }
        item.clear();
    };
    for t in &tokens[1..] {
        match t.kind {
            Tok::Semicolon => break,
            Tok::Punct(b'(') => depth += 1,
            Tok::Punct(b')') => depth = depth.saturating_sub(1),
            Tok::Punct(b',') if depth == 0 => {
                finish(&mut item);
                continue;
            }
            Tok::Word if depth == 0 && SELECT_LIST_END.iter().any(|w| is_word(t, w)) => break,
            // Select options are not part of the first item.
            Tok::Word
                if depth == 0
                    && item.is_empty()
                    && [
                        "DISTINCT",
                        "ALL",
                        "DISTINCTROW",
                        "SQL_NO_CACHE",
                        "SQL_CACHE",
                        "STRAIGHT_JOIN",
                        "HIGH_PRIORITY",
                        "SQL_CALC_FOUND_ROWS",
                        "SQL_SMALL_RESULT",
                        "SQL_BIG_RESULT",
                        "SQL_BUFFER_RESULT",
                    ]
                    .iter()
                    .any(|w| is_word(t, w)) =>
            {
                continue
            }
            _ => {}
        }
        item.push(t);
    }
    finish(&mut item);
    items
}

/// Whether `FOUND_ROWS()` after `sql`, a statement that returned rows, may differ from the
/// number of rows it returned, so that only the server that ran it can tell: with a LIMIT,
/// MariaDB counts the rows an OFFSET skipped, the whole result of a set operation, and every
/// row matched with SQL_CALC_FOUND_ROWS. A LIMIT in a subquery answers `true` too, which
/// only costs asking.
pub fn found_rows_beyond_returned(sql: &str) -> bool {
    if !mentions(sql, "limit") {
        return false;
    }
    const BEYOND: [&str; 5] = [
        "OFFSET",
        "UNION",
        "INTERSECT",
        "EXCEPT",
        "SQL_CALC_FOUND_ROWS",
    ];
    let tokens: Vec<Token> = CodeTokens::new(sql).collect();
    let word = |t: &Token| (t.kind == Tok::Word).then(|| sql.get(t.start..t.end).unwrap_or(""));
    tokens.iter().enumerate().any(|(i, t)| match word(t) {
        Some(w) if BEYOND.iter().any(|b| w.eq_ignore_ascii_case(b)) => true,
        // `LIMIT offset, count`
        Some(w) if w.eq_ignore_ascii_case("LIMIT") => tokens
            .get(i + 2)
            .is_some_and(|t| t.kind == Tok::Punct(b',')),
        _ => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replaced(sql: &str) -> Option<String> {
        replace_session_values::<()>(sql, |v| {
            Ok(Replacement::With(match v {
                SessionValue::LastInsertId => "7".into(),
                SessionValue::RowCount => "(-1)".into(),
                SessionValue::FoundRows => "3".into(),
                SessionValue::ConnectionId => "5".into(),
                SessionValue::User => "'u@h'".into(),
                SessionValue::CurrentUser => "'u@%'".into(),
                SessionValue::Port => "3307".into(),
                SessionValue::MaxStatementTime => "2.5e0".into(),
            }))
        })
        .unwrap()
    }

    #[test]
    fn the_sessions_time_limit_is_its_own_but_the_global_one_is_the_servers() {
        assert_eq!(
            replaced("SELECT @@max_statement_time, @@session.MAX_STATEMENT_TIME + 1 AS t")
                .as_deref(),
            Some("SELECT 2.5e0 AS `@@max_statement_time`, 2.5e0 + 1 AS t")
        );
        assert_eq!(replaced("SELECT @@global.max_statement_time"), None);
        assert_eq!(replaced("SELECT max_statement_time FROM t"), None);
    }

    #[test]
    fn every_use_gets_the_session_value_and_items_keep_their_names() {
        assert_eq!(
            replaced("SELECT LAST_INSERT_ID() AS id").as_deref(),
            Some("SELECT 7 AS id")
        );
        assert_eq!(
            replaced("SELECT @@identity").as_deref(),
            Some("SELECT 7 AS `@@identity`")
        );
        assert_eq!(
            replaced("select last_insert_id()+0, row_count ( ) n").as_deref(),
            Some("select 7+0 AS `last_insert_id()+0`, (-1) n")
        );
        assert_eq!(
            replaced("SELECT @@SESSION.last_insert_id, FOUND_ROWS()").as_deref(),
            Some("SELECT 7 AS `@@SESSION.last_insert_id`, 3 AS `FOUND_ROWS()`")
        );
        assert_eq!(
            replaced("INSERT INTO t (parent) VALUES (LAST_INSERT_ID())").as_deref(),
            Some("INSERT INTO t (parent) VALUES (7)")
        );
        assert_eq!(
            replaced("SELECT x FROM t WHERE id = /*M! LAST_INSERT_ID() */").as_deref(),
            Some("SELECT x FROM t WHERE id = /*M! 7 */")
        );
        assert_eq!(
            replaced("SELECT /*!50000 ROW_COUNT() */").as_deref(),
            Some("SELECT /*!50000 (-1) AS `ROW_COUNT()` */")
        );
    }

    #[test]
    fn identity_values_are_the_proxys_in_every_statement_of_a_text() {
        assert_eq!(
            replaced("SELECT CONNECTION_ID(), user(), SESSION_USER() + 0, CURRENT_USER, @@port")
                .as_deref(),
            Some(
                "SELECT 5 AS `CONNECTION_ID()`, 'u@h' AS `user()`, 'u@h' + 0 AS \
                 `SESSION_USER() + 0`, 'u@%' AS `CURRENT_USER`, 3307 AS `@@port`"
            )
        );
        assert_eq!(
            replaced("KILL CONNECTION_ID(); SELECT @@global.port, SYSTEM_USER() u").as_deref(),
            Some("KILL 5; SELECT 3307, 'u@h' u")
        );
        for sql in [
            "CREATE DEFINER = CURRENT_USER VIEW v AS SELECT 1",
            "SELECT u.user, `user`, current_user.x FROM user u",
            "SELECT @@portx, @@session.port2",
        ] {
            assert_eq!(replaced(sql), None, "{sql}");
        }
    }

    #[test]
    fn other_text_is_left_alone() {
        for sql in [
            "SELECT 'LAST_INSERT_ID()', `row_count`, t.found_rows FROM t",
            "SELECT LAST_INSERT_ID(5)",
            "SELECT @identity, @ @identity, @@identityx",
            "SELECT 1 -- LAST_INSERT_ID()",
            "SELECT 1 /* ROW_COUNT() */",
        ] {
            assert_eq!(replaced(sql), None, "{sql}");
        }
    }

    #[test]
    fn later_statements_and_refusals_are_errors() {
        let r = replace_session_values::<()>(
            "INSERT INTO t VALUES (1); SELECT LAST_INSERT_ID()",
            |_| Ok(Replacement::With("1".into())),
        );
        assert_eq!(
            r,
            Err(Unreplaceable::LaterStatement(SessionValue::LastInsertId))
        );
        let r = replace_session_values("SELECT FOUND_ROWS()", |_| Err("no"));
        assert_eq!(r, Err(Unreplaceable::Refused("no")));
        let kept = replace_session_values::<()>("SELECT 1; SELECT FOUND_ROWS()", |_| {
            Ok(Replacement::Keep)
        });
        assert_eq!(kept, Ok(None));
    }

    #[test]
    fn found_rows_is_the_rows_returned_unless_an_offset_or_a_set_operation_is_limited() {
        for sql in [
            "SELECT a FROM t",
            "SELECT a FROM t LIMIT 3",
            "SELECT a FROM t WHERE b = 'x LIMIT 1, 2' LIMIT ?",
            "SELECT a FROM t UNION SELECT b FROM u",
            "SELECT SQL_CALC_FOUND_ROWS a FROM t",
        ] {
            assert!(!found_rows_beyond_returned(sql), "{sql}");
        }
        for sql in [
            "SELECT a FROM t LIMIT 1, 2",
            "SELECT a FROM t LIMIT ?, ?",
            "select a from t limit 2 offset 1",
            "SELECT a FROM t UNION ALL SELECT b FROM u LIMIT 1",
            "SELECT SQL_CALC_FOUND_ROWS a FROM t LIMIT 1",
            "SELECT /*!40000 SQL_CALC_FOUND_ROWS */ a FROM t LIMIT 1",
        ] {
            assert!(found_rows_beyond_returned(sql), "{sql}");
        }
    }
}
