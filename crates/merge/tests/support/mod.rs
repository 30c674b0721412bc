//! In-memory shards and rows shared by the operator tests and the benchmark.

use std::collections::VecDeque;
use std::convert::Infallible;

use merge::Shards;
use protocol::constants::{column_flag, column_type};
use protocol::resultset::{encode_text_row, ColumnDef};

/// Each shard's row packets, handed out in order.
pub struct Mem(pub Vec<VecDeque<Vec<u8>>>);

impl Shards for Mem {
    type Error = Infallible;
    fn count(&self) -> usize {
        self.0.len()
    }
    async fn next_row(&mut self, shard: usize) -> Result<Option<Vec<u8>>, Infallible> {
        Ok(self.0[shard].pop_front())
    }
}

/// A column of type `ty` (strings in utf8mb4_general_ci, numbers flagged NUM).
pub fn col(name: &str, ty: u8, decimals: u8) -> ColumnDef {
    ColumnDef {
        column_type: ty,
        decimals,
        flags: if ty == column_type::VAR_STRING {
            0
        } else {
            column_flag::NUM
        },
        ..ColumnDef::varchar(name, 20)
    }
}

/// A text-protocol row packet.
pub fn text_row(cells: &[Option<&str>]) -> Vec<u8> {
    let mut b = bytes::BytesMut::new();
    encode_text_row(cells.iter().map(|c| c.map(str::as_bytes)), &mut b);
    b.to_vec()
}
