//! Failpoints: named steps of the commit and recovery protocols where a crash test can make
//! the process stop, to check that recovery finishes what was left.
//!
//! The steps are always named ([`Failpoint`]); arming them exists only in builds with the
//! `failpoints` feature, so a release build carries no check at all. A [`Failpoints`] registry
//! belongs to one coordinator or recoverer (tests run many in one process); each point is
//! armed with a [`FailAction`]: `Error` makes the protocol return [`crate::XaError::Failpoint`]
//! at once, doing nothing more (the caller then drops its connections, like a crash), and
//! `Abort` ends the process (`std::process::abort`, as `kill -9` would). A process picks up
//! `DBMESH_XA_FAILPOINTS=after_decision=abort,recovery_decided=error` with
//! [`Failpoints::from_env`].

/// A step of the protocol where a failpoint can fire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Failpoint {
    /// The first participant is prepared; the others got nothing (still active).
    PrepareSome,
    /// Every participant is prepared; no decision is written.
    Prepared,
    /// The commit decision is durable; no branch is committed.
    Decided,
    /// The first participant is committed; the others are still prepared.
    CommitSome,
    /// Every branch is committed; the decision row is not cleaned up.
    Committed,
    /// Recovery fixed a transaction's outcome in the log; no branch is resolved.
    RecoveryDecided,
    /// Recovery resolved one branch of a transaction; the others are not.
    RecoveryResolvedOne,
}

impl Failpoint {
    /// Every failpoint, in protocol order.
    pub const ALL: [Failpoint; 7] = [
        Failpoint::PrepareSome,
        Failpoint::Prepared,
        Failpoint::Decided,
        Failpoint::CommitSome,
        Failpoint::Committed,
        Failpoint::RecoveryDecided,
        Failpoint::RecoveryResolvedOne,
    ];

    /// The name used in `DBMESH_XA_FAILPOINTS`.
    pub fn name(self) -> &'static str {
        match self {
            Failpoint::PrepareSome => "prepare_some",
            Failpoint::Prepared => "prepared",
            Failpoint::Decided => "decided",
            Failpoint::CommitSome => "commit_some",
            Failpoint::Committed => "committed",
            Failpoint::RecoveryDecided => "recovery_decided",
            Failpoint::RecoveryResolvedOne => "recovery_resolved_one",
        }
    }
}

#[cfg(feature = "failpoints")]
pub use armed::{FailAction, Failpoints, ENV_FAILPOINTS};

#[cfg(feature = "failpoints")]
mod armed {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex, PoisonError};

    use super::Failpoint;
    use crate::XaError;

    /// The environment variable [`Failpoints::from_env`] reads.
    pub const ENV_FAILPOINTS: &str = "DBMESH_XA_FAILPOINTS";

    /// What an armed failpoint does.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum FailAction {
        /// The protocol returns [`XaError::Failpoint`] and does nothing more.
        Error,
        /// The process aborts.
        Abort,
    }

    /// The armed failpoints of one coordinator or recoverer; clones share them.
    #[derive(Debug, Clone, Default)]
    pub struct Failpoints {
        armed: Arc<Mutex<HashMap<Failpoint, FailAction>>>,
    }

    impl Failpoints {
        /// The failpoints named in `DBMESH_XA_FAILPOINTS` (`name=error|abort`, comma
        /// separated); unknown names are an error so a typo does not silently test nothing.
        pub fn from_env() -> Result<Failpoints, String> {
            let points = Failpoints::default();
            let Ok(spec) = std::env::var(ENV_FAILPOINTS) else {
                return Ok(points);
            };
            for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                let (name, action) = item.split_once('=').unwrap_or((item, "abort"));
                let point = Failpoint::ALL
                    .into_iter()
                    .find(|p| p.name() == name.trim())
                    .ok_or_else(|| format!("{ENV_FAILPOINTS}: unknown failpoint '{name}'"))?;
                let action = match action.trim() {
                    "error" => FailAction::Error,
                    "abort" => FailAction::Abort,
                    other => {
                        return Err(format!("{ENV_FAILPOINTS}: '{other}' is not error or abort"))
                    }
                };
                points.arm(point, action);
            }
            Ok(points)
        }

        pub fn arm(&self, point: Failpoint, action: FailAction) {
            self.lock().insert(point, action);
        }

        pub fn disarm(&self, point: Failpoint) {
            self.lock().remove(&point);
        }

        pub fn is_armed(&self, point: Failpoint) -> bool {
            self.lock().contains_key(&point)
        }

        /// Fires `point` if it is armed.
        pub fn hit(&self, point: Failpoint) -> Result<(), XaError> {
            match self.lock().get(&point) {
                None => Ok(()),
                Some(FailAction::Error) => {
                    tracing::warn!(failpoint = point.name(), "failpoint returns an error");
                    Err(XaError::Failpoint(point))
                }
                Some(FailAction::Abort) => {
                    tracing::warn!(failpoint = point.name(), "failpoint aborts the process");
                    std::process::abort()
                }
            }
        }

        fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Failpoint, FailAction>> {
            self.armed.lock().unwrap_or_else(PoisonError::into_inner)
        }
    }
}
