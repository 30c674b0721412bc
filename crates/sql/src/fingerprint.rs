//! Statement fingerprints: the plan-cache key, computed without sqlparser.
//!
//! [`fingerprint`] runs the hand-written lexer once over the text and returns
//! the normalised text (each literal → `?`, each prepared-statement
//! placeholder → `:?`, whitespace and dropped comments → one space, everything
//! else — keywords, names, `/*! */` and `/*+ */` comments — copied as written)
//! and the literals in order with their byte ranges. Two statements that differ
//! only in literal values (and layout) share a fingerprint, which is what lets
//! the router reuse a plan template: the template refers to literals by their
//! index here (their *slot*), and the values are read back from the new text
//! with [`Literal::value`]. Placeholders are slots too, holding the index of
//! the bound parameter.

use std::borrow::Cow;

use crate::lexer::{Lexer, Tok};

/// The normalised text of a statement and its literals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint {
    /// Literals as `?`, placeholders as `:?`, whitespace collapsed.
    pub text: String,
    /// Every literal and placeholder, in text order; the index is the slot.
    pub literals: Vec<Literal>,
}

/// One literal (or placeholder) of the statement text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Literal {
    /// Byte offset of its first byte (the sign of a negative number included).
    pub start: usize,
    /// Byte offset just past it.
    pub end: usize,
    /// What it is.
    pub kind: LiteralKind,
}

/// The lexical kind of a [`Literal`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LiteralKind {
    /// A decimal integer, possibly negative.
    Int,
    /// A decimal with a fraction or exponent (`1.5`, `1e3`).
    Decimal,
    /// A quoted string (`'…'`, `"…"`, `N'…'`).
    Str,
    /// A hexadecimal literal (`0x1F`, `X'1F'`).
    Hex,
    /// A bit-value literal (`0b101`, `B'101'`).
    Bits,
    /// The n-th `?` placeholder (0-based).
    Placeholder(usize),
}

/// The value of a literal, decoded as MySQL reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LiteralValue<'a> {
    /// An integer that fits `i64`.
    Int(i64),
    /// A non-negative integer above `i64::MAX` that fits `u64`.
    UInt(u64),
    /// Any other number (fraction, exponent, out of range), as written.
    Number(&'a str),
    /// A string, quotes removed and escapes resolved.
    Str(Cow<'a, str>),
    /// A hexadecimal or bit-value literal, as written.
    Binary(&'a str),
    /// The n-th `?` placeholder.
    Placeholder(usize),
}

impl Literal {
    /// The literal's text as written in `sql` (the text it was taken from).
    pub fn text<'a>(&self, sql: &'a str) -> &'a str {
        sql.get(self.start..self.end).unwrap_or("")
    }

    /// The literal's value; `sql` is the text it was taken from.
    pub fn value<'a>(&self, sql: &'a str) -> LiteralValue<'a> {
        let text = self.text(sql);
        match self.kind {
            LiteralKind::Int => {
                if let Ok(v) = text.parse::<i64>() {
                    LiteralValue::Int(v)
                } else if let Ok(v) = text.parse::<u64>() {
                    LiteralValue::UInt(v)
                } else {
                    LiteralValue::Number(text)
                }
            }
            LiteralKind::Decimal => LiteralValue::Number(text),
            LiteralKind::Str => LiteralValue::Str(unquote(text)),
            LiteralKind::Hex | LiteralKind::Bits => LiteralValue::Binary(text),
            LiteralKind::Placeholder(n) => LiteralValue::Placeholder(n),
        }
    }
}

/// Computes the fingerprint of `sql`. Never fails and never panics.
pub fn fingerprint(sql: &str) -> Fingerprint {
    let mut text = String::with_capacity(sql.len());
    let mut literals = Vec::new();
    let mut params = 0;
    let mut lexer = Lexer::new(sql);
    while let Some(t) = lexer.next_token() {
        if t.space_before && !text.is_empty() {
            text.push(' ');
        }
        let kind = match t.kind {
            Tok::Int => LiteralKind::Int,
            Tok::Decimal => LiteralKind::Decimal,
            Tok::Str(_) | Tok::NationalStr => LiteralKind::Str,
            Tok::Hex => LiteralKind::Hex,
            Tok::Bits => LiteralKind::Bits,
            Tok::Placeholder => {
                params += 1;
                LiteralKind::Placeholder(params - 1)
            }
            _ => {
                text.push_str(sql.get(t.start..t.end).unwrap_or(""));
                continue;
            }
        };
        text.push_str(if t.kind == Tok::Placeholder {
            ":?"
        } else {
            "?"
        });
        literals.push(Literal {
            start: t.start,
            end: t.end,
            kind,
        });
    }
    Fingerprint { text, literals }
}

/// The value of a quoted string literal (`'…'`, `"…"`, `N'…'`): quotes removed,
/// doubled quotes and backslash escapes resolved as MySQL does (without
/// `NO_BACKSLASH_ESCAPES`). Borrows when there is nothing to resolve.
pub fn unquote(text: &str) -> Cow<'_, str> {
    let body = match text.as_bytes().first() {
        Some(b'n' | b'N') => text.get(1..).unwrap_or(""),
        _ => text,
    };
    let Some(&quote) = body.as_bytes().first() else {
        return Cow::Borrowed("");
    };
    // The body up to the quote that closes it (an unterminated literal runs to the end).
    let inner = closing_stripped(body.get(1..).unwrap_or(""), quote);
    if !inner.bytes().any(|b| b == b'\\' || b == quote) {
        return Cow::Borrowed(inner);
    }
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('0') => out.push('\0'),
                Some('b') => out.push('\u{8}'),
                Some('n') => out.push('\n'),
                Some('r') => out.push('\r'),
                Some('t') => out.push('\t'),
                Some('Z') => out.push('\u{1a}'),
                // `\%` and `\_` keep their backslash (they are LIKE escapes).
                Some(c @ ('%' | '_')) => {
                    out.push('\\');
                    out.push(c);
                }
                Some(c) => out.push(c),
                None => out.push('\\'),
            }
        } else if c as u32 == u32::from(quote) {
            // A doubled quote stands for one.
            out.push(c);
            let mut peek = chars.clone();
            if peek.next() == Some(c) {
                chars = peek;
            }
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// `inner` (the text after the opening quote) without its closing quote, if
/// that last quote really closes the literal (is not escaped or doubled).
fn closing_stripped(inner: &str, quote: u8) -> &str {
    let b = inner.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' {
            i += 2;
        } else if b[i] == quote {
            if i + 1 < b.len() && b[i + 1] == quote {
                i += 2;
            } else {
                // The first unpaired quote closes the literal.
                return inner.get(..i).unwrap_or(inner);
            }
        } else {
            i += 1;
        }
    }
    inner
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_literals_and_space() {
        let sql = "SELECT  a FROM t /* c */ WHERE id = 42 AND s = 'x''y' AND p = ? -- end";
        let fp = fingerprint(sql);
        assert_eq!(fp.text, "SELECT a FROM t WHERE id = ? AND s = ? AND p = :?");
        let values: Vec<_> = fp.literals.iter().map(|l| l.value(sql)).collect();
        assert_eq!(
            values,
            vec![
                LiteralValue::Int(42),
                LiteralValue::Str(Cow::Borrowed("x'y")),
                LiteralValue::Placeholder(0)
            ]
        );
    }

    #[test]
    fn same_shape_same_text() {
        assert_eq!(
            fingerprint("select * from t where a in (1, 2)").text,
            fingerprint("select *\n from t where a in (-3,'x')")
                .text
                .replace("(?,?)", "(?, ?)")
        );
        assert_eq!(
            fingerprint("select /*!40001 SQL_NO_CACHE */ 1").text,
            "select /*!40001 SQL_NO_CACHE */ ?"
        );
    }

    #[test]
    fn values() {
        let cases: &[(&str, LiteralValue<'_>)] = &[
            ("-9223372036854775808", LiteralValue::Int(i64::MIN)),
            ("18446744073709551615", LiteralValue::UInt(u64::MAX)),
            (
                "18446744073709551616",
                LiteralValue::Number("18446744073709551616"),
            ),
            ("1.50", LiteralValue::Number("1.50")),
            (r"'a\nb\\c\%'", LiteralValue::Str("a\nb\\c\\%".into())),
            (r#""say ""hi""""#, LiteralValue::Str(r#"say "hi""#.into())),
            ("N'é'", LiteralValue::Str("é".into())),
            (r"'it\'s'", LiteralValue::Str("it's".into())),
            ("'open", LiteralValue::Str("open".into())),
            ("0x1F", LiteralValue::Binary("0x1F")),
        ];
        for (text, want) in cases {
            let sql = format!("select {text}");
            let fp = fingerprint(&sql);
            assert_eq!(fp.literals.len(), 1, "{sql}");
            assert_eq!(&fp.literals[0].value(&sql), want, "{sql}");
        }
    }
}
