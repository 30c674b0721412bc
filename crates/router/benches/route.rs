//! Router benchmarks: the fingerprint alone, and routing a point SELECT on a
//! sharded table with a plan-cache hit (no parsing) and a miss (parse,
//! analyse, render, route), plus the pass-through hot path.
//!
//! `cargo bench -p router --bench route`

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use router::Router;

const POINT_SELECT: &str =
    "SELECT id, amount, currency, note FROM payment WHERE uid = 1234 AND status = 'settled'";

fn rules() -> Arc<rules::Rules> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../sharding-rules/quickstart.toml");
    Arc::new(rules::load_file(&path).expect("quickstart rules"))
}

/// The point SELECT with a different uid each iteration (same fingerprint).
fn statements() -> Vec<String> {
    (0..256)
        .map(|i| POINT_SELECT.replace("1234", &(1000 + i * 37).to_string()))
        .collect()
}

fn bench(c: &mut Criterion) {
    let sqls = statements();
    let mut i = 0;
    c.bench_function("fingerprint (point select, 86 bytes)", |b| {
        b.iter(|| sql::fingerprint(black_box(POINT_SELECT)))
    });

    let cached = Router::new(rules(), 1024);
    c.bench_function("route point select: plan-cache hit", |b| {
        b.iter(|| {
            i = (i + 1) % sqls.len();
            cached.route(black_box(&sqls[i]), &[]).expect("routes")
        })
    });

    let uncached = Router::new(rules(), 0);
    c.bench_function("route point select: plan-cache miss (parse + route)", |b| {
        b.iter(|| {
            i = (i + 1) % sqls.len();
            uncached.route(black_box(&sqls[i]), &[]).expect("routes")
        })
    });

    c.bench_function("route pass-through (no table): plan-cache hit", |b| {
        b.iter(|| {
            cached
                .route(black_box("SELECT @@version_comment LIMIT 1"), &[])
                .expect("routes")
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
