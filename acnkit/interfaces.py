"""The base classes every built-in and third-party component implements (helpers for
writing them live elsewhere: :mod:`acnkit.heads`, :mod:`acnkit.index_searcher`).

Shapes: a batch of images is (B, *image_shape) of floats in [0, 1] (level l of L as
l / (L - 1): 0/1 for black and white); a code or latent is (B, d).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from . import progress
from .distributions import DiagGaussian, LatentDistribution, kl_diag_gaussians
from .exact import arrays as exact


class Encoder(nn.Module, ABC):
    """Maps images to the posterior q(z|x). The code c(x) of a datum is the posterior mean.

    ``posterior="unit"`` fixes the standard deviation to one (the ACN paper);
    ``"learned"`` predicts a log standard deviation per dimension (a classic VAE).
    """

    latent_dim: int

    @abstractmethod
    def forward(self, x: Tensor) -> DiagGaussian:
        """Return q(z|x) for a batch ``x`` of shape (B, *image_shape)."""


class Decoder(nn.Module, ABC):
    """Gives the likelihood parameters of images (C, H, W) given latents z (B, d): (B, P,
    H, W), P = ``loss.param_channels(C)`` (P = C for one parameter a subpixel, such as a
    Bernoulli logit; a built-in decoder takes ``param_channels``, which acnkit passes when
    the loss needs other than C); and samples images given z.

    Two kinds, told apart by ``autoregressive``:

    - ``False`` (the default): ``forward(z)``; pixels are independent given z.
    - ``True``: ``forward(z, x)`` teacher-forced: the parameters at each pixel depend on
      z and on the pixels of ``x`` *before* it in raster order (row, then column; all
      channels of a pixel together, their own order being the loss's coupling) only, so
      one call scores a whole image. Sampling and decoding then go pixel by pixel. Such a
      decoder has an ``image_shape`` attribute.

    The engine, evaluation, daydreaming and the codec call only :meth:`params`,
    :meth:`nll` and :meth:`sample`, so both kinds work everywhere.

    An autoregressive decoder may also offer **stepping** (:meth:`start`, :meth:`step`,
    :meth:`feed`: override all three and set ``stepping = True``): pixel by pixel,
    keeping per-layer state, so that a pixel costs what it changes rather than a whole
    forward pass. The codec then computes every probability it codes, on both sides, with
    these calls; the defaults below do a whole forward pass a pixel. The sender, who knows
    every pixel, asks :meth:`stepped` for all positions at once: a decoder may override it
    with fewer, larger calls that give the same bits.
    """

    autoregressive: ClassVar[bool] = False
    #: whether start/step/feed are the decoder's own (incremental) ones
    stepping: ClassVar[bool] = False
    #: (C, H, W) of the images: an autoregressive decoder must set it
    image_shape: tuple[int, ...]

    def start(self, z: Tensor) -> Any:
        """The state of decoding B images pixel by pixel given z (B, d): no pixel known
        yet."""
        return {"z": z, "x": torch.zeros((len(z), *self.image_shape), device=z.device)}

    def step(self, state: Any, position: int) -> Tensor:
        """The likelihood parameters (B, P) of pixel ``position`` (raster order) given the
        pixels fed so far."""
        out = self.params(state["z"], state["x"])
        return out.reshape(len(out), out.shape[1], -1)[:, :, position]

    def feed(self, state: Any, position: int, values: Tensor) -> None:
        """The pixel ``position``, now known: its channels (B, C), scaled to [0, 1]."""
        x = state["x"]
        x.view(len(x), x.shape[1], -1)[:, :, position] = values.reshape(len(x), -1)

    def stepped(self, state: Any, x: Tensor) -> Tensor:
        """What :meth:`step` gives at every position (B, P, H*W), from ``state`` as
        :meth:`start` made it, had the pixels of ``x`` (B, C, H, W, scaled to [0, 1]) been
        fed in turn: the sender's work, who knows every pixel. The receiver steps, so an
        override must give the same bits as stepping in the arithmetic it is called in
        (:func:`acnkit.testing.check_stepped`); this one steps."""
        flat = x.reshape(len(x), x.shape[1], -1)
        out = []
        for i in range(flat.shape[2]):
            out.append(self.step(state, i).reshape(len(x), -1))
            self.feed(state, i, flat[:, :, i])
        return torch.stack(out, 2)

    @abstractmethod
    def forward(self, z: Tensor, *x: Tensor) -> Tensor: ...

    def params(self, z: Tensor, x: Tensor | None = None) -> Tensor:
        """Likelihood parameters (B, P, H, W). ``x``: the images, which an autoregressive
        decoder needs (teacher forcing) and any other ignores."""
        if not self.autoregressive:
            return self(z)
        if x is None:
            raise ValueError("an autoregressive decoder needs the images x (teacher forcing)")
        return self(z, x)

    def nll(self, z: Tensor, x: Tensor, loss: Loss) -> Tensor:
        """-log p(x|z) in nats per datum (B,)."""
        return loss.nll(self.params(z, x), x)

    @torch.no_grad()
    def sample(self, z: Tensor, loss: Loss, generator: torch.Generator | None = None) -> Tensor:
        """Images x ~ p(x|z) (B, *image_shape), scaled to [0, 1]; an autoregressive
        decoder draws them one pixel at a time in raster order, batched over the images."""
        if not self.autoregressive:
            return loss.sample(self(z), generator)
        shape = tuple(self.image_shape)
        x = torch.zeros((len(z), *shape), device=z.device)
        flat = x.view(len(z), shape[0], -1)
        with progress.task("sample pixels", flat.shape[2], "pixels") as step:
            for i in range(flat.shape[2]):
                drawn = loss.sample(self(z, x), generator)
                flat[:, :, i] = drawn.reshape(len(z), shape[0], -1)[:, :, i]
                step()
        return x


class Prior(nn.Module, ABC):
    """p(z) or, when ``conditional`` is true, p(z | c~) given a neighbour's code c~ (B, d).

    ``kl`` is the coding cost of each datum in nats. A prior whose distribution is a diagonal
    Gaussian gets the closed form; any other uses the single-sample estimate
    log q(z|x) - log p(z|c~) at the sampled ``z``, which is unbiased.
    """

    conditional: ClassVar[bool] = False
    latent_dim: int

    @abstractmethod
    def distribution(self, context: Tensor | None, batch_size: int) -> LatentDistribution:
        """The prior for a batch; ``context`` is the neighbour codes or None if unconditional.
        Any object with ``log_prob`` and ``sample`` will do for training and evaluation
        (:class:`~acnkit.distributions.LatentDistribution`); ``acnkit compress`` codes a
        :class:`~acnkit.distributions.DiagGaussian` or a
        :class:`~acnkit.distributions.MixtureDiagGaussian`."""

    def kl(self, posterior: DiagGaussian, z: Tensor, context: Tensor | None) -> Tensor:
        prior = self.distribution(context, z.shape[0])
        if isinstance(prior, DiagGaussian):
            return kl_diag_gaussians(posterior, prior)
        return posterior.log_prob(z) - prior.log_prob(z)

    def log_prob(self, z: Tensor, context: Tensor | None) -> Tensor:
        return self.distribution(context, z.shape[0]).log_prob(z)

    @torch.no_grad()
    def sample(
        self, context: Tensor | None, n: int, generator: torch.Generator | None = None
    ) -> Tensor:
        return self.distribution(context, n).sample(generator)


class Loss(ABC):
    """The reconstruction likelihood p(x|z) given the decoder's parameters, over pixels of
    ``levels`` discrete levels.

    Images reach a loss (and every network) as floats in [0, 1]: level l of L as
    l / (L - 1) (:func:`scaled`), so a 0/1 image is unchanged. A loss needs
    :meth:`param_channels` parameters a pixel; the decoder's output is (B, P, H, W) for
    images (C, H, W) (the built-in decoders read P from the loss; for one parameter a
    subpixel P = C and the output has the images' shape).

    :meth:`probabilities` gives each subpixel's probabilities over the levels, what
    :func:`acnkit.testing.check_loss` checks ``nll``, ``mean``, ``sample`` and :meth:`cdf`
    against; the codec codes with :meth:`cdf` (by default the probabilities summed).
    ``binary = True`` declares a Bernoulli on 0/1 pixels whose ``mean`` is P(pixel = 1).
    """

    binary: ClassVar[bool] = False
    #: the levels of a subpixel: 0 .. levels - 1 (2 for black and white)
    levels: int = 2

    def param_channels(self, channels: int) -> int:
        """The decoder's output channels (parameters a pixel) for images of ``channels``
        channels: one a subpixel unless the loss says otherwise."""
        return channels

    @abstractmethod
    def nll(self, params: Tensor, x: Tensor) -> Tensor:
        """-log p(x|z) in nats per datum: shape (B,)."""

    @abstractmethod
    def mean(self, params: Tensor) -> Tensor:
        """The expected image in [0, 1] (B, *image_shape), for pictures such as daydream
        grids; for a binary likelihood, P(pixel = 1)."""

    def probabilities(self, params: Tensor, x: Tensor) -> Tensor:
        """P(subpixel = level) (B, C, H, W, levels), float64, each row summing to one.
        Channel c's probabilities may depend on ``x``'s channels before c at the same
        pixel (colour coupling: G given R, B given R and G) and on nothing else of ``x``:
        the codec decodes a pixel's channels in order. A binary likelihood's default
        is (1 - mean, mean)."""
        if not self.binary:
            raise NotImplementedError(f"{type(self).__name__} does not implement "
                                      f"probabilities()")
        p = self.mean(params).double().clamp(0, 1)
        return torch.stack([1 - p, p], -1)

    def cdf(self, params: Tensor, x: Tensor) -> Callable[[Tensor], Tensor]:
        """The CDF of every subpixel: a function that takes levels k (``edges``, integers
        in 0 .. levels, (B, C, H, W, m)) and gives P(subpixel < k) (B, C, H, W, m),
        float64, non-decreasing in k, 0 at k = 0 and 1 at k = levels; channel c's given
        the channels before it of ``x``, as :meth:`probabilities`. The codec codes a
        subpixel by a search over its levels and calls the function once a cut (8 times
        for 256 levels in halves), at the parts' inner edges; what does not depend on the
        edges is computed once, here. The default sums :meth:`probabilities`; a loss with a closed
        form overrides it (the logistic mixture's takes a sigmoid a component and edge,
        where the table takes one a level). Under the exact arithmetic the sums and the
        look-ups run in numpy (the same bits, without the mode's dispatch of each)."""
        top = self.levels
        if exact.active():
            device = params.device
            # (the bound method: an instance may carry its own probabilities)
            if self.binary and getattr(self.probabilities, "__func__", None) is Loss.probabilities:
                # the default probabilities (1 - p, p) in numpy, the same operations (clamp,
                # one subtraction): a binary decoder asks once a pixel, and the torch
                # calls cost more than the rest of the CDF
                p = np.clip(exact.as_numpy(self.mean(params)), 0.0, 1.0)
                probabilities = np.stack([1.0 - p, p], -1)
            else:
                probabilities = exact.as_numpy(self.probabilities(params, x))
            table = exact.cumsum(probabilities, -1)
            table = np.concatenate([np.zeros_like(table[..., :1]), table], -1)
            table = np.minimum(np.maximum(table, 0.0), 1.0)
            table[..., -1] = 1.0

            def exact_at(edges: Tensor) -> Tensor:
                e = np.minimum(np.maximum(edges.detach().cpu().numpy().astype(np.int64), 0), top)
                return torch.from_numpy(np.take_along_axis(table, e, -1)).to(device)

            return exact_at
        cumulative = torch.nn.functional.pad(torch.cumsum(self.probabilities(params, x), -1),
                                             (1, 0)).clamp(0, 1)
        cumulative[..., -1] = 1.0  # the rounding of the sum aside

        def at(edges: Tensor) -> Tensor:
            return cumulative.gather(-1, edges.long().clamp(0, top))

        return at

    def sample(self, params: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Images drawn from the likelihood (B, *image_shape), scaled to [0, 1]. The
        default draws each channel in turn from :meth:`probabilities` (a binary likelihood
        from ``mean``)."""
        if self.binary:
            return torch.bernoulli(self.mean(params), generator=generator)
        shape = self.mean(params).shape
        x = torch.zeros(shape, device=params.device)
        for c in range(shape[1]):
            probs = self.probabilities(params, x)[:, c]
            flat = probs.reshape(-1, probs.shape[-1]).float().cpu()
            drawn = torch.multinomial(flat, 1, generator=_cpu(generator)).reshape(probs.shape[:-1])
            x[:, c] = drawn.to(params.device).float() / (self.levels - 1)
        return x


def _cpu(generator: torch.Generator | None) -> torch.Generator | None:
    """multinomial on CPU numbers needs a CPU generator: one seeded from ``generator``."""
    if generator is None or generator.device.type == "cpu":
        return generator
    seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device))
    return torch.Generator().manual_seed(seed)


def scaled(x: Tensor, levels: int) -> Tensor:
    """Images of integer levels 0 .. levels - 1 as the floats in [0, 1] that networks and
    losses take (level / (levels - 1)); 0/1 images are unchanged."""
    return x.float() / (levels - 1)


def to_levels(x: Tensor, levels: int) -> Tensor:
    """The integer levels (long) of images scaled by :func:`scaled`."""
    return torch.round(x * (levels - 1)).clamp(0, levels - 1).long()


class NeighbourSearcher(ABC):
    """Answers batched K-nearest-neighbour queries (Euclidean) against the code store.

    The store is an (N, d) tensor that the engine owns and overwrites in place; ``reset``
    hands it over, ``update`` says which rows changed since. ``search`` never returns a row
    listed in ``exclude`` for that query (the engine passes each datum's own row) nor a row
    flagged in ``banned`` (uniqueness mode). If fewer than ``k`` rows are eligible the rest of
    the row is -1. Index-based searchers may answer from codes up to ``refresh`` batches old;
    ``exact`` says whether answers equal brute force on the current store; ``nearest = False``
    declares a searcher whose answers are not meant to be near at all (an ablation such as
    the ``random`` searcher): the contract then holds it to everything but recall, and
    benchmarks leave it out unless named.
    """

    exact: ClassVar[bool] = True
    nearest: ClassVar[bool] = True
    #: the store as ``reset`` handed it over (the built-ins keep it here; :attr:`store`)
    codes: Tensor | None = None

    @property
    def store(self) -> Tensor:
        """The store ``reset`` handed over: a ValueError before it has (the engine resets a
        searcher before any update or search)."""
        if self.codes is None:
            raise ValueError(f"{type(self).__name__}: reset(codes) must hand over the store "
                             f"before an update or a search")
        return self.codes

    @abstractmethod
    def reset(self, codes: Tensor) -> None:
        """Take (a view of) the whole store; called at start and after loading a checkpoint."""

    @abstractmethod
    def update(self, rows: Tensor) -> None:
        """Rows ``rows`` (LongTensor) of the store were overwritten."""

    @abstractmethod
    def search(
        self,
        queries: Tensor,
        k: int,
        exclude: Tensor | None = None,
        banned: Tensor | None = None,
    ) -> Tensor:
        """Indices (B, k) of the nearest eligible rows, nearest first.

        ``exclude``: LongTensor (B,) or (B, E), rows never returned for that query (-1 pads).
        ``banned``: BoolTensor (N,), rows never returned for any query.
        """

    def settings(self) -> dict:
        """The settings that shape its answers (shown by benchmarks and ``acnkit plugins``)."""
        return {}


@dataclass
class Dataset:
    """Images and labels. Images are uint8 levels 0 .. ``levels`` - 1 (0/1 when binarised,
    the default), shape (N, *image_shape)."""

    name: str
    train_x: Tensor
    train_y: Tensor
    test_x: Tensor
    test_y: Tensor
    image_shape: tuple[int, ...]
    info: dict = field(default_factory=dict)
    #: P(pixel = 1) of every image of a split ("train" or "test"), (N, *image_shape), when
    #: the images were sampled from grey levels: the floor ``acnkit bench codec`` prints
    #: (no codec beats the pixels' binary entropy on average). None when not so made.
    intensity: Callable[[str], np.ndarray] | None = None
    #: the levels of a subpixel: 2 for binarised images, 256 for 8-bit ones
    levels: int = 2
    #: training images drawn afresh for epoch e (1, 2, ...): (N, *image_shape) uint8, the
    #: same N and the same images for the same e (random patches of photos); None when the
    #: training images are fixed
    resample: Callable[[int], Tensor] | None = None

    @property
    def dims(self) -> int:
        n = 1
        for s in self.image_shape:
            n *= s
        return n
