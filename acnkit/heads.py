"""Helpers for encoder plugins: the ``posterior`` option and the head that turns a last
layer into q(z|x)."""

from __future__ import annotations

import torch
from torch import Tensor

from .distributions import DiagGaussian


def learned_variance(posterior: str) -> bool:
    """Whether an encoder's ``posterior`` option asks for a learned variance."""
    if posterior not in ("unit", "learned"):
        raise ValueError(f"posterior must be 'unit' or 'learned', got {posterior!r}")
    return posterior == "learned"


def posterior_from_head(h: Tensor, learned: bool) -> DiagGaussian:
    """q(z|x) from an encoder's last layer: its two halves are the mean and log standard
    deviation when ``learned``, else all of it is the mean and the variance is one."""
    if learned:
        mean, log_std = h.chunk(2, dim=1)
        return DiagGaussian(mean, log_std)
    return DiagGaussian(h, torch.zeros_like(h))
