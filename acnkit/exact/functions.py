"""Elementwise functions from the four IEEE operations alone.

IEEE 754 requires +, -, * and / (and sqrt) of binary64 numbers to be correctly rounded, so
each gives the same bits on every CPU, vector width and GPU; exp, log, tanh and the rest
are left to each platform's library (glibc, SLEEF's AVX2 or AVX-512 kernels, CUDA's
libdevice) and differ in their last bits. Each function here is a fixed sequence of the
four operations (one numpy call each, so no compiler fuses two into a fused multiply-add),
with constants written out, so it is the same function everywhere. A reimplementation
performs the same operations in the same order (docs/compression.md, "The arithmetic").

They are computed with numpy on the CPU (a tensor elsewhere makes the trip): numpy's
per-call cost is a fraction of torch's, and an autoregressive decoder calls them on a
pixel's few numbers hundreds of thousands of times.

Accuracy: exp and log within a few units in the last place (range reduction by ln 2 in
two parts, Taylor and atanh series to below 2^-60); the sigmoid (and tanh from it) within
a relative 1.2e-7, as float32 (a table of step 2^-10, interpolated); the normal CDF to a
relative 1.2e-7 (Numerical Recipes' erfc, a Chebyshev fit), far below what costs a coded
bit.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import wraps
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .bits import np_exponent
from .bits import np_pow2 as _pow2

#: ln 2 in two parts: the high part has 21 trailing zero bits, so k * LN2_HI is exact for
#: every |k| < 2^21 and x - k ln 2 loses nothing in the reduction
LN2_HI = 0.693147180369123816490
LN2_LO = 1.90821492927058770002e-10
INV_LN2 = 1.44269504088896338700
SQRT2 = 1.41421356237309514547
SQRT_HALF = 0.70710678118654757274
#: exp's argument is clamped here: exp(709.78) is the largest finite float64 (710 gives
#: infinity), and below -745.2 the result is zero
EXP_MIN, EXP_MAX = -746.0, 710.0
#: Taylor coefficients 1/n! of exp on |r| <= ln 2 / 2 (the 14th term is below 2^-60)
_EXP_TERMS = [1.0 / f for f in (1, 1, 2, 6, 24, 120, 720, 5040, 40320, 362880, 3628800,
                                39916800, 479001600, 6227020800)]
_EXPM1_TERMS = [1.0 / f for f in (1, 2, 6, 24, 120, 720, 5040, 40320, 362880, 3628800,
                                  39916800, 479001600, 6227020800, 87178291200,
                                  1307674368000)]
#: Numerical Recipes' erfc(z) = t exp(-z^2 + P(t)), t = 1 / (1 + z / 2), z >= 0
_ERFC_P = [-1.26551223, 1.00002368, 0.37409196, 0.09678418, -0.18628806, 0.27886807,
           -1.13520398, 1.48851587, -0.82215223, 0.17087277]
#: the series of 2 atanh(s) / s in s^2 (log's)
_LOG_TERMS = [2.0 / (2 * n + 1) for n in range(12)]
#: the sigmoid's table: its values at x = i / 2^SIGMOID_BITS - SIGMOID_RANGE (and one point
#: past the end), from :func:`sigmoid_series`; beyond the range the end values
SIGMOID_BITS, SIGMOID_RANGE = 10, 40


def elementwise(fn: Callable[..., np.ndarray]) -> Callable[..., Tensor]:
    """``fn`` on float64 numpy arrays as a function of tensors (on their own device)."""
    @wraps(fn)
    def run(x: Tensor, *args: Any) -> Tensor:
        out = torch.from_numpy(np.asarray(fn(as_numpy(x), *args), dtype=np.float64))
        return out if x.device.type == "cpu" else out.to(x.device)
    return run


def as_numpy(x: Tensor) -> np.ndarray:
    """``x`` as a float64 numpy array (no copy for a CPU float64 tensor, the usual case:
    an autoregressive decoder asks this hundreds of thousands of times)."""
    if x.dtype is torch.float64 and x.device.type == "cpu":
        return x.detach().numpy()
    return x.detach().to(device="cpu", dtype=torch.float64).numpy()


def _horner(coefficients: list[float], x: np.ndarray) -> np.ndarray:
    """c0 + x (c1 + x (c2 + ...)), one multiplication and one addition a step."""
    out = x * coefficients[-1]
    out += coefficients[-2]
    for c in reversed(coefficients[:-2]):
        out *= x
        out += c
    return out


def _np_exp(x: np.ndarray) -> np.ndarray:
    """e^x: x = k ln 2 + r with k = round(x / ln 2), |r| <= ln 2 / 2, then 2^k times the
    Taylor series of e^r (:data:`_EXP_TERMS`), 2^k as two normal powers of two. x is
    clamped to [EXP_MIN, EXP_MAX], where the result is 0 and infinity already; NaN stays
    NaN."""
    xc = np.fmin(np.fmax(x, EXP_MIN), EXP_MAX)  # NaN -> EXP_MIN, put back below
    k = np.round(xc * INV_LN2)
    r = xc - k * LN2_HI
    r -= k * LN2_LO
    p = _horner(_EXP_TERMS, r)
    ki = k.astype(np.int64)
    half = ki >> 1
    p *= _pow2(half)
    p *= _pow2(ki - half)
    return np.where(np.isnan(x), x, p)


def _expm1(x: np.ndarray) -> np.ndarray:
    """e^x - 1, by its Taylor series where |x| < 1/2 (no cancellation), exp(x) - 1 beyond."""
    small = np.minimum(np.maximum(x, -0.5), 0.5)
    series = small * _horner(_EXPM1_TERMS, small)
    return np.where(np.abs(x) < 0.5, series, _exp(x) - 1.0)


def _np_log(x: np.ndarray) -> np.ndarray:
    """ln x: x = m 2^e with m in [sqrt(1/2), sqrt(2)) read from the bits, then
    e ln 2 + 2 atanh(s), s = (m - 1) / (m + 1), |s| <= 0.172, by its series."""
    tiny = x < 2.0 ** -1000  # subnormals: scale up first (exactly) so the bits are normal
    xs = np.where(tiny, x * 2.0 ** 64, x)
    e = np_exponent(xs) - 1  # xs = m 2^e, m in [1, 2)
    m = xs * _pow2(-e)
    big = m > SQRT2
    m = np.where(big, m * 0.5, m)
    e = e + big - np.where(tiny, 64, 0)
    s = (m - 1.0) / (m + 1.0)
    series = s * _horner(_LOG_TERMS, s * s)
    ef = e.astype(np.float64)
    out = ef * LN2_HI + (series + ef * LN2_LO)
    out = np.where(x == 0, -np.inf, out)
    out = np.where(x == np.inf, x, out)
    return np.where((x < 0) | np.isnan(x), np.nan, out)


def _log1p(x: np.ndarray) -> np.ndarray:
    """ln(1 + x) with u = 1 + x rounded, corrected by the rounding: ln u - ((u - 1) - x) / u."""
    u = 1.0 + x
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(u == 1.0, x, _log(u) - ((u - 1.0) - x) / u)


def _sigmoid_series(x: np.ndarray) -> np.ndarray:
    """1 / (1 + e^-x), from u = e^-|x| on either side (1 / (1 + u) or u / (1 + u)): to
    the last bits, for the table :func:`sigmoid` interpolates."""
    u = _np_exp(-np.abs(x))
    near = 1.0 / (1.0 + u)
    return np.where(x >= 0, near, u * near)


_TABLE: list[np.ndarray] = []


def _sigmoid_table() -> np.ndarray:
    if not _TABLE:
        n = 2 * SIGMOID_RANGE * 2**SIGMOID_BITS + 2
        points = np.arange(n, dtype=np.float64) * 2.0**-SIGMOID_BITS - SIGMOID_RANGE
        _TABLE.append(_sigmoid_series(points))
    return _TABLE[0]


def _np_sigmoid(x: np.ndarray) -> np.ndarray:
    """1 / (1 + e^-x), interpolated linearly in a table of step 2^-10 over [-40, 40] (the
    position t = (x + 40) 2^10 is exact; i = floor(t), f = t - i; T[i] + f (T[i+1] - T[i])):
    within a relative 1.2e-7 of the sigmoid (h^2 / 8 for a function that is all but
    exponential in the tails), as the float32 sigmoid that coded before; NaN stays NaN."""
    values = _sigmoid_table()
    t = np.fmin(np.fmax(x, -SIGMOID_RANGE), SIGMOID_RANGE)  # NaN -> -40, put back below
    t += SIGMOID_RANGE
    t *= 2.0**SIGMOID_BITS
    i = np.floor(t)
    t -= i
    index = i.astype(np.int64)
    below = np.take(values, index)
    out = np.take(values, index + 1)
    out -= below
    out *= t
    out += below
    return np.where(np.isnan(x), x, out)


def _np_tanh(x: np.ndarray) -> np.ndarray:
    """2 sigmoid(2x) - 1."""
    out = _np_sigmoid(x * 2.0)
    out *= 2.0
    out -= 1.0
    return out


def _np_erfc(x: np.ndarray) -> np.ndarray:
    """1 - erf(x): Numerical Recipes' Chebyshev fit for |x|, reflected for x < 0."""
    z = np.abs(x)
    t = 1.0 / (1.0 + 0.5 * z)
    ans = t * _np_exp(_horner(_ERFC_P, t) - z * z)
    return np.where(x >= 0, ans, 2.0 - ans)


def _np_normal_cdf(x: np.ndarray) -> np.ndarray:
    """P(N(0, 1) < x) = erfc(-x / sqrt 2) / 2."""
    return 0.5 * _np_erfc(-x * SQRT_HALF)


def _compiled() -> Any:
    """The C kernels of these functions (acnkit/exact/_kernels.c: the same operations in
    the same order, one pass instead of numpy's many), or None where they were not built or
    ``ACNKIT_EXACT_KERNELS=0`` turns them off."""
    if os.environ.get("ACNKIT_EXACT_KERNELS", "1") == "0":
        return None
    import importlib

    try:  # the compiled module alone (``from . import`` would name the package)
        _kernels = importlib.import_module(f"{__package__}._kernels")
    except ImportError:
        return None
    _kernels.set_constants(_EXP_TERMS, _ERFC_P, _LOG_TERMS, LN2_HI, LN2_LO, INV_LN2, SQRT2,
                           SQRT_HALF, EXP_MIN, EXP_MAX, float(SIGMOID_RANGE),
                           float(2**SIGMOID_BITS))
    return _kernels


KERNELS = _compiled()


def _kernel(name: str, numpy_form: Callable[[np.ndarray], np.ndarray],
            table: bool = False) -> Callable[[np.ndarray], np.ndarray]:
    """The compiled form of ``numpy_form`` where there is one."""
    if KERNELS is None:
        return numpy_form
    fn = getattr(KERNELS, name)

    def run(x: np.ndarray) -> np.ndarray:
        a = np.ascontiguousarray(x, dtype=np.float64)
        out = np.empty(a.shape, dtype=np.float64)
        if table:
            fn(a, out, _sigmoid_table())
        else:
            fn(a, out)
        return out.reshape(np.shape(x))  # a 0-d array comes back 0-d
    run.__doc__ = numpy_form.__doc__
    return run


_exp = _kernel("exp", _np_exp)
_log = _kernel("log", _np_log)
_sigmoid = _kernel("sigmoid", _np_sigmoid, table=True)
_tanh = _kernel("tanh", _np_tanh, table=True)
_erfc = _kernel("erfc", _np_erfc)
_normal_cdf = _kernel("normal_cdf", _np_normal_cdf)

exp = elementwise(_exp)
expm1 = elementwise(_expm1)
log = elementwise(_log)
log1p = elementwise(_log1p)
sigmoid_series = elementwise(_sigmoid_series)
sigmoid = elementwise(_sigmoid)
tanh = elementwise(_tanh)
erfc = elementwise(_erfc)
normal_cdf = elementwise(_normal_cdf)


@elementwise
def erf(x: np.ndarray) -> np.ndarray:
    return 1.0 - _erfc(x)


@elementwise
def logsigmoid(x: np.ndarray) -> np.ndarray:
    """ln sigmoid(x) = min(x, 0) - ln(1 + e^-|x|)."""
    return np.minimum(x, 0.0) - _log1p(_exp(-np.abs(x)))


@elementwise
def softplus(x: np.ndarray, beta: float = 1.0, threshold: float = 20.0) -> np.ndarray:
    """ln(1 + e^(beta x)) / beta, x itself where beta x > threshold (torch's definition)."""
    bx = x * beta
    out = (np.maximum(bx, 0.0) + _log1p(_exp(-np.abs(bx)))) / beta
    return np.where(bx > threshold, x, out)


@elementwise
def elu(x: np.ndarray, alpha: float = 1.0) -> np.ndarray:
    return np.where(x > 0, x, alpha * _expm1(np.minimum(x, 0.0)))


@elementwise
def gelu(x: np.ndarray, approximate: str = "none") -> np.ndarray:
    if approximate == "tanh":
        return 0.5 * x * (1.0 + _tanh(0.7978845608028654 * (x + 0.044715 * (x * x * x))))
    return x * _normal_cdf(x)


@elementwise
def silu(x: np.ndarray) -> np.ndarray:
    return x * _sigmoid(x)
