//! dbmesh's executor: runs a routed [`router::Plan`] for one session on the backend
//! connections the session holds.
//!
//! An [`Executor`] belongs to one client session. It owns:
//! - the backend connections the session holds, keyed by data source ([`conns`]): acquired on
//!   first use, brought to the session's state (database, character set, replayed `SET`s,
//!   open transaction), given back to the pool after each statement unless something pins
//!   them ([`pin`]);
//! - the transaction ([`transaction`]): whether one is open, the `SET TRANSACTION` waiting
//!   for the next one, and the statements that run on every participant;
//! - the ways of running a plan ([`run`]): one target relayed as it arrives, a scatter read
//!   concatenated, affected rows summed, rows merged through the `merge` crate ([`merged`]),
//!   a broadcast write to every copy;
//! - cancelling its work on the backends from another task ([`Cancel`]).
//!
//! It writes to the client through [`Client`], so it knows nothing of how the client logged
//! in or how its commands are read.

mod access;
mod cancel;
mod conns;
mod error;
mod fence;
mod merged;
mod pin;
mod row_move;
mod run;
mod snapshot;
mod transaction;

use std::borrow::Cow;
use std::sync::Arc;

use protocol::constants::status;
use protocol::framing::PacketConn;
use protocol::packets::OkPacket;
use protocol::ServerError;
use rules::LogicalNames;
use tokio::io::{AsyncRead, AsyncWrite};

pub use access::{classify, Access};
pub use cancel::{Cancel, CancelReason};
pub use conns::ClientState;
pub use error::ExecError;
pub use fence::{FenceCheck, FencedNode};
pub use merged::MergeKind;
pub use pin::{items, scan, unread_set, Effects, Item, PinReason, Pins};
pub use run::Request;
pub use snapshot::{PlanCacheCounted, Snapshot, PLAN_CACHE_CAPACITY};
pub use transaction::TransactionStatement;

/// What the executor needs of the session it runs for: the client's packet stream, to relay
/// backend answers as they arrive, and the session's accounting of what it answers.
pub trait Client {
    type Stream: AsyncRead + AsyncWrite + Unpin;

    /// The client's packets (backend answers are relayed into it without being decoded).
    fn packets(&mut self) -> &mut PacketConn<Self::Stream>;

    /// Whether the client asked for OK packets in place of EOF packets.
    fn deprecate_eof(&self) -> bool;

    /// Writes `err` as the answer to the current statement, counted and kept for
    /// `SHOW WARNINGS`.
    fn send_error(&mut self, err: &ServerError);

    /// Counts an error a backend's answer carried to the client.
    fn count_error(&mut self, code: u16);

    /// Counts copies of broadcast table `table` found holding different rows.
    fn broadcast_divergence(&mut self, table: &str);

    /// Counts `statements` interrupted on backends for `reason`.
    fn backend_cancelled(&mut self, reason: CancelReason, statements: u64);

    /// Counts `rows` moved to another shard by an UPDATE of their sharding column.
    fn rows_moved(&mut self, rows: u64);

    /// Counts a statement whose shards' results the proxy merges.
    fn merged(&mut self, kind: MergeKind);
}

/// How the session goes on after a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    /// End the session (COM_QUIT, a lost client, or a state the client must not continue from).
    Close,
    /// Nothing was run or answered: the statement reaches fenced slices (see
    /// [`FenceCheck`]); the session runs the command again when the fence changes.
    Fenced,
}

/// The error the client reads in place of a backend's `err`, when not `err` itself: the time
/// limit's 1969 for an interruption the limit caused, and the logical names of the physical
/// databases and tables its text names.
pub fn client_error(
    cancel: &Cancel,
    names: &LogicalNames,
    err: &ServerError,
) -> Option<ServerError> {
    if let Some(time_limit) = cancel.client_error(err) {
        return Some(time_limit);
    }
    match names.in_message(err.code, &err.message) {
        Cow::Borrowed(_) => None,
        Cow::Owned(message) => Some(ServerError {
            message: message.into(),
            ..err.clone()
        }),
    }
}

/// Writes `err` as the statement's answer and flushes it.
pub async fn answer_error<C: Client>(client: &mut C, err: &ServerError) -> Flow {
    client.send_error(err);
    flush(client).await
}

/// Flushes what the client has been sent; a client gone ends the session.
pub async fn flush<C: Client>(client: &mut C) -> Flow {
    match client.packets().flush().await {
        Ok(()) => Flow::Continue,
        Err(_) => Flow::Close,
    }
}

/// The values a session reports from what its statements did, whichever connection ran them.
#[derive(Debug, Clone, Copy)]
pub struct Reported {
    /// Status flags for answers the proxy composes (autocommit, transaction open).
    pub status: u16,
    /// The id the last INSERT that generated one reported.
    pub last_insert_id: u64,
    /// `LAST_INSERT_ID()` is answered from `last_insert_id` even while only the default data
    /// source was used: the proxy filled ids from a sequence, which no backend knows of.
    pub answers_last_insert_id: bool,
    /// What `ROW_COUNT()` answers: the last statement's affected rows, -1 after a SELECT.
    pub row_count: i64,
    /// What `FOUND_ROWS()` answers: set by each statement that returns rows, as MariaDB
    /// counts them.
    pub found_rows: u64,
    /// For the query digest, of the current statement: the rows it sent or affected, and the
    /// backend statements it took. The session zeroes them as a statement begins.
    pub rows: u64,
    pub backend_statements: u64,
    /// GROUP_CONCAT results the statement's merge cut at `group_concat_max_len`.
    pub group_concat_cuts: u64,
}

impl Default for Reported {
    fn default() -> Self {
        Reported {
            status: status::AUTOCOMMIT,
            last_insert_id: 0,
            answers_last_insert_id: false,
            row_count: -1,
            found_rows: 0,
            rows: 0,
            backend_statements: 0,
            group_concat_cuts: 0,
        }
    }
}

/// One row of `SHOW WARNINGS`, as a backend reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// `Note`, `Warning` or `Error`.
    pub level: String,
    pub code: u16,
    pub message: String,
}

/// Runs plans for one session.
pub struct Executor {
    /// The session's id, for the log.
    session: u32,
    /// The client asked for found rows rather than changed rows in affected-row counts.
    found_rows: bool,
    /// What every backend connection the session uses must be brought to.
    pub state: ClientState,
    held: conns::Held,
    /// Session statements (SET ...) every connection the session acquires later must replay.
    replay: Vec<String>,
    transaction: transaction::Transaction,
    /// Why the held connections must stay with the session, besides an open transaction.
    pins: Pins,
    /// How the current statement may use primaries and replicas.
    access: Access,
    /// The session's last write per data source with replicas, which its reads must see.
    writes: Vec<conns::Write>,
    pub reported: Reported,
    pub(crate) cancel: Arc<Cancel>,
    /// The proxy's coordinator of distributed transactions (`xa` mode), if it runs.
    coordinator: Option<Arc<xa::Coordinator>>,
    /// The logical names of the rules the session's statements last ran by.
    names: Arc<LogicalNames>,
    /// What the current command's statements must respect while slices move, if anything.
    fence: Option<FenceCheck>,
    /// Warnings the proxy's own merge gave for the last statement, for `SHOW WARNINGS`.
    merge_warnings: Vec<Diagnostic>,
}

impl Executor {
    /// An executor for session `session`; `cancel` is how others interrupt its work.
    pub fn new(session: u32, found_rows: bool, state: ClientState, cancel: Arc<Cancel>) -> Self {
        Executor {
            session,
            found_rows,
            state,
            held: conns::Held::default(),
            replay: Vec::new(),
            transaction: transaction::Transaction::default(),
            pins: 0,
            access: Access::PrimaryRead,
            writes: Vec::new(),
            reported: Reported::default(),
            cancel,
            coordinator: None,
            names: Arc::default(),
            fence: None,
            merge_warnings: Vec::new(),
        }
    }

    /// What the statements of the command about to run must respect while slices move
    /// (`None`: nothing, the command began before any fence or none is in force).
    pub fn set_fence(&mut self, check: Option<FenceCheck>) {
        self.fence = check;
    }

    /// Whether a statement routed by `snapshot` to `targets` (`(data source, SQL)`) must wait
    /// for the fence of the current command to change, with the current statement's access.
    pub fn fenced<'a>(
        &self,
        snapshot: &Snapshot,
        targets: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> bool {
        self.fence
            .as_ref()
            .is_some_and(|check| check.holds(snapshot.slice_map_version, self.access, targets))
    }

    /// The coordinator the session's distributed transactions (`xa` mode) commit through.
    pub fn with_coordinator(mut self, coordinator: Option<Arc<xa::Coordinator>>) -> Self {
        self.coordinator = coordinator;
        self
    }

    /// The session's pins, transaction excluded.
    pub fn pins(&self) -> Pins {
        self.pins
    }

    /// Applies a statement's effects to the pins.
    pub fn apply(&mut self, effects: Effects) {
        self.pins = effects.apply(self.pins);
    }

    /// The current statement may use primaries and replicas as `access` says, as far as the
    /// session allows: inside a transaction, or while connections are pinned (their state
    /// lives on the primary's connection), reads stay on the primary.
    pub fn set_access(&mut self, access: Access) {
        self.access =
            if access == Access::ReplicaRead && (self.pins != 0 || self.in_transaction_now()) {
                Access::PrimaryRead
            } else {
                access
            };
    }

    /// A transaction is open, or autocommit is off (so the next statement that touches a
    /// table opens one): statements run as part of the client's transaction.
    pub fn in_transaction_now(&self) -> bool {
        self.transaction_open() || self.reported.status & status::AUTOCOMMIT == 0
    }

    /// A transaction is open: the client's BEGIN, or one a statement opened implicitly with
    /// autocommit off, as the servers' status flags (`SERVER_STATUS_IN_TRANS`) report it.
    /// Only then does the transaction keep the session's connections: with autocommit off
    /// and no transaction open they go back to the pool like any other session's.
    pub fn transaction_open(&self) -> bool {
        self.client_status() & status::IN_TRANS != 0
    }

    /// Status flags for answers the proxy composes: autocommit and whether a transaction is
    /// open on any held connection.
    pub fn client_status(&self) -> u16 {
        let mut flags = self.reported.status & !(status::IN_TRANS | status::MORE_RESULTS_EXISTS);
        if self.transaction.open
            || self.held.any_in_transaction()
            || self.transaction.distributed.is_some()
        {
            flags |= status::IN_TRANS;
        }
        flags
    }

    /// After a command: the pins that hold the session's connections now (transaction
    /// included) and, when nothing does, the connections go back to their pools.
    pub fn settle(&mut self) -> Pins {
        self.access = Access::PrimaryRead;
        self.transaction.no_branch = false;
        let open = self.transaction_open();
        if self.transaction.settle_next(open) {
            self.pins &= !PinReason::NextTransaction.bit();
        }
        let mut pins = self.pins;
        if open || self.has_unsure_transaction_state() {
            pins |= PinReason::Transaction.bit();
        }
        if pins == 0 {
            self.release_unpinned();
        }
        pins
    }

    /// What COM_RESET_CONNECTION and COM_CHANGE_USER return the session to, its connections
    /// given back (reset) first.
    pub async fn reset(&mut self, state: ClientState) {
        self.release_all().await;
        self.state = state;
        self.replay.clear();
        self.transaction = transaction::Transaction::default();
        self.pins = 0;
        self.reported = Reported::default();
    }

    /// Writes an OK answer with the session's status, for a statement the proxy answered.
    pub async fn ok<C: Client>(&mut self, client: &mut C) -> Flow {
        self.reported.row_count = 0;
        let ok = OkPacket {
            status: self.reported.status,
            ..OkPacket::default()
        };
        client.packets().write_with(|b| ok.encode(0, b));
        flush(client).await
    }
}
