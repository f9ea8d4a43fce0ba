"""A model: the networks of a run, its likelihood, its config and its device.

:class:`Model` is what everything after training takes (evaluation, the codec, daydreams,
samples, benchmarks, command plugins through :func:`acnkit.load_run`); the
:class:`~acnkit.engine.Trainer` trains one. :func:`build_model` makes the networks of a
config through the registry.

The networks are split at the one point where the associative memory steps in: ``encoder``
(x -> q(z|x)), then the memory turns the codes into prior contexts, then ``cost``
(:class:`CostModel`: sample z, reconstruction and KL nats). Each half is its own module so
that DistributedDataParallel can wrap both.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn

from .config import RunConfig
from .distributions import DiagGaussian, LatentDistribution
from .errors import PluginError, UsageError, out_of_memory
from .interfaces import Decoder, Encoder, Loss, Prior, scaled
from .registry import Registry, get_registry


class CostModel(nn.Module):
    """Decoder, prior and likelihood: each datum's cost in nats given its posterior."""

    def __init__(self, decoder: Decoder, prior: Prior, loss: Loss) -> None:
        super().__init__()
        self.decoder, self.prior, self.loss = decoder, prior, loss

    def forward(self, x: Tensor, mean: Tensor, log_std: Tensor, context: Tensor | None,
                noise: torch.Generator | None = None,
                eps: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Reconstruction -log p(x|z) and KL(q(z|x) || p(z|context)) nats per datum, both at
        the same reparameterised sample z ~ q(z|x) = N(mean, exp(log_std)^2): drawn with
        ``noise``, or z = mean + std * ``eps`` for standard normal numbers drawn already."""
        posterior = DiagGaussian(mean, log_std)
        z = posterior.rsample(noise) if eps is None else mean + torch.exp(log_std) * eps
        recon = self.decoder.nll(z, x, self.loss)  # teacher-forced if autoregressive
        kl = self.prior.kl(posterior, z, context)
        return recon, kl


class Networks(nn.Module):
    """Encoder and cost model as one module (parameters, train/eval mode)."""

    def __init__(self, encoder: Encoder, decoder: Decoder, prior: Prior, loss: Loss) -> None:
        super().__init__()
        self.encoder = encoder
        self.cost = CostModel(decoder, prior, loss)


class Model:
    """The trained (or training) model of a run.

    ``encoder``, ``decoder``, ``prior`` and ``loss`` are the plugins' components;
    ``nets`` holds them as one module. :meth:`encode` gives q(z|x) (the codes are its
    means), :meth:`prior_distribution` the prior given a context (None for a VAE)."""

    #: the names under which checkpoints keep each network's state
    PARTS = ("encoder", "decoder", "prior")

    def __init__(self, config: RunConfig, nets: Networks, image_shape: tuple[int, ...],
                 device: torch.device, registry: Registry | None = None) -> None:
        self.config, self.nets = config, nets
        self.image_shape, self.device = tuple(image_shape), device
        self.registry = registry or get_registry()

    @property
    def encoder(self) -> Encoder:
        return self.nets.encoder

    @property
    def decoder(self) -> Decoder:
        return self.nets.cost.decoder

    @property
    def prior(self) -> Prior:
        return self.nets.cost.prior

    @property
    def loss(self) -> Loss:
        return self.nets.cost.loss

    @property
    def conditional(self) -> bool:
        """Whether the prior is conditioned on a neighbour's code (ACN) or not (VAE)."""
        return bool(self.prior.conditional)

    @property
    def latent_dim(self) -> int:
        return self.config.latent_dim

    @property
    def levels(self) -> int:
        """The levels of a subpixel the likelihood models (2: black and white)."""
        return int(self.loss.levels)

    def inputs(self, x: Tensor) -> Tensor:
        """Images of integer levels as the networks and the loss take them: floats in
        [0, 1] (0/1 images unchanged)."""
        return scaled(x, self.levels)

    def modules(self) -> dict[str, nn.Module]:
        return {name: getattr(self, name) for name in self.PARTS}

    def state_dict(self) -> dict[str, Any]:
        return {name: m.state_dict() for name, m in self.modules().items()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name, m in self.modules().items():
            m.load_state_dict(state[name])

    def eval(self) -> Model:
        self.nets.eval()
        return self

    @torch.no_grad()
    def encode(self, x: Tensor, batch_size: int = 1024) -> DiagGaussian:
        """q(z|x) of images ``x``, in eval mode; the codes are its means."""
        self.nets.eval()
        parts = [self.encoder(self.inputs(x[i: i + batch_size]))
                 for i in range(0, len(x), batch_size)]
        return DiagGaussian(torch.cat([p.mean for p in parts]),
                            torch.cat([p.log_std for p in parts]))

    @torch.no_grad()
    def prior_distribution(self, context: Tensor | None, n: int = 1) -> LatentDistribution:
        """p(z | context) for ``n`` data; the context is ignored by an unconditional prior."""
        return self.prior.distribution(context if self.conditional else None, n)

    def fingerprint(self) -> str:
        """SHA-256 of the model's structure and weights: a compressed file decodes only with
        its model (the device and the epochs asked for are not part of it)."""
        structure = self.config.structure()
        h = hashlib.sha256(json.dumps(structure, sort_keys=True).encode())
        for name, module in self.modules().items():
            for key, tensor in sorted(module.state_dict().items()):
                h.update(f"{name}.{key}".encode())
                h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()

    def plugin(self, kind: str) -> str:
        """``kind 'name' (plugin 'p')``: how errors name the component of ``kind``."""
        name = getattr(self.config, kind)
        return f"{kind} {name!r} (plugin {self.registry.get(kind, name).plugin!r})"


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


def build_loss(config: RunConfig, image_shape: tuple[int, ...], levels: int,
               registry: Registry) -> Loss:
    """The run's likelihood for images of ``image_shape`` with ``levels`` levels: one that
    models another number of levels is refused before any training."""
    channels = image_shape[0] if len(image_shape) == 3 else 1
    assert config.loss is not None, "RunConfig.validate() names the loss"
    loss = registry.create("loss", config.loss, levels=levels, channels=channels, given=set())
    if not isinstance(loss, Loss):
        raise PluginError(f"loss {config.loss!r} gave a {type(loss).__name__}, not an "
                          f"acnkit.interfaces.Loss")
    if int(loss.levels) != levels:
        takes = "0/1" if loss.levels == 2 else f"{loss.levels} levels"
        hint = (" (binarise them: --pixels binary)" if loss.levels == 2 else
                " (choose a loss for them, such as --loss logistic or --loss categorical)")
        raise UsageError(f"the data hold {levels} levels; the loss {config.loss} takes "
                         f"{takes}{hint}")
    return loss


def build_model(config: RunConfig, image_shape: tuple[int, ...], device: torch.device,
                registry: Registry | None = None, levels: int = 2) -> Model:
    """The networks of ``config`` for images of ``image_shape`` with ``levels`` levels,
    initialised from its seed. Only the options the user set reach a factory that does not
    take them (and are then refused by name); the decoder is given ``param_channels`` when
    the loss needs other than one parameter a subpixel."""
    c, reg = config, registry or get_registry()
    loss = build_loss(c, image_shape, levels, reg)
    torch.manual_seed(c.seed)  # parameter initialisation
    # Sizes reach a factory only when set (a plugin's own defaults stand otherwise), and a
    # set one that the factory does not take is refused by name.
    enc, enc_given = c.net_options(hidden="encoder_hidden", channels="channels")
    dec, dec_given = c.net_options(hidden="decoder_hidden", channels="channels")
    # decoder_options (a config table, or --decoder-option) come last and win
    dec.update(c.decoder_options)
    channels = image_shape[0] if len(image_shape) == 3 else 1
    if loss.param_channels(channels) != channels:
        dec["param_channels"] = loss.param_channels(channels)
        dec_given = dec_given | {"param_channels"}
    pri, pri_given = c.net_options(hidden="prior_hidden", layers="prior_layers",
                                   mixtures="mixtures")
    with _fits_in_memory(device):
        encoder = reg.create("encoder", c.encoder, image_shape, c.latent_dim,
                             posterior=c.posterior, **enc,
                             given=c.given(posterior="posterior") | enc_given)
        decoder = reg.create("decoder", c.decoder, image_shape, c.latent_dim, **dec,
                             given=dec_given | set(c.decoder_options))
        prior = reg.create("prior", c.prior, c.latent_dim, **pri, given=pri_given)
        nets = Networks(encoder.to(device), decoder.to(device), prior.to(device), loss)
    return Model(c, nets, image_shape, device, reg)


def param_shape(loss: Loss, shape: tuple[int, ...]) -> tuple[int, ...]:
    """The decoder's output shape for a batch of images of ``shape`` (B, C, H, W)."""
    if len(shape) != 4:
        return shape
    return (shape[0], loss.param_channels(shape[1]), *shape[2:])


@torch.no_grad()
def check_outputs(model: Model, x: Tensor, context: Tensor | None) -> None:
    """The plugins' outputs have the shapes the engine relies on: checked once, on a few
    images, before the first step, with random numbers of their own."""
    b, d = len(x), model.latent_dim
    gen = torch.Generator(device=model.device).manual_seed(0)
    z = torch.randn((b, d), generator=gen, device=model.device)
    Expected = Callable[[Any], list[tuple[str, Any, tuple[int, ...]]]]
    stages: list[tuple[str, Callable[[], Any], Expected]] = [
        ("encoder", lambda: model.encoder(x),
         lambda q: [("mean", q.mean, (b, d)), ("log_std", q.log_std, (b, d))]),
        ("decoder", lambda: model.decoder.params(z, x),
         lambda p: [("output", p, param_shape(model.loss, tuple(x.shape)))]),
        ("loss", lambda: model.decoder.nll(z, x, model.loss), lambda r: [("nll", r, (b,))]),
        ("prior", lambda: model.prior.kl(model.encoder(x), z, context),
         lambda k: [("kl", k, (b,))]),
    ]
    for kind, run, expected in stages:
        try:
            items = expected(run())
        except Exception as exc:  # noqa: BLE001 - any failure is the plugin's, named as such
            raise PluginError(f"{model.plugin(kind)} failed on a batch of {b}: "
                              f"{type(exc).__name__}: {exc}".splitlines()[0]) from exc
        for what, value, shape in items:
            got = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
            if got != shape:
                raise PluginError(f"{model.plugin(kind)} gave {what} of shape {got}, "
                                  f"expected {shape}")
