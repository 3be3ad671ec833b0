'use strict';
// A generic Node.js instance of the daemon's pool (src/sandbox/node_pool.h): started before any
// function needs it, with what every function's runtime needs already loaded, then specialised
// for one function on its cold start and never reused for another.
//
// Started as root inside the sandbox (its own mount/pid/ipc/uts namespaces, minimal root with an
// empty /var/task, rlimits, no_new_privs, seccomp) with stdin a socket to the daemon. It says
// "ready" and waits for one line: {"uid","gid","env","cwd"}. By then the daemon has mounted the
// function's code at /var/task and moved the instance into the function's limits. This file
// drops root (groups, gid, uid: glibc applies each to every thread), takes the function's
// environment and working directory, answers "ok", and only then runs bootstrap.js, which loads
// the handler. Any failure answers "error ..." and exits before function code could run.
//
// Kept apart from bootstrap.js so that the runtime client itself stays the same for a pooled
// and a direct start.

const http = require('http');
const path = require('path');
const fs = require('fs');
const net = require('net');
const Module = require('module');
// What bootstrap.js and most handlers load: compiled once here, off the request path.
require('util');
require('url');
require('https');
require('crypto');
void http;
void fs;
// The runtime client itself, compiled here too; it reads nothing of the function's until main().
const bootstrap = require('./bootstrap.js');

const control = new net.Socket({ fd: 0, readable: true, writable: true });
let buffered = '';
let done = false;

function answer(text) {
  try {
    fs.writeSync(0, text + '\n');
  } catch (_) {
    // The daemon is gone: nothing to answer.
  }
}

function refuse(message) {
  answer('error ' + message.replace(/\n/g, ' '));
  process.exit(1);
}

function specialise(spec) {
  const uid = spec.uid >>> 0;
  const gid = spec.gid >>> 0;
  if (uid !== 0) {
    process.setgroups([]);
    process.setgid(gid);
    process.setuid(uid);
    if (process.getuid() !== uid || process.geteuid() !== uid || process.getgid() !== gid ||
        process.getegid() !== gid || process.getgroups().some((g) => g !== gid)) {
      throw new Error(`still uid ${process.geteuid()} gid ${process.getegid()} after setuid`);
    }
  }
  for (const key of Object.keys(process.env)) delete process.env[key];
  Object.assign(process.env, spec.env);
  process.chdir(spec.cwd);
  // NODE_PATH is read once at start; read it again from the function's environment.
  Module._initPaths();
  process.argv[1] = path.join(__dirname, 'bootstrap.js');
}

control.setEncoding('utf8');
control.on('data', (chunk) => {
  if (done) return;
  buffered += chunk;
  const nl = buffered.indexOf('\n');
  if (nl < 0) return;
  done = true;
  // From here on the socket is the daemon's no more: it must not keep the event loop alive
  // (callbackWaitsForEmptyEventLoop waits for an empty loop).
  control.removeAllListeners('data');
  control.pause();
  control.unref();
  let spec;
  try {
    spec = JSON.parse(buffered.slice(0, nl));
    specialise(spec);
  } catch (err) {
    refuse(String(err && err.message ? err.message : err));
    return;
  }
  answer('ok');
  bootstrap.main();
});
control.on('error', () => {});
control.on('end', () => {
  // The daemon went away before specialising this instance: nothing will ever run here.
  if (!done) process.exit(0);
});

answer('ready');
