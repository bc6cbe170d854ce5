#!/usr/bin/env python3
"""A scaling run: N nodes on one scratch PostgreSQL database and one scratch RabbitMQ vhost, each node
driven by its own `ordersaga loadtest` (its own SKUs, so each harness checks its own invariants), all
started together. Prints one JSON line.

What it reports:
- sagas/s of the deployment: the sum of the harnesses' completed sagas over the span from the first
  harness's first order to the last one's last saga end;
- each harness's saga p99 (request to saga end) and whether its invariants held;
- CPU per saga, over the same span, from /proc: all nodes together, all PostgreSQL processes, the
  RabbitMQ node (beam.smp) and the harnesses;
- PostgreSQL write transactions per saga (transaction ids consumed, the harnesses' set-up included).

usage: docs/profiling/scale.py NAME --nodes N [--bin B] [--env KEY=VALUE]... -- LOADTEST FLAGS...

Run it from the repository root after `cargo build --release`. Artifacts go to target/scale/NAME/.
PostgreSQL on $PGHOST_URL (default postgres://postgres@127.0.0.1:5432), RabbitMQ on 127.0.0.1:5672 with
guest/guest and `rabbitmqctl` on the PATH; the database and the vhost are dropped afterwards.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from measure import cpu_of, cpu_of_comm, node_env, started_at, wait_ready  # noqa: E402

SAMPLE_INTERVAL = 0.2
FIRST_PORT = 18101


def psql(base, sql, db="postgres"):
    return subprocess.run(["psql", f"{base}/{db}", "-Atc", sql], capture_output=True, text=True,
                          check=True).stdout.strip()


def rabbitmqctl(*args):
    subprocess.run(["rabbitmqctl", "-q", *args], capture_output=True, text=True, check=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name")
    parser.add_argument("--nodes", type=int, required=True)
    parser.add_argument("--bin", default="target/release/ordersaga")
    parser.add_argument("--env", action="append", default=[], help="KEY=VALUE for every node")
    argv = sys.argv[1:]
    split = argv.index("--") if "--" in argv else len(argv)
    args = parser.parse_args(argv[:split])
    loadtest_flags = argv[split + 1:]
    if args.nodes < 1:
        sys.exit("--nodes must be at least 1")
    binary = os.path.abspath(args.bin)
    work = os.path.abspath(f"target/scale/{args.name}")
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)

    scratch = "ordersaga_scale_" + args.name.replace("-", "_")
    base = os.environ.get("PGHOST_URL", "postgres://postgres@127.0.0.1:5432").rstrip("/")
    psql(base, f'DROP DATABASE IF EXISTS "{scratch}" WITH (FORCE)')
    psql(base, f'CREATE DATABASE "{scratch}"')
    subprocess.run(["rabbitmqctl", "-q", "delete_vhost", scratch], capture_output=True)
    rabbitmqctl("add_vhost", scratch)
    rabbitmqctl("set_permissions", "-p", scratch, "guest", ".*", ".*", ".*")

    env = node_env({
        "ORDERSAGA_DATABASE_URL": f"{base}/{scratch}",
        "ORDERSAGA_AMQP_URL": f"amqp://guest:guest@127.0.0.1:5672/{scratch}",
    }, args.env)

    nodes = []
    try:
        for i in range(args.nodes):
            own_env = dict(env, ORDERSAGA_BIND=f"127.0.0.1:{FIRST_PORT + i}", ORDERSAGA_NODE_ID=f"node-{i + 1}")
            log = open(f"{work}/node-{i + 1}.log", "w")
            nodes.append(subprocess.Popen([binary, "serve"], cwd=work, env=own_env, stdout=log, stderr=log))
            # One at a time: the first runs the migrations.
            url = f"http://127.0.0.1:{FIRST_PORT + i}"
            if not wait_ready(url, 60):
                sys.exit(f"node {i + 1} did not start; see {work}/node-{i + 1}.log")

        xid_before = int(psql(base, "select txid_current()", scratch))
        samples = []
        done = threading.Event()
        harnesses = []

        def sample():
            while not done.is_set():
                samples.append((time.time(), sum(cpu_of(n.pid) or 0.0 for n in nodes), cpu_of_comm({"postgres"}),
                                cpu_of_comm({"beam.smp"}), sum(cpu_of(h.pid) or 0.0 for h in harnesses)))
                time.sleep(SAMPLE_INTERVAL)
        for i in range(args.nodes):
            url = f"http://127.0.0.1:{FIRST_PORT + i}"
            harnesses.append(subprocess.Popen(
                [binary, "loadtest", "--url", url, "--no-progress", "--json", f"{work}/report-{i + 1}.json"]
                + loadtest_flags, env=env, stdout=open(f"{work}/summary-{i + 1}.txt", "w"),
                stderr=open(f"{work}/harness-{i + 1}.err", "w")))
        sampler = threading.Thread(target=sample)
        sampler.start()
        exits = [h.wait() for h in harnesses]
        done.set()
        sampler.join()
        xid_after = int(psql(base, "select txid_current()", scratch))
    finally:
        for n in nodes:
            n.terminate()
        for n in nodes:
            try:
                n.wait(timeout=20)
            except subprocess.TimeoutExpired:
                n.kill()
                n.wait()
        psql(base, f'DROP DATABASE IF EXISTS "{scratch}" WITH (FORCE)')
        subprocess.run(["rabbitmqctl", "-q", "delete_vhost", scratch], capture_output=True)

    reports = [json.load(open(f"{work}/report-{i + 1}.json")) for i in range(args.nodes)]
    start = min(started_at(r) for r in reports)
    end = max(started_at(r) + r["durationSeconds"] for r in reports)
    completed = sum(r["completed"] for r in reports)

    def at(moment, column):
        value = None
        for s in samples:
            if s[0] <= moment or value is None:
                value = s[column]
        return value or 0.0
    sagas = completed or 1
    cpu = {name: round((at(end, column) - at(start, column)) * 1000 / sagas, 3) for name, column in
           (("nodes", 1), ("postgres", 2), ("rabbitmq", 3), ("harnesses", 4))}
    latency = "saga" if "saga" in reports[0]["latencyMs"] else "completion"
    print(json.dumps({
        "name": args.name,
        "nodes": args.nodes,
        "exits": exits,
        "completed": completed,
        "spanSeconds": round(end - start, 3),
        "sagasPerSecond": round(completed / (end - start), 1) if end > start else 0.0,
        "perNodeSagasPerSecond": [r["ordersPerSecond"] for r in reports],
        "p99Ms": [r["latencyMs"][latency]["p99"] for r in reports],
        "p50Ms": [r["latencyMs"][latency]["p50"] for r in reports],
        "invariantsOk": all(r["invariants"]["ok"] for r in reports),
        "cpuMsPerSaga": cpu,
        # transaction ids consumed (write transactions), minus the first reading's own
        "pgWriteTransactionsPerSaga": round((xid_after - xid_before - 1) / sagas, 2),
    }))


main()
