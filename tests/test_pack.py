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
    from w2sd_core import DEFAULT_GUIDANCE, DEFAULT_MODE

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


# ---------------------------------------------------------------- the house rules
PACK_SOURCES = ("__init__.py", "nodes", "w2sd_core")  # what ComfyUI imports of the pack
MAX_FILE_LINES = 400
MAX_FUNCTION_LINES = 60


def _pack_files():
    for entry in PACK_SOURCES:
        path = ROOT / entry
        yield from sorted(path.rglob("*.py")) if path.is_dir() else [path]


def _module_name(path) -> str:
    """``nodes/sampling/guider.py`` -> ``nodes.sampling.guider``; a package is its ``__init__``;
    the pack itself is ``""``."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(importer: str, is_package: bool, node, known: set) -> set:
    """The pack's modules one import statement of ``importer`` loads (its most specific known
    module per name; absolute imports other than ``w2sd_core`` are ComfyUI's or the stdlib's)."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names if alias.name.split(".")[0] == "w2sd_core"]
        return {_known_prefix(n, known) for n in names} - {None}
    if node.level == 0:
        if not (node.module or "").startswith("w2sd_core"):
            return set()
        base = node.module
    else:
        package = importer.split(".") if importer else []
        if not is_package:
            package = package[:-1]
        package = package[: len(package) - (node.level - 1)] if node.level > 1 else package
        base = ".".join(package + ([node.module] if node.module else []))
    found = set()
    for alias in node.names:
        target = f"{base}.{alias.name}" if base else alias.name
        found.add(target if target in known else _known_prefix(base, known))
    return found - {None}


def _known_prefix(name: str, known: set):
    parts = name.split(".")
    while parts:
        if ".".join(parts) in known:
            return ".".join(parts)
        parts.pop()
    return "" if "" in known else None


def _import_graph() -> dict:
    files = {_module_name(p): p for p in _pack_files()}
    known = set(files)
    graph = {}
    for name, path in files.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        edges = set()
        for node in ast.walk(tree):  # imports inside functions count: they run too
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                edges |= _resolve(name, path.name == "__init__.py", node, known)
        graph[name] = edges - {name}
    return graph


def _find_cycle(graph: dict):
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = "done"
        stack.pop()
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def test_the_pack_has_no_import_cycle():
    graph = _import_graph()
    assert "nodes.extension" in graph[""] and graph["nodes.extension"], "the import graph lost its edges"
    cycle = _find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(m or "(pack)" for m in cycle)


def test_the_cycle_finder_finds_a_cycle():
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": set()}) is None


def _size_ruled_files():
    """What the size rule covers: the pack (its ``__init__.py``, nodes, core), research/, benchmarks/
    and the CI's own Python (``.ci/*.py``); tests/ are exempt."""
    yield from _pack_files()
    for folder in ("research", "benchmarks"):
        yield from sorted((ROOT / folder).rglob("*.py"))
    yield from sorted((ROOT / ".ci").glob("*.py"))


def _size_violations(label: str, text: str) -> list[str]:
    found = []
    lines = len(text.splitlines())
    if lines > MAX_FILE_LINES:
        found.append(f"{label}: {lines} lines")
    for node in ast.walk(ast.parse(text, filename=label)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            length = node.end_lineno - node.lineno + 1
            if length > MAX_FUNCTION_LINES:
                found.append(f"{label}:{node.lineno} {node.name}: {length} lines")
    return found


def test_files_and_functions_stay_small():
    """No file over MAX_FILE_LINES lines, no function (method, nested function) over
    MAX_FUNCTION_LINES, in the pack, research/, benchmarks/ and .ci/*.py (tests aside)."""
    # the checker still catches both kinds of violation
    body = "".join(f"        x{i} = {i}\n" for i in range(MAX_FUNCTION_LINES))  # + the def line: one too many
    assert _size_violations("long.py", f"class C:\n    def f(self):\n{body}") == [
        f"long.py:2 f: {MAX_FUNCTION_LINES + 1} lines"
    ]
    assert _size_violations("big.py", "x = 1\n" * (MAX_FILE_LINES + 1)) == [f"big.py: {MAX_FILE_LINES + 1} lines"]
    files = list(_size_ruled_files())
    assert ROOT / "nodes" / "__init__.py" in files and ROOT / "__init__.py" in files
    too_long = []
    for path in files:
        too_long += _size_violations(str(path.relative_to(ROOT)), path.read_text())
    assert too_long == []
