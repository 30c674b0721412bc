//! The data mover of online UID-slice rebalancing (issue 18), as `dbmesh rebalance` runs it.
//! No proxy or session code: it reads the rules and the meta data source, and talks to the
//! source and destination servers directly.
//!
//! - [`plan`]: [`MovePlan`], which physical tables' rows of which slices go where (pure);
//! - [`predicate`]: the SQL condition selecting a slice's rows, equal to the algorithm's;
//! - [`copy`]: consistent snapshots of the sources and the chunked, throttled copy;
//! - [`catch_up`]: a binlog follower per source, routed by the row's slice;
//! - [`verify`]: the chunked checksum diff of source and destination;
//! - [`mover`]: [`Mover`], this process driving a move (its lease, copy, catch-up loop);
//! - [`cutover`]: switching the slices' owner on every proxy (fence, map, release);
//! - [`progress`]: the progress line.
//!
//! The move's state lives in the meta data source ([`meta::moves`]): phase, per source the
//! snapshot and processed GTID positions, per table the copy cursor, the driver's lease, so
//! a killed rebalancer resumes where it was.

pub mod catch_up;
pub mod copy;
pub mod cutover;
mod error;
mod metrics;
pub mod mover;
pub mod plan;
pub mod predicate;
pub mod progress;
mod rows;
mod throttle;
pub mod verify;

pub use catch_up::{start_followers, SourceFollower};
pub use copy::{CopyProgress, CopySettings};
pub use error::RebalanceError;
pub use metrics::RebalanceMetrics;
pub use mover::{find_move, plan_of, CatchUpEnd, MoveRequest, MoveSettings, Mover};
pub use plan::{MovePlan, PhysicalTable, SourcePart, TableMove};
pub use throttle::ThrottleSettings;
pub use verify::{verify, VerifyReport, VerifySettings};
