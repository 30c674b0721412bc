//! MariaDB's COM_STMT_BULK_EXECUTE: a prepared `INSERT … VALUES (?, …)` run for many rows of
//! parameters in one request (npm `mariadb` `batch()`, Connector/J `useBulkStmts`).
//!
//! The rows become one multi-row INSERT of the statement's own text
//! ([`sql::repeat_values_row`]), routed with the rows' values like any prepared multi-row
//! INSERT: split by shard, ids filled from sequences, all rows in one transaction per target
//! set (or the client's), one OK with the summed affected rows and the first generated id.
//! MariaDB runs a bulk as one statement too: a failing row leaves none of them stored. A batch
//! with more placeholders than one statement may hold is routed in parts that run as one
//! plan, so it stays one statement for the client.
//!
//! Any other DML (UPDATE, DELETE, `INSERT … SELECT`, `INSERT … SET`) runs once per row, as
//! MariaDB runs it: each row routed with its values to its one target, the rows one after
//! another as statements of their own ([`Combine::OneByOne`]): the first failing row stops
//! the batch and the rows before it stay done, as on MariaDB; one OK with the summed affected
//! rows. A row that reaches several shards could not be undone alone: 1235. The DEFAULT and
//! IGNORE indicators get 1235 too; requests MariaDB refuses get MariaDB's error.

use bytes::BytesMut;
use protocol::bulk::{BulkError, BulkExecute, BulkValue, HEADER_LEN, SEND_UNIT_RESULTS};
use protocol::constants::com;
use protocol::stmt::{Execute, ParamType, ParamValue};
use protocol::{ProtocolError, ServerError};
use router::{Combine, Param, Plan, StatementKind};
use tokio::io::{AsyncRead, AsyncWrite};

use executor::{Access, Effects, Flow, PinReason, Request};

use crate::error::SessionError;
use crate::session::fill::{append_ids, IdRequest};
use crate::session::statements::to_param;
use crate::session::Session;

/// The most placeholders one prepared statement may hold on MariaDB (ER_PS_MANY_PARAM).
const MAX_PLACEHOLDERS: usize = 65_535;

/// Whether `sql` has a RETURNING clause: its rows would have to be gathered from every row's
/// statement.
fn returns_rows(sql: &str) -> bool {
    sql::CodeTokens::new(sql)
        .any(|t| t.kind == sql::Tok::Word && sql[t.start..t.end].eq_ignore_ascii_case("RETURNING"))
}

/// The rows' values, or what dbmesh cannot run.
fn plain_rows(rows: Vec<Vec<BulkValue>>) -> Result<Vec<Vec<ParamValue>>, ServerError> {
    rows.into_iter()
        .map(|row| {
            row.into_iter()
                .map(|v| match v {
                    BulkValue::Value(v) => Ok(v),
                    BulkValue::Default | BulkValue::Ignore => Err(ServerError::not_supported(
                        "the DEFAULT and IGNORE indicators of COM_STMT_BULK_EXECUTE",
                    )),
                })
                .collect()
        })
        .collect()
}

/// One part of a batch, routed: its plan, the values its targets' parameter indexes point
/// into (the rows', then any filled ids), and the ids.
struct Part {
    plan: Plan,
    types: Vec<ParamType>,
    values: Vec<ParamValue>,
    ids: Vec<u64>,
}

/// The parts as one plan over one list of values: each target's parameter indexes moved to
/// where its part's values start; several parts combine as `combine` says. `None` when a part
/// cannot run beside others: a broadcast table's copies are checked against each other per
/// statement, and with [`Combine::OneByOne`] a part must be one statement on one target.
fn joined(parts: Vec<Part>, combine: Combine) -> Option<(Plan, Execute, Vec<u64>)> {
    let mut exec = Execute {
        statement_id: 0,
        flags: 0,
        types: Vec::new(),
        values: Vec::new(),
    };
    let mut ids = Vec::new();
    let several = parts.len() > 1;
    let mut plan: Option<Plan> = None;
    for part in parts {
        let joinable = match combine {
            Combine::OneByOne => part.plan.targets.len() == 1,
            _ => matches!(part.plan.combine, Combine::Single | Combine::SumAffected),
        };
        if several && !joinable {
            return None;
        }
        let base = exec.values.len();
        let count = part.values.len();
        let mut targets = part.plan.targets;
        for target in &mut targets {
            let indexes = target.params.take().unwrap_or_else(|| (0..count).collect());
            target.params = Some(indexes.into_iter().map(|i| base + i).collect());
        }
        exec.types.extend(part.types);
        exec.values.extend(part.values);
        ids.extend(part.ids);
        match &mut plan {
            None => {
                plan = Some(Plan {
                    targets,
                    ..part.plan
                })
            }
            Some(plan) => {
                plan.targets.extend(targets);
                plan.combine = combine.clone();
            }
        }
    }
    Some((plan?, exec, ids))
}

/// Runs a COM_STMT_BULK_EXECUTE (see the module's documentation).
pub(super) async fn run<S: AsyncRead + AsyncWrite + Unpin>(
    session: &mut Session<S>,
    packet: BytesMut,
) -> Flow {
    session.begin_statement();
    if packet.len() < HEADER_LEN {
        let cut = BulkError::Header(ProtocolError::Malformed("a cut header"));
        return session.error(cut).await;
    }
    let prepared = match session.statements.named_in(&packet) {
        Ok(p) => p,
        Err(id) => {
            return session
                .error(SessionError::UnknownStatement {
                    id,
                    command: com::name(com::STMT_BULK_EXECUTE),
                })
                .await
        }
    };
    // MariaDB's answer for statements without parameters and those a bulk cannot run.
    if prepared.session.is_some() || prepared.params == 0 {
        return session.error(SessionError::NotPreparable).await;
    }
    let bulk = match BulkExecute::decode(&packet, prepared.params, &prepared.types) {
        Ok(bulk) => bulk,
        Err(e) => {
            tracing::debug!(error = %e, "malformed COM_STMT_BULK_EXECUTE");
            return session.error(e).await;
        }
    };
    prepared.types.clone_from(&bulk.types);
    let (sql, params, effects) = (prepared.sql.clone(), prepared.params, prepared.effects);
    // As MariaDB answers a client that asks for per-row results without
    // MARIADB_CLIENT_BULK_UNIT_RESULTS, which dbmesh does not announce.
    if bulk.flags & SEND_UNIT_RESULTS != 0 {
        return session.error(SessionError::NotPreparable).await;
    }
    let rows = match plain_rows(bulk.rows) {
        Ok(rows) => rows,
        Err(e) => return session.error(e).await,
    };
    // An INSERT … VALUES takes many rows per statement; any other statement one.
    let multi_row = sql::repeat_values_row(&sql, 1).is_some();
    if returns_rows(&sql) {
        return session
            .error(ServerError::not_supported(
                "COM_STMT_BULK_EXECUTE of a statement with RETURNING",
            ))
            .await;
    }
    session
        .exec
        .apply(Effects::clear(PinReason::LongData).then(effects));
    let snapshot = session.ctx.snapshot.load_full();
    // Room for one filled id per row beside the row's own placeholders.
    let rows_per_part = if multi_row {
        (MAX_PLACEHOLDERS / (params + 1)).max(1)
    } else {
        1
    };
    let mut parts = Vec::new();
    for chunk in rows.chunks(rows_per_part) {
        let text = match multi_row {
            true => sql::repeat_values_row(&sql, chunk.len()),
            false => Some(sql.clone()),
        };
        let Some(text) = text else {
            return session
                .error(ServerError::internal("dbmesh: a bulk row was lost"))
                .await;
        };
        let mut values: Vec<ParamValue> = chunk.iter().flatten().cloned().collect();
        let mut types: Vec<ParamType> = chunk
            .iter()
            .flat_map(|_| bulk.types.iter().copied())
            .collect();
        let bound: Vec<Param> = values.iter().map(to_param).collect();
        let routed = match session
            .route_with_columns(&snapshot, |router| router.route(&text, &bound))
            .await
        {
            Ok(routed) => routed,
            Err(flow) => return flow,
        };
        let (plan, ids) = match routed {
            Ok(plan) => (plan, Vec::new()),
            Err(e) => match IdRequest::asked_by(&e) {
                Some(request) => match session
                    .route_filling(&snapshot, &text, &bound, request, router::IdStyle::Param)
                    .await
                {
                    Ok(filled) => filled,
                    Err(e) => return session.error(e).await,
                },
                None => return session.error(e).await,
            },
        };
        // MariaDB's answer to a bulk SELECT; DDL and the rest have no place in a batch.
        if !matches!(
            plan.kind,
            StatementKind::Insert | StatementKind::Update | StatementKind::Delete
        ) {
            return session.error(SessionError::NotPreparable).await;
        }
        append_ids(&mut types, &mut values, &ids);
        parts.push(Part {
            plan,
            types,
            values,
            ids,
        });
    }
    // The rows of an INSERT … VALUES form one statement (MariaDB stores none when one
    // fails); other statements run row by row, as MariaDB runs them.
    let combine = match multi_row {
        true => Combine::SumAffected,
        false => Combine::OneByOne,
    };
    let Some((plan, exec, ids)) = joined(parts, combine) else {
        return session
            .error(ServerError::not_supported(
                "COM_STMT_BULK_EXECUTE of several rows that each reach several shards or \
                 copies (an UPDATE or DELETE not by the sharding key, a broadcast table)",
            ))
            .await;
    };
    let request = Request::Execute { exec: &exec };
    if !ids.is_empty() {
        return session.run_filled(&plan, request, &ids).await;
    }
    session.exec.set_access(Access::Write);
    session
        .exec
        .run_plan(&mut session.client, &snapshot, &plan, request)
        .await
}
