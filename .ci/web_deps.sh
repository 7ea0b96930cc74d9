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
# A newer frontend than the releases pin, from PyPI, served with --front-end-root by the browser test.
frontend=1.58.1
static="$dir/frontend-$frontend/comfyui_frontend_package/static"
if ! [ -f "$static/index.html" ]; then
    python -m pip download -q --no-deps "comfyui-frontend-package==$frontend" -d "$dir/wheels" >/dev/null 2>&1 \
        && python -m zipfile -e "$dir/wheels/comfyui_frontend_package-$frontend-py3-none-any.whl" "$dir/frontend-$frontend" \
        || { echo "!! comfyui-frontend-package $frontend could not be downloaded"; exit 1; }
fi
