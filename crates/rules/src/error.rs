//! The crate's two error types.
//!
//! [`ConfigError`] comes out of loading a rule file and carries every problem
//! found, each with the file and the place in it (a TOML path such as
//! `tables.payment.slices`, or `line 3, column 7` for syntax errors), so one
//! `dbmesh check` run shows everything to fix. [`RuleError`] comes out of
//! routing a value that the sharding rule cannot place; the router turns it
//! into a scatter or a client error, never a guess.

use std::fmt;
use std::path::{Path, PathBuf};

/// One problem in a rule file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The rule file (as given to [`crate::load_file`] / [`crate::parse_str`]).
    pub origin: PathBuf,
    /// Where in the file: a TOML path (`tables.payment.algorithm`), `line L, column C`, or empty.
    pub location: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.location.is_empty() {
            write!(f, "{}: {}", self.origin.display(), self.message)
        } else {
            write!(
                f,
                "{}: {}: {}",
                self.origin.display(),
                self.location,
                self.message
            )
        }
    }
}

/// Every problem found while loading a rule file; displays one problem per line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", Lines(.problems))]
pub struct ConfigError {
    problems: Vec<Problem>,
}

impl ConfigError {
    /// Wraps a non-empty list of problems.
    pub(crate) fn new(problems: Vec<Problem>) -> Self {
        Self { problems }
    }

    /// A single problem.
    pub(crate) fn one(origin: &Path, location: &str, message: impl Into<String>) -> Self {
        Self::new(vec![Problem {
            origin: origin.to_path_buf(),
            location: location.to_owned(),
            message: message.into(),
        }])
    }

    /// The problems, in the order they were found (file order where possible).
    pub fn problems(&self) -> &[Problem] {
        &self.problems
    }
}

struct Lines<'a>(&'a [Problem]);

impl fmt::Display for Lines<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

/// A sharding value that the table's rule cannot place on one shard.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    /// A string compared with an integer sharding column that is not an integer literal
    /// (MySQL would compare numerically, so `'7.0'` or `'7abc'` may match rows of any shard).
    #[error("value '{0}' is not an integer, but the sharding column is an integer")]
    NotAnInteger(String),
    /// An integer compared with a string sharding column (MySQL compares numerically,
    /// so `7` also matches `'07'` and `'7.0'`, which live on other shards).
    #[error("integer value {0} compared with a string sharding column; quote it to route by key")]
    IntegerForStringColumn(i128),
    /// `uid_slice` is defined for non-negative UIDs only.
    #[error("negative UID {0}: uid_slice needs a non-negative UID")]
    NegativeUid(i128),
    /// A string UID whose last two characters are not decimal digits.
    #[error("UID '{0}' does not end in two decimal digits")]
    NoSliceDigits(String),
}
