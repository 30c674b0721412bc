#!/usr/bin/env bash
# Runs the cargo-fuzz targets in fuzz/ (docs/security.md describes them), each for a bounded
# time, and fails if any finds a crash (the input is left in fuzz/artifacts/<target>/).
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET ...]     (default: 10 s, every target)
#
# Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz --locked`); without
# them it says so and exits 3. Corpora grow in fuzz/corpus/<target>/ between runs; the
# router's and lexer's start from the SQL of the router's golden files.
set -Eeuo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../fuzz"
seconds=${1:-10}
shift || true
targets=("$@")
if [ "${#targets[@]}" -eq 0 ]; then
    targets=(handshake stmt_execute lexer router merge_rows)
fi

if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "fuzz: skipped: no nightly toolchain (rustup toolchain install nightly)"
    exit 3
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "fuzz: skipped: cargo-fuzz is not installed (cargo install cargo-fuzz --locked)"
    exit 3
fi

# Release code with debug assertions and overflow checks (a wrapped integer is a finding), and
# no sanitizer: the crates forbid unsafe code, so AddressSanitizer would only halve the speed.
flags=(--sanitizer none --debug-assertions)
cargo +nightly fuzz build "${flags[@]}"

# Seeds: each statement of the router's golden files, after the target's selector byte.
seed() {
    local dir=corpus/$1
    [ -d "$dir" ] && return
    mkdir -p "$dir"
    awk '/^-- /{sql=""; next} /^----$/{print sql; sql=""; next} /^[@#]/{next} NF{sql = sql (sql ? " " : "") $0}' \
        ../crates/router/tests/golden/*.txt | sort -u | {
        local i=0
        while IFS= read -r sql; do
            printf "\\x$(printf %02x $((i % 256)))%s" "$sql" >"$dir/golden-$i"
            i=$((i + 1))
        done
    }
}
seed router
seed lexer

for target in "${targets[@]}"; do
    extra=()
    case $target in router | lexer) extra=(-dict=sql.dict) ;; esac
    printf '\n==> fuzz %s for %s s\n' "$target" "$seconds"
    log=artifacts/$target.log
    mkdir -p artifacts
    status=0
    cargo +nightly fuzz run "${flags[@]}" "$target" -- \
        -max_total_time="$seconds" -print_final_stats=1 "${extra[@]}" >"$log" 2>&1 || status=$?
    grep -E '^(stat::number_of_executed_units|stat::peak_rss_mb|Done|SUMMARY|thread|artifact_prefix|Test unit)' "$log" || true
    if [ "$status" -ne 0 ]; then
        tail -n 40 "$log"
        echo "fuzz: $target failed (exit $status); the input is in fuzz/artifacts/$target/"
        exit 1
    fi
done
