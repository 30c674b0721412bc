//! The session's side of statements about sessions ([`crate::processes`]): the process list
//! is the proxy's own sessions ([`crate::registry`]), `KILL` acts on them, and none of these
//! reaches a backend as written.

use std::fmt::Write as _;

use protocol::constants::com;
use protocol::response::ResponseKind;
use protocol::resultset::{write_text_result, ColumnDef};
use protocol::ServerError;
use tokio::io::{AsyncRead, AsyncWrite};

use executor::{Flow, PinReason};

use crate::error::SessionError;
use crate::processes::{about_sessions, AboutSessions, Kill, KillTarget};
use crate::registry::{Entry, Shown};
use crate::session::Session;

/// The process list's name of a command, as MariaDB shows it.
pub(in crate::session) fn command_name(command: u8) -> &'static str {
    match command {
        com::QUERY => "Query",
        com::STMT_PREPARE => "Prepare",
        com::STMT_EXECUTE => "Execute",
        com::STMT_BULK_EXECUTE => "Execute",
        com::STMT_FETCH => "Fetch",
        com::STMT_CLOSE => "Close stmt",
        com::STMT_RESET => "Reset stmt",
        com::STMT_SEND_LONG_DATA => "Long Data",
        com::INIT_DB => "Init DB",
        com::FIELD_LIST => "Field List",
        com::PROCESS_INFO => "Processlist",
        com::PROCESS_KILL => "Kill",
        com::CHANGE_USER => "Change user",
        com::RESET_CONNECTION => "Reset connection",
        com::SET_OPTION => "Set option",
        com::STATISTICS => "Statistics",
        com::PING => "Ping",
        com::QUIT => "Quit",
        _ => "Daemon",
    }
}

/// `text` as a utf8mb4 string literal that means the same under any `sql_mode` and holds
/// anything (other sessions' statements are copied into the statement a backend runs).
fn literal(out: &mut String, text: Option<&str>) {
    match text {
        None => out.push_str("NULL"),
        Some(text) => {
            out.push_str("CONVERT(X'");
            for b in text.bytes() {
                let _ = write!(out, "{b:02X}");
            }
            out.push_str("' USING utf8mb4)");
        }
    }
}

/// `text` as a utf8mb4 string literal (see [`literal`]).
pub(in crate::session) fn string_literal(text: &str) -> String {
    let mut out = String::with_capacity(24 + 2 * text.len());
    literal(&mut out, Some(text));
    out
}

/// A query with the columns of MariaDB's `information_schema.PROCESSLIST` holding `rows`.
fn processlist_rows(rows: &[(u32, String, Shown)]) -> String {
    let mut out = String::new();
    for (i, (id, host, shown)) in rows.iter().enumerate() {
        if i > 0 {
            out.push_str(" UNION ALL ");
        }
        let elapsed = shown.since.elapsed();
        let _ = write!(out, "SELECT CAST({id} AS SIGNED) AS ID, ");
        literal(&mut out, Some(&shown.user));
        out.push_str(" AS USER, ");
        literal(&mut out, Some(host));
        out.push_str(" AS HOST, ");
        literal(&mut out, shown.db.as_deref());
        out.push_str(" AS DB, ");
        literal(&mut out, Some(shown.command));
        let _ = write!(
            out,
            " AS COMMAND, CAST({} AS SIGNED) AS TIME, ",
            elapsed.as_secs()
        );
        literal(&mut out, Some(&shown.state));
        out.push_str(" AS STATE, ");
        literal(&mut out, shown.info.as_deref());
        let _ = write!(
            out,
            " AS INFO, CAST({:.3} AS DECIMAL(22,3)) AS TIME_MS, 0 AS STAGE, 0 AS MAX_STAGE, \
             CAST(0 AS DECIMAL(7,3)) AS PROGRESS, 0 AS MEMORY_USED, 0 AS MAX_MEMORY_USED, \
             0 AS EXAMINED_ROWS, CAST(0 AS SIGNED) AS QUERY_ID, CAST(",
            elapsed.as_secs_f64() * 1000.0
        );
        literal(&mut out, shown.info.as_deref());
        let _ = write!(
            out,
            " AS BINARY) AS INFO_BINARY, CAST({id} AS SIGNED) AS TID"
        );
    }
    out
}

/// COM_PROCESS_INFO and COM_PROCESS_KILL.
pub(super) async fn run<S: AsyncRead + AsyncWrite + Unpin>(
    session: &mut Session<S>,
    command: u8,
    packet: &[u8],
) -> Flow {
    match (command, packet.get(1..5)) {
        (com::PROCESS_INFO, _) => show_processlist(session, false).await,
        (com::PROCESS_KILL, Some(&[a, b, c, d])) => {
            let id = u32::from_le_bytes([a, b, c, d]);
            let kill = Kill {
                query_only: false,
                target: KillTarget::Session(id.into()),
            };
            kill_sessions(session, kill).await
        }
        _ => session.error(ServerError::unknown_command(command)).await,
    }
}

/// Answers COM_QUERY text about sessions; `None` when the text is about something else.
pub(super) async fn answer_query<S: AsyncRead + AsyncWrite + Unpin>(
    session: &mut Session<S>,
    text: &str,
) -> Option<Flow> {
    Some(match about_sessions(text)? {
        AboutSessions::Refused(err) => session.error(err).await,
        AboutSessions::Kill(kill) => kill_sessions(session, kill).await,
        AboutSessions::ShowProcessList { full } => show_processlist(session, full).await,
        AboutSessions::ProcessListQuery => return processlist_query(session, text).await,
    })
}

/// Refuses COM_STMT_PREPARE of a statement about sessions; `None` for other statements.
pub(super) async fn refuse_prepare<S: AsyncRead + AsyncWrite + Unpin>(
    session: &mut Session<S>,
    text: &str,
) -> Option<Flow> {
    Some(match about_sessions(text)? {
        AboutSessions::Refused(err) => session.error(err).await,
        _ => session.error(SessionError::NotPreparable).await,
    })
}

/// Whether the rule file gives the session's user the process privilege.
pub(super) fn has_process_privilege<S: AsyncRead + AsyncWrite + Unpin>(
    session: &Session<S>,
) -> bool {
    session
        .ctx
        .snapshot
        .load()
        .rules
        .user(&session.user)
        .is_some_and(|u| u.process)
}

/// The sessions this session may see and kill: all of them with the process privilege,
/// else those of its own user.
fn visible_sessions<S: AsyncRead + AsyncWrite + Unpin>(
    session: &Session<S>,
) -> Vec<(std::sync::Arc<Entry>, Shown)> {
    let all = has_process_privilege(session);
    session
        .ctx
        .sessions
        .all()
        .into_iter()
        .map(|e| {
            let shown = e.shown();
            (e, shown)
        })
        .filter(|(_, shown)| all || shown.user == session.user)
        .collect()
}

/// `SHOW [FULL] PROCESSLIST` and COM_PROCESS_INFO, with MariaDB's columns.
async fn show_processlist<S: AsyncRead + AsyncWrite + Unpin>(
    session: &mut Session<S>,
    full: bool,
) -> Flow {
    let columns = [
        ColumnDef::bigint("Id"),
        ColumnDef::varchar("User", 128),
        ColumnDef::varchar("Host", 64),
        ColumnDef::varchar("db", 64),
        ColumnDef::varchar("Command", 16),
        ColumnDef::bigint("Time"),
        ColumnDef::varchar("State", 64),
        ColumnDef::varchar("Info", if full { 65535 } else { 100 }),
        ColumnDef::varchar("Progress", 7),
    ];
    let rows: Vec<Vec<Option<Vec<u8>>>> = visible_sessions(session)
        .into_iter()
        .map(|(entry, shown)| {
            let info = shown.info.map(|info| {
                let mut info = info.into_bytes();
                if !full {
                    // SHOW PROCESSLIST shows the first 100 characters.
                    let cut = String::from_utf8_lossy(&info)
                        .char_indices()
                        .nth(100)
                        .map_or(info.len(), |(at, _)| at);
                    info.truncate(cut);
                }
                info
            });
            vec![
                Some(entry.id.to_string().into_bytes()),
                Some(shown.user.into_bytes()),
                Some(entry.host.clone().into_bytes()),
                shown.db.map(String::into_bytes),
                Some(shown.command.as_bytes().to_vec()),
                Some(shown.since.elapsed().as_secs().to_string().into_bytes()),
                Some(shown.state.into_bytes()),
                info,
                Some(b"0.000".to_vec()),
            ]
        })
        .collect();
    let deprecate_eof = session.deprecate_eof();
    let status = session.exec.reported.status;
    write_text_result(
        &mut session.client.packets,
        &columns,
        rows,
        deprecate_eof,
        0,
        status,
    );
    session.flush().await
}

/// A statement reading `information_schema.PROCESSLIST`: run on the default data source
/// with the table replaced by the rows of the sessions this session may see. `None`
/// when the statement reads no such table after all (a table of the client's own).
async fn processlist_query<S: AsyncRead + AsyncWrite + Unpin>(
    session: &mut Session<S>,
    text: &str,
) -> Option<Flow> {
    let rows: Vec<(u32, String, Shown)> = visible_sessions(session)
        .into_iter()
        .map(|(entry, shown)| (entry.id, entry.host.clone(), shown))
        .collect();
    let in_information_schema = session
        .exec
        .state
        .database
        .as_deref()
        .is_some_and(|d| d.eq_ignore_ascii_case(sql::INFORMATION_SCHEMA));
    let rewritten =
        match sql::with_processlist_rows(text, &processlist_rows(&rows), in_information_schema) {
            Ok(Some(sql)) => sql,
            Ok(None) => return None,
            Err(e) => {
                return Some(
                    session
                        .error(ServerError::not_supported(format!(
                            "this statement on information_schema.PROCESSLIST ({e})"
                        )))
                        .await,
                )
            }
        };
    let mut packet = Vec::with_capacity(1 + rewritten.len());
    packet.push(com::QUERY);
    packet.extend_from_slice(rewritten.as_bytes());
    Some(session.forward_default(&packet, ResponseKind::Query).await)
}

/// `KILL …` and COM_PROCESS_KILL: on the proxy's sessions only, with MariaDB's
/// permissions (its own user's sessions, any with the process privilege).
async fn kill_sessions<S: AsyncRead + AsyncWrite + Unpin>(
    session: &mut Session<S>,
    kill: Kill,
) -> Flow {
    let targets: Vec<std::sync::Arc<Entry>> = match &kill.target {
        KillTarget::Session(id) => {
            let Some(entry) = session.ctx.sessions.get(*id) else {
                return session.error(SessionError::UnknownThread(*id)).await;
            };
            if entry.user() != session.user && !has_process_privilege(session) {
                return session.error(SessionError::NotOwner(*id)).await;
            }
            vec![entry]
        }
        KillTarget::User(user) => {
            if *user != session.user && !has_process_privilege(session) {
                return session.error(SessionError::ProcessPrivilegeNeeded).await;
            }
            session
                .ctx
                .sessions
                .all()
                .into_iter()
                .filter(|e| e.id != session.connection_id && e.user() == *user)
                .collect()
        }
    };
    for target in targets {
        if target.id == session.connection_id {
            // This session runs nothing else now; killing its connection ends it after
            // the answer.
            if !kill.query_only {
                target.kill(true).await;
            }
            continue;
        }
        let interrupted = target.kill(!kill.query_only).await;
        session
            .ctx
            .metrics
            .backend_cancelled(executor::CancelReason::Kill, interrupted);
    }
    session.ok().await
}

/// What the process list shows of an idle session.
pub(in crate::session) fn idle_state<S: AsyncRead + AsyncWrite + Unpin>(
    session: &Session<S>,
) -> String {
    let mut state = String::new();
    if session.exec.transaction_open() {
        state.push_str("in transaction");
    }
    let pinned: Vec<&str> = PinReason::ALL
        .iter()
        .filter(|r| **r != PinReason::Transaction && session.exec.pins() & r.bit() != 0)
        .map(|r| r.label())
        .collect();
    if !pinned.is_empty() {
        if !state.is_empty() {
            state.push_str("; ");
        }
        let _ = write!(state, "pinned: {}", pinned.join(", "));
    }
    state
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_hold_anything() {
        let mut out = String::new();
        literal(&mut out, Some("a'\\b"));
        assert_eq!(out, "CONVERT(X'61275C62' USING utf8mb4)");
        out.clear();
        literal(&mut out, None);
        assert_eq!(out, "NULL");
    }
}
