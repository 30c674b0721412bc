//! Distributed transactions for dbmesh: a transaction that wrote on several data sources
//! commits on all of them or on none, even when a proxy dies in the middle of the commit.
//!
//! - [`Coordinator`]: one per proxy. It holds the proxy's lease in the meta data source and
//!   begins [`Transaction`]s, which commit by two-phase commit over MySQL/MariaDB XA: every
//!   participant prepared in parallel, the decision written to the meta data source in one
//!   round trip, then every participant committed in parallel. A transaction on one data
//!   source commits in one phase, without the log.
//! - The decision log (module `log`, in the meta data source, never on the proxy's disk):
//!   commit decisions and proxy leases, so any proxy can finish another's transactions.
//! - [`Recoverer`]: finds prepared dbmesh branches (`XA RECOVER`) whose coordinator is gone
//!   and commits or rolls them back by the logged decision.
//! - [`XaMetrics`]: in-doubt branches, the oldest one's age, recovered branches.
//!
//! Xids ([`Xid`], [`Gtrid`]) carry the global transaction id and the owning proxy, so each
//! prepared branch leads to its decision. Errors ([`XaError`]) carry the MySQL code and
//! SQLSTATE a client gets. The protocol, the recovery rules and the failure table are in
//! `docs/transactions.md`.

mod coordinator;
mod error;
mod failpoint;
mod log;
mod metrics;
mod recovery;
mod xid;

use std::time::Duration;

use backend::ConnectOptions;

pub use coordinator::{
    BranchStart, Committed, Coordinator, CoordinatorOptions, Participant, Phase, Transaction,
};
pub use error::XaError;
pub use failpoint::Failpoint;
#[cfg(feature = "failpoints")]
pub use failpoint::{FailAction, Failpoints, ENV_FAILPOINTS};
pub use log::Outcome;
pub use metrics::XaMetrics;
pub use recovery::{Recoverer, RecoveryReport};
pub use xid::{Gtrid, Owner, Xid, FORMAT_ID, MAX_OWNER_LEN};

/// How the meta data source of a rule file is reached, if `proxy.meta_data_source` is set.
pub fn meta_options(rules: &rules::Rules, connect_timeout: Duration) -> Option<ConnectOptions> {
    let name = rules.proxy.meta_data_source.as_deref()?;
    data_source_options(rules, connect_timeout)
        .into_iter()
        .find(|o| o.source_name == name)
}

/// How every data source's primary of a rule file is reached: the servers recovery scans.
pub fn data_source_options(rules: &rules::Rules, connect_timeout: Duration) -> Vec<ConnectOptions> {
    rules
        .data_sources
        .iter()
        .map(|(name, ds)| ConnectOptions {
            database: Some(ds.database.clone()),
            connect_timeout,
            handshake_timeout: connect_timeout,
            ..ConnectOptions::for_data_source(name, ds)
        })
        .collect()
}
