//! [`Backend`]: what a test talks to, either a server the fixture started or one named by
//! `DBMESH_TEST_BACKENDS`; and [`backends`], the entry point that chooses between the two.

use std::thread;

use crate::error::FixtureError;
use crate::mariadb::{MariaDb, MariaDbBuilder};
use crate::tools::{run_sql, Target};

/// Comma-separated `host:port` list of running servers to use instead of starting processes.
pub const ENV_BACKENDS: &str = "DBMESH_TEST_BACKENDS";
/// User for the servers in [`ENV_BACKENDS`] (default `root`).
pub const ENV_USER: &str = "DBMESH_TEST_BACKEND_USER";
/// Password for the servers in [`ENV_BACKENDS`] (default empty).
pub const ENV_PASSWORD: &str = "DBMESH_TEST_BACKEND_PASSWORD";

/// A MySQL/MariaDB server for a test. Owns the process if the fixture started it (dropping the
/// `Backend` stops it); otherwise it only names an external server.
#[derive(Debug)]
pub struct Backend {
    host: String,
    port: u16,
    user: String,
    password: String,
    server: Option<MariaDb>,
}

impl Backend {
    /// A handle to a server the fixture does not own.
    pub fn external(
        host: impl Into<String>,
        port: u16,
        user: impl Into<String>,
        password: impl Into<String>,
    ) -> Backend {
        Backend {
            host: host.into(),
            port,
            user: user.into(),
            password: password.into(),
            server: None,
        }
    }

    /// Wrap a server started by the fixture.
    pub fn managed(server: MariaDb) -> Backend {
        Backend {
            host: server.host().to_owned(),
            port: server.port(),
            user: server.user().to_owned(),
            password: server.password().to_owned(),
            server: Some(server),
        }
    }

    /// Host name or IP address.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// TCP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// User with all privileges (`root` for fixture servers).
    pub fn user(&self) -> &str {
        &self.user
    }

    /// That user's password (empty for fixture servers).
    pub fn password(&self) -> &str {
        &self.password
    }

    /// `host:port`, e.g. `127.0.0.1:23456`.
    pub fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// `mysql://user:password@host:port`, with user and password percent-encoded (the form
    /// `mysql_async::Opts::from_url` reads).
    pub fn url(&self) -> String {
        let credentials = if self.password.is_empty() {
            percent_encode(&self.user)
        } else {
            format!(
                "{}:{}",
                percent_encode(&self.user),
                percent_encode(&self.password)
            )
        };
        format!("mysql://{credentials}@{}", self.address())
    }

    /// Whether the fixture started (and so can kill, stop and restart) this server.
    pub fn is_managed(&self) -> bool {
        self.server.is_some()
    }

    /// The fixture's server, for its data dir, pid and log.
    pub fn server(&self) -> Option<&MariaDb> {
        self.server.as_ref()
    }

    /// The fixture's server, mutably.
    pub fn server_mut(&mut self) -> Option<&mut MariaDb> {
        self.server.as_mut()
    }

    /// The server's pid, if the fixture started it and it is running.
    pub fn pid(&self) -> Option<u32> {
        self.server.as_ref().and_then(MariaDb::pid)
    }

    /// Run SQL with the `mariadb` client (`--batch --skip-column-names`) and return its output:
    /// one line per row, tab-separated columns.
    pub fn sql(&self, statements: &str) -> Result<String, FixtureError> {
        run_sql(
            &Target {
                host: &self.host,
                port: self.port,
                user: &self.user,
                password: &self.password,
                socket: None,
            },
            statements,
        )
    }

    /// SIGKILL the server (a crash). [`FixtureError::Unsupported`] for external servers.
    pub fn kill(&mut self) -> Result<(), FixtureError> {
        self.owned("kill")?.kill()
    }

    /// Stop the server gracefully. [`FixtureError::Unsupported`] for external servers.
    pub fn stop(&mut self) -> Result<(), FixtureError> {
        self.owned("stop")?.stop()
    }

    /// Start the server again, same data dir and port. [`FixtureError::Unsupported`] for
    /// external servers.
    pub fn restart(&mut self) -> Result<(), FixtureError> {
        self.owned("restart")?.restart()
    }

    fn owned(&mut self, operation: &'static str) -> Result<&mut MariaDb, FixtureError> {
        let address = self.address();
        self.server
            .as_mut()
            .ok_or(FixtureError::Unsupported { operation, address })
    }
}

/// `n` backends for a test: the first `n` servers of `DBMESH_TEST_BACKENDS` when it is set,
/// otherwise `n` new `mariadbd` processes started concurrently.
pub fn backends(n: usize) -> Result<Vec<Backend>, FixtureError> {
    backends_with(n, &MariaDbBuilder::default())
}

/// Like [`backends`], starting processes with `options`; external servers ignore `options`.
pub fn backends_with(n: usize, options: &MariaDbBuilder) -> Result<Vec<Backend>, FixtureError> {
    if let Some(external) = external_backends_from_env()? {
        if external.len() < n {
            return Err(FixtureError::NotEnoughBackends {
                wanted: n,
                available: external.len(),
            });
        }
        return Ok(external.into_iter().take(n).collect());
    }
    let started: Vec<Result<MariaDb, FixtureError>> = thread::scope(|scope| {
        let handles: Vec<_> = (0..n).map(|_| scope.spawn(|| options.start())).collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    });
    // On the first error the servers that did start are dropped, and so stopped.
    started
        .into_iter()
        .map(|r| r.map(Backend::managed))
        .collect()
}

/// The servers named by `DBMESH_TEST_BACKENDS`, or `None` when it is unset or blank.
pub fn external_backends_from_env() -> Result<Option<Vec<Backend>>, FixtureError> {
    let Some(spec) = env_var(ENV_BACKENDS)? else {
        return Ok(None);
    };
    if spec.trim().is_empty() {
        return Ok(None);
    }
    let user = env_var(ENV_USER)?.unwrap_or_else(|| "root".to_owned());
    let password = env_var(ENV_PASSWORD)?.unwrap_or_default();
    parse_backends(&spec, &user, &password).map(Some)
}

fn env_var(var: &'static str) -> Result<Option<String>, FixtureError> {
    match std::env::var(var) {
        Ok(value) => Ok(Some(value)),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(value)) => Err(FixtureError::BadEnv {
            var,
            value: value.to_string_lossy().into_owned(),
            reason: "not valid UTF-8".to_owned(),
        }),
    }
}

/// Parse `host:port[,host:port...]` (IPv6 hosts in brackets: `[::1]:3306`).
pub fn parse_backends(
    spec: &str,
    user: &str,
    password: &str,
) -> Result<Vec<Backend>, FixtureError> {
    let bad = |reason: String| FixtureError::BadEnv {
        var: ENV_BACKENDS,
        value: spec.to_owned(),
        reason,
    };
    let mut out = Vec::new();
    for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (host, port) = item
            .rsplit_once(':')
            .ok_or_else(|| bad(format!("`{item}` is not host:port")))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(bad(format!("`{item}` has no host")));
        }
        let port: u16 = port
            .parse()
            .map_err(|_| bad(format!("`{item}` has no valid port")))?;
        out.push(Backend::external(host, port, user, password));
    }
    if out.is_empty() {
        return Err(bad("no host:port given".to_owned()));
    }
    Ok(out)
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_backend_lists() {
        let b = parse_backends(" 127.0.0.1:3306, db2:3316 ,[::1]:3307", "app", "p@ss").unwrap();
        let addresses: Vec<String> = b.iter().map(Backend::address).collect();
        assert_eq!(addresses, ["127.0.0.1:3306", "db2:3316", "[::1]:3307"]);
        assert_eq!(b[1].host(), "db2");
        assert_eq!(b[1].port(), 3316);
        assert_eq!(b[0].user(), "app");
        assert_eq!(b[0].password(), "p@ss");
        assert_eq!(b[0].url(), "mysql://app:p%40ss@127.0.0.1:3306");
        assert!(!b[0].is_managed());
    }

    #[test]
    fn rejects_bad_backend_lists() {
        for spec in ["", " , ", "localhost", "host:notaport", ":3306", "h:70000"] {
            let err = parse_backends(spec, "root", "").unwrap_err();
            assert!(
                matches!(
                    err,
                    FixtureError::BadEnv {
                        var: ENV_BACKENDS,
                        ..
                    }
                ),
                "{spec}: {err}"
            );
        }
    }

    #[test]
    fn external_backends_cannot_be_killed() {
        let mut b = Backend::external("127.0.0.1", 3306, "root", "");
        assert_eq!(b.url(), "mysql://root@127.0.0.1:3306");
        for result in [b.kill(), b.stop(), b.restart()] {
            let err = result.unwrap_err();
            assert!(err.is_unsupported(), "{err}");
            assert!(err.to_string().contains("127.0.0.1:3306"), "{err}");
        }
        assert_eq!(b.pid(), None);
    }
}
