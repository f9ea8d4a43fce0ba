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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from .config import RunConfig, check_device_name
from .distributed import DistContext
from .errors import NumericalError, PluginError, UsageError
from .interfaces import Dataset
from .memory import AssociativeMemory
from .model import CompressionModel
from .registry import Registry, get_registry, out_of_memory


def resolve_device(name: str, dist: DistContext | None = None) -> torch.device:
    check_device_name(name)
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError("--device cuda was asked for but no CUDA GPU is available; "
                         "use --device cpu")
    if name == "cuda" and dist is not None and dist.enabled:
        return torch.device("cuda", dist.local_rank)  # one GPU per process
    return torch.device(name)


#: an epoch whose code length exceeds this multiple of the best epoch's has diverged
DIVERGENCE = 1.5


@dataclass
class Callbacks:
    """Hooks for progress displays; every one is optional."""

    on_batch: Callable[[int, int, int], None] | None = None  # epoch, batch, batches
    on_epoch: Callable[[dict], None] | None = None


_DEFAULTS = RunConfig()


def _given(config: RunConfig, **fields: str) -> set[str]:
    """The factory options (keys) whose config fields (values) the user set away from their
    defaults: only those may be refused when a plugin does not take them."""
    return {option for option, name in fields.items()
            if getattr(config, name) != getattr(_DEFAULTS, name)}


@contextmanager
def _fits_in_memory(device: torch.device) -> Iterator[None]:
    """Nets too large for the device are a usage error, not an allocator's traceback."""
    try:
        yield
    except (MemoryError, RuntimeError) as exc:
        if not out_of_memory(exc):
            raise
        first = (str(exc).strip().splitlines() or ["out of memory"])[0][:120]
        raise UsageError(f"the nets do not fit in the memory of {device} ({first}); choose "
                         f"smaller --encoder-hidden, --decoder-hidden, --prior-hidden or "
                         f"--latent-dim") from None


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
        data = dataset or reg.create("dataset", c.data, data_dir=c.data_dir, seed=c.data_seed,
                                     given=_given(c, data_dir="data_dir", seed="data_seed"))
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
        with _fits_in_memory(self.device):
            self.encoder = reg.create(
                "encoder", c.encoder, data.image_shape, c.latent_dim, posterior=c.posterior,
                hidden=c.encoder_hidden, **stages,
                given=_given(c, posterior="posterior", hidden="encoder_hidden",
                             channels="channels")).to(self.device)
            # decoder_options (a config table, or --decoder-option) come last and win
            self.decoder = reg.create(
                "decoder", c.decoder, data.image_shape, c.latent_dim,
                **{"hidden": c.decoder_hidden, **stages, **c.decoder_options},
                given=_given(c, hidden="decoder_hidden", channels="channels")
                | set(c.decoder_options)).to(self.device)
            self.prior = reg.create(
                "prior", c.prior, c.latent_dim, hidden=c.prior_hidden, layers=c.prior_layers,
                mixtures=c.mixtures,
                given=_given(c, hidden="prior_hidden", layers="prior_layers",
                             mixtures="mixtures")).to(self.device)
        self.loss = reg.create("loss", c.loss)
        self.modules = {"encoder": self.encoder, "decoder": self.decoder, "prior": self.prior}
        self.model = CompressionModel(self.encoder, self.decoder, self.prior, self.loss)
        # The two halves of a step, wrapped apart because the memory acts between them.
        self.encode_net: torch.nn.Module = self.model.encoder
        self.cost_net: torch.nn.Module = self.model.cost
        if self.dist.enabled:
            if c.unique:
                raise UsageError("--unique is not supported with several processes yet; "
                                 "drop it or train in one process")
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.encode_net = DistributedDataParallel(self.model.encoder, device_ids=ids)
            self.cost_net = DistributedDataParallel(self.model.cost, device_ids=ids)
        self.parameters = list(self.model.parameters())
        self.optimizer = torch.optim.Adam(self.parameters, lr=c.lr)

        # Three generators, saved in checkpoints so that a resumed run replays the same
        # numbers: the data order (its own, so VAE and ACN runs of one seed see the same
        # order), the neighbour picks and the sampling noise of z.
        self.order = torch.Generator().manual_seed(c.seed)
        rank_seed = 1000 * self.dist.rank  # ranks draw different noise and neighbours
        self.picks = torch.Generator().manual_seed(c.seed + 2 + rank_seed)
        self.noise = torch.Generator(device=self.device).manual_seed(c.seed + 1 + rank_seed)

        self.conditional = bool(self.prior.conditional)
        self.memory: AssociativeMemory | None = None
        if self.conditional:
            if c.k >= n:
                raise UsageError(f"--k {c.k} must be smaller than the {n} training codes")
            plugin = reg.get("searcher", c.search).plugin
            self.memory = AssociativeMemory(
                n, c.latent_dim, reg.create("searcher", c.search, **c.searcher_options()),
                c.k, unique=c.unique, seed=c.seed + 3, picks=self.picks,
                device=self.device, dist=self.dist,
                name=f"searcher {c.search!r} (plugin {plugin!r})")
        self.epoch = 0
        self.history: list[dict[str, Any]] = []
        self.changes: list[dict[str, Any]] = []  # what each resume changed (config.json)
        self.stop_requested = False
        self.check_plugins()

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
        """One pass over the training data, then the held-out figures; returns the epoch's
        metrics (None if a stop was requested mid-epoch)."""
        from .evaluate import held_out_figures

        start = time.perf_counter()
        sums = self.train_pass(callbacks)
        if sums is None:
            return None
        self.epoch += 1
        seconds = time.perf_counter() - start
        n = len(self.train_x)
        recon, kl = sums[0] / n, sums[1] / n
        metrics: dict[str, Any] = {
            "epoch": self.epoch,
            "train_nats": recon + kl,
            "train_recon": recon,
            "train_kl": kl,
            **held_out_figures(self),
            "eval_split": self.eval_split,
            "epoch_seconds": seconds,
            "search_seconds": self.memory.search_seconds if self.memory else 0.0,
        }
        if self.config.unique and self.memory:
            metrics["unique_fallbacks"] = self.memory.unique_fallbacks
        self._check_divergence(metrics)
        self.history.append(metrics)
        return metrics

    def train_pass(self, callbacks: Callbacks | None = None) -> tuple[float, float] | None:
        """Train on every datum once in a seeded random order; returns the sums of the
        reconstruction and KL nats (None if a stop was requested mid-epoch)."""
        c, n = self.config, len(self.train_x)
        on_batch = callbacks.on_batch if callbacks else None
        self.model.train()
        if self.memory:
            self.memory.start_epoch()
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
        returns per-datum reconstruction and KL nats."""
        x = self.train_x[idx].float()
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

    @torch.no_grad()
    def check_plugins(self) -> None:
        """Plugins' outputs have the shapes the engine relies on: checked once, on two
        training images, before the first step, with random numbers of its own."""
        c = self.config
        x = self.train_x[:2].float()
        b = len(x)
        gen = torch.Generator(device=self.device).manual_seed(0)
        z = torch.randn((b, c.latent_dim), generator=gen, device=self.device)
        context = self.memory.store[:b] if self.memory else None
        stages = [
            ("encoder", c.encoder, lambda: self.encoder(x),
             lambda q: [("mean", q.mean, (b, c.latent_dim)), ("log_std", q.log_std, (b, c.latent_dim))]),
            ("decoder", c.decoder, lambda: self.decoder.params(z, x),
             lambda p: [("output", p, tuple(x.shape))]),
            ("loss", c.loss, lambda: self.decoder.nll(z, x, self.loss), lambda r: [("nll", r, (b,))]),
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

    def _check_finite(self, loss: Tensor, batch: int) -> None:
        # One fused norm over every gradient: a NaN or inf anywhere makes it non-finite.
        grad_norm = torch.nn.utils.clip_grad_norm_(self.parameters, float("inf"))
        if torch.isfinite(loss) and torch.isfinite(grad_norm):
            return
        self._raise_numerical("loss" if not torch.isfinite(loss) else "gradients", batch)

    def _check_divergence(self, metrics: dict[str, Any]) -> None:
        """Stop when a code length jumps far above its best epoch: finite numbers can still
        mean a run has blown up (a too-wide prior net can take the held-out KL from 9 to
        145 nats in one epoch), and every later epoch would be wasted."""
        for key, what in (("test_nats", "held-out code length"),
                          ("train_nats", "training objective")):
            best = min((m[key] for m in self.history), default=None)
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
            "modules": {k: m.state_dict() for k, m in self.modules.items()},
            "optimizer": self.optimizer.state_dict(),
            "order": self.order.get_state(),
            "generator": self.picks.get_state(),
            "noise": self.noise.get_state(),
        }
        if self.memory:
            state["store"] = self.memory.store
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for k, m in self.modules.items():
            m.load_state_dict(state["modules"][k])
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
    """Train a run in memory (no files written) and return its per-epoch metrics."""
    return Trainer(config).fit(callbacks=callbacks)
