"""The learned yardstick's tables: the defaults against plain sampling, equal cost and guidance.

    python -m research.yardstick [--size full|test] [--sweep | --modes [C ...] | --table C ...] [--out FILE]

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

``--modes [CANDIDATE ...]`` ranks the mode candidates (:func:`mode_presets`: ``guide`` over windows
and w, ``reflect`` and ``reflect+guide``) by their worst ratio over all cells, at the same steps and at
equal evaluations; ``--table CANDIDATE ...`` prints them per cell with both controls.

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

from w2sd_core import DEFAULTS, PAPER, Preset, sample_default, sample_euler, sample_euler_plain
from .learned import EDMSchedule, Yardstick, make_yardstick

EDM = EDMSchedule()
POINTS = {"mixture": 4000, "digits": 2000}
CELLS = [(s, t) for t in (20, 50) for s in ("normal", "karras")]


def guided(strong, weak, w: float = 2.0):
    def denoise(x, sigma):
        dw = weak(x, sigma)
        return dw + w * (strong(x, sigma) - dw)

    return denoise


def run(
    y: Yardstick, weak, scheduler: str, steps: int, preset: Optional[Preset] = None, *, strong=None, noise: torch.Tensor
) -> tuple[torch.Tensor, int]:
    """Samples and their model evaluations; ``preset`` None = the defaults via sample_default."""
    sigmas = EDM.schedule(scheduler, steps)
    x = noise * sigmas[0]
    strong = y.strong if strong is None else strong
    if preset is None:
        out = sample_default(y.strong, x, sigmas, weak=weak, strong=strong, percent_to_sigma=EDM.percent_to_sigma)
        preset = DEFAULTS
    else:
        out = sample_euler(
            y.strong,
            x,
            sigmas,
            weak=weak,
            strong=strong,
            plan=preset.plan(EDM.percent_to_sigma),
            inversion=preset.inversion,
            mode=preset.mode,
            guidance=preset.guidance,
        )
    return out, preset.evaluations(sigmas, EDM.percent_to_sigma)


def plain(y: Yardstick, denoise, scheduler: str, steps: int, noise) -> float:
    sigmas = EDM.schedule(scheduler, steps)
    return y.metric(sample_euler_plain(denoise, noise * sigmas[0], sigmas))


def cell(y: Yardstick, weak_name: str, scheduler: str, steps: int, noise, paper: bool = True) -> dict:
    weak = y.weak_early if weak_name == "early" else y.weak_small
    base = plain(y, y.strong, scheduler, steps, noise)
    default, evals = run(y, weak, scheduler, steps, noise=noise)
    identity, _ = run(y, y.strong, scheduler, steps, noise=noise)
    reversed_, _ = run(y, y.strong, scheduler, steps, strong=weak, noise=noise)
    row = {
        "data": y.name,
        "weak": weak_name,
        "scheduler": scheduler,
        "steps": steps,
        "plain": base,
        "evals": evals,
        "default": y.metric(default) / base,
        "identity": y.metric(identity) / base,
        "reversed": y.metric(reversed_) / base,
        "plain_eq": plain(y, y.strong, scheduler, evals, noise) / base,
        "guidance_steps": max(evals // 2, 1),
        "guidance": plain(y, guided(y.strong, weak), scheduler, max(evals // 2, 1), noise) / base,
    }
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
    head = (
        "| data | weak | scheduler | T | plain | default | evals | identity | reversed | plain@eq "
        "| guidance (steps) | paper (evals) |\n|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    )
    lines = [head]
    for r in rows:
        lines.append(
            f"| {r['data']} | {r['weak']} | {r['scheduler']} | {r['steps']} | {r['plain']:.3f} "
            f"| **{r['default']:.3f}** | {r['evals']} | {r['identity']:.3f} | {r['reversed']:.2f} "
            f"| {r['plain_eq']:.3f} | {r['guidance']:.3f} ({r['guidance_steps']}) "
            f"| {r['paper']:.2f} ({r['paper_evals']}) |"
        )
    return "\n".join(lines)


def sweep(size: str, end_percents=(0.3, 0.4, 0.5, 0.6, 0.7, 0.8), max_steps=(0.2, 0.3, 0.5, None)) -> str:
    """Worst default ratio, worst identity drift and mean ratio over every cell, per candidate."""
    ys = [make_yardstick(n, size) for n in ("mixture", "digits")]
    noises = [noise_for(y) for y in ys]
    bases = {(y.name, s, t): plain(y, y.strong, s, t, n) for y, n in zip(ys, noises) for s, t in CELLS}
    lines = [
        "| end % | max step | worst ratio | mean ratio | worst identity drift | extra evals (20 normal / karras, 50 normal / karras) |",
        "|---:|---:|---:|---:|---:|---|",
    ]
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
                    ratios += [
                        y.metric(run(y, w, s, t, preset, noise=n)[0]) / base for w in (y.weak_early, y.weak_small)
                    ]
            lines.append(
                f"| {end:.2f} | {ms if ms is not None else '—'} | {max(ratios):.3f} | "
                f"{sum(ratios) / len(ratios):.3f} | {max(drifts):.3f} | {', '.join(str(extra[c]) for c in CELLS)} |"
            )
            print(lines[-1], flush=True)
    return "\n".join(lines)


# -- the three modes (issue: weak-to-strong guidance) ---------------------------------------------------


def mode_presets() -> dict:
    """The mode candidates: guide over plans x w, reflect+guide and reflect on a few plans.
    ``end_percent`` 0.2 / 0.3 / 0.5 / 0.8 are sigma >= 16 / 3.3 / 0.4 / 0.017 on the EDM range."""
    out = {}
    for end in (1.0, 0.8, 0.5, 0.3, 0.2):
        for w in (0.25, 0.5, 1.0, 2.0):
            out[f"guide e{end} w{w}"] = Preset(end_percent=end, mode="guide", guidance=w)
    for end in (0.8, 0.3, 0.2):
        out[f"reflect e{end}"] = Preset(end_percent=end, mode="reflect")
        for w in (0.5, 1.0):
            out[f"reflect+guide e{end} w{w}"] = Preset(end_percent=end, mode="reflect+guide", guidance=w)
    return out


class Plains:
    """Plain strong sampling's metric per (data, scheduler, steps), computed once."""

    def __init__(self, ys: dict, noises: dict):
        self.ys, self.noises, self.cache = ys, noises, {}

    def __call__(self, name: str, scheduler: str, steps: int) -> float:
        key = (name, scheduler, steps)
        if key not in self.cache:
            self.cache[key] = plain(self.ys[name], self.ys[name].strong, scheduler, steps, self.noises[name])
        return self.cache[key]


def mode_cells(ys: dict, noises: dict, plains: Plains, preset: Preset, controls: bool = False) -> list[dict]:
    """Per cell: ratio to plain at the same steps and at equal evaluations; with ``controls`` also
    the identity (weak = strong) and reversed (pair swapped) ratios."""
    rows = []
    for name, y in ys.items():
        for weak_name, weak in (("early", y.weak_early), ("small", y.weak_small)):
            for s, t in CELLS:
                x, evals = run(y, weak, s, t, preset, noise=noises[name])
                m, base = y.metric(x), plains(name, s, t)
                r = {
                    "data": name,
                    "weak": weak_name,
                    "scheduler": s,
                    "steps": t,
                    "evals": evals,
                    "ratio": m / base,
                    "ratio_eq": m / plains(name, s, evals),
                }
                if controls:
                    r["identity"] = y.metric(run(y, y.strong, s, t, preset, noise=noises[name])[0]) / base
                    r["reversed"] = y.metric(run(y, y.strong, s, t, preset, strong=weak, noise=noises[name])[0]) / base
                rows.append(r)
    return rows


def mode_sweep(size: str, names=None) -> str:
    """Per candidate, over all 16 cells: worst and mean ratio to plain at the same steps, cells
    improved (< 0.99), worst and mean ratio at equal evaluations."""
    ys = {n: make_yardstick(n, size) for n in ("mixture", "digits")}
    noises = {n: noise_for(y) for n, y in ys.items()}
    plains = Plains(ys, noises)
    presets = mode_presets()
    lines = [
        "| candidate | worst @T | mean @T | cells < 0.99 | worst @eq | mean @eq | extra evals (20 n/k, 50 n/k) |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    print(lines[0], flush=True)
    for key in names or presets:
        rows = mode_cells(ys, noises, plains, presets[key])
        rt, re_ = [r["ratio"] for r in rows], [r["ratio_eq"] for r in rows]
        extra = {(r["scheduler"], r["steps"]): r["evals"] - r["steps"] for r in rows}
        lines.append(
            f"| {key} | {max(rt):.3f} | {sum(rt) / len(rt):.3f} | {sum(v < 0.99 for v in rt)}/{len(rt)} "
            f"| {max(re_):.3f} | {sum(re_) / len(re_):.3f} | {', '.join(str(extra[c]) for c in CELLS)} |"
        )
        print(lines[-1], flush=True)
    return "\n".join(lines)


def mode_table(size: str, names) -> str:
    """Per cell, the chosen candidates side by side: ratio @T / @eq (evaluations), identity, reversed."""
    ys = {n: make_yardstick(n, size) for n in ("mixture", "digits")}
    noises = {n: noise_for(y) for n, y in ys.items()}
    plains = Plains(ys, noises)
    presets = mode_presets()
    cols = {k: mode_cells(ys, noises, plains, presets[k], controls=True) for k in names}
    head = "| data | weak | sched | T | plain | " + " | ".join(f"{k}: @T / @eq (evals) id rev" for k in names) + " |"
    lines = [head, "|---|---|---|---:|---:|" + "---|" * len(names)]
    for i, r in enumerate(cols[names[0]]):
        cells = [
            f"{c[i]['ratio']:.3f} / {c[i]['ratio_eq']:.3f} ({c[i]['evals']}) {c[i]['identity']:.3f} "
            f"{c[i]['reversed']:.2f}"
            for c in cols.values()
        ]
        lines.append(
            f"| {r['data']} | {r['weak']} | {r['scheduler']} | {r['steps']} "
            f"| {plains(r['data'], r['scheduler'], r['steps']):.3f} | " + " | ".join(cells) + " |"
        )
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None):
    ap = argparse.ArgumentParser(prog="python -m research.yardstick", description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", default="full", choices=("full", "test"), help="training size (test: CI's)")
    ap.add_argument("--sweep", action="store_true", help="rank (end_percent, max_step) candidates")
    ap.add_argument(
        "--modes",
        nargs="*",
        default=None,
        metavar="CANDIDATE",
        help="rank the guide / reflect+guide / reflect candidates (all, or those named)",
    )
    ap.add_argument(
        "--table",
        nargs="+",
        default=None,
        metavar="CANDIDATE",
        help="per-cell table of these --modes candidates, with identity and reversed controls",
    )
    ap.add_argument("--out", type=pathlib.Path, default=None, help="also write the markdown here")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    start = time.time()
    if args.sweep:
        text = sweep(args.size)
    elif args.modes is not None:
        text = mode_sweep(args.size, args.modes or None)
    elif args.table:
        text = mode_table(args.size, args.table)
        print(text)
    else:
        text = markdown(tables(args.size))
        print(text)
    print(f"\n(defaults {DEFAULTS}; {time.time() - start:.0f} s)")
    if args.out is not None:
        args.out.write_text(text + "\n")
    return text


if __name__ == "__main__":
    main()
