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

#: ModelPatcher attachment naming a weak/strong difference that travels with the MODEL itself
#: (e.g. a LoRA at two strengths): a dict with at least "kind" and "summary".
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


def role_of_apply_model(args, kwargs) -> str | None:
    """The role of a call seen by an APPLY_MODEL wrapper (BaseModel._apply_model's arguments:
    transformer_options by name, or sixth by position)."""
    options = kwargs.get("transformer_options")
    if options is None:
        options = args[5] if len(args) > 5 else {}
    return role_of(options)
