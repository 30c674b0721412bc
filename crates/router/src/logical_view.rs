//! Queries on `information_schema` answered with logical names: which data sources answer,
//! what each runs ([`sql::Statement::logical_view`]), and how their rows combine.
//!
//! Every data source holding a table of the logical schema's view runs its copy: the default
//! data source (its unnamed tables, the tables of the rules that stand on it, and, unless the
//! statement restricts every table of the view to the logical schema, the other databases
//! of its server but the data sources'), and each data source where a table of the rules
//! has the physical table standing for it ([`crate::columns::representative`]: the one
//! SHOW CREATE TABLE shows). A logical table is thus described by exactly one physical
//! table, so the data sources' rows are a partition of the answer and combine like a
//! scatter read: concatenated, or merged for ORDER BY, LIMIT, aggregates, DISTINCT. What
//! would need rows of several data sources at once (a join not on TABLE_NAME, a subquery
//! with LIMIT, tables other than information_schema's) is refused, as is reading the
//! tables the view does not present (VIEWS, ROUTINES, …) about the logical schema.

use std::collections::BTreeMap;

use rules::Rules;
use sql::{
    Analysis, Kind, Naming, Rendered, SchemaValue, Statement, SystemTable, ViewSource,
    INFORMATION_SCHEMA,
};

use crate::columns::{representative, ColumnSource, KnownColumns, UsedColumns};
use crate::error::RouteError;
use crate::input::{Input, Val};
use crate::merged_select::{merge_spec, merge_template, MergeTemplate, Slots};
use crate::placement::{default_db_is_schema, is_rule_table};
use crate::plan::{Combine, MergeSpec, Plan, StatementKind};
use crate::splice::target_of;

/// The template of a query on `information_schema` the view concerns.
#[derive(Debug)]
pub(crate) struct ViewTemplate {
    /// Tables the view does not present, with the restrictions of their databases: each
    /// must be restricted to other databases than the logical schema's.
    unpresented: Vec<(&'static str, Vec<Vec<SchemaValue>>)>,
    /// `None`: the statement reads no table of the view, and passes unchanged.
    view: Option<View>,
}

#[derive(Debug)]
pub(crate) struct View {
    /// Per occurrence of a table of the view: the restrictions of its database.
    restrictions: Vec<Vec<Vec<SchemaValue>>>,
    /// Rows are combined by table name only (not database), so on several data sources the
    /// statement must be about the logical schema alone: another database's rows, on the
    /// default data source, would meet only the logical tables there.
    logical_only_needed: bool,
    parts: Vec<Part>,
    /// The column lists `*` was spelled out with.
    pub(crate) columns: UsedColumns,
}

/// What one data source runs.
#[derive(Debug)]
struct Part {
    data_source: String,
    /// The copy when every table is restricted to the logical schema, and the one that also
    /// shows other databases.
    copies: [Copy; 2],
}

#[derive(Debug)]
struct Copy {
    plain: Rendered,
    /// For rows merged across data sources.
    merged: Option<MergeTemplate>,
}

impl ViewTemplate {
    /// The merge shape of the first part, whose literal column positions must match.
    pub(crate) fn merge(&self) -> Option<&MergeTemplate> {
        let part = self.view.as_ref()?.parts.first()?;
        part.copies[1].merged.as_ref()
    }

    pub(crate) fn columns(&self) -> &[crate::columns::Columns] {
        self.view.as_ref().map_or(&[], |v| &v.columns)
    }
}

/// What one data source contributes to the view, by the rules.
struct Source {
    data_source: String,
    database: String,
    shown: Vec<String>,
    names: Vec<(String, String)>,
    /// For the default data source: the tables not shown under their own name.
    unnamed_except: Option<Vec<String>>,
}

/// The data sources of the view: the default one first, then those where a table of the
/// rules has its standing physical table, by name.
fn sources(rules: &Rules) -> Vec<Source> {
    let default = &rules.schema.default_data_source;
    let mut shown: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    let mut names: BTreeMap<&str, Vec<(String, String)>> = BTreeMap::new();
    let mut hidden: Vec<String> = Vec::new();
    let same_database = |ds: &str| {
        let (a, b) = (rules.data_source(ds), rules.data_source(default));
        a.zip(b)
            .is_some_and(|(a, b)| a.address == b.address && a.database == b.database)
    };
    for (logical, rule) in &rules.tables {
        if let Some((ds, table)) = representative(rules, logical) {
            if let Some((name, _)) = rules.data_sources.get_key_value(&ds) {
                shown.entry(name.as_str()).or_default().push(table);
            }
        }
        for n in rule.physical_tables() {
            if n.table != *logical {
                names
                    .entry(n.data_source.as_str())
                    .or_default()
                    .push((n.table.clone(), logical.clone()));
            }
            // On the default data source's database, only the standing tables are shown.
            if same_database(&n.data_source) {
                hidden.push(n.table.clone());
            }
        }
        hidden.push(logical.clone());
    }
    hidden.sort();
    hidden.dedup();
    let mut out = Vec::new();
    for (name, ds) in &rules.data_sources {
        let is_default = name == default;
        let here = shown.remove(name.as_str()).unwrap_or_default();
        if here.is_empty() && !is_default {
            continue;
        }
        let source = Source {
            data_source: name.clone(),
            database: ds.database.clone(),
            shown: here,
            names: names.remove(name.as_str()).unwrap_or_default(),
            unnamed_except: is_default.then(|| hidden.clone()),
        };
        if is_default {
            out.insert(0, source);
        } else {
            out.push(source);
        }
    }
    out
}

fn not_supported(what: impl Into<String>) -> RouteError {
    RouteError::NotSupported(what.into())
}

fn is_system(t: &sql::TableRef) -> bool {
    t.foreign_schema
        .as_deref()
        .is_some_and(|s| s.eq_ignore_ascii_case(INFORMATION_SCHEMA))
}

/// The template of a statement reading tables of `information_schema` about databases;
/// `None` for other statements.
pub(crate) fn template(
    rules: &Rules,
    known: &KnownColumns,
    stmt: &Statement,
    a: &Analysis,
    slots: &Slots<'_>,
) -> Result<Option<ViewTemplate>, RouteError> {
    let mut about_databases = a
        .tables
        .iter()
        .filter(|t| is_system(t) && sql::system_table(&t.name) != SystemTable::Other);
    let Some(first) = about_databases.next() else {
        return Ok(None);
    };
    match &a.kind {
        Kind::Query if !a.explain => {}
        Kind::Show(_) => return Ok(None),
        _ if a.explain => {
            return Err(not_supported(
                "EXPLAIN of a query on information_schema (its copies run on each data source)",
            ))
        }
        _ => {
            return Err(not_supported(format!(
                "a statement other than SELECT reading information_schema.{} (it would see \
                 physical names)",
                first.name
            )))
        }
    }
    if let Some(t) = a
        .tables
        .iter()
        .find(|t| t.foreign_schema.is_none() && is_rule_table(rules, &t.name))
    {
        return Err(not_supported(format!(
            "information_schema together with table {} of the rules",
            t.name
        )));
    }
    let v = stmt.view_analysis();
    if v.tables.is_empty() {
        // The statement passes unchanged: nothing in it may need the logical schema's name.
        if (a.database_fn || a.schema_qualified) && !default_db_is_schema(rules) {
            return Err(not_supported(format!(
                "DATABASE() or the logical schema {} in a query on information_schema.{}",
                rules.schema.name, first.name
            )));
        }
        return Ok(Some(ViewTemplate {
            unpresented: v.unpresented,
            view: None,
        }));
    }
    let mut sources = sources(rules);
    if v.tables.iter().all(|t| *t == "SCHEMATA") {
        sources.truncate(1);
    }
    if sources.len() > 1 {
        several_sources(&v, a)?;
    }
    let schema = rules.schema.name.as_str();
    let default = &rules.schema.default_data_source;
    let mut columns: UsedColumns = Vec::new();
    let mut lists = Vec::new();
    for t in &v.expand {
        let source = ColumnSource {
            data_source: default.clone(),
            database: INFORMATION_SCHEMA.to_owned(),
            table: (*t).to_owned(),
        };
        let list = known.get(&source)?;
        lists.push(((*t).to_owned(), list.to_vec()));
        columns.push((source, list));
    }
    let mut others_except: Vec<String> = rules
        .data_sources
        .values()
        .map(|d| d.database.clone())
        .chain([schema.to_owned()])
        .collect();
    others_except.sort();
    others_except.dedup();
    let naming = vec![Naming::Keep; a.tables.len()];
    let database = a.database_fn.then_some(schema);
    let merged = sources.len() > 1 && !a.top_merge_needs.is_empty();
    let mut parts = Vec::with_capacity(sources.len());
    for s in &sources {
        let copy = |others: bool| -> Result<Copy, RouteError> {
            let source = ViewSource {
                schema,
                database: &s.database,
                shown: &s.shown,
                unnamed_except: s.unnamed_except.as_deref(),
                names: &s.names,
                others_except: (others && s.unnamed_except.is_some())
                    .then_some(others_except.as_slice()),
            };
            let stmt = stmt
                .logical_view(&source, &lists)
                .map_err(|e| not_supported(e.to_string()))?;
            let plain = stmt
                .render(a, schema, &naming, database, false)
                .map_err(|e| not_supported(e.to_string()))?;
            let merged = match merged {
                true => Some(
                    merge_template(&stmt, a, schema, &naming, database, slots)
                        .map_err(|what| not_supported(format!("{what} across data sources")))?,
                ),
                false => None,
            };
            Ok(Copy { plain, merged })
        };
        parts.push(Part {
            data_source: s.data_source.clone(),
            copies: [copy(false)?, copy(true)?],
        });
    }
    Ok(Some(ViewTemplate {
        unpresented: v.unpresented,
        view: Some(View {
            logical_only_needed: parts.len() > 1 && !v.schema_linked,
            restrictions: v.restrictions,
            parts,
            columns,
        }),
    }))
}

/// Checks that a statement's copies on several data sources give, together, its answer.
fn several_sources(v: &sql::ViewAnalysis, a: &Analysis) -> Result<(), RouteError> {
    if !v.linked {
        return Err(not_supported(
            "combining rows of information_schema tables other than by equal TABLE_NAME \
             (their tables live on several data sources; join them on TABLE_NAME)",
        ));
    }
    if let Some(what) = &v.refused {
        return Err(not_supported(what.clone()));
    }
    let view_tables = |t: &&sql::TableRef| {
        is_system(t) && matches!(sql::system_table(&t.name), SystemTable::View(_))
    };
    if let Some(other) = a.tables.iter().find(|t| !view_tables(t)) {
        let name = match &other.foreign_schema {
            Some(db) => format!("{db}.{}", other.name),
            None => other.name.clone(),
        };
        return Err(not_supported(format!(
            "information_schema tables together with {name} (their rows come from several \
             data sources)"
        )));
    }
    if let Some(need) = a.merge_needs.first() {
        return Err(not_supported(format!(
            "{need} in a subquery on information_schema (its rows come from several data \
             sources)"
        )));
    }
    if a.select_into {
        return Err(not_supported(
            "SELECT … INTO on information_schema (its rows come from several data sources)",
        ));
    }
    Ok(())
}

/// Whether a value names the logical schema.
fn is_logical(rules: &Rules, v: &SchemaValue, input: &Input<'_>) -> bool {
    let schema = &rules.schema.name;
    match v {
        SchemaValue::Database => true,
        SchemaValue::Literal(s) => s.eq_ignore_ascii_case(schema),
        SchemaValue::Slot(slot) => {
            matches!(input.value(*slot), Val::Str(s) if s.eq_ignore_ascii_case(schema))
        }
    }
}

/// Whether a value names a database other than the logical schema and the data sources'.
fn is_foreign(rules: &Rules, v: &SchemaValue, input: &Input<'_>) -> bool {
    let foreign = |s: &str| {
        !s.eq_ignore_ascii_case(&rules.schema.name)
            && !rules
                .data_sources
                .values()
                .any(|d| d.database.eq_ignore_ascii_case(s))
    };
    match v {
        SchemaValue::Database => false,
        SchemaValue::Literal(s) => foreign(s),
        SchemaValue::Slot(slot) => matches!(input.value(*slot), Val::Str(s) if foreign(&s)),
    }
}

/// Routes a statement from its view template.
pub(crate) fn instantiate(
    rules: &Rules,
    t: &ViewTemplate,
    input: &Input<'_>,
) -> Result<Plan, RouteError> {
    for (table, restrictions) in &t.unpresented {
        let elsewhere = restrictions
            .iter()
            .any(|set| set.iter().all(|v| is_foreign(rules, v, input)));
        if !elsewhere {
            return Err(not_supported(format!(
                "information_schema.{table} about the logical schema {} (only a condition \
                 naming other databases is passed on; it would show physical names)",
                rules.schema.name
            )));
        }
    }
    let Some(view) = &t.view else {
        return Ok(Plan::single(
            StatementKind::Select,
            &rules.schema.default_data_source,
            input.sql,
        ));
    };
    let logical_only = view.restrictions.iter().all(|sets| {
        sets.iter()
            .any(|set| set.iter().all(|v| is_logical(rules, v, input)))
    });
    if view.logical_only_needed && !logical_only {
        return Err(not_supported(
            "combining rows of information_schema tables by TABLE_NAME but not TABLE_SCHEMA \
             without restricting them to the logical schema (compare TABLE_SCHEMA too)",
        ));
    }
    let copy = usize::from(!logical_only);
    let merge = match view.parts.first().map(|p| &p.copies[copy].merged) {
        // COM_STMT_PREPARE prepares the plain copy: its parameters are the client's.
        Some(Some(m)) if !input.preparing() => Some(merge_spec(m, input)?),
        _ => None,
    };
    let shard_limit = merge.as_ref().and_then(|(_, limit)| *limit);
    let mut targets = Vec::with_capacity(view.parts.len());
    for p in &view.parts {
        let c = &p.copies[copy];
        let rendered = match (&merge, &c.merged) {
            (Some(_), Some(m)) => &m.rendered,
            _ => &c.plain,
        };
        targets.push(target_of(&p.data_source, rendered, input, shard_limit)?);
    }
    let combine = match (targets.len(), merge) {
        (1, _) => Combine::Single,
        (_, Some((spec, _))) => Combine::Merge(Box::new(spec)),
        (_, None) => Combine::Merge(Box::new(MergeSpec::concat())),
    };
    Ok(Plan {
        kind: StatementKind::Select,
        targets,
        combine,
        rename: Vec::new(),
        add_tables: Vec::new(),
    })
}
