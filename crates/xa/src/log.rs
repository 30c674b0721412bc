//! [`DecisionLog`]: the commit decisions and proxy leases, in the meta data source.
//!
//! Tables (created when missing):
//!
//! ```sql
//! CREATE TABLE IF NOT EXISTS dbmesh_xa_owner (
//!   name VARCHAR(24) CHARACTER SET ascii COLLATE ascii_bin NOT NULL PRIMARY KEY,
//!   incarnation BIGINT UNSIGNED NOT NULL,
//!   expires_at DATETIME(3) NOT NULL);
//! CREATE TABLE IF NOT EXISTS dbmesh_xa_decision (
//!   gtrid VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL PRIMARY KEY,
//!   outcome ENUM('commit', 'rollback') NOT NULL,
//!   participants TEXT NOT NULL,
//!   decided_at DATETIME(3) NOT NULL);
//! ```
//!
//! **Leases.** A proxy registers its name and gets the next incarnation number (one row per
//! name), then renews `expires_at` every heartbeat. Renewal only extends a lease that has not
//! expired: once expired, an incarnation is gone for good, so a proxy that stalled past its
//! lease can never again write a decision for its old transactions (it registers a new
//! incarnation). Expiry is judged by the meta database's clock alone (`UTC_TIMESTAMP(3)`).
//!
//! **Decisions** (presumed abort: a transaction without a row was not committed):
//!
//! - the owner writes `commit` in one round trip, an `INSERT … SELECT` from its own lease row
//!   that inserts nothing if the lease has expired; a duplicate key means recovery already
//!   fixed the outcome as rollback;
//! - recovery fixes the outcome of a transaction whose owner is gone by inserting a
//!   `rollback` row with `INSERT IGNORE … WHERE NOT EXISTS (<a live lease of the owner>)`
//!   and reading the row back, in one round trip. The primary key makes the owner's commit
//!   and any number of recoverers' rollbacks mutually exclusive: whichever row is first is
//!   the outcome, and everyone reads the same one.
//!
//! Rows are deleted once no participant holds the transaction prepared any more (see
//! `recovery`). The connections come from a small [`Pool`], so concurrent decisions of many
//! sessions go out in parallel and InnoDB's group commit makes them share log flushes.

use std::sync::Arc;
use std::time::Duration;

use backend::conn::QueryResult;
use backend::{quote_literal, BackendError, ConnectOptions, Pool};
use protocol::ServerError;

use crate::xid::Owner;
use crate::XaError;

const CREATE_OWNER: &str = "CREATE TABLE IF NOT EXISTS dbmesh_xa_owner (\
    name VARCHAR(24) CHARACTER SET ascii COLLATE ascii_bin NOT NULL PRIMARY KEY, \
    incarnation BIGINT UNSIGNED NOT NULL, \
    expires_at DATETIME(3) NOT NULL)";
const CREATE_DECISION: &str = "CREATE TABLE IF NOT EXISTS dbmesh_xa_decision (\
    gtrid VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL PRIMARY KEY, \
    outcome ENUM('commit', 'rollback') NOT NULL, \
    participants TEXT NOT NULL, \
    decided_at DATETIME(3) NOT NULL)";

/// MariaDB's ER_DUP_ENTRY.
const DUPLICATE_KEY: u16 = 1062;

/// How a transaction ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Commit,
    Rollback,
}

/// The answer to the owner's commit decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Decision {
    /// The commit decision is durable.
    Commit,
    /// Not written: the lease expired, or recovery had decided rollback.
    Refused(String),
}

/// A failed statement on the meta data source, by what is known of its effect.
#[derive(Debug, Clone)]
pub(crate) enum WriteError {
    /// Nothing reached the meta data source.
    NotSent(String),
    /// The server refused the statement.
    Server(ServerError),
    /// The statement was sent; whether it took effect is unknown.
    Unknown(String),
}

/// Which transactions a recoverer may fix the outcome of.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Claim<'a> {
    /// Only if `owner`'s lease is gone (expired, or a newer incarnation registered).
    OwnerGone(&'a Owner),
    /// Unconditionally: this process's own transaction that nobody is committing any more.
    Abandoned,
}

/// The decision log and lease table on the meta data source.
pub(crate) struct DecisionLog {
    pool: Arc<Pool>,
    query_timeout: Duration,
}

impl DecisionLog {
    /// The log on the database `meta` names, with up to `connections` connections; creates
    /// its tables if they are missing.
    pub(crate) async fn open(
        mut meta: ConnectOptions,
        connections: usize,
        query_timeout: Duration,
    ) -> Result<DecisionLog, XaError> {
        // Lease renewals landing in the same millisecond as the last still count their row.
        meta.found_rows = true;
        let pool = Pool::new(meta, connections, 0, query_timeout);
        let log = DecisionLog {
            pool,
            query_timeout,
        };
        log.run(&format!("{CREATE_OWNER}; {CREATE_DECISION}"))
            .await
            .map_err(|e| log.meta_error(e))?;
        Ok(log)
    }

    /// The meta data source's name.
    pub(crate) fn source_name(&self) -> &str {
        self.pool.name()
    }

    fn meta_error(&self, error: WriteError) -> XaError {
        let reason = match error {
            WriteError::NotSent(reason) | WriteError::Unknown(reason) => reason,
            WriteError::Server(error) => error.to_string(),
        };
        XaError::Meta {
            source_name: self.pool.name().to_owned(),
            reason,
        }
    }

    /// Runs `sql` on a pooled connection within the query timeout.
    async fn run(&self, sql: &str) -> Result<QueryResult, WriteError> {
        let acquired = tokio::time::timeout(self.query_timeout, self.pool.acquire(true)).await;
        let mut conn = match acquired {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => return Err(WriteError::NotSent(e.to_string())),
            Err(_) => {
                return Err(WriteError::NotSent(format!(
                    "no connection within {:?}",
                    self.query_timeout
                )))
            }
        };
        match tokio::time::timeout(self.query_timeout, conn.query(sql)).await {
            Ok(Ok(result)) => {
                conn.release();
                Ok(result)
            }
            Ok(Err(BackendError::Server { error, .. })) => {
                conn.release();
                Err(WriteError::Server(error))
            }
            // A lost or timed-out connection is dropped (closed), never reused.
            Ok(Err(e)) => Err(WriteError::Unknown(e.to_string())),
            Err(_) => Err(WriteError::Unknown(format!(
                "no answer within {:?}",
                self.query_timeout
            ))),
        }
    }

    /// Registers a new incarnation of proxy `name`, leased for `lease`.
    pub(crate) async fn register(&self, name: &str, lease: Duration) -> Result<Owner, XaError> {
        Owner::validate_name(name).map_err(XaError::Usage)?;
        let sql = format!(
            "INSERT INTO dbmesh_xa_owner (name, incarnation, expires_at) \
             VALUES ('{name}', LAST_INSERT_ID(1), {expiry}) \
             ON DUPLICATE KEY UPDATE incarnation = LAST_INSERT_ID(incarnation + 1), \
             expires_at = VALUES(expires_at); SELECT LAST_INSERT_ID() AS incarnation",
            expiry = expiry(lease)
        );
        let result = self.run(&sql).await.map_err(|e| self.meta_error(e))?;
        let incarnation = result
            .value(0, "incarnation")
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| XaError::Meta {
                source_name: self.source_name().to_owned(),
                reason: "registering the proxy returned no incarnation".into(),
            })?;
        Ok(Owner {
            name: name.to_owned(),
            incarnation,
        })
    }

    /// Extends `owner`'s lease by `lease` if it has not expired; `false` if it has (the
    /// incarnation is gone for good).
    pub(crate) async fn renew(&self, owner: &Owner, lease: Duration) -> Result<bool, XaError> {
        let sql = format!(
            "UPDATE dbmesh_xa_owner SET expires_at = {expiry} \
             WHERE {owner} AND expires_at > UTC_TIMESTAMP(3)",
            expiry = expiry(lease),
            owner = owner_is(owner),
        );
        let result = self.run(&sql).await.map_err(|e| self.meta_error(e))?;
        Ok(result.ok.affected_rows == 1)
    }

    /// The incarnation registered under proxy name `name` now, if any.
    pub(crate) async fn incarnation(&self, name: &str) -> Result<Option<u32>, XaError> {
        Owner::validate_name(name).map_err(XaError::Usage)?;
        let sql = format!("SELECT incarnation FROM dbmesh_xa_owner WHERE name = '{name}'");
        let result = self.run(&sql).await.map_err(|e| self.meta_error(e))?;
        Ok(result.value(0, "incarnation").and_then(|v| v.parse().ok()))
    }

    /// Ends `owner`'s lease now, so other proxies may recover its transactions at once.
    pub(crate) async fn release(&self, owner: &Owner) -> Result<(), XaError> {
        let sql = format!(
            "UPDATE dbmesh_xa_owner SET expires_at = UTC_TIMESTAMP(3) WHERE {}",
            owner_is(owner)
        );
        self.run(&sql).await.map_err(|e| self.meta_error(e))?;
        Ok(())
    }

    /// The owner's commit decision for `gtrid`, one round trip.
    pub(crate) async fn decide_commit(
        &self,
        gtrid: &str,
        owner: &Owner,
        participants: &[&str],
    ) -> Result<Decision, WriteError> {
        let sql = format!(
            "INSERT INTO dbmesh_xa_decision (gtrid, outcome, participants, decided_at) \
             SELECT {gtrid}, 'commit', {participants}, UTC_TIMESTAMP(3) FROM dbmesh_xa_owner \
             WHERE {owner} AND expires_at > UTC_TIMESTAMP(3)",
            gtrid = quote_literal(gtrid),
            participants = quote_literal(&participants.join(",")),
            owner = owner_is(owner),
        );
        match self.run(&sql).await {
            Ok(result) if result.ok.affected_rows == 1 => Ok(Decision::Commit),
            Ok(_) => Ok(Decision::Refused(format!(
                "the lease of proxy {owner} on its transactions expired before the commit decision"
            ))),
            Err(WriteError::Server(error)) if error.code == DUPLICATE_KEY => Ok(Decision::Refused(
                "recovery decided to roll it back (its owner was presumed gone)".into(),
            )),
            // Any other error of the server means the statement did not run.
            Err(e) => Err(e),
        }
    }

    /// Fixes the outcome of `gtrid` as `claim` allows (rollback unless a commit is logged) and
    /// returns it, in one round trip; `None` when the claim does not hold (the owner is alive
    /// and nothing is logged).
    pub(crate) async fn settle(
        &self,
        gtrid: &str,
        claim: Claim<'_>,
    ) -> Result<Option<Outcome>, XaError> {
        let condition = match claim {
            Claim::OwnerGone(owner) => format!(
                " WHERE NOT EXISTS (SELECT 1 FROM dbmesh_xa_owner WHERE {} \
                 AND expires_at > UTC_TIMESTAMP(3))",
                owner_is(owner)
            ),
            Claim::Abandoned => String::new(),
        };
        let sql = format!(
            "INSERT IGNORE INTO dbmesh_xa_decision (gtrid, outcome, participants, decided_at) \
             SELECT {gtrid}, 'rollback', '', UTC_TIMESTAMP(3) FROM DUAL{condition}; \
             SELECT outcome FROM dbmesh_xa_decision WHERE gtrid = {gtrid}",
            gtrid = quote_literal(gtrid)
        );
        let result = self.run(&sql).await.map_err(|e| self.meta_error(e))?;
        Ok(result.rows.first().map(|row| {
            if row.first().and_then(|v| v.as_deref()) == Some("commit") {
                Outcome::Commit
            } else {
                Outcome::Rollback
            }
        }))
    }

    /// The gtrids of decisions logged more than `age` ago.
    pub(crate) async fn decisions(&self, age: Duration) -> Result<Vec<String>, XaError> {
        let sql = format!(
            "SELECT gtrid FROM dbmesh_xa_decision \
             WHERE decided_at < UTC_TIMESTAMP(3) - INTERVAL {} MICROSECOND",
            age.as_micros()
        );
        let result = self.run(&sql).await.map_err(|e| self.meta_error(e))?;
        Ok(result
            .rows
            .into_iter()
            .filter_map(|row| row.into_iter().next().flatten())
            .collect())
    }

    /// Deletes the decision rows of `gtrids` (every participant of each is resolved).
    pub(crate) async fn forget(&self, gtrids: &[String]) -> Result<(), XaError> {
        if gtrids.is_empty() {
            return Ok(());
        }
        let list: Vec<String> = gtrids.iter().map(|g| quote_literal(g)).collect();
        let sql = format!(
            "DELETE FROM dbmesh_xa_decision WHERE gtrid IN ({})",
            list.join(",")
        );
        self.run(&sql).await.map_err(|e| self.meta_error(e))?;
        Ok(())
    }
}

/// `UTC_TIMESTAMP(3) + <lease>`.
fn expiry(lease: Duration) -> String {
    format!(
        "UTC_TIMESTAMP(3) + INTERVAL {} MICROSECOND",
        lease.as_micros()
    )
}

/// The condition selecting `owner`'s lease row (names are checked: no quoting needed).
fn owner_is(owner: &Owner) -> String {
    format!(
        "name = '{}' AND incarnation = {}",
        owner.name, owner.incarnation
    )
}
