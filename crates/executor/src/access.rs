//! The read/write split: which statements may read from a replica.
//!
//! Only a plain SELECT may, and only when nothing about it needs the primary: a locking read
//! (`FOR UPDATE`, `LOCK IN SHARE MODE`, `FOR SHARE`), a function with side effects or with
//! per-connection state (named locks, `LAST_INSERT_ID()`, sequences, `FOUND_ROWS()`), system
//! variables whose value differs on a replica (`@@read_only`, `@@server_id`, GTID positions),
//! user variables, `SELECT … INTO`, or the hint `/* dbmesh:primary */`. The session adds what the text cannot show: an
//! open transaction, autocommit off, or pinned connections keep every statement on the primary.

use router::StatementKind;

use crate::pin::Item;

/// How a statement may use a data source's servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// May change data: the primary, and the session's later reads must see it.
    Write,
    /// Reads, on the primary.
    PrimaryRead,
    /// Reads that a replica may serve.
    ReplicaRead,
}

/// Names whose call needs the primary's connection.
const PRIMARY_FUNCTIONS: [&str; 15] = [
    "GET_LOCK",
    "RELEASE_LOCK",
    "RELEASE_ALL_LOCKS",
    "IS_FREE_LOCK",
    "IS_USED_LOCK",
    "LAST_INSERT_ID",
    "FOUND_ROWS",
    "ROW_COUNT",
    "NEXTVAL",
    "LASTVAL",
    "SETVAL",
    "MASTER_POS_WAIT",
    "MASTER_GTID_WAIT",
    "LOAD_FILE",
    "CONNECTION_ID",
];

/// System variables whose value differs between a primary and its replicas, or belongs to the
/// connection that ran the session's last statements. Others (`@@max_allowed_packet`,
/// `@@version_comment`, session settings the proxy replays) read the same everywhere, so
/// drivers' connect-time queries keep working while a primary is down.
const PRIMARY_VARIABLES: [&str; 14] = [
    "read_only",
    "super_read_only",
    "innodb_read_only",
    "server_id",
    "server_uuid",
    "hostname",
    "port",
    "identity",
    "last_insert_id",
    "insert_id",
    "warning_count",
    "error_count",
    "log_bin",
    "rpl_semi_sync_master_enabled",
];

/// The hint that sends one statement to the primary.
pub const PRIMARY_HINT: &str = "dbmesh:primary";

/// What `sql` (lexed into `items`), routed as `kind`, may use, before the session's own
/// state is considered.
pub fn classify(kind: &StatementKind, sql: &str, items: &[Item<'_>]) -> Access {
    match kind {
        StatementKind::Select if !needs_primary(sql, items) => Access::ReplicaRead,
        StatementKind::Select
        | StatementKind::Show
        | StatementKind::Explain
        | StatementKind::Session(_) => Access::PrimaryRead,
        _ => Access::Write,
    }
}

/// Whether a SELECT's text asks for the primary.
fn needs_primary(sql: &str, items: &[Item<'_>]) -> bool {
    if sql.contains(PRIMARY_HINT) {
        return true;
    }
    let word = |at: usize, w: &str| matches!(items.get(at), Some(Item::Word(x)) if x.eq_ignore_ascii_case(w));
    items.iter().enumerate().any(|(at, item)| match item {
        Item::UserVariable => true,
        Item::SystemVariable(name) => {
            let name = name.rsplit('.').next().unwrap_or(name);
            PRIMARY_VARIABLES
                .iter()
                .any(|v| name.eq_ignore_ascii_case(v))
                || name
                    .get(..5)
                    .is_some_and(|p| p.eq_ignore_ascii_case("gtid_"))
                || name.eq_ignore_ascii_case("last_gtid")
        }
        Item::Word(w) => {
            let call = items.get(at + 1) == Some(&Item::Punct(b'('));
            (call && PRIMARY_FUNCTIONS.iter().any(|f| w.eq_ignore_ascii_case(f)))
                || w.eq_ignore_ascii_case("INTO")
                || (w.eq_ignore_ascii_case("FOR")
                    && (word(at + 1, "UPDATE") || word(at + 1, "SHARE")))
                || (w.eq_ignore_ascii_case("LOCK") && word(at + 1, "IN"))
                || (w.eq_ignore_ascii_case("NEXT") && word(at + 1, "VALUE"))
                || (w.eq_ignore_ascii_case("PREVIOUS") && word(at + 1, "VALUE"))
        }
        _ => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pin::items;

    fn classify(kind: &StatementKind, sql: &str) -> Access {
        super::classify(kind, sql, &items(sql))
    }

    fn select(sql: &str) -> Access {
        classify(&StatementKind::Select, sql)
    }

    #[test]
    fn plain_selects_may_read_a_replica() {
        for sql in [
            "SELECT * FROM payment WHERE uid = 7",
            "SELECT c FROM sbtest1 WHERE id BETWEEN 1 AND 100 ORDER BY c",
            "SELECT COUNT(*) FROM t WHERE note = 'for update'",
            "SELECT `for`, `update` FROM t",
            "/* dbmesh:replica-ok */ SELECT 1",
            "SELECT @@max_allowed_packet, @@session.wait_timeout, @@version_comment",
        ] {
            assert_eq!(select(sql), Access::ReplicaRead, "{sql}");
        }
    }

    #[test]
    fn locking_side_effects_variables_and_hints_need_the_primary() {
        for sql in [
            "SELECT * FROM t WHERE id = 1 FOR UPDATE",
            "SELECT * FROM t WHERE id = 1 for share",
            "SELECT * FROM t WHERE id = 1 LOCK IN SHARE MODE",
            "SELECT GET_LOCK('a', 1)",
            "SELECT release_lock('a')",
            "SELECT LAST_INSERT_ID()",
            "SELECT FOUND_ROWS()",
            "SELECT NEXT VALUE FOR s",
            "SELECT @@read_only",
            "SELECT @@GLOBAL.server_id",
            "SELECT @@gtid_binlog_pos",
            "SELECT @@last_insert_id",
            "SELECT @x",
            "SELECT id INTO @x FROM t LIMIT 1",
            "SELECT * FROM t INTO OUTFILE '/tmp/x'",
            "/* dbmesh:primary */ SELECT * FROM t",
            "SELECT /*+ dbmesh:primary */ * FROM t",
        ] {
            assert_eq!(select(sql), Access::PrimaryRead, "{sql}");
        }
    }

    #[test]
    fn only_selects_are_reads() {
        assert_eq!(
            classify(&StatementKind::Update, "UPDATE t SET a = 1"),
            Access::Write
        );
        assert_eq!(
            classify(&StatementKind::Insert, "INSERT INTO t VALUES (1)"),
            Access::Write
        );
        assert_eq!(
            classify(&StatementKind::Show, "SHOW TABLES"),
            Access::PrimaryRead
        );
    }
}
