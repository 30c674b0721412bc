//! `SHOW TABLE STATUS` of the logical schema: the default data source's own tables as its
//! server lists them, and each table of the rules once, under its logical name, with the
//! figures of all its physical tables where it is sharded (rows, data and index lengths,
//! free space summed; the average row length recomputed from the sums; the highest
//! AUTO_INCREMENT and times) and one copy's where it is copied to every data source.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use executor::Flow;
use protocol::resultset::ColumnDef;
use protocol::ServerError;
use router::Plan;
use rules::{PhysicalNode, TableRoute};
use tokio::io::{AsyncRead, AsyncWrite};

use super::command::processes::string_literal;
use super::show::{like_pattern, Filter, Listing, Row, Shown};
use super::Session;
use crate::intercept::like_matches;

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    /// Answers `asked`, a SHOW TABLE STATUS of the logical schema; `plan` runs on the
    /// default data source.
    pub(super) async fn show_table_status(
        &mut self,
        plan: &Plan,
        asked: &Listing<'_>,
    ) -> Result<Shown, Flow> {
        let snapshot = self.ctx.snapshot.load_full();
        let rules = &snapshot.rules;
        let default_ds = plan.targets[0].data_source.clone();
        let mut own = String::from("SHOW TABLE STATUS");
        if let Some(Filter::Like(like)) = asked.filter {
            own = format!("{own} {like}");
        }
        let Some((defs, mut rows)) = self.backend_rows(&default_ds, &own).await? else {
            return Err(self
                .error(ServerError::internal(
                    "dbmesh: SHOW TABLE STATUS answered OK",
                ))
                .await);
        };
        // Which physical tables stand for each table of the rules, by data source.
        let mut shown: BTreeMap<&str, Vec<&PhysicalNode>> = BTreeMap::new();
        let mut by_source: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        let mut physical_here: BTreeSet<&str> = BTreeSet::new();
        for (table, rule) in &rules.tables {
            let nodes = rule.physical_tables();
            for node in nodes {
                if node.data_source == default_ds {
                    physical_here.insert(&node.table);
                }
            }
            let counted: Vec<&PhysicalNode> = match rules.table_rule(table) {
                TableRoute::Sharded(_) => nodes.iter().collect(),
                _ => nodes.iter().take(1).collect(),
            };
            for node in &counted {
                by_source
                    .entry(&node.data_source)
                    .or_default()
                    .insert(&node.table);
            }
            shown.insert(table, counted);
        }
        // The default data source's rows of physical tables of the rules are replaced below.
        rows.retain(|row| {
            let name = row.first().cloned().flatten().unwrap_or_default();
            let name = String::from_utf8_lossy(&name);
            !physical_here.contains(name.as_ref()) && !rules.tables.contains_key(name.as_ref())
        });
        let mut status: HashMap<(&str, Vec<u8>), Row> = HashMap::new();
        for (ds, tables) in &by_source {
            let names: Vec<String> = tables.iter().map(|t| string_literal(t)).collect();
            let sql = format!("SHOW TABLE STATUS WHERE Name IN ({})", names.join(", "));
            let Some((_, found)) = self.backend_rows(ds, &sql).await? else {
                continue;
            };
            for row in found {
                if let Some(Some(name)) = row.first() {
                    status.insert((ds, name.clone()), row);
                }
            }
        }
        let like = like_pattern(asked.sql);
        for (table, nodes) in shown {
            if !like.as_deref().is_none_or(|p| like_matches(p, table)) {
                continue;
            }
            let parts: Vec<&Row> = nodes
                .iter()
                .filter_map(|n| status.get(&(n.data_source.as_str(), n.table.clone().into_bytes())))
                .collect();
            if let Some(row) = combined(&defs, table, &parts) {
                rows.push(row);
            }
        }
        rows.sort_by(|a, b| a.first().cmp(&b.first()));
        if let Some(Filter::Where(condition)) = asked.filter {
            rows = self.filtered(&default_ds, &defs, rows, condition).await?;
        }
        Ok(Shown {
            defs,
            rows,
            warnings: Vec::new(),
        })
    }
}

/// One logical table's row from its physical tables' `parts` (`None` when none exists):
/// named `table`; sizes and counts summed, `Avg_row_length` their quotient, the latest
/// `Update_time`/`Check_time`, the earliest `Create_time`, the highest `Auto_increment`,
/// `Checksum` only of a single part; the rest as the first part has it.
fn combined(defs: &[ColumnDef], table: &str, parts: &[&Row]) -> Option<Row> {
    let first = *parts.first()?;
    let column = |i: usize| parts.iter().map(move |p| p.get(i).cloned().flatten());
    let number = |v: &[u8]| std::str::from_utf8(v).ok()?.parse::<u128>().ok();
    let mut row = first.clone();
    let index = |name: &str| defs.iter().position(|d| d.name.eq_ignore_ascii_case(name));
    for (i, def) in defs.iter().enumerate() {
        let value = match def.name.as_str() {
            "Name" => Some(table.as_bytes().to_vec()),
            "Rows" | "Data_length" | "Max_data_length" | "Index_length" | "Data_free" => {
                sum(column(i).map(|v| v.as_deref().and_then(number)))
            }
            "Auto_increment" => column(i)
                .filter_map(|v| v.as_deref().and_then(number))
                .max()
                .map(|n| n.to_string().into_bytes()),
            "Update_time" | "Check_time" => column(i).flatten().max(),
            "Create_time" => column(i).flatten().min(),
            "Checksum" if parts.len() > 1 => None,
            _ => continue,
        };
        row[i] = value;
    }
    if let (Some(avg), Some(rows), Some(data)) =
        (index("Avg_row_length"), index("Rows"), index("Data_length"))
    {
        let n = |i: usize| row[i].as_deref().and_then(number);
        if let (Some(rows), Some(data)) = (n(rows), n(data)) {
            let average = data.checked_div(rows).unwrap_or(0);
            row[avg] = Some(average.to_string().into_bytes());
        }
    }
    Some(row)
}

/// The sum of the values present, as text; `None` when none is.
fn sum(values: impl Iterator<Item = Option<u128>>) -> Option<Vec<u8>> {
    values
        .flatten()
        .fold(None, |acc: Option<u128>, v| Some(acc.unwrap_or(0) + v))
        .map(|n| n.to_string().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defs(names: &[&str]) -> Vec<ColumnDef> {
        names.iter().map(|n| ColumnDef::varchar(n, 64)).collect()
    }

    fn row(values: &[Option<&str>]) -> Row {
        values
            .iter()
            .map(|v| v.map(|s| s.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn a_sharded_table_sums_its_physical_tables() {
        let defs = defs(&[
            "Name",
            "Engine",
            "Rows",
            "Avg_row_length",
            "Data_length",
            "Auto_increment",
            "Create_time",
            "Update_time",
            "Checksum",
        ]);
        let a = row(&[
            Some("payment_0"),
            Some("InnoDB"),
            Some("10"),
            Some("1638"),
            Some("16384"),
            Some("11"),
            Some("2026-12-07 10:00:00"),
            None,
            Some("7"),
        ]);
        let b = row(&[
            Some("payment_1"),
            Some("InnoDB"),
            Some("30"),
            Some("546"),
            Some("16384"),
            Some("31"),
            Some("2026-12-07 09:00:00"),
            Some("2026-12-07 11:00:00"),
            Some("8"),
        ]);
        let got = combined(&defs, "payment", &[&a, &b]).unwrap();
        let want = row(&[
            Some("payment"),
            Some("InnoDB"),
            Some("40"),
            Some("819"),
            Some("32768"),
            Some("31"),
            Some("2026-12-07 09:00:00"),
            Some("2026-12-07 11:00:00"),
            None,
        ]);
        assert_eq!(got, want);
        let one = combined(&defs, "payment", &[&a]).unwrap();
        assert_eq!(one[0].as_deref(), Some(&b"payment"[..]));
        assert_eq!(one[8].as_deref(), Some(&b"7"[..]));
        assert_eq!(combined(&defs, "payment", &[]), None);
    }

    #[test]
    fn no_rows_average_zero_and_nulls_stay_null() {
        let defs = defs(&[
            "Name",
            "Rows",
            "Avg_row_length",
            "Data_length",
            "Auto_increment",
        ]);
        let a = row(&[Some("t_0"), Some("0"), Some("0"), Some("16384"), None]);
        let b = row(&[Some("t_1"), Some("0"), Some("0"), Some("16384"), None]);
        let got = combined(&defs, "t", &[&a, &b]).unwrap();
        assert_eq!(
            got,
            row(&[Some("t"), Some("0"), Some("0"), Some("32768"), None])
        );
    }
}
