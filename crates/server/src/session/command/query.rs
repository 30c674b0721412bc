//! COM_QUERY: the statements the proxy answers itself ([`crate::intercept`], the statements
//! about sessions), and everything else routed and run by the executor
//! ([`crate::session::route`]).

use bytes::BytesMut;
use executor::Flow;
use protocol::text;
use tokio::io::{AsyncRead, AsyncWrite};

use super::{answered, processes};
use crate::intercept::{intercept, Intercepted};
use crate::session::Session;

/// Runs a COM_QUERY.
pub(super) async fn run<S: AsyncRead + AsyncWrite + Unpin>(
    session: &mut Session<S>,
    mut packet: BytesMut,
) -> Flow {
    let intercepted = intercept(&text::decode(&packet[1..], session.text_charset));
    match &intercepted {
        // A question about the previous statement keeps its diagnostics.
        Some(Intercepted::Diagnostics(_)) => {}
        Some(_) => session.begin_statement(),
        None => {
            match session.with_own_values(&packet) {
                Ok(None) => {}
                Ok(Some(replaced)) => packet = replaced,
                Err(e) => {
                    session.begin_statement();
                    return session.error(e).await;
                }
            }
            session.begin_statement();
        }
    }
    // Before anything could relay it: KILL and process lists never reach a backend.
    let text = text::decode(&packet[1..], session.text_charset);
    if let Some(flow) = processes::answer_query(session, &text).await {
        return flow;
    }
    drop(text);
    match intercepted {
        Some(statement) => answered::run(session, statement, &packet).await,
        None => session.query(&packet).await,
    }
}
