//! Table maintenance: `ANALYZE`, `CHECK`, `OPTIMIZE` and `REPAIR TABLE` of logical tables run
//! on every physical table standing for them (a sharded table's shards, a broadcast table's
//! copies), one statement per data source naming its physical tables, options kept. The
//! answers are concatenated: one row per physical table, its `Table` column naming the
//! physical database and table (`bank_0.payment_3`), so a DBA can tell them apart.

use rules::{PhysicalNode, Rules, TableRoute};
use sql::{Lexer, Tok};

use crate::plan::{Combine, MergeSpec, Plan, StatementKind, Target};
use crate::RouteError;

/// A maintenance statement as written: what precedes the table list, the tables (schema and
/// name, unquoted), and what follows it.
#[derive(Debug, PartialEq, Eq)]
struct Maintenance<'a> {
    /// `ANALYZE NO_WRITE_TO_BINLOG TABLE`, as written.
    head: &'a str,
    /// The first word, upper case, for messages.
    verb: String,
    tables: Vec<(Option<String>, String)>,
    /// The options after the list (`EXTENDED`, `PERSISTENT FOR ALL`), as written.
    rest: &'a str,
}

/// `sql` read as a maintenance statement; `None` for any other statement, including
/// MariaDB's `ANALYZE SELECT …` and `CHECKSUM TABLE`.
fn parse(sql: &str) -> Option<Maintenance<'_>> {
    let mut lexer = Lexer::new(sql);
    let mut tokens = Vec::new();
    while let Some(t) = lexer.next_token() {
        tokens.push(t);
    }
    let word = |i: usize| -> Option<&str> {
        let t = tokens.get(i)?;
        (t.kind == Tok::Word)
            .then(|| sql.get(t.start..t.end))
            .flatten()
    };
    let verb = word(0)?.to_ascii_uppercase();
    if !matches!(verb.as_str(), "ANALYZE" | "CHECK" | "OPTIMIZE" | "REPAIR") {
        return None;
    }
    let mut at = 1;
    if verb != "CHECK"
        && word(1).is_some_and(|w| {
            w.eq_ignore_ascii_case("NO_WRITE_TO_BINLOG") || w.eq_ignore_ascii_case("LOCAL")
        })
    {
        at = 2;
    }
    if !word(at)
        .is_some_and(|w| w.eq_ignore_ascii_case("TABLE") || w.eq_ignore_ascii_case("TABLES"))
    {
        return None;
    }
    let head = sql.get(..tokens[at].end)?;
    let name = |i: usize| -> Option<String> {
        let t = tokens.get(i)?;
        let text = sql.get(t.start..t.end)?;
        match t.kind {
            Tok::Word => Some(text.to_owned()),
            Tok::QuotedIdent => Some(text[1..text.len() - 1].replace("``", "`")),
            _ => None,
        }
    };
    let punct = |i: usize, c: u8| tokens.get(i).is_some_and(|t| t.kind == Tok::Punct(c));
    let mut tables = Vec::new();
    let mut i = at + 1;
    loop {
        let first = name(i)?;
        let table = if punct(i + 1, b'.') {
            i += 3;
            (Some(first), name(i - 1)?)
        } else {
            i += 1;
            (None, first)
        };
        tables.push(table);
        if punct(i, b',') {
            i += 1;
        } else {
            break;
        }
    }
    let rest_from = tokens.get(i).map_or(sql.len(), |t| t.start);
    let rest = sql.get(rest_from..)?.trim();
    let rest = rest.strip_suffix(';').unwrap_or(rest).trim_end();
    Some(Maintenance {
        head,
        verb,
        tables,
        rest,
    })
}

/// The plan of a maintenance statement; `None` for any other statement.
pub(crate) fn plan(rules: &Rules, sql: &str) -> Option<Result<Plan, RouteError>> {
    let m = parse(sql)?;
    Some(plan_of(rules, &m))
}

fn plan_of(rules: &Rules, m: &Maintenance<'_>) -> Result<Plan, RouteError> {
    // Data source → its physical tables, both in the order first named.
    let mut per_source: Vec<(String, Vec<String>)> = Vec::new();
    for (schema, table) in &m.tables {
        if schema
            .as_deref()
            .is_some_and(|s| !s.eq_ignore_ascii_case(&rules.schema.name))
        {
            return Err(RouteError::NotSupported(format!(
                "{} TABLE of a table outside the logical schema `{}`",
                m.verb, rules.schema.name
            )));
        }
        let default;
        let nodes: &[PhysicalNode] = match rules.table_rule(table) {
            TableRoute::Sharded(s) => s.all_nodes(),
            TableRoute::Broadcast(b) => b.nodes(),
            TableRoute::Single(n) => std::slice::from_ref(n),
            TableRoute::Default { data_source } => {
                default = PhysicalNode::new(data_source, table);
                std::slice::from_ref(&default)
            }
        };
        for node in nodes {
            let at = match per_source
                .iter()
                .position(|(ds, _)| *ds == node.data_source)
            {
                Some(at) => at,
                None => {
                    per_source.push((node.data_source.clone(), Vec::new()));
                    per_source.len() - 1
                }
            };
            let list = &mut per_source[at].1;
            if !list.contains(&node.table) {
                list.push(node.table.clone());
            }
        }
    }
    let targets: Vec<Target> = per_source
        .into_iter()
        .map(|(data_source, tables)| {
            let names: Vec<String> = tables
                .iter()
                .map(|t| sql::quote_ident(t).into_owned())
                .collect();
            let mut sql = format!("{} {}", m.head, names.join(", "));
            if !m.rest.is_empty() {
                sql = format!("{sql} {}", m.rest);
            }
            Target {
                data_source,
                sql,
                params: None,
            }
        })
        .collect();
    let combine = if targets.len() == 1 {
        Combine::Single
    } else {
        Combine::Merge(Box::new(MergeSpec::concat()))
    };
    Ok(Plan {
        kind: StatementKind::Other,
        targets,
        combine,
        rename: Vec::new(),
        add_tables: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_four_statements_and_nothing_else() {
        let m =
            parse("analyze NO_WRITE_TO_BINLOG table payment, `bank`.`acc``t` PERSISTENT FOR ALL;")
                .unwrap();
        assert_eq!(m.head, "analyze NO_WRITE_TO_BINLOG table");
        assert_eq!(m.verb, "ANALYZE");
        assert_eq!(
            m.tables,
            vec![
                (None, "payment".to_string()),
                (Some("bank".to_string()), "acc`t".to_string())
            ]
        );
        assert_eq!(m.rest, "PERSISTENT FOR ALL");
        let m = parse("CHECK TABLE payment EXTENDED").unwrap();
        assert_eq!((m.head, m.rest), ("CHECK TABLE", "EXTENDED"));
        assert!(parse("OPTIMIZE LOCAL TABLE t").is_some());
        assert!(parse("REPAIR TABLE t QUICK").is_some());
        assert_eq!(parse("ANALYZE SELECT * FROM t"), None);
        assert_eq!(parse("CHECKSUM TABLE t"), None);
        assert_eq!(parse("CHECK LOCAL TABLE t"), None);
        assert_eq!(parse("SELECT 'ANALYZE TABLE t'"), None);
        assert_eq!(parse("ANALYZE TABLE"), None);
    }
}
