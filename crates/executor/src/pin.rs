//! Pinning: what keeps a session's backend connections out of the pool between statements.
//!
//! A session borrows connections per statement (or per transaction) and gives them back when
//! the statement is over. Some state lives on a backend connection where the proxy cannot track
//! or replay it — user variables, temporary tables, table and named locks, cursors, XA, SQL-level prepared statements, `LAST_INSERT_ID(expr)` —
//! and while any of it may exist the session keeps its connections. Statements are recognised
//! conservatively by their words (outside string literals and comments, as the `sql` lexer
//! reads them): a false match only costs multiplexing, a missed one would give wrong results.

use router::StatementKind;
use sql::{CodeTokens, Tok, Token};

/// Why a session keeps its backend connections; each is a label of `dbmesh_session_pinned`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinReason {
    /// BEGIN, or autocommit off, or the backend reports a transaction open.
    Transaction,
    UserVariables,
    TemporaryTables,
    LockTables,
    GetLock,
    /// A cursor opened by COM_STMT_EXECUTE, or `HANDLER`.
    Cursor,
    /// COM_STMT_SEND_LONG_DATA sent parameter data the next execute consumes.
    LongData,
    Xa,
    /// `LAST_INSERT_ID(expr)`: the backend's value is no longer what the session tracks.
    LastInsertId,
    /// `PREPARE` / `EXECUTE` in SQL.
    SqlPrepare,
    /// `CALL`: a procedure may leave any of the above behind.
    Call,
    /// `SET TRANSACTION …` without a scope: it applies to the session's next transaction on
    /// the connection it ran on, so that connection stays until the transaction is over.
    NextTransaction,
    /// A `SET` the parser could not read: what it changed cannot be recorded or replayed.
    UnreadSet,
}

impl PinReason {
    pub const ALL: [PinReason; 13] = [
        PinReason::Transaction,
        PinReason::UserVariables,
        PinReason::TemporaryTables,
        PinReason::LockTables,
        PinReason::GetLock,
        PinReason::Cursor,
        PinReason::LongData,
        PinReason::Xa,
        PinReason::LastInsertId,
        PinReason::SqlPrepare,
        PinReason::Call,
        PinReason::NextTransaction,
        PinReason::UnreadSet,
    ];

    pub fn label(self) -> &'static str {
        match self {
            PinReason::Transaction => "transaction",
            PinReason::UserVariables => "user_variables",
            PinReason::TemporaryTables => "temporary_tables",
            PinReason::LockTables => "lock_tables",
            PinReason::GetLock => "get_lock",
            PinReason::Cursor => "cursor",
            PinReason::LongData => "long_data",
            PinReason::Xa => "xa",
            PinReason::LastInsertId => "last_insert_id",
            PinReason::SqlPrepare => "sql_prepare",
            PinReason::Call => "call",
            PinReason::NextTransaction => "next_transaction",
            PinReason::UnreadSet => "unread_set",
        }
    }

    /// This reason's bit in a [`Pins`] set.
    pub fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

/// A set of reasons, one bit each.
pub type Pins = u16;

/// What a statement does to the session's pins.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Effects {
    set: Pins,
    clear: Pins,
}

impl Effects {
    pub fn set(reason: PinReason) -> Effects {
        Effects {
            set: reason.bit(),
            clear: 0,
        }
    }

    pub fn clear(reason: PinReason) -> Effects {
        Effects {
            set: 0,
            clear: reason.bit(),
        }
    }

    /// These effects followed by `next`'s.
    pub fn then(self, next: Effects) -> Effects {
        Effects {
            set: (self.set & !next.clear) | next.set,
            clear: (self.clear & !next.set) | next.clear,
        }
    }

    /// `pins` after the statement.
    pub fn apply(self, pins: Pins) -> Pins {
        (pins & !self.clear) | self.set
    }
}

/// One lexical item of a statement, as far as pinning (and the read/write split) cares.
#[derive(Debug, PartialEq, Eq)]
pub enum Item<'a> {
    /// A bare word.
    Word(&'a str),
    /// `@name` (a user variable).
    UserVariable,
    /// `@@name` (a system variable), with its scope if written: `session.read_only`.
    SystemVariable(&'a str),
    Punct(u8),
}

/// The items of `sql` as the `sql` lexer reads it: string literals, quoted identifiers and
/// comments dropped, the code of `/*! … */` and MariaDB's `/*M! … */` comments read as code.
pub fn items(sql: &str) -> Vec<Item<'_>> {
    let text = |t: &Token| sql.get(t.start..t.end).unwrap_or("");
    let mut tokens = CodeTokens::new(sql).peekable();
    let mut out = Vec::new();
    while let Some(t) = tokens.next() {
        match t.kind {
            Tok::Punct(b'@') => {
                let system = tokens
                    .next_if(|n| n.kind == Tok::Punct(b'@') && !n.space_before)
                    .is_some();
                if !system {
                    out.push(Item::UserVariable);
                    continue;
                }
                // `@@name` or `@@scope.name`, written without spaces.
                let mut name = None::<(usize, usize)>;
                while let Some(part) = tokens
                    .next_if(|n| !n.space_before && matches!(n.kind, Tok::Word | Tok::Punct(b'.')))
                {
                    name = Some((name.map_or(part.start, |(s, _)| s), part.end));
                }
                let name = name.map_or("", |(s, e)| sql.get(s..e).unwrap_or(""));
                out.push(Item::SystemVariable(name));
            }
            Tok::Punct(c) => out.push(Item::Punct(c)),
            Tok::Semicolon => out.push(Item::Punct(b';')),
            Tok::Placeholder => out.push(Item::Punct(b'?')),
            Tok::Word | Tok::Int | Tok::Decimal | Tok::Hex | Tok::Bits => {
                out.push(Item::Word(text(&t)))
            }
            Tok::Str(_) | Tok::NationalStr | Tok::QuotedIdent | Tok::KeptComment => {}
        }
    }
    out
}

/// A `SET` the router could not read (it would have been a session statement): the session
/// keeps the connection it runs on rather than let the change reach other sessions.
pub fn unread_set(kind: &StatementKind, sql: &str) -> Effects {
    if *kind == StatementKind::Other && sql::strip_leading_words(sql, &["SET"]).is_some() {
        Effects::set(PinReason::UnreadSet)
    } else {
        Effects::default()
    }
}

/// The pin effects of a statement text (several statements when separated by `;`), from its
/// [`items`] (lexed once per statement, for this and the read/write split).
pub fn scan(items: &[Item<'_>]) -> Effects {
    let mut effects = Effects::default();
    let mut add = |e: Effects| effects = effects.then(e);
    let is_word = |item: Option<&Item>, w: &str| matches!(item, Some(Item::Word(x)) if x.eq_ignore_ascii_case(w));
    for statement in items.split(|item| *item == Item::Punct(b';')) {
        let first = statement.first();
        let second = statement.get(1);
        let has = |w: &str| statement.iter().any(|item| is_word(Some(item), w));
        if is_word(first, "LOCK") || (is_word(first, "FLUSH") && has("LOCK")) {
            add(Effects::set(PinReason::LockTables));
        }
        if is_word(first, "UNLOCK") {
            add(Effects::clear(PinReason::LockTables));
        }
        if is_word(first, "CREATE") && has("TEMPORARY") {
            add(Effects::set(PinReason::TemporaryTables));
        }
        if is_word(first, "XA") {
            if is_word(second, "COMMIT") || is_word(second, "ROLLBACK") {
                add(Effects::clear(PinReason::Xa));
            } else {
                add(Effects::set(PinReason::Xa));
            }
        }
        if ["PREPARE", "EXECUTE", "DEALLOCATE"]
            .iter()
            .any(|w| is_word(first, w))
        {
            add(Effects::set(PinReason::SqlPrepare));
        }
        if is_word(first, "CALL") {
            add(Effects::set(PinReason::Call));
        }
        if is_word(first, "HANDLER") {
            add(Effects::set(PinReason::Cursor));
        }
        for (at, item) in statement.iter().enumerate() {
            let call = statement.get(at + 1) == Some(&Item::Punct(b'('));
            match item {
                Item::UserVariable => add(Effects::set(PinReason::UserVariables)),
                Item::Word(w) if w.eq_ignore_ascii_case("GET_LOCK") && call => {
                    add(Effects::set(PinReason::GetLock))
                }
                Item::Word(w)
                    if w.eq_ignore_ascii_case("LAST_INSERT_ID")
                        && call
                        && statement.get(at + 2) != Some(&Item::Punct(b')')) =>
                {
                    add(Effects::set(PinReason::LastInsertId))
                }
                _ => {}
            }
        }
    }
    effects
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pins_after(statements: &[&str]) -> Vec<&'static str> {
        let pins = statements.iter().fold(0, |p, s| scan(&items(s)).apply(p));
        PinReason::ALL
            .iter()
            .filter(|r| pins & r.bit() != 0)
            .map(|r| r.label())
            .collect()
    }

    #[test]
    fn each_situation_pins_and_plain_statements_do_not() {
        let cases: &[(&str, &[&str])] = &[
            ("SELECT * FROM t WHERE a = 'x@y.com' -- @z", &[]),
            ("SELECT @@session.sql_mode, @@time_zone", &[]),
            ("SELECT 'GET_LOCK(' , `found_rows`", &[]),
            ("SET @x = 1", &["user_variables"]),
            ("SELECT a INTO @x FROM t", &["user_variables"]),
            ("/*!40101 SET @OLD = @@X */", &["user_variables"]),
            ("/*M! SET @OLD = 1 */", &["user_variables"]),
            ("SELECT /*M!100000 GET_LOCK('a', 1) */", &["get_lock"]),
            ("create temporary table t (a int)", &["temporary_tables"]),
            ("LOCK TABLES t WRITE", &["lock_tables"]),
            ("FLUSH TABLES WITH READ LOCK", &["lock_tables"]),
            ("SELECT GET_LOCK('a', 1)", &["get_lock"]),
            ("SELECT SQL_CALC_FOUND_ROWS * FROM t LIMIT 1", &[]),
            ("XA START 'x'", &["xa"]),
            (
                "UPDATE t SET id = LAST_INSERT_ID(id + 1)",
                &["last_insert_id"],
            ),
            ("SELECT LAST_INSERT_ID()", &[]),
            ("PREPARE s FROM 'SELECT 1'", &["sql_prepare"]),
            ("HANDLER t OPEN", &["cursor"]),
            ("CALL p()", &["call"]),
            ("SELECT 1; LOCK TABLE t READ", &["lock_tables"]),
        ];
        for (sql, want) in cases {
            assert_eq!(pins_after(&[sql]), *want, "{sql}");
        }
    }

    #[test]
    fn items_are_what_the_lexer_reads() {
        use Item::*;
        assert_eq!(
            items("SELECT @@session.sql_mode, @x FROM t WHERE a = 'b;c' -- ;\n;"),
            [
                Word("SELECT"),
                SystemVariable("session.sql_mode"),
                Punct(b','),
                UserVariable,
                Word("x"),
                Word("FROM"),
                Word("t"),
                Word("WHERE"),
                Word("a"),
                Punct(b'='),
                Punct(b';'),
            ]
        );
        assert_eq!(
            items("/*!40101 SET @a = 1 */ /*+ hint */ `q` \"s\""),
            [Word("SET"), UserVariable, Word("a"), Punct(b'='), Word("1")]
        );
        assert_eq!(
            items("SELECT @@ x"),
            [Word("SELECT"), SystemVariable(""), Word("x")]
        );
    }

    #[test]
    fn releasing_statements_unpin() {
        assert!(pins_after(&["LOCK TABLES t READ", "UNLOCK TABLES"]).is_empty());
        assert!(pins_after(&["SELECT SQL_CALC_FOUND_ROWS 1", "SELECT FOUND_ROWS()"]).is_empty());
        assert!(pins_after(&["XA START 'x'", "XA END 'x'", "XA COMMIT 'x' ONE PHASE"]).is_empty());
        assert!(pins_after(&["SELECT SQL_CALC_FOUND_ROWS 1; SELECT FOUND_ROWS()"]).is_empty());
    }
}
