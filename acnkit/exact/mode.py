"""``portable()``: run ordinary torch code (a plugin's forward, a loss's CDF) with the
operations whose results could differ by machine replaced by the exact ones of this
package, and every other operation checked against a list of those that cannot differ.

torch hands every call made under a ``TorchFunctionMode`` to the mode first, so a
component written with the standard layers and functions (nn.Linear, nn.Conv2d,
nn.ConvTranspose2d, torch.tanh, F.softplus, softmax, ...) becomes portable unchanged. An
operation on neither list raises :class:`NotPortable` naming it: nothing is computed with
arithmetic that is not known to agree.

What cannot differ: moving, selecting and comparing numbers, and the IEEE operations +, -,
*, /, sqrt, elementwise (correctly rounded everywhere). What could: sums in an unknown
order (products of matrices, convolutions, reductions) and transcendental functions; those
are replaced (:mod:`.layers`, :mod:`.functions`). Floating tensors are float64 throughout:
a float32 request (``.float()``, a factory's default) gives float64.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from . import functions, layers
from .layers import NotPortable


def _f64(dtype: Any) -> Any:
    return torch.float64 if isinstance(dtype, torch.dtype) and dtype.is_floating_point else dtype


def _unary(fn: Callable[..., Any]) -> Callable[..., Any]:
    return lambda x, *a, **k: fn(x)


def _inplace(fn: Callable[..., Any]) -> Callable[..., Any]:
    def run(x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        return x.copy_(fn(x, *args, **kwargs))
    return run


def _alpha(op: Callable[..., Any]) -> Callable[..., Any]:
    """add/sub with ``alpha``: the product alpha * other rounded on its own, then the sum
    (a kernel may otherwise fuse the two into one multiply-add on one machine only)."""
    def run(x: Any, other: Any, *args: Any, alpha: Any = 1, **kwargs: Any) -> Any:
        if args:
            alpha = args[0]
        if alpha != 1:
            other = other * alpha
        return op(x, other, **kwargs)
    return run


def _addcmul(x: torch.Tensor, t1: torch.Tensor, t2: torch.Tensor, *,
             value: float = 1.0) -> torch.Tensor:
    p = t1 * t2
    return x + (p * value if value != 1 else p)


def _addcdiv(x: torch.Tensor, t1: torch.Tensor, t2: torch.Tensor, *,
             value: float = 1.0) -> torch.Tensor:
    p = t1 / t2
    return x + (p * value if value != 1 else p)


def _pow(x: Any, e: Any) -> Any:
    if isinstance(e, int | float) and float(e).is_integer() and 0 <= e <= 8:
        out = torch.ones_like(x) if isinstance(x, torch.Tensor) else 1.0
        for _ in range(int(e)):
            out = out * x
        return out
    if isinstance(e, float) and e == 0.5:
        return torch.sqrt(x)
    if isinstance(x, torch.Tensor) and isinstance(e, int | float):
        return functions.exp(functions.log(x) * float(e))
    raise NotPortable("pow with a tensor exponent")


def _interpolate(x: torch.Tensor, size: Any = None, scale_factor: Any = None,
                 mode: str = "nearest", **kwargs: Any) -> torch.Tensor:
    if mode != "nearest":
        raise NotPortable(f"interpolate in mode {mode!r}")
    # the mode is off while it handles a call: this is torch's own, which only moves numbers
    return F.interpolate(x, size=size, scale_factor=scale_factor, mode="nearest")


def _linspace(start: float, end: float, steps: int, **kwargs: Any) -> torch.Tensor:
    kwargs["dtype"] = _f64(kwargs.get("dtype", torch.float64))
    i = torch.arange(steps, dtype=torch.float64, device=kwargs.get("device"))
    step = (end - start) / max(steps - 1, 1)
    return (start + i * step).to(kwargs["dtype"])


def _elu(x: torch.Tensor, alpha: float = 1.0, inplace: bool = False) -> torch.Tensor:
    return functions.elu(x, alpha)


def _softplus(x: torch.Tensor, beta: float = 1.0, threshold: float = 20.0) -> torch.Tensor:
    return functions.softplus(x, beta, threshold)


def _to(x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
    args = tuple(_f64(a) for a in args)
    if "dtype" in kwargs:
        kwargs["dtype"] = _f64(kwargs["dtype"])
    return x.to(*args, **kwargs)


#: operations replaced by their exact forms (by name: torch.X, Tensor.X and F.X alike)
REPLACED: dict[str, Callable[..., Any]] = {
    "linear": layers.linear, "conv2d": layers.conv2d,
    "conv_transpose2d": layers.conv_transpose2d,
    "matmul": layers.matmul, "mm": layers.matmul, "__matmul__": layers.matmul,
    "sum": layers.sum, "mean": layers.mean, "cumsum": layers.cumsum,
    "logsumexp": layers.logsumexp, "softmax": layers.softmax,
    "log_softmax": layers.log_softmax,
    "exp": _unary(functions.exp), "exp_": _inplace(_unary(functions.exp)),
    "expm1": _unary(functions.expm1), "log": _unary(functions.log),
    "log_": _inplace(_unary(functions.log)), "log1p": _unary(functions.log1p),
    "sigmoid": _unary(functions.sigmoid), "sigmoid_": _inplace(_unary(functions.sigmoid)),
    "logsigmoid": _unary(functions.logsigmoid), "log_sigmoid": _unary(functions.logsigmoid),
    "tanh": _unary(functions.tanh),
    "tanh_": _inplace(_unary(functions.tanh)), "softplus": _softplus, "elu": _elu,
    "erf": _unary(functions.erf), "erfc": _unary(functions.erfc),
    "gelu": lambda x, approximate="none": functions.gelu(x, approximate),
    "silu": _unary(functions.silu),
    "pow": _pow, "__pow__": _pow, "square": lambda x: x * x,
    "rsqrt": lambda x: 1.0 / torch.sqrt(x),
    "__rpow__": lambda x, base: functions.exp(x.to(torch.float64) * functions.log(
        torch.tensor(float(base), dtype=torch.float64))),
    "add": _alpha(torch.add), "sub": _alpha(torch.sub), "subtract": _alpha(torch.sub),
    "add_": _alpha(torch.Tensor.add_), "sub_": _alpha(torch.Tensor.sub_),
    "addcmul": _addcmul, "addcdiv": _addcdiv,
    "interpolate": _interpolate, "linspace": _linspace,
    "float": lambda x, *a, **k: x.to(torch.float64), "half": lambda x, *a, **k: x.to(torch.float64),
    "bfloat16": lambda x, *a, **k: x.to(torch.float64), "to": _to, "type_as": _to,
}

#: operations that move, select, compare or round numbers, or do one IEEE operation an
#: element: the same bits everywhere
PASSED = frozenset("""
__getitem__ __setitem__ __len__ __iter__ __bool__ __format__ __repr__ __contains__ __index__
__int__ __float__ __hash__ __reduce_ex__ __deepcopy__ __array__ __get__ __set__ __radd__
__rsub__ __rmul__ __truediv__ __rtruediv__ __neg__ __abs__ __and__ __or__ __xor__ __invert__
__eq__ __ne__ __lt__ __le__ __gt__ __ge__ __iadd__ __isub__ __imul__ __itruediv__ __mul__
__add__ __sub__ __div__ __floordiv__ __rfloordiv__ __mod__ __rmod__ __lshift__ __rshift__
__iand__ __ior__ __ixor__ __ilshift__ __irshift__ __rdiv__ __idiv__ __ifloordiv__ __imod__
__rmatmul__ __rand__ __ror__ __rxor__ __rlshift__ __rrshift__ __pos__
mul mul_ multiply div div_ divide true_divide neg negative abs abs_ sqrt sqrt_ reciprocal
reciprocal_ rsub maximum minimum fmax fmin clamp clamp_ clip clip_ clamp_min clamp_max
clamp_min_ clamp_max_ relu relu_ threshold hardtanh relu6 leaky_relu hardsigmoid hardswish
where masked_fill masked_fill_ masked_scatter masked_select fill fill_ zero_ copy_ clone
detach detach_ contiguous view view_as reshape reshape_as flatten unflatten squeeze squeeze_
unsqueeze unsqueeze_ expand expand_as repeat repeat_interleave permute transpose transpose_ t
movedim moveaxis swapaxes swapdims narrow select index_select gather scatter scatter_
index_put index_put_ index_copy index_copy_ take take_along_dim chunk split split_with_sizes
tensor_split unbind cat concat concatenate stack hstack vstack flip fliplr flipud roll tril
triu diagonal diag_embed pad constant_pad_nd unfold fold pixel_shuffle pixel_unshuffle
max min amax amin argmax argmin max_pool2d max_pool1d adaptive_max_pool2d aminmax
eq ne lt le gt ge equal isclose allclose isfinite isnan isinf isneginf isposinf
logical_and logical_or logical_not logical_xor bitwise_and bitwise_or bitwise_xor
bitwise_not bitwise_left_shift bitwise_right_shift any all nonzero count_nonzero
floor floor_ ceil ceil_ round round_ trunc trunc_ frac sign signbit copysign
nan_to_num remainder fmod floor_divide
zeros zeros_like ones ones_like full full_like empty empty_like arange tensor as_tensor
from_numpy new_zeros new_ones new_full new_empty new_tensor
cpu cuda double long int short bool byte char numpy item tolist size dim ndimension numel
nelement stride storage_offset data_ptr is_contiguous is_floating_point is_complex
element_size untyped_storage requires_grad_ get_device type dropout dropout2d identity
broadcast_to broadcast_tensors atleast_1d atleast_2d sort argsort topk unique
searchsorted bucketize one_hot embedding
_set_grad_enabled set_grad_enabled is_grad_enabled _enter_inference_mode
_exit_inference_mode is_inference_mode_enabled _has_compatible_shallow_copy_type
get_default_dtype is_tensor is_storage result_type promote_types can_cast __init__
__new__ __del__ _is_view is_leaf grad_fn _version names dtype device shape ndim
""".split())


class Portable(TorchFunctionMode):
    """The mode behind :func:`portable`."""

    def __torch_function__(self, func: Any, types: Any, args: Any = (),
                           kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        replaced = REPLACED.get(name)
        if replaced is not None:
            return replaced(*args, **kwargs)
        if name in PASSED:
            if "dtype" in kwargs:
                kwargs["dtype"] = _f64(kwargs["dtype"])
            elif name in _FACTORIES and _default_float(name, args):
                kwargs["dtype"] = torch.float64
            return func(*args, **kwargs)
        raise NotPortable(f"{getattr(func, '__qualname__', name) or func!r} has no exact form "
                          f"(acnkit.exact lists what does)")


_FACTORIES = frozenset("zeros ones full empty arange tensor as_tensor".split())


def _default_float(name: str, args: Any) -> bool:
    """Whether a factory call without a dtype makes floats (torch's default dtype)."""
    if name == "arange":
        return any(isinstance(a, float) for a in args)
    if name in ("tensor", "as_tensor"):
        return False  # takes the data's own type (a float list: the default, rare here)
    if name == "full" and len(args) > 1:
        return isinstance(args[1], float)
    return True


_ACTIVE = threading.local()


def active() -> bool:
    """Whether this thread runs under :func:`portable` now (a component's hand-written
    exact path, :mod:`.arrays`, may take over from its torch code then)."""
    return bool(getattr(_ACTIVE, "on", False))


@contextmanager
def portable() -> Iterator[None]:
    """Run the enclosed torch code with exact arithmetic (module docstring); raises
    :class:`NotPortable` at the first operation that has no exact form. Re-entered (a
    loss's CDF asked inside a decoder's stepping), it adds no second mode: an outer one
    would take the inner one's own operations for its code's and replace them again."""
    if getattr(_ACTIVE, "on", False):
        yield
        return
    _ACTIVE.on = True
    try:
        with Portable():
            yield
    finally:
        _ACTIVE.on = False
