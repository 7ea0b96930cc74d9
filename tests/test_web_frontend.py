"""The web extension (web/w2sd.js, web/w2sd_cost.js).

Core tier (needs only Node.js): the page's cost arithmetic agrees with w2sd_core's on a grid of
cases, and its reflection count agrees with ``ReflectionPlan`` on real schedules.

Browser tier (ComfyUI + Debian's chromium + npm's playwright-core): ComfyUI's real server with this
pack, its real frontend in headless Chromium; the extension is loaded, a W2SD Reflective KSampler
added through the frontend's API shows the right cost and updates it as widgets change, a
SamplerCustomAdvanced graph shows the cost from its scheduler, and every example workflow loads
into the frontend unchanged. Screenshots go to /tmp/w2sd_frontend_*.png.

Finding the browser: $W2SD_CHROMIUM, else /usr/bin/chromium. playwright-core: $W2SD_WEB_DEPS
(a directory holding node_modules/playwright-core, as .ci/run installs it), else
~/.cache/comfyui-w2sd-web, else tests/web. Each missing piece skips the tier with the reason.
"""

from __future__ import annotations

import json
import math
import os
import pathlib
import re
import shutil
import subprocess
import urllib.error
import urllib.parse
import urllib.request

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
WEB = ROOT / "web"
COST_JS = WEB / "w2sd_cost.js"
NODE = shutil.which("node")
EXTENSION_NAME = "W2SD.CostDisplay"


def run_node(script: str, *args: str, timeout: float = 60, env=None) -> str:
    proc = subprocess.run(
        [NODE, "--input-type=module", "-e", script, *args], capture_output=True, text=True, timeout=timeout, env=env
    )
    assert proc.returncode == 0, f"node failed ({proc.returncode}):\n{proc.stderr[-4000:]}"
    return proc.stdout


needs_node = pytest.mark.skipif(
    NODE is None, reason="node (Node.js) not found: the web extension's JS tests are skipped"
)


# ================================================================ core tier: JS == Python


def test_web_files_make_no_network_requests():
    """The extension computes everything from the graph: no fetch, XHR, websocket or API calls."""
    for path in WEB.glob("**/*.js"):
        text = path.read_text(encoding="utf-8")
        code = re.sub(r"//.*", "", text)
        for banned in ("fetch(", "XMLHttpRequest", "WebSocket", "fetchApi", "sendBeacon", "EventSource"):
            assert banned not in code, f"{path.name} uses {banned}"
        imports = re.findall(r"""^\s*import\b[^'"]*['"]([^'"]+)['"]""", text, flags=re.M)
        for target in imports:
            assert target.startswith((".", "/")), f"{path.name} imports {target} from elsewhere"


def test_only_extension_code_and_help_pages_in_web():
    """ComfyUI serves every .js under web/ as an extension; web/docs/ holds the help pages
    (docs/<NodeId>.md and docs/<NodeId>/en.md)."""
    for path in WEB.rglob("*"):
        if path.is_file():
            if path.parent == WEB:
                ok = path.suffix == ".js"
            elif path.parent == WEB / "docs":
                ok = path.suffix == ".md"
            else:
                ok = path.parent.parent == WEB / "docs" and path.name == "en.md"
            assert ok, f"{path} does not belong in web/"


def test_a_help_page_per_node():
    """The frontend's node help panel fetches /extensions/<pack>/docs/<NodeId>.md (web/docs/)."""
    node_ids = sorted(
        set(
            re.findall(
                r'node_id="(W2SD\w+)"',
                "".join(path.read_text(encoding="utf-8") for path in (ROOT / "nodes").glob("*.py")),
            )
        )
    )
    assert len(node_ids) == 7, node_ids
    for node_id in node_ids:
        page = WEB / "docs" / f"{node_id}.md"
        assert page.is_file(), f"no help page {page.name}"
        text = page.read_text(encoding="utf-8")
        assert text.startswith("# "), f"{page.name} needs a title"
        # the help panel asks for docs/<NodeId>/<locale>.md first (a 404 in the console for each
        # opening otherwise), then docs/<NodeId>.md: the same page under both names
        localized = WEB / "docs" / node_id / "en.md"
        assert localized.is_file() and localized.read_text(encoding="utf-8") == text, (
            f"{localized} differs from {page.name}"
        )
        # the help panel is about 280 px wide: tables do not fit it (lists do)
        assert not re.search(r"^\s*\|.*\|\s*$", text, flags=re.M), f"{page.name} has a table"


@needs_node
def test_js_default_plan_mirrors_the_core_defaults():
    """web/w2sd_cost.js DEFAULT_PLAN (the plan of a W2SD Guider over a plain sampler, and of a
    widget the page cannot read) is w2sd_core.DEFAULTS."""
    from w2sd_core import DEFAULTS

    script = f"""
        import {{ DEFAULT_PLAN }} from {json.dumps(COST_JS.as_uri())};
        console.log(JSON.stringify(DEFAULT_PLAN));
    """
    js = json.loads(run_node(script))
    assert js == {
        "reflect_steps": DEFAULTS.steps,
        "reflect_end_percent": DEFAULTS.end_percent,
        "repeats": DEFAULTS.repeats,
        "mode": DEFAULTS.mode,
        "guidance": DEFAULTS.guidance,
    }, js


@needs_node
def test_js_cost_matches_python_on_a_grid():
    from w2sd_core import run_cost

    cases = [
        (steps, refl, cfg, strong, weak, guided)
        for steps in (0, 1, 2, 8, 16, 20, 25, 30, 50)
        for refl in (0, 1, 7, 12, 49)
        for cfg in (0.0, 1.0, 1.5, 5.5, 8.0)
        for strong in (0.0, 1.0, 7.0)
        for weak in (1.0, 4.5)
        for guided in (0, 5)
    ]
    script = f"""
        import {{ runCost }} from {json.dumps(COST_JS.as_uri())};
        const cases = JSON.parse(process.argv[1]);
        const out = cases.map(([s, r, c, st, w, g]) => {{
          const x = runCost(s, r, c, st, w, g);
          return [x.steps, x.reflections, x.guided, x.evaluations, x.passes, x.plainPasses, x.ratio];
        }});
        console.log(JSON.stringify(out));
    """
    js = json.loads(run_node(script, json.dumps(cases)))
    assert len(js) == len(cases)
    for case, got in zip(cases, js):
        *args, guided = case
        want = run_cost(*args, guided=guided)
        assert got[:6] == [
            want.steps,
            want.reflections,
            want.guided,
            want.evaluations,
            want.passes,
            want.plain_passes,
        ], case
        assert math.isclose(got[6], want.ratio, rel_tol=0, abs_tol=1e-12), case


@needs_node
def test_js_reflection_count_matches_the_plan_on_real_schedules():
    """λ from the widgets (reflect_steps -1 / 0 / n, repeats) vs ReflectionPlan on a schedule of
    that many steps ending at sigma 0; with reflect_end_percent < 1 the page shows an upper bound."""
    import torch
    from w2sd_core import ReflectionPlan

    cases = [
        (steps, lam, rep)
        for steps in (1, 2, 3, 10, 20, 25, 50)
        for lam in (-1, 0, 1, 5, 12, 24, 49, 80)
        for rep in (1, 2, 3)
    ]
    script = f"""
        import {{ estimateReflections }} from {json.dumps(COST_JS.as_uri())};
        const cases = JSON.parse(process.argv[1]);
        console.log(JSON.stringify(cases.map(([steps, lam, rep]) => [
          estimateReflections({{ steps, reflectSteps: lam, repeats: rep }}),
          estimateReflections({{ steps, reflectSteps: lam, repeats: rep, reflectEndPercent: 0.4 }}),
        ])));
    """
    js = json.loads(run_node(script, json.dumps(cases)))
    for (steps, lam, rep), (exact, bounded) in zip(cases, js):
        # a Karras schedule as ComfyUI builds it (descending, ending at 0)
        ramp = torch.linspace(0, 1, steps)
        rho, smin, smax = 7.0, 0.03, 14.6
        sigmas = (smax ** (1 / rho) + ramp * (smin ** (1 / rho) - smax ** (1 / rho))) ** rho
        sigmas = torch.cat([sigmas, sigmas.new_zeros(1)])
        plan = ReflectionPlan(steps=lam, repeats=rep)
        want = len(plan.reflected_steps(sigmas)) * rep
        assert exact["reflections"] == want and exact["bounded"] is False, (steps, lam, rep)
        windowed = ReflectionPlan(steps=lam, repeats=rep, sigma_min=float(sigmas[len(sigmas) // 2]))
        assert bounded["reflections"] >= len(windowed.reflected_steps(sigmas)) * rep
        assert bounded["bounded"] == (want > 0)


@needs_node
def test_js_split_schedule_matches_comfyui_slicing():
    """SplitSigmas / SplitSigmasDenoise cut a schedule as ComfyUI's nodes slice the sigmas tensor
    (Python slicing and round(), copied from comfy_extras/nodes_custom_sampler.py)."""
    cases = [
        (kind, steps, zero, slot, value)
        for steps in (0, 1, 2, 5, 10, 20)
        for zero in (True, False)
        for slot in (0, 1)
        for kind, values in (
            ("SplitSigmas", (0, 1, 3, 10, 19, 20, 25)),
            ("SplitSigmasDenoise", (0.0, 0.1, 0.25, 0.5, 0.75, 1.0)),
        )
        for value in values
    ]
    script = f"""
        import {{ splitSchedule }} from {json.dumps(COST_JS.as_uri())};
        const cases = JSON.parse(process.argv[1]);
        console.log(JSON.stringify(cases.map(([kind, steps, zero, slot, value]) =>
          splitSchedule(kind, {{ steps, endsAtZero: zero }}, slot, value))));
    """
    js = json.loads(run_node(script, json.dumps(cases)))
    for (kind, steps, zero, slot, value), got in zip(cases, js):
        sigmas = [float(steps - i) + (0.0 if zero else 0.5) for i in range(steps + 1)]  # descending
        if kind == "SplitSigmas":
            parts = (sigmas[: value + 1], sigmas[value:])
        else:
            total = round((len(sigmas) - 1) * value)
            parts = (sigmas[:-total], sigmas[-(total + 1) :])
        part = parts[slot]
        want = max(0, len(part) - 1)
        assert got["steps"] == want, (kind, steps, zero, slot, value, got)
        if want:
            assert got["endsAtZero"] == (part[-1] == 0.0), (kind, steps, zero, slot, value, got)
    assert (
        json.loads(
            run_node(f"""
        import {{ splitSchedule }} from {json.dumps(COST_JS.as_uri())};
        console.log(JSON.stringify(splitSchedule("FlipSigmas", {{ steps: 4, endsAtZero: true }}, 0, 0)));
    """)
        )
        is None
    )


# ================================================================ browser tier


def chromium_path() -> str | None:
    path = os.environ.get("W2SD_CHROMIUM", "/usr/bin/chromium")
    return path if os.access(path, os.X_OK) else None


def playwright_dir() -> pathlib.Path | None:
    candidates = [
        os.environ.get("W2SD_WEB_DEPS"),
        str(pathlib.Path.home() / ".cache" / "comfyui-w2sd-web"),
        str(ROOT / "tests" / "web"),
    ]
    for c in candidates:
        if c and (pathlib.Path(c) / "node_modules" / "playwright-core" / "package.json").is_file():
            return pathlib.Path(c) / "node_modules"
    return None


def browser_missing_reason() -> str | None:
    import comfy_support

    reason = comfy_support.comfyui_missing_reason()
    if reason:
        return reason
    if NODE is None:
        return "node (Node.js) not found: browser test of the web extension skipped"
    if chromium_path() is None:
        return (
            "chromium not found (apt-get install chromium, or set W2SD_CHROMIUM): browser test "
            "of the web extension skipped"
        )
    if playwright_dir() is None:
        return (
            "playwright-core not found (npm install playwright-core into ~/.cache/comfyui-w2sd-web "
            "or $W2SD_WEB_DEPS): browser test of the web extension skipped"
        )
    try:
        import comfyui_frontend_package  # noqa: F401
    except ImportError:
        return "comfyui-frontend-package is not installed: ComfyUI cannot serve its frontend"
    if not hasattr(comfy_support, "ComfyServer"):
        return "tests/comfy_support.py has no ComfyServer"
    return None


# The browser side (a node script of its own): one page per renderer, what it saw as JSON on stdout.
DRIVER = ROOT / "tests" / "web" / "browser_driver.cjs"

WEAK_INPUTS = ("weak_model", "weak_positive", "weak_negative")
# nodes whose last two widgets (mode, guidance) came later: a workflow saved before loads with their defaults
MODE_NODES = {"W2SDReflectiveKSampler", "W2SDReflectiveKSamplerAdvanced", "W2SDSampler"}


def expected_cost(values: dict, linked=(), advanced=False):
    """What the pack's samplers run for a Reflective KSampler (or its Advanced variant) with these
    widget values: the planned steps from ReflectionPlan on the node's schedule (for the Advanced
    node cut by nodes/ksampler.py's schedule()), reflections and guided evaluations as
    nodes/reflecting.py counts them, the passes from w2sd_core.run_cost.
    Returns (cost, whether the page can only bound the count, what switched W2SD off or None,
    whether anything differs between the sides)."""
    import torch
    from w2sd_core import ReflectionPlan, run_cost
    from w2sd_core.guidance import guides, reflects

    steps = values["steps"] if advanced or values["denoise"] > 0 else 0
    cfg = values["cfg"]
    strong = cfg if values["strong_cfg"] == -1 else values["strong_cfg"]
    weak = cfg if values["weak_cfg"] == -1 else values["weak_cfg"]
    weak_side = any(name in linked for name in WEAK_INPUTS)
    differs, cfg_only = weak_side or strong != weak, not weak_side and strong != weak
    mode, w = values["mode"], values["guidance"]
    sigmas = torch.cat([torch.linspace(14.6, 0.03, steps), torch.zeros(1)]) if steps else torch.zeros(1)
    if advanced:
        end, start = values["end_at_step"], values["start_at_step"]
        if end < len(sigmas) - 1:
            sigmas = sigmas[: end + 1].clone()
            if values["return_with_leftover_noise"] != "enable":
                sigmas[-1] = 0
        sigmas = sigmas[start:] if start < len(sigmas) - 1 else sigmas[:0]
    run = max(0, len(sigmas) - 1)
    off = (
        None
        if not differs
        else "reflect_steps 0"
        if values["reflect_steps"] == 0
        else "guidance 0"
        if not reflects(mode) and guides(mode) and w == 0
        else None
    )
    planned = []
    if run and differs and values["reflect_end_percent"] > 0 and not off:
        planned = ReflectionPlan(steps=values["reflect_steps"], repeats=values["repeats"]).reflected_steps(sigmas)
    reflections = len(planned) * values["repeats"] if reflects(mode) else 0
    guided = len(planned) if guides(mode) and w != 0 and not cfg_only else 0
    cost = run_cost(run, reflections, cfg, strong, weak, guided=guided)
    return cost, values["reflect_end_percent"] < 1 and bool(planned), off, differs


def parse_line(text: str) -> dict:
    """A node's cost line (or run report) as numbers: reflections, guided, evaluations, ratio, and
    which of them carry '≤'."""
    got = {"reflections": 0, "guided": 0, "bounded": set(), "cfg_as": None}
    for part in text.removeprefix("ran: ").split(" · "):
        le = part.startswith("≤ ")
        part = part.removeprefix("≤ ")
        if m := re.fullmatch(r"(\d+) reflections?", part):
            got["reflections"] = int(m.group(1))
            key = "reflections"
        elif m := re.fullmatch(r"(\d+) guided", part):
            got["guided"] = int(m.group(1))
            key = "guided"
        elif m := re.fullmatch(r"(\d+) reflect\+guide", part):
            got["reflections"] = got["guided"] = int(m.group(1))
            key = ("reflections", "guided")
        elif m := re.fullmatch(r"(\d+) refl\. \+ (\d+) guided", part):
            got["reflections"], got["guided"] = int(m.group(1)), int(m.group(2))
            key = ("reflections", "guided")
        elif m := re.fullmatch(r"(\d+) steps? at CFG (\d+(?:\.\d{1,2})?)", part):
            got["cfg_as"] = (int(m.group(1)), float(m.group(2)))
            key = "cfg_as"
        elif m := re.fullmatch(r"(\d+) evals", part):
            got["evaluations"] = int(m.group(1))
            key = "evaluations"
        elif m := re.fullmatch(r"×(\d+(?:\.\d{1,2})?) time", part):
            got["ratio"] = float(m.group(1))
            key = "ratio"
        else:
            raise AssertionError(f"unexpected part {part!r} in {text!r}")
        if le:
            got["bounded"].update(key if isinstance(key, tuple) else (key,))
    return got


#: what a node with nothing different between its sides says, whatever its plan (web/w2sd_cost.js)
NO_WEAK_SIDE = "to use W2SD: add a weak model, prompt or CFG"


def check_text(text, cost, bounded, off=None, differs=True, *, where):
    """The numbers in a cost line equal the expected cost's; '≤' exactly where only a bound is known;
    'W2SD off' exactly where the plan is off; what is missing where nothing differs."""
    if not differs:
        assert text == NO_WEAK_SIDE, f"{where}: {text!r}, expected {NO_WEAK_SIDE!r}"
        return
    if off:
        assert text == f"W2SD off · {off}", f"{where}: {text!r}, expected W2SD off ({off})"
        return
    assert not text.startswith("W2SD off"), f"{where}: {text!r}"
    if text.startswith("nothing planned · "):
        assert cost.reflections == cost.guided == 0 and text.split(" · ")[1] == f"{cost.evaluations} evals", (
            f"{where}: {text!r} vs {cost}"
        )
        return
    got = parse_line(text)
    assert (got["reflections"], got["guided"], got["evaluations"]) == (
        cost.reflections,
        cost.guided,
        cost.evaluations,
    ), f"{where}: {text!r} vs {cost}"
    assert math.isclose(got["ratio"], cost.ratio, abs_tol=0.005 + 1e-9), f"{where}: {text!r} vs {cost.ratio}"
    # a bounded count of reflected or guided steps bounds the evaluations and the time too; the steps
    # a CFG pair runs at another CFG cost nothing extra, so the evaluations stay exact
    numbers = {k for k in ("reflections", "guided", "cfg_as") if got[k]}
    if cost.reflections or cost.guided:
        numbers.add("evaluations")
        if cost.passes != cost.plain_passes:
            numbers.add("ratio")
    assert got["bounded"] == (numbers if bounded else set()), f"{where}: '≤' wrong in {text!r}"


def visible_cost(snap: dict, where: str, caption: bool = True) -> str:
    """The cost line as the user sees it: the caption, visible and inside the node. Where the
    renderer shows no caption (``caption`` False: README, known limits), the test asserts exactly
    that: the caption is not in the page, and the text the node holds is returned for the numbers."""
    if not caption:
        assert not snap["visible"] and not snap["attached"], f"{where}: documented as not shown, but: {snap}"
        return snap["shown"]["text"]
    assert snap["visible"], f"{where}: the caption is not visible: {snap}"
    assert snap["inside"], f"{where}: the caption is outside the node: {snap}"
    return snap["text"]


def frontend_version(root: str | None) -> str:
    """The frontend a browser run serves: the one the ComfyUI release pins (installed in the Python
    running this test), or the one unpacked at --front-end-root."""
    if root:
        m = re.search(r"frontend-(\d+\.\d+\.\d+)", root)
        assert m, f"cannot tell the frontend version of {root}"
        return m.group(1)
    from importlib.metadata import version

    return version("comfyui-frontend-package")


def caption_in_nodes2(version: str) -> bool:
    """Whether Nodes 2.0 (Comfy.VueNodes.Enabled) shows the cost line. Not in frontend 1.27 (pinned
    by ComfyUI 0.3.64): its Nodes 2.0 is a hidden experimental preview whose canvas mounts no DOM
    widgets while Vue renders the nodes (GraphCanvas: `<DomWidgets v-if="!shouldRenderVueNodes">`),
    and whose Vue node components draw no badges and only the widget types they know. README,
    known limits."""
    return tuple(int(x) for x in version.split(".")[:2]) != (1, 27)


def comfyui_version() -> tuple:
    import comfy_support

    text = (comfy_support.comfyui_path() / "comfyui_version.py").read_text(encoding="utf-8")
    return tuple(int(x) for x in re.search(r'"(\d+)\.(\d+)\.(\d+)', text).groups())


def tier_frontends() -> list[tuple[str, str | None]]:
    """(label, --front-end-root or None): the release's pinned frontend, and on 0.8.0 and later the
    newer ones in $W2SD_FRONTEND_ROOTS (static folders of unpacked comfyui-frontend-package wheels,
    as .ci/web_deps.sh leaves them)."""
    import comfy_support

    if comfy_support.comfyui_missing_reason():
        return [("pinned", None)]
    found = [("pinned", None)]
    if comfyui_version() >= (0, 8, 0):
        roots = [r for r in os.environ.get("W2SD_FRONTEND_ROOTS", "").split(os.pathsep) if r]
        found += [
            (
                re.search(r"frontend-([\d.]+)", r).group(1)
                if re.search(r"frontend-([\d.]+)", r)
                else pathlib.Path(r).name,
                r,
            )
            for r in roots
        ]
    return found


def run_browser(tmp_path, root):
    import comfy_support

    workflows = {p.stem: json.loads(p.read_text(encoding="utf-8")) for p in sorted((ROOT / "workflows").glob("*.json"))}
    (tmp_path / "workflows.json").write_text(json.dumps(workflows), encoding="utf-8")
    driver = DRIVER
    shots = pathlib.Path(os.environ.get("W2SD_SCREENSHOT_DIR", "/tmp"))
    env = dict(os.environ, NODE_PATH=str(playwright_dir()))
    base = tmp_path / "comfy"
    settings = base / "user" / "default" / "comfy.settings.json"
    settings.parent.mkdir(parents=True)
    # a returning user: no first-run template browser over the canvas; no workflow restored on reload
    settings.write_text(
        json.dumps({"Comfy.TutorialCompleted": True, "Comfy.Workflow.Persist": False}), encoding="utf-8"
    )
    files = comfy_support.write_tiny_checkpoints(base / "models")
    extra = ["--front-end-root", root] if root else []
    tag = pathlib.Path(root).parent.parent.name if root else "pinned"
    with comfy_support.ComfyServer(base, extra_args=extra) as server:
        proc = subprocess.run(
            [
                NODE,
                str(driver),
                server.url("/"),
                chromium_path(),
                str(tmp_path / "workflows.json"),
                EXTENSION_NAME,
                str(shots),
                tag,
                json.dumps(files),
                "yes" if caption_in_nodes2(frontend_version(root)) else "no",
            ],
            capture_output=True,
            text=True,
            timeout=240,
            env=env,
        )
        assert proc.returncode == 0, f"browser driver failed:\n{proc.stderr[-4000:]}\n{server.log_tail(2000)}"
        templates = server.get_json("/api/workflow_templates")
        history = server.get_json("/history")
        seen_definitions = server.get_json("/object_info")
        thumbs = {
            name: _status(
                server.url(
                    f"/api/workflow_templates/{comfy_support.ComfyServer.PACK_LINK}/{urllib.parse.quote(name)}.jpg"
                )
            )
            for name in workflows
        }
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    if os.environ.get("W2SD_THUMBNAILS"):  # the template browser's <workflow>.jpg, 488 x 328
        from PIL import Image

        for png in pathlib.Path(os.environ["W2SD_THUMBNAILS"]).glob("*.png"):
            with Image.open(png) as image:
                image.convert("RGB").resize((488, 328), Image.LANCZOS).save(png.with_suffix(".jpg"), quality=88)
    (shots / f"w2sd_{tag}_seen.json").write_text(json.dumps(seen, indent=1), encoding="utf-8")
    seen["definitions"] = seen_definitions
    return seen, workflows, templates, history, thumbs


def names_ksampler(name: str, definitions: dict) -> bool:
    """Whether a search result's text is the Reflective KSampler: it starts with that node's
    display name and with no other W2SD node's (all start with "W2SD")."""
    title = definitions["W2SDReflectiveKSampler"]["display_name"]
    others = [d["display_name"] for k, d in definitions.items() if k.startswith("W2SD") and d["display_name"] != title]
    return name.startswith(title) and not any(name.startswith(o) for o in others)


def added_defaults(definition: dict, want: list, loaded: list) -> list:
    """What the frontend appends to a node saved before its release added optional widgets at the
    end (0.30's CreateVideo bit_depth): those widgets' defaults, from the server's definition."""
    extra = len(loaded) - len(want)
    optional = (definition.get("input") or {}).get("optional") or {}
    order = (definition.get("input_order") or {}).get("optional") or list(optional)
    defaults = [optional[name][1]["default"] for name in order if "default" in (list(optional[name]) + [{}])[1]]
    return defaults[len(defaults) - extra :] if 0 < extra <= len(defaults) else []


def _status(url):
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


@pytest.mark.comfyui
@pytest.mark.parametrize("label,root", tier_frontends(), ids=[f[0] for f in tier_frontends()])
def test_frontend_in_a_real_browser(tmp_path, label, root):
    reason = browser_missing_reason()
    if reason:
        pytest.skip(reason)
    seen, workflows, templates, history, thumbs = run_browser(tmp_path, root)
    version = frontend_version(root)
    assert seen["version"] == version, (seen["version"], version)

    # the extension was served and registered, and caused no errors or deprecation warnings
    assert any(u.endswith("/w2sd.js") and "/extensions/" in u for u in seen["requests"]), "web/w2sd.js never loaded"
    assert EXTENSION_NAME in seen["extensions"], seen["extensions"]
    # the help panel first asks for docs/<NodeId>/<locale>.md, then docs/<NodeId>.md: both are there
    ours = [e for e in seen["errors"] if "w2sd" in e.lower()]
    assert not ours, f"errors from the extension: {ours}"
    # the warning's stack names the extension's files when the extension made the deprecated call
    deprecated = [w for w in seen["warnings"][seen["mark"] :] if "deprecat" in w.lower() and "/w2sd" in w]
    assert not deprecated, f"deprecation warnings while the extension worked: {deprecated}"
    assert not [u for u in seen["requests"] if u[:1] in "45" and " " in u and "w2sd" in u.lower()], [
        u for u in seen["requests"] if u[:1] in "45" and " " in u
    ]
    assert any(re.search(r"/docs/W2SDReflectiveKSampler/en\.md$", u) for u in seen["requests"]), "en.md never asked for"

    renderers = ["classic"] + (["vue"] if seen["hasVue"] else [])
    assert sorted(seen["renderers"]) == sorted(renderers)
    from w2sd_core import run_cost

    for renderer in renderers:
        got = seen["renderers"][renderer]
        where = f"{label}/{renderer}"
        caption = renderer == "classic" or caption_in_nodes2(version)
        # 1) the cost, inside the node, with the right numbers after every edit
        assert None not in got["ksampler"]["serialized"] and len(got["ksampler"]["serialized"]) == 15, (
            f"{where}: the caption leaked into widgets_values: {got['ksampler']['serialized']}"
        )
        previous = None
        for snap in got["ksampler"]["snaps"]:
            at = f"{where}, after {snap['label']}"
            if renderer == "vue":
                assert snap["vueNode"], f"{at}: the node is not rendered by Nodes 2.0"
            shown = visible_cost(snap, at, caption)
            assert shown == snap["shown"]["text"], at
            expected = expected_cost(snap["values"], snap["linked"])
            check_text(shown, *expected, where=at)
            check_hover(snap, expected, where=at)
            if previous and previous[1][0] != expected[0]:
                assert shown != previous[0], f"{at}: the text did not change"
            previous = (shown, expected)
            if caption:  # the node keeps the width it was created with: the line must fit it
                assert not snap["clipped"], f"{at}: the line is cut off at the default width: {snap}"
        snaps = {}
        for snap in got["ksampler"]["snaps"]:
            snaps.setdefault(snap["label"], snap)  # the first of a repeated label
        # a fresh node says what it needs, whatever the default plan
        assert snaps["defaults"]["shown"]["text"] == NO_WEAK_SIDE, snaps["defaults"]
        assert snaps["reflect_steps=-1"]["shown"]["text"] == NO_WEAK_SIDE, snaps["reflect_steps=-1"]
        assert "weak_model" in snaps["defaults"]["shown"]["detail"], snaps["defaults"]

        # 2) building blocks: the numbers follow the scheduler, the sampler's mode, the MoE pair
        custom = got["custom"]
        check_text(custom["a"][0], run_cost(25, 12, 7.0, 7.0, 1.0), False, where=f"{where}: SamplerCustomAdvanced")
        assert custom["a"][1] == custom["a"][0]
        check_text(custom["b"][0], run_cost(10, 9, 7.0, 7.0, 1.0), False, where=f"{where}: scheduler steps 10")
        # a CFG-only pair in guide mode is plain CFG at 7 + 1 * (7 - 1) = 13: no extra evaluation
        assert custom["g"] == "9 steps at CFG 13 · 10 evals · ×1 time", custom["g"]
        assert custom["e0"] == NO_WEAK_SIDE, custom["e0"]
        check_text(custom["e1"], run_cost(10, 0, 7.0, 7.0, 7.0, guided=9), False, where=f"{where}: W2SD Expert Pair")
        # a plain sampler under the guider runs the default plan (w2sd_core.DEFAULTS) on the MoE pair
        check_text(custom["c"], *default_plan_cost(steps=10, cfg=7.0), where=f"{where}: the default plan")
        for step in custom["advanced"]:
            check_text(
                step["text"],
                *expected_cost(step["values"], ["weak_positive"], advanced=True),
                where=f"{where}: Advanced {step['values']}",
            )
        # end_at_step 10 runs 10 steps; leftover noise keeps its last step reflectable for an explicit λ
        assert [s["text"] for s in custom["advanced"][2:]] == [
            "9 reflections · 28 evals · ×2.8 time",
            "9 reflections · 28 evals · ×2.8 time",
            "5 reflections · 16 evals · ×2.67 time",
            "6 reflections · 18 evals · ×3 time",
            "5 reflections · 16 evals · ×2.67 time",
            "nothing planned · 0 evals · ×1 time",
        ], custom["advanced"]

        # 3) the run: the report shows what the server says the sampler did, until an input changes
        run = got["run"]
        assert run["after"]["report"], f"{where}: no report: {run}"
        if renderer == "vue":
            assert run["after"]["vueNode"], f"{where}: the node is not rendered by Nodes 2.0"
        assert visible_cost(run["after"] | {"text": run["after"]["dom"]}, where, caption) == run["after"]["text"], run
        assert run["after"]["text"].startswith("ran: "), run["after"]
        ran = parse_line(run["after"]["text"])
        reports = [
            out["w2sd"][0] for entry in history.values() for out in entry.get("outputs", {}).values() if "w2sd" in out
        ]
        assert reports, "the server's history holds no W2SD report"
        numbers = reports[-1]
        assert (ran["reflections"], ran["guided"], ran["evaluations"]) == (
            numbers["reflections"],
            numbers["guided"],
            numbers["evaluations"],
        ), (run["after"]["text"], numbers)
        assert numbers["reflections"] == 3 and numbers["evaluations"] == 10, numbers  # 4 steps, weak model
        assert math.isclose(ran["ratio"], numbers["passes"] / numbers["plain_passes"], abs_tol=0.005)
        assert not run["edited"]["report"] and run["edited"]["text"] == run["edited"]["estimate"], run["edited"]
        assert run["before"] != run["after"]["text"]

        # 4) the help page opens in the frontend's node documentation panel and fits it
        for key in ("help", "helpAdvanced"):
            help_page = got[key]
            assert help_page.get("clicked") and help_page.get("shown"), f"{where}: help page not shown: {help_page}"
            assert help_page["panel"], f"{where}: help page not found in the page: {help_page}"
            assert not help_page["wide"] and not help_page["overflow"], f"{where}: wider than the panel: {help_page}"
            assert help_page["tables"] == 0, f"{where}: a table in the help panel: {help_page}"

        # 5) the node search: "W2SD" finds the Reflective KSampler first, the newcomer's words find the pack
        found = {query: [n for n in result.get("names") or [] if n.strip()] for query, result in got["search"].items()}
        assert found["W2SD"], f"{where}: the search box showed nothing: {got['search']}"
        assert names_ksampler(found["W2SD"][0], seen["definitions"]), (
            f"{where}: searching W2SD lists first {found['W2SD'][:3]}"
        )
        if comfyui_version() >= (0, 30, 0):  # io.Schema's search_aliases: the server sends them from 0.30 on
            for query in ("weak to strong", "z-sampling", "autoguidance"):
                assert any(names_ksampler(name, seen["definitions"]) for name in found[query] or []), (
                    f"{where}: searching {query!r} finds {found[query]}"
                )
    assert any("/docs/W2SDReflectiveKSampler" in u for u in seen["requests"]), "the help page was never fetched"

    # 5) the workflows: offered as templates with thumbnails, load with every node type known
    from w2sd_core import DEFAULT_GUIDANCE, DEFAULT_MODE

    mode_defaults = [DEFAULT_MODE, DEFAULT_GUIDANCE]
    assert sorted(templates.get(comfy_support_pack(), [])) == sorted(workflows), templates
    assert thumbs == {name: 200 for name in workflows}, thumbs
    # the template browser lists them in number order (the extension sorts the server's list)
    listed = seen["templates"].get(comfy_support_pack(), [])
    assert listed == sorted(workflows), f"templates out of order: {listed}"
    # 1.27's Nodes 2.0 is a hidden experimental preview (caption_in_nodes2): users see the classic layout
    shown_vue = seen["hasVue"] and caption_in_nodes2(version)
    layouts = {"classic": seen["workflows"]} | ({"vue": seen["workflowsVue"]} if shown_vue else {})
    for renderer, loaded in layouts.items():
        for name, got in loaded.items():
            check_loaded_workflow(
                f"{label}/{renderer}: {name}", workflows[name], got, seen["definitions"], mode_defaults
            )


def check_loaded_workflow(name, data, got, definitions, mode_defaults):
    """One example workflow as the frontend loaded it: every node type known, widget values as
    saved, a cost line on each W2SD sampling node that fits it, no two nodes overlapping and every
    node inside the group it was saved in, as this renderer lays them out."""

    assert not got["missing"], f"{name}: node types missing in the frontend: {got['missing']}"
    assert sorted(n[:2] for n in got["nodes"]) == sorted([n["id"], n["type"]] for n in data["nodes"]), name
    saved = {n[0]: n[2] for n in got["nodes"]}
    for node in data["nodes"]:
        want = node.get("widgets_values") or None
        if want is None:
            continue  # no values in the file (e.g. PreviewAny): the frontend's own display widgets
        if node["type"] in MODE_NODES and len(saved[node["id"]] or []) == len(want) + len(mode_defaults):
            want = want + mode_defaults  # saved before mode/guidance existed: their defaults
        if node["type"] in definitions:  # frontend-only nodes (notes) have no server definition
            want = want + added_defaults(definitions[node["type"]], want, saved[node["id"]] or [])
        assert saved[node["id"]] == want, f"{name}: node {node['id']} ({node['type']}) changed on load"
    shows_cost = {"W2SDReflectiveKSampler", "W2SDReflectiveKSamplerAdvanced", "W2SDSampler", "W2SDGuider"}
    assert len(got["captions"]) == sum(n["type"] in shows_cost for n in data["nodes"]), name
    for caption in got["captions"]:
        text = caption["text"] if caption["attached"] else caption["shown"]["text"]
        assert text and "unavailable" not in text and "connect" not in text and text != NO_WEAK_SIDE, (name, caption)
        assert not caption["clipped"], f"{name}: the cost line is cut off: {caption}"
    boxes = got["boxes"]
    overlaps = [
        (a[:2], b[:2], [round(v) for v in a[2:6]], [round(v) for v in b[2:6]])
        for i, a in enumerate(boxes)
        for b in boxes[i + 1 :]
        if a[2] < b[2] + b[4] and b[2] < a[2] + a[4] and a[3] < b[3] + b[5] and b[3] < a[3] + a[5]
    ]
    assert not overlaps, f"{name}: nodes overlap as laid out in the frontend: {overlaps}"
    by_id = {str(b[0]): b for b in boxes}
    for title, (gx, gy, gw, gh) in got["groups"]:
        members = [n for n in data["nodes"] if gx <= n["pos"][0] < gx + gw and gy <= n["pos"][1] < gy + gh]
        assert members, f"{name}: group {title!r} holds no node"
        for node in members:
            _, _, x, y, w, h, _ = by_id[str(node["id"])]
            # below the group's title bar (and the node's W2SD badge above its title with it)
            assert gx <= x and x + w <= gx + gw and gy + 60 <= y and y + h <= gy + gh, (
                f"{name}: node {node['id']} ({node['type']}) at {[round(v) for v in (x, y, w, h)]} "
                f"is not inside group {title!r} {[gx, gy, gw, gh]}"
            )
    if name.endswith("W2SD 10 - Wan 2.2 video, CFG pair on the high-noise expert"):
        # 20 steps split at 10: the W2SD nodes run the high part, 10 steps (whatever the plan)
        for caption in got["captions"]:
            text = caption["text"] if caption["attached"] else caption["shown"]["text"]
            numbers = parse_line(text)
            assert numbers["evaluations"] - 2 * numbers["reflections"] - numbers["guided"] == 10, f"{name}: {text!r}"


def default_plan_cost(steps, cfg):
    """expected_cost for a sampler running w2sd_core.DEFAULTS with a weak side and no CFG pair."""
    from w2sd_core import DEFAULTS

    values = {
        "steps": steps,
        "cfg": cfg,
        "denoise": 1.0,
        "strong_cfg": -1,
        "weak_cfg": -1,
        "reflect_steps": DEFAULTS.steps,
        "repeats": DEFAULTS.repeats,
        "reflect_end_percent": DEFAULTS.end_percent,
        "mode": DEFAULTS.mode,
        "guidance": DEFAULTS.guidance,
    }
    return expected_cost(values, ["weak_model"])


def check_hover(snap, expected, *, where):
    """The hover (the caption's title) says the same evaluations as the line, 'up to' exactly where
    the line says '≤'."""
    cost, bounded, off, differs = expected
    detail = snap["shown"]["detail"]
    if snap.get("attached"):
        assert snap["title"] == detail, f"{where}: the hover is not the detail: {snap}"
    first = detail.split("\n")[0]
    if not differs or off:
        assert f"{cost.steps} model evaluations" in first, f"{where}: {detail!r}"
        return
    extra = cost.reflections or cost.guided
    up_to = "up to " if bounded and extra else ""
    assert first.endswith(f"{up_to}{cost.evaluations} model evaluations"), f"{where}: {first!r} vs {cost}"
    assert not re.search(r"\b0 (guided|reflections)", first), f"{where}: {first!r}"


def comfy_support_pack():
    import comfy_support

    return comfy_support.ComfyServer.PACK_LINK
