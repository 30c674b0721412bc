//! Shared fixture for dbmesh's integration tests: real MariaDB servers from `testkit`, and the
//! real `dbmesh` binary started as a child process on free ports.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub use testkit::Backend;

pub const USER: &str = "dbmesh";
pub const PASSWORD: &str = "dbmesh";
/// `[proxy]` lines asking for free ports (the proxy prints the ones it got).
pub const FREE_PORTS: &str = "listen = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"";
/// The admin token every fixture proxy is configured with.
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

/// A running `dbmesh serve`, killed on drop.
pub struct Proxy {
    child: Child,
    pub port: u16,
    pub admin_port: u16,
    pub config_path: PathBuf,
    _dir: tempfile::TempDir,
    stderr_path: PathBuf,
}

impl Proxy {
    /// Starts the proxy on `config` (a rule file whose `[proxy]` table must not set `listen`,
    /// `admin_listen` or `admin_token`: the fixture asks for free ports and sets
    /// [`ADMIN_TOKEN`]).
    pub fn start(config: &str) -> Proxy {
        Self::start_with_args(config, &[])
    }

    /// Like [`Proxy::start`], with `args` added to `dbmesh serve`'s command line.
    pub fn start_with_args(config: &str, args: &[&str]) -> Proxy {
        Self::start_with(config, args, &[])
    }

    /// Like [`Proxy::start`], with `env` added to the proxy's environment.
    pub fn start_with_env(config: &str, env: &[(&str, &str)]) -> Proxy {
        Self::start_with(config, &[], env)
    }

    fn start_with(config: &str, args: &[&str], env: &[(&str, &str)]) -> Proxy {
        let head = format!("[proxy]\n{FREE_PORTS}\nadmin_token = \"{ADMIN_TOKEN}\"");
        let config = if config.contains("[proxy]") {
            config.replacen("[proxy]", &head, 1)
        } else {
            format!("{head}\n{config}")
        };
        Self::start_raw_with_args(&config, args, env)
    }

    /// Starts the proxy on `config` exactly as given (it must ask for free ports), with
    /// `env` added to its environment.
    pub fn start_raw(config: &str, env: &[(&str, &str)]) -> Proxy {
        Self::start_raw_with_args(config, &[], env)
    }

    /// Writes `config` to a rule file of its own and runs `dbmesh serve` on it with `args`
    /// and `env` added (the rule file or `args` must ask for free ports).
    pub fn start_raw_with_args(config: &str, args: &[&str], env: &[(&str, &str)]) -> Proxy {
        let dir = tempfile::tempdir().expect("temp dir");
        let config_path = dir.path().join("rules.toml");
        std::fs::write(&config_path, config).expect("write rules");
        let stderr_path = dir.path().join("proxy.log");
        let stderr = std::fs::File::create(&stderr_path).expect("log file");
        let mut child = Command::new(env!("CARGO_BIN_EXE_dbmesh"))
            .args(["serve", "--config"])
            .arg(&config_path)
            .args(args)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("spawn dbmesh");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read ready line");
        let log = std::fs::read_to_string(&stderr_path).unwrap_or_default();
        assert!(
            line.starts_with("dbmesh ready"),
            "proxy did not start: {line:?}\n{log}"
        );
        let port_of = |key: &str| -> u16 {
            let field = line
                .split_whitespace()
                .find(|f| f.starts_with(key))
                .expect("field");
            field
                .rsplit(':')
                .next()
                .expect("port")
                .trim()
                .parse()
                .expect("port number")
        };
        Proxy {
            port: port_of("mysql="),
            admin_port: port_of("admin="),
            child,
            config_path,
            _dir: dir,
            stderr_path,
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident and peak resident memory of the proxy, in KiB.
    pub fn memory_kib(&self) -> (u64, u64) {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    pub fn opts(&self, db: Option<&str>) -> mysql_async::OptsBuilder {
        mysql_async::OptsBuilder::default()
            .ip_or_hostname("127.0.0.1")
            .tcp_port(self.port)
            .prefer_socket(false)
            .user(Some(USER))
            .pass(Some(PASSWORD))
            .db_name(db)
    }

    pub async fn conn(&self, db: Option<&str>) -> mysql_async::Conn {
        mysql_async::Conn::new(self.opts(db))
            .await
            .expect("connect through dbmesh")
    }

    /// A plain HTTP request to the admin listener with the admin token: (status code, body).
    pub fn http(&self, method: &str, path: &str) -> (u16, String) {
        let auth = format!("Bearer {ADMIN_TOKEN}");
        self.http_with(method, path, &[("Authorization", &auth)])
    }

    /// A plain HTTP request to the admin listener with exactly `headers` (besides `Host` and
    /// `Content-Length`): (status code, body).
    pub fn http_with(&self, method: &str, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
        let mut s = TcpStream::connect(("127.0.0.1", self.admin_port)).expect("admin connect");
        s.set_read_timeout(Some(Duration::from_secs(10))).ok();
        let headers: String = headers
            .iter()
            .map(|(name, value)| format!("{name}: {value}\r\n"))
            .collect();
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: x\r\n{headers}Content-Length: 0\r\n\r\n"
        )
        .expect("write");
        let mut out = String::new();
        s.read_to_string(&mut out).expect("read");
        let code = out
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let body = out
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        (code, body)
    }

    /// Polls `/health` until it returns `code` or `timeout` passes.
    pub fn wait_health(&self, code: u16, timeout: Duration) -> (u16, String) {
        let start = Instant::now();
        loop {
            let got = self.http("GET", "/health");
            if got.0 == code || start.elapsed() > timeout {
                return got;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Sends SIGHUP (rule reload).
    pub fn sighup(&self) {
        let _ = Command::new("kill")
            .args(["-HUP", &self.pid().to_string()])
            .status();
    }

    /// Checks the proxy process is still alive (a bad client must never take it down).
    /// Waits up to `timeout` for the proxy to exit on its own; true if it did.
    pub fn wait_exit(&mut self, timeout: Duration) -> bool {
        let started = Instant::now();
        while started.elapsed() < timeout {
            if self.child.try_wait().expect("wait").is_some() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    pub fn assert_alive(&mut self) {
        assert!(
            self.child.try_wait().expect("wait").is_none(),
            "dbmesh exited:\n{}",
            self.log()
        );
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The head of a rule file for logical schema `schema` over four data sources `ds_0` ..
/// `ds_3` with databases `dbs`: ds_0 and ds_1 on `servers[0]`, ds_2 and ds_3 on `servers[1]`
/// (all four on `servers[0]` when it is the only one); ds_0 is the default. Tables follow.
pub fn four_data_sources(servers: &[Backend], schema: &str, dbs: &[String]) -> String {
    let mut rules = format!(
        "[proxy]\ncreate_databases = true\n\n[[users]]\nname = \"{USER}\"\npassword = \"{PASSWORD}\"\n\n\
         [schema]\nname = \"{schema}\"\ndefault_data_source = \"ds_0\"\n\n"
    );
    for (i, db) in dbs.iter().enumerate() {
        let server = &servers[(i / 2).min(servers.len() - 1)];
        rules += &format!(
            "[data_sources.ds_{i}]\naddress = \"{}\"\nuser = \"{}\"\npassword = \"{}\"\ndatabase = \"{db}\"\n\n",
            server.address(),
            server.user(),
            server.password()
        );
    }
    rules
}

/// A one-data-source rule file over `backend`, logical database `logical` on physical
/// database `physical` (created by the proxy at start).
pub fn passthrough_rules(
    backend: &Backend,
    logical: &str,
    physical: &str,
    extra_proxy: &str,
) -> String {
    format!(
        r#"[proxy]
create_databases = true
{extra_proxy}

[[users]]
name = "{USER}"
password = "{PASSWORD}"

[[users]]
name = "other"
password = "secret2"

[schema]
name = "{logical}"
default_data_source = "main"

[data_sources.main]
address = "{addr}"
user = "{user}"
password = "{password}"
database = "{physical}"
"#,
        addr = backend.address(),
        user = backend.user(),
        password = backend.password(),
    )
}

/// One backend from the fixture (a fresh mariadbd unless DBMESH_TEST_BACKENDS is set).
pub fn one_backend() -> Backend {
    testkit::backends(1)
        .expect("start a MariaDB backend")
        .remove(0)
}

/// A direct connection to the backend, for looking at what the proxy does there.
pub async fn direct(backend: &Backend) -> mysql_async::Conn {
    let opts = mysql_async::OptsBuilder::default()
        .ip_or_hostname(backend.host())
        .tcp_port(backend.port())
        .prefer_socket(false)
        .user(Some(backend.user()))
        .pass(Some(backend.password()));
    mysql_async::Conn::new(opts)
        .await
        .expect("direct connection")
}

/// A hand-driven client for malformed-input tests: blocking socket, real login.
pub struct RawClient {
    pub stream: TcpStream,
}

impl RawClient {
    /// Connects and reads the greeting; returns the client and the greeting.
    pub fn connect(port: u16) -> (RawClient, protocol::handshake::Greeting) {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        stream.set_read_timeout(Some(Duration::from_secs(10))).ok();
        let mut c = RawClient { stream };
        let (_, payload) = c.read_packet().expect("greeting");
        let greeting = protocol::handshake::Greeting::decode(&payload).expect("greeting decodes");
        (c, greeting)
    }

    /// Connects and logs in as the proxy user with mysql_native_password.
    pub fn login(port: u16, db: Option<&str>) -> RawClient {
        Self::login_as(port, USER, PASSWORD, db, 45)
    }

    /// Connects and logs in as `user` with mysql_native_password, announcing `collation`
    /// (its character set is the one the client's statements are sent in).
    pub fn login_as(
        port: u16,
        user: &str,
        password: &str,
        db: Option<&str>,
        collation: u8,
    ) -> RawClient {
        let (c, ok) = Self::try_login(port, user, password, db, collation);
        assert_eq!(ok[0], 0, "login failed: {:?}", String::from_utf8_lossy(&ok));
        c
    }

    /// Like [`RawClient::login_as`], returning the server's answer to the login (OK or ERR).
    pub fn try_login(
        port: u16,
        user: &str,
        password: &str,
        db: Option<&str>,
        collation: u8,
    ) -> (RawClient, Vec<u8>) {
        let (mut c, greeting) = Self::connect(port);
        use protocol::constants::caps;
        let response = protocol::handshake::HandshakeResponse {
            capabilities: caps::PROTOCOL_41
                | caps::SECURE_CONNECTION
                | caps::PLUGIN_AUTH
                | caps::LONG_PASSWORD
                | caps::TRANSACTIONS
                | caps::MULTI_RESULTS
                | if db.is_some() {
                    caps::CONNECT_WITH_DB
                } else {
                    0
                },
            max_packet: 1 << 24,
            collation,
            user: user.into(),
            auth_response: protocol::auth::native_password_scramble(
                password.as_bytes(),
                &greeting.nonce,
            ),
            database: db.map(str::to_string),
            auth_plugin: Some("mysql_native_password".into()),
            ..Default::default()
        };
        let mut out = bytes::BytesMut::new();
        response.encode(&mut out);
        c.write_packet(1, &out);
        let (_, answer) = c.read_packet().expect("login answer");
        (c, answer)
    }

    pub fn write_packet(&mut self, seq: u8, payload: &[u8]) {
        let mut frame = (payload.len() as u32).to_le_bytes()[..3].to_vec();
        frame.push(seq);
        frame.extend_from_slice(payload);
        self.stream.write_all(&frame).expect("write");
    }

    pub fn write_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Reads one physical packet: (sequence id, payload); None on EOF or error.
    pub fn read_packet(&mut self) -> Option<(u8, Vec<u8>)> {
        let mut header = [0u8; 4];
        self.stream.read_exact(&mut header).ok()?;
        let len = u32::from_le_bytes([header[0], header[1], header[2], 0]) as usize;
        let mut payload = vec![0u8; len];
        self.stream.read_exact(&mut payload).ok()?;
        Some((header[3], payload))
    }

    /// Reads packets until an OK or ERR at the top level of a response; returns the last.
    pub fn query(&mut self, sql: impl AsRef<[u8]>) -> Vec<u8> {
        let mut payload = vec![protocol::constants::com::QUERY];
        payload.extend_from_slice(sql.as_ref());
        self.write_packet(0, &payload);
        self.read_response()
    }

    /// Prepares `sql`: the statement id, or the ERR packet.
    pub fn prepare(&mut self, sql: &str) -> Result<u32, Vec<u8>> {
        let mut packet = vec![protocol::constants::com::STMT_PREPARE];
        packet.extend_from_slice(sql.as_bytes());
        self.write_packet(0, &packet);
        let (_, ok) = self.read_packet().expect("prepare answer");
        if ok[0] == 0xff {
            return Err(ok);
        }
        let columns = u16::from_le_bytes([ok[5], ok[6]]);
        let params = u16::from_le_bytes([ok[7], ok[8]]);
        for n in [params, columns] {
            for _ in 0..n + u16::from(n > 0) {
                self.read_packet().expect("definition"); // definitions, then an EOF
            }
        }
        Ok(u32::from_le_bytes([ok[1], ok[2], ok[3], ok[4]]))
    }

    /// Reads one response (classic EOF style, as this client does not set DEPRECATE_EOF) and
    /// returns its final packet.
    pub fn read_response(&mut self) -> Vec<u8> {
        let (_, first) = self.read_packet().expect("response");
        if first[0] == 0x00 || first[0] == 0xff {
            return first;
        }
        let mut eofs = 0;
        loop {
            let (_, p) = self.read_packet().expect("result packet");
            if p[0] == 0xff {
                return p;
            }
            if p[0] == 0xfe && p.len() < 9 {
                eofs += 1;
                if eofs == 2 {
                    return p;
                }
            }
        }
    }

    /// True when the server closed the connection (EOF or reset) within the read timeout;
    /// anything it sends before closing is skipped.
    pub fn is_closed(&mut self) -> bool {
        let mut b = [0u8; 512];
        loop {
            match self.stream.read(&mut b) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return false
                }
                Err(_) => return true,
            }
        }
    }
}

/// The (code, SQLSTATE) of a server error from `mysql_async`; any other error fails the test.
/// `v` of row `id` of table `acct (id, v)`, as a text statement (a prepared one may be
/// prepared on every shard).
pub async fn acct_value(conn: &mut mysql_async::Conn, id: i64) -> mysql_async::Result<Option<i64>> {
    use mysql_async::prelude::Queryable;
    conn.query_first(format!("SELECT v FROM acct WHERE id = {id}"))
        .await
}

/// The median and slowest of `n` point reads of `acct` row `id`, 20 ms apart, each of which
/// must return `expected` within 10 s.
pub async fn read_latency(
    conn: &mut mysql_async::Conn,
    id: i64,
    expected: i64,
    n: usize,
) -> (Duration, Duration) {
    let mut took = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        let v = tokio::time::timeout(Duration::from_secs(10), acct_value(conn, id))
            .await
            .expect("a read of the healthy backend waited 10 s")
            .expect("reading the row through the proxy");
        assert_eq!(v, Some(expected));
        took.push(started.elapsed());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    took.sort();
    (took[n / 2], took[n - 1])
}

/// Runs `query` (one integer cell) through the proxy on a new connection every 250 ms until it
/// answers, for at most `within` (a backend coming back into service), asserts the answer is
/// `expected` and returns the connection; panics with the last error past `within`.
pub async fn wait_for_answer(
    proxy: &Proxy,
    query: &str,
    expected: Option<i64>,
    within: Duration,
) -> mysql_async::Conn {
    use mysql_async::prelude::Queryable;
    let deadline = Instant::now() + within;
    loop {
        let mut conn = proxy.conn(Some("bank")).await;
        match conn.query_first::<i64, _>(query).await {
            Ok(v) => {
                assert_eq!(v, expected, "{query}");
                return conn;
            }
            Err(e) if Instant::now() < deadline => {
                println!("not yet in service: {e}");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(e) => panic!("{query} still fails after {within:?}: {e}"),
        }
    }
}

pub fn server_code(e: mysql_async::Error) -> (u16, String) {
    match e {
        mysql_async::Error::Server(s) => (s.code, s.state),
        other => panic!("expected a server error, got {other:?}"),
    }
}

/// The (code, sqlstate) of an ERR packet payload.
pub fn err_code(payload: &[u8]) -> (u16, String) {
    let e = protocol::ServerError::decode(payload).expect("an ERR packet");
    (e.code, e.sqlstate_str().to_string())
}

/// Runs sysbench against the proxy on `port` as the test user, database `sbtest`, `tables`
/// tables of 10,000 rows; `args` name the test and the command. Panics with sysbench's output
/// if it fails; returns that output.
pub fn sysbench(port: u16, tables: u32, args: &[&str]) -> String {
    let out = Command::new("sysbench")
        .args([
            "--db-driver=mysql",
            "--mysql-host=127.0.0.1",
            &format!("--mysql-port={port}"),
            &format!("--mysql-user={USER}"),
            &format!("--mysql-password={PASSWORD}"),
            "--mysql-db=sbtest",
            &format!("--tables={tables}"),
            "--table-size=10000",
        ])
        .args(args)
        .output()
        .expect("run sysbench");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    text
}
