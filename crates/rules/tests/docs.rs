//! `docs/configuration.md` must document every field the parser accepts.
//!
//! The list of fields comes from the parser itself: an unknown field in each
//! section makes serde name every field it expects, so a field added to the
//! model without documentation fails here.

use std::path::Path;

const MINIMAL: &str = r#"
[[users]]
name = "u"
[schema]
name = "s"
default_data_source = "d"
[data_sources.d]
address = "h:1"
user = "r"
database = "x"
"#;

/// The fields serde expects where `probe` is inserted.
fn expected_fields(text: &str) -> Vec<String> {
    let err = rules::parse_str(text, Path::new("probe.toml")).expect_err("unknown field");
    let msg = err.to_string();
    let list = msg
        .split_once("expected one of ")
        .or_else(|| msg.split_once("expected "))
        .map(|(_, l)| l.to_owned())
        .unwrap_or_else(|| panic!("no field list in: {msg}"));
    list.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_field_is_documented() {
    let docs_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/configuration.md");
    let docs = std::fs::read_to_string(&docs_path).expect("docs/configuration.md exists");
    let probes = [
        format!("probe = 1\n{MINIMAL}"),
        format!("[proxy]\nprobe = 1\n{MINIMAL}"),
        format!("[proxy.tls]\ncert = \"c\"\nkey = \"k\"\nprobe = 1\n{MINIMAL}"),
        format!("{MINIMAL}[data_sources.e]\naddress = \"h:1\"\nuser = \"r\"\ndatabase = \"x\"\nprobe = 1\n"),
        format!("{MINIMAL}[data_sources.d.pool]\nprobe = 1\n"),
        format!("{MINIMAL}[[data_sources.d.replicas]]\naddress = \"h:2\"\nprobe = 1\n"),
        format!("[replication]\nprobe = 1\n{MINIMAL}"),
        format!("{MINIMAL}[tables.t]\nprobe = 1\n"),
        format!("{MINIMAL}[[binding_groups]]\ntables = []\nprobe = 1\n"),
        format!("{MINIMAL}[sequences.s]\nprobe = 1\n"),
        format!("[[users]]\nname = \"v\"\nprobe = 1\n{MINIMAL}"),
        MINIMAL.replace("default_data_source = \"d\"", "default_data_source = \"d\"\nprobe = 1"),
    ];
    let mut missing = Vec::new();
    let mut count = 0;
    for probe in &probes {
        for field in expected_fields(probe) {
            count += 1;
            // As a field (`max`, `pool.max`) or a section header ([proxy], [[users]], [proxy.tls]).
            let forms = [
                format!("`{field}`"),
                format!("`pool.{field}`"),
                format!("`{field}."),
                format!("[{field}]"),
                format!("[[{field}]]"),
                format!(".{field}]"),
            ];
            if !forms.iter().any(|f| docs.contains(f.as_str())) {
                missing.push(field);
            }
        }
    }
    assert!(count > 30, "only {count} fields found; probes broken?");
    assert!(missing.is_empty(), "undocumented fields: {missing:?}");
    for value in [
        "mysql_native_password",
        "caching_sha2_password",
        "sharded",
        "broadcast",
        "single",
        "segment",
        "snowflake",
        "\"gtid\"",
        "\"window\"",
    ] {
        assert!(docs.contains(value), "{value} undocumented");
    }
    for algorithm in ["mod", "hash", "range", "consistent_hash", "uid_slice"] {
        assert!(
            docs.contains(&format!("| `{algorithm}` |")),
            "algorithm {algorithm} undocumented"
        );
    }
}
