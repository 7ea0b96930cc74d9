"""The LoRA pair: one base model, one LoRA, three strengths, no weight copies."""
