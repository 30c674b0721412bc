//! Row packets: locating cells in text and binary rows, and writing rows back.

use protocol::buf::{put_lenenc_bytes, Reader};
use protocol::constants::column_type;

use crate::value::{format_double, from_binary, from_text, Kind, Value};
use crate::{Layout, MergeError};

/// Where one cell is in a row packet: its full encoding (`start..end`, with
/// any length prefix) and its value bytes (`value..end`); `None` for NULL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CellAt {
    start: u32,
    value: u32,
    end: u32,
}

/// A row packet from a shard with its cells located.
#[derive(Debug, Clone)]
pub struct Row {
    data: Vec<u8>,
    cells: Vec<Option<CellAt>>,
}

impl Row {
    /// Locates the cells of a row packet of `layout`'s shape.
    pub fn parse(data: Vec<u8>, layout: &Layout) -> Result<Row, MergeError> {
        let n = layout.columns.len();
        let mut cells = Vec::with_capacity(n);
        let malformed = || MergeError::Malformed("a row that does not match its columns");
        if !layout.binary {
            let mut pos = 0usize;
            for _ in 0..n {
                if data.get(pos) == Some(&0xfb) {
                    cells.push(None);
                    pos += 1;
                    continue;
                }
                let mut r = Reader::new(data.get(pos..).ok_or_else(malformed)?);
                let before = r.remaining();
                let len = r.lenenc_int().map_err(|_| malformed())? as usize;
                let value = pos + before - r.remaining();
                let end = value
                    .checked_add(len)
                    .filter(|&e| e <= data.len())
                    .ok_or_else(malformed)?;
                cells.push(Some(cell_at(pos, value, end)?));
                pos = end;
            }
        } else {
            let bitmap = (n + 7 + 2) / 8;
            let mut pos = 1 + bitmap;
            if data.first() != Some(&0) || data.len() < pos {
                return Err(malformed());
            }
            for i in 0..n {
                let bit = i + 2;
                if data[1 + bit / 8] & (1 << (bit % 8)) != 0 {
                    cells.push(None);
                    continue;
                }
                let (value, end) = match layout.columns[i].column_type {
                    column_type::TINY => (pos, pos + 1),
                    column_type::SHORT | column_type::YEAR => (pos, pos + 2),
                    column_type::LONG | column_type::INT24 | column_type::FLOAT => (pos, pos + 4),
                    column_type::LONGLONG | column_type::DOUBLE => (pos, pos + 8),
                    column_type::DATE
                    | column_type::DATETIME
                    | column_type::TIMESTAMP
                    | column_type::TIME => {
                        let len = *data.get(pos).ok_or_else(malformed)? as usize;
                        (pos + 1, pos + 1 + len)
                    }
                    _ => {
                        let mut r = Reader::new(data.get(pos..).ok_or_else(malformed)?);
                        let before = r.remaining();
                        let len = r.lenenc_int().map_err(|_| malformed())? as usize;
                        let value = pos + before - r.remaining();
                        (value, value.checked_add(len).ok_or_else(malformed)?)
                    }
                };
                if end > data.len() {
                    return Err(malformed());
                }
                cells.push(Some(cell_at(pos, value, end)?));
                pos = end;
            }
        }
        Ok(Row { data, cells })
    }

    /// The value bytes of cell `i` (`None`: NULL).
    pub(crate) fn raw(&self, i: usize) -> Option<&[u8]> {
        let c = self.cells.get(i).copied().flatten()?;
        self.data.get(c.value as usize..c.end as usize)
    }

    /// The full encoding of cell `i` (with its length prefix).
    pub(crate) fn encoded(&self, i: usize) -> Option<&[u8]> {
        let c = self.cells.get(i).copied().flatten()?;
        self.data.get(c.start as usize..c.end as usize)
    }

    /// Cell `i` as a value.
    pub(crate) fn value(&self, i: usize, layout: &Layout) -> Value {
        match self.raw(i) {
            None => Value::Null,
            Some(raw) => {
                let kind = layout.kinds[i];
                if layout.binary {
                    from_binary(kind, layout.columns[i].column_type, raw)
                } else {
                    from_text(kind, raw)
                }
            }
        }
    }

    /// Approximate heap bytes held.
    pub(crate) fn footprint(&self) -> usize {
        self.data.len() + self.cells.len() * 16 + 48
    }

    /// The row as the client sees it: without the hidden columns (the packet itself when
    /// there are none).
    pub fn into_visible_payload(self, layout: &Layout) -> Vec<u8> {
        if layout.visible == self.cells.len() {
            return self.data;
        }
        let cells: Vec<OutCell<'_>> = (0..layout.visible)
            .map(|i| self.encoded(i).map_or(OutCell::Null, OutCell::Encoded))
            .collect();
        let mut out = Vec::with_capacity(self.data.len());
        // Encoded cells only: cannot fail.
        let _ = encode_row(layout, &cells, &mut out);
        out
    }
}

fn cell_at(start: usize, value: usize, end: usize) -> Result<CellAt, MergeError> {
    let c = |v: usize| u32::try_from(v).map_err(|_| MergeError::Malformed("a row over 4 GiB"));
    Ok(CellAt {
        start: c(start)?,
        value: c(value)?,
        end: c(end)?,
    })
}

/// A cell of a row the merge writes.
#[derive(Debug, Clone)]
pub(crate) enum OutCell<'a> {
    Null,
    /// Already in the protocol's encoding (copied from a shard's row).
    Encoded(&'a [u8]),
    /// Computed: encoded for the column's type.
    Value(Value),
}

/// Encodes the first `layout.visible` columns of a row.
pub(crate) fn encode_row(
    layout: &Layout,
    cells: &[OutCell<'_>],
    out: &mut Vec<u8>,
) -> Result<(), MergeError> {
    let n = layout.visible;
    if layout.binary {
        let bitmap = (n + 7 + 2) / 8;
        out.push(0);
        let at = out.len();
        out.resize(at + bitmap, 0);
        for (i, cell) in cells.iter().take(n).enumerate() {
            let null = match cell {
                OutCell::Null | OutCell::Value(Value::Null) => true,
                OutCell::Encoded(e) => {
                    out.extend_from_slice(e);
                    false
                }
                OutCell::Value(v) => {
                    encode_binary(layout, i, v, out)?;
                    false
                }
            };
            if null {
                let bit = i + 2;
                out[at + bit / 8] |= 1 << (bit % 8);
            }
        }
    } else {
        for (i, cell) in cells.iter().take(n).enumerate() {
            match cell {
                OutCell::Null | OutCell::Value(Value::Null) => out.push(0xfb),
                OutCell::Encoded(e) => out.extend_from_slice(e),
                OutCell::Value(v) => {
                    let text = value_text(layout, i, v)?;
                    let mut b = bytes::BytesMut::new();
                    put_lenenc_bytes(&mut b, &text);
                    out.extend_from_slice(&b);
                }
            }
        }
    }
    Ok(())
}

/// A computed value as the text a server would send for column `i`.
fn value_text(layout: &Layout, i: usize, v: &Value) -> Result<Vec<u8>, MergeError> {
    let def = &layout.columns[i];
    let scale = u32::from(def.decimals.min(38));
    Ok(match (layout.kinds[i], v) {
        (_, Value::Bytes(b)) => b.clone(),
        (Kind::Decimal, Value::Int(n)) => crate::decimal::Decimal::from_int(*n)
            .format(scale)?
            .into_bytes(),
        (Kind::Decimal, Value::Decimal(d)) => d.format(scale)?.into_bytes(),
        (Kind::Int { .. }, Value::Int(n)) => n.to_string().into_bytes(),
        (Kind::Int { .. }, Value::Decimal(d)) => d.format(0)?.into_bytes(),
        (Kind::Int { .. }, Value::Double(f)) => format!("{}", f.round()).into_bytes(),
        (Kind::Decimal, Value::Double(f)) => format!("{f:.*}", scale as usize).into_bytes(),
        (_, Value::Int(n)) => n.to_string().into_bytes(),
        (_, Value::Decimal(d)) => d.format(d.scale)?.into_bytes(),
        (_, Value::Double(f)) => format_double(*f).into_bytes(),
        (_, Value::Null) => Vec::new(),
    })
}

fn encode_binary(
    layout: &Layout,
    i: usize,
    v: &Value,
    out: &mut Vec<u8>,
) -> Result<(), MergeError> {
    let int = || -> i128 {
        match v {
            Value::Int(n) => *n,
            Value::Decimal(d) => d.rescale(0).map(|d| d.mantissa).unwrap_or(0),
            Value::Double(f) => f.round() as i128,
            _ => crate::value::to_f64(v) as i128,
        }
    };
    match layout.columns[i].column_type {
        column_type::TINY => out.push(int() as u8),
        column_type::SHORT | column_type::YEAR => {
            out.extend_from_slice(&(int() as u16).to_le_bytes())
        }
        column_type::LONG | column_type::INT24 => {
            out.extend_from_slice(&(int() as u32).to_le_bytes())
        }
        column_type::LONGLONG => out.extend_from_slice(&(int() as u64).to_le_bytes()),
        column_type::DOUBLE => out.extend_from_slice(&crate::value::to_f64(v).to_le_bytes()),
        column_type::FLOAT => {
            out.extend_from_slice(&(crate::value::to_f64(v) as f32).to_le_bytes())
        }
        _ => {
            let text = value_text(layout, i, v)?;
            let mut b = bytes::BytesMut::new();
            put_lenenc_bytes(&mut b, &text);
            out.extend_from_slice(&b);
        }
    }
    Ok(())
}
