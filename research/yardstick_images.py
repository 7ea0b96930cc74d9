"""The image-like yardstick: W2SD's modes on 8×8 digits, scored the way the field scores images.

    python -m research.yardstick_images [--size full|test] [--out DIR]

Models (:mod:`.digit_models`, EMA weights, trained once per seed and cached): an unconditional
strong MLP and three weak ones (``early``: 10 % of the same training; ``small``: a quarter of the
width trained as long; ``small+early``: both), and the same four class-conditional (label dropout),
sampled with classifier-free guidance at ``CFG_SCALE``; there a fourth pair is the CFG pair
(weak = the strong model at cfg 1, as Z-Sampling and a prompt pair use it).
Samplers :mod:`.samplers` (euler, heun, dpmpp_2m, through the pack's own loop) on ComfyUI's
``normal`` / ``karras`` schedules for an EDM model. Metrics :mod:`.digit_features`: samples clamped,
FD in a digit classifier's features (headline), k-NN precision / recall beside it, and the clamped
and raw pixel FD for comparison with the old yardstick (:mod:`.yardstick`).

Every candidate is run per cell and seed (models and noise both seeded) and reported as a ratio to
plain sampling at the same steps (``@T``) and at equal evaluations (``@eq``: plain with as many
sampler evaluations); headline candidates also get the identity control (weak = strong) and the
reversed control (the pair swapped). Tables: :mod:`.yardstick_tables`. Full size: about 15 min on
one thread including training; ``--size test`` is CI's reduced run.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import time
from dataclasses import dataclass, field, replace

import torch

from w2sd_core import DEFAULTS, PAPER, Preset

from .digit_features import Scorer
from .digit_models import DigitConfig, load_digits_model, with_cfg
from .learned import EDMSchedule
from .samplers import Candidate, Counted, sample, steps_for

EDM = EDMSchedule()
CFG_SCALE = 1.5
#: The nodes' default (w2sd_core.DEFAULTS), measured beside the other candidates (docs/defaults.md).
RECOMMENDED_NAME = f"guide w{DEFAULTS.guidance}"


def candidates() -> dict:
    out = {}
    for w in (0.25, 0.5, 1.0, 2.0):
        out[f"guide w{w}"] = Candidate(Preset(mode="guide", guidance=w))
    for end in (0.3, 0.5, 0.8):
        for w in (0.25, 0.5, 1.0):
            out[f"guide e{end} w{w}"] = Candidate(Preset(mode="guide", end_percent=end, guidance=w))
    for cap in (0.05, 0.1, 0.2, 0.3):
        out[f"capped {cap} w2"] = Candidate(Preset(mode="guide", guidance=2.0), cap=cap)
    for cap in (0.1, 0.2):
        out[f"capped {cap} w1"] = Candidate(Preset(mode="guide", guidance=1.0), cap=cap)
    out["reflect next"] = Candidate(Preset(mode="reflect", inversion="next"))
    out["reflect next e0.5"] = Candidate(Preset(mode="reflect", inversion="next", end_percent=0.5))
    out["reflect paper"] = Candidate(PAPER)
    return out


RECOMMENDED = candidates()[RECOMMENDED_NAME]
#: Candidates that also get the identity and reversed controls.
CONTROLLED = tuple(
    dict.fromkeys((RECOMMENDED_NAME, "guide w0.5", "guide w1.0", "capped 0.2 w2", "reflect next", "reflect paper"))
)
TEST = tuple(dict.fromkeys((RECOMMENDED_NAME, "guide w0.5", "capped 0.1 w1", "reflect next")))


@dataclass(frozen=True)
class Size:
    width: int
    iters: int
    points: int
    seeds: tuple
    cells: tuple  # (sampler, scheduler, steps)
    cond_cells: tuple
    candidates: tuple | None = None  # None: all of candidates()
    controlled: tuple = CONTROLLED
    weaks: tuple = ("early", "small", "small+early")
    cond_weaks: tuple = ("early", "small", "small+early", "cfg pair")


SIZES = {
    "full": Size(
        256,
        4000,
        1200,
        (0, 1),
        (
            ("euler", "normal", 20),
            ("euler", "karras", 50),
            ("heun", "karras", 16),
            ("heun", "normal", 32),
            ("dpmpp_2m", "karras", 20),
            ("dpmpp_2m", "normal", 50),
        ),
        (("euler", "karras", 20), ("heun", "karras", 16), ("dpmpp_2m", "karras", 30)),
    ),
    "test": Size(
        128,
        1500,
        800,
        (0,),
        (("euler", "karras", 20), ("dpmpp_2m", "normal", 20)),
        (("euler", "karras", 20),),
        candidates=TEST,
        controlled=TEST,
        weaks=("early", "small"),
        cond_weaks=("small", "cfg pair"),
    ),
}


@dataclass
class Models:
    """One seed's trained models: ``strong`` and ``weak[name]`` (unconditional), ``cond`` likewise."""

    strong: object
    weak: dict = field(default_factory=dict)
    cond: object = None
    cond_weak: dict = field(default_factory=dict)


def load_models(size: Size, seed: int) -> Models:
    out = Models(None)
    for conditional in (False, True):
        big = DigitConfig(size.width, size.iters, conditional, seed=seed, checkpoints=(size.iters // 10,))
        small = replace(big, width=size.width // 4)
        weak = {
            "early": load_digits_model(big, size.iters // 10),
            "small": load_digits_model(small),
            "small+early": load_digits_model(small, size.iters // 10),
        }
        if conditional:
            out.cond, out.cond_weak = load_digits_model(big), weak
        else:
            out.strong, out.weak = load_digits_model(big), weak
    return out


def pair(models: Models, conditional: bool, weak_name: str, labels):
    """(strong, weak) denoisers ``D(x, σ)`` of one cell."""
    if not conditional:
        return models.strong, models.weak[weak_name]
    strong = with_cfg(models.cond, labels, CFG_SCALE)
    if weak_name == "cfg pair":
        return strong, with_cfg(models.cond, labels, 1.0)
    return strong, with_cfg(models.cond_weak[weak_name], labels, CFG_SCALE)


def run(cell, strong, weak=None, candidate=None, *, sampling=None, noise):
    """(samples, sampler evaluations) of one run; ``sampling`` (default ``strong``) samples."""
    sampler, scheduler, steps = cell
    sigmas = EDM.schedule(scheduler, steps)
    counted = Counted(sampling or strong)
    s = counted if sampling is None else Counted(strong)
    w = Counted(weak) if weak is not None else None
    x = sample(
        sampler,
        counted,
        noise * sigmas[0],
        sigmas,
        weak=w,
        strong=s,
        candidate=candidate,
        percent_to_sigma=EDM.percent_to_sigma,
    )
    calls = counted.calls + (s.calls if s is not counted else 0) + (w.calls if w else 0)
    return x, calls


def plain_cfg_scales(candidate_names, table: dict) -> dict:
    """The plain CFG scale each candidate is equivalent to with the CFG pair (strong cfg s, weak
    cfg 1): guide w is exactly plain CFG at s + w (s - 1) on its planned steps; reflection is to
    first order plain CFG at 2 s - 1 (Z-Sampling); the capped guide has no fixed equivalent."""
    out = {}
    for name in candidate_names:
        preset = table[name].preset
        if table[name].cap is None and preset.mode == "guide":
            out[name] = CFG_SCALE + preset.guidance * (CFG_SCALE - 1)
        elif preset.mode == "reflect":
            out[name] = 2 * CFG_SCALE - 1
    return out


def measure_cell(models: Models, cell, weak_name: str, conditional: bool, size: Size, scorer, noise, labels):
    """One cell (one seed): a row per candidate with ratios to plain, and the baselines."""
    table = candidates()
    names = size.candidates or tuple(table)
    strong, weak = pair(models, conditional, weak_name, labels)
    plain = scorer(run(cell, strong, noise=noise)[0])
    eq_cache = {}

    def plain_at(evals):
        steps = steps_for(cell[0], evals)
        if steps not in eq_cache:
            eq_cache[steps] = scorer(run((cell[0], cell[1], steps), strong, noise=noise)[0])
        return eq_cache[steps]

    cfg_eq = plain_cfg_scales(names, table) if weak_name == "cfg pair" else {}
    rows = []
    for name in names:
        x, evals = run(cell, strong, weak, table[name], noise=noise)
        m = scorer(x)
        row = {"candidate": name, "evals": evals, "plain_fd": plain["fd"], **ratios(m, plain)}
        row["eq"] = m["fd"] / plain_at(evals)["fd"]
        if name in cfg_eq:
            ref = scorer(run(cell, with_cfg(models.cond, labels, cfg_eq[name]), noise=noise)[0])
            row["cfg_scale"], row["vs_cfg"] = cfg_eq[name], m["fd"] / ref["fd"]
        if name in size.controlled:
            row["identity"] = scorer(run(cell, strong, strong, table[name], noise=noise)[0])["fd"] / plain["fd"]
            rev, _ = run(cell, weak, strong, table[name], sampling=strong, noise=noise)
            row["reversed"] = scorer(rev)["fd"] / plain["fd"]
        rows.append(row)
    return rows


def ratios(m: dict, plain: dict) -> dict:
    return {
        "fd": m["fd"] / plain["fd"],
        "recall": m["recall"] - plain["recall"],
        "precision": m["precision"] - plain["precision"],
        "pixel": m["pixel_fd"] / plain["pixel_fd"],
        "raw": m["raw_fd"] / plain["raw_fd"],
    }


def measure(size_name: str = "full", log=print) -> list[dict]:
    """Every row of every table, for every seed."""
    size = SIZES[size_name]
    scorer = Scorer()
    rows = []
    for seed in size.seeds:
        models = load_models(size, seed)
        noise = torch.randn(size.points, 64, generator=torch.Generator().manual_seed(1000 + seed))
        labels = torch.randperm(size.points, generator=torch.Generator().manual_seed(2000 + seed)) % 10
        plan = [(c, w, False) for c in size.cells for w in size.weaks]
        plan += [(c, w, True) for c in size.cond_cells for w in size.cond_weaks]
        for cell, weak_name, conditional in plan:
            start = time.time()
            for r in measure_cell(models, cell, weak_name, conditional, size, scorer, noise, labels):
                rows.append({"seed": seed, "table": "cond" if conditional else "uncond", "weak": weak_name, **r})
                rows[-1].update(sampler=cell[0], scheduler=cell[1], steps=cell[2])
            log(f"seed {seed} {'cond' if conditional else 'uncond'} {cell} {weak_name}: {time.time() - start:.1f} s")
    return rows


def main(argv=None):
    from .yardstick_tables import report

    ap = argparse.ArgumentParser(prog="python -m research.yardstick_images", description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", default="full", choices=tuple(SIZES), help="full: the docs' tables; test: CI's run")
    ap.add_argument("--out", type=pathlib.Path, default=None, help="write rows.json and tables.md here")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    start = time.time()
    rows = measure(args.size, log=lambda s: print(s, flush=True))
    text = report(rows) + f"\n\n({args.size} size, {time.time() - start:.0f} s on {torch.get_num_threads()} thread)\n"
    print(text)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "rows.json").write_text(json.dumps(rows, indent=1))
        (args.out / "tables.md").write_text(text)
    return rows


if __name__ == "__main__":
    main()
