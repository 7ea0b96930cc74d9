"""ComfyUI's sampler functions by name, as its releases ship them: which ones run any slice of a
schedule, which take Euler steps on some slices and why, and which draw their noise from a
Brownian tree. A sampler missing here is treated as unknown (nodes/sampling/slicing.py); a test
lists every sampler of the running release that is.
"""

from __future__ import annotations

#: Modules of ComfyUI's own sampler functions.
COMFY_MODULES = ("comfy.k_diffusion.sampling", "comfy.samplers", "comfy.extra_samplers.uni_pc")

#: ComfyUI's sampler functions known to run any slice: one-step methods, and multistep methods
#: that restart at first order where a slice begins (their history resumes inside each slice).
ANY_SLICE = frozenset(
    ["dpm_fast_function"]
    + [
        f"sample_{name}"
        for name in (
            "euler",
            "euler_cfg_pp",
            "euler_ancestral",
            "euler_ancestral_cfg_pp",
            "heun",
            "heunpp2",
            "exp_heun_2_x0",
            "exp_heun_2_x0_sde",
            "dpm_2",
            "dpm_2_ancestral",
            "lms",
            "dpmpp_2s_ancestral",
            "dpmpp_2s_ancestral_cfg_pp",
            "dpmpp_sde",
            "dpmpp_sde_gpu",
            "dpmpp_2m",
            "dpmpp_2m_cfg_pp",
            "dpmpp_2m_sde",
            "dpmpp_2m_sde_gpu",
            "dpmpp_2m_sde_heun",
            "dpmpp_2m_sde_heun_gpu",
            "dpmpp_3m_sde",
            "dpmpp_3m_sde_gpu",
            "ddpm",
            "lcm",
            "ipndm",
            "ipndm_v",
            "deis",
            "res_multistep",
            "res_multistep_cfg_pp",
            "res_multistep_ancestral",
            "res_multistep_ancestral_cfg_pp",
            "gradient_estimation",
            "gradient_estimation_cfg_pp",
            "er_sde",
            "seeds_2",
            "seeds_3",
        )
    ]
)

ONE_STEP = "one-step slices"
OPEN_END = "slices that end before the schedule does"

#: Samplers that take Euler steps on some slices: {function name: (which slices, why)}.
EULER_INSIDE = {
    "sample_unipc": (
        ONE_STEP,
        "UniPC evaluates only at its first step and moves on the next, so a one-step call returns its input",
    ),
    "sample_unipc_bh2": (ONE_STEP, "as UniPC"),
    "sample_sa_solver": (
        OPEN_END,
        "SA-Solver returns its corrected state, one step behind its "
        "prediction, so a call ending above sigma 0 stops one step short",
    ),
    "sample_sa_solver_pece": (OPEN_END, "as SA-Solver"),
    "dpm_adaptive_function": (
        OPEN_END,
        "dpm_adaptive runs its own step-size control between the "
        "first and last sigma; restarted per reflected step it took "
        "several times the evaluations and redrew its noise",
    ),
}

#: Samplers whose own noise source is a Brownian tree over the schedule (value: tree on the CPU).
BROWNIAN = {
    f"sample_{name}": not name.endswith("_gpu")
    for name in (
        "dpmpp_sde",
        "dpmpp_2m_sde",
        "dpmpp_2m_sde_heun",
        "dpmpp_3m_sde",
        "dpmpp_sde_gpu",
        "dpmpp_2m_sde_gpu",
        "dpmpp_2m_sde_heun_gpu",
        "dpmpp_3m_sde_gpu",
    )
}
