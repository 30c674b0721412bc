//! Pass-through behaviour through the real proxy binary against a real MariaDB, driven by
//! `mysql_async` in both the text and the binary (prepared) protocol.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{one_backend, passthrough_rules, server_code, Proxy};
use mysql_async::prelude::*;
use mysql_async::{Row, Value};

const TYPES_DDL: &str = "CREATE TABLE types (
    id INT PRIMARY KEY,
    ti TINYINT, tu TINYINT UNSIGNED, si SMALLINT, mi MEDIUMINT, i INT, iu INT UNSIGNED,
    bi BIGINT, bu BIGINT UNSIGNED,
    de DECIMAL(20,6), f FLOAT, d DOUBLE,
    dt DATE, dtm DATETIME(6), tm TIME(3), ts TIMESTAMP(6) NULL, y YEAR,
    c CHAR(10), vc VARCHAR(100), tx TEXT, bl BLOB, vb VARBINARY(16),
    j JSON, e ENUM('a','b','c'), st SET('x','y','z'), b BIT(10), n INT NULL
) DEFAULT CHARSET=utf8mb4";

const TYPES_ROW: &str = "INSERT INTO types VALUES (1,
    -128, 255, -32768, -8388608, -2147483648, 4294967295,
    -9223372036854775808, 18446744073709551615,
    -12345678901234.123456, 1.5, -2.2250738585072014e-308,
    '2024-02-29', '2024-12-31 23:59:59.999999', '-838:59:59.000', '2038-01-19 03:14:07.499999', 2155,
    'fixed', '中文 😀 emoji', REPEAT('长文本', 1000), 0x00FF10FE7F80, 0x000102,
    '{\"k\": [1, 2, \"三\"]}', 'b', 'x,z', b'1010101010', NULL)";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_column_types_round_trip_in_text_and_binary_protocol() {
    let backend = one_backend();
    let db = testkit::unique_name("types");
    let proxy = Proxy::start(&passthrough_rules(&backend, "bank", &db, ""));
    let mut conn = proxy.conn(Some("bank")).await;
    conn.query_drop(TYPES_DDL).await.unwrap();
    conn.query_drop(TYPES_ROW).await.unwrap();

    // Reference: the same row read directly from the backend with the mariadb CLI.
    let direct = backend
        .sql(&format!("SELECT * FROM `{db}`.types"))
        .expect("direct read");
    let direct: Vec<&str> = direct.trim_end_matches('\n').split('\t').collect();

    let text: Row = conn
        .query_first("SELECT * FROM types")
        .await
        .unwrap()
        .unwrap();
    let binary: Row = conn
        .exec_first("SELECT * FROM types WHERE id = ?", (1,))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(text.len(), direct.len());
    for i in 0..text.len() {
        let col = text.columns_ref()[i].name_str().to_string();
        let t = as_text(&text[i]);
        let expected = if direct[i] == "NULL" {
            None
        } else {
            Some(direct[i].to_string())
        };
        if col != "bl" && col != "vb" && col != "b" && col != "tx" {
            assert_eq!(t, expected, "text protocol, column {col}");
        }
        // Binary protocol values decode to typed values; they must denote the same thing.
        assert_eq!(
            normalise(&binary[i]),
            normalise(&text[i]),
            "binary vs text, column {col}"
        );
    }
    let blob: Vec<u8> = text.get("bl").unwrap();
    assert_eq!(blob, vec![0x00, 0xFF, 0x10, 0xFE, 0x7F, 0x80]);
    let long_text: String = text.get("tx").unwrap();
    assert_eq!(long_text, "长文本".repeat(1000));

    // Prepared INSERT with typed parameters, read back both ways.
    let params: Vec<Value> = vec![
        Value::Int(2),
        Value::Int(-1),
        Value::UInt(200),
        Value::Int(-2),
        Value::Int(3),
        Value::Int(-4),
        Value::UInt(4_000_000_000),
        Value::Int(i64::MIN),
        Value::UInt(u64::MAX),
        Value::Bytes(b"3.141593".to_vec()),
        Value::Float(0.25),
        Value::Double(1e300),
        Value::Date(2000, 1, 2, 0, 0, 0, 0),
        Value::Date(2001, 2, 3, 4, 5, 6, 789_012),
        Value::Time(true, 1, 2, 3, 4, 500_000),
        Value::Date(2020, 5, 6, 7, 8, 9, 123_456),
        Value::Int(1999),
        Value::Bytes(b"c".to_vec()),
        Value::Bytes("ünï 😀".as_bytes().to_vec()),
        Value::Bytes(b"t".to_vec()),
        Value::Bytes(vec![0, 1, 2, 255]),
        Value::Bytes(vec![9]),
        Value::Bytes(b"[true, null]".to_vec()),
        Value::Bytes(b"c".to_vec()),
        Value::Bytes(b"y".to_vec()),
        Value::Bytes(vec![0b10, 0b1]),
        Value::NULL,
    ];
    let placeholders = vec!["?"; params.len()].join(",");
    conn.exec_drop(format!("INSERT INTO types VALUES ({placeholders})"), params)
        .await
        .unwrap();
    let text: Row = conn
        .query_first("SELECT * FROM types WHERE id = 2")
        .await
        .unwrap()
        .unwrap();
    let binary: Row = conn
        .exec_first("SELECT * FROM types WHERE id = ?", (2,))
        .await
        .unwrap()
        .unwrap();
    for i in 0..text.len() {
        assert_eq!(
            normalise(&binary[i]),
            normalise(&text[i]),
            "row 2 column {i}"
        );
    }
    assert_eq!(text.get::<String, _>("vc").unwrap(), "ünï 😀");
    assert_eq!(text.get::<u64, _>("bu").unwrap(), u64::MAX);
    assert_eq!(text.get::<Option<i32>, _>("n").unwrap(), None);
    conn.disconnect().await.unwrap();
    backend.sql(&format!("DROP DATABASE `{db}`")).unwrap();
}

fn as_text(v: &Value) -> Option<String> {
    match v {
        Value::NULL => None,
        Value::Bytes(b) => Some(String::from_utf8_lossy(b).into_owned()),
        other => Some(other.as_sql(true)),
    }
}

/// A protocol-independent rendering: text-protocol values are strings, binary ones typed
/// (temporal values with microseconds, so trailing fractional zeros are dropped on both sides).
fn normalise(v: &Value) -> String {
    let s = render(v);
    match s.rsplit_once('.') {
        Some((head, frac))
            if !frac.is_empty()
                && frac.bytes().all(|b| b.is_ascii_digit())
                && head.contains(':') =>
        {
            let frac = frac.trim_end_matches('0');
            if frac.is_empty() {
                head.to_string()
            } else {
                format!("{head}.{frac}")
            }
        }
        _ => s,
    }
}

fn render(v: &Value) -> String {
    match v {
        Value::NULL => "NULL".into(),
        Value::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
        Value::Int(i) => i.to_string(),
        Value::UInt(u) => u.to_string(),
        Value::Float(f) => f.to_string(),
        Value::Double(d) => format!("{d:e}"),
        Value::Date(y, mo, d, h, mi, s, us) => {
            if *h == 0 && *mi == 0 && *s == 0 && *us == 0 {
                format!("{y:04}-{mo:02}-{d:02}")
            } else {
                format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}.{us:06}")
            }
        }
        Value::Time(neg, d, h, mi, s, us) => {
            format!(
                "{}{:02}:{mi:02}:{s:02}.{us:06}",
                if *neg { "-" } else { "" },
                d * 24 + u32::from(*h)
            )
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_state_behaves_as_on_a_direct_connection() {
    let backend = one_backend();
    let db = testkit::unique_name("state");
    let proxy = Proxy::start(&passthrough_rules(&backend, "bank", &db, ""));
    let mut conn = proxy.conn(Some("bank")).await;

    // Logical schema.
    let current: Option<String> = conn
        .query_first("SELECT DATABASE()")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(current.as_deref(), Some("bank"));
    let dbs: Vec<String> = conn.query("SHOW DATABASES").await.unwrap();
    assert_eq!(
        dbs,
        vec!["bank".to_string(), "information_schema".to_string()]
    );
    let err = conn.query_drop("USE nope").await.unwrap_err();
    assert_eq!(server_code(err), (1049, "42000".into()));
    conn.query_drop("USE bank").await.unwrap();

    // Character set, sql_mode, time zone and user variables stick to the session.
    conn.query_drop("SET NAMES latin1").await.unwrap();
    let cs: String = conn
        .query_first("SELECT @@character_set_client")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(cs, "latin1");
    conn.query_drop("SET NAMES utf8mb4").await.unwrap();
    conn.query_drop("SET sql_mode = 'NO_BACKSLASH_ESCAPES'")
        .await
        .unwrap();
    let escaped: String = conn.query_first(r"SELECT 'a\nb'").await.unwrap().unwrap();
    assert_eq!(escaped, r"a\nb");
    conn.query_drop("SET time_zone = '+05:30'").await.unwrap();
    let tz: String = conn
        .query_first(
            "SELECT DATE_FORMAT(CONVERT_TZ('2024-01-01 00:00:00', '+00:00', @@time_zone), '%H:%i')",
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(tz, "05:30");
    conn.query_drop("SET @v = 41").await.unwrap();
    let v: i64 = conn.query_first("SELECT @v + 1").await.unwrap().unwrap();
    assert_eq!(v, 42);

    // Affected rows, LAST_INSERT_ID and warnings come through the OK packets.
    conn.query_drop("CREATE TABLE t (id INT AUTO_INCREMENT PRIMARY KEY, v INT)")
        .await
        .unwrap();
    conn.query_drop("INSERT INTO t (v) VALUES (1), (2), (3)")
        .await
        .unwrap();
    assert_eq!(conn.affected_rows(), 3);
    assert_eq!(conn.last_insert_id(), Some(1));
    let lid: u64 = conn
        .query_first("SELECT LAST_INSERT_ID()")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(lid, 1);
    conn.query_drop("UPDATE t SET v = v + 1 WHERE v >= 2")
        .await
        .unwrap();
    assert_eq!(conn.affected_rows(), 2);
    conn.query_drop("SET sql_mode = ''").await.unwrap();
    conn.query_drop("INSERT INTO t (v) VALUES ('12abc')")
        .await
        .unwrap();
    assert_eq!(conn.get_warnings(), 1);

    // Transactions: a rollback undoes, a commit keeps.
    conn.query_drop("BEGIN").await.unwrap();
    conn.query_drop("INSERT INTO t (v) VALUES (100)")
        .await
        .unwrap();
    let in_tx: i64 = conn
        .query_first("SELECT @@in_transaction")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(in_tx, 1);
    conn.query_drop("ROLLBACK").await.unwrap();
    let n: i64 = conn
        .query_first("SELECT COUNT(*) FROM t WHERE v = 100")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(n, 0);
    conn.query_drop("SET autocommit = 0").await.unwrap();
    conn.query_drop("INSERT INTO t (v) VALUES (200)")
        .await
        .unwrap();
    conn.query_drop("COMMIT").await.unwrap();
    conn.query_drop("SET autocommit = 1").await.unwrap();
    let n: i64 = conn
        .query_first("SELECT COUNT(*) FROM t WHERE v = 200")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(n, 1);

    // Multi-statements and multiple result sets.
    let mut result = conn
        .query_iter("SELECT 1; SELECT 2, 3; UPDATE t SET v = v")
        .await
        .unwrap();
    let first: Vec<i64> = result.collect().await.unwrap();
    let second: Vec<(i64, i64)> = result.collect().await.unwrap();
    drop(result);
    assert_eq!((first, second), (vec![1], vec![(2, 3)]));

    // Errors from the backend pass through with their code and SQLSTATE.
    let err = conn
        .query_drop("SELECT * FROM no_such_table")
        .await
        .unwrap_err();
    assert_eq!(server_code(err), (1146, "42S02".into()));
    let err = conn.query_drop("SELEC 1").await.unwrap_err();
    assert_eq!(server_code(err), (1064, "42000".into()));

    // COM_RESET_CONNECTION clears user variables; the session goes on.
    conn.reset().await.unwrap();
    let v: Option<i64> = conn.query_first("SELECT @v").await.unwrap().unwrap();
    assert_eq!(v, None);

    // COM_CHANGE_USER: another proxy user; a wrong password is refused with 1045.
    conn.change_user(
        mysql_async::ChangeUserOpts::default()
            .with_user(Some("other".into()))
            .with_pass(Some("secret2".into()))
            .with_db_name(Some("bank".into())),
    )
    .await
    .unwrap();
    let n: i64 = conn
        .query_first("SELECT COUNT(*) FROM t")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(n, 5);
    let bad = conn
        .change_user(
            mysql_async::ChangeUserOpts::default()
                .with_user(Some("other".into()))
                .with_pass(Some("wrong".into())),
        )
        .await
        .unwrap_err();
    assert_eq!(server_code(bad).0, 1045);
    backend.sql(&format!("DROP DATABASE `{db}`")).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_packets_of_16_mib_and_more_in_both_directions() {
    let backend = one_backend();
    backend
        .sql("SET GLOBAL max_allowed_packet = 67108864")
        .unwrap();
    let db = testkit::unique_name("big");
    let proxy = Proxy::start(&passthrough_rules(&backend, "bank", &db, ""));
    let mut conn = proxy.conn(Some("bank")).await;
    conn.query_drop("CREATE TABLE big (id INT PRIMARY KEY, b LONGBLOB)")
        .await
        .unwrap();
    for (id, len) in [(1, (1usize << 24) - 1), (2, 1 << 24), (3, 20 << 20)] {
        let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        conn.exec_drop("INSERT INTO big VALUES (?, ?)", (id, payload.clone()))
            .await
            .unwrap();
        let back: Vec<u8> = conn
            .exec_first("SELECT b FROM big WHERE id = ?", (id,))
            .await
            .unwrap()
            .unwrap();
        assert!(back == payload, "binary round trip of {len} bytes");
        let text: Vec<u8> = conn
            .query_first(format!("SELECT b FROM big WHERE id = {id}"))
            .await
            .unwrap()
            .unwrap();
        assert!(text == payload, "text round trip of {len} bytes");
    }
    backend.sql(&format!("DROP DATABASE `{db}`")).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn field_list_statistics_ping_init_db_and_set_option() {
    use protocol::constants::com;
    let backend = one_backend();
    let db = testkit::unique_name("cmds");
    let proxy = Proxy::start(&passthrough_rules(&backend, "bank", &db, ""));
    let mut conn = proxy.conn(Some("bank")).await;
    conn.query_drop("CREATE TABLE fl (id INT PRIMARY KEY, name VARCHAR(10))")
        .await
        .unwrap();
    conn.disconnect().await.unwrap();

    let mut raw = common::RawClient::login(proxy.port, Some("bank"));
    // COM_FIELD_LIST: one column definition per column, then EOF (this client lacks DEPRECATE_EOF).
    raw.write_packet(0, &[&[com::FIELD_LIST][..], b"fl\0"].concat());
    let mut names = Vec::new();
    loop {
        let (_, p) = raw.read_packet().unwrap();
        if p[0] == 0xfe {
            assert!(p.len() < 9, "a classic EOF");
            break;
        }
        names.push(protocol::resultset::ColumnDef::decode(&p).unwrap().name);
    }
    assert_eq!(names, vec!["id", "name"]);
    // COM_STATISTICS: one plain string.
    raw.write_packet(0, &[com::STATISTICS]);
    let (_, stats) = raw.read_packet().unwrap();
    assert!(
        String::from_utf8_lossy(&stats).starts_with("Uptime:"),
        "{stats:?}"
    );
    // COM_PING.
    raw.write_packet(0, &[com::PING]);
    assert_eq!(raw.read_packet().unwrap().1[0], 0x00);
    // COM_INIT_DB with an unknown and a known database.
    raw.write_packet(0, &[&[com::INIT_DB][..], b"nope"].concat());
    assert_eq!(
        common::err_code(&raw.read_packet().unwrap().1),
        (1049, "42000".into())
    );
    raw.write_packet(0, &[&[com::INIT_DB][..], b"bank"].concat());
    assert_eq!(raw.read_packet().unwrap().1[0], 0x00);
    // COM_SET_OPTION: multi-statements on, then a multi-statement query works; off, it fails.
    raw.write_packet(0, &[com::SET_OPTION, 0, 0]);
    assert_eq!(raw.read_packet().unwrap().1[0], 0xfe);
    raw.write_packet(0, &[&[com::QUERY][..], b"DO 1; DO 2"].concat());
    let (_, first) = raw.read_packet().unwrap();
    assert_eq!(first[0], 0x00);
    let (_, second) = raw.read_packet().unwrap();
    assert_eq!(second[0], 0x00, "the second statement's OK follows");
    raw.write_packet(0, &[com::SET_OPTION, 1, 0]);
    assert_eq!(raw.read_packet().unwrap().1[0], 0xfe);
    let err = raw.query("DO 1; DO 2");
    assert_eq!(common::err_code(&err).0, 1064);
    // COM_QUIT closes.
    raw.write_packet(0, &[com::QUIT]);
    assert!(raw.is_closed());
    backend.sql(&format!("DROP DATABASE `{db}`")).unwrap();
}

/// MariaDB's pipelined prepare-and-execute (npm `mariadb`, Connector/C's
/// `mariadb_stmt_execute_direct`): COM_STMT_EXECUTE with statement id 0xFFFFFFFF, sent before
/// the prepare's answer, runs the statement just prepared; after a failed prepare it fails
/// with 1243, as on MariaDB.
#[test]
fn execute_of_the_statement_just_prepared_by_id_ffffffff() {
    use protocol::constants::com;
    let backend = one_backend();
    let db = testkit::unique_name("direct");
    let proxy = Proxy::start(&passthrough_rules(&backend, "bank", &db, ""));
    let mut raw = common::RawClient::login(proxy.port, Some("bank"));
    let pipelined = |raw: &mut common::RawClient, sql: &str| {
        let mut both = Vec::new();
        for (seq, payload) in [
            (0u8, [&[com::STMT_PREPARE][..], sql.as_bytes()].concat()),
            (
                0u8,
                vec![com::STMT_EXECUTE, 0xff, 0xff, 0xff, 0xff, 0, 1, 0, 0, 0],
            ),
        ] {
            both.extend_from_slice(&(payload.len() as u32).to_le_bytes()[..3]);
            both.push(seq);
            both.extend_from_slice(&payload);
        }
        raw.write_raw(&both).unwrap();
    };
    for round in 0..2 {
        pipelined(&mut raw, "SELECT 41 + 1 AS n");
        // The prepare's answer: header, one column definition, EOF.
        let (_, header) = raw.read_packet().unwrap();
        assert_eq!(header[0], 0x00, "round {round}: {header:?}");
        assert_eq!(&header[5..9], &[1, 0, 0, 0], "one column, no parameter");
        raw.read_packet().unwrap();
        assert_eq!(raw.read_packet().unwrap().1[0], 0xfe);
        // The execute's answer: column count, definition, EOF, one binary row, EOF.
        let mut packets = Vec::new();
        while packets.len() < 5 {
            let (_, p) = raw.read_packet().unwrap();
            assert_ne!(p[0], 0xff, "round {round}: {}", String::from_utf8_lossy(&p));
            packets.push(p);
        }
        assert_eq!(packets[3][..3], [0x00, 0x00, 42], "the row holds 42");
    }
    pipelined(&mut raw, "SELECT * FROM no_such_table");
    assert_eq!(
        common::err_code(&raw.read_packet().unwrap().1),
        (1146, "42S02".into())
    );
    let (code, _) = common::err_code(&raw.read_packet().unwrap().1);
    assert_eq!(code, 1243);
    // The connection is in step: a query answers.
    assert_eq!(raw.query("DO 1")[0], 0x00);
    backend.sql(&format!("DROP DATABASE `{db}`")).unwrap();
}
