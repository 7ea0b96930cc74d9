"""What each kind of W2SD pair costs, on the CPU, in-process in a real ComfyUI.

Run by hand (not a test); it prints a markdown table:

    python benchmarks/bench_pairs.py                      # defaults: ~5 minutes on 2 quiet cores
    python benchmarks/bench_pairs.py --runs 5 --threads 2 --channels 64 --rank 8

Rows (all: euler, "normal" schedule, the same seed, a 32x32 latent by default, steps T, λ reflected steps):

* plain KSampler                         comfy.sample.sample, the baseline
* W2SD CFG pair                          W2SD Reflective KSampler, strong cfg = cfg, weak_cfg 1
* checkpoint pair                        W2SD Reflective KSampler with a second, distinct model
* W2SD prompt pair                       the same model, weak_positive = another prompt
* LoRA-delta pair (W2SD Weak Model Builder) final 0.8 / strong 1.5 / weak -1.5
* LoRA pair, naive                       two ModelPatcher clones of one base with the LoRA at
                                         1.5 (model) and -1.5 (weak_model), alternated the way a
                                         peer implementation does it: load_models_gpu(the clone
                                         a call needs), then ComfyUI's own sampling_function

With ``--modes reflect,guide,reflect+guide`` every W2SD row runs once per mode (λ planned steps are
reflected, guided, or both). In guide mode a single-model pair's guided evaluation is one UNet call
with both sides' conds (cond/uncond of each: 4 chunks at CFG != 1), so it makes T calls, not T + λ;
a CFG-only pair is plain CFG at another scale (T calls, T x 2 passes).

Columns: UNet forward calls and model passes (cond+uncond in one batch = 2 passes), counted with a
forward pre-hook on the UNet; the passes run_cost predicts; median wall seconds over --runs runs
(after one warm-up run; the rows take turns, one run each per round, so load from elsewhere hits all
alike; each run's model is loaded untimed first); wall / ideal = median over rounds of wall / (that
round's plain wall x passes / plain passes); and
memory: the peak of the bytes in use in the C heap (glibc mallinfo2, where torch keeps CPU tensors) and
of the process RSS (psutil), sampled every 2 ms in a thread during each timed run, minus their values
just before it (largest over the runs); plus the resident state a pair keeps (second model, LoRA factors).
"""

from __future__ import annotations

import argparse
import gc
import pathlib
import statistics
import sys
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.append(str(ROOT / "tests"))

import comfy_support  # noqa: E402


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--reflect", type=int, default=10, help="λ, reflected steps")
    p.add_argument("--cfg", type=float, default=7.0)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--channels", type=int, default=64, help="UNet model_channels")
    p.add_argument("--size", type=int, default=32, help="latent size (32 = a 256px image, 64 = 512px)")
    p.add_argument("--rank", type=int, default=8, help="LoRA rank")
    p.add_argument("--locon", action="store_true", help="also put LoCon factors on the convolutions")
    p.add_argument("--rows", default="plain,cfg,prompt,checkpoint,lora,naive")
    p.add_argument(
        "--modes",
        default="reflect",
        help="comma-separated W2SD modes (reflect, guide, reflect+guide): every pair row is run "
        "in each, side by side in the same rounds; the naive row runs in reflect mode only",
    )
    p.add_argument("--guidance", type=float, default=1.0, help="w of the guide modes")
    return p.parse_args()


# ---------------------------------------------------------------- setup


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


# ---------------------------------------------------------------- measuring


class PassCounter:
    """Counts UNet forward calls and passes (batch / latent batch) with a forward pre-hook."""

    def __init__(self, batch: int):
        self.batch = batch
        self.calls = 0
        self.passes = 0
        self.handles = []

    def attach(self, patcher):
        self.handles.append(patcher.model.diffusion_model.register_forward_pre_hook(self._hook))

    def _hook(self, module, args):
        self.calls += 1
        self.passes += args[0].shape[0] // self.batch

    def reset(self):
        self.calls = self.passes = 0


class MemoryPeak:
    """Peak memory added while a block runs, sampled every 2 ms in a thread: the process RSS
    (psutil) and the bytes in use in the C heap (glibc mallinfo2: torch's CPU tensors live there;
    unlike RSS it goes down when memory is freed, so it is not hidden by earlier peaks)."""

    def __init__(self, interval=0.002):
        import ctypes
        import psutil

        class MallInfo2(ctypes.Structure):
            _fields_ = [
                (n, ctypes.c_size_t)
                for n in "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()
            ]

        try:
            libc = ctypes.CDLL("libc.so.6")
            libc.mallinfo2.restype = MallInfo2
            self._mallinfo = libc.mallinfo2
        except (OSError, AttributeError):
            self._mallinfo = None
        self.proc = psutil.Process()
        self.interval = interval

    def heap(self) -> int:
        if self._mallinfo is None:
            return 0
        m = self._mallinfo()
        return m.uordblks + m.hblkhd

    def __enter__(self):
        gc.collect()
        self.rss0, self.heap0 = self.proc.memory_info().rss, self.heap()
        self.rss_peak, self.heap_peak = self.rss0, self.heap0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        self.rss_peak = max(self.rss_peak, self.proc.memory_info().rss)
        self.heap_peak = max(self.heap_peak, self.heap())

    def _run(self):
        while not self._stop.is_set():
            self._sample()
            time.sleep(self.interval)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self._sample()


def mb(n: float) -> str:
    return f"{n / 2**20:.0f}"


def main():
    args = parse_args()
    comfy_support.start_comfyui()
    import torch
    import comfy.utils

    comfy.utils.PROGRESS_BAR_ENABLED = False
    import comfy.sample
    import comfy.samplers
    import comfy.model_management as mm

    torch.set_num_threads(args.threads)
    core = comfy_support.pack_module("w2sd_core")
    lora_pair = comfy_support.pack_module("nodes.pair_types.lora.build")
    weak_model_mod = comfy_support.pack_module("nodes.weak_model")
    reflecting = comfy_support.pack_module("nodes.sampling.reflective_sampler")
    ksampler = comfy_support.node_class("W2SDReflectiveKSampler")

    base = sd_model(args.channels, seed=1)
    other = sd_model(args.channels, seed=2)  # the checkpoint pair's weak model
    model_bytes = sum(p.numel() * p.element_size() for p in base.model.parameters())
    lora = comfy_support.kohya_lora(base, seed=7, rank=args.rank, tucker=False, conv=args.locon, scale=0.05)
    lora_bytes = sum(t.numel() * t.element_size() for t in lora.values())
    built = lora_pair.build_lora_pair(base, lora, "bench", 0.8, 1.5, -1.5)
    delta_model, report = built.model, weak_model_mod.report_lines(built)
    import comfy.sd

    naive_strong = comfy.sd.load_lora_for_models(base, None, lora, 1.5, 0)[0]
    naive_weak = comfy.sd.load_lora_for_models(base, None, lora, -1.5, 0)[0]
    lora_weight_bytes = 0
    state = base.model.state_dict()
    for k in naive_strong.patches:
        lora_weight_bytes += state[k].numel() * state[k].element_size()

    g = torch.Generator().manual_seed(0)
    pos = [[torch.randn(1, 77, 256, generator=g), {}]]
    neg = [[torch.randn(1, 77, 256, generator=g), {}]]
    weak_pos = [[torch.randn(1, 77, 256, generator=g), {}]]  # the prompt pair's weak prompt
    latent = {"samples": torch.zeros(1, 4, args.size, args.size)}
    noise = comfy.sample.prepare_noise(latent["samples"], 0)
    counter = PassCounter(batch=1)
    for m in (base, other):
        counter.attach(m)
    T, lam, cfg = args.steps, args.reflect, args.cfg

    def w2sd(model, mode="reflect", **kw):
        return lambda: ksampler.execute(
            model,
            0,
            T,
            cfg,
            "euler",
            "normal",
            pos,
            neg,
            latent,
            1.0,
            reflect_steps=lam,
            reflect_end_percent=1.0,
            repeats=1,
            inversion="next",
            mode=mode,
            guidance=args.guidance,
            **kw,
        )

    def cost(mode, strong_cfg, weak_cfg, cfg_only=False):
        # what the node's cost text predicts: a CFG-only pair's guided step is one plain CFG step
        reflections = lam if core.guidance.reflects(mode) else 0
        guided = lam if core.guidance.guides(mode) and not cfg_only else 0
        return core.run_cost(T, reflections, cfg, strong_cfg, weak_cfg, guided=guided)

    def naive():
        guider = naive_guider_class()(naive_strong, naive_weak)
        guider.set_conds(pos, neg)
        guider.set_cfg(cfg)
        sampler = reflecting.wrap_sampler(
            comfy.samplers.sampler_object("euler"), reflect_steps=lam, end_percent=1.0, repeats=1, inversion="next"
        )
        sigmas = comfy.samplers.calculate_sigmas(base.get_model_object("model_sampling"), "normal", T)
        return guider.sample(noise, latent["samples"], sampler, sigmas, disable_pbar=True, seed=0)

    rows = {
        "plain": (
            "plain KSampler",
            lambda: comfy.sample.sample(
                base, noise, T, cfg, "euler", "normal", pos, neg, latent["samples"], seed=0, disable_pbar=True
            ),
            core.run_cost(T, 0, cfg, cfg, cfg),
            0,
            [base],
        )
    }
    for mode in args.modes.split(","):
        rows.update(
            {
                f"cfg:{mode}": (
                    "W2SD CFG pair (weak_cfg 1)",
                    w2sd(base, mode, weak_cfg=1.0),
                    cost(mode, cfg, 1.0, cfg_only=True),
                    0,
                    [base],
                ),
                f"prompt:{mode}": (
                    "W2SD prompt pair (weak_positive)",
                    w2sd(base, mode, weak_positive=weak_pos),
                    cost(mode, cfg, cfg),
                    0,
                    [base],
                ),
                f"checkpoint:{mode}": (
                    "checkpoint pair (2nd model)",
                    w2sd(base, mode, weak_model=other),
                    cost(mode, cfg, cfg),
                    model_bytes,
                    [base, other],
                ),
                f"lora:{mode}": (
                    "LoRA-delta pair (Weak Model Builder)",
                    w2sd(delta_model, mode),
                    cost(mode, cfg, cfg),
                    lora_bytes,
                    [delta_model],
                ),
            }
        )
    rows["naive:reflect"] = (
        "LoRA pair, naive (2 clones alternating)",
        naive,
        cost("reflect", cfg, cfg),
        lora_bytes,
        [naive_strong],
    )
    wanted = args.rows.split(",")
    keys = [k for k in rows if k.split(":")[0] in wanted]
    results = {
        k: dict(
            name=rows[k][0],
            mode=k.split(":")[1] if ":" in k else "—",
            cost=rows[k][2],
            resident=rows[k][3],
            times=[],
            heap=0,
            rss=0,
        )
        for k in keys
    }
    for key in keys:  # warm-up: first loads, caches, lazy imports
        rows[key][1]()
    # Rounds: every row once per round, so a load spike from elsewhere hits all rows alike. Before
    # each timed run its model is loaded (and patched) untimed: a steady-state run, as when a
    # workflow is queued again.
    for _ in range(args.runs):
        for key in keys:
            name, fn, cost, resident, models = rows[key]
            mm.load_models_gpu(models)
            counter.reset()
            with MemoryPeak() as memory:  # sampling costs ~1% (a 20 us probe every 2 ms)
                t0 = time.perf_counter()
                fn()
                elapsed = time.perf_counter() - t0
            r = results[key]
            r["times"].append(elapsed)
            r["heap"] = max(r["heap"], memory.heap_peak - memory.heap0)
            r["rss"] = max(r["rss"], memory.rss_peak - memory.rss0)
            r["calls"], r["passes"] = counter.calls, counter.passes
        print("# round: " + ", ".join(f"{k} {results[k]['times'][-1]:.2f}s" for k in keys), file=sys.stderr, flush=True)
    for key in keys:
        r = results[key]
        r["wall"] = statistics.median(r["times"])
        if "plain" in results:
            # wall / ideal per round (against that round's plain run), then the median
            r["ratio"] = statistics.median(
                t / (p * r["cost"].passes / r["cost"].plain_passes)
                for t, p in zip(r["times"], results["plain"]["times"])
            )

    switch_ms = None
    if "naive:reflect" in results:
        # What one switch between the two clones costs by itself: load_models_gpu restores the base
        # weights and re-applies the other clone's LoRA to every LoRA'd weight.
        mm.load_models_gpu([naive_strong])
        t0 = time.perf_counter()
        for i in range(10):
            mm.load_models_gpu([naive_weak if i % 2 == 0 else naive_strong])
        switch_ms = (time.perf_counter() - t0) / 10 * 1000

    print(
        f"\nCPU, {args.threads} threads, torch {torch.__version__}; UNet model_channels {args.channels} "
        f"({model_bytes / 2**20:.0f} MB fp32), latent {args.size}x{args.size}, euler, T={T}, λ={lam}, "
        f"cfg {cfg:g}, LoRA rank {args.rank} on {'Linear + Conv' if args.locon else 'Linear'} layers "
        f"({lora_bytes / 2**20:.1f} MB of factors, {lora_weight_bytes / 2**20:.0f} MB of LoRA'd weights); "
        f"w = {args.guidance:g} in the guide modes; {args.runs} rounds after a warm-up (rows interleaved); "
        f"wall = median, wall / ideal = median "
        f"over rounds of wall / (that round's plain wall x pass ratio).\n"
    )
    print(
        "| pair | mode | UNet calls | passes (predicted) | median wall s | wall / ideal | peak heap added (MB) "
        "| peak RSS added (MB) | resident extra (MB) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results.values():
        print(
            f"| {r['name']} | {r['mode']} | {r['calls']} | {r['passes']} ({r['cost'].passes}) | {r['wall']:.2f} | "
            f"{r.get('ratio', float('nan')):.2f}x | {mb(r['heap'])} | {mb(r['rss'])} | {mb(r['resident'])} |"
        )
    print()
    if switch_ms is not None:
        print(
            f"One switch between the naive pair's clones (load_models_gpu, re-patching "
            f"{lora_weight_bytes / 2**20:.0f} MB of LoRA'd weights): {switch_ms:.0f} ms; a run makes "
            f"2 x λ = {2 * lam} of them.\n"
        )
    print("Builder report:\n" + "\n".join(report))


if __name__ == "__main__":
    main()
