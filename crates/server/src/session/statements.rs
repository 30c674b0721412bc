//! Prepared statements belong to the session, not to a backend connection: the client sees
//! statement ids the proxy hands out. A statement whose route does not depend on its
//! parameters is *fixed*: it has one target and executions are relayed with only the
//! statement id patched, so the binary protocol's hot path decodes no parameters. Other
//! statements are routed at each execution with the bound values and executed with the
//! parameters re-encoded. Either way the session knows a statement by its physical SQL: the
//! connection that runs it (borrowed from the pool, possibly used by other sessions since)
//! knows which statements it has prepared and prepares the SQL if it has not.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::{BufMut, BytesMut};
use protocol::constants::com;
use protocol::response::ResponseKind;
use protocol::stmt::{Execute, ParamType, ParamValue};
use protocol::text;
use protocol::ServerError;
use router::{Combine, Param, Plan, SessionStatement, StatementKind};
use rules::Rules;
use tokio::io::{AsyncRead, AsyncWrite};

use executor::{Access, Effects, Flow, PinReason, Request};

use super::fill::IdRequest;
use super::own_values;
use super::show::Asked;
use super::Session;
use crate::error::SessionError;
use crate::intercept::unqualified_system_tables;

/// One prepared statement of a session.
pub(super) struct Prepared {
    /// The SQL as the client wrote it (as [`text::decode`] reads it).
    pub(super) sql: String,
    pub(super) params: usize,
    /// Parameter types bound by the last execute (clients may not resend them).
    pub(super) types: Vec<ParamType>,
    /// Values sent with COM_STMT_SEND_LONG_DATA since the last execute.
    long_data: Vec<Option<Vec<u8>>>,
    /// Some of them did not fit in the session's room: the next execute fails.
    long_data_refused: bool,
    /// The one place every execution goes: data source and physical SQL (shared, so an
    /// execution takes it without copying the strings).
    fixed: Option<Arc<(String, String)>>,
    /// A transaction or SET statement: each execution runs it as the text protocol would, on
    /// every connection the session holds and is yet to acquire.
    pub(super) session: Option<SessionStatement>,
    /// What executing it does to the session's pins.
    pub(super) effects: Effects,
    /// Whether executions may read from a replica, as far as the statement's text tells.
    access: Access,
    /// The rules the route was decided under; after a reload it is decided again.
    rules: Arc<Rules>,
    /// How long an execution may run, as the statement's text says.
    time_limit: sql::TimeLimit,
}

impl Prepared {
    fn new(
        sql: String,
        params: usize,
        fixed: Option<Arc<(String, String)>>,
        session: Option<SessionStatement>,
        plan: &Plan,
        rules: &Arc<Rules>,
    ) -> Prepared {
        let items = executor::items(&sql);
        let effects = executor::scan(&items).then(executor::unread_set(&plan.kind, &sql));
        let access = executor::classify(&plan.kind, &sql, &items);
        let time_limit = sql::time_limit(&sql);
        Prepared {
            sql,
            params,
            types: Vec::new(),
            long_data: vec![None; params],
            long_data_refused: false,
            fixed,
            session,
            effects,
            access,
            rules: rules.clone(),
            time_limit,
        }
    }

    /// Drops the long data sent since the last execute; returns its size.
    fn clear_long_data(&mut self) -> usize {
        self.long_data_refused = false;
        self.long_data
            .iter_mut()
            .filter_map(Option::take)
            .map(|d| d.len())
            .sum()
    }
}

/// The session's statements by the ids the client knows.
#[derive(Default)]
pub(super) struct Statements {
    by_id: HashMap<u32, Prepared>,
    next_id: u32,
    /// Bytes of long data all statements hold, at most `max_allowed_packet`.
    long_data_bytes: usize,
    /// The statement the last COM_STMT_PREPARE created; `None` after a prepare failed.
    last: Option<u32>,
}

/// MariaDB's statement id meaning "the statement this connection prepared last": Connector/C's
/// `mariadb_stmt_execute_direct` and the npm `mariadb` connector send COM_STMT_PREPARE and
/// COM_STMT_EXECUTE together, before the prepare's answer gives them the id.
const LAST_PREPARED: u32 = u32::MAX;

impl Statements {
    pub fn clear(&mut self) {
        self.by_id.clear();
        self.long_data_bytes = 0;
        self.last = None;
    }

    /// The statement id a COM_STMT_* packet names, with [`LAST_PREPARED`] resolved. After a
    /// failed prepare it stays unknown, so the execute sent with it fails with 1243 as on
    /// MariaDB (whose failed prepare clears the last statement too).
    fn id_in(&self, packet: &[u8]) -> u32 {
        match statement_id(packet) {
            Some(LAST_PREPARED) => self.last.unwrap_or(LAST_PREPARED),
            id => id.unwrap_or(0),
        }
    }

    /// The statement a COM_STMT_* packet names.
    pub(super) fn named_in(&mut self, packet: &[u8]) -> Result<&mut Prepared, u32> {
        let id = self.id_in(packet);
        self.by_id.get_mut(&id).ok_or(id)
    }

    /// What the text of the statement a COM_STMT_EXECUTE runs says about its time limit;
    /// `None` for an unknown statement.
    pub fn time_limit(&self, packet: &[u8]) -> Option<sql::TimeLimit> {
        self.by_id.get(&self.id_in(packet)).map(|p| p.time_limit)
    }

    fn insert(&mut self, id: u32, prepared: Prepared) {
        self.by_id.insert(id, prepared);
        self.last = Some(id);
    }
}

fn statement_id(packet: &[u8]) -> Option<u32> {
    let b = packet.get(1..5)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// Makes a fixed statement's execute carry its parameter types: the backend statement may be
/// freshly prepared on the connection this execute borrowed, or shared with sessions that
/// bound other types, so the types bound by an earlier execute cannot be relied on. Types the
/// client sends are remembered in `types` for the executes that omit them.
fn bind_types(packet: &mut BytesMut, params: usize, types: &mut Vec<ParamType>) {
    if params == 0 {
        return;
    }
    // Command, statement id, flags, iteration count, null bitmap, then the bound flag.
    let at = 10 + params.div_ceil(8);
    match packet.get(at) {
        Some(1) => {
            if let Some(raw) = packet.get(at + 1..at + 1 + 2 * params) {
                types.clear();
                types.extend(raw.chunks(2).map(|t| ParamType {
                    column_type: t[0],
                    unsigned: t[1] & 0x80 != 0,
                }));
            }
        }
        Some(0) if types.len() == params => {
            let mut bound = BytesMut::with_capacity(packet.len() + 2 * params);
            bound.put_slice(&packet[..at]);
            bound.put_u8(1);
            for t in types.iter() {
                bound.put_u8(t.column_type);
                bound.put_u8(if t.unsigned { 0x80 } else { 0 });
            }
            bound.put_slice(&packet[at + 1..]);
            *packet = bound;
        }
        _ => {}
    }
}

/// The one place every execution of a prepared statement goes, when its route does not
/// depend on the values bound: one target relayed as it is. A plan that merges (even from one
/// target: a data source's tables united) or fills ids is routed at each execution.
fn fixed_route(plan: &Plan, fills_ids: bool) -> Option<Arc<(String, String)>> {
    match (plan.targets.as_slice(), &plan.combine, &plan.kind) {
        // SHOW runs through the logical view at each execution.
        (_, _, StatementKind::Session(_) | StatementKind::Show) => None,
        _ if fills_ids => None,
        ([only], Combine::Single, _) => {
            Some(Arc::new((only.data_source.clone(), only.sql.clone())))
        }
        _ => None,
    }
}

pub(super) fn to_param(v: &ParamValue) -> Param {
    match v {
        ParamValue::Null => Param::Null,
        ParamValue::Int(i) => Param::Int(*i),
        ParamValue::UInt(u) => Param::UInt(*u),
        ParamValue::Double(d) => Param::Double(*d),
        ParamValue::Bytes(b) => Param::Bytes(b.clone()),
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    pub(super) async fn stmt_prepare(&mut self, packet: &[u8]) -> Flow {
        self.statements.last = None;
        let snapshot = self.ctx.snapshot.load_full();
        let limit = snapshot.rules.proxy.max_prepared_statements;
        if self.statements.by_id.len() >= limit {
            return self.error(SessionError::TooManyPrepared(limit)).await;
        }
        let mut sql = text::decode(&packet[1..], self.text_charset).into_owned();
        // `SET STATEMENT max_statement_time = N FOR …`: the statement is prepared, each
        // execution gets the limit.
        let own_limit = match sql::set_statement(&sql) {
            None => None,
            Some(Ok(set)) => {
                sql.drain(..set.statement_at);
                Some(sql::TimeLimit::Own(set.limit))
            }
            Some(Err(what)) => return self.error(ServerError::not_supported(what)).await,
        };
        if let Some(err) = unqualified_system_tables(self.exec.state.database.as_deref(), &sql)
            .or_else(|| {
                let has_default_limit = self.default_time_limit().is_some();
                own_values::refused_in_prepared(&sql, has_default_limit)
            })
        {
            return self.error(err).await;
        }
        // Routed without parameter values: a statement whose target depends on them gets
        // every candidate target here (see `fixed_route`).
        let routed = match self
            .route_with_columns(&snapshot, |router| router.route_for_prepare(&sql))
            .await
        {
            Ok(routed) => routed,
            Err(flow) => return flow,
        };
        let (plan, fills_ids) = match routed {
            Ok(r) => (r.plan, r.fills_ids),
            Err(e) => return self.error(e).await,
        };
        let session = match &plan.kind {
            StatementKind::Session(
                SessionStatement::Use(_) | SessionStatement::ExplainRoute(_),
            ) => {
                return self.error(SessionError::NotPreparable).await;
            }
            StatementKind::Session(statement) => Some(statement.clone()),
            _ => None,
        };
        if plan.kind == StatementKind::Show && plan.targets.len() == 1 {
            return self.prepare_show(&plan, sql, &snapshot).await;
        }
        let default = snapshot.rules.schema.default_data_source.clone();
        // The client must see its own statement's parameters and columns: the prepare plan
        // gives the client's statement on each candidate target (a merge's rewrite only comes
        // with bound values).
        let (data_source, physical_sql) = match plan.targets.first() {
            Some(t) if !matches!(plan.kind, StatementKind::Session(_)) => {
                (t.data_source.clone(), t.sql.clone())
            }
            _ => (default, sql.clone()),
        };
        let fixed = fixed_route(&plan, fills_ids);
        self.statements.next_id = self.statements.next_id.wrapping_add(1).max(1);
        let client_statement_id = self.statements.next_id;
        if let Err(e) = self.exec.backend(&snapshot, &data_source).await {
            return self.error(e).await;
        }
        let mut request = BytesMut::with_capacity(1 + physical_sql.len());
        request.extend_from_slice(&[com::STMT_PREPARE]);
        request.extend_from_slice(&text::encode(&physical_sql));
        let kind = ResponseKind::Prepare {
            client_statement_id,
        };
        let outcome = match self
            .exec
            .relay_on(&mut self.client, &data_source, &request, kind)
            .await
        {
            Ok(o) => o,
            Err(flow) => return flow,
        };
        if let Some(info) = outcome.prepared {
            if let Ok(conn) = self.exec.backend(&snapshot, &data_source).await {
                conn.note_prepared(&physical_sql, info.statement_id);
            }
            let params = usize::from(info.params);
            let mut prepared = Prepared::new(sql, params, fixed, session, &plan, &snapshot.rules);
            if let Some(limit) = own_limit {
                prepared.time_limit = limit;
            }
            self.statements.insert(client_statement_id, prepared);
        }
        Flow::Continue
    }

    /// COM_STMT_PREPARE of SHOW / DESCRIBE: answered by the proxy with the columns of the
    /// rewritten result (logical names), since the backend's prepare answer would name the
    /// physical database; every execution runs it through the logical view again. (SHOW takes
    /// no parameters: a `?` is the backend's syntax error, as on MariaDB.)
    async fn prepare_show(
        &mut self,
        plan: &router::Plan,
        sql: String,
        snapshot: &crate::Snapshot,
    ) -> Flow {
        let defs = match self.show_result(plan, &sql).await {
            Ok(Some(shown)) => shown.defs,
            Ok(None) => Vec::new(),
            Err(flow) => return flow,
        };
        self.statements.next_id = self.statements.next_id.wrapping_add(1).max(1);
        let statement_id = self.statements.next_id;
        let prepared = Prepared::new(sql, 0, None, None, plan, &snapshot.rules);
        self.statements.insert(statement_id, prepared);
        self.answer_show(&defs, Vec::new(), 0, Asked::Prepare { statement_id })
            .await
    }

    pub(super) async fn stmt_execute(&mut self, mut packet: BytesMut) -> Flow {
        let id = self.statements.id_in(&packet);
        let Some(prepared) = self.statements.by_id.get(&id) else {
            return self
                .error(SessionError::UnknownStatement {
                    id,
                    command: com::name(com::STMT_EXECUTE),
                })
                .await;
        };
        let snapshot = self.ctx.snapshot.load_full();
        if !Arc::ptr_eq(&prepared.rules, &snapshot.rules) {
            if let Err(flow) = self.reroute_statement(id, &snapshot).await {
                return flow;
            }
        }
        let Some(prepared) = self.statements.by_id.get_mut(&id) else {
            return self
                .error(SessionError::UnknownStatement {
                    id,
                    command: com::name(com::STMT_EXECUTE),
                })
                .await;
        };
        let cursor = packet.get(5).is_some_and(|&flags| flags != 0);
        let access = prepared.access;
        let mut effects = prepared.effects;
        if cursor {
            effects = Effects::set(PinReason::Cursor).then(effects);
        }
        self.exec
            .apply(Effects::clear(PinReason::LongData).then(effects));
        let (fixed, params) = (prepared.fixed.clone(), prepared.params);
        if let Some(statement) = prepared.session.clone() {
            if params > 0 {
                return self
                    .error(ServerError::not_supported(
                        "a prepared transaction or SET statement with parameters",
                    ))
                    .await;
            }
            // Run as its text: BEGIN, COMMIT, ROLLBACK and SET must reach every connection of
            // the session (and be replayed on later ones), not only the one it was prepared on.
            let sql = prepared.sql.clone();
            let mut query = BytesMut::with_capacity(1 + sql.len());
            query.put_u8(com::QUERY);
            query.put_slice(&text::encode(&sql));
            return self.session_statement(&statement, &query, &sql).await;
        }
        if let Some(fixed) = fixed {
            let (data_source, sql) = &*fixed;
            bind_types(&mut packet, params, &mut prepared.types);
            self.exec.set_access(access);
            // A read that a failing replica did not answer runs once more elsewhere (the
            // replica is out by then).
            loop {
                let backend_id = match self.exec.prepared_id(&snapshot, data_source, sql).await {
                    Ok(id) => id,
                    Err(e) => return self.error(e).await,
                };
                packet[1..5].copy_from_slice(&backend_id.to_le_bytes());
                let kind = ResponseKind::Execute { cursor };
                match self
                    .exec
                    .relay_read(&mut self.client, data_source, &packet, kind)
                    .await
                {
                    Ok(_) => return Flow::Continue,
                    Err(Some(flow)) => return flow,
                    Err(None) => continue,
                }
            }
        }
        if prepared.long_data_refused {
            self.statements.long_data_bytes -= prepared.clear_long_data();
            let max = snapshot.rules.proxy.max_allowed_packet;
            return self
                .error(SessionError::BadExecute(format!(
                    "the parameter data sent \
                         with COM_STMT_SEND_LONG_DATA passed max_allowed_packet ({max} bytes)"
                )))
                .await;
        }
        let exec = match Execute::decode(
            &packet,
            prepared.params,
            &prepared.types,
            &prepared.long_data,
        ) {
            Ok(e) => e,
            Err(e) => return self.error(SessionError::BadExecute(e.to_string())).await,
        };
        prepared.types = exec.types.clone();
        self.statements.long_data_bytes -= prepared.clear_long_data();
        let sql = prepared.sql.clone();
        let params: Vec<Param> = exec.values.iter().map(to_param).collect();
        self.exec.set_access(access);
        let routed = match self
            .route_with_columns(&snapshot, |router| router.route(&sql, &params))
            .await
        {
            Ok(routed) => routed,
            Err(flow) => return flow,
        };
        let plan = match routed {
            Ok(plan) => plan,
            Err(e) => {
                return match IdRequest::asked_by(&e) {
                    Some(request) => self.execute_filled(&exec, &sql, &params, request).await,
                    None => self.error(e).await,
                }
            }
        };
        if plan.kind == StatementKind::Show && plan.targets.len() == 1 {
            return self.run_show(&plan, &sql, Asked::Execute).await;
        }
        let flow = self
            .exec
            .run_plan(
                &mut self.client,
                &snapshot,
                &plan,
                Request::Execute { exec: &exec },
            )
            .await;
        if plan.kind == StatementKind::Ddl {
            // The definition of a table may have changed: column lists are read again.
            snapshot.router.forget_columns();
        }
        flow
    }

    /// The rules changed since statement `id` was routed: decide its route again (a fixed
    /// statement may now live elsewhere, or depend on its parameters).
    async fn reroute_statement(&mut self, id: u32, snapshot: &crate::Snapshot) -> Result<(), Flow> {
        let Some(prepared) = self.statements.by_id.get(&id) else {
            return Ok(());
        };
        let sql = prepared.sql.clone();
        let routed = self
            .route_with_columns(snapshot, |router| router.route_for_prepare(&sql))
            .await?;
        let route = match routed {
            Ok(route) => route,
            Err(e) => return Err(self.error(e).await),
        };
        let fixed = fixed_route(&route.plan, route.fills_ids);
        if let Some(prepared) = self.statements.by_id.get_mut(&id) {
            prepared.fixed = fixed;
            prepared.rules = snapshot.rules.clone();
        }
        Ok(())
    }

    /// COM_STMT_FETCH and COM_STMT_RESET of a fixed statement are relayed with the backend's
    /// id; a routed statement has no server-side cursor and resets locally.
    pub(super) async fn stmt_relay(&mut self, mut packet: BytesMut, kind: ResponseKind) -> Flow {
        let command = packet[0];
        let id = self.statements.id_in(&packet);
        let Some(prepared) = self.statements.by_id.get_mut(&id) else {
            return self
                .error(SessionError::UnknownStatement {
                    id,
                    command: com::name(command),
                })
                .await;
        };
        self.statements.long_data_bytes -= prepared.clear_long_data();
        match prepared.fixed.clone() {
            Some(fixed) => {
                let (data_source, sql) = &*fixed;
                let snapshot = self.ctx.snapshot.load_full();
                let backend_id = match self.exec.prepared_id(&snapshot, data_source, sql).await {
                    Ok(id) => id,
                    Err(e) => return self.error(e).await,
                };
                packet[1..5].copy_from_slice(&backend_id.to_le_bytes());
                match self
                    .exec
                    .relay_on(&mut self.client, data_source, &packet, kind)
                    .await
                {
                    Ok(_) => Flow::Continue,
                    Err(flow) => flow,
                }
            }
            None if command == com::STMT_RESET => self.ok().await,
            None => {
                self.error(ServerError::not_supported(
                    "cursors on statements routed by their parameters",
                ))
                .await
            }
        }
    }

    /// COM_STMT_SEND_LONG_DATA: no response, not even for errors (they surface at execute).
    pub(super) async fn stmt_send_long_data(&mut self, mut packet: BytesMut) -> Flow {
        let id = self.statements.id_in(&packet);
        let max = self.ctx.snapshot.load().rules.proxy.max_allowed_packet;
        let Some(prepared) = self.statements.by_id.get_mut(&id) else {
            return Flow::Continue;
        };
        if let Some(fixed) = prepared.fixed.clone() {
            let (data_source, sql) = &*fixed;
            // The data waits in the backend's statement until the execute: nobody else may
            // use that connection meanwhile.
            self.exec.apply(Effects::set(PinReason::LongData));
            let snapshot = self.ctx.snapshot.load_full();
            return match self.exec.prepared_id(&snapshot, data_source, sql).await {
                Ok(backend_id) => {
                    packet[1..5].copy_from_slice(&backend_id.to_le_bytes());
                    self.exec
                        .send_on(&mut self.client, data_source, &packet)
                        .await
                }
                Err(_) => Flow::Continue,
            };
        }
        let Some(param) = packet
            .get(5..7)
            .map(|b| usize::from(u16::from_le_bytes([b[0], b[1]])))
        else {
            return Flow::Continue;
        };
        if let Some(slot) = prepared.long_data.get_mut(param) {
            // Held here until the execute: bounded for the whole session, like any packet.
            let chunk = packet.get(7..).unwrap_or_default();
            if chunk.len() > max.saturating_sub(self.statements.long_data_bytes) {
                prepared.long_data_refused = true;
            } else {
                slot.get_or_insert_with(Vec::new).extend_from_slice(chunk);
                self.statements.long_data_bytes += chunk.len();
            }
        }
        Flow::Continue
    }

    /// COM_STMT_CLOSE: no response.
    pub(super) async fn stmt_close(&mut self, packet: &[u8]) -> Flow {
        if packet.len() < 5 {
            return Flow::Continue;
        }
        let id = self.statements.id_in(packet);
        let Some(mut prepared) = self.statements.by_id.remove(&id) else {
            return Flow::Continue;
        };
        self.statements.long_data_bytes -= prepared.clear_long_data();
        if self.statements.last == Some(id) {
            self.statements.last = None;
        }
        // Statements stay prepared on their connections (keyed by SQL, shared by every
        // session that borrows the connection) until the connection's cache is full or it is
        // reset; a fixed statement is closed now if the session still holds its connection.
        let Some(fixed) = prepared.fixed else {
            return Flow::Continue;
        };
        let (data_source, sql) = &*fixed;
        self.exec
            .close_prepared(&mut self.client, data_source, sql)
            .await
    }
}
