//! `dbmesh rebalance` as a DBA runs it: a move killed with SIGKILL while copying is refused
//! to another process until its lease lapses, then resumed without copying a finished chunk
//! again; SIGTERM during the catch-up saves the positions and exits 0; `verify` passes, and
//! fails naming the key of a row changed on the destination; a source without a binlog is
//! refused naming the setting.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use meta::moves;
use meta::Phase;
use testkit::MariaDb;

/// Generous: CI runs the suite on two loaded cores.
const EVENTUALLY: Duration = Duration::from_secs(60);

fn binlog_server(server_id: u32) -> MariaDb {
    MariaDb::builder()
        .row_binlog(server_id)
        .start()
        .expect("mariadbd starts")
}

struct Setup {
    meta: String,
    ds0: String,
    ds1: String,
    ds4: String,
    dir: tempfile::TempDir,
}

impl Setup {
    /// acct over ds_0 (slices 00-49) and ds_1 (50-99) on `source`, ds_4 on `destination`
    /// owning none; `rows` UIDs from 0.
    fn new(source: &MariaDb, destination: &MariaDb, rows: u64) -> Setup {
        let setup = Setup {
            meta: testkit::unique_name("rbc_meta"),
            ds0: testkit::unique_name("rbc_0"),
            ds1: testkit::unique_name("rbc_1"),
            ds4: testkit::unique_name("rbc_4"),
            dir: tempfile::tempdir().expect("temp dir"),
        };
        let table = "(uid BIGINT PRIMARY KEY, bal BIGINT NOT NULL, note VARCHAR(60))";
        source
            .sql(&format!(
                "CREATE DATABASE {meta}; CREATE DATABASE {d0}; CREATE DATABASE {d1}; CREATE DATABASE IF NOT EXISTS seq;
                 CREATE TABLE {d0}.acct {table}; CREATE TABLE {d1}.acct {table};
                 INSERT INTO {d0}.acct SELECT seq, seq * 2, CONCAT('row ', seq)
                   FROM seq.seq_0_to_{last} WHERE seq % 100 < 50;
                 INSERT INTO {d1}.acct SELECT seq, seq * 2, CONCAT('row ', seq)
                   FROM seq.seq_0_to_{last} WHERE seq % 100 >= 50",
                meta = setup.meta,
                d0 = setup.ds0,
                d1 = setup.ds1,
                last = rows - 1
            ))
            .expect("schema and rows");
        let ds = |name: &str, server: &MariaDb, db: &str| {
            format!(
                "[data_sources.{name}]\naddress = \"{}\"\nuser = \"root\"\npassword = \"\"\n\
                 database = \"{db}\"\ntls = \"disabled\"\n\n",
                server.address()
            )
        };
        let rules = format!(
            "[proxy]\nmeta_data_source = \"meta\"\n\n[[users]]\nname = \"app\"\npassword = \"x\"\n\n\
             [schema]\nname = \"bank\"\ndefault_data_source = \"ds_0\"\n\n{}{}{}{}\
             [tables.acct]\nkind = \"sharded\"\ncolumn = \"uid\"\nalgorithm = \"uid_slice\"\n\
             nodes = [\"ds_0\", \"ds_1\", \"ds_4\"]\nslices = {{ \"00-49\" = \"ds_0\", \"50-99\" = \"ds_1\" }}\n",
            ds("meta", source, &setup.meta),
            ds("ds_0", source, &setup.ds0),
            ds("ds_1", source, &setup.ds1),
            ds("ds_4", destination, &setup.ds4),
        );
        std::fs::write(setup.config(), rules).expect("write the rules");
        setup
    }

    fn config(&self) -> std::path::PathBuf {
        self.dir.path().join("rules.toml")
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_dbmesh"));
        command
            .arg("rebalance")
            .arg("--config")
            .arg(self.config())
            .args(args);
        command
    }

    fn spawn(&self, args: &[&str], log: &str) -> Child {
        let log = std::fs::File::create(self.dir.path().join(log)).expect("log file");
        self.command(args)
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("spawn dbmesh rebalance")
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run dbmesh rebalance")
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default()
    }

    fn meta(&self, server: &MariaDb) -> meta::Meta {
        let options = backend::ConnectOptions {
            found_rows: true,
            ..backend::ConnectOptions::plaintext(
                "meta",
                &server.address(),
                "root",
                "",
                Some(&self.meta),
            )
        };
        meta::Meta::with_options(options, Duration::from_secs(10))
    }
}

/// Waits until the current move satisfies `ok`.
async fn until_move(
    meta: &mut meta::Meta,
    what: &str,
    ok: impl Fn(&meta::MoveRecord) -> bool,
) -> meta::MoveRecord {
    let deadline = Instant::now() + EVENTUALLY;
    loop {
        if let Ok(Some(record)) = moves::current(meta).await {
            if ok(&record) {
                return record;
            }
        }
        assert!(Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_move_resumes_without_copying_a_chunk_twice() {
    let source = binlog_server(1);
    let destination = binlog_server(2);
    let setup = Setup::new(&source, &destination, 20_000);
    let mut meta = setup.meta(&source);
    let move_args = [
        "move",
        "--slices",
        "40-59",
        "--to",
        "ds_4",
        "--chunk-rows",
        "100",
        "--lease",
        "2",
    ];

    let mut first = setup.spawn(&[&move_args[..], &["--rate", "1500"]].concat(), "first.log");
    until_move(&mut meta, "the first run copies some chunks", |m| {
        m.nodes.iter().map(|n| n.chunks).sum::<u64>() >= 5
    })
    .await;
    first.kill().expect("kill -9");
    first.wait().expect("reaped");
    let killed_at = moves::current(&mut meta)
        .await
        .expect("read")
        .expect("the move");
    assert_eq!(killed_at.phase, Phase::Copying);
    // At 1,500 rows/s the 4,000 moving rows take seconds: killed mid-copy.
    assert!(
        killed_at.nodes.iter().any(|n| !n.done),
        "killed too late: {:?}",
        killed_at.nodes
    );

    // The dead process's lease still runs: another refuses, naming it. (On a machine slow
    // enough for the lease to lapse first, it takes the move over instead: stopped too.)
    let mut early = setup.spawn(&move_args, "early.log");
    let deadline = Instant::now() + Duration::from_secs(20);
    while early.try_wait().expect("poll").is_none() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    match early.try_wait().expect("poll") {
        Some(status) => {
            assert!(!status.success());
            assert!(
                setup.log("early.log").contains("is driven by"),
                "{}",
                setup.log("early.log")
            );
        }
        None => {
            early.kill().expect("kill the one that took over");
            early.wait().expect("reaped");
        }
    }
    tokio::time::sleep(Duration::from_millis(2500)).await;

    let mut second = setup.spawn(&move_args, "second.log");
    let caught_up = until_move(
        &mut meta,
        "the second run copies the rest and catches up",
        |m| {
            m.phase == Phase::CatchingUp
                && m.sources.iter().all(|s| !s.processed_position.is_empty())
        },
    )
    .await;
    assert_eq!(caught_up.id, killed_at.id, "the same move resumed");
    Command::new("kill")
        .args(["-TERM", &second.id().to_string()])
        .status()
        .expect("SIGTERM");
    let status = second.wait().expect("second run ends");
    assert!(status.success(), "{}", setup.log("second.log"));

    // Every chunk of every table was copied once: the chunks follow one another and their
    // rows add up to the moving rows, which are all on the destination.
    let chunks = moves::chunks(&mut meta, caught_up.id)
        .await
        .expect("chunks");
    let record = moves::get(&mut meta, caught_up.id)
        .await
        .expect("read")
        .expect("the move");
    for node in &record.nodes {
        let mine: Vec<_> = chunks
            .iter()
            .filter(|c| c.source_node == node.source_node)
            .collect();
        for pair in mine.windows(2) {
            assert_eq!(pair[0].seq + 1, pair[1].seq);
            assert_eq!(
                pair[1].after_key.as_deref(),
                Some(pair[0].last_key.as_str())
            );
        }
        assert_eq!(
            mine.iter().map(|c| c.rows).sum::<u64>(),
            2000,
            "{}",
            node.source_node
        );
        assert_eq!((node.rows_copied, node.rows_total), (2000, 2000));
        assert!(node.done);
    }
    assert!(
        record.driver_remaining.is_none(),
        "SIGTERM releases the lease"
    );
    let on_destination = destination
        .sql(&format!(
            "SELECT COUNT(*), SUM(bal) FROM {}.acct",
            setup.ds4
        ))
        .expect("count");
    let on_sources = source
        .sql(&format!(
            "SELECT COUNT(*), SUM(bal) FROM (SELECT * FROM {}.acct UNION ALL SELECT * FROM {}.acct) a \
             WHERE uid % 100 BETWEEN 40 AND 59",
            setup.ds0, setup.ds1
        ))
        .expect("count");
    assert_eq!(on_destination, on_sources);
    assert!(on_destination.starts_with("4000\t"), "{on_destination}");

    let status = setup.run(&["status"]);
    assert!(status.status.success(), "{}", text(&status));
    assert!(
        text(&status).contains("4000/4000 rows"),
        "{}",
        text(&status)
    );

    let verified = setup.run(&["verify", "--chunk-rows", "500"]);
    assert!(verified.status.success(), "{}", text(&verified));
    assert!(
        text(&verified).contains("the destination equals the sources"),
        "{}",
        text(&verified)
    );
    destination
        .sql(&format!(
            "UPDATE {}.acct SET bal = -1 WHERE uid = 1045",
            setup.ds4
        ))
        .expect("tamper");
    let differs = setup.run(&["verify", "--id", &record.id.to_string()]);
    assert!(!differs.status.success());
    assert!(
        text(&differs).contains("keys differing: 1045"),
        "{}",
        text(&differs)
    );
}

#[test]
fn a_source_without_a_binlog_is_refused_naming_the_setting() {
    let source = MariaDb::start().expect("mariadbd without --log-bin");
    let destination = binlog_server(2);
    let setup = Setup::new(&source, &destination, 100);
    let output = setup.run(&["move", "--slices", "40-59", "--to", "ds_4"]);
    assert!(!output.status.success());
    let said = text(&output);
    assert!(
        said.contains("data source 'ds_0' cannot be followed: log_bin is OFF, it must be ON"),
        "{said}"
    );
    assert!(Path::new(&setup.config()).exists());
}
