"""The setup of ``bench_pairs.py``: the models, the LoRA, the inputs and one row per pair type.

Imported by ``bench_pairs.py``, which puts ``tests/`` (``comfy_support``) on ``sys.path`` first.
Everything that needs ComfyUI is imported inside the functions, after ``start_comfyui()``.
"""

from __future__ import annotations

import types

import comfy_support
from bench_measure import PassCounter


def sd_model(channels: int, seed: int):
    """An SD1.5-shaped UNet (3 levels, 2 res blocks each, attention on the lower two), random weights."""
    import comfy.model_base as mb
    import comfy.supported_models as sm

    unet = dict(comfy_support.TINY_UNET)
    unet.update(
        model_channels=channels,
        channel_mult=[1, 2, 4],
        num_res_blocks=[2, 2, 2],
        transformer_depth=[0, 0, 1, 1, 1, 1],
        transformer_depth_output=[1, 1, 1, 1, 1, 1, 0, 0, 0],
        transformer_depth_middle=1,
        context_dim=256,
        num_head_channels=32,
        image_size=64,
    )
    config = sm.SD15(unet)
    config.unet_config["num_head_channels"] = 32
    config.unet_config["num_heads"] = -1
    return comfy_support.wrap_tiny(mb.BaseModel(config, model_type=mb.ModelType.EPS, device="cpu"), seed, scale=0.02)


def naive_guider_class():
    import comfy.model_management
    import comfy.samplers

    roles = comfy_support.pack_module("nodes.sampling.roles")
    role_cfgs = comfy_support.pack_module("nodes.sampling.role_cfgs")

    class NaiveLoraPairGuider(comfy.samplers.CFGGuider, role_cfgs.KnowsWeakSide):
        """Two clones of one base (LoRA at the strong and at the weak strength) used in turn: the way
        a pair of MODEL inputs is handled when nothing knows they share weights. Each switch makes
        load_models_gpu restore the base weights and re-apply the other clone's LoRA."""

        def __init__(self, model, weak_model):
            super().__init__(model)
            self.weak_model = weak_model

        def own_role_cfgs(self):
            return -1.0, -1.0

        def w2sd_differences(self):
            return ["LoRA clones at two strengths (naive)"]

        def predict_noise(self, x, timestep, model_options={}, seed=None):
            role = roles.role_of(model_options.get("transformer_options"))
            patcher = self.weak_model if role == roles.WEAK else self.model_patcher
            comfy.model_management.load_models_gpu([patcher])
            patcher.pre_run()
            return comfy.samplers.sampling_function(
                self.inner_model,
                x,
                timestep,
                self.conds.get("negative", None),
                self.conds.get("positive", None),
                self.cfg,
                model_options=model_options,
                seed=seed,
            )

    return NaiveLoraPairGuider


# ---------------------------------------------------------------- the bench: models and inputs


def start(args) -> types.SimpleNamespace:
    """Start ComfyUI in-process, set torch's threads, load the pack's modules; returns the bench
    (a namespace that :func:`add_models` and :func:`add_inputs` fill in)."""
    comfy_support.start_comfyui()
    import torch
    import comfy.utils

    comfy.utils.PROGRESS_BAR_ENABLED = False
    import comfy.sample  # noqa: F401  (loaded before the pack's modules)
    import comfy.samplers  # noqa: F401
    import comfy.model_management  # noqa: F401

    torch.set_num_threads(args.threads)
    return types.SimpleNamespace(
        args=args,
        T=args.steps,
        lam=args.reflect,
        cfg=args.cfg,
        core=comfy_support.pack_module("w2sd_core"),
        lora_pair=comfy_support.pack_module("nodes.pair_types.lora.build"),
        weak_model_mod=comfy_support.pack_module("nodes.weak_model"),
        reflecting=comfy_support.pack_module("nodes.sampling.reflective_sampler"),
        ksampler=comfy_support.node_class("W2SDReflectiveKSampler"),
    )


def add_models(b: types.SimpleNamespace) -> None:
    """The base model, the checkpoint pair's second model, the LoRA, the LoRA-delta pair and the
    naive pair's two clones, with their sizes."""
    args = b.args
    b.base = sd_model(args.channels, seed=1)
    b.other = sd_model(args.channels, seed=2)  # the checkpoint pair's weak model
    b.model_bytes = sum(p.numel() * p.element_size() for p in b.base.model.parameters())
    b.lora = comfy_support.kohya_lora(b.base, seed=7, rank=args.rank, tucker=False, conv=args.locon, scale=0.05)
    b.lora_bytes = sum(t.numel() * t.element_size() for t in b.lora.values())
    built = b.lora_pair.build_lora_pair(b.base, b.lora, "bench", 0.8, 1.5, -1.5)
    b.delta_model, b.report = built.model, b.weak_model_mod.report_lines(built)
    import comfy.sd

    b.naive_strong = comfy.sd.load_lora_for_models(b.base, None, b.lora, 1.5, 0)[0]
    b.naive_weak = comfy.sd.load_lora_for_models(b.base, None, b.lora, -1.5, 0)[0]
    b.lora_weight_bytes = 0
    state = b.base.model.state_dict()
    for k in b.naive_strong.patches:
        b.lora_weight_bytes += state[k].numel() * state[k].element_size()


def add_inputs(b: types.SimpleNamespace) -> None:
    """The conds (positive, negative, the prompt pair's weak prompt), the latent, the noise and the
    pass counter on both models' UNets."""
    import torch
    import comfy.sample

    g = torch.Generator().manual_seed(0)
    b.pos = [[torch.randn(1, 77, 256, generator=g), {}]]
    b.neg = [[torch.randn(1, 77, 256, generator=g), {}]]
    b.weak_pos = [[torch.randn(1, 77, 256, generator=g), {}]]  # the prompt pair's weak prompt
    b.latent = {"samples": torch.zeros(1, 4, b.args.size, b.args.size)}
    b.noise = comfy.sample.prepare_noise(b.latent["samples"], 0)
    b.counter = PassCounter(batch=1)
    for m in (b.base, b.other):
        b.counter.attach(m)


# ---------------------------------------------------------------- the rows


def w2sd(b, model, mode="reflect", **kw):
    """A run of the W2SD Reflective KSampler node on ``model``."""
    return lambda: b.ksampler.execute(
        model,
        0,
        b.T,
        b.cfg,
        "euler",
        "normal",
        b.pos,
        b.neg,
        b.latent,
        1.0,
        reflect_steps=b.lam,
        reflect_end_percent=1.0,
        repeats=1,
        inversion="next",
        mode=mode,
        guidance=b.args.guidance,
        **kw,
    )


def predicted_cost(b, mode, strong_cfg, weak_cfg, cfg_only=False):
    # what the node's cost text predicts: a CFG-only pair's guided step is one plain CFG step
    reflections = b.lam if b.core.guidance.reflects(mode) else 0
    guided = b.lam if b.core.guidance.guides(mode) and not cfg_only else 0
    return b.core.run_cost(b.T, reflections, b.cfg, strong_cfg, weak_cfg, guided=guided)


def plain(b):
    """A plain KSampler run (comfy.sample.sample), the baseline."""
    import comfy.sample

    return lambda: comfy.sample.sample(
        b.base, b.noise, b.T, b.cfg, "euler", "normal", b.pos, b.neg, b.latent["samples"], seed=0, disable_pbar=True
    )


def naive(b):
    """A run of the naive LoRA pair: two clones alternated by :func:`naive_guider_class`."""
    import comfy.samplers

    def run():
        guider = naive_guider_class()(b.naive_strong, b.naive_weak)
        guider.set_conds(b.pos, b.neg)
        guider.set_cfg(b.cfg)
        sampler = b.reflecting.wrap_sampler(
            comfy.samplers.sampler_object("euler"), reflect_steps=b.lam, end_percent=1.0, repeats=1, inversion="next"
        )
        sigmas = comfy.samplers.calculate_sigmas(b.base.get_model_object("model_sampling"), "normal", b.T)
        return guider.sample(b.noise, b.latent["samples"], sampler, sigmas, disable_pbar=True, seed=0)

    return run


def pair_rows(b, mode) -> dict:
    """The W2SD pair rows of one mode: ``key: (name, run, predicted cost, resident bytes, models)``."""
    cfg = b.cfg
    return {
        f"cfg:{mode}": (
            "W2SD CFG pair (weak_cfg 1)",
            w2sd(b, b.base, mode, weak_cfg=1.0),
            predicted_cost(b, mode, cfg, 1.0, cfg_only=True),
            0,
            [b.base],
        ),
        f"prompt:{mode}": (
            "W2SD prompt pair (weak_positive)",
            w2sd(b, b.base, mode, weak_positive=b.weak_pos),
            predicted_cost(b, mode, cfg, cfg),
            0,
            [b.base],
        ),
        f"checkpoint:{mode}": (
            "checkpoint pair (2nd model)",
            w2sd(b, b.base, mode, weak_model=b.other),
            predicted_cost(b, mode, cfg, cfg),
            b.model_bytes,
            [b.base, b.other],
        ),
        f"lora:{mode}": (
            "LoRA-delta pair (Weak Model Builder)",
            w2sd(b, b.delta_model, mode),
            predicted_cost(b, mode, cfg, cfg),
            b.lora_bytes,
            [b.delta_model],
        ),
    }


def build_rows(b) -> dict:
    """Every row, in table order: plain, the pair rows of each of ``--modes``, the naive pair
    (reflect mode only)."""
    rows = {"plain": ("plain KSampler", plain(b), b.core.run_cost(b.T, 0, b.cfg, b.cfg, b.cfg), 0, [b.base])}
    for mode in b.args.modes.split(","):
        rows.update(pair_rows(b, mode))
    rows["naive:reflect"] = (
        "LoRA pair, naive (2 clones alternating)",
        naive(b),
        predicted_cost(b, "reflect", b.cfg, b.cfg),
        b.lora_bytes,
        [b.naive_strong],
    )
    return rows
