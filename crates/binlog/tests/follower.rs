//! The follower against real mariadbd: every column type round-trips to the destination,
//! only routed rows move (updates that move rows in and out, XA), a replay from an older
//! position converges, and a source restarted during catch-up is resumed.

mod common;

use std::sync::Arc;
use std::time::Duration;

use binlog::{
    check_source, Follower, FollowerHandle, FollowerMetrics, FollowerOptions, FollowerSettings,
    GtidPosition, Route, TableRef, Value,
};
use testkit::MariaDb;

/// Generous: CI runs the suite on two loaded cores.
const CAUGHT_UP: Duration = Duration::from_secs(60);

/// Follows `server`'s `app` database into itself: the route gives each row's destination.
fn follow(
    server: &MariaDb,
    from: &GtidPosition,
    server_id: u32,
    route: Route,
    metrics: &FollowerMetrics,
) -> FollowerHandle {
    let options = FollowerOptions {
        source: common::options(server),
        destination: binlog_destination(server),
        from: from.clone(),
        server_id,
        route,
    };
    let settings = FollowerSettings {
        tables: Some(Arc::new(|t: &TableRef| t.database == "app")),
        metrics: metrics.clone(),
        ..FollowerSettings::default()
    };
    Follower::start_with(options, settings)
}

fn binlog_destination(server: &MariaDb) -> backend::ConnectOptions {
    backend::ConnectOptions::plaintext("dst", &server.address(), "root", "", None)
}

/// Every row to the same table in database `dst`.
fn to_dst() -> Route {
    Arc::new(|table, _, _| {
        Some(TableRef {
            database: "dst".into(),
            table: table.table.clone(),
        })
    })
}

async fn head(server: &MariaDb) -> GtidPosition {
    check_source(&common::options(server))
        .await
        .expect("the source's position")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_column_type_round_trips_exactly() {
    let server = common::source();
    server
        .sql(&format!(
            "CREATE DATABASE app; CREATE DATABASE dst; {}; CREATE TABLE dst.all_types LIKE app.all_types",
            common::ALL_TYPES
        ))
        .expect("schema");
    let from = head(&server).await;
    server.sql(common::ALL_TYPES_ROWS).expect("rows");
    server
        .sql(
            "UPDATE app.all_types SET vc = 'ünïcode ✓', dec2 = -1.5, tm2 = '-12:00:00.01', \
                 ts = '2001-02-03 04:05:06.789', b13 = 1, e = 'b', s = 'y,z' WHERE id = 2;
             UPDATE app.all_types SET id = 10 WHERE id = 1;
             DELETE FROM app.all_types WHERE id = 3;
             INSERT INTO app.all_types (id, vb, lb, j) VALUES (4, X'00010203FEFF', REPEAT(X'00FF', 40000), '{}')",
        )
        .expect("changes");
    let target = head(&server).await;
    let metrics = FollowerMetrics::new();
    let mut follower = follow(&server, &from, 2001, to_dst(), &metrics);
    follower
        .wait_for(&target, CAUGHT_UP)
        .await
        .expect("caught up");
    let rows = |db: &str| {
        server
            .sql(&format!(
                "SELECT id, HEX(vc), HEX(vcl), HEX(vb), HEX(bn), HEX(lb), e + 0, s + 0, b64 + 0, \
                 f, d, dec1, dec2, dec3, dtm6, ts, tm, tm2, tm6, g, t.* \
                 FROM {db}.all_types t ORDER BY id"
            ))
            .expect("select")
    };
    let source_rows = rows("app");
    assert_eq!(source_rows.lines().count(), 3);
    assert_eq!(rows("dst"), source_rows);
    let checksum = |db: &str| {
        let out = server
            .sql(&format!("CHECKSUM TABLE {db}.all_types"))
            .expect("checksum");
        out.split_whitespace()
            .last()
            .expect("a checksum")
            .to_owned()
    };
    assert_eq!(checksum("dst"), checksum("app"));
    assert_eq!(
        metrics.changes_applied("src"),
        8,
        "3 + 1 inserts, an update in place, a key change (delete and replace), a delete"
    );
    follower.stop().await.expect("stops cleanly");

    // A change the destination refuses ends the follower, and its error surfaces.
    let missing: Route = Arc::new(|_, _, _| {
        Some(TableRef {
            database: "dst".into(),
            table: "missing".into(),
        })
    });
    let mut failing = follow(&server, &from, 2005, missing, &metrics);
    let error = failing
        .wait_for(&target, CAUGHT_UP)
        .await
        .expect_err("no such table");
    assert!(error.to_string().contains("dst.missing"), "{error}");
    assert!(failing.is_finished());
    assert_eq!(failing.stop().await.expect("already ended"), from);
}

/// Rows of `app.acct` whose uid % 100 is in 30..45 live in `dst.acct`.
fn moving_slices() -> Route {
    Arc::new(|table, schema, row| {
        if table.table != "acct" {
            return None;
        }
        let uid = schema.columns.iter().position(|c| c == "uid")?;
        match row[uid] {
            Value::Int(uid) if (30..45).contains(&(uid % 100)) => Some(TableRef {
                database: "dst".into(),
                table: "acct".into(),
            }),
            _ => None,
        }
    })
}

const MOVING: &str = "uid % 100 BETWEEN 30 AND 44";

fn assert_moved(server: &MariaDb) {
    let expected = server
        .sql(&format!(
            "SELECT * FROM app.acct WHERE {MOVING} ORDER BY uid"
        ))
        .expect("source rows");
    let moved = server
        .sql("SELECT * FROM dst.acct ORDER BY uid")
        .expect("destination rows");
    assert!(expected.lines().count() > 10, "{expected}");
    assert_eq!(moved, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_routed_rows_move_and_a_replay_converges() {
    let server = common::source();
    let mut setup = String::from(
        "CREATE DATABASE app; CREATE DATABASE dst;
         CREATE TABLE app.acct (uid INT PRIMARY KEY, bal BIGINT NOT NULL, note VARCHAR(20));
         CREATE TABLE dst.acct LIKE app.acct;
         CREATE TABLE app.log (id INT PRIMARY KEY AUTO_INCREMENT, uid INT);
         INSERT INTO app.acct VALUES ",
    );
    setup.push_str(
        &(1..=300)
            .map(|uid| format!("({uid}, {}, 'n{uid}')", uid * 10))
            .collect::<Vec<_>>()
            .join(","),
    );
    // The snapshot the rebalancer would copy.
    setup.push_str(&format!(
        "; INSERT INTO dst.acct SELECT * FROM app.acct WHERE {MOVING}"
    ));
    server.sql(&setup).expect("setup");
    let from = head(&server).await;
    server
        .sql(
            "BEGIN; UPDATE app.acct SET bal = bal - 5 WHERE uid = 31; \
                    UPDATE app.acct SET bal = bal + 5 WHERE uid = 50; \
                    INSERT INTO app.log (uid) VALUES (31), (50); COMMIT;
             FLUSH BINARY LOGS;
             UPDATE app.acct SET uid = 1035 WHERE uid = 10;
             UPDATE app.acct SET uid = 1060 WHERE uid = 133;
             UPDATE app.acct SET uid = 1233 WHERE uid = 233;
             UPDATE app.acct SET note = NULL WHERE uid BETWEEN 130 AND 150;
             DELETE FROM app.acct WHERE uid IN (36, 37, 70);
             INSERT INTO app.acct VALUES (2039, 1, 'new'), (2040, 2, 'new'), (2070, 3, 'stays');
             XA START 'x1'; INSERT INTO app.acct VALUES (1031, 5, 'xa'); XA END 'x1';
             XA PREPARE 'x1'; XA COMMIT 'x1';
             XA START 'x2'; INSERT INTO app.acct VALUES (1032, 5, 'xa undone'); XA END 'x2';
             XA PREPARE 'x2'; XA ROLLBACK 'x2';
             CREATE TABLE dst.unrelated (k INT PRIMARY KEY); INSERT INTO dst.unrelated VALUES (1)",
        )
        .expect("changes");
    let target = head(&server).await;
    let metrics = FollowerMetrics::new();
    let mut follower = follow(&server, &from, 2002, moving_slices(), &metrics);
    follower
        .wait_for(&target, CAUGHT_UP)
        .await
        .expect("caught up");
    assert_moved(&server);
    assert!(server
        .sql("SELECT uid FROM dst.acct WHERE uid IN (1031, 1032)")
        .expect("select")
        .trim()
        .eq("1031"));
    // Idle: the source's heartbeat says there is nothing more.
    let mut lag = follower.lag();
    tokio::time::timeout(
        CAUGHT_UP,
        lag.wait_for(|l| l.caught_up && l.seconds == 0 && l.transactions == Some(0)),
    )
    .await
    .expect("caught up within the bound")
    .expect("follower alive");
    let stopped_at = follower.stop().await.expect("stops cleanly");
    assert!(stopped_at.includes(&target));

    // A replay of the same changes from the older position converges to the same rows.
    server
        .sql("UPDATE dst.acct SET bal = -1 WHERE uid = 31")
        .expect("drift");
    let mut replay = follow(&server, &from, 2003, moving_slices(), &metrics);
    replay.wait_for(&target, CAUGHT_UP).await.expect("replayed");
    assert_moved(&server);
    replay.stop().await.expect("stops cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_restarted_during_catch_up_is_resumed() {
    let mut server = common::source();
    server
        .sql(
            "CREATE DATABASE app; CREATE DATABASE dst;
             CREATE TABLE app.acct (uid INT PRIMARY KEY, bal BIGINT NOT NULL, note VARCHAR(20));
             CREATE TABLE dst.acct LIKE app.acct",
        )
        .expect("schema");
    let from = head(&server).await;
    let inserts = |range: std::ops::Range<u32>| {
        range
            .map(|uid| format!("INSERT INTO app.acct VALUES ({uid}, {uid}, 'r');"))
            .collect::<String>()
    };
    server.sql(&inserts(0..1500)).expect("a backlog");
    let metrics = FollowerMetrics::new();
    let mut follower = follow(&server, &from, 2004, moving_slices(), &metrics);
    // Restart once the follower is reading the backlog.
    let mut processed = follower.processed();
    tokio::time::timeout(CAUGHT_UP, processed.wait_for(|p| *p != from))
        .await
        .expect("the follower starts within the bound")
        .expect("follower alive");
    server.restart().expect("source restarted");
    server
        .sql(&inserts(1500..2000))
        .expect("writes after the restart");
    let target = head(&server).await;
    follower
        .wait_for(&target, CAUGHT_UP)
        .await
        .expect("resumed and caught up");
    assert_moved(&server);
    assert!(
        metrics.reconnects("src") >= 1,
        "the follower noticed the restart"
    );
    follower.stop().await.expect("stops cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_xa_transaction_prepared_across_a_reconnection_is_applied_at_its_commit() {
    let mut server = common::source();
    server
        .sql(
            "CREATE DATABASE app; CREATE DATABASE dst;
             CREATE TABLE app.acct (uid INT PRIMARY KEY, bal BIGINT NOT NULL, note VARCHAR(20));
             CREATE TABLE dst.acct LIKE app.acct;
             INSERT INTO app.acct VALUES (30, 0, 'seed'), (31, 0, 'seed'), (32, 0, 'seed'),
               (33, 0, 'seed'), (34, 0, 'seed'), (35, 0, 'seed'), (36, 0, 'seed'),
               (37, 0, 'seed'), (38, 0, 'seed'), (39, 0, 'seed'), (40, 0, 'seed');
             INSERT INTO dst.acct SELECT * FROM app.acct",
        )
        .expect("schema");
    let from = head(&server).await;
    let metrics = FollowerMetrics::new();
    let mut follower = follow(&server, &from, 2006, moving_slices(), &metrics);
    // Prepared by a client that then disconnects: MariaDB keeps it prepared (and across a
    // restart) until someone commits it.
    server
        .sql(
            "XA START 'held'; INSERT INTO app.acct VALUES (1031, 5, 'xa'); \
             UPDATE app.acct SET bal = 7 WHERE uid = 32; XA END 'held'; XA PREPARE 'held'",
        )
        .expect("prepared");
    server
        .sql("INSERT INTO app.acct VALUES (2031, 1, 'after')")
        .expect("a later transaction");
    let target = head(&server).await;
    follower
        .wait_for(&target, CAUGHT_UP)
        .await
        .expect("caught up");
    let moved = |server: &MariaDb| {
        server
            .sql("SELECT uid, bal FROM dst.acct WHERE uid IN (32, 1031, 2031) ORDER BY uid")
            .expect("select")
    };
    assert_eq!(moved(&server), "32\t0\n2031\t1\n", "the prepared rows wait");
    // The follower reconnects past the prepare; it must read it again to apply the commit.
    server.restart().expect("source restarted");
    server
        .sql("XA COMMIT 'held'")
        .expect("committed after the restart");
    let target = head(&server).await;
    follower
        .wait_for(&target, CAUGHT_UP)
        .await
        .expect("the commit is applied");
    assert_eq!(moved(&server), "32\t7\n1031\t5\n2031\t1\n");
    assert_moved(&server);
    assert!(metrics.reconnects("src") >= 1);
    follower.stop().await.expect("stops cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_outcome_of_an_xa_transaction_prepared_before_the_start_is_ignored_only_within_the_snapshot(
) {
    let server = common::source();
    server
        .sql(
            "CREATE DATABASE app; CREATE DATABASE dst;
             CREATE TABLE app.acct (uid INT PRIMARY KEY, bal BIGINT NOT NULL, note VARCHAR(20));
             CREATE TABLE dst.acct LIKE app.acct;
             XA START 'early'; INSERT INTO app.acct VALUES (1031, 5, 'xa'); XA END 'early';
             XA PREPARE 'early'",
        )
        .expect("prepared");
    // The follower starts after the prepare; the commit comes before the snapshot position.
    let start = head(&server).await;
    server.sql("XA COMMIT 'early'").expect("committed");
    let snapshot = head(&server).await;
    server
        .sql("INSERT INTO app.acct VALUES (2031, 1, 'after')")
        .expect("a later transaction");
    let target = head(&server).await;
    let follow_ignoring = |server_id: u32, before: &GtidPosition| {
        Follower::start_with(
            FollowerOptions {
                source: common::options(&server),
                destination: binlog_destination(&server),
                from: start.clone(),
                server_id,
                route: to_dst(),
            },
            FollowerSettings {
                tables: Some(Arc::new(|t: &TableRef| t.database == "app")),
                ignore_unknown_xa_before: Some(before.clone()),
                ..FollowerSettings::default()
            },
        )
    };

    let mut within = follow_ignoring(2010, &snapshot);
    within
        .wait_for(&target, CAUGHT_UP)
        .await
        .expect("the commit within the snapshot is gone past");
    // Its rows are the snapshot's to bring, not the follower's; the later row is applied.
    assert_eq!(
        server
            .sql("SELECT uid FROM dst.acct ORDER BY uid")
            .expect("select"),
        "2031\n"
    );
    within.stop().await.expect("stops cleanly");

    // An outcome after the snapshot position cannot be explained by it: still an error.
    let mut after = follow_ignoring(2011, &start);
    let error = after
        .wait_for(&target, CAUGHT_UP)
        .await
        .expect_err("an unknown XA COMMIT after the snapshot stops the follower");
    assert!(
        error
            .to_string()
            .contains("prepared before the stream's start position"),
        "{error}"
    );
}
