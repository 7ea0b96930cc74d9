"""W2SD core: Weak-to-Strong Diffusion with Reflection as plain torch.

Nothing here imports ComfyUI. Denoisers are callables ``D(x, sigma) -> x0`` in the ComfyUI /
k-diffusion convention (``x = x0 + sigma * eps`` for eps-family models, ``sigma`` of shape
``(batch,)``).
"""

from .plan import NO_REFLECTION, ReflectionPlan, relative_step
from .reflection import INVERSIONS, euler_step, inversion_step, reflect, sigma_batch
from .cost import RunCost, passes_per_evaluation, run_cost
from .defaults import (
    DEFAULT_END_PERCENT,
    DEFAULT_GUIDANCE,
    DEFAULT_INVERSION,
    DEFAULT_MAX_STEP,
    DEFAULT_MODE,
    DEFAULT_PLAN,
    DEFAULTS,
    PAPER,
    TOY,
    Preset,
    default_plan,
)
from .guidance import MODES
from .sampling import (
    invert,
    sample_default,
    sample_euler,
    sample_euler_plain,
    sample_with_reflection,
    sigma_after,
)

__all__ = [
    "DEFAULT_END_PERCENT",
    "DEFAULT_GUIDANCE",
    "DEFAULT_MODE",
    "MODES",
    "DEFAULT_INVERSION",
    "DEFAULT_MAX_STEP",
    "DEFAULT_PLAN",
    "DEFAULTS",
    "INVERSIONS",
    "NO_REFLECTION",
    "PAPER",
    "Preset",
    "TOY",
    "ReflectionPlan",
    "RunCost",
    "default_plan",
    "relative_step",
    "sample_default",
    "euler_step",
    "invert",
    "inversion_step",
    "reflect",
    "sample_euler",
    "sample_euler_plain",
    "passes_per_evaluation",
    "run_cost",
    "sample_with_reflection",
    "sigma_after",
    "sigma_batch",
]
__version__ = "0.1.0"
