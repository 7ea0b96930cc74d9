"""The measurements behind the pack's defaults (docs/defaults.md: the exact-denoiser toy).

    python -m research.experiments [--out FILE] [--seeds N] [--points N] [--schedule normal|karras] [--modes]

Runs on the toy of :mod:`research` (exact Gaussian-mixture denoisers, SD1.x-type discrete
VP schedule in sigma space, ComfyUI's ``normal`` scheduler) a sweep over the reflection count λ,
the reflection window (``reflect_end_percent``), the inversion label, repeats and step counts, with

* the real pair (weak distorted like the strong model, twice as much): reflection should help;
* the **identity control** (weak = strong): reflection should do nothing; whatever it changes is
  inversion error (reported as ``drift``, the RMS distance to strong-only samples from the same
  noise);
* the **negative control** (weak distorted in an unrelated direction): reflection should not help;

and as baselines strong-only sampling at the same steps and at EQUAL model evaluations
(T + 2·reflections steps), and autoguidance ``D_w + w (D_s - D_w)`` (2 evaluations per step) at
equal evaluations. Prints a markdown table; ``--out FILE`` also writes it to FILE and the raw
numbers to FILE with a ``.json`` suffix. Takes about 100 s on 2 (shared) CPU cores.

``--modes`` instead prints the three modes side by side: ``guide`` (``D_s + w (D_s - D_w)`` on the
planned steps, one extra evaluation each) and ``reflect+guide`` beside ``reflect``, over windows and
w, each against strong-only at the same steps and at equal evaluations, with both controls.

MMD² is ×10³ (RBF kernel, bandwidth 0.5, unbiased; about ±0.3 is sampling noise at the default
sizes), mode KL is ×10³.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import time
from dataclasses import dataclass
from typing import Callable, Optional

import torch

from w2sd_core.plan import ReflectionPlan
from w2sd_core import TOY, Preset, sample_euler, sample_euler_plain
from .mixtures import DiscreteVPSchedule, ToyProblem, mmd2, mode_kl, toy_problem


def autoguided(strong, weak, w: float):
    """Autoguidance: ``D_w + w (D_s - D_w)``, two evaluations per call."""

    def denoise(x, sigma):
        dw = weak(x, sigma)
        return dw + w * (strong(x, sigma) - dw)

    return denoise


@dataclass
class Bench:
    """One toy problem, one schedule family, fixed noise seeds and a fixed reference sample."""

    problem: ToyProblem
    schedule: Callable[[int], torch.Tensor]
    percent_to_sigma: Callable[[float], float]
    seeds: tuple = (0, 1, 2)
    points: int = 2000
    reference_points: int = 3000
    bandwidth: float = 0.5

    def __post_init__(self):
        self.reference = self.problem.ideal.sample(self.reference_points, torch.Generator().manual_seed(10_000))
        self._reference_term = None
        self._cache = {}

    def noise(self) -> torch.Tensor:
        """All seeds' noise in one batch (one model call per step for every seed)."""
        return torch.cat([torch.randn(self.points, 2, generator=torch.Generator().manual_seed(s)) for s in self.seeds])

    def split(self, x: torch.Tensor) -> list[torch.Tensor]:
        return list(x.split(self.points))

    def mmd(self, x: torch.Tensor) -> float:
        # the reference-reference term is the same for every run: computed once
        if self._reference_term is None:
            self._reference_term = mmd2(self.reference, self.reference, self.bandwidth, parts=True)[0]
        xx, _, xy = mmd2(x, self.reference, self.bandwidth, parts=True, skip_yy=True)
        return xx + self._reference_term - 2 * xy

    def metrics(self, x: torch.Tensor) -> dict:
        runs = self.split(x)
        ideal = self.problem.ideal
        return {
            "mmd": 1e3 * sum(self.mmd(r) for r in runs) / len(runs),
            "kl": 1e3 * sum(mode_kl(r, ideal) for r in runs) / len(runs),
        }

    def plain(self, denoise, steps: int, key=None) -> torch.Tensor:
        """Euler samples over ``steps`` steps, all seeds in one batch (cached under ``key``)."""
        if key is not None and (key, steps) in self._cache:
            return self._cache[key, steps]
        sigmas = self.schedule(steps)
        out = sample_euler_plain(denoise, self.noise() * sigmas[0], sigmas)
        if key is not None:
            self._cache[key, steps] = out
        return out

    def plain_metrics(self, denoise, steps: int, key: str) -> dict:
        if (key, steps, "metrics") not in self._cache:
            self._cache[key, steps, "metrics"] = self.metrics(self.plain(denoise, steps, key))
        return self._cache[key, steps, "metrics"]

    def reflected(self, weak, steps: int, plan: ReflectionPlan, inversion: str) -> torch.Tensor:
        sigmas = self.schedule(steps)
        return sample_euler(
            self.problem.strong, self.noise() * sigmas[0], sigmas, weak=weak, plan=plan, inversion=inversion
        )

    def plan(self, steps: int, lam: int, end_percent: float, repeats: int) -> ReflectionPlan:
        return ReflectionPlan.until_percent(end_percent, self.percent_to_sigma, steps=lam, repeats=repeats)


def _drift(x, base) -> float:
    """RMS distance between two runs from the same noise."""
    return float((x - base).norm(dim=1).pow(2).mean().sqrt())


def run_config(bench: Bench, steps: int, lam: int, end_percent: float, inversion: str, repeats: int) -> dict:
    p = bench.problem
    plan = bench.plan(steps, lam, end_percent, repeats)
    sigmas = bench.schedule(steps)
    reflections = plan.repeats * len(plan.reflected_steps(sigmas))
    evals = steps + 2 * reflections
    strong_same = bench.plain(p.strong, steps, key="strong")
    row = {
        "steps": steps,
        "lam": lam,
        "end_percent": end_percent,
        "inversion": inversion,
        "repeats": repeats,
        "reflections": reflections,
        "evals": evals,
        "strong_same": bench.plain_metrics(p.strong, steps, "strong")["mmd"],
        "strong_equal": bench.plain_metrics(p.strong, evals, "strong")["mmd"],
    }
    if reflections == 0:
        w2sd = ident = neg = strong_same
    else:
        w2sd = bench.reflected(p.weak, steps, plan, inversion)
        ident = bench.reflected(p.strong, steps, plan, inversion)
        neg = bench.reflected(p.negative_weak, steps, plan, inversion)
    m = bench.metrics(w2sd)
    row.update(
        w2sd=m["mmd"],
        w2sd_kl=m["kl"],
        identity=bench.metrics(ident)["mmd"],
        identity_drift=_drift(ident, strong_same),
        negative=bench.metrics(neg)["mmd"],
    )
    return row


def baselines(bench: Bench, steps: int) -> dict:
    p = bench.problem
    equal = steps + 2 * (steps - 1)  # the evaluations of λ = T - 1, one repeat
    ag_steps = equal // 2  # autoguidance: 2 evaluations per step
    out = {"steps": steps}
    for name, den, n, key in (
        ("ideal_euler", p.ideal, steps, "ideal"),
        ("weak", p.weak, steps, "weak"),
        ("strong", p.strong, steps, "strong"),
        ("strong_equal_full", p.strong, equal, "strong"),
        ("autoguidance_w2_equal_full", autoguided(p.strong, p.weak, 2.0), ag_steps, "ag2"),
    ):
        m = bench.plain_metrics(den, n, key)
        out[name] = {"steps": n, **m}
    exact = torch.cat([p.strong.sample(bench.points, torch.Generator().manual_seed(20_000 + s)) for s in bench.seeds])
    out["strong_exact_samples"] = {"steps": None, **bench.metrics(exact)}
    return out


def sweep(bench: Bench, step_counts=(20, 50)) -> dict:
    rows, base = [], {}
    for steps in step_counts:
        base[steps] = baselines(bench, steps)
        configs = [(0, 1.0, "next", 1)]
        for lam in (steps // 2, steps - 1):
            for inversion in ("next", "current", "official"):
                for repeats in (1, 2):
                    configs.append((lam, 1.0, inversion, repeats))
        # reflection windows (the nodes' reflect_end_percent), incl. the default
        for end_percent in sorted({0.7, 0.8, 0.85, 0.9, 0.95, TOY.end_percent}):
            configs.append((-1, end_percent, "next", 1))
        for end_percent in (0.8, 0.9):
            configs.append((-1, end_percent, "official", 1))
        for lam, end_percent, inversion, repeats in configs:
            rows.append(run_config(bench, steps, lam, end_percent, inversion, repeats))
    return {"rows": rows, "baselines": base}


def mode_presets() -> dict:
    """guide over plans x w, and reflect / reflect+guide on the same windows (λ = -1, inversion next)."""
    out = {}
    for end in (1.0, 0.8, 0.5, 0.3):
        out[f"reflect e{end}"] = Preset(end_percent=end, mode="reflect")
        for w in (0.25, 0.5, 1.0, 2.0):
            out[f"guide e{end} w{w}"] = Preset(end_percent=end, mode="guide", guidance=w)
        out[f"reflect+guide e{end} w1.0"] = Preset(end_percent=end, mode="reflect+guide", guidance=1.0)
    return out


def run_mode(bench: Bench, steps: int, name: str, preset: Preset) -> dict:
    """One candidate: the real pair, the identity control (weak = strong) and the negative control,
    against strong-only at the same steps and at equal evaluations (T + 2·reflections + guided)."""
    p, sigmas = bench.problem, bench.schedule(steps)
    evals = preset.evaluations(sigmas, bench.percent_to_sigma)
    plan = preset.plan(bench.percent_to_sigma)

    def sample(weak):
        return sample_euler(
            p.strong,
            bench.noise() * sigmas[0],
            sigmas,
            weak=weak,
            plan=plan,
            inversion=preset.inversion,
            mode=preset.mode,
            guidance=preset.guidance,
        )

    same = bench.plain_metrics(p.strong, steps, "strong")["mmd"]
    ident = sample(p.strong)
    return {
        "steps": steps,
        "candidate": name,
        "evals": evals,
        "strong_same": same,
        "strong_equal": bench.plain_metrics(p.strong, evals, "strong")["mmd"],
        "mmd": bench.metrics(sample(p.weak))["mmd"],
        "identity": bench.metrics(ident)["mmd"],
        "identity_drift": _drift(ident, bench.plain(p.strong, steps, key="strong")),
        "negative": bench.metrics(sample(p.negative_weak))["mmd"],
    }


def mode_markdown(rows: list[dict]) -> str:
    lines = [
        "| T | candidate | evals | MMD² | / strong@T | / strong@eq | identity / strong@T | drift "
        "| negative / strong@T |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['steps']} | {r['candidate']} | {r['evals']} | {r['mmd']:.2f} "
            f"| **{r['mmd'] / r['strong_same']:.3f}** "
            f"| {r['mmd'] / r['strong_equal']:.3f} | {r['identity'] / r['strong_same']:.3f} "
            f"| {r['identity_drift']:.3f} | {r['negative'] / r['strong_same']:.3f} |"
        )
    return "\n".join(lines)


def _f(v, nd=1):
    return "—" if v is None else f"{v:.{nd}f}"


def markdown(result: dict) -> str:
    lines = []
    for steps, b in result["baselines"].items():
        lines.append(f"Baselines, T = {steps} (MMD² ×10³ / mode KL ×10³):")
        lines.append("")
        lines.append("| run | steps | MMD² | mode KL |")
        lines.append("|---|---:|---:|---:|")
        for name, m in b.items():
            if name == "steps":
                continue
            lines.append(
                f"| {name} | {m['steps'] if m['steps'] is not None else '—'} | {_f(m['mmd'], 2)} | {_f(m['kl'])} |"
            )
        lines.append("")
    lines.append(
        "Reflection sweep (MMD² ×10³ to the ideal; lower is better). `strong@T`: strong-only at the "
        "same steps; `strong@eq`: strong-only at T + 2·reflections steps (equal evaluations); "
        "`identity`: weak = strong (should equal strong@T); `drift`: RMS distance of the identity "
        "run to strong-only from the same noise (pure inversion error); `negative`: unrelated weak."
    )
    lines.append("")
    lines.append(
        "| T | λ | end % | inversion | repeats | evals | W2SD | mode KL | strong@T | strong@eq | identity | drift | negative |"
    )
    lines.append("|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in result["rows"]:
        default = (  # the TOY preset (what the demo reflects with)
            r["lam"] == TOY.steps
            and r["repeats"] == TOY.repeats
            and r["inversion"] == TOY.inversion
            and abs(r["end_percent"] - TOY.end_percent) < 1e-9
        )
        lines.append(
            f"| {r['steps']}{' (TOY)' if default else ''} | {r['lam']} | {r['end_percent']:.2f} | {r['inversion']} | {r['repeats']} | {r['evals']} "
            f"| **{_f(r['w2sd'], 2)}** | {_f(r['w2sd_kl'])} | {_f(r['strong_same'], 2)} | {_f(r['strong_equal'], 2)} "
            f"| {_f(r['identity'], 2)} | {_f(r['identity_drift'], 3)} | {_f(r['negative'], 2)} |"
        )
    return "\n".join(lines)


def make_bench(schedule: str = "normal", seeds=(0, 1, 2), points: int = 2000, **toy_kwargs) -> Bench:
    vp = DiscreteVPSchedule()
    if schedule not in ("normal", "karras"):
        raise ValueError(f"schedule must be 'normal' or 'karras', got {schedule!r}")
    return Bench(
        problem=toy_problem(**toy_kwargs),
        schedule=getattr(vp, schedule),
        percent_to_sigma=vp.percent_to_sigma,
        seeds=tuple(seeds),
        points=points,
    )


def main(argv: Optional[list[str]] = None) -> dict:
    ap = argparse.ArgumentParser(prog="python -m research.experiments", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=pathlib.Path, default=None, help="write the markdown table here (and FILE.json)")
    ap.add_argument("--seeds", type=int, default=3, help="noise seeds averaged per cell")
    ap.add_argument("--points", type=int, default=2000, help="samples per seed")
    ap.add_argument("--schedule", default="normal", choices=("normal", "karras"))
    ap.add_argument("--steps", type=int, nargs="+", default=[20, 50])
    ap.add_argument("--modes", action="store_true", help="the reflect / guide / reflect+guide table instead")
    args = ap.parse_args(argv)
    start = time.time()
    torch.set_num_threads(1)  # tiny tensors: threads only add contention
    bench = make_bench(args.schedule, seeds=range(args.seeds), points=args.points)
    if args.modes:
        rows = [run_mode(bench, t, k, v) for t in args.steps for k, v in mode_presets().items()]
        print(mode_markdown(rows))
        print(f"\n({args.schedule} schedule, {args.seeds} seeds x {args.points} points, {time.time() - start:.0f} s)")
        return {"rows": rows}
    result = sweep(bench, tuple(args.steps))
    result["settings"] = {
        "schedule": args.schedule,
        "seeds": args.seeds,
        "points": args.points,
        "seconds": round(time.time() - start, 1),
    }
    text = markdown(result)
    print(text)
    print(f"\n({args.schedule} schedule, {args.seeds} seeds x {args.points} points, {result['settings']['seconds']} s)")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
        args.out.with_suffix(".json").write_text(json.dumps(result, indent=1, default=float))
    return result


if __name__ == "__main__":
    main()
