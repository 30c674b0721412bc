//! [`BinlogStream`]: a MariaDB source's binlog from a GTID position, as the source's
//! transactions with the row images they changed.
//!
//! The connection logs in with `backend::BackendConn` and then asks as a MariaDB replica does:
//! `@mariadb_slave_capability=4` (GTID-aware, so the server sends MariaDB's own events rather
//! than placeholders), `@master_binlog_checksum` (events carry a CRC32, verified here),
//! `@slave_connect_state` (the position), `@slave_gtid_strict_mode=1` (a position the binlog
//! does not hold is an error, never a silent skip) and `@master_heartbeat_period` (the server
//! says "nothing new" every second while idle, so an idle stream still reports its position),
//! then COM_BINLOG_DUMP. Events are grouped by their GTID into transactions; a second
//! connection reads each table's definition from information_schema, cached until a DDL.
//!
//! XA: MariaDB binlogs `XA PREPARE` as its own group (the rows, then XA_PREPARE_LOG_EVENT)
//! and `XA COMMIT`/`XA ROLLBACK` as another. The prepared rows are held until the outcome is
//! read and then emitted with the commit's GTID (nothing for a rollback); while any is held,
//! [`BinlogStream::resume_position`] is before its prepare, so a follower that reconnects
//! reads it again.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use backend::{BackendConn, ConnectOptions, Gtid};
use bytes::BufMut;
use protocol::packets::{is_err, ERR_HEADER};
use protocol::ServerError;

use crate::decode::{self, gtid_flag, DecodeError, Event, RowsKind, TableMap, XaId};
use crate::position::GtidPosition;
use crate::source::{table_schema, TableRef, TableSchema};
use crate::value::Value;
use crate::BinlogError;

/// COM_BINLOG_DUMP.
const COM_BINLOG_DUMP: u8 = 0x12;

/// How often an idle source sends a heartbeat.
const HEARTBEAT: Duration = Duration::from_secs(1);

/// What the stream yields.
#[derive(Debug, Clone)]
pub enum StreamEvent {
    /// A committed source transaction and the rows it changed, in binlog order (empty for
    /// a transaction that changed no rows, e.g. an XA ROLLBACK).
    Transaction { gtid: Gtid, changes: Vec<RowChange> },
    /// A statement-logged event (DDL), after the changes of its transaction if it had any.
    Ddl {
        gtid: Gtid,
        database: String,
        statement: String,
    },
    /// The source has nothing more for now: everything through this position was yielded.
    Position(GtidPosition),
}

/// One row's change.
#[derive(Debug, Clone)]
pub struct RowChange {
    pub table: Arc<TableRef>,
    pub schema: Arc<TableSchema>,
    pub kind: ChangeKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ChangeKind {
    Insert {
        after: Vec<Value>,
    },
    Update {
        before: Vec<Value>,
        after: Vec<Value>,
    },
    Delete {
        before: Vec<Value>,
    },
}

impl ChangeKind {
    fn size(&self) -> usize {
        let sum = |row: &[Value]| row.iter().map(Value::size).sum::<usize>();
        match self {
            ChangeKind::Insert { after } => sum(after),
            ChangeKind::Update { before, after } => sum(before) + sum(after),
            ChangeKind::Delete { before } => sum(before),
        }
    }
}

/// Stream settings beyond where to start.
#[derive(Clone)]
pub struct StreamOptions {
    /// The replica server id the stream announces; unique among a source's replicas and
    /// followers (a second dump with the same id makes the server end the first).
    pub server_id: u32,
    /// The most bytes of row images one transaction may hold (a held XA transaction too).
    pub max_transaction_bytes: usize,
    /// The tables whose changes are wanted; `None` for all. Others are neither decoded nor
    /// looked up, so a change of their definition while the stream is behind does not stop it.
    pub tables: Option<TableFilter>,
    /// The outcome (`XA COMMIT`/`XA ROLLBACK`) of an XA transaction prepared before the
    /// start position is an error, except when this position includes it: then it yields an
    /// empty transaction. For a stream that starts before a snapshot taken at this position
    /// while no XA transaction was prepared: such an outcome came before the snapshot, which
    /// holds its rows (see the rebalancer's copy).
    pub ignore_unknown_xa_before: Option<GtidPosition>,
}

/// Which tables a stream yields the changes of.
pub type TableFilter = Arc<dyn Fn(&TableRef) -> bool + Send + Sync>;

impl std::fmt::Debug for StreamOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamOptions")
            .field("server_id", &self.server_id)
            .field("max_transaction_bytes", &self.max_transaction_bytes)
            .field("tables", &self.tables.as_ref().map(|_| "filter"))
            .field("ignore_unknown_xa_before", &self.ignore_unknown_xa_before)
            .finish()
    }
}

impl StreamOptions {
    /// Every table, at most 256 MiB of row images per transaction.
    pub fn new(server_id: u32) -> StreamOptions {
        StreamOptions {
            server_id,
            max_transaction_bytes: 256 << 20,
            tables: None,
            ignore_unknown_xa_before: None,
        }
    }
}

/// A transaction being read.
struct Group {
    gtid: Gtid,
    flags: u8,
    xid: Option<XaId>,
    changes: Vec<RowChange>,
    bytes: usize,
    ddl: Vec<(String, String)>,
    /// The stream's position before it.
    before: GtidPosition,
}

/// An XA transaction prepared on the source, waiting for its XA COMMIT or XA ROLLBACK.
struct Prepared {
    xid: XaId,
    changes: Vec<RowChange>,
    bytes: usize,
    before: GtidPosition,
}

/// A table of the current transaction's TABLE_MAPs with its definition; `None` for a table
/// the stream does not follow.
type Mapped = Option<MappedTable>;

struct MappedTable {
    map: TableMap,
    table: Arc<TableRef>,
    schema: Arc<TableSchema>,
}

/// A source's binlog from a position: see the module documentation.
pub struct BinlogStream {
    options: ConnectOptions,
    conn: BackendConn,
    schema_conn: Option<BackendConn>,
    checksum: bool,
    max_bytes: usize,
    tables: Option<TableFilter>,
    ignore_unknown_xa_before: Option<GtidPosition>,
    position: GtidPosition,
    group: Option<Group>,
    mapped: HashMap<u64, Mapped>,
    schemas: HashMap<TableRef, (Arc<TableRef>, Arc<TableSchema>)>,
    prepared: Vec<Prepared>,
    held_bytes: usize,
    ready: VecDeque<StreamEvent>,
    last_event_time: Option<SystemTime>,
    idle: bool,
}

impl BinlogStream {
    /// Connects to the source and asks for every transaction after `from`, with the default
    /// limit of 256 MiB of row images per transaction.
    pub async fn connect(
        options: &ConnectOptions,
        from: &GtidPosition,
        server_id: u32,
    ) -> Result<BinlogStream, BinlogError> {
        BinlogStream::connect_with(options, from, &StreamOptions::new(server_id)).await
    }

    /// [`BinlogStream::connect`] with every setting.
    pub async fn connect_with(
        options: &ConnectOptions,
        from: &GtidPosition,
        stream_options: &StreamOptions,
    ) -> Result<BinlogStream, BinlogError> {
        let mut conn = BackendConn::connect(options).await?;
        let server = conn
            .query("SELECT @@global.binlog_checksum AS checksum, @@server_id AS id")
            .await?;
        let checksum = server.value(0, "checksum") == Some("CRC32");
        let own_id = server.value(0, "id").and_then(|id| id.parse::<u32>().ok());
        if stream_options.server_id == 0 || own_id == Some(stream_options.server_id) {
            return Err(BinlogError::Unsupported {
                source_name: options.source_name.clone(),
                what: format!("following with server id {}", stream_options.server_id),
                fix: "give the follower a server id that is not 0 and is not the source's own \
                      nor any of its replicas'"
                    .into(),
            });
        }
        conn.query(&format!(
            "SET @mariadb_slave_capability = 4, \
                 @master_binlog_checksum = @@global.binlog_checksum, \
                 @slave_connect_state = '{from}', \
                 @slave_gtid_strict_mode = 1, \
                 @slave_gtid_ignore_duplicates = 0, \
                 @master_heartbeat_period = {}",
            HEARTBEAT.as_nanos()
        ))
        .await?;
        conn.send_command_with(|b| {
            b.put_u8(COM_BINLOG_DUMP);
            // With a GTID position the file and offset are unused: the first file, offset 4.
            b.put_u32_le(4);
            b.put_u16_le(0);
            b.put_u32_le(stream_options.server_id);
        })
        .await?;
        tracing::info!(source = %options.source_name, %from, server_id = stream_options.server_id, "binlog stream started");
        Ok(BinlogStream {
            options: options.clone(),
            conn,
            schema_conn: None,
            checksum,
            max_bytes: stream_options.max_transaction_bytes,
            tables: stream_options.tables.clone(),
            ignore_unknown_xa_before: stream_options.ignore_unknown_xa_before.clone(),
            position: from.clone(),
            group: None,
            mapped: HashMap::new(),
            schemas: HashMap::new(),
            prepared: Vec::new(),
            held_bytes: 0,
            ready: VecDeque::new(),
            last_event_time: None,
            idle: false,
        })
    }

    /// The position through which every transaction was yielded.
    pub fn position(&self) -> &GtidPosition {
        &self.position
    }

    /// Where a new stream must start so that nothing after `processed` is missed: `processed`
    /// itself, or before the prepare of an XA transaction this stream holds.
    pub fn resume_position(&self, processed: &GtidPosition) -> GtidPosition {
        let mut resume = processed.clone();
        for held in &self.prepared {
            for gtid in processed.gtids() {
                resume.lower(gtid.domain, held.before.get(gtid.domain).copied());
            }
        }
        resume
    }

    /// When the source wrote the last transaction yielded.
    pub fn last_event_time(&self) -> Option<SystemTime> {
        self.last_event_time
    }

    /// Whether the source said it has nothing more (a heartbeat) since the last transaction.
    pub fn is_idle(&self) -> bool {
        self.idle
    }

    /// The next transaction, DDL or idle position. Fails if the connection is lost (see
    /// [`BinlogError::is_transient`]) or the binlog holds what cannot be followed.
    pub async fn next(&mut self) -> Result<StreamEvent, BinlogError> {
        loop {
            if let Some(event) = self.ready.pop_front() {
                return Ok(event);
            }
            let packet = self
                .conn
                .packets()
                .read_packet(self.max_bytes.saturating_add(1 << 20))
                .await
                .map_err(|error| match error {
                    // Not a lost connection: reconnecting would read the same event again.
                    protocol::ProtocolError::PacketTooLarge { .. } => {
                        BinlogError::TransactionTooLarge {
                            source_name: self.options.source_name.clone(),
                            gtid: self
                                .group
                                .as_ref()
                                .map_or_else(|| "?".into(), |g| g.gtid.to_string()),
                            limit: self.max_bytes,
                        }
                    }
                    error => BinlogError::Backend(backend::BackendError::Lost {
                        source_name: self.options.source_name.clone(),
                        error,
                    }),
                })?;
            match packet.first().copied() {
                Some(0) => self.event(&packet[1..]).await?,
                Some(ERR_HEADER) if is_err(&packet) => {
                    let error =
                        ServerError::decode(&packet).map_err(|e| self.malformed(e.to_string()))?;
                    return Err(BinlogError::Dump {
                        source_name: self.options.source_name.clone(),
                        error,
                    });
                }
                // EOF: only sent to a non-blocking dump, which this is not.
                _ => return Err(self.malformed("packet in the binlog stream".into())),
            }
        }
    }

    fn malformed(&self, what: String) -> BinlogError {
        BinlogError::Malformed {
            source_name: self.options.source_name.clone(),
            what,
        }
    }

    fn decode_error(&self, error: DecodeError) -> BinlogError {
        match error {
            DecodeError::Malformed(what) => self.malformed(what),
            DecodeError::Unsupported { what, fix } => BinlogError::Unsupported {
                source_name: self.options.source_name.clone(),
                what,
                fix,
            },
        }
    }

    async fn event(&mut self, data: &[u8]) -> Result<(), BinlogError> {
        let (header, body) =
            decode::split_event(data, self.checksum).map_err(|e| self.decode_error(e))?;
        let event = decode::parse_event(&header, body).map_err(|e| self.decode_error(e))?;
        let unexpected =
            |this: &Self, what: &str| this.malformed(format!("{what} outside a transaction"));
        match event {
            Event::FormatDescription { checksum } => {
                if checksum != self.checksum {
                    return Err(self.malformed(format!(
                        "FORMAT_DESCRIPTION says checksums are {}, the server variable the opposite",
                        if checksum { "on" } else { "off" }
                    )));
                }
            }
            Event::Gtid { gtid, flags, xid } => {
                self.mapped.clear();
                self.idle = false;
                self.group = Some(Group {
                    gtid,
                    flags,
                    xid,
                    changes: Vec::new(),
                    bytes: 0,
                    ddl: Vec::new(),
                    before: self.position.clone(),
                });
                self.last_event_time =
                    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(header.timestamp.into()));
            }
            Event::Query {
                database,
                statement,
            } => {
                let Some(group) = self.group.as_mut() else {
                    return Err(unexpected(self, "a query event"));
                };
                let words: Vec<String> = statement
                    .split_whitespace()
                    .take(2)
                    .map(str::to_ascii_uppercase)
                    .collect();
                let words: Vec<&str> = words.iter().map(String::as_str).collect();
                match words.as_slice() {
                    ["BEGIN"] | ["SAVEPOINT", ..] | ["ROLLBACK", "TO"] => {}
                    ["XA", "START" | "BEGIN" | "END"] => {}
                    ["COMMIT"] | ["ROLLBACK"] => self.finish().await?,
                    ["XA", "COMMIT" | "ROLLBACK"] if group.flags & gtid_flag::COMPLETED_XA != 0 => {
                        let commit = words[1] == "COMMIT";
                        self.complete_xa(commit)?;
                    }
                    _ => {
                        group.ddl.push((database, statement));
                        if group.flags & gtid_flag::STANDALONE != 0 {
                            self.finish().await?;
                        }
                    }
                }
            }
            Event::Xid => self.finish().await?,
            Event::XaPrepare => {
                let Some(group) = self.group.take() else {
                    return Err(unexpected(self, "XA PREPARE"));
                };
                let Some(xid) = group.xid.clone() else {
                    return Err(self.malformed("XA PREPARE without an XA GTID".into()));
                };
                self.position.advance(group.gtid);
                self.held_bytes += group.bytes;
                self.ready.push_back(StreamEvent::Transaction {
                    gtid: group.gtid,
                    changes: Vec::new(),
                });
                self.prepared.push(Prepared {
                    xid,
                    changes: group.changes,
                    bytes: group.bytes,
                    before: group.before,
                });
            }
            Event::TableMap(map) => {
                let table_id = map.table_id;
                let table = TableRef {
                    database: map.database.clone(),
                    table: map.table.clone(),
                };
                let mapped = if self.tables.as_ref().is_none_or(|wanted| wanted(&table)) {
                    let (table, schema) = self.schema(&table, map.columns.len()).await?;
                    Some(MappedTable { map, table, schema })
                } else {
                    None
                };
                self.mapped.insert(table_id, mapped);
            }
            Event::Rows(rows) => {
                let Some(mapped) = self.mapped.get(&rows.table_id) else {
                    return Err(self.malformed(format!(
                        "rows event for table id {} with no TABLE_MAP",
                        rows.table_id
                    )));
                };
                let Some(mapped) = mapped else {
                    return Ok(());
                };
                let images = rows
                    .rows(&mapped.map, &mapped.schema.unsigned)
                    .map_err(|e| self.decode_error(e))?;
                let (table, schema) = (mapped.table.clone(), mapped.schema.clone());
                let Some(group) = self.group.as_mut() else {
                    return Err(unexpected(self, "a rows event"));
                };
                for image in images {
                    let kind = match (rows.kind, image.before, image.after) {
                        (RowsKind::Write, _, Some(after)) => ChangeKind::Insert { after },
                        (RowsKind::Delete, Some(before), _) => ChangeKind::Delete { before },
                        (RowsKind::Update, Some(before), Some(after)) => {
                            ChangeKind::Update { before, after }
                        }
                        _ => return Err(self.malformed("row without its images".into())),
                    };
                    group.bytes += kind.size();
                    group.changes.push(RowChange {
                        table: table.clone(),
                        schema: schema.clone(),
                        kind,
                    });
                }
                if group.bytes + self.held_bytes > self.max_bytes {
                    return Err(BinlogError::TransactionTooLarge {
                        source_name: self.options.source_name.clone(),
                        gtid: group.gtid.to_string(),
                        limit: self.max_bytes,
                    });
                }
            }
            Event::Heartbeat => {
                if self.group.is_none() {
                    self.idle = true;
                    self.ready
                        .push_back(StreamEvent::Position(self.position.clone()));
                }
            }
            Event::Incident(message) => {
                return Err(self.malformed(format!(
                    "the source logged an incident (its binlog lost changes): {message}"
                )))
            }
            Event::Ignored => {}
        }
        Ok(())
    }

    /// Ends the current group: the position advances past it and its transaction and DDL
    /// become ready.
    async fn finish(&mut self) -> Result<(), BinlogError> {
        let Some(group) = self.group.take() else {
            return Err(self.malformed("end of a transaction that did not begin".into()));
        };
        self.position.advance(group.gtid);
        self.mapped.clear();
        let ddl_only = group.changes.is_empty() && !group.ddl.is_empty();
        if !ddl_only {
            self.ready.push_back(StreamEvent::Transaction {
                gtid: group.gtid,
                changes: group.changes,
            });
        }
        if !group.ddl.is_empty() {
            // Any definition may have changed.
            self.schemas.clear();
        }
        for (database, statement) in group.ddl {
            self.ready.push_back(StreamEvent::Ddl {
                gtid: group.gtid,
                database,
                statement,
            });
        }
        Ok(())
    }

    /// XA COMMIT or XA ROLLBACK of a transaction this stream holds prepared.
    fn complete_xa(&mut self, commit: bool) -> Result<(), BinlogError> {
        let Some(group) = self.group.take() else {
            return Err(self.malformed("XA COMMIT outside a transaction".into()));
        };
        let held = group
            .xid
            .as_ref()
            .and_then(|xid| self.prepared.iter().position(|p| p.xid == *xid));
        let Some(held) = held else {
            let mut this = GtidPosition::default();
            this.advance(group.gtid);
            if self
                .ignore_unknown_xa_before
                .as_ref()
                .is_some_and(|before| before.includes(&this))
            {
                tracing::info!(gtid = %group.gtid, commit, "outcome of an XA transaction prepared before the start, within the snapshot: nothing to apply");
                self.position.advance(group.gtid);
                self.mapped.clear();
                self.ready.push_back(StreamEvent::Transaction {
                    gtid: group.gtid,
                    changes: Vec::new(),
                });
                return Ok(());
            }
            return Err(BinlogError::Unsupported {
                source_name: self.options.source_name.clone(),
                what: format!(
                    "XA {} ({}) of a transaction prepared before the stream's start position",
                    if commit { "COMMIT" } else { "ROLLBACK" },
                    group.gtid
                ),
                fix: "start from a position taken while no XA transaction was prepared (XA RECOVER empty)"
                    .into(),
            });
        };
        let held = self.prepared.remove(held);
        self.held_bytes -= held.bytes;
        self.position.advance(group.gtid);
        self.mapped.clear();
        self.ready.push_back(StreamEvent::Transaction {
            gtid: group.gtid,
            changes: if commit { held.changes } else { Vec::new() },
        });
        Ok(())
    }

    /// `table`'s definition, read once per DDL; the binlog's column count must match it.
    async fn schema(
        &mut self,
        table: &TableRef,
        logged: usize,
    ) -> Result<(Arc<TableRef>, Arc<TableSchema>), BinlogError> {
        if let Some((t, s)) = self.schemas.get(table) {
            if s.columns.len() == logged {
                return Ok((t.clone(), s.clone()));
            }
        }
        if self.schema_conn.is_none() {
            self.schema_conn = Some(BackendConn::connect(&self.options).await?);
        }
        let conn = self.schema_conn.as_mut().expect("connected above");
        let schema = table_schema(conn, table).await?;
        if schema.columns.len() != logged {
            return Err(BinlogError::SchemaChanged {
                database: table.database.clone(),
                table: table.table.clone(),
                logged,
                defined: schema.columns.len(),
            });
        }
        let entry = (Arc::new(table.clone()), schema);
        self.schemas.insert(table.clone(), entry.clone());
        Ok(entry)
    }
}
