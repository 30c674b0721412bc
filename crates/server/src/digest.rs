//! The query digest: per statement fingerprint (literals out, IN lists and VALUES rows
//! collapsed), how often it ran, its errors, rows, latency and shards, for `SHOW DBMESH
//! DIGEST` and the admin endpoint `GET /digest`.
//!
//! Memory is bounded: at most `capacity` fingerprints are kept. When a new one arrives with
//! the table full, the kept fingerprint with the least total time is folded into the `<other>`
//! row, so the rows kept are roughly the top ones by time and every statement is counted
//! somewhere. The table is split into shards by fingerprint hash so that sessions recording
//! at once seldom wait for each other. Literal values never enter it: a fingerprint holds `?`
//! in their place.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The fingerprint of the row that counts the statements of fingerprints not kept.
pub const OTHER: &str = "<other>";

const SHARDS: usize = 16;
/// Latency buckets: four per power of two of microseconds, so a percentile read off them is
/// within 19 % of the true value.
const SUB_BUCKETS: u32 = 4;
const BUCKETS: usize = 40 * SUB_BUCKETS as usize;

/// One statement's outcome, as recorded.
#[derive(Debug, Clone, Copy)]
pub struct Observation<'a> {
    pub fingerprint: &'a str,
    pub duration: Duration,
    pub error: bool,
    /// Rows sent (a read) or affected (a write).
    pub rows: u64,
    /// The backend statements it took (targets of its plan).
    pub shards: u64,
}

/// What is kept of one fingerprint.
#[derive(Debug, Clone)]
struct Stats {
    count: u64,
    errors: u64,
    rows: u64,
    shards: u64,
    max_shards: u64,
    total: Duration,
    max: Duration,
    buckets: Box<[u32; BUCKETS]>,
    first_seen: SystemTime,
    last_seen: SystemTime,
}

impl Stats {
    fn new(now: SystemTime) -> Stats {
        Stats {
            count: 0,
            errors: 0,
            rows: 0,
            shards: 0,
            max_shards: 0,
            total: Duration::ZERO,
            max: Duration::ZERO,
            buckets: Box::new([0; BUCKETS]),
            first_seen: now,
            last_seen: now,
        }
    }

    fn add(&mut self, o: &Observation<'_>, now: SystemTime) {
        self.count += 1;
        self.errors += u64::from(o.error);
        self.rows += o.rows;
        self.shards += o.shards;
        self.max_shards = self.max_shards.max(o.shards);
        self.total += o.duration;
        self.max = self.max.max(o.duration);
        let b = &mut self.buckets[bucket(o.duration)];
        *b = b.saturating_add(1);
        self.last_seen = now;
    }

    fn fold(&mut self, other: &Stats) {
        self.count += other.count;
        self.errors += other.errors;
        self.rows += other.rows;
        self.shards += other.shards;
        self.max_shards = self.max_shards.max(other.max_shards);
        self.total += other.total;
        self.max = self.max.max(other.max);
        for (a, b) in self.buckets.iter_mut().zip(other.buckets.iter()) {
            *a = a.saturating_add(*b);
        }
        self.first_seen = self.first_seen.min(other.first_seen);
        self.last_seen = self.last_seen.max(other.last_seen);
    }

    /// The latency below which `q` of the statements fell (the bucket's upper bound, at most
    /// the maximum seen).
    fn quantile(&self, q: f64) -> Duration {
        let total: u64 = self.buckets.iter().map(|&b| u64::from(b)).sum();
        if total == 0 {
            return Duration::ZERO;
        }
        let rank = ((total as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, &b) in self.buckets.iter().enumerate() {
            seen += u64::from(b);
            if seen >= rank {
                return upper_bound(i).min(self.max);
            }
        }
        self.max
    }
}

/// The bucket of a latency: `SUB_BUCKETS` per power of two of microseconds.
fn bucket(d: Duration) -> usize {
    let us = d.as_micros().max(1) as u64;
    let power = 63 - us.leading_zeros();
    let sub = if power >= 2 {
        ((us >> (power - 2)) & u64::from(SUB_BUCKETS - 1)) as u32
    } else {
        0
    };
    ((power * SUB_BUCKETS + sub) as usize).min(BUCKETS - 1)
}

fn upper_bound(bucket: usize) -> Duration {
    let (power, sub) = (bucket as u32 / SUB_BUCKETS, bucket as u32 % SUB_BUCKETS);
    let us = if power >= 2 {
        (1u64 << power) + (u64::from(sub) + 1) * (1u64 << (power - 2)) - 1
    } else {
        (1u64 << (power + 1)) - 1
    };
    Duration::from_micros(us)
}

/// One row of the digest as it is shown.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DigestRow {
    pub fingerprint: String,
    pub count: u64,
    pub errors: u64,
    pub rows: u64,
    /// Backend statements per statement, on average and at most.
    pub avg_shards: f64,
    pub max_shards: u64,
    pub total_ms: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Seconds since the Unix epoch.
    pub first_seen: u64,
    pub last_seen: u64,
}

struct Shard {
    kept: HashMap<Arc<str>, Stats>,
    other: Option<Stats>,
}

/// The digest of every statement the proxy ran since its start or last reset.
pub struct Digest {
    shards: Vec<Mutex<Shard>>,
    per_shard: usize,
}

impl Digest {
    /// A digest keeping at most about `capacity` fingerprints.
    pub fn new(capacity: usize) -> Digest {
        Digest {
            shards: (0..SHARDS)
                .map(|_| {
                    Mutex::new(Shard {
                        kept: HashMap::new(),
                        other: None,
                    })
                })
                .collect(),
            per_shard: capacity.div_ceil(SHARDS).max(1),
        }
    }

    fn shard(&self, fingerprint: &str) -> MutexGuard<'_, Shard> {
        let mut h = DefaultHasher::new();
        fingerprint.hash(&mut h);
        let m = &self.shards[h.finish() as usize % SHARDS];
        m.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn record(&self, o: &Observation<'_>) {
        let now = SystemTime::now();
        let mut shard = self.shard(o.fingerprint);
        if let Some(stats) = shard.kept.get_mut(o.fingerprint) {
            stats.add(o, now);
            return;
        }
        if shard.kept.len() >= self.per_shard {
            let least = shard
                .kept
                .iter()
                .min_by_key(|(_, s)| s.total)
                .map(|(k, _)| k.clone());
            if let Some(least) = least {
                if let Some(evicted) = shard.kept.remove(&least) {
                    shard
                        .other
                        .get_or_insert_with(|| Stats::new(now))
                        .fold(&evicted);
                }
            }
        }
        let mut stats = Stats::new(now);
        stats.add(o, now);
        shard.kept.insert(Arc::from(o.fingerprint), stats);
    }

    /// Every row, the largest total time first; `<other>` last.
    pub fn rows(&self) -> Vec<DigestRow> {
        let mut kept = Vec::new();
        let mut other: Option<Stats> = None;
        for m in &self.shards {
            let shard = m.lock().unwrap_or_else(|e| e.into_inner());
            kept.extend(shard.kept.iter().map(|(k, s)| row(k, s)));
            if let Some(o) = &shard.other {
                match &mut other {
                    Some(all) => all.fold(o),
                    None => other = Some(o.clone()),
                }
            }
        }
        kept.sort_by(|a, b| {
            b.total_ms
                .total_cmp(&a.total_ms)
                .then(a.fingerprint.cmp(&b.fingerprint))
        });
        kept.extend(other.map(|o| row(OTHER, &o)));
        kept
    }

    /// Forgets everything recorded.
    pub fn reset(&self) {
        for m in &self.shards {
            let mut shard = m.lock().unwrap_or_else(|e| e.into_inner());
            shard.kept.clear();
            shard.other = None;
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn epoch_seconds(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn row(fingerprint: &str, s: &Stats) -> DigestRow {
    DigestRow {
        fingerprint: fingerprint.to_owned(),
        count: s.count,
        errors: s.errors,
        rows: s.rows,
        avg_shards: if s.count == 0 {
            0.0
        } else {
            s.shards as f64 / s.count as f64
        },
        max_shards: s.max_shards,
        total_ms: ms(s.total),
        p50_ms: ms(s.quantile(0.5)),
        p99_ms: ms(s.quantile(0.99)),
        max_ms: ms(s.max),
        first_seen: epoch_seconds(s.first_seen),
        last_seen: epoch_seconds(s.last_seen),
    }
}

/// The digest's key for a statement: its fingerprint (literals and a prepared statement's
/// placeholders alike as `?`) with every list of them collapsed to `?, ...` and every run of
/// parenthesized rows to one, so that `IN (1, 2)` and `IN (1, 2, 3)`, or INSERTs of 2 and of
/// 50 rows, are one fingerprint.
pub fn key(sql: &str) -> String {
    let text = sql::fingerprint(sql).text.replace(":?", "?");
    collapse_rows(&collapse_lists(&text))
}

/// `?, ?, ?` → `?, ...`
fn collapse_lists(text: &str) -> String {
    collapse_repeats(text, |rest| rest.find('?').map(|at| (at, at + 1)))
}

/// `(…), (…), (…)` of identical groups → `(…), ...`
fn collapse_rows(text: &str) -> String {
    collapse_repeats(text, |rest| {
        let open = rest.find('(')?;
        Some((open, open + rest[open..].find(')')? + 1))
    })
}

/// Each item `next_item` finds (its range in the text it is given) followed by `, ` and the
/// same text again, once or more, written once with `, ...` after it.
fn collapse_repeats(text: &str, next_item: impl Fn(&str) -> Option<(usize, usize)>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some((start, end)) = next_item(rest) {
        let item = &rest[start..end];
        out.push_str(&rest[..end]);
        rest = &rest[end..];
        let mut collapsed = false;
        while let Some(after) = rest
            .trim_start()
            .strip_prefix(',')
            .and_then(|r| r.trim_start().strip_prefix(item))
        {
            rest = after;
            collapsed = true;
        }
        if collapsed {
            out.push_str(", ...");
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn observe(d: &Digest, fingerprint: &str, ms: u64) {
        d.record(&Observation {
            fingerprint,
            duration: Duration::from_millis(ms),
            error: false,
            rows: 1,
            shards: 2,
        });
    }

    #[test]
    fn keys_hold_no_literal_and_collapse_lists_and_rows() {
        let a = key("SELECT * FROM t WHERE uid = 42 AND name = 'x' AND id IN (1, 2, 3)");
        let b = key("SELECT * FROM t WHERE uid = 7 AND name = 'secret' AND id IN (9, 8, 7, 6, 5)");
        assert_eq!(a, b);
        assert!(!a.contains("42") && !a.contains("'x'"), "{a}");
        assert!(a.ends_with("IN (?, ...)"), "{a}");
        let many = key("INSERT INTO t (a, b) VALUES (1, 'a'), (2, 'b'), (3, 'c')");
        assert_eq!(many, key("INSERT INTO t (a, b) VALUES (4, 'd'), (5, 'e')"));
        assert!(many.ends_with("VALUES (?, ...), ..."), "{many}");
        assert_eq!(
            key("SELECT a FROM t WHERE b = ?"),
            key("SELECT a FROM t WHERE b = 5")
        );
    }

    #[test]
    fn percentiles_come_from_the_buckets_within_their_resolution() {
        let d = Digest::new(10);
        for ms in 1..=100 {
            observe(&d, "SELECT ?", ms);
        }
        let r = &d.rows()[0];
        assert_eq!(r.count, 100);
        assert_eq!(r.rows, 100);
        assert!((r.avg_shards - 2.0).abs() < 1e-9);
        assert!((40.0..=60.0).contains(&r.p50_ms), "{r:?}");
        assert!((95.0..=100.0).contains(&r.p99_ms), "{r:?}");
        assert!((r.max_ms - 100.0).abs() < 1e-9);
        assert!((r.total_ms - 5050.0).abs() < 1e-6);
    }

    #[test]
    fn a_full_digest_folds_the_least_time_into_other_and_counts_everything() {
        let d = Digest::new(SHARDS); // one fingerprint per shard
        for i in 0..200 {
            observe(&d, &format!("SELECT {i}"), i + 1);
        }
        let rows = d.rows();
        assert!(rows.len() <= SHARDS + 1, "{}", rows.len());
        assert_eq!(rows.iter().map(|r| r.count).sum::<u64>(), 200);
        assert_eq!(rows.last().map(|r| r.fingerprint.as_str()), Some(OTHER));
        // The slowest statement is kept.
        assert!(rows.iter().any(|r| r.fingerprint == "SELECT 199"));
        d.reset();
        assert!(d.rows().is_empty());
    }
}
