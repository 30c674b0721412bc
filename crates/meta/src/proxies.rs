//! The proxy registry: one row per proxy sharing the meta data source, keyed by its
//! `proxy.number`.
//!
//! ```sql
//! CREATE TABLE IF NOT EXISTS dbmesh_proxy (
//!   number SMALLINT UNSIGNED NOT NULL PRIMARY KEY,
//!   incarnation BIGINT UNSIGNED NOT NULL,
//!   name VARCHAR(255) NOT NULL,
//!   started_at DATETIME(3) NOT NULL,
//!   heartbeat_at DATETIME(3) NOT NULL,
//!   expires_at DATETIME(3) NOT NULL,
//!   map_version BIGINT UNSIGNED NOT NULL,
//!   fence_epoch BIGINT UNSIGNED NOT NULL);
//! ```
//!
//! A proxy registers (a new incarnation of its number, as the XA leases do), then every
//! heartbeat extends its lease, which lapses if not renewed in time, and reports the slice-map
//! version it serves and the fence epoch it honours: its acknowledgements. A renewal extends
//! only a lease that has not lapsed; a proxy whose lease lapsed registers again (and, until it
//! has, treats the slice maps as fenced: it may have missed a cutover). *Live* proxies are the
//! rows whose lease has not lapsed by the meta server's clock: a cutover waits for each of
//! them to acknowledge.

use std::time::Duration;

use backend::quote_literal;

use crate::{Meta, MetaError};

pub(crate) const CREATE: &str = "CREATE TABLE IF NOT EXISTS dbmesh_proxy (\
    number SMALLINT UNSIGNED NOT NULL PRIMARY KEY, \
    incarnation BIGINT UNSIGNED NOT NULL, \
    name VARCHAR(255) NOT NULL, \
    started_at DATETIME(3) NOT NULL, \
    heartbeat_at DATETIME(3) NOT NULL, \
    expires_at DATETIME(3) NOT NULL, \
    map_version BIGINT UNSIGNED NOT NULL, \
    fence_epoch BIGINT UNSIGNED NOT NULL)";

/// One registered proxy, as its row says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyRecord {
    /// `proxy.number`.
    pub number: u16,
    /// Advances with every registration of the number.
    pub incarnation: u64,
    /// Who it is (host, process, listener), for people.
    pub name: String,
    /// The slice-map version it serves.
    pub map_version: u64,
    /// The fence epoch it honours.
    pub fence_epoch: u64,
    /// The last heartbeat, UTC (the meta server's clock).
    pub heartbeat_at: String,
    /// Whether its lease still runs.
    pub live: bool,
}

/// `UTC_TIMESTAMP(3) + <lease>`.
pub fn expiry(lease: Duration) -> String {
    format!(
        "UTC_TIMESTAMP(3) + INTERVAL {} MICROSECOND",
        lease.as_micros()
    )
}

fn number_is(number: u16, incarnation: u64) -> String {
    format!("number = {number} AND incarnation = {incarnation}")
}

/// Registers a new incarnation of proxy `number`, leased for `lease`, serving `map_version`.
pub async fn register(
    meta: &mut Meta,
    number: u16,
    name: &str,
    lease: Duration,
    map_version: u64,
) -> Result<u64, MetaError> {
    let sql = format!(
        "INSERT INTO dbmesh_proxy (number, incarnation, name, started_at, heartbeat_at, \
         expires_at, map_version, fence_epoch) \
         VALUES ({number}, LAST_INSERT_ID(1), {name}, UTC_TIMESTAMP(3), UTC_TIMESTAMP(3), \
         {expiry}, {map_version}, 0) \
         ON DUPLICATE KEY UPDATE incarnation = LAST_INSERT_ID(incarnation + 1), \
         name = VALUES(name), started_at = VALUES(started_at), \
         heartbeat_at = VALUES(heartbeat_at), expires_at = VALUES(expires_at), \
         map_version = VALUES(map_version), fence_epoch = 0; \
         SELECT LAST_INSERT_ID() AS incarnation",
        name = quote_literal(name),
        expiry = expiry(lease)
    );
    let result = meta.query(&sql).await?;
    result
        .value(0, "incarnation")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| MetaError::Corrupt {
            what: "proxy registration",
            reason: "no incarnation returned".into(),
        })
}

/// Extends the lease of `number`'s `incarnation` by `lease` and records what it acknowledges,
/// if the lease has not lapsed; `false` if it has (register again).
pub async fn heartbeat(
    meta: &mut Meta,
    number: u16,
    incarnation: u64,
    lease: Duration,
    map_version: u64,
    fence_epoch: u64,
) -> Result<bool, MetaError> {
    let sql = format!(
        "UPDATE dbmesh_proxy SET heartbeat_at = UTC_TIMESTAMP(3), expires_at = {expiry}, \
         map_version = {map_version}, fence_epoch = {fence_epoch} \
         WHERE {who} AND expires_at > UTC_TIMESTAMP(3)",
        expiry = expiry(lease),
        who = number_is(number, incarnation),
    );
    Ok(meta.query(&sql).await?.ok.affected_rows == 1)
}

/// Ends the lease now (a graceful stop): a cutover no longer waits for this proxy.
pub async fn release(meta: &mut Meta, number: u16, incarnation: u64) -> Result<(), MetaError> {
    let sql = format!(
        "UPDATE dbmesh_proxy SET expires_at = UTC_TIMESTAMP(3) WHERE {}",
        number_is(number, incarnation)
    );
    meta.query(&sql).await.map(drop)
}

/// Every registered proxy, live or not, by number.
pub async fn list(meta: &mut Meta) -> Result<Vec<ProxyRecord>, MetaError> {
    let result = meta
        .query(
            "SELECT number, incarnation, name, map_version, fence_epoch, \
             DATE_FORMAT(heartbeat_at, '%Y-%m-%d %H:%i:%s.%f'), \
             expires_at > UTC_TIMESTAMP(3) FROM dbmesh_proxy ORDER BY number",
        )
        .await?;
    result
        .rows
        .into_iter()
        .map(|row| {
            let cell = |i: usize| row.get(i).cloned().flatten().unwrap_or_default();
            let corrupt = |reason: String| MetaError::Corrupt {
                what: "proxy row",
                reason,
            };
            let number = |i: usize| {
                cell(i)
                    .parse::<u64>()
                    .map_err(|e| corrupt(format!("column {i}: {e}")))
            };
            Ok(ProxyRecord {
                number: u16::try_from(number(0)?).map_err(|e| corrupt(e.to_string()))?,
                incarnation: number(1)?,
                name: cell(2),
                map_version: number(3)?,
                fence_epoch: number(4)?,
                heartbeat_at: cell(5),
                live: cell(6) == "1",
            })
        })
        .collect()
}
