"""The learned yardstick's tables: the defaults against plain sampling, equal cost and guidance.

    python -m w2sd_core.toy.yardstick [--size full|test] [--sweep] [--out FILE]

For each data set of :mod:`.learned` (``mixture``, ``digits``), each weak model (``early``: an early
checkpoint of the strong model's training; ``small``: a smaller network trained as long), 20 and 50
steps and ComfyUI's ``normal`` and ``karras`` schedulers on the EDM range, deterministic Euler from
the same noise, every number a ratio to plain strong sampling at the same steps (lower is better):

* ``default``: :func:`w2sd_core.sample_default`, what the nodes run with their defaults;
* ``identity``: the same with weak = strong; anything but 1.00 is inversion error;
* ``reversed``: negative control, the pair swapped in the reflection (it pushes towards the weak
  model), sampling model unchanged: should be worse;
* ``plain@eq``: plain strong sampling with as many steps as the default run has evaluations;
* ``guidance``: ``D_w + 2 (D_s - D_w)`` with the same pair, at most as many evaluations;
* ``paper``: the paper's setting (:data:`w2sd_core.PAPER`), with its evaluation count.

``--sweep`` instead prints, per (end_percent, max_step) candidate, the worst ratio and the worst
identity drift over all cells: how the defaults were chosen. The first run trains the models
(about a minute on one thread) and caches them.
"""
from __future__ import annotations

import argparse
import pathlib
import time
from typing import Optional

import torch

from ..sampling import DEFAULTS, PAPER, Preset, sample_default, sample_euler, sample_euler_plain
from .learned import EDMSchedule, Yardstick, make_yardstick

EDM = EDMSchedule()
POINTS = {"mixture": 4000, "digits": 2000}
CELLS = [(s, t) for t in (20, 50) for s in ("normal", "karras")]


def guided(strong, weak, w: float = 2.0):
    def denoise(x, sigma):
        dw = weak(x, sigma)
        return dw + w * (strong(x, sigma) - dw)
    return denoise


def run(y: Yardstick, weak, scheduler: str, steps: int, preset: Optional[Preset] = None, *,
        strong=None, noise: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Samples and their model evaluations; ``preset`` None = the defaults via sample_default."""
    sigmas = EDM.schedule(scheduler, steps)
    x = noise * sigmas[0]
    strong = y.strong if strong is None else strong
    if preset is None:
        out = sample_default(y.strong, x, sigmas, weak=weak, strong=strong, percent_to_sigma=EDM.percent_to_sigma)
        preset = DEFAULTS
    else:
        out = sample_euler(y.strong, x, sigmas, weak=weak, strong=strong, plan=preset.plan(EDM.percent_to_sigma),
                           inversion=preset.inversion)
    return out, steps + preset.plan(EDM.percent_to_sigma).extra_evaluations(sigmas)


def plain(y: Yardstick, denoise, scheduler: str, steps: int, noise) -> float:
    sigmas = EDM.schedule(scheduler, steps)
    return y.metric(sample_euler_plain(denoise, noise * sigmas[0], sigmas))


def cell(y: Yardstick, weak_name: str, scheduler: str, steps: int, noise, paper: bool = True) -> dict:
    weak = y.weak_early if weak_name == "early" else y.weak_small
    base = plain(y, y.strong, scheduler, steps, noise)
    default, evals = run(y, weak, scheduler, steps, noise=noise)
    identity, _ = run(y, y.strong, scheduler, steps, noise=noise)
    reversed_, _ = run(y, y.strong, scheduler, steps, strong=weak, noise=noise)
    row = {"data": y.name, "weak": weak_name, "scheduler": scheduler, "steps": steps, "plain": base,
           "evals": evals, "default": y.metric(default) / base, "identity": y.metric(identity) / base,
           "reversed": y.metric(reversed_) / base,
           "plain_eq": plain(y, y.strong, scheduler, evals, noise) / base,
           "guidance_steps": max(evals // 2, 1),
           "guidance": plain(y, guided(y.strong, weak), scheduler, max(evals // 2, 1), noise) / base}
    if paper:
        x, row["paper_evals"] = run(y, weak, scheduler, steps, PAPER, noise=noise)
        row["paper"] = y.metric(x) / base
    return row


def noise_for(y: Yardstick, seed: int = 0) -> torch.Tensor:
    return torch.randn(POINTS[y.name], y.dim, generator=torch.Generator().manual_seed(seed))


def tables(size: str = "full") -> list[dict]:
    rows = []
    for name in ("mixture", "digits"):
        y = make_yardstick(name, size)
        noise = noise_for(y)
        rows += [cell(y, weak, s, t, noise) for weak in ("early", "small") for s, t in CELLS]
    return rows


def markdown(rows: list[dict]) -> str:
    head = ("| data | weak | scheduler | T | plain | default | evals | identity | reversed | plain@eq "
            "| guidance (steps) | paper (evals) |\n|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    lines = [head]
    for r in rows:
        lines.append(f"| {r['data']} | {r['weak']} | {r['scheduler']} | {r['steps']} | {r['plain']:.3f} "
                     f"| **{r['default']:.3f}** | {r['evals']} | {r['identity']:.3f} | {r['reversed']:.2f} "
                     f"| {r['plain_eq']:.3f} | {r['guidance']:.3f} ({r['guidance_steps']}) "
                     f"| {r['paper']:.2f} ({r['paper_evals']}) |")
    return "\n".join(lines)


def sweep(size: str, end_percents=(0.3, 0.4, 0.5, 0.6, 0.7, 0.8), max_steps=(0.2, 0.3, 0.5, None)) -> str:
    """Worst default ratio, worst identity drift and mean ratio over every cell, per candidate."""
    ys = [make_yardstick(n, size) for n in ("mixture", "digits")]
    noises = [noise_for(y) for y in ys]
    bases = {(y.name, s, t): plain(y, y.strong, s, t, n) for y, n in zip(ys, noises) for s, t in CELLS}
    lines = ["| end % | max step | worst ratio | mean ratio | worst identity drift | extra evals (20 normal / karras, 50 normal / karras) |",
             "|---:|---:|---:|---:|---:|---|"]
    for end in end_percents:
        for ms in max_steps:
            preset = Preset(end_percent=end, max_step=ms, inversion=DEFAULTS.inversion)
            ratios, drifts, extra = [], [], {}
            for y, n in zip(ys, noises):
                for s, t in CELLS:
                    base = bases[y.name, s, t]
                    ident, evals = run(y, y.strong, s, t, preset, noise=n)
                    drifts.append(abs(y.metric(ident) / base - 1))
                    extra[s, t] = evals - t
                    ratios += [y.metric(run(y, w, s, t, preset, noise=n)[0]) / base for w in (y.weak_early, y.weak_small)]
            lines.append(f"| {end:.2f} | {ms if ms is not None else '—'} | {max(ratios):.3f} | "
                         f"{sum(ratios) / len(ratios):.3f} | {max(drifts):.3f} | {', '.join(str(extra[c]) for c in CELLS)} |")
            print(lines[-1], flush=True)
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None):
    ap = argparse.ArgumentParser(prog="python -m w2sd_core.toy.yardstick", description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", default="full", choices=("full", "test"), help="training size (test: CI's)")
    ap.add_argument("--sweep", action="store_true", help="rank (end_percent, max_step) candidates")
    ap.add_argument("--out", type=pathlib.Path, default=None, help="also write the markdown here")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    start = time.time()
    if args.sweep:
        text = sweep(args.size)
    else:
        text = markdown(tables(args.size))
        print(text)
    print(f"\n(defaults {DEFAULTS}; {time.time() - start:.0f} s)")
    if args.out is not None:
        args.out.write_text(text + "\n")
    return text


if __name__ == "__main__":
    main()
