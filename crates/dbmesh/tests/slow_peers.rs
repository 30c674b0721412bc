//! Slow and silent peers are bounded: a client that stops reading a result
//! (`proxy.net_write_timeout_ms`), a backend that goes silent (`pool.read_timeout_ms`), a
//! statement that runs too long (`pool.statement_timeout_ms`), and sockets that connect and
//! never log in (`proxy.login_timeout_ms`, `proxy.max_authenticating`).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{one_backend, passthrough_rules, Proxy, RawClient};
use mysql_async::prelude::*;
use testkit::{Backend, MariaDb};

/// Reads what the proxy still sends until it closes the connection; the bytes read, or
/// `None` if it is still open after `limit`.
fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> Option<u64> {
    let started = Instant::now();
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("read timeout");
    let mut chunk = vec![0u8; 1 << 16];
    let mut total = 0u64;
    while started.elapsed() < limit {
        match stream.read(&mut chunk) {
            Ok(0) => return Some(total),
            Ok(n) => total += n as u64,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            // Reset: the proxy closed with our unread data in its buffers.
            Err(_) => return Some(total),
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_closed_and_its_locks_are_released() {
    let backend = one_backend();
    let db = testkit::unique_name("stall");
    backend
        .sql(&format!(
            "CREATE DATABASE `{db}`; CREATE TABLE `{db}`.account (id INT PRIMARY KEY, balance INT);\
             INSERT INTO `{db}`.account VALUES (1, 100)"
        ))
        .unwrap();
    let proxy = Proxy::start(&passthrough_rules(
        &backend,
        "bank",
        &db,
        "net_write_timeout_ms = 1000",
    ));
    let mut raw = RawClient::login(proxy.port, Some("bank"));
    assert_eq!(raw.query("BEGIN")[0], 0x00);
    let locked = raw.query("SELECT balance FROM account WHERE id = 1 FOR UPDATE");
    assert_eq!(locked[0], 0xfe, "{}", String::from_utf8_lossy(&locked));
    // About 2 GB of rows, far more than the socket buffers hold, and never read.
    let mut payload = vec![protocol::constants::com::QUERY];
    payload.extend_from_slice(b"SELECT REPEAT('x', 1000000) FROM seq_1_to_2000");
    raw.write_packet(0, &payload);
    let stalled = Instant::now();

    // A write to the locked row waits for the lock; it goes through once the proxy gives up
    // on the client and closes the backend connection, whose transaction goes with its lock.
    let mut direct = common::direct(&backend).await;
    direct
        .query_drop("SET SESSION innodb_lock_wait_timeout = 15")
        .await
        .unwrap();
    direct
        .query_drop(format!(
            "UPDATE `{db}`.account SET balance = 50 WHERE id = 1"
        ))
        .await
        .expect("the row lock was released");
    let released = stalled.elapsed();
    let read = read_until_closed(&mut raw.stream, Duration::from_secs(20))
        .expect("the proxy closed the client that stopped reading");
    eprintln!(
        "the row lock was released {released:?} after the client stopped reading \
         (net_write_timeout_ms = 1000); {read} bytes were in flight to it"
    );
    assert!(released < Duration::from_secs(8), "{released:?}");
    assert!(read < 500_000_000, "{read} bytes: the result was not cut");
    // And the proxy still serves.
    let mut conn = proxy.conn(Some("bank")).await;
    let balance: Option<i32> = conn
        .query_first("SELECT balance FROM account WHERE id = 1")
        .await
        .unwrap();
    assert_eq!(balance, Some(50));
    backend
        .sql(&format!("DROP DATABASE IF EXISTS `{db}`"))
        .unwrap();
}

/// Resumes a stopped server when the test ends, however it ends.
struct Stopped(u32);

impl Stopped {
    fn stop(pid: u32) -> Stopped {
        signal("-STOP", pid);
        Stopped(pid)
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        signal("-CONT", self.0);
    }
}

fn signal(which: &str, pid: u32) {
    let status = std::process::Command::new("kill")
        .args([which, &pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success(), "kill {which} {pid}");
}

/// A fixture server (never an external one: the test stops it).
fn own_backend() -> Backend {
    Backend::managed(MariaDb::start().expect("start a MariaDB"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_backend_ends_the_statement_with_an_error() {
    let backend = own_backend();
    let db = testkit::unique_name("silent");
    let mut rules = passthrough_rules(&backend, "bank", &db, "");
    rules += "\n[data_sources.main.pool]\nread_timeout_ms = 500\nconnect_timeout_ms = 500\nhandshake_timeout_ms = 500\n";
    let mut proxy = Proxy::start(&rules);
    let mut conn = proxy.conn(Some("bank")).await;
    // A statement that is silent longer than the read timeout on a live server is not cut.
    let slept: Option<i64> = conn.query_first("SELECT SLEEP(2)").await.unwrap();
    assert_eq!(slept, Some(0));

    let pid = backend.pid().expect("a fixture server");
    let stopped = Stopped::stop(pid);
    let started = Instant::now();
    let answer = tokio::time::timeout(
        Duration::from_secs(20),
        conn.query_first::<i64, _>("SELECT SLEEP(0)"),
    )
    .await
    .expect("the statement ends instead of hanging");
    let took = started.elapsed();
    drop(stopped);
    let (code, message) = match answer {
        Err(mysql_async::Error::Server(e)) => (e.code, e.message),
        other => panic!("expected the proxy's error, got {other:?}"),
    };
    eprintln!("a stopped backend failed the statement after {took:?}: {message}");
    assert_eq!(code, 1105);
    assert!(message.contains("sent nothing"), "{message}");
    assert!(took < Duration::from_secs(10), "{took:?}");
    proxy.assert_alive();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_past_the_statement_timeout_fails_and_the_session_goes_on() {
    let backend = own_backend();
    let db = testkit::unique_name("stmt_timeout");
    let mut rules = passthrough_rules(&backend, "bank", &db, "");
    rules += "\n[data_sources.main.pool]\nstatement_timeout_ms = 1000\n";
    let proxy = Proxy::start(&rules);
    let mut conn = proxy.conn(Some("bank")).await;
    let started = Instant::now();
    let err = conn
        .query_drop("SELECT SLEEP(10)")
        .await
        .expect_err("past the statement timeout");
    let took = started.elapsed();
    let (code, _) = common::server_code(err);
    assert_eq!(code, 1969, "MariaDB's max_statement_time exceeded");
    assert!(took < Duration::from_secs(5), "{took:?}");
    // The same session goes on, and may lift the limit for itself.
    conn.query_drop("SET SESSION max_statement_time = 0")
        .await
        .unwrap();
    let slept: Option<i64> = conn.query_first("SELECT SLEEP(1.5)").await.unwrap();
    assert_eq!(slept, Some(0));
}

/// Whether the proxy closed `s` (without waiting).
fn is_closed(s: &mut TcpStream) -> bool {
    s.set_nonblocking(true).expect("nonblocking");
    let mut byte = [0u8; 1];
    let closed = match s.read(&mut byte) {
        Ok(n) => n == 0,
        Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
    };
    s.set_nonblocking(false).expect("blocking");
    closed
}

/// Connects a socket to the proxy and reads its greeting, then never answers it.
fn idle_socket(port: u16) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("read timeout");
    let mut header = [0u8; 4];
    s.read_exact(&mut header).expect("greeting");
    let len = u32::from_le_bytes([header[0], header[1], header[2], 0]) as usize;
    let mut greeting = vec![0u8; len];
    s.read_exact(&mut greeting).expect("greeting");
    s
}

/// The value of the metric line starting with `line_start` once it reaches `at_least`, or
/// after 5 s (the proxy counts a cut login when that connection's task has ended).
fn wait_for_metric(proxy: &Proxy, line_start: &str, at_least: u64) -> u64 {
    let started = Instant::now();
    loop {
        let (_, metrics) = proxy.http("GET", "/metrics");
        let value = metrics
            .lines()
            .find(|l| l.starts_with(line_start))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        if value >= at_least || started.elapsed() > Duration::from_secs(5) {
            return value;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sockets_that_never_log_in_cannot_lock_out_a_real_client() {
    let backend = one_backend();
    let db = testkit::unique_name("idle_logins");
    let proxy = Proxy::start(&passthrough_rules(
        &backend,
        "bank",
        &db,
        "max_connections = 5\nmax_authenticating = 20\nlogin_timeout_ms = 60000",
    ));
    // Forty times the session limit in sockets that connect and say nothing.
    let idle: Vec<TcpStream> = (0..200).map(|_| idle_socket(proxy.port)).collect();
    let started = Instant::now();
    let mut conn = proxy.conn(Some("bank")).await;
    let login = started.elapsed();
    let one: Option<i64> = conn.query_first("SELECT 1").await.unwrap();
    assert_eq!(one, Some(1));
    eprintln!("a real client logged in in {login:?} past 200 idle sockets");
    assert!(login < Duration::from_secs(2), "{login:?}");
    // The oldest idle sockets were closed to make room, long before their login timeout.
    let mut first = idle.into_iter().next().expect("a socket");
    assert!(read_until_closed(&mut first, Duration::from_secs(5)).is_some());
    // 201 logins began, at most 20 at a time.
    let evicted = wait_for_metric(
        &proxy,
        "dbmesh_client_logins_cut_total{reason=\"evicted\"}",
        181,
    );
    assert!(evicted >= 181, "{evicted} logins evicted");
    backend
        .sql(&format!("DROP DATABASE IF EXISTS `{db}`"))
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_has_one_deadline_however_slowly_it_trickles() {
    let backend = one_backend();
    let db = testkit::unique_name("slow_login");
    let proxy = Proxy::start(&passthrough_rules(
        &backend,
        "bank",
        &db,
        "login_timeout_ms = 1000",
    ));
    let mut s = idle_socket(proxy.port);
    let started = Instant::now();
    // A handshake response header promising 100 bytes, then one byte every 200 ms: each
    // read makes progress, but the login as a whole is too slow.
    let mut closed = s.write_all(&[100, 0, 0, 1]).is_err();
    while !closed && started.elapsed() < Duration::from_secs(15) {
        std::thread::sleep(Duration::from_millis(200));
        closed = s.write_all(&[0]).is_err() || is_closed(&mut s);
    }
    let took = started.elapsed();
    assert!(closed, "still open after {took:?}");
    assert!(took < Duration::from_secs(4), "closed only after {took:?}");
    let timed_out = wait_for_metric(
        &proxy,
        "dbmesh_client_logins_cut_total{reason=\"timeout\"}",
        1,
    );
    assert_eq!(timed_out, 1);
}
