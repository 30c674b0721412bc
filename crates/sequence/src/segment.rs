//! [`Segment`]: consecutive ids handed out from blocks reserved in the meta
//! data source (Meituan Leaf's segment mode), double-buffered.
//!
//! A block of `step` ids is reserved with one atomic call
//! ([`MetaStore::reserve`]), then handed out from memory under a short mutex.
//! Once a tenth of the current block is used, the next block is reserved by a
//! background task, so in steady state no caller waits for the database; a
//! caller waits only when both blocks are used up (at start, or when the
//! database is slower than the id rate; then raise `step`).
//!
//! Invariants: every id handed out is larger than every id handed out before
//! by this generator (`floor`), blocks are trimmed to `floor..=max` when
//! installed, and reserved-but-unused ids are dropped, never handed out twice.
//!
//! Meta data source down: ids already reserved (both blocks) are still handed
//! out. When they run out, the caller's fetch is retried
//! [`RetryPolicy::attempts`] times and then fails with
//! [`SequenceError::MetaUnavailable`]; a connection that broke is replaced at
//! once, and a server that cannot be connected to fails the fetch at once (its
//! writes fail fast while it is dead). For [`RetryPolicy::cooldown`] after a
//! failure, callers fail at once instead of piling up on a dead server.

use std::ops::Range;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use rules::SegmentRule;
use tokio::sync::Notify;

use crate::error::{SequenceError, StoreFailure};
use crate::store::{MetaStore, Reservation};

/// Most ids one [`Segment::next_n`] call hands out.
pub const MAX_IDS_PER_CALL: u64 = 1_000_000;
/// The next block is fetched once this share (in percent) of the current one is used.
const PREFETCH_AT_PERCENT: u64 = 10;

/// How calls to the meta data source are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Calls made before giving up (at least 1). Default 3.
    pub attempts: u32,
    /// Pause after the first failed call, doubled after each further one. Default 100 ms.
    pub backoff: Duration,
    /// After giving up, callers that would need the meta data source fail at once for this
    /// long. Default 1 s.
    pub cooldown: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 3,
            backoff: Duration::from_millis(100),
            cooldown: Duration::from_secs(1),
        }
    }
}

/// A segment id generator for one sequence.
pub struct Segment {
    inner: Arc<Inner>,
}

struct Inner {
    name: String,
    rule: SegmentRule,
    store: Arc<dyn MetaStore>,
    retry: RetryPolicy,
    state: Mutex<State>,
    /// Wakes callers waiting for a fetch to finish.
    fetched: Notify,
}

#[derive(Default)]
struct State {
    /// Ids not yet handed out of the current block.
    current: Range<u64>,
    /// The current block's size when installed (the prefetch threshold is a share of it).
    current_len: u64,
    /// The block fetched ahead.
    next: Option<Range<u64>>,
    /// Every id handed out so far is below this.
    floor: u64,
    /// A fetch is under way (background or by a waiting caller).
    fetching: bool,
    /// The store said no ids are left below `max`.
    exhausted: bool,
    last_failure: Option<(Instant, SequenceError)>,
}

impl State {
    /// Moves up to `want - out.len()` ids into `out`, switching to the next block as needed.
    fn take(&mut self, out: &mut Vec<u64>, want: usize) {
        loop {
            let n = (want - out.len()).min(range_len(&self.current));
            let first = self.current.start;
            out.extend(first..first + n as u64);
            self.current.start += n as u64;
            if n > 0 {
                self.floor = self.current.start;
            }
            if out.len() == want {
                return;
            }
            match self.next.take() {
                Some(block) => self.install_current(block),
                None => return,
            }
        }
    }

    fn install_current(&mut self, block: Range<u64>) {
        self.current_len = range_len(&block) as u64;
        self.current = block;
    }

    /// Whether the next block should be fetched now.
    fn wants_prefetch(&self, cooldown: Duration) -> bool {
        let used = self.current_len - range_len(&self.current) as u64;
        self.next.is_none()
            && !self.fetching
            && !self.exhausted
            && used * 100 >= self.current_len * PREFETCH_AT_PERCENT
            && !self.cooling_down(cooldown)
    }

    fn cooling_down(&self, cooldown: Duration) -> bool {
        self.last_failure
            .as_ref()
            .is_some_and(|(at, _)| at.elapsed() < cooldown)
    }

    /// Trims `block` to ids above everything handed out and at most `max`.
    fn trim(&self, block: Range<u64>, max: u64) -> Range<u64> {
        let start = block.start.max(self.floor);
        let end = block.end.min(max.saturating_add(1));
        start..end.max(start)
    }
}

fn range_len(r: &Range<u64>) -> usize {
    usize::try_from(r.end.saturating_sub(r.start)).unwrap_or(usize::MAX)
}

impl Segment {
    /// A generator for sequence `name`, reserving blocks in `store`.
    pub fn new(
        name: &str,
        rule: &SegmentRule,
        store: Arc<dyn MetaStore>,
        retry: RetryPolicy,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                name: name.to_owned(),
                rule: *rule,
                store,
                retry,
                state: Mutex::new(State::default()),
                fetched: Notify::new(),
            }),
        }
    }

    /// The sequence's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The next id.
    pub async fn next(&self) -> Result<u64, SequenceError> {
        // Fast path, without the Vec of `next_n`: an id of the current block.
        {
            let mut s = self.inner.lock();
            if !s.current.is_empty() {
                let id = s.current.start;
                s.current.start += 1;
                s.floor = s.current.start;
                self.inner.maybe_prefetch(&mut s);
                return Ok(id);
            }
        }
        let mut one = self.next_n(1).await?;
        one.pop()
            .ok_or_else(|| SequenceError::Config("no id handed out".into()))
    }

    /// `n` ids (1 to [`MAX_IDS_PER_CALL`]), strictly increasing, for the rows of a multi-row
    /// INSERT. They are consecutive unless the call crosses a block boundary.
    pub async fn next_n(&self, n: usize) -> Result<Vec<u64>, SequenceError> {
        if n == 0 || n as u64 > MAX_IDS_PER_CALL {
            return Err(SequenceError::BadCount {
                name: self.inner.name.clone(),
                count: n as u64,
                limit: MAX_IDS_PER_CALL,
            });
        }
        let inner = &self.inner;
        let mut out = Vec::with_capacity(n);
        loop {
            let waiting = {
                let mut s = inner.lock();
                s.take(&mut out, n);
                inner.maybe_prefetch(&mut s);
                if out.len() == n {
                    return Ok(out);
                }
                // Both blocks are used up.
                if s.exhausted {
                    return Err(inner.run_out());
                }
                if s.fetching {
                    // Registered before the lock is released, so the wake-up cannot be missed.
                    Some(inner.fetched.notified())
                } else if let Some((_, e)) = s
                    .last_failure
                    .as_ref()
                    .filter(|(at, _)| at.elapsed() < inner.retry.cooldown)
                {
                    return Err(e.clone());
                } else {
                    s.fetching = true;
                    None
                }
            };
            match waiting {
                Some(notified) => notified.await,
                None => {
                    let result = inner.fetch(u64::from(inner.rule.step)).await;
                    let failed = result.as_ref().err().cloned();
                    inner.install(result);
                    if let Some(e) = failed {
                        return Err(e);
                    }
                }
            }
        }
    }

    /// Reserves `n` consecutive ids (1 to the rule's `max_range`) for a batch loader, straight from
    /// the meta data source in one round trip. All `n` or an error: a range that would pass
    /// `max` fails with [`SequenceError::RunOut`]. The ids buffered in memory are below the
    /// range and are dropped, so ids handed out afterwards are still larger.
    pub async fn reserve_range(&self, n: u64) -> Result<Range<u64>, SequenceError> {
        let inner = &self.inner;
        // Checked before the meta data source is asked: it would reserve whatever is asked.
        if n == 0 || n > inner.rule.max_range {
            return Err(SequenceError::BadCount {
                name: inner.name.clone(),
                count: n,
                limit: inner.rule.max_range,
            });
        }
        let range = inner.fetch(n).await?;
        let mut s = inner.lock();
        let Some(range) = range.filter(|r| r.end <= inner.rule.max.saturating_add(1)) else {
            s.exhausted = true;
            return Err(inner.run_out());
        };
        s.floor = s.floor.max(range.end);
        s.current = s.trim(s.current.clone(), inner.rule.max);
        s.next = s
            .next
            .take()
            .map(|b| s.trim(b, inner.rule.max))
            .filter(|b| !b.is_empty());
        Ok(range)
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn run_out(&self) -> SequenceError {
        SequenceError::RunOut {
            name: self.name.clone(),
            max: self.rule.max,
        }
    }

    /// Reserves `count` ids, retrying as configured. `None`: past `max`.
    async fn fetch(&self, count: u64) -> Result<Option<Range<u64>>, SequenceError> {
        let request = Reservation {
            name: self.name.clone(),
            start: self.rule.start,
            step: self.rule.step,
            count,
            max: self.rule.max,
        };
        let attempts = self.retry.attempts.max(1);
        let mut pause = self.retry.backoff;
        let mut attempt = 1;
        loop {
            match self.store.reserve(&request).await {
                Ok(block) => return Ok(block),
                Err(e) if attempt >= attempts || e.failure == StoreFailure::Unreachable => {
                    tracing::warn!(sequence = %self.name, error = %e, attempts = attempt, "cannot reserve ids");
                    return Err(SequenceError::MetaUnavailable {
                        name: self.name.clone(),
                        source_name: e.source_name,
                        attempts: attempt,
                        reason: e.message,
                    });
                }
                Err(e) => {
                    tracing::debug!(sequence = %self.name, error = %e, attempt, "retrying id reservation");
                    if e.failure != StoreFailure::ConnectionLost {
                        tokio::time::sleep(pause).await;
                        pause *= 2;
                    }
                    attempt += 1;
                }
            }
        }
    }

    /// Records a finished fetch and wakes the callers waiting for it.
    fn install(&self, result: Result<Option<Range<u64>>, SequenceError>) {
        let mut s = self.lock();
        s.fetching = false;
        match result {
            Ok(Some(raw)) => {
                s.last_failure = None;
                if raw.end > self.rule.max {
                    // The store's next value is now past max: no further block exists.
                    s.exhausted = true;
                }
                let block = s.trim(raw, self.rule.max);
                if !block.is_empty() {
                    if s.current.is_empty() && s.next.is_none() {
                        s.install_current(block);
                    } else {
                        s.next = Some(block);
                    }
                }
            }
            Ok(None) => s.exhausted = true,
            Err(e) => s.last_failure = Some((Instant::now(), e)),
        }
        drop(s);
        self.fetched.notify_waiters();
    }

    /// Starts fetching the next block in the background if it is time to.
    fn maybe_prefetch(self: &Arc<Self>, s: &mut State) {
        if s.wants_prefetch(self.retry.cooldown) {
            // Off a tokio runtime the caller that runs out fetches in the foreground.
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                s.fetching = true;
                self.spawn_prefetch(&runtime);
            }
        }
    }

    /// Fetches the next block in the background (the caller has set `fetching`).
    fn spawn_prefetch(self: &Arc<Self>, runtime: &tokio::runtime::Handle) {
        let inner = Arc::clone(self);
        runtime.spawn(async move {
            let result = inner.fetch(u64::from(inner.rule.step)).await;
            inner.install(result);
        });
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::clock::SystemClock;
    use crate::memory::MemoryStore;
    use protocol::ClientError;

    fn store() -> Arc<MemoryStore> {
        Arc::new(MemoryStore::new(Arc::new(SystemClock)))
    }

    fn rule(step: u32, start: u64, max: u64) -> SegmentRule {
        SegmentRule {
            step,
            start,
            max,
            max_range: 1 << 40,
        }
    }

    fn quick_retry() -> RetryPolicy {
        RetryPolicy {
            attempts: 3,
            backoff: Duration::from_millis(1),
            cooldown: Duration::from_millis(50),
        }
    }

    fn segment(store: &Arc<MemoryStore>, rule: SegmentRule) -> Segment {
        Segment::new("s", &rule, store.clone(), quick_retry())
    }

    /// Waits (a little) until the store has been asked `calls` times.
    async fn until_calls(store: &MemoryStore, calls: u64) {
        for _ in 0..500 {
            if store.reserve_calls() >= calls {
                // Let the fetch that made the call install its block.
                tokio::time::sleep(Duration::from_millis(2)).await;
                return;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        panic!(
            "store called {} times, expected {calls}",
            store.reserve_calls()
        );
    }

    #[tokio::test]
    async fn consecutive_ids_across_blocks() {
        let store = store();
        let s = segment(&store, rule(10, 1, u64::MAX >> 1));
        let mut ids = Vec::new();
        for _ in 0..25 {
            ids.push(s.next().await.unwrap());
        }
        assert_eq!(ids, (1..=25).collect::<Vec<_>>());
        assert_eq!(s.next_n(10).await.unwrap(), (26..=35).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn double_buffering_fetches_before_the_block_runs_out() {
        let store = store();
        let s = segment(&store, rule(100, 1, u64::MAX >> 1));
        assert_eq!(s.next().await.unwrap(), 1);
        assert_eq!(store.reserve_calls(), 1);
        // 9 of 100 used: no prefetch yet.
        for _ in 0..8 {
            s.next().await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert_eq!(store.reserve_calls(), 1);
        // The 10th id crosses 10%: the next block is reserved in the background while 90
        // ids of the current block are left.
        assert_eq!(s.next().await.unwrap(), 10);
        until_calls(&store, 2).await;
        assert_eq!(store.next_value("s"), Some(201));
        let ids = s.next_n(100).await.unwrap();
        assert_eq!(ids, (11..=110).collect::<Vec<_>>());
        // Block 2 is 10% used now: block 3 is on its way, still ahead of need.
        until_calls(&store, 3).await;
        assert_eq!(store.next_value("s"), Some(301));
    }

    #[tokio::test]
    async fn steady_state_never_waits_for_the_store() {
        let store = store();
        store.set_delay(Duration::from_millis(20));
        let s = segment(&store, rule(100, 1, u64::MAX >> 1));
        s.next().await.unwrap(); // the first block is waited for
        let mut slow = 0;
        let mut last = 1;
        // 400 ids at ~1 per ms (4 blocks), while every reservation takes 20 ms.
        for _ in 0..400 {
            let started = Instant::now();
            let id = s.next().await.unwrap();
            if started.elapsed() > Duration::from_millis(10) {
                slow += 1;
            }
            assert_eq!(id, last + 1);
            last = id;
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert_eq!(slow, 0, "next() waited for the store");
        assert!(store.reserve_calls() >= 5);
    }

    #[tokio::test]
    async fn meta_down_serves_reserved_ids_then_fails_then_recovers() {
        let store = store();
        let s = segment(&store, rule(100, 1, u64::MAX >> 1));
        assert_eq!(s.next().await.unwrap(), 1);
        store.set_available(false);
        // The prefetch fails in the background; the current block is still served.
        for want in 2..=100 {
            assert_eq!(s.next().await.unwrap(), want);
        }
        let err = s.next().await.unwrap_err();
        assert!(
            matches!(&err, SequenceError::MetaUnavailable { source_name, attempts: 3, .. } if source_name == "memory"),
            "{err}"
        );
        assert_eq!((err.code(), err.sqlstate()), (1105, "HY000"));
        assert!(
            err.to_string().contains("meta data source 'memory'"),
            "{err}"
        );
        // Within the cooldown: fails at once, without asking the store.
        let calls = store.reserve_calls();
        assert!(s.next().await.is_err());
        assert_eq!(store.reserve_calls(), calls);
        store.set_available(true);
        tokio::time::sleep(Duration::from_millis(60)).await;
        let id = s.next().await.unwrap();
        assert!(id > 100, "{id}");
    }

    #[tokio::test]
    async fn run_out_at_max() {
        let store = store();
        let s = segment(&store, rule(10, 1, 25));
        let ids = s.next_n(25).await.unwrap();
        assert_eq!(ids, (1..=25).collect::<Vec<_>>());
        let err = s.next().await.unwrap_err();
        assert_eq!(
            err,
            SequenceError::RunOut {
                name: "s".into(),
                max: 25
            }
        );
        assert_eq!((err.code(), err.sqlstate()), (4084, "HY000"));
        // A restarted proxy is exhausted too.
        let again = segment(&store, rule(10, 1, 25));
        assert!(matches!(
            again.next().await,
            Err(SequenceError::RunOut { .. })
        ));
    }

    #[tokio::test]
    async fn start_is_respected_and_raising_it_skips_ahead() {
        let store = store();
        let s = segment(&store, rule(10, 1000, u64::MAX >> 1));
        assert_eq!(s.next().await.unwrap(), 1000);
        drop(s);
        let s = segment(&store, rule(10, 5000, u64::MAX >> 1));
        assert_eq!(s.next().await.unwrap(), 5000);
    }

    #[tokio::test]
    async fn restart_never_reuses() {
        let store = store();
        let mut seen = HashSet::new();
        for _ in 0..5 {
            let s = segment(&store, rule(50, 1, u64::MAX >> 1));
            for _ in 0..37 {
                assert!(seen.insert(s.next().await.unwrap()));
            }
        }
        assert_eq!(seen.len(), 185);
    }

    #[tokio::test]
    async fn range_form_is_consecutive_and_later_ids_are_larger() {
        let store = store();
        let s = segment(&store, rule(100, 1, u64::MAX >> 1));
        assert_eq!(s.next_n(20).await.unwrap().last(), Some(&20));
        until_calls(&store, 2).await; // block 101..201 buffered
        let range = s.reserve_range(1000).await.unwrap();
        assert_eq!(range, 201..1201);
        let after = s.next().await.unwrap();
        assert!(after >= 1201, "{after}");
        assert!(matches!(
            s.reserve_range(0).await,
            Err(SequenceError::BadCount { count: 0, .. })
        ));
        // A range that would pass max fails whole.
        let small = segment(&store, rule(10, 1, 100));
        assert!(matches!(
            small.reserve_range(101).await,
            Err(SequenceError::RunOut { .. })
        ));
    }

    #[tokio::test]
    async fn a_range_over_max_range_is_refused_before_the_meta_data_source_is_asked() {
        let store = store();
        let int_column = SegmentRule {
            max_range: 1000,
            ..rule(10, 1, 2_147_483_647)
        };
        let s = segment(&store, int_column);
        assert!(matches!(
            s.reserve_range(1 << 40).await,
            Err(SequenceError::BadCount { limit: 1000, .. })
        ));
        assert_eq!(store.reserve_calls(), 0);
        assert_eq!(s.reserve_range(1000).await.unwrap(), 1..1001);
    }

    #[tokio::test]
    async fn bad_counts() {
        let s = segment(&store(), rule(10, 1, 100));
        assert!(matches!(
            s.next_n(0).await,
            Err(SequenceError::BadCount { count: 0, .. })
        ));
        assert!(s.next_n(MAX_IDS_PER_CALL as usize + 1).await.is_err());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 8)]
    async fn eight_tasks_of_100k_ids_are_unique_and_increasing() {
        let store = store();
        let s = Arc::new(segment(&store, rule(1000, 1, u64::MAX >> 1)));
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let s = Arc::clone(&s);
                tokio::spawn(async move {
                    let mut ids = Vec::with_capacity(100_000);
                    for _ in 0..100_000 {
                        ids.push(s.next().await.unwrap());
                    }
                    ids
                })
            })
            .collect();
        let mut all = HashSet::new();
        for t in tasks {
            let ids = t.await.unwrap();
            assert!(ids.windows(2).all(|w| w[0] < w[1]));
            all.extend(ids);
        }
        assert_eq!(all.len(), 800_000);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn two_proxies_on_one_store_are_disjoint() {
        let store = store();
        store.set_delay(Duration::from_micros(200));
        let a = Arc::new(segment(&store, rule(100, 1, u64::MAX >> 1)));
        let b = Arc::new(segment(&store, rule(100, 1, u64::MAX >> 1)));
        let run = |s: Arc<Segment>| {
            tokio::spawn(async move {
                let mut ids = Vec::new();
                for i in 0..20_000 {
                    if i % 7 == 0 {
                        ids.extend(s.next_n(5).await.unwrap());
                    } else {
                        ids.push(s.next().await.unwrap());
                    }
                }
                ids
            })
        };
        let (x, y) = (run(a), run(b));
        let (x, y) = (x.await.unwrap(), y.await.unwrap());
        let xs: HashSet<u64> = x.iter().copied().collect();
        assert_eq!(xs.len(), x.len());
        assert!(y.iter().all(|id| !xs.contains(id)));
    }
}
