//! A write load for the rebalancing tests, and the check of its result on the backends.
//!
//! Clients spread over several proxies write at a target rate: transfers between two accounts
//! (two UPDATEs in one transaction, often on different slices and data sources), inserts of
//! uniquely keyed entries and deletes of entries inserted before, on every slice. Each client
//! times every statement and keeps every error. What the clients saw acknowledged gives the
//! exact final content, whatever the timing: [`Outcome::check`] reads every physical table
//! directly and compares, by the final slice map.
#![allow(dead_code)]

pub mod cluster;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mysql_async::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::common::{Backend, PASSWORD, USER};

/// The two tables of the load, one binding group sharded by `uid`.
pub const TABLES: [&str; 2] = ["account", "entry"];

/// Creates the tables through a proxy (on every node, the destination's included) and opens
/// `accounts` accounts, uids `0..accounts`, with [`OPENING_BALANCE`] each.
pub async fn create_bank(conn: &mut mysql_async::Conn, accounts: i64) {
    for create in [
        "CREATE TABLE account (uid BIGINT PRIMARY KEY, balance BIGINT NOT NULL)",
        "CREATE TABLE entry (id BIGINT PRIMARY KEY, uid BIGINT NOT NULL, amount BIGINT NOT NULL)",
    ] {
        conn.query_drop(create).await.expect("create the tables");
    }
    let values: Vec<String> = (0..accounts)
        .map(|uid| format!("({uid}, {OPENING_BALANCE})"))
        .collect();
    conn.query_drop(format!("INSERT INTO account VALUES {}", values.join(",")))
        .await
        .expect("open the accounts");
}

/// Every account's balance before the load.
pub const OPENING_BALANCE: i64 = 1_000_000;

/// The rule-file lines of the load's tables over `nodes` (e.g. `ds_{0..2}`) with `slices`.
pub fn table_rules(nodes: &str, slices: &str) -> String {
    let mut text = String::new();
    for table in TABLES {
        text += &format!(
            "[tables.{table}]\nkind = \"sharded\"\ncolumn = \"uid\"\nalgorithm = \"uid_slice\"\n\
             nodes = \"{nodes}\"\nslices = {{ {slices} }}\n\n"
        );
    }
    text + "[[binding_groups]]\ntables = [\"account\", \"entry\"]\n"
}

/// What to run.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    /// The proxies' client ports; clients are spread over them in turn.
    pub ports: Vec<u16>,
    pub clients: usize,
    /// Statements per second over all clients (a transfer is four: BEGIN, two UPDATEs,
    /// COMMIT).
    pub statements_per_second: u32,
    /// Accounts `0..accounts` exist.
    pub accounts: i64,
    pub seed: u64,
}

/// One acknowledged (or possibly applied) change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Transfer { from: i64, to: i64, amount: i64 },
    Insert { id: i64, uid: i64, amount: i64 },
    Delete { id: i64, uid: i64 },
}

/// One statement as a client saw it.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// When it was sent, from the start of the load.
    pub sent: Duration,
    pub took: Duration,
}

/// What one client saw.
#[derive(Debug, Default)]
struct ClientLog {
    samples: Vec<Sample>,
    committed: Vec<Op>,
    /// The change whose statement failed in a way that may have applied it (the client
    /// stops at its first error).
    uncertain: Option<Op>,
    errors: Vec<String>,
}

/// A running load.
pub struct Load {
    started: Instant,
    stop: Arc<AtomicBool>,
    clients: Vec<tokio::task::JoinHandle<ClientLog>>,
}

impl Load {
    /// Starts the clients (each connects first).
    pub async fn start(spec: &LoadSpec) -> Load {
        let started = Instant::now();
        let stop = Arc::new(AtomicBool::new(false));
        let per_client = f64::from(spec.statements_per_second) / spec.clients as f64;
        let mut clients = Vec::new();
        for n in 0..spec.clients {
            let port = spec.ports[n % spec.ports.len()];
            let conn = connect(port).await;
            let client = Client {
                n: n as i64,
                conn,
                rng: StdRng::seed_from_u64(spec.seed.wrapping_add(n as u64)),
                accounts: spec.accounts,
                interval: Duration::from_secs_f64(1.0 / per_client),
                started,
                stop: stop.clone(),
                inserted: Vec::new(),
                next_id: 0,
                log: ClientLog::default(),
            };
            clients.push(tokio::spawn(client.run()));
        }
        Load {
            started,
            stop,
            clients,
        }
    }

    /// The time since the load started: the clock of [`Sample::sent`].
    pub fn now(&self) -> Duration {
        self.started.elapsed()
    }

    /// Stops the clients after their current change and collects what they saw.
    pub async fn stop(self) -> Outcome {
        self.stop.store(true, Ordering::SeqCst);
        let mut outcome = Outcome::default();
        for client in self.clients {
            let log = tokio::time::timeout(Duration::from_secs(60), client)
                .await
                .expect("a load client ends within 60 s")
                .expect("a load client task");
            outcome.samples.extend(log.samples);
            outcome.committed.extend(log.committed);
            outcome.uncertain.extend(log.uncertain);
            outcome.errors.extend(log.errors);
        }
        outcome
    }
}

async fn connect(port: u16) -> mysql_async::Conn {
    let opts = mysql_async::OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(port)
        .prefer_socket(false)
        .user(Some(USER))
        .pass(Some(PASSWORD))
        .db_name(Some("bank"));
    mysql_async::Conn::new(opts)
        .await
        .expect("a load client connects")
}

struct Client {
    n: i64,
    conn: mysql_async::Conn,
    rng: StdRng,
    accounts: i64,
    /// Between two statements at the target rate.
    interval: Duration,
    started: Instant,
    stop: Arc<AtomicBool>,
    /// Entries this client inserted and has not deleted: (id, uid).
    inserted: Vec<(i64, i64)>,
    next_id: i64,
    log: ClientLog,
}

/// How a failed change ended.
enum Failure {
    /// It certainly did not apply (rolled back, or refused before anything was sent).
    NotApplied(String),
    /// It may have applied (the error came with or after its commit).
    Unknown(String),
}

impl Client {
    async fn run(mut self) -> ClientLog {
        let mut due = Instant::now();
        while !self.stop.load(Ordering::SeqCst) {
            let op = self.next_op();
            let statements = match op {
                Op::Transfer { .. } => 4,
                _ => 1,
            };
            match self.apply(&op).await {
                Ok(()) => {
                    match op {
                        Op::Insert { id, uid, .. } => self.inserted.push((id, uid)),
                        Op::Delete { id, .. } => self.inserted.retain(|(i, _)| *i != id),
                        Op::Transfer { .. } => {}
                    }
                    self.log.committed.push(op);
                }
                Err(Failure::NotApplied(e)) => {
                    self.log.errors.push(e);
                    break;
                }
                Err(Failure::Unknown(e)) => {
                    self.log.errors.push(e);
                    self.log.uncertain = Some(op);
                    break;
                }
            }
            // Paced, not bursting: a client behind (after a pause) catches up at once but
            // does not build a backlog beyond one interval.
            due = (due + self.interval * statements).max(Instant::now() - self.interval);
            tokio::time::sleep_until(due.into()).await;
        }
        let _ = self.conn.disconnect().await;
        self.log
    }

    fn next_op(&mut self) -> Op {
        let roll = self.rng.gen_range(0..100);
        if roll < 40 {
            let from = self.rng.gen_range(0..self.accounts);
            let mut to = self.rng.gen_range(0..self.accounts);
            if to == from {
                to = (from + 1) % self.accounts;
            }
            Op::Transfer {
                from,
                to,
                amount: self.rng.gen_range(1..100),
            }
        } else if roll < 75 || self.inserted.is_empty() {
            self.next_id += 1;
            Op::Insert {
                // Unique over clients and runs of a test.
                id: self.n * 1_000_000_000 + self.next_id,
                uid: self.rng.gen_range(0..1_000_000),
                amount: self.rng.gen_range(1..1_000),
            }
        } else {
            let (id, uid) = self.inserted[self.rng.gen_range(0..self.inserted.len())];
            Op::Delete { id, uid }
        }
    }

    /// Runs one statement, timed; `Err` is its error text.
    async fn statement(&mut self, sql: &str, expect_rows: Option<u64>) -> Result<(), String> {
        let sent = Instant::now();
        let result = self.conn.query_drop(sql).await;
        self.log.samples.push(Sample {
            sent: sent - self.started,
            took: sent.elapsed(),
        });
        result.map_err(|e| format!("client {}: {sql}: {e}", self.n))?;
        match expect_rows {
            Some(n) if self.conn.affected_rows() != n => Err(format!(
                "client {}: {sql}: {} rows affected, {n} expected",
                self.n,
                self.conn.affected_rows()
            )),
            _ => Ok(()),
        }
    }

    async fn apply(&mut self, op: &Op) -> Result<(), Failure> {
        match *op {
            Op::Transfer { from, to, amount } => {
                self.statement("BEGIN", None)
                    .await
                    .map_err(Failure::NotApplied)?;
                let legs = [(from, -amount), (to, amount)];
                for (uid, delta) in legs {
                    let sql =
                        format!("UPDATE account SET balance = balance + {delta} WHERE uid = {uid}");
                    if let Err(e) = self.statement(&sql, Some(1)).await {
                        let _ = self.conn.query_drop("ROLLBACK").await;
                        return Err(Failure::NotApplied(e));
                    }
                }
                self.statement("COMMIT", None)
                    .await
                    .map_err(Failure::Unknown)
            }
            Op::Insert { id, uid, amount } => self
                .statement(
                    &format!("INSERT INTO entry VALUES ({id}, {uid}, {amount})"),
                    Some(1),
                )
                .await
                .map_err(Failure::Unknown),
            Op::Delete { id, uid } => self
                .statement(
                    &format!("DELETE FROM entry WHERE uid = {uid} AND id = {id}"),
                    Some(1),
                )
                .await
                .map_err(Failure::Unknown),
        }
    }
}

/// Statement latencies: count and percentiles.
#[derive(Debug, Clone, Copy, Default)]
pub struct Latency {
    pub count: usize,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
}

impl std::fmt::Display for Latency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} statements, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            self.count,
            self.p50.as_secs_f64() * 1e3,
            self.p99.as_secs_f64() * 1e3,
            self.max.as_secs_f64() * 1e3
        )
    }
}

/// Where each data source's tables are: its server and database.
pub struct Placement<'a> {
    pub data_sources: BTreeMap<String, (&'a Backend, String)>,
    /// The owner of each slice 0..100 by the final map.
    pub owners: Vec<String>,
}

impl<'a> Placement<'a> {
    /// `slices` as in the rule file or a map version: ranges to data sources.
    pub fn new(
        data_sources: BTreeMap<String, (&'a Backend, String)>,
        slices: &[(u8, u8, &str)],
    ) -> Placement<'a> {
        let mut owners = vec![String::new(); 100];
        for (first, last, ds) in slices {
            for owner in &mut owners[usize::from(*first)..=usize::from(*last)] {
                *owner = ds.to_string();
            }
        }
        assert!(owners.iter().all(|o| !o.is_empty()), "{slices:?}");
        Placement {
            data_sources,
            owners,
        }
    }
}

/// What the clients saw.
#[derive(Debug, Default)]
pub struct Outcome {
    pub samples: Vec<Sample>,
    pub committed: Vec<Op>,
    pub uncertain: Vec<Op>,
    pub errors: Vec<String>,
}

impl Outcome {
    /// Latencies of every statement, or of those running at some time in `window`.
    pub fn latency(&self, window: Option<(Duration, Duration)>) -> Latency {
        let mut took: Vec<Duration> = self
            .samples
            .iter()
            .filter(|s| window.is_none_or(|(from, to)| s.sent <= to && s.sent + s.took >= from))
            .map(|s| s.took)
            .collect();
        took.sort();
        if took.is_empty() {
            return Latency::default();
        }
        let at = |q: usize| took[(took.len() * q / 100).min(took.len() - 1)];
        Latency {
            count: took.len(),
            p50: at(50),
            p99: at(99),
            max: took[took.len() - 1],
        }
    }

    /// The latest end, after `from`, of a statement sent before `from` (how long after a
    /// decision at `from` the statements waiting then had all been answered); zero when
    /// none was running then.
    pub fn released_after(&self, from: Duration) -> Duration {
        self.samples
            .iter()
            .filter(|s| s.sent <= from && s.sent + s.took > from)
            .map(|s| s.sent + s.took - from)
            .max()
            .unwrap_or_default()
    }

    /// Checks the backends against what the clients saw: every row exactly once, in its
    /// slice's data source by `placement`, with the value the acknowledged changes give
    /// (changes the clients could not know the outcome of may or may not have applied), and
    /// the sum of balances unchanged. Returns the problems found.
    pub async fn check(&self, placement: &Placement<'_>, accounts: i64) -> Vec<String> {
        let mut problems = Vec::new();
        let mut balances: BTreeMap<i64, i64> =
            (0..accounts).map(|uid| (uid, OPENING_BALANCE)).collect();
        let mut entries: BTreeMap<i64, (i64, i64)> = BTreeMap::new();
        for op in &self.committed {
            match *op {
                Op::Transfer { from, to, amount } => {
                    *balances.entry(from).or_default() -= amount;
                    *balances.entry(to).or_default() += amount;
                }
                Op::Insert { id, uid, amount } => {
                    entries.insert(id, (uid, amount));
                }
                Op::Delete { id, .. } => {
                    entries.remove(&id);
                }
            }
        }
        let mut found_accounts: BTreeMap<i64, Vec<(String, i64)>> = BTreeMap::new();
        let mut found_entries: BTreeMap<i64, Vec<(String, i64, i64)>> = BTreeMap::new();
        for (name, (server, db)) in &placement.data_sources {
            let mut conn = crate::common::direct(server).await;
            let rows: Vec<(i64, i64)> = conn
                .query(format!("SELECT uid, balance FROM {db}.account"))
                .await
                .expect("read accounts");
            for (uid, balance) in rows {
                found_accounts
                    .entry(uid)
                    .or_default()
                    .push((name.clone(), balance));
            }
            let rows: Vec<(i64, i64, i64)> = conn
                .query(format!("SELECT id, uid, amount FROM {db}.entry"))
                .await
                .expect("read entries");
            for (id, uid, amount) in rows {
                found_entries
                    .entry(id)
                    .or_default()
                    .push((name.clone(), uid, amount));
            }
        }
        let owner = |uid: i64| &placement.owners[uid.rem_euclid(100) as usize];
        let mut found_balances = BTreeMap::new();
        for (uid, copies) in &found_accounts {
            match copies.as_slice() {
                [(ds, balance)] if ds == owner(*uid) => {
                    found_balances.insert(*uid, *balance);
                }
                _ => problems.push(format!(
                    "account {uid}: found {copies:?}, expected once in {}",
                    owner(*uid)
                )),
            }
        }
        let uncertain_entries: BTreeSet<i64> = self
            .uncertain
            .iter()
            .filter_map(|op| match op {
                Op::Insert { id, .. } | Op::Delete { id, .. } => Some(*id),
                Op::Transfer { .. } => None,
            })
            .collect();
        for (id, copies) in &found_entries {
            let expected = entries.get(id);
            match (copies.as_slice(), expected) {
                ([(ds, uid, amount)], Some(&(e_uid, e_amount)))
                    if ds == owner(*uid) && (*uid, *amount) == (e_uid, e_amount) => {}
                ([(ds, uid, _)], None) if uncertain_entries.contains(id) && ds == owner(*uid) => {}
                _ => problems.push(format!(
                    "entry {id}: found {copies:?}, expected {expected:?} in its slice's owner"
                )),
            }
        }
        for (id, (uid, _)) in &entries {
            if !found_entries.contains_key(id) && !uncertain_entries.contains(id) {
                problems.push(format!("entry {id} (uid {uid}) is lost"));
            }
        }
        // Transfers whose commit went unanswered: some subset of them applied.
        let uncertain_transfers: Vec<(i64, i64, i64)> = self
            .uncertain
            .iter()
            .filter_map(|op| match *op {
                Op::Transfer { from, to, amount } => Some((from, to, amount)),
                _ => None,
            })
            .collect();
        assert!(
            uncertain_transfers.len() < 16,
            "too many uncertain transfers"
        );
        let explained = (0..1u32 << uncertain_transfers.len()).any(|subset| {
            let mut expected = balances.clone();
            for (i, (from, to, amount)) in uncertain_transfers.iter().enumerate() {
                if subset & (1 << i) != 0 {
                    *expected.entry(*from).or_default() -= amount;
                    *expected.entry(*to).or_default() += amount;
                }
            }
            expected == found_balances
        });
        if !explained {
            let differ: Vec<String> = balances
                .iter()
                .filter(|(uid, b)| found_balances.get(uid) != Some(b))
                .take(10)
                .map(|(uid, b)| format!("{uid}: {:?}, expected {b}", found_balances.get(uid)))
                .collect();
            problems.push(format!("balances differ: {differ:?}"));
        }
        let total: i64 = found_balances.values().sum();
        if total != accounts * OPENING_BALANCE {
            problems.push(format!(
                "the sum of balances is {total}, not {}",
                accounts * OPENING_BALANCE
            ));
        }
        problems
    }
}
