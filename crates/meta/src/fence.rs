//! The fence: slices whose writes wait on every proxy while a cutover switches their owner.
//! One row, whose epoch advances with every change (set or release):
//!
//! ```sql
//! CREATE TABLE IF NOT EXISTS dbmesh_fence (
//!   id TINYINT UNSIGNED NOT NULL PRIMARY KEY,  -- 1
//!   epoch BIGINT UNSIGNED NOT NULL,
//!   map_version BIGINT UNSIGNED NOT NULL,      -- the slice-map version it holds
//!   fenced TEXT NOT NULL,                      -- 'payment:30-44;ledger:30-44', '' when released
//!   expires_at DATETIME(3) NOT NULL,
//!   set_by VARCHAR(255) NOT NULL);
//! ```
//!
//! A fence holds the slices of one slice-map version: a proxy serving a newer version (the
//! cutover switched the map) is past it. It lapses at `expires_at` by the meta server's clock,
//! so a rebalancer that dies mid-cutover cannot hold writes forever; a map switch is written
//! only while its fence is in force ([`crate::slice_map::write`]).

use std::collections::BTreeMap;
use std::time::Duration;

use backend::quote_literal;

use crate::proxies::expiry;
use crate::{Meta, MetaError, SliceSet};

pub(crate) const CREATE: &str = "CREATE TABLE IF NOT EXISTS dbmesh_fence (\
    id TINYINT UNSIGNED NOT NULL PRIMARY KEY, \
    epoch BIGINT UNSIGNED NOT NULL, \
    map_version BIGINT UNSIGNED NOT NULL, \
    fenced TEXT NOT NULL, \
    expires_at DATETIME(3) NOT NULL, \
    set_by VARCHAR(255) NOT NULL); \
    INSERT IGNORE INTO dbmesh_fence VALUES (1, 0, 0, '', UTC_TIMESTAMP(3), '')";

/// The fence row.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FenceRecord {
    pub epoch: u64,
    /// The slice-map version whose slices it holds.
    pub map_version: u64,
    /// Logical table (each standing for its binding group) → its fenced slices; empty when
    /// released.
    pub tables: BTreeMap<String, SliceSet>,
    /// Until it lapses, by the meta server's clock when read; `None` once lapsed.
    pub remaining: Option<Duration>,
    pub set_by: String,
}

impl FenceRecord {
    /// Set and not lapsed.
    pub fn in_force(&self) -> bool {
        !self.tables.is_empty() && self.remaining.is_some()
    }
}

pub(crate) fn format_tables(tables: &BTreeMap<String, SliceSet>) -> String {
    tables
        .iter()
        .map(|(table, slices)| format!("{table}:{slices}"))
        .collect::<Vec<_>>()
        .join(";")
}

pub(crate) fn parse_tables(text: &str) -> Result<BTreeMap<String, SliceSet>, String> {
    text.split(';')
        .filter(|item| !item.trim().is_empty())
        .map(|item| {
            let (table, slices) = item
                .split_once(':')
                .ok_or_else(|| format!("'{item}' is not 'table:slices'"))?;
            Ok((table.trim().to_string(), slices.parse()?))
        })
        .collect()
}

/// The fence row as it is now.
pub async fn read(meta: &mut Meta) -> Result<FenceRecord, MetaError> {
    let result = meta
        .query(
            "SELECT epoch, map_version, fenced, set_by, \
             TIMESTAMPDIFF(MICROSECOND, UTC_TIMESTAMP(3), expires_at) AS remaining \
             FROM dbmesh_fence WHERE id = 1",
        )
        .await?;
    let corrupt = |reason: String| MetaError::Corrupt {
        what: "fence row",
        reason,
    };
    let number = |name: &str| -> Result<i64, MetaError> {
        result
            .value(0, name)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| corrupt(format!("{name}: {:?}", result.value(0, name))))
    };
    let remaining = number("remaining")?;
    Ok(FenceRecord {
        epoch: number("epoch")?.unsigned_abs(),
        map_version: number("map_version")?.unsigned_abs(),
        tables: parse_tables(result.value(0, "fenced").unwrap_or("")).map_err(corrupt)?,
        remaining: (remaining > 0).then(|| Duration::from_micros(remaining.unsigned_abs())),
        set_by: result.value(0, "set_by").unwrap_or("").to_string(),
    })
}

/// Sets a fence on `tables`' slices of slice-map version `map_version` for `lease`, if no
/// other fence is in force; its epoch.
pub async fn set(
    meta: &mut Meta,
    tables: &BTreeMap<String, SliceSet>,
    map_version: u64,
    lease: Duration,
    set_by: &str,
) -> Result<u64, MetaError> {
    if tables.is_empty() || tables.values().any(SliceSet::is_empty) {
        return Err(MetaError::Conflict("a fence needs slices".into()));
    }
    let sql = format!(
        "UPDATE dbmesh_fence SET epoch = LAST_INSERT_ID(epoch + 1), map_version = {map_version}, \
         fenced = {fenced}, expires_at = {expiry}, set_by = {set_by} \
         WHERE id = 1 AND (fenced = '' OR expires_at <= UTC_TIMESTAMP(3))",
        fenced = quote_literal(&format_tables(tables)),
        expiry = expiry(lease),
        set_by = quote_literal(set_by),
    );
    if meta.query(&sql).await?.ok.affected_rows != 1 {
        let other = read(meta).await?;
        return Err(MetaError::Conflict(format!(
            "another fence is in force (epoch {}, set by {})",
            other.epoch, other.set_by
        )));
    }
    let result = meta.query("SELECT LAST_INSERT_ID() AS epoch").await?;
    result
        .value(0, "epoch")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| MetaError::Corrupt {
            what: "fence epoch",
            reason: "none returned".into(),
        })
}

/// Releases the fence of `epoch` (writes resume by the map in force); `false` when that fence
/// is not the row's any more (released or replaced already).
pub async fn release(meta: &mut Meta, epoch: u64) -> Result<bool, MetaError> {
    let sql = format!(
        "UPDATE dbmesh_fence SET epoch = epoch + 1, fenced = '', expires_at = UTC_TIMESTAMP(3) \
         WHERE id = 1 AND epoch = {epoch}"
    );
    Ok(meta.query(&sql).await?.ok.affected_rows == 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fenced_text_round_trips() {
        let tables: BTreeMap<String, SliceSet> = [
            ("payment".to_string(), "30-44".parse().expect("slices")),
            ("ledger".to_string(), "30-44,50".parse().expect("slices")),
        ]
        .into();
        let text = format_tables(&tables);
        assert_eq!(text, "ledger:30-44,50;payment:30-44");
        assert_eq!(parse_tables(&text), Ok(tables));
        assert_eq!(parse_tables(""), Ok(BTreeMap::new()));
        assert!(parse_tables("payment").is_err());
    }
}
