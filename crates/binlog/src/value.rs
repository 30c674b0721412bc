//! One column's value as a rows event holds it, and the literal that stores exactly that
//! value into the same column of another server.

use std::fmt::Write;

/// A decoded column value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    /// TINYINT ... BIGINT (signed), and YEAR.
    Int(i64),
    /// TINYINT ... BIGINT UNSIGNED, BIT (as its number), ENUM (the member's index, from 1)
    /// and SET (the members' bit mask).
    UInt(u64),
    Float(f32),
    Double(f64),
    /// DECIMAL, exactly as MariaDB prints it (`-12.340`).
    Decimal(String),
    /// CHAR, VARCHAR, BINARY, VARBINARY, TEXT, BLOB and JSON: the stored bytes in the
    /// column's character set.
    Bytes(Vec<u8>),
    /// DATE, TIME, DATETIME and TIMESTAMP as MariaDB prints them (`2024-02-29 23:59:59.250000`,
    /// `-838:59:59`); TIMESTAMP in UTC, so it is applied under `time_zone = '+00:00'`.
    Temporal(String),
}

impl Value {
    /// The SQL literal that stores this value into a column of the type it was read from.
    /// Strings go as hex literals, which carry any bytes in any character set unchanged;
    /// floating point numbers in the shortest exponent form that reads back to the same
    /// bits (a FLOAT through its exact double).
    pub fn sql_literal(&self) -> String {
        match self {
            Value::Null => "NULL".into(),
            Value::Int(n) => n.to_string(),
            Value::UInt(n) => n.to_string(),
            Value::Float(x) => format!("{:e}", f64::from(*x)),
            Value::Double(x) => format!("{x:e}"),
            Value::Decimal(text) => text.clone(),
            Value::Bytes(bytes) if bytes.is_empty() => "''".into(),
            Value::Bytes(bytes) => {
                let mut out = String::with_capacity(bytes.len() * 2 + 3);
                out.push_str("X'");
                for b in bytes {
                    let _ = write!(out, "{b:02X}");
                }
                out.push('\'');
                out
            }
            Value::Temporal(text) => format!("'{text}'"),
        }
    }

    /// Roughly the memory the value holds, for the follower's bound on a transaction.
    pub fn size(&self) -> usize {
        std::mem::size_of::<Value>()
            + match self {
                Value::Decimal(s) | Value::Temporal(s) => s.len(),
                Value::Bytes(b) => b.len(),
                _ => 0,
            }
    }
}

#[cfg(test)]
mod tests {
    use super::Value;

    #[test]
    fn literals() {
        assert_eq!(Value::Null.sql_literal(), "NULL");
        assert_eq!(Value::Int(-128).sql_literal(), "-128");
        assert_eq!(Value::UInt(u64::MAX).sql_literal(), "18446744073709551615");
        assert_eq!(Value::Float(1.1).sql_literal(), "1.100000023841858e0");
        assert_eq!(Value::Double(-0.1).sql_literal(), "-1e-1");
        assert_eq!(Value::Double(1e300).sql_literal(), "1e300");
        assert_eq!(Value::Decimal("-0.50".into()).sql_literal(), "-0.50");
        assert_eq!(Value::Bytes(b"a'\0".to_vec()).sql_literal(), "X'612700'");
        assert_eq!(Value::Bytes(Vec::new()).sql_literal(), "''");
        assert_eq!(
            Value::Temporal("2024-02-29 23:59:59.250000".into()).sql_literal(),
            "'2024-02-29 23:59:59.250000'"
        );
    }
}
