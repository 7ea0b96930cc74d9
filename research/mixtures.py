"""Toy distributions with exact denoisers, for tests, the demo and the defaults' measurements.

Everything follows the core's convention: a latent at noise level ``sigma`` is ``x = x0 + sigma*eps``
and a denoiser ``D(x, sigma)`` returns ``E[x0 | x]`` with ``sigma`` a ``(batch,)`` tensor (or a
number). For a Gaussian mixture that posterior mean, and the score of the noisy marginal, are known
in closed form, so "the model" has no error of its own: whatever a sampler gets wrong is the
sampler's (or the deliberately distorted mixture's) doing.

The problems built here mimic the paper's 2-D case: an *ideal* distribution, a *strong* model
that misses it a little (some modes under-weighted, the ring slightly shrunk, modes slightly
blurred) and a *weak* model that misses it more in the same direction, so that
``log p_s - log p_w`` points from the weak model towards the ideal. A *negative control* weak model
is distorted in an unrelated direction (other modes under-weighted), where reflection should not
help.

Also here: the discrete VP noise schedule of SD1.x/SD2-type models as ComfyUI computes it (the
``normal`` and ``karras`` schedulers and ``percent_to_sigma``), so toy runs use realistic sigmas and
can express a "reflect until X% of the denoising" window exactly as the nodes do.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence, Union

import torch

Sigma = Union[float, torch.Tensor]

__all__ = [
    "GaussianMixture",
    "ToyProblem",
    "DiscreteVPSchedule",
    "gaussian_denoiser",
    "ring_mixture",
    "toy_problem",
    "mmd2",
    "mode_weights",
    "mode_kl",
]


def _sigma_column(sigma: Sigma, x: torch.Tensor) -> torch.Tensor:
    """``sigma`` (number, scalar or ``(batch,)``) as a float64 column that broadcasts over ``x``."""
    s = torch.as_tensor(sigma, dtype=torch.float64, device=x.device)
    if s.ndim == 0:
        s = s.expand(x.shape[0])
    if s.shape[0] != x.shape[0]:
        raise ValueError(f"sigma has {s.shape[0]} values for a batch of {x.shape[0]}")
    return s.reshape([x.shape[0]] + [1] * (x.ndim - 1))


class GaussianMixture:
    """A mixture of Gaussians with per-component weights, means and diagonal standard deviations.

    ``weights``: ``(K,)`` (normalised here); ``means``: ``(K, d)``; ``stds``: a number, ``(K,)``
    (isotropic per component) or ``(K, d)`` (diagonal). Calling the object is its exact denoiser.
    Computations run in float64 for float64 inputs, else in float32; results come back in the input's dtype.
    """

    def __init__(self, weights, means, stds):
        means = torch.as_tensor(means, dtype=torch.float64)
        if means.ndim != 2:
            raise ValueError(f"means must be (components, dim), got shape {tuple(means.shape)}")
        k, d = means.shape
        weights = torch.as_tensor(weights, dtype=torch.float64).reshape(-1)
        if weights.shape[0] != k:
            raise ValueError(f"{weights.shape[0]} weights for {k} components")
        if (weights < 0).any() or weights.sum() <= 0:
            raise ValueError("weights must be non-negative and not all zero")
        stds = torch.as_tensor(stds, dtype=torch.float64)
        if stds.ndim == 0:
            stds = stds.expand(k, d)
        elif stds.ndim == 1:
            stds = stds.reshape(k, 1).expand(k, d)
        if stds.shape != (k, d) or (stds <= 0).any():
            raise ValueError(f"stds must be positive, a number, (K,) or (K, d); got {tuple(stds.shape)}")
        self.weights = weights / weights.sum()
        self.means = means
        self.stds = stds.clone()

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    @property
    def n_components(self) -> int:
        return self.means.shape[0]

    # -- the noisy marginal p_sigma = mixture of N(mu_k, std_k^2 + sigma^2) ---------------------
    def _work_dtype(self, x: torch.Tensor) -> torch.dtype:
        # float64 stays float64 (the convergence-order tests need it); half types compute in float32
        return torch.float64 if x.dtype == torch.float64 else torch.float32

    def _component_terms(self, x: torch.Tensor, sigma: Sigma):
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"expected points of shape (batch, {self.dim}), got {tuple(x.shape)}")
        dt = self._work_dtype(x)
        xw = x.to(dt)
        s2 = _sigma_column(sigma, x).to(dt).reshape(-1, 1, 1) ** 2  # (B, 1, 1)
        means = self.means.to(x.device, dt)
        var = self.stds.to(x.device, dt)[None] ** 2 + s2  # (B, K, d)
        diff = xw[:, None, :] - means[None]  # (B, K, d)
        log_comp = -0.5 * ((diff * diff) / var + torch.log(2 * math.pi * var)).sum(-1)
        log_joint = log_comp + torch.log(self.weights.to(x.device, dt))[None]  # (B, K)
        return xw, var, diff, log_joint

    def responsibilities(self, x: torch.Tensor, sigma: Sigma = 0.0) -> torch.Tensor:
        """``P(component k | x)`` under the noisy marginal at ``sigma``, shape ``(B, K)``."""
        *_, log_joint = self._component_terms(x, sigma)
        return torch.softmax(log_joint, dim=1)

    def log_prob(self, x: torch.Tensor, sigma: Sigma = 0.0) -> torch.Tensor:
        """``log p_sigma(x)``, shape ``(B,)``."""
        *_, log_joint = self._component_terms(x, sigma)
        return torch.logsumexp(log_joint, dim=1)

    def denoise(self, x: torch.Tensor, sigma: Sigma) -> torch.Tensor:
        """Exact ``E[x0 | x]`` for ``x = x0 + sigma * eps``."""
        xw, var, diff, log_joint = self._component_terms(x, sigma)
        r = torch.softmax(log_joint, dim=1)[..., None]  # (B, K, 1)
        # per component: mu_k + std_k^2 / (std_k^2 + sigma^2) * (x - mu_k)
        #             = x - sigma^2 / (std_k^2 + sigma^2) * (x - mu_k)
        s2 = var - self.stds.to(x.device, xw.dtype)[None] ** 2
        return (xw - (r * (s2 / var) * diff).sum(1)).to(x.dtype)

    __call__ = denoise

    def score(self, x: torch.Tensor, sigma: Sigma = 0.0) -> torch.Tensor:
        """Exact ``grad_x log p_sigma(x)``, also at ``sigma = 0``."""
        xw, var, diff, log_joint = self._component_terms(x, sigma)
        r = torch.softmax(log_joint, dim=1)[..., None]
        return (r * (-diff / var)).sum(1)

    def sample(
        self, n: int, generator: Optional[torch.Generator] = None, dtype: torch.dtype = torch.float32
    ) -> torch.Tensor:
        comp = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        eps = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        return (self.means[comp] + self.stds[comp] * eps).to(dtype)

    def nearest_component(self, x: torch.Tensor) -> torch.Tensor:
        """Index of the component each point most likely came from, counting every component
        equally (so a down-weighted mode still claims the points that landed on it)."""
        uniform = GaussianMixture(torch.ones(self.n_components), self.means, self.stds)
        return uniform.responsibilities(x).argmax(dim=1)


def gaussian_denoiser(scale: float = 1.0):
    """Exact denoiser for data ``x0 ~ N(0, scale^2 I)`` of any shape: ``D = x s^2 / (s^2 + sigma^2)``.

    Works on ``(B, ...)`` latents (images, video) and keeps the input dtype.
    """
    s2 = float(scale) ** 2

    def denoise(x: torch.Tensor, sigma: Sigma) -> torch.Tensor:
        col = _sigma_column(sigma, x)
        return (x.to(torch.float64) * (s2 / (s2 + col**2))).to(x.dtype)

    return denoise


def ring_mixture(
    n_modes: int = 8,
    radius: float = 1.5,
    std: float = 0.15,
    log_weight: Optional[Sequence[float]] = None,
    radius_scale: float = 1.0,
    std_scale: float = 1.0,
) -> GaussianMixture:
    """``n_modes`` isotropic Gaussians on a circle; ``log_weight`` tilts the (otherwise equal)
    weights, ``radius_scale`` / ``std_scale`` shrink or widen the ring and the modes."""
    angles = torch.arange(n_modes, dtype=torch.float64) * (2 * math.pi / n_modes)
    means = radius * radius_scale * torch.stack([angles.cos(), angles.sin()], dim=1)
    logw = (
        torch.zeros(n_modes, dtype=torch.float64)
        if log_weight is None
        else torch.as_tensor(log_weight, dtype=torch.float64)
    )
    return GaussianMixture(torch.softmax(logw, 0), means, std * std_scale)


@dataclass(frozen=True)
class ToyProblem:
    """An ideal distribution and model pairs that miss it in known directions."""

    ideal: GaussianMixture
    strong: GaussianMixture
    weak: GaussianMixture  # distorted like ``strong``, twice as much
    negative_weak: GaussianMixture  # distorted in an unrelated direction (other modes)


def toy_problem(
    n_modes: int = 8,
    radius: float = 1.5,
    std: float = 0.15,
    tilt: float = 0.8,
    shrink: float = 0.05,
    blur: float = 0.15,
    ideal_tilt: float = 0.5,
) -> ToyProblem:
    """The standard toy: 8 modes on a ring (overall std about 1, like a VAE latent), the ideal's
    weights ``exp(ideal_tilt * cos(angle))`` (unequal, so samples smeared evenly over the ring do
    not score a perfect mode KL).

    * strong: the even-numbered modes' weights lowered by ``e^-tilt``, the ring shrunk by
      ``shrink`` and the modes widened by ``blur`` (relative);
    * weak: the same distortions, doubled;
    * negative_weak: the strong model's distortions plus the *odd* modes under-weighted, so
      ``log p_s - log p_w`` favours modes the ideal does not favour.
    """
    even = torch.tensor([1.0 if k % 2 == 0 else 0.0 for k in range(n_modes)], dtype=torch.float64)
    odd = 1.0 - even
    base = ideal_tilt * torch.cos(torch.arange(n_modes, dtype=torch.float64) * (2 * math.pi / n_modes))

    def make(level: float, extra_logw=None) -> GaussianMixture:
        logw = base - tilt * level * even
        if extra_logw is not None:
            logw = logw + extra_logw
        return ring_mixture(n_modes, radius, std, logw, radius_scale=1.0 - shrink * level, std_scale=1.0 + blur * level)

    return ToyProblem(
        ideal=make(0.0), strong=make(1.0), weak=make(2.0), negative_weak=make(1.0, extra_logw=-tilt * odd)
    )


class DiscreteVPSchedule:
    """The 1000-step discrete VP schedule of SD1.x/SD2 models (scaled-linear betas 0.00085..0.012)
    in sigma space, with ComfyUI's ``normal`` / ``karras`` schedulers and ``percent_to_sigma``
    (the same arithmetic as ComfyUI's ``ModelSamplingDiscrete``, rewritten here so the core never
    imports ComfyUI)."""

    def __init__(self, linear_start: float = 0.00085, linear_end: float = 0.012, timesteps: int = 1000):
        betas = torch.linspace(linear_start**0.5, linear_end**0.5, timesteps, dtype=torch.float64) ** 2
        alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)
        self.sigmas = (((1 - alphas_cumprod) / alphas_cumprod) ** 0.5).float()
        self.log_sigmas = self.sigmas.log()

    @property
    def sigma_min(self) -> float:
        return float(self.sigmas[0])

    @property
    def sigma_max(self) -> float:
        return float(self.sigmas[-1])

    def sigma(self, t: float) -> float:
        t = min(max(float(t), 0.0), len(self.sigmas) - 1.0)
        lo, hi = math.floor(t), math.ceil(t)
        w = t - lo
        return math.exp((1 - w) * float(self.log_sigmas[lo]) + w * float(self.log_sigmas[hi]))

    def percent_to_sigma(self, percent: float) -> float:
        """The sigma at ``percent`` of the denoising (0 = start, 1 = end), as ComfyUI maps it."""
        if percent <= 0.0:
            return 999999999.9
        if percent >= 1.0:
            return 0.0
        return self.sigma((1.0 - percent) * 999.0)

    def normal(self, steps: int) -> torch.Tensor:
        """ComfyUI's ``normal`` scheduler: timesteps evenly spaced from 999 to 0, then sigma 0."""
        ts = torch.linspace(len(self.sigmas) - 1, 0, steps, dtype=torch.float64)
        return torch.tensor([self.sigma(float(t)) for t in ts] + [0.0], dtype=torch.float32)

    def karras(self, steps: int, rho: float = 7.0) -> torch.Tensor:
        ramp = torch.linspace(0, 1, steps, dtype=torch.float64)
        lo, hi = self.sigma_min ** (1 / rho), self.sigma_max ** (1 / rho)
        sig = (hi + ramp * (lo - hi)) ** rho
        return torch.cat([sig, sig.new_zeros(1)]).float()


# -- metrics ---------------------------------------------------------------------------------


def mmd2(x: torch.Tensor, y: torch.Tensor, bandwidth: float = 0.5, *, parts: bool = False, skip_yy: bool = False):
    """Unbiased squared MMD between two point sets with an RBF kernel of fixed ``bandwidth``
    (0 in expectation when both come from the same distribution; can be slightly negative).
    ``parts=True`` returns the three mean kernel values ``(xx, yy, xy)`` instead (``yy`` is None
    with ``skip_yy``), so a fixed reference set's term can be computed once."""
    x = x.to(torch.float64)
    y = y.to(torch.float64)
    g = -0.5 / bandwidth**2

    def mean_kernel(a, b, same):
        k = torch.exp(g * torch.cdist(a, b).square_())
        if same:
            n = a.shape[0]
            return float((k.sum() - k.diagonal().sum()) / (n * (n - 1)))
        return float(k.mean())

    xx = mean_kernel(x, x, True)
    yy = None if skip_yy else mean_kernel(y, y, True)
    xy = mean_kernel(x, y, False)
    if parts:
        return xx, yy, xy
    return xx + yy - 2 * xy


def mode_weights(points: torch.Tensor, mixture: GaussianMixture) -> torch.Tensor:
    """Fraction of ``points`` assigned to each component of ``mixture`` (nearest component)."""
    idx = mixture.nearest_component(points)
    return torch.bincount(idx, minlength=mixture.n_components).to(torch.float64) / points.shape[0]


def mode_kl(points: torch.Tensor, mixture: GaussianMixture, eps: float = 1e-4) -> float:
    """KL(assigned mode weights || the mixture's weights): 0 when the samples split over the modes
    in the right proportions."""
    p = mode_weights(points, mixture) + eps
    p = p / p.sum()
    q = mixture.weights
    return float((p * (p / q).log()).sum())
