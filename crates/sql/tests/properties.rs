//! Property tests of the hand-written lexer and fingerprint (untrusted input:
//! they must never panic) and of parsing with the recursion limit.

use proptest::prelude::*;
use sql::{fingerprint, identifiers, parse, split, strip_leading_words, LiteralKind, LiteralValue};

/// Fragments that exercise the lexer's corners, glued in random order.
fn sqlish() -> impl Strategy<Value = String> {
    let fragment = prop_oneof![
        Just("SELECT"),
        Just(" "),
        Just("\n"),
        Just("'"),
        Just("\""),
        Just("`"),
        Just("\\"),
        Just("''"),
        Just("/*"),
        Just("*/"),
        Just("/*!"),
        Just("/*+"),
        Just("#"),
        Just("--"),
        Just("-- "),
        Just("-"),
        Just("."),
        Just("0x"),
        Just("0b"),
        Just("1e"),
        Just("12"),
        Just("3.5"),
        Just("?"),
        Just(";"),
        Just("N'"),
        Just("X'"),
        Just("é"),
        Just("字"),
        Just("\u{0}"),
        Just("uid"),
        Just("="),
        Just("("),
        Just(")"),
        Just(","),
    ];
    prop::collection::vec(fragment, 0..40).prop_map(|v| v.concat())
}

fn check_fingerprint(s: &str) {
    let fp = fingerprint(s);
    let mut last_end = 0;
    let mut params = 0;
    for lit in &fp.literals {
        assert!(lit.start >= last_end && lit.start < lit.end && lit.end <= s.len());
        assert!(s.is_char_boundary(lit.start) && s.is_char_boundary(lit.end));
        last_end = lit.end;
        let _ = lit.text(s);
        match lit.value(s) {
            LiteralValue::Placeholder(k) => {
                assert_eq!(k, params);
                assert_eq!(lit.kind, LiteralKind::Placeholder(k));
                params += 1;
            }
            _ => assert!(!matches!(lit.kind, LiteralKind::Placeholder(_))),
        }
    }
    let marks = fp.text.matches('?').count();
    assert!(marks >= fp.literals.len());
    let _ = split(s);
    let _ = identifiers(s);
    let _ = strip_leading_words(s, &["EXPLAIN", "ROUTE"]);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn fingerprint_never_panics_on_any_text(s in "\\PC*") {
        check_fingerprint(&s);
    }

    #[test]
    fn fingerprint_never_panics_on_sqlish_text(s in sqlish()) {
        check_fingerprint(&s);
    }

    /// Statements differing only in literal values share a fingerprint, and
    /// the literal values come back as written.
    #[test]
    fn literals_do_not_change_the_fingerprint(
        a in any::<i64>(),
        b in "[a-zA-Z0-9 'é\\\\]{0,12}",
        c in 0u64..u64::MAX,
    ) {
        let quoted = format!("'{}'", b.replace('\\', "\\\\").replace('\'', "''"));
        let sql = format!("SELECT * FROM t WHERE a = {a} AND b = {quoted} AND c IN ({c}, ?)");
        let fp = fingerprint(&sql);
        prop_assert_eq!(&fp.text, "SELECT * FROM t WHERE a = ? AND b = ? AND c IN (?, :?)");
        prop_assert_eq!(fp.literals[0].value(&sql), LiteralValue::Int(a));
        prop_assert_eq!(fp.literals[1].value(&sql), LiteralValue::Str(b.clone().into()));
        let want = i64::try_from(c).map_or(LiteralValue::UInt(c), LiteralValue::Int);
        prop_assert_eq!(fp.literals[2].value(&sql), want);
    }
}

proptest! {
    // sqlparser is slow to reject garbage in debug builds; fewer cases.
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn parse_never_panics(s in sqlish()) {
        let _ = parse(&s);
    }
}

#[test]
fn deep_nesting_is_refused_not_overflowed() {
    let sql = format!("SELECT {}1{}", "(".repeat(5000), ")".repeat(5000));
    assert!(parse(&sql).is_err());
    check_fingerprint(&sql);
}
