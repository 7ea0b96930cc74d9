"""LoRA weight differences applied in activation space.

A LoRA changes a layer's weight by ``s · ΔW`` with ``ΔW = (α/r) · up @ down`` (reshaped to the
weight's shape), and the layer's output by ``s · ΔW·x``. The output is linear in the strength ``s``,
so a model whose weights carry the LoRA at strength ``s_final`` behaves as if it carried it at
``s_role`` once ``(s_role − s_final) · ΔW·x`` is added to each LoRA'd layer's output. Computing that
term as ``up(down(x))`` costs two thin matmuls (or convolutions) per layer and no weight copy.

The arithmetic mirrors ComfyUI's ``LoRAAdapter.calculate_weight`` (``comfy/weight_adapter/lora.py``)
so the two agree to rounding:

* ``ΔW = up.flatten(1) @ down.flatten(1)``, reshaped to the (sliced) weight's shape; the scale is
  ``α / down.shape[0]`` when the file stores an alpha, else 1;
* a LoCon/Tucker ``mid`` factor (``lora_mid``) sits between a 1×1 ``down`` and a 1×1 ``up``;
* a patch on a slice of a weight (fused QKV in Flux / MMDiT: ``(dim, offset, size)``) touches only
  that slice: dim 0 is the layer's output channels, dim 1 its input channels.

Nothing here imports ComfyUI: layers are described by plain torch data (``LinearGeometry``,
``ConvGeometry``), and the ComfyUI adapter (``nodes/weak_model.py``) builds them from modules.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence, Union

import torch
import torch.nn.functional as F

#: ``(dim, offset, size)``: the part of a weight a patch applies to (ComfyUI's key-map offsets).
WeightSlice = tuple[int, int, int]


# ---------------------------------------------------------------- layer geometry


@dataclass(frozen=True)
class LinearGeometry:
    """A Linear layer: weight ``(out_features, in_features)``, features in the last dim."""

    weight_shape: tuple[int, ...]

    @property
    def channel_dim(self) -> int:
        return -1


@dataclass(frozen=True)
class ConvGeometry:
    """A Conv1d/2d/3d layer: weight ``(out, in/groups, *kernel)``, channels in dim 1."""

    weight_shape: tuple[int, ...]
    stride: tuple[int, ...] = (1, 1)
    padding: Union[tuple[int, ...], str] = (0, 0)
    dilation: tuple[int, ...] = (1, 1)
    groups: int = 1
    padding_mode: str = "zeros"

    @property
    def channel_dim(self) -> int:
        return 1

    @property
    def dims(self) -> int:
        return len(self.weight_shape) - 2

    @property
    def kernel(self) -> tuple[int, ...]:
        return tuple(self.weight_shape[2:])

    @classmethod
    def from_module(cls, module: torch.nn.modules.conv._ConvNd) -> "ConvGeometry":
        return cls(
            weight_shape=tuple(module.weight.shape),
            stride=tuple(module.stride),
            padding=module.padding if isinstance(module.padding, str) else tuple(module.padding),
            dilation=tuple(module.dilation),
            groups=int(module.groups),
            padding_mode=str(module.padding_mode),
        )

    def pad_input(self, x: torch.Tensor) -> tuple[torch.Tensor, Union[tuple[int, ...], str]]:
        """``x`` padded as the base conv pads it, and the padding left for the conv call."""
        if self.padding_mode == "zeros":
            return x, self.padding
        if isinstance(self.padding, str):
            raise ValueError(f"padding={self.padding!r} with padding_mode={self.padding_mode!r} is not supported")
        # F.pad takes the last dim first, two entries per dim (as torch's _ConvNd does).
        pads = []
        for p in reversed(self.padding):
            pads += [p, p]
        return F.pad(x, pads, mode=self.padding_mode), 0

    def conv(self, x: torch.Tensor, weight: torch.Tensor, *, spatial: bool, groups: int = 1) -> torch.Tensor:
        """``weight`` applied to ``x`` with this layer's stride/padding/dilation when ``spatial``,
        as a plain pointwise convolution otherwise."""
        fn = (F.conv1d, F.conv2d, F.conv3d)[self.dims - 1]
        if not spatial:
            return fn(x, weight, groups=groups)
        x, padding = self.pad_input(x)
        return fn(x, weight, stride=self.stride, padding=padding, dilation=self.dilation, groups=groups)


Geometry = Union[LinearGeometry, ConvGeometry]


def sliced_shape(weight_shape: Sequence[int], weight_slice: Optional[WeightSlice]) -> tuple[int, ...]:
    shape = list(weight_shape)
    if weight_slice is not None:
        dim, offset, size = weight_slice
        if dim not in (0, 1):
            raise ValueError(f"a weight slice must cut the output (0) or input (1) dim, got dim {dim}")
        if offset < 0 or size <= 0 or offset + size > shape[dim]:
            raise ValueError(f"weight slice {weight_slice} does not fit a weight of shape {tuple(weight_shape)}")
        shape[dim] = size
    return tuple(shape)


# ---------------------------------------------------------------- terms


@dataclass(frozen=True)
class LoraTerm:
    """One LoRA (or LoCon) patch: ``ΔW = scale · up @ down`` on (a slice of) a layer's weight."""

    up: torch.Tensor
    down: torch.Tensor
    alpha: Optional[float] = None
    mid: Optional[torch.Tensor] = None
    weight_slice: Optional[WeightSlice] = None

    @property
    def rank(self) -> int:
        return int(self.down.shape[0])

    @property
    def scale(self) -> float:
        # As ComfyUI: alpha / rank when the file gives alpha, else 1.
        return float(self.alpha) / self.rank if self.alpha is not None else 1.0

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.up, self.down, self.mid) if t is not None)

    def dense(self, weight_shape: Sequence[int], dtype=torch.float32, device=None) -> torch.Tensor:
        """``ΔW`` (without the strength) as a tensor of the sliced weight's shape, ComfyUI's formula."""
        shape = sliced_shape(weight_shape, self.weight_slice)
        up = self.up.to(device=device, dtype=dtype)
        down = self.down.to(device=device, dtype=dtype)
        if self.mid is not None:
            mid = self.mid.to(device=device, dtype=dtype)
            final = [down.shape[1], down.shape[0], *mid.shape[2:]]
            down = torch.mm(down.transpose(0, 1).flatten(1), mid.transpose(0, 1).flatten(1))
            down = down.reshape(final).transpose(0, 1)
        return (self.scale * torch.mm(up.flatten(1), down.flatten(1))).reshape(shape)


@dataclass(frozen=True)
class DenseTerm:
    """A full weight difference (ComfyUI's ``diff`` patch): ``ΔW = diff``, linear in the strength."""

    diff: torch.Tensor
    weight_slice: Optional[WeightSlice] = None

    @property
    def nbytes(self) -> int:
        return self.diff.numel() * self.diff.element_size()


@dataclass(frozen=True)
class BiasTerm:
    """A bias difference (``diff_b``): adds ``strength · diff`` to the layer's output channels."""

    diff: torch.Tensor
    weight_slice: Optional[WeightSlice] = None  # only dim 0 (output channels) makes sense

    @property
    def nbytes(self) -> int:
        return self.diff.numel() * self.diff.element_size()


Term = Union[LoraTerm, DenseTerm, BiasTerm]


# ---------------------------------------------------------------- one layer


class LayerDelta:
    """Every strength-linear patch of one Linear/Conv layer, applied to its output.

    ``add_to(output, x, strength)`` returns ``output + strength · Σ ΔW_term · x`` (in place when
    ``output`` needs no grad). Factors are cast to the input's device and dtype once and cached per
    (device, dtype); ``clear_cache()`` drops the casts (e.g. when the model is offloaded).
    """

    def __init__(self, terms: Sequence[Term], geometry: Geometry):
        if not terms:
            raise ValueError("LayerDelta needs at least one term")
        self.terms = tuple(terms)
        self.geometry = geometry
        for term in self.terms:
            self._validate(term)
        self._cache: dict[tuple[torch.device, torch.dtype], list] = {}

    # -- validation: a clear error instead of a shape traceback at sampling time
    def _validate(self, term: Term) -> None:
        g = self.geometry
        shape = sliced_shape(g.weight_shape, term.weight_slice)
        if isinstance(term, BiasTerm):
            if term.weight_slice is not None and term.weight_slice[0] != 0:
                raise ValueError("a bias difference can only be sliced along the output channels")
            if term.diff.numel() != shape[0]:
                raise ValueError(f"bias difference of {term.diff.numel()} values for {shape[0]} output channels")
            return
        if isinstance(term, DenseTerm):
            if tuple(term.diff.shape) != shape:  # ComfyUI does not merge such a diff either
                raise ValueError(
                    f"weight difference of shape {tuple(term.diff.shape)} for a weight (slice) of shape {shape}"
                )
            return
        up_flat = term.up.reshape(term.up.shape[0], -1)
        if up_flat.shape[1] != term.rank:
            raise ValueError(f"LoRA up {tuple(term.up.shape)} does not match down {tuple(term.down.shape)}")
        if up_flat.shape[0] != shape[0]:
            raise ValueError(f"LoRA up has {up_flat.shape[0]} outputs for a weight (slice) with {shape[0]}")
        if isinstance(g, LinearGeometry):
            if term.mid is not None:
                raise ValueError("a LoCon mid factor needs a convolution layer")
            if term.down.reshape(term.rank, -1).shape[1] != shape[1]:
                raise ValueError(f"LoRA down {tuple(term.down.shape)} does not match a Linear weight (slice) {shape}")
            return
        if term.mid is not None:
            if term.down.reshape(term.rank, -1).shape[1] != shape[1]:
                raise ValueError(f"LoCon down {tuple(term.down.shape)} must be 1x1 with a mid factor (weight {shape})")
            if (
                term.mid.ndim != len(shape)
                or term.mid.shape[1] != term.rank
                or tuple(term.mid.shape[2:]) != tuple(shape[2:])
            ):
                raise ValueError(
                    f"LoCon mid {tuple(term.mid.shape)} does not fit down {tuple(term.down.shape)} and weight {shape}"
                )
            return
        if term.down.numel() != term.rank * math.prod(shape[1:]):
            raise ValueError(f"LoRA down {tuple(term.down.shape)} does not match a conv weight (slice) {shape}")

    @property
    def nbytes(self) -> int:
        """Bytes of the factors themselves (what the LoRA file holds for this layer)."""
        return sum(t.nbytes for t in self.terms)

    def cached_bytes(self) -> int:
        return sum(
            t.numel() * t.element_size()
            for entry in self._cache.values()
            for prepared in entry
            for t in prepared[1:]
            if isinstance(t, torch.Tensor)
        )

    def clear_cache(self) -> None:
        self._cache.clear()

    # -- preparation (cast + reshape, once per device/dtype)
    def _prepare(self, device, dtype) -> list:
        key = (device, dtype)
        prepared = self._cache.get(key)
        if prepared is None:
            prepared = [self._prepare_term(t, device, dtype) for t in self.terms]
            self._cache[key] = prepared
        return prepared

    def _prepare_term(self, term: Term, device, dtype):
        g = self.geometry
        shape = sliced_shape(g.weight_shape, term.weight_slice)

        def cast(t):
            return t.to(device=device, dtype=dtype)

        if isinstance(term, BiasTerm):
            return ("bias", cast(term.diff.reshape(-1)))
        if isinstance(term, DenseTerm):
            return ("dense", cast(term.diff))
        if isinstance(g, ConvGeometry) and g.groups != 1:
            # A grouped conv's ΔW does not factor per group: apply it densely (small for such layers).
            compute = torch.float64 if dtype == torch.float64 else torch.float32
            return ("dense", term.dense(g.weight_shape, compute, device).to(dtype=dtype))
        up = cast(term.up.reshape(term.up.shape[0], term.rank))
        if isinstance(g, LinearGeometry):
            return ("lora", cast(term.down.reshape(term.rank, -1)), None, up, term.scale)
        ones = (1,) * g.dims
        up = up.reshape(*up.shape, *ones)
        if term.mid is None:
            down = cast(term.down.reshape(term.rank, *shape[1:]))
            return ("lora", down, None, up, term.scale)
        down = cast(term.down.reshape(term.rank, shape[1], *ones))
        return ("lora", down, cast(term.mid), up, term.scale)

    # -- application
    def add_to(self, output: torch.Tensor, x: torch.Tensor, strength: float) -> torch.Tensor:
        if strength == 0:
            return output
        if output.requires_grad:
            output = output.clone()
        g = self.geometry
        cdim = g.channel_dim
        for term, prepared in zip(self.terms, self._prepare(x.device, x.dtype)):
            target = output
            ws = term.weight_slice
            x_in = x
            if ws is not None:
                if ws[0] == 0:
                    target = output.narrow(cdim, ws[1], ws[2])
                else:
                    x_in = x.narrow(cdim, ws[1], ws[2])
            kind = prepared[0]
            if kind == "bias":
                b = prepared[1] * strength
                if isinstance(g, ConvGeometry):
                    b = b.reshape(-1, *((1,) * g.dims))
                target.add_(b.to(target.dtype))
                continue
            if kind == "dense":
                w = prepared[1]
                if isinstance(g, LinearGeometry):
                    d = F.linear(x_in, w)
                else:
                    d = g.conv(x_in, w, spatial=True, groups=g.groups)
                target.add_(d.to(target.dtype), alpha=strength)
                continue
            _, down, mid, up, scale = prepared
            if isinstance(g, LinearGeometry):
                h = F.linear(x_in, down)
                if target.dtype == h.dtype and output.is_contiguous():
                    # Accumulate straight into the output (a 2D view of it, or of its slice): one
                    # GEMM with beta=1, no temporary of the output's size.
                    out2d = output.view(-1, output.shape[-1])
                    if ws is not None and ws[0] == 0:
                        out2d = out2d.narrow(1, ws[1], ws[2])
                    out2d.addmm_(h.reshape(-1, h.shape[-1]), up.t(), alpha=strength * scale)
                    continue
                d = F.linear(h * (strength * scale), up)
            else:
                if mid is None:
                    h = g.conv(x_in, down, spatial=True)
                else:
                    h = g.conv(g.conv(x_in, down, spatial=False), mid, spatial=True)
                d = g.conv(h, up, spatial=False)
                target.add_(d.to(target.dtype), alpha=strength * scale)
                continue
            target.add_(d.to(target.dtype))
        return output

    def delta(self, x: torch.Tensor, output_like: torch.Tensor, strength: float) -> torch.Tensor:
        """``strength · ΔW·x`` alone (for tests and diagnostics)."""
        return self.add_to(torch.zeros_like(output_like), x, strength)
