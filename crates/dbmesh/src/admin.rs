//! The admin HTTP listener (axum on hyper): `GET /health`, `GET /metrics` (Prometheus),
//! `POST /reload` (answers what changed, what was applied and what needs a restart) and
//! `POST /primary?[data_source=NAME&]address=HOST:PORT` (switch a data source's primary, or
//! without a name every data source's that the server serves, to a server the rule file names
//! for it; recorded in the meta data source, see `server::primaries`).
//!
//! Who may do what: a request that changes something must be a POST carrying
//! `Authorization: Bearer <proxy.admin_token>` (or `DBMESH_ADMIN_TOKEN`), and must not come
//! from a web page (no `Origin`, `Sec-Fetch-Site` absent or `none`), so a page open in a
//! browser on the proxy's host cannot drive it. Without a configured token those requests are
//! refused. `/health` and `/metrics` are open unless `proxy.admin_status_public = false`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use server::metrics::RulesInForce;
use server::Context;
use tokio::net::TcpListener;

/// The environment variable that sets the admin token (so it need not sit in the rule file);
/// it takes precedence over `proxy.admin_token`.
pub const TOKEN_ENV: &str = "DBMESH_ADMIN_TOKEN";

/// How long one admin connection may take, request and answer (a client that sends its
/// request slowly cannot hold a connection longer).
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(10);

/// Starts the backend health checker after one first round, so `/health` never answers
/// before it knows.
pub async fn start_health_checks(ctx: Arc<Context>) {
    server::health::check_backends(&ctx).await;
    server::health::spawn_health_checks(ctx);
}

/// Validates the rule file as `dbmesh check` does and swaps it in; logs the outcome (with
/// what set it off, `trigger`): the old and new rules version, what was applied, and a
/// warning for each change that needs a restart.
pub fn reload(ctx: &Context, config: &Path, trigger: &str) -> Result<Reloaded, String> {
    let (rules, sha256) = match crate::load_rules(config) {
        Ok(loaded) => loaded,
        Err(e) => {
            let error = e.to_string();
            tracing::error!(
                trigger,
                error,
                "reload rejected; the previous rules stay in force"
            );
            return Err(error);
        }
    };
    let new = rules.clone();
    let old = match ctx.reload(rules) {
        Ok(old) => old,
        Err(error) => {
            tracing::error!(
                trigger,
                error,
                "reload rejected; the previous rules stay in force"
            );
            return Err(error);
        }
    };
    let (before, now) = ctx.metrics.rules_applied(&sha256);
    let reloaded = Reloaded {
        changes: crate::reload::changes(&old, &new),
        before,
        now,
    };
    tracing::info!(
        trigger,
        old_version = reloaded.before.version,
        old_sha256 = reloaded.before.sha256,
        new_version = reloaded.now.version,
        new_sha256 = reloaded.now.sha256,
        applied = reloaded.changes.applied.join("; "),
        "rules reloaded"
    );
    for change in &reloaded.changes.needs_restart {
        tracing::warn!(
            trigger,
            change,
            "reload: this change takes effect only after a restart; the old value stays in force"
        );
    }
    Ok(reloaded)
}

/// A reload that was applied.
pub struct Reloaded {
    pub before: RulesInForce,
    pub now: RulesInForce,
    pub changes: crate::reload::Changes,
}

impl std::fmt::Display for Reloaded {
    /// The answer to `POST /reload`: the versions, then one line per change.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "reloaded: rules version {} -> {} (sha256 {} -> {})",
            self.before.version, self.now.version, self.before.sha256, self.now.sha256
        )?;
        if self.changes.applied.is_empty() && self.changes.needs_restart.is_empty() {
            writeln!(f, "nothing changed")?;
        }
        for change in &self.changes.applied {
            writeln!(f, "applied: {change}")?;
        }
        for change in &self.changes.needs_restart {
            writeln!(
                f,
                "warning: needs a restart, the old value stays in force until then: {change}"
            )?;
        }
        Ok(())
    }
}

/// What every handler shares.
#[derive(Clone)]
struct Admin {
    ctx: Arc<Context>,
    config: Arc<PathBuf>,
    /// The token from [`TOKEN_ENV`], read once at start.
    env_token: Option<Arc<str>>,
}

/// The token from the environment, if set: `Err` when it is too weak to guard the API.
pub fn env_token() -> Result<Option<String>, String> {
    match std::env::var(TOKEN_ENV) {
        Ok(token) => rules::check_admin_token(&token)
            .map(|()| Some(token))
            .map_err(|e| format!("{TOKEN_ENV} {e}")),
        Err(_) => Ok(None),
    }
}

pub async fn serve(
    listener: TcpListener,
    ctx: Arc<Context>,
    config: PathBuf,
    env_token: Option<String>,
) {
    let admin = Admin {
        ctx,
        config: Arc::new(config),
        env_token: env_token.map(Arc::from),
    };
    let app = Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/reload", post(reload_rules))
        .route("/primary", post(switch_primary))
        .route("/digest", get(digest))
        .route("/digest/reset", post(reset_digest))
        .with_state(admin);
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        tokio::spawn(async move {
            let connection = hyper::server::conn::http1::Builder::new()
                .keep_alive(false)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            let _ = tokio::time::timeout(CONNECTION_TIMEOUT, connection).await;
        });
    }
}

/// A refusal: status and a one-line reason.
type Refusal = (StatusCode, HeaderMap, String);

impl Admin {
    /// The token in force: the environment's, else the rule file's.
    fn token(&self) -> Option<String> {
        self.env_token.as_deref().map(str::to_string).or_else(|| {
            let rules = self.ctx.snapshot.load().rules.clone();
            rules.proxy.admin_token.as_ref().map(|t| t.0.clone())
        })
    }

    /// Lets a request through if it carries the token.
    fn authenticate(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        let Some(token) = self.token() else {
            return Err(refusal(
                StatusCode::FORBIDDEN,
                format!("the admin API is read-only: set proxy.admin_token or {TOKEN_ENV}"),
            ));
        };
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if presented.is_some_and(|p| constant_time_eq(p.as_bytes(), token.as_bytes())) {
            return Ok(());
        }
        let mut headers = HeaderMap::new();
        headers.insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
        Err((
            StatusCode::UNAUTHORIZED,
            headers,
            "a valid Authorization: Bearer <admin token> is required\n".into(),
        ))
    }

    /// A request that changes something: not from a web page, and authenticated.
    fn authorize_change(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        let from_page = headers.contains_key(header::ORIGIN)
            || headers
                .get("sec-fetch-site")
                .is_some_and(|v| v.as_bytes() != b"none");
        if from_page {
            return Err(refusal(
                StatusCode::FORBIDDEN,
                "cross-site requests are refused".into(),
            ));
        }
        self.authenticate(headers)
    }

    /// `/health` and `/metrics`: open unless configured otherwise.
    fn authorize_status(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        if self.ctx.snapshot.load().rules.proxy.admin_status_public {
            return Ok(());
        }
        self.authenticate(headers)
    }
}

fn refusal(status: StatusCode, reason: String) -> Refusal {
    (status, HeaderMap::new(), format!("{reason}\n"))
}

/// Compares without stopping at the first difference, so timing tells nothing of the token.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn text(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "text/plain")], body).into_response()
}

async fn health(State(admin): State<Admin>, headers: HeaderMap) -> Response {
    if let Err(refused) = admin.authorize_status(&headers) {
        return refused.into_response();
    }
    let verdict = server::health::verdict(&admin.ctx);
    let mut lines = verdict.primaries_down.clone();
    lines.extend(verdict.primaries_unconfirmed.iter().cloned());
    lines.extend(verdict.split_brains.iter().cloned());
    lines.extend(verdict.replicas_out.iter().cloned());
    lines.extend(server::health::primaries(&admin.ctx));
    let rules = admin.ctx.metrics.rules_in_force();
    lines.push(format!(
        "rules: version {}, sha256 {}",
        rules.version, rules.sha256
    ));
    let lines = lines.join("\n");
    match (
        verdict.primaries_down.is_empty() && verdict.primaries_unconfirmed.is_empty(),
        verdict.replicas_out.is_empty() && verdict.split_brains.is_empty(),
    ) {
        (true, true) => text(StatusCode::OK, format!("ok\n{lines}\n")),
        (true, false) => text(StatusCode::OK, format!("degraded\n{lines}\n")),
        (false, _) => text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("unhealthy\n{lines}\n"),
        ),
    }
}

async fn metrics(State(admin): State<Admin>, headers: HeaderMap) -> Response {
    if let Err(refused) = admin.authorize_status(&headers) {
        return refused.into_response();
    }
    admin.ctx.update_pool_metrics();
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        admin.ctx.metrics.render(),
    )
        .into_response()
}

/// The query digest as JSON: one object per fingerprint, the largest total time first
/// (fingerprints hold no literal, so it is as open as `/metrics`).
async fn digest(State(admin): State<Admin>, headers: HeaderMap) -> Response {
    if let Err(refused) = admin.authorize_status(&headers) {
        return refused.into_response();
    }
    let rows = admin.ctx.metrics.digest.rows();
    let body = serde_json::to_string_pretty(&rows).unwrap_or_else(|_| "[]".into());
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body + "\n",
    )
        .into_response()
}

async fn reset_digest(State(admin): State<Admin>, headers: HeaderMap) -> Response {
    if let Err(refused) = admin.authorize_change(&headers) {
        return refused.into_response();
    }
    admin.ctx.metrics.digest.reset();
    tracing::info!("query digest reset through the admin API");
    (StatusCode::OK, "digest reset\n").into_response()
}

async fn reload_rules(State(admin): State<Admin>, headers: HeaderMap) -> Response {
    if let Err(refused) = admin.authorize_change(&headers) {
        return refused.into_response();
    }
    match reload(&admin.ctx, &admin.config, "POST /reload") {
        Ok(reloaded) => text(StatusCode::OK, reloaded.to_string()),
        Err(e) => text(
            StatusCode::BAD_REQUEST,
            format!("reload rejected; the previous rules stay in force\n{e}\n"),
        ),
    }
}

#[derive(serde::Deserialize)]
struct PrimaryParams {
    data_source: Option<String>,
    address: String,
}

async fn switch_primary(
    State(admin): State<Admin>,
    headers: HeaderMap,
    params: Result<Query<PrimaryParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    // Authorization first: an anonymous caller learns nothing, not even about its parameters.
    if let Err(refused) = admin.authorize_change(&headers) {
        return refused.into_response();
    }
    let Ok(Query(PrimaryParams {
        data_source,
        address,
    })) = params
    else {
        return text(
            StatusCode::BAD_REQUEST,
            "usage: POST /primary?[data_source=NAME&]address=HOST:PORT\n".into(),
        );
    };
    let number = admin.ctx.snapshot.load().rules.proxy.number;
    let set_by = format!("proxy {number} (POST /primary)");
    match admin
        .ctx
        .switch_primary(data_source.as_deref(), &address, &set_by)
        .await
    {
        Ok(switched) => text(
            StatusCode::OK,
            format!(
                "now writing to {address}: data source {}\n",
                switched
                    .iter()
                    .map(|name| format!("'{name}'"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ),
        Err(e) => text(StatusCode::CONFLICT, format!("primary not switched: {e}\n")),
    }
}
