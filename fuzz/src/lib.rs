//! What the fuzz targets share: running the crates' async decoders to completion on in-memory
//! input, and the fixed rule sets the router and merge targets route by.

use std::future::Future;
use std::path::Path;
use std::pin::pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, Waker};

/// Runs a future that never waits: one reading from an in-memory buffer is always ready, so
/// no runtime is needed (and none of its cost lands in every execution).
pub fn ready<F: Future>(future: F) -> F::Output {
    let mut cx = Context::from_waker(Waker::noop());
    match pin!(future).poll(&mut cx) {
        Poll::Ready(out) => out,
        Poll::Pending => panic!("a future over in-memory input waited"),
    }
}

/// The example rule files the targets route by: every sharding algorithm, binding groups,
/// broadcast and single tables, a sequence and table-suffix layouts.
const RULE_FILES: &[(&str, &str)] = &[
    (
        "quickstart.toml",
        include_str!("../../sharding-rules/quickstart.toml"),
    ),
    ("mod.toml", include_str!("../../sharding-rules/mod.toml")),
    (
        "range.toml",
        include_str!("../../sharding-rules/range.toml"),
    ),
    ("hash.toml", include_str!("../../sharding-rules/hash.toml")),
    (
        "consistent-hash.toml",
        include_str!("../../sharding-rules/consistent-hash.toml"),
    ),
    (
        "generated-key.toml",
        include_str!("../../sharding-rules/generated-key.toml"),
    ),
];

/// The parsed rule sets, loaded once per process (they are fixed input, not fuzzed).
pub fn rule_sets() -> &'static [Arc<rules::Rules>] {
    static RULES: OnceLock<Vec<Arc<rules::Rules>>> = OnceLock::new();
    RULES.get_or_init(|| {
        RULE_FILES
            .iter()
            .map(|(name, text)| {
                let origin = Path::new("sharding-rules").join(name);
                let rules = rules::parse_str(text, &origin)
                    .unwrap_or_else(|e| panic!("{name} does not load: {e}"));
                Arc::new(rules)
            })
            .collect()
    })
}
