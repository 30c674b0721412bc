//! MariaDB's COM_STMT_BULK_EXECUTE: one prepared statement run for many rows of parameters in
//! one packet (npm `mariadb` `batch()`, Connector/J `useBulkStmts`, Connector/C array binds),
//! offered to clients whose greeting carries
//! [`STMT_BULK_OPERATIONS`](crate::constants::extended_caps::STMT_BULK_OPERATIONS).
//!
//! Layout: command, statement id (4), flags (2), with [`SEND_TYPES_TO_SERVER`] a type and a
//! flag byte per parameter, then rows to the end of the packet: per parameter an indicator
//! byte and, after indicator 0, the value as COM_STMT_EXECUTE encodes it.
//! <https://mariadb.com/kb/en/com_stmt_bulk_execute/>

use crate::buf::Reader;
use crate::constants::com;
use crate::stmt::{decode_value, ParamType, ParamValue};
use crate::{ClientError, ProtocolError};

/// The command byte, statement id and flags.
pub const HEADER_LEN: usize = 7;

/// The client asks for one result row per parameter row (needs
/// `MARIADB_CLIENT_BULK_UNIT_RESULTS`, which dbmesh does not announce).
pub const SEND_UNIT_RESULTS: u16 = 64;
/// The parameter types follow the flags.
pub const SEND_TYPES_TO_SERVER: u16 = 128;

/// A bulk request that cannot be read. The connection stays usable: the request was one whole
/// packet.
#[derive(Debug, thiserror::Error)]
pub enum BulkError {
    /// The statement id, flags or parameter types are cut short.
    #[error("bulk request header: {0}")]
    Header(ProtocolError),
    /// The rows are missing, cut short or carry an unknown indicator, or no parameter types
    /// were ever bound.
    #[error("bulk request rows: {0}")]
    Rows(ProtocolError),
}

/// What MariaDB answers such a request.
impl ClientError for BulkError {
    fn code(&self) -> u16 {
        match self {
            BulkError::Header(_) => 1835, // ER_MALFORMED_PACKET
            BulkError::Rows(_) => 1210,   // ER_WRONG_ARGUMENTS
        }
    }

    fn sqlstate(&self) -> &str {
        "HY000"
    }

    fn client_message(&self) -> std::borrow::Cow<'static, str> {
        match self {
            BulkError::Header(_) => "Malformed communication packet".into(),
            BulkError::Rows(_) => "Incorrect arguments to mysqld_stmt_bulk_execute".into(),
        }
    }
}

/// One parameter of one row.
#[derive(Debug, Clone, PartialEq)]
pub enum BulkValue {
    /// Indicator 0 (the value follows) or 1 (NULL, as [`ParamValue::Null`]).
    Value(ParamValue),
    /// Indicator 2: the column's default.
    Default,
    /// Indicator 3: the column's default in an INSERT, the column left alone in an UPDATE.
    Ignore,
}

/// A decoded COM_STMT_BULK_EXECUTE.
#[derive(Debug, Clone, PartialEq)]
pub struct BulkExecute {
    pub statement_id: u32,
    pub flags: u16,
    pub types: Vec<ParamType>,
    pub rows: Vec<Vec<BulkValue>>,
}

impl BulkExecute {
    /// Decodes a bulk request for a statement with `param_count` parameters (at least one);
    /// `previous` are the types an earlier execute bound, used when the request does not send
    /// them. A request must carry at least one whole row.
    pub fn decode(
        payload: &[u8],
        param_count: usize,
        previous: &[ParamType],
    ) -> Result<BulkExecute, BulkError> {
        let mut r = Reader::new(payload);
        let (statement_id, flags, types) =
            read_header(&mut r, param_count).map_err(BulkError::Header)?;
        let types = match types {
            Some(types) => types,
            None if previous.len() == param_count => previous.to_vec(),
            None => {
                return Err(BulkError::Rows(ProtocolError::Malformed(
                    "parameter types were never bound",
                )))
            }
        };
        let rows = read_rows(&mut r, &types).map_err(BulkError::Rows)?;
        Ok(BulkExecute {
            statement_id,
            flags,
            types,
            rows,
        })
    }
}

/// The statement id, the flags and the types sent with them.
fn read_header(
    r: &mut Reader<'_>,
    param_count: usize,
) -> Result<(u32, u16, Option<Vec<ParamType>>), ProtocolError> {
    if r.u8()? != com::STMT_BULK_EXECUTE {
        return Err(ProtocolError::Malformed("not COM_STMT_BULK_EXECUTE"));
    }
    let statement_id = r.u32()?;
    let flags = r.u16()?;
    if flags & SEND_TYPES_TO_SERVER == 0 {
        return Ok((statement_id, flags, None));
    }
    let mut types = Vec::with_capacity(param_count);
    for _ in 0..param_count {
        let column_type = r.u8()?;
        let flag = r.u8()?;
        types.push(ParamType {
            column_type,
            unsigned: flag & 0x80 != 0,
        });
    }
    Ok((statement_id, flags, Some(types)))
}

/// Rows to the end of the request, at least one.
fn read_rows(
    r: &mut Reader<'_>,
    types: &[ParamType],
) -> Result<Vec<Vec<BulkValue>>, ProtocolError> {
    if types.is_empty() {
        return Err(ProtocolError::Malformed(
            "a bulk request for a statement without parameters",
        ));
    }
    let mut rows = Vec::new();
    while !r.is_empty() {
        let mut row = Vec::with_capacity(types.len());
        for &t in types {
            row.push(match r.u8()? {
                0 => BulkValue::Value(decode_value(r, t)?),
                1 => BulkValue::Value(ParamValue::Null),
                2 => BulkValue::Default,
                3 => BulkValue::Ignore,
                _ => return Err(ProtocolError::Malformed("unknown parameter indicator")),
            });
        }
        rows.push(row);
    }
    if rows.is_empty() {
        return Err(ProtocolError::Malformed("a bulk request without rows"));
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::constants::column_type as ty;
    use proptest::prelude::*;

    /// A request for statement 7 with types LONGLONG and VAR_STRING, and `rows` as raw bytes.
    fn request(rows: &[u8]) -> Vec<u8> {
        let mut p = vec![com::STMT_BULK_EXECUTE, 7, 0, 0, 0, 128, 0];
        p.extend_from_slice(&[ty::LONGLONG, 0, ty::VAR_STRING, 0]);
        p.extend_from_slice(rows);
        p
    }

    #[test]
    fn rows_with_every_indicator() {
        let mut rows = vec![0, 5, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0xff, 0x00];
        rows.extend_from_slice(&[1, 2]);
        rows.extend_from_slice(&[3, 0, 0]);
        let bulk = BulkExecute::decode(&request(&rows), 2, &[]).unwrap();
        assert_eq!(bulk.statement_id, 7);
        assert_eq!(
            bulk.rows,
            vec![
                vec![
                    BulkValue::Value(ParamValue::Int(5)),
                    BulkValue::Value(ParamValue::Bytes(vec![0xff, 0x00]))
                ],
                vec![BulkValue::Value(ParamValue::Null), BulkValue::Default],
                vec![
                    BulkValue::Ignore,
                    BulkValue::Value(ParamValue::Bytes(vec![]))
                ],
            ]
        );
    }

    #[test]
    fn types_of_an_earlier_execute_serve_when_none_are_sent() {
        let bulk = BulkExecute::decode(&request(&[1, 1]), 2, &[]).unwrap();
        let mut untyped = vec![com::STMT_BULK_EXECUTE, 7, 0, 0, 0, 0, 0, 1, 1];
        assert_eq!(
            BulkExecute::decode(&untyped, 2, &bulk.types).unwrap().rows,
            bulk.rows
        );
        untyped.truncate(7);
        untyped.extend_from_slice(&[1, 1]);
        assert!(BulkExecute::decode(&untyped, 2, &[]).is_err());
    }

    #[test]
    fn malformed_requests_are_refused_as_mariadb_does() {
        // No rows; a row cut in its value; a row cut between parameters; an unknown
        // indicator: 1210. The types or the id cut short: 1835.
        for (payload, code) in [
            (request(&[]), 1210),
            (request(&[0, 5, 0, 0]), 1210),
            (request(&[1]), 1210),
            (request(&[1, 4]), 1210),
            (
                vec![com::STMT_BULK_EXECUTE, 7, 0, 0, 0, 128, 0, ty::LONGLONG],
                1835,
            ),
            (vec![com::STMT_BULK_EXECUTE, 7, 0], 1835),
        ] {
            match BulkExecute::decode(&payload, 2, &[]) {
                Ok(_) => panic!("{payload:?} decoded"),
                Err(e) => assert_eq!(e.to_server_error().code, code, "{payload:?}: {e}"),
            }
        }
    }

    #[test]
    fn a_statement_without_parameters_has_no_rows() {
        let payload = [com::STMT_BULK_EXECUTE, 7, 0, 0, 0, 128, 0, 1, 1];
        assert!(BulkExecute::decode(&payload, 0, &[]).is_err());
    }

    proptest! {
        #[test]
        fn decoder_never_panics(data in proptest::collection::vec(any::<u8>(), 0..64), n in 0usize..5) {
            let _ = BulkExecute::decode(&data, n, &[]);
        }
    }
}
