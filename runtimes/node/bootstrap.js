/**
 * tamaya's Node.js runtime client: runs an AWS Lambda handler against the Runtime API.
 *
 * Started by the daemon as `node bootstrap.js` with cwd = LAMBDA_TASK_ROOT. It behaves like
 * AWS's aws-lambda-nodejs-runtime-interface-client: same handler resolution (CommonJS, ESM,
 * package.json "type"), async / promise / callback handlers, callbackWaitsForEmptyEventLoop,
 * console format, error bodies and Runtime.* error types. Only core modules are used.
 */

'use strict';

const http = require('http');
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
    // One kept-alive socket; the agent unrefs it while idle so that it never holds the event
    // loop open (callbackWaitsForEmptyEventLoop depends on the loop being able to drain).
    this.agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  }

  request(method, urlPath, body, headers, retried = false) {
    return new Promise((resolve, reject) => {
      const options = {
        hostname: this.hostname,
        port: this.port,
        path: API_PREFIX + urlPath,
        method,
        agent: this.agent,
        headers: Object.assign({ 'User-Agent': 'tamaya-node-runtime/1' }, headers),
      };
      if (body !== undefined) options.headers['Content-Length'] = Buffer.byteLength(body);
      const req = http.request(options, (res) => {
        const chunks = [];
        res.on('data', (chunk) => chunks.push(chunk));
        res.on('end', () =>
          resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) }),
        );
        res.on('error', reject);
      });
      req.on('error', (e) => {
        // A kept-alive socket the server closed while idle fails on reuse; one retry on a
        // fresh connection is what HTTP clients do.
        if (!retried && req.reusedSocket && (e.code === 'ECONNRESET' || e.code === 'EPIPE')) {
          resolve(this.request(method, urlPath, body, headers, true));
          return;
        }
        reject(new Error(`${method} ${urlPath} to the Runtime API failed: ${e.message}`));
      });
      req.end(body);
    });
  }

  async nextInvocation() {
    const res = await this.request('GET', '/invocation/next');
    if (res.status !== 200) {
      throw new Error(
        `GET /invocation/next answered ${res.status}: ${res.body.toString('utf8', 0, 200)}`,
      );
    }
    return res;
  }

  async post(urlPath, body, headers) {
    const res = await this.request('POST', urlPath, body, headers);
    if (res.status >= 300) {
      // The daemon has already decided the outcome; say so where the function's logs go.
      process.stderr.write(
        `tamaya runtime: POST ${urlPath} answered ${res.status}: ` +
          `${res.body.toString('utf8', 0, 500)}\n`,
      );
    }
  }

  postResponse(id, bodyString) {
    return this.post(`/invocation/${encodeURIComponent(id)}/response`, bodyString, {
      'Content-Type': 'application/json',
    });
  }

  postError(urlPath, error) {
    const body = toErrorBody(error);
    let bodyString;
    try {
      bodyString = JSON.stringify(body);
    } catch (_) {
      bodyString = JSON.stringify({ errorType: String(body.errorType), errorMessage: '' });
    }
    return this.post(urlPath, bodyString, {
      'Content-Type': 'application/json',
      [ERROR_TYPE_HEADER]: String(body.errorType).replace(/[^\x20-\x7e]/g, '?'),
    });
  }

  postInvocationError(id, error) {
    return this.postError(`/invocation/${encodeURIComponent(id)}/error`, error);
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
        this.client.postInvocationError(id, err).then(() => this.scheduleNext(), fatal);
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
      this.client.postInvocationError(id, err).then(next, fatal);
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

main();
