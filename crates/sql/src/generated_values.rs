//! INSERT columns a sequence fills: what an INSERT gives one column, and where
//! the generated values go.
//!
//! [`Statement::insert_column`] answers, for any column of an INSERT's target,
//! the question [`crate::Analysis`] answers for the sharding column: is it
//! omitted, and what does each row give it. [`Statement::with_generated`]
//! returns a copy whose rows carry a marker wherever a generated value belongs
//! (the column appended when omitted, `NULL` and `DEFAULT` replaced); rendered,
//! each marker becomes a [`crate::Seg::Generated`] into which the router
//! splices the row's id. Literals and `?` are left in place: whether `0` or a
//! parameter bound to NULL asks for an id is known only per statement.

use sqlparser::ast::{self, Expr, Ident, ObjectName, SetExpr, Value};

use crate::analyze::{assigned_column, insert_column, is_column, key_value, InsertKey, KeyValue};
use crate::parse::{Statement, GENERATED_MARKER};

/// What an INSERT or REPLACE gives one column of its target table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InsertColumn {
    /// `NoColumnList`, `Missing`, `Rows` (VALUES and SET), or
    /// `Select(KeyValue::Other)` for an INSERT … SELECT that names the column.
    pub values: InsertKey,
    /// The statement has a `RETURNING` clause.
    pub returning: bool,
}

impl Statement {
    /// What this INSERT / REPLACE gives `column` (matched ASCII case-insensitively)
    /// of its target; `None` for any other statement.
    pub fn insert_column(&self, column: &str) -> Option<InsertColumn> {
        match &self.ast {
            ast::Statement::Insert(ins) => Some(InsertColumn {
                values: insert_column(ins, column),
                returning: ins.returning.is_some(),
            }),
            _ => None,
        }
    }

    /// A copy in which every row of an INSERT … VALUES or INSERT … SET carries the
    /// generated-value marker for `column`: appended (to the column list and each row,
    /// or to the assignments) when the statement omits the column, in place of `NULL`
    /// and `DEFAULT` where a row gives those. Any other statement is copied unchanged.
    pub fn with_generated(&self, column: &str) -> Statement {
        let mut copy = self.clone();
        if let ast::Statement::Insert(ins) = &mut copy.ast {
            mark(ins, column);
        }
        copy
    }
}

fn marker() -> Expr {
    Expr::Value(Value::Placeholder(GENERATED_MARKER.to_owned()).into())
}

/// The column as an identifier, quoted only when it must be.
fn column_ident(column: &str) -> Ident {
    match crate::quote_ident(column) {
        std::borrow::Cow::Borrowed(_) => Ident::new(column),
        std::borrow::Cow::Owned(_) => Ident::with_quote('`', column),
    }
}

/// Replaces a `NULL` or `DEFAULT` given to `column` by the marker.
fn mark_value(e: &mut Expr, column: &str) {
    if matches!(key_value(e, column), KeyValue::Null | KeyValue::Default) {
        *e = marker();
    }
}

fn mark(ins: &mut ast::Insert, column: &str) {
    let Some(query) = &mut ins.source else {
        let given = ins
            .assignments
            .iter_mut()
            .find(|a| assigned_column(&a.target).is_some_and(|c| c.eq_ignore_ascii_case(column)));
        match given {
            Some(a) => mark_value(&mut a.value, column),
            None => ins.assignments.push(ast::Assignment {
                target: ast::AssignmentTarget::ColumnName(ObjectName::from(vec![column_ident(
                    column,
                )])),
                value: marker(),
            }),
        }
        return;
    };
    let SetExpr::Values(values) = query.body.as_mut() else {
        return;
    };
    if ins.columns.is_empty() {
        return;
    }
    match ins.columns.iter().position(|c| is_column(c, column)) {
        Some(position) => {
            for row in &mut values.rows {
                if let Some(e) = row.content.get_mut(position) {
                    mark_value(e, column);
                }
            }
        }
        None => {
            ins.columns
                .push(ObjectName::from(vec![column_ident(column)]));
            for row in &mut values.rows {
                row.content.push(marker());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fingerprint::fingerprint;
    use crate::parse::parse;
    use crate::{Naming, Seg};

    fn statement(sql: &str) -> Statement {
        let mut s = parse(sql).unwrap().remove(0);
        s.bind_slots(sql, &fingerprint(sql));
        s
    }

    /// The rendering of `sql` with `id` marked, `#` for markers, `$n` for slots.
    fn marked(sql: &str) -> String {
        struct NoKeys;
        impl crate::KeyOracle for NoKeys {
            fn sharding_column(&self, _: &str) -> Option<&str> {
                None
            }
            fn are_bound(&self, _: &str, _: &str) -> bool {
                false
            }
        }
        let s = statement(sql).with_generated("id");
        let a = s.analyze("bank", &NoKeys).unwrap();
        let r = s.render(&a, "bank", &[Naming::Keep], None, true).unwrap();
        let mut out = String::new();
        let rows: Vec<&Vec<Seg>> = r.rows.iter().collect();
        for (k, segs) in std::iter::once(&r.head)
            .chain(rows.iter().copied())
            .chain(std::iter::once(&r.tail))
            .enumerate()
        {
            if k > 1 && k <= rows.len() {
                out.push_str(", ");
            }
            for s in segs {
                match s {
                    Seg::Text(t) => out.push_str(t),
                    Seg::Slot(n) | Seg::SlotInName(n) => out.push_str(&format!("${n}")),
                    Seg::Table(_) => out.push('t'),
                    Seg::Generated => out.push('#'),
                    Seg::Limit => panic!("no LIMIT in an INSERT"),
                }
            }
        }
        out
    }

    #[test]
    fn what_rows_give_a_column() {
        let values = |sql: &str| statement(sql).insert_column("ID").unwrap().values;
        assert_eq!(values("INSERT INTO t (x) VALUES (1)"), InsertKey::Missing);
        assert_eq!(
            values("INSERT INTO t VALUES (1, 2)"),
            InsertKey::NoColumnList
        );
        assert_eq!(
            values("INSERT INTO t (x, id) VALUES (1, NULL), (2, DEFAULT), (3, ?), (4, 1 + 1)"),
            InsertKey::Rows(vec![
                KeyValue::Null,
                KeyValue::Default,
                KeyValue::Slot(3),
                KeyValue::Other
            ])
        );
        assert_eq!(
            values("INSERT INTO t SET x = 1, t.id = 0"),
            InsertKey::Rows(vec![KeyValue::Slot(1)])
        );
        assert_eq!(values("INSERT INTO t SET x = 1"), InsertKey::Missing);
        assert_eq!(
            values("INSERT INTO t (id, x) SELECT a, b FROM u"),
            InsertKey::Select(KeyValue::Other)
        );
        assert_eq!(
            values("INSERT INTO t (x) SELECT b FROM u"),
            InsertKey::Missing
        );
        assert!(
            statement("INSERT INTO t (x) VALUES (1) RETURNING id")
                .insert_column("id")
                .unwrap()
                .returning
        );
        assert_eq!(statement("SELECT 1").insert_column("id"), None);
    }

    #[test]
    fn marks_where_generated_values_go() {
        assert_eq!(
            marked("INSERT INTO t (x) VALUES (1), (2)"),
            "INSERT INTO t (x, id) VALUES ($0, #), ($1, #)"
        );
        assert_eq!(
            marked("REPLACE INTO t (id, x) VALUES (NULL, 'a'), (0, 'b'), (DEFAULT, ?)"),
            "REPLACE INTO t (id, x) VALUES (#, $0), ($1, $2), (#, $3)"
        );
        assert_eq!(
            marked("INSERT INTO t SET x = 1"),
            "INSERT INTO t SET x = $0, id = #"
        );
        assert_eq!(
            marked("INSERT INTO t SET id = NULL, x = 1"),
            "INSERT INTO t SET id = #, x = $0"
        );
        assert_eq!(
            marked("INSERT INTO t (x) SELECT b FROM u"),
            "INSERT INTO t (x) SELECT b FROM u"
        );
    }
}
