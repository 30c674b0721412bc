//! `dbmesh rebalance --config F move|status|verify`: the DBA's commands for moving UID
//! slices to another data source (docs/rebalancing.md). The work is the `rebalance`
//! crate's; this module parses the arguments, shows progress and maps outcomes to exit
//! statuses.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::{Args, Subcommand};
use meta::moves::{self, MoveRecord};
use meta::{Meta, Phase, SliceSet};
use rebalance::progress::{ProgressView, RateMeter, Reporter};
use rebalance::{
    find_move, plan_of, CatchUpEnd, CopyProgress, MoveRequest, MoveSettings, Mover,
    ThrottleSettings, VerifySettings,
};
use rules::Rules;

#[derive(Args)]
pub struct RebalanceArgs {
    /// The rule file (TOML; docs/configuration.md); its proxy.meta_data_source holds the
    /// moves' state.
    #[arg(long)]
    config: PathBuf,
    #[command(subcommand)]
    command: RebalanceCommand,
}

#[derive(Subcommand)]
enum RebalanceCommand {
    /// Copy the slices' rows to the destination, then keep it caught up from the sources'
    /// binlogs until Ctrl-C/SIGTERM (state saved, exit 0) or until another process requests
    /// a cutover or an abort. Run it again to resume a move that was stopped or killed.
    Move {
        /// The UID slices, e.g. 30-44 or 30-44,50.
        #[arg(long)]
        slices: String,
        /// The destination: a data source that is a node of the tables in the rules, or
        /// ds.table when it holds several nodes of a table.
        #[arg(long)]
        to: String,
        /// Move this table's binding group only (repeatable); every uid_slice table by
        /// default.
        #[arg(long)]
        table: Vec<String>,
        /// Copy at most this many rows per second (the source's load backs it off further).
        #[arg(long, value_name = "ROWS_PER_S")]
        rate: Option<u32>,
        /// Rows per chunk: one destination transaction and one saved cursor each.
        #[arg(long, default_value_t = 1000)]
        chunk_rows: usize,
        /// Seconds after this process stops renewing its lease (killed) before another may
        /// take the move over.
        #[arg(long, default_value_t = 15)]
        lease: u64,
        /// Go on through verification and cutover, and exit once the move is complete.
        #[arg(long)]
        cutover: bool,
    },
    /// Show a move: phase, rows copied of the total, copy rate, catch-up lag, ETA.
    Status {
        /// The move; the newest in progress by default.
        #[arg(long)]
        id: Option<u64>,
    },
    /// Compare the moving rows of the sources and the destination, chunk by chunk (exit
    /// status 1 when they differ, naming the chunks and keys).
    Verify {
        /// The move; the newest in progress by default.
        #[arg(long)]
        id: Option<u64>,
        /// Source rows per checksummed chunk.
        #[arg(long, default_value_t = 10_000)]
        chunk_rows: usize,
    },
}

/// Runs `dbmesh rebalance`.
pub fn run(args: RebalanceArgs) -> anyhow::Result<()> {
    crate::logging::init(crate::logging::LogFormat::Text);
    let rules = crate::load(&args.config)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    match args.command {
        RebalanceCommand::Move {
            slices,
            to,
            table,
            rate,
            chunk_rows,
            lease,
            cutover,
        } => {
            if cutover {
                bail!("--cutover is not available yet: run the move without it; it keeps the destination caught up until a cutover is requested");
            }
            let slices: SliceSet = slices
                .parse()
                .map_err(|e| anyhow::anyhow!("--slices: {e}"))?;
            let mut settings = MoveSettings {
                lease: Duration::from_secs(lease.max(1)),
                ..MoveSettings::default()
            };
            settings.copy.chunk_rows = chunk_rows.max(1);
            settings.copy.throttle = ThrottleSettings {
                rows_per_second: rate,
                ..ThrottleSettings::default()
            };
            let request = MoveRequest {
                slices,
                destination: to,
                tables: table,
            };
            runtime.block_on(run_move(rules, request, settings))
        }
        RebalanceCommand::Status { id } => runtime.block_on(status(rules, id)),
        RebalanceCommand::Verify { id, chunk_rows } => {
            runtime.block_on(verify(rules, id, chunk_rows.max(1)))
        }
    }
}

/// Who drives a move from this process: `host:pid`.
fn driver_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into());
    format!("{host}:{}", std::process::id())
}

async fn run_move(
    rules: Rules,
    request: MoveRequest,
    settings: MoveSettings,
) -> anyhow::Result<()> {
    let driver = driver_name();
    let mut mover = Mover::begin(rules, &request, &driver, settings).await?;
    println!("move {}: {}", mover.id, mover.plan);
    let mut reporter = Reporter::new();
    let progress = Arc::new(CopyProgress::default());
    let id = mover.id;
    let copied = {
        let copy = mover.copy(progress.clone());
        tokio::pin!(copy);
        let stop = crate::shutdown_signal();
        tokio::pin!(stop);
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        let mut meter = RateMeter::default();
        loop {
            tokio::select! {
                result = &mut copy => break Some(result),
                _ = &mut stop => break None,
                _ = tick.tick() => {
                    let rows_copied = progress.rows_copied.load(std::sync::atomic::Ordering::Relaxed);
                    reporter.show(&ProgressView {
                        id,
                        phase: Phase::Copying,
                        rows_copied,
                        rows_total: progress.rows_total.load(std::sync::atomic::Ordering::Relaxed),
                        rate: meter.rate(rows_copied),
                        lag_seconds: None,
                        lag_transactions: None,
                    });
                }
            }
        }
    };
    reporter.finish_line();
    match copied {
        None => {
            mover.stop(Vec::new()).await?;
            println!("move {id}: stopped while copying; run the same command to resume");
            return Ok(());
        }
        Some(result) => result.context("copying")?,
    }
    println!("move {id}: copied; catching up from the sources' binlogs");
    let followers = mover.start_catch_up().await?;
    let outcome = mover
        .catch_up(followers, crate::shutdown_signal(), |view| {
            reporter.show(view)
        })
        .await;
    reporter.finish_line();
    let (end, followers) = outcome.context("catching up")?;
    mover.stop(followers).await?;
    match end {
        CatchUpEnd::Stopped => {
            println!("move {id}: stopped, positions saved; run the same command to resume")
        }
        CatchUpEnd::Requested(request) => println!(
            "move {id}: {} requested; stopped with positions saved",
            request.as_str()
        ),
    }
    Ok(())
}

async fn status(rules: Rules, id: Option<u64>) -> anyhow::Result<()> {
    let mut meta = Meta::new(&rules, Duration::from_secs(10))?;
    let record = find_move(&mut meta, id).await?;
    let rate = moves::copy_rate(&mut meta, record.id, Duration::from_secs(10)).await?;
    print!("{}", describe(&rules, &record, rate).await);
    Ok(())
}

/// The status of `record` for people, with each source's lag read from the source now.
async fn describe(rules: &Rules, record: &MoveRecord, rate: f64) -> String {
    let mut out = format!(
        "move {}: slices {} to {}, phase {}",
        record.id, record.slices, record.destination, record.phase
    );
    if let Some(request) = record.requested {
        out += &format!(", {} requested", request.as_str());
    }
    match record.driver_remaining {
        Some(left) => {
            out += &format!(
                " (driven by {}, lease {:.1} s)",
                record.driver,
                left.as_secs_f64()
            )
        }
        None => out += " (no driver running)",
    }
    out += &format!(
        "\n  created {}, updated {}\n",
        record.created_at, record.updated_at
    );
    if !record.error.is_empty() {
        out += &format!("  last error: {}\n", record.error);
    }
    let view = ProgressView {
        id: record.id,
        phase: record.phase,
        rows_copied: record.nodes.iter().map(|n| n.rows_copied).sum(),
        rows_total: record.nodes.iter().map(|n| n.rows_total).sum(),
        rate: (record.phase == Phase::Copying).then_some(rate),
        lag_seconds: None,
        lag_transactions: None,
    };
    out += &format!("  {view}\n");
    for node in &record.nodes {
        out += &format!(
            "  {} -> {}: {}/{} rows in {} chunks{}\n",
            node.source_node,
            node.destination_node,
            node.rows_copied,
            node.rows_total,
            node.chunks,
            if node.done { ", copied" } else { "" }
        );
    }
    for source in &record.sources {
        out += &format!(
            "  {}: catch-up from {} (snapshot {}), processed {}",
            source.data_source,
            or_none(&source.start_position),
            or_none(&source.snapshot_position),
            or_none(&source.processed_position)
        );
        let head = match rules.data_source(&source.data_source) {
            Some(ds) => binlog::check_source(&backend::ConnectOptions::for_data_source(
                &source.data_source,
                ds,
            ))
            .await
            .map_err(|e| e.to_string()),
            None => Err("not in the rules".into()),
        };
        let processed = source.resume_position().parse::<binlog::GtidPosition>();
        match (head, processed) {
            (Ok(head), Ok(processed)) if !source.start_position.is_empty() => {
                out += &format!(
                    "; source at {head}, {} transactions behind",
                    processed.transactions_until(&head)
                )
            }
            (Err(e), _) => out += &format!("; source unreadable: {e}"),
            _ => {}
        }
        out.push('\n');
    }
    out
}

fn or_none(text: &str) -> &str {
    if text.is_empty() {
        "-"
    } else {
        text
    }
}

async fn verify(rules: Rules, id: Option<u64>, chunk_rows: usize) -> anyhow::Result<()> {
    let mut meta = Meta::new(&rules, Duration::from_secs(10))?;
    let record = find_move(&mut meta, id).await?;
    let plan = plan_of(&rules, &mut meta, &record).await?;
    let settings = VerifySettings {
        chunk_rows,
        ..VerifySettings::default()
    };
    let report = rebalance::verify(
        &rules,
        &plan,
        &settings,
        &rebalance::RebalanceMetrics::new(),
    )
    .await?;
    for table in &report.tables {
        println!(
            "{} -> {}: {} rows in {} chunks, {}",
            table.source,
            table.destination,
            table.rows,
            table.chunks,
            if table.differing.is_empty() {
                "equal".to_string()
            } else {
                format!("{} chunks differ", table.differing.len())
            }
        );
        for diff in &table.differing {
            println!(
                "  chunk after {} through {}: {} source rows, {} destination rows; keys differing: {}",
                diff.after.as_deref().unwrap_or("the start"),
                diff.through.as_deref().unwrap_or("the end"),
                diff.source_rows,
                diff.destination_rows,
                diff.keys.join("; ")
            );
        }
    }
    println!(
        "move {}: {} rows verified in {:.2} s ({:.0} rows/s)",
        record.id,
        report.rows(),
        report.elapsed.as_secs_f64(),
        report.rows_per_second()
    );
    if !report.is_equal() {
        bail!(
            "move {}: the destination differs from the sources",
            record.id
        );
    }
    if record.phase == Phase::CatchingUp {
        // Another process may have moved it on meanwhile; then the phase stays its.
        let _ = moves::set_phase(&mut meta, record.id, Phase::CatchingUp, Phase::Verified).await;
    }
    println!("move {}: the destination equals the sources", record.id);
    Ok(())
}
