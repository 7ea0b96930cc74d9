"""Let PyPI's (CUDA) torchvision import beside CPU torch: skip the two fake-op registrations
whose C ops are absent. Test-environment only; touches nothing of the pack."""

import importlib.util
import pathlib
import re
import sys

spec = importlib.util.find_spec("torchvision")
p = pathlib.Path(spec.submodule_search_locations[0]) / "_meta_registrations.py"
src = p.read_text()
if "W2SD-CI guard" in src:
    sys.exit(0)
guard = (
    "def _w2sd_fake(name):  # W2SD-CI guard: CPU torch has no torchvision C ops\n"
    "    def deco(fn):\n"
    "        try:\n            return torch.library.register_fake(name)(fn)\n"
    "        except RuntimeError:\n            return fn\n"
    "    return deco\n\n\n"
)
src2 = re.sub(r'@torch\.library\.register_fake\(("torchvision::q?nms")\)', r"@_w2sd_fake(\1)", src)
src2 = src2.replace(
    "@functools.lru_cache(None)\ndef get_meta_lib", guard + "@functools.lru_cache(None)\ndef get_meta_lib", 1
)
p.write_text(src2)
print("patched", p)
