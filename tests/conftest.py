"""Test tiers: core tests run everywhere; tests marked ``comfyui`` need a real ComfyUI at
``$COMFYUI_PATH`` (else ``/opt/ComfyUI``) and skip with the reason printed when it is absent."""

import pathlib
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"
for path in (str(TESTS), str(ROOT)):
    if path not in sys.path:
        # appended, not prepended: ComfyUI's own top-level `nodes` module must win over this
        # pack's `nodes/` package once ComfyUI's path is put first.
        sys.path.append(path)

import comfy_support  # noqa: E402  (imports nothing of ComfyUI by itself)
import torch  # noqa: E402

# The tests' models are tiny: one thread is fastest, and on a loaded 2-core machine several
# threads fighting over the cores made tiny-model runs 20-40x slower.
torch.set_num_threads(1)


def pytest_collection_modifyitems(config, items):
    reason = comfy_support.comfyui_missing_reason()
    if reason is None:
        return
    skip = pytest.mark.skip(reason=reason)
    for item in items:
        if "comfyui" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def comfy():
    """ComfyUI's ``nodes`` module, with ComfyUI started on the CPU and this pack loaded."""
    reason = comfy_support.comfyui_missing_reason()
    if reason:
        pytest.skip(reason)
    return comfy_support.start_comfyui()
