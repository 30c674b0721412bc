//! The slice condition selects on a real server exactly the rows the `uid_slice` algorithm
//! puts in those slices: integer and string UIDs, negative, NULL, padded, full-width digits,
//! under a case- and accent-insensitive collation.

use std::collections::BTreeSet;
use std::path::Path;

use backend::{BackendConn, ConnectOptions};
use meta::SliceSet;
use rebalance::predicate::slice_predicate;
use rules::{ShardValue, ShardedTable};

fn table(column_type: &str) -> ShardedTable {
    let rules = rules::parse_str(
        &format!(
            r#"
[[users]]
name = "app"
password = "x"
[schema]
name = "bank"
default_data_source = "ds_0"
[data_sources.ds_0]
address = "127.0.0.1:3306"
user = "root"
database = "bank_0"
[tables.t]
kind = "sharded"
column = "uid"
column_type = "{column_type}"
algorithm = "uid_slice"
nodes = "ds_0"
slices = {{ "00-99" = "ds_0" }}
"#
        ),
        Path::new("t.toml"),
    )
    .expect("rules");
    rules.sharded("t").expect("sharded").clone()
}

const STRINGS: &[&str] = &[
    "7",
    "07",
    "a7",
    "U2024000123",
    "12 ",
    "12  ",
    " 12",
    "1２",
    "３０",
    "",
    " ",
    "x",
    "abc30",
    "30",
    "0",
    "9",
    "10",
    "٣٠",
    "é05",
    "5 ",
    "00",
    "100",
    "99",
    "x99",
    "-30",
    "3O",
    "+45",
    "U2024000145",
    "ÀÉ44",
    "4",
    "04",
    "z\t30",
    "30\t",
];

async fn selected(conn: &mut BackendConn, table: &str, condition: &str) -> BTreeSet<u32> {
    conn.query(&format!("SELECT id FROM {table} WHERE {condition}"))
        .await
        .expect("select")
        .rows
        .iter()
        .map(|r| r[0].as_deref().expect("id").parse().expect("number"))
        .collect()
}

#[tokio::test]
async fn the_condition_selects_what_the_algorithm_routes() {
    let server = testkit::backends(1).expect("a server").remove(0);
    let db = testkit::unique_name("pred");
    server
        .sql(&format!(
            "CREATE DATABASE {db}; \
             CREATE TABLE {db}.ints (id INT PRIMARY KEY, uid BIGINT NULL); \
             CREATE TABLE {db}.uints (id INT PRIMARY KEY, uid BIGINT UNSIGNED NULL); \
             CREATE TABLE {db}.strs (id INT PRIMARY KEY, uid VARCHAR(40) NULL) \
               CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
        ))
        .expect("create");
    let mut conn = BackendConn::connect(&ConnectOptions::plaintext(
        "t",
        &server.address(),
        server.user(),
        server.password(),
        Some(&db),
    ))
    .await
    .expect("connect");

    // Integers: every slice several times, negatives, NULL, the extremes.
    let mut ints: Vec<Option<i64>> = (0..400).map(Some).collect();
    ints.extend(
        [
            -1,
            -30,
            -130,
            -9_223_372_036_854_775_808,
            9_223_372_036_854_775_807,
        ]
        .map(Some),
    );
    ints.push(None);
    let uints: Vec<Option<u64>> = vec![
        Some(0),
        Some(30),
        Some(18_446_744_073_709_551_615),
        Some(10_000_000_044),
        None,
    ];
    let render = |v: Option<String>| v.unwrap_or_else(|| "NULL".into());
    let rows = |values: Vec<String>| {
        values
            .iter()
            .enumerate()
            .map(|(i, v)| format!("({i}, {v})"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    conn.query(&format!(
        "INSERT INTO ints VALUES {}",
        rows(
            ints.iter()
                .map(|v| render(v.map(|n| n.to_string())))
                .collect()
        )
    ))
    .await
    .expect("ints");
    conn.query(&format!(
        "INSERT INTO uints VALUES {}",
        rows(
            uints
                .iter()
                .map(|v| render(v.map(|n| n.to_string())))
                .collect()
        )
    ))
    .await
    .expect("uints");
    let mut strings: Vec<Option<&str>> = STRINGS.iter().copied().map(Some).collect();
    strings.push(None);
    conn.query(&format!(
        "INSERT INTO strs VALUES {}",
        rows(
            strings
                .iter()
                .map(|v| render(v.map(backend::quote_literal)))
                .collect()
        )
    ))
    .await
    .expect("strings");

    let int_table = table("int");
    let string_table = table("string");
    let slice_of =
        |t: &ShardedTable, v: Option<ShardValue<'_>>| v.and_then(|v| t.slice_of(&v).ok());
    let int_slices: Vec<Option<u8>> = ints
        .iter()
        .map(|v| slice_of(&int_table, v.map(ShardValue::Int)))
        .collect();
    let uint_slices: Vec<Option<u8>> = uints
        .iter()
        .map(|v| slice_of(&int_table, v.map(ShardValue::UInt)))
        .collect();
    let string_slices: Vec<Option<u8>> = strings
        .iter()
        .map(|v| slice_of(&string_table, v.map(ShardValue::Str)))
        .collect();
    // The fixture's values reach some slices of each kind, so the comparison means something.
    assert_eq!(
        string_slices.iter().flatten().count(),
        24,
        "{string_slices:?}"
    );

    let mut sets: Vec<SliceSet> = (0..100u8)
        .map(|s| s.to_string().parse().expect("slice"))
        .collect();
    sets.push("00-09,30-44,99".parse().expect("slices"));
    for set in sets {
        for (table, rule, slices) in [
            ("ints", &int_table, &int_slices),
            ("uints", &int_table, &uint_slices),
            ("strs", &string_table, &string_slices),
        ] {
            let condition = slice_predicate(rule.column(), rule.column_type(), set);
            let wanted: BTreeSet<u32> = slices
                .iter()
                .enumerate()
                .filter(|(_, s)| s.is_some_and(|s| set.contains(s)))
                .map(|(i, _)| i as u32)
                .collect();
            assert_eq!(
                selected(&mut conn, table, &condition).await,
                wanted,
                "{table}, slices {set}: {condition}"
            );
        }
    }
}
