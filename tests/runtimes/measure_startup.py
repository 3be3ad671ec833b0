"""Measures each runtime client's time from process start to its first GET /invocation/next.

    /usr/bin/python3 tests/runtimes/measure_startup.py [--runs 20]

Prints medians next to the bare interpreters (`python3 -I -S -c pass`, `node -e 0`, start to
exit): wall time, and CPU time of the process (all threads), which a busy machine disturbs less.
Not a test: the numbers depend on the machine.
"""

import argparse
import os
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


def cpu_ms_of(pid):
    """CPU time of all the process's threads so far, from /proc (ns precision)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        total += int((task / "schedstat").read_text().split()[0])
    return total / 1e6


def time_to_first_next(kind, task_root):
    api = RuntimeApiServer()
    proc = RuntimeProcess(kind, api, task_root, "app.handler")
    try:
        if not api.first_next_event.wait(30):
            raise RuntimeError(f"{kind} runtime never asked for an event: {proc.stderr()}")
        # The client now waits on its long poll, so its CPU time stays put.
        return (api.first_next_at - proc.started_at) * 1000, cpu_ms_of(proc.proc.pid)
    finally:
        proc.kill()
        api.stop()


def time_to_exit(argv):
    start = time.monotonic()
    proc = subprocess.Popen(argv)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{argv} exited with {proc.returncode}")
    return (time.monotonic() - start) * 1000, (usage.ru_utime + usage.ru_stime) * 1000


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
    print(
        f"{'what':40} {'wall median ms':>15} {'wall min':>9} {'CPU median ms':>14}"
        f"   ({args.runs} runs, interleaved)"
    )
    for name, pairs in samples.items():
        wall = [w for w, _ in pairs]
        cpu = [c for _, c in pairs]
        print(
            f"{name:40} {statistics.median(wall):15.1f} {min(wall):9.1f} "
            f"{statistics.median(cpu):14.1f}"
        )
    print(f"load average: {os.getloadavg()[0]:.2f} (wall times grow with it; CPU times less)")

if __name__ == "__main__":
    main()
