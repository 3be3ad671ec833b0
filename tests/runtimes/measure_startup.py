"""Measures each runtime client's time from process start to its first GET /invocation/next.

    /usr/bin/python3 tests/runtimes/measure_startup.py [--runs 20]

Prints a table of medians next to the bare interpreters (`python3 -I -S -c pass`,
`node -e 0`, measured start to exit). Not a test: the numbers depend on the machine.
"""

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from runtime_api import NODE, PYTHON, RuntimeApiServer, RuntimeProcess, write_files  # noqa: E402

HANDLERS = {
    "python": {"app.py": "def handler(event, context):\n    return event\n"},
    "node": {"app.js": "exports.handler = async (event) => event;\n"},
}


def time_to_first_next(kind, task_root):
    api = RuntimeApiServer()
    proc = RuntimeProcess(kind, api, task_root, "app.handler")
    try:
        if not api.first_next_event.wait(30):
            raise RuntimeError(f"{kind} runtime never asked for an event: {proc.stderr()}")
        return (api.first_next_at - proc.started_at) * 1000
    finally:
        proc.kill()
        api.stop()


def time_to_exit(argv):
    start = time.monotonic()
    subprocess.run(argv, check=True)
    return (time.monotonic() - start) * 1000


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    bare = {
        "python3 -I -S -c pass": [PYTHON, "-I", "-S", "-c", "pass"],
        # What the daemon starts: -I keeps site, which runs the machine's .pth hooks.
        "python3 -I -c pass": [PYTHON, "-I", "-c", "pass"],
        "node -e 0": [NODE, "-e", "0"],
    }
    samples = {}
    with tempfile.TemporaryDirectory() as tmp:
        roots = {kind: write_files(Path(tmp) / kind, files) for kind, files in HANDLERS.items()}
        # Interleaved, so that a busy spell of the machine hits every variant alike.
        for _ in range(args.runs):
            for kind, root in roots.items():
                name = f"{kind} client: start -> first /next"
                samples.setdefault(name, []).append(time_to_first_next(kind, root))
            for name, argv in bare.items():
                samples.setdefault(name, []).append(time_to_exit(argv))
    rows = list(samples.items())
    print(f"{'what':40} {'median ms':>10} {'min ms':>8} {'max ms':>8}   ({args.runs} runs)")
    for name, samples in rows:
        print(
            f"{name:40} {statistics.median(samples):10.1f} {min(samples):8.1f} {max(samples):8.1f}"
        )


if __name__ == "__main__":
    main()
