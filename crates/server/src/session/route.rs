//! COM_QUERY: the router turns SQL into a [`router::Plan`], which the session's executor
//! runs ([`executor::Executor::run_plan`]). Session statements (SET, BEGIN/COMMIT/ROLLBACK,
//! savepoints) run on every held connection and are replayed on connections acquired later,
//! so all of a session's connections agree; a multi-statement text whose statements all go
//! to one data source is sent there as one text.

use bytes::{BufMut, BytesMut};
use executor::{Access, Flow, Request, TransactionStatement};
use protocol::constants::com;
use protocol::response::ResponseKind;
use protocol::resultset::{write_text_result, ColumnDef};
use protocol::text::{self, Charset};
use protocol::ServerError;
use router::{Combine, IdStyle, SessionStatement, StatementKind};
use tokio::io::{AsyncRead, AsyncWrite};

use super::fill::IdRequest;
use super::show::Asked;
use super::Session;
use crate::error::SessionError;
use crate::intercept::unqualified_system_tables;

/// The one data source every statement of a multi-statement text goes to, if there is one
/// and each statement there needs one target only (session statements included: they run on
/// the default data source like any other statement of the text).
fn multi_statement_target(snapshot: &crate::Snapshot, text: &str) -> Option<String> {
    let plans = snapshot.router.route_multi(text).ok()?;
    if plans.len() < 2 {
        return None;
    }
    let default = &snapshot.rules.schema.default_data_source;
    let mut target: Option<&str> = None;
    for plan in &plans {
        let ds = match (&plan.kind, plan.targets.as_slice()) {
            (StatementKind::Session(SessionStatement::Set(_)), _) => default.as_str(),
            (StatementKind::Session(_), _) => return None,
            (_, [only]) => only.data_source.as_str(),
            (_, [first, ..]) if plan.combine == Combine::AnyOne => first.data_source.as_str(),
            _ => return None,
        };
        match target {
            None => target = Some(ds),
            Some(t) if t == ds => {}
            Some(_) => return None,
        }
    }
    target.map(str::to_string)
}

/// Whether a SET statement sets `autocommit` (which would commit the open transaction).
fn sets_autocommit(statement: &str) -> bool {
    let named = |name: &str| {
        name.rsplit('.')
            .next()
            .is_some_and(|n| n.eq_ignore_ascii_case("autocommit"))
    };
    executor::items(statement).iter().any(|i| match i {
        executor::Item::Word(w) | executor::Item::SystemVariable(w) => named(w),
        _ => false,
    })
}

/// The character set a SET statement gives the client's statements, if it changes it; an
/// error for one the proxy cannot read, or cannot tell before the server runs the statement.
fn charset_change(statement: &str) -> Result<Option<Charset>, ServerError> {
    match sql::client_charset(statement) {
        None => Ok(None),
        Some(sql::ClientCharset::Named(name)) => crate::handshake::lexing(&name).map(Some),
        Some(sql::ClientCharset::Unknown) => Err(ServerError::not_supported(
            "setting the client character set to DEFAULT or an expression",
        )),
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    /// COM_QUERY.
    pub(super) async fn query(&mut self, packet: &[u8]) -> Flow {
        let snapshot = self.ctx.snapshot.load_full();
        let text = text::decode(&packet[1..], self.text_charset);
        let items = executor::items(&text);
        self.exec.apply(executor::scan(&items));
        if let Some(err) = unqualified_system_tables(self.exec.state.database.as_deref(), &text) {
            return self.error(err).await;
        }
        if matches!(items.first(), Some(executor::Item::Word(w)) if w.eq_ignore_ascii_case("XA"))
            && self.exec.transaction_mode(&snapshot.rules) == rules::TransactionMode::Xa
        {
            return self
                .error(ServerError::not_supported(
                    "XA statements in transaction mode 'xa': the proxy runs XA itself (SET \
                     dbmesh_transaction_mode = 'local' to use your own)",
                ))
                .await;
        }
        let routed = match self
            .route_with_columns(&snapshot, |router| router.route(&text, &[]))
            .await
        {
            Ok(routed) => routed,
            Err(flow) => return flow,
        };
        let plan = match routed {
            Ok(plan) => plan,
            Err(e) => {
                if let Some(request) = IdRequest::asked_by(&e) {
                    return self.query_filled(&snapshot, packet, &text, request).await;
                }
                if let Some(data_source) = multi_statement_target(&snapshot, &text) {
                    return self
                        .forward_multi(&data_source, packet, &text, &snapshot)
                        .await;
                }
                return self.error(e).await;
            }
        };
        if let Some(note) = &mut self.route_note {
            *note = crate::query_log::route(
                &plan.combine,
                plan.targets.iter().map(|t| t.data_source.as_str()),
            );
        }
        if tracing::enabled!(tracing::Level::DEBUG) {
            let route: Vec<String> = plan
                .describe()
                .into_iter()
                .map(|(ds, sql)| format!("{ds}: {sql}"))
                .collect();
            tracing::Span::current().record(
                "route",
                tracing::field::display(format!("{} [{}]", plan.combine, route.join("; "))),
            );
        }
        self.exec
            .set_access(executor::classify(&plan.kind, &text, &items));
        if let StatementKind::Session(statement) = &plan.kind {
            return self.session_statement(statement, packet, &text).await;
        }
        self.exec.apply(executor::unread_set(&plan.kind, &text));
        if plan.kind == StatementKind::Show && plan.targets.len() == 1 {
            return self.run_show(&plan, &text, Asked::Query).await;
        }
        if plan.kind == StatementKind::Ddl {
            // DDL commits the open transaction first, as on one server.
            if let Err(e) = self.exec.commit_implicitly().await {
                return self.error(e).await;
            }
        }
        let request = Request::Text {
            original: packet,
            text: &text,
        };
        let flow = self
            .exec
            .run_plan(&mut self.client, &snapshot, &plan, request)
            .await;
        if plan.kind == StatementKind::Ddl {
            // The definition of a table may have changed: column lists are read again.
            snapshot.router.forget_columns();
        }
        flow
    }

    /// A multi-statement text whose statements all go to one data source: sent there as one
    /// text (the client's own packet when no statement needed rewriting), so its results come
    /// back in order as from a single server.
    async fn forward_multi(
        &mut self,
        data_source: &str,
        packet: &[u8],
        text: &str,
        snapshot: &crate::Snapshot,
    ) -> Flow {
        // Several statements in one text run on the primary, as writes.
        self.exec.set_access(Access::Write);
        let statements = sql::split(text);
        let mut physical = Vec::with_capacity(statements.len());
        let mut settings = Vec::new();
        let mut ddl = false;
        for statement in &statements {
            match snapshot.router.route(statement, &[]) {
                Ok(plan) => {
                    ddl |= plan.kind == StatementKind::Ddl;
                    if let StatementKind::Session(SessionStatement::Set(_)) = plan.kind {
                        settings.push(*statement);
                    }
                    match plan.targets.first() {
                        Some(t) => physical.push(t.sql.clone()),
                        None => physical.push(statement.to_string()),
                    }
                }
                Err(e) => return self.error(e).await,
            }
        }
        if self.exec.fenced(
            snapshot,
            physical.iter().map(|sql| (data_source, sql.as_str())),
        ) {
            return Flow::Fenced;
        }
        let mut charset = None;
        for statement in &settings {
            match charset_change(statement) {
                Ok(change) => charset = change.or(charset),
                Err(e) => return self.error(e).await,
            }
        }
        if ddl {
            if let Err(e) = self.exec.commit_implicitly().await {
                return self.error(e).await;
            }
        }
        let unchanged = physical.iter().zip(&statements).all(|(p, s)| p == s);
        let request = if unchanged {
            BytesMut::from(packet)
        } else {
            let joined = physical.join(";\n");
            let mut p = BytesMut::with_capacity(1 + joined.len());
            p.put_u8(com::QUERY);
            p.put_slice(&text::encode(&joined));
            p
        };
        let outcome = self
            .exec
            .forward(
                &mut self.client,
                snapshot,
                data_source,
                &request,
                ResponseKind::Query,
            )
            .await;
        if ddl {
            snapshot.router.forget_columns();
        }
        let outcome = match outcome {
            Ok(outcome) => outcome,
            Err(flow) => return flow,
        };
        self.exec
            .note_found_rows(false, data_source, text, &outcome)
            .await;
        if settings.is_empty() {
            return Flow::Continue;
        }
        if !self.exec.holds(data_source) {
            return Flow::Continue;
        }
        if outcome.error.is_some() {
            // Which of the text's SET statements ran is unknown: the connection's state is
            // not tracked any more, so it must not serve anyone else.
            self.exec.discard(data_source);
            return Flow::Continue;
        }
        for statement in settings {
            self.exec.record_setting(statement);
        }
        if let Some(charset) = charset {
            self.text_charset = charset;
        }
        Flow::Continue
    }

    /// SET, transaction control, USE, EXPLAIN ROUTE.
    pub(super) async fn session_statement(
        &mut self,
        statement: &SessionStatement,
        packet: &[u8],
        text: &str,
    ) -> Flow {
        match statement {
            SessionStatement::Use(db) => super::command::connection::use_database(self, db).await,
            SessionStatement::ExplainRoute(sql) => self.explain_route(sql).await,
            SessionStatement::Set(_) => {
                if self.exec.distributed_open() && sets_autocommit(text) {
                    return self.error(SessionError::AutocommitInDistributed).await;
                }
                self.exec.without_branch();
                let charset = match charset_change(text) {
                    Ok(charset) => charset,
                    Err(e) => return self.error(e).await,
                };
                let time_limit = match sql::max_statement_time(text) {
                    None => None,
                    Some(sql::MaxStatementTime::Limit(limit)) => Some((limit, false)),
                    Some(sql::MaxStatementTime::Default) => Some((self.default_time_limit(), true)),
                    Some(sql::MaxStatementTime::Unknown) => {
                        let err = ServerError::not_supported(
                            "setting max_statement_time to anything but a number or DEFAULT",
                        );
                        return self.error(err).await;
                    }
                };
                let snapshot = self.ctx.snapshot.load_full();
                let (flow, ok) = self
                    .exec
                    .everywhere(&mut self.client, &snapshot, packet, text)
                    .await;
                if !matches!(flow, Flow::Continue) || !ok {
                    return flow;
                }
                if let Some(charset) = charset {
                    self.text_charset = charset;
                }
                if let Some((limit, is_default)) = time_limit {
                    self.max_statement_time = limit;
                    self.time_limit_is_default = is_default;
                }
                if sql::strip_leading_words(text, &["SET", "TRANSACTION"]).is_some() {
                    self.exec.declare_next_transaction(text);
                } else {
                    self.exec.record_setting(text);
                }
                flow
            }
            SessionStatement::Begin => {
                self.transaction(TransactionStatement::Begin, packet, text)
                    .await
            }
            SessionStatement::Commit => {
                self.transaction(TransactionStatement::Commit, packet, text)
                    .await
            }
            SessionStatement::Rollback => {
                self.transaction(TransactionStatement::Rollback, packet, text)
                    .await
            }
            SessionStatement::Savepoint(_)
            | SessionStatement::ReleaseSavepoint(_)
            | SessionStatement::RollbackToSavepoint(_) => {
                self.transaction(TransactionStatement::Savepoint, packet, text)
                    .await
            }
        }
    }

    async fn transaction(
        &mut self,
        statement: TransactionStatement,
        packet: &[u8],
        text: &str,
    ) -> Flow {
        let snapshot = self.ctx.snapshot.load_full();
        self.exec
            .transaction_statement(&mut self.client, &snapshot, statement, packet, text)
            .await
    }

    /// `EXPLAIN ROUTE <statement>`: one row per target.
    async fn explain_route(&mut self, sql: &str) -> Flow {
        let snapshot = self.ctx.snapshot.load_full();
        let routed = match self
            .route_with_columns(&snapshot, |router| router.route(sql, &[]))
            .await
        {
            Ok(routed) => routed,
            Err(flow) => return flow,
        };
        let plan = match routed {
            Ok(plan) => plan,
            // Shown with real ids (taken and then skipped, a gap like any unused id).
            Err(e) => match IdRequest::asked_by(&e) {
                Some(request) => match self
                    .route_filling(&snapshot, sql, &[], request, IdStyle::Literal)
                    .await
                {
                    Ok((plan, _)) => plan,
                    Err(e) => return self.error(e).await,
                },
                None => return self.error(e).await,
            },
        };
        let rows: Vec<[Option<Vec<u8>>; 2]> = if plan.targets.is_empty() {
            vec![[
                Some(b"(proxy)".to_vec()),
                Some(format!("{}", plan.kind).into_bytes()),
            ]]
        } else {
            plan.describe()
                .into_iter()
                .map(|(ds, sql)| [Some(ds.into_bytes()), Some(text::encode(&sql).into_owned())])
                .collect()
        };
        let columns = [
            ColumnDef::varchar("data_source", 64),
            ColumnDef::varchar("sql", 65535),
        ];
        let deprecate_eof = self.deprecate_eof();
        let status = self.exec.client_status();
        write_text_result(
            &mut self.client.packets,
            &columns,
            rows,
            deprecate_eof,
            0,
            status,
        );
        self.flush().await
    }
}
