"""The pack's V3 extension: the list of nodes ComfyUI registers."""
from comfy_api.latest import ComfyExtension, io


class W2SDExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return []


async def comfy_entrypoint() -> W2SDExtension:
    return W2SDExtension()
