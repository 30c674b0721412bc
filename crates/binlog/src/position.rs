//! Positions in a MariaDB binlog as GTID lists (`@@gtid_binlog_pos`, `0-1-42,1-2-7`): the
//! last transaction per replication domain. Transactions of one domain are binlogged in
//! sequence order, so "every domain reached" is "every transaction up to there".

use std::fmt;
use std::str::FromStr;

pub use backend::Gtid;

use crate::BinlogError;

/// A MariaDB GTID list, one GTID per domain, sorted by domain. Empty by default (before the
/// first transaction).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GtidPosition {
    gtids: Vec<Gtid>,
}

impl GtidPosition {
    /// Whether every domain of `other` is reached here (at the same or a later sequence).
    pub fn includes(&self, other: &GtidPosition) -> bool {
        other
            .gtids
            .iter()
            .all(|o| self.get(o.domain).is_some_and(|s| s.sequence >= o.sequence))
    }

    /// Records `gtid` as reached in its domain (a lower sequence than the domain's changes
    /// nothing).
    pub fn advance(&mut self, gtid: Gtid) {
        match self.gtids.binary_search_by_key(&gtid.domain, |g| g.domain) {
            Ok(at) if self.gtids[at].sequence <= gtid.sequence => self.gtids[at] = gtid,
            Ok(_) => {}
            Err(at) => self.gtids.insert(at, gtid),
        }
    }

    /// The GTID reached in `domain`, if any.
    pub fn get(&self, domain: u32) -> Option<&Gtid> {
        self.gtids
            .binary_search_by_key(&domain, |g| g.domain)
            .ok()
            .map(|at| &self.gtids[at])
    }

    /// Source transactions from here to `head`: the sum over `head`'s domains of the
    /// sequence numbers between them (how far a follower at this position is behind).
    pub fn transactions_until(&self, head: &GtidPosition) -> u64 {
        head.gtids
            .iter()
            .map(|h| {
                let done = self.get(h.domain).map_or(0, |g| g.sequence);
                h.sequence.saturating_sub(done)
            })
            .sum()
    }

    /// The GTIDs, one per domain, sorted by domain.
    pub fn gtids(&self) -> &[Gtid] {
        &self.gtids
    }

    pub fn is_empty(&self) -> bool {
        self.gtids.is_empty()
    }

    /// Lowers `domain` to `gtid` (or drops the domain, with `None`): a position to resume
    /// from that is behind this one.
    pub(crate) fn lower(&mut self, domain: u32, gtid: Option<Gtid>) {
        let found = self.gtids.binary_search_by_key(&domain, |g| g.domain);
        match (found, gtid) {
            (Ok(at), Some(g)) if g.sequence < self.gtids[at].sequence => self.gtids[at] = g,
            (Ok(at), None) => {
                self.gtids.remove(at);
            }
            _ => {}
        }
    }
}

impl FromStr for GtidPosition {
    type Err = BinlogError;

    fn from_str(text: &str) -> Result<GtidPosition, BinlogError> {
        let mut position = GtidPosition::default();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let gtid = Gtid::parse(part).ok_or_else(|| BinlogError::BadPosition(text.into()))?;
            if position.get(gtid.domain).is_some() {
                return Err(BinlogError::BadPosition(text.into()));
            }
            position.advance(gtid);
        }
        Ok(position)
    }
}

impl fmt::Display for GtidPosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, gtid) in self.gtids.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{gtid}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pos(text: &str) -> GtidPosition {
        text.parse().expect("a GTID list")
    }

    #[test]
    fn parses_and_prints_gtid_lists() {
        assert_eq!(pos("1-2-7, 0-1-42").to_string(), "0-1-42,1-2-7");
        assert_eq!(pos("").to_string(), "");
        assert!(pos("").is_empty());
        assert!("0-1".parse::<GtidPosition>().is_err());
        assert!("0-1-2,0-1-3".parse::<GtidPosition>().is_err());
        assert!("3E11FA47-71CA-11E1-9E33-C80AA9429562:23"
            .parse::<GtidPosition>()
            .is_err());
    }

    #[test]
    fn includes_means_every_domain_reached() {
        let at = pos("0-1-42,1-2-7");
        assert!(at.includes(&pos("0-1-42")));
        assert!(at.includes(&pos("0-3-40,1-2-7")));
        assert!(!at.includes(&pos("0-1-43")));
        assert!(!at.includes(&pos("2-1-1")));
        assert!(at.includes(&GtidPosition::default()));
        assert!(!GtidPosition::default().includes(&at));
    }

    #[test]
    fn transactions_until_are_summed_over_domains() {
        assert_eq!(
            pos("0-1-42,1-2-7").transactions_until(&pos("0-1-50,1-2-7")),
            8
        );
        assert_eq!(pos("0-1-42").transactions_until(&pos("0-1-50,3-1-4")), 12);
        assert_eq!(pos("0-1-42").transactions_until(&pos("0-1-40")), 0);
    }

    #[test]
    fn advance_keeps_the_highest_sequence_per_domain() {
        let mut at = pos("0-1-42");
        at.advance(Gtid::parse("0-1-41").expect("gtid"));
        assert_eq!(at.to_string(), "0-1-42");
        at.advance(Gtid::parse("0-2-43").expect("gtid"));
        at.advance(Gtid::parse("5-1-1").expect("gtid"));
        assert_eq!(at.to_string(), "0-2-43,5-1-1");
        at.lower(0, Gtid::parse("0-1-40"));
        at.lower(5, None);
        assert_eq!(at.to_string(), "0-1-40");
    }
}
