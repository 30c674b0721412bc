//! The admin HTTP listener: `GET /health`, `GET /metrics` (Prometheus) and `POST /reload`.
//! A deliberately tiny HTTP/1.1 server: one request per connection, no keep-alive.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use server::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How often the data sources are probed for `/health`.
const HEALTH_INTERVAL: Duration = Duration::from_secs(2);

/// The latest health verdict: `None` when every data source answered, else the reasons.
pub struct Health {
    problems: Mutex<Option<Vec<String>>>,
}

impl Health {
    /// Runs a first check (so `/health` never answers before it knows), then keeps checking
    /// in the background.
    pub async fn start(ctx: Arc<Context>) -> Arc<Health> {
        let health = Arc::new(Health {
            problems: Mutex::new(check_all(&ctx).await),
        });
        let h = health.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(HEALTH_INTERVAL).await;
                let verdict = check_all(&ctx).await;
                *h.problems.lock().unwrap_or_else(|p| p.into_inner()) = verdict;
            }
        });
        health
    }

    fn verdict(&self) -> Option<Vec<String>> {
        self.problems
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// Checks every data source concurrently; `None` when all answer.
async fn check_all(ctx: &Context) -> Option<Vec<String>> {
    let mut checks = tokio::task::JoinSet::new();
    for pool in ctx.snapshot.load().pools.values() {
        let pool = pool.clone();
        checks.spawn(async move { pool.check().await.err().map(|e| e.to_string()) });
    }
    let mut problems: Vec<String> = checks.join_all().await.into_iter().flatten().collect();
    problems.sort();
    (!problems.is_empty()).then_some(problems)
}

/// Validates the rule file as `dbmesh check` does and swaps it in.
pub async fn reload(ctx: &Context, config: &Path) -> Result<(), String> {
    let rules = rules::load_file(config).map_err(|e| e.to_string())?;
    ctx.reload(rules);
    Ok(())
}

pub async fn serve(listener: TcpListener, ctx: Arc<Context>, health: Arc<Health>, config: PathBuf) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let (ctx, health, config) = (ctx.clone(), health.clone(), config.clone());
        tokio::spawn(async move {
            let _ = tokio::time::timeout(
                Duration::from_secs(10),
                handle(stream, &ctx, &health, &config),
            )
            .await;
        });
    }
}

async fn handle(
    mut stream: TcpStream,
    ctx: &Context,
    health: &Health,
    config: &Path,
) -> std::io::Result<()> {
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
        ("GET", "/health") => match health.verdict() {
            None => (200, "text/plain", "ok\n".to_string()),
            Some(problems) => (
                503,
                "text/plain",
                format!("unhealthy\n{}\n", problems.join("\n")),
            ),
        },
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
        _ => (404, "text/plain", "not found\n".to_string()),
    };
    let reason = match code {
        200 => "OK",
        400 => "Bad Request",
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
