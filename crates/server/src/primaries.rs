//! Each data source's current primary as shared state: one versioned row per data source in
//! the meta data source's database, so a switch survives reloads and restarts, and every
//! proxy sharing `meta` follows it.
//!
//! ```sql
//! CREATE TABLE IF NOT EXISTS dbmesh_primary (
//!   data_source VARCHAR(64) NOT NULL PRIMARY KEY,
//!   epoch BIGINT UNSIGNED NOT NULL,
//!   address VARCHAR(255) NOT NULL,
//!   set_by VARCHAR(255) NOT NULL,
//!   set_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3));
//! ```
//!
//! **A switch** is a compare-and-set on the epoch: the row gets `epoch + 1` (of the epoch the
//! switching proxy knew) only if its epoch is still at most that, in one statement, and is
//! read back; another proxy's switch in between shows as a higher epoch or another address,
//! and the switch is refused. "At most" rather than "equal": a promoted meta server may have
//! missed the last row its dead primary wrote, and must still take the next switch.
//!
//! **Reading**: at start and after every health-check round, each proxy reads the rows of
//! every server of the meta data source that answers (its primary may be the server that
//! died), keeping per data source the highest epoch; of equal epochs, the row of the server
//! listed first (the primary in force) wins. A server whose row has a lower epoch than one
//! already applied (a former primary back with old rows) changes nothing.

use std::collections::BTreeMap;
use std::time::Duration;

use backend::{quote_literal, BackendConn, BackendError, ConnectOptions};
use rules::Rules;

const CREATE_PRIMARY: &str = "CREATE TABLE IF NOT EXISTS dbmesh_primary (\
    data_source VARCHAR(64) NOT NULL PRIMARY KEY, \
    epoch BIGINT UNSIGNED NOT NULL, \
    address VARCHAR(255) NOT NULL, \
    set_by VARCHAR(255) NOT NULL, \
    set_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3))";

const SELECT_PRIMARY: &str = "SELECT data_source, epoch, address, set_by, \
    DATE_FORMAT(set_at, '%Y-%m-%d %H:%i:%s.%f') FROM dbmesh_primary";

/// MySQL's "table doesn't exist" and "unknown database": no switch was ever recorded there.
const NO_SUCH_TABLE: u16 = 1146;
const NO_SUCH_DATABASE: u16 = 1049;

/// The recorded primary of one data source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrimaryRecord {
    /// Advances by one with every switch; 0 is the rule file's primary, never switched.
    pub epoch: u64,
    /// `host:port` of the primary.
    pub address: String,
    /// Which proxy switched it, and how.
    pub set_by: String,
    /// When, in UTC (the meta server's clock); `None` for a switch kept only in this proxy
    /// (no meta data source).
    pub set_at: Option<String>,
}

/// Data source → its recorded primary.
pub type PrimaryRecords = BTreeMap<String, PrimaryRecord>;

/// The rules with every recorded primary in place of the rule file's: the recorded server
/// leaves the data source's replicas, and the rule file's primary is no server of it any more
/// (it may have diverged). Records of data sources the rules do not have are left out.
pub fn apply(rules: &mut Rules, records: &PrimaryRecords) {
    for (name, record) in records {
        let Some(ds) = rules.data_sources.get_mut(name) else {
            continue;
        };
        if ds.address != record.address {
            ds.replicas.retain(|r| r.address != record.address);
            ds.address = record.address.clone();
        }
    }
}

/// Keeps in `into` the newer of its record and each of `found` (a higher epoch).
/// Returns the data sources whose record changed.
pub fn merge(into: &mut PrimaryRecords, found: PrimaryRecords) -> Vec<String> {
    let mut changed = Vec::new();
    for (name, record) in found {
        if into
            .get(&name)
            .is_none_or(|known| known.epoch < record.epoch)
        {
            into.insert(name.clone(), record);
            changed.push(name);
        }
    }
    changed
}

/// Reads the records of every server of the meta data source of `servers_of` (in force) and
/// of `file` (the rule file's, whose primary may be the only one holding them after a
/// restart), each bounded by `timeout`. `Ok` with no records when no meta data source is
/// configured; `Err` only when one is and no server of it answered.
pub async fn read(
    in_force: &Rules,
    file: &Rules,
    timeout: Duration,
) -> Result<PrimaryRecords, String> {
    let mut addresses: Vec<String> = Vec::new();
    for rules in [in_force, file] {
        if let Some((_, ds)) = meta::data_source(rules) {
            let servers =
                std::iter::once(&ds.address).chain(ds.replicas.iter().map(|r| &r.address));
            for address in servers {
                if !addresses.contains(address) {
                    addresses.push(address.clone());
                }
            }
        }
    }
    if addresses.is_empty() {
        return Ok(PrimaryRecords::new());
    }
    let mut reads = tokio::task::JoinSet::new();
    for (order, address) in addresses.iter().enumerate() {
        let Some(options) =
            meta::options(in_force, Some(address)).or_else(|| meta::options(file, Some(address)))
        else {
            continue;
        };
        reads.spawn(async move {
            let read = tokio::time::timeout(timeout, read_one(&options)).await;
            (order, options.address, read)
        });
    }
    let mut answers = Vec::new();
    let mut failures = Vec::new();
    while let Some(Ok((order, address, read))) = reads.join_next().await {
        match read {
            Ok(Ok(records)) => answers.push((order, records)),
            Ok(Err(e)) => failures.push(format!("{address}: {e}")),
            Err(_) => failures.push(format!("{address}: no answer within {timeout:?}")),
        }
    }
    if answers.is_empty() {
        return Err(failures.join("; "));
    }
    answers.sort_by_key(|(order, _)| *order);
    let mut records = PrimaryRecords::new();
    for (_, found) in answers {
        merge(&mut records, found);
    }
    Ok(records)
}

async fn read_one(options: &ConnectOptions) -> Result<PrimaryRecords, BackendError> {
    let never_recorded = |e: &BackendError| match e {
        BackendError::Server { error, .. } | BackendError::AuthFailed { error, .. } => {
            [NO_SUCH_TABLE, NO_SUCH_DATABASE].contains(&error.code)
        }
        _ => false,
    };
    let result = match meta::connect(options).await {
        Ok(mut conn) => conn.query(SELECT_PRIMARY).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(result) => Ok(records_of(result)),
        Err(e) if never_recorded(&e) => Ok(PrimaryRecords::new()),
        Err(e) => Err(e),
    }
}

/// Records `address` as the primary of `data_source` on the meta database at `meta_address`
/// (the meta data source's primary once this switch is done), if its record there is not
/// newer than epoch `known`: the new record, at epoch `known + 1`. `Err` when another switch
/// came first (its record is in the message) or the meta database cannot be written.
pub async fn write(
    rules: &Rules,
    meta_address: &str,
    data_source: &str,
    known: u64,
    address: &str,
    set_by: &str,
) -> Result<PrimaryRecord, String> {
    let options = meta::options(rules, Some(meta_address))
        .ok_or_else(|| "no meta data source is configured".to_string())?;
    let mut conn = meta::connect(&options).await.map_err(|e| e.to_string())?;
    let next = known + 1;
    let (ds, addr, by) = (
        quote_literal(data_source),
        quote_literal(address),
        quote_literal(set_by),
    );
    // Each assignment sees the columns already assigned, so `epoch` goes last.
    let upsert = format!(
        "INSERT INTO dbmesh_primary (data_source, epoch, address, set_by, set_at) \
         VALUES ({ds}, {next}, {addr}, {by}, NOW(3)) ON DUPLICATE KEY UPDATE \
         address = IF(epoch <= {known}, VALUES(address), address), \
         set_by = IF(epoch <= {known}, VALUES(set_by), set_by), \
         set_at = IF(epoch <= {known}, VALUES(set_at), set_at), \
         epoch = IF(epoch <= {known}, VALUES(epoch), epoch)"
    );
    for sql in [CREATE_PRIMARY, upsert.as_str()] {
        conn.query(sql).await.map_err(|e| e.to_string())?;
    }
    let mut found = read_rows(&mut conn, data_source).await?;
    match found.remove(data_source) {
        Some(record) if record.epoch == next && record.address == address => Ok(record),
        Some(record) => Err(format!(
            "another switch came first: epoch {} is {} (set by {} at {})",
            record.epoch,
            record.address,
            record.set_by,
            record.set_at.as_deref().unwrap_or("?")
        )),
        None => Err("the record was not written".into()),
    }
}

async fn read_rows(conn: &mut BackendConn, data_source: &str) -> Result<PrimaryRecords, String> {
    let sql = format!(
        "{SELECT_PRIMARY} WHERE data_source = {}",
        quote_literal(data_source)
    );
    let result = conn.query(&sql).await.map_err(|e| e.to_string())?;
    Ok(records_of(result))
}

/// The records in the rows of [`SELECT_PRIMARY`].
fn records_of(result: backend::QueryResult) -> PrimaryRecords {
    result
        .rows
        .into_iter()
        .filter_map(|row| {
            let mut cells = row.into_iter();
            let name = cells.next()??;
            let epoch = cells.next()??.parse().ok()?;
            let address = cells.next()??;
            let set_by = cells.next()??;
            let set_at = cells.next()?;
            Some((
                name,
                PrimaryRecord {
                    epoch,
                    address,
                    set_by,
                    set_at,
                },
            ))
        })
        .collect()
}

/// Whether the server behind `conn` may take writes: `@@read_only` off and no replication
/// configured (`SHOW ALL SLAVES STATUS` empty; MySQL, which lacks it, `SHOW SLAVE STATUS`).
/// `Err` says why not.
pub async fn check_writable(conn: &mut BackendConn, address: &str) -> Result<(), String> {
    if !backend::cluster::read_write(conn)
        .await
        .map_err(|e| e.to_string())?
    {
        return Err(format!(
            "{address} is read-only: promote it first (STOP SLAVE; RESET SLAVE ALL; SET GLOBAL read_only = OFF)"
        ));
    }
    let links = backend::cluster::replication_links(conn)
        .await
        .map_err(|e| e.to_string())?;
    if !links.rows.is_empty() {
        return Err(format!(
            "{address} is still configured as a replica: promote it first (STOP SLAVE; RESET SLAVE ALL)"
        ));
    }
    Ok(())
}
