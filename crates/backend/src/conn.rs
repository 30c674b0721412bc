//! One connection from dbmesh to a backend server, playing the client role of the protocol.

use std::collections::HashMap;
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use protocol::auth::{self, AUTH_MORE_DATA, FAST_AUTH_SUCCESS, PERFORM_FULL_AUTHENTICATION};
use protocol::buf::Reader;
use protocol::constants::{caps, com, status};
use protocol::framing::PacketConn;
use protocol::handshake::{decode_auth_switch, Greeting, HandshakeResponse};
use protocol::packets::{is_err, is_terminator, OkPacket, EOF_HEADER, ERR_HEADER, OK_HEADER};
use protocol::resultset::ColumnDef;
use protocol::{ProtocolError, ServerError};
use rules::{BackendTls, DataSourceConfig};

use crate::stream::{BackendStream, Tls};
use crate::BackendError;

/// Capabilities dbmesh asks of every backend. DEPRECATE_EOF is always on: the relay
/// translates for clients that lack it. LOCAL_FILES is never on.
const BACKEND_CAPS: u32 = caps::LONG_PASSWORD
    | caps::LONG_FLAG
    | caps::PROTOCOL_41
    | caps::TRANSACTIONS
    | caps::SECURE_CONNECTION
    | caps::MULTI_STATEMENTS
    | caps::MULTI_RESULTS
    | caps::PS_MULTI_RESULTS
    | caps::PLUGIN_AUTH
    | caps::PLUGIN_AUTH_LENENC_CLIENT_DATA
    | caps::DEPRECATE_EOF;

/// Where and how to connect.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// The data source's name, for messages.
    pub source_name: String,
    pub address: String,
    pub user: String,
    pub password: String,
    /// The database selected at connect time.
    pub database: Option<String>,
    /// CLIENT_FOUND_ROWS: affected rows count matched rather than changed rows. It cannot be
    /// changed after connecting, so pools keep connections of both kinds apart.
    pub found_rows: bool,
    /// How long the TCP connect may take.
    pub connect_timeout: Duration,
    /// How long the greeting and login may take once connected (a server that accepts
    /// and never answers costs this much).
    pub handshake_timeout: Duration,
    /// Whether and how the connection is encrypted.
    pub tls: Tls,
    /// How long the server may stay silent while a response is awaited before a new
    /// connection checks that it is alive (see [`crate::stream`]).
    pub read_timeout: Duration,
    /// TCP keepalive idle time and probe interval; `None` leaves keepalive off.
    pub keepalive: Option<Duration>,
    /// The server-side limit on each statement's run time, if any.
    pub statement_timeout: Option<Duration>,
}

impl ConnectOptions {
    /// A plaintext login to `address` with the rule file's default limits (5 s to connect and
    /// to log in, 30 s of silence, no keepalive, no statement limit): for tools and tests that
    /// reach a server outside any data source's configuration.
    pub fn plaintext(
        source_name: &str,
        address: &str,
        user: &str,
        password: &str,
        database: Option<&str>,
    ) -> ConnectOptions {
        ConnectOptions {
            source_name: source_name.to_owned(),
            address: address.to_owned(),
            user: user.to_owned(),
            password: password.to_owned(),
            database: database.map(str::to_owned),
            found_rows: false,
            connect_timeout: Duration::from_secs(5),
            handshake_timeout: Duration::from_secs(5),
            tls: Tls::Disabled,
            read_timeout: Duration::from_secs(30),
            keepalive: None,
            statement_timeout: None,
        }
    }

    /// How dbmesh reaches the primary of data source `name`: its login, limits and TLS,
    /// with no database selected (each session selects the physical database it needs).
    pub fn for_data_source(name: &str, ds: &DataSourceConfig) -> ConnectOptions {
        let millis = Duration::from_millis;
        ConnectOptions {
            source_name: name.to_string(),
            address: ds.address.clone(),
            user: ds.user.clone(),
            password: ds.password.clone(),
            database: None,
            found_rows: false,
            connect_timeout: millis(ds.pool.connect_timeout_ms),
            handshake_timeout: millis(ds.pool.handshake_timeout_ms),
            tls: tls_for(ds),
            read_timeout: millis(ds.pool.read_timeout_ms),
            keepalive: (ds.pool.keepalive_secs > 0)
                .then(|| Duration::from_secs(ds.pool.keepalive_secs)),
            statement_timeout: (ds.pool.statement_timeout_ms > 0)
                .then(|| millis(ds.pool.statement_timeout_ms)),
        }
    }
}

/// The TLS a data source asks for; a CA file that cannot be read makes every connection
/// fail (naming the file) rather than quietly go unencrypted.
fn tls_for(ds: &DataSourceConfig) -> Tls {
    match ds.tls {
        BackendTls::Disabled => Tls::Disabled,
        BackendTls::Preferred => Tls::preferred(),
        BackendTls::Required => Tls::required(),
        BackendTls::VerifyIdentity => {
            let Some(path) = &ds.tls_ca else {
                return Tls::Unusable("tls = \"verify_identity\" without tls_ca".into());
            };
            match std::fs::read(path) {
                Ok(pem) => Tls::verify_identity(&pem, &path.display().to_string()),
                Err(e) => Tls::Unusable(format!("{}: {e}", path.display())),
            }
        }
    }
}

/// The session state a client expects its backend connection to carry. Cheap to compare.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionState {
    /// Physical database to be current, if any.
    pub database: Option<String>,
    /// `SET NAMES` arguments, from the client's handshake collation or its own SET NAMES.
    pub charset: &'static str,
    pub multi_statements: bool,
}

/// The state a borrower wants a connection in, borrowed from the borrower: comparing it costs
/// no copy, and the connection copies only what it changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WantedState<'a> {
    pub database: Option<&'a str>,
    pub charset: &'static str,
    pub multi_statements: bool,
}

/// Statements a connection keeps prepared for whichever sessions borrow it. Past this many, the
/// cache is emptied (the statements closed) before the next prepare, so a pool of `max`
/// connections keeps at most `max` × this many statements on the server, whose own limit
/// (`max_prepared_stmt_count`, 16382 by default) is global.
const MAX_PREPARED: usize = 128;

/// `text` as a string literal in a statement dbmesh sends itself: quotes, backslashes and
/// NULs escaped, for a session whose sql_mode lacks NO_BACKSLASH_ESCAPES (which would take
/// the backslashes literally).
pub fn quote_literal(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('\'');
    for c in text.chars() {
        match c {
            '\'' => out.push_str("''"),
            '\\' => out.push_str("\\\\"),
            '\0' => out.push_str("\\0"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// Records a session statement (`SET …`) in an ordered list of those in force: a repeated
/// statement moves to the end, since the last one run decides the value. Sessions and
/// connections record with the same rule, so a connection carries exactly a session's
/// settings when the two lists are equal.
pub fn record_setting(settings: &mut Vec<String>, statement: &str) {
    settings.retain(|s| s != statement);
    settings.push(statement.to_string());
}

/// An authenticated backend connection plus what it is known to carry.
pub struct BackendConn {
    pub(crate) conn: PacketConn<BackendStream>,
    options_source: String,
    pub server_version: String,
    pub connection_id: u32,
    /// Status flags of the last OK/EOF this connection sent.
    pub status: u16,
    pub found_rows: bool,
    /// The worker event loop whose thread opened this connection (see `pool::set_worker`).
    pub worker: usize,
    state: SessionState,
    /// False after COM_RESET_CONNECTION: the server's defaults are not tracked, so the next
    /// `sync_state` applies everything.
    state_known: bool,
    /// Session statements run on this connection since it was opened or reset, in the order
    /// of [`record_setting`].
    settings: Vec<String>,
    /// Statements prepared on this connection: physical SQL → the server's statement id. It
    /// stays with the connection, so any session that borrows it reuses them.
    prepared: HashMap<String, u32>,
    /// The `SET` that puts the data source's statement timeout in force; run at connect and
    /// again after each COM_RESET_CONNECTION (which drops it).
    statement_timeout: Option<String>,
}

impl BackendConn {
    pub async fn connect(options: &ConnectOptions) -> Result<BackendConn, BackendError> {
        let unreachable = |reason: String| BackendError::Unreachable {
            source_name: options.source_name.clone(),
            reason,
        };
        let stream = BackendStream::connect(options).await.map_err(unreachable)?;
        let handshake = Self::handshake(PacketConn::new(stream), options);
        let mut conn = tokio::time::timeout(options.handshake_timeout, handshake)
            .await
            .map_err(|_| {
                unreachable(format!(
                    "handshake timed out after {:?}",
                    options.handshake_timeout
                ))
            })??;
        conn.state.database = options.database.clone();
        // The probe only asks whether the server answers; it runs no statement.
        let mut probe = options.clone();
        probe.statement_timeout = None;
        conn.conn
            .stream_mut()
            .watch_silence(options.read_timeout, probe);
        if let Some(limit) = options.statement_timeout {
            let set = statement_timeout_setting(&conn.server_version, limit);
            conn.query(&set).await?;
            conn.statement_timeout = Some(set);
        }
        Ok(conn)
    }

    async fn handshake(
        mut conn: PacketConn<BackendStream>,
        options: &ConnectOptions,
    ) -> Result<BackendConn, BackendError> {
        let lost = |error: ProtocolError| BackendError::Lost {
            source_name: options.source_name.clone(),
            error,
        };
        let greeting_payload = conn.read_packet(1 << 16).await.map_err(lost)?;
        if is_err(&greeting_payload) {
            let error = ServerError::decode(&greeting_payload).map_err(lost)?;
            return Err(BackendError::AuthFailed {
                source_name: options.source_name.clone(),
                error,
            });
        }
        let greeting = Greeting::decode(&greeting_payload).map_err(lost)?;
        let mut capabilities = BACKEND_CAPS & greeting.capabilities;
        if options.found_rows {
            capabilities |= caps::FOUND_ROWS;
        }
        if options.database.is_some() {
            capabilities |= caps::CONNECT_WITH_DB & greeting.capabilities;
        }
        let tls_failed = |reason: String| BackendError::Tls {
            source_name: options.source_name.clone(),
            reason,
        };
        let offers_tls = greeting.capabilities & caps::SSL != 0;
        let tls_config = match &options.tls {
            Tls::Disabled => None,
            Tls::Preferred(config) => offers_tls.then_some(config),
            Tls::Required(_) if !offers_tls => {
                return Err(tls_failed(
                    "the server does not offer TLS (it has no certificate configured), and \
                     the data source's tls setting requires it"
                        .into(),
                ))
            }
            Tls::Required(config) => Some(config),
            Tls::Unusable(reason) => return Err(tls_failed(reason.clone())),
        };
        if let Some(config) = tls_config {
            // SSLRequest: the start of the handshake response, then TLS from the next byte.
            capabilities |= caps::SSL;
            let request = HandshakeResponse {
                capabilities,
                max_packet: 1 << 30,
                collation: protocol::constants::UTF8MB4_GENERAL_CI,
                ssl_request: true,
                ..HandshakeResponse::default()
            };
            let mut payload = BytesMut::new();
            request.encode(&mut payload);
            conn.write_packet(&payload);
            conn.flush().await.map_err(lost)?;
            let seq = conn.seq();
            let (stream, unread) = conn.into_parts();
            let stream = stream
                .upgrade(config.clone(), &options.address)
                .await
                .map_err(tls_failed)?;
            conn = PacketConn::with_buffered(stream, unread);
            conn.set_seq(seq);
        }
        let mut plugin = if greeting.auth_plugin.is_empty() {
            auth::MYSQL_NATIVE_PASSWORD.to_string()
        } else {
            greeting.auth_plugin.clone()
        };
        let mut nonce = greeting.nonce.clone();
        let auth_response =
            auth::scramble(&plugin, options.password.as_bytes(), &nonce).unwrap_or_default();
        let response = HandshakeResponse {
            capabilities,
            max_packet: 1 << 30,
            collation: protocol::constants::UTF8MB4_GENERAL_CI,
            user: options.user.clone(),
            auth_response,
            database: options.database.clone(),
            auth_plugin: Some(plugin.clone()),
            attributes: Vec::new(),
            ssl_request: false,
            extended_capabilities: 0,
        };
        let mut payload = BytesMut::new();
        response.encode(&mut payload);
        conn.write_packet(&payload);
        conn.flush().await.map_err(lost)?;

        loop {
            let packet = conn.read_packet(1 << 16).await.map_err(lost)?;
            match packet.first().copied() {
                Some(OK_HEADER) => {
                    let ok = OkPacket::decode(&packet).map_err(lost)?;
                    return Ok(BackendConn {
                        conn,
                        options_source: options.source_name.clone(),
                        server_version: greeting.server_version,
                        connection_id: greeting.connection_id,
                        status: ok.status,
                        found_rows: options.found_rows,
                        worker: 0,
                        state: SessionState {
                            database: None,
                            charset: "utf8mb4",
                            multi_statements: true,
                        },
                        state_known: true,
                        settings: Vec::new(),
                        prepared: HashMap::new(),
                        statement_timeout: None,
                    });
                }
                Some(ERR_HEADER) => {
                    let error = ServerError::decode(&packet).map_err(lost)?;
                    return Err(BackendError::AuthFailed {
                        source_name: options.source_name.clone(),
                        error,
                    });
                }
                Some(0xfe) => {
                    (plugin, nonce) = decode_auth_switch(&packet).map_err(lost)?;
                    let answer = auth::scramble(&plugin, options.password.as_bytes(), &nonce)
                        .ok_or_else(|| BackendError::AuthFailed {
                            source_name: options.source_name.clone(),
                            error: ServerError::new(
                                1251,
                                "08004",
                                format!("dbmesh cannot authenticate with plugin '{plugin}'"),
                            ),
                        })?;
                    conn.write_packet(&answer);
                    conn.flush().await.map_err(lost)?;
                }
                Some(AUTH_MORE_DATA) if packet.get(1) == Some(&FAST_AUTH_SUCCESS) => {}
                Some(AUTH_MORE_DATA)
                    if packet.get(1) == Some(&PERFORM_FULL_AUTHENTICATION)
                        && conn.stream().is_encrypted() =>
                {
                    // caching_sha2_password over TLS: the password itself, as MySQL's
                    // clients send it there.
                    let mut clear = options.password.as_bytes().to_vec();
                    clear.push(0);
                    conn.write_packet(&clear);
                    conn.flush().await.map_err(lost)?;
                }
                Some(AUTH_MORE_DATA) if packet.get(1) == Some(&PERFORM_FULL_AUTHENTICATION) => {
                    return Err(BackendError::AuthFailed {
                        source_name: options.source_name.clone(),
                        error: ServerError::new(
                            1251,
                            "08004",
                            "caching_sha2_password full authentication needs TLS or RSA: set the data source's tls to \"required\" or \"verify_identity\", log in once with another client to warm the server's cache, or use mysql_native_password for dbmesh's backend user",
                        ),
                    });
                }
                _ => {
                    return Err(lost(ProtocolError::Malformed(
                        "unexpected packet during login",
                    )))
                }
            }
        }
    }

    pub fn source_name(&self) -> &str {
        &self.options_source
    }

    pub fn state(&self) -> &SessionState {
        &self.state
    }

    pub fn in_transaction(&self) -> bool {
        self.status & status::IN_TRANS != 0
    }

    /// Whether an idle connection is known to be unusable: the server closed it (it was
    /// killed, restarted, or timed the connection out) or sent something nobody asked for
    /// (a shutdown notice). Costs no system call unless the socket has signalled readability.
    pub fn peer_closed(&self) -> bool {
        self.conn.has_unread() || self.conn.stream().peer_closed()
    }

    /// The framed connection, for relaying a response.
    pub fn packets(&mut self) -> &mut PacketConn<BackendStream> {
        &mut self.conn
    }

    fn lost(&self, error: ProtocolError) -> BackendError {
        BackendError::Lost {
            source_name: self.options_source.clone(),
            error,
        }
    }

    /// The error an ERR packet from the server carries (a malformed one: the connection is
    /// lost).
    fn server_error(&self, packet: &[u8]) -> BackendError {
        match ServerError::decode(packet) {
            Ok(error) => BackendError::Server {
                source_name: self.options_source.clone(),
                error,
            },
            Err(e) => self.lost(e),
        }
    }

    /// Sends one command packet (sequence id 0).
    pub async fn send_command(&mut self, payload: &[u8]) -> Result<(), BackendError> {
        self.conn.set_seq(0);
        self.conn.write_packet(payload);
        self.conn.flush().await.map_err(|e| self.lost(e))
    }

    /// Sends a command built in place (sequence id 0), e.g. a COM_QUERY with the SQL appended.
    pub async fn send_command_with(
        &mut self,
        build: impl FnOnce(&mut BytesMut),
    ) -> Result<(), BackendError> {
        self.conn.set_seq(0);
        self.conn.write_with(build);
        self.conn.flush().await.map_err(|e| self.lost(e))
    }

    /// Sends statements as one COM_QUERY each, in a single write: the server answers them in
    /// order, and the round trip is shared. (Unlike one multi-statement text, each runs even
    /// when an earlier one failed, and no `CLIENT_MULTI_STATEMENTS` is needed.)
    pub async fn send_queries(&mut self, sqls: &[String]) -> Result<(), BackendError> {
        for sql in sqls {
            self.conn.set_seq(0);
            self.conn.write_with(|b| {
                b.put_u8(com::QUERY);
                b.put_slice(&protocol::text::encode(sql));
            });
        }
        self.conn.flush().await.map_err(|e| self.lost(e))
    }

    /// Reads one OK or ERR answer and nothing after it: the first result of a
    /// multi-statement text whose later results the caller reads (or relays) itself.
    pub async fn read_ok(&mut self) -> Result<OkPacket, BackendError> {
        let packet = self.read_one().await?;
        if is_err(&packet) {
            return Err(self.server_error(&packet));
        }
        if packet.first() != Some(&OK_HEADER) {
            return Err(self.lost(ProtocolError::Malformed("expected an OK or ERR answer")));
        }
        let ok = OkPacket::decode(&packet).map_err(|e| self.lost(e))?;
        self.status = ok.status;
        Ok(ok)
    }

    /// Runs a statement whose result the proxy consumes itself; returns the final OK, or the
    /// server's error as `BackendError::Server`. Result-set rows are returned as text. `sql`
    /// is statement text as `protocol::text::decode` makes it: it goes out as the client's bytes.
    pub async fn query(&mut self, sql: &str) -> Result<QueryResult, BackendError> {
        self.send_command_with(|b| {
            b.put_u8(com::QUERY);
            b.put_slice(&protocol::text::encode(sql));
        })
        .await?;
        self.read_query_result().await
    }

    /// Reads the response to a COM_QUERY, collecting rows as text (for small internal results).
    pub async fn read_query_result(&mut self) -> Result<QueryResult, BackendError> {
        let mut columns = Vec::new();
        let mut rows = Vec::new();
        let ok = self
            .read_response(
                |defs| columns = defs.into_iter().map(|c| c.name).collect(),
                |row, n| {
                    rows.push(decode_text_row(row, n)?);
                    Ok(())
                },
            )
            .await?;
        Ok(QueryResult { ok, columns, rows })
    }

    /// Runs a query whose rows the proxy needs byte for byte with their column definitions;
    /// rows past `limit` bytes (cells counted) are read and dropped, and `exceeded` is set.
    pub async fn query_raw(&mut self, sql: &str, limit: usize) -> Result<RawResult, BackendError> {
        self.send_command_with(|b| {
            b.put_u8(com::QUERY);
            b.put_slice(&protocol::text::encode(sql));
        })
        .await?;
        let mut result = RawResult::default();
        let mut bytes = 0usize;
        let mut exceeded = false;
        let mut columns = Vec::new();
        let mut rows = Vec::new();
        result.ok = self
            .read_response(
                |defs| columns = defs,
                |row, n| {
                    bytes = bytes.saturating_add(row.len());
                    if bytes > limit {
                        exceeded = true;
                        return Ok(());
                    }
                    let mut r = Reader::new(row);
                    let cells = (0..n)
                        .map(|_| Ok(r.lenenc_bytes_or_null()?.map(<[u8]>::to_vec)))
                        .collect::<Result<Vec<_>, ProtocolError>>()?;
                    rows.push(cells);
                    Ok(())
                },
            )
            .await?;
        result.columns = columns;
        result.rows = rows;
        result.exceeded = exceeded;
        Ok(result)
    }

    /// Reads a response: each result set's column definitions go to `on_columns`, its row
    /// packets to `on_row` (with the column count); returns the final OK, or the server's
    /// error as `BackendError::Server`.
    async fn read_response(
        &mut self,
        mut on_columns: impl FnMut(Vec<ColumnDef>),
        mut on_row: impl FnMut(&[u8], u64) -> Result<(), ProtocolError>,
    ) -> Result<OkPacket, BackendError> {
        let mut last;
        loop {
            let packet = self.read_one().await?;
            match packet.first().copied() {
                // Some commands (COM_RESET_CONNECTION on MariaDB) answer with an OK whose
                // header is 0xFE under CLIENT_DEPRECATE_EOF.
                Some(OK_HEADER) | Some(EOF_HEADER)
                    if packet[0] == OK_HEADER || is_terminator(&packet) =>
                {
                    let ok = OkPacket::decode(&packet).map_err(|e| self.lost(e))?;
                    self.status = ok.status;
                    last = ok;
                }
                Some(ERR_HEADER) => {
                    return Err(self.server_error(&packet));
                }
                _ => {
                    let columns = Reader::new(&packet)
                        .lenenc_int()
                        .map_err(|e| self.lost(e))?;
                    let mut defs = Vec::new();
                    for _ in 0..columns {
                        let definition = self.read_one().await?;
                        defs.push(ColumnDef::decode(&definition).map_err(|e| self.lost(e))?);
                    }
                    on_columns(defs);
                    loop {
                        let row = self.read_one().await?;
                        if is_terminator(&row) {
                            let ok = OkPacket::decode(&row).map_err(|e| self.lost(e))?;
                            self.status = ok.status;
                            last = ok;
                            break;
                        }
                        if is_err(&row) {
                            return Err(self.server_error(&row));
                        }
                        on_row(&row, columns).map_err(|e| self.lost(e))?;
                    }
                }
            }
            if self.status & status::MORE_RESULTS_EXISTS == 0 {
                return Ok(last);
            }
        }
    }

    async fn read_one(&mut self) -> Result<BytesMut, BackendError> {
        let limit = usize::MAX;
        match self.conn.read_packet(limit).await {
            Ok(p) => Ok(p),
            Err(e) => Err(self.lost(e)),
        }
    }

    /// Brings this connection to `want` and `settings` (a session's list kept with
    /// [`record_setting`]), issuing only the statements for what differs. Settings are only
    /// ever added: a connection carrying settings the session lacks is reset first.
    pub async fn sync_state(
        &mut self,
        want: WantedState<'_>,
        settings: &[String],
    ) -> Result<(), BackendError> {
        if !settings.starts_with(&self.settings) {
            self.reset().await?;
        }
        let all = !self.state_known;
        if all {
            if let Some(set) = self.statement_timeout.clone() {
                self.query(&set).await?;
            }
        }
        if all || self.state.charset != want.charset {
            self.query(&format!("SET NAMES {}", want.charset)).await?;
            self.state.charset = want.charset;
        }
        if all || self.state.database.as_deref() != want.database {
            if let Some(db) = want.database {
                self.send_command_with(|b| {
                    b.put_u8(com::INIT_DB);
                    b.put_slice(db.as_bytes());
                })
                .await?;
                self.read_query_result().await?;
            }
            self.state.database = want.database.map(str::to_string);
        }
        if all || self.state.multi_statements != want.multi_statements {
            let option: u16 = if want.multi_statements { 0 } else { 1 };
            self.send_command_with(|b| {
                b.put_u8(com::SET_OPTION);
                b.put_u16_le(option);
            })
            .await?;
            let packet = self.read_one().await?;
            if is_err(&packet) {
                return Err(self.server_error(&packet));
            }
            self.state.multi_statements = want.multi_statements;
        }
        self.state_known = true;
        for statement in &settings[self.settings.len()..] {
            self.query(statement).await?;
            self.settings.push(statement.clone());
        }
        Ok(())
    }

    /// Notes a session statement the borrower ran on this connection itself.
    pub fn note_setting(&mut self, statement: &str) {
        record_setting(&mut self.settings, statement);
    }

    /// COM_RESET_CONNECTION: drops user variables, temporary tables, prepared statements and
    /// transactions, so the connection can serve another session.
    pub async fn reset(&mut self) -> Result<(), BackendError> {
        self.send_command(&[com::RESET_CONNECTION]).await?;
        self.state_known = false;
        self.settings.clear();
        self.prepared.clear();
        self.read_query_result().await?;
        Ok(())
    }

    /// The server's id for `sql` (text as `protocol::text::decode` makes it) on this
    /// connection, preparing it on first use.
    pub async fn prepare(&mut self, sql: &str) -> Result<u32, BackendError> {
        if let Some(&id) = self.prepared.get(sql) {
            return Ok(id);
        }
        let id = self.prepare_new(sql).await?;
        self.note_prepared(sql, id);
        Ok(id)
    }

    /// Records a statement prepared by a relayed COM_STMT_PREPARE. A statement the cache
    /// held for the same SQL is closed, and the cache emptied when full.
    pub fn note_prepared(&mut self, sql: &str, id: u32) {
        if self.prepared.len() >= MAX_PREPARED {
            let ids: Vec<u32> = self.prepared.drain().map(|(_, id)| id).collect();
            ids.into_iter().for_each(|id| self.write_close(id));
        }
        if let Some(old) = self.prepared.insert(sql.to_string(), id) {
            self.write_close(old);
        }
    }

    /// Closes the statement prepared for `sql`, if any (COM_STMT_CLOSE has no response).
    pub async fn close_prepared(&mut self, sql: &str) -> Result<(), BackendError> {
        if let Some(id) = self.prepared.remove(sql) {
            self.write_close(id);
        }
        self.conn.flush().await.map_err(|e| self.lost(e))
    }

    /// Buffers a COM_STMT_CLOSE; it goes out with the next command.
    fn write_close(&mut self, id: u32) {
        self.conn.set_seq(0);
        self.conn.write_with(|b| {
            b.put_u8(com::STMT_CLOSE);
            b.put_u32_le(id);
        });
    }

    /// COM_STMT_PREPARE for the proxy's own use: returns the backend's statement id after
    /// reading the whole response (parameter and column definitions, no EOFs: this connection
    /// negotiated CLIENT_DEPRECATE_EOF).
    async fn prepare_new(&mut self, sql: &str) -> Result<u32, BackendError> {
        self.send_command_with(|b| {
            b.put_u8(com::STMT_PREPARE);
            b.put_slice(&protocol::text::encode(sql));
        })
        .await?;
        let first = self.read_one().await?;
        if is_err(&first) {
            return Err(self.server_error(&first));
        }
        let mut r = Reader::new(&first);
        let header = (|| -> Result<(u32, u16, u16), ProtocolError> {
            r.u8()?;
            let id = r.u32()?;
            let columns = r.u16()?;
            let params = r.u16()?;
            Ok((id, columns, params))
        })();
        let (id, columns, params) = header.map_err(|e| self.lost(e))?;
        for _ in 0..u32::from(columns) + u32::from(params) {
            self.read_one().await?;
        }
        Ok(id)
    }

    pub async fn ping(&mut self) -> Result<(), BackendError> {
        self.send_command(&[com::PING]).await?;
        self.read_query_result().await.map(|_| ())
    }
}

/// The statement that bounds each statement's run time to `limit` on this server: MariaDB's
/// `max_statement_time` (seconds, any statement), MySQL's `max_execution_time` (milliseconds,
/// SELECT only).
fn statement_timeout_setting(server_version: &str, limit: Duration) -> String {
    if server_version.contains("MariaDB") {
        format!(
            "SET SESSION max_statement_time = {}.{:03}",
            limit.as_secs(),
            limit.subsec_millis()
        )
    } else {
        format!("SET SESSION max_execution_time = {}", limit.as_millis())
    }
}

/// A result read by the proxy itself with its cells as bytes ([`BackendConn::query_raw`]).
#[derive(Debug, Default)]
pub struct RawResult {
    pub ok: OkPacket,
    /// The column definitions of the (last) result set.
    pub columns: Vec<ColumnDef>,
    /// Each row's cells; `None` for NULL.
    pub rows: Vec<Vec<Option<Vec<u8>>>>,
    /// The rows passed the byte limit: those past it were dropped.
    pub exceeded: bool,
}

/// A small result read by the proxy itself.
#[derive(Debug, Default)]
pub struct QueryResult {
    pub ok: OkPacket,
    /// Column names of the (last) result set.
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Option<String>>>,
}

impl QueryResult {
    /// The value of column `name` in row `row`; `None` for NULL or a missing column.
    pub fn value(&self, row: usize, name: &str) -> Option<&str> {
        let at = self
            .columns
            .iter()
            .position(|c| c.eq_ignore_ascii_case(name))?;
        self.rows.get(row)?.get(at)?.as_deref()
    }
}

fn decode_text_row(payload: &[u8], columns: u64) -> Result<Vec<Option<String>>, ProtocolError> {
    let mut r = Reader::new(payload);
    (0..columns)
        .map(|_| {
            Ok(r.lenenc_bytes_or_null()?
                .map(|b| String::from_utf8_lossy(b).into_owned()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::quote_literal;

    #[test]
    fn literals_are_quoted() {
        assert_eq!(quote_literal("ds_0,ds_1"), "'ds_0,ds_1'");
        assert_eq!(quote_literal(r"a'b\c"), r"'a''b\\c'");
        assert_eq!(quote_literal("a\0b"), r"'a\0b'");
    }
}
