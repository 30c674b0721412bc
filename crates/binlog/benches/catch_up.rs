//! How fast a follower catches up: a backlog of source transactions (multi-row INSERTs, then
//! UPDATEs of the same rows) in a fixture mariadbd's binlog is followed into another database
//! of the same server, once with every row routed (applied) and once with none (decoded and
//! skipped). Prints transactions and row changes per second for each.
//!
//! `cargo bench -p binlog --bench catch_up` (`BINLOG_BENCH_TXNS` transactions of each kind,
//! default 2000, of `BINLOG_BENCH_ROWS` rows, default 10).

use std::sync::Arc;
use std::time::{Duration, Instant};

use backend::ConnectOptions;
use binlog::{check_source, Follower, FollowerOptions, FollowerSettings, Route, TableRef};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let txns = env("BINLOG_BENCH_TXNS", 2000);
    let rows = env("BINLOG_BENCH_ROWS", 10);
    let server = testkit::MariaDb::builder()
        .row_binlog(1)
        .start()
        .expect("mariadbd");
    let options = ConnectOptions::plaintext("src", &server.address(), "root", "", None);
    server
        .sql(
            "CREATE DATABASE app; CREATE DATABASE dst; CREATE DATABASE skip;
             CREATE TABLE app.acct (uid INT PRIMARY KEY, bal BIGINT NOT NULL, note VARCHAR(40));
             CREATE TABLE dst.acct LIKE app.acct",
        )
        .expect("schema");
    let from = check_source(&options).await.expect("source");
    let mut sql = String::new();
    for t in 0..txns {
        let values: Vec<String> = (0..rows)
            .map(|r| {
                let uid = t * rows + r;
                format!("({uid}, {uid}, 'a note of some twenty chars {uid}')")
            })
            .collect();
        sql.push_str(&format!(
            "INSERT INTO app.acct VALUES {};\n",
            values.join(",")
        ));
    }
    for t in 0..txns {
        sql.push_str(&format!(
            "UPDATE app.acct SET bal = bal + 1 WHERE uid BETWEEN {} AND {};\n",
            t * rows,
            t * rows + rows - 1
        ));
    }
    server.sql(&sql).expect("backlog");
    let head = check_source(&options).await.expect("head");
    println!(
        "backlog: {} transactions, {} row changes ({txns} INSERTs then {txns} UPDATEs of {rows} rows)",
        2 * txns,
        2 * txns * rows
    );
    let all: Route = Arc::new(|t, _, _| {
        Some(TableRef {
            database: "dst".into(),
            table: t.table.clone(),
        })
    });
    let none: Route = Arc::new(|_, _, _| None);
    for (name, route, server_id) in [
        ("every row routed", all, 3001),
        ("no row routed", none, 3002),
    ] {
        let started = Instant::now();
        let mut follower = Follower::start_with(
            FollowerOptions {
                source: options.clone(),
                destination: ConnectOptions::plaintext("dst", &server.address(), "root", "", None),
                from: from.clone(),
                server_id,
                route,
            },
            FollowerSettings {
                tables: Some(Arc::new(|t: &TableRef| t.database == "app")),
                ..FollowerSettings::default()
            },
        );
        follower
            .wait_for(&head, Duration::from_secs(600))
            .await
            .expect("caught up");
        let seconds = started.elapsed().as_secs_f64();
        follower.stop().await.expect("stops");
        println!(
            "{name}: {seconds:.2} s, {:.0} transactions/s, {:.0} row changes/s",
            (2 * txns) as f64 / seconds,
            (2 * txns * rows) as f64 / seconds
        );
    }
    let count = server
        .sql("SELECT COUNT(*), SUM(bal) FROM dst.acct")
        .expect("count");
    let expected = server
        .sql("SELECT COUNT(*), SUM(bal) FROM app.acct")
        .expect("count");
    assert_eq!(count, expected, "the destination holds the source's rows");
}
