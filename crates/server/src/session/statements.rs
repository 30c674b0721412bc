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
use protocol::stmt::{ParamType, ParamValue};
use router::{Combine, Param, Plan, SessionStatement, StatementKind};
use rules::Rules;

use executor::{Access, Effects};

/// One prepared statement of a session.
pub(super) struct Prepared {
    /// The SQL as the client wrote it (as [`text::decode`] reads it).
    pub(super) sql: String,
    pub(super) params: usize,
    /// Parameter types bound by the last execute (clients may not resend them).
    pub(super) types: Vec<ParamType>,
    /// Values sent with COM_STMT_SEND_LONG_DATA since the last execute.
    pub(super) long_data: Vec<Option<Vec<u8>>>,
    /// Some of them did not fit in the session's room: the next execute fails.
    pub(super) long_data_refused: bool,
    /// The one place every execution goes: data source and physical SQL (shared, so an
    /// execution takes it without copying the strings).
    pub(super) fixed: Option<Arc<(String, String)>>,
    /// A transaction or SET statement: each execution runs it as the text protocol would, on
    /// every connection the session holds and is yet to acquire.
    pub(super) session: Option<SessionStatement>,
    /// What executing it does to the session's pins.
    pub(super) effects: Effects,
    /// Whether executions may read from a replica, as far as the statement's text tells.
    pub(super) access: Access,
    /// The rules the route was decided under; after a reload it is decided again.
    pub(super) rules: Arc<Rules>,
    /// How long an execution may run, as the statement's text says.
    pub(super) time_limit: sql::TimeLimit,
    /// Its key in the query digest.
    pub(super) digest_key: Arc<str>,
}

impl Prepared {
    pub(super) fn new(
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
        let digest_key = crate::digest::key(&sql).into();
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
            digest_key,
        }
    }

    /// Drops the long data sent since the last execute; returns its size.
    pub(super) fn clear_long_data(&mut self) -> usize {
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
    pub(super) by_id: HashMap<u32, Prepared>,
    pub(super) next_id: u32,
    /// Bytes of long data all statements hold, at most `max_allowed_packet`.
    pub(super) long_data_bytes: usize,
    /// The statement the last COM_STMT_PREPARE created; `None` after a prepare failed.
    pub(super) last: Option<u32>,
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
    pub(super) fn id_in(&self, packet: &[u8]) -> u32 {
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

    /// The digest key of the statement a COM_STMT_EXECUTE runs; `None` for an unknown one.
    pub(super) fn digest_key(&self, packet: &[u8]) -> Option<Arc<str>> {
        self.by_id
            .get(&self.id_in(packet))
            .map(|p| p.digest_key.clone())
    }

    pub(super) fn insert(&mut self, id: u32, prepared: Prepared) {
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
pub(super) fn bind_types(packet: &mut BytesMut, params: usize, types: &mut Vec<ParamType>) {
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
/// target: a data source's tables united), fills ids or updates a sharding column is routed at
/// each execution.
pub(super) fn fixed_route(plan: &Plan, per_execution: bool) -> Option<Arc<(String, String)>> {
    match (plan.targets.as_slice(), &plan.combine, &plan.kind) {
        // SHOW runs through the logical view at each execution.
        (_, _, StatementKind::Session(_) | StatementKind::Show) => None,
        _ if per_execution => None,
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
