//! The proxy's process list in a statement: every `information_schema.PROCESSLIST` it reads
//! becomes a derived table of rows the proxy gives (its own sessions), so a backend evaluates
//! the rest of the statement (WHERE, joins, aggregates, ORDER BY) without ever reading its own
//! process list.

use std::ops::ControlFlow;

use sqlparser::ast::{self, TableFactor, VisitMut, VisitorMut};

use crate::analyze::name_parts;
use crate::information_schema::{derived_table, parser, INFORMATION_SCHEMA};
use crate::parse::parse;
use crate::SqlError;

const PROCESSLIST: &str = "PROCESSLIST";

/// `sql` reading `rows` (a query with the columns of `information_schema.PROCESSLIST`)
/// wherever it reads that table — also unqualified when `information_schema` is the current
/// database. `None` when it reads no such table (`PROCESSLIST` is then a name of the client's
/// own, or not a table).
pub fn with_processlist_rows(
    sql: &str,
    rows: &str,
    in_information_schema: bool,
) -> Result<Option<String>, SqlError> {
    let mut statements = parse(sql)?;
    let rows = parser(rows)?
        .parse_query()
        .map_err(|e| SqlError::Render(e.to_string()))?;
    let mut replacer = Replacer {
        rows,
        in_information_schema,
        replaced: false,
    };
    for statement in &mut statements {
        let _ = statement.ast.visit(&mut replacer);
    }
    if !replacer.replaced {
        return Ok(None);
    }
    let texts: Vec<String> = statements.iter().map(|s| s.ast.to_string()).collect();
    Ok(Some(texts.join(";\n")))
}

struct Replacer {
    rows: Box<ast::Query>,
    in_information_schema: bool,
    replaced: bool,
}

impl VisitorMut for Replacer {
    type Break = ();

    fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<()> {
        let TableFactor::Table { name, alias, .. } = factor else {
            return ControlFlow::Continue(());
        };
        let parts = name_parts(name);
        let is_processlist = match parts.as_slice() {
            [db, t] => {
                db.eq_ignore_ascii_case(INFORMATION_SCHEMA) && t.eq_ignore_ascii_case(PROCESSLIST)
            }
            [t] => self.in_information_schema && t.eq_ignore_ascii_case(PROCESSLIST),
            _ => false,
        };
        if !is_processlist {
            return ControlFlow::Continue(());
        }
        let alias = alias
            .as_ref()
            .map_or_else(|| ast::Ident::new(PROCESSLIST), |a| a.name.clone());
        *factor = derived_table(self.rows.clone(), alias);
        self.replaced = true;
        ControlFlow::Continue(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROWS: &str = "SELECT 7 AS ID, 'u' AS USER";

    #[test]
    fn replaces_every_read_of_the_process_list() {
        let out = with_processlist_rows(
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST p WHERE p.ID IN \
             (SELECT ID FROM `INFORMATION_SCHEMA`.`processlist`)",
            ROWS,
            false,
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            out,
            "SELECT COUNT(*) FROM (SELECT 7 AS ID, 'u' AS USER) AS p WHERE p.ID IN \
             (SELECT ID FROM (SELECT 7 AS ID, 'u' AS USER) AS PROCESSLIST)"
        );
        assert!(
            out.to_ascii_lowercase()
                .matches("information_schema")
                .count()
                == 0
        );
    }

    #[test]
    fn unqualified_names_are_the_system_table_only_in_information_schema() {
        let sql = "SELECT * FROM processlist";
        assert_eq!(with_processlist_rows(sql, ROWS, false).unwrap(), None);
        assert_eq!(
            with_processlist_rows(sql, ROWS, true).unwrap().as_deref(),
            Some("SELECT * FROM (SELECT 7 AS ID, 'u' AS USER) AS PROCESSLIST")
        );
    }
}
