//! Logical → physical rewriting: table names in every position, the logical
//! schema qualifier, and `DATABASE()`.
//!
//! [`Statement::render`] rewrites a copy of the AST — relations (FROM, JOIN,
//! subqueries, DML targets, DDL subjects and references), column qualifiers
//! (`payment.amount`, `bank.payment.amount`, `payment.*`), UPDATE/ON DUPLICATE
//! KEY targets, multi-table DELETE targets, SHOW subjects — replacing each
//! table chosen for renaming by a marker, then prints it with sqlparser's
//! `Display` and cuts the text at the markers. The result is a [`Rendered`]
//! template of [`Seg`]ments: text, literal slots (bound by
//! [`Statement::bind_slots`]) and table slots, into which the router splices
//! literal texts and physical names per target. The rows of an
//! `INSERT … VALUES` come out separately so that they can be split by shard.

use std::collections::HashSet;
use std::ops::ControlFlow;

use sqlparser::ast::{
    self, AlterTableOperation, AssignmentTarget, ColumnOption, Expr, FunctionArguments, Ident,
    ObjectName, Query, SelectItem, SelectItemQualifiedWildcardKind, SetExpr, TableConstraint,
    TableFactor, Value, Visit, VisitMut, Visitor, VisitorMut,
};

use crate::analyze::{classify_name, name_parts, show_index_table, Analysis, NameTarget, TableRef};
use crate::parse::{table_marker, Statement, ROWS_MARKER};
use crate::SqlError;

/// How a table's name is written in the physical statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Naming {
    /// As the client wrote it (only a logical-schema qualifier is dropped).
    Keep,
    /// Replaced by a [`Seg::Table`] slot, filled per target with the physical name.
    Physical,
}

/// A piece of a rendered statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    /// Text copied as is.
    Text(String),
    /// The literal (or `?`) in this fingerprint slot, as written in the statement text.
    Slot(usize),
    /// The literal in this slot as written, inside a backquoted name (an alias naming a
    /// select item after its text): backticks doubled, and a `?` stays a `?` that binds no
    /// parameter.
    SlotInName(usize),
    /// The physical name of this table (index into [`Analysis::tables`]).
    Table(usize),
    /// The id a sequence generates for the INSERT row this segment belongs to
    /// (see [`Statement::with_generated`]).
    Generated,
    /// The row count each shard returns for a merged SELECT with LIMIT (the
    /// statement's offset plus count).
    Limit,
}

/// A statement rendered as a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// The statement (up to and including `VALUES ` when `rows` is not empty).
    pub head: Vec<Seg>,
    /// The rows of an `INSERT … VALUES`, each `(…)`, to be joined with `, `;
    /// empty for every other statement.
    pub rows: Vec<Vec<Seg>>,
    /// What follows the rows (`ON DUPLICATE KEY UPDATE …`).
    pub tail: Vec<Seg>,
}

impl Statement {
    /// Renders the statement with table names replaced as `naming` (one entry
    /// per [`Analysis::tables`]) says, the `schema` qualifier dropped, and
    /// `DATABASE()` replaced by the string `database` when given. With
    /// `split_rows`, the rows of an `INSERT … VALUES` are rendered separately.
    pub fn render(
        &self,
        analysis: &Analysis,
        schema: &str,
        naming: &[Naming],
        database: Option<&str>,
        split_rows: bool,
    ) -> Result<Rendered, SqlError> {
        let mut aliases = AliasCollector::default();
        let _ = self.ast.visit(&mut aliases);
        let mut ast = self.ast.clone();
        let mut renamer = Renamer {
            tables: &analysis.tables,
            ctes: &analysis.ctes,
            aliases: aliases.names,
            schema,
            naming,
            database,
        };
        let _ = VisitMut::visit(&mut ast, &mut renamer);
        let mut rows = Vec::new();
        if split_rows {
            if let Some(values) = insert_values(&mut ast) {
                let marker = Expr::Value(Value::Placeholder(ROWS_MARKER.to_owned()).into());
                let taken = std::mem::replace(
                    &mut values.rows,
                    vec![ast::Parens {
                        opening_token: ast::helpers::attached_token::AttachedToken::empty(),
                        content: vec![marker],
                        closing_token: ast::helpers::attached_token::AttachedToken::empty(),
                    }],
                );
                for row in taken {
                    let items: Vec<String> = row.content.iter().map(ToString::to_string).collect();
                    let text = format!("({})", items.join(", "));
                    rows.push(segments(&text)?);
                }
            }
        }
        let text = Statement {
            ast,
            extras: self.extras,
        }
        .to_string();
        if rows.is_empty() {
            return Ok(Rendered {
                head: segments(&text)?,
                rows,
                tail: Vec::new(),
            });
        }
        let cut = format!("({ROWS_MARKER})");
        let Some(at) = text.find(&cut) else {
            return Err(SqlError::Render("INSERT rows not found".into()));
        };
        Ok(Rendered {
            head: segments(&text[..at])?,
            rows,
            tail: segments(&text[at + cut.len()..])?,
        })
    }
}

/// The VALUES of an INSERT … VALUES.
fn insert_values(stmt: &mut ast::Statement) -> Option<&mut ast::Values> {
    match stmt {
        ast::Statement::Insert(ins) => match ins.source.as_deref_mut() {
            Some(Query { body, .. }) => match body.as_mut() {
                SetExpr::Values(v) => Some(v),
                _ => None,
            },
            None => None,
        },
        _ => None,
    }
}

/// Cuts printed text at the NUL-delimited markers.
pub(crate) fn segments(text: &str) -> Result<Vec<Seg>, SqlError> {
    let mut out = Vec::new();
    for (i, piece) in text.split('\u{0}').enumerate() {
        if i % 2 == 0 {
            if !piece.is_empty() {
                out.push(Seg::Text(piece.to_owned()));
            }
            continue;
        }
        let number = |s: &str| s.parse::<usize>().ok();
        let seg = match piece.split_at_checked(1) {
            Some(("L", n)) => number(n).map(Seg::Slot),
            Some(("N", n)) => number(n).map(Seg::SlotInName),
            Some(("T", n)) => number(n).map(Seg::Table),
            Some(("G", "")) => Some(Seg::Generated),
            Some(("M", "")) => Some(Seg::Limit),
            _ => None,
        };
        match seg {
            Some(s) => out.push(s),
            None => {
                return Err(SqlError::Render(
                    "a NUL character outside a string literal".into(),
                ))
            }
        }
    }
    if text.split('\u{0}').count() % 2 == 0 {
        return Err(SqlError::Render(
            "a NUL character outside a string literal".into(),
        ));
    }
    Ok(out)
}

/// Every table alias and derived-table alias of a statement (lowercase).
#[derive(Default)]
struct AliasCollector {
    names: HashSet<String>,
}

impl Visitor for AliasCollector {
    type Break = ();
    fn pre_visit_table_factor(&mut self, f: &TableFactor) -> ControlFlow<()> {
        let alias = match f {
            TableFactor::Table { alias, .. }
            | TableFactor::Derived { alias, .. }
            | TableFactor::TableFunction { alias, .. }
            | TableFactor::Function { alias, .. }
            | TableFactor::JsonTable { alias, .. }
            | TableFactor::NestedJoin { alias, .. } => alias.as_ref(),
            _ => None,
        };
        if let Some(a) = alias {
            self.names.insert(a.name.value.to_ascii_lowercase());
        }
        ControlFlow::Continue(())
    }
}

struct Renamer<'a> {
    tables: &'a [TableRef],
    ctes: &'a [String],
    aliases: HashSet<String>,
    schema: &'a str,
    naming: &'a [Naming],
    database: Option<&'a str>,
}

fn marker_name(id: usize) -> ObjectName {
    ObjectName::from(vec![Ident::new(table_marker(id))])
}

fn find(tables: &[TableRef], name: &str) -> Option<usize> {
    tables
        .iter()
        .position(|t| t.foreign_schema.is_none() && t.name.eq_ignore_ascii_case(name))
}

impl Renamer<'_> {
    fn naming(&self, id: usize) -> Naming {
        self.naming.get(id).copied().unwrap_or(Naming::Keep)
    }

    fn is_cte(&self, name: &str) -> bool {
        self.ctes.iter().any(|c| c.eq_ignore_ascii_case(name))
    }

    /// Renames a relation (a table name, possibly schema-qualified).
    fn table(&self, name: &mut ObjectName) {
        let (id, qualified, last) = match classify_name(name, self.schema) {
            Some(NameTarget::Logical(t, qualified)) => {
                if !qualified && self.is_cte(t) {
                    return;
                }
                match find(self.tables, t) {
                    Some(id) => (id, qualified, t.to_owned()),
                    None => return,
                }
            }
            _ => return,
        };
        match self.naming(id) {
            Naming::Physical => *name = marker_name(id),
            Naming::Keep if qualified => {
                if let Some(ast::ObjectNamePart::Identifier(i)) = name.0.last().cloned() {
                    *name = ObjectName::from(vec![i]);
                } else {
                    *name = ObjectName::from(vec![Ident::new(last)]);
                }
            }
            Naming::Keep => {}
        }
    }

    /// Renames the table qualifier of a column reference (`t.c`, `db.t.c`).
    fn column(&self, parts: &mut Vec<Ident>) {
        match parts.len() {
            2 => {
                let q = parts[0].value.to_ascii_lowercase();
                if self.aliases.contains(&q) || self.is_cte(&q) {
                    return;
                }
                if let Some(id) = find(self.tables, &q) {
                    if self.naming(id) == Naming::Physical {
                        parts[0] = Ident::new(table_marker(id));
                    }
                }
            }
            3 if parts[0].value.eq_ignore_ascii_case(self.schema) => {
                if let Some(id) = find(self.tables, &parts[1].value) {
                    parts.remove(0);
                    if self.naming(id) == Naming::Physical {
                        parts[0] = Ident::new(table_marker(id));
                    }
                }
            }
            _ => {}
        }
    }

    /// Renames a qualifier that is an object name without the column (`t.*`).
    fn qualifier(&self, name: &mut ObjectName) {
        let mut parts: Vec<Ident> = name
            .0
            .iter()
            .filter_map(|p| match p {
                ast::ObjectNamePart::Identifier(i) => Some(i.clone()),
                ast::ObjectNamePart::Function(_) => None,
            })
            .collect();
        if parts.len() != name.0.len() {
            return;
        }
        parts.push(Ident::new("*"));
        self.column(&mut parts);
        parts.pop();
        *name = ObjectName::from(parts);
    }

    fn assignment_targets(&self, assignments: &mut [ast::Assignment]) {
        for a in assignments {
            match &mut a.target {
                AssignmentTarget::ColumnName(n) => self.column_name(n),
                AssignmentTarget::Tuple(v) => v.iter_mut().for_each(|n| self.column_name(n)),
            }
        }
    }

    /// A column written as an object name (`SET p.amount = …`).
    fn column_name(&self, name: &mut ObjectName) {
        if name.0.len() < 2 {
            return;
        }
        if let Some((_, qualifier)) = name.0.split_last_mut() {
            let mut q = ObjectName(qualifier.to_vec());
            self.qualifier(&mut q);
            let last = name.0.last().cloned();
            name.0 = q.0;
            name.0.extend(last);
        }
    }

    fn foreign_keys(&self, constraints: &mut [TableConstraint], columns: &mut [ast::ColumnDef]) {
        for c in constraints {
            if let TableConstraint::ForeignKey(fk) = c {
                self.table(&mut fk.foreign_table);
            }
        }
        for col in columns {
            for opt in &mut col.options {
                if let ColumnOption::ForeignKey(fk) = &mut opt.option {
                    self.table(&mut fk.foreign_table);
                }
            }
        }
    }
}

impl VisitorMut for Renamer<'_> {
    type Break = ();

    fn pre_visit_relation(&mut self, relation: &mut ObjectName) -> ControlFlow<()> {
        self.table(relation);
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        match expr {
            Expr::CompoundIdentifier(parts) => self.column(parts),
            Expr::QualifiedWildcard(name, _) => self.qualifier(name),
            Expr::MatchAgainst { columns, .. } => {
                for c in columns {
                    let mut parts: Vec<Ident> = name_parts(c).into_iter().map(Ident::new).collect();
                    if parts.len() >= 2 {
                        self.column(&mut parts);
                        *c = ObjectName::from(parts);
                    }
                }
            }
            Expr::Function(f) => {
                let name = name_parts(&f.name).join(".").to_ascii_uppercase();
                let no_args = match &f.args {
                    FunctionArguments::None => true,
                    FunctionArguments::List(l) => l.args.is_empty(),
                    FunctionArguments::Subquery(_) => false,
                };
                if let (Some(db), true) = (self.database, no_args) {
                    if name == "DATABASE" || name == "SCHEMA" {
                        *expr = Expr::Value(Value::SingleQuotedString(db.to_owned()).into());
                    }
                }
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_select(&mut self, select: &mut ast::Select) -> ControlFlow<()> {
        for item in &mut select.projection {
            if let SelectItem::QualifiedWildcard(
                SelectItemQualifiedWildcardKind::ObjectName(n),
                _,
            ) = item
            {
                self.qualifier(n);
            }
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_statement(&mut self, stmt: &mut ast::Statement) -> ControlFlow<()> {
        use ast::Statement as S;
        match stmt {
            S::Update(u) => self.assignment_targets(&mut u.assignments),
            S::Insert(ins) => {
                if let Some(ast::OnInsert::DuplicateKeyUpdate(a)) = &mut ins.on {
                    self.assignment_targets(a);
                }
                ins.columns.iter_mut().for_each(|c| self.column_name(c));
            }
            S::Delete(d) => {
                for t in &mut d.tables {
                    let parts = name_parts(t);
                    let is_alias = matches!(parts.as_slice(), [q] if self.aliases.contains(&q.to_ascii_lowercase()));
                    if !is_alias {
                        self.table(t);
                    }
                }
            }
            S::Drop { names, table, .. } => {
                names.iter_mut().for_each(|n| self.table(n));
                if let Some(t) = table {
                    self.table(t);
                }
            }
            S::CreateTable(ct) => {
                if let Some(
                    ast::CreateTableLikeKind::Parenthesized(l) | ast::CreateTableLikeKind::Plain(l),
                ) = &mut ct.like
                {
                    self.table(&mut l.name);
                }
                if let Some(c) = &mut ct.clone {
                    self.table(c);
                }
                self.foreign_keys(&mut ct.constraints, &mut ct.columns);
            }
            S::AlterTable(at) => {
                for op in &mut at.operations {
                    match op {
                        AlterTableOperation::AddConstraint { constraint, .. } => {
                            self.foreign_keys(std::slice::from_mut(constraint), &mut [])
                        }
                        AlterTableOperation::AddColumn { column_def, .. } => {
                            self.foreign_keys(&mut [], std::slice::from_mut(column_def))
                        }
                        _ => {}
                    }
                }
            }
            S::RenameTable(renames) => {
                for r in renames {
                    self.table(&mut r.old_name);
                    self.table(&mut r.new_name);
                }
            }
            S::ShowCreate { obj_name, .. } => self.table(obj_name),
            S::ShowVariable { variable } => {
                if let Some(mut name) = show_index_table(variable) {
                    self.table(&mut name);
                    let at = usize::from(
                        variable
                            .first()
                            .is_some_and(|w| w.value.eq_ignore_ascii_case("EXTENDED")),
                    );
                    variable.truncate(at + 2);
                    variable.extend(name.0.into_iter().filter_map(|p| match p {
                        ast::ObjectNamePart::Identifier(i) => Some(i),
                        ast::ObjectNamePart::Function(_) => None,
                    }));
                }
            }
            S::ShowTables { show_options, .. } => {
                let logical = show_options
                    .show_in
                    .as_ref()
                    .and_then(|i| i.parent_name.as_ref())
                    .is_some_and(|n| {
                        n.to_string().eq_ignore_ascii_case(self.schema)
                            || name_parts(n).join(".").eq_ignore_ascii_case(self.schema)
                    });
                if logical {
                    show_options.show_in = None;
                }
                // `SHOW TABLES FROM db` names a database, not a table: nothing else to rename.
                return ControlFlow::Continue(());
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyze::KeyOracle;
    use crate::fingerprint::fingerprint;
    use crate::parse::parse;

    struct Keys;
    impl KeyOracle for Keys {
        fn sharding_column(&self, table: &str) -> Option<&str> {
            ["payment", "account", "customer"]
                .iter()
                .any(|t| t.eq_ignore_ascii_case(table))
                .then_some("uid")
        }
        fn are_bound(&self, a: &str, b: &str) -> bool {
            self.sharding_column(a).is_some() && self.sharding_column(b).is_some()
        }
    }

    /// Renders `sql` with every table of the logical schema `bank` renamed to
    /// `<name>_7` and the literals spliced back; checks the output re-parses
    /// to an AST that prints the same (parse(print(ast)) == ast).
    fn physical(sql: &str) -> String {
        let fp = fingerprint(sql);
        let mut stmt = parse(sql).unwrap().remove(0);
        stmt.bind_slots(sql, &fp);
        let a = stmt.analyze("bank", &Keys).unwrap();
        let naming: Vec<Naming> = a
            .tables
            .iter()
            .map(|t| {
                if t.name.starts_with("keep") || t.foreign_schema.is_some() {
                    Naming::Keep
                } else {
                    Naming::Physical
                }
            })
            .collect();
        let r = stmt
            .render(&a, "bank", &naming, Some("bank"), false)
            .unwrap();
        let mut out = String::new();
        for s in &r.head {
            match s {
                Seg::Text(t) => out.push_str(t),
                Seg::Slot(n) | Seg::SlotInName(n) => out.push_str(fp.literals[*n].text(sql)),
                Seg::Table(t) => out.push_str(&format!("{}_7", a.tables[*t].name)),
                Seg::Generated | Seg::Limit => panic!("no {s:?} in these statements"),
            }
        }
        let reparsed = parse(&out).unwrap().remove(0);
        let again = parse(&reparsed.to_string()).unwrap().remove(0);
        assert_eq!(reparsed, again, "parse(print(ast)) != ast for {out}");
        out
    }

    #[test]
    fn renames_every_position() {
        let cases = [
            (
                "SELECT payment.amount, p2.x FROM payment JOIN `account` p2 ON p2.uid = payment.uid",
                "SELECT payment_7.amount, p2.x FROM payment_7 JOIN account_7 p2 ON p2.uid = payment_7.uid",
            ),
            (
                "SELECT bank.payment.amount, payment.* FROM bank.payment WHERE bank.payment.uid = 1",
                "SELECT payment_7.amount, payment_7.* FROM payment_7 WHERE payment_7.uid = 1",
            ),
            (
                "SELECT * FROM (SELECT uid FROM customer WHERE uid IN (SELECT uid FROM account)) AS d",
                "SELECT * FROM (SELECT uid FROM customer_7 WHERE uid IN (SELECT uid FROM account_7)) AS d",
            ),
            (
                "SELECT x FROM keep_me k, information_schema.tables t, bank.keep_two",
                "SELECT x FROM keep_me k, information_schema.tables t, keep_two",
            ),
            (
                "WITH c AS (SELECT * FROM payment) SELECT c.uid, DATABASE() FROM c",
                "WITH c AS (SELECT * FROM payment_7) SELECT c.uid, 'bank' AS `DATABASE()` FROM c",
            ),
            (
                "INSERT INTO payment (uid, amount) VALUES (1, -2.5) ON DUPLICATE KEY UPDATE payment.amount = 3",
                "INSERT INTO payment_7 (uid, amount) VALUES (1, -2.5) ON DUPLICATE KEY UPDATE payment_7.amount = 3",
            ),
            (
                "UPDATE payment JOIN account a ON a.uid = payment.uid SET payment.amount = a.x WHERE payment.uid = ?",
                "UPDATE payment_7 JOIN account_7 a ON a.uid = payment_7.uid SET payment_7.amount = a.x WHERE payment_7.uid = ?",
            ),
            (
                "DELETE payment FROM payment JOIN account a USING (uid) WHERE a.uid = 5",
                "DELETE payment_7 FROM payment_7 JOIN account_7 a USING(uid) WHERE a.uid = 5",
            ),
            (
                "DELETE p FROM payment p WHERE p.uid = 5",
                "DELETE p FROM payment_7 p WHERE p.uid = 5",
            ),
            (
                "CREATE TABLE payment (uid BIGINT REFERENCES customer (uid), FOREIGN KEY (uid) REFERENCES bank.account (uid))",
                "CREATE TABLE payment_7 (uid BIGINT REFERENCES customer_7 (uid), FOREIGN KEY (uid) REFERENCES account_7(uid))",
            ),
            (
                "CREATE TABLE IF NOT EXISTS t2 LIKE payment",
                "CREATE TABLE IF NOT EXISTS t2_7 LIKE payment_7",
            ),
            ("ALTER TABLE bank.payment ADD COLUMN c INT", "ALTER TABLE payment_7 ADD COLUMN c INT"),
            ("DROP TABLE payment, bank.account", "DROP TABLE payment_7, account_7"),
            ("TRUNCATE TABLE payment", "TRUNCATE TABLE payment_7"),
            ("CREATE INDEX i ON payment (uid)", "CREATE INDEX i ON payment_7(uid)"),
            ("DROP INDEX i ON bank.payment", "DROP INDEX i ON payment_7"),
            ("SHOW CREATE TABLE bank.payment", "SHOW CREATE TABLE payment_7"),
            ("SHOW COLUMNS FROM payment FROM bank", "SHOW COLUMNS FROM payment_7"),
            ("DESCRIBE `payment`", "DESCRIBE payment_7"),
            ("SHOW INDEX FROM payment FROM bank", "SHOW INDEX FROM payment_7"),
            ("SHOW TABLES FROM bank", "SHOW TABLES"),
            (
                "SELECT MATCH (payment.note) AGAINST ('x') FROM payment",
                "SELECT MATCH (payment_7.note) AGAINST ('x') FROM payment_7",
            ),
            (
                "SELECT * FROM payment WHERE uid = 1 FOR UPDATE",
                "SELECT * FROM payment_7 WHERE uid = 1 FOR UPDATE",
            ),
            (
                "SELECT s FROM payment WHERE s = 'it''s' AND t = 'a\\'b' AND u = \"q\"",
                "SELECT s FROM payment_7 WHERE s = 'it''s' AND t = 'a\\'b' AND u = \"q\"",
            ),
        ];
        for (sql, want) in cases {
            assert_eq!(physical(sql), want, "{sql}");
        }
    }

    #[test]
    fn splits_insert_rows() {
        let sql =
            "INSERT INTO payment (uid, x) VALUES (1, 'a'), (2, ?) ON DUPLICATE KEY UPDATE x = 1";
        let fp = fingerprint(sql);
        let mut stmt = parse(sql).unwrap().remove(0);
        assert!(stmt.bind_slots(sql, &fp));
        let a = stmt.analyze("bank", &Keys).unwrap();
        let r = stmt
            .render(&a, "bank", &[Naming::Physical], None, true)
            .unwrap();
        assert_eq!(
            r.head,
            vec![
                Seg::Text("INSERT INTO ".into()),
                Seg::Table(0),
                Seg::Text(" (uid, x) VALUES ".into())
            ]
        );
        assert_eq!(
            r.rows,
            vec![
                vec![
                    Seg::Text("(".into()),
                    Seg::Slot(0),
                    Seg::Text(", ".into()),
                    Seg::Slot(1),
                    Seg::Text(")".into())
                ],
                vec![
                    Seg::Text("(".into()),
                    Seg::Slot(2),
                    Seg::Text(", ".into()),
                    Seg::Slot(3),
                    Seg::Text(")".into())
                ],
            ]
        );
        assert_eq!(
            r.tail,
            vec![
                Seg::Text(" ON DUPLICATE KEY UPDATE x = ".into()),
                Seg::Slot(4)
            ]
        );
    }

    #[test]
    fn nul_outside_literals_is_refused() {
        let sql = "SELECT `a\u{0}b` FROM payment";
        let mut stmt = parse(sql).unwrap().remove(0);
        stmt.bind_slots(sql, &fingerprint(sql));
        let a = stmt.analyze("bank", &Keys).unwrap();
        assert!(stmt
            .render(&a, "bank", &[Naming::Physical], None, false)
            .is_err());
    }
}
