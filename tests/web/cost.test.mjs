// The web extension's cost arithmetic (web/w2sd_cost.js). tests/test_web_frontend.py also checks it
// against w2sd_core/cost.py on a grid of cases.
import { test } from "node:test";
import assert from "node:assert/strict";

import {
  costLines, describeRun, effectiveSteps, estimateReflections, formatFixed2, passesPerEvaluation,
  resolveCfg, runCost,
} from "../../web/w2sd_cost.js";

test("a pass at CFG 1 is half an evaluation at any other CFG", () => {
  assert.equal(passesPerEvaluation(1), 1);
  assert.equal(passesPerEvaluation(1.0), 1);
  assert.equal(passesPerEvaluation("1"), 1);
  assert.equal(passesPerEvaluation(0), 2); // cfg 0 = uncond only, still computed as two passes
  assert.equal(passesPerEvaluation(5.5), 2);
  assert.equal(passesPerEvaluation(1.01), 2);
});

test("paper defaults: T = 50, λ = 49 is 148 evaluations", () => {
  const cost = runCost(50, 49, 5.5, 5.5, 5.5);
  assert.equal(cost.evaluations, 148);
  assert.equal(cost.plainPasses, 100);
  assert.equal(cost.passes, 296);
  assert.equal(cost.ratio, 2.96);
  assert.equal(cost.summary(),
    "W2SD: 49 reflection(s), 148 model evaluations (plain 50); 296 model passes = 2.96x a plain run");
});

test("Z-Sampling: weak passes at CFG 1 cost half", () => {
  const cost = runCost(25, 12, 5.5, 5.5, 1.0);
  assert.equal(cost.evaluations, 49);
  assert.equal(cost.passes, 50 + 12 * 3);
  assert.equal(cost.plainPasses, 50);
});

test("guidance-distilled models at CFG 1 run one pass per evaluation", () => {
  const cost = runCost(20, 19, 1.0, 1.0, 1.0);
  assert.equal(cost.passes, 58);
  assert.equal(cost.plainPasses, 20);
  assert.equal(cost.ratio, 2.9);
});

test("no steps: ratio 1, like Python", () => {
  const cost = runCost(0, 0, 8, 8, 8);
  assert.equal(cost.passes, 0);
  assert.equal(cost.ratio, 1.0);
  assert.match(cost.summary(), /= 1\.00x a plain run$/);
});

test("RunCost is immutable", () => {
  const cost = runCost(10, 2, 8, 8, 8);
  assert.throws(() => { "use strict"; cost.passes = 1; }, TypeError);
});

test("two-decimal ratios round like Python's format (half to even on exact ties)", () => {
  assert.equal(formatFixed2(1.125), "1.12");
  assert.equal(formatFixed2(1.375), "1.38");
  assert.equal(formatFixed2(0.125), "0.12");
  assert.equal(formatFixed2(2.875), "2.88");
  assert.equal(formatFixed2(1.005), "1.00"); // 1.005 is below the tie in binary
  assert.equal(formatFixed2(2.5), "2.50");
  assert.equal(formatFixed2(1 / 3), "0.33");
  // T = 16 at CFG 1 with one reflection is exactly 18/16 = 1.125
  assert.match(runCost(16, 1, 1, 1, 1).summary(), /= 1\.12x a plain run$/);
});

test("strong/weak CFG -1 means the sampler's CFG", () => {
  assert.equal(resolveCfg(-1, 7), 7);
  assert.equal(resolveCfg(-1.0, 7), 7);
  assert.equal(resolveCfg(undefined, 7), 7);
  assert.equal(resolveCfg(1.0, 7), 1);
  assert.equal(resolveCfg(0, 7), 0);
});

test("λ from widgets: -1 is every step but the last, clamped to steps - 1, times repeats", () => {
  assert.deepEqual(estimateReflections({ steps: 20 }), { lambda: 19, reflections: 19, bounded: false });
  assert.equal(estimateReflections({ steps: 20, reflectSteps: 30 }).lambda, 19);
  assert.equal(estimateReflections({ steps: 20, reflectSteps: 0 }).reflections, 0);
  assert.equal(estimateReflections({ steps: 25, reflectSteps: 12 }).reflections, 12);
  assert.equal(estimateReflections({ steps: 20, reflectSteps: 5, repeats: 3 }).reflections, 15);
  assert.equal(estimateReflections({ steps: 20, reflectSteps: -1, repeats: 2 }).reflections, 38);
  assert.equal(estimateReflections({ steps: 1 }).reflections, 0);
  assert.equal(estimateReflections({ steps: 0 }).reflections, 0);
});

test("reflect_end_percent < 1 only bounds the count", () => {
  assert.equal(estimateReflections({ steps: 20, reflectEndPercent: 0.5 }).bounded, true);
  assert.equal(estimateReflections({ steps: 20, reflectEndPercent: 1.0 }).bounded, false);
  assert.equal(estimateReflections({ steps: 20, reflectSteps: 0, reflectEndPercent: 0.5 }).bounded, false);
});

test("denoise 0 samples nothing; denoise < 1 keeps the step count", () => {
  assert.equal(effectiveSteps(20, 0), 0);
  assert.equal(effectiveSteps(20, 0.5), 20);
  assert.equal(effectiveSteps(20), 20);
});

test("the node's text: equal-compute setting", () => {
  const run = describeRun({ steps: 25, cfg: 5.5, denoise: 1, strong_cfg: -1, weak_cfg: -1,
    reflect_steps: 12, repeats: 1, reflect_end_percent: 1 });
  assert.equal(run.cost.evaluations, 49);
  assert.deepEqual(run.lines, [
    "W2SD: 49 model evaluations (25 + 2·12)",
    "×1.96 vs plain KSampler (98 vs 50 passes)",
  ]);
});

test("the node's text: defaults of the Reflective KSampler (steps 20, cfg 8, λ -1)", () => {
  const run = describeRun({ steps: 20, cfg: 8, reflect_steps: -1 });
  assert.deepEqual(run.lines, [
    "W2SD: 58 model evaluations (20 + 2·19)",
    "×2.90 vs plain KSampler (116 vs 40 passes)",
  ]);
});

test("the node's text: weak at CFG 1, repeats and a bounded count", () => {
  const run = describeRun({ steps: 30, cfg: 5.5, strong_cfg: 5.5, weak_cfg: 1.0, reflect_steps: 10,
    repeats: 2, reflect_end_percent: 0.6 });
  assert.equal(run.bounded, true);
  assert.equal(run.cost.passes, 60 + 20 * 3);
  assert.deepEqual(run.lines, [
    "W2SD: ≤ 70 model evaluations (30 + 2·≤10×2)",
    "≤ ×2.00 vs plain KSampler (≤ 120 vs 60 passes; weak at CFG 1 costs half)",
  ]);
});

test("the node's text: reflection off", () => {
  const run = describeRun({ steps: 20, cfg: 8, reflect_steps: 0 });
  assert.deepEqual(run.lines, [
    "W2SD: 20 model evaluations (no reflection)",
    "×1.00 vs plain KSampler (40 vs 40 passes)",
  ]);
});

test("costLines names the side that runs at CFG 1", () => {
  const cost = runCost(10, 9, 1.0, 1.0, 4.0);
  const lines = costLines(cost, { lambda: 9, strongCfg: 1.0, weakCfg: 4.0 });
  assert.match(lines[1], /strong at CFG 1 costs half/);
});

test("reflect_end_percent 0 reflects nothing (exactly, not a bound)", () => {
  assert.deepEqual(estimateReflections({ steps: 20, reflectEndPercent: 0 }),
    { lambda: 0, reflections: 0, bounded: false });
});

test("nothing different between the sides: the samplers sample plainly, and the text says so", () => {
  const bare = describeRun({ steps: 20, cfg: 8, reflect_steps: -1 }, { weakSide: false });
  assert.equal(bare.differs, false);
  assert.equal(bare.cost.reflections, 0);
  assert.deepEqual(bare.lines, [
    "W2SD: 20 model evaluations (no weak side: plain sampling)",
    "×1.00 vs plain KSampler (40 vs 40 passes)",
  ]);
  // a CFG pair is a weak side by itself; -1 resolves to the sampler's cfg before comparing
  assert.equal(describeRun({ steps: 20, cfg: 8, weak_cfg: 1 }, { weakSide: false }).cost.reflections, 19);
  assert.equal(describeRun({ steps: 20, cfg: 8, strong_cfg: 8, weak_cfg: -1 }, { weakSide: false }).differs, false);
  assert.equal(describeRun({ steps: 20, cfg: 8, strong_cfg: 7.5 }, { weakSide: false }).differs, true);
  // a weak model, weak prompt or LoRA pair is one at any CFG
  assert.equal(describeRun({ steps: 20, cfg: 8 }, { weakSide: true }).cost.reflections, 19);
});
