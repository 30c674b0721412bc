//! Differential test of cross-shard reads and writes: every query of `differential/queries.sql`
//! runs through dbmesh and directly on an unsharded reference database holding the same rows,
//! over several layouts of the logical schema ([`LAYOUTS`]: mod over 4 data sources x 2
//! tables on 2 MariaDB servers, mod over 2 data sources x 2 tables, uneven `uid_slice` ranges)
//! and in three protocols: text, binary (prepared as written) and binary with the literals a
//! client binds as parameters. The answers must be equal: same column metadata, same rows (as
//! a multiset, or in sequence when the query fixes the order), DOUBLE and FLOAT values within a
//! relative 1e-9. A clean error from the proxy (an error packet, the connection still usable)
//! is a *reject* and allowed; anything else that differs is *wrong* and fails the test. Then
//! the write scenarios of `differential/writes.sql` run in every protocol and must report the
//! same affected rows, and every table must hold the same rows. The report goes to stdout and
//! `$CARGO_TARGET_TMPDIR/differential-report.txt`.
//!
//! `DBMESH_DIFF_STRICT=1` also fails on rejects (for when cross-shard merging is complete).
//!
//! A second test checks that a scatter `ORDER BY … LIMIT` over 4 × 1,000,000 rows returns the
//! right rows without raising the proxy's memory.
//!
//! The corpus format is described in `differential/README.md`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use common::Proxy;
use mysql_async::consts::{ColumnFlags, ColumnType};
use mysql_async::prelude::*;
use mysql_async::{Conn, OptsBuilder, Value};

const SCHEMA_SQL: &str = include_str!("differential/schema.sql");
const QUERIES_SQL: &str = include_str!("differential/queries.sql");
const WRITES_SQL: &str = include_str!("differential/writes.sql");
const LOGICAL_DB: &str = "shop";
const MIN_CORPUS: usize = 250;
/// Relative tolerance for DOUBLE / FLOAT values (summation order differs between shards).
const REL_TOLERANCE: f64 = 1e-9;
const QUERY_TIMEOUT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------------
// Corpus
// ---------------------------------------------------------------------------------------------

/// How the rows of a query compare.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
enum Order {
    /// As a multiset.
    #[default]
    Multiset,
    /// In sequence: the query's ORDER BY fixes the full row order.
    Exact,
    /// As a multiset, and the sequence of these columns (0-based) must match: the ORDER BY
    /// orders by them but leaves ties.
    Keys(Vec<usize>),
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct Mode {
    order: Order,
    /// Strings compare as the case- and accent-insensitive, PAD SPACE collation does.
    ci: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Query {
    category: String,
    sql: String,
    /// 1-based line in queries.sql.
    line: usize,
    mode: Mode,
}

/// Parses the corpus: `-- category: NAME` lines start a group, other `--` lines and blank
/// lines are comments, every other line is one query with optional trailing ` -- FLAGS`.
fn parse_corpus(text: &str) -> Result<Vec<Query>, String> {
    let mut out = Vec::new();
    let mut category: Option<String> = None;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        let n = i + 1;
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("--") {
            if let Some(name) = rest.trim().strip_prefix("category:") {
                let name = name.trim();
                if name.is_empty() || name.contains(char::is_whitespace) {
                    return Err(format!("line {n}: bad category name {name:?}"));
                }
                category = Some(name.to_string());
            }
            continue;
        }
        let Some(cat) = category.clone() else {
            return Err(format!(
                "line {n}: query before the first `-- category:` line"
            ));
        };
        let (sql, flags) = match line.split_once(" -- ") {
            Some((sql, flags)) => (sql.trim(), flags.trim()),
            None => (line, ""),
        };
        let mut mode = Mode::default();
        for flag in flags.split_whitespace() {
            if flag == "ordered" {
                mode.order = Order::Exact;
            } else if flag == "ci" {
                mode.ci = true;
            } else if let Some(cols) = flag.strip_prefix("ordered_by=") {
                let keys: Result<Vec<usize>, _> = cols
                    .split(',')
                    .map(|c| match c.parse::<usize>() {
                        Ok(k) if k >= 1 => Ok(k - 1),
                        _ => Err(format!("line {n}: bad column {c:?} in {flag}")),
                    })
                    .collect();
                mode.order = Order::Keys(keys?);
            } else {
                return Err(format!("line {n}: unknown flag {flag:?}"));
            }
        }
        if sql.contains(" -- ") || sql.ends_with(';') {
            return Err(format!("line {n}: one statement per line, no `;`"));
        }
        out.push(Query {
            category: cat,
            sql: sql.to_string(),
            line: n,
            mode,
        });
    }
    Ok(out)
}

/// Splits schema.sql into statements (`;` at the end of a line), dropping comment lines.
fn schema_statements(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with("--") || t.is_empty() {
            continue;
        }
        current.push_str(line);
        current.push('\n');
        if t.ends_with(';') {
            out.push(current.trim().trim_end_matches(';').to_string());
            current.clear();
        }
    }
    assert!(
        current.trim().is_empty(),
        "schema.sql: unterminated statement"
    );
    out
}

// ---------------------------------------------------------------------------------------------
// Normalized results and comparison
// ---------------------------------------------------------------------------------------------

/// The column metadata that must match.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ColMeta {
    name: String,
    column_type: ColumnType,
    decimals: u8,
    not_null: bool,
    unsigned: bool,
    /// Character set 63 (`binary`): clients hand such values out as bytes, not text.
    binary: bool,
}

/// The decimals of numeric and temporal columns. For strings MariaDB sends 0 or 39
/// (`NOT_FIXED_DEC`) depending on the execution plan alone (a temporary table or not: `SELECT
/// DISTINCT LOWER(name) FROM t` says 0, the same with `LIMIT 0` says 39), so the same query on
/// one server can report either; string decimals are not compared.
fn meaningful_decimals(c: &mysql_async::Column) -> u8 {
    use ColumnType::*;
    match c.column_type() {
        MYSQL_TYPE_VAR_STRING
        | MYSQL_TYPE_STRING
        | MYSQL_TYPE_VARCHAR
        | MYSQL_TYPE_BLOB
        | MYSQL_TYPE_TINY_BLOB
        | MYSQL_TYPE_MEDIUM_BLOB
        | MYSQL_TYPE_LONG_BLOB
        | MYSQL_TYPE_ENUM
        | MYSQL_TYPE_SET
        | MYSQL_TYPE_JSON => 0,
        _ => c.decimals(),
    }
}

impl ColMeta {
    fn from_column(c: &mysql_async::Column) -> ColMeta {
        ColMeta {
            name: c.name_str().into_owned(),
            column_type: c.column_type(),
            decimals: meaningful_decimals(c),
            not_null: c.flags().contains(ColumnFlags::NOT_NULL_FLAG),
            unsigned: c.flags().contains(ColumnFlags::UNSIGNED_FLAG),
            binary: c.character_set() == 63,
        }
    }

    fn is_approximate(&self) -> bool {
        matches!(
            self.column_type,
            ColumnType::MYSQL_TYPE_DOUBLE | ColumnType::MYSQL_TYPE_FLOAT
        )
    }
}

/// One value, normalized for comparison within one protocol.
#[derive(Debug, Clone)]
enum Cell {
    Null,
    /// Text-protocol values, and binary-protocol strings / decimals.
    Text(String),
    Int(i64),
    UInt(u64),
    /// DOUBLE / FLOAT values (either protocol): compared within [`REL_TOLERANCE`].
    Approx(f64),
    /// Binary-protocol DATE / DATETIME / TIMESTAMP.
    Date(String),
    /// Binary-protocol TIME.
    Time(String),
}

fn normalize(v: Value, col: &ColMeta) -> Cell {
    match v {
        Value::NULL => Cell::Null,
        Value::Bytes(b) => {
            let text = match String::from_utf8(b) {
                Ok(s) => s,
                Err(e) => format!("0x{}", hex(e.as_bytes())),
            };
            if col.is_approximate() {
                if let Ok(f) = text.parse::<f64>() {
                    return Cell::Approx(f);
                }
            }
            Cell::Text(text)
        }
        Value::Int(i) => Cell::Int(i),
        Value::UInt(u) => Cell::UInt(u),
        Value::Float(f) => Cell::Approx(f64::from(f)),
        Value::Double(f) => Cell::Approx(f),
        Value::Date(y, m, d, h, mi, s, us) => Cell::Date(format!(
            "{y:04}-{m:02}-{d:02} {h:02}:{mi:02}:{s:02}.{us:06}"
        )),
        Value::Time(neg, d, h, mi, s, us) => Cell::Time(format!(
            "{}{d} {h:02}:{mi:02}:{s:02}.{us:06}",
            if neg { "-" } else { "" }
        )),
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// What utf8mb4_general_ci considers equal: case, trailing spaces (PAD SPACE) and the accents
/// of the Latin-1 letters are ignored. Folding more than the server does only weakens a check;
/// folding less would report ties in a different order as wrong.
fn fold(s: &str) -> String {
    s.trim_end_matches(' ')
        .chars()
        .flat_map(char::to_lowercase)
        .map(|c| match c {
            'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' => 'a',
            'ç' => 'c',
            'è' | 'é' | 'ê' | 'ë' => 'e',
            'ì' | 'í' | 'î' | 'ï' => 'i',
            'ñ' => 'n',
            'ò' | 'ó' | 'ô' | 'õ' | 'ö' => 'o',
            'ù' | 'ú' | 'û' | 'ü' => 'u',
            'ý' | 'ÿ' => 'y',
            c => c,
        })
        .collect()
}

fn approx_eq(a: f64, b: f64) -> bool {
    if a == b || (a.is_nan() && b.is_nan()) {
        return true;
    }
    let scale = a.abs().max(b.abs());
    (a - b).abs() <= REL_TOLERANCE * scale || (a - b).abs() < 1e-300
}

fn rank(c: &Cell) -> u8 {
    match c {
        Cell::Null => 0,
        Cell::Text(_) => 1,
        Cell::Int(_) => 2,
        Cell::UInt(_) => 3,
        Cell::Approx(_) => 4,
        Cell::Date(_) => 5,
        Cell::Time(_) => 6,
    }
}

fn cell_eq(a: &Cell, b: &Cell, ci: bool) -> bool {
    match (a, b) {
        (Cell::Null, Cell::Null) => true,
        (Cell::Text(x), Cell::Text(y)) => x == y || (ci && fold(x) == fold(y)),
        (Cell::Int(x), Cell::Int(y)) => x == y,
        (Cell::UInt(x), Cell::UInt(y)) => x == y,
        (Cell::Approx(x), Cell::Approx(y)) => approx_eq(*x, *y),
        (Cell::Date(x), Cell::Date(y)) | (Cell::Time(x), Cell::Time(y)) => x == y,
        _ => false,
    }
}

/// A total order consistent with [`cell_eq`] up to the float tolerance (used to pair rows).
fn cell_cmp(a: &Cell, b: &Cell, ci: bool) -> Ordering {
    match (a, b) {
        (Cell::Text(x), Cell::Text(y)) if ci => fold(x).cmp(&fold(y)),
        (Cell::Text(x), Cell::Text(y))
        | (Cell::Date(x), Cell::Date(y))
        | (Cell::Time(x), Cell::Time(y)) => x.cmp(y),
        (Cell::Int(x), Cell::Int(y)) => x.cmp(y),
        (Cell::UInt(x), Cell::UInt(y)) => x.cmp(y),
        (Cell::Approx(x), Cell::Approx(y)) => x.total_cmp(y),
        _ => rank(a).cmp(&rank(b)),
    }
}

fn row_eq(a: &[Cell], b: &[Cell], ci: bool) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| cell_eq(x, y, ci))
}

fn row_cmp(a: &[Cell], b: &[Cell], ci: bool) -> Ordering {
    for (x, y) in a.iter().zip(b) {
        match cell_cmp(x, y, ci) {
            Ordering::Equal => {}
            o => return o,
        }
    }
    a.len().cmp(&b.len())
}

fn show_cell(c: &Cell) -> String {
    match c {
        Cell::Null => "NULL".into(),
        Cell::Text(s) => format!("'{s}'"),
        Cell::Int(i) => i.to_string(),
        Cell::UInt(u) => format!("{u}u"),
        Cell::Approx(f) => format!("~{f:?}"),
        Cell::Date(s) => format!("date {s}"),
        Cell::Time(s) => format!("time {s}"),
    }
}

fn show_row(r: &[Cell]) -> String {
    let s = format!(
        "({})",
        r.iter().map(show_cell).collect::<Vec<_>>().join(", ")
    );
    if s.chars().count() > 200 {
        format!("{}…", s.chars().take(200).collect::<String>())
    } else {
        s
    }
}

fn show_meta(c: &ColMeta) -> String {
    format!(
        "`{}` {:?} decimals={}{}{}{}",
        c.name,
        c.column_type,
        c.decimals,
        if c.not_null { " NOT_NULL" } else { "" },
        if c.unsigned { " UNSIGNED" } else { "" },
        if c.binary { " binary" } else { "" },
    )
}

/// A result set, normalized.
#[derive(Debug, Clone)]
struct ResultSet {
    columns: Vec<ColMeta>,
    rows: Vec<Vec<Cell>>,
}

/// Pairs rows of `a` with equal rows of `b`; returns the indexes left over on each side.
fn unmatched(a: &[Vec<Cell>], b: &[Vec<Cell>], ci: bool) -> (Vec<usize>, Vec<usize>) {
    let mut ia: Vec<usize> = (0..a.len()).collect();
    let mut ib: Vec<usize> = (0..b.len()).collect();
    ia.sort_by(|&x, &y| row_cmp(&a[x], &a[y], ci));
    ib.sort_by(|&x, &y| row_cmp(&b[x], &b[y], ci));
    if ia.len() == ib.len() && ia.iter().zip(&ib).all(|(&x, &y)| row_eq(&a[x], &b[y], ci)) {
        return (Vec::new(), Vec::new());
    }
    // A real difference, or near-equal floats sorting differently: walk both sorted lists,
    // then pair what is left over greedily (only floats can make that find more pairs).
    let (mut x, mut y) = (0, 0);
    let (mut left_a, mut left_b) = (Vec::new(), Vec::new());
    while x < ia.len() && y < ib.len() {
        let (ra, rb) = (&a[ia[x]], &b[ib[y]]);
        if row_eq(ra, rb, ci) {
            x += 1;
            y += 1;
        } else if row_cmp(ra, rb, ci) == Ordering::Less {
            left_a.push(ia[x]);
            x += 1;
        } else {
            left_b.push(ib[y]);
            y += 1;
        }
    }
    left_a.extend_from_slice(&ia[x..]);
    left_b.extend_from_slice(&ib[y..]);
    let mut used = vec![false; left_b.len()];
    left_a.retain(|&i| {
        match (0..left_b.len()).find(|&j| !used[j] && row_eq(&a[i], &b[left_b[j]], ci)) {
            Some(j) => {
                used[j] = true;
                false
            }
            None => true,
        }
    });
    let left_b = left_b
        .into_iter()
        .enumerate()
        .filter(|&(j, _)| !used[j])
        .map(|(_, i)| i)
        .collect();
    (left_a, left_b)
}

/// Up to 5 distinct rows of `rows[picked]` (picked in sorted order), repeated rows counted.
fn sample(rows: &[Vec<Cell>], picked: &[usize], ci: bool) -> Vec<String> {
    let mut out: Vec<(usize, usize)> = Vec::new();
    for &i in picked {
        match out.last_mut() {
            Some((j, n)) if row_eq(&rows[*j], &rows[i], ci) => *n += 1,
            _ => out.push((i, 1)),
        }
    }
    out.iter()
        .take(5)
        .map(|&(i, n)| {
            if n > 1 {
                format!("{} x{n}", show_row(&rows[i]))
            } else {
                show_row(&rows[i])
            }
        })
        .collect()
}

/// Compares the proxy's result with the reference's; `Err` holds a short diff.
fn compare(proxy: &ResultSet, reference: &ResultSet, mode: &Mode) -> Result<(), String> {
    if proxy.columns != reference.columns {
        let mut d = format!(
            "metadata: proxy has {} columns, reference {}",
            proxy.columns.len(),
            reference.columns.len()
        );
        for i in 0..proxy.columns.len().max(reference.columns.len()) {
            let p = proxy.columns.get(i);
            let r = reference.columns.get(i);
            if p != r {
                let _ = write!(
                    d,
                    "\n      column {}: proxy {} / reference {}",
                    i + 1,
                    p.map_or("-".into(), show_meta),
                    r.map_or("-".into(), show_meta)
                );
            }
        }
        return Err(d);
    }
    let ci = mode.ci;
    let (p, r) = (&proxy.rows, &reference.rows);
    if mode.order == Order::Exact {
        if let Some(i) = (0..p.len().min(r.len())).find(|&i| !row_eq(&p[i], &r[i], ci)) {
            return Err(format!(
                "rows: first difference at row {} of {} (reference {}):\n      proxy     {}\n      reference {}",
                i + 1,
                p.len(),
                r.len(),
                show_row(&p[i]),
                show_row(&r[i])
            ));
        }
        if p.len() != r.len() {
            let (longer, who) = if p.len() > r.len() {
                (p, "proxy")
            } else {
                (r, "reference")
            };
            let k = p.len().min(r.len());
            return Err(format!(
                "rows: proxy has {} rows, reference {}; first extra row ({who}): {}",
                p.len(),
                r.len(),
                show_row(&longer[k])
            ));
        }
        return Ok(());
    }
    let (only_p, only_r) = unmatched(p, r, ci);
    if !only_p.is_empty() || !only_r.is_empty() {
        let mut d = format!(
            "rows: proxy has {} rows, reference {}; {} only in proxy, {} only in reference",
            p.len(),
            r.len(),
            only_p.len(),
            only_r.len()
        );
        for line in sample(p, &only_p, ci) {
            let _ = write!(d, "\n      + proxy     {line}");
        }
        for line in sample(r, &only_r, ci) {
            let _ = write!(d, "\n      - reference {line}");
        }
        return Err(d);
    }
    if let Order::Keys(keys) = &mode.order {
        let n = proxy.columns.len();
        assert!(
            keys.iter().all(|&k| k < n),
            "ordered_by names a column beyond the {n} result columns"
        );
        let project = |row: &Vec<Cell>| keys.iter().map(|&k| row[k].clone()).collect::<Vec<_>>();
        // Sort keys compare as the collation does, whatever the `ci` flag says for whole rows.
        if let Some(i) = (0..p.len()).find(|&i| !row_eq(&project(&p[i]), &project(&r[i]), true)) {
            return Err(format!(
                "order: the sort key of row {} differs:\n      proxy     {}\n      reference {}",
                i + 1,
                show_row(&project(&p[i])),
                show_row(&project(&r[i]))
            ));
        }
    }
    Ok(())
}

/// What running one statement gave.
#[derive(Debug, Clone)]
enum Outcome {
    Rows(ResultSet),
    /// An error packet.
    Failed {
        code: u16,
        message: String,
    },
    /// Anything else: I/O error, protocol error, timeout.
    Lost(String),
}

#[derive(Debug, Clone)]
enum Verdict {
    Pass,
    Reject { code: u16, message: String },
    Wrong(String),
}

fn classify(proxy: &Outcome, reference: &Outcome, mode: &Mode) -> Verdict {
    match (proxy, reference) {
        (Outcome::Lost(e), _) => Verdict::Wrong(format!("connection lost or broken: {e}")),
        (_, Outcome::Lost(e)) => panic!("the reference database failed: {e}"),
        (Outcome::Failed { .. }, Outcome::Failed { .. }) => Verdict::Pass,
        (Outcome::Failed { code, message }, Outcome::Rows(_)) => Verdict::Reject {
            code: *code,
            message: message.clone(),
        },
        (Outcome::Rows(rs), Outcome::Failed { code, message }) => Verdict::Wrong(format!(
            "the proxy answered {} rows where the reference failed with {code}: {message}",
            rs.rows.len()
        )),
        (Outcome::Rows(p), Outcome::Rows(r)) => match compare(p, r, mode) {
            Ok(()) => Verdict::Pass,
            Err(diff) => Verdict::Wrong(diff),
        },
    }
}

// ---------------------------------------------------------------------------------------------
// Running statements
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    /// COM_QUERY.
    Text,
    /// Prepared as written, no parameters.
    Binary,
    /// Prepared with the literals of comparisons, IN lists, BETWEEN, LIKE, LIMIT and OFFSET
    /// as `?` parameters ([`parameterize`]), as ORMs send them.
    Params,
}

/// Every protocol, in the order runs and reports list them.
const PROTOCOLS: [Protocol; 3] = [Protocol::Text, Protocol::Binary, Protocol::Params];

impl Protocol {
    fn name(self) -> &'static str {
        match self {
            Protocol::Text => "text",
            Protocol::Binary => "binary",
            Protocol::Params => "params",
        }
    }
}

/// One token of a corpus statement, for [`parameterize`].
#[derive(Debug, PartialEq)]
enum Piece<'a> {
    Int(&'a str),
    Decimal(&'a str),
    Str(&'a str),
    Word(&'a str),
    Other(&'a str),
}

fn pieces(sql: &str) -> Vec<Piece<'_>> {
    let b = sql.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let start = i;
        let c = b[i];
        if c == b'\'' || c == b'"' || c == b'`' {
            i += 1;
            while i < b.len() && !(b[i] == c && b.get(i + 1) != Some(&c)) {
                i += if b[i] == c || b[i] == b'\\' { 2 } else { 1 };
            }
            i = (i + 1).min(b.len());
            let text = &sql[start..i];
            out.push(if c == b'`' {
                Piece::Word(text)
            } else {
                Piece::Str(text)
            });
        } else if c.is_ascii_digit() {
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'.' || b[i] == b'_') {
                i += 1;
            }
            let text = &sql[start..i];
            out.push(match text.bytes().all(|d| d.is_ascii_digit()) {
                true => Piece::Int(text),
                false if text.bytes().all(|d| d.is_ascii_digit() || d == b'.') => {
                    Piece::Decimal(text)
                }
                false => Piece::Word(text),
            });
        } else if c.is_ascii_alphabetic() || c == b'_' || c == b'@' {
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b'@') {
                i += 1;
            }
            out.push(Piece::Word(&sql[start..i]));
        } else {
            i += sql[i..].chars().next().map_or(1, char::len_utf8);
            out.push(Piece::Other(&sql[start..i]));
        }
    }
    out
}

impl Piece<'_> {
    fn text(&self) -> &str {
        match self {
            Piece::Int(t)
            | Piece::Decimal(t)
            | Piece::Str(t)
            | Piece::Word(t)
            | Piece::Other(t) => t,
        }
    }
}

/// `sql` with the literals a client would bind as parameters replaced by `?`, and their
/// values; `None` when there is none. Bound: the operand right of `=`, `<`, `>`, `LIKE`,
/// `BETWEEN … AND`, the items of `IN (…)`, and the numbers of `LIMIT` and `OFFSET`, when the
/// literal is the whole operand. Literals elsewhere (select list, ORDER BY positions, function
/// arguments) stay: binding them would change what the statement means.
fn parameterize(sql: &str) -> Option<(String, Vec<Value>)> {
    let pieces = pieces(sql);
    let mut out = String::with_capacity(sql.len());
    let mut values = Vec::new();
    let mut depth = 0usize;
    // The depth inside an `IN (` list, while in one.
    let mut in_list: Option<usize> = None;
    let mut in_between = false;
    let mut in_limit = false;
    let mut bind_next = false;
    let mut prev = String::new();
    for (k, p) in pieces.iter().enumerate() {
        let text = p.text();
        if text.trim().is_empty() {
            out.push_str(text);
            continue;
        }
        let next = pieces[k + 1..].iter().find(|p| !p.text().trim().is_empty());
        let whole = !matches!(next, Some(Piece::Other(t)) if ["+", "-", "*", "/", "%", "."].contains(t))
            && !matches!(next, Some(Piece::Word(w)) if w.eq_ignore_ascii_case("COLLATE"));
        let value = match p {
            _ if !(bind_next && whole) => None,
            Piece::Int(t) => t.parse::<i64>().ok().map(Value::Int),
            Piece::Decimal(t) => Some(Value::Bytes(t.as_bytes().to_vec())),
            Piece::Str(t) if t.starts_with('\'') && t.len() >= 2 => Some(Value::Bytes(
                t[1..t.len() - 1].replace("''", "'").into_bytes(),
            )),
            _ => None,
        };
        match value {
            Some(v) => {
                out.push('?');
                values.push(v);
            }
            None => out.push_str(text),
        }
        let upper = text.to_ascii_uppercase();
        if text == "(" {
            depth += 1;
            if prev == "IN" {
                in_list = Some(depth);
            }
        } else if text == ")" {
            if in_list == Some(depth) {
                in_list = None;
            }
            depth = depth.saturating_sub(1);
        }
        let listed = in_list == Some(depth) && (text == "(" || text == ",");
        bind_next = listed
            || matches!(
                upper.as_str(),
                "=" | "<" | ">" | "LIKE" | "LIMIT" | "OFFSET" | "BETWEEN"
            )
            || (in_between && upper == "AND")
            || (in_limit && text == ",");
        if upper == "BETWEEN" {
            in_between = true;
        } else if upper == "AND" {
            in_between = false;
        }
        if upper == "LIMIT" {
            in_limit = true;
        } else if !matches!(p, Piece::Int(_)) && text != "," {
            in_limit = false;
        }
        prev = upper;
    }
    (!values.is_empty()).then_some((out, values))
}

async fn fetch(
    conn: &mut Conn,
    sql: &str,
    protocol: Protocol,
) -> Result<(Vec<ColMeta>, Vec<Vec<Value>>), mysql_async::Error> {
    match protocol {
        Protocol::Text => {
            let mut result = conn.query_iter(sql).await?;
            let columns: Vec<ColMeta> = result
                .columns()
                .map(|c| c.iter().map(ColMeta::from_column).collect())
                .unwrap_or_default();
            let rows: Vec<mysql_async::Row> = result.collect().await?;
            result.drop_result().await?;
            Ok((columns, rows.into_iter().map(|r| r.unwrap()).collect()))
        }
        Protocol::Binary | Protocol::Params => {
            let (sql, params) = match protocol {
                Protocol::Params => {
                    parameterize(sql).unwrap_or_else(|| (sql.to_owned(), Vec::new()))
                }
                _ => (sql.to_owned(), Vec::new()),
            };
            let params = match params.is_empty() {
                true => mysql_async::Params::Empty,
                false => mysql_async::Params::Positional(params),
            };
            let mut result = conn.exec_iter(sql, params).await?;
            let columns: Vec<ColMeta> = result
                .columns()
                .map(|c| c.iter().map(ColMeta::from_column).collect())
                .unwrap_or_default();
            let rows: Vec<mysql_async::Row> = result.collect().await?;
            result.drop_result().await?;
            Ok((columns, rows.into_iter().map(|r| r.unwrap()).collect()))
        }
    }
}

async fn run(conn: &mut Conn, sql: &str, protocol: Protocol) -> Outcome {
    match tokio::time::timeout(QUERY_TIMEOUT, fetch(conn, sql, protocol)).await {
        Err(_) => Outcome::Lost(format!("no answer within {QUERY_TIMEOUT:?}")),
        Ok(Err(mysql_async::Error::Server(e))) => Outcome::Failed {
            code: e.code,
            message: e.message,
        },
        Ok(Err(e)) => Outcome::Lost(e.to_string()),
        Ok(Ok((columns, rows))) => {
            let rows = rows
                .into_iter()
                .map(|r| {
                    r.into_iter()
                        .zip(&columns)
                        .map(|(v, c)| normalize(v, c))
                        .collect()
                })
                .collect();
            Outcome::Rows(ResultSet { columns, rows })
        }
    }
}

/// Whether the connection still answers `SELECT 1`.
async fn still_usable(conn: &mut Conn) -> bool {
    matches!(
        tokio::time::timeout(
            Duration::from_secs(10),
            conn.query_first::<i64, _>("SELECT 1")
        )
        .await,
        Ok(Ok(Some(1)))
    )
}

fn backend_opts(server: &testkit::Backend, db: Option<&str>) -> OptsBuilder {
    OptsBuilder::default()
        .ip_or_hostname(server.host())
        .tcp_port(server.port())
        .prefer_socket(false)
        .user(Some(server.user()))
        .pass(Some(server.password()))
        .db_name(db)
}

// ---------------------------------------------------------------------------------------------
// Data
// ---------------------------------------------------------------------------------------------

/// xorshift64: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len() as u64) as usize]
    }
}

fn quote(s: Option<&str>) -> String {
    match s {
        None => "NULL".into(),
        Some(s) => format!("'{}'", s.replace('\'', "''")),
    }
}

fn cents(c: i64) -> String {
    let sign = if c < 0 { "-" } else { "" };
    format!("{sign}{}.{:02}", c.abs() / 100, c.abs() % 100)
}

/// The date `days` after 2020-01-01.
fn date(mut days: u64) -> String {
    let (mut y, mut m) = (2020u64, 1u64);
    loop {
        let len = match m {
            2 if y % 4 == 0 && (y % 100 != 0 || y % 400 == 0) => 29,
            2 => 28,
            4 | 6 | 9 | 11 => 30,
            _ => 31,
        };
        if days < len {
            return format!("{y:04}-{m:02}-{:02}", days + 1);
        }
        days -= len;
        m += 1;
        if m == 13 {
            m = 1;
            y += 1;
        }
    }
}

fn datetime(days: u64, secs: u64) -> String {
    format!(
        "{} {:02}:{:02}:{:02}",
        date(days),
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

const USERS: u64 = 400;
const ORDERS: u64 = 2000;
const CITIES: &[(&str, &str, u32)] = &[
    ("Berlin", "Europe", 3_645_000),
    ("Paris", "Europe", 2_161_000),
    ("Tokyo", "Asia", 13_960_000),
    ("Lima", "Americas", 9_750_000),
    ("Cairo", "Africa", 9_540_000),
    ("Delhi", "Asia", 16_787_000),
    ("Austin", "Americas", 961_000),
    ("Oslo", "Europe", 697_000),
    ("Quito", "Americas", 2_011_000),
];

/// The INSERT statements loading the data set, identical for the proxy and the reference.
/// Some values live on some shards only (city 'Oslo': node 3; status 'returned': node 2;
/// qty 99: node 1; vip: nodes 0 and 4), so many predicates leave shards empty.
/// `reversed`: the same rows, inserted in the opposite order (for the corpus self-check).
fn data_statements(reversed: bool) -> Vec<String> {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut tables: Vec<(&str, Vec<String>)> = Vec::new();

    let names: &[Option<&str>] = &[
        Some("alice"),
        Some("Alice"),
        Some("ALICE"),
        Some("alice "),
        Some("bob"),
        Some("Bob"),
        Some("BOB "),
        Some("carol"),
        Some("Carol"),
        Some("dave"),
        Some("DAVE"),
        Some("Eve"),
        Some("eve"),
        Some("frank"),
        Some("Grace"),
        Some("grace "),
        Some(""),
        Some("  "),
        Some("Émile"),
        Some("emile"),
        Some("Zoë"),
        Some("zoe"),
        Some("Zoe"),
        Some("mallory"),
        Some("Oscar"),
        Some("oscar"),
        Some("peggy"),
        Some("Trent"),
        Some("O'Brien"),
        Some("o'brien"),
        None,
        None,
    ];
    let codes: &[Option<&str>] = &[
        Some("a1"),
        Some("A1"),
        Some("b2"),
        Some("B2"),
        Some("a"),
        Some(""),
        None,
        Some("zz"),
        Some("Z"),
    ];
    let mut rows = Vec::new();
    for uid in 1..=USERS {
        let m8 = uid % 8;
        let name = rng.pick(names);
        let city = if m8 == 3 && rng.chance(33) {
            Some("Oslo")
        } else if (m8 == 5 || m8 == 6) && rng.chance(25) {
            Some("Quito")
        } else if rng.chance(5) {
            None
        } else if rng.chance(3) {
            Some("")
        } else {
            Some(CITIES[rng.below(7) as usize].0)
        };
        let score = if rng.chance(10) {
            "NULL".to_string()
        } else {
            (rng.below(201) as i64 - 50).to_string()
        };
        let balance = if rng.chance(20) {
            rng.pick(&["0.00", "100.00", "250.50", "-10.00", "99999.99"])
                .to_string()
        } else {
            cents(rng.below(10_100_000) as i64 - 100_000)
        };
        let rating = if rng.chance(10) {
            "NULL".to_string()
        } else if rng.chance(5) {
            rng.pick(&["0", "-2.5", "0.001", "1e-3"]).to_string()
        } else {
            let v = rng.below(100_000) as i64 - 5_000;
            format!(
                "{}{}.{:02}",
                if v < 0 { "-" } else { "" },
                v.abs() / 100,
                v.abs() % 100
            )
        };
        let points = if rng.chance(5) {
            (u64::MAX - rng.below(3)).to_string()
        } else if rng.chance(5) {
            (1u64 << 63).wrapping_add(rng.below(5)).to_string()
        } else {
            rng.below(1000).to_string()
        };
        let vip = u64::from((m8 == 0 || m8 == 4) && rng.chance(50));
        let code = rng.pick(codes);
        let created_day = rng.below(1500);
        let last_login = if rng.chance(15) {
            "NULL".to_string()
        } else {
            quote(Some(&datetime(
                created_day + rng.below(400),
                rng.below(86_400),
            )))
        };
        rows.push(format!(
            "({uid}, {}, {}, {score}, {balance}, {rating}, {points}, {vip}, {}, '{}', {last_login})",
            quote(name),
            quote(city),
            quote(code),
            date(created_day),
        ));
    }
    tables.push((
        "users (user_id, name, city, score, balance, rating, points, vip, code, created, last_login)",
        rows,
    ));

    let mut rows = Vec::new();
    for order_id in 1..=ORDERS {
        // Users whose id ends in 0 have no orders; ids 401-410 are orders of unknown users.
        let user_id = if rng.chance(5) {
            401 + rng.below(10)
        } else {
            loop {
                let u = 1 + rng.below(USERS);
                if !u.is_multiple_of(10) {
                    break u;
                }
            }
        };
        let m8 = user_id % 8;
        let status = if m8 == 2 && rng.chance(30) {
            "returned"
        } else {
            rng.pick(&["new", "paid", "paid", "shipped", "shipped", "cancelled"])
        };
        let amount = if rng.chance(5) {
            "NULL".to_string()
        } else if rng.chance(5) {
            "0.00".to_string()
        } else if rng.chance(10) {
            rng.pick(&["9.99", "19.99", "100.00"]).to_string()
        } else {
            cents(rng.below(205_000) as i64 - 5_000)
        };
        let qty = if m8 == 1 && rng.chance(20) {
            99
        } else {
            rng.below(21)
        };
        let discount = if rng.chance(30) {
            "NULL"
        } else {
            rng.pick(&["0", "0.05", "0.1", "0.25", "0.5"])
        };
        let (day, placed) = if rng.chance(5) {
            (882, "2022-06-01 12:00:00".to_string())
        } else {
            let day = 365 + rng.below(1000);
            (day, datetime(day, rng.below(86_400)))
        };
        let ship_date = if status == "new" || status == "cancelled" || rng.chance(5) {
            "NULL".to_string()
        } else {
            quote(Some(&date(day + rng.below(10))))
        };
        let note = rng.pick(&[
            None,
            None,
            None,
            None,
            Some(""),
            Some("gift"),
            Some("Gift"),
            Some("GIFT "),
            Some("urgent"),
            Some("call first"),
            Some("leave at door"),
        ]);
        rows.push(format!(
            "({order_id}, {user_id}, {}, '{status}', {amount}, {qty}, {discount}, '{placed}', {ship_date}, {})",
            1 + rng.below(31),
            quote(note)
        ));
    }
    tables.push((
        "orders (order_id, user_id, product_id, status, amount, qty, discount, placed, ship_date, note)",
        rows,
    ));

    // Product 31 is ordered but does not exist.
    let categories = [
        Some("tools"),
        Some("toys"),
        Some("books"),
        Some("garden"),
        None,
    ];
    let rows: Vec<String> = (1..=30u64)
        .map(|i| {
            let title = if i % 3 == 0 {
                format!("widget {i:02}")
            } else {
                format!("Widget {i:02}")
            };
            let weight = if rng.chance(15) {
                "NULL".to_string()
            } else {
                format!("{}.{:03}", rng.below(20), rng.below(1000))
            };
            format!(
                "({i}, '{title}', {}, {}, {weight})",
                quote(categories[(i % 5) as usize]),
                cents(100 + rng.below(19_900) as i64)
            )
        })
        .collect();
    tables.push((
        "products (product_id, title, category, price, weight)",
        rows,
    ));
    let rows: Vec<String> = CITIES
        .iter()
        .map(|(c, r, p)| format!("('{c}', '{r}', {p})"))
        .collect();
    tables.push(("regions (city, region, population)", rows));
    if reversed {
        tables.reverse();
        for (_, rows) in &mut tables {
            rows.reverse();
        }
    }
    let mut out = Vec::new();
    for (into, rows) in tables {
        for chunk in rows.chunks(100) {
            out.push(format!("INSERT INTO {into} VALUES {}", chunk.join(", ")));
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// The differential test
// ---------------------------------------------------------------------------------------------

/// A placement of the logical schema over data sources: the differential test runs on each.
struct Layout {
    name: &'static str,
    /// The server of each data source `ds_<i>` (each has its own database).
    servers_of: &'static [usize],
    /// The rule of sharded table `t`: algorithm and nodes.
    sharded: fn(&str) -> String,
}

const LAYOUTS: [Layout; 3] = [
    Layout {
        name: "mod 8: 4 data sources x 2 tables, 2 servers",
        servers_of: &[0, 0, 1, 1],
        sharded: |t| format!("algorithm = \"mod\"\nnodes = \"ds_{{0..3}}.{t}_{{0..1}}\"\n"),
    },
    Layout {
        name: "mod 4: 2 data sources x 2 tables, 1 server",
        servers_of: &[0, 0],
        sharded: |t| format!("algorithm = \"mod\"\nnodes = \"ds_{{0..1}}.{t}_{{0..1}}\"\n"),
    },
    Layout {
        name: "uid_slice 00-29/30-59/60-79/80-99: 4 data sources, 2 servers",
        servers_of: &[0, 1, 0, 1],
        sharded: |_| {
            "algorithm = \"uid_slice\"\nnodes = \"ds_{0..3}\"\nslices = { \"00-29\" = \"ds_0\", \
             \"30-59\" = \"ds_1\", \"60-79\" = \"ds_2\", \"80-99\" = \"ds_3\" }\n"
                .to_owned()
        },
    },
];

/// The rule file of `layout`: users, orders, refunds sharded by user_id in one binding
/// group, products broadcast, regions single on ds_1; data source `ds_<i>` is database
/// `dbs[i]` on `servers[layout.servers_of[i]]`.
fn shop_rules(layout: &Layout, servers: &[testkit::Backend], dbs: &[String]) -> String {
    let mut rules = format!(
        "[proxy]\ncreate_databases = true\n\n[[users]]\nname = \"{}\"\npassword = \"{}\"\n\n\
         [schema]\nname = \"{LOGICAL_DB}\"\ndefault_data_source = \"ds_0\"\n\n",
        common::USER,
        common::PASSWORD
    );
    for (i, (db, &server)) in dbs.iter().zip(layout.servers_of).enumerate() {
        let server = &servers[server];
        rules += &format!(
            "[data_sources.ds_{i}]\naddress = \"{}\"\nuser = \"{}\"\npassword = \"{}\"\ndatabase = \"{db}\"\n\n",
            server.address(),
            server.user(),
            server.password()
        );
    }
    for t in ["users", "orders", "refunds"] {
        rules += &format!(
            "[tables.{t}]\nkind = \"sharded\"\ncolumn = \"user_id\"\n{}\n",
            (layout.sharded)(t)
        );
    }
    rules += "[[binding_groups]]\ntables = [\"users\", \"orders\", \"refunds\"]\n\n\
              [tables.products]\nkind = \"broadcast\"\n\n\
              [tables.regions]\nkind = \"single\"\ndata_source = \"ds_1\"\n";
    rules
}

struct Record {
    query: Query,
    /// Per protocol, in the order of [`PROTOCOLS`].
    verdicts: [Verdict; 3],
    /// The reference's error, if it failed (same in every protocol in practice).
    reference_error: Option<String>,
}

/// Runs every query on the connection under test (opened with `under_test`, reopened when it
/// breaks) and on `reference`, in every protocol, and classifies the answers. A query without
/// literals to bind gets the binary verdict for `params`.
async fn differential_run(
    under_test: OptsBuilder,
    reference: &mut Conn,
    queries: &[Query],
) -> Vec<Record> {
    let connect = |after: String| {
        let opts = under_test.clone();
        async move {
            Conn::new(opts)
                .await
                .unwrap_or_else(|e| panic!("cannot connect to the server under test {after}: {e}"))
        }
    };
    let mut through = connect(String::new()).await;
    let mut records = Vec::new();
    for q in queries {
        let mut verdicts: Vec<Verdict> = Vec::new();
        let mut reference_error = None;
        for protocol in PROTOCOLS {
            if protocol == Protocol::Params && parameterize(&q.sql).is_none() {
                let binary = verdicts.last().cloned().unwrap_or(Verdict::Pass);
                verdicts.push(binary);
                continue;
            }
            let expected = run(reference, &q.sql, protocol).await;
            if let Outcome::Failed { code, message } = &expected {
                reference_error = Some(format!("{code}: {message}"));
            }
            let got = run(&mut through, &q.sql, protocol).await;
            let mut verdict = classify(&got, &expected, &q.mode);
            let reconnect = match &got {
                Outcome::Lost(_) => true,
                Outcome::Failed { code, message } if !still_usable(&mut through).await => {
                    verdict = Verdict::Wrong(format!(
                        "the connection does not answer SELECT 1 after the error {code}: {message}"
                    ));
                    true
                }
                _ => false,
            };
            if reconnect {
                through = connect(format!("after line {}: {}", q.line, q.sql)).await;
            }
            verdicts.push(verdict);
        }
        records.push(Record {
            query: q.clone(),
            verdicts: verdicts.try_into().unwrap(),
            reference_error,
        });
    }
    let _ = through.disconnect().await;
    records
}

/// Runs one write; its affected rows, or the server's error.
async fn write(conn: &mut Conn, sql: &str, protocol: Protocol) -> Outcome {
    let done = match protocol {
        Protocol::Text => conn.query_drop(sql).await,
        Protocol::Binary => conn.exec_drop(sql, ()).await,
        Protocol::Params => match parameterize(sql) {
            Some((sql, values)) => conn.exec_drop(sql, values).await,
            None => conn.exec_drop(sql, ()).await,
        },
    };
    match done {
        Ok(()) => Outcome::Rows(ResultSet {
            columns: Vec::new(),
            rows: vec![vec![Cell::UInt(conn.affected_rows())]],
        }),
        Err(mysql_async::Error::Server(e)) => Outcome::Failed {
            code: e.code,
            message: e.message,
        },
        Err(e) => Outcome::Lost(e.to_string()),
    }
}

/// Runs the write scenarios on the proxy (`through`) and the reference: each prepared (as
/// written, then with parameters) inside a transaction rolled back, then as text for real;
/// the affected rows compare like a one-row result. Then every table's contents are compared
/// (category `contents`).
async fn write_run(through: &mut Conn, reference: &mut Conn, writes: &[Query]) -> Vec<Record> {
    let mut records = Vec::new();
    for q in writes {
        let mut verdicts = [Verdict::Pass, Verdict::Pass, Verdict::Pass];
        let mut reference_error = None;
        // The text run, which stays, comes last.
        for (slot, protocol) in [
            (1, Protocol::Binary),
            (2, Protocol::Params),
            (0, Protocol::Text),
        ] {
            let rolled_back = protocol != Protocol::Text;
            if rolled_back {
                through.query_drop("BEGIN").await.unwrap();
                reference.query_drop("BEGIN").await.unwrap();
            }
            let expected = write(reference, &q.sql, protocol).await;
            if let Outcome::Failed { code, message } = &expected {
                reference_error = Some(format!("{code}: {message}"));
            }
            let got = write(through, &q.sql, protocol).await;
            if rolled_back {
                through.query_drop("ROLLBACK").await.unwrap();
                reference.query_drop("ROLLBACK").await.unwrap();
            }
            verdicts[slot] = match classify(&got, &expected, &Mode::default()) {
                Verdict::Wrong(d) => Verdict::Wrong(format!("affected rows: {d}")),
                v => v,
            };
        }
        records.push(Record {
            query: q.clone(),
            verdicts,
            reference_error,
        });
    }
    for (table, key) in [
        ("users", "user_id"),
        ("orders", "order_id"),
        ("refunds", "refund_id"),
        ("products", "product_id"),
        ("regions", "city"),
    ] {
        let sql = format!("SELECT * FROM {table} ORDER BY {key}");
        let expected = run(reference, &sql, Protocol::Text).await;
        let got = run(through, &sql, Protocol::Text).await;
        let exact = Mode {
            order: Order::Exact,
            ci: false,
        };
        let verdict = classify(&got, &expected, &exact);
        records.push(Record {
            query: Query {
                category: "contents".into(),
                sql,
                line: 0,
                mode: exact,
            },
            verdicts: [verdict.clone(), verdict.clone(), verdict],
            reference_error: None,
        });
    }
    records
}

/// Runs the schema and the data statements on `conn`.
async fn load(conn: &mut Conn, where_: &str, schema: &[String], data: &[String]) {
    for stmt in schema.iter().chain(data) {
        conn.query_drop(stmt).await.unwrap_or_else(|e| {
            panic!(
                "{where_}: {e}\n{}",
                stmt.chars().take(300).collect::<String>()
            )
        });
    }
}

/// The collation the `ci` and `ordered_by` comparisons assume.
async fn check_collation(conn: &mut Conn) {
    let same: Vec<(i64, i64, i64, i64)> = conn
        .query(
            "SELECT 'Émile' = 'emile' COLLATE utf8mb4_general_ci, 'alice ' = 'ALICE' COLLATE utf8mb4_general_ci, \
             'Zoë' = 'zoe' COLLATE utf8mb4_general_ci, 'a' = 'A' COLLATE utf8mb4_bin",
        )
        .await
        .unwrap();
    assert_eq!(
        same,
        vec![(1, 1, 1, 0)],
        "utf8mb4_general_ci is not as assumed"
    );
}

/// Problems of the corpus itself: the reference must answer every query outside the
/// category `errors`, and fail on every query in it.
fn corpus_errors(records: &[Record]) -> Vec<String> {
    records
        .iter()
        .filter(|r| (r.query.category == "errors") != r.reference_error.is_some())
        .map(|r| {
            format!(
                "line {}: {} (reference: {})",
                r.query.line,
                r.query.sql,
                r.reference_error.as_deref().unwrap_or("answered")
            )
        })
        .collect()
}

#[derive(Default)]
struct Counts {
    pass: usize,
    reject: usize,
    wrong: usize,
}

/// The report text and the totals.
fn report(records: &[Record]) -> (String, Counts) {
    let mut categories: Vec<&str> = Vec::new();
    let mut per: BTreeMap<&str, (usize, Counts)> = BTreeMap::new();
    let mut total = Counts::default();
    for r in records {
        let cat = r.query.category.as_str();
        if !categories.contains(&cat) {
            categories.push(cat);
        }
        let entry = per.entry(cat).or_default();
        entry.0 += 1;
        for v in &r.verdicts {
            let (c, t) = (&mut entry.1, &mut total);
            match v {
                Verdict::Pass => {
                    c.pass += 1;
                    t.pass += 1;
                }
                Verdict::Reject { .. } => {
                    c.reject += 1;
                    t.reject += 1;
                }
                Verdict::Wrong(_) => {
                    c.wrong += 1;
                    t.wrong += 1;
                }
            }
        }
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "dbmesh differential report: {} queries x {} protocols ({})\n",
        records.len(),
        PROTOCOLS.len(),
        PROTOCOLS.map(Protocol::name).join(", ")
    );
    let _ = writeln!(
        out,
        "{:<16} {:>7} {:>6} {:>6} {:>6}",
        "category", "queries", "pass", "reject", "wrong"
    );
    for cat in &categories {
        let (n, c) = &per[cat];
        let _ = writeln!(
            out,
            "{cat:<16} {n:>7} {:>6} {:>6} {:>6}",
            c.pass, c.reject, c.wrong
        );
    }
    let _ = writeln!(
        out,
        "{:<16} {:>7} {:>6} {:>6} {:>6}",
        "total",
        records.len(),
        total.pass,
        total.reject,
        total.wrong
    );

    let describe = |r: &Record, pick: &dyn Fn(&Verdict) -> Option<String>| -> Option<String> {
        // Protocols with the same finding share a line.
        let mut lines: Vec<(Vec<&str>, String)> = Vec::new();
        for (protocol, v) in PROTOCOLS.iter().zip(&r.verdicts) {
            let Some(found) = pick(v) else { continue };
            match lines.iter_mut().find(|(_, f)| *f == found) {
                Some((names, _)) => names.push(protocol.name()),
                None => lines.push((vec![protocol.name()], found)),
            }
        }
        if lines.is_empty() {
            return None;
        }
        let proto = lines
            .iter()
            .map(|(names, found)| format!("{}: {found}", names.join("+")))
            .collect::<Vec<_>>()
            .join("\n    ");
        Some(format!(
            "[{}] line {}: {}\n    {proto}\n",
            r.query.category, r.query.line, r.query.sql
        ))
    };

    let wrong_lines: Vec<String> = records
        .iter()
        .filter(|r| r.verdicts.iter().any(|v| matches!(v, Verdict::Wrong(_))))
        .map(|r| r.query.line.to_string())
        .collect();
    let _ = writeln!(out, "\n== wrong ({}) ==", total.wrong);
    for r in records {
        if let Some(s) = describe(r, &|v| match v {
            Verdict::Wrong(d) => Some(d.clone()),
            _ => None,
        }) {
            out.push_str(&s);
        }
    }
    let _ = writeln!(out, "\n== rejected ({}) ==", total.reject);
    for r in records {
        if let Some(s) = describe(r, &|v| match v {
            Verdict::Reject { code, message } => Some(format!("{code}: {message}")),
            _ => None,
        }) {
            out.push_str(&s);
        }
    }
    let failing: Vec<&Record> = records
        .iter()
        .filter(|r| r.reference_error.is_some())
        .collect();
    let _ = writeln!(
        out,
        "\n== failing on the reference too (pass) ({}) ==",
        failing.len()
    );
    for r in failing {
        let _ = writeln!(
            out,
            "[{}] line {}: {}\n    reference: {}",
            r.query.category,
            r.query.line,
            r.query.sql,
            r.reference_error.as_deref().unwrap_or("")
        );
    }
    let _ = writeln!(
        out,
        "\ntotal: {} pass, {} reject, {} wrong (queries.sql lines: {})",
        total.pass,
        total.reject,
        total.wrong,
        if wrong_lines.is_empty() {
            "none".to_string()
        } else {
            wrong_lines.join(", ")
        }
    );
    (out, total)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merged_results_equal_a_single_database() {
    let started = Instant::now();
    let queries = parse_corpus(QUERIES_SQL).expect("queries.sql parses");
    let writes = parse_corpus(WRITES_SQL).expect("writes.sql parses");
    assert!(
        queries.len() >= MIN_CORPUS,
        "the corpus has {} queries, fewer than {MIN_CORPUS}",
        queries.len()
    );
    let servers = testkit::backends(2).expect("two MariaDB servers");
    let mut reports = String::new();
    let mut wrong = 0;
    let mut rejects = 0;
    let mut problems = Vec::new();
    for layout in &LAYOUTS {
        let t0 = Instant::now();
        let records = layout_run(layout, &servers, &queries, &writes).await;
        let (text, total) = report(&records);
        let _ = writeln!(
            reports,
            "== layout: {} ({:.1?}) ==\n{text}",
            layout.name,
            t0.elapsed()
        );
        wrong += total.wrong;
        rejects += total.reject;
        problems.extend(
            corpus_errors(&records)
                .into_iter()
                .map(|e| format!("{}: {e}", layout.name)),
        );
    }
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("differential-report.txt");
    std::fs::write(&path, &reports).unwrap();
    println!("{reports}");
    println!(
        "report written to {}; {:.1?} in all",
        path.display(),
        started.elapsed()
    );
    assert!(
        problems.is_empty(),
        "corpus problems:\n{}",
        problems.join("\n")
    );
    assert_eq!(
        wrong,
        0,
        "{wrong} wrong answers through dbmesh; see the report above or {}",
        path.display()
    );
    if std::env::var("DBMESH_DIFF_STRICT").is_ok_and(|v| v == "1") {
        assert_eq!(rejects, 0, "DBMESH_DIFF_STRICT=1: rejects fail too");
    }
}

/// One layout: its own shard databases and reference database, loaded alike; the queries,
/// then the writes, then the contents.
async fn layout_run(
    layout: &Layout,
    servers: &[testkit::Backend],
    queries: &[Query],
    writes: &[Query],
) -> Vec<Record> {
    let prefix = testkit::unique_name("diff");
    let dbs: Vec<String> = (0..layout.servers_of.len())
        .map(|i| format!("{prefix}_{i}"))
        .collect();
    let reference_db = format!("{prefix}_ref");
    let proxy = Proxy::start(&shop_rules(layout, servers, &dbs));

    let mut admin = Conn::new(backend_opts(&servers[0], None)).await.unwrap();
    admin
        .query_drop(format!(
            "CREATE DATABASE `{reference_db}` CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci"
        ))
        .await
        .unwrap();
    let mut reference = Conn::new(backend_opts(&servers[0], Some(&reference_db)))
        .await
        .unwrap();
    let mut through = proxy.conn(Some(LOGICAL_DB)).await;
    let schema = schema_statements(SCHEMA_SQL);
    let data = data_statements(false);
    load(&mut through, "through the proxy", &schema, &data).await;
    load(&mut reference, "on the reference", &schema, &data).await;
    check_collation(&mut reference).await;

    let mut records = differential_run(proxy.opts(Some(LOGICAL_DB)), &mut reference, queries).await;
    records.extend(write_run(&mut through, &mut reference, writes).await);

    through.disconnect().await.unwrap();
    reference.disconnect().await.unwrap();
    admin
        .query_drop(format!("DROP DATABASE IF EXISTS `{reference_db}`"))
        .await
        .unwrap();
    admin.disconnect().await.unwrap();
    for (db, &server) in dbs.iter().zip(layout.servers_of) {
        let _ = servers[server].sql(&format!("DROP DATABASE IF EXISTS `{db}`"));
    }
    records
}

/// The corpus checks itself: two plain databases with the same rows, stored differently
/// (InnoDB inserted in order / MyISAM inserted in reverse order), must give equal answers to
/// every query under the same comparison rules. A query whose answer depends on the order rows
/// happen to come out in (a LIMIT cutting through ties, an `ordered` flag on a partial order, a
/// missing `ci`) shows up here as wrong, independently of dbmesh.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_corpus_is_deterministic() {
    let queries = parse_corpus(QUERIES_SQL).expect("queries.sql parses");
    let server = testkit::backends(1).expect("a MariaDB server").remove(0);
    let prefix = testkit::unique_name("diffself");
    let (a, b) = (format!("{prefix}_a"), format!("{prefix}_b"));
    let mut admin = Conn::new(backend_opts(&server, None)).await.unwrap();
    for db in [&a, &b] {
        admin
            .query_drop(format!(
                "CREATE DATABASE `{db}` CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci"
            ))
            .await
            .unwrap();
    }
    let mut conn_a = Conn::new(backend_opts(&server, Some(&a))).await.unwrap();
    load(
        &mut conn_a,
        "database a",
        &schema_statements(SCHEMA_SQL),
        &data_statements(false),
    )
    .await;
    check_collation(&mut conn_a).await;
    let mut conn_b = Conn::new(backend_opts(&server, Some(&b))).await.unwrap();
    let myisam: Vec<String> = schema_statements(SCHEMA_SQL)
        .iter()
        .map(|s| s.replace("ENGINE=InnoDB", "ENGINE=MyISAM"))
        .collect();
    load(&mut conn_b, "database b", &myisam, &data_statements(true)).await;
    conn_b.disconnect().await.unwrap();

    let records = differential_run(backend_opts(&server, Some(&b)), &mut conn_a, &queries).await;
    let (text, total) = report(&records);
    conn_a.disconnect().await.unwrap();
    for db in [&a, &b] {
        admin
            .query_drop(format!("DROP DATABASE IF EXISTS `{db}`"))
            .await
            .unwrap();
    }
    admin.disconnect().await.unwrap();
    let problems = corpus_errors(&records);
    assert!(
        problems.is_empty(),
        "corpus problems:\n{}",
        problems.join("\n")
    );
    assert!(
        total.wrong == 0 && total.reject == 0,
        "the corpus is not deterministic:\n{text}"
    );
}

// ---------------------------------------------------------------------------------------------
// Flat memory for a big scatter ORDER BY … LIMIT
// ---------------------------------------------------------------------------------------------

const BIG_ROWS_PER_SHARD: u64 = 1_000_000;
/// How far the proxy's peak RSS may rise above its RSS before the big queries.
const BIG_MEMORY_BOUND_KIB: u64 = 64 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_big_scatter_order_by_limit_merges_in_flat_memory() {
    let started = Instant::now();
    let servers = testkit::backends(2).expect("two MariaDB servers");
    let prefix = testkit::unique_name("big");
    let dbs: Vec<String> = (0..4).map(|i| format!("{prefix}_{i}")).collect();
    let scratch = format!("{prefix}_expected");
    let mut rules = common::four_data_sources(&servers, "big", &dbs);
    rules += "[tables.t]\nkind = \"sharded\"\ncolumn = \"id\"\nalgorithm = \"mod\"\nnodes = \"ds_{0..3}\"\n";
    let proxy = Proxy::start(&rules);
    let ddl = "CREATE TABLE t (id BIGINT NOT NULL PRIMARY KEY, payload VARCHAR(16) NOT NULL) \
               ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci";
    let mut through = proxy.conn(Some("big")).await;
    through.query_drop(ddl).await.unwrap();

    // Fill the shards directly, all four at once. Shard k holds ids ≡ k (mod 4); payloads are
    // 'a'/'A'/'b'/'B' + 5 digits, so there are many ties, also between case variants, that
    // only the id breaks.
    let fills = dbs.iter().enumerate().map(|(k, db)| {
        let opts = backend_opts(&servers[k / 2], Some(db));
        async move {
            let mut c = Conn::new(opts).await.unwrap();
            let source = if c
                .query_drop(format!("SELECT 1 FROM seq_1_to_{BIG_ROWS_PER_SHARD} LIMIT 1"))
                .await
                .is_ok()
            {
                format!("(SELECT seq FROM seq_1_to_{BIG_ROWS_PER_SHARD}) s")
            } else {
                // No sequence engine (MySQL): a recursive CTE.
                c.query_drop("SET SESSION cte_max_recursion_depth = 10000000")
                    .await
                    .unwrap();
                format!("(WITH RECURSIVE r (seq) AS (SELECT 1 UNION ALL SELECT seq + 1 FROM r WHERE seq < {BIG_ROWS_PER_SHARD}) SELECT seq FROM r) s")
            };
            c.query_drop(format!(
                "INSERT INTO t (id, payload) SELECT (seq - 1) * 4 + {k}, \
                 CONCAT(ELT(1 + seq % 4, 'a', 'A', 'b', 'B'), LPAD((seq * 7919 + {k} * 104729) % 100000, 5, '0')) \
                 FROM {source}"
            ))
            .await
            .unwrap();
            c.disconnect().await.unwrap();
        }
    });
    futures_join_all(fills).await;
    let filled = started.elapsed();

    // Expected answers: the top (offset + limit) rows of each server's shards, computed by the
    // servers, gathered in one table on server 0 and queried there.
    let cases: [(&str, u64, u64); 2] = [
        (
            "SELECT id, payload FROM t ORDER BY payload DESC, id LIMIT 10",
            0,
            10,
        ),
        (
            "SELECT id, payload FROM t ORDER BY payload DESC, id LIMIT 10 OFFSET 100000",
            100_000,
            10,
        ),
    ];
    let mut admin0 = Conn::new(backend_opts(&servers[0], None)).await.unwrap();
    admin0
        .query_drop(format!("CREATE DATABASE `{scratch}`"))
        .await
        .unwrap();
    admin0
        .query_drop(format!(
            "CREATE TABLE `{scratch}`.expected (id BIGINT NOT NULL PRIMARY KEY, payload VARCHAR(16) NOT NULL) \
             ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci"
        ))
        .await
        .unwrap();
    let max_top = cases.iter().map(|c| c.1 + c.2).max().unwrap();
    for server in 0..2 {
        let (a, b) = (&dbs[server * 2], &dbs[server * 2 + 1]);
        let top = format!(
            "(SELECT id, payload FROM `{a}`.t ORDER BY payload DESC, id LIMIT {max_top}) UNION ALL \
             (SELECT id, payload FROM `{b}`.t ORDER BY payload DESC, id LIMIT {max_top})"
        );
        if server == 0 {
            admin0
                .query_drop(format!("INSERT INTO `{scratch}`.expected {top}"))
                .await
                .unwrap();
        } else {
            let mut c = Conn::new(backend_opts(&servers[1], None)).await.unwrap();
            let rows: Vec<(u64, String)> = c.query(top).await.unwrap();
            c.disconnect().await.unwrap();
            for chunk in rows.chunks(5000) {
                let values: Vec<String> = chunk
                    .iter()
                    .map(|(id, p)| format!("({id}, '{p}')"))
                    .collect();
                admin0
                    .query_drop(format!(
                        "INSERT INTO `{scratch}`.expected (id, payload) VALUES {}",
                        values.join(", ")
                    ))
                    .await
                    .unwrap();
            }
        }
    }
    let mut expected = Vec::new();
    for (sql, _, _) in &cases {
        let rows: Vec<(u64, String)> = admin0
            .query(sql.replace("FROM t", &format!("FROM `{scratch}`.expected")))
            .await
            .unwrap();
        assert_eq!(rows.len(), 10);
        expected.push(rows);
    }
    let prepared = started.elapsed();

    // Open the session's connections to all four data sources (a plain scatter, no merge),
    // then measure.
    let warm: Vec<u64> = through
        .query("SELECT id FROM t WHERE id IN (0, 1, 2, 3)")
        .await
        .unwrap();
    assert_eq!(warm.len(), 4);
    let (rss_before, peak_before) = proxy.memory_kib();
    let mut figures = Vec::new();
    let mut rejected = Vec::new();
    for ((sql, _, _), want) in cases.iter().zip(&expected) {
        for protocol in [Protocol::Text, Protocol::Binary] {
            let t0 = Instant::now();
            let got = tokio::time::timeout(Duration::from_secs(120), async {
                match protocol {
                    Protocol::Text => through.query::<(u64, String), _>(*sql).await,
                    Protocol::Binary | Protocol::Params => {
                        through.exec::<(u64, String), _, _>(*sql, ()).await
                    }
                }
            })
            .await
            .unwrap_or_else(|_| panic!("{sql}: no answer within 120 s"));
            let took = t0.elapsed();
            let (rss, peak) = proxy.memory_kib();
            match got {
                Ok(rows) => {
                    assert_eq!(&rows, want, "{} protocol: {sql}", protocol.name());
                    figures.push(format!(
                        "{:<6} {sql}: {took:.2?}, proxy RSS {rss} KiB, peak {peak} KiB",
                        protocol.name()
                    ));
                }
                Err(mysql_async::Error::Server(e)) => {
                    assert!(
                        still_usable(&mut through).await,
                        "the connection is unusable after {e}"
                    );
                    rejected.push(format!(
                        "{:<6} {sql}: rejected {}: {}",
                        protocol.name(),
                        e.code,
                        e.message
                    ));
                }
                Err(e) => panic!("{sql}: connection lost: {e}"),
            }
        }
    }
    let (rss_after, peak_after) = proxy.memory_kib();
    println!(
        "{} rows per shard x 4 shards; fill {filled:.1?}, expected answers {:.1?}, queries {:.1?}",
        BIG_ROWS_PER_SHARD,
        prepared - filled,
        started.elapsed() - prepared
    );
    println!(
        "proxy memory: RSS before {rss_before} KiB (peak so far {peak_before} KiB), after {rss_after} KiB, peak {peak_after} KiB; peak rise over RSS before: {} KiB (bound {BIG_MEMORY_BOUND_KIB} KiB)",
        peak_after.saturating_sub(rss_before)
    );
    for f in figures.iter().chain(&rejected) {
        println!("  {f}");
    }
    println!("  expected first rows: {:?}", &expected[0][..3]);

    through.disconnect().await.unwrap();
    admin0
        .query_drop(format!("DROP DATABASE IF EXISTS `{scratch}`"))
        .await
        .unwrap();
    admin0.disconnect().await.unwrap();
    for (i, db) in dbs.iter().enumerate() {
        let _ = servers[i / 2].sql(&format!("DROP DATABASE IF EXISTS `{db}`"));
    }

    assert!(
        peak_after.saturating_sub(rss_before) < BIG_MEMORY_BOUND_KIB,
        "the proxy's peak RSS rose by {} KiB (bound {BIG_MEMORY_BOUND_KIB} KiB)",
        peak_after.saturating_sub(rss_before)
    );
    if std::env::var("DBMESH_DIFF_STRICT").is_ok_and(|v| v == "1") {
        assert!(rejected.is_empty(), "DBMESH_DIFF_STRICT=1: {rejected:?}");
    }
}

/// Runs futures concurrently on the current task (no `futures` dependency).
async fn futures_join_all<F: std::future::Future<Output = ()> + Send + 'static>(
    futures: impl Iterator<Item = F>,
) {
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    for h in handles {
        h.await.unwrap();
    }
}

// ---------------------------------------------------------------------------------------------
// The comparator's own tests: it must catch wrong answers.
// ---------------------------------------------------------------------------------------------

#[cfg(test)]
mod comparator {
    use super::*;

    fn col(name: &str, t: ColumnType) -> ColMeta {
        ColMeta {
            name: name.into(),
            column_type: t,
            decimals: 0,
            not_null: false,
            unsigned: false,
            binary: false,
        }
    }

    fn text(s: &str) -> Cell {
        Cell::Text(s.into())
    }

    fn rs(rows: Vec<Vec<Cell>>) -> ResultSet {
        ResultSet {
            columns: vec![
                col("id", ColumnType::MYSQL_TYPE_LONGLONG),
                col("name", ColumnType::MYSQL_TYPE_VAR_STRING),
            ],
            rows,
        }
    }

    fn multiset() -> Mode {
        Mode::default()
    }

    fn ordered() -> Mode {
        Mode {
            order: Order::Exact,
            ci: false,
        }
    }

    #[test]
    fn the_corpus_parses_with_categories_and_flags() {
        let q = parse_corpus(
            "-- comment\n\n-- category: a\nSELECT 1\nSELECT 2 -- ordered\n-- category: b\nSELECT 3 -- ordered_by=2,1 ci\n",
        )
        .unwrap();
        assert_eq!(q.len(), 3);
        assert_eq!((q[0].category.as_str(), q[0].line), ("a", 4));
        assert_eq!(q[0].mode, Mode::default());
        assert_eq!(q[1].sql, "SELECT 2");
        assert_eq!(q[1].mode.order, Order::Exact);
        assert_eq!(q[2].category, "b");
        assert_eq!(q[2].mode.order, Order::Keys(vec![1, 0]));
        assert!(q[2].mode.ci);
        assert!(parse_corpus("SELECT 1\n").is_err(), "no category");
        assert!(parse_corpus("-- category: a\nSELECT 1 -- sorted\n").is_err());
        assert!(parse_corpus("-- category: a\nSELECT 1 -- ordered_by=0\n").is_err());
        assert!(parse_corpus("-- category: a\nSELECT 1;\n").is_err());
    }

    #[test]
    fn the_real_corpus_is_big_enough_and_has_the_categories() {
        let q = parse_corpus(QUERIES_SQL).unwrap();
        assert!(q.len() >= MIN_CORPUS, "{}", q.len());
        for cat in [
            "point",
            "scatter_plain",
            "order_by",
            "limit_offset",
            "aggregates",
            "group_by",
            "distinct",
            "joins",
            "subqueries",
            "union",
        ] {
            assert!(
                q.iter().filter(|x| x.category == cat).count() >= 10,
                "category {cat}"
            );
        }
        // Every LIMIT comes with an ORDER BY (or is the LIMIT of an aggregate without GROUP BY,
        // or inside a parenthesized UNION part that has its own ORDER BY).
        for x in &q {
            let upper = x.sql.to_uppercase();
            if upper.contains(" LIMIT ") {
                assert!(
                    upper.contains("ORDER BY"),
                    "line {}: LIMIT without ORDER BY",
                    x.line
                );
            }
        }
        let mut sqls: Vec<&str> = q.iter().map(|x| x.sql.as_str()).collect();
        sqls.sort_unstable();
        let before = sqls.len();
        sqls.dedup();
        assert_eq!(before, sqls.len(), "duplicate queries in the corpus");
        assert!(!schema_statements(SCHEMA_SQL).is_empty());
    }

    #[test]
    fn normalization_per_protocol() {
        let dbl = col("r", ColumnType::MYSQL_TYPE_DOUBLE);
        let dec = col("d", ColumnType::MYSQL_TYPE_NEWDECIMAL);
        assert!(
            matches!(normalize(Value::Bytes(b"1.5".to_vec()), &dbl), Cell::Approx(f) if f == 1.5)
        );
        assert!(
            matches!(normalize(Value::Bytes(b"1.50".to_vec()), &dec), Cell::Text(s) if s == "1.50")
        );
        assert!(matches!(normalize(Value::NULL, &dec), Cell::Null));
        assert!(matches!(normalize(Value::Float(0.5), &dbl), Cell::Approx(f) if f == 0.5));
        assert!(matches!(normalize(Value::Int(-3), &dec), Cell::Int(-3)));
        assert!(matches!(
            normalize(Value::UInt(u64::MAX), &dec),
            Cell::UInt(u64::MAX)
        ));
        assert!(
            matches!(normalize(Value::Date(2022, 6, 1, 12, 0, 0, 0), &dec), Cell::Date(s) if s == "2022-06-01 12:00:00.000000")
        );
        assert!(
            matches!(normalize(Value::Bytes(vec![0xff, 0x00]), &dec), Cell::Text(s) if s == "0xff00")
        );
        // Decimals are exact, doubles approximate, types never mix.
        assert!(!cell_eq(&text("10.50"), &text("10.5"), false));
        assert!(cell_eq(
            &Cell::Approx(1.0),
            &Cell::Approx(1.0 + 1e-12),
            false
        ));
        assert!(!cell_eq(
            &Cell::Approx(1.0),
            &Cell::Approx(1.000_001),
            false
        ));
        assert!(!cell_eq(&Cell::Int(1), &Cell::UInt(1), false));
        assert!(!cell_eq(&Cell::Null, &text(""), true));
        assert!(!cell_eq(&text("alice"), &text("Alice"), false));
        assert!(cell_eq(&text("alice"), &text("ALICE "), true));
        assert!(cell_eq(&text("Émile"), &text("emile"), true));
        assert!(!cell_eq(&text(" alice"), &text("alice"), true));
    }

    #[test]
    fn equal_results_pass_in_every_mode() {
        let a = rs(vec![
            vec![Cell::Int(1), text("a")],
            vec![Cell::Int(2), Cell::Null],
        ]);
        assert!(compare(&a, &a.clone(), &ordered()).is_ok());
        assert!(compare(&a, &a.clone(), &multiset()).is_ok());
        let mut b = a.clone();
        b.rows.reverse();
        assert!(compare(&b, &a, &multiset()).is_ok());
        assert!(compare(&b, &a, &ordered())
            .unwrap_err()
            .starts_with("rows:"));
    }

    #[test]
    fn missing_extra_or_changed_rows_are_wrong() {
        let a = rs(vec![
            vec![Cell::Int(1), text("a")],
            vec![Cell::Int(1), text("a")],
        ]);
        let one = rs(vec![vec![Cell::Int(1), text("a")]]);
        for mode in [multiset(), ordered()] {
            assert!(compare(&one, &a, &mode).is_err(), "a duplicate row lost");
            assert!(compare(&a, &one, &mode).is_err(), "a row duplicated");
        }
        let changed = rs(vec![
            vec![Cell::Int(1), text("a")],
            vec![Cell::Int(1), text("A")],
        ]);
        assert!(compare(&changed, &a, &multiset()).is_err());
        let ci = Mode {
            order: Order::Multiset,
            ci: true,
        };
        assert!(compare(&changed, &a, &ci).is_ok());
        let empty = rs(vec![]);
        let err = compare(&empty, &a, &multiset()).unwrap_err();
        assert!(err.contains("2 only in reference"), "{err}");
    }

    #[test]
    fn floats_pair_up_despite_summation_noise() {
        let cols = vec![
            col("k", ColumnType::MYSQL_TYPE_LONGLONG),
            col("s", ColumnType::MYSQL_TYPE_DOUBLE),
        ];
        let p = ResultSet {
            columns: cols.clone(),
            rows: vec![
                vec![Cell::Int(1), Cell::Approx(0.1 + 0.2)],
                vec![Cell::Int(1), Cell::Approx(0.3)],
                vec![Cell::Int(2), Cell::Approx(1e20)],
            ],
        };
        let r = ResultSet {
            columns: cols.clone(),
            rows: vec![
                vec![Cell::Int(2), Cell::Approx(1e20 + 1e6)],
                vec![Cell::Int(1), Cell::Approx(0.3)],
                vec![Cell::Int(1), Cell::Approx(0.7 - 0.4)],
            ],
        };
        assert!(compare(&p, &r, &multiset()).is_ok());
        let mut off = r.clone();
        off.rows[0][1] = Cell::Approx(1.000_01e20);
        assert!(compare(&p, &off, &multiset()).is_err());
    }

    #[test]
    fn metadata_differences_are_wrong() {
        let a = rs(vec![vec![Cell::Int(1), text("a")]]);
        for change in [
            |c: &mut ColMeta| c.name = "ID".into(),
            |c: &mut ColMeta| c.column_type = ColumnType::MYSQL_TYPE_LONG,
            |c: &mut ColMeta| c.decimals = 2,
            |c: &mut ColMeta| c.not_null = true,
            |c: &mut ColMeta| c.unsigned = true,
            |c: &mut ColMeta| c.binary = true,
        ] {
            let mut b = a.clone();
            change(&mut b.columns[0]);
            let err = compare(&b, &a, &multiset()).unwrap_err();
            assert!(err.starts_with("metadata:"), "{err}");
        }
        let mut fewer = a.clone();
        fewer.columns.pop();
        assert!(compare(&fewer, &a, &multiset())
            .unwrap_err()
            .starts_with("metadata:"));
    }

    #[test]
    fn ordered_by_checks_the_key_sequence_but_not_the_order_of_ties() {
        let keys = Mode {
            order: Order::Keys(vec![1]),
            ci: false,
        };
        let r = rs(vec![
            vec![Cell::Int(1), text("alice")],
            vec![Cell::Int(2), text("Alice ")],
            vec![Cell::Int(3), text("bob")],
        ]);
        // Ties (equal under the collation) in another order: fine.
        let p = rs(vec![
            vec![Cell::Int(2), text("Alice ")],
            vec![Cell::Int(1), text("alice")],
            vec![Cell::Int(3), text("bob")],
        ]);
        assert!(compare(&p, &r, &keys).is_ok());
        // Binary order instead of the collation's: wrong.
        let p = rs(vec![
            vec![Cell::Int(2), text("Alice ")],
            vec![Cell::Int(3), text("bob")],
            vec![Cell::Int(1), text("alice")],
        ]);
        assert!(compare(&p, &r, &keys).unwrap_err().starts_with("order:"));
    }

    #[test]
    fn classification() {
        let a = Outcome::Rows(rs(vec![vec![Cell::Int(1), text("a")]]));
        let b = Outcome::Rows(rs(vec![vec![Cell::Int(2), text("a")]]));
        let err = Outcome::Failed {
            code: 1235,
            message: "not yet".into(),
        };
        let other_err = Outcome::Failed {
            code: 1054,
            message: "unknown column".into(),
        };
        let m = multiset();
        assert!(matches!(classify(&a, &a, &m), Verdict::Pass));
        assert!(matches!(classify(&b, &a, &m), Verdict::Wrong(_)));
        assert!(matches!(
            classify(&err, &a, &m),
            Verdict::Reject { code: 1235, .. }
        ));
        assert!(matches!(classify(&err, &other_err, &m), Verdict::Pass));
        assert!(matches!(classify(&a, &other_err, &m), Verdict::Wrong(_)));
        assert!(matches!(
            classify(&Outcome::Lost("reset".into()), &a, &m),
            Verdict::Wrong(_)
        ));
    }

    #[test]
    fn the_report_counts_and_lists() {
        let q = |cat: &str, line| Query {
            category: cat.into(),
            sql: format!("SELECT {line}"),
            line,
            mode: Mode::default(),
        };
        let reject = || Verdict::Reject {
            code: 1235,
            message: "x".into(),
        };
        let records = vec![
            Record {
                query: q("a", 1),
                verdicts: [Verdict::Pass, Verdict::Pass, Verdict::Pass],
                reference_error: None,
            },
            Record {
                query: q("a", 2),
                verdicts: [reject(), reject(), Verdict::Pass],
                reference_error: None,
            },
            Record {
                query: q("b", 3),
                verdicts: [
                    Verdict::Pass,
                    Verdict::Wrong("rows: boom".into()),
                    Verdict::Wrong("rows: boom".into()),
                ],
                reference_error: None,
            },
        ];
        let (text, total) = report(&records);
        assert_eq!((total.pass, total.reject, total.wrong), (5, 2, 2));
        assert!(
            text.contains("line 3: SELECT 3\n    binary+params: rows: boom"),
            "{text}"
        );
        assert!(text.contains("text+binary: 1235: x"), "{text}");
    }

    #[test]
    fn literals_become_parameters_where_a_client_binds_them() {
        let (sql, values) = parameterize(
            "SELECT a, 5 FROM t WHERE b = 'it''s' AND c IN (1, 2.5) AND d BETWEEN 3 AND 4 \
             AND e > f + 1 AND g LIKE 'x%' GROUP BY 1 HAVING COUNT(*) >= 2 ORDER BY 2 LIMIT 10, 20",
        )
        .unwrap();
        assert_eq!(
            sql,
            "SELECT a, 5 FROM t WHERE b = ? AND c IN (?, ?) AND d BETWEEN ? AND ? \
             AND e > f + 1 AND g LIKE ? GROUP BY 1 HAVING COUNT(*) >= ? ORDER BY 2 LIMIT ?, ?"
        );
        assert_eq!(
            values,
            [
                Value::Bytes(b"it's".to_vec()),
                Value::Int(1),
                Value::Bytes(b"2.5".to_vec()),
                Value::Int(3),
                Value::Int(4),
                Value::Bytes(b"x%".to_vec()),
                Value::Int(2),
                Value::Int(10),
                Value::Int(20),
            ]
        );
        let (sql, _) = parameterize("SELECT x FROM t ORDER BY x LIMIT 5 OFFSET 10").unwrap();
        assert_eq!(sql, "SELECT x FROM t ORDER BY x LIMIT ? OFFSET ?");
        assert_eq!(parameterize("SELECT COUNT(*) FROM t GROUP BY 1"), None);
        assert_eq!(
            parameterize("SELECT * FROM t WHERE a = -1 AND b = 2 * 3"),
            None
        );
    }

    #[test]
    fn the_data_set_is_deterministic_and_has_its_corner_cases() {
        let a = data_statements(false);
        assert_eq!(a, data_statements(false));
        let mut b = data_statements(true);
        assert_eq!(a.len(), b.len());
        b.reverse();
        assert_ne!(a, b, "the reversed data set inserts rows in another order");
        let all = a.join("\n");
        for needle in [
            "'alice '",
            "'ALICE'",
            "NULL",
            "'returned'",
            "18446744073709551615",
            "-",
            "'2022-06-01 12:00:00'",
        ] {
            assert!(all.contains(needle), "{needle}");
        }
        assert_eq!(date(0), "2020-01-01");
        assert_eq!(date(59), "2020-02-29");
        assert_eq!(date(366), "2021-01-01");
        assert_eq!(cents(-5), "-0.05");
        assert_eq!(cents(12345), "123.45");
    }
}
