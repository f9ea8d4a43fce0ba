"""``compress`` and ``decompress``: arrays of binary images in, bytes out, and back.

ACN images are coded along the greedy chain of :mod:`acnkit.memory`: the sender pushes them
in reverse chain order, so the receiver decodes the chain forward and re-encodes each
decoded image to get the next image's prior context. The same acnkit and torch versions on
the same kind of CPU are needed to decode a file; the header records both, and the decoded
images must match a checksum of the input or nothing is returned.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .. import progress
from ..distributions import DiagGaussian, MixtureDiagGaussian
from ..errors import CodecError, UsageError
from ..evaluate import costs, modes
from ..memory import chain_context, greedy_chain
from ..model import Model
from ..testing import check_causal
from ..version import __version__
from .coder import Codecs, Grid, choose_grid, new_stack, one_thread
from .fileformat import DTYPES, FORMAT_VERSION, covered, pack, read_header, safe_name
from .image import ImageCoder, NetCalls, gaussian_params
from .order import (
    MODES,
    digest,
    log_distinct_orderings,
    permutation_codec,
    pop_as_set,
    push_as_set,
)

#: seed of the initial ANS words (any fixed words work; these decode to typical latents)
SEED_WORDS_SEED = 20190319


def check_codable(model: Model) -> None:
    """The model can be coded: a binary likelihood, and a prior whose distribution is a
    diagonal Gaussian or a per-dimension Gaussian mixture."""
    c = model.config
    if not getattr(model.loss, "binary", False):
        raise CodecError(f"loss {c.loss!r} is not a binary (Bernoulli) likelihood, which is "
                         f"the only kind acnkit compress codes")
    context = torch.zeros(1, c.latent_dim, device=model.device) if model.conditional else None
    dist = model.prior_distribution(context, 1)
    if not isinstance(dist, DiagGaussian | MixtureDiagGaussian):
        raise CodecError(f"prior {c.prior!r} gives a {type(dist).__name__}; acnkit compress "
                         f"codes priors whose distribution is a DiagGaussian or a "
                         f"MixtureDiagGaussian (see docs/writing-a-plugin.md)")


@torch.no_grad()
def check_causal_decoder(model: Model, images: np.ndarray) -> None:
    """An autoregressive decoder that reads a pixel at or after the one it predicts would
    write a file no receiver can decode: probed on the first image before any coding."""
    if not model.decoder.autoregressive or len(images) == 0:
        return
    x = torch.from_numpy(images[:1]).float().to(model.device)
    z = model.encode(x).mean
    try:
        check_causal(model.decoder, z, x)
    except AssertionError as exc:
        raise CodecError(f"{model.plugin('decoder')} cannot be coded: {exc}; a receiver "
                         f"could not decode the file (test the plugin with "
                         f"acnkit.testing.check_decoder)") from None


def accepted_shapes(image_shape: tuple[int, ...]) -> list[tuple[int, ...]]:
    """The shapes of one image an input array may have: the model's (C, H, W), (H, W) for
    one channel, or flat (C*H*W,)."""
    shapes = [tuple(image_shape), (math.prod(image_shape),)]
    if len(image_shape) == 3 and image_shape[0] == 1:
        shapes.insert(1, tuple(image_shape[1:]))
    return shapes


def as_images(array: np.ndarray, image_shape: tuple[int, ...], what: str) -> np.ndarray:
    """Binary images (N, *image_shape) as uint8, from an array of bools or 0/1 integers of
    shape (N, C, H, W), (N, H, W) (one channel) or (N, C*H*W)."""
    if not isinstance(array, np.ndarray) or array.dtype == object:
        raise UsageError(f"{what} is not a numeric array; give 0/1 images as a .npy array")
    if array.dtype != bool and not np.issubdtype(array.dtype, np.integer):
        raise UsageError(f"{what} has {array.dtype} values; give 0/1 images as bool or "
                         f"integers (binarise them first)")
    shapes = accepted_shapes(image_shape)
    if array.ndim < 2 or len(array) == 0 or tuple(array.shape[1:]) not in shapes:
        given = " or ".join("(N, " + ", ".join(map(str, s)) + ")" for s in shapes)
        raise UsageError(f"{what} has shape {array.shape}; the model codes images given as "
                         f"{given}")
    if array.dtype != bool and ((array != 0) & (array != 1)).any():
        raise UsageError(f"{what} holds values other than 0 and 1; binarise the images first")
    return np.ascontiguousarray(array.reshape(len(array), *image_shape).astype(np.uint8))


def seed_words(count: int) -> np.ndarray:
    rng = np.random.default_rng(SEED_WORDS_SEED)
    return rng.integers(1, 2**32, size=count, dtype=np.uint64).astype(np.uint32)


@dataclass
class Compressed:
    data: bytes
    header: dict[str, Any]
    model_nats_per_image: float

    @property
    def bits_per_image(self) -> float:
        return 8 * len(self.data) / self.header["count"]

    @property
    def model_bits_per_image(self) -> float:
        return self.model_nats_per_image / math.log(2)

    @property
    def overhead_percent(self) -> float:
        """How much larger the file is than the model's figure, header and initial words in."""
        return 100 * (self.bits_per_image / self.model_bits_per_image - 1)


@dataclass
class _Plan:
    """What the sender knows before pushing: posteriors, codes, chain order, priors."""

    means: np.ndarray
    stds: np.ndarray
    order: np.ndarray
    priors: list[Any]


def _plan(nets: NetCalls, images: np.ndarray) -> _Plan:
    with progress.task("encode", len(images), "images") as step:
        post = []
        for img in images:
            post.append(nets.posterior(img))
            step()
    means = np.stack([p[0] for p in post])
    stds = np.stack([p[1] for p in post])
    codes = torch.cat([p[2] for p in post])
    if nets.model.conditional:
        order = greedy_chain(codes).numpy()
        contexts = chain_context(codes, torch.from_numpy(order).to(codes.device))
        priors = [nets.prior(contexts[i: i + 1]) for i in range(len(images))]
    else:
        order = np.arange(len(images))
        priors = [nets.prior(None)] * len(images)
    return _Plan(means, stds, order, priors)


def _grid(plan: _Plan) -> Grid:
    gaussians = [gaussian_params(p) for p in plan.priors if isinstance(p, DiagGaussian)]
    return choose_grid(np.concatenate([plan.means, *(m[None] for m, _ in gaussians)]),
                       np.concatenate([plan.stds, *(s[None] for _, s in gaussians)]))


def compress(model: Model, images: np.ndarray, mode: str = "ordered",
             input_dtype: str = "uint8", input_shape: tuple[int, ...] | None = None,
             names: list[str] | None = None) -> Compressed:
    """Code ``images`` (N, *image_shape) of 0/1 uint8 into the bytes of an acnkit file;
    ``names`` (one an image, e.g. their files' relative paths) are kept in ordered mode."""
    if mode not in MODES:
        raise UsageError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    if input_dtype not in DTYPES:
        raise UsageError(f"input dtype {input_dtype} cannot be restored; give 0/1 images as "
                         f"bool or native-order integers ({', '.join(DTYPES)})")
    check_codable(model)
    check_causal_decoder(model, images)
    if names is not None and (len(names) != len(images) or not all(map(safe_name, names))):
        raise UsageError("give one plain relative name an image (no '..', no empty parts)")
    n, nets = len(images), NetCalls(model)
    with one_thread():
        plan = _plan(nets, images)
        grid = _grid(plan)
        words = math.ceil((model.latent_dim * math.log2(grid.hi - grid.lo + 1)
                           + 2 * math.log2(n + 1)) / 32) + 2
        ans = new_stack(seed_words(words))
        codecs = Codecs(grid)
        coder = ImageCoder(nets, codecs)
        flat = images.reshape(n, -1)
        with progress.task("compress", n, "images") as shown:

            def push_image(i: int, step: int) -> None:
                coder.push(ans, flat[i], plan.means[i], plan.stds[i], plan.priors[i], step)
                shown()

            if mode == "set" and not model.conditional:
                push_as_set(ans, codecs, images, push_image)
            else:
                # pushed last to first: decoded first to last
                for step, i in reversed(list(enumerate(plan.order.tolist()))):
                    push_image(i, step)
                if mode == "ordered" and model.conditional and n > 1:
                    permutation_codec(codecs, n).push(ans, plan.order)
        payload = ans.get_compressed().astype("<u4").tobytes()
    header = {
        "format": FORMAT_VERSION, "mode": mode, "conditional": model.conditional, "count": n,
        "image_shape": list(images.shape[1:]),
        "input_shape": list(input_shape or images.shape), "input_dtype": input_dtype,
        "grid": {"bits": grid.bits, "lo": grid.lo, "hi": grid.hi}, "seed_words": words,
        "model": model.fingerprint()[:32], "digest": "00" * 16,
        "acnkit": __version__, "torch": torch.__version__,
        "names": list(names or []) if mode == "ordered" else [],
    }
    header["digest"] = digest(images, mode, covered(header))[:32]
    return Compressed(pack(header, payload), header, model_nats(model, images, plan.order, mode))


def model_nats(model: Model, images: np.ndarray, order: np.ndarray, mode: str) -> float:
    """The model's nats per image for the same images, order and mode (negative ELBO at
    one sample, as :mod:`acnkit.evaluate` reports it)."""
    x = torch.from_numpy(images).to(model.device)
    q = model.encode(x)
    context = (chain_context(q.mean, torch.from_numpy(order).to(q.mean.device))
               if model.conditional else None)
    recon, kl = costs(model, x, q, context)
    nats = (recon.sum() + kl.sum()).item() / len(images)
    if mode == "set" and not model.conditional:
        # bits back on the order are worth log(N! / prod m_k!): equal images have no order
        return nats - log_distinct_orderings(images) / len(images)
    return modes(nats, len(images), model.conditional)[f"test_nats_{mode}"]


def decompress(model: Model, data: bytes, name: str = "the file",
               warn: Callable[[str], Any] | None = None,
               stats: dict[str, Any] | None = None) -> np.ndarray:
    """The images of an acnkit file, shaped and typed as the input was; raises CodecError
    for a file of another model or one that does not decode to what was coded. ``stats``,
    if given, gets the steps and seconds of an autoregressive decoder's pixel loop."""
    header, words = read_header(data, name)
    own = model.fingerprint()
    if header["model"] != own[:32]:
        raise CodecError(f"{name} was made with another model (fingerprint "
                         f"{header['model'][:12]}, this run's {own[:12]}); "
                         f"give --run the run folder it was compressed with")
    if tuple(header["image_shape"]) != model.image_shape \
            or header["conditional"] != model.conditional:
        raise CodecError(f"{name} is corrupt: it describes images of shape "
                         f"{header['image_shape']} coded with a "
                         f"{'conditional' if header['conditional'] else 'plain'} prior, and "
                         f"its model codes {list(model.image_shape)} with a "
                         f"{'conditional' if model.conditional else 'plain'} one")
    if warn and (header["torch"] != torch.__version__ or header["acnkit"] != __version__):
        warn(f"warning: {name} was made with acnkit {header['acnkit']} and torch "
             f"{header['torch']}, this is acnkit {__version__} and torch {torch.__version__}; "
             f"decoding needs bit-identical arithmetic and may fail")
    n, mode, shape = header["count"], header["mode"], tuple(header["image_shape"])
    nets, ans = NetCalls(model), new_stack(words)
    codecs = Codecs(Grid(**header["grid"]))
    coder = ImageCoder(nets, codecs)
    with one_thread(), progress.task("decompress", n, "images") as shown:
        if mode == "set" and not model.conditional:
            prior = nets.prior(None)

            def pop_image(step: int) -> tuple[np.ndarray, Any]:
                popped = coder.pop(ans, prior, shape, step)
                shown()
                return popped

            images = pop_as_set(ans, codecs, n, pop_image)
        else:
            images = _pop_in_order(ans, codecs, coder, n, mode, shape, shown)
    if stats is not None:
        stats.update(pixel_steps=coder.pixel_steps, pixel_loop_seconds=coder.pixel_seconds)
    if not np.array_equal(ans.get_compressed(), seed_words(header["seed_words"])) \
            or digest(images, mode, covered(header))[:32] != header["digest"]:
        raise CodecError(f"{name} did not decode to the images it was made from (different "
                         f"arithmetic: compress and decompress need the same acnkit, torch "
                         f"and CPU kind); nothing was written")
    return images.reshape(header["input_shape"]).astype(header["input_dtype"])


def _pop_in_order(ans: Any, codecs: Codecs, coder: ImageCoder, n: int, mode: str,
                  shape: tuple[int, ...], shown: Callable[[], Any]) -> np.ndarray:
    """The images in coded order (ACN: along the chain, each image's code the next one's
    context), put back in input order when an ordered ACN file carries the permutation."""
    model = coder.nets.model
    order = None
    if mode == "ordered" and model.conditional and n > 1:
        order = permutation_codec(codecs, n).pop(ans)
    decoded, code = [], None
    for step in range(n):
        context = None
        if model.conditional:
            context = torch.zeros(1, model.latent_dim) if code is None else code
            context = context.to(model.device)
        image, code = coder.pop(ans, coder.nets.prior(context), shape, step)
        decoded.append(image)
        shown()
    images = np.stack(decoded)
    return images if order is None else images[np.argsort(order)]
