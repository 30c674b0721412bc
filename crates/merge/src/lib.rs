//! dbmesh's merge stage: rows from several shards become the one answer a
//! single database would give, as a [`router::MergeSpec`] describes.
//!
//! [`merge`] pulls row packets from the shards ([`Shards`]) and pushes the
//! client's row packets to a [`Sink`]; it does no I/O itself, so the same
//! code runs against sockets in the proxy and against vectors in tests and
//! benchmarks. Without aggregation, rows stream: a k-way merge of the shards'
//! sorted streams (or their concatenation), DISTINCT through a bounded set,
//! then OFFSET/LIMIT, stopping as soon as the limit is reached. With
//! aggregation, partial groups are combined in memory up to a limit
//! ([`aggregate`]), then filtered, sorted and limited. Hidden helper columns
//! never reach the client.

mod aggregate;
mod decimal;
mod eval;
mod group_concat;
mod row;
mod set_op;
mod value;

use std::collections::HashSet;
use std::future::Future;

use protocol::resultset::ColumnDef;
use router::{Col, MergeSpec};

pub use row::Row;
pub use value::format_double;

use value::{compare, group_key, kind_of, sortable, Kind, Value};

/// Why a merge failed (besides the shards' and the client's own errors).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MergeError {
    /// GROUP BY / DISTINCT state outgrew the configured bound.
    #[error("the merge of this statement across shards needs more than {0} bytes of memory (proxy.merge_memory_limit)")]
    MemoryLimit(usize),
    /// A merged DECIMAL beyond 38 digits.
    #[error("a DECIMAL value merged across shards exceeds 38 digits")]
    DecimalOverflow,
    /// The shards' results do not match each other or their metadata.
    #[error("malformed shard result: {0}")]
    Malformed(&'static str),
    /// A construct the merge cannot do correctly.
    #[error("This version of dbmesh doesn't yet support '{0}'")]
    Unsupported(&'static str),
    #[error("internal merge error: {0}")]
    Internal(&'static str),
}

/// What the client of a merge that failed sees.
impl protocol::ClientError for MergeError {
    fn code(&self) -> u16 {
        match self {
            // ER_OUT_OF_SORTMEMORY
            MergeError::MemoryLimit(_) => 1038,
            // ER_DATA_OUT_OF_RANGE
            MergeError::DecimalOverflow => 1690,
            MergeError::Unsupported(_) => 1235,
            MergeError::Malformed(_) | MergeError::Internal(_) => 1105,
        }
    }

    fn sqlstate(&self) -> &str {
        match self {
            MergeError::MemoryLimit(_) => "HY001",
            MergeError::DecimalOverflow => "22003",
            MergeError::Unsupported(_) => "42000",
            MergeError::Malformed(_) | MergeError::Internal(_) => "HY000",
        }
    }

    fn client_message(&self) -> std::borrow::Cow<'static, str> {
        format!("dbmesh: {self}").into()
    }
}

/// A merge's failure: the merge's own, or a shard's or the client's (`E`).
#[derive(Debug)]
pub enum Failure<E> {
    Merge(MergeError),
    Io(E),
}

impl<E> From<MergeError> for Failure<E> {
    fn from(e: MergeError) -> Self {
        Failure::Merge(e)
    }
}

/// The shape of the shards' rows.
#[derive(Debug, Clone)]
pub struct Layout {
    /// Every column the shards return, hidden ones last.
    pub columns: Vec<ColumnDef>,
    /// Columns the client sees.
    pub visible: usize,
    /// Binary-protocol rows (prepared statements) rather than text.
    pub binary: bool,
    kinds: Vec<Kind>,
}

impl Layout {
    /// `hidden` trailing columns of `columns` are helpers the client does not see.
    pub fn new(columns: Vec<ColumnDef>, hidden: usize, binary: bool) -> Result<Layout, MergeError> {
        let visible = columns
            .len()
            .checked_sub(hidden)
            .ok_or(MergeError::Malformed(
                "fewer columns than the merge's helper columns",
            ))?;
        Ok(Layout {
            kinds: columns.iter().map(kind_of).collect(),
            columns,
            visible,
            binary,
        })
    }

    fn index(&self, c: Col) -> usize {
        c.index(self.visible)
    }

    /// Digits after the point of column `c`'s values.
    fn scale(&self, c: usize) -> u32 {
        u32::from(self.columns[c].decimals.min(38))
    }
}

/// Where rows come from: shard `i`'s next row packet, `None` after its last.
pub trait Shards {
    type Error;
    fn count(&self) -> usize;
    fn next_row(
        &mut self,
        shard: usize,
    ) -> impl Future<Output = Result<Option<Vec<u8>>, Self::Error>>;
}

/// Where merged rows go.
pub trait Sink {
    type Error;
    fn row(&mut self, payload: &[u8]) -> impl Future<Output = Result<(), Self::Error>>;
}

/// Bounds of one merge.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Bytes of GROUP BY / DISTINCT state.
    pub memory: usize,
}

/// A warning the merge itself gives, as MariaDB words it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub code: u16,
    pub message: String,
}

/// What a merge sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Merged {
    /// Rows written to the sink.
    pub written: u64,
    /// What `FOUND_ROWS()` answers after the statement on MariaDB: the rows up to the end of
    /// its LIMIT, those OFFSET skipped included (`min(rows, offset + limit)`, 0 for LIMIT 0);
    /// for a set operation every row of its result.
    pub found: u64,
    /// The merge's own warnings (GROUP_CONCAT cut at `group_concat_max_len`), in the order
    /// MariaDB gives them.
    pub warnings: Vec<Warning>,
}

impl Merged {
    /// `total` result rows cut by the spec's OFFSET and LIMIT.
    fn of(spec: &MergeSpec, total: u64) -> Merged {
        let found = match spec.limit {
            Some(0) => 0,
            limit => total.min(spec.offset.saturating_add(limit.unwrap_or(u64::MAX))),
        };
        Merged {
            written: found.saturating_sub(spec.offset),
            found,
            warnings: Vec::new(),
        }
    }
}

/// Merges the shards' rows into `sink`. Shards may have unread rows left when a LIMIT ended
/// the merge early.
pub async fn merge<S, K, E>(
    spec: &MergeSpec,
    layout: &Layout,
    limits: Limits,
    shards: &mut S,
    sink: &mut K,
) -> Result<Merged, Failure<E>>
where
    S: Shards<Error = E>,
    K: Sink<Error = E>,
{
    for k in &spec.shape.order_by {
        let def = layout.columns.get(layout.index(k.column));
        if !def.is_some_and(sortable) {
            return Err(
                MergeError::Unsupported("ORDER BY an ENUM or SET column across shards").into(),
            );
        }
    }
    if let Some(op) = spec.shape.set_op {
        return set_op::run(op, spec, layout, limits.memory, shards, sink).await;
    }
    if let Some(agg) = &spec.shape.aggregation {
        let mut aggregator = aggregate::Aggregator::new(layout, agg, limits.memory)?;
        for shard in 0..shards.count() {
            while let Some(data) = shards.next_row(shard).await.map_err(Failure::Io)? {
                aggregator.add(Row::parse(data, layout)?)?;
            }
        }
        let finished = aggregator.finish(spec)?;
        for r in &finished.rows {
            sink.row(r).await.map_err(Failure::Io)?;
        }
        return Ok(Merged {
            warnings: finished.warnings,
            ..Merged::of(spec, finished.groups)
        });
    }

    let keys: Vec<(usize, bool)> = spec
        .shape
        .order_by
        .iter()
        .map(|k| (layout.index(k.column), k.descending))
        .collect();
    let mut out = Output {
        layout,
        skip: spec.offset,
        left: spec.limit.unwrap_or(u64::MAX),
        seen: spec.shape.distinct.then(HashSet::new),
        memory: 0,
        limit: limits.memory,
        written: 0,
        count_beyond: spec.found_beyond_limit,
        beyond: 0,
    };
    if out.left == 0 && !out.count_beyond {
        return Ok(Merged::of(spec, 0));
    }
    if keys.is_empty() {
        for shard in 0..shards.count() {
            while let Some(data) = shards.next_row(shard).await.map_err(Failure::Io)? {
                if !out.push(Row::parse(data, layout)?, sink).await? {
                    return Ok(out.merged(spec));
                }
            }
        }
        return Ok(out.merged(spec));
    }
    // k-way merge: each shard's head row with its sort values.
    let mut heads: Vec<Option<(Row, Vec<Value>)>> = Vec::with_capacity(shards.count());
    for shard in 0..shards.count() {
        heads.push(next_head(shards, shard, layout, &keys).await?);
    }
    loop {
        let mut best: Option<usize> = None;
        for (i, h) in heads.iter().enumerate() {
            let Some((_, values)) = h else { continue };
            let better = match best.and_then(|b| heads[b].as_ref()) {
                None => true,
                Some((_, bv)) => compare_keys(layout, &keys, values, bv).is_lt(),
            };
            if better {
                best = Some(i);
            }
        }
        let Some(i) = best else { break };
        let next = next_head(shards, i, layout, &keys).await?;
        let Some((row, _)) = std::mem::replace(&mut heads[i], next) else {
            break;
        };
        if !out.push(row, sink).await? {
            break;
        }
    }
    Ok(out.merged(spec))
}

async fn next_head<S: Shards>(
    shards: &mut S,
    shard: usize,
    layout: &Layout,
    keys: &[(usize, bool)],
) -> Result<Option<(Row, Vec<Value>)>, Failure<S::Error>> {
    let Some(data) = shards.next_row(shard).await.map_err(Failure::Io)? else {
        return Ok(None);
    };
    let row = Row::parse(data, layout)?;
    let values = keys.iter().map(|&(c, _)| row.value(c, layout)).collect();
    Ok(Some((row, values)))
}

fn compare_keys(
    layout: &Layout,
    keys: &[(usize, bool)],
    a: &[Value],
    b: &[Value],
) -> std::cmp::Ordering {
    for (k, &(c, desc)) in keys.iter().enumerate() {
        let o = compare(layout.kinds[c], &a[k], &b[k]);
        let o = if desc { o.reverse() } else { o };
        if o.is_ne() {
            return o;
        }
    }
    std::cmp::Ordering::Equal
}

/// DISTINCT, OFFSET and LIMIT over a stream of rows.
struct Output<'a> {
    layout: &'a Layout,
    skip: u64,
    left: u64,
    seen: Option<HashSet<Vec<u8>>>,
    memory: usize,
    limit: usize,
    written: u64,
    /// Rows past the LIMIT are read and counted, not sent ([`MergeSpec::found_beyond_limit`]).
    count_beyond: bool,
    beyond: u64,
}

impl Output<'_> {
    /// What was sent once the stream ended or the limit was reached: the rows OFFSET skipped
    /// count for `FOUND_ROWS()`, and those past the LIMIT when they are counted.
    fn merged(&self, spec: &MergeSpec) -> Merged {
        Merged {
            written: self.written,
            found: spec.offset - self.skip + self.written + self.beyond,
            warnings: Vec::new(),
        }
    }

    /// Writes `row` if it passes; `false` once the limit is reached.
    async fn push<K: Sink>(&mut self, row: Row, sink: &mut K) -> Result<bool, Failure<K::Error>> {
        if let Some(seen) = &mut self.seen {
            let mut key = Vec::new();
            for c in 0..self.layout.visible {
                group_key(self.layout.kinds[c], &row.value(c, self.layout), &mut key);
            }
            let len = key.len();
            if !seen.insert(key) {
                return Ok(true);
            }
            self.memory += len * 2 + 48;
            if self.memory > self.limit {
                return Err(MergeError::MemoryLimit(self.limit).into());
            }
        }
        if self.skip > 0 {
            self.skip -= 1;
            return Ok(true);
        }
        if self.left == 0 {
            // Only reached when rows past the LIMIT are counted.
            self.beyond += 1;
            return Ok(true);
        }
        sink.row(&row.into_visible_payload(self.layout))
            .await
            .map_err(Failure::Io)?;
        self.written += 1;
        self.left -= 1;
        Ok(self.left > 0 || self.count_beyond)
    }
}
