//! What a distributed commit costs: the same transfer (an UPDATE on each participant) committed
//! with plain COMMITs (sent to every participant at once: the best a non-atomic commit does)
//! and through the coordinator, on one and on two data sources, against two fixture MariaDB
//! servers (the meta database on the first), with `innodb_flush_log_at_trx_commit = 1`. Prints the commit step's p50/p99 latency and
//! whole transactions per second, per mode and client count.
//!
//! `cargo bench -p xa --bench commit` (`XA_BENCH_TXNS` transactions per client, default 300).

use std::sync::Arc;
use std::time::{Duration, Instant};

use backend::{BackendConn, ConnectOptions};
use bytes::BufMut;
use protocol::constants::com;
use xa::{Coordinator, CoordinatorOptions, Participant};

#[derive(Clone, Copy, Debug)]
enum Mode {
    Local,
    Xa,
}

fn options(server: &testkit::Backend, database: &str, name: &str) -> ConnectOptions {
    ConnectOptions::plaintext(
        name,
        &server.address(),
        server.user(),
        server.password(),
        Some(database),
    )
}

async fn send(conn: &mut BackendConn, sql: &str) {
    conn.send_command_with(|b| {
        b.put_u8(com::QUERY);
        b.put_slice(sql.as_bytes());
    })
    .await
    .expect("send");
}

/// One client: `txns` transfers on its own account, each on `shards` data sources. Returns
/// the commit step's latencies.
async fn client(
    mode: Mode,
    coordinator: Arc<Coordinator>,
    sources: Vec<ConnectOptions>,
    account: usize,
    txns: usize,
) -> Vec<Duration> {
    let mut conns = Vec::new();
    for ds in &sources {
        conns.push(BackendConn::connect(ds).await.expect("connect"));
    }
    let names: Vec<String> = sources.iter().map(|s| s.source_name.clone()).collect();
    let mut latencies = Vec::with_capacity(txns);
    for _ in 0..txns {
        let update = format!("UPDATE account SET balance = balance + 1 WHERE id = {account}");
        match mode {
            Mode::Local => {
                // BEGIN in its own round trip, as XA START is in the other mode.
                for conn in &mut conns {
                    conn.query("BEGIN").await.expect("begin");
                    conn.query(&update).await.expect("work");
                }
                let started = Instant::now();
                for conn in &mut conns {
                    send(conn, "COMMIT").await;
                }
                for conn in &mut conns {
                    conn.read_query_result().await.expect("commit");
                }
                latencies.push(started.elapsed());
            }
            Mode::Xa => {
                let mut txn = coordinator.begin();
                for (name, conn) in names.iter().zip(&mut conns) {
                    txn.enlist(Participant {
                        data_source: name,
                        conn,
                    })
                    .await
                    .expect("XA START");
                    conn.query(&update).await.expect("work");
                }
                let mut participants: Vec<Participant<'_>> = names
                    .iter()
                    .zip(&mut conns)
                    .map(|(name, conn)| Participant {
                        data_source: name,
                        conn,
                    })
                    .collect();
                let started = Instant::now();
                txn.commit(&mut participants).await.expect("commit");
                latencies.push(started.elapsed());
            }
        }
    }
    latencies
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    let txns: usize = std::env::var("XA_BENCH_TXNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    // Durable commits, as production runs them (the fixture's default flushes once a second).
    let durable = testkit::MariaDbBuilder::default().arg("--innodb-flush-log-at-trx-commit=1");
    let servers = testkit::backends_with(2, &durable).expect("two MariaDB servers");
    let meta = testkit::unique_name("xbmeta");
    servers[0]
        .sql(&format!("CREATE DATABASE {meta}"))
        .expect("meta");
    let mut sources = Vec::new();
    for (i, server) in servers.iter().enumerate() {
        let db = testkit::unique_name("xbds");
        let rows: Vec<String> = (0..64).map(|id| format!("({id}, 0)")).collect();
        server
            .sql(&format!(
                "CREATE DATABASE {db}; CREATE TABLE {db}.account (id INT PRIMARY KEY, balance BIGINT NOT NULL); INSERT INTO {db}.account VALUES {}",
                rows.join(",")
            ))
            .expect("participant");
        sources.push(options(server, &db, &format!("ds_{i}")));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let coordinator = Arc::new(
            Coordinator::start(
                options(&servers[0], &meta, "meta"),
                CoordinatorOptions {
                    owner: "bench".into(),
                    ..CoordinatorOptions::default()
                },
            )
            .await
            .expect("coordinator"),
        );
        println!("mode   shards clients  commit_p50_us  commit_p99_us  txn_per_s");
        for shards in [1, 2] {
            for clients in [1, 4, 32] {
                for mode in [Mode::Local, Mode::Xa] {
                    let started = Instant::now();
                    let tasks: Vec<_> = (0..clients)
                        .map(|c| {
                            tokio::spawn(client(
                                mode,
                                Arc::clone(&coordinator),
                                sources[..shards].to_vec(),
                                c,
                                txns,
                            ))
                        })
                        .collect();
                    let mut all = Vec::new();
                    for t in tasks {
                        all.extend(t.await.expect("client"));
                    }
                    let elapsed = started.elapsed();
                    all.sort_unstable();
                    println!(
                        "{:<6} {shards:>6} {clients:>7} {:>14} {:>14} {:>10.0}",
                        format!("{mode:?}").to_lowercase(),
                        percentile(&all, 0.5).as_micros(),
                        percentile(&all, 0.99).as_micros(),
                        all.len() as f64 / elapsed.as_secs_f64()
                    );
                }
            }
        }
    });
}
