"""tamaya's Python runtime client: runs an AWS Lambda handler against the Runtime API.

bootstrap.py (what the daemon starts, `python3 -I bootstrap.py`, cwd = LAMBDA_TASK_ROOT) imports
this module and calls run(). It behaves like AWS's awslambdaric: same handler resolution,
context object, error bodies, init error types and log formats. Start-up time is part of every
cold start, so this module imports only C-level modules (_socket, _json) up front; json,
logging and traceback are loaded only when user code or an error path needs them.
"""

import os
import sys

import _socket
import time

API_PREFIX = "/2018-06-01/runtime"
ERROR_TYPE_HEADER = "Lambda-Runtime-Function-Error-Type"
# One recv() size: an ordinary event and its headers arrive in one call. Larger bodies are read
# straight into a buffer of their own size. Not larger: CPython allocates the full size for
# each recv() and, above glibc's mmap threshold (128 KiB), that is an mmap, mremap and munmap
# per call, which cost more than the rest of a warm invocation.
RECV_CHUNK_BYTES = 16 * 1024
# awslambdaric writes multi-line error records with these so a record stays one line.
ERROR_LOG_LINE_TERMINATE = "\r"
ERROR_LOG_IDENT = "\u00a0"
LOG_FORMAT = "[%(levelname)s]\t%(asctime)s.%(msecs)03dZ\t%(aws_request_id)s\t%(message)s\n"
LOG_DATE_FORMAT = "%Y-%m-%dT%H:%M:%S"

# Frames from files here are the runtime's, not the user's; error traces start after them.
RUNTIME_DIR = __file__.rpartition("/")[0] + "/"

_current_request_id = None


class FaultError(Exception):
    """A failure the runtime reports with a Runtime.* error type, not the user's exception."""

    def __init__(self, error_type, message, trace=None):
        super().__init__(message)
        self.error_type = error_type
        self.message = message
        self.trace = trace


class ApiError(Exception):
    """The Runtime API could not be reached or answered something unusable."""


# --- JSON without the json package -----------------------------------------------------------
# `import json` drags in re and enum (about 15 ms here); the C accelerator _json is what json
# itself uses, so the results are identical. Falls back to json where _json is missing.

try:
    import _json

    class _ScanContext:
        strict = True
        object_hook = None
        object_pairs_hook = None
        parse_float = float
        parse_int = int
        memo = None

        @staticmethod
        def parse_constant(name):
            return {"-Infinity": float("-inf"), "Infinity": float("inf"), "NaN": float("nan")}[name]

    _scan_once = _json.make_scanner(_ScanContext())
    _WHITESPACE = " \t\n\r"

    def json_loads(text):
        n = len(text)
        i = 0
        while i < n and text[i] in _WHITESPACE:
            i += 1
        try:
            value, end = _scan_once(text, i)
        except Exception:
            value, end = None, -1
        while 0 <= end < n and text[end] in _WHITESPACE:
            end += 1
        if end != n:
            # Invalid input: the C scanner can only build json's exception once json.decoder
            # is imported, so let json itself parse again and raise its usual JSONDecodeError.
            import json

            return json.loads(text)
        return value

    def _default(obj):
        # DynamoDB and many SDKs hand out decimal.Decimal; awslambdaric encodes them as numbers.
        if type(obj).__name__ == "Decimal" and type(obj).__module__ == "decimal":
            if obj.is_nan():
                return float("nan")
            if obj == obj.to_integral_value():
                return int(obj)
            return float(obj)
        raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")

    _make_encoder = _json.make_encoder
    _encode_str = _json.encode_basestring

    def json_dumps(obj):
        # A fresh markers dict per call, as json.dumps does: after a failed encode the old
        # one could still hold ids and report a false circular reference.
        encode = _make_encoder({}, _default, _encode_str, None, ": ", ", ", False, False, True)
        return "".join(encode(obj, 0))

except (ImportError, AttributeError):  # pragma: no cover - other interpreters
    import json as _json_module

    def json_loads(text):
        return _json_module.loads(text)

    def _default_fallback(obj):
        if type(obj).__name__ == "Decimal" and type(obj).__module__ == "decimal":
            if obj.is_nan():
                return float("nan")
            return int(obj) if obj == obj.to_integral_value() else float(obj)
        raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")

    def json_dumps(obj):
        return _json_module.dumps(obj, ensure_ascii=False, default=_default_fallback)


# --- Runtime API client ------------------------------------------------------------------------


class RuntimeApiClient:
    """HTTP/1.1 over one kept-alive TCP connection, on the raw _socket module.

    http.client costs ~60 ms of imports (email, re, ...); the Runtime API needs only
    GET/POST with Content-Length bodies, so a small client is enough. Each invocation costs
    one write and usually one read: the response (or error) and the next GET are pipelined.
    """

    def __init__(self, address):
        host, sep, port = address.rpartition(":")
        if not sep or not port.isdigit():
            raise ApiError(
                f"AWS_LAMBDA_RUNTIME_API={address!r} is not host:port; "
                "the daemon must set it to the Runtime API's address"
            )
        self.host = host.strip("[]")
        self.port = int(port)
        self.host_header = address
        self.sock = None
        self.buf = b""
        # SO_RCVLOWAT of the socket, and what it is set to while waiting for a pipelined pair
        # (see post_and_next); 0 means the kernel refused it: always 1.
        self.lowat = 1
        self.pair_lowat = 1
        self.answer_bytes = 0  # size of the last answer read, head and body
        self.next_request = self._encode("GET", API_PREFIX + "/invocation/next", None, None)
        # The fixed parts of POST /invocation/{id}/response, built once.
        self.response_head = (
            f"POST {API_PREFIX}/invocation/".encode("latin-1"),
            (
                f"/response HTTP/1.1\r\nHost: {self.host_header}\r\n"
                "User-Agent: tamaya-python-runtime/1\r\nContent-Type: "
            ).encode("latin-1", "replace"),
        )

    def _connect(self):
        host = self.host
        if host.isascii():
            # A str host is encoded with the idna codec, which imports re and stringprep
            # (~20 ms); ASCII bytes go to the resolver as they are.
            host = host.encode("ascii")
        infos = _socket.getaddrinfo(host, self.port, 0, _socket.SOCK_STREAM)
        last_error = None
        for family, kind, proto, _, addr in infos:
            sock = _socket.socket(family, kind, proto)
            try:
                sock.connect(addr)
            except OSError as e:
                sock.close()
                last_error = e
                continue
            sock.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)
            self.sock = sock
            self.buf = b""
            self.lowat = 1
            return
        raise ApiError(f"cannot connect to the Runtime API at {self.host_header}: {last_error}")

    def _close(self):
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        self.buf = b""

    def _encode(self, method, path, body, headers):
        head = [f"{method} {path} HTTP/1.1\r\nHost: {self.host_header}\r\n"]
        head.append("User-Agent: tamaya-python-runtime/1\r\n")
        if body is not None:
            head.append(f"Content-Length: {len(body)}\r\n")
        if headers:
            for name, value in headers.items():
                head.append(f"{name}: {value}\r\n")
        head.append("\r\n")
        data = "".join(head).encode("latin-1", "replace")
        return data + body if body else data

    def _exchange(self, data, what):
        """Sends `data` (one or more requests) and reads the first answer."""
        for attempt in (1, 2):
            reused = self.sock is not None
            try:
                if self.sock is None:
                    self._connect()
                self.sock.sendall(data)
                return self._read_response()
            except (_EmptyReply, BrokenPipeError, ConnectionResetError) as e:
                self._close()
                # A kept-alive connection that the server closed while idle fails before any
                # byte of the answer arrives; one retry on a fresh connection is the usual cure.
                if reused and attempt == 1:
                    continue
                raise ApiError(f"{what} to the Runtime API failed: {e}") from None
            except OSError as e:
                self._close()
                raise ApiError(f"{what} to the Runtime API failed: {e}") from None
            except ApiError:
                self._close()
                raise

    def request(self, method, path, body=None, headers=None):
        """Returns (status, lowercase headers dict, body bytes)."""
        return self._exchange(self._encode(method, path, body, headers), f"{method} {path}")

    def _set_lowat(self, n):
        if self.lowat != n and self.pair_lowat:
            try:
                self.sock.setsockopt(_socket.SOL_SOCKET, _SO_RCVLOWAT, n)
                self.lowat = n
            except OSError:
                self.pair_lowat = 0

    def _recv(self):
        if self.lowat != 1:
            self._set_lowat(1)
        chunk = self.sock.recv(RECV_CHUNK_BYTES)
        if not chunk:
            raise ApiError("the Runtime API closed the connection in the middle of an answer")
        return chunk

    def _read_response(self):
        buf = self.buf
        if not buf:
            buf = self.sock.recv(RECV_CHUNK_BYTES)
            if not buf:
                raise _EmptyReply("the Runtime API closed the connection")
        while True:
            end = buf.find(b"\r\n\r\n")
            if end >= 0:
                break
            buf += self._recv()
        lines = buf[:end].decode("latin-1").split("\r\n")
        buf = buf[end + 4 :]
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[1].isdigit():
            raise ApiError(f"the Runtime API sent a malformed status line {lines[0]!r}")
        status = int(parts[1])
        headers = {}
        for line in lines[1:]:
            # No space may come before the colon (RFC 9112 5.1); the value's is trimmed.
            name, _, value = line.partition(":")
            headers[name.lower()] = value.strip()
        if "chunked" in headers.get("transfer-encoding", "").lower():
            body, buf = self._read_chunked(buf)
            self.answer_bytes = 0
        else:
            length = int(headers.get("content-length", "0") or "0")
            if len(buf) < length:
                # Read the rest straight into one buffer of the body's size: no list of
                # chunks to join, no recv buffer larger than the message.
                body = bytearray(length)
                have = len(buf)
                body[:have] = buf
                view = memoryview(body)
                if self.lowat != 1:
                    self._set_lowat(1)
                while have < length:
                    n = self.sock.recv_into(view[have:])
                    if not n:
                        raise ApiError(
                            "the Runtime API closed the connection in the middle of an answer"
                        )
                    have += n
                view.release()
                body, buf = bytes(body), b""
            else:
                body, buf = buf[:length], buf[length:]
            self.answer_bytes = end + 4 + length
        self.buf = buf
        if headers.get("connection", "").lower() == "close" or parts[0] == "HTTP/1.0":
            self._close()
        return status, headers, body

    def _read_chunked(self, buf):
        body = []
        while True:
            while b"\r\n" not in buf:
                buf += self._recv()
            line, buf = buf.split(b"\r\n", 1)
            size = int(line.split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                # Trailers end with an empty line.
                while True:
                    while b"\r\n" not in buf:
                        buf += self._recv()
                    line, buf = buf.split(b"\r\n", 1)
                    if not line:
                        return b"".join(body), buf
            while len(buf) < size + 2:
                buf += self._recv()
            body.append(buf[:size])
            buf = buf[size + 2 :]

    def _check_next(self, status, headers, body):
        if status != 200:
            raise ApiError(
                f"GET /invocation/next answered {status}: {body[:200].decode('utf-8', 'replace')}"
            )
        return headers, body

    def next_invocation(self):
        return self._check_next(*self._exchange(self.next_request, "GET /invocation/next"))

    def _report(self, path, status, answer):
        if status >= 300:
            # The daemon has already decided the outcome (e.g. too large, unknown id); all the
            # runtime can do is say so where the function's logs go and fetch the next event.
            sys.stderr.write(
                f"tamaya runtime: POST {path} answered {status}: "
                f"{answer[:500].decode('utf-8', 'replace')}\n"
            )

    def post(self, path, body, headers=None):
        status, _, answer = self.request("POST", API_PREFIX + path, body, headers)
        self._report(path, status, answer)
        return status

    def post_and_next(self, request_id, body, content_type, error_type=None):
        """Reports an invocation's outcome and asks for the next one in a single write.

        The GET is pipelined behind the POST (HTTP/1.1, answered in order), so an invocation
        costs the function one write and the daemon one read. While the pair is out, the
        socket's SO_RCVLOWAT is one byte more than the POST's answer (learnt from the first
        one), so the kernel wakes the process once, when the next event starts to arrive,
        instead of once for the 202 and again for the event: the daemon answers a POST at once
        and the event may come much later. It cannot hang: the answer to the GET (status line
        and Lambda headers) is longer than the margin, and a closed connection wakes the read
        anyway. Every other read runs with SO_RCVLOWAT 1. Returns the next invocation's
        (headers, body) as next_invocation() does.
        """
        if error_type is None:
            prefix, middle = self.response_head
            rid = request_id.encode("latin-1", "replace")
            data = b"%s%s%s%s\r\nContent-Length: %d\r\n\r\n%s%s" % (
                prefix, rid, middle, content_type.encode("latin-1"), len(body), body,
                self.next_request,
            )
            path = f"/invocation/{request_id}/response"
        else:
            path = f"/invocation/{request_id}/error"
            headers = {"Content-Type": content_type, ERROR_TYPE_HEADER: error_type}
            data = self._encode("POST", API_PREFIX + path, body, headers) + self.next_request
        if self.sock is not None and not self.buf and self.pair_lowat > 1:
            self._set_lowat(self.pair_lowat)
        status, _, answer = self._exchange(data, f"POST {path}")
        if self.pair_lowat and status == 202:
            # Next time, sleep until the 202 *and* the start of the next event are there.
            self.pair_lowat = self.answer_bytes + 1
        self._report(path, status, answer)
        if self.sock is None:
            # The server closed the connection after answering the POST (Connection: close):
            # the pipelined GET went unanswered, so ask again on a new connection.
            return self.next_invocation()
        if not self.buf and self.lowat != 1:
            # Woken by the POST's answer alone: the rest is one ordinary answer.
            self._set_lowat(1)
        try:
            return self._check_next(*self._read_response())
        except (_EmptyReply, OSError):
            self._close()
            return self.next_invocation()

    def post_init_error(self, error):
        body = json_dumps(error).encode("utf-8")
        self.post(
            "/init/error",
            body,
            {"Content-Type": "application/json", ERROR_TYPE_HEADER: error["errorType"]},
        )


# Linux's value where _socket lacks the name.
_SO_RCVLOWAT = getattr(_socket, "SO_RCVLOWAT", 18)


class _EmptyReply(ConnectionError):
    pass


# --- context object ------------------------------------------------------------------------------


class CognitoIdentity:
    __slots__ = ["cognito_identity_id", "cognito_identity_pool_id"]

    def __init__(self):
        self.cognito_identity_id = None
        self.cognito_identity_pool_id = None

    def __repr__(self):
        return (
            f"CognitoIdentity([cognito_identity_id={self.cognito_identity_id},"
            f"cognito_identity_pool_id={self.cognito_identity_pool_id}])"
        )


class Client:
    __slots__ = [
        "installation_id",
        "app_title",
        "app_version_name",
        "app_version_code",
        "app_package_name",
    ]

    def __repr__(self):
        return "Client([" + ",".join(f"{k}={getattr(self, k)}" for k in self.__slots__) + "])"


class ClientContext:
    __slots__ = ["custom", "env", "client"]

    def __repr__(self):
        return f"ClientContext([custom={self.custom},env={self.env},client={self.client}])"


def _obj_from_dict(cls, values):
    if values is None:
        return None
    obj = cls()
    for field in cls.__slots__:
        setattr(obj, field, values.get(field) if isinstance(values, dict) else None)
    return obj


# The context's fields that come from the environment, in LambdaContext's order. Lambda sets them
# and user code cannot, so main() reads them once: os.environ.get costs an encode, a decode and,
# for a missing name, a raised KeyError, and a warm invocation runs in ~20 us.
_CONTEXT_ENV = (
    "AWS_LAMBDA_LOG_GROUP_NAME",
    "AWS_LAMBDA_LOG_STREAM_NAME",
    "AWS_LAMBDA_FUNCTION_NAME",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
    "AWS_LAMBDA_FUNCTION_VERSION",
)
_context_env = None  # their values, once main() has read them


def _read_context_env():
    return tuple(os.environ.get(name) for name in _CONTEXT_ENV)


class LambdaContext:
    def __init__(self, request_id, client_context, cognito_identity, deadline_ms, function_arn):
        self.aws_request_id = request_id
        (
            self.log_group_name,
            self.log_stream_name,
            self.function_name,
            # A string, as in awslambdaric, because it comes straight from the environment.
            self.memory_limit_in_mb,
            self.function_version,
        ) = (_context_env or _read_context_env())
        self.invoked_function_arn = function_arn
        self.client_context = _obj_from_dict(ClientContext, client_context)
        if self.client_context is not None:
            self.client_context.client = _obj_from_dict(Client, self.client_context.client)
        identity = self.identity = CognitoIdentity()
        if isinstance(cognito_identity, dict):
            identity.cognito_identity_id = cognito_identity.get("cognitoIdentityId")
            identity.cognito_identity_pool_id = cognito_identity.get("cognitoIdentityPoolId")
        self._deadline_ms = deadline_ms

    def get_remaining_time_in_millis(self):
        remaining = self._deadline_ms - int(time.time() * 1000)
        return remaining if remaining > 0 else 0

    def log(self, msg):
        sys.stdout.write(str(msg))

    def __repr__(self):
        return (
            f"LambdaContext([aws_request_id={self.aws_request_id},"
            f"log_group_name={self.log_group_name},log_stream_name={self.log_stream_name},"
            f"function_name={self.function_name},memory_limit_in_mb={self.memory_limit_in_mb},"
            f"function_version={self.function_version},"
            f"invoked_function_arn={self.invoked_function_arn},"
            f"client_context={self.client_context},identity={self.identity}])"
        )


def _parse_json_header(value, name):
    if not value:
        return None
    try:
        return json_loads(value)
    except Exception as e:
        raise FaultError(
            "Runtime.LambdaContextUnmarshalError", f"Unable to parse {name} JSON: {e}"
        ) from None


# --- logging ---------------------------------------------------------------------------------
# Lambda's runtime puts a handler on the root logger before user code runs, so `logger.info`
# works without configuration and `logging.basicConfig` is a no-op. Importing logging costs
# ~30 ms, so the handler is installed the moment anything imports logging rather than up front.


def _setup_logging(logging):
    logging.Formatter.converter = time.gmtime

    class LambdaLoggerHandler(logging.Handler):
        def emit(self, record):
            try:
                msg = self.format(record)
                # One record = one line on the pipe, as Lambda keeps a record one event.
                if "\n" in msg[:-1]:
                    msg = msg[:-1].replace("\n", "\r") + "\n"
                sys.stdout.write(msg)
                sys.stdout.flush()
            except Exception:
                self.handleError(record)

    class LambdaLoggerFilter(logging.Filter):
        def filter(self, record):
            record.aws_request_id = _current_request_id or ""
            return True

    handler = LambdaLoggerHandler()
    handler.setFormatter(logging.Formatter(LOG_FORMAT, LOG_DATE_FORMAT))
    handler.addFilter(LambdaLoggerFilter())
    root = logging.getLogger()
    root.addHandler(handler)
    level = os.environ.get("AWS_LAMBDA_LOG_LEVEL", "").upper()
    if level in logging._nameToLevel:
        root.setLevel(level)


class _LoggingImportHook:
    """A sys.meta_path finder that configures logging right after its first import."""

    def find_spec(self, name, path=None, target=None):
        if name != "logging":
            return None
        sys.meta_path.remove(self)
        spec = None
        for finder in sys.meta_path:
            find_spec = getattr(finder, "find_spec", None)
            spec = find_spec(name, path, target) if find_spec else None
            if spec is not None:
                break
        if spec is None or spec.loader is None:
            return spec
        real_loader = spec.loader

        class Loader:
            def create_module(self, spec):
                return real_loader.create_module(spec)

            def exec_module(self, module):
                real_loader.exec_module(module)
                # A function may ship its own module named logging; leave that one alone.
                if hasattr(module, "Handler") and hasattr(module, "getLogger"):
                    _setup_logging(module)

        spec.loader = Loader()
        return spec


def _install_logging():
    if "logging" in sys.modules:
        _setup_logging(sys.modules["logging"])
    else:
        sys.meta_path.insert(0, _LoggingImportHook())


# --- errors ------------------------------------------------------------------------------------


def make_error(message, error_type, stack_trace, request_id=None):
    return {
        "errorMessage": message or "",
        "errorType": error_type or "",
        "requestId": request_id or "",
        "stackTrace": stack_trace or [],
    }


def error_from_exception(exc, request_id=None):
    """The awslambdaric error body: the runtime's own frames are cut from the top of the trace."""
    import traceback

    frames = traceback.extract_tb(exc.__traceback__)
    for i, frame in enumerate(frames):
        if not frame.filename.startswith(RUNTIME_DIR):
            frames = frames[i:]
            break
    return make_error(
        str(exc), type(exc).__name__, traceback.format_list(frames), request_id
    )


def log_error(error):
    """Writes the one-line `[ERROR] Type: message` record that Lambda's Python runtime logs."""
    description = "[ERROR]"
    if error.get("errorType"):
        description += " " + error["errorType"]
    if error.get("errorMessage"):
        if error.get("errorType"):
            description += ":"
        description += " " + error["errorMessage"]
    lines = [description, "Traceback (most recent call last):"]
    for element in error.get("stackTrace") or []:
        if element == "":
            lines.append("")
            continue
        for line in element.splitlines():
            stripped = line.lstrip(" ")
            lines.append(ERROR_LOG_IDENT * (len(line) - len(stripped)) + stripped)
    sys.stdout.write(ERROR_LOG_LINE_TERMINATE.join(lines) + "\n")
    sys.stdout.flush()


# --- handler loading ---------------------------------------------------------------------------


def load_handler(handler):
    """Resolves `module.function` (also `dir/module.function`, `pkg.module.function`)."""
    try:
        modname, fname = handler.rsplit(".", 1)
    except ValueError as e:
        raise FaultError("Runtime.MalformedHandlerName", f"Bad handler '{handler}': {e}") from None
    if not modname or not fname:
        raise FaultError(
            "Runtime.MalformedHandlerName",
            f"Bad handler '{handler}': expected 'module.function', e.g. 'app.handler'",
        )
    if modname.split(".")[0] in sys.builtin_module_names:
        raise FaultError(
            "Runtime.BuiltInModuleConflict",
            f"Cannot use built-in module {modname} as a handler module",
        )
    name = modname.replace("/", ".")
    try:
        # importlib.import_module without importing importlib (and warnings): for an
        # absolute name the two do the same.
        __import__(name)
        module = sys.modules[name]
    except ImportError as e:
        raise FaultError(
            "Runtime.ImportModuleError", f"Unable to import module '{modname}': {e}"
        ) from None
    except SyntaxError as e:
        trace = ['  File "%s" Line %s\n    %s' % (e.filename, e.lineno, e.text)]
        raise FaultError(
            "Runtime.UserCodeSyntaxError", f"Syntax error in module '{modname}': {e}", trace
        ) from None
    try:
        return getattr(module, fname)
    except AttributeError:
        raise FaultError(
            "Runtime.HandlerNotFound", f"Handler '{fname}' missing on module '{modname}'"
        ) from None


# --- main loop ---------------------------------------------------------------------------------


def _flush_output():
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except Exception:
        pass


# `name in os.environ` raises and catches a KeyError when the name is missing (Mapping's
# __contains__); CPython's os.environ keeps the encoded names in a dict of its own.
_environ_data = getattr(os.environ, "_data", os.environ)
_TRACE_KEY = "_X_AMZN_TRACE_ID"
if _environ_data is not os.environ:
    _TRACE_KEY = os.environ.encodekey(_TRACE_KEY)


def handle_invocation(handler, headers, body):
    """Runs one invocation; returns (request id, body, content type, error type or None)."""
    global _current_request_id
    get = headers.get
    request_id = get("lambda-runtime-aws-request-id", "")
    _current_request_id = request_id
    trace_id = get("lambda-runtime-trace-id")
    if trace_id:
        os.environ["_X_AMZN_TRACE_ID"] = trace_id
    elif _TRACE_KEY in _environ_data:
        del os.environ["_X_AMZN_TRACE_ID"]

    try:
        try:
            deadline_ms = int(get("lambda-runtime-deadline-ms") or 0)
        except ValueError:
            deadline_ms = 0
        context = LambdaContext(
            request_id,
            _parse_json_header(get("lambda-runtime-client-context"), "Client Context"),
            _parse_json_header(get("lambda-runtime-cognito-identity"), "Cognito Identity"),
            deadline_ms,
            get("lambda-runtime-invoked-function-arn"),
        )
        content_type = get("content-type", "application/json")
        if content_type == "application/json" or content_type.split(";")[0].strip() in (
            "application/json",
            "",
        ):
            try:
                event = json_loads(body.decode("utf-8"))
            except Exception as e:
                raise FaultError(
                    "Runtime.UnmarshalError", f"Unable to unmarshal input: {e}"
                ) from None
        else:
            event = body
        result = handler(event, context)
        if isinstance(result, bytes):
            _flush_output()
            return request_id, result, "application/unknown", None
        try:
            payload = json_dumps(result).encode("utf-8")
        except Exception as e:
            raise FaultError("Runtime.MarshalError", f"Unable to marshal response: {e}") from None
        _flush_output()
        return request_id, payload, "application/json", None
    except FaultError as e:
        error = make_error(e.message, e.error_type, e.trace, request_id)
    except Exception as e:
        error = error_from_exception(e, request_id)

    _flush_output()
    log_error(error)
    try:
        error_body = json_dumps(error).encode("utf-8")
    except Exception:
        # The exception's message may hold something unserializable only in odd cases
        # (surrogates); the type still tells the caller what happened.
        error_body = json_dumps(
            make_error(repr(error["errorMessage"]), error["errorType"], [], request_id)
        ).encode("utf-8", "replace")
    return request_id, error_body, "application/json", error["errorType"]


def main():
    # Pipes make stdout block-buffered; Lambda's logs show each line as it is printed.
    sys.stdout.reconfigure(line_buffering=True)
    sys.stderr.reconfigure(line_buffering=True)

    address = os.environ.get("AWS_LAMBDA_RUNTIME_API")
    if not address:
        sys.stderr.write(
            "tamaya runtime: AWS_LAMBDA_RUNTIME_API is not set; this program is started by "
            "the tamaya daemon, which sets it to the Runtime API's host:port\n"
        )
        return 1
    client = RuntimeApiClient(address)
    global _context_env
    _context_env = _read_context_env()

    task_root = os.environ.get("LAMBDA_TASK_ROOT") or os.getcwd()
    if task_root not in sys.path:
        sys.path.insert(0, task_root)
    _install_logging()

    try:
        handler = load_handler(os.environ.get("_HANDLER", ""))
    except FaultError as e:
        error = make_error(e.message, e.error_type, e.trace)
    except Exception as e:
        # Anything the module raises at import time is an init failure with its own type.
        error = error_from_exception(e)
    else:
        error = None
    if error is not None:
        _flush_output()
        log_error(error)
        client.post_init_error(error)
        return 1

    headers, body = client.next_invocation()
    while True:
        headers, body = client.post_and_next(*handle_invocation(handler, headers, body))


def run():
    try:
        code = main()
    except ApiError as e:
        sys.stderr.write(f"tamaya runtime: {e}\n")
        code = 1
    sys.exit(code)
