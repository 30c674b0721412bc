//! The stream against a real mariadbd: transactions with their row images, DDL, idle
//! positions, and the source checks.

mod common;

use std::time::Duration;

use std::sync::Arc;

use binlog::{
    check_source, BinlogError, BinlogStream, ChangeKind, GtidPosition, StreamEvent, StreamOptions,
    TableRef, Value,
};

/// The next transaction (skipping idle positions), within a generous bound.
async fn next_transaction(stream: &mut BinlogStream) -> StreamEvent {
    loop {
        let event = tokio::time::timeout(Duration::from_secs(60), stream.next())
            .await
            .expect("an event within 60 s")
            .expect("the stream goes on");
        if !matches!(event, StreamEvent::Position(_)) {
            return event;
        }
    }
}

#[tokio::test]
async fn transactions_arrive_with_their_row_images() {
    let server = common::source();
    let options = common::options(&server);
    server
        .sql(&format!("CREATE DATABASE app; {}", common::ALL_TYPES))
        .expect("schema");
    server
        .sql(
            "CREATE TABLE app.other (k VARCHAR(10) PRIMARY KEY, n INT);
             CREATE TABLE app.unfollowed (k INT PRIMARY KEY)",
        )
        .expect("schema");
    let from = check_source(&options).await.expect("a followable source");
    server.sql(common::ALL_TYPES_ROWS).expect("rows");
    server
        .sql(
            "BEGIN; UPDATE app.all_types SET vc = 'upd' WHERE id = 2; \
             INSERT INTO app.other VALUES ('k1', 1), ('k2', 2); \
             INSERT INTO app.unfollowed VALUES (1); \
             DELETE FROM app.all_types WHERE id = 3; COMMIT;
             ALTER TABLE app.unfollowed ADD COLUMN extra INT",
        )
        .expect("changes");
    let head: GtidPosition = check_source(&options).await.expect("position");

    // app.unfollowed is altered before the stream reads its rows: as it is not followed, its
    // definition is never looked up.
    let mut stream_options = StreamOptions::new(1001);
    stream_options.tables = Some(Arc::new(|t: &TableRef| t.table != "unfollowed"));
    let mut stream = BinlogStream::connect_with(&options, &from, &stream_options)
        .await
        .expect("stream");
    let StreamEvent::Transaction { changes, .. } = next_transaction(&mut stream).await else {
        panic!("the INSERT first");
    };
    assert_eq!(
        changes.len(),
        3,
        "one change per row of the multi-row INSERT"
    );
    let ChangeKind::Insert { after } = &changes[0].kind else {
        panic!("an insert: {:?}", changes[0].kind);
    };
    let schema = &changes[0].schema;
    let col = |name: &str| {
        let at = schema.columns.iter().position(|c| c == name).expect(name);
        after[at].clone()
    };
    assert_eq!(changes[0].table.database, "app");
    assert_eq!(changes[0].table.table, "all_types");
    assert_eq!(schema.primary_key, vec![0]);
    assert_eq!(col("ti"), Value::Int(-128));
    assert_eq!(col("tiu"), Value::UInt(255));
    assert_eq!(col("mi"), Value::Int(-8_388_608));
    assert_eq!(col("biu"), Value::UInt(u64::MAX));
    assert_eq!(col("f"), Value::Float(1.1));
    assert_eq!(col("d"), Value::Double(-2.2250738585072014e-308));
    assert_eq!(col("dec1"), Value::Decimal("-12345678.99".into()));
    assert_eq!(
        col("dec2"),
        Value::Decimal("123456789012345678.123456789012".into())
    );
    assert_eq!(col("dec3"), Value::Decimal("99999".into()));
    assert_eq!(col("vc"), Value::Bytes("héllo 😀".as_bytes().to_vec()));
    assert_eq!(col("vcl"), Value::Bytes(vec![0xe9; 300]), "latin1 bytes");
    assert_eq!(col("vb"), Value::Bytes(vec![0, 0xff, 0x10]));
    assert_eq!(col("e"), Value::UInt(3));
    assert_eq!(col("s"), Value::UInt(0b101));
    assert_eq!(col("mb"), Value::Bytes(vec![b'm'; 70_000]));
    assert_eq!(col("dt"), Value::Temporal("2024-02-29".into()));
    assert_eq!(col("dtm"), Value::Temporal("1000-01-01 00:00:00".into()));
    assert_eq!(
        col("dtm6"),
        Value::Temporal("9999-12-31 23:59:59.999999".into())
    );
    assert_eq!(col("tm"), Value::Temporal("-838:59:59".into()));
    assert_eq!(col("tm2"), Value::Temporal("-00:00:01.25".into()));
    assert_eq!(col("tm6"), Value::Temporal("12:34:56.000001".into()));
    assert_eq!(col("y"), Value::Int(2155));
    assert_eq!(col("b13"), Value::UInt(0b1010101010101));
    assert_eq!(col("b64"), Value::UInt(u64::MAX));
    let ChangeKind::Insert { after: nulls } = &changes[2].kind else {
        panic!("an insert");
    };
    assert!(nulls[1..nulls.len() - 1].iter().all(|v| *v == Value::Null));

    let StreamEvent::Transaction { changes, .. } = next_transaction(&mut stream).await else {
        panic!("then the transaction of three statements");
    };
    let kinds: Vec<(&str, &str)> = changes
        .iter()
        .map(|c| {
            let kind = match &c.kind {
                ChangeKind::Insert { .. } => "insert",
                ChangeKind::Update { .. } => "update",
                ChangeKind::Delete { .. } => "delete",
            };
            (c.table.table.as_str(), kind)
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("all_types", "update"),
            ("other", "insert"),
            ("other", "insert"),
            ("all_types", "delete")
        ]
    );
    let ChangeKind::Update { before, after } = &changes[0].kind else {
        panic!("an update");
    };
    let vc = changes[0]
        .schema
        .columns
        .iter()
        .position(|c| c == "vc")
        .expect("vc");
    assert_eq!(before[vc], Value::Bytes(Vec::new()));
    assert_eq!(after[vc], Value::Bytes(b"upd".to_vec()));
    assert_eq!(before[0], Value::Int(2));

    let StreamEvent::Ddl {
        database,
        statement,
        ..
    } = next_transaction(&mut stream).await
    else {
        panic!("then the ALTER");
    };
    assert_eq!(database, "");
    assert!(statement.contains("ADD COLUMN extra"), "{statement}");
    // Idle: the source's heartbeat reports the head position.
    loop {
        let event = tokio::time::timeout(Duration::from_secs(60), stream.next())
            .await
            .expect("a heartbeat within 60 s")
            .expect("stream");
        if let StreamEvent::Position(at) = event {
            assert_eq!(at, head);
            assert!(stream.is_idle());
            break;
        }
    }
}

#[tokio::test]
async fn what_cannot_be_followed_safely_is_refused() {
    let server = common::source();
    let options = common::options(&server);
    let from = check_source(&options).await.expect("position");
    let error = BinlogStream::connect(&options, &from, 1)
        .await
        .err()
        .expect("server id 1 is the source's");
    assert!(error.to_string().contains("server id 1"), "{error}");

    // A transaction larger than the stream may hold ends it with an error, never a
    // partial transaction.
    server
        .sql(
            "CREATE DATABASE app; CREATE TABLE app.big (id INT PRIMARY KEY, b LONGBLOB);
             INSERT INTO app.big VALUES (1, REPEAT('x', 100000))",
        )
        .expect("a large row");
    let mut small = StreamOptions::new(1002);
    small.max_transaction_bytes = 50_000;
    let mut stream = BinlogStream::connect_with(&options, &from, &small)
        .await
        .expect("stream");
    let error = loop {
        match tokio::time::timeout(Duration::from_secs(60), stream.next())
            .await
            .expect("within 60 s")
        {
            Ok(StreamEvent::Transaction { changes, .. }) => {
                assert!(changes.is_empty(), "only the DDL's before the row")
            }
            Ok(_) => {}
            Err(error) => break error,
        }
    };
    assert!(
        matches!(
            error,
            BinlogError::TransactionTooLarge { limit: 50_000, .. }
        ),
        "{error}"
    );
    assert!(!error.is_transient());
}

#[tokio::test]
async fn a_source_not_logging_full_rows_is_refused_naming_the_setting() {
    let server = testkit::MariaDb::builder()
        .args([
            "--server-id=1",
            "--log-bin=mariadb-bin",
            "--binlog-format=MIXED",
        ])
        .start()
        .expect("mariadbd");
    let options = common::options(&server);
    let error = check_source(&options).await.expect_err("MIXED is refused");
    let text = error.to_string();
    assert!(
        text.contains("binlog_format is MIXED, it must be ROW"),
        "{text}"
    );
    server
        .sql("SET GLOBAL binlog_format = ROW; SET GLOBAL binlog_row_image = MINIMAL")
        .expect("set");
    let text = check_source(&options)
        .await
        .expect_err("MINIMAL")
        .to_string();
    assert!(
        text.contains("binlog_row_image is MINIMAL, it must be FULL"),
        "{text}"
    );
}
