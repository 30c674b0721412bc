//! The decoder on events captured from mariadbd 10.11 (`tests/fixtures/all_types.events`:
//! the GTID, TABLE_MAP, rows and XID events of `common::ALL_TYPES_ROWS` with a 300-byte
//! MEDIUMBLOB, then an UPDATE and a DELETE, as the binlog file holds them, CRC32 included).
//! The decoded rows are compared with `tests/golden/all_types.txt`; `UPDATE_GOLDEN=1`
//! rewrites it.

use binlog::decode::{parse_event, split_event, Event, TableMap};

/// The UNSIGNED columns of `common::ALL_TYPES` (0-based).
const UNSIGNED: [usize; 6] = [2, 4, 6, 8, 10, 15];

fn events() -> Vec<(u8, Event)> {
    let bytes = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/all_types.events"
    ))
    .expect("fixture");
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let size = u32::from_le_bytes(bytes[at + 9..at + 13].try_into().expect("4 bytes")) as usize;
        let (header, body) = split_event(&bytes[at..at + size], true).expect("valid CRC32");
        out.push((header.kind, parse_event(&header, body).expect("decodes")));
        at += size;
    }
    out
}

#[test]
fn captured_rows_decode_to_the_golden_values() {
    let mut text = String::new();
    let mut map: Option<TableMap> = None;
    for (kind, event) in events() {
        match event {
            Event::Gtid { gtid, .. } => text.push_str(&format!("GTID {gtid}\n")),
            Event::TableMap(m) => {
                text.push_str(&format!(
                    "TABLE_MAP `{}`.`{}` {} columns: {:?}\n",
                    m.database,
                    m.table,
                    m.columns.len(),
                    m.columns
                        .iter()
                        .map(|c| (c.kind, c.meta))
                        .collect::<Vec<_>>()
                ));
                map = Some(m);
            }
            Event::Rows(rows) => {
                let map = map.as_ref().expect("a TABLE_MAP first");
                let unsigned: Vec<bool> = (0..map.columns.len())
                    .map(|i| UNSIGNED.contains(&i))
                    .collect();
                text.push_str(&format!("ROWS type {kind} {:?}\n", rows.kind));
                for row in rows.rows(map, &unsigned).expect("rows decode") {
                    for (label, image) in [("before", row.before), ("after", row.after)] {
                        if let Some(values) = image {
                            text.push_str(&format!("  {label}:\n"));
                            for (i, value) in values.iter().enumerate() {
                                text.push_str(&format!(
                                    "    {:>2} {}\n",
                                    i + 1,
                                    value.sql_literal()
                                ));
                            }
                        }
                    }
                }
            }
            Event::Xid => text.push_str("XID\n"),
            other => panic!("unexpected event {other:?}"),
        }
    }
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/all_types.txt");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(std::path::Path::new(path).parent().expect("dir")).expect("dir");
        std::fs::write(path, &text).expect("write golden");
    }
    let golden = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        golden == text,
        "decoded rows differ from {path}; if the change is right, accept it with \
         UPDATE_GOLDEN=1 cargo nextest run -p binlog -E 'test(captured_rows)'\n{text}"
    );
}

#[test]
fn a_corrupted_event_fails_its_checksum() {
    let mut bytes = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/all_types.events"
    ))
    .expect("fixture");
    let size = u32::from_le_bytes(bytes[9..13].try_into().expect("4 bytes")) as usize;
    bytes[20] ^= 1;
    let error = split_event(&bytes[..size], true).expect_err("bad CRC32");
    assert!(format!("{error:?}").contains("CRC32"), "{error:?}");
}

/// Every truncation of every captured event is an error or a shorter decoding, never a panic
/// (the decoder indexes only what it has checked is there).
#[test]
fn truncated_events_never_panic() {
    let bytes = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/all_types.events"
    ))
    .expect("fixture");
    let unsigned = [false; 41];
    let mut map = None;
    let mut at = 0;
    while at < bytes.len() {
        let size = u32::from_le_bytes(bytes[at + 9..at + 13].try_into().expect("4 bytes")) as usize;
        let (header, body) = split_event(&bytes[at..at + size], true).expect("valid");
        for len in 0..body.len() {
            if let Ok(Event::Rows(rows)) = parse_event(&header, &body[..len]) {
                if let Some(map) = &map {
                    let _ = rows.rows(map, &unsigned);
                }
            }
        }
        if let Ok(Event::TableMap(m)) = parse_event(&header, body) {
            map = Some(m);
        }
        at += size;
    }
}
