//! Cutover attempts of rebalancing moves: when each ran, how long each step took, how it
//! ended, and for one that completed, the destination's binlog position at the switch (where
//! the reverse flow, destination to sources, starts).
//!
//! ```sql
//! CREATE TABLE IF NOT EXISTS dbmesh_move_cutover (
//!   move_id BIGINT UNSIGNED NOT NULL, attempt INT UNSIGNED NOT NULL,
//!   epoch BIGINT UNSIGNED NOT NULL,        -- the fence's
//!   result VARCHAR(32) NOT NULL,           -- switching | completed | aborted
//!   steps TEXT NOT NULL,                   -- 'fence=2.1;fence_acknowledged=96.3;...' (ms)
//!   fence_held_ms DOUBLE NOT NULL,         -- from the fence to its release
//!   reason TEXT NOT NULL,                  -- why it aborted, '' otherwise
//!   reverse_start TEXT NOT NULL,           -- the destination's @@gtid_binlog_pos at the switch
//!   finished_at DATETIME(3) NOT NULL,
//!   PRIMARY KEY (move_id, attempt));
//! ```

use std::time::Duration;

use backend::quote_literal;

use crate::{Meta, MetaError};

pub(crate) const CREATE: &str = "CREATE TABLE IF NOT EXISTS dbmesh_move_cutover (\
    move_id BIGINT UNSIGNED NOT NULL, \
    attempt INT UNSIGNED NOT NULL, \
    epoch BIGINT UNSIGNED NOT NULL, \
    result VARCHAR(32) NOT NULL, \
    steps TEXT NOT NULL, \
    fence_held_ms DOUBLE NOT NULL, \
    reason TEXT NOT NULL, \
    reverse_start TEXT NOT NULL, \
    finished_at DATETIME(3) NOT NULL, \
    PRIMARY KEY (move_id, attempt))";

/// One cutover attempt as recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct CutoverRecord {
    pub move_id: u64,
    pub attempt: u32,
    pub epoch: u64,
    /// `switching` (recorded just before the map is written: a driver that dies then left
    /// it so), `completed` or `aborted`.
    pub result: String,
    /// Each step's name and duration, in order.
    pub steps: Vec<(String, Duration)>,
    pub fence_held: Duration,
    pub reason: String,
    /// The destination's `@@gtid_binlog_pos` at the switch; empty unless completed.
    pub reverse_start: String,
}

fn format_steps(steps: &[(String, Duration)]) -> String {
    steps
        .iter()
        .map(|(name, took)| format!("{name}={:.3}", took.as_secs_f64() * 1e3))
        .collect::<Vec<_>>()
        .join(";")
}

fn parse_steps(text: &str) -> Result<Vec<(String, Duration)>, String> {
    text.split(';')
        .filter(|item| !item.is_empty())
        .map(|item| {
            let (name, ms) = item
                .split_once('=')
                .ok_or_else(|| format!("'{item}' is not 'step=ms'"))?;
            let ms: f64 = ms.parse().map_err(|e| format!("'{item}': {e}"))?;
            Ok((name.to_string(), Duration::from_secs_f64(ms / 1e3)))
        })
        .collect()
}

/// Records `record` as the next attempt of its move; returns the attempt's number.
pub async fn record(meta: &mut Meta, record: &CutoverRecord) -> Result<u32, MetaError> {
    let sql = format!(
        "INSERT INTO dbmesh_move_cutover (move_id, attempt, epoch, result, steps, fence_held_ms, \
         reason, reverse_start, finished_at) \
         SELECT {id}, COALESCE(MAX(attempt), 0) + 1, {epoch}, {result}, {steps}, {held}, \
         {reason}, {reverse}, UTC_TIMESTAMP(3) FROM dbmesh_move_cutover WHERE move_id = {id}; \
         SELECT MAX(attempt) AS attempt FROM dbmesh_move_cutover WHERE move_id = {id}",
        id = record.move_id,
        epoch = record.epoch,
        result = quote_literal(&record.result),
        steps = quote_literal(&format_steps(&record.steps)),
        held = record.fence_held.as_secs_f64() * 1e3,
        reason = quote_literal(&record.reason),
        reverse = quote_literal(&record.reverse_start),
    );
    let result = meta.query(&sql).await?;
    result
        .value(0, "attempt")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| MetaError::Corrupt {
            what: "cutover attempt",
            reason: "none returned".into(),
        })
}

/// Rewrites attempt `record.attempt` of its move: result, steps, fence held, reason.
pub async fn update(meta: &mut Meta, record: &CutoverRecord) -> Result<(), MetaError> {
    meta.query(&format!(
        "UPDATE dbmesh_move_cutover SET result = {result}, steps = {steps}, fence_held_ms = {held}, \
         reason = {reason}, finished_at = UTC_TIMESTAMP(3) \
         WHERE move_id = {id} AND attempt = {attempt}",
        id = record.move_id,
        attempt = record.attempt,
        result = quote_literal(&record.result),
        steps = quote_literal(&format_steps(&record.steps)),
        held = record.fence_held.as_secs_f64() * 1e3,
        reason = quote_literal(&record.reason),
    ))
    .await
    .map(drop)
}

/// Every cutover attempt of move `move_id`, oldest first.
pub async fn list(meta: &mut Meta, move_id: u64) -> Result<Vec<CutoverRecord>, MetaError> {
    let result = meta
        .query(&format!(
            "SELECT attempt, epoch, result, steps, fence_held_ms, reason, reverse_start \
             FROM dbmesh_move_cutover WHERE move_id = {move_id} ORDER BY attempt"
        ))
        .await?;
    let corrupt = |reason: String| MetaError::Corrupt {
        what: "cutover row",
        reason,
    };
    result
        .rows
        .iter()
        .map(|row| {
            let cell = |i: usize| row.get(i).cloned().flatten().unwrap_or_default();
            let number = |i: usize| {
                cell(i)
                    .parse::<f64>()
                    .map_err(|e| corrupt(format!("column {i}: {e}")))
            };
            Ok(CutoverRecord {
                move_id,
                attempt: number(0)? as u32,
                epoch: number(1)? as u64,
                result: cell(2),
                steps: parse_steps(&cell(3)).map_err(corrupt)?,
                fence_held: Duration::from_secs_f64(number(4)?.max(0.0) / 1e3),
                reason: cell(5),
                reverse_start: cell(6),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_text_round_trips() {
        let steps = vec![
            ("fence".to_string(), Duration::from_micros(2_125)),
            ("fence_acknowledged".to_string(), Duration::from_millis(96)),
        ];
        let text = format_steps(&steps);
        assert_eq!(text, "fence=2.125;fence_acknowledged=96.000");
        let parsed = parse_steps(&text).expect("parses");
        assert_eq!(parsed.len(), 2);
        for ((name, took), (parsed_name, parsed_took)) in steps.iter().zip(&parsed) {
            assert_eq!(name, parsed_name);
            assert!(took.abs_diff(*parsed_took) < Duration::from_micros(1));
        }
        assert_eq!(parse_steps(""), Ok(Vec::new()));
        assert!(parse_steps("fence").is_err());
    }
}
