"""LoRA files for the pair builders: read once, named in one line when unreadable, and kept only
while a model built from them is alive."""

from __future__ import annotations

import os
import weakref

import torch

import comfy.utils
import folder_paths

#: (path, mtime, size) -> {"sd": the file's tensors, "users": built models still alive}. Re-runs
#: with other strengths reuse the tensors while a model built from them lives; when the last one is
#: gone, so is the entry (nothing stays for the life of the process).
_lora_cache: dict = {}


def load_lora_file(lora_name: str):
    """(cache key, state dict) of a LoRA file; a file that cannot be read is named in one line."""
    path = folder_paths.get_full_path_or_raise("loras", lora_name)
    stat = os.stat(path)
    key = (path, stat.st_mtime_ns, stat.st_size)
    entry = _lora_cache.get(key)
    if entry is not None:
        return key, entry["sd"]
    try:
        sd = comfy.utils.load_torch_file(path, safe_load=True)
    except Exception as e:
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ValueError(
            f"W2SD Weak Model Builder: the LoRA file '{lora_name}' ({stat.st_size} bytes) cannot be "
            f"read ({type(e).__name__}: {reason}); it is truncated, empty or not a LoRA file: "
            f"download it again, or choose another lora_name."
        ) from e
    _check_finite(sd, lora_name)
    return key, sd


def _check_finite(sd: dict, lora_name: str) -> None:
    """NaN or infinite values in a LoRA end in an all-NaN image that looks like success."""
    for name, tensor in sd.items():
        if not isinstance(tensor, torch.Tensor) or not tensor.is_floating_point():
            continue
        finite = torch.isfinite(tensor)
        if bool(finite.all()):
            continue
        bad = tensor[~finite]
        what = "NaN" if bool(torch.isnan(bad).any()) else "infinite"
        raise ValueError(
            f"W2SD Weak Model Builder: the LoRA file '{lora_name}' holds {what} values in '{name}' "
            f"({bad.numel()} of {tensor.numel()}), which would turn the image into NaN; the file is "
            f"damaged: download it again, or choose another lora_name."
        )


def keep_while_used(key, sd: dict, model) -> None:
    """Cache ``sd`` for as long as ``model`` (built from it) lives."""
    entry = _lora_cache.setdefault(key, {"sd": sd, "users": 0})
    entry["users"] += 1
    weakref.finalize(model, _release_lora_file, key, entry)


def _release_lora_file(key, entry) -> None:
    entry["users"] -= 1
    if entry["users"] <= 0 and _lora_cache.get(key) is entry:
        del _lora_cache[key]
