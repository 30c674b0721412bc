//! What the query digest adds to each statement: its key (a fingerprint pass over the text)
//! and the record (one shard lock, a hash lookup, a few additions).

use std::time::Duration;

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use server::digest::{key, Digest, Observation};

const POINT_SELECT: &str = "SELECT c FROM sbtest1 WHERE id = 4242";
const IN_LIST: &str =
    "SELECT uid, balance FROM account WHERE uid IN (10000048, 10000049, 10000050, 10000051) ORDER BY uid";

fn digest(c: &mut Criterion) {
    c.bench_function("digest key: point select", |b| {
        b.iter(|| key(black_box(POINT_SELECT)))
    });
    c.bench_function("digest key: IN list", |b| {
        b.iter(|| key(black_box(IN_LIST)))
    });
    let d = Digest::new(1000);
    let k = key(POINT_SELECT);
    c.bench_function("digest record", |b| {
        b.iter(|| {
            d.record(black_box(&Observation {
                fingerprint: &k,
                duration: Duration::from_micros(180),
                error: false,
                rows: 1,
                shards: 1,
            }))
        })
    });
}

criterion_group!(benches, digest);
criterion_main!(benches);
