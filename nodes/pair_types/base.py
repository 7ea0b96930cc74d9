"""The pair-type contract: what a pair built inside one MODEL tells the rest of the pack.

A pair type (a LoRA at two strengths, MoE experts routed otherwise...) builds a clone of the
strong MODEL whose role-tagged calls (nodes/sampling/roles.py) run the weak or strong side. It
needs three things from here, and nothing else in the pack needs to know the type:

* ``RoleSwitch``: its runtime. Forward hooks on named modules that come and go with the model
  (a ModelPatcher injection) and read one per-thread value, which an APPLY_MODEL wrapper sets from
  each call's role for the duration of that call (``value_of_call``).
* ``PairType``: how the samplers and the input checks treat it (its checks default to none).
* ``attach_pair``: the typed attachment (``PairAttachment``) put on the built model, stacked on
  any pair the model already carried. The samplers read only its fields: ``sides_differ``,
  ``moves_roles``, ``batches_per_chunk``, ``summary``; the web extension learns which nodes build
  a pair from their definitions (``pair_marker`` in nodes/common.py).

An attachment some other code left as a plain dict (``{"kind": ..., "summary": ...}``) reads as a
pair of an unknown type (``as_pair``): its sides differ and it runs per call only.
"""

from __future__ import annotations

import contextlib
import threading
import uuid
from dataclasses import dataclass, field
from typing import Callable, Iterator, Mapping

import comfy.patcher_extension

from ..sampling.roles import PAIR_ATTACHMENT
from .hooks import OwnedHooks


class PairType:
    """How one kind of pair is treated beyond its attachment's fields. Subclass it per pair type and
    override the checks that apply; each raises ValueError with one line naming the node and the fix."""

    kind = "model pair"

    def check_beside_checkpoint(self, pair: "PairAttachment", node: str, side: str) -> None:
        """``side`` ("model" / "weak_model") carries this pair and the other MODEL input is a second
        checkpoint (its weak passes then run on that checkpoint)."""

    def check_model(self, pair: "PairAttachment", node: str, key: str, model) -> None:
        """The MODEL input ``key`` carries this pair (maybe under another): is it misused?"""


OTHER = PairType()


@dataclass(frozen=True, eq=False)
class PairAttachment:
    """What a pair type attaches to the MODEL it builds (ModelPatcher attachment ``w2sd_pair``)."""

    type: PairType
    summary: str  # one line: what differs between the sides (the samplers print it)
    runtime: object = None  # the RoleSwitch switching the sides, if any
    key: str = ""  # of its injection and wrappers
    stacked_on: "PairAttachment | None" = None  # a pair the model carried before: stays active
    sides_differ: bool = True  # False: both sides run the same weights (nothing to plan)
    moves_roles: bool = True  # role-tagged calls run other weights than the normal steps
    batches_per_chunk: bool = False  # applies each side per chunk of one batched call
    details: Mapping = field(default_factory=dict)  # the type's own facts (reports, checks)

    @property
    def kind(self) -> str:
        return self.type.kind

    def __getitem__(self, name: str):
        if name in _FIELDS:
            return getattr(self, name)
        return self.details[name]

    def get(self, name: str, default=None):
        try:
            return self[name]
        except KeyError:
            return default

    def chain(self) -> Iterator["PairAttachment"]:
        """This pair and every pair stacked under it, outermost first."""
        pair = self
        while pair is not None:
            yield pair
            pair = pair.stacked_on


_FIELDS = frozenset(
    ("kind", "type", "summary", "runtime", "key", "stacked_on", "sides_differ", "moves_roles", "batches_per_chunk")
)


def as_pair(attachment) -> PairAttachment | None:
    """The typed form of a ``w2sd_pair`` attachment (None stays None)."""
    if attachment is None or isinstance(attachment, PairAttachment):
        return attachment
    if isinstance(attachment, dict):
        return PairAttachment(
            type=OTHER,
            summary=str(attachment.get("summary") or attachment.get("kind") or "model pair"),
            runtime=attachment.get("runtime"),
            stacked_on=as_pair(attachment.get("stacked_on")),
            details=attachment,
        )
    return PairAttachment(type=OTHER, summary="model pair")


def pair_attachment(model_patcher) -> PairAttachment | None:
    """The pair a MODEL carries inside itself (a weak/strong difference in one model), if any."""
    get = getattr(model_patcher, "get_attachment", None)
    return as_pair(get(PAIR_ATTACHMENT)) if get is not None else None


def pairs_in(model_patcher) -> list[PairAttachment]:
    """Every pair a MODEL carries, outermost first."""
    pair = pair_attachment(model_patcher)
    return list(pair.chain()) if pair is not None else []


# ---------------------------------------------------------------- what the samplers ask
def sides_batch_per_chunk(attachment) -> bool:
    """Whether a model's pairs apply each side per chunk of one batched call (no pair: trivially)."""
    pair = as_pair(attachment)
    return pair is None or all(p.batches_per_chunk for p in pair.chain())


def attachment_sides_differ(attachment) -> bool:
    """Whether a pair carried by the MODEL makes the weak side differ from the strong one."""
    return any(p.sides_differ for p in as_pair(attachment).chain())


def attachment_moves_roles(attachment) -> bool:
    """Whether role-tagged calls run other weights than the normal steps."""
    return any(p.moves_roles for p in as_pair(attachment).chain())


def describe_attachment(attachment) -> str:
    return as_pair(attachment).summary


# ---------------------------------------------------------------- building one
def new_key(prefix: str) -> str:
    """A key of its own for each built model, so pairs stacked on one model each keep theirs."""
    return f"{prefix}:{uuid.uuid4().hex[:8]}"


class RoleSwitch:
    """A pair's runtime: forward hooks (``forward_hooks``) reading ``active()``, which the
    APPLY_MODEL wrapper sets from each call's role (``value_of_call``) while that call runs. The
    value is per thread; ``idle`` outside calls. The hooks are OwnedHooks (nodes/pair_types/hooks.py)."""

    idle: object = None
    with_kwargs = False

    def __init__(self):
        self._local = threading.local()
        self._hooks = OwnedHooks(self.forward_hooks(), with_kwargs=self.with_kwargs)

    def forward_hooks(self) -> dict[str, Callable]:
        raise NotImplementedError

    def value_of_call(self, args, kwargs):
        """The value the hooks see during one model call (BaseModel._apply_model's arguments)."""
        raise NotImplementedError

    def active(self):
        return getattr(self._local, "value", self.idle)

    def inject(self, patcher) -> None:
        self._hooks.inject(patcher)

    def eject(self, patcher) -> None:
        self._hooks.eject(patcher)

    def install(self, out, key: str) -> None:
        """Onto the clone ``out``: the hooks as an injection, the switch as an APPLY_MODEL wrapper."""
        out.set_injections(key, [comfy.patcher_extension.PatcherInjection(self.inject, self.eject)])
        out.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.APPLY_MODEL, key, self.apply_model_wrapper)

    @contextlib.contextmanager
    def active_as(self, value):
        previous = self.active()
        self._local.value = value
        try:
            yield
        finally:
            self._local.value = previous

    def apply_model_wrapper(self, executor, *args, **kwargs):
        with self.active_as(self.value_of_call(args, kwargs)):
            return executor(*args, **kwargs)


def attach_pair(out, base, pair_type: PairType, summary: str, **fields) -> PairAttachment:
    """The last step of every pair type: the attachment on ``out`` (a clone of ``base``), stacked
    on the pair ``base`` already carried (whose hooks travel with the clone and stay active, so the
    summary names both). ``fields``: PairAttachment's other fields."""
    stacked_on = pair_attachment(base)
    if stacked_on is not None:
        summary = f"{stacked_on.summary} + {summary}"
    attachment = PairAttachment(type=pair_type, summary=summary, stacked_on=stacked_on, **fields)
    out.set_attachments(PAIR_ATTACHMENT, attachment)
    return attachment
