//! MariaDB / MySQL syntax that sqlparser does not parse, handled around it: taken off the
//! text before parsing (blanked, so every other token keeps its position for slot binding)
//! and printed back where it was when the statement is rendered, so the backend gets what the
//! client wrote.
//!
//! - `… LOCK IN SHARE MODE` at the end of a SELECT (MariaDB's shared lock; MySQL 5's);
//! - `UPDATE LOW_PRIORITY`, `UPDATE IGNORE` (sqlparser would read the modifier as the table's
//!   name and the table as its alias).
//!
//! Anything else sqlparser lacks is a syntax error (1064) naming the token: the known cases
//! are listed in `docs/compatibility.md`.

use std::borrow::Cow;

use crate::lexer::{Lexer, Tok};

/// What was taken off one statement's text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Extras {
    /// The statement ended with `LOCK IN SHARE MODE`.
    pub share_mode: bool,
    /// The modifiers written after `UPDATE`, in order (`LOW_PRIORITY IGNORE`).
    pub update_modifiers: Option<&'static str>,
}

const SHARE_MODE: [&str; 4] = ["LOCK", "IN", "SHARE", "MODE"];

impl Extras {
    /// `text` (a printed AST) with what was taken off put back.
    pub(crate) fn restore(&self, text: &mut String) {
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

#[cfg(test)]
mod tests {
    use super::*;

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
