//! Bad input of every kind gets a MySQL error packet (or, where the stream is unusable, a
//! closed connection), and never takes the proxy or other clients down.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{err_code, one_backend, passthrough_rules, server_code, Proxy, RawClient};
use mysql_async::prelude::*;

/// A healthy client still gets answers.
async fn assert_serving(proxy: &Proxy) {
    let mut conn = proxy.conn(Some("bank")).await;
    let one: i64 = conn.query_first("SELECT 1").await.unwrap().unwrap();
    assert_eq!(one, 1);
    conn.disconnect().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_errors_carry_mysql_codes() {
    let backend = one_backend();
    let db = testkit::unique_name("login");
    let mut proxy = Proxy::start(&passthrough_rules(&backend, "bank", &db, ""));

    let wrong = mysql_async::Conn::new(proxy.opts(None).pass(Some("nope")))
        .await
        .unwrap_err();
    assert_eq!(server_code(wrong), (1045, "28000".into()));
    let unknown_user = mysql_async::Conn::new(proxy.opts(None).user(Some("ghost")))
        .await
        .unwrap_err();
    assert_eq!(server_code(unknown_user), (1045, "28000".into()));
    let unknown_db = mysql_async::Conn::new(proxy.opts(Some("nope")))
        .await
        .unwrap_err();
    assert_eq!(server_code(unknown_db), (1049, "42000".into()));

    // Garbage instead of a handshake response: 1043 Bad handshake, connection closed.
    let (mut raw, _) = RawClient::connect(proxy.port);
    raw.write_packet(1, b"\x01\x02garbage");
    let (_, err) = raw.read_packet().expect("an error packet");
    assert_eq!(err_code(&err), (1043, "08S01".into()));
    assert!(raw.is_closed());

    proxy.assert_alive();
    assert_serving(&proxy).await;
    let (_, metrics) = proxy.http("GET", "/metrics");
    assert!(
        metrics.contains("dbmesh_auth_failures_total 2"),
        "{metrics}"
    );
    backend
        .sql(&format!("DROP DATABASE IF EXISTS `{db}`"))
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_packets_are_answered_or_end_only_their_connection() {
    let backend = one_backend();
    let db = testkit::unique_name("malformed");
    let mut proxy = Proxy::start(&passthrough_rules(
        &backend,
        "bank",
        &db,
        "idle_timeout_secs = 2\nmax_allowed_packet = 1048576",
    ));

    // A 0-byte packet: error 1047, and the connection stays usable.
    let mut raw = RawClient::login(proxy.port, Some("bank"));
    raw.write_packet(0, b"");
    let (_, err) = raw.read_packet().unwrap();
    assert_eq!(err_code(&err), (1047, "08S01".into()));
    assert_eq!(raw.query("SELECT 1")[0], 0xfe, "a result set follows");

    // An unknown command byte: 1047 (08S01), connection usable.
    raw.write_packet(0, &[0x42, 1, 2, 3]);
    let (_, err) = raw.read_packet().unwrap();
    assert_eq!(err_code(&err), (1047, "08S01".into()));
    assert_eq!(raw.query("DO 1")[0], 0x00);

    // A packet over max_allowed_packet: 1153 (08S01), then the connection is closed.
    let mut big = vec![protocol::constants::com::QUERY];
    big.extend(std::iter::repeat_n(b' ', 2 << 20));
    raw.write_packet(0, &big);
    let (_, err) = raw.read_packet().unwrap();
    assert_eq!(err_code(&err), (1153, "08S01".into()));
    assert!(raw.is_closed());

    // A truncated packet followed by a hang-up.
    let mut raw = RawClient::login(proxy.port, Some("bank"));
    raw.write_raw(&[100, 0, 0, 0, 3, b'S', b'E']).unwrap();
    drop(raw);

    // A length that lies: the proxy waits for the rest, serves everyone else meanwhile, and
    // closes the connection at the idle timeout.
    let mut liar = RawClient::login(proxy.port, Some("bank"));
    liar.write_raw(&[0xe8, 0x03, 0, 0, 3, b'S']).unwrap();
    assert_serving(&proxy).await;
    liar.stream
        .set_read_timeout(Some(Duration::from_secs(8)))
        .unwrap();
    assert!(
        liar.is_closed(),
        "the idle timeout closes a stalled connection"
    );

    proxy.assert_alive();
    assert_serving(&proxy).await;
    backend
        .sql(&format!("DROP DATABASE IF EXISTS `{db}`"))
        .unwrap();
}

/// `what`'s output, failing the test if it takes over 10 s.
async fn within<T>(what: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), what)
        .await
        .expect("answered in time")
}

/// Input the proxy evaluates itself is bounded in time and stack: a LIKE pattern of 300,000
/// `%` (which overflowed a worker's stack and aborted the proxy), one that made backtracking
/// spin for minutes, and expressions nested 100,000 deep.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pathological_patterns_and_nesting_cannot_stall_or_crash_the_proxy() {
    let backend = one_backend();
    let db = testkit::unique_name("patterns");
    let mut proxy = Proxy::start(&passthrough_rules(
        &backend,
        "bank",
        &db,
        "worker_threads = 1",
    ));
    // Opened first: on the one worker every session shares.
    let mut bystander = proxy.conn(Some("bank")).await;
    let mut conn = proxy.conn(Some("bank")).await;

    let all: Vec<String> =
        within(conn.query(format!("SHOW DATABASES LIKE '{}'", "%".repeat(300_000))))
            .await
            .unwrap();
    assert_eq!(all, ["bank", "information_schema"]);
    let none: Vec<String> =
        within(conn.query(format!("SHOW DATABASES LIKE '{}z'", "%".repeat(26))))
            .await
            .unwrap();
    assert!(none.is_empty());

    // Refused by the proxy before it builds a tree it would walk 100,000 levels deep.
    let chain = format!("SELECT {}1 FROM bank.t", "1+".repeat(100_000));
    let err = within(conn.query_drop(chain)).await.unwrap_err();
    let (code, state) = server_code(err);
    assert_eq!((code, state.as_str()), (1064, "42000"));
    for deep in [
        format!("SELECT {}1", "NOT ".repeat(100_000)),
        format!("SELECT {}1{}", "(".repeat(100_000), ")".repeat(100_000)),
    ] {
        within(conn.query_drop(deep)).await.unwrap_err();
    }

    proxy.assert_alive();
    let one: i64 = bystander.query_first("SELECT 1").await.unwrap().unwrap();
    assert_eq!(one, 1);
    assert_serving(&proxy).await;
    backend
        .sql(&format!("DROP DATABASE IF EXISTS `{db}`"))
        .unwrap();
}

/// A session holds at most `max_prepared_statements` statements, and at most
/// `max_allowed_packet` bytes of COM_STMT_SEND_LONG_DATA between executes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_holds_bounded_statements_and_long_data() {
    let backend = one_backend();
    let db = testkit::unique_name("bounded");
    let rules = passthrough_rules(
        &backend,
        "bank",
        &db,
        "max_prepared_statements = 3\nmax_allowed_packet = 1048576",
    ) + "\n[tables.t]\nkind = \"sharded\"\ncolumn = \"id\"\nalgorithm = \"mod\"\n\
         nodes = \"main.t_{0..1}\"\n";
    let mut proxy = Proxy::start(&rules);
    let mut raw = RawClient::login(proxy.port, Some("bank"));
    assert_eq!(
        raw.query("CREATE TABLE t (id INT PRIMARY KEY, note LONGTEXT)")[0],
        0
    );

    // Routed by its parameters, so the proxy itself holds the long data until the execute.
    let insert = raw
        .prepare("INSERT INTO t (id, note) VALUES (?, ?)")
        .unwrap();
    let others: Vec<u32> = (0..2).map(|_| raw.prepare("DO 1").unwrap()).collect();
    let err = raw.prepare("DO 2").unwrap_err();
    assert_eq!(err_code(&err), (1461, "42000".into()));
    let mut close = vec![protocol::constants::com::STMT_CLOSE];
    close.extend_from_slice(&others[0].to_le_bytes());
    raw.write_packet(0, &close);
    raw.prepare("DO 2").expect("room again after a close");

    let long_data = |raw: &mut RawClient, bytes: usize| {
        let mut packet = vec![protocol::constants::com::STMT_SEND_LONG_DATA];
        packet.extend_from_slice(&insert.to_le_bytes());
        packet.extend_from_slice(&1u16.to_le_bytes());
        packet.extend(std::iter::repeat_n(b'x', bytes));
        raw.write_packet(0, &packet);
    };
    let execute = |raw: &mut RawClient, id: i32| {
        let mut packet = vec![protocol::constants::com::STMT_EXECUTE];
        packet.extend_from_slice(&insert.to_le_bytes());
        packet.extend_from_slice(&[0, 1, 0, 0, 0]); // no cursor, one iteration
        packet.push(0); // null bitmap
        packet.push(1); // types follow: LONG, BLOB
        packet.extend_from_slice(&[3, 0, 0xfc, 0]);
        packet.extend_from_slice(&id.to_le_bytes());
        raw.write_packet(0, &packet);
        raw.read_packet().unwrap().1
    };
    // 600 KB twice is past the session's 1 MiB: refused at the execute, nothing written.
    long_data(&mut raw, 600_000);
    long_data(&mut raw, 600_000);
    assert_eq!(err_code(&execute(&mut raw, 1)), (1210, "HY000".into()));
    // The refusal freed the room.
    long_data(&mut raw, 600_000);
    assert_eq!(execute(&mut raw, 2)[0], 0, "an OK");
    let mut conn = proxy.conn(Some("bank")).await;
    let rows: Vec<(i32, u64)> = conn.query("SELECT id, LENGTH(note) FROM t").await.unwrap();
    assert_eq!(rows, [(2, 600_000)]);

    proxy.assert_alive();
    backend
        .sql(&format!("DROP DATABASE IF EXISTS `{db}`"))
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_leaves_mid_result_frees_its_backend_connection() {
    let backend = one_backend();
    let db = testkit::unique_name("midresult");
    let mut proxy = Proxy::start(&passthrough_rules(&backend, "bank", &db, ""));
    for _ in 0..5 {
        let mut raw = RawClient::login(proxy.port, Some("bank"));
        let mut payload = vec![protocol::constants::com::QUERY];
        payload.extend_from_slice(b"SELECT seq, REPEAT('x', 1000) FROM seq_1_to_1000000");
        raw.write_packet(0, &payload);
        for _ in 0..10 {
            raw.read_packet().unwrap();
        }
        drop(raw);
    }
    // Every abandoned backend connection is closed, not returned to the pool half-read.
    let mut in_use = String::new();
    for _ in 0..50 {
        let (_, metrics) = proxy.http("GET", "/metrics");
        in_use = metrics
            .lines()
            .find(|l| {
                l.starts_with("dbmesh_backend_connections{data_source=\"main\",state=\"in_use\"}")
            })
            .unwrap_or_default()
            .to_string();
        if in_use.ends_with(" 0") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(in_use.ends_with(" 0"), "{in_use}");
    proxy.assert_alive();
    assert_serving(&proxy).await;
    backend
        .sql(&format!("DROP DATABASE IF EXISTS `{db}`"))
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_down_at_start_gives_clean_errors_and_unhealthy_status() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let rules = format!(
        "[[users]]\nname = \"dbmesh\"\npassword = \"dbmesh\"\n[schema]\nname = \"bank\"\ndefault_data_source = \"main\"\n[data_sources.main]\naddress = \"127.0.0.1:{port}\"\nuser = \"root\"\ndatabase = \"bank\"\n"
    );
    let mut proxy = Proxy::start(&rules);
    let (code, body) = proxy.wait_health(503, Duration::from_secs(10));
    assert_eq!(code, 503, "{body}");
    assert!(
        body.contains("'main'"),
        "the reason names the data source: {body}"
    );
    // mysql_async runs queries while connecting, so its connect fails with the proxy's error.
    let err = mysql_async::Conn::new(proxy.opts(None)).await.unwrap_err();
    let (code, _) = server_code(err);
    assert_eq!(code, 1105);
    // Login itself needs no backend; each statement gets a clean error and the session lives.
    let mut raw = RawClient::login(proxy.port, None);
    for _ in 0..2 {
        let err = raw.query("SELECT 1");
        assert_eq!(err_code(&err), (1105, "HY000".into()));
        assert!(String::from_utf8_lossy(&err).contains("'main'"));
    }
    assert_eq!(
        raw.query("SHOW DATABASES")[0],
        0xfe,
        "statements the proxy answers itself still work"
    );
    proxy.assert_alive();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_that_dies_mid_query_fails_that_query_and_the_proxy_recovers() {
    let mut backend = one_backend();
    if !backend.is_managed() {
        eprintln!("skipped: external backends cannot be killed");
        return;
    }
    let db = testkit::unique_name("dies");
    let mut proxy = Proxy::start(&passthrough_rules(&backend, "bank", &db, ""));
    assert_eq!(proxy.wait_health(200, Duration::from_secs(10)).0, 200);
    let mut victim = proxy.conn(Some("bank")).await;
    victim.query_drop("SELECT 1").await.unwrap();
    let slow = tokio::spawn(async move { victim.query_drop("SELECT SLEEP(30)").await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    backend.kill().unwrap();
    let err = tokio::time::timeout(Duration::from_secs(10), slow)
        .await
        .expect("no hang")
        .unwrap()
        .unwrap_err();
    match err {
        mysql_async::Error::Server(s) => assert_eq!(s.code, 1105, "{s:?}"),
        mysql_async::Error::Io(_) | mysql_async::Error::Driver(_) => {}
        other => panic!("unexpected {other:?}"),
    }
    proxy.assert_alive();
    assert_eq!(proxy.wait_health(503, Duration::from_secs(10)).0, 503);
    backend.restart().unwrap();
    assert_eq!(proxy.wait_health(200, Duration::from_secs(15)).0, 200);
    assert_serving(&proxy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_gib_result_streams_through_in_flat_memory() {
    let backend = one_backend();
    let db = testkit::unique_name("stream");
    let proxy = Proxy::start(&passthrough_rules(&backend, "bank", &db, ""));
    assert_serving(&proxy).await;
    let (_, peak_before) = proxy.memory_kib();
    let mut raw = RawClient::login(proxy.port, Some("bank"));
    // 1,048,576 rows of 1 KiB each: over 1 GiB of row data.
    let mut payload = vec![protocol::constants::com::QUERY];
    payload.extend_from_slice(b"SELECT REPEAT('x', 1024) FROM seq_1_to_1048576");
    raw.write_packet(0, &payload);
    let mut bytes = 0u64;
    let mut eofs = 0;
    while eofs < 2 {
        let (_, p) = raw.read_packet().expect("rows keep coming");
        bytes += p.len() as u64;
        if p[0] == 0xfe && p.len() < 9 {
            eofs += 1;
        }
        assert_ne!(p[0], 0xff, "{}", String::from_utf8_lossy(&p));
    }
    assert!(bytes > 1 << 30, "{bytes} bytes relayed");
    let (_, peak_after) = proxy.memory_kib();
    eprintln!("proxy peak RSS before {peak_before} KiB, after a 1 GiB result {peak_after} KiB");
    assert!(
        peak_after < peak_before + 32 * 1024,
        "peak RSS grew from {peak_before} KiB to {peak_after} KiB"
    );
    backend
        .sql(&format!("DROP DATABASE IF EXISTS `{db}`"))
        .unwrap();
}
