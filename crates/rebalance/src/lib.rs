//! The data mover of online UID-slice rebalancing (issue 18), as `dbmesh rebalance` runs it.
//! No proxy or session code: it reads the rules and the meta data source, and talks to the
//! source and destination servers directly.
//!
//! - [`plan`]: [`MovePlan`], which physical tables' rows of which slices go where (pure);
//! - [`predicate`]: the SQL condition selecting a slice's rows, equal to the algorithm's;
//! - the move's state lives in the meta data source ([`meta::moves`]): phase, per source the
//!   snapshot and processed GTID positions, per table the copy cursor, the driver's lease.

pub mod cutover;
mod error;
pub mod plan;
pub mod predicate;

pub use error::RebalanceError;
pub use plan::{MovePlan, PhysicalTable, SourcePart, TableMove};
