//! Column lists the router needs and cannot know: a table's columns in the order of its
//! definition. An INSERT without a column list (`INSERT INTO payment VALUES (…)`) gives every
//! column in that order, so the router must know where the sharding column (or the column a
//! sequence fills) is; `SELECT *` over `information_schema` is spelled out for the logical
//! view ([`crate::logical_view`]).
//!
//! The router does no I/O: routing such a statement without the list fails with
//! [`RouteError::ColumnsNeeded`] naming where to read it ([`ColumnSource`]: one physical
//! table standing for the logical one); the caller reads it and hands it over with
//! [`crate::Router::learn_columns`], then routes again. The router keeps the lists it was
//! given for the life of its rules (a reload builds a new router), and templates record the
//! lists they were built with, so after [`crate::Router::forget_columns`] (the caller's
//! answer to DDL) a cached plan is not reused with an old list.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use rules::{Rules, ShardedTable, TableRoute};
use sql::{Analysis, InsertKey, Kind, RowsWithoutColumns, Statement};

use crate::error::RouteError;

/// Where a table's column list is read: the physical table `table` of database `database`
/// on `data_source` (`information_schema.COLUMNS`, in `ORDINAL_POSITION` order, without
/// invisible columns).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ColumnSource {
    pub data_source: String,
    pub database: String,
    pub table: String,
}

/// The column lists the caller has given, by source.
#[derive(Debug, Default)]
pub(crate) struct KnownColumns {
    lists: RwLock<HashMap<ColumnSource, Arc<[String]>>>,
}

/// A column list and where it was read.
pub(crate) type Columns = (ColumnSource, Arc<[String]>);

/// The column lists a template was built with.
pub(crate) type UsedColumns = Vec<Columns>;

impl KnownColumns {
    pub(crate) fn learn(&self, source: ColumnSource, columns: Vec<String>) {
        let mut lists = self.lists.write().unwrap_or_else(|e| e.into_inner());
        lists.insert(source, columns.into());
    }

    pub(crate) fn forget(&self) {
        self.lists
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    /// The list of `source`, or the error asking for it.
    pub(crate) fn get(&self, source: &ColumnSource) -> Result<Arc<[String]>, RouteError> {
        let lists = self.lists.read().unwrap_or_else(|e| e.into_inner());
        lists
            .get(source)
            .cloned()
            .ok_or_else(|| RouteError::ColumnsNeeded {
                from: source.clone(),
            })
    }

    /// Whether a template built with `used` still applies: `Ok(false)` when a list changed
    /// since, the error when one was forgotten.
    pub(crate) fn still_fit(&self, used: &[Columns]) -> Result<bool, RouteError> {
        for (source, columns) in used {
            if *self.get(source)? != **columns {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

/// The node of a sharded table that stands for it where one physical table is enough
/// (SHOW COLUMNS, SHOW CREATE TABLE, column lists, the logical view of
/// `information_schema`): the first that holds data.
pub(crate) fn representative_node(table: &ShardedTable) -> usize {
    table.data_nodes().first().copied().unwrap_or(0)
}

/// The (data source, physical table) standing for `logical`: a sharded table's first node
/// holding data, a broadcast table's first copy, a single or unnamed table itself. SHOW
/// CREATE TABLE, the logical view of `information_schema` and SHOW TABLES describe it.
pub fn representative(rules: &Rules, logical: &str) -> Option<(String, String)> {
    let node = match rules.table_rule(logical) {
        TableRoute::Sharded(s) => s.node(representative_node(s))?,
        TableRoute::Broadcast(b) => b.nodes().first()?,
        TableRoute::Single(n) => n,
        TableRoute::Default { data_source } => {
            return Some((data_source.to_owned(), logical.to_owned()))
        }
    };
    Some((node.data_source.clone(), node.table.clone()))
}

/// Where to read the column list of the table `logical`.
pub(crate) fn source_of(rules: &Rules, logical: &str) -> Option<ColumnSource> {
    let (data_source, table) = representative(rules, logical)?;
    let database = rules.data_source(&data_source)?.database.clone();
    Some(ColumnSource {
        data_source,
        database,
        table,
    })
}

/// An INSERT without a column list whose routing depends on the column order (into a sharded
/// table, or a table whose column a sequence fills), written out with the table's columns;
/// `Ok(None)` for any other statement. Rows of another width are refused as the server would.
pub(crate) fn with_insert_columns(
    rules: &Rules,
    known: &KnownColumns,
    stmt: &Statement,
    a: &Analysis,
) -> Result<Option<(Statement, Columns)>, RouteError> {
    let Kind::Insert(ins) = &a.kind else {
        return Ok(None);
    };
    let target = &a.tables[ins.table];
    let ordered =
        ins.key == InsertKey::NoColumnList || rules.sequence_for_table(&target.name).is_some();
    if target.foreign_schema.is_some() || !ordered {
        return Ok(None);
    }
    let Some(rows) = stmt.insert_without_columns() else {
        return Ok(None);
    };
    let source = source_of(rules, &target.name).ok_or_else(|| {
        RouteError::Internal(format!("no physical table stands for {}", target.name))
    })?;
    let columns = known.get(&source)?;
    if let RowsWithoutColumns::Values(widths) = rows {
        if let Some(row) = widths.iter().position(|&w| w != columns.len()) {
            return Err(RouteError::ColumnCount {
                table: target.name.clone(),
                row: row + 1,
                from: source,
            });
        }
    }
    Ok(Some((
        stmt.with_insert_columns(&columns),
        (source, columns),
    )))
}
