"""Evaluation of a finished run: test nats, bits per dimension, k-NN accuracy of the codes,
and an importance-sampled bound on the negative log-likelihood."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from . import rundir
from .config import RunConfig
from .engine import EVAL_SEED, Trainer


def load_trainer(run: str | Path, device: str | None = None) -> Trainer:
    """The trainer of a run folder, restored from its checkpoint."""
    state = rundir.load_checkpoint(run)
    config = RunConfig.from_dict(state["config"])
    if device is not None:
        config.device = device
    trainer = Trainer(config)
    trainer.load_state_dict(state)
    return trainer


@torch.no_grad()
def knn_accuracy(trainer: Trainer, k: int = 5) -> float:
    """Accuracy of a k-NN classifier on test codes, with training codes and labels as its
    reference: how much of the class the codes carry."""
    from sklearn.neighbors import KNeighborsClassifier

    train = trainer.encode(trainer.train_x).cpu().numpy()
    test = trainer.encode(trainer.test_x).cpu().numpy()
    clf = KNeighborsClassifier(n_neighbors=min(k, len(train))).fit(train, trainer.train_y.numpy())
    return float((clf.predict(test) == trainer.test_y.numpy()).mean())


@torch.no_grad()
def importance_sampled_nll(trainer: Trainer, samples: int, batch_size: int = 500) -> float:
    """-log p(x) estimated with ``samples`` draws from q(z|x) as the proposal, in nats per
    test image: log mean_s p(x|z_s) p(z_s|c) / q(z_s|x) is a lower bound on log p(x) that
    tightens as ``samples`` grows (ACN: c is the nearest training code)."""
    noise = torch.Generator(device=trainer.device).manual_seed(EVAL_SEED)
    total = 0.0
    for x, posterior, context in trainer.held_out_batches(batch_size):
        log_w = []
        for _ in range(samples):
            z = posterior.rsample(noise)
            log_w.append(-trainer.loss.nll(trainer.decoder(z), x)
                         + trainer.prior.log_prob(z, context) - posterior.log_prob(z))
        log_px = torch.logsumexp(torch.stack(log_w), 0) - math.log(samples)
        total += -log_px.sum().item()
    return total / len(trainer.test_x)


def evaluate_run(run: str | Path, samples: int = 0, knn: int = 5,
                 device: str | None = None) -> dict[str, Any]:
    trainer = load_trainer(run, device)
    test = trainer.evaluate()
    result: dict[str, Any] = {
        "run": str(run), "prior": trainer.config.prior, "epoch": trainer.epoch,
        "test_nats": test["nats"], "test_recon": test["recon"], "test_kl": test["kl"],
        "test_bits_per_dim": test["bits_per_dim"],
        f"knn{knn}_accuracy": knn_accuracy(trainer, knn),
    }
    if samples > 0:
        nll = importance_sampled_nll(trainer, samples)
        result["is_samples"] = samples
        result["test_nll_is"] = nll
        result["test_nll_is_bits_per_dim"] = nll / (math.log(2) * trainer.data.dims)
    return result
