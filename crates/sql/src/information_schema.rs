//! The logical view of `information_schema`: the statement each data source runs so that,
//! together, they answer as one server holding the logical schema would.
//!
//! The tables of [`ViewTable`]'s list (SCHEMATA, TABLES, COLUMNS, STATISTICS, …) describe
//! databases and tables, so on a backend they name physical databases (`bank_0`) and tables
//! (`payment_3`). Each data source holding tables of the logical schema runs a copy of the
//! statement in which
//! - every occurrence of such a table becomes a derived table of only the rows that belong to
//!   the logical view on that data source (its database; one physical table per logical
//!   table, so every logical table is described exactly once across data sources; see
//!   [`ViewSource`]);
//! - every column reference naming a database or table is replaced by an expression mapping
//!   physical names to logical ones (a plain select item keeps its name with an alias), and
//!   `*` is spelled out so that its name columns are mapped too.
//!
//! The backends thus evaluate WHERE, joins, GROUP BY and ORDER BY on logical names, and
//! the rows of the data sources are a partition of the answer: the router merges them like
//! a scatter read across shards. That holds when the rows a statement combines belong to the
//! same table ([`ViewAnalysis::linked`]); other combinations are refused by the router.
//!
//! [`Statement::view_analysis`] says what a statement reads; [`Statement::logical_view`]
//! writes one data source's copy. Neither knows the rules: the caller describes each data
//! source.

use std::collections::HashMap;
use std::ops::ControlFlow;

use sqlparser::ast::{
    self, BinaryOperator, Expr, FunctionArguments, Ident, JoinConstraint, JoinOperator, ObjectName,
    Query, Select, SelectItem, SelectItemQualifiedWildcardKind, SetExpr, TableFactor,
    TableWithJoins, Value, Visit, VisitMut, Visitor, VisitorMut,
};
use sqlparser::dialect::MySqlDialect;
use sqlparser::parser::{Parser, ParserOptions};

use crate::analyze::name_parts;
use crate::parse::{slot_of, Statement, RECURSION_LIMIT};
use crate::SqlError;

/// The database name of the system schema.
pub const INFORMATION_SCHEMA: &str = "information_schema";

/// A table of `information_schema` whose rows belong to one database (and, but for
/// SCHEMATA, to one table of it), with the columns that name databases and tables.
#[derive(Debug)]
struct ViewTable {
    name: &'static str,
    /// Columns naming the database a row belongs to (equal in every row); the first is
    /// the one the view restricts.
    row_schema: &'static [&'static str],
    /// The column naming the table a row belongs to; `None` for SCHEMATA.
    row_table: Option<&'static str>,
    /// Other columns naming a database (a referenced table's).
    other_schemas: &'static [&'static str],
    /// Other columns naming a table, each with the column naming its database.
    other_tables: &'static [(&'static str, &'static str)],
}

const VIEW_TABLES: &[ViewTable] = &[
    ViewTable {
        name: "SCHEMATA",
        row_schema: &["SCHEMA_NAME"],
        row_table: None,
        other_schemas: &[],
        other_tables: &[],
    },
    ViewTable {
        name: "TABLES",
        row_schema: &["TABLE_SCHEMA"],
        row_table: Some("TABLE_NAME"),
        other_schemas: &[],
        other_tables: &[],
    },
    ViewTable {
        name: "COLUMNS",
        row_schema: &["TABLE_SCHEMA"],
        row_table: Some("TABLE_NAME"),
        other_schemas: &[],
        other_tables: &[],
    },
    ViewTable {
        name: "STATISTICS",
        row_schema: &["TABLE_SCHEMA", "INDEX_SCHEMA"],
        row_table: Some("TABLE_NAME"),
        other_schemas: &[],
        other_tables: &[],
    },
    ViewTable {
        name: "KEY_COLUMN_USAGE",
        row_schema: &["TABLE_SCHEMA", "CONSTRAINT_SCHEMA"],
        row_table: Some("TABLE_NAME"),
        other_schemas: &["REFERENCED_TABLE_SCHEMA"],
        other_tables: &[("REFERENCED_TABLE_NAME", "REFERENCED_TABLE_SCHEMA")],
    },
    ViewTable {
        name: "TABLE_CONSTRAINTS",
        row_schema: &["TABLE_SCHEMA", "CONSTRAINT_SCHEMA"],
        row_table: Some("TABLE_NAME"),
        other_schemas: &[],
        other_tables: &[],
    },
    ViewTable {
        name: "REFERENTIAL_CONSTRAINTS",
        row_schema: &["CONSTRAINT_SCHEMA"],
        row_table: Some("TABLE_NAME"),
        other_schemas: &["UNIQUE_CONSTRAINT_SCHEMA"],
        other_tables: &[("REFERENCED_TABLE_NAME", "UNIQUE_CONSTRAINT_SCHEMA")],
    },
    ViewTable {
        name: "CHECK_CONSTRAINTS",
        row_schema: &["CONSTRAINT_SCHEMA"],
        row_table: Some("TABLE_NAME"),
        other_schemas: &[],
        other_tables: &[],
    },
    ViewTable {
        name: "PARTITIONS",
        row_schema: &["TABLE_SCHEMA"],
        row_table: Some("TABLE_NAME"),
        other_schemas: &[],
        other_tables: &[],
    },
];

/// Tables of `information_schema` about objects of a database that the view does not
/// present (their definitions hold physical names), with the columns naming the database.
const UNPRESENTED: &[(&str, &[&str])] = &[
    ("VIEWS", &["TABLE_SCHEMA"]),
    ("TRIGGERS", &["TRIGGER_SCHEMA", "EVENT_OBJECT_SCHEMA"]),
    ("ROUTINES", &["ROUTINE_SCHEMA"]),
    ("PARAMETERS", &["SPECIFIC_SCHEMA"]),
    ("EVENTS", &["EVENT_SCHEMA"]),
    ("COLUMN_PRIVILEGES", &["TABLE_SCHEMA"]),
    ("TABLE_PRIVILEGES", &["TABLE_SCHEMA"]),
    ("SCHEMA_PRIVILEGES", &["TABLE_SCHEMA"]),
    ("TABLE_STATISTICS", &["TABLE_SCHEMA"]),
    ("INDEX_STATISTICS", &["TABLE_SCHEMA"]),
];

/// How a table of `information_schema` relates to the logical view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SystemTable {
    /// Presented with logical names (TABLES, COLUMNS, …); the canonical name.
    View(&'static str),
    /// About objects of a database, but not presented (VIEWS, ROUTINES, …); the canonical name.
    Unpresented(&'static str),
    /// Nothing of a database (PROCESSLIST, ENGINES, …): the same through the proxy.
    Other,
}

/// What `information_schema.<name>` is to the logical view.
pub fn system_table(name: &str) -> SystemTable {
    if let Some(t) = view_table(name) {
        return SystemTable::View(t.name);
    }
    match UNPRESENTED
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
    {
        Some((n, _)) => SystemTable::Unpresented(n),
        None => SystemTable::Other,
    }
}

/// The tables of `information_schema` about databases that `sql` names without a
/// database: with `information_schema` selected they reach the backend as written (the
/// logical view applies to qualified names only). Text that does not parse names none.
pub fn unqualified_system_tables(sql: &str) -> Vec<&'static str> {
    let mut found = Vec::new();
    for statement in crate::parse(sql).unwrap_or_default() {
        let _ = ast::visit_relations(&statement.ast, |name| {
            if let [t] = name_parts(name).as_slice() {
                match system_table(t) {
                    SystemTable::View(n) | SystemTable::Unpresented(n) => found.push(n),
                    SystemTable::Other => {}
                }
            }
            ControlFlow::<()>::Continue(())
        });
    }
    found
}

fn view_table(name: &str) -> Option<&'static ViewTable> {
    VIEW_TABLES
        .iter()
        .find(|t| t.name.eq_ignore_ascii_case(name))
}

/// A value a statement compares a database column with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SchemaValue {
    /// A literal or `?` in this fingerprint slot.
    Slot(usize),
    /// A string literal not bound to a slot.
    Literal(String),
    /// `DATABASE()` / `SCHEMA()`.
    Database,
}

/// What a query reads of `information_schema`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ViewAnalysis {
    /// Each occurrence of a table of the view (canonical names), in order.
    pub tables: Vec<&'static str>,
    /// Per occurrence: the sets of values its database is restricted to by `=`/`IN` in
    /// WHERE or an inner join's ON (each set must hold; empty: unrestricted).
    pub restrictions: Vec<Vec<Vec<SchemaValue>>>,
    /// Whatever rows of different occurrences the statement combines (joins, subqueries)
    /// have equal table names. Always true for one occurrence; never for SCHEMATA with
    /// another.
    pub linked: bool,
    /// … and equal databases (`c.TABLE_SCHEMA = t.TABLE_SCHEMA`), so that they describe the
    /// same table even among other databases' rows.
    pub schema_linked: bool,
    /// Each occurrence of a table the view does not present, with its restrictions.
    pub unpresented: Vec<(&'static str, Vec<Vec<SchemaValue>>)>,
    /// Tables of the view whose column lists `*` needs (canonical names).
    pub expand: Vec<&'static str>,
    /// A construct the view cannot write for several data sources, named.
    pub refused: Option<String>,
}

/// One data source's part of the logical view. Names are compared as the backend compares
/// them (information_schema's collation).
#[derive(Debug, Clone, Copy)]
pub struct ViewSource<'a> {
    /// The logical schema.
    pub schema: &'a str,
    /// This data source's database.
    pub database: &'a str,
    /// Physical tables of this database whose rows are shown: one per logical table.
    pub shown: &'a [String],
    /// On the default data source (`Some`): its other tables are shown too, under their own
    /// names, except these (nodes of tables of the rules, and the names the rules give).
    pub unnamed_except: Option<&'a [String]>,
    /// Physical → logical names of this database's tables that differ.
    pub names: &'a [(String, String)],
    /// Rows of other databases are shown too (from the default data source only), except
    /// these (the data sources' databases and the logical schema).
    pub others_except: Option<&'a [String]>,
}

impl Statement {
    /// What this statement reads of `information_schema` (all empty when nothing).
    pub fn view_analysis(&self) -> ViewAnalysis {
        let mut v = Analyzer::default();
        let _ = self.ast.visit(&mut v);
        let linked = connected(&mut v.parent);
        let schema_linked = linked && connected(&mut v.schema_parent);
        let mut expand = v.expand;
        expand.sort_unstable();
        expand.dedup();
        ViewAnalysis {
            tables: v.tables,
            restrictions: v.restrictions,
            linked,
            schema_linked,
            unpresented: v.unpresented,
            expand,
            refused: v.refused,
        }
    }

    /// The copy of this query one data source runs (see the module documentation).
    /// `columns` holds the column lists of the tables in [`ViewAnalysis::expand`], in order.
    pub fn logical_view(
        &self,
        source: &ViewSource<'_>,
        columns: &[(String, Vec<String>)],
    ) -> Result<Statement, SqlError> {
        let mut ast = self.ast.clone();
        let mut w = Writer {
            frames: Vec::new(),
            source,
            columns,
            error: None,
        };
        let _ = VisitMut::visit(&mut ast, &mut w);
        match w.error {
            Some(e) => Err(e),
            None => Ok(Statement {
                ast,
                extras: self.extras,
            }),
        }
    }
}

/// A relation of a FROM clause.
#[derive(Debug, Clone)]
enum Rel {
    /// An occurrence of a table of the view: what columns are qualified with.
    View {
        table: &'static ViewTable,
        alias: Ident,
        aliased: bool,
        id: usize,
    },
    /// Anything else (derived tables, other tables), by its qualifier if any (lowercase).
    Other(Option<String>),
}

/// The relations of one FROM clause.
#[derive(Debug, Default)]
struct Scope {
    rels: Vec<Rel>,
    /// A USING or NATURAL join merges columns (so `*` is not a plain concatenation).
    merged: bool,
    /// Pairs of occurrences linked by USING / NATURAL on their table names.
    links: Vec<(usize, usize)>,
    /// Unqualified columns do not resolve further out (the ORDER BY of a UNION).
    opaque: bool,
}

/// A name scope: a query (whose body may be a SELECT) or a SELECT inside a set operation.
struct Frame {
    scope: Scope,
    /// The SELECT whose FROM the scope is.
    select: *const Select,
    /// The query this frame belongs to, if it is a query's frame.
    query: *const Query,
    /// The query's SELECT has been visited: what follows is its ORDER BY / LIMIT.
    body_done: bool,
    /// The select list's aliases (lowercase), for ORDER BY.
    aliases: Vec<String>,
}

impl Frame {
    fn query(q: &Query) -> Frame {
        let (select, opaque) = match q.body.as_ref() {
            SetExpr::Select(s) => (&**s as *const Select, false),
            _ => (std::ptr::null(), true),
        };
        Frame {
            scope: Scope {
                opaque,
                ..Scope::default()
            },
            select,
            query: q,
            body_done: false,
            aliases: Vec::new(),
        }
    }
}

/// An information_schema table name (`information_schema.x`), as a table of the view.
fn view_relation(name: &ObjectName) -> Option<(&'static ViewTable, Ident)> {
    let parts = &name.0;
    let [db, t] = parts.as_slice() else {
        return None;
    };
    let (ast::ObjectNamePart::Identifier(db), ast::ObjectNamePart::Identifier(t)) = (db, t) else {
        return None;
    };
    if !db.value.eq_ignore_ascii_case(INFORMATION_SCHEMA) {
        return None;
    }
    view_table(&t.value).map(|v| (v, t.clone()))
}

/// The relations of a FROM clause; occurrences get ids from `next_id`.
fn scope_of(select: &Select, next_id: &mut usize) -> Scope {
    let mut scope = Scope::default();
    for twj in &select.from {
        add_joined(twj, &mut scope, next_id);
    }
    scope
}

fn add_joined(twj: &TableWithJoins, scope: &mut Scope, next_id: &mut usize) {
    add_factor(&twj.relation, scope, next_id);
    for j in &twj.joins {
        let before = scope.rels.len();
        add_factor(&j.relation, scope, next_id);
        let constraint = join_constraint(&j.join_operator);
        let shared: Option<Vec<String>> = match constraint {
            Some(JoinConstraint::Using(cols)) | Some(JoinConstraint::UsingAlias(cols, _)) => Some(
                cols.iter()
                    .filter_map(|c| name_parts(c).last().map(|s| s.to_ascii_uppercase()))
                    .collect(),
            ),
            Some(JoinConstraint::Natural) => None,
            _ => continue,
        };
        scope.merged = true;
        // USING (TABLE_NAME) or NATURAL between tables of the view links them by table.
        for r in before..scope.rels.len() {
            for l in 0..before {
                if let (Some((lt, lid)), Some((rt, rid))) =
                    (row_table(&scope.rels[l]), row_table(&scope.rels[r]))
                {
                    let on_it = shared
                        .as_ref()
                        .is_none_or(|cols| cols.iter().any(|c| c == lt));
                    if lt == rt && on_it {
                        scope.links.push((lid, rid));
                    }
                }
            }
        }
    }
}

fn row_table(rel: &Rel) -> Option<(&'static str, usize)> {
    match rel {
        Rel::View { table, id, .. } => table.row_table.map(|t| (t, *id)),
        Rel::Other(_) => None,
    }
}

fn add_factor(f: &TableFactor, scope: &mut Scope, next_id: &mut usize) {
    match f {
        TableFactor::Table { name, alias, .. } => match view_relation(name) {
            Some((table, written)) => {
                scope.rels.push(Rel::View {
                    table,
                    aliased: alias.is_some(),
                    alias: alias.as_ref().map_or(written, |a| a.name.clone()),
                    id: *next_id,
                });
                *next_id += 1;
            }
            None => {
                let qualifier = match alias {
                    Some(a) => Some(a.name.value.to_ascii_lowercase()),
                    None => name_parts(name).last().map(|s| s.to_ascii_lowercase()),
                };
                scope.rels.push(Rel::Other(qualifier));
            }
        },
        TableFactor::NestedJoin {
            table_with_joins, ..
        } => add_joined(table_with_joins, scope, next_id),
        TableFactor::Derived { alias, .. } => scope.rels.push(Rel::Other(
            alias.as_ref().map(|a| a.name.value.to_ascii_lowercase()),
        )),
        _ => scope.rels.push(Rel::Other(None)),
    }
}

fn join_constraint(op: &JoinOperator) -> Option<&JoinConstraint> {
    match op {
        JoinOperator::Join(c)
        | JoinOperator::Inner(c)
        | JoinOperator::Left(c)
        | JoinOperator::LeftOuter(c)
        | JoinOperator::Right(c)
        | JoinOperator::RightOuter(c)
        | JoinOperator::FullOuter(c)
        | JoinOperator::CrossJoin(c)
        | JoinOperator::StraightJoin(c) => Some(c),
        _ => None,
    }
}

/// What a column reference names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Named {
    /// A database: the column.
    Schema(&'static str),
    /// A table: the column and the column naming its database.
    Table(&'static str, &'static str),
}

impl ViewTable {
    fn named(&self, column: &str) -> Option<Named> {
        let schemas = self.row_schema.iter().chain(self.other_schemas);
        if let Some(c) = schemas.into_iter().find(|c| c.eq_ignore_ascii_case(column)) {
            return Some(Named::Schema(c));
        }
        let row = self.row_table.map(|t| (t, self.row_schema[0]));
        row.into_iter()
            .chain(self.other_tables.iter().copied())
            .find(|(t, _)| t.eq_ignore_ascii_case(column))
            .map(|(t, s)| Named::Table(t, s))
    }

    fn is_row_schema(&self, column: &str) -> bool {
        self.row_schema
            .iter()
            .any(|c| c.eq_ignore_ascii_case(column))
    }
}

/// A column reference resolved to an occurrence of a table of the view.
#[derive(Debug, Clone)]
struct Resolved {
    table: &'static ViewTable,
    alias: Ident,
    id: usize,
    /// The column as written (unquoted).
    column: String,
    named: Option<Named>,
}

fn resolved(rel: &Rel, column: &str) -> Option<Resolved> {
    match rel {
        Rel::View {
            table, alias, id, ..
        } => Some(Resolved {
            table,
            alias: alias.clone(),
            id: *id,
            column: column.to_owned(),
            named: table.named(column),
        }),
        Rel::Other(_) => None,
    }
}

/// Resolves a column reference (`c`, `t.c`, `information_schema.t.c`) in the scopes, the
/// innermost last. `None`: not a column of an occurrence of a table of the view.
fn resolve(frames: &[Frame], parts: &[Ident]) -> Option<Resolved> {
    match parts {
        [col] => {
            for f in frames.iter().rev() {
                let hits: Vec<&Rel> = f
                    .scope
                    .rels
                    .iter()
                    .filter(|r| matches!(r, Rel::View { table, .. } if table.named(&col.value).is_some()))
                    .collect();
                match hits.as_slice() {
                    [one] => return resolved(one, &col.value),
                    // Ambiguous: the backend says so.
                    [_, _, ..] => return None,
                    [] => {}
                }
                let unknown_columns = f.scope.rels.iter().any(|r| matches!(r, Rel::Other(_)));
                if unknown_columns || f.scope.opaque {
                    return None;
                }
            }
            None
        }
        [q, col] => {
            for f in frames.iter().rev() {
                for rel in &f.scope.rels {
                    let hit = match rel {
                        Rel::View { alias, .. } => alias.value.eq_ignore_ascii_case(&q.value),
                        Rel::Other(name) => name
                            .as_deref()
                            .is_some_and(|n| n.eq_ignore_ascii_case(&q.value)),
                    };
                    if hit {
                        return resolved(rel, &col.value);
                    }
                }
            }
            None
        }
        [db, t, col] if db.value.eq_ignore_ascii_case(INFORMATION_SCHEMA) => {
            for f in frames.iter().rev() {
                for rel in &f.scope.rels {
                    if let Rel::View {
                        table,
                        aliased: false,
                        ..
                    } = rel
                    {
                        if table.name.eq_ignore_ascii_case(&t.value) {
                            return resolved(rel, &col.value);
                        }
                    }
                }
            }
            None
        }
        _ => None,
    }
}

fn column_parts(e: &Expr) -> Option<&[Ident]> {
    match e {
        Expr::Identifier(i) => Some(std::slice::from_ref(i)),
        Expr::CompoundIdentifier(parts) => Some(parts),
        _ => None,
    }
}

fn is_database_fn(e: &Expr) -> bool {
    let Expr::Function(f) = e else { return false };
    let no_args = match &f.args {
        FunctionArguments::None => true,
        FunctionArguments::List(l) => l.args.is_empty(),
        FunctionArguments::Subquery(_) => false,
    };
    let name = name_parts(&f.name);
    no_args
        && matches!(name.as_slice(), [n] if n.eq_ignore_ascii_case("DATABASE") || n.eq_ignore_ascii_case("SCHEMA"))
}

fn schema_value(e: &Expr) -> Option<SchemaValue> {
    if let Some(slot) = slot_of(e) {
        return Some(SchemaValue::Slot(slot));
    }
    match e {
        Expr::Nested(inner) => schema_value(inner),
        Expr::Value(v) => match &v.value {
            Value::SingleQuotedString(s) | Value::DoubleQuotedString(s) => {
                Some(SchemaValue::Literal(s.clone()))
            }
            _ => None,
        },
        e if is_database_fn(e) => Some(SchemaValue::Database),
        _ => None,
    }
}

fn conjuncts<'e>(e: &'e Expr, out: &mut Vec<&'e Expr>) {
    match e {
        Expr::BinaryOp {
            left,
            op: BinaryOperator::And,
            right,
        } => {
            conjuncts(left, out);
            conjuncts(right, out);
        }
        Expr::Nested(inner) => conjuncts(inner, out),
        other => out.push(other),
    }
}

/// Whether every element of a union-find is in one set.
fn connected(parent: &mut [usize]) -> bool {
    let roots: Vec<usize> = (0..parent.len()).map(|i| find(parent, i)).collect();
    roots.windows(2).all(|w| w[0] == w[1])
}

fn find(parent: &mut [usize], mut i: usize) -> usize {
    while parent[i] != i {
        parent[i] = parent[parent[i]];
        i = parent[i];
    }
    i
}

/// Collects a [`ViewAnalysis`].
#[derive(Default)]
struct Analyzer {
    frames: Vec<Frame>,
    next_id: usize,
    tables: Vec<&'static str>,
    restrictions: Vec<Vec<Vec<SchemaValue>>>,
    /// Occurrences linked by equal table names, and by equal databases.
    parent: Vec<usize>,
    schema_parent: Vec<usize>,
    unpresented: Vec<(&'static str, Vec<Vec<SchemaValue>>)>,
    expand: Vec<&'static str>,
    refused: Option<String>,
    /// `x IN (subquery)` whose x is the table name of this occurrence, by subquery.
    pending: HashMap<*const Query, usize>,
}

impl Analyzer {
    fn link(&mut self, a: usize, b: usize) {
        let (ra, rb) = (find(&mut self.parent, a), find(&mut self.parent, b));
        self.parent[ra] = rb;
    }

    fn link_schemas(&mut self, a: usize, b: usize) {
        let parent = &mut self.schema_parent;
        let (ra, rb) = (find(parent, a), find(parent, b));
        parent[ra] = rb;
    }

    fn refuse(&mut self, what: String) {
        self.refused.get_or_insert(what);
    }

    /// The conditions of a SELECT: restrictions of its occurrences' databases, and links.
    fn conditions(&mut self, s: &Select) {
        // Each condition, with the one occurrence it restricts when it is the ON of an
        // outer join (`Some(None)`: none, the ON of a RIGHT or FULL join).
        let mut conds: Vec<(&Expr, Option<Option<usize>>)> = Vec::new();
        if let Some(w) = &s.selection {
            conds.push((w, None));
        }
        let mut joins = Vec::new();
        for twj in &s.from {
            collect_joins(twj, &mut joins);
        }
        for (relation, op) in joins {
            let Some(JoinConstraint::On(e)) = join_constraint(op) else {
                continue;
            };
            let only = match op {
                JoinOperator::Left(_) | JoinOperator::LeftOuter(_) => {
                    Some(self.occurrence_of(relation))
                }
                JoinOperator::Right(_)
                | JoinOperator::RightOuter(_)
                | JoinOperator::FullOuter(_) => Some(None),
                _ => None,
            };
            conds.push((e, only));
        }
        let top = self.frames.len() - 1;
        for (cond, only) in conds {
            let mut parts = Vec::new();
            conjuncts(cond, &mut parts);
            for c in parts {
                self.link_condition(c);
                if let Some((id, values)) = restriction(&self.frames[top..], c) {
                    if only.is_none_or(|o| o == Some(id)) {
                        self.restrictions[id].push(values);
                    }
                }
            }
        }
    }

    /// The occurrence id of a FROM item of the top frame that is a table of the view.
    fn occurrence_of(&self, f: &TableFactor) -> Option<usize> {
        let TableFactor::Table { name, alias, .. } = f else {
            return None;
        };
        let (_, written) = view_relation(name)?;
        let alias = alias.as_ref().map_or(written, |a| a.name.clone());
        self.frames.last()?.scope.rels.iter().find_map(|r| match r {
            Rel::View { alias: a, id, .. } if a.value == alias.value => Some(*id),
            _ => None,
        })
    }

    fn link_condition(&mut self, c: &Expr) {
        match c {
            Expr::BinaryOp {
                left,
                op: BinaryOperator::Eq,
                right,
            } => {
                let side = |e: &Expr| column_parts(e).and_then(|p| resolve(&self.frames, p));
                let (Some(a), Some(b)) = (side(left), side(right)) else {
                    return;
                };
                let row_table = |r: &Resolved| {
                    r.table
                        .row_table
                        .is_some_and(|t| t.eq_ignore_ascii_case(&r.column))
                };
                if row_table(&a) && row_table(&b) {
                    self.link(a.id, b.id);
                }
                if a.table.is_row_schema(&a.column) && b.table.is_row_schema(&b.column) {
                    self.link_schemas(a.id, b.id);
                }
            }
            // NOT IN too: the subquery's rows that matter are the same table's.
            Expr::In {
                expr,
                target: ast::InTarget::Subquery(q),
                ..
            } => {
                let id = column_parts(expr)
                    .and_then(|p| resolve(&self.frames, p))
                    .filter(|r| {
                        r.table
                            .row_table
                            .is_some_and(|t| t.eq_ignore_ascii_case(&r.column))
                    })
                    .map(|r| r.id);
                if let Some(id) = id {
                    self.pending.insert(&**q as *const Query, id);
                }
            }
            _ => {}
        }
    }

    /// The select list's `*`: which column lists it needs, or why it cannot be spelled out.
    fn wildcards(&mut self, s: &Select) {
        let scope = &self.frames[self.frames.len() - 1].scope;
        let views: Vec<&'static str> = scope
            .rels
            .iter()
            .filter_map(|r| match r {
                Rel::View { table, .. } => Some(table.name),
                Rel::Other(_) => None,
            })
            .collect();
        let others = scope.rels.iter().any(|r| matches!(r, Rel::Other(_)));
        let merged = scope.merged;
        let mut need = Vec::new();
        let mut refuse = None;
        for item in &s.projection {
            match item {
                SelectItem::Wildcard(_) if !views.is_empty() => {
                    if others || merged {
                        refuse = Some(
                            "SELECT * over information_schema tables joined with other tables \
                             or by USING / NATURAL (name the columns)"
                                .to_owned(),
                        );
                    }
                    need.extend(views.iter().copied());
                }
                SelectItem::QualifiedWildcard(
                    SelectItemQualifiedWildcardKind::ObjectName(n),
                    _,
                ) => {
                    let mut parts: Vec<Ident> =
                        n.0.iter()
                            .filter_map(|p| match p {
                                ast::ObjectNamePart::Identifier(i) => Some(i.clone()),
                                ast::ObjectNamePart::Function(_) => None,
                            })
                            .collect();
                    parts.push(Ident::new("*"));
                    if let Some(r) = resolve(&self.frames[self.frames.len() - 1..], &parts) {
                        need.push(r.table.name);
                    }
                }
                _ => {}
            }
        }
        self.expand.extend(need);
        if let Some(r) = refuse {
            self.refuse(r);
        }
    }
}

fn collect_joins<'a>(twj: &'a TableWithJoins, out: &mut Vec<(&'a TableFactor, &'a JoinOperator)>) {
    if let TableFactor::NestedJoin {
        table_with_joins, ..
    } = &twj.relation
    {
        collect_joins(table_with_joins, out);
    }
    for j in &twj.joins {
        if let TableFactor::NestedJoin {
            table_with_joins, ..
        } = &j.relation
        {
            collect_joins(table_with_joins, out);
        }
        out.push((&j.relation, &j.join_operator));
    }
}

/// `column = value`, `value = column` or `column IN (values)`: the column's name parts and
/// the values, when every value is one a database column can be compared with.
fn comparison(c: &Expr) -> Option<(&[Ident], Vec<SchemaValue>)> {
    let (column, values): (&Expr, Vec<&Expr>) = match c {
        Expr::BinaryOp {
            left,
            op: BinaryOperator::Eq,
            right,
        } => {
            if column_parts(left).is_some() {
                (left, vec![right])
            } else {
                (right, vec![left])
            }
        }
        Expr::In {
            expr,
            target: ast::InTarget::List(list),
            negated: false,
            ..
        } => (expr, list.iter().collect()),
        _ => return None,
    };
    let values: Option<Vec<SchemaValue>> = values.into_iter().map(schema_value).collect();
    Some((column_parts(column)?, values?))
}

/// A comparison restricting the database of an occurrence in the innermost scope.
fn restriction(frames: &[Frame], c: &Expr) -> Option<(usize, Vec<SchemaValue>)> {
    let (column, values) = comparison(c)?;
    let r = resolve(frames, column)?;
    r.table.is_row_schema(&r.column).then_some((r.id, values))
}

impl Visitor for Analyzer {
    type Break = ();

    fn pre_visit_query(&mut self, q: &Query) -> ControlFlow<()> {
        self.frames.push(Frame::query(q));
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, _: &Query) -> ControlFlow<()> {
        self.frames.pop();
        ControlFlow::Continue(())
    }

    fn pre_visit_select(&mut self, s: &Select) -> ControlFlow<()> {
        let before = self.next_id;
        let scope = scope_of(s, &mut self.next_id);
        let body = self
            .frames
            .last()
            .is_some_and(|f| std::ptr::eq(f.select, s));
        let query = if body {
            self.frames.last().map_or(std::ptr::null(), |f| f.query)
        } else {
            std::ptr::null()
        };
        for rel in &scope.rels {
            if let Rel::View { table, .. } = rel {
                self.tables.push(table.name);
                self.restrictions.push(Vec::new());
                self.parent.push(self.parent.len());
                self.schema_parent.push(self.schema_parent.len());
            }
        }
        debug_assert_eq!(self.tables.len(), self.next_id);
        for &(a, b) in &scope.links {
            if a >= before && b >= before {
                self.link(a, b);
            }
        }
        if body {
            if let Some(f) = self.frames.last_mut() {
                f.scope = scope;
            }
        } else {
            self.frames.push(Frame {
                scope,
                select: s,
                query: std::ptr::null(),
                body_done: false,
                aliases: Vec::new(),
            });
        }
        // The subquery of `t.TABLE_NAME IN (SELECT c.TABLE_NAME …)` links t and c.
        if let Some(&outer) = self.pending.get(&query) {
            if let [SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. }] =
                s.projection.as_slice()
            {
                let inner = column_parts(e)
                    .and_then(|p| resolve(&self.frames, p))
                    .filter(|r| {
                        r.table
                            .row_table
                            .is_some_and(|t| t.eq_ignore_ascii_case(&r.column))
                    })
                    .map(|r| r.id);
                if let Some(inner) = inner {
                    self.link(outer, inner);
                }
            }
        }
        self.conditions(s);
        self.wildcards(s);
        self.unpresented(s);
        ControlFlow::Continue(())
    }

    fn post_visit_select(&mut self, s: &Select) -> ControlFlow<()> {
        let body = self
            .frames
            .last()
            .is_some_and(|f| std::ptr::eq(f.select, s) && !f.query.is_null());
        if !body {
            self.frames.pop();
        }
        ControlFlow::Continue(())
    }
}

impl Analyzer {
    /// Tables the view does not present in a FROM clause, with what its WHERE restricts
    /// their database columns to.
    fn unpresented(&mut self, s: &Select) {
        let mut factors = Vec::new();
        for twj in &s.from {
            collect_factors(twj, &mut factors);
        }
        for f in factors {
            let TableFactor::Table { name, .. } = f else {
                continue;
            };
            let parts = name_parts(name);
            let [db, t] = parts.as_slice() else {
                continue;
            };
            if !db.eq_ignore_ascii_case(INFORMATION_SCHEMA) {
                continue;
            }
            let Some((table, columns)) =
                UNPRESENTED.iter().find(|(n, _)| n.eq_ignore_ascii_case(t))
            else {
                continue;
            };
            let mut restrictions = Vec::new();
            let mut parts = Vec::new();
            if let Some(w) = &s.selection {
                conjuncts(w, &mut parts);
            }
            for c in parts {
                let Some((column, values)) = comparison(c) else {
                    continue;
                };
                let on_database = column
                    .last()
                    .is_some_and(|c| columns.iter().any(|k| k.eq_ignore_ascii_case(&c.value)));
                if on_database {
                    restrictions.push(values);
                }
            }
            self.unpresented.push((table, restrictions));
        }
    }
}

fn collect_factors<'a>(twj: &'a TableWithJoins, out: &mut Vec<&'a TableFactor>) {
    for f in std::iter::once(&twj.relation).chain(twj.joins.iter().map(|j| &j.relation)) {
        match f {
            TableFactor::NestedJoin {
                table_with_joins, ..
            } => collect_factors(table_with_joins, out),
            other => out.push(other),
        }
    }
}

/// Writes one data source's copy of a query ([`Statement::logical_view`]).
struct Writer<'a> {
    frames: Vec<Frame>,
    source: &'a ViewSource<'a>,
    columns: &'a [(String, Vec<String>)],
    error: Option<SqlError>,
}

/// `s` as an SQL string literal.
fn string(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
}

fn list(names: &[String]) -> String {
    names
        .iter()
        .map(|n| string(n))
        .collect::<Vec<_>>()
        .join(", ")
}

pub(crate) fn parser(text: &str) -> Result<Parser<'static>, SqlError> {
    Parser::new(&MySqlDialect {})
        .with_recursion_limit(RECURSION_LIMIT)
        .with_options(ParserOptions::new().with_unescape(false))
        .try_with_sql(text)
        .map_err(|e| SqlError::Render(e.to_string()))
}

fn parse_expr(text: &str) -> Result<Expr, SqlError> {
    parser(text)?
        .parse_expr()
        .map_err(|e| SqlError::Render(e.to_string()))
}

/// A column name as an identifier (quoted only when it must be).
fn column_ident(name: &str) -> Ident {
    match crate::quote_ident(name) {
        std::borrow::Cow::Borrowed(_) => Ident::new(name),
        std::borrow::Cow::Owned(_) => Ident::with_quote('`', name),
    }
}

impl Writer<'_> {
    /// The expression giving a resolved name column's logical value, when it differs.
    fn mapped(&self, r: &Resolved) -> Option<String> {
        let v = self.source;
        let q = &r.alias;
        match r.named? {
            Named::Schema(col) => (v.database != v.schema).then(|| {
                format!(
                    "CASE WHEN {q}.{col} = {} THEN {} ELSE {q}.{col} END",
                    string(v.database),
                    string(v.schema)
                )
            }),
            Named::Table(col, schema_col) => (!v.names.is_empty()).then(|| {
                let whens: Vec<String> = v
                    .names
                    .iter()
                    .map(|(p, l)| format!("WHEN {} THEN {}", string(p), string(l)))
                    .collect();
                format!(
                    "CASE WHEN {q}.{schema_col} = {} THEN CASE {q}.{col} {} ELSE {q}.{col} END \
                     ELSE {q}.{col} END",
                    string(v.database),
                    whens.join(" ")
                )
            }),
        }
    }

    /// Which rows of a table of the view this data source contributes.
    fn restriction(&self, t: &ViewTable) -> String {
        let v = self.source;
        let schema = t.row_schema[0];
        let Some(table) = t.row_table else {
            // SCHEMATA: the logical schema is the default data source's database.
            if v.unnamed_except.is_none() {
                return "FALSE".to_owned();
            }
            let mut dbs = vec![v.database.to_owned()];
            if v.others_except.is_some() {
                dbs.push(INFORMATION_SCHEMA.to_owned());
            }
            return format!("{schema} IN ({})", list(&dbs));
        };
        let mut own = Vec::new();
        if !v.shown.is_empty() {
            own.push(format!("{table} IN ({})", list(v.shown)));
        }
        match v.unnamed_except {
            Some([]) => own.push("TRUE".to_owned()),
            Some(except) => own.push(format!("{table} NOT IN ({})", list(except))),
            None => {}
        }
        let own = match own.as_slice() {
            [] => "FALSE".to_owned(),
            [one] if one == "TRUE" => String::new(),
            [one] => format!(" AND {one}"),
            _ => format!(" AND ({})", own.join(" OR ")),
        };
        let mine = format!("{schema} = {}{own}", string(v.database));
        match v.others_except {
            Some(except) => format!("({mine}) OR {schema} NOT IN ({})", list(except)),
            None => mine,
        }
    }

    /// The select list's `*` over tables of the view, spelled out.
    fn spell_out(&self, s: &mut Select) -> Result<(), SqlError> {
        let Some(frame) = self.frames.last() else {
            return Ok(());
        };
        let scope = &frame.scope;
        let mut items = Vec::with_capacity(s.projection.len());
        for item in std::mem::take(&mut s.projection) {
            let rels: Vec<&Rel> = match &item {
                SelectItem::Wildcard(_) => {
                    let views = scope.rels.iter().filter(|r| matches!(r, Rel::View { .. }));
                    let others = scope.rels.iter().any(|r| matches!(r, Rel::Other(_)));
                    if views.clone().next().is_some() && (others || scope.merged) {
                        return Err(SqlError::Render(
                            "SELECT * over information_schema joined with other tables".into(),
                        ));
                    }
                    views.collect()
                }
                SelectItem::QualifiedWildcard(
                    SelectItemQualifiedWildcardKind::ObjectName(n),
                    _,
                ) => {
                    let mut parts: Vec<Ident> =
                        n.0.iter()
                            .filter_map(|p| match p {
                                ast::ObjectNamePart::Identifier(i) => Some(i.clone()),
                                ast::ObjectNamePart::Function(_) => None,
                            })
                            .collect();
                    parts.push(Ident::new("*"));
                    match resolve(&self.frames[self.frames.len() - 1..], &parts) {
                        Some(r) => scope
                            .rels
                            .iter()
                            .filter(|x| matches!(x, Rel::View { id, .. } if *id == r.id))
                            .collect(),
                        None => Vec::new(),
                    }
                }
                _ => Vec::new(),
            };
            if rels.is_empty() {
                items.push(item);
                continue;
            }
            for rel in rels {
                let Rel::View { table, alias, .. } = rel else {
                    continue;
                };
                let columns = self
                    .columns
                    .iter()
                    .find(|(t, _)| t.eq_ignore_ascii_case(table.name))
                    .ok_or_else(|| {
                        SqlError::Render(format!(
                            "the columns of information_schema.{} are not known",
                            table.name
                        ))
                    })?;
                for c in &columns.1 {
                    let e = Expr::CompoundIdentifier(vec![alias.clone(), column_ident(c)]);
                    items.push(match table.named(c) {
                        Some(_) => SelectItem::ExprWithAlias {
                            expr: e,
                            alias: column_ident(c),
                        },
                        None => SelectItem::UnnamedExpr(e),
                    });
                }
            }
        }
        s.projection = items;
        Ok(())
    }

    /// A select item that is a column of an occurrence keeps its name as written: the server
    /// names a derived table's column as the derived table does, and a name column becomes
    /// an expression.
    fn alias_items(&self, s: &mut Select) {
        let Some(frame) = self.frames.last() else {
            return;
        };
        let rels = &frame.scope.rels;
        // An unqualified column that is not a name column is an occurrence's when nothing
        // else is in the FROM clause.
        let only_views = !rels.is_empty() && rels.iter().all(|r| matches!(r, Rel::View { .. }));
        for item in &mut s.projection {
            let SelectItem::UnnamedExpr(e) = item else {
                continue;
            };
            let Some(parts) = column_parts(e) else {
                continue;
            };
            let Some(last) = parts.last().cloned() else {
                continue;
            };
            let of_occurrence =
                resolve(&self.frames, parts).is_some() || (parts.len() == 1 && only_views);
            if of_occurrence {
                *item = SelectItem::ExprWithAlias {
                    expr: e.clone(),
                    alias: last,
                };
            }
        }
    }

    /// Replaces the occurrences of tables of the view in a FROM clause by the rows this data
    /// source contributes.
    fn replace(&self, twj: &mut TableWithJoins) -> Result<(), SqlError> {
        self.replace_factor(&mut twj.relation)?;
        for j in &mut twj.joins {
            self.replace_factor(&mut j.relation)?;
        }
        Ok(())
    }

    fn replace_factor(&self, f: &mut TableFactor) -> Result<(), SqlError> {
        match f {
            TableFactor::NestedJoin {
                table_with_joins, ..
            } => self.replace(table_with_joins),
            TableFactor::Table { name, alias, .. } => {
                let Some((table, written)) = view_relation(name) else {
                    return Ok(());
                };
                let alias = alias.as_ref().map_or(written, |a| a.name.clone());
                let text = format!(
                    "SELECT * FROM {INFORMATION_SCHEMA}.{} WHERE {}",
                    table.name,
                    self.restriction(table)
                );
                let subquery = parser(&text)?
                    .parse_query()
                    .map_err(|e| SqlError::Render(e.to_string()))?;
                *f = derived_table(subquery, alias);
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn fail(&mut self, e: SqlError) -> ControlFlow<()> {
        self.error = Some(e);
        ControlFlow::Break(())
    }
}

impl VisitorMut for Writer<'_> {
    type Break = ();

    fn pre_visit_query(&mut self, q: &mut Query) -> ControlFlow<()> {
        self.frames.push(Frame::query(q));
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, _: &mut Query) -> ControlFlow<()> {
        self.frames.pop();
        ControlFlow::Continue(())
    }

    fn pre_visit_select(&mut self, s: &mut Select) -> ControlFlow<()> {
        let scope = scope_of(s, &mut 0);
        let ptr: *const Select = s;
        match self.frames.last_mut() {
            Some(f) if std::ptr::eq(f.select, ptr) => f.scope = scope,
            _ => self.frames.push(Frame {
                scope,
                select: ptr,
                query: std::ptr::null(),
                body_done: false,
                aliases: Vec::new(),
            }),
        }
        self.alias_items(s);
        if let Err(e) = self.spell_out(s) {
            return self.fail(e);
        }
        ControlFlow::Continue(())
    }

    fn post_visit_select(&mut self, s: &mut Select) -> ControlFlow<()> {
        for twj in &mut s.from {
            if let Err(e) = self.replace(twj) {
                return self.fail(e);
            }
        }
        let ptr: *const Select = s;
        match self.frames.last_mut() {
            Some(f) if std::ptr::eq(f.select, ptr) && !f.query.is_null() => {
                f.body_done = true;
                f.aliases = s
                    .projection
                    .iter()
                    .filter_map(|i| match i {
                        SelectItem::ExprWithAlias { alias, .. } => {
                            Some(alias.value.to_ascii_lowercase())
                        }
                        _ => None,
                    })
                    .collect();
            }
            _ => {
                self.frames.pop();
            }
        }
        ControlFlow::Continue(())
    }

    fn post_visit_expr(&mut self, e: &mut Expr) -> ControlFlow<()> {
        let Some(parts) = column_parts(e) else {
            return ControlFlow::Continue(());
        };
        // ORDER BY a name of the select list means that item (MySQL looks there first).
        if let (Some(f), [one]) = (self.frames.last(), parts) {
            if f.body_done && f.aliases.contains(&one.value.to_ascii_lowercase()) {
                return ControlFlow::Continue(());
            }
        }
        let Some(r) = resolve(&self.frames, parts) else {
            return ControlFlow::Continue(());
        };
        match self.mapped(&r) {
            Some(text) => match parse_expr(&text) {
                Ok(mapped) => *e = Expr::Nested(Box::new(mapped)),
                Err(err) => return self.fail(err),
            },
            // The occurrence is now a derived table: qualify with its alias.
            None if parts.len() > 1 => {
                let column = parts[parts.len() - 1].clone();
                *e = Expr::CompoundIdentifier(vec![r.alias, column]);
            }
            None => {}
        }
        ControlFlow::Continue(())
    }
}

/// `(subquery) AS alias` in place of a table: the logical views and the proxy's process list
/// replace a system table so.
pub(crate) fn derived_table(subquery: Box<ast::Query>, alias: ast::Ident) -> TableFactor {
    TableFactor::Derived {
        lateral: false,
        subquery,
        alias: Some(ast::TableAlias {
            explicit: true,
            name: alias,
            columns: Vec::new(),
            at: None,
        }),
        sample: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::parse;

    fn analysis(sql: &str) -> ViewAnalysis {
        parse(sql).unwrap().remove(0).view_analysis()
    }

    fn lit(s: &str) -> SchemaValue {
        SchemaValue::Literal(s.to_owned())
    }

    #[test]
    fn finds_tables_restrictions_and_wildcards() {
        let a = analysis(
            "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'bank' \
             AND TABLE_TYPE = 'BASE TABLE'",
        );
        assert_eq!(a.tables, vec!["TABLES"]);
        assert_eq!(a.restrictions, vec![vec![vec![lit("bank")]]]);
        assert!(a.linked && a.expand.is_empty() && a.refused.is_none());

        let a = analysis(
            "SELECT * FROM information_schema.columns c \
             WHERE c.table_schema = DATABASE() AND c.TABLE_NAME = 'payment' ORDER BY 1",
        );
        assert_eq!(a.tables, vec!["COLUMNS"]);
        assert_eq!(a.restrictions, vec![vec![vec![SchemaValue::Database]]]);
        assert_eq!(a.expand, vec!["COLUMNS"]);

        // Unrestricted: LIKE, OR, and a column compared with a column restrict nothing.
        let a = analysis(
            "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE 'b%' \
             OR SCHEMA_NAME = 'x'",
        );
        assert_eq!(a.restrictions, vec![Vec::<Vec<SchemaValue>>::new()]);
        let a = analysis(
            "SELECT 1 FROM information_schema.STATISTICS WHERE INDEX_SCHEMA IN ('a', 'b')",
        );
        assert_eq!(a.restrictions, vec![vec![vec![lit("a"), lit("b")]]]);

        // Nothing of the view.
        let a = analysis("SELECT * FROM information_schema.PROCESSLIST WHERE DB = 'bank'");
        assert_eq!(
            a,
            ViewAnalysis {
                linked: true,
                schema_linked: true,
                ..ViewAnalysis::default()
            }
        );
        assert_eq!(system_table("processlist"), SystemTable::Other);
        assert_eq!(
            system_table("key_column_usage"),
            SystemTable::View("KEY_COLUMN_USAGE")
        );
        assert_eq!(
            system_table("Routines"),
            SystemTable::Unpresented("ROUTINES")
        );
        assert_eq!(
            unqualified_system_tables("SELECT * FROM tables t JOIN information_schema.COLUMNS c"),
            vec!["TABLES"]
        );
        assert!(unqualified_system_tables("SHOW TABLES").is_empty());
        assert!(unqualified_system_tables("SELECT * FROM processlist").is_empty());
    }

    #[test]
    fn links_rows_of_the_same_table_only() {
        let linked = |sql: &str| analysis(sql).linked;
        let a = analysis(
            "SELECT c.COLUMN_NAME FROM information_schema.TABLES t \
             JOIN information_schema.COLUMNS c ON c.TABLE_SCHEMA = t.TABLE_SCHEMA \
             AND c.TABLE_NAME = t.TABLE_NAME",
        );
        assert!(a.linked && a.schema_linked);
        // Equal table names of different databases describe different tables.
        let a = analysis(
            "SELECT c.COLUMN_NAME FROM information_schema.TABLES t \
             JOIN information_schema.COLUMNS c ON c.TABLE_NAME = t.TABLE_NAME",
        );
        assert!(a.linked && !a.schema_linked);
        assert!(linked(
            "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_NAME IN \
             (SELECT c.TABLE_NAME FROM information_schema.COLUMNS c WHERE c.COLUMN_NAME = 'uid')"
        ));
        assert!(linked(
            "SELECT t.TABLE_NAME FROM information_schema.TABLES t WHERE NOT EXISTS \
             (SELECT 1 FROM information_schema.STATISTICS s WHERE s.TABLE_NAME = t.TABLE_NAME)"
        ));
        assert!(linked(
            "SELECT * FROM information_schema.TABLES NATURAL JOIN information_schema.PARTITIONS"
        ));
        // Django's get_constraints joins on the constraint name: PRIMARY is every table's.
        assert!(!linked(
            "SELECT kc.constraint_name, c.constraint_type \
             FROM information_schema.key_column_usage AS kc, \
             information_schema.table_constraints AS c \
             WHERE kc.table_schema = DATABASE() AND c.table_schema = kc.table_schema \
             AND c.constraint_name = kc.constraint_name AND kc.table_name = 'payment'"
        ));
        assert!(!linked(
            "SELECT k.TABLE_NAME FROM information_schema.KEY_COLUMN_USAGE k \
             JOIN information_schema.TABLES t ON t.TABLE_NAME = k.REFERENCED_TABLE_NAME"
        ));
        assert!(!linked(
            "SELECT s.SCHEMA_NAME FROM information_schema.SCHEMATA s \
             JOIN information_schema.TABLES t ON t.TABLE_SCHEMA = s.SCHEMA_NAME"
        ));
        assert!(!linked(
            "SELECT TABLE_NAME FROM information_schema.TABLES \
             WHERE TABLE_ROWS > (SELECT AVG(TABLE_ROWS) FROM information_schema.TABLES)"
        ));
    }

    #[test]
    fn notes_unpresented_tables_and_refusals() {
        let a = analysis(
            "SELECT ROUTINE_NAME FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = 'mysql'",
        );
        assert_eq!(a.unpresented, vec![("ROUTINES", vec![vec![lit("mysql")]])]);
        assert!(a.tables.is_empty());
        let a = analysis("SELECT * FROM information_schema.VIEWS");
        assert_eq!(a.unpresented, vec![("VIEWS", Vec::new())]);
        let a = analysis(
            "SELECT * FROM information_schema.TABLES t JOIN information_schema.ENGINES e \
             ON e.ENGINE = t.ENGINE",
        );
        assert!(a.refused.is_some());
        let a = analysis(
            "SELECT t.* FROM information_schema.TABLES t JOIN information_schema.ENGINES e \
             ON e.ENGINE = t.ENGINE",
        );
        assert!(a.refused.is_none());
        assert_eq!(a.expand, vec!["TABLES"]);
    }

    fn source<'a>(
        database: &'a str,
        shown: &'a [String],
        unnamed_except: Option<&'a [String]>,
        names: &'a [(String, String)],
        others_except: Option<&'a [String]>,
    ) -> ViewSource<'a> {
        ViewSource {
            schema: "bank",
            database,
            shown,
            unnamed_except,
            names,
            others_except,
        }
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn view(sql: &str, v: &ViewSource<'_>) -> String {
        let columns = vec![(
            "TABLES".to_owned(),
            strings(&["TABLE_CATALOG", "TABLE_SCHEMA", "TABLE_NAME", "TABLE_ROWS"]),
        )];
        let s = parse(sql).unwrap().remove(0);
        let out = s.logical_view(v, &columns).unwrap().to_string();
        // What the backend gets parses again.
        parse(&out).unwrap();
        out
    }

    #[test]
    fn writes_a_shard_data_source_copy() {
        let shown = strings(&["payment_0"]);
        let names = vec![
            ("payment_0".to_owned(), "payment".to_owned()),
            ("payment_1".to_owned(), "payment".to_owned()),
        ];
        let v = source("bank_0", &shown, None, &names, None);
        let table = "(CASE WHEN TABLES.TABLE_SCHEMA = 'bank_0' THEN CASE TABLES.TABLE_NAME \
                     WHEN 'payment_0' THEN 'payment' WHEN 'payment_1' THEN 'payment' \
                     ELSE TABLES.TABLE_NAME END ELSE TABLES.TABLE_NAME END)";
        let schema = "(CASE WHEN TABLES.TABLE_SCHEMA = 'bank_0' THEN 'bank' \
                      ELSE TABLES.TABLE_SCHEMA END)";
        let rows = "(SELECT * FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'bank_0' \
                    AND TABLE_NAME IN ('payment_0')) AS TABLES";
        assert_eq!(
            view(
                "SELECT TABLE_NAME, TABLE_ROWS FROM information_schema.TABLES \
                 WHERE TABLE_SCHEMA = 'bank' ORDER BY TABLE_NAME",
                &v
            ),
            format!(
                "SELECT {table} AS TABLE_NAME, TABLE_ROWS AS TABLE_ROWS FROM {rows} \
                 WHERE {schema} = 'bank' ORDER BY TABLE_NAME"
            )
        );
        // `*` is spelled out; a qualifier is the derived table's alias.
        let t_table = table.replace("TABLES.", "t.");
        let t_schema = schema.replace("TABLES.", "t.");
        let t_rows = rows.replace("AS TABLES", "AS t");
        assert_eq!(
            view(
                "SELECT * FROM information_schema.tables t WHERE t.table_name = 'payment' \
                 ORDER BY information_schema.tables.table_rows",
                &v
            )
            .replace("information_schema.tables.table_rows", "?"),
            format!(
                "SELECT t.TABLE_CATALOG, {t_schema} AS TABLE_SCHEMA, {t_table} AS TABLE_NAME, \
                 t.TABLE_ROWS FROM {t_rows} WHERE {t_table} = 'payment' ORDER BY ?"
            )
        );
    }

    #[test]
    fn writes_the_default_data_source_copy() {
        let shown = strings(&["branch"]);
        let except = strings(&["branch", "payment", "currency"]);
        let others = strings(&["bank", "bank_0"]);
        // The default database is named like the logical schema: names stay as they are.
        let v = source("bank", &shown, Some(&except), &[], Some(&others));
        assert_eq!(
            view("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA", &v),
            "SELECT SCHEMA_NAME AS SCHEMA_NAME FROM (SELECT * FROM information_schema.SCHEMATA \
             WHERE SCHEMA_NAME IN ('bank', 'information_schema')) AS SCHEMATA"
        );
        assert_eq!(
            view(
                "SELECT k.COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE k \
                 WHERE k.TABLE_SCHEMA = 'bank'",
                &v
            ),
            "SELECT k.COLUMN_NAME AS COLUMN_NAME FROM (SELECT * FROM \
             information_schema.KEY_COLUMN_USAGE \
             WHERE (TABLE_SCHEMA = 'bank' AND (TABLE_NAME IN ('branch') OR TABLE_NAME NOT IN \
             ('branch', 'payment', 'currency'))) OR TABLE_SCHEMA NOT IN ('bank', 'bank_0')) AS k \
             WHERE k.TABLE_SCHEMA = 'bank'"
        );
        // Without other databases, and no table shown by name.
        let v = source("bank_main", &[], Some(&except), &[], None);
        assert_eq!(
            view("SELECT TABLE_SCHEMA FROM information_schema.COLUMNS", &v),
            "SELECT (CASE WHEN COLUMNS.TABLE_SCHEMA = 'bank_main' THEN 'bank' \
             ELSE COLUMNS.TABLE_SCHEMA END) AS TABLE_SCHEMA FROM (SELECT * FROM \
             information_schema.COLUMNS WHERE TABLE_SCHEMA = 'bank_main' AND TABLE_NAME NOT IN \
             ('branch', 'payment', 'currency')) AS COLUMNS"
        );
    }

    #[test]
    fn resolves_columns_by_scope() {
        let shown = strings(&["payment_0"]);
        let names = vec![("payment_0".to_owned(), "payment".to_owned())];
        let v = source("bank", &shown, None, &names, None);
        let out = view(
            "SELECT ENGINE AS TABLE_NAME, d.TABLE_NAME FROM information_schema.TABLES t, \
             (SELECT TABLE_NAME FROM information_schema.COLUMNS) d \
             WHERE EXISTS (SELECT 1 FROM information_schema.STATISTICS s \
             WHERE s.TABLE_NAME = t.TABLE_NAME) ORDER BY TABLE_NAME",
            &v,
        );
        // d.TABLE_NAME is already logical; s's and t's are mapped; ORDER BY the alias stays.
        assert!(
            out.starts_with("SELECT ENGINE AS TABLE_NAME, d.TABLE_NAME FROM"),
            "{out}"
        );
        assert!(out.contains("CASE s.TABLE_NAME WHEN 'payment_0'"), "{out}");
        assert!(out.contains("CASE t.TABLE_NAME WHEN 'payment_0'"), "{out}");
        assert!(out.contains("CASE COLUMNS.TABLE_NAME WHEN"), "{out}");
        assert!(out.ends_with("ORDER BY TABLE_NAME"), "{out}");
    }
}
