"""Test-only custom nodes for the ComfyUI server the workflow tests start: tiny models of families
whose files ComfyUI cannot detect at tiny sizes (HiDream, Wan 2.2's experts) and their conditioning.
Never installed with the pack (tests/ is not part of it)."""

import pathlib
import sys

_TESTS = str(pathlib.Path(__file__).resolve().parents[1])
if _TESTS not in sys.path:
    sys.path.append(_TESTS)

from comfy_support import FIXTURE_NODES  # noqa: E402

NODE_CLASS_MAPPINGS = dict(FIXTURE_NODES)
