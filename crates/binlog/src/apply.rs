//! What a source transaction becomes on the destination: the routed row changes as
//! idempotent statements (pure), and running them in one destination transaction.
//!
//! Idempotent so that a replay from an older position converges: an insert is a REPLACE of
//! the full row image, a delete a DELETE by primary key, an update that stays in its
//! destination table with its key a REPLACE of the after image, and any other update a
//! DELETE of the before key where it was routed plus a REPLACE of the after image where it
//! is routed.

use std::sync::Arc;

use backend::BackendConn;

use crate::source::{TableRef, TableSchema};
use crate::stream::{ChangeKind, RowChange};
use crate::value::Value;
use crate::BinlogError;

/// Where a row lives on the destination, from its source table, definition and row image;
/// `None` for a row that is not followed.
pub type Route = Arc<dyn Fn(&TableRef, &TableSchema, &[Value]) -> Option<TableRef> + Send + Sync>;

/// One idempotent change on the destination.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Op {
    Replace {
        table: TableRef,
        schema: Arc<TableSchema>,
        row: Vec<Value>,
    },
    Delete {
        table: TableRef,
        schema: Arc<TableSchema>,
        key: Vec<Value>,
    },
}

/// The destination changes of one source transaction, in its order.
pub(crate) fn plan(changes: &[RowChange], route: &Route) -> Result<Vec<Op>, BinlogError> {
    let mut ops = Vec::new();
    for change in changes {
        let schema = &change.schema;
        let routed = |row: &[Value]| -> Result<Option<TableRef>, BinlogError> {
            let to = route(&change.table, schema, row);
            if to.is_some() && schema.primary_key.is_empty() {
                return Err(BinlogError::NoPrimaryKey {
                    database: change.table.database.clone(),
                    table: change.table.table.clone(),
                });
            }
            Ok(to)
        };
        let key = |row: &[Value]| -> Vec<Value> {
            schema.primary_key.iter().map(|&i| row[i].clone()).collect()
        };
        let replace = |table, row: &[Value]| Op::Replace {
            table,
            schema: schema.clone(),
            row: row.to_vec(),
        };
        let delete = |table, row: &[Value]| Op::Delete {
            table,
            schema: schema.clone(),
            key: key(row),
        };
        match &change.kind {
            ChangeKind::Insert { after } => {
                if let Some(to) = routed(after)? {
                    ops.push(replace(to, after));
                }
            }
            ChangeKind::Delete { before } => {
                if let Some(from) = routed(before)? {
                    ops.push(delete(from, before));
                }
            }
            ChangeKind::Update { before, after } => {
                let from = routed(before)?;
                let to = routed(after)?;
                match (from, to) {
                    (Some(from), Some(to)) if from == to && key(before) == key(after) => {
                        ops.push(replace(to, after));
                    }
                    (from, to) => {
                        if let Some(from) = from {
                            ops.push(delete(from, before));
                        }
                        if let Some(to) = to {
                            ops.push(replace(to, after));
                        }
                    }
                }
            }
        }
    }
    Ok(ops)
}

/// An identifier quoted for MariaDB.
fn ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

fn table_name(table: &TableRef) -> String {
    format!("{}.{}", ident(&table.database), ident(&table.table))
}

/// The SQL of `ops`: consecutive REPLACEs into one table share a statement, as do
/// consecutive DELETEs from one table, each statement up to about `max_statement` bytes.
pub(crate) fn statements(ops: &[Op], max_statement: usize) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    // The operation kind, table and definition the last statement is for: rows of the same
    // may join it.
    let mut open: Option<(bool, &TableRef, &Arc<TableSchema>)> = None;
    for op in ops {
        match op {
            Op::Replace { table, schema, row } => {
                let values = row
                    .iter()
                    .zip(&schema.generated)
                    .filter(|(_, &generated)| !generated)
                    .map(|(v, _)| v.sql_literal())
                    .collect::<Vec<_>>()
                    .join(",");
                match (open, out.last_mut()) {
                    (Some((true, t, s)), Some(last))
                        if t == table && Arc::ptr_eq(s, schema) && last.len() < max_statement =>
                    {
                        last.push_str(",(");
                        last.push_str(&values);
                        last.push(')');
                    }
                    _ => {
                        let columns = schema
                            .columns
                            .iter()
                            .zip(&schema.generated)
                            .filter(|(_, &generated)| !generated)
                            .map(|(c, _)| ident(c))
                            .collect::<Vec<_>>()
                            .join(",");
                        out.push(format!(
                            "REPLACE INTO {} ({columns}) VALUES ({values})",
                            table_name(table)
                        ));
                        open = Some((true, table, schema));
                    }
                }
            }
            Op::Delete { table, schema, key } => {
                let tuple = key
                    .iter()
                    .map(Value::sql_literal)
                    .collect::<Vec<_>>()
                    .join(",");
                match (open, out.last_mut()) {
                    (Some((false, t, s)), Some(last))
                        if t == table && Arc::ptr_eq(s, schema) && last.len() < max_statement =>
                    {
                        // Reopen the IN list: it ends with "))".
                        last.truncate(last.len() - 1);
                        last.push_str(&format!(",({tuple}))"));
                    }
                    _ => {
                        let columns = schema
                            .primary_key
                            .iter()
                            .map(|&i| ident(&schema.columns[i]))
                            .collect::<Vec<_>>()
                            .join(",");
                        out.push(format!(
                            "DELETE FROM {} WHERE ({columns}) IN (({tuple}))",
                            table_name(table)
                        ));
                        open = Some((false, table, schema));
                    }
                }
            }
        }
    }
    out
}

/// Runs `statements` in one destination transaction, sent in as few round trips as the
/// packet size allows (multi-statement COM_QUERYs of up to `max_packet` bytes).
pub(crate) async fn run_transaction(
    conn: &mut BackendConn,
    statements: &[String],
    max_packet: usize,
) -> Result<(), BinlogError> {
    let mut batch = String::from("START TRANSACTION");
    for statement in statements {
        if batch.len() + statement.len() > max_packet {
            conn.query(&batch).await?;
            batch.clear();
        } else {
            batch.push(';');
        }
        batch.push_str(statement);
    }
    batch.push_str(";COMMIT");
    conn.query(&batch).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> Arc<TableSchema> {
        Arc::new(TableSchema {
            columns: vec!["uid".into(), "bal".into(), "g".into()],
            primary_key: vec![0],
            unsigned: vec![false; 3],
            generated: vec![false, false, true],
        })
    }

    fn table(name: &str) -> TableRef {
        TableRef {
            database: "app".into(),
            table: name.into(),
        }
    }

    fn change(kind: ChangeKind, schema: &Arc<TableSchema>) -> RowChange {
        RowChange {
            table: Arc::new(table("acct")),
            schema: schema.clone(),
            kind,
        }
    }

    fn row(uid: i64, bal: i64) -> Vec<Value> {
        vec![Value::Int(uid), Value::Int(bal), Value::Int(uid + 1)]
    }

    /// Rows whose uid % 100 is in 30..45 go to `dst.acct`.
    fn route() -> Route {
        Arc::new(|_, _, row| match row[0] {
            Value::Int(uid) if (30..45).contains(&(uid % 100)) => Some(TableRef {
                database: "dst".into(),
                table: "acct".into(),
            }),
            _ => None,
        })
    }

    fn sql(changes: Vec<ChangeKind>) -> Vec<String> {
        let schema = schema();
        let changes: Vec<RowChange> = changes.into_iter().map(|c| change(c, &schema)).collect();
        statements(&plan(&changes, &route()).expect("plans"), 1 << 20)
    }

    #[test]
    fn inserts_and_deletes_of_routed_rows_only() {
        assert_eq!(
            sql(vec![
                ChangeKind::Insert { after: row(31, 5) },
                ChangeKind::Insert { after: row(50, 5) },
                ChangeKind::Insert { after: row(132, 6) },
                ChangeKind::Delete { before: row(33, 0) },
                ChangeKind::Delete { before: row(34, 0) },
                ChangeKind::Delete { before: row(1, 0) },
            ]),
            [
                "REPLACE INTO `dst`.`acct` (`uid`,`bal`) VALUES (31,5),(132,6)",
                "DELETE FROM `dst`.`acct` WHERE (`uid`) IN ((33),(34))",
            ]
        );
    }

    #[test]
    fn updates_by_where_the_row_was_and_goes() {
        let update = |b, a| ChangeKind::Update {
            before: b,
            after: a,
        };
        assert_eq!(
            sql(vec![update(row(31, 1), row(31, 2))]),
            ["REPLACE INTO `dst`.`acct` (`uid`,`bal`) VALUES (31,2)"],
            "in place"
        );
        assert_eq!(
            sql(vec![update(row(31, 1), row(32, 1))]),
            [
                "DELETE FROM `dst`.`acct` WHERE (`uid`) IN ((31))",
                "REPLACE INTO `dst`.`acct` (`uid`,`bal`) VALUES (32,1)"
            ],
            "key changed"
        );
        assert_eq!(
            sql(vec![update(row(10, 1), row(35, 1))]),
            ["REPLACE INTO `dst`.`acct` (`uid`,`bal`) VALUES (35,1)"],
            "moved in"
        );
        assert_eq!(
            sql(vec![update(row(35, 1), row(50, 1))]),
            ["DELETE FROM `dst`.`acct` WHERE (`uid`) IN ((35))"],
            "moved out"
        );
        assert!(sql(vec![update(row(1, 1), row(2, 1))]).is_empty());
    }

    #[test]
    fn a_routed_table_without_primary_key_is_refused() {
        let no_primary_key = Arc::new(TableSchema {
            primary_key: Vec::new(),
            ..(*schema()).clone()
        });
        let mut no_key = change(ChangeKind::Insert { after: row(31, 1) }, &no_primary_key);
        let error = plan(&[no_key.clone()], &route()).expect_err("refused");
        assert!(error.to_string().contains("has no primary key"), "{error}");
        no_key.kind = ChangeKind::Insert { after: row(1, 1) };
        assert_eq!(plan(&[no_key], &route()).expect("not routed"), []);
    }
}
