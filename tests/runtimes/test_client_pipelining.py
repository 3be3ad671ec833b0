"""Both runtime clients send an invocation's outcome and the next GET /next in one write (HTTP/1.1
pipelining), and recover when the Runtime API closes the connection after a response."""

import pytest

# A handler that echoes its event, or fails when asked to.
FAIL_ON_DEMAND = {
    "node": ("app.js", """
exports.handler = async (event) => {
  if (event.fail) throw new Error('asked to fail');
  return event;
};
"""),
    "python": ("app.py", """
def handler(event, context):
    if event.get("fail"):
        raise ValueError("asked to fail")
    return event
"""),
}


def start_app(start, kind):
    name, code = FAIL_ON_DEMAND[kind]
    return start(kind, {name: code})


@pytest.mark.parametrize("kind", ["python", "node"])
def test_response_and_next_request_are_pipelined(api, start, kind):
    api.observe_pipelining = True
    start_app(start, kind)
    assert api.invoke({"i": 1}).wait().json() == {"i": 1}
    assert api.invoke({"fail": True}).wait().kind == "error"
    assert api.invoke({"i": 3}).wait().json() == {"i": 3}
    # Each outcome went out with the next GET behind it, response and error alike.
    assert api.pipelined == [True, True, True]
    assert api.connections == 1


@pytest.mark.parametrize("kind", ["python", "node"])
def test_connection_closed_after_a_response_is_reopened(api, start, kind):
    # The pipelined GET is lost with the connection; the client asks again on a new one.
    api.close_after_posts = 2
    proc = start_app(start, kind)
    for i in range(4):
        assert api.invoke({"i": i}).wait().json() == {"i": i}
    assert api.connections == 3
    assert proc.proc.poll() is None
    assert "failed" not in proc.stderr()
