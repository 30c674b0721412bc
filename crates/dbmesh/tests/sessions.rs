//! The proxy is the server its clients see: KILL and the process lists act on the proxy's own
//! sessions and never reach a backend, where the proxy's account sees (and may kill) every
//! connection of the server, other applications' included.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{direct, one_backend, passthrough_rules, server_code, Backend, Proxy, RawClient};
use mysql_async::prelude::*;
use mysql_async::{Row, Value};

/// A proxy over `backend` with proxy number 1 (so its session ids, from 2^24 on, are never a
/// fresh backend's thread ids), users `dbmesh` and `other`, and `ops` with the process
/// privilege.
fn proxy(backend: &Backend, physical: &str) -> Proxy {
    let rules = passthrough_rules(backend, "bank", physical, "number = 1")
        + "\n[[users]]\nname = \"ops\"\npassword = \"ops\"\nprocess = true\n";
    Proxy::start(&rules)
}

async fn login(proxy: &Proxy, user: &str, password: &str) -> mysql_async::Conn {
    mysql_async::Conn::new(
        proxy
            .opts(Some("bank"))
            .user(Some(user))
            .pass(Some(password)),
    )
    .await
    .expect("login through dbmesh")
}

/// Waits until the backend runs a statement starting with `prefix` (so a KILL sent now
/// finds it running).
async fn wait_running(watch: &mut mysql_async::Conn, prefix: &str) {
    let started = Instant::now();
    loop {
        let n: Option<u64> = watch
            .exec_first(
                "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO LIKE CONCAT(?, '%')",
                (prefix,),
            )
            .await
            .unwrap();
        if n > Some(0) {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{prefix} never ran"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every packet of one text-protocol response of a raw client, as one lossy string.
fn raw_response(raw: &mut RawClient) -> String {
    let mut all = Vec::new();
    let mut eofs = 0;
    loop {
        let (_, p) = raw.read_packet().expect("response packet");
        all.extend_from_slice(&p);
        if p[0] == 0xff || (all.len() == p.len() && p[0] == 0) {
            break;
        }
        if p[0] == 0xfe && p.len() < 9 {
            eofs += 1;
            if eofs == 2 {
                break;
            }
        }
    }
    String::from_utf8_lossy(&all).into_owned()
}

/// Every value of `rows` as text, for looking for what must not be there.
fn rows_text(rows: &[Row]) -> String {
    let mut out = String::new();
    for row in rows {
        for i in 0..row.len() {
            match row.as_ref(i) {
                Some(Value::Bytes(b)) => out += &String::from_utf8_lossy(b),
                Some(v) => out += &v.as_sql(true),
                None => {}
            }
            out.push('\t');
        }
        out.push('\n');
    }
    out
}

/// The process-list forms a client can send, in the text and the binary protocol.
const PROCESS_LISTS: [&str; 4] = [
    "SHOW PROCESSLIST",
    "SHOW FULL PROCESSLIST",
    "SELECT * FROM information_schema.PROCESSLIST",
    "SELECT ID, USER, INFO FROM information_schema.PROCESSLIST WHERE INFO IS NOT NULL",
];

/// A direct connection to the backend runs a statement while a proxy client sends every
/// process-list form and every KILL form at that connection's id: no answer shows the
/// backend's connections or statements, no KILL reaches the backend (the statement runs to
/// its end, the connection survives), and COM_PROCESS_KILL / COM_PROCESS_INFO do not either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_and_process_lists_never_reach_the_backend() {
    let backend = one_backend();
    let db = testkit::unique_name("nokill");
    let proxy = proxy(&backend, &db);
    let mut client = proxy.conn(Some("bank")).await;

    let mut victim = direct(&backend).await;
    let victim_id: u64 = victim
        .query_first("SELECT CONNECTION_ID()")
        .await
        .unwrap()
        .unwrap();
    let running = tokio::spawn(async move {
        let slept: Option<(String, u32)> = victim
            .query_first("SELECT 'secret-marker', SLEEP(2)")
            .await
            .unwrap();
        (victim, slept)
    });
    tokio::time::sleep(Duration::from_millis(200)).await;

    for sql in PROCESS_LISTS {
        let shown = match client.query::<Row, _>(sql).await {
            Ok(rows) => rows_text(&rows),
            Err(e) => format!("{:?}", server_code(e)),
        };
        let prepared = match client.exec::<Row, _, _>(sql, ()).await {
            Ok(rows) => rows_text(&rows),
            Err(e) => format!("{:?}", server_code(e)),
        };
        for answer in [shown, prepared] {
            assert!(!answer.contains("secret-marker"), "{sql}: {answer}");
            assert!(!answer.contains(backend.user()), "{sql}: {answer}");
        }
    }
    for sql in [
        format!("KILL {victim_id}"),
        format!("KILL QUERY {victim_id}"),
        format!("KILL HARD CONNECTION {victim_id}"),
    ] {
        let err = client.query_drop(&sql).await.unwrap_err();
        assert_eq!(server_code(err), (1094, "HY000".into()), "{sql}");
        let err = client.exec_drop(&sql, ()).await.unwrap_err();
        assert_eq!(server_code(err), (1295, "HY000".into()), "{sql}");
    }
    let err = client
        .query_drop(format!("/*!50000 KILL */ {victim_id}"))
        .await
        .unwrap_err();
    assert_eq!(server_code(err), (1235, "42000".into()));
    let mut raw = RawClient::login(proxy.port, Some("bank"));
    let mut kill = vec![protocol::constants::com::PROCESS_KILL];
    kill.extend_from_slice(&(victim_id as u32).to_le_bytes());
    raw.write_packet(0, &kill);
    let (_, answer) = raw.read_packet().expect("an answer to COM_PROCESS_KILL");
    assert_eq!(common::err_code(&answer), (1094, "HY000".into()));
    raw.write_packet(0, &[protocol::constants::com::PROCESS_INFO]);
    let listed = raw_response(&mut raw);
    assert!(!listed.contains("secret-marker"), "{listed}");
    assert!(listed.contains("Processlist"), "{listed}");

    let (mut victim, slept) = running.await.unwrap();
    assert_eq!(slept, Some(("secret-marker".into(), 0)), "not interrupted");
    let alive: Option<u32> = victim.query_first("SELECT 1").await.unwrap();
    assert_eq!(alive, Some(1));
    let _ = backend.sql(&format!("DROP DATABASE IF EXISTS `{db}`"));
}

/// Two users of the proxy cannot see each other's statements through any process-list form;
/// a user with the process privilege sees everyone's. Session ids carry the proxy's number,
/// and KILL follows MariaDB's permissions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_see_only_their_own_sessions_unless_they_have_the_process_privilege() {
    let backend = one_backend();
    let db = testkit::unique_name("plist");
    let proxy = proxy(&backend, &db);
    let mut mine = login(&proxy, "dbmesh", "dbmesh").await;
    let mut theirs = login(&proxy, "other", "secret2").await;
    let mut ops = login(&proxy, "ops", "ops").await;
    assert_eq!(mine.id() >> 24, 1, "proxy number 1 in the high bits");
    assert_ne!(mine.id(), theirs.id());
    let their_id = theirs.id();
    let running = tokio::spawn(async move {
        let _: Vec<Row> = theirs
            .query("SELECT 'secret-of-other', SLEEP(1)")
            .await
            .unwrap();
        theirs
    });
    let mut watch = direct(&backend).await;
    wait_running(&mut watch, "SELECT 'secret-of-other'").await;

    for sql in PROCESS_LISTS {
        let rows: Vec<Row> = mine.query(sql).await.unwrap();
        let text = rows_text(&rows);
        assert!(!text.contains("secret-of-other"), "{sql}: {text}");
        assert!(!text.contains("other"), "{sql}: {text}");
        assert!(!text.contains(backend.user()), "{sql}: {text}");
    }
    let own: Vec<(u64, String, String)> = mine
        .query("SELECT ID, USER, COMMAND FROM information_schema.PROCESSLIST")
        .await
        .unwrap();
    assert_eq!(
        own,
        [(u64::from(mine.id()), "dbmesh".into(), "Query".into())]
    );
    let full: Vec<Row> = mine.query("SHOW FULL PROCESSLIST").await.unwrap();
    assert_eq!(full.len(), 1);
    assert_eq!(
        full[0].get::<String, _>("Info").unwrap(),
        "SHOW FULL PROCESSLIST"
    );

    let seen: Vec<(u64, String, String)> = ops
        .query(
            "SELECT ID, USER, INFO FROM information_schema.PROCESSLIST \
             WHERE INFO LIKE '%secret-of-other%'",
        )
        .await
        .unwrap();
    assert!(
        seen.iter()
            .any(|(id, user, _)| *id == u64::from(their_id) && user == "other"),
        "{seen:?}"
    );
    let shown: Vec<Row> = ops.query("SHOW PROCESSLIST").await.unwrap();
    assert_eq!(shown.len(), 3, "ops sees every session");

    let err = mine
        .query_drop(format!("KILL {their_id}"))
        .await
        .unwrap_err();
    assert_eq!(server_code(err), (1095, "HY000".into()));
    let err = mine.query_drop("KILL 16777215").await.unwrap_err();
    assert_eq!(server_code(err), (1094, "HY000".into()));
    let mut theirs = running.await.unwrap();
    theirs.query_drop("SELECT 1").await.unwrap();
    let _ = backend.sql(&format!("DROP DATABASE IF EXISTS `{db}`"));
}

/// KILL QUERY of a proxy session running `SELECT SLEEP(5)` interrupts it on the backend at
/// once (1317) and the session goes on; KILL CONNECTION and COM_PROCESS_KILL end the
/// session, and nothing of theirs keeps running on the backend.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_interrupts_a_proxy_sessions_statement_on_the_backend() {
    let backend = one_backend();
    let db = testkit::unique_name("killq");
    let proxy = proxy(&backend, &db);
    let mut killer = proxy.conn(Some("bank")).await;
    let mut watch = direct(&backend).await;

    let mut target = proxy.conn(Some("bank")).await;
    let id = target.id();
    let started = Instant::now();
    let running = tokio::spawn(async move {
        let outcome = target.query_drop("SELECT SLEEP(5)").await;
        (target, outcome, started.elapsed())
    });
    wait_running(&mut watch, "SELECT SLEEP(5)").await;
    killer.query_drop(format!("KILL QUERY {id}")).await.unwrap();
    let (mut target, outcome, took) = running.await.unwrap();
    assert_eq!(server_code(outcome.unwrap_err()), (1317, "70100".into()));
    assert!(took < Duration::from_secs(3), "interrupted after {took:?}");
    let one: Option<u32> = target.query_first("SELECT 1").await.unwrap();
    assert_eq!(one, Some(1), "KILL QUERY leaves the session");

    let running = tokio::spawn(async move {
        let outcome = target.query_drop("SELECT SLEEP(5.5)").await;
        (target, outcome)
    });
    wait_running(&mut watch, "SELECT SLEEP(5.5)").await;
    killer.query_drop(format!("KILL {id}")).await.unwrap();
    let (mut target, outcome) = running.await.unwrap();
    outcome.unwrap_err();
    target.query_drop("SELECT 1").await.unwrap_err();

    let idle = proxy.conn(Some("bank")).await;
    let mut raw = RawClient::login(proxy.port, Some("bank"));
    let mut kill = vec![protocol::constants::com::PROCESS_KILL];
    kill.extend_from_slice(&idle.id().to_le_bytes());
    raw.write_packet(0, &kill);
    let (_, answer) = raw.read_packet().expect("an answer to COM_PROCESS_KILL");
    assert_eq!(answer[0], 0, "OK");
    let mut idle = idle;
    let err = idle.query_drop("SELECT 1").await.unwrap_err();
    assert!(
        matches!(&err, mysql_async::Error::Server(e) if e.code == 1927)
            || !matches!(err, mysql_async::Error::Server(_)),
        "{err:?}"
    );

    let sleeping: Option<u64> = watch
        .query_first(
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO LIKE 'SELECT SLEEP%'",
        )
        .await
        .unwrap();
    assert_eq!(sleeping, Some(0));
    let _ = backend.sql(&format!("DROP DATABASE IF EXISTS `{db}`"));
}

/// CONNECTION_ID(), USER(), SESSION_USER(), SYSTEM_USER(), CURRENT_USER() and @@port are the
/// proxy's, alone and inside larger expressions, in both protocols: two sessions sharing the
/// one backend connection of a pool of 1 each get their own id, never the backend's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_functions_answer_the_proxy_session() {
    let backend = one_backend();
    let db = testkit::unique_name("ident");
    let rules = passthrough_rules(&backend, "bank", &db, "number = 1")
        + "\n[data_sources.main.pool]\nmax = 1\n";
    let proxy = Proxy::start(&rules);
    let mut a = proxy.conn(Some("bank")).await;
    let mut b = login(&proxy, "other", "secret2").await;
    let sql = "SELECT CONNECTION_ID(), CONNECTION_ID() + 1, USER(), SESSION_USER(), \
               SYSTEM_USER(), CURRENT_USER(), CONCAT(CURRENT_USER, '!'), @@port, @@global.port";
    type Identity = (u64, u64, String, String, String, String, String, u16, u16);
    for (conn, user) in [(&mut a, "dbmesh"), (&mut b, "other")] {
        let id = u64::from(conn.id());
        let want: Identity = (
            id,
            id + 1,
            format!("{user}@127.0.0.1"),
            format!("{user}@127.0.0.1"),
            format!("{user}@127.0.0.1"),
            format!("{user}@%"),
            format!("{user}@%!"),
            proxy.port,
            proxy.port,
        );
        let text: Identity = conn.query_first(sql).await.unwrap().unwrap();
        assert_eq!(text, want, "text protocol");
        let binary: Identity = conn.exec_first(sql, ()).await.unwrap().unwrap();
        assert_eq!(binary, want, "binary protocol");
        let rows: Vec<Row> = conn.query("SELECT CONNECTION_ID(), USER()").await.unwrap();
        let names: Vec<String> = rows[0]
            .columns_ref()
            .iter()
            .map(|c| c.name_str().into_owned())
            .collect();
        assert_eq!(names, ["CONNECTION_ID()", "USER()"]);
        let mine: Option<u64> = conn
            .query_first(
                "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID = CONNECTION_ID()",
            )
            .await
            .unwrap();
        assert_eq!(mine, Some(1), "a session finds itself in the process list");
    }
    let _ = backend.sql(&format!("DROP DATABASE IF EXISTS `{db}`"));
}

/// The values the session answers itself carry the metadata of the functions they stand for
/// (type, display length, signedness), in a statement the proxy rewrites, as the server
/// would give them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_values_have_the_functions_own_metadata() {
    let backend = one_backend();
    let db = testkit::unique_name("valuetypes");
    let proxy = Proxy::start(&passthrough_rules(&backend, "bank", &db, "number = 1"));
    let mut through = proxy.conn(Some("bank")).await;
    let mut server = direct(&backend).await;
    let sql = "SELECT CONNECTION_ID(), LAST_INSERT_ID() + 0, LAST_INSERT_ID(), ROW_COUNT(), \
               FOUND_ROWS()";
    let mut metadata = Vec::new();
    for conn in [&mut through, &mut server] {
        conn.query_drop("SELECT 1").await.unwrap();
        let result = conn.query_iter(sql).await.unwrap();
        let columns: Vec<_> = result
            .columns_ref()
            .iter()
            .map(|c| {
                let unsigned = c
                    .flags()
                    .contains(mysql_async::consts::ColumnFlags::UNSIGNED_FLAG);
                (
                    c.name_str().into_owned(),
                    c.column_type(),
                    c.column_length(),
                    unsigned,
                )
            })
            .collect();
        result.drop_result().await.unwrap();
        metadata.push(columns);
    }
    assert_eq!(metadata[0], metadata[1], "proxy, then server");
    let _ = backend.sql(&format!("DROP DATABASE IF EXISTS `{db}`"));
}
