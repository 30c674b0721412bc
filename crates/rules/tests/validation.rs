//! Validation: each kind of mistake gives its precise message with file and
//! location, all problems of a file come out together, and typos are errors.

use std::path::Path;

use rules::{parse_str, ConfigError, TableRoute};

const USERS: &str = "[[users]]\nname = \"dbmesh\"\npassword = \"dbmesh\"\n";

const SOURCES: &str = r#"
[schema]
name = "bank"
default_data_source = "ds_0"
[data_sources.ds_0]
address = "127.0.0.1:3306"
user = "root"
database = "bank_0"
[data_sources.ds_1]
address = "127.0.0.1:3306"
user = "root"
database = "bank_1"
[data_sources.ds_2]
address = "127.0.0.1:3306"
user = "root"
database = "bank_2"
"#;

const FILE: &str = "sharding-rules/x.toml";

fn parse(text: &str) -> Result<rules::Rules, ConfigError> {
    parse_str(text, Path::new(FILE))
}

/// The problems of `USERS + SOURCES + extra`, one string per line.
fn problems(extra: &str) -> Vec<String> {
    let err = parse(&format!("{USERS}{SOURCES}{extra}")).expect_err("must be invalid");
    let lines: Vec<String> = err.to_string().lines().map(str::to_owned).collect();
    assert_eq!(lines.len(), err.problems().len(), "one problem per line");
    lines
}

fn one(extra: &str) -> String {
    let p = problems(extra);
    assert_eq!(p.len(), 1, "expected exactly one problem, got {p:#?}");
    p.into_iter().next().unwrap_or_default()
}

fn sharded(name: &str, body: &str) -> String {
    format!("[tables.{name}]\nkind = \"sharded\"\ncolumn = \"uid\"\n{body}\n")
}

#[test]
fn a_minimal_file_is_valid() {
    let r = parse(&format!("{USERS}{SOURCES}")).expect("valid");
    assert_eq!(
        r.table_rule("x"),
        TableRoute::Default {
            data_source: "ds_0"
        }
    );
}

#[test]
fn unknown_algorithm() {
    assert_eq!(
        one(&sharded(
            "payment",
            "algorithm = \"crc33\"\nnodes = \"ds_{0..1}\""
        )),
        "sharding-rules/x.toml: tables.payment.algorithm: unknown algorithm 'crc33'; \
         expected mod, hash, range, consistent_hash or uid_slice"
    );
}

#[test]
fn overlapping_and_missing_slices() {
    let body = r#"algorithm = "uid_slice"
nodes = "ds_{0..1}"
slices = { "00-29" = "ds_0", "25-40" = "ds_1", "41-59" = "ds_1" }"#;
    assert_eq!(
        problems(&sharded("payment", body)),
        [
            "sharding-rules/x.toml: tables.payment.slices: slices 25-29 overlap ('00-29' and '25-40')",
            "sharding-rules/x.toml: tables.payment.slices: slices 60-99 not mapped",
        ]
    );
}

#[test]
fn bad_slice_targets() {
    let body = r#"algorithm = "uid_slice"
nodes = ["ds_0.p_{0..1}", "ds_1.p_2"]
slices = { "00-24" = "ds_0", "25-49" = "ds_1.p_9", "50-74" = "ds_2", "75-98" = "ds_9", "99" = "ds_0.p_1" }"#;
    assert_eq!(
        problems(&sharded("p", body)),
        [
            "sharding-rules/x.toml: tables.p.slices: '00-24': data source 'ds_0' holds 2 nodes of this table; name one as 'ds_0.<table>'",
            "sharding-rules/x.toml: tables.p.slices: '25-49': 'ds_1.p_9' is not a node of this table",
            "sharding-rules/x.toml: tables.p.slices: '50-74': data source 'ds_2' holds no node of this table",
            "sharding-rules/x.toml: tables.p.slices: '75-98': unknown data source 'ds_9'",
        ]
    );
}

#[test]
fn unknown_data_sources() {
    assert_eq!(
        one(&sharded(
            "payment",
            "algorithm = \"mod\"\nnodes = [\"ds_0\", \"ds_9\"]"
        )),
        "sharding-rules/x.toml: tables.payment.nodes: unknown data source 'ds_9'"
    );
    assert_eq!(
        one(&sharded(
            "payment",
            "algorithm = \"mod\"\nnodes = \"ds_{1..4}\""
        )),
        "sharding-rules/x.toml: tables.payment.nodes: unknown data sources 'ds_3', 'ds_4'"
    );
    assert_eq!(
        one("[tables.branch]\nkind = \"single\"\ndata_source = \"ds_7\"\n"),
        "sharding-rules/x.toml: tables.branch.data_source: unknown data source 'ds_7'"
    );
    assert_eq!(
        one("[tables.currency]\nkind = \"broadcast\"\ndata_sources = [\"ds_0\", \"ds_8\"]\n"),
        "sharding-rules/x.toml: tables.currency.data_sources: unknown data source 'ds_8'"
    );
    let text = format!("{USERS}{SOURCES}").replace(
        "default_data_source = \"ds_0\"",
        "default_data_source = \"ds\"",
    );
    assert_eq!(
        parse(&text).expect_err("invalid").to_string(),
        "sharding-rules/x.toml: schema.default_data_source: unknown data source 'ds'"
    );
}

#[test]
fn bad_node_expressions() {
    assert_eq!(
        problems(&sharded("t", "algorithm = \"hash\"\nnodes = [\"ds_{0..1\", \"ds_0.t\", \"ds_0.t\", \"ds_1.bad name\"]")),
        [
            "sharding-rules/x.toml: tables.t.nodes: unclosed '{' in 'ds_{0..1'",
            "sharding-rules/x.toml: tables.t.nodes: node ds_0.t listed twice",
            "sharding-rules/x.toml: tables.t.nodes: bad table name 'bad name'",
        ]
    );
}

#[test]
fn algorithm_parameters() {
    assert_eq!(
        problems(&sharded("t", "algorithm = \"range\"\nnodes = \"ds_{0..2}\"\nboundaries = [5, 5, 1]")),
        [
            "sharding-rules/x.toml: tables.t.boundaries: 3 boundaries for 3 nodes; range needs one boundary fewer than nodes",
            "sharding-rules/x.toml: tables.t.boundaries: not strictly ascending: 5 after 5",
            "sharding-rules/x.toml: tables.t.boundaries: not strictly ascending: 1 after 5",
        ]
    );
    assert_eq!(
        one(&sharded("t", "algorithm = \"range\"\nnodes = \"ds_{0..2}\"")),
        "sharding-rules/x.toml: tables.t.boundaries: missing; range needs 2 ascending boundaries for 3 nodes"
    );
    assert_eq!(
        one(&sharded(
            "t",
            "algorithm = \"hash\"\nnodes = \"ds_0\"\nvirtual_nodes = 10"
        )),
        "sharding-rules/x.toml: tables.t.virtual_nodes: not used by algorithm 'hash'"
    );
    assert_eq!(
        one(&sharded(
            "t",
            "algorithm = \"consistent_hash\"\nnodes = \"ds_0\"\nvirtual_nodes = 0"
        )),
        "sharding-rules/x.toml: tables.t.virtual_nodes: 0 is out of range (1 to 10000)"
    );
    assert_eq!(
        one(&sharded("t", "algorithm = \"mod\"\ncolumn_type = \"string\"\nnodes = \"ds_0\"")),
        "sharding-rules/x.toml: tables.t.column_type: algorithm 'mod' needs integer keys (column_type = \"int\")"
    );
    assert_eq!(
        one(&sharded("t", "algorithm = \"uid_slice\"\nnodes = \"ds_0\"")),
        "sharding-rules/x.toml: tables.t.slices: missing; map every slice 00-99, e.g. \"00-49\" = \"ds_0\""
    );
    assert_eq!(
        one(&sharded("t", "algorithm = \"hash\"\ncolumn_type = \"blob\"\nnodes = \"ds_0\"")),
        "sharding-rules/x.toml: tables.t.column_type: unknown column type 'blob'; expected int or string"
    );
}

#[test]
fn table_kinds() {
    assert_eq!(
        one("[tables.t]\ncolumn = \"a\"\n"),
        "sharding-rules/x.toml: tables.t.kind: missing; expected sharded, broadcast or single"
    );
    assert_eq!(
        one("[tables.t]\nkind = \"shard\"\n"),
        "sharding-rules/x.toml: tables.t.kind: unknown kind 'shard'; expected sharded, broadcast or single"
    );
    assert_eq!(
        problems("[tables.t]\nkind = \"single\"\ndata_source = \"ds_0\"\ncolumn = \"a\"\nalgorithm = \"mod\"\n"),
        [
            "sharding-rules/x.toml: tables.t.column: not used by kind 'single'",
            "sharding-rules/x.toml: tables.t.algorithm: not used by kind 'single'",
        ]
    );
    assert_eq!(
        problems("[tables.t]\nkind = \"sharded\"\n"),
        [
            "sharding-rules/x.toml: tables.t.column: missing; name the sharding column",
            "sharding-rules/x.toml: tables.t.algorithm: missing; expected mod, hash, range, consistent_hash or uid_slice",
            "sharding-rules/x.toml: tables.t.nodes: missing; e.g. nodes = \"ds_{0..1}.table_{0..3}\"",
        ]
    );
    assert_eq!(
        one("[tables.payment]\nkind = \"single\"\ndata_source = \"ds_0\"\n[tables.PAYMENT]\nkind = \"single\"\ndata_source = \"ds_1\"\n"),
        "sharding-rules/x.toml: tables.payment: 'payment' and 'PAYMENT' differ only in case; table names are matched case-insensitively"
    );
}

#[test]
fn physical_tables_are_not_shared() {
    let extra = format!(
        "{}{}",
        sharded("a", "algorithm = \"mod\"\nnodes = \"ds_{0..1}.t_{0..1}\""),
        sharded("b", "algorithm = \"mod\"\nnodes = \"ds_1.t_{1..2}\"")
    );
    assert_eq!(
        one(&extra),
        "sharding-rules/x.toml: tables.b.nodes: physical table ds_1.t_1 is also used by table 'a'"
    );
}

fn uid_sliced(name: &str, nodes: &str, slices: &str) -> String {
    sharded(
        name,
        &format!("algorithm = \"uid_slice\"\nnodes = \"{nodes}\"\nslices = {{ {slices} }}"),
    )
}

const HALVES: &str = r#""00-49" = "ds_0", "50-99" = "ds_1""#;

#[test]
fn binding_group_mismatches() {
    let group =
        "[[binding_groups]]\ntables = [\"customer\", \"account\", \"payment\", \"ledger\"]\n";
    let extra = format!(
        "{}{}{}{}{group}",
        uid_sliced("customer", "ds_{0..1}", HALVES),
        uid_sliced(
            "account",
            "ds_{0..1}",
            r#""00-59" = "ds_0", "60-99" = "ds_1""#
        ),
        uid_sliced("payment", "ds_{1,0}", HALVES),
        sharded("ledger", "algorithm = \"hash\"\nnodes = \"ds_{0..2}\""),
    );
    assert_eq!(
        problems(&extra),
        [
            "sharding-rules/x.toml: binding_groups[0]: slice 50 goes to node 0 (ds_0.account) in 'account' but to node 1 (ds_1.customer) in 'customer'",
            "sharding-rules/x.toml: binding_groups[0]: node 0 of 'payment' is on data source 'ds_1' but node 0 of 'customer' is on 'ds_0'",
            "sharding-rules/x.toml: binding_groups[0]: slice 00 goes to node 1 (ds_0.payment) in 'payment' but to node 0 (ds_0.customer) in 'customer'",
            "sharding-rules/x.toml: binding_groups[0]: 'ledger' uses algorithm 'hash' but 'customer' uses 'uid_slice'",
        ]
    );
    let extra = format!(
        "{}{}[[binding_groups]]\ntables = [\"a\", \"b\"]\n",
        sharded("a", "algorithm = \"hash\"\nnodes = \"ds_{0..1}\""),
        sharded(
            "b",
            "algorithm = \"hash\"\ncolumn_type = \"string\"\nnodes = \"ds_{0..2}\""
        ),
    );
    assert_eq!(
        problems(&extra),
        [
            "sharding-rules/x.toml: binding_groups[0]: 'b' has column_type 'string' but 'a' has 'int'",
            "sharding-rules/x.toml: binding_groups[0]: 'b' has 3 nodes but 'a' has 2",
        ]
    );
    let extra = format!(
        "{}{}[[binding_groups]]\ntables = [\"a\", \"b\"]\n",
        sharded(
            "a",
            "algorithm = \"range\"\nnodes = \"ds_{0..1}\"\nboundaries = [10]"
        ),
        sharded(
            "b",
            "algorithm = \"range\"\nnodes = \"ds_{0..1}\"\nboundaries = [20]"
        ),
    );
    assert_eq!(
        one(&extra),
        "sharding-rules/x.toml: binding_groups[0]: 'b' has range boundaries [20] but 'a' has [10]"
    );
}

#[test]
fn binding_group_membership() {
    let extra = format!(
        "{}{}[tables.currency]\nkind = \"broadcast\"\n\
         [[binding_groups]]\ntables = [\"a\", \"b\", \"currency\", \"nope\", \"a\"]\n\
         [[binding_groups]]\ntables = [\"b\"]\n",
        uid_sliced("a", "ds_{0..1}", HALVES),
        uid_sliced("b", "ds_{0..1}", HALVES),
    );
    assert_eq!(
        problems(&extra),
        [
            "sharding-rules/x.toml: binding_groups[0].tables: table 'currency' is broadcast; only sharded tables can be bound",
            "sharding-rules/x.toml: binding_groups[0].tables: unknown table 'nope'",
            "sharding-rules/x.toml: binding_groups[0].tables: table 'a' listed twice",
            "sharding-rules/x.toml: binding_groups[1].tables: a binding group needs at least two tables",
            "sharding-rules/x.toml: binding_groups[1].tables: table 'b' is already in binding_groups[0]",
        ]
    );
}

#[test]
fn users_addresses_and_limits() {
    let text = r#"
[proxy]
listen = "127.0.0.1"
admin_listen = "[::1]:9307"
max_connections = 0
max_allowed_packet = 100
[[users]]
name = "app"
[[users]]
name = ""
[[users]]
name = "app"
[[users]]
name = "ops@%"
process = true
[schema]
name = "bank"
default_data_source = "ds_0"
[data_sources.ds_0]
address = "db.example.com:3306"
user = "root"
database = "bank"
[data_sources.ds_1]
address = "db:99999"
user = ""
database = "bank-1"
pool = { max = 2, min_idle = 3 }
[data_sources.ds_2]
address = "[::1]:3306"
user = "root"
database = "bank"
"#;
    let err = parse(text).expect_err("invalid");
    let lines: Vec<String> = err.to_string().lines().map(str::to_owned).collect();
    assert_eq!(
        lines,
        [
            "sharding-rules/x.toml: proxy.listen: bad address '127.0.0.1' (expected host:port)",
            "sharding-rules/x.toml: proxy.max_connections: must be at least 1",
            "sharding-rules/x.toml: proxy.max_allowed_packet: 100 is out of range (1024 to 1073741824 bytes)",
            "sharding-rules/x.toml: users[1].name: must not be empty",
            "sharding-rules/x.toml: users[2].name: duplicate user 'app' (also users[0])",
            "sharding-rules/x.toml: users[3].name: must not contain '@'",
            "sharding-rules/x.toml: data_sources.ds_1.address: bad address 'db:99999' (expected host:port)",
            "sharding-rules/x.toml: data_sources.ds_1.user: must not be empty",
            "sharding-rules/x.toml: data_sources.ds_1.database: bad database name 'bank-1'",
            "sharding-rules/x.toml: data_sources.ds_1.pool.min_idle: 3 is more than pool.max (2)",
        ]
    );
    // Each problem is also available structured.
    let p = &err.problems()[4];
    assert_eq!(
        (p.origin.as_path(), p.location.as_str(), p.message.as_str()),
        (
            Path::new(FILE),
            "users[2].name",
            "duplicate user 'app' (also users[0])"
        )
    );
}

#[test]
fn empty_sections() {
    assert_eq!(
        parse("[schema]\nname = \"bank\"\ndefault_data_source = \"ds_0\"\n")
            .expect_err("invalid")
            .to_string(),
        "sharding-rules/x.toml: users: no users; add at least one [[users]] entry\n\
         sharding-rules/x.toml: data_sources: no data sources; add a [data_sources.<name>] table\n\
         sharding-rules/x.toml: schema.default_data_source: unknown data source 'ds_0'"
    );
}

#[test]
fn all_problems_are_reported_together() {
    let extra = format!(
        "{}{}[tables.branch]\nkind = \"single\"\ndata_source = \"ds_9\"\n",
        sharded("payment", "algorithm = \"crc33\"\nnodes = \"ds_{0..1}\""),
        uid_sliced(
            "customer",
            "ds_{0..1}",
            r#""00-29" = "ds_0", "25-59" = "ds_1""#
        ),
    );
    let text = format!("{USERS}{USERS}{SOURCES}{extra}").replacen(
        "address = \"127.0.0.1:3306\"",
        "address = \"127.0.0.1:x\"",
        1,
    );
    let err = parse(&text).expect_err("invalid");
    assert_eq!(
        err.to_string(),
        "sharding-rules/x.toml: users[1].name: duplicate user 'dbmesh' (also users[0])\n\
         sharding-rules/x.toml: data_sources.ds_0.address: bad address '127.0.0.1:x' (expected host:port)\n\
         sharding-rules/x.toml: tables.branch.data_source: unknown data source 'ds_9'\n\
         sharding-rules/x.toml: tables.customer.slices: slices 25-29 overlap ('00-29' and '25-59')\n\
         sharding-rules/x.toml: tables.customer.slices: slices 60-99 not mapped\n\
         sharding-rules/x.toml: tables.payment.algorithm: unknown algorithm 'crc33'; expected mod, hash, range, consistent_hash or uid_slice"
    );
    assert_eq!(err.problems().len(), 6);
}

#[test]
fn unknown_fields_are_errors() {
    let text = format!("{USERS}{SOURCES}").replace(
        "user = \"root\"\ndatabase = \"bank_1\"",
        "user = \"root\"\ndatabse = \"bank_1\"",
    );
    assert_eq!(
        parse(&text).expect_err("invalid").to_string(),
        "sharding-rules/x.toml: line 15, column 1: unknown field `databse`, expected one of \
         `address`, `user`, `password`, `database`, `pool`, `tls`, `tls_ca`, `replicas`"
    );
    let text = format!("{USERS}{SOURCES}[tables.t]\nkind = \"single\"\ndata_source = \"ds_0\"\nshard_key = \"uid\"\n");
    assert_eq!(
        parse(&text).expect_err("invalid").to_string(),
        "sharding-rules/x.toml: line 23, column 1: unknown field `shard_key`, expected one of \
         `kind`, `column`, `column_type`, `algorithm`, `nodes`, `boundaries`, `virtual_nodes`, \
         `slices`, `data_source`, `data_sources`"
    );
    let text = format!("[proxy]\nlisten_addr = \"x\"\n{USERS}{SOURCES}");
    let msg = parse(&text).expect_err("invalid").to_string();
    assert!(
        msg.starts_with("sharding-rules/x.toml: line 2, column 1: unknown field `listen_addr`"),
        "{msg}"
    );
    let text = format!("{USERS}auth_plugin = \"sha256_password\"\n{SOURCES}");
    let msg = parse(&text).expect_err("invalid").to_string();
    assert!(
        msg.starts_with(
            "sharding-rules/x.toml: line 4, column 15: unknown variant `sha256_password`"
        ),
        "{msg}"
    );
}

#[test]
fn syntax_errors_have_line_and_column() {
    let err = parse("[[users]]\nname = \"a\"\n[schema\n").expect_err("invalid");
    assert_eq!(err.problems().len(), 1);
    let msg = err.to_string();
    assert!(
        msg.starts_with("sharding-rules/x.toml: line 3, column 8: "),
        "{msg}"
    );
    assert_eq!(msg.lines().count(), 1, "{msg}");
}

#[test]
fn unreadable_file() {
    let err = rules::load_file(Path::new("/nonexistent/dbmesh.toml")).expect_err("missing");
    assert!(
        err.to_string()
            .starts_with("/nonexistent/dbmesh.toml: cannot read the rule file: "),
        "{err}"
    );
}

#[test]
fn tls_paths_are_resolved_against_the_rule_file() {
    let text =
        format!("[proxy.tls]\ncert = \"certs/a.pem\"\nkey = \"/etc/k.pem\"\n{USERS}{SOURCES}");
    let r = parse_str(&text, Path::new("/etc/dbmesh/rules.toml")).expect("valid");
    let tls = r.proxy.tls.expect("tls");
    assert_eq!(tls.cert, Path::new("/etc/dbmesh/certs/a.pem"));
    assert_eq!(tls.key, Path::new("/etc/k.pem"));
    assert!(!tls.require);
    let r = parse_str(&text, Path::new("rules.toml")).expect("valid");
    let cert = r.proxy.tls.expect("tls").cert;
    assert!(
        cert.is_absolute() && cert.ends_with("certs/a.pem"),
        "{}",
        cert.display()
    );
}

#[test]
fn lookups_are_case_insensitive() {
    let extra = uid_sliced("payment", "ds_{0..1}", HALVES);
    let r = parse(&format!("{USERS}{SOURCES}{extra}")).expect("valid");
    assert!(matches!(r.table_rule("PAYMENT"), TableRoute::Sharded(t) if t.name() == "payment"));
    assert_eq!(r.logical_name_of("ds_1", "payment"), Some("payment"));
    assert_eq!(r.logical_name_of("ds_2", "payment"), None);
}

#[test]
fn replicas_and_replication_settings() {
    let replicas = r#"
[replication]
health_check_interval_ms = 0
read_your_writes = "gtid"
[[data_sources.ds_0.replicas]]
address = "127.0.0.1:3306"
[[data_sources.ds_0.replicas]]
address = "127.0.0.1:3307"
weight = 0
[[data_sources.ds_0.replicas]]
address = "127.0.0.1:3307"
[[data_sources.ds_0.replicas]]
address = "replica"
"#;
    assert_eq!(
        problems(replicas),
        [
            "sharding-rules/x.toml: data_sources.ds_0.replicas[0].address: same address as the data source's primary",
            "sharding-rules/x.toml: data_sources.ds_0.replicas[2].address: '127.0.0.1:3307' is listed twice",
            "sharding-rules/x.toml: data_sources.ds_0.replicas[3].address: bad address 'replica' (expected host:port)",
            "sharding-rules/x.toml: replication.health_check_interval_ms: must be at least 1",
        ]
    );
    let valid = parse(&format!(
        "{USERS}{SOURCES}[[data_sources.ds_1.replicas]]\naddress = \"10.0.0.2:3306\"\n"
    ))
    .expect("valid");
    let ds = &valid.data_sources["ds_1"];
    assert_eq!(
        (ds.replicas[0].address.as_str(), ds.replicas[0].weight),
        ("10.0.0.2:3306", 1)
    );
    assert_eq!(valid.replication, rules::ReplicationConfig::default());
    let typo = parse(&format!(
        "{USERS}{SOURCES}[replication]\nread_your_write = \"gtid\"\n"
    ))
    .expect_err("unknown field");
    assert!(typo.to_string().contains("read_your_write"), "{typo}");
    let bad_mode = parse(&format!(
        "{USERS}{SOURCES}[replication]\nread_your_writes = \"eventually\"\n"
    ))
    .expect_err("unknown mode");
    assert!(bad_mode.to_string().contains("eventually"), "{bad_mode}");
}

#[test]
fn backend_tls_and_timeouts() {
    let extra = r#"
[proxy]
max_authenticating = 0
login_timeout_ms = 0
net_write_timeout_ms = 0
[data_sources.ds_3]
address = "127.0.0.1:3306"
user = "root"
database = "bank_3"
tls = "verify_identity"
pool = { read_timeout_ms = 0 }
[data_sources.ds_4]
address = "127.0.0.1:3306"
user = "root"
database = "bank_4"
tls = "required"
tls_ca = "ca.pem"
"#;
    assert_eq!(
        problems(extra),
        [
            "sharding-rules/x.toml: proxy.max_authenticating: must be at least 1",
            "sharding-rules/x.toml: proxy.login_timeout_ms: must be at least 1",
            "sharding-rules/x.toml: proxy.net_write_timeout_ms: must be at least 1",
            "sharding-rules/x.toml: data_sources.ds_3.pool.read_timeout_ms: must be at least 1",
            "sharding-rules/x.toml: data_sources.ds_3.tls_ca: tls = \"verify_identity\" needs the CA file the server's certificate is checked against",
            "sharding-rules/x.toml: data_sources.ds_4.tls_ca: is only used with tls = \"verify_identity\" (the other modes do not check certificates)",
        ]
    );
    let unknown = parse(&format!(
        "{USERS}{SOURCES}[data_sources.ds_3]\naddress = \"h:1\"\nuser = \"r\"\ndatabase = \"x\"\ntls = \"sometimes\"\n"
    ))
    .expect_err("unknown mode");
    assert!(
        unknown.to_string().contains("unknown variant `sometimes`"),
        "{unknown}"
    );
}

#[test]
fn backend_tls_defaults_to_preferred_and_the_ca_path_is_resolved() {
    let r = parse(&format!("{USERS}{SOURCES}")).expect("valid");
    let ds = &r.data_sources["ds_0"];
    assert_eq!(ds.tls, rules::BackendTls::Preferred);
    assert_eq!(ds.pool.read_timeout_ms, 30_000);
    assert_eq!(ds.pool.statement_timeout_ms, 0);
    let r = parse(&format!(
        "{USERS}{SOURCES}[data_sources.ds_3]\naddress = \"h:1\"\nuser = \"r\"\ndatabase = \"x\"\ntls = \"verify_identity\"\ntls_ca = \"certs/ca.pem\"\n"
    ))
    .expect("valid");
    let ca = r.data_sources["ds_3"].tls_ca.as_ref().expect("tls_ca");
    assert!(
        ca.is_absolute() && ca.ends_with("sharding-rules/certs/ca.pem"),
        "{ca:?}"
    );
}
