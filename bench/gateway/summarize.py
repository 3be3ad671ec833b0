#!/usr/bin/env python3
"""Turns bench/gateway/run.sh's raw wrk results into the table it prints and
the markdown file it writes.

  summarize.py RESULTS.jsonl META.json OUT.md

Each cell is the median over rounds (bench/invoke/summarize.py's cell()).
Every figure is a ratio against a reference measured in the same run: the
nginx proxy pair for the gateway's cost, the open route for the cost of API
keys plus rate limits. Two more references are context for the throughput
figures, not a goal's: the nginx proxy in front of forked_origin.c (a process
per connection), and broker_floor.c, a minimal Runtime API broker in front of
the same echo functions (the protocol's floor on this host).
"""

import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "invoke"))
from summarize import cell, fmt_us, load  # noqa: E402  (bench/invoke's helpers)

TARGETS = [
    ("nginx", "nginx proxy → nginx (reference)"),
    ("shaped", "nginx proxy → a process per connection (instances' shape)"),
    ("floor", "minimal Runtime API broker → native echo (protocol's floor)"),
    ("native", "gateway → native echo, open route"),
    ("keyed", "gateway → native echo, API key + rate limits"),
    ("pyfloor", "minimal Runtime API broker → Python echo (protocol's floor)"),
    ("python", "gateway → Python echo, open route"),
]
# issue 4's goals, printed next to each figure.
GOALS = {
    "native_c64": 1.0,     # throughput ratio vs nginx, at least
    "native_p50_us": 30,   # c=1 p50 difference vs nginx, at most
    "python_c64": 0.35,    # throughput ratio vs nginx, at least
    "keyed_overhead": 0.10,  # throughput lost to auth + limits vs the open route, at most
}


def render(runs):
    levels = sorted({r["c"] for r in runs}, reverse=True)
    high, low = max(levels), min(levels)
    cells = {(t, c): cell(runs, t, c) for t, _ in TARGETS for c in levels}
    rounds = max(x["rounds"] for x in cells.values() if x)
    spread = " (min–max)" if rounds > 1 else ""
    lines = [f"| target | c | req/s{spread} | p50 | p99 | errors |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
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

    def get(t, c):
        return cells.get((t, c))

    figures = []
    ref_h, ref_l = get("nginx", high), get("nginx", low)
    nat_h, nat_l = get("native", high), get("native", low)
    key_h, key_l = get("keyed", high), get("keyed", low)
    py_h = get("python", high)
    if ref_h and nat_h:
        r = nat_h["rps"] / ref_h["rps"]
        figures.append((f"native echo throughput vs nginx at c={high}", f"{r:.2f}×",
                        f"≥ {GOALS['native_c64']}×", r >= GOALS["native_c64"]))
    def context(name, num, den):
        # A throughput ratio with no goal, shown for what it explains.
        if num and den:
            figures.append((f"{name} at c={high}", f"{num['rps'] / den['rps']:.2f}×", "", None))

    # What the instances' shape (a process woken per request) costs nginx
    # itself, and how far the gateway is from that; then the most any
    # platform running unchanged Lambda runtimes could do here (the floor
    # broker vs nginx), and where tamaya is against it.
    shp_h, flo_h, pyf_h = get("shaped", high), get("floor", high), get("pyfloor", high)
    context("nginx proxy → a process per connection vs nginx", shp_h, ref_h)
    context("native echo throughput vs that shape", nat_h, shp_h)
    context("minimal broker → native echo vs nginx", flo_h, ref_h)
    context("native echo throughput vs that broker", nat_h, flo_h)
    if ref_l and nat_l:
        d = nat_l["p50"] - ref_l["p50"]
        figures.append((f"native echo p50 − nginx p50 at c={low}", f"{d:+,.0f} µs",
                        f"≤ {GOALS['native_p50_us']} µs", d <= GOALS["native_p50_us"]))
    if ref_h and py_h:
        r = py_h["rps"] / ref_h["rps"]
        figures.append((f"Python echo throughput vs nginx at c={high}", f"{r:.2f}×",
                        f"≥ {GOALS['python_c64']}×", r >= GOALS["python_c64"]))
    context("minimal broker → Python echo vs nginx", pyf_h, ref_h)
    context("Python echo throughput vs that broker", py_h, pyf_h)
    if nat_h and key_h:
        o = 1 - key_h["rps"] / nat_h["rps"]
        figures.append((f"API key + rate limits: throughput lost vs open route at c={high}",
                        f"{o * 100:+.1f} %", f"≤ {GOALS['keyed_overhead'] * 100:.0f} %",
                        o <= GOALS["keyed_overhead"]))
    if nat_l and key_l:
        figures.append((f"API key + rate limits: p50 difference vs open route at c={low}",
                        f"{key_l['p50'] - nat_l['p50']:+,.0f} µs", "", None))
    lines += ["", "| figure | measured | goal | met |", "| --- | ---: | ---: | :---: |"]
    for name, value, goal, met in figures:
        lines.append(f"| {name} | {value} | {goal} | {'' if met is None else ('yes' if met else 'no')} |")

    notes = []
    errors = sum(x["errors"] for x in cells.values() if x)
    if errors:
        notes.append(f"**{errors} failed requests** (socket errors, non-2xx answers or "
                     "timeouts): the numbers above include them and are suspect.")
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
    table, notes = render(runs)
    print(table)
    for n in notes:
        print("\nWARNING: " + n)
    md = ["# bench/gateway: the API gateway against an nginx proxy", ""]
    md.append(f"- Run {meta.get('started', '?')} on {meta.get('host', '?')}: "
              f"{meta.get('cpus', '?')} CPUs, load average at start {meta.get('loadavg', '?')}.")
    md.append(f"- wrk {meta.get('duration', '?')} per cell, {meta.get('rounds', '?')} round(s), "
              f"c={meta.get('c_high', '?')} with `wrk -t2`, c=1 with `wrk -t1 --latency`; "
              "POST of a 24-byte JSON body.")
    md.append(f"- tamaya {meta.get('tamaya_version', '?')} ({meta.get('tamaya_bin', '?')}), "
              f"{meta.get('nginx_version', '?')}, {meta.get('wrk_version', '?')}, "
              f"git {meta.get('git', '?')}.")
    md += ["", table, ""]
    for n in notes:
        md += [n, ""]
    md.append(f"Command: `{meta.get('command', 'bench/gateway/run.sh')}`")
    with open(argv[3], "w") as f:
        f.write("\n".join(md) + "\n")


if __name__ == "__main__":
    main(sys.argv)
