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
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.append(str(ROOT / "tests"))  # comfy_support
sys.path.append(str(ROOT / "benchmarks"))  # its helper modules, also under python -m benchmarks.bench_pairs

import bench_measure  # noqa: E402  (the measuring and the table)
import bench_setup  # noqa: E402  (the models, the inputs, the rows)


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


def main():
    args = parse_args()
    bench = bench_setup.start(args)
    bench_setup.add_models(bench)
    bench_setup.add_inputs(bench)
    rows = bench_setup.build_rows(bench)
    wanted = args.rows.split(",")
    keys = [k for k in rows if k.split(":")[0] in wanted]
    results = bench_measure.run_rounds(rows, keys, bench.counter, args.runs)
    switch = None
    if "naive:reflect" in results:
        switch = bench_measure.switch_ms(bench.naive_strong, bench.naive_weak)
    bench_measure.print_report(bench, results, switch)


if __name__ == "__main__":
    main()
