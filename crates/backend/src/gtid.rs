//! MariaDB global transaction ids (`domain-server-sequence`) and replication positions, as far
//! as read-your-writes needs them: has a replica applied a given transaction?

use std::fmt;

/// One MariaDB GTID, e.g. `0-1-42`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gtid {
    pub domain: u32,
    pub server: u32,
    pub sequence: u64,
}

impl Gtid {
    /// Parses `domain-server-sequence`; `None` for anything else (an empty `@@last_gtid`, a
    /// MySQL `uuid:n` GTID).
    pub fn parse(text: &str) -> Option<Gtid> {
        let mut parts = text.trim().splitn(3, '-');
        Some(Gtid {
            domain: parts.next()?.parse().ok()?,
            server: parts.next()?.parse().ok()?,
            sequence: parts.next()?.parse().ok()?,
        })
    }
}

impl fmt::Display for Gtid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}-{}", self.domain, self.server, self.sequence)
    }
}

/// A replication position: the last sequence number applied per replication domain (MariaDB's
/// `gtid_slave_pos`, e.g. `0-1-42,1-2-7`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Position {
    /// (domain, sequence), one entry per domain.
    applied: Vec<(u32, u64)>,
}

impl Position {
    /// Parses a comma-separated GTID list; entries that are not GTIDs are skipped.
    pub fn parse(text: &str) -> Position {
        let mut position = Position::default();
        for gtid in text.split(',').filter_map(Gtid::parse) {
            position.advance(&gtid);
        }
        position
    }

    /// Whether the transaction `gtid` is applied at this position. Within a domain, MariaDB
    /// applies transactions in sequence order.
    pub fn covers(&self, gtid: &Gtid) -> bool {
        self.applied
            .iter()
            .any(|&(domain, sequence)| domain == gtid.domain && sequence >= gtid.sequence)
    }

    /// Whether everything applied at `other` is applied here too.
    pub fn includes(&self, other: &Position) -> bool {
        other.applied.iter().all(|&(domain, sequence)| {
            self.covers(&Gtid {
                domain,
                server: 0,
                sequence,
            })
        })
    }

    /// Records that `gtid` (and so everything before it in its domain) is applied.
    pub fn advance(&mut self, gtid: &Gtid) {
        match self.applied.iter_mut().find(|(d, _)| *d == gtid.domain) {
            Some((_, sequence)) => *sequence = (*sequence).max(gtid.sequence),
            None => self.applied.push((gtid.domain, gtid.sequence)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_gtids_and_rejects_other_forms() {
        assert_eq!(
            Gtid::parse("0-1-42"),
            Some(Gtid {
                domain: 0,
                server: 1,
                sequence: 42
            })
        );
        assert_eq!(Gtid::parse(""), None);
        assert_eq!(Gtid::parse("3E11FA47-71CA-11E1-9E33-C80AA9429562:23"), None);
        assert_eq!(Gtid::parse("0-1-42").unwrap().to_string(), "0-1-42");
    }

    #[test]
    fn a_position_covers_what_its_domain_has_applied() {
        let position = Position::parse("0-1-42,1-2-7");
        let gtid = |s| Gtid::parse(s).unwrap();
        assert!(position.covers(&gtid("0-1-42")));
        assert!(position.covers(&gtid("0-3-40")));
        assert!(!position.covers(&gtid("0-1-43")));
        assert!(position.covers(&gtid("1-2-7")));
        assert!(!position.covers(&gtid("2-1-1")));
        let mut later = position.clone();
        later.advance(&gtid("0-1-50"));
        later.advance(&gtid("0-1-45"));
        assert!(later.covers(&gtid("0-1-50")));
        assert!(Position::parse("").applied.is_empty());
        assert!(position.includes(&Position::parse("0-1-40,1-2-7")));
        assert!(!position.includes(&Position::parse("0-1-40,1-2-8")));
        assert!(!position.includes(&Position::parse("0-1-40,2-2-1")));
        assert!(position.includes(&Position::default()));
    }
}
