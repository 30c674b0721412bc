//! A move of slices 20-29 and 70-79 (four source physical tables of each of two bound
//! tables) to a destination server, copied and caught up while a writer changes moving and
//! staying rows on the sources (updates, inserts, deletes, UIDs moving into and out of the
//! moving slices, XA transactions across both source databases). At the end every moving
//! row is on the destination exactly as on its source, the verification agrees, and it
//! finds a row changed behind its back.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use backend::{BackendConn, ConnectOptions};
use common::{binlog_server, Layout};
use meta::Phase;
use rebalance::{
    CatchUpEnd, CopyProgress, MoveRequest, MoveSettings, Mover, RebalanceMetrics, VerifySettings,
};

const ROWS: u64 = 6000;
/// Generous: CI runs the suite on two loaded cores.
const CAUGHT_UP: Duration = Duration::from_secs(60);

/// A small deterministic generator (no dependency for it).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % below
    }
}

/// Writes until `stop`, as the proxy would route them: each UID's rows on its slice's table.
async fn write_until(layout: Arc<Layout>, address: String, stop: Arc<AtomicBool>) -> u64 {
    let options = ConnectOptions::plaintext("writer", &address, "root", "", None);
    let mut conn = BackendConn::connect(&options)
        .await
        .expect("writer connects");
    let mut rng = Lcg(7);
    let mut next_uid = ROWS;
    let mut statements = 0;
    while !stop.load(Ordering::Relaxed) {
        let uid = rng.next(ROWS);
        let acct = layout.node_of("acct", uid);
        let ledger = layout.node_of("ledger", uid);
        let sql = match rng.next(6) {
            0 => format!("UPDATE {acct} SET bal = bal + 1, note = 'upd' WHERE uid = {uid}"),
            1 => {
                next_uid += 1;
                let uid = next_uid;
                format!(
                    "BEGIN; INSERT INTO {} VALUES ({uid}, 1, 'new', 1.5, NOW(3)); \
                     INSERT INTO {} VALUES ({uid}, 0, 9.99, NULL); COMMIT",
                    layout.node_of("acct", uid),
                    layout.node_of("ledger", uid)
                )
            }
            2 => format!(
                "BEGIN; DELETE FROM {acct} WHERE uid = {uid}; DELETE FROM {ledger} WHERE uid = {uid}; COMMIT"
            ),
            3 => {
                // Slice 19 <-> 20 within ds_0's first tables: into and out of the moving set.
                let from = uid - uid % 100 + if rng.next(2) == 0 { 19 } else { 20 };
                let to = if from % 100 == 19 { from + 1 } else { from - 1 };
                let t = layout.node_of("ledger", from);
                format!("UPDATE IGNORE {t} SET uid = {to} WHERE uid = {from} AND seq = 1")
            }
            4 => {
                let other = rng.next(ROWS);
                format!(
                    "XA START 'w{statements}'; UPDATE {acct} SET bal = bal - 5 WHERE uid = {uid}; \
                     UPDATE {} SET bal = bal + 5 WHERE uid = {other}; XA END 'w{statements}'; \
                     XA PREPARE 'w{statements}'; XA COMMIT 'w{statements}'",
                    layout.node_of("acct", other)
                )
            }
            _ => format!("UPDATE {ledger} SET amount = amount + 1, memo = X'{uid:04X}' WHERE uid = {uid}"),
        };
        conn.query(&sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        statements += 1;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    statements
}

/// Every moving row of `table`, from the sources and from the destination.
async fn moving_rows(
    layout: &Layout,
    source: &str,
    destination: &str,
    table: &str,
) -> (String, String) {
    let condition = "uid % 100 BETWEEN 20 AND 29 OR uid % 100 BETWEEN 70 AND 79";
    let read = |address: &str, sql: String| {
        let address = address.to_string();
        async move {
            let mut conn = BackendConn::connect(&ConnectOptions::plaintext(
                "check", &address, "root", "", None,
            ))
            .await
            .expect("connect");
            conn.query("SET time_zone = '+00:00'").await.expect("utc");
            let result = conn.query(&sql).await.expect("read");
            format!("{:?}", result.rows)
        }
    };
    // A FLOAT's text is rounded: its bytes too.
    let columns = if table == "acct" {
        "*, HEX(CAST(f AS BINARY)) AS f_bytes"
    } else {
        "*"
    };
    let sources: Vec<String> = [&layout.ds0, &layout.ds1]
        .iter()
        .flat_map(|db| {
            (0..2).map(move |n| format!("SELECT {columns} FROM {db}.{table}_{n} WHERE {condition}"))
        })
        .collect();
    let key = if table == "acct" { "uid" } else { "uid, seq" };
    (
        read(
            source,
            format!("{} ORDER BY {key}", sources.join(" UNION ALL ")),
        )
        .await,
        read(
            destination,
            format!(
                "SELECT {columns} FROM {}.{table}_0 WHERE {condition} ORDER BY {key}",
                layout.ds4
            ),
        )
        .await,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slices_move_under_writes_and_verify_equal() {
    let source = binlog_server(1);
    let destination = binlog_server(2);
    let layout = Arc::new(Layout::new());
    layout.populate(&source, ROWS);
    let rules = layout.rules(&source, &destination);

    let stop = Arc::new(AtomicBool::new(false));
    let writer = tokio::spawn(write_until(layout.clone(), source.address(), stop.clone()));
    let mut settings = MoveSettings::default();
    settings.copy.chunk_rows = 150;
    // Slow enough that the writer changes rows while they are being copied.
    settings.copy.throttle.rows_per_second = Some(3000);
    let request = MoveRequest {
        slices: "20-29,70-79".parse().expect("slices"),
        destination: "ds_4".into(),
        tables: Vec::new(),
    };
    let mut mover = Mover::begin(rules.clone(), &request, "test", settings)
        .await
        .expect("the move begins");
    assert_eq!(mover.plan.tables.len(), 2);
    assert_eq!(mover.plan.parts().count(), 8, "{}", mover.plan);
    let progress = Arc::new(CopyProgress::default());
    mover.copy(progress.clone()).await.expect("copied");
    let copied = progress.rows_copied.load(Ordering::Relaxed);
    assert!(copied >= 3 * ROWS / 10, "{copied} rows copied");
    let record = mover.record().await.expect("record");
    assert_eq!(record.phase, Phase::CatchingUp);
    assert!(
        record.nodes.iter().all(|n| n.done && n.chunks > 1),
        "{:?}",
        record.nodes
    );

    let followers = mover.start_catch_up().await.expect("followers");
    let processed: Vec<_> = followers.iter().map(|f| f.handle.processed()).collect();
    let source_options = ConnectOptions::plaintext("src", &source.address(), "root", "", None);
    // Writes go on for a while during the catch-up, then stop; the catch-up ends once it
    // has applied everything the source has.
    let caught_up = async {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        stop.store(true, Ordering::Relaxed);
        while !writer.is_finished() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let head = binlog::check_source(&source_options).await.expect("head");
        for mut p in processed {
            tokio::time::timeout(CAUGHT_UP, p.wait_for(|at| at.includes(&head)))
                .await
                .expect("caught up in time")
                .expect("follower alive");
        }
    };
    let mut ticks = 0;
    let (end, followers) = mover
        .catch_up(followers, caught_up, |_| ticks += 1)
        .await
        .expect("catch-up");
    assert_eq!(end, CatchUpEnd::Stopped);
    let plan = mover.plan.clone();
    mover.stop(followers).await.expect("stopped cleanly");
    assert!(ticks >= 1);

    for table in ["acct", "ledger"] {
        let (on_sources, on_destination) =
            moving_rows(&layout, &source.address(), &destination.address(), table).await;
        assert!(on_sources.len() > 1000, "{table}: {on_sources}");
        assert_eq!(
            on_sources, on_destination,
            "{table}: every moving row, exactly"
        );
    }
    let metrics = RebalanceMetrics::new();
    let settings = VerifySettings {
        chunk_rows: 100,
        rechecks: 0,
        ..VerifySettings::default()
    };
    let report = rebalance::verify(&rules, &plan, &settings, &metrics)
        .await
        .expect("verify");
    assert!(report.is_equal(), "{report:?}");
    assert_eq!(report.tables.len(), 8);
    assert!(report.tables.iter().all(|t| t.chunks > 1));

    // A row changed on the destination alone, one deleted, one added: each reported.
    destination
        .sql(&format!(
            "UPDATE {db}.acct_0 SET note = 'tampered' WHERE uid = 1020; \
             DELETE FROM {db}.acct_0 WHERE uid = 2021; \
             INSERT INTO {db}.acct_0 VALUES (999970, 0, NULL, NULL, NULL)",
            db = layout.ds4
        ))
        .expect("tamper");
    let report = rebalance::verify(&rules, &plan, &settings, &metrics)
        .await
        .expect("verify");
    assert!(!report.is_equal());
    let keys: Vec<String> = report
        .tables
        .iter()
        .flat_map(|t| t.differing.iter().flat_map(|d| d.keys.clone()))
        .collect();
    assert_eq!(keys, ["1020", "2021", "999970"], "{report:?}");
}
