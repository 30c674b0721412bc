//! Packet decode/encode on the hot path: framing a client command out of the read buffer,
//! the OK packet every write answers with, and a COM_STMT_EXECUTE decoded and re-encoded (what
//! a prepared statement routed by its parameters costs). `cargo bench -p protocol --bench packets`

use bytes::{BufMut, BytesMut};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use protocol::framing::PacketConn;
use protocol::packets::OkPacket;
use protocol::stmt::Execute;

const FRAMES: usize = 1000;

/// sysbench's point select as a COM_QUERY payload.
fn point_select() -> Vec<u8> {
    let mut p = vec![protocol::constants::com::QUERY];
    p.extend_from_slice(b"SELECT c FROM sbtest1 WHERE id=5003");
    p
}

/// An execute of a statement with one BIGINT parameter, types bound.
fn execute_packet() -> Vec<u8> {
    let mut p = BytesMut::new();
    p.put_u8(protocol::constants::com::STMT_EXECUTE);
    p.put_u32_le(7);
    p.put_u8(0);
    p.put_u32_le(1);
    p.put_u8(0); // null bitmap
    p.put_u8(1); // types bound
    p.put_u8(0x08); // MYSQL_TYPE_LONGLONG
    p.put_u8(0);
    p.put_i64_le(5003);
    p.to_vec()
}

fn framing(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let payload = point_select();
    // FRAMES client commands already in the read buffer: what a read returns in one go.
    let mut buffered = BytesMut::new();
    for _ in 0..FRAMES {
        buffered.put_uint_le(payload.len() as u64, 3);
        buffered.put_u8(0);
        buffered.put_slice(&payload);
    }
    let mut group = c.benchmark_group("framing");
    group.throughput(Throughput::Elements(FRAMES as u64));
    group.bench_function("read_packet x1000 (buffered 40-byte commands)", |b| {
        b.iter_batched(
            || {
                let (stream, peer) = tokio::io::duplex(64);
                (PacketConn::with_buffered(stream, buffered.clone()), peer)
            },
            |(mut conn, _peer)| {
                runtime.block_on(async {
                    for _ in 0..FRAMES {
                        let p = conn.read_packet(1 << 24).await.expect("frame");
                        std::hint::black_box(&p);
                    }
                })
            },
            BatchSize::SmallInput,
        )
    });
    group.bench_function("write_packet x1000 (40-byte payload)", |b| {
        b.iter_batched(
            || PacketConn::new(tokio::io::duplex(64).0),
            |mut conn| {
                for _ in 0..FRAMES {
                    conn.write_packet(&payload);
                }
                std::hint::black_box(conn.buffered_output());
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

fn packets(c: &mut Criterion) {
    let ok = OkPacket {
        affected_rows: 1,
        last_insert_id: 5003,
        status: 2,
        ..OkPacket::default()
    };
    let mut encoded = BytesMut::new();
    ok.encode(0, &mut encoded);
    c.bench_function("OK packet: encode", |b| {
        let mut out = BytesMut::with_capacity(64);
        b.iter(|| {
            out.clear();
            ok.encode(0, &mut out);
            std::hint::black_box(&out);
        })
    });
    c.bench_function("OK packet: decode", |b| {
        b.iter(|| std::hint::black_box(OkPacket::decode(&encoded).expect("ok")))
    });
    let exec = execute_packet();
    c.bench_function("COM_STMT_EXECUTE (1 BIGINT): decode + re-encode", |b| {
        let mut out = BytesMut::with_capacity(64);
        b.iter(|| {
            let e = Execute::decode(&exec, 1, &[], &[]).expect("execute");
            out.clear();
            e.encode(9, &mut out);
            std::hint::black_box(&out);
        })
    });
}

criterion_group!(benches, framing, packets);
criterion_main!(benches);
