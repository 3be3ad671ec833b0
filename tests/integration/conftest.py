"""Fixtures of the integration suite: a real `tamaya serve` per test, on a free loopback port
with a fresh data dir (see itest.py for the client). Settings are overridden per test with the
`settings` marker:

    @pytest.mark.settings(queue_timeout_ms=500)
    def test_x(daemon): ...
"""

import uuid

import pytest

from itest import Daemon


def pytest_configure(config):
    config.addinivalue_line("markers", "settings(**kv): tamaya settings for the test's daemon")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    # Remembered so a fixture's teardown knows whether to print the daemon's stderr.
    outcome = yield
    report = outcome.get_result()
    setattr(item, "rep_" + report.when, report)


def _finish(daemon, request):
    """Stops a daemon still running; a problem with its exit, as text (None when clean)."""
    failed = getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed
    if daemon.proc is None:
        return None
    was_running = daemon.running
    rc = daemon.stop()
    if failed or rc != 0:
        print(f"--- tamaya serve stderr (last 8 KB, {daemon.stderr_path}) ---\n{daemon.stderr()}")
    if not was_running:
        return None  # the test stopped it and checked the exit itself
    if rc is None:
        return f"tamaya serve did not exit within {daemon.drain_deadline_s} s of SIGTERM"
    if rc != 0:
        return f"tamaya serve exited {rc} after SIGTERM"
    return None


@pytest.fixture
def daemon_factory(request, tmp_path):
    """Makes daemons (started) on a data dir of the caller's choice; all stopped at teardown."""
    made = []

    def make(data_dir=None, settings=None, env=None):
        marker = request.node.get_closest_marker("settings")
        merged = dict(marker.kwargs) if marker else {}
        merged.update(settings or {})
        data_dir = data_dir or tmp_path / "data"
        log_dir = tmp_path / f"logs-{len(made)}"
        log_dir.mkdir()
        d = Daemon(data_dir, log_dir, merged, env)
        made.append(d)
        return d.start()

    yield make
    problems = [p for p in (_finish(d, request) for d in made) if p]
    assert not problems, "; ".join(problems)


@pytest.fixture
def daemon(daemon_factory):
    return daemon_factory()


@pytest.fixture
def unique():
    """A short unique token for names and log markers."""
    return uuid.uuid4().hex[:10]


