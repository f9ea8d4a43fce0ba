"""The training and evaluation engine: one ``Trainer`` per run, usable from a notebook.

    from acnkit import RunConfig, train
    history = train(RunConfig(prior="acn", epochs=5))   # one dict of metrics per epoch

One training step, for a batch of data indices ``idx`` (see :meth:`Trainer.train_step`):
encode -> (ACN) write the fresh codes into the store, find K neighbours of each code among the
other rows, pick one uniformly -> sample z -> reconstruction nats + KL to the prior -> step.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from .config import RunConfig
from .distributed import DistContext
from .errors import NumericalError, PluginError, UsageError
from .interfaces import Dataset
from .model import CompressionModel
from .neighbours import exact_knn, pick_random, pick_unique
from .registry import Registry, get_registry

#: seed of the noise used by evaluation, so test nats depend on the model alone
EVAL_SEED = 2024


def resolve_device(name: str, dist: DistContext | None = None) -> torch.device:
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError("--device cuda was asked for but no CUDA GPU is available; "
                         "use --device cpu")
    if name == "cuda" and dist is not None and dist.enabled:
        return torch.device("cuda", dist.local_rank)  # one GPU per process
    return torch.device(name)


@dataclass
class Callbacks:
    """Hooks for progress displays; every one is optional."""

    on_batch: Callable[[int, int, int], None] | None = None  # epoch, batch, batches
    on_epoch: Callable[[dict], None] | None = None


def check_dataset(data: Dataset, name: str) -> None:
    for split in ("train", "test"):
        x, y = getattr(data, f"{split}_x"), getattr(data, f"{split}_y")
        if len(x) == 0:
            raise UsageError(f"data set {name!r} has an empty {split} set")
        if len(x) != len(y):
            raise PluginError(f"data set {name!r}: {split} has {len(x)} images, {len(y)} labels")
        if tuple(x.shape[1:]) != tuple(data.image_shape):
            raise PluginError(f"data set {name!r}: {split} images have shape "
                              f"{tuple(x.shape[1:])}, not image_shape {data.image_shape}")


class Trainer:
    """Builds every component of a run from its config and trains it epoch by epoch."""

    def __init__(self, config: RunConfig, registry: Registry | None = None,
                 dataset: Dataset | None = None, dist: DistContext | None = None) -> None:
        self.config = c = config.validate()
        reg = self.registry = registry or get_registry()
        self.dist = dist or DistContext()
        self.device = resolve_device(c.device, self.dist)
        for kind, name in (("prior", c.prior), ("encoder", c.encoder), ("decoder", c.decoder),
                           ("loss", c.loss), ("dataset", c.data), ("searcher", c.search)):
            reg.get(kind, name)  # unknown names fail before any data is read
        data = dataset or reg.create("dataset", c.data, data_dir=c.data_dir, seed=c.data_seed)
        check_dataset(data, c.data)
        self.data = data
        train_x, train_y = data.train_x[: c.train_limit], data.train_y[: c.train_limit]
        test_x, test_y = data.test_x, data.test_y
        self.eval_split = "test"
        if c.valid_size:
            # Hyper-parameters are chosen on images carved from the training set, never on
            # the test set: the validation images then stand in for it everywhere.
            if c.valid_size >= len(train_x):
                raise UsageError(f"--valid-size {c.valid_size} leaves no training images "
                                 f"of {len(train_x)}")
            train_x, test_x = train_x[: -c.valid_size], train_x[-c.valid_size:]
            train_y, test_y = train_y[: -c.valid_size], train_y[-c.valid_size:]
            self.eval_split = "valid"
        self.train_x, self.train_y = train_x.to(self.device), train_y
        self.test_x, self.test_y = test_x[: c.test_limit].to(self.device), test_y[: c.test_limit]
        n = len(self.train_x)

        torch.manual_seed(c.seed)  # parameter initialisation
        # Only given when set, so that nets without stages (mlp) refuse it by name.
        stages = {} if c.channels is None else {"channels": c.channels}
        self.encoder = reg.create("encoder", c.encoder, data.image_shape, c.latent_dim,
                                  posterior=c.posterior, hidden=c.encoder_hidden,
                                  **stages).to(self.device)
        self.decoder = reg.create("decoder", c.decoder, data.image_shape, c.latent_dim,
                                  hidden=c.decoder_hidden, **stages).to(self.device)
        self.prior = reg.create("prior", c.prior, c.latent_dim, hidden=c.prior_hidden,
                                layers=c.prior_layers, mixtures=c.mixtures).to(self.device)
        self.loss = reg.create("loss", c.loss)
        self.modules = {"encoder": self.encoder, "decoder": self.decoder, "prior": self.prior}
        self.model = CompressionModel(self.encoder, self.decoder, self.prior, self.loss)
        self.ddp: torch.nn.Module = self.model
        if self.dist.enabled:
            if c.unique:
                raise UsageError("--unique is not supported with several processes yet; "
                                 "drop it or train in one process")
            from torch.nn.parallel import DistributedDataParallel

            self.ddp = DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        self.parameters = list(self.model.parameters())
        self.optimizer = torch.optim.Adam(self.parameters, lr=c.lr)

        # Data order, neighbour choice and sampling noise each have their own generator, saved
        # in checkpoints so that a resumed run replays the same numbers; the order's own
        # generator gives VAE and ACN runs of one seed the same data order.
        self.order = torch.Generator().manual_seed(c.seed)
        rank_seed = 1000 * self.dist.rank  # ranks draw different noise and neighbours
        self.generator = torch.Generator().manual_seed(c.seed + 2 + rank_seed)
        self.noise = torch.Generator(device=self.device).manual_seed(c.seed + 1 + rank_seed)

        self.conditional = bool(self.prior.conditional)
        self.searcher = None
        if self.conditional:
            if c.k >= n:
                raise UsageError(f"--k {c.k} must be smaller than the {n} training codes")
            # The same initial store on every rank: its own generator, not a rank's.
            init = torch.Generator().manual_seed(c.seed + 3)
            self.store = torch.randn(n, c.latent_dim, generator=init).to(self.device)
            self.used = torch.zeros(n, dtype=torch.bool, device=self.device)
            self.searcher = reg.create("searcher", c.search, **c.searcher_options())
            self.searcher_plugin = reg.get("searcher", c.search).plugin
        self.epoch = 0
        self.history: list[dict[str, Any]] = []
        self.stop_requested = False
        self.check_plugins()
        self.search_seconds = 0.0
        self.unique_fallbacks = 0

    # ------------------------------------------------------------------ training
    def fit(self, epochs: int | None = None, callbacks: Callbacks | None = None,
            after_epoch: Callable[[Trainer], None] | None = None) -> list[dict[str, Any]]:
        """Train up to ``epochs`` epochs in all (default: the config's); returns the history."""
        callbacks = callbacks or Callbacks()
        target = self.config.epochs if epochs is None else epochs
        while self.epoch < target and not self.stop_requested:
            metrics = self.train_epoch(callbacks)
            if metrics is None:  # interrupted mid-epoch: the last checkpoint stands
                break
            if callbacks.on_epoch:
                callbacks.on_epoch(metrics)
            if after_epoch:
                after_epoch(self)
        return self.history

    def train_epoch(self, callbacks: Callbacks | None = None) -> dict[str, Any] | None:
        """One pass over the training data, then a test pass; returns the epoch's metrics
        (None if a stop was requested mid-epoch)."""
        start = time.perf_counter()
        sums = self.train_pass(callbacks)
        if sums is None:
            return None
        self.epoch += 1
        seconds = time.perf_counter() - start
        n = len(self.train_x)
        recon, kl = sums[0] / n, sums[1] / n
        test = self.evaluate()
        metrics = {
            "epoch": self.epoch,
            "train_nats": recon + kl,
            "train_recon": recon,
            "train_kl": kl,
            "test_nats": test["nats"],
            "test_recon": test["recon"],
            "test_kl": test["kl"],
            "test_bits_per_dim": test["bits_per_dim"],
            "eval_split": self.eval_split,
            "epoch_seconds": seconds,
            "search_seconds": self.search_seconds,
        }
        if self.config.unique and self.conditional:
            metrics["unique_fallbacks"] = self.unique_fallbacks
        self.history.append(metrics)
        return metrics

    def train_pass(self, callbacks: Callbacks | None = None) -> tuple[float, float] | None:
        """Train on every datum once in a seeded random order; returns the sums of the
        reconstruction and KL nats (None if a stop was requested mid-epoch)."""
        c, n = self.config, len(self.train_x)
        on_batch = callbacks.on_batch if callbacks else None
        self.search_seconds, self.unique_fallbacks = 0.0, 0
        self.model.train()
        if self.conditional:
            self.used.zero_()
            self.searcher.reset(self.store)
        order = torch.randperm(n, generator=self.order).to(self.device)
        batches = math.ceil(n / c.batch_size)
        recon_sum = torch.zeros((), device=self.device)
        kl_sum = torch.zeros((), device=self.device)
        for b in range(batches):
            if self._should_stop():
                return None
            idx = self.dist.shard(order[b * c.batch_size: (b + 1) * c.batch_size])
            recon, kl = self.train_step(idx, batch=b)
            recon_sum += recon.sum()
            kl_sum += kl.sum()
            if on_batch:
                on_batch(self.epoch + 1, b + 1, batches)
        return (self.dist.sum(recon_sum.item(), self.device),
                self.dist.sum(kl_sum.item(), self.device))

    def _should_stop(self) -> bool:
        # With several processes every rank must stop at the same batch, or the others
        # would wait for it in the next collective.
        if self.dist.enabled:
            self.stop_requested = self.dist.sum(float(self.stop_requested), self.device) > 0
        return self.stop_requested

    def train_step(self, idx: Tensor, batch: int = 0) -> tuple[Tensor, Tensor]:
        """One optimiser step on the training data ``idx`` (this rank's share of the batch);
        returns per-datum reconstruction and KL nats. The model encodes x, asks
        ``neighbour_codes`` for each code's neighbour context (ACN), samples z and scores it."""
        x = self.train_x[idx].float()
        neighbours = (lambda codes: self.neighbour_codes(idx, codes)) if self.conditional else None
        recon, kl = self.ddp(x, neighbours, self.noise)
        loss = (recon + kl).mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self._check_finite(loss, batch)
        self.optimizer.step()
        return recon.detach(), kl.detach()

    def neighbour_codes(self, idx: Tensor, codes: Tensor) -> Tensor:
        """Store the batch's fresh codes (every rank's), then return one random near
        neighbour's code for each of this rank's codes."""
        every_idx, every_code = self.dist.all_gather(idx), self.dist.all_gather(codes)
        self.store[every_idx] = every_code
        self.searcher.update(every_idx)
        t0 = time.perf_counter()
        if self.config.unique:
            chosen = self._unique_neighbours(idx, codes)
        else:
            chosen = pick_random(self._search(codes, idx), self.generator)
        self.search_seconds += time.perf_counter() - t0
        return self.store[chosen]

    def _search(self, codes: Tensor, idx: Tensor, banned: Tensor | None = None) -> Tensor:
        cands = self.searcher.search(codes, self.config.k, exclude=idx, banned=banned)
        self._check_candidates(cands, idx)
        return cands

    def _unique_neighbours(self, idx: Tensor, codes: Tensor) -> Tensor:
        """Neighbours never used before in this epoch, and distinct within the batch."""
        chosen = torch.full_like(idx, -1)
        pending = torch.arange(len(idx), device=idx.device)
        # Each round bans what earlier rows took, so a row that lost every candidate to
        # another row gets new ones; a handful of rounds settles a batch.
        for _ in range(8):
            picked = pick_unique(self._search(codes[pending], idx[pending], self.used),
                                 self.generator)
            ok = picked >= 0
            chosen[pending[ok]] = picked[ok]
            self.used[picked[ok]] = True
            pending = pending[~ok]
            if len(pending) == 0:
                return chosen
        # Nothing unused is left but these rows' own codes: reuse a code and count it.
        self.unique_fallbacks += len(pending)
        chosen[pending] = pick_random(self._search(codes[pending], idx[pending]), self.generator)
        return chosen

    @torch.no_grad()
    def check_plugins(self) -> None:
        """Plugins' outputs have the shapes the engine relies on: checked once, on two
        training images, before the first step, with random numbers of its own."""
        c = self.config
        x = self.train_x[:2].float()
        b = len(x)
        gen = torch.Generator(device=self.device).manual_seed(0)
        z = torch.randn((b, c.latent_dim), generator=gen, device=self.device)
        context = self.store[:b] if self.conditional else None
        stages = [
            ("encoder", c.encoder, lambda: self.encoder(x),
             lambda q: [("mean", q.mean, (b, c.latent_dim)), ("log_std", q.log_std, (b, c.latent_dim))]),
            ("decoder", c.decoder, lambda: self.decoder(z), lambda p: [("output", p, tuple(x.shape))]),
            ("loss", c.loss, lambda: self.loss.nll(self.decoder(z), x), lambda r: [("nll", r, (b,))]),
            ("prior", c.prior, lambda: self.prior.kl(self.encoder(x), z, context),
             lambda k: [("kl", k, (b,))]),
        ]
        for kind, name, run, expected in stages:
            plugin = self.registry.get(kind, name).plugin
            try:
                out = run()
                items = expected(out)
            except Exception as exc:  # noqa: BLE001 - any failure is the plugin's, named as such
                raise PluginError(f"{kind} {name!r} (plugin {plugin!r}) failed on a batch of "
                                  f"{b}: {type(exc).__name__}: {exc}".splitlines()[0]) from exc
            for what, value, shape in items:
                got = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
                if got != shape:
                    raise PluginError(f"{kind} {name!r} (plugin {plugin!r}) gave {what} of "
                                      f"shape {got}, expected {shape}")

    def _check_candidates(self, cands: Tensor, idx: Tensor) -> None:
        name = f"searcher {self.config.search!r} (plugin {self.searcher_plugin!r})"
        if not isinstance(cands, Tensor) or cands.shape != (len(idx), self.config.k):
            shape = tuple(cands.shape) if isinstance(cands, Tensor) else type(cands).__name__
            raise PluginError(f"{name} returned {shape}, expected ({len(idx)}, {self.config.k})")
        if cands.dtype != torch.long:
            raise PluginError(f"{name} returned dtype {cands.dtype}, expected torch.long")
        own = cands == idx.unsqueeze(1)
        outside = (cands < -1) | (cands >= len(self.store))
        if (own | outside).any():  # one reduction on the hot path; diagnose only on failure
            if outside.any():
                raise PluginError(f"{name} returned indices outside the store of "
                                  f"{len(self.store)}")
            raise PluginError(f"{name} returned a query's own row as its neighbour")

    def _check_finite(self, loss: Tensor, batch: int) -> None:
        # One fused norm over every gradient: a NaN or inf anywhere makes it non-finite.
        grad_norm = torch.nn.utils.clip_grad_norm_(self.parameters, float("inf"))
        if torch.isfinite(loss) and torch.isfinite(grad_norm):
            return
        what = "loss" if not torch.isfinite(loss) else "gradients"
        raise NumericalError(
            f"{what} became NaN or infinite at epoch {self.epoch + 1}, batch {batch + 1}; "
            f"try a smaller --lr (now {self.config.lr})"
        )

    # ---------------------------------------------------------------- evaluation
    @torch.no_grad()
    def encode(self, x: Tensor, batch_size: int = 1024) -> Tensor:
        """Codes (posterior means) of images ``x``."""
        self.encoder.eval()
        out = [self.encoder(x[i: i + batch_size].float()).mean for i in range(0, len(x), batch_size)]
        return torch.cat(out)

    @torch.no_grad()
    def nearest_train_codes(self, codes: Tensor, train_codes: Tensor) -> Tensor:
        """The nearest training code of each code (K = 1, deterministic): the ACN test prior's
        context, as a receiver that already holds the training set would use it."""
        nearest = torch.cat([exact_knn(codes[i: i + 1024], train_codes, 1)[1][:, 0]
                             for i in range(0, len(codes), 1024)])
        return train_codes[nearest]

    @torch.no_grad()
    def held_out_batches(self, batch_size: int = 1000) -> Iterator[tuple[Tensor, Any, Tensor | None]]:
        """(x, q(z|x), prior context) for each batch of the held-out images, in eval mode;
        ACN's context is each code's nearest freshly encoded training code."""
        self.model.eval()
        train_codes = self.encode(self.train_x) if self.conditional else None
        for i in range(0, len(self.test_x), batch_size):
            x = self.test_x[i: i + batch_size].float()
            posterior = self.encoder(x)
            context = (self.nearest_train_codes(posterior.mean, train_codes)
                       if self.conditional else None)
            yield x, posterior, context

    @torch.no_grad()
    def evaluate(self, batch_size: int = 1000) -> dict[str, float]:
        """Nats per held-out image, split into reconstruction and KL, and bits per dimension."""
        noise = torch.Generator(device=self.device).manual_seed(EVAL_SEED)
        recon_sum = kl_sum = 0.0
        for x, posterior, context in self.held_out_batches(batch_size):
            z = posterior.rsample(noise)
            recon_sum += self.loss.nll(self.decoder(z), x).sum().item()
            kl_sum += self.prior.kl(posterior, z, context).sum().item()
        n = len(self.test_x)
        nats = (recon_sum + kl_sum) / n
        return {"nats": nats, "recon": recon_sum / n, "kl": kl_sum / n,
                "bits_per_dim": nats / (math.log(2) * self.data.dims)}

    # ---------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue the run exactly: tensors and plain values only, so
        that it loads with ``torch.load(..., weights_only=True)``."""
        state: dict[str, Any] = {
            "format": 1,
            "config": self.config.to_dict(),
            "epoch": self.epoch,
            "history": self.history,
            "modules": {k: m.state_dict() for k, m in self.modules.items()},
            "optimizer": self.optimizer.state_dict(),
            "order": self.order.get_state(),
            "generator": self.generator.get_state(),
            "noise": self.noise.get_state(),
        }
        if self.conditional:
            state["store"] = self.store
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for k, m in self.modules.items():
            m.load_state_dict(state["modules"][k])
        self.optimizer.load_state_dict(state["optimizer"])
        for group in self.optimizer.param_groups:  # --lr given on resume wins
            group["lr"] = self.config.lr
        self.order.set_state(state["order"])
        self.generator.set_state(state["generator"])
        self.noise.set_state(state["noise"])
        self.epoch = int(state["epoch"])
        self.history = list(state["history"])
        if self.conditional:
            self.store.copy_(state["store"].to(self.device))
            self.searcher.reset(self.store)
        if self.dist.rank > 0:  # only rank 0's random states are saved: reseed the others
            seed = self.config.seed + 1000 * self.dist.rank + 7919 * self.epoch
            self.generator.manual_seed(seed)
            self.noise.manual_seed(seed + 1)


def train(config: RunConfig, callbacks: Callbacks | None = None) -> list[dict[str, Any]]:
    """Train a run in memory (no files written) and return its per-epoch metrics."""
    return Trainer(config).fit(callbacks=callbacks)
