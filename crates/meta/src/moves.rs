//! Rebalancing moves: what `dbmesh rebalance` is doing or did, so that `status` can show it,
//! another process can ask it to cut over or abort, and a rebalancer killed at any step
//! resumes where it stopped (no finished chunk copied again).
//!
//! ```sql
//! CREATE TABLE IF NOT EXISTS dbmesh_move (
//!   id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
//!   slices VARCHAR(400) NOT NULL,           -- '30-44'
//!   destination VARCHAR(255) NOT NULL,      -- 'ds_4' as the DBA named it
//!   tables TEXT NOT NULL,                   -- 'payment:30-44' (each for its binding group)
//!   from_version BIGINT UNSIGNED NOT NULL,  -- the slice-map version the plan was made from
//!   plan TEXT NOT NULL,                     -- the plan, for people
//!   phase VARCHAR(32) NOT NULL,             -- copying, catching_up, verified, ...
//!   requested VARCHAR(32) NOT NULL,         -- '' | 'cutover' | 'abort', from another process
//!   error TEXT NOT NULL,                    -- why the driver stopped, '' when it did not fail
//!   driver VARCHAR(255) NOT NULL,           -- who drives it ('' none)
//!   driver_expires_at DATETIME(3) NOT NULL, -- the driver's lease
//!   created_at DATETIME(3) NOT NULL,
//!   updated_at DATETIME(3) NOT NULL);
//! CREATE TABLE IF NOT EXISTS dbmesh_move_source (   -- one per source data source
//!   move_id BIGINT UNSIGNED NOT NULL, data_source VARCHAR(64) NOT NULL,
//!   start_position TEXT NOT NULL,     -- where the catch-up starts: before the first snapshot
//!   snapshot_position TEXT NOT NULL,  -- the first snapshot's position
//!   processed_position TEXT NOT NULL, -- applied on the destination through here ('' none yet)
//!   updated_at DATETIME(3) NOT NULL,
//!   PRIMARY KEY (move_id, data_source));
//! CREATE TABLE IF NOT EXISTS dbmesh_move_node (     -- one per source physical table
//!   move_id BIGINT UNSIGNED NOT NULL, source_node VARCHAR(200) NOT NULL,
//!   destination_node VARCHAR(200) NOT NULL,
//!   cursor_key TEXT NULL,             -- the last copied primary key (SQL literals), NULL none
//!   rows_copied BIGINT UNSIGNED NOT NULL, rows_total BIGINT UNSIGNED NOT NULL,
//!   chunks BIGINT UNSIGNED NOT NULL, done TINYINT NOT NULL,
//!   PRIMARY KEY (move_id, source_node));
//! CREATE TABLE IF NOT EXISTS dbmesh_move_chunk (    -- one per chunk copied
//!   move_id BIGINT UNSIGNED NOT NULL, source_node VARCHAR(200) NOT NULL,
//!   seq BIGINT UNSIGNED NOT NULL, after_key TEXT NULL, last_key TEXT NOT NULL,
//!   row_count INT UNSIGNED NOT NULL, copied_at DATETIME(3) NOT NULL,
//!   PRIMARY KEY (move_id, source_node, seq));
//! ```
//!
//! Positions are MariaDB GTID lists as text; keys are SQL literals (the rebalancer writes and
//! reads both). A move has at most one *driver* at a time: the process holding its lease,
//! renewed with every checkpoint; a lapsed lease can be taken over. A move in progress (not
//! aborted nor cleaned up) owns its slices: another move of any of them is refused.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use backend::quote_literal;

use crate::fence::{format_tables, parse_tables};
use crate::proxies::expiry;
use crate::{Meta, MetaError, SliceSet};

pub(crate) const CREATE: &str = "CREATE TABLE IF NOT EXISTS dbmesh_move (\
    id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY, \
    slices VARCHAR(400) NOT NULL, \
    destination VARCHAR(255) NOT NULL, \
    tables TEXT NOT NULL, \
    from_version BIGINT UNSIGNED NOT NULL, \
    plan TEXT NOT NULL, \
    phase VARCHAR(32) NOT NULL, \
    requested VARCHAR(32) NOT NULL, \
    error TEXT NOT NULL, \
    driver VARCHAR(255) NOT NULL, \
    driver_expires_at DATETIME(3) NOT NULL, \
    created_at DATETIME(3) NOT NULL, \
    updated_at DATETIME(3) NOT NULL); \
    CREATE TABLE IF NOT EXISTS dbmesh_move_source (\
    move_id BIGINT UNSIGNED NOT NULL, \
    data_source VARCHAR(64) NOT NULL, \
    start_position TEXT NOT NULL, \
    snapshot_position TEXT NOT NULL, \
    processed_position TEXT NOT NULL, \
    updated_at DATETIME(3) NOT NULL, \
    PRIMARY KEY (move_id, data_source)); \
    CREATE TABLE IF NOT EXISTS dbmesh_move_node (\
    move_id BIGINT UNSIGNED NOT NULL, \
    source_node VARCHAR(200) NOT NULL, \
    destination_node VARCHAR(200) NOT NULL, \
    cursor_key TEXT NULL, \
    rows_copied BIGINT UNSIGNED NOT NULL, \
    rows_total BIGINT UNSIGNED NOT NULL, \
    chunks BIGINT UNSIGNED NOT NULL, \
    done TINYINT NOT NULL, \
    PRIMARY KEY (move_id, source_node)); \
    CREATE TABLE IF NOT EXISTS dbmesh_move_chunk (\
    move_id BIGINT UNSIGNED NOT NULL, \
    source_node VARCHAR(200) NOT NULL, \
    seq BIGINT UNSIGNED NOT NULL, \
    after_key TEXT NULL, \
    last_key TEXT NOT NULL, \
    row_count INT UNSIGNED NOT NULL, \
    copied_at DATETIME(3) NOT NULL, \
    PRIMARY KEY (move_id, source_node, seq))";

/// Where a move is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    /// Copying the moving rows from snapshots of the sources.
    Copying,
    /// Copied; applying the sources' binlogs to the destination.
    CatchingUp,
    /// A verification found source and destination equal.
    Verified,
    /// A cutover is fencing writes and switching the slice map.
    CuttingOver,
    /// The destination owns the slices (changes flow back until cleanup).
    CutOver,
    /// Given up; the sources own the slices.
    Aborted,
    /// Cut over and the moved rows deleted from the sources: finished.
    CleanedUp,
}

impl Phase {
    pub const ALL: [Phase; 7] = [
        Phase::Copying,
        Phase::CatchingUp,
        Phase::Verified,
        Phase::CuttingOver,
        Phase::CutOver,
        Phase::Aborted,
        Phase::CleanedUp,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Copying => "copying",
            Phase::CatchingUp => "catching_up",
            Phase::Verified => "verified",
            Phase::CuttingOver => "cutting_over",
            Phase::CutOver => "cut_over",
            Phase::Aborted => "aborted",
            Phase::CleanedUp => "cleaned_up",
        }
    }

    /// Whether the move is over: its slices are free for another move.
    pub fn is_finished(self) -> bool {
        matches!(self, Phase::Aborted | Phase::CleanedUp)
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Phase {
    type Err = String;

    fn from_str(text: &str) -> Result<Phase, String> {
        Phase::ALL
            .into_iter()
            .find(|p| p.as_str() == text)
            .ok_or_else(|| format!("'{text}' is not a move phase"))
    }
}

/// What another process asked the driver of a move to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    Cutover,
    Abort,
}

impl Request {
    pub fn as_str(self) -> &'static str {
        match self {
            Request::Cutover => "cutover",
            Request::Abort => "abort",
        }
    }

    fn parse(text: &str) -> Result<Option<Request>, MetaError> {
        match text {
            "" => Ok(None),
            "cutover" => Ok(Some(Request::Cutover)),
            "abort" => Ok(Some(Request::Abort)),
            other => Err(MetaError::Corrupt {
                what: "move request",
                reason: other.to_string(),
            }),
        }
    }
}

/// A move to record ([`create`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMove {
    pub slices: SliceSet,
    pub destination: String,
    /// Logical table (each for its binding group) → its moving slices.
    pub tables: BTreeMap<String, SliceSet>,
    pub from_version: u64,
    /// The plan, for people.
    pub plan: String,
    /// The source data sources.
    pub sources: Vec<String>,
    /// `(source node, destination node)` per source physical table, as `ds.table`.
    pub nodes: Vec<(String, String)>,
}

/// A move as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoveRecord {
    pub id: u64,
    pub slices: SliceSet,
    pub destination: String,
    pub tables: BTreeMap<String, SliceSet>,
    pub from_version: u64,
    pub plan: String,
    pub phase: Phase,
    pub requested: Option<Request>,
    /// Why the last driver stopped with an error; empty otherwise.
    pub error: String,
    /// Who drives it; empty when nobody ever did or it was released.
    pub driver: String,
    /// The driver's lease left, by the meta server's clock; `None` when lapsed or released.
    pub driver_remaining: Option<Duration>,
    pub created_at: String,
    pub updated_at: String,
    pub sources: Vec<SourceState>,
    pub nodes: Vec<NodeState>,
}

/// The catch-up state of one source data source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceState {
    pub data_source: String,
    /// Where the catch-up starts when it never ran: read before the first snapshot. Empty
    /// until then.
    pub start_position: String,
    /// The first snapshot's position.
    pub snapshot_position: String,
    /// Applied on the destination through here; empty before the catch-up saved any.
    pub processed_position: String,
    pub updated_at: String,
}

impl SourceState {
    /// Where a catch-up resumes: the processed position, or the start before any.
    pub fn resume_position(&self) -> &str {
        if self.processed_position.is_empty() {
            &self.start_position
        } else {
            &self.processed_position
        }
    }
}

/// The copy of one source physical table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeState {
    pub source_node: String,
    pub destination_node: String,
    /// The primary key of the last row copied (SQL literals); `None` before the first chunk.
    pub cursor: Option<String>,
    pub rows_copied: u64,
    /// The moving rows counted at the first snapshot (0 before).
    pub rows_total: u64,
    pub chunks: u64,
    pub done: bool,
}

/// One chunk copied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkRecord {
    pub source_node: String,
    pub seq: u64,
    /// The key it started after (`None`: the table's first rows).
    pub after_key: Option<String>,
    pub last_key: String,
    pub rows: u64,
}

fn corrupt(what: &'static str) -> impl Fn(String) -> MetaError {
    move |reason| MetaError::Corrupt { what, reason }
}

fn number(what: &'static str, text: &str) -> Result<u64, MetaError> {
    text.parse()
        .map_err(|_| corrupt(what)(format!("'{text}' is not a number")))
}

/// Records a new move in phase `copying`, driven by `driver` for `lease`; its id. Refused
/// (`Conflict`) when a move in progress holds any of its slices of any of its tables.
pub async fn create(
    meta: &mut Meta,
    new: &NewMove,
    driver: &str,
    lease: Duration,
) -> Result<u64, MetaError> {
    meta.query("BEGIN").await?;
    let created = create_in_transaction(meta, new, driver, lease).await;
    let end = if created.is_ok() {
        "COMMIT"
    } else {
        "ROLLBACK"
    };
    let ended = meta.query(end).await;
    let id = created?;
    ended.map(|_| id)
}

async fn create_in_transaction(
    meta: &mut Meta,
    new: &NewMove,
    driver: &str,
    lease: Duration,
) -> Result<u64, MetaError> {
    // The fence row serializes the writers of moves, as it does those of map versions.
    meta.query("SELECT epoch FROM dbmesh_fence WHERE id = 1 FOR UPDATE")
        .await?;
    let finished = finished_phases();
    let active = meta
        .query(&format!(
            "SELECT id, tables, phase FROM dbmesh_move WHERE phase NOT IN ({finished})"
        ))
        .await?;
    for row in &active.rows {
        let cell = |i: usize| row.get(i).cloned().flatten().unwrap_or_default();
        let tables = parse_tables(&cell(1)).map_err(corrupt("move tables"))?;
        for (table, slices) in &new.tables {
            let Some(theirs) = tables.get(table) else {
                continue;
            };
            let both = slices.intersection(theirs);
            if !both.is_empty() {
                return Err(MetaError::Conflict(format!(
                    "move {} ({}) already moves slices {both} of {table}: finish or abort it first",
                    cell(0),
                    cell(2)
                )));
            }
        }
    }
    let result = meta
        .query(&format!(
            "INSERT INTO dbmesh_move (slices, destination, tables, from_version, plan, phase, \
             requested, error, driver, driver_expires_at, created_at, updated_at) \
             VALUES ({slices}, {destination}, {tables}, {from_version}, {plan}, 'copying', '', '', \
             {driver}, {expiry}, UTC_TIMESTAMP(3), UTC_TIMESTAMP(3))",
            slices = quote_literal(&new.slices.to_string()),
            destination = quote_literal(&new.destination),
            tables = quote_literal(&format_tables(&new.tables)),
            from_version = new.from_version,
            plan = quote_literal(&new.plan),
            driver = quote_literal(driver),
            expiry = expiry(lease),
        ))
        .await?;
    let id = result.ok.last_insert_id;
    for source in &new.sources {
        meta.query(&format!(
            "INSERT INTO dbmesh_move_source VALUES ({id}, {}, '', '', '', UTC_TIMESTAMP(3))",
            quote_literal(source)
        ))
        .await?;
    }
    for (source, destination) in &new.nodes {
        meta.query(&format!(
            "INSERT INTO dbmesh_move_node VALUES ({id}, {}, {}, NULL, 0, 0, 0, 0)",
            quote_literal(source),
            quote_literal(destination)
        ))
        .await?;
    }
    Ok(id)
}

fn finished_phases() -> String {
    Phase::ALL
        .into_iter()
        .filter(|p| p.is_finished())
        .map(|p| format!("'{p}'"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Takes the driver's lease of move `id` for `driver` (also when it holds it already);
/// `Conflict` naming the holder when another driver's lease still runs.
pub async fn take_driver(
    meta: &mut Meta,
    id: u64,
    driver: &str,
    lease: Duration,
) -> Result<(), MetaError> {
    let sql = format!(
        "UPDATE dbmesh_move SET driver = {me}, driver_expires_at = {expiry}, \
         updated_at = UTC_TIMESTAMP(3) \
         WHERE id = {id} AND (driver = '' OR driver = {me} OR driver_expires_at <= UTC_TIMESTAMP(3))",
        me = quote_literal(driver),
        expiry = expiry(lease),
    );
    if meta.query(&sql).await?.ok.affected_rows == 1 {
        return Ok(());
    }
    match get(meta, id).await? {
        None => Err(MetaError::Conflict(format!("there is no move {id}"))),
        Some(other) => Err(MetaError::Conflict(format!(
            "move {id} is driven by {} (lease {} more): wait for it, or stop that process",
            other.driver,
            other
                .driver_remaining
                .map_or_else(|| "lapsing".into(), |d| format!("{:.1} s", d.as_secs_f64()))
        ))),
    }
}

/// Ends `driver`'s lease of move `id` now (it stopped): another process may drive it.
pub async fn release_driver(meta: &mut Meta, id: u64, driver: &str) -> Result<(), MetaError> {
    meta.query(&format!(
        "UPDATE dbmesh_move SET driver_expires_at = UTC_TIMESTAMP(3), updated_at = UTC_TIMESTAMP(3) \
         WHERE id = {id} AND driver = {}",
        quote_literal(driver)
    ))
    .await
    .map(drop)
}

/// The condition that `driver` still holds the lease of move `id`.
fn driven_by(id: u64, driver: &str) -> String {
    format!(
        "id = {id} AND driver = {} AND driver_expires_at > UTC_TIMESTAMP(3)",
        quote_literal(driver)
    )
}

fn lost_lease(id: u64, driver: &str) -> MetaError {
    MetaError::Conflict(format!(
        "{driver} no longer holds the lease of move {id} (it lapsed, or another process took it over)"
    ))
}

/// Renews `driver`'s lease of move `id` and saves each `(data source, processed position)`:
/// the catch-up's checkpoint, every second. `Conflict` when the lease was lost.
pub async fn checkpoint(
    meta: &mut Meta,
    id: u64,
    driver: &str,
    lease: Duration,
    processed: &[(String, String)],
) -> Result<(), MetaError> {
    let renewed = meta
        .query(&format!(
            "UPDATE dbmesh_move SET driver_expires_at = {}, updated_at = UTC_TIMESTAMP(3) WHERE {}",
            expiry(lease),
            driven_by(id, driver)
        ))
        .await?;
    if renewed.ok.affected_rows != 1 {
        return Err(lost_lease(id, driver));
    }
    for (source, position) in processed {
        meta.query(&format!(
            "UPDATE dbmesh_move_source SET processed_position = {}, updated_at = UTC_TIMESTAMP(3) \
             WHERE move_id = {id} AND data_source = {}",
            quote_literal(position),
            quote_literal(source)
        ))
        .await?;
    }
    Ok(())
}

/// Records a snapshot of `source` taken for move `id`: the first one's `start` (where its
/// catch-up must begin) and `snapshot` positions are kept, later ones change nothing (a
/// catch-up from the oldest position converges for rows of every later snapshot too).
pub async fn record_snapshot(
    meta: &mut Meta,
    id: u64,
    source: &str,
    start: &str,
    snapshot: &str,
) -> Result<(), MetaError> {
    meta.query(&format!(
        "UPDATE dbmesh_move_source SET start_position = {}, snapshot_position = {}, \
         updated_at = UTC_TIMESTAMP(3) \
         WHERE move_id = {id} AND data_source = {} AND start_position = ''",
        quote_literal(start),
        quote_literal(snapshot),
        quote_literal(source)
    ))
    .await
    .map(drop)
}

/// Records the moving rows of `source_node` counted at the first snapshot.
pub async fn set_rows_total(
    meta: &mut Meta,
    id: u64,
    source_node: &str,
    rows: u64,
) -> Result<(), MetaError> {
    meta.query(&format!(
        "UPDATE dbmesh_move_node SET rows_total = {rows} \
         WHERE move_id = {id} AND source_node = {}",
        quote_literal(source_node)
    ))
    .await
    .map(drop)
}

/// Records a chunk of `source_node` copied by `driver` (rows after `chunk.after_key`
/// through `chunk.last_key`) and moves the node's cursor to its last key, in one
/// transaction, only while `driver` holds the lease. `Conflict` when it does not, or when
/// the cursor is no longer `after_key` (another process copied meanwhile).
pub async fn record_chunk(
    meta: &mut Meta,
    id: u64,
    driver: &str,
    chunk: &ChunkRecord,
) -> Result<(), MetaError> {
    meta.query("BEGIN").await?;
    let recorded = record_chunk_in_transaction(meta, id, driver, chunk).await;
    let end = if recorded.is_ok() {
        "COMMIT"
    } else {
        "ROLLBACK"
    };
    let ended = meta.query(end).await;
    recorded?;
    ended.map(drop)
}

async fn record_chunk_in_transaction(
    meta: &mut Meta,
    id: u64,
    driver: &str,
    chunk: &ChunkRecord,
) -> Result<(), MetaError> {
    let held = meta
        .query(&format!(
            "SELECT id FROM dbmesh_move WHERE {} FOR UPDATE",
            driven_by(id, driver)
        ))
        .await?;
    if held.rows.is_empty() {
        return Err(lost_lease(id, driver));
    }
    let node = quote_literal(&chunk.source_node);
    let after = chunk
        .after_key
        .as_deref()
        .map_or_else(|| "NULL".to_string(), quote_literal);
    let moved = meta
        .query(&format!(
            "UPDATE dbmesh_move_node SET cursor_key = {last}, rows_copied = rows_copied + {rows}, \
             chunks = chunks + 1 \
             WHERE move_id = {id} AND source_node = {node} AND cursor_key <=> {after} AND chunks + 1 = {seq}",
            last = quote_literal(&chunk.last_key),
            rows = chunk.rows,
            seq = chunk.seq,
        ))
        .await?;
    if moved.ok.affected_rows != 1 {
        return Err(MetaError::Conflict(format!(
            "the copy cursor of {} in move {id} is no longer where chunk {} began",
            chunk.source_node, chunk.seq
        )));
    }
    meta.query(&format!(
        "INSERT INTO dbmesh_move_chunk VALUES ({id}, {node}, {seq}, {after}, {last}, {rows}, \
         UTC_TIMESTAMP(3))",
        seq = chunk.seq,
        last = quote_literal(&chunk.last_key),
        rows = chunk.rows,
    ))
    .await
    .map(drop)
}

/// Marks the copy of `source_node` finished.
pub async fn finish_node(meta: &mut Meta, id: u64, source_node: &str) -> Result<(), MetaError> {
    meta.query(&format!(
        "UPDATE dbmesh_move_node SET done = 1 WHERE move_id = {id} AND source_node = {}",
        quote_literal(source_node)
    ))
    .await
    .map(drop)
}

/// Moves move `id` from phase `from` to `to`; `Conflict` when it is not in `from` (another
/// process moved it on).
pub async fn set_phase(meta: &mut Meta, id: u64, from: Phase, to: Phase) -> Result<(), MetaError> {
    let result = meta
        .query(&format!(
            "UPDATE dbmesh_move SET phase = '{to}', updated_at = UTC_TIMESTAMP(3) \
             WHERE id = {id} AND phase = '{from}'"
        ))
        .await?;
    if result.ok.affected_rows == 1 {
        return Ok(());
    }
    Err(MetaError::Conflict(format!(
        "move {id} is not {from} (it cannot become {to})"
    )))
}

/// Asks the driver of move `id` to cut over or abort (`None` withdraws the request).
pub async fn request(meta: &mut Meta, id: u64, what: Option<Request>) -> Result<(), MetaError> {
    let result = meta
        .query(&format!(
            "UPDATE dbmesh_move SET requested = '{}', updated_at = UTC_TIMESTAMP(3) WHERE id = {id}",
            what.map_or("", Request::as_str)
        ))
        .await?;
    if result.ok.affected_rows == 1 {
        Ok(())
    } else {
        Err(MetaError::Conflict(format!("there is no move {id}")))
    }
}

/// Records why move `id`'s driver stopped (empty: it did not fail).
pub async fn set_error(meta: &mut Meta, id: u64, error: &str) -> Result<(), MetaError> {
    meta.query(&format!(
        "UPDATE dbmesh_move SET error = {}, updated_at = UTC_TIMESTAMP(3) WHERE id = {id}",
        quote_literal(error)
    ))
    .await
    .map(drop)
}

const MOVE_COLUMNS: &str = "id, slices, destination, tables, from_version, plan, phase, \
    requested, error, driver, \
    TIMESTAMPDIFF(MICROSECOND, UTC_TIMESTAMP(3), driver_expires_at), \
    DATE_FORMAT(created_at, '%Y-%m-%d %H:%i:%s.%f'), DATE_FORMAT(updated_at, '%Y-%m-%d %H:%i:%s.%f')";

/// Move `id` with its sources and nodes, if there is one.
pub async fn get(meta: &mut Meta, id: u64) -> Result<Option<MoveRecord>, MetaError> {
    Ok(read_moves(meta, &format!("id = {id}")).await?.pop())
}

/// Every move, oldest first.
pub async fn list(meta: &mut Meta) -> Result<Vec<MoveRecord>, MetaError> {
    read_moves(meta, "TRUE").await
}

/// The newest move in progress (not aborted nor cleaned up), if any.
pub async fn current(meta: &mut Meta) -> Result<Option<MoveRecord>, MetaError> {
    let finished = finished_phases();
    Ok(read_moves(meta, &format!("phase NOT IN ({finished})"))
        .await?
        .pop())
}

async fn read_moves(meta: &mut Meta, filter: &str) -> Result<Vec<MoveRecord>, MetaError> {
    let result = meta
        .query(&format!(
            "SELECT {MOVE_COLUMNS} FROM dbmesh_move WHERE {filter} ORDER BY id"
        ))
        .await?;
    let mut moves = Vec::new();
    for row in result.rows {
        let cell = |i: usize| row.get(i).cloned().flatten().unwrap_or_default();
        let id = number("move id", &cell(0))?;
        let remaining: i64 = cell(10).parse().unwrap_or(0);
        moves.push(MoveRecord {
            id,
            slices: cell(1).parse().map_err(corrupt("move slices"))?,
            destination: cell(2),
            tables: parse_tables(&cell(3)).map_err(corrupt("move tables"))?,
            from_version: number("move map version", &cell(4))?,
            plan: cell(5),
            phase: cell(6).parse().map_err(corrupt("move phase"))?,
            requested: Request::parse(&cell(7))?,
            error: cell(8),
            driver: cell(9),
            driver_remaining: (remaining > 0)
                .then(|| Duration::from_micros(remaining.unsigned_abs())),
            created_at: cell(11),
            updated_at: cell(12),
            sources: Vec::new(),
            nodes: Vec::new(),
        });
    }
    for record in &mut moves {
        let id = record.id;
        let sources = meta
            .query(&format!(
                "SELECT data_source, start_position, snapshot_position, processed_position, \
                 DATE_FORMAT(updated_at, '%Y-%m-%d %H:%i:%s.%f') \
                 FROM dbmesh_move_source WHERE move_id = {id} ORDER BY data_source"
            ))
            .await?;
        record.sources = sources
            .rows
            .into_iter()
            .map(|row| {
                let cell = |i: usize| row.get(i).cloned().flatten().unwrap_or_default();
                SourceState {
                    data_source: cell(0),
                    start_position: cell(1),
                    snapshot_position: cell(2),
                    processed_position: cell(3),
                    updated_at: cell(4),
                }
            })
            .collect();
        let nodes = meta
            .query(&format!(
                "SELECT source_node, destination_node, cursor_key, rows_copied, rows_total, \
                 chunks, done FROM dbmesh_move_node WHERE move_id = {id} ORDER BY source_node"
            ))
            .await?;
        record.nodes = nodes
            .rows
            .into_iter()
            .map(|row| {
                let cell = |i: usize| row.get(i).cloned().flatten().unwrap_or_default();
                Ok(NodeState {
                    source_node: cell(0),
                    destination_node: cell(1),
                    cursor: row.get(2).cloned().flatten(),
                    rows_copied: number("rows copied", &cell(3))?,
                    rows_total: number("rows total", &cell(4))?,
                    chunks: number("chunks", &cell(5))?,
                    done: cell(6) == "1",
                })
            })
            .collect::<Result<_, MetaError>>()?;
    }
    Ok(moves)
}

/// Rows copied per second for move `id` over the last `window`, from the chunks' times.
pub async fn copy_rate(meta: &mut Meta, id: u64, window: Duration) -> Result<f64, MetaError> {
    let result = meta
        .query(&format!(
            "SELECT COALESCE(SUM(row_count), 0) FROM dbmesh_move_chunk \
             WHERE move_id = {id} AND copied_at > UTC_TIMESTAMP(3) - INTERVAL {} MICROSECOND",
            window.as_micros()
        ))
        .await?;
    let rows = result
        .rows
        .first()
        .and_then(|r| r.first().cloned().flatten())
        .unwrap_or_default();
    Ok(number("copied rows", &rows)? as f64 / window.as_secs_f64().max(1e-3))
}

/// The chunks copied for move `id`, by node and sequence.
pub async fn chunks(meta: &mut Meta, id: u64) -> Result<Vec<ChunkRecord>, MetaError> {
    let result = meta
        .query(&format!(
            "SELECT source_node, seq, after_key, last_key, row_count FROM dbmesh_move_chunk \
             WHERE move_id = {id} ORDER BY source_node, seq"
        ))
        .await?;
    result
        .rows
        .into_iter()
        .map(|row| {
            let cell = |i: usize| row.get(i).cloned().flatten().unwrap_or_default();
            Ok(ChunkRecord {
                source_node: cell(0),
                seq: number("chunk seq", &cell(1))?,
                after_key: row.get(2).cloned().flatten(),
                last_key: cell(3),
                rows: number("chunk rows", &cell(4))?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_read_back() {
        for phase in Phase::ALL {
            assert_eq!(phase.as_str().parse::<Phase>(), Ok(phase));
        }
        assert!("copied".parse::<Phase>().is_err());
        assert_eq!(finished_phases(), "'aborted', 'cleaned_up'");
    }
}
