//! Commands on the connection's own state: COM_PING, COM_INIT_DB (and `USE`),
//! COM_SET_OPTION, COM_RESET_CONNECTION and COM_CHANGE_USER. None reaches a backend: held
//! connections follow the session's state when they are next used.

use executor::Flow;
use protocol::constants::com;
use protocol::handshake::ChangeUser;
use protocol::resultset::write_end_of_rows;
use protocol::ServerError;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::error::SessionError;
use crate::handshake::{authenticate, handshake_charset};
use crate::intercept::physical_database;
use crate::session::Session;

/// Runs one of the connection's commands.
pub(super) async fn run<S: AsyncRead + AsyncWrite + Unpin>(
    session: &mut Session<S>,
    command: u8,
    packet: &[u8],
) -> Flow {
    match command {
        com::PING => session.ok().await,
        com::INIT_DB => {
            let db = String::from_utf8_lossy(&packet[1..]).into_owned();
            use_database(session, &db).await
        }
        com::SET_OPTION => set_option(session, packet).await,
        com::RESET_CONNECTION => {
            session.reset_session_state().await;
            session.ok().await
        }
        com::CHANGE_USER => change_user(session, packet).await,
        other => session.error(ServerError::unknown_command(other)).await,
    }
}

/// COM_INIT_DB and `USE db`.
pub(in crate::session) async fn use_database<S: AsyncRead + AsyncWrite + Unpin>(
    session: &mut Session<S>,
    db: &str,
) -> Flow {
    if physical_database(&session.ctx.snapshot.load().rules, db).is_some() {
        // Held connections switch lazily, when they are next used.
        session.exec.state.database = Some(db.to_string());
        session.ok().await
    } else {
        session
            .error(SessionError::UnknownDatabase(db.to_string()))
            .await
    }
}

/// COM_SET_OPTION: multi-statements on or off.
async fn set_option<S: AsyncRead + AsyncWrite + Unpin>(
    session: &mut Session<S>,
    packet: &[u8],
) -> Flow {
    match packet.get(1..3) {
        Some([0, 0]) => session.exec.state.multi_statements = true,
        Some([1, 0]) => session.exec.state.multi_statements = false,
        _ => {
            return session
                .error(ServerError::unknown_command(com::SET_OPTION))
                .await
        }
    }
    let deprecate_eof = session.deprecate_eof();
    write_end_of_rows(
        &mut session.client.packets,
        deprecate_eof,
        0,
        session.exec.reported.status,
    );
    session.flush().await
}

/// COM_CHANGE_USER: authenticates the new user, then the session starts over as after
/// COM_RESET_CONNECTION. As MySQL does, a failed change of user ends the connection.
async fn change_user<S: AsyncRead + AsyncWrite + Unpin>(
    session: &mut Session<S>,
    packet: &[u8],
) -> Flow {
    let request = match ChangeUser::decode(&packet[1..], session.client.capabilities) {
        Ok(r) => r,
        Err(e) => {
            return session
                .error(SessionError::BadHandshake(e.to_string()))
                .await
        }
    };
    let rules = session.ctx.snapshot.load().rules.clone();
    let plugin = request
        .auth_plugin
        .clone()
        .unwrap_or_else(|| protocol::auth::MYSQL_NATIVE_PASSWORD.to_string());
    let verdict = authenticate(
        &mut session.client.packets,
        &rules,
        &request.user,
        &session.host,
        &plugin,
        request.auth_response.clone(),
        &session.nonce,
        session.tls,
    )
    .await;
    if let Err(err) = verdict {
        session.ctx.metrics.auth_failures.inc();
        return session.close_with(&err).await;
    }
    if let Some(db) = &request.database {
        if physical_database(&rules, db).is_none() {
            return session
                .close_with(&SessionError::UnknownDatabase(db.clone()))
                .await;
        }
    }
    let collation = request.collation.unwrap_or(session.handshake_collation);
    let charset = match handshake_charset(collation) {
        Ok(charset) => charset,
        Err(err) => return session.close_with(&err).await,
    };
    session.user = request.user;
    session.entry.set_user(&session.user);
    session.exec.state.database = request.database;
    session.handshake_collation = collation;
    session.handshake_charset = charset;
    session.reset_session_state().await;
    session.ok().await
}
