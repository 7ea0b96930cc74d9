// The web extension's cost arithmetic (web/w2sd_cost.js). tests/test_web_frontend.py also checks it
// against w2sd_core/cost.py on a grid of cases.
import { test } from "node:test";
import assert from "node:assert/strict";

import {
  advancedSteps, describeRun, NO_WEAK_SIDE, effectiveSteps, estimateReflections, formatRatio, passesPerEvaluation, reportText,
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
});

test("a cost is immutable", () => {
  const cost = runCost(10, 2, 8, 8, 8);
  assert.throws(() => { "use strict"; cost.passes = 1; }, TypeError);
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

test("ratios show at most two decimals", () => {
  assert.equal(formatRatio(2.3), "×2.3");
  assert.equal(formatRatio(2), "×2");
  assert.equal(formatRatio(86 / 50), "×1.72");
  assert.equal(formatRatio(1 / 3), "×0.33");
});

test("the node's line: equal-compute setting, exact count", () => {
  const run = describeRun({ mode: "reflect", steps: 25, cfg: 5.5, denoise: 1, strong_cfg: -1, weak_cfg: -1,
    reflect_steps: 12, repeats: 1, reflect_end_percent: 1 });
  assert.equal(run.cost.evaluations, 49);
  assert.equal(run.text, "12 reflections · 49 evals · ×1.96 time");
  assert.match(run.detail, /98 vs 50 model passes/);
});

test("the node's line: a window (reflect_end_percent < 1) only bounds the count", () => {
  const run = describeRun({ steps: 20, cfg: 8, reflect_steps: -1, reflect_end_percent: 0.8, mode: "reflect" });
  assert.equal(run.bounded, true);
  assert.equal(run.text, "≤ 19 reflections · ≤ 58 evals · ≤ ×2.9 time");
  assert.match(run.detail, /upper bound/);
});

test("the node's line: weak at CFG 1 costs half, repeats count", () => {
  const run = describeRun({ mode: "reflect", steps: 30, cfg: 5.5, strong_cfg: 5.5, weak_cfg: 1.0, reflect_steps: 10,
    repeats: 2, reflect_end_percent: 1 });
  assert.equal(run.cost.passes, 60 + 20 * 3);
  assert.equal(run.text, "20 reflections · 70 evals · ×2 time");
  assert.match(run.detail, /weak side at CFG 1 costs half/);
  assert.match(describeRun({ mode: "reflect", steps: 10, cfg: 4, strong_cfg: 1, reflect_steps: -1, reflect_end_percent: 1 }).detail,
    /strong side at CFG 1 costs half/);
});

test("the node's line: W2SD off by default, and no weak side", () => {
  assert.equal(describeRun({ mode: "reflect", steps: 20, cfg: 8, reflect_steps: 0 }).text, "W2SD off · reflect_steps 0");
  assert.match(describeRun({ mode: "reflect", steps: 20, cfg: 8, reflect_steps: 0 }).detail, /plain sampler, bit for bit/);
  assert.equal(describeRun({ mode: "reflect", steps: 1, cfg: 8, reflect_steps: -1 }).text, "nothing planned · 1 evals · ×1 time");
  const bare = describeRun({ mode: "reflect", steps: 20, cfg: 8, reflect_steps: -1 }, { weakSide: false });
  assert.equal(bare.differs, false);
  assert.equal(bare.cost.reflections, 0);
  assert.equal(bare.text, NO_WEAK_SIDE);
  assert.match(bare.detail, /weak_model/);
  assert.match(bare.detail, /weak_cfg/);
  // the fresh node's words do not depend on the plan (reflect_steps 0 today, a guide default later)
  for (const plan of [{}, { reflect_steps: 0 }, { reflect_steps: -1, mode: "guide" }, { reflect_steps: 12, mode: "reflect+guide" }]) {
    assert.equal(describeRun({ mode: "reflect", steps: 20, cfg: 8, ...plan }, { weakSide: false }).text, NO_WEAK_SIDE);
  }
  // a CFG pair is a weak side by itself; -1 resolves to the sampler's cfg before comparing
  assert.equal(describeRun({ mode: "reflect", steps: 20, cfg: 8, weak_cfg: 1, reflect_steps: -1, reflect_end_percent: 1 }, { weakSide: false }).cost.reflections, 19);
  assert.equal(describeRun({ mode: "reflect", steps: 20, cfg: 8, strong_cfg: 8, weak_cfg: -1 }, { weakSide: false }).differs, false);
  assert.equal(describeRun({ mode: "reflect", steps: 20, cfg: 8, strong_cfg: 7.5 }, { weakSide: false }).differs, true);
});

test("reflect_end_percent 0 reflects nothing (exactly, not a bound)", () => {
  assert.deepEqual(estimateReflections({ steps: 20, reflectEndPercent: 0 }),
    { lambda: 0, reflections: 0, bounded: false });
});

test("the run report: what the sampler really did", () => {
  assert.equal(reportText({ steps: 20, reflections: 5, evaluations: 30, passes: 50, plain_passes: 40 }),
    "ran: 5 reflections · 30 evals · ×1.25 time");
  assert.equal(reportText({ steps: 8, reflections: 1, evaluations: 10, passes: 20, plain_passes: 16 }),
    "ran: 1 reflection · 10 evals · ×1.25 time");
  assert.equal(reportText({ steps: 20, reflections: 0, evaluations: 20, passes: 40, plain_passes: 40,
    skipped: "nothing differs" }), "ran without W2SD · 20 evals");
  assert.equal(reportText({ steps: 20, reflections: 0, guided: 12, evaluations: 32, passes: 64, plain_passes: 40 }),
    "ran: 12 guided · 32 evals · ×1.6 time");
  assert.equal(reportText(undefined), null);
});

test("guided evaluations: one more evaluation each, the pair's passes instead of the plain one", () => {
  const cost = runCost(20, 0, 8, 8, 8, 12);
  assert.equal(cost.evaluations, 32);
  assert.equal(cost.passes, 40 + 12 * 2);
  assert.equal(describeRun({ steps: 20, cfg: 8, reflect_steps: 12, reflect_end_percent: 1, mode: "guide" }).text,
    "12 guided · 32 evals · ×1.6 time");
  assert.equal(describeRun({ steps: 20, cfg: 8, reflect_steps: 12, reflect_end_percent: 1, mode: "reflect+guide" }).text,
    "12 reflect+guide · 56 evals · ×2.8 time");
  assert.equal(describeRun({ steps: 20, cfg: 8, reflect_steps: 12, repeats: 2, reflect_end_percent: 1, mode: "reflect+guide" }).text,
    "24 refl. + 12 guided · 80 evals · ×4 time");
  // guidance 0 in guide mode is the strong side alone: off
  assert.equal(describeRun({ steps: 20, cfg: 8, reflect_steps: 12, mode: "guide", guidance: 0 }).text, "W2SD off · guidance 0");
});

test("a CFG-only pair in guide mode is plain CFG at cfg_s + w (cfg_s - cfg_w): no extra cost", () => {
  const run = describeRun({ steps: 20, cfg: 5.5, weak_cfg: 1, reflect_steps: 12, reflect_end_percent: 1,
    mode: "guide", guidance: 0.5 }, { weakSide: false });
  assert.equal(run.cost.evaluations, 20);
  assert.equal(run.cost.passes, run.cost.plainPasses);
  assert.equal(run.text, "12 steps at CFG 7.75 · 20 evals · ×1 time");
  assert.match(run.detail, /^20 model evaluations\n/);
  assert.doesNotMatch(run.detail, /guided/);
  // a window only bounds the guided steps: the evaluations and the time are exact
  const windowed = describeRun({ steps: 20, cfg: 8, weak_cfg: 1, reflect_steps: -1, reflect_end_percent: 0.8,
    mode: "guide", guidance: 1 }, { weakSide: false });
  assert.equal(windowed.text, "≤ 19 steps at CFG 15 · 20 evals · ×1 time");
  assert.match(windowed.detail, /^20 model evaluations\n/);
  assert.match(windowed.detail, /= 15 on up to 19 steps \(CFG 8 on the rest\)/);
});

test("the line is short enough for a node of the default width, and its hover says the same numbers", () => {
  const modes = ["reflect", "guide", "reflect+guide"];
  for (const steps of [1, 8, 20, 50, 99]) {
    for (const mode of modes) {
      for (const [cfg, weak, repeats] of [[8, -1, 1], [5.5, 1, 1], [1, 1, 2], [7.25, 3.75, 1]]) {
        for (const weakSide of [true, false]) {
          for (const percent of [0.8, 1]) {
            const run = describeRun({ steps, cfg, weak_cfg: weak, reflect_steps: -1, repeats,
              reflect_end_percent: percent, mode, guidance: 1.5 }, { weakSide });
            assert.ok(run.text.length <= (repeats > 1 ? 52 : 47), `${run.text} (${run.text.length} characters)`);
            if (!run.differs) continue;
            const evals = Number(run.text.match(/(\d+) evals/)[1]);
            assert.equal(evals, run.cost.evaluations);
            assert.match(run.detail.split("\n")[0], new RegExp(`(^|= )(up to )?${evals} model evaluations$`), run.detail);
            assert.equal(/≤ \d+ evals/.test(run.text), run.bounded && run.cost.evaluations > run.cost.steps, run.text);
          }
        }
      }
    }
  }
});

test("KSampler (Advanced): the steps between start_at_step and end_at_step", () => {
  assert.deepEqual(advancedSteps(20, 0, 10000), { steps: 20, endsAtZero: true });
  assert.deepEqual(advancedSteps(20, 0, 10, "enable"), { steps: 10, endsAtZero: false });
  assert.deepEqual(advancedSteps(20, 10, 10000, "enable"), { steps: 10, endsAtZero: true });
  assert.deepEqual(advancedSteps(20, 4, 10, "disable"), { steps: 6, endsAtZero: true });
  assert.equal(advancedSteps(20, 12, 10).steps, 0);
  assert.equal(advancedSteps(20, 0, 0).steps, 0);
  const high = describeRun({ mode: "reflect", steps: 20, cfg: 3.5, reflect_steps: 30, reflect_end_percent: 1, start_at_step: 0,
    end_at_step: 10, return_with_leftover_noise: "enable" }, { advanced: true });
  assert.equal(high.cost.reflections, 10);  // the part ends above sigma 0: its last step reflects too
});
