//! dbmesh's XA transaction ids.
//!
//! An XA xid has three parts (<https://mariadb.com/kb/en/xa-transactions/>): `gtrid` and
//! `bqual`, up to 64 bytes each, and a numeric `formatID`. dbmesh uses them as:
//!
//! - `formatID` = [`FORMAT_ID`] (the bytes `dbmx`), so recovery touches only xids dbmesh made
//!   and leaves an application's own XA transactions alone;
//! - `gtrid` = the global transaction, `<owner>:<incarnation>:<sequence>:<begun_ms>` (numbers
//!   in hex): the proxy that owns it ([`Owner`]), a counter unique within that incarnation, and
//!   when it began (for the oldest-in-doubt metric). Every branch of one transaction shares it,
//!   and it is the key of the decision row, so any prepared branch leads to its decision;
//! - `bqual` = the participant: the data source the branch runs on.
//!
//! Both strings go to the server as hex literals (`X'…'`), so nothing in them needs quoting.

use std::fmt;

/// The `formatID` of every xid dbmesh makes: the bytes `dbmx`, big-endian.
pub const FORMAT_ID: u32 = u32::from_be_bytes(*b"dbmx");

/// The longest owner name: with the incarnation (32 bits), sequence (64 bits) and begin time
/// (44 bits, until the year 2527) in hex, the gtrid stays within XA's 64 bytes.
pub const MAX_OWNER_LEN: usize = 24;

/// XA's limit on `gtrid` and on `bqual`.
const MAX_XID_PART: usize = 64;

/// A proxy incarnation: its name (stable across restarts if configured so) and the number the
/// decision log gave this run of it. An owner is "gone" when its lease row has expired or a
/// later incarnation of the same name registered.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Owner {
    pub name: String,
    pub incarnation: u32,
}

impl Owner {
    /// Checks an owner name: 1 to [`MAX_OWNER_LEN`] characters of `A-Z a-z 0-9 _ . -`.
    pub fn validate_name(name: &str) -> Result<(), String> {
        if name.is_empty() || name.len() > MAX_OWNER_LEN {
            return Err(format!(
                "proxy owner name '{name}' must be 1 to {MAX_OWNER_LEN} characters"
            ));
        }
        if let Some(c) = name
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
        {
            return Err(format!(
                "proxy owner name '{name}' may hold only letters, digits, '_', '.' and '-', not '{c}'"
            ));
        }
        Ok(())
    }
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}", self.name, self.incarnation)
    }
}

/// A global transaction id: the `gtrid` of every branch of one distributed transaction.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Gtrid {
    pub owner: Owner,
    pub sequence: u64,
    /// Wall-clock milliseconds since the Unix epoch when the transaction began.
    pub begun_ms: u64,
}

impl Gtrid {
    /// Reads a gtrid as its `Display` writes it; `None` for anything else.
    pub fn parse(text: &str) -> Option<Gtrid> {
        let mut parts = text.rsplitn(4, ':');
        let begun_ms = u64::from_str_radix(parts.next()?, 16).ok()?;
        let sequence = u64::from_str_radix(parts.next()?, 16).ok()?;
        let incarnation = u32::from_str_radix(parts.next()?, 16).ok()?;
        let name = parts.next()?;
        Owner::validate_name(name).ok()?;
        Some(Gtrid {
            owner: Owner {
                name: name.to_owned(),
                incarnation,
            },
            sequence,
            begun_ms,
        })
    }
}

impl fmt::Display for Gtrid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{:x}:{:x}:{:x}",
            self.owner.name, self.owner.incarnation, self.sequence, self.begun_ms
        )
    }
}

/// One branch's xid: the global transaction and the data source of the branch.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Xid {
    pub gtrid: String,
    pub bqual: String,
}

impl Xid {
    /// The xid of `gtrid`'s branch on data source `data_source` (at most 64 bytes).
    pub fn new(gtrid: &Gtrid, data_source: &str) -> Result<Xid, String> {
        if data_source.len() > MAX_XID_PART {
            return Err(format!(
                "data source name '{data_source}' is longer than the {MAX_XID_PART} bytes an XA branch qualifier holds"
            ));
        }
        Ok(Xid {
            gtrid: gtrid.to_string(),
            bqual: data_source.to_owned(),
        })
    }

    /// The xid as it follows `XA START` / `END` / `PREPARE` / `COMMIT` / `ROLLBACK`:
    /// `X'<gtrid>',X'<bqual>',<formatID>`.
    pub fn sql(&self) -> String {
        format!(
            "X'{}',X'{}',{FORMAT_ID}",
            hex(self.gtrid.as_bytes()),
            hex(self.bqual.as_bytes())
        )
    }

    /// Reads one row of `XA RECOVER` (formatID, gtrid_length, bqual_length, data); `None` for
    /// a row that is not a dbmesh xid.
    pub fn from_recover_row(
        format_id: &str,
        gtrid_length: &str,
        bqual_length: &str,
        data: &str,
    ) -> Option<Xid> {
        if format_id.parse::<u32>().ok()? != FORMAT_ID {
            return None;
        }
        let gtrid_length: usize = gtrid_length.parse().ok()?;
        let bqual_length: usize = bqual_length.parse().ok()?;
        let bytes = data.as_bytes();
        if bytes.len() != gtrid_length + bqual_length {
            return None;
        }
        let gtrid = std::str::from_utf8(&bytes[..gtrid_length]).ok()?;
        let bqual = std::str::from_utf8(&bytes[gtrid_length..]).ok()?;
        Gtrid::parse(gtrid)?;
        Some(Xid {
            gtrid: gtrid.to_owned(),
            bqual: bqual.to_owned(),
        })
    }
}

impl fmt::Display for Xid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.gtrid, self.bqual)
    }
}

fn hex(bytes: &[u8]) -> String {
    use fmt::Write;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02X}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gtrid() -> Gtrid {
        Gtrid {
            owner: Owner {
                name: "proxy-a.eu_1".into(),
                incarnation: 7,
            },
            sequence: 0x1f,
            begun_ms: 1_800_000_000_000,
        }
    }

    #[test]
    fn gtrid_round_trips_and_fits_xa_limits() {
        let g = gtrid();
        assert_eq!(g.to_string(), "proxy-a.eu_1:7:1f:1a3185c5000");
        assert_eq!(Gtrid::parse(&g.to_string()), Some(g));
        let widest = Gtrid {
            owner: Owner {
                name: "x".repeat(MAX_OWNER_LEN),
                incarnation: u32::MAX,
            },
            sequence: u64::MAX,
            begun_ms: (1 << 44) - 1,
        };
        assert!(widest.to_string().len() <= MAX_XID_PART, "{widest}");
        assert_eq!(Gtrid::parse("app:1:2"), None);
        assert_eq!(Gtrid::parse("a b:1:2:3"), None);
        assert_eq!(Gtrid::parse(":1:2:3"), None);
    }

    #[test]
    fn owner_names_are_checked() {
        assert!(Owner::validate_name("host-1.dc_2").is_ok());
        assert!(Owner::validate_name("").is_err());
        assert!(Owner::validate_name("a:b").is_err());
        assert!(Owner::validate_name("o'neil").is_err());
        assert!(Owner::validate_name(&"x".repeat(25)).is_err());
    }

    #[test]
    fn xid_sql_is_hex_so_any_data_source_name_is_safe() {
        let xid = Xid::new(&gtrid(), "ds_0'; DROP").unwrap();
        let sql = xid.sql();
        assert!(sql.starts_with("X'70726F78792D"), "{sql}");
        assert!(sql.ends_with(&format!("',{FORMAT_ID}")), "{sql}");
        assert!(!sql.contains("DROP"));
        assert!(Xid::new(&gtrid(), &"d".repeat(65)).is_err());
    }

    #[test]
    fn recover_rows_are_read_and_foreign_xids_ignored() {
        let xid = Xid::new(&gtrid(), "ds_1").unwrap();
        let data = format!("{}{}", xid.gtrid, xid.bqual);
        let row = Xid::from_recover_row(
            &FORMAT_ID.to_string(),
            &xid.gtrid.len().to_string(),
            "4",
            &data,
        );
        assert_eq!(row, Some(xid.clone()));
        // An application's own xid (format 1) or a dbmesh format id on foreign text.
        assert_eq!(Xid::from_recover_row("1", "1", "0", "q"), None);
        assert_eq!(
            Xid::from_recover_row(&FORMAT_ID.to_string(), "3", "1", "abcd"),
            None
        );
    }
}
