//! The sharding algorithms through the router-facing API: golden key → node
//! tables that pin the functions forever, property tests against each
//! algorithm's definition, and the consistent-hash movement bound.
//!
//! Goldens were computed outside this crate: `hash` with Python's
//! `zlib.crc32` (MySQL's `CRC32()` gives the same), `consistent_hash` with a
//! Python ring over the reference `libxxhash`. If one of these tests fails,
//! existing data would be on the wrong shard: do not update the table.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::Path;

use proptest::prelude::*;
use rules::{parse_str, xxh64, RuleError, Rules, ShardValue, ShardedTable};

const BASE: &str = r#"
[[users]]
name = "u"
password = "p"
[schema]
name = "app"
default_data_source = "ds_0"
[data_sources.ds_0]
address = "127.0.0.1:3306"
user = "root"
database = "app_0"
[data_sources.ds_1]
address = "127.0.0.1:3306"
user = "root"
database = "app_1"
[data_sources.ds_2]
address = "127.0.0.1:3306"
user = "root"
database = "app_2"
[data_sources.ds_3]
address = "127.0.0.1:3306"
user = "root"
database = "app_3"
[data_sources.ds_4]
address = "127.0.0.1:3306"
user = "root"
database = "app_4"
"#;

fn rules(tables: &str) -> Rules {
    parse_str(&format!("{BASE}{tables}"), Path::new("test.toml"))
        .unwrap_or_else(|e| panic!("invalid test rules:\n{e}"))
}

fn table(tables: &str, name: &str) -> ShardedTable {
    rules(tables).sharded(name).expect("sharded").clone()
}

fn idx(t: &ShardedTable, v: ShardValue<'_>) -> usize {
    t.shard_index(&v).unwrap_or_else(|e| panic!("{v:?}: {e}"))
}

fn mod_table(n: usize) -> ShardedTable {
    table(
        &format!("[tables.t]\nkind = \"sharded\"\ncolumn = \"id\"\nalgorithm = \"mod\"\nnodes = \"ds_{{0..1}}.t_{{0..{}}}\"\n", n - 1),
        "t",
    )
}

fn hash_table(column_type: &str) -> ShardedTable {
    table(
        &format!("[tables.t]\nkind = \"sharded\"\ncolumn = \"k\"\ncolumn_type = \"{column_type}\"\nalgorithm = \"hash\"\nnodes = \"ds_0.t_{{0..7}}\"\n"),
        "t",
    )
}

fn range_table() -> ShardedTable {
    table(
        "[tables.t]\nkind = \"sharded\"\ncolumn = \"id\"\nalgorithm = \"range\"\nnodes = \"ds_{0..3}\"\nboundaries = [-100, 0, 1000]\n",
        "t",
    )
}

fn ring_table(nodes: &str, column_type: &str) -> ShardedTable {
    table(
        &format!("[tables.t]\nkind = \"sharded\"\ncolumn = \"k\"\ncolumn_type = \"{column_type}\"\nalgorithm = \"consistent_hash\"\nnodes = {nodes}\n"),
        "t",
    )
}

const SLICES: &str =
    r#"slices = { "00-29" = "ds_0", "30-59" = "ds_1", "60-79" = "ds_2", "80-99" = "ds_3" }"#;

fn uid_table(column_type: &str) -> ShardedTable {
    table(
        &format!("[tables.t]\nkind = \"sharded\"\ncolumn = \"uid\"\ncolumn_type = \"{column_type}\"\nalgorithm = \"uid_slice\"\nnodes = \"ds_{{0..3}}\"\n{SLICES}\n"),
        "t",
    )
}

// ---- goldens -------------------------------------------------------------

const INTS: [i64; 11] = [0, 1, 7, 42, 99, 100, 12345, -1, -42, i64::MAX, i64::MIN];
const STRS: [&str; 5] = ["alice@example.com", "bob", "U2024000123", "dbmesh", "été"];

#[test]
fn golden_mod() {
    let t = mod_table(3); // 6 nodes
    let got: Vec<usize> = INTS.iter().map(|&v| idx(&t, ShardValue::Int(v))).collect();
    assert_eq!(got, [0, 1, 1, 0, 3, 4, 3, 5, 0, 1, 4]);
}

#[test]
fn golden_hash() {
    let t = hash_table("int");
    let got: Vec<usize> = INTS.iter().map(|&v| idx(&t, ShardValue::Int(v))).collect();
    // SELECT MOD(CRC32(v), 8)
    assert_eq!(got, [1, 7, 2, 0, 5, 2, 4, 2, 6, 6, 3]);
    assert_eq!(idx(&t, ShardValue::UInt(u64::MAX)), 2);
    let s = hash_table("string");
    // SELECT MOD(CRC32(v), 8) of the folded text: ALICE@EXAMPLE.COM, BOB, U2024000123, DBMESH, ETE
    let got: Vec<usize> = STRS.iter().map(|&v| idx(&s, ShardValue::Str(v))).collect();
    assert_eq!(got, [3, 2, 6, 6, 6]);
}

#[test]
fn golden_range() {
    let t = range_table();
    let got: Vec<usize> = INTS.iter().map(|&v| idx(&t, ShardValue::Int(v))).collect();
    assert_eq!(got, [2, 2, 2, 2, 2, 2, 3, 1, 1, 3, 0]);
}

#[test]
fn golden_consistent_hash() {
    let t = ring_table("\"ds_{0..2}\"", "int");
    let got: Vec<usize> = INTS.iter().map(|&v| idx(&t, ShardValue::Int(v))).collect();
    assert_eq!(got, [2, 2, 2, 0, 0, 2, 2, 0, 0, 0, 1]);
    let s = ring_table("\"ds_{0..2}\"", "string");
    let got: Vec<usize> = STRS.iter().map(|&v| idx(&s, ShardValue::Str(v))).collect();
    assert_eq!(got, [2, 0, 1, 1, 0]);
    // Two nodes on one data source are told apart by their ordinal there.
    let d = ring_table(r#"["ds_0.t_{0..1}", "ds_1.t_2"]"#, "int");
    let got: Vec<usize> = INTS.iter().map(|&v| idx(&d, ShardValue::Int(v))).collect();
    assert_eq!(got, [0, 1, 0, 0, 0, 1, 1, 1, 1, 0, 1]);
}

#[test]
fn golden_uid_slice() {
    let t = uid_table("int");
    let got: Vec<usize> = [0i64, 29, 30, 59, 60, 79, 80, 99, 100, 12345, i64::MAX]
        .iter()
        .map(|&v| idx(&t, ShardValue::Int(v)))
        .collect();
    assert_eq!(got, [0, 0, 1, 1, 2, 2, 3, 3, 0, 1, 0]);
}

// ---- uid_slice details ---------------------------------------------------

#[test]
fn uid_slice_integer_uids() {
    let t = uid_table("int");
    // The slice is the last two decimal digits, whatever the length of the UID.
    assert_eq!(idx(&t, ShardValue::Int(7)), 0);
    assert_eq!(idx(&t, ShardValue::Int(1_234_567_865)), 2);
    assert_eq!(idx(&t, ShardValue::UInt(u64::MAX)), 0); // ...615 -> slice 15
                                                        // A quoted integer on an integer column routes like the integer.
    assert_eq!(idx(&t, ShardValue::Str("1234567865")), 2);
    assert_eq!(idx(&t, ShardValue::Str(" 0065 ")), 2);
    assert_eq!(
        t.shard_index(&ShardValue::Int(-5)),
        Err(RuleError::NegativeUid(-5))
    );
    assert_eq!(
        t.shard_index(&ShardValue::Str("-5")),
        Err(RuleError::NegativeUid(-5))
    );
    assert_eq!(
        t.shard_index(&ShardValue::Str("65.0")),
        Err(RuleError::NotAnInteger("65.0".into()))
    );
}

#[test]
fn uid_slice_string_uids() {
    let t = uid_table("string");
    assert_eq!(idx(&t, ShardValue::Str("CN-2024-000031")), 1);
    assert_eq!(idx(&t, ShardValue::Str("U99")), 3);
    assert_eq!(
        idx(&t, ShardValue::Str("U61   ")),
        2,
        "trailing spaces are not part of the key"
    );
    assert_eq!(idx(&t, ShardValue::Str("5")), 0);
    assert_eq!(
        t.shard_index(&ShardValue::Str("U6X")),
        Err(RuleError::NoSliceDigits("U6X".into()))
    );
    assert_eq!(
        t.shard_index(&ShardValue::Int(31)),
        Err(RuleError::IntegerForStringColumn(31))
    );
}

#[test]
fn uid_slice_range_pruning() {
    let t = uid_table("int");
    let r = |lo: i64, hi: i64| {
        t.nodes_for_range(
            Bound::Included(ShardValue::Int(lo)),
            Bound::Included(ShardValue::Int(hi)),
        )
        .expect("ok")
    };
    assert_eq!(r(1000, 1029), [0]);
    assert_eq!(r(1025, 1035), [0, 1]);
    assert_eq!(r(1095, 1105), [0, 3]);
    assert_eq!(r(0, 1_000_000), [0, 1, 2, 3]);
    assert_eq!(r(-50, 5), [0], "negative UIDs cannot exist");
    assert_eq!(r(10, 9), Vec::<usize>::new());
}

#[test]
fn with_slices_rebuilds_the_whole_binding_group() {
    let tables = format!(
        "[tables.a]\nkind = \"sharded\"\ncolumn = \"uid\"\nalgorithm = \"uid_slice\"\nnodes = \"ds_{{0..4}}\"\n{SLICES}\n\
         [tables.b]\nkind = \"sharded\"\ncolumn = \"uid\"\nalgorithm = \"uid_slice\"\nnodes = \"ds_{{0..4}}.b_x\"\n{SLICES}\n\
         [[binding_groups]]\ntables = [\"a\", \"b\"]\n"
    );
    let r = rules(&tables);
    // Node ds_4 owns no slice yet: DDL reaches it, reads do not.
    assert_eq!(r.sharded("a").expect("a").all_nodes().len(), 5);
    assert_eq!(r.sharded("a").expect("a").data_nodes(), [0, 1, 2, 3]);

    let moved: BTreeMap<String, String> = [
        ("00-29", "ds_0"),
        ("30-59", "ds_1"),
        ("60-69", "ds_2"),
        ("70-79", "ds_4"),
        ("80-99", "ds_3"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    let next = r.with_slices("a", &moved).expect("valid");
    for (name, table) in [("a", "a"), ("b", "b_x")] {
        let t = next.sharded(name).expect("sharded");
        assert_eq!(
            t.shard_for(&ShardValue::Int(175)).expect("ok").to_string(),
            format!("ds_4.{table}")
        );
        assert_eq!(
            t.shard_for(&ShardValue::Int(165)).expect("ok").to_string(),
            format!("ds_2.{table}")
        );
        assert_eq!(t.data_nodes(), [0, 1, 2, 3, 4]);
    }
    // The old snapshot is untouched.
    assert_eq!(idx(r.sharded("b").expect("b"), ShardValue::Int(175)), 2);

    let mut bad = moved.clone();
    bad.remove("80-99");
    let err = r.with_slices("b", &bad).expect_err("unmapped");
    assert_eq!(
        err.to_string(),
        "test.toml: tables.b.slices: slices 80-99 not mapped"
    );
}

// ---- consistent hashing: movement ---------------------------------------

#[test]
fn consistent_hash_adding_a_node_moves_about_one_nth() {
    let before = ring_table("\"ds_{0..3}\"", "int");
    let after = ring_table("\"ds_{0..4}\"", "int");
    let keys = 10_000;
    let mut moved = 0;
    for k in 0..keys {
        let (a, b) = (
            idx(&before, ShardValue::Int(k)),
            idx(&after, ShardValue::Int(k)),
        );
        if a != b {
            assert_eq!(b, 4, "key {k} moved between old nodes ({a} -> {b})");
            moved += 1;
        }
    }
    // Ideal: keys / 5 = 2000. Virtual nodes keep it within ±30 %.
    assert!(
        (1_400..=2_600).contains(&moved),
        "{moved} of {keys} keys moved"
    );
}

#[test]
fn consistent_hash_removing_a_node_moves_only_its_keys() {
    let before = ring_table("\"ds_{0..4}\"", "string");
    let after = ring_table("\"ds_{0..3}\"", "string");
    for k in 0..2_000 {
        let key = format!("session-{k}");
        let a = idx(&before, ShardValue::Str(&key));
        let b = idx(&after, ShardValue::Str(&key));
        assert!(a == 4 || a == b, "{key} moved from {a} to {b}");
    }
}

// ---- properties: the API equals each algorithm's definition -------------

/// Bitwise CRC-32 (no table): an independent reference for `hash`.
fn crc32_reference(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xEDB8_8320 & mask);
        }
    }
    !crc
}

/// A linear-scan ring: the first point at or after `h`, else the first point.
fn ring_reference(data_sources: &[&str], virtual_nodes: u32, h: u64) -> usize {
    let mut points = Vec::new();
    let mut seen: BTreeMap<&str, u32> = BTreeMap::new();
    for (i, ds) in data_sources.iter().enumerate() {
        let k = seen.entry(ds).or_default();
        for v in 0..virtual_nodes {
            points.push((xxh64(format!("{ds}#{k}#{v}").as_bytes()), i));
        }
        *k += 1;
    }
    let after = points.iter().filter(|p| p.0 >= h).min();
    after.or(points.iter().min()).map(|p| p.1).expect("points")
}

fn slice_reference(uid: u128) -> usize {
    match uid % 100 {
        0..=29 => 0,
        30..=59 => 1,
        60..=79 => 2,
        _ => 3,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn prop_mod(v in any::<i64>(), n in 1usize..6) {
        let t = mod_table(n);
        let k = (2 * n) as i64;
        prop_assert_eq!(idx(&t, ShardValue::Int(v)), v.rem_euclid(k) as usize);
        prop_assert_eq!(idx(&t, ShardValue::Str(&v.to_string())), v.rem_euclid(k) as usize);
        if v >= 0 {
            prop_assert_eq!(idx(&t, ShardValue::UInt(v as u64)), v.rem_euclid(k) as usize);
        }
    }

    #[test]
    fn prop_mod_unsigned(v in any::<u64>()) {
        let t = mod_table(3);
        prop_assert_eq!(idx(&t, ShardValue::UInt(v)), (v % 6) as usize);
    }

    #[test]
    fn prop_hash_int(v in any::<i64>()) {
        let t = hash_table("int");
        let want = (crc32_reference(v.to_string().as_bytes()) % 8) as usize;
        prop_assert_eq!(idx(&t, ShardValue::Int(v)), want);
        prop_assert_eq!(idx(&t, ShardValue::Str(&format!("  {v}"))), want);
    }

    #[test]
    fn prop_hash_string(s in "[ -~]{0,24}") {
        // ASCII keys hash as MOD(CRC32(UPPER(RTRIM(s))), 8): equal under a `_ci` collation,
        // one shard.
        let t = hash_table("string");
        let want = (crc32_reference(s.trim_end_matches(' ').to_ascii_uppercase().as_bytes()) % 8) as usize;
        prop_assert_eq!(idx(&t, ShardValue::Str(&s)), want);
        prop_assert_eq!(idx(&t, ShardValue::Str(&s.to_ascii_lowercase())), want);
    }

    #[test]
    fn prop_range(v in any::<i64>()) {
        let t = range_table();
        let want = [-100i64, 0, 1000].iter().filter(|b| **b <= v).count();
        prop_assert_eq!(idx(&t, ShardValue::Int(v)), want);
    }

    #[test]
    fn prop_consistent_hash(v in any::<i64>(), s in "[a-z0-9]{1,12}") {
        let t = ring_table("\"ds_{0..2}\"", "int");
        let h = xxh64(v.to_string().as_bytes());
        prop_assert_eq!(idx(&t, ShardValue::Int(v)), ring_reference(&["ds_0", "ds_1", "ds_2"], 160, h));
        let st = ring_table("\"ds_{0..2}\"", "string");
        let h = xxh64(s.to_ascii_uppercase().as_bytes());
        prop_assert_eq!(idx(&st, ShardValue::Str(&s)), ring_reference(&["ds_0", "ds_1", "ds_2"], 160, h));
    }

    #[test]
    fn prop_uid_slice(v in 0i64..=i64::MAX, prefix in "[A-Z]{0,3}") {
        let t = uid_table("int");
        prop_assert_eq!(idx(&t, ShardValue::Int(v)), slice_reference(v as u128));
        let s = uid_table("string");
        let uid = format!("{prefix}{v:02}");
        prop_assert_eq!(idx(&s, ShardValue::Str(&uid)), slice_reference(v as u128));
    }

    /// Range pruning never loses a node that a value in the range maps to,
    /// and for short integer ranges it returns exactly those nodes.
    #[test]
    fn prop_nodes_for_range(lo in -300i64..300, len in 0i64..400, which in 0usize..5) {
        let t = match which {
            0 => mod_table(2),
            1 => hash_table("int"),
            2 => range_table(),
            3 => ring_table("\"ds_{0..2}\"", "int"),
            _ => uid_table("int"),
        };
        let hi = lo + len;
        let got = t
            .nodes_for_range(Bound::Included(ShardValue::Int(lo)), Bound::Excluded(ShardValue::Int(hi + 1)))
            .expect("integer bounds");
        let mut want: Vec<usize> = (lo..=hi).filter_map(|v| t.shard_index(&ShardValue::Int(v)).ok()).collect();
        want.sort_unstable();
        want.dedup();
        for w in &want {
            prop_assert!(got.contains(w), "{:?} misses node {}", got, w);
        }
        if len < 100 || which == 2 {
            prop_assert_eq!(got, want);
        }
    }
}

#[test]
fn range_bounds_that_are_not_integers_are_errors() {
    let t = range_table();
    assert_eq!(
        t.nodes_for_range(Bound::Included(ShardValue::Str("abc")), Bound::Unbounded),
        Err(RuleError::NotAnInteger("abc".into()))
    );
    assert_eq!(
        t.nodes_for_range(Bound::Unbounded, Bound::Unbounded)
            .expect("ok"),
        [0, 1, 2, 3]
    );
    assert_eq!(
        t.nodes_for_range(
            Bound::Excluded(ShardValue::Int(0)),
            Bound::Excluded(ShardValue::Int(1))
        )
        .expect("ok"),
        Vec::<usize>::new()
    );
    // Unbounded on both sides: every node, for every algorithm.
    for t in [
        mod_table(2),
        hash_table("int"),
        ring_table("\"ds_{0..2}\"", "int"),
        uid_table("int"),
    ] {
        let n = t.all_nodes().len();
        assert_eq!(
            t.nodes_for_range(Bound::Unbounded, Bound::Unbounded)
                .expect("ok"),
            (0..n).collect::<Vec<_>>()
        );
        assert_eq!(
            t.nodes_for_range(
                Bound::Included(ShardValue::Int(i64::MIN)),
                Bound::Included(ShardValue::UInt(u64::MAX))
            )
            .expect("ok"),
            (0..n).collect::<Vec<_>>()
        );
    }
    // String columns are never pruned by range.
    let s = hash_table("string");
    assert_eq!(
        s.nodes_for_range(
            Bound::Included(ShardValue::Str("a")),
            Bound::Included(ShardValue::Str("a"))
        )
        .expect("ok")
        .len(),
        8
    );
}
