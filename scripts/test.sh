#!/usr/bin/env bash
# Sets up, builds and runs every test: unit tests (ctest) on the debug
# build with ASan/UBSan, then integration tests (pytest) against the real
# daemon of the release build, then the linters (scripts/lint.sh), last so
# that a style finding does not hide test results.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh asan
bash scripts/build.sh release

echo "== unit tests"
ctest --preset asan -j2

echo "== runtime client tests"
/usr/bin/python3 -m pytest -q -p no:cacheprovider tests/runtimes

echo "== integration tests"
TAMAYA_BIN="$PWD/build/release/tamaya" /usr/bin/python3 -m pytest -q -p no:cacheprovider tests/integration

echo "== lint (clang-format, clang-tidy)"
bash scripts/lint.sh build/release
