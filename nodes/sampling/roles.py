"""How a model call says which reflection pass it is.

The W2SD sampler tags each reflection (and guidance) call in
``model_options["transformer_options"][ROLE_KEY]``; normal steps carry no tag. The W2SD guider
(weak conds, weak CFG, weak model) and the LoRA-delta wrapper (per-role strength) read it.
"""

ROLE_KEY = "w2sd_role"
STRONG = "reflect_strong"
WEAK = "reflect_weak"
#: A guided evaluation handed to a guider that evaluates both sides itself (W2SD Guider), with the
#: guidance scale under GUIDANCE_KEY.
GUIDE = "guide"
GUIDANCE_KEY = "w2sd_guidance"
#: In a batched guided call: the role of each cond list, by position (ComfyUI's cond_or_uncond
#: says which cond list each chunk of the batch is).
COND_ROLES_KEY = "w2sd_cond_roles"

#: ModelPatcher attachment naming a weak/strong difference that travels with the MODEL itself
#: (e.g. a LoRA at two strengths): a PairAttachment (nodes/pair_types/base.py).
PAIR_ATTACHMENT = "w2sd_pair"


def role_of(transformer_options) -> str | None:
    return (transformer_options or {}).get(ROLE_KEY)


def with_role(model_options: dict, role: str, **extra) -> dict:
    """A copy of ``model_options`` whose transformer_options carry ``role`` (and ``extra``
    entries); never mutates."""
    options = dict(model_options)
    transformer_options = dict(options.get("transformer_options", {}))
    transformer_options[ROLE_KEY] = role
    transformer_options.update(extra)
    options["transformer_options"] = transformer_options
    return options


def options_of_apply_model(args, kwargs) -> dict:
    """The transformer_options an APPLY_MODEL wrapper sees (BaseModel._apply_model's arguments:
    by name, or sixth by position)."""
    options = kwargs.get("transformer_options")
    if options is None:
        options = args[5] if len(args) > 5 else {}
    return options or {}


def role_of_apply_model(args, kwargs) -> str | None:
    return role_of(options_of_apply_model(args, kwargs))
