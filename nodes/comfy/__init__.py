"""The ComfyUI boundary: the only place that knows ComfyUI releases (signatures, classes, sampler
names) and the checks of node inputs. Imports nothing of the pack but ``pair_types.base``."""
