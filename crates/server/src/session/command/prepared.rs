//! The COM_STMT_* family: PREPARE, EXECUTE, FETCH, RESET, SEND_LONG_DATA and CLOSE of the
//! session's prepared statements, which `session::statements` keeps (what a statement is,
//! fixed or routed per execution, and how its parameters are read).

use std::sync::Arc;

use bytes::{BufMut, BytesMut};
use executor::{Access, Effects, Flow, PinReason, Request};
use protocol::constants::com;
use protocol::response::ResponseKind;
use protocol::stmt::Execute;
use protocol::text;
use protocol::ServerError;
use router::{Param, SessionStatement, StatementKind};
use tokio::io::{AsyncRead, AsyncWrite};

use super::processes;
use crate::error::SessionError;
use crate::intercept::unqualified_system_tables;
use crate::session::fill::IdRequest;
use crate::session::own_values;
use crate::session::show::Asked;
use crate::session::statements::{bind_types, fixed_route, to_param, Prepared};
use crate::session::Session;

/// Runs a COM_STMT_* command.
pub(super) async fn run<S: AsyncRead + AsyncWrite + Unpin>(
    session: &mut Session<S>,
    command: u8,
    mut packet: BytesMut,
) -> Flow {
    match command {
        com::STMT_PREPARE => {
            if let Some(replaced) = session.prepare_with_identity(&packet) {
                packet = replaced;
            }
            session.begin_statement();
            // Before anything could prepare it: KILL and process lists never reach a backend.
            let text = text::decode(&packet[1..], session.text_charset);
            if let Some(flow) = processes::refuse_prepare(session, &text).await {
                return flow;
            }
            drop(text);
            prepare(session, &packet).await
        }
        com::STMT_EXECUTE => {
            session.begin_statement();
            execute(session, packet).await
        }
        com::STMT_FETCH => relay(session, packet, ResponseKind::Fetch).await,
        com::STMT_RESET => relay(session, packet, ResponseKind::Single).await,
        com::STMT_SEND_LONG_DATA => send_long_data(session, packet).await,
        com::STMT_CLOSE => close(session, &packet).await,
        other => session.error(ServerError::unknown_command(other)).await,
    }
}
async fn prepare<S: AsyncRead + AsyncWrite + Unpin>(
    session: &mut Session<S>,
    packet: &[u8],
) -> Flow {
    session.statements.last = None;
    let snapshot = session.ctx.snapshot.load_full();
    let limit = snapshot.rules.proxy.max_prepared_statements;
    if session.statements.by_id.len() >= limit {
        return session.error(SessionError::TooManyPrepared(limit)).await;
    }
    let mut sql = text::decode(&packet[1..], session.text_charset).into_owned();
    // `SET STATEMENT max_statement_time = N FOR …`: the statement is prepared, each
    // execution gets the limit.
    let own_limit = match sql::set_statement(&sql) {
        None => None,
        Some(Ok(set)) => {
            sql.drain(..set.statement_at);
            Some(sql::TimeLimit::Own(set.limit))
        }
        Some(Err(what)) => return session.error(ServerError::not_supported(what)).await,
    };
    if let Some(err) = unqualified_system_tables(session.exec.state.database.as_deref(), &sql)
        .or_else(|| {
            let has_default_limit = session.default_time_limit().is_some();
            own_values::refused_in_prepared(&sql, has_default_limit)
        })
    {
        return session.error(err).await;
    }
    // Routed without parameter values: a statement whose target depends on them gets
    // every candidate target here (see `fixed_route`).
    let routed = match session
        .route_with_columns(&snapshot, |router| router.route_for_prepare(&sql))
        .await
    {
        Ok(routed) => routed,
        Err(flow) => return flow,
    };
    let (plan, per_execution) = match routed {
        Ok(r) => (r.plan, r.per_execution),
        Err(e) => return session.error(e).await,
    };
    let statement = match &plan.kind {
        StatementKind::Session(SessionStatement::Use(_) | SessionStatement::ExplainRoute(_)) => {
            return session.error(SessionError::NotPreparable).await;
        }
        StatementKind::Session(statement) => Some(statement.clone()),
        _ => None,
    };
    if plan.kind == StatementKind::Show && plan.targets.len() == 1 {
        return prepare_show(session, &plan, sql, &snapshot).await;
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
    let fixed = fixed_route(&plan, per_execution);
    session.statements.next_id = session.statements.next_id.wrapping_add(1).max(1);
    let client_statement_id = session.statements.next_id;
    if let Err(e) = session.exec.backend(&snapshot, &data_source).await {
        return session.error(e).await;
    }
    let mut request = BytesMut::with_capacity(1 + physical_sql.len());
    request.extend_from_slice(&[com::STMT_PREPARE]);
    request.extend_from_slice(&text::encode(&physical_sql));
    let kind = ResponseKind::Prepare {
        client_statement_id,
    };
    let outcome = match session
        .exec
        .relay_on(&mut session.client, &data_source, &request, kind)
        .await
    {
        Ok(o) => o,
        Err(flow) => return flow,
    };
    if let Some(info) = outcome.prepared {
        if let Ok(conn) = session.exec.backend(&snapshot, &data_source).await {
            conn.note_prepared(&physical_sql, info.statement_id);
        }
        let params = usize::from(info.params);
        let mut prepared = Prepared::new(sql, params, fixed, statement, &plan, &snapshot.rules);
        if let Some(limit) = own_limit {
            prepared.time_limit = limit;
        }
        session.statements.insert(client_statement_id, prepared);
    }
    Flow::Continue
}

/// COM_STMT_PREPARE of SHOW / DESCRIBE: answered by the proxy with the columns of the
/// rewritten result (logical names), since the backend's prepare answer would name the
/// physical database; every execution runs it through the logical view again. (SHOW takes
/// no parameters: a `?` is the backend's syntax error, as on MariaDB.)
async fn prepare_show<S: AsyncRead + AsyncWrite + Unpin>(
    session: &mut Session<S>,
    plan: &router::Plan,
    sql: String,
    snapshot: &crate::Snapshot,
) -> Flow {
    let defs = match session.show_result(plan, &sql).await {
        Ok(Some(shown)) => shown.defs,
        Ok(None) => Vec::new(),
        Err(flow) => return flow,
    };
    session.statements.next_id = session.statements.next_id.wrapping_add(1).max(1);
    let statement_id = session.statements.next_id;
    let prepared = Prepared::new(sql, 0, None, None, plan, &snapshot.rules);
    session.statements.insert(statement_id, prepared);
    session
        .answer_show(&defs, Vec::new(), 0, Asked::Prepare { statement_id })
        .await
}

async fn execute<S: AsyncRead + AsyncWrite + Unpin>(
    session: &mut Session<S>,
    mut packet: BytesMut,
) -> Flow {
    let id = session.statements.id_in(&packet);
    let Some(prepared) = session.statements.by_id.get(&id) else {
        return session
            .error(SessionError::UnknownStatement {
                id,
                command: com::name(com::STMT_EXECUTE),
            })
            .await;
    };
    let snapshot = session.ctx.snapshot.load_full();
    if !Arc::ptr_eq(&prepared.rules, &snapshot.rules) {
        if let Err(flow) = reroute_statement(session, id, &snapshot).await {
            return flow;
        }
    }
    let Some(prepared) = session.statements.by_id.get_mut(&id) else {
        return session
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
    session
        .exec
        .apply(Effects::clear(PinReason::LongData).then(effects));
    let (fixed, params) = (prepared.fixed.clone(), prepared.params);
    if let Some(statement) = prepared.session.clone() {
        if params > 0 {
            return session
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
        return session.session_statement(&statement, &query, &sql).await;
    }
    if let Some(fixed) = fixed {
        let (data_source, sql) = &*fixed;
        bind_types(&mut packet, params, &mut prepared.types);
        session.exec.set_access(access);
        // A read that a failing replica did not answer runs once more elsewhere (the
        // replica is out by then).
        loop {
            let backend_id = match session.exec.prepared_id(&snapshot, data_source, sql).await {
                Ok(id) => id,
                Err(e) => return session.error(e).await,
            };
            packet[1..5].copy_from_slice(&backend_id.to_le_bytes());
            let kind = ResponseKind::Execute { cursor };
            match session
                .exec
                .relay_read(&mut session.client, data_source, &packet, kind)
                .await
            {
                Ok(outcome) => {
                    let read = access != Access::Write;
                    session
                        .exec
                        .note_found_rows(read, data_source, sql, &outcome)
                        .await;
                    return Flow::Continue;
                }
                Err(Some(flow)) => return flow,
                Err(None) => continue,
            }
        }
    }
    if prepared.long_data_refused {
        session.statements.long_data_bytes -= prepared.clear_long_data();
        let max = snapshot.rules.proxy.max_allowed_packet;
        return session
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
        Err(e) => return session.error(SessionError::BadExecute(e.to_string())).await,
    };
    prepared.types = exec.types.clone();
    session.statements.long_data_bytes -= prepared.clear_long_data();
    let sql = prepared.sql.clone();
    let params: Vec<Param> = exec.values.iter().map(to_param).collect();
    session.exec.set_access(access);
    let routed = match session
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
                Some(request) => session.execute_filled(&exec, &sql, &params, request).await,
                None => session.error(e).await,
            }
        }
    };
    if plan.kind == StatementKind::Show && plan.targets.len() == 1 {
        return session.run_show(&plan, &sql, Asked::Execute).await;
    }
    let flow = session
        .exec
        .run_plan(
            &mut session.client,
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
async fn reroute_statement<S: AsyncRead + AsyncWrite + Unpin>(
    session: &mut Session<S>,
    id: u32,
    snapshot: &crate::Snapshot,
) -> Result<(), Flow> {
    let Some(prepared) = session.statements.by_id.get(&id) else {
        return Ok(());
    };
    let sql = prepared.sql.clone();
    let routed = session
        .route_with_columns(snapshot, |router| router.route_for_prepare(&sql))
        .await?;
    let route = match routed {
        Ok(route) => route,
        Err(e) => return Err(session.error(e).await),
    };
    let fixed = fixed_route(&route.plan, route.per_execution);
    if let Some(prepared) = session.statements.by_id.get_mut(&id) {
        prepared.fixed = fixed;
        prepared.rules = snapshot.rules.clone();
    }
    Ok(())
}

/// COM_STMT_FETCH and COM_STMT_RESET of a fixed statement are relayed with the backend's
/// id; a routed statement has no server-side cursor and resets locally.
async fn relay<S: AsyncRead + AsyncWrite + Unpin>(
    session: &mut Session<S>,
    mut packet: BytesMut,
    kind: ResponseKind,
) -> Flow {
    let command = packet[0];
    let id = session.statements.id_in(&packet);
    let Some(prepared) = session.statements.by_id.get_mut(&id) else {
        return session
            .error(SessionError::UnknownStatement {
                id,
                command: com::name(command),
            })
            .await;
    };
    session.statements.long_data_bytes -= prepared.clear_long_data();
    match prepared.fixed.clone() {
        Some(fixed) => {
            let (data_source, sql) = &*fixed;
            let snapshot = session.ctx.snapshot.load_full();
            let backend_id = match session.exec.prepared_id(&snapshot, data_source, sql).await {
                Ok(id) => id,
                Err(e) => return session.error(e).await,
            };
            packet[1..5].copy_from_slice(&backend_id.to_le_bytes());
            match session
                .exec
                .relay_on(&mut session.client, data_source, &packet, kind)
                .await
            {
                Ok(_) => Flow::Continue,
                Err(flow) => flow,
            }
        }
        None if command == com::STMT_RESET => session.ok().await,
        None => {
            session
                .error(ServerError::not_supported(
                    "cursors on statements routed by their parameters",
                ))
                .await
        }
    }
}

/// COM_STMT_SEND_LONG_DATA: no response, not even for errors (they surface at execute).
async fn send_long_data<S: AsyncRead + AsyncWrite + Unpin>(
    session: &mut Session<S>,
    mut packet: BytesMut,
) -> Flow {
    let id = session.statements.id_in(&packet);
    let max = session.ctx.snapshot.load().rules.proxy.max_allowed_packet;
    let Some(prepared) = session.statements.by_id.get_mut(&id) else {
        return Flow::Continue;
    };
    if let Some(fixed) = prepared.fixed.clone() {
        let (data_source, sql) = &*fixed;
        // The data waits in the backend's statement until the execute: nobody else may
        // use that connection meanwhile.
        session.exec.apply(Effects::set(PinReason::LongData));
        let snapshot = session.ctx.snapshot.load_full();
        return match session.exec.prepared_id(&snapshot, data_source, sql).await {
            Ok(backend_id) => {
                packet[1..5].copy_from_slice(&backend_id.to_le_bytes());
                session
                    .exec
                    .send_on(&mut session.client, data_source, &packet)
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
        if chunk.len() > max.saturating_sub(session.statements.long_data_bytes) {
            prepared.long_data_refused = true;
        } else {
            slot.get_or_insert_with(Vec::new).extend_from_slice(chunk);
            session.statements.long_data_bytes += chunk.len();
        }
    }
    Flow::Continue
}

/// COM_STMT_CLOSE: no response.
async fn close<S: AsyncRead + AsyncWrite + Unpin>(session: &mut Session<S>, packet: &[u8]) -> Flow {
    if packet.len() < 5 {
        return Flow::Continue;
    }
    let id = session.statements.id_in(packet);
    let Some(mut prepared) = session.statements.by_id.remove(&id) else {
        return Flow::Continue;
    };
    session.statements.long_data_bytes -= prepared.clear_long_data();
    if session.statements.last == Some(id) {
        session.statements.last = None;
    }
    // Statements stay prepared on their connections (keyed by SQL, shared by every
    // session that borrows the connection) until the connection's cache is full or it is
    // reset; a fixed statement is closed now if the session still holds its connection.
    let Some(fixed) = prepared.fixed else {
        return Flow::Continue;
    };
    let (data_source, sql) = &*fixed;
    session
        .exec
        .close_prepared(&mut session.client, data_source, sql)
        .await
}
