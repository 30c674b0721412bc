//! The versioned slice map: version 0 is the rule file's; each later version, written by a
//! cutover, holds the complete `slices` of every `uid_slice` table moved so far (one row per
//! table named, the binding group's other tables follow it as in the rule file). A version is
//! written in one transaction, so a reader sees all its rows or none.
//!
//! ```sql
//! CREATE TABLE IF NOT EXISTS dbmesh_slice_map (
//!   version BIGINT UNSIGNED NOT NULL,
//!   table_name VARCHAR(64) NOT NULL,
//!   slices TEXT NOT NULL,          -- '00-29=ds_0;30-44=ds_4;45-99=ds_1'
//!   written_by VARCHAR(255) NOT NULL,
//!   written_at DATETIME(3) NOT NULL,
//!   PRIMARY KEY (version, table_name));
//! ```

use std::collections::BTreeMap;

use backend::quote_literal;
use rules::Rules;

use crate::{Meta, MetaError};

pub(crate) const CREATE: &str = "CREATE TABLE IF NOT EXISTS dbmesh_slice_map (\
    version BIGINT UNSIGNED NOT NULL, \
    table_name VARCHAR(64) NOT NULL, \
    slices TEXT NOT NULL, \
    written_by VARCHAR(255) NOT NULL, \
    written_at DATETIME(3) NOT NULL, \
    PRIMARY KEY (version, table_name))";

/// A table's slices as the rule file writes them: `"00-29" = "ds_0"`.
pub type TableSlices = BTreeMap<String, String>;

/// One version of the slice map.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SliceMapVersion {
    pub version: u64,
    /// Logical table → its slices; tables not named keep the rule file's.
    pub tables: BTreeMap<String, TableSlices>,
}

/// `"00-29=ds_0;30-44=ds_4"`.
pub fn format_slices(slices: &TableSlices) -> String {
    slices
        .iter()
        .map(|(range, target)| format!("{range}={target}"))
        .collect::<Vec<_>>()
        .join(";")
}

/// Reads [`format_slices`]' text.
pub fn parse_slices(text: &str) -> Result<TableSlices, String> {
    text.split(';')
        .filter(|item| !item.trim().is_empty())
        .map(|item| {
            item.split_once('=')
                .map(|(range, target)| (range.trim().to_string(), target.trim().to_string()))
                .ok_or_else(|| format!("'{item}' is not 'NN-NN=target'"))
        })
        .collect()
}

/// `rules` with the slices of every table `map` names (and of its binding group): the
/// rules a proxy serving `map` routes by.
pub fn apply(rules: &Rules, map: &SliceMapVersion) -> Result<Rules, String> {
    let mut rules = rules.clone();
    for (table, slices) in &map.tables {
        rules = rules
            .with_slices(table, slices)
            .map_err(|e| e.to_string())?;
    }
    Ok(rules)
}

/// The newest version's number, 0 when none was written.
pub async fn latest_version(meta: &mut Meta) -> Result<u64, MetaError> {
    let result = meta
        .query("SELECT COALESCE(MAX(version), 0) AS version FROM dbmesh_slice_map")
        .await?;
    version_of(result.value(0, "version"))
}

fn version_of(value: Option<&str>) -> Result<u64, MetaError> {
    value
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| MetaError::Corrupt {
            what: "slice map version",
            reason: format!("{value:?}"),
        })
}

/// The newest version with its tables; version 0 (no tables) when none was written.
pub async fn latest(meta: &mut Meta) -> Result<SliceMapVersion, MetaError> {
    read_where(
        meta,
        "version = (SELECT MAX(version) FROM dbmesh_slice_map)",
    )
    .await
}

/// Version `version` with its tables (version 0 has none); `Corrupt` when a version past 0
/// has no rows.
pub async fn read(meta: &mut Meta, version: u64) -> Result<SliceMapVersion, MetaError> {
    let map = read_where(meta, &format!("version = {version}")).await?;
    if version > 0 && map.version != version {
        return Err(MetaError::Corrupt {
            what: "slice map",
            reason: format!("version {version} has no rows"),
        });
    }
    Ok(map)
}

async fn read_where(meta: &mut Meta, filter: &str) -> Result<SliceMapVersion, MetaError> {
    let result = meta
        .query(&format!(
            "SELECT version, table_name, slices FROM dbmesh_slice_map WHERE {filter}"
        ))
        .await?;
    let mut map = SliceMapVersion::default();
    for row in result.rows {
        let cell = |i: usize| row.get(i).cloned().flatten().unwrap_or_default();
        map.version = version_of(Some(&cell(0)))?;
        let slices = parse_slices(&cell(2)).map_err(|reason| MetaError::Corrupt {
            what: "slice map row",
            reason,
        })?;
        map.tables.insert(cell(1), slices);
    }
    Ok(map)
}

/// Writes `map` as version `map.version`, which must be the next one, in one transaction; with
/// `fence_epoch`, only while that fence is in force (set and not lapsed), so a cutover whose
/// fence lapsed cannot switch the map under proxies that stopped honouring it. `Conflict`
/// when another version came first or the fence is gone.
pub async fn write(
    meta: &mut Meta,
    map: &SliceMapVersion,
    written_by: &str,
    fence_epoch: Option<u64>,
) -> Result<(), MetaError> {
    meta.query("BEGIN").await?;
    let written = write_in_transaction(meta, map, written_by, fence_epoch).await;
    let end = if written.is_ok() {
        "COMMIT"
    } else {
        "ROLLBACK"
    };
    let ended = meta.query(end).await;
    written?;
    ended.map(drop)
}

async fn write_in_transaction(
    meta: &mut Meta,
    map: &SliceMapVersion,
    written_by: &str,
    fence_epoch: Option<u64>,
) -> Result<(), MetaError> {
    // The fence row serializes writers (it always exists, see `fence`).
    let fence = meta
        .query(
            "SELECT epoch, fenced <> '' AND expires_at > UTC_TIMESTAMP(3) AS live \
             FROM dbmesh_fence WHERE id = 1 FOR UPDATE",
        )
        .await?;
    if let Some(epoch) = fence_epoch {
        let held = fence.value(0, "epoch") == Some(epoch.to_string().as_str())
            && fence.value(0, "live") == Some("1");
        if !held {
            return Err(MetaError::Conflict(format!(
                "the fence of epoch {epoch} is no longer in force (released, lapsed or replaced): \
                 the slice map was not switched"
            )));
        }
    }
    let latest = version_of(
        meta.query("SELECT COALESCE(MAX(version), 0) AS version FROM dbmesh_slice_map")
            .await?
            .value(0, "version"),
    )?;
    if map.version != latest + 1 {
        return Err(MetaError::Conflict(format!(
            "slice map version {} cannot follow version {latest}",
            map.version
        )));
    }
    let rows: Vec<String> = map
        .tables
        .iter()
        .map(|(table, slices)| {
            format!(
                "({}, {}, {}, {}, UTC_TIMESTAMP(3))",
                map.version,
                quote_literal(table),
                quote_literal(&format_slices(slices)),
                quote_literal(written_by)
            )
        })
        .collect();
    if rows.is_empty() {
        return Err(MetaError::Conflict(
            "a slice map version names no table".into(),
        ));
    }
    meta.query(&format!(
        "INSERT INTO dbmesh_slice_map (version, table_name, slices, written_by, written_at) \
         VALUES {}",
        rows.join(", ")
    ))
    .await
    .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_text_round_trips() {
        let slices: TableSlices = [("00-29", "ds_0"), ("30-44", "ds_4"), ("45-99", "ds_1")]
            .into_iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        let text = format_slices(&slices);
        assert_eq!(text, "00-29=ds_0;30-44=ds_4;45-99=ds_1");
        assert_eq!(parse_slices(&text), Ok(slices));
        assert!(parse_slices("00-99").is_err());
    }
}
