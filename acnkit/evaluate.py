"""Held-out figures, every one a code length a receiver could decode, or named for what it
needs beyond that.

The cost of a datum is -log p(x|z) + KL(q(z|x) || p(z | context)) at one sample z ~ q(z|x)
(the negative ELBO: what bits-back coding turns into bytes, see :mod:`acnkit.codec`). Which
context the prior gets is an explicit choice (:data:`CONTEXTS`):

- ``none``: the unconditional prior (VAE). Each image is coded on its own.
- ``chain``: ACN's code length. The sender orders the set by :func:`acnkit.memory.greedy_chain`
  and codes each image with the prior conditioned on the code of the image before it (zeros
  for the first); the receiver decodes in that order and re-encodes each image to get the
  next context. Nothing else is sent.
- ``nearest_train``: each image's prior conditioned on its nearest *training* code, found
  with the image's own code. A receiver cannot find that code without being told its index
  (log N_train nats more per image), so this figure is optimistic: it is reported only as
  ``..._nearest_train``, never as test nats.

Modes (the same for both priors, so that comparisons are fair): **ordered**, the data come
back in their order (VAE as is; ACN pays log(N!)/N nats per image for the permutation back to
the original order), and **set**, the order is not kept (ACN as is; the VAE saves log(N!)/N
by bits-back coding of the order).
"""

from __future__ import annotations

import math
import threading
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from . import progress
from .data import RunData
from .distributions import DiagGaussian
from .memory import chain_context, greedy_chain, log_orderings, nearest_codes
from .model import Model
from .trained import load_run

#: seed of the noise used by evaluation, so held-out nats depend on the model alone
EVAL_SEED = 2024
CONTEXTS = ("none", "chain", "nearest_train")


@torch.no_grad()
def prior_context(model: Model, codes: Tensor, kind: str,
                  train_codes: Tensor | None = None) -> Tensor | None:
    """Each datum's prior context under ``kind`` (one of :data:`CONTEXTS`);
    ``nearest_train`` needs the training codes."""
    if kind not in CONTEXTS:
        raise ValueError(f"context must be one of {', '.join(CONTEXTS)}, got {kind!r}")
    if kind == "none" or not model.conditional:
        return None
    if kind == "chain":
        return chain_context(codes, greedy_chain(codes).to(codes.device))
    if train_codes is None:
        raise ValueError("the nearest_train context needs the training codes")
    return train_codes[nearest_codes(codes, train_codes)]


class Cancelled(Exception):
    """Work beside another (the codec's figure of the model) given up, as asked."""


@torch.no_grad()
def costs(model: Model, x: Tensor, posterior: DiagGaussian, context: Tensor | None,
          batch_size: int = 32, what: str | None = "held-out costs",
          stop: threading.Event | None = None) -> tuple[Tensor, Tensor]:
    """Reconstruction and KL nats of each datum (N,), both at one sample z ~ q(z|x) drawn
    with the evaluation seed. The noise is drawn for all data at once, so the figures do
    not depend on ``batch_size``; small batches keep a convolutional decoder's activations
    in cache (docs/performance.md: a PixelCNN's held-out pass 104 s in batches of 1 000,
    22 s in batches of 32). ``what`` names the progress shown; None shows none. ``stop``,
    once set, ends the work at the next batch with :class:`Cancelled`."""
    model.eval()
    noise = torch.Generator(device=model.device).manual_seed(EVAL_SEED)
    mean = posterior.mean
    eps = torch.randn(mean.shape, generator=noise, device=mean.device, dtype=mean.dtype)
    recon, kl = [], []
    shown = progress.task(what, len(x), "images") if what else nullcontext(lambda *a, **k: None)
    with shown as step:
        for i in range(0, len(x), batch_size):
            if stop is not None and stop.is_set():
                raise Cancelled
            s = slice(i, i + batch_size)
            r, k = model.nets.cost(model.inputs(x[s]), mean[s], posterior.log_std[s],
                                   None if context is None else context[s], eps=eps[s])
            recon.append(r)
            kl.append(k)
            step(len(r))
    return torch.cat(recon), torch.cat(kl)


@torch.no_grad()
def kl_costs(model: Model, posterior: DiagGaussian, context: Tensor | None,
             batch_size: int = 32) -> Tensor:
    """The KL term of :func:`costs` alone (N,), at the same samples z (the evaluation
    seed's noise, drawn for all data at once), for another prior context: no decoder
    pass."""
    noise = torch.Generator(device=model.device).manual_seed(EVAL_SEED)
    mean, log_std = posterior.mean, posterior.log_std
    eps = torch.randn(mean.shape, generator=noise, device=mean.device, dtype=mean.dtype)
    out = []
    for i in range(0, len(mean), batch_size):
        s = slice(i, i + batch_size)
        q = DiagGaussian(mean[s], log_std[s])
        z = mean[s] + torch.exp(log_std[s]) * eps[s]
        out.append(model.prior.kl(q, z, None if context is None else context[s]))
    return torch.cat(out)


#: the mode of the headline figure (``test_nats``, the epoch lines, compare.png) for every
#: prior: a data set is a set, and set mode is ACN's own chain code
HEADLINE_MODE = "set"


def summary(recon: Tensor, kl: Tensor, dims: int, conditional: bool,
            prefix: str) -> dict[str, float]:
    """Mean nats per image under ``prefix``: the per-image costs (``_recon``, ``_kl``, with
    each prior's own context), both modes (``_nats_ordered``, ``_nats_set``) and the
    headline ``_nats`` (set mode for every prior) with its bits per dimension."""
    n = len(recon)
    r, k = recon.sum().item() / n, kl.sum().item() / n
    figures = {f"{prefix}_recon": r, f"{prefix}_kl": k}
    figures.update(modes(r + k, n, conditional, prefix))
    figures.update(headline(figures, prefix, dims))
    for mode in ("ordered", "set"):  # the field's unit, beside nats per image
        figures[f"{prefix}_bits_per_dim_{mode}"] = \
            figures[f"{prefix}_nats_{mode}"] / (math.log(2) * dims)
    return figures


def headline(figures: dict[str, float], prefix: str, dims: int) -> dict[str, float]:
    """``_nats``, the figure of :data:`HEADLINE_MODE` among ``figures``' two modes, and its
    ``_bits_per_dim``."""
    nats = figures[f"{prefix}_nats_{HEADLINE_MODE}"]
    return {f"{prefix}_nats": nats, f"{prefix}_bits_per_dim": nats / (math.log(2) * dims)}


def modes(nats: float, n: int, conditional: bool, prefix: str = "test") -> dict[str, float]:
    """The ordered- and set-mode code lengths per image from a model's own figure: the VAE's
    is ordered (bits-back on the order saves log(N!)/N), ACN's chain is a set (sending the
    permutation back to the original order costs log(N!)/N)."""
    order = log_orderings(n) / n
    ordered, as_set = (nats + order, nats) if conditional else (nats, nats - order)
    return {f"{prefix}_nats_ordered": ordered, f"{prefix}_nats_set": as_set,
            f"{prefix}_order_nats": order}


def own_context(model: Model) -> str:
    """The context of the model's own code length: the chain for ACN, none for a VAE."""
    return "chain" if model.conditional else "none"


@torch.no_grad()
def held_out_figures(model: Model, data: RunData, posterior: DiagGaussian | None = None,
                     train_codes: Tensor | None = None) -> dict[str, Any]:
    """The figures reported every epoch on the held-out images: ``test_recon`` and
    ``test_kl`` per image with each prior's own context (VAE: none; ACN: along the chain),
    ``test_nats_ordered`` / ``test_nats_set`` both modes, ``test_nats`` the headline (set
    mode for every prior), and for ACN the optimistic ``test_nats_nearest_train``.
    ``posterior`` (of the held-out images) and ``train_codes``
    are encoded here unless the caller already has them."""
    x = data.test_x
    if posterior is None:
        posterior = model.encode(x)
    t0 = time.perf_counter()
    context = prior_context(model, posterior.mean, own_context(model))
    chain_seconds = time.perf_counter() - t0
    recon, kl = costs(model, x, posterior, context)
    figures: dict[str, Any] = summary(recon, kl, data.dims, model.conditional, "test")
    if train_codes is None:
        train_codes = model.encode(data.train_x).mean
    if len(torch.unique(torch.cat([data.train_y.cpu(), data.test_y.cpu()]))) > 1:
        # with one label every classifier is right: the figure would say nothing
        figures["test_knn5_accuracy"] = knn_accuracy(train_codes, data.train_y,
                                                     posterior.mean, data.test_y)
    if model.conditional:
        figures["test_chain_seconds"] = chain_seconds
        near = prior_context(model, posterior.mean, "nearest_train", train_codes)
        # the same z as above (the same noise): only the prior's context changes, so the
        # reconstruction term is the chain's, and only the KL is computed again
        kl_near = kl_costs(model, posterior, near)
        figures["test_nats_nearest_train"] = (recon.sum() + kl_near.sum()).item() / len(x)
        figures["test_kl_nearest_train"] = kl_near.sum().item() / len(x)
    return figures


@torch.no_grad()
def knn_accuracy(train_codes: Tensor, train_y: Tensor, test_codes: Tensor, test_y: Tensor,
                 k: int = 5) -> float:
    """Accuracy of a k-NN classifier on test codes, with training codes and labels as its
    reference: how much of the class the codes carry. Majority vote of the k nearest
    training codes (exact search), a tie going to the smallest label, as in sklearn."""
    k = min(k, len(train_codes))
    labels = train_y.to(train_codes.device).long()
    found = nearest_codes(test_codes, train_codes, k=k).reshape(len(test_codes), k)
    votes = torch.zeros(len(test_codes), int(labels.max()) + 1, device=labels.device)
    votes.scatter_add_(1, labels[found], torch.ones(found.shape, device=labels.device))
    predicted = votes.argmax(1).cpu()  # the first of equal counts: the smallest label
    return float((predicted == test_y.long()).double().mean())


@torch.no_grad()
def importance_sampled_nll(model: Model, x: Tensor, posterior: DiagGaussian,
                           context: Tensor | None, samples: int,
                           batch_size: int = 500) -> float:
    """-log p(x | context) estimated with ``samples`` draws from q(z|x) as the proposal, in
    nats per image: log mean_s p(x|z_s) p(z_s|c) / q(z_s|x) is a lower bound on
    log p(x | c) that tightens as ``samples`` grows."""
    model.eval()
    noise = torch.Generator(device=model.device).manual_seed(EVAL_SEED)
    total = 0.0
    with progress.task(f"IS bound, {samples} samples", len(x), "images") as step:
        for i in range(0, len(x), batch_size):
            s = slice(i, i + batch_size)
            q = DiagGaussian(posterior.mean[s], posterior.log_std[s])
            c = None if context is None else context[s]
            xs = model.inputs(x[s])
            log_w = []
            for _ in range(samples):
                z = q.rsample(noise)
                log_w.append(-model.decoder.nll(z, xs, model.loss)
                             + model.prior.log_prob(z, c) - q.log_prob(z))
            log_px = torch.logsumexp(torch.stack(log_w), 0) - math.log(samples)
            total += -log_px.sum().item()
            step(len(xs), nll=total / (i + len(xs)))
    return total / len(x)


@torch.no_grad()
def train_mixture_nats(model: Model, x: Tensor, posterior: DiagGaussian,
                       train_codes: Tensor, batch_size: int = 256) -> dict[str, float]:
    """Cost per image under the uniform mixture of the prior over every training code,
    p(z) = mean_n p(z | c_n): decodable by a receiver that holds the training set (and its
    codes), without any index sent. KL by the single-sample estimate log q(z|x) - log p(z)
    at the same z as the reconstruction."""
    model.eval()
    noise = torch.Generator(device=model.device).manual_seed(EVAL_SEED)
    n, d = train_codes.shape
    # Components of all training codes, computed once; chunks keep B x C x d x M in bounds.
    prior = model.prior.distribution(train_codes, n)
    per_code = d * (prior.logits.shape[-1] if hasattr(prior, "logits") else 1)
    chunk = max(1, (1 << 23) // (batch_size * per_code))
    recon_sum = kl_sum = 0.0
    with progress.task("mixture of training codes", len(x), "images") as step:
        for i in range(0, len(x), batch_size):
            s = slice(i, i + batch_size)
            q = DiagGaussian(posterior.mean[s], posterior.log_std[s])
            z = q.rsample(noise)
            recon_sum += model.decoder.nll(z, model.inputs(x[s]), model.loss).sum().item()
            log_p = torch.cat([_slice_distribution(prior, j, j + chunk).log_prob(z[:, None, :])
                               for j in range(0, n, chunk)], 1)
            log_mix = torch.logsumexp(log_p, 1) - math.log(n)
            kl_sum += (q.log_prob(z) - log_mix).sum().item()
            step(len(z))
    m = len(x)
    return {"test_nats_train_mixture": (recon_sum + kl_sum) / m,
            "test_kl_train_mixture": kl_sum / m}


def _slice_distribution(dist: Any, start: int, stop: int) -> Any:
    """Rows ``start:stop`` of a batched prior, given a leading axis to broadcast over data."""
    fields = {k: v[start:stop].unsqueeze(0) for k, v in vars(dist).items()}
    return type(dist)(**fields)


def evaluate_run(run: str | Path, samples: int = 0, knn: int = 5, device: str | None = None,
                 with_train: bool = False, mixture: bool = False,
                 data_dir: str | None = None, threads: int | None = None) -> dict[str, Any]:
    """Every held-out figure of a run folder; ``with_train`` adds the code length of the
    training and test images together (``train_test_*``; ACN: one chain over both),
    ``mixture`` (ACN) the cost under the uniform mixture of the prior over training codes."""
    loaded = load_run(run, device, data_dir, threads)
    model, data = loaded.model, loaded.data
    x = data.test_x
    result: dict[str, Any] = {"run": str(run), "prior": model.config.prior,
                              "epoch": loaded.epoch, "eval_split": data.eval_split,
                              "test_images": len(x)}
    posterior, train_posterior = model.encode(x), model.encode(data.train_x)
    train_codes = train_posterior.mean
    result.update(held_out_figures(model, data, posterior, train_codes))
    if knn != 5:  # 5-NN is among the held-out figures already
        result[f"test_knn{knn}_accuracy"] = knn_accuracy(train_codes, data.train_y,
                                                         posterior.mean, data.test_y, knn)
    if samples > 0:
        context = prior_context(model, posterior.mean, own_context(model))
        nll = importance_sampled_nll(model, x, posterior, context, samples)
        # the bound is of the model's own code (VAE: ordered; ACN: the chain, a set), so it
        # is named by mode like every other figure
        result["is_samples"] = samples
        result.update(modes(nll, len(x), model.conditional, "test_is"))
        result.update(headline(result, "test_is", data.dims))
    if mixture and model.conditional:
        result.update(train_mixture_nats(model, x, posterior, train_codes))
    if with_train:
        result.update(_train_and_test(model, data, train_posterior, posterior))
    return result


def _train_and_test(model: Model, data: RunData, train_posterior: DiagGaussian,
                    posterior: DiagGaussian) -> dict[str, float]:
    """The code length of the training and test images as one set (ACN: one chain)."""
    both = torch.cat([data.train_x, data.test_x])
    q = DiagGaussian(torch.cat([train_posterior.mean, posterior.mean]),
                     torch.cat([train_posterior.log_std, posterior.log_std]))
    recon, kl = costs(model, both, q, prior_context(model, q.mean, own_context(model)),
                      what="training and held-out costs")
    return summary(recon, kl, data.dims, model.conditional, "train_test")
