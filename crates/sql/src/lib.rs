//! dbmesh's SQL stage: everything the router needs to know about statement
//! text, with sqlparser (MySQL dialect) wrapped so that its frequent breaking
//! releases touch this crate only.
//!
//! - [`fingerprint`]: a hand-written lexer turns text into the plan-cache key
//!   (literals → `?`) and the list of literals, without sqlparser; [`split`]
//!   cuts multi-statement text and [`identifiers`] lists names; [`client_charset`]
//!   reads what a SET does to the client's character set, [`time_limit`], [`set_statement`] and
//!   [`max_statement_time`] what a statement's text says about its time limit. The lexer itself ([`Lexer`],
//!   and [`CodeTokens`] reading executable comments as code) is every other crate's
//!   scanner too: pins, the read/write split and the statements the proxy answers itself.
//! - [`parse`]: text → [`Statement`]s, with a recursion limit for untrusted input;
//!   [`Statement::bind_slots`] ties the AST's literals to fingerprint slots.
//! - [`Statement::analyze`]: kind, tables, and sharding-key conditions
//!   ([`KeyClass`], [`Cond`]) given a [`KeyOracle`] that says which tables are sharded.
//! - [`Statement::render`]: logical → physical rewrite of table names in every
//!   position, printed as a template of [`Seg`]ments.
//! - [`Statement::view_analysis`] and [`Statement::logical_view`]: the per-data-source
//!   copies of a query on `information_schema` that answer with logical names.
//!
//! The crate knows nothing of rules files or backends; it answers questions
//! about text.

mod analyze;
mod client_charset;
mod fingerprint;
mod generated_values;
mod information_schema;
mod insert_columns;
mod lexer;
mod merge_rewrite;
mod merge_shape;
mod mysql_syntax;
mod parse;
mod processlist;
mod rewrite;
mod row_move;
mod session_values;
mod time_limit;
mod union_split;
mod values_rows;

pub use analyze::{
    Analysis, Cond, DdlOp, Insert, InsertKey, KeyClass, KeyOracle, KeyValue, Kind, Session, Show,
    TableRef,
};
pub use client_charset::{client_charset, ClientCharset};
pub use fingerprint::{fingerprint, unquote, Fingerprint, Literal, LiteralKind, LiteralValue};
pub use generated_values::InsertColumn;
pub use information_schema::{
    system_table, unqualified_system_tables, SchemaValue, SystemTable, ViewAnalysis, ViewSource,
    INFORMATION_SCHEMA,
};
pub use insert_columns::RowsWithoutColumns;
pub use lexer::{identifiers, mentions, split, strip_leading_words, CodeTokens, Lexer, Tok, Token};
pub use merge_rewrite::SelectMerge;
pub use merge_shape::{
    Aggregation, BinOp, BitFn, Col, Constant, DistinctFn, GroupConcat, LimitOperands, MergeExpr,
    MergeShape, Operand, Role, SetOp, SortKey,
};
pub use parse::{parse, Statement, RECURSION_LIMIT};
pub use processlist::with_processlist_rows;
pub use rewrite::{Naming, Rendered, Seg};
pub use row_move::RowMove;
pub use session_values::{
    found_rows_beyond_returned, replace_session_values, Replacement, SessionValue, Unreplaceable,
};
pub use time_limit::{
    max_statement_time, set_statement, time_limit, MaxStatementTime, SetStatement, TimeLimit,
};
pub use union_split::UnionSplit;
pub use values_rows::repeat_values_row;

/// `name` as an identifier in SQL text: bare when it is a plain word that is
/// not a MySQL reserved word, otherwise in backticks (backticks doubled).
pub fn quote_ident(name: &str) -> std::borrow::Cow<'_, str> {
    let plain = name
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'$');
    let reserved = || {
        MYSQL_RESERVED
            .binary_search_by(|k| k.bytes().cmp(name.bytes().map(|b| b.to_ascii_uppercase())))
            .is_ok()
    };
    if plain && !reserved() {
        std::borrow::Cow::Borrowed(name)
    } else {
        std::borrow::Cow::Owned(format!("`{}`", name.replace('`', "``")))
    }
}

/// MySQL 8.0's reserved words (sorted), which must be quoted as identifiers.
/// <https://dev.mysql.com/doc/refman/8.0/en/keywords.html>
const MYSQL_RESERVED: &[&str] = &[
    "ACCESSIBLE",
    "ADD",
    "ALL",
    "ALTER",
    "ANALYZE",
    "AND",
    "AS",
    "ASC",
    "ASENSITIVE",
    "BEFORE",
    "BETWEEN",
    "BIGINT",
    "BINARY",
    "BLOB",
    "BOTH",
    "BY",
    "CALL",
    "CASCADE",
    "CASE",
    "CHANGE",
    "CHAR",
    "CHARACTER",
    "CHECK",
    "COLLATE",
    "COLUMN",
    "CONDITION",
    "CONSTRAINT",
    "CONTINUE",
    "CONVERT",
    "CREATE",
    "CROSS",
    "CUBE",
    "CUME_DIST",
    "CURRENT_DATE",
    "CURRENT_TIME",
    "CURRENT_TIMESTAMP",
    "CURRENT_USER",
    "CURSOR",
    "DATABASE",
    "DATABASES",
    "DAY_HOUR",
    "DAY_MICROSECOND",
    "DAY_MINUTE",
    "DAY_SECOND",
    "DEC",
    "DECIMAL",
    "DECLARE",
    "DEFAULT",
    "DELAYED",
    "DELETE",
    "DENSE_RANK",
    "DESC",
    "DESCRIBE",
    "DETERMINISTIC",
    "DISTINCT",
    "DISTINCTROW",
    "DIV",
    "DOUBLE",
    "DROP",
    "DUAL",
    "EACH",
    "ELSE",
    "ELSEIF",
    "EMPTY",
    "ENCLOSED",
    "ESCAPED",
    "EXCEPT",
    "EXISTS",
    "EXIT",
    "EXPLAIN",
    "FALSE",
    "FETCH",
    "FIRST_VALUE",
    "FLOAT",
    "FLOAT4",
    "FLOAT8",
    "FOR",
    "FORCE",
    "FOREIGN",
    "FROM",
    "FULLTEXT",
    "FUNCTION",
    "GENERATED",
    "GET",
    "GRANT",
    "GROUP",
    "GROUPING",
    "GROUPS",
    "HAVING",
    "HIGH_PRIORITY",
    "HOUR_MICROSECOND",
    "HOUR_MINUTE",
    "HOUR_SECOND",
    "IF",
    "IGNORE",
    "IN",
    "INDEX",
    "INFILE",
    "INNER",
    "INOUT",
    "INSENSITIVE",
    "INSERT",
    "INT",
    "INT1",
    "INT2",
    "INT3",
    "INT4",
    "INT8",
    "INTEGER",
    "INTERSECT",
    "INTERVAL",
    "INTO",
    "IO_AFTER_GTIDS",
    "IO_BEFORE_GTIDS",
    "IS",
    "ITERATE",
    "JOIN",
    "JSON_TABLE",
    "KEY",
    "KEYS",
    "KILL",
    "LAG",
    "LAST_VALUE",
    "LATERAL",
    "LEAD",
    "LEADING",
    "LEAVE",
    "LEFT",
    "LIKE",
    "LIMIT",
    "LINEAR",
    "LINES",
    "LOAD",
    "LOCALTIME",
    "LOCALTIMESTAMP",
    "LOCK",
    "LONG",
    "LONGBLOB",
    "LONGTEXT",
    "LOOP",
    "LOW_PRIORITY",
    "MASTER_BIND",
    "MASTER_SSL_VERIFY_SERVER_CERT",
    "MATCH",
    "MAXVALUE",
    "MEDIUMBLOB",
    "MEDIUMINT",
    "MEDIUMTEXT",
    "MIDDLEINT",
    "MINUTE_MICROSECOND",
    "MINUTE_SECOND",
    "MOD",
    "MODIFIES",
    "NATURAL",
    "NOT",
    "NO_WRITE_TO_BINLOG",
    "NTH_VALUE",
    "NTILE",
    "NULL",
    "NUMERIC",
    "OF",
    "ON",
    "OPTIMIZE",
    "OPTIMIZER_COSTS",
    "OPTION",
    "OPTIONALLY",
    "OR",
    "ORDER",
    "OUT",
    "OUTER",
    "OUTFILE",
    "OVER",
    "PARTITION",
    "PERCENT_RANK",
    "PRECISION",
    "PRIMARY",
    "PROCEDURE",
    "PURGE",
    "RANGE",
    "RANK",
    "READ",
    "READS",
    "READ_WRITE",
    "REAL",
    "RECURSIVE",
    "REFERENCES",
    "REGEXP",
    "RELEASE",
    "RENAME",
    "REPEAT",
    "REPLACE",
    "REQUIRE",
    "RESIGNAL",
    "RESTRICT",
    "RETURN",
    "REVOKE",
    "RIGHT",
    "RLIKE",
    "ROW",
    "ROWS",
    "ROW_NUMBER",
    "SCHEMA",
    "SCHEMAS",
    "SECOND_MICROSECOND",
    "SELECT",
    "SENSITIVE",
    "SEPARATOR",
    "SET",
    "SHOW",
    "SIGNAL",
    "SMALLINT",
    "SPATIAL",
    "SPECIFIC",
    "SQL",
    "SQLEXCEPTION",
    "SQLSTATE",
    "SQLWARNING",
    "SQL_BIG_RESULT",
    "SQL_CALC_FOUND_ROWS",
    "SQL_SMALL_RESULT",
    "SSL",
    "STARTING",
    "STORED",
    "STRAIGHT_JOIN",
    "SYSTEM",
    "TABLE",
    "TERMINATED",
    "THEN",
    "TINYBLOB",
    "TINYINT",
    "TINYTEXT",
    "TO",
    "TRAILING",
    "TRIGGER",
    "TRUE",
    "UNDO",
    "UNION",
    "UNIQUE",
    "UNLOCK",
    "UNSIGNED",
    "UPDATE",
    "USAGE",
    "USE",
    "USING",
    "UTC_DATE",
    "UTC_TIME",
    "UTC_TIMESTAMP",
    "VALUES",
    "VARBINARY",
    "VARCHAR",
    "VARCHARACTER",
    "VARYING",
    "VIRTUAL",
    "WHEN",
    "WHERE",
    "WHILE",
    "WINDOW",
    "WITH",
    "WRITE",
    "XOR",
    "YEAR_MONTH",
    "ZEROFILL",
];

/// Errors of this crate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SqlError {
    /// The text is not SQL the parser understands; the message is the parser's.
    #[error("{0}")]
    Parse(String),
    /// The statement cannot be rewritten; the message names what is in the way.
    #[error("cannot rewrite the statement: {0}")]
    Render(String),
}
