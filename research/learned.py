"""A learned yardstick: small denoisers *trained* on two data sets, with weak = an early checkpoint
of the same training or a smaller network trained as long.

Exact denoisers (:mod:`.mixtures`) are perfectly smooth, so a one-step inversion through them is
nearly exact; learned ones are not, and the inversion error they leave is what decides where
reflection pays. The data sets:

* ``mixture``: the toy's ideal ring of 8 Gaussians (20 000 fixed training points); metric MMD²
  against exact samples of the mixture;
* ``digits``: scikit-learn's 8×8 digits (1797 images; 1397 for training, 400 held back), pixels
  scaled to [-1, 1]; metric the Fréchet distance in pixel space against the held-back images.

The models are MLPs with EDM preconditioning on the EDM noise range (σ 0.002-80), sampled with
ComfyUI's ``normal`` / ``karras`` schedulers and ``percent_to_sigma`` as ComfyUI computes them for
``ModelSamplingContinuousEDM`` (:class:`EDMSchedule`). Training is seeded, deterministic, one CPU
thread, and cached under ``$XDG_CACHE_HOME/comfyui-w2sd/yardstick/`` (else ``~/.cache/...``), keyed
by a hash of the training config. The benchmark that prints the tables is :mod:`.yardstick`.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import pathlib
from dataclasses import asdict, dataclass, replace
from typing import Callable

import torch
from torch import nn

from .mixtures import mmd2, toy_problem


@dataclass(frozen=True)
class EDMSchedule:
    """ComfyUI's schedulers and ``percent_to_sigma`` for a continuous EDM model sampling."""

    sigma_min: float = 0.002
    sigma_max: float = 80.0

    def normal(self, steps: int) -> torch.Tensor:
        """Linear in the timestep ``t = 0.25 ln σ`` from sigma_max to sigma_min, then 0."""
        t = torch.linspace(0.25 * math.log(self.sigma_max), 0.25 * math.log(self.sigma_min), steps, dtype=torch.float64)
        return torch.cat([(t / 0.25).exp(), t.new_zeros(1)]).float()

    def karras(self, steps: int, rho: float = 7.0) -> torch.Tensor:
        ramp = torch.linspace(0, 1, steps, dtype=torch.float64)
        lo, hi = self.sigma_min ** (1 / rho), self.sigma_max ** (1 / rho)
        return torch.cat([(hi + ramp * (lo - hi)) ** rho, torch.zeros(1, dtype=torch.float64)]).float()

    def schedule(self, name: str, steps: int) -> torch.Tensor:
        if name not in ("normal", "karras"):
            raise ValueError(f"scheduler must be 'normal' or 'karras', got {name!r}")
        return getattr(self, name)(steps)

    def percent_to_sigma(self, percent: float) -> float:
        if percent <= 0.0:
            return 999999999.9
        if percent >= 1.0:
            return 0.0
        lo = math.log(self.sigma_min)
        return math.exp((math.log(self.sigma_max) - lo) * (1.0 - percent) + lo)


class MLPDenoiser(nn.Module):
    """``D(x, σ) = c_skip x + c_out F(c_in x, embed(ln σ / 4))`` (EDM preconditioning)."""

    def __init__(self, dim: int, width: int, depth: int, sigma_data: float, freqs: int = 8):
        super().__init__()
        self.sigma_data = float(sigma_data)
        self.register_buffer("freqs", 2.0 ** torch.linspace(-2, 1, freqs))
        layers, size = [], dim + 2 * freqs
        for _ in range(depth):
            layers += [nn.Linear(size, width), nn.SiLU()]
            size = width
        self.net = nn.Sequential(*layers, nn.Linear(size, dim))

    def forward(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        s = torch.as_tensor(sigma, dtype=x.dtype).expand(x.shape[0]).reshape(-1, 1)
        sd2 = self.sigma_data**2
        total = (s * s + sd2).sqrt()
        angle = (s.clamp_min(1e-12).log() / 4) * self.freqs
        f = self.net(torch.cat([x / total, angle.sin(), angle.cos()], dim=1))
        return sd2 / total**2 * x + s * self.sigma_data / total * f


# -- data ------------------------------------------------------------------------------------------


def digits_split(held_back: int = 400, seed: int = 0):
    """(train, held-back) 8×8 digits as 64-vectors in [-1, 1]; scikit-learn is imported here only."""
    from sklearn.datasets import load_digits

    data = torch.as_tensor(load_digits().data, dtype=torch.float32) / 8.0 - 1.0
    order = torch.randperm(data.shape[0], generator=torch.Generator().manual_seed(seed))
    return data[order[held_back:]], data[order[:held_back]]


def training_data(name: str) -> torch.Tensor:
    if name == "mixture":
        return toy_problem().ideal.sample(20_000, torch.Generator().manual_seed(123))
    if name == "digits":
        return digits_split()[0]
    raise ValueError(f"unknown data set {name!r} (mixture, digits)")


# -- training --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainConfig:
    data: str
    width: int
    depth: int = 3
    iters: int = 3000
    batch: int = 256
    lr: float = 2e-3
    seed: int = 0
    p_mean: float = -1.2
    p_std: float = 1.2
    embedding: str = "f-2..1"  # noise-embedding frequencies (part of the cache key)
    checkpoints: tuple = ()  # iterations whose weights are kept too (the early-checkpoint weak)

    def key(self) -> str:
        text = json.dumps(asdict(self), sort_keys=True)
        return f"{self.data}-w{self.width}-{hashlib.sha256(text.encode()).hexdigest()[:12]}"


def cache_dir() -> pathlib.Path:
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return pathlib.Path(root) / "comfyui-w2sd" / "yardstick"


def train(cfg: TrainConfig) -> dict:
    """``{iteration: state_dict}`` for the final weights and every checkpoint; deterministic."""
    data = training_data(cfg.data)
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    try:
        g = torch.Generator().manual_seed(cfg.seed)
        torch.manual_seed(cfg.seed)
        sd = float(data.std())
        model = MLPDenoiser(data.shape[1], cfg.width, cfg.depth, sd)
        opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 0.5 * (1 + math.cos(math.pi * i / cfg.iters)))
        kept = {}
        for it in range(1, cfg.iters + 1):
            x0 = data[torch.randint(0, data.shape[0], (cfg.batch,), generator=g)]
            sigma = (torch.randn(cfg.batch, generator=g) * cfg.p_std + cfg.p_mean).exp()
            noisy = x0 + sigma[:, None] * torch.randn(x0.shape, generator=g)
            weight = (sigma**2 + sd**2) / (sigma * sd) ** 2
            loss = (weight[:, None] * (model(noisy, sigma) - x0) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            if it in cfg.checkpoints or it == cfg.iters:
                kept[it] = {k: v.clone() for k, v in model.state_dict().items()}
        return {"sigma_data": sd, "dim": data.shape[1], "weights": kept}
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)


def trained(cfg: TrainConfig, iteration: int | None = None) -> Callable:
    """The trained denoiser (final weights, or those at ``iteration``) as ``D(x, σ)``; trains once
    and caches the result on disk."""
    path = cache_dir() / f"{cfg.key()}.pt"
    if path.exists():
        result = torch.load(path, weights_only=True)
    else:
        result = train(cfg)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        torch.save(result, tmp)
        os.replace(tmp, path)
    model = MLPDenoiser(result["dim"], cfg.width, cfg.depth, result["sigma_data"])
    model.load_state_dict(result["weights"][cfg.iters if iteration is None else iteration])
    model.eval().requires_grad_(False)

    @torch.no_grad()
    def denoise(x, sigma):
        return model(x, sigma)

    return denoise


# -- yardsticks ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Yardstick:
    """A data set, its trained strong model, two weak models and the metric (lower is better)."""

    name: str
    strong: Callable
    weak_early: Callable
    weak_small: Callable
    metric: Callable[[torch.Tensor], float]
    metric_name: str
    dim: int


#: Training sizes: ``full`` for the tables, ``test`` (smaller) for CI.
SIZES = {
    "full": {"mixture": (128, 4000, 32), "digits": (256, 4000, 64)},
    "test": {"mixture": (96, 2000, 32), "digits": (192, 2000, 48)},
}


def fd(x: torch.Tensor, y: torch.Tensor) -> float:
    """Fréchet distance between Gaussians fitted to two point sets."""
    x, y = x.double(), y.double()
    mx, my = x.mean(0), y.mean(0)
    cx, cy = torch.cov(x.T), torch.cov(y.T)
    vals, vecs = torch.linalg.eigh(cx)
    root = vecs @ vals.clamp_min(0).sqrt().diag() @ vecs.T
    cross = torch.linalg.eigvalsh(root @ cy @ root).clamp_min(0).sqrt().sum()
    return float((mx - my).square().sum() + cx.trace() + cy.trace() - 2 * cross)


def make_yardstick(name: str, size: str = "full") -> Yardstick:
    width, iters, small = SIZES[size][name]
    cfg = TrainConfig(data=name, width=width, iters=iters, checkpoints=(iters // 10,))
    strong, early = trained(cfg), trained(cfg, iters // 10)
    weak_small = trained(replace(cfg, width=small, checkpoints=()))
    if name == "mixture":
        reference = toy_problem().ideal.sample(4000, torch.Generator().manual_seed(10_000))
        return Yardstick(
            name, strong, early, weak_small, lambda x: 1e3 * mmd2(x, reference, 0.5), "MMD² ×10³ to exact samples", 2
        )
    held = digits_split()[1]
    return Yardstick(name, strong, early, weak_small, lambda x: fd(x, held), "FD (pixels) to 400 held-back digits", 64)
