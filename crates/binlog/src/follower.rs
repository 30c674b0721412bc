//! [`Follower`]: a task that follows a source's binlog and applies the changes of the rows a
//! route selects to a destination, each source transaction's in one destination
//! transaction, and publishes the source position through which everything routed is
//! applied. A lost source or destination (a restart, a network cut) is reconnected with a
//! backoff, resuming from that position; anything else ends the follower with its error.

use std::time::{Duration, SystemTime};

use backend::{BackendConn, ConnectOptions};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::apply::{plan, run_transaction, statements, Route};
use crate::metrics::FollowerMetrics;
use crate::position::GtidPosition;
use crate::stream::{BinlogStream, StreamEvent, StreamOptions, TableFilter};
use crate::BinlogError;

/// The longest wait between two attempts to reconnect.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Largest statement text the follower builds, and largest COM_QUERY it sends (well under
/// MariaDB's default max_allowed_packet of 16 MiB).
const MAX_STATEMENT: usize = 1 << 20;
const MAX_PACKET: usize = 4 << 20;

/// What to follow and where to apply it.
#[derive(Clone)]
pub struct FollowerOptions {
    pub source: ConnectOptions,
    pub destination: ConnectOptions,
    /// The source position the destination already holds (a snapshot's).
    pub from: GtidPosition,
    /// The replica server id announced to the source: unique among its replicas and
    /// followers.
    pub server_id: u32,
    pub route: Route,
}

/// Settings with defaults.
#[derive(Clone, Default)]
pub struct FollowerSettings {
    /// Only these tables' changes are decoded and routed (the route is not even asked about
    /// others); `None` for all.
    pub tables: Option<TableFilter>,
    /// The most bytes of row images one source transaction may hold; 256 MiB by default.
    pub max_transaction_bytes: Option<usize>,
    /// Where the follower counts; unregistered series by default.
    pub metrics: FollowerMetrics,
    /// See [`StreamOptions::ignore_unknown_xa_before`].
    pub ignore_unknown_xa_before: Option<GtidPosition>,
}

/// How far the destination is behind the source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Lag {
    /// Age of the source transaction applied last, in whole seconds (the binlog's
    /// resolution); 0 when caught up.
    pub seconds: u64,
    /// Source transactions not yet gone past, from the source's `@@gtid_binlog_pos` read
    /// every second (the sum over domains of the sequence numbers between it and the
    /// processed position); `None` before the first read.
    pub transactions: Option<u64>,
    /// Whether the source said it had nothing more since (its heartbeat came after the last
    /// transaction applied).
    pub caught_up: bool,
}

/// Starts followers.
pub struct Follower;

impl Follower {
    /// Starts following with the default settings.
    pub fn start(options: FollowerOptions) -> FollowerHandle {
        Follower::start_with(options, FollowerSettings::default())
    }

    pub fn start_with(options: FollowerOptions, settings: FollowerSettings) -> FollowerHandle {
        let (processed_tx, processed) = watch::channel(options.from.clone());
        let (lag_tx, lag) = watch::channel(Lag::default());
        let (stop_tx, stop_rx) = watch::channel(false);
        let span = tracing::info_span!("binlog_follower", source = %options.source.source_name, destination = %options.destination.source_name);
        let task =
            tokio::spawn(run(options, settings, processed_tx, lag_tx, stop_rx).instrument(span));
        FollowerHandle {
            processed,
            lag,
            stop: stop_tx,
            task,
            ended: None,
            joined: false,
        }
    }
}

/// A running follower.
pub struct FollowerHandle {
    processed: watch::Receiver<GtidPosition>,
    lag: watch::Receiver<Lag>,
    stop: watch::Sender<bool>,
    task: JoinHandle<Result<GtidPosition, BinlogError>>,
    /// The task's outcome once awaited, until it is handed out.
    ended: Option<Result<GtidPosition, BinlogError>>,
    /// Whether the task was awaited (a JoinHandle must not be polled after it completed).
    joined: bool,
}

impl FollowerHandle {
    /// The source position through which every routed change is applied on the destination.
    pub fn processed(&self) -> watch::Receiver<GtidPosition> {
        self.processed.clone()
    }

    pub fn lag(&self) -> watch::Receiver<Lag> {
        self.lag.clone()
    }

    /// Whether the follower has ended (by [`FollowerHandle::stop`] or an error).
    pub fn is_finished(&self) -> bool {
        self.ended.is_some() || self.task.is_finished()
    }

    /// Waits until the destination has applied the source through `target`. Fails with the
    /// error that ended the follower (handed out once), or [`BinlogError::Timeout`] after
    /// `timeout`.
    pub async fn wait_for(
        &mut self,
        target: &GtidPosition,
        timeout: Duration,
    ) -> Result<(), BinlogError> {
        let mut processed = self.processed.clone();
        let waited = tokio::time::timeout(timeout, async {
            // Ends when the position is reached, or when the follower ends (its sender is
            // then dropped).
            let _ = processed.wait_for(|p| p.includes(target)).await;
            if !self.joined && processed.has_changed().is_err() {
                let ended = (&mut self.task).await;
                self.joined = true;
                self.ended = Some(ended.unwrap_or_else(|e| Err(panicked(e))));
            }
        })
        .await;
        if self.processed.borrow().includes(target) {
            return Ok(());
        }
        if matches!(self.ended, Some(Err(_))) {
            if let Some(Err(error)) = self.ended.take() {
                return Err(error);
            }
        }
        Err(BinlogError::Timeout {
            waited: if waited.is_err() {
                timeout
            } else {
                Duration::ZERO
            },
            target: target.to_string(),
            processed: self.processed.borrow().to_string(),
        })
    }

    /// Stops the follower (between two source transactions) and returns the position it
    /// applied through, or the error that had ended it.
    pub async fn stop(mut self) -> Result<GtidPosition, BinlogError> {
        let _ = self.stop.send(true);
        match self.ended.take() {
            Some(ended) => ended,
            // The error that ended it was handed out by `wait_for`.
            None if self.joined => Ok(self.processed.borrow().clone()),
            None => (&mut self.task).await.unwrap_or_else(|e| Err(panicked(e))),
        }
    }
}

fn panicked(error: tokio::task::JoinError) -> BinlogError {
    BinlogError::Malformed {
        source_name: String::new(),
        what: format!("the follower task failed: {error}"),
    }
}

/// The follower's state across reconnections.
struct State {
    processed: GtidPosition,
    resume: GtidPosition,
    processed_tx: watch::Sender<GtidPosition>,
    lag_tx: watch::Sender<Lag>,
    /// The source's binlog head, as last read.
    head: watch::Receiver<Option<GtidPosition>>,
}

/// How often the source's head position is read for [`Lag::transactions`].
const HEAD_INTERVAL: Duration = Duration::from_secs(1);

/// Reads the source's `@@gtid_binlog_pos` every [`HEAD_INTERVAL`] until the follower ends
/// (the receiver is dropped); a failed read is retried with a new connection.
async fn poll_head(source: ConnectOptions, head: watch::Sender<Option<GtidPosition>>) {
    let mut conn: Option<BackendConn> = None;
    let mut tick = tokio::time::interval(HEAD_INTERVAL);
    while !head.is_closed() {
        tick.tick().await;
        if conn.is_none() {
            conn = BackendConn::connect(&source).await.ok();
        }
        let Some(c) = conn.as_mut() else { continue };
        match c.query("SELECT @@gtid_binlog_pos").await {
            Ok(result) => {
                let text = result
                    .rows
                    .first()
                    .and_then(|r| r.first().cloned().flatten());
                if let Some(Ok(position)) = text.map(|t| t.parse::<GtidPosition>()) {
                    head.send_replace(Some(position));
                }
            }
            Err(_) => conn = None,
        }
    }
}

async fn run(
    options: FollowerOptions,
    settings: FollowerSettings,
    processed_tx: watch::Sender<GtidPosition>,
    lag_tx: watch::Sender<Lag>,
    mut stop: watch::Receiver<bool>,
) -> Result<GtidPosition, BinlogError> {
    let (head_tx, head) = watch::channel(None);
    let poller = tokio::spawn(poll_head(options.source.clone(), head_tx));
    let mut state = State {
        processed: options.from.clone(),
        resume: options.from.clone(),
        processed_tx,
        lag_tx,
        head,
    };
    let outcome = follow_with_retries(&options, &settings, &mut state, &mut stop).await;
    poller.abort();
    outcome
}

/// [`follow`] again after each transient failure, until stopped or a lasting error.
async fn follow_with_retries(
    options: &FollowerOptions,
    settings: &FollowerSettings,
    state: &mut State,
    stop: &mut watch::Receiver<bool>,
) -> Result<GtidPosition, BinlogError> {
    let source = options.source.source_name.as_str();
    let mut backoff = Duration::from_millis(100);
    loop {
        let mut connected = false;
        let outcome = follow(options, settings, state, stop, &mut connected).await;
        match outcome {
            Ok(()) => return Ok(state.processed.clone()),
            Err(error) if error.is_transient() => {
                if connected {
                    backoff = Duration::from_millis(100);
                }
                settings
                    .metrics
                    .reconnects
                    .with_label_values(&[source])
                    .inc();
                tracing::warn!(%error, resume = %state.resume, retry_in = ?backoff, "binlog follower lost a connection");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop.changed() => return Ok(state.processed.clone()),
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
            Err(error) => {
                tracing::error!(%error, processed = %state.processed, "binlog follower stopped");
                return Err(error);
            }
        }
    }
}

/// Follows from `state.resume` until stopped (`Ok`) or an error.
async fn follow(
    options: &FollowerOptions,
    settings: &FollowerSettings,
    state: &mut State,
    stop: &mut watch::Receiver<bool>,
    connected: &mut bool,
) -> Result<(), BinlogError> {
    if *stop.borrow() {
        return Ok(());
    }
    let source = options.source.source_name.as_str();
    let metrics = &settings.metrics;
    let stream_options = StreamOptions {
        server_id: options.server_id,
        max_transaction_bytes: settings.max_transaction_bytes.unwrap_or(256 << 20),
        tables: settings.tables.clone(),
        ignore_unknown_xa_before: settings.ignore_unknown_xa_before.clone(),
    };
    let mut destination = BackendConn::connect(&options.destination).await?;
    // Row images are applied as a replica applies them: no foreign key actions (a REPLACE
    // must not cascade to children), strict (a value that does not fit is an error, not a
    // silent change), an explicit 0 stays 0 in an AUTO_INCREMENT column, TIMESTAMPs in UTC.
    destination
        .query(
            "SET SESSION foreign_key_checks = 0, time_zone = '+00:00', \
             sql_mode = 'STRICT_ALL_TABLES,NO_AUTO_VALUE_ON_ZERO'",
        )
        .await?;
    let mut stream =
        BinlogStream::connect_with(&options.source, &state.resume, &stream_options).await?;
    *connected = true;
    loop {
        let event = tokio::select! {
            event = stream.next() => event?,
            _ = stop.changed() => return Ok(()),
        };
        match event {
            StreamEvent::Transaction { gtid, changes } => {
                let ops = plan(&changes, &options.route)?;
                if ops.is_empty() {
                    metrics
                        .transactions
                        .with_label_values(&[source, "skipped"])
                        .inc();
                } else {
                    let sql = statements(&ops, MAX_STATEMENT);
                    let span = tracing::debug_span!("binlog_apply", %gtid, changes = ops.len(), statements = sql.len());
                    run_transaction(&mut destination, &sql, MAX_PACKET)
                        .instrument(span)
                        .await?;
                    metrics
                        .transactions
                        .with_label_values(&[source, "applied"])
                        .inc();
                    metrics
                        .changes
                        .with_label_values(&[source])
                        .inc_by(ops.len() as u64);
                }
                state.processed.advance(gtid);
                let age = stream
                    .last_event_time()
                    .and_then(|t| SystemTime::now().duration_since(t).ok())
                    .map_or(0, |d| d.as_secs());
                publish(
                    state,
                    &stream,
                    Lag {
                        seconds: age,
                        caught_up: false,
                        transactions: None,
                    },
                    metrics,
                    source,
                );
            }
            StreamEvent::Ddl {
                gtid,
                database,
                statement,
            } => {
                tracing::info!(%gtid, database, statement, "source DDL (not applied to the destination)");
                state.processed.advance(gtid);
                let lag = *state.lag_tx.borrow();
                publish(state, &stream, lag, metrics, source);
            }
            StreamEvent::Position(at) => {
                for gtid in at.gtids() {
                    state.processed.advance(*gtid);
                }
                publish(
                    state,
                    &stream,
                    Lag {
                        seconds: 0,
                        caught_up: true,
                        transactions: None,
                    },
                    metrics,
                    source,
                );
            }
        }
    }
}

fn publish(
    state: &mut State,
    stream: &BinlogStream,
    lag: Lag,
    metrics: &FollowerMetrics,
    source: &str,
) {
    state.resume = stream.resume_position(&state.processed);
    state.processed_tx.send_replace(state.processed.clone());
    let lag = Lag {
        transactions: state
            .head
            .borrow()
            .as_ref()
            .map(|head| state.processed.transactions_until(head)),
        ..lag
    };
    if let Some(n) = lag.transactions {
        metrics
            .lag_transactions
            .with_label_values(&[source])
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }
    state.lag_tx.send_replace(lag);
    metrics
        .lag_seconds
        .with_label_values(&[source])
        .set(i64::try_from(lag.seconds).unwrap_or(i64::MAX));
}
