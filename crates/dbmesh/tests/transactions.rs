//! Distributed transactions through the proxy (`transaction_mode = "xa"`, the default with a
//! meta data source): four data sources on two fixture servers, accounts sharded by uid.
//!
//! - the transaction mode (`SELECT @@dbmesh_transaction_mode`, `SET …`, refused mid-transaction);
//! - what reaches the servers: autocommit statements start no XA branch, a one-shard
//!   transaction commits in one phase (no `XA PREPARE`, no decision row), a cross-shard one
//!   prepares on both servers;
//! - round trips: a one-shard transaction takes one fewer in `xa` mode than in `local` (its
//!   `XA START` goes with its first statement, `XA END` with `XA COMMIT … ONE PHASE`), and
//!   each way that can fail (the statement, `XA START`, the connection between their
//!   answers) leaves the session in a known state;
//! - a write on several data sources in autocommit mode is a distributed transaction of its
//!   own: a duplicate key on one shard, or a shard's backend connection killed mid-statement,
//!   leaves every shard unchanged; a server killed during a write on several shards inside
//!   a transaction ends the session, and nothing of the transaction is applied anywhere;
//! - client semantics: COMMIT and ROLLBACK on every shard, savepoints, DDL committing the open
//!   transaction, the client's own `XA …` refused in `xa` mode and working in `local` mode, a
//!   client that disconnects mid-transaction rolled back everywhere;
//! - the bank invariant across `kill -9` of the proxy in the middle of concurrent cross-shard
//!   transfers: after a restart (whose recovery round runs before clients are accepted) no
//!   branch is left prepared, the sum of balances is unchanged, every balance is what the
//!   transfer rows say, and every transfer a client saw committed is there;
//! - the proxy killed at each step of the commit protocol (its failpoints, armed through
//!   `DBMESH_XA_FAILPOINTS`): every branch resolved by the decision, for an explicit transfer
//!   and for an autocommit write on four data sources; another proxy finishing a dead one's
//!   transactions;
//! - a client without `CLIENT_MULTI_STATEMENTS` (so the proxy's backend connections have none
//!   either) committing across shards: the coordinator sends one statement per command;
//! - deadlocks: one server's victim loses its whole distributed transaction; a cycle across
//!   servers, which no server sees, is broken by the distributed lock-wait bound (1213)
//!   within a second, and the other party commits.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{direct, four_data_sources, server_code, Backend, Proxy};
use mysql_async::prelude::*;

const ACCOUNTS: u64 = 40;
const START_BALANCE: i64 = 1_000;

/// Four data sources on two servers, the meta data source on the first; `accounts` and
/// `transfers` sharded by uid (`uid % 4` is the data source).
fn rules(servers: &[Backend], dbs: &[String], mode: Option<&str>) -> String {
    let mut rules = four_data_sources(servers, "bank", dbs).replacen(
        "[proxy]\n",
        "[proxy]\nmeta_data_source = \"ds_0\"\n",
        1,
    );
    if let Some(mode) = mode {
        rules = rules.replacen(
            "default_data_source = \"ds_0\"\n",
            &format!("default_data_source = \"ds_0\"\ntransaction_mode = \"{mode}\"\n"),
            1,
        );
    }
    let mut tables = String::new();
    for table in ["accounts", "transfers", "marks"] {
        tables += &format!(
            "[tables.{table}]\nkind = \"sharded\"\ncolumn = \"uid\"\nalgorithm = \"mod\"\nnodes = \"ds_{{0..3}}.{table}\"\n\n"
        );
    }
    rules + &tables
}

struct Bank {
    servers: Vec<Backend>,
    dbs: Vec<String>,
}

impl Bank {
    fn new() -> Bank {
        let servers = testkit::backends(2).expect("two MariaDB servers");
        let dbs = (0..4)
            .map(|i| testkit::unique_name(&format!("txn{i}")))
            .collect();
        Bank { servers, dbs }
    }

    fn rules(&self, mode: Option<&str>) -> String {
        rules(&self.servers, &self.dbs, mode)
    }

    /// Creates the tables through `proxy` and opens every account.
    async fn create(&self, proxy: &Proxy) {
        let mut c = proxy.conn(Some("bank")).await;
        c.query_drop("CREATE TABLE accounts (uid BIGINT PRIMARY KEY, balance BIGINT NOT NULL)")
            .await
            .unwrap();
        c.query_drop(
            "CREATE TABLE transfers (id BIGINT PRIMARY KEY, uid BIGINT NOT NULL, peer BIGINT NOT NULL, amount BIGINT NOT NULL)",
        )
        .await
        .unwrap();
        for uid in 0..ACCOUNTS {
            c.exec_drop(
                "INSERT INTO accounts (uid, balance) VALUES (?, ?)",
                (uid, START_BALANCE),
            )
            .await
            .unwrap();
        }
    }

    /// A direct connection to the server of data source `ds` (0..4), in its database.
    async fn direct(&self, ds: usize) -> mysql_async::Conn {
        let mut c = direct(&self.servers[ds / 2]).await;
        c.query_drop(format!("USE `{}`", self.dbs[ds]))
            .await
            .unwrap();
        c
    }

    /// A global status counter of server `server` (`Com_xa_prepare`, …).
    async fn status(&self, server: usize, name: &str) -> u64 {
        let mut c = direct(&self.servers[server]).await;
        let row: Option<(String, u64)> = c
            .query_first(format!("SHOW GLOBAL STATUS LIKE '{name}'"))
            .await
            .unwrap();
        row.expect("status variable").1
    }

    async fn statuses(&self, name: &str) -> [u64; 2] {
        [self.status(0, name).await, self.status(1, name).await]
    }

    /// The dbmesh branches (format `dbmx`) prepared on either server.
    async fn prepared(&self) -> usize {
        let mut n = 0;
        for server in &self.servers {
            let mut c = direct(server).await;
            let rows: Vec<mysql_async::Row> = c.query("XA RECOVER").await.unwrap();
            n += rows
                .iter()
                .filter(|r| r.get::<i64, _>(0) == Some(1_684_172_152))
                .count();
        }
        n
    }

    /// Every account's balance, read directly from the shards.
    async fn balances(&self) -> Vec<(u64, i64)> {
        let mut all = Vec::new();
        for ds in 0..4 {
            let mut c = self.direct(ds).await;
            let rows: Vec<(u64, i64)> = c.query("SELECT uid, balance FROM accounts").await.unwrap();
            all.extend(rows);
        }
        all.sort();
        all
    }

    /// Every transfer row (id, uid, peer, amount), read directly from the shards.
    async fn transfers(&self) -> Vec<(u64, u64, u64, i64)> {
        let mut all = Vec::new();
        for ds in 0..4 {
            let mut c = self.direct(ds).await;
            let rows: Vec<(u64, u64, u64, i64)> = c
                .query("SELECT id, uid, peer, amount FROM transfers")
                .await
                .unwrap();
            all.extend(rows);
        }
        all.sort();
        all
    }

    /// Creates `marks` through `proxy`: one row (n = 0) per data source, uids 0 to 3.
    async fn create_marks(&self, proxy: &Proxy) {
        let mut c = proxy.conn(Some("bank")).await;
        c.query_drop("CREATE TABLE marks (uid BIGINT PRIMARY KEY, n BIGINT NOT NULL)")
            .await
            .unwrap();
        c.query_drop("INSERT INTO marks (uid, n) VALUES (0, 0), (1, 0), (2, 0), (3, 0)")
            .await
            .unwrap();
    }

    /// Every `marks` row's n, by uid, read directly from the shards.
    async fn marks(&self) -> Vec<i64> {
        let mut all = Vec::new();
        for ds in 0..4 {
            let mut c = self.direct(ds).await;
            let rows: Vec<(u64, i64)> = c.query("SELECT uid, n FROM marks").await.unwrap();
            all.extend(rows);
        }
        all.sort();
        all.into_iter().map(|(_, n)| n).collect()
    }

    /// Waits (up to 60 s) until no dbmesh branch is prepared on either server; returns how
    /// many are left.
    async fn wait_unprepared(&self) -> usize {
        let started = Instant::now();
        let mut left = self.prepared().await;
        while left > 0 && started.elapsed() < Duration::from_secs(60) {
            tokio::time::sleep(Duration::from_millis(100)).await;
            left = self.prepared().await;
        }
        left
    }

    /// Decision rows in the meta database (ds_0's).
    async fn decisions(&self) -> u64 {
        let mut c = self.direct(0).await;
        c.query_first("SELECT COUNT(*) FROM dbmesh_xa_decision")
            .await
            .unwrap()
            .unwrap()
    }
}

/// One transfer in one transaction: the debit, the credit and the transfer row (on the
/// debited user's shard); the two accounts are locked in uid order, so concurrent transfers
/// never wait for each other in a cycle across shards (which no server would detect).
async fn transfer(
    c: &mut mysql_async::Conn,
    id: u64,
    from: u64,
    to: u64,
    amount: i64,
    explicit_begin: bool,
) -> Result<(), mysql_async::Error> {
    if explicit_begin {
        c.query_drop("BEGIN").await?;
    }
    let (first, second) = if from < to {
        ((from, -amount), (to, amount))
    } else {
        ((to, amount), (from, -amount))
    };
    for (uid, delta) in [first, second] {
        c.exec_drop(
            "UPDATE accounts SET balance = balance + ? WHERE uid = ?",
            (delta, uid),
        )
        .await?;
    }
    c.exec_drop(
        "INSERT INTO transfers (id, uid, peer, amount) VALUES (?, ?, ?, ?)",
        (id, from, to, amount),
    )
    .await?;
    c.query_drop("COMMIT").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_shard_commits_in_one_phase_and_cross_shard_prepares() {
    let bank = Bank::new();
    let proxy = Proxy::start(&bank.rules(None));
    bank.create(&proxy).await;
    let mut c = proxy.conn(Some("bank")).await;
    let mode: String = c
        .query_first("SELECT @@dbmesh_transaction_mode")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(mode, "xa", "the default with a meta data source");

    // Autocommit statements start no branch.
    let starts = bank.statuses("Com_xa_start").await;
    c.query_drop("UPDATE accounts SET balance = balance + 0 WHERE uid = 1")
        .await
        .unwrap();
    c.query_drop("SELECT * FROM accounts").await.unwrap();
    assert_eq!(bank.statuses("Com_xa_start").await, starts);

    // One shard (uids 1 and 5 are both on ds_1): one phase, no prepare, no decision row.
    let prepares = bank.statuses("Com_xa_prepare").await;
    c.query_drop("BEGIN").await.unwrap();
    c.query_drop("UPDATE accounts SET balance = balance - 10 WHERE uid = 1")
        .await
        .unwrap();
    c.query_drop("UPDATE accounts SET balance = balance + 10 WHERE uid = 5")
        .await
        .unwrap();
    c.query_drop("COMMIT").await.unwrap();
    assert_eq!(bank.statuses("Com_xa_prepare").await, prepares);
    assert_eq!(bank.decisions().await, 0);
    let mut direct1 = bank.direct(1).await;
    let b1: i64 = direct1
        .query_first("SELECT balance FROM accounts WHERE uid = 1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(b1, START_BALANCE - 10);

    // Across servers (uid 0 on ds_0, server 0; uid 2 on ds_2, server 1): both prepare.
    transfer(&mut c, 1, 0, 2, 25, true).await.unwrap();
    let after = bank.statuses("Com_xa_prepare").await;
    assert_eq!([after[0] - prepares[0], after[1] - prepares[1]], [1, 1]);
    assert_eq!(bank.prepared().await, 0);
    let balances = bank.balances().await;
    assert_eq!(balances[0], (0, START_BALANCE - 25));
    assert_eq!(balances[2], (2, START_BALANCE + 25));

    // Local mode: a plain transaction per shard, no XA at all.
    c.query_drop("SET dbmesh_transaction_mode = 'local'")
        .await
        .unwrap();
    let starts = bank.statuses("Com_xa_start").await;
    transfer(&mut c, 2, 2, 0, 25, true).await.unwrap();
    assert_eq!(bank.statuses("Com_xa_start").await, starts);
    assert_eq!(bank.balances().await[0], (0, START_BALANCE));
}

/// A TCP relay in front of a server that records, per connection, the proxy's commands
/// grouped by round trip: a round trip begins when the proxy sends after the server spoke.
#[derive(Clone, Default)]
struct RoundTrips {
    connections: Arc<Mutex<Vec<Arc<Mutex<Turns>>>>>,
}

#[derive(Default)]
struct Turns {
    /// What the proxy sent in each round trip, as text (lossy).
    sent: Vec<String>,
    server_spoke: bool,
}

impl RoundTrips {
    /// Starts relaying to `server`; returns the relay's address.
    async fn start(server: &Backend) -> (RoundTrips, String) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let trips = RoundTrips::default();
        let upstream = server.address();
        let connections = trips.connections.clone();
        tokio::spawn(async move {
            while let Ok((proxy_side, _)) = listener.accept().await {
                let Ok(server_side) = tokio::net::TcpStream::connect(&upstream).await else {
                    continue;
                };
                let turns = Arc::new(Mutex::new(Turns::default()));
                connections.lock().unwrap().push(turns.clone());
                let (mut from_proxy, mut to_proxy) = proxy_side.into_split();
                let (mut from_server, mut to_server) = server_side.into_split();
                let up = turns.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 1 << 16];
                    while let Ok(n @ 1..) = from_proxy.read(&mut buf).await {
                        {
                            let mut t = up.lock().unwrap();
                            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                            if t.server_spoke || t.sent.is_empty() {
                                t.sent.push(text);
                                t.server_spoke = false;
                            } else {
                                t.sent.last_mut().unwrap().push_str(&text);
                            }
                        }
                        if to_server.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 1 << 16];
                    while let Ok(n @ 1..) = from_server.read(&mut buf).await {
                        // Noted before the proxy can see the answer and send again.
                        turns.lock().unwrap().server_spoke = true;
                        if to_proxy.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        (trips, address)
    }

    /// The round trips of the connection that carried `marker`, from the one that began the
    /// transaction (`BEGIN` or `XA START`) to the one that committed it.
    fn of_transaction(&self, marker: &str) -> Vec<String> {
        let connections = self.connections.lock().unwrap();
        let turns = connections
            .iter()
            .find(|t| t.lock().unwrap().sent.iter().any(|s| s.contains(marker)))
            .expect("a connection carried the marker")
            .lock()
            .unwrap();
        let at = turns.sent.iter().position(|s| s.contains(marker)).unwrap();
        let begin = turns.sent[..=at]
            .iter()
            .rposition(|s| s.contains("BEGIN") || s.contains("XA START"))
            .expect("the transaction's start");
        let end = at
            + turns.sent[at..]
                .iter()
                .position(|s| s.contains("COMMIT"))
                .expect("the transaction's commit");
        turns.sent[begin..=end].to_vec()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_shard_transaction_takes_no_more_round_trips_in_xa_mode_than_in_local() {
    let bank = Bank::new();
    // ds_0 (the default data source, which local mode's BEGIN and COMMIT go to) through the
    // counting relay.
    let (trips, relay) = RoundTrips::start(&bank.servers[0]).await;
    let rules = bank.rules(None).replacen(
        &format!("address = \"{}\"", bank.servers[0].address()),
        &format!("address = \"{relay}\""),
        1,
    );
    let proxy = Proxy::start(&rules);
    bank.create(&proxy).await;
    let mut counts = Vec::new();
    for mode in ["local", "xa"] {
        let mut c = proxy.conn(Some("bank")).await;
        c.query_drop(format!("SET dbmesh_transaction_mode = '{mode}'"))
            .await
            .unwrap();
        // uids 0 and 4 are on ds_0.
        let marker = format!("'trip-{mode}'");
        c.query_drop("BEGIN").await.unwrap();
        c.query_drop(format!(
            "SELECT balance, {marker} FROM accounts WHERE uid = 0"
        ))
        .await
        .unwrap();
        c.query_drop("UPDATE accounts SET balance = balance - 1 WHERE uid = 0")
            .await
            .unwrap();
        c.query_drop("UPDATE accounts SET balance = balance + 1 WHERE uid = 4")
            .await
            .unwrap();
        c.query_drop("COMMIT").await.unwrap();
        let turns = trips.of_transaction(&marker);
        eprintln!("{mode}: {} round trips", turns.len());
        counts.push(turns);
    }
    // local: BEGIN, the three statements, COMMIT. xa: `XA START` goes with the first
    // statement, and `XA END` with `XA COMMIT … ONE PHASE`.
    assert_eq!(counts[0].len(), 5, "local: {:?}", counts[0]);
    assert_eq!(counts[1].len(), 4, "xa: {:?}", counts[1]);
    assert!(
        counts[1][0].contains("XA START") && counts[1][0].contains("trip-xa"),
        "{:?}",
        counts[1]
    );
    assert!(
        counts[1][3].contains("XA END") && counts[1][3].contains("ONE PHASE"),
        "{:?}",
        counts[1]
    );
    assert_eq!(bank.prepared().await, 0);
    let balances = bank.balances().await;
    assert_eq!(
        (balances[0].1, balances[4].1),
        (START_BALANCE - 2, START_BALANCE + 2)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_branch_started_with_its_first_statement_fails_cleanly() {
    let bank = Bank::new();
    let proxy = Proxy::start(&bank.rules(None));
    bank.create(&proxy).await;
    let balance = |balances: &[(u64, i64)], uid: usize| balances[uid].1;

    // The statement that carried `XA START` fails (a duplicate key on ds_0): the branch is
    // open, the transaction goes on, and commits what ran after.
    let mut c = proxy.conn(Some("bank")).await;
    let starts = bank.status(0, "Com_xa_start").await;
    c.query_drop("BEGIN").await.unwrap();
    let err = c
        .query_drop("INSERT INTO accounts (uid, balance) VALUES (0, 5)")
        .await
        .unwrap_err();
    assert_eq!(server_code(err).0, 1062);
    let in_transaction: Option<String> = c.query_first("SELECT @@in_transaction").await.unwrap();
    assert_eq!(in_transaction.as_deref(), Some("1"));
    c.query_drop("UPDATE accounts SET balance = balance + 3 WHERE uid = 4")
        .await
        .unwrap();
    c.query_drop("COMMIT").await.unwrap();
    assert_eq!(
        bank.status(0, "Com_xa_start").await - starts,
        1,
        "one branch"
    );
    let balances = bank.balances().await;
    assert_eq!(
        (balance(&balances, 0), balance(&balances, 4)),
        (START_BALANCE, START_BALANCE + 3)
    );

    // `XA START` refused by the server: the connection holds table locks (the proxy answers
    // BEGIN itself, so they outlast it), and MariaDB answers XAER_OUTSIDE. The UPDATE after
    // it in the same text does not run (it would autocommit), the client gets 1399, and the
    // session goes on.
    c.query_drop("CREATE TABLE plain (n BIGINT NOT NULL)")
        .await
        .unwrap();
    c.query_drop("INSERT INTO plain VALUES (0)").await.unwrap();
    c.query_drop("LOCK TABLES plain WRITE").await.unwrap();
    c.query_drop("BEGIN").await.unwrap();
    let err = c
        .query_drop("UPDATE plain SET n = n + 7")
        .await
        .unwrap_err();
    assert_eq!(server_code(err), (1399, "XAE07".into()));
    c.query_drop("ROLLBACK").await.unwrap();
    c.query_drop("UNLOCK TABLES").await.unwrap();
    let n: Option<i64> = bank
        .direct(0)
        .await
        .query_first("SELECT n FROM plain")
        .await
        .unwrap();
    assert_eq!(n, Some(0), "the statement after the refused XA START ran");
    c.query_drop("UPDATE accounts SET balance = balance + 1 WHERE uid = 0")
        .await
        .unwrap();
    assert_eq!(balance(&bank.balances().await, 0), START_BALANCE + 1);

    // The connection is lost between `XA START`'s answer and the statement's: the client
    // gets an error and its session ends; nothing of the branch stays.
    let mut c = proxy.conn(Some("bank")).await;
    c.query_drop("BEGIN").await.unwrap();
    let slow = tokio::spawn(async move {
        let r = c
            .query_drop("UPDATE accounts SET balance = balance + 1 + SLEEP(5) WHERE uid = 0")
            .await;
        (c, r)
    });
    let mut server = direct(&bank.servers[0]).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let id: u64 = loop {
        let id: Option<u64> = server
            .query_first(
                "SELECT ID FROM information_schema.PROCESSLIST WHERE INFO LIKE 'UPDATE accounts%SLEEP(5)%'",
            )
            .await
            .unwrap();
        if let Some(id) = id {
            break id;
        }
        assert!(Instant::now() < deadline, "the statement never ran");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    server
        .query_drop(format!("KILL CONNECTION {id}"))
        .await
        .unwrap();
    let (mut c, r) = slow.await.unwrap();
    let err = r.unwrap_err();
    assert!(
        matches!(&err, mysql_async::Error::Server(e) if e.code == 1105 && e.message.contains("lost")),
        "{err:?}"
    );
    assert!(c.query_drop("SELECT 1").await.is_err(), "the session ended");
    assert_eq!(bank.prepared().await, 0);
    assert_eq!(balance(&bank.balances().await, 0), START_BALANCE + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_semantics_stay_mysqls() {
    let bank = Bank::new();
    let proxy = Proxy::start(&bank.rules(Some("xa")));
    bank.create(&proxy).await;
    let mut c = proxy.conn(Some("bank")).await;

    // ROLLBACK undoes every shard.
    c.query_drop("START TRANSACTION").await.unwrap();
    c.query_drop("UPDATE accounts SET balance = 0 WHERE uid IN (0, 1, 2, 3)")
        .await
        .unwrap();
    let inside: i64 = c
        .query_first("SELECT SUM(balance) FROM accounts WHERE uid < 4")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(inside, 0, "the transaction sees its own writes");
    let err = c
        .query_drop("SET dbmesh_transaction_mode = 'local'")
        .await
        .unwrap_err();
    assert_eq!(server_code(err), (1568, "25001".into()));
    c.query_drop("ROLLBACK").await.unwrap();
    let total: i64 = c
        .query_first("SELECT SUM(balance) FROM accounts WHERE uid < 4")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(total, 4 * START_BALANCE);

    // Savepoints inside the distributed transaction.
    c.query_drop("BEGIN").await.unwrap();
    c.query_drop("UPDATE accounts SET balance = balance + 1 WHERE uid IN (0, 2)")
        .await
        .unwrap();
    c.query_drop("SAVEPOINT s").await.unwrap();
    c.query_drop("UPDATE accounts SET balance = balance + 100 WHERE uid IN (0, 2)")
        .await
        .unwrap();
    c.query_drop("ROLLBACK TO SAVEPOINT s").await.unwrap();
    c.query_drop("COMMIT").await.unwrap();
    let balances = bank.balances().await;
    assert_eq!(
        (balances[0].1, balances[2].1),
        (START_BALANCE + 1, START_BALANCE + 1)
    );

    // DDL commits the open transaction first, as on one server.
    c.query_drop("BEGIN").await.unwrap();
    c.query_drop("UPDATE accounts SET balance = balance - 1 WHERE uid IN (0, 2)")
        .await
        .unwrap();
    c.query_drop("CREATE TABLE notes (id INT PRIMARY KEY)")
        .await
        .unwrap();
    c.query_drop("ROLLBACK").await.unwrap();
    let balances = bank.balances().await;
    assert_eq!(
        (balances[0].1, balances[2].1),
        (START_BALANCE, START_BALANCE)
    );

    // The client's own XA: refused in xa mode, working in local mode.
    let err = c.query_drop("XA START 'mine'").await.unwrap_err();
    assert_eq!(server_code(err), (1235, "42000".into()));
    c.query_drop("SET SESSION dbmesh_transaction_mode = local")
        .await
        .unwrap();
    c.query_drop("XA START 'mine'").await.unwrap();
    c.query_drop("UPDATE accounts SET balance = balance + 7 WHERE uid = 0")
        .await
        .unwrap();
    c.query_drop("XA END 'mine'").await.unwrap();
    c.query_drop("XA COMMIT 'mine' ONE PHASE").await.unwrap();
    assert_eq!(bank.balances().await[0].1, START_BALANCE + 7);
    let err = c
        .query_drop("SET dbmesh_transaction_mode = 'two-phase'")
        .await
        .unwrap_err();
    assert_eq!(server_code(err), (1231, "42000".into()));
    c.query_drop("SET dbmesh_transaction_mode = 'xa'")
        .await
        .unwrap();

    // Autocommit off, as PyMySQL and JDBC drivers run: every statement is in the transaction.
    c.query_drop("SET autocommit = 0").await.unwrap();
    transfer(&mut c, 10, 0, 3, 7, false).await.unwrap();
    c.query_drop("UPDATE accounts SET balance = balance + 1000 WHERE uid IN (1, 2)")
        .await
        .unwrap();
    c.query_drop("ROLLBACK").await.unwrap();
    let balances = bank.balances().await;
    assert_eq!(
        [balances[0].1, balances[1].1, balances[2].1, balances[3].1],
        [
            START_BALANCE,
            START_BALANCE,
            START_BALANCE,
            START_BALANCE + 7
        ]
    );
    c.query_drop("SET autocommit = 1").await.unwrap();

    // A client that disconnects mid-transaction: rolled back everywhere, nothing left locked.
    let mut gone = proxy.conn(Some("bank")).await;
    gone.query_drop("BEGIN").await.unwrap();
    gone.query_drop("UPDATE accounts SET balance = -1 WHERE uid IN (0, 1, 2, 3)")
        .await
        .unwrap();
    drop(gone);
    let started = Instant::now();
    for ds in 0..4 {
        let mut d = bank.direct(ds).await;
        d.query_drop("SET innodb_lock_wait_timeout = 30")
            .await
            .unwrap();
        d.query_drop(format!(
            "UPDATE accounts SET balance = balance WHERE uid = {ds}"
        ))
        .await
        .unwrap();
    }
    assert!(
        started.elapsed() < Duration::from_secs(25),
        "rows stayed locked after the client left"
    );
    let balances = bank.balances().await;
    assert!(balances[..4].iter().all(|(_, b)| *b >= 0), "{balances:?}");
    assert_eq!(bank.prepared().await, 0);
}

/// What the transfer clients saw.
#[derive(Default, Clone)]
struct Seen {
    committed: BTreeSet<u64>,
    failed: BTreeSet<u64>,
}

/// Transfers by `clients` concurrent sessions until `stop`; ids from `next_id`.
async fn run_transfers(
    proxy_port: u16,
    clients: u64,
    round: u64,
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Seen>>,
) {
    let mut tasks = Vec::new();
    for client in 0..clients {
        let stop = stop.clone();
        let seen = seen.clone();
        tasks.push(tokio::spawn(async move {
            let opts = mysql_async::OptsBuilder::default()
                .ip_or_hostname("127.0.0.1")
                .tcp_port(proxy_port)
                .prefer_socket(false)
                .user(Some(common::USER))
                .pass(Some(common::PASSWORD))
                .db_name(Some("bank"));
            let Ok(mut c) = mysql_async::Conn::new(opts).await else {
                return;
            };
            // Half the clients run as PyMySQL does (autocommit off), half with BEGIN.
            let explicit = client % 2 == 0;
            if !explicit && c.query_drop("SET autocommit = 0").await.is_err() {
                return;
            }
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let id = (round << 40) | (client << 32) | n;
                let from = rand::random::<u64>() % ACCOUNTS;
                let to = (from + 1 + rand::random::<u64>() % (ACCOUNTS - 1)) % ACCOUNTS;
                let amount = 1 + (rand::random::<u64>() % 50) as i64;
                match transfer(&mut c, id, from, to, amount, explicit).await {
                    Ok(()) => {
                        seen.lock().unwrap().committed.insert(id);
                    }
                    Err(mysql_async::Error::Server(e)) => {
                        // Refused before the commit decision (1402 rolled back, a deadlock
                        // on one server): nothing of it may be applied.
                        if e.code == 1402 || e.code == 1213 {
                            seen.lock().unwrap().failed.insert(id);
                        }
                        let _ = c.query_drop("ROLLBACK").await;
                    }
                    // The proxy is gone: the outcome is unknown to the client.
                    Err(_) => return,
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bank_invariant_survives_kill_9_of_the_proxy() {
    let rounds: u64 = std::env::var("DBMESH_TXN_KILL_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4);
    let bank = Bank::new();
    let rules = bank.rules(None);
    let mut proxy = Proxy::start(&rules);
    bank.create(&proxy).await;
    let seen = Arc::new(Mutex::new(Seen::default()));
    let mut recovered_in = Vec::new();
    for round in 0..rounds {
        let stop = Arc::new(AtomicBool::new(false));
        let clients = tokio::spawn(run_transfers(
            proxy.port,
            4,
            round,
            stop.clone(),
            seen.clone(),
        ));
        // Let transfers run, then kill at a random moment within a commit-heavy window.
        tokio::time::sleep(Duration::from_millis(300 + rand::random::<u64>() % 700)).await;
        let _ = std::process::Command::new("kill")
            .args(["-9", &proxy.pid().to_string()])
            .status();
        stop.store(true, Ordering::Relaxed);
        let _ = tokio::time::timeout(Duration::from_secs(60), clients).await;
        drop(proxy);
        let restarted = Instant::now();
        // The same rules: the same owner, so its recovery round at start finishes the dead
        // proxy's transactions before the first client is accepted.
        proxy = Proxy::start(&rules);
        let left = bank.wait_unprepared().await;
        recovered_in.push(restarted.elapsed());
        assert_eq!(
            left, 0,
            "round {round}: prepared branches left after recovery"
        );
        let seen_now = seen.lock().unwrap().clone();
        check_invariant(&bank, &seen_now, round).await;
    }
    let seen = seen.lock().unwrap();
    eprintln!(
        "{rounds} kills; {} transfers acknowledged, {} refused; restart to no prepared branch: {recovered_in:?}",
        seen.committed.len(),
        seen.failed.len()
    );
    assert!(!seen.committed.is_empty(), "no transfer committed at all");
}

/// The bank's invariant: money is neither created nor destroyed, every balance is what the
/// transfer rows say, acknowledged transfers are present and refused ones absent.
async fn check_invariant(bank: &Bank, seen: &Seen, round: u64) {
    let balances = bank.balances().await;
    let transfers = bank.transfers().await;
    let total: i64 = balances.iter().map(|(_, b)| b).sum();
    assert_eq!(
        total,
        ACCOUNTS as i64 * START_BALANCE,
        "round {round}: money created or destroyed"
    );
    let mut expected = vec![START_BALANCE; ACCOUNTS as usize];
    let mut present = BTreeSet::new();
    for (id, from, to, amount) in &transfers {
        expected[*from as usize] -= amount;
        expected[*to as usize] += amount;
        present.insert(*id);
    }
    for (uid, balance) in &balances {
        assert_eq!(
            *balance, expected[*uid as usize],
            "round {round}: account {uid} disagrees with its transfer rows"
        );
    }
    let missing: Vec<_> = seen.committed.difference(&present).collect();
    assert!(
        missing.is_empty(),
        "round {round}: acknowledged transfers missing: {missing:?}"
    );
    let applied: Vec<_> = seen.failed.intersection(&present).collect();
    assert!(
        applied.is_empty(),
        "round {round}: refused transfers applied: {applied:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadlock_rolls_back_the_whole_distributed_transaction() {
    let bank = Bank::new();
    let proxy = Proxy::start(&bank.rules(None));
    bank.create(&proxy).await;
    let mut a = proxy.conn(Some("bank")).await;
    let mut b = proxy.conn(Some("bank")).await;
    // Both write on ds_2 (server 1) first, then lock uids 0 and 4 (both on ds_0) in opposite
    // orders: server 0 sees the cycle and picks a victim.
    a.query_drop("BEGIN").await.unwrap();
    a.query_drop("UPDATE accounts SET balance = balance + 1 WHERE uid = 2")
        .await
        .unwrap();
    a.query_drop("UPDATE accounts SET balance = balance + 1 WHERE uid = 0")
        .await
        .unwrap();
    b.query_drop("BEGIN").await.unwrap();
    b.query_drop("UPDATE accounts SET balance = balance + 1 WHERE uid = 6")
        .await
        .unwrap();
    b.query_drop("UPDATE accounts SET balance = balance + 1 WHERE uid = 4")
        .await
        .unwrap();
    let a_waits = tokio::spawn(async move {
        let r = a
            .query_drop("UPDATE accounts SET balance = balance + 1 WHERE uid = 4")
            .await;
        (a, r)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rb = b
        .query_drop("UPDATE accounts SET balance = balance + 1 WHERE uid = 0")
        .await;
    let (a, ra) = a_waits.await.unwrap();
    let (mut victim, mut survivor, victim_uids, survivor_uids) = match (ra, rb) {
        (Err(e), Ok(())) => {
            assert_eq!(server_code(e).0, 1213);
            (a, b, [2, 0], vec![6, 4, 0])
        }
        (Ok(()), Err(e)) => {
            assert_eq!(server_code(e).0, 1213);
            (b, a, [6, 4], vec![2, 0, 4])
        }
        other => panic!("expected one deadlock victim: {other:?}"),
    };
    survivor.query_drop("COMMIT").await.unwrap();
    // The victim's whole transaction is gone, its other shard's branch included, and the
    // session goes on as after a deadlock on one server.
    let balances = bank.balances().await;
    for uid in victim_uids {
        let expected = if survivor_uids.contains(&uid) { 1 } else { 0 };
        assert_eq!(
            balances[uid].1,
            START_BALANCE + expected,
            "uid {uid}: {balances:?}"
        );
    }
    transfer(&mut victim, 99, 1, 3, 5, true).await.unwrap();
    assert_eq!(bank.prepared().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multi_shard_autocommit_write_is_atomic() {
    let bank = Bank::new();
    let proxy = Proxy::start(&bank.rules(None));
    bank.create(&proxy).await;
    let mut c = proxy.conn(Some("bank")).await;

    // A scatter UPDATE in autocommit is one distributed transaction over the four data
    // sources: two prepared branches per server, none left, every shard changed.
    let prepares = bank.statuses("Com_xa_prepare").await;
    c.query_drop("UPDATE accounts SET balance = balance + 1 WHERE uid >= 0")
        .await
        .unwrap();
    let after = bank.statuses("Com_xa_prepare").await;
    assert_eq!([after[0] - prepares[0], after[1] - prepares[1]], [2, 2]);
    assert_eq!(bank.prepared().await, 0);
    let balances = bank.balances().await;
    assert!(
        balances.iter().all(|(_, b)| *b == START_BALANCE + 1),
        "{balances:?}"
    );

    // A duplicate key on one shard: the multi-row INSERT over three data sources changes none,
    // the shard written before the failing one included.
    bank.direct(2)
        .await
        .query_drop("INSERT INTO transfers (id, uid, peer, amount) VALUES (500, 2, 1, 5)")
        .await
        .unwrap();
    let err = c
        .query_drop(
            "INSERT INTO transfers (id, uid, peer, amount) VALUES (501, 0, 1, 5), (500, 2, 1, 5), (503, 3, 1, 5)",
        )
        .await
        .unwrap_err();
    assert_eq!(server_code(err), (1062, "23000".into()));
    let ids: Vec<u64> = bank.transfers().await.iter().map(|t| t.0).collect();
    assert_eq!(ids, vec![500]);
    assert_eq!(bank.prepared().await, 0);

    // Inside the client's transaction the failed statement alone is undone on every shard it
    // wrote (the one written before the failing one included), and the transaction goes on,
    // as on one server; in both modes.
    for (mode, base) in [("xa", 510), ("local", 520)] {
        c.query_drop(format!("SET dbmesh_transaction_mode = '{mode}'"))
            .await
            .unwrap();
        c.query_drop("BEGIN").await.unwrap();
        c.query_drop(format!(
            "INSERT INTO transfers (id, uid, peer, amount) VALUES ({base}, 1, 0, 5)"
        ))
        .await
        .unwrap();
        let err = c
            .query_drop(format!(
                "INSERT INTO transfers (id, uid, peer, amount) VALUES ({}, 0, 1, 5), (500, 2, 1, 5), ({}, 3, 1, 5)",
                base + 1,
                base + 3
            ))
            .await
            .unwrap_err();
        assert_eq!(server_code(err), (1062, "23000".into()), "{mode}");
        c.query_drop("COMMIT").await.unwrap();
    }
    c.query_drop("SET dbmesh_transaction_mode = 'xa'")
        .await
        .unwrap();
    let ids: Vec<u64> = bank.transfers().await.iter().map(|t| t.0).collect();
    assert_eq!(ids, vec![500, 510, 520]);
    assert_eq!(bank.prepared().await, 0);

    // Local mode: no XA, one transaction per data source (still rolled back together on an
    // error, but not atomic across a crash).
    c.query_drop("SET dbmesh_transaction_mode = 'local'")
        .await
        .unwrap();
    let starts = bank.statuses("Com_xa_start").await;
    c.query_drop("UPDATE accounts SET balance = balance + 0 WHERE uid >= 0")
        .await
        .unwrap();
    assert_eq!(bank.statuses("Com_xa_start").await, starts);
    assert!(bank
        .balances()
        .await
        .iter()
        .all(|(_, b)| *b == START_BALANCE + 1));
    c.query_drop("SET dbmesh_transaction_mode = 'xa'")
        .await
        .unwrap();

    // The backend connection of one shard killed while the statement waits there for a lock:
    // the session ends (its state on that server is gone), and the shards the statement had
    // already written are rolled back.
    let mut locker = bank.direct(2).await;
    locker.query_drop("BEGIN").await.unwrap();
    locker
        .query_drop("SELECT * FROM accounts WHERE uid = 2 FOR UPDATE")
        .await
        .unwrap();
    let mut doomed = proxy.conn(Some("bank")).await;
    let running = tokio::spawn(async move {
        doomed
            .query_drop("UPDATE accounts SET balance = balance + 100 WHERE uid >= 0")
            .await
    });
    let mut admin = direct(&bank.servers[1]).await;
    let find = format!(
        "SELECT ID FROM information_schema.PROCESSLIST WHERE DB = '{}' AND INFO LIKE 'UPDATE accounts SET balance = balance + 100%'",
        bank.dbs[2]
    );
    let started = Instant::now();
    let thread = loop {
        let found: Option<u64> = admin.query_first(&find).await.unwrap();
        if let Some(thread) = found {
            break thread;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the statement never waited on ds_2"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    admin.query_drop(format!("KILL {thread}")).await.unwrap();
    let answer = running.await.unwrap();
    assert!(answer.is_err(), "the statement lost a shard: {answer:?}");
    locker.query_drop("ROLLBACK").await.unwrap();
    assert_eq!(bank.wait_unprepared().await, 0);
    let balances = bank.balances().await;
    assert!(
        balances.iter().all(|(_, b)| *b == START_BALANCE + 1),
        "a shard kept the killed statement's change: {balances:?}"
    );
}

/// Starts a proxy on `rules` whose coordinator aborts the process (as `kill -9` would) at
/// failpoint `point`.
fn proxy_dying_at(rules: &str, point: &str) -> Proxy {
    Proxy::start_with_env(
        rules,
        &[("DBMESH_XA_FAILPOINTS", &format!("{point}=abort"))],
    )
}

/// Asserts that `proxy` died at failpoint `point` (and not of anything else).
fn assert_died_at(mut proxy: Proxy, point: &str) {
    assert!(
        proxy.wait_exit(Duration::from_secs(30)),
        "the proxy is still running"
    );
    let log = proxy.log();
    assert!(
        log.contains("failpoint aborts the process") && log.contains(point),
        "the proxy did not die at failpoint {point}:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_killed_at_each_commit_step_is_recovered_by_the_decision() {
    let bank = Bank::new();
    let rules = bank.rules(None);
    {
        let proxy = Proxy::start(&rules);
        bank.create(&proxy).await;
        bank.create_marks(&proxy).await;
    }
    let mut seen = Seen::default();
    let mut marks = 0;
    let mut recovered_in = Vec::new();
    // In protocol order; from `decided` on, the commit decision is in the log.
    let points = [
        "prepare_some",
        "prepared",
        "decided",
        "commit_some",
        "committed",
    ];
    for (round, point) in points.into_iter().enumerate() {
        let decided = round >= 2;
        // A cross-server transfer in an explicit transaction: uid 0 (ds_0, server 0) pays
        // uid 2 (ds_2, server 1).
        let proxy = proxy_dying_at(&rules, point);
        let mut c = proxy.conn(Some("bank")).await;
        let id = 1_000 + round as u64;
        let outcome = transfer(&mut c, id, 0, 2, 10, true).await;
        assert!(
            matches!(
                outcome,
                Err(mysql_async::Error::Io(_) | mysql_async::Error::Driver(_))
            ),
            "{point}: the client gets no answer from a dead proxy: {outcome:?}"
        );
        assert_died_at(proxy, point);
        let restarted = Instant::now();
        // Restarted under the same name: its recovery round at start resolves the branches.
        let proxy = Proxy::start(&rules);
        assert_eq!(
            bank.wait_unprepared().await,
            0,
            "{point}: branches left prepared"
        );
        recovered_in.push((point, restarted.elapsed()));
        let applied = bank.transfers().await.iter().any(|t| t.0 == id);
        assert_eq!(applied, decided, "{point}: transfer {id} applied");
        if decided {
            seen.committed.insert(id);
        } else {
            seen.failed.insert(id);
        }
        check_invariant(&bank, &seen, round as u64).await;
        drop(proxy);

        // A scatter UPDATE in autocommit over the four data sources: all or nothing.
        let proxy = proxy_dying_at(&rules, point);
        let mut c = proxy.conn(Some("bank")).await;
        assert!(c
            .query_drop("UPDATE marks SET n = n + 1 WHERE uid >= 0")
            .await
            .is_err());
        assert_died_at(proxy, point);
        let proxy = Proxy::start(&rules);
        assert_eq!(
            bank.wait_unprepared().await,
            0,
            "{point}: branches left prepared"
        );
        if decided {
            marks += 1;
        }
        assert_eq!(
            bank.marks().await,
            vec![marks; 4],
            "{point}: the autocommit UPDATE"
        );
        drop(proxy);
    }
    eprintln!("restart to no prepared branch: {recovered_in:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_proxy_finishes_a_dead_proxys_transactions() {
    let bank = Bank::new();
    let rules = bank.rules(None);
    let other_rules = rules.replacen("[proxy]\n", "[proxy]\nnumber = 1\n", 1);
    {
        let proxy = Proxy::start(&rules);
        bank.create(&proxy).await;
    }

    // Killed after every prepare, before the decision: the other proxy may not roll back
    // while the dead one's lease (10 s, renewed every 2 s) runs, since the owner could still
    // decide commit; once it expires, the other rolls the branches back.
    let dying = proxy_dying_at(&rules, "prepared");
    let mut c = dying.conn(Some("bank")).await;
    assert!(transfer(&mut c, 7, 0, 2, 10, true).await.is_err());
    let died = Instant::now();
    assert_died_at(dying, "prepared");
    let other = Proxy::start(&other_rules);
    let prepared_at_start = bank.prepared().await;
    let started_in = died.elapsed();
    if started_in < Duration::from_secs(5) {
        assert_eq!(
            prepared_at_start,
            2,
            "rolled back while the owner's lease ran:\n{}",
            other.log()
        );
    }
    assert_eq!(bank.wait_unprepared().await, 0);
    let rolled_back_in = died.elapsed();
    let mut seen = Seen {
        committed: BTreeSet::new(),
        failed: [7].into(),
    };
    check_invariant(&bank, &seen, 0).await;

    // Killed after the commit decision: the outcome is fixed, so the other proxy's next
    // recovery round (every 5 s) commits the branches without waiting for the lease.
    let dying = proxy_dying_at(&rules, "decided");
    let mut c = dying.conn(Some("bank")).await;
    assert!(transfer(&mut c, 8, 0, 2, 10, true).await.is_err());
    let died = Instant::now();
    assert_died_at(dying, "decided");
    assert_eq!(bank.wait_unprepared().await, 0);
    let committed_in = died.elapsed();
    seen.committed.insert(8);
    check_invariant(&bank, &seen, 1).await;
    eprintln!(
        "the other proxy started {started_in:?} after the first kill with {prepared_at_start} \
         branches prepared, rolled them back {rolled_back_in:?} after it; committed the \
         decided one {committed_in:?} after the second kill"
    );
    drop(other);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_without_multi_statements_commits_across_shards() {
    let bank = Bank::new();
    let proxy = Proxy::start(&bank.rules(None));
    bank.create(&proxy).await;
    // RawClient announces no CLIENT_MULTI_STATEMENTS, so neither do the proxy's backend
    // connections for it: the coordinator's XA commands must go one statement each.
    let mut c = common::RawClient::login(proxy.port, Some("bank"));
    let prepares = bank.statuses("Com_xa_prepare").await;
    for sql in [
        "BEGIN",
        "UPDATE accounts SET balance = balance - 10 WHERE uid = 0",
        "UPDATE accounts SET balance = balance + 10 WHERE uid = 2",
        "COMMIT",
        "UPDATE accounts SET balance = balance + 1 WHERE uid IN (1, 3)",
    ] {
        let answer = c.query(sql);
        assert_eq!(
            answer[0],
            0,
            "{sql}: {:?}",
            String::from_utf8_lossy(&answer)
        );
    }
    let after = bank.statuses("Com_xa_prepare").await;
    assert_eq!([after[0] - prepares[0], after[1] - prepares[1]], [2, 2]);
    let balances: Vec<i64> = bank.balances().await[..4].iter().map(|b| b.1).collect();
    assert_eq!(
        balances,
        [
            START_BALANCE - 10,
            START_BALANCE + 1,
            START_BALANCE + 10,
            START_BALANCE + 1
        ]
    );
    assert_eq!(bank.prepared().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadlock_across_servers_is_broken_within_a_second_by_the_lock_wait_bound() {
    // `distributed_lock_wait_ms`'s default.
    const BOUND: Duration = Duration::from_secs(1);
    let bank = Bank::new();
    let proxy = Proxy::start(&bank.rules(None));
    bank.create(&proxy).await;
    let mut a = proxy.conn(Some("bank")).await;
    let mut b = proxy.conn(Some("bank")).await;
    // A locks uid 0 (server 0) and B uid 2 (server 1); then each wants the other's row: a
    // cycle across the two servers, each of which sees only one lock wait.
    a.query_drop("BEGIN").await.unwrap();
    a.query_drop("UPDATE accounts SET balance = balance + 10 WHERE uid = 0")
        .await
        .unwrap();
    b.query_drop("BEGIN").await.unwrap();
    b.query_drop("UPDATE accounts SET balance = balance + 1 WHERE uid = 2")
        .await
        .unwrap();
    let started = Instant::now();
    let a_waits = tokio::spawn(async move {
        let r = a
            .query_drop("UPDATE accounts SET balance = balance + 10 WHERE uid = 2")
            .await;
        (a, r, started.elapsed())
    });
    // B closes the cycle within A's bound, so A's wait passes the bound first.
    tokio::time::sleep(BOUND / 4).await;
    let cycle_at = started.elapsed();
    let rb = b
        .query_drop("UPDATE accounts SET balance = balance + 1 WHERE uid = 0")
        .await;
    let b_waited = started.elapsed();
    let (mut a, ra, a_waited) = a_waits.await.unwrap();
    let broken_after = a_waited.saturating_sub(cycle_at);
    eprintln!(
        "bound {BOUND:?}: the cycle closed {cycle_at:?} after A's wait began; A answered \
         {a_waited:?} after it ({broken_after:?} after the cycle closed), B's wait over after \
         {b_waited:?}"
    );
    let err = ra.expect_err("A, whose wait passed the bound first, is the victim");
    assert_eq!(server_code(err), (1213, "40001".into()));
    rb.expect("B goes on once A is rolled back");
    // Not before the bound, and within a second of the cycle: the bound less the time A
    // waited before the cycle closed (plus a second's allowance for a loaded machine's
    // scheduling; the servers' own lock wait timeout is 50 s).
    assert!(a_waited >= BOUND, "{a_waited:?}");
    assert!(
        broken_after < BOUND + Duration::from_secs(1),
        "the deadlock lasted {broken_after:?}"
    );
    b.query_drop("COMMIT").await.unwrap();
    // A's whole transaction is gone, its branch on server 0 included; B's is committed.
    let balances = bank.balances().await;
    assert_eq!(
        (balances[0].1, balances[2].1),
        (START_BALANCE + 1, START_BALANCE + 1),
        "{balances:?}"
    );
    // The victim's session goes on, outside any transaction.
    let status: Option<String> = a.query_first("SELECT @@in_transaction").await.unwrap();
    assert_eq!(status.as_deref(), Some("0"));
    transfer(&mut a, 99, 1, 3, 5, true).await.unwrap();
    assert_eq!(bank.prepared().await, 0);
}

/// Where a statement text starting with `prefix` runs: the ids of the servers' processes
/// running it (0 where none is).
async fn running(bank: &Bank, prefix: &str) -> [u64; 2] {
    let mut ids = [0; 2];
    for (server, id) in ids.iter_mut().enumerate() {
        let mut c = direct(&bank.servers[server]).await;
        let found: Option<u64> = c
            .exec_first(
                "SELECT ID FROM information_schema.PROCESSLIST WHERE INFO LIKE CONCAT(?, '%')",
                (prefix,),
            )
            .await
            .unwrap();
        *id = found.unwrap_or(0);
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_during_a_write_on_several_shards_leaves_the_transaction_all_or_nothing() {
    let mut bank = Bank::new();
    let proxy = Proxy::start(&bank.rules(None));
    bank.create(&proxy).await;
    // Server 1 is killed (SIGKILL) while the transaction's write on ds_0 (server 0) and ds_2
    // (server 1), each part behind its statement savepoint, runs: first while server 1's part
    // runs, then while server 0's part runs (server 1's part, still to come, finds it dead).
    for (round, victim_busy) in [(0u64, true), (1, false)] {
        let mut c = proxy.conn(Some("bank")).await;
        c.query_drop("BEGIN").await.unwrap();
        c.query_drop("UPDATE accounts SET balance = balance + 10 WHERE uid = 1")
            .await
            .unwrap();
        let write = "UPDATE accounts SET balance = balance + 1 + SLEEP(1) WHERE uid IN (0, 2)";
        let client = tokio::spawn(async move {
            let statement = c.query_drop(write).await;
            let commit = c.query_drop("COMMIT").await;
            (statement, commit)
        });
        let busy = if victim_busy { 1 } else { 0 };
        let deadline = Instant::now() + Duration::from_secs(30);
        while running(&bank, "UPDATE accounts SET balance = balance + 1 + SLEEP").await[busy] == 0 {
            assert!(
                Instant::now() < deadline,
                "round {round}: the write never ran"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        bank.servers[1].kill().expect("kill -9 server 1");
        let (statement, commit) = client.await.unwrap();
        eprintln!("round {round}: statement {statement:?}, commit {commit:?}");
        // The client learns it from the statement: a lost backend ends the session, as a
        // direct connection to a crashed server would end, so no COMMIT can commit the part
        // on server 0 alone.
        match &statement {
            Err(mysql_async::Error::Server(e)) => {
                assert_eq!(e.code, 1105, "round {round}: {e:?}");
                assert!(e.message.contains("lost"), "round {round}: {e:?}");
            }
            other => panic!("round {round}: the statement: {other:?}"),
        }
        assert!(
            matches!(commit, Err(mysql_async::Error::Io(_))),
            "round {round}: the session went on: COMMIT answered {commit:?}"
        );
        bank.servers[1].restart().expect("restart server 1");
        // Until the proxy's health check sees it back.
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut c = proxy.conn(Some("bank")).await;
        while c
            .query_drop("SELECT balance FROM accounts WHERE uid = 2")
            .await
            .is_err()
        {
            assert!(Instant::now() < deadline, "server 1 never came back");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Nothing of the transaction is applied anywhere, on server 0 (uids 0 and 1) or 1.
        assert_eq!(bank.wait_unprepared().await, 0, "round {round}");
        let balances = bank.balances().await;
        assert_eq!(
            [balances[0].1, balances[1].1, balances[2].1],
            [START_BALANCE; 3],
            "round {round}: {balances:?}"
        );
        assert_eq!(bank.decisions().await, 0);
    }
    // The proxy goes on.
    let mut c = proxy.conn(Some("bank")).await;
    transfer(&mut c, 1, 0, 2, 5, true).await.unwrap();
}

/// Every column of the `marks` rows on data source `ds`, as text that shows each byte
/// (`HEX` for strings, the stored number for BIT), by id.
async fn marks_on(bank: &Bank, ds: usize) -> Vec<Vec<Option<String>>> {
    let mut c = bank.direct(ds).await;
    let rows: Vec<mysql_async::Row> = c
        .query(
            "SELECT id, uid, HEX(name), HEX(note), HEX(bin), CAST(f AS DOUBLE), d, amount, bits + 0, \
             at, j \
             FROM marks ORDER BY id",
        )
        .await
        .unwrap();
    rows.into_iter()
        .map(|r| {
            (0..r.len())
                .map(|i| r.get::<Option<String>, _>(i).flatten())
                .collect()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_of_the_sharding_key_moves_the_rows() {
    let bank = Bank::new();
    let proxy = Proxy::start(&bank.rules(None));
    bank.create(&proxy).await;
    let mut c = proxy.conn(Some("bank")).await;
    c.query_drop(
        "CREATE TABLE marks (id BIGINT PRIMARY KEY, uid BIGINT NOT NULL, \
         name VARCHAR(40) CHARACTER SET latin1, note VARCHAR(40), bin VARBINARY(16), \
         f FLOAT, d DOUBLE, amount DECIMAL(12,4), bits BIT(8), at DATETIME(6), j JSON)",
    )
    .await
    .unwrap();
    // uid % 4 is the data source: 0 and 1 on the first server, 2 and 3 on the second.
    c.query_drop(
        "INSERT INTO marks VALUES \
         (1, 0, 'Zoé', 'ünï', X'00FF27275C', 0.1234567, 0.1, -12.3456, b'101', '2026-12-07 10:11:12.123456', '{\"a\": [1, \"é\"]}'), \
         (2, 1, 'zz', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL), \
         (3, 6, 'zz', 'x', NULL, NULL, NULL, NULL, NULL, NULL, NULL), \
         (4, 3, 'zz', NULL, NULL, 1e-30, 1.7976931348623157e308, 1, b'0', NULL, NULL)",
    )
    .await
    .unwrap();
    let original = marks_on(&bank, 0).await;
    let prepares = bank.statuses("Com_xa_prepare").await;

    // Text protocol: the row leaves server 0 for server 2 in one distributed transaction
    // (a branch prepared on each server), every other byte as it was.
    c.query_drop("UPDATE marks SET uid = 2, note = 'moved' WHERE uid = 0 AND id = 1")
        .await
        .unwrap();
    assert_eq!(c.affected_rows(), 1);
    let after = bank.statuses("Com_xa_prepare").await;
    assert_eq!([after[0] - prepares[0], after[1] - prepares[1]], [1, 1]);
    assert_eq!(bank.prepared().await, 0);
    assert!(marks_on(&bank, 0).await.is_empty());
    let moved: Vec<_> = marks_on(&bank, 2)
        .await
        .into_iter()
        .filter(|r| r[0].as_deref() == Some("1"))
        .collect();
    let mut expected = original[0].clone();
    expected[1] = Some("2".into());
    expected[3] = Some("6D6F766564".into()); // 'moved'
    assert_eq!(moved, vec![expected]);

    // Prepared, with parameters: back to the first shard, the note from a parameter.
    let stmt = "UPDATE marks SET uid = ?, note = ? WHERE uid = ? AND id = ?";
    c.exec_drop(stmt, (0, "ünï", 2, 1)).await.unwrap();
    assert_eq!(c.affected_rows(), 1);
    assert_eq!(marks_on(&bank, 0).await, original);
    let on_2: Vec<Option<String>> = marks_on(&bank, 2)
        .await
        .into_iter()
        .map(|r| r[0].clone())
        .collect();
    assert_eq!(on_2, vec![Some("3".into())]);

    // A scatter UPDATE: rows on three shards go to uid 2's; the one already there (uid 6)
    // is updated in place. Affected rows as one server answers: 3 changed.
    let mut extreme = marks_on(&bank, 3).await.remove(0);
    c.query_drop("UPDATE marks SET uid = 2 WHERE name = 'zz'")
        .await
        .unwrap();
    assert_eq!(c.affected_rows(), 3);
    extreme[1] = Some("2".into());
    assert!(marks_on(&bank, 2).await.contains(&extreme), "{extreme:?}");
    let ids: Vec<Option<String>> = marks_on(&bank, 2)
        .await
        .into_iter()
        .map(|r| r[0].clone())
        .collect();
    assert_eq!(
        ids,
        vec![Some("2".into()), Some("3".into()), Some("4".into())]
    );
    assert!(marks_on(&bank, 1).await.is_empty());
    assert!(marks_on(&bank, 3).await.is_empty());
    assert_eq!(marks_on(&bank, 0).await, original);

    // A duplicate key on the new shard: an error, nothing changed on either shard.
    let err = c
        .query_drop("UPDATE marks SET uid = 2, note = 'dup' WHERE id IN (1, 2) AND uid = 0")
        .await;
    assert!(err.is_ok(), "id 1 alone moves: {err:?}");
    assert_eq!(c.affected_rows(), 1);
    c.query_drop("INSERT INTO marks (id, uid) VALUES (2, 0)")
        .await
        .unwrap();
    let before = (marks_on(&bank, 0).await, marks_on(&bank, 2).await);
    let err = c
        .query_drop("UPDATE marks SET uid = 6 WHERE uid = 0")
        .await
        .unwrap_err();
    assert_eq!(server_code(err), (1062, "23000".into()));
    assert_eq!((marks_on(&bank, 0).await, marks_on(&bank, 2).await), before);
    assert_eq!(bank.prepared().await, 0);

    // Inside the client's transaction: a failed move is undone alone (the transaction goes
    // on, as after any failed statement); a move and the rest commit or roll back together.
    c.query_drop("BEGIN").await.unwrap();
    c.query_drop("UPDATE accounts SET balance = balance - 1 WHERE uid = 0")
        .await
        .unwrap();
    let err = c
        .exec_drop("UPDATE marks SET uid = ? WHERE uid = ?", (6, 0))
        .await
        .unwrap_err();
    assert_eq!(server_code(err), (1062, "23000".into()));
    c.query_drop("UPDATE marks SET uid = 1 WHERE id = 1 AND uid = 2")
        .await
        .unwrap();
    assert_eq!(c.affected_rows(), 1);
    c.query_drop("ROLLBACK").await.unwrap();
    assert_eq!((marks_on(&bank, 0).await, marks_on(&bank, 2).await), before);
    c.query_drop("BEGIN").await.unwrap();
    let _ = c.query_drop("UPDATE marks SET uid = 6 WHERE uid = 0").await;
    c.query_drop("UPDATE marks SET uid = 1 WHERE id = 1 AND uid = 2")
        .await
        .unwrap();
    c.query_drop("COMMIT").await.unwrap();
    let on_1: Vec<Option<String>> = marks_on(&bank, 1)
        .await
        .into_iter()
        .map(|r| r[0].clone())
        .collect();
    assert_eq!(on_1, vec![Some("1".into())]);
    assert_eq!(marks_on(&bank, 0).await, before.0);
    assert_eq!(bank.prepared().await, 0);

    // What the proxy cannot evaluate as MariaDB would is refused, naming it; so is a move
    // in local mode, which could not be atomic.
    let err = c
        .query_drop("UPDATE marks SET uid = 2, amount = amount + 1 WHERE id = 1 AND uid = 1")
        .await
        .unwrap_err();
    assert_eq!(server_code(err), (1235, "42000".into()));
    c.query_drop("SET dbmesh_transaction_mode = 'local'")
        .await
        .unwrap();
    let err = c
        .query_drop("UPDATE marks SET uid = 2 WHERE id = 1 AND uid = 1")
        .await
        .unwrap_err();
    assert_eq!(server_code(err), (1235, "42000".into()));
    let on_1: Vec<Option<String>> = marks_on(&bank, 1)
        .await
        .into_iter()
        .map(|r| r[0].clone())
        .collect();
    assert_eq!(on_1, vec![Some("1".into())]);
}
