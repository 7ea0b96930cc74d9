#!/usr/bin/env bash
# Install a ComfyUI checkout's requirements beside CPU torch 2.13.0 into $PYTHON's environment
# (default: python). Test environment only. Fails when anything does not install or import.
set -euo pipefail
comfy="$1"
py="${PYTHON:-python}"
here="$(dirname "$0")"
req="$(mktemp)"
# torch and torchvision are pinned below (the CPU build); torchaudio has no release for this torch.
# The releases tested here need transformers < 5.
grep -v -E '^(torch|torchvision|torchaudio)([<>=~ ].*)?$|^#|^$' "$comfy/requirements.txt" > "$req"
echo "transformers<5" >> "$req"
"$py" -m pip install -q --disable-pip-version-check torch==2.13.0 torchvision==0.28.0 -r "$req" 2>&1 \
    | grep -v -i -E "running pip as the 'root' user|is ignored: it is neither a file nor a directory" || true
rm -f "$req"
# PyPI's torchvision 0.28.0 is a CUDA build whose fake-op registrations fail beside CPU torch.
"$py" -c "import torchvision" 2>/dev/null || "$py" "$here/torchvision_cpu_guard.py"
"$py" -c "import torchvision, torchsde, einops, safetensors, aiohttp, transformers"
