"""ComfyUI V3 nodes of the W2SD pack: thin adapters from ComfyUI objects to ``w2sd_core``."""
