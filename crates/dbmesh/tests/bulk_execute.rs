//! COM_STMT_BULK_EXECUTE built by hand: rows of a sharded INSERT on every shard in one
//! request, ids a sequence fills and LAST_INSERT_ID as for a multi-row INSERT, an UPDATE run
//! row by row as MariaDB runs it, and every
//! malformed or unsupported request answered with an error packet (MariaDB's code where
//! MariaDB refuses it too) on a connection that goes on serving. The npm `mariadb` driver's
//! `batch()` compared with MariaDB is in `client_matrix.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{err_code, four_data_sources, Proxy, RawClient};
use mysql_async::prelude::*;
use protocol::constants::{caps, column_type as ty, com, extended_caps};
use protocol::packets::OkPacket;

/// A bulk request for statement `id` with `flags` and parameter types `types`, then `rows`.
fn bulk(id: u32, flags: u16, types: &[u8], rows: &[u8]) -> Vec<u8> {
    let mut p = vec![com::STMT_BULK_EXECUTE];
    p.extend_from_slice(&id.to_le_bytes());
    p.extend_from_slice(&flags.to_le_bytes());
    for &t in types {
        p.extend_from_slice(&[t, 0]);
    }
    p.extend_from_slice(rows);
    p
}

/// One row of (BIGINT id, VARCHAR v), `v` NULL when `None`.
fn row(id: i64, v: Option<&[u8]>) -> Vec<u8> {
    let mut r = vec![0];
    r.extend_from_slice(&id.to_le_bytes());
    match v {
        Some(v) => {
            r.extend_from_slice(&[0, v.len() as u8]);
            r.extend_from_slice(v);
        }
        None => r.push(1),
    }
    r
}

/// Sends `packet` and reads the one packet that answers it.
fn answer(raw: &mut RawClient, packet: &[u8]) -> Vec<u8> {
    raw.write_packet(0, packet);
    raw.read_packet().expect("an answer").1
}

/// The one value of a one-column, one-row text result.
fn scalar(raw: &mut RawClient, sql: &str) -> String {
    let mut packet = vec![com::QUERY];
    packet.extend_from_slice(sql.as_bytes());
    raw.write_packet(0, &packet);
    let (_, count) = raw.read_packet().unwrap();
    assert_eq!(count, [1], "{sql}: {count:?}");
    raw.read_packet().unwrap(); // the column
    raw.read_packet().unwrap(); // EOF
    let (_, row) = raw.read_packet().unwrap();
    assert_eq!(raw.read_packet().unwrap().1[0], 0xfe, "{sql}: one row");
    let len = usize::from(row[0]);
    String::from_utf8(row[1..1 + len].to_vec()).unwrap()
}

#[test]
fn the_greeting_announces_bulk_operations_as_mariadb_does() {
    let servers = testkit::backends(1).expect("a MariaDB server");
    let db = testkit::unique_name("bulk_greeting");
    let proxy = Proxy::start(&common::passthrough_rules(&servers[0], "bank", &db, ""));
    let (_, greeting) = RawClient::connect(proxy.port);
    assert_eq!(
        greeting.capabilities & caps::LONG_PASSWORD,
        0,
        "CLIENT_MYSQL is off"
    );
    assert_ne!(
        greeting.extended_capabilities & extended_caps::STMT_BULK_OPERATIONS,
        0
    );
    servers[0]
        .sql(&format!("DROP DATABASE IF EXISTS `{db}`"))
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_requests_run_as_one_statement_and_bad_ones_get_error_packets() {
    let servers = testkit::backends(2).expect("two MariaDB servers");
    let prefix = testkit::unique_name("bulk");
    let dbs: Vec<String> = (0..4).map(|i| format!("{prefix}_{i}")).collect();
    let rules = four_data_sources(&servers, "bank", &dbs).replacen(
        "create_databases = true\n",
        "create_databases = true\nmeta_data_source = \"ds_0\"\n",
        1,
    ) + "[tables.t]\nkind = \"sharded\"\ncolumn = \"id\"\nalgorithm = \"mod\"\n\
         nodes = \"ds_{0..3}.t\"\n\n\
         [tables.g]\nkind = \"sharded\"\ncolumn = \"id\"\nalgorithm = \"mod\"\n\
         nodes = \"ds_{0..3}.g\"\n\n\
         [sequences.g_seq]\nkind = \"segment\"\ntable = \"g\"\ncolumn = \"id\"\nstep = 100\n";
    let proxy = Proxy::start(&rules);
    let mut raw = RawClient::login(proxy.port, Some("bank"));
    for ddl in [
        "CREATE TABLE t (id BIGINT PRIMARY KEY, v VARBINARY(10))",
        "CREATE TABLE g (id BIGINT PRIMARY KEY, v VARBINARY(10))",
    ] {
        assert_eq!(raw.query(ddl)[0], 0, "{ddl}");
    }
    let mut conn = proxy.conn(Some("bank")).await;

    // Eight rows, two per shard, NULLs and bytes that are not UTF-8 among them: one OK.
    let insert = raw.prepare("INSERT INTO t (id, v) VALUES (?, ?)").unwrap();
    let types = [ty::LONGLONG, ty::VAR_STRING];
    let rows: Vec<u8> = (1..=8)
        .flat_map(|id| row(id, (id % 3 != 0).then_some(&[0xff, 0x00, id as u8][..])))
        .collect();
    let ok = answer(&mut raw, &bulk(insert, 128, &types, &rows));
    assert_eq!(OkPacket::decode(&ok).unwrap().affected_rows, 8);
    let stored: Vec<(i64, Option<Vec<u8>>)> =
        conn.query("SELECT id, v FROM t ORDER BY id").await.unwrap();
    let want: Vec<(i64, Option<Vec<u8>>)> = (1..=8)
        .map(|id| (id, (id % 3 != 0).then(|| vec![0xff, 0x00, id as u8])))
        .collect();
    assert_eq!(stored, want);
    for (i, db) in dbs.iter().enumerate() {
        let count = servers[i / 2]
            .sql(&format!("SELECT COUNT(*) FROM `{db}`.t"))
            .unwrap();
        assert_eq!(count.trim(), "2", "rows on ds_{i}");
    }

    // Types bound by the previous request serve one that sends none. A duplicate key on one
    // shard leaves none of the request's rows on any shard.
    let rows: Vec<u8> = [row(20, None), row(21, None), row(2, None), row(23, None)].concat();
    let dup = answer(&mut raw, &bulk(insert, 0, &[], &rows));
    assert_eq!(err_code(&dup), (1062, "23000".into()));
    let count: i64 = conn
        .query_first("SELECT COUNT(*) FROM t")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(count, 8);

    // Requests MariaDB refuses get its error, the others a clean 1235; the connection goes on
    // and nothing is stored.
    let select = raw.prepare("SELECT v FROM t WHERE id = ?").unwrap();
    let scatter = raw.prepare("UPDATE t SET v = ? WHERE v = ?").unwrap();
    let returning = raw
        .prepare("INSERT INTO t (id, v) VALUES (?, ?) RETURNING id")
        .unwrap();
    let none = raw.prepare("DO 1").unwrap();
    let one = row(30, None);
    let cases: Vec<(&str, Vec<u8>, (u16, &str))> = vec![
        ("no rows", bulk(insert, 128, &types, &[]), (1210, "HY000")),
        (
            "a cut value",
            bulk(insert, 128, &types, &[0, 5, 0]),
            (1210, "HY000"),
        ),
        (
            "a cut row",
            bulk(insert, 128, &types, &[1]),
            (1210, "HY000"),
        ),
        (
            "an unknown indicator",
            bulk(insert, 128, &types, &[1, 9]),
            (1210, "HY000"),
        ),
        (
            "cut types",
            bulk(insert, 128, &[ty::LONGLONG], &[]),
            (1835, "HY000"),
        ),
        (
            "a cut header",
            vec![com::STMT_BULK_EXECUTE, 1, 0],
            (1835, "HY000"),
        ),
        (
            "per-row results",
            bulk(insert, 192, &types, &one),
            (1295, "HY000"),
        ),
        ("no parameters", bulk(none, 128, &[], &[1]), (1295, "HY000")),
        (
            "an unknown statement",
            bulk(999, 128, &types, &one),
            (1243, "HY000"),
        ),
        (
            "the DEFAULT indicator",
            bulk(insert, 128, &types, &[1, 2]),
            (1235, "42000"),
        ),
        (
            "an UPDATE of rows on every shard",
            bulk(
                scatter,
                128,
                &[ty::VAR_STRING, ty::VAR_STRING],
                &[1, 1, 1, 1],
            ),
            (1235, "42000"),
        ),
        (
            "RETURNING",
            bulk(returning, 128, &types, &one),
            (1235, "42000"),
        ),
        (
            "a SELECT",
            bulk(select, 128, &[ty::LONGLONG], &[1]),
            (1295, "HY000"),
        ),
    ];
    for (what, packet, (code, state)) in cases {
        let err = answer(&mut raw, &packet);
        assert_eq!(err_code(&err), (code, state.to_string()), "{what}");
        assert_ne!(raw.query("SELECT 1")[0], 0xff, "after {what}");
    }
    let count: i64 = conn
        .query_first("SELECT COUNT(*) FROM t")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(count, 8);

    // An UPDATE runs once per row, each row routed by its id, each row a statement of its
    // own as on MariaDB: a value too long in the second row stops the batch there, the first
    // row (on another shard) stays updated.
    let update = raw.prepare("UPDATE t SET v = ? WHERE id = ?").unwrap();
    let set = |v: &[u8], id: i64| {
        let mut r = vec![0, v.len() as u8];
        r.extend_from_slice(v);
        r.push(0);
        r.extend_from_slice(&id.to_le_bytes());
        r
    };
    let update_types = [ty::VAR_STRING, ty::LONGLONG];
    let too_long = [set(b"x", 1), set(b"0123456789a", 2)].concat();
    let err = answer(&mut raw, &bulk(update, 128, &update_types, &too_long));
    assert_eq!(err_code(&err), (1406, "22001".into()));
    let first: Option<Vec<u8>> = conn
        .query_first("SELECT v FROM t WHERE id = 1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first, Some(b"x".to_vec()));
    let rows = [set(b"u", 1), set(b"u", 2), set(b"u", 99), set(b"w", 1)].concat();
    let ok = answer(&mut raw, &bulk(update, 128, &update_types, &rows));
    assert_eq!(
        OkPacket::decode(&ok).unwrap().affected_rows,
        3,
        "rows 1, 2, then 1 again"
    );
    let updated: Vec<(i64, Option<Vec<u8>>)> = conn
        .query("SELECT id, v FROM t WHERE id <= 3 ORDER BY id")
        .await
        .unwrap();
    assert_eq!(
        updated,
        vec![
            (1, Some(b"w".to_vec())),
            (2, Some(b"u".to_vec())),
            (3, None)
        ]
    );

    // Ids a sequence fills, on every shard; the OK and LAST_INSERT_ID() give the first, as
    // for a multi-row INSERT.
    let filled = raw.prepare("INSERT INTO g (v) VALUES (?)").unwrap();
    let rows: Vec<u8> = (0..8u8).flat_map(|i| [0, 1, b'a' + i]).collect();
    let ok = OkPacket::decode(&answer(
        &mut raw,
        &bulk(filled, 128, &[ty::VAR_STRING], &rows),
    ))
    .unwrap();
    assert_eq!(ok.affected_rows, 8);
    let ids: Vec<(u64, Vec<u8>)> = conn.query("SELECT id, v FROM g ORDER BY id").await.unwrap();
    assert_eq!(ids.len(), 8);
    assert_eq!(
        ids[0].0, ok.last_insert_id,
        "the OK's last insert id is the first id"
    );
    let values: Vec<Vec<u8>> = ids.iter().map(|(_, v)| v.clone()).collect();
    let want: Vec<Vec<u8>> = (0..8u8).map(|i| vec![b'a' + i]).collect();
    assert_eq!(values, want, "ids follow the rows' order");
    let shards: std::collections::BTreeSet<u64> = ids.iter().map(|(id, _)| id % 4).collect();
    assert_eq!(shards.len(), 4, "rows on every shard: {ids:?}");
    assert_eq!(
        scalar(&mut raw, "SELECT LAST_INSERT_ID()"),
        ok.last_insert_id.to_string()
    );
    drop(conn);
    for (i, db) in dbs.iter().enumerate() {
        servers[i / 2]
            .sql(&format!("DROP DATABASE IF EXISTS `{db}`"))
            .unwrap();
    }
}
