"""How the image-like yardstick scores samples, the way FID scores images: clamp to the data range,
embed with a classifier trained on the data, compare feature statistics to held-back data.

* :func:`feature_fd`: Fréchet distance in the classifier's penultimate features (the headline);
* :func:`precision_recall`: k-NN manifold estimates (Kynkäänniemi et al. 2019) in the same features,
  so that a loss of diversity (guidance's usual price) shows as lower recall;
* :func:`pixel_fd`: the learned yardstick's pixel-space FD, but on clamped samples.

The classifier (an MLP, trained on the training digits with light noise, seeded, cached beside the
denoisers) is the stand-in for Inception: it knows what digits look like, not how they were sampled.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass

import torch
from torch import nn

from .digit_models import CLASSES, digits_labelled
from .learned import cache_dir, fd


@dataclass(frozen=True)
class ClassifierConfig:
    width: int = 256
    features: int = 64
    iters: int = 3000
    batch: int = 128
    lr: float = 1e-3
    noise: float = 0.1  # training-time pixel noise, so slightly off samples still embed sensibly
    seed: int = 0

    def key(self) -> str:
        text = json.dumps({"kind": "digit-classifier", **asdict(self)}, sort_keys=True)
        return f"digits-classifier-{hashlib.sha256(text.encode()).hexdigest()[:12]}"


def _net(cfg: ClassifierConfig) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(64, cfg.width),
        nn.ReLU(),
        nn.Linear(cfg.width, cfg.features),
        nn.ReLU(),
        nn.Linear(cfg.features, CLASSES),
    )


def _train(cfg: ClassifierConfig) -> dict:
    (x, y), _ = digits_labelled()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        g = torch.Generator().manual_seed(cfg.seed)
        torch.manual_seed(cfg.seed)
        net = _net(cfg)
        opt = torch.optim.Adam(net.parameters(), lr=cfg.lr, weight_decay=1e-4)
        for _ in range(cfg.iters):
            idx = torch.randint(0, x.shape[0], (cfg.batch,), generator=g)
            batch = (x[idx] + cfg.noise * torch.randn(cfg.batch, 64, generator=g)).clamp(-1, 1)
            loss = nn.functional.cross_entropy(net(batch), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        return net.state_dict()
    finally:
        torch.set_num_threads(threads)


class DigitFeatures:
    """The trained classifier: ``features(x)`` (penultimate layer) and ``accuracy`` on held-back digits."""

    def __init__(self, cfg: ClassifierConfig = ClassifierConfig()):
        path = cache_dir() / f"{cfg.key()}.pt"
        if path.exists():
            state = torch.load(path, weights_only=True)
        else:
            state = _train(cfg)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".tmp{os.getpid()}")
            torch.save(state, tmp)
            os.replace(tmp, path)
        self.net = _net(cfg)
        self.net.load_state_dict(state)
        self.net.eval().requires_grad_(False)
        _, (hx, hy) = digits_labelled()
        self.accuracy = float((self.logits(hx).argmax(1) == hy).float().mean())

    @torch.no_grad()
    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.clamp(-1, 1))

    @torch.no_grad()
    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.net[:4](x.clamp(-1, 1))


def feature_fd(features: torch.Tensor, reference: torch.Tensor) -> float:
    return fd(features, reference)


def pixel_fd(samples: torch.Tensor, reference: torch.Tensor) -> float:
    """The learned yardstick's pixel FD, on samples clamped to the data range [-1, 1]."""
    return fd(samples.clamp(-1, 1), reference)


def _radii(points: torch.Tensor, k: int) -> torch.Tensor:
    """Distance from each point to its k-th nearest other point."""
    dist = torch.cdist(points.double(), points.double())
    return dist.kthvalue(k + 1, dim=1).values


def _coverage(points: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor) -> float:
    """Fraction of ``points`` inside at least one ball (centre, radius)."""
    dist = torch.cdist(points.double(), centres.double())
    return float((dist <= radii[None, :]).any(dim=1).float().mean())


def precision_recall(features: torch.Tensor, reference: torch.Tensor, k: int = 3) -> tuple[float, float]:
    """k-NN precision and recall; generated features are scored in chunks the size of the reference
    (the estimates depend on the set sizes) and averaged."""
    n = reference.shape[0]
    ref_radii = _radii(reference, k)
    precision, recall, chunks = 0.0, 0.0, 0
    for start in range(0, features.shape[0] - n + 1, n):
        chunk = features[start : start + n]
        precision += _coverage(chunk, reference, ref_radii)
        recall += _coverage(reference, chunk, _radii(chunk, k))
        chunks += 1
    if chunks == 0:
        raise ValueError(f"need at least {n} samples for precision / recall, got {features.shape[0]}")
    return precision / chunks, recall / chunks


class Scorer:
    """Scores a batch of samples against the held-back digits: feature FD, precision, recall,
    clamped pixel FD and raw (unclamped) pixel FD, the old yardstick's metric."""

    def __init__(self, features: DigitFeatures | None = None):
        self.embed = features or DigitFeatures()
        _, (self.held, _) = digits_labelled()
        self.held_features = self.embed.features(self.held)

    def __call__(self, samples: torch.Tensor) -> dict:
        f = self.embed.features(samples)
        p, r = precision_recall(f, self.held_features)
        return {
            "fd": feature_fd(f, self.held_features),
            "precision": p,
            "recall": r,
            "pixel_fd": pixel_fd(samples, self.held),
            "raw_fd": fd(samples, self.held),
        }
