//! The session's transaction: whether the client opened one, the `SET TRANSACTION` waiting
//! for the next one, and the statements that run on every participant (every connection the
//! session holds) so all of them agree.
//!
//! A transaction's participants are the connections the session holds while it is open: a
//! connection acquired meanwhile joins it (`BEGIN` after the session's state), and COMMIT or
//! ROLLBACK runs on each. Each participant commits on its own (one shard's transaction is
//! that shard's own); a two-phase commit across participants (XA) is a phase of
//! [`Executor::end_transaction`] still to come.

use backend::{BackendError, PooledConn};
use protocol::response::ResponseKind;

use crate::pin::PinReason;
use crate::{answer_error, Client, Executor, Flow, Snapshot};

/// The transaction state of one session.
#[derive(Default)]
pub(crate) struct Transaction {
    /// An explicit transaction (BEGIN) is open.
    pub open: bool,
    /// A `SET TRANSACTION …` without scope waiting for the transaction it applies to.
    next: Option<NextTransaction>,
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
    pub async fn join(&self, conn: &mut PooledConn, open: bool) -> Result<(), BackendError> {
        if open {
            if let Some(next) = &self.next {
                conn.query(&next.statement).await?;
            }
            conn.query("BEGIN").await?;
        }
        Ok(())
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
    /// COMMIT or ROLLBACK.
    End,
    /// SAVEPOINT, RELEASE SAVEPOINT, ROLLBACK TO SAVEPOINT.
    Savepoint,
}

impl Executor {
    /// Runs a transaction statement on every participant, relaying one answer (see
    /// [`everywhere`](Self::everywhere)), and follows the transaction's state.
    pub async fn transaction_statement<C: Client>(
        &mut self,
        client: &mut C,
        snapshot: &Snapshot,
        statement: TransactionStatement,
        packet: &[u8],
        text: &str,
    ) -> Flow {
        let (flow, ok) = self.everywhere(client, snapshot, packet, text).await;
        match statement {
            TransactionStatement::Begin if ok => self.transaction.open = true,
            TransactionStatement::End => self.end_transaction(),
            _ => {}
        }
        flow
    }

    /// The client's transaction is over (committed or rolled back on every participant).
    pub(crate) fn end_transaction(&mut self) {
        self.transaction.open = false;
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
