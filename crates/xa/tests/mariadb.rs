//! The coordinator, the decision log and recovery against real MariaDB servers started by
//! `testkit`: two servers, four data sources (two databases on each), the meta database on
//! the first. Crashes are simulated with failpoints (an error that stops the protocol where
//! it is, then the connections are dropped as a dead process's would be) and with `kill -9`
//! of a participant's mariadbd.

use std::time::Duration;

use backend::{BackendConn, ConnectOptions};
use protocol::ClientError;
use testkit::Backend;
use xa::{
    Coordinator, CoordinatorOptions, FailAction, Failpoint, Failpoints, Outcome, Participant,
    Recoverer, RecoveryReport, XaError, FORMAT_ID,
};

const SOURCES: usize = 4;
const START_BALANCE: i64 = 1_000;
/// Accounts 1..=ACCOUNTS on every data source.
const ACCOUNTS: u32 = 16;

struct World {
    servers: Vec<Backend>,
    meta: String,
    /// Database of each data source `ds_<i>`, on server `i / 2`.
    databases: Vec<String>,
}

impl World {
    fn start() -> World {
        let servers = testkit::backends(2).expect("start two MariaDB servers");
        let meta = testkit::unique_name("xameta");
        servers[0]
            .sql(&format!("CREATE DATABASE {meta}"))
            .expect("meta database");
        let databases: Vec<String> = (0..SOURCES).map(|_| testkit::unique_name("xads")).collect();
        let rows: Vec<String> = (1..=ACCOUNTS)
            .map(|id| format!("({id}, {START_BALANCE})"))
            .collect();
        for (i, db) in databases.iter().enumerate() {
            servers[i / 2]
                .sql(&format!(
                    "CREATE DATABASE {db}; \
                     CREATE TABLE {db}.account (id INT PRIMARY KEY, balance BIGINT NOT NULL); \
                     INSERT INTO {db}.account VALUES {}",
                    rows.join(",")
                ))
                .expect("participant database");
        }
        World {
            servers,
            meta,
            databases,
        }
    }

    fn options(&self, server: usize, database: &str, name: &str) -> ConnectOptions {
        let s = &self.servers[server];
        ConnectOptions::plaintext(name, &s.address(), s.user(), s.password(), Some(database))
    }

    fn data_sources(&self) -> Vec<ConnectOptions> {
        (0..SOURCES)
            .map(|i| self.options(i / 2, &self.databases[i], &format!("ds_{i}")))
            .collect()
    }

    async fn connect(&self, ds: usize) -> BackendConn {
        BackendConn::connect(&self.data_sources()[ds])
            .await
            .expect("connect to a data source")
    }

    async fn coordinator(&self, owner: &str, failpoints: &Failpoints) -> Coordinator {
        self.coordinator_with(owner, failpoints, Duration::from_secs(10))
            .await
    }

    async fn coordinator_with(
        &self,
        owner: &str,
        failpoints: &Failpoints,
        lease: Duration,
    ) -> Coordinator {
        let options = CoordinatorOptions {
            owner: owner.to_owned(),
            lease,
            heartbeat: lease / 4,
            failpoints: failpoints.clone(),
            ..CoordinatorOptions::default()
        };
        Coordinator::start(self.options(0, &self.meta, "meta"), options)
            .await
            .expect("start a coordinator")
    }

    fn recoverer(&self, coordinator: &Coordinator) -> Recoverer {
        Recoverer::new(coordinator, self.data_sources(), Duration::ZERO)
    }

    fn balance(&self, ds: usize, id: u32) -> i64 {
        self.servers[ds / 2]
            .sql(&format!(
                "SELECT balance FROM {}.account WHERE id = {id}",
                self.databases[ds]
            ))
            .expect("read a balance")
            .trim()
            .parse()
            .expect("a number")
    }

    fn total(&self) -> i64 {
        (0..SOURCES)
            .map(|ds| {
                self.servers[ds / 2]
                    .sql(&format!(
                        "SELECT SUM(balance) FROM {}.account",
                        self.databases[ds]
                    ))
                    .expect("sum balances")
                    .trim()
                    .parse::<i64>()
                    .expect("a number")
            })
            .sum()
    }

    fn invariant(&self) -> i64 {
        SOURCES as i64 * i64::from(ACCOUNTS) * START_BALANCE
    }

    /// dbmesh branches prepared on any server.
    fn prepared(&self) -> usize {
        self.servers
            .iter()
            .map(|s| {
                s.sql("XA RECOVER")
                    .expect("XA RECOVER")
                    .lines()
                    .filter(|l| l.starts_with(&format!("{FORMAT_ID}\t")))
                    .count()
            })
            .sum()
    }

    fn decision_rows(&self) -> usize {
        self.servers[0]
            .sql(&format!(
                "SELECT COUNT(*) FROM {}.dbmesh_xa_decision",
                self.meta
            ))
            .expect("count decisions")
            .trim()
            .parse()
            .expect("a number")
    }
}

/// Moves `amount` from account 1 of `from` to account 1 of each data source in `to`, in one
/// distributed transaction whose participants are `from` and `to`; returns the transaction
/// and the connections, ready to commit.
async fn transfer(
    world: &World,
    coordinator: &Coordinator,
    from: usize,
    to: &[usize],
    amount: i64,
) -> (xa::Transaction, Vec<(String, BackendConn)>) {
    transfer_on(world, coordinator, 1, from, to, amount).await
}

/// [`transfer`] on account `account`: transactions left prepared hold their rows' locks, so
/// several at once need distinct accounts.
async fn transfer_on(
    world: &World,
    coordinator: &Coordinator,
    account: u32,
    from: usize,
    to: &[usize],
    amount: i64,
) -> (xa::Transaction, Vec<(String, BackendConn)>) {
    let mut txn = coordinator.begin();
    let mut conns = Vec::new();
    for &ds in std::iter::once(&from).chain(to) {
        let name = format!("ds_{ds}");
        let mut conn = world.connect(ds).await;
        txn.enlist(Participant {
            data_source: &name,
            conn: &mut conn,
        })
        .await
        .expect("XA START");
        let sql = if ds == from {
            format!(
                "UPDATE account SET balance = balance - {} WHERE id = {account}",
                amount * to.len() as i64
            )
        } else {
            format!("UPDATE account SET balance = balance + {amount} WHERE id = {account}")
        };
        conn.query(&sql).await.expect("transfer statement");
        conns.push((name, conn));
    }
    (txn, conns)
}

fn lend(conns: &mut [(String, BackendConn)]) -> Vec<Participant<'_>> {
    conns
        .iter_mut()
        .map(|(name, conn)| Participant {
            data_source: name,
            conn,
        })
        .collect()
}

/// Recovery rounds until nothing is in doubt and every server answered (a server notices a
/// closed connection, and lets others resolve its prepared branch, a moment after the
/// close): the summed report.
async fn recover_all(recoverer: &Recoverer) -> RecoveryReport {
    let mut total = RecoveryReport::default();
    for _ in 0..50 {
        let round = recoverer.run_once().await.expect("recovery round");
        total.committed += round.committed;
        total.rolled_back += round.rolled_back;
        total.forgotten += round.forgotten;
        if round.in_doubt == 0 && round.unreachable.is_empty() {
            return total;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("still in doubt after 50 recovery rounds: {total:?}");
}

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..100 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn commits_across_two_to_four_participants_and_forgets_the_decision() {
    let world = World::start();
    let none = Failpoints::default();
    let coordinator = world.coordinator("p1", &none).await;
    for participants in 2..=SOURCES {
        let to: Vec<usize> = (1..participants).collect();
        let (txn, mut conns) = transfer(&world, &coordinator, 0, &to, 10).await;
        let committed = txn.commit(&mut lend(&mut conns)).await.expect("commit");
        assert!(committed.pending.is_empty());
        assert_eq!(world.prepared(), 0);
    }
    // ds_0 paid 10 to each of 1+2+3 others.
    assert_eq!(world.balance(0, 1), START_BALANCE - 60);
    assert_eq!(world.balance(1, 1), START_BALANCE + 30);
    assert_eq!(world.balance(3, 1), START_BALANCE + 10);
    assert_eq!(world.total(), world.invariant());
    wait_for("the decision rows to be deleted", || {
        world.decision_rows() == 0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_coordinator_refuses_a_bad_owner_name_or_lease() {
    let world = World::start();
    let meta = world.options(0, &world.meta, "meta");
    for options in [
        CoordinatorOptions {
            owner: "no spaces".into(),
            ..CoordinatorOptions::default()
        },
        CoordinatorOptions {
            owner: "ok".into(),
            lease: Duration::from_secs(3),
            heartbeat: Duration::from_secs(2),
            ..CoordinatorOptions::default()
        },
    ] {
        let err = Coordinator::start(meta.clone(), options)
            .await
            .err()
            .expect("refused");
        assert!(matches!(err, XaError::Usage(_)), "{err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_participant_commits_in_one_phase_and_rollback_undoes_all() {
    let world = World::start();
    let none = Failpoints::default();
    let coordinator = world.coordinator("p1", &none).await;
    let (txn, mut conns) = transfer(&world, &coordinator, 2, &[], 0).await;
    conns[0]
        .1
        .query("UPDATE account SET balance = 7 WHERE id = 1")
        .await
        .unwrap();
    // Without the log: the meta data source could be gone and this still commits.
    world.servers[0]
        .sql(&format!(
            "RENAME TABLE {m}.dbmesh_xa_decision TO {m}.hidden",
            m = world.meta
        ))
        .unwrap();
    txn.commit(&mut lend(&mut conns))
        .await
        .expect("one-phase commit");
    assert_eq!(world.balance(2, 1), 7);
    world.servers[0]
        .sql(&format!(
            "RENAME TABLE {m}.hidden TO {m}.dbmesh_xa_decision",
            m = world.meta
        ))
        .unwrap();
    // A rollback on three participants leaves nothing.
    let (txn, mut conns) = transfer(&world, &coordinator, 0, &[1, 3], 5).await;
    txn.rollback(&mut lend(&mut conns)).await.expect("rollback");
    assert_eq!(world.balance(0, 1), START_BALANCE);
    assert_eq!(world.balance(3, 1), START_BALANCE);
    assert_eq!(world.prepared(), 0);
    // The connections are clean: they run a new transaction.
    let (name, mut conn) = conns.remove(0);
    let mut txn = coordinator.begin();
    txn.enlist(Participant {
        data_source: &name,
        conn: &mut conn,
    })
    .await
    .expect("a new branch on a connection whose branch was rolled back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_prepare_rolls_back_every_participant() {
    let world = World::start();
    let none = Failpoints::default();
    let coordinator = world.coordinator("p1", &none).await;
    let (txn, mut conns) = transfer(&world, &coordinator, 0, &[1, 2, 3], 10).await;
    // ds_2's connection dies before COMMIT: its branch was never prepared.
    let victim = conns[2].1.connection_id;
    world.servers[1].sql(&format!("KILL {victim}")).unwrap();
    let err = txn
        .commit(&mut lend(&mut conns))
        .await
        .expect_err("a participant cannot prepare");
    assert!(err.rolled_back(), "{err}");
    assert!(
        matches!(&err, XaError::PrepareFailed { data_source, .. } if data_source == "ds_2"),
        "{err}"
    );
    assert_eq!(err.to_server_error().code, 1402);
    assert_eq!(world.total(), world.invariant());
    assert_eq!(world.balance(0, 1), START_BALANCE);
    assert_eq!(world.prepared(), 0);
    assert_eq!(
        world.decision_rows(),
        0,
        "no decision is written for a failed prepare"
    );
}

/// Where a crash at each failpoint leaves a two-server transfer, after a restarted proxy
/// (same owner name, so its previous run counts as gone at once) recovers.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_coordinator_crashing_at_each_failpoint_is_recovered_by_the_decision() {
    let world = World::start();
    // (failpoint, whether the transfer commits, branches recovery resolves of the three)
    let cases = [
        // Only the first branch was prepared; the server rolled back the others.
        (Failpoint::PrepareSome, false, 1),
        (Failpoint::Prepared, false, 3),
        (Failpoint::Decided, true, 3),
        (Failpoint::CommitSome, true, 2),
        (Failpoint::Committed, true, 0),
    ];
    let mut expected_moved = 0;
    for (point, commits, resolved) in cases {
        let failpoints = Failpoints::default();
        failpoints.arm(point, FailAction::Error);
        let crashing = world.coordinator("proxy", &failpoints).await;
        let (txn, mut conns) = transfer(&world, &crashing, 0, &[2, 3], 10).await;
        let err = txn
            .commit(&mut lend(&mut conns))
            .await
            .expect_err("the failpoint fires");
        assert!(matches!(err, XaError::Failpoint(p) if p == point), "{err}");
        // The process dies: its connections close.
        drop(conns);
        drop(crashing);
        let restarted = world.coordinator("proxy", &Failpoints::default()).await;
        let report = recover_all(&world.recoverer(&restarted)).await;
        let by_outcome = if commits {
            report.committed
        } else {
            report.rolled_back
        };
        assert_eq!(
            (by_outcome, report.committed + report.rolled_back),
            (resolved, resolved),
            "{point:?}: {report:?}"
        );
        if commits {
            expected_moved += 20;
        }
        assert_eq!(world.prepared(), 0, "{point:?}");
        assert_eq!(
            world.balance(0, 1),
            START_BALANCE - expected_moved,
            "{point:?} {report:?}"
        );
        assert_eq!(
            world.balance(3, 1),
            START_BALANCE + expected_moved / 2,
            "{point:?}"
        );
        assert_eq!(world.total(), world.invariant());
        // The next round deletes the decision rows: nothing is prepared any more.
        world
            .recoverer(&restarted)
            .run_once()
            .await
            .expect("recovery");
        assert_eq!(world.decision_rows(), 0, "{point:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn another_proxy_rolls_back_undecided_transactions_only_after_the_owner_lease_expires() {
    let world = World::start();
    let failpoints = Failpoints::default();
    let owner = world
        .coordinator_with("a", &failpoints, Duration::from_secs(2))
        .await;
    // Two transactions of a stop mid-commit: one decided, one only prepared.
    failpoints.arm(Failpoint::Decided, FailAction::Error);
    let (txn, mut conns) = transfer_on(&world, &owner, 1, 1, &[2], 25).await;
    txn.commit(&mut lend(&mut conns))
        .await
        .expect_err("failpoint");
    drop(conns);
    failpoints.disarm(Failpoint::Decided);
    failpoints.arm(Failpoint::Prepared, FailAction::Error);
    let (txn, mut conns) = transfer_on(&world, &owner, 2, 0, &[3], 7).await;
    txn.commit(&mut lend(&mut conns))
        .await
        .expect_err("failpoint");
    drop(conns);
    let other = world.coordinator("b", &Failpoints::default()).await;
    let recoverer = world.recoverer(&other);
    // While a's lease is renewed, b applies a's logged decision and leaves the undecided
    // transaction alone.
    let mut committed = 0;
    for _ in 0..50 {
        let round = recoverer.run_once().await.unwrap();
        assert_eq!(round.rolled_back, 0, "{round:?}");
        assert!(round.in_doubt >= 2, "{round:?}");
        committed += round.committed;
        if committed == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(committed, 2);
    assert_eq!(other.metrics().in_doubt(), 2);
    assert_eq!(other.metrics().recovered(Outcome::Commit), 2);
    assert_eq!(world.balance(1, 1), START_BALANCE - 25);
    assert_eq!(world.balance(2, 1), START_BALANCE + 25);
    // a dies: once its lease expires, b rolls the undecided one back.
    drop(owner);
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let report = recover_all(&recoverer).await;
    assert_eq!((report.committed, report.rolled_back), (0, 2), "{report:?}");
    assert_eq!(other.metrics().recovered(Outcome::Rollback), 2);
    assert_eq!(world.balance(0, 2), START_BALANCE);
    assert_eq!(world.balance(3, 2), START_BALANCE);
    recoverer.run_once().await.unwrap();
    assert_eq!(other.metrics().in_doubt(), 0);
    assert_eq!(world.decision_rows(), 0);
    assert_eq!(world.total(), world.invariant());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_commit_decision_is_refused_after_the_lease_expired_or_recovery_decided() {
    let world = World::start();
    let none = Failpoints::default();
    let coordinator = world
        .coordinator_with("slow", &none, Duration::from_secs(1))
        .await;
    let incarnation = coordinator.owner().incarnation;
    // The proxy stalled past its lease, as other proxies see it.
    let (txn, mut conns) = transfer(&world, &coordinator, 0, &[3], 5).await;
    world.servers[0]
        .sql(&format!(
            "UPDATE {}.dbmesh_xa_owner SET expires_at = UTC_TIMESTAMP(3) - INTERVAL 1 SECOND",
            world.meta
        ))
        .unwrap();
    let err = txn
        .commit(&mut lend(&mut conns))
        .await
        .expect_err("an expired lease cannot commit");
    assert!(matches!(err, XaError::Aborted { .. }), "{err}");
    assert_eq!(err.to_server_error().code, 1402);
    assert_eq!(world.balance(0, 1), START_BALANCE);
    assert_eq!(world.prepared(), 0);
    assert_eq!(world.decision_rows(), 0);
    // The heartbeat finds the lease gone and registers a new incarnation.
    wait_for("a new incarnation", || {
        coordinator.owner().incarnation > incarnation
    })
    .await;
    // Recovery fixed this transaction as rolled back before its owner decided.
    let (txn, mut conns) = transfer(&world, &coordinator, 0, &[3], 5).await;
    world.servers[0]
        .sql(&format!(
            "INSERT INTO {}.dbmesh_xa_decision VALUES ('{}', 'rollback', '', UTC_TIMESTAMP(3))",
            world.meta,
            txn.gtrid()
        ))
        .unwrap();
    let err = txn
        .commit(&mut lend(&mut conns))
        .await
        .expect_err("recovery's rollback wins");
    assert!(matches!(err, XaError::Aborted { .. }), "{err}");
    assert_eq!(world.balance(3, 1), START_BALANCE);
    assert_eq!(world.prepared(), 0);
    // And the next transaction commits.
    let (txn, mut conns) = transfer(&world, &coordinator, 0, &[3], 5).await;
    txn.commit(&mut lend(&mut conns)).await.expect("commit");
    assert_eq!(world.balance(3, 1), START_BALANCE + 5);
    assert_eq!(world.total(), world.invariant());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_recoverer_crashing_mid_recovery_is_finished_by_another() {
    let world = World::start();
    for point in [Failpoint::RecoveryDecided, Failpoint::RecoveryResolvedOne] {
        let crash = Failpoints::default();
        crash.arm(Failpoint::Decided, FailAction::Error);
        let owner = world.coordinator("owner", &crash).await;
        let (txn, mut conns) = transfer(&world, &owner, 0, &[1, 2], 1).await;
        txn.commit(&mut lend(&mut conns))
            .await
            .expect_err("failpoint");
        drop(conns);
        drop(owner);
        let recovering = Failpoints::default();
        recovering.arm(point, FailAction::Error);
        let first = world.coordinator("owner", &recovering).await;
        let err = loop {
            // Until the servers noticed the crashed owner's connections closing.
            match world.recoverer(&first).run_once().await {
                Err(e) => break e,
                Ok(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        };
        assert!(matches!(err, XaError::Failpoint(p) if p == point));
        drop(first);
        let second = world.coordinator("owner", &Failpoints::default()).await;
        recover_all(&world.recoverer(&second)).await;
        assert_eq!(world.prepared(), 0);
    }
    assert_eq!(world.balance(0, 1), START_BALANCE - 4);
    assert_eq!(world.balance(2, 1), START_BALANCE + 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_recoverers_at_once_resolve_each_branch_once_by_its_decision() {
    let world = World::start();
    // Eight crashed transactions: even ones decided commit, odd ones only prepared.
    let mut commits = 0;
    for i in 0..8 {
        let point = if i % 2 == 0 {
            Failpoint::Decided
        } else {
            Failpoint::Prepared
        };
        let crash = Failpoints::default();
        crash.arm(point, FailAction::Error);
        let owner = world.coordinator("dead", &crash).await;
        let (txn, mut conns) =
            transfer_on(&world, &owner, i as u32 + 1, i % 2, &[2 + i % 2], 3).await;
        txn.commit(&mut lend(&mut conns))
            .await
            .expect_err("failpoint");
        drop(conns);
        if i % 2 == 0 {
            commits += 1;
        }
    }
    assert_eq!(world.prepared(), 16);
    // Let the servers notice the closed connections, so recovery may resolve the branches.
    tokio::time::sleep(Duration::from_millis(300)).await;
    // A later incarnation of "dead" is registered, so all eight are recoverable.
    let _restarted = world.coordinator("dead", &Failpoints::default()).await;
    let a = world.coordinator("ra", &Failpoints::default()).await;
    let b = world.coordinator("rb", &Failpoints::default()).await;
    let (ra, rb) = (world.recoverer(&a), world.recoverer(&b));
    let (left, right) = tokio::join!(ra.run_once(), rb.run_once());
    let (left, right) = (left.unwrap(), right.unwrap());
    assert_eq!(
        left.committed + right.committed,
        2 * commits,
        "{left:?} {right:?}"
    );
    assert_eq!(
        left.rolled_back + right.rolled_back,
        2 * (8 - commits),
        "{left:?} {right:?}"
    );
    assert_eq!(world.prepared(), 0);
    for i in 0..8u32 {
        let (from, to) = (i as usize % 2, 2 + i as usize % 2);
        let moved = if i % 2 == 0 { 3 } else { 0 };
        assert_eq!(
            world.balance(from, i + 1),
            START_BALANCE - moved,
            "transfer {i}"
        );
        assert_eq!(
            world.balance(to, i + 1),
            START_BALANCE + moved,
            "transfer {i}"
        );
    }
    assert_eq!(world.total(), world.invariant());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unknown_xid_from_a_branch_held_by_a_live_connection_is_not_taken_as_done() {
    let world = World::start();
    let crash = Failpoints::default();
    crash.arm(Failpoint::Decided, FailAction::Error);
    let owner = world.coordinator("held", &crash).await;
    let (txn, mut conns) = transfer(&world, &owner, 0, &[2], 4).await;
    txn.commit(&mut lend(&mut conns))
        .await
        .expect_err("failpoint");
    drop(owner);
    // The connections stay open: MariaDB answers "unknown xid" to anyone else's XA COMMIT.
    let restarted = world.coordinator("held", &Failpoints::default()).await;
    let recoverer = world.recoverer(&restarted);
    let report = recoverer.run_once().await.unwrap();
    assert_eq!((report.committed, report.in_doubt), (0, 2), "{report:?}");
    assert_eq!(world.prepared(), 2);
    assert_eq!(world.decision_rows(), 1, "kept while branches are prepared");
    drop(conns);
    let report = recover_all(&recoverer).await;
    assert_eq!(report.committed, 2, "{report:?}");
    assert_eq!(world.balance(2, 1), START_BALANCE + 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_participant_killed_between_prepare_and_commit_is_committed_after_restart() {
    let mut world = World::start();
    if let Some(reason) = testkit::skip_reason(&world.servers) {
        eprintln!("{reason}");
        return;
    }
    let crash = Failpoints::default();
    crash.arm(Failpoint::Decided, FailAction::Error);
    let owner = world.coordinator("k9", &crash).await;
    let (txn, mut conns) = transfer(&world, &owner, 0, &[2, 3], 6).await;
    txn.commit(&mut lend(&mut conns))
        .await
        .expect_err("failpoint");
    drop(conns);
    world.servers[1]
        .kill()
        .expect("kill -9 the participant server");
    let restarted = world.coordinator("k9", &Failpoints::default()).await;
    let recoverer = world.recoverer(&restarted);
    // The dead server is reported; what can be done is done, the decision row is kept.
    let first = recoverer.run_once().await.unwrap();
    assert_eq!(first.unreachable.len(), 1, "{first:?}");
    assert_eq!(world.decision_rows(), 1);
    world.servers[1]
        .restart()
        .expect("restart the participant server");
    let report = recover_all(&recoverer).await;
    assert_eq!(
        first.committed + report.committed,
        3,
        "{first:?} {report:?}"
    );
    assert_eq!(world.balance(2, 1), START_BALANCE + 6);
    assert_eq!(world.balance(3, 1), START_BALANCE + 6);
    assert_eq!(world.balance(0, 1), START_BALANCE - 12);
    recoverer.run_once().await.unwrap();
    assert_eq!(world.decision_rows(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_prepared_branch_whose_connection_is_killed_is_not_lost() {
    let world = World::start();
    let none = Failpoints::default();
    let coordinator = world.coordinator("kc", &none).await;
    // kc2 decides commit and dies; the prepared branch of ds_3 had its connection KILLed
    // rather than closed. A restart of kc2 makes its transactions recoverable by kc.
    let crash = Failpoints::default();
    crash.arm(Failpoint::Decided, FailAction::Error);
    let crashing = world.coordinator("kc2", &crash).await;
    let (txn, mut conns) = transfer(&world, &crashing, 1, &[3], 8).await;
    txn.commit(&mut lend(&mut conns))
        .await
        .expect_err("failpoint");
    let victim = conns[1].1.connection_id;
    world.servers[1].sql(&format!("KILL {victim}")).unwrap();
    drop(conns);
    drop(crashing);
    let _restarted = world.coordinator("kc2", &Failpoints::default()).await;
    let report = recover_all(&world.recoverer(&coordinator)).await;
    assert_eq!(report.committed, 2, "{report:?}");
    assert_eq!(world.balance(3, 1), START_BALANCE + 8);
    assert_eq!(world.balance(1, 1), START_BALANCE - 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_periodic_recovery_task_resolves_what_a_crash_left_and_metrics_are_served() {
    let world = World::start();
    let crash = Failpoints::default();
    crash.arm(Failpoint::Decided, FailAction::Error);
    let dead = world.coordinator("periodic", &crash).await;
    let (txn, mut conns) = transfer(&world, &dead, 0, &[2], 9).await;
    txn.commit(&mut lend(&mut conns))
        .await
        .expect_err("failpoint");
    drop(conns);
    drop(dead);
    let restarted = world.coordinator("periodic", &Failpoints::default()).await;
    let registry = prometheus::Registry::new();
    restarted.metrics().register(&registry).expect("register");
    let task = world
        .recoverer(&restarted)
        .spawn(Duration::from_millis(100));
    wait_for("the periodic recovery", || world.prepared() == 0).await;
    assert_eq!(world.balance(2, 1), START_BALANCE + 9);
    wait_for("the decision row to be deleted", || {
        world.decision_rows() == 0
    })
    .await;
    task.abort();
    let names: Vec<String> = registry
        .gather()
        .iter()
        .map(|family| family.name().to_owned())
        .collect();
    for name in [
        "dbmesh_xa_in_doubt",
        "dbmesh_xa_oldest_in_doubt_seconds",
        "dbmesh_xa_recovered_total",
    ] {
        assert!(names.iter().any(|n| n == name), "{name} in {names:?}");
    }
    assert_eq!(restarted.metrics().recovered(Outcome::Commit), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn recovery_resolves_branches_that_changed_nothing() {
    let world = World::start();
    // MariaDB answers XA_RBROLLBACK (1402) to committing or rolling back a prepared branch
    // without changes: it is resolved either way.
    for (point, moved) in [(Failpoint::Prepared, 0), (Failpoint::Decided, 5)] {
        let crash = Failpoints::default();
        crash.arm(point, FailAction::Error);
        let owner = world.coordinator("ro", &crash).await;
        let (mut txn, mut conns) = transfer(&world, &owner, 0, &[2], 5).await;
        let mut reader = world.connect(3).await;
        txn.enlist(Participant {
            data_source: "ds_3",
            conn: &mut reader,
        })
        .await
        .unwrap();
        reader
            .query("SELECT balance FROM account WHERE id = 1")
            .await
            .unwrap();
        conns.push(("ds_3".to_owned(), reader));
        txn.commit(&mut lend(&mut conns))
            .await
            .expect_err("failpoint");
        drop(conns);
        drop(owner);
        let restarted = world.coordinator("ro", &Failpoints::default()).await;
        let report = recover_all(&world.recoverer(&restarted)).await;
        let (right, wrong) = if moved == 0 {
            (report.rolled_back, report.committed)
        } else {
            (report.committed, report.rolled_back)
        };
        assert_eq!((right, wrong), (3, 0), "{point:?} {report:?}");
        assert_eq!(world.prepared(), 0);
        assert_eq!(world.balance(2, 1), START_BALANCE + moved, "{point:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_proxy_whose_name_another_live_proxy_took_refuses_distributed_transactions() {
    let world = World::start();
    let none = Failpoints::default();
    let lease = Duration::from_secs(2);
    let first = world.coordinator_with("twin", &none, lease).await;
    // A second live proxy with the same name (two proxies sharing proxy.number).
    let second = world.coordinator_with("twin", &none, lease).await;
    assert!(second.owner().incarnation > first.owner().incarnation);
    // The first one's next heartbeat finds its lease taken: it stops, with a metric, and
    // never registers again (which would fail the second's commits in turn).
    wait_for("the first proxy to notice", || {
        first.metrics().lease_taken() == 1
    })
    .await;
    let mut txn = first.begin();
    let mut conn = world.connect(0).await;
    let err = txn
        .enlist(Participant {
            data_source: "ds_0",
            conn: &mut conn,
        })
        .await
        .expect_err("refused");
    assert!(matches!(err, XaError::LeaseTaken { .. }), "{err}");
    let packet = err.to_server_error();
    assert_eq!((packet.code, &packet.sqlstate), (1399, b"XAE07"));
    assert!(
        packet.message.contains("proxy.number"),
        "{}",
        packet.message
    );
    // The second keeps its lease across several heartbeats and commits.
    let incarnation = second.owner().incarnation;
    tokio::time::sleep(lease * 2).await;
    assert_eq!(second.owner().incarnation, incarnation);
    assert_eq!(second.metrics().lease_taken(), 0);
    let (txn, mut conns) = transfer(&world, &second, 0, &[3], 5).await;
    txn.commit(&mut lend(&mut conns)).await.expect("commit");
    assert_eq!(world.balance(3, 1), START_BALANCE + 5);
    assert_eq!(first.owner().incarnation + 1, incarnation);
}
