//! Decoding of MariaDB binlog events, as a replica receives them after COM_BINLOG_DUMP: the
//! event header, the events that frame transactions (GTID, XID, QUERY, XA_PREPARE), TABLE_MAP
//! and the rows events with every column type a table may hold. Pure: bytes in, values out.
//!
//! Formats: <https://mariadb.com/kb/en/2-binlog-event-header/> and the pages it links
//! (GTID_EVENT, TABLE_MAP_EVENT, ROWS_EVENT_V1/V2); the binary forms of DECIMAL and of the
//! MySQL 5.6 temporal types (DATETIME2, TIMESTAMP2, TIME2) are those of the server's
//! `decimal2bin` and `my_*_packed_to_binary`.

use backend::Gtid;
use protocol::buf::Reader;

/// Event types this follower acts on (MariaDB's `Log_event_type`).
pub(crate) mod kind {
    pub const QUERY: u8 = 2;
    pub const STOP: u8 = 3;
    pub const ROTATE: u8 = 4;
    pub const FORMAT_DESCRIPTION: u8 = 15;
    pub const XID: u8 = 16;
    pub const TABLE_MAP: u8 = 19;
    pub const WRITE_ROWS_V1: u8 = 23;
    pub const UPDATE_ROWS_V1: u8 = 24;
    pub const DELETE_ROWS_V1: u8 = 25;
    pub const INCIDENT: u8 = 26;
    pub const HEARTBEAT: u8 = 27;
    pub const WRITE_ROWS_V2: u8 = 30;
    pub const UPDATE_ROWS_V2: u8 = 31;
    pub const DELETE_ROWS_V2: u8 = 32;
    pub const XA_PREPARE: u8 = 38;
    pub const ANNOTATE_ROWS: u8 = 160;
    pub const BINLOG_CHECKPOINT: u8 = 161;
    pub const GTID: u8 = 162;
    pub const GTID_LIST: u8 = 163;
    pub const START_ENCRYPTION: u8 = 164;
    pub const QUERY_COMPRESSED: u8 = 165;
    pub const DELETE_ROWS_COMPRESSED_V2: u8 = 171;
    pub const HEARTBEAT_V2: u8 = 172;
}

/// Column types of TABLE_MAP (`enum_field_types`).
mod column {
    pub const DECIMAL: u8 = 0;
    pub const TINY: u8 = 1;
    pub const SHORT: u8 = 2;
    pub const LONG: u8 = 3;
    pub const FLOAT: u8 = 4;
    pub const DOUBLE: u8 = 5;
    pub const TIMESTAMP: u8 = 7;
    pub const LONGLONG: u8 = 8;
    pub const INT24: u8 = 9;
    pub const DATE: u8 = 10;
    pub const TIME: u8 = 11;
    pub const DATETIME: u8 = 12;
    pub const YEAR: u8 = 13;
    pub const NEWDATE: u8 = 14;
    pub const VARCHAR: u8 = 15;
    pub const BIT: u8 = 16;
    pub const TIMESTAMP2: u8 = 17;
    pub const DATETIME2: u8 = 18;
    pub const TIME2: u8 = 19;
    pub const JSON: u8 = 245;
    pub const NEWDECIMAL: u8 = 246;
    pub const ENUM: u8 = 247;
    pub const SET: u8 = 248;
    pub const TINY_BLOB: u8 = 249;
    pub const MEDIUM_BLOB: u8 = 250;
    pub const LONG_BLOB: u8 = 251;
    pub const BLOB: u8 = 252;
    pub const VAR_STRING: u8 = 253;
    pub const STRING: u8 = 254;
    pub const GEOMETRY: u8 = 255;
}

/// GTID_EVENT flags.
pub(crate) mod gtid_flag {
    /// No terminating COMMIT or XID: the group is one statement (DDL).
    pub const STANDALONE: u8 = 1;
    pub const GROUP_COMMIT_ID: u8 = 2;
    pub const PREPARED_XA: u8 = 64;
    pub const COMPLETED_XA: u8 = 128;
}

/// Length of the common event header (binlog format v4).
const HEADER_LEN: usize = 19;

use crate::value::Value;

/// Why bytes did not decode.
#[derive(Debug, Clone, PartialEq)]
pub enum DecodeError {
    Malformed(String),
    Unsupported { what: String, fix: String },
}

impl From<protocol::ProtocolError> for DecodeError {
    fn from(e: protocol::ProtocolError) -> DecodeError {
        DecodeError::Malformed(e.to_string())
    }
}

fn malformed(what: impl Into<String>) -> DecodeError {
    DecodeError::Malformed(what.into())
}

fn unsupported(what: impl Into<String>, fix: impl Into<String>) -> DecodeError {
    DecodeError::Unsupported {
        what: what.into(),
        fix: fix.into(),
    }
}

/// The common header of every event (v4, 19 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventHeader {
    pub timestamp: u32,
    pub kind: u8,
    pub server_id: u32,
    pub size: u32,
    pub log_pos: u32,
    pub flags: u16,
}

/// An XA transaction id as GTID events carry it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XaId {
    pub format: u32,
    pub gtrid_len: u8,
    pub data: Vec<u8>,
}

/// One event, decoded as far as the follower needs.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    FormatDescription {
        checksum: bool,
    },
    Gtid {
        gtid: Gtid,
        flags: u8,
        xid: Option<XaId>,
    },
    Query {
        database: String,
        statement: String,
    },
    Xid,
    XaPrepare,
    TableMap(TableMap),
    Rows(RowsEvent),
    Heartbeat,
    Incident(String),
    /// Events that change nothing the follower tracks (ROTATE, STOP, GTID_LIST, ...).
    Ignored,
}

/// How a rows event changes rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowsKind {
    Write,
    Update,
    Delete,
}

/// A column's type as TABLE_MAP gives it: the type and its metadata bytes (the real type
/// and length of a STRING, a DECIMAL's precision and scale, the length bytes of a BLOB, a
/// temporal type's fractional digits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ColumnType {
    pub kind: u8,
    pub meta: [u8; 2],
}

/// TABLE_MAP_EVENT: which table a table id stands for in the rows events that follow.
#[derive(Debug, Clone, PartialEq)]
pub struct TableMap {
    pub table_id: u64,
    pub database: String,
    pub table: String,
    pub columns: Vec<ColumnType>,
}

/// A rows event, its rows still encoded: they decode with the table's map and signedness
/// ([`RowsEvent::rows`]).
#[derive(Debug, Clone, PartialEq)]
pub struct RowsEvent {
    pub kind: RowsKind,
    pub table_id: u64,
    columns: usize,
    /// Bitmap of the columns each image holds (before, and after for UPDATE).
    present: Vec<u8>,
    present_after: Vec<u8>,
    rows: Vec<u8>,
}

/// One row of a rows event: the before image (UPDATE, DELETE), the after image (WRITE,
/// UPDATE).
#[derive(Debug, Clone, PartialEq)]
pub struct RowImages {
    pub before: Option<Vec<Value>>,
    pub after: Option<Vec<Value>>,
}

/// Splits one event (the bytes after the packet's 0x00 header) into its header and body,
/// verifying and removing the CRC32 when the stream carries checksums.
pub fn split_event(data: &[u8], checksum: bool) -> Result<(EventHeader, &[u8]), DecodeError> {
    let mut r = Reader::new(data);
    let header = EventHeader {
        timestamp: r.u32()?,
        kind: r.u8()?,
        server_id: r.u32()?,
        size: r.u32()?,
        log_pos: r.u32()?,
        flags: r.u16()?,
    };
    if header.size as usize != data.len() {
        return Err(malformed(format!(
            "event of type {} says it has {} bytes, the packet holds {}",
            header.kind,
            header.size,
            data.len()
        )));
    }
    let mut end = data.len();
    if checksum {
        if end < HEADER_LEN + 4 {
            return Err(malformed("event shorter than its checksum"));
        }
        end -= 4;
        let stored = u32::from_le_bytes([data[end], data[end + 1], data[end + 2], data[end + 3]]);
        let computed = crc32fast::hash(&data[..end]);
        if stored != computed {
            return Err(malformed(format!(
                "event of type {} at end position {}: CRC32 {stored:08x}, computed {computed:08x}",
                header.kind, header.log_pos
            )));
        }
    }
    Ok((header, &data[HEADER_LEN..end]))
}

/// Decodes an event's body.
pub fn parse_event(header: &EventHeader, body: &[u8]) -> Result<Event, DecodeError> {
    let mut r = Reader::new(body);
    Ok(match header.kind {
        kind::FORMAT_DESCRIPTION => {
            // binlog version, server version (50), create time, header length, the post-header
            // lengths, then the checksum algorithm (the body handed here ends before the CRC).
            let alg = *body
                .last()
                .ok_or_else(|| malformed("empty FORMAT_DESCRIPTION"))?;
            Event::FormatDescription { checksum: alg == 1 }
        }
        kind::GTID => {
            let sequence = r.u64()?;
            let domain = r.u32()?;
            let flags = r.u8()?;
            if flags & gtid_flag::GROUP_COMMIT_ID != 0 {
                r.u64()?;
            }
            let xid = if flags & (gtid_flag::PREPARED_XA | gtid_flag::COMPLETED_XA) != 0 {
                let format = r.u32()?;
                let gtrid_len = r.u8()?;
                let bqual_len = r.u8()?;
                let data = r.bytes(usize::from(gtrid_len) + usize::from(bqual_len))?;
                Some(XaId {
                    format,
                    gtrid_len,
                    data: data.to_vec(),
                })
            } else {
                None
            };
            Event::Gtid {
                gtid: Gtid {
                    domain,
                    server: header.server_id,
                    sequence,
                },
                flags,
                xid,
            }
        }
        kind::QUERY => {
            r.u32()?; // thread id
            r.u32()?; // execution time
            let db_len = r.u8()?;
            r.u16()?; // error code
            let status_len = r.u16()?;
            r.skip(usize::from(status_len))?;
            let database = String::from_utf8_lossy(r.bytes(usize::from(db_len))?).into_owned();
            r.u8()?;
            let statement = String::from_utf8_lossy(r.rest()).into_owned();
            Event::Query {
                database,
                statement,
            }
        }
        kind::XID => Event::Xid,
        kind::XA_PREPARE => Event::XaPrepare,
        kind::TABLE_MAP => Event::TableMap(table_map(&mut r)?),
        kind::WRITE_ROWS_V1..=kind::DELETE_ROWS_V1 | kind::WRITE_ROWS_V2..=kind::DELETE_ROWS_V2 => {
            Event::Rows(rows_event(header.kind, &mut r)?)
        }
        kind::HEARTBEAT | kind::HEARTBEAT_V2 => Event::Heartbeat,
        kind::INCIDENT => {
            r.u16()?;
            let len = r.u8()?;
            let message = r.bytes(usize::from(len)).unwrap_or_default();
            Event::Incident(String::from_utf8_lossy(message).into_owned())
        }
        kind::QUERY_COMPRESSED..=kind::DELETE_ROWS_COMPRESSED_V2 => {
            return Err(unsupported(
                "compressed events (log_bin_compress=ON)",
                "SET GLOBAL log_bin_compress=OFF on the source before following it",
            ))
        }
        kind::START_ENCRYPTION => {
            return Err(unsupported(
                "encrypted binlogs (START_ENCRYPTION_EVENT)",
                "follow a source whose encrypt_binlog is OFF",
            ))
        }
        kind::ROTATE
        | kind::STOP
        | kind::ANNOTATE_ROWS
        | kind::BINLOG_CHECKPOINT
        | kind::GTID_LIST => Event::Ignored,
        // LOG_EVENT_IGNORABLE_F: events a replica may skip without understanding them.
        _ if header.flags & 0x80 != 0 => Event::Ignored,
        other => {
            return Err(unsupported(
                format!("binlog event type {other}"),
                "follow a MariaDB source with binlog_format=ROW",
            ))
        }
    })
}

/// A 6-byte table id, as TABLE_MAP and rows events write it.
fn table_id(r: &mut Reader) -> Result<u64, DecodeError> {
    let low = u64::from(r.u32()?);
    let high = u64::from(r.u16()?);
    Ok(low | (high << 32))
}

fn table_map(r: &mut Reader) -> Result<TableMap, DecodeError> {
    let table_id = table_id(r)?;
    r.u16()?; // flags
    let len = r.u8()?;
    let database = String::from_utf8_lossy(r.bytes(usize::from(len))?).into_owned();
    r.u8()?;
    let len = r.u8()?;
    let table = String::from_utf8_lossy(r.bytes(usize::from(len))?).into_owned();
    r.u8()?;
    let count = usize::try_from(r.lenenc_int()?).map_err(|_| malformed("column count"))?;
    let kinds = r.bytes(count)?;
    let meta = r.lenenc_bytes()?;
    let mut m = Reader::new(meta);
    let mut columns = Vec::with_capacity(count);
    for &kind in kinds {
        let meta = match kind {
            column::FLOAT
            | column::DOUBLE
            | column::BLOB
            | column::TINY_BLOB
            | column::MEDIUM_BLOB
            | column::LONG_BLOB
            | column::GEOMETRY
            | column::JSON
            | column::TIMESTAMP2
            | column::DATETIME2
            | column::TIME2 => [m.u8()?, 0],
            column::VARCHAR
            | column::VAR_STRING
            | column::BIT
            | column::NEWDECIMAL
            | column::DECIMAL
            | column::STRING
            | column::ENUM
            | column::SET => [m.u8()?, m.u8()?],
            _ => [0, 0],
        };
        columns.push(ColumnType { kind, meta });
    }
    Ok(TableMap {
        table_id,
        database,
        table,
        columns,
    })
}

fn rows_event(event_kind: u8, r: &mut Reader) -> Result<RowsEvent, DecodeError> {
    let (kind, v2) = match event_kind {
        kind::WRITE_ROWS_V1 => (RowsKind::Write, false),
        kind::UPDATE_ROWS_V1 => (RowsKind::Update, false),
        kind::DELETE_ROWS_V1 => (RowsKind::Delete, false),
        kind::WRITE_ROWS_V2 => (RowsKind::Write, true),
        kind::UPDATE_ROWS_V2 => (RowsKind::Update, true),
        _ => (RowsKind::Delete, true),
    };
    let table_id = table_id(r)?;
    r.u16()?; // flags
    if v2 {
        // The extra data's length counts its own two bytes.
        let extra = r.u16()?;
        r.skip(usize::from(extra.saturating_sub(2)))?;
    }
    let columns = usize::try_from(r.lenenc_int()?).map_err(|_| malformed("column count"))?;
    let bitmap = columns.div_ceil(8);
    let present = r.bytes(bitmap)?.to_vec();
    let present_after = if kind == RowsKind::Update {
        r.bytes(bitmap)?.to_vec()
    } else {
        present.clone()
    };
    Ok(RowsEvent {
        kind,
        table_id,
        columns,
        present,
        present_after,
        rows: r.rest().to_vec(),
    })
}

fn bit(bitmap: &[u8], i: usize) -> bool {
    bitmap[i / 8] & (1 << (i % 8)) != 0
}

impl RowsEvent {
    /// The event's rows decoded with its table's map; `unsigned[i]` says whether column `i`
    /// is an UNSIGNED integer (the binlog does not say). Every image must be full
    /// (`binlog_row_image=FULL`).
    pub fn rows(&self, map: &TableMap, unsigned: &[bool]) -> Result<Vec<RowImages>, DecodeError> {
        if map.columns.len() != self.columns || unsigned.len() != self.columns {
            return Err(malformed(format!(
                "rows event of {} columns for table `{}`.`{}` mapped with {}",
                self.columns,
                map.database,
                map.table,
                map.columns.len()
            )));
        }
        let full = |bitmap: &[u8]| (0..self.columns).all(|i| bit(bitmap, i));
        if !full(&self.present) || !full(&self.present_after) {
            return Err(unsupported(
                format!(
                    "partial row images (table `{}`.`{}`)",
                    map.database, map.table
                ),
                "SET GLOBAL binlog_row_image=FULL on the source",
            ));
        }
        let mut r = Reader::new(&self.rows);
        let mut out = Vec::new();
        while !r.is_empty() {
            let first = Some(row_image(&mut r, map, unsigned)?);
            out.push(match self.kind {
                RowsKind::Write => RowImages {
                    before: None,
                    after: first,
                },
                RowsKind::Delete => RowImages {
                    before: first,
                    after: None,
                },
                RowsKind::Update => RowImages {
                    before: first,
                    after: Some(row_image(&mut r, map, unsigned)?),
                },
            });
        }
        Ok(out)
    }
}

fn row_image(r: &mut Reader, map: &TableMap, unsigned: &[bool]) -> Result<Vec<Value>, DecodeError> {
    let nulls = r.bytes(map.columns.len().div_ceil(8))?;
    map.columns
        .iter()
        .enumerate()
        .map(|(i, column)| {
            if bit(nulls, i) {
                Ok(Value::Null)
            } else {
                decode_value(r, column, unsigned[i]).map_err(|e| match e {
                    DecodeError::Malformed(what) => malformed(format!(
                        "column {} of `{}`.`{}`: {what}",
                        i + 1,
                        map.database,
                        map.table
                    )),
                    other => other,
                })
            }
        })
        .collect()
}

fn be(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0, |n, &b| (n << 8) | u64::from(b))
}

fn le(bytes: &[u8]) -> u64 {
    bytes.iter().rev().fold(0, |n, &b| (n << 8) | u64::from(b))
}

/// A length-prefixed string whose prefix has 1 byte below 256 bytes of maximum, else 2.
fn short_string(r: &mut Reader, max_len: u16) -> Result<Value, DecodeError> {
    let len = if max_len < 256 {
        usize::from(r.u8()?)
    } else {
        usize::from(r.u16()?)
    };
    Ok(Value::Bytes(r.bytes(len)?.to_vec()))
}

/// One non-NULL value of a column.
pub fn decode_value(
    r: &mut Reader,
    column: &ColumnType,
    unsigned: bool,
) -> Result<Value, DecodeError> {
    let int = |n: u64, bits: u32| {
        if unsigned {
            Value::UInt(n)
        } else {
            // Sign-extend from `bits`.
            let shift = 64 - bits;
            Value::Int(((n << shift) as i64) >> shift)
        }
    };
    let [m0, m1] = column.meta;
    Ok(match column.kind {
        column::TINY => int(u64::from(r.u8()?), 8),
        column::SHORT => int(u64::from(r.u16()?), 16),
        column::INT24 => int(u64::from(r.u24()?), 24),
        column::LONG => int(u64::from(r.u32()?), 32),
        column::LONGLONG => int(r.u64()?, 64),
        column::FLOAT => Value::Float(f32::from_bits(r.u32()?)),
        column::DOUBLE => Value::Double(f64::from_bits(r.u64()?)),
        column::YEAR => match r.u8()? {
            0 => Value::Int(0),
            y => Value::Int(1900 + i64::from(y)),
        },
        column::NEWDECIMAL => Value::Decimal(decimal(r, m0, m1)?),
        column::VARCHAR | column::VAR_STRING => short_string(r, u16::from_le_bytes([m0, m1]))?,
        column::STRING | column::ENUM | column::SET => {
            // STRING's metadata: the real type (CHAR, ENUM or SET) with bits 4-5 inverted to
            // carry bits 8-9 of a CHAR's byte length, then the rest of the length (for ENUM
            // and SET: the value's size in bytes).
            let (real, len) = if column.kind != column::STRING {
                (column.kind, u16::from(m1))
            } else if m0 & 0x30 != 0x30 {
                (
                    m0 | 0x30,
                    u16::from(m1) | (u16::from((m0 & 0x30) ^ 0x30) << 4),
                )
            } else {
                (m0, u16::from(m1))
            };
            match real {
                column::ENUM | column::SET => Value::UInt(le(r.bytes(usize::from(len))?)),
                _ => short_string(r, len)?,
            }
        }
        column::BLOB | column::TINY_BLOB | column::MEDIUM_BLOB | column::LONG_BLOB => {
            let len = le(r.bytes(usize::from(m0))?);
            let len = usize::try_from(len).map_err(|_| malformed("blob length"))?;
            Value::Bytes(r.bytes(len)?.to_vec())
        }
        column::BIT => {
            let len = usize::from(m1) + usize::from(m0 > 0);
            Value::UInt(be(r.bytes(len)?))
        }
        column::DATE | column::NEWDATE => {
            let v = r.u24()?;
            Value::Temporal(format!("{:04}-{:02}-{:02}", v >> 9, (v >> 5) & 15, v & 31))
        }
        column::DATETIME2 => {
            let int = be(r.bytes(5)?) as i64 - 0x80_0000_0000;
            let micros = fraction(r, m0)?;
            let ymd = int >> 17;
            let ym = ymd >> 5;
            let hms = int % (1 << 17);
            Value::Temporal(format!(
                "{:04}-{:02}-{:02} {:02}:{:02}:{:02}{}",
                ym / 13,
                ym % 13,
                ymd % 32,
                hms >> 12,
                (hms >> 6) % 64,
                hms % 64,
                fraction_text(micros, m0)
            ))
        }
        column::TIMESTAMP2 => {
            let seconds = be(r.bytes(4)?);
            let micros = fraction(r, m0)?;
            Value::Temporal(format!(
                "{}{}",
                utc_datetime(seconds),
                fraction_text(micros, m0)
            ))
        }
        column::TIME2 => Value::Temporal(time2(r, m0)?),
        column::TIMESTAMP => Value::Temporal(utc_datetime(u64::from(r.u32()?))),
        column::DATETIME => {
            let v = r.u64()?;
            let (date, time) = (v / 1_000_000, v % 1_000_000);
            Value::Temporal(format!(
                "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
                date / 10_000,
                date / 100 % 100,
                date % 100,
                time / 10_000,
                time / 100 % 100,
                time % 100
            ))
        }
        column::TIME => {
            let v = i64::from(r.u24()?);
            let v = (v << 40) >> 40;
            let sign = if v < 0 { "-" } else { "" };
            let v = v.abs();
            Value::Temporal(format!(
                "{sign}{:02}:{:02}:{:02}",
                v / 10_000,
                v / 100 % 100,
                v % 100
            ))
        }
        column::GEOMETRY => {
            return Err(unsupported(
                "GEOMETRY columns",
                "move tables without spatial columns",
            ))
        }
        column::JSON => {
            return Err(unsupported(
                "MySQL's binary JSON columns",
                "follow a MariaDB source (its JSON is LONGTEXT)",
            ))
        }
        column::DECIMAL => {
            return Err(unsupported(
                "pre-5.0 DECIMAL columns",
                "ALTER the table to rebuild the column as a new DECIMAL",
            ))
        }
        other => {
            return Err(unsupported(
                format!("column type {other}"),
                "move tables with ordinary column types",
            ))
        }
    })
}

/// The fractional seconds of a temporal value with `digits` digits, in microseconds.
fn fraction(r: &mut Reader, digits: u8) -> Result<u64, DecodeError> {
    Ok(match digits {
        0 => 0,
        1 | 2 => be(r.bytes(1)?) * 10_000,
        3 | 4 => be(r.bytes(2)?) * 100,
        5 | 6 => be(r.bytes(3)?),
        _ => return Err(malformed(format!("{digits} fractional digits"))),
    })
}

fn fraction_text(micros: u64, digits: u8) -> String {
    if digits == 0 {
        return String::new();
    }
    let digits = u32::from(digits.min(6));
    format!(
        ".{:0width$}",
        micros / 10u64.pow(6 - digits),
        width = digits as usize
    )
}

/// TIME2: a 24-bit (or, with 5-6 fractional digits, 48-bit) big-endian integer offset by
/// half its range; a negative time's fractional part is stored complemented.
fn time2(r: &mut Reader, digits: u8) -> Result<String, DecodeError> {
    let packed: i64 = match digits {
        0 => (be(r.bytes(3)?) as i64 - 0x80_0000) << 24,
        1..=4 => {
            let mut int = be(r.bytes(3)?) as i64 - 0x80_0000;
            let (bytes, modulus, scale) = if digits <= 2 {
                (1, 0x100, 10_000)
            } else {
                (2, 0x1_0000, 100)
            };
            let mut frac = be(r.bytes(bytes)?) as i64;
            if int < 0 && frac != 0 {
                int += 1;
                frac -= modulus;
            }
            (int << 24) + frac * scale
        }
        5 | 6 => be(r.bytes(6)?) as i64 - 0x8000_0000_0000,
        _ => return Err(malformed(format!("{digits} fractional digits"))),
    };
    let sign = if packed < 0 { "-" } else { "" };
    let packed = packed.unsigned_abs();
    let hms = packed >> 24;
    let micros = packed % (1 << 24);
    Ok(format!(
        "{sign}{:02}:{:02}:{:02}{}",
        (hms >> 12) % (1 << 10),
        (hms >> 6) % 64,
        hms % 64,
        fraction_text(micros, digits)
    ))
}

/// Seconds since 1970 as a UTC `YYYY-MM-DD hh:mm:ss`; 0 is MariaDB's zero timestamp.
fn utc_datetime(seconds: u64) -> String {
    if seconds == 0 {
        return "0000-00-00 00:00:00".into();
    }
    let days = (seconds / 86_400) as i64;
    let rest = seconds % 86_400;
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        rest / 3600,
        rest / 60 % 60,
        rest % 60
    )
}

/// Bytes of a DECIMAL group of 0..=9 digits.
const DIGIT_BYTES: [usize; 10] = [0, 1, 1, 2, 2, 3, 3, 4, 4, 4];

/// NEWDECIMAL: groups of 9 digits in 4 big-endian bytes (a shorter group in fewer bytes at
/// either end), the first bit flipped to carry the sign, every bit inverted when negative.
fn decimal(r: &mut Reader, precision: u8, scale: u8) -> Result<String, DecodeError> {
    if scale > precision {
        return Err(malformed(format!("DECIMAL({precision},{scale})")));
    }
    let (precision, scale) = (usize::from(precision), usize::from(scale));
    let intg = precision - scale;
    let (intg_full, intg_rest) = (intg / 9, intg % 9);
    let (frac_full, frac_rest) = (scale / 9, scale % 9);
    let size = intg_full * 4 + DIGIT_BYTES[intg_rest] + frac_full * 4 + DIGIT_BYTES[frac_rest];
    let mut bytes = r.bytes(size)?.to_vec();
    if bytes.is_empty() {
        return Err(malformed("DECIMAL of no digits"));
    }
    let negative = bytes[0] & 0x80 == 0;
    bytes[0] ^= 0x80;
    if negative {
        bytes.iter_mut().for_each(|b| *b = !*b);
    }
    let mut at = 0;
    let mut group = |digits: usize, out: &mut String| {
        let n = DIGIT_BYTES[digits];
        let value = be(&bytes[at..at + n]);
        at += n;
        out.push_str(&format!("{value:0digits$}"));
    };
    let mut int = String::new();
    if intg_rest > 0 {
        group(intg_rest, &mut int);
    }
    for _ in 0..intg_full {
        group(9, &mut int);
    }
    let mut frac = String::new();
    for _ in 0..frac_full {
        group(9, &mut frac);
    }
    if frac_rest > 0 {
        group(frac_rest, &mut frac);
    }
    let int = int.trim_start_matches('0');
    let int = if int.is_empty() { "0" } else { int };
    let zero = int == "0" && frac.bytes().all(|b| b == b'0');
    let mut out = String::new();
    if negative && !zero {
        out.push('-');
    }
    out.push_str(int);
    if scale > 0 {
        out.push('.');
        out.push_str(&frac);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(kind: u8, meta: [u8; 2], unsigned: bool, bytes: &[u8]) -> Value {
        let mut r = Reader::new(bytes);
        let value = decode_value(&mut r, &ColumnType { kind, meta }, unsigned).expect("decodes");
        assert!(r.is_empty(), "bytes left over");
        value
    }

    fn temporal(text: &str) -> Value {
        Value::Temporal(text.into())
    }

    #[test]
    fn integers_by_signedness() {
        assert_eq!(decode(column::TINY, [0, 0], false, &[0xff]), Value::Int(-1));
        assert_eq!(
            decode(column::TINY, [0, 0], true, &[0xff]),
            Value::UInt(255)
        );
        assert_eq!(
            decode(column::INT24, [0, 0], false, &[0x00, 0x00, 0x80]),
            Value::Int(-8_388_608)
        );
        assert_eq!(
            decode(column::LONGLONG, [0, 0], true, &[0xff; 8]),
            Value::UInt(u64::MAX)
        );
    }

    #[test]
    fn decimals() {
        // DECIMAL(10,2) 1234.56 and -1234.56 as the server writes them.
        let positive = [0x80, 0x00, 0x04, 0xd2, 0x38];
        assert_eq!(
            decode(column::NEWDECIMAL, [10, 2], false, &positive),
            Value::Decimal("1234.56".into())
        );
        let negative = [0x7f, 0xff, 0xfb, 0x2d, 0xc7];
        assert_eq!(
            decode(column::NEWDECIMAL, [10, 2], false, &negative),
            Value::Decimal("-1234.56".into())
        );
    }

    #[test]
    fn times() {
        assert_eq!(
            decode(column::TIME2, [0, 0], false, &[0x80, 0x10, 0x02]),
            temporal("01:00:02")
        );
        // -00:00:01.50 with two digits: intpart -1 stored as 0x7FFFFF, fraction 0x100-50.
        assert_eq!(
            decode(column::TIME2, [2, 0], false, &[0x7f, 0xff, 0xff, 0xce]),
            temporal("-00:00:00.50")
        );
        assert_eq!(utc_datetime(951_782_400), "2000-02-29 00:00:00");
        assert_eq!(utc_datetime(2_147_483_647), "2038-01-19 03:14:07");
    }
}
