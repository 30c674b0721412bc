//! Running a SELECT merged across shards: every shard gets its part at once
//! (one connection per data source; the router unions a data source's
//! physical tables into one statement), the column definitions of the first
//! shard go to the client without the hidden helper columns, and the `merge`
//! crate turns the shards' rows into the client's.

use backend::BackendStream;
use merge::{Failure, Layout, Limits, MergeError};
use protocol::framing::PacketConn;
use protocol::packets::OkPacket;
use protocol::response::{drain_after_header, read_result_header, ResultHeader};
use protocol::resultset::{write_end_of_rows, ColumnDef};
use protocol::{ClientError, ProtocolError, ServerError};
use router::{MergeSpec, Plan, Target};

use crate::cancel::{drain_or_interrupt, time_limit_error, Cancel, CancelReason};
use crate::run::{write_columns, Request, Stop};
use crate::{answer_error, flush, Client, Diagnostic, Executor, Flow, Snapshot};

/// What interrupted a merge besides the merge itself.
enum Io {
    /// Shard `i` sent an error in place of a row.
    Shard(usize, ServerError),
    /// Shard `i`'s connection failed.
    Backend(usize, ProtocolError),
    Client,
    /// The statement's time limit passed.
    TimeLimit,
}

/// The shards' row streams.
struct ShardRows<'a> {
    conns: Vec<&'a mut PacketConn<BackendStream>>,
    done: Vec<bool>,
    /// Each shard's status flags from its end of rows (whether a transaction is open there).
    statuses: Vec<Option<u16>>,
    warnings: u16,
    /// Says when the statement's time limit has passed, which stops the proxy's own merge
    /// work too.
    cancel: &'a Cancel,
}

impl merge::Shards for ShardRows<'_> {
    type Error = Io;

    fn count(&self) -> usize {
        self.conns.len()
    }

    async fn next_row(&mut self, shard: usize) -> Result<Option<Vec<u8>>, Io> {
        if self.done[shard] {
            return Ok(None);
        }
        if self.cancel.timed_out() {
            return Err(Io::TimeLimit);
        }
        let packet = self.conns[shard]
            .read_packet(usize::MAX)
            .await
            .map_err(|e| Io::Backend(shard, e))?;
        match packet.first() {
            Some(0xfe) if packet.len() < 0xff_ffff => {
                let ok = OkPacket::decode(&packet).map_err(|e| Io::Backend(shard, e))?;
                self.warnings = self.warnings.saturating_add(ok.warnings);
                self.done[shard] = true;
                self.statuses[shard] = Some(ok.status);
                Ok(None)
            }
            Some(0xff) => {
                self.done[shard] = true;
                let err = ServerError::decode(&packet).map_err(|e| Io::Backend(shard, e))?;
                Err(Io::Shard(shard, err))
            }
            _ => Ok(Some(packet.to_vec())),
        }
    }
}

impl ShardRows<'_> {
    /// Reads and drops what the shards still have, so their connections stay usable.
    async fn drain(&mut self) -> Result<(), (usize, ProtocolError)> {
        for shard in 0..self.conns.len() {
            if !self.done[shard] {
                let status = protocol::response::drain_rows(self.conns[shard])
                    .await
                    .map_err(|e| (shard, e))?;
                self.done[shard] = true;
                self.statuses[shard] = Some(status);
            }
        }
        Ok(())
    }
}

/// The client's connection as the merge's output.
struct ClientRows<'a, C> {
    client: &'a mut C,
}

impl<C: Client> merge::Sink for ClientRows<'_, C> {
    type Error = Io;

    async fn row(&mut self, payload: &[u8]) -> Result<(), Io> {
        let packets = self.client.packets();
        packets.write_packet(payload);
        packets.flush_if_full().await.map_err(|_| Io::Client)
    }
}

impl Executor {
    /// A merged read; when a replica fails before anything reached the client, the read runs
    /// again (the replica is out by then).
    pub(crate) async fn run_merge<C: Client>(
        &mut self,
        client: &mut C,
        snapshot: &Snapshot,
        plan: &Plan,
        spec: &MergeSpec,
        request: Request<'_>,
    ) -> Flow {
        loop {
            if let Some(flow) = self.merge_once(client, snapshot, plan, spec, request).await {
                return flow;
            }
        }
    }

    /// One attempt at [`run_merge`](Self::run_merge); `None`: a replica failed before
    /// anything reached the client, run it again.
    async fn merge_once<C: Client>(
        &mut self,
        client: &mut C,
        snapshot: &Snapshot,
        plan: &Plan,
        spec: &MergeSpec,
        request: Request<'_>,
    ) -> Option<Flow> {
        let proxy = &snapshot.rules.proxy;
        if spec.offset > proxy.max_merge_offset {
            let err = ServerError::not_supported(format!(
                "OFFSET {} across shards: above proxy.max_merge_offset ({}), each shard would \
                 return offset + count rows",
                spec.offset, proxy.max_merge_offset
            ));
            return Some(answer_error(client, &err).await);
        }
        let binary = match request {
            Request::Text { .. } => false,
            Request::Execute { exec } if exec.flags != 0 => {
                let err = ServerError::not_supported("a cursor over a result merged across shards");
                return Some(answer_error(client, &err).await);
            }
            Request::Execute { .. } => true,
        };
        let probed = match &spec.metadata_probe {
            Some(probe) => match self.probe_columns(client, snapshot, probe, request).await {
                Ok(columns) => Some(columns),
                Err(flow) => return Some(flow),
            },
            None => None,
        };
        let targets: Vec<&Target> = plan.targets.iter().collect();
        let headers = match self
            .send_wave(client, snapshot, &targets, request, true)
            .await
        {
            Ok(headers) => headers,
            Err(Stop::Retry) => return None,
            Err(Stop::Answered(flow)) => return Some(flow),
        };
        let failed = headers.iter().zip(&targets).find_map(|(h, t)| match h {
            ResultHeader::Err(e) => Some(shard_error(&t.data_source, e)),
            ResultHeader::Ok(_) => Some(ServerError::not_supported(
                "a statement without a result set on several shards",
            )),
            ResultHeader::Columns(_) => None,
        });
        let layout = match (&failed, headers.first()) {
            (None, Some(ResultHeader::Columns(shard_columns))) => {
                let columns = probed.as_ref().unwrap_or(shard_columns);
                let decoded: Result<Vec<ColumnDef>, _> =
                    columns.iter().map(|c| ColumnDef::decode(c)).collect();
                let same_width = headers
                    .iter()
                    .all(|h| matches!(h, ResultHeader::Columns(c) if c.len() == columns.len()));
                match decoded {
                    Ok(defs) if same_width => Layout::new(defs, spec.shape.hidden, binary),
                    _ => Err(MergeError::Malformed("shards returned different columns")),
                }
            }
            _ => Err(MergeError::Internal("no result")),
        };
        let layout = match (failed, layout) {
            (None, Ok(layout)) => layout,
            (failed, layout) => {
                if let Err(flow) = self.drain_headers(client, &targets, &headers).await {
                    return Some(flow);
                }
                let err = match (failed, layout) {
                    (Some(e), _) => e,
                    (None, Err(e)) => e.to_server_error(),
                    (None, Ok(_)) => ServerError::internal("dbmesh: merge failed"),
                };
                return Some(answer_error(client, &err).await);
            }
        };
        let deprecate_eof = client.deprecate_eof();
        let client_columns = match (&probed, headers.first()) {
            (Some(p), _) => Some(p),
            (None, Some(ResultHeader::Columns(c))) => Some(c),
            _ => None,
        };
        if let Some(columns) = client_columns {
            let status = self.client_status();
            write_columns(client, &columns[..layout.visible], status);
        }

        let limits = Limits {
            memory: proxy.merge_memory_limit,
        };
        let threads = self.threads_of(&targets);
        let mut conns: Vec<Option<&mut PacketConn<BackendStream>>> = Vec::new();
        conns.resize_with(targets.len(), || None);
        for held in self.held.iter_mut() {
            if let Some(pos) = targets
                .iter()
                .position(|t| t.data_source == held.data_source)
            {
                conns[pos] = Some(held.conn.packets());
            }
        }
        let mut shards = ShardRows {
            conns: conns.into_iter().flatten().collect(),
            done: vec![false; targets.len()],
            statuses: vec![None; targets.len()],
            warnings: 0,
            cancel: &self.cancel,
        };
        let mut sink = ClientRows {
            client: &mut *client,
        };
        let outcome = merge::merge(spec, &layout, limits, &mut shards, &mut sink).await;
        // Shards still sending when the merge stopped (its LIMIT reached, a shard's error) are
        // read out, and interrupted if they do not finish at once.
        let (drained, interrupted) =
            drain_or_interrupt(self.session, threads, shards.drain()).await;
        client.backend_cancelled(CancelReason::StoppedEarly, interrupted);
        let mut warnings = shards.warnings;
        let statuses = std::mem::take(&mut shards.statuses);
        for (target, status) in targets.iter().zip(statuses) {
            if let Some(status) = status {
                self.note_status(&target.data_source, status);
            }
        }
        let failure = match outcome {
            Ok(merged) => {
                self.reported.found_rows = merged.found;
                self.reported.rows = merged.written;
                let own = u16::try_from(merged.warnings.len()).unwrap_or(u16::MAX);
                warnings = warnings.saturating_add(own);
                if !merged.warnings.is_empty() {
                    // The merge's own warnings are GROUP_CONCAT cuts (1260).
                    self.reported.group_concat_cuts = merged.warnings.len() as u64;
                    tracing::debug!(conn = self.session, cuts = own, "GROUP_CONCAT cut");
                }
                self.merge_warnings = merged
                    .warnings
                    .into_iter()
                    .map(|w| Diagnostic {
                        level: "Warning".into(),
                        code: w.code,
                        message: w.message,
                    })
                    .collect();
                None
            }
            Err(Failure::Merge(e)) => Some(e.to_server_error()),
            Err(Failure::Io(Io::Shard(shard, e))) => {
                Some(shard_error(&targets[shard].data_source, &e))
            }
            Err(Failure::Io(Io::Backend(shard, error))) => {
                let data_source = &targets[shard].data_source;
                return Some(self.stream_lost(client, data_source, error).await);
            }
            Err(Failure::Io(Io::TimeLimit)) => Some(time_limit_error()),
            Err(Failure::Io(Io::Client)) => {
                // The shards' results are abandoned: their connections cannot be reused.
                for target in &targets {
                    self.discard(&target.data_source);
                }
                return Some(Flow::Close);
            }
        };
        if let Err((shard, error)) = drained {
            let data_source = &targets[shard].data_source;
            return Some(self.stream_lost(client, data_source, error).await);
        }
        Some(match failure {
            // An error in place of a row ends the result, as a server's mid-result error does.
            Some(err) => answer_error(client, &err).await,
            None => {
                let status = self.client_status();
                write_end_of_rows(client.packets(), deprecate_eof, warnings, status);
                flush(client).await
            }
        })
    }

    /// The column definitions of a probe (a part of the statement returning no rows).
    async fn probe_columns<C: Client>(
        &mut self,
        client: &mut C,
        snapshot: &Snapshot,
        probe: &Target,
        request: Request<'_>,
    ) -> Result<Vec<Vec<u8>>, Flow> {
        let packet = self
            .target_request(client, snapshot, probe, request)
            .await?;
        let data_source = probe.data_source.as_str();
        let Some(held) = self.held.get_mut(data_source) else {
            return Err(Flow::Close);
        };
        if let Err(e) = held.conn.send_command(&packet).await {
            return Err(self.fail_backend(client, data_source, e).await);
        }
        let header = match read_result_header(held.conn.packets()).await {
            Ok(h) => h,
            Err(error) => return Err(self.stream_lost(client, data_source, error).await),
        };
        if let Err(error) = drain_after_header(held.conn.packets(), &header).await {
            return Err(self.stream_lost(client, data_source, error).await);
        }
        match header {
            ResultHeader::Columns(columns) => Ok(columns),
            ResultHeader::Err(e) => Err(answer_error(client, &shard_error(data_source, &e)).await),
            ResultHeader::Ok(_) => {
                let err = ServerError::internal("dbmesh: the metadata probe returned no columns");
                Err(answer_error(client, &err).await)
            }
        }
    }
}

/// A shard's error, naming the data source.
fn shard_error(data_source: &str, e: &ServerError) -> ServerError {
    ServerError::new(
        e.code,
        std::str::from_utf8(&e.sqlstate).unwrap_or("HY000"),
        format!("{} (on data source {data_source})", e.message),
    )
}

/// What a merge across shards mainly does (the `kind` label of
/// `dbmesh_merged_statements_total`, and of the `merge` span).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MergeKind {
    /// INTERSECT / EXCEPT of branches (a UNION merges as DISTINCT or as a concatenation).
    SetOperation,
    /// GROUP BY or aggregates.
    Group,
    /// SELECT DISTINCT.
    Distinct,
    /// ORDER BY (a k-way sort merge), with or without LIMIT.
    Sort,
    /// The shards' rows one after another (with or without LIMIT).
    Concatenate,
}

impl MergeKind {
    pub const ALL: [MergeKind; 5] = [
        MergeKind::SetOperation,
        MergeKind::Group,
        MergeKind::Distinct,
        MergeKind::Sort,
        MergeKind::Concatenate,
    ];

    pub fn of(spec: &MergeSpec) -> MergeKind {
        let shape = &spec.shape;
        if shape.set_op.is_some() {
            MergeKind::SetOperation
        } else if shape.aggregation.is_some() {
            MergeKind::Group
        } else if shape.distinct {
            MergeKind::Distinct
        } else if !shape.order_by.is_empty() {
            MergeKind::Sort
        } else {
            MergeKind::Concatenate
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            MergeKind::SetOperation => "set_operation",
            MergeKind::Group => "group",
            MergeKind::Distinct => "distinct",
            MergeKind::Sort => "sort",
            MergeKind::Concatenate => "concatenate",
        }
    }
}
