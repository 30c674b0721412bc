//! MariaDB GTID replication between fixture servers: a [`ReplicaSet`] is one primary and `n`
//! read-only replicas, each replicating from the primary with `MASTER_USE_GTID=slave_pos`.
//!
//! ```no_run
//! use std::time::Duration;
//! use testkit::replication::{app_sql, ReplicaSet};
//!
//! let mut set = ReplicaSet::start(1)?;
//! set.primary().sql("CREATE DATABASE app; CREATE TABLE app.t (id INT PRIMARY KEY);
//!                    INSERT INTO app.t VALUES (1)")?;
//! set.wait_caught_up(0, Duration::from_secs(10))?;
//! assert_eq!(set.replica(0).sql("SELECT COUNT(*) FROM app.t")?.trim(), "1");
//! // The application user cannot write on a replica (error 1290, --read-only).
//! assert!(app_sql(set.replica(0), "INSERT INTO app.t VALUES (2)").is_err());
//! set.kill_replica(0)?;
//! set.restart_replica(0)?;
//! # Ok::<(), testkit::FixtureError>(())
//! ```
//!
//! Servers:
//!
//! * the primary: `--server-id=1 --log-bin=mariadb-bin --binlog-format=ROW`;
//! * replica `i`: `--server-id=<i + 2> --read-only` and its own binary log with
//!   `--log-slave-updates` (so a replica could be promoted), relay log `relay-bin`;
//!   `CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT=<primary>, MASTER_USER='root',
//!   MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1`.
//!
//! `root` has `READ_ONLY ADMIN` and so ignores `read_only`: tests that must see a replica refuse
//! writes connect as [`APP_USER`] (empty password), which the set creates on the primary (and
//! replication copies to the replicas) with the ordinary privileges only.
//!
//! A replica set needs servers the fixture owns: with `DBMESH_TEST_BACKENDS` set,
//! [`ReplicaSet::start`] returns [`FixtureError::Unsupported`] ([`FixtureError::is_unsupported`]),
//! and the test should print the reason and skip, like the other tests that must own their
//! servers.

use std::collections::BTreeMap;
use std::thread;
use std::time::{Duration, Instant};

use crate::backend::external_backends_from_env;
use crate::error::FixtureError;
use crate::mariadb::{MariaDb, MariaDbBuilder, HOST};
use crate::tools::{run_sql, run_sql_with, Target};

/// A user with every ordinary privilege on `*.*` but none that bypasses `read_only` (no `SUPER`,
/// no `READ_ONLY ADMIN`), so its writes fail on a replica with error 1290. It may also run
/// `SHOW SLAVE STATUS`, `SHOW MASTER STATUS`, `SELECT MASTER_GTID_WAIT(...)` and read
/// `@@gtid_*`. Empty password, from any host.
pub const APP_USER: &str = "dbmesh_app";

/// The primary's `--server-id`; replica `i` has `i + 2`.
pub const PRIMARY_SERVER_ID: u32 = 1;

/// How long setup steps (replication threads starting, the initial catch-up, a restarted
/// replica reconnecting) may take.
const SETUP_TIMEOUT: Duration = Duration::from_secs(30);

/// Ordinary privileges; deliberately without SUPER, READ_ONLY ADMIN, REPLICATION SLAVE ADMIN,
/// CONNECTION ADMIN and the other admin privileges.
const APP_PRIVILEGES: &str = "SELECT, INSERT, UPDATE, DELETE, CREATE, DROP, INDEX, ALTER, \
     CREATE TEMPORARY TABLES, LOCK TABLES, EXECUTE, CREATE VIEW, SHOW VIEW, CREATE ROUTINE, \
     ALTER ROUTINE, EVENT, TRIGGER, REFERENCES, DELETE HISTORY, PROCESS, RELOAD, \
     SHOW DATABASES, BINLOG MONITOR, SLAVE MONITOR";

/// One primary and its replicas, all `mariadbd` processes owned by the fixture. Dropping it
/// stops every server (concurrently) and removes their directories.
#[derive(Debug)]
pub struct ReplicaSet {
    primary: MariaDb,
    replicas: Vec<MariaDb>,
}

impl ReplicaSet {
    /// A primary (binary log, GTID, `binlog_format=ROW`, server id 1) and `replicas` read-only
    /// replicas (server ids 2, 3, ...), each replicating from the primary with
    /// `MASTER_USE_GTID=slave_pos`. Returns once every replica's IO and SQL threads run and it
    /// has applied everything the primary wrote (including [`APP_USER`]). The servers start
    /// concurrently.
    pub fn start(replicas: usize) -> Result<ReplicaSet, FixtureError> {
        let mut sets = ReplicaSet::start_many(1, replicas)?;
        Ok(sets.remove(0))
    }

    /// `sets` independent replica sets of `replicas` replicas each (e.g. two shards, each a
    /// primary with one replica), all servers started concurrently.
    pub fn start_many(sets: usize, replicas: usize) -> Result<Vec<ReplicaSet>, FixtureError> {
        refuse_external()?;
        let mut builders = Vec::with_capacity(sets * (replicas + 1));
        for _ in 0..sets {
            builders.push(primary_options());
            builders.extend((0..replicas).map(replica_options));
        }
        let mut servers = start_servers(&builders)?.into_iter();
        let mut out = Vec::with_capacity(sets);
        for _ in 0..sets {
            let primary = servers.next().ok_or_else(missing)?;
            let replicas = servers.by_ref().take(replicas).collect();
            out.push(ReplicaSet { primary, replicas });
        }
        for set in &out {
            set.primary.sql(&app_user_sql())?;
            for replica in &set.replicas {
                replica.sql(&change_master_sql(set.primary.port()))?;
            }
        }
        for set in &out {
            for i in 0..set.replicas.len() {
                set.wait_running(i, SETUP_TIMEOUT)?;
                set.wait_caught_up(i, SETUP_TIMEOUT)?;
            }
        }
        Ok(out)
    }

    /// The primary; `root` and [`APP_USER`] may write to it.
    pub fn primary(&self) -> &MariaDb {
        &self.primary
    }

    /// The primary, to kill or restart it.
    pub fn primary_mut(&mut self) -> &mut MariaDb {
        &mut self.primary
    }

    /// Replica `i` (panics if `i >= replica_count()`).
    pub fn replica(&self, i: usize) -> &MariaDb {
        &self.replicas[i]
    }

    /// Replica `i`, mutably, for [`MariaDb::kill`] and friends; prefer
    /// [`ReplicaSet::kill_replica`] and [`ReplicaSet::restart_replica`], which also restart
    /// replication.
    pub fn replica_mut(&mut self, i: usize) -> &mut MariaDb {
        &mut self.replicas[i]
    }

    /// How many replicas the set has.
    pub fn replica_count(&self) -> usize {
        self.replicas.len()
    }

    /// Block until replica `i` has applied everything the primary has written so far
    /// (`MASTER_GTID_WAIT` on the primary's `@@gtid_binlog_pos`). After `timeout`,
    /// [`FixtureError::Replication`] with the replica's status.
    pub fn wait_caught_up(&self, i: usize, timeout: Duration) -> Result<(), FixtureError> {
        let pos = self.primary.sql("SELECT @@gtid_binlog_pos")?;
        let pos = pos.trim();
        let replica = &self.replicas[i];
        let out = replica.sql(&format!(
            "SELECT MASTER_GTID_WAIT('{pos}', {:.3})",
            timeout.as_secs_f64()
        ))?;
        if out.trim() == "0" {
            return Ok(());
        }
        let applied = replica
            .sql("SELECT @@gtid_slave_pos")
            .map(|s| s.trim().to_owned())
            .unwrap_or_default();
        Err(self.replication_error(
            i,
            format!(
                "not caught up with the primary's {pos} within {timeout:?} \
                 (MASTER_GTID_WAIT returned {}; @@gtid_slave_pos is {applied})",
                out.trim()
            ),
        ))
    }

    /// `STOP SLAVE SQL_THREAD` on replica `i`: it keeps fetching events but applies none.
    pub fn stop_sql_thread(&self, i: usize) -> Result<(), FixtureError> {
        self.replicas[i].sql("STOP SLAVE SQL_THREAD")?;
        Ok(())
    }

    /// `START SLAVE SQL_THREAD` on replica `i`, returning once the thread runs.
    pub fn start_sql_thread(&self, i: usize) -> Result<(), FixtureError> {
        self.replicas[i].sql("START SLAVE SQL_THREAD")?;
        self.wait_running(i, SETUP_TIMEOUT)
    }

    /// `SHOW SLAVE STATUS` of replica `i`, field name to value (e.g. `Slave_SQL_Running` to
    /// `Yes`); empty if replication is not configured.
    pub fn replica_status(&self, i: usize) -> Result<BTreeMap<String, String>, FixtureError> {
        slave_status(&self.replicas[i])
    }

    /// SIGKILL replica `i` (a crash); its port then refuses connections.
    pub fn kill_replica(&mut self, i: usize) -> Result<(), FixtureError> {
        self.replicas[i].kill()
    }

    /// Start replica `i` again (stopping it first if it runs) on the same port and data dir;
    /// returns once its IO and SQL threads run again (it resumes from its `@@gtid_slave_pos`,
    /// which is crash-safe). It may still be catching up: call [`ReplicaSet::wait_caught_up`].
    pub fn restart_replica(&mut self, i: usize) -> Result<(), FixtureError> {
        self.replicas[i].restart()?;
        // The server starts replication by itself (master.info is in its data dir); this
        // covers a replica whose threads were stopped. "Already running" is only a note.
        self.replicas[i].sql("START SLAVE")?;
        self.wait_running(i, SETUP_TIMEOUT)
    }

    /// Wait until replica `i` reports `Slave_IO_Running: Yes` and `Slave_SQL_Running: Yes`.
    fn wait_running(&self, i: usize, timeout: Duration) -> Result<(), FixtureError> {
        let deadline = Instant::now() + timeout;
        loop {
            let status = slave_status(&self.replicas[i])?;
            let yes = |field: &str| status.get(field).map(String::as_str) == Some("Yes");
            if yes("Slave_IO_Running") && yes("Slave_SQL_Running") {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(self.replication_error(
                    i,
                    format!("replication threads not running within {timeout:?}"),
                ));
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn replication_error(&self, i: usize, what: String) -> FixtureError {
        let replica = &self.replicas[i];
        let status = match slave_status(replica) {
            Ok(status) => [
                "Slave_IO_Running",
                "Slave_SQL_Running",
                "Last_IO_Errno",
                "Last_IO_Error",
                "Last_SQL_Errno",
                "Last_SQL_Error",
                "Gtid_IO_Pos",
            ]
            .iter()
            .map(|f| format!("{f}: {}", status.get(*f).map(String::as_str).unwrap_or("")))
            .collect::<Vec<_>>()
            .join("\n"),
            Err(e) => format!("SHOW SLAVE STATUS failed: {e}"),
        };
        FixtureError::Replication {
            address: replica.address(),
            reason: format!(
                "replica {i} of primary {}: {what}\n--- SHOW SLAVE STATUS ---\n{status}\n\
                 --- end of its log ---\n{}",
                self.primary.address(),
                replica.log_tail()
            ),
        }
    }
}

impl Drop for ReplicaSet {
    fn drop(&mut self) {
        // Stop all servers at once rather than one after another; errors cannot be reported
        // here, and each MariaDb's own Drop (and watchdog) remains the backstop.
        thread::scope(|scope| {
            for server in self.replicas.iter_mut().chain([&mut self.primary]) {
                scope.spawn(move || {
                    let _ = server.stop();
                });
            }
        });
    }
}

/// Run SQL on `server` as [`APP_USER`] (over TCP, empty password), like [`MariaDb::sql`] does
/// as `root`. On a replica, writes fail with `ERROR 1290 (HY000)` (`--read-only`).
pub fn app_sql(server: &MariaDb, statements: &str) -> Result<String, FixtureError> {
    run_sql(
        &Target {
            host: HOST,
            port: server.port(),
            user: APP_USER,
            password: "",
            socket: None,
        },
        statements,
    )
}

fn refuse_external() -> Result<(), FixtureError> {
    match external_backends_from_env()? {
        Some(external) => Err(FixtureError::Unsupported {
            operation: "a replica set",
            address: external.first().map(|b| b.address()).unwrap_or_default(),
        }),
        None => Ok(()),
    }
}

fn missing() -> FixtureError {
    FixtureError::io(
        "a replica set's server was not started",
        std::io::Error::other("fewer servers than requested"),
    )
}

fn primary_options() -> MariaDbBuilder {
    MariaDb::builder().args([
        format!("--server-id={PRIMARY_SERVER_ID}"),
        "--log-bin=mariadb-bin".to_owned(),
        "--binlog-format=ROW".to_owned(),
    ])
}

fn replica_options(i: usize) -> MariaDbBuilder {
    MariaDb::builder().args([
        format!(
            "--server-id={}",
            u64::from(PRIMARY_SERVER_ID) + 1 + i as u64
        ),
        "--log-bin=mariadb-bin".to_owned(),
        "--binlog-format=ROW".to_owned(),
        "--log-slave-updates".to_owned(),
        "--relay-log=relay-bin".to_owned(),
        "--read-only".to_owned(),
    ])
}

/// Start one server per builder, concurrently; on an error the ones that started are dropped
/// (and so stopped).
fn start_servers(builders: &[MariaDbBuilder]) -> Result<Vec<MariaDb>, FixtureError> {
    let started: Vec<Result<MariaDb, FixtureError>> = thread::scope(|scope| {
        let handles: Vec<_> = builders
            .iter()
            .map(|b| scope.spawn(move || b.start()))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    });
    started.into_iter().collect()
}

fn app_user_sql() -> String {
    let mut sql = String::new();
    for host in ["%", "127.0.0.1", "localhost"] {
        sql.push_str(&format!(
            "CREATE USER IF NOT EXISTS '{APP_USER}'@'{host}';\n\
             GRANT {APP_PRIVILEGES} ON *.* TO '{APP_USER}'@'{host}';\n"
        ));
    }
    sql
}

fn change_master_sql(primary_port: u16) -> String {
    format!(
        "CHANGE MASTER TO MASTER_HOST='{HOST}', MASTER_PORT={primary_port}, \
         MASTER_USER='root', MASTER_PASSWORD='', MASTER_USE_GTID=slave_pos, \
         MASTER_CONNECT_RETRY=1;\n\
         START SLAVE;"
    )
}

/// `SHOW SLAVE STATUS` as field -> value (empty map when replication is not configured).
fn slave_status(server: &MariaDb) -> Result<BTreeMap<String, String>, FixtureError> {
    // `\G` prints one `Field: value` line per column; the field names only appear with
    // `--column-names` (the fixture's client otherwise runs with `--skip-column-names`).
    let out = run_sql_with(
        &Target {
            host: HOST,
            port: server.port(),
            user: server.user(),
            password: server.password(),
            socket: None,
        },
        &["--column-names"],
        "SHOW SLAVE STATUS\\G",
    )?;
    Ok(parse_vertical(&out))
}

fn parse_vertical(out: &str) -> BTreeMap<String, String> {
    out.lines()
        .filter(|line| !line.starts_with("***"))
        .filter_map(|line| line.split_once(':'))
        .map(|(field, value)| (field.trim().to_owned(), value.trim().to_owned()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_vertical_output() {
        let out = "*************************** 1. row ***************************\n\
                   \x20               Slave_IO_State: Waiting for master to send event\n\
                   \x20            Slave_SQL_Running: No\n\
                   \x20                Last_IO_Error: \n\
                   \x20                Last_SQL_Error: Error 'x: y' on query\n";
        let status = parse_vertical(out);
        assert_eq!(status["Slave_SQL_Running"], "No");
        assert_eq!(status["Last_IO_Error"], "");
        assert_eq!(status["Last_SQL_Error"], "Error 'x: y' on query");
        assert_eq!(status["Slave_IO_State"], "Waiting for master to send event");
        assert!(parse_vertical("").is_empty());
    }

    #[test]
    fn app_user_has_no_privilege_that_bypasses_read_only() {
        for bad in ["SUPER", "READ_ONLY ADMIN", "ALL"] {
            assert!(!APP_PRIVILEGES.contains(bad), "{bad}");
        }
        assert_eq!(app_user_sql().matches("GRANT").count(), 3);
    }
}
