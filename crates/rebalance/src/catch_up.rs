//! The catch-up: one binlog follower per source data source, applying to the destination
//! the changes of the moving rows (the row's slice is among its source table's moving
//! slices) from the position saved in the move state: the processed one, or before the
//! first snapshot when none was saved.

use std::collections::HashMap;
use std::sync::Arc;

use binlog::{
    Follower, FollowerHandle, FollowerMetrics, FollowerOptions, FollowerSettings, GtidPosition,
    Route, TableRef, TableSchema, Value,
};
use meta::moves::MoveRecord;
use meta::SliceSet;
use rules::{Rules, ShardValue, ShardedTable};

use crate::copy::data_source_options;
use crate::plan::{MovePlan, PhysicalTable};
use crate::RebalanceError;

/// The replica server ids followers announce: this plus the move id times 100 plus the
/// source's index. Sources must not have replicas with ids in that range.
pub const SERVER_ID_BASE: u32 = 3_000_000_000;

/// A follower of one source data source.
pub struct SourceFollower {
    pub data_source: String,
    pub handle: FollowerHandle,
}

/// Where one source table's moving rows go.
struct Routed {
    rule: ShardedTable,
    slices: SliceSet,
    destination: TableRef,
}

/// Starts the followers of every source of `plan`, each from its saved position in
/// `record` (which must have one: the copy records it with the first snapshot).
pub fn start_followers(
    rules: &Rules,
    plan: &MovePlan,
    record: &MoveRecord,
    metrics: &FollowerMetrics,
) -> Result<Vec<SourceFollower>, RebalanceError> {
    let destination = data_source_options(rules, plan.destination_data_source())?;
    let mut followers = Vec::new();
    for (index, source) in plan.source_data_sources().into_iter().enumerate() {
        let state = record
            .sources
            .iter()
            .find(|s| s.data_source == source)
            .filter(|s| !s.start_position.is_empty())
            .ok_or_else(|| {
                RebalanceError::refused(format!(
                    "move {} has no snapshot position of '{source}': copy first",
                    record.id
                ))
            })?;
        let from: GtidPosition = state.resume_position().parse()?;
        let snapshot: GtidPosition = state.snapshot_position.parse()?;
        let mut routes: HashMap<TableRef, Routed> = HashMap::new();
        for (table, part) in plan.parts().filter(|(_, p)| p.source.data_source == source) {
            routes.insert(
                table_ref(&part.source),
                Routed {
                    rule: table.rule.clone(),
                    slices: part.slices,
                    destination: table_ref(&table.destination),
                },
            );
        }
        let routes = Arc::new(routes);
        let followed = routes.clone();
        let route: Route = Arc::new(
            move |table: &TableRef, schema: &TableSchema, row: &[Value]| {
                let routed = routes.get(table)?;
                let column = schema
                    .columns
                    .iter()
                    .position(|c| c.eq_ignore_ascii_case(routed.rule.column()))?;
                let slice = slice_of(&routed.rule, row.get(column)?)?;
                routed
                    .slices
                    .contains(slice)
                    .then(|| routed.destination.clone())
            },
        );
        let server_id = SERVER_ID_BASE
            .saturating_add(u32::try_from(record.id % 10_000_000).unwrap_or(0) * 100)
            .saturating_add(u32::try_from(index).unwrap_or(99));
        let handle = Follower::start_with(
            FollowerOptions {
                source: data_source_options(rules, &source)?,
                destination: destination.clone(),
                from,
                server_id,
                route,
            },
            FollowerSettings {
                tables: Some(Arc::new(move |t: &TableRef| followed.contains_key(t))),
                ignore_unknown_xa_before: Some(snapshot),
                metrics: metrics.clone(),
                ..FollowerSettings::default()
            },
        );
        followers.push(SourceFollower {
            data_source: source,
            handle,
        });
    }
    Ok(followers)
}

fn table_ref(table: &PhysicalTable) -> TableRef {
    TableRef {
        database: table.database.clone(),
        table: table.table.clone(),
    }
}

/// The UID slice of a row whose sharding column holds `value`, as the router computes it;
/// `None` for a value without one (NULL, negative, not ending in digits).
fn slice_of(rule: &ShardedTable, value: &Value) -> Option<u8> {
    let text;
    let shard_value = match value {
        Value::Int(n) => ShardValue::Int(*n),
        Value::UInt(n) => ShardValue::UInt(*n),
        Value::Decimal(s) | Value::Temporal(s) => ShardValue::Str(s),
        Value::Bytes(bytes) => {
            text = String::from_utf8_lossy(bytes);
            ShardValue::Str(&text)
        }
        Value::Null | Value::Float(_) | Value::Double(_) => return None,
    };
    rule.slice_of(&shard_value).ok()
}
