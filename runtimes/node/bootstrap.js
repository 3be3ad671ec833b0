/**
 * tamaya's Node.js runtime client: runs an AWS Lambda handler against the Runtime API.
 *
 * Started by the daemon as `node bootstrap.js` with cwd = LAMBDA_TASK_ROOT. It behaves like
 * AWS's aws-lambda-nodejs-runtime-interface-client: same handler resolution (CommonJS, ESM,
 * package.json "type"), async / promise / callback handlers, callbackWaitsForEmptyEventLoop,
 * console format, error bodies and Runtime.* error types. Only core modules are used.
 */

'use strict';

const path = require('path');
const fs = require('fs');

const API_PREFIX = '/2018-06-01/runtime';
const ERROR_TYPE_HEADER = 'Lambda-Runtime-Function-Error-Type';
// Lambda's Node runtime exits with these after reporting an uncaught exception or an
// unhandled rejection, so the platform records a crash rather than a clean stop.
const EXIT_UNCAUGHT_EXCEPTION = 129;
const EXIT_UNHANDLED_REJECTION = 128;
const EXIT_INIT_FAILURE = 1;

// --- error types ------------------------------------------------------------------------------

function runtimeError(name) {
  const cls = class extends Error {};
  Object.defineProperty(cls, 'name', { value: name });
  cls.prototype.name = `Runtime.${name}`;
  return cls;
}

const ImportModuleError = runtimeError('ImportModuleError');
const HandlerNotFound = runtimeError('HandlerNotFound');
const MalformedHandlerName = runtimeError('MalformedHandlerName');
const UserCodeSyntaxError = runtimeError('UserCodeSyntaxError');
const NodeJsExit = runtimeError('NodeJsExit');

class UnhandledPromiseRejection extends Error {
  constructor(reason, promise) {
    super(reason);
    this.reason = reason;
    this.promise = promise;
  }
}
UnhandledPromiseRejection.prototype.name = 'Runtime.UnhandledPromiseRejection';

function isErrorLike(obj) {
  return (
    obj &&
    typeof obj.name === 'string' &&
    typeof obj.message === 'string' &&
    typeof obj.stack === 'string'
  );
}

/**
 * The body Lambda's Node runtime posts for an error. AWS calls the stack `trace`; tamaya's
 * Runtime API reads `stackTrace`, so both carry it.
 */
function toErrorBody(error) {
  try {
    if (error instanceof Error || isErrorLike(error)) {
      const trace = typeof error.stack === 'string' ? error.stack.split('\n') : [];
      return {
        errorType: error.name,
        errorMessage: error.message,
        trace,
        stackTrace: trace,
      };
    }
    return {
      errorType: typeof error,
      errorMessage: String(error),
      trace: [],
      stackTrace: [],
    };
  } catch (_) {
    return {
      errorType: 'handled',
      errorMessage:
        'callback called with Error argument, but there was a problem while retrieving one or ' +
        'more of its message, name, and stack',
    };
  }
}

function intoError(err) {
  return err instanceof Error ? err : new Error(err);
}

/** Lambda logs errors as a tab and the error as JSON with its enumerable properties. */
function formatErrorForLog(error) {
  const withProperties = (_key, value) => {
    if (value instanceof Error) {
      const out = Object.assign(
        { errorType: value.name, errorMessage: value.message, code: value.code },
        value,
      );
      if (typeof value.stack === 'string') out.stack = value.stack.split('\n');
      return out;
    }
    return value;
  };
  try {
    return '\t' + JSON.stringify(error, withProperties);
  } catch (_) {
    return '\t' + JSON.stringify(toErrorBody(error));
  }
}

// --- console --------------------------------------------------------------------------------

const REQUEST_ID_SYMBOL = Symbol.for('aws.lambda.runtime.requestId');
let format = null;

function writeLogLine(level, args) {
  if (format === null) format = require('util').format;
  const requestId = global[REQUEST_ID_SYMBOL];
  // One record per line on the pipe, as Lambda's stdout logger does: inner newlines become \r.
  const line = `${new Date().toISOString()}\t${requestId}\t${level}\t${format(...args)}`;
  process.stdout.write(line.replace(/\n/g, '\r') + '\n');
}

function patchConsole() {
  const priorities = { TRACE: 1, DEBUG: 2, INFO: 3, WARN: 4, ERROR: 5, FATAL: 6 };
  const wanted = (process.env.AWS_LAMBDA_LOG_LEVEL || '').toUpperCase();
  const minimum = priorities[wanted] || priorities.TRACE;
  const logger = (level) =>
    priorities[level] >= minimum ? (...args) => writeLogLine(level, args) : () => {};
  console.trace = logger('TRACE');
  console.debug = logger('DEBUG');
  console.info = logger('INFO');
  console.log = console.info;
  console.warn = logger('WARN');
  console.error = logger('ERROR');
  console.fatal = logger('FATAL');
}

function logError(label, err) {
  console.error(label, formatErrorForLog(intoError(err)));
}

// --- Runtime API client -------------------------------------------------------------------

// A head larger than this is not an answer from the Runtime API.
const MAX_HEAD_BYTES = 64 * 1024;
const EMPTY = Buffer.alloc(0);

/** Status line and headers of an answer; header names lower-cased, as `http` gives them. */
function parseHead(text) {
  const lines = text.split('\r\n');
  const status = lines[0].split(' ', 3);
  const code = Number(status[1]);
  if (status.length < 2 || !Number.isInteger(code)) {
    throw new Error(`the Runtime API sent a malformed status line ${JSON.stringify(lines[0])}`);
  }
  const headers = {};
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i];
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    headers[name] = name in headers ? `${headers[name]}, ${value}` : value;
  }
  const te = headers['transfer-encoding'];
  const length = Number(headers['content-length'] || 0);
  if (!Number.isSafeInteger(length) || length < 0) {
    throw new Error(`the Runtime API sent a bad Content-Length ${headers['content-length']}`);
  }
  return {
    status: code,
    headers,
    chunked: te !== undefined && te.toLowerCase().includes('chunked'),
    length,
    close:
      (headers.connection || '').toLowerCase() === 'close' || status[0] === 'HTTP/1.0',
  };
}

/**
 * Decodes a complete chunked body at the start of `buf`: [body, bytes used], or null while
 * more bytes are needed.
 */
function decodeChunked(buf) {
  const parts = [];
  let pos = 0;
  for (;;) {
    const eol = buf.indexOf('\r\n', pos);
    if (eol < 0) return null;
    const size = parseInt(buf.latin1Slice(pos, eol).split(';')[0].trim() || '0', 16);
    if (!Number.isInteger(size) || size < 0) throw new Error('the Runtime API sent a bad chunk');
    pos = eol + 2;
    if (size === 0) {
      // Trailers end with an empty line.
      for (;;) {
        const end = buf.indexOf('\r\n', pos);
        if (end < 0) return null;
        const empty = end === pos;
        pos = end + 2;
        if (empty) return [Buffer.concat(parts), pos];
      }
    }
    if (buf.length < pos + size + 2) return null;
    parts.push(buf.subarray(pos, pos + size));
    pos += size + 2;
  }
}

/**
 * HTTP/1.1 on one kept-alive `net` socket. Requests may be pipelined (answers come in order),
 * so an invocation's response and the next GET go out in one write. The socket is unref'd
 * whenever no answer is awaited, so it never holds the event loop open: the 'beforeExit'
 * that callbackWaitsForEmptyEventLoop depends on still fires.
 */
class RuntimeApiClient {
  constructor(address) {
    const colon = address.lastIndexOf(':');
    const port = Number(address.slice(colon + 1));
    if (colon <= 0 || !Number.isInteger(port)) {
      throw new Error(
        `AWS_LAMBDA_RUNTIME_API=${JSON.stringify(address)} is not host:port; ` +
          "the daemon must set it to the Runtime API's address",
      );
    }
    this.hostname = address.slice(0, colon).replace(/^\[|\]$/g, '');
    this.port = port;
    this.hostHeader = address;
    this.socket = null;
    // Requests written and not answered yet, in order: { data, label, resolve, reject }.
    this.pending = [];
    this.input = EMPTY; // bytes of the answer being read
    this.answer = null; // its parsed head, once complete
    this.answered = 0; // answers read on this socket (a reused socket may be retried)
    this.retried = false;
    this.prefetched = null; // the answer to a GET /next sent behind the last POST
    this.nextRequest = this.encode('GET', '/invocation/next');
  }

  encode(method, urlPath, body, headers) {
    let head =
      `${method} ${API_PREFIX}${urlPath} HTTP/1.1\r\nHost: ${this.hostHeader}\r\n` +
      'User-Agent: tamaya-node-runtime/1\r\n';
    if (headers) for (const name of Object.keys(headers)) head += `${name}: ${headers[name]}\r\n`;
    if (body === undefined) return Buffer.from(head + '\r\n', 'latin1');
    const bodyBytes = Buffer.byteLength(body);
    head += `Content-Length: ${bodyBytes}\r\n\r\n`;
    const data = Buffer.allocUnsafe(head.length + bodyBytes);
    data.latin1Write(head, 0);
    data.utf8Write(body, head.length);
    return data;
  }

  connect() {
    const socket = require('net').connect({ host: this.hostname, port: this.port });
    socket.setNoDelay(true);
    socket.on('data', (chunk) => this.onData(socket, chunk));
    socket.on('error', (e) => {
      socket.lastError = e;
    });
    socket.on('close', () => this.onClose(socket));
    this.socket = socket;
    this.input = EMPTY;
    this.answer = null;
    this.answered = 0;
    return socket;
  }

  /** Writes the requests at once; one promise per request for its answer. */
  send(requests) {
    const socket = this.socket || this.connect();
    const promises = requests.map(
      ([data, label]) =>
        new Promise((resolve, reject) => this.pending.push({ data, label, resolve, reject })),
    );
    socket.ref();
    socket.write(requests.length === 1 ? requests[0][0] : Buffer.concat(requests.map((r) => r[0])));
    return promises;
  }

  onData(socket, chunk) {
    if (socket !== this.socket) return;
    let input = chunk;
    const partial = this.answer;
    if (partial !== null && partial.body !== undefined) {
      // The rest of a large body: copied into its buffer, not joined chunk by chunk.
      const n = Math.min(chunk.length, partial.length - partial.filled);
      chunk.copy(partial.body, partial.filled, 0, n);
      partial.filled += n;
      if (partial.filled < partial.length) return;
      input = chunk.subarray(n);
    } else if (this.input.length) {
      input = Buffer.concat([this.input, chunk]);
    }
    try {
      for (;;) {
        if (this.answer === null) {
          const end = input.indexOf('\r\n\r\n');
          if (end < 0) {
            if (input.length > MAX_HEAD_BYTES) throw new Error('the Runtime API sent a huge head');
            break;
          }
          this.answer = parseHead(input.latin1Slice(0, end));
          input = input.subarray(end + 4);
        }
        const answer = this.answer;
        let body;
        if (answer.chunked) {
          const decoded = decodeChunked(input);
          if (decoded === null) break;
          [body] = decoded;
          input = input.subarray(decoded[1]);
        } else if (answer.body !== undefined) {
          body = answer.body; // filled above
        } else if (input.length < answer.length) {
          answer.body = Buffer.allocUnsafe(answer.length);
          answer.filled = input.copy(answer.body);
          input = EMPTY;
          break;
        } else {
          body = input.subarray(0, answer.length);
          input = input.subarray(answer.length);
        }
        this.answer = null;
        this.answered++;
        this.retried = false;
        const request = this.pending.shift();
        if (request) request.resolve({ status: answer.status, headers: answer.headers, body });
        if (answer.close) {
          // Whatever was pipelined behind this answer goes out again on a new connection.
          this.socket = null;
          this.input = EMPTY;
          socket.destroy();
          if (this.pending.length > 0) this.resend();
          return;
        }
        if (input.length === 0) break;
      }
    } catch (e) {
      socket.lastError = e;
      this.input = EMPTY;
      socket.destroy();
      return;
    }
    this.input = input.length ? input : EMPTY;
    if (this.pending.length === 0) socket.unref();
  }

  onClose(socket) {
    if (socket !== this.socket) return;
    this.socket = null;
    const started = this.answer !== null || this.input.length > 0;
    this.input = EMPTY;
    this.answer = null;
    if (this.pending.length === 0) return;
    // A kept-alive connection that the server closed while idle fails before any byte of the
    // answer arrives; one retry on a fresh connection is what HTTP clients do.
    if (!started && this.answered > 0 && !this.retried) {
      this.retried = true;
      this.resend();
      return;
    }
    const requests = this.pending;
    this.pending = [];
    const e = socket.lastError;
    const why = e ? e.message : 'the connection closed before the answer';
    for (const r of requests) {
      r.reject(new Error(`${r.label} to the Runtime API failed: ${why}`));
    }
  }

  /** Sends every unanswered request again, on a new connection. */
  resend() {
    const socket = this.connect();
    socket.ref();
    socket.write(Buffer.concat(this.pending.map((r) => r.data)));
  }

  async nextInvocation() {
    let answer = this.prefetched;
    this.prefetched = null;
    if (answer === null) [answer] = this.send([[this.nextRequest, 'GET /invocation/next']]);
    const res = await answer;
    if (res.status !== 200) {
      throw new Error(
        `GET /invocation/next answered ${res.status}: ${res.body.toString('utf8', 0, 200)}`,
      );
    }
    return res;
  }

  /** POSTs; with `thenNext`, GET /next is pipelined behind it for nextInvocation() to take. */
  async post(urlPath, body, headers, thenNext = false) {
    const request = [this.encode('POST', urlPath, body, headers), `POST ${urlPath}`];
    let answer;
    if (thenNext) {
      let next;
      [answer, next] = this.send([request, [this.nextRequest, 'GET /invocation/next']]);
      // Awaited by the next handleOnce(); until then a failure must not count as unhandled.
      next.catch(noop);
      this.prefetched = next;
    } else {
      [answer] = this.send([request]);
    }
    const res = await answer;
    if (res.status >= 300) {
      // The daemon has already decided the outcome; say so where the function's logs go.
      process.stderr.write(
        `tamaya runtime: POST ${urlPath} answered ${res.status}: ` +
          `${res.body.toString('utf8', 0, 500)}\n`,
      );
    }
  }

  postResponse(id, bodyString) {
    return this.post(
      `/invocation/${encodeURIComponent(id)}/response`,
      bodyString,
      { 'Content-Type': 'application/json' },
      true,
    );
  }

  postError(urlPath, error, thenNext = false) {
    const body = toErrorBody(error);
    let bodyString;
    try {
      bodyString = JSON.stringify(body);
    } catch (_) {
      bodyString = JSON.stringify({ errorType: String(body.errorType), errorMessage: '' });
    }
    return this.post(
      urlPath,
      bodyString,
      {
        'Content-Type': 'application/json',
        [ERROR_TYPE_HEADER]: String(body.errorType).replace(/[^\x20-\x7e]/g, '?'),
      },
      thenNext,
    );
  }

  /** `thenNext` only when the runtime goes on serving: a crashing one must not take an event. */
  postInvocationError(id, error, thenNext = false) {
    return this.postError(`/invocation/${encodeURIComponent(id)}/error`, error, thenNext);
  }

  postInitError(error) {
    return this.postError('/init/error', error);
  }
}

// --- handler loading ------------------------------------------------------------------------

const FUNCTION_EXPR = /^([^.]*)\.(.*)$/;

function fileExists(file) {
  try {
    return fs.statSync(file).isFile();
  } catch (_) {
    return false;
  }
}

/** True when the nearest package.json above `folder` says "type": "module". */
function packageTypeIsModule(folder) {
  for (;;) {
    if (folder.endsWith('/node_modules')) return false;
    const pj = path.join(folder, 'package.json');
    if (fileExists(pj)) {
      try {
        return JSON.parse(fs.readFileSync(pj, 'utf8')).type === 'module';
      } catch (e) {
        console.warn(`${pj} cannot be read, it will be ignored for ES module detection.`, e);
        return false;
      }
    }
    const parent = path.dirname(folder);
    if (parent === folder) return false;
    folder = parent;
  }
}

async function importFile(file) {
  const { pathToFileURL } = require('url');
  return import(pathToFileURL(file).href);
}

async function loadModule(appRoot, moduleRoot, moduleName) {
  const base = path.resolve(appRoot, moduleRoot, moduleName);
  if (fileExists(base)) return require(base);
  const isModuleType = packageTypeIsModule(path.dirname(base));
  if (fileExists(base + '.js')) {
    return isModuleType ? importFile(base + '.js') : require(base + '.js');
  }
  if (fileExists(base + '.mjs')) return importFile(base + '.mjs');
  if (fileExists(base + '.cjs')) return require(base + '.cjs');
  // Not a file in the task root: a package or a directory with index.js, resolved as Node would
  // from the task root (require() alone would resolve from this file's folder).
  const paths = [appRoot, path.resolve(appRoot, moduleRoot)];
  return require(require.resolve(moduleName, { paths }));
}

async function loadHandler(appRoot, fullHandler) {
  if (!fullHandler) {
    throw new MalformedHandlerName(
      "Bad handler: _HANDLER is empty; set the function's handler to 'module.function', " +
        "e.g. 'index.handler'",
    );
  }
  if (fullHandler.includes('..')) {
    throw new MalformedHandlerName(
      `'${fullHandler}' is not a valid handler name. Use absolute paths when specifying ` +
        'root directories in handler names.',
    );
  }
  const handlerString = path.basename(fullHandler);
  const moduleRoot = fullHandler.substring(0, fullHandler.indexOf(handlerString));
  const match = handlerString.match(FUNCTION_EXPR);
  if (!match || !match[1] || !match[2]) {
    throw new MalformedHandlerName(
      `Bad handler '${fullHandler}': expected 'module.function', e.g. 'index.handler'`,
    );
  }
  const [, moduleName, handlerPath] = match;

  let userModule;
  try {
    userModule = await loadModule(appRoot, moduleRoot, moduleName);
  } catch (e) {
    if (e instanceof SyntaxError) throw new UserCodeSyntaxError(e);
    if (e && (e.code === 'MODULE_NOT_FOUND' || e.code === 'ERR_MODULE_NOT_FOUND')) {
      throw new ImportModuleError(e);
    }
    throw e;
  }

  const handler = handlerPath.split('.').reduce((obj, key) => obj && obj[key], userModule);
  if (!handler) {
    throw new HandlerNotFound(`${fullHandler} is undefined or not exported`);
  }
  if (typeof handler !== 'function') {
    throw new HandlerNotFound(`${fullHandler} is not a function`);
  }
  return handler;
}

// --- invocation loop --------------------------------------------------------------------------

// The 'beforeExit' event fires when the event loop has nothing left to do; Lambda uses it for
// callbackWaitsForEmptyEventLoop and for handlers that never finish. One listener at a time.
let beforeExitListener = () => {};
const noop = () => {};

function lowercaseKeys(headers) {
  const out = {};
  for (const key of Object.keys(headers)) out[key.toLowerCase()] = headers[key];
  return out;
}

function parseJsonHeader(value, name) {
  if (value === undefined) return undefined;
  try {
    return JSON.parse(value);
  } catch (err) {
    throw new Error(`Cannot parse ${name} as json: ${err.toString()}`);
  }
}

function serializeResult(result) {
  try {
    return JSON.stringify(result === undefined ? null : result);
  } catch (_) {
    throw new Error('Unable to stringify response body');
  }
}

class Runtime {
  constructor(client, handler) {
    this.client = client;
    this.handler = handler;
    this.isAsync = handler.constructor && handler.constructor.name === 'AsyncFunction';
    this.currentId = null;
    this.polling = false;
  }

  scheduleNext() {
    setImmediate(() => {
      this.handleOnce().catch((err) => {
        // Only a Runtime API failure gets here; without it there is no next event to run.
        process.stderr.write(`tamaya runtime: ${err && err.message ? err.message : err}\n`);
        process.exit(1);
      });
    });
  }

  async handleOnce() {
    this.polling = true;
    const { headers: rawHeaders, body } = await this.client.nextInvocation();
    const headers = lowercaseKeys(rawHeaders);
    const id = headers['lambda-runtime-aws-request-id'];
    this.currentId = id;
    global[REQUEST_ID_SYMBOL] = id;
    if (headers['lambda-runtime-trace-id']) {
      process.env._X_AMZN_TRACE_ID = headers['lambda-runtime-trace-id'];
    } else {
      delete process.env._X_AMZN_TRACE_ID;
    }

    const [callback, context, markCompleted] = this.buildCallbackContext(id);
    beforeExitListener = () => {
      markCompleted();
      beforeExitListener = noop;
      if (this.isAsync) {
        // An async handler whose promise never settled: the loop drained with nothing to wait on.
        const err = new NodeJsExit(
          'The handler returned a promise that never settled: the event loop emptied before ' +
            'it resolved or rejected. Make sure every promise the handler awaits settles.',
        );
        logError('Invoke Error', err);
        this.client.postInvocationError(id, err, true).then(() => this.scheduleNext(), fatal);
      } else {
        // A sync or callback handler that never called back succeeds with null, as in Lambda.
        this.client.postResponse(id, 'null').then(() => this.scheduleNext(), fatal);
      }
    };

    try {
      const deadline = Number(headers['lambda-runtime-deadline-ms']);
      Object.assign(context, {
        functionVersion: process.env.AWS_LAMBDA_FUNCTION_VERSION,
        functionName: process.env.AWS_LAMBDA_FUNCTION_NAME,
        memoryLimitInMB: process.env.AWS_LAMBDA_FUNCTION_MEMORY_SIZE,
        logGroupName: process.env.AWS_LAMBDA_LOG_GROUP_NAME,
        logStreamName: process.env.AWS_LAMBDA_LOG_STREAM_NAME,
        clientContext: parseJsonHeader(headers['lambda-runtime-client-context'], 'ClientContext'),
        identity: parseJsonHeader(headers['lambda-runtime-cognito-identity'], 'CognitoIdentity'),
        invokedFunctionArn: headers['lambda-runtime-invoked-function-arn'],
        awsRequestId: id,
        getRemainingTimeInMillis: () => deadline - Date.now(),
      });
      const event = JSON.parse(body.toString('utf8'));
      const result = this.handler(event, context, callback);
      if (result && typeof result.then === 'function') {
        result.then(context.succeed, context.fail).catch(context.fail);
      }
    } catch (err) {
      callback(err);
    }
  }

  /** callback, context.{done,succeed,fail,callbackWaitsForEmptyEventLoop}: first call wins. */
  buildCallbackContext(id) {
    let completed = false;
    let waitForEmptyEventLoop = true;
    const next = () => this.scheduleNext();

    const postError = (err) => {
      logError('Invoke Error', err);
      this.client.postInvocationError(id, err, true).then(next, fatal);
    };
    const complete = (result) => {
      if (completed) {
        console.error(
          'Invocation has already been reported as done. ' +
            'Cannot call complete more than once per invocation.',
        );
        return;
      }
      completed = true;
      let bodyString;
      try {
        bodyString = serializeResult(result);
      } catch (err) {
        postError(err);
        return;
      }
      this.client.postResponse(id, bodyString).then(next, fatal);
    };

    const callback = (err, result) => {
      beforeExitListener = noop;
      if (err !== undefined && err !== null) {
        postError(err);
      } else if (!waitForEmptyEventLoop) {
        complete(result);
      } else {
        beforeExitListener = () => {
          beforeExitListener = noop;
          setImmediate(() => complete(result));
        };
      }
    };
    const done = (err, result) => {
      beforeExitListener = noop;
      if (err !== undefined && err !== null) {
        postError(err);
      } else {
        complete(result);
      }
    };

    let finished = false;
    const firstCallOnly = (fn) =>
      function () {
        if (!finished) {
          fn.apply(null, arguments);
          finished = true;
        }
      };
    const context = {
      get callbackWaitsForEmptyEventLoop() {
        return waitForEmptyEventLoop;
      },
      set callbackWaitsForEmptyEventLoop(value) {
        waitForEmptyEventLoop = value;
      },
      succeed: firstCallOnly((result) => done(null, result)),
      fail: firstCallOnly((err) => done(err === undefined || err === null ? 'handled' : err, null)),
      done: firstCallOnly(done),
    };
    return [firstCallOnly(callback), context, () => (completed = true)];
  }
}

function fatal(err) {
  process.stderr.write(`tamaya runtime: ${err && err.message ? err.message : err}\n`);
  process.exit(1);
}

async function main() {
  const address = process.env.AWS_LAMBDA_RUNTIME_API;
  if (!address) {
    process.stderr.write(
      'tamaya runtime: AWS_LAMBDA_RUNTIME_API is not set; this program is started by the ' +
        "tamaya daemon, which sets it to the Runtime API's host:port\n",
    );
    process.exit(1);
  }
  patchConsole();
  const client = new RuntimeApiClient(address);
  let runtime = null;

  const onFailure = (label, error, exitCode) => {
    logError(label, error);
    const id = runtime && runtime.currentId;
    if (id) {
      client.postInvocationError(id, error).then(() => process.exit(exitCode), fatal);
    } else if (!runtime || !runtime.polling) {
      // Init (module load and the ticks right after it) failed.
      client.postInitError(error).then(() => process.exit(EXIT_INIT_FAILURE), fatal);
    } else {
      // Waiting for the first event: the Runtime API refuses init errors after the first
      // /next, so the exit itself tells the daemon.
      process.exit(exitCode);
    }
  };
  process.on('uncaughtException', (error) => {
    onFailure('Uncaught Exception', error, EXIT_UNCAUGHT_EXCEPTION);
  });
  process.on('unhandledRejection', (reason, promise) => {
    onFailure(
      'Unhandled Promise Rejection',
      new UnhandledPromiseRejection(reason, promise),
      EXIT_UNHANDLED_REJECTION,
    );
  });
  process.on('beforeExit', () => beforeExitListener());

  const appRoot = process.env.LAMBDA_TASK_ROOT || process.cwd();
  let handler;
  try {
    handler = await loadHandler(appRoot, process.env._HANDLER || '');
  } catch (error) {
    logError('Uncaught Exception', error);
    client.postInitError(error).then(() => process.exit(EXIT_INIT_FAILURE), fatal);
    return;
  }
  runtime = new Runtime(client, handler);
  runtime.scheduleNext();
}

// Run as the program (`node bootstrap.js`), it starts at once; a pooled generic instance
// (generic.js) loads it ahead of need and calls main() once it is the function's.
if (require.main === module) {
  main();
} else {
  module.exports = { main };
}
