//! The replication fixture against real `mariadbd` processes: a primary with two GTID replicas,
//! a stopped SQL thread, a crashed and restarted replica, and the read-only application user.
//! Skips (with a printed reason) when `DBMESH_TEST_BACKENDS` points tests at external servers.
#![allow(clippy::unwrap_used)]

use std::net::TcpStream;
use std::time::{Duration, Instant};

use testkit::replication::app_sql;
use testkit::{pid_exists, FixtureError, ReplicaSet, APP_USER};

const WAIT: Duration = Duration::from_secs(10);

fn start(sets: usize, replicas: usize) -> Option<Vec<ReplicaSet>> {
    let started = Instant::now();
    match ReplicaSet::start_many(sets, replicas) {
        Ok(s) => {
            eprintln!(
                "{sets} replica set(s) of 1 primary + {replicas} replicas ready in {:?}",
                started.elapsed()
            );
            Some(s)
        }
        Err(e) if e.is_unsupported() => {
            eprintln!("skipped: {e}");
            None
        }
        Err(e) => panic!("{e}"),
    }
}

fn count(server: &testkit::MariaDb, table: &str) -> String {
    server
        .sql(&format!("SELECT COUNT(*) FROM {table}"))
        .unwrap()
        .trim()
        .to_owned()
}

#[test]
fn primary_with_two_replicas_replicates_survives_stopped_sql_thread_and_crash() {
    let started = Instant::now();
    let Some(mut set) = start(1, 2).map(|mut s| s.remove(0)) else {
        return;
    };
    assert_eq!(set.replica_count(), 2);

    // Topology: distinct server ids, binlog + ROW on the primary, read-only GTID replicas.
    assert_eq!(
        set.primary()
            .sql("SELECT @@server_id, @@log_bin, @@binlog_format, @@read_only")
            .unwrap()
            .trim(),
        "1\t1\tROW\t0"
    );
    for i in 0..2 {
        let r = set.replica(i);
        assert_eq!(
            r.sql("SELECT @@server_id, @@read_only").unwrap().trim(),
            format!("{}\t1", i + 2)
        );
        let status = set.replica_status(i).unwrap();
        assert_eq!(status["Slave_IO_Running"], "Yes", "{status:?}");
        assert_eq!(status["Slave_SQL_Running"], "Yes", "{status:?}");
        assert_eq!(status["Using_Gtid"], "Slave_Pos", "{status:?}");
        assert_eq!(status["Master_Port"], set.primary().port().to_string());
    }

    // Writes on the primary reach both replicas.
    let db = testkit::unique_name("repl");
    let t = format!("{db}.t");
    set.primary()
        .sql(&format!(
            "CREATE DATABASE {db}; CREATE TABLE {t} (id INT PRIMARY KEY, v VARCHAR(20));
             INSERT INTO {t} VALUES (1, 'one'), (2, 'two');"
        ))
        .unwrap();
    for i in 0..2 {
        set.wait_caught_up(i, WAIT).unwrap();
        assert_eq!(
            set.replica(i)
                .sql(&format!("SELECT GROUP_CONCAT(v ORDER BY id) FROM {t}"))
                .unwrap()
                .trim(),
            "one,two"
        );
    }

    // The application user: read-only on replicas, can watch replication; root writes on the
    // primary.
    let err = app_sql(
        set.replica(0),
        &format!("INSERT INTO {t} VALUES (99, 'no')"),
    )
    .unwrap_err();
    assert!(
        matches!(err, FixtureError::Sql { .. }) && err.to_string().contains("1290"),
        "{err}"
    );
    assert_eq!(
        app_sql(set.replica(0), "SELECT CURRENT_USER()")
            .unwrap()
            .trim(),
        format!("{APP_USER}@127.0.0.1")
    );
    let out = app_sql(
        set.replica(0),
        "SHOW SLAVE STATUS;
         SELECT @@gtid_slave_pos = @@gtid_slave_pos;
         SELECT MASTER_GTID_WAIT('0-1-1', 0.1);",
    )
    .unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    // One tab-separated row; Slave_IO_Running and Slave_SQL_Running are adjacent columns.
    assert!(lines[0].contains("\tYes\tYes\t"), "{out}");
    assert_eq!(lines[1..], ["1", "0"], "{out}");
    assert_eq!(
        app_sql(set.replica(1), &format!("SELECT COUNT(*) FROM {t}"))
            .unwrap()
            .trim(),
        "2"
    );
    let grants = app_sql(set.replica(0), "SHOW GRANTS").unwrap();
    assert!(
        !grants.contains("SUPER") && !grants.contains("READ_ONLY ADMIN"),
        "{grants}"
    );
    app_sql(
        set.primary(),
        &format!("INSERT INTO {t} VALUES (3, 'three')"),
    )
    .unwrap();
    set.primary()
        .sql(&format!("INSERT INTO {t} VALUES (4, 'four')"))
        .unwrap();
    // root bypasses read_only (READ_ONLY ADMIN), which is why the app user exists.
    assert_eq!(
        set.replica(0).sql("SELECT @@read_only").unwrap().trim(),
        "1"
    );
    for i in 0..2 {
        set.wait_caught_up(i, WAIT).unwrap();
        assert_eq!(count(set.replica(i), &t), "4");
    }

    // Replica 0's SQL thread stopped: it falls behind, replica 1 does not.
    set.stop_sql_thread(0).unwrap();
    let status = set.replica_status(0).unwrap();
    assert_eq!(status["Slave_SQL_Running"], "No", "{status:?}");
    assert_eq!(status["Slave_IO_Running"], "Yes", "{status:?}");
    set.primary()
        .sql(&format!("INSERT INTO {t} VALUES (5, 'five')"))
        .unwrap();
    set.wait_caught_up(1, WAIT).unwrap();
    assert_eq!(count(set.replica(1), &t), "5");
    let err = set
        .wait_caught_up(0, Duration::from_millis(300))
        .unwrap_err();
    assert!(
        matches!(err, FixtureError::Replication { .. })
            && err.to_string().contains("Slave_SQL_Running: No"),
        "{err}"
    );
    assert_eq!(count(set.replica(0), &t), "4");
    let out = app_sql(set.replica(0), "SHOW SLAVE STATUS").unwrap();
    assert!(out.contains("\tYes\tNo\t"), "{out}");
    set.start_sql_thread(0).unwrap();
    set.wait_caught_up(0, WAIT).unwrap();
    assert_eq!(count(set.replica(0), &t), "5");

    // Replica 1 crashes, misses writes, comes back on its port and catches up.
    let port = set.replica(1).port();
    let pid = set.replica(1).pid().unwrap();
    set.kill_replica(1).unwrap();
    assert!(!pid_exists(pid));
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
    assert!(set.replica(1).sql("SELECT 1").is_err());
    set.primary()
        .sql(&format!(
            "INSERT INTO {t} VALUES (6, 'six'), (7, 'seven');
             UPDATE {t} SET v = 'ONE' WHERE id = 1;"
        ))
        .unwrap();
    let restarted = Instant::now();
    set.restart_replica(1).unwrap();
    set.wait_caught_up(1, WAIT).unwrap();
    eprintln!("replica restart + catch-up took {:?}", restarted.elapsed());
    assert_eq!(set.replica(1).port(), port);
    assert_ne!(set.replica(1).pid(), Some(pid));
    assert_eq!(
        set.replica(1)
            .sql(&format!(
                "SELECT COUNT(*), (SELECT v FROM {t} WHERE id = 1) FROM {t}"
            ))
            .unwrap()
            .trim(),
        "7\tONE"
    );
    let status = set.replica_status(1).unwrap();
    assert_eq!(status["Slave_SQL_Running"], "Yes", "{status:?}");
    // ...and it keeps replicating.
    set.primary()
        .sql(&format!("INSERT INTO {t} VALUES (8, 'eight')"))
        .unwrap();
    for i in 0..2 {
        set.wait_caught_up(i, WAIT).unwrap();
        assert_eq!(count(set.replica(i), &t), "8");
    }
    let primary_pos = set.primary().sql("SELECT @@gtid_binlog_pos").unwrap();
    for i in 0..2 {
        assert_eq!(
            set.replica(i).sql("SELECT @@gtid_slave_pos").unwrap(),
            primary_pos
        );
    }

    // Dropping the set stops every server and removes its directory.
    let pids: Vec<u32> = (0..2)
        .map(|i| set.replica(i).pid().unwrap())
        .chain(set.primary().pid())
        .collect();
    let dirs: Vec<_> = (0..2)
        .map(|i| set.replica(i).dir().to_owned())
        .chain([set.primary().dir().to_owned()])
        .collect();
    let dropping = Instant::now();
    drop(set);
    eprintln!("drop took {:?}", dropping.elapsed());
    for pid in pids {
        assert!(!pid_exists(pid), "pid {pid} survived drop");
    }
    for dir in dirs {
        assert!(!dir.exists(), "{} survived drop", dir.display());
    }
    eprintln!("whole test took {:?}", started.elapsed());
}

#[test]
fn two_shards_each_with_a_replica() {
    let Some(sets) = start(2, 1) else { return };
    assert_eq!(sets.len(), 2);
    assert_ne!(sets[0].primary().port(), sets[1].primary().port());
    for (n, set) in sets.iter().enumerate() {
        assert_eq!(set.replica_count(), 1);
        let status = set.replica_status(0).unwrap();
        assert_eq!(status["Master_Port"], set.primary().port().to_string());
        set.primary()
            .sql(&format!(
                "CREATE DATABASE shard_{n}; CREATE TABLE shard_{n}.t (id INT);
                 INSERT INTO shard_{n}.t VALUES ({n});"
            ))
            .unwrap();
    }
    for (n, set) in sets.iter().enumerate() {
        set.wait_caught_up(0, WAIT).unwrap();
        // Each replica has its own shard's data only.
        let dbs = set
            .replica(0)
            .sql("SHOW DATABASES LIKE 'shard\\_%'")
            .unwrap();
        assert_eq!(dbs.trim(), format!("shard_{n}"));
        assert_eq!(
            set.replica(0)
                .sql(&format!("SELECT id FROM shard_{n}.t"))
                .unwrap()
                .trim(),
            n.to_string()
        );
    }
}
