#!/usr/bin/env python3
"""Ratios of ordersaga runs against a peer's, from one series on one machine.

    compare.py --ordersaga r1.json r2.json r3.json --peer p1.json p2.json p3.json

`--ordersaga` takes the reports of `ordersaga loadtest --json FILE`; `--peer` files hold the JSON line the
Restate peer's `run.sh` prints (`sagasPerSecond`, `p50Ms`, `p99Ms`). It prints each side's runs, their
medians, and the ratios of the medians (ordersaga / peer for throughput, peer / ordersaga for latency, so
that above 1 is better for ordersaga either way). Latency: the peer's runs from its request to the saga's
result; ordersaga's is the same span (`latencyMs.saga`, from the order's request to the saga's end) when the
report has it, else its completion (from the `201` to the saga's end). Like for like: a run with
`--whole-sagas`, which keeps `--concurrency` sagas in flight as the peer's driver does.
"""

import argparse
import json
import statistics
import sys


def read_json(path):
    with open(path, encoding="utf-8") as f:
        text = f.read().strip()
    # The peer's output may hold log lines before its one JSON line.
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                break
    return json.loads(text)


def ordersaga_run(report):
    latency = report["latencyMs"].get("saga") or report["latencyMs"]["completion"]
    return {
        "sagas/s": report["ordersPerSecond"],
        "p50 ms": latency["p50"],
        "p99 ms": latency["p99"],
        "ok": report["invariants"]["ok"],
    }


def peer_run(line):
    return {
        "sagas/s": line["sagasPerSecond"],
        "p50 ms": line["p50Ms"],
        "p99 ms": line["p99Ms"],
        "ok": line.get("invariantsOk", True),
    }


def describe(name, runs):
    print(f"{name}: {len(runs)} run(s)")
    for key in ("sagas/s", "p50 ms", "p99 ms"):
        values = [r[key] for r in runs]
        shown = " / ".join(f"{v:.1f}" for v in values)
        print(f"  {key:8} {shown}   median {statistics.median(values):.1f}")
    if not all(r["ok"] for r in runs):
        print("  invariants: VIOLATED in at least one run")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ordersaga", nargs="+", required=True, metavar="REPORT")
    parser.add_argument("--peer", nargs="+", required=True, metavar="LINE")
    args = parser.parse_args()
    ours = [ordersaga_run(read_json(p)) for p in args.ordersaga]
    theirs = [peer_run(read_json(p)) for p in args.peer]
    describe("ordersaga", ours)
    describe("peer", theirs)
    med = lambda runs, key: statistics.median(r[key] for r in runs)
    throughput = med(ours, "sagas/s") / med(theirs, "sagas/s")
    p50 = med(theirs, "p50 ms") / med(ours, "p50 ms")
    p99 = med(theirs, "p99 ms") / med(ours, "p99 ms")
    print("ratios of the medians (above 1: ordersaga is ahead)")
    print(f"  throughput  {throughput:.2f}x")
    print(f"  p50         {p50:.2f}x")
    print(f"  p99         {p99:.2f}x")
    return 0 if all(r["ok"] for r in ours + theirs) else 1


if __name__ == "__main__":
    sys.exit(main())
