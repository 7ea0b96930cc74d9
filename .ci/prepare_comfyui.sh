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
# ComfyUI 0.30+ imports torchaudio at start-up, and no torchaudio build loads beside this torch:
# such a release gets the stand-in (.ci/standins/torchaudio: imports, raises on any use), in this
# venv only. The note file is what .ci/summary.py prints on the tier's line.
notes="$("$py" -c 'import sys; print(sys.prefix)')/w2sd-notes.txt"
rm -f "$notes"
starts() { (cd "$comfy" && "$py" -c "import sys; sys.argv[1:] = ['--cpu']; import comfy.options; comfy.options.enable_args_parsing(); import comfy.sd") 2>&1; }
if ! "$py" -c "import torchaudio" 2>/dev/null && grep -q "No module named 'torchaudio'" <<<"$(starts || true)"; then
    site="$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
    cp -r "$here/standins/torchaudio" "$site/"
    "$py" -c "import torchaudio; assert torchaudio.STAND_IN"
    echo "torchaudio stand-in (audio unavailable)" >> "$notes"
fi
