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

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
WEB = ROOT / "web"
COST_JS = WEB / "w2sd_cost.js"
NODE = shutil.which("node")
EXTENSION_NAME = "W2SD.CostDisplay"


def run_node(script: str, *args: str, timeout: float = 60, env=None) -> str:
    proc = subprocess.run([NODE, "--input-type=module", "-e", script, *args], capture_output=True,
                          text=True, timeout=timeout, env=env)
    assert proc.returncode == 0, f"node failed ({proc.returncode}):\n{proc.stderr[-4000:]}"
    return proc.stdout


needs_node = pytest.mark.skipif(NODE is None, reason="node (Node.js) not found: the web extension's "
                                                     "JS tests are skipped")


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


def test_only_extension_code_in_web():
    """ComfyUI serves every .js under web/ as an extension: nothing else may live there."""
    for path in WEB.rglob("*"):
        if path.is_file():
            assert path.suffix == ".js", f"{path} is not extension code"


@needs_node
def test_js_cost_matches_python_on_a_grid():
    from w2sd_core import run_cost
    cases = [(steps, refl, cfg, strong, weak)
             for steps in (0, 1, 2, 8, 16, 20, 25, 30, 50)
             for refl in (0, 1, 7, 12, 49)
             for cfg in (0.0, 1.0, 1.5, 5.5, 8.0)
             for strong in (0.0, 1.0, 7.0)
             for weak in (1.0, 4.5)]
    script = f"""
        import {{ runCost }} from {json.dumps(COST_JS.as_uri())};
        const cases = JSON.parse(process.argv[1]);
        const out = cases.map(([s, r, c, st, w]) => {{
          const x = runCost(s, r, c, st, w);
          return [x.steps, x.reflections, x.evaluations, x.passes, x.plainPasses, x.ratio];
        }});
        console.log(JSON.stringify(out));
    """
    js = json.loads(run_node(script, json.dumps(cases)))
    assert len(js) == len(cases)
    for case, got in zip(cases, js):
        want = run_cost(*case)
        assert got[:5] == [want.steps, want.reflections, want.evaluations, want.passes, want.plain_passes], case
        assert math.isclose(got[5], want.ratio, rel_tol=0, abs_tol=1e-12), case


@needs_node
def test_js_reflection_count_matches_the_plan_on_real_schedules():
    """λ from the widgets (reflect_steps -1 / 0 / n, repeats) vs ReflectionPlan on a schedule of
    that many steps ending at sigma 0; with reflect_end_percent < 1 the page shows an upper bound."""
    import torch
    from w2sd_core import ReflectionPlan
    cases = [(steps, lam, rep) for steps in (1, 2, 3, 10, 20, 25, 50)
             for lam in (-1, 0, 1, 5, 12, 24, 49, 80) for rep in (1, 2, 3)]
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


# ================================================================ browser tier

def chromium_path() -> str | None:
    path = os.environ.get("W2SD_CHROMIUM", "/usr/bin/chromium")
    return path if os.access(path, os.X_OK) else None


def playwright_dir() -> pathlib.Path | None:
    candidates = [os.environ.get("W2SD_WEB_DEPS"), str(pathlib.Path.home() / ".cache" / "comfyui-w2sd-web"),
                  str(ROOT / "tests" / "web")]
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
        return ("chromium not found (apt-get install chromium, or set W2SD_CHROMIUM): browser test "
                "of the web extension skipped")
    if playwright_dir() is None:
        return ("playwright-core not found (npm install playwright-core into ~/.cache/comfyui-w2sd-web "
                "or $W2SD_WEB_DEPS): browser test of the web extension skipped")
    try:
        import comfyui_frontend_package  # noqa: F401
    except ImportError:
        return "comfyui-frontend-package is not installed: ComfyUI cannot serve its frontend"
    if not hasattr(comfy_support, "ComfyServer"):
        return "tests/comfy_support.py has no ComfyServer"
    return None


# The browser side: drives ComfyUI's frontend and reports what it saw as JSON on stdout.
DRIVER = r"""
const { chromium } = require('playwright-core');
const fs = require('fs');
const [url, chromiumPath, workflowsJson, extName, shotDir] = process.argv.slice(2);
const out = { requests: [], errors: [], console: [] };

(async () => {
  const browser = await chromium.launch({
    executablePath: chromiumPath, headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
           '--disable-background-networking', '--disable-component-update', '--disable-sync',
           '--disable-dev-shm-usage'],
  });
  try {
    const context = await browser.newContext({ viewport: { width: 1280, height: 860 } });
    const page = await context.newPage();
    page.on('request', (r) => out.requests.push(r.url()));
    page.on('pageerror', (e) => out.errors.push(String(e.stack || e.message)));
    page.on('console', (m) => { if (m.type() === 'error') out.console.push(m.text()); });
    await page.goto(url, { waitUntil: 'domcontentloaded', timeout: 30000 });
    await page.waitForFunction(() => window.app?.graph && window.app?.canvas && window.LiteGraph
      && window.LiteGraph.registered_node_types?.W2SDReflectiveKSampler, null, { timeout: 40000 });
    await page.waitForFunction((name) => window.app.extensions?.some((e) => e.name === name), extName,
      { timeout: 10000 }).catch(() => {});

    out.extensions = await page.evaluate(() => app.extensions.map((e) => e.name));

    // Collect the caption the node really draws: record fillText calls during a full redraw.
    await page.evaluate(() => {
      const orig = CanvasRenderingContext2D.prototype.fillText;
      window.__w2sdDrawn = [];
      CanvasRenderingContext2D.prototype.fillText = function (text, ...rest) {
        if (typeof text === 'string' && (text.startsWith('W2SD: ') || /vs plain KSampler/.test(text))) {
          window.__w2sdDrawn.push(text);
        }
        return orig.call(this, text, ...rest);
      };
    });

    // 1) A W2SD Reflective KSampler, made and edited the way the UI does it.
    out.ksampler = await page.evaluate(async () => {
      app.graph.clear();
      const node = LiteGraph.createNode('W2SDReflectiveKSampler');
      node.pos = [60, 60];
      app.graph.add(node);
      const widget = (name) => node.widgets.find((w) => w.name === name);
      const values = () => Object.fromEntries(node.widgets.map((w) => [w.name, w.value]));
      const linked = () => node.inputs.filter((i) => i.link != null).map((i) => i.name);
      const drawn = () => {
        window.__w2sdDrawn = [];
        app.canvas.setDirty(true, true);
        app.canvas.draw(true, true);
        return window.__w2sdDrawn.slice();
      };
      const snap = (label) => {
        const seen = drawn();  // a full redraw: onDrawForeground computes and draws the caption
        return { label, values: values(), linked: linked(), lines: node.w2sdCostInfo?.lines ?? null, drawn: seen };
      };
      // setValue is what the canvas calls for drags, arrows and typed values: it runs the widget
      // callback and node.onWidgetChanged.
      const set = (name, value) => widget(name).setValue(value, { e: undefined, node, canvas: app.canvas });
      const steps = [snap('defaults')];
      const edits = [['weak_cfg', 1.0], ['steps', 30], ['reflect_steps', 12], ['repeats', 2],
                     ['reflect_end_percent', 1.0], ['reflect_end_percent', 0.5], ['strong_cfg', 1.0],
                     ['strong_cfg', -1.0], ['reflect_steps', 0], ['reflect_steps', -1],
                     ['reflect_end_percent', 0.0], ['steps', 25], ['denoise', 0.0]];
      for (const [name, value] of edits) {
        node.w2sdCostInfo = null;
        set(name, value);
        const afterCallback = node.w2sdCostInfo?.lines ?? null;  // before any redraw
        steps.push({ ...snap(`${name}=${value}`), afterCallback });
      }
      set('denoise', 1.0);
      set('reflect_end_percent', 1.0);
      set('repeats', 1);
      set('reflect_steps', 12);
      set('weak_cfg', -1.0);
      steps.push(snap('equal CFG, nothing linked'));
      // a weak prompt makes a weak side at equal CFG
      const text = LiteGraph.createNode('CLIPTextEncode');
      text.pos = [600, 300];
      app.graph.add(text);
      text.connect(0, node, node.findInputSlot('weak_positive'));
      steps.push(snap('weak_positive linked'));
      app.graph.remove(text);
      steps.push(snap('weak_positive unlinked'));
      set('cfg', 5.5);
      set('weak_cfg', 1.0);
      steps.push(snap('for the screenshot'));
      app.canvas.ds.scale = 1.4;
      app.canvas.ds.offset = [-20, -10];
      app.canvas.setDirty(true, true);
      app.canvas.draw(true, true);
      return steps;
    });
    await page.waitForTimeout(300);
    await page.screenshot({ path: `${shotDir}/w2sd_frontend_node.png` });

    // 2) SamplerCustomAdvanced with W2SD Guider + W2SD Sampler: T from the scheduler.
    out.custom = await page.evaluate(() => {
      app.graph.clear();
      const make = (type, x, y) => { const n = LiteGraph.createNode(type); n.pos = [x, y]; app.graph.add(n); return n; };
      const guider = make('W2SDGuider', 40, 40);
      const select = make('KSamplerSelect', 40, 330);
      const sampler = make('W2SDSampler', 340, 330);
      const sched = make('BasicScheduler', 40, 460);
      const noise = make('RandomNoise', 40, 620);
      const sca = make('SamplerCustomAdvanced', 700, 40);
      const link = (a, out, b, inp) => a.connect(a.findOutputSlot(out), b, b.findInputSlot(inp));
      link(select, 'SAMPLER', sampler, 'sampler');
      link(guider, 'GUIDER', sca, 'guider');
      link(sampler, 'SAMPLER', sca, 'sampler');
      link(sched, 'SIGMAS', sca, 'sigmas');
      link(noise, 'NOISE', sca, 'noise');
      const set = (node, name, value) => node.widgets.find((w) => w.name === name)
        .setValue(value, { e: undefined, node, canvas: app.canvas });
      set(guider, 'cfg', 7.0);
      set(guider, 'weak_cfg', 1.0);
      set(sampler, 'reflect_steps', 12);
      set(sampler, 'reflect_end_percent', 1.0);  // exact counts: no model-dependent window
      set(sched, 'steps', 25);
      const a = { sampler: sampler.w2sdCost().lines, guider: guider.w2sdCost().lines };
      set(sched, 'steps', 10);  // a change on another node shows up on the W2SD nodes
      const b = { sampler: sampler.w2sdCost().lines, guider: guider.w2sdCost().lines };
      set(sampler, 'weak_cfg', 4.0);  // the guider's own weak_cfg (1.0) wins
      const c = { sampler: sampler.w2sdCost().lines };
      // SamplerCustom: CFG and model on the sampling node itself, the CFG pair on the W2SD Sampler
      app.graph.clear();
      const sampler2 = make('W2SDSampler', 340, 330);
      const select2 = make('KSamplerSelect', 40, 330);
      const sched2 = make('BasicScheduler', 40, 460);
      const custom = make('SamplerCustom', 700, 40);
      link(select2, 'SAMPLER', sampler2, 'sampler');
      link(sampler2, 'SAMPLER', custom, 'sampler');
      link(sched2, 'SIGMAS', custom, 'sigmas');
      set(custom, 'cfg', 6.0);
      set(sched2, 'steps', 12);
      set(sampler2, 'reflect_steps', 5);
      set(sampler2, 'reflect_end_percent', 1.0);
      const d = { plain: sampler2.w2sdCost().lines };
      set(sampler2, 'weak_cfg', 1.0);
      d.pair = sampler2.w2sdCost().lines;
      return { a, b, c, d };
    });

    // 3) Every example workflow loads into the frontend unchanged.
    const workflows = JSON.parse(fs.readFileSync(workflowsJson, 'utf8'));
    out.workflows = {};
    for (const [name, data] of Object.entries(workflows)) {
      out.workflows[name] = await page.evaluate(async (data) => {
        await app.loadGraphData(data, true, true, null,
          { showMissingNodesDialog: false, showMissingModelsDialog: false });
        const saved = app.graph.serialize();
        const missing = data.nodes.filter((n) => !(n.type in LiteGraph.registered_node_types)).map((n) => n.type);
        const costs = app.graph.nodes.filter((n) => n.w2sdCost).map((n) => [n.id, n.type, n.w2sdCost().lines,
          Object.fromEntries(n.widgets.map((w) => [w.name, w.value]))]);
        const toasts = [...document.querySelectorAll('.p-toast-message')].map((e) => e.innerText);
        return { missing, toasts, costs,
                 nodes: saved.nodes.map((n) => [n.id, n.type, n.widgets_values?.length ? n.widgets_values : null]),
                 links: saved.links.map((l) => Array.isArray(l) ? l.slice(0, 6)
                   : [l.id, l.origin_id, l.origin_slot, l.target_id, l.target_slot, l.type]) };
      }, data);
      if (name.includes('equal_compute')) {
        await page.waitForTimeout(300);
        await page.screenshot({ path: `${shotDir}/w2sd_frontend_ab_workflow.png` });
      }
    }
  } finally {
    await browser.close();
  }
  console.log(JSON.stringify(out));
})().catch((e) => { console.error(e && e.stack || e); process.exit(1); });
"""

COST_LINE_1 = re.compile(r"^W2SD: (≤ )?(\d+) model evaluations \((\d+) \+ 2·(≤)?(\d+)(?:×(\d+))?\)$")
COST_LINE_1_OFF = re.compile(r"^W2SD: (\d+) model evaluations \((no reflection|no weak side: plain sampling)\)$")
COST_LINE_2 = re.compile(r"^(≤ )?×(\d+\.\d\d) vs plain KSampler \((≤ )?(\d+) vs (\d+) passes(; (weak|strong) at CFG 1 costs half)?\)$")


WEAK_INPUTS = ("weak_model", "weak_positive", "weak_negative")


def expected_cost(values: dict, linked=()):
    """What the pack's samplers run for a Reflective KSampler with these widget values: no weak side
    (nothing linked to the weak inputs and equal strong/weak CFG) = no reflection; else the count
    from ReflectionPlan on a schedule of that many steps (reflect_end_percent 0 = none); the passes
    from w2sd_core.run_cost. Returns (cost, whether the page can only bound the count)."""
    import torch
    from w2sd_core import ReflectionPlan, run_cost
    steps = 0 if values["denoise"] <= 0 else values["steps"]
    cfg = values["cfg"]
    strong = cfg if values["strong_cfg"] == -1 else values["strong_cfg"]
    weak = cfg if values["weak_cfg"] == -1 else values["weak_cfg"]
    differs = any(name in linked for name in WEAK_INPUTS) or strong != weak
    reflections = 0
    if steps and differs and values["reflect_end_percent"] > 0:
        sigmas = torch.cat([torch.linspace(14.6, 0.03, steps), torch.zeros(1)])
        plan = ReflectionPlan(steps=values["reflect_steps"], repeats=values["repeats"])
        reflections = len(plan.reflected_steps(sigmas)) * values["repeats"]
    return run_cost(steps, reflections, cfg, strong, weak), values["reflect_end_percent"] < 1 and reflections > 0


def check_lines(lines, cost, bounded, where):
    assert lines and len(lines) == 2, f"{where}: no cost text ({lines})"
    if cost.reflections == 0:
        m = COST_LINE_1_OFF.match(lines[0])
        assert m and int(m.group(1)) == cost.evaluations, f"{where}: {lines[0]!r} vs {cost}"
    else:
        m = COST_LINE_1.match(lines[0])
        assert m, f"{where}: unexpected text {lines[0]!r}"
        repeats = int(m.group(6) or 1)
        assert int(m.group(2)) == cost.evaluations, f"{where}: {lines[0]!r} vs {cost}"
        assert int(m.group(3)) == cost.steps and int(m.group(5)) * repeats == cost.reflections, where
        assert bool(m.group(1)) == bounded == bool(m.group(4)), f"{where}: '≤' shown wrongly: {lines[0]!r}"
    m = COST_LINE_2.match(lines[1])
    assert m, f"{where}: unexpected text {lines[1]!r}"
    assert m.group(2) == f"{cost.ratio:.2f}", f"{where}: ratio {m.group(2)} vs {cost.ratio:.2f}"
    assert int(m.group(4)) == cost.passes and int(m.group(5)) == cost.plain_passes, f"{where}: {lines[1]!r}"


@pytest.mark.comfyui
def test_frontend_extension_in_a_real_browser(tmp_path):
    reason = browser_missing_reason()
    if reason:
        pytest.skip(reason)
    import comfy_support
    workflows = {p.stem: json.loads(p.read_text(encoding="utf-8"))
                 for p in sorted((ROOT / "workflows").glob("*.json"))}
    (tmp_path / "workflows.json").write_text(json.dumps(workflows), encoding="utf-8")
    driver = tmp_path / "driver.cjs"
    driver.write_text(DRIVER, encoding="utf-8")
    shots = pathlib.Path(os.environ.get("W2SD_SCREENSHOT_DIR", "/tmp"))
    env = dict(os.environ, NODE_PATH=str(playwright_dir()))
    settings = tmp_path / "comfy" / "user" / "default" / "comfy.settings.json"
    settings.parent.mkdir(parents=True)
    # a returning user: no first-run template browser over the canvas (it would cover the screenshots)
    settings.write_text(json.dumps({"Comfy.TutorialCompleted": True}), encoding="utf-8")
    with comfy_support.ComfyServer(tmp_path / "comfy") as server:
        proc = subprocess.run([NODE, str(driver), server.url("/"), chromium_path(),
                               str(tmp_path / "workflows.json"), EXTENSION_NAME, str(shots)],
                              capture_output=True, text=True, timeout=120, env=env)
        assert proc.returncode == 0, f"browser driver failed:\n{proc.stderr[-4000:]}\n{server.log_tail(2000)}"
        # ComfyUI lists a pack's workflows/ folder in its template browser
        templates = server.get_json("/api/workflow_templates")
    seen = json.loads(proc.stdout.strip().splitlines()[-1])

    # the extension file was served and registered
    pack_js = [u for u in seen["requests"] if u.endswith("/w2sd.js")]
    assert pack_js and "/extensions/" in pack_js[0], "the frontend never requested web/w2sd.js"
    assert EXTENSION_NAME in seen["extensions"], seen["extensions"]
    ours = [e for e in seen["errors"] + seen["console"] if "w2sd" in e.lower()]
    assert not ours, f"errors from the extension in the page: {ours}"
    # ... and made no requests of its own beyond its module files
    w2sd_requests = {u.rsplit("/", 1)[-1] for u in seen["requests"] if "w2sd" in u.lower()}
    assert w2sd_requests <= {"w2sd.js", "w2sd_cost.js"}, w2sd_requests

    # 1) the Reflective KSampler's caption, after every edit, drawn on the canvas
    snaps = seen["ksampler"]
    assert snaps[0]["values"]["reflect_steps"] == -1 and snaps[0]["values"]["steps"] == 20
    expected_edits = ["defaults", "weak_cfg=1", "steps=30", "reflect_steps=12", "repeats=2",
                      "reflect_end_percent=1", "reflect_end_percent=0.5", "strong_cfg=1", "strong_cfg=-1",
                      "reflect_steps=0", "reflect_steps=-1", "reflect_end_percent=0", "steps=25", "denoise=0",
                      "equal CFG, nothing linked", "weak_positive linked", "weak_positive unlinked",
                      "for the screenshot"]
    assert [s["label"] for s in snaps] == expected_edits
    previous = None
    for snap in snaps:
        cost, bounded = expected_cost(snap["values"], snap["linked"])
        where = f"after {snap['label']} ({snap['values']}, linked {snap['linked']})"
        check_lines(snap["lines"], cost, bounded, where)
        assert snap["drawn"] == snap["lines"], f"{where}: drew {snap['drawn']}, computed {snap['lines']}"
        if "afterCallback" in snap:
            # the widget change callback alone (before any redraw) already updated the numbers
            assert snap["afterCallback"] == snap["lines"], where
        assert snap["lines"] != previous, f"{where}: the text did not change"
        previous = snap["lines"]
    by_label = {s["label"]: s for s in snaps}
    plain = "(no weak side: plain sampling)"
    assert by_label["defaults"]["lines"][0].endswith(plain), "a bare node has nothing to reflect with"
    assert by_label["strong_cfg=1"]["lines"][0].endswith(plain)
    assert by_label["equal CFG, nothing linked"]["lines"][0].endswith(plain)
    assert by_label["weak_positive linked"]["lines"][0] == "W2SD: 49 model evaluations (25 + 2·12)"
    assert "weak at CFG 1 costs half" in by_label["weak_cfg=1"]["lines"][1]
    assert "≤" in by_label["reflect_end_percent=0.5"]["lines"][0]
    assert by_label["reflect_steps=0"]["lines"][0].endswith("(no reflection)")
    assert by_label["reflect_end_percent=0"]["lines"][0].endswith("(no reflection)")
    assert by_label["for the screenshot"]["lines"] == [
        "W2SD: 49 model evaluations (25 + 2·12)", "×1.72 vs plain KSampler (86 vs 50 passes; weak at CFG 1 costs half)"]

    # 2) building blocks: T comes from BasicScheduler, CFG from the guider
    custom = seen["custom"]
    from w2sd_core import run_cost
    check_lines(custom["a"]["sampler"], run_cost(25, 12, 7.0, 7.0, 1.0), False, "SamplerCustomAdvanced, 25 steps")
    assert custom["a"]["guider"] == custom["a"]["sampler"]
    check_lines(custom["b"]["sampler"], run_cost(10, 9, 7.0, 7.0, 1.0), False, "scheduler steps -> 10")
    assert custom["c"]["sampler"] == custom["b"]["sampler"], "the guider's weak_cfg must win"
    check_lines(custom["d"]["plain"], run_cost(12, 0, 6.0, 6.0, 6.0), False, "SamplerCustom, no weak side")
    assert custom["d"]["plain"][0].endswith("(no weak side: plain sampling)")
    check_lines(custom["d"]["pair"], run_cost(12, 5, 6.0, 6.0, 1.0), False, "SamplerCustom, CFG pair")

    # 3) the example workflows are offered as templates and load unchanged, with nothing missing
    assert sorted(templates.get(comfy_support.ComfyServer.PACK_LINK, [])) == sorted(workflows), templates
    assert set(seen["workflows"]) == set(workflows)
    for name, got in seen["workflows"].items():
        data = workflows[name]
        assert not got["missing"], f"{name}: node types missing in the frontend: {got['missing']}"
        assert not [t for t in got["toasts"] if "alidation" in t or "Fixed" in t], f"{name}: {got['toasts']}"
        want_nodes = [[n["id"], n["type"], n.get("widgets_values") or None] for n in data["nodes"]]
        assert sorted(got["nodes"], key=lambda n: n[0]) == sorted(want_nodes, key=lambda n: n[0]), name
        assert sorted(got["links"]) == sorted(link[:6] for link in data["links"]), name
        shows_cost = {"W2SDReflectiveKSampler", "W2SDSampler", "W2SDGuider"}
        assert len(got["costs"]) == sum(n["type"] in shows_cost for n in data["nodes"]), name
        for node_id, node_type, lines, values in got["costs"]:
            assert lines and not lines[0].startswith("W2SD: cost unavailable"), (name, node_type, lines)
            if node_type == "W2SDReflectiveKSampler":
                # every example workflow gives the sampler a weak side of some kind
                check_lines(lines, *expected_cost(values, WEAK_INPUTS), f"{name}, node {node_id}")
            else:
                assert re.match(r"^W2SD: \d+ model evaluations \(\d+ \+ 2·\d+\)$", lines[0]), (name, lines)
