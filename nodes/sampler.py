"""W2SD Sampler: a SAMPLER that wraps any KSAMPLER-based sampler and reflects the planned steps.

ComfyUI calls a sampler function as ``fn(model, x, sigmas, extra_args, callback, disable, **opts)``
where ``model`` is the inpaint wrapper (``KSamplerX0Inpaint``) around the GUIDER. The driver here
hands the generic loop of ``w2sd_core.sample_with_reflection`` two callbacks:

* ``reflect_at``: ``w2sd_core.reflect`` with the strong and weak denoisers, both being that same
  ``model`` called with ``extra_args`` whose model_options carry a role tag, so inpainting masks,
  ControlNet, hooks and the guider's CFG all apply to reflection calls as they do to normal steps;
* ``run_span``: the wrapped sampler's own function on a slice of the schedule. The schedule is cut
  only at reflected steps, and everything after the last reflection runs in one call, so multistep
  samplers keep their history there.

Nothing is reflected (λ = 0, or no difference between the weak and strong side) -> the wrapped
function runs once on the whole schedule with the untouched arguments: bit for bit the plain sampler.
"""
from __future__ import annotations

import inspect
import logging
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

import comfy.k_diffusion.sampling as k_sampling
import comfy.model_management
import comfy.samplers
from comfy.extra_samplers import uni_pc
from comfy_api.latest import io

from ..w2sd_core import (DEFAULT_END_PERCENT, DEFAULT_INVERSION, DEFAULT_PLAN, INVERSIONS,
                         ReflectionPlan, reflect, run_cost, sample_with_reflection, sigma_after)
from . import compat, pairs, roles, validate

log = logging.getLogger("w2sd")

CATEGORY = "sampling/w2sd"

# ---------------------------------------------------------------- defaults shown on the nodes
#: From the core, where the measurements behind them live. A sigma window has no model-free
#: meaning, so the core names its window as a percent of the denoising (DEFAULT_END_PERCENT).
DEFAULT_REFLECT_STEPS = DEFAULT_PLAN.steps
DEFAULT_REPEATS = DEFAULT_PLAN.repeats

TIP_REFLECT_STEPS = ("λ: how many steps, from the first, get reflected. -1 = every step but the "
                     "last, 0 = off (the wrapped sampler exactly).")
TIP_END_PERCENT = ("Reflect only while the schedule is above this point of the denoising (0 = start, "
                   "1 = end). The default 0.8 leaves out the last, low-noise steps, where inversion "
                   "error outweighs the gain at ~20 steps; 0.9-1.0 suits 40+ steps (1.0 = no limit, "
                   "the paper's setting).")
TIP_REPEATS = "Reflections per reflected step (Z-Sampling's T_max). Each costs two more model evaluations."
TIP_INVERSION = ("Noise label for the weak inversion. next: where the latent sits (exact DDIM "
                 "inversion, default). current: the paper's Eq. 5. official: what the authors' "
                 "code computes (eps/v models only, not flow models).")
TIP_STRONG_CFG = "CFG of the strong reflection pass. -1 = the sampling cfg."
TIP_WEAK_CFG = ("CFG of the weak reflection pass. -1 = the sampling cfg. Z-Sampling: strong 5.5, weak "
                "1.0 (ComfyUI's cfg 1.0 is the conditional prediction alone).")


def make_plan(reflect_steps: int, repeats: int, end_percent: float, model_sampling) -> ReflectionPlan:
    """A ReflectionPlan from the node inputs; the percent window becomes a sigma window of this model."""
    to_sigma = model_sampling.percent_to_sigma if model_sampling is not None else None
    return ReflectionPlan.until_percent(float(end_percent), to_sigma, steps=int(reflect_steps),
                                        repeats=int(repeats))


def check_inversion(inversion: str, model_sampling) -> None:
    """``official`` is the authors' DDIM code in sigma space, derived for eps-type (variance-
    preserving) models; it has no meaning for flow models."""
    if inversion == "official" and pairs.is_flow(model_sampling):
        raise ValueError("W2SD: inversion 'official' reproduces the authors' DDIM code, derived for "
                         "eps-type (variance-preserving) models; this is a flow (CONST) model. Use "
                         "'next' or 'current'.")


@dataclass
class W2SDSettings:
    """What the W2SD sampler needs besides the guider: the wrapped sampler and the plan."""
    inner: comfy.samplers.KSAMPLER
    reflect_steps: int = DEFAULT_REFLECT_STEPS
    repeats: int = DEFAULT_REPEATS
    end_percent: float = DEFAULT_END_PERCENT
    inversion: str = DEFAULT_INVERSION
    strong_cfg: float = -1.0
    weak_cfg: float = -1.0
    #: Filled by every run: reflected steps, cost, or why reflection was skipped.
    report: dict = field(default_factory=dict)


class W2SDKSampler(comfy.samplers.KSAMPLER):
    """KSAMPLER running ``sample_w2sd``; it keeps the wrapped sampler's inpaint options (ddim draws
    its own inpaint noise) and its ``max_denoise`` so the initial noise is scaled exactly as the
    wrapped sampler would scale it."""

    def __init__(self, settings: W2SDSettings):
        super().__init__(sample_w2sd, extra_options={"w2sd": settings},
                         inpaint_options=settings.inner.inpaint_options)
        self.w2sd = settings

    def max_denoise(self, model_wrap, sigmas):
        return self.w2sd.inner.max_denoise(model_wrap, sigmas)


def wrap_sampler(sampler, **settings) -> W2SDKSampler:
    """Wrap a SAMPLER. Only KSAMPLER-based samplers (all of ComfyUI's) can be cut into spans."""
    if isinstance(sampler, W2SDKSampler):
        raise ValueError("W2SD Sampler: the sampler input is already a W2SD Sampler; connect the "
                         "plain sampler (e.g. KSamplerSelect) instead.")
    if (not isinstance(sampler, comfy.samplers.KSAMPLER)
            or type(sampler).sample is not comfy.samplers.KSAMPLER.sample):
        raise ValueError(f"W2SD Sampler can wrap samplers built on ComfyUI's KSAMPLER (every built-in "
                         f"sampler); {type(sampler).__name__} runs its own sampling loop, which cannot "
                         f"be cut at reflected steps.")
    inversion = settings.get("inversion", DEFAULT_INVERSION)
    if inversion not in INVERSIONS:
        raise ValueError(f"W2SD: inversion must be one of {', '.join(INVERSIONS)}, got {inversion!r}")
    settings = W2SDSettings(inner=sampler, **settings)
    make_plan(settings.reflect_steps, settings.repeats, 1.0, None)  # validates λ and repeats now
    return W2SDKSampler(settings)


# ---------------------------------------------------------------- noise for sliced samplers
def _unwrap(fn):
    try:
        return inspect.unwrap(fn)
    except ValueError:
        return fn


#: Samplers whose own noise source is a Brownian tree over the schedule (value: tree on the CPU).
_BROWNIAN = {}
for _name, _cpu in (("sample_dpmpp_sde", True), ("sample_dpmpp_2m_sde", True),
                    ("sample_dpmpp_2m_sde_heun", True), ("sample_dpmpp_3m_sde", True),
                    ("sample_dpmpp_sde_gpu", False), ("sample_dpmpp_2m_sde_gpu", False),
                    ("sample_dpmpp_2m_sde_heun_gpu", False), ("sample_dpmpp_3m_sde_gpu", False)):
    if hasattr(k_sampling, _name):
        _BROWNIAN[_unwrap(getattr(k_sampling, _name))] = _cpu

#: Samplers that cannot run some spans on their own. UniPC only evaluates at its first step and
#: moves on the next, so a one-step call returns its input. SA-Solver returns its corrected state,
#: one step behind its prediction, so a call that ends above sigma 0 returns the latent one step
#: short. Such spans run Euler (= DDIM) steps instead, at the same cost; the rest of the schedule
#: (after the last reflection) still runs with the sampler itself.
_NO_SINGLE_STEP = {_unwrap(uni_pc.sample_unipc), _unwrap(uni_pc.sample_unipc_bh2)}
_NO_OPEN_END = {_unwrap(getattr(k_sampling, name)) for name in ("sample_sa_solver", "sample_sa_solver_pece")
                if hasattr(k_sampling, name)}
#: dpm_adaptive (a closure ComfyUI builds per sampler, recognised by its code) has no steps: it
#: runs its own step-size control between the first and last sigma it is given. Restarted on every
#: reflected step it took several times the evaluations, drew its (eta > 0) noise from the seed
#: again each time and reported its own step counter as progress, so those spans run Euler too.
_ADAPTIVE_CODE = getattr(comfy.samplers.ksampler("dpm_adaptive").sampler_function, "__code__", None)


def needs_euler(fn, start: int, end: int, steps: int) -> bool:
    """Whether the span sigmas[start..end] of a ``steps``-step schedule must run as Euler steps."""
    fn = _unwrap(fn)
    adaptive = _ADAPTIVE_CODE is not None and getattr(fn, "__code__", None) is _ADAPTIVE_CODE
    return ((fn in _NO_SINGLE_STEP and end - start == 1)
            or ((fn in _NO_OPEN_END or adaptive) and end < steps))


def make_noise_sampler(fn, options: dict, x: torch.Tensor, sigmas: torch.Tensor, seed):
    """ONE noise source for the whole schedule, or None when the sampler takes none.

    Ancestral and SDE samplers build their noise source inside each call; called once per slice
    they would draw the same noise at every step. So the driver builds the source the sampler
    itself would build for the full schedule and passes it to every slice: a Brownian tree over
    the full sigma range for the samplers that use one (its noise is keyed by the interval, so every
    step gets exactly the noise of a plain run), else ``default_noise_sampler`` (sequential draws
    from one seeded generator, again the plain run's sequence).
    """
    if "noise_sampler" in options:
        return None      # the user's own source (e.g. from a custom sampler node) stays in charge
    try:
        if "noise_sampler" not in inspect.signature(fn).parameters:
            return None
    except (TypeError, ValueError):
        return None
    cpu = _BROWNIAN.get(_unwrap(fn))
    if cpu is not None:
        return k_sampling.BrownianTreeNoiseSampler(x, sigmas[sigmas > 0].min(), sigmas.max(),
                                                   seed=seed, cpu=cpu)
    return k_sampling.default_noise_sampler(x, seed=seed)


# ---------------------------------------------------------------- the sampler function
@torch.no_grad()
def sample_w2sd(model, x, sigmas, extra_args=None, callback=None, disable=None, w2sd: W2SDSettings = None):
    extra_args = {} if extra_args is None else extra_args
    inner_fn = w2sd.inner.sampler_function
    inner_options = w2sd.inner.extra_options
    guider = model.inner_model                 # KSamplerX0Inpaint -> guider -> BaseModel
    model_sampling = guider.inner_model.model_sampling
    steps = len(sigmas) - 1

    plan = make_plan(w2sd.reflect_steps, w2sd.repeats, w2sd.end_percent, model_sampling)
    reflected = plan.reflected_steps(sigmas) if steps > 0 else []
    pair = pairs.resolve_pair(guider, w2sd.strong_cfg, w2sd.weak_cfg)
    report = w2sd.report
    report.clear()
    report.update(steps=steps, reflected_steps=[], reflections=0, differences=pair.differences,
                  skipped=None, cost=None, summary="")
    if reflected and not pair.differences:
        report["skipped"] = ("nothing differs between the weak and the strong side (no weak model, "
                             "no weak conditioning, equal strong/weak CFG)")
        log.warning("W2SD: %s: sampling without reflection, no extra model evaluations. Give a "
                    "weak_model, weak conditioning or different strong_cfg / weak_cfg.", report["skipped"])
        reflected = []
    if reflected:
        check_inversion(w2sd.inversion, model_sampling)
    cost = run_cost(steps, len(reflected) * plan.repeats, pair.cfg, pair.strong_cfg, pair.weak_cfg)
    report.update(reflected_steps=reflected, reflections=cost.reflections, cost=cost,
                  summary=cost.summary())
    if not reflected:
        # λ = 0 or nothing to reflect: the wrapped sampler, untouched and in one call.
        return inner_fn(model, x, sigmas, extra_args=extra_args, callback=callback, disable=disable,
                        **inner_options)

    log.info("%s; reflecting steps %s (%s)", cost.summary(), _ranges(reflected), ", ".join(pair.differences))

    # Reflection calls use a snapshot of extra_args: some samplers (the cfg_pp family) write their
    # own post-CFG hooks into the extra_args they are given, and those must not leak across spans.
    base_args = dict(extra_args)
    base_options = base_args.get("model_options", {})
    role_args = {role: {**base_args, "model_options": roles.with_role(base_options, role)}
                 for role in (roles.STRONG, roles.WEAK)}

    def denoiser(role):
        override = pair.overrides[role]

        def denoise(x_, sigma_):
            # ComfyUI checks for "stop" only in its progress hook, i.e. once per normal step.
            comfy.model_management.throw_exception_if_processing_interrupted()
            if override is None:
                return model(x_, sigma_, **role_args[role])
            saved = guider.cfg
            guider.cfg = override
            try:
                return model(x_, sigma_, **role_args[role])
            finally:
                guider.cfg = saved
        return denoise

    strong, weak = denoiser(roles.STRONG), denoiser(roles.WEAK)

    def reflect_at(x_, i):
        return reflect(x_, sigmas[i], sigmas[i + 1], strong, weak, inversion=w2sd.inversion,
                       sigma_after=sigma_after(sigmas, i))

    noise_sampler = make_noise_sampler(inner_fn, inner_options, x, sigmas, extra_args.get("seed", None))
    progress = tqdm(total=steps, disable=disable)
    # Multi-stage samplers (heun, dpm_2, dpmpp_sde, seeds_3...) evaluate more than once per step:
    # count what the sampler really evaluates, so the reported cost is the run's true cost.
    counted = _CountingModel(model)

    def run_span(x_, start, end):
        span_callback = None
        if callback is not None:
            # previews and the progress bar expect the step index of the whole schedule
            span_callback = lambda d, offset=start: callback({**d, "i": d["i"] + offset})
        span = sigmas[start:end + 1]
        if needs_euler(inner_fn, start, end, steps):
            out = k_sampling.sample_euler(counted, x_, span, extra_args=dict(base_args),
                                          callback=span_callback, disable=True)
        else:
            options = dict(inner_options)
            if noise_sampler is not None:
                options["noise_sampler"] = noise_sampler
            out = inner_fn(counted, x_, span, extra_args=dict(base_args), callback=span_callback,
                           disable=True, **options)
        progress.update(end - start)
        return out

    try:
        out = sample_with_reflection(x, sigmas, plan, reflect_at, run_span)
    finally:
        progress.close()
    cost = run_cost(steps, cost.reflections, pair.cfg, pair.strong_cfg, pair.weak_cfg,
                    sampler_evaluations=counted.calls)
    report.update(cost=cost, summary=cost.summary())
    return out


class _CountingModel:
    """The sampler's model with its calls counted; every attribute is the model's own."""

    def __init__(self, model):
        self._model = model
        self.calls = 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self._model(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._model, name)


def _ranges(indices) -> str:
    """[0, 1, 2, 5] -> '0-2, 5'."""
    out, start, prev = [], None, None
    for i in indices:
        if start is None:
            start = prev = i
        elif i == prev + 1:
            prev = i
        else:
            out.append(f"{start}-{prev}" if prev > start else f"{start}")
            start = prev = i
    if start is not None:
        out.append(f"{start}-{prev}" if prev > start else f"{start}")
    return ", ".join(out)


# ---------------------------------------------------------------- node
def plan_inputs() -> list:
    """The plan inputs shared by W2SD Sampler and W2SD Reflective KSampler (all optional)."""
    return [
        io.Int.Input("reflect_steps", default=DEFAULT_REFLECT_STEPS, min=-1, max=10000, optional=True,
                     tooltip=TIP_REFLECT_STEPS),
        io.Float.Input("reflect_end_percent", default=DEFAULT_END_PERCENT, min=0.0, max=1.0, step=0.01,
                       optional=True, tooltip=TIP_END_PERCENT),
        io.Int.Input("repeats", default=DEFAULT_REPEATS, min=1, max=10, optional=True, tooltip=TIP_REPEATS),
        io.Combo.Input("inversion", options=list(INVERSIONS), default=DEFAULT_INVERSION, optional=True,
                       tooltip=TIP_INVERSION),
    ]


def cfg_pair_inputs() -> list:
    return [
        io.Float.Input("strong_cfg", default=-1.0, min=-1.0, max=100.0, step=0.1, round=0.01,
                       optional=True, tooltip=TIP_STRONG_CFG),
        io.Float.Input("weak_cfg", default=-1.0, min=-1.0, max=100.0, step=0.1, round=0.01,
                       optional=True, tooltip=TIP_WEAK_CFG),
    ]


class W2SDSampler(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="W2SDSampler",
            display_name="W2SD Sampler",
            category=CATEGORY,
            description=("Wraps any sampler with W2SD reflection for SamplerCustomAdvanced: before each "
                         "reflected step the latent goes one step down with the strong side and back up "
                         "with the weak side. Use it with W2SD Guider (weak model / weak prompt), or "
                         "with a plain CFG Guider and strong_cfg / weak_cfg (the Z-Sampling CFG pair)."),
            inputs=[io.Sampler.Input("sampler", tooltip="The sampler to wrap (e.g. KSamplerSelect)."),
                    *plan_inputs(), *cfg_pair_inputs()],
            outputs=[io.Sampler.Output(tooltip="The wrapped sampler, for SamplerCustomAdvanced or SamplerCustom.")],
        )

    @classmethod
    def execute(cls, sampler, reflect_steps=DEFAULT_REFLECT_STEPS, reflect_end_percent=DEFAULT_END_PERCENT,
                repeats=DEFAULT_REPEATS, inversion=DEFAULT_INVERSION, strong_cfg=-1.0,
                weak_cfg=-1.0) -> io.NodeOutput:
        validate.inputs(cls, locals())
        compat.require()
        return io.NodeOutput(wrap_sampler(sampler, reflect_steps=reflect_steps,
                                          end_percent=reflect_end_percent, repeats=repeats,
                                          inversion=inversion, strong_cfg=strong_cfg, weak_cfg=weak_cfg))
