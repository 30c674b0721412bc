//! Generic response packets: OK, ERR and EOF, in both directions.

use bytes::{BufMut, BytesMut};

use crate::buf::{put_lenenc_int, Reader};
use crate::{ProtocolError, ServerError};

pub const OK_HEADER: u8 = 0x00;
pub const EOF_HEADER: u8 = 0xfe;
pub const ERR_HEADER: u8 = 0xff;
pub const LOCAL_INFILE_HEADER: u8 = 0xfb;

/// The fields of an OK packet (or an EOF packet, which carries a subset).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OkPacket {
    pub affected_rows: u64,
    pub last_insert_id: u64,
    pub status: u16,
    pub warnings: u16,
    pub info: Vec<u8>,
}

impl OkPacket {
    /// Encodes with `header` 0x00 for a plain OK or 0xFE for the end of a result set when
    /// CLIENT_DEPRECATE_EOF is in force.
    pub fn encode(&self, header: u8, out: &mut BytesMut) {
        out.put_u8(header);
        put_lenenc_int(out, self.affected_rows);
        put_lenenc_int(out, self.last_insert_id);
        out.put_u16_le(self.status);
        out.put_u16_le(self.warnings);
        if !self.info.is_empty() {
            out.put_slice(&self.info);
        }
    }

    /// Decodes an OK packet (header 0x00 or 0xFE) or a classic 5-byte EOF packet.
    pub fn decode(payload: &[u8]) -> Result<OkPacket, ProtocolError> {
        let mut r = Reader::new(payload);
        let header = r.u8()?;
        // A classic EOF is 5 bytes; the OK-style terminator of CLIENT_DEPRECATE_EOF (also 0xFE,
        // at least 7 bytes) has the OK layout, warnings after the status.
        if header == EOF_HEADER && payload.len() < 7 {
            let warnings = r.u16()?;
            let status = r.u16()?;
            return Ok(OkPacket {
                status,
                warnings,
                ..OkPacket::default()
            });
        }
        if header != OK_HEADER && header != EOF_HEADER {
            return Err(ProtocolError::Malformed("not an OK packet"));
        }
        let affected_rows = r.lenenc_int()?;
        let last_insert_id = r.lenenc_int()?;
        let status = r.u16()?;
        let warnings = r.u16()?;
        Ok(OkPacket {
            affected_rows,
            last_insert_id,
            status,
            warnings,
            info: r.rest().to_vec(),
        })
    }
}

/// Encodes a classic EOF packet.
pub fn encode_eof(warnings: u16, status: u16, out: &mut BytesMut) {
    out.put_u8(EOF_HEADER);
    out.put_u16_le(warnings);
    out.put_u16_le(status);
}

/// True for a packet that ends a sequence of rows or column definitions: 0xFE with a length
/// that cannot be a row (a row starting with 0xFE is a string of 2^24 bytes or more).
pub fn is_terminator(payload: &[u8]) -> bool {
    payload.first() == Some(&EOF_HEADER) && payload.len() < crate::constants::MAX_PAYLOAD
}

pub fn is_err(payload: &[u8]) -> bool {
    payload.first() == Some(&ERR_HEADER)
}

impl ServerError {
    pub fn encode(&self, out: &mut BytesMut) {
        out.put_u8(ERR_HEADER);
        out.put_u16_le(self.code);
        out.put_u8(b'#');
        out.put_slice(&self.sqlstate);
        out.put_slice(self.message.as_bytes());
    }

    /// Decodes an ERR packet (always with PROTOCOL_41, which dbmesh requires).
    pub fn decode(payload: &[u8]) -> Result<ServerError, ProtocolError> {
        let mut r = Reader::new(payload);
        if r.u8()? != ERR_HEADER {
            return Err(ProtocolError::Malformed("not an ERR packet"));
        }
        let code = r.u16()?;
        let mut sqlstate = *b"HY000";
        if r.remaining() >= 6 && payload[3] == b'#' {
            r.skip(1)?;
            sqlstate.copy_from_slice(r.bytes(5)?);
        }
        Ok(ServerError {
            code,
            sqlstate,
            message: String::from_utf8_lossy(r.rest()).into_owned().into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn err_packet_from_real_bytes() {
        // ERROR 1146 (42S02): Table 'test.nope' doesn't exist, captured from MariaDB 10.11.
        let bytes = b"\xff\x7a\x04#42S02Table 'test.nope' doesn't exist";
        let e = ServerError::decode(bytes).unwrap();
        assert_eq!(e.code, 1146);
        assert_eq!(e.sqlstate_str(), "42S02");
        assert_eq!(e.message, "Table 'test.nope' doesn't exist");
        let mut out = BytesMut::new();
        e.encode(&mut out);
        assert_eq!(&out[..], &bytes[..]);
    }

    #[test]
    fn ok_round_trip_and_eof() {
        let ok = OkPacket {
            affected_rows: 300,
            last_insert_id: 7,
            status: 2,
            warnings: 1,
            info: b"Rows matched: 1".to_vec(),
        };
        let mut out = BytesMut::new();
        ok.encode(OK_HEADER, &mut out);
        assert_eq!(OkPacket::decode(&out).unwrap(), ok);
        let mut eof = BytesMut::new();
        encode_eof(3, 0x22, &mut eof);
        let d = OkPacket::decode(&eof).unwrap();
        assert_eq!((d.warnings, d.status), (3, 0x22));
        assert!(is_terminator(&eof));
        // The OK-style terminator of CLIENT_DEPRECATE_EOF: 0xFE, then the OK layout. Its
        // warnings used to be read from the affected-rows bytes and lost.
        let terminator = [0xfe, 0, 0, 0x22, 0, 2, 0];
        let d = OkPacket::decode(&terminator).unwrap();
        assert_eq!((d.warnings, d.status), (2, 0x22));
        assert!(is_terminator(&terminator));
    }

    #[test]
    fn truncated_ok_is_malformed() {
        assert!(OkPacket::decode(&[0x00, 0x01]).is_err());
        assert!(ServerError::decode(&[0xff]).is_err());
    }
}
