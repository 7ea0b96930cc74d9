#!/usr/bin/env bash
# Make a ComfyUI checkout importable beside CPU torch 2.13.0 (test environment only).
set -euo pipefail
comfy="$1"
here="$(dirname "$0")"
req="$(mktemp)"
# torch, torchvision, torchaudio and torchsde are pinned or handled below; ComfyUI 0.3.64 needs
# transformers < 5.
grep -v -E '^(torch|torchvision|torchaudio)([<>=~ ].*)?$|^#|^$' "$comfy/requirements.txt" > "$req"
echo "transformers<5" >> "$req"
python -m pip install -q --disable-pip-version-check torch==2.13.0 torchvision==0.28.0 -r "$req" 2>&1 \
    | grep -v "running pip as the 'root' user" || true
rm -f "$req"
# PyPI's torchvision 0.28.0 is a CUDA build whose fake-op registrations fail beside CPU torch.
python -c "import torchvision" 2>/dev/null || python "$here/torchvision_cpu_guard.py"
python -c "import torchvision, torchsde, einops, safetensors"
