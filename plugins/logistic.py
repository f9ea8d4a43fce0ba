"""Discretised logistic mixture (PixelCNN++, Salimans et al. 2017) over a subpixel's levels.

Levels 0 .. L-1 sit at -1 .. 1 (bin width 2 / (L - 1)); a level's mass is the logistic CDF
at its upper bin edge minus at its lower one, the lowest level taking all the mass below it
and the highest all above. The difference sigmoid(a) - sigmoid(b) is taken as the product
sigmoid(a) sigmoid(-b) (1 - exp(b - a)) of positive factors, so ``nll`` (in log space) is
the exact mass also far in a tail, where a difference would cancel (PixelCNN++ falls back
to the density at the centre there); ``probabilities`` gives the same masses over every
level, in linear space with one exponential a bin edge (what the codec computes a pixel
at a time). K components a pixel share one weight across the pixel's channels
(the mixture is over whole pixels); for colour the means of G and B are shifted by learned
linear functions of the channels before them at the same pixel, so a pixel's channels are
coded R, then G, then B.

Parameters a pixel of C channels: K weights, C*K means, C*K log scales and C(C-1)/2*K
coefficients (3K for grey, 10K for RGB), laid out in that order along the channel axis.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

import acnkit
from acnkit.exact import arrays as exact
from acnkit.interfaces import Loss, to_levels

#: a component's log scale is kept above this: narrower bins than the data's own
#: resolution carry no information and only make the mass underflow
MIN_LOG_SCALE = -7.0


class DiscretisedLogisticMixture(Loss):
    def __init__(self, levels: int = 256, channels: int = 1, components: int = 5) -> None:
        if levels < 2 or channels < 1 or components < 1:
            raise ValueError(f"logistic needs levels >= 2, channels >= 1 and components >= 1, "
                             f"got {levels}, {channels}, {components}")
        self.levels, self.channels, self.components = levels, channels, components
        self.pairs = channels * (channels - 1) // 2  # (c, j < c): the coupling coefficients

    def param_channels(self, channels: int) -> int:
        return self.components * (1 + 2 * channels + channels * (channels - 1) // 2)

    def _split(self, params: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Logits (B, K, H, W); means, log scales (B, K, C, H, W); coefficients
        (B, K, pairs, H, W), tanh-squashed as PixelCNN++ does."""
        b, _, h, w = params.shape
        k, c = self.components, self.channels
        logits, means, log_scales, coeffs = params.split([k, c * k, c * k, self.pairs * k], 1)
        means = means.reshape(b, k, c, h, w)
        log_scales = log_scales.reshape(b, k, c, h, w).clamp(min=MIN_LOG_SCALE)
        return logits, means, log_scales, torch.tanh(coeffs.reshape(b, k, self.pairs, h, w))

    def _coupled_means(self, means: Tensor, coeffs: Tensor, centred: Tensor) -> Tensor:
        """Each channel's means shifted by the channels before it at the same pixel
        (``centred``: the image in [-1, 1], (B, C, H, W))."""
        if self.channels == 1:
            return means
        return _couple(means, coeffs, lambda j: centred[:, None, j], torch.stack)

    def _log_mass(self, centred: Tensor, means: Tensor, log_scales: Tensor,
                  level: Tensor) -> Tensor:
        """log P(level) of each channel and component: centred values (B, 1, C, H, W).
        An interior level's mass sigmoid(plus) - sigmoid(minus) is taken as the product
        sigmoid(plus) sigmoid(-minus) (1 - exp(minus - plus)) of positive factors, with
        minus - plus = -2 half / scale: no difference of close numbers anywhere, so it is
        exact in either tail and at any scale."""
        half = 1.0 / (self.levels - 1)
        inv = torch.exp(-log_scales)
        diff = centred - means
        plus, minus = inv * (diff + half), inv * (diff - half)
        below, above = F.logsigmoid(plus), F.logsigmoid(-minus)
        inner = below + above + _log1mexp(2.0 * half * inv)
        return torch.where(level == 0, below, torch.where(level == self.levels - 1, above, inner))

    def _level_masses(self, means: Tensor, log_scales: Tensor) -> Tensor:
        """P(level) of every level (..., L) for one component's means and log scales
        (...), in linear space with one exponential an edge: at each of the L - 1 bin
        edges t, u = exp(-|t|) gives sigmoid(t) and sigmoid(-t) as 1/(1 + u) and
        u/(1 + u) (which is which by the sign of t), both without cancellation, and an
        interior level's mass is the product of :meth:`_log_mass`; so every mass is as
        exact as the log-space one wherever a float64 holds it (both underflow to 0 only
        below about 1e-308)."""
        half = 1.0 / (self.levels - 1)
        inv = torch.exp(-log_scales)[..., None]
        # the upper edge of level j = 0 .. L - 2: its centre 2 j half - 1, plus half
        edges = half * (2 * torch.arange(self.levels - 1, dtype=means.dtype,
                                         device=means.device) + 1) - 1
        t = inv * (edges - means[..., None])
        u = torch.exp(-t.abs())
        near = 1.0 / (1.0 + u)  # the larger of sigmoid(t), sigmoid(-t)
        far = u * near
        right = t >= 0
        below, above = torch.where(right, near, far), torch.where(right, far, near)
        inner = below[..., 1:] * above[..., :-1] * -torch.expm1(-2.0 * half * inv)
        return torch.cat([below[..., :1], inner, above[..., -1:]], -1)

    def nll(self, params: Tensor, x: Tensor) -> Tensor:
        logits, means, log_scales, coeffs = self._split(params)
        level = to_levels(x, self.levels)
        centred = 2.0 * level.to(params.dtype) / (self.levels - 1) - 1.0
        means = self._coupled_means(means, coeffs, centred)
        log_p = self._log_mass(centred[:, None], means, log_scales, level[:, None])
        joint = torch.logsumexp(F.log_softmax(logits, 1) + log_p.sum(2), 1)
        return -joint.flatten(1).sum(1)

    def mean(self, params: Tensor) -> Tensor:
        """The mixture's mean image (the coupling taken at the component means), in [0, 1]."""
        logits, means, _, coeffs = self._split(params)
        weights = torch.softmax(logits, 1)[:, :, None]
        centred = [means[:, :, 0]]
        pair = 0
        for c in range(1, self.channels):
            m = means[:, :, c]
            for j in range(c):
                m = m + coeffs[:, :, pair] * centred[j]
                pair += 1
            centred.append(m)
        component_means = torch.stack(centred, 2).clamp(-1, 1)
        return ((weights * component_means).sum(1) + 1) / 2

    def _conditioned(self, params: Tensor, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """float64 weights (B, K, C, H, W), means and log scales (B, K, C, H, W) of each
        channel's components given the channels before it of ``x``: the means shifted by
        the coupling, each component's weight its prior weight times its likelihood of
        the earlier channels."""
        params = params.double()
        logits, means, log_scales, coeffs = self._split(params)
        if self.channels == 1:  # nothing before the one channel: the prior weights
            return torch.softmax(logits, 1)[:, :, None], means, log_scales
        level = to_levels(x, self.levels)
        centred = 2.0 * level.double() / (self.levels - 1) - 1.0
        means = self._coupled_means(means, coeffs, centred)
        log_p = self._log_mass(centred[:, None], means, log_scales, level[:, None])
        # sum over channels j < c (an exclusive cumsum: c's own term never enters)
        before = torch.cumsum(F.pad(log_p[:, :, :-1], (0, 0, 0, 0, 1, 0)), 2)
        weights = torch.softmax(F.log_softmax(logits, 1)[:, :, None] + before, 1)
        return weights, means, log_scales

    def probabilities(self, params: Tensor, x: Tensor) -> Tensor:
        """P(level) of each subpixel (B, C, H, W, L), float64: channel c's given the
        channels before it of ``x`` (the components re-weighted by how well each explains
        them); each level's mass exactly as :meth:`nll` takes it."""
        weights, means, log_scales = self._conditioned(params, x)
        # a component at a time so that the memory is that of one (B, C, H, W, L) array
        out = torch.zeros((*means.shape[:1], *means.shape[2:], self.levels),
                          dtype=torch.float64, device=params.device)
        for k in range(self.components):
            out += weights[:, k, ..., None] * self._level_masses(means[:, k], log_scales[:, k])
        return out

    def cdf(self, params: Tensor, x: Tensor) -> Callable[[Tensor], Tensor]:
        """P(subpixel < k): the mixture of the components' logistic CDFs at the lower bin
        edge of level k (0 below level 0, 1 above the last): a sigmoid a component and
        edge, where :meth:`probabilities` takes one a level. The weights, means and
        inverse scales are computed once, each call only the sigmoids (in float32).
        Under the exact arithmetic the same operations run in numpy (:meth:`_exact_cdf`)."""
        if self.numpy_when_exact and exact.active():
            return self._exact_cdf(params, x)
        weights, means, log_scales = self._conditioned(params, x)
        # float32 from here: an error e in F costs about e^2 / p bits a decision, nothing
        # at float32's 6e-8, and the sigmoids take half the time. The components first
        # (K, B, C, H, W, 1), so that every operation runs along memory; the lower bin edge
        # of level k, 2 k / (L - 1) - 1 - 1 / (L - 1), folded into each component's slope
        # and offset.
        half, top = 1.0 / (self.levels - 1), self.levels
        weights = weights.float().movedim(1, 0)[..., None].contiguous()
        inv = torch.exp(-log_scales).float().movedim(1, 0)[..., None]
        slope = ((2 * half) * inv).contiguous()
        offset = (-inv * (means.float().movedim(1, 0)[..., None] + (1.0 + half))).contiguous()

        def at(edges: Tensor) -> Tensor:
            s = torch.addcmul(offset, slope, edges.float())
            f = torch.sigmoid_(s).mul_(weights).sum(0).double().clamp_(0, 1)
            return f.masked_fill_(edges <= 0, 0.0).masked_fill_(edges >= top, 1.0)

        return at

    #: whether :meth:`cdf` takes its numpy form under the exact arithmetic (the tests turn
    #: it off to hold the two to the same bits)
    numpy_when_exact = True

    def _exact_cdf(self, params: Tensor, x: Tensor) -> Callable[[Tensor], Tensor]:
        """:meth:`cdf` under :func:`acnkit.exact.portable`, in numpy: the operations the
        mode runs for the torch code of :meth:`_conditioned` and :meth:`cdf`, in the same
        order, each from :mod:`acnkit.exact.arrays` (so the same bits), without the mode's
        dispatch of each of them (an autoregressive decoder asks this a subpixel at a
        time). Arrays are laid out (K, B, C, H, W) here, components first."""
        device = params.device
        p = params.detach().to(device="cpu", dtype=torch.float64).numpy()
        b, _, h, w = p.shape
        k, c, half, top = self.components, self.channels, 1.0 / (self.levels - 1), self.levels
        logits = p[:, :k].reshape(b, k, h, w).transpose(1, 0, 2, 3)
        means = p[:, k: k + c * k].reshape(b, k, c, h, w).transpose(1, 0, 2, 3, 4)
        log_scales = np.maximum(p[:, k + c * k: k + 2 * c * k].reshape(b, k, c, h, w),
                                MIN_LOG_SCALE).transpose(1, 0, 2, 3, 4)
        # exp(-log scale): _log_mass and the CDF below each take it (the same bits), once here
        inv = exact.exp(-log_scales)
        if c == 1:
            weights = exact.softmax(logits, 0)[:, :, None]
        else:
            coeffs = exact.tanh(p[:, k + 2 * c * k:].reshape(b, k, self.pairs, h, w)
                                ).transpose(1, 0, 2, 3, 4)
            xs = x.detach().to(device="cpu", dtype=torch.float64).numpy()
            level = np.minimum(np.maximum(np.round(xs * (self.levels - 1)), 0),
                               self.levels - 1)
            centred = 2.0 * level / (self.levels - 1) - 1.0  # (B, C, H, W)
            means = _couple(means, coeffs, lambda j: centred[None, :, j], np.stack)
            # _log_mass
            diff = centred[None] - means
            plus, minus = inv * (diff + half), inv * (diff - half)
            below, above = exact.logsigmoid(plus), exact.logsigmoid(-minus)
            inner = below + above + _np_log1mexp(2.0 * half * inv)
            log_p = np.where(level == 0, below,
                             np.where(level == self.levels - 1, above, inner))
            # channels before each (an exclusive cumsum) and the re-weighted components
            padded = np.concatenate([np.zeros_like(log_p[:, :, :1]), log_p[:, :, :-1]], 2)
            before = exact.cumsum(padded, 2)
            weights = exact.softmax(exact.log_softmax(logits, 0)[:, :, None] + before, 0)
        slope = (2 * half) * inv[..., None]
        offset = -inv[..., None] * (means[..., None] + (1.0 + half))
        weights = weights[..., None]

        def at(edges: Tensor) -> Tensor:
            e = edges.detach().cpu().numpy()
            s = offset + slope * e.astype(np.float64)
            f = exact.sum_in_order(exact.sigmoid(s) * weights, 0)
            f = np.minimum(np.maximum(f, 0.0), 1.0)
            f[np.broadcast_to(e <= 0, f.shape)] = 0.0
            f[np.broadcast_to(e >= top, f.shape)] = 1.0
            return torch.from_numpy(f).to(device)

        return at


def _couple(means: Any, coeffs: Any, centred: Callable[[int], Any],
            stack: Callable[..., Any]) -> Any:
    """The coupling of :meth:`DiscretisedLogisticMixture._coupled_means`, for tensors and
    arrays alike (channels on axis 2 of ``means`` and ``coeffs``): channel c's means plus
    coefficient (c, j) times ``centred(j)`` (channel j of the image, shaped to broadcast
    against a channel's means) for each j < c, in that order."""
    shifted = [means[:, :, 0]]
    pair = 0
    for c in range(1, means.shape[2]):
        m = means[:, :, c]
        for j in range(c):
            m = m + coeffs[:, :, pair] * centred(j)
            pair += 1
        shifted.append(m)
    return stack(shifted, 2)


def _np_log1mexp(d: np.ndarray) -> np.ndarray:
    """:func:`_log1mexp` in the exact arithmetic's numpy form."""
    d = np.maximum(d, 1e-30)
    return np.where(d < math.log(2), exact.log(-exact.expm1(-d)), exact.log1p(-exact.exp(-d)))


def _log1mexp(d: Tensor) -> Tensor:
    """log(1 - exp(-d)) for d > 0, accurate for small and large d alike."""
    d = d.clamp(min=1e-30)
    return torch.where(d < math.log(2), torch.log(-torch.expm1(-d)), torch.log1p(-torch.exp(-d)))


@acnkit.hookimpl
def register_losses(register):
    register("logistic", DiscretisedLogisticMixture,
             description="discretised logistic mixture, 5 components (PixelCNN++; colour "
                         "channels coupled R, G, B)")
