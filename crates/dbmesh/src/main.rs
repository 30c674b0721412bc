//! The `dbmesh` command: `serve`, `check` and `explain` over a rule file, `status` and
//! `reload` against a running proxy's admin listener.

mod admin;
mod admin_client;
mod check;
mod logging;
mod rebalance;
mod reload;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::{Parser, Subcommand};
use logging::LogFormat;
use protocol::ClientError;
use server::{Context, ContextParts, Metrics, Snapshot};
use tokio::net::TcpListener;

/// Printed after `dbmesh --help`.
const AFTER_HELP: &str = "\
Ports: MySQL clients on proxy.listen (default 127.0.0.1:3307), the admin HTTP listener on
proxy.admin_listen (default 127.0.0.1:9307); serve's --listen / --admin-listen override them.

Admin endpoints: GET /health (200 ok or degraded, 503 unhealthy; the rules version in force),
GET /metrics (Prometheus), POST /reload (re-read the rule file; also on SIGHUP), POST
/primary?[data_source=NAME&]address=HOST:PORT (after a failover: the data source, or every
one the server serves, writes there; recorded in the meta data source). The POSTs need
Authorization: Bearer <token>, the token being DBMESH_ADMIN_TOKEN or proxy.admin_token.

Environment: RUST_LOG filters the log (default info; e.g. RUST_LOG=debug),
DBMESH_ADMIN_TOKEN sets the admin token (it wins over the rule file's).

Exit status: 0 success; 1 an error (an invalid rule file, problems found by check, a proxy
that cannot start, a refused admin request, an unhealthy proxy for status); 2 a usage error.

Documentation: docs/configuration.md (the rule file), docs/operations.md (running it).";

#[derive(Parser)]
#[command(
    name = "dbmesh",
    version,
    about = "A sharding MySQL proxy: one logical database over many MySQL/MariaDB servers",
    after_help = AFTER_HELP
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve MySQL clients according to a rule file (prints "dbmesh ready mysql=ADDR
    /// admin=ADDR" on stdout once listening; logs on stderr).
    Serve {
        /// The rule file (TOML; docs/configuration.md).
        #[arg(long)]
        config: PathBuf,
        /// The MySQL listener, overriding proxy.listen (default 127.0.0.1:3307).
        #[arg(long, value_name = "HOST:PORT")]
        listen: Option<String>,
        /// The admin HTTP listener, overriding proxy.admin_listen (default 127.0.0.1:9307).
        #[arg(long, value_name = "HOST:PORT")]
        admin_listen: Option<String>,
        /// The log's format on stderr: one event per line either way.
        #[arg(long, value_enum, default_value_t = LogFormat::Text)]
        log_format: LogFormat,
    },
    /// Validate a rule file and print every problem found.
    Check {
        /// The rule file (TOML; docs/configuration.md).
        #[arg(long)]
        config: PathBuf,
        /// Also log in to every data source's primary and replicas and check the account's
        /// privileges, the databases, replication and that every shard of a table has the
        /// same definition.
        #[arg(long)]
        connect: bool,
    },
    /// Show where a statement would be routed: the plan, then each data source, its
    /// database and the SQL it would run.
    Explain {
        /// The rule file (TOML; docs/configuration.md).
        #[arg(long)]
        config: PathBuf,
        /// The statement, in the logical database's terms.
        sql: String,
    },
    /// Ask a running proxy how it is: its GET /health (exit status 1 when unhealthy).
    Status {
        #[command(flatten)]
        admin: admin_client::AdminArgs,
    },
    /// Make a running proxy re-read its rule file (POST /reload) and print what changed.
    Reload {
        #[command(flatten)]
        admin: admin_client::AdminArgs,
    },
    /// Move UID slices to another data source while clients keep writing
    /// (docs/rebalancing.md).
    Rebalance(rebalance::RebalanceArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { config, connect } => {
            let rules = load(&config)?;
            println!(
                "{}: OK ({} data sources, {} table rules, logical database '{}')",
                config.display(),
                rules.data_sources.len(),
                rules.tables.len(),
                rules.schema.name
            );
            if connect {
                check_servers(&rules)?;
            }
            Ok(())
        }
        Command::Explain { config, sql } => {
            let rules = std::sync::Arc::new(load(&config)?);
            let router = router::Router::new(rules.clone(), 1);
            match router.route(&sql, &[]) {
                Ok(plan) => {
                    print!("{}", explain(&plan, &rules));
                    Ok(())
                }
                Err(e) => bail!("{}", e.to_server_error()),
            }
        }
        Command::Status { admin } => admin_client::status(&admin),
        Command::Reload { admin } => admin_client::reload(&admin),
        Command::Rebalance(args) => rebalance::run(args),
        Command::Serve {
            config,
            listen,
            admin_listen,
            log_format,
        } => {
            logging::init(log_format);
            // The control runtime: accept loop, admin HTTP, health checks, signals. Client
            // sessions run on the worker event loops started by `serve`.
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()?
                .block_on(serve(config, listen, admin_listen))
        }
    }
}

/// `check --connect`: every problem on its own line on stderr; an error when there is any.
fn check_servers(rules: &rules::Rules) -> anyhow::Result<()> {
    let report = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(check::check_servers(rules));
    for problem in &report.problems {
        eprintln!("{problem}");
    }
    if !report.problems.is_empty() {
        bail!("{} problem(s) found on the servers", report.problems.len());
    }
    println!(
        "servers: OK ({} servers logged in to, {} physical tables compared{})",
        report.servers_reached,
        report.tables_compared,
        match report.databases_to_create {
            0 => String::new(),
            n => format!(", {n} databases created at start by proxy.create_databases"),
        }
    );
    Ok(())
}

fn load(path: &Path) -> anyhow::Result<rules::Rules> {
    Ok(load_rules(path)?.0)
}

/// Reads and validates the rule file at `path`: the rules, and the first 16 hex digits of
/// the SHA-256 of its text (which metrics and `/health` show, so a DBA can tell which file
/// is in force).
fn load_rules(path: &Path) -> anyhow::Result<(rules::Rules, String)> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("{}: cannot read the rule file: {e}", path.display()))?;
    match rules::parse_str(&text, path) {
        Ok(r) => Ok((r, rules_hash(&text))),
        Err(e) => bail!("{e}"),
    }
}

fn rules_hash(text: &str) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(text.as_bytes())
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `explain`'s answer: the plan's kind and how results combine (each merge step), renames,
/// then one row per target with its data source's database.
fn explain(plan: &router::Plan, rules: &rules::Rules) -> String {
    let mut out = format!("{} ({})\n", plan.kind, plan.combine);
    for (physical, logical) in &plan.rename {
        out += &format!("rename {physical} -> {logical}\n");
    }
    if !plan.add_tables.is_empty() {
        out += &format!("add tables {}\n", plan.add_tables.join(", "));
    }
    if plan.targets.is_empty() {
        return out;
    }
    out += "data_source\tdatabase\tsql\n";
    for target in &plan.targets {
        let database = rules
            .data_sources
            .get(&target.data_source)
            .map_or("", |d| d.database.as_str());
        out += &format!("{}\t{database}\t{}\n", target.data_source, target.sql);
    }
    out
}

/// Serves on the rule file's listeners, or on `listen` / `admin_listen` when given.
async fn serve(
    config: PathBuf,
    listen: Option<String>,
    admin_listen: Option<String>,
) -> anyhow::Result<()> {
    let env_token = admin::env_token().map_err(anyhow::Error::msg)?;
    let (rules, rules_sha256) = load_rules(&config)?;
    if rules.proxy.create_databases {
        create_databases(&rules).await;
    }
    let tls = match &rules.proxy.tls {
        Some(t) => Some(
            server::tls::acceptor(t)
                .map_err(anyhow::Error::msg)
                .context("loading the TLS certificate")?,
        ),
        None => None,
    };
    let listen = listen.unwrap_or_else(|| rules.proxy.listen.clone());
    let worker_threads = match rules.proxy.worker_threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let admin_listen = admin_listen.unwrap_or_else(|| rules.proxy.admin_listen.clone());
    // Switches recorded in the meta data source hold across restarts: the first snapshot
    // already writes to the recorded primaries.
    let check_timeout = Duration::from_millis(rules.replication.health_check_timeout_ms);
    // Unread, they may name other servers than the rule file: fail closed until they are read.
    let records = server::primaries::read(&rules, &rules, check_timeout).await;
    // A cutover's slice map holds across restarts as well; unread, every uid_slice table's
    // statements wait until the follower reads it (another proxy may have switched it).
    let slice_map = read_slice_map(&rules, check_timeout).await;
    let mut in_force = match &slice_map {
        Ok(map) => server::apply_slice_map(&rules, map).map_err(|e| {
            anyhow::anyhow!(
                "the slice map version {} in the meta data source does not fit the rule file: {e}",
                map.version
            )
        })?,
        Err(e) => {
            tracing::error!(error = e, "the slice map of the meta data source is unreadable at start: statements to uid_slice tables wait until it is read");
            rules.clone()
        }
    };
    match &records {
        Ok(records) => server::primaries::apply(&mut in_force, records),
        Err(e) => tracing::error!(error = e, "no server of the meta data source answered at start: the primaries recorded there are unknown, so no primary of a data source with replicas gets a statement (reads go to replicas) until a health-check round reads them"),
    }
    let snapshot = Snapshot::build(in_force, None);
    let server_version = match &snapshot.rules.proxy.server_version {
        Some(v) => v.clone(),
        None => {
            let generic = || "8.0.36-dbmesh".to_string();
            match snapshot.default_pool().check().await {
                Ok(v) => v.unwrap_or_else(generic),
                Err(e) => {
                    tracing::warn!(error = %e, "default data source unreachable at start; announcing a generic version");
                    generic()
                }
            }
        }
    };
    let sequences = if snapshot.rules.sequences.is_empty() {
        Err("no [sequences] in the rule file".to_string())
    } else {
        match sequence::Sequences::start(&snapshot.rules, sequence::SequenceOptions::default())
            .await
        {
            Ok(s) => Ok(Arc::new(s)),
            Err(e) => {
                tracing::warn!(error = %e, "sequences unavailable");
                Err(e.to_string())
            }
        }
    };
    let metrics = Arc::new(Metrics::new());
    metrics.rules_applied(&rules_sha256);
    let xa = match snapshot.rules.transaction_mode() {
        rules::TransactionMode::Local => {
            if snapshot.rules.data_sources.len() > 1 {
                tracing::info!("transaction_mode is 'local': a transaction that writes on several data sources commits on each in turn, not atomically");
            }
            None
        }
        // Before clients are accepted, so its recovery round runs first.
        rules::TransactionMode::Xa => {
            match server::Xa::start(&snapshot.rules, metrics.registry()).await {
                Ok(xa) => Some(xa),
                Err(e) => {
                    tracing::error!(error = %e, "distributed transactions unavailable: transactions in 'xa' mode are refused until a restart reaches the meta data source");
                    None
                }
            }
        }
    };
    let ctx = Context::new(ContextParts {
        snapshot,
        file_rules: rules,
        records,
        metrics,
        tls,
        server_version,
        sequences,
        xa,
        slice_map,
    });
    server::cutover::spawn_follower(ctx.clone());
    let listener = TcpListener::bind(&listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    let admin = TcpListener::bind(&admin_listen)
        .await
        .with_context(|| format!("binding admin {admin_listen}"))?;
    // Before the ready line: a SIGHUP that arrives before its handler is installed ends the
    // process.
    let hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("installing the SIGHUP handler")?;
    tracing::info!(listen = %listener.local_addr()?, admin = %admin.local_addr()?, rules = %config.display(), "dbmesh serving");
    // One parseable line on stdout, so scripts and tests that ask for port 0 learn the ports.
    println!(
        "dbmesh ready mysql={} admin={}",
        listener.local_addr()?,
        admin.local_addr()?
    );
    admin::start_health_checks(ctx.clone()).await;
    tokio::spawn(admin::serve(admin, ctx.clone(), config.clone(), env_token));
    tokio::spawn(reload_on_sighup(ctx.clone(), config, hangups));
    let workers = start_workers(worker_threads)?;
    server::run(listener, ctx.clone(), shutdown_signal(), &workers).await;
    tracing::info!("dbmesh stopped accepting connections");
    if let Some(xa) = &ctx.xa {
        xa.shutdown().await;
    }
    Ok(())
}

/// The newest slice map in the meta data source: version 0 (the rule file's) when there is
/// no meta data source or no version was written.
async fn read_slice_map(
    rules: &rules::Rules,
    timeout: Duration,
) -> Result<meta::SliceMapVersion, String> {
    let mut meta = match meta::Meta::new(rules, timeout) {
        Ok(meta) => meta,
        Err(_) => return Ok(meta::SliceMapVersion::default()),
    };
    meta::slice_map::latest(&mut meta)
        .await
        .map_err(|e| e.to_string())
}

/// Starts `count` single-threaded event loops for client sessions, each on its own thread for
/// the life of the process.
/// A worker's stack: statements are parsed and planned on it, and every walk of a statement's
/// tree recurses once per level (up to `sql`'s operator limit; an unoptimised build's frames
/// take kilobytes each). Untouched pages cost nothing.
const WORKER_STACK: usize = 16 << 20;

fn start_workers(count: usize) -> anyhow::Result<Vec<tokio::runtime::Handle>> {
    (0..count)
        .map(|index| {
            // Sockets and timers only: the signal and process drivers (on the control
            // runtime) would be polled on every park of this loop.
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .enable_time()
                .build()?;
            let handle = runtime.handle().clone();
            std::thread::Builder::new()
                .name(format!("dbmesh-worker-{index}"))
                .stack_size(WORKER_STACK)
                .spawn(move || {
                    backend::set_worker(index + 1);
                    runtime.block_on(std::future::pending::<()>());
                })?;
            Ok(handle)
        })
        .collect()
}

/// Creates every data source's database if missing (the quickstart's embedded default).
async fn create_databases(rules: &rules::Rules) {
    for (name, ds) in &rules.data_sources {
        let options = backend::ConnectOptions::for_data_source(name, ds);
        let result = async {
            let mut conn = backend::BackendConn::connect(&options).await?;
            conn.query(&format!(
                "CREATE DATABASE IF NOT EXISTS `{}`",
                ds.database.replace('`', "``")
            ))
            .await
        }
        .await;
        if let Err(e) = result {
            tracing::warn!(data_source = %name, error = %e, "could not create the data source's database");
        }
    }
}

/// Re-reads the rule file on SIGHUP, validated exactly as `dbmesh check`; a bad file leaves
/// the current rules in force. `admin::reload` logs the outcome.
async fn reload_on_sighup(
    ctx: Arc<Context>,
    config: PathBuf,
    mut hangups: tokio::signal::unix::Signal,
) {
    while hangups.recv().await.is_some() {
        let _ = admin::reload(&ctx, &config, "SIGHUP");
    }
}

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}
