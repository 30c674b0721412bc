//! Statements held back while slices change owner (the cutover of online rebalancing): the
//! [`FenceCheck`] a session gives the executor for a command that began while a fence was in
//! force. A plan whose targets reach a fenced node (the physical table that owns fenced
//! slices, on its data source), unless it only reads from a replica's point of view, is not
//! run: the executor answers [`crate::Flow::Fenced`] before sending anything, and the session
//! runs the command again once the fence is released or the slice map changed. So is a plan
//! routed by a snapshot older than the slice-map version the check was taken under.
//!
//! A fenced node holds the staying slices of its table as well: their statements wait too
//! (the plan names the physical table, not the slices its rows are in).

use std::sync::Arc;

use crate::Access;

/// One physical table of a fence: its data source and name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FencedNode {
    pub data_source: String,
    pub table: String,
}

/// What the statements of one command must respect.
#[derive(Debug, Clone, Default)]
pub struct FenceCheck {
    /// The slice-map version the proxy served when the check was taken.
    pub map_version: u64,
    /// The nodes fenced in that version (none when the command need only respect the version).
    pub nodes: Arc<[FencedNode]>,
}

impl FenceCheck {
    /// Whether a statement of `access` routed by slice-map version `routed_by` to `targets`
    /// (`(data source, SQL)`) must wait.
    pub fn holds<'a>(
        &self,
        routed_by: u64,
        access: Access,
        targets: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> bool {
        if routed_by < self.map_version {
            return true;
        }
        if access == Access::ReplicaRead || self.nodes.is_empty() || routed_by > self.map_version {
            return false;
        }
        targets.into_iter().any(|(data_source, sql)| {
            self.nodes
                .iter()
                .any(|n| n.data_source == data_source && sql::mentions(sql, &n.table))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check() -> FenceCheck {
        FenceCheck {
            map_version: 3,
            nodes: vec![FencedNode {
                data_source: "ds_1".into(),
                table: "payment".into(),
            }]
            .into(),
        }
    }

    #[test]
    fn holds_writes_and_primary_reads_on_fenced_nodes_only() {
        let fenced = [("ds_1", "UPDATE payment SET x = 1 WHERE uid = 31")];
        let other_table = [("ds_1", "UPDATE branch SET x = 1")];
        let other_source = [("ds_0", "UPDATE payment SET x = 1 WHERE uid = 1")];
        assert!(check().holds(3, Access::Write, fenced));
        assert!(check().holds(3, Access::PrimaryRead, fenced));
        assert!(!check().holds(3, Access::ReplicaRead, fenced));
        assert!(!check().holds(3, Access::Write, other_table));
        assert!(!check().holds(3, Access::Write, other_source));
        // Routed by the next version: the fence is past.
        assert!(!check().holds(4, Access::Write, fenced));
    }

    #[test]
    fn holds_any_plan_of_an_older_map() {
        assert!(check().holds(2, Access::ReplicaRead, [("ds_0", "SELECT 1")]));
        let version_only = FenceCheck {
            map_version: 3,
            nodes: Vec::new().into(),
        };
        assert!(version_only.holds(2, Access::Write, []));
        assert!(!version_only.holds(3, Access::Write, [("ds_1", "UPDATE payment SET x = 1")]));
    }
}
