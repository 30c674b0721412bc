//! A small hand-written MySQL lexer: the fast path that never calls sqlparser.
//!
//! It splits statement text into tokens by MySQL's lexical rules (quotes with
//! backslash and doubled-quote escapes, backtick identifiers, the three comment
//! styles, `/*! */` and `/*+ */` kept as text, numbers with hex, binary and
//! exponent forms, `?` placeholders) and drives [`crate::fingerprint`],
//! [`crate::split`] and [`crate::identifiers`]. It works on bytes and only cuts
//! the text at ASCII bytes, so every token is a valid `&str` slice; it accepts
//! any input (unterminated quotes and comments run to the end) and never panics.
//!
//! Lexical rules: <https://dev.mysql.com/doc/refman/8.0/en/string-literals.html>,
//! <https://dev.mysql.com/doc/refman/8.0/en/comments.html>.

/// What a token is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tok {
    /// A bare word: keyword, identifier, `@var` parts, `1abc`.
    Word,
    /// A backtick-quoted identifier, quotes included.
    QuotedIdent,
    /// A string literal quoted with the given byte (`'` or `"`), quotes included.
    Str(u8),
    /// `N'…'` (national character set string).
    NationalStr,
    /// An integer literal (`42`, or `-42` when a minus was folded into it).
    Int,
    /// A decimal or floating-point literal (`1.5`, `1e5`, `.5`).
    Decimal,
    /// `0x1F` or `X'1F'`.
    Hex,
    /// `0b101` or `B'101'`.
    Bits,
    /// A `?` placeholder of a prepared statement.
    Placeholder,
    /// A `/*! … */` or `/*+ … */` comment, kept as text.
    KeptComment,
    /// `;` outside quotes and comments.
    Semicolon,
    /// Any other single byte: operators and punctuation.
    Punct(u8),
}

/// One token: its kind, byte range, and whether whitespace or a dropped
/// comment came before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token {
    pub kind: Tok,
    pub start: usize,
    pub end: usize,
    pub space_before: bool,
}

/// Words after which a `-` followed by a digit starts a negative number.
const FOLD_AFTER: &[&str] = &[
    "SELECT", "WHERE", "AND", "OR", "NOT", "XOR", "BETWEEN", "VALUES", "VALUE", "SET", "THEN",
    "ELSE", "WHEN", "LIKE", "IS", "ON", "BY", "LIMIT", "OFFSET", "RETURN", "IN", "HAVING", "CASE",
    "DEFAULT", "INTERVAL",
];

/// The previous token, as far as sign folding cares.
#[derive(Clone, Copy)]
enum Prev {
    /// Start of text, an operator or punctuation: a sign may follow.
    Sign,
    /// A value, name or `)`: a minus is binary.
    NoSign,
    /// A word (at this range): a sign may follow if it is one of [`FOLD_AFTER`].
    Word(usize, usize),
}

/// The lexer state: the text, the position, and what the previous token was
/// (needed to tell a negative number from a binary minus).
pub struct Lexer<'a> {
    src: &'a str,
    bytes: &'a [u8],
    pos: usize,
    /// What came before, to tell whether a `-` directly before a digit is a sign.
    prev: Prev,
    /// Whether the previous token can be the left side of a `.` qualifier.
    after_name: bool,
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80
}

impl<'a> Lexer<'a> {
    pub fn new(src: &'a str) -> Self {
        Self {
            src,
            bytes: src.as_bytes(),
            pos: 0,
            prev: Prev::Sign,
            after_name: false,
        }
    }

    fn at(&self, i: usize) -> u8 {
        self.bytes.get(i).copied().unwrap_or(0)
    }

    /// Skips whitespace and dropped comments; returns whether anything was skipped.
    fn skip_space(&mut self) -> bool {
        let start = self.pos;
        let n = self.bytes.len();
        while self.pos < n {
            let b = self.bytes[self.pos];
            if is_space(b) {
                self.pos += 1;
            } else if b == b'#' || self.at_dash_comment() {
                self.skip_line();
            } else if b == b'/' && self.at(self.pos + 1) == b'*' && !self.at_kept_comment() {
                self.pos = self.comment_end(self.pos + 2);
            } else {
                break;
            }
        }
        self.pos > start
    }

    /// `/*!`, `/*M!` (MariaDB's executable comments) and `/*+` (hints) are kept as tokens.
    fn at_kept_comment(&self) -> bool {
        match self.at(self.pos + 2) {
            b'!' | b'+' => true,
            b'M' => self.at(self.pos + 3) == b'!',
            _ => false,
        }
    }

    /// `--` starts a comment only when followed by whitespace, a control character or the end.
    fn at_dash_comment(&self) -> bool {
        self.at(self.pos) == b'-'
            && self.at(self.pos + 1) == b'-'
            && (self.pos + 2 >= self.bytes.len() || self.at(self.pos + 2) <= b' ')
    }

    fn skip_line(&mut self) {
        match self.bytes[self.pos..].iter().position(|&b| b == b'\n') {
            Some(i) => self.pos += i + 1,
            None => self.pos = self.bytes.len(),
        }
    }

    /// The position after the `*/` closing a comment whose body starts at `from`.
    fn comment_end(&self, from: usize) -> usize {
        let n = self.bytes.len();
        let mut i = from;
        while i + 1 < n {
            if self.bytes[i] == b'*' && self.bytes[i + 1] == b'/' {
                return i + 2;
            }
            i += 1;
        }
        n
    }

    /// The end of a quoted run starting at the opening `quote` at `from`.
    fn quoted_end(&self, from: usize, quote: u8, backslash: bool) -> usize {
        let n = self.bytes.len();
        let mut i = from + 1;
        while i < n {
            let b = self.bytes[i];
            if backslash && b == b'\\' {
                i += 2;
            } else if b == quote {
                if self.at(i + 1) == quote && i + 1 < n {
                    i += 2;
                } else {
                    return i + 1;
                }
            } else {
                i += 1;
            }
        }
        n
    }

    fn word_end(&self, from: usize) -> usize {
        let mut i = from;
        while i < self.bytes.len() && is_word_byte(self.bytes[i]) {
            i += 1;
        }
        i
    }

    /// Scans a number starting at `from` (a digit, or `.` before a digit).
    /// Returns its kind and end; a digit run that continues into letters is a word.
    fn number(&self, from: usize) -> (Tok, usize) {
        let b = self.bytes;
        let n = b.len();
        if self.at(from) == b'0' && matches!(self.at(from + 1), b'x' | b'X' | b'b' | b'B') {
            let hex = matches!(self.at(from + 1), b'x' | b'X');
            let mut i = from + 2;
            while i < n
                && (if hex {
                    b[i].is_ascii_hexdigit()
                } else {
                    b[i] == b'0' || b[i] == b'1'
                })
            {
                i += 1;
            }
            if i > from + 2 && !is_word_byte(self.at(i)) {
                return (if hex { Tok::Hex } else { Tok::Bits }, i);
            }
            return (Tok::Word, self.word_end(from));
        }
        let mut i = from;
        while i < n && b[i].is_ascii_digit() {
            i += 1;
        }
        let mut kind = Tok::Int;
        if self.at(i) == b'.' {
            kind = Tok::Decimal;
            i += 1;
            while i < n && b[i].is_ascii_digit() {
                i += 1;
            }
        }
        if matches!(self.at(i), b'e' | b'E') {
            let mut j = i + 1;
            if matches!(self.at(j), b'+' | b'-') {
                j += 1;
            }
            if self.at(j).is_ascii_digit() {
                while j < n && b[j].is_ascii_digit() {
                    j += 1;
                }
                kind = Tok::Decimal;
                i = j;
            }
        }
        if is_word_byte(self.at(i)) {
            // `1abc`, `12e`: MySQL reads an identifier.
            return (Tok::Word, self.word_end(i));
        }
        (kind, i)
    }

    /// Whether a `-` directly before a digit, here, is the sign of a number.
    fn sign_allowed(&self) -> bool {
        match self.prev {
            Prev::Sign => true,
            Prev::NoSign => false,
            Prev::Word(s, e) => {
                let w = self.src.get(s..e).unwrap_or("");
                FOLD_AFTER.iter().any(|k| k.eq_ignore_ascii_case(w))
            }
        }
    }

    /// The next significant token, or `None` at the end of the text.
    pub fn next_token(&mut self) -> Option<Token> {
        let space_before = self.skip_space();
        let start = self.pos;
        let n = self.bytes.len();
        if start >= n {
            return None;
        }
        let b = self.bytes[start];
        let (kind, end) = match b {
            b'\'' | b'"' => (Tok::Str(b), self.quoted_end(start, b, true)),
            b'`' => (Tok::QuotedIdent, self.quoted_end(start, b'`', false)),
            b'/' if self.at(start + 1) == b'*' => (Tok::KeptComment, self.comment_end(start + 2)),
            b'?' => (Tok::Placeholder, start + 1),
            b';' => (Tok::Semicolon, start + 1),
            b'0'..=b'9' => self.number(start),
            b'.' if self.at(start + 1).is_ascii_digit() && !self.after_name => self.number(start),
            b'-' if self.sign_allowed()
                && (self.at(start + 1).is_ascii_digit()
                    || (self.at(start + 1) == b'.' && self.at(start + 2).is_ascii_digit())) =>
            {
                match self.number(start + 1) {
                    (Tok::Word, _) => (Tok::Punct(b'-'), start + 1),
                    (kind, end) => (kind, end),
                }
            }
            _ if is_word_byte(b) => {
                let end = self.word_end(start);
                if end == start + 1 && self.at(end) == b'\'' {
                    match b {
                        b'n' | b'N' => (Tok::NationalStr, self.quoted_end(end, b'\'', true)),
                        b'x' | b'X' => (Tok::Hex, self.quoted_end(end, b'\'', false)),
                        b'b' | b'B' => (Tok::Bits, self.quoted_end(end, b'\'', false)),
                        _ => (Tok::Word, end),
                    }
                } else {
                    (Tok::Word, end)
                }
            }
            _ => {
                // A multi-byte character cannot start here (bytes >= 0x80 are word bytes).
                (Tok::Punct(b), start + 1)
            }
        };
        let end = end.clamp(start + 1, n);
        self.pos = end;
        self.prev = match kind {
            Tok::Punct(b')') => Prev::NoSign,
            Tok::Punct(_) | Tok::Semicolon => Prev::Sign,
            Tok::Word => Prev::Word(start, end),
            _ => Prev::NoSign,
        };
        self.after_name = matches!(kind, Tok::Word | Tok::QuotedIdent | Tok::Punct(b')'));
        Some(Token {
            kind,
            start,
            end,
            space_before,
        })
    }
}

/// Words that end a select list at its own level.
pub(crate) const SELECT_LIST_END: &[&str] = &[
    "FROM",
    "INTO",
    "WHERE",
    "GROUP",
    "HAVING",
    "ORDER",
    "LIMIT",
    "UNION",
    "EXCEPT",
    "INTERSECT",
    "WINDOW",
    "FOR",
    "LOCK",
    "PROCEDURE",
];

/// Whether `text` holds `word` anywhere, in any ASCII case: a byte scan that spares the
/// lexing of the statements that cannot concern a caller.
pub fn mentions(text: &str, word: &str) -> bool {
    text.as_bytes()
        .windows(word.len())
        .any(|x| x.eq_ignore_ascii_case(word.as_bytes()))
}

/// The code of an executable comment (`/*! … */`, `/*!50700 … */`, `/*M! … */`), which
/// MySQL and MariaDB run as part of the statement, and where in `comment` it starts; `None`
/// for other comments.
pub(crate) fn executable_code(comment: &str) -> Option<(usize, &str)> {
    let code = comment
        .strip_prefix("/*!")
        .or_else(|| comment.strip_prefix("/*M!"))?;
    let code = code.trim_start_matches(|c: char| c.is_ascii_digit());
    let start = comment.len() - code.len();
    Some((start, code.strip_suffix("*/").unwrap_or(code)))
}

/// The tokens of `sql` with the code of executable comments read in place of the comments,
/// positions in `sql`. Comments do not nest (the first `*/` ends one), so an unterminated
/// comment inside one runs to its end and replaces it: no recursion, whatever the text.
pub struct CodeTokens<'a> {
    outer: Lexer<'a>,
    /// The comment being read: its lexer and where its code starts in `sql`.
    inner: Option<(Lexer<'a>, usize)>,
}

impl<'a> CodeTokens<'a> {
    pub fn new(sql: &'a str) -> Self {
        Self {
            outer: Lexer::new(sql),
            inner: None,
        }
    }
}

impl Iterator for CodeTokens<'_> {
    type Item = Token;

    fn next(&mut self) -> Option<Token> {
        loop {
            let (t, src, offset) = match &mut self.inner {
                Some((lexer, offset)) => match lexer.next_token() {
                    Some(t) => (t, lexer.src, *offset),
                    None => {
                        self.inner = None;
                        continue;
                    }
                },
                None => (self.outer.next_token()?, self.outer.src, 0),
            };
            let t = Token {
                start: t.start + offset,
                end: t.end + offset,
                ..t
            };
            if t.kind == Tok::KeptComment {
                let comment = src.get(t.start - offset..t.end - offset).unwrap_or("");
                if let Some((start, code)) = executable_code(comment) {
                    self.inner = Some((Lexer::new(code), t.start + start));
                    continue;
                }
            }
            return Some(t);
        }
    }
}

/// The statements of a multi-statement text, split at `;` outside quotes and
/// comments, trimmed, empty ones dropped.
pub fn split(sql: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut lexer = Lexer::new(sql);
    let mut start = 0;
    while let Some(t) = lexer.next_token() {
        if t.kind == Tok::Semicolon {
            push_piece(&mut out, sql.get(start..t.start).unwrap_or(""));
            start = t.end;
        }
    }
    push_piece(&mut out, sql.get(start..).unwrap_or(""));
    out
}

fn push_piece<'a>(out: &mut Vec<&'a str>, piece: &'a str) {
    let piece = piece.trim_matches(|c: char| c.is_ascii() && is_space(c as u8));
    // A piece holding only comments is no statement.
    if Lexer::new(piece).next_token().is_some() {
        out.push(piece);
    }
}

/// Every identifier-like token of `sql` (bare words and backtick-quoted names,
/// unquoted), in order. Used to decide, without a parser, whether a statement
/// can name a table of the rules.
pub fn identifiers(sql: &str) -> Vec<String> {
    let mut out = Vec::new();
    for t in CodeTokens::new(sql) {
        let text = sql.get(t.start..t.end).unwrap_or("");
        match t.kind {
            Tok::Word => out.push(text.to_owned()),
            Tok::QuotedIdent => {
                let inner = text
                    .strip_prefix('`')
                    .map(|s| s.strip_suffix('`').unwrap_or(s))
                    .unwrap_or(text);
                out.push(inner.replace("``", "`"));
            }
            _ => {}
        }
    }
    out
}

/// If `sql` starts with `words` (bare words, ASCII case-insensitive, any
/// whitespace or comments between), the text after them, trimmed.
pub fn strip_leading_words<'a>(sql: &'a str, words: &[&str]) -> Option<&'a str> {
    let mut lexer = Lexer::new(sql);
    let mut end = 0;
    for w in words {
        let t = lexer.next_token()?;
        if t.kind != Tok::Word || !sql.get(t.start..t.end)?.eq_ignore_ascii_case(w) {
            return None;
        }
        end = t.end;
    }
    Some(sql.get(end..)?.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(sql: &str) -> Vec<(Tok, &str)> {
        let mut l = Lexer::new(sql);
        let mut v = Vec::new();
        while let Some(t) = l.next_token() {
            v.push((t.kind, &sql[t.start..t.end]));
        }
        v
    }

    #[test]
    fn numbers_and_signs() {
        assert_eq!(
            kinds("a-1 = -2.5e3 - -.5"),
            vec![
                (Tok::Word, "a"),
                (Tok::Punct(b'-'), "-"),
                (Tok::Int, "1"),
                (Tok::Punct(b'='), "="),
                (Tok::Decimal, "-2.5e3"),
                (Tok::Punct(b'-'), "-"),
                (Tok::Decimal, "-.5"),
            ]
        );
        assert_eq!(
            kinds("0x1F 0b01 0xZZ 1abc t.5"),
            vec![
                (Tok::Hex, "0x1F"),
                (Tok::Bits, "0b01"),
                (Tok::Word, "0xZZ"),
                (Tok::Word, "1abc"),
                (Tok::Word, "t"),
                (Tok::Punct(b'.'), "."),
                (Tok::Int, "5"),
            ]
        );
    }

    #[test]
    fn quotes_and_comments() {
        assert_eq!(
            kinds(
                r#"'a\'b' "c""d" `e``f` X'1f' n'x' -- c
 # c2
 /* c3 */ /*!40101 x */ ?"#
            ),
            vec![
                (Tok::Str(b'\''), r"'a\'b'"),
                (Tok::Str(b'"'), r#""c""d""#),
                (Tok::QuotedIdent, "`e``f`"),
                (Tok::Hex, "X'1f'"),
                (Tok::NationalStr, "n'x'"),
                (Tok::KeptComment, "/*!40101 x */"),
                (Tok::Placeholder, "?"),
            ]
        );
        // `--` without a following space is two minus signs.
        assert_eq!(
            kinds("1--2"),
            vec![(Tok::Int, "1"), (Tok::Punct(b'-'), "-"), (Tok::Int, "-2")]
        );
    }

    #[test]
    fn split_statements() {
        assert_eq!(
            split("select ';'; select 2 -- x;\n ;  /* only */ ; select 3"),
            vec!["select ';'", "select 2 -- x;", "select 3"]
        );
        assert_eq!(split(""), Vec::<&str>::new());
    }

    #[test]
    fn leading_words() {
        assert_eq!(
            strip_leading_words("explain /* x */ ROUTE select 1", &["EXPLAIN", "ROUTE"]),
            Some("select 1")
        );
        assert_eq!(
            strip_leading_words("explain select 1", &["EXPLAIN", "ROUTE"]),
            None
        );
    }

    #[test]
    fn identifiers_unquote() {
        assert_eq!(
            identifiers("select `a``b`, c from /*! d */ 'e'"),
            vec!["select", "a`b", "c", "from", "d"]
        );
    }
}
