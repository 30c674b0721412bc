//! SHOW / DESCRIBE through the logical view: the statement runs on one backend, and its small
//! result is rewritten so clients see logical names (`payment`, not `payment_3`; `Tables_in_bank`,
//! not `Tables_in_bank_0`). SHOW TABLES lists the tables of the rules that exist, wherever
//! they live, as `information_schema.TABLES` does (see `Session::show_tables`).

use std::collections::{BTreeSet, HashMap};

use protocol::buf::Reader;
use protocol::packets::{is_err, is_terminator, OkPacket};
use protocol::response::{read_result_header, ResultHeader};
use protocol::resultset::{write_binary_result, write_prepare_ok, write_text_result, ColumnDef};

use executor::{Diagnostic, Flow};
use protocol::ServerError;
use router::Plan;
use rules::PhysicalNode;
use sql::{Lexer, Tok, Token};
use tokio::io::{AsyncRead, AsyncWrite};

use super::command::processes::string_literal;
use super::Session;
use crate::intercept::{like_matches, string_value};

/// SHOW output is small; past this many rows it is refused rather than buffered.
const MAX_SHOW_ROWS: usize = 100_000;

pub(super) type Row = Vec<Option<Vec<u8>>>;

/// How the client asked: the result is written in that protocol.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Asked {
    /// COM_QUERY: a text result.
    Query,
    /// COM_STMT_PREPARE: the prepare answer, with the result's columns.
    Prepare { statement_id: u32 },
    /// COM_STMT_EXECUTE: a binary result.
    Execute,
}

/// A SHOW result as the client sees it, with the warnings that go with it.
pub(super) struct Shown {
    pub defs: Vec<ColumnDef>,
    pub rows: Vec<Row>,
    pub warnings: Vec<Diagnostic>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    /// Runs a SHOW / DESCRIBE plan (as text on its backend, whichever way the client asked:
    /// the rewrite works on text values) and answers as `asked`. A prepared SHOW never reaches
    /// a backend as the client's statement, whose answer would name physical tables and the
    /// physical database.
    pub(super) async fn run_show(&mut self, plan: &Plan, original_sql: &str, asked: Asked) -> Flow {
        match self.show_result(plan, original_sql).await {
            Ok(Some(shown)) => {
                let warnings = u16::try_from(shown.warnings.len()).unwrap_or(u16::MAX);
                self.client.diagnostics.extend(shown.warnings);
                self.answer_show(&shown.defs, shown.rows, warnings, asked)
                    .await
            }
            Ok(None) => self.ok().await,
            Err(flow) => flow,
        }
    }

    /// Writes a SHOW result (see [`Self::show_result`]) as `asked`.
    pub(super) async fn answer_show(
        &mut self,
        defs: &[ColumnDef],
        rows: Vec<Row>,
        warnings: u16,
        asked: Asked,
    ) -> Flow {
        let deprecate_eof = self.deprecate_eof();
        let status = self.exec.client_status();
        let packets = &mut self.client.packets;
        match asked {
            Asked::Query => write_text_result(packets, defs, rows, deprecate_eof, warnings, status),
            Asked::Prepare { statement_id } => {
                write_prepare_ok(packets, statement_id, defs, deprecate_eof, status)
            }
            Asked::Execute => {
                let written =
                    write_binary_result(packets, defs, &rows, deprecate_eof, warnings, status);
                if let Err(e) = written {
                    return self
                        .error(ServerError::internal(format!("dbmesh: SHOW result: {e}")))
                        .await;
                }
            }
        }
        self.flush().await
    }

    /// The rewritten result of a SHOW plan; `None` when the backend answered OK. On failure
    /// the client has its answer.
    pub(super) async fn show_result(
        &mut self,
        plan: &Plan,
        original_sql: &str,
    ) -> Result<Option<Shown>, Flow> {
        let target = &plan.targets[0];
        if let (Some(asked), Some(physical)) = (
            Listing::parse(original_sql, Listed::Tables),
            Listing::parse(&target.sql, Listed::Tables),
        ) {
            return self.show_tables(plan, &asked, &physical).await.map(Some);
        }
        if let Some(asked) = Listing::parse(original_sql, Listed::TableStatus)
            .filter(|l| self.names_logical_schema(l.from))
        {
            return self.show_table_status(plan, &asked).await.map(Some);
        }
        let Some((defs, mut rows)) = self.backend_rows(&target.data_source, &target.sql).await?
        else {
            return Ok(None);
        };
        for row in &mut rows {
            for value in row.iter_mut().flatten() {
                rename_value(value, &plan.rename);
            }
        }
        Ok(Some(Shown {
            defs,
            rows,
            warnings: Vec::new(),
        }))
    }

    /// Whether a listing's `FROM db` part (empty, or `FROM db`/`IN db`) names the session's
    /// logical schema.
    fn names_logical_schema(&self, from: &str) -> bool {
        let mut words = from.split_whitespace();
        match (words.next(), words.next(), words.next()) {
            (None, ..) => true,
            (Some(kw), Some(db), None)
                if kw.eq_ignore_ascii_case("FROM") || kw.eq_ignore_ascii_case("IN") =>
            {
                let db = db.trim_matches('`');
                self.ctx
                    .snapshot
                    .load()
                    .rules
                    .schema
                    .name
                    .eq_ignore_ascii_case(db)
            }
            _ => false,
        }
    }

    /// `SHOW [FULL] TABLES [FROM db] [LIKE … | WHERE …]` of the logical schema: the default
    /// data source's own tables, and each table of the rules that exists — exactly those
    /// `information_schema.TABLES` lists, whose physical table standing for them exists.
    /// LIKE is the backend's for its own tables; a WHERE condition is evaluated by the
    /// default data source's server on the logical rows, under the logical column names.
    /// `asked` is the client's statement, `physical` the target's (the physical database
    /// after FROM).
    async fn show_tables(
        &mut self,
        plan: &Plan,
        asked: &Listing<'_>,
        physical: &Listing<'_>,
    ) -> Result<Shown, Flow> {
        let target = &plan.targets[0];
        // FULL always, for the type of the tables it lists; WHERE is applied below.
        let mut sql = format!("SHOW FULL TABLES {}", physical.from);
        if let Some(Filter::Like(like)) = physical.filter {
            sql = format!("{sql} {like}");
        }
        let Some((mut defs, mut rows)) = self.backend_rows(&target.data_source, &sql).await? else {
            return Err(self
                .error(ServerError::internal("dbmesh: SHOW TABLES answered OK"))
                .await);
        };
        for row in &mut rows {
            if let Some(Some(name)) = row.first_mut() {
                rename_value(name, &plan.rename);
            }
        }
        // The tables of the rules are listed by whether they exist, below.
        rows.retain(|r| {
            let name = r.first().cloned().flatten().unwrap_or_default();
            !plan.add_tables.iter().any(|t| t.as_bytes() == name)
        });
        let (existing, warnings) = self.existing_rule_tables(&plan.add_tables).await?;
        let like = like_pattern(asked.sql);
        for (table, kind) in existing {
            if like.as_deref().is_none_or(|p| like_matches(p, &table)) {
                rows.push(vec![
                    Some(table.into_bytes()),
                    Some(kind.as_bytes().to_vec()),
                ]);
            }
        }
        rows.sort_by(|a, b| a.first().cmp(&b.first()));
        rows.dedup_by(|a, b| a.first() == b.first());
        if !asked.full {
            defs.truncate(1);
            for row in &mut rows {
                row.truncate(1);
            }
        }
        if let Some(Filter::Where(condition)) = asked.filter {
            rows = self
                .filtered(&target.data_source, &defs, rows, condition)
                .await?;
        }
        Ok(Shown {
            defs,
            rows,
            warnings,
        })
    }

    /// The rows of SHOW TABLES for which `condition` holds, as the server of `data_source`
    /// evaluates it on a derived table of them with SHOW TABLES' column names.
    pub(super) async fn filtered(
        &mut self,
        data_source: &str,
        defs: &[ColumnDef],
        rows: Vec<Row>,
        condition: &str,
    ) -> Result<Vec<Row>, Flow> {
        let mut derived = format!("SELECT NULL AS {ROW_COLUMN}");
        for def in defs {
            derived += &format!(", NULL AS {}", sql::quote_ident(&def.name));
        }
        derived += " FROM DUAL WHERE FALSE";
        for (i, row) in rows.iter().enumerate() {
            derived += &format!(" UNION ALL SELECT {i}");
            for value in row {
                let text = value
                    .as_deref()
                    .map(String::from_utf8_lossy)
                    .unwrap_or_default();
                derived += &format!(", {}", string_literal(&text));
            }
        }
        let query =
            format!("SELECT {ROW_COLUMN} FROM ({derived}) AS dbmesh_show_tables WHERE {condition}");
        let result = self.query_on(data_source, &query).await?;
        let kept: BTreeSet<usize> = result
            .rows
            .iter()
            .filter_map(|r| r.first()?.as_deref()?.parse().ok())
            .collect();
        Ok(rows
            .into_iter()
            .enumerate()
            .filter(|(i, _)| kept.contains(i))
            .map(|(_, r)| r)
            .collect())
    }

    /// Which of `tables` (of the rules) exist, with SHOW FULL TABLES' type: those whose
    /// physical table standing for them exists ([`router::representative`], the one
    /// `information_schema.TABLES` describes). A table whose physical tables exist on some
    /// of its data sources and not on others gets a warning, its count of missing physical
    /// tables in `dbmesh_table_physical_missing`, and the missing ones in the log.
    async fn existing_rule_tables(
        &mut self,
        tables: &[String],
    ) -> Result<(Vec<(String, &'static str)>, Vec<Diagnostic>), Flow> {
        let snapshot = self.ctx.snapshot.load_full();
        let rules = &snapshot.rules;
        let data_sources: BTreeSet<&str> = tables
            .iter()
            .filter_map(|t| rules.tables.get(t))
            .flat_map(|r| r.physical_tables())
            .map(|n| n.data_source.as_str())
            .collect();
        // (data source, physical table) → its TABLE_TYPE.
        let mut present: HashMap<(&str, String), String> = HashMap::new();
        for ds in data_sources {
            let result = self.query_on(ds, PHYSICAL_TABLES).await?;
            for row in result.rows {
                if let [Some(name), Some(kind)] = row.as_slice() {
                    present.insert((ds, name.clone()), kind.clone());
                }
            }
        }
        let schema = &rules.schema.name;
        let mut existing = Vec::new();
        let mut warnings = Vec::new();
        for table in tables {
            let Some(rule) = rules.tables.get(table) else {
                continue;
            };
            let nodes = rule.physical_tables();
            let missing: Vec<&PhysicalNode> = nodes
                .iter()
                .filter(|n| !present.contains_key(&(n.data_source.as_str(), n.table.clone())))
                .collect();
            let partial = !missing.is_empty() && missing.len() < nodes.len();
            self.ctx
                .metrics
                .table_physical_missing(table, if partial { missing.len() } else { 0 });
            if partial {
                let names: Vec<String> = missing.iter().map(ToString::to_string).collect();
                tracing::warn!(
                    table = %table,
                    missing = %names.join(", "),
                    "physical tables of a table of the rules are missing while others exist"
                );
                warnings.push(Diagnostic {
                    level: "Warning".into(),
                    code: ER_NO_SUCH_TABLE,
                    message: format!(
                        "Table '{schema}.{table}' is missing on {} of its {} physical tables: \
                         CREATE TABLE IF NOT EXISTS or DROP TABLE IF EXISTS through dbmesh \
                         repairs it; `dbmesh check --connect` lists them",
                        missing.len(),
                        nodes.len()
                    ),
                });
            }
            let standing = router::representative(rules, table)
                .and_then(|(ds, name)| present.get(&(ds.as_str(), name)).cloned());
            if let Some(kind) = standing {
                existing.push((table.clone(), show_table_type(&kind)));
            }
        }
        Ok((existing, warnings))
    }

    /// Runs `sql` on a connection to `data_source` and reads its small result. On failure
    /// the client has its answer.
    async fn query_on(
        &mut self,
        data_source: &str,
        sql: &str,
    ) -> Result<backend::QueryResult, Flow> {
        let snapshot = self.ctx.snapshot.load_full();
        let result = match self.exec.backend(&snapshot, data_source).await {
            Ok(conn) => conn.query(sql).await,
            Err(e) => return Err(self.error(e).await),
        };
        match result {
            Ok(result) => Ok(result),
            Err(e @ backend::BackendError::Server { .. }) => Err(self.error(e).await),
            Err(e) => Err(self.backend_lost(data_source, e).await),
        }
    }

    /// Runs `sql` on `data_source` as text and returns its columns, named with the logical
    /// database where they name the physical one, and its rows (values as the server sent
    /// them); `None` when the server answered OK. On failure the client has its answer.
    pub(super) async fn backend_rows(
        &mut self,
        data_source: &str,
        sql: &str,
    ) -> Result<Option<(Vec<ColumnDef>, Vec<Row>)>, Flow> {
        let snapshot = self.ctx.snapshot.load_full();
        let conn = match self.exec.backend(&snapshot, data_source).await {
            Ok(conn) => conn,
            Err(e) => return Err(self.error(e).await),
        };
        let physical_db = conn.state().database.clone().unwrap_or_default();
        let result = async {
            conn.send_command_with(|b| {
                b.extend_from_slice(&[protocol::constants::com::QUERY]);
                b.extend_from_slice(&protocol::text::encode(sql));
            })
            .await?;
            let lost = |error| backend::BackendError::Lost {
                source_name: data_source.to_owned(),
                error,
            };
            let header = read_result_header(conn.packets()).await.map_err(lost)?;
            let columns = match header {
                ResultHeader::Columns(c) => c,
                ResultHeader::Ok(_) => return Ok(None),
                ResultHeader::Err(error) => {
                    return Err(backend::BackendError::Server {
                        source_name: data_source.to_owned(),
                        error,
                    })
                }
            };
            let mut rows: Vec<Row> = Vec::new();
            loop {
                let packet = conn.packets().read_packet(usize::MAX).await.map_err(lost)?;
                if is_terminator(&packet) {
                    conn.status = OkPacket::decode(&packet).map_err(lost)?.status;
                    break;
                }
                if is_err(&packet) {
                    let error = ServerError::decode(&packet).map_err(lost)?;
                    return Err(backend::BackendError::Server {
                        source_name: data_source.to_owned(),
                        error,
                    });
                }
                let mut r = Reader::new(&packet);
                let row = (0..columns.len())
                    .map(|_| r.lenenc_bytes_or_null().map(|v| v.map(<[u8]>::to_vec)))
                    .collect::<Result<Row, _>>()
                    .map_err(lost)?;
                if rows.len() < MAX_SHOW_ROWS {
                    rows.push(row);
                }
            }
            let defs = columns
                .iter()
                .map(|c| ColumnDef::decode(c))
                .collect::<Result<Vec<_>, _>>()
                .map_err(lost)?;
            Ok(Some((defs, rows)))
        }
        .await;
        let logical_db = self.exec.state.database.clone().unwrap_or_default();
        match result {
            Ok(Some((mut defs, rows))) => {
                for def in &mut defs {
                    logical_column(def, &physical_db, &logical_db);
                }
                Ok(Some((defs, rows)))
            }
            Ok(None) => Ok(None),
            Err(e @ backend::BackendError::Server { .. }) => Err(self.error(e).await),
            Err(e) => Err(self.backend_lost(data_source, e).await),
        }
    }
}

/// `def` named with the logical database where it names the physical one: SHOW TABLES'
/// `Tables_in_bank_0`, or `Tables_in_bank_0 (pay%)` with LIKE, and the column's schema.
fn logical_column(def: &mut ColumnDef, physical_db: &str, logical_db: &str) {
    let rest = def
        .name
        .strip_prefix("Tables_in_")
        .and_then(|n| n.strip_prefix(physical_db))
        .filter(|rest| rest.is_empty() || rest.starts_with(" ("));
    if let Some(rest) = rest {
        def.name = format!("Tables_in_{logical_db}{rest}");
        def.org_name = def.name.clone();
    }
    if def.schema == physical_db {
        def.schema = logical_db.to_owned();
    }
}

/// What the proxy asks each data source holding tables of the rules: which exist.
const PHYSICAL_TABLES: &str =
    "SELECT TABLE_NAME, TABLE_TYPE FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE()";

/// The column of SHOW TABLES' derived table numbering its rows (see `filtered`).
const ROW_COLUMN: &str = "dbmesh_row";

/// MariaDB's ER_NO_SUCH_TABLE: the warning for a table that only partly exists.
const ER_NO_SUCH_TABLE: u16 = 1146;

/// SHOW FULL TABLES' `Table_type` for an `information_schema.TABLES.TABLE_TYPE`.
fn show_table_type(information_schema_type: &str) -> &'static str {
    match information_schema_type {
        "VIEW" => "VIEW",
        "SEQUENCE" => "SEQUENCE",
        _ => "BASE TABLE",
    }
}

/// How a listing SHOW filters its rows.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Filter<'a> {
    /// `LIKE '…'`: the text from LIKE on.
    Like(&'a str),
    /// `WHERE …`: the condition's text.
    Where(&'a str),
}

/// A listing SHOW: `SHOW [FULL] TABLES` or `SHOW TABLE STATUS`, then `[{FROM | IN} db]
/// [LIKE … | WHERE …]`.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Listing<'a> {
    pub sql: &'a str,
    pub full: bool,
    /// The text between the listing's words and the filter: `FROM db`, if any.
    pub from: &'a str,
    pub filter: Option<Filter<'a>>,
}

/// What a listing SHOW lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Listed {
    /// `SHOW [FULL] TABLES`
    Tables,
    /// `SHOW TABLE STATUS`
    TableStatus,
}

impl<'a> Listing<'a> {
    /// `sql` read as a listing of `what`; `None` for any other statement.
    pub(super) fn parse(sql: &'a str, what: Listed) -> Option<Listing<'a>> {
        let mut lexer = Lexer::new(sql);
        let mut words = Vec::new();
        while let Some(t) = lexer.next_token() {
            words.push(t);
        }
        let word = |t: &Token| sql.get(t.start..t.end).unwrap_or("");
        let is = |i: usize, w: &str| {
            words
                .get(i)
                .is_some_and(|t| t.kind == Tok::Word && word(t).eq_ignore_ascii_case(w))
        };
        if !is(0, "SHOW") {
            return None;
        }
        let (full, last) = match what {
            Listed::Tables => {
                let full = is(1, "FULL");
                let at = 1 + usize::from(full);
                (full, is(at, "TABLES").then_some(at)?)
            }
            Listed::TableStatus => (false, (is(1, "TABLE") && is(2, "STATUS")).then_some(2)?),
        };
        let text = |from: usize| {
            let rest = sql[from..].trim_end();
            rest.strip_suffix(';').unwrap_or(rest).trim()
        };
        let filter_at = (last + 1..words.len()).find(|&i| is(i, "LIKE") || is(i, "WHERE"));
        let from_end = filter_at.map_or(sql.len(), |i| words[i].start);
        let from = sql[words[last].end..from_end].trim();
        let from = from.strip_suffix(';').unwrap_or(from);
        let filter = filter_at.map(|i| match is(i, "LIKE") {
            true => Filter::Like(text(words[i].start)),
            false => Filter::Where(text(words[i].end)),
        });
        Some(Listing {
            sql,
            full,
            from: from.trim(),
            filter,
        })
    }
}

/// Replaces a physical table name by its logical one: a whole value (SHOW TABLES, SHOW INDEX)
/// or a quoted name inside SHOW CREATE TABLE's text.
fn rename_value(value: &mut Vec<u8>, renames: &[(String, String)]) {
    for (physical, logical) in renames {
        if value.as_slice() == physical.as_bytes() {
            *value = logical.clone().into_bytes();
            return;
        }
        let quoted = format!("`{physical}`");
        if let Some(text) = std::str::from_utf8(value)
            .ok()
            .filter(|t| t.contains(&quoted))
        {
            *value = text.replace(&quoted, &format!("`{logical}`")).into_bytes();
        }
    }
}

/// The pattern of a trailing `LIKE '...'`, if any.
pub(super) fn like_pattern(sql: &str) -> Option<String> {
    let mut lexer = Lexer::new(sql);
    let mut last: [Option<Token>; 2] = [None, None];
    while let Some(t) = lexer.next_token() {
        if t.kind != Tok::Semicolon {
            last = [last[1], Some(t)];
        }
    }
    let [Some(like), Some(pattern)] = last else {
        return None;
    };
    let word = sql.get(like.start..like.end)?;
    if like.kind != Tok::Word || !word.eq_ignore_ascii_case("LIKE") {
        return None;
    }
    match pattern.kind {
        Tok::Str(_) => string_value(sql.get(pattern.start..pattern.end)?),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renames_whole_values_and_quoted_names() {
        let renames = vec![("payment_3".to_string(), "payment".to_string())];
        let mut v = b"payment_3".to_vec();
        rename_value(&mut v, &renames);
        assert_eq!(v, b"payment");
        let mut v = b"CREATE TABLE `payment_3` (\n  `id` int)".to_vec();
        rename_value(&mut v, &renames);
        assert_eq!(v, b"CREATE TABLE `payment` (\n  `id` int)");
        let mut v = b"payment_30".to_vec();
        rename_value(&mut v, &renames);
        assert_eq!(v, b"payment_30");
    }

    #[test]
    fn reads_show_tables() {
        let parse = |sql| Listing::parse(sql, Listed::Tables).map(|s| (s.full, s.from, s.filter));
        assert_eq!(parse("SHOW TABLES"), Some((false, "", None)));
        assert_eq!(
            parse("show full tables from `bank` like 'p%';"),
            Some((true, "from `bank`", Some(Filter::Like("like 'p%'"))))
        );
        assert_eq!(
            parse("SHOW FULL TABLES IN bank WHERE Table_type = 'VIEW' ; "),
            Some((true, "IN bank", Some(Filter::Where("Table_type = 'VIEW'"))))
        );
        assert_eq!(
            parse("SHOW TABLES WHERE Tables_in_bank LIKE 'a%'"),
            Some((false, "", Some(Filter::Where("Tables_in_bank LIKE 'a%'"))))
        );
        assert_eq!(parse("SHOW TABLE STATUS"), None);
        assert_eq!(parse("SHOW CREATE TABLE tables"), None);
        let status = |sql| Listing::parse(sql, Listed::TableStatus).map(|s| (s.from, s.filter));
        assert_eq!(status("SHOW TABLE STATUS"), Some(("", None)));
        assert_eq!(
            status("show table status from bank where Engine = 'InnoDB'"),
            Some(("from bank", Some(Filter::Where("Engine = 'InnoDB'"))))
        );
        assert_eq!(
            status("SHOW TABLE STATUS LIKE 'p%'"),
            Some(("", Some(Filter::Like("LIKE 'p%'"))))
        );
        assert_eq!(status("SHOW TABLES"), None);
        assert_eq!(parse("SELECT 'SHOW TABLES'"), None);
    }

    #[test]
    fn finds_like_patterns() {
        assert_eq!(like_pattern("SHOW TABLES LIKE 'p%'"), Some("p%".into()));
        assert_eq!(
            like_pattern("show full tables from bank like \"a_\";"),
            Some("a_".into())
        );
        assert_eq!(like_pattern("SHOW TABLES"), None);
        assert_eq!(
            like_pattern(r"SHOW TABLES LIKE 'o''k\'s\_%'"),
            Some(r"o'k's\_%".into())
        );
        // Only a trailing LIKE: a condition further on is not the pattern.
        assert_eq!(
            like_pattern("SHOW TABLES WHERE a LIKE 'x' AND b = 'y'"),
            None
        );
        assert_eq!(
            like_pattern("SHOW TABLES LIKE 'p%' -- pattern"),
            Some("p%".into())
        );
    }
}
