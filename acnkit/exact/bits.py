"""Powers of two and exponents read from a float64's bits: the two operations every exact
layer is built on, done without any platform function (``torch.ldexp``, ``frexp``, ``pow``
or ``exp2`` may round differently from one kernel to another; bit arithmetic cannot).

Every tensor here is float64 (IEEE 754 binary64: 52 stored mantissa bits, exponent bias
1023); exponents are int64.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

#: an integer-valued float64 is exact up to this magnitude (2^53): the accumulator bound
#: every exact sum in this package keeps below
EXACT = 53
#: exponents handed to :func:`pow2` are kept in the normal range, so 2^k is never a
#: subnormal or an infinity
MIN_EXPONENT, MAX_EXPONENT = -1022, 1023


def pow2(k: Tensor) -> Tensor:
    """2^k (float64) for integer ``k`` (int64), built from its bits: biased exponent
    k + 1023 in bits 52..62, mantissa zero. ``k`` is clamped to -1022..1023."""
    biased = (k.to(torch.int64).clamp(MIN_EXPONENT, MAX_EXPONENT) + 1023) << 52
    return biased.view(torch.float64)


def exponent(x: Tensor) -> Tensor:
    """The smallest e (int64) with |x| < 2^e for normal float64 ``x`` (2^(e-1) <= |x|): the
    biased exponent field less 1022. Zero and subnormals give -1022 (they are below
    2^-1022); infinities and NaN 1025."""
    bits = x.to(torch.float64).contiguous().view(torch.int64)
    return ((bits >> 52) & 0x7FF) - 1022


def scaled(x: Tensor, k: Tensor) -> Tensor:
    """x * 2^k, exact wherever the result is a normal float64: the factor is split in two
    normal powers of two so that k may run past the normal range (an exp's 2^k below
    2^-1022 or at 2^1024)."""
    half = k >> 1  # floor(k / 2): an arithmetic shift
    return x * pow2(half) * pow2(k - half)


def integers(x: Tensor, k: Tensor) -> Tensor:
    """x * 2^k rounded to the nearest integer (ties to even): the integers a value on the
    grid of step 2^-k is represented by (the scaling is exact; so is the rounding)."""
    return torch.round(x * pow2(k))


def np_pow2(k: np.ndarray) -> np.ndarray:
    """:func:`pow2` of a numpy array."""
    k = np.minimum(np.maximum(k, MIN_EXPONENT), MAX_EXPONENT)  # ufuncs: np.clip is slower
    return ((k.astype(np.int64) + 1023) << 52).view(np.float64)


def np_exponent(x: np.ndarray) -> np.ndarray:
    """:func:`exponent` of a numpy array (float64)."""
    # a view of the same item size: any strides and shape (a 0-d array stays 0-d)
    return ((np.asarray(x, dtype=np.float64).view(np.int64) >> 52) & 0x7FF) - 1022
