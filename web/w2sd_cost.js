// W2SD run cost: a plain ES module (no DOM, no ComfyUI) with the arithmetic of w2sd_core/cost.py,
// the reflection count a node's widget values imply, and the short text the nodes show.
//
// A model "pass" is one UNet/DiT forward over one batch of latents. A guided evaluation at
// CFG != 1 is two passes (cond and uncond); ComfyUI skips the uncond pass at CFG 1, so such an
// evaluation is one pass.

/** The plan a W2SD Guider reflects with when the sampler is a plain one (the nodes' defaults). */
export const DEFAULT_PLAN = Object.freeze({ reflect_steps: -1, reflect_end_percent: 0.8, repeats: 1 });

/** Passes per model evaluation at this CFG: 1 at cfg == 1 (ComfyUI skips the uncond), else 2. */
export function passesPerEvaluation(cfg) {
  return Number(cfg) === 1 ? 1 : 2;
}

/** What a run costs (w2sd_core.run_cost): cfg is the sampling CFG, strongCfg / weakCfg resolved. */
export function runCost(steps, reflections, cfg, strongCfg, weakCfg) {
  const plainPasses = steps * passesPerEvaluation(cfg);
  const passes = plainPasses + reflections * (passesPerEvaluation(strongCfg) + passesPerEvaluation(weakCfg));
  return Object.freeze({
    steps, reflections, evaluations: steps + 2 * reflections, passes, plainPasses,
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
export function estimateReflections({ steps, reflectSteps = -1, repeats = 1, reflectEndPercent = 1.0 }) {
  const n = Math.max(0, Math.trunc(Number(steps)) || 0);
  const requested = Math.trunc(Number(reflectSteps));
  let lambda = requested === -1 ? n - 1 : Math.min(requested, n - 1);
  lambda = Number(reflectEndPercent) <= 0 ? 0 : Math.max(0, lambda || 0);
  const r = Math.max(1, Math.trunc(Number(repeats)) || 1);
  return { lambda, reflections: lambda * r, bounded: lambda > 0 && Number(reflectEndPercent) < 1 };
}

/** Steps a KSampler-style node runs: `steps`, or none at denoise 0 (ComfyUI then samples nothing). */
export function effectiveSteps(steps, denoise = 1.0) {
  const n = Math.max(0, Math.trunc(Number(steps)) || 0);
  return Number(denoise) <= 0 ? 0 : n;
}

/** "×2.3": the pass ratio with at most two decimals. */
export function formatRatio(ratio) {
  return `×${Number(ratio.toFixed(2))}`;
}

const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;

/** The one line a node shows for a cost; "≤ " marks numbers that are only upper bounds. */
export function costText(cost, { bounded = false, differs = true } = {}) {
  const le = bounded ? "≤ " : "";
  const evals = `${le}${cost.evaluations} evals`;
  if (!differs) return `no weak side: plain sampling · ${evals}`;
  if (cost.reflections === 0) return `no reflection · ${evals} · ×1 time`;
  return `${le}${plural(cost.reflections, "reflection")} · ${evals} · ${le}${formatRatio(cost.ratio)} time`;
}

/** The hover text: where the numbers come from. */
export function costDetail(cost, { bounded = false, strongCfg, weakCfg } = {}) {
  const parts = [`${cost.steps} steps + 2 × ${cost.reflections} reflections = ${cost.evaluations} model evaluations`,
    `${cost.passes} vs ${cost.plainPasses} model passes without reflection`];
  if (cost.reflections > 0 && passesPerEvaluation(strongCfg) !== passesPerEvaluation(weakCfg)) {
    parts.push(`the ${passesPerEvaluation(weakCfg) === 1 ? "weak" : "strong"} side at CFG 1 costs half`);
  }
  if (bounded) parts.push("reflect_end_percent < 1: the count is an upper bound (it depends on the model's schedule)");
  return parts.join("\n");
}

/**
 * The cost of a W2SD configuration. `values`: { steps, cfg, denoise, strong_cfg, weak_cfg,
 * reflect_steps, repeats, reflect_end_percent } (widget names). `weakSide`: whether something other
 * than the CFG differs between the sides; with nothing different the samplers sample plainly.
 * Returns { cost, lambda, bounded, differs, text, detail }.
 */
export function describeRun(values, { weakSide = true } = {}) {
  const steps = effectiveSteps(values.steps, values.denoise ?? 1.0);
  const cfg = Number(values.cfg ?? 8.0);
  const strongCfg = resolveCfg(values.strong_cfg, cfg);
  const weakCfg = resolveCfg(values.weak_cfg, cfg);
  const differs = Boolean(weakSide) || strongCfg !== weakCfg;
  const est = differs
    ? estimateReflections({
      steps, reflectSteps: values.reflect_steps ?? DEFAULT_PLAN.reflect_steps,
      repeats: values.repeats ?? DEFAULT_PLAN.repeats,
      reflectEndPercent: values.reflect_end_percent ?? DEFAULT_PLAN.reflect_end_percent,
    })
    : { lambda: 0, reflections: 0, bounded: false };
  const cost = runCost(steps, est.reflections, cfg, strongCfg, weakCfg);
  return {
    cost, lambda: est.lambda, bounded: est.bounded, differs,
    text: costText(cost, { bounded: est.bounded, differs }),
    detail: costDetail(cost, { bounded: est.bounded, strongCfg, weakCfg }),
  };
}

/**
 * The text for what a run really did, from the Reflective KSampler's `w2sd` UI output:
 * { reflections, evaluations, passes, plain_passes, steps, skipped }.
 */
export function reportText(report) {
  if (!report) return null;
  if (report.skipped || !report.reflections) return `ran without reflection · ${report.evaluations} evals`;
  const ratio = report.plain_passes ? report.passes / report.plain_passes : 1.0;
  return `ran: ${plural(report.reflections, "reflection")} · ${report.evaluations} evals · ${formatRatio(ratio)} time`;
}
