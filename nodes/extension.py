"""The pack's V3 extension: the list of nodes ComfyUI registers."""

from comfy_api.latest import ComfyExtension, io


class W2SDExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        from .inversion import W2SDInversionStep
        from .weak_model import W2SDWeakModelBuilder
        from .sampler import W2SDSampler
        from .guider import W2SDGuiderNode
        from .ksampler import W2SDReflectiveKSampler, W2SDReflectiveKSamplerAdvanced
        from .expert_pair import W2SDExpertPairBuilder

        # Registration order breaks ties in the frontend's node search: the all-in-one node first.
        return [
            W2SDReflectiveKSampler,
            W2SDReflectiveKSamplerAdvanced,
            W2SDGuiderNode,
            W2SDSampler,
            W2SDWeakModelBuilder,
            W2SDExpertPairBuilder,
            W2SDInversionStep,
        ]


async def comfy_entrypoint() -> W2SDExtension:
    return W2SDExtension()
