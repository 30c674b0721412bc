//! Ids a sequence fills into an INSERT before it is routed (`[sequences.<name>]`
//! with `table` and `column`).
//!
//! The router does no I/O, so filling takes two steps. Routing an INSERT that
//! needs ids without them fails with [`RouteError::IdsNeeded`] naming the
//! sequence and the number of ids; the caller takes that many from the
//! sequence and routes again with them ([`crate::Router::route_filled`]), and
//! the ids are then values like any other: spliced into the physical
//! statement and, when the column is the sharding key, routing each row.
//!
//! - Template side ([`spec`]): which sequence fills which column of the
//!   INSERT's target and what each row gives it. The template's rendering
//!   carries a [`sql::Seg::Generated`] marker wherever the column is omitted
//!   or given `NULL` / `DEFAULT` ([`sql::Statement::with_generated`]).
//! - Statement side ([`assign`]): a row needs an id when it has a marker, or
//!   when its literal or `?` is NULL or 0 (as with AUTO_INCREMENT); ids go to
//!   those rows in row order. [`RowIds`] writes each id as a literal or as an
//!   extra parameter ([`IdStyle`]) and gives the value a row is routed by.

use rules::Rules;
use sql::{Analysis, InsertKey, KeyValue, Kind, Statement};

use crate::error::RouteError;
use crate::input::{IdStyle, Ids, Input, Val};

/// The fill part of a template: the INSERT's target has a column a sequence fills.
#[derive(Debug)]
pub(crate) struct FillSpec {
    /// The sequence, as named in the rule file.
    pub sequence: String,
    /// The logical table, as written in the statement.
    pub table: String,
    /// The filled column, as named in the rule file.
    pub column: String,
    /// What each row gives the column; omitted is `Default` in every row.
    pub rows: Vec<KeyValue>,
}

fn not_supported(what: String) -> RouteError {
    RouteError::NotSupported(what)
}

/// The fill spec of an INSERT / REPLACE into a table whose column a sequence
/// fills, when some row may need an id; refuses the forms where the column's
/// place is unknown (no column list) or cannot be filled (INSERT … SELECT
/// without the column, RETURNING).
pub(crate) fn spec(
    rules: &Rules,
    stmt: &Statement,
    a: &Analysis,
) -> Result<Option<FillSpec>, RouteError> {
    let Kind::Insert(ins) = &a.kind else {
        return Ok(None);
    };
    let target = &a.tables[ins.table];
    if a.explain || target.foreign_schema.is_some() {
        return Ok(None);
    }
    let Some((sequence, fills)) = rules
        .sequence_for_table(&target.name)
        .and_then(|s| Some((&s.name, s.fills.as_ref()?)))
    else {
        return Ok(None);
    };
    let Some(given) = stmt.insert_column(&fills.column) else {
        return Ok(None);
    };
    let (table, column) = (&target.name, &fills.column);
    let rows = match given.values {
        InsertKey::NoColumnList => {
            return Err(not_supported(format!(
                "INSERT into {table} of only empty rows `VALUES ()` (sequence {sequence} \
                 fills its column {column}; name the columns)"
            )))
        }
        InsertKey::Missing if ins.rows == 0 => {
            return Err(not_supported(format!(
                "INSERT … SELECT into {table} without its column {column}, which sequence \
                 {sequence} fills only in INSERT … VALUES (select the ids too, e.g. from a \
                 range reserved with SELECT NEXTVAL({sequence}, n))"
            )))
        }
        InsertKey::Missing => vec![KeyValue::Default; ins.rows],
        InsertKey::Rows(values) => values,
        InsertKey::Select(_) | InsertKey::FromClass(_) | InsertKey::NotSharded => return Ok(None),
    };
    if !rows
        .iter()
        .any(|v| matches!(v, KeyValue::Null | KeyValue::Default | KeyValue::Slot(_)))
    {
        return Ok(None);
    }
    if given.returning {
        return Err(not_supported(format!(
            "INSERT … RETURNING into {table}, whose column {column} sequence {sequence} fills"
        )));
    }
    Ok(Some(FillSpec {
        sequence: sequence.clone(),
        table: table.clone(),
        column: column.clone(),
        rows,
    }))
}

impl FillSpec {
    /// Whether the filled column is `column` (the sharding column, say).
    pub(crate) fn fills(&self, column: &str) -> bool {
        self.column.eq_ignore_ascii_case(column)
    }
}

/// What one row's filled column holds in the plan being made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RowId {
    /// The value the statement gives it.
    Own,
    /// The `index`-th id given.
    Id { id: u64, index: usize },
    /// An id not known yet (COM_STMT_PREPARE).
    Pending,
}

/// The ids of one statement, by row.
#[derive(Debug)]
pub(crate) struct RowIds {
    rows: Vec<RowId>,
    /// (slot, row) of the rows whose literal or `?` an id replaces, by slot.
    slots: Vec<(usize, usize)>,
    style: IdStyle,
    /// The statement's own placeholders: id `i` is parameter `first_param + i`.
    first_param: usize,
}

/// Decides which rows of the statement need an id and gives them the ids
/// `input` brings; fails with [`RouteError::IdsNeeded`] when it brings none.
pub(crate) fn assign(spec: &FillSpec, input: &Input<'_>) -> Result<RowIds, RouteError> {
    let needs: Vec<bool> = spec
        .rows
        .iter()
        .map(|v| match v {
            KeyValue::Null | KeyValue::Default => true,
            KeyValue::Slot(s) => matches!(input.value(*s), Val::Null | Val::Int(0) | Val::UInt(0)),
            KeyValue::Unchanged | KeyValue::Other => false,
        })
        .collect();
    let count = needs.iter().filter(|&&n| n).count();
    let (ids, style) = match input.ids {
        Ids::None if count > 0 => {
            return Err(RouteError::IdsNeeded {
                sequence: spec.sequence.clone(),
                table: spec.table.clone(),
                column: spec.column.clone(),
                count,
            })
        }
        Ids::Given(ids, _) if ids.len() != count => {
            return Err(RouteError::Internal(format!(
                "{} ids given for {count} rows of {} to fill",
                ids.len(),
                spec.table
            )))
        }
        Ids::Given(ids, style) => (Some(ids), style),
        Ids::None | Ids::Prepare => (None, IdStyle::Literal),
    };
    let mut next = 0;
    let mut rows = Vec::with_capacity(needs.len());
    let mut slots = Vec::new();
    for (row, (&need, value)) in needs.iter().zip(&spec.rows).enumerate() {
        let id = match (need, ids) {
            (false, _) => RowId::Own,
            (true, None) => RowId::Pending,
            (true, Some(ids)) => {
                let index = next;
                next += 1;
                RowId::Id {
                    id: ids[index],
                    index,
                }
            }
        };
        if let (RowId::Id { .. }, KeyValue::Slot(s)) = (id, value) {
            slots.push((*s, row));
        }
        rows.push(id);
    }
    Ok(RowIds {
        rows,
        slots,
        style,
        first_param: input.placeholders(),
    })
}

impl RowIds {
    /// The value row `row` is routed by, given its key slot: `None` when the
    /// key is the filled column and the row always gets an id; a slot is
    /// replaced by the id when it is the filled column's NULL or 0.
    pub(crate) fn key<'a>(&self, row: usize, slot: Option<usize>, input: &Input<'a>) -> Val<'a> {
        let id = match slot {
            None => self.rows.get(row).copied(),
            Some(s) => self.filled_slot(s),
        };
        match (id, slot) {
            (Some(RowId::Id { id, .. }), _) => Val::UInt(id),
            (_, Some(s)) => input.value(s),
            (_, None) => Val::Unbound,
        }
    }

    /// The id of the row whose literal or `?` slot `slot` an id replaces.
    fn filled_slot(&self, slot: usize) -> Option<RowId> {
        let i = self.slots.binary_search_by_key(&slot, |&(s, _)| s).ok()?;
        self.rows.get(self.slots[i].1).copied()
    }

    fn write_id(&self, id: RowId, out: &mut String, used: &mut Vec<usize>) -> bool {
        let RowId::Id { id, index } = id else {
            return false;
        };
        match self.style {
            IdStyle::Literal => out.push_str(&id.to_string()),
            IdStyle::Param => {
                out.push('?');
                used.push(self.first_param + index);
            }
        }
        true
    }

    /// Writes the value of the [`sql::Seg::Generated`] marker of row `row`.
    pub(crate) fn write_generated(
        &self,
        row: usize,
        out: &mut String,
        used: &mut Vec<usize>,
    ) -> Result<(), RouteError> {
        match self.rows.get(row) {
            Some(RowId::Pending) => out.push_str("DEFAULT"),
            Some(&id) if self.write_id(id, out, used) => {}
            _ => {
                return Err(RouteError::Internal(format!(
                    "no id for row {row} of an INSERT a sequence fills"
                )))
            }
        }
        Ok(())
    }

    /// Writes the id that replaces literal slot `slot` (a NULL or 0); false
    /// when the slot keeps its own value.
    pub(crate) fn write_slot(&self, slot: usize, out: &mut String, used: &mut Vec<usize>) -> bool {
        self.filled_slot(slot)
            .is_some_and(|id| self.write_id(id, out, used))
    }
}
