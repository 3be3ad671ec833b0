# bench/lib/procs.sh: stopping what a bench started and its temp dir, for
# every bench's EXIT trap. Sourced, not run.

# TERM to each PID in the order given, then for each a bounded wait (5 s)
# and SIGKILL if it is still there.
stop_processes() {
  local pid
  for pid in "$@"; do kill -TERM "$pid" 2>/dev/null; done
  for pid in "$@"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
  done
  return 0
}

# Removes the temp dir $2 of bench $1, or keeps it (and says so) after a
# failure (exit status $3 not 0) or with BENCH_KEEP_TMP=1.
finish_tmp() {
  if [[ "${BENCH_KEEP_TMP:-}" == 1 || $3 -ne 0 ]]; then
    echo "bench/$1: kept $2" >&2
  else
    rm -rf "$2"
  fi
}
