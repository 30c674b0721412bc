//! The session's transaction: whether the client opened one, the `SET TRANSACTION` waiting
//! for the next one, and the statements that run on every participant (every connection the
//! session holds) so all of them agree.
//!
//! A transaction's participants are the connections the session holds while it is open: a
//! connection acquired meanwhile joins it. How it joins and commits depends on the session's
//! transaction mode (`schema.transaction_mode`, `SET dbmesh_transaction_mode`):
//!
//! - `local`: `BEGIN` on each participant, and COMMIT or ROLLBACK runs on each, one after
//!   another: each shard's transaction is that shard's own, not atomic across them;
//! - `xa`: each participant is a branch of one distributed transaction ([`xa::Transaction`]),
//!   started with `XA START` as the transaction first touches its data source (a plain
//!   transaction cannot become a branch later); COMMIT is the coordinator's (one phase for one
//!   participant, two-phase commit for several), ROLLBACK, a disconnect or a reset roll every
//!   branch back.

use backend::{BackendError, PooledConn};
use protocol::constants::status;
use protocol::response::ResponseKind;
use protocol::{ClientError, ServerError};
use rules::TransactionMode;

use crate::conns::HeldConn;
use crate::error::ExecError;
use crate::pin::PinReason;
use crate::{answer_error, Client, Executor, Flow, Snapshot};

/// The transaction state of one session.
#[derive(Default)]
pub(crate) struct Transaction {
    /// An explicit transaction (BEGIN) is open.
    pub open: bool,
    /// A `SET TRANSACTION …` without scope waiting for the transaction it applies to.
    next: Option<NextTransaction>,
    /// The session's own `dbmesh_transaction_mode`; `None`: the rules'.
    mode: Option<TransactionMode>,
    /// In `xa` mode, the distributed transaction once a statement touched a data source.
    pub distributed: Option<Distributed>,
    /// The current statement starts no XA branch: a session statement (`SET`), or one that
    /// commits implicitly (DDL). Cleared after each command.
    pub no_branch: bool,
    /// The current statement is an autocommit write on several data sources that runs as a
    /// distributed transaction of its own, committed or rolled back before it answers.
    pub implicit: bool,
    /// The current statement is one text the session relays to one data source over a
    /// connection that allows several statements per text: a branch it starts goes out as
    /// `XA START …;` ahead of the statement, in the statement's round trip.
    pub start_with_statement: bool,
}

/// An open distributed transaction and the data sources it has a branch on, whose
/// connections the session holds until it ends.
pub(crate) struct Distributed {
    txn: xa::Transaction,
    branches: Vec<String>,
    /// The branch whose `XA START` waits to go out with the current statement
    /// ([`Transaction::start_with_statement`]).
    starting: Option<xa::BranchStart>,
}

/// A one-shot `SET TRANSACTION …` (isolation level or access mode of the next transaction
/// only): run on the connections the session holds, run again on connections it acquires
/// before that transaction begins, never replayed after it ([`PinReason::NextTransaction`]).
struct NextTransaction {
    statement: String,
    /// Declared by the statement that just ran, so nothing consumed it yet.
    declared_now: bool,
    /// The transaction it applies to is open. The SET is over when that transaction ends;
    /// an autocommitted statement may consume it too (a server does when the statement
    /// succeeds and touches a table), which the proxy cannot tell, so until a transaction
    /// ends the connection stays pinned, erring towards keeping it.
    begun: bool,
}

impl Transaction {
    /// Brings a connection the session acquires into the open transaction, if there is one
    /// (`open`: begun by the client or, with autocommit off, by a statement), so the
    /// statement runs inside it and its answer carries the transaction's status flags.
    /// In `xa` mode the connection joins as an XA branch instead
    /// ([`Executor::enlist`]), so only the pending `SET TRANSACTION` runs here.
    pub async fn join(
        &self,
        conn: &mut PooledConn,
        open: bool,
        xa: bool,
    ) -> Result<(), BackendError> {
        if open {
            if let Some(next) = &self.next {
                conn.query(&next.statement).await?;
            }
            if !xa {
                conn.query("BEGIN").await?;
            }
        }
        Ok(())
    }

    /// The branch start waiting to go out with the statement about to be sent to
    /// `data_source`, if any.
    pub fn take_start(&mut self, data_source: &str) -> Option<xa::BranchStart> {
        let distributed = self.distributed.as_mut()?;
        if distributed
            .starting
            .as_ref()
            .is_some_and(|s| s.data_source() == data_source)
        {
            distributed.starting.take()
        } else {
            None
        }
    }

    /// The server answered `start`'s `XA START` with OK: its data source has a branch now.
    pub fn started(&mut self, start: xa::BranchStart, cancel: &crate::Cancel) {
        let Some(distributed) = self.distributed.as_mut() else {
            return;
        };
        distributed.branches.push(start.data_source().to_owned());
        distributed.txn.started(start);
        cancel.set_branches(distributed.branches.len());
    }

    /// After a statement that may carry its branch's start: nothing carries it over to the
    /// next one (a start not sent, the statement having stopped short of its backend, is
    /// made again when needed).
    pub fn settle_start(&mut self) {
        self.start_with_statement = false;
        if let Some(distributed) = self.distributed.as_mut() {
            distributed.starting = None;
        }
    }

    /// After a command: follows the pending `SET TRANSACTION` to its transaction; true when
    /// that transaction is over, so the SET no longer pins.
    pub fn settle_next(&mut self, in_transaction: bool) -> bool {
        let Some(next) = &mut self.next else {
            return false;
        };
        if next.declared_now {
            next.declared_now = false;
        } else if in_transaction {
            next.begun = true;
        } else if next.begun {
            self.next = None;
            return true;
        }
        false
    }
}

/// A statement that starts or ends the session's transaction, or moves within it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransactionStatement {
    Begin,
    Commit,
    Rollback,
    /// SAVEPOINT, RELEASE SAVEPOINT, ROLLBACK TO SAVEPOINT.
    Savepoint,
}

impl Executor {
    /// Runs a transaction statement on every participant, relaying one answer (see
    /// [`everywhere`](Self::everywhere)), and follows the transaction's state. In `xa` mode
    /// BEGIN, COMMIT and ROLLBACK are the proxy's: branches start as data sources are touched,
    /// and end by the coordinator.
    pub async fn transaction_statement<C: Client>(
        &mut self,
        client: &mut C,
        snapshot: &Snapshot,
        statement: TransactionStatement,
        packet: &[u8],
        text: &str,
    ) -> Flow {
        if self.xa_mode(snapshot) && !self.held.any_in_transaction_outside(&self.xa_branches()) {
            if let Some(flow) = self.xa_statement(client, statement, text).await {
                return flow;
            }
        }
        if statement != TransactionStatement::Savepoint {
            self.transaction.no_branch = true;
        }
        let (flow, ok) = self.everywhere(client, snapshot, packet, text).await;
        match statement {
            TransactionStatement::Begin if ok => self.transaction.open = true,
            TransactionStatement::Commit | TransactionStatement::Rollback => self.end_transaction(),
            _ => {}
        }
        flow
    }

    /// BEGIN, COMMIT and ROLLBACK in `xa` mode, answered here; `None` for the statements
    /// that run on the participants as in `local` mode (savepoints).
    async fn xa_statement<C: Client>(
        &mut self,
        client: &mut C,
        statement: TransactionStatement,
        text: &str,
    ) -> Option<Flow> {
        let words = crate::pin::items(text);
        let word = |w: &str| {
            words
                .iter()
                .any(|i| matches!(i, crate::pin::Item::Word(x) if x.eq_ignore_ascii_case(w)))
        };
        let result = match statement {
            TransactionStatement::Savepoint => return None,
            TransactionStatement::Begin => {
                if word("ONLY") || word("SNAPSHOT") {
                    Err(ServerError::not_supported(
                        "START TRANSACTION READ ONLY or WITH CONSISTENT SNAPSHOT in transaction \
                         mode 'xa' (SET dbmesh_transaction_mode = 'local' for this session)",
                    ))
                } else {
                    // BEGIN commits the open transaction first, as on one server.
                    self.finish_distributed(true).await.map(|()| {
                        self.transaction.open = true;
                    })
                }
            }
            TransactionStatement::Commit | TransactionStatement::Rollback
                if (word("CHAIN") || word("RELEASE")) && !word("NO") =>
            {
                Err(ServerError::not_supported(
                    "COMMIT or ROLLBACK with AND CHAIN or RELEASE in transaction mode 'xa'",
                ))
            }
            TransactionStatement::Commit | TransactionStatement::Rollback => {
                let commit = statement == TransactionStatement::Commit;
                let result = self.finish_distributed(commit).await;
                self.transaction.open = false;
                result
            }
        };
        Some(match result {
            Ok(()) => {
                self.reported.status = self.client_status();
                self.ok(client).await
            }
            Err(e) => answer_error(client, &e).await,
        })
    }

    /// The client's transaction is over (committed or rolled back on every participant).
    pub(crate) fn end_transaction(&mut self) {
        self.transaction.open = false;
    }

    /// The session's transaction mode: its own `SET dbmesh_transaction_mode`, else the rules'.
    pub fn transaction_mode(&self, rules: &rules::Rules) -> TransactionMode {
        self.transaction
            .mode
            .unwrap_or_else(|| rules.transaction_mode())
    }

    /// `SET dbmesh_transaction_mode`: refused while a transaction is open, as MySQL refuses to
    /// change a transaction's characteristics in the middle of it.
    pub fn set_transaction_mode(&mut self, mode: TransactionMode) -> Result<(), ServerError> {
        if self.transaction_open() {
            return Err(ExecError::TransactionInProgress.to_server_error());
        }
        self.transaction.mode = Some(mode);
        Ok(())
    }

    /// How long the next statement may wait for a row lock before
    /// [`Cancel::lock_wait_bound_passed`](crate::Cancel::lock_wait_bound_passed) is due:
    /// `schema.distributed_lock_wait_ms` for a statement inside a transaction in `xa` mode
    /// (whose branches may span several data sources by then), else `None`.
    pub fn lock_wait_bound(&self, rules: &rules::Rules) -> Option<std::time::Duration> {
        let bound = rules.schema.distributed_lock_wait_ms;
        (bound > 0
            && self.in_transaction_now()
            && self.transaction_mode(rules) == TransactionMode::Xa)
            .then(|| std::time::Duration::from_millis(bound))
    }

    pub(crate) fn xa_mode(&self, snapshot: &Snapshot) -> bool {
        self.transaction_mode(&snapshot.rules) == TransactionMode::Xa
    }

    /// Whether a distributed transaction has branches open.
    pub fn distributed_open(&self) -> bool {
        self.transaction.distributed.is_some()
    }

    fn xa_branches(&self) -> Vec<String> {
        self.transaction
            .distributed
            .as_ref()
            .map_or_else(Vec::new, |d| d.branches.clone())
    }

    /// The current statement starts no XA branch (see [`Transaction::no_branch`]).
    pub fn without_branch(&mut self) {
        self.transaction.no_branch = true;
    }

    /// Makes the held primary connection to `data_source` a branch of the session's
    /// distributed transaction if the statement runs inside a transaction in `xa` mode and it
    /// is not one yet (`XA START`, or, for a statement that carries it, its
    /// [`xa::BranchStart`] for the relay). A connection whose `XA START` failed is dropped: it
    /// may be in any state.
    pub(crate) async fn enlist(
        &mut self,
        snapshot: &Snapshot,
        data_source: &str,
    ) -> Result<(), BackendError> {
        if self.transaction.no_branch
            || !(self.in_transaction_now() || self.transaction.implicit)
            || !self.xa_mode(snapshot)
            || self.transaction.distributed.as_ref().is_some_and(|d| {
                d.branches.iter().any(|b| b == data_source)
                    || d.starting
                        .as_ref()
                        .is_some_and(|s| s.data_source() == data_source)
            })
        {
            return Ok(());
        }
        let Some(coordinator) = self.coordinator.clone() else {
            return Err(xa_unavailable(
                data_source,
                "the XA coordinator is not running (the meta data source was unreachable at \
                 start, see the proxy's log)"
                    .into(),
            ));
        };
        let Some(held) = self.held.get_mut(data_source) else {
            return Ok(());
        };
        if held.role != crate::conns::Role::Primary {
            return Ok(());
        }
        let distributed = self
            .transaction
            .distributed
            .get_or_insert_with(|| Distributed {
                txn: coordinator.begin(),
                branches: Vec::new(),
                starting: None,
            });
        if self.transaction.start_with_statement {
            return match distributed.txn.branch_start(data_source) {
                Ok(start) => {
                    distributed.starting = Some(start);
                    Ok(())
                }
                Err(e) => Err(xa_unavailable(data_source, e.to_string())),
            };
        }
        let participant = xa::Participant {
            data_source,
            conn: &mut held.conn,
        };
        match distributed.txn.enlist(participant).await {
            Ok(()) => {
                distributed.branches.push(data_source.to_string());
                self.cancel.set_branches(distributed.branches.len());
                Ok(())
            }
            Err(e) => {
                tracing::warn!(conn = self.session, data_source, error = %e, "XA START failed");
                self.held.take(data_source);
                Err(xa_unavailable(data_source, e.to_string()))
            }
        }
    }

    /// Ends the distributed transaction, if one is open: commits it (`commit`) or rolls it
    /// back. The participants' connections stay with the session when their branches ended
    /// cleanly; after an error (or a branch left to recovery) they are closed, never pooled.
    pub(crate) async fn finish_distributed(&mut self, commit: bool) -> Result<(), ServerError> {
        let Some(Distributed { txn, branches, .. }) = self.transaction.distributed.take() else {
            return Ok(());
        };
        self.cancel.set_branches(0);
        let mut conns: Vec<HeldConn> = branches
            .iter()
            .filter_map(|ds| self.held.take(ds))
            .collect();
        if conns.len() < branches.len() {
            // A participant's connection was lost, and its server rolled the branch back: so
            // must every other. Closing them does it (an unprepared branch ends with its
            // connection).
            drop(conns);
            drop(txn);
            return if commit {
                Err(ExecError::ParticipantLost.to_server_error())
            } else {
                Ok(())
            };
        }
        let mut participants: Vec<xa::Participant<'_>> = conns
            .iter_mut()
            .map(|h| xa::Participant {
                data_source: &h.data_source,
                conn: &mut h.conn,
            })
            .collect();
        let result = if commit {
            txn.commit(&mut participants).await.map(|c| c.pending)
        } else {
            txn.rollback(&mut participants).await.map(|()| Vec::new())
        };
        drop(participants);
        match result {
            Ok(pending) => {
                for mut held in conns {
                    if pending.contains(&held.data_source) {
                        continue;
                    }
                    held.conn.status &= !status::IN_TRANS;
                    self.held.insert(held);
                }
                Ok(())
            }
            Err(e) => {
                tracing::warn!(conn = self.session, error = %e, commit, "distributed transaction failed");
                Err(e.to_server_error())
            }
        }
    }

    /// A statement's answer was a deadlock: as on one server, the whole transaction is rolled
    /// back (the deadlocked branch already is; MariaDB keeps it as rollback-only), and the
    /// session's next statement starts afresh.
    pub async fn roll_back_after_deadlock(&mut self) {
        if self.transaction.distributed.is_none() {
            return;
        }
        if let Err(e) = self.finish_distributed(false).await {
            tracing::warn!(conn = self.session, error = %e.message, "rolling back after a deadlock failed");
        }
        self.transaction.open = false;
    }

    /// Statements that commit implicitly (DDL) commit the open distributed transaction first,
    /// as one server would, and start no branch themselves.
    pub async fn commit_implicitly(&mut self) -> Result<(), ServerError> {
        self.transaction.no_branch = true;
        if self.transaction.distributed.is_none() {
            return Ok(());
        }
        let result = self.finish_distributed(true).await;
        self.transaction.open = false;
        result
    }

    /// A `SET TRANSACTION …` without scope ran: it applies to the session's next transaction,
    /// so the connections stay until that transaction is over.
    pub fn declare_next_transaction(&mut self, statement: &str) {
        self.transaction.next = Some(NextTransaction {
            statement: statement.to_string(),
            declared_now: true,
            begun: false,
        });
        self.pins |= PinReason::NextTransaction.bit();
    }

    /// A session statement (`SET …`) ran on every held connection: later connections replay it.
    pub fn record_setting(&mut self, statement: &str) {
        backend::record_setting(&mut self.replay, statement);
        for held in self.held.iter_mut() {
            held.conn.note_setting(statement);
        }
    }

    /// Runs a session statement on every held connection, relaying the answer of one of them:
    /// the default data source's (acquired if none is held). The other connections run it
    /// first, so the client's answer comes when every shard is done: a COMMIT answered earlier
    /// let the client's next read, on another session, miss a shard's committed rows. The
    /// `bool` says whether the statement succeeded.
    pub async fn everywhere<C: Client>(
        &mut self,
        client: &mut C,
        snapshot: &Snapshot,
        packet: &[u8],
        text: &str,
    ) -> (Flow, bool) {
        // Stopped halfway, a COMMIT would leave some shards committed and others not.
        let _atomic = self.cancel.atomic();
        let default = &snapshot.rules.schema.default_data_source;
        if let Err(e) = self.conn_for(snapshot, default).await {
            return (answer_error(client, &e.to_server_error()).await, false);
        }
        let mut lost = None;
        for held in self.held.iter_mut() {
            if held.data_source == *default {
                continue;
            }
            match held.conn.query(text).await {
                Ok(_) => held.unsure = false,
                Err(BackendError::Server { .. }) => {}
                Err(e) => {
                    lost = Some((held.data_source.clone(), e));
                    break;
                }
            }
        }
        if let Some((data_source, e)) = lost {
            return (self.backend_lost(client, &data_source, e).await, false);
        }
        match self
            .relay_on(client, default, packet, ResponseKind::Query)
            .await
        {
            Ok(outcome) => (Flow::Continue, outcome.error.is_none()),
            Err(flow) => (flow, false),
        }
    }
}

/// The error of a statement whose data source could not join the distributed transaction.
pub(crate) fn xa_unavailable(data_source: &str, reason: String) -> BackendError {
    BackendError::Server {
        source_name: data_source.to_string(),
        error: ExecError::XaUnavailable(reason).to_server_error(),
    }
}
