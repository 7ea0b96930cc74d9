"""W2SD on a 2-D toy with exact denoisers: ideal vs weak vs strong vs W2SD vs strong at equal cost.

    python -m research.demo [--out DIR] [--seed N] [--steps T]

The ideal distribution is a ring of 8 Gaussian modes; the strong model under-weights every other
mode, shrinks the ring a little and blurs the modes; the weak model does the same twice as much
(:func:`research.toy_problem`). All denoisers are exact posterior means, so the only errors
are the models' distortions and the sampler's discretisation. Sampling is deterministic Euler
(= DDIM) on the SD1.x noise schedule with ComfyUI's ``normal`` scheduler, W2SD with the pack's
``TOY`` preset (every step above 80 % of the denoising, inversion ``next``); the pack's defaults
reflect nothing (docs/defaults.md).

Writes ``w2sd_demo.png`` (samples over the ideal density), ``metrics.json`` and ``metrics.md`` to
DIR (default ./demo_out) and prints the markdown table. Runs in a few seconds on a CPU.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import time
from dataclasses import dataclass
from typing import Optional

import torch

from w2sd_core.plan import ReflectionPlan
from w2sd_core import TOY, sample_euler, sample_euler_plain
from .mixtures import DiscreteVPSchedule, mmd2, mode_kl, mode_weights, toy_problem

BANDWIDTH = 0.5  # RBF kernel bandwidth of the MMD (the toy's modes are 0.15 wide, 1.15 apart)


@dataclass
class _Setup:
    """What every run of the demo shares: the toy problem, the schedule, the W2SD plans, the noise."""

    steps: int
    points: int
    problem: object
    vp: DiscreteVPSchedule
    sigmas: torch.Tensor
    plan: ReflectionPlan
    full: ReflectionPlan
    reflections: int
    evals: int
    evals_full: int
    g: torch.Generator
    noise: torch.Tensor
    reference: torch.Tensor


def _setup(seed: int, steps: int, points: int) -> _Setup:
    problem = toy_problem()
    vp = DiscreteVPSchedule()
    sigmas = vp.normal(steps)
    plan = TOY.plan(vp.percent_to_sigma)
    reflections = plan.repeats * len(plan.reflected_steps(sigmas))
    full = ReflectionPlan(steps=-1)
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(points, 2, generator=g)
    reference = problem.ideal.sample(points, torch.Generator().manual_seed(seed + 1_000_003))
    return _Setup(
        steps=steps,
        points=points,
        problem=problem,
        vp=vp,
        sigmas=sigmas,
        plan=plan,
        full=full,
        reflections=reflections,
        evals=steps + 2 * reflections,
        evals_full=steps + full.extra_evaluations(sigmas),
        g=g,
        noise=noise,
        reference=reference,
    )


def _sample_runs(d: _Setup) -> list:
    """Every variant's samples, as ``(key, label, model evaluations, samples)``."""
    problem, steps, evals, sigmas, noise = d.problem, d.steps, d.evals, d.sigmas, d.noise

    def euler(model, n):
        s = d.vp.normal(n)
        return sample_euler_plain(model, noise * s[0], s)

    def w2sd(weak, p=d.plan):
        return sample_euler(problem.strong, noise * sigmas[0], sigmas, weak=weak, plan=p, inversion=TOY.inversion)

    return [
        ("ideal", "ideal (exact samples)", None, problem.ideal.sample(d.points, d.g)),
        ("weak", f"weak, {steps} steps", steps, euler(problem.weak, steps)),
        ("strong", f"strong, {steps} steps", steps, euler(problem.strong, steps)),
        ("strong_equal", f"strong, {evals} steps (equal evaluations)", evals, euler(problem.strong, evals)),
        ("w2sd", f"W2SD (toy preset), {steps} steps", evals, w2sd(problem.weak)),
        ("w2sd_full", f"W2SD λ = T-1 (no window), {steps} steps", d.evals_full, w2sd(problem.weak, d.full)),
        # guide mode on the same planned steps: one extra evaluation each, no inversion
        (
            "guide",
            f"guide w = 1 (same plan), {steps} steps",
            steps + d.reflections // d.plan.repeats,
            sample_euler(
                problem.strong, noise * sigmas[0], sigmas, weak=problem.weak, plan=d.plan, mode="guide", guidance=1.0
            ),
        ),
        ("identity", "identity control (weak = strong)", evals, w2sd(problem.strong)),
        ("negative", "negative control (unrelated weak)", evals, w2sd(problem.negative_weak)),
    ]


def _metric_rows(d: _Setup, runs: list) -> list[dict]:
    """Each run's MMD² to the reference samples, its mode-weight KL and its mode weights."""
    return [
        {
            "run": key,
            "label": label,
            "evaluations": n_evals,
            "mmd2_x1e3": round(1e3 * mmd2(x, d.reference, BANDWIDTH), 3),
            "mode_kl_x1e3": round(1e3 * mode_kl(x, d.problem.ideal), 2),
            "mode_weights": [round(float(v), 4) for v in mode_weights(x, d.problem.ideal)],
        }
        for key, label, n_evals, x in runs
    ]


def _settings(d: _Setup, seed: int) -> dict:
    return {
        "seed": seed,
        "steps": d.steps,
        "points": d.points,
        "scheduler": "normal (SD1.x VP sigmas)",
        "plan": {
            "steps": d.plan.steps,
            "repeats": d.plan.repeats,
            "end_percent": TOY.end_percent,
            "sigma_min": d.plan.sigma_min,
        },
        "inversion": TOY.inversion,
        "reflections": d.reflections,
        "mmd_bandwidth": BANDWIDTH,
        "ideal_weights": [round(float(v), 4) for v in d.problem.ideal.weights],
    }


def _write_outputs(out_dir: pathlib.Path, result: dict, d: _Setup, runs: list, figure: bool, start: float) -> None:
    """The figure (if ``figure``), metrics.md and metrics.json; fills in ``result["files"]`` and the
    seconds taken since ``start``."""
    files = []
    if figure:
        panels = [
            (label, x)
            for key, label, _, x in runs
            if key in ("ideal", "weak", "strong", "strong_equal", "w2sd", "negative")
        ]
        files.append(str(save_figure(out_dir / "w2sd_demo.png", d.problem.ideal, panels, result["rows"])))
    md = markdown_table(result)
    (out_dir / "metrics.md").write_text(md + "\n")
    files.append(str(out_dir / "metrics.md"))
    result["files"] = files + [str(out_dir / "metrics.json")]
    result["settings"]["seconds"] = round(time.time() - start, 2)
    (out_dir / "metrics.json").write_text(json.dumps(result, indent=1))


def run_demo(out_dir="demo_out", seed: int = 0, *, steps: int = 20, points: int = 3000, figure: bool = True) -> dict:
    """Sample every variant, write the figure and the tables to ``out_dir``; returns the metrics
    (``{"rows": [...], "settings": {...}, "files": [...]}``)."""
    start = time.time()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: threads only add contention
    try:
        out_dir = pathlib.Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        d = _setup(seed, steps, points)
        runs = _sample_runs(d)
        result = {"settings": _settings(d, seed), "rows": _metric_rows(d, runs)}
        _write_outputs(out_dir, result, d, runs, figure, start)
        return result
    finally:
        torch.set_num_threads(threads)


def markdown_table(result: dict) -> str:
    s = result["settings"]
    lines = [
        f"W2SD toy demo: {s['steps']} steps, seed {s['seed']}, {s['points']} samples per run; "
        f"W2SD = λ {s['plan']['steps']}, end {s['plan']['end_percent']:.0%}, inversion "
        f"`{s['inversion']}`, {s['reflections']} reflections. MMD² (×10³, RBF bandwidth "
        f"{s['mmd_bandwidth']}) to ideal samples and mode-weight KL (×10³); lower is better.",
        "",
        "| run | model evaluations | MMD² ×10³ | mode KL ×10³ |",
        "|---|---:|---:|---:|",
    ]
    for r in result["rows"]:
        ev = "—" if r["evaluations"] is None else str(r["evaluations"])
        lines.append(f"| {r['label']} | {ev} | {r['mmd2_x1e3']:.2f} | {r['mode_kl_x1e3']:.1f} |")
    return "\n".join(lines)


def save_figure(path, ideal, panels, rows, max_points: int = 1500):
    """Samples over the ideal density, one panel per run. matplotlib is imported here only, so the
    core never needs it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = {r["label"]: r for r in rows}
    lim = 2.4
    grid = torch.linspace(-lim, lim, 200, dtype=torch.float64)
    gx, gy = torch.meshgrid(grid, grid, indexing="xy")
    density = ideal.log_prob(torch.stack([gx.flatten(), gy.flatten()], 1)).exp().reshape(200, 200)
    top = float(density.max())
    levels = [top * f for f in (0.02, 0.1, 0.3, 0.6)] + [top * 1.01]
    cols = 3
    fig, axes = plt.subplots((len(panels) + cols - 1) // cols, cols, figsize=(10.5, 7.2), dpi=72)
    for ax, (label, x) in zip(axes.flat, panels):
        # a few flat density bands (they compress well in a PNG) under the samples
        ax.contourf(gx.numpy(), gy.numpy(), density.numpy(), levels=levels, cmap="Blues", alpha=0.6)
        pts = x[:max_points].float().numpy()
        ax.scatter(pts[:, 0], pts[:, 1], s=2.0, c="#c0392b", alpha=0.5, linewidths=0)
        m = metrics[label]
        ax.set_title(f"{label}\nMMD² {m['mmd2_x1e3']:.1f}e-3, mode KL {m['mode_kl_x1e3']:.0f}e-3", fontsize=9)
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_aspect("equal")
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def main(argv: Optional[list[str]] = None) -> dict:
    ap = argparse.ArgumentParser(prog="python -m research.demo", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="demo_out", help="output folder (default ./demo_out)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=20, help="sampler steps T (default 20, KSampler's)")
    args = ap.parse_args(argv)
    result = run_demo(args.out, args.seed, steps=args.steps)
    print(markdown_table(result))
    print(f"\nwrote {', '.join(result['files'])} in {result['settings']['seconds']} s")
    return result


if __name__ == "__main__":
    main()
