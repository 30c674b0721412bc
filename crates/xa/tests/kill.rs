//! The bank invariant across `kill -9` of the coordinator's process.
//!
//! Each round, a child process (this test binary, re-run on `child_process_of_the_kill_test`)
//! runs a coordinator and four clients doing transfers between random accounts of four data
//! sources on two servers, most of them across servers; each transfer also inserts its
//! transfer row in the same transaction. The child dies by a failpoint that aborts the process
//! at a step of the protocol (cycling through all of them) or by SIGKILL at a random moment.
//! Some rounds also run a recovery child that aborts mid-recovery. Then this process restarts
//! the coordinator under the child's name, recovers, and checks: no dbmesh branch is left
//! prepared, the sum of balances is unchanged, every balance equals what the transfer rows
//! say, every transfer the child saw committed has its row, and none it saw fail has one.
//!
//! `XA_KILL_ROUNDS` sets the number of rounds (default 160: with the recovery children's,
//! over 200 kills, in well under a minute).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use backend::{BackendConn, ConnectOptions};
use rand::Rng;
use testkit::Backend;
use xa::{Coordinator, CoordinatorOptions, Failpoint, Failpoints, Participant, Recoverer};

const SOURCES: usize = 4;
const ACCOUNTS: u32 = 20;
const START_BALANCE: i64 = 1_000;
const CLIENTS: u32 = 4;
/// An amount the transfer table's CHECK refuses.
const REFUSED_AMOUNT: i64 = 1_000;
const OWNER: &str = "victim";
/// How the parent tells the child what to do: `work <round>` or `recover <round>`.
const ENV_ROLE: &str = "XA_KILL_CHILD";
/// The servers, meta database and data source databases, `;`-separated.
const ENV_LAYOUT: &str = "XA_KILL_LAYOUT";

struct Layout {
    addresses: Vec<String>,
    user: String,
    password: String,
    meta: String,
    databases: Vec<String>,
}

impl Layout {
    fn encode(&self) -> String {
        format!(
            "{};{};{};{};{}",
            self.addresses.join(","),
            self.meta,
            self.databases.join(","),
            self.user,
            self.password
        )
    }

    fn decode(text: &str) -> Layout {
        let mut parts = text.splitn(5, ';');
        let mut next = || parts.next().expect("layout part").to_owned();
        let addresses = next().split(',').map(str::to_owned).collect();
        let meta = next();
        let databases = next().split(',').map(str::to_owned).collect();
        let user = next();
        let password = next();
        Layout {
            addresses,
            user,
            password,
            meta,
            databases,
        }
    }

    fn options(&self, server: usize, database: &str, name: &str) -> ConnectOptions {
        ConnectOptions::plaintext(
            name,
            &self.addresses[server],
            &self.user,
            &self.password,
            Some(database),
        )
    }

    fn data_sources(&self) -> Vec<ConnectOptions> {
        (0..SOURCES)
            .map(|i| self.options(i / 2, &self.databases[i], &format!("ds_{i}")))
            .collect()
    }

    async fn coordinator(&self, failpoints: Failpoints) -> Coordinator {
        let options = CoordinatorOptions {
            owner: OWNER.to_owned(),
            failpoints,
            ..CoordinatorOptions::default()
        };
        Coordinator::start(self.options(0, &self.meta, "meta"), options)
            .await
            .expect("start a coordinator")
    }
}

/// Why a transfer did not commit: `rolled_back` when it is known not to be applied.
struct Failed {
    rolled_back: bool,
    reason: String,
}

impl From<xa::XaError> for Failed {
    fn from(e: xa::XaError) -> Failed {
        Failed {
            rolled_back: e.rolled_back(),
            reason: e.to_string(),
        }
    }
}

impl From<backend::BackendError> for Failed {
    // A statement failed before COMMIT: closing the connections rolls the branches back.
    fn from(e: backend::BackendError) -> Failed {
        Failed {
            rolled_back: true,
            reason: e.to_string(),
        }
    }
}

/// One transfer: `amount` from (`from`, `from_account`) to (`to`, `to_account`), with its
/// row on the paying data source.
async fn transfer(
    coordinator: &Coordinator,
    conns: &mut [BackendConn],
    id: u64,
    (from, from_account): (usize, u32),
    (to, to_account): (usize, u32),
    amount: i64,
) -> Result<(), Failed> {
    let names: Vec<String> = (0..SOURCES).map(|i| format!("ds_{i}")).collect();
    let mut txn = coordinator.begin();
    let mut statements = vec![(
        from,
        format!(
            "UPDATE account SET balance = balance - {amount} WHERE id = {from_account}; \
             INSERT INTO transfer VALUES ({id}, {from}, {from_account}, {to}, {to_account}, {amount})"
        ),
    )];
    statements.push((
        to,
        format!("UPDATE account SET balance = balance + {amount} WHERE id = {to_account}"),
    ));
    for (ds, sql) in &statements {
        let conn = &mut conns[*ds];
        if !txn.is_participant(&names[*ds]) {
            txn.enlist(Participant {
                data_source: &names[*ds],
                conn,
            })
            .await?;
        }
        conn.query(sql).await?;
    }
    let mut participants: Vec<Participant<'_>> = conns
        .iter_mut()
        .enumerate()
        .filter(|(i, _)| *i == from || *i == to)
        .map(|(i, conn)| Participant {
            data_source: &names[i],
            conn,
        })
        .collect();
    txn.commit(&mut participants).await?;
    Ok(())
}

/// The child's work: transfers until the process dies.
async fn work(layout: &Layout, round: u64) {
    let coordinator = Arc::new(
        layout
            .coordinator(Failpoints::from_env().expect("failpoints"))
            .await,
    );
    println!("XA started");
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|client| {
            let coordinator = Arc::clone(&coordinator);
            let sources = layout.data_sources();
            tokio::spawn(async move {
                let mut conns = Vec::new();
                for ds in &sources {
                    conns.push(BackendConn::connect(ds).await.expect("connect"));
                }
                for n in 0u64.. {
                    let id = round * 1_000_000 + u64::from(client) * 100_000 + n;
                    let (from, to, a, b) = {
                        let mut rng = rand::thread_rng();
                        let from = rng.gen_range(0..SOURCES);
                        // Three in four transfers cross to the other server.
                        let to = if rng.gen_range(0..4) == 0 {
                            from ^ 1
                        } else {
                            (from + 2) % SOURCES
                        };
                        // Each client has its own accounts: no lock waits between clients.
                        let per = ACCOUNTS / CLIENTS;
                        let a = client * per + 1 + rng.gen_range(0..per);
                        let b = client * per + 1 + rng.gen_range(0..per);
                        (from, to, a, b)
                    };
                    // One transfer in eight is refused by its transfer row's CHECK after its
                    // debit ran: rolled back, so "none reported failed is applied" has
                    // something to check.
                    let amount = if n % 8 == 7 { REFUSED_AMOUNT } else { 7 };
                    match transfer(&coordinator, &mut conns, id, (from, a), (to, b), amount).await {
                        Ok(()) => println!("XA committed {id}"),
                        Err(failed) => {
                            let verdict = if failed.rolled_back {
                                "failed"
                            } else {
                                "unknown"
                            };
                            println!("XA {verdict} {id} {}", failed.reason);
                            // Whatever the error left on these connections, start afresh.
                            conns.clear();
                            for ds in &sources {
                                conns.push(BackendConn::connect(ds).await.expect("connect"));
                            }
                        }
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        let _ = t.await;
    }
}

/// Runs in a child process only: the work or recovery the parent asked for.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn child_process_of_the_kill_test() {
    let Ok(role) = std::env::var(ENV_ROLE) else {
        return;
    };
    let layout = Layout::decode(&std::env::var(ENV_LAYOUT).expect("layout"));
    let (what, round) = role.split_once(' ').expect("role");
    let round: u64 = round.parse().expect("round");
    match what {
        "work" => work(&layout, round).await,
        _ => {
            let coordinator = layout
                .coordinator(Failpoints::from_env().expect("failpoints"))
                .await;
            let recoverer = Recoverer::new(&coordinator, layout.data_sources(), Duration::ZERO);
            // Until the failpoint aborts the process (a round with nothing to do returns).
            let _ = recoverer.run_once().await;
        }
    }
}

/// Starts a child of this test binary with `role` and failpoints `spec`, kills it after
/// `kill_after` unless its failpoint ended it first, and returns the ids it reported
/// committed and failed, and whether it died (a recovery child with nothing to recover ends
/// by itself).
fn run_child(
    layout: &Layout,
    role: &str,
    spec: &str,
    kill_after: Duration,
) -> (BTreeSet<u64>, BTreeSet<u64>, bool) {
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args(["child_process_of_the_kill_test", "--exact", "--nocapture"])
        .env(ENV_ROLE, role)
        .env(ENV_LAYOUT, layout.encode())
        .env(xa::ENV_FAILPOINTS, spec)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the child");
    let stdout = child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        let (mut committed, mut failed) = (BTreeSet::new(), BTreeSet::new());
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let mut words = line.split_whitespace();
            if words.next() != Some("XA") {
                continue;
            }
            match (words.next(), words.next().and_then(|id| id.parse().ok())) {
                (Some("committed"), Some(id)) => {
                    committed.insert(id);
                }
                (Some("failed"), Some(id)) => {
                    failed.insert(id);
                }
                _ => {}
            }
        }
        (committed, failed)
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the child") {
            break status;
        }
        if started.elapsed() >= kill_after {
            // SIGKILL: nothing of the child runs after this. (The child is not reaped yet, so
            // its pid cannot belong to another process.)
            child.kill().expect("kill -9 the child");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    assert!(
        !status.success() || role.starts_with("recover"),
        "{role}: the child ended by itself"
    );
    let (committed, failed) = reader.join().expect("child output");
    (committed, failed, !status.success())
}

/// Waits until no server has a connection to the test's databases (only the dead children
/// had such connections at this point; the checker's own are in no database).
async fn wait_until_gone(checkers: &mut [BackendConn], layout: &Layout) {
    let databases: Vec<String> = std::iter::once(&layout.meta)
        .chain(&layout.databases)
        .map(|db| format!("'{db}'"))
        .collect();
    let sql = format!(
        "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE DB IN ({})",
        databases.join(",")
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut open = 0;
        for checker in checkers.iter_mut() {
            open += query(checker, &sql).await[0][0];
        }
        if open == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the dead process's connections are still open"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The rows of `sql`, every value a number.
async fn query(checker: &mut BackendConn, sql: &str) -> Vec<Vec<i64>> {
    checker
        .query(sql)
        .await
        .expect("query")
        .rows
        .iter()
        .map(|row| {
            row.iter()
                .map(|v| v.as_deref().expect("a value").parse().expect("number"))
                .collect()
        })
        .collect()
}

/// The dbmesh branches prepared on the server of `checker`.
async fn prepared(checker: &mut BackendConn) -> usize {
    checker
        .query("XA RECOVER")
        .await
        .expect("XA RECOVER")
        .rows
        .iter()
        .filter(|row| row[0].as_deref() == Some(&xa::FORMAT_ID.to_string()))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn transfers_keep_the_bank_invariant_across_kill_9_at_every_step() {
    if std::env::var(ENV_ROLE).is_ok() {
        return;
    }
    let rounds: u64 = std::env::var("XA_KILL_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(160);
    let servers = testkit::backends(2).expect("two MariaDB servers");
    let meta = testkit::unique_name("xkmeta");
    servers[0]
        .sql(&format!("CREATE DATABASE {meta}"))
        .expect("meta");
    let rows: Vec<String> = (1..=ACCOUNTS)
        .map(|id| format!("({id}, {START_BALANCE})"))
        .collect();
    let databases: Vec<String> = (0..SOURCES).map(|_| testkit::unique_name("xkds")).collect();
    for (i, db) in databases.iter().enumerate() {
        servers[i / 2]
            .sql(&format!(
                "CREATE DATABASE {db}; \
                 CREATE TABLE {db}.account (id INT PRIMARY KEY, balance BIGINT NOT NULL); \
                 INSERT INTO {db}.account VALUES {}; \
                 CREATE TABLE {db}.transfer (id BIGINT PRIMARY KEY, from_ds INT, from_account INT, \
                   to_ds INT, to_account INT, amount BIGINT CHECK (amount < {REFUSED_AMOUNT}))",
                rows.join(",")
            ))
            .expect("participant database");
    }
    let layout = Layout {
        addresses: servers.iter().map(Backend::address).collect(),
        user: servers[0].user().to_owned(),
        password: servers[0].password().to_owned(),
        meta,
        databases,
    };
    // The checks' connections, in no database; kept for the whole run.
    let mut checkers = Vec::new();
    for address in &layout.addresses {
        let options =
            ConnectOptions::plaintext("checker", address, &layout.user, &layout.password, None);
        checkers.push(BackendConn::connect(&options).await.expect("connect"));
    }
    let crash_points = [
        Failpoint::PrepareSome,
        Failpoint::Prepared,
        Failpoint::Decided,
        Failpoint::CommitSome,
        Failpoint::Committed,
    ];
    let (mut all_committed, mut all_failed) = (BTreeSet::new(), BTreeSet::new());
    // How the children died: a failpoint's name, or `SIGKILL`.
    let mut kills: BTreeMap<String, usize> = BTreeMap::new();
    let mut recovery_ms = Vec::new();
    for round in 0..rounds {
        // Every other round a failpoint aborts the child; the others are killed at random.
        let (spec, kill_after, how) = if round % 2 == 0 {
            let point = crash_points[(round / 2) as usize % crash_points.len()];
            (
                format!("{}=abort", point.name()),
                Duration::from_secs(20),
                point.name().to_owned(),
            )
        } else {
            // From before the child's first transfer to well into its transfers.
            let after = rand::thread_rng().gen_range(20..250);
            (
                String::new(),
                Duration::from_millis(after),
                "SIGKILL".to_owned(),
            )
        };
        *kills.entry(how).or_default() += 1;
        let (committed, failed, _) =
            run_child(&layout, &format!("work {round}"), &spec, kill_after);
        all_committed.extend(committed);
        all_failed.extend(failed);
        // Every third round, a recovering proxy dies mid-recovery too.
        if round % 3 == 0 {
            let point = if round % 2 == 0 {
                "recovery_decided"
            } else {
                "recovery_resolved_one"
            };
            let (_, _, died) = run_child(
                &layout,
                &format!("recover {round}"),
                &format!("{point}=abort"),
                Duration::from_secs(20),
            );
            if died {
                *kills.entry(point.to_owned()).or_default() += 1;
            }
        }
        // A statement the dead process sent may still be running on a server (an XA PREPARE
        // finishing after the kill leaves a branch prepared after a recovery round that did
        // not see it, for the next round to resolve). Checking "nothing left prepared" needs
        // that work to be over: wait until no connection of the dead process is left.
        wait_until_gone(&mut checkers, &layout).await;
        // The proxy restarts under its name: its earlier runs are gone at once.
        let restarted_at = Instant::now();
        let coordinator = layout.coordinator(Failpoints::default()).await;
        let recoverer = Recoverer::new(&coordinator, layout.data_sources(), Duration::ZERO);
        let mut settled = false;
        for _ in 0..100 {
            let report = recoverer.run_once().await.expect("recovery");
            if report.in_doubt == 0 && report.unreachable.is_empty() {
                settled = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(settled, "round {round}: recovery did not settle");
        recovery_ms.push(restarted_at.elapsed().as_millis());
        // Gone before the next child registers the same name.
        drop(recoverer);
        drop(coordinator);

        let mut left = 0;
        for checker in &mut checkers {
            left += prepared(checker).await;
        }
        assert_eq!(left, 0, "round {round}: branches left prepared");
        // Balances: unchanged in sum, and each exactly what the transfer rows say.
        let mut expected = vec![vec![START_BALANCE; ACCOUNTS as usize + 1]; SOURCES];
        let mut applied = BTreeSet::new();
        for (ds, db) in layout.databases.iter().enumerate() {
            for row in query(
                &mut checkers[ds / 2],
                &format!("SELECT id, from_ds, from_account, to_ds, to_account, amount FROM {db}.transfer"),
            )
            .await
            {
                let [id, from, a, to, b, amount] = row[..] else {
                    panic!("transfer row {row:?}");
                };
                assert!(applied.insert(id as u64), "transfer {id} applied twice");
                expected[from as usize][a as usize] -= amount;
                expected[to as usize][b as usize] += amount;
            }
        }
        let mut total = 0;
        for (ds, db) in layout.databases.iter().enumerate() {
            for row in query(
                &mut checkers[ds / 2],
                &format!("SELECT id, balance FROM {db}.account"),
            )
            .await
            {
                let (id, balance) = (row[0] as usize, row[1]);
                assert_eq!(
                    balance, expected[ds][id],
                    "round {round}: ds_{ds} account {id}"
                );
                total += balance;
            }
        }
        assert_eq!(
            total,
            SOURCES as i64 * i64::from(ACCOUNTS) * START_BALANCE,
            "round {round}: money created or destroyed"
        );
        let lost: Vec<_> = all_committed.difference(&applied).collect();
        assert!(
            lost.is_empty(),
            "round {round}: committed transfers lost: {lost:?}"
        );
        let ghosts: Vec<_> = all_failed.intersection(&applied).collect();
        assert!(
            ghosts.is_empty(),
            "round {round}: failed transfers applied: {ghosts:?}"
        );
    }
    recovery_ms.sort_unstable();
    eprintln!(
        "{} kills in {rounds} rounds ({kills:?}); {} transfers reported committed, {} failed; restart to no in-doubt branch: p50 {} ms, max {} ms",
        kills.values().sum::<usize>(),
        all_committed.len(),
        all_failed.len(),
        recovery_ms[recovery_ms.len() / 2],
        recovery_ms[recovery_ms.len() - 1]
    );
}
