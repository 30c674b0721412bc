//! Result-set metadata (ColumnDefinition41) and text-protocol rows, for results the proxy
//! builds itself (SHOW DATABASES, EXPLAIN ROUTE, merged results).

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

/// Writes a whole text result set (metadata, rows, terminator) in the client's EOF style.
pub fn write_text_result<S, R, V>(
    conn: &mut PacketConn<S>,
    columns: &[ColumnDef],
    rows: R,
    deprecate_eof: bool,
    status: u16,
) where
    S: AsyncRead + AsyncWrite + Unpin,
    R: IntoIterator<Item = V>,
    V: AsRef<[Option<Vec<u8>>]>,
{
    conn.write_with(|b| put_lenenc_int(b, columns.len() as u64));
    for c in columns {
        conn.write_with(|b| c.encode(b));
    }
    if !deprecate_eof {
        conn.write_with(|b| encode_eof(0, status, b));
    }
    for row in rows {
        conn.write_with(|b| encode_text_row(row.as_ref().iter().map(|v| v.as_deref()), b));
    }
    write_end_of_rows(conn, deprecate_eof, 0, status);
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
    fn text_row_encodes_null_marker() {
        let mut out = BytesMut::new();
        encode_text_row([Some(&b"ab"[..]), None], &mut out);
        assert_eq!(&out[..], &[2, b'a', b'b', 0xfb]);
    }
}
