"""The exact arithmetic on numpy arrays: the functions :func:`.mode.portable` puts in
place of torch's, for a component that computes its portable path by hand.

Under :func:`.portable` every torch call on a small tensor costs a dispatch through the
mode (several microseconds), and an autoregressive decoder's loss asks for a pixel's CDF
hundreds of thousands of times on a few dozen numbers; a numpy call costs a fraction of
that. Each function here gives the same bits as the replacement the mode uses for the
torch operation of the same name (tests/test_exact_arrays.py holds them to it), so a
component may switch to numpy when :func:`active` says the exact arithmetic is on
(the logistic mixture's ``cdf`` does) and still decode files written either way.

Tensors in: :func:`as_numpy` (a float64 array, without a copy for a CPU float64 tensor).
Layers: :class:`Linear` (a linear layer's weights put on their grid once, then called on
arrays, as ``F.linear``). Elementwise (float64 in, float64 out): :func:`exp`, :func:`expm1`,
:func:`log`, :func:`log1p`, :func:`sigmoid`, :func:`tanh`, :func:`logsigmoid`, :func:`relu`.
Reductions along one axis: :func:`sum_in_order` (a short axis, left to right, as
``torch.sum`` over at most :data:`.layers.SHORT_SUM` numbers), :func:`cumsum` (on the
slice's exact grid, as ``torch.cumsum``), :func:`softmax` and :func:`log_softmax` (their short-axis forms).
"""

from __future__ import annotations

import numpy as np
from torch import Tensor

from . import functions
from .bits import EXACT, np_exponent, np_pow2
from .layers import SHORT_SUM, np_linear, weights
from .mode import active

as_numpy = functions.as_numpy
exp = functions._exp
expm1 = functions._expm1
log = functions._log
log1p = functions._log1p
sigmoid = functions._sigmoid
tanh = functions._tanh


class Linear:
    """``F.linear(x, weight, bias)`` on float64 arrays (..., fan_in), as the mode computes
    it: the weights (a CPU tensor) put on their grid once, here, rather than looked up at
    every call."""

    def __init__(self, weight: Tensor, bias: Tensor | None = None) -> None:
        if weight.device.type != "cpu":
            raise ValueError("acnkit.exact.arrays.Linear takes weights on the CPU")
        self.weights = weights(weight)
        self.bias = None if bias is None else functions.as_numpy(bias)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return np_linear(x, self.weights, self.bias)


def relu(x: np.ndarray) -> np.ndarray:
    """max(0, x), as torch's relu (which keeps -0.0 and NaN)."""
    return np.maximum(0.0, x)


def logsigmoid(x: np.ndarray) -> np.ndarray:
    """ln sigmoid(x), as :func:`.functions.logsigmoid`."""
    return np.minimum(x, 0.0) - log1p(exp(-np.abs(x)))


def sum_in_order(x: np.ndarray, axis: int) -> np.ndarray:
    """x[0] + x[1] + ... along ``axis`` (at most SHORT_SUM long), left to right."""
    n = x.shape[axis]
    if n > SHORT_SUM:
        raise ValueError(f"sum_in_order takes at most {SHORT_SUM} numbers an axis, not {n}")
    total = np.take(x, 0, axis).copy()
    for i in range(1, n):
        total += np.take(x, i, axis)
    return total


def cumsum(x: np.ndarray, axis: int) -> np.ndarray:
    """The running sums along ``axis``, exact on the slice's grid: each slice's values on
    the finest grid 2^-f with n max|x 2^f| <= 2^52 (so every partial sum is an exact
    integer below 2^53), summed, scaled back; slices holding an infinity or NaN as numpy
    sums them (any order gives the same inf or NaN)."""
    x = np.asarray(x, dtype=np.float64)
    n = x.shape[axis]
    # as _slice_exponent: (53 - 1 - bitlength(n - 1)) - exponent(max |x|)
    f = (EXACT - 1 - max(n - 1, 0).bit_length()) - np_exponent(
        np.abs(x).max(axis=axis, keepdims=True))
    out = np.round(x * np_pow2(f)).cumsum(axis) * np_pow2(-f)
    finite = np.isfinite(x)
    if finite.all():
        return out
    return np.where(finite.all(axis=axis, keepdims=True), out, x.cumsum(axis))


def softmax(x: np.ndarray, axis: int) -> np.ndarray:
    """exp(x - max) over its in-order sum, along a short axis (as the mode's softmax)."""
    e = exp(x - x.max(axis=axis, keepdims=True))
    return e / np.expand_dims(sum_in_order(e, axis), axis)


def log_softmax(x: np.ndarray, axis: int) -> np.ndarray:
    """x - max - ln(sum of exp(x - max)), along a short axis (as the mode's log_softmax)."""
    shifted = x - x.max(axis=axis, keepdims=True)
    return shifted - log(np.expand_dims(sum_in_order(exp(shifted), axis), axis))


__all__ = ["Linear", "active", "as_numpy", "relu", "cumsum", "exp", "expm1", "log", "log1p",
           "log_softmax", "logsigmoid", "sigmoid", "softmax", "sum_in_order", "tanh"]
