#!/usr/bin/env python3
"""Two-shard transfers through dbmesh: transaction_mode xa against local, in one run.

Starts its own MariaDB (bench/run.py's, with innodb_flush_log_at_trx_commit = 1 so every
commit, prepare and decision is durable) and one dbmesh (the release build, or the binary
DBMESH_BINARY names) over two data sources, two databases of that server, the meta data
source on the first; `accounts` is sharded by uid mod 2. Each sysbench event is one transfer:
BEGIN, debit an even uid and credit an odd one (so always both data sources, locked in uid
order so transfers never deadlock), COMMIT; then the same with two even uids (one data
source: one-phase commit in xa mode). Each sysbench thread sets its session's
dbmesh_transaction_mode, and the modes alternate within every repetition. Prints the medians
of transfers per second and of transaction latency (average and 99th percentile, BEGIN to
COMMIT answered) per data-source count, mode and thread count.

With --oltp, it runs sysbench's own oltp_read_write instead, on tables the rules do not name
(so every transaction is on the default data source, ds_0): single-shard transactions, the
modes alternating the same way (`--db-ps-mode` both ways: a text statement carries its
transaction's `XA START`, a prepared one cannot).

  bench/transfers.py [--reps 3] [--seconds 10] [--threads 4 32] [--oltp]
"""
import argparse
import os
import statistics
import subprocess
import tempfile

from run import MariaDb, start_dbmesh

ACCOUNTS = 10_000

LUA = """
sysbench.cmdline.options = {
  mode = {"dbmesh_transaction_mode of every session", "xa"},
  accounts = {"number of accounts", 10000},
  shards = {"data sources per transfer: 2, or 1 (both accounts even)", 2},
}

function thread_init()
  drv = sysbench.sql.driver()
  con = drv:connect()
  con:query("SET dbmesh_transaction_mode = '" .. sysbench.opt.mode .. "'")
end

function event()
  local half = sysbench.opt.accounts / 2
  local debit = 2 * sysbench.rand.uniform(0, half - 1)
  local credit = 2 * sysbench.rand.uniform(0, half - 1) + (sysbench.opt.shards == 2 and 1 or 0)
  if credit == debit then credit = (debit + 2) % sysbench.opt.accounts end
  local first, second, d1, d2 = debit, credit, -1, 1
  if credit < debit then first, second, d1, d2 = credit, debit, 1, -1 end
  con:query("BEGIN")
  con:query(string.format("UPDATE accounts SET balance = balance + %d WHERE uid = %d", d1, first))
  con:query(string.format("UPDATE accounts SET balance = balance + %d WHERE uid = %d", d2, second))
  con:query("COMMIT")
end

function thread_done()
  con:disconnect()
end
"""

# oltp_read_write with each session's dbmesh_transaction_mode set after it connects.
OLTP_LUA = """
package.path = "/usr/share/sysbench/?.lua;" .. package.path
require("oltp_read_write")
sysbench.cmdline.options.mode = {"dbmesh_transaction_mode of every session", "xa"}
local connected = thread_init
function thread_init()
  connected()
  con:query("SET dbmesh_transaction_mode = '" .. sysbench.opt.mode .. "'")
end
"""

OLTP_TABLES = 4
OLTP_ROWS = 10_000


def rules(backend_port):
    text = f"""[proxy]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
max_connections = 4096
worker_threads = 1
meta_data_source = "ds_0"

[[users]]
name = "sbtest"
password = "sbtest"

[schema]
name = "sbtest"
default_data_source = "ds_0"
transaction_mode = "xa"
"""
    for i in range(2):
        text += f"""
[data_sources.ds_{i}]
address = "127.0.0.1:{backend_port}"
user = "root"
database = "sbtest_{i}"
pool = {{ max = 512 }}
"""
    return text + """
[tables.accounts]
kind = "sharded"
column = "uid"
algorithm = "mod"
nodes = "ds_{0..1}.accounts"
"""


def proxy_sql(port, text):
    subprocess.run(["mariadb", "--no-defaults", "-h127.0.0.1", f"-P{port}", "-usbtest", "-psbtest",
                    "sbtest", "-e", text], check=True)


def sysbench(port, threads, seconds, script_args):
    args = ["sysbench", "--db-driver=mysql", "--mysql-host=127.0.0.1", f"--mysql-port={port}",
            "--mysql-user=sbtest", "--mysql-password=sbtest", "--mysql-db=sbtest",
            "--mysql-ignore-errors=1213,1205,1402", f"--threads={threads}", f"--time={seconds}",
            "--percentile=99", "--report-interval=0", *script_args]
    out = subprocess.run(args, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"sysbench failed:\n{out.stdout}\n{out.stderr}")
    return out.stdout


def transfers(port, script, shards, mode, threads, seconds):
    return summary(sysbench(port, threads, seconds, [script, f"--mode={mode}", f"--accounts={ACCOUNTS}",
                                                     f"--shards={shards}", "run"]))


def oltp(port, script, ps_mode, mode, threads, seconds):
    return summary(sysbench(port, threads, seconds, [script, f"--mode={mode}", f"--db-ps-mode={ps_mode}",
                                                     f"--tables={OLTP_TABLES}", f"--table-size={OLTP_ROWS}",
                                                     "run"]))


def summary(stdout):
    """Transactions per second, latency average and p99 (ms), ignored errors."""
    tps = avg = p99 = errors = None
    for line in stdout.splitlines():
        s = line.strip()
        if s.startswith("transactions:"):
            tps = float(s.split("(")[1].split()[0])
        elif s.startswith("avg:"):
            avg = float(s.split()[-1])
        elif s.startswith("99th percentile:"):
            p99 = float(s.split()[-1])
        elif s.startswith("ignored errors:"):
            errors = int(s.split()[2])
    return tps, avg, p99, errors


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--threads", type=int, nargs="+", default=[4, 32])
    parser.add_argument("--oltp", action="store_true", help="oltp_read_write on one data source")
    args = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix="dbmesh-transfers-")
    db = MariaDb(workdir)
    proxy = None
    try:
        db.sql("SET GLOBAL innodb_flush_log_at_trx_commit = 1; "
               "CREATE DATABASE sbtest_0; CREATE DATABASE sbtest_1")
        proxy, port = start_dbmesh(workdir, "transfers", rules(db.port))
        if args.oltp:
            single_shard(port, workdir, args)
            return
        proxy_sql(port, "CREATE TABLE accounts (uid BIGINT PRIMARY KEY, balance BIGINT NOT NULL)")
        for start in range(0, ACCOUNTS, 1000):
            values = ", ".join(f"({uid}, 1000)" for uid in range(start, start + 1000))
            proxy_sql(port, f"INSERT INTO accounts (uid, balance) VALUES {values}")
        script = os.path.join(workdir, "transfers.lua")
        with open(script, "w") as f:
            f.write(LUA)
        results = {}
        for rep in range(args.reps):
            for shards in (2, 1):
                for threads in args.threads:
                    for mode in ("local", "xa"):
                        results.setdefault((shards, threads, mode), []).append(
                            transfers(port, script, shards, mode, threads, args.seconds))
        total = subprocess.run(["mariadb", "--no-defaults", "-h127.0.0.1", f"-P{port}", "-usbtest",
                                "-psbtest", "sbtest", "-N", "-e", "SELECT SUM(balance) FROM accounts"],
                               check=True, capture_output=True, text=True).stdout.strip()
        print(f"\nsum of balances after the runs: {total} (opened with {ACCOUNTS * 1000})")
        print(f"\n{args.reps} x {args.seconds} s per run, medians; MariaDB "
              f"innodb_flush_log_at_trx_commit = 1; both data sources on one server\n")
        table(results, "data sources", "transfers", {2: 2, 1: 1}, args.threads)
    finally:
        if proxy:
            proxy.stop()
        db.stop()


def single_shard(port, workdir, args):
    """oltp_read_write, every table on ds_0, xa against local."""
    script = os.path.join(workdir, "oltp.lua")
    with open(script, "w") as f:
        f.write(OLTP_LUA)
    sysbench(port, 4, 0, [script, f"--tables={OLTP_TABLES}", f"--table-size={OLTP_ROWS}", "prepare"])
    results = {}
    for rep in range(args.reps):
        for ps_mode in ("disable", "auto"):
            for threads in args.threads:
                for mode in ("local", "xa"):
                    results.setdefault((ps_mode, threads, mode), []).append(
                        oltp(port, script, ps_mode, mode, threads, args.seconds))
    print(f"\noltp_read_write, {OLTP_TABLES} tables of {OLTP_ROWS} rows on ds_0; {args.reps} x "
          f"{args.seconds} s per run, medians; MariaDB innodb_flush_log_at_trx_commit = 1\n")
    table(results, "statements", "transactions", {"disable": "text", "auto": "prepared"}, args.threads)


def table(results, kind_column, unit, kinds, threads_list):
    """Prints medians per kind (results' first key, shown as kinds[kind]), threads and mode."""
    print(f"| {kind_column} | threads | mode | {unit}/s | latency avg ms | latency p99 ms | errors | xa/local {unit}/s |")
    print("|---|---|---|---|---|---|---|---|")
    for kind, shown in kinds.items():
        for threads in threads_list:
            local_tps = statistics.median(r[0] for r in results[(kind, threads, "local")])
            for mode in ("local", "xa"):
                runs = results[(kind, threads, mode)]
                tps = statistics.median(r[0] for r in runs)
                print(f"| {shown} | {threads} | {mode} | {tps:.0f} | {statistics.median(r[1] for r in runs):.2f} | "
                      f"{statistics.median(r[2] for r in runs):.2f} | {sum(r[3] or 0 for r in runs)} | "
                      f"{tps / local_tps:.2f} |")


if __name__ == "__main__":
    main()
