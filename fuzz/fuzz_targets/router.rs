//! The router: statement text to a plan, over the example rule sets (every algorithm). Each
//! statement is routed as text and for COM_STMT_PREPARE, and as a multi-statement text. The
//! plan cache must not change an answer: the statement with its integer literals changed
//! (the input's first byte picks the values) is routed from the template the first one left in
//! the cache and again without a cache, and both must give the same plan or the same error —
//! when the parser reads the changed statement: one whose new values it rejects (`VARCHAR(-1)`)
//! the template still routes, as written, and the server rejects it (docs/security.md).
#![no_main]

use libfuzzer_sys::fuzz_target;
use router::Router;

/// Integer values that sit on the edges sharding functions care about.
const VALUES: [&str; 8] = [
    "0",
    "1",
    "-1",
    "7",
    "99",
    "2147483648",
    "-9223372036854775808",
    "18446744073709551615",
];

fuzz_target!(|data: &[u8]| {
    let Some((&pick, bytes)) = data.split_first() else {
        return;
    };
    let Ok(sql) = std::str::from_utf8(bytes) else {
        return;
    };
    let other = with_other_integers(sql, pick);
    for rules in dbmesh_fuzz::rule_sets() {
        let cached = Router::new(rules.clone(), 16);
        let uncached = Router::new(rules.clone(), 0);
        let _ = cached.route(sql, &[]);
        let from_cache = describe(cached.route(&other, &[]));
        let parsed = describe(uncached.route(&other, &[]));
        if from_cache != parsed && sql::parse(&other).is_ok() {
            panic!("the plan cache changed the route of {other:?} (after {sql:?}):\n{from_cache}\nparsed:\n{parsed}");
        }
        let _ = uncached.route_for_prepare(sql);
        let _ = uncached.route_multi(sql);
    }
});

/// `sql` with each integer literal replaced by one of [`VALUES`] (the same fingerprint).
fn with_other_integers(sql: &str, pick: u8) -> String {
    let fp = sql::fingerprint(sql);
    let mut out = String::with_capacity(sql.len());
    let mut at = 0;
    for (i, literal) in fp.literals.iter().enumerate() {
        if literal.kind != sql::LiteralKind::Int {
            continue;
        }
        out.push_str(&sql[at..literal.start]);
        out.push_str(VALUES[(usize::from(pick) + i) % VALUES.len()]);
        at = literal.end;
    }
    out.push_str(&sql[at..]);
    out
}

fn describe(routed: Result<router::Plan, router::RouteError>) -> String {
    match routed {
        Ok(plan) => plan.to_string(),
        Err(e) => format!("error: {e}"),
    }
}
