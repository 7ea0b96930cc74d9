"""Activation-space LoRA deltas (w2sd_core.lora_delta) against weights patched by hand.

The reference here is the obvious one: build ``W + s·ΔW`` explicitly (``ΔW = α/r · up @ down``
written out independently of the code under test) and run the layer with it.
"""

import pytest
import torch
import torch.nn.functional as F

from w2sd_core.lora_delta import BiasTerm, ConvGeometry, DenseTerm, LayerDelta, LinearGeometry, LoraTerm

F64 = torch.float64


def rnd(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float64)


def close(a, b, tol=1e-10):
    err = (a - b).abs().max().item() / max(b.abs().max().item(), 1e-30)
    assert err <= tol, f"relative error {err:.3g}"


@pytest.mark.parametrize("alpha", [None, 2.0])
@pytest.mark.parametrize("strength", [0.7, -1.3])
def test_linear_matches_patched_weight(alpha, strength):
    W, b = rnd(6, 5, seed=1), rnd(6, seed=2)
    up, down = rnd(6, 3, seed=3), rnd(3, 5, seed=4)
    x = rnd(2, 7, 5, seed=5)
    scale = alpha / 3 if alpha is not None else 1.0
    expected = F.linear(x, W + strength * scale * up @ down, b)
    delta = LayerDelta([LoraTerm(up, down, alpha)], LinearGeometry((6, 5)))
    close(delta.add_to(F.linear(x, W, b), x, strength), expected)


def test_strength_zero_is_identity_and_does_not_touch_output():
    delta = LayerDelta([LoraTerm(rnd(4, 2), rnd(2, 3))], LinearGeometry((4, 3)))
    out = rnd(1, 4)
    before = out.clone()
    assert delta.add_to(out, rnd(1, 3), 0.0) is out
    assert torch.equal(out, before)


def test_fused_qkv_output_slices():
    """Three LoRAs on the q/k/v thirds of one fused weight (Flux / MMDiT sliced keys)."""
    h = 4
    W = rnd(3 * h, 5, seed=1)
    terms, dW = [], torch.zeros(3 * h, 5, dtype=F64)
    for i in range(3):
        up, down = rnd(h, 2, seed=10 + i), rnd(2, 5, seed=20 + i)
        terms.append(LoraTerm(up, down, alpha=1.0, weight_slice=(0, i * h, h)))
        dW[i * h : (i + 1) * h] = 0.5 * up @ down
    x = rnd(3, 5, seed=2)
    delta = LayerDelta(terms, LinearGeometry((3 * h, 5)))
    close(delta.add_to(F.linear(x, W), x, 1.5), F.linear(x, W + 1.5 * dW))
    # a slice patch leaves the other rows alone
    only_k = LayerDelta([terms[1]], LinearGeometry((3 * h, 5)))
    d = only_k.delta(x, F.linear(x, W), 1.0)
    assert torch.count_nonzero(d[:, :h]) == 0 and torch.count_nonzero(d[:, 2 * h :]) == 0


def test_input_slice():
    W = rnd(4, 6, seed=1)
    up, down = rnd(4, 2, seed=2), rnd(2, 3, seed=3)
    dW = torch.zeros(4, 6, dtype=F64)
    dW[:, 3:6] = up @ down
    x = rnd(2, 6, seed=4)
    delta = LayerDelta([LoraTerm(up, down, weight_slice=(1, 3, 3))], LinearGeometry((4, 6)))
    close(delta.add_to(F.linear(x, W), x, -2.0), F.linear(x, W - 2.0 * dW))


@pytest.mark.parametrize("stride,padding,dilation", [(1, 1, 1), (2, 1, 1), (1, 2, 2), (2, 0, 1)])
def test_locon_conv_3x3_down_1x1_up(stride, padding, dilation):
    W, b = rnd(8, 5, 3, 3, seed=1), rnd(8, seed=2)
    up, down = rnd(8, 4, 1, 1, seed=3), rnd(4, 5, 3, 3, seed=4)
    x = rnd(2, 5, 9, 9, seed=5)
    dW = (up.flatten(1) @ down.flatten(1)).reshape(W.shape) * (3.0 / 4)
    kw = dict(stride=stride, padding=padding, dilation=dilation)
    geometry = ConvGeometry(tuple(W.shape), stride=(stride,) * 2, padding=(padding,) * 2, dilation=(dilation,) * 2)
    delta = LayerDelta([LoraTerm(up, down, alpha=3.0)], geometry)
    close(delta.add_to(F.conv2d(x, W, b, **kw), x, 0.9), F.conv2d(x, W + 0.9 * dW, b, **kw))


def test_conv_from_module_and_2d_factors_on_1x1_conv():
    conv = torch.nn.Conv2d(6, 4, 1, dtype=F64)
    up, down = rnd(4, 2, seed=1), rnd(2, 6, seed=2)  # a Linear-shaped LoRA on a 1x1 conv
    x = rnd(1, 6, 5, 5, seed=3)
    expected = F.conv2d(x, conv.weight + (up @ down).reshape(4, 6, 1, 1), conv.bias)
    with torch.no_grad():
        close(LayerDelta([LoraTerm(up, down)], ConvGeometry.from_module(conv)).add_to(conv(x), x, 1.0), expected)


def test_locon_tucker_mid():
    W = rnd(6, 4, 3, 3, seed=1)
    up, mid, down = rnd(6, 2, 1, 1, seed=2), rnd(2, 2, 3, 3, seed=3), rnd(2, 4, 1, 1, seed=4)
    # down_eff[m, i] = sum_j mid[m, j] * down[j, i]  (1x1 down, then the kxk mid)
    down_eff = torch.einsum("mjab,ji->miab", mid, down.flatten(1))
    dW = (up.flatten(1) @ down_eff.flatten(1)).reshape(W.shape)
    x = rnd(2, 4, 7, 7, seed=5)
    geometry = ConvGeometry(tuple(W.shape), padding=(1, 1), stride=(2, 2))
    term = LoraTerm(up, down, mid=mid)
    close(term.dense(W.shape, torch.float64), dW)  # ComfyUI's dense formula agrees with the einsum
    delta = LayerDelta([term], geometry)
    close(delta.add_to(F.conv2d(x, W, padding=1, stride=2), x, 1.2), F.conv2d(x, W + 1.2 * dW, padding=1, stride=2))


def test_grouped_conv_and_circular_padding():
    conv = torch.nn.Conv2d(4, 6, 3, padding=1, groups=2, padding_mode="circular", dtype=F64)
    up, down = rnd(6, 3, seed=1), rnd(3, 2 * 9, seed=2)
    x = rnd(1, 4, 6, 6, seed=3)
    with torch.no_grad():
        ref = torch.nn.Conv2d(4, 6, 3, padding=1, groups=2, padding_mode="circular", dtype=F64)
        ref.weight.copy_(conv.weight + 0.5 * (up @ down).reshape(conv.weight.shape))
        ref.bias.copy_(conv.bias)
        close(LayerDelta([LoraTerm(up, down)], ConvGeometry.from_module(conv)).add_to(conv(x), x, 0.5), ref(x))


def test_conv1d_and_conv3d():
    for dims, fn in ((1, F.conv1d), (3, F.conv3d)):
        k = (3,) * dims
        W = rnd(5, 3, *k, seed=dims)
        up, down = rnd(5, 2, seed=10), rnd(2, 3, *k, seed=11)
        x = rnd(1, 3, *((6,) * dims), seed=12)
        dW = (up @ down.flatten(1)).reshape(W.shape)
        g = ConvGeometry(tuple(W.shape), stride=(1,) * dims, padding=(1,) * dims, dilation=(1,) * dims)
        close(LayerDelta([LoraTerm(up, down)], g).add_to(fn(x, W, padding=1), x, 1.1), fn(x, W + 1.1 * dW, padding=1))


def test_dense_and_bias_differences():
    W, b = rnd(4, 3, seed=1), rnd(4, seed=2)
    dW, db = rnd(4, 3, seed=3), rnd(4, seed=4)
    x = rnd(2, 3, seed=5)
    delta = LayerDelta([DenseTerm(dW), BiasTerm(db)], LinearGeometry((4, 3)))
    close(delta.add_to(F.linear(x, W, b), x, -0.4), F.linear(x, W - 0.4 * dW, b - 0.4 * db))
    conv_w, conv_b = rnd(4, 3, 3, 3, seed=6), rnd(4, seed=7)
    cdw, cdb = rnd(4, 3, 3, 3, seed=8), rnd(4, seed=9)
    xc = rnd(1, 3, 5, 5, seed=10)
    cdelta = LayerDelta([DenseTerm(cdw), BiasTerm(cdb)], ConvGeometry((4, 3, 3, 3), padding=(1, 1)))
    close(
        cdelta.add_to(F.conv2d(xc, conv_w, conv_b, padding=1), xc, 2.0),
        F.conv2d(xc, conv_w + 2.0 * cdw, conv_b + 2.0 * cdb, padding=1),
    )


def test_factors_cast_once_per_device_and_dtype():
    up, down = rnd(4, 2), rnd(2, 3)
    delta = LayerDelta([LoraTerm(up, down)], LinearGeometry((4, 3)))
    x64 = rnd(2, 3)
    out64 = delta.delta(x64, torch.zeros(2, 4, dtype=F64), 1.0)
    out32 = delta.delta(x64.float(), torch.zeros(2, 4, dtype=torch.float32), 1.0)
    assert out32.dtype == torch.float32
    close(out32.double(), out64, tol=1e-6)
    assert len(delta._cache) == 2
    first = delta._cache[(x64.device, torch.float32)]
    delta.delta(x64.float(), torch.zeros(2, 4, dtype=torch.float32), 3.0)
    assert delta._cache[(x64.device, torch.float32)] is first  # reused, not re-cast
    assert delta.cached_bytes() == (4 * 2 + 2 * 3) * (8 + 4)
    delta.clear_cache()
    assert delta.cached_bytes() == 0


def test_output_that_needs_grad_is_not_modified_in_place():
    delta = LayerDelta([LoraTerm(rnd(4, 2), rnd(2, 3))], LinearGeometry((4, 3)))
    W = rnd(4, 3).requires_grad_()
    x = rnd(2, 3)
    out = F.linear(x, W)
    new = delta.add_to(out, x, 1.0)
    assert new is not out and not torch.equal(new, out)


@pytest.mark.parametrize(
    "term,geometry,message",
    [
        (LoraTerm(rnd(4, 2), rnd(2, 5)), LinearGeometry((4, 3)), "down"),
        (LoraTerm(rnd(5, 2), rnd(2, 3)), LinearGeometry((4, 3)), "outputs"),
        (LoraTerm(rnd(4, 3), rnd(2, 3)), LinearGeometry((4, 3)), "does not match down"),
        (LoraTerm(rnd(4, 2), rnd(2, 3), weight_slice=(0, 3, 4)), LinearGeometry((6, 3)), "does not fit"),
        (LoraTerm(rnd(4, 2), rnd(2, 3), mid=rnd(2, 2, 3, 3)), LinearGeometry((4, 3)), "mid"),
        (LoraTerm(rnd(4, 2, 1, 1), rnd(2, 3, 3, 3), mid=rnd(2, 2, 3, 3)), ConvGeometry((4, 3, 3, 3)), "1x1"),
        (BiasTerm(rnd(5)), LinearGeometry((4, 3)), "bias"),
        (DenseTerm(rnd(3, 4)), LinearGeometry((4, 3)), "weight difference"),
    ],
)
def test_mismatched_factors_give_clear_errors(term, geometry, message):
    with pytest.raises(ValueError, match=message):
        LayerDelta([term], geometry)


def test_non_contiguous_output_and_sliced_accumulation_agree():
    """The fused accumulate-into-output path and the plain path give the same result."""
    W = rnd(12, 5, seed=1)
    terms = [
        LoraTerm(rnd(4, 2, seed=2), rnd(2, 5, seed=3), alpha=1.0, weight_slice=(0, 4, 4)),
        LoraTerm(rnd(12, 3, seed=4), rnd(3, 5, seed=5)),
    ]
    delta = LayerDelta(terms, LinearGeometry((12, 5)))
    x = rnd(6, 5, seed=6)
    contiguous = delta.add_to(F.linear(x, W), x, 0.9)
    strided = F.linear(x, W).t().contiguous().t()  # same values, not contiguous
    assert not strided.is_contiguous()
    close(delta.add_to(strided, x, 0.9), contiguous)
    dW = torch.zeros(12, 5, dtype=F64)
    dW[4:8] = 0.5 * terms[0].up @ terms[0].down
    dW += terms[1].up @ terms[1].down
    close(contiguous, F.linear(x, W + 0.9 * dW))
