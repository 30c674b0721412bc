//! Parsing with sqlparser (MySQL dialect) and binding literals to fingerprint slots.
//!
//! [`parse`] turns text into [`Statement`]s with a recursion limit, because the
//! text comes from untrusted clients. [`Statement::bind_slots`] then replaces
//! every literal and `?` of the AST by a marker naming its fingerprint slot
//! (its index in [`crate::Fingerprint::literals`]), so that analysis refers to
//! values by slot and a rendered statement is a template into which the
//! literals of any statement with the same fingerprint can be spliced.
//! Strings are parsed without unescaping, so a literal that stays in the AST
//! prints back exactly as written.

use std::fmt;
use std::ops::ControlFlow;

use sqlparser::ast::{
    self, Expr, Spanned, UnaryOperator, Value, ValueWithSpan, VisitMut, VisitorMut,
};
use sqlparser::dialect::MySqlDialect;
use sqlparser::parser::{Parser, ParserOptions};
use sqlparser::tokenizer::Location;

use crate::fingerprint::{Fingerprint, LiteralKind};
use crate::lexer::{CodeTokens, Lexer, Tok, SELECT_LIST_END};
use crate::mysql_syntax::{self, Extras};
use crate::SqlError;

/// How deeply expressions and subqueries may nest before parsing gives up.
pub const RECURSION_LIMIT: usize = 64;

/// How many operators one expression may chain. sqlparser builds `a + b + c …` as a
/// left-deep tree in a loop that [`RECURSION_LIMIT`] does not count, and every later walk
/// of the tree (its spans, its drop, the analysis) recurses once per operator: a chain of
/// 100,000 overflowed a worker's stack. MariaDB itself refuses `1+1+…` long before 1,000
/// terms (error 1436).
const OPERATOR_LIMIT: usize = 500;

/// One parsed SQL statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    pub(crate) ast: ast::Statement,
    /// MariaDB / MySQL syntax sqlparser lacks, printed back with the statement.
    pub(crate) extras: Extras,
}

/// Parses `sql` (one or more statements separated by `;`) with the MySQL dialect.
pub fn parse(sql: &str) -> Result<Vec<Statement>, SqlError> {
    check_operator_chains(sql)?;
    let (text, extras) = mysql_syntax::take(sql);
    let statements = Parser::new(&MySqlDialect {})
        .with_recursion_limit(RECURSION_LIMIT)
        .with_options(ParserOptions::new().with_unescape(false))
        .try_with_sql(&text)
        .and_then(|mut p| p.parse_statements())
        .map_err(|e| SqlError::Parse(e.to_string()))?;
    let mut statements: Vec<Statement> = statements
        .into_iter()
        .map(|ast| Statement {
            ast,
            extras: Extras::default(),
        })
        .collect();
    if extras != Extras::default() {
        // What was taken off belongs to the text's one statement.
        match statements.as_mut_slice() {
            [only] if extras.fits(&only.ast) => only.extras = extras,
            _ => {
                return Err(SqlError::Parse(format!(
                    "{} where the proxy's parser does not take it",
                    if extras.share_mode {
                        "LOCK IN SHARE MODE"
                    } else if extras.update_modifiers.is_some() {
                        "an UPDATE modifier"
                    } else {
                        "the function INTERVAL(N, N1, …) in a text of several statements"
                    }
                )))
            }
        }
    }
    Ok(statements)
}

/// Words that join or wrap operands without parentheses: operators, and the keywords
/// sqlparser chains like operators (set operations, `CASE` arms).
const OPERATOR_WORDS: &[&str] = &[
    "AND",
    "OR",
    "XOR",
    "NOT",
    "IS",
    "IN",
    "BETWEEN",
    "LIKE",
    "RLIKE",
    "REGEXP",
    "SOUNDS",
    "MEMBER",
    "DIV",
    "MOD",
    "COLLATE",
    "ESCAPE",
    "AT",
    "OVERLAPS",
    "ILIKE",
    "GLOB",
    "MATCH",
    "SIMILAR",
    "OPERATOR",
    "UNION",
    "EXCEPT",
    "INTERSECT",
    "MINUS",
    "CASE",
    "WHEN",
    "THEN",
    "ELSE",
    "INTERVAL",
    "BINARY",
    "EXISTS",
    "NOTNULL",
    "ISNULL",
    "ANY",
    "ALL",
    "SOME",
];

/// Refuses text whose expressions could nest deeper than [`OPERATOR_LIMIT`], before
/// sqlparser builds the tree. An upper bound from the tokens alone: each operator (any
/// punctuation but brackets, commas and qualifying dots, or one of [`OPERATOR_WORDS`]) and
/// each open parenthesis counts one level, and a comma starts a sibling at its
/// parenthesis's level. The code of `/*! … */` comments is counted like any other.
fn check_operator_chains(sql: &str) -> Result<(), SqlError> {
    // The level at each open parenthesis.
    let mut open: Vec<usize> = Vec::new();
    let mut level = 0usize;
    for t in CodeTokens::new(sql) {
        match t.kind {
            Tok::Punct(b'(') => {
                open.push(level);
                level += 1;
            }
            Tok::Punct(b')') => level = open.pop().unwrap_or(0),
            Tok::Punct(b',') => level = open.last().map_or(0, |l| l + 1),
            Tok::Semicolon => {
                open.clear();
                level = 0;
            }
            Tok::Punct(b'.') => {}
            Tok::Punct(_) => level += 1,
            Tok::Word => {
                let word = sql.get(t.start..t.end).unwrap_or("");
                if OPERATOR_WORDS.iter().any(|k| k.eq_ignore_ascii_case(word)) {
                    level += 1;
                }
            }
            _ => {}
        }
        if level > OPERATOR_LIMIT {
            return Err(SqlError::Parse(format!(
                "expressions nest too deeply (more than {OPERATOR_LIMIT} operators in a chain)"
            )));
        }
    }
    Ok(())
}

impl Statement {
    /// The sqlparser AST. Code outside this crate should not need it; it is
    /// here for tests and diagnostics (and couples the caller to sqlparser).
    pub fn ast(&self) -> &ast::Statement {
        &self.ast
    }

    /// Replaces each literal and placeholder of the AST that is exactly one
    /// literal of `fp` (same position, same text) by a slot marker. Returns
    /// whether every literal of `fp` was bound exactly once: only then can a
    /// rendering of this statement serve as a template for other texts with
    /// the same fingerprint. Literals that are not bound stay in the AST as
    /// written.
    pub fn bind_slots(&mut self, sql: &str, fp: &Fingerprint) -> bool {
        let mut binder = Binder {
            sql,
            fp,
            lines: line_starts(sql),
            ascii: sql.is_ascii(),
            memo: (0, 0, 0),
            used: vec![0; fp.literals.len()],
        };
        let names = select_item_names(&self.ast, &mut binder);
        let _ = self.ast.visit(&mut binder);
        apply_item_names(&mut self.ast, names);
        binder.used.iter().all(|&n| n == 1)
    }
}

/// The select items a server names by their text: expressions that are not
/// a column, a literal or a wildcard (`count( * )` is named `count( * )`).
/// Rewriting prints them anew (`count(*)`), so they get their original text
/// as an alias — with slot markers in place of literals, so that a template
/// names them after each statement's own literals. Items holding a string
/// literal or a `?` keep the printed name (the alias could not quote every
/// value; a parameter must appear once).
fn select_item_names(ast: &ast::Statement, binder: &mut Binder<'_>) -> Vec<(usize, String)> {
    let ast::Statement::Query(q) = ast else {
        return Vec::new();
    };
    let ast::SetExpr::Select(select) = q.body.as_ref() else {
        return Vec::new();
    };
    let mut names = Vec::new();
    for (i, item) in select.projection.iter().enumerate() {
        let ast::SelectItem::UnnamedExpr(e) = item else {
            continue;
        };
        if matches!(
            e,
            Expr::Identifier(_) | Expr::CompoundIdentifier(_) | Expr::Value(_)
        ) || matches!(e, Expr::UnaryOp { expr, .. } if matches!(**expr, Expr::Value(_)))
        {
            continue;
        }
        // The parser's spans of calls stop before their arguments: only the start is used,
        // the end is found by reading the text.
        let Some(start) = binder.offset(e.span().start) else {
            continue;
        };
        let Some(end) = item_end(binder.sql, start) else {
            continue;
        };
        let Some(text) = binder.sql.get(start..end) else {
            continue;
        };
        // Spans are approximate (a CAST's starts at its operand): the text must be the item.
        let reparsed = Parser::new(&MySqlDialect {})
            .with_recursion_limit(RECURSION_LIMIT)
            .with_options(ParserOptions::new().with_unescape(false))
            .try_with_sql(text)
            .and_then(|mut p| p.parse_expr());
        if !reparsed.is_ok_and(|r| r.to_string() == e.to_string()) {
            continue;
        }
        // A server keeps at most 255 characters of an expression's text as its name.
        if text.is_empty() || text.chars().count() > 255 || text.contains('\u{0}') {
            continue;
        }
        let mut name = String::with_capacity(text.len());
        let mut at = start;
        let mut string_literal = false;
        for (slot, lit) in binder.fp.literals.iter().enumerate() {
            if lit.start < start || lit.end > end {
                continue;
            }
            string_literal |= matches!(lit.kind, LiteralKind::Str | LiteralKind::Placeholder(_));
            name.push_str(&binder.sql[at..lit.start]);
            name.push_str(&slot_marker(slot));
            at = lit.end;
        }
        if string_literal {
            continue;
        }
        name.push_str(&binder.sql[at..end]);
        names.push((i, name));
    }
    names
}

/// Where the select item starting at `start` ends: before the first comma,
/// closing parenthesis or clause keyword outside its parentheses.
fn item_end(sql: &str, start: usize) -> Option<usize> {
    let rest = sql.get(start..)?;
    let mut lexer = Lexer::new(rest);
    let mut depth = 0usize;
    let mut end = 0;
    while let Some(t) = lexer.next_token() {
        match t.kind {
            Tok::Punct(b'(') => depth += 1,
            Tok::Punct(b')') if depth == 0 => break,
            Tok::Punct(b')') => depth -= 1,
            Tok::Punct(b',') | Tok::Semicolon if depth == 0 => break,
            Tok::Word if depth == 0 => {
                let word = rest.get(t.start..t.end).unwrap_or("");
                // The select list ends, or the item's alias begins.
                if word.eq_ignore_ascii_case("AS")
                    || SELECT_LIST_END.iter().any(|k| k.eq_ignore_ascii_case(word))
                {
                    break;
                }
            }
            _ => {}
        }
        end = t.end;
    }
    (end > 0).then_some(start + end)
}

fn apply_item_names(ast: &mut ast::Statement, names: Vec<(usize, String)>) {
    let ast::Statement::Query(q) = ast else {
        return;
    };
    let ast::SetExpr::Select(select) = q.body.as_mut() else {
        return;
    };
    for (i, name) in names {
        if let Some(item) = select.projection.get_mut(i) {
            if let ast::SelectItem::UnnamedExpr(e) = item {
                *item = ast::SelectItem::ExprWithAlias {
                    expr: e.clone(),
                    alias: ast::Ident::with_quote('`', name),
                };
            }
        }
    }
}

impl fmt::Display for Statement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut text = self.ast.to_string();
        self.extras.restore(&mut text);
        f.write_str(&text)
    }
}

/// Marker text standing for literal slot `slot` in a printed AST.
pub(crate) fn slot_marker(slot: usize) -> String {
    format!("\u{0}L{slot}\u{0}")
}

/// Marker text standing for the text of literal slot `slot` inside a backquoted name
/// ([`crate::Seg::SlotInName`]).
pub(crate) fn name_slot_marker(slot: usize) -> String {
    format!("\u{0}N{slot}\u{0}")
}

/// Marker text standing for table `id` in a printed AST.
pub(crate) fn table_marker(id: usize) -> String {
    format!("\u{0}T{id}\u{0}")
}

/// Marker text standing for the per-shard row count of a merged SELECT's LIMIT.
pub(crate) const LIMIT_MARKER: &str = "\u{0}M\u{0}";

/// Marker text standing for the rows of an INSERT … VALUES.
pub(crate) const ROWS_MARKER: &str = "\u{0}R\u{0}";

/// Marker text standing for the value a sequence generates for an INSERT row.
pub(crate) const GENERATED_MARKER: &str = "\u{0}G\u{0}";

/// The slot of an expression that is a bound literal (or one wrapped in
/// parentheses or a character set introducer).
pub(crate) fn slot_of(e: &Expr) -> Option<usize> {
    match e {
        Expr::Value(v) => match &v.value {
            Value::Placeholder(p) => p
                .strip_prefix("\u{0}L")
                .and_then(|s| s.strip_suffix('\u{0}'))
                .and_then(|s| s.parse().ok()),
            _ => None,
        },
        Expr::Nested(e) => slot_of(e),
        Expr::Prefixed { value, .. } => slot_of(value),
        _ => None,
    }
}

fn line_starts(sql: &str) -> Vec<usize> {
    let mut v = vec![0];
    v.extend(sql.match_indices('\n').map(|(i, _)| i + 1));
    v
}

struct Binder<'a> {
    sql: &'a str,
    fp: &'a Fingerprint,
    lines: Vec<usize>,
    /// Columns are counted in characters; in ASCII text they are byte offsets.
    ascii: bool,
    /// The last (line, column, byte offset) computed, to walk on from there
    /// (locations mostly come in text order, so long lines are walked once).
    memo: (usize, usize, usize),
    used: Vec<u32>,
}

impl Binder<'_> {
    /// The byte offset of a sqlparser location (1-based line, 1-based column in characters).
    fn offset(&mut self, loc: Location) -> Option<usize> {
        let line = usize::try_from(loc.line).ok()?.checked_sub(1)?;
        let col = usize::try_from(loc.column).ok()?.checked_sub(1)?;
        let start = *self.lines.get(line)?;
        if self.ascii {
            return Some(start + col).filter(|&o| o <= self.sql.len());
        }
        let (mut at_col, mut at) = (0, start);
        if self.memo.0 == line && self.memo.1 <= col {
            (at_col, at) = (self.memo.1, self.memo.2);
        }
        let rest = self.sql.get(at..)?;
        let mut chars = rest.chars();
        let offset = loop {
            if at_col == col {
                break at;
            }
            match chars.next() {
                Some(c) => {
                    at += c.len_utf8();
                    at_col += 1;
                }
                None => return None,
            }
        };
        self.memo = (line, col, offset);
        Some(offset)
    }

    /// The slot of the literal spanning exactly `start..end`.
    fn slot_at(&self, start: usize, end: usize) -> Option<usize> {
        let i = self
            .fp
            .literals
            .binary_search_by_key(&start, |l| l.start)
            .ok()?;
        (self.fp.literals[i].end == end).then_some(i)
    }

    /// Binds `v` if it is exactly the literal at its span, written as sqlparser prints it.
    fn bind(&mut self, v: &ValueWithSpan, start: usize, end: usize, sign: &str) -> Option<usize> {
        let slot = self.slot_at(start, end)?;
        let lit = self.fp.literals[slot];
        let text = lit.text(self.sql);
        let same = match (&v.value, lit.kind) {
            (Value::Placeholder(p), LiteralKind::Placeholder(_)) => p == "?",
            (Value::Placeholder(_), _) | (_, LiteralKind::Placeholder(_)) => false,
            (value, _) => {
                let printed = value.to_string();
                text.len() == sign.len() + printed.len()
                    && text.starts_with(sign)
                    && text.ends_with(printed.as_str())
            }
        };
        if !same {
            return None;
        }
        self.used[slot] += 1;
        Some(slot)
    }
}

impl VisitorMut for Binder<'_> {
    type Break = ();

    fn pre_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        // `-5` is one literal to the fingerprint but a minus applied to `5` in the AST.
        if let Expr::UnaryOp {
            op: UnaryOperator::Minus,
            expr: inner,
        } = expr
        {
            if let Expr::Value(v) = inner.as_ref() {
                if let (Some(vs), Some(ve)) = (self.offset(v.span.start), self.offset(v.span.end)) {
                    if vs > 0 && self.sql.as_bytes().get(vs - 1) == Some(&b'-') {
                        if let Some(slot) = self.bind(v, vs - 1, ve, "-") {
                            *expr = Expr::Value(Value::Placeholder(slot_marker(slot)).into());
                        }
                    }
                }
            }
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_value(&mut self, value: &mut ValueWithSpan) -> ControlFlow<()> {
        if matches!(&value.value, Value::Placeholder(p) if p.starts_with('\u{0}')) {
            return ControlFlow::Continue(());
        }
        if let (Some(s), Some(e)) = (self.offset(value.span.start), self.offset(value.span.end)) {
            if let Some(slot) = self.bind(value, s, e, "") {
                value.value = Value::Placeholder(slot_marker(slot));
            }
        }
        ControlFlow::Continue(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fingerprint::fingerprint;

    fn bound(sql: &str) -> (String, bool) {
        let fp = fingerprint(sql);
        let mut s = parse(sql).unwrap().remove(0);
        let complete = s.bind_slots(sql, &fp);
        (s.to_string().replace('\u{0}', "#"), complete)
    }

    #[test]
    fn long_operator_chains_are_refused_before_parsing() {
        let deep = |sql: String| match parse(&sql) {
            Err(SqlError::Parse(m)) => assert!(m.contains("nest too deeply"), "{m}"),
            other => panic!("{other:?}"),
        };
        deep(format!("SELECT {}1", "1+".repeat(100_000)));
        deep(format!(
            "SELECT 1 FROM t WHERE {}1",
            "a=1 OR ".repeat(100_000)
        ));
        deep(format!("SELECT {}1", "NOT ".repeat(100_000)));
        deep(format!(
            "SELECT {}1{}",
            "(".repeat(100_000),
            ")".repeat(100_000)
        ));
        deep(vec!["SELECT 1"; 1_000].join(" UNION "));
        deep(format!("SELECT /*!50000 {}1 */", "1+".repeat(1_000)));
        // Operators spread over siblings, parentheses or statements are not a chain.
        let wide = format!("SELECT {}", vec!["a+b+c"; 1_000].join(", "));
        assert!(parse(&wide).is_ok());
        let list = format!(
            "SELECT 1 FROM t WHERE a IN ({})",
            vec!["-1"; 10_000].join(",")
        );
        assert!(parse(&list).is_ok());
        let rows = format!("INSERT INTO t VALUES {}", vec!["(1+1, 2)"; 1_000].join(","));
        assert!(parse(&rows).is_ok());
        assert!(parse(&format!("SELECT {}1", "1+".repeat(OPERATOR_LIMIT - 1))).is_ok());
    }

    #[test]
    fn binds_every_literal() {
        assert_eq!(
            bound("SELECT * FROM t WHERE a = -5 AND b IN ('x''y', ?) LIMIT 3"),
            (
                "SELECT * FROM t WHERE a = #L0# AND b IN (#L1#, #L2#) LIMIT #L3#".to_owned(),
                true
            )
        );
        assert_eq!(
            bound("select\n  'é', 2\nfrom t where d = DATE '2020-01-01' and s = _utf8mb4'x'"),
            (
                "SELECT #L0#, #L1# FROM t WHERE d = DATE #L2# AND s = _utf8mb4 #L3#".to_owned(),
                true
            )
        );
    }

    #[test]
    fn leaves_what_it_cannot_match() {
        // Adjacent strings are concatenated by the parser: no single literal matches.
        let (text, complete) = bound("SELECT 'a' 'b'");
        assert_eq!(text, "SELECT 'ab'");
        assert!(!complete);
        // 0x1F prints as X'1F': not the text as written.
        assert!(!bound("SELECT 0x1F").1);
    }
}
