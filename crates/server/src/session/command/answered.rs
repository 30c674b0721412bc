//! The statements the proxy answers itself ([`Intercepted`]): they concern the logical schema
//! or the session, which no backend knows as the client sees them.

use executor::Flow;
use protocol::response::ResponseKind;
use protocol::resultset::{write_text_result, ColumnDef};
use tokio::io::{AsyncRead, AsyncWrite};

use super::connection::use_database;
use super::processes::has_process_privilege;
use crate::error::SessionError;
use crate::intercept::{like_matches, visible_databases, Intercepted};
use crate::session::Session;

/// Answers `statement`; `packet` is its COM_QUERY, for the statements a backend answers after
/// all.
pub(super) async fn run<S: AsyncRead + AsyncWrite + Unpin>(
    session: &mut Session<S>,
    statement: Intercepted,
    packet: &[u8],
) -> Flow {
    match statement {
        Intercepted::Diagnostics(question) => session.answer_diagnostics(&question).await,
        Intercepted::Use(db) => use_database(session, &db).await,
        Intercepted::ShowDatabases(like) => show_databases(session, like.as_deref()).await,
        Intercepted::SelectDatabase(column) => {
            let database = session.exec.state.database.clone();
            let status = session.exec.reported.status;
            let row = vec![database.map(String::into_bytes)];
            one_row(session, &[ColumnDef::varchar(&column, 64)], row, status).await
        }
        Intercepted::LastInsertId(column) => last_insert_id(session, &column, packet).await,
        Intercepted::NextVal {
            column,
            sequence,
            count,
        } => next_value(session, &column, &sequence, count).await,
        Intercepted::TransactionMode(column) => {
            let rules = session.ctx.snapshot.load().rules.clone();
            let mode = session.exec.transaction_mode(&rules).name();
            let status = session.exec.client_status();
            let row = vec![Some(mode.as_bytes().to_vec())];
            one_row(session, &[ColumnDef::varchar(&column, 8)], row, status).await
        }
        Intercepted::SetTransactionMode(value) => set_transaction_mode(session, &value).await,
        Intercepted::ShowDigest | Intercepted::FlushDigest if !has_process_privilege(session) => {
            session.error(SessionError::ProcessPrivilegeNeeded).await
        }
        Intercepted::ShowDigest => show_digest(session).await,
        Intercepted::FlushDigest => {
            session.ctx.metrics.digest.reset();
            session.ok().await
        }
    }
}

/// `SHOW DBMESH DIGEST`: a row per statement fingerprint, the largest total time first.
async fn show_digest<S: AsyncRead + AsyncWrite + Unpin>(session: &mut Session<S>) -> Flow {
    let columns = [
        ColumnDef::varchar("fingerprint", 4096),
        ColumnDef::unsigned_bigint("count"),
        ColumnDef::unsigned_bigint("errors"),
        ColumnDef::unsigned_bigint("rows"),
        ColumnDef::double("avg_shards", 2),
        ColumnDef::unsigned_bigint("max_shards"),
        ColumnDef::double("total_ms", 3),
        ColumnDef::double("p50_ms", 3),
        ColumnDef::double("p99_ms", 3),
        ColumnDef::double("max_ms", 3),
        ColumnDef::unsigned_bigint("first_seen"),
        ColumnDef::unsigned_bigint("last_seen"),
    ];
    let rows: Vec<Vec<Option<Vec<u8>>>> = session
        .ctx
        .metrics
        .digest
        .rows()
        .into_iter()
        .map(|r| {
            [
                r.fingerprint,
                r.count.to_string(),
                r.errors.to_string(),
                r.rows.to_string(),
                format!("{:.2}", r.avg_shards),
                r.max_shards.to_string(),
                format!("{:.3}", r.total_ms),
                format!("{:.3}", r.p50_ms),
                format!("{:.3}", r.p99_ms),
                format!("{:.3}", r.max_ms),
                r.first_seen.to_string(),
                r.last_seen.to_string(),
            ]
            .into_iter()
            .map(|v| Some(v.into_bytes()))
            .collect()
        })
        .collect();
    session.exec.reported.found_rows = rows.len() as u64;
    let deprecate_eof = session.deprecate_eof();
    write_text_result(
        &mut session.client.packets,
        &columns,
        rows,
        deprecate_eof,
        0,
        session.exec.reported.status,
    );
    session.flush().await
}

/// A result of one row, with `status` in its final packet.
async fn one_row<S: AsyncRead + AsyncWrite + Unpin>(
    session: &mut Session<S>,
    columns: &[ColumnDef],
    row: Vec<Option<Vec<u8>>>,
    status: u16,
) -> Flow {
    session.exec.reported.found_rows = 1;
    let deprecate_eof = session.deprecate_eof();
    write_text_result(
        &mut session.client.packets,
        columns,
        [row],
        deprecate_eof,
        0,
        status,
    );
    session.flush().await
}

/// `SHOW DATABASES [LIKE pattern]`: the logical schema and the system databases.
async fn show_databases<S: AsyncRead + AsyncWrite + Unpin>(
    session: &mut Session<S>,
    like: Option<&str>,
) -> Flow {
    let rules = session.ctx.snapshot.load().rules.clone();
    let header = match like {
        Some(p) => format!("Database ({p})"),
        None => "Database".to_string(),
    };
    let rows: Vec<[Option<Vec<u8>>; 1]> = visible_databases(&rules)
        .into_iter()
        .filter(|db| like.is_none_or(|p| like_matches(p, db)))
        .map(|db| [Some(db.into_bytes())])
        .collect();
    session.exec.reported.found_rows = rows.len() as u64;
    let deprecate_eof = session.deprecate_eof();
    write_text_result(
        &mut session.client.packets,
        &[ColumnDef::varchar(&header, 64)],
        rows,
        deprecate_eof,
        0,
        session.exec.reported.status,
    );
    session.flush().await
}

/// `SET dbmesh_transaction_mode = 'xa' | 'local'`: `xa` only when the coordinator runs.
async fn set_transaction_mode<S: AsyncRead + AsyncWrite + Unpin>(
    session: &mut Session<S>,
    value: &str,
) -> Flow {
    let mode = match rules::TransactionMode::parse(value) {
        Some(rules::TransactionMode::Xa) if session.ctx.xa.is_none() => {
            return session.error(SessionError::XaUnavailable).await
        }
        Some(mode) => mode,
        None => {
            return session
                .error(SessionError::BadTransactionMode(value.to_string()))
                .await
        }
    };
    match session.exec.set_transaction_mode(mode) {
        Ok(()) => session.ok().await,
        Err(e) => session.error(e).await,
    }
}

/// `SELECT NEXTVAL(seq)` / `NEXT VALUE FOR seq`: one id; `NEXTVAL(seq, n)`: a block of `n`
/// consecutive ids as (first, last).
async fn next_value<S: AsyncRead + AsyncWrite + Unpin>(
    session: &mut Session<S>,
    column: &str,
    sequence: &str,
    count: Option<u64>,
) -> Flow {
    let sequences = match session.sequences() {
        Ok(s) => s,
        Err(err) => return session.error(err).await,
    };
    let (columns, row) = match count {
        None => match sequences.next(sequence).await {
            Ok(id) => (
                vec![ColumnDef::unsigned_bigint(column)],
                vec![Some(id.to_string().into_bytes())],
            ),
            Err(e) => return session.error(e).await,
        },
        Some(n) => match sequences.reserve_range(sequence, n).await {
            Ok(range) => (
                vec![
                    ColumnDef::unsigned_bigint("first"),
                    ColumnDef::unsigned_bigint("last"),
                ],
                vec![
                    Some(range.start.to_string().into_bytes()),
                    Some(range.end.saturating_sub(1).to_string().into_bytes()),
                ],
            ),
            Err(e) => return session.error(e).await,
        },
    };
    let status = session.exec.reported.status;
    one_row(session, &columns, row, status).await
}

/// `SELECT LAST_INSERT_ID()`: the id the session's last generating INSERT reported (the first
/// filled id of a filled INSERT), whichever connection ran it. After `LAST_INSERT_ID(expr)`
/// (which pins the connection) on a session that only used the default data source, the
/// backend's own answer.
async fn last_insert_id<S: AsyncRead + AsyncWrite + Unpin>(
    session: &mut Session<S>,
    column: &str,
    packet: &[u8],
) -> Flow {
    if session.backend_holds_last_insert_id() {
        return session.forward_default(packet, ResponseKind::Query).await;
    }
    let row = vec![Some(
        session
            .exec
            .reported
            .last_insert_id
            .to_string()
            .into_bytes(),
    )];
    let status = session.exec.reported.status;
    one_row(session, &[ColumnDef::unsigned_bigint(column)], row, status).await
}
