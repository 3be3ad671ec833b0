#!/usr/bin/env python3
"""Cold starts through one daemon, in rows of N samples each after a given quiet spell: a
quicker A/B probe than run.sh (no references, one runtime), for comparing two binaries or
settings in alternation on a noisy host. Not a test; prints one line per row.

  python3 bench/coldstart/gaps.py [--provided | --imports=LINES] BINARY GAPS_MS [N] [key=value ...]
  e.g. python3 bench/coldstart/gaps.py build/release/tamaya 0,0,300 40 python_zygote_prefork=3

GAPS_MS is a comma-separated list (0: back to back, as run.sh's first row); each key=value is
passed to the daemon as --set. Python by default; --provided starts bench/invoke's native echo
(compiled with cc); --imports=LINES deploys a Python handler that imports a module of its own of
about LINES lines (no .pyc in the zip, as a function zipped from source). Root only, as run.sh.
"""

import os
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import coldstart as cs  # noqa: E402


def main():
    args = sys.argv[1:]
    provided = bool(args) and args[0] == "--provided"
    imports = int(args[0].split("=", 1)[1]) if args and args[0].startswith("--imports=") else 0
    if provided or imports:
        args = args[1:]
    if len(args) < 2:
        sys.exit(__doc__)
    binary, gaps = args[0], [float(g) for g in args[1].split(",")]
    n = int(args[2]) if len(args) > 2 else 30
    settings = {"python_zygote": "on", "log_level": "warn", "node_pool_size": 0}
    settings.update(kv.split("=", 1) for kv in args[3:])
    with tempfile.TemporaryDirectory(prefix="tamaya-coldstart-gaps.") as tmp:
        os.chmod(tmp, 0o755)  # instances run under their own uids
        d = cs.Daemon(binary, f"{tmp}/data", f"{tmp}/tamaya.log", settings)
        try:
            if provided:
                here = os.path.dirname(os.path.abspath(__file__))
                source = os.path.join(here, "..", "invoke", "echo_bootstrap.c")
                subprocess.run(["cc", "-O2", "-o", f"{tmp}/bootstrap", source], check=True)
                with open(f"{tmp}/bootstrap", "rb") as f:
                    d.deploy("fn", "provided", None, [("bootstrap", f.read(), 0o100755)])
            elif imports:
                helper = "".join(f"def f{i}(x):\n    y = x * {i} + 1\n    return [y, str(y), {{'k': y}}]\n\n"
                                 for i in range(max(1, imports // 4)))
                app = "import helper\ndef handler(event, context):\n    return {'n': helper.f0(2)[0]}\n"
                d.deploy("fn", "python3", "app.handler",
                         [("app.py", app, 0o100644), ("helper.py", helper, 0o100644)])
            else:
                d.deploy("fn", "python3", "app.handler", [("app.py", cs.PY_APP, 0o100644)])
            for gap in gaps:
                v = cs.cold_samples(d, "fn", n, gap_s=gap / 1000)
                print(f"gap {gap:5.0f} ms: p50 {statistics.median(v):.2f} ms  "
                      f"p90 {cs.pct(v, 90):.2f}  min {min(v):.2f}  (n={n})", flush=True)
        finally:
            d.stop()


if __name__ == "__main__":
    main()
