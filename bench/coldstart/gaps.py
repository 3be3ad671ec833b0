#!/usr/bin/env python3
"""Python cold starts through one daemon, in rows of N samples each after a given quiet spell:
a quicker A/B probe than run.sh (no references, one runtime), for comparing two binaries or
settings in alternation on a noisy host. Not a test; prints one line per row.

  python3 bench/coldstart/gaps.py BINARY GAPS_MS [N] [key=value ...]
  e.g. python3 bench/coldstart/gaps.py build/release/tamaya 0,0,300 40 python_zygote_prefork=3

GAPS_MS is a comma-separated list (0: back to back, as run.sh's first row); each key=value is
passed to the daemon as --set. Root only, as run.sh.
"""

import os
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import coldstart as cs  # noqa: E402


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    binary, gaps = sys.argv[1], [float(g) for g in sys.argv[2].split(",")]
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 30
    settings = {"python_zygote": "on", "log_level": "warn", "node_pool_size": 0}
    settings.update(kv.split("=", 1) for kv in sys.argv[4:])
    with tempfile.TemporaryDirectory(prefix="tamaya-coldstart-gaps.") as tmp:
        d = cs.Daemon(binary, f"{tmp}/data", f"{tmp}/tamaya.log", settings)
        try:
            d.deploy("py", "python3", "app.handler", [("app.py", cs.PY_APP, 0o100644)])
            for gap in gaps:
                v = cs.cold_samples(d, "py", n, gap_s=gap / 1000)
                print(f"gap {gap:5.0f} ms: p50 {statistics.median(v):.2f} ms  "
                      f"p90 {cs.pct(v, 90):.2f}  min {min(v):.2f}  (n={n})", flush=True)
        finally:
            d.stop()


if __name__ == "__main__":
    main()
