"""The measuring and the printing of ``bench_pairs.py``: UNet passes, peak memory, interleaved timed
rounds, the naive pair's switch cost and the markdown table.

Imported by ``bench_pairs.py``; ComfyUI and torch are imported inside the functions.
"""

from __future__ import annotations

import gc
import statistics
import sys
import threading
import time


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


# ---------------------------------------------------------------- the rounds


def empty_results(rows: dict, keys: list) -> dict:
    """One result per row to measure, before any run."""
    return {
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


def timed_run(row, counter, r: dict) -> None:
    """One timed run of a row into its result ``r``: its model loaded (and patched) untimed first,
    then the wall time, the peak memory added and the UNet calls and passes."""
    import comfy.model_management as mm

    name, fn, cost, resident, models = row
    mm.load_models_gpu(models)
    counter.reset()
    with MemoryPeak() as memory:  # sampling costs ~1% (a 20 us probe every 2 ms)
        t0 = time.perf_counter()
        fn()
        elapsed = time.perf_counter() - t0
    r["times"].append(elapsed)
    r["heap"] = max(r["heap"], memory.heap_peak - memory.heap0)
    r["rss"] = max(r["rss"], memory.rss_peak - memory.rss0)
    r["calls"], r["passes"] = counter.calls, counter.passes


def run_rounds(rows: dict, keys: list, counter, runs: int) -> dict:
    """A warm-up run of every row, then ``runs`` rounds of one timed run per row; returns the
    results with their medians (wall, and wall / ideal against each round's plain run)."""
    results = empty_results(rows, keys)
    for key in keys:  # warm-up: first loads, caches, lazy imports
        rows[key][1]()
    # Rounds: every row once per round, so a load spike from elsewhere hits all rows alike. Before
    # each timed run its model is loaded (and patched) untimed: a steady-state run, as when a
    # workflow is queued again.
    for _ in range(runs):
        for key in keys:
            timed_run(rows[key], counter, results[key])
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
    return results


def switch_ms(strong, weak) -> float:
    """What one switch between the naive pair's two clones costs by itself: load_models_gpu
    restores the base weights and re-applies the other clone's LoRA to every LoRA'd weight."""
    import comfy.model_management as mm

    mm.load_models_gpu([strong])
    t0 = time.perf_counter()
    for i in range(10):
        mm.load_models_gpu([weak if i % 2 == 0 else strong])
    return (time.perf_counter() - t0) / 10 * 1000


# ---------------------------------------------------------------- printing


def print_report(b, results: dict, switch) -> None:
    """The settings line, the markdown table, the naive pair's switch cost (``switch`` ms, None
    when that row did not run) and the Weak Model Builder's report."""
    import torch

    args = b.args
    print(
        f"\nCPU, {args.threads} threads, torch {torch.__version__}; UNet model_channels {args.channels} "
        f"({b.model_bytes / 2**20:.0f} MB fp32), latent {args.size}x{args.size}, euler, T={b.T}, λ={b.lam}, "
        f"cfg {b.cfg:g}, LoRA rank {args.rank} on {'Linear + Conv' if args.locon else 'Linear'} layers "
        f"({b.lora_bytes / 2**20:.1f} MB of factors, {b.lora_weight_bytes / 2**20:.0f} MB of LoRA'd weights); "
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
    if switch is not None:
        print(
            f"One switch between the naive pair's clones (load_models_gpu, re-patching "
            f"{b.lora_weight_bytes / 2**20:.0f} MB of LoRA'd weights): {switch:.0f} ms; a run makes "
            f"2 x λ = {2 * b.lam} of them.\n"
        )
    print("Builder report:\n" + "\n".join(b.report))
