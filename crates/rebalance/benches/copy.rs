//! The copy and the verification against `mariadb-dump | mariadb` for the same rows: a
//! fixture source mariadbd (binlog on) holds `REBALANCE_BENCH_ROWS` UIDs (default 200,000)
//! in one table per data source (ds_0 slices 00-49, ds_1 50-99); slices 30-44 (15%) move to
//! a second fixture server. Prints rows/s of the dbmesh copy (no rate limit, 1,000-row
//! chunks), of `mariadb-dump --single-transaction --where=... | mariadb` of the same rows
//! (one dump per source table, run one after the other), and of the verification.
//!
//! `cargo bench -p rebalance --bench copy`

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use rebalance::{CopyProgress, MoveRequest, MoveSettings, Mover, RebalanceMetrics, VerifySettings};
use testkit::MariaDb;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let rows: u64 = std::env::var("REBALANCE_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let source = MariaDb::builder().row_binlog(1).start().expect("source");
    let destination = MariaDb::builder()
        .row_binlog(2)
        .start()
        .expect("destination");
    let table = "(uid BIGINT PRIMARY KEY, bal BIGINT NOT NULL, note VARCHAR(60), \
                 at DATETIME(3) NOT NULL, amount DECIMAL(12,2) NOT NULL)";
    source
        .sql(&format!(
            "CREATE DATABASE meta; CREATE DATABASE b0; CREATE DATABASE b1; CREATE DATABASE seq;
             CREATE TABLE b0.acct {table}; CREATE TABLE b1.acct {table};
             INSERT INTO b0.acct SELECT seq, seq * 2, CONCAT('a note of about thirty chars ', seq),
               '2024-02-29 12:00:00.125', seq / 100 FROM seq.seq_0_to_{last} WHERE seq % 100 < 50;
             INSERT INTO b1.acct SELECT seq, seq * 2, CONCAT('a note of about thirty chars ', seq),
               '2024-02-29 12:00:00.125', seq / 100 FROM seq.seq_0_to_{last} WHERE seq % 100 >= 50",
            last = rows - 1
        ))
        .expect("rows");
    let ds = |name: &str, server: &MariaDb, db: &str| {
        format!(
            "[data_sources.{name}]\naddress = \"{}\"\nuser = \"root\"\npassword = \"\"\n\
             database = \"{db}\"\ntls = \"disabled\"\n\n",
            server.address()
        )
    };
    let text = format!(
        "[proxy]\nmeta_data_source = \"meta\"\n\n[[users]]\nname = \"app\"\npassword = \"x\"\n\n\
         [schema]\nname = \"bank\"\ndefault_data_source = \"ds_0\"\n\n{}{}{}{}\
         [tables.acct]\nkind = \"sharded\"\ncolumn = \"uid\"\nalgorithm = \"uid_slice\"\n\
         nodes = [\"ds_0\", \"ds_1\", \"ds_4\"]\nslices = {{ \"00-49\" = \"ds_0\", \"50-99\" = \"ds_1\" }}\n",
        ds("meta", &source, "meta"),
        ds("ds_0", &source, "b0"),
        ds("ds_1", &source, "b1"),
        ds("ds_4", &destination, "b4"),
    );
    let rules = rules::parse_str(&text, Path::new("bench.toml")).expect("rules");
    let moving = rows * 15 / 100;

    // mariadb-dump | mariadb of the same rows, into another database of the destination.
    destination
        .sql("CREATE DATABASE dump")
        .expect("dump database");
    let started = Instant::now();
    for db in ["b0", "b1"] {
        let mut dump = Command::new("mariadb-dump")
            .args([
                "--single-transaction",
                "--no-create-info",
                "--skip-triggers",
                "-h127.0.0.1",
                "-uroot",
                &format!("-P{}", source.port()),
                "--where=uid % 100 BETWEEN 30 AND 44",
                db,
                "acct",
            ])
            .stdout(Stdio::piped())
            .spawn()
            .expect("mariadb-dump");
        if db == "b0" {
            let ddl = source.sql("SHOW CREATE TABLE b0.acct").expect("ddl");
            let create = ddl
                .split_once('\t')
                .map_or("", |(_, c)| c)
                .replace("\\n", " ");
            destination
                .sql(&format!("USE dump; {create}"))
                .expect("dump table");
        }
        let load = Command::new("mariadb")
            .args([
                "-h127.0.0.1",
                "-uroot",
                &format!("-P{}", destination.port()),
                "dump",
            ])
            .stdin(dump.stdout.take().expect("dump output"))
            .status()
            .expect("mariadb");
        assert!(load.success());
        assert!(dump.wait().expect("mariadb-dump ends").success());
    }
    let dump_seconds = started.elapsed().as_secs_f64();
    let dumped = destination
        .sql("SELECT COUNT(*) FROM dump.acct")
        .expect("count");
    assert_eq!(dumped.trim(), moving.to_string());

    let request = MoveRequest {
        slices: "30-44".parse().expect("slices"),
        destination: "ds_4".into(),
        tables: Vec::new(),
    };
    let mut mover = Mover::begin(rules.clone(), &request, "bench", MoveSettings::default())
        .await
        .expect("move");
    let progress = Arc::new(CopyProgress::default());
    let started = Instant::now();
    mover.copy(progress).await.expect("copy");
    let copy_seconds = started.elapsed().as_secs_f64();
    let copied = destination
        .sql("SELECT COUNT(*) FROM b4.acct")
        .expect("count");
    assert_eq!(copied.trim(), moving.to_string());

    let report = rebalance::verify(
        &rules,
        &mover.plan,
        &VerifySettings::default(),
        &RebalanceMetrics::new(),
    )
    .await
    .expect("verify");
    assert!(report.is_equal());
    println!(
        "{moving} moving rows of {rows}:\n  \
         dbmesh copy:            {copy_seconds:.2} s, {:.0} rows/s\n  \
         mariadb-dump | mariadb: {dump_seconds:.2} s, {:.0} rows/s\n  \
         dbmesh verify:          {:.2} s, {:.0} rows/s",
        moving as f64 / copy_seconds,
        moving as f64 / dump_seconds,
        report.elapsed.as_secs_f64(),
        report.rows_per_second()
    );
}
