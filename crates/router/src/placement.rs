//! Where the tables a statement names live by the rules: sharded, broadcast, single, or
//! not in the rules at all (the default data source).

use rules::{Rules, TableRoute};

/// Where one table of a statement lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Place {
    /// A sharded table (the name as in the rule file).
    Sharded(String),
    /// A broadcast table (the name as in the rule file).
    Broadcast(String),
    /// A single table.
    Single { data_source: String, table: String },
    /// Not in the rules: the default data source, the name as written.
    Default,
}

/// The placement rule of a table named in a statement.
pub(crate) fn place_of(rules: &Rules, t: &sql::TableRef) -> Place {
    if t.foreign_schema.is_some() {
        return Place::Default;
    }
    match rules.table_rule(&t.name) {
        TableRoute::Sharded(s) => Place::Sharded(s.name().to_owned()),
        TableRoute::Broadcast(_) => Place::Broadcast(rule_name(rules, &t.name)),
        TableRoute::Single(n) => Place::Single {
            data_source: n.data_source.clone(),
            table: n.table.clone(),
        },
        TableRoute::Default { .. } => Place::Default,
    }
}

/// The rule-file key of a named table (lookups are case-insensitive).
fn rule_name(rules: &Rules, name: &str) -> String {
    if rules.tables.contains_key(name) {
        return name.to_owned();
    }
    rules
        .tables
        .keys()
        .find(|k| k.eq_ignore_ascii_case(name))
        .cloned()
        .unwrap_or_else(|| name.to_owned())
}

/// Whether `name` is a table of the rules (case-insensitively).
pub(crate) fn is_rule_table(rules: &Rules, name: &str) -> bool {
    rules.tables.keys().any(|k| k.eq_ignore_ascii_case(name))
}

/// Whether the default data source's database has the logical schema's name
/// (then `bank.t` and `DATABASE()` mean the same on it, unchanged).
pub(crate) fn default_db_is_schema(rules: &Rules) -> bool {
    rules
        .data_source(&rules.schema.default_data_source)
        .is_some_and(|d| d.database == rules.schema.name)
}
