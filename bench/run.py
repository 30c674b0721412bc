#!/usr/bin/env python3
"""dbmesh benchmark: sysbench through the proxy vs direct vs haproxy (mode tcp), in one run.

Starts its own MariaDB (temp datadir, free port), haproxy relaying to it, and dbmesh (release
build, or the binary DBMESH_BINARY names) in pass-through and, where supported, sharded mode; then runs sysbench against every
target, interleaved (each repetition runs every target back to back), and prints a Markdown
table of medians: QPS, p95 latency, ratios to direct and to haproxy, and CPU time per statement
of the proxy process (dbmesh or haproxy).

  bench/run.sh            # short mode: oltp_point_select, 4 threads, both PS modes, 3 x 5 s
  bench/run.sh --full     # every test x {prepared, plain} x {4, 32} threads, 3 x 10 s
  bench/run.sh --smoke    # a few seconds per target, for CI: checks it runs, records nothing
  bench/run.py --instructions BIN [BIN...]
                          # instructions per statement of each dbmesh binary under callgrind:
                          # repeatable on a busy machine, for before/after comparisons
"""
import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TICKS = os.sysconf("SC_CLK_TCK")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {port} after {timeout}s")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


class MariaDb:
    def __init__(self, workdir):
        self.dir = os.path.join(workdir, "mariadb")
        os.makedirs(self.dir)
        self.port = free_port()
        subprocess.run(["mariadb-install-db", "--no-defaults", f"--datadir={self.dir}/data", "--user=root",
                        "--auth-root-authentication-method=normal", "--skip-test-db"],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        mariadbd = shutil.which("mariadbd") or "/usr/sbin/mariadbd"
        self.proc = subprocess.Popen([mariadbd, "--no-defaults", f"--datadir={self.dir}/data", "--user=root",
                                      f"--port={self.port}", "--bind-address=127.0.0.1",
                                      f"--socket={self.dir}/sock", "--innodb-buffer-pool-size=256M",
                                      "--innodb-flush-log-at-trx-commit=2", "--max-connections=2000",
                                      # A transaction spanning shards can deadlock with another
                                      # across shards, which no single server sees: it waits
                                      # out this timeout and sysbench retries it (see
                                      # docs/benchmarks.md).
                                      "--innodb-lock-wait-timeout=1",
                                      "--skip-name-resolve", "--performance-schema=OFF"],
                                     stdout=subprocess.DEVNULL, stderr=open(f"{self.dir}/err.log", "w"))
        wait_port(self.port)
        time.sleep(0.5)
        self.sql("CREATE USER IF NOT EXISTS 'root'@'127.0.0.1' IDENTIFIED BY ''; "
                 "GRANT ALL ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION; "
                 "CREATE DATABASE IF NOT EXISTS sbtest")

    def sql(self, text):
        subprocess.run(["mariadb", "--no-defaults", f"--socket={self.dir}/sock", "-uroot", "-e", text], check=True)

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=60)


class Proc:
    def __init__(self, args, **kw):
        self.proc = subprocess.Popen(args, **kw)

    @property
    def pid(self):
        return self.proc.pid

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def start_haproxy(workdir, backend_port):
    port = free_port()
    cfg = os.path.join(workdir, "haproxy.cfg")
    with open(cfg, "w") as f:
        f.write(f"""global
    maxconn 4096
defaults
    mode tcp
    timeout connect 5s
    timeout client 1h
    timeout server 1h
frontend mysql
    bind 127.0.0.1:{port}
    default_backend db
backend db
    server db1 127.0.0.1:{backend_port}
""")
    p = Proc(["haproxy", "-f", cfg, "-db"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port)
    return p, port


def dbmesh_binary():
    """The release build, or DBMESH_BINARY (CI's smoke run uses the debug build)."""
    return os.environ.get("DBMESH_BINARY") or os.path.join(
        os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "release", "dbmesh")


def start_dbmesh(workdir, name, rules, command=None):
    path = os.path.join(workdir, f"{name}.toml")
    with open(path, "w") as f:
        f.write(rules)
    command = command or [dbmesh_binary()]
    p = Proc(command + ["serve", "--config", path], stdout=subprocess.PIPE, stderr=open(os.path.join(workdir, f"{name}.log"), "w"),
             env={**os.environ, "RUST_LOG": "warn"}, text=True)
    line = p.proc.stdout.readline()
    if not line.startswith("dbmesh ready"):
        raise RuntimeError(f"dbmesh {name} did not start: {line!r}; see {workdir}/{name}.log")
    port = int(line.split("mysql=")[1].split()[0].rsplit(":", 1)[1])
    return p, port


def passthrough_rules(backend_port):
    return f"""[proxy]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
max_connections = 4096
# One event loop: on a small machine shared with the database and sysbench it costs less CPU
# per statement than one per core (see docs/benchmarks.md).
worker_threads = 1

[[users]]
name = "sbtest"
password = "sbtest"

[schema]
name = "sbtest"
default_data_source = "main"

[data_sources.main]
address = "127.0.0.1:{backend_port}"
user = "root"
database = "sbtest"
pool = {{ max = 512 }}
"""


SHARDS = 4


def sharded_rules(backend_port, tables):
    """sysbench's tables sharded by id (mod 4) over 4 databases of the same server."""
    text = passthrough_rules(backend_port).replace('default_data_source = "main"', 'default_data_source = "ds_0"')
    text = text.split("[data_sources.main]")[0]
    for i in range(SHARDS):
        text += f"""
[data_sources.ds_{i}]
address = "127.0.0.1:{backend_port}"
user = "root"
database = "sbtest_{i}"
pool = {{ max = 512 }}
"""
    for t in range(1, tables + 1):
        text += f"""
[tables.sbtest{t}]
kind = "sharded"
column = "id"
algorithm = "mod"
nodes = "ds_{{0..{SHARDS - 1}}}.sbtest{t}"
"""
    return text


def distribute(db, tables):
    """Copies the prepared sbtest tables into the shard databases, each row where id mod 4 says."""
    statements = []
    for i in range(SHARDS):
        statements.append(f"DROP DATABASE IF EXISTS sbtest_{i}; CREATE DATABASE sbtest_{i};")
        for t in range(1, tables + 1):
            statements.append(f"CREATE TABLE sbtest_{i}.sbtest{t} LIKE sbtest.sbtest{t}; "
                              f"INSERT INTO sbtest_{i}.sbtest{t} SELECT * FROM sbtest.sbtest{t} WHERE id % {SHARDS} = {i};")
    db.sql(" ".join(statements))


def sysbench(port, user, password, test, threads, seconds, ps_mode, tables, table_size, action="run", events=0):
    args = ["sysbench", "--db-driver=mysql", "--mysql-host=127.0.0.1", f"--mysql-port={port}",
            f"--mysql-user={user}", f"--mysql-password={password}", "--mysql-db=sbtest",
            f"--tables={tables}", f"--table-size={table_size}", f"--threads={threads}",
            f"--time={seconds}", f"--events={events}", f"--db-ps-mode={ps_mode}", "--percentile=95", "--report-interval=0", test, action]
    out = subprocess.run(args, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"sysbench {' '.join(args)} failed:\n{out.stdout}\n{out.stderr}")
    return out.stdout


def parse(out):
    qps = p95 = queries = errors = None
    for line in out.splitlines():
        s = line.strip()
        if s.startswith("queries:"):
            queries = int(s.split()[1])
            qps = float(s.split("(")[1].split()[0])
        elif s.startswith("95th percentile:"):
            p95 = float(s.split()[-1])
        elif s.startswith("ignored errors:"):
            errors = int(s.split()[2])
    return qps, p95, queries, errors


def callgrind_total(path):
    with open(path) as f:
        for line in f:
            if line.startswith(("summary:", "totals:")):
                return int(line.split()[1])
    raise RuntimeError(f"no instruction total in {path}")


def instructions(binaries, tables=4, table_size=10000, short=300, long=1500):
    """Instructions the proxy executes per statement, counted by callgrind: the difference
    between a long and a short run of the same workload (one sysbench thread) divided by the
    difference in statements, so start-up and connection set-up cancel out. Unlike CPU time it
    does not depend on what else the machine is doing."""
    workdir = tempfile.mkdtemp(prefix="dbmesh-instr-")
    db = MariaDb(workdir)
    try:
        db.sql("CREATE USER IF NOT EXISTS 'sbtest'@'127.0.0.1' IDENTIFIED BY 'sbtest'; GRANT ALL ON *.* TO 'sbtest'@'127.0.0.1'")
        sysbench(db.port, "sbtest", "sbtest", "oltp_common", 1, 1, "disable", tables, table_size, "prepare")
        distribute(db, tables)
        layouts = [("pass-through", passthrough_rules(db.port)), ("sharded x4", sharded_rules(db.port, tables))]
        print("| test | ps mode | layout | binary | instructions/stmt | vs first |")
        print("|---|---|---|---|---|---|")
        for mode in ["auto", "disable"]:
            for layout, rules in layouts:
                first = None
                for binary in binaries:
                    totals = []
                    for events in (short, long):
                        out = os.path.join(workdir, "callgrind.out")
                        proxy, port = start_dbmesh(workdir, "instr", rules,
                                                   ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", binary])
                        result = sysbench(port, "sbtest", "sbtest", "oltp_point_select", 1, 0, mode, tables, table_size,
                                          events=events)
                        proxy.proc.terminate()
                        proxy.proc.wait(timeout=120)
                        totals.append((callgrind_total(out), parse(result)[2]))
                    per_statement = (totals[1][0] - totals[0][0]) / (totals[1][1] - totals[0][1])
                    first = first or per_statement
                    print(f"| oltp_point_select | {'prepared' if mode == 'auto' else 'plain'} | {layout} | {binary} "
                          f"| {per_statement:,.0f} | {per_statement / first:.3f} |", flush=True)
    finally:
        db.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--instructions", nargs="+", metavar="BINARY",
                    help="count instructions per statement of these dbmesh binaries under callgrind")
    ap.add_argument("--full", action="store_true")
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--reps", type=int)
    ap.add_argument("--seconds", type=int)
    args = ap.parse_args()
    if args.instructions:
        instructions(args.instructions)
        return
    if args.full:
        tests = ["oltp_point_select", "oltp_read_only", "oltp_read_write", "oltp_insert"]
        threads_list, reps, seconds = [4, 32], 3, 10
    elif args.smoke:
        tests, threads_list, reps, seconds = ["oltp_point_select"], [4], 1, 2
    else:
        tests, threads_list, reps, seconds = ["oltp_point_select"], [4], 3, 5
    reps = args.reps or reps
    seconds = args.seconds or seconds
    tables, table_size = 4, 10000

    workdir = tempfile.mkdtemp(prefix="dbmesh-bench-")
    procs = []
    db = MariaDb(workdir)
    try:
        haproxy, haproxy_port = start_haproxy(workdir, db.port)
        procs.append(haproxy)
        passthrough, passthrough_port = start_dbmesh(workdir, "passthrough", passthrough_rules(db.port))
        procs.append(passthrough)
        db.sql("CREATE USER IF NOT EXISTS 'sbtest'@'127.0.0.1' IDENTIFIED BY 'sbtest'; GRANT ALL ON *.* TO 'sbtest'@'127.0.0.1'")
        sysbench(db.port, "sbtest", "sbtest", "oltp_common", 1, 1, "disable", tables, table_size, "prepare")
        distribute(db, tables)
        sharded, sharded_port = start_dbmesh(workdir, "sharded", sharded_rules(db.port, tables))
        procs.append(sharded)
        targets = [
            ("direct", db.port, None),
            ("haproxy-tcp", haproxy_port, haproxy.pid),
            ("dbmesh pass-through", passthrough_port, passthrough.pid),
            ("dbmesh sharded x4", sharded_port, sharded.pid),
        ]
        results = {}
        for rep in range(reps):
            for test in tests:
                for threads in threads_list:
                    for mode in ["auto", "disable"]:
                        for name, port, pid in targets:
                            before = cpu_seconds(pid) if pid else 0.0
                            out = sysbench(port, "sbtest", "sbtest", test, threads, seconds, mode, tables, table_size)
                            cpu = (cpu_seconds(pid) - before) if pid else None
                            qps, p95, queries, errors = parse(out)
                            # sysbench retries deadlocks (1213) and lock waits (1205) and counts
                            # them as ignored errors; under contention a server has them too, so
                            # they are reported. The smoke run (point selects) allows none.
                            if errors and args.smoke:
                                raise RuntimeError(f"{name}: {errors} errors in {test}")
                            cpu_us = cpu / queries * 1e6 if cpu is not None and queries else None
                            results.setdefault((test, threads, mode, name), []).append((qps, p95, cpu_us, errors or 0))
                            print(f"rep {rep + 1} {test} t={threads} ps={mode} {name}: {qps:.0f} qps, p95 {p95} ms"
                                  + (f", {cpu_us:.1f} us CPU/stmt" if cpu_us is not None else ""), file=sys.stderr)
        if args.smoke:
            print("smoke: every target ran without errors")
            return
        print(f"\nsysbench {tables} tables x {table_size} rows, {seconds} s per run, median of {reps} interleaved repetitions\n")
        print("| test | threads | ps mode | target | QPS | p95 ms | vs direct | vs haproxy | proxy CPU µs/stmt | ignored errors |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        for test in tests:
            for threads in threads_list:
                for mode in ["auto", "disable"]:
                    med = {}
                    for name, _, _ in targets:
                        rows = results.get((test, threads, mode, name))
                        if not rows:
                            continue
                        qps = statistics.median(r[0] for r in rows)
                        p95 = statistics.median(r[1] for r in rows)
                        cpus = [r[2] for r in rows if r[2] is not None]
                        errors = sum(r[3] for r in rows)
                        med[name] = (qps, p95, statistics.median(cpus) if cpus else None, errors)
                    for name in med:
                        qps, p95, cpu, errors = med[name]
                        print(f"| {test} | {threads} | {'prepared' if mode == 'auto' else 'plain'} | {name} | {qps:.0f} | {p95:.2f} "
                              f"| {qps / med['direct'][0]:.2f} | {qps / med['haproxy-tcp'][0]:.2f} | {'' if cpu is None else f'{cpu:.1f}'} | {errors} |")
    finally:
        for p in procs:
            p.stop()
        db.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
