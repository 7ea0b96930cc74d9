"""The example workflows in workflows/*.json.

Core tier (no ComfyUI, no weights): every file is a well-formed UI-format workflow as ComfyUI's
frontend saves it, links join existing slots of matching types, each has a Note, the W2SD nodes'
widget values fit the pack's stable interface (the table below), and each workflow is set up the
way its Note says (checked per workflow).

ComfyUI tier: every node type exists in ComfyUI (ComfyUI's + ours), widget counts, values and link
types agree with the real node definitions, ComfyUI's own prompt validation accepts each workflow
(converted to API format, model files present as empty placeholders), and the sampler core of every
workflow runs end to end on a real ComfyUI server with tiny model files. `core_prompt` / NOT_RUN say
what is swapped for what: the diffusion model is a tiny SD2-family UNet (made a flow model by
ModelSamplingSD3 for the Flux workflow), text encoders become distinct fixed conditionings, VAE
encode/decode become LoadLatent/SaveLatent, the ControlNet is a tiny real one; every W2SD node,
sampler, scheduler, guider, ControlNet apply, FluxGuidance and the report preview run as they are.
"""

from __future__ import annotations

import json
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
WORKFLOWS = sorted((ROOT / "workflows").glob("*.json"))
WORKFLOW_IDS = [p.stem for p in WORKFLOWS]

#: Nodes that exist only in the frontend (never sent to the server).
VIRTUAL = {"Note", "MarkdownNote", "Reroute", "PrimitiveNode"}
CONTROL_VALUES = {"fixed", "increment", "decrement", "randomize"}
SEED_MAX = 0xFFFFFFFFFFFFFFFF


def load(path) -> dict:
    return json.loads(pathlib.Path(path).read_text(encoding="utf-8"))


# ---------------------------------------------------------------- the pack's stable interface
# The node interface that saved workflows depend on. Sockets are
# (name, type); widgets (name, check) in the order the frontend lists them (required inputs first,
# then optional ones, each in declaration order). The ComfyUI tier checks this table against the real
# node definitions, so it cannot silently drift from the nodes.


def _int(lo, hi):
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi


def _float(lo, hi):
    return lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and lo <= v <= hi


def _cfg_or_same(v):
    return _float(0, 100)(v) or v == -1


def _one_of(*options):
    return lambda v: v in options


def _str(v):
    return isinstance(v, str) and v != ""


#: Added after the first release, last on each node: saved workflows may end before them.
MODE_WIDGETS = [("mode", _one_of("reflect", "guide", "reflect+guide")), ("guidance", _float(-10, 100))]

CONTRACT = {
    "W2SDReflectiveKSampler": {
        "sockets": [
            ("model", "MODEL"),
            ("positive", "CONDITIONING"),
            ("negative", "CONDITIONING"),
            ("latent_image", "LATENT"),
            ("weak_model", "MODEL"),
            ("weak_positive", "CONDITIONING"),
            ("weak_negative", "CONDITIONING"),
        ],
        "widgets": [
            ("seed", _int(0, SEED_MAX)),
            ("steps", _int(1, 10000)),
            ("cfg", _float(0, 100)),
            ("sampler_name", _str),
            ("scheduler", _str),
            ("denoise", _float(0, 1)),
            ("strong_cfg", _cfg_or_same),
            ("weak_cfg", _cfg_or_same),
            ("reflect_steps", _int(-1, 10000)),
            ("reflect_end_percent", _float(0, 1)),
            ("repeats", _int(1, 10)),
            ("inversion", _one_of("next", "current", "official")),
            *MODE_WIDGETS,
        ],
        "outputs": ["LATENT"],
    },
    "W2SDReflectiveKSamplerAdvanced": {
        "sockets": [
            ("model", "MODEL"),
            ("positive", "CONDITIONING"),
            ("negative", "CONDITIONING"),
            ("latent_image", "LATENT"),
            ("weak_model", "MODEL"),
            ("weak_positive", "CONDITIONING"),
            ("weak_negative", "CONDITIONING"),
        ],
        "widgets": [
            ("add_noise", _one_of("enable", "disable")),
            ("noise_seed", _int(0, SEED_MAX)),
            ("steps", _int(1, 10000)),
            ("cfg", _float(0, 100)),
            ("sampler_name", _str),
            ("scheduler", _str),
            ("start_at_step", _int(0, 10000)),
            ("end_at_step", _int(0, 10000)),
            ("return_with_leftover_noise", _one_of("disable", "enable")),
            ("strong_cfg", _cfg_or_same),
            ("weak_cfg", _cfg_or_same),
            ("reflect_steps", _int(-1, 10000)),
            ("reflect_end_percent", _float(0, 1)),
            ("repeats", _int(1, 10)),
            ("inversion", _one_of("next", "current", "official")),
            *MODE_WIDGETS,
        ],
        "outputs": ["LATENT"],
    },
    "W2SDGuider": {
        "sockets": [
            ("model", "MODEL"),
            ("positive", "CONDITIONING"),
            ("negative", "CONDITIONING"),
            ("weak_model", "MODEL"),
            ("weak_positive", "CONDITIONING"),
            ("weak_negative", "CONDITIONING"),
        ],
        "widgets": [("cfg", _float(0, 100)), ("strong_cfg", _cfg_or_same), ("weak_cfg", _cfg_or_same)],
        "outputs": ["GUIDER"],
    },
    "W2SDSampler": {
        "sockets": [("sampler", "SAMPLER")],
        "widgets": [
            ("reflect_steps", _int(-1, 10000)),
            ("reflect_end_percent", _float(0, 1)),
            ("repeats", _int(1, 10)),
            ("inversion", _one_of("next", "current", "official")),
            ("strong_cfg", _cfg_or_same),
            ("weak_cfg", _cfg_or_same),
            *MODE_WIDGETS,
        ],
        "outputs": ["SAMPLER"],
    },
    "W2SDInversionStep": {
        "sockets": [
            ("model", "MODEL"),
            ("positive", "CONDITIONING"),
            ("negative", "CONDITIONING"),
            ("latent", "LATENT"),
            ("sigmas", "SIGMAS"),
        ],
        "widgets": [("cfg", _float(0, 100)), ("inversion", _one_of("next", "current"))],
        "outputs": ["LATENT"],
    },
    "W2SDExpertPairBuilder": {
        "sockets": [("model", "MODEL")],
        "widgets": [("weak_start_rank", _int(-1, 256)), ("weak_weights", _one_of("top-k weights", "own scores"))],
        "outputs": ["MODEL", "STRING"],
    },
    "W2SDWeakModelBuilder": {
        "sockets": [("model", "MODEL"), ("weak_model", "MODEL")],
        "widgets": [
            ("lora_name", _str),
            ("final_strength", _float(-100, 100)),
            ("strong_strength", _float(-100, 100)),
            ("weak_strength", _float(-100, 100)),
        ],
        "outputs": ["MODEL", "MODEL", "STRING"],
    },
}

#: Widget order of the few stock ComfyUI nodes the per-workflow checks read (verified against the
#: real definitions in the ComfyUI tier).
STOCK_WIDGETS = {
    "KSampler": ["seed", "control_after_generate", "steps", "cfg", "sampler_name", "scheduler", "denoise"],
    "KSamplerAdvanced": [
        "add_noise",
        "noise_seed",
        "control_after_generate",
        "steps",
        "cfg",
        "sampler_name",
        "scheduler",
        "start_at_step",
        "end_at_step",
        "return_with_leftover_noise",
    ],
    "BasicScheduler": ["scheduler", "steps", "denoise"],
    "SplitSigmas": ["step"],
    "FluxGuidance": ["guidance"],
    "CheckpointLoaderSimple": ["ckpt_name"],
    "SaveImage": ["filename_prefix"],
    "RandomNoise": ["noise_seed", "control_after_generate"],
    "KSamplerSelect": ["sampler_name"],
    "UNETLoader": ["unet_name", "weight_dtype"],
    "ModelSamplingSD3": ["shift"],
    "FreeU_V2": ["b1", "b2", "s1", "s2"],
}


def contract_widget_names(node_type: str) -> list[str]:
    names = []
    for name, _ in CONTRACT[node_type]["widgets"]:
        names.append(name)
        if name == "seed":
            names.append("control_after_generate")
    return names


def widgets(node: dict) -> dict:
    """Widget values by name for the W2SD nodes and the stock nodes listed above."""
    names = contract_widget_names(node["type"]) if node["type"] in CONTRACT else STOCK_WIDGETS.get(node["type"])
    assert names is not None, f"no widget table for {node['type']}"
    values = node.get("widgets_values") or []
    if node["type"] in CONTRACT and len(values) == len(names) - len(MODE_WIDGETS):
        names = names[: len(values)]  # saved before the mode widgets existed
    assert len(values) == len(names), (
        f"node {node['id']} ({node['type']}): {len(values)} widget values, expected {len(names)}: {names}"
    )
    return dict(zip(names, values))


# ---------------------------------------------------------------- graph helpers


class Graph:
    def __init__(self, data: dict):
        self.data = data
        self.nodes = {n["id"]: n for n in data["nodes"]}
        self.links = {link[0]: link for link in data["links"]}

    def of_type(self, node_type: str) -> list[dict]:
        return [n for n in self.data["nodes"] if n["type"] == node_type]

    def one(self, node_type: str) -> dict:
        found = self.of_type(node_type)
        assert len(found) == 1, f"expected one {node_type}, found {len(found)}"
        return found[0]

    def source(self, node: dict, input_name: str):
        """(source node, output slot) feeding ``input_name`` of ``node``, or None."""
        for slot in node.get("inputs") or []:
            if slot["name"] == input_name and slot.get("link") is not None:
                link = self.links[slot["link"]]
                return self.nodes[link[1]], link[2]
        return None

    def targets(self, node: dict, slot: int = 0) -> list[tuple[dict, str]]:
        out = []
        for link_id in node["outputs"][slot].get("links") or []:
            link = self.links[link_id]
            target = self.nodes[link[3]]
            out.append((target, target["inputs"][link[4]]["name"]))
        return out

    def downstream(self, node: dict) -> set:
        """Ids of every node reachable from ``node``'s outputs."""
        seen, todo = set(), [node]
        while todo:
            current = todo.pop()
            for i in range(len(current.get("outputs") or [])):
                for target, _ in self.targets(current, i):
                    if target["id"] not in seen:
                        seen.add(target["id"])
                        todo.append(target)
        return seen


def note_text(data: dict) -> str:
    notes = [n for n in data["nodes"] if n["type"] in ("Note", "MarkdownNote")]
    return "\n".join(str(v) for n in notes for v in (n.get("widgets_values") or []))


# ================================================================ core tier


def test_there_is_a_workflow_per_pair_type():
    assert len(WORKFLOWS) >= 9, [p.name for p in WORKFLOWS]
    kinds = {
        "Two checkpoints",
        "LoRA",
        "Z-Sampling",
        "Prompt",
        "ControlNet",
        "Flux",
        "Building blocks",
        "Inversion",
        "Equal-compute",
        "Wan 2.2",
        "MoE",
        "Model-patch",
    }
    missing = {k for k in kinds if not any(k in p.stem for p in WORKFLOWS)}
    assert not missing, f"no workflow for {missing}"


def test_template_browser_titles_sort_and_thumbnails():
    """The template browser titles custom workflows by file name and asks for <name>.jpg beside
    each: readable numbered names and one JPEG each. The server lists them in directory order;
    the web extension sorts them (the browser test checks the order the frontend gets)."""
    assert [p.stem for p in WORKFLOWS] == sorted(p.stem for p in WORKFLOWS)
    assert [int(p.stem[5:7]) for p in sorted(WORKFLOWS)] == list(range(1, len(WORKFLOWS) + 1))
    for path in WORKFLOWS:
        assert re.fullmatch(r"W2SD \d\d - [A-Z][\w .,()+-]+", path.stem), path.name
        thumb = path.with_suffix(".jpg")
        assert thumb.is_file(), f"no thumbnail {thumb.name}"
        assert thumb.read_bytes()[:3] == b"\xff\xd8\xff", f"{thumb.name} is not a JPEG"


@pytest.mark.parametrize("path", WORKFLOWS, ids=WORKFLOW_IDS)
def test_every_model_file_carries_download_info(path):
    """Like ComfyUI's own templates: each loader node lists the files it names in
    properties.models (name, url, directory), so the frontend offers the download."""
    data = load(path)
    for node in data["nodes"]:
        named = [
            v
            for v in node.get("widgets_values") or []
            if isinstance(v, str) and v.endswith((".safetensors", ".pth", ".ckpt"))
        ]
        models = {m["name"]: m for m in node.get("properties", {}).get("models", [])}
        for name in named:
            if name.startswith("your_"):
                continue  # the user's own file: nothing to download
            assert name in models, f"{path.name}: node {node['id']} names {name} without download info"
            m = models[name]
            assert m["url"].startswith("https://huggingface.co/") and "/resolve/" in m["url"], m
            assert m["url"].split("?")[0].endswith("/" + name), f"the url must fetch {name}: {m['url']}"
            assert m["directory"] in {
                "checkpoints",
                "loras",
                "diffusion_models",
                "text_encoders",
                "vae",
                "controlnet",
            }, m


@pytest.mark.parametrize("path", WORKFLOWS, ids=WORKFLOW_IDS)
def test_downloads_are_safetensors(path):
    """Every tested frontend offers a download only for .safetensors files (1.35.9 refuses .pth)."""
    for node in load(path)["nodes"]:
        for m in node.get("properties", {}).get("models", []):
            assert m["name"].endswith(".safetensors"), f"{path.name}: node {node['id']} downloads {m['name']}"


@pytest.mark.parametrize("path", WORKFLOWS, ids=WORKFLOW_IDS)
def test_read_me_is_a_markdown_note(path):
    """The Read-me note is the frontend's Markdown note (rendered text, readable when zoomed out), not
    the small monospace Note."""
    notes = [n for n in load(path)["nodes"] if n["type"] in ("Note", "MarkdownNote")]
    assert notes and all(n["type"] == "MarkdownNote" for n in notes), f"{path.name}: {[n['type'] for n in notes]}"


TITLE = 30  # LiteGraph's title bar above a node's pos
GROUP_HEAD = 60  # a group's title bar, and room for a node's badge above its title


@pytest.mark.parametrize("path", WORKFLOWS, ids=WORKFLOW_IDS)
def test_saved_layout_has_no_overlaps_and_groups_hold_their_nodes(path):
    """As saved (the browser test measures the frontends' own layouts): no two node boxes (title
    included) overlap, and a node inside a group sits below the group's title, within its bounds."""
    data = load(path)
    boxes = [(n["id"], n["pos"][0], n["pos"][1] - TITLE, n["size"][0], n["size"][1] + TITLE) for n in data["nodes"]]
    for i, a in enumerate(boxes):
        for b in boxes[i + 1 :]:
            overlap = a[1] < b[1] + b[3] and b[1] < a[1] + a[3] and a[2] < b[2] + b[4] and b[2] < a[2] + a[4]
            assert not overlap, f"{path.name}: nodes {a[0]} and {b[0]} overlap"
    for group in data.get("groups", []):
        gx, gy, gw, gh = group["bounding"]
        for node_id, x, y, w, h in boxes:
            if gx <= x < gx + gw and gy <= y + TITLE < gy + gh:
                assert x + w <= gx + gw and gy + GROUP_HEAD <= y and y + h <= gy + gh, (
                    f"{path.name}: node {node_id} sticks out of group {group['title']!r}"
                )


@pytest.mark.parametrize("path", WORKFLOWS, ids=WORKFLOW_IDS)
def test_workflow_structure(path):
    data = load(path)
    for key in ("last_node_id", "last_link_id", "nodes", "links", "groups", "config", "extra", "version"):
        assert key in data, f"{path.name}: no {key!r}"
    assert data["version"] == 0.4
    ids = [n["id"] for n in data["nodes"]]
    assert len(ids) == len(set(ids)), f"{path.name}: duplicate node ids"
    assert data["last_node_id"] >= max(ids)
    link_ids = [link[0] for link in data["links"]]
    assert len(link_ids) == len(set(link_ids)), f"{path.name}: duplicate link ids"
    assert not link_ids or data["last_link_id"] >= max(link_ids)
    for node in data["nodes"]:
        for key in ("id", "type", "pos", "size", "flags", "order", "mode", "properties"):
            assert key in node, f"{path.name}: node {node.get('id')} has no {key!r}"
        assert node["mode"] == 0, f"{path.name}: node {node['id']} is muted or bypassed"
        assert len(node["pos"]) == 2 and len(node["size"]) == 2
        # the frontend writes it for most nodes (not for image-preview ones such as SaveImage)
        assert node["properties"].get("Node name for S&R", node["type"]) == node["type"]
    orders = sorted(n["order"] for n in data["nodes"])
    assert orders == list(range(len(orders))), f"{path.name}: execution order is not 0..n-1"


@pytest.mark.parametrize("path", WORKFLOWS, ids=WORKFLOW_IDS)
def test_workflow_links_join_existing_slots_of_matching_types(path):
    data = load(path)
    g = Graph(data)
    for link in data["links"]:
        assert len(link) == 6, f"{path.name}: link {link} is not [id, from, slot, to, slot, type]"
        link_id, src, src_slot, dst, dst_slot, type_ = link
        assert src in g.nodes and dst in g.nodes, f"{path.name}: link {link_id} joins missing nodes"
        out = g.nodes[src]["outputs"][src_slot]
        inp = g.nodes[dst]["inputs"][dst_slot]
        assert link_id in (out.get("links") or []), f"{path.name}: output does not list link {link_id}"
        assert inp.get("link") == link_id, f"{path.name}: input does not hold link {link_id}"
        # the frontend records "*" as the type of a link into an any-type input (PreviewAny)
        assert type_ == out["type"] or type_ == inp["type"] == "*", (
            f"{path.name}: link {link_id} type {type_} != output {out['type']}"
        )
        assert inp["type"] in (out["type"], "*"), (
            f"{path.name}: link {link_id} ({out['type']}) into {g.nodes[dst]['type']}.{inp['name']} ({inp['type']})"
        )
    # ... and nothing refers to a link that is not in the table
    for node in data["nodes"]:
        for inp in node.get("inputs") or []:
            assert inp.get("link") is None or inp["link"] in g.links
        for out in node.get("outputs") or []:
            for link_id in out.get("links") or []:
                assert link_id in g.links


@pytest.mark.parametrize("path", WORKFLOWS, ids=WORKFLOW_IDS)
def test_workflow_has_a_note_that_says_where_models_go(path):
    data = load(path)
    text = note_text(data)
    assert len(text) > 200, f"{path.name}: no Note (or an empty one)"
    assert "models/" in text, f"{path.name}: the Note does not say where to put the models"
    assert "Cost" in text or "cost" in text


@pytest.mark.parametrize("path", WORKFLOWS, ids=WORKFLOW_IDS)
def test_w2sd_nodes_follow_the_stable_interface(path):
    data = load(path)
    g = Graph(data)
    ours = [n for n in data["nodes"] if n["type"].startswith("W2SD")]
    assert ours, f"{path.name}: no W2SD node"
    for node in ours:
        assert node["type"] in CONTRACT, f"{path.name}: unknown W2SD node {node['type']}"
        spec = CONTRACT[node["type"]]
        values = widgets(node)
        for name, check in spec["widgets"]:
            if name in values or name not in dict(MODE_WIDGETS):
                assert check(values[name]), f"{path.name}: {node['type']}.{name} = {values[name]!r}"
        if "control_after_generate" in values:
            assert values["control_after_generate"] in CONTROL_VALUES
        sockets = dict(spec["sockets"])
        widget_names = {name for name, _ in spec["widgets"]}
        for inp in node.get("inputs") or []:
            if "widget" in inp:
                assert inp["widget"]["name"] in widget_names
            else:
                assert sockets.get(inp["name"]) == inp["type"], (
                    f"{path.name}: {node['type']} input {inp['name']} ({inp['type']}) not in the interface"
                )
        assert [o["type"] for o in node["outputs"]] == spec["outputs"]
        for name in ("model", "positive", "negative", "latent_image", "latent", "sigmas", "sampler"):
            if name in sockets and (node["type"], name) != ("W2SDWeakModelBuilder", "weak_model"):
                assert g.source(node, name) is not None, f"{path.name}: {node['type']}.{name} unconnected"


@pytest.mark.parametrize("path", WORKFLOWS, ids=WORKFLOW_IDS)
def test_every_sampler_result_is_saved(path):
    g = Graph(load(path))
    producers = [
        n
        for n in g.data["nodes"]
        if n["type"] in ("W2SDReflectiveKSampler", "KSampler", "KSamplerAdvanced", "SamplerCustomAdvanced")
    ]
    assert producers
    for node in producers:
        saved = [g.nodes[i]["type"] for i in g.downstream(node)]
        assert {"SaveImage", "SaveVideo"} & set(saved), f"{path.name}: {node['type']} {node['id']} is never saved"


def _workflow(stem_part) -> tuple[Graph, str]:
    matches = [p for p in WORKFLOWS if stem_part in p.stem]
    assert len(matches) == 1, f"expected one workflow named *{stem_part}*, found {matches}"
    data = load(matches[0])
    return Graph(data), note_text(data)


def test_two_checkpoints_workflow():
    g, text = _workflow("Two checkpoints")
    builder = g.one("W2SDWeakModelBuilder")
    sampler = g.one("W2SDReflectiveKSampler")
    strong, _ = g.source(builder, "model")
    weak, _ = g.source(builder, "weak_model")
    assert strong["type"] == weak["type"] == "CheckpointLoaderSimple"
    assert widgets(strong)["ckpt_name"] != widgets(weak)["ckpt_name"]
    assert widgets(builder)["lora_name"] == "None"  # checkpoint mode
    assert g.source(sampler, "model")[0] is builder and g.source(sampler, "weak_model")[0] is builder
    assert g.source(sampler, "model")[1] == 0 and g.source(sampler, "weak_model")[1] == 1
    # the weak side's text encodings come from the weak checkpoint's CLIP
    for name in ("weak_positive", "weak_negative"):
        encoder, _ = g.source(sampler, name)
        assert g.source(encoder, "clip")[0] is weak
    assert widgets(weak)["ckpt_name"] in text and widgets(strong)["ckpt_name"] in text


@pytest.mark.parametrize("stem_part", ["LoRA at two strengths (SDXL)", "LoRA at two strengths (Flux)"])
def test_lora_delta_workflows_use_the_official_strengths(stem_part):
    g, text = _workflow(stem_part)
    builder = g.one("W2SDWeakModelBuilder")
    w = widgets(builder)
    assert w["lora_name"] != "None"
    assert (w["final_strength"], w["strong_strength"], w["weak_strength"]) == (0.8, 1.5, -1.5)
    sampler = g.one("W2SDReflectiveKSampler")
    assert g.source(sampler, "model") == (builder, 0)
    # LoRA mode: the pair travels inside the model; a second model would alternate weight copies
    assert g.source(sampler, "weak_model") is None
    assert not g.of_type("LoraLoader") and not g.of_type("LoraLoaderModelOnly")
    assert "0.8" in text and "1.5" in text
    if stem_part == "sdxl_lora":
        # the authors' LoRA script reflects with a CFG gap too (guidance 5.5 strong, 1.0 weak)
        s = widgets(sampler)
        assert (s["cfg"], s["strong_cfg"], s["weak_cfg"]) == (5.5, 5.5, 1.0)


def test_zsampling_workflow_is_the_cfg_pair():
    g, text = _workflow("Z-Sampling")
    sampler = g.one("W2SDReflectiveKSampler")
    w = widgets(sampler)
    assert (w["strong_cfg"], w["weak_cfg"]) == (5.5, 1.0)
    assert g.source(sampler, "weak_model") is None and g.source(sampler, "weak_positive") is None
    assert "guidance 0" in text and "cfg 1" in text.lower()
    assert "sd_xl" in widgets(g.one("CheckpointLoaderSimple"))["ckpt_name"]


def test_prompt_difference_workflow():
    g, _ = _workflow("Prompt difference")
    sampler = g.one("W2SDReflectiveKSampler")
    strong, _ = g.source(sampler, "positive")
    weak, _ = g.source(sampler, "weak_positive")
    assert strong["type"] == weak["type"] == "CLIPTextEncode"
    strong_text, weak_text = strong["widgets_values"][0], weak["widgets_values"][0]
    assert strong_text != weak_text and len(strong_text) > len(weak_text)
    assert g.source(sampler, "weak_model") is None


def test_controlnet_workflow_applies_it_to_the_strong_side_only():
    g, text = _workflow("ControlNet")
    assert not g.of_type("ControlNetApply"), "the legacy node leaks into the weak conds"
    apply = g.one("ControlNetApplyAdvanced")
    sampler = g.one("W2SDReflectiveKSampler")
    assert g.source(sampler, "positive") == (apply, 0)
    assert g.source(sampler, "negative") == (apply, 1)
    for weak_name, strong_name in (("weak_positive", "positive"), ("weak_negative", "negative")):
        weak_src = g.source(sampler, weak_name)
        assert weak_src is not None and weak_src[0]["type"] == "CLIPTextEncode"
        assert weak_src == g.source(apply, strong_name), "weak conds must be the ControlNet's inputs"
    assert "legacy" in text.lower() or "(OLD)" in text


def test_flux_workflow():
    g, text = _workflow("(Flux)")
    sampler = g.one("W2SDReflectiveKSampler")
    w = widgets(sampler)
    assert w["cfg"] == 1.0 and w["strong_cfg"] in (-1, 1.0) and w["weak_cfg"] in (-1, 1.0)
    guidance = g.one("FluxGuidance")
    assert g.source(sampler, "positive") == (guidance, 0)
    assert g.one("UNETLoader") and g.one("DualCLIPLoader")
    assert g.one("EmptySD3LatentImage")
    assert "not CFG" in text


def test_building_blocks_workflow():
    g, _ = _workflow("Building blocks")
    sca = g.one("SamplerCustomAdvanced")
    assert g.source(sca, "guider")[0]["type"] == "W2SDGuider"
    sampler, _ = g.source(sca, "sampler")
    assert sampler["type"] == "W2SDSampler"
    assert g.source(sampler, "sampler")[0]["type"] == "KSamplerSelect"
    assert g.source(sca, "sigmas")[0]["type"] == "BasicScheduler"
    assert g.source(sca, "noise")[0]["type"] == "RandomNoise"


def test_inversion_workflow_resamples_from_the_inverted_level():
    g, _ = _workflow("Inversion Step")
    inv = g.one("W2SDInversionStep")
    split, slot = g.source(inv, "sigmas")
    assert split["type"] == "SplitSigmas" and slot == 1, "invert the low part (low_sigmas)"
    sched, _ = g.source(split, "sigmas")
    assert sched["type"] == "BasicScheduler"
    enc, _ = g.source(inv, "latent")
    assert enc["type"] == "VAEEncode" and g.source(enc, "pixels")[0]["type"] == "LoadImage"
    ks = g.one("KSamplerAdvanced")
    assert g.source(ks, "latent_image") == (inv, 0)
    k, s, b = widgets(ks), widgets(split), widgets(sched)
    assert k["add_noise"] == "disable"
    assert k["start_at_step"] == s["step"] and k["steps"] == b["steps"] and k["scheduler"] == b["scheduler"]
    assert 0 < s["step"] < b["steps"]
    assert widgets(inv)["cfg"] == 1.0


def test_equal_compute_ab_workflow():
    from w2sd_core import run_cost  # the pack's own cost arithmetic

    g, text = _workflow("Equal-compute")
    plain = widgets(g.one("KSampler"))
    w2 = widgets(g.one("W2SDReflectiveKSampler"))
    assert plain["steps"] == 50 and w2["steps"] == 25 and w2["reflect_steps"] == -1 and w2["mode"] == "guide"
    assert plain["seed"] == w2["seed"]
    assert plain["control_after_generate"] == w2["control_after_generate"] == "fixed"
    ks, w2node = g.one("KSampler"), g.one("W2SDReflectiveKSampler")
    for name in ("positive", "negative", "latent_image"):
        assert g.source(ks, name) == g.source(w2node, name), f"A and B differ in {name}"
    assert plain["cfg"] == w2["cfg"] and plain["sampler_name"] == w2["sampler_name"]
    cost = run_cost(
        25,
        0,
        w2["cfg"],
        w2["cfg"] if w2["strong_cfg"] == -1 else w2["strong_cfg"],
        w2["cfg"] if w2["weak_cfg"] == -1 else w2["weak_cfg"],
        guided=24,  # every step but the last
    )
    assert cost.evaluations == 49 and f"{cost.evaluations} model" in text
    prefixes = {widgets(n)["filename_prefix"] for n in g.of_type("SaveImage")}
    assert len(prefixes) == 2, "A and B must save under different names"


def test_wan22_workflow_reflects_the_high_noise_expert_only():
    """ComfyUI's Wan 2.2 template chain: the high-noise expert samples the first half (here from W2SD
    building blocks on SplitSigmas' high part), the low-noise expert finishes from the same step."""
    g, text = _workflow("Wan 2.2")
    high, low = g.one("SamplerCustomAdvanced"), g.one("KSamplerAdvanced")
    guider, _ = g.source(high, "guider")
    assert guider["type"] == "W2SDGuider" and g.source(high, "sampler")[0]["type"] == "W2SDSampler"
    split, slot = g.source(high, "sigmas")
    assert split["type"] == "SplitSigmas" and slot == 0, "the high-noise expert takes the high sigmas"
    sched, _ = g.source(split, "sigmas")
    loaders = {}
    for node, name in ((guider, "model"), (low, "model"), (sched, "model")):
        sampling, _ = g.source(node, name)
        assert sampling["type"] == "ModelSamplingSD3" and widgets(sampling)["shift"] == 8.0
        loaders[(node["id"], name)] = widgets(g.source(sampling, "model")[0])["unet_name"]
    assert "high_noise" in loaders[(guider["id"], "model")] and "high_noise" in loaders[(sched["id"], "model")]
    assert "low_noise" in loaders[(low["id"], "model")]
    assert g.source(low, "latent_image") == (high, 0)
    k, b = widgets(low), widgets(sched)
    assert k["add_noise"] == "disable" and k["start_at_step"] == widgets(split)["step"]
    assert k["steps"] == b["steps"] and k["scheduler"] == b["scheduler"] and k["cfg"] == widgets(guider)["cfg"]
    w = widgets(guider)
    assert w["weak_cfg"] == 1.0 and w["cfg"] > 1.0, "a CFG pair"
    assert g.one("EmptyHunyuanLatentVideo") and "models/diffusion_models" in text


def test_moe_expert_workflow_routes_the_weak_side_to_worse_experts():
    g, text = _workflow("MoE expert")
    builder, sampler = g.one("W2SDExpertPairBuilder"), g.one("W2SDReflectiveKSampler")
    assert g.source(sampler, "model") == (builder, 0) and g.source(sampler, "weak_model") is None
    assert "hidream" in widgets(g.one("UNETLoader"))["unet_name"]
    assert widgets(builder)["weak_start_rank"] == -1 and "LOWEST" in text
    s = widgets(sampler)
    # equal cost to the 50-step template: 25 steps, 24 of them guided
    assert (s["steps"], s["reflect_steps"], s["mode"]) == (25, -1, "guide") and "50" in text


def test_model_patch_workflow_pairs_one_checkpoint_with_and_without_a_patch():
    g, text = _workflow("Model-patch")
    sampler, patch = g.one("W2SDReflectiveKSampler"), g.one("FreeU_V2")
    loader = g.one("CheckpointLoaderSimple")
    assert g.source(sampler, "model") == (patch, 0)
    assert g.source(sampler, "weak_model") == (loader, 0) and g.source(patch, "model") == (loader, 0)
    assert "docs/pairs.md" in text and "Refused" in text


# ================================================================ ComfyUI tier

#: A V3 combo whose chosen option brings inputs of its own (0.30's SaveVideo codec).
DYNAMIC_COMBO = "COMFY_DYNAMICCOMBO_V3"


def widget_types() -> set:
    """The input types the running ComfyUI renders as widgets: every V3 type whose Input is a
    WidgetInput (a release that adds a widget kind adds it here), plus the dynamic combo."""
    from comfy_api.latest import _io

    kinds = {DYNAMIC_COMBO}
    for obj in vars(_io).values():
        inp = getattr(obj, "Input", None)
        if (
            isinstance(inp, type)
            and issubclass(inp, _io.WidgetInput)
            and isinstance(getattr(obj, "io_type", None), str)
        ):
            kinds.add(obj.io_type)
    return kinds


#: Combos that list installed files (checked by ComfyUI's validation with placeholder files below).
FILE_COMBOS = {
    "ckpt_name",
    "lora_name",
    "unet_name",
    "vae_name",
    "clip_name",
    "clip_name1",
    "clip_name2",
    "clip_name3",
    "clip_name4",
    "control_net_name",
    "image",
}


def is_widget(spec) -> bool:
    type_, opts = spec[0], (spec[1] if len(spec) > 1 else {}) or {}
    if opts.get("forceInput"):
        return False
    return isinstance(type_, (list, tuple)) or type_ in widget_types()


def combo_options(spec) -> list | None:
    """The values a combo accepts (a dynamic combo's option keys), else None."""
    opts = (spec[1] if len(spec) > 1 else {}) or {}
    if isinstance(spec[0], (list, tuple)):
        return list(spec[0])
    if spec[0] == DYNAMIC_COMBO:
        return [option["key"] for option in opts["options"]]
    return opts.get("options")


def chosen_inputs(spec, value) -> dict:
    """The INPUT_TYPES-shaped inputs a dynamic combo's chosen option adds ({} for other widgets)."""
    if spec[0] != DYNAMIC_COMBO:
        return {}
    options = {option["key"]: option.get("inputs") or {} for option in spec[1]["options"]}
    if value not in options:
        raise ValueError(f"{value!r} is not an option of this dynamic combo: {sorted(options)}")
    return options[value]


def upload_slot(spec) -> bool:
    """An image/video/audio combo gets an upload button widget, saved right after its value."""
    opts = (spec[1] if len(spec) > 1 else {}) or {}
    return any(opts.get(k) for k in ("image_upload", "video_upload", "animated_image_upload", "audio_upload"))


def control_slot(name, spec) -> bool:
    """A seed gets a control_after_generate widget, saved right after its value (the frontend adds
    one for ``control_after_generate`` inputs and for INT inputs named seed / noise_seed)."""
    opts = (spec[1] if len(spec) > 1 else {}) or {}
    return bool(opts.get("control_after_generate")) or (name in ("seed", "noise_seed") and spec[0] == "INT")


def ordered_inputs(input_types: dict) -> list[tuple[str, tuple, bool]]:
    """(name, spec, optional) in the frontend's order: required, then optional."""
    out = []
    for section in ("required", "optional"):
        for name, spec in (input_types.get(section) or {}).items():
            out.append((name, tuple(spec) if isinstance(spec, (list, tuple)) else (spec,), section == "optional"))
    return out


def widget_entries(node: dict, input_types: dict) -> list[tuple[str, tuple, object]]:
    """(input name, spec, saved value) of a saved node's widgets, following the real definition.
    A dynamic combo's chosen option adds its inputs, named ``combo.input`` as ComfyUI names them.
    Optional widgets at the end that the file lacks were saved before the node had them: the
    frontend keeps their defaults. Raises on any other count mismatch."""
    values = list(node.get("widgets_values") or [])
    out, i = [], 0

    def walk(inputs: dict, prefix: str):
        nonlocal i
        for name, spec, optional in ordered_inputs(inputs):
            if not is_widget(spec):
                continue
            if i >= len(values):
                if optional:
                    continue
                raise ValueError(f"{node['type']} {node['id']}: no widget value for {prefix + name!r}")
            value = values[i]
            out.append((prefix + name, spec, value))
            i += 1 + control_slot(name, spec) + upload_slot(spec)
            walk(chosen_inputs(spec, value), f"{prefix}{name}.")

    walk(input_types, "")
    if i != len(values):
        raise ValueError(f"{node['type']} {node['id']}: {len(values)} widget values, the definition has {i}")
    return out


def widget_map(node: dict, input_types: dict) -> dict:
    """Widget values of a saved node by input name (see widget_entries)."""
    return {name: value for name, _, value in widget_entries(node, input_types)}


def to_api(data: dict, input_types_of) -> dict:
    """UI-format workflow -> API-format prompt (what the frontend's "Queue" sends): widget values by
    input name in definition order, control_after_generate / upload entries skipped, link-fed inputs
    as [source id, output slot]. ``input_types_of(type)`` returns the node's INPUT_TYPES."""
    g = Graph(data)
    prompt = {}
    for node in data["nodes"]:
        if node["type"] in VIRTUAL:
            continue
        linked = {inp["name"]: inp["link"] for inp in node.get("inputs") or [] if inp.get("link") is not None}
        inputs = {}
        for name, value in widget_map(node, input_types_of(node["type"])).items():
            if name not in linked:
                inputs[name] = value
        for name, link_id in linked.items():
            link = g.links[link_id]
            if g.nodes[link[1]]["type"] in VIRTUAL:
                raise ValueError("links from frontend-only nodes (Reroute, Primitive) are not converted")
            inputs[name] = [str(link[1]), link[2]]
        prompt[str(node["id"])] = {
            "class_type": node["type"],
            "inputs": inputs,
            "_meta": {"title": node.get("title") or node["type"]},
        }
    return prompt


@pytest.fixture(scope="module")
def comfy_nodes(comfy):
    """ComfyUI's nodes with comfy_extras loaded (SamplerCustomAdvanced, FluxGuidance, ...)."""
    import asyncio

    if "SamplerCustomAdvanced" not in comfy.NODE_CLASS_MAPPINGS:
        asyncio.run(comfy.init_extra_nodes(init_custom_nodes=False, init_api_nodes=False))
    return comfy


def _types(spec) -> set:
    type_ = spec[0]
    if isinstance(type_, (list, tuple)):
        return {"COMBO"}
    return set(str(type_).split(","))


@pytest.mark.comfyui
def test_contract_table_matches_the_real_w2sd_nodes(comfy_nodes):
    for node_type, spec in CONTRACT.items():
        assert node_type in comfy_nodes.NODE_CLASS_MAPPINGS, f"{node_type} is not registered"
        cls = comfy_nodes.NODE_CLASS_MAPPINGS[node_type]
        real = ordered_inputs(cls.INPUT_TYPES())
        real_widgets = [name for name, s, _ in real if is_widget(s)]
        assert real_widgets == [name for name, _ in spec["widgets"]], f"{node_type} widget order"
        real_sockets = {name: _types(s) for name, s, _ in real if not is_widget(s)}
        assert real_sockets == {name: {t} for name, t in spec["sockets"]}, f"{node_type} sockets"
        assert list(cls.RETURN_TYPES) == spec["outputs"], f"{node_type} outputs"


@pytest.mark.comfyui
def test_stock_widget_table_matches_comfyui(comfy_nodes):
    for node_type, names in STOCK_WIDGETS.items():
        cls = comfy_nodes.NODE_CLASS_MAPPINGS[node_type]
        real = []
        for name, s, _ in ordered_inputs(cls.INPUT_TYPES()):
            if is_widget(s):
                real.append(name)
                if control_slot(name, s):
                    real.append("control_after_generate")
        assert real == names, node_type


@pytest.mark.comfyui
@pytest.mark.parametrize("path", WORKFLOWS, ids=WORKFLOW_IDS)
def test_workflow_against_real_node_definitions(comfy_nodes, path):
    data = load(path)
    g = Graph(data)
    mappings = comfy_nodes.NODE_CLASS_MAPPINGS
    for node in data["nodes"]:
        if node["type"] in VIRTUAL:
            continue
        assert node["type"] in mappings, f"{path.name}: {node['type']} is not a ComfyUI node"
        cls = mappings[node["type"]]
        input_types = cls.INPUT_TYPES()
        specs = {name: s for name, s, _ in ordered_inputs(input_types)}
        for name, s, value in widget_entries(node, input_types):  # raises on a count mismatch
            opts = (s[1] if len(s) > 1 else {}) or {}
            if "min" in opts:
                assert value >= opts["min"], f"{path.name}: {node['type']}.{name}={value} < min"
            if "max" in opts:
                assert value <= opts["max"], f"{path.name}: {node['type']}.{name}={value} > max"
            options = combo_options(s)
            if options and name not in FILE_COMBOS:
                # model and image file combos list what is installed; the rest are fixed choices
                assert value in options, f"{path.name}: {node['type']}.{name}={value!r} not in {options}"
        assert_outputs_fit(path.name, node, list(cls.RETURN_TYPES))
        for inp in node.get("inputs") or []:
            upload = inp["name"] == "upload" and any(upload_slot(x) for x in specs.values())
            assert inp["name"] in specs or upload, f"{path.name}: {node['type']} has no input {inp['name']!r}"
            if inp.get("link") is None:
                continue
            link = g.links[inp["link"]]
            src_type = outputs_of(mappings, g.nodes[link[1]])[link[2]]
            accepted = _types(specs[inp["name"]])
            assert src_type in accepted or "*" in accepted, (
                f"{path.name}: {src_type} into {node['type']}.{inp['name']} ({accepted})"
            )


def assert_outputs_fit(name: str, node: dict, outputs: list):
    """A saved node lists the definition's outputs, or, for a stock node that gained outputs in a
    later release (0.30's SaveImage and PreviewAny), the ones it had: their start, unchanged. The
    pack's own nodes list exactly theirs."""
    saved = [o["type"] for o in node.get("outputs") or []]
    if node["type"] in CONTRACT:
        assert saved == outputs, f"{name}: {node['type']} outputs"
    else:
        assert saved == outputs[: len(saved)], f"{name}: {node['type']} outputs {saved} do not start {outputs}"


def outputs_of(mappings, node) -> list:
    return list(mappings[node["type"]].RETURN_TYPES)


@pytest.fixture
def placeholder_models(comfy_nodes, tmp_path):
    """Empty files with the workflows' model names in every model folder, so ComfyUI's validation
    accepts the names; removed from ComfyUI's search paths afterwards."""
    import folder_paths

    names = set()
    for path in WORKFLOWS:
        for node in load(path)["nodes"]:
            for value in node.get("widgets_values") or []:
                if isinstance(value, str) and value.endswith((".safetensors", ".pth", ".ckpt")):
                    names.add(value)
    folders = ["checkpoints", "loras", "controlnet", "diffusion_models", "text_encoders", "vae"]
    added = []
    for folder in folders:
        d = tmp_path / folder
        d.mkdir()
        for name in names:
            (d / name).write_bytes(b"")
        folder_paths.add_model_folder_path(folder, str(d))
        added.append((folder, str(d)))
    folder_paths.filename_list_cache.clear()
    yield
    for folder, d in added:
        paths = folder_paths.folder_names_and_paths[folder][0]
        if d in paths:
            paths.remove(d)
    folder_paths.filename_list_cache.clear()


@pytest.mark.comfyui
@pytest.mark.parametrize("path", WORKFLOWS, ids=WORKFLOW_IDS)
def test_comfyui_validates_the_workflow(comfy_nodes, placeholder_models, path):
    """ComfyUI's own prompt validation (types, ranges, combos, required inputs) on the API prompt."""
    import asyncio
    import execution

    mappings = comfy_nodes.NODE_CLASS_MAPPINGS
    prompt = to_api(load(path), lambda t: mappings[t].INPUT_TYPES())
    valid, error, outputs, node_errors = asyncio.run(execution.validate_prompt("test", prompt, None))
    assert valid, f"{path.name}: {error} {node_errors}"
    assert not node_errors, f"{path.name}: {node_errors}"
    assert outputs, f"{path.name}: nothing to run"


# ---------------------------------------------------------------- end to end on tiny model files

#: What of each workflow cannot run on the tiny fixtures and is swapped out (see core_prompt).
NOT_RUN = {
    "CheckpointLoaderSimple": "tiny SD2-family UNet file via UNETLoader (no CLIP / VAE in the fixture)",
    "UNETLoader": (
        "tiny UNet file, made a flow model by ModelSamplingSD3; HiDream and Wan 2.2 experts: a "
        "tiny model of that family from a test-only node (tests/fixture_pack)"
    ),
    "CLIPLoader": "removed (no text encoder)",
    "QuadrupleCLIPLoader": "removed (no text encoder)",
    "CreateVideo": "removed: the sampler's LATENT goes to SaveLatent",
    "SaveVideo": "SaveLatent",
    "CLIPTextEncode": "LotusConditioning scaled per prompt text (distinct conds, no CLIP)",
    "DualCLIPLoader": "removed (no text encoder)",
    "VAELoader": "removed (no VAE)",
    "VAEEncode": "LoadLatent of a saved latent",
    "VAEDecode": "removed: the sampler's LATENT goes to SaveLatent",
    "SaveImage": "SaveLatent",
    "LoadImage": "a 64x64 fixture image",
    "ControlNetLoader": "a tiny SD2-family ControlNet file (real loader, real Apply ControlNet)",
}
#: Fewer steps on 2 CPU cores: 50 -> 5, 30 -> 3, 25 -> 2; reflect_steps 15, 12 or 5 -> 1, split 12 -> 1.
STEP_DIVISOR = 10
LATENT_PX = 64  # 8x8 latents
FIXTURE_IMAGE = "w2sd_fixture.png"
FIXTURE_LATENT = "w2sd_fixture.latent"
TINY_CONTROLNET = "w2sd_tiny_sd2_controlnet.safetensors"


def core_prompt(prompt: dict, files: dict, latent_name: str) -> dict:
    """The sampler core of an API prompt on tiny fixture files: every W2SD node, sampler, scheduler,
    guider, ControlNet, FluxGuidance, PreviewAny, EmptyLatent… stays as it is; what needs real
    weights is swapped (NOT_RUN says for what). Latents are 8x8; step counts and step indices are
    divided by STEP_DIVISOR."""
    import copy

    p = copy.deepcopy(prompt)
    next_id = [1000]

    def add(class_type, inputs):
        next_id[0] += 1
        p[str(next_id[0])] = {"class_type": class_type, "inputs": inputs}
        return str(next_id[0])

    family = next(
        (
            tiny_family(n["inputs"]["unet_name"])
            for n in p.values()
            if n["class_type"] == "UNETLoader" and tiny_family(n["inputs"]["unet_name"])
        ),
        None,
    )
    lotus = add("LotusConditioning", {})
    zero = add("ConditioningZeroOut", {"conditioning": [lotus, 0]})
    rewire, decoded, deleted, checkpoints, texts = {}, {}, set(), [], {}
    for nid, node in list(p.items()):
        ct, inp = node["class_type"], node["inputs"]
        if ct == "CheckpointLoaderSimple":
            if inp["ckpt_name"] not in checkpoints:
                checkpoints.append(inp["ckpt_name"])
            unet = files["unet"] if checkpoints.index(inp["ckpt_name"]) == 0 else files["unet_weak"]
            p[nid] = {"class_type": "UNETLoader", "inputs": {"unet_name": unet, "weight_dtype": "default"}}
        elif ct == "UNETLoader" and family:
            p[nid] = {"class_type": "TinyFixtureModel", "inputs": {"family": tiny_family(inp["unet_name"]), "seed": 0}}
        elif ct == "UNETLoader":
            inp["unet_name"] = files["unet"]
            rewire[(nid, 0)] = [add("ModelSamplingSD3", {"model": [nid, 0], "shift": 3.0}), 0]
        elif ct == "CLIPTextEncode" and family:
            k = texts.setdefault(inp["text"], len(texts))
            p[nid] = {"class_type": "TinyFixtureConditioning", "inputs": {"family": family, "seed": k}}
        elif ct == "CLIPTextEncode":
            k = texts.setdefault(inp["text"], len(texts))
            p[nid] = {
                "class_type": "ConditioningAverage",
                "inputs": {
                    "conditioning_to": [lotus, 0],
                    "conditioning_from": [zero, 0],
                    "conditioning_to_strength": round(1.0 - 0.15 * k, 2),
                },
            }
        elif ct in ("DualCLIPLoader", "VAELoader", "CLIPLoader", "QuadrupleCLIPLoader", "CreateVideo"):
            deleted.add(nid)
        elif ct == "ControlNetLoader":
            inp["control_net_name"] = files["controlnet"]
        elif ct == "LoadImage":
            inp["image"] = FIXTURE_IMAGE
        elif ct == "VAEEncode":
            p[nid] = {"class_type": "LoadLatent", "inputs": {"latent": latent_name}}
        elif ct == "VAEDecode":
            deleted.add(nid)
            decoded[nid] = inp["samples"]
        elif ct == "W2SDWeakModelBuilder" and inp.get("lora_name") not in (None, "None"):
            inp["lora_name"] = files["lora"]
        elif ct in ("EmptyLatentImage", "EmptySD3LatentImage", "EmptyHunyuanLatentVideo"):
            inp["width"] = inp["height"] = LATENT_PX
            if "length" in inp:
                inp["length"] = 5  # two latent frames
        for key in ("steps",):
            if isinstance(inp.get(key), int):
                inp[key] = max(2, inp[key] // STEP_DIVISOR)
        for key in ("reflect_steps", "start_at_step") + (("step",) if ct == "SplitSigmas" else ()):
            if isinstance(inp.get(key), int) and inp[key] > 0:
                inp[key] = max(1, inp[key] // STEP_DIVISOR) if key == "reflect_steps" else inp[key] // STEP_DIVISOR
    for nid, node in list(p.items()):
        if node["class_type"] in ("SaveImage", "SaveVideo"):
            src = (
                node["inputs"]["images"]
                if node["class_type"] == "SaveImage"
                else p[node["inputs"]["video"][0]]["inputs"]["images"]
            )  # CreateVideo's frames
            p[nid] = {
                "class_type": "SaveLatent",
                "inputs": {
                    "samples": decoded[src[0]],
                    "filename_prefix": "w2sd_test/" + node["inputs"]["filename_prefix"],
                },
            }
    for nid in deleted:
        del p[nid]

    def resolve(value):
        seen = 0
        while isinstance(value, list) and (value[0], value[1]) in rewire and seen < 10:
            target = rewire[(value[0], value[1])]
            if target[0] in p and any(v == value for v in p[target[0]]["inputs"].values()):
                break  # the node that replaced this output reads the output itself
            value, seen = target, seen + 1
        return value

    for nid, node in p.items():
        for key, value in list(node["inputs"].items()):
            if isinstance(value, list):
                node["inputs"][key] = resolve(value)
                assert node["inputs"][key][0] in p, f"{nid}.{key} reads a removed node {value}"
    return p


def tiny_family(unet_name: str):
    """The test-only tiny model standing in for a diffusion model file ComfyUI cannot detect at tiny
    sizes (tests/fixture_pack), or None for the tiny SD2-family file."""
    for part, family in (("hidream", "hidream"), ("high_noise", "wan_high"), ("low_noise", "wan_low")):
        if part in unet_name:
            return family
    return None


def write_tiny_controlnet(models_dir) -> str:
    """A ControlNet for the tiny SD2-family UNet of ``comfy_support.write_tiny_checkpoints``, which
    ComfyUI's own ControlNet loader detects (same config keys as the UNet) and applies."""
    import safetensors.torch
    import torch
    import comfy.cldm.cldm
    import comfy.ops
    import comfy_support

    path = pathlib.Path(models_dir) / "controlnet" / TINY_CONTROLNET
    if not path.exists():
        config = dict(comfy_support.TINY_SD2_UNET)
        config.pop("out_channels")
        config.update(hint_channels=3, operations=comfy.ops.disable_weight_init, device="cpu", dtype=torch.float32)
        net = comfy.cldm.cldm.ControlNet(**config)
        g = torch.Generator().manual_seed(7)
        path.parent.mkdir(parents=True, exist_ok=True)
        safetensors.torch.save_file(
            {k: (torch.randn(v.shape, generator=g) * 0.02).half() for k, v in net.state_dict().items()}, str(path)
        )
    return TINY_CONTROLNET


@pytest.fixture(scope="module")
def tiny_server(tmp_path_factory):
    import comfy_support

    reason = comfy_support.comfyui_missing_reason()
    if reason:
        pytest.skip(reason)
    server_cls = getattr(comfy_support, "ComfyServer", None)
    if server_cls is None:
        pytest.skip("tests/comfy_support.py has no ComfyServer")
    base = tmp_path_factory.mktemp("comfy_server")
    (base / "custom_nodes").mkdir(parents=True, exist_ok=True)
    (base / "custom_nodes" / "w2sd_test_fixtures").symlink_to(ROOT / "tests" / "fixture_pack", target_is_directory=True)
    with server_cls(base) as server:
        import numpy as np
        import torch
        from PIL import Image

        files = comfy_support.write_tiny_checkpoints(server.models_dir)
        files["controlnet"] = write_tiny_controlnet(server.models_dir)
        g = torch.Generator().manual_seed(0)
        comfy_support.write_latent_file(
            server.input_dir / FIXTURE_LATENT, torch.randn(1, 4, LATENT_PX // 8, LATENT_PX // 8, generator=g) * 0.5
        )
        pixels = (torch.rand(LATENT_PX, LATENT_PX, 3, generator=g) * 255).to(torch.uint8).numpy()
        Image.fromarray(np.ascontiguousarray(pixels)).save(server.input_dir / FIXTURE_IMAGE)
        object_info = server.get_json("/object_info", timeout=30)
        yield server, files, object_info


@pytest.mark.comfyui
@pytest.mark.parametrize("path", WORKFLOWS, ids=WORKFLOW_IDS)
def test_workflow_sampler_core_runs_end_to_end(tiny_server, path):
    """Each workflow, converted to API format with the server's own node definitions, with its
    weight-dependent parts swapped for tiny fixtures, queued on a real ComfyUI server."""
    import comfy_support

    server, files, object_info = tiny_server
    data = load(path)
    prompt = to_api(data, lambda t: object_info[t]["input"])
    core = core_prompt(prompt, files, FIXTURE_LATENT)
    dropped = {n["class_type"] for n in prompt.values()} - {n["class_type"] for n in core.values()}
    assert dropped <= set(NOT_RUN), f"{path.name}: {dropped - set(NOT_RUN)} dropped without a reason"
    assert any(n["class_type"].startswith("W2SD") for n in core.values())
    entry = server.run(core, timeout=90)
    assert server.succeeded(entry), (
        f"{path.name}: {json.dumps(entry['status'], indent=1)[-3000:]}\n{server.log_tail(3000)}"
    )
    saves = [nid for nid, n in core.items() if n["class_type"] == "SaveLatent"]
    assert saves
    for nid in saves:
        latents = entry["outputs"][nid]["latents"]
        for item in latents:
            file = server.output_dir / item["subfolder"] / item["filename"]
            samples = comfy_support.read_latent_file(file)
            assert samples.shape[-2:] == (LATENT_PX // 8, LATENT_PX // 8)
            assert bool(samples.isfinite().all()), f"{path.name}: non-finite latent from node {nid}"
            assert float(samples.abs().max()) > 0
    for nid, node in core.items():
        if node["class_type"] == "PreviewAny":
            text = json.dumps(entry["outputs"].get(nid, {}))
            assert len(text) > 20, f"{path.name}: the builder's report is empty"
