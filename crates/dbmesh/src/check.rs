//! `dbmesh check --connect`: the rule file against the live servers. Logs in to every data
//! source's primary and replicas with the configured account, checks the privileges the proxy
//! needs ([`PRIVILEGES`], documented in docs/operations.md), the databases, that replicas
//! replicate, and that every physical table of a logical table that exists has the same
//! definition on every shard. Read-only: nothing is created or changed on the servers.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use backend::{BackendConn, BackendError, QueryResult};
use rules::{DataSourceConfig, PhysicalNode, Rules, TableRule};

/// What the proxy's account needs on each data source's database: the statements clients
/// send (`SELECT`, `INSERT`, `UPDATE`, `DELETE`) and the DDL the proxy sends to every shard
/// (`CREATE`, `DROP`, `ALTER`, `INDEX`). `CREATE` also covers `proxy.create_databases` and
/// the sequence tables of `proxy.meta_data_source`. Replicas are also asked `SHOW SLAVE
/// STATUS` (MariaDB's `SLAVE MONITOR`, MySQL's `REPLICATION CLIENT`).
pub const PRIVILEGES: [&str; 8] = [
    "SELECT", "INSERT", "UPDATE", "DELETE", "CREATE", "DROP", "ALTER", "INDEX",
];

/// How long a replica's check may wait for `SHOW SLAVE STATUS` and friends, on top of the
/// pool's connect and handshake timeouts.
const QUERY_TIMEOUT: Duration = Duration::from_secs(10);

/// One server of a data source.
#[derive(Debug, Clone)]
pub struct ServerRef {
    pub data_source: String,
    pub address: String,
    pub replica: bool,
}

impl fmt::Display for ServerRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let role = if self.replica { "replica" } else { "primary" };
        write!(
            f,
            "data source '{}' ({role} {})",
            self.data_source, self.address
        )
    }
}

/// Something wrong on one server.
#[derive(Debug)]
pub struct Problem {
    pub server: ServerRef,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.server, self.message)
    }
}

/// What the check found.
#[derive(Debug, Default)]
pub struct Report {
    pub problems: Vec<Problem>,
    /// Servers the account logged in to.
    pub servers_reached: usize,
    /// Databases that do not exist yet and `serve` creates (`proxy.create_databases`).
    pub databases_to_create: usize,
    /// Physical tables whose definitions were compared.
    pub tables_compared: usize,
}

/// Checks every server of `rules`, data sources concurrently.
pub async fn check_servers(rules: &Rules) -> Report {
    let needed = physical_tables_by_data_source(rules);
    let mut tasks = tokio::task::JoinSet::new();
    for (name, ds) in &rules.data_sources {
        let name = name.clone();
        let ds = ds.clone();
        let tables = needed.get(&name).cloned().unwrap_or_default();
        let create_databases = rules.proxy.create_databases;
        tasks.spawn(async move { check_data_source(&name, &ds, &tables, create_databases).await });
    }
    let mut report = Report::default();
    let mut definitions = BTreeMap::new();
    for found in tasks.join_all().await {
        report.problems.extend(found.problems);
        report.servers_reached += found.servers_reached;
        report.databases_to_create += usize::from(found.database_to_create);
        if let Some((server, tables)) = found.definitions {
            definitions.insert(server.data_source.clone(), (server, tables));
        }
    }
    compare_definitions(rules, &definitions, &mut report);
    report
        .problems
        .sort_by(|a, b| a.server.data_source.cmp(&b.server.data_source));
    report
}

/// The physical tables of every logical table with more than one, by data source.
fn physical_tables_by_data_source(rules: &Rules) -> BTreeMap<String, Vec<String>> {
    let mut needed: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for rule in rules.tables.values() {
        for node in compared_nodes(rule) {
            needed
                .entry(node.data_source.clone())
                .or_default()
                .push(node.table.clone());
        }
    }
    needed
}

/// The physical tables that must share one definition: a sharded table's shards, a broadcast
/// table's copies.
fn compared_nodes(rule: &TableRule) -> &[PhysicalNode] {
    match rule {
        TableRule::Sharded(s) => s.all_nodes(),
        TableRule::Broadcast(b) => b.nodes(),
        TableRule::Single(_) => &[],
    }
}

/// What one data source's check found.
struct DataSourceFindings {
    problems: Vec<Problem>,
    servers_reached: usize,
    database_to_create: bool,
    /// The primary and the normalised `SHOW CREATE TABLE` of each wanted table it has.
    definitions: Option<(ServerRef, BTreeMap<String, String>)>,
}

async fn check_data_source(
    name: &str,
    ds: &DataSourceConfig,
    tables: &[String],
    create_databases: bool,
) -> DataSourceFindings {
    let mut findings = DataSourceFindings {
        problems: Vec::new(),
        servers_reached: 0,
        database_to_create: false,
        definitions: None,
    };
    let servers = std::iter::once((ds.address.clone(), false))
        .chain(ds.replicas.iter().map(|r| (r.address.clone(), true)));
    for (address, replica) in servers {
        let server = ServerRef {
            data_source: name.to_string(),
            address,
            replica,
        };
        let mut problem = |message: String| {
            findings.problems.push(Problem {
                server: server.clone(),
                message,
            })
        };
        let mut options = backend::ConnectOptions::for_data_source(name, ds);
        options.address = server.address.clone();
        let mut conn = match BackendConn::connect(&options).await {
            Ok(conn) => conn,
            Err(e) => {
                problem(login_failure(&e, &ds.user));
                continue;
            }
        };
        findings.servers_reached += 1;
        let checked = tokio::time::timeout(
            QUERY_TIMEOUT,
            check_server(&mut conn, &server, ds, tables, create_databases),
        )
        .await;
        match checked {
            Ok(Ok(server_findings)) => {
                for message in server_findings.problems {
                    problem(message);
                }
                if !replica {
                    findings.database_to_create = server_findings.database_to_create;
                    findings.definitions = Some((server.clone(), server_findings.definitions));
                }
            }
            Ok(Err(e)) => problem(format!("checking it failed: {e}")),
            Err(_) => problem(format!(
                "no answer within {} s to the check's queries",
                QUERY_TIMEOUT.as_secs()
            )),
        }
    }
    findings
}

fn login_failure(e: &BackendError, user: &str) -> String {
    match e {
        BackendError::AuthFailed { error, .. } => format!(
            "cannot log in as '{user}': {} ({}) {}",
            error.code,
            error.sqlstate_str(),
            error.message
        ),
        BackendError::Unreachable { reason, .. } => format!("cannot connect: {reason}"),
        other => format!("cannot connect: {other}"),
    }
}

/// What one server's check found.
struct ServerFindings {
    problems: Vec<String>,
    database_to_create: bool,
    definitions: BTreeMap<String, String>,
}

async fn check_server(
    conn: &mut BackendConn,
    server: &ServerRef,
    ds: &DataSourceConfig,
    tables: &[String],
    create_databases: bool,
) -> Result<ServerFindings, BackendError> {
    let mut findings = ServerFindings {
        problems: Vec::new(),
        database_to_create: false,
        definitions: BTreeMap::new(),
    };
    let missing = missing_privileges(conn, &ds.database, server.replica).await?;
    if !missing.is_empty() {
        findings.problems.push(format!(
            "user '{}' lacks {} on database '{}' (GRANT {} ON `{}`.* TO ...)",
            ds.user,
            missing.join(", "),
            ds.database,
            missing.join(", "),
            ds.database.replace('`', "``")
        ));
    }
    if server.replica {
        if let Some(problem) = replication_problem(conn).await {
            findings.problems.push(problem);
        }
    }
    let exists = conn
        .query(&format!(
            "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = {}",
            backend::quote_literal(&ds.database)
        ))
        .await?;
    if exists.rows.is_empty() {
        if create_databases && !server.replica {
            findings.database_to_create = true;
        } else {
            findings.problems.push(format!(
                "database '{}' does not exist (or the user cannot see it)",
                ds.database
            ));
        }
        return Ok(findings);
    }
    if server.replica || tables.is_empty() {
        return Ok(findings);
    }
    let present = conn
        .query(&format!(
            "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = {}",
            backend::quote_literal(&ds.database)
        ))
        .await?;
    for row in &present.rows {
        let Some(Some(table)) = row.first() else {
            continue;
        };
        if !tables.contains(table) {
            continue;
        }
        let create = conn
            .query(&format!(
                "SHOW CREATE TABLE {}.{}",
                quote_identifier(&ds.database),
                quote_identifier(table)
            ))
            .await?;
        if let Some(text) = create.value(0, "Create Table") {
            findings
                .definitions
                .insert(table.clone(), normalise_definition(text));
        }
    }
    Ok(findings)
}

/// The privileges of [`PRIVILEGES`] (only `SELECT` on a replica) that the logged-in account
/// holds neither globally nor on `database`, as `information_schema.USER_PRIVILEGES` and
/// `SCHEMA_PRIVILEGES` list them for it (database grants may be patterns such as `bank\_%`).
async fn missing_privileges(
    conn: &mut BackendConn,
    database: &str,
    replica: bool,
) -> Result<Vec<&'static str>, BackendError> {
    // GRANTEE is written 'user'@'host'; CURRENT_USER() as user@host (the user may contain @).
    const GRANTEE: &str = "CONCAT('''', LEFT(CURRENT_USER(), CHAR_LENGTH(CURRENT_USER()) - \
        CHAR_LENGTH(SUBSTRING_INDEX(CURRENT_USER(), '@', -1)) - 1), '''@''', \
        SUBSTRING_INDEX(CURRENT_USER(), '@', -1), '''')";
    let held: QueryResult = conn
        .query(&format!(
            "SELECT PRIVILEGE_TYPE FROM information_schema.USER_PRIVILEGES WHERE GRANTEE = {GRANTEE} \
             UNION SELECT PRIVILEGE_TYPE FROM information_schema.SCHEMA_PRIVILEGES \
             WHERE GRANTEE = {GRANTEE} AND {} LIKE TABLE_SCHEMA",
            backend::quote_literal(database)
        ))
        .await?;
    let held: Vec<&str> = held
        .rows
        .iter()
        .filter_map(|r| r.first().and_then(|v| v.as_deref()))
        .collect();
    let wanted: &[&'static str] = if replica {
        &PRIVILEGES[..1]
    } else {
        &PRIVILEGES
    };
    Ok(wanted
        .iter()
        .copied()
        .filter(|p| !held.iter().any(|h| h.eq_ignore_ascii_case(p)))
        .collect())
}

/// Why a replica does not replicate, if it does not: `SHOW SLAVE STATUS` refused, empty, or
/// with a thread stopped.
async fn replication_problem(conn: &mut BackendConn) -> Option<String> {
    let status = match conn.query("SHOW SLAVE STATUS").await {
        Ok(status) => status,
        Err(BackendError::Server { error, .. }) => {
            return Some(format!(
                "SHOW SLAVE STATUS refused: {} ({}) {} (grant SLAVE MONITOR on MariaDB, \
                 REPLICATION CLIENT on MySQL)",
                error.code,
                error.sqlstate_str(),
                error.message
            ))
        }
        Err(e) => return Some(format!("SHOW SLAVE STATUS failed: {e}")),
    };
    if status.rows.is_empty() {
        return Some("is not a replica (SHOW SLAVE STATUS is empty)".into());
    }
    let thread = |name| status.value(0, name).unwrap_or("NULL").to_string();
    let (io, sql) = (thread("Slave_IO_Running"), thread("Slave_SQL_Running"));
    if io == "Yes" && sql == "Yes" {
        return None;
    }
    let error = status
        .value(0, "Last_SQL_Error")
        .filter(|e| !e.is_empty())
        .or_else(|| status.value(0, "Last_IO_Error").filter(|e| !e.is_empty()))
        .map(|e| format!(": {e}"))
        .unwrap_or_default();
    Some(format!(
        "is not replicating (Slave_IO_Running: {io}, Slave_SQL_Running: {sql}){error}"
    ))
}

/// `SHOW CREATE TABLE` without what legitimately differs between shards: the table's own
/// name and the next AUTO_INCREMENT value.
fn normalise_definition(create: &str) -> String {
    let body = create
        .split_once(" (")
        .map_or(create, |(_, rest)| rest)
        .to_string();
    let mut out = String::with_capacity(body.len());
    let mut rest = body.as_str();
    while let Some(at) = rest.find(" AUTO_INCREMENT=") {
        out.push_str(&rest[..at]);
        rest =
            rest[at + " AUTO_INCREMENT=".len()..].trim_start_matches(|c: char| c.is_ascii_digit());
    }
    out.push_str(rest);
    out
}

/// For every logical table with several physical tables: each one that exists must have the
/// definition of the first that does, and none may be missing while others exist.
fn compare_definitions(
    rules: &Rules,
    definitions: &BTreeMap<String, (ServerRef, BTreeMap<String, String>)>,
    report: &mut Report,
) {
    for (logical, rule) in &rules.tables {
        let nodes = compared_nodes(rule);
        // Nodes on data sources that could not be read are left out (already reported).
        let seen: Vec<(&PhysicalNode, &ServerRef, Option<&String>)> = nodes
            .iter()
            .filter_map(|node| {
                let (server, tables) = definitions.get(&node.data_source)?;
                Some((node, server, tables.get(&node.table)))
            })
            .collect();
        let Some((first, _, Some(reference))) = seen.iter().find(|(_, _, d)| d.is_some()) else {
            continue;
        };
        let database_of = |node: &PhysicalNode| {
            rules
                .data_sources
                .get(&node.data_source)
                .map_or("", |d| d.database.as_str())
                .to_string()
        };
        let first_name = format!("{}.{}", database_of(first), first.table);
        for (node, server, definition) in &seen {
            let name = format!("{}.{}", database_of(node), node.table);
            let message = match definition {
                None => format!(
                    "table {name} of tables.{logical} is missing ({first_name} on data source \
                     '{}' exists)",
                    first.data_source
                ),
                Some(d) if d != reference => format!(
                    "table {name} of tables.{logical} differs from {first_name} on data source \
                     '{}': {}",
                    first.data_source,
                    first_difference(reference, d)
                ),
                Some(_) => {
                    report.tables_compared += 1;
                    continue;
                }
            };
            report.problems.push(Problem {
                server: (*server).clone(),
                message,
            });
        }
    }
}

/// The first line where two definitions differ: this table's, then the reference's.
fn first_difference(reference: &str, other: &str) -> String {
    let mut a = reference.lines();
    let mut b = other.lines();
    loop {
        match (a.next(), b.next()) {
            (Some(x), Some(y)) if x == y => continue,
            (x, y) => {
                return format!(
                    "{} here, {} there",
                    y.map_or("(end)", definition_line),
                    x.map_or("(end)", definition_line)
                )
            }
        }
    }
}

/// One line of a definition as a message quotes it: without indentation and the comma
/// between columns.
fn definition_line(line: &str) -> &str {
    line.trim().trim_end_matches(',')
}

fn quote_identifier(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn definitions_differ_only_in_what_shards_share() {
        let a = "CREATE TABLE `t_0` (\n  `id` int(11) NOT NULL,\n  PRIMARY KEY (`id`)\n) \
                 ENGINE=InnoDB AUTO_INCREMENT=17 DEFAULT CHARSET=utf8mb4";
        let b = "CREATE TABLE `t_1` (\n  `id` int(11) NOT NULL,\n  PRIMARY KEY (`id`)\n) \
                 ENGINE=InnoDB DEFAULT CHARSET=utf8mb4";
        assert_eq!(normalise_definition(a), normalise_definition(b));
        let c = "CREATE TABLE `t_1` (\n  `id` bigint(20) NOT NULL,\n  PRIMARY KEY (`id`)\n) \
                 ENGINE=InnoDB DEFAULT CHARSET=utf8mb4";
        assert_ne!(normalise_definition(a), normalise_definition(c));
        assert_eq!(
            first_difference(&normalise_definition(a), &normalise_definition(c)),
            "`id` bigint(20) NOT NULL here, `id` int(11) NOT NULL there"
        );
    }

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote_identifier("a`b"), "`a``b`");
    }
}
