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

use rules::{Rules, TableRoute};
use sql::{
    Analysis, Cond, DdlOp, Fingerprint, InsertKey, KeyOracle, KeyValue, Kind, Naming, Rendered,
    Session, Show, Statement,
};

use crate::columns::{self, KnownColumns, UsedColumns};
use crate::error::RouteError;
use crate::fill::{self, FillSpec};
use crate::logical_view::{self, ViewTemplate};
use crate::plan::{Combine, Plan, SessionStatement, StatementKind, Target};
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

/// Where one table of a statement lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Place {
    /// A sharded table (the name as in the rule file).
    Sharded(String),
    /// A broadcast table (the name as in the rule file).
    Broadcast(String),
    /// A single table.
    Single { data_source: String, table: String },
    /// Not in the rules: the default data source, the name as written.
    Default,
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
    /// See [`sql::Analysis::rows_not_sharded`].
    pub rows_not_sharded: bool,
    pub explain: bool,
    /// Tables changed.
    pub written: Vec<usize>,
    /// Assignments of sharding columns whose new value must stay on the row's shard.
    pub key_updates: Vec<(usize, usize)>,
    /// A sharded INSERT … VALUES: the target and each row's key slot (`None`
    /// for a row whose key the sequence filling it always generates).
    pub insert_rows: Option<(usize, Vec<Option<usize>>)>,
    /// An INSERT into a table whose column a sequence fills.
    pub fill: Option<FillSpec>,
    /// SHOW of one table: its index.
    pub show_table: Option<usize>,
    /// SHOW TABLES of the logical schema.
    pub show_tables: bool,
    /// The column lists the statement was routed with (an INSERT without a column list).
    pub columns: UsedColumns,
}

/// A SELECT rewritten for merging ([`Statement::select_merge`]), rendered.
#[derive(Debug)]
pub(crate) struct MergeTemplate {
    pub rendered: Rendered,
    pub shape: sql::MergeShape,
    pub limit: Option<sql::LimitOperands>,
    /// Literal texts read as column positions, which the shape depends on.
    pub positions: Vec<(usize, String)>,
    /// The shards' statement limits their rows ([`sql::Seg::Limit`]).
    pub shard_limit: bool,
}

pub(crate) fn merge_template(
    stmt: &Statement,
    a: &Analysis,
    schema: &str,
    naming: &[Naming],
    database: Option<&str>,
    slots: &Slots<'_>,
) -> Result<MergeTemplate, String> {
    let slot_integer = |slot: usize| -> Option<u64> {
        let lit = slots.fp.literals.get(slot)?;
        (lit.kind == sql::LiteralKind::Int)
            .then(|| lit.text(slots.sql).parse().ok())
            .flatten()
    };
    let m = stmt.select_merge(&slot_integer)?;
    let rendered = m
        .statement
        .render(a, schema, naming, database, false)
        .map_err(|e| e.to_string())?;
    let positions = m
        .position_slots
        .iter()
        .map(|&s| (s, slots.text(s).unwrap_or_default().to_owned()))
        .collect();
    Ok(MergeTemplate {
        rendered,
        shape: m.shape,
        limit: m.limit,
        positions,
        shard_limit: m.shard_limit,
    })
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
        merge.is_none_or(|m| {
            m.positions.iter().all(|(slot, text)| {
                fp.literals.get(*slot).map(|l| l.text(sql)) == Some(text.as_str())
            })
        })
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

/// The placement rule of a table named in a statement.
pub(crate) fn place_of(rules: &Rules, t: &sql::TableRef) -> Place {
    if t.foreign_schema.is_some() {
        return Place::Default;
    }
    match rules.table_rule(&t.name) {
        TableRoute::Sharded(s) => Place::Sharded(s.name().to_owned()),
        TableRoute::Broadcast(_) => Place::Broadcast(rule_name(rules, &t.name)),
        TableRoute::Single(n) => Place::Single {
            data_source: n.data_source.clone(),
            table: n.table.clone(),
        },
        TableRoute::Default { .. } => Place::Default,
    }
}

/// The rule-file key of a named table (lookups are case-insensitive).
fn rule_name(rules: &Rules, name: &str) -> String {
    if rules.tables.contains_key(name) {
        return name.to_owned();
    }
    rules
        .tables
        .keys()
        .find(|k| k.eq_ignore_ascii_case(name))
        .cloned()
        .unwrap_or_else(|| name.to_owned())
}

/// Whether `name` is a table of the rules (case-insensitively).
pub(crate) fn is_rule_table(rules: &Rules, name: &str) -> bool {
    rules.tables.keys().any(|k| k.eq_ignore_ascii_case(name))
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
    let slots = Slots { sql, fp };
    if let Some(view) = logical_view::template(rules, known, &stmt, &analysis, &slots)? {
        return Ok((Template::LogicalView(Box::new(view)), complete));
    }
    let mut template = plan_template(rules, options, &stmt, &analysis, &slots)?;
    if let Template::Routed(rt) = &mut template {
        rt.columns = used;
    }
    // A merge that failed may have failed on a literal's value (`ORDER BY 3` of two columns);
    // another statement of the fingerprint must be read afresh, not refused with its error.
    let cacheable = match &template {
        Template::Routed(rt) => complete && !matches!(rt.merge, Some(Err(_))),
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
    if rules.tables.is_empty() && default_db_is_schema(rules) && !has_fill_tables(rules) {
        return Ok((Template::PassThrough(StatementKind::Other), true));
    }
    let words = sql::identifiers(sql);
    let first = words.first().map(|w| w.to_ascii_uppercase());
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
    Ok((Template::PassThrough(StatementKind::Other), true))
}

/// Whether a sequence fills a column of some table.
fn has_fill_tables(rules: &Rules) -> bool {
    rules.sequences.values().any(|s| s.fills.is_some())
}

/// Whether the default data source's database has the logical schema's name
/// (then `bank.t` and `DATABASE()` mean the same on it, unchanged).
pub(crate) fn default_db_is_schema(rules: &Rules) -> bool {
    rules
        .data_source(&rules.schema.default_data_source)
        .is_some_and(|d| d.database == rules.schema.name)
}

fn session_plan(s: SessionStatement) -> Plan {
    Plan {
        kind: StatementKind::Session(s),
        targets: Vec::new(),
        combine: Combine::Single,
        rename: Vec::new(),
        add_tables: Vec::new(),
    }
}

fn not_supported(what: impl Into<String>) -> RouteError {
    RouteError::NotSupported(what.into())
}

/// The literal texts of the statement a template is built from.
pub(crate) struct Slots<'a> {
    sql: &'a str,
    fp: &'a Fingerprint,
}

impl Slots<'_> {
    fn text(&self, slot: usize) -> Option<&str> {
        self.fp.literals.get(slot).map(|l| l.text(self.sql))
    }
}

fn plan_template(
    rules: &Rules,
    options: &RouterOptions,
    stmt: &Statement,
    a: &Analysis,
    slots: &Slots<'_>,
) -> Result<Template, RouteError> {
    let places: Vec<Place> = a.tables.iter().map(|t| place_of(rules, t)).collect();
    let names: Vec<String> = a.tables.iter().map(|t| t.name.clone()).collect();
    let any_rule_table = places.iter().any(|p| *p != Place::Default);
    let needs_db_rewrite = (a.schema_qualified || a.database_fn) && !default_db_is_schema(rules);
    let fill = fill::spec(rules, stmt, a)?;
    let pass_through = !any_rule_table && !needs_db_rewrite && fill.is_none();
    if let Some(cte) = a.ctes.iter().find(|c| is_rule_table(rules, c)) {
        return Err(not_supported(format!(
            "a common table expression named like the table {cte} of the rules"
        )));
    }
    let kind = match &a.kind {
        Kind::Session(s) => {
            return Ok(match s {
                Session::Set => {
                    if any_rule_table {
                        return Err(not_supported("SET with a subquery on tables of the rules"));
                    }
                    Template::Set
                }
                Session::Begin => Template::Fixed(session_plan(SessionStatement::Begin)),
                Session::Commit => Template::Fixed(session_plan(SessionStatement::Commit)),
                Session::Rollback => Template::Fixed(session_plan(SessionStatement::Rollback)),
                Session::RollbackTo(n) => Template::Fixed(session_plan(
                    SessionStatement::RollbackToSavepoint(n.clone()),
                )),
                Session::Savepoint(n) => {
                    Template::Fixed(session_plan(SessionStatement::Savepoint(n.clone())))
                }
                Session::Release(n) => {
                    Template::Fixed(session_plan(SessionStatement::ReleaseSavepoint(n.clone())))
                }
                Session::Use(db) => {
                    Template::Fixed(session_plan(SessionStatement::Use(db.clone())))
                }
            })
        }
        Kind::SqlPrepare => {
            if rules.tables.is_empty() {
                return Ok(Template::PassThrough(StatementKind::Other));
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
                None if needs_db_rewrite => Err(not_supported(format!(
                    "{words} naming the logical schema {}",
                    rules.schema.name
                ))),
                None => Ok(Template::PassThrough(StatementKind::Other)),
            };
        }
        Kind::CreateDatabase {
            name,
            if_not_exists,
        } => {
            if !name.eq_ignore_ascii_case(&rules.schema.name) {
                return Ok(Template::PassThrough(StatementKind::Ddl));
            }
            return Ok(Template::Fixed(create_databases(rules, *if_not_exists)));
        }
        Kind::DropDatabase { name } => {
            if !name.eq_ignore_ascii_case(&rules.schema.name) {
                return Ok(Template::PassThrough(StatementKind::Ddl));
            }
            return Err(not_supported(format!(
                "DROP DATABASE of the logical schema {name}; drop the shard databases directly"
            )));
        }
        Kind::Show(Show::Other) => return Ok(Template::PassThrough(StatementKind::Show)),
        Kind::Show(Show::Tables { schema }) => {
            let logical = schema
                .as_ref()
                .is_none_or(|s| s.eq_ignore_ascii_case(&rules.schema.name));
            if !logical || (rules.tables.is_empty() && !needs_db_rewrite_show(rules, schema)) {
                return Ok(Template::PassThrough(StatementKind::Show));
            }
            StatementKind::Show
        }
        Kind::Show(Show::Table(_)) => {
            if pass_through {
                return Ok(Template::PassThrough(StatementKind::Show));
            }
            StatementKind::Show
        }
        Kind::Query => StatementKind::Select,
        Kind::Insert(_) => StatementKind::Insert,
        Kind::Update => StatementKind::Update,
        Kind::Delete => StatementKind::Delete,
        Kind::Ddl(_) => StatementKind::Ddl,
    };
    let kind = if a.explain {
        StatementKind::Explain
    } else {
        kind
    };
    // SHOW TABLES names no table but lists those of the rules.
    let show_tables = matches!(a.kind, Kind::Show(Show::Tables { .. }));
    if pass_through && !show_tables {
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
    let mut mode = match (&a.kind, a.explain) {
        (_, true) => Mode::Read,
        (Kind::Query | Kind::Show(_), _) => Mode::Read,
        (Kind::Ddl(DdlOp::CreateTableAs), _) => Mode::Write,
        (Kind::Ddl(_), _) => Mode::Ddl,
        _ => Mode::Write,
    };
    let sharded = |i: usize| matches!(places[i], Place::Sharded(_));
    let rule_table = |i: usize| places[i] != Place::Default;
    let mut key_updates = Vec::new();
    let mut insert_rows = None;
    let mut show_table = None;
    let mut show_tables = false;

    match &a.kind {
        Kind::Ddl(op) => {
            let rules_written: Vec<&str> = a
                .written
                .iter()
                .filter(|&&i| rule_table(i))
                .map(|&i| names[i].as_str())
                .collect();
            match op {
                DdlOp::View if any_rule_table => {
                    return Err(not_supported(
                        "views over tables of the rules (create the view on each shard)",
                    ))
                }
                DdlOp::Rename if !rules_written.is_empty() => {
                    return Err(not_supported(format!(
                        "renaming table {} of the rules (change the rule file instead)",
                        rules_written.join(", ")
                    )))
                }
                DdlOp::CreateTableAs if !rules_written.is_empty() => {
                    return Err(not_supported(format!(
                        "CREATE TABLE … SELECT into table {} of the rules",
                        rules_written.join(", ")
                    )))
                }
                _ => {}
            }
            if *op == DdlOp::CreateTableAs {
                mode = Mode::Write;
            }
        }
        Kind::Insert(ins) => {
            let t = ins.table;
            if sharded(t) {
                let column = rules
                    .sharded(&names[t])
                    .map(|s| s.column().to_owned())
                    .unwrap_or_default();
                let table = names[t].clone();
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
                        let slots = match (&ins.key, fill.as_ref().filter(|f| f.fills(&column))) {
                            (_, Some(f)) => f.key_slots()?,
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
                        insert_rows = Some((t, slots));
                    }
                    InsertKey::FromClass(c) => {
                        let class = classes.get_mut(*c).ok_or_else(|| {
                            RouteError::Internal("INSERT … SELECT class out of range".into())
                        })?;
                        let bound = class
                            .tables
                            .iter()
                            .all(|&m| rules.are_bound(&names[t], &names[m]));
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
            }
            for (table, value) in &a.key_updates {
                if *value != KeyValue::Unchanged {
                    return Err(key_update_error(rules, &names[*table]));
                }
            }
        }
        Kind::Update | Kind::Delete => {
            let statement = if a.kind == Kind::Update {
                "UPDATE"
            } else {
                "DELETE"
            };
            if !a.has_where && !options.allow_full_scatter_write {
                if let Some(&t) = a.written.iter().find(|&&i| sharded(i)) {
                    return Err(RouteError::FullScatterWrite {
                        statement,
                        table: names[t].clone(),
                    });
                }
            }
            for (table, value) in &a.key_updates {
                match value {
                    KeyValue::Unchanged => {}
                    KeyValue::Slot(s) => key_updates.push((*table, *s)),
                    _ => return Err(key_update_error(rules, &names[*table])),
                }
            }
        }
        Kind::Show(Show::Table(t)) => show_table = Some(*t),
        Kind::Show(Show::Tables { .. }) => show_tables = true,
        _ => {}
    }

    // Every copy of a broadcast table must receive the same change, so it
    // cannot be computed from rows that live on one shard each.
    if mode != Mode::Read && !classes.is_empty() {
        if let Some(&b) = a
            .written
            .iter()
            .find(|&&i| matches!(places[i], Place::Broadcast(_)))
        {
            return Err(not_supported(format!(
                "writing broadcast table {} from rows of a sharded table",
                names[b]
            )));
        }
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
    Ok(Template::Routed(Box::new(Routed {
        merge,
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
        insert_rows,
        fill,
        show_table,
        show_tables,
        columns: Vec::new(),
    })))
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
