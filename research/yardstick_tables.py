"""Markdown tables from :func:`research.yardstick_images.measure`'s rows: seeds folded into
``mean ± half-range``, a ranking of every candidate over all cells, the per-cell headline table,
the controls and the CFG pair against plain CFG at the equivalent scale."""

from __future__ import annotations

from collections import defaultdict

#: The bar a default must clear in every cell: FD ratio at most this, recall at most 0.03 lower.
FD_BAR, RECALL_BAR = 0.90, -0.03
CELL_KEYS = ("table", "sampler", "scheduler", "steps", "weak")


def fold(rows: list[dict]) -> dict:
    """``{(cell..., candidate): {metric: [per-seed values]}}``."""
    out = defaultdict(lambda: defaultdict(list))
    for r in rows:
        key = tuple(r[k] for k in CELL_KEYS) + (r["candidate"],)
        for metric, value in r.items():
            if isinstance(value, float) or metric == "evals":
                out[key][metric].append(value)
    return out


def mean(values) -> float:
    return sum(values) / len(values)


def spread(values, digits: int = 2) -> str:
    half = (max(values) - min(values)) / 2
    return f"{mean(values):.{digits}f} ± {half:.{digits}f}" if len(values) > 1 else f"{values[0]:.{digits}f}"


def passes(stats: dict) -> bool:
    return mean(stats["fd"]) <= FD_BAR and mean(stats["recall"]) >= RECALL_BAR


def ranking(folded: dict) -> str:
    by_candidate = defaultdict(list)
    for key, stats in folded.items():
        by_candidate[key[-1]].append(stats)
    lines = [
        "| candidate | cells passing (FD ≤ 0.90, recall ≥ −0.03) | worst FD @T | mean FD @T | worst seed | "
        "worst FD @eq | worst recall Δ | worst clamped pixel FD | worst raw pixel FD |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, cells in by_candidate.items():
        fd = [mean(s["fd"]) for s in cells]
        lines.append(
            f"| {name} | {sum(passes(s) for s in cells)}/{len(cells)} | {max(fd):.3f} | {mean(fd):.3f} "
            f"| {max(max(s['fd']) for s in cells):.3f} | {max(mean(s['eq']) for s in cells):.3f} "
            f"| {min(mean(s['recall']) for s in cells):+.3f} | {max(mean(s['pixel']) for s in cells):.3f} "
            f"| {max(mean(s['raw']) for s in cells):.3f} |"
        )
    return "\n".join(lines)


def _cells(folded: dict) -> list:
    seen = []
    for key in folded:
        if key[:-1] not in seen:
            seen.append(key[:-1])
    return seen


def per_cell(folded: dict, names) -> str:
    """Per cell: plain FD, then per candidate FD ratio @T (± half-range), @eq (evals), recall Δ."""
    head = "| table | sampler | sched | T | weak | plain FD | " + " | ".join(
        f"{n}: FD @T · @eq (evals) · recall Δ" for n in names
    )
    lines = [head + " |", "|---|---|---|---:|---|---:|" + "---|" * len(names)]
    for cell in _cells(folded):
        parts = []
        for n in names:
            s = folded.get(cell + (n,))
            if s is None:
                parts.append("—")
                continue
            mark = "**" if passes(s) else ""
            parts.append(
                f"{mark}{spread(s['fd'])}{mark} · {mean(s['eq']):.2f} ({int(mean(s['evals']))}) · {mean(s['recall']):+.3f}"
            )
        plain = folded[cell + (names[0],)]["plain_fd"]
        lines.append("| " + " | ".join(str(c) for c in cell) + f" | {spread(plain, 1)} | " + " | ".join(parts) + " |")
    return "\n".join(lines)


def controls(folded: dict) -> str:
    names = sorted({k[-1] for k, s in folded.items() if "identity" in s})
    lines = [
        "| table | sampler | sched | T | weak | " + " | ".join(f"{n}: identity · reversed" for n in names) + " |",
        "|---|---|---|---:|---|" + "---|" * len(names),
    ]
    for cell in _cells(folded):
        parts = []
        for n in names:
            s = folded.get(cell + (n,), {})
            parts.append(f"{spread(s['identity'], 3)} · {spread(s['reversed'])}" if "identity" in s else "—")
        lines.append("| " + " | ".join(str(c) for c in cell) + " | " + " | ".join(parts) + " |")
    return "\n".join(lines)


def cfg_pair(folded: dict) -> str:
    lines = [
        "| sampler | sched | T | candidate | FD vs plain cfg s | equivalent cfg | FD vs plain at that cfg |",
        "|---|---|---:|---|---:|---:|---:|",
    ]
    for key, s in folded.items():
        if key[4] == "cfg pair":
            eq = f"{mean(s['cfg_scale']):.2f} | {spread(s['vs_cfg'])}" if "vs_cfg" in s else "— | —"
            lines.append(f"| {key[1]} | {key[2]} | {key[3]} | {key[-1]} | {spread(s['fd'])} | {eq} |")
    return "\n".join(lines)


def report(rows: list[dict], headline=None) -> str:
    from .yardstick_images import CFG_SCALE, CONTROLLED

    folded = fold(rows)
    names = headline or [n for n in CONTROLLED if any(k[-1] == n for k in folded)]
    return "\n\n".join(
        [
            "### Ranking over every cell (seed means)\n\n" + ranking(folded),
            "### Per cell (mean ± half-range over seeds; bold: FD ≤ 0.90 and recall ≥ −0.03)\n\n"
            + per_cell(folded, names),
            "### Controls: identity (weak = strong) and reversed (pair swapped), FD ratio\n\n" + controls(folded),
            f"### CFG pair (strong cfg {CFG_SCALE}, weak cfg 1) against plain CFG\n\n" + cfg_pair(folded),
        ]
    )
