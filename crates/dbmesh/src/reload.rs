//! What a reload changed: every section of the rule file compared with the one in force,
//! split into what the new snapshot applies and what only a restart does (listeners, TLS,
//! worker threads, limits fixed at start, the sequences). A reload never hides the second
//! kind: `POST /reload` answers it and the log warns of it.

use std::collections::BTreeMap;
use std::fmt::Debug;

use rules::{ProxyConfig, Rules};

/// The differences between two rule files.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// In force from the next statement.
    pub applied: Vec<String>,
    /// Read only at start: the old value stays in force until a restart.
    pub needs_restart: Vec<String>,
}

/// What changed from `old` to `new`.
pub fn changes(old: &Rules, new: &Rules) -> Changes {
    let mut changes = Changes::default();
    proxy_changes(&old.proxy, &new.proxy, &mut changes);
    let users = |rules: &Rules| -> BTreeMap<String, rules::UserConfig> {
        rules
            .users
            .iter()
            .map(|u| (u.name.clone(), u.clone()))
            .collect()
    };
    keyed_changes("users", &users(old), &users(new), &mut changes.applied);
    keyed_changes(
        "data_sources",
        &old.data_sources,
        &new.data_sources,
        &mut changes.applied,
    );
    keyed_changes("tables", &old.tables, &new.tables, &mut changes.applied);
    // Sequences are built once at start; the proxy keeps generating ids from those.
    keyed_changes(
        "sequences",
        &old.sequences,
        &new.sequences,
        &mut changes.needs_restart,
    );
    if old.binding_groups != new.binding_groups {
        changes.applied.push("binding_groups changed".into());
    }
    scalar_change(
        "schema.name",
        &old.schema.name,
        &new.schema.name,
        &mut changes.applied,
    );
    scalar_change(
        "schema.default_data_source",
        &old.schema.default_data_source,
        &new.schema.default_data_source,
        &mut changes.applied,
    );
    if old.replication != new.replication {
        changes.applied.push("replication changed".into());
    }
    changes
}

/// `[proxy]`, field by field. Destructured whole, so a new field cannot be forgotten here.
fn proxy_changes(old: &ProxyConfig, new: &ProxyConfig, changes: &mut Changes) {
    let ProxyConfig {
        listen,
        admin_listen,
        admin_token,
        admin_status_public,
        max_connections,
        max_authenticating,
        login_timeout_ms,
        net_write_timeout_ms,
        max_allowed_packet,
        server_version,
        create_databases,
        idle_timeout_secs,
        worker_threads,
        tls,
        meta_data_source,
        merge_memory_limit,
        max_merge_offset,
        max_prepared_statements,
        max_statement_time_ms,
        slow_statement_ms,
        query_log_every,
        log_statement_text,
        number,
    } = new;
    let restart = &mut changes.needs_restart;
    scalar_change("proxy.listen", &old.listen, listen, restart);
    scalar_change(
        "proxy.admin_listen",
        &old.admin_listen,
        admin_listen,
        restart,
    );
    scalar_change(
        "proxy.max_connections",
        &old.max_connections,
        max_connections,
        restart,
    );
    scalar_change(
        "proxy.server_version",
        &old.server_version,
        server_version,
        restart,
    );
    scalar_change(
        "proxy.create_databases",
        &old.create_databases,
        create_databases,
        restart,
    );
    scalar_change(
        "proxy.worker_threads",
        &old.worker_threads,
        worker_threads,
        restart,
    );
    scalar_change(
        "proxy.meta_data_source",
        &old.meta_data_source,
        meta_data_source,
        restart,
    );
    scalar_change("proxy.number", &old.number, number, restart);
    if old.tls != *tls {
        restart.push("proxy.tls changed".into());
    }
    let applied = &mut changes.applied;
    if old.admin_token != *admin_token {
        // Never the token itself.
        applied.push("proxy.admin_token changed".into());
    }
    scalar_change(
        "proxy.admin_status_public",
        &old.admin_status_public,
        admin_status_public,
        applied,
    );
    scalar_change(
        "proxy.max_allowed_packet",
        &old.max_allowed_packet,
        max_allowed_packet,
        applied,
    );
    scalar_change(
        "proxy.idle_timeout_secs",
        &old.idle_timeout_secs,
        idle_timeout_secs,
        applied,
    );
    // Read when a client connects: in force for the clients that connect after the reload.
    scalar_change(
        "proxy.max_authenticating",
        &old.max_authenticating,
        max_authenticating,
        applied,
    );
    scalar_change(
        "proxy.login_timeout_ms",
        &old.login_timeout_ms,
        login_timeout_ms,
        applied,
    );
    scalar_change(
        "proxy.net_write_timeout_ms",
        &old.net_write_timeout_ms,
        net_write_timeout_ms,
        applied,
    );
    scalar_change(
        "proxy.merge_memory_limit",
        &old.merge_memory_limit,
        merge_memory_limit,
        applied,
    );
    scalar_change(
        "proxy.max_merge_offset",
        &old.max_merge_offset,
        max_merge_offset,
        applied,
    );
    scalar_change(
        "proxy.max_prepared_statements",
        &old.max_prepared_statements,
        max_prepared_statements,
        applied,
    );
    // Read per statement: in force for every session's next statement.
    scalar_change(
        "proxy.slow_statement_ms",
        &old.slow_statement_ms,
        slow_statement_ms,
        applied,
    );
    scalar_change(
        "proxy.query_log_every",
        &old.query_log_every,
        query_log_every,
        applied,
    );
    scalar_change(
        "proxy.log_statement_text",
        &old.log_statement_text,
        log_statement_text,
        applied,
    );
    // Read when a session starts: in force for the sessions that start after the reload.
    scalar_change(
        "proxy.max_statement_time_ms",
        &old.max_statement_time_ms,
        max_statement_time_ms,
        applied,
    );
}

/// `name: old → new` when the value changed.
fn scalar_change<T: PartialEq + Debug>(name: &str, old: &T, new: &T, out: &mut Vec<String>) {
    if old != new {
        out.push(format!("{name}: {old:?} -> {new:?}"));
    }
}

/// `section.key added / removed / changed` for every key that differs.
fn keyed_changes<V: PartialEq>(
    section: &str,
    old: &BTreeMap<String, V>,
    new: &BTreeMap<String, V>,
    out: &mut Vec<String>,
) {
    for (key, value) in new {
        match old.get(key) {
            None => out.push(format!("{section}.{key} added")),
            Some(before) if before != value => out.push(format!("{section}.{key} changed")),
            Some(_) => {}
        }
    }
    for key in old.keys().filter(|k| !new.contains_key(*k)) {
        out.push(format!("{section}.{key} removed"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(text: &str) -> Rules {
        rules::parse_str(text, std::path::Path::new("rules.toml")).expect("valid rules")
    }

    const BASE: &str = "[proxy]\nlisten = \"127.0.0.1:3307\"\n\
        [[users]]\nname = \"u\"\npassword = \"p\"\n\
        [schema]\nname = \"bank\"\ndefault_data_source = \"a\"\n\
        [data_sources.a]\naddress = \"127.0.0.1:3306\"\nuser = \"root\"\ndatabase = \"a\"\n";

    #[test]
    fn an_unchanged_file_changes_nothing() {
        assert_eq!(changes(&rules(BASE), &rules(BASE)), Changes::default());
    }

    #[test]
    fn listeners_need_a_restart_and_tables_apply() {
        let new = BASE
            .replace("127.0.0.1:3307", "127.0.0.1:3999")
            .replace("user = \"root\"", "user = \"app\"")
            + "[data_sources.b]\naddress = \"127.0.0.1:3306\"\nuser = \"root\"\ndatabase = \"b\"\n\
             [tables.t]\nkind = \"single\"\ndata_source = \"b\"\n\
             [proxy.tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\n";
        let new = new.replacen("[proxy]\n", "[proxy]\nidle_timeout_secs = 60\n", 1);
        let found = changes(&rules(BASE), &rules(&new));
        assert_eq!(
            found.needs_restart,
            vec![
                "proxy.listen: \"127.0.0.1:3307\" -> \"127.0.0.1:3999\"".to_string(),
                "proxy.tls changed".to_string(),
            ]
        );
        assert_eq!(
            found.applied,
            vec![
                "proxy.idle_timeout_secs: 28800 -> 60".to_string(),
                "data_sources.a changed".to_string(),
                "data_sources.b added".to_string(),
                "tables.t added".to_string(),
            ]
        );
    }
}
