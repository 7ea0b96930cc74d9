#!/usr/bin/env bash
# The browser test's tools, outside the repository: Debian's chromium and npm's playwright-core
# in <dir>. Fails loudly when either cannot be installed.
set -uo pipefail
dir="$1"
if ! command -v chromium >/dev/null && ! [ -x /usr/bin/chromium ]; then
    if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } >/dev/null 2>&1
    fi
    command -v chromium >/dev/null || { echo "!! chromium could not be installed"; exit 1; }
fi
if ! [ -f "$dir/node_modules/playwright-core/package.json" ]; then
    mkdir -p "$dir" && cd "$dir" || exit 1
    [ -f package.json ] || echo '{"private": true}' > package.json
    npm install --no-audit --no-fund --silent playwright-core@1.65.1 >/dev/null 2>&1 \
        || { echo "!! playwright-core could not be installed"; exit 1; }
fi
