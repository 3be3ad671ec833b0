"""Short runs of the libFuzzer targets (tests/fuzz/run.sh): the gateway's structured one, the
raw-bytes one through the server's request parser, and bearer JWT verification. Longer runs are
by hand: tests/fuzz/run.sh -max_total_time=600."""

import shutil
import subprocess

import pytest

from itest import REPO


@pytest.mark.skipif(shutil.which("clang++-14") is None, reason="clang-14 (libFuzzer) is not installed")
@pytest.mark.parametrize("target", ["gateway", "http", "jwt"])
def test_fuzz_short_run(tmp_path, target):
    out = subprocess.run([str(REPO / "tests" / "fuzz" / "run.sh"), target, "-runs=20000"],
                         env={"FUZZ_OUT": str(REPO / "build" / "fuzz"), "PATH": "/usr/bin:/bin"},
                         capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-4000:]
    assert f"fuzz target {target}" in out.stderr
    assert "Done 20000 runs" in out.stderr
