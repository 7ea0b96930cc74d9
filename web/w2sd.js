// ComfyUI frontend extension of the W2SD pack: shows, live as widgets change, what a run costs.
//
// Reflection adds a strong and a weak model evaluation per reflected step, so a W2SD run is
// T + 2λ evaluations instead of T. The W2SD nodes show that count, and the ratio of model passes to
// a plain run (a pass at CFG 1 is half an evaluation at CFG != 1), in a caption drawn under the
// node. The caption is drawn, not a widget: it adds nothing to saved workflows or prompts.
// No network access: everything is computed from widget values and the graph's links.
import { app } from "../../scripts/app.js";
import { describeRun, passesPerEvaluation, resolveCfg } from "./w2sd_cost.js";

const EXTENSION = "W2SD.CostDisplay";
const KSAMPLER = "W2SDReflectiveKSampler";
const SAMPLER = "W2SDSampler";
const GUIDER = "W2SDGuider";
const BUILDER = "W2SDWeakModelBuilder";
const NODES = new Set([KSAMPLER, SAMPLER, GUIDER]);

const classOf = (node) => node?.comfyClass ?? node?.type;

/** Widget values by name (a widget converted to a linked input keeps its last value). */
function widgetValues(node) {
  const values = {};
  for (const w of node?.widgets ?? []) {
    if (w?.name) values[w.name] = w.value;
  }
  return values;
}

/** The node feeding input `name`, looking through Reroute nodes. */
function inputNode(node, name) {
  let current = node;
  let slot = current?.findInputSlot?.(name) ?? -1;
  for (let hops = 0; hops < 8 && current && slot >= 0; hops++) {
    const origin = current.getInputNode(slot);
    if (!origin || classOf(origin) !== "Reroute") return origin;
    current = origin;
    slot = 0;
  }
  return null;
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

function isLinked(node, name) {
  const slot = node?.findInputSlot?.(name) ?? -1;
  return slot >= 0 && node.inputs[slot]?.link != null;
}

/** Whether the MODEL reaching `node.model` comes out of a W2SD Weak Model Builder in LoRA mode (its
 *  model then carries the strong/weak pair), looking upstream through any MODEL-to-MODEL nodes. */
function modelCarriesPair(node) {
  const seen = new Set();
  const todo = [inputNode(node, "model")];
  while (todo.length && seen.size < 64) {
    const current = todo.pop();
    if (!current || seen.has(current.id)) continue;
    seen.add(current.id);
    if (classOf(current) === BUILDER) {
      const lora = widgetValues(current).lora_name;
      if (lora && lora !== "None") return true;
    }
    for (const input of current.inputs ?? []) {
      if (input.type === "MODEL" && input.link != null) todo.push(current.getInputNode(current.inputs.indexOf(input)));
    }
  }
  return false;
}

/** Whether something besides the CFG differs between the sides of a sampler/guider node. */
function hasWeakSide(node) {
  return ["weak_model", "weak_positive", "weak_negative"].some((name) => isLinked(node, name))
    || modelCarriesPair(node);
}

function kSamplerCost(node) {
  return describeRun(widgetValues(node), { weakSide: hasWeakSide(node) });
}

/**
 * W2SD Sampler / W2SD Guider live in a SamplerCustomAdvanced graph: the step count is on the node
 * that makes the sigmas (BasicScheduler, KarrasScheduler…), the CFG on the guider, λ on the sampler.
 * Follow the links to SamplerCustomAdvanced and read what is there. SamplerCustom (no guider input)
 * has the CFG and the model itself.
 */
function customCost(node) {
  const consumer = outputNodes(node).find((n) => n.findInputSlot?.("sigmas") >= 0
    && (n.findInputSlot?.("sampler") >= 0 || n.findInputSlot?.("guider") >= 0));
  const sampler = classOf(node) === SAMPLER ? node : consumer && inputNode(consumer, "sampler");
  const guider = classOf(node) === GUIDER ? node
    : consumer && (consumer.findInputSlot("guider") >= 0 ? inputNode(consumer, "guider") : consumer);
  const sigmas = consumer && inputNode(consumer, "sigmas");

  const s = classOf(sampler) === SAMPLER ? widgetValues(sampler) : null;
  if (!s) {
    return { lines: ["W2SD Guider: reflects only with a W2SD Sampler", "(SamplerCustomAdvanced's sampler input)"] };
  }
  const g = widgetValues(guider);
  const hasCfg = guider && g.cfg !== undefined;
  const cfg = hasCfg ? Number(g.cfg) : undefined;
  // A W2SD Guider's own strong/weak CFG wins over the sampler's where both are given (not -1).
  const pick = (key) => (g[key] !== undefined && Number(g[key]) !== -1 ? g[key] : s[key]);
  const sv = sigmas ? widgetValues(sigmas) : {};
  const steps = sv.steps;

  if (steps !== undefined && hasCfg) {
    return describeRun({
      steps, denoise: sv.denoise ?? 1.0, cfg, strong_cfg: pick("strong_cfg"), weak_cfg: pick("weak_cfg"),
      reflect_steps: s.reflect_steps, repeats: s.repeats, reflect_end_percent: s.reflect_end_percent,
    }, { weakSide: hasWeakSide(guider) });
  }
  // Unknown schedule length or CFG: say what each reflection costs instead.
  const repeats = Math.max(1, Math.trunc(Number(s.repeats ?? 1)) || 1);
  const lambda = Number(s.reflect_steps ?? -1);
  const lambdaText = lambda === -1 ? "T − 1" : String(lambda);
  const bounded = Number(s.reflect_end_percent ?? 1) < 1 ? "≤ " : "";
  const head = `W2SD: T + 2·${bounded}${lambdaText}${repeats > 1 ? `×${repeats}` : ""} model evaluations`;
  if (!hasCfg) return { lines: [head, "(connect a scheduler and a CFG guider for the totals)"] };
  const strong = passesPerEvaluation(resolveCfg(pick("strong_cfg"), cfg));
  const weak = passesPerEvaluation(resolveCfg(pick("weak_cfg"), cfg));
  return { lines: [head, `each reflection: ${strong} + ${weak} passes (a plain step: ${passesPerEvaluation(cfg)})`] };
}

/** The cost a W2SD node shows: { lines: [string, string], cost?, lambda?, bounded? }. */
export function nodeCost(node) {
  try {
    return classOf(node) === KSAMPLER ? kSamplerCost(node) : customCost(node);
  } catch (error) {
    // A half-built graph (node being created or removed) must never break canvas drawing.
    return { lines: ["W2SD: cost unavailable", String(error?.message ?? error)] };
  }
}

const FONT_SIZE = 12;
const LINE = 15;
const PAD = 5;

function drawCaption(node, ctx, lines) {
  ctx.save();
  ctx.font = `${FONT_SIZE}px Arial, sans-serif`;
  const width = Math.max(...lines.map((l) => ctx.measureText(l).width)) + 2 * PAD;
  const height = lines.length * LINE + PAD;
  const y = node.size[1] + 6;
  ctx.fillStyle = "rgba(20, 24, 32, 0.85)";
  ctx.beginPath();
  if (ctx.roundRect) ctx.roundRect(0, y, width, height, 4);
  else ctx.rect(0, y, width, height);
  ctx.fill();
  ctx.fillStyle = "#cfe3ff";
  ctx.textAlign = "left";
  ctx.textBaseline = "alphabetic";
  lines.forEach((line, i) => ctx.fillText(line, PAD, y + (i + 1) * LINE - 2));
  ctx.restore();
}

app.registerExtension({
  name: EXTENSION,
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (!NODES.has(nodeData?.name)) return;

    // Recomputed on every draw, so changes elsewhere in the graph (a scheduler's steps, a guider's
    // CFG) show up too; the arithmetic is a handful of operations.
    nodeType.prototype.w2sdCost = function () {
      this.w2sdCostInfo = nodeCost(this);
      return this.w2sdCostInfo;
    };

    const onDrawForeground = nodeType.prototype.onDrawForeground;
    nodeType.prototype.onDrawForeground = function (ctx) {
      const result = onDrawForeground?.apply(this, arguments);
      if (!this.flags?.collapsed) drawCaption(this, ctx, this.w2sdCost().lines);
      return result;
    };

    // Widget edits (typing, dragging, arrows) repaint at once with the new numbers.
    const onWidgetChanged = nodeType.prototype.onWidgetChanged;
    nodeType.prototype.onWidgetChanged = function () {
      const result = onWidgetChanged?.apply(this, arguments);
      this.w2sdCost();
      this.setDirtyCanvas?.(true, false);
      return result;
    };

    const onConnectionsChange = nodeType.prototype.onConnectionsChange;
    nodeType.prototype.onConnectionsChange = function () {
      const result = onConnectionsChange?.apply(this, arguments);
      this.setDirtyCanvas?.(true, false);
      return result;
    };
  },
});
