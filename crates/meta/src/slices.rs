//! [`SliceSet`]: a set of UID slices (00-99), written as ranges (`"30-44,50"`).

use std::fmt;
use std::str::FromStr;

/// Number of UID slices.
const SLICES: usize = 100;

/// A set of UID slices: bit `s` for slice `s`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SliceSet(u128);

impl SliceSet {
    /// Whether `slice` is in the set.
    pub fn contains(&self, slice: u8) -> bool {
        usize::from(slice) < SLICES && self.0 & (1 << slice) != 0
    }

    /// Adds `slice` (0..=99; others are ignored).
    pub fn insert(&mut self, slice: u8) {
        if usize::from(slice) < SLICES {
            self.0 |= 1 << slice;
        }
    }

    /// Whether no slice is in the set.
    pub fn is_empty(&self) -> bool {
        self.0 == 0
    }

    /// The slices in both sets.
    pub fn intersection(&self, other: &SliceSet) -> SliceSet {
        SliceSet(self.0 & other.0)
    }

    /// The slices in the set, ascending.
    pub fn iter(&self) -> impl Iterator<Item = u8> + '_ {
        (0..SLICES as u8).filter(|&s| self.contains(s))
    }

    /// The set as maximal runs `(first, last)`.
    pub fn ranges(&self) -> Vec<(u8, u8)> {
        let mut out: Vec<(u8, u8)> = Vec::new();
        for s in self.iter() {
            match out.last_mut() {
                Some((_, last)) if *last + 1 == s => *last = s,
                _ => out.push((s, s)),
            }
        }
        out
    }
}

/// `"30-44,50"`; the empty set is `""`.
impl fmt::Display for SliceSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (first, last)) in self.ranges().into_iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            if first == last {
                write!(f, "{first:02}")?;
            } else {
                write!(f, "{first:02}-{last:02}")?;
            }
        }
        Ok(())
    }
}

/// Reads `"30-44,50"` (one or two digits each, ranges ascending); whitespace around items is
/// allowed.
impl FromStr for SliceSet {
    type Err = String;

    fn from_str(text: &str) -> Result<SliceSet, String> {
        let mut set = SliceSet::default();
        let slice = |s: &str| -> Result<u8, String> {
            let s = s.trim();
            match s.parse::<u8>() {
                Ok(n) if usize::from(n) < SLICES && !s.is_empty() && s.len() <= 2 => Ok(n),
                _ => Err(format!("'{s}' is not a slice (00-99)")),
            }
        };
        for item in text.split(',').filter(|i| !i.trim().is_empty()) {
            let (first, last) = match item.split_once('-') {
                Some((a, b)) => (slice(a)?, slice(b)?),
                None => (slice(item)?, slice(item)?),
            };
            if first > last {
                return Err(format!("'{}': the range runs backwards", item.trim()));
            }
            for s in first..=last {
                set.insert(s);
            }
        }
        Ok(set)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_writes_ranges() {
        let set: SliceSet = "30-44, 50,7".parse().expect("valid");
        assert_eq!(set.to_string(), "07,30-44,50");
        assert!(set.contains(44) && set.contains(7) && !set.contains(45));
        assert_eq!(set.iter().count(), 17);
        let other: SliceSet = "40-60".parse().expect("valid");
        assert_eq!(set.intersection(&other).to_string(), "40-44,50");
        assert_eq!("".parse::<SliceSet>(), Ok(SliceSet::default()));
        assert!("".parse::<SliceSet>().expect("empty").is_empty());
        assert_eq!(
            "00-99".parse::<SliceSet>().map(|s| s.iter().count()),
            Ok(100)
        );
    }

    #[test]
    fn refuses_what_is_not_a_slice() {
        for bad in ["100", "44-30", "x", "1-", "-3", "007"] {
            assert!(bad.parse::<SliceSet>().is_err(), "{bad}");
        }
    }
}
