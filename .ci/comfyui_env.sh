#!/usr/bin/env bash
# Make a ComfyUI release runnable for the tests, cached outside the repository:
#   comfyui_env.sh <ComfyUI-X.Y.Z.tar.gz | ComfyUI folder> <cache folder>
# Unpacks the tarball into <cache>/ComfyUI (unless a folder is given), builds <cache>/venv with the
# system site packages (so the installed CPU torch is reused) and installs ComfyUI's requirements
# there. Prints three lines: the ComfyUI folder, the venv's python, and what the test environment
# stands in for (empty when nothing). Any failure exits non-zero.
set -euo pipefail
src="$1"; cache="$2"
here="$(cd "$(dirname "$0")" && pwd)"
mkdir -p "$cache"
if [ -d "$src" ]; then
    comfy="$(cd "$src" && pwd)"
else
    comfy="$cache/ComfyUI"
    stamp="$cache/.unpacked-$(basename "$src")"
    if ! [ -f "$stamp" ] || ! [ -f "$comfy/comfy/samplers.py" ]; then
        rm -rf "$comfy" "$cache/venv" "$cache"/.unpacked-* "$cache/.ready"
        tar -xzf "$src" -C "$cache"
        [ -f "$comfy/comfy/samplers.py" ] || { echo "$src did not unpack to ComfyUI/" >&2; exit 1; }
        touch "$stamp"
    fi
fi
py="$cache/venv/bin/python"
# the venv is rebuilt when the scripts that make it change
recipe="$(cat "$here/prepare_comfyui.sh" "$here"/standins/*/*.py | sha256sum | cut -c1-16)"
if [ "$(cat "$cache/.ready" 2>/dev/null)" != "$recipe" ] || ! [ -x "$py" ]; then
    rm -rf "$cache/venv"
    python -m venv --system-site-packages "$cache/venv"
    PYTHON="$py" bash "$here/prepare_comfyui.sh" "$comfy" >&2
    echo "$recipe" > "$cache/.ready"
fi
echo "$comfy"
echo "$py"
cat "$cache/venv/w2sd-notes.txt" 2>/dev/null | paste -sd ';' || true
