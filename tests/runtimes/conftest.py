import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from runtime_api import RuntimeApiServer, RuntimeProcess, write_files  # noqa: E402


@pytest.fixture
def api():
    server = RuntimeApiServer()
    yield server
    server.stop()


@pytest.fixture
def start(api, tmp_path):
    """start(kind, files, handler="app.handler", env=None) -> RuntimeProcess, killed afterwards."""
    procs = []

    def _start(kind, files, handler="app.handler", env=None):
        task_root = write_files(tmp_path / f"task{len(procs)}", files)
        proc = RuntimeProcess(kind, api, task_root, handler, env)
        procs.append(proc)
        return proc

    yield _start
    for proc in procs:
        proc.kill()
