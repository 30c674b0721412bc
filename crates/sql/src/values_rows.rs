//! An `INSERT … VALUES (?, …)` of one row of placeholders written for many rows, as the
//! proxy runs a COM_STMT_BULK_EXECUTE: the statement's own text with its row repeated, so the
//! rows are split by shard, filled with generated ids and made atomic like any multi-row
//! INSERT.

use crate::lexer::{Lexer, Tok, Token};

/// `sql` with its VALUES row repeated for `rows` rows, when `sql` is an INSERT or REPLACE
/// whose every placeholder is in its one VALUES row and that returns no rows; `None`
/// otherwise (UPDATE, DELETE, `INSERT … SELECT`, `SET`, several rows already, placeholders
/// in ON DUPLICATE KEY UPDATE or in a comment, RETURNING).
pub fn repeat_values_row(sql: &str, rows: usize) -> Option<String> {
    let mut lexer = Lexer::new(sql);
    let tokens: Vec<Token> = std::iter::from_fn(|| lexer.next_token()).collect();
    let word =
        |t: &Token, w: &str| t.kind == Tok::Word && sql[t.start..t.end].eq_ignore_ascii_case(w);
    let first = tokens.first()?;
    if !word(first, "INSERT") && !word(first, "REPLACE") {
        return None;
    }
    let mut depth = 0usize;
    let mut open = None;
    for (i, t) in tokens.iter().enumerate() {
        match t.kind {
            Tok::Punct(b'(') => depth += 1,
            Tok::Punct(b')') => depth = depth.checked_sub(1)?,
            _ if depth == 0 && (word(t, "VALUES") || word(t, "VALUE")) => {
                open = Some(i + 1);
                break;
            }
            _ => {}
        }
    }
    let open = open.filter(|&i| tokens.get(i).is_some_and(|t| t.kind == Tok::Punct(b'(')))?;
    let mut depth = 0usize;
    let mut close = None;
    for (i, t) in tokens.iter().enumerate().skip(open) {
        match t.kind {
            Tok::Punct(b'(') => depth += 1,
            Tok::Punct(b')') => {
                depth -= 1;
                if depth == 0 {
                    close = Some(i);
                    break;
                }
            }
            _ => {}
        }
    }
    let close = close?;
    let placeholders = |ts: &[Token]| ts.iter().filter(|t| t.kind == Tok::Placeholder).count();
    let in_row = placeholders(&tokens[open..=close]);
    let after = &tokens[close + 1..];
    let more_rows = after.first().is_some_and(|t| t.kind == Tok::Punct(b','));
    let kept_comment = tokens.iter().any(|t| t.kind == Tok::KeptComment);
    if in_row == 0
        || in_row != placeholders(&tokens)
        || more_rows
        || kept_comment
        || after.iter().any(|t| word(t, "RETURNING"))
    {
        return None;
    }
    let (start, end) = (tokens[open].start, tokens[close].end);
    let row = &sql[start..end];
    let mut out = String::with_capacity(sql.len() + (row.len() + 1) * rows.saturating_sub(1));
    out.push_str(&sql[..end]);
    for _ in 1..rows {
        out.push(',');
        out.push_str(row);
    }
    out.push_str(&sql[end..]);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_values_row_is_repeated() {
        assert_eq!(
            repeat_values_row("INSERT INTO t (id, b) VALUES (?, ?)", 3).as_deref(),
            Some("INSERT INTO t (id, b) VALUES (?, ?),(?, ?),(?, ?)")
        );
        assert_eq!(
            repeat_values_row("replace t value (?, CONCAT(?, 'x'), DEFAULT) ON DUPLICATE KEY UPDATE b = VALUES(b)", 2)
                .as_deref(),
            Some("replace t value (?, CONCAT(?, 'x'), DEFAULT),(?, CONCAT(?, 'x'), DEFAULT) ON DUPLICATE KEY UPDATE b = VALUES(b)")
        );
        assert_eq!(
            repeat_values_row("INSERT INTO t VALUES (?)", 1).as_deref(),
            Some("INSERT INTO t VALUES (?)")
        );
    }

    #[test]
    fn other_statements_are_not_rewritten() {
        for sql in [
            "UPDATE t SET b = ? WHERE id = ?",
            "DELETE FROM t WHERE id = ?",
            "INSERT INTO t SET id = ?",
            "INSERT INTO t SELECT ? FROM dual",
            "INSERT INTO t VALUES (?), (?)",
            "INSERT INTO t VALUES (?, 1), (2, 3)",
            "INSERT INTO t VALUES (?) ON DUPLICATE KEY UPDATE b = ?",
            "INSERT INTO t VALUES (?) RETURNING id",
            "INSERT INTO t VALUES (? /*!, ? */)",
            "INSERT INTO t VALUES (1)",
            "INSERT INTO t VALUES (?",
            "INSERT INTO t VALUES ?)",
        ] {
            assert_eq!(repeat_values_row(sql, 2), None, "{sql}");
        }
    }
}
