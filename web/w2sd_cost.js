// W2SD run cost: a plain ES module (no DOM, no ComfyUI) mirroring w2sd_core/cost.py exactly, plus
// the reflection count a node's widget values imply. tests/web/cost.test.mjs tests it and
// tests/test_web_frontend.py checks it against the Python on a grid of cases.
//
// A model "pass" is one UNet/DiT forward over one batch of latents. A guided evaluation at
// CFG != 1 is two passes (cond and uncond); ComfyUI skips the uncond pass at CFG 1, so such an
// evaluation is one pass.

/** Passes per model evaluation at this CFG: 1 at cfg == 1 (ComfyUI skips the uncond), else 2. */
export function passesPerEvaluation(cfg) {
  return Number(cfg) === 1 ? 1 : 2;
}

/**
 * Python's f"{x:.2f}". Both languages round the exact binary value, so they agree except on exact
 * ties, where Python rounds half to even and Number.toFixed rounds up. A two-decimal tie is
 * exactly representable only as an odd multiple of 1/8 (e.g. 1.125 = a 9/8 run).
 */
export function formatFixed2(x) {
  const eighths = x * 8; // exact: a power-of-two scaling
  if (Number.isInteger(eighths) && Math.abs(eighths % 2) === 1) {
    const lower = Math.floor(x * 100); // exact for odd eighths (k·12.5, rounded down)
    const even = lower % 2 === 0 ? lower : lower + 1;
    return (even / 100).toFixed(2);
  }
  return x.toFixed(2);
}

/** What a run costs; the fields and summary() of w2sd_core.cost.RunCost. */
export class RunCost {
  constructor({ steps, reflections, evaluations, passes, plainPasses }) {
    this.steps = steps; // T: normal sampler steps
    this.reflections = reflections; // reflected steps x repeats
    this.evaluations = evaluations; // T + 2 * reflections
    this.passes = passes; // model passes of this run
    this.plainPasses = plainPasses; // model passes of the same sampler without W2SD
    Object.freeze(this);
  }

  get ratio() {
    return this.plainPasses ? this.passes / this.plainPasses : 1.0;
  }

  summary() {
    return (`W2SD: ${this.reflections} reflection(s), ${this.evaluations} model evaluations ` +
      `(plain ${this.steps}); ${this.passes} model passes = ${formatFixed2(this.ratio)}x a plain run`);
  }
}

/** w2sd_core.run_cost: cfg is the sampling CFG; strong_cfg / weak_cfg are already resolved. */
export function runCost(steps, reflections, cfg, strongCfg, weakCfg) {
  const plain = steps * passesPerEvaluation(cfg);
  const extra = reflections * (passesPerEvaluation(strongCfg) + passesPerEvaluation(weakCfg));
  return new RunCost({
    steps, reflections, evaluations: steps + 2 * reflections,
    passes: plain + extra, plainPasses: plain,
  });
}

/** The nodes' "-1 = same as cfg" rule for strong_cfg / weak_cfg. */
export function resolveCfg(value, cfg) {
  return value === undefined || value === null || Number(value) === -1 ? Number(cfg) : Number(value);
}

/**
 * Reflected steps a W2SD node's widgets imply on a schedule of `steps` steps (w2sd_core's
 * ReflectionPlan.reflect_mask on a schedule ending at sigma 0):
 * λ = reflectSteps (-1: every step but the last, 0: off), at most steps - 1 (the last step goes to
 * sigma 0 and is never reflected), times `repeats`.
 * 0 < reflect_end_percent < 1 stops reflection at a sigma that depends on the model's schedule, which
 * the page does not know: the count is then only an upper bound (`bounded: true`, shown as "≤");
 * reflect_end_percent 0 reflects nothing.
 * Returns { lambda, reflections, bounded }.
 */
export function estimateReflections({ steps, reflectSteps = -1, repeats = 1, reflectEndPercent = 1.0 }) {
  const n = Math.max(0, Math.trunc(Number(steps)) || 0);
  const requested = Math.trunc(Number(reflectSteps));
  let lambda = requested === -1 ? n - 1 : Math.min(requested, n - 1);
  // reflect_end_percent 0 = "reflect while above 0 % of the denoising": never
  lambda = Number(reflectEndPercent) <= 0 ? 0 : Math.max(0, lambda || 0);
  const r = Math.max(1, Math.trunc(Number(repeats)) || 1);
  const bounded = lambda > 0 && Number(reflectEndPercent) < 1;
  return { lambda, reflections: lambda * r, bounded };
}

/** Steps a KSampler-style node runs: `steps`, or none at denoise 0 (ComfyUI then samples nothing). */
export function effectiveSteps(steps, denoise = 1.0) {
  const n = Math.max(0, Math.trunc(Number(steps)) || 0);
  return Number(denoise) <= 0 ? 0 : n;
}

/**
 * The cost of a W2SD Reflective KSampler-like configuration, with the text the node shows.
 * `values`: { steps, cfg, denoise, strong_cfg, weak_cfg, reflect_steps, repeats,
 * reflect_end_percent } (widget names; missing optional ones take the nodes' defaults).
 * `weakSide`: whether something other than the CFG differs between the two sides (a weak model, weak
 * conditioning, a LoRA pair inside the model). With nothing different, the samplers skip reflection
 * and sample plainly (they say so in the console); the text says it too.
 * Returns { cost, lambda, bounded, strongCfg, weakCfg, differs, lines }.
 */
export function describeRun(values, { weakSide = true } = {}) {
  const steps = effectiveSteps(values.steps, values.denoise ?? 1.0);
  const cfg = Number(values.cfg ?? 8.0);
  const strongCfg = resolveCfg(values.strong_cfg, cfg);
  const weakCfg = resolveCfg(values.weak_cfg, cfg);
  const repeats = Math.max(1, Math.trunc(Number(values.repeats ?? 1)) || 1);
  const differs = Boolean(weakSide) || strongCfg !== weakCfg;
  const est = differs
    ? estimateReflections({
      steps, reflectSteps: values.reflect_steps ?? -1, repeats,
      reflectEndPercent: values.reflect_end_percent ?? 1.0,
    })
    : { lambda: 0, reflections: 0, bounded: false };
  const cost = runCost(steps, est.reflections, cfg, strongCfg, weakCfg);
  const lines = costLines(cost, { lambda: est.lambda, repeats, bounded: est.bounded, strongCfg, weakCfg });
  if (!differs) lines[0] = `W2SD: ${cost.evaluations} model evaluations (no weak side: plain sampling)`;
  return { cost, lambda: est.lambda, bounded: est.bounded, strongCfg, weakCfg, differs, lines };
}

/**
 * The two lines a node shows, e.g.
 *   "W2SD: 49 model evaluations (25 + 2·12)"
 *   "×1.48 vs plain KSampler (74 vs 50 passes; weak at CFG 1 costs half)"
 * With `bounded` the reflection count is an upper bound: "≤ 49 model evaluations (25 + 2·≤12)".
 */
export function costLines(cost, { lambda, repeats = 1, bounded = false, strongCfg, weakCfg }) {
  const le = bounded ? "≤" : "";
  const reflected = repeats > 1 ? `${le}${lambda}×${repeats}` : `${le}${lambda}`;
  const head = cost.reflections > 0
    ? `W2SD: ${le ? "≤ " : ""}${cost.evaluations} model evaluations (${cost.steps} + 2·${reflected})`
    : `W2SD: ${cost.evaluations} model evaluations (no reflection)`;
  const notes = [`${le ? "≤ " : ""}${cost.passes} vs ${cost.plainPasses} passes`];
  if (cost.reflections > 0 && strongCfg !== undefined && weakCfg !== undefined &&
      passesPerEvaluation(strongCfg) !== passesPerEvaluation(weakCfg)) {
    notes.push(`${passesPerEvaluation(weakCfg) === 1 ? "weak" : "strong"} at CFG 1 costs half`);
  }
  const ratio = `${le ? "≤ " : ""}×${formatFixed2(cost.ratio)}`;
  return [head, `${ratio} vs plain KSampler (${notes.join("; ")})`];
}
