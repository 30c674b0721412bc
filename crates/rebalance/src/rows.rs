//! A moving table's rows as SQL: the columns read and written (generated ones are computed
//! by the destination), each cell as the literal that stores the same value, and the
//! primary-key order and keyset conditions of the chunks.
//!
//! Cells are read with the text protocol and written back as literals: integers and decimals
//! as their digits (exact, and comparable with an index), every other value as a hex string
//! in the character set the server sent it in (`_utf8mb4 X'C3A9'`), which stores the bytes
//! the row had in any column type; FLOAT columns are read as `CAST(... AS DOUBLE)`, whose
//! text is exact where a FLOAT's own text is rounded.

use std::fmt::Write;
use std::sync::Arc;

use backend::{BackendConn, RawResult};
use binlog::{TableRef, TableSchema};
use protocol::constants::column_type;
use protocol::resultset::ColumnDef;

use crate::plan::{ident, PhysicalTable};
use crate::RebalanceError;

/// The most bytes of rows one read may hold (a chunk, a verification's keys): the copy's
/// memory bound. A chunk past it fails, naming `--chunk-rows`.
pub(crate) const MAX_READ_BYTES: usize = 64 << 20;

/// How a table's rows are read, compared and written.
#[derive(Debug, Clone)]
pub(crate) struct TableColumns {
    /// The columns written (not generated), in table order, quoted.
    pub names: Vec<String>,
    /// What is selected for each of `names`.
    pub select: Vec<String>,
    /// Positions in `names` of the primary key's columns, in key order.
    pub key: Vec<usize>,
    /// The column definitions of the selected values.
    pub defs: Vec<ColumnDef>,
}

impl TableColumns {
    /// Reads `table`'s definition on `conn` (its source).
    pub async fn read(
        conn: &mut BackendConn,
        table: &PhysicalTable,
    ) -> Result<TableColumns, RebalanceError> {
        let schema: Arc<TableSchema> = binlog::table_schema(
            conn,
            &TableRef {
                database: table.database.clone(),
                table: table.table.clone(),
            },
        )
        .await?;
        if schema.primary_key.is_empty() {
            return Err(RebalanceError::NoPrimaryKey {
                table: table.node_name(),
            });
        }
        let written: Vec<usize> = (0..schema.columns.len())
            .filter(|&i| !schema.generated[i])
            .collect();
        let names: Vec<String> = written.iter().map(|&i| ident(&schema.columns[i])).collect();
        let key = schema
            .primary_key
            .iter()
            .map(|k| written.iter().position(|w| w == k))
            .collect::<Option<Vec<usize>>>()
            .ok_or_else(|| RebalanceError::NoPrimaryKey {
                table: format!(
                    "{} (its primary key has a generated column)",
                    table.node_name()
                ),
            })?;
        let probe = conn
            .query_raw(
                &format!(
                    "SELECT {} FROM {} LIMIT 0",
                    names.join(", "),
                    table.sql_name()
                ),
                0,
            )
            .await?;
        let select: Vec<String> = names
            .iter()
            .zip(&probe.columns)
            .map(|(name, def)| {
                if def.column_type == column_type::FLOAT {
                    format!("CAST({name} AS DOUBLE)")
                } else {
                    name.clone()
                }
            })
            .collect();
        let defs = conn
            .query_raw(
                &format!(
                    "SELECT {} FROM {} LIMIT 0",
                    select_list(&select),
                    table.sql_name()
                ),
                0,
            )
            .await?
            .columns;
        Ok(TableColumns {
            names,
            select,
            key,
            defs,
        })
    }

    pub fn select_list(&self) -> String {
        select_list(&self.select)
    }

    /// `k1, k2`: the primary key's order.
    pub fn key_order(&self) -> String {
        self.key
            .iter()
            .map(|&k| self.names[k].as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The key of `row` (a row read with [`TableColumns::select_list`]) as literals.
    pub fn key_of(&self, row: &[Option<Vec<u8>>]) -> Result<Vec<String>, RebalanceError> {
        self.key
            .iter()
            .map(|&k| literal(&self.defs[k], row[k].as_deref()))
            .collect()
    }

    /// The key of a row of the key columns alone (selected in [`TableColumns::key_order`]).
    pub fn key_of_key_row(&self, row: &[Option<Vec<u8>>]) -> Result<Vec<String>, RebalanceError> {
        self.key
            .iter()
            .zip(row)
            .map(|(&k, cell)| literal(&self.defs[k], cell.as_deref()))
            .collect()
    }

    /// The rows whose key sorts after `key` (literals in key order).
    pub fn after(&self, key: &[String]) -> String {
        keyset(&self.key_names(), key, ">", ">")
    }

    /// The rows whose key sorts at or before `key`.
    pub fn through(&self, key: &[String]) -> String {
        keyset(&self.key_names(), key, "<", "<=")
    }

    fn key_names(&self) -> Vec<&str> {
        self.key.iter().map(|&k| self.names[k].as_str()).collect()
    }

    /// `REPLACE INTO table (...) VALUES ...` of `rows`, in statements of about
    /// `max_statement` bytes each.
    pub fn replace_statements(
        &self,
        table: &PhysicalTable,
        rows: &RawResult,
        max_statement: usize,
    ) -> Result<Vec<String>, RebalanceError> {
        let head = format!(
            "REPLACE INTO {} ({}) VALUES ",
            table.sql_name(),
            self.names.join(", ")
        );
        let mut statements = Vec::new();
        let mut sql = String::new();
        for row in &rows.rows {
            if sql.len() >= max_statement {
                statements.push(std::mem::take(&mut sql));
            }
            sql.push_str(if sql.is_empty() { &head } else { ", " });
            sql.push('(');
            for (i, cell) in row.iter().enumerate() {
                if i > 0 {
                    sql.push_str(", ");
                }
                sql.push_str(&literal(&self.defs[i], cell.as_deref())?);
            }
            sql.push(')');
        }
        if !sql.is_empty() {
            statements.push(sql);
        }
        Ok(statements)
    }
}

/// `(k1 > v1 OR (k1 = v1 AND (k2 > v2)))` for `before` `>` and `last` `>`: the rows
/// ordered after (or, with `<` and `<=`, through) a key; the form the range optimizer
/// reads as ranges of the primary key.
fn keyset(names: &[&str], values: &[String], before: &str, last: &str) -> String {
    let mut condition = String::new();
    for (i, (name, value)) in names.iter().zip(values).enumerate().rev() {
        condition = if i + 1 == names.len() {
            format!("{name} {last} {value}")
        } else {
            format!("({name} {before} {value} OR ({name} = {value} AND {condition}))")
        };
    }
    condition
}

fn select_list(select: &[String]) -> String {
    select.join(", ")
}

/// The literal storing `cell` (as the text protocol sent it) into a column like `column`.
pub(crate) fn literal(column: &ColumnDef, cell: Option<&[u8]>) -> Result<String, RebalanceError> {
    let Some(bytes) = cell else {
        return Ok("NULL".into());
    };
    let numeric = matches!(
        column.column_type,
        column_type::TINY
            | column_type::SHORT
            | column_type::INT24
            | column_type::LONG
            | column_type::LONGLONG
            | column_type::YEAR
            | column_type::DECIMAL
            | column_type::NEWDECIMAL
            | column_type::DOUBLE
    );
    if numeric && !bytes.is_empty() && bytes.iter().all(|b| b"0123456789+-.eE".contains(b)) {
        return Ok(String::from_utf8_lossy(bytes).into_owned());
    }
    let charset = u8::try_from(column.collation)
        .ok()
        .and_then(protocol::text::charset_of_collation)
        .ok_or_else(|| {
            RebalanceError::refused(format!(
                "column {} came in collation {}, whose character set dbmesh does not know",
                column.org_name, column.collation
            ))
        })?;
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(bytes.len() * 2 + charset.len() + 4);
    let _ = write!(out, "_{charset} X'");
    // Byte by byte through a table: the copy's hottest loop.
    for b in bytes {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
    out.push('\'');
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keysets_order_by_each_key_column_in_turn() {
        let values = ["10".to_string(), "_utf8mb4 X'41'".to_string()];
        assert_eq!(keyset(&["`a`"], &values[..1], ">", ">"), "`a` > 10");
        assert_eq!(
            keyset(&["`a`", "`b`"], &values, "<", "<="),
            "(`a` < 10 OR (`a` = 10 AND `b` <= _utf8mb4 X'41'))"
        );
    }

    #[test]
    fn numbers_stay_digits_and_everything_else_is_hex() {
        let column = |column_type, collation| ColumnDef {
            column_type,
            collation,
            ..ColumnDef::varchar("c", 10)
        };
        let int = column(column_type::LONGLONG, 63);
        assert_eq!(literal(&int, Some(b"-42")).ok(), Some("-42".into()));
        assert_eq!(literal(&int, None).ok(), Some("NULL".into()));
        let text = column(column_type::VAR_STRING, 45);
        assert_eq!(
            literal(&text, Some("é'".as_bytes())).ok(),
            Some("_utf8mb4 X'C3A927'".into())
        );
        assert_eq!(literal(&text, Some(b"")).ok(), Some("_utf8mb4 X''".into()));
        let date = column(column_type::DATE, 63);
        assert_eq!(
            literal(&date, Some(b"2024-02-29")).ok(),
            Some("_binary X'323032342D30322D3239'".into())
        );
    }
}
