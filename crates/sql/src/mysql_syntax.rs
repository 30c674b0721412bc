//! MariaDB / MySQL syntax that sqlparser does not parse, handled around it: taken off the
//! text before parsing (blanked, so every other token keeps its position for slot binding)
//! and printed back where it was when the statement is rendered, so the backend gets what the
//! client wrote.
//!
//! - `… LOCK IN SHARE MODE` at the end of a SELECT (MariaDB's shared lock; MySQL 5's);
//! - `UPDATE LOW_PRIORITY`, `UPDATE IGNORE` (sqlparser would read the modifier as the table's
//!   name and the table as its alias);
//! - the function `INTERVAL(N, N1, N2, …)` (sqlparser reads every `INTERVAL` as an interval
//!   literal, which needs a unit): parsed as a call of a stand-in function of the same length,
//!   printed back as `INTERVAL`.
//!
//! Anything else sqlparser lacks is a syntax error (1064) naming the token: the known cases
//! are listed in `docs/compatibility.md`.

use std::borrow::Cow;

use crate::lexer::{mentions, Lexer, Tok};

/// What was taken off one statement's text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Extras {
    /// The statement ended with `LOCK IN SHARE MODE`.
    pub share_mode: bool,
    /// The modifiers written after `UPDATE`, in order (`LOW_PRIORITY IGNORE`).
    pub update_modifiers: Option<&'static str>,
    /// `INTERVAL(…)` calls were renamed [`INTERVAL_STAND_IN`].
    pub interval_function: bool,
}

/// What `INTERVAL` is renamed to where it calls the function: an identifier of the same
/// length, so every other token keeps its position. A text that holds this word itself is
/// left as it is.
const INTERVAL_STAND_IN: &str = "INTERVA_";

const SHARE_MODE: [&str; 4] = ["LOCK", "IN", "SHARE", "MODE"];

impl Extras {
    /// `text` (a printed AST) with what was taken off put back.
    pub(crate) fn restore(&self, text: &mut String) {
        if self.interval_function {
            *text = text.replace(&format!("{INTERVAL_STAND_IN}("), "INTERVAL(");
        }
        if let Some(modifiers) = self.update_modifiers {
            if text.starts_with("UPDATE ") {
                text.insert_str("UPDATE ".len(), modifiers);
            }
        }
        if self.share_mode {
            text.push_str(" LOCK IN SHARE MODE");
        }
    }

    /// Whether the parsed statement can carry what was taken off (else the text stays a
    /// syntax error).
    pub(crate) fn fits(&self, ast: &sqlparser::ast::Statement) -> bool {
        use sqlparser::ast::Statement;
        (!self.share_mode || matches!(ast, Statement::Query(_)))
            && (self.update_modifiers.is_none() || matches!(ast, Statement::Update { .. }))
    }
}

/// `sql` (one statement, or the last of several) with the syntax sqlparser lacks taken off.
pub(crate) fn take(sql: &str) -> (Cow<'_, str>, Extras) {
    let mut words: Vec<(usize, usize)> = Vec::new();
    let mut lexer = Lexer::new(sql);
    // The last run of words, and the first words of the text.
    let mut first: Vec<(usize, usize)> = Vec::new();
    let mut leading = true;
    while let Some(t) = lexer.next_token() {
        match t.kind {
            Tok::Semicolon => {}
            Tok::Word => {
                if leading && first.len() < 3 {
                    first.push((t.start, t.end));
                }
                if words.len() == SHARE_MODE.len() {
                    words.remove(0);
                }
                words.push((t.start, t.end));
            }
            _ => {
                leading = false;
                words.clear();
            }
        }
    }
    let is = |(a, b): (usize, usize), w: &str| sql[a..b].eq_ignore_ascii_case(w);
    let mut extras = Extras::default();
    let mut text = Cow::Borrowed(sql);
    let calls = interval_calls(sql);
    if !calls.is_empty() {
        let mut owned = text.into_owned();
        for at in calls {
            owned.replace_range(at..at + INTERVAL_STAND_IN.len(), INTERVAL_STAND_IN);
        }
        extras.interval_function = true;
        text = Cow::Owned(owned);
    }
    if words.len() == SHARE_MODE.len() && words.iter().zip(SHARE_MODE).all(|(&r, w)| is(r, w)) {
        extras.share_mode = true;
        text = Cow::Owned(sql[..words[0].0].to_owned());
    }
    if first.first().is_some_and(|&r| is(r, "UPDATE")) {
        let low = first.get(1).is_some_and(|&r| is(r, "LOW_PRIORITY"));
        let ignore = first
            .get(1 + usize::from(low))
            .is_some_and(|&r| is(r, "IGNORE"));
        extras.update_modifiers = match (low, ignore) {
            (true, true) => Some("LOW_PRIORITY IGNORE "),
            (true, false) => Some("LOW_PRIORITY "),
            (false, true) => Some("IGNORE "),
            (false, false) => None,
        };
        let blanked = usize::from(low) + usize::from(ignore);
        if blanked > 0 {
            let mut owned = text.into_owned();
            for &(a, b) in &first[1..=blanked] {
                owned.replace_range(a..b, &" ".repeat(b - a));
            }
            text = Cow::Owned(owned);
        }
    }
    (text, extras)
}

/// Where `sql` calls the function `INTERVAL(N, N1, …)`: an `INTERVAL` word followed by a
/// parenthesized list of two or more items (`INTERVAL (1) DAY` is an interval literal). None
/// when the text holds the stand-in word itself.
fn interval_calls(sql: &str) -> Vec<usize> {
    if !mentions(sql, "INTERVAL") || mentions(sql, INTERVAL_STAND_IN) {
        return Vec::new();
    }
    let tokens: Vec<_> = std::iter::from_fn({
        let mut lexer = Lexer::new(sql);
        move || lexer.next_token()
    })
    .collect();
    let mut calls = Vec::new();
    for (i, t) in tokens.iter().enumerate() {
        let is_interval =
            t.kind == Tok::Word && sql[t.start..t.end].eq_ignore_ascii_case("INTERVAL");
        if !is_interval || tokens.get(i + 1).map(|t| t.kind) != Some(Tok::Punct(b'(')) {
            continue;
        }
        let mut depth = 0usize;
        for next in &tokens[i + 1..] {
            match next.kind {
                Tok::Punct(b'(') => depth += 1,
                Tok::Punct(b')') => {
                    depth -= 1;
                    if depth == 0 {
                        break;
                    }
                }
                Tok::Punct(b',') if depth == 1 => {
                    calls.push(t.start);
                    break;
                }
                Tok::Semicolon => break,
                _ => {}
            }
        }
    }
    calls
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_interval_function_is_parsed_and_printed_back() {
        let (text, extras) =
            take("SELECT interval(a, 100, INTERVAL(b, 1, 2)), NOW() + INTERVAL (1) DAY FROM t");
        assert_eq!(
            text,
            "SELECT INTERVA_(a, 100, INTERVA_(b, 1, 2)), NOW() + INTERVAL (1) DAY FROM t"
        );
        assert!(extras.interval_function);
        let mut printed = "SELECT INTERVA_(a, 100, INTERVA_(b, 1, 2)) FROM t_1".to_owned();
        extras.restore(&mut printed);
        assert_eq!(
            printed,
            "SELECT INTERVAL(a, 100, INTERVAL(b, 1, 2)) FROM t_1"
        );
        // A text holding the stand-in is left alone (and stays a syntax error).
        let (text, extras) = take("SELECT INTERVAL(a, 1), interva_(b) FROM t");
        assert_eq!(text, "SELECT INTERVAL(a, 1), interva_(b) FROM t");
        assert!(!extras.interval_function);
        // In a text of several statements it is a clean syntax error naming it.
        let err = crate::parse("SELECT INTERVAL(a, 1, 2) FROM t; SELECT 1").unwrap_err();
        assert!(err.to_string().contains("INTERVAL(N, N1, …)"), "{err}");
    }

    #[test]
    fn takes_off_and_restores() {
        let (text, extras) = take("select * from t where a = 'LOCK' lock in SHARE mode ;");
        assert_eq!(text, "select * from t where a = 'LOCK' ");
        assert!(extras.share_mode);
        let mut printed = "SELECT * FROM t_1 WHERE a = 'LOCK'".to_owned();
        extras.restore(&mut printed);
        assert_eq!(
            printed,
            "SELECT * FROM t_1 WHERE a = 'LOCK' LOCK IN SHARE MODE"
        );

        let (text, extras) = take("UPDATE low_priority IGNORE t SET a = 1");
        assert_eq!(text, "UPDATE                     t SET a = 1");
        let mut printed = "UPDATE t_1 SET a = 1".to_owned();
        extras.restore(&mut printed);
        assert_eq!(printed, "UPDATE LOW_PRIORITY IGNORE t_1 SET a = 1");

        let (text, extras) = take("SELECT 'lock in share mode'");
        assert_eq!(
            (text.as_ref(), extras),
            ("SELECT 'lock in share mode'", Extras::default())
        );
    }
}
