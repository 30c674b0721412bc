//! Compiled `[sequences.<name>]`: what kind of id generator a sequence is, its
//! parameters with defaults applied, and the column it fills.
//!
//! The `sequence` crate builds the generators from these; the router asks
//! [`crate::Rules::sequence_for_column`] which sequence fills a column an INSERT
//! omits. Nothing here generates ids.

/// The default `step` of a segment sequence.
pub const DEFAULT_SEGMENT_STEP: u32 = 1000;
/// The default `start` of a segment sequence.
pub const DEFAULT_SEGMENT_START: u64 = 1;
/// The default (and largest) `max` of a segment sequence: the largest signed BIGINT, so
/// ids fit any BIGINT column.
pub const DEFAULT_SEGMENT_MAX: u64 = i64::MAX as u64;
/// The default `max_range` of a segment sequence: one call of the range form cannot use up
/// a sequence (2^40 ids would have exhausted an `INT` column's at once).
pub const DEFAULT_SEGMENT_MAX_RANGE: u64 = 1_000_000;
/// The default snowflake `epoch`: 2024-01-01T00:00:00Z in ms since the Unix epoch.
pub const DEFAULT_SNOWFLAKE_EPOCH_MS: u64 = 1_704_067_200_000;
/// The default `max_clock_backward_ms` of a snowflake sequence.
pub const DEFAULT_MAX_CLOCK_BACKWARD_MS: u64 = 5;
/// Snowflake worker ids are 10 bits: 0 to 1023.
pub const MAX_WORKER_ID: u16 = 1023;

/// A validated sequence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SequenceRule {
    /// The sequence name as written (what `NEXTVAL(name)` names; matched case-insensitively).
    pub name: String,
    /// The generator and its parameters.
    pub kind: SequenceKind,
    /// The column this sequence fills, if any.
    pub fills: Option<ColumnRef>,
}

/// A table's column, as written in the rule file.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ColumnRef {
    /// The logical table (need not be named in `[tables]`).
    pub table: String,
    /// The column.
    pub column: String,
}

/// Which generator a sequence uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SequenceKind {
    /// Blocks of consecutive ids reserved in the meta data source.
    Segment(SegmentRule),
    /// Time-ordered 64-bit ids: timestamp, worker id, counter.
    Snowflake(SnowflakeRule),
}

impl SequenceKind {
    /// `segment` or `snowflake`, as in the rule file.
    pub fn name(&self) -> &'static str {
        match self {
            SequenceKind::Segment(_) => "segment",
            SequenceKind::Snowflake(_) => "snowflake",
        }
    }

    /// Whether this sequence keeps state in the meta data source.
    pub fn needs_meta(&self) -> bool {
        match self {
            SequenceKind::Segment(_) => true,
            SequenceKind::Snowflake(s) => s.worker_id.is_none(),
        }
    }
}

/// Parameters of a segment sequence. `start <= max`, `1 <= step <= 2^31-1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentRule {
    /// Ids reserved per round trip to the meta data source.
    pub step: u32,
    /// The first id ever handed out (ids below it are never handed out).
    pub start: u64,
    /// The largest id; past it the sequence has run out.
    pub max: u64,
    /// Most ids one range reservation (`NEXTVAL(seq, n)`) takes.
    pub max_range: u64,
}

/// Parameters of a snowflake sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnowflakeRule {
    /// A fixed worker id (at most [`MAX_WORKER_ID`]); `None` leases one from the meta data source.
    pub worker_id: Option<u16>,
    /// Timestamp origin in ms since the Unix epoch.
    pub epoch_ms: u64,
    /// Backward clock steps up to this many ms are waited out; larger ones are refused.
    pub max_clock_backward_ms: u64,
}
