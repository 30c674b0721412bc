//! Statements the frontend answers or adjusts itself because they concern the logical schema
//! or the session rather than a backend: `USE db`, `SHOW DATABASES`, `SELECT DATABASE()`,
//! `LAST_INSERT_ID()`, sequences, and the previous statement's diagnostics (`SHOW WARNINGS`,
//! `@@warning_count`, `ROW_COUNT()`), which a pooled backend connection no longer holds for
//! this session. Recognised by a tiny scanner so the pass-through path never pays for a full
//! parse.

use protocol::ServerError;
use rules::Rules;

/// Databases every client may select besides the logical schema; they are the same on every
/// backend.
const SYSTEM_DATABASES: [&str; 1] = ["information_schema"];

/// The physical database behind a logical database name, or `None` if clients cannot see it.
pub fn physical_database<'r>(rules: &'r Rules, logical: &str) -> Option<&'r str> {
    if logical == rules.schema.name {
        let ds = rules.data_sources.get(&rules.schema.default_data_source)?;
        return Some(ds.database.as_str());
    }
    SYSTEM_DATABASES
        .iter()
        .find(|s| s.eq_ignore_ascii_case(logical))
        .copied()
}

/// With `information_schema` the current database, a statement naming its tables about
/// databases without the database reaches a backend as written, where they describe the
/// physical databases: the error refusing it (the logical view needs qualified names).
pub fn unqualified_system_tables(database: Option<&str>, sql: &str) -> Option<ServerError> {
    if !database.is_some_and(|d| d.eq_ignore_ascii_case(sql::INFORMATION_SCHEMA)) {
        return None;
    }
    let table = *sql::unqualified_system_tables(sql).first()?;
    Some(ServerError::not_supported(format!(
        "{table} without its database while information_schema is the current database \
         (write information_schema.{table})"
    )))
}

/// The databases `SHOW DATABASES` lists.
pub fn visible_databases(rules: &Rules) -> Vec<String> {
    let mut dbs: Vec<String> = SYSTEM_DATABASES.iter().map(|s| s.to_string()).collect();
    dbs.push(rules.schema.name.clone());
    dbs.sort();
    dbs
}

#[derive(Debug, PartialEq, Eq)]
pub enum Intercepted {
    /// `USE name`.
    Use(String),
    /// `SHOW DATABASES` / `SHOW SCHEMAS`, with an optional LIKE pattern.
    ShowDatabases(Option<String>),
    /// `SELECT DATABASE()` (or `SCHEMA()`), answered with the logical name; carries the
    /// column name as the client wrote it.
    SelectDatabase(String),
    /// `SELECT LAST_INSERT_ID()`: a routed INSERT may have run on any shard's connection, so
    /// the session answers from the ids its statements reported.
    LastInsertId(String),
    /// `SELECT NEXTVAL(seq)`, `SELECT NEXT VALUE FOR seq`, or the range form for batch
    /// loaders `SELECT NEXTVAL(seq, n)`: the next id(s) of a global sequence.
    NextVal {
        column: String,
        sequence: String,
        count: Option<u64>,
    },
    /// A question about the previous statement's outcome.
    Diagnostics(Diagnostics),
}

/// Questions about the previous statement's outcome, which the session answers from what it
/// kept of it.
#[derive(Debug, PartialEq, Eq)]
pub enum Diagnostics {
    /// `SHOW WARNINGS` (all levels) or `SHOW ERRORS` (errors only), with `LIMIT [offset,] n`.
    List {
        errors_only: bool,
        offset: u64,
        limit: Option<u64>,
    },
    /// `SHOW COUNT(*) WARNINGS|ERRORS` or `SELECT @@warning_count` / `@@error_count`; carries
    /// the column name.
    Count { errors_only: bool, column: String },
    /// `SELECT ROW_COUNT()`; carries the column name.
    RowCount(String),
}

/// Recognises the statements the frontend handles itself; `None` for everything else.
pub fn intercept(sql: &[u8]) -> Option<Intercepted> {
    let mut s = Scanner { sql, pos: 0 };
    let first = s.word()?;
    if first.eq_ignore_ascii_case(b"use") {
        let name = s.identifier()?;
        s.end().then_some(Intercepted::Use(name))
    } else if first.eq_ignore_ascii_case(b"select") {
        s.skip_space();
        let start = s.pos;
        if s.sql[s.pos..].starts_with(b"@@") {
            return count_variable(s, start);
        }
        let function = s.word()?;
        if function.eq_ignore_ascii_case(b"row_count") {
            s.skip_space();
            if !(s.punct(b'(') && {
                s.skip_space();
                s.punct(b')')
            }) {
                return None;
            }
            let column = String::from_utf8_lossy(&s.sql[start..s.pos]).into_owned();
            return s
                .end()
                .then_some(Intercepted::Diagnostics(Diagnostics::RowCount(column)));
        }
        if function.eq_ignore_ascii_case(b"nextval") || function.eq_ignore_ascii_case(b"next") {
            return next_value(s, start, function.eq_ignore_ascii_case(b"next"));
        }
        let database =
            function.eq_ignore_ascii_case(b"database") || function.eq_ignore_ascii_case(b"schema");
        let last_insert_id = function.eq_ignore_ascii_case(b"last_insert_id");
        if !database && !last_insert_id {
            return None;
        }
        s.skip_space();
        if !s.punct(b'(')
            || !{
                s.skip_space();
                s.punct(b')')
            }
        {
            return None;
        }
        let column = String::from_utf8_lossy(&s.sql[start..s.pos]).into_owned();
        if !s.end() {
            return None;
        }
        Some(if database {
            Intercepted::SelectDatabase(column)
        } else {
            Intercepted::LastInsertId(column)
        })
    } else if first.eq_ignore_ascii_case(b"show") {
        let what = s.word()?;
        if what.eq_ignore_ascii_case(b"warnings") || what.eq_ignore_ascii_case(b"errors") {
            return list_diagnostics(s, what.eq_ignore_ascii_case(b"errors"));
        }
        if what.eq_ignore_ascii_case(b"count") {
            return count_diagnostics(s);
        }
        if !(what.eq_ignore_ascii_case(b"databases") || what.eq_ignore_ascii_case(b"schemas")) {
            return None;
        }
        if s.end() {
            return Some(Intercepted::ShowDatabases(None));
        }
        let like = s.word()?;
        if !like.eq_ignore_ascii_case(b"like") {
            return None;
        }
        let pattern = s.string_literal()?;
        s.end().then_some(Intercepted::ShowDatabases(Some(pattern)))
    } else {
        None
    }
}

/// The rest of `SHOW WARNINGS` / `SHOW ERRORS`: nothing, or `LIMIT [offset,] count`.
fn list_diagnostics(mut s: Scanner<'_>, errors_only: bool) -> Option<Intercepted> {
    let (mut offset, mut limit) = (0, None);
    if !s.end() {
        if !s.word()?.eq_ignore_ascii_case(b"limit") {
            return None;
        }
        let first = s.number()?;
        s.skip_space();
        if s.punct(b',') {
            offset = first;
            limit = Some(s.number()?);
        } else {
            limit = Some(first);
        }
        if !s.end() {
            return None;
        }
    }
    Some(Intercepted::Diagnostics(Diagnostics::List {
        errors_only,
        offset,
        limit,
    }))
}

/// The rest of `SHOW COUNT(*) WARNINGS|ERRORS`.
fn count_diagnostics(mut s: Scanner<'_>) -> Option<Intercepted> {
    s.skip_space();
    let star = s.punct(b'(')
        && {
            s.skip_space();
            s.punct(b'*')
        }
        && {
            s.skip_space();
            s.punct(b')')
        };
    let what = s.word()?;
    let errors_only = what.eq_ignore_ascii_case(b"errors");
    if !star || !(errors_only || what.eq_ignore_ascii_case(b"warnings")) || !s.end() {
        return None;
    }
    let column = if errors_only {
        "@@session.error_count"
    } else {
        "@@session.warning_count"
    };
    Some(Intercepted::Diagnostics(Diagnostics::Count {
        errors_only,
        column: column.to_string(),
    }))
}

/// The rest of `SELECT @@[session.]warning_count` / `@@[session.]error_count`.
fn count_variable(mut s: Scanner<'_>, start: usize) -> Option<Intercepted> {
    s.pos += 2;
    let mut name = s.word()?;
    if name.eq_ignore_ascii_case(b"session") && s.punct(b'.') {
        name = s.word()?;
    }
    let errors_only = name.eq_ignore_ascii_case(b"error_count");
    if !errors_only && !name.eq_ignore_ascii_case(b"warning_count") {
        return None;
    }
    let column = String::from_utf8_lossy(&s.sql[start..s.pos]).into_owned();
    s.end()
        .then_some(Intercepted::Diagnostics(Diagnostics::Count {
            errors_only,
            column,
        }))
}

/// The rest of `SELECT NEXTVAL(seq[, n])` or `SELECT NEXT VALUE FOR seq`.
fn next_value(mut s: Scanner<'_>, start: usize, next_value_for: bool) -> Option<Intercepted> {
    let (sequence, count) = if next_value_for {
        let value = s.word()?;
        let r#for = s.word()?;
        if !value.eq_ignore_ascii_case(b"value") || !r#for.eq_ignore_ascii_case(b"for") {
            return None;
        }
        (s.identifier()?, None)
    } else {
        s.skip_space();
        if !s.punct(b'(') {
            return None;
        }
        let sequence = s.identifier()?;
        s.skip_space();
        let count = if s.punct(b',') {
            let n = s.word()?;
            Some(std::str::from_utf8(n).ok()?.parse().ok()?)
        } else {
            None
        };
        s.skip_space();
        if !s.punct(b')') {
            return None;
        }
        (sequence, count)
    };
    let column = String::from_utf8_lossy(&s.sql[start..s.pos])
        .trim()
        .to_string();
    s.end().then_some(Intercepted::NextVal {
        column,
        sequence,
        count,
    })
}

/// MySQL LIKE matching: `%` matches any run of characters, `_` one character, and `\`
/// takes the next character literally (a trailing one stands for itself); case-insensitive
/// as for identifiers. Greedy with a single backtrack point, the last `%` seen, so it takes
/// O(pattern × text) steps and constant stack whatever the pattern (`%%%…z` or 300,000 `%`).
pub fn like_matches(pattern: &str, text: &str) -> bool {
    enum Pat {
        Any,
        One,
        Char(char),
    }
    let mut pat = Vec::with_capacity(pattern.len());
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        pat.push(match c {
            '%' => Pat::Any,
            '_' => Pat::One,
            '\\' => Pat::Char(chars.next().unwrap_or('\\')),
            c => Pat::Char(c),
        });
    }
    let text: Vec<char> = text.chars().collect();
    let (mut p, mut t) = (0, 0);
    // After the last `%`: where the pattern resumes, and where in the text it was tried.
    let mut retry: Option<(usize, usize)> = None;
    while t < text.len() {
        match pat.get(p) {
            Some(Pat::Any) => {
                p += 1;
                retry = Some((p, t));
            }
            Some(Pat::One) => (p, t) = (p + 1, t + 1),
            Some(Pat::Char(c)) if c.eq_ignore_ascii_case(&text[t]) => (p, t) = (p + 1, t + 1),
            // A mismatch: let the last `%` swallow one more character, or fail.
            _ => match retry {
                Some((after, tried)) => {
                    (p, t) = (after, tried + 1);
                    retry = Some((after, tried + 1));
                }
                None => return false,
            },
        }
    }
    pat[p..].iter().all(|x| matches!(x, Pat::Any))
}

struct Scanner<'a> {
    sql: &'a [u8],
    pos: usize,
}

impl<'a> Scanner<'a> {
    fn skip_space(&mut self) {
        loop {
            while self.pos < self.sql.len() && self.sql[self.pos].is_ascii_whitespace() {
                self.pos += 1;
            }
            let rest = &self.sql[self.pos..];
            if rest.starts_with(b"/*") && !rest.starts_with(b"/*!") {
                match rest.windows(2).position(|w| w == b"*/") {
                    Some(end) => self.pos += end + 2,
                    None => return,
                }
            } else if rest.starts_with(b"#") || rest.starts_with(b"-- ") {
                match rest.iter().position(|&b| b == b'\n') {
                    Some(end) => self.pos += end + 1,
                    None => self.pos = self.sql.len(),
                }
            } else {
                return;
            }
        }
    }

    fn punct(&mut self, c: u8) -> bool {
        if self.sql.get(self.pos) == Some(&c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn word(&mut self) -> Option<&'a [u8]> {
        self.skip_space();
        let start = self.pos;
        while self.pos < self.sql.len()
            && (self.sql[self.pos].is_ascii_alphanumeric() || self.sql[self.pos] == b'_')
        {
            self.pos += 1;
        }
        (self.pos > start).then(|| &self.sql[start..self.pos])
    }

    fn number(&mut self) -> Option<u64> {
        std::str::from_utf8(self.word()?).ok()?.parse().ok()
    }

    fn identifier(&mut self) -> Option<String> {
        self.skip_space();
        if self.sql.get(self.pos) == Some(&b'`') {
            let mut out = Vec::new();
            self.pos += 1;
            loop {
                match self.sql.get(self.pos)? {
                    b'`' if self.sql.get(self.pos + 1) == Some(&b'`') => {
                        out.push(b'`');
                        self.pos += 2;
                    }
                    b'`' => {
                        self.pos += 1;
                        return String::from_utf8(out).ok();
                    }
                    &b => {
                        out.push(b);
                        self.pos += 1;
                    }
                }
            }
        }
        let start = self.pos;
        while self.pos < self.sql.len()
            && (self.sql[self.pos].is_ascii_alphanumeric()
                || self.sql[self.pos] == b'_'
                || self.sql[self.pos] == b'$'
                || self.sql[self.pos] >= 0x80)
        {
            self.pos += 1;
        }
        (self.pos > start).then(|| String::from_utf8_lossy(&self.sql[start..self.pos]).into_owned())
    }

    /// A quoted string's value, escapes resolved as MySQL does.
    fn string_literal(&mut self) -> Option<String> {
        self.skip_space();
        let start = self.pos;
        let quote = *self.sql.get(start)?;
        if quote != b'\'' && quote != b'"' {
            return None;
        }
        self.pos += 1;
        loop {
            match *self.sql.get(self.pos)? {
                b'\\' => self.pos += 2,
                b if b == quote && self.sql.get(self.pos + 1) == Some(&quote) => self.pos += 2,
                b if b == quote => {
                    self.pos += 1;
                    let text = std::str::from_utf8(&self.sql[start..self.pos]).ok()?;
                    return Some(sql::unquote(text).into_owned());
                }
                _ => self.pos += 1,
            }
        }
    }

    /// True when only whitespace, comments and an optional `;` remain.
    fn end(&mut self) -> bool {
        self.skip_space();
        if self.sql.get(self.pos) == Some(&b';') {
            self.pos += 1;
            self.skip_space();
        }
        self.pos == self.sql.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_questions_about_the_previous_statement() {
        let list = |errors_only, offset, limit| {
            Some(Intercepted::Diagnostics(Diagnostics::List {
                errors_only,
                offset,
                limit,
            }))
        };
        assert_eq!(intercept(b"SHOW WARNINGS"), list(false, 0, None));
        assert_eq!(intercept(b"show errors limit 1"), list(true, 0, Some(1)));
        assert_eq!(
            intercept(b"SHOW WARNINGS LIMIT 2, 3;"),
            list(false, 2, Some(3))
        );
        assert_eq!(intercept(b"SHOW WARNINGS LIMIT x"), None);
        let count = |errors_only, column: &str| {
            Some(Intercepted::Diagnostics(Diagnostics::Count {
                errors_only,
                column: column.into(),
            }))
        };
        assert_eq!(
            intercept(b"SHOW COUNT(*) WARNINGS"),
            count(false, "@@session.warning_count")
        );
        assert_eq!(
            intercept(b"show count( * ) errors"),
            count(true, "@@session.error_count")
        );
        assert_eq!(
            intercept(b"SELECT @@warning_count"),
            count(false, "@@warning_count")
        );
        assert_eq!(
            intercept(b"SELECT @@SESSION.error_count"),
            count(true, "@@SESSION.error_count")
        );
        assert_eq!(intercept(b"SELECT @@warning_count, 1"), None);
        assert_eq!(intercept(b"SELECT @@version"), None);
        assert_eq!(
            intercept(b"select row_count()"),
            Some(Intercepted::Diagnostics(Diagnostics::RowCount(
                "row_count()".into()
            )))
        );
        assert_eq!(intercept(b"SELECT ROW_COUNT() + 1"), None);
    }

    #[test]
    fn recognises_use_and_show_databases() {
        assert_eq!(
            intercept(b"use bank"),
            Some(Intercepted::Use("bank".into()))
        );
        assert_eq!(
            intercept(b"  USE `my``db` ; "),
            Some(Intercepted::Use("my`db".into()))
        );
        assert_eq!(
            intercept(b"/* hi */ show databases"),
            Some(Intercepted::ShowDatabases(None))
        );
        assert_eq!(
            intercept(b"SHOW SCHEMAS LIKE 'b%'"),
            Some(Intercepted::ShowDatabases(Some("b%".into())))
        );
        assert_eq!(intercept(b"select 1"), None);
        assert_eq!(
            intercept(b"SELECT DATABASE()"),
            Some(Intercepted::SelectDatabase("DATABASE()".into()))
        );
        assert_eq!(
            intercept(b"select schema( ) ;"),
            Some(Intercepted::SelectDatabase("schema( )".into()))
        );
        assert_eq!(intercept(b"select database() from t"), None);
        assert_eq!(
            intercept(b"SELECT LAST_INSERT_ID()"),
            Some(Intercepted::LastInsertId("LAST_INSERT_ID()".into()))
        );
        assert_eq!(intercept(b"SELECT LAST_INSERT_ID(5)"), None);
        assert_eq!(
            intercept(b"SELECT NEXTVAL(payment_seq)"),
            Some(Intercepted::NextVal {
                column: "NEXTVAL(payment_seq)".into(),
                sequence: "payment_seq".into(),
                count: None
            })
        );
        assert_eq!(
            intercept(b"select next value for `s`"),
            Some(Intercepted::NextVal {
                column: "next value for `s`".into(),
                sequence: "s".into(),
                count: None
            })
        );
        assert_eq!(
            intercept(b"SELECT nextval(s, 500);"),
            Some(Intercepted::NextVal {
                column: "nextval(s, 500)".into(),
                sequence: "s".into(),
                count: Some(500)
            })
        );
        assert_eq!(intercept(b"SELECT nextval(s) + 1"), None);
        assert_eq!(intercept(b"use bank; select 1"), None);
        assert_eq!(intercept(b"show tables"), None);
        assert_eq!(intercept(b"user_defined()"), None);
    }

    #[test]
    fn refuses_unqualified_system_tables_in_information_schema_only() {
        let sql = "SELECT TABLE_NAME FROM tables WHERE TABLE_SCHEMA = 'bank'";
        let err = unqualified_system_tables(Some("INFORMATION_SCHEMA"), sql).unwrap();
        assert_eq!(err.code, 1235);
        assert!(unqualified_system_tables(Some("bank"), sql).is_none());
        assert!(unqualified_system_tables(None, sql).is_none());
        assert!(
            unqualified_system_tables(Some("information_schema"), "SELECT * FROM PROCESSLIST")
                .is_none()
        );
    }

    #[test]
    fn like_semantics() {
        assert!(like_matches("b%", "bank"));
        assert!(like_matches("BAN_", "bank"));
        assert!(!like_matches("b_", "bank"));
        assert!(like_matches("%", ""));
        assert!(like_matches("a\\%", "a%"));
        assert!(!like_matches("a\\%", "ab"));
        assert!(like_matches("%a%b%", "xaybz"));
        assert!(!like_matches("%a%b%", "xbya"));
        assert!(like_matches("a\\", "a\\"));
        assert!(like_matches("%_", "x"));
        assert!(!like_matches("_%_", "x"));
        assert!(like_matches("b%\\_x", "bank_x"));
        assert!(!like_matches("b%\\_x", "bankyx"));
    }

    #[test]
    fn like_is_fast_and_shallow_on_pathological_patterns() {
        let start = std::time::Instant::now();
        assert!(!like_matches(
            &format!("{}z", "%".repeat(26)),
            &"a".repeat(64)
        ));
        assert!(like_matches(&"%".repeat(300_000), "bank"));
        assert!(!like_matches(&"%a".repeat(150_000), &"a".repeat(1_000)));
        assert!(!like_matches(
            &format!("{}b", "%a".repeat(100)),
            &"a".repeat(10_000)
        ));
        // Backtracking recursion took minutes and overflowed the stack on these.
        assert!(start.elapsed() < std::time::Duration::from_secs(5));
    }

    #[test]
    fn string_literals_resolve_escapes() {
        assert_eq!(
            intercept(br"SHOW DATABASES LIKE 'it\'s\_%'"),
            Some(Intercepted::ShowDatabases(Some(r"it's\_%".into())))
        );
        assert_eq!(
            intercept(b"SHOW DATABASES LIKE 'a''b'"),
            Some(Intercepted::ShowDatabases(Some("a'b".into())))
        );
    }
}
