"""The training and evaluation engine: one ``Trainer`` per run, usable from a notebook.

    from acnkit import RunConfig, train
    history = train(RunConfig(prior="acn", epochs=5))   # one dict of metrics per epoch

One training step, for a batch of data indices ``idx`` (see :meth:`Trainer.train_step`):
encode -> (ACN) the memory picks one of the K nearest stored codes of each fresh code, never
its own -> sample z, reconstruction nats + KL to the prior given that code -> optimiser step
-> (ACN) the fresh codes overwrite the batch's rows of the store. The store and the search
live in :mod:`acnkit.memory`, the held-out figures in :mod:`acnkit.evaluate`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from . import progress, threads
from .config import RunConfig
from .data import load_data
from .display import epoch_line
from .distributed import DistContext, resolve_device
from .errors import NumericalError, UsageError
from .evaluate import held_out_figures
from .interfaces import Dataset
from .memory import AssociativeMemory
from .model import Model, Networks, build_model, check_outputs
from .progress import Callbacks
from .registry import Registry, get_registry

#: an epoch whose code length exceeds this multiple of the best epoch's has diverged
DIVERGENCE = 1.5


def check_names(config: RunConfig, registry: Registry) -> None:
    """Unknown component names fail before any data is read."""
    for kind in ("prior", "encoder", "decoder", "loss", "data", "search"):
        registry.get({"data": "dataset", "search": "searcher"}.get(kind, kind),
                     getattr(config, kind))


def start_from(model: Model, name_or_path: str) -> None:
    """Load the weights of a shipped model or model folder (``--init``) into ``model``; one
    of other networks, image shape or levels is refused in one line."""
    from .shipped import load_model

    given = load_model(name_or_path, "cpu").model
    ours = {k: getattr(model.config, k) for k in RunConfig.NETWORKS}
    theirs = {k: getattr(given.config, k) for k in RunConfig.NETWORKS}
    ours.update(images=model.image_shape, levels=model.levels)
    theirs.update(images=given.image_shape, levels=given.levels)
    differ = [k for k in ours if ours[k] != theirs[k]]
    if differ:
        told = ", ".join(f"{k.replace('_', '-')} {theirs[k]!r} (this run: {ours[k]!r})"
                         for k in differ[:3])
        raise UsageError(f"--init {name_or_path}: that model has {told}; give the options it "
                         f"was made with (its config), or drop --init")
    model.load_state_dict(given.state_dict())


class Trainer:
    """Trains the model of a run epoch by epoch: the loop, the optimiser, the associative
    memory, the random generators and the checkpoint state. ``trainer.model`` is the
    :class:`~acnkit.model.Model` it trains, ``trainer.data`` its images."""

    def __init__(self, config: RunConfig, registry: Registry | None = None,
                 dataset: Dataset | None = None, dist: DistContext | None = None) -> None:
        self.config = c = config.validate()
        self.registry = registry or get_registry()
        self.dist = dist or DistContext()
        self.device = resolve_device(c.device, self.dist)
        check_names(c, self.registry)
        self.threads, self.threads_why = threads.apply(c.threads)
        if self.dist.enabled and c.unique:
            raise UsageError("--unique is not supported with several processes yet; "
                             "drop it or train in one process")
        self.data = load_data(c, self.registry, self.device, dataset)
        self.model = build_model(c, self.data.image_shape, self.device, self.registry,
                                 self.data.levels)
        if c.init is not None:
            start_from(self.model, c.init)
        # The two halves of a step, wrapped apart because the memory acts between them.
        self.encode_net, self.cost_net = self._wrapped(self.model.nets)
        self.parameters = list(self.model.nets.parameters())
        self.optimizer = torch.optim.Adam(self.parameters, lr=c.lr)
        # Three generators, saved in checkpoints so that a resumed run replays the same
        # numbers: the data order (its own, so VAE and ACN runs of one seed see the same
        # order), the neighbour picks and the sampling noise of z.
        self.order = torch.Generator().manual_seed(c.seed)
        rank_seed = 1000 * self.dist.rank  # ranks draw different noise and neighbours
        self.picks = torch.Generator().manual_seed(c.seed + 2 + rank_seed)
        self.noise = torch.Generator(device=self.device).manual_seed(c.seed + 1 + rank_seed)
        self.memory = self._memory() if self.model.conditional else None
        self.epoch = 0
        self.history: list[dict[str, Any]] = []
        self.changes: list[dict[str, Any]] = []  # what each resume changed (config.json)
        self.stop_requested = False
        self.stop_signal = 2  # SIGINT, unless a handler says which signal asked the stop
        check_outputs(self.model, self.model.inputs(self.data.train_x[:2]),
                      self.memory.store[:2] if self.memory else None)

    def _wrapped(self, nets: Networks) -> tuple[torch.nn.Module, torch.nn.Module]:
        if not self.dist.enabled:
            return nets.encoder, nets.cost
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.device.index] if self.device.type == "cuda" else None
        return (DistributedDataParallel(nets.encoder, device_ids=ids),
                DistributedDataParallel(nets.cost, device_ids=ids))

    def _memory(self) -> AssociativeMemory:
        c, n = self.config, len(self.data.train_x)
        if c.k >= n:
            raise UsageError(f"--k {c.k} must be smaller than the {n} training codes")
        plugin = self.registry.get("searcher", c.search).plugin
        return AssociativeMemory(
            n, c.latent_dim, self.registry.create("searcher", c.search, **c.searcher_options()),
            c.k, unique=c.unique, seed=c.seed + 3, picks=self.picks, device=self.device,
            dist=self.dist, name=f"searcher {c.search!r} (plugin {plugin!r})")

    # ------------------------------------------------------------------ training
    def fit(self, epochs: int | None = None, callbacks: Callbacks | None = None,
            after_epoch: Callable[[Trainer], None] | None = None) -> list[dict[str, Any]]:
        """Train up to ``epochs`` epochs in all (default: the config's); returns the history.
        Each epoch shows a progress bar and ends with its line of figures (see
        :mod:`acnkit.progress` to silence them)."""
        target = self.config.epochs if epochs is None else epochs
        callbacks = callbacks or Callbacks(
            on_epoch=lambda m: progress.echo(epoch_line("", m, target)))
        while self.epoch < target and not self.stop_requested:
            metrics = self.train_epoch(target)
            if metrics is None:  # interrupted mid-epoch: the last checkpoint stands
                break
            if callbacks.on_epoch:
                callbacks.on_epoch(metrics)
            if after_epoch:
                after_epoch(self)
        return self.history

    def train_epoch(self, epochs: int | None = None) -> dict[str, Any] | None:
        """One pass over the training data, then the held-out figures; returns the epoch's
        metrics (None if a stop was requested mid-epoch). ``epochs``: the run's length, for
        the progress bar."""
        start = time.perf_counter()
        sums = self.train_pass(epochs)
        if sums is None:
            return None
        self.epoch += 1
        seconds = time.perf_counter() - start
        n = len(self.data.train_x)
        recon, kl = sums[0] / n, sums[1] / n
        metrics: dict[str, Any] = {
            "epoch": self.epoch,
            "train_nats": recon + kl,
            "train_recon": recon,
            "train_kl": kl,
            "train_bits_per_dim": (recon + kl) / (math.log(2) * self.data.dims),
            **held_out_figures(self.model, self.data),
            "levels": self.data.levels,
            "threads": self.threads,
            "eval_split": self.data.eval_split,
            "epoch_seconds": seconds,
            "search_seconds": self.memory.search_seconds if self.memory else 0.0,
        }
        if self.config.unique and self.memory:
            metrics["unique_fallbacks"] = self.memory.unique_fallbacks
        self._check_divergence(metrics)
        self.history.append(metrics)
        return metrics

    def train_pass(self, epochs: int | None = None) -> tuple[float, float] | None:
        """Train on every datum once in a seeded random order; returns the sums of the
        reconstruction and KL nats (None if a stop was requested mid-epoch)."""
        self._draw_training_images()
        c, n = self.config, len(self.data.train_x)
        self.model.nets.train()
        if self.memory:
            self.memory.start_epoch()
        order = torch.randperm(n, generator=self.order).to(self.device)
        batches = math.ceil(n / c.batch_size)
        recon_sum = torch.zeros((), device=self.device)
        kl_sum = torch.zeros((), device=self.device)
        seen = 0
        # The running objective is this rank's mean so far, read only when it is shown.
        running = {"nats": lambda: (recon_sum + kl_sum).item() / max(seen, 1)}
        with progress.task(f"epoch {self.epoch + 1}/{epochs or c.epochs}", n, "images",
                           show=self.dist.is_main) as step:
            for b in range(batches):
                if self._should_stop():
                    return None
                idx = self.dist.shard(order[b * c.batch_size: (b + 1) * c.batch_size])
                recon, kl = self.train_step(idx, batch=b)
                recon_sum += recon.sum()
                kl_sum += kl.sum()
                seen += len(idx)
                step(min(c.batch_size, n - b * c.batch_size), **running)
        return (self.dist.sum(recon_sum.item(), self.device),
                self.dist.sum(kl_sum.item(), self.device))

    def _draw_training_images(self) -> None:
        """This epoch's training images, where the data set draws them afresh (random
        patches of photos): the same ones for the same epoch, resumed or not. ACN's store
        keeps the codes of last epoch's images until each row is trained again: its
        neighbours are a step stale, as a store's codes always are within an epoch."""
        draw = self.data.dataset.resample
        if draw is not None:
            fresh = draw(self.epoch + 1)[: self.config.train_limit]
            self.data.train_x = fresh.to(self.data.train_x.device)

    def _should_stop(self) -> bool:
        # With several processes every rank must stop at the same batch, or the others
        # would wait for it in the next collective.
        if self.dist.enabled:
            self.stop_requested = self.dist.sum(float(self.stop_requested), self.device) > 0
        return self.stop_requested

    def train_step(self, idx: Tensor, batch: int = 0) -> tuple[Tensor, Tensor]:
        """One optimiser step on the training data ``idx`` (this rank's share of the batch);
        returns per-datum reconstruction and KL nats."""
        x = self.model.inputs(self.data.train_x[idx])
        posterior = self.encode_net(x)                                  # q(z|x)
        codes = posterior.mean.detach()  # no gradient flows into the store or the context
        if self.memory and not torch.isfinite(codes).all():  # NaN codes would find no neighbour
            self._raise_numerical("codes", batch)
        context = self.memory.neighbour_context(idx, codes) if self.memory else None
        recon, kl = self.cost_net(x, posterior.mean, posterior.log_std, context, self.noise)
        loss = (recon + kl).mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self._check_finite(loss, batch)
        self.optimizer.step()
        if self.memory:
            self.memory.write(idx, codes)                               # fresh codes stored
        return recon.detach(), kl.detach()

    def _check_finite(self, loss: Tensor, batch: int) -> None:
        # One fused norm over every gradient: a NaN or inf anywhere makes it non-finite.
        grad_norm = torch.nn.utils.clip_grad_norm_(self.parameters, float("inf"))
        if torch.isfinite(loss) and torch.isfinite(grad_norm):
            return
        self._raise_numerical("loss" if not torch.isfinite(loss) else "gradients", batch)

    def _check_divergence(self, metrics: dict[str, Any]) -> None:
        """Stop when a code length jumps far above where it was: finite numbers can still
        mean a run has blown up (a too-wide prior net can take the held-out KL from 9 to
        145 nats in one epoch), and every later epoch would be wasted."""
        # The training objective is held to its best epoch; the held-out figure to the epoch
        # before it: one that creeps up epoch after epoch is overfitting, which a long run
        # must be free to show (a PixelCNN on the 1,437 digits does from epoch ~60 on).
        for key, what, past in (("test_nats", "held-out code length", self.history[-1:]),
                                ("train_nats", "training objective", self.history)):
            best = min((m[key] for m in past), default=None)
            if best is not None and metrics[key] > DIVERGENCE * best:
                e = self.epoch
                raise NumericalError(
                    f"training diverged at epoch {e}: the {what} rose to {metrics[key]:.2f} "
                    f"nats per image from {best:.2f}; the checkpoint of epoch {e - 1} is "
                    f"kept: resume it with a smaller --lr (now {self.config.lr}) or start "
                    f"again with smaller nets")

    def _raise_numerical(self, what: str, batch: int) -> None:
        raise NumericalError(
            f"{what} became NaN or infinite at epoch {self.epoch + 1}, batch {batch + 1}; "
            f"try a smaller --lr (now {self.config.lr})"
        )

    # ---------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue the run exactly: tensors and plain values only, so
        that it loads with ``torch.load(..., weights_only=True)``."""
        state: dict[str, Any] = {
            "format": 1,
            "config": self.config.to_dict(),
            "epoch": self.epoch,
            "history": self.history,
            "changes": self.changes,
            "modules": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "order": self.order.get_state(),
            "generator": self.picks.get_state(),
            "noise": self.noise.get_state(),
        }
        if self.memory:
            state["store"] = self.memory.store
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["modules"])
        self.optimizer.load_state_dict(state["optimizer"])
        for group in self.optimizer.param_groups:  # --lr given on resume wins
            group["lr"] = self.config.lr
        self.order.set_state(state["order"])
        self.picks.set_state(state["generator"])
        self.noise.set_state(state["noise"])
        self.epoch = int(state["epoch"])
        self.history = list(state["history"])
        self.changes = list(state.get("changes", []))
        if self.memory:
            self.memory.load(state["store"])
        if self.dist.rank > 0:  # only rank 0's random states are saved: reseed the others
            seed = self.config.seed + 1000 * self.dist.rank + 7919 * self.epoch
            self.picks.manual_seed(seed)
            self.noise.manual_seed(seed + 1)


def train(config: RunConfig, callbacks: Callbacks | None = None) -> list[dict[str, Any]]:
    """Train a run in memory (no files written) and return its per-epoch metrics. Progress
    and each epoch's line go to stderr; ``with acnkit.progress.quiet():`` silences them."""
    return Trainer(config).fit(callbacks=callbacks)
