//! `dbmesh status` and `dbmesh reload`: one HTTP request to a running proxy's admin
//! listener, found (with the admin token) in the rule file it serves, or given on the command
//! line. Only `[proxy]` is read from the file, so `reload` still works when the edited file
//! has problems elsewhere: the proxy answers them.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context as _};

use crate::admin::TOKEN_ENV;

/// How long the proxy may take to answer.
const TIMEOUT: Duration = Duration::from_secs(30);

/// Where the proxy's admin listener is.
#[derive(clap::Args)]
pub struct AdminArgs {
    /// The rule file the proxy serves: its proxy.admin_listen and proxy.admin_token.
    #[arg(long, required_unless_present = "admin_listen")]
    config: Option<PathBuf>,
    /// The admin listener, overriding the rule file's (as given to serve --admin-listen).
    #[arg(long, value_name = "HOST:PORT")]
    admin_listen: Option<String>,
}

/// `[proxy]` of a rule file, as far as these commands need it.
#[derive(serde::Deserialize, Default)]
struct ProxySection {
    admin_listen: Option<String>,
    admin_token: Option<String>,
}

#[derive(serde::Deserialize)]
struct RuleFileProxy {
    #[serde(default)]
    proxy: ProxySection,
}

/// The listener's address and the admin token (`DBMESH_ADMIN_TOKEN` first).
fn target(args: &AdminArgs) -> anyhow::Result<(String, Option<String>)> {
    let proxy = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("{}: cannot read the rule file", path.display()))?;
            toml::from_str::<RuleFileProxy>(&text)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
                .proxy
        }
        None => ProxySection::default(),
    };
    let address = args
        .admin_listen
        .clone()
        .or(proxy.admin_listen)
        .unwrap_or_else(|| rules::ProxyConfig::default().admin_listen);
    let token = std::env::var(TOKEN_ENV).ok().or(proxy.admin_token);
    Ok((address, token))
}

/// A listener bound to every address is reached on loopback.
fn reachable(address: &str) -> anyhow::Result<SocketAddr> {
    let mut resolved = address
        .to_socket_addrs()
        .with_context(|| format!("admin listener '{address}'"))?;
    let Some(mut addr) = resolved.next() else {
        bail!("admin listener '{address}' resolves to no address");
    };
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    Ok(addr)
}

/// One request: (status code, body).
fn request(
    address: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
) -> anyhow::Result<(u16, String)> {
    let addr = reachable(address)?;
    let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT)
        .with_context(|| format!("connecting to the admin listener {addr}"))?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    let authorization = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{authorization}Content-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut answer = String::new();
    stream
        .read_to_string(&mut answer)
        .with_context(|| format!("reading the answer of {addr}"))?;
    let code = answer
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .with_context(|| format!("{addr} did not answer HTTP: {answer:?}"))?;
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((code, body))
}

/// `dbmesh status`: prints `/health`; an error unless the proxy is healthy or degraded.
pub fn status(args: &AdminArgs) -> anyhow::Result<()> {
    let (address, token) = target(args)?;
    // The token matters only where proxy.admin_status_public = false.
    let (code, body) = request(&address, "GET", "/health", token.as_deref())?;
    print!("{body}");
    if code != 200 {
        bail!("the proxy at {address} answered {code}");
    }
    Ok(())
}

/// `dbmesh reload`: prints the proxy's answer to `POST /reload`; an error unless applied.
pub fn reload(args: &AdminArgs) -> anyhow::Result<()> {
    let (address, token) = target(args)?;
    let Some(token) = token else {
        bail!("no admin token: set {TOKEN_ENV} or proxy.admin_token in the rule file");
    };
    let (code, body) = request(&address, "POST", "/reload", Some(&token))?;
    print!("{body}");
    if code != 200 {
        bail!("the proxy at {address} answered {code}");
    }
    Ok(())
}
