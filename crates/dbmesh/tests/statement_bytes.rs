//! Statement bytes pass the proxy's rewrites unchanged: binary and hex literals, latin1 and gbk
//! text, on every rewritten path (point routing, split multi-row INSERT, scatter UPDATE and
//! DELETE, generated ids, prepared statements), compared with what a direct connection to
//! MariaDB stores. One MariaDB; `t` and `g` sharded by `id mod 4` over ds_0/ds_1 × two
//! tables each, `g`'s ids filled by a segment sequence; the reference tables `r` and `rg` in
//! a database of their own, written directly.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{err_code, Proxy, RawClient, PASSWORD, USER};
use mysql_async::prelude::*;

const UTF8MB4: u8 = 45;
const LATIN1: u8 = 8;
const GBK: u8 = 28;
const BINARY: u8 = 63;
const SWE7: u8 = 10;

const TABLE: &str =
    "(id BIGINT PRIMARY KEY, b VARBINARY(1024), s VARCHAR(100) CHARACTER SET utf8mb4)";

struct Setup {
    backend: testkit::Backend,
    prefix: String,
    proxy: Proxy,
}

impl Setup {
    async fn new() -> Setup {
        let backend = common::one_backend();
        let prefix = testkit::unique_name("bytes");
        let mut rules = format!(
            "[proxy]\ncreate_databases = true\nmeta_data_source = \"meta\"\n\n\
             [[users]]\nname = \"{USER}\"\npassword = \"{PASSWORD}\"\n\n\
             [schema]\nname = \"bank\"\ndefault_data_source = \"ds_0\"\n\n"
        );
        for name in ["meta", "ds_0", "ds_1"] {
            rules += &format!(
                "[data_sources.{name}]\naddress = \"{}\"\nuser = \"{}\"\npassword = \"{}\"\n\
                 database = \"{prefix}_{name}\"\n\n",
                backend.address(),
                backend.user(),
                backend.password(),
            );
        }
        rules += "[tables.t]\nkind = \"sharded\"\ncolumn = \"id\"\nalgorithm = \"mod\"\n\
                  nodes = \"ds_{0..1}.t_{0..1}\"\n\n\
                  [tables.g]\nkind = \"sharded\"\ncolumn = \"id\"\nalgorithm = \"mod\"\n\
                  nodes = \"ds_{0..1}.g_{0..1}\"\n\n\
                  [sequences.g_seq]\nkind = \"segment\"\ntable = \"g\"\ncolumn = \"id\"\nstep = 100\n";
        let proxy = Proxy::start(&rules);
        let mut conn = proxy.conn(Some("bank")).await;
        conn.query_drop(format!("CREATE TABLE t {TABLE}"))
            .await
            .unwrap();
        conn.query_drop(format!("CREATE TABLE g {TABLE}"))
            .await
            .unwrap();
        backend
            .sql(&format!(
                "CREATE DATABASE `{prefix}_ref`; USE `{prefix}_ref`; \
                 CREATE TABLE r {TABLE}; CREATE TABLE rg {TABLE}"
            ))
            .unwrap();
        Setup {
            backend,
            prefix,
            proxy,
        }
    }

    /// A client of the proxy whose statements are in `collation`'s character set.
    fn proxied(&self, collation: u8) -> RawClient {
        RawClient::login_as(self.proxy.port, USER, PASSWORD, Some("bank"), collation)
    }

    /// A direct client of MariaDB, in the reference database.
    fn direct(&self, collation: u8) -> RawClient {
        RawClient::login_as(
            self.backend.port(),
            self.backend.user(),
            self.backend.password(),
            Some(&format!("{}_ref", self.prefix)),
            collation,
        )
    }

    /// `SELECT id, <what>` from table `table` of the reference database, or from every
    /// physical table of `table` (id order), as the mariadb client prints it.
    fn stored(&self, table: &str, what: &str) -> String {
        let sql = if table.starts_with('r') {
            format!(
                "SELECT id, {what} FROM `{}_ref`.{table} ORDER BY id",
                self.prefix
            )
        } else {
            let parts: Vec<String> = (0..4)
                .map(|node| {
                    format!(
                        "SELECT id, {what} FROM `{}_ds_{}`.{table}_{}",
                        self.prefix,
                        node / 2,
                        node % 2
                    )
                })
                .collect();
            format!("{} ORDER BY id", parts.join(" UNION ALL "))
        };
        self.backend.sql(&sql).unwrap()
    }

    /// The physical table holding the row of `table` with this id, found directly.
    fn node_of(&self, table: &str, id: u64) -> Vec<usize> {
        (0..4)
            .filter(|node| {
                let sql = format!(
                    "SELECT COUNT(*) FROM `{}_ds_{}`.{table}_{} WHERE id = {id}",
                    self.prefix,
                    node / 2,
                    node % 2
                );
                self.backend.sql(&sql).unwrap().trim() == "1"
            })
            .collect()
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        for db in ["meta", "ds_0", "ds_1", "ref"] {
            let _ = self
                .backend
                .sql(&format!("DROP DATABASE IF EXISTS `{}_{db}`", self.prefix));
        }
    }
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

/// OK, or the error code.
fn outcome(answer: &[u8]) -> Result<(), u16> {
    match answer[0] {
        0x00 => Ok(()),
        0xff => Err(err_code(answer).0),
        other => panic!("unexpected answer 0x{other:02x}"),
    }
}

/// COM_STMT_PREPARE, then COM_STMT_EXECUTE with integer parameters; the execute's answer.
fn prepare_execute(client: &mut RawClient, sql: &[u8], params: &[i64]) -> Vec<u8> {
    client.write_packet(0, &cat(&[&[0x16], sql]));
    let (_, first) = client.read_packet().expect("prepare answer");
    assert_eq!(
        first[0],
        0,
        "prepare failed: {:?}",
        String::from_utf8_lossy(&first)
    );
    let id = u32::from_le_bytes(first[1..5].try_into().unwrap());
    let columns = u16::from_le_bytes([first[5], first[6]]);
    let count = u16::from_le_bytes([first[7], first[8]]);
    assert_eq!(usize::from(count), params.len());
    // Definitions, each group ended by an EOF (this client does not set DEPRECATE_EOF).
    for group in [count, columns] {
        if group > 0 {
            for _ in 0..=group {
                client.read_packet().expect("definition");
            }
        }
    }
    let mut execute = vec![0x17];
    execute.extend_from_slice(&id.to_le_bytes());
    execute.push(0);
    execute.extend_from_slice(&1u32.to_le_bytes());
    if !params.is_empty() {
        execute.extend(std::iter::repeat_n(0, params.len().div_ceil(8)));
        execute.push(1);
        for _ in params {
            execute.extend_from_slice(&[0x08, 0x00]);
        }
        for p in params {
            execute.extend_from_slice(&p.to_le_bytes());
        }
    }
    client.write_packet(0, &execute);
    client.read_response()
}

/// The 253 bytes 0x01..=0xFF without the quote and the backslash.
fn all_plain_bytes() -> Vec<u8> {
    (1..=255u8)
        .filter(|b| !matches!(b, b'\'' | b'\\'))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_literals_reach_sharded_tables_byte_for_byte() {
    let s = Setup::new().await;
    let bytes = all_plain_bytes();
    let lit = cat(&[b"_binary'", &bytes, b"'"]);
    let mut c = s.proxied(UTF8MB4);
    let statements: Vec<Vec<u8>> = vec![
        // Point routing.
        cat(&[b"INSERT INTO t (id, b) VALUES (26, ", &lit, b")"]),
        // A multi-row INSERT split over the shards.
        cat(&[
            b"INSERT INTO t (id, b) VALUES (1, ",
            &lit,
            b"), (2, ",
            &lit,
            b"), (3, ",
            &lit,
            b")",
        ]),
        cat(&[b"INSERT INTO t (id, b) VALUES (4, 'x'), (5, 'x'), (6, 'x'), (7, 'x')"]),
        // A scatter UPDATE and a scatter DELETE that find the rows by the literal.
        cat(&[b"UPDATE t SET b = ", &lit, b" WHERE id IN (4, 5, 6)"]),
        cat(&[b"DELETE FROM t WHERE b = ", &lit, b" AND id IN (5, 6, 7)"]),
        // The session's own LAST_INSERT_ID() written into the text.
        cat(&[
            b"INSERT INTO t (id, b) VALUES (10, IF(LAST_INSERT_ID() >= 0, ",
            &lit,
            b", NULL))",
        ]),
        // Ids filled by a sequence.
        cat(&[b"INSERT INTO g (b) VALUES (", &lit, b"), (", &lit, b")"]),
    ];
    for sql in &statements {
        let answer = c.query(sql);
        assert_eq!(outcome(&answer), Ok(()), "{}", String::from_utf8_lossy(sql));
    }
    // EXPLAIN ROUTE shows the physical statement in the client's bytes: column count, two
    // definitions, EOF, the one target's row, EOF.
    c.write_packet(0, &cat(&[b"\x03EXPLAIN ROUTE ", &statements[0]]));
    let answer: Vec<Vec<u8>> = std::iter::from_fn(|| c.read_packet().map(|(_, p)| p))
        .take(6)
        .collect();
    let quoted = cat(&[b"'", &bytes, b"'"]);
    assert!(
        answer[4].windows(quoted.len()).any(|w| w == quoted),
        "{:?}",
        answer[4]
    );
    // Prepared: a fixed route, and one routed at each execution by its parameter.
    let fixed = cat(&[b"INSERT INTO t (id, b) VALUES (8, ", &lit, b")"]);
    assert_eq!(outcome(&prepare_execute(&mut c, &fixed, &[])), Ok(()));
    let routed = cat(&[b"INSERT INTO t (id, b) VALUES (?, ", &lit, b")"]);
    assert_eq!(outcome(&prepare_execute(&mut c, &routed, &[9])), Ok(()));

    let want = hex(&bytes);
    let rows = s.stored("t", "HEX(b)");
    let expected: String = [1, 2, 3, 4, 7, 8, 9, 10, 26]
        .iter()
        .map(|id| {
            let b = if *id == 7 {
                "78".to_string()
            } else {
                want.clone()
            };
            format!("{id}\t{b}\n")
        })
        .collect();
    assert_eq!(rows, expected, "253 bytes stored exactly on every path");
    let generated = s.stored("g", "HEX(b)");
    let values: Vec<&str> = generated
        .lines()
        .filter_map(|l| l.split('\t').nth(1))
        .collect();
    assert_eq!(values, [want.as_str(), want.as_str()]);
    assert_eq!(s.node_of("t", 26), vec![2], "26 mod 4 routes to ds_1.t_0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_is_read_in_the_connection_character_set() {
    let s = Setup::new().await;
    let cases: Vec<(u8, Option<&str>, Vec<u8>)> = vec![
        // latin1 from the handshake (PyMySQL `charset="latin1"`): é is E9.
        (
            LATIN1,
            None,
            b"INSERT INTO {t} (id, s) VALUES (11, 'caf\xe9')".to_vec(),
        ),
        // gbk by SET NAMES: D5 5C is one character whose second byte is a backslash, so it
        // escapes nothing; read as an escape the literal would swallow the next row.
        (
            UTF8MB4,
            Some("SET NAMES gbk"),
            b"INSERT INTO {t} (id, s) VALUES (12, '\xd5\x5c'), (13, 'x')".to_vec(),
        ),
        (
            UTF8MB4,
            Some("SET character_set_client = gbk"),
            b"UPDATE {t} SET s = '\xd5\x5c\xd5\x5c' WHERE id = 13 OR s = '\xd5\x5c'".to_vec(),
        ),
        // gbk from the handshake, big5 by SET CHARACTER SET: the same trail byte.
        (
            GBK,
            None,
            b"INSERT INTO {t} (id, s) VALUES (14, '\xb9\x5c'), (15, '\\'')".to_vec(),
        ),
        (
            UTF8MB4,
            Some("SET CHARACTER SET big5"),
            b"INSERT INTO {t} (id, s) VALUES (16, '\xa5\x5c'), (17, 'y')".to_vec(),
        ),
    ];
    for (collation, set, sql) in &cases {
        let mut via_proxy = s.proxied(*collation);
        let mut direct = s.direct(*collation);
        if let Some(set) = set {
            assert_eq!(outcome(&via_proxy.query(set)), Ok(()));
            assert_eq!(outcome(&direct.query(set)), Ok(()));
        }
        let spliced = |table: &str| {
            let at = sql.windows(3).position(|w| w == b"{t}").unwrap();
            cat(&[&sql[..at], table.as_bytes(), &sql[at + 3..]])
        };
        let proxied = outcome(&via_proxy.query(spliced("t")));
        let reference = outcome(&direct.query(spliced("r")));
        assert_eq!(proxied, reference, "{}", String::from_utf8_lossy(sql));
        assert_eq!(proxied, Ok(()));
    }
    assert_eq!(s.stored("t", "HEX(s)"), s.stored("r", "HEX(s)"));
    assert!(
        s.stored("t", "HEX(s)").contains("636166C3A9"),
        "café in utf8mb4"
    );
    // Each row is where its id says: the literal did not swallow the row after it.
    for id in 11..=17u64 {
        assert_eq!(s.node_of("t", id), vec![(id % 4) as usize], "row {id}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_character_set_the_proxy_cannot_read_is_refused_by_name() {
    let s = Setup::new().await;
    // At login…
    let (_, answer) = RawClient::try_login(s.proxy.port, USER, PASSWORD, None, SWE7);
    let error = protocol::ServerError::decode(&answer).expect("an error");
    assert_eq!((error.code, error.sqlstate_str()), (1235, "42000"));
    assert!(error.message.contains("swe7"), "{}", error.message);
    // …and by SET, before the statement runs: the session goes on in its character set.
    let mut conn = s.proxy.conn(Some("bank")).await;
    for sql in [
        "SET NAMES swe7",
        "SET NAMES DEFAULT",
        "SET character_set_client = @cs",
    ] {
        let err = conn.query_drop(sql).await.unwrap_err();
        assert_eq!(common::server_code(err).0, 1235, "{sql}");
    }
    let cs: String = conn
        .query_first("SELECT @@character_set_client")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(cs, "utf8mb4");
}

/// A small seeded generator (xorshift64*), so failures repeat.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn bytes(&mut self, gbk_trail_backslashes: bool) -> Vec<u8> {
        let len = (self.next() % 24) as usize;
        let mut out: Vec<u8> = (0..len).map(|_| self.next() as u8).collect();
        if gbk_trail_backslashes && len > 2 {
            let at = (self.next() as usize) % (len - 1);
            out[at] = 0x81 + (self.next() % 0x7e) as u8;
            out[at + 1] = b'\\';
        }
        out
    }
}

/// `bytes` inside quotes, escaped as the client library does for `collation`'s character set:
/// a gbk character is copied whole (its 0x5C trail byte is no escape).
fn quoted(bytes: &[u8], collation: u8) -> Vec<u8> {
    let mut out = vec![b'\''];
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let next = bytes.get(i + 1).copied();
        let gbk_char = collation == GBK
            && (0x81..=0xfe).contains(&b)
            && next.is_some_and(|t| matches!(t, 0x40..=0x7e | 0x80..=0xfe));
        if gbk_char {
            out.extend_from_slice(&bytes[i..i + 2]);
            i += 2;
            continue;
        }
        match b {
            b'\'' | b'\\' => out.extend_from_slice(&[b'\\', b]),
            0 => out.extend_from_slice(b"\\0"),
            _ => out.push(b),
        }
        i += 1;
    }
    out.push(b'\'');
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_literals_store_what_a_direct_connection_stores() {
    let s = Setup::new().await;
    let mut rng = Rng(0x5eed_0021);
    let mut id = 100u64;
    for collation in [UTF8MB4, LATIN1, GBK, BINARY] {
        let mut via_proxy = s.proxied(collation);
        let mut direct = s.direct(collation);
        for case in 0..24 {
            let bytes = rng.bytes(collation == GBK);
            let hexed = hex(&bytes).into_bytes();
            let lit = match case % 4 {
                0 => cat(&[b"_binary", &quoted(&bytes, collation)]),
                1 => cat(&[b"X'", &hexed, b"'"]),
                2 if !bytes.is_empty() => cat(&[b"0x", &hexed]),
                _ => quoted(&bytes, collation),
            };
            let (a, b) = (
                id.to_string().into_bytes(),
                (id + 1).to_string().into_bytes(),
            );
            id += 2;
            // Two rows on two shards, then a scatter UPDATE and a scatter DELETE by the value.
            let statements = |table: &[u8]| -> Vec<Vec<u8>> {
                vec![
                    cat(&[
                        b"INSERT INTO ",
                        table,
                        b" (id, b) VALUES (",
                        &a,
                        b", ",
                        &lit,
                        b"), (",
                        &b,
                        b", ",
                        &lit,
                        b")",
                    ]),
                    cat(&[
                        b"UPDATE ",
                        table,
                        b" SET b = CONCAT(",
                        &lit,
                        b", 'u') WHERE id IN (",
                        &a,
                        b", ",
                        &b,
                        b")",
                    ]),
                    cat(&[
                        b"DELETE FROM ",
                        table,
                        b" WHERE b = CONCAT(",
                        &lit,
                        b", 'u') AND id = ",
                        &b,
                    ]),
                ]
            };
            for (p, d) in statements(b"t").iter().zip(statements(b"r")) {
                let proxied = outcome(&via_proxy.query(p));
                assert_eq!(
                    proxied,
                    outcome(&direct.query(&d)),
                    "{}",
                    String::from_utf8_lossy(p)
                );
            }
            // Prepared, routed at execution by its parameter.
            let prepared =
                |table: &[u8]| cat(&[b"INSERT INTO ", table, b" (id, b) VALUES (?, ", &lit, b")"]);
            let next = id as i64;
            id += 1;
            let proxied = outcome(&prepare_execute(&mut via_proxy, &prepared(b"t"), &[next]));
            let reference = outcome(&prepare_execute(&mut direct, &prepared(b"r"), &[next]));
            assert_eq!(proxied, reference, "{}", String::from_utf8_lossy(&lit));
        }
    }
    let stored = s.stored("t", "HEX(b)");
    let reference = s.stored("r", "HEX(b)");
    let differ: Vec<(&str, &str)> = stored
        .lines()
        .zip(reference.lines())
        .filter(|(a, b)| a != b)
        .collect();
    assert!(differ.is_empty(), "proxied vs direct: {differ:?}");
    assert_eq!(stored.lines().count(), reference.lines().count());
    assert!(stored.lines().count() > 150, "{stored}");
}
