//! The sequences against a real MariaDB meta data source started by `testkit`: proxies
//! (separate `Sequences` instances) never share an id, restarts never reuse one, worker-id
//! leases are distinct and expire, and a dead meta database is survived as documented.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use protocol::ClientError;
use sequence::{
    decode_snowflake, LeaseOptions, RetryPolicy, SequenceError, SequenceOptions, Sequences,
};
use testkit::Backend;

const EPOCH: u64 = rules::DEFAULT_SNOWFLAKE_EPOCH_MS;

struct Meta {
    backend: Backend,
    database: String,
}

impl Meta {
    fn start() -> Meta {
        let backend = testkit::backends(1)
            .expect("start a MariaDB backend")
            .remove(0);
        let database = testkit::unique_name("seq");
        backend
            .sql(&format!("CREATE DATABASE {database}"))
            .expect("create the meta database");
        Meta { backend, database }
    }

    /// A rule file whose meta data source is this database, plus `sequences`.
    fn rules(&self, sequences: &str) -> rules::Rules {
        let text = format!(
            r#"
[proxy]
meta_data_source = "meta"
[[users]]
name = "app"
[schema]
name = "bank"
default_data_source = "meta"
[data_sources.meta]
address = "{address}"
user = "{user}"
password = "{password}"
database = "{database}"
{sequences}
"#,
            address = self.backend.address(),
            user = self.backend.user(),
            password = self.backend.password(),
            database = self.database,
        );
        rules::parse_str(&text, Path::new("test.toml")).expect("valid rules")
    }

    fn sql(&self, statement: &str) -> String {
        self.backend
            .sql(&format!("USE {}; {statement}", self.database))
            .expect("sql")
    }
}

fn options(owner: &str) -> SequenceOptions {
    SequenceOptions {
        owner: owner.to_owned(),
        retry: RetryPolicy {
            attempts: 3,
            backoff: Duration::from_millis(20),
            cooldown: Duration::from_millis(200),
        },
        ..SequenceOptions::default()
    }
}

const PAYMENT: &str = r#"
[sequences.payment_seq]
kind = "segment"
table = "payment"
column = "payment_id"
step = 100
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn two_proxies_hand_out_disjoint_ids_under_concurrency() {
    let meta = Meta::start();
    let rules = meta.rules(PAYMENT);
    let a = Arc::new(Sequences::start(&rules, options("a")).await.unwrap());
    let b = Arc::new(Sequences::start(&rules, options("b")).await.unwrap());
    let mut tasks = Vec::new();
    for (i, s) in [&a, &b, &a, &b, &a, &b, &a, &b].into_iter().enumerate() {
        let s = Arc::clone(s);
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::with_capacity(5_000);
            while ids.len() < 5_000 {
                if i % 2 == 0 && ids.len() % 10 == 0 {
                    ids.extend(s.next_n("payment_seq", 7).await.unwrap());
                } else {
                    ids.push(s.next("payment_seq").await.unwrap());
                }
            }
            ids
        }));
    }
    let mut all = HashSet::new();
    let mut count = 0;
    for t in tasks {
        let ids = t.await.unwrap();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "increasing per caller");
        count += ids.len();
        all.extend(ids);
    }
    assert_eq!(all.len(), count, "an id was handed out twice");
    // The table's next value is past every id handed out.
    let next: u64 = meta
        .sql("SELECT next_value FROM dbmesh_sequence WHERE name = 'payment_seq'")
        .trim()
        .parse()
        .unwrap();
    assert!(all.iter().all(|id| *id < next));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_never_reuses() {
    let meta = Meta::start();
    let rules = meta.rules(PAYMENT);
    let mut seen = HashSet::new();
    let mut last = 0;
    for round in 0..4 {
        let s = Sequences::start(&rules, options(&format!("p{round}")))
            .await
            .unwrap();
        for _ in 0..130 {
            let id = s.next("payment_seq").await.unwrap();
            assert!(id > last, "{id} after {last}");
            assert!(seen.insert(id));
            last = id;
        }
        // Dropped like a crash: its reserved blocks are skipped, never reused.
    }
    let range = {
        let s = Sequences::start(&rules, options("loader")).await.unwrap();
        s.reserve_range("payment_seq", 10_000).await.unwrap()
    };
    assert_eq!(range.end - range.start, 10_000);
    assert!(range.start > last);
    let s = Sequences::start(&rules, options("after")).await.unwrap();
    assert!(s.next("payment_seq").await.unwrap() >= range.end);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn int_column_runs_out_at_its_max() {
    let meta = Meta::start();
    let rules = meta.rules(
        r#"
[sequences.small]
kind = "segment"
step = 3
start = 2147483640
max = 2147483647
"#,
    );
    let s = Sequences::start(&rules, options("a")).await.unwrap();
    let ids = s.next_n("small", 8).await.unwrap();
    assert_eq!(ids, (2_147_483_640..=2_147_483_647).collect::<Vec<u64>>());
    let err = s.next("small").await.unwrap_err();
    assert_eq!(err.code(), 4084);
    assert!(matches!(
        err,
        SequenceError::RunOut {
            max: 2_147_483_647,
            ..
        }
    ));
    // Another proxy, and a restart, agree.
    let t = Sequences::start(&rules, options("b")).await.unwrap();
    assert!(matches!(
        t.next("small").await,
        Err(SequenceError::RunOut { .. })
    ));
}

const ACCOUNT: &str = r#"
[sequences.account_seq]
kind = "snowflake"
table = "account"
column = "account_id"
"#;

fn lease_options(owner: &str) -> SequenceOptions {
    SequenceOptions {
        lease: LeaseOptions {
            timeout: Duration::from_millis(1_500),
            heartbeat: Duration::from_millis(200),
        },
        ..options(owner)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn worker_leases_are_distinct_and_expired_ones_are_taken_over() {
    let meta = Meta::start();
    let rules = meta.rules(ACCOUNT);
    let mut proxies = Vec::new();
    for p in 0..4 {
        proxies.push(
            Sequences::start(&rules, lease_options(&format!("proxy-{p}")))
                .await
                .unwrap(),
        );
    }
    let workers: Vec<u16> = proxies.iter().map(|p| p.worker_id().unwrap()).collect();
    let distinct: HashSet<u16> = workers.iter().copied().collect();
    assert_eq!(distinct.len(), 4, "{workers:?}");
    let rows = meta.sql("SELECT worker_id, owner FROM dbmesh_worker_lease ORDER BY worker_id");
    assert_eq!(rows.lines().count(), 4, "{rows}");
    // Ids of different proxies carry their own worker id and never collide.
    let mut ids = HashSet::new();
    for (p, w) in proxies.iter().zip(&workers) {
        for id in p.next_n("account_seq", 2_000).await.unwrap() {
            assert_eq!(decode_snowflake(id, EPOCH).worker_id, *w);
            assert!(ids.insert(id));
        }
    }

    // proxy-0 dies without releasing its lease; after the timeout a new proxy takes it.
    let dead = workers[0];
    drop(proxies.remove(0));
    let early = Sequences::start(&rules, lease_options("early"))
        .await
        .unwrap();
    assert_ne!(
        early.worker_id(),
        Some(dead),
        "taken over before the timeout"
    );
    tokio::time::sleep(Duration::from_millis(1_800)).await;
    let late = Sequences::start(&rules, lease_options("late"))
        .await
        .unwrap();
    assert_eq!(late.worker_id(), Some(dead));
    assert_eq!(
        meta.sql(&format!(
            "SELECT owner FROM dbmesh_worker_lease WHERE worker_id = {dead}"
        ))
        .trim(),
        "late"
    );
    // The live proxies kept theirs through their heartbeats.
    for (p, w) in proxies.iter().zip(&workers[1..]) {
        assert_eq!(p.worker_id(), Some(*w));
        assert!(p.next("account_seq").await.is_ok());
    }
    // A clean shutdown frees the id at once.
    let freed = late.worker_id().unwrap();
    late.shutdown().await;
    let count = meta.sql(&format!(
        "SELECT COUNT(*) FROM dbmesh_worker_lease WHERE worker_id = {freed}"
    ));
    assert_eq!(count.trim(), "0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meta_killed_then_restarted() {
    let mut meta = Meta::start();
    if let Some(reason) = testkit::skip_reason(std::slice::from_ref(&meta.backend)) {
        eprintln!("{reason}");
        return;
    }
    let rules = meta.rules(&format!("{PAYMENT}{ACCOUNT}").replace("step = 100", "step = 1000"));
    let s = Sequences::start(&rules, options("a")).await.unwrap();
    assert_eq!(s.next("payment_seq").await.unwrap(), 1);
    assert!(s.next("account_seq").await.is_ok());
    // Use a tenth of the block so the next one is fetched ahead, and wait for it.
    let _ = s.next_n("payment_seq", 99).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while meta
        .sql("SELECT next_value FROM dbmesh_sequence WHERE name = 'payment_seq'")
        .trim()
        != "2001"
    {
        assert!(
            Instant::now() < deadline,
            "the next block was not fetched ahead"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    meta.backend.kill().unwrap();
    // Both reserved blocks are still handed out: 101..=2000.
    let served = s.next_n("payment_seq", 1_900).await.unwrap();
    assert_eq!(served.first(), Some(&101));
    assert_eq!(served.last(), Some(&2000));
    // A leased worker id stays valid within its lease.
    assert!(s.next("account_seq").await.is_ok());
    let started = Instant::now();
    let err = s.next("payment_seq").await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "bounded retries"
    );
    assert_eq!((err.code(), err.sqlstate()), (1105, "HY000"));
    assert!(
        matches!(&err, SequenceError::MetaUnavailable { source_name, .. } if source_name == "meta"),
        "{err}"
    );
    assert!(err.to_string().contains("meta data source 'meta'"), "{err}");
    // Past the cooldown, with nothing listening on its port: the connection is refused, and
    // the caller fails at once instead of after the retries' pauses (100 + 200 ms by
    // default), as a write needing an id does while the meta data source's primary is dead.
    tokio::time::sleep(Duration::from_millis(250)).await;
    let started = Instant::now();
    let err = s.next("payment_seq").await.unwrap_err();
    let took = started.elapsed();
    assert!(
        matches!(&err, SequenceError::MetaUnavailable { attempts: 1, .. }),
        "{err}"
    );
    eprintln!("an id with the meta server refusing connections failed in {took:?}");
    assert!(took < Duration::from_millis(100), "{took:?}");

    meta.backend.restart().unwrap();
    tokio::time::sleep(Duration::from_millis(250)).await; // past the cooldown
    let id = s.next("payment_seq").await.unwrap();
    assert!(id > 2000, "{id}");
    // Nothing handed out before the crash is handed out again, by anyone.
    let other = Sequences::start(&rules, options("b")).await.unwrap();
    assert!(other.next("payment_seq").await.unwrap() > id);
}
