//! From TOML text to validated [`Rules`], collecting every problem.
//!
//! Parsing is serde's job (syntax, types, unknown fields: it stops at the
//! first such error, reported with line and column). Everything after that
//! is checked here, section by section, and each problem is recorded with its
//! TOML path instead of returning early, so a user fixes a file in one pass.
//! Nothing here does I/O; relative TLS paths are resolved against the rule
//! file's directory.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use crate::algorithm::{Algorithm, ColumnType, HashRing, SliceMap, DEFAULT_VIRTUAL_NODES};
use crate::config::{
    BackendTls, BindingGroupConfig, DataSourceConfig, ProxyConfig, ReplicationConfig, RuleFile,
    SchemaConfig, SequenceConfig, TableConfig, UserConfig,
};
use crate::error::{ConfigError, Problem};
use crate::expr;
use crate::rules::{BindingGroup, Rules};
use crate::sequence::{
    ColumnRef, SegmentRule, SequenceKind, SequenceRule, SnowflakeRule,
    DEFAULT_MAX_CLOCK_BACKWARD_MS, DEFAULT_SEGMENT_MAX, DEFAULT_SEGMENT_MAX_RANGE,
    DEFAULT_SEGMENT_START, DEFAULT_SEGMENT_STEP, DEFAULT_SNOWFLAKE_EPOCH_MS, MAX_WORKER_ID,
};
use crate::table::{BroadcastTable, PhysicalNode, ShardedTable, TableRule};

/// Most virtual nodes per node accepted for `consistent_hash`.
const MAX_VIRTUAL_NODES: u32 = 10_000;
/// MySQL's own ceiling for `max_allowed_packet`.
const MAX_PACKET: usize = 1 << 30;
/// MySQL identifiers are at most 64 characters.
const MAX_IDENT: usize = 64;

const ALGORITHMS: &str = "mod, hash, range, consistent_hash or uid_slice";
const KINDS: &str = "sharded, broadcast or single";
const SEQUENCE_KINDS: &str = "snowflake or segment";
/// Waiting out a backward clock step stalls every id of the sequence; a second is plenty.
const MAX_CLOCK_BACKWARD_MS: i64 = 1_000;

/// Parses and validates `text`; `origin` names the file in messages and anchors relative paths.
pub(crate) fn parse(text: &str, origin: &Path) -> Result<Rules, ConfigError> {
    let file: RuleFile = toml::from_str(text).map_err(|e| {
        let location = e
            .span()
            .map(|s| line_col(text, s.start))
            .unwrap_or_default();
        // One problem per line: toml's multi-line messages are joined.
        let message = e.message().trim().lines().collect::<Vec<_>>().join("; ");
        ConfigError::one(origin, &location, message)
    })?;
    compile(file, origin)
}

/// `line L, column C` (1-based, columns in characters) of byte offset `at`.
fn line_col(text: &str, at: usize) -> String {
    let at = at.min(text.len());
    let before = text.get(..at).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    format!("line {line}, column {col}")
}

struct Checker<'a> {
    origin: &'a Path,
    problems: Vec<Problem>,
}

impl Checker<'_> {
    fn err(&mut self, location: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem {
            origin: self.origin.to_path_buf(),
            location: location.into(),
            message: message.into(),
        });
    }
}

/// Validates a parsed file.
pub(crate) fn compile(file: RuleFile, origin: &Path) -> Result<Rules, ConfigError> {
    let mut c = Checker {
        origin,
        problems: Vec::new(),
    };
    let RuleFile {
        mut proxy,
        users,
        mut data_sources,
        schema,
        tables,
        binding_groups,
        sequences,
        replication,
    } = file;
    check_proxy(&mut c, &mut proxy);
    check_users(&mut c, &users);
    check_data_sources(&mut c, &mut data_sources);
    check_replication(&mut c, &replication);
    check_schema(&mut c, &schema, &data_sources);
    let mut compiled = compile_tables(
        &mut c,
        &tables,
        &data_sources,
        proxy.meta_data_source.as_deref(),
    );
    check_physical_collisions(&mut c, &compiled);
    let groups = compile_binding_groups(&mut c, &binding_groups, &tables, &mut compiled);
    let sequences = compile_sequences(&mut c, &sequences);
    check_meta_data_source(&mut c, &proxy, &data_sources, &sequences);
    if schema.transaction_mode == Some(crate::TransactionMode::Xa)
        && proxy.meta_data_source.is_none()
    {
        c.err(
            "schema.transaction_mode",
            "\"xa\" needs proxy.meta_data_source (where commit decisions are logged); set it, or set transaction_mode = \"local\" (not atomic across data sources)",
        );
    }
    if !c.problems.is_empty() {
        return Err(ConfigError::new(c.problems));
    }
    Ok(Rules {
        origin: origin.to_path_buf(),
        proxy,
        users,
        data_sources,
        schema,
        tables: compiled,
        binding_groups: groups,
        sequences,
        replication,
    })
}

/// Whether `token` may guard the admin API: long enough not to be guessed, and sendable in an
/// HTTP header as is.
pub fn check_admin_token(token: &str) -> Result<(), String> {
    if token.chars().count() < 16 {
        return Err("must be at least 16 characters".into());
    }
    if !token.chars().all(|ch| ch.is_ascii_graphic()) {
        return Err("must be printable ASCII without spaces".into());
    }
    Ok(())
}

fn check_proxy(c: &mut Checker<'_>, p: &mut ProxyConfig) {
    // Port 0 asks the OS for a free port (tests, scripts); the chosen ports are printed.
    if let Err(e) = check_address(&p.listen, true) {
        c.err("proxy.listen", e);
    }
    if let Err(e) = check_address(&p.admin_listen, true) {
        c.err("proxy.admin_listen", e);
    }
    if p.listen == p.admin_listen && !p.listen.ends_with(":0") {
        c.err(
            "proxy.admin_listen",
            format!("same address as proxy.listen ('{}')", p.listen),
        );
    }
    if let Some(token) = &p.admin_token {
        if let Err(e) = check_admin_token(&token.0) {
            c.err("proxy.admin_token", e);
        }
    }
    for (field, value) in [
        ("max_connections", p.max_connections as u64),
        ("max_authenticating", p.max_authenticating as u64),
        ("login_timeout_ms", p.login_timeout_ms),
        ("net_write_timeout_ms", p.net_write_timeout_ms),
    ] {
        if value == 0 {
            c.err(format!("proxy.{field}"), "must be at least 1");
        }
    }
    if !(1024..=MAX_PACKET).contains(&p.max_allowed_packet) {
        c.err(
            "proxy.max_allowed_packet",
            format!(
                "{} is out of range (1024 to {MAX_PACKET} bytes)",
                p.max_allowed_packet
            ),
        );
    }
    if p.idle_timeout_secs == 0 {
        c.err("proxy.idle_timeout_secs", "must be at least 1");
    }
    if p.server_version
        .as_deref()
        .is_some_and(|v| v.trim().is_empty())
    {
        c.err(
            "proxy.server_version",
            "must not be empty (omit it for the default)",
        );
    }
    if let Some(tls) = &mut p.tls {
        resolve_path(c, "proxy.tls.cert", &mut tls.cert);
        resolve_path(c, "proxy.tls.key", &mut tls.key);
    }
}

/// Makes a path from the rule file absolute, relative to the rule file's directory.
fn resolve_path(c: &mut Checker<'_>, field: &str, path: &mut PathBuf) {
    if path.as_os_str().is_empty() {
        c.err(field, "must not be empty");
        return;
    }
    let origin: &Path = c.origin;
    let base = origin.parent().unwrap_or(Path::new(""));
    match std::path::absolute(base.join(&*path)) {
        Ok(abs) => *path = abs,
        Err(e) => c.err(field, format!("cannot resolve '{}': {e}", path.display())),
    }
}

/// `host:port` with a non-empty host (name, IPv4, or bracketed IPv6) and a port 1-65535
/// (or 0 where `allow_any_port`).
fn check_address(addr: &str, allow_any_port: bool) -> Result<(), String> {
    let bad = || format!("bad address '{addr}' (expected host:port)");
    let port = if let Some(rest) = addr.strip_prefix('[') {
        let (v6, port) = rest.split_once("]:").ok_or_else(bad)?;
        v6.parse::<std::net::Ipv6Addr>().map_err(|_| bad())?;
        port
    } else {
        let (host, port) = addr.rsplit_once(':').ok_or_else(bad)?;
        let host_ok = !host.is_empty()
            && host
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '.' | '-' | '_'));
        if !host_ok {
            return Err(bad());
        }
        port
    };
    match port.parse::<u16>() {
        Ok(p) if (p > 0 || allow_any_port) && port.bytes().all(|b| b.is_ascii_digit()) => Ok(()),
        _ => Err(bad()),
    }
}

fn check_users(c: &mut Checker<'_>, users: &[UserConfig]) {
    if users.is_empty() {
        c.err("users", "no users; add at least one [[users]] entry");
    }
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, u) in users.iter().enumerate() {
        if u.name.is_empty() {
            c.err(format!("users[{i}].name"), "must not be empty");
            continue;
        }
        if u.name.contains('@') {
            // USER() answers '<name>@<client host>' and KILL USER takes name@host.
            c.err(format!("users[{i}].name"), "must not contain '@'");
        }
        if let Some(&first) = seen.get(u.name.as_str()) {
            c.err(
                format!("users[{i}].name"),
                format!("duplicate user '{}' (also users[{first}])", u.name),
            );
        } else {
            seen.insert(&u.name, i);
        }
    }
}

/// A data source name: it appears in node expressions before the `.`.
fn valid_data_source_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '_' | '-'))
}

/// A database or table name dbmesh is willing to put in SQL.
fn valid_identifier(name: &str) -> bool {
    !name.is_empty()
        && name.chars().count() <= MAX_IDENT
        && name
            .chars()
            .all(|ch| ch.is_alphanumeric() || matches!(ch, '_' | '$'))
}

fn check_data_sources(c: &mut Checker<'_>, sources: &mut BTreeMap<String, DataSourceConfig>) {
    if sources.is_empty() {
        c.err(
            "data_sources",
            "no data sources; add a [data_sources.<name>] table",
        );
    }
    for (name, ds) in sources {
        let at = format!("data_sources.{name}");
        if !valid_data_source_name(name) {
            c.err(
                at.clone(),
                format!("bad data source name '{name}' (letters, digits, '_' and '-' only)"),
            );
        }
        if let Err(e) = check_address(&ds.address, false) {
            c.err(format!("{at}.address"), e);
        }
        if ds.user.is_empty() {
            c.err(format!("{at}.user"), "must not be empty");
        }
        if !valid_identifier(&ds.database) {
            c.err(
                format!("{at}.database"),
                format!("bad database name '{}'", ds.database),
            );
        }
        if ds.pool.max == 0 {
            c.err(format!("{at}.pool.max"), "must be at least 1");
        }
        if ds.pool.min_idle > ds.pool.max {
            c.err(
                format!("{at}.pool.min_idle"),
                format!(
                    "{} is more than pool.max ({})",
                    ds.pool.min_idle, ds.pool.max
                ),
            );
        }
        for (field, ms) in [
            ("acquire_timeout_ms", ds.pool.acquire_timeout_ms),
            ("connect_timeout_ms", ds.pool.connect_timeout_ms),
            ("handshake_timeout_ms", ds.pool.handshake_timeout_ms),
            ("read_timeout_ms", ds.pool.read_timeout_ms),
        ] {
            if ms == 0 {
                c.err(format!("{at}.pool.{field}"), "must be at least 1");
            }
        }
        match (&mut ds.tls_ca, ds.tls) {
            (Some(ca), BackendTls::VerifyIdentity) => resolve_path(c, &format!("{at}.tls_ca"), ca),
            (None, BackendTls::VerifyIdentity) => c.err(
                format!("{at}.tls_ca"),
                "tls = \"verify_identity\" needs the CA file the server's certificate is checked against",
            ),
            (Some(_), _) => c.err(
                format!("{at}.tls_ca"),
                "is only used with tls = \"verify_identity\" (the other modes do not check certificates)",
            ),
            (None, _) => {}
        }
        for (i, replica) in ds.replicas.iter().enumerate() {
            let field = format!("{at}.replicas[{i}].address");
            if let Err(e) = check_address(&replica.address, false) {
                c.err(field, e);
            } else if replica.address == ds.address {
                c.err(field, "same address as the data source's primary");
            } else if ds.replicas[..i]
                .iter()
                .any(|r| r.address == replica.address)
            {
                c.err(field, format!("'{}' is listed twice", replica.address));
            }
        }
    }
}

fn check_replication(c: &mut Checker<'_>, r: &ReplicationConfig) {
    for (field, value) in [
        ("health_check_interval_ms", r.health_check_interval_ms),
        ("health_check_timeout_ms", r.health_check_timeout_ms),
    ] {
        if value == 0 {
            c.err(format!("replication.{field}"), "must be at least 1");
        }
    }
}

fn check_schema(
    c: &mut Checker<'_>,
    schema: &SchemaConfig,
    sources: &BTreeMap<String, DataSourceConfig>,
) {
    if !valid_identifier(&schema.name) {
        c.err(
            "schema.name",
            format!("bad database name '{}'", schema.name),
        );
    }
    if !sources.contains_key(&schema.default_data_source) {
        c.err(
            "schema.default_data_source",
            format!("unknown data source '{}'", schema.default_data_source),
        );
    }
}

fn compile_tables(
    c: &mut Checker<'_>,
    tables: &BTreeMap<String, TableConfig>,
    sources: &BTreeMap<String, DataSourceConfig>,
    meta: Option<&str>,
) -> BTreeMap<String, TableRule> {
    let mut out = BTreeMap::new();
    let mut lower: HashMap<String, &str> = HashMap::new();
    for (name, t) in tables {
        let at = format!("tables.{name}");
        if !valid_identifier(name) {
            c.err(at.clone(), format!("bad table name '{name}'"));
        }
        if let Some(other) = lower.insert(name.to_lowercase(), name) {
            c.err(
                at.clone(),
                format!("'{name}' and '{other}' differ only in case; table names are matched case-insensitively"),
            );
        }
        let rule = match t.kind.as_deref() {
            Some("sharded") => compile_sharded(c, &at, name, t, sources).map(TableRule::Sharded),
            Some("broadcast") => {
                compile_broadcast(c, &at, name, t, sources, meta).map(TableRule::Broadcast)
            }
            Some("single") => compile_single(c, &at, name, t, sources).map(TableRule::Single),
            Some(other) => {
                c.err(
                    format!("{at}.kind"),
                    format!("unknown kind '{other}'; expected {KINDS}"),
                );
                None
            }
            None => {
                c.err(format!("{at}.kind"), format!("missing; expected {KINDS}"));
                None
            }
        };
        if let Some(rule) = rule {
            out.insert(name.clone(), rule);
        }
    }
    out
}

/// Reports every field that is set but not used by `what`.
fn forbid(c: &mut Checker<'_>, at: &str, what: &str, fields: &[(&str, bool)]) {
    for (field, present) in fields {
        if *present {
            c.err(format!("{at}.{field}"), format!("not used by {what}"));
        }
    }
}

fn compile_sharded(
    c: &mut Checker<'_>,
    at: &str,
    name: &str,
    t: &TableConfig,
    sources: &BTreeMap<String, DataSourceConfig>,
) -> Option<ShardedTable> {
    let before = c.problems.len();
    forbid(
        c,
        at,
        "kind 'sharded'",
        &[
            ("data_source", t.data_source.is_some()),
            ("data_sources", t.data_sources.is_some()),
        ],
    );
    let column = match t.column.as_deref() {
        Some(col) if !col.trim().is_empty() => col.to_owned(),
        Some(_) => {
            c.err(format!("{at}.column"), "must not be empty");
            String::new()
        }
        None => {
            c.err(format!("{at}.column"), "missing; name the sharding column");
            String::new()
        }
    };
    let column_type = match t.column_type.as_deref() {
        None | Some("int") => ColumnType::Int,
        Some("string") => ColumnType::String,
        Some(other) => {
            c.err(
                format!("{at}.column_type"),
                format!("unknown column type '{other}'; expected int or string"),
            );
            ColumnType::Int
        }
    };
    let algorithm = match t.algorithm.as_deref() {
        Some(a @ ("mod" | "hash" | "range" | "consistent_hash" | "uid_slice")) => Some(a),
        Some(other) => {
            c.err(
                format!("{at}.algorithm"),
                format!("unknown algorithm '{other}'; expected {ALGORITHMS}"),
            );
            None
        }
        None => {
            c.err(
                format!("{at}.algorithm"),
                format!("missing; expected {ALGORITHMS}"),
            );
            None
        }
    };
    let nodes = compile_nodes(c, at, name, t.nodes.as_deref(), sources);
    let algorithm = algorithm.and_then(|a| {
        let what = format!("algorithm '{a}'");
        forbid(
            c,
            at,
            &what,
            &[
                ("boundaries", a != "range" && t.boundaries.is_some()),
                (
                    "virtual_nodes",
                    a != "consistent_hash" && t.virtual_nodes.is_some(),
                ),
                ("slices", a != "uid_slice" && t.slices.is_some()),
            ],
        );
        if matches!(a, "mod" | "range") && column_type != ColumnType::Int {
            c.err(
                format!("{at}.column_type"),
                format!("{what} needs integer keys (column_type = \"int\")"),
            );
        }
        let nodes = nodes.as_deref()?;
        compile_algorithm(c, at, a, t, nodes, sources)
    });
    if c.problems.len() > before {
        return None;
    }
    Some(ShardedTable {
        name: name.to_owned(),
        column,
        column_type,
        algorithm: algorithm?,
        nodes: nodes?,
        binding_group: None,
    })
}

fn compile_algorithm(
    c: &mut Checker<'_>,
    at: &str,
    algorithm: &str,
    t: &TableConfig,
    nodes: &[PhysicalNode],
    sources: &BTreeMap<String, DataSourceConfig>,
) -> Option<Algorithm> {
    match algorithm {
        "mod" => Some(Algorithm::Mod),
        "hash" => Some(Algorithm::Hash),
        "range" => {
            let Some(b) = &t.boundaries else {
                c.err(
                    format!("{at}.boundaries"),
                    format!(
                        "missing; range needs {} ascending boundaries for {} nodes",
                        nodes.len() - 1,
                        nodes.len()
                    ),
                );
                return None;
            };
            let mut ok = true;
            if b.len() + 1 != nodes.len() {
                c.err(
                    format!("{at}.boundaries"),
                    format!(
                        "{} boundaries for {} nodes; range needs one boundary fewer than nodes",
                        b.len(),
                        nodes.len()
                    ),
                );
                ok = false;
            }
            for w in b.windows(2) {
                if w[0] >= w[1] {
                    c.err(
                        format!("{at}.boundaries"),
                        format!("not strictly ascending: {} after {}", w[1], w[0]),
                    );
                    ok = false;
                }
            }
            ok.then(|| Algorithm::Range(b.clone()))
        }
        "consistent_hash" => {
            let v = t.virtual_nodes.unwrap_or(DEFAULT_VIRTUAL_NODES);
            if !(1..=MAX_VIRTUAL_NODES).contains(&v) {
                c.err(
                    format!("{at}.virtual_nodes"),
                    format!("{v} is out of range (1 to {MAX_VIRTUAL_NODES})"),
                );
                return None;
            }
            Some(Algorithm::ConsistentHash(HashRing::new(
                nodes.iter().map(|n| n.data_source.as_str()),
                v,
            )))
        }
        "uid_slice" => {
            let Some(slices) = &t.slices else {
                c.err(
                    format!("{at}.slices"),
                    "missing; map every slice 00-99, e.g. \"00-49\" = \"ds_0\"",
                );
                return None;
            };
            match build_slices(slices, nodes, sources) {
                Ok(m) => Some(Algorithm::UidSlice(m)),
                Err(errors) => {
                    for e in errors {
                        c.err(format!("{at}.slices"), e);
                    }
                    None
                }
            }
        }
        _ => None,
    }
}

/// Builds a slice map whose targets are a data source holding exactly one of
/// `nodes`, or a node written `data_source.table`.
pub(crate) fn build_slices(
    slices: &BTreeMap<String, String>,
    nodes: &[PhysicalNode],
    sources: &BTreeMap<String, DataSourceConfig>,
) -> Result<SliceMap, Vec<String>> {
    SliceMap::build(slices, |target| {
        let ds = target.split_once('.').map_or(target, |(ds, _)| ds);
        if !sources.contains_key(ds) {
            return Err(format!("unknown data source '{ds}'"));
        }
        if let Some((ds, table)) = target.split_once('.') {
            return nodes
                .iter()
                .position(|n| n.data_source == ds && n.table == table)
                .ok_or_else(|| format!("'{target}' is not a node of this table"));
        }
        let on: Vec<usize> = nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.data_source == target)
            .map(|(i, _)| i)
            .collect();
        match on.as_slice() {
            [i] => Ok(*i),
            [] => Err(format!(
                "data source '{target}' holds no node of this table"
            )),
            _ => Err(format!(
                "data source '{target}' holds {} nodes of this table; name one as '{target}.<table>'",
                on.len()
            )),
        }
    })
}

fn compile_nodes(
    c: &mut Checker<'_>,
    at: &str,
    name: &str,
    exprs: Option<&[String]>,
    sources: &BTreeMap<String, DataSourceConfig>,
) -> Option<Vec<PhysicalNode>> {
    let at = format!("{at}.nodes");
    let Some(exprs) = exprs else {
        c.err(at, "missing; e.g. nodes = \"ds_{0..1}.table_{0..3}\"");
        return None;
    };
    if exprs.is_empty() {
        c.err(at, "must list at least one node");
        return None;
    }
    let before = c.problems.len();
    let mut nodes = Vec::new();
    let mut unknown = BTreeSet::new();
    let mut seen = BTreeSet::new();
    for e in exprs {
        match expr::expand(e, name) {
            Ok(pairs) => {
                for (ds, table) in pairs {
                    if !sources.contains_key(&ds) {
                        unknown.insert(ds.clone());
                    }
                    if !valid_identifier(&table) {
                        c.err(at.clone(), format!("bad table name '{table}'"));
                    }
                    let node = PhysicalNode::new(ds, table);
                    if !seen.insert(node.clone()) {
                        c.err(at.clone(), format!("node {node} listed twice"));
                    }
                    nodes.push(node);
                }
            }
            Err(msg) => c.err(at.clone(), msg),
        }
    }
    match unknown.len() {
        0 => {}
        1 => c.err(
            at.clone(),
            format!(
                "unknown data source '{}'",
                unknown.iter().next().map_or("", |s| s.as_str())
            ),
        ),
        _ => c.err(
            at.clone(),
            format!(
                "unknown data sources {}",
                unknown
                    .iter()
                    .map(|d| format!("'{d}'"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ),
    }
    if nodes.len() > expr::MAX_NODES {
        c.err(at, format!("more than {} nodes", expr::MAX_NODES));
    }
    (c.problems.len() == before).then_some(nodes)
}

fn compile_broadcast(
    c: &mut Checker<'_>,
    at: &str,
    name: &str,
    t: &TableConfig,
    sources: &BTreeMap<String, DataSourceConfig>,
    meta: Option<&str>,
) -> Option<BroadcastTable> {
    let before = c.problems.len();
    forbid_placement_fields(c, at, "kind 'broadcast'", t);
    forbid(
        c,
        at,
        "kind 'broadcast'",
        &[("data_source", t.data_source.is_some())],
    );
    let names: Vec<String> = match &t.data_sources {
        Some(list) => {
            if list.is_empty() {
                c.err(
                    format!("{at}.data_sources"),
                    "must list at least one data source",
                );
            }
            let mut seen = BTreeSet::new();
            for ds in list {
                if !sources.contains_key(ds) {
                    c.err(
                        format!("{at}.data_sources"),
                        format!("unknown data source '{ds}'"),
                    );
                }
                if !seen.insert(ds) {
                    c.err(
                        format!("{at}.data_sources"),
                        format!("data source '{ds}' listed twice"),
                    );
                }
            }
            list.clone()
        }
        // Every data source that can hold application tables: the meta data source holds
        // only the proxy's own state.
        None => sources
            .keys()
            .filter(|ds| Some(ds.as_str()) != meta)
            .cloned()
            .collect(),
    };
    (c.problems.len() == before).then(|| BroadcastTable {
        nodes: names
            .into_iter()
            .map(|ds| PhysicalNode::new(ds, name))
            .collect(),
    })
}

fn compile_single(
    c: &mut Checker<'_>,
    at: &str,
    name: &str,
    t: &TableConfig,
    sources: &BTreeMap<String, DataSourceConfig>,
) -> Option<PhysicalNode> {
    let before = c.problems.len();
    forbid_placement_fields(c, at, "kind 'single'", t);
    forbid(
        c,
        at,
        "kind 'single'",
        &[("data_sources", t.data_sources.is_some())],
    );
    match &t.data_source {
        Some(ds) if sources.contains_key(ds) => {}
        Some(ds) => c.err(
            format!("{at}.data_source"),
            format!("unknown data source '{ds}'"),
        ),
        None => c.err(
            format!("{at}.data_source"),
            "missing; name the data source holding the table",
        ),
    }
    let ds = t.data_source.as_deref()?;
    (c.problems.len() == before).then(|| PhysicalNode::new(ds, name))
}

fn forbid_placement_fields(c: &mut Checker<'_>, at: &str, what: &str, t: &TableConfig) {
    forbid(
        c,
        at,
        what,
        &[
            ("column", t.column.is_some()),
            ("column_type", t.column_type.is_some()),
            ("algorithm", t.algorithm.is_some()),
            ("nodes", t.nodes.is_some()),
            ("boundaries", t.boundaries.is_some()),
            ("virtual_nodes", t.virtual_nodes.is_some()),
            ("slices", t.slices.is_some()),
        ],
    );
}

/// No physical table may belong to two logical tables (compared
/// case-insensitively: servers with `lower_case_table_names=1` fold them).
fn check_physical_collisions(c: &mut Checker<'_>, tables: &BTreeMap<String, TableRule>) {
    let mut owner: HashMap<(String, String), &str> = HashMap::new();
    for (name, rule) in tables {
        let nodes: &[PhysicalNode] = match rule {
            TableRule::Sharded(s) => &s.nodes,
            TableRule::Broadcast(b) => &b.nodes,
            TableRule::Single(n) => std::slice::from_ref(n),
        };
        let field = match rule {
            TableRule::Sharded(_) => "nodes",
            TableRule::Broadcast(_) => "data_sources",
            TableRule::Single(_) => "data_source",
        };
        for n in nodes {
            let key = (n.data_source.clone(), n.table.to_lowercase());
            match owner.get(&key) {
                Some(other) if *other != name.as_str() => c.err(
                    format!("tables.{name}.{field}"),
                    format!("physical table {n} is also used by table '{other}'"),
                ),
                Some(_) => {}
                None => {
                    owner.insert(key, name);
                }
            }
        }
    }
}

fn compile_binding_groups(
    c: &mut Checker<'_>,
    groups: &[BindingGroupConfig],
    declared: &BTreeMap<String, TableConfig>,
    tables: &mut BTreeMap<String, TableRule>,
) -> Vec<BindingGroup> {
    let mut member_of: HashMap<&str, usize> = HashMap::new();
    let mut out = Vec::new();
    for (gi, g) in groups.iter().enumerate() {
        let at = format!("binding_groups[{gi}]");
        if g.tables.len() < 2 {
            c.err(
                format!("{at}.tables"),
                "a binding group needs at least two tables",
            );
        }
        let mut members: Vec<&ShardedTable> = Vec::new();
        for name in &g.tables {
            match tables.get(name) {
                Some(TableRule::Sharded(s)) => {
                    if let Some(&prev) = member_of.get(name.as_str()) {
                        let msg = if prev == gi {
                            format!("table '{name}' listed twice")
                        } else {
                            format!("table '{name}' is already in binding_groups[{prev}]")
                        };
                        c.err(format!("{at}.tables"), msg);
                    } else {
                        member_of.insert(name, gi);
                        members.push(s);
                    }
                }
                Some(TableRule::Broadcast(_)) => c.err(
                    format!("{at}.tables"),
                    format!("table '{name}' is broadcast; only sharded tables can be bound"),
                ),
                Some(TableRule::Single(_)) => c.err(
                    format!("{at}.tables"),
                    format!("table '{name}' is single; only sharded tables can be bound"),
                ),
                // A table with errors of its own is not compiled; those errors say enough.
                None if declared.contains_key(name) => {}
                None => c.err(format!("{at}.tables"), format!("unknown table '{name}'")),
            }
        }
        if let Some((first, rest)) = members.split_first() {
            for m in rest {
                for msg in binding_mismatches(first, m) {
                    c.err(at.clone(), msg);
                }
            }
        }
        out.push(BindingGroup {
            tables: g.tables.clone(),
        });
    }
    for (name, gi) in member_of {
        if let Some(TableRule::Sharded(s)) = tables.get_mut(name) {
            s.binding_group = Some(gi);
        }
    }
    out
}

/// Why `b` does not route like `a` (empty when they are bound correctly).
fn binding_mismatches(a: &ShardedTable, b: &ShardedTable) -> Vec<String> {
    let (an, bn) = (&a.name, &b.name);
    let mut out = Vec::new();
    if a.column_type != b.column_type {
        out.push(format!(
            "'{bn}' has column_type '{}' but '{an}' has '{}'",
            b.column_type, a.column_type
        ));
    }
    if a.algorithm.name() != b.algorithm.name() {
        out.push(format!(
            "'{bn}' uses algorithm '{}' but '{an}' uses '{}'",
            b.algorithm.name(),
            a.algorithm.name()
        ));
        return out;
    }
    if a.nodes.len() != b.nodes.len() {
        out.push(format!(
            "'{bn}' has {} nodes but '{an}' has {}",
            b.nodes.len(),
            a.nodes.len()
        ));
        return out;
    }
    if let Some((i, (x, y))) = a
        .nodes
        .iter()
        .zip(&b.nodes)
        .enumerate()
        .find(|(_, (x, y))| x.data_source != y.data_source)
    {
        out.push(format!(
            "node {i} of '{bn}' is on data source '{}' but node {i} of '{an}' is on '{}'",
            y.data_source, x.data_source
        ));
    }
    match (&a.algorithm, &b.algorithm) {
        (Algorithm::Range(x), Algorithm::Range(y)) if x != y => out.push(format!(
            "'{bn}' has range boundaries {y:?} but '{an}' has {x:?}"
        )),
        (Algorithm::ConsistentHash(x), Algorithm::ConsistentHash(y))
            if x.virtual_nodes() != y.virtual_nodes() =>
        {
            out.push(format!(
                "'{bn}' has {} virtual nodes but '{an}' has {}",
                y.virtual_nodes(),
                x.virtual_nodes()
            ))
        }
        (Algorithm::UidSlice(x), Algorithm::UidSlice(y)) => {
            if let Some(s) = (0..100u8).find(|&s| x.node_of_slice(s) != y.node_of_slice(s)) {
                let (xi, yi) = (x.node_of_slice(s), y.node_of_slice(s));
                out.push(format!(
                    "slice {s:02} goes to node {yi} ({}) in '{bn}' but to node {xi} ({}) in '{an}'",
                    b.nodes[yi], a.nodes[xi]
                ));
            }
        }
        _ => {}
    }
    out
}

fn compile_sequences(
    c: &mut Checker<'_>,
    sequences: &BTreeMap<String, SequenceConfig>,
) -> BTreeMap<String, SequenceRule> {
    let mut out = BTreeMap::new();
    let mut lower: HashMap<String, &str> = HashMap::new();
    // Table → (column, sequence), lower-cased: MySQL column names are case-insensitive,
    // and table names are looked up case-insensitively. One filled column per table.
    let mut filled: HashMap<String, (&str, &str)> = HashMap::new();
    for (name, sc) in sequences {
        let at = format!("sequences.{name}");
        let before = c.problems.len();
        if !valid_identifier(name) {
            c.err(at.clone(), format!("bad sequence name '{name}'"));
        }
        if let Some(other) = lower.insert(name.to_lowercase(), name) {
            c.err(
                at.clone(),
                format!("'{name}' and '{other}' differ only in case; sequence names are matched case-insensitively"),
            );
        }
        let fills = match (&sc.table, &sc.column) {
            (Some(table), Some(column)) => {
                for (field, ident) in [("table", table), ("column", column)] {
                    if !valid_identifier(ident) {
                        c.err(
                            format!("{at}.{field}"),
                            format!("bad {field} name '{ident}'"),
                        );
                    }
                }
                match filled.get(&table.to_lowercase()) {
                    Some((filled_column, other)) if filled_column.eq_ignore_ascii_case(column) => c
                        .err(
                            format!("{at}.column"),
                            format!(
                                "column {table}.{column} is already filled by sequence '{other}'"
                            ),
                        ),
                    Some((filled_column, other)) => c.err(
                        format!("{at}.table"),
                        format!(
                            "table {table} already has column {filled_column} filled by \
                             sequence '{other}'; a table has at most one filled column"
                        ),
                    ),
                    None => {
                        filled.insert(table.to_lowercase(), (column.as_str(), name));
                    }
                }
                Some(ColumnRef {
                    table: table.clone(),
                    column: column.clone(),
                })
            }
            (Some(_), None) => {
                c.err(
                    format!("{at}.column"),
                    "missing; `table` needs the `column` the sequence fills",
                );
                None
            }
            (None, Some(_)) => {
                c.err(
                    format!("{at}.table"),
                    "missing; `column` needs the `table` it belongs to",
                );
                None
            }
            (None, None) => None,
        };
        let kind = match sc.kind.as_deref() {
            Some("segment") => compile_segment(c, &at, sc).map(SequenceKind::Segment),
            Some("snowflake") => compile_snowflake(c, &at, sc).map(SequenceKind::Snowflake),
            Some(other) => {
                c.err(
                    format!("{at}.kind"),
                    format!("unknown kind '{other}'; expected {SEQUENCE_KINDS}"),
                );
                None
            }
            None => {
                c.err(
                    format!("{at}.kind"),
                    format!("missing; expected {SEQUENCE_KINDS}"),
                );
                None
            }
        };
        if let (Some(kind), true) = (kind, c.problems.len() == before) {
            out.insert(
                name.clone(),
                SequenceRule {
                    name: name.clone(),
                    kind,
                    fills,
                },
            );
        }
    }
    out
}

/// `value` if it is within `range`, else a problem at `at.field`.
fn in_range(
    c: &mut Checker<'_>,
    at: &str,
    field: &str,
    value: Option<i64>,
    range: std::ops::RangeInclusive<i64>,
) -> Option<Option<i64>> {
    match value {
        Some(v) if !range.contains(&v) => {
            c.err(
                format!("{at}.{field}"),
                format!("{v} is out of range ({} to {})", range.start(), range.end()),
            );
            None
        }
        v => Some(v),
    }
}

fn compile_segment(c: &mut Checker<'_>, at: &str, sc: &SequenceConfig) -> Option<SegmentRule> {
    forbid(
        c,
        at,
        "kind 'segment'",
        &[
            ("worker_id", sc.worker_id.is_some()),
            ("epoch", sc.epoch.is_some()),
            ("max_clock_backward_ms", sc.max_clock_backward_ms.is_some()),
        ],
    );
    // `step` is an INT column of dbmesh_sequence.
    let step = in_range(c, at, "step", sc.step, 1..=i64::from(i32::MAX));
    let start = in_range(c, at, "start", sc.start, 1..=i64::MAX);
    let max = in_range(c, at, "max", sc.max, 1..=i64::MAX);
    let max_range = in_range(c, at, "max_range", sc.max_range, 1..=i64::MAX);
    // The ranges checked above make every conversion below lossless.
    let step = step?.map_or(DEFAULT_SEGMENT_STEP, |v| {
        u32::try_from(v).unwrap_or(DEFAULT_SEGMENT_STEP)
    });
    let start = start?.map_or(DEFAULT_SEGMENT_START, i64::unsigned_abs);
    let max = max?.map_or(DEFAULT_SEGMENT_MAX, i64::unsigned_abs);
    let max_range = max_range?.map_or(DEFAULT_SEGMENT_MAX_RANGE, i64::unsigned_abs);
    if max < start {
        c.err(
            format!("{at}.max"),
            format!("{max} is below start ({start})"),
        );
        return None;
    }
    Some(SegmentRule {
        step,
        start,
        max,
        max_range,
    })
}

fn compile_snowflake(c: &mut Checker<'_>, at: &str, sc: &SequenceConfig) -> Option<SnowflakeRule> {
    forbid(
        c,
        at,
        "kind 'snowflake'",
        &[
            ("step", sc.step.is_some()),
            ("start", sc.start.is_some()),
            ("max", sc.max.is_some()),
            ("max_range", sc.max_range.is_some()),
        ],
    );
    let worker_id = in_range(
        c,
        at,
        "worker_id",
        sc.worker_id,
        0..=i64::from(MAX_WORKER_ID),
    );
    let epoch = in_range(c, at, "epoch", sc.epoch, 0..=i64::MAX);
    let backward = in_range(
        c,
        at,
        "max_clock_backward_ms",
        sc.max_clock_backward_ms,
        0..=MAX_CLOCK_BACKWARD_MS,
    );
    Some(SnowflakeRule {
        worker_id: worker_id?.and_then(|v| u16::try_from(v).ok()),
        epoch_ms: epoch?.map_or(DEFAULT_SNOWFLAKE_EPOCH_MS, i64::unsigned_abs),
        max_clock_backward_ms: backward?.map_or(DEFAULT_MAX_CLOCK_BACKWARD_MS, i64::unsigned_abs),
    })
}

/// `proxy.meta_data_source` must name a data source, and must be set when a sequence keeps
/// state there (segment blocks, snowflake worker-id leases).
fn check_meta_data_source(
    c: &mut Checker<'_>,
    proxy: &ProxyConfig,
    sources: &BTreeMap<String, DataSourceConfig>,
    sequences: &BTreeMap<String, SequenceRule>,
) {
    match &proxy.meta_data_source {
        Some(ds) if !sources.contains_key(ds) => c.err(
            "proxy.meta_data_source",
            format!("unknown data source '{ds}'"),
        ),
        Some(_) => {}
        None => {
            for s in sequences.values() {
                let name = &s.name;
                let why = match &s.kind {
                    SequenceKind::Segment(_) => {
                        format!("segment sequence '{name}' reserves its blocks there")
                    }
                    SequenceKind::Snowflake(f) if f.worker_id.is_none() => format!(
                        "snowflake sequence '{name}' leases its worker id there (or set its worker_id)"
                    ),
                    SequenceKind::Snowflake(_) => continue,
                };
                c.err("proxy.meta_data_source", format!("missing; {why}"));
            }
        }
    }
}
