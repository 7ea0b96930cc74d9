"""Weak/strong pairs: the pair-type contract (base.py), a weak MODEL beside the strong one, and the
pair types built inside one MODEL (LoRA, MoE experts)."""
