//! dbmesh's shared state about the proxies and the slice map, in the meta data source's
//! database (the rule file's `proxy.meta_data_source`):
//!
//! - [`proxies`]: one row per live proxy (`dbmesh_proxy`): its heartbeat, lease, and the
//!   slice-map version and fence epoch it has acknowledged;
//! - [`slice_map`]: the versioned slice map (`dbmesh_slice_map`): version 0 is the rule
//!   file's, each later version the slices of every table moved since, written by a cutover;
//! - [`fence`]: the slices whose writes wait during a cutover (`dbmesh_fence`);
//! - [`moves`]: rebalancing moves, their phase, copy cursors and binlog positions
//!   (`dbmesh_move` and its detail tables).
//!
//! Proxies read and acknowledge (`server`'s follower), the rebalancer writes. Every function
//! takes a [`Meta`] connection; times are the meta server's (`UTC_TIMESTAMP(3)`), never a
//! proxy's clock.

pub mod cutovers;
pub mod fence;
pub mod moves;
pub mod proxies;
pub mod slice_map;
mod slices;

use std::borrow::Cow;
use std::time::Duration;

use backend::conn::QueryResult;
use backend::{BackendConn, BackendError, ConnectOptions};
use protocol::ClientError;
use rules::{DataSourceConfig, Rules};

pub use fence::FenceRecord;
pub use moves::{MoveRecord, Phase};
pub use proxies::ProxyRecord;
pub use slice_map::SliceMapVersion;
pub use slices::SliceSet;

/// Why the meta data source could not be used.
#[derive(Debug, Clone, thiserror::Error)]
pub enum MetaError {
    /// No `proxy.meta_data_source` in the rules.
    #[error("no meta data source is configured (proxy.meta_data_source)")]
    NotConfigured,
    /// The server could not be reached, or failed the statement.
    #[error("the meta data source '{source_name}' failed: {reason}")]
    Failed { source_name: String, reason: String },
    /// A row there does not read as dbmesh wrote it.
    #[error("the meta data source holds an unreadable {what}: {reason}")]
    Corrupt { what: &'static str, reason: String },
    /// A compare-and-set found another writer first.
    #[error("{0}")]
    Conflict(String),
}

/// What a client whose statement needed the meta data source sees: ER_UNKNOWN_ERROR-like
/// 1105 (HY000), as for a backend that failed.
impl ClientError for MetaError {
    fn code(&self) -> u16 {
        1105
    }
    fn sqlstate(&self) -> &str {
        "HY000"
    }
    fn client_message(&self) -> Cow<'static, str> {
        Cow::Owned(self.to_string())
    }
}

/// The meta data source of `rules`: its name and configuration, if one is configured.
pub fn data_source(rules: &Rules) -> Option<(&str, &DataSourceConfig)> {
    let name = rules.proxy.meta_data_source.as_deref()?;
    Some((name, rules.data_source(name)?))
}

/// How the meta database is reached on `address` (its primary's when `None`): the meta data
/// source's login, with its database selected and `found_rows` on (an update that leaves a
/// row unchanged still counts it).
pub fn options(rules: &Rules, address: Option<&str>) -> Option<ConnectOptions> {
    let (name, ds) = data_source(rules)?;
    Some(ConnectOptions {
        address: address.unwrap_or(&ds.address).to_string(),
        database: Some(ds.database.clone()),
        found_rows: true,
        ..ConnectOptions::for_data_source(name, ds)
    })
}

/// A connection to the meta database, its session in UTC and ready for
/// [`backend::quote_literal`] (backslashes escape).
pub async fn connect(options: &ConnectOptions) -> Result<BackendConn, BackendError> {
    let mut conn = BackendConn::connect(options).await?;
    conn.query(
        "SET time_zone = '+00:00', sql_mode = REPLACE(@@sql_mode, 'NO_BACKSLASH_ESCAPES', '')",
    )
    .await?;
    Ok(conn)
}

/// One connection to the meta database, opened when first needed and again after a failure,
/// each statement bounded by a timeout. The tables are created on the first connection.
pub struct Meta {
    options: ConnectOptions,
    timeout: Duration,
    conn: Option<BackendConn>,
}

impl Meta {
    /// The meta database of `rules` (its primary), each statement bounded by `timeout`.
    pub fn new(rules: &Rules, timeout: Duration) -> Result<Meta, MetaError> {
        let options = options(rules, None).ok_or(MetaError::NotConfigured)?;
        Ok(Meta::with_options(options, timeout))
    }

    /// The meta database `options` reach.
    pub fn with_options(options: ConnectOptions, timeout: Duration) -> Meta {
        Meta {
            options,
            timeout,
            conn: None,
        }
    }

    /// Where it is reached now.
    pub fn address(&self) -> &str {
        &self.options.address
    }

    /// Reaches it on `address` from the next statement on (its primary was switched).
    pub fn set_address(&mut self, address: &str) {
        if self.options.address != address {
            self.options.address = address.to_string();
            self.conn = None;
        }
    }

    fn failed(&self, reason: impl std::fmt::Display) -> MetaError {
        MetaError::Failed {
            source_name: self.options.source_name.clone(),
            reason: reason.to_string(),
        }
    }

    /// Runs `sql` (one or more statements; the last one's result) within the timeout. A
    /// connection that failed or timed out is closed, never reused.
    pub async fn query(&mut self, sql: &str) -> Result<QueryResult, MetaError> {
        let timeout = self.timeout;
        let run = async {
            let conn = match &mut self.conn {
                Some(conn) => conn,
                None => {
                    let mut conn = connect(&self.options).await?;
                    conn.query(&format!(
                        "{}; {}; {}; {}; {}",
                        proxies::CREATE,
                        slice_map::CREATE,
                        fence::CREATE,
                        moves::CREATE,
                        cutovers::CREATE
                    ))
                    .await?;
                    self.conn.insert(conn)
                }
            };
            conn.query(sql).await
        };
        match tokio::time::timeout(timeout, run).await {
            Ok(Ok(result)) => Ok(result),
            Ok(Err(e)) => {
                if !matches!(e, BackendError::Server { .. }) {
                    self.conn = None;
                }
                Err(self.failed(e))
            }
            Err(_) => {
                self.conn = None;
                Err(self.failed(format!("no answer within {timeout:?}")))
            }
        }
    }
}
