//! INSERTs whose column a sequence fills (`[sequences.<name>] table, column`).
//!
//! The router does no I/O: routing such an INSERT without ids fails with
//! [`RouteError::IdsNeeded`] naming the sequence and how many ids it needs. The session takes
//! them from the proxy's sequences (one round trip to the meta data source at most, usually
//! none), routes the statement again with them — so an id can itself be the sharding key —
//! and runs it. The answer is one OK whose `last_insert_id` is the first id, and
//! `SELECT LAST_INSERT_ID()` returns it from then on, as MySQL does for AUTO_INCREMENT (the
//! first id of a multi-row INSERT). Text statements get the ids as literals; prepared ones as
//! extra parameters appended to the bound values, so their physical text, prepared once per
//! backend connection, does not change from one execution to the next.

use std::sync::Arc;

use protocol::constants::column_type;
use protocol::stmt::{Execute, ParamType, ParamValue};
use protocol::{ClientError, ServerError};
use router::{IdStyle, Param, Plan, RouteError};
use sequence::Sequences;
use tokio::io::{AsyncRead, AsyncWrite};

use executor::{Access, Flow, Request};

use super::Session;
use crate::error::SessionError;
use crate::Snapshot;

/// The ids one statement asks for (from [`router::RouteError::IdsNeeded`]).
pub(super) struct IdRequest<'a> {
    pub sequence: &'a str,
    pub count: usize,
}

impl IdRequest<'_> {
    /// The ids routing failure `e` asks for, if that is what it is.
    pub fn asked_by(e: &RouteError) -> Option<IdRequest<'_>> {
        match e {
            RouteError::IdsNeeded {
                sequence, count, ..
            } => Some(IdRequest {
                sequence,
                count: *count,
            }),
            _ => None,
        }
    }
}

/// Filled ids as the parameters that follow a prepared statement's bound values
/// ([`IdStyle::Param`]).
pub(super) fn append_ids(types: &mut Vec<ParamType>, values: &mut Vec<ParamValue>, ids: &[u64]) {
    let id_type = ParamType {
        column_type: column_type::LONGLONG,
        unsigned: true,
    };
    types.extend(ids.iter().map(|_| id_type));
    values.extend(ids.iter().map(|&id| ParamValue::UInt(id)));
}

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    /// The proxy's sequences, or why there are none (the meta data source was down at start).
    pub(super) fn sequences(&self) -> Result<Arc<Sequences>, ServerError> {
        self.ctx
            .sequences
            .clone()
            .map_err(|why| SessionError::SequencesUnavailable(why.clone()).to_server_error())
    }

    /// Takes the ids `request` asks for and routes `sql` with them, written as `style` says.
    pub(super) async fn route_filling(
        &self,
        snapshot: &Snapshot,
        sql: &str,
        params: &[Param],
        request: IdRequest<'_>,
        style: IdStyle,
    ) -> Result<(Plan, Vec<u64>), ServerError> {
        let ids = self
            .sequences()?
            .next_n(request.sequence, request.count)
            .await
            .map_err(|e| e.to_server_error())?;
        let plan = snapshot
            .router
            .route_filled(sql, params, &ids, style)
            .map_err(|e| e.to_server_error())?;
        Ok((plan, ids))
    }

    /// COM_QUERY of an INSERT that needs ids.
    pub(super) async fn query_filled(
        &mut self,
        snapshot: &Snapshot,
        packet: &[u8],
        text: &str,
        request: IdRequest<'_>,
    ) -> Flow {
        match self
            .route_filling(snapshot, text, &[], request, IdStyle::Literal)
            .await
        {
            Ok((plan, ids)) => {
                let request = Request::Text {
                    original: packet,
                    text,
                };
                self.run_filled(&plan, request, &ids).await
            }
            Err(e) => self.error(e).await,
        }
    }

    /// COM_STMT_EXECUTE of an INSERT that needs ids: the ids follow the bound values.
    pub(super) async fn execute_filled(
        &mut self,
        exec: &Execute,
        sql: &str,
        params: &[Param],
        request: IdRequest<'_>,
    ) -> Flow {
        let snapshot = self.ctx.snapshot.load_full();
        let (plan, ids) = match self
            .route_filling(&snapshot, sql, params, request, IdStyle::Param)
            .await
        {
            Ok(r) => r,
            Err(e) => return self.error(e).await,
        };
        let mut exec = exec.clone();
        append_ids(&mut exec.types, &mut exec.values, &ids);
        self.run_filled(&plan, Request::Execute { exec: &exec }, &ids)
            .await
    }

    /// Runs a filled INSERT: one OK, with the first id as its last insert id.
    pub(super) async fn run_filled(
        &mut self,
        plan: &Plan,
        request: Request<'_>,
        ids: &[u64],
    ) -> Flow {
        // Filled ids route rows like any value: the statement writes, on the primaries.
        self.exec.set_access(Access::Write);
        self.exec.reported.answers_last_insert_id = true;
        let snapshot = self.ctx.snapshot.load_full();
        self.exec
            .run_sum_affected(
                &mut self.client,
                &snapshot,
                plan,
                request,
                ids.first().copied(),
            )
            .await
    }
}
