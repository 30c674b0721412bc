//! The binary protocol's COM_STMT_EXECUTE request: decoding bound parameters (for routing)
//! and re-encoding the request for another statement id on another backend connection.
//!
//! <https://mariadb.com/kb/en/com_stmt_execute/>

use bytes::{BufMut, BytesMut};

use crate::buf::{put_lenenc_bytes, Reader};
use crate::constants::{column_type as ty, com};
use crate::ProtocolError;

type Result<T> = std::result::Result<T, ProtocolError>;

/// A parameter's type as sent by the client: the MYSQL_TYPE and whether it is unsigned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParamType {
    pub column_type: u8,
    pub unsigned: bool,
}

/// A decoded parameter value.
#[derive(Debug, Clone, PartialEq)]
pub enum ParamValue {
    Null,
    Int(i64),
    UInt(u64),
    Double(f64),
    /// Strings, decimals, blobs, and temporal values rendered as MySQL text.
    Bytes(Vec<u8>),
}

/// A decoded COM_STMT_EXECUTE.
#[derive(Debug, Clone, PartialEq)]
pub struct Execute {
    pub statement_id: u32,
    pub flags: u8,
    pub types: Vec<ParamType>,
    pub values: Vec<ParamValue>,
}

impl Execute {
    /// Decodes an execute request for a statement with `param_count` parameters. `previous`
    /// are the types bound by an earlier execute, used when the client does not resend them;
    /// `long_data[i]` holds what COM_STMT_SEND_LONG_DATA sent for parameter i (that value is
    /// then absent from the request).
    pub fn decode(
        payload: &[u8],
        param_count: usize,
        previous: &[ParamType],
        long_data: &[Option<Vec<u8>>],
    ) -> Result<Execute> {
        let mut r = Reader::new(payload);
        if r.u8()? != com::STMT_EXECUTE {
            return Err(ProtocolError::Malformed("not COM_STMT_EXECUTE"));
        }
        let statement_id = r.u32()?;
        let flags = r.u8()?;
        r.u32()?; // iteration count, always 1
        let mut out = Execute {
            statement_id,
            flags,
            types: Vec::new(),
            values: Vec::with_capacity(param_count),
        };
        if param_count == 0 {
            return Ok(out);
        }
        let null_bitmap = r.bytes(param_count.div_ceil(8))?.to_vec();
        let bound = r.u8()?;
        if bound == 1 {
            for _ in 0..param_count {
                let column_type = r.u8()?;
                let flag = r.u8()?;
                out.types.push(ParamType {
                    column_type,
                    unsigned: flag & 0x80 != 0,
                });
            }
        } else if previous.len() == param_count {
            out.types = previous.to_vec();
        } else {
            return Err(ProtocolError::Malformed("parameter types were never bound"));
        }
        for i in 0..param_count {
            if let Some(Some(data)) = long_data.get(i) {
                out.values.push(ParamValue::Bytes(data.clone()));
                continue;
            }
            if null_bitmap[i / 8] & (1 << (i % 8)) != 0 {
                out.values.push(ParamValue::Null);
                continue;
            }
            out.values.push(decode_value(&mut r, out.types[i])?);
        }
        Ok(out)
    }

    /// Encodes the request for `statement_id`, always with types bound (the target statement
    /// may be freshly prepared) and every value inline (long data included).
    pub fn encode(&self, statement_id: u32, out: &mut BytesMut) {
        out.put_u8(com::STMT_EXECUTE);
        out.put_u32_le(statement_id);
        out.put_u8(self.flags);
        out.put_u32_le(1);
        if self.values.is_empty() {
            return;
        }
        let mut bitmap = vec![0u8; self.values.len().div_ceil(8)];
        for (i, v) in self.values.iter().enumerate() {
            if matches!(v, ParamValue::Null) {
                bitmap[i / 8] |= 1 << (i % 8);
            }
        }
        out.put_slice(&bitmap);
        out.put_u8(1);
        for (t, v) in self.types.iter().zip(&self.values) {
            // Values decoded to text are resent as strings, which MySQL converts like literals.
            let column_type = match v {
                ParamValue::Bytes(_) if !is_string_type(t.column_type) => ty::VAR_STRING,
                _ => t.column_type,
            };
            out.put_u8(column_type);
            out.put_u8(if t.unsigned { 0x80 } else { 0 });
        }
        for (t, v) in self.types.iter().zip(&self.values) {
            match v {
                ParamValue::Null => {}
                ParamValue::Int(i) => put_int(out, t.column_type, *i as u64),
                ParamValue::UInt(u) => put_int(out, t.column_type, *u),
                ParamValue::Double(d) if t.column_type == ty::FLOAT => out.put_f32_le(*d as f32),
                ParamValue::Double(d) => out.put_f64_le(*d),
                ParamValue::Bytes(b) => put_lenenc_bytes(out, b),
            }
        }
    }
}

fn is_string_type(t: u8) -> bool {
    matches!(
        t,
        ty::VARCHAR
            | ty::VAR_STRING
            | ty::STRING
            | ty::BLOB
            | ty::TINY_BLOB
            | ty::MEDIUM_BLOB
            | ty::LONG_BLOB
            | ty::DECIMAL
            | ty::NEWDECIMAL
            | ty::JSON
            | ty::ENUM
            | ty::SET
            | ty::BIT
            | ty::GEOMETRY
    )
}

fn put_int(out: &mut BytesMut, column_type: u8, v: u64) {
    match column_type {
        ty::TINY => out.put_u8(v as u8),
        ty::SHORT | ty::YEAR => out.put_u16_le(v as u16),
        ty::LONG | ty::INT24 => out.put_u32_le(v as u32),
        _ => out.put_u64_le(v),
    }
}

pub(crate) fn decode_value(r: &mut Reader<'_>, t: ParamType) -> Result<ParamValue> {
    let int = |v: i64, u: u64| {
        if t.unsigned {
            ParamValue::UInt(u)
        } else {
            ParamValue::Int(v)
        }
    };
    Ok(match t.column_type {
        ty::TINY => {
            let b = r.u8()?;
            int(i64::from(b as i8), u64::from(b))
        }
        ty::SHORT | ty::YEAR => {
            let v = r.u16()?;
            int(i64::from(v as i16), u64::from(v))
        }
        ty::LONG | ty::INT24 => {
            let v = r.u32()?;
            int(i64::from(v as i32), u64::from(v))
        }
        ty::LONGLONG => {
            let v = r.u64()?;
            int(v as i64, v)
        }
        ty::FLOAT => ParamValue::Double(f64::from(f32::from_bits(r.u32()?))),
        ty::DOUBLE => ParamValue::Double(f64::from_bits(r.u64()?)),
        ty::DATE | ty::DATETIME | ty::TIMESTAMP => {
            ParamValue::Bytes(decode_datetime(r)?.into_bytes())
        }
        ty::TIME => ParamValue::Bytes(decode_time(r)?.into_bytes()),
        ty::NULL => ParamValue::Null,
        _ => ParamValue::Bytes(r.lenenc_bytes()?.to_vec()),
    })
}

fn decode_datetime(r: &mut Reader<'_>) -> Result<String> {
    let len = r.u8()?;
    let (mut y, mut mo, mut d, mut h, mut mi, mut s, mut us) =
        (0u16, 0u8, 0u8, 0u8, 0u8, 0u8, 0u32);
    if len >= 4 {
        y = r.u16()?;
        mo = r.u8()?;
        d = r.u8()?;
    }
    if len >= 7 {
        h = r.u8()?;
        mi = r.u8()?;
        s = r.u8()?;
    }
    if len >= 11 {
        us = r.u32()?;
    }
    if !matches!(len, 0 | 4 | 7 | 11) {
        return Err(ProtocolError::Malformed("bad DATETIME parameter length"));
    }
    let mut text = format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}");
    if us > 0 {
        text.push_str(&format!(".{us:06}"));
    }
    Ok(text)
}

fn decode_time(r: &mut Reader<'_>) -> Result<String> {
    let len = r.u8()?;
    let (mut neg, mut days, mut h, mut mi, mut s, mut us) = (false, 0u32, 0u8, 0u8, 0u8, 0u32);
    if len >= 8 {
        neg = r.u8()? == 1;
        days = r.u32()?;
        h = r.u8()?;
        mi = r.u8()?;
        s = r.u8()?;
    }
    if len >= 12 {
        us = r.u32()?;
    }
    if !matches!(len, 0 | 8 | 12) {
        return Err(ProtocolError::Malformed("bad TIME parameter length"));
    }
    // A client may send any day count (MySQL's own range ends at 34 days); in u32 the hours
    // would overflow and the backend would get another time than the client sent.
    let hours = u64::from(days) * 24 + u64::from(h);
    let mut text = format!("{}{hours:02}:{mi:02}:{s:02}", if neg { "-" } else { "" });
    if us > 0 {
        text.push_str(&format!(".{us:06}"));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn types(list: &[(u8, bool)]) -> Vec<ParamType> {
        list.iter()
            .map(|&(column_type, unsigned)| ParamType {
                column_type,
                unsigned,
            })
            .collect()
    }

    #[test]
    fn round_trip_with_all_value_kinds() {
        let exec = Execute {
            statement_id: 7,
            flags: 0,
            types: types(&[
                (ty::LONGLONG, false),
                (ty::LONGLONG, true),
                (ty::DOUBLE, false),
                (ty::VAR_STRING, false),
                (ty::NULL, false),
                (ty::TINY, false),
            ]),
            values: vec![
                ParamValue::Int(-5),
                ParamValue::UInt(u64::MAX),
                ParamValue::Double(1.5),
                ParamValue::Bytes("中文".as_bytes().to_vec()),
                ParamValue::Null,
                ParamValue::Int(-1),
            ],
        };
        let mut out = BytesMut::new();
        exec.encode(9, &mut out);
        let back = Execute::decode(&out, 6, &[], &[]).unwrap();
        assert_eq!(back.statement_id, 9);
        assert_eq!(back.values, exec.values);
        // Without rebinding, the previous types are used.
        let mut unbound = out.to_vec();
        let types_at = 1 + 4 + 1 + 4 + 1;
        unbound[types_at] = 0;
        unbound.drain(types_at + 1..types_at + 1 + 12);
        let again = Execute::decode(&unbound, 6, &back.types, &[]).unwrap();
        assert_eq!(again.values, exec.values);
    }

    #[test]
    fn temporal_parameters_decode_to_mysql_text() {
        // DATETIME 2024-02-29 13:14:15.000123, TIME -1 day 02:03:04.
        let mut p = vec![
            com::STMT_EXECUTE,
            1,
            0,
            0,
            0,
            0,
            1,
            0,
            0,
            0,
            0,
            1,
            ty::DATETIME,
            0,
            ty::TIME,
            0,
        ];
        p.extend_from_slice(&[11, 0xe8, 0x07, 2, 29, 13, 14, 15, 123, 0, 0, 0]);
        p.extend_from_slice(&[8, 1, 1, 0, 0, 0, 2, 3, 4]);
        let e = Execute::decode(&p, 2, &[], &[]).unwrap();
        assert_eq!(
            e.values[0],
            ParamValue::Bytes(b"2024-02-29 13:14:15.000123".to_vec())
        );
        assert_eq!(e.values[1], ParamValue::Bytes(b"-26:03:04".to_vec()));
    }

    #[test]
    fn a_time_parameter_of_any_day_count_keeps_its_hours() {
        // TIME 4294967295 days 23:59:59.000001 (found by the stmt_execute fuzz target: the
        // hours overflowed u32).
        let mut p = vec![
            com::STMT_EXECUTE,
            1,
            0,
            0,
            0,
            0,
            1,
            0,
            0,
            0,
            0,
            1,
            ty::TIME,
            0,
        ];
        p.extend_from_slice(&[12, 0, 0xff, 0xff, 0xff, 0xff, 23, 59, 59, 1, 0, 0, 0]);
        let e = Execute::decode(&p, 1, &[], &[]).unwrap();
        assert_eq!(
            e.values[0],
            ParamValue::Bytes(b"103079215103:59:59.000001".to_vec())
        );
    }

    #[test]
    fn long_data_replaces_the_inline_value() {
        let mut p = vec![
            com::STMT_EXECUTE,
            1,
            0,
            0,
            0,
            0,
            1,
            0,
            0,
            0,
            0,
            1,
            ty::BLOB,
            0,
        ];
        p.push(0); // nothing inline for parameter 0
        let e = Execute::decode(&p[..p.len() - 1], 1, &[], &[Some(b"big".to_vec())]).unwrap();
        assert_eq!(e.values, vec![ParamValue::Bytes(b"big".to_vec())]);
    }

    proptest! {
        #[test]
        fn decoder_never_panics(data in proptest::collection::vec(any::<u8>(), 0..64), n in 0usize..5) {
            let _ = Execute::decode(&data, n, &[], &[]);
        }
    }
}
