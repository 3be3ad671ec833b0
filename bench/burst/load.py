#!/usr/bin/env python3
"""bench/burst driver: B's latency (a warm function, one request every 2 ms) while A goes from
zero to N instances at once. Standard library only; talks to 127.0.0.1 only.

  load.py ADMIN_PORT N ROUNDS OUT_MD

Per round, with B running throughout: A's code is touched (a new revision: the last round's N
instances retire, so the burst is all cold starts; B's second after it is reported), B runs
alone for 1 s (the reference), then N invocations of A start together while B goes on; B's
latency in the burst's first second is compared with its own just before.
Every loop is bounded in time and count.
"""

import http.client
import json
import statistics
import sys
import threading
import time

PORT = int(sys.argv[1])
N = int(sys.argv[2])
ROUNDS = int(sys.argv[3])
OUT = sys.argv[4]
B_GAP_S = 0.002
PHASE_S = 1.0


def call(method, path, body=b"", timeout=60):
    c = http.client.HTTPConnection("127.0.0.1", PORT, timeout=timeout)
    try:
        c.request(method, path, body=body, headers={"Content-Type": "application/json"})
        r = c.getresponse()
        data = r.read()
        return r.status, r.getheader("X-Tamaya-Function-Error"), data
    finally:
        c.close()


def q(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))]


def one_round(k):
    samples, errors = [], []
    stop = threading.Event()

    def b_loop():
        c = http.client.HTTPConnection("127.0.0.1", PORT, timeout=30)
        deadline = time.monotonic() + 60  # bounded even if the main thread dies
        while not stop.is_set() and time.monotonic() < deadline:
            t = time.perf_counter()
            c.request("POST", "/v1/functions/b/invoke", body=b"{}",
                      headers={"Content-Type": "application/json"})
            r = c.getresponse()
            r.read()
            if r.status != 200 or r.getheader("X-Tamaya-Function-Error"):
                errors.append(r.status)
            samples.append((t, (time.perf_counter() - t) * 1000))
            time.sleep(B_GAP_S)

    b = threading.Thread(target=b_loop)
    b.start()
    time.sleep(0.2)
    # A new revision of A retires the instances the last round's burst left.
    t_retire = time.perf_counter()
    status, _, text = call("PATCH", "/v1/functions/a",
                           json.dumps({"environment": {"ROUND": str(k)}}).encode())
    if status != 200:
        stop.set()
        b.join()
        sys.exit(f"load.py: touching A failed: {status} {text[:200]!r}")
    time.sleep(2 * PHASE_S + 0.2)
    a_results = []
    t0 = time.perf_counter()

    def a_call():
        a_results.append(call("POST", "/v1/functions/a/invoke", json.dumps({"seconds": 2}).encode()))

    a_threads = [threading.Thread(target=a_call) for _ in range(N)]
    for t in a_threads:
        t.start()
    for t in a_threads:
        t.join()
    a_done = time.perf_counter() - t0
    stop.set()
    b.join()
    alone = [ms for t, ms in samples if t0 - PHASE_S <= t < t0]
    during = [ms for t, ms in samples if t0 <= t < t0 + PHASE_S]
    retire = [ms for t, ms in samples if t_retire <= t < t_retire + PHASE_S]
    a_ok = sum(1 for s, err, _ in a_results if s == 200 and not err)
    return {
        "alone": alone, "during": during, "retire": retire, "b_errors": len(errors), "a_ok": a_ok,
        "a_done_s": a_done,
    }


def main():
    rows, ratios, retire_max = [], [], []
    labels = {"alone": "alone", "during": f"first second of {N} cold starts of A",
              "retire": f"first second after A's {N} instances are retired (a PATCH)"}
    for k in range(1, ROUNDS + 1):
        r = one_round(k)
        if not r["alone"] or not r["during"]:
            sys.exit("load.py: B answered nothing in a phase")
        ratio = q(r["during"], 0.99) / q(r["alone"], 0.99)
        ratios.append(ratio)
        for phase in ("retire", "alone", "during") if k > 1 else ("alone", "during"):
            xs = r[phase]
            rows.append(f"| {k} | {labels[phase]} "
                        f"| {len(xs)} | {q(xs, .5):.2f} | {q(xs, .99):.2f} | {max(xs):.2f} | "
                        + (f"{ratio:.2f}x |" if phase == "during" else " |"))
        if k > 1:
            retire_max.append(max(r["retire"]))
        rows.append(f"| {k} | A: {r['a_ok']}/{N} answered 200 in {r['a_done_s']:.2f} s "
                    f"(each sleeps 2 s); B errors {r['b_errors']} | | | | | |")
    med = statistics.median(ratios)
    out = ["| round | B (warm, one request per 2 ms) | requests | p50 ms | p99 ms | max ms "
           "| p99 vs alone |", "| --- | --- | ---: | ---: | ---: | ---: | ---: |", *rows, "",
           f"B's p99 during A's burst / alone, median of the rounds "
           f"({', '.join(f'{x:.2f}' for x in ratios)}): **{med:.2f}x**"]
    if retire_max:
        out += ["", f"B's worst request in the second after A's {N} instances were retired, rounds "
                f"2..{ROUNDS} (a stall of the daemon's event loop shows here, not in p99): "
                f"{', '.join(f'{x:.2f}' for x in retire_max)} ms"]
    text = "\n".join(out)
    print(text)
    with open(OUT, "a") as f:
        f.write(text + "\n")


main()
