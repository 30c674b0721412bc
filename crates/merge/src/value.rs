//! Values of result cells and MySQL's comparison rules for them.
//!
//! A cell is kept as the bytes the server sent (text, or the binary
//! protocol's encoding) and read as a [`Value`] only when the merge needs to
//! compare, group or combine it. Comparison follows the column's type:
//! integers, DECIMAL exactly, floating point, temporal values in order, and
//! strings by collation — binary collations byte by byte, the others
//! case- and accent-insensitively (Latin letters) with trailing spaces
//! ignored, as `utf8mb4_general_ci`, `_unicode_ci` and `latin1_swedish_ci` do.

use std::cmp::Ordering;

use protocol::constants::{column_flag, column_type};
use protocol::resultset::ColumnDef;

use rules::collation::fold_char;

use crate::decimal::Decimal;

/// A value read from a cell or computed by the merge.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Int(i128),
    Decimal(Decimal),
    Double(f64),
    /// Strings, and temporal values in their text form.
    Bytes(Vec<u8>),
}

/// Whether rows can be ordered by this column: ENUM and SET sort by their
/// definition's order, which the result does not carry.
pub(crate) fn sortable(def: &ColumnDef) -> bool {
    def.flags & (column_flag::ENUM | column_flag::SET) == 0
        && !matches!(def.column_type, column_type::ENUM | column_type::SET)
}

/// How a column's values compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Int {
        unsigned: bool,
    },
    Decimal,
    Float,
    /// DATE, DATETIME, TIMESTAMP: text compares in order; binary decoded.
    DateTime,
    Time,
    Text {
        fold: bool,
        pad: bool,
    },
}

/// Collations compared byte by byte (`binary` and the `_bin` ones).
const BINARY_COLLATIONS: &[u16] = &[46, 47, 63, 65, 83];

pub(crate) fn kind_of(def: &ColumnDef) -> Kind {
    match def.column_type {
        column_type::TINY
        | column_type::SHORT
        | column_type::LONG
        | column_type::INT24
        | column_type::LONGLONG
        | column_type::YEAR => Kind::Int {
            unsigned: def.flags & column_flag::UNSIGNED != 0,
        },
        column_type::DECIMAL | column_type::NEWDECIMAL => Kind::Decimal,
        column_type::FLOAT | column_type::DOUBLE => Kind::Float,
        column_type::DATE | column_type::DATETIME | column_type::TIMESTAMP => Kind::DateTime,
        column_type::TIME => Kind::Time,
        _ => {
            // Servers report the result character set's default collation; a `_bin`
            // collation shows as the BINARY flag.
            let binary =
                def.flags & column_flag::BINARY != 0 || BINARY_COLLATIONS.contains(&def.collation);
            Kind::Text {
                fold: !binary,
                pad: def.collation != 63,
            }
        }
    }
}

/// Reads a text-protocol cell.
pub(crate) fn from_text(kind: Kind, cell: &[u8]) -> Value {
    match kind {
        Kind::Int { .. } => std::str::from_utf8(cell)
            .ok()
            .and_then(|s| s.parse::<i128>().ok())
            .map_or_else(|| Value::Bytes(cell.to_vec()), Value::Int),
        Kind::Decimal => Decimal::parse(cell).map_or_else(
            || parse_double(cell).map_or_else(|| Value::Bytes(cell.to_vec()), Value::Double),
            Value::Decimal,
        ),
        Kind::Float => {
            parse_double(cell).map_or_else(|| Value::Bytes(cell.to_vec()), Value::Double)
        }
        Kind::Time => time_micros(cell).map_or_else(|| Value::Bytes(cell.to_vec()), Value::Int),
        Kind::DateTime | Kind::Text { .. } => Value::Bytes(cell.to_vec()),
    }
}

/// Reads a binary-protocol cell of a column of type `ty`.
pub(crate) fn from_binary(kind: Kind, ty: u8, cell: &[u8]) -> Value {
    let le = |n: usize| -> Option<[u8; 8]> {
        let mut b = [0u8; 8];
        b.get_mut(..n)?.copy_from_slice(cell.get(..n)?);
        Some(b)
    };
    let unsigned = matches!(kind, Kind::Int { unsigned: true });
    let int = |n: usize| -> Option<i128> {
        let b = le(n)?;
        let raw = u64::from_le_bytes(b);
        Some(if unsigned {
            i128::from(raw)
        } else {
            let shift = 64 - 8 * n as u32;
            i128::from(((raw << shift) as i64) >> shift)
        })
    };
    let v = match ty {
        column_type::TINY => int(1).map(Value::Int),
        column_type::SHORT | column_type::YEAR => int(2).map(Value::Int),
        column_type::LONG | column_type::INT24 => int(4).map(Value::Int),
        column_type::LONGLONG => int(8).map(Value::Int),
        column_type::FLOAT => cell
            .get(..4)
            .map(|b| Value::Double(f64::from(f32::from_le_bytes([b[0], b[1], b[2], b[3]])))),
        column_type::DOUBLE => le(8).map(|b| Value::Double(f64::from_le_bytes(b))),
        column_type::DATE | column_type::DATETIME | column_type::TIMESTAMP => {
            Some(Value::Bytes(binary_datetime_text(cell)))
        }
        column_type::TIME => binary_time_micros(cell).map(Value::Int),
        _ => Some(from_text(kind, cell)),
    };
    v.unwrap_or_else(|| Value::Bytes(cell.to_vec()))
}

fn parse_double(cell: &[u8]) -> Option<f64> {
    std::str::from_utf8(cell).ok()?.trim().parse().ok()
}

/// `[-]HHH:MM:SS[.ffffff]` as signed microseconds.
fn time_micros(cell: &[u8]) -> Option<i128> {
    let s = std::str::from_utf8(cell).ok()?;
    let (neg, s) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (hms, frac) = s.split_once('.').unwrap_or((s, ""));
    let mut parts = hms.split(':');
    let h: i128 = parts.next()?.parse().ok()?;
    let m: i128 = parts.next()?.parse().ok()?;
    let sec: i128 = parts.next()?.parse().ok()?;
    let mut micros: i128 = 0;
    for (i, c) in frac.bytes().take(6).enumerate() {
        micros += i128::from(c.checked_sub(b'0')?) * 10i128.pow(5 - i as u32);
    }
    // Servers send at most 838 hours, but a cell is only bytes: one past i128 is read as text
    // like any other cell that is not a time.
    let v = h
        .checked_mul(60)?
        .checked_add(m)?
        .checked_mul(60)?
        .checked_add(sec)?
        .checked_mul(1_000_000)?
        .checked_add(micros)?;
    if neg {
        v.checked_neg()
    } else {
        Some(v)
    }
}

/// A binary DATE/DATETIME/TIMESTAMP (length byte already stripped) as the
/// text a server would send, which compares in order.
fn binary_datetime_text(b: &[u8]) -> Vec<u8> {
    let get = |i: usize| b.get(i).copied().unwrap_or(0);
    let year = u16::from_le_bytes([get(0), get(1)]);
    let micros = u32::from_le_bytes([get(7), get(8), get(9), get(10)]);
    format!(
        "{year:04}-{:02}-{:02} {:02}:{:02}:{:02}.{micros:06}",
        get(2),
        get(3),
        get(4),
        get(5),
        get(6)
    )
    .into_bytes()
}

/// A binary TIME as signed microseconds.
fn binary_time_micros(b: &[u8]) -> Option<i128> {
    if b.is_empty() {
        return Some(0);
    }
    let neg = b.first()? == &1;
    let days = i128::from(u32::from_le_bytes(b.get(1..5)?.try_into().ok()?));
    let (h, m, s) = (
        i128::from(*b.get(5)?),
        i128::from(*b.get(6)?),
        i128::from(*b.get(7)?),
    );
    let micros = match b.get(8..12) {
        Some(f) => i128::from(u32::from_le_bytes(f.try_into().ok()?)),
        None => 0,
    };
    let v = (((days * 24 + h) * 60 + m) * 60 + s) * 1_000_000 + micros;
    Some(if neg { -v } else { v })
}

/// Compares two values of one column (NULL first).
pub(crate) fn compare(kind: Kind, a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Null, Value::Null) => Ordering::Equal,
        (Value::Null, _) => Ordering::Less,
        (_, Value::Null) => Ordering::Greater,
        (Value::Bytes(x), Value::Bytes(y)) => match kind {
            Kind::Text { fold, pad } => compare_text(x, y, fold, pad),
            _ => x.cmp(y),
        },
        _ => compare_numbers(a, b),
    }
}

/// Numeric comparison across representations (strings read as numbers).
pub(crate) fn compare_numbers(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Int(x), Value::Int(y)) => x.cmp(y),
        (Value::Decimal(x), Value::Decimal(y)) => x.cmp(y),
        (Value::Int(x), Value::Decimal(y)) => Decimal::from_int(*x).cmp(y),
        (Value::Decimal(x), Value::Int(y)) => x.cmp(&Decimal::from_int(*y)),
        _ => to_f64(a).partial_cmp(&to_f64(b)).unwrap_or(Ordering::Equal),
    }
}

pub(crate) fn to_f64(v: &Value) -> f64 {
    match v {
        Value::Null => 0.0,
        Value::Int(i) => *i as f64,
        Value::Decimal(d) => d.to_f64(),
        Value::Double(f) => *f,
        Value::Bytes(b) => leading_number(b),
    }
}

/// MySQL's reading of a string as a number: its longest numeric prefix.
fn leading_number(b: &[u8]) -> f64 {
    let s = String::from_utf8_lossy(b);
    let s = s.trim_start();
    let mut end = 0;
    for i in (1..=s.len()).rev() {
        if s.is_char_boundary(i) && s[..i].parse::<f64>().is_ok() {
            end = i;
            break;
        }
    }
    s[..end].parse().unwrap_or(0.0)
}

fn compare_text(a: &[u8], b: &[u8], fold: bool, pad: bool) -> Ordering {
    let trim = |s: &[u8]| -> usize {
        if pad {
            s.iter().rposition(|&c| c != b' ').map_or(0, |p| p + 1)
        } else {
            s.len()
        }
    };
    let (a, b) = (&a[..trim(a)], &b[..trim(b)]);
    if !fold {
        return a.cmp(b);
    }
    if a.is_ascii() && b.is_ascii() {
        let la = a.iter().map(|c| c.to_ascii_uppercase());
        let lb = b.iter().map(|c| c.to_ascii_uppercase());
        return la.cmp(lb);
    }
    let (sa, sb) = (String::from_utf8_lossy(a), String::from_utf8_lossy(b));
    sa.chars().map(fold_char).cmp(sb.chars().map(fold_char))
}

/// Bytes equal for values that GROUP BY and DISTINCT treat as equal.
pub(crate) fn group_key(kind: Kind, v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Null => out.push(0),
        Value::Int(i) => {
            out.push(1);
            out.extend_from_slice(&i.to_le_bytes());
        }
        Value::Decimal(d) => {
            // Normalise the scale so that 1.5 and 1.50 group together.
            let mut d = *d;
            while d.scale > 0 && d.mantissa % 10 == 0 {
                d.mantissa /= 10;
                d.scale -= 1;
            }
            out.push(2);
            out.extend_from_slice(&d.mantissa.to_le_bytes());
            out.extend_from_slice(&d.scale.to_le_bytes());
        }
        Value::Double(f) => {
            out.push(3);
            let f = if *f == 0.0 { 0.0 } else { *f };
            out.extend_from_slice(&f.to_bits().to_le_bytes());
        }
        Value::Bytes(b) => {
            out.push(4);
            let (fold, pad) = match kind {
                Kind::Text { fold, pad } => (fold, pad),
                _ => (false, false),
            };
            let end = if pad {
                b.iter().rposition(|&c| c != b' ').map_or(0, |p| p + 1)
            } else {
                b.len()
            };
            let b = &b[..end];
            let at = out.len();
            if !fold {
                out.extend_from_slice(b);
            } else if b.is_ascii() {
                out.extend(b.iter().map(|c| c.to_ascii_uppercase()));
            } else {
                let mut buf = [0u8; 4];
                for c in String::from_utf8_lossy(b).chars().map(fold_char) {
                    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
            }
            // Separates variable-length parts of a composite key.
            let len = (out.len() - at) as u64;
            out.extend_from_slice(&len.to_le_bytes());
        }
    }
}

/// A DOUBLE as MariaDB prints it: the shortest digits that read back the
/// same, in plain notation for exponents -15..=14 and as `1.5e15` otherwise.
pub fn format_double(f: f64) -> String {
    if f == 0.0 {
        return "0".into();
    }
    if !f.is_finite() {
        return f.to_string();
    }
    let sci = format!("{f:e}");
    let exp: i32 = sci
        .rsplit_once('e')
        .and_then(|(_, e)| e.parse().ok())
        .unwrap_or(0);
    if (-15..=14).contains(&exp) {
        format!("{f}")
    } else {
        sci
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_print_as_mariadb_does() {
        for (v, s) in [
            (0.1 + 0.2, "0.30000000000000004"),
            (1.5e15, "1.5e15"),
            (100000000000000.5, "100000000000000.5"),
            (1e-15, "0.000000000000001"),
            (1e-16, "1e-16"),
            (-2.5e-7, "-0.00000025"),
            (1.2345678901234567e19, "1.2345678901234567e19"),
            (3.0, "3"),
            (-0.0, "0"),
        ] {
            assert_eq!(format_double(v), s);
        }
    }

    #[test]
    fn text_compares_by_collation() {
        let ci = Kind::Text {
            fold: true,
            pad: true,
        };
        let bin = Kind::Text {
            fold: false,
            pad: true,
        };
        let v = |s: &str| Value::Bytes(s.as_bytes().to_vec());
        assert_eq!(compare(ci, &v("alice"), &v("ALICE ")), Ordering::Equal);
        assert_eq!(compare(ci, &v("Émile"), &v("emile")), Ordering::Equal);
        assert_eq!(compare(bin, &v("alice"), &v("ALICE")), Ordering::Greater);
        assert_eq!(compare(ci, &Value::Null, &v("")), Ordering::Less);
        let mut a = Vec::new();
        let mut b = Vec::new();
        group_key(ci, &v("Bob"), &mut a);
        group_key(ci, &v("BOB  "), &mut b);
        assert_eq!(a, b);
        let (mut c, mut d) = (Vec::new(), Vec::new());
        group_key(ci, &v("Émile"), &mut c);
        group_key(ci, &v("emile"), &mut d);
        assert_eq!(c, d);
    }

    #[test]
    fn numbers_and_times_compare_by_value() {
        let int = Kind::Int { unsigned: false };
        assert_eq!(from_text(int, b"-12"), Value::Int(-12));
        let d = from_text(Kind::Decimal, b"2.50");
        assert_eq!(
            compare(Kind::Decimal, &d, &Value::Int(2)),
            Ordering::Greater
        );
        let huge = b"1000000000000000000000000000000:00:00";
        assert_eq!(
            from_text(Kind::Time, huge),
            Value::Bytes(huge.to_vec()),
            "a TIME cell past i128 (found by the merge_rows fuzz target: it overflowed)"
        );
        let t1 = from_text(Kind::Time, b"-01:00:00");
        let t2 = from_text(Kind::Time, b"100:00:00");
        assert_eq!(compare(Kind::Time, &t1, &t2), Ordering::Less);
        // Binary SHORT -2 and unsigned TINY 255.
        assert_eq!(
            from_binary(int, column_type::SHORT, &(-2i16).to_le_bytes()),
            Value::Int(-2)
        );
        let u = Kind::Int { unsigned: true };
        assert_eq!(from_binary(u, column_type::TINY, &[255]), Value::Int(255));
        assert_eq!(
            compare_numbers(&Value::Bytes(b"10abc".to_vec()), &Value::Int(9)),
            Ordering::Greater
        );
    }
}
