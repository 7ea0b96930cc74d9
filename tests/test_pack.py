"""The pack's shape: the core stays free of ComfyUI, and ComfyUI loads the pack with its nodes."""

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
NODE_IDS = {
    "W2SDReflectiveKSampler",
    "W2SDReflectiveKSamplerAdvanced",
    "W2SDGuider",
    "W2SDSampler",
    "W2SDInversionStep",
    "W2SDWeakModelBuilder",
    "W2SDExpertPairBuilder",
}


def _imported_modules(path):
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module


def test_core_never_imports_comfyui():
    offenders = [
        f"{p.relative_to(ROOT)}: {m}"
        for p in (ROOT / "w2sd_core").rglob("*.py")
        for m in _imported_modules(p)
        if m.split(".")[0]
        in {
            "comfy",
            "comfy_api",
            "comfy_extras",
            "nodes",
            "folder_paths",
            "latent_preview",
            "comfy_execution",
            "node_helpers",
        }
    ]
    assert offenders == []


def test_pack_never_imports_torchaudio():
    """CI's ComfyUI 0.30+ venvs carry a torchaudio stand-in (.ci/standins): a pack import of it
    would pass there and fail on users' machines, so the pack must not import it at all."""
    shipped = [p for p in ROOT.rglob("*.py") if not {"tests", "research", "benchmarks", ".ci"} & set(p.parts)]
    assert any(p.parts[-2:] == ("nodes", "extension.py") for p in shipped)
    offenders = [f"{p.relative_to(ROOT)}: {m}" for p in shipped for m in _imported_modules(p) if "torchaudio" in m]
    assert offenders == []


def test_pyproject_declares_no_runtime_dependencies():
    import tomllib

    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert meta["project"]["dependencies"] == []
    assert meta["tool"]["comfy"]["requires-comfyui"]


@pytest.mark.comfyui
def test_comfyui_loads_the_pack_with_all_nodes(comfy):
    registered = {name for name in comfy.NODE_CLASS_MAPPINGS if name.startswith("W2SD")}
    assert registered == NODE_IDS
    for name in NODE_IDS:
        schema = comfy.NODE_CLASS_MAPPINGS[name].GET_SCHEMA()
        assert schema.category == "sampling/w2sd"
        assert schema.description, name
        for item in list(schema.inputs) + list(schema.outputs):
            assert item.tooltip, f"{name}.{item.id} has no tooltip"


@pytest.mark.comfyui
def test_every_node_shows_the_cores_defaults(comfy):
    """The plan inputs' defaults on every node are the core's DEFAULTS (what sample_default runs)."""
    from w2sd_core import DEFAULTS
    from w2sd_core.guidance import DEFAULT_GUIDANCE, DEFAULT_MODE

    want = {
        "reflect_steps": DEFAULTS.steps,
        "reflect_end_percent": DEFAULTS.end_percent,
        "repeats": DEFAULTS.repeats,
        "inversion": DEFAULTS.inversion,
        "mode": DEFAULT_MODE,
        "guidance": DEFAULT_GUIDANCE,
    }
    seen = set()
    for name in NODE_IDS:
        for item in comfy.NODE_CLASS_MAPPINGS[name].GET_SCHEMA().inputs:
            if item.id in want:
                assert item.default == want[item.id], (name, item.id)
                seen.add(item.id)
    assert seen == set(want)
