"""Arithmetic that cannot differ between machines: what a portable file's probabilities
are computed with (docs/compression.md, "The arithmetic").

- :mod:`.bits`: powers of two and exponents from a float64's bits;
- :mod:`.functions`: exp, log, tanh, sigmoid, softplus, the normal CDF, ... from the four
  IEEE operations alone;
- :mod:`.layers`: sums, linear layers and convolutions whose partial sums are exact
  integers (the accumulator bounds are written beside each);
- :mod:`.mode`: :func:`portable`, which runs ordinary torch code with the above, and
  :class:`NotPortable`, raised by an operation that has none;
- :mod:`.arrays`: the same functions on numpy arrays, for a component's hand-written
  portable path (what the mode puts in place of torch's, bit for bit, without its
  dispatch), and :func:`active`, which says whether the mode is on.
"""

from .layers import WEIGHT_BITS, NotPortable
from .mode import active, portable

#: the name of this arithmetic, recorded in every portable file; a change to any result
#: of this package is a new name
ARITHMETIC = "acnkit-exact-1"

__all__ = ["ARITHMETIC", "WEIGHT_BITS", "NotPortable", "active", "portable"]
