#!/usr/bin/env bash
# Builds dbmesh in release mode and runs the sysbench comparison (see bench/run.py).
#   bench/run.sh [--full | --smoke] [--reps N] [--seconds S]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
for tool in sysbench haproxy mariadbd mariadb-install-db; do
    if ! command -v "$tool" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$tool" ]; then
        echo "installing sysbench haproxy mariadb-server with apt-get" >&2
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq sysbench haproxy mariadb-server mariadb-client >/dev/null
        break
    fi
done
cargo build --release -p dbmesh
exec python3 bench/run.py "$@"
