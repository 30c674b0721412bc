//! [`Snowflake`]: 64-bit, time-ordered ids generated without a round trip.
//!
//! Layout of an id (the top bit is 0, so ids fit a signed BIGINT):
//!
//! ```text
//!  63 │ 62 ............ 22 │ 21 ....... 12 │ 11 ....... 0
//!   0 │ ms since the epoch │   worker id   │   counter
//!     │      41 bits       │    10 bits    │   12 bits
//! ```
//!
//! 41 bits of milliseconds last 69 years from the epoch; 10 bits tell up to
//! 1024 proxies apart (fixed in the rule file or leased, see `lease`); the
//! counter numbers up to 4096 ids within one millisecond. The last issued
//! (timestamp, counter) pair lives in one `AtomicU64` advanced by
//! compare-and-swap, so generation is lock-free and ids strictly increase
//! within one generator whatever the clock does:
//!
//! - the counter is used up within a millisecond → wait for the next one;
//! - the clock is behind the last issued timestamp by at most
//!   `max_clock_backward_ms` → wait until it catches up;
//! - further behind → [`SequenceError::ClockMovedBackwards`], never a duplicate.
//!
//! Waits are bounded: a clock that does not reach the awaited millisecond within
//! a second past the tolerance is reported instead of waited on forever.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rules::SnowflakeRule;

use crate::clock::Clock;
use crate::error::SequenceError;
use crate::lease::LeaseCell;

/// Bits of the millisecond timestamp.
pub const TIMESTAMP_BITS: u32 = 41;
/// Bits of the worker id.
pub const WORKER_BITS: u32 = 10;
/// Bits of the per-millisecond counter.
pub const COUNTER_BITS: u32 = 12;
const COUNTER_MAX: u64 = (1 << COUNTER_BITS) - 1;
const TIMESTAMP_LIMIT: u64 = 1 << TIMESTAMP_BITS;
/// Longest wait on top of the tolerance before a non-advancing clock is reported.
const WAIT_SLACK: Duration = Duration::from_secs(1);

/// The fields of a snowflake id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnowflakeParts {
    /// Milliseconds since the Unix epoch (the id's timestamp plus the sequence's epoch).
    pub unix_ms: u64,
    /// The worker id.
    pub worker_id: u16,
    /// The per-millisecond counter.
    pub counter: u16,
}

/// Splits `id` of a sequence whose epoch is `epoch_ms`.
pub fn decode(id: u64, epoch_ms: u64) -> SnowflakeParts {
    SnowflakeParts {
        unix_ms: (id >> (WORKER_BITS + COUNTER_BITS)) + epoch_ms,
        worker_id: ((id >> COUNTER_BITS) & ((1 << WORKER_BITS) - 1)) as u16,
        counter: (id & COUNTER_MAX) as u16,
    }
}

/// Where a generator's worker id comes from.
#[derive(Debug, Clone)]
pub(crate) enum Worker {
    Fixed(u16),
    Leased(Arc<LeaseCell>),
}

/// A snowflake id generator for one sequence.
pub struct Snowflake {
    name: String,
    epoch_ms: u64,
    tolerance_ms: u64,
    clock: Arc<dyn Clock>,
    worker: Worker,
    /// `timestamp << COUNTER_BITS | counter` of the last issued id (timestamps relative to
    /// the epoch).
    last: AtomicU64,
}

impl std::fmt::Debug for Snowflake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snowflake")
            .field("name", &self.name)
            .field("epoch_ms", &self.epoch_ms)
            .field("tolerance_ms", &self.tolerance_ms)
            .field("worker", &self.worker)
            .finish_non_exhaustive()
    }
}

/// What one attempt came to.
enum Attempt {
    Id(u64),
    /// Try again once the clock reads this (absolute ms).
    WaitUntil(u64),
}

impl Snowflake {
    /// A generator with a fixed worker id (`rule.worker_id` is ignored).
    pub fn new(name: &str, rule: &SnowflakeRule, worker_id: u16, clock: Arc<dyn Clock>) -> Self {
        Self::with_worker(name, rule, Worker::Fixed(worker_id & 0x3ff), clock)
    }

    pub(crate) fn with_worker(
        name: &str,
        rule: &SnowflakeRule,
        worker: Worker,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            name: name.to_owned(),
            epoch_ms: rule.epoch_ms,
            tolerance_ms: rule.max_clock_backward_ms,
            clock,
            worker,
            last: AtomicU64::new(0),
        }
    }

    /// The sequence's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The epoch, ms since the Unix epoch.
    pub fn epoch_ms(&self) -> u64 {
        self.epoch_ms
    }

    /// The next id, waiting (asynchronously) for the clock when it must.
    pub async fn next(&self) -> Result<u64, SequenceError> {
        let started = Instant::now();
        loop {
            match self.attempt()? {
                Attempt::Id(id) => return Ok(id),
                Attempt::WaitUntil(at) => {
                    let wait = self.wait_for(at, started)?;
                    if wait <= Duration::from_millis(1) {
                        // Counter used up: the next millisecond is moments away, and the
                        // timer wheel's 1 ms granularity would cost more than yielding.
                        tokio::task::yield_now().await;
                    } else {
                        tokio::time::sleep(wait).await;
                    }
                }
            }
        }
    }

    /// The next id, blocking the thread when it must wait for the clock.
    pub fn next_blocking(&self) -> Result<u64, SequenceError> {
        let started = Instant::now();
        loop {
            match self.attempt()? {
                Attempt::Id(id) => return Ok(id),
                Attempt::WaitUntil(at) => {
                    let wait = self.wait_for(at, started)?;
                    if wait <= Duration::from_millis(1) {
                        // Less than a millisecond: spin rather than give the CPU away for
                        // a whole scheduler time slice.
                        std::hint::spin_loop();
                    } else {
                        std::thread::sleep(wait);
                    }
                }
            }
        }
    }

    /// How long to wait for the clock to read `at`, or an error once waiting has gone on
    /// for longer than any legitimate wait.
    fn wait_for(&self, at: u64, started: Instant) -> Result<Duration, SequenceError> {
        if started.elapsed() > Duration::from_millis(self.tolerance_ms) + WAIT_SLACK {
            return Err(SequenceError::ClockUnusable {
                name: self.name.clone(),
                reason: format!(
                    "the clock did not reach {at} ms since 1970 within {:?}",
                    started.elapsed()
                ),
            });
        }
        let now = self.clock.now_ms();
        Ok(Duration::from_millis(at.saturating_sub(now)))
    }

    /// One try at an id.
    ///
    /// The clock is read *after* the last issued state is loaded: every timestamp in that
    /// state came from a clock reading taken before it, so a reading behind it means the
    /// clock really moved backwards, not that this thread was preempted between reading
    /// the clock and issuing (with 8 busy threads, a stale reading is easily 10 ms old).
    fn attempt(&self) -> Result<Attempt, SequenceError> {
        let mut current = self.last.load(Ordering::Acquire);
        loop {
            let now = self.clock.now_ms();
            let worker = match &self.worker {
                Worker::Fixed(w) => *w,
                Worker::Leased(cell) => {
                    cell.worker_at(now)
                        .map_err(|reason| SequenceError::NoWorkerId {
                            name: self.name.clone(),
                            reason,
                        })?
                }
            };
            let ts = match now.checked_sub(self.epoch_ms) {
                Some(ts) if ts < TIMESTAMP_LIMIT => ts,
                _ => {
                    return Err(SequenceError::ClockUnusable {
                        name: self.name.clone(),
                        reason: format!(
                            "the clock ({now} ms since 1970) is outside the 2^41 ms after the epoch ({} ms)",
                            self.epoch_ms
                        ),
                    })
                }
            };
            let last_ts = current >> COUNTER_BITS;
            let counter = current & COUNTER_MAX;
            let next = if ts > last_ts {
                ts << COUNTER_BITS
            } else if ts == last_ts {
                if counter == COUNTER_MAX {
                    return Ok(Attempt::WaitUntil(self.epoch_ms + last_ts + 1));
                }
                current + 1
            } else {
                let behind = last_ts - ts;
                if behind <= self.tolerance_ms {
                    return Ok(Attempt::WaitUntil(self.epoch_ms + last_ts));
                }
                return Err(SequenceError::ClockMovedBackwards {
                    name: self.name.clone(),
                    by_ms: behind,
                    tolerance_ms: self.tolerance_ms,
                });
            };
            match self.last.compare_exchange_weak(
                current,
                next,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    let id = ((next >> COUNTER_BITS) << (WORKER_BITS + COUNTER_BITS))
                        | (u64::from(worker) << COUNTER_BITS)
                        | (next & COUNTER_MAX);
                    return Ok(Attempt::Id(id));
                }
                Err(actual) => current = actual,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::thread;

    use super::*;
    use crate::clock::{ManualClock, SystemClock};
    use protocol::ClientError;

    const EPOCH: u64 = 1_704_067_200_000;

    fn rule(tolerance_ms: u64) -> SnowflakeRule {
        SnowflakeRule {
            worker_id: None,
            epoch_ms: EPOCH,
            max_clock_backward_ms: tolerance_ms,
        }
    }

    fn manual(at: u64) -> (Arc<ManualClock>, Arc<dyn Clock>) {
        let clock = Arc::new(ManualClock::new(at));
        let dynamic: Arc<dyn Clock> = clock.clone();
        (clock, dynamic)
    }

    fn id_of(a: Attempt) -> u64 {
        match a {
            Attempt::Id(id) => id,
            Attempt::WaitUntil(at) => panic!("expected an id, must wait until {at}"),
        }
    }

    #[test]
    fn layout() {
        let (_, clock) = manual(EPOCH + 5);
        let s = Snowflake::new("s", &rule(5), 1023, clock);
        let a = id_of(s.attempt().unwrap());
        let b = id_of(s.attempt().unwrap());
        assert_eq!(a, (5 << 22) | (1023 << 12));
        assert_eq!(b, a + 1);
        assert_eq!(
            decode(b, EPOCH),
            SnowflakeParts {
                unix_ms: EPOCH + 5,
                worker_id: 1023,
                counter: 1
            }
        );
        // The largest timestamp keeps the top bit clear.
        let last = ((TIMESTAMP_LIMIT - 1) << 22) | (1023 << 12) | COUNTER_MAX;
        assert_eq!(last, i64::MAX as u64);
    }

    #[test]
    fn counter_exhaustion_waits_for_the_next_millisecond() {
        let (clock, dynamic) = manual(EPOCH + 100);
        let s = Snowflake::new("s", &rule(5), 7, dynamic);
        let mut ids = Vec::new();
        for _ in 0..4096 {
            ids.push(id_of(s.attempt().unwrap()));
        }
        assert!(matches!(
            s.attempt(),
            Ok(Attempt::WaitUntil(at)) if at == EPOCH + 101
        ));
        // The blocking driver waits until the clock ticks.
        let ticker = {
            let clock = Arc::clone(&clock);
            thread::spawn(move || {
                thread::sleep(Duration::from_millis(20));
                clock.advance(1);
            })
        };
        let next = s.next_blocking().unwrap();
        ticker.join().unwrap();
        assert_eq!(decode(next, EPOCH).unix_ms, EPOCH + 101);
        assert_eq!(decode(next, EPOCH).counter, 0);
        ids.push(next);
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn small_backward_steps_wait_and_never_duplicate() {
        let (clock, dynamic) = manual(EPOCH + 1_000);
        let s = Snowflake::new("s", &rule(5), 1, dynamic);
        let mut seen = HashSet::new();
        let mut last = 0;
        for _ in 0..10 {
            let id = s.next_blocking().unwrap();
            assert!(id > last && seen.insert(id));
            last = id;
        }
        // Back 5 ms (the tolerance): the generator must wait, not reuse 995..1000.
        clock.set(EPOCH + 995);
        assert!(matches!(
            s.attempt(),
            Ok(Attempt::WaitUntil(at)) if at == EPOCH + 1_000
        ));
        let stepper = {
            let clock = Arc::clone(&clock);
            thread::spawn(move || {
                // Back to exactly the last issued millisecond, one step per 5 ms.
                for _ in 0..5 {
                    thread::sleep(Duration::from_millis(5));
                    clock.advance(1);
                }
            })
        };
        let started = Instant::now();
        let id = s.next_blocking().unwrap();
        assert!(
            started.elapsed() >= Duration::from_millis(20),
            "did not wait"
        );
        stepper.join().unwrap();
        assert!(id > last && seen.insert(id));
        // Same millisecond as before the step, next counter value.
        assert_eq!(decode(id, EPOCH).unix_ms, EPOCH + 1_000);
        assert_eq!(decode(id, EPOCH).counter, 10);
    }

    #[test]
    fn large_backward_steps_are_refused_until_the_clock_catches_up() {
        let (clock, dynamic) = manual(EPOCH + 100_000);
        let s = Snowflake::new("orders", &rule(5), 1, dynamic);
        let before = s.next_blocking().unwrap();
        clock.set(EPOCH + 99_994);
        let err = s.next_blocking().unwrap_err();
        assert_eq!(
            err,
            SequenceError::ClockMovedBackwards {
                name: "orders".into(),
                by_ms: 6,
                tolerance_ms: 5
            }
        );
        assert_eq!(err.code(), 1105);
        // Far backwards, e.g. an NTP step of a minute.
        clock.set(EPOCH + 100_000 - 60_000);
        assert!(matches!(
            s.next_blocking(),
            Err(SequenceError::ClockMovedBackwards { by_ms: 60_000, .. })
        ));
        clock.set(EPOCH + 100_000);
        let after = s.next_blocking().unwrap();
        assert!(after > before);
        assert_eq!(decode(after, EPOCH).unix_ms, EPOCH + 100_000);
        assert_eq!(decode(after, EPOCH).counter, 1);
    }

    #[test]
    fn zero_tolerance_refuses_every_backward_step() {
        let (clock, dynamic) = manual(EPOCH + 10);
        let s = Snowflake::new("s", &rule(0), 1, dynamic);
        s.next_blocking().unwrap();
        clock.set(EPOCH + 9);
        assert!(matches!(
            s.next_blocking(),
            Err(SequenceError::ClockMovedBackwards { by_ms: 1, .. })
        ));
    }

    #[test]
    fn a_clock_that_never_catches_up_is_reported() {
        let (clock, dynamic) = manual(EPOCH + 10);
        let s = Snowflake::new("s", &rule(5), 1, dynamic);
        s.next_blocking().unwrap();
        clock.set(EPOCH + 8);
        let started = Instant::now();
        let err = s.next_blocking().unwrap_err();
        assert!(matches!(err, SequenceError::ClockUnusable { .. }), "{err}");
        assert!(started.elapsed() < Duration::from_secs(3));
    }

    #[test]
    fn clock_outside_the_epoch_range() {
        let (_, clock) = manual(EPOCH - 1);
        let s = Snowflake::new("s", &rule(5), 1, clock);
        let err = s.next_blocking().unwrap_err();
        assert!(err.to_string().contains("outside the 2^41 ms"), "{err}");
        let (_, clock) = manual(EPOCH + TIMESTAMP_LIMIT);
        let s = Snowflake::new("s", &rule(5), 1, clock);
        assert!(s.next_blocking().is_err());
    }

    #[test]
    fn random_clock_walk_never_duplicates() {
        // A clock jittering back and forth within the tolerance, read between ids.
        let (clock, dynamic) = manual(EPOCH + 50_000);
        let s = Snowflake::new("s", &rule(5), 3, dynamic);
        let mut last = 0;
        let mut latest = clock.now_ms();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..50_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            match x % 8 {
                0 => clock.advance(1 + (x >> 8) % 3),
                // Back by 0-5 ms from the latest time seen: always within the tolerance.
                1 => clock.set(latest - (x >> 8) % 6),
                _ => {}
            }
            latest = latest.max(clock.now_ms());
            // Never wait here: with a manual clock, a wait would only time out.
            match s.attempt().unwrap() {
                Attempt::Id(id) => {
                    assert!(id > last, "{id} after {last}");
                    last = id;
                }
                Attempt::WaitUntil(at) => {
                    assert!(at <= latest + 1);
                    clock.set(at);
                    latest = latest.max(at);
                }
            }
        }
    }

    #[test]
    fn eight_threads_of_100k_ids_are_unique() {
        let s = Arc::new(Snowflake::new(
            "s",
            &rule(5),
            42,
            Arc::new(SystemClock) as Arc<dyn Clock>,
        ));
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let s = Arc::clone(&s);
                thread::spawn(move || {
                    let mut ids = Vec::with_capacity(100_000);
                    for _ in 0..100_000 {
                        ids.push(s.next_blocking().unwrap());
                    }
                    ids
                })
            })
            .collect();
        let mut all = HashSet::new();
        for h in handles {
            let ids = h.join().unwrap();
            assert!(ids.windows(2).all(|w| w[0] < w[1]), "per thread increasing");
            for id in ids {
                assert!(all.insert(id), "duplicate {id}");
            }
        }
        assert_eq!(all.len(), 800_000);
    }
}
