"""Reports how this instance was started and walled in, read back from /proc as the kernel sees it."""

import os

import procfs


def handler(event, context):
    status = procfs.status()
    with open("/proc/self/cgroup") as f:
        cgroups = [line.strip() for line in f if line.strip()]
    with open("/proc/self/mounts") as f:
        mounts = {line.split()[1]: line.split()[3] for line in f}
    return {
        "pid": os.getpid(),
        "uid": status["Uid"].split(),
        "gid": status["Gid"].split(),
        "groups": status.get("Groups", ""),
        "seccomp": status["Seccomp"],
        "no_new_privs": status["NoNewPrivs"],
        "cap_eff": status["CapEff"],
        "cgroups": cgroups,
        "tmp": mounts.get("/tmp", ""),
        "visible_pids": sorted(int(p) for p in os.listdir("/proc") if p.isdigit()),
        "marker": os.environ.get("ITEST_MARKER"),
        "runtime_api": os.environ.get("AWS_LAMBDA_RUNTIME_API"),
        "limits_nofile": [line for line in open("/proc/self/limits") if line.startswith("Max open files")][0].split()[3:5],
        # How this module and one it imports were loaded: compiled ahead by a zygote, or read
        # and compiled here.
        "module_loader": type(__loader__).__name__,
        "imported_loader": type(procfs.__loader__).__name__,
    }
