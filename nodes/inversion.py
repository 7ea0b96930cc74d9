"""W2SD Inversion Step: deterministic inversion of a LATENT up a SIGMAS segment.

The math is ``w2sd_core.invert``; this node only adapts ComfyUI objects to it. The inversion runs
through a real ``comfy.samplers.CFGGuider`` as a KSAMPLER fed the *ascending* sigmas, so the conds,
hooks, ControlNets, inpaint masks and the latent format are handled by the same code as in sampling.
Handing the guider ascending sigmas is also exactly what makes the output round-trip with ComfyUI's
samplers: with zero noise, KSAMPLER's ``noise_scaling(sigmas[0] = lowest, 0, latent)`` puts the input
latent into sampler space the way a sampler that *ended* at that level left it, and
``inverse_noise_scaling(sigmas[-1] = highest, x)`` turns the result into what a sampler *started*
with ``add_noise`` disabled at that level turns back into ``x`` (flow models: ``x / (1 - sigma)``,
undoing the ``(1 - sigma) * latent`` KSamplerAdvanced applies; an identity for eps / v models).
With a noise_mask the unmasked regions come back as the input latent (see ``execute``).

The ``inversion`` choices are ``next`` (default) and ``current``; the core's third
mode, ``official``, exists only as part of a reflection (it needs the level after the target).
"""

from __future__ import annotations

import comfy.sampler_helpers
import comfy.samplers
import comfy.utils
import latent_preview
from comfy_api.latest import io

from .comfy import compat, validate
from .comfy.model_types import is_flow
from .common import CATEGORY, schema_extras
from .sampling.inversion import INVERSION_MODES, ascending_sigmas, inversion_sampler


def _inputs() -> list:
    return [
        io.Model.Input("model", tooltip="The model whose predictions drive the inversion."),
        io.Conditioning.Input(
            "positive",
            tooltip="The conditioning the inversion follows "
            "(use the prompt you will re-sample with for a faithful round trip).",
        ),
        io.Conditioning.Input("negative", tooltip="The negative conditioning (used only when cfg is not 1.0)."),
        io.Float.Input(
            "cfg",
            default=1.0,
            min=0.0,
            max=100.0,
            step=0.1,
            round=0.01,
            tooltip="Classifier-free guidance scale of the inversion. 1.0 (the default, "
            "the usual choice) uses the positive conditioning only, one model pass per "
            "step; other values cost two passes per step. Re-sample with the same cfg "
            "for a faithful round trip.",
        ),
        io.Latent.Input(
            "latent",
            tooltip="The latent to invert, as a sampler left it at the "
            "segment's lowest sigma (a clean latent for a segment ending at 0). "
            "noise_mask, batch_index and other keys are kept.",
        ),
        io.Sigmas.Input(
            "sigmas",
            tooltip="The schedule segment to invert, descending as from a "
            "scheduler (e.g. the low_sigmas of SplitSigmas at step k): the inversion "
            "runs from its lowest sigma up to its highest, one model evaluation per "
            "step.",
        ),
        io.Combo.Input(
            "inversion",
            options=list(INVERSION_MODES),
            default="next",
            optional=True,
            tooltip="Noise label of each inversion step: 'next' evaluates the model at "
            "the level the latent sits at (standard DDIM inversion); 'current' at the "
            "level it is moved to (the W2SD paper's Eq. 5, the label the Euler step "
            "that re-samples it uses). Both are first order: the round-trip error "
            "shrinks in proportion to the step size.",
        ),
    ]


class W2SDInversionStep(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="W2SDInversionStep",
            display_name="W2SD Inversion Step",
            category=CATEGORY,
            **schema_extras("inversion"),
            description=(
                "Deterministic inversion (DDIM / flow-Euler inversion) of a latent from the lowest to "
                "the highest sigma of a schedule segment, with the model's own predictions. Re-sampling "
                "the result over the same segment with the Euler sampler and no added noise "
                "(KSampler (Advanced) with add_noise disabled and start_at_step = the split step, or "
                "SamplerCustomAdvanced with DisableNoise and the low sigmas of SplitSigmas) gives the "
                "input latent back, up to the discretisation error. The building block of W2SD's "
                "reflection, exposed for editing and inversion workflows."
            ),
            inputs=_inputs(),
            outputs=[
                io.Latent.Output(
                    display_name="latent",
                    tooltip="The latent at the segment's highest "
                    "sigma, ready for a sampler that starts there with no added noise "
                    "(KSampler (Advanced) add_noise disabled / DisableNoise).",
                ),
            ],
        )

    @classmethod
    def execute(cls, model, positive, negative, cfg, latent, sigmas, inversion="next") -> io.NodeOutput:
        validate.inputs(cls, locals())
        compat.require()
        sigmas = ascending_sigmas(sigmas)
        latent_image = compat.ksampler_latent(model, latent)
        validate.latent(cls, "latent", model, latent, latent_image)
        if is_flow(model.get_model_object("model_sampling")) and float(sigmas[-1]) >= 1.0:
            # The result would be x / (1 - sigma) = inf, and a sampler started at sigma 1 with no
            # added noise starts from (1 - sigma) * latent = 0 whatever the latent holds.
            raise ValueError(
                f"W2SD Inversion Step: this is a flow model and the segment reaches sigma "
                f"{float(sigmas[-1]):g} (pure noise). A sampler started there without added noise "
                f"multiplies the latent by 1 - sigma = 0, so no LATENT can carry the inverted noise. "
                f"Invert a segment that stops below sigma 1 (e.g. SplitSigmas at step 1 or later, "
                f"its low_sigmas) and start the re-sampling at that step."
            )
        sampler = inversion_sampler(inversion)

        noise_mask = latent.get("noise_mask")
        guider = comfy.samplers.CFGGuider(model)
        guider.set_conds(positive, negative)
        guider.set_cfg(cfg)
        # Zero noise: KSAMPLER's noise scaling at the segment's lowest sigma then only maps the latent
        # into sampler space (and the inpaint wrapper keeps unmasked regions on the input latent).
        noise = compat.empty_noise(latent_image)
        steps = len(sigmas) - 1
        callback = latent_preview.prepare_callback(model, steps)
        samples = guider.sample(
            noise,
            latent_image,
            sampler,
            sigmas,
            denoise_mask=noise_mask,
            callback=callback,
            disable_pbar=not comfy.utils.PROGRESS_BAR_ENABLED,
            seed=0,
        )
        samples = compat.as_intermediate(samples)
        if noise_mask is not None:
            # Inside the model calls the inpaint wrapper holds unmasked regions on the input latent, and
            # a sampler started from our output with zero noise returns them as they are in its input
            # latent. So they must stay the input latent here, not the sampler-space value that
            # inverse_noise_scaling divides by (1 - sigma) for flow models.
            mask = comfy.sampler_helpers.prepare_mask(noise_mask, samples.shape, samples.device)
            samples = samples * mask + latent_image.to(samples) * (1.0 - mask)
        return io.NodeOutput(compat.ksampler_output(latent, samples))
