//! Evaluating HAVING and expressions over aggregates on merged rows, with
//! MySQL's rules: three-valued logic, exact integer/DECIMAL arithmetic
//! (division gives 4 more decimal digits, by zero gives NULL), DOUBLE as
//! soon as a float or a string takes part, strings compared as text.

use std::cmp::Ordering;

use router::{BinOp, Col, Constant, MergeExpr, Operand};

use crate::decimal::Decimal;
use crate::value::{compare, compare_numbers, to_f64, Kind, Value};
use crate::MergeError;

/// MySQL's `div_precision_increment` default.
const DIV_INCREMENT: u32 = 4;

const TEXT: Kind = Kind::Text {
    fold: true,
    pad: true,
};

pub(crate) fn constant(c: &Constant) -> Value {
    match c {
        Constant::Null => Value::Null,
        Constant::Int(i) => Value::Int(i128::from(*i)),
        Constant::UInt(u) => Value::Int(i128::from(*u)),
        Constant::Number(t) => Decimal::parse(t.as_bytes())
            .map(Value::Decimal)
            .unwrap_or_else(|| Value::Double(t.parse().unwrap_or(0.0))),
        Constant::Str(b) => Value::Bytes(b.clone()),
    }
}

/// Evaluates `e`, reading columns with `column`.
pub(crate) fn eval(e: &MergeExpr, column: &dyn Fn(Col) -> Value) -> Result<Value, MergeError> {
    Ok(match e {
        MergeExpr::Column(c) => column(*c),
        MergeExpr::Value(Operand::Const(c)) => constant(c),
        MergeExpr::Value(Operand::Slot(_)) => {
            return Err(MergeError::Internal("an unresolved literal"))
        }
        MergeExpr::Not(x) => match truth(&eval(x, column)?) {
            None => Value::Null,
            Some(t) => bool_value(!t),
        },
        MergeExpr::Negate(x) => match eval(x, column)? {
            Value::Null => Value::Null,
            Value::Int(i) => Value::Int(-i),
            Value::Decimal(d) => Value::Decimal(Decimal {
                mantissa: -d.mantissa,
                scale: d.scale,
            }),
            other => Value::Double(-to_f64(&other)),
        },
        MergeExpr::IsNull(x, negated) => bool_value((eval(x, column)? == Value::Null) != *negated),
        MergeExpr::Between {
            expr,
            negated,
            low,
            high,
        } => {
            let v = eval(expr, column)?;
            let ge = cmp_op(&v, &eval(low, column)?, BinOp::GtEq);
            let le = cmp_op(&v, &eval(high, column)?, BinOp::LtEq);
            let r = and(ge, le);
            match truth(&r) {
                None => Value::Null,
                Some(t) => bool_value(t != *negated),
            }
        }
        MergeExpr::InList {
            expr,
            negated,
            list,
        } => {
            let v = eval(expr, column)?;
            if v == Value::Null {
                return Ok(Value::Null);
            }
            let mut saw_null = false;
            let mut found = false;
            for x in list {
                match truth(&cmp_op(&v, &eval(x, column)?, BinOp::Eq)) {
                    Some(true) => {
                        found = true;
                        break;
                    }
                    None => saw_null = true,
                    Some(false) => {}
                }
            }
            if found {
                bool_value(!*negated)
            } else if saw_null {
                Value::Null
            } else {
                bool_value(*negated)
            }
        }
        MergeExpr::Binary(l, op, r) => {
            let a = eval(l, column)?;
            match op {
                BinOp::And => {
                    if truth(&a) == Some(false) {
                        return Ok(bool_value(false));
                    }
                    and(a, eval(r, column)?)
                }
                BinOp::Or => {
                    if truth(&a) == Some(true) {
                        return Ok(bool_value(true));
                    }
                    let b = eval(r, column)?;
                    match (truth(&a), truth(&b)) {
                        (_, Some(true)) => bool_value(true),
                        (Some(false), Some(false)) => bool_value(false),
                        _ => Value::Null,
                    }
                }
                BinOp::Xor => match (truth(&a), truth(&eval(r, column)?)) {
                    (Some(x), Some(y)) => bool_value(x != y),
                    _ => Value::Null,
                },
                BinOp::Eq
                | BinOp::NotEq
                | BinOp::NullSafeEq
                | BinOp::Lt
                | BinOp::LtEq
                | BinOp::Gt
                | BinOp::GtEq => cmp_op(&a, &eval(r, column)?, *op),
                _ => arithmetic(a, *op, eval(r, column)?)?,
            }
        }
    })
}

fn bool_value(b: bool) -> Value {
    Value::Int(i128::from(b))
}

/// The truth of a value (`None`: NULL).
pub(crate) fn truth(v: &Value) -> Option<bool> {
    match v {
        Value::Null => None,
        Value::Int(i) => Some(*i != 0),
        Value::Decimal(d) => Some(d.mantissa != 0),
        other => Some(to_f64(other) != 0.0),
    }
}

fn and(a: Value, b: Value) -> Value {
    match (truth(&a), truth(&b)) {
        (Some(false), _) | (_, Some(false)) => bool_value(false),
        (Some(true), Some(true)) => bool_value(true),
        _ => Value::Null,
    }
}

fn cmp_op(a: &Value, b: &Value, op: BinOp) -> Value {
    if op == BinOp::NullSafeEq {
        return bool_value(match (a, b) {
            (Value::Null, Value::Null) => true,
            (Value::Null, _) | (_, Value::Null) => false,
            _ => ordering(a, b) == Ordering::Equal,
        });
    }
    if *a == Value::Null || *b == Value::Null {
        return Value::Null;
    }
    let o = ordering(a, b);
    bool_value(match op {
        BinOp::Eq => o == Ordering::Equal,
        BinOp::NotEq => o != Ordering::Equal,
        BinOp::Lt => o == Ordering::Less,
        BinOp::LtEq => o != Ordering::Greater,
        BinOp::Gt => o == Ordering::Greater,
        _ => o != Ordering::Less,
    })
}

fn ordering(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Bytes(_), Value::Bytes(_)) => compare(TEXT, a, b),
        _ => compare_numbers(a, b),
    }
}

fn as_decimal(v: &Value) -> Option<Decimal> {
    match v {
        Value::Int(i) => Some(Decimal::from_int(*i)),
        Value::Decimal(d) => Some(*d),
        _ => None,
    }
}

/// `a op b` for + - * / DIV %.
pub(crate) fn arithmetic(a: Value, op: BinOp, b: Value) -> Result<Value, MergeError> {
    if a == Value::Null || b == Value::Null {
        return Ok(Value::Null);
    }
    if let (Value::Int(x), Value::Int(y)) = (&a, &b) {
        let r = match op {
            BinOp::Plus => x.checked_add(*y),
            BinOp::Minus => x.checked_sub(*y),
            BinOp::Multiply => x.checked_mul(*y),
            BinOp::IntDivide => {
                return Ok(if *y == 0 {
                    Value::Null
                } else {
                    Value::Int(x / y)
                })
            }
            BinOp::Modulo => {
                return Ok(if *y == 0 {
                    Value::Null
                } else {
                    Value::Int(x % y)
                })
            }
            _ => None,
        };
        if let Some(r) = r {
            return Ok(Value::Int(r));
        }
    }
    if let (Some(x), Some(y)) = (as_decimal(&a), as_decimal(&b)) {
        return Ok(match op {
            BinOp::Plus => Value::Decimal(x.checked_add(y)?),
            BinOp::Minus => Value::Decimal(x.checked_sub(y)?),
            BinOp::Multiply => Value::Decimal(x.checked_mul(y)?),
            BinOp::Divide => x
                .checked_div(y, x.scale + DIV_INCREMENT)?
                .map_or(Value::Null, Value::Decimal),
            BinOp::IntDivide => {
                // Truncates toward zero: divide the mantissas at a common scale.
                let scale = x.scale.max(y.scale);
                let (xa, ya) = (x.rescale(scale)?, y.rescale(scale)?);
                if ya.mantissa == 0 {
                    Value::Null
                } else {
                    Value::Int(xa.mantissa / ya.mantissa)
                }
            }
            _ => {
                let (xf, yf) = (x.to_f64(), y.to_f64());
                if yf == 0.0 {
                    Value::Null
                } else {
                    Value::Double(xf % yf)
                }
            }
        });
    }
    let (x, y) = (to_f64(&a), to_f64(&b));
    Ok(match op {
        BinOp::Plus => Value::Double(x + y),
        BinOp::Minus => Value::Double(x - y),
        BinOp::Multiply => Value::Double(x * y),
        _ if y == 0.0 => Value::Null,
        BinOp::Divide => Value::Double(x / y),
        BinOp::IntDivide => Value::Int((x / y).trunc() as i128),
        _ => Value::Double(x % y),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lit(c: Constant) -> Box<MergeExpr> {
        Box::new(MergeExpr::Value(Operand::Const(c)))
    }

    #[test]
    fn three_valued_logic_and_comparisons() {
        let col = |c: Col| match c {
            Col::Item(0) => Value::Int(5),
            Col::Item(1) => Value::Null,
            _ => Value::Bytes(b"Abc".to_vec()),
        };
        let gt = MergeExpr::Binary(
            Box::new(MergeExpr::Column(Col::Item(0))),
            BinOp::Gt,
            lit(Constant::Number("4.5".into())),
        );
        assert_eq!(eval(&gt, &col).unwrap(), Value::Int(1));
        let null_cmp = MergeExpr::Binary(
            Box::new(MergeExpr::Column(Col::Item(1))),
            BinOp::Eq,
            lit(Constant::Int(1)),
        );
        assert_eq!(eval(&null_cmp, &col).unwrap(), Value::Null);
        let or = MergeExpr::Binary(Box::new(null_cmp), BinOp::Or, Box::new(gt));
        assert_eq!(eval(&or, &col).unwrap(), Value::Int(1));
        let text = MergeExpr::Binary(
            Box::new(MergeExpr::Column(Col::Hidden(0))),
            BinOp::Eq,
            lit(Constant::Str(b"abc".to_vec())),
        );
        assert_eq!(eval(&text, &col).unwrap(), Value::Int(1));
    }

    #[test]
    fn arithmetic_follows_mysql_types() {
        let d = |s: &str| Value::Decimal(Decimal::parse(s.as_bytes()).unwrap());
        assert_eq!(
            arithmetic(Value::Int(7), BinOp::Divide, Value::Int(2)).unwrap(),
            d("3.5000")
        );
        assert_eq!(
            arithmetic(Value::Int(7), BinOp::Divide, Value::Int(0)).unwrap(),
            Value::Null
        );
        assert_eq!(
            arithmetic(Value::Int(7), BinOp::IntDivide, Value::Int(2)).unwrap(),
            Value::Int(3)
        );
        assert_eq!(
            arithmetic(d("1.5"), BinOp::Multiply, Value::Int(2)).unwrap(),
            d("3.0")
        );
        assert_eq!(
            arithmetic(Value::Double(1.5), BinOp::Plus, Value::Int(1)).unwrap(),
            Value::Double(2.5)
        );
    }
}
