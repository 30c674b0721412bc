//! Moving rows by their sharding key: an `UPDATE` whose new key value lives on another
//! shard than the rows it changes runs, on each shard holding such rows, as a locking read
//! of the rows and a delete of the same rows, and on the new key's shard as an insert of
//! the rows with their new values (the executor runs it in one distributed transaction).
//!
//! [`Statement::row_move`] derives the read and the delete from a single-table UPDATE
//! (rendered with physical names and literal slots like any statement) and gives its
//! assignments, whose values must be constants (literals and `?` parameters): the new row
//! is then the old one with those columns replaced, exactly as MariaDB would store it.
//! Any other value (an expression reading the row, a function) cannot be evaluated by the
//! proxy as the server would, and the move is refused naming it.

use sqlparser::ast::{self, AssignmentTarget, Expr, FromTable, SetExpr, UnaryOperator};
use sqlparser::dialect::MySqlDialect;
use sqlparser::parser::Parser;

use crate::parse::Statement;
use crate::rewrite::{segments, Seg};

/// The statements and values of a row move derived from an UPDATE.
#[derive(Debug, Clone)]
pub struct RowMove {
    /// `SELECT * FROM <table> WHERE <condition> FOR UPDATE`: the rows to move, locked.
    pub select: Statement,
    /// `DELETE FROM <table> WHERE <condition>`: removes the same rows from their shard.
    pub delete: Statement,
    /// The assignments in order: the column (as written, unquoted) and its value's segments.
    pub set: Vec<(String, Vec<Seg>)>,
}

impl Statement {
    /// The row move of a single-table UPDATE; `Err` names the construct that prevents it.
    pub fn row_move(&self) -> Result<RowMove, String> {
        let ast::Statement::Update(update) = &self.ast else {
            return Err("a statement that is not an UPDATE".into());
        };
        if let Some(modifiers) = self.extras.update_modifiers {
            if modifiers.contains("IGNORE") {
                return Err("UPDATE IGNORE".into());
            }
        }
        if !update.table.joins.is_empty() || update.from.is_some() {
            return Err("a multi-table UPDATE".into());
        }
        if !update.order_by.is_empty() || update.limit.is_some() {
            return Err("UPDATE … ORDER BY / LIMIT".into());
        }
        let mut set = Vec::with_capacity(update.assignments.len());
        for a in &update.assignments {
            let AssignmentTarget::ColumnName(name) = &a.target else {
                return Err("a tuple assignment".into());
            };
            let column = name
                .0
                .last()
                .and_then(|p| p.as_ident())
                .map(|i| i.value.clone())
                .ok_or_else(|| "an assignment to a column it cannot name".to_owned())?;
            if !is_constant(&a.value) {
                return Err(format!(
                    "SET {column} = <an expression that is not a literal or parameter> (the \
                     proxy cannot evaluate it as MariaDB would)"
                ));
            }
            let value = segments(&a.value.to_string()).map_err(|e| e.to_string())?;
            set.push((column, value));
        }
        let mut select = skeleton("SELECT * FROM t FOR UPDATE")?;
        if let ast::Statement::Query(q) = &mut select {
            if let SetExpr::Select(s) = q.body.as_mut() {
                s.from = vec![update.table.clone()];
                s.selection = update.selection.clone();
            }
        }
        let mut delete = skeleton("DELETE FROM t")?;
        if let ast::Statement::Delete(d) = &mut delete {
            d.from = FromTable::WithFromKeyword(vec![update.table.clone()]);
            d.selection = update.selection.clone();
            // MariaDB's single-table DELETE takes no alias: name the alias as the target.
            if let ast::TableFactor::Table {
                alias: Some(alias), ..
            } = &update.table.relation
            {
                d.tables = vec![ast::ObjectName::from(vec![alias.name.clone()])];
            }
        }
        let derived = |ast| Statement {
            ast,
            extras: crate::mysql_syntax::Extras {
                update_modifiers: None,
                share_mode: false,
                ..self.extras
            },
        };
        Ok(RowMove {
            select: derived(select),
            delete: derived(delete),
            set,
        })
    }
}

/// A statement to fill in, parsed from fixed text.
fn skeleton(text: &str) -> Result<ast::Statement, String> {
    Parser::parse_sql(&MySqlDialect {}, text)
        .map_err(|e| e.to_string())?
        .pop()
        .ok_or_else(|| "no statement".to_owned())
}

/// A value that is the same whatever row it is assigned in: a literal or parameter, signed
/// or introduced (`_binary '…'`, `DATE '…'`), in parentheses.
fn is_constant(e: &Expr) -> bool {
    match e {
        Expr::Value(_) | Expr::TypedString(_) => true,
        Expr::Nested(e) => is_constant(e),
        Expr::UnaryOp {
            op: UnaryOperator::Minus | UnaryOperator::Plus,
            expr,
        } => is_constant(expr),
        Expr::Prefixed { value, .. } => is_constant(value),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use crate::analyze::KeyOracle;
    use crate::rewrite::Naming;

    struct NoKeys;
    impl KeyOracle for NoKeys {
        fn sharding_column(&self, _: &str) -> Option<&str> {
            None
        }
        fn are_bound(&self, _: &str, _: &str) -> bool {
            false
        }
    }

    /// The read, the delete and the assignments, printed.
    type Moved = (String, String, Vec<(String, String)>);

    fn moved(sql: &str) -> Result<Moved, String> {
        let stmt = crate::parse(sql).map_err(|e| e.to_string())?.remove(0);
        let m = stmt.row_move()?;
        let print = |s: &crate::Statement| {
            let a = s.analyze("db", &NoKeys).expect("analysed");
            let naming = vec![Naming::Keep; a.tables.len()];
            let r = s.render(&a, "db", &naming, None, false).expect("rendered");
            r.head
                .iter()
                .map(|seg| match seg {
                    crate::Seg::Text(t) => t.clone(),
                    other => format!("{other:?}"),
                })
                .collect::<String>()
        };
        let set = m
            .set
            .iter()
            .map(|(c, v)| (c.clone(), format!("{v:?}")))
            .collect();
        Ok((print(&m.select), print(&m.delete), set))
    }

    #[test]
    fn derives_the_read_and_the_delete() {
        let (select, delete, set) =
            moved("UPDATE account SET uid = 7, name = 'x', note = NULL WHERE uid = 3 AND id > 1")
                .expect("a move");
        assert_eq!(
            select,
            "SELECT * FROM account WHERE uid = 3 AND id > 1 FOR UPDATE"
        );
        assert_eq!(delete, "DELETE FROM account WHERE uid = 3 AND id > 1");
        assert_eq!(set.len(), 3);
        assert_eq!(set[2], ("note".into(), r#"[Text("NULL")]"#.into()));
    }

    #[test]
    fn an_alias_is_the_delete_target() {
        let (select, delete, _) =
            moved("UPDATE account AS a SET a.uid = -7 WHERE a.uid = 3").expect("a move");
        assert_eq!(
            select,
            "SELECT * FROM account AS a WHERE a.uid = 3 FOR UPDATE"
        );
        assert_eq!(delete, "DELETE a FROM account AS a WHERE a.uid = 3");
    }

    #[test]
    fn refuses_what_it_cannot_evaluate() {
        for (sql, named) in [
            ("UPDATE t SET uid = 7, n = n + 1 WHERE uid = 3", "SET n ="),
            ("UPDATE t SET uid = 7, at = NOW() WHERE uid = 3", "SET at ="),
            ("UPDATE t SET uid = 7 WHERE uid = 3 LIMIT 1", "LIMIT"),
            ("UPDATE t SET uid = 7 WHERE uid = 3 ORDER BY id", "ORDER BY"),
            ("UPDATE IGNORE t SET uid = 7 WHERE uid = 3", "UPDATE IGNORE"),
            (
                "UPDATE t JOIN u ON t.id = u.id SET t.uid = 7 WHERE u.x = 1",
                "multi-table",
            ),
        ] {
            let err = moved(sql).expect_err(sql);
            assert!(err.contains(named), "{sql}: {err}");
        }
    }
}
