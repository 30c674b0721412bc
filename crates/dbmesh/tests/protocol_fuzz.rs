//! A protocol fuzz against a running proxy: several clients log in for real and then send
//! random well-framed commands (every command byte, garbage bodies, truncated bodies, length
//! fields claiming far more than the packet holds, statement ids that exist and that do not)
//! for a bounded time, while a well-behaved client keeps reading a sharded table. The proxy must
//! never exit, never leave a fuzzing client without an answer (each command is followed by a
//! marker query whose row must come back, or the connection must close), keep answering the
//! well-behaved client with the right rows, and give its memory back afterwards.
//!
//! The seed is printed; `DBMESH_FUZZ_SEED=<n>` repeats the commands (the interleaving of the
//! clients is the scheduler's). `DBMESH_FUZZ_SECS` sets the fuzzing time (default 5 s).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::ErrorKind;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Proxy, RawClient, PASSWORD, USER};
use mysql_async::prelude::*;
use protocol::constants::com;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const CLIENTS: u64 = 4;
/// Rows of the table the well-behaved client reads; the fuzzing clients never name it.
const WITNESS_ROWS: i64 = 40;
/// How long one fuzzed command and its marker may take before the client counts as stalled.
const ANSWER_WITHIN: Duration = Duration::from_secs(20);

/// A rule file over one backend: `t` and `witness` sharded by `id` (mod) over two data sources.
fn rules(backend: &testkit::Backend, dbs: &[String; 2]) -> String {
    let mut rules = format!(
        "[proxy]\ncreate_databases = true\nmax_allowed_packet = 4194304\n\n\
         [[users]]\nname = \"{USER}\"\npassword = \"{PASSWORD}\"\n\n\
         [schema]\nname = \"fuzz\"\ndefault_data_source = \"ds_0\"\n\n"
    );
    for (i, db) in dbs.iter().enumerate() {
        rules += &format!(
            "[data_sources.ds_{i}]\naddress = \"{}\"\nuser = \"{}\"\npassword = \"{}\"\ndatabase = \"{db}\"\n\n",
            backend.address(),
            backend.user(),
            backend.password()
        );
    }
    for table in ["t", "witness"] {
        rules += &format!(
            "[tables.{table}]\nkind = \"sharded\"\ncolumn = \"id\"\nalgorithm = \"mod\"\nnodes = \"ds_{{0..1}}\"\n\n"
        );
    }
    rules
}

/// Statements the fuzzing clients send (as written, mutated, or cut short).
const STATEMENTS: &[&str] = &[
    "SELECT id, v FROM t WHERE id = 3",
    "SELECT id, v FROM t ORDER BY v DESC LIMIT 5",
    "SELECT v, COUNT(*), SUM(id), AVG(id) FROM t GROUP BY v HAVING COUNT(*) > 0",
    "SELECT DISTINCT v FROM t WHERE id IN (1, 2, 3, 4)",
    "INSERT INTO t (id, v) VALUES (7, 'x'), (8, 'y')",
    "UPDATE t SET v = 'z' WHERE id = 7",
    "DELETE FROM t WHERE id = 8",
    "BEGIN",
    "COMMIT",
    "ROLLBACK",
    "SET NAMES gbk",
    "SET NAMES utf8mb4",
    "SET autocommit = 0",
    "SET autocommit = 1",
    "SELECT LAST_INSERT_ID(), ROW_COUNT(), FOUND_ROWS(), CONNECTION_ID()",
    "SHOW TABLES",
    "SHOW PROCESSLIST",
    "SELECT * FROM information_schema.TABLES WHERE TABLE_NAME = 't'",
    "EXPLAIN ROUTE SELECT * FROM t WHERE id = 5",
    "SELECT 1; SELECT 2",
];

/// Statements prepared on every fuzzing connection, so executes find real ids.
const PREPARED: &[&str] = &[
    "SELECT id, v FROM t WHERE id = ?",
    "INSERT INTO t (id, v) VALUES (?, ?)",
    "SELECT v, COUNT(*) FROM t WHERE id IN (?, ?) GROUP BY v",
];

struct Fuzzer {
    rng: StdRng,
    port: u16,
    client: Option<RawClient>,
    statement_ids: Vec<u32>,
    marker: u64,
    commands: u64,
    reconnects: u64,
}

impl Fuzzer {
    fn connect(&mut self) {
        let mut client = RawClient::login(self.port, Some("fuzz"));
        client
            .stream
            .set_read_timeout(Some(Duration::from_secs(1)))
            .unwrap();
        self.statement_ids.clear();
        for sql in PREPARED {
            let mut packet = vec![com::STMT_PREPARE];
            packet.extend_from_slice(sql.as_bytes());
            client.write_packet(0, &packet);
            let ok = read_patiently(&mut client).expect("prepare answer");
            assert_eq!(
                ok[0],
                0,
                "{sql} prepares: {:?}",
                String::from_utf8_lossy(&ok)
            );
            self.statement_ids
                .push(u32::from_le_bytes(ok[1..5].try_into().unwrap()));
            let columns = u16::from_le_bytes([ok[5], ok[6]]);
            let params = u16::from_le_bytes([ok[7], ok[8]]);
            // Parameter and column definitions, each list ended by an EOF.
            for count in [params, columns] {
                if count > 0 {
                    for _ in 0..=count {
                        read_patiently(&mut client).expect("definition");
                    }
                }
            }
        }
        self.client = Some(client);
    }

    /// One random command, then a marker query; reconnects when the proxy closed the
    /// connection, as it may for a malformed command.
    fn step(&mut self) {
        if self.client.is_none() {
            self.reconnects += 1;
            self.connect();
        }
        let packet = self.command();
        let client = self.client.as_mut().unwrap();
        self.commands += 1;
        let mut frame = (packet.len() as u32).to_le_bytes()[..3].to_vec();
        frame.push(0);
        frame.extend_from_slice(&packet);
        if client.write_raw(&frame).is_err() {
            self.client = None;
            return;
        }
        if !self.synced(&packet) {
            self.client = None;
        }
    }

    /// Sends marker queries until one's row comes back (true) or the connection closes
    /// (false). A command may leave the proxy waiting for more (an auth exchange after
    /// COM_CHANGE_USER), so the marker is sent again after each quiet second.
    fn synced(&mut self, sent: &[u8]) -> bool {
        let started = Instant::now();
        self.marker += 1;
        let value = format!("m{}", self.marker);
        let mut row = vec![value.len() as u8];
        row.extend_from_slice(value.as_bytes());
        let client = self.client.as_mut().unwrap();
        let query = format!("SELECT '{value}' AS marker");
        loop {
            let mut packet = vec![com::QUERY];
            packet.extend_from_slice(query.as_bytes());
            if client.write_packet_checked(&packet).is_err() {
                return false;
            }
            loop {
                match client.read_packet_or_timeout() {
                    Ok(Some(p)) if p == row => return true,
                    Ok(Some(_)) => {}
                    Ok(None) => return false,
                    Err(()) => break,
                }
                assert!(
                    started.elapsed() < ANSWER_WITHIN,
                    "no answer within {ANSWER_WITHIN:?} after {:02x?}",
                    &sent[..sent.len().min(64)]
                );
            }
            assert!(
                started.elapsed() < ANSWER_WITHIN,
                "no answer within {ANSWER_WITHIN:?} after {:02x?}",
                &sent[..sent.len().min(64)]
            );
        }
    }

    /// A random command packet.
    fn command(&mut self) -> Vec<u8> {
        let rng = &mut self.rng;
        let command = if rng.gen_bool(0.6) {
            *pick(
                rng,
                &[
                    com::QUERY,
                    com::STMT_PREPARE,
                    com::STMT_EXECUTE,
                    com::STMT_SEND_LONG_DATA,
                    com::STMT_CLOSE,
                    com::STMT_RESET,
                    com::STMT_FETCH,
                    com::FIELD_LIST,
                    com::INIT_DB,
                    com::SET_OPTION,
                    com::RESET_CONNECTION,
                    com::CHANGE_USER,
                    com::PROCESS_INFO,
                    com::PROCESS_KILL,
                    com::STATISTICS,
                    com::PING,
                ],
            )
        } else {
            rng.gen()
        };
        // COM_QUIT only ends the connection; it is sent now and then, not as often as others.
        let command = if command == com::QUIT && rng.gen_bool(0.8) {
            com::PING
        } else {
            command
        };
        let statement_id = match rng.gen_range(0..4) {
            0 => rng.gen(),
            1 => u32::MAX,
            _ => *pick(rng, &self.statement_ids),
        };
        let mut body = match command {
            com::QUERY | com::STMT_PREPARE => {
                let statement = *pick(rng, STATEMENTS);
                mutated(rng, statement.as_bytes())
            }
            com::STMT_EXECUTE => execute_body(rng, statement_id),
            com::STMT_SEND_LONG_DATA => {
                let mut b = statement_id.to_le_bytes().to_vec();
                b.extend_from_slice(&rng.gen_range(0u16..4).to_le_bytes());
                b.extend(std::iter::repeat_n(b'L', rng.gen_range(0..4096)));
                b
            }
            com::STMT_CLOSE | com::STMT_RESET => statement_id.to_le_bytes().to_vec(),
            com::STMT_FETCH => {
                let mut b = statement_id.to_le_bytes().to_vec();
                b.extend_from_slice(&rng.gen::<u32>().to_le_bytes());
                b
            }
            com::INIT_DB => mutated(rng, b"fuzz"),
            com::FIELD_LIST => mutated(rng, b"t\0%"),
            com::PROCESS_KILL => rng.gen::<u32>().to_le_bytes().to_vec(),
            com::SET_OPTION => rng.gen::<u16>().to_le_bytes().to_vec(),
            _ => garbage(rng, 64),
        };
        match rng.gen_range(0..10) {
            // Cut short anywhere.
            0 => body.truncate(rng.gen_range(0..=body.len())),
            // A length-encoded field claiming far more than follows.
            1 => {
                let at = rng.gen_range(0..=body.len());
                const CLAIMS: [&[u8]; 5] = [
                    &[0xfc, 0xff, 0xff],
                    &[0xfd, 0xff, 0xff, 0xff],
                    &[0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f],
                    &[0xfb],
                    &[0xff],
                ];
                let claim = *pick(rng, &CLAIMS);
                body.splice(at..at, claim.iter().copied());
            }
            // Garbage in place of the body.
            2 => body = garbage(rng, 512),
            // A large body (up to 1 MiB).
            3 if rng.gen_bool(0.1) => body.extend(std::iter::repeat_n(
                rng.gen::<u8>(),
                rng.gen_range(0..1 << 20),
            )),
            _ => {}
        }
        let mut packet = vec![command];
        packet.extend_from_slice(&body);
        packet
    }
}

/// A COM_STMT_EXECUTE body for a statement of up to three parameters, types bound or not.
fn execute_body(rng: &mut StdRng, statement_id: u32) -> Vec<u8> {
    let mut b = statement_id.to_le_bytes().to_vec();
    b.push(rng.gen_range(0..4)); // flags: cursor types
    b.extend_from_slice(&1u32.to_le_bytes());
    let params = rng.gen_range(0..=3);
    if params == 0 {
        return b;
    }
    b.push(rng.gen_range(0..8)); // NULL bitmap
    let bound = rng.gen_bool(0.8);
    b.push(u8::from(bound));
    let types: Vec<u8> = (0..params)
        .map(|_| {
            let any = rng.gen();
            *pick(
                rng,
                &[
                    0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x0a, 0x0b, 0x0c, 0xf6, 0xfc,
                    0xfd, 0xfe, any,
                ],
            )
        })
        .collect();
    if bound {
        for t in &types {
            b.push(*t);
            b.push(if rng.gen() { 0x80 } else { 0 });
        }
    }
    for _ in 0..params {
        match rng.gen_range(0..3) {
            0 => b.extend_from_slice(&rng.gen::<u64>().to_le_bytes()),
            1 => {
                let text = mutated(rng, b"12345");
                b.push(text.len() as u8);
                b.extend_from_slice(&text);
            }
            _ => b.extend(garbage(rng, 16)),
        }
    }
    b
}

fn pick<'a, T>(rng: &mut StdRng, from: &'a [T]) -> &'a T {
    &from[rng.gen_range(0..from.len())]
}

fn garbage(rng: &mut StdRng, max: usize) -> Vec<u8> {
    (0..rng.gen_range(0..=max)).map(|_| rng.gen()).collect()
}

/// `bytes` as written, or with a few bytes changed, inserted or removed.
fn mutated(rng: &mut StdRng, bytes: &[u8]) -> Vec<u8> {
    let mut out = bytes.to_vec();
    for _ in 0..rng.gen_range(0..4) {
        let at = rng.gen_range(0..=out.len());
        match rng.gen_range(0..3) {
            0 if at < out.len() => out[at] = rng.gen(),
            1 => out.insert(at, rng.gen()),
            _ if at < out.len() => {
                out.remove(at);
            }
            _ => {}
        }
    }
    out
}

/// The sum the well-behaved client reads (a merge across both data sources).
async fn witness_sum(conn: &mut mysql_async::Conn) -> mysql_async::Result<Option<i64>> {
    conn.query_first("SELECT SUM(v) FROM witness").await
}

/// A packet, waiting out quiet seconds (the proxy may be busy with another client's command).
fn read_patiently(client: &mut RawClient) -> Option<Vec<u8>> {
    let started = Instant::now();
    loop {
        match client.read_packet_or_timeout() {
            Ok(p) => return p,
            Err(()) if started.elapsed() < ANSWER_WITHIN => {}
            Err(()) => panic!("no answer within {ANSWER_WITHIN:?}"),
        }
    }
}

/// The raw client's reads and writes that tell a closed connection from a quiet one.
trait Patient {
    /// `Ok(Some(payload))`, `Ok(None)` when the connection is closed, `Err(())` after a quiet
    /// read timeout.
    fn read_packet_or_timeout(&mut self) -> Result<Option<Vec<u8>>, ()>;
    fn write_packet_checked(&mut self, payload: &[u8]) -> std::io::Result<()>;
}

impl Patient for RawClient {
    fn read_packet_or_timeout(&mut self) -> Result<Option<Vec<u8>>, ()> {
        use std::io::Read;
        let mut header = [0u8; 4];
        // A timeout before the first byte is quiet; once a packet has started, it is read
        // whole (the proxy writes packets whole).
        match self.stream.read(&mut header[..1]) {
            Ok(0) => return Ok(None),
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Err(())
            }
            Err(_) => return Ok(None),
        }
        if self.stream.read_exact(&mut header[1..]).is_err() {
            return Ok(None);
        }
        let len = u32::from_le_bytes([header[0], header[1], header[2], 0]) as usize;
        let mut payload = vec![0u8; len];
        if self.stream.read_exact(&mut payload).is_err() {
            return Ok(None);
        }
        Ok(Some(payload))
    }

    fn write_packet_checked(&mut self, payload: &[u8]) -> std::io::Result<()> {
        let mut frame = (payload.len() as u32).to_le_bytes()[..3].to_vec();
        frame.push(0);
        frame.extend_from_slice(payload);
        self.write_raw(&frame)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_commands_from_logged_in_clients_never_take_the_proxy_down() {
    // Fuzzing clients write the same rows, some in transactions they leave open: a lock wait
    // ends in a second instead of MariaDB's 50, well within a client's answer time.
    let backend = testkit::backends_with(
        1,
        &testkit::MariaDb::builder().arg("--innodb-lock-wait-timeout=1"),
    )
    .expect("start a MariaDB backend")
    .remove(0);
    let prefix = testkit::unique_name("pfuzz");
    let dbs = [format!("{prefix}_0"), format!("{prefix}_1")];
    let mut proxy = Proxy::start(&rules(&backend, &dbs));
    for db in &dbs {
        backend
            .sql(&format!(
                "USE `{db}`; CREATE TABLE t (id BIGINT PRIMARY KEY, v VARCHAR(64));\
                 CREATE TABLE witness (id BIGINT PRIMARY KEY, v BIGINT NOT NULL)"
            ))
            .unwrap();
    }
    let mut conn = proxy.conn(Some("fuzz")).await;
    let rows: Vec<String> = (1..=WITNESS_ROWS)
        .map(|i| format!("({i}, {})", i * 10))
        .collect();
    conn.query_drop(format!(
        "INSERT INTO witness (id, v) VALUES {}",
        rows.join(", ")
    ))
    .await
    .unwrap();
    let expected_sum = (1..=WITNESS_ROWS).map(|i| i * 10).sum::<i64>();

    let seed = std::env::var("DBMESH_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::thread_rng().gen::<u64>());
    let seconds: u64 = std::env::var("DBMESH_FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    println!("protocol fuzz seed: {seed} (DBMESH_FUZZ_SEED={seed} repeats it), {seconds} s");

    // Warm up: the proxy's pools and buffers reach their working size before the baseline.
    for _ in 0..3 {
        let mut warm = Fuzzer {
            rng: StdRng::seed_from_u64(seed),
            port: proxy.port,
            client: None,
            statement_ids: Vec::new(),
            marker: 0,
            commands: 0,
            reconnects: 0,
        };
        warm.connect();
        warm.synced(b"warm-up");
    }
    assert_eq!(witness_sum(&mut conn).await.unwrap(), Some(expected_sum));
    let (baseline_kib, _) = proxy.memory_kib();

    let stop = Arc::new(AtomicBool::new(false));
    let commands = Arc::new(AtomicU64::new(0));
    let fuzzers: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let stop = stop.clone();
            let commands = commands.clone();
            let port = proxy.port;
            std::thread::spawn(move || {
                let mut f = Fuzzer {
                    rng: StdRng::seed_from_u64(seed.wrapping_add(i)),
                    port,
                    client: None,
                    statement_ids: Vec::new(),
                    marker: 0,
                    commands: 0,
                    reconnects: 0,
                };
                while !stop.load(Ordering::Relaxed) {
                    f.step();
                }
                commands.fetch_add(f.commands, Ordering::Relaxed);
                f.reconnects
            })
        })
        .collect();

    // The well-behaved client: right rows, in time, all along.
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut slowest = Duration::ZERO;
    let mut reads = 0;
    while Instant::now() < deadline {
        let started = Instant::now();
        let sum = tokio::time::timeout(Duration::from_secs(10), witness_sum(&mut conn))
            .await
            .expect("the well-behaved client waited over 10 s")
            .unwrap();
        assert_eq!(
            sum,
            Some(expected_sum),
            "the well-behaved client's rows changed"
        );
        slowest = slowest.max(started.elapsed());
        reads += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut reconnects = 0;
    for f in fuzzers {
        match f.join() {
            Ok(n) => reconnects += n,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
    proxy.assert_alive();
    let commands = commands.load(Ordering::Relaxed);
    println!(
        "{commands} commands from {CLIENTS} clients ({reconnects} connections closed by the proxy); \
         the well-behaved client read {reads} times, slowest {slowest:?}"
    );
    assert!(commands > 0);

    // Every fuzzing connection is gone: the memory they used is given back.
    let settled_by = Instant::now() + Duration::from_secs(10);
    let mut rss = proxy.memory_kib().0;
    while rss > baseline_kib + 32 * 1024 && Instant::now() < settled_by {
        tokio::time::sleep(Duration::from_millis(200)).await;
        rss = proxy.memory_kib().0;
    }
    println!("proxy RSS: {baseline_kib} KiB before, {rss} KiB after");
    assert!(
        rss <= baseline_kib + 32 * 1024,
        "the proxy kept {} KiB after the fuzzing clients left",
        rss - baseline_kib
    );
    assert_eq!(witness_sum(&mut conn).await.unwrap(), Some(expected_sum));
    conn.disconnect().await.unwrap();
    for db in &dbs {
        let _ = backend.sql(&format!("DROP DATABASE IF EXISTS `{db}`"));
    }
}
