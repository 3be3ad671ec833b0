// Reports what the instance sees of itself (tests/integration/test_node_pool.py).
const fs = require('fs');

function tryCode(fn) {
  try {
    fn();
    return 'ok';
  } catch (e) {
    return e.code || String(e);
  }
}

exports.handler = async (event) => {
  const status = fs.readFileSync('/proc/self/status', 'utf8');
  const field = (key) => (status.split('\n').find((l) => l.startsWith(key + ':')) || '')
    .slice(key.length + 1).trim();
  return {
    cmdline: fs.readFileSync('/proc/self/cmdline', 'utf8').split('\0').filter(Boolean),
    uid: process.getuid(),
    euid: process.geteuid(),
    gid: process.getgid(),
    groups: process.getgroups(),
    status: { Uid: field('Uid'), Gid: field('Gid'), Groups: field('Groups'), CapEff: field('CapEff'),
      NoNewPrivs: field('NoNewPrivs'), Seccomp: field('Seccomp') },
    env: process.env,
    cwd: process.cwd(),
    task: fs.readdirSync('/var/task').sort(),
    taskMount: fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n')
      .filter((l) => l.split(' ')[4] === '/var/task'),
    writeTask: tryCode(() => fs.writeFileSync('/var/task/x', 'y')),
    writeTmp: tryCode(() => fs.writeFileSync('/tmp/t', 'y')),
    pid: process.pid,
    pids: fs.readdirSync('/proc').filter((x) => /^\d+$/.test(x)),
    cgroup: fs.readFileSync('/proc/self/cgroup', 'utf8'),
    kill: (event.pids || []).map((p) => tryCode(() => process.kill(p, 0))),
    // The scheduling policy, field 41 of stat (counted after the command's parentheses).
    cpuPolicy: Number(fs.readFileSync('/proc/self/stat', 'utf8').split(') ')[1].split(' ')[38]),
  };
};
