//! The fixture against real `mariadbd` processes: start, answer, crash, restart, clean up.
//! Tests that need to own the processes skip (with a printed reason) when
//! `DBMESH_TEST_BACKENDS` points them at external servers.
#![allow(clippy::unwrap_used)]

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use testkit::{backends, backends_with, pid_exists, Backend, FixtureError, MariaDb};

/// `n` servers owned by the fixture, or `None` (after printing why) when they are external.
fn managed(n: usize, options: &testkit::MariaDbBuilder) -> Option<Vec<Backend>> {
    match backends_with(n, options) {
        Ok(b) => match testkit::skip_reason(&b) {
            Some(reason) => {
                eprintln!("{reason}");
                None
            }
            None => Some(b),
        },
        Err(e) if e.is_unsupported() => {
            eprintln!("skipped: {e}");
            None
        }
        Err(e) => panic!("{e}"),
    }
}

fn one_managed() -> Option<Backend> {
    managed(1, &MariaDb::builder()).and_then(|mut b| b.pop())
}

#[test]
fn two_servers_start_concurrently_and_both_answer() {
    let started = Instant::now();
    let shards = match backends(2) {
        Err(e) if e.is_unsupported() => return eprintln!("skipped: {e}"),
        other => other.unwrap(),
    };
    eprintln!("two backends ready in {:?}", started.elapsed());
    assert_eq!(shards.len(), 2);
    assert_ne!(shards[0].address(), shards[1].address());
    for b in &shards {
        assert_eq!(b.sql("SELECT 1 + 1").unwrap().trim(), "2");
    }
    if shards.iter().all(Backend::is_managed) {
        for b in &shards {
            let out = b.sql("SELECT @@port, @@datadir").unwrap();
            let server = b.server().unwrap();
            let expected = format!("{}\t{}/", b.port(), server.datadir().display());
            assert_eq!(out.trim(), expected);
            assert_eq!(b.address(), format!("127.0.0.1:{}", b.port()));
            assert!(pid_exists(b.pid().unwrap()));
        }
    }
}

#[test]
fn root_logs_in_over_tcp_with_an_empty_native_password() {
    let Some(b) = one_managed() else { return };
    let out = b
        .sql(
            "SELECT CURRENT_USER();
             SELECT plugin, authentication_string = '' FROM mysql.user
              WHERE user = 'root' AND host = '127.0.0.1';
             SELECT COUNT(*) FROM mysql.user
              WHERE user = 'root' AND host NOT IN ('localhost', '127.0.0.1', '::1');
             SELECT @@character_set_server, @@performance_schema, @@skip_grant_tables;",
        )
        .unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        [
            "root@127.0.0.1",
            "mysql_native_password\t1",
            "0",
            "utf8mb4\t0\t0"
        ],
        "{out}"
    );
    assert_eq!(b.url(), format!("mysql://root@127.0.0.1:{}", b.port()));
}

#[test]
fn kill_is_a_crash_and_restart_recovers_committed_rows() {
    let Some(mut b) = one_managed() else { return };
    b.sql(
        "CREATE DATABASE crash; CREATE TABLE crash.t (id INT PRIMARY KEY) ENGINE=InnoDB;
         INSERT INTO crash.t VALUES (1), (2), (3);",
    )
    .unwrap();
    let port = b.port();
    let pid = b.pid().unwrap();

    b.kill().unwrap();
    assert!(!pid_exists(pid), "pid {pid} still exists after kill");
    assert_eq!(b.pid(), None);
    let err = b.sql("SELECT 1").unwrap_err();
    assert!(matches!(err, FixtureError::Sql { .. }), "{err}");

    let started = Instant::now();
    b.restart().unwrap();
    eprintln!("restart after crash took {:?}", started.elapsed());
    assert_eq!(b.port(), port);
    assert_ne!(b.pid(), Some(pid));
    assert_eq!(b.sql("SELECT SUM(id) FROM crash.t").unwrap().trim(), "6");
}

#[test]
fn stop_and_restart_keep_port_and_data() {
    let Some(mut b) = one_managed() else { return };
    b.sql("CREATE DATABASE keep; CREATE TABLE keep.t (v VARCHAR(10)); INSERT INTO keep.t VALUES ('数据😀');")
        .unwrap();
    let datadir = b.server().unwrap().datadir().to_owned();
    let pid = b.pid().unwrap();
    let port = b.port();

    b.stop().unwrap();
    assert!(!pid_exists(pid));
    b.stop().unwrap(); // stopping a stopped server is a no-op
    assert!(datadir.join("keep").is_dir());

    b.restart().unwrap();
    assert_eq!(b.port(), port);
    assert_eq!(b.sql("SELECT v FROM keep.t").unwrap().trim(), "数据😀");
    // restart of a running server stops it first
    let pid = b.pid().unwrap();
    b.restart().unwrap();
    assert!(!pid_exists(pid));
    assert_eq!(b.sql("SELECT COUNT(*) FROM keep.t").unwrap().trim(), "1");
}

#[test]
fn drop_stops_the_process_and_removes_the_dir() {
    let Some(b) = one_managed() else { return };
    let pid = b.pid().unwrap();
    let dir = b.server().unwrap().dir().to_owned();
    assert!(pid_exists(pid));
    assert!(dir.is_dir());
    let started = Instant::now();
    drop(b);
    eprintln!("drop took {:?}", started.elapsed());
    assert!(!pid_exists(pid), "pid {pid} still exists after drop");
    assert!(!dir.exists(), "{} still exists after drop", dir.display());
}

#[test]
fn a_panicking_test_still_stops_its_server() {
    if testkit::external_backends_from_env().unwrap().is_some() {
        eprintln!("skipped: DBMESH_TEST_BACKENDS is set");
        return;
    }
    let mut seen: Option<(u32, PathBuf)> = None;
    let result = catch_unwind(AssertUnwindSafe(|| {
        let server = MariaDb::start().unwrap();
        seen = Some((server.pid().unwrap(), server.dir().to_owned()));
        panic!("test failure while the server runs");
    }));
    assert!(result.is_err());
    let (pid, dir) = seen.unwrap();
    assert!(!pid_exists(pid), "pid {pid} survived the panic");
    assert!(!dir.exists());
}

#[test]
fn extra_args_reach_mariadbd() {
    let options = MariaDb::builder()
        .args([
            "--server-id=7",
            "--log-bin=mariadb-bin",
            "--gtid-domain-id=3",
            "--read-only",
        ])
        .max_connections(42);
    let Some(b) = managed(1, &options).and_then(|mut b| b.pop()) else {
        return;
    };
    let out = b
        .sql("SELECT @@server_id, @@log_bin, @@gtid_domain_id, @@read_only, @@max_connections")
        .unwrap();
    assert_eq!(out.trim(), "7\t1\t3\t1\t42");
    assert!(b
        .server()
        .unwrap()
        .datadir()
        .join("mariadb-bin.index")
        .is_file());
}

#[test]
fn a_server_that_cannot_start_reports_its_log() {
    if testkit::external_backends_from_env().unwrap().is_some() {
        eprintln!("skipped: DBMESH_TEST_BACKENDS is set");
        return;
    }
    let err = MariaDb::builder()
        .arg("--no-such-option-for-dbmesh")
        .startup_timeout(Duration::from_secs(20))
        .start()
        .unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, FixtureError::Startup { .. }), "{message}");
    assert!(message.contains("exited"), "{message}");
    assert!(
        message.contains("no-such-option-for-dbmesh"),
        "the log should be in the error: {message}"
    );
}

#[test]
fn sql_reports_server_errors_and_takes_large_input() {
    let b = backends(1).unwrap().pop().unwrap();
    let err = b.sql("SELECT * FROM no_such_db_dbmesh.t").unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("1049") || message.contains("1146"),
        "{message}"
    );
    assert!(message.contains(&b.address()), "{message}");

    // Larger than one command-line argument may be.
    let db = testkit::unique_name("big");
    let values: Vec<String> = (0..30_000).map(|i| format!("({i})")).collect();
    let script = format!(
        "CREATE DATABASE {db}; CREATE TABLE {db}.t (id INT);
         INSERT INTO {db}.t VALUES {};
         SELECT COUNT(*), SUM(id) FROM {db}.t; DROP DATABASE {db};",
        values.join(",")
    );
    assert!(script.len() > 150_000);
    assert_eq!(b.sql(&script).unwrap().trim(), "30000\t449985000");
}

#[test]
fn unique_names_differ() {
    let a = testkit::unique_name("db");
    let b = testkit::unique_name("db");
    assert_ne!(a, b);
    assert!(a.starts_with("db_") && a.len() < 64, "{a}");
}
