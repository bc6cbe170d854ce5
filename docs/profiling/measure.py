#!/usr/bin/env python3
"""One measurement: start a node, run `ordersaga loadtest` against it, print one JSON line.

Besides the harness's report it records what the harness cannot see from outside:
- CPU seconds of the node, of the harness and (with --pg) of all PostgreSQL processes, over the run's
  window only (first order to last saga end; set-up and the final checks excluded), from /proc;
- with --perf-stat: fsync/fdatasync calls and context switches of the node (perf stat from the node's
  first instruction, so that every thread it starts is counted), over the same window;
- with --pg: write transactions (transaction ids consumed), WAL syncs (pg_stat_wal) and rows written
  per table (pg_stat_user_tables), per saga;
- with --perf-record FILE: a CPU profile of the node with call stacks (perf record --call-graph dwarf);
- with --statements: the statements the node sent, by shape, per saga, with their time (the node's
  `database.statement_stats_file`; the whole life of the node, so the harness's set-up and final reads too).

usage: docs/profiling/measure.py NAME [--pg] [--env KEY=VALUE]... [--bin B] [--harness H]
                                 [--perf-stat [--perf-events E,...]]
                                 [--perf-record FILE] [--statements] -- LOADTEST FLAGS...

Run it from the repository root after `cargo build --release`. Artifacts go to target/measure/NAME/.
PostgreSQL: a scratch database is created on $PGHOST_URL (default postgres://postgres@127.0.0.1:5432)
and dropped afterwards.
"""
import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from datetime import datetime

TICK = os.sysconf("SC_CLK_TCK")
SAMPLE_INTERVAL = 0.2


def cpu_of(pid):
    """User + system CPU seconds of a process, or None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICK
    except (OSError, IndexError):
        return None


def cpu_of_comm(names):
    """CPU seconds of every process whose command name is one of `names`."""
    total = 0.0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/comm") as f:
                if f.read().strip() not in names:
                    continue
        except OSError:
            continue
        total += cpu_of(pid) or 0.0
    return total


def postgres_cpu():
    return cpu_of_comm({"postgres"})


def node_env(settings, pairs):
    """The environment of the nodes and harnesses: this one without its ORDERSAGA_ variables, the
    settings every run needs, then `settings`, then the --env KEY=VALUE `pairs`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORDERSAGA_")}
    env.update({
        "ORDERSAGA_JWT_SECRET": "measure-secret-0123456789abcdef0123456789",
        "RUST_LOG": "warn",
        # the harness takes its tokens from the mock issuer, which is off by default on a server database
        "ORDERSAGA_AUTH__MOCK_ISSUER": "true",
    })
    env.update(settings)
    for pair in pairs:
        key, value = pair.split("=", 1)
        env[key] = value
    return env


def wait_ready(url, seconds):
    """Whether the node at `url` answered ready within `seconds`."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url + "/health/ready", timeout=1)
            return True
        except OSError:
            time.sleep(0.1)
    return False


def started_at(report):
    """When the harness's run began (its report's `startedAt`), in seconds since the epoch."""
    return datetime.fromisoformat(report["startedAt"].replace("Z", "")[:26] + "+00:00").timestamp()


class Postgres:
    def __init__(self, base, name):
        self.base = base.rstrip("/")
        self.db = name

    def run(self, sql, db="postgres"):
        return subprocess.run(["psql", f"{self.base}/{db}", "-Atc", sql], capture_output=True, text=True,
                              check=True).stdout.strip()

    def create(self):
        self.run(f'DROP DATABASE IF EXISTS "{self.db}" WITH (FORCE)')
        self.run(f'CREATE DATABASE "{self.db}"')
        return f"{self.base}/{self.db}"

    def drop(self):
        self.run(f'DROP DATABASE IF EXISTS "{self.db}" WITH (FORCE)')

    def counters(self):
        xid = int(self.run("select txid_current()", self.db))
        wal = int(self.run("select wal_sync from pg_stat_wal", self.db))
        rows = {}
        for line in self.run("select relname, n_tup_ins, n_tup_upd, n_tup_del from pg_stat_user_tables",
                             self.db).splitlines():
            name, *values = line.split("|")
            rows[name] = [int(v) for v in values]
        return xid, wal, rows


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name")
    parser.add_argument("--pg", action="store_true", help="run the node on a scratch PostgreSQL database")
    parser.add_argument("--env", action="append", default=[], help="KEY=VALUE for the node")
    parser.add_argument("--perf-stat", action="store_true")
    parser.add_argument("--perf-events", default="", help="more perf events to count, comma-separated")
    parser.add_argument("--perf-record", metavar="FILE")
    parser.add_argument("--statements", action="store_true", help="count the node's statements by shape")
    parser.add_argument("--port", type=int, default=18471)
    parser.add_argument("--bin", default="target/release/ordersaga")
    parser.add_argument("--harness", help="the binary whose `loadtest` drives the node [default: --bin]; "
                        "one harness for both sides of an A/B")
    argv = sys.argv[1:]
    split = argv.index("--") if "--" in argv else len(argv)
    args = parser.parse_args(argv[:split])
    loadtest_flags = argv[split + 1:]
    binary = os.path.abspath(args.bin)

    work = os.path.abspath(f"target/measure/{args.name}")
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    env = node_env({"ORDERSAGA_BIND": f"127.0.0.1:{args.port}"}, args.env)
    statements = f"{work}/statements.tsv"
    if args.statements:
        env["ORDERSAGA_DATABASE__STATEMENT_STATS_FILE"] = statements
    pg = None
    if args.pg:
        pg = Postgres(os.environ.get("PGHOST_URL", "postgres://postgres@127.0.0.1:5432"),
                      "ordersaga_measure_" + args.name.replace("-", "_"))
        env["ORDERSAGA_DATABASE_URL"] = pg.create()

    log = open(f"{work}/server.log", "w")
    events = "syscalls:sys_enter_fdatasync,syscalls:sys_enter_fsync,context-switches,task-clock"
    if args.perf_events:
        events += "," + args.perf_events
    perf_started = time.time()
    if args.perf_stat:
        wrapper = subprocess.Popen(["perf", "stat", "-I", "250", "-x,", "-o", f"{work}/perf-stat.txt", "-e", events,
                                    "--", binary, "serve"], cwd=work, env=env, stdout=log, stderr=log)
        server_pid = None
        for _ in range(200):
            try:
                children = open(f"/proc/{wrapper.pid}/task/{wrapper.pid}/children").read().split()
            except OSError:
                children = []
            if children:
                server_pid = int(children[0])
                break
            time.sleep(0.05)
    else:
        wrapper = subprocess.Popen([binary, "serve"], cwd=work, env=env, stdout=log, stderr=log)
        server_pid = wrapper.pid
    url = f"http://127.0.0.1:{args.port}"
    if not wait_ready(url, 30):
        sys.exit(f"the node did not start; see {work}/server.log")

    before = pg.counters() if pg else None
    profiler = None
    if args.perf_record:
        profiler = subprocess.Popen(["perf", "record", "-F", "499", "--call-graph", "dwarf,16384", "-o",
                                     os.path.abspath(args.perf_record), "-p", str(server_pid)],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    load_before = os.getloadavg()[0]
    harness_binary = os.path.abspath(args.harness or args.bin)
    harness = subprocess.Popen([harness_binary, "loadtest", "--url", url, "--no-progress", "--json", f"{work}/report.json"]
                               + loadtest_flags, env=env, stdout=open(f"{work}/summary.txt", "w"),
                               stderr=open(f"{work}/harness.err", "w"))
    samples = []
    done = threading.Event()

    def sample():
        while not done.is_set():
            samples.append((time.time(), cpu_of(server_pid), cpu_of(harness.pid), postgres_cpu() if pg else 0.0))
            time.sleep(SAMPLE_INTERVAL)
    sampler = threading.Thread(target=sample)
    sampler.start()
    exit_code = harness.wait()
    done.set()
    sampler.join()
    load_after = os.getloadavg()[0]
    if profiler:
        profiler.send_signal(signal.SIGINT)
        profiler.wait()
    after = None
    if pg:
        time.sleep(1.5)  # table statistics are flushed about once a second
        after = pg.counters()
    try:
        with open(f"{work}/metrics.txt", "w") as f:
            f.write(urllib.request.urlopen(url + "/metrics", timeout=5).read().decode())
    except OSError:
        pass
    if args.statements:
        time.sleep(2.5)  # the node rewrites the table every 2 s
    os.kill(server_pid, signal.SIGTERM)
    try:
        wrapper.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.kill(server_pid, signal.SIGKILL)
        wrapper.wait()

    report = json.load(open(f"{work}/report.json"))
    start = started_at(report)
    end = start + report["durationSeconds"]

    def at(moment, column):
        value = None
        for s in samples:
            if s[column] is None:
                continue
            if s[0] <= moment or value is None:
                value = s[column]
        return value or 0.0
    sagas = report["completed"] or report["accepted"] or 1
    cpu = {name: at(end, column) - at(start, column) for name, column in
           (("server", 1), ("harness", 2), ("postgres", 3))}
    out = {
        "name": args.name,
        "exit": exit_code,
        "sagasPerSecond": report["ordersPerSecond"],
        "completed": report["completed"],
        "confirmed": report["confirmed"],
        "compensated": report["compensated"],
        "durationSeconds": report["durationSeconds"],
        "completionMs": report["latencyMs"]["completion"],
        "acceptMs": report["latencyMs"]["accept"],
        "sagaMs": report["latencyMs"].get("saga"),
        "invariantsOk": report["invariants"]["ok"],
        "cpuMsPerSaga": {k: round(v * 1000 / sagas, 3) for k, v in cpu.items()},
        "loadavg": [round(load_before, 2), round(load_after, 2)],
    }
    if pg:
        xid0, wal0, rows0 = before
        xid1, wal1, rows1 = after
        per_table = {}
        for table, values in rows1.items():
            delta = [b - a for a, b in zip(rows0.get(table, [0, 0, 0]), values)]
            if any(delta):
                per_table[table] = dict(zip(("ins", "upd", "del"), (round(d / sagas, 2) for d in delta)))
        out["pg"] = {
            # minus the txid_current() of the first reading
            "writeTransactionsPerSaga": round((xid1 - xid0 - 1) / sagas, 2),
            "walSyncsPerSaga": round((wal1 - wal0) / sagas, 2),
            "rowsPerSaga": per_table,
        }
        pg.drop()
    if args.perf_stat:
        window = {}
        for line in open(f"{work}/perf-stat.txt"):
            fields = line.strip().split(",")
            if len(fields) < 4 or not fields[0][:1].isdigit():
                continue
            try:
                moment, value = perf_started + float(fields[0]), float(fields[1])
            except ValueError:
                continue
            # an interval ending at `moment` covers the 250 ms before it
            if start < moment - 0.125 <= end:
                window[fields[3]] = window.get(fields[3], 0) + value
        out["perSaga"] = {k.split(":")[-1]: round(v / sagas, 2) for k, v in window.items()}
    if args.statements:
        shapes = []
        for line in open(statements):
            count, ms, shape = line.rstrip("\n").split("\t", 2)
            shapes.append((round(int(count) / sagas, 2), round(float(ms) / sagas, 3), shape))
        out["statementsPerSaga"] = round(sum(c for c, _, _ in shapes), 2)
        out["statementMsPerSaga"] = round(sum(m for _, m, _ in shapes), 3)
        out["statements"] = [{"perSaga": c, "msPerSaga": m, "shape": shape} for c, m, shape in shapes
                             if c >= 0.01]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
