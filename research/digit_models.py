"""Denoisers for the image-like yardstick: MLPs on scikit-learn's 8×8 digits, trained with EMA
weights, unconditional or class-conditional (label dropout, so classifier-free guidance works).

The split is :func:`research.learned.digits_split`'s (the same 400 held-back digits), with labels.
Training is seeded, deterministic, one CPU thread, and cached beside the learned yardstick's models
(:func:`research.learned.cache_dir`), keyed by a hash of the config. Every kept checkpoint holds the
EMA weights at that iteration (the early-checkpoint weak model is an early EMA, as a user's would be).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import asdict, dataclass
from typing import Callable

import torch
from torch import nn

from .learned import MLPDenoiser, cache_dir

CLASSES = 10
NULL = CLASSES  # the "no label" index the conditional model learns under label dropout


def digits_labelled(held_back: int = 400, seed: int = 0):
    """``(train_x, train_y), (held_x, held_y)``: pixels in [-1, 1], the learned yardstick's split."""
    from sklearn.datasets import load_digits

    raw = load_digits()
    data = torch.as_tensor(raw.data, dtype=torch.float32) / 8.0 - 1.0
    labels = torch.as_tensor(raw.target, dtype=torch.long)
    order = torch.randperm(data.shape[0], generator=torch.Generator().manual_seed(seed))
    train, held = order[held_back:], order[:held_back]
    return (data[train], labels[train]), (data[held], labels[held])


class CondMLPDenoiser(MLPDenoiser):
    """:class:`MLPDenoiser` with a one-hot label (``NULL`` = unconditional) appended to its input."""

    def __init__(self, dim: int, width: int, depth: int, sigma_data: float, freqs: int = 8):
        super().__init__(dim + CLASSES + 1, width, depth, sigma_data, freqs)
        self.dim = dim
        self.net[-1] = nn.Linear(width, dim)

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        s = torch.as_tensor(sigma, dtype=x.dtype).expand(x.shape[0]).reshape(-1, 1)
        sd2 = self.sigma_data**2
        total = (s * s + sd2).sqrt()
        angle = (s.clamp_min(1e-12).log() / 4) * self.freqs
        onehot = nn.functional.one_hot(labels, CLASSES + 1).to(x.dtype)
        f = self.net(torch.cat([x / total, onehot, angle.sin(), angle.cos()], dim=1))
        return sd2 / total**2 * x + s * self.sigma_data / total * f


@dataclass(frozen=True)
class DigitConfig:
    width: int
    iters: int
    conditional: bool = False
    depth: int = 3
    batch: int = 256
    lr: float = 2e-3
    seed: int = 0
    ema: float = 0.999  # EMA decay (with the usual warm-up, min(ema, (1 + i) / (10 + i)))
    label_dropout: float = 0.15
    p_mean: float = -1.2
    p_std: float = 1.2
    checkpoints: tuple = ()

    def key(self) -> str:
        text = json.dumps({"kind": "digit-ema", **asdict(self)}, sort_keys=True)
        tag = "cond" if self.conditional else "uncond"
        return f"digits-{tag}-w{self.width}-{hashlib.sha256(text.encode()).hexdigest()[:12]}"


def _model(cfg: DigitConfig, sigma_data: float) -> nn.Module:
    if cfg.conditional:
        return CondMLPDenoiser(64, cfg.width, cfg.depth, sigma_data)
    return MLPDenoiser(64, cfg.width, cfg.depth, sigma_data)


def _loss(model, cfg: DigitConfig, x0, y, g, sd: float):
    sigma = (torch.randn(cfg.batch, generator=g) * cfg.p_std + cfg.p_mean).exp()
    noisy = x0 + sigma[:, None] * torch.randn(x0.shape, generator=g)
    weight = (sigma**2 + sd**2) / (sigma * sd) ** 2
    if cfg.conditional:
        drop = torch.rand(cfg.batch, generator=g) < cfg.label_dropout
        out = model(noisy, sigma, torch.where(drop, torch.full_like(y, NULL), y))
    else:
        out = model(noisy, sigma)
    return (weight[:, None] * (out - x0) ** 2).mean()


def train_digits(cfg: DigitConfig) -> dict:
    """``{"weights": {iteration: EMA state_dict}, "sigma_data": ...}``; deterministic."""
    (data, labels), _ = digits_labelled()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        g = torch.Generator().manual_seed(cfg.seed)
        torch.manual_seed(cfg.seed)
        sd = float(data.std())
        model = _model(cfg, sd)
        ema = {k: v.clone() for k, v in model.state_dict().items()}
        opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 0.5 * (1 + math.cos(math.pi * i / cfg.iters)))
        kept = {}
        for it in range(1, cfg.iters + 1):
            idx = torch.randint(0, data.shape[0], (cfg.batch,), generator=g)
            loss = _loss(model, cfg, data[idx], labels[idx], g, sd)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            decay = min(cfg.ema, (1 + it) / (10 + it))
            with torch.no_grad():
                for k, v in model.state_dict().items():
                    ema[k].mul_(decay).add_(v, alpha=1 - decay)
            if it in cfg.checkpoints or it == cfg.iters:
                kept[it] = {k: v.clone() for k, v in ema.items()}
        return {"sigma_data": sd, "weights": kept}
    finally:
        torch.set_num_threads(threads)


def load_digits_model(cfg: DigitConfig, iteration: int | None = None) -> Callable:
    """The EMA model (final, or at ``iteration``): ``D(x, σ)``, or ``D(x, σ, labels)`` when
    conditional. Trains once and caches on disk."""
    path = cache_dir() / f"{cfg.key()}.pt"
    if path.exists():
        result = torch.load(path, weights_only=True)
    else:
        result = train_digits(cfg)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        torch.save(result, tmp)
        os.replace(tmp, path)
    model = _model(cfg, result["sigma_data"])
    model.load_state_dict(result["weights"][cfg.iters if iteration is None else iteration])
    model.eval().requires_grad_(False)

    @torch.no_grad()
    def denoise(*args):
        return model(*args)

    return denoise


def with_cfg(model: Callable, labels: torch.Tensor, scale: float) -> Callable:
    """A conditional model with classifier-free guidance at ``scale`` for fixed ``labels``, as a
    denoiser ``D(x, σ)``; ``scale`` 1 is the conditional model alone (one pass, as in ComfyUI)."""

    def denoise(x, sigma):
        cond = model(x, sigma, labels)
        if scale == 1.0:
            return cond
        uncond = model(x, sigma, torch.full_like(labels, NULL))
        return uncond + scale * (cond - uncond)

    denoise.passes = 1 if scale == 1.0 else 2
    return denoise
