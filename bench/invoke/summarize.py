#!/usr/bin/env python3
"""Turns bench/invoke/run.sh's raw wrk results into the table it prints and
the markdown file it writes.

  summarize.py RESULTS.jsonl META.json OUT.md

RESULTS.jsonl has one line per wrk run: {"target", "c", "round", and the
BENCH_RESULT fields of bench/lib/post.lua}. With several rounds, each cell is the
median over rounds. Ratios compare tamaya to the nginx proxy pair measured in
the same run, which is the only comparison that survives a shared, noisy
machine.
"""

import json
import statistics
import sys

REFERENCE = "nginx"
TARGETS = [
    ("nginx", "nginx proxy → nginx (reference)"),
    ("native", "tamaya native-echo (provided, C)"),
    ("python", "tamaya py-echo (python3)"),
]


def load(path):
    runs = []
    with open(path) as f:
        for line in f:
            if line.strip():
                runs.append(json.loads(line))
    return runs


def cell(runs, target, c):
    """Median req/s, p50, p99 over rounds, plus the error count summed."""
    mine = [r for r in runs if r["target"] == target and r["c"] == c]
    if not mine:
        return None
    rps = [r["requests"] / (r["duration_us"] / 1e6) for r in mine]
    errors = sum(r["err_connect"] + r["err_read"] + r["err_write"] + r["err_status"] +
                 r["err_timeout"] + r["function_errors"] for r in mine)
    return {
        "rps": statistics.median(rps),
        "rps_min": min(rps),
        "rps_max": max(rps),
        "p50": statistics.median(r["p50_us"] for r in mine),
        "p99": statistics.median(r["p99_us"] for r in mine),
        "requests": sum(r["requests"] for r in mine),
        "errors": errors,
        "rounds": len(mine),
    }


def fmt_us(us):
    return f"{us / 1000:.1f} ms" if us >= 10_000 else f"{us:,.0f} µs"


def render(runs, meta):
    levels = sorted({r["c"] for r in runs}, reverse=True)
    high, low = max(levels), min(levels)
    cells = {(t, c): cell(runs, t, c) for t, _ in TARGETS for c in levels}
    rounds = max(x["rounds"] for x in cells.values() if x)

    lines = []
    spread = " (min–max)" if rounds > 1 else ""
    lines.append(f"| target | c | req/s{spread} | p50 | p99 | errors |")
    lines.append("| --- | ---: | ---: | ---: | ---: | ---: |")
    for c in levels:
        for t, label in TARGETS:
            x = cells[(t, c)]
            if x is None:
                lines.append(f"| {label} | {c} | missing | | | |")
                continue
            rps = f"{x['rps']:,.0f}"
            if rounds > 1:
                rps += f" ({x['rps_min']:,.0f}–{x['rps_max']:,.0f})"
            lines.append(f"| {label} | {c} | {rps} | {fmt_us(x['p50'])} | {fmt_us(x['p99'])} "
                         f"| {x['errors']} |")

    lines.append("")
    lines.append(f"| tamaya vs nginx | throughput at c={high} | req/s at c={low} "
                 f"| p50 at c={low}: difference | p50 at c={low}: ratio "
                 f"| p99 at c={low}: difference |")
    lines.append("| --- | ---: | ---: | ---: | ---: | ---: |")
    ref_high, ref_low = cells[(REFERENCE, high)], cells[(REFERENCE, low)]
    for t, label in TARGETS:
        if t == REFERENCE:
            continue
        mine_high, mine_low = cells[(t, high)], cells[(t, low)]
        if not (mine_high and mine_low and ref_high and ref_low):
            lines.append(f"| {label} | missing | | | | |")
            continue
        lines.append(
            f"| {label} | {mine_high['rps'] / ref_high['rps']:.2f}× "
            f"| {mine_low['rps'] / ref_low['rps']:.2f}× "
            f"| {mine_low['p50'] - ref_low['p50']:+,.0f} µs "
            f"| {mine_low['p50'] / ref_low['p50']:.2f}× "
            f"| {mine_low['p99'] - ref_low['p99']:+,.0f} µs |")

    errors = sum(x["errors"] for x in cells.values() if x)
    notes = []
    if errors:
        notes.append(f"**{errors} failed requests** (socket errors, non-2xx answers, timeouts "
                     "or function errors): the numbers above include them and are suspect.")
    return "\n".join(lines), notes


def main(argv):
    if len(argv) != 4:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    runs = load(argv[1])
    with open(argv[2]) as f:
        meta = json.load(f)
    if not runs:
        print("summarize.py: no results to summarize", file=sys.stderr)
        sys.exit(1)
    table, notes = render(runs, meta)

    print(table)
    for n in notes:
        print("\nWARNING: " + n)

    md = ["# bench/invoke: warm invocation throughput and latency", ""]
    md.append(f"- Run {meta.get('started', '?')} on {meta.get('host', '?')}: {meta.get('cpus', '?')} "
              f"CPUs, load average at start {meta.get('loadavg', '?')}.")
    md.append(f"- wrk {meta.get('duration', '?')} per cell, {meta.get('rounds', '?')} round(s), "
              f"c={meta.get('c_high', '?')} with `wrk -t2`, c=1 with `wrk -t1 --latency`; "
              "POST of a 24-byte JSON event.")
    md.append(f"- tamaya {meta.get('tamaya_version', '?')} ({meta.get('tamaya_bin', '?')}), "
              f"{meta.get('nginx_version', '?')}, {meta.get('wrk_version', '?')}, "
              f"git {meta.get('git', '?')}.")
    md.append("")
    md.append(table)
    md.append("")
    md.append("The nginx pair (one worker each: a proxy with upstream keepalive in front of an "
              "origin answering a fixed body) is the reference measured in the same run; "
              "tamaya's path is client → daemon → instance over the Runtime API and back. "
              "Compare ratios, not absolute numbers: the machine is shared.")
    for n in notes:
        md.append("")
        md.append(n)
    md.append("")
    md.append(f"Command: `{meta.get('command', 'bench/invoke/run.sh')}`")
    with open(argv[3], "w") as f:
        f.write("\n".join(md) + "\n")


if __name__ == "__main__":
    main(sys.argv)
