//! INSERTs without a column list: `INSERT INTO t VALUES (…)` gives every column of `t` in
//! the table's order, which only the table's definition tells. The caller looks the column
//! list up and routes the statement as if it had been written out
//! ([`Statement::with_insert_columns`]); [`Statement::insert_without_columns`] says when
//! that is needed and how wide the rows are.

use sqlparser::ast::{self, Ident, ObjectName, SetExpr};

use crate::parse::Statement;

/// The rows of an INSERT / REPLACE without a column list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RowsWithoutColumns {
    /// `VALUES`: the number of values of each row.
    Values(Vec<usize>),
    /// `SELECT` (or another query): its columns fill the table's.
    Query,
}

impl Statement {
    /// For an INSERT or REPLACE with rows but no column list, what the rows are; `None` for
    /// any other statement, and for `VALUES ()` (every column's default, no list needed).
    pub fn insert_without_columns(&self) -> Option<RowsWithoutColumns> {
        let ast::Statement::Insert(ins) = &self.ast else {
            return None;
        };
        if !ins.columns.is_empty() {
            return None;
        }
        let query = ins.source.as_ref()?;
        match query.body.as_ref() {
            SetExpr::Values(v) => {
                let widths: Vec<usize> = v.rows.iter().map(|r| r.content.len()).collect();
                widths
                    .iter()
                    .any(|&w| w > 0)
                    .then_some(RowsWithoutColumns::Values(widths))
            }
            _ => Some(RowsWithoutColumns::Query),
        }
    }

    /// A copy of this INSERT with `columns` as its column list (any other statement is
    /// copied unchanged).
    pub fn with_insert_columns(&self, columns: &[String]) -> Statement {
        let mut copy = self.clone();
        if let ast::Statement::Insert(ins) = &mut copy.ast {
            ins.columns = columns
                .iter()
                .map(|c| {
                    let ident = match crate::quote_ident(c) {
                        std::borrow::Cow::Borrowed(_) => Ident::new(c.as_str()),
                        std::borrow::Cow::Owned(_) => Ident::with_quote('`', c.as_str()),
                    };
                    ObjectName::from(vec![ident])
                })
                .collect();
        }
        copy
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::parse;

    fn statement(sql: &str) -> Statement {
        parse(sql).unwrap().remove(0)
    }

    #[test]
    fn says_which_inserts_lack_a_column_list() {
        assert_eq!(
            statement("INSERT INTO t VALUES (1, 2), (3, 4, 5)").insert_without_columns(),
            Some(RowsWithoutColumns::Values(vec![2, 3]))
        );
        assert_eq!(
            statement("REPLACE INTO t SELECT * FROM u").insert_without_columns(),
            Some(RowsWithoutColumns::Query)
        );
        assert_eq!(
            statement("INSERT INTO t VALUES ()").insert_without_columns(),
            None
        );
        assert_eq!(
            statement("INSERT INTO t (a) VALUES (1)").insert_without_columns(),
            None
        );
        assert_eq!(
            statement("INSERT INTO t SET a = 1").insert_without_columns(),
            None
        );
        assert_eq!(statement("SELECT 1").insert_without_columns(), None);
    }

    #[test]
    fn writes_the_column_list_out() {
        let s = statement("INSERT INTO t VALUES (1, 'x') ON DUPLICATE KEY UPDATE b = 'y'")
            .with_insert_columns(&["a".into(), "b".into(), "order".into()]);
        assert_eq!(
            s.to_string(),
            "INSERT INTO t (a, b, `order`) VALUES (1, 'x') ON DUPLICATE KEY UPDATE b = 'y'"
        );
    }
}
