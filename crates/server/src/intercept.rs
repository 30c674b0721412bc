//! Statements the frontend answers or adjusts itself because they concern the logical schema
//! or the session rather than a backend: `USE db`, `SHOW DATABASES`, `SELECT DATABASE()`,
//! `LAST_INSERT_ID()`, sequences, and the previous statement's diagnostics (`SHOW WARNINGS`,
//! `@@warning_count`, `ROW_COUNT()`), which a pooled backend connection no longer holds for
//! this session. Recognised from the `sql` lexer's tokens so the pass-through path never pays
//! for a full parse.

use protocol::ServerError;
use rules::Rules;
use sql::{Lexer, Tok, Token};

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
    /// `SELECT @@[session.]dbmesh_transaction_mode`, with the column name as written.
    TransactionMode(String),
    /// `SET [SESSION] dbmesh_transaction_mode = 'xa' | 'local'` (also `@@[session.]`), with
    /// the value as written: the proxy's own variable, which no backend knows.
    SetTransactionMode(String),
    /// `SHOW DBMESH DIGEST`: the query digest.
    ShowDigest,
    /// `FLUSH DBMESH DIGEST`: empties the query digest.
    FlushDigest,
}

/// The session variable holding a session's transaction mode.
const TRANSACTION_MODE_VARIABLE: &str = "dbmesh_transaction_mode";

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
pub fn intercept(sql: &str) -> Option<Intercepted> {
    let mut s = Tokens::new(sql);
    let first = s.word()?;
    if first.eq_ignore_ascii_case("use") {
        let name = s.identifier()?;
        s.end().then_some(Intercepted::Use(name))
    } else if first.eq_ignore_ascii_case("select") {
        let start = s.peek()?.start;
        if s.punct(b'@') {
            // Only `@@warning_count`, `@@error_count` and the proxy's own variable are
            // answered here.
            return s.adjacent_punct(b'@').then(|| count_variable(s, start))?;
        }
        let function = s.word()?;
        if function.eq_ignore_ascii_case("row_count") {
            if !s.empty_parens() {
                return None;
            }
            let column = s.since(start).to_string();
            return s
                .end()
                .then_some(Intercepted::Diagnostics(Diagnostics::RowCount(column)));
        }
        if function.eq_ignore_ascii_case("nextval") || function.eq_ignore_ascii_case("next") {
            return next_value(s, start, function.eq_ignore_ascii_case("next"));
        }
        let database =
            function.eq_ignore_ascii_case("database") || function.eq_ignore_ascii_case("schema");
        let last_insert_id = function.eq_ignore_ascii_case("last_insert_id");
        if (!database && !last_insert_id) || !s.empty_parens() {
            return None;
        }
        let column = s.since(start).to_string();
        if !s.end() {
            return None;
        }
        Some(if database {
            Intercepted::SelectDatabase(column)
        } else {
            Intercepted::LastInsertId(column)
        })
    } else if first.eq_ignore_ascii_case("set") {
        set_transaction_mode(s)
    } else if first.eq_ignore_ascii_case("flush") {
        (s.word()?.eq_ignore_ascii_case("dbmesh")
            && s.word()?.eq_ignore_ascii_case("digest")
            && s.end())
        .then_some(Intercepted::FlushDigest)
    } else if first.eq_ignore_ascii_case("show") {
        let what = s.word()?;
        if what.eq_ignore_ascii_case("dbmesh") {
            return (s.word()?.eq_ignore_ascii_case("digest") && s.end())
                .then_some(Intercepted::ShowDigest);
        }
        if what.eq_ignore_ascii_case("warnings") || what.eq_ignore_ascii_case("errors") {
            return list_diagnostics(s, what.eq_ignore_ascii_case("errors"));
        }
        if what.eq_ignore_ascii_case("count") {
            return count_diagnostics(s);
        }
        if !(what.eq_ignore_ascii_case("databases") || what.eq_ignore_ascii_case("schemas")) {
            return None;
        }
        if s.end() {
            return Some(Intercepted::ShowDatabases(None));
        }
        if !s.word()?.eq_ignore_ascii_case("like") {
            return None;
        }
        let pattern = s.string_literal()?;
        s.end().then_some(Intercepted::ShowDatabases(Some(pattern)))
    } else {
        None
    }
}

/// The rest of `SHOW WARNINGS` / `SHOW ERRORS`: nothing, or `LIMIT [offset,] count`.
fn list_diagnostics(mut s: Tokens<'_>, errors_only: bool) -> Option<Intercepted> {
    let (mut offset, mut limit) = (0, None);
    if !s.end() {
        if !s.word()?.eq_ignore_ascii_case("limit") {
            return None;
        }
        let first = s.number()?;
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
fn count_diagnostics(mut s: Tokens<'_>) -> Option<Intercepted> {
    let star = s.punct(b'(') && s.punct(b'*') && s.punct(b')');
    let what = s.word()?;
    let errors_only = what.eq_ignore_ascii_case("errors");
    if !star || !(errors_only || what.eq_ignore_ascii_case("warnings")) || !s.end() {
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

/// The rest of `SELECT @@[session.]warning_count` / `@@[session.]error_count`, from the `@@`
/// at `start`.
fn count_variable(mut s: Tokens<'_>, start: usize) -> Option<Intercepted> {
    let mut name = s.word()?;
    if name.eq_ignore_ascii_case("session") && s.adjacent_punct(b'.') {
        name = s.word()?;
    }
    if name.eq_ignore_ascii_case(TRANSACTION_MODE_VARIABLE) {
        let column = s.since(start).to_string();
        return s.end().then_some(Intercepted::TransactionMode(column));
    }
    let errors_only = name.eq_ignore_ascii_case("error_count");
    if !errors_only && !name.eq_ignore_ascii_case("warning_count") {
        return None;
    }
    let column = s.since(start).to_string();
    s.end()
        .then_some(Intercepted::Diagnostics(Diagnostics::Count {
            errors_only,
            column,
        }))
}

/// The rest of `SET [SESSION | LOCAL | @@[session.]]dbmesh_transaction_mode = value`, the
/// value a string or a bare word; `None` for any other SET (several variables in one SET
/// included: the backends would refuse the proxy's variable).
fn set_transaction_mode(mut s: Tokens<'_>) -> Option<Intercepted> {
    if s.punct(b'@') && !s.adjacent_punct(b'@') {
        return None;
    }
    let mut name = s.word()?;
    if name.eq_ignore_ascii_case("session") || name.eq_ignore_ascii_case("local") {
        s.adjacent_punct(b'.');
        name = s.word()?;
    }
    if !name.eq_ignore_ascii_case(TRANSACTION_MODE_VARIABLE) {
        return None;
    }
    let assigned = s.punct(b'=') || (s.punct(b':') && s.adjacent_punct(b'='));
    if !assigned {
        return None;
    }
    let value = match s.string_literal() {
        Some(v) => v,
        None => s.word()?.to_string(),
    };
    s.end().then_some(Intercepted::SetTransactionMode(value))
}

/// The rest of `SELECT NEXTVAL(seq[, n])` or `SELECT NEXT VALUE FOR seq`, from `start`.
fn next_value(mut s: Tokens<'_>, start: usize, next_value_for: bool) -> Option<Intercepted> {
    let (sequence, count) = if next_value_for {
        let value = s.word()?;
        let r#for = s.word()?;
        if !value.eq_ignore_ascii_case("value") || !r#for.eq_ignore_ascii_case("for") {
            return None;
        }
        (s.identifier()?, None)
    } else {
        if !s.punct(b'(') {
            return None;
        }
        let sequence = s.identifier()?;
        let count = if s.punct(b',') {
            Some(s.number()?)
        } else {
            None
        };
        if !s.punct(b')') {
            return None;
        }
        (sequence, count)
    };
    let column = s.since(start).to_string();
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

/// The value of string literal `text` (quotes included), escapes resolved as MySQL does;
/// `None` when the quote is never closed (the lexer runs such a string to the end).
pub fn string_value(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let quote = *bytes.first()?;
    let mut i = 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b if b == quote && bytes.get(i + 1) == Some(&quote) => i += 2,
            b if b == quote => {
                return (i + 1 == bytes.len()).then(|| sql::unquote(text).into_owned());
            }
            _ => i += 1,
        }
    }
    None
}

/// The statement's tokens as the `sql` lexer reads them, for the few shapes above. Comments
/// are skipped, except executable ones (`/*! … */`), which end the match: their code is for
/// the server to run.
struct Tokens<'a> {
    sql: &'a str,
    lexer: Lexer<'a>,
    peeked: Option<Option<Token>>,
    /// Where the last token taken ends.
    end: usize,
}

impl<'a> Tokens<'a> {
    fn new(sql: &'a str) -> Self {
        Tokens {
            sql,
            lexer: Lexer::new(sql),
            peeked: None,
            end: 0,
        }
    }

    fn peek(&mut self) -> Option<Token> {
        if self.peeked.is_none() {
            let mut next = self.lexer.next_token();
            // Hints (`/*+ … */`) and MariaDB's `/*M! … */` are comments to this reading.
            while let Some(t) = next.filter(|t| t.kind == Tok::KeptComment) {
                if self.text(t).starts_with("/*!") {
                    break;
                }
                next = self.lexer.next_token();
            }
            self.peeked = Some(next);
        }
        self.peeked.flatten()
    }

    fn take(&mut self) -> Option<Token> {
        let t = self.peek()?;
        self.peeked = None;
        self.end = t.end;
        Some(t)
    }

    fn text(&self, t: Token) -> &'a str {
        self.sql.get(t.start..t.end).unwrap_or("")
    }

    /// The text from `start` to the end of the last token taken.
    fn since(&self, start: usize) -> &'a str {
        self.sql.get(start..self.end).unwrap_or("")
    }

    /// The next token if it is `kind`.
    fn take_if(&mut self, kind: Tok) -> Option<Token> {
        match self.peek() {
            Some(t) if t.kind == kind => self.take(),
            _ => None,
        }
    }

    fn word(&mut self) -> Option<&'a str> {
        let t = self.take_if(Tok::Word)?;
        Some(self.text(t))
    }

    fn punct(&mut self, c: u8) -> bool {
        self.take_if(Tok::Punct(c)).is_some()
    }

    /// `c` written right after the last token.
    fn adjacent_punct(&mut self, c: u8) -> bool {
        match self.peek() {
            Some(t) if t.kind == Tok::Punct(c) && !t.space_before => self.take().is_some(),
            _ => false,
        }
    }

    /// `()`, spaces allowed.
    fn empty_parens(&mut self) -> bool {
        self.punct(b'(') && self.punct(b')')
    }

    fn number(&mut self) -> Option<u64> {
        let t = self.take_if(Tok::Int)?;
        self.text(t).parse().ok()
    }

    /// A bare or backtick-quoted name, unquoted.
    fn identifier(&mut self) -> Option<String> {
        let t = self.peek()?;
        let text = self.text(t);
        match t.kind {
            Tok::Word | Tok::Int => {
                self.take();
                Some(text.to_string())
            }
            Tok::QuotedIdent => {
                self.take();
                let inner = text.strip_prefix('`')?.strip_suffix('`')?;
                // A lone backtick inside: the name was never closed.
                (!inner.replace("``", "").contains('`')).then(|| inner.replace("``", "`"))
            }
            _ => None,
        }
    }

    /// A quoted string's value, escapes resolved as MySQL does.
    fn string_literal(&mut self) -> Option<String> {
        let t = self.peek()?;
        if !matches!(t.kind, Tok::Str(_)) {
            return None;
        }
        self.take();
        string_value(self.text(t))
    }

    /// True when only comments and an optional `;` remain.
    fn end(&mut self) -> bool {
        self.take_if(Tok::Semicolon);
        self.peek().is_none()
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
        assert_eq!(intercept("SHOW WARNINGS"), list(false, 0, None));
        assert_eq!(intercept("show errors limit 1"), list(true, 0, Some(1)));
        assert_eq!(
            intercept("SHOW WARNINGS LIMIT 2, 3;"),
            list(false, 2, Some(3))
        );
        assert_eq!(intercept("SHOW WARNINGS LIMIT x"), None);
        let count = |errors_only, column: &str| {
            Some(Intercepted::Diagnostics(Diagnostics::Count {
                errors_only,
                column: column.into(),
            }))
        };
        assert_eq!(
            intercept("SHOW COUNT(*) WARNINGS"),
            count(false, "@@session.warning_count")
        );
        assert_eq!(
            intercept("show count( * ) errors"),
            count(true, "@@session.error_count")
        );
        assert_eq!(
            intercept("SELECT @@warning_count"),
            count(false, "@@warning_count")
        );
        assert_eq!(
            intercept("SELECT @@SESSION.error_count"),
            count(true, "@@SESSION.error_count")
        );
        assert_eq!(intercept("SELECT @@warning_count, 1"), None);
        assert_eq!(intercept("SELECT @@version"), None);
        assert_eq!(
            intercept("select row_count()"),
            Some(Intercepted::Diagnostics(Diagnostics::RowCount(
                "row_count()".into()
            )))
        );
        assert_eq!(intercept("SELECT ROW_COUNT() + 1"), None);
    }

    #[test]
    fn recognises_the_transaction_mode_variable() {
        let set = |v: &str| Some(Intercepted::SetTransactionMode(v.into()));
        assert_eq!(
            intercept("SET dbmesh_transaction_mode = 'local'"),
            set("local")
        );
        assert_eq!(
            intercept("set session DBMESH_TRANSACTION_MODE=xa;"),
            set("xa")
        );
        assert_eq!(
            intercept("SET @@session.dbmesh_transaction_mode = \"xa\""),
            set("xa")
        );
        assert_eq!(
            intercept("SET @@dbmesh_transaction_mode := 'bogus'"),
            set("bogus")
        );
        assert_eq!(
            intercept("SET dbmesh_transaction_mode = 'xa', autocommit = 0"),
            None
        );
        assert_eq!(intercept("SET GLOBAL dbmesh_transaction_mode = 'xa'"), None);
        assert_eq!(intercept("SET autocommit = 0"), None);
        assert_eq!(
            intercept("SELECT @@dbmesh_transaction_mode"),
            Some(Intercepted::TransactionMode(
                "@@dbmesh_transaction_mode".into()
            ))
        );
        assert_eq!(
            intercept("select @@session.dbmesh_transaction_mode"),
            Some(Intercepted::TransactionMode(
                "@@session.dbmesh_transaction_mode".into()
            ))
        );
    }

    #[test]
    fn recognises_use_and_show_databases() {
        assert_eq!(intercept("use bank"), Some(Intercepted::Use("bank".into())));
        assert_eq!(
            intercept("  USE `my``db` ; "),
            Some(Intercepted::Use("my`db".into()))
        );
        assert_eq!(
            intercept("/* hi */ show databases"),
            Some(Intercepted::ShowDatabases(None))
        );
        assert_eq!(
            intercept("SHOW SCHEMAS LIKE 'b%'"),
            Some(Intercepted::ShowDatabases(Some("b%".into())))
        );
        assert_eq!(intercept("select 1"), None);
        assert_eq!(
            intercept("SELECT DATABASE()"),
            Some(Intercepted::SelectDatabase("DATABASE()".into()))
        );
        assert_eq!(
            intercept("select schema( ) ;"),
            Some(Intercepted::SelectDatabase("schema( )".into()))
        );
        assert_eq!(intercept("select database() from t"), None);
        assert_eq!(
            intercept("SELECT LAST_INSERT_ID()"),
            Some(Intercepted::LastInsertId("LAST_INSERT_ID()".into()))
        );
        assert_eq!(intercept("SELECT LAST_INSERT_ID(5)"), None);
        assert_eq!(
            intercept("SELECT NEXTVAL(payment_seq)"),
            Some(Intercepted::NextVal {
                column: "NEXTVAL(payment_seq)".into(),
                sequence: "payment_seq".into(),
                count: None
            })
        );
        assert_eq!(
            intercept("select next value for `s`"),
            Some(Intercepted::NextVal {
                column: "next value for `s`".into(),
                sequence: "s".into(),
                count: None
            })
        );
        assert_eq!(
            intercept("SELECT nextval(s, 500);"),
            Some(Intercepted::NextVal {
                column: "nextval(s, 500)".into(),
                sequence: "s".into(),
                count: Some(500)
            })
        );
        assert_eq!(intercept("SELECT nextval(s) + 1"), None);
        assert_eq!(intercept("use bank; select 1"), None);
        assert_eq!(intercept("show tables"), None);
        assert_eq!(intercept("user_defined()"), None);
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
    fn comments_are_skipped_but_executable_code_is_not_answered_here() {
        assert_eq!(
            intercept("SELECT /*+ hint */ DATABASE() # why\n"),
            Some(Intercepted::SelectDatabase("DATABASE()".into()))
        );
        assert_eq!(intercept("SELECT /*!50000 1, */ DATABASE()"), None);
        assert_eq!(intercept("USE `unclosed``"), None);
        assert_eq!(intercept("SHOW DATABASES LIKE 'unclosed''"), None);
        assert_eq!(intercept("SELECT @ @warning_count"), None);
    }

    #[test]
    fn string_literals_resolve_escapes() {
        assert_eq!(
            intercept(r"SHOW DATABASES LIKE 'it\'s\_%'"),
            Some(Intercepted::ShowDatabases(Some(r"it's\_%".into())))
        );
        assert_eq!(
            intercept("SHOW DATABASES LIKE 'a''b'"),
            Some(Intercepted::ShowDatabases(Some("a'b".into())))
        );
    }
}
