#!/usr/bin/env bash
# Installs what tamaya needs to build, run and test, from Debian's packages.
# Idempotent: installs only what is missing. Run as root on Debian 12.
set -euo pipefail

packages=(
  build-essential cmake ninja-build g++ pkg-config
  libboost-dev libboost-system-dev libsqlite3-dev nlohmann-json3-dev libspdlog-dev libfmt-dev
  libcli11-dev libssl-dev libarchive-dev libgtest-dev libgmock-dev libseccomp-dev
  python3 python3-pytest python3-requests nodejs
  curl zip unzip nginx-light wrk procps ccache clang-14 libclang-rt-14-dev
  # scripts/lint.sh (clang-tidy brings run-clang-tidy)
  clang-format clang-tidy
  # The Lambda API's tests drive the real AWS clients; the npm aws-lambda-ric
  # builds curl and aws-lambda-cpp from source when installed.
  awscli python3-boto3 autoconf automake libtool make
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# A Node.js installed outside Debian's package (same major or newer) serves too.
if command -v node >/dev/null 2>&1; then
  missing=("${missing[@]/nodejs/}")
fi
missing=($(printf '%s\n' "${missing[@]}" | grep -v '^$' || true))

if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
else
  echo "setup: all packages present"
fi
