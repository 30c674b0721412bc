//! A `mariadbd` process owned by a test: its temp dir (data dir copied from the cached
//! template, socket, pid file, log), its TCP port on 127.0.0.1, and its lifecycle (start,
//! crash, stop, restart, stop on drop).

use std::collections::hash_map::RandomState;
use std::fs;
use std::hash::{BuildHasher, Hasher};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::error::{FixtureError, IoContext};
use crate::netns::NetNs;
use crate::process::ServerProcess;
use crate::template::{copy_template, template_dir};
use crate::tools::{find_program, run_sql, Target};

/// The host every fixture server listens on, unless it runs in a network namespace
/// ([`MariaDbBuilder::in_netns`]).
pub const HOST: &str = "127.0.0.1";
const USER: &str = "root";
const DEFAULT_MAX_CONNECTIONS: u32 = 300;
const DEFAULT_STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a graceful stop may take before the server is SIGKILLed.
const STOP_GRACE: Duration = Duration::from_secs(30);
/// Ports are drawn from below Linux's default ephemeral range (32768-60999), where the
/// kernel's own choices for outgoing connections cannot race us for them.
const PORT_RANGE: std::ops::Range<u16> = 20_000..32_000;
const PORT_ATTEMPTS: usize = 8;

/// Options for starting a [`MariaDb`]; `MariaDbBuilder::default().start()` equals
/// [`MariaDb::start`].
#[derive(Debug, Clone)]
pub struct MariaDbBuilder {
    args: Vec<String>,
    max_connections: u32,
    startup_timeout: Duration,
    /// `(namespace, address)`: the server runs in that network namespace, on that address.
    netns: Option<(String, String)>,
}

impl Default for MariaDbBuilder {
    fn default() -> Self {
        MariaDbBuilder {
            args: Vec::new(),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            startup_timeout: DEFAULT_STARTUP_TIMEOUT,
            netns: None,
        }
    }
}

impl MariaDbBuilder {
    /// Add one `mariadbd` option, e.g. `--log-bin=mariadb-bin`, `--server-id=2`,
    /// `--gtid-domain-id=1`, `--read-only`. Extra options come after the fixture's own, so for
    /// options that take a value the extra one wins.
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Add several `mariadbd` options (see [`MariaDbBuilder::arg`]).
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Logs every change as a rebalancing source must: `--log-bin`, `--binlog-format=ROW`,
    /// `--binlog-row-image=FULL`, with `server_id` (unique among the servers a test follows).
    pub fn row_binlog(self, server_id: u32) -> Self {
        self.args([
            format!("--server-id={server_id}"),
            "--log-bin=mariadb-bin".to_string(),
            "--binlog-format=ROW".to_string(),
            "--binlog-row-image=FULL".to_string(),
        ])
    }

    /// Turns TLS on: `--ssl-ca`, `--ssl-cert` and `--ssl-key` with these PEM files (the CA
    /// that signed the certificate, the server's certificate, its private key). Clients may
    /// then switch to TLS; they are not required to.
    pub fn tls(self, ca: &Path, cert: &Path, key: &Path) -> Self {
        self.args([
            format!("--ssl-ca={}", ca.display()),
            format!("--ssl-cert={}", cert.display()),
            format!("--ssl-key={}", key.display()),
        ])
    }

    /// `--max-connections` (default 300).
    pub fn max_connections(mut self, n: u32) -> Self {
        self.max_connections = n;
        self
    }

    /// How long to wait for the server to answer a query (default 30 s).
    pub fn startup_timeout(mut self, timeout: Duration) -> Self {
        self.startup_timeout = timeout;
        self
    }

    /// Run the server inside `netns`, listening on its address instead of 127.0.0.1, so that
    /// its traffic crosses a link the test can break ([`NetNs::drop_packets`]).
    pub fn in_netns(mut self, netns: &NetNs) -> Self {
        self.netns = Some((netns.name().to_owned(), netns.address().to_owned()));
        self
    }

    /// The extra `mariadbd` options given so far.
    pub fn extra_args(&self) -> &[String] {
        &self.args
    }

    /// Create a data dir from the template, pick a free port and start the server; returns once
    /// it answers a query over TCP.
    pub fn start(&self) -> Result<MariaDb, FixtureError> {
        let mariadbd = find_program(&["mariadbd", "mysqld"])?;
        let template = template_dir(&mariadbd)?;
        let dir = tempfile::Builder::new()
            .prefix("dbmesh-mariadb-")
            .tempdir()
            .context(|| "cannot create a temp dir".to_owned())?;
        let datadir = dir.path().join("data");
        copy_template(&template, &datadir)?;
        let host = match &self.netns {
            Some((_, address)) => address.clone(),
            None => HOST.to_owned(),
        };
        let mut server = MariaDb {
            host,
            socket: dir.path().join("mariadbd.sock"),
            pid_file: dir.path().join("mariadbd.pid"),
            log_path: dir.path().join("mariadbd.log"),
            datadir,
            dir,
            port: 0,
            mariadbd,
            options: self.clone(),
            process: None,
        };
        server.launch(None)?;
        Ok(server)
    }
}

/// A `mariadbd` process started by the fixture, listening on `127.0.0.1:port()`, where `root`
/// logs in with an empty password (`mysql_native_password`).
///
/// Dropping it stops the server (SIGTERM, then SIGKILL after 30 s) and deletes its directory,
/// also when the test panics. If the test process itself is killed, a watchdog process does the
/// same.
///
/// Defaults chosen for tests: 32 MiB buffer pool, 8 MiB redo log, no performance schema,
/// `utf8mb4` server charset, `max_allowed_packet` 64 MiB, `--skip-name-resolve`, and
/// `innodb_flush_log_at_trx_commit=2` (a committed transaction survives [`MariaDb::kill`],
/// which is a process crash, but not a crash of the machine).
#[derive(Debug)]
pub struct MariaDb {
    // `process` is declared (and so dropped) before `dir`; `Drop` stops it explicitly anyway.
    process: Option<ServerProcess>,
    dir: TempDir,
    host: String,
    datadir: PathBuf,
    socket: PathBuf,
    pid_file: PathBuf,
    log_path: PathBuf,
    port: u16,
    mariadbd: PathBuf,
    options: MariaDbBuilder,
}

impl MariaDb {
    /// Start a server with the default options.
    pub fn start() -> Result<MariaDb, FixtureError> {
        MariaDbBuilder::default().start()
    }

    /// Options for starting a server: extra `mariadbd` arguments, limits, timeouts.
    pub fn builder() -> MariaDbBuilder {
        MariaDbBuilder::default()
    }

    /// `127.0.0.1`, or the namespace's address ([`MariaDbBuilder::in_netns`]).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The TCP port; it stays the same across [`MariaDb::restart`].
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `<host>:<port>`.
    pub fn address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// Always `root`.
    pub fn user(&self) -> &str {
        USER
    }

    /// Always empty.
    pub fn password(&self) -> &str {
        ""
    }

    /// The server's pid while the fixture has it running (`None` after `kill` or `stop`).
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(ServerProcess::pid)
    }

    /// The data directory (kept across `kill`, `stop` and `restart`).
    pub fn datadir(&self) -> &Path {
        &self.datadir
    }

    /// The instance's temp dir, holding `data/`, the socket, the pid file and the log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The Unix socket path.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The file receiving the server's stdout and stderr (its error log).
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The last lines of the server's log, for assertion messages.
    pub fn log_tail(&self) -> String {
        read_log_tail(&self.log_path, 0)
    }

    /// The options it was started with.
    pub fn options(&self) -> &MariaDbBuilder {
        &self.options
    }

    /// Run SQL with the `mariadb` client (`--batch --skip-column-names`): rows come back one a
    /// line, columns separated by tabs.
    pub fn sql(&self, statements: &str) -> Result<String, FixtureError> {
        run_sql(
            &Target {
                host: &self.host,
                port: self.port,
                user: USER,
                password: "",
                socket: None,
            },
            statements,
        )
    }

    /// SIGKILL the server, as in a crash. No-op if it is not running.
    pub fn kill(&mut self) -> Result<(), FixtureError> {
        match self.process.take() {
            Some(process) => process.kill(),
            None => Ok(()),
        }
    }

    /// Stop the server gracefully (SIGTERM; SIGKILL after 30 s). No-op if it is not running.
    pub fn stop(&mut self) -> Result<(), FixtureError> {
        if let Some(process) = self.process.take() {
            process.terminate(STOP_GRACE)?;
        }
        Ok(())
    }

    /// Start the server again on the same data dir and port (stopping it first if it runs).
    pub fn restart(&mut self) -> Result<(), FixtureError> {
        self.stop()?;
        self.launch(Some(self.port))
    }

    /// Spawn `mariadbd` and wait until it answers on TCP. With `fixed_port` (restart) a port
    /// that is briefly taken is retried; otherwise a new port is drawn.
    fn launch(&mut self, fixed_port: Option<u16>) -> Result<(), FixtureError> {
        let deadline = Instant::now() + self.options.startup_timeout;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let port = match fixed_port {
                Some(port) => port,
                None => pick_port()?,
            };
            let log_offset = fs::metadata(&self.log_path).map(|m| m.len()).unwrap_or(0);
            let mut args = base_server_args(
                &self.datadir,
                &self.socket,
                &self.pid_file,
                self.options.max_connections,
            );
            args.push(format!("--port={port}"));
            args.push(format!("--bind-address={}", self.host));
            args.push(format!("--tmpdir={}", self.dir.path().display()));
            args.extend(self.options.args.iter().cloned());

            let mut process = match &self.options.netns {
                // `ip netns exec` execs the server, so the pid is the server's.
                Some((netns, _)) => {
                    let mut wrapped = vec![
                        "netns".to_owned(),
                        "exec".to_owned(),
                        netns.clone(),
                        self.mariadbd.display().to_string(),
                    ];
                    wrapped.extend(args);
                    let ip = find_program(&["ip"])?;
                    ServerProcess::spawn(&ip, &wrapped, &self.log_path, Some(self.dir.path()))?
                }
                None => ServerProcess::spawn(
                    &self.mariadbd,
                    &args,
                    &self.log_path,
                    Some(self.dir.path()),
                )?,
            };
            let failure = match self.wait_ready(&mut process, port, deadline)? {
                None => {
                    self.port = port;
                    self.process = Some(process);
                    return Ok(());
                }
                Some(failure) => failure,
            };
            // Reap it (SIGKILL if it is still starting) before reading its last words.
            process.kill()?;
            let log = read_log_tail(&self.log_path, log_offset);
            let port_taken = log.contains("Address already in use");
            if port_taken && attempt < PORT_ATTEMPTS && Instant::now() < deadline {
                if fixed_port.is_some() {
                    thread::sleep(Duration::from_millis(250));
                }
                continue;
            }
            return Err(FixtureError::Startup {
                port,
                reason: failure,
                log_path: self.log_path.clone(),
                log,
            });
        }
    }

    /// `None` once the server answers `SELECT @@socket` with its own socket over TCP (which
    /// proves the port is ours), `Some(reason)` if it exited or timed out.
    fn wait_ready(
        &self,
        process: &mut ServerProcess,
        port: u16,
        deadline: Instant,
    ) -> Result<Option<String>, FixtureError> {
        let ip: Ipv4Addr = self.host.parse().unwrap_or(Ipv4Addr::LOCALHOST);
        let addr = SocketAddr::from((ip, port));
        let target = Target {
            host: &self.host,
            port,
            user: USER,
            password: "",
            socket: None,
        };
        let socket = self.socket.display().to_string();
        loop {
            if let Some(status) = process.exited()? {
                return Ok(Some(format!("mariadbd exited with {status}")));
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(250)).is_ok() {
                if self.options.netns.is_some() {
                    // The template lets root in from 127.0.0.1 only: from the namespace's own
                    // socket, let it in from the host's end of the link too (kept in the data
                    // dir, so a restart finds it).
                    let local = Target {
                        socket: Some(&self.socket),
                        ..target
                    };
                    let _ = run_sql(
                        &local,
                        "CREATE USER IF NOT EXISTS 'root'@'%'; \
                         GRANT ALL PRIVILEGES ON *.* TO 'root'@'%' WITH GRANT OPTION",
                    );
                }
                if let Ok(out) = run_sql(&target, "SELECT @@socket") {
                    if out.trim() == socket {
                        return Ok(None);
                    }
                }
            }
            if Instant::now() > deadline {
                return Ok(Some(format!(
                    "no answer within {:?}",
                    self.options.startup_timeout
                )));
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        // Errors cannot be reported from drop; the watchdog is the backstop.
        let _ = self.stop();
    }
}

/// Options shared by the template's first boot and every instance.
pub(crate) fn base_server_args(
    datadir: &Path,
    socket: &Path,
    pid_file: &Path,
    max_connections: u32,
) -> Vec<String> {
    // --no-defaults must come first: no /etc/mysql/my.cnf may leak into a test server.
    let mut args = vec![
        "--no-defaults".to_owned(),
        format!("--datadir={}", datadir.display()),
        format!("--socket={}", socket.display()),
        format!("--pid-file={}", pid_file.display()),
    ];
    if rustix::process::geteuid().is_root() {
        // mariadbd refuses to run as root unless told to.
        args.push("--user=root".to_owned());
    }
    args.extend(
        [
            "--innodb-buffer-pool-size=32M",
            "--innodb-log-file-size=8M",
            "--innodb-flush-log-at-trx-commit=2",
            "--skip-name-resolve",
            "--performance-schema=OFF",
            "--character-set-server=utf8mb4",
            "--collation-server=utf8mb4_general_ci",
            "--max-allowed-packet=64M",
        ]
        .map(String::from),
    );
    args.push(format!("--max-connections={max_connections}"));
    args
}

/// The log from byte `offset` on, cut to its last 60 lines.
pub(crate) fn read_log_tail(path: &Path, offset: u64) -> String {
    let bytes = fs::read(path).unwrap_or_default();
    let start = usize::try_from(offset).unwrap_or(0).min(bytes.len());
    let text = String::from_utf8_lossy(&bytes[start..]);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(60)..].join("\n")
}

/// A port in [`PORT_RANGE`] that is free right now, or one the kernel picks.
fn pick_port() -> Result<u16, FixtureError> {
    let seed = RandomState::new();
    let span = u64::from(PORT_RANGE.end - PORT_RANGE.start);
    for i in 0..64u64 {
        let mut hasher = seed.build_hasher();
        hasher.write_u32(std::process::id());
        hasher.write_u64(i);
        let offset = u16::try_from(hasher.finish() % span).unwrap_or(0);
        let port = PORT_RANGE.start + offset;
        if TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return Ok(port);
        }
    }
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .context(|| "cannot bind a free port on 127.0.0.1".to_owned())?;
    let port = listener
        .local_addr()
        .context(|| "cannot read a bound port".to_owned())?
        .port();
    Ok(port)
}
