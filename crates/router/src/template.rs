//! Plan templates: what the router keeps per fingerprint, built on a cache miss.
//!
//! [`build`] parses a statement, binds its literals to fingerprint slots,
//! analyses it against the rules and returns a [`Template`]: either
//! "pass through unchanged to the default data source", a session command,
//! a fixed plan, or a [`Routed`] template — the rendered statement with table
//! and literal slots, each table's placement rule, and the sharding-key
//! conditions by slot. Nothing in a template depends on literal values, so
//! [`crate::instantiate`] can derive the plan of any statement with the same
//! fingerprint from it without parsing. Checks that depend only on the
//! statement's shape (no WHERE on a sharded UPDATE, a missing sharding
//! column, …) fail here; checks that depend on values fail when instantiating.

use rules::Rules;
use sql::{
    Analysis, Cond, DdlOp, Fingerprint, InsertKey, KeyOracle, KeyValue, Kind, Naming, Rendered,
    Session, Show, Statement,
};

use crate::columns::{self, KnownColumns, UsedColumns};
use crate::error::RouteError;
use crate::logical_view::{self, ViewTemplate};
use crate::merged_select::{merge_template, MergeTemplate, Slots};
use crate::placement::{default_db_is_schema, is_rule_table, place_of, Place};
use crate::plan::{Combine, Plan, SessionStatement, StatementKind, Target};
use crate::sequence_ids::{self, FillSpec};
use crate::RouterOptions;

/// What the router caches per fingerprint.
#[derive(Debug)]
pub(crate) enum Template {
    /// To the default data source, the statement text unchanged.
    PassThrough(StatementKind),
    /// `SET …`: the frontend handles it, with the statement's own text.
    Set,
    /// A plan that does not depend on the text (session commands, CREATE DATABASE).
    Fixed(Plan),
    /// Routed by the rules.
    Routed(Box<Routed>),
    /// A query on `information_schema`, answered with logical names.
    LogicalView(Box<ViewTemplate>),
}

/// Reads run on the fewest targets; writes on every copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Read,
    Write,
    Ddl,
}

/// A class of sharded-table occurrences with its key condition.
#[derive(Debug, Clone)]
pub(crate) struct Class {
    /// Table indexes; the first is the leader whose node indexes are used.
    pub tables: Vec<usize>,
    pub cond: Cond,
    /// The rows of an INSERT … SELECT whose key is a literal: every value
    /// must route exactly (no fallback to every shard).
    pub strict: bool,
}

/// A statement routed by the rules.
#[derive(Debug)]
pub(crate) struct Routed {
    pub kind: StatementKind,
    pub mode: Mode,
    /// Per table of the analysis.
    pub places: Vec<Place>,
    /// Logical names, for messages and renames.
    pub names: Vec<String>,
    pub classes: Vec<Class>,
    pub rendered: Rendered,
    /// The first construct that cannot be merged when the statement spans shards.
    pub merge_need: Option<String>,
    /// For a SELECT whose top level needs a merge when it spans shards: what
    /// shards run and how results merge, or the construct that cannot be merged.
    pub merge: Option<Result<MergeTemplate, String>>,
    /// A top-level UNION: its branches, each routed on its own, for when the whole does
    /// not run on one data source; or the construct that keeps it from being split.
    pub union: Option<Result<UnionTemplate, String>>,
    /// See [`sql::Analysis::rows_not_sharded`].
    pub rows_not_sharded: bool,
    pub explain: bool,
    /// Tables changed.
    pub written: Vec<usize>,
    /// Assignments of sharding columns: (table, slot of the new value).
    pub key_updates: Vec<(usize, usize)>,
    /// For an UPDATE of a sharding column: how rows move to the new value's shard, or
    /// the construct that prevents it.
    pub row_move: Option<Result<MoveTemplate, String>>,
    /// A sharded INSERT … VALUES, split by row.
    pub insert_rows: Option<InsertRows>,
    /// An INSERT into a table whose column a sequence fills.
    pub fill: Option<FillSpec>,
    /// SHOW of one table: its index.
    pub show_table: Option<usize>,
    /// SHOW TABLES of the logical schema.
    pub show_tables: bool,
    /// The column lists the statement was routed with (an INSERT without a column list).
    pub columns: UsedColumns,
}

/// A row move ([`crate::RowMove`]) of an UPDATE, rendered like the statement.
#[derive(Debug)]
pub(crate) struct MoveTemplate {
    pub select: Rendered,
    pub delete: Rendered,
    /// The assignments: column and value.
    pub set: Vec<(String, Vec<sql::Seg>)>,
}

/// A top-level `UNION`, `INTERSECT` or `EXCEPT` whose branches are routed one by one
/// ([`crate::instantiate`]'s `union` module runs, on each data source, the union of the
/// branches' parts there, and the proxy merges the data sources' results).
#[derive(Debug)]
pub(crate) struct UnionTemplate {
    /// Each branch as a statement of its own (tagged with its index for INTERSECT and
    /// EXCEPT, see [`sql::SetOp::TAG`]).
    pub branches: Vec<Routed>,
    /// INTERSECT and EXCEPT: the branches as written, for COM_STMT_PREPARE.
    pub untagged: Option<Vec<Routed>>,
    /// The operator joining the branches where one server combines them (`UNION ALL`, …).
    pub keyword: String,
    /// The order, DISTINCT or set operation of the whole.
    pub shape: sql::MergeShape,
    /// LIMIT and OFFSET of the whole.
    pub limit: Option<sql::LimitOperands>,
    /// Literal texts read as column positions, which the shape depends on.
    pub positions: Vec<(usize, String)>,
}

/// The rows of a sharded INSERT … VALUES, each routed by its key.
#[derive(Debug)]
pub(crate) struct InsertRows {
    /// The table inserted into.
    pub table: usize,
    /// Each row's key slot (`None` for a row whose key the sequence filling
    /// it always generates).
    pub key_slots: Vec<Option<usize>>,
}

impl Template {
    /// Whether this template, built from another statement with the same
    /// fingerprint, applies to `sql`: a merge shape read column positions
    /// (`ORDER BY 2`) from literals, which must be the same.
    pub(crate) fn fits(&self, sql: &str, fp: &Fingerprint) -> bool {
        let merge = match self {
            Template::Routed(rt) => rt.merge.as_ref().and_then(|m| m.as_ref().ok()),
            Template::LogicalView(v) => v.merge(),
            _ => None,
        };
        let union = match self {
            Template::Routed(rt) => rt.union.as_ref().and_then(|u| u.as_ref().ok()),
            _ => None,
        };
        let same = |positions: &[(usize, String)]| {
            positions.iter().all(|(slot, text)| {
                fp.literals.get(*slot).map(|l| l.text(sql)) == Some(text.as_str())
            })
        };
        merge.is_none_or(|m| same(&m.positions)) && union.is_none_or(|u| same(&u.positions))
    }

    /// Whether each execution must be routed with its own values: a sequence may fill ids
    /// into the statement, or it updates a sharding column (its rows may move).
    pub(crate) fn per_execution(&self) -> bool {
        matches!(self, Template::Routed(rt) if rt.fill.is_some() || !rt.key_updates.is_empty())
    }

    /// The column lists the template was built with.
    pub(crate) fn columns(&self) -> &[columns::Columns] {
        match self {
            Template::Routed(rt) => &rt.columns,
            Template::LogicalView(v) => v.columns(),
            _ => &[],
        }
    }
}

/// Answers [`KeyOracle`] questions from the rules.
pub(crate) struct Oracle<'a>(pub &'a Rules);

impl KeyOracle for Oracle<'_> {
    fn sharding_column(&self, table: &str) -> Option<&str> {
        self.0.sharded(table).map(|s| s.column())
    }

    fn are_bound(&self, a: &str, b: &str) -> bool {
        self.0.are_bound(a, b)
    }
}

/// Builds the template of `sql` (whose fingerprint is `fp`). Returns it with
/// whether it may be cached (every literal bound to a slot, or the template
/// does not use literals).
pub(crate) fn build(
    rules: &Rules,
    options: &RouterOptions,
    known: &KnownColumns,
    sql: &str,
    fp: &Fingerprint,
) -> Result<(Template, bool), RouteError> {
    let mut statements = match sql::parse(sql) {
        Ok(s) => s,
        Err(e) => return unparsed(rules, sql, e),
    };
    let mut stmt = match statements.len() {
        0 => return Err(RouteError::Empty),
        1 => statements.remove(0),
        n => {
            return Err(RouteError::NotSupported(format!(
                "{n} statements in one query; route them one by one"
            )))
        }
    };
    let complete = stmt.bind_slots(sql, fp);
    let analyze = |stmt: &Statement| {
        stmt.analyze(&rules.schema.name, &Oracle(rules))
            .map_err(|e| RouteError::Parse(e.to_string()))
    };
    let mut analysis = analyze(&stmt)?;
    let mut used = Vec::new();
    if let Some((written, list)) = columns::with_insert_columns(rules, known, &stmt, &analysis)? {
        stmt = written;
        analysis = analyze(&stmt)?;
        used.push(list);
    }
    let slots = Slots::new(sql, fp);
    if let Some(view) = logical_view::template(rules, known, &stmt, &analysis, &slots)? {
        return Ok((Template::LogicalView(Box::new(view)), complete));
    }
    let mut template = plan_template(rules, options, &stmt, &analysis, &slots, false)?;
    if let Template::Routed(rt) = &mut template {
        rt.columns = used;
    }
    // A merge that failed may have failed on a literal's value (`ORDER BY 3` of two columns);
    // another statement of the fingerprint must be read afresh, not refused with its error.
    let cacheable = match &template {
        Template::Routed(rt) => {
            complete && !matches!(rt.merge, Some(Err(_))) && !matches!(rt.union, Some(Err(_)))
        }
        _ => true,
    };
    Ok((template, cacheable))
}

/// A statement the parser rejects: harmless on the default data source
/// unless it may name a table of the rules (or the logical schema, when the
/// default data source's database has another name).
fn unparsed(rules: &Rules, sql: &str, err: sql::SqlError) -> Result<(Template, bool), RouteError> {
    // `SET CHARACTER SET x` and `SET CHARSET x`, which sqlparser lacks, are session settings
    // like any SET: every connection of the session must carry them.
    if sql::client_charset(sql).is_some() {
        return Ok((Template::Set, true));
    }
    // Not cached: another statement of the fingerprint may parse (`LIMIT 1` does not,
    // `LIMIT -1` reads as an expression) and must get its own plan.
    if rules.tables.is_empty() && default_db_is_schema(rules) && !has_fill_tables(rules) {
        return Ok((Template::PassThrough(StatementKind::Other), false));
    }
    let words = sql::identifiers(sql);
    let first = words.first().map(|w| w.to_ascii_uppercase());
    // SHOW TABLE STATUS with a filter sqlparser cannot read (`WHERE Engine = 'InnoDB'`):
    // still a SHOW, which the session answers through the logical view, whatever it names.
    let leading: Vec<String> = words
        .iter()
        .take(3)
        .map(|w| w.to_ascii_uppercase())
        .collect();
    if leading == ["SHOW", "TABLE", "STATUS"] {
        return Ok((Template::PassThrough(StatementKind::Show), false));
    }
    // A table a sequence fills must not get rows past the filling either.
    let names_rule_table = words.iter().any(|w| {
        is_rule_table(rules, w)
            || rules.sequence_for_table(w).is_some()
            || (!default_db_is_schema(rules) && w.eq_ignore_ascii_case(&rules.schema.name))
    });
    if names_rule_table {
        return Err(RouteError::Parse(err.to_string()));
    }
    if !rules.tables.is_empty()
        && matches!(first.as_deref(), Some("PREPARE" | "EXECUTE" | "DEALLOCATE"))
    {
        return Err(RouteError::NotSupported(
            "SQL-level PREPARE/EXECUTE (use the binary protocol's prepared statements)".into(),
        ));
    }
    Ok((Template::PassThrough(StatementKind::Other), false))
}

/// Whether a sequence fills a column of some table.
fn has_fill_tables(rules: &Rules) -> bool {
    rules.sequences.values().any(|s| s.fills.is_some())
}

fn not_supported(what: impl Into<String>) -> RouteError {
    RouteError::NotSupported(what.into())
}

/// What the rules say of a parsed statement: passed through, a session
/// command, a fixed plan, or routed (placing its tables on nodes).
fn plan_template(
    rules: &Rules,
    options: &RouterOptions,
    stmt: &Statement,
    a: &Analysis,
    slots: &Slots<'_>,
    branch: bool,
) -> Result<Template, RouteError> {
    let places: Vec<Place> = a.tables.iter().map(|t| place_of(rules, t)).collect();
    let names: Vec<String> = a.tables.iter().map(|t| t.name.clone()).collect();
    let fill = sequence_ids::spec(rules, stmt, a)?;
    let facts = Facts {
        any_rule_table: places.iter().any(|p| *p != Place::Default),
        needs_db_rewrite: (a.schema_qualified || a.database_fn) && !default_db_is_schema(rules),
        fills: fill.is_some(),
    };
    if let Some(cte) = a.ctes.iter().find(|c| is_rule_table(rules, c)) {
        return Err(not_supported(format!(
            "a common table expression named like the table {cte} of the rules"
        )));
    }
    let kind = match by_kind(rules, stmt, a, &names, &facts)? {
        ByKind::Unrouted(template) => return Ok(template),
        ByKind::Routed(kind) => kind,
    };
    // SHOW TABLES names no table but lists those of the rules.
    let show_tables = matches!(a.kind, Kind::Show(Show::Tables { .. }));
    // A UNION's branch is placed with the others, even one naming no table of the rules.
    if facts.pass_through() && !show_tables && !branch {
        return Ok(Template::PassThrough(kind));
    }
    if a.select_into {
        return Err(not_supported("SELECT … INTO on tables of the rules"));
    }
    let mut classes: Vec<Class> = a
        .classes
        .iter()
        .map(|c| Class {
            tables: c.tables.clone(),
            cond: c.cond.clone(),
            strict: false,
        })
        .collect();
    let mut key_updates = Vec::new();
    let mut insert_rows = None;
    match &a.kind {
        Kind::Ddl(op) => check_ddl(*op, a, &names, &places, facts.any_rule_table)?,
        Kind::Insert(ins) => {
            if matches!(places[ins.table], Place::Sharded(_)) {
                insert_rows = sharded_insert(rules, ins, &names, fill.as_ref(), &mut classes)?;
            }
            // ON DUPLICATE KEY UPDATE may only leave the sharding column as it is.
            if let Some((table, _)) = a
                .key_updates
                .iter()
                .find(|(_, value)| *value != KeyValue::Unchanged)
            {
                return Err(key_update_error(rules, &names[*table]));
            }
        }
        Kind::Update | Kind::Delete => {
            key_updates = checked_write(rules, options, a, &names, &places)?;
        }
        _ => {}
    }
    let mode = mode(a);
    if mode != Mode::Read && !classes.is_empty() {
        check_broadcast_writes(a, &names, &places)?;
    }

    let naming: Vec<Naming> = places
        .iter()
        .map(|p| match p {
            Place::Default => Naming::Keep,
            _ => Naming::Physical,
        })
        .collect();
    let database = a.database_fn.then_some(rules.schema.name.as_str());
    // Rows are rendered one by one when they may go to different shards or get ids.
    let rendered = fill
        .as_ref()
        .map(|f| stmt.with_generated(&f.column))
        .as_ref()
        .unwrap_or(stmt)
        .render(
            a,
            &rules.schema.name,
            &naming,
            database,
            insert_rows.is_some() || fill.is_some(),
        )
        .map_err(|e| not_supported(e.to_string()))?;
    let merge = (mode == Mode::Read && !a.top_merge_needs.is_empty() && !a.explain)
        .then(|| merge_template(stmt, a, &rules.schema.name, &naming, database, slots));
    let row_move = (kind == StatementKind::Update && !key_updates.is_empty()).then(|| {
        let m = stmt.row_move()?;
        let render = |s: &Statement| {
            s.render(a, &rules.schema.name, &naming, database, false)
                .map_err(|e| e.to_string())
        };
        Ok(MoveTemplate {
            select: render(&m.select)?,
            delete: render(&m.delete)?,
            set: m.set,
        })
    });
    let union = (mode == Mode::Read && !a.explain && !branch)
        .then(|| union_template(rules, options, stmt, slots))
        .flatten();
    Ok(Template::Routed(Box::new(Routed {
        merge,
        union,
        rows_not_sharded: a.rows_not_sharded,
        kind,
        mode,
        places,
        names,
        classes,
        rendered,
        merge_need: a.merge_needs.first().cloned(),
        explain: a.explain,
        written: a.written.clone(),
        key_updates,
        row_move,
        insert_rows,
        fill,
        show_table: match a.kind {
            Kind::Show(Show::Table(t)) => Some(t),
            _ => None,
        },
        show_tables,
        columns: Vec::new(),
    })))
}

/// The branches of a top-level UNION, each routed on its own; `None` for any other statement.
fn union_template(
    rules: &Rules,
    options: &RouterOptions,
    stmt: &Statement,
    slots: &Slots<'_>,
) -> Option<Result<UnionTemplate, String>> {
    let split = stmt.union_split(&|slot| slots.integer(slot))?;
    let routed = |branches: &[Statement]| {
        branches
            .iter()
            .map(|b| {
                let a = b
                    .analyze(&rules.schema.name, &Oracle(rules))
                    .map_err(|e| e.to_string())?;
                match plan_template(rules, options, b, &a, slots, true) {
                    Ok(Template::Routed(rt)) => Ok(*rt),
                    Ok(_) => Err("a UNION branch that is not a plain SELECT".to_string()),
                    Err(RouteError::NotSupported(what)) => Err(what),
                    Err(e) => Err(e.to_string()),
                }
            })
            .collect::<Result<Vec<_>, String>>()
    };
    Some(split.and_then(|split| {
        Ok(UnionTemplate {
            branches: routed(&split.branches)?,
            untagged: split.untagged.as_deref().map(routed).transpose()?,
            keyword: split.keyword,
            shape: split.shape,
            limit: split.limit,
            positions: slots.texts(&split.position_slots),
        })
    }))
}

/// What decides, before its tables are placed, whether a statement is routed.
struct Facts {
    /// It names a table of the rules.
    any_rule_table: bool,
    /// It names the logical schema (or calls `DATABASE()`), which the default
    /// data source's database does not carry.
    needs_db_rewrite: bool,
    /// A sequence fills ids into it.
    fills: bool,
}

impl Facts {
    /// Nothing in the statement needs the rules: it runs unchanged on the default data source.
    fn pass_through(&self) -> bool {
        !self.any_rule_table && !self.needs_db_rewrite && !self.fills
    }
}

/// What a statement's kind says of its routing.
enum ByKind {
    /// Not routed by its tables: session commands, SQL-level PREPARE, statements
    /// the router does not know, DDL of databases, SHOW of the default data
    /// source's objects.
    Unrouted(Template),
    /// Routed by the rules, as a statement of this kind.
    Routed(StatementKind),
}

fn by_kind(
    rules: &Rules,
    stmt: &Statement,
    a: &Analysis,
    names: &[String],
    facts: &Facts,
) -> Result<ByKind, RouteError> {
    let unrouted = |t: Template| Ok(ByKind::Unrouted(t));
    let kind = match &a.kind {
        Kind::Session(s) => return unrouted(session_template(s, facts.any_rule_table)?),
        Kind::SqlPrepare => {
            if rules.tables.is_empty() {
                return unrouted(Template::PassThrough(StatementKind::Other));
            }
            return Err(not_supported(
                "SQL-level PREPARE/EXECUTE (use the binary protocol's prepared statements)",
            ));
        }
        Kind::Other(words) => {
            let text = stmt.to_string();
            let named = sql::identifiers(&text)
                .into_iter()
                .chain(names.iter().cloned())
                .find(|w| is_rule_table(rules, w));
            return match named {
                Some(t) => Err(not_supported(format!("{words} on table {t}"))),
                None if facts.needs_db_rewrite => Err(not_supported(format!(
                    "{words} naming the logical schema {}",
                    rules.schema.name
                ))),
                None => unrouted(Template::PassThrough(StatementKind::Other)),
            };
        }
        Kind::CreateDatabase {
            name,
            if_not_exists,
        } => {
            if !name.eq_ignore_ascii_case(&rules.schema.name) {
                return unrouted(Template::PassThrough(StatementKind::Ddl));
            }
            return unrouted(Template::Fixed(create_databases(rules, *if_not_exists)));
        }
        Kind::DropDatabase { name } => {
            if !name.eq_ignore_ascii_case(&rules.schema.name) {
                return unrouted(Template::PassThrough(StatementKind::Ddl));
            }
            return Err(not_supported(format!(
                "DROP DATABASE of the logical schema {name}; drop the shard databases directly"
            )));
        }
        Kind::Show(Show::Other) => return unrouted(Template::PassThrough(StatementKind::Show)),
        Kind::Show(Show::Tables { schema }) => {
            let logical = schema
                .as_ref()
                .is_none_or(|s| s.eq_ignore_ascii_case(&rules.schema.name));
            if !logical || (rules.tables.is_empty() && !needs_db_rewrite_show(rules, schema)) {
                return unrouted(Template::PassThrough(StatementKind::Show));
            }
            StatementKind::Show
        }
        Kind::Show(Show::Table(_)) => {
            if facts.pass_through() {
                return unrouted(Template::PassThrough(StatementKind::Show));
            }
            StatementKind::Show
        }
        Kind::Query => StatementKind::Select,
        Kind::Insert(_) => StatementKind::Insert,
        Kind::Update => StatementKind::Update,
        Kind::Delete => StatementKind::Delete,
        Kind::Ddl(_) => StatementKind::Ddl,
    };
    Ok(ByKind::Routed(if a.explain {
        StatementKind::Explain
    } else {
        kind
    }))
}

/// Session commands: the frontend handles them.
fn session_template(s: &Session, any_rule_table: bool) -> Result<Template, RouteError> {
    let statement = match s {
        Session::Set => {
            if any_rule_table {
                return Err(not_supported("SET with a subquery on tables of the rules"));
            }
            return Ok(Template::Set);
        }
        Session::Begin => SessionStatement::Begin,
        Session::Commit => SessionStatement::Commit,
        Session::Rollback => SessionStatement::Rollback,
        Session::RollbackTo(n) => SessionStatement::RollbackToSavepoint(n.clone()),
        Session::Savepoint(n) => SessionStatement::Savepoint(n.clone()),
        Session::Release(n) => SessionStatement::ReleaseSavepoint(n.clone()),
        Session::Use(db) => SessionStatement::Use(db.clone()),
    };
    Ok(Template::Fixed(Plan::session(statement)))
}

/// Reads run on the fewest targets, writes on every copy; CREATE TABLE … SELECT
/// writes the rows it reads.
fn mode(a: &Analysis) -> Mode {
    match (&a.kind, a.explain) {
        (Kind::Ddl(DdlOp::CreateTableAs), _) => Mode::Write,
        (_, true) | (Kind::Query | Kind::Show(_), _) => Mode::Read,
        (Kind::Ddl(_), _) => Mode::Ddl,
        _ => Mode::Write,
    }
}

/// DDL the rules cannot carry out on their tables: views over them, renaming
/// them, CREATE TABLE … SELECT into them.
fn check_ddl(
    op: DdlOp,
    a: &Analysis,
    names: &[String],
    places: &[Place],
    any_rule_table: bool,
) -> Result<(), RouteError> {
    let rules_written: Vec<&str> = a
        .written
        .iter()
        .filter(|&&i| places[i] != Place::Default)
        .map(|&i| names[i].as_str())
        .collect();
    match op {
        DdlOp::View if any_rule_table => Err(not_supported(
            "views over tables of the rules (create the view on each shard)",
        )),
        DdlOp::Rename if !rules_written.is_empty() => Err(not_supported(format!(
            "renaming table {} of the rules (change the rule file instead)",
            rules_written.join(", ")
        ))),
        DdlOp::CreateTableAs if !rules_written.is_empty() => Err(not_supported(format!(
            "CREATE TABLE … SELECT into table {} of the rules",
            rules_written.join(", ")
        ))),
        _ => Ok(()),
    }
}

/// How an INSERT into a sharded table routes its rows: for INSERT … VALUES, the
/// target and each row's key slot (`None` for a row whose key the sequence
/// filling it always generates); an INSERT … SELECT joins the key class of its
/// rows (a bound table's) or gets one of its own (a literal key, which must
/// route exactly).
fn sharded_insert(
    rules: &Rules,
    ins: &sql::Insert,
    names: &[String],
    fill: Option<&FillSpec>,
    classes: &mut Vec<Class>,
) -> Result<Option<InsertRows>, RouteError> {
    let t = ins.table;
    let table = names[t].clone();
    let column = rules
        .sharded(&table)
        .map(|s| s.column().to_owned())
        .unwrap_or_default();
    match &ins.key {
        InsertKey::NotSharded => {}
        InsertKey::NoColumnList => {
            return Err(not_supported(format!(
                "INSERT into sharded table {table} of only empty rows `VALUES ()` \
                 (name the columns)"
            )))
        }
        InsertKey::Missing | InsertKey::Rows(_) => {
            // A sequence filling the key gives the rows that need one an id.
            let slots = match (&ins.key, fill.filter(|f| f.fills(&column))) {
                (_, Some(f)) => f
                    .rows
                    .iter()
                    .map(|&v| match v {
                        KeyValue::Null | KeyValue::Default => Ok(None),
                        v => insert_key_slot(v, &f.table, &f.column).map(Some),
                    })
                    .collect::<Result<_, _>>()?,
                (InsertKey::Rows(keys), None) => keys
                    .iter()
                    .map(|&k| insert_key_slot(k, &table, &column).map(Some))
                    .collect::<Result<_, _>>()?,
                _ => return Err(RouteError::MissingShardingKey { table, column }),
            };
            if !classes.is_empty() {
                return Err(not_supported(
                    "INSERT … VALUES with a subquery on a sharded table",
                ));
            }
            return Ok(Some(InsertRows {
                table: t,
                key_slots: slots,
            }));
        }
        InsertKey::FromClass(c) => {
            let class = classes
                .get_mut(*c)
                .ok_or_else(|| RouteError::Internal("INSERT … SELECT class out of range".into()))?;
            let bound = class
                .tables
                .iter()
                .all(|&m| rules.are_bound(&table, &names[m]));
            if !bound {
                return Err(not_supported(format!(
                    "INSERT … SELECT into {table} from a table not bound to it"
                )));
            }
            class.tables.push(t);
        }
        InsertKey::Select(KeyValue::Slot(s)) => classes.push(Class {
            tables: vec![t],
            cond: Cond::In(vec![*s]),
            strict: true,
        }),
        InsertKey::Select(_) => {
            return Err(not_supported(format!(
                "INSERT … SELECT into {table} whose {column} is neither a literal \
                 nor the sharding column of a bound table"
            )))
        }
    }
    Ok(None)
}

/// An UPDATE or DELETE: refused without WHERE on a sharded table (unless allowed);
/// the assignments of sharding columns, each to a literal or `?` slot.
fn checked_write(
    rules: &Rules,
    options: &RouterOptions,
    a: &Analysis,
    names: &[String],
    places: &[Place],
) -> Result<Vec<(usize, usize)>, RouteError> {
    let statement = if a.kind == Kind::Update {
        "UPDATE"
    } else {
        "DELETE"
    };
    if !a.has_where && !options.allow_full_scatter_write {
        if let Some(&t) = a
            .written
            .iter()
            .find(|&&i| matches!(places[i], Place::Sharded(_)))
        {
            return Err(RouteError::FullScatterWrite {
                statement,
                table: names[t].clone(),
            });
        }
    }
    let mut key_updates = Vec::new();
    for (table, value) in &a.key_updates {
        match value {
            KeyValue::Unchanged => {}
            KeyValue::Slot(s) => key_updates.push((*table, *s)),
            _ => return Err(key_update_error(rules, &names[*table])),
        }
    }
    Ok(key_updates)
}

/// Every copy of a broadcast table must receive the same change, so it
/// cannot be computed from rows that live on one shard each.
fn check_broadcast_writes(
    a: &Analysis,
    names: &[String],
    places: &[Place],
) -> Result<(), RouteError> {
    match a
        .written
        .iter()
        .find(|&&i| matches!(places[i], Place::Broadcast(_)))
    {
        Some(&b) => Err(not_supported(format!(
            "writing broadcast table {} from rows of a sharded table",
            names[b]
        ))),
        None => Ok(()),
    }
}

fn needs_db_rewrite_show(rules: &Rules, schema: &Option<String>) -> bool {
    schema.is_some() && !default_db_is_schema(rules)
}

pub(crate) fn insert_key_slot(k: KeyValue, table: &str, column: &str) -> Result<usize, RouteError> {
    let (table, column) = (table.to_owned(), column.to_owned());
    match k {
        KeyValue::Slot(s) => Ok(s),
        KeyValue::Null => Err(RouteError::NullShardingKey { table, column }),
        KeyValue::Default => Err(RouteError::MissingShardingKey { table, column }),
        KeyValue::Unchanged | KeyValue::Other => Err(RouteError::ShardingValue {
            table,
            column,
            reason: "it is an expression, not a literal or parameter".into(),
        }),
    }
}

fn key_update_error(rules: &Rules, table: &str) -> RouteError {
    RouteError::ShardingKeyUpdate {
        table: table.to_owned(),
        column: rules
            .sharded(table)
            .map(|s| s.column().to_owned())
            .unwrap_or_default(),
    }
}

/// `CREATE DATABASE <logical>`: create every data source's database (once
/// per server and database), except the meta data source's, which holds no
/// table of the logical schema.
fn create_databases(rules: &Rules, if_not_exists: bool) -> Plan {
    let mut seen = Vec::new();
    let mut targets = Vec::new();
    for (name, ds) in &rules.data_sources {
        if rules.proxy.meta_data_source.as_deref() == Some(name.as_str()) {
            continue;
        }
        let key = (ds.address.clone(), ds.database.clone());
        if seen.contains(&key) {
            continue;
        }
        seen.push(key);
        targets.push(Target {
            data_source: name.clone(),
            sql: format!(
                "CREATE DATABASE {}{}",
                if if_not_exists { "IF NOT EXISTS " } else { "" },
                sql::quote_ident(&ds.database)
            ),
            params: None,
        });
    }
    let combine = if targets.len() == 1 {
        Combine::Single
    } else {
        Combine::SumAffected
    };
    Plan {
        kind: StatementKind::Ddl,
        targets,
        combine,
        rename: Vec::new(),
        add_tables: Vec::new(),
    }
}
