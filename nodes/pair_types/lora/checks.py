"""The LoRA pair's type: the checks a MODEL carrying it gets at the node boundary (nodes/comfy/
validate.py asks every pair type through nodes/pair_types/base.py)."""

from __future__ import annotations

from ..base import PairAttachment, PairType
from .analysis import same_patch, split_key


class LoraPairType(PairType):
    kind = "lora_delta"

    def check_beside_checkpoint(self, pair: PairAttachment, node: str, side: str) -> None:
        """A Weak Model Builder LoRA pair switches strengths per role on its own weights. With a
        second checkpoint as weak_model the weak passes run on that checkpoint, so the pair's
        weak_strength (or, on the weak side, its strong_strength) would have no effect at all."""
        ignored = "weak_strength" if side == "model" else "strong_strength and final_strength"
        raise ValueError(
            f"{node}: {side} carries a Weak Model Builder LoRA pair ({pair.get('summary')}) and "
            f"weak_model is a second checkpoint, so the pair's {ignored} would have no effect; "
            f"use one kind of pair: the builder's model alone (weak_model empty), or two "
            f"checkpoints without the builder (a LoRA loader at one strength is fine)."
        )

    def check_model(self, pair: PairAttachment, node: str, key: str, model) -> None:
        """A LoRA loader after a Weak Model Builder that loads the builder's own LoRA again: the
        LoRA would be applied twice (the builder already fuses it at final_strength). The reverse
        order is refused by the builder itself."""
        patches = getattr(model, "patches", None)
        if patches is None:
            return
        for patch_key, value in (pair.get("patches") or {}).items():
            param_key, weight_slice, _ = split_key(patch_key)
            for entry in patches.get(param_key, ()):
                if entry[1] is not value and entry[3] == weight_slice and same_patch(entry[1], value):
                    raise ValueError(
                        f"{node}: {key} carries the LoRA '{pair.get('lora')}' twice: W2SD Weak Model "
                        f"Builder fuses it at final_strength {pair.get('final_strength'):g} and a LoRA loader "
                        f"after the builder applies it again (strength {entry[0]:g}); remove that LoRA "
                        f"loader and set the builder's final_strength instead."
                    )


LORA = LoraPairType()
