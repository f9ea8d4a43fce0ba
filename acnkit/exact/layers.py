"""Sums, products of matrices and convolutions whose every partial sum is an exact integer.

A float64 holds every integer below 2^53 exactly, so a sum of integers whose absolute
values add up to at most 2^53 is exact in any order: every CPU kernel, thread split, BLAS
and GPU returns the same bits. Each operation here turns its operands into such integers
on grids of steps 2^-k chosen so that the bound holds (the bound is written beside each),
sums them with torch's own fast kernels, and scales the exact result back.

The grids are chosen per *row* (one image's activations, one output unit's weights), from
the largest magnitude in the row, so a row's result never depends on the other rows of a
batch: the receiver may decode in batches the sender never formed.

- weights: each output unit's weights on the grid that puts its largest at 2^WEIGHT_BITS
  (:data:`WEIGHT_BITS` significant bits, a relative 2^-20 of the unit's largest weight);
- activations: each row's values on the finest grid that keeps
  max|x_int| * max_unit sum|w_int| <= 2^53 (about 53 - 20 - log2(fan-in) bits, 25 for an
  800-input layer: float32's precision);
- sums over an axis: each slice's values on the finest grid with n * max|x_int| <= 2^52.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.weak import WeakIdKeyDictionary

from . import functions
from .bits import EXACT, exponent, integers, np_exponent, np_pow2, pow2
from .functions import KERNELS

#: significant bits of a weight (each output unit's largest weight is below 2^WEIGHT_BITS
#: on its grid)
WEIGHT_BITS = 20


class NotPortable(Exception):
    """An operation that has no exact form here: its results could differ by machine."""


def _row_exponent(x: Tensor, dims: tuple[int, ...]) -> Tensor:
    """exponent() of the largest |x| over ``dims`` (kept as size-1 dims)."""
    return exponent(x.abs().amax(dim=dims, keepdim=True))


class Weights:
    """A weight matrix (out, fan_in) on its grid: integers ``q`` (float64), each unit's
    exponent ``k`` (w = q * 2^-k) and ``bound_exponent``: every unit's sum |q| < 2^it."""

    def __init__(self, w: Tensor) -> None:
        w = w.detach().to(torch.float64).reshape(len(w), -1)
        if not torch.isfinite(w).all():
            raise NotPortable("a weight is not a finite number")
        # |w_j| < 2^e_j  ->  |w_j * 2^(WEIGHT_BITS - e_j)| < 2^WEIGHT_BITS
        self.k = WEIGHT_BITS - _row_exponent(w, (1,))
        self.q = integers(w, self.k)
        # bound: sum_i |q_ji| <= fan_in * 2^WEIGHT_BITS < 2^53 for fan_in < 2^33: exact
        l1 = self.q.abs().sum(1).max()
        self.bound_exponent = int(exponent(l1).item())
        self.qt = self.q.t()  # a view: BLAS is faster on (out, in) rows here
        # the same numbers for numpy (linear layers on the CPU)
        if self.q.device.type == "cpu":
            self.np_q = self.q.numpy()
            self.np_qt = self.np_q.T
            self.np_scale = np_pow2(-self.k.reshape(-1).numpy())


_CACHE = WeakIdKeyDictionary()


def weights(w: Tensor) -> Weights:
    """``w`` on its grid, cached while the tensor lives and is not written to."""
    hit = _CACHE.get(w)
    if hit is not None and hit[0] == w._version:
        return hit[1]
    made = Weights(w)
    try:
        _CACHE[w] = (w._version, made)
    except TypeError:  # pragma: no cover - a tensor that takes no weak reference
        pass
    return made


def _activation_exponent(x: Tensor, dims: tuple[int, ...], w: Weights) -> Tensor:
    """The grid 2^-f of each row of ``x`` (max over ``dims``) for products with ``w``:
    max|x_int| <= 2^(53 - b) and every unit's sum |q| < 2^b, so every partial sum of
    x_int * q is below 2^53 in magnitude: exact."""
    return EXACT - w.bound_exponent - _row_exponent(x, dims)


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """x @ weight.T + bias, the products exact (module docstring); with numpy on the CPU
    (the same operations, a fraction of torch's cost a call on a few rows)."""
    w = weights(weight)
    if x.device.type == "cpu" and w.q.device.type == "cpu":
        b = None if bias is None else functions.as_numpy(bias)
        return torch.from_numpy(np_linear(functions.as_numpy(x), w, b))
    x = x.to(torch.float64)
    f = _activation_exponent(x, (-1,), w)
    acc = integers(x, f) @ w.qt  # exact: see _activation_exponent
    out = acc * pow2(-f) * pow2(-w.k.reshape(-1))
    return out if bias is None else out + bias.to(torch.float64)


def np_linear(a: np.ndarray, w: Weights, bias: np.ndarray | None) -> np.ndarray:
    """:func:`linear` of a float64 numpy array with weights on their grid (the CPU path)."""
    if KERNELS is not None and a.size and a.shape[-1]:
        return _compiled_linear(a, w, bias)
    grid = EXACT - w.bound_exponent - np_exponent(np.abs(a).max(-1, keepdims=True))
    acc = np.round(a * np_pow2(grid)) @ w.np_qt  # exact: see _activation_exponent
    acc *= np_pow2(-grid)
    acc *= w.np_scale
    if bias is not None:
        acc += bias
    return acc


def _compiled_linear(a: np.ndarray, w: Weights, bias: np.ndarray | None) -> np.ndarray:
    """:func:`linear`'s numpy path with its two elementwise passes in C (the same
    operations: each row's grid from its largest |x|, rint(x 2^f); then 2^-f, the unit's
    scale, the bias)."""
    rows = np.ascontiguousarray(a).reshape(-1, a.shape[-1])
    ints = np.empty(rows.shape, dtype=np.float64)
    grids = KERNELS.quantize_rows(rows, ints, rows.shape[1], w.bound_exponent)
    acc = np.ascontiguousarray(ints @ w.np_qt)  # exact: see _activation_exponent
    KERNELS.unscale_rows(acc, grids, w.np_scale,
                         None if bias is None else np.ascontiguousarray(bias))
    return acc.reshape(*a.shape[:-1], acc.shape[-1])


def _pair(v: Any) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


def conv2d(x: Tensor, weight: Tensor, bias: Tensor | None = None, stride: Any = 1,
           padding: Any = 0, dilation: Any = 1, groups: int = 1) -> Tensor:
    """A 2-d convolution as a product of the unfolded image with the weights (unfolding
    only moves numbers), each image on its own grid (its largest value over all channels
    and positions bounds every window's)."""
    if groups != 1:
        raise NotPortable("conv2d with groups")
    unbatched = x.dim() == 3
    x = (x[None] if unbatched else x).to(torch.float64)
    c_out, _, kh, kw = weight.shape
    if isinstance(padding, str):
        if padding == "valid":
            padding = 0
        else:  # "same" (stride 1): the kernel's reach split as torch splits it
            d = _pair(dilation)
            total = (d[0] * (kh - 1), d[1] * (kw - 1))
            x = F.pad(x, (total[1] // 2, total[1] - total[1] // 2,
                          total[0] // 2, total[0] - total[0] // 2))
            padding = 0
    w = weights(weight)
    s, p, d = _pair(stride), _pair(padding), _pair(dilation)
    cpu = x.device.type == "cpu" and w.q.device.type == "cpu"
    if cpu and KERNELS is not None and (*s, *d) == (1, 1, 1, 1) and x.numel():
        out = torch.from_numpy(_compiled_conv(x.detach().numpy(), w, kh, kw, p, bias))
        return out[0] if unbatched else out
    f = _activation_exponent(x, (1, 2, 3), w)
    xi = integers(x, f)
    b, _, h, wd = xi.shape
    oh = (h + 2 * p[0] - d[0] * (kh - 1) - 1) // s[0] + 1
    ow = (wd + 2 * p[1] - d[1] * (kw - 1) - 1) // s[1] + 1
    if (kh, kw, *s, *p) == (1, 1, 1, 1, 0, 0):  # a 1x1 kernel's windows are the pixels
        cols = xi.reshape(b, xi.shape[1], h * wd)
    elif cpu and (*s, *d) == (1, 1, 1, 1):
        cols = None  # the windows below, laid out for one product
    else:
        cols = F.unfold(xi, (kh, kw), dilation=d, padding=p, stride=s)  # (B, C*kh*kw, L)
    # exact: (c_out, C*kh*kw) @ (B, C*kh*kw, L), every product and partial sum an integer
    # below 2^53, so any kernel in any order gives the same; on the CPU numpy's (OpenBLAS's
    # products take half the time of torch's float64 ones on these shapes)
    if cols is None:
        acc = torch.from_numpy(_np_windows_product(xi.detach().numpy(), w.np_q, kh, kw, p))
    elif cpu:
        acc = torch.from_numpy(np.matmul(w.np_q, cols.detach().numpy()))
    else:
        acc = w.q @ cols
    out = (acc * pow2(-f.reshape(b, 1, 1)) * pow2(-w.k.reshape(1, c_out, 1))
           ).reshape(b, c_out, oh, ow)
    if bias is not None:
        out = out + bias.to(torch.float64).reshape(1, -1, 1, 1)
    return out[0] if unbatched else out


def _np_windows_product(xi: np.ndarray, q: np.ndarray, kh: int, kw: int,
                        padding: tuple[int, int]) -> np.ndarray:
    """q (c_out, C*kh*kw) times every kh x kw window of ``xi`` (B, C, H, W; stride and
    dilation 1), (B, c_out, L): the windows copied once, channel-major as unfold lays them
    out, into the columns of one product over all images (a third of the time of unfold
    and a product an image, for the PixelCNN's rows)."""
    if padding != (0, 0):
        xi = np.pad(xi, ((0, 0), (0, 0), (padding[0],) * 2, (padding[1],) * 2))
    b, c = xi.shape[:2]
    win = np.lib.stride_tricks.sliding_window_view(xi, (kh, kw), axis=(2, 3))
    # (B, C, OH, OW, kh, kw) -> (C, kh, kw, B, OH, OW): row (c, i, j) as unfold's
    cols = np.ascontiguousarray(win.transpose(1, 4, 5, 0, 2, 3)).reshape(c * kh * kw, -1)
    return (q @ cols).reshape(len(q), b, -1).transpose(1, 0, 2)


def _compiled_conv(x: np.ndarray, w: Weights, kh: int, kw: int, padding: tuple[int, int],
                   bias: Tensor | None) -> np.ndarray:
    """:func:`conv2d` (stride and dilation 1) with its grids found and its activations
    rounded in C (:func:`_compiled_linear`'s pass: each image's grid from its largest |x|,
    as :func:`_activation_exponent`, and rint(x 2^f)), the windows' product as
    :func:`_np_windows_product`, then 2^-f, the unit's scale and the bias in place: the
    same multiplications in the same order as the torch path, so the same bits."""
    b = len(x)
    flat = np.ascontiguousarray(x).reshape(b, -1)
    ints = np.empty(flat.shape, dtype=np.float64)
    grids = np.frombuffer(KERNELS.quantize_rows(flat, ints, flat.shape[1], w.bound_exponent),
                          dtype=np.int64)
    acc = _np_windows_product(ints.reshape(x.shape), w.np_q, kh, kw, padding)  # (B, c_out, L)
    acc *= np_pow2(-grids)[:, None, None]
    acc *= w.np_scale[None, :, None]
    if bias is not None:
        acc += bias.detach().to(torch.float64).numpy()[None, :, None]
    oh, ow = x.shape[2] + 2 * padding[0] - kh + 1, x.shape[3] + 2 * padding[1] - kw + 1
    return acc.reshape(b, len(w.np_q), oh, ow)


def conv_transpose2d(x: Tensor, weight: Tensor, bias: Tensor | None = None, stride: Any = 1,
                     padding: Any = 0, output_padding: Any = 0, groups: int = 1,
                     dilation: Any = 1) -> Tensor:
    """The transposed convolution as an ordinary one: the input spread out by the stride
    (zeros between), padded by the kernel's reach less ``padding``, convolved with the
    kernel flipped and its in/out channels swapped."""
    if groups != 1 or _pair(dilation) != (1, 1):
        raise NotPortable("conv_transpose2d with groups or dilation")
    x = x.to(torch.float64)
    b, c, h, wd = x.shape
    s, p, op = _pair(stride), _pair(padding), _pair(output_padding)
    kh, kw = weight.shape[2:]
    spread = x.new_zeros((b, c, (h - 1) * s[0] + 1, (wd - 1) * s[1] + 1))
    spread[:, :, :: s[0], :: s[1]] = x
    ph, pw = kh - 1 - p[0], kw - 1 - p[1]
    if ph < 0 or pw < 0:
        raise NotPortable("conv_transpose2d with padding beyond its kernel")
    spread = F.pad(spread, (pw, pw + op[1], ph, ph + op[0]))
    flipped = _flipped(weight)
    return conv2d(spread, flipped, bias)


_FLIPPED = WeakIdKeyDictionary()


def _flipped(weight: Tensor) -> Tensor:
    """A transposed convolution's kernel as an ordinary convolution's, kept with the
    weight so that its grid is computed once."""
    hit = _FLIPPED.get(weight)
    if hit is not None and hit[0] == weight._version:
        return hit[1]
    made = weight.detach().flip(2, 3).transpose(0, 1).contiguous()
    _FLIPPED[weight] = (weight._version, made)
    return made


def _dims(x: Tensor, dim: Any) -> tuple[int, ...]:
    if dim is None or (isinstance(dim, list | tuple) and len(dim) == 0):
        return tuple(range(x.dim()))
    dims = (dim,) if isinstance(dim, int) else tuple(dim)
    return tuple(d % max(x.dim(), 1) for d in dims)


def _slice_exponent(x: Tensor, dims: tuple[int, ...]) -> Tensor:
    """The grid of each slice over ``dims``: n values each at most 2^(52 - ceil log2 n) in
    magnitude on it, so the slice's sum (and every partial sum) is at most 2^52: exact."""
    n = math.prod(x.shape[d] for d in dims) if dims else 1
    return (EXACT - 1 - max(n - 1, 0).bit_length()) - _row_exponent(x, dims)


def _finite_or(x: Tensor, dims: tuple[int, ...], exact: Tensor, keepdim: bool,
               plain: Any) -> Tensor:
    """``exact`` where the slice is finite; infinities and NaN as the plain op gives them
    (any order sums them to the same inf or NaN)."""
    finite = torch.isfinite(x).all(dim=dims, keepdim=keepdim) if dims else torch.isfinite(x)
    if bool(finite.all()):
        return exact
    return torch.where(finite, exact, plain())


#: a sum over at most this many numbers (a mixture's components) is taken in order, one
#: IEEE addition after another, each correctly rounded: the same everywhere, and cheaper
#: than putting the numbers on a grid
SHORT_SUM = 16


def _in_order(x: Tensor, dim: int, keepdim: bool) -> Tensor:
    """x[0] + x[1] + ... along ``dim``, left to right."""
    total = x.select(dim, 0).clone()
    for i in range(1, x.shape[dim]):
        total.add_(x.select(dim, i))
    return total.unsqueeze(dim) if keepdim else total


def sum(x: Tensor, dim: Any = None, keepdim: bool = False, *, dtype: Any = None) -> Tensor:
    if not (x.dtype.is_floating_point or (dtype is not None and dtype.is_floating_point)):
        return torch.sum(x, dim=dim, keepdim=keepdim, dtype=dtype) if dim is not None \
            else torch.sum(x, dtype=dtype)
    x = x.to(torch.float64)
    dims = _dims(x, dim)
    if x.dim() == 0:
        return x.clone()
    if len(dims) == 1 and x.shape[dims[0]] <= SHORT_SUM:
        return _in_order(x, dims[0], keepdim)
    f = _slice_exponent(x, dims)
    total = integers(x, f).sum(dim=dims, keepdim=True) * pow2(-f)
    exact = total if keepdim else total.reshape([s for i, s in enumerate(x.shape)
                                                  if i not in dims])
    return _finite_or(x, dims, exact, keepdim, lambda: x.sum(dim=dims, keepdim=keepdim))


def mean(x: Tensor, dim: Any = None, keepdim: bool = False, *, dtype: Any = None) -> Tensor:
    x = x.to(torch.float64)
    dims = _dims(x, dim)
    n = math.prod(x.shape[d] for d in dims) if x.dim() else 1
    return sum(x, dim, keepdim) / float(n)


def cumsum(x: Tensor, dim: int, *, dtype: Any = None) -> Tensor:
    if not x.dtype.is_floating_point and (dtype is None or not dtype.is_floating_point):
        return torch.cumsum(x, dim, dtype=dtype)
    x = x.to(torch.float64)
    f = _slice_exponent(x, (dim % x.dim(),))
    out = integers(x, f).cumsum(dim) * pow2(-f)
    if bool(torch.isfinite(x).all()):
        return out
    return torch.where(torch.isfinite(x).all(dim, keepdim=True), out, x.cumsum(dim))


def logsumexp(x: Tensor, dim: Any, keepdim: bool = False) -> Tensor:
    x = x.to(torch.float64)
    dims = _dims(x, dim)
    top = x.amax(dim=dims, keepdim=True)
    top = torch.where(torch.isfinite(top), top, torch.zeros_like(top))
    out = functions.log(sum(functions.exp(x - top), dims, keepdim=True)) + top
    return out if keepdim else out.squeeze(dims)


def softmax(x: Tensor, dim: int, _stacklevel: int = 3, dtype: Any = None) -> Tensor:
    x = x.to(torch.float64)
    e = functions.exp(x - x.amax(dim, keepdim=True))
    return e / sum(e, dim, keepdim=True)


def log_softmax(x: Tensor, dim: int, _stacklevel: int = 3, dtype: Any = None) -> Tensor:
    x = x.to(torch.float64)
    shifted = x - x.amax(dim, keepdim=True)
    return shifted - functions.log(sum(functions.exp(shifted), dim, keepdim=True))


def matmul(a: Tensor, b: Tensor) -> Tensor:
    """a @ b with ``b`` as the weights (its columns are the units), exact as :func:`linear`."""
    if b.dim() == 1:
        return linear(a, b[None])[..., 0]
    if b.dim() != 2:
        raise NotPortable("matmul of batches of matrices")
    return linear(a, b.t())
