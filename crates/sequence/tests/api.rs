//! `Sequences` through its public API, on the in-memory store: lookups, error codes,
//! both generators side by side, leases, and the rule file's sequences end to end.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use protocol::ClientError;
use sequence::{
    decode_snowflake, LeaseOptions, ManualClock, MemoryStore, MetaStore, SequenceError,
    SequenceOptions, Sequences, SystemClock,
};

const RULES: &str = r#"
[proxy]
meta_data_source = "meta"
[[users]]
name = "app"
[schema]
name = "bank"
default_data_source = "ds_0"
[data_sources.ds_0]
address = "127.0.0.1:3306"
user = "root"
database = "bank"
[data_sources.meta]
address = "127.0.0.1:3306"
user = "root"
database = "meta"
[sequences.payment_seq]
kind = "segment"
table = "payment"
column = "payment_id"
step = 100
[sequences.small_seq]
kind = "segment"
start = 10
max = 12
[sequences.account_seq]
kind = "snowflake"
table = "account"
column = "account_id"
[sequences.fixed_seq]
kind = "snowflake"
worker_id = 77
"#;

fn rules() -> rules::Rules {
    rules::parse_str(RULES, Path::new("test.toml")).expect("valid rules")
}

async fn start(store: &Arc<MemoryStore>, owner: &str) -> Sequences {
    let options = SequenceOptions {
        owner: owner.to_owned(),
        ..SequenceOptions::default()
    };
    let store: Arc<dyn MetaStore> = store.clone();
    Sequences::with_store(rules().sequences.values(), Some(store), options)
        .await
        .expect("sequences start")
}

fn memory() -> Arc<MemoryStore> {
    Arc::new(MemoryStore::new(Arc::new(SystemClock)))
}

#[tokio::test]
async fn lookups() {
    let s = start(&memory(), "p").await;
    assert_eq!(s.for_column("payment", "payment_id"), Some("payment_seq"));
    assert_eq!(s.for_column("PAYMENT", "Payment_ID"), Some("payment_seq"));
    assert_eq!(s.for_column("account", "account_id"), Some("account_seq"));
    assert_eq!(s.for_column("payment", "uid"), None);
    assert_eq!(s.for_column("audit", "id"), None);
    let mut names: Vec<&str> = s.names().collect();
    names.sort_unstable();
    assert_eq!(
        names,
        ["account_seq", "fixed_seq", "payment_seq", "small_seq"]
    );
    // Names are matched case-insensitively, like MariaDB's (table-named) sequences.
    assert_eq!(s.next("PAYMENT_SEQ").await.unwrap(), 1);
    assert_eq!(s.next("payment_seq").await.unwrap(), 2);
}

#[tokio::test]
async fn unknown_sequence() {
    let s = start(&memory(), "p").await;
    let err = s.next("nope").await.unwrap_err();
    assert_eq!(err.to_string(), "Unknown SEQUENCE: 'nope'");
    assert_eq!((err.code(), err.sqlstate()), (4091, "42S02"));
    let packet = err.to_server_error();
    assert_eq!((packet.code, packet.sqlstate_str()), (4091, "42S02"));
    assert!(s.next_n("nope", 2).await.is_err());
    assert!(s.reserve_range("nope", 2).await.is_err());
}

#[tokio::test]
async fn run_out() {
    let s = start(&memory(), "p").await;
    assert_eq!(s.next_n("small_seq", 3).await.unwrap(), [10, 11, 12]);
    let err = s.next("small_seq").await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "Sequence 'small_seq' has run out (its max is 12)"
    );
    assert_eq!((err.code(), err.sqlstate()), (4084, "HY000"));
}

#[tokio::test]
async fn snowflake_ids() {
    let store = memory();
    let s = start(&store, "p").await;
    let worker = s.worker_id().expect("leased at start");
    let ids = s.next_n("account_seq", 5000).await.unwrap();
    assert!(ids.windows(2).all(|w| w[0] < w[1]));
    assert!(ids
        .iter()
        .all(|id| decode_snowflake(*id, rules::DEFAULT_SNOWFLAKE_EPOCH_MS).worker_id == worker));
    let fixed = s.next("fixed_seq").await.unwrap();
    assert_eq!(
        decode_snowflake(fixed, rules::DEFAULT_SNOWFLAKE_EPOCH_MS).worker_id,
        77
    );
    let err = s.reserve_range("account_seq", 10).await.unwrap_err();
    assert_eq!((err.code(), err.sqlstate()), (1235, "42000"));
    assert!(matches!(err, SequenceError::NotSupported { .. }));
}

#[tokio::test]
async fn proxies_share_the_store_but_not_ids() {
    let store = memory();
    let a = start(&store, "a").await;
    let b = start(&store, "b").await;
    assert_ne!(a.worker_id(), b.worker_id());
    let x = a.next_n("payment_seq", 150).await.unwrap();
    let y = b.next_n("payment_seq", 150).await.unwrap();
    assert!(x.iter().all(|id| !y.contains(id)));
    let range = a.reserve_range("payment_seq", 1000).await.unwrap();
    assert_eq!(range.end - range.start, 1000);
    assert!(y.iter().chain(&x).all(|id| !range.contains(id)));
    assert!(a.next("payment_seq").await.unwrap() >= range.end);
    let p = a.next("account_seq").await.unwrap();
    let q = b.next("account_seq").await.unwrap();
    assert_ne!(p, q);
}

#[tokio::test]
async fn shutdown_releases_the_worker_id() {
    let store = memory();
    let a = start(&store, "a").await;
    let id = a.worker_id().unwrap();
    a.shutdown().await;
    assert!(matches!(
        a.next("account_seq").await,
        Err(SequenceError::NoWorkerId { .. })
    ));
    // Fixed worker ids and segments do not depend on the lease.
    assert!(a.next("fixed_seq").await.is_ok());
    assert!(a.next("payment_seq").await.is_ok());
    let b = start(&store, "b").await;
    assert_eq!(b.worker_id(), Some(id));
}

#[tokio::test]
async fn meta_down_at_start_still_starts() {
    let clock = Arc::new(ManualClock::new(1_800_000_000_000));
    let store = Arc::new(MemoryStore::new(clock.clone()));
    store.set_available(false);
    let options = SequenceOptions {
        clock: clock.clone(),
        owner: "a".into(),
        lease: LeaseOptions {
            timeout: Duration::from_millis(300),
            heartbeat: Duration::from_millis(20),
        },
        ..SequenceOptions::default()
    };
    let dynamic: Arc<dyn MetaStore> = store.clone();
    let s = Sequences::with_store(rules().sequences.values(), Some(dynamic), options)
        .await
        .unwrap();
    assert_eq!(s.worker_id(), None);
    let err = s.next("account_seq").await.unwrap_err();
    assert!(err.to_string().contains("no worker id"), "{err}");
    assert_eq!(err.code(), 1105);
    assert!(s.next("fixed_seq").await.is_ok());
    // The background task leases an id once the store is back.
    store.set_available(true);
    for _ in 0..100 {
        if s.worker_id().is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(s.next("account_seq").await.is_ok());
}

#[tokio::test]
async fn a_segment_needs_a_store() {
    let rules = rules();
    let err = Sequences::with_store(rules.sequences.values(), None, SequenceOptions::default())
        .await
        .err()
        .expect("needs a store");
    assert!(
        err.to_string().contains("needs the meta data source"),
        "{err}"
    );
    // Fixed worker ids alone need none.
    let fixed = rules.sequences.values().filter(|s| s.name == "fixed_seq");
    let s = Sequences::with_store(fixed, None, SequenceOptions::default())
        .await
        .unwrap();
    assert_eq!(s.worker_id(), None);
    assert!(s.next("fixed_seq").await.is_ok());
}
