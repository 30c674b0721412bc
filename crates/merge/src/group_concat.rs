//! GROUP_CONCAT across shards: the elements of a merged group, gathered from the shards'
//! partial groups (each element with its sort keys and the number of rows that gave it), then
//! ordered, deduplicated, limited, joined and cut at `group_concat_max_len` as MariaDB does
//! (`Item_func_group_concat`, `dump_leaf_key` in `sql/item_sum.cc`): the cut is at that many
//! bytes of the data's character set, backed off to a whole character, and warning 1260
//! names the row counter of the call at the element that was cut.

use std::cmp::Ordering;
use std::collections::hash_map::Entry;
use std::collections::HashMap;

use router::{Constant, GroupConcat, Operand};

use crate::row::Row;
use crate::value::{compare, group_key, sortable, Value};
use crate::{Layout, MergeError, Warning};

/// One element of a group.
#[derive(Debug)]
struct Element {
    keys: Vec<Value>,
    bytes: Vec<u8>,
    /// Its length in the data's character set.
    data_bytes: u64,
    /// The separator's length there.
    separator_bytes: u64,
    /// How many rows gave it (1 under DISTINCT).
    rows: u64,
}

/// The elements of one group so far.
#[derive(Debug, Default)]
pub(crate) struct Elements {
    by_identity: HashMap<Vec<u8>, Element>,
    max_len: u64,
}

/// The call's constants, read once per merge.
pub(crate) struct Call<'a> {
    spec: &'a GroupConcat,
    separator: &'a [u8],
    offset: u64,
    count: u64,
}

impl<'a> Call<'a> {
    pub(crate) fn new(spec: &'a GroupConcat, layout: &Layout) -> Result<Call<'a>, MergeError> {
        for k in &spec.order_by {
            if !layout
                .columns
                .get(layout.index(k.column))
                .is_some_and(sortable)
            {
                return Err(MergeError::Unsupported(
                    "GROUP_CONCAT(… ORDER BY an ENUM or SET column) across shards",
                ));
            }
        }
        let Operand::Const(Constant::Str(separator)) = &spec.separator else {
            return Err(MergeError::Unsupported(
                "a GROUP_CONCAT SEPARATOR that is not a string",
            ));
        };
        let number = |o: &Option<Operand>, default: u64| match o {
            None => Ok(default),
            Some(Operand::Const(Constant::Int(n))) if *n >= 0 => Ok(*n as u64),
            Some(Operand::Const(Constant::UInt(n))) => Ok(*n),
            Some(_) => Err(MergeError::Unsupported(
                "a GROUP_CONCAT LIMIT that is not a non-negative integer",
            )),
        };
        let (offset, count) = match &spec.limit {
            None => (0, u64::MAX),
            Some(l) => (number(&l.offset, 0)?, number(&l.count, u64::MAX)?),
        };
        Ok(Call {
            spec,
            separator,
            offset,
            count,
        })
    }
}

/// A non-negative integer cell of a helper column.
fn count_cell(row: &Row, col: usize, layout: &Layout) -> Result<u64, MergeError> {
    match row.value(col, layout) {
        Value::Int(n) => u64::try_from(n)
            .map_err(|_| MergeError::Malformed("a negative GROUP_CONCAT helper count")),
        _ => Err(MergeError::Malformed(
            "a GROUP_CONCAT helper column that is no integer",
        )),
    }
}

impl Elements {
    /// Adds the element of one shard row; returns the bytes newly held.
    pub(crate) fn add(
        &mut self,
        call: &Call<'_>,
        row: &Row,
        layout: &Layout,
    ) -> Result<usize, MergeError> {
        let g = call.spec;
        let e = layout.index(g.element);
        // A NULL element: a row MariaDB skips (one of the arguments is NULL).
        let Some(bytes) = row.raw(e) else {
            return Ok(0);
        };
        self.max_len = count_cell(row, layout.index(g.max_len), layout)?;
        let rows = count_cell(row, layout.index(g.rows), layout)?;
        let data_bytes = count_cell(row, layout.index(g.element_bytes), layout)?;
        let separator_bytes = count_cell(row, layout.index(g.with_separator_bytes), layout)?
            .checked_sub(data_bytes)
            .ok_or(MergeError::Malformed(
                "GROUP_CONCAT helper lengths disagree",
            ))?;
        let keys: Vec<Value> = g
            .order_by
            .iter()
            .map(|k| row.value(layout.index(k.column), layout))
            .collect();
        // DISTINCT: one element per value under its collation; otherwise per exact bytes and
        // sort keys, counting rows.
        let mut identity = Vec::new();
        if g.distinct {
            group_key(layout.kinds[e], &row.value(e, layout), &mut identity);
        } else {
            for (k, v) in g.order_by.iter().zip(&keys) {
                group_key(layout.kinds[layout.index(k.column)], v, &mut identity);
            }
            identity.extend_from_slice(bytes);
        }
        let element = Element {
            keys,
            bytes: bytes.to_vec(),
            data_bytes,
            separator_bytes,
            rows: if g.distinct { 1 } else { rows },
        };
        match self.by_identity.entry(identity) {
            Entry::Occupied(mut held) => {
                let held = held.get_mut();
                if !g.distinct {
                    held.rows += element.rows;
                } else if order(call, layout, &element, held).is_lt() {
                    // Of equal values, the one first in the call's order stands for them.
                    *held = element;
                }
                Ok(0)
            }
            Entry::Vacant(slot) => {
                let held = slot.key().len() + element.bytes.len() + 64;
                slot.insert(element);
                Ok(held)
            }
        }
    }

    /// The group's GROUP_CONCAT (`None`: NULL, no row had a non-NULL element) and, when it
    /// was cut, the warning. `counter` is the call's row counter, which MariaDB keeps across
    /// the groups of a statement.
    pub(crate) fn join(
        self,
        call: &Call<'_>,
        layout: &Layout,
        column: usize,
        counter: &mut u64,
    ) -> Result<(Option<Vec<u8>>, Option<Warning>), MergeError> {
        if self.by_identity.is_empty() {
            return Ok((None, None));
        }
        let mut list: Vec<Element> = self.by_identity.into_values().collect();
        list.sort_by(|a, b| order(call, layout, a, b));
        let mut out = Vec::new();
        let mut length = 0u64;
        let mut position = 0u64;
        // MariaDB puts the separator before every element but the first it appended.
        let mut appended = false;
        for e in &list {
            for _ in 0..e.rows {
                if position >= call.offset.saturating_add(call.count) {
                    return Ok((Some(out), None));
                }
                position += 1;
                *counter += 1;
                if position <= call.offset {
                    continue;
                }
                let first = !appended;
                appended = true;
                let separator: &[u8] = if first { &[] } else { call.separator };
                let added = e.data_bytes + if first { 0 } else { e.separator_bytes };
                if length + added <= self.max_len {
                    out.extend_from_slice(separator);
                    out.extend_from_slice(&e.bytes);
                    length += added;
                    continue;
                }
                // The cut: where it falls is known in the data's bytes; the proxy has the
                // result's, the same only when the two encode this text alike.
                if e.bytes.len() as u64 != e.data_bytes
                    || (!first && separator.len() as u64 != e.separator_bytes)
                {
                    return Err(MergeError::Unsupported(
                        "GROUP_CONCAT cut at group_concat_max_len in a character set other \
                         than the result's",
                    ));
                }
                let mut piece = separator.to_vec();
                piece.extend_from_slice(&e.bytes);
                let room = usize::try_from(self.max_len - length).unwrap_or(usize::MAX);
                let keep = whole_characters(&piece, room, layout.columns[column].collation)?;
                out.extend_from_slice(&piece[..keep]);
                let warning = Warning {
                    code: 1260,
                    message: format!("Row {counter} was cut by GROUP_CONCAT()"),
                };
                return Ok((Some(out), Some(warning)));
            }
        }
        Ok((Some(out), None))
    }
}

/// The call's ORDER BY; ties (which MariaDB leaves in no defined order) by the element's bytes.
fn order(call: &Call<'_>, layout: &Layout, a: &Element, b: &Element) -> Ordering {
    for (i, k) in call.spec.order_by.iter().enumerate() {
        let o = compare(layout.kinds[layout.index(k.column)], &a.keys[i], &b.keys[i]);
        let o = if k.descending { o.reverse() } else { o };
        if o.is_ne() {
            return o;
        }
    }
    a.bytes.cmp(&b.bytes)
}

/// How many bytes of `text` fit in `room` without splitting a character of the result's
/// character set (`collation`).
fn whole_characters(text: &[u8], room: usize, collation: u16) -> Result<usize, MergeError> {
    let room = room.min(text.len());
    let charset = u8::try_from(collation)
        .ok()
        .and_then(protocol::text::charset_of_collation);
    match charset {
        Some("utf8mb3" | "utf8mb4") => {
            let mut end = room;
            // Back off continuation bytes, then the lead byte of the split character.
            while end > 0 && end < text.len() && text[end] & 0xc0 == 0x80 {
                end -= 1;
            }
            Ok(end)
        }
        Some(
            "binary" | "latin1" | "latin2" | "latin5" | "latin7" | "ascii" | "cp1250" | "cp1251"
            | "cp1256" | "cp1257" | "greek" | "hebrew" | "koi8r" | "koi8u",
        ) => Ok(room),
        _ => Err(MergeError::Unsupported(
            "GROUP_CONCAT cut at group_concat_max_len in a multi-byte character set other \
             than utf8",
        )),
    }
}
