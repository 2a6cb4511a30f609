#!/usr/bin/env bash
# One entry point for a fresh machine: installs the pinned Node.js and pnpm (from the npm registry)
# into a per-user cache if missing, installs the workspace's dependencies, then runs a pnpm script.
#   bash scripts/dev.sh start   # build and run the gateway (ws://localhost:6030)
#   bash scripts/dev.sh test    # run the test suite
#   bash scripts/dev.sh <any pnpm script or command> [args...]
set -euo pipefail

NODE_VERSION=22.23.3
PNPM_VERSION=10.34.8
TOOLCHAIN="${STSGATE_TOOLCHAIN:-$HOME/.cache/stsgate-toolchain}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

have_toolchain() {
  [ -x "$TOOLCHAIN/node_modules/.bin/node" ] && [ -x "$TOOLCHAIN/node_modules/.bin/pnpm" ] &&
    [ "$("$TOOLCHAIN/node_modules/.bin/node" --version)" = "v$NODE_VERSION" ] &&
    [ "$("$TOOLCHAIN/node_modules/.bin/pnpm" --version)" = "$PNPM_VERSION" ]
}

if ! have_toolchain; then
  command -v npm >/dev/null || { echo "dev.sh: npm is needed once to fetch Node $NODE_VERSION" >&2; exit 1; }
  echo "dev.sh: installing Node $NODE_VERSION and pnpm $PNPM_VERSION into $TOOLCHAIN" >&2
  mkdir -p "$TOOLCHAIN"
  npm install --silent --no-save --no-audit --no-fund --prefix "$TOOLCHAIN" "node@$NODE_VERSION" "pnpm@$PNPM_VERSION" >&2
fi
export PATH="$TOOLCHAIN/node_modules/.bin:$PATH"

cd "$root"
stamp=node_modules/.stsgate-installed
if [ ! -f "$stamp" ] || [ pnpm-lock.yaml -nt "$stamp" ]; then
  pnpm install --frozen-lockfile --reporter=append-only >&2
  touch "$stamp"
fi

[ "$#" -gt 0 ] || set -- start
# The browser playground's test drives Debian's Chromium: a fresh machine (root, apt) gets it on the way to the tests.
if [ "$1" = test ] && [ ! -x /usr/bin/chromium ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "dev.sh: installing Debian's chromium for the playground's browser test" >&2
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium; } >/dev/null 2>&1 ||
    echo "dev.sh: could not install chromium: the playground's browser test will fail" >&2
fi
exec pnpm "$@"
