//! Result-set metadata (ColumnDefinition41), text- and binary-protocol rows, and the answer to
//! COM_STMT_PREPARE, for results the proxy builds itself (SHOW DATABASES, EXPLAIN ROUTE, SHOW
//! through the logical view, merged results).

use bytes::{BufMut, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::buf::{put_lenenc_bytes, put_lenenc_int, Reader};
use crate::constants::{column_type, BINARY_COLLATION, UTF8MB4_GENERAL_CI};
use crate::framing::PacketConn;
use crate::packets::{encode_eof, OkPacket, EOF_HEADER};
use crate::ProtocolError;

/// One column's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnDef {
    pub schema: String,
    pub table: String,
    pub org_table: String,
    pub name: String,
    pub org_name: String,
    pub collation: u16,
    pub length: u32,
    pub column_type: u8,
    pub flags: u16,
    pub decimals: u8,
}

impl ColumnDef {
    /// A VARCHAR column in utf8mb4, as MySQL describes `SHOW` output columns.
    pub fn varchar(name: &str, length: u32) -> ColumnDef {
        ColumnDef {
            schema: String::new(),
            table: String::new(),
            org_table: String::new(),
            name: name.to_string(),
            org_name: name.to_string(),
            collation: u16::from(UTF8MB4_GENERAL_CI),
            length: length * 4,
            column_type: column_type::VAR_STRING,
            flags: 0,
            decimals: 0,
        }
    }

    /// A BIGINT column.
    pub fn bigint(name: &str) -> ColumnDef {
        ColumnDef {
            collation: BINARY_COLLATION,
            length: 21,
            column_type: column_type::LONGLONG,
            flags: crate::constants::column_flag::NUM,
            ..ColumnDef::varchar(name, 0)
        }
    }

    /// A BIGINT UNSIGNED NOT NULL column.
    pub fn unsigned_bigint(name: &str) -> ColumnDef {
        ColumnDef {
            flags: crate::constants::column_flag::NUM
                | crate::constants::column_flag::UNSIGNED
                | crate::constants::column_flag::NOT_NULL,
            length: 20,
            ..ColumnDef::bigint(name)
        }
    }

    /// A DOUBLE NOT NULL column shown with `decimals` decimals.
    pub fn double(name: &str, decimals: u8) -> ColumnDef {
        ColumnDef {
            length: 22,
            column_type: column_type::DOUBLE,
            flags: crate::constants::column_flag::NUM | crate::constants::column_flag::NOT_NULL,
            decimals,
            ..ColumnDef::bigint(name)
        }
    }

    pub fn encode(&self, out: &mut BytesMut) {
        put_lenenc_bytes(out, b"def");
        put_lenenc_bytes(out, self.schema.as_bytes());
        put_lenenc_bytes(out, self.table.as_bytes());
        put_lenenc_bytes(out, self.org_table.as_bytes());
        put_lenenc_bytes(out, self.name.as_bytes());
        put_lenenc_bytes(out, self.org_name.as_bytes());
        put_lenenc_int(out, 0x0c);
        out.put_u16_le(self.collation);
        out.put_u32_le(self.length);
        out.put_u8(self.column_type);
        out.put_u16_le(self.flags);
        out.put_u8(self.decimals);
        out.put_u16_le(0);
    }

    pub fn decode(payload: &[u8]) -> Result<ColumnDef, ProtocolError> {
        let mut r = Reader::new(payload);
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        r.lenenc_bytes()?; // catalog, always "def"
        let schema = text(r.lenenc_bytes()?);
        let table = text(r.lenenc_bytes()?);
        let org_table = text(r.lenenc_bytes()?);
        let name = text(r.lenenc_bytes()?);
        let org_name = text(r.lenenc_bytes()?);
        r.lenenc_int()?;
        Ok(ColumnDef {
            schema,
            table,
            org_table,
            name,
            org_name,
            collation: r.u16()?,
            length: r.u32()?,
            column_type: r.u8()?,
            flags: r.u16()?,
            decimals: r.u8()?,
        })
    }
}

/// Encodes one text-protocol row: each value a length-encoded string, NULL as 0xFB.
pub fn encode_text_row<'a>(values: impl IntoIterator<Item = Option<&'a [u8]>>, out: &mut BytesMut) {
    for v in values {
        match v {
            Some(b) => put_lenenc_bytes(out, b),
            None => out.put_u8(0xfb),
        }
    }
}

/// Writes a whole text result set (metadata, rows, terminator with `warnings`) in the
/// client's EOF style.
pub fn write_text_result<S, R, V>(
    conn: &mut PacketConn<S>,
    columns: &[ColumnDef],
    rows: R,
    deprecate_eof: bool,
    warnings: u16,
    status: u16,
) where
    S: AsyncRead + AsyncWrite + Unpin,
    R: IntoIterator<Item = V>,
    V: AsRef<[Option<Vec<u8>>]>,
{
    write_metadata(conn, columns, deprecate_eof, status);
    for row in rows {
        conn.write_with(|b| encode_text_row(row.as_ref().iter().map(|v| v.as_deref()), b));
    }
    write_end_of_rows(conn, deprecate_eof, warnings, status);
}

/// Encodes one binary-protocol row from the text a text-protocol row carries for the same
/// columns: integers and floating-point numbers at their column's width, dates and times in
/// their binary structures, everything else length-encoded.
/// <https://mariadb.com/kb/en/resultset-row/#binary-resultset-row>
pub fn encode_binary_row(
    columns: &[ColumnDef],
    values: &[Option<Vec<u8>>],
    out: &mut BytesMut,
) -> Result<(), ProtocolError> {
    let malformed = || ProtocolError::Malformed("a value that does not fit its column's type");
    out.put_u8(0);
    let bitmap = out.len();
    out.put_bytes(0, (columns.len() + 7 + 2) / 8);
    for (i, (column, value)) in columns.iter().zip(values).enumerate() {
        let Some(value) = value else {
            out[bitmap + (i + 2) / 8] |= 1 << ((i + 2) % 8);
            continue;
        };
        let text = || std::str::from_utf8(value).map_err(|_| malformed());
        let int = |width: usize| -> Result<Vec<u8>, ProtocolError> {
            let v: i128 = text()?.trim().parse().map_err(|_| malformed())?;
            Ok(v.to_le_bytes()[..width].to_vec())
        };
        match column.column_type {
            column_type::TINY => out.put_slice(&int(1)?),
            column_type::SHORT | column_type::YEAR => out.put_slice(&int(2)?),
            column_type::LONG | column_type::INT24 => out.put_slice(&int(4)?),
            column_type::LONGLONG => out.put_slice(&int(8)?),
            column_type::FLOAT => {
                let v: f32 = text()?.trim().parse().map_err(|_| malformed())?;
                out.put_f32_le(v);
            }
            column_type::DOUBLE => {
                let v: f64 = text()?.trim().parse().map_err(|_| malformed())?;
                out.put_f64_le(v);
            }
            column_type::DATE | column_type::DATETIME | column_type::TIMESTAMP => {
                put_binary_datetime(text()?, out).ok_or_else(malformed)?
            }
            column_type::TIME => put_binary_time(text()?, out).ok_or_else(malformed)?,
            _ => put_lenenc_bytes(out, value),
        }
    }
    Ok(())
}

/// Numbers separated by any of `separators`, and the microseconds after a `.`.
fn temporal_parts(text: &str, separators: &[char]) -> Option<(Vec<u32>, u32)> {
    let (main, fraction) = text.trim().split_once('.').unwrap_or((text.trim(), ""));
    let parts = main
        .split(|c| separators.contains(&c))
        .map(|p| p.parse().ok())
        .collect::<Option<Vec<u32>>>()?;
    let digits = fraction.len().min(6);
    let micros = match digits {
        0 => 0,
        _ => fraction[..digits].parse::<u32>().ok()? * 10u32.pow(6 - digits as u32),
    };
    Some((parts, micros))
}

/// `YYYY-MM-DD[ HH:MM:SS[.ffffff]]` in the binary protocol's shortest form.
fn put_binary_datetime(text: &str, out: &mut BytesMut) -> Option<()> {
    let (p, micros) = temporal_parts(text, &['-', ' ', ':'])?;
    let [year, month, day, rest @ ..] = p.as_slice() else {
        return None;
    };
    let (hour, minute, second) = match rest {
        [] => (0, 0, 0),
        [h, m, s] => (*h, *m, *s),
        _ => return None,
    };
    let len: u8 = match (year | month | day, hour | minute | second, micros) {
        (0, 0, 0) => 0,
        (_, 0, 0) => 4,
        (_, _, 0) => 7,
        _ => 11,
    };
    out.put_u8(len);
    if len >= 4 {
        out.put_u16_le(u16::try_from(*year).ok()?);
        out.put_u8(u8::try_from(*month).ok()?);
        out.put_u8(u8::try_from(*day).ok()?);
    }
    if len >= 7 {
        out.put_slice(&[hour as u8, minute as u8, second as u8]);
    }
    if len == 11 {
        out.put_u32_le(micros);
    }
    Some(())
}

/// `[-]HHH:MM:SS[.ffffff]` in the binary protocol's shortest form.
fn put_binary_time(text: &str, out: &mut BytesMut) -> Option<()> {
    let text = text.trim();
    let (negative, text) = match text.strip_prefix('-') {
        Some(t) => (true, t),
        None => (false, text),
    };
    let (p, micros) = temporal_parts(text, &[':'])?;
    let [hours, minute, second] = p.as_slice() else {
        return None;
    };
    let len: u8 = match (hours | minute | second, micros) {
        (0, 0) => 0,
        (_, 0) => 8,
        _ => 12,
    };
    out.put_u8(len);
    if len >= 8 {
        out.put_u8(u8::from(negative));
        out.put_u32_le(hours / 24);
        out.put_slice(&[(hours % 24) as u8, *minute as u8, *second as u8]);
    }
    if len == 12 {
        out.put_u32_le(micros);
    }
    Some(())
}

/// Writes a whole binary-protocol result set (the answer to COM_STMT_EXECUTE) from text
/// values, ended with `warnings`; nothing is written when a value does not fit its column.
pub fn write_binary_result<S>(
    conn: &mut PacketConn<S>,
    columns: &[ColumnDef],
    rows: &[Vec<Option<Vec<u8>>>],
    deprecate_eof: bool,
    warnings: u16,
    status: u16,
) -> Result<(), ProtocolError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut encoded = Vec::with_capacity(rows.len());
    for row in rows {
        let mut out = BytesMut::new();
        encode_binary_row(columns, row, &mut out)?;
        encoded.push(out);
    }
    write_metadata(conn, columns, deprecate_eof, status);
    for row in encoded {
        conn.write_packet(&row);
    }
    write_end_of_rows(conn, deprecate_eof, warnings, status);
    Ok(())
}

/// The column count, the column definitions and (without `CLIENT_DEPRECATE_EOF`) an EOF.
fn write_metadata<S>(
    conn: &mut PacketConn<S>,
    columns: &[ColumnDef],
    deprecate_eof: bool,
    status: u16,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    conn.write_with(|b| put_lenenc_int(b, columns.len() as u64));
    for c in columns {
        conn.write_with(|b| c.encode(b));
    }
    if !deprecate_eof {
        conn.write_with(|b| encode_eof(0, status, b));
    }
}

/// Answers COM_STMT_PREPARE for a statement without parameters whose result has `columns`.
/// <https://mariadb.com/kb/en/com_stmt_prepare/#com_stmt_prepare_ok>
pub fn write_prepare_ok<S>(
    conn: &mut PacketConn<S>,
    statement_id: u32,
    columns: &[ColumnDef],
    deprecate_eof: bool,
    status: u16,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    conn.write_with(|b| {
        b.put_u8(0);
        b.put_u32_le(statement_id);
        b.put_u16_le(columns.len() as u16);
        b.put_u16_le(0);
        b.put_u8(0);
        b.put_u16_le(0);
    });
    if columns.is_empty() {
        return;
    }
    for c in columns {
        conn.write_with(|b| c.encode(b));
    }
    if !deprecate_eof {
        conn.write_with(|b| encode_eof(0, status, b));
    }
}

/// Writes the packet that ends rows: an OK with header 0xFE under CLIENT_DEPRECATE_EOF, a
/// classic EOF otherwise.
pub fn write_end_of_rows<S>(
    conn: &mut PacketConn<S>,
    deprecate_eof: bool,
    warnings: u16,
    status: u16,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    if deprecate_eof {
        let ok = OkPacket {
            status,
            warnings,
            ..OkPacket::default()
        };
        conn.write_with(|b| ok.encode(EOF_HEADER, b));
    } else {
        conn.write_with(|b| encode_eof(warnings, status, b));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn column_def_round_trip() {
        let c = ColumnDef {
            schema: "bank".into(),
            table: "p".into(),
            org_table: "payment".into(),
            name: "amt".into(),
            org_name: "amount".into(),
            collation: 63,
            length: 12,
            column_type: column_type::NEWDECIMAL,
            flags: 1,
            decimals: 2,
        };
        let mut out = BytesMut::new();
        c.encode(&mut out);
        assert_eq!(ColumnDef::decode(&out).unwrap(), c);
    }

    #[test]
    fn binary_rows_from_text() {
        let col = |column_type| ColumnDef {
            column_type,
            ..ColumnDef::varchar("c", 10)
        };
        let columns = [
            col(column_type::VAR_STRING),
            col(column_type::LONGLONG),
            col(column_type::DATETIME),
            col(column_type::TIME),
            col(column_type::SHORT),
        ];
        let values = [
            Some(b"ab".to_vec()),
            Some(b"-2".to_vec()),
            Some(b"2026-12-01 10:20:30".to_vec()),
            Some(b"-25:00:01.5".to_vec()),
            None,
        ];
        let mut out = BytesMut::new();
        encode_binary_row(&columns, &values, &mut out).unwrap();
        let mut expected = vec![0, 0b0100_0000, 2, b'a', b'b'];
        expected.extend_from_slice(&(-2i64).to_le_bytes());
        expected.extend_from_slice(&[7, 0xea, 0x07, 12, 1, 10, 20, 30]);
        expected.extend_from_slice(&[12, 1, 1, 0, 0, 0, 1, 0, 1]);
        expected.extend_from_slice(&500_000u32.to_le_bytes());
        assert_eq!(&out[..], &expected[..]);
        let mut out = BytesMut::new();
        let bad = encode_binary_row(&columns[1..2], &[Some(b"x".to_vec())], &mut out);
        assert!(bad.is_err());
    }

    #[test]
    fn text_row_encodes_null_marker() {
        let mut out = BytesMut::new();
        encode_text_row([Some(&b"ab"[..]), None], &mut out);
        assert_eq!(&out[..], &[2, b'a', b'b', 0xfb]);
    }
}
