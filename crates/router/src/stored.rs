//! The value a write stores in a sharding column, as MariaDB converts what the statement
//! gives it. An INSERT (or an UPDATE of the key) must be routed by the stored value: mysql2
//! sends every JavaScript number as a DOUBLE, a DECIMAL parameter arrives as text, and
//! `VALUES (2.5)` stores 3 in an integer column.
//!
//! The rules, checked against MariaDB 10.11 (strict mode and not alike):
//! - a DOUBLE into an integer column rounds half to even (`rint`: 2.5 → 2, 3.5 → 4);
//! - decimal text (a string or DECIMAL parameter, a literal such as `2.5` or a string
//!   `'2.5e0'`) into an integer column rounds half away from zero (2.5 → 3, -2.5 → -3); a
//!   literal with an exponent (`2.5e0`) is a DOUBLE;
//! - a DOUBLE into a string column is stored as its shortest text, which for an integral
//!   value below 10^15 is its decimal digits (`26.0` → `'26'`, `-0.0` → `'0'`); an integer
//!   as its decimal digits.
//!
//! Anything else (text that is not a number, a non-integral or huge DOUBLE into a string
//! column) is refused: the proxy cannot know for certain what the server would store.

use std::borrow::Cow;

use rules::ColumnType;

use crate::input::Val;

/// The largest integral DOUBLE whose stored text is its decimal digits.
const PLAIN_DOUBLE_TEXT_LIMIT: f64 = 1e15;

/// `v` as the column stores it, or why that cannot be known.
pub(crate) fn stored<'a>(column: ColumnType, v: Val<'a>) -> Result<Val<'a>, String> {
    match (column, v) {
        (ColumnType::Int, Val::Double(d)) => double_to_int(d).ok_or_else(|| {
            format!("the floating-point value {d}, out of the range of an integer column")
        }),
        (ColumnType::Int, Val::Number(text)) if text.contains(['e', 'E']) => text
            .parse::<f64>()
            .ok()
            .and_then(double_to_int)
            .ok_or_else(|| format!("the number {text}, out of the range of an integer column")),
        (ColumnType::Int, Val::Number(text)) => decimal_to_int(text)
            .ok_or_else(|| format!("the number {text}, out of the range of an integer column")),
        (ColumnType::Int, Val::Str(s)) => match decimal_to_int(&s) {
            Some(v) => Ok(v),
            None => Err(format!(
                "the string '{s}', which is not a number an integer column can hold"
            )),
        },
        (ColumnType::String, Val::Double(d)) => {
            if d.fract() == 0.0 && d.abs() < PLAIN_DOUBLE_TEXT_LIMIT {
                // Integral and below 2^53: the cast is exact.
                Ok(Val::Str(Cow::Owned(format!("{}", d as i64))))
            } else {
                Err(format!(
                    "the floating-point value {d}, whose text in a string column the proxy \
                     cannot know for certain"
                ))
            }
        }
        (ColumnType::String, Val::Int(i)) => Ok(Val::Str(Cow::Owned(i.to_string()))),
        (ColumnType::String, Val::UInt(u)) => Ok(Val::Str(Cow::Owned(u.to_string()))),
        (ColumnType::String, Val::Number(text)) => Err(format!(
            "the number {text}, whose text in a string column the proxy cannot know for certain"
        )),
        (_, v) => Ok(v),
    }
}

fn int_val<'a>(v: i128) -> Option<Val<'a>> {
    if let Ok(i) = i64::try_from(v) {
        Some(Val::Int(i))
    } else {
        u64::try_from(v).ok().map(Val::UInt)
    }
}

/// A DOUBLE rounded as MariaDB stores it in an integer column (half to even).
fn double_to_int<'a>(d: f64) -> Option<Val<'a>> {
    let r = d.round_ties_even();
    // i128 holds every BIGINT [UNSIGNED]; the float comparison rejects NaN and infinities.
    if !(-9.3e18..=1.9e19).contains(&r) {
        return None;
    }
    int_val(r as i128)
}

/// Decimal text (`[ws][+-]digits[.digits][e[+-]digits][ws]`) rounded half away from zero,
/// as MariaDB converts a string or DECIMAL into an integer column.
fn decimal_to_int<'a>(text: &str) -> Option<Val<'a>> {
    let t = text.trim_matches([' ', '\t', '\n', '\r']);
    let (negative, t) = match t.as_bytes().first()? {
        b'-' => (true, &t[1..]),
        b'+' => (false, &t[1..]),
        _ => (false, t),
    };
    let (mantissa, exponent) = match t.find(['e', 'E']) {
        Some(i) => {
            let e = &t[i + 1..];
            let digits = e.strip_prefix(['+', '-']).unwrap_or(e);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            // Past 40 either way the value is 0 or out of range; clamp to keep it small.
            let magnitude: i64 = digits.parse().unwrap_or(i64::MAX).min(64);
            (
                &t[..i],
                if e.starts_with('-') {
                    -magnitude
                } else {
                    magnitude
                },
            )
        }
        None => (t, 0),
    };
    let (int_part, frac_part) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if int_part.is_empty() && frac_part.is_empty()
        || !int_part
            .bytes()
            .chain(frac_part.bytes())
            .all(|b| b.is_ascii_digit())
    {
        return None;
    }
    // value = digits × 10^scale
    let digits: Vec<u8> = int_part
        .bytes()
        .chain(frac_part.bytes())
        .map(|b| b - b'0')
        .skip_while(|&d| d == 0)
        .collect();
    let scale = exponent - i64::try_from(frac_part.len()).ok()?;
    let kept = i64::try_from(digits.len()).ok()? + scale.min(0);
    let mut value: i128 = 0;
    for &d in digits.iter().take(usize::try_from(kept.max(0)).ok()?) {
        value = value.checked_mul(10)?.checked_add(i128::from(d))?;
    }
    for _ in 0..scale.max(0) {
        value = value.checked_mul(10)?;
    }
    // With `kept` < 0 every digit is below the first decimal place: no rounding up.
    let first_dropped = usize::try_from(kept).ok().and_then(|k| digits.get(k));
    if first_dropped.is_some_and(|&d| d >= 5) {
        value += 1;
    }
    int_val(if negative { -value } else { value })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn int(column: ColumnType, v: Val<'_>) -> Result<String, String> {
        stored(column, v).map(|v| match v {
            Val::Int(i) => i.to_string(),
            Val::UInt(u) => u.to_string(),
            Val::Str(s) => format!("'{s}'"),
            other => format!("{other:?}"),
        })
    }

    #[test]
    fn doubles_round_half_to_even_into_integer_columns() {
        for (d, want) in [
            (26.0, "26"),
            (0.5, "0"),
            (1.5, "2"),
            (2.5, "2"),
            (3.5, "4"),
            (-2.5, "-2"),
            (2.4999999, "2"),
            (1e15, "1000000000000000"),
            (-0.0, "0"),
        ] {
            assert_eq!(
                int(ColumnType::Int, Val::Double(d)).as_deref(),
                Ok(want),
                "{d}"
            );
        }
        for bad in [f64::NAN, f64::INFINITY, 1e30, -1e19] {
            assert!(int(ColumnType::Int, Val::Double(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn decimal_text_rounds_half_away_from_zero_into_integer_columns() {
        for (s, want) in [
            ("2.5", "3"),
            ("-2.5", "-3"),
            ("2.5e0", "3"),
            ("0.49999", "0"),
            ("  12.5  ", "13"),
            ("+3", "3"),
            ("1.5e1", "15"),
            (".5", "1"),
            ("5.", "5"),
            ("1e2", "100"),
            ("007", "7"),
            ("25e-1", "3"),
            ("4e-5", "0"),
            ("18446744073709551615", "18446744073709551615"),
        ] {
            assert_eq!(
                int(ColumnType::Int, Val::Str(s.into())).as_deref(),
                Ok(want),
                "{s}"
            );
        }
        for bad in [
            "",
            " ",
            "7abc",
            "0x10",
            "1e",
            "e5",
            ".",
            "--1",
            "1e99",
            "99999999999999999999",
        ] {
            assert!(
                int(ColumnType::Int, Val::Str(bad.into())).is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn literal_numbers_are_decimal_unless_they_have_an_exponent() {
        for (text, want) in [("2.5", "3"), ("-2.5", "-3"), ("2.5e0", "2"), ("3.5E0", "4")] {
            assert_eq!(
                int(ColumnType::Int, Val::Number(text)).as_deref(),
                Ok(want),
                "{text}"
            );
        }
    }

    #[test]
    fn only_plain_integral_doubles_have_a_known_text() {
        assert_eq!(
            int(ColumnType::String, Val::Double(26.0)).as_deref(),
            Ok("'26'")
        );
        assert_eq!(
            int(ColumnType::String, Val::Double(-0.0)).as_deref(),
            Ok("'0'")
        );
        assert_eq!(
            int(ColumnType::String, Val::Double(999_999_999_999_999.0)).as_deref(),
            Ok("'999999999999999'")
        );
        for bad in [0.5, 1e15, f64::NAN] {
            assert!(int(ColumnType::String, Val::Double(bad)).is_err(), "{bad}");
        }
        assert!(int(ColumnType::String, Val::Number("2.5")).is_err());
        assert_eq!(int(ColumnType::String, Val::Int(-7)).as_deref(), Ok("'-7'"));
    }
}
