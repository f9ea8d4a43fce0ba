"""Every registered plugin of every kind passes its conformance kit (acnkit.testing), and
each kit fails a component that breaks its contract."""

import struct

import numpy as np
import pytest
import torch
from acnkit_plugins.categorical import CategoricalLoss
from torch import nn

from acnkit.distributions import DiagGaussian, MixtureDiagGaussian
from acnkit.errors import UsageError
from acnkit.interfaces import Dataset, Decoder, Loss, Prior
from acnkit.registry import get_registry
from acnkit.testing import check_dataset, check_decoder, check_encoder, check_loss, check_prior

REG = get_registry()


def idx(array):
    head = struct.pack(">BBBB", 0, 0, 0x08, array.ndim)
    return head + b"".join(struct.pack(">I", s) for s in array.shape) + array.tobytes()


@pytest.fixture(scope="module")
def idx_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("idx")
    rng = np.random.default_rng(0)
    for split, n in (("train", 30), ("t10k", 10)):
        (d / f"{split}-images-idx3-ubyte").write_bytes(
            idx(rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)))
        (d / f"{split}-labels-idx1-ubyte").write_bytes(
            idx(rng.integers(0, 10, n, dtype=np.uint8)))
    return d


@pytest.mark.parametrize("name", REG.names("encoder"))
def test_encoders(name):
    check_encoder(lambda *a, **k: REG.create("encoder", name, *a, **k))


@pytest.mark.parametrize("name", REG.names("decoder"))
@pytest.mark.parametrize("loss, shape", [("bernoulli", (1, 8, 8)), ("logistic", (1, 8, 8)),
                                         ("logistic", (3, 8, 8)), ("categorical", (3, 4, 4))])
def test_decoders(name, loss, shape):
    """Every decoder with every kind of likelihood, grey and colour: its output follows the
    loss's parameters a pixel."""
    levels = 2 if loss == "bernoulli" else 17
    check_decoder(lambda *a, **k: REG.create("decoder", name, *a, **k), shape,
                  loss=REG.create("loss", loss, levels=levels, channels=shape[0], given=set()))


@pytest.mark.parametrize("name, options", [(n, {}) for n in REG.names("prior")]
                         + [("acn", {"mixtures": 3})])
def test_priors(name, options):
    check_prior(lambda d: REG.create("prior", name, d, **options))


@pytest.mark.parametrize("name", REG.names("loss"))
@pytest.mark.parametrize("shape, levels", [((1, 8, 8), None), ((3, 4, 4), None),
                                           ((1, 4, 4), 17)])
def test_losses(name, shape, levels):
    if name == "bernoulli" and levels:
        pytest.skip("a Bernoulli has two levels")
    check_loss(lambda **k: REG.create("loss", name, **k, given=set()), shape, levels=levels)


def test_a_loss_asking_for_the_wrong_parameter_channels_is_named():
    """A loss whose param_channels disagrees with what its nll reads fails in check_loss
    with the mismatch named, not a tensor-size error from deep inside torch."""
    class OneShort(CategoricalLoss):
        def param_channels(self, channels):
            return super().param_channels(channels) - 1

    with pytest.raises(AssertionError, match=r"the \d+ channels its param_channels\(1\) "
                                             r"asks the decoder for: does param_channels match"):
        check_loss(lambda **k: OneShort(levels=4), (1, 4, 4))


@pytest.mark.parametrize("name", REG.names("dataset"))
@pytest.mark.parametrize("pixels", ["binary", "native"])
def test_datasets(name, pixels, idx_dir, tmp_path):
    data_dir = {"digits": None, "sample-patches": None, "cifar10": _cifar_dir(tmp_path),
                "images": _image_dir(tmp_path)}.get(name, idx_dir)
    colour = name in ("cifar10", "sample-patches")
    if colour and pixels == "binary":  # colour cannot be binarised: one line says so
        with pytest.raises(UsageError, match="--pixels native"):
            REG.create("dataset", name, data_dir=data_dir, pixels=pixels)
        return
    check_dataset(lambda **k: REG.create("dataset", name, **k), data_dir=data_dir,
                  pixels=pixels)


def _cifar_dir(tmp_path):
    d = tmp_path / "cifar"
    d.mkdir()
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
        rec = rng.integers(0, 256, (4, 3073), dtype=np.uint8)
        rec[:, 0] %= 10
        (d / name).write_bytes(rec.tobytes())
    return d


def _image_dir(tmp_path):
    from PIL import Image

    d = tmp_path / "images"
    d.mkdir()
    rng = np.random.default_rng(0)
    for i in range(12):
        Image.fromarray(rng.integers(0, 256, (5, 4), dtype=np.uint8)).save(d / f"{i}.png")
    return d


# -- each kit catches a breach --------------------------------------------------------------

class HalfKLPrior(Prior):
    """A Gaussian prior whose kl is off by a factor: training would optimise the wrong sum."""

    def __init__(self, latent_dim):
        super().__init__()
        self.latent_dim = latent_dim
        self.shift = nn.Parameter(torch.full((latent_dim,), 0.3))

    def distribution(self, context, batch_size):
        mean = self.shift.expand(batch_size, -1)
        return DiagGaussian(mean, torch.zeros_like(mean))

    def kl(self, posterior, z, context):
        return 0.5 * super().kl(posterior, z, context)


class SampledKLPrior(HalfKLPrior):
    """A mixture prior (the single-sample KL path) whose kl is off by a constant."""

    def distribution(self, context, batch_size):
        means = torch.stack([self.shift, -self.shift], -1).expand(batch_size, -1, -1)
        return MixtureDiagGaussian(torch.zeros_like(means), means, torch.zeros_like(means))

    def kl(self, posterior, z, context):
        return posterior.log_prob(z) - self.distribution(context, len(z)).log_prob(z) + 1.0


class BatchNormalisedPrior(HalfKLPrior):
    """A conditional prior that centres its contexts over the batch: fine in training, but
    the codec, coding one image at a time, would see another distribution."""

    conditional = True

    def distribution(self, context, batch_size):
        mean = context - context.mean(0, keepdim=True) + self.shift
        return DiagGaussian(mean, torch.zeros_like(mean))

    def kl(self, posterior, z, context):
        return Prior.kl(self, posterior, z, context)


class BatchMixingDecoder(Decoder):
    def __init__(self, image_shape, latent_dim):
        super().__init__()
        self.shape, self.lin = image_shape, nn.Linear(latent_dim, int(np.prod(image_shape)))

    def forward(self, z):
        return (self.lin(z) + z.mean()).view(len(z), *self.shape)


class PeekingDecoder(Decoder):
    """Autoregressive in name, but each position reads its own pixel."""

    autoregressive = True

    def __init__(self, image_shape, latent_dim):
        super().__init__()
        self.image_shape, self.lin = image_shape, nn.Linear(latent_dim, int(np.prod(image_shape)))

    def forward(self, z, x):
        return self.lin(z).view(len(z), *self.image_shape) + x


class MiscountingDecoder(PeekingDecoder):
    """Causal (reads nothing of x), but its nll is not the likelihood of its parameters."""

    def forward(self, z, x):
        return self.lin(z).view(len(z), *self.image_shape)

    def nll(self, z, x, loss):
        return 0.5 * super().nll(z, x, loss)


class WrongBernoulli(Loss):
    binary = True

    def nll(self, params, x):
        return nn.functional.binary_cross_entropy_with_logits(
            params, x, reduction="none").flatten(1).sum(1) * 1.01

    def mean(self, params):
        return torch.sigmoid(params)


class UnnormalisedCategorical(CategoricalLoss):
    def probabilities(self, params, x):
        return super().probabilities(params, x) * 1.01


class PeekingCategorical(CategoricalLoss):
    """Its probabilities (and so its nll) read the subpixel they are for."""

    def probabilities(self, params, x):
        return super().probabilities(params + x.repeat_interleave(self.levels, 1), x)

    def nll(self, params, x):
        observed = self.probabilities(params, x).gather(
            -1, torch.round(x * (self.levels - 1)).long()[..., None])
        return -observed.log().flatten(1).sum(1).float()


class BatchNormalisedLoss(CategoricalLoss):
    def nll(self, params, x):
        return super().nll(params - params.mean(0), x)

    def probabilities(self, params, x):
        return super().probabilities(params - params.mean(0), x)


def grey_digits(data_dir=None, seed=0):
    x = torch.randint(0, 256, (20, 1, 8, 8), dtype=torch.uint8)
    return Dataset("grey", x, torch.zeros(20, dtype=torch.long), x[:5],
                   torch.zeros(5, dtype=torch.long), (1, 8, 8))


@pytest.mark.parametrize("check, factory, words", [
    (check_prior, HalfKLPrior, "differs from torch.distributions"),
    (check_prior, SampledKLPrior, "disagrees with a Monte Carlo estimate"),
    (check_prior, BatchNormalisedPrior, "prior's log_prob of one datum changes with the rest"),
    (check_decoder, BatchMixingDecoder, "changes with the rest of its batch"),
    (check_decoder, PeekingDecoder, "not causal"),
    (check_decoder, MiscountingDecoder, "teacher-forced log-likelihood"),
    (check_loss, WrongBernoulli, "is not minus the log-probability"),
    (check_loss, UnnormalisedCategorical, "do not sum to one"),
    (check_loss, PeekingCategorical, "change with channel 0 or later"),
    (check_loss, BatchNormalisedLoss, "loss's nll of one datum changes with the rest"),
    (check_dataset, grey_digits, "values other than its 2 levels 0/1"),
])
def test_kits_catch_breaches(check, factory, words):
    with pytest.raises(AssertionError, match=words):
        check(factory)
