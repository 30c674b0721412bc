#!/usr/bin/env bash
# The test command of dbmesh: installs what the tests need when it is missing, then builds
# everything, runs every test and checks that the benches compile (and lints, if asked).
#
#   scripts/test.sh
#
# On a fresh Debian machine, as root (or with password-less sudo), it installs mariadb-server,
# mariadb-client, sysbench and the client matrix's PHP, Perl and Node.js with apt-get, PyMySQL,
# mysql-connector-python and mysqlclient with pip, the Node.js drivers with npm, and
# cargo-nextest and (with a nightly toolchain) cargo-fuzz with cargo, each only when missing, and makes sure the local MariaDB on
# 127.0.0.1:3306 answers. The tests start their own mariadbd processes (crates/testkit).
# `prometheus` (apt-get, when promtool is missing) checks the alert rules in deploy/prometheus.
#
# Environment:
#   DBMESH_TEST_BACKENDS=host:port[,...]  run the tests against these running servers instead
#                                         of starting mariadbd (then the server package and the
#                                         local MariaDB are not needed); see crates/testkit
#   DBMESH_TEST_BACKEND_USER / _PASSWORD  credentials for them (default root, empty)
#   DBMESH_LINT=1                         also run `cargo fmt --check` and clippy -D warnings
#   DBMESH_FUZZ_SECONDS=N                 run each fuzz target N s (default 5; needs nightly)
#   CI=true                               may set up root@127.0.0.1 on the local MariaDB
#
# Exits non-zero if anything fails; the last line counts the tests (`tests: N passed, N failed`).
set -Eeuo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
started_at=$SECONDS

step() { printf '\n==> %s\n' "$*"; }
note() { printf '    %s\n' "$*"; }
die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}
have() { command -v "$1" >/dev/null 2>&1; }

if [ "$(id -u)" = 0 ]; then
    SUDO=()
elif have sudo && sudo -n true 2>/dev/null; then
    SUDO=(sudo -n)
else
    SUDO=(false)
fi
as_root() { "${SUDO[@]}" "$@"; }

external=${DBMESH_TEST_BACKENDS:-}

# --- limits -----------------------------------------------------------------------------
# Many test servers and proxy connections at once need file descriptors.
step "Raising the open files limit"
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
note "open files limit: $(ulimit -n)"

# --- system packages --------------------------------------------------------------------
step "Checking MariaDB, sysbench and Python"
have_mariadbd() { have mariadbd || [ -x /usr/sbin/mariadbd ]; }
packages=()
if [ -z "$external" ] && ! have_mariadbd; then packages+=(mariadb-server); fi
if ! have mariadb; then packages+=(mariadb-client); fi
if ! have sysbench; then packages+=(sysbench); fi
if ! have nft && [ ! -x /usr/sbin/nft ]; then packages+=(nftables); fi
if [ -z "$external" ] && ! have haproxy && [ ! -x /usr/sbin/haproxy ]; then packages+=(haproxy); fi
if ! have python3; then packages+=(python3 python3-pip); fi
# promtool checks the alert rules in deploy/prometheus.
if ! have promtool; then packages+=(prometheus); fi
# The client matrix (crates/dbmesh/tests/clients): PHP PDO, Perl DBI, node, and what
# mysqlclient builds against.
if ! have php || ! php -r 'exit(in_array("mysql", PDO::getAvailableDrivers()) ? 0 : 1);' 2>/dev/null; then
    packages+=(php-cli php-mysql)
fi
if ! perl -MDBD::MariaDB -e 1 2>/dev/null; then packages+=(libdbd-mariadb-perl); fi
if ! have node || ! have npm; then packages+=(nodejs npm); fi
if ! python3 -c 'import MySQLdb' 2>/dev/null; then packages+=(libmariadb-dev pkg-config); fi
if [ "${#packages[@]}" -gt 0 ]; then
    step "Installing ${packages[*]} with apt-get"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq ||
        die "apt-get update failed (are you root?)"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${packages[@]}" >/dev/null || die "apt-get install ${packages[*]} failed"
fi
note "$(mariadb --version)"
note "$(sysbench --version)"

if ! python3 -c 'import pymysql, mysql.connector, MySQLdb' 2>/dev/null; then
    step "Installing PyMySQL, mysql-connector-python and mysqlclient with pip"
    python3 -m pip install --quiet pymysql mysql-connector-python mysqlclient 2>/dev/null ||
        python3 -m pip install --quiet --break-system-packages pymysql mysql-connector-python mysqlclient ||
        die "pip install failed"
fi

node_clients=crates/dbmesh/tests/clients/node
if [ ! -d "$node_clients/node_modules" ]; then
    step "Installing the Node.js drivers of the client matrix (npm ci)"
    (cd "$node_clients" && npm ci --no-audit --no-fund --loglevel=error) || die "npm ci failed"
fi

# --- the local MariaDB on 127.0.0.1:3306 -------------------------------------------------
local_sql() { mariadb --no-defaults --protocol=TCP -h127.0.0.1 -P3306 -uroot --connect-timeout=2 "$@"; }
local_alive() { mariadb-admin --no-defaults --protocol=TCP -h127.0.0.1 -P3306 --connect-timeout=2 ping >/dev/null 2>&1; }

if [ -n "$external" ]; then
    step "Using the backends in DBMESH_TEST_BACKENDS=$external"
else
    step "Checking the local MariaDB on 127.0.0.1:3306"
    if ! local_alive; then
        note "not answering; starting /usr/sbin/mariadbd"
        as_root install -d -o mysql -g mysql /run/mysqld 2>/dev/null || as_root mkdir -p /run/mysqld
        as_root start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd ||
            die "cannot start mariadbd"
        for _ in $(seq 60); do
            local_alive && break
            sleep 0.5
        done
        local_alive || die "the local MariaDB on 127.0.0.1:3306 did not start within 30 s"
    fi
    if ! local_sql -e 'SELECT 1' >/dev/null 2>&1; then
        # Debian's root@localhost authenticates by unix socket only; the tests and the README's
        # quickstart log in over TCP as root with an empty password, as on the project's machines.
        if [ "${CI:-}" = true ] && as_root mariadb --no-defaults -uroot -e 'SELECT 1' >/dev/null 2>&1; then
            note "CI: allowing root@127.0.0.1 with an empty password on the local MariaDB"
            as_root mariadb --no-defaults -uroot -e "
                CREATE USER IF NOT EXISTS 'root'@'127.0.0.1' IDENTIFIED VIA mysql_native_password USING PASSWORD('');
                GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;"
        else
            note "warning: root cannot log in over TCP with an empty password; to allow it:"
            note "  sudo mariadb -e \"CREATE USER 'root'@'127.0.0.1' IDENTIFIED BY ''; GRANT ALL ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION\""
        fi
    fi
    note "$(local_sql -N -e 'SELECT CONCAT(CURRENT_USER(), " on ", VERSION())' 2>&1 || true)"
fi

# --- Rust tools ---------------------------------------------------------------------------
step "Checking the Rust toolchain"
# shellcheck disable=SC1091
if ! have cargo && [ -f "$HOME/.cargo/env" ]; then . "$HOME/.cargo/env"; fi
have cargo || die "cargo not found: install Rust (https://rustup.rs)"
note "$(cargo --version)"
runner=nextest
if ! cargo nextest --version >/dev/null 2>&1; then
    step "Installing cargo-nextest (cargo install cargo-nextest --locked)"
    if ! cargo install cargo-nextest --locked; then
        note "warning: cannot install cargo-nextest; falling back to cargo test"
        runner=cargo-test
    fi
fi

# --- build, test, benches, lint ------------------------------------------------------------
step "cargo build --workspace --all-targets"
# --all-targets compiles the benches too (dev profile): they must compile.
cargo build --workspace --all-targets

failed_steps=()
log_dir=$(mktemp -d)
trap 'rm -rf "$log_dir"' EXIT
passed=0
failed=0

# Add up cargo test's "test result: ok. N passed; M failed; ..." lines of a log.
count_cargo_test() {
    local p f
    while read -r p f; do
        passed=$((passed + p))
        failed=$((failed + f))
    done < <(sed -nE 's/^test result: [A-Za-z]+\. ([0-9]+) passed; ([0-9]+) failed.*/\1 \2/p' "$1")
}

if [ "$runner" = nextest ]; then
    step "cargo nextest run --workspace --no-fail-fast"
    if ! cargo nextest run --workspace --no-fail-fast 2>&1 | tee "$log_dir/nextest.log"; then
        failed_steps+=(tests)
    fi
    # "Summary [  12.345s] 40 tests run: 38 passed, 1 failed, 1 timed out, 2 skipped"
    summary=$(grep -E 'Summary \[' "$log_dir/nextest.log" | tail -n 1 || true)
    for outcome in passed failed 'timed out'; do
        n=$(sed -nE "s/.* ([0-9]+) $outcome.*/\1/p" <<<"$summary")
        if [ "$outcome" = passed ]; then
            passed=$((passed + ${n:-0}))
        else
            failed=$((failed + ${n:-0}))
        fi
    done
    # nextest does not run doctests.
    step "cargo test --workspace --doc"
    if ! cargo test --workspace --doc 2>&1 | tee "$log_dir/doctest.log"; then
        failed_steps+=(doctests)
    fi
    count_cargo_test "$log_dir/doctest.log"
else
    step "cargo test --workspace --no-fail-fast"
    if ! cargo test --workspace --no-fail-fast 2>&1 | tee "$log_dir/test.log"; then
        failed_steps+=(tests)
    fi
    count_cargo_test "$log_dir/test.log"
fi

step "promtool check rules deploy/prometheus/*.yml"
promtool check rules deploy/prometheus/*.yml || failed_steps+=(alert-rules)

# The cargo-fuzz targets (fuzz/, nightly only), a few seconds each: a crash fails the run.
fuzz_seconds=${DBMESH_FUZZ_SECONDS:-5}
step "scripts/fuzz.sh $fuzz_seconds (each fuzz target for $fuzz_seconds s)"
if cargo +nightly --version >/dev/null 2>&1 && ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    # About a minute and a half on the project's machines.
    note "installing cargo-fuzz (cargo install cargo-fuzz --locked)"
    cargo install cargo-fuzz --locked || note "warning: cannot install cargo-fuzz"
fi
fuzz_status=0
scripts/fuzz.sh "$fuzz_seconds" || fuzz_status=$?
case $fuzz_status in
    0) ;;
    3) note "fuzzing skipped (see the reason above)" ;;
    *) failed_steps+=(fuzz) ;;
esac

if [ -z "$external" ]; then
    # The benchmark's smoke mode: a few seconds of sysbench against MariaDB, haproxy and dbmesh
    # (pass-through and sharded), failing on any error. Numbers are recorded by
    # `bench/run.sh`, not asserted here, so the debug binary built above serves (a release
    # build only for this cost CI minutes).
    step "bench/run.py --smoke (sysbench through every target, a few seconds each)"
    DBMESH_BINARY=target/debug/dbmesh python3 bench/run.py --smoke || failed_steps+=(bench-smoke)
fi

if [ "${DBMESH_LINT:-}" = 1 ]; then
    step "cargo fmt --all --check"
    cargo fmt --all --check || failed_steps+=(fmt)
    step "cargo clippy --workspace --all-targets -- -D warnings"
    cargo clippy --workspace --all-targets -- -D warnings || failed_steps+=(clippy)
fi

step "Done in $((SECONDS - started_at)) s"
if [ "${#failed_steps[@]}" -gt 0 ]; then
    note "FAILED: ${failed_steps[*]}"
fi
echo "tests: $passed passed, $failed failed"
[ "${#failed_steps[@]}" -eq 0 ]
