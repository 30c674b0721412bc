//! Real MariaDB servers for dbmesh's tests.
//!
//! [`backends`]`(n)` gives a test `n` servers. By default each is a fresh `mariadbd` process
//! ([`MariaDb`]) in its own temp dir, on a free port of 127.0.0.1, where `root` logs in over
//! TCP with an empty password. The data dir is copied from a template that
//! `mariadb-install-db` builds once per machine (under the system temp dir, guarded by a lock
//! file so concurrent test processes build it once); a server starts in well under a second.
//! A server is stopped (SIGTERM, then SIGKILL) and its directory removed when its handle is
//! dropped, also when the test panics; a watchdog process does the same if the test process is
//! killed. [`MariaDb::kill`], [`MariaDb::stop`] and [`MariaDb::restart`] (same data dir and
//! port) let tests crash and revive backends, [`MariaDbBuilder::arg`] passes extra
//! `mariadbd` options (`--log-bin`, `--server-id=N`, `--gtid-domain-id=N`, `--read-only`) for
//! replication setups, and [`MariaDbBuilder::tls`] turns TLS on with given CA, certificate and
//! key files. [`ReplicaSet`] (module [`replication`]) starts a primary with GTID replicas,
//! already replicating, for tests of read/write splitting and replica failures.
//!
//! # Running against servers you already have
//!
//! | variable | meaning |
//! |---|---|
//! | `DBMESH_TEST_BACKENDS` | `host:port[,host:port...]`: [`backends`] returns handles to these servers, in this order, instead of starting processes |
//! | `DBMESH_TEST_BACKEND_USER` | user for them, default `root`; it needs all privileges (tests create and drop databases) |
//! | `DBMESH_TEST_BACKEND_PASSWORD` | its password, default empty |
//!
//! For example, against two MySQL 8 containers:
//!
//! ```sh
//! DBMESH_TEST_BACKENDS=127.0.0.1:3306,127.0.0.1:3316 scripts/test.sh
//! ```
//!
//! External servers are shared by every test that runs at the same time and outlive the run,
//! so tests name their databases with [`unique_name`]. They cannot be killed or restarted:
//! [`Backend::kill`], [`Backend::stop`] and [`Backend::restart`] return
//! [`FixtureError::Unsupported`], and [`backends`] returns [`FixtureError::NotEnoughBackends`]
//! when the list is too short; tests that need either print the reason and skip
//! ([`FixtureError::is_unsupported`], [`skip_reason`]).
//!
//! # Requirements
//!
//! `mariadbd` (Debian: `mariadb-server`, found in `PATH` or /usr/sbin), `mariadb-install-db`
//! and the `mariadb` client (`mariadb-client`; also used for external servers by
//! [`Backend::sql`]). The fixture is synchronous, so it can be used from plain and from async
//! tests alike.
//!
//! ```no_run
//! let mut shards = testkit::backends(2)?;
//! shards[0].sql("CREATE DATABASE app_0; CREATE TABLE app_0.t (id INT PRIMARY KEY)")?;
//! let rows = shards[0].sql("SELECT COUNT(*) FROM app_0.t")?;
//! assert_eq!(rows.trim(), "0");
//! if let Err(e) = shards[1].kill() {
//!     assert!(e.is_unsupported()); // external servers cannot be killed
//! }
//! # Ok::<(), testkit::FixtureError>(())
//! ```

mod backend;
mod error;
mod mariadb;
mod netns;
mod process;
pub mod replication;
mod template;
mod tools;

use std::sync::atomic::{AtomicU32, Ordering};

pub use backend::{
    backends, backends_with, external_backends_from_env, parse_backends, Backend, ENV_BACKENDS,
    ENV_PASSWORD, ENV_USER,
};
pub use error::FixtureError;
pub use mariadb::{MariaDb, MariaDbBuilder, HOST};
pub use netns::NetNs;
pub use process::pid_exists;
pub use replication::{ReplicaSet, APP_USER};

/// A database or table name no other test, test process or earlier run uses:
/// `<prefix>_<pid>_<counter>_<random>`. Keep `prefix` short (names are limited to 64 chars).
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    use std::hash::{BuildHasher, Hasher};
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    format!(
        "{prefix}_{}_{n}_{:04x}",
        std::process::id(),
        random & 0xffff
    )
}

/// If the test cannot run on these backends because it must kill, stop or restart them (they
/// are external), the reason to print before skipping.
pub fn skip_reason(backends: &[Backend]) -> Option<String> {
    backends.iter().find(|b| !b.is_managed()).map(|b| {
        format!(
            "skipped: needs servers started by the fixture, but {} comes from {ENV_BACKENDS}",
            b.address()
        )
    })
}
