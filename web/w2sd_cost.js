// W2SD run cost: a plain ES module (no DOM, no ComfyUI) with the arithmetic of w2sd_core/cost.py,
// the reflection count a node's widget values imply, and the short text the nodes show.
//
// A model "pass" is one UNet/DiT forward over one batch of latents. A guided evaluation at
// CFG != 1 is two passes (cond and uncond); ComfyUI skips the uncond pass at CFG 1, so such an
// evaluation is one pass.

/** The nodes' defaults (w2sd_core DEFAULTS; tests/test_web_frontend.py checks the mirror), also the plan of a W2SD Guider over a plain sampler. */
export const DEFAULT_PLAN = Object.freeze({
  reflect_steps: -1, reflect_end_percent: 1.0, repeats: 1, mode: "guide", guidance: 0.25,
});

/** w2sd_core.guidance: which modes reflect, which guide. */
export const reflects = (mode) => String(mode ?? DEFAULT_PLAN.mode).split("+").includes("reflect");
export const guides = (mode) => String(mode ?? DEFAULT_PLAN.mode).split("+").includes("guide");

/** Passes per model evaluation at this CFG: 1 at cfg == 1 (ComfyUI skips the uncond), else 2. */
export function passesPerEvaluation(cfg) {
  return Number(cfg) === 1 ? 1 : 2;
}

/** What a run costs (w2sd_core.run_cost): cfg is the sampling CFG, strongCfg / weakCfg resolved;
 *  `guided` sampler evaluations each evaluate the strong and the weak side instead of the plain one. */
export function runCost(steps, reflections, cfg, strongCfg, weakCfg, guided = 0) {
  const plainPasses = steps * passesPerEvaluation(cfg);
  const pair = passesPerEvaluation(strongCfg) + passesPerEvaluation(weakCfg);
  const passes = plainPasses + reflections * pair + guided * (pair - passesPerEvaluation(cfg));
  return Object.freeze({
    steps, reflections, guided, evaluations: steps + 2 * reflections + guided, passes, plainPasses,
    ratio: plainPasses ? passes / plainPasses : 1.0,
  });
}

/** The nodes' "-1 = same as cfg" rule for strong_cfg / weak_cfg. */
export function resolveCfg(value, cfg) {
  return value === undefined || value === null || Number(value) === -1 ? Number(cfg) : Number(value);
}

/**
 * Reflected steps a W2SD node's widgets imply on a schedule of `steps` steps ending at sigma 0
 * (ReflectionPlan.reflected_steps): λ = reflectSteps (-1: every step but the last, 0: off), at most
 * steps - 1, times `repeats`. 0 < reflect_end_percent < 1 stops at a sigma that depends on the
 * model's schedule, which the page does not know: the count is then an upper bound (`bounded`).
 */
export function estimateReflections({ steps, reflectSteps = -1, repeats = 1, reflectEndPercent = 1.0, endsAtZero = true }) {
  const n = Math.max(0, Math.trunc(Number(steps)) || 0);
  const requested = Math.trunc(Number(reflectSteps));
  // a step landing on sigma 0 is never reflected; a schedule cut with leftover noise has no such step
  let lambda = requested === -1 ? n - 1 : Math.min(requested, endsAtZero ? n - 1 : n);
  lambda = Number(reflectEndPercent) <= 0 ? 0 : Math.max(0, lambda || 0);
  const r = Math.max(1, Math.trunc(Number(repeats)) || 1);
  return { lambda, reflections: lambda * r, bounded: lambda > 0 && Number(reflectEndPercent) < 1 };
}

/** Steps a KSampler-style node runs: `steps`, or none at denoise 0 (ComfyUI then samples nothing). */
export function effectiveSteps(steps, denoise = 1.0) {
  const n = Math.max(0, Math.trunc(Number(steps)) || 0);
  return Number(denoise) <= 0 ? 0 : n;
}

/**
 * Steps KSampler (Advanced) runs, as nodes/ksampler.py schedule() cuts the steps + 1 sigmas:
 * { steps, endsAtZero } (the cut keeps sigma 0 at the end unless leftover noise is returned).
 */
export function advancedSteps(steps, startAt = 0, endAt = 10000, leftoverNoise = "disable") {
  const n = Math.max(0, Math.trunc(Number(steps)) || 0);
  const cut = Number(endAt) < n;
  const last = cut ? Math.max(0, Math.trunc(Number(endAt))) : n;
  const start = Math.max(0, Math.trunc(Number(startAt)) || 0);
  const run = start < last ? last - start : 0;
  return { steps: run, endsAtZero: !cut || leftoverNoise !== "enable" };
}

/** Python's round(): halves go to the even neighbour. */
function pyRound(x) {
  const f = Math.floor(x);
  const d = x - f;
  return d > 0.5 || (d === 0.5 && f % 2 !== 0) ? f + 1 : f;
}

/**
 * The part of a schedule a sigma-splitting node passes on, sliced as ComfyUI does:
 * `schedule` { steps, endsAtZero } in, that of output `slot` out, or null for another node.
 * SplitSigmas (`value` = step): sigmas[:step + 1] (slot 0), sigmas[step:] (slot 1);
 * SplitSigmasDenoise (`value` = denoise, t = round(steps · denoise)): sigmas[:-t] (0), sigmas[-(t + 1):] (1).
 */
export function splitSchedule(kind, schedule, slot, value) {
  const length = Math.max(0, Math.trunc(Number(schedule.steps)) || 0) + 1;
  let start = 0;
  let end = length;
  if (kind === "SplitSigmas") {
    const k = Math.max(0, Math.trunc(Number(value)) || 0);
    if (slot === 0) end = Math.min(k + 1, length);
    else start = Math.min(k, length);
  } else if (kind === "SplitSigmasDenoise") {
    const t = pyRound((length - 1) * Number(value));
    if (slot === 0) end = t > 0 ? Math.max(0, length - t) : 0;
    else start = Math.max(0, length - (t + 1));
  } else {
    return null;
  }
  const n = Math.max(0, end - start);
  return { steps: Math.max(0, n - 1), endsAtZero: Boolean(schedule.endsAtZero) && end === length };
}

/** "×2.3": the pass ratio with at most two decimals. */
export function formatRatio(ratio) {
  return `×${Number(ratio.toFixed(2))}`;
}

const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;

/** What a node with nothing different between its sides shows (whatever its plan): what it needs. */
export const NO_WEAK_SIDE = "to use W2SD: add a weak model, prompt or CFG";

/** The one line a node shows for a cost; "≤ " marks the numbers that are only upper bounds. It
 *  stays short (at most about 47 characters) so that it fits a node of the default width. */
export function costText(cost, { bounded = false, differs = true, off = null, cfgAs = null } = {}) {
  const le = bounded ? "≤ " : "";
  if (!differs) return NO_WEAK_SIDE;
  if (off) return `W2SD off · ${off}`;
  // only a count that adds evaluations makes the evaluations and the time a bound
  const extra = cost.reflections > 0 || cost.guided > 0;
  const evals = `${extra ? le : ""}${cost.evaluations} evals`;
  let what = null;
  if (cost.reflections && cost.guided) {
    what = cost.reflections === cost.guided ? `${le}${cost.guided} reflect+guide`
      : `${le}${cost.reflections} refl. + ${cost.guided} guided`;
  }
  else if (cost.reflections) what = `${le}${plural(cost.reflections, "reflection")}`;
  else if (cost.guided) what = `${le}${cost.guided} guided`;
  else if (cfgAs !== null) what = `${le}${plural(cfgAs.steps, "step")} at CFG ${Number(cfgAs.cfg.toFixed(2))}`;
  if (!what) return `nothing planned · ${evals} · ×1 time`;
  const ratio = cost.passes === cost.plainPasses ? "×1" : `${extra ? le : ""}${formatRatio(cost.ratio)}`;
  return `${what} · ${evals} · ${ratio} time`;
}

/** The hover text: the same numbers as the line, and where they come from. */
export function costDetail(cost, { bounded = false, strongCfg, weakCfg, cfgAs = null, cfg } = {}) {
  const upTo = bounded ? "up to " : "";
  const terms = [plural(cost.steps, "step")];
  if (cost.reflections) terms.push(`2 × ${upTo}${plural(cost.reflections, "reflection")}`);
  if (cost.guided) terms.push(`${upTo}${cost.guided} guided`);
  const extra = cost.reflections > 0 || cost.guided > 0;
  const total = `${extra ? upTo : ""}${cost.evaluations} model evaluations`;
  const parts = [terms.length > 1 ? `${terms.join(" + ")} = ${total}` : total];
  if (cost.reflections) parts.push("a reflection: one step down with the strong side, back up with the weak side");
  if (cost.guided) parts.push("a guided step: strong + w · (strong − weak), both sides evaluated");
  parts.push(`${extra ? upTo : ""}${cost.passes} vs ${cost.plainPasses} model passes without W2SD`);
  if (extra && passesPerEvaluation(strongCfg) !== passesPerEvaluation(weakCfg)) {
    parts.push(`the ${passesPerEvaluation(weakCfg) === 1 ? "weak" : "strong"} side at CFG 1 costs half`);
  }
  if (cfgAs) {
    parts.push(`a CFG pair in guide mode is plain sampling at CFG cfg_s + w · (cfg_s − cfg_w) = `
      + `${Number(cfgAs.cfg.toFixed(2))} on ${upTo}${plural(cfgAs.steps, "step")} (CFG ${Number(Number(cfg).toFixed(2))} `
      + "on the rest): no extra cost");
  }
  if (bounded) parts.push("reflect_end_percent < 1: the counts are upper bounds (they depend on the model's schedule)");
  return parts.join("\n");
}

const OFF_HINT = Object.freeze({
  "reflect_steps 0": "set reflect_steps to -1 or a count to turn W2SD on",
  "guidance 0": "set guidance above 0 to turn guide mode on",
});

function noWeakSideDetail(steps) {
  return `Nothing differs between the strong and the weak side yet, so this node samples like KSampler `
    + `(${steps} model evaluations). To use W2SD, connect weak_model (e.g. the base model of a fine-tune), `
    + `or a plainer prompt to weak_positive / weak_negative, or set weak_cfg (e.g. 1.0) below cfg.`;
}

/**
 * The cost of a W2SD configuration. `values`: widget values { steps, cfg, denoise, strong_cfg,
 * weak_cfg, reflect_steps, repeats, reflect_end_percent, mode, guidance } (plus start_at_step,
 * end_at_step, return_with_leftover_noise on the Advanced node). `weakSide`: whether something
 * other than the CFG differs between the sides; with nothing different the samplers sample plainly.
 * `schedule` { steps, endsAtZero }: the sigmas when they come from elsewhere (a split schedule).
 * Returns { cost, lambda, bounded, differs, off, text, detail }.
 */
export function describeRun(values, { weakSide = true, advanced = false, schedule = null } = {}) {
  const cut = schedule ?? (advanced
    ? advancedSteps(values.steps, values.start_at_step, values.end_at_step, values.return_with_leftover_noise)
    : { steps: effectiveSteps(values.steps, values.denoise ?? 1.0), endsAtZero: true });
  const steps = cut.steps;
  const cfg = Number(values.cfg ?? 8.0);
  const strongCfg = resolveCfg(values.strong_cfg, cfg);
  const weakCfg = resolveCfg(values.weak_cfg, cfg);
  const differs = Boolean(weakSide) || strongCfg !== weakCfg;
  const cfgOnly = !weakSide && differs;
  const mode = values.mode ?? DEFAULT_PLAN.mode;
  const w = Number(values.guidance ?? DEFAULT_PLAN.guidance);
  const reflectSteps = values.reflect_steps ?? DEFAULT_PLAN.reflect_steps;
  // with nothing to pair the line says what is missing, whatever the plan
  let off = null;
  if (!differs) off = null;
  else if (Number(reflectSteps) === 0) off = "reflect_steps 0";
  else if (!reflects(mode) && guides(mode) && w === 0) off = "guidance 0";
  const est = differs && !off
    ? estimateReflections({
      steps, reflectSteps, endsAtZero: cut.endsAtZero,
      repeats: values.repeats ?? DEFAULT_PLAN.repeats,
      reflectEndPercent: values.reflect_end_percent ?? DEFAULT_PLAN.reflect_end_percent,
    })
    : { lambda: 0, reflections: 0, bounded: false };
  const guidedSteps = guides(mode) && w !== 0 ? est.lambda : 0;
  const cfgAs = cfgOnly && guidedSteps ? { steps: guidedSteps, cfg: strongCfg + w * (strongCfg - weakCfg) } : null;
  const cost = runCost(steps, reflects(mode) ? est.reflections : 0, cfg, strongCfg, weakCfg, cfgOnly ? 0 : guidedSteps);
  const bounded = est.bounded && (cost.reflections > 0 || guidedSteps > 0);
  let detail;
  if (!differs) detail = noWeakSideDetail(cost.steps);
  else if (off) detail = `${cost.steps} model evaluations: the plain sampler, bit for bit (${OFF_HINT[off] ?? off})`;
  else detail = costDetail(cost, { bounded, strongCfg, weakCfg, cfgAs, cfg });
  return { cost, lambda: est.lambda, bounded, differs, off, text: costText(cost, { bounded, differs, off, cfgAs }), detail };
}

/**
 * The text for what a run really did, from the Reflective KSampler's `w2sd` UI output:
 * { reflections, guided, evaluations, passes, plain_passes, steps, skipped }.
 */
export function reportText(report) {
  if (!report) return null;
  if (report.skipped || !(report.reflections || report.guided)) return `ran without W2SD · ${report.evaluations} evals`;
  const ratio = report.plain_passes ? report.passes / report.plain_passes : 1.0;
  const parts = [];
  if (report.reflections) parts.push(plural(report.reflections, "reflection"));
  if (report.guided) parts.push(`${report.guided} guided`);
  return `ran: ${parts.join(" · ")} · ${report.evaluations} evals · ${formatRatio(ratio)} time`;
}
