#!/usr/bin/env bash
# Lints the C++ code with the repo's .clang-format and .clang-tidy; any
# finding fails (clang-tidy's warnings are errors, see .clang-tidy).
#   bash scripts/lint.sh [BUILD_DIR]    # default build/release
# clang-format checks every tracked .cpp/.h; clang-tidy checks src/ only
# (tests/ would add minutes of GoogleTest parsing to CI) and reads
# BUILD_DIR/compile_commands.json, which any configured build dir has
# (CMakeLists.txt exports it): run `cmake --preset release` first.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
build_dir=${1:-build/release}
jobs=${LINT_JOBS:-2}

if [[ ! -f "$build_dir/compile_commands.json" ]]; then
  echo "lint: $build_dir/compile_commands.json is missing; configure first (cmake --preset release)" >&2
  exit 2
fi

if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  mapfile -t files < <(git ls-files '*.cpp' '*.h')
else
  mapfile -t files < <(find src tests bench -name '*.cpp' -o -name '*.h' | sort)
fi

echo "== lint: clang-format (${#files[@]} files)"
clang-format --dry-run --Werror "${files[@]}"

echo "== lint: clang-tidy (src/, -j$jobs)"
# Only the diagnostics are shown, not the per-file command lines and counts of
# suppressed system-header warnings.
set +e
noise='^(clang-tidy(-[0-9]+)? .*-p=|[0-9]+ warnings? (and [0-9]+ errors? )?generated\.$)'
PYTHONUNBUFFERED=1 run-clang-tidy -p "$build_dir" -j "$jobs" -quiet "^$root/src/" 2>&1 |
  sed -u 's/\x1b\[[0-9;]*m//g' | grep --line-buffered -v -E "$noise"
status=${PIPESTATUS[0]}
set -e
if ((status != 0)); then
  echo "lint: clang-tidy found problems (above); fix them or, for a false positive only," \
    "add // NOLINT(check): reason" >&2
  exit 1
fi
echo "lint: clean"
