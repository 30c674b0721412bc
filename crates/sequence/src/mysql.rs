//! [`MysqlStore`]: the [`MetaStore`] on a real MySQL/MariaDB database (the
//! rule file's `proxy.meta_data_source`), over one backend connection.
//!
//! Tables (created when missing, on every new connection):
//!
//! ```sql
//! CREATE TABLE IF NOT EXISTS dbmesh_sequence (
//!   name VARCHAR(64) NOT NULL PRIMARY KEY,
//!   next_value BIGINT UNSIGNED NOT NULL,
//!   step INT NOT NULL);
//! CREATE TABLE IF NOT EXISTS dbmesh_worker_lease (
//!   worker_id INT NOT NULL PRIMARY KEY,
//!   owner VARCHAR(128) NOT NULL,
//!   heartbeat_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3));
//! ```
//!
//! **Reserving a block** is one autocommit statement,
//! `UPDATE dbmesh_sequence SET next_value = LAST_INSERT_ID(GREATEST(next_value, start) + count)
//! WHERE name = … AND GREATEST(next_value, start) <= max`; the new next value comes back
//! in the OK packet's `last_insert_id` (or `SELECT LAST_INSERT_ID()` on the same
//! connection), which MySQL keeps per connection. The row lock is held for one
//! statement only, there is no transaction that a dropped connection could leave
//! open, and it costs one round trip, where `SELECT … FOR UPDATE` + `UPDATE` +
//! `COMMIT` costs three and holds the lock across them. When no row matches, a
//! `SELECT` tells a missing row (created with `INSERT IGNORE`, then the UPDATE
//! is repeated) from an exhausted sequence (and from a row another proxy created
//! in between, which the repeated UPDATE then finds).
//!
//! **Leases** compare `heartbeat_at` with `NOW(3)` inside single statements,
//! so the database's clock alone decides expiry. Taking over an expired lease
//! is `UPDATE … SET owner = me … WHERE heartbeat_at < NOW(3) - INTERVAL timeout
//! ORDER BY worker_id LIMIT 1` (the row lock makes the check-and-set atomic: of
//! two proxies racing for a row, the second no longer matches); a free id is
//! taken with `INSERT IGNORE` (a racing proxy gets 0 affected rows and tries the
//! next). Renewal is `UPDATE … WHERE worker_id = … AND owner = me`.
//!
//! The connection uses CLIENT_FOUND_ROWS, so a renewal landing in the same
//! millisecond as the previous one still counts its row, and `time_zone =
//! '+00:00'`, so TIMESTAMP comparisons are not bent by daylight-saving changes.
//! A failed connection is dropped and reopened by the next call; every call
//! is bounded by the query timeout. When the meta data source is switched to
//! another server ([`MysqlStore::follow`]), the next call connects there.

use std::ops::Range;
use std::time::Duration;

use backend::conn::QueryResult;
use backend::{quote_literal, BackendConn, BackendError, ConnectOptions};
use rules::Rules;
use tokio::sync::Mutex;

use crate::error::{StoreError, StoreFailure};
use crate::store::{BoxFuture, MetaStore, Reservation, WORKER_IDS};

const CREATE_SEQUENCE: &str = "CREATE TABLE IF NOT EXISTS dbmesh_sequence (\
    name VARCHAR(64) NOT NULL PRIMARY KEY, \
    next_value BIGINT UNSIGNED NOT NULL, \
    step INT NOT NULL)";
const CREATE_LEASE: &str = "CREATE TABLE IF NOT EXISTS dbmesh_worker_lease (\
    worker_id INT NOT NULL PRIMARY KEY, \
    owner VARCHAR(128) NOT NULL, \
    heartbeat_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3))";

/// How many times a free worker id is tried when other proxies keep taking it first.
const FREE_ID_RACES: usize = 8;

/// The meta store on a MySQL/MariaDB database.
pub struct MysqlStore {
    /// The meta data source's name, for messages.
    source_name: String,
    /// Where the meta data source is now, with a generation that [`Self::follow`] advances.
    target: std::sync::Mutex<(u64, ConnectOptions)>,
    query_timeout: Duration,
    /// The open connection, with the generation of the target it was opened to.
    conn: Mutex<Option<(u64, BackendConn)>>,
}

/// The connection slot of a call: the open connection, if any, and which target it reaches.
type Slot = Option<(u64, BackendConn)>;

impl MysqlStore {
    /// A store on the database `options` names. Nothing is connected until the first call.
    /// `found_rows` is forced on (see the module docs).
    pub fn new(mut options: ConnectOptions, query_timeout: Duration) -> Self {
        options.found_rows = true;
        Self {
            source_name: options.source_name.clone(),
            target: std::sync::Mutex::new((0, options)),
            query_timeout,
            conn: Mutex::new(None),
        }
    }

    fn lock_target(&self) -> std::sync::MutexGuard<'_, (u64, ConnectOptions)> {
        // Only whole values are stored under this lock: a panic cannot leave it half-set.
        self.target.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Follows the meta data source of `rules` (after a reload, or the admin switching its
    /// primary): if it is reached differently now, every call from the next one on connects
    /// there, and the connection to the old server is dropped, so no id or lease is ever
    /// taken from a server that is no longer the meta data source's primary.
    pub fn follow(&self, rules: &Rules) {
        let Some(options) = Self::options_from_rules(rules, Duration::ZERO) else {
            return;
        };
        if options.source_name != self.source_name {
            // Another database holds other sequence state: following it would hand out
            // ids again.
            tracing::error!(
                from = self.source_name,
                to = options.source_name,
                "proxy.meta_data_source changed; it takes effect only on restart"
            );
            return;
        }
        let mut target = self.lock_target();
        let current = &target.1;
        if (
            &current.address,
            &current.user,
            &current.password,
            &current.database,
        ) == (
            &options.address,
            &options.user,
            &options.password,
            &options.database,
        ) {
            return;
        }
        tracing::info!(
            data_source = self.source_name,
            from = current.address,
            to = options.address,
            "meta data source moved; sequences follow"
        );
        let (connect_timeout, handshake_timeout) =
            (current.connect_timeout, current.handshake_timeout);
        target.0 += 1;
        target.1 = ConnectOptions {
            connect_timeout,
            handshake_timeout,
            ..options
        };
    }

    /// The store on `rules.proxy.meta_data_source`, if one is configured.
    pub fn from_rules(
        rules: &Rules,
        connect_timeout: Duration,
        query_timeout: Duration,
    ) -> Option<Self> {
        Some(Self::new(
            Self::options_from_rules(rules, connect_timeout)?,
            query_timeout,
        ))
    }

    /// How the meta data source of `rules` is reached, if one is configured.
    fn options_from_rules(rules: &Rules, connect_timeout: Duration) -> Option<ConnectOptions> {
        let name = rules.proxy.meta_data_source.as_deref()?;
        let ds = rules.data_source(name)?;
        Some(ConnectOptions {
            database: Some(ds.database.clone()),
            found_rows: true,
            connect_timeout,
            handshake_timeout: connect_timeout,
            ..ConnectOptions::for_data_source(name, ds)
        })
    }

    fn error(&self, message: impl Into<String>) -> StoreError {
        StoreError::new(self.source_name.clone(), message)
    }

    /// Runs `sql` on the connection in `slot`, connecting first if needed. A connection
    /// that failed or timed out is dropped; one that answered with an error is kept.
    async fn query(&self, slot: &mut Slot, sql: &str) -> Result<QueryResult, StoreError> {
        let (generation, options) = self.lock_target().clone();
        if slot.as_ref().is_none_or(|(g, _)| *g != generation) {
            *slot = None;
            *slot = Some((generation, self.connect(&options).await?));
        }
        let Some((_, conn)) = slot.as_mut() else {
            return Err(self.error("no connection"));
        };
        match tokio::time::timeout(self.query_timeout, conn.query(sql)).await {
            Ok(Ok(result)) => Ok(result),
            Ok(Err(e @ BackendError::Server { .. })) => Err(self.error(e.to_string())),
            Ok(Err(e)) => {
                *slot = None;
                Err(self
                    .error(e.to_string())
                    .with_failure(StoreFailure::ConnectionLost))
            }
            Err(_) => {
                *slot = None;
                Err(self.error(format!(
                    "no answer within {:?} (query timeout)",
                    self.query_timeout
                )))
            }
        }
    }

    async fn connect(&self, options: &ConnectOptions) -> Result<BackendConn, StoreError> {
        let mut conn = BackendConn::connect(options).await.map_err(|e| {
            self.error(e.to_string())
                .with_failure(StoreFailure::Unreachable)
        })?;
        let session = [
            "SET time_zone = '+00:00'",
            // `quote` escapes backslashes, which this mode would take literally.
            "SET SESSION sql_mode = REPLACE(@@sql_mode, 'NO_BACKSLASH_ESCAPES', '')",
            CREATE_SEQUENCE,
            CREATE_LEASE,
        ];
        for sql in session {
            match tokio::time::timeout(self.query_timeout, conn.query(sql)).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(self.error(e.to_string())),
                Err(_) => return Err(self.error("no answer while preparing the meta tables")),
            }
        }
        Ok(conn)
    }

    async fn reserve_on(
        &self,
        slot: &mut Slot,
        r: &Reservation,
    ) -> Result<Option<Range<u64>>, StoreError> {
        let name = quote_literal(&r.name);
        let (start, count, max) = (r.start, r.count, r.max);
        let update = format!(
            "UPDATE dbmesh_sequence \
             SET next_value = LAST_INSERT_ID(GREATEST(next_value, {start}) + {count}) \
             WHERE name = {name} AND GREATEST(next_value, {start}) <= {max}"
        );
        for _ in 0..3 {
            let ok = self.query(slot, &update).await?.ok;
            if ok.affected_rows == 1 {
                let end = if ok.last_insert_id != 0 {
                    ok.last_insert_id
                } else {
                    let rows = self.query(slot, "SELECT LAST_INSERT_ID()").await?.rows;
                    first_u64(&rows).ok_or_else(|| self.error("LAST_INSERT_ID() is empty"))?
                };
                let first = end
                    .checked_sub(count)
                    .ok_or_else(|| self.error(format!("next_value {end} is below the count")))?;
                return Ok(Some(first..end));
            }
            let rows = self
                .query(
                    slot,
                    &format!("SELECT next_value FROM dbmesh_sequence WHERE name = {name}"),
                )
                .await?
                .rows;
            match first_u64(&rows) {
                Some(next) if next.max(start) > max => return Ok(None),
                // Created by another proxy between our UPDATE and SELECT: try again.
                Some(_) => continue,
                None => {}
            }
            let step = r.step;
            self.query(
                slot,
                &format!(
                    "INSERT IGNORE INTO dbmesh_sequence (name, next_value, step) \
                     VALUES ({name}, {start}, {step})"
                ),
            )
            .await?;
        }
        Err(self.error(format!(
            "the row of sequence '{}' in dbmesh_sequence vanished while reserving",
            r.name
        )))
    }

    async fn acquire_on(
        &self,
        slot: &mut Slot,
        owner: &str,
        timeout: Duration,
    ) -> Result<Option<u16>, StoreError> {
        let me = quote_literal(owner);
        let held = format!(
            "SELECT worker_id FROM dbmesh_worker_lease WHERE owner = {me} ORDER BY worker_id LIMIT 1"
        );
        // Our own lease, e.g. when the answer to an earlier acquisition was lost.
        if let Some(worker) = first_u16(&self.query(slot, &held).await?.rows) {
            if self.renew_on(slot, worker, owner).await? {
                return Ok(Some(worker));
            }
        }
        let micros = timeout.as_micros();
        let take_over = format!(
            "UPDATE dbmesh_worker_lease SET owner = {me}, heartbeat_at = NOW(3) \
             WHERE heartbeat_at < NOW(3) - INTERVAL {micros} MICROSECOND \
             ORDER BY worker_id LIMIT 1"
        );
        if self.query(slot, &take_over).await?.ok.affected_rows == 1 {
            return first_u16(&self.query(slot, &held).await?.rows)
                .map(Some)
                .ok_or_else(|| self.error("a lease taken over vanished"));
        }
        for _ in 0..FREE_ID_RACES {
            let rows = self
                .query(
                    slot,
                    "SELECT worker_id FROM dbmesh_worker_lease ORDER BY worker_id",
                )
                .await?
                .rows;
            let used: Vec<u16> = rows.iter().filter_map(|r| cell(r)).collect();
            let Some(free) = (0..WORKER_IDS).find(|w| used.binary_search(w).is_err()) else {
                return Ok(None);
            };
            let insert = format!(
                "INSERT IGNORE INTO dbmesh_worker_lease (worker_id, owner, heartbeat_at) \
                 VALUES ({free}, {me}, NOW(3))"
            );
            if self.query(slot, &insert).await?.ok.affected_rows == 1 {
                return Ok(Some(free));
            }
        }
        Err(self.error(format!(
            "other proxies took every free worker id first, {FREE_ID_RACES} times"
        )))
    }

    async fn renew_on(
        &self,
        slot: &mut Slot,
        worker: u16,
        owner: &str,
    ) -> Result<bool, StoreError> {
        let me = quote_literal(owner);
        let sql = format!(
            "UPDATE dbmesh_worker_lease SET heartbeat_at = NOW(3) \
             WHERE worker_id = {worker} AND owner = {me}"
        );
        Ok(self.query(slot, &sql).await?.ok.affected_rows == 1)
    }
}

impl MetaStore for MysqlStore {
    fn source_name(&self) -> &str {
        &self.source_name
    }

    fn reserve<'a>(
        &'a self,
        r: &'a Reservation,
    ) -> BoxFuture<'a, Result<Option<Range<u64>>, StoreError>> {
        Box::pin(async move {
            let mut slot = self.conn.lock().await;
            self.reserve_on(&mut slot, r).await
        })
    }

    fn acquire_worker<'a>(
        &'a self,
        owner: &'a str,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Option<u16>, StoreError>> {
        Box::pin(async move {
            let mut slot = self.conn.lock().await;
            self.acquire_on(&mut slot, owner, timeout).await
        })
    }

    fn renew_worker<'a>(
        &'a self,
        worker_id: u16,
        owner: &'a str,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            let mut slot = self.conn.lock().await;
            self.renew_on(&mut slot, worker_id, owner).await
        })
    }

    fn release_worker<'a>(
        &'a self,
        worker_id: u16,
        owner: &'a str,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let mut slot = self.conn.lock().await;
            let me = quote_literal(owner);
            let sql = format!(
                "DELETE FROM dbmesh_worker_lease WHERE worker_id = {worker_id} AND owner = {me}"
            );
            self.query(&mut slot, &sql).await.map(|_| ())
        })
    }
}

/// The first column of the first row, parsed.
fn first_u64(rows: &[Vec<Option<String>>]) -> Option<u64> {
    rows.first().and_then(|r| cell(r))
}

fn first_u16(rows: &[Vec<Option<String>>]) -> Option<u16> {
    rows.first().and_then(|r| cell(r))
}

fn cell<T: std::str::FromStr>(row: &[Option<String>]) -> Option<T> {
    row.first()?.as_deref()?.parse().ok()
}
