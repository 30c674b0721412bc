//! Exact decimals for merged DECIMAL sums and averages: an `i128` mantissa
//! and a scale (38 significant digits; MariaDB's DECIMAL allows 65, and a
//! merged value beyond 38 digits is an error, never a rounded answer).

use std::cmp::Ordering;

use crate::MergeError;

/// `mantissa × 10^-scale`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decimal {
    pub mantissa: i128,
    pub scale: u32,
}

const MAX_SCALE: u32 = 38;

fn pow10(n: u32) -> Result<i128, MergeError> {
    10i128.checked_pow(n).ok_or(MergeError::DecimalOverflow)
}

impl Decimal {
    pub fn from_int(v: i128) -> Decimal {
        Decimal {
            mantissa: v,
            scale: 0,
        }
    }

    /// Parses `-123.450` (as servers print DECIMAL); `None` if it is not plain decimal text.
    pub fn parse(text: &[u8]) -> Option<Decimal> {
        let (negative, digits) = match text.first() {
            Some(b'-') => (true, &text[1..]),
            Some(b'+') => (false, &text[1..]),
            _ => (false, text),
        };
        if digits.is_empty() {
            return None;
        }
        let mut mantissa: i128 = 0;
        let mut scale = 0u32;
        let mut seen_point = false;
        let mut any_digit = false;
        for &b in digits {
            match b {
                b'0'..=b'9' => {
                    any_digit = true;
                    mantissa = mantissa
                        .checked_mul(10)?
                        .checked_add(i128::from(b - b'0'))?;
                    if seen_point {
                        scale += 1;
                    }
                }
                b'.' if !seen_point => seen_point = true,
                _ => return None,
            }
        }
        if !any_digit || scale > MAX_SCALE {
            return None;
        }
        Some(Decimal {
            mantissa: if negative { -mantissa } else { mantissa },
            scale,
        })
    }

    /// The same value with `scale` digits after the point, rounded half away
    /// from zero when digits are dropped (as MariaDB rounds DECIMAL).
    pub fn rescale(self, scale: u32) -> Result<Decimal, MergeError> {
        match scale.cmp(&self.scale) {
            Ordering::Equal => Ok(self),
            Ordering::Greater => Ok(Decimal {
                mantissa: self
                    .mantissa
                    .checked_mul(pow10(scale - self.scale)?)
                    .ok_or(MergeError::DecimalOverflow)?,
                scale,
            }),
            Ordering::Less => {
                let div = pow10(self.scale - scale)?;
                Ok(Decimal {
                    mantissa: div_round(self.mantissa, div),
                    scale,
                })
            }
        }
    }

    pub fn checked_add(self, other: Decimal) -> Result<Decimal, MergeError> {
        let scale = self.scale.max(other.scale);
        let (a, b) = (self.rescale(scale)?, other.rescale(scale)?);
        Ok(Decimal {
            mantissa: a
                .mantissa
                .checked_add(b.mantissa)
                .ok_or(MergeError::DecimalOverflow)?,
            scale,
        })
    }

    pub fn checked_sub(self, other: Decimal) -> Result<Decimal, MergeError> {
        self.checked_add(Decimal {
            mantissa: other
                .mantissa
                .checked_neg()
                .ok_or(MergeError::DecimalOverflow)?,
            scale: other.scale,
        })
    }

    pub fn checked_mul(self, other: Decimal) -> Result<Decimal, MergeError> {
        let scale = self.scale + other.scale;
        if scale > MAX_SCALE {
            return Err(MergeError::DecimalOverflow);
        }
        Ok(Decimal {
            mantissa: self
                .mantissa
                .checked_mul(other.mantissa)
                .ok_or(MergeError::DecimalOverflow)?,
            scale,
        })
    }

    /// `self / other` with `scale` digits, rounded half away from zero; `None` when dividing by zero.
    pub fn checked_div(self, other: Decimal, scale: u32) -> Result<Option<Decimal>, MergeError> {
        if other.mantissa == 0 {
            return Ok(None);
        }
        // self.m / 10^s1 / (other.m / 10^s2) = self.m * 10^(s2 + scale - s1) / other.m / 10^scale
        let shift = i64::from(other.scale) + i64::from(scale) - i64::from(self.scale);
        let (num, den) = if shift >= 0 {
            let p = pow10(u32::try_from(shift).map_err(|_| MergeError::DecimalOverflow)?)?;
            (
                self.mantissa
                    .checked_mul(p)
                    .ok_or(MergeError::DecimalOverflow)?,
                other.mantissa,
            )
        } else {
            let p = pow10(u32::try_from(-shift).map_err(|_| MergeError::DecimalOverflow)?)?;
            (
                self.mantissa,
                other
                    .mantissa
                    .checked_mul(p)
                    .ok_or(MergeError::DecimalOverflow)?,
            )
        };
        Ok(Some(Decimal {
            mantissa: div_round(num, den),
            scale,
        }))
    }

    pub fn to_f64(self) -> f64 {
        self.mantissa as f64 / 10f64.powi(self.scale as i32)
    }

    /// The value printed with exactly `scale` digits after the point.
    pub fn format(self, scale: u32) -> Result<String, MergeError> {
        let d = self.rescale(scale)?;
        let digits = d.mantissa.unsigned_abs().to_string();
        let scale = scale as usize;
        let mut out = String::with_capacity(digits.len() + 3);
        if d.mantissa < 0 {
            out.push('-');
        }
        if scale == 0 {
            out.push_str(&digits);
        } else if digits.len() > scale {
            out.push_str(&digits[..digits.len() - scale]);
            out.push('.');
            out.push_str(&digits[digits.len() - scale..]);
        } else {
            out.push_str("0.");
            out.extend(std::iter::repeat_n('0', scale - digits.len()));
            out.push_str(&digits);
        }
        Ok(out)
    }
}

impl Ord for Decimal {
    fn cmp(&self, other: &Self) -> Ordering {
        let scale = self.scale.max(other.scale);
        match (self.rescale(scale), other.rescale(scale)) {
            (Ok(a), Ok(b)) => a.mantissa.cmp(&b.mantissa),
            // Rescaling overflows only for huge magnitudes: compare approximately by sign and size.
            _ => self
                .to_f64()
                .partial_cmp(&other.to_f64())
                .unwrap_or(Ordering::Equal),
        }
    }
}

impl PartialOrd for Decimal {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// `num / den` rounded half away from zero.
fn div_round(num: i128, den: i128) -> i128 {
    let q = num / den;
    let r = num % den;
    if r.unsigned_abs() * 2 >= den.unsigned_abs() {
        if (num < 0) != (den < 0) {
            q - 1
        } else {
            q + 1
        }
    } else {
        q
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        Decimal::parse(s.as_bytes()).unwrap()
    }

    #[test]
    fn parses_adds_and_formats() {
        let sum = d("12.50").checked_add(d("-0.125")).unwrap();
        assert_eq!(sum.format(3).unwrap(), "12.375");
        assert_eq!(sum.format(2).unwrap(), "12.38");
        assert_eq!(d("-0.005").format(2).unwrap(), "-0.01");
        assert_eq!(d("0.004").format(2).unwrap(), "0.00");
        assert_eq!(d("7").format(4).unwrap(), "7.0000");
        assert_eq!(d("-3").format(0).unwrap(), "-3");
        assert!(Decimal::parse(b"1e5").is_none());
        assert!(Decimal::parse(b"").is_none());
        assert!(Decimal::parse(b"-").is_none());
    }

    #[test]
    fn divides_with_rounding() {
        let avg = d("10.00").checked_div(d("3"), 6).unwrap().unwrap();
        assert_eq!(avg.format(6).unwrap(), "3.333333");
        let avg = d("-5").checked_div(d("3"), 4).unwrap().unwrap();
        assert_eq!(avg.format(4).unwrap(), "-1.6667");
        assert_eq!(d("1").checked_div(d("0"), 4).unwrap(), None);
        let q = d("1.5").checked_div(d("0.25"), 2).unwrap().unwrap();
        assert_eq!(q.format(2).unwrap(), "6.00");
    }

    #[test]
    fn compares_across_scales_and_reports_overflow() {
        assert!(d("1.10") == d("1.10"));
        assert_eq!(d("1.1").cmp(&d("1.10")), Ordering::Equal);
        assert!(d("-2") < d("-1.999"));
        let big = Decimal::parse(b"99999999999999999999999999999999999999").unwrap();
        assert!(big.checked_add(big).is_err());
    }
}
