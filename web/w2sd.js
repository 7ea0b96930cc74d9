// ComfyUI frontend extension of the W2SD pack: shows on each W2SD node, live as the graph changes,
// what a run costs, and after a Reflective KSampler run what it really did.
//
// Reflection adds a strong and a weak model evaluation per reflected step, so a W2SD run is
// T + 2λ evaluations instead of T. The line sits in a DOM widget that is never serialised: both
// the classic canvas and the Vue renderer (Nodes 2.0, which skips onDrawForeground) show it, and it
// adds nothing to saved workflows or prompts. No network access: everything comes from the graph.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";
import { DEFAULT_PLAN, describeRun, effectiveSteps, reportText, splitSchedule } from "./w2sd_cost.js";

const EXTENSION = "W2SD.CostDisplay";
// this pack's folder, as the server names it in URLs (/extensions/<pack>/w2sd.js) and templates
const PACK = decodeURIComponent(new URL(import.meta.url).pathname.split("/").slice(-2, -1)[0] ?? "");
const KSAMPLER = "W2SDReflectiveKSampler";
const KSAMPLER_ADVANCED = "W2SDReflectiveKSamplerAdvanced";
const SAMPLER = "W2SDSampler";
const GUIDER = "W2SDGuider";
// Nodes whose MODEL output carries a strong/weak pair, learned from the server's node definitions:
// such a node marks an input `w2sd_pair: { off_when: { widget: [values] } }` (no pair at those values).
const PAIR_NODES = new Map();
const NODES = new Set([KSAMPLER, KSAMPLER_ADVANCED, SAMPLER, GUIDER]);

const classOf = (node) => node?.comfyClass ?? node?.type;

/** Widget values by name (a widget converted to a linked input keeps its last value). */
function widgetValues(node) {
  const values = {};
  for (const w of node?.widgets ?? []) {
    if (w?.name) values[w.name] = w.value;
  }
  return values;
}

/** { node, slot }: the node and output slot feeding input `name`, looking through Reroute nodes. */
function inputOrigin(node, name) {
  let current = node;
  let slot = current?.findInputSlot?.(name) ?? -1;
  for (let hops = 0; hops < 8 && current && slot >= 0; hops++) {
    const origin = current.getInputNode(slot);
    if (!origin) return null;
    if (classOf(origin) !== "Reroute") {
      const link = typeof current.getInputLink === "function" ? current.getInputLink(slot) : null;
      return { node: origin, slot: link?.origin_slot ?? 0 };
    }
    current = origin;
    slot = 0;
  }
  return null;
}

/** { steps, endsAtZero } of the sigmas output `slot` of `node` gives: a scheduler's steps (a node
 *  with a steps widget), cut by SplitSigmas / SplitSigmasDenoise on the way; null where unknown. */
function sigmasSchedule(node, slot, depth = 0) {
  const v = widgetValues(node);
  if (v.steps !== undefined) return { steps: effectiveSteps(v.steps, v.denoise ?? 1.0), endsAtZero: true };
  const kind = classOf(node);
  if (depth > 8 || (kind !== "SplitSigmas" && kind !== "SplitSigmasDenoise")) return null;
  const up = inputOrigin(node, "sigmas");
  const schedule = up && sigmasSchedule(up.node, up.slot, depth + 1);
  return schedule && splitSchedule(kind, schedule, slot, kind === "SplitSigmas" ? v.step : v.denoise);
}

/** The node feeding input `name`, looking through Reroute nodes. */
function inputNode(node, name) {
  return inputOrigin(node, name)?.node ?? null;
}

/** Nodes fed by this node's first output, looking through Reroute nodes. */
function outputNodes(node, depth = 0) {
  const found = [];
  for (const target of node?.getOutputNodes?.(0) ?? []) {
    if (classOf(target) === "Reroute" && depth < 8) found.push(...outputNodes(target, depth + 1));
    else found.push(target);
  }
  return found;
}

/** Whether input `slot` has a link: the frontend's connectivity API, `input.link` only where it lacks one. */
function connected(node, slot) {
  if (slot < 0 || !node?.inputs?.[slot]) return false;
  return typeof node.isInputConnected === "function" ? node.isInputConnected(slot) : node.inputs[slot].link != null;
}

function isLinked(node, name) {
  return connected(node, node?.findInputSlot?.(name) ?? -1);
}

/** The `w2sd_pair` marker of a node definition (on one of its inputs), or null. */
function pairMarker(nodeData) {
  for (const group of ["required", "optional"]) {
    for (const spec of Object.values(nodeData?.input?.[group] ?? {})) {
      const marker = Array.isArray(spec) ? spec[1]?.w2sd_pair : undefined;
      if (marker) return marker;
    }
  }
  return null;
}

/** Whether a pair-building node builds its pair with its current widget values. */
function buildsPair(node) {
  const marker = PAIR_NODES.get(classOf(node));
  if (!marker) return false;
  const values = widgetValues(node);
  return !Object.entries(marker.off_when ?? {}).some(([name, off]) => off.includes(values[name] ?? ""));
}

/** Whether the MODEL reaching `node.model` carries a strong/weak pair: it comes out of a node that
 *  builds one (PAIR_NODES), looking upstream through MODEL-to-MODEL nodes. */
function modelCarriesPair(node) {
  const seen = new Set();
  const todo = [inputNode(node, "model")];
  while (todo.length && seen.size < 64) {
    const current = todo.pop();
    if (!current || seen.has(current.id)) continue;
    seen.add(current.id);
    if (buildsPair(current)) return true;
    (current.inputs ?? []).forEach((input, slot) => {
      if (input.type === "MODEL" && connected(current, slot)) todo.push(current.getInputNode(slot));
    });
  }
  return false;
}

/** Whether something besides the CFG differs between the sides of a sampler/guider node. */
function hasWeakSide(node) {
  return ["weak_model", "weak_positive", "weak_negative"].some((name) => isLinked(node, name))
    || modelCarriesPair(node);
}

function kSamplerCost(node) {
  return describeRun(widgetValues(node), { weakSide: hasWeakSide(node), advanced: classOf(node) === KSAMPLER_ADVANCED });
}

/**
 * W2SD Sampler / W2SD Guider live in a SamplerCustomAdvanced graph: the step count is on the node
 * that makes the sigmas (BasicScheduler, KarrasScheduler…; SplitSigmas and SplitSigmasDenoise
 * on the way keep their part of it), the CFG on the guider, λ on the sampler
 * (a plain sampler under a W2SD Guider runs the default plan: off). SamplerCustom (no guider
 * input) has the CFG itself.
 */
function customCost(node) {
  const consumer = outputNodes(node).find((n) => n.findInputSlot?.("sigmas") >= 0
    && (n.findInputSlot?.("sampler") >= 0 || n.findInputSlot?.("guider") >= 0));
  const sampler = classOf(node) === SAMPLER ? node : consumer && inputNode(consumer, "sampler");
  const guider = classOf(node) === GUIDER ? node
    : consumer && (consumer.findInputSlot("guider") >= 0 ? inputNode(consumer, "guider") : consumer);
  const sigmas = consumer && inputOrigin(consumer, "sigmas");
  const s = classOf(sampler) === SAMPLER ? widgetValues(sampler) : DEFAULT_PLAN;
  const g = widgetValues(guider);
  // A W2SD Guider's own strong/weak CFG wins over the sampler's where both are given (not -1).
  const pick = (key) => (g[key] !== undefined && Number(g[key]) !== -1 ? g[key] : s[key]);
  if (!consumer) return { text: "cost: connect a sampling node", detail: "SamplerCustomAdvanced or SamplerCustom" };
  const schedule = sigmas && sigmasSchedule(sigmas.node, sigmas.slot);
  if (!schedule || g.cfg === undefined) {
    return { text: "cost: connect a scheduler", detail: "a sigmas node with a steps widget (or a split of one), and a guider with a cfg" };
  }
  return describeRun({
    steps: schedule.steps, cfg: g.cfg, strong_cfg: pick("strong_cfg"),
    weak_cfg: pick("weak_cfg"), reflect_steps: s.reflect_steps, repeats: s.repeats,
    reflect_end_percent: s.reflect_end_percent, mode: s.mode, guidance: s.guidance,
  }, { weakSide: hasWeakSide(guider), schedule });
}

/** The estimate a W2SD node shows: { text, detail, cost? }. */
export function nodeCost(node) {
  try {
    return [KSAMPLER, KSAMPLER_ADVANCED].includes(classOf(node)) ? kSamplerCost(node) : customCost(node);
  } catch (error) {
    // A half-built graph (node being created or removed) must never break the page.
    return { text: "cost unavailable", detail: String(error?.message ?? error) };
  }
}

const CAPTION = "w2sd_cost";
const MIN_WIDTH = 300;  // a new node's width: the longest cost line fits it (the browser test measures it)

/** The caption: a DOM widget both renderers show; never serialised, never part of a prompt. */
function addCaption(node) {
  if (typeof node.addDOMWidget !== "function") return null;
  const element = document.createElement("div");
  element.className = "w2sd-cost";
  element.style.cssText = "box-sizing:border-box;width:100%;height:20px;padding:2px 5px;overflow:hidden;"
    + "white-space:nowrap;text-overflow:ellipsis;font:11px/16px Arial,sans-serif;border-radius:4px;"
    + "background:rgba(20,24,32,0.85);color:#cfe3ff;pointer-events:auto";
  const widget = node.addDOMWidget(CAPTION, CAPTION, element, {
    serialize: false, hideOnZoom: false, getValue: () => undefined, setValue: () => {},
    getMinHeight: () => 22, getMaxHeight: () => 22, getHeight: () => 22,
  });
  widget.serialize = false; // LiteGraph's own check when saving widgets_values
  return element;
}

/** Recompute and show the estimate, or the last run's report while the estimate is unchanged. */
function refresh(node) {
  if (!node.graph) return node.w2sdShown;  // not in a graph yet (being created or removed)
  const estimate = nodeCost(node);
  const key = `${estimate.text}\n${estimate.detail}`;
  if (node.w2sdReport && node.w2sdReport.key !== key) node.w2sdReport = null;  // inputs changed
  const shown = node.w2sdReport ?? { text: estimate.text, detail: estimate.detail };
  node.w2sdShown = { text: shown.text, detail: shown.detail, estimate: estimate.text, report: Boolean(node.w2sdReport) };
  const element = node.w2sdElement;
  if (element && (element.textContent !== shown.text || element.title !== shown.detail)) {
    element.textContent = shown.text;
    element.title = shown.detail;
    element.style.color = node.w2sdReport ? "#b8f5c4" : "#cfe3ff";
  }
  return node.w2sdShown;
}

/** The Reflective KSampler's run report (its `w2sd` UI output) replaces the estimate. */
function showReport(node, output) {
  const numbers = output?.w2sd?.[0];
  const text = reportText(numbers) ?? output?.text?.[0];
  if (!text) return;
  const estimate = nodeCost(node);
  node.w2sdReport = { text, detail: `last run: ${output?.text?.[0] ?? text}`, key: `${estimate.text}\n${estimate.detail}` };
  refresh(node);
}

function chain(proto, name, after) {
  const previous = proto[name];
  proto[name] = function (...args) {
    const result = previous?.apply(this, args);
    after.apply(this, args);
    return result;
  };
}

/** The server lists a pack's workflow templates in directory order; the template browser shows them
 *  in that order. Put this pack's in number order ("W2SD 01 - ...", "W2SD 02 - ..."), as the
 *  frontend asks for them; other packs' lists stay as they are. */
function sortTemplates() {
  const original = api?.getWorkflowTemplates;
  if (typeof original !== "function" || original.w2sdSorted) return;
  const sorted = async function (...args) {
    const templates = await original.apply(this, args);
    const ours = templates?.[PACK];
    if (Array.isArray(ours)) templates[PACK] = [...ours].sort((a, b) => String(a).localeCompare(String(b), "en", { numeric: true }));
    return templates;
  };
  sorted.w2sdSorted = true;
  api.getWorkflowTemplates = sorted;
}

app.registerExtension({
  name: EXTENSION,
  init() {
    sortTemplates();
  },
  async beforeRegisterNodeDef(nodeType, nodeData) {
    const marker = pairMarker(nodeData);
    if (marker) PAIR_NODES.set(nodeData.name, marker);
    if (!NODES.has(nodeData?.name)) return;
    const proto = nodeType.prototype;
    proto.w2sdRefresh = function () { return refresh(this); };
    chain(proto, "onNodeCreated", function () {
      this.w2sdElement = addCaption(this);
      // make room for the caption inside the node, wide enough for its line (a loaded workflow's
      // saved size wins later)
      const [w, h] = this.computeSize?.() ?? this.size;
      this.setSize?.([Math.max(this.size[0], w, MIN_WIDTH), Math.max(this.size[1], h)]);
      refresh(this);
    });
    chain(proto, "onConfigure", function () { refresh(this); });
    chain(proto, "onWidgetChanged", function () { refresh(this); });
    chain(proto, "onConnectionsChange", function () { refresh(this); });
    chain(proto, "onExecuted", function (output) { showReport(this, output); });
  },
  setup() {
    // The node help panel can be ~170 px wide (frontend 1.27): long input names in code spans
    // (reflect_end_percent) would stick out of it, so they may wrap there.
    const style = document.createElement("style");
    style.textContent = ".node-help-content code { overflow-wrap: anywhere; }";
    document.head.append(style);
    // Steps and CFG often live on other nodes (scheduler, guider): re-read the graph twice a second.
    // Only text that changed touches the DOM.
    setInterval(() => {
      if (document.hidden) return;
      for (const node of app.canvas?.graph?.nodes ?? app.graph?.nodes ?? []) {
        if (node.w2sdRefresh) node.w2sdRefresh();
      }
    }, 500);
  },
});
