//! Logical names in the texts of backend errors and warnings.
//!
//! A statement on a sharded table runs on the backends with physical names (`bank_0.t_3`), so
//! the backends' error and warning texts name those (`Table 'bank_0.t_3' doesn't exist`,
//! `FUNCTION bank_0.ANY_VALUE does not exist`). The client wrote `bank.t` and must read what
//! one server holding the logical schema would say; the physical layout is the proxy's business.

use std::borrow::Cow;
use std::collections::HashMap;

use crate::Rules;

/// Physical database and table names, each with the logical name a client knows it by.
#[derive(Debug, Clone, Default)]
pub struct LogicalNames {
    /// Keyed by the physical name in ASCII lower case; `None` where two logical names claim
    /// one physical name (the text is then left as the backend wrote it).
    by_physical: HashMap<String, Option<String>>,
}

/// Backend errors and warnings whose single-quoted parts are the client's data (a duplicate
/// value, a value that does not convert), not names: those parts are left alone.
const DATA_IN_QUOTES: &[u16] = &[
    1062, // ER_DUP_ENTRY: Duplicate entry '%s' for key '%s'
    1265, // WARN_DATA_TRUNCATED
    1292, // ER_TRUNCATED_WRONG_VALUE: Truncated incorrect %s value: '%s'
    1366, // ER_TRUNCATED_WRONG_VALUE_FOR_FIELD: Incorrect %s value: '%s' for column ...
    1367, // ER_ILLEGAL_VALUE_FOR_TYPE
    1411, // ER_WRONG_VALUE_FOR_TYPE
    1525, // ER_WRONG_VALUE
    1586, // ER_DUP_ENTRY_WITH_KEY_NAME
];

impl LogicalNames {
    /// The names of `rules`: each data source's database that serves logical tables (the
    /// default data source's and those holding named tables, not the meta data source's
    /// alone) is the logical database, and each physical table is its logical table.
    pub fn new(rules: &Rules) -> Self {
        let mut names = LogicalNames::default();
        let logical_db = &rules.schema.name;
        for (logical, rule) in &rules.tables {
            for node in rule.physical_tables() {
                names.add(&node.table, logical);
                if let Some(ds) = rules.data_sources.get(&node.data_source) {
                    names.add(&ds.database, logical_db);
                }
            }
        }
        if let Some(ds) = rules.data_sources.get(&rules.schema.default_data_source) {
            names.add(&ds.database, logical_db);
        }
        names
    }

    fn add(&mut self, physical: &str, logical: &str) {
        let entry = self
            .by_physical
            .entry(physical.to_ascii_lowercase())
            .or_insert_with(|| Some(logical.to_string()));
        if entry.as_deref() != Some(logical) {
            *entry = None;
        }
    }

    /// `text` (of a backend error or warning with code `code`) with every physical database
    /// and table name replaced by its logical name; borrowed when nothing changes.
    pub fn in_message<'t>(&self, code: u16, text: &'t str) -> Cow<'t, str> {
        if self.by_physical.is_empty() {
            return Cow::Borrowed(text);
        }
        let skip_quoted = DATA_IN_QUOTES.contains(&code);
        let bytes = text.as_bytes();
        let mut out: Option<String> = None;
        let mut copied = 0;
        let mut i = 0;
        let mut in_quotes = false;
        while i < bytes.len() {
            let b = bytes[i];
            if b == b'\'' && skip_quoted {
                in_quotes = !in_quotes;
                i += 1;
                continue;
            }
            if !is_name_byte(b) {
                i += 1;
                continue;
            }
            let start = i;
            while i < bytes.len() && is_name_byte(bytes[i]) {
                i += 1;
            }
            if in_quotes {
                continue;
            }
            // Names are ASCII or whole UTF-8 characters, so `start..i` is on char boundaries.
            let word = &text[start..i];
            let Some(Some(logical)) = self.by_physical.get(&word.to_ascii_lowercase()) else {
                continue;
            };
            if logical == word {
                continue;
            }
            let out = out.get_or_insert_with(|| String::with_capacity(text.len()));
            out.push_str(&text[copied..start]);
            out.push_str(logical);
            copied = i;
        }
        match out {
            None => Cow::Borrowed(text),
            Some(mut out) => {
                out.push_str(&text[copied..]);
                Cow::Owned(out)
            }
        }
    }
}

/// A byte of an unquoted identifier: ASCII letters, digits, `_`, `$`, and any byte of a
/// multi-byte UTF-8 character.
fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> Rules {
        crate::parse_str(
            r#"
            [[users]]
            name = "app"
            password = "secret"
            [proxy]
            meta_data_source = "meta"
            [schema]
            name = "bank"
            default_data_source = "ds_0"
            [data_sources.ds_0]
            address = "127.0.0.1:3306"
            user = "root"
            database = "bank_0"
            [data_sources.ds_1]
            address = "127.0.0.1:3306"
            user = "root"
            database = "bank_1"
            [data_sources.meta]
            address = "127.0.0.1:3306"
            user = "root"
            database = "dbmesh_meta"
            [tables.t]
            kind = "sharded"
            column = "id"
            algorithm = "mod"
            nodes = "ds_{0..1}.t_{0..1}"
            [tables.u]
            kind = "sharded"
            column = "id"
            algorithm = "mod"
            nodes = "ds_{0..1}.u_{0..1}"
            "#,
            std::path::Path::new("test.toml"),
        )
        .expect("rules")
    }

    #[test]
    fn physical_names_become_logical() {
        let names = LogicalNames::new(&rules());
        let cases = [
            (1146, "Table 'bank_0.t_1' doesn't exist", "Table 'bank.t' doesn't exist"),
            (1305, "FUNCTION bank_1.ANY_VALUE does not exist", "FUNCTION bank.ANY_VALUE does not exist"),
            (1054, "Unknown column 'u_0.x' in 'field list'", "Unknown column 'u.x' in 'field list'"),
            (
                1451,
                "Cannot delete or update a parent row: a foreign key constraint fails (`bank_1`.`T_0`, CONSTRAINT `fk` ...)",
                "Cannot delete or update a parent row: a foreign key constraint fails (`bank`.`t`, CONSTRAINT `fk` ...)",
            ),
            // Names that only contain a physical name are other names.
            (1146, "Table 'bank_0.t_10' doesn't exist", "Table 'bank.t_10' doesn't exist"),
            // The meta data source's database is not the logical one.
            (1146, "Table 'dbmesh_meta.x' doesn't exist", "Table 'dbmesh_meta.x' doesn't exist"),
        ];
        for (code, backend, client) in cases {
            assert_eq!(names.in_message(code, backend), client, "{backend}");
        }
    }

    #[test]
    fn the_clients_data_is_left_as_it_was() {
        let names = LogicalNames::new(&rules());
        assert_eq!(
            names.in_message(1062, "Duplicate entry 't_1' for key 'PRIMARY'"),
            "Duplicate entry 't_1' for key 'PRIMARY'"
        );
        assert_eq!(
            names.in_message(
                1366,
                "Incorrect integer value: 'bank_0' for column `bank_0`.`t_1`.`id` at row 1"
            ),
            "Incorrect integer value: 'bank_0' for column `bank`.`t`.`id` at row 1"
        );
    }

    #[test]
    fn an_unchanged_text_is_borrowed() {
        let names = LogicalNames::new(&rules());
        let text = "Lock wait timeout exceeded; try restarting transaction";
        assert!(matches!(names.in_message(1205, text), Cow::Borrowed(_)));
    }

    #[test]
    fn a_physical_name_two_logical_names_claim_is_left() {
        let mut names = LogicalNames::default();
        names.add("x_0", "x");
        names.add("x_0", "y");
        names.add("b_0", "b");
        assert_eq!(
            names.in_message(1146, "Table 'b_0.x_0' doesn't exist"),
            "Table 'b.x_0' doesn't exist"
        );
    }
}
