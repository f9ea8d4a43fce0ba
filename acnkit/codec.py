"""Bits-back ANS coding of a set of binary images with a trained VAE or ACN (on constriction).

For each image the sender pops a latent z from q(z|x) off the ANS stack (getting bits back),
pushes x with p(x|z), then pushes z with the prior; the receiver runs the same steps in
reverse. Latents live on a grid of step 2^-b (``b`` and the grid's range are in the header),
so every model is a quantised Gaussian over integers; a mixture prior is coded by pushing
the component too, with bits back from the components' posterior given z, which costs
-log p(z) in all. ACN images are coded along the greedy chain of :mod:`acnkit.memory`: the
sender pushes them in reverse chain order, so the receiver decodes the chain forward and
re-encodes each decoded image to get the next image's prior context.

Modes (see :mod:`acnkit.evaluate`): **ordered** files decode to the input array exactly, in
order (ACN pushes the permutation from chain order back to input order: log(N!) nats); **set**
files decode to the same images in some order (the VAE pops the order off the stack, bits
back worth log(N!) nats minus the cost of telling equal images apart).

Every probability is computed by the sender and the receiver in the same way: networks are
called on one image at a time, in one thread, in the same order, so that the floats agree in
every bit. The same acnkit and torch versions on the same kind of CPU are therefore needed to
decode a file; the header records both, and the decoded images must match a checksum of the
input or nothing is written.

File layout (little-endian): magic ``ACNZ``, u16 format version, a binary header (mode,
count, image and input shapes, input dtype, latent grid, initial words, 128 bits of the
model's fingerprint and of the images' SHA-256, acnkit and torch versions), the ANS words
(u32), and a CRC-32 of everything before it.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import math
import struct
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from . import __version__
from .distributions import DiagGaussian, MixtureDiagGaussian
from .errors import AcnkitError, UsageError
from .memory import chain_context, greedy_chain

if TYPE_CHECKING:
    from .engine import Trainer

MAGIC = b"ACNZ"
FORMAT_VERSION = 1
MODES = ("ordered", "set")
#: latents are coded within this many standard deviations of every mean
SPAN = 8.0
#: at most this many grid points per latent dimension
MAX_GRID = 1 << 16
#: seed of the initial ANS words (any fixed words work; these decode to typical latents)
SEED_WORDS_SEED = 20190319


class CodecError(AcnkitError):
    """A file cannot be written or decoded: corrupt, truncated, or another model's."""


def _constriction() -> Any:
    try:
        import constriction
    except ImportError:  # pragma: no cover - a dependency; only a broken install lacks it
        raise CodecError("the codec needs the constriction package: "
                         "python -m pip install constriction") from None
    return constriction


@contextmanager
def _one_thread() -> Iterator[None]:
    """Run the networks in one thread: a split of a product over threads can change the
    order of its sums, and the receiver may run with another thread count."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def fingerprint(trainer: Trainer) -> str:
    """SHA-256 of the model's structure and weights: a file decodes only with its model
    (the device it runs on and the epochs asked for are not part of it)."""
    from .config import RunConfig

    structure = {k: getattr(trainer.config, k) for k in RunConfig.STRUCTURAL}
    h = hashlib.sha256(json.dumps(structure, sort_keys=True).encode())
    for name, module in trainer.modules.items():
        for key, tensor in sorted(module.state_dict().items()):
            h.update(f"{name}.{key}".encode())
            h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def check_codable(trainer: Trainer) -> None:
    """The model can be coded: a binary likelihood, and a prior whose distribution is a
    diagonal Gaussian or a per-dimension Gaussian mixture."""
    c = trainer.config
    if not getattr(trainer.loss, "binary", False):
        raise CodecError(f"loss {c.loss!r} is not a binary (Bernoulli) likelihood, which is "
                         f"the only kind acnkit compress codes")
    context = torch.zeros(1, c.latent_dim, device=trainer.device) if trainer.conditional else None
    with torch.no_grad():
        dist = trainer.prior.distribution(context, 1)
    if not isinstance(dist, DiagGaussian | MixtureDiagGaussian):
        raise CodecError(f"prior {c.prior!r} gives a {type(dist).__name__}; acnkit compress "
                         f"codes priors whose distribution is a DiagGaussian or a "
                         f"MixtureDiagGaussian (see docs/writing-a-plugin.md)")


# ----------------------------------------------------------------------------- the model side
class _Model:
    """The networks of a run as the coder calls them: one image at a time, float64 out."""

    def __init__(self, trainer: Trainer) -> None:
        self.t = trainer
        trainer.model.eval()

    @torch.no_grad()
    def posterior(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray, Tensor]:
        x = torch.from_numpy(image).float().unsqueeze(0).to(self.t.device)
        q = self.t.encoder(x)
        return (q.mean[0].double().cpu().numpy(), q.log_std[0].exp().double().cpu().numpy(),
                q.mean)

    @property
    def autoregressive(self) -> bool:
        return self.t.decoder.autoregressive

    @torch.no_grad()
    def pixel_probabilities(self, z: np.ndarray, image: np.ndarray | None = None) -> np.ndarray:
        """P(pixel = 1) of every pixel given z; an autoregressive decoder reads the pixels
        of ``image`` before each position (the ones after it may hold anything)."""
        zt = torch.from_numpy(z).float().unsqueeze(0).to(self.t.device)
        x = None
        if self.autoregressive:
            shape = self.t.data.image_shape
            x = torch.from_numpy(image).float().reshape(1, *shape).to(self.t.device)
        p = self.t.loss.mean(self.t.decoder.params(zt, x))
        return p.reshape(-1).double().cpu().numpy()

    @torch.no_grad()
    def prior(self, context: Tensor | None) -> DiagGaussian | MixtureDiagGaussian:
        return self.t.prior.distribution(context if self.t.conditional else None, 1)


@dataclass
class _Grid:
    bits: int  # step 2^-bits
    lo: int
    hi: int

    @property
    def step(self) -> float:
        return 2.0 ** -self.bits

    def values(self, symbols: np.ndarray) -> np.ndarray:
        return symbols.astype(np.float64) * self.step


def choose_grid(means: np.ndarray, stds: np.ndarray) -> _Grid:
    """A grid fine enough for the smallest standard deviation (a step of at most a quarter
    of it, so quantising costs little) and wide enough for every mean +- SPAN deviations."""
    lo = min(-SPAN, float((means - SPAN * stds).min()))
    hi = max(SPAN, float((means + SPAN * stds).max()))
    smallest = max(float(stds.min()), 1e-6)
    bits = max(0, math.ceil(math.log2(4.0 / smallest)))
    while bits > 0 and (hi - lo) * 2.0**bits > MAX_GRID:
        bits -= 1
    return _Grid(bits, math.floor(lo * 2.0**bits), math.ceil(hi * 2.0**bits))


class _Coder:
    """The push and pop steps of one image on an ANS stack."""

    def __init__(self, model: _Model, grid: _Grid, ans: Any) -> None:
        cs = _constriction()
        self.m, self.grid, self.ans = model, grid, ans
        self.gauss = cs.stream.model.QuantizedGaussian(grid.lo, grid.hi)
        self.bernoulli = cs.stream.model.Bernoulli(perfect=False)
        self.categorical = cs.stream.model.Categorical(perfect=False)
        self.uniform = cs.stream.model.Uniform
        self.pixel_steps, self.pixel_seconds = 0, 0.0  # the autoregressive decoding loop

    # latents
    def _gauss(self, mean: np.ndarray, std: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        s = self.grid.step
        return np.ascontiguousarray(mean / s), np.ascontiguousarray(np.maximum(std, 1e-9) / s)

    def pop_posterior(self, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
        return self.ans.decode(self.gauss, *self._gauss(mean, std))

    def push_posterior(self, symbols: np.ndarray, mean: np.ndarray, std: np.ndarray) -> None:
        self.ans.encode_reverse(symbols, self.gauss, *self._gauss(mean, std))

    def push_prior(self, symbols: np.ndarray, prior: Any) -> None:
        if isinstance(prior, DiagGaussian):
            mean, std = _gaussian_params(prior)
            self.ans.encode_reverse(symbols, self.gauss, *self._gauss(mean, std))
            return
        weights, means, stds = _mixture_params(prior)
        resp = _responsibilities(self.grid.values(symbols), weights, means, stds)
        comp = self.ans.decode(self.categorical, resp)  # bits back: the component given z
        rows = np.arange(len(symbols))
        self.ans.encode_reverse(symbols, self.gauss,
                                *self._gauss(means[rows, comp], stds[rows, comp]))
        self.ans.encode_reverse(comp, self.categorical, weights)

    def pop_prior(self, prior: Any) -> np.ndarray:
        if isinstance(prior, DiagGaussian):
            mean, std = _gaussian_params(prior)
            return self.ans.decode(self.gauss, *self._gauss(mean, std))
        weights, means, stds = _mixture_params(prior)
        comp = self.ans.decode(self.categorical, weights)
        rows = np.arange(len(comp))
        symbols = self.ans.decode(self.gauss, *self._gauss(means[rows, comp], stds[rows, comp]))
        resp = _responsibilities(self.grid.values(symbols), weights, means, stds)
        self.ans.encode_reverse(comp, self.categorical, resp)
        return symbols

    # pixels
    def push_pixels(self, pixels: np.ndarray, probs: np.ndarray) -> None:
        self.ans.encode_reverse(pixels.astype(np.int32), self.bernoulli, probs)

    def pop_pixels(self, z: np.ndarray, size: int) -> np.ndarray:
        if not self.m.autoregressive:
            return self.ans.decode(self.bernoulli, self.m.pixel_probabilities(z))
        # One position at a time in raster order, each with the pixels decoded so far: the
        # sender's teacher-forced probabilities are these, bit for bit, since a position's
        # output is computed without the pixels after it (zeros here; check_decoder tests it).
        t0 = time.perf_counter()
        pixels = np.zeros(size, dtype=np.int32)
        for i in range(size):
            p = self.m.pixel_probabilities(z, pixels)[i: i + 1]
            pixels[i] = self.ans.decode(self.bernoulli, p)[0]
        self.pixel_steps += size
        self.pixel_seconds += time.perf_counter() - t0
        return pixels

    # whole numbers below n, uniformly
    def push_uniform(self, value: int, n: int) -> None:
        if n > 1:
            self.ans.encode_reverse(np.array([value], dtype=np.int32), self.uniform(n))

    def pop_uniform(self, n: int) -> int:
        return int(self.ans.decode(self.uniform(n))) if n > 1 else 0

    # one image: sender's push, receiver's pop
    def push_image(self, pixels: np.ndarray, mean: np.ndarray, std: np.ndarray, prior: Any) -> None:
        symbols = self.pop_posterior(mean, std)
        # Pushed in one call, last pixel first: the receiver pops them in raster order.
        self.push_pixels(pixels, self.m.pixel_probabilities(self.grid.values(symbols), pixels))
        self.push_prior(symbols, prior)

    def pop_image(self, prior: Any, shape: tuple[int, ...]) -> tuple[np.ndarray, Tensor]:
        symbols = self.pop_prior(prior)
        pixels = self.pop_pixels(self.grid.values(symbols), math.prod(shape))
        image = pixels.astype(np.uint8).reshape(shape)
        mean, std, code = self.m.posterior(image)
        self.push_posterior(symbols, mean, std)
        return image, code


def _gaussian_params(prior: DiagGaussian) -> tuple[np.ndarray, np.ndarray]:
    return prior.mean[0].double().cpu().numpy(), prior.log_std[0].exp().double().cpu().numpy()


def _mixture_params(prior: MixtureDiagGaussian) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    weights = torch.softmax(prior.logits[0].double(), -1).cpu().numpy()
    return (np.ascontiguousarray(weights), prior.means[0].double().cpu().numpy(),
            prior.log_stds[0].exp().double().cpu().numpy())


def _responsibilities(z: np.ndarray, weights: np.ndarray, means: np.ndarray,
                      stds: np.ndarray) -> np.ndarray:
    """P(component | z) per dimension (d, M), from the densities at the grid point."""
    log = np.log(np.maximum(weights, 1e-300)) - np.log(stds) \
        - 0.5 * ((z[:, None] - means) / stds) ** 2
    log -= log.max(1, keepdims=True)
    p = np.exp(log)
    return np.ascontiguousarray(p / p.sum(1, keepdims=True))


# ----------------------------------------------------------------------------- the data side
def as_images(array: np.ndarray, image_shape: tuple[int, ...], what: str) -> np.ndarray:
    """Binary images (N, *image_shape) as uint8, from an array of bools or 0/1 integers of
    shape (N, *image_shape), (N, H, W) or (N, D)."""
    if not isinstance(array, np.ndarray) or array.dtype == object:
        raise UsageError(f"{what} is not a numeric array; give 0/1 images as a .npy array")
    if array.dtype != bool and not np.issubdtype(array.dtype, np.integer):
        raise UsageError(f"{what} has {array.dtype} values; give 0/1 images as bool or "
                         f"integers (binarise them first)")
    dims = math.prod(image_shape)
    if array.ndim < 2 or len(array) == 0 or math.prod(array.shape[1:]) != dims:
        raise UsageError(f"{what} has shape {array.shape}; the model codes N images of "
                         f"{'x'.join(map(str, image_shape))} = {dims} pixels each")
    if array.dtype != bool and ((array != 0) & (array != 1)).any():
        raise UsageError(f"{what} holds values other than 0 and 1; binarise the images first")
    return np.ascontiguousarray(array.reshape(len(array), *image_shape).astype(np.uint8))


def _keys(images: np.ndarray) -> list[bytes]:
    """Each image's pixels packed 8 to a byte: equal images have equal keys, and keys sort."""
    return [r.tobytes() for r in np.packbits(images.reshape(len(images), -1), axis=1)]


def dataset_images(trainer: Trainer, name: str, split: str) -> np.ndarray:
    """The binary images of data set ``name`` (``split`` test or train), binarised with the
    run's own data seed (and read from the run's --data-dir when it is the run's data set)."""
    from .registry import get_registry

    c = trainer.config
    data = get_registry().create("dataset", name, seed=c.data_seed,
                                 data_dir=c.data_dir if name == c.data else None)
    x = data.test_x if split == "test" else data.train_x
    return as_images(x.numpy(), trainer.data.image_shape, f"--data {name} --split {split}")


def same_images(a: np.ndarray, b: np.ndarray, mode: str) -> bool:
    """Whether ``b`` is what decoding ``a`` must give: equal arrays (ordered mode), or the
    same images in any order (set mode)."""
    if mode == "ordered":
        return bool(np.array_equal(a, b))
    return a.shape == b.shape and sorted(_keys(a)) == sorted(_keys(b))


def _digest(images: np.ndarray, mode: str) -> str:
    """SHA-256 of the images in order (ordered mode) or of the sorted images (set mode)."""
    rows = _keys(images)
    if mode == "set":
        rows.sort()
    h = hashlib.sha256()
    for r in rows:
        h.update(r)
    return h.hexdigest()


def _seed_words(count: int) -> np.ndarray:
    rng = np.random.default_rng(SEED_WORDS_SEED)
    return rng.integers(1, 2**32, size=count, dtype=np.uint64).astype(np.uint32)


def _ranks_of(order: np.ndarray) -> np.ndarray:
    """For each position t, the rank of order[t] among the indices not placed before it."""
    left = list(range(len(order)))
    ranks = np.empty(len(order), dtype=np.int32)
    for t, i in enumerate(order.tolist()):
        r = bisect.bisect_left(left, i)
        ranks[t] = r
        left.pop(r)
    return ranks


def _order_from_ranks(ranks: np.ndarray) -> np.ndarray:
    left = list(range(len(ranks)))
    return np.array([left.pop(int(r)) for r in ranks], dtype=np.int64)


# ----------------------------------------------------------------------------- compress
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


def compress(trainer: Trainer, images: np.ndarray, mode: str = "ordered",
             input_dtype: str = "uint8", input_shape: tuple[int, ...] | None = None) -> Compressed:
    """Code ``images`` (N, *image_shape) of 0/1 uint8 into the bytes of an acnkit file."""
    if mode not in MODES:
        raise UsageError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    if input_dtype not in DTYPES:
        raise UsageError(f"input dtype {input_dtype} cannot be restored; give 0/1 images as "
                         f"bool or native-order integers ({', '.join(DTYPES)})")
    check_codable(trainer)
    cs = _constriction()
    n = len(images)
    model = _Model(trainer)
    with _one_thread():
        post = [model.posterior(img) for img in images]
        means = np.stack([p[0] for p in post])
        stds = np.stack([p[1] for p in post])
        codes = torch.cat([p[2] for p in post])
        if trainer.conditional:
            order = greedy_chain(codes).numpy()
            contexts = chain_context(codes, torch.from_numpy(order).to(codes.device))
            priors = [model.prior(contexts[i: i + 1]) for i in range(n)]
        else:
            order = np.arange(n)
            priors = [model.prior(None)] * n
        gaussians = [_gaussian_params(p) for p in priors if isinstance(p, DiagGaussian)]
        grid = choose_grid(np.concatenate([means, *(m[None] for m, _ in gaussians)]),
                           np.concatenate([stds, *(s[None] for _, s in gaussians)]))
        words = math.ceil((trainer.config.latent_dim * math.log2(grid.hi - grid.lo + 1)
                           + 2 * math.log2(n + 1)) / 32) + 2
        seed = _seed_words(words)
        ans = cs.stream.stack.AnsCoder(seed.copy())
        coder = _Coder(model, grid, ans)
        if mode == "set" and not trainer.conditional:
            _push_as_set(coder, images, means, stds, priors)
        else:
            for i in order[::-1].tolist():  # pushed last to first: decoded first to last
                coder.push_image(images[i].reshape(-1), means[i], stds[i], priors[i])
            if mode == "ordered" and trainer.conditional and n > 1:
                ranks = _ranks_of(order)[:-1]  # the last index is the one left
                ans.encode_reverse(ranks, cs.stream.model.Uniform(),
                                   np.arange(n, 1, -1, dtype=np.int32))
        payload = ans.get_compressed().astype("<u4").tobytes()
    header = {
        "format": FORMAT_VERSION, "mode": mode,
        "conditional": trainer.conditional, "count": n,
        "image_shape": list(images.shape[1:]),
        "input_shape": list(input_shape or images.shape), "input_dtype": input_dtype,
        "grid": {"bits": grid.bits, "lo": grid.lo, "hi": grid.hi},
        "seed_words": words,
        "model": fingerprint(trainer)[:32], "digest": _digest(images, mode)[:32],
        "acnkit": __version__, "torch": torch.__version__,
    }
    data = _pack(header, payload)
    return Compressed(data, header, model_nats(trainer, images, order, mode))


def _push_as_set(coder: _Coder, images: np.ndarray, means: np.ndarray, stds: np.ndarray,
                 priors: list[Any]) -> None:
    """Pop the order off the stack: each next image is chosen by a number popped uniformly
    below the count of images left (ranked by their bytes), so the order carries bits."""
    keys = _keys(images)
    left = sorted(range(len(images)), key=lambda i: keys[i])
    left_keys = [keys[i] for i in left]
    for _ in range(len(images)):
        r = coder.pop_uniform(len(left))
        key = left_keys[r]
        first = bisect.bisect_left(left_keys, key)
        same = bisect.bisect_right(left_keys, key) - first
        coder.push_uniform(r - first, same)  # which of equal images: the receiver can't tell
        i = left.pop(r)
        left_keys.pop(r)
        coder.push_image(images[i].reshape(-1), means[i], stds[i], priors[i])


def model_nats(trainer: Trainer, images: np.ndarray, order: np.ndarray, mode: str) -> float:
    """The model's nats per image for the same images, order and mode (negative ELBO at
    one sample, as :mod:`acnkit.evaluate` reports it)."""
    from .evaluate import costs, encode, modes

    x = torch.from_numpy(images).to(trainer.device)
    q = encode(trainer, x)
    context = (chain_context(q.mean, torch.from_numpy(order).to(q.mean.device))
               if trainer.conditional else None)
    recon, kl = costs(trainer, x, q, context)
    nats = (recon.sum() + kl.sum()).item() / len(images)
    return modes(nats, len(images), trainer.conditional)[f"test_nats_{mode}"]


DTYPES = ("uint8", "bool", "int8", "int16", "int32", "int64", "uint16", "uint32", "uint64")


def _pack(header: dict[str, Any], payload: bytes) -> bytes:
    """The file: a binary header of about 100 bytes (a small file should not pay for a
    verbose one), the ANS words and a CRC-32 of all before it."""
    h = header
    flags = (h["mode"] == "set") | (h["conditional"] << 1)
    shape, inp = h["image_shape"], h["input_shape"]
    g = h["grid"]
    parts = [
        MAGIC, struct.pack("<HBI", FORMAT_VERSION, flags, h["count"]),
        struct.pack(f"<B{len(shape)}I", len(shape), *shape),
        struct.pack(f"<B{len(inp)}I", len(inp), *inp),
        struct.pack("<BBiiH", DTYPES.index(h["input_dtype"]), g["bits"], g["lo"], g["hi"],
                    h["seed_words"]),
        bytes.fromhex(h["model"])[:16], bytes.fromhex(h["digest"])[:16],
        _short(h["acnkit"]), _short(h["torch"]), payload,
    ]
    body = b"".join(parts)
    return body + struct.pack("<I", zlib.crc32(body))


def _short(text: str) -> bytes:
    raw = text.encode()[:255]
    return struct.pack("<B", len(raw)) + raw


class _Reader:
    def __init__(self, data: bytes, name: str) -> None:
        self.data, self.pos, self.name = data, 0, name

    def take(self, fmt: str) -> tuple:
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.data):
            raise CodecError(f"{self.name} is truncated ({len(self.data) + 4} bytes)")
        out = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += size
        return out

    def raw(self, size: int) -> bytes:
        return bytes(self.take(f"{size}s")[0])


# ----------------------------------------------------------------------------- decompress
def read_header(data: bytes, name: str = "the file") -> tuple[dict[str, Any], np.ndarray]:
    """The header and ANS words of an acnkit file, after every check that needs no model."""
    if len(data) < 4 or data[:4] != MAGIC:
        raise CodecError(f"{name} is not an acnkit compressed file (no ACNZ magic)")
    if len(data) < 10:
        raise CodecError(f"{name} is truncated ({len(data)} bytes)")
    (version,) = struct.unpack_from("<H", data, 4)
    if version != FORMAT_VERSION:
        raise CodecError(f"{name} has format version {version}; this acnkit {__version__} "
                         f"reads version {FORMAT_VERSION} only")
    (crc,) = struct.unpack("<I", data[-4:])
    if zlib.crc32(data[:-4]) != crc:
        raise CodecError(f"{name} is corrupt or truncated (its CRC-32 does not match)")
    r = _Reader(data[:-4], name)
    r.pos = 6
    flags, count = r.take("<BI")
    shape = list(r.take(f"<{r.take('<B')[0]}I"))
    inp = list(r.take(f"<{r.take('<B')[0]}I"))
    dtype, bits, lo, hi, seed_words = r.take("<BBiiH")
    header = {
        "format": version, "mode": MODES[flags & 1], "conditional": bool(flags & 2),
        "count": count, "image_shape": shape, "input_shape": inp,
        "input_dtype": DTYPES[dtype] if dtype < len(DTYPES) else "?",
        "grid": {"bits": bits, "lo": lo, "hi": hi}, "seed_words": seed_words,
        "model": r.raw(16).hex(), "digest": r.raw(16).hex(),
        "acnkit": r.raw(r.take("<B")[0]).decode(errors="replace"),
        "torch": r.raw(r.take("<B")[0]).decode(errors="replace"),
    }
    if (len(r.data) - r.pos) % 4 or header["input_dtype"] == "?":
        raise CodecError(f"{name} has a malformed header")
    words = np.frombuffer(r.data[r.pos:], dtype="<u4").astype(np.uint32)
    return header, words


def decompress(trainer: Trainer, data: bytes, name: str = "the file",
               warn: Any = None, stats: dict[str, Any] | None = None) -> np.ndarray:
    """The images of an acnkit file, shaped and typed as the input was; raises CodecError
    for a file of another model or one that does not decode to what was coded. ``stats``,
    if given, gets the steps and seconds of an autoregressive decoder's pixel loop."""
    header, words = read_header(data, name)
    if header["model"] != fingerprint(trainer)[:32]:
        raise CodecError(f"{name} was made with another model (fingerprint "
                         f"{header['model'][:12]}, this run's {fingerprint(trainer)[:12]}); "
                         f"give --run the run folder it was compressed with")
    if warn and (header["torch"] != torch.__version__ or header["acnkit"] != __version__):
        warn(f"warning: {name} was made with acnkit {header['acnkit']} and torch "
             f"{header['torch']}, this is acnkit {__version__} and torch {torch.__version__}; "
             f"decoding needs bit-identical arithmetic and may fail")
    cs = _constriction()
    n, mode = header["count"], header["mode"]
    shape = tuple(header["image_shape"])
    g = header["grid"]
    model = _Model(trainer)
    ans = cs.stream.stack.AnsCoder(words.copy())
    coder = _Coder(model, _Grid(g["bits"], g["lo"], g["hi"]), ans)
    with _one_thread():
        if mode == "set" and not trainer.conditional:
            images = _pop_as_set(coder, n, shape, model.prior(None))
        else:
            ranks = None
            if mode == "ordered" and trainer.conditional and n > 1:
                ranks = ans.decode(cs.stream.model.Uniform(), np.arange(n, 1, -1, dtype=np.int32))
            decoded, code = [], None
            for t in range(n):
                if trainer.conditional:
                    context = torch.zeros(1, trainer.config.latent_dim) if t == 0 else code
                    prior = model.prior(context.to(trainer.device))
                else:
                    prior = model.prior(None)
                image, code = coder.pop_image(prior, shape)
                decoded.append(image)
            images = np.stack(decoded)
            if ranks is not None:
                order = _order_from_ranks(np.append(ranks, 0))
                images = images[np.argsort(order)]
    if stats is not None:
        stats.update(pixel_steps=coder.pixel_steps, pixel_loop_seconds=coder.pixel_seconds)
    if not np.array_equal(ans.get_compressed(), _seed_words(header["seed_words"])) \
            or _digest(images, mode)[:32] != header["digest"]:
        raise CodecError(f"{name} did not decode to the images it was made from (different "
                         f"arithmetic: compress and decompress need the same acnkit, torch "
                         f"and CPU kind); nothing was written")
    return images.reshape(header["input_shape"]).astype(header["input_dtype"])


def _pop_as_set(coder: _Coder, n: int, shape: tuple[int, ...], prior: Any) -> np.ndarray:
    decoded: list[np.ndarray] = []
    keys: list[bytes] = []
    for j in range(n - 1, -1, -1):
        image, _ = coder.pop_image(prior, shape)
        key = _keys(image[None])[0]
        bisect.insort(keys, key)
        first = bisect.bisect_left(keys, key)
        same = bisect.bisect_right(keys, key) - first
        r = first + coder.pop_uniform(same)
        coder.push_uniform(r, n - j)
        decoded.append(image)
    return np.stack(decoded[::-1])



# ----------------------------------------------------------------------------- files
def load_images(path: str | Path) -> np.ndarray:
    """A .npy array of images, without ever unpickling objects."""
    try:
        array = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise UsageError(f"--input {path} does not exist") from None
    except (OSError, ValueError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:100]
        raise UsageError(f"--input {path} is not a .npy array of numbers ({first})") from None
    if not isinstance(array, np.ndarray):
        raise UsageError(f"--input {path} holds several arrays; give one .npy array")
    return array


def read_file(path: str | Path) -> bytes:
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"{p} is not a file")
    try:
        return p.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {p}: {exc.strerror}") from None


def npy_bytes(array: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()
