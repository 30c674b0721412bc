//! `[sequences.<name>]` and `proxy.meta_data_source`: defaults, lookups, and every
//! mistake reported with its location.

use std::path::Path;

use rules::{
    parse_str, ColumnRef, ConfigError, Rules, SegmentRule, SequenceKind, SnowflakeRule,
    DEFAULT_SNOWFLAKE_EPOCH_MS,
};

const BASE: &str = r#"
[[users]]
name = "dbmesh"
[schema]
name = "bank"
default_data_source = "ds_0"
[data_sources.ds_0]
address = "127.0.0.1:3306"
user = "root"
database = "bank_0"
[data_sources.meta]
address = "127.0.0.1:3306"
user = "root"
database = "dbmesh_meta"
[tables.payment]
kind = "sharded"
column = "uid"
algorithm = "mod"
nodes = "ds_0.payment_{0..1}"
"#;

const META: &str = "[proxy]\nmeta_data_source = \"meta\"\n";
const FILE: &str = "sharding-rules/x.toml";

fn parse(text: &str) -> Result<Rules, ConfigError> {
    parse_str(text, Path::new(FILE))
}

fn valid(extra: &str) -> Rules {
    parse(&format!("{META}{BASE}{extra}")).unwrap_or_else(|e| panic!("invalid:\n{e}"))
}

/// The problems of `head + BASE + extra`, one string per line, without the file prefix.
fn problems_with(head: &str, extra: &str) -> Vec<String> {
    let err = parse(&format!("{head}{BASE}{extra}")).expect_err("must be invalid");
    err.to_string()
        .lines()
        .map(|l| {
            l.strip_prefix("sharding-rules/x.toml: ")
                .unwrap_or(l)
                .to_owned()
        })
        .collect()
}

fn problems(extra: &str) -> Vec<String> {
    problems_with(META, extra)
}

#[test]
fn defaults() {
    let r = valid(
        "[sequences.payment_seq]\nkind = \"segment\"\ntable = \"payment\"\ncolumn = \"payment_id\"\n\
         [sequences.event_seq]\nkind = \"snowflake\"\n",
    );
    let p = r.sequence("payment_seq").expect("declared");
    assert_eq!(
        p.kind,
        SequenceKind::Segment(SegmentRule {
            step: 1000,
            start: 1,
            max: 9_223_372_036_854_775_807,
            max_range: 1_000_000
        })
    );
    assert_eq!(
        p.fills,
        Some(ColumnRef {
            table: "payment".into(),
            column: "payment_id".into()
        })
    );
    let e = r.sequence("event_seq").expect("declared");
    assert_eq!(
        e.kind,
        SequenceKind::Snowflake(SnowflakeRule {
            worker_id: None,
            epoch_ms: DEFAULT_SNOWFLAKE_EPOCH_MS,
            max_clock_backward_ms: 5
        })
    );
    assert_eq!(e.fills, None);
    assert!(e.kind.needs_meta() && p.kind.needs_meta());
    // 2024-01-01T00:00:00Z.
    assert_eq!(DEFAULT_SNOWFLAKE_EPOCH_MS, 1_704_067_200_000);
}

#[test]
fn explicit_values() {
    let r = valid(
        "[sequences.s]\nkind = \"segment\"\nstep = 50\nstart = 100\nmax = 2147483647\nmax_range = 10\n\
         [sequences.f]\nkind = \"snowflake\"\nworker_id = 1023\nepoch = 0\nmax_clock_backward_ms = 0\n",
    );
    assert_eq!(
        r.sequence("s").map(|s| &s.kind),
        Some(&SequenceKind::Segment(SegmentRule {
            step: 50,
            start: 100,
            max: 2_147_483_647,
            max_range: 10
        }))
    );
    let f = r.sequence("f").expect("declared");
    assert_eq!(
        f.kind,
        SequenceKind::Snowflake(SnowflakeRule {
            worker_id: Some(1023),
            epoch_ms: 0,
            max_clock_backward_ms: 0
        })
    );
    assert!(!f.kind.needs_meta());
}

#[test]
fn lookups_are_case_insensitive() {
    let r = valid(
        "[sequences.Payment_Seq]\nkind = \"segment\"\ntable = \"Payment\"\ncolumn = \"Payment_ID\"\n",
    );
    assert_eq!(
        r.sequence("payment_seq").map(|s| s.name.as_str()),
        Some("Payment_Seq")
    );
    assert_eq!(
        r.sequence_for_column("PAYMENT", "payment_id")
            .map(|s| s.name.as_str()),
        Some("Payment_Seq")
    );
    assert!(r.sequence_for_column("payment", "uid").is_none());
    assert!(r.sequence("other").is_none());
}

#[test]
fn tables_on_the_default_data_source_may_use_sequences() {
    let r = valid(
        "[sequences.audit_seq]\nkind = \"segment\"\ntable = \"audit_log\"\ncolumn = \"id\"\n",
    );
    assert_eq!(
        r.sequence_for_column("audit_log", "id")
            .map(|s| s.name.as_str()),
        Some("audit_seq")
    );
}

#[test]
fn unknown_and_missing_kind() {
    assert_eq!(
        problems("[sequences.a]\nkind = \"uuid\"\n[sequences.b]\ntable = \"t\"\ncolumn = \"id\"\n"),
        [
            "sequences.a.kind: unknown kind 'uuid'; expected snowflake or segment",
            "sequences.b.kind: missing; expected snowflake or segment",
        ]
    );
}

#[test]
fn one_column_one_sequence() {
    assert_eq!(
        problems(
            "[sequences.a]\nkind = \"segment\"\ntable = \"payment\"\ncolumn = \"payment_id\"\n\
             [sequences.b]\nkind = \"snowflake\"\ntable = \"PAYMENT\"\ncolumn = \"Payment_Id\"\n"
        ),
        ["sequences.b.column: column PAYMENT.Payment_Id is already filled by sequence 'a'"]
    );
}

#[test]
fn one_filled_column_per_table() {
    assert_eq!(
        problems(
            "[sequences.a]\nkind = \"segment\"\ntable = \"payment\"\ncolumn = \"payment_id\"\n\
             [sequences.b]\nkind = \"snowflake\"\ntable = \"Payment\"\ncolumn = \"trace_id\"\n"
        ),
        ["sequences.b.table: table Payment already has column payment_id filled by sequence 'a'; a table has at most one filled column"]
    );
}

#[test]
fn table_and_column_go_together() {
    assert_eq!(
        problems(
            "[sequences.a]\nkind = \"segment\"\ntable = \"payment\"\n\
             [sequences.b]\nkind = \"segment\"\ncolumn = \"id\"\n\
             [sequences.c]\nkind = \"segment\"\ntable = \"pay ment\"\ncolumn = \"id`\"\n"
        ),
        [
            "sequences.a.column: missing; `table` needs the `column` the sequence fills",
            "sequences.b.table: missing; `column` needs the `table` it belongs to",
            "sequences.c.table: bad table name 'pay ment'",
            "sequences.c.column: bad column name 'id`'",
        ]
    );
}

#[test]
fn names() {
    assert_eq!(
        problems("[sequences.\"a-b\"]\nkind = \"segment\"\n[sequences.S]\nkind = \"segment\"\n[sequences.s]\nkind = \"segment\"\n"),
        [
            "sequences.a-b: bad sequence name 'a-b'",
            "sequences.s: 's' and 'S' differ only in case; sequence names are matched case-insensitively",
        ]
    );
}

#[test]
fn segment_ranges() {
    assert_eq!(
        problems(
            "[sequences.a]\nkind = \"segment\"\nstep = 0\nstart = 0\nmax = -1\n\
             [sequences.b]\nkind = \"segment\"\nstep = 2147483648\n\
             [sequences.c]\nkind = \"segment\"\nstart = 100\nmax = 99\n"
        ),
        [
            "sequences.a.step: 0 is out of range (1 to 2147483647)",
            "sequences.a.start: 0 is out of range (1 to 9223372036854775807)",
            "sequences.a.max: -1 is out of range (1 to 9223372036854775807)",
            "sequences.b.step: 2147483648 is out of range (1 to 2147483647)",
            "sequences.c.max: 99 is below start (100)",
        ]
    );
}

#[test]
fn snowflake_ranges() {
    assert_eq!(
        problems(
            "[sequences.a]\nkind = \"snowflake\"\nworker_id = 1024\nepoch = -1\nmax_clock_backward_ms = 1001\n\
             [sequences.b]\nkind = \"snowflake\"\nworker_id = -1\n"
        ),
        [
            "sequences.a.worker_id: 1024 is out of range (0 to 1023)",
            "sequences.a.epoch: -1 is out of range (0 to 9223372036854775807)",
            "sequences.a.max_clock_backward_ms: 1001 is out of range (0 to 1000)",
            "sequences.b.worker_id: -1 is out of range (0 to 1023)",
        ]
    );
}

#[test]
fn fields_of_the_other_kind_are_errors() {
    assert_eq!(
        problems(
            "[sequences.a]\nkind = \"segment\"\nworker_id = 1\nepoch = 0\nmax_clock_backward_ms = 1\n\
             [sequences.b]\nkind = \"snowflake\"\nstep = 1\nstart = 1\nmax = 1\n"
        ),
        [
            "sequences.a.worker_id: not used by kind 'segment'",
            "sequences.a.epoch: not used by kind 'segment'",
            "sequences.a.max_clock_backward_ms: not used by kind 'segment'",
            "sequences.b.step: not used by kind 'snowflake'",
            "sequences.b.start: not used by kind 'snowflake'",
            "sequences.b.max: not used by kind 'snowflake'",
        ]
    );
}

#[test]
fn meta_data_source_must_exist() {
    assert_eq!(
        problems_with("[proxy]\nmeta_data_source = \"nope\"\n", ""),
        ["proxy.meta_data_source: unknown data source 'nope'"]
    );
}

#[test]
fn meta_data_source_is_required_by_state_in_the_meta_tables() {
    assert_eq!(
        problems_with(
            "",
            "[sequences.seg]\nkind = \"segment\"\n\
             [sequences.leased]\nkind = \"snowflake\"\n\
             [sequences.fixed]\nkind = \"snowflake\"\nworker_id = 7\n"
        ),
        [
            "proxy.meta_data_source: missing; snowflake sequence 'leased' leases its worker id there (or set its worker_id)",
            "proxy.meta_data_source: missing; segment sequence 'seg' reserves its blocks there",
        ]
    );
    // Fixed worker ids keep no state: no meta data source needed.
    let r = parse(&format!(
        "{BASE}[sequences.fixed]\nkind = \"snowflake\"\nworker_id = 7\n"
    ))
    .expect("valid");
    assert_eq!(r.proxy.meta_data_source, None);
    assert_eq!(r.sequences.len(), 1);
}

#[test]
fn unknown_fields_are_errors() {
    let p = problems("[sequences.a]\nkind = \"segment\"\nsteps = 10\n");
    assert_eq!(p.len(), 1);
    assert!(
        p[0].starts_with("line ") && p[0].contains("unknown field `steps`"),
        "{p:?}"
    );
}

#[test]
fn sequence_problems_come_with_all_others() {
    let p = problems_with(
        "[proxy]\nmax_connections = 0\n",
        "[sequences.a]\nkind = \"uuid\"\n[sequences.b]\nkind = \"segment\"\n",
    );
    assert_eq!(
        p,
        [
            "proxy.max_connections: must be at least 1",
            "sequences.a.kind: unknown kind 'uuid'; expected snowflake or segment",
            "proxy.meta_data_source: missing; segment sequence 'b' reserves its blocks there",
        ]
    );
}
