//! The executor against a real MariaDB, writing to an in-memory client: plans routed by the
//! real router run on two data sources (two databases of one server, two tables each), and
//! what reaches the client is read back packet by packet.

use std::path::Path;
use std::sync::Arc;

use executor::{
    Cancel, Client, ClientState, Executor, Flow, Request, Snapshot, TransactionStatement,
};
use protocol::buf::Reader;
use protocol::framing::PacketConn;
use protocol::packets::OkPacket;
use protocol::ServerError;
use tokio::io::DuplexStream;

/// The client end the executor writes to; the test reads the other end.
struct MemoryClient {
    packets: PacketConn<DuplexStream>,
    errors: Vec<u16>,
}

impl Client for MemoryClient {
    type Stream = DuplexStream;

    fn packets(&mut self) -> &mut PacketConn<DuplexStream> {
        &mut self.packets
    }

    fn deprecate_eof(&self) -> bool {
        true
    }

    fn send_error(&mut self, err: &ServerError) {
        self.errors.push(err.code);
        self.packets.write_with(|b| err.encode(b));
    }

    fn count_error(&mut self, code: u16) {
        self.errors.push(code);
    }

    fn broadcast_divergence(&mut self, _table: &str) {}

    fn backend_cancelled(&mut self, _reason: executor::CancelReason, _statements: u64) {}

    fn rows_moved(&mut self, _rows: u64) {}

    fn merged(&mut self, _kind: executor::MergeKind) {}
}

/// What one answer was, as the client reads it.
#[derive(Debug, PartialEq)]
enum Answer {
    Ok { affected_rows: u64 },
    Rows(Vec<Vec<Option<String>>>),
    Error(u16),
}

/// Reads one answer (text protocol, DEPRECATE_EOF) from the client's end.
async fn read_answer(conn: &mut PacketConn<DuplexStream>) -> Answer {
    let first = conn.read_packet(usize::MAX).await.expect("answer");
    match first[0] {
        0x00 => Answer::Ok {
            affected_rows: OkPacket::decode(&first).expect("OK").affected_rows,
        },
        0xff => Answer::Error(ServerError::decode(&first).expect("ERR").code),
        _ => {
            let columns = Reader::new(&first).lenenc_int().expect("column count") as usize;
            for _ in 0..columns {
                conn.read_packet(usize::MAX).await.expect("column");
            }
            let mut rows = Vec::new();
            loop {
                let packet = conn.read_packet(usize::MAX).await.expect("row");
                if packet[0] == 0xfe && packet.len() < 0xff_ffff {
                    return Answer::Rows(rows);
                }
                if packet[0] == 0xff {
                    return Answer::Error(ServerError::decode(&packet).expect("ERR").code);
                }
                let mut r = Reader::new(&packet);
                rows.push(
                    (0..columns)
                        .map(|_| {
                            r.lenenc_bytes_or_null()
                                .expect("value")
                                .map(|v| String::from_utf8_lossy(v).into_owned())
                        })
                        .collect(),
                );
            }
        }
    }
}

struct Fixture {
    snapshot: Snapshot,
    exec: Executor,
    client: MemoryClient,
    reader: PacketConn<DuplexStream>,
    _backends: Vec<testkit::Backend>,
}

impl Fixture {
    /// Two data sources (databases `<db>_0`, `<db>_1` on one server), table `t` sharded by
    /// `id` mod 4 over `t_0`..`t_1` on each, holding ids 1..=8.
    fn new() -> Fixture {
        let backends = testkit::backends(1).expect("a MariaDB");
        let db = testkit::unique_name("exec");
        let mut setup = String::new();
        for ds in 0..2 {
            setup.push_str(&format!("CREATE DATABASE {db}_{ds};"));
            for table in 0..2 {
                setup.push_str(&format!(
                    "CREATE TABLE {db}_{ds}.t_{table} (id INT PRIMARY KEY, v INT);"
                ));
            }
        }
        for id in 1..=8 {
            // mod 4: data source id % 4 / 2, table id % 2.
            let (ds, table) = (id % 4 / 2, id % 2);
            setup.push_str(&format!(
                "INSERT INTO {db}_{ds}.t_{table} VALUES ({id}, {});",
                id * 10
            ));
        }
        backends[0].sql(&setup).expect("setup");
        let address = backends[0].address();
        let rules = format!(
            "[[users]]\nname = \"u\"\npassword = \"p\"\n\n[schema]\nname = \"app\"\ndefault_data_source = \"ds_0\"\n\n\
             [data_sources.ds_0]\naddress = \"{address}\"\nuser = \"root\"\ndatabase = \"{db}_0\"\n\n\
             [data_sources.ds_1]\naddress = \"{address}\"\nuser = \"root\"\ndatabase = \"{db}_1\"\n\n\
             [tables.t]\nkind = \"sharded\"\ncolumn = \"id\"\nalgorithm = \"mod\"\n\
             nodes = \"ds_{{0..1}}.t_{{0..1}}\"\n"
        );
        let rules = rules::parse_str(&rules, Path::new("executor-test.toml")).expect("rules");
        let snapshot = Snapshot::build(rules, None);
        let state = ClientState {
            database: Some("app".into()),
            charset: "utf8mb4",
            multi_statements: false,
        };
        let exec = Executor::new(1, false, state, Arc::new(Cancel::default()));
        let (ours, theirs) = tokio::io::duplex(1 << 20);
        Fixture {
            snapshot,
            exec,
            client: MemoryClient {
                packets: PacketConn::new(ours),
                errors: Vec::new(),
            },
            reader: PacketConn::new(theirs),
            _backends: backends,
        }
    }

    /// Routes and runs `sql` as COM_QUERY; the answer the client got.
    async fn query(&mut self, sql: &str) -> Answer {
        let plan = self.snapshot.router.route(sql, &[]).expect("routed");
        let mut packet = vec![protocol::constants::com::QUERY];
        packet.extend_from_slice(sql.as_bytes());
        let request = Request::Text {
            original: &packet,
            text: sql,
        };
        let flow = match &plan.kind {
            router::StatementKind::Session(router::SessionStatement::Begin) => {
                self.exec
                    .transaction_statement(
                        &mut self.client,
                        &self.snapshot,
                        TransactionStatement::Begin,
                        &packet,
                        sql,
                    )
                    .await
            }
            router::StatementKind::Session(
                ending @ (router::SessionStatement::Commit | router::SessionStatement::Rollback),
            ) => {
                let statement = if *ending == router::SessionStatement::Commit {
                    TransactionStatement::Commit
                } else {
                    TransactionStatement::Rollback
                };
                self.exec
                    .transaction_statement(
                        &mut self.client,
                        &self.snapshot,
                        statement,
                        &packet,
                        sql,
                    )
                    .await
            }
            _ => {
                self.exec
                    .run_plan(&mut self.client, &self.snapshot, &plan, request)
                    .await
            }
        };
        assert_eq!(flow, Flow::Continue, "{sql}");
        let answer = read_answer(&mut self.reader).await;
        self.exec.settle();
        answer
    }
}

fn ids(answer: Answer) -> Vec<String> {
    match answer {
        Answer::Rows(rows) => rows
            .into_iter()
            .map(|r| r[0].clone().unwrap_or_default())
            .collect(),
        other => panic!("not rows: {other:?}"),
    }
}

#[tokio::test]
async fn runs_each_kind_of_plan_and_gives_connections_back() {
    let mut f = Fixture::new();
    // One target, relayed as it arrives.
    assert_eq!(ids(f.query("SELECT id FROM t WHERE id = 6").await), ["6"]);
    // Merged across every shard, in order, with the limit applied.
    assert_eq!(
        ids(f.query("SELECT id FROM t ORDER BY id DESC LIMIT 3").await),
        ["8", "7", "6"]
    );
    // Concatenated: every row once, whatever the order.
    let mut all = ids(f.query("SELECT id FROM t").await);
    all.sort();
    assert_eq!(all, ["1", "2", "3", "4", "5", "6", "7", "8"]);
    // Affected rows summed over the four tables.
    assert_eq!(
        f.query("UPDATE t SET v = v + 1 WHERE id > 2").await,
        Answer::Ok { affected_rows: 6 }
    );
    assert_eq!(
        ids(f.query("SELECT SUM(v) FROM t").await),
        [(10 * 36 + 6).to_string()]
    );
    // Nothing pins the session: no connection stays held.
    assert!(!f.exec.holds("ds_0") && !f.exec.holds("ds_1"));
    assert!(f.client.errors.is_empty(), "{:?}", f.client.errors);
}

#[tokio::test]
async fn a_transaction_spans_the_connections_it_touches_and_rolls_back_on_each() {
    let mut f = Fixture::new();
    assert!(matches!(f.query("BEGIN").await, Answer::Ok { .. }));
    // ids 9 and 10 land on different data sources (9 % 4 = 1: ds_0; 10 % 4 = 2: ds_1).
    assert_eq!(
        f.query("INSERT INTO t (id, v) VALUES (9, 90), (10, 100)")
            .await,
        Answer::Ok { affected_rows: 2 }
    );
    // The transaction pins both participants between statements.
    assert!(f.exec.holds("ds_0") && f.exec.holds("ds_1"));
    assert!(f.exec.in_transaction_now());
    assert_eq!(ids(f.query("SELECT COUNT(*) FROM t").await), ["10"]);
    assert!(matches!(f.query("ROLLBACK").await, Answer::Ok { .. }));
    assert!(!f.exec.in_transaction_now());
    assert!(!f.exec.holds("ds_0") && !f.exec.holds("ds_1"));
    assert_eq!(ids(f.query("SELECT COUNT(*) FROM t").await), ["8"]);
}

#[tokio::test]
async fn a_shard_error_is_the_answer_and_the_session_goes_on() {
    let mut f = Fixture::new();
    assert_eq!(
        f.query("SELECT nothing FROM t ORDER BY id").await,
        Answer::Error(1054)
    );
    assert_eq!(ids(f.query("SELECT id FROM t WHERE id = 1").await), ["1"]);
}
