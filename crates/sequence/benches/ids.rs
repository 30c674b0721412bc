//! Ids per second of both generators, from one thread and from eight.
//!
//! Snowflake uses the system clock, so it is capped by design at 4096 ids per
//! millisecond per sequence (≈4.1 M/s); `snowflake_generator` steps a manual
//! clock every 4096 ids to show the generator's own cost. Segment uses the
//! in-memory store (step 1000), so it measures the in-memory path and the double
//! buffering, not a database round trip.
//!
//! `cargo bench -p sequence --bench ids`

use std::hint::black_box;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rules::{SegmentRule, SnowflakeRule};
use sequence::{Clock, ManualClock, MemoryStore, RetryPolicy, Segment, Snowflake, SystemClock};

const THREADS: u64 = 8;

fn snowflake(clock: Arc<dyn Clock>) -> Snowflake {
    let rule = SnowflakeRule {
        worker_id: Some(1),
        epoch_ms: rules::DEFAULT_SNOWFLAKE_EPOCH_MS,
        max_clock_backward_ms: 5,
    };
    Snowflake::new("bench", &rule, 1, clock)
}

fn segment() -> Segment {
    let store = Arc::new(MemoryStore::new(Arc::new(SystemClock)));
    let rule = SegmentRule {
        step: 1000,
        start: 1,
        max: rules::DEFAULT_SEGMENT_MAX,
        max_range: rules::DEFAULT_SEGMENT_MAX_RANGE,
    };
    Segment::new("bench", &rule, store, RetryPolicy::default())
}

fn bench_snowflake(c: &mut Criterion) {
    let mut g = c.benchmark_group("snowflake");
    g.throughput(Throughput::Elements(1));
    let s = Arc::new(snowflake(Arc::new(SystemClock)));
    g.bench_function("1_thread", |b| {
        b.iter(|| black_box(s.next_blocking().expect("id")))
    });
    g.bench_function("8_threads", |b| {
        b.iter_custom(|iters| {
            let per_thread = iters.div_ceil(THREADS);
            let started = Instant::now();
            thread::scope(|scope| {
                for _ in 0..THREADS {
                    scope.spawn(|| {
                        for _ in 0..per_thread {
                            black_box(s.next_blocking().expect("id"));
                        }
                    });
                }
            });
            started.elapsed()
        })
    });
    g.finish();

    // What one reading of the system clock costs here (a snowflake id needs one or more).
    c.bench_function("clock/system_now_ms", |b| {
        b.iter(|| black_box(SystemClock.now_ms()))
    });

    let mut g = c.benchmark_group("snowflake_generator");
    g.throughput(Throughput::Elements(1));
    let clock = Arc::new(ManualClock::new(rules::DEFAULT_SNOWFLAKE_EPOCH_MS + 1));
    let s = snowflake(clock.clone());
    let mut n: u64 = 0;
    g.bench_function("1_thread", |b| {
        b.iter(|| {
            n += 1;
            if n % 4096 == 0 {
                clock.advance(1);
            }
            black_box(s.next_blocking().expect("id"))
        })
    });
    g.finish();
}

fn bench_segment(c: &mut Criterion) {
    let mut g = c.benchmark_group("segment");
    g.throughput(Throughput::Elements(1));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let s = segment();
    g.bench_function("1_thread", |b| {
        b.iter_custom(|iters| {
            runtime.block_on(async {
                let started = Instant::now();
                for _ in 0..iters {
                    black_box(s.next().await.expect("id"));
                }
                started.elapsed()
            })
        })
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(THREADS as usize)
        .enable_all()
        .build()
        .expect("runtime");
    let s = Arc::new(segment());
    g.bench_function("8_threads", |b| {
        b.iter_custom(|iters| {
            let per_task = iters.div_ceil(THREADS);
            runtime.block_on(async {
                let started = Instant::now();
                let tasks: Vec<_> = (0..THREADS)
                    .map(|_| {
                        let s = Arc::clone(&s);
                        tokio::spawn(async move {
                            for _ in 0..per_task {
                                black_box(s.next().await.expect("id"));
                            }
                        })
                    })
                    .collect();
                for t in tasks {
                    t.await.expect("task");
                }
                started.elapsed()
            })
        })
    });
    g.finish();
}

criterion_group! {
    name = ids;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = bench_snowflake, bench_segment
}
criterion_main!(ids);
