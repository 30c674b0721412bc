//! The statement scanners: statement bytes in a client character set (the first input byte
//! picks it) read into text as the session reads COM_QUERY, and that text through everything
//! that scans it without sqlparser — the fingerprint, the multi-statement split, the
//! identifier list, the leading-word strip, the `SET` character-set reader and the session
//! value replacement. Reading must give the client's bytes back, and every literal the
//! fingerprint finds must be a slice of the text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use protocol::text::{self, Charset, DoubleByte};
use sql::{Replacement, SessionValue};

const CHARSETS: [Charset; 6] = [
    Charset::Utf8,
    Charset::HighBytes,
    Charset::DoubleByte(DoubleByte::Gbk),
    Charset::DoubleByte(DoubleByte::Big5),
    Charset::DoubleByte(DoubleByte::Sjis),
    Charset::DoubleByte(DoubleByte::Euckr),
];

fuzz_target!(|data: &[u8]| {
    let Some((&pick, bytes)) = data.split_first() else {
        return;
    };
    let charset = CHARSETS[usize::from(pick) % CHARSETS.len()];
    let sql = text::decode(bytes, charset);
    assert_eq!(
        &*text::encode(&sql),
        bytes,
        "statement bytes read in {charset:?} come back changed"
    );

    let fp = sql::fingerprint(&sql);
    for literal in &fp.literals {
        assert!(literal.start < literal.end && literal.end <= sql.len());
        assert!(sql.is_char_boundary(literal.start) && sql.is_char_boundary(literal.end));
        let _ = literal.value(&sql);
    }
    for piece in sql::split(&sql) {
        let _ = sql::fingerprint(piece);
    }
    let _ = sql::identifiers(&sql);
    let _ = sql::strip_leading_words(&sql, &["EXPLAIN", "ROUTE"]);
    let _ = sql::client_charset(&sql);
    let replaced = sql::replace_session_values(&sql, |value| {
        Ok::<_, ()>(match value {
            SessionValue::FoundRows => Replacement::Keep,
            _ => Replacement::With("1".to_owned()),
        })
    });
    if let Ok(Some(replaced)) = replaced {
        let _ = sql::fingerprint(&replaced);
    }
});
