//! What the follower asks of the source with ordinary queries: whether it can be followed
//! at all, and the names, signedness and primary key of a table's columns (a TABLE_MAP
//! carries none of them unless `binlog_row_metadata=FULL`, which sources rarely have).

use std::sync::Arc;

use backend::{quote_literal, BackendConn, ConnectOptions};

use crate::position::GtidPosition;
use crate::BinlogError;

/// A table by its physical names on a server.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TableRef {
    pub database: String,
    pub table: String,
}

/// A table's columns as the source defines them, in table order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSchema {
    pub columns: Vec<String>,
    /// Positions in `columns` of the primary key's columns, in key order; empty without one.
    pub primary_key: Vec<usize>,
    /// Whether each column is an UNSIGNED integer.
    pub unsigned: Vec<bool>,
    /// Whether each column is generated (VIRTUAL or PERSISTENT): its value is computed on
    /// the destination, never written.
    pub generated: Vec<bool>,
}

/// Checks that `options`' server can be followed (log_bin=ON, binlog_format=ROW,
/// binlog_row_image=FULL, uncompressed binlog) and returns its `@@gtid_binlog_pos`.
pub async fn check_source(options: &ConnectOptions) -> Result<GtidPosition, BinlogError> {
    let mut conn = BackendConn::connect(options).await?;
    let result = conn
        .query(
            "SELECT @@log_bin, @@binlog_format, @@binlog_row_image, @@log_bin_compress, \
             @@gtid_binlog_pos",
        )
        .await?;
    let row = result.rows.first().cloned().unwrap_or_default();
    let get = |i: usize| row.get(i).cloned().flatten().unwrap_or_default();
    let refuse = |setting, value: String, wanted, fix| BinlogError::SourceSetting {
        source_name: options.source_name.clone(),
        setting,
        value,
        wanted,
        fix,
    };
    if get(0) != "1" {
        return Err(refuse(
            "log_bin",
            "OFF".into(),
            "ON",
            "start mariadbd with --log-bin (and a unique --server-id)",
        ));
    }
    if !get(1).eq_ignore_ascii_case("ROW") {
        return Err(refuse(
            "binlog_format",
            get(1),
            "ROW",
            "SET GLOBAL binlog_format=ROW and put binlog_format=ROW in the server's configuration",
        ));
    }
    if !get(2).eq_ignore_ascii_case("FULL") {
        return Err(refuse(
            "binlog_row_image",
            get(2),
            "FULL",
            "SET GLOBAL binlog_row_image=FULL and put it in the server's configuration",
        ));
    }
    if get(3) != "0" {
        return Err(refuse(
            "log_bin_compress",
            "ON".into(),
            "OFF",
            "SET GLOBAL log_bin_compress=OFF: dbmesh does not decode compressed events",
        ));
    }
    get(4).parse()
}

/// Reads `table`'s definition from the source's information_schema.
pub async fn table_schema(
    conn: &mut BackendConn,
    table: &TableRef,
) -> Result<Arc<TableSchema>, BinlogError> {
    let filter = format!(
        "TABLE_SCHEMA = {} AND TABLE_NAME = {}",
        quote_literal(&table.database),
        quote_literal(&table.table)
    );
    let columns = conn
        .query(&format!(
            "SELECT COLUMN_NAME, COLUMN_TYPE, EXTRA FROM information_schema.COLUMNS \
             WHERE {filter} ORDER BY ORDINAL_POSITION"
        ))
        .await?;
    let keys = conn
        .query(&format!(
            "SELECT COLUMN_NAME FROM information_schema.STATISTICS \
             WHERE {filter} AND INDEX_NAME = 'PRIMARY' ORDER BY SEQ_IN_INDEX"
        ))
        .await?;
    let text =
        |row: &Vec<Option<String>>, i: usize| row.get(i).cloned().flatten().unwrap_or_default();
    let names: Vec<String> = columns.rows.iter().map(|r| text(r, 0)).collect();
    let primary_key = keys
        .rows
        .iter()
        .filter_map(|r| names.iter().position(|n| *n == text(r, 0)))
        .collect();
    Ok(Arc::new(TableSchema {
        unsigned: columns
            .rows
            .iter()
            .map(|r| text(r, 1).to_ascii_lowercase().contains("unsigned"))
            .collect(),
        generated: columns
            .rows
            .iter()
            .map(|r| {
                let extra = text(r, 2).to_ascii_uppercase();
                extra.contains("VIRTUAL")
                    || extra.contains("PERSISTENT")
                    || extra.contains("STORED")
            })
            .collect(),
        columns: names,
        primary_key,
    }))
}
