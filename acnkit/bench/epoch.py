"""``acnkit bench epoch``: one training epoch of the VAE and of ACN, timed phase by phase."""

from __future__ import annotations

import dataclasses
import statistics
import time
from typing import Any

import torch

from .. import progress
from ..config import RunConfig
from ..distributions import DiagGaussian
from ..engine import Trainer
from ..evaluate import held_out_figures


def blog_config(data: str, **overrides: Any) -> RunConfig:
    """The blog's setup: MLP 784-512-20, single-Gaussian prior with one hidden layer of 512."""
    base: dict[str, Any] = dict(data=data, latent_dim=20, encoder_hidden="512", decoder_hidden="512",
                prior_hidden=512, prior_layers=1, mixtures=1, batch_size=128,
                posterior="learned", epochs=1)
    base.update(overrides)
    return RunConfig(**base)


#: the phases of a training step that ``bench epoch`` times, in the order they run
PHASES = ("encoder forward", "search", "decoder forward", "prior forward",
          "decoder backward", "prior backward", "encoder backward", "optimiser",
          "store update")


class PhaseClock:
    """Seconds spent in named phases (the device synchronised at each boundary, so that
    asynchronous GPU work is charged to the phase that launched it)."""

    def __init__(self, device: torch.device) -> None:
        self.sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
        self.seconds: dict[str, float] = {}

    def __call__(self, phase: str) -> Any:
        clock = self

        class _Phase:
            def __enter__(self) -> None:
                clock.sync()
                self.t0 = time.perf_counter()

            def __exit__(self, *exc: Any) -> None:
                clock.sync()
                clock.seconds[phase] = clock.seconds.get(phase, 0.0) + \
                    time.perf_counter() - self.t0
        return _Phase()


def timed_step(trainer: Trainer, idx: torch.Tensor, clock: PhaseClock) -> None:
    """``Trainer.train_step`` cut at every network boundary so that each phase can be timed
    on its own: the graph is split where one network hands a tensor to the next and the
    gradients are passed back across each cut by hand. The parameters get the gradients
    of the real step (tests/test_bench.py checks it), from the same random numbers."""
    t, memory, model = trainer, trainer.memory, trainer.model
    x = t.model.inputs(t.data.train_x[idx])
    with clock("encoder forward"):
        posterior = model.encoder(x)
    codes = posterior.mean.detach()
    with clock("search"):
        context = memory.neighbour_context(idx, codes) if memory else None
    mean = posterior.mean.detach().requires_grad_()
    log_std = posterior.log_std.detach().requires_grad_()
    q = DiagGaussian(mean, log_std)
    z = q.rsample(t.noise)
    z_dec, z_prior = z.detach().requires_grad_(), z.detach().requires_grad_()
    with clock("decoder forward"):
        recon = model.decoder.nll(z_dec, x, model.loss)
    with clock("prior forward"):
        kl = model.prior.kl(q, z_prior, context)
    t.optimizer.zero_grad(set_to_none=True)
    with clock("decoder backward"):
        (recon.sum() / len(idx)).backward()
    with clock("prior backward"):
        (kl.sum() / len(idx)).backward()
    with clock("encoder backward"):
        # a closed-form KL does not use the sample: z_prior then has no gradient
        assert z_dec.grad is not None  # the reconstruction always reads z
        z.backward(z_dec.grad if z_prior.grad is None else z_dec.grad + z_prior.grad)
        torch.autograd.backward([posterior.mean, posterior.log_std], [mean.grad, log_std.grad])
    with clock("optimiser"):
        t.optimizer.step()
    if memory:
        with clock("store update"):
            memory.write(idx, codes)


def profile_epoch(trainer: Trainer) -> dict[str, float]:
    """Seconds of one training epoch by phase (:data:`PHASES`), then the held-out
    evaluation (with ACN's ordered chain apart) and the epoch's whole time."""
    c, n = trainer.config, len(trainer.data.train_x)
    clock = PhaseClock(trainer.device)
    trainer.model.nets.train()
    if trainer.memory:
        trainer.memory.start_epoch()
    t0 = time.perf_counter()
    order = torch.randperm(n, generator=trainer.order).to(trainer.device)
    with progress.task(f"timed epoch, {trainer.config.prior}", n, "images") as shown:
        for b in range(0, n, c.batch_size):
            timed_step(trainer, order[b: b + c.batch_size], clock)
            shown(min(c.batch_size, n - b))
    train = time.perf_counter() - t0
    t1 = time.perf_counter()
    figures = held_out_figures(trainer.model, trainer.data)
    evaluation = time.perf_counter() - t1
    chain = figures.get("test_chain_seconds", 0.0)
    phases = {p: clock.seconds.get(p, 0.0) for p in PHASES}
    phases["other (batching, sampling z)"] = max(0.0, train - sum(phases.values()))
    phases["training"] = train
    phases["evaluation"] = evaluation - chain
    phases["ordered chain"] = chain
    phases["epoch"] = train + evaluation
    return phases


def bench_epoch(data: str, searchers: list[str], repeats: int = 1, device: str = "cpu",
                train_limit: int | None = None, data_dir: str | None = None,
                base: RunConfig | None = None) -> dict[str, Any]:
    """One training epoch of the VAE and of ACN with each searcher, phase by phase,
    interleaved ``repeats`` times in this process; medians reported. ``base`` gives the
    nets (default: the blog configuration); data, device, limit and searcher are set here."""

    def config(**kw: Any) -> RunConfig:
        kw.update(device=device, train_limit=train_limit, data_dir=data_dir, epochs=1)
        return blog_config(data, **kw) if base is None else \
            dataclasses.replace(base, data=data, **kw).validate()

    trainers = {"vae": Trainer(config(prior="vae"))}
    dataset = trainers["vae"].data.dataset
    for s in searchers:
        trainers[s] = Trainer(config(prior="acn", search=s), dataset=dataset)
    runs: dict[str, list[dict[str, float]]] = {key: [] for key in trainers}
    for _ in range(repeats):
        for key, trainer in trainers.items():
            runs[key].append(profile_epoch(trainer))

    def median(key: str) -> dict[str, float]:
        return {p: statistics.median(r[p] for r in runs[key]) for p in runs[key][0]}

    vae = median("vae")
    return {
        "data": data, "n": len(trainers["vae"].data.train_x), "repeats": repeats,
        "nets": "blog configuration" if base is None else
        f"decoder {base.decoder} {base.decoder_options or ''}, encoder {base.encoder}".strip(),
        "vae_epoch_seconds": vae["epoch"], "vae_phases": vae,
        "acn": [{"search": s, "epoch_seconds": median(s)["epoch"],
                 "search_seconds": median(s)["search"], "phases": median(s),
                 "training_ratio": median(s)["training"] / vae["training"],
                 "ratio": median(s)["epoch"] / vae["epoch"]} for s in searchers],
    }
