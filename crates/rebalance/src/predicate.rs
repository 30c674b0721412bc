//! The SQL condition that selects the rows of some UID slices: exactly the rows whose
//! sharding value the `uid_slice` algorithm ([`rules::ShardedTable::slice_of`]) puts in
//! them, so the copy and the verification read what the router routes there. Tested against
//! the algorithm on a real server (`tests/predicate.rs`).
//!
//! - Integer columns: `v >= 0 AND v % 100 IN (...)`; negative UIDs and NULL have no slice.
//! - String columns: trailing spaces dropped (PAD SPACE, as the algorithm folds), then the
//!   last two bytes compared as bytes (a collation must not make a full-width digit equal an
//!   ASCII one) with the two digits of each slice, or the whole value with its one digit for
//!   slices 00-09 (`'7'` is slice 07).

use meta::SliceSet;
use rules::ColumnType;

use crate::plan::ident;

/// The condition on `column` (of `column_type`, as the rules say) selecting rows of `slices`.
pub fn slice_predicate(column: &str, column_type: ColumnType, slices: SliceSet) -> String {
    let column = ident(column);
    match column_type {
        ColumnType::Int => {
            let list: Vec<String> = slices.iter().map(|s| s.to_string()).collect();
            format!(
                "({column} >= 0 AND {column} % 100 IN ({}))",
                list.join(", ")
            )
        }
        ColumnType::String => {
            let tail = format!("CAST(TRIM(TRAILING ' ' FROM {column}) AS BINARY)");
            let two: Vec<String> = slices.iter().map(|s| format!("'{s:02}'")).collect();
            let one: Vec<String> = slices
                .iter()
                .filter(|&s| s < 10)
                .map(|s| format!("'{s}'"))
                .collect();
            let mut condition = format!("RIGHT({tail}, 2) IN ({})", two.join(", "));
            if !one.is_empty() {
                condition = format!("({condition} OR {tail} IN ({}))", one.join(", "));
            }
            condition
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_name_each_slice() {
        let slices: SliceSet = "05,30-32".parse().expect("slices");
        assert_eq!(
            slice_predicate("uid", ColumnType::Int, slices),
            "(`uid` >= 0 AND `uid` % 100 IN (5, 30, 31, 32))"
        );
        assert_eq!(
            slice_predicate("u`id", ColumnType::String, slices),
            "(RIGHT(CAST(TRIM(TRAILING ' ' FROM `u``id`) AS BINARY), 2) IN ('05', '30', '31', '32') \
             OR CAST(TRIM(TRAILING ' ' FROM `u``id`) AS BINARY) IN ('5'))"
        );
    }
}
