//! Sharding algorithms: a sharding value to the index of a physical node.
//!
//! A value first becomes a canonical [`Key`] according to the column type
//! (so `uid = 7` and `uid = '007'` on an integer column route alike), then an
//! [`Algorithm`] maps the key to an index into the table's ordered node list.
//! The definitions, which `docs/configuration.md` repeats and the golden
//! tests pin, are:
//!
//! | algorithm | node index for `K` nodes |
//! |---|---|
//! | `mod` | `v.rem_euclid(K)` (integers only) |
//! | `hash` | `CRC32(canonical bytes) % K`, the same as MySQL `MOD(CRC32(v), K)` |
//! | `range` | number of boundaries `<= v` (integers only) |
//! | `consistent_hash` | owner of the first ring point at or after `XXH64(canonical bytes)` |
//! | `uid_slice` | owner of slice `v mod 100` (the UID's last two decimal digits) |
//!
//! Canonical bytes: an integer is its decimal text (`-42`, no leading zeros or
//! `+`), a string is its UTF-8 bytes without trailing spaces (MySQL's PAD SPACE
//! collations compare `'a '` equal to `'a'`).

use std::collections::BTreeMap;
use std::fmt;

use crate::error::RuleError;
use crate::hashing::{crc32, xxh64};

/// How values of the sharding column compare, which decides their canonical form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ColumnType {
    /// An integer column (`INT`, `BIGINT`, …): string values must be integer literals.
    Int,
    /// A string column (`CHAR`, `VARCHAR`): integer values cannot be routed by key.
    String,
}

impl ColumnType {
    /// The name used in rule files (`int`, `string`).
    pub fn name(self) -> &'static str {
        match self {
            ColumnType::Int => "int",
            ColumnType::String => "string",
        }
    }

    /// The canonical key of `value` for a column of this type.
    pub(crate) fn key<'a>(self, value: &ShardValue<'a>) -> Result<Key<'a>, RuleError> {
        match (self, *value) {
            (ColumnType::Int, ShardValue::Int(v)) => Ok(Key::Int(i128::from(v))),
            (ColumnType::Int, ShardValue::UInt(v)) => Ok(Key::Int(i128::from(v))),
            (ColumnType::Int, ShardValue::Str(s)) => parse_int(s)
                .map(Key::Int)
                .ok_or_else(|| RuleError::NotAnInteger(s.to_owned())),
            (ColumnType::String, ShardValue::Str(s)) => Ok(Key::Str(crate::collation::fold(s))),
            (ColumnType::String, ShardValue::Int(v)) => {
                Err(RuleError::IntegerForStringColumn(i128::from(v)))
            }
            (ColumnType::String, ShardValue::UInt(v)) => {
                Err(RuleError::IntegerForStringColumn(i128::from(v)))
            }
        }
    }
}

impl fmt::Display for ColumnType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A sharding value taken from a statement (literal or bound parameter).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ShardValue<'a> {
    /// A signed integer.
    Int(i64),
    /// An unsigned integer (`BIGINT UNSIGNED` values above `i64::MAX`).
    UInt(u64),
    /// A string literal, unquoted and unescaped.
    Str(&'a str),
}

impl From<i64> for ShardValue<'_> {
    fn from(v: i64) -> Self {
        ShardValue::Int(v)
    }
}

impl From<u64> for ShardValue<'_> {
    fn from(v: u64) -> Self {
        ShardValue::UInt(v)
    }
}

impl<'a> From<&'a str> for ShardValue<'a> {
    fn from(v: &'a str) -> Self {
        ShardValue::Str(v)
    }
}

/// A value in canonical form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Key<'a> {
    Int(i128),
    /// Folded as `_ci` collations compare ([`crate::collation::fold`]).
    Str(std::borrow::Cow<'a, str>),
}

impl Key<'_> {
    /// Calls `f` with the canonical bytes, without allocating.
    fn with_bytes<R>(self, f: impl FnOnce(&[u8]) -> R) -> R {
        match self {
            Key::Int(v) => {
                let mut buf = [0u8; 40];
                f(decimal(v, &mut buf))
            }
            Key::Str(s) => f(s.as_bytes()),
        }
    }
}

/// `[ \t]*[+-]?[0-9]+[ \t]*` as an integer; anything else (fractions, exponents,
/// trailing garbage) is not accepted, because MySQL would compare it as a double.
fn parse_int(s: &str) -> Option<i128> {
    let t = s.trim_matches([' ', '\t']);
    let digits = t.strip_prefix(['+', '-']).unwrap_or(t);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let v: i128 = t.strip_prefix('+').unwrap_or(t).parse().ok()?;
    // Keep to the values a BIGINT [UNSIGNED] column can hold.
    (i128::from(i64::MIN)..=i128::from(u64::MAX))
        .contains(&v)
        .then_some(v)
}

/// Decimal text of `v` into `buf`, returning the used tail.
fn decimal(v: i128, buf: &mut [u8; 40]) -> &[u8] {
    let mut n = v.unsigned_abs();
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if v < 0 {
        i -= 1;
        buf[i] = b'-';
    }
    &buf[i..]
}

/// A compiled sharding algorithm with its parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Algorithm {
    /// `mod`: `v.rem_euclid(K)`.
    Mod,
    /// `hash`: `CRC32(canonical bytes) % K`.
    Hash,
    /// `range`: `K - 1` ascending boundaries; node `i` holds `b[i-1] <= v < b[i]`.
    Range(Vec<i64>),
    /// `consistent_hash`: a ring of virtual nodes.
    ConsistentHash(HashRing),
    /// `uid_slice`: slice `v mod 100` to node.
    UidSlice(SliceMap),
}

impl Algorithm {
    /// The name used in rule files.
    pub fn name(&self) -> &'static str {
        match self {
            Algorithm::Mod => "mod",
            Algorithm::Hash => "hash",
            Algorithm::Range(_) => "range",
            Algorithm::ConsistentHash(_) => "consistent_hash",
            Algorithm::UidSlice(_) => "uid_slice",
        }
    }

    /// The node index of `key` among `nodes` nodes.
    pub(crate) fn index(&self, key: Key<'_>, nodes: usize) -> Result<usize, RuleError> {
        match self {
            Algorithm::Mod => {
                let v = int_key(key)?;
                // rem_euclid of a positive modulus is in 0..nodes, so the cast is lossless.
                Ok(v.rem_euclid(nodes as i128) as usize)
            }
            Algorithm::Hash => {
                let h = key.with_bytes(crc32);
                Ok((u64::from(h) % nodes as u64) as usize)
            }
            Algorithm::Range(boundaries) => {
                let v = int_key(key)?;
                Ok(range_index(boundaries, v))
            }
            Algorithm::ConsistentHash(ring) => Ok(ring.locate(key.with_bytes(xxh64))),
            Algorithm::UidSlice(map) => Ok(map.node_of_slice(slice_of(key)?)),
        }
    }
}

fn int_key(key: Key<'_>) -> Result<i128, RuleError> {
    match key {
        Key::Int(v) => Ok(v),
        // Validation only allows integer columns here; kept an error, not a panic.
        Key::Str(s) => Err(RuleError::NotAnInteger(s.into_owned())),
    }
}

/// The partition of `v` for `range`: the number of boundaries `<= v`.
pub(crate) fn range_index(boundaries: &[i64], v: i128) -> usize {
    boundaries.partition_point(|b| i128::from(*b) <= v)
}

/// The UID slice (0..=99) of a key: the last two decimal digits.
///
/// Integers: `v mod 100`; negative UIDs are rejected. Strings: the last two
/// characters must be ASCII digits (a one-character string may be one digit,
/// so `"7"` is slice 07 like the integer 7); anything else is rejected rather
/// than guessed.
pub(crate) fn slice_of(key: Key<'_>) -> Result<u8, RuleError> {
    match key {
        Key::Int(v) if v < 0 => Err(RuleError::NegativeUid(v)),
        Key::Int(v) => Ok((v % 100) as u8),
        Key::Str(s) => {
            let b = s.as_bytes();
            match *b {
                [d] if d.is_ascii_digit() => Ok(d - b'0'),
                [.., t, u] if t.is_ascii_digit() && u.is_ascii_digit() => {
                    Ok((t - b'0') * 10 + (u - b'0'))
                }
                _ => Err(RuleError::NoSliceDigits(s.into_owned())),
            }
        }
    }
}

/// Default number of virtual nodes per physical node on a consistent-hash ring.
pub const DEFAULT_VIRTUAL_NODES: u32 = 160;

/// A consistent-hash ring: `virtual_nodes` points per node, placed at
/// `XXH64("<data_source>#<k>#<v>")`, where `k` numbers the table's nodes on
/// that data source (0, 1, …) and `v` the point.
///
/// The `consistent_hash` crate is not used: its `DefaultHash` is SipHash-1-3
/// fed through `std::hash::Hash`, whose byte stream is not stable (integers
/// are hashed in native byte order and `usize` in native width, so the ring
/// differs between 32- and 64-bit or big- and little-endian machines, and std
/// promises nothing across releases); the crate also has been unmaintained
/// since 2017. Placement is persistent data, so the ring uses a fixed,
/// specified hash of explicit bytes instead.
///
/// Labels use data source names rather than table names, so the tables of a
/// binding group (same data sources in the same order) get the same ring, and
/// adding a node only adds points: keys move only to the new node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HashRing {
    virtual_nodes: u32,
    /// `(point, node index)`, sorted; ties broken by node index.
    points: Vec<(u64, u32)>,
}

impl HashRing {
    /// Builds the ring for nodes given by their data source names, in node order.
    pub(crate) fn new<'a>(
        data_sources: impl IntoIterator<Item = &'a str>,
        virtual_nodes: u32,
    ) -> Self {
        let mut seen: BTreeMap<&str, u32> = BTreeMap::new();
        let mut points = Vec::new();
        for (index, ds) in data_sources.into_iter().enumerate() {
            let k = seen.entry(ds).or_insert(0);
            for v in 0..virtual_nodes {
                let label = format!("{ds}#{k}#{v}");
                points.push((xxh64(label.as_bytes()), index as u32));
            }
            *k += 1;
        }
        points.sort_unstable();
        Self {
            virtual_nodes,
            points,
        }
    }

    /// Points per node.
    pub fn virtual_nodes(&self) -> u32 {
        self.virtual_nodes
    }

    /// The node owning `hash`: the first point at or after it, wrapping around.
    pub fn locate(&self, hash: u64) -> usize {
        let i = self.points.partition_point(|p| p.0 < hash);
        let (_, node) = self
            .points
            .get(i)
            .or(self.points.first())
            .copied()
            .unwrap_or((0, 0));
        node as usize
    }
}

/// Number of UID slices.
pub const SLICES: usize = 100;

/// The owner (node index) of each of the 100 UID slices.
///
/// A flat array: rebuilding it for a rebalancing step costs nothing, and a
/// lookup is one index. See [`crate::Rules::with_slices`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SliceMap {
    owner: Box<[u32; SLICES]>,
}

impl SliceMap {
    /// The node index owning slice `slice` (0..=99).
    pub fn node_of_slice(&self, slice: u8) -> usize {
        self.owner[usize::from(slice) % SLICES] as usize
    }

    /// The distinct node indexes that own at least one slice, ascending.
    pub fn owners(&self) -> Vec<usize> {
        let mut v: Vec<usize> = self.owner.iter().map(|&o| o as usize).collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// Builds the map from `"NN-NN" = target` entries; `resolve` turns a target into a node index.
    ///
    /// Returns every problem found: bad keys, overlaps, unmapped slices and
    /// unresolvable targets.
    pub(crate) fn build(
        slices: &BTreeMap<String, String>,
        mut resolve: impl FnMut(&str) -> Result<usize, String>,
    ) -> Result<SliceMap, Vec<String>> {
        let mut problems = Vec::new();
        let mut ranges: Vec<(u8, u8, &str, usize)> = Vec::new();
        for (key, target) in slices {
            let range = match parse_slice_range(key) {
                Ok(r) => Some(r),
                Err(e) => {
                    problems.push(e);
                    None
                }
            };
            let node = match resolve(target) {
                Ok(n) => Some(n),
                Err(e) => {
                    problems.push(format!("'{key}': {e}"));
                    None
                }
            };
            if let (Some((lo, hi)), Some(node)) = (range, node) {
                ranges.push((lo, hi, key.as_str(), node));
            } else if let Some((lo, hi)) = range {
                // Still counts for overlap and coverage checks.
                ranges.push((lo, hi, key.as_str(), usize::MAX));
            }
        }
        ranges.sort_by_key(|r| (r.0, r.1));
        for (i, a) in ranges.iter().enumerate() {
            for b in &ranges[i + 1..] {
                let lo = a.0.max(b.0);
                let hi = a.1.min(b.1);
                if lo <= hi {
                    let what = if lo == hi {
                        format!("slice {lo:02} overlaps")
                    } else {
                        format!("slices {lo:02}-{hi:02} overlap")
                    };
                    problems.push(format!("{what} ('{}' and '{}')", a.2, b.2));
                }
            }
        }
        let mut owner = [u32::MAX; SLICES];
        let mut mapped = [false; SLICES];
        for &(lo, hi, _, node) in &ranges {
            for s in lo..=hi {
                mapped[usize::from(s)] = true;
                if owner[usize::from(s)] == u32::MAX {
                    owner[usize::from(s)] = u32::try_from(node).unwrap_or(u32::MAX);
                }
            }
        }
        let mut s = 0;
        while s < SLICES {
            if mapped[s] {
                s += 1;
                continue;
            }
            let start = s;
            while s < SLICES && !mapped[s] {
                s += 1;
            }
            let end = s - 1;
            problems.push(if start == end {
                format!("slice {start:02} not mapped")
            } else {
                format!("slices {start:02}-{end:02} not mapped")
            });
        }
        if problems.is_empty() {
            Ok(SliceMap {
                owner: Box::new(owner),
            })
        } else {
            Err(problems)
        }
    }
}

/// `"NN"` or `"NN-NN"`, two digits each, 00..=99, start <= end.
fn parse_slice_range(key: &str) -> Result<(u8, u8), String> {
    let two = |s: &str| -> Option<u8> {
        let b = s.as_bytes();
        (b.len() == 2 && b.iter().all(u8::is_ascii_digit))
            .then(|| (b[0] - b'0') * 10 + (b[1] - b'0'))
    };
    let parsed = match key.split_once('-') {
        Some((a, b)) => two(a).zip(two(b)),
        None => two(key).map(|v| (v, v)),
    };
    match parsed {
        Some((lo, hi)) if lo <= hi => Ok((lo, hi)),
        Some(_) => Err(format!("slice range '{key}' starts after it ends")),
        None => Err(format!(
            "bad slice range '{key}' (expected \"NN\" or \"NN-NN\", NN from 00 to 99)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(entries: &[(&str, &str)]) -> BTreeMap<String, String> {
        entries
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn resolve(t: &str) -> Result<usize, String> {
        t.strip_prefix("ds_")
            .and_then(|n| n.parse().ok())
            .filter(|n| *n < 4)
            .ok_or_else(|| format!("unknown data source '{t}'"))
    }

    #[test]
    fn canonical_int_keys() {
        fn k(v: ShardValue<'_>) -> Result<Key<'_>, RuleError> {
            ColumnType::Int.key(&v)
        }
        assert_eq!(k(ShardValue::Int(-7)), Ok(Key::Int(-7)));
        assert_eq!(
            k(ShardValue::UInt(u64::MAX)),
            Ok(Key::Int(i128::from(u64::MAX)))
        );
        assert_eq!(k(ShardValue::Str(" +007 ")), Ok(Key::Int(7)));
        assert_eq!(k(ShardValue::Str("-12")), Ok(Key::Int(-12)));
        for bad in ["", "7.0", "1e3", "7abc", "--1", "+", "99999999999999999999"] {
            assert_eq!(
                k(ShardValue::Str(bad)),
                Err(RuleError::NotAnInteger(bad.to_owned())),
                "{bad}"
            );
        }
    }

    #[test]
    fn canonical_string_keys() {
        fn k(v: ShardValue<'_>) -> Result<Key<'_>, RuleError> {
            ColumnType::String.key(&v)
        }
        assert_eq!(k(ShardValue::Str("U12  ")), Ok(Key::Str("U12".into())));
        // Equal under a `_ci` collation: one key.
        assert_eq!(k(ShardValue::Str("u12")), Ok(Key::Str("U12".into())));
        assert_eq!(k(ShardValue::Str(" U12")), Ok(Key::Str(" U12".into())));
        assert_eq!(
            k(ShardValue::Int(7)),
            Err(RuleError::IntegerForStringColumn(7))
        );
    }

    #[test]
    fn decimal_text() {
        let mut buf = [0u8; 40];
        assert_eq!(decimal(0, &mut buf), b"0");
        assert_eq!(decimal(-42, &mut buf), b"-42");
        assert_eq!(
            decimal(i128::MIN, &mut buf),
            i128::MIN.to_string().as_bytes()
        );
    }

    #[test]
    fn mod_is_euclidean() {
        let idx = |v| Algorithm::Mod.index(Key::Int(v), 4).expect("int");
        assert_eq!([idx(0), idx(5), idx(-1), idx(-4), idx(-5)], [0, 1, 3, 0, 3]);
    }

    #[test]
    fn range_partitions() {
        let a = Algorithm::Range(vec![100, 200]);
        let idx = |v| a.index(Key::Int(v), 3).expect("int");
        assert_eq!(
            [
                idx(i128::from(i64::MIN)),
                idx(99),
                idx(100),
                idx(199),
                idx(200),
                idx(1 << 70)
            ],
            [0, 0, 1, 1, 2, 2]
        );
    }

    #[test]
    fn uid_slices_of_integers_and_strings() {
        assert_eq!(slice_of(Key::Int(0)), Ok(0));
        assert_eq!(slice_of(Key::Int(7)), Ok(7));
        assert_eq!(slice_of(Key::Int(123_456_789)), Ok(89));
        assert_eq!(slice_of(Key::Int(-1)), Err(RuleError::NegativeUid(-1)));
        assert_eq!(slice_of(Key::Str("7".into())), Ok(7));
        assert_eq!(slice_of(Key::Str("U2024000123".into())), Ok(23));
        assert_eq!(slice_of(Key::Str("00".into())), Ok(0));
        for bad in ["", "A7", "12X", "-5", "x"] {
            assert_eq!(
                slice_of(Key::Str(bad.into())),
                Err(RuleError::NoSliceDigits(bad.to_owned())),
                "{bad}"
            );
        }
    }

    #[test]
    fn slice_map_builds_and_looks_up() {
        let m = SliceMap::build(
            &map(&[
                ("00-29", "ds_0"),
                ("30-59", "ds_1"),
                ("60-79", "ds_2"),
                ("80-99", "ds_3"),
            ]),
            resolve,
        )
        .expect("valid");
        assert_eq!(m.node_of_slice(0), 0);
        assert_eq!(m.node_of_slice(29), 0);
        assert_eq!(m.node_of_slice(30), 1);
        assert_eq!(m.node_of_slice(79), 2);
        assert_eq!(m.node_of_slice(99), 3);
        assert_eq!(m.owners(), [0, 1, 2, 3]);
    }

    #[test]
    fn slice_map_reports_every_problem() {
        let err = SliceMap::build(
            &map(&[
                ("00-29", "ds_0"),
                ("25-40", "ds_1"),
                ("41", "ds_9"),
                ("5x", "ds_0"),
                ("50-45", "ds_0"),
            ]),
            resolve,
        )
        .expect_err("invalid");
        assert_eq!(
            err,
            [
                "'41': unknown data source 'ds_9'",
                "slice range '50-45' starts after it ends",
                "bad slice range '5x' (expected \"NN\" or \"NN-NN\", NN from 00 to 99)",
                "slices 25-29 overlap ('00-29' and '25-40')",
                "slices 42-99 not mapped",
            ]
        );
        let err = SliceMap::build(&map(&[("00-59", "ds_0"), ("59-98", "ds_1")]), resolve)
            .expect_err("invalid");
        assert_eq!(
            err,
            [
                "slice 59 overlaps ('00-59' and '59-98')",
                "slice 99 not mapped"
            ]
        );
    }

    #[test]
    fn ring_is_deterministic_and_balanced() {
        let ring = HashRing::new(["ds_0", "ds_1", "ds_2", "ds_3"], DEFAULT_VIRTUAL_NODES);
        let algorithm = Algorithm::ConsistentHash(ring.clone());
        let mut counts = [0usize; 4];
        for k in 0..10_000i128 {
            counts[algorithm.index(Key::Int(k), 4).expect("ok")] += 1;
        }
        for c in counts {
            assert!((1_500..=3_500).contains(&c), "unbalanced ring: {counts:?}");
        }
        assert_eq!(ring.locate(u64::MAX), ring.locate(0), "wraps around");
    }
}
