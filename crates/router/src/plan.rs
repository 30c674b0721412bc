//! [`Plan`]: the router's answer for one statement — where it runs, with
//! which physical SQL, and how the partial results become one answer.
//!
//! A plan describes itself ([`Plan::describe`], and `Display` for the full
//! form with kind and combine); the same text feeds `EXPLAIN ROUTE`,
//! `dbmesh explain` and the router's golden tests, so they cannot drift.

use std::fmt;

use sql::MergeShape;

/// A value bound to a `?` placeholder of a prepared statement.
#[derive(Debug, Clone, PartialEq)]
pub enum Param {
    /// SQL NULL.
    Null,
    /// A signed integer.
    Int(i64),
    /// An unsigned integer.
    UInt(u64),
    /// A floating-point number.
    Double(f64),
    /// Strings, decimals, dates and times, as text (or raw bytes).
    Bytes(Vec<u8>),
}

/// Where COM_STMT_PREPARE prepares a statement ([`crate::Router::route_for_prepare`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrepareRoute {
    /// The statement with the client's placeholders on every target it may
    /// run on (unbound values route like unknown ones). Ids a sequence fills
    /// are not known before EXECUTE: where one is omitted the plan gives
    /// `DEFAULT`. Prepare it to learn the parameters and columns; never
    /// execute it.
    pub plan: Plan,
    /// Every execution must be routed with its own values (even with one target): a
    /// sequence may fill ids into the statement, or it updates a sharding column, whose
    /// new value may move rows to another shard.
    pub per_execution: bool,
}

/// What kind of statement a plan runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatementKind {
    /// SELECT and other queries returning rows.
    Select,
    /// INSERT / REPLACE.
    Insert,
    /// UPDATE.
    Update,
    /// DELETE.
    Delete,
    /// Data definition (CREATE/ALTER/DROP/TRUNCATE, CREATE DATABASE, …).
    Ddl,
    /// SHOW / DESCRIBE: results may name physical tables, see [`Plan::rename`].
    Show,
    /// EXPLAIN of a statement (runs on one shard).
    Explain,
    /// Session state, handled by the frontend itself.
    Session(SessionStatement),
    /// Anything else (sent to the default data source unchanged).
    Other,
}

/// Statements that touch no table and concern session state; the frontend
/// handles them (and replays what it must on backend connections).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionStatement {
    /// Any SET statement, as written.
    Set(String),
    /// BEGIN / START TRANSACTION.
    Begin,
    /// COMMIT.
    Commit,
    /// ROLLBACK.
    Rollback,
    /// ROLLBACK TO SAVEPOINT name.
    RollbackToSavepoint(String),
    /// SAVEPOINT name.
    Savepoint(String),
    /// RELEASE SAVEPOINT name.
    ReleaseSavepoint(String),
    /// USE db.
    Use(String),
    /// `EXPLAIN ROUTE <statement>`: the frontend routes the statement and
    /// answers with its [`Plan::describe`] rows.
    ExplainRoute(String),
}

/// One statement to run on one data source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The data source (its database is selected on the backend connection).
    pub data_source: String,
    /// The physical SQL; `?` placeholders are kept for prepared statements.
    pub sql: String,
    /// For prepared statements, the indexes of the bound parameters this
    /// target's SQL uses, in order, when that is not all of them (a multi-row
    /// INSERT split by shard keeps only its rows' placeholders). `None`: all.
    pub params: Option<Vec<usize>>,
}

/// How the results of several targets become one answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Combine {
    /// Exactly one target: relay its response as it is.
    Single,
    /// DML/DDL on several targets: run all (in one transaction for DML), sum
    /// affected rows, answer OK.
    SumAffected,
    /// DML statements run one after another, each on its own, as MariaDB runs the rows of a
    /// bulk UPDATE or DELETE: the first failure stops them and those before it stay done;
    /// affected rows summed into one OK.
    OneByOne,
    /// DML on every copy of a broadcast table (named): run all in one
    /// transaction; the answer is one copy's affected rows, as from one server.
    /// Copies reporting different counts have diverged: not an answer.
    EveryCopy(String),
    /// A read of a broadcast (reference) table: every target holds the same
    /// rows, run any one of them (the first unless a transaction is pinned to another).
    AnyOne,
    /// A read spread over several shards: merge the rows as described.
    Merge(Box<MergeSpec>),
    /// An UPDATE of a sharding column whose new value lives on another shard than rows
    /// it changes: those rows move there (see [`RowMove`]). The plan's targets are the
    /// move's statements in the order they run.
    MoveRows(Box<RowMove>),
}

/// Rows moving to the shard of their new sharding value, in one distributed transaction:
/// the UPDATE runs as it is where the rows already are on that shard (`in_place`); on every
/// other shard the rows are read and locked, inserted on the new shard with the assigned
/// values, and deleted. Every statement is text with the statement's parameters written
/// as literals (both protocols run it the same way); the answer is MariaDB's affected
/// rows: those the in-place UPDATE changed plus those moved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowMove {
    /// The logical table, for messages.
    pub table: String,
    /// Its sharding column.
    pub column: String,
    /// The data source of the new sharding value.
    pub to: String,
    /// The physical table there, quoted.
    pub to_table: String,
    /// The UPDATE for rows already on the new value's shard, when it may hold some.
    pub in_place: Option<Target>,
    /// Per shard the rows leave: the locking read and the delete.
    pub from: Vec<MoveFrom>,
    /// The assignments in order: the column (unquoted) and its value as SQL text.
    pub set: Vec<(String, String)>,
}

/// One shard rows leave in a [`RowMove`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoveFrom {
    /// `SELECT * … FOR UPDATE`: the rows, locked.
    pub select: Target,
    /// `DELETE …` of the same rows.
    pub delete: Target,
}

/// How rows from several shards are merged: the shape (sort keys, grouping,
/// aggregates, HAVING, DISTINCT, hidden helper columns) with the statement's
/// literal values resolved, and the LIMIT applied after merging.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MergeSpec {
    pub shape: MergeShape,
    /// Rows to skip after merging.
    pub offset: u64,
    /// Rows to return after the offset; `None`: all.
    pub limit: Option<u64>,
    /// When some data source runs a UNION ALL of its tables (whose column
    /// metadata differs from a plain SELECT's: CHAR becomes VARCHAR, string
    /// columns get 39 decimals): one part with `LIMIT 0`, run first for the
    /// metadata the client must see.
    pub metadata_probe: Option<Target>,
    /// `FOUND_ROWS()` counts the whole result beyond the LIMIT (MariaDB's rule for a set
    /// operation): the merge reads and counts the rows past the LIMIT, and the shards are
    /// not limited.
    pub found_beyond_limit: bool,
}

impl MergeSpec {
    /// Union all: the shards' rows one after another.
    pub fn concat() -> MergeSpec {
        MergeSpec::default()
    }

    /// Whether this is plain concatenation.
    pub fn is_concat(&self) -> bool {
        *self == MergeSpec::default()
    }
}

/// The route of one statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// What the statement is.
    pub kind: StatementKind,
    /// Where it runs; empty only for [`StatementKind::Session`].
    pub targets: Vec<Target>,
    /// How the targets' results combine.
    pub combine: Combine,
    /// For SHOW / DESCRIBE: (physical, logical) table names; the executor
    /// shows the logical name wherever the result names the physical table.
    pub rename: Vec<(String, String)>,
    /// For SHOW TABLES: the tables of the rules, listed in place of their
    /// physical tables on the target when their standing table exists,
    /// wherever it lives.
    pub add_tables: Vec<String>,
}

impl Plan {
    /// `sql` run as it is on one data source, its response relayed.
    pub fn single(kind: StatementKind, data_source: &str, sql: &str) -> Plan {
        Plan {
            kind,
            targets: vec![Target {
                data_source: data_source.to_owned(),
                sql: sql.to_owned(),
                params: None,
            }],
            combine: Combine::Single,
            rename: Vec::new(),
            add_tables: Vec::new(),
        }
    }

    /// A session statement: the frontend handles it, on no target.
    pub(crate) fn session(statement: SessionStatement) -> Plan {
        Plan {
            kind: StatementKind::Session(statement),
            targets: Vec::new(),
            combine: Combine::Single,
            rename: Vec::new(),
            add_tables: Vec::new(),
        }
    }

    /// One (data source, physical SQL) row per target: what `EXPLAIN ROUTE` shows.
    pub fn describe(&self) -> Vec<(String, String)> {
        self.targets
            .iter()
            .map(|t| (t.data_source.clone(), t.sql.clone()))
            .collect()
    }
}

/// A compact description for `EXPLAIN ROUTE` and the golden tests.
impl fmt::Display for MergeSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shape = &self.shape;
        let mut parts = Vec::new();
        let list = |cols: &[sql::Col]| -> String {
            cols.iter()
                .map(|c| c.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        if let Some(a) = &shape.aggregation {
            if a.group_by.is_empty() {
                parts.push("one group".into());
            } else {
                parts.push(format!("group by {}", list(&a.group_by)));
            }
            for (col, role) in &a.roles {
                parts.push(format!("{col}: {role}"));
            }
            if !a.distinct_keys.is_empty() {
                parts.push(format!("distinct keys {}", list(&a.distinct_keys)));
            }
        }
        if let Some(h) = &shape.having {
            parts.push(format!("having {h:?}"));
        }
        if let Some(op) = &shape.set_op {
            parts.push(op.to_string());
        }
        if shape.distinct {
            parts.push("distinct".into());
        }
        if !shape.order_by.is_empty() {
            let keys: Vec<String> = shape
                .order_by
                .iter()
                .map(|k| format!("{}{}", k.column, if k.descending { " desc" } else { "" }))
                .collect();
            parts.push(format!("order by {}", keys.join(", ")));
        }
        if self.offset > 0 {
            parts.push(format!("offset {}", self.offset));
        }
        if let Some(n) = self.limit {
            parts.push(format!("limit {n}"));
        }
        if shape.hidden > 0 {
            parts.push(format!("{} hidden", shape.hidden));
        }
        if self.found_beyond_limit {
            parts.push("FOUND_ROWS() beyond the limit".into());
        }
        if let Some(p) = &self.metadata_probe {
            parts.push(format!("metadata from {}: {}", p.data_source, p.sql));
        }
        f.write_str(&parts.join("; "))
    }
}

impl fmt::Display for StatementKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StatementKind::Select => f.write_str("select"),
            StatementKind::Insert => f.write_str("insert"),
            StatementKind::Update => f.write_str("update"),
            StatementKind::Delete => f.write_str("delete"),
            StatementKind::Ddl => f.write_str("ddl"),
            StatementKind::Show => f.write_str("show"),
            StatementKind::Explain => f.write_str("explain"),
            StatementKind::Other => f.write_str("other"),
            StatementKind::Session(s) => match s {
                SessionStatement::Set(text) => write!(f, "session set: {text}"),
                SessionStatement::Begin => f.write_str("session begin"),
                SessionStatement::Commit => f.write_str("session commit"),
                SessionStatement::Rollback => f.write_str("session rollback"),
                SessionStatement::RollbackToSavepoint(n) => {
                    write!(f, "session rollback to savepoint {n}")
                }
                SessionStatement::Savepoint(n) => write!(f, "session savepoint {n}"),
                SessionStatement::ReleaseSavepoint(n) => {
                    write!(f, "session release savepoint {n}")
                }
                SessionStatement::Use(db) => write!(f, "session use {db}"),
                SessionStatement::ExplainRoute(sql) => write!(f, "session explain route: {sql}"),
            },
        }
    }
}

impl fmt::Display for Combine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Combine::Single => f.write_str("single"),
            Combine::SumAffected => f.write_str("sum affected rows"),
            Combine::OneByOne => f.write_str("one by one, sum affected rows"),
            Combine::EveryCopy(table) => {
                write!(f, "every copy of {table}: one copy's affected rows")
            }
            Combine::AnyOne => f.write_str("any one"),
            Combine::Merge(m) if m.is_concat() => f.write_str("merge: concatenate"),
            Combine::Merge(m) => write!(f, "merge: {m}"),
            Combine::MoveRows(m) => {
                let set: Vec<String> = m.set.iter().map(|(c, v)| format!("{c} = {v}")).collect();
                write!(
                    f,
                    "move rows of {} to {}.{} with {}",
                    m.table,
                    m.to,
                    m.to_table,
                    set.join(", ")
                )
            }
        }
    }
}

/// The full description: kind, combine, renames, then one line per target
/// (`data_source: sql`, with the parameter indexes when not all are used).
impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.targets.is_empty() {
            return writeln!(f, "{}", self.kind);
        }
        writeln!(f, "{} ({})", self.kind, self.combine)?;
        for (physical, logical) in &self.rename {
            writeln!(f, "rename {physical} -> {logical}")?;
        }
        if !self.add_tables.is_empty() {
            writeln!(f, "add tables {}", self.add_tables.join(", "))?;
        }
        for (t, (ds, sql)) in self.targets.iter().zip(self.describe()) {
            match &t.params {
                Some(p) => writeln!(f, "{ds}: {sql}  -- params {p:?}")?,
                None => writeln!(f, "{ds}: {sql}")?,
            }
        }
        Ok(())
    }
}
