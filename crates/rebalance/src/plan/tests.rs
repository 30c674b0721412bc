use std::path::Path;

use super::*;

/// payment and ledger bound (one node per data source, ds_4 owning nothing yet), acct on
/// two physical tables per data source, a broadcast and a single table.
const RULES: &str = r#"
[[users]]
name = "app"
password = "secret"
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
[data_sources.ds_4]
address = "127.0.0.1:3306"
user = "root"
database = "bank_4"
[tables.payment]
kind = "sharded"
column = "uid"
algorithm = "uid_slice"
nodes = ["ds_0", "ds_1", "ds_4"]
slices = { "00-49" = "ds_0", "50-99" = "ds_1" }
[tables.ledger]
kind = "sharded"
column = "uid"
algorithm = "uid_slice"
nodes = ["ds_0", "ds_1", "ds_4"]
slices = { "00-49" = "ds_0", "50-99" = "ds_1" }
[[binding_groups]]
tables = ["payment", "ledger"]
[tables.acct]
kind = "sharded"
column = "uid"
column_type = "string"
algorithm = "uid_slice"
nodes = ["ds_0.acct_{0..1}", "ds_4.acct_{0..1}"]
slices = { "00-24" = "ds_0.acct_0", "25-49" = "ds_0.acct_1", "50-99" = "ds_4.acct_0" }
[tables.branch]
kind = "broadcast"
[tables.audit]
kind = "single"
data_source = "ds_1"
"#;

fn rules() -> Rules {
    rules::parse_str(RULES, Path::new("bank.toml")).expect("valid rules")
}

fn slices(text: &str) -> SliceSet {
    text.parse().expect("slices")
}

fn refusal(result: Result<MovePlan, RebalanceError>) -> String {
    match result {
        Err(RebalanceError::Refused(reason)) => reason,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn a_binding_group_moves_together_from_each_owner() {
    let plan = MovePlan::build(
        &rules(),
        &SliceMapVersion::default(),
        slices("45-54"),
        "ds_4",
        &["payment".into()],
    )
    .expect("a plan");
    assert_eq!(
        plan.to_string(),
        "slices 45-54 to ds_4 (slice map version 0 -> 1)\n  \
         payment: ds_0.payment (slices 45-49) -> ds_4.payment\n  \
         payment: ds_1.payment (slices 50-54) -> ds_4.payment\n  \
         ledger: ds_0.ledger (slices 45-49) -> ds_4.ledger\n  \
         ledger: ds_1.ledger (slices 50-54) -> ds_4.ledger"
    );
    assert_eq!(
        slice_map::format_slices(&plan.next_map.tables["payment"]),
        "00-44=ds_0;45-54=ds_4;55-99=ds_1"
    );
    assert_eq!(plan.next_map.tables.len(), 1, "one row per binding group");
    assert_eq!(
        plan.groups,
        [("payment".to_string(), slices("45-54"))].into()
    );
    assert_eq!(plan.source_data_sources(), ["ds_0", "ds_1"]);
    assert_eq!(plan.destination_data_source(), "ds_4");
    assert_eq!(
        plan.tables[0].parts[0].source.sql_name(),
        "`bank_0`.`payment`"
    );
    let state = plan.new_move();
    assert_eq!(
        state.nodes[1],
        ("ds_1.payment".to_string(), "ds_4.payment".to_string())
    );
}

#[test]
fn several_physical_tables_on_a_data_source_are_named_by_table() {
    let plan = MovePlan::build(
        &rules(),
        &SliceMapVersion::default(),
        slices("20-29"),
        "ds_4.acct_1",
        &["acct".into()],
    )
    .expect("a plan");
    assert_eq!(
        plan.to_string(),
        "slices 20-29 to ds_4.acct_1 (slice map version 0 -> 1)\n  \
         acct: ds_0.acct_0 (slices 20-24) -> ds_4.acct_1\n  \
         acct: ds_0.acct_1 (slices 25-29) -> ds_4.acct_1"
    );
    assert_eq!(
        slice_map::format_slices(&plan.next_map.tables["acct"]),
        "00-19=ds_0.acct_0;20-29=ds_4.acct_1;30-49=ds_0.acct_1;50-99=ds_4.acct_0"
    );
    let ambiguous = refusal(MovePlan::build(
        &rules(),
        &SliceMapVersion::default(),
        slices("20-29"),
        "ds_4",
        &["acct".into()],
    ));
    assert!(ambiguous.contains("holds 2 nodes of acct"), "{ambiguous}");
}

#[test]
fn the_plan_starts_from_the_newest_map_version() {
    let first = MovePlan::build(
        &rules(),
        &SliceMapVersion::default(),
        slices("45-54"),
        "ds_4",
        &["ledger".into()],
    )
    .expect("first");
    // The map names payment for the group, so a move named by ledger uses that row.
    let map = first.next_map.clone();
    let second = MovePlan::build(&rules(), &map, slices("55-56"), "ds_4", &["ledger".into()])
        .expect("second");
    assert_eq!(second.from_version, 1);
    assert_eq!(
        slice_map::format_slices(&second.next_map.tables["payment"]),
        "00-44=ds_0;45-56=ds_4;57-99=ds_1"
    );
    let again = refusal(MovePlan::build(
        &rules(),
        &map,
        slices("50-60"),
        "ds_4",
        &["payment".into()],
    ));
    assert_eq!(again, "slices 50-54 of payment are on ds_4.payment already");
}

#[test]
fn without_a_table_every_uid_slice_group_moves() {
    let plan = MovePlan::build(
        &rules(),
        &SliceMapVersion::default(),
        slices("10"),
        "ds_4.acct_1",
        &[],
    );
    // payment's nodes have no ds_4.acct_1: the destination must be a node of every table.
    let reason = refusal(plan);
    assert!(
        reason.starts_with("ds_4.acct_1 is not a node of payment in the rules"),
        "{reason}"
    );
}

#[test]
fn refuses_what_cannot_move() {
    let map = SliceMapVersion::default();
    let cases = [
        ("branch", "ds_4", "branch is a broadcast table"),
        ("audit", "ds_4", "audit is a single table"),
        ("nope", "ds_4", "nope is not a table of the rules"),
        (
            "payment",
            "ds_9",
            "data source 'ds_9' holds no node of payment",
        ),
        (
            "payment",
            "ds_0",
            "slices 30-44 of payment are on ds_0.payment already",
        ),
    ];
    for (table, to, wanted) in cases {
        let scope = [table.to_string()];
        let reason = refusal(MovePlan::build(&rules(), &map, slices("30-44"), to, &scope));
        assert!(reason.starts_with(wanted), "{table} {to}: {reason}");
    }
    let none = refusal(MovePlan::build(
        &rules(),
        &map,
        SliceSet::default(),
        "ds_4",
        &[],
    ));
    assert!(none.starts_with("no slices named"), "{none}");
}
