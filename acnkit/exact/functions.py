"""Elementwise functions from the four IEEE operations alone.

IEEE 754 requires +, -, * and / (and sqrt) of binary64 numbers to be correctly rounded, so
each gives the same bits on every CPU, vector width and GPU; exp, log, tanh and the rest
are left to each platform's library (glibc, SLEEF's AVX2 or AVX-512 kernels, CUDA's
libdevice) and differ in their last bits. Each function here is a fixed sequence of the
four operations (one torch call each, so no compiler fuses two into a fused multiply-add),
with constants written out, so it is the same function everywhere. A reimplementation
performs the same operations in the same order (docs/compression.md, "The arithmetic").

Accuracy: exp and log within a few units in the last place (range reduction by ln 2 in
two parts, Taylor and atanh series to below 2^-60); the normal CDF to a relative 1.2e-7
(Numerical Recipes' erfc, a Chebyshev fit), far below what costs a coded bit.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from .bits import exponent, pow2, scaled

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
#: tanh(x) is 1 to the last bit of a float64 for |x| above this
TANH_ONE = 19.5
#: Numerical Recipes' erfc(z) = t exp(-z^2 + P(t)), t = 1 / (1 + z / 2), z >= 0
_ERFC_P = [-1.26551223, 1.00002368, 0.37409196, 0.09678418, -0.18628806, 0.27886807,
           -1.13520398, 1.48851587, -0.82215223, 0.17087277]


def _horner(coefficients: list[float], x: Tensor) -> Tensor:
    """c0 + x (c1 + x (c2 + ...)), one multiplication and one addition a step (in place:
    the same operations, fewer arrays)."""
    out = x * coefficients[-1] + coefficients[-2]
    for c in reversed(coefficients[:-2]):
        out.mul_(x).add_(c)
    return out


def exp(x: Tensor) -> Tensor:
    """e^x: x = k ln 2 + r with k = round(x / ln 2), |r| <= ln 2 / 2, then 2^k times the
    Taylor series of e^r (:data:`_EXP_TERMS`). x is clamped to [EXP_MIN, EXP_MAX], where
    the result is 0 and infinity already; NaN stays NaN."""
    x = x.to(torch.float64).clamp(EXP_MIN, EXP_MAX)
    k = torch.round(x * INV_LN2)
    r = x - k * LN2_HI
    r.sub_(k * LN2_LO)
    return scaled(_horner(_EXP_TERMS, r), k.to(torch.int64))


def expm1(x: Tensor) -> Tensor:
    """e^x - 1, by its Taylor series where |x| < 1/2 (no cancellation), exp(x) - 1 beyond."""
    x = x.to(torch.float64)
    small = x.clamp(-0.5, 0.5)
    series = small * _horner([1.0 / f for f in (1, 2, 6, 24, 120, 720, 5040, 40320, 362880,
                                                 3628800, 39916800, 479001600, 6227020800,
                                                 87178291200, 1307674368000)], small)
    return torch.where(x.abs() < 0.5, series, exp(x) - 1.0)


def log(x: Tensor) -> Tensor:
    """ln x: x = m 2^e with m in [sqrt(1/2), sqrt(2)) read from the bits, then
    e ln 2 + 2 atanh(s), s = (m - 1) / (m + 1), |s| <= 0.172, by its series."""
    x = x.to(torch.float64)
    tiny = x < 2.0 ** -1000  # subnormals: scale up first (exactly) so the bits are normal
    xs = torch.where(tiny, x * 2.0 ** 64, x)
    e = exponent(xs) - 1  # xs = m 2^e, m in [1, 2)
    m = xs * pow2(-e)
    big = m > SQRT2
    m = torch.where(big, m * 0.5, m)
    e = e + big.to(torch.int64) - torch.where(tiny, 64, 0)
    s = (m - 1.0) / (m + 1.0)
    s2 = s * s
    series = s * _horner([2.0 / (2 * n + 1) for n in range(12)], s2)
    ef = e.to(torch.float64)
    out = ef * LN2_HI + (series + ef * LN2_LO)
    out = torch.where(x == 0, torch.full_like(out, float("-inf")), out)
    out = torch.where(x == float("inf"), x, out)
    return torch.where((x < 0) | torch.isnan(x), torch.full_like(out, float("nan")), out)


def log1p(x: Tensor) -> Tensor:
    """ln(1 + x) with u = 1 + x rounded, corrected by the rounding: ln u - ((u - 1) - x) / u."""
    x = x.to(torch.float64)
    u = 1.0 + x
    return torch.where(u == 1.0, x, log(u) - ((u - 1.0) - x) / u)


def sigmoid_series(x: Tensor) -> Tensor:
    """1 / (1 + e^-x), from u = e^-|x| on either side (1 / (1 + u) or u / (1 + u)): to
    the last bits, for the table :func:`sigmoid` interpolates."""
    x = x.to(torch.float64)
    u = exp(-x.abs())
    near = 1.0 / (1.0 + u)
    return torch.where(x >= 0, near, u * near)


#: the sigmoid's table: its values at x = i / 2^SIGMOID_BITS - SIGMOID_RANGE (and one point
#: past the end), from :func:`sigmoid_series`; beyond the range the end values
SIGMOID_BITS, SIGMOID_RANGE = 10, 40
_SIGMOID: dict[torch.device, Tensor] = {}


def _sigmoid_table(device: torch.device) -> Tensor:
    table = _SIGMOID.get(device)
    if table is None:
        n = 2 * SIGMOID_RANGE * 2**SIGMOID_BITS + 2
        points = torch.arange(n, dtype=torch.float64) * 2.0**-SIGMOID_BITS - SIGMOID_RANGE
        table = _SIGMOID[device] = sigmoid_series(points).to(device)
    return table


def sigmoid(x: Tensor) -> Tensor:
    """1 / (1 + e^-x), interpolated linearly in a table of step 2^-10 over [-40, 40] (the
    position t = (x + 40) 2^10 is exact; i = floor(t), f = t - i; T[i] + f (T[i+1] - T[i])):
    within a relative 1.2e-7 of the sigmoid (h^2 / 8 for a function that is all but
    exponential in the tails), as the float32 sigmoid that coded before, in a quarter of
    the operations of :func:`sigmoid_series`; NaN stays NaN."""
    x = x.to(torch.float64)
    table = _sigmoid_table(x.device)
    if x.device.type == "cpu":  # numpy: the same operations, a sixth of the time
        a, values = x.detach().numpy(), table.numpy()
        t = np.clip(a, -SIGMOID_RANGE, SIGMOID_RANGE)
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
        return torch.from_numpy(np.where(np.isnan(a), a, out))
    t = (x.clamp(-SIGMOID_RANGE, SIGMOID_RANGE) + SIGMOID_RANGE) * 2.0**SIGMOID_BITS
    i = t.floor()
    t.sub_(i)
    index = i.to(torch.int64)
    below = torch.take(table, index)
    out = torch.take(table, index + 1).sub_(below).mul_(t).add_(below)
    return torch.where(torch.isnan(x), x, out)


def logsigmoid(x: Tensor) -> Tensor:
    """ln sigmoid(x) = min(x, 0) - ln(1 + e^-|x|)."""
    x = x.to(torch.float64)
    return x.clamp(max=0.0) - log1p(exp(-x.abs()))


def softplus(x: Tensor, beta: float = 1.0, threshold: float = 20.0) -> Tensor:
    """ln(1 + e^(beta x)) / beta, x itself where beta x > threshold (torch's definition)."""
    x = x.to(torch.float64)
    bx = x * beta
    out = (bx.clamp(min=0.0) + log1p(exp(-bx.abs()))) / beta
    return torch.where(bx > threshold, x, out)


def tanh(x: Tensor) -> Tensor:
    """sign(x) t / (t + 2), t = e^(2|x|) - 1 (1 beyond :data:`TANH_ONE`)."""
    x = x.to(torch.float64)
    a = x.abs().clamp(max=TANH_ONE)
    t = expm1(2.0 * a)
    out = t / (t + 2.0)
    out = torch.where(x.abs() > TANH_ONE, torch.ones_like(out), out)
    out = torch.where(x < 0, -out, out)
    return torch.where(torch.isnan(x), x, out)


def elu(x: Tensor, alpha: float = 1.0) -> Tensor:
    x = x.to(torch.float64)
    return torch.where(x > 0, x, alpha * expm1(x.clamp(max=0.0)))


def erfc(x: Tensor) -> Tensor:
    """1 - erf(x): Numerical Recipes' Chebyshev fit for |x|, reflected for x < 0."""
    x = x.to(torch.float64)
    z = x.abs()
    t = 1.0 / (1.0 + 0.5 * z)
    ans = t * exp(_horner(_ERFC_P, t) - z * z)
    return torch.where(x >= 0, ans, 2.0 - ans)


def erf(x: Tensor) -> Tensor:
    return 1.0 - erfc(x)


def normal_cdf(x: Tensor) -> Tensor:
    """P(N(0, 1) < x) = erfc(-x / sqrt 2) / 2."""
    return 0.5 * erfc(-x.to(torch.float64) * SQRT_HALF)


def gelu(x: Tensor, approximate: str = "none") -> Tensor:
    x = x.to(torch.float64)
    if approximate == "tanh":
        return 0.5 * x * (1.0 + tanh(0.7978845608028654 * (x + 0.044715 * (x * x * x))))
    return x * normal_cdf(x)


def silu(x: Tensor) -> Tensor:
    return x.to(torch.float64) * sigmoid(x)
