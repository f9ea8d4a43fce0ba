"""The exact convolution's products are exact: its float64 accumulators equal the same
sums in int64, at the bound's extreme (every weight and activation at its grid's largest,
one sign) as on random numbers, for every kernel path (unfolded windows, 1x1 pixels)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from acnkit.exact import layers
from acnkit.exact.bits import pow2


def _int64_reference(x: torch.Tensor, weight: torch.Tensor, stride: int, padding: int,
                     bias: torch.Tensor) -> torch.Tensor:
    """layers.conv2d's result with its integer products summed in int64 (exact far past
    2^53) and scaled as it scales them."""
    w = layers.weights(weight)
    f = layers._activation_exponent(x, (1, 2, 3), w)
    xi = layers.integers(x, f)
    kh, kw = weight.shape[2:]
    cols = F.unfold(xi, (kh, kw), padding=padding, stride=stride)
    acc = np.matmul(w.q.numpy().astype(np.int64), cols.numpy().astype(np.int64))
    assert np.abs(acc).max() < 2**53  # the bound the grids keep
    b = len(x)
    oh = (x.shape[2] + 2 * padding - kh) // stride + 1
    ow = (x.shape[3] + 2 * padding - kw) // stride + 1
    out = torch.from_numpy(acc.astype(np.float64)) * pow2(-f.reshape(b, 1, 1)) \
        * pow2(-w.k.reshape(1, -1, 1))
    return out.reshape(b, -1, oh, ow) + bias.reshape(1, -1, 1, 1)


@pytest.mark.parametrize(("kernel", "stride", "padding"),
                         [((3, 5), 1, 0), ((3, 5), 1, 2), ((2, 3), 1, 1), ((1, 1), 1, 0), ((3, 3), 2, 1),
                          ((1, 1), 2, 0)])
@pytest.mark.parametrize("extreme", [False, True])
def test_conv2d_sums_exactly_up_to_its_bound(kernel, stride, padding, extreme):
    g = torch.Generator().manual_seed(sum(kernel) + stride)
    channels, c_out = 48, 7
    x = torch.randn(3, channels, 6, 9, generator=g, dtype=torch.float64)
    weight = torch.randn(c_out, channels, *kernel, generator=g, dtype=torch.float64)
    if extreme:  # every product at its largest, one sign: the sums as large as they get
        x = torch.full_like(x, 1.0 - 2.0**-40)
        weight = torch.full_like(weight, 0.75)
    bias = torch.randn(c_out, generator=g, dtype=torch.float64)
    got = layers.conv2d(x, weight, bias, stride=stride, padding=padding)
    want = _int64_reference(x, weight, stride, padding, bias)
    np.testing.assert_array_equal(got.numpy().view(np.int64), want.numpy().view(np.int64))
    # and within float64's rounding of torch's own convolution of the same numbers
    assert torch.allclose(got, F.conv2d(x, weight, bias, stride=stride, padding=padding),
                          rtol=1e-5, atol=1e-5 * float(got.abs().max()))
