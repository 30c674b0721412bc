//! Which character set a SET statement gives the client's statements (`character_set_client`),
//! so the proxy reads the statements that follow in it.

use std::borrow::Cow;

use crate::fingerprint::unquote;
use crate::lexer::{Lexer, Tok};

/// What a SET statement does to `character_set_client`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientCharset<'a> {
    /// Sets it to the character set of this name (as written, any case).
    Named(Cow<'a, str>),
    /// Sets it to something only the server can tell: `DEFAULT` or an expression.
    Unknown,
}

/// The last change of `character_set_client` a SET statement makes: by `SET NAMES`,
/// `SET CHARACTER SET` / `SET CHARSET`, or assigning the session variable. `None` for a SET
/// that leaves it alone (a `GLOBAL` assignment included) and for any other statement.
pub fn client_charset(sql: &str) -> Option<ClientCharset<'_>> {
    let tokens = tokens(sql);
    let (first, rest) = tokens.split_first()?;
    if !is_word(first, "SET") {
        return None;
    }
    assignments(rest)
        .into_iter()
        .filter_map(assignment)
        .next_back()
}

/// The tokens of `sql`, each with its text.
pub(crate) fn tokens(sql: &str) -> Vec<(Tok, &str)> {
    let mut lexer = Lexer::new(sql);
    let mut tokens = Vec::new();
    while let Some(t) = lexer.next_token() {
        tokens.push((t.kind, sql.get(t.start..t.end).unwrap_or("")));
    }
    tokens
}

/// The assignments of a SET statement (its tokens after `SET`), split at the commas outside
/// parentheses.
pub(crate) fn assignments<'t, 'a>(tokens: &'t [(Tok, &'a str)]) -> Vec<&'t [(Tok, &'a str)]> {
    let mut out = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (i, token) in tokens.iter().enumerate() {
        match token.0 {
            Tok::Punct(b'(') => depth += 1,
            Tok::Punct(b')') => depth = depth.saturating_sub(1),
            Tok::Punct(b',') if depth == 0 => {
                out.push(&tokens[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&tokens[start..]);
    out
}

pub(crate) fn is_word(token: &(Tok, &str), word: &str) -> bool {
    token.0 == Tok::Word && token.1.eq_ignore_ascii_case(word)
}

/// A `name = value` assignment of a session variable: the name in lower case without its
/// session scope, and the value's tokens. `None` for anything else (a `GLOBAL` one included).
pub(crate) fn session_variable<'t, 'a>(
    tokens: &'t [(Tok, &'a str)],
) -> Option<(String, &'t [(Tok, &'a str)])> {
    let equals = tokens
        .iter()
        .position(|t| matches!(t.0, Tok::Punct(b'=' | b':')))?;
    let name: String = tokens[..equals]
        .iter()
        .map(|t| t.1.to_ascii_lowercase())
        .collect::<Vec<_>>()
        .join(" ");
    let name = name.replace(" . ", ".").replace("@ @ ", "@@");
    let name = ["@@session.", "@@local.", "@@", "session ", "local "]
        .iter()
        .find_map(|scope| name.strip_prefix(scope))
        .unwrap_or(&name)
        .to_string();
    let value = &tokens[equals + 1..];
    // `:=` is two tokens.
    let value = value
        .strip_prefix(&[(Tok::Punct(b'='), "=")][..])
        .unwrap_or(value);
    Some((name, value))
}

/// One assignment of a SET statement.
fn assignment<'a>(tokens: &[(Tok, &'a str)]) -> Option<ClientCharset<'a>> {
    let value = match tokens {
        [names, value @ ..] if is_word(names, "NAMES") => value,
        [character, set, value @ ..] if is_word(character, "CHARACTER") && is_word(set, "SET") => {
            value
        }
        [charset, value @ ..] if is_word(charset, "CHARSET") => value,
        _ => match session_variable(tokens)? {
            (name, value) if name == "character_set_client" => value,
            _ => return None,
        },
    };
    Some(match value {
        [(Tok::Word, name), rest @ ..]
            if !name.eq_ignore_ascii_case("DEFAULT")
                && rest.first().is_none_or(|t| is_word(t, "COLLATE")) =>
        {
            ClientCharset::Named(Cow::Borrowed(name))
        }
        [(Tok::Str(_), quoted), rest @ ..]
            if rest.first().is_none_or(|t| is_word(t, "COLLATE")) =>
        {
            ClientCharset::Named(unquote(quoted))
        }
        _ => ClientCharset::Unknown,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(sql: &str) -> Option<String> {
        match client_charset(sql) {
            Some(ClientCharset::Named(n)) => Some(n.into_owned()),
            Some(ClientCharset::Unknown) => Some("?".into()),
            None => None,
        }
    }

    #[test]
    fn every_way_of_setting_the_client_character_set() {
        assert_eq!(named("SET NAMES gbk").as_deref(), Some("gbk"));
        assert_eq!(
            named("set names 'latin1' collate latin1_bin").as_deref(),
            Some("latin1")
        );
        assert_eq!(named("SET CHARACTER SET big5").as_deref(), Some("big5"));
        assert_eq!(named("SET CHARSET \"sjis\"").as_deref(), Some("sjis"));
        assert_eq!(
            named("SET character_set_client = latin1").as_deref(),
            Some("latin1")
        );
        assert_eq!(
            named("SET @@session.character_set_client := 'gbk'").as_deref(),
            Some("gbk")
        );
        assert_eq!(
            named("SET autocommit = 1, SESSION character_set_client = binary, sql_mode = ''")
                .as_deref(),
            Some("binary")
        );
        assert_eq!(named("SET NAMES DEFAULT").as_deref(), Some("?"));
        assert_eq!(
            named("SET character_set_client = @cs").as_deref(),
            Some("?")
        );
    }

    #[test]
    fn other_statements_leave_it_alone() {
        assert_eq!(named("SET GLOBAL character_set_client = latin1"), None);
        assert_eq!(named("SET @@global.character_set_client = latin1"), None);
        assert_eq!(named("SET character_set_results = latin1"), None);
        assert_eq!(named("SET sql_mode = 'NAMES'"), None);
        assert_eq!(named("SELECT 'SET NAMES gbk'"), None);
    }
}
