//! Statement analysis: what a statement is, which tables it names, and what
//! its WHERE clauses say about sharding keys.
//!
//! [`Statement::analyze`] walks a (slot-bound) statement once and returns an
//! [`Analysis`]: the statement [`Kind`] with the facts routing needs (INSERT
//! rows' key values, DDL targets, SHOW subjects, session commands), the
//! distinct tables it names, and the [`KeyClass`]es — groups of sharded table
//! occurrences that must live on the same shard (one table, or binding tables
//! joined on their keys) — each with the [`Cond`] its WHERE/ON clauses put on
//! the key. Values in conditions are fingerprint slots, not literals, so the
//! analysis of one statement serves every statement with the same fingerprint.
//!
//! The analysis is conservative: anything it does not understand becomes
//! [`Cond::All`] (every shard), never a narrower guess. What is sharded comes
//! from the caller through [`KeyOracle`]; this module knows no rules.

use std::collections::HashSet;
use std::ops::{Bound, ControlFlow};

use sqlparser::ast::{
    self, AlterTableOperation, AssignmentTarget, BinaryOperator, ColumnOption, Expr,
    FunctionArguments, GroupByExpr, JoinConstraint, JoinOperator, ObjectName, ObjectNamePart,
    ObjectType, OnInsert, Query, Select, SelectItem, SetExpr, ShowCreateObject, TableConstraint,
    TableFactor, TableObject, TableWithJoins, Use, Value, Visit, Visitor,
};

use crate::parse::{slot_of, Statement};
use crate::SqlError;

/// What the caller knows about tables: which are sharded, by which column,
/// and which are bound (equal keys on the same shard).
pub trait KeyOracle {
    /// The sharding column of `table` (as written in the statement), if it is sharded.
    fn sharding_column(&self, table: &str) -> Option<&str>;
    /// Whether rows of `a` and `b` with equal keys always live on the same shard.
    fn are_bound(&self, a: &str, b: &str) -> bool;
}

/// A table named by a statement. Tables are distinct by name (ASCII
/// case-insensitively) and database; a name qualified with the logical schema
/// is the same table as the bare name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableRef {
    /// The table name, as first written (unquoted).
    pub name: String,
    /// The database it was qualified with, when that is not the logical schema
    /// (`information_schema.tables`): such a table is never renamed.
    pub foreign_schema: Option<String>,
}

/// A condition on a sharding key. Values are fingerprint slots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cond {
    /// Nothing usable: any shard may hold matching rows.
    All,
    /// The key equals one of these values (`=`, `IN`, `<=>`).
    In(Vec<usize>),
    /// The key lies in this interval (`<`, `<=`, `>`, `>=`, `BETWEEN`).
    Range {
        /// Lower bound.
        lo: Bound<usize>,
        /// Upper bound.
        hi: Bound<usize>,
    },
    /// Every condition holds (the shards are intersected).
    And(Vec<Cond>),
    /// One of the conditions holds (the shards are united).
    Or(Vec<Cond>),
}

impl Cond {
    fn and(parts: Vec<Cond>) -> Cond {
        let mut parts: Vec<Cond> = parts.into_iter().filter(|c| *c != Cond::All).collect();
        match parts.len() {
            0 => Cond::All,
            1 => parts.remove(0),
            _ => Cond::And(parts),
        }
    }

    fn or(parts: Vec<Cond>) -> Cond {
        if parts.contains(&Cond::All) || parts.is_empty() {
            Cond::All
        } else if parts.len() == 1 {
            parts.into_iter().next().unwrap_or(Cond::All)
        } else {
            Cond::Or(parts)
        }
    }
}

/// Occurrences of sharded tables that must be on the same shard, and the
/// condition on their (common) key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyClass {
    /// Indexes into [`Analysis::tables`]; a table occurs more than once when self-joined.
    pub tables: Vec<usize>,
    /// What WHERE/ON say about the key.
    pub cond: Cond,
}

/// A value given to a sharding column (INSERT row, UPDATE SET, INSERT … SELECT item).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyValue {
    /// A literal or placeholder.
    Slot(usize),
    /// `NULL`.
    Null,
    /// `DEFAULT`.
    Default,
    /// The column itself (`SET uid = uid`, `uid = VALUES(uid)`): no change.
    Unchanged,
    /// Any other expression.
    Other,
}

/// Where an INSERT's rows come from and what they say about the sharding key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InsertKey {
    /// The target is not sharded.
    NotSharded,
    /// Rows are given without a column list, so the key's position is unknown.
    NoColumnList,
    /// The column list does not include the sharding column.
    Missing,
    /// `VALUES` / `SET`: the key of each row.
    Rows(Vec<KeyValue>),
    /// `INSERT … SELECT` whose key item is the key column of this [`KeyClass`].
    FromClass(usize),
    /// `INSERT … SELECT` whose key item is this value.
    Select(KeyValue),
}

/// Facts about an INSERT or REPLACE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Insert {
    /// The target, an index into [`Analysis::tables`].
    pub table: usize,
    /// `REPLACE` rather than `INSERT`.
    pub replace: bool,
    /// Number of `VALUES` rows (1 for `INSERT … SET`, 0 for `INSERT … SELECT`).
    pub rows: usize,
    /// The sharding key of the rows.
    pub key: InsertKey,
}

/// DDL operations the router fans out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DdlOp {
    /// `CREATE TABLE`.
    CreateTable,
    /// `CREATE TABLE … AS SELECT`.
    CreateTableAs,
    /// `ALTER TABLE`.
    AlterTable,
    /// `ALTER TABLE … RENAME` or `RENAME TABLE`.
    Rename,
    /// `DROP TABLE`.
    DropTable,
    /// `TRUNCATE TABLE`.
    Truncate,
    /// `CREATE INDEX`.
    CreateIndex,
    /// `DROP INDEX … ON`.
    DropIndex,
    /// `CREATE VIEW` / `DROP VIEW`.
    View,
}

/// What a `SHOW`/`DESCRIBE` is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Show {
    /// `SHOW [FULL] TABLES [FROM db]`; `schema` is the database named, if any.
    Tables {
        /// The database after FROM/IN.
        schema: Option<String>,
    },
    /// `SHOW COLUMNS`, `DESCRIBE`, `SHOW CREATE TABLE`, `SHOW INDEX` of a table.
    Table(usize),
    /// Any other SHOW.
    Other,
}

/// Statements about the session rather than data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Session {
    /// Any `SET`.
    Set,
    /// `BEGIN` / `START TRANSACTION`.
    Begin,
    /// `COMMIT`.
    Commit,
    /// `ROLLBACK`.
    Rollback,
    /// `ROLLBACK TO SAVEPOINT name`.
    RollbackTo(String),
    /// `SAVEPOINT name`.
    Savepoint(String),
    /// `RELEASE SAVEPOINT name`.
    Release(String),
    /// `USE db`.
    Use(String),
}

/// The kind of statement, with the facts specific to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// SELECT, UNION, VALUES, TABLE, WITH …
    Query,
    /// INSERT or REPLACE.
    Insert(Insert),
    /// UPDATE (single- or multi-table).
    Update,
    /// DELETE (single- or multi-table).
    Delete,
    /// DDL on tables; the tables changed are in [`Analysis::written`].
    Ddl(DdlOp),
    /// `CREATE DATABASE`.
    CreateDatabase {
        /// The database name.
        name: String,
        /// `IF NOT EXISTS` was given.
        if_not_exists: bool,
    },
    /// `DROP DATABASE` / `DROP SCHEMA`.
    DropDatabase {
        /// The database name.
        name: String,
    },
    /// SHOW / DESCRIBE.
    Show(Show),
    /// Session state.
    Session(Session),
    /// SQL-level `PREPARE` / `EXECUTE` / `DEALLOCATE` (their SQL is a string the router cannot see into).
    SqlPrepare,
    /// Anything else; the first keyword names it in messages.
    Other(String),
}

/// What routing needs to know about one statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Analysis {
    /// What the statement is.
    pub kind: Kind,
    /// `EXPLAIN <statement>`: `kind` describes the inner statement.
    pub explain: bool,
    /// Distinct tables named, in order of first appearance.
    pub tables: Vec<TableRef>,
    /// Tables the statement changes (DML targets, DDL subjects), indexes into `tables`.
    pub written: Vec<usize>,
    /// Every occurrence of a sharded table is in exactly one class.
    pub classes: Vec<KeyClass>,
    /// Constructs inside subqueries, CTEs, INSERT … SELECT or window functions
    /// whose result depends on seeing all rows at once: such a statement cannot
    /// run on several shards (its per-shard parts would be wrong).
    pub merge_needs: Vec<String>,
    /// The same constructs at the top level of a SELECT (ORDER BY, LIMIT,
    /// GROUP BY, aggregates, DISTINCT, UNION, …): the proxy may merge them
    /// across shards ([`Statement::select_merge`] decides).
    pub top_merge_needs: Vec<String>,
    /// A top-level SELECT whose rows do not each include a row of a sharded
    /// table (only broadcast/single tables in its FROM, or sharded tables only
    /// on the NULL-extended side of outer joins or in subqueries): run on
    /// several shards, its rows would repeat once per shard.
    pub rows_not_sharded: bool,
    /// An UPDATE/DELETE with a WHERE clause.
    pub has_where: bool,
    /// Assignments to sharding columns: (table index, new value).
    pub key_updates: Vec<(usize, KeyValue)>,
    /// A table was qualified with the logical schema (`bank.payment`).
    pub schema_qualified: bool,
    /// `DATABASE()` or `SCHEMA()` is called.
    pub database_fn: bool,
    /// `SELECT … INTO` (variables or files).
    pub select_into: bool,
    /// Names of common table expressions (lowercase); they are not tables.
    pub ctes: Vec<String>,
}

pub(crate) const AGGREGATES: &[&str] = &[
    "COUNT",
    "SUM",
    "AVG",
    "MIN",
    "MAX",
    "GROUP_CONCAT",
    "BIT_AND",
    "BIT_OR",
    "BIT_XOR",
    "STD",
    "STDDEV",
    "STDDEV_POP",
    "STDDEV_SAMP",
    "VARIANCE",
    "VAR_POP",
    "VAR_SAMP",
    "JSON_ARRAYAGG",
    "JSON_OBJECTAGG",
];

/// The unquoted parts of an object name.
pub(crate) fn name_parts(name: &ObjectName) -> Vec<&str> {
    name.0
        .iter()
        .map(|p| match p {
            ObjectNamePart::Identifier(i) => i.value.as_str(),
            ObjectNamePart::Function(f) => f.name.value.as_str(),
        })
        .collect()
}

/// Where a relation name points.
pub(crate) enum NameTarget<'a> {
    /// A table of the statement's logical schema: (name, written qualified).
    Logical(&'a str, bool),
    /// A table of another database.
    Foreign(String, &'a str),
}

/// Classifies a relation name against the logical schema.
pub(crate) fn classify_name<'a>(name: &'a ObjectName, schema: &str) -> Option<NameTarget<'a>> {
    let parts = name_parts(name);
    match parts.as_slice() {
        [t] => Some(NameTarget::Logical(t, false)),
        [db, t] if db.eq_ignore_ascii_case(schema) => Some(NameTarget::Logical(t, true)),
        [db, t] => Some(NameTarget::Foreign((*db).to_owned(), t)),
        [] => None,
        [rest @ .., t] => Some(NameTarget::Foreign(rest.join("."), t)),
    }
}

/// The table list being built, with lookups by name.
#[derive(Default)]
pub(crate) struct Tables {
    pub list: Vec<TableRef>,
}

impl Tables {
    pub(crate) fn find(&self, name: &str, foreign: Option<&str>) -> Option<usize> {
        self.list.iter().position(|t| {
            t.name.eq_ignore_ascii_case(name)
                && match (&t.foreign_schema, foreign) {
                    (None, None) => true,
                    (Some(a), Some(b)) => a.eq_ignore_ascii_case(b),
                    _ => false,
                }
        })
    }

    fn add(&mut self, name: &str, foreign: Option<&str>) -> usize {
        if let Some(i) = self.find(name, foreign) {
            return i;
        }
        self.list.push(TableRef {
            name: name.to_owned(),
            foreign_schema: foreign.map(str::to_owned),
        });
        self.list.len() - 1
    }
}

impl Statement {
    /// Analyses the statement. `schema` is the logical database name (a
    /// qualifier equal to it is dropped); `oracle` says which tables are sharded.
    pub fn analyze(&self, schema: &str, oracle: &dyn KeyOracle) -> Result<Analysis, SqlError> {
        let mut a = Analyzer {
            schema,
            oracle,
            tables: Tables::default(),
            ctes: HashSet::new(),
            written: Vec::new(),
            classes: Vec::new(),
            merge_needs: Vec::new(),
            top_merge_needs: Vec::new(),
            rows_not_sharded: false,
            top_query: matches!(self.ast, ast::Statement::Query(_)),
            query_depth: 0,
            occurrences: Vec::new(),
            handled: Vec::new(),
            key_updates: Vec::new(),
            has_where: false,
            schema_qualified: false,
            database_fn: false,
            select_into: false,
            insert_source: None,
            insert_key: None,
            stack: Vec::new(),
        };
        let mut explain = false;
        let mut stmt = &self.ast;
        while let ast::Statement::Explain { statement, .. } = stmt {
            explain = true;
            stmt = statement;
        }
        let kind = a.kind(stmt)?;
        if let ControlFlow::Break(e) = stmt.visit(&mut a) {
            return Err(e);
        }
        let kind = match kind {
            Kind::Insert(mut ins) => {
                if let Some(k) = a.insert_key.take() {
                    ins.key = k;
                }
                Kind::Insert(ins)
            }
            k => k,
        };
        a.add_unanalysed_occurrences();
        let mut merge_needs = std::mem::take(&mut a.merge_needs);
        merge_needs.dedup();
        let mut top_merge_needs = std::mem::take(&mut a.top_merge_needs);
        top_merge_needs.dedup();
        Ok(Analysis {
            kind,
            explain,
            tables: a.tables.list,
            written: a.written,
            classes: a.classes,
            merge_needs,
            top_merge_needs,
            rows_not_sharded: a.rows_not_sharded,
            has_where: a.has_where,
            key_updates: a.key_updates,
            schema_qualified: a.schema_qualified,
            database_fn: a.database_fn,
            select_into: a.select_into,
            ctes: {
                let mut v: Vec<String> = a.ctes.into_iter().collect();
                v.sort();
                v
            },
        })
    }
}

/// The occurrences of one FROM clause and the class of each sharded one.
struct Scope {
    occ: Vec<Occurrence>,
    class_of: Vec<Option<usize>>,
}

/// One occurrence of a table in a FROM clause.
struct Occurrence {
    table: usize,
    /// Lowercase alias, if any.
    alias: Option<String>,
    /// Lowercase sharding column, if the table is sharded.
    key: Option<String>,
}

struct Analyzer<'a> {
    schema: &'a str,
    oracle: &'a dyn KeyOracle,
    tables: Tables,
    ctes: HashSet<String>,
    written: Vec<usize>,
    classes: Vec<KeyClass>,
    merge_needs: Vec<String>,
    top_merge_needs: Vec<String>,
    rows_not_sharded: bool,
    /// The statement is a query (not INSERT … SELECT, EXPLAIN, …).
    top_query: bool,
    /// How many queries enclose the node being visited.
    query_depth: usize,
    /// Per table: occurrences seen as relations by the visitor.
    occurrences: Vec<usize>,
    /// Per table: occurrences analysed (in a FROM clause or as a DML/DDL target).
    handled: Vec<usize>,
    key_updates: Vec<(usize, KeyValue)>,
    has_where: bool,
    schema_qualified: bool,
    database_fn: bool,
    select_into: bool,
    /// The SELECT feeding an INSERT (identified by address) and the key's position in it.
    insert_source: Option<(*const Select, usize, usize)>,
    insert_key: Option<InsertKey>,
    /// The enclosing scopes (SELECT, UPDATE, DELETE) of the one being visited.
    stack: Vec<Scope>,
}

impl Analyzer<'_> {
    /// Records a construct that needs a merge across shards: one of the
    /// top-level query's own, or one the proxy cannot merge.
    fn need(&mut self, what: String) {
        if self.top_query && self.query_depth == 1 {
            self.top_merge_needs.push(what);
        } else {
            self.merge_needs.push(what);
        }
    }

    /// The table a relation name refers to (adding it to the list), or `None` for a CTE.
    fn table_of(&mut self, name: &ObjectName) -> Option<usize> {
        let id = match classify_name(name, self.schema)? {
            NameTarget::Logical(t, qualified) => {
                if !qualified && self.ctes.contains(&t.to_ascii_lowercase()) {
                    return None;
                }
                self.schema_qualified |= qualified;
                self.tables.add(t, None)
            }
            NameTarget::Foreign(db, t) => self.tables.add(t, Some(&db)),
        };
        if self.occurrences.len() <= id {
            self.occurrences.resize(id + 1, 0);
            self.handled.resize(id + 1, 0);
        }
        Some(id)
    }

    fn key_of(&self, table: usize) -> Option<String> {
        let t = &self.tables.list[table];
        if t.foreign_schema.is_some() {
            return None;
        }
        self.oracle
            .sharding_column(&t.name)
            .map(str::to_ascii_lowercase)
    }

    fn mark_written(&mut self, id: usize) {
        if !self.written.contains(&id) {
            self.written.push(id);
        }
    }

    /// A DDL/SHOW subject: listed, counted as handled, optionally written.
    fn subject(&mut self, name: &ObjectName, written: bool) -> Option<usize> {
        let id = self.table_of(name)?;
        self.handled[id] += 1;
        self.occurrences[id] += 1;
        if written {
            self.mark_written(id);
        }
        Some(id)
    }

    /// A DDL/SHOW subject that the visitor also sees as a relation (so only
    /// the analysis is counted here).
    fn visited_subject(&mut self, name: &ObjectName, written: bool) -> Option<usize> {
        let id = self.table_of(name)?;
        self.handled[id] += 1;
        if written {
            self.mark_written(id);
        }
        Some(id)
    }

    /// Sharded occurrences the FROM-clause analysis did not reach get a class of
    /// their own with no condition: conservative, every shard.
    fn add_unanalysed_occurrences(&mut self) {
        for id in 0..self.occurrences.len() {
            let missing = self.occurrences[id].saturating_sub(self.handled[id]);
            if missing > 0 && self.key_of(id).is_some() {
                for _ in 0..missing {
                    self.classes.push(KeyClass {
                        tables: vec![id],
                        cond: Cond::All,
                    });
                }
            }
        }
    }

    /// The statement kind; registers DDL/SHOW subjects the visitor does not see.
    fn kind(&mut self, stmt: &ast::Statement) -> Result<Kind, SqlError> {
        use ast::Statement as S;
        if let Some(s) = session(stmt) {
            return Ok(Kind::Session(s));
        }
        if let Some(show) = self.show(stmt) {
            return Ok(Kind::Show(show));
        }
        Ok(match stmt {
            S::Query(_) => Kind::Query,
            S::Insert(ins) => self.insert(ins)?,
            S::Update(u) => {
                self.has_where = u.selection.is_some();
                if !u.order_by.is_empty() {
                    self.merge_needs.push("UPDATE … ORDER BY".into());
                }
                if u.limit.is_some() {
                    self.merge_needs.push("UPDATE … LIMIT".into());
                }
                Kind::Update
            }
            S::Delete(d) => {
                self.has_where = d.selection.is_some();
                if !d.order_by.is_empty() {
                    self.merge_needs.push("DELETE … ORDER BY".into());
                }
                if d.limit.is_some() {
                    self.merge_needs.push("DELETE … LIMIT".into());
                }
                Kind::Delete
            }
            S::CreateTable(ct) => Kind::Ddl(self.create_table(ct)),
            S::AlterTable(at) => Kind::Ddl(self.alter_table(at)),
            S::RenameTable(renames) => {
                for r in renames {
                    self.subject(&r.old_name, true);
                    self.subject(&r.new_name, true);
                }
                Kind::Ddl(DdlOp::Rename)
            }
            S::Drop {
                object_type,
                names,
                table,
                ..
            } => self.drop(*object_type, names, table.as_ref()),
            S::Truncate(t) => {
                for target in &t.table_names {
                    self.visited_subject(&target.name, true);
                }
                Kind::Ddl(DdlOp::Truncate)
            }
            S::CreateIndex(ci) => {
                self.visited_subject(&ci.table_name, true);
                Kind::Ddl(DdlOp::CreateIndex)
            }
            S::CreateView(cv) => {
                self.visited_subject(&cv.name, true);
                Kind::Ddl(DdlOp::View)
            }
            S::CreateDatabase {
                db_name,
                if_not_exists,
                ..
            } => Kind::CreateDatabase {
                name: name_parts(db_name).join("."),
                if_not_exists: *if_not_exists,
            },
            S::CreateSchema {
                schema_name,
                if_not_exists,
                ..
            } => Kind::CreateDatabase {
                name: schema_name.to_string(),
                if_not_exists: *if_not_exists,
            },
            S::Use(_) => Kind::Other("USE".into()),
            S::Prepare { .. } | S::Execute { .. } | S::Deallocate { .. } => Kind::SqlPrepare,
            other => Kind::Other(first_words(other)),
        })
    }

    /// CREATE TABLE: the table created, and those it copies or refers to (LIKE,
    /// CLONE, foreign keys).
    fn create_table(&mut self, ct: &ast::CreateTable) -> DdlOp {
        self.visited_subject(&ct.name, true);
        if let Some(like) = &ct.like {
            let like = match like {
                ast::CreateTableLikeKind::Parenthesized(l) | ast::CreateTableLikeKind::Plain(l) => {
                    &l.name
                }
            };
            self.subject(like, false);
        }
        if let Some(c) = &ct.clone {
            self.subject(c, false);
        }
        for c in &ct.constraints {
            if let TableConstraint::ForeignKey(fk) = c {
                self.subject(&fk.foreign_table, false);
            }
        }
        for col in &ct.columns {
            self.column_references(col);
        }
        if ct.query.is_some() {
            DdlOp::CreateTableAs
        } else {
            DdlOp::CreateTable
        }
    }

    /// ALTER TABLE: the table altered, and those its new foreign keys refer to.
    fn alter_table(&mut self, at: &ast::AlterTable) -> DdlOp {
        self.visited_subject(&at.name, true);
        let mut op = DdlOp::AlterTable;
        for o in &at.operations {
            match o {
                AlterTableOperation::RenameTable { .. } => op = DdlOp::Rename,
                AlterTableOperation::AddConstraint {
                    constraint: TableConstraint::ForeignKey(fk),
                    ..
                } => {
                    self.subject(&fk.foreign_table, false);
                }
                AlterTableOperation::AddColumn { column_def, .. } => {
                    self.column_references(column_def);
                }
                _ => {}
            }
        }
        op
    }

    /// The tables a column definition's foreign keys refer to.
    fn column_references(&mut self, column: &ast::ColumnDef) {
        for opt in &column.options {
            if let ColumnOption::ForeignKey(fk) = &opt.option {
                self.subject(&fk.foreign_table, false);
            }
        }
    }

    /// DROP of tables, an index, views or a database.
    fn drop(
        &mut self,
        object_type: ObjectType,
        names: &[ObjectName],
        table: Option<&ObjectName>,
    ) -> Kind {
        match object_type {
            ObjectType::Table => {
                for n in names {
                    self.subject(n, true);
                }
                Kind::Ddl(DdlOp::DropTable)
            }
            ObjectType::Index => match table {
                Some(t) => {
                    self.subject(t, true);
                    Kind::Ddl(DdlOp::DropIndex)
                }
                None => Kind::Other("DROP INDEX".into()),
            },
            ObjectType::Database | ObjectType::Schema => Kind::DropDatabase {
                name: names
                    .first()
                    .map(|n| name_parts(n).join("."))
                    .unwrap_or_default(),
            },
            ObjectType::View => {
                for n in names {
                    self.subject(n, true);
                }
                Kind::Ddl(DdlOp::View)
            }
            other => Kind::Other(format!("DROP {other}")),
        }
    }

    /// What a SHOW (or DESCRIBE) shows: the tables of a schema, one table (its
    /// subject registered), or something else; `None` for other statements.
    fn show(&mut self, stmt: &ast::Statement) -> Option<Show> {
        use ast::Statement as S;
        let of_table = |id: Option<usize>| id.map_or(Show::Other, Show::Table);
        Some(match stmt {
            S::ShowTables { show_options, .. } => Show::Tables {
                schema: show_options
                    .show_in
                    .as_ref()
                    .and_then(|i| i.parent_name.as_ref())
                    .map(|n| name_parts(n).join(".")),
            },
            S::ShowColumns { show_options, .. } => {
                match show_options
                    .show_in
                    .as_ref()
                    .and_then(|i| i.parent_name.as_ref())
                {
                    Some(n) => of_table(self.visited_subject(n, false)),
                    None => Show::Other,
                }
            }
            S::ExplainTable { table_name, .. } => of_table(self.visited_subject(table_name, false)),
            S::ShowCreate {
                obj_type: ShowCreateObject::Table,
                obj_name,
            } => of_table(self.subject(obj_name, false)),
            S::ShowVariable { variable } => match show_index_table(variable) {
                Some(name) => of_table(self.subject(&name, false)),
                None => Show::Other,
            },
            S::ShowCreate { .. }
            | S::ShowFunctions { .. }
            | S::ShowStatus { .. }
            | S::ShowVariables { .. }
            | S::ShowCatalogs { .. }
            | S::ShowDatabases { .. }
            | S::ShowProcessList { .. }
            | S::ShowSchemas { .. }
            | S::ShowCharset(_)
            | S::ShowObjects(_)
            | S::ShowViews { .. }
            | S::ShowCollation { .. } => Show::Other,
            _ => return None,
        })
    }

    fn insert(&mut self, ins: &ast::Insert) -> Result<Kind, SqlError> {
        let TableObject::TableName(name) = &ins.table else {
            return Ok(Kind::Other("INSERT INTO a table function".into()));
        };
        // The visitor counts this relation; it is handled here.
        let Some(table) = self.table_of(name) else {
            return Ok(Kind::Other("INSERT INTO a common table expression".into()));
        };
        self.handled[table] += 1;
        self.mark_written(table);
        let key_col = self.key_of(table);
        let rows = match &ins.source {
            None => 1,
            Some(q) => match q.body.as_ref() {
                SetExpr::Values(v) => v.rows.len(),
                _ => 0,
            },
        };
        let key = match &key_col {
            None => InsertKey::NotSharded,
            Some(k) => insert_column(ins, k),
        };
        if let (InsertKey::Select(_), Some(q), Some(k)) = (&key, &ins.source, &key_col) {
            let key_pos = ins.columns.iter().position(|c| is_column(c, k));
            if let (SetExpr::Select(sel), Some(p), None) = (q.body.as_ref(), key_pos, &q.with) {
                self.insert_source = Some((&**sel as *const Select, p, table));
            }
        }
        if let Some(OnInsert::DuplicateKeyUpdate(assignments)) = &ins.on {
            if let Some(k) = &key_col {
                for a in assignments {
                    if assigned_column(&a.target).as_deref() == Some(k.as_str()) {
                        self.key_updates.push((table, key_value(&a.value, k)));
                    }
                }
            }
        }
        Ok(Kind::Insert(Insert {
            table,
            replace: ins.replace_into,
            rows,
            key,
        }))
    }

    /// Analyses one FROM clause with its WHERE and ON conditions: the
    /// occurrences it introduces, how they join on keys, and the key conditions.
    fn scope(&mut self, from: &[&TableWithJoins], selection: Option<&Expr>) -> Scope {
        let mut occ = Vec::new();
        let mut inner_on: Vec<&Expr> = Vec::new();
        let mut outer_on: Vec<&Expr> = Vec::new();
        let mut using: Vec<(usize, usize, Vec<String>)> = Vec::new();
        for twj in from {
            self.table_with_joins(twj, &mut occ, &mut inner_on, &mut outer_on, &mut using);
        }
        for o in &occ {
            self.handled[o.table] += 1;
        }
        // Union-find over occurrences joined on bound keys.
        let mut parent: Vec<usize> = (0..occ.len()).collect();
        let join = |parent: &mut Vec<usize>, a: usize, b: usize, me: &Self| {
            let (ta, tb) = (&me.tables.list[occ[a].table], &me.tables.list[occ[b].table]);
            if me.oracle.are_bound(&ta.name, &tb.name) {
                let (ra, rb) = (find(parent, a), find(parent, b));
                parent[ra] = rb;
            }
        };
        for (before, after, cols) in &using {
            for r in *before..*after {
                for l in 0..*before {
                    match (&occ[l].key, &occ[r].key) {
                        (Some(kl), Some(kr))
                            if kl == kr && (cols.is_empty() || cols.contains(kl)) =>
                        {
                            join(&mut parent, l, r, self)
                        }
                        _ => {}
                    }
                }
            }
        }
        let mut equalities = Vec::new();
        // `inner.key = outer.key` in a subquery: (occurrence here, class of the enclosing occurrence).
        let mut correlated: Vec<(usize, usize)> = Vec::new();
        for e in selection
            .iter()
            .copied()
            .chain(inner_on.iter().copied())
            .chain(outer_on.iter().copied())
        {
            conjuncts(e, &mut |c| {
                if let Expr::BinaryOp {
                    left,
                    op: BinaryOperator::Eq,
                    right,
                } = c
                {
                    let l = resolve_all(left, &occ, self.schema, &self.tables);
                    let r = resolve_all(right, &occ, self.schema, &self.tables);
                    match (l.as_slice(), r.as_slice()) {
                        ([l], [r]) => equalities.push((*l, *r)),
                        ([here], []) => {
                            if let Some(c) = self.resolve_outer(right, &occ, *here) {
                                correlated.push((*here, c));
                            }
                        }
                        ([], [here]) => {
                            if let Some(c) = self.resolve_outer(left, &occ, *here) {
                                correlated.push((*here, c));
                            }
                        }
                        _ => {}
                    }
                }
            });
        }
        for (l, r) in equalities {
            join(&mut parent, l, r, self);
        }
        // One class per group of sharded occurrences.
        let mut groups: Vec<(usize, Vec<usize>)> = Vec::new();
        for (i, o) in occ.iter().enumerate() {
            if o.key.is_none() {
                continue;
            }
            let root = find(&mut parent, i);
            match groups.iter_mut().find(|(r, _)| *r == root) {
                Some((_, members)) => members.push(i),
                None => groups.push((root, vec![i])),
            }
        }
        let group_of: Vec<Option<usize>> = (0..occ.len())
            .map(|i| {
                let root = find(&mut parent, i);
                groups.iter().position(|(r, _)| *r == root)
            })
            .collect();
        // A group correlated on the key with exactly one enclosing class joins
        // it: the rows it needs for an outer row live on that row's shard. Its
        // own conditions do not narrow the outer rows (think NOT EXISTS), so
        // they are not used. Other groups become classes of their own.
        let mut class_ids = Vec::with_capacity(groups.len());
        for (g, (_, members)) in groups.iter().enumerate() {
            let mut outer: Vec<usize> = correlated
                .iter()
                .filter(|(here, _)| group_of[*here] == Some(g))
                .map(|&(_, c)| c)
                .collect();
            outer.sort_unstable();
            outer.dedup();
            let tables = members.iter().map(|&m| occ[m].table);
            if let [c] = outer.as_slice() {
                self.classes[*c].tables.extend(tables);
                class_ids.push((*c, false));
            } else {
                self.classes.push(KeyClass {
                    tables: tables.collect(),
                    cond: Cond::All,
                });
                class_ids.push((self.classes.len() - 1, true));
            }
        }
        for (g, &(class, new)) in class_ids.iter().enumerate() {
            if !new {
                continue;
            }
            let ctx = CondCtx {
                occ: &occ,
                group_of: &group_of,
                group: g,
                schema: self.schema,
                tables: &self.tables,
            };
            let parts = selection
                .iter()
                .copied()
                .chain(inner_on.iter().copied())
                .map(|e| ctx.cond(e))
                .collect();
            self.classes[class].cond = Cond::and(parts);
        }
        let class_of = group_of.iter().map(|g| g.map(|g| class_ids[g].0)).collect();
        Scope { occ, class_of }
    }

    /// The class of the enclosing-scope occurrence whose sharding column the
    /// qualified column reference `e` is, if that table is bound to the table
    /// of occurrence `here` of the current scope.
    fn resolve_outer(&self, e: &Expr, current: &[Occurrence], here: usize) -> Option<usize> {
        let parts = match e {
            Expr::Nested(inner) => return self.resolve_outer(inner, current, here),
            Expr::CompoundIdentifier(parts) => parts,
            _ => return None,
        };
        let (col, qualifier) = parts.split_last()?;
        let q: Vec<&str> = qualifier.iter().map(|i| i.value.as_str()).collect();
        if q.is_empty() || !qualified(&q, current, self.schema, &self.tables).is_empty() {
            return None;
        }
        for scope in self.stack.iter().rev() {
            let hits = qualified(&q, &scope.occ, self.schema, &self.tables);
            if hits.is_empty() {
                continue;
            }
            let [hit] = hits.as_slice() else {
                return None;
            };
            let o = &scope.occ[*hit];
            let keyed = o
                .key
                .as_deref()
                .is_some_and(|k| k.eq_ignore_ascii_case(&col.value));
            let (a, b) = (
                &self.tables.list[o.table].name,
                &self.tables.list[current[here].table].name,
            );
            return (keyed && self.oracle.are_bound(a, b))
                .then_some(scope.class_of[*hit])
                .flatten();
        }
        None
    }

    /// For the SELECT feeding an INSERT: what its item at the key position is.
    fn insert_source_key(&mut self, s: &Select, scope: &Scope) {
        if let Some((ptr, pos, _)) = self.insert_source {
            if std::ptr::eq(s, ptr) {
                self.insert_key = Some(InsertKey::Select(KeyValue::Other));
                let has_wildcard = s.projection.iter().any(|i| {
                    matches!(
                        i,
                        SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..)
                    )
                });
                let item = match s.projection.get(pos) {
                    Some(SelectItem::UnnamedExpr(e))
                    | Some(SelectItem::ExprWithAlias { expr: e, .. })
                        if !has_wildcard =>
                    {
                        Some(e)
                    }
                    _ => None,
                };
                if let Some(e) = item {
                    if let Some(slot) = slot_of(e) {
                        self.insert_key = Some(InsertKey::Select(KeyValue::Slot(slot)));
                    } else {
                        let hits = resolve_all(e, &scope.occ, self.schema, &self.tables);
                        let classes: Vec<Option<usize>> =
                            hits.iter().map(|&i| scope.class_of[i]).collect();
                        if let Some(Some(c)) = classes.first() {
                            if classes.iter().all(|x| *x == Some(*c)) {
                                self.insert_key = Some(InsertKey::FromClass(*c));
                            }
                        }
                    }
                }
            }
        }
    }

    /// A table and the tables joined to it: their occurrences, and their join conditions
    /// sorted into inner ON, outer ON and USING/NATURAL column lists.
    /// Whether every row of `twj` includes a row of a sharded table (one that
    /// is not NULL-extended by an outer join).
    fn required_sharded(&self, twj: &TableWithJoins) -> bool {
        let mut required = self.factor_sharded(&twj.relation);
        for j in &twj.joins {
            let here = self.factor_sharded(&j.relation);
            required = match &j.join_operator {
                JoinOperator::Left(_)
                | JoinOperator::LeftOuter(_)
                | JoinOperator::LeftSemi(_)
                | JoinOperator::LeftAnti(_) => required,
                JoinOperator::Right(_) | JoinOperator::RightOuter(_) => here,
                JoinOperator::FullOuter(_) => false,
                _ => required || here,
            };
        }
        required
    }

    /// Whether a FROM item's rows come from a sharded table.
    fn factor_sharded(&self, f: &TableFactor) -> bool {
        match f {
            TableFactor::Table { name, .. } => match classify_name(name, self.schema) {
                Some(NameTarget::Logical(t, _)) => self.oracle.sharding_column(t).is_some(),
                _ => false,
            },
            TableFactor::NestedJoin {
                table_with_joins, ..
            } => self.required_sharded(table_with_joins),
            TableFactor::Derived { subquery, .. } => {
                let mut sharded = false;
                let _ = ast::visit_relations(subquery.as_ref(), |r| {
                    if let Some(NameTarget::Logical(t, _)) = classify_name(r, self.schema) {
                        sharded |= self.oracle.sharding_column(t).is_some();
                    }
                    ControlFlow::<()>::Continue(())
                });
                sharded
            }
            _ => false,
        }
    }

    fn table_with_joins<'e>(
        &mut self,
        twj: &'e TableWithJoins,
        occ: &mut Vec<Occurrence>,
        inner_on: &mut Vec<&'e Expr>,
        outer_on: &mut Vec<&'e Expr>,
        using: &mut Vec<(usize, usize, Vec<String>)>,
    ) {
        self.factor(&twj.relation, occ, inner_on, outer_on, using);
        for j in &twj.joins {
            let before = occ.len();
            self.factor(&j.relation, occ, inner_on, outer_on, using);
            let (constraint, outer) = join_constraint(&j.join_operator);
            match constraint {
                Some(JoinConstraint::On(e)) if outer => outer_on.push(e),
                Some(JoinConstraint::On(e)) => inner_on.push(e),
                Some(JoinConstraint::Using(cols)) => using.push((
                    before,
                    occ.len(),
                    cols.iter()
                        .filter_map(|c| name_parts(c).last().map(|s| s.to_ascii_lowercase()))
                        .collect(),
                )),
                Some(JoinConstraint::Natural) => using.push((before, occ.len(), Vec::new())),
                _ => {}
            }
        }
    }

    fn factor<'e>(
        &mut self,
        f: &'e TableFactor,
        occ: &mut Vec<Occurrence>,
        inner_on: &mut Vec<&'e Expr>,
        outer_on: &mut Vec<&'e Expr>,
        using: &mut Vec<(usize, usize, Vec<String>)>,
    ) {
        match f {
            TableFactor::Table { name, alias, .. } => {
                if let Some(table) = self.table_of(name) {
                    let key = self.key_of(table);
                    occ.push(Occurrence {
                        table,
                        alias: alias.as_ref().map(|a| a.name.value.to_ascii_lowercase()),
                        key,
                    });
                }
            }
            TableFactor::NestedJoin {
                table_with_joins, ..
            } => self.table_with_joins(table_with_joins, occ, inner_on, outer_on, using),
            // Derived tables and table functions are analysed by the visitor as
            // their own scopes (or not at all: then their tables get no condition).
            _ => {}
        }
    }
}

impl Visitor for Analyzer<'_> {
    type Break = SqlError;

    fn pre_visit_query(&mut self, q: &Query) -> ControlFlow<SqlError> {
        if let Some(with) = &q.with {
            for cte in &with.cte_tables {
                self.ctes.insert(cte.alias.name.value.to_ascii_lowercase());
            }
        }
        self.query_depth += 1;
        if q.order_by.is_some() {
            self.need("ORDER BY".into());
        }
        if q.limit_clause.is_some() {
            self.need("LIMIT".into());
        }
        if q.fetch.is_some() {
            self.need("FETCH".into());
        }
        if let SetExpr::SetOperation { op, .. } = q.body.as_ref() {
            self.need(op.to_string());
        }
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, _: &Query) -> ControlFlow<SqlError> {
        self.query_depth -= 1;
        ControlFlow::Continue(())
    }

    fn pre_visit_select(&mut self, s: &Select) -> ControlFlow<SqlError> {
        match &s.distinct {
            Some(ast::Distinct::Distinct) | Some(ast::Distinct::On(_)) => {
                self.need("DISTINCT".into())
            }
            _ => {}
        }
        match &s.group_by {
            GroupByExpr::All(_) => self.need("GROUP BY".into()),
            GroupByExpr::Expressions(v, _) if !v.is_empty() => self.need("GROUP BY".into()),
            _ => {}
        }
        if s.having.is_some() {
            self.need("HAVING".into());
        }
        if s.into.is_some() {
            self.select_into = true;
        }
        if self.top_query && self.query_depth == 1 && !s.from.is_empty() {
            let driven = s.from.iter().any(|twj| self.required_sharded(twj));
            self.rows_not_sharded |= !driven;
        }
        let from: Vec<&TableWithJoins> = s.from.iter().collect();
        let scope = self.scope(&from, s.selection.as_ref());
        self.insert_source_key(s, &scope);
        self.stack.push(scope);
        ControlFlow::Continue(())
    }

    fn post_visit_select(&mut self, _: &Select) -> ControlFlow<SqlError> {
        self.stack.pop();
        ControlFlow::Continue(())
    }

    fn post_visit_statement(&mut self, s: &ast::Statement) -> ControlFlow<SqlError> {
        if matches!(s, ast::Statement::Update(_) | ast::Statement::Delete(_)) {
            self.stack.pop();
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<SqlError> {
        if let Expr::Function(f) = e {
            let name = name_parts(&f.name)
                .last()
                .map(|s| s.to_ascii_uppercase())
                .unwrap_or_default();
            let no_args = match &f.args {
                FunctionArguments::None => true,
                FunctionArguments::List(l) => l.args.is_empty(),
                FunctionArguments::Subquery(_) => false,
            };
            if (name == "DATABASE" || name == "SCHEMA") && no_args {
                self.database_fn = true;
            }
            if f.over.is_some() {
                self.merge_needs.push(format!("window function {name}()"));
            } else if AGGREGATES.contains(&name.as_str()) {
                self.need(format!("aggregate function {name}()"));
            }
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_relation(&mut self, r: &ObjectName) -> ControlFlow<SqlError> {
        if let Some(id) = self.table_of(r) {
            self.occurrences[id] += 1;
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_statement(&mut self, s: &ast::Statement) -> ControlFlow<SqlError> {
        match s {
            ast::Statement::Update(u) => {
                let mut from = vec![&u.table];
                if let Some(
                    ast::UpdateTableFromKind::BeforeSet(v) | ast::UpdateTableFromKind::AfterSet(v),
                ) = &u.from
                {
                    from.extend(v.iter());
                }
                let scope = self.scope(&from, u.selection.as_ref());
                self.update_assignments(u, &scope);
                self.stack.push(scope);
            }
            ast::Statement::Delete(d) => {
                let mut from: Vec<&TableWithJoins> = match &d.from {
                    ast::FromTable::WithFromKeyword(v) | ast::FromTable::WithoutKeyword(v) => {
                        v.iter().collect()
                    }
                };
                if let Some(using) = &d.using {
                    from.extend(using.iter());
                }
                let scope = self.scope(&from, d.selection.as_ref());
                self.delete_targets(d, &scope);
                self.stack.push(scope);
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }
}

impl Analyzer<'_> {
    /// UPDATE … SET: the tables written and the sharding columns assigned.
    fn update_assignments(&mut self, u: &ast::Update, scope: &Scope) {
        for a in &u.assignments {
            let targets: Vec<&ObjectName> = match &a.target {
                AssignmentTarget::ColumnName(n) => vec![n],
                AssignmentTarget::Tuple(v) => v.iter().collect(),
            };
            for t in targets {
                let parts = name_parts(t);
                let Some((col, qualifier)) = parts.split_last() else {
                    continue;
                };
                let col = col.to_ascii_lowercase();
                for i in qualified(qualifier, &scope.occ, self.schema, &self.tables) {
                    let o = &scope.occ[i];
                    self.mark_written(o.table);
                    if o.key.as_deref() == Some(col.as_str()) {
                        let v = match &a.target {
                            AssignmentTarget::ColumnName(_) => key_value(&a.value, &col),
                            AssignmentTarget::Tuple(_) => KeyValue::Other,
                        };
                        self.key_updates.push((o.table, v));
                    }
                }
            }
        }
    }

    /// DELETE: the tables it deletes from.
    fn delete_targets(&mut self, d: &ast::Delete, scope: &Scope) {
        if d.tables.is_empty() {
            if let Some(o) = scope.occ.first() {
                self.mark_written(o.table);
            }
            return;
        }
        for t in &d.tables {
            let parts = name_parts(t);
            // `DELETE a, b FROM …`: each names an alias or table of the FROM clause.
            let hits: Vec<usize> = match parts.as_slice() {
                [q] => matching(false, q, &scope.occ, &self.tables),
                [db, q] if db.eq_ignore_ascii_case(self.schema) => {
                    matching(true, q, &scope.occ, &self.tables)
                }
                _ => Vec::new(),
            };
            for i in hits {
                self.mark_written(scope.occ[i].table);
            }
        }
    }
}

fn find(parent: &mut [usize], mut i: usize) -> usize {
    while parent[i] != i {
        parent[i] = parent[parent[i]];
        i = parent[i];
    }
    i
}

/// A join's constraint and whether it is an outer join (whose ON does not filter the preserved side).
fn join_constraint(op: &JoinOperator) -> (Option<&JoinConstraint>, bool) {
    match op {
        JoinOperator::Join(c)
        | JoinOperator::Inner(c)
        | JoinOperator::CrossJoin(c)
        | JoinOperator::StraightJoin(c) => (Some(c), false),
        JoinOperator::Left(c)
        | JoinOperator::LeftOuter(c)
        | JoinOperator::Right(c)
        | JoinOperator::RightOuter(c) => (Some(c), true),
        _ => (None, true),
    }
}

/// Calls `f` with each top-level AND conjunct of `e`.
fn conjuncts<'e>(e: &'e Expr, f: &mut dyn FnMut(&'e Expr)) {
    match e {
        Expr::BinaryOp {
            left,
            op: BinaryOperator::And,
            right,
        } => {
            conjuncts(left, f);
            conjuncts(right, f);
        }
        Expr::Nested(inner) => conjuncts(inner, f),
        other => f(other),
    }
}

/// Occurrences whose alias (or, unaliased, whose table name) is `q`.
/// `schema_qualified`: the name was written `schema.q`, which only a bare table name matches.
fn matching(schema_qualified: bool, q: &str, occ: &[Occurrence], tables: &Tables) -> Vec<usize> {
    (0..occ.len())
        .filter(|&i| {
            let o = &occ[i];
            match (&o.alias, schema_qualified) {
                (Some(a), false) => a.eq_ignore_ascii_case(q),
                (Some(_), true) => false,
                (None, _) => {
                    let t = &tables.list[o.table];
                    t.foreign_schema.is_none() && t.name.eq_ignore_ascii_case(q)
                }
            }
        })
        .collect()
}

/// Occurrences a column qualifier (`[]`, `[t]`, `[db, t]`) can denote.
fn qualified(qualifier: &[&str], occ: &[Occurrence], schema: &str, tables: &Tables) -> Vec<usize> {
    match qualifier {
        [] => (0..occ.len()).collect(),
        [q] => matching(false, q, occ, tables),
        [db, q] if db.eq_ignore_ascii_case(schema) => matching(true, q, occ, tables),
        _ => Vec::new(),
    }
}

/// The occurrences whose sharding column the column reference `e` can be.
fn resolve_all(e: &Expr, occ: &[Occurrence], schema: &str, tables: &Tables) -> Vec<usize> {
    let (qualifier, col): (Vec<&str>, &str) = match e {
        Expr::Nested(inner) => return resolve_all(inner, occ, schema, tables),
        Expr::Identifier(c) => (Vec::new(), c.value.as_str()),
        Expr::CompoundIdentifier(parts) => match parts.split_last() {
            Some((c, q)) => (
                q.iter().map(|i| i.value.as_str()).collect(),
                c.value.as_str(),
            ),
            None => return Vec::new(),
        },
        _ => return Vec::new(),
    };
    qualified(&qualifier, occ, schema, tables)
        .into_iter()
        .filter(|&i| {
            occ[i]
                .key
                .as_deref()
                .is_some_and(|k| k.eq_ignore_ascii_case(col))
        })
        .collect()
}

/// Builds the key condition of one class of a scope.
struct CondCtx<'a> {
    occ: &'a [Occurrence],
    group_of: &'a [Option<usize>],
    group: usize,
    schema: &'a str,
    tables: &'a Tables,
}

impl CondCtx<'_> {
    /// Whether `e` is the sharding column of this class.
    fn is_key(&self, e: &Expr) -> bool {
        let hits = resolve_all(e, self.occ, self.schema, self.tables);
        !hits.is_empty() && hits.iter().all(|&i| self.group_of[i] == Some(self.group))
    }

    fn cond(&self, e: &Expr) -> Cond {
        match e {
            Expr::Nested(inner) => self.cond(inner),
            Expr::BinaryOp {
                left,
                op: BinaryOperator::And,
                right,
            } => Cond::and(vec![self.cond(left), self.cond(right)]),
            Expr::BinaryOp {
                left,
                op: BinaryOperator::Or,
                right,
            } => Cond::or(vec![self.cond(left), self.cond(right)]),
            Expr::BinaryOp { left, op, right } => {
                let (op, slot) = if self.is_key(left) {
                    (op.clone(), slot_of(right))
                } else if self.is_key(right) {
                    (flip(op), slot_of(left))
                } else {
                    return Cond::All;
                };
                let Some(v) = slot else {
                    return Cond::All;
                };
                match op {
                    BinaryOperator::Eq | BinaryOperator::Spaceship => Cond::In(vec![v]),
                    BinaryOperator::Gt => Cond::Range {
                        lo: Bound::Excluded(v),
                        hi: Bound::Unbounded,
                    },
                    BinaryOperator::GtEq => Cond::Range {
                        lo: Bound::Included(v),
                        hi: Bound::Unbounded,
                    },
                    BinaryOperator::Lt => Cond::Range {
                        lo: Bound::Unbounded,
                        hi: Bound::Excluded(v),
                    },
                    BinaryOperator::LtEq => Cond::Range {
                        lo: Bound::Unbounded,
                        hi: Bound::Included(v),
                    },
                    _ => Cond::All,
                }
            }
            Expr::In {
                expr,
                target: ast::InTarget::List(list),
                negated: false,
                ..
            } if self.is_key(expr) => {
                let slots: Option<Vec<usize>> = list.iter().map(slot_of).collect();
                slots.map_or(Cond::All, Cond::In)
            }
            Expr::Between {
                expr,
                negated: false,
                low,
                high,
            } if self.is_key(expr) => match (slot_of(low), slot_of(high)) {
                (Some(lo), Some(hi)) => Cond::Range {
                    lo: Bound::Included(lo),
                    hi: Bound::Included(hi),
                },
                _ => Cond::All,
            },
            _ => Cond::All,
        }
    }
}

/// The operator with its sides swapped (`5 < uid` is `uid > 5`).
fn flip(op: &BinaryOperator) -> BinaryOperator {
    match op {
        BinaryOperator::Gt => BinaryOperator::Lt,
        BinaryOperator::GtEq => BinaryOperator::LtEq,
        BinaryOperator::Lt => BinaryOperator::Gt,
        BinaryOperator::LtEq => BinaryOperator::GtEq,
        other => other.clone(),
    }
}

/// The value an expression gives a sharding column named `key`.
pub(crate) fn key_value(e: &Expr, key: &str) -> KeyValue {
    if let Some(slot) = slot_of(e) {
        return KeyValue::Slot(slot);
    }
    match e {
        Expr::Value(v) if v.value == Value::Null => KeyValue::Null,
        Expr::Identifier(i)
            if i.value.eq_ignore_ascii_case("DEFAULT") && i.quote_style.is_none() =>
        {
            KeyValue::Default
        }
        Expr::Identifier(i) if i.value.eq_ignore_ascii_case(key) => KeyValue::Unchanged,
        Expr::Function(f) => {
            let name = name_parts(&f.name);
            let is_values = matches!(name.as_slice(), [n] if n.eq_ignore_ascii_case("VALUES"));
            let arg_is_key = match &f.args {
                FunctionArguments::List(l) => matches!(
                    l.args.as_slice(),
                    [ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(Expr::Identifier(i)))]
                        if i.value.eq_ignore_ascii_case(key)
                ),
                _ => false,
            };
            if is_values && arg_is_key {
                KeyValue::Unchanged
            } else {
                KeyValue::Other
            }
        }
        _ => KeyValue::Other,
    }
}

/// Whether a column-list entry names `column` (ASCII case-insensitively).
pub(crate) fn is_column(name: &ObjectName, column: &str) -> bool {
    name_parts(name)
        .last()
        .is_some_and(|c| c.eq_ignore_ascii_case(column))
}

/// What `ins` gives `column`: see [`crate::InsertColumn::values`].
pub(crate) fn insert_column(ins: &ast::Insert, column: &str) -> InsertKey {
    let Some(query) = &ins.source else {
        return ins
            .assignments
            .iter()
            .find(|a| assigned_column(&a.target).is_some_and(|c| c.eq_ignore_ascii_case(column)))
            .map_or(InsertKey::Missing, |a| {
                InsertKey::Rows(vec![key_value(&a.value, column)])
            });
    };
    if ins.columns.is_empty() {
        return InsertKey::NoColumnList;
    }
    let Some(position) = ins.columns.iter().position(|c| is_column(c, column)) else {
        return InsertKey::Missing;
    };
    match query.body.as_ref() {
        SetExpr::Values(v) => InsertKey::Rows(
            v.rows
                .iter()
                .map(|r| {
                    r.content
                        .get(position)
                        .map_or(KeyValue::Other, |e| key_value(e, column))
                })
                .collect(),
        ),
        _ => InsertKey::Select(KeyValue::Other),
    }
}

/// The column an assignment sets (last name part, lowercase).
pub(crate) fn assigned_column(target: &AssignmentTarget) -> Option<String> {
    match target {
        AssignmentTarget::ColumnName(n) => name_parts(n).last().map(|s| s.to_ascii_lowercase()),
        AssignmentTarget::Tuple(_) => None,
    }
}

/// The table of `SHOW {INDEX|INDEXES|KEYS} {FROM|IN} t [{FROM|IN} db]`, which
/// sqlparser parses as a SHOW of variable words.
pub(crate) fn show_index_table(words: &[ast::Ident]) -> Option<ObjectName> {
    let w: Vec<String> = words.iter().map(|i| i.value.to_ascii_uppercase()).collect();
    let is_from = |s: &str| s == "FROM" || s == "IN";
    let first = w.first()?;
    let mut i = 0;
    if first == "EXTENDED" {
        i = 1;
    }
    if !matches!(w.get(i)?.as_str(), "INDEX" | "INDEXES" | "KEYS") || !is_from(w.get(i + 1)?) {
        return None;
    }
    let table = words.get(i + 2)?.clone();
    match (w.get(i + 3), words.get(i + 4), w.len()) {
        (None, None, _) => Some(ObjectName::from(vec![table])),
        (Some(f), Some(db), n) if is_from(f) && n == i + 5 => {
            Some(ObjectName::from(vec![db.clone(), table]))
        }
        _ => None,
    }
}

/// The session command a statement is; `None` for other statements.
fn session(stmt: &ast::Statement) -> Option<Session> {
    use ast::Statement as S;
    Some(match stmt {
        S::Set(_) => Session::Set,
        S::StartTransaction { statements, .. } if statements.is_empty() => Session::Begin,
        S::Commit { .. } => Session::Commit,
        S::Rollback {
            savepoint: Some(name),
            ..
        } => Session::RollbackTo(name.value.clone()),
        S::Rollback { .. } => Session::Rollback,
        S::Savepoint { name } => Session::Savepoint(name.value.clone()),
        S::ReleaseSavepoint { name } => Session::Release(name.value.clone()),
        S::Use(Use::Object(n) | Use::Database(n) | Use::Schema(n)) => {
            Session::Use(name_parts(n).join("."))
        }
        _ => return None,
    })
}

/// The first words of a statement, for messages (`ANALYZE TABLE`, `LOCK TABLES`).
fn first_words(stmt: &ast::Statement) -> String {
    let text = stmt.to_string();
    let words: Vec<&str> = text
        .split_whitespace()
        .take(2)
        .take_while(|w| w.chars().all(|c| c.is_ascii_alphabetic()))
        .collect();
    if words.is_empty() {
        "statement".to_owned()
    } else {
        words.join(" ").to_ascii_uppercase()
    }
}
