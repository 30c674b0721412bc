//! The connection phase on the client side: greeting, optional TLS upgrade, authentication of
//! a proxy user from the rule file, and the initial database. Proxy users' passwords never
//! reach a backend; backends see dbmesh's own credentials.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use protocol::auth::{
    self, AUTH_MORE_DATA, CACHING_SHA2_PASSWORD, FAST_AUTH_SUCCESS, MYSQL_NATIVE_PASSWORD,
    PERFORM_FULL_AUTHENTICATION,
};
use protocol::constants::{
    caps, extended_caps, set_names_for_collation, status, UTF8MB4_GENERAL_CI,
};
use protocol::framing::PacketConn;
use protocol::handshake::{encode_auth_switch, Greeting, HandshakeResponse};
use protocol::packets::OkPacket;
use protocol::text::Charset;
use protocol::{ClientError, ProtocolError, ServerError};
use rules::{AuthPlugin, Rules};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::error::SessionError;
use crate::logins::{Cut, LoginTicket};
use crate::registry::Entry;
use crate::session::Session;
use crate::tls::Rewind;
use crate::watch::ClientWatch;
use crate::Context;

/// Capabilities dbmesh offers clients (SSL is added when a certificate is configured).
/// `CLIENT_MYSQL` (bit 0) is off, as on MariaDB, so that MariaDB connectors read
/// [`EXTENDED_CAPS`].
pub(crate) const SERVER_CAPS: u32 = caps::FOUND_ROWS
    | caps::LONG_FLAG
    | caps::CONNECT_WITH_DB
    | caps::IGNORE_SPACE
    | caps::PROTOCOL_41
    | caps::INTERACTIVE
    | caps::IGNORE_SIGPIPE
    | caps::TRANSACTIONS
    | caps::RESERVED
    | caps::SECURE_CONNECTION
    | caps::MULTI_STATEMENTS
    | caps::MULTI_RESULTS
    | caps::PS_MULTI_RESULTS
    | caps::PLUGIN_AUTH
    | caps::CONNECT_ATTRS
    | caps::PLUGIN_AUTH_LENENC_CLIENT_DATA
    | caps::DEPRECATE_EOF;

/// MariaDB's extended capabilities dbmesh offers: COM_STMT_BULK_EXECUTE
/// (`session::bulk`), which MariaDB connectors' batch APIs use.
const EXTENDED_CAPS: u32 = extended_caps::STMT_BULK_OPERATIONS;

/// Login packets are small; anything larger is an attack or garbage.
const LOGIN_PACKET_LIMIT: usize = 64 * 1024;

/// Answers a client that arrives when every session slot is taken with 1040 instead of a
/// greeting (before the greeting) or instead of the login's OK (after it), as MySQL does.
pub(crate) async fn refuse_too_many<S: AsyncRead + AsyncWrite + Unpin>(mut conn: PacketConn<S>) {
    let err = SessionError::TooManyConnections.to_server_error();
    conn.write_with(|b| err.encode(b));
    conn.shutdown().await;
}

/// What a successful login established.
pub(crate) struct Login {
    pub user: String,
    pub capabilities: u32,
    pub collation: u8,
    /// How the client's statements are read, from `collation`.
    pub charset: Charset,
    pub database: Option<String>,
    pub nonce: [u8; 20],
    pub tls: bool,
}

/// A client's packets, with MySQL's `net_write_timeout` on what is sent to it: a client
/// that stops reading fails the write, and whatever it was being sent (a backend's result)
/// is abandoned as for a client that left.
fn client_packets<S: AsyncRead + AsyncWrite + Unpin>(stream: S, ctx: &Context) -> PacketConn<S> {
    let mut conn = PacketConn::new(stream);
    let timeout = ctx.snapshot.load().rules.proxy.net_write_timeout_ms;
    conn.set_write_timeout(Some(Duration::from_millis(timeout)));
    conn
}

/// Logs a client in and runs its session. Every step of the login (greeting, TLS, every
/// authentication round trip, the final OK) runs under `ticket`: one deadline for the whole
/// login, and closed early when newer logins need the place.
pub(crate) async fn accept(
    stream: TcpStream,
    peer: SocketAddr,
    entry: Arc<Entry>,
    ticket: LoginTicket,
    ctx: &Arc<Context>,
) {
    let nonce = auth::new_nonce();
    let watch = ClientWatch::new(&stream);
    let mut conn = client_packets(stream, ctx);
    let mut offered = SERVER_CAPS;
    if ctx.tls.is_some() {
        offered |= caps::SSL;
    }
    let greeting = Greeting {
        server_version: ctx.server_version.clone(),
        connection_id: entry.id,
        nonce: nonce.to_vec(),
        capabilities: offered,
        collation: UTF8MB4_GENERAL_CI,
        status: status::AUTOCOMMIT,
        auth_plugin: MYSQL_NATIVE_PASSWORD.to_string(),
        extended_capabilities: EXTENDED_CAPS,
    };
    conn.write_with(|b| greeting.encode(b));
    let Some(first) = step(&ticket, peer, ctx, read_login_packet(&mut conn)).await else {
        return;
    };
    let first = match first {
        Ok(p) => p,
        Err(e) => return refuse(conn, e.to_server_error(), ctx).await,
    };
    let response = match HandshakeResponse::decode(&first) {
        Ok(r) => r,
        Err(e) => return refuse(conn, bad_handshake(e), ctx).await,
    };
    if response.ssl_request {
        let Some(acceptor) = ctx.tls.clone() else {
            return refuse(
                conn,
                bad_handshake(ProtocolError::Tls("TLS is not configured".into())),
                ctx,
            )
            .await;
        };
        let seq = conn.seq();
        let (tcp, buffered) = conn.into_parts();
        let upgrade = acceptor.accept(Rewind::new(tcp, buffered));
        let tls = match step(&ticket, peer, ctx, upgrade).await {
            Some(Ok(s)) => s,
            Some(Err(e)) => {
                tracing::debug!(%peer, error = %e, "TLS handshake failed");
                return;
            }
            None => return,
        };
        let mut conn = client_packets(tls, ctx);
        conn.set_seq(seq);
        let Some(packet) = step(&ticket, peer, ctx, read_login_packet(&mut conn)).await else {
            return;
        };
        let packet = match packet {
            Ok(p) => p,
            Err(e) => return refuse(conn, e.to_server_error(), ctx).await,
        };
        let response = match HandshakeResponse::decode(&packet) {
            Ok(r) => r,
            Err(e) => return refuse(conn, bad_handshake(e), ctx).await,
        };
        finish(conn, watch, response, nonce, true, peer, entry, ticket, ctx).await;
    } else {
        let require_tls = ctx
            .snapshot
            .load()
            .rules
            .proxy
            .tls
            .as_ref()
            .is_some_and(|t| t.require);
        if require_tls {
            let err = SessionError::InsecureTransport.to_server_error();
            return refuse(conn, err, ctx).await;
        }
        finish(
            conn, watch, response, nonce, false, peer, entry, ticket, ctx,
        )
        .await;
    }
}

/// Sends what is buffered and reads the client's next login packet.
async fn read_login_packet<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut PacketConn<S>,
) -> Result<BytesMut, ProtocolError> {
    conn.flush().await?;
    conn.read_packet(LOGIN_PACKET_LIMIT).await
}

/// Runs one login step under `ticket`; `None` (the connection is to be closed without a
/// word, as MySQL does on its connect timeout) when the login was cut short.
async fn step<T>(
    ticket: &LoginTicket,
    peer: SocketAddr,
    ctx: &Context,
    work: impl std::future::Future<Output = T>,
) -> Option<T> {
    match ticket.bound(work).await {
        Ok(done) => Some(done),
        Err(cut) => {
            match cut {
                Cut::TimedOut => ctx.metrics.client_logins_timed_out.inc(),
                Cut::Evicted => ctx.metrics.client_logins_evicted.inc(),
            }
            tracing::debug!(%peer, ?cut, "login cut short");
            None
        }
    }
}

fn bad_handshake(e: ProtocolError) -> ServerError {
    SessionError::BadHandshake(e.to_string()).to_server_error()
}

async fn refuse<S: AsyncRead + AsyncWrite + Unpin>(
    mut conn: PacketConn<S>,
    err: ServerError,
    ctx: &Context,
) {
    ctx.metrics.error(err.code);
    conn.write_with(|b| err.encode(b));
    conn.shutdown().await;
}

#[allow(clippy::too_many_arguments)]
async fn finish<S: AsyncRead + AsyncWrite + Unpin>(
    mut conn: PacketConn<S>,
    watch: ClientWatch,
    response: HandshakeResponse,
    nonce: [u8; 20],
    tls: bool,
    peer: SocketAddr,
    entry: Arc<Entry>,
    ticket: LoginTicket,
    ctx: &Arc<Context>,
) {
    let rules = ctx.snapshot.load().rules.clone();
    let host = peer.ip().to_string();
    let client_plugin = response
        .auth_plugin
        .clone()
        .unwrap_or_else(|| MYSQL_NATIVE_PASSWORD.to_string());
    let login = step(
        &ticket,
        peer,
        ctx,
        authenticate(
            &mut conn,
            &rules,
            &response.user,
            &host,
            &client_plugin,
            response.auth_response.clone(),
            &nonce,
            tls,
        ),
    )
    .await;
    match login {
        Some(Ok(())) => {}
        Some(Err(err)) => {
            ctx.metrics.auth_failures.inc();
            return refuse(conn, err, ctx).await;
        }
        None => return,
    }
    let database = match &response.database {
        Some(db) => match crate::intercept::physical_database(&rules, db) {
            Some(_) => Some(db.clone()),
            None => return refuse(conn, unknown_database(db), ctx).await,
        },
        None => None,
    };
    let charset = match handshake_charset(response.collation) {
        Ok(charset) => charset,
        Err(err) => return refuse(conn, err, ctx).await,
    };
    let Ok(_slot) = ctx.connection_slots.clone().try_acquire_owned() else {
        ctx.metrics.client_connections_rejected.inc();
        return refuse_too_many(conn).await;
    };
    let ok = OkPacket {
        status: status::AUTOCOMMIT,
        ..OkPacket::default()
    };
    conn.write_with(|b| ok.encode(0, b));
    if !matches!(step(&ticket, peer, ctx, conn.flush()).await, Some(Ok(()))) {
        return;
    }
    drop(ticket);
    let login = Login {
        user: response.user,
        capabilities: response.capabilities & (SERVER_CAPS | caps::SSL),
        collation: response.collation,
        charset,
        database,
        nonce,
        tls,
    };
    tracing::debug!(%peer, connection_id = entry.id, user = %login.user, "client logged in");
    Session::new(conn, login, entry, host, ctx.clone())
        .run(watch)
        .await;
}

/// How the proxy reads statements sent in the character set `name`: an error naming a
/// character set it cannot lex safely, rather than a guess.
pub(crate) fn lexing(name: &str) -> Result<Charset, ServerError> {
    Charset::named(name).ok_or_else(|| {
        ServerError::not_supported(format_args!(
            "statements in the character set {name}, which dbmesh cannot read safely"
        ))
    })
}

/// How the statements of a client that announced `collation` are read.
pub(crate) fn handshake_charset(collation: u8) -> Result<Charset, ServerError> {
    let set_names = set_names_for_collation(collation);
    lexing(set_names.split(' ').next().unwrap_or(set_names))
}

pub(crate) fn unknown_database(db: &str) -> ServerError {
    SessionError::UnknownDatabase(db.to_string()).to_server_error()
}

pub(crate) fn access_denied(user: &str, host: &str, with_password: bool) -> ServerError {
    SessionError::AccessDenied {
        user: user.to_string(),
        host: host.to_string(),
        with_password,
    }
    .to_server_error()
}

/// Checks a client's credentials, switching plugin or asking for more data as needed. Used at
/// login and for COM_CHANGE_USER.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn authenticate<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut PacketConn<S>,
    rules: &Rules,
    user: &str,
    host: &str,
    client_plugin: &str,
    mut token: Vec<u8>,
    nonce: &[u8; 20],
    tls: bool,
) -> Result<(), ServerError> {
    let Some(account) = rules.users.iter().find(|u| u.name == user) else {
        return Err(access_denied(user, host, !token.is_empty()));
    };
    let wanted = match account.auth_plugin {
        Some(AuthPlugin::MysqlNativePassword) => MYSQL_NATIVE_PASSWORD,
        Some(AuthPlugin::CachingSha2Password) => CACHING_SHA2_PASSWORD,
        None if client_plugin == CACHING_SHA2_PASSWORD => CACHING_SHA2_PASSWORD,
        None => MYSQL_NATIVE_PASSWORD,
    };
    let mut nonce = *nonce;
    if client_plugin != wanted {
        nonce = auth::new_nonce();
        conn.write_with(|b| encode_auth_switch(wanted, &nonce, b));
        token = exchange(conn).await?;
    }
    let password = account.password.as_bytes();
    let denied = || access_denied(user, host, !token.is_empty() || !password.is_empty());
    if wanted == MYSQL_NATIVE_PASSWORD {
        let expected = auth::native_password_scramble(password, &nonce);
        return if auth::constant_time_eq(&token, &expected) {
            Ok(())
        } else {
            Err(denied())
        };
    }
    // caching_sha2_password. An empty password is answered with OK straight away.
    if password.is_empty() && token.is_empty() {
        return Ok(());
    }
    if tls {
        // Over TLS, behave like a server whose cache is cold: ask for the password itself.
        conn.write_with(|b| b.extend_from_slice(&[AUTH_MORE_DATA, PERFORM_FULL_AUTHENTICATION]));
        let mut clear = exchange(conn).await?;
        if clear.last() == Some(&0) {
            clear.pop();
        }
        return if auth::constant_time_eq(&clear, password) {
            Ok(())
        } else {
            Err(denied())
        };
    }
    let expected = auth::caching_sha2_scramble(password, &nonce);
    if auth::constant_time_eq(&token, &expected) {
        conn.write_with(|b| b.extend_from_slice(&[AUTH_MORE_DATA, FAST_AUTH_SUCCESS]));
        Ok(())
    } else {
        Err(denied())
    }
}

/// Sends what is buffered and reads the client's next auth packet.
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut PacketConn<S>,
) -> Result<Vec<u8>, ServerError> {
    conn.flush().await.map_err(|e| e.to_server_error())?;
    let packet: BytesMut = conn
        .read_packet(LOGIN_PACKET_LIMIT)
        .await
        .map_err(|e| e.to_server_error())?;
    Ok(packet.to_vec())
}
