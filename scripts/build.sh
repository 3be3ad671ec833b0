#!/usr/bin/env bash
# Configures and builds one CMake preset (default: release).
set -euo pipefail
cd "$(dirname "$0")/.."
preset=${1:-release}
cmake --preset "$preset" >/dev/null
cmake --build --preset "$preset" -j"$(nproc)"
# Instances may not be able to write next to the runtime clients: compile them now.
/usr/bin/python3 -m compileall -q runtimes/python >/dev/null
