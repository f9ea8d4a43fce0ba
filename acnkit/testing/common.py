"""Checks every kit shares: a row's numbers do not depend on the rest of its batch;
gradients reach a module's parameters."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor


def _batch_independent(fn: Callable[..., Tensor], inputs: Tensor | tuple[Tensor, ...],
                       what: str) -> None:
    """Row i of a batch's output depends on row i of its input(s) alone (in eval mode): the
    codec and the evaluation batch differently from training."""
    args = inputs if isinstance(inputs, tuple) else (inputs,)
    whole = fn(*args)
    for i in (0, len(args[0]) - 1):
        alone = fn(*(a[i: i + 1] for a in args))
        assert torch.allclose(whole[i: i + 1], alone, atol=1e-5, rtol=1e-4), (
            f"{what} of one datum changes with the rest of its batch")


def _gradients_reach(module: torch.nn.Module, value: Tensor, what: str) -> None:
    params = [p for p in module.parameters() if p.requires_grad]
    assert params, f"{what} has no trainable parameters"
    value.sum().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in params), (
        f"no gradient reaches {what}'s parameters")
