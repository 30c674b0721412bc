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
use protocol::{ProtocolError, ServerError};
use router::{MergeSpec, Plan};
use tokio::io::{AsyncRead, AsyncWrite};

use super::route::Request;
use super::{Flow, Session};

/// What interrupted a merge besides the merge itself.
enum Io {
    /// Shard `i` sent an error in place of a row.
    Shard(usize, ServerError),
    /// Shard `i`'s connection failed.
    Backend(usize, ProtocolError),
    Client,
}

/// The shards' row streams.
struct ShardRows<'a> {
    conns: Vec<&'a mut PacketConn<BackendStream>>,
    done: Vec<bool>,
    warnings: u16,
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
        let packet = self.conns[shard]
            .read_packet(usize::MAX)
            .await
            .map_err(|e| Io::Backend(shard, e))?;
        match packet.first() {
            Some(0xfe) if packet.len() < 0xff_ffff => {
                let ok = OkPacket::decode(&packet).map_err(|e| Io::Backend(shard, e))?;
                self.warnings = self.warnings.saturating_add(ok.warnings);
                self.done[shard] = true;
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
                protocol::response::drain_rows(self.conns[shard])
                    .await
                    .map_err(|e| (shard, e))?;
                self.done[shard] = true;
            }
        }
        Ok(())
    }
}

/// The client's connection as the merge's output.
struct ClientRows<'a, S> {
    client: &'a mut PacketConn<S>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> merge::Sink for ClientRows<'_, S> {
    type Error = Io;

    async fn row(&mut self, payload: &[u8]) -> Result<(), Io> {
        self.client.write_packet(payload);
        self.client.flush_if_full().await.map_err(|_| Io::Client)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    /// A merged read; when a replica fails before anything reached the client, the read runs
    /// again (the replica is out by then).
    pub(super) async fn run_merge(
        &mut self,
        plan: &Plan,
        spec: &MergeSpec,
        request: Request<'_>,
    ) -> Flow {
        loop {
            let flow = self.merge_once(plan, spec, request).await;
            if !std::mem::take(&mut self.retry_read) {
                return flow;
            }
        }
    }

    async fn merge_once(&mut self, plan: &Plan, spec: &MergeSpec, request: Request<'_>) -> Flow {
        let snapshot = self.ctx.snapshot.load_full();
        let proxy = &snapshot.rules.proxy;
        if spec.offset > proxy.max_merge_offset {
            return self
                .error(ServerError::not_supported(format!(
                    "OFFSET {} across shards: above proxy.max_merge_offset ({}), each shard would \
                     return offset + count rows",
                    spec.offset, proxy.max_merge_offset
                )))
                .await;
        }
        let binary = match request {
            Request::Text { .. } => false,
            Request::Execute { exec } if exec.flags != 0 => {
                return self
                    .error(ServerError::not_supported(
                        "a cursor over a result merged across shards",
                    ))
                    .await
            }
            Request::Execute { .. } => true,
        };
        let probed = match &spec.metadata_probe {
            Some(probe) => match self.probe_columns(probe, request).await {
                Ok(columns) => Some(columns),
                Err(flow) => return flow,
            },
            None => None,
        };
        let mut indexes = Vec::with_capacity(plan.targets.len());
        for target in &plan.targets {
            let (index, packet) = match self.target_request(target, request).await {
                Ok(r) => r,
                Err(flow) => return flow,
            };
            if indexes.contains(&index) {
                return self
                    .error(ServerError::internal(
                        "dbmesh: two merge targets on one data source",
                    ))
                    .await;
            }
            if let Err(e) = self.held[index].conn.send_command(&packet).await {
                if self.retry_scatter(index, &indexes, &e) {
                    return Flow::Continue;
                }
                return self.fail_backend(index, e).await;
            }
            indexes.push(index);
        }
        let mut headers = Vec::with_capacity(indexes.len());
        for &index in &indexes {
            match read_result_header(self.held[index].conn.packets()).await {
                Ok(h) => headers.push(h),
                Err(error) => {
                    let lost = backend::BackendError::Lost {
                        source_name: self.held[index].data_source.clone(),
                        error,
                    };
                    if self.retry_scatter(index, &indexes, &lost) {
                        return Flow::Continue;
                    }
                    return self.backend_lost(index, lost).await;
                }
            }
        }
        let failed = headers.iter().zip(&indexes).find_map(|(h, &i)| match h {
            ResultHeader::Err(e) => Some(self.shard_error(i, e)),
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
                for (h, &index) in headers.iter().zip(&indexes) {
                    if let Err(error) = drain_after_header(self.held[index].conn.packets(), h).await
                    {
                        return self.lost(index, error).await;
                    }
                }
                let err = match (failed, layout) {
                    (Some(e), _) => e,
                    (None, Err(e)) => merge_error(&e),
                    (None, Ok(_)) => ServerError::internal("dbmesh: merge failed"),
                };
                return self.error(err).await;
            }
        };
        let deprecate_eof = self.deprecate_eof();
        let status = self.client_status();
        let client_columns = match (&probed, headers.first()) {
            (Some(p), _) => Some(p),
            (None, Some(ResultHeader::Columns(c))) => Some(c),
            _ => None,
        };
        if let Some(columns) = client_columns {
            self.client
                .write_with(|b| protocol::buf::put_lenenc_int(b, layout.visible as u64));
            for c in &columns[..layout.visible] {
                self.client.write_packet(c);
            }
            if !deprecate_eof {
                self.client
                    .write_with(|b| protocol::packets::encode_eof(0, status, b));
            }
        }

        let limits = Limits {
            memory: proxy.merge_memory_limit,
        };
        let mut conns: Vec<Option<&mut PacketConn<BackendStream>>> = Vec::new();
        conns.resize_with(indexes.len(), || None);
        for (i, held) in self.held.iter_mut().enumerate() {
            if let Some(pos) = indexes.iter().position(|&x| x == i) {
                conns[pos] = Some(held.conn.packets());
            }
        }
        let mut shards = ShardRows {
            conns: conns.into_iter().flatten().collect(),
            done: vec![false; indexes.len()],
            warnings: 0,
        };
        let mut sink = ClientRows {
            client: &mut self.client,
        };
        let outcome = merge::merge(spec, &layout, limits, &mut shards, &mut sink).await;
        let drained = shards.drain().await;
        let warnings = shards.warnings;
        let failure = match outcome {
            Ok(_) => None,
            Err(Failure::Merge(e)) => Some(merge_error(&e)),
            Err(Failure::Io(Io::Shard(shard, e))) => Some(self.shard_error(indexes[shard], &e)),
            Err(Failure::Io(Io::Backend(shard, error))) => {
                return self.lost(indexes[shard], error).await
            }
            Err(Failure::Io(Io::Client)) => {
                // The shards' results are abandoned: their connections cannot be reused.
                self.discard(&indexes);
                return Flow::Close;
            }
        };
        if let Err((shard, error)) = drained {
            return self.lost(indexes[shard], error).await;
        }
        match failure {
            // An error in place of a row ends the result, as a server's mid-result error does.
            Some(err) => self.error(err).await,
            None => {
                let status = self.client_status();
                write_end_of_rows(&mut self.client, deprecate_eof, warnings, status);
                self.flush().await
            }
        }
    }

    /// The column definitions of a probe (a part of the statement returning no rows).
    async fn probe_columns(
        &mut self,
        probe: &router::Target,
        request: Request<'_>,
    ) -> Result<Vec<Vec<u8>>, Flow> {
        let (index, packet) = self.target_request(probe, request).await?;
        if let Err(e) = self.held[index].conn.send_command(&packet).await {
            return Err(self.fail_backend(index, e).await);
        }
        let header = match read_result_header(self.held[index].conn.packets()).await {
            Ok(h) => h,
            Err(error) => return Err(self.lost(index, error).await),
        };
        if let Err(error) = drain_after_header(self.held[index].conn.packets(), &header).await {
            return Err(self.lost(index, error).await);
        }
        match header {
            ResultHeader::Columns(columns) => Ok(columns),
            ResultHeader::Err(e) => {
                let e = self.shard_error(index, &e);
                Err(self.error(e).await)
            }
            ResultHeader::Ok(_) => Err(self
                .error(ServerError::internal(
                    "dbmesh: the metadata probe returned no columns",
                ))
                .await),
        }
    }

    /// A shard's error, naming the data source.
    fn shard_error(&self, index: usize, e: &ServerError) -> ServerError {
        let source = &self.held[index].data_source;
        ServerError::new(
            e.code,
            std::str::from_utf8(&e.sqlstate).unwrap_or("HY000"),
            format!("{} (on data source {source})", e.message),
        )
    }

    async fn lost(&mut self, index: usize, error: ProtocolError) -> Flow {
        let source_name = self.held[index].data_source.clone();
        let lost = backend::BackendError::Lost { source_name, error };
        self.backend_lost(index, lost).await
    }

    /// A replica failed during a scatter read before any of it reached the client: takes the
    /// replica out and drops the held connections whose responses are pending (`pending`,
    /// and the failed one), and asks the caller to run the read again (`retry_read`).
    /// False when the failed connection is not a replica's.
    pub(super) fn retry_scatter(
        &mut self,
        failed: usize,
        pending: &[usize],
        error: &backend::BackendError,
    ) -> bool {
        if !self.on_replica(failed) {
            return false;
        }
        self.replica_failed_keep(failed, error);
        let mut dropped = pending.to_vec();
        dropped.push(failed);
        self.discard(&dropped);
        self.retry_read = true;
        true
    }

    /// Drops held connections without returning them to the pool.
    fn discard(&mut self, indexes: &[usize]) {
        let mut i = 0;
        self.held.retain(|_| {
            let keep = !indexes.contains(&i);
            i += 1;
            keep
        });
    }
}

fn merge_error(e: &MergeError) -> ServerError {
    let (code, state) = e.code();
    ServerError::new(code, state, format!("dbmesh: {e}"))
}
