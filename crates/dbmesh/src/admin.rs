//! The admin HTTP listener: `GET /health`, `GET /metrics` (Prometheus), `POST /reload` and
//! `POST /primary?data_source=NAME&address=HOST:PORT` (switch a data source's primary).
//! A deliberately tiny HTTP/1.1 server: one request per connection, no keep-alive.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use server::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Starts the backend health checker after one first round, so `/health` never answers
/// before it knows.
pub async fn start_health_checks(ctx: Arc<Context>) {
    server::health::check_backends(&ctx).await;
    server::health::spawn_health_checks(ctx);
}

/// Validates the rule file as `dbmesh check` does and swaps it in.
pub async fn reload(ctx: &Context, config: &Path) -> Result<(), String> {
    let rules = rules::load_file(config).map_err(|e| e.to_string())?;
    ctx.reload(rules);
    Ok(())
}

pub async fn serve(listener: TcpListener, ctx: Arc<Context>, config: PathBuf) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let (ctx, config) = (ctx.clone(), config.clone());
        tokio::spawn(async move {
            let _ =
                tokio::time::timeout(Duration::from_secs(10), handle(stream, &ctx, &config)).await;
        });
    }
}

async fn handle(mut stream: TcpStream, ctx: &Context, config: &Path) -> std::io::Result<()> {
    let mut buf = vec![0u8; 8192];
    let mut len = 0;
    while !buf[..len].windows(4).any(|w| w == b"\r\n\r\n") && len < buf.len() {
        let n = stream.read(&mut buf[len..]).await?;
        if n == 0 {
            break;
        }
        len += n;
    }
    let head = String::from_utf8_lossy(&buf[..len]);
    let mut parts = head.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (code, content_type, body) = match (method, path) {
        ("GET", "/health") => {
            let verdict = server::health::verdict(ctx);
            let mut lines = verdict.primaries_down.clone();
            lines.extend(verdict.replicas_out.iter().cloned());
            match (verdict.primaries_down.is_empty(), lines.is_empty()) {
                (true, true) => (200, "text/plain", "ok\n".to_string()),
                (true, false) => (
                    200,
                    "text/plain",
                    format!("degraded\n{}\n", lines.join("\n")),
                ),
                (false, _) => (
                    503,
                    "text/plain",
                    format!("unhealthy\n{}\n", lines.join("\n")),
                ),
            }
        }
        ("GET", "/metrics") => {
            ctx.update_pool_metrics();
            (200, "text/plain; version=0.0.4", ctx.metrics.render())
        }
        ("POST", "/reload") => match reload(ctx, config).await {
            Ok(()) => (200, "text/plain", "reloaded\n".to_string()),
            Err(e) => (
                400,
                "text/plain",
                format!("reload rejected; the previous rules stay in force\n{e}\n"),
            ),
        },
        ("POST", p) if p.starts_with("/primary?") => {
            let param = |name: &str| {
                p["/primary?".len()..]
                    .split('&')
                    .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
                    .unwrap_or("")
                    .to_string()
            };
            let (data_source, address) = (param("data_source"), param("address"));
            match ctx.switch_primary(&data_source, &address).await {
                Ok(()) => (
                    200,
                    "text/plain",
                    format!("data source '{data_source}' now writes to {address}\n"),
                ),
                Err(e) => (409, "text/plain", format!("primary not switched: {e}\n")),
            }
        }
        _ => (404, "text/plain", "not found\n".to_string()),
    };
    let reason = match code {
        200 => "OK",
        400 => "Bad Request",
        409 => "Conflict",
        503 => "Service Unavailable",
        _ => "Not Found",
    };
    let response = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}
