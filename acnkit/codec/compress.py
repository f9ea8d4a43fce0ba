"""``compress`` and ``decompress``: arrays of images (0/1 or grey or colour levels) in,
bytes out, and back.

ACN images are coded along the greedy chain of :mod:`acnkit.memory`: the sender pushes them
in reverse chain order, so the receiver decodes the chain forward and re-encodes each
decoded image to get the next image's prior context. The same acnkit and torch versions on
the same kind of CPU are needed to decode a file; the header records both, and the decoded
images must match a checksum of the input or nothing is returned.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..distributions import DiagGaussian, MixtureDiagGaussian
from ..errors import CodecError, UsageError
from ..evaluate import costs, modes
from ..exact import ARITHMETIC, NotPortable
from ..memory import chain_context, greedy_chain
from ..model import Model
from ..testing import check_causal, check_stepping
from ..version import __version__
from .coder import Codecs, Grid, choose_grid, new_stack, one_thread
from .fileformat import (
    DTYPES,
    FORMAT_VERSION,
    IMAGE_MODES,
    MACHINE,
    MAX_IMAGES,
    MAX_LEVELS,
    covered,
    file_modes,
    level_bits,
    machine_kind,
    max_lanes,
    modes_fit,
    name_clash,
    pack,
    read_header,
    safe_name,
)
from .image import ImageCoder, NetCalls, gaussian_rows, portable_model
from .lanes import Layout, choose_lanes, pop_lanes, push_lanes
from .latents import ExactCodecs
from .order import (
    MODES,
    digest,
    keys,
    log_distinct_orderings,
    pop_arrangement,
    push_arrangement,
)
from .tiles import extents as tile_extents
from .tiles import tile_count

#: seed of the initial ANS words (any fixed words work; these decode to typical latents)
SEED_WORDS_SEED = 20190319
#: the lanes are chosen from the figure of this many images (the first coded)
LANES_SAMPLE = 256


def check_codable(model: Model) -> None:
    """The model can be coded: a likelihood that gives its CDF over at most
    :data:`MAX_LEVELS` levels, and a prior whose distribution is a diagonal Gaussian or a
    per-dimension Gaussian mixture."""
    c = model.config
    if not 2 <= model.levels <= MAX_LEVELS:
        raise CodecError(f"loss {c.loss!r} models {model.levels} levels; acnkit compress "
                         f"codes 2 to {MAX_LEVELS} levels a subpixel")
    shape = (1, *model.image_shape)
    params = torch.zeros((1, model.loss.param_channels(shape[1]), *shape[2:]),
                         device=model.device)
    x = torch.zeros(shape, device=model.device)
    edges = torch.ones((*shape, 1), dtype=torch.long, device=model.device)
    try:
        f = model.loss.cdf(params, x)(edges)
    except NotImplementedError:
        raise CodecError(f"{model.plugin('loss')} gives no probabilities over its levels "
                         f"(Loss.probabilities or Loss.cdf), which acnkit compress codes "
                         f"with") from None
    if tuple(f.shape) != (*shape, 1):
        raise CodecError(f"{model.plugin('loss')} gives a CDF of shape {tuple(f.shape)} for "
                         f"edges {tuple(edges.shape)}; acnkit compress needs one value an "
                         f"edge (Loss.cdf)")
    context = torch.zeros(1, c.latent_dim, device=model.device) if model.conditional else None
    dist = model.prior_distribution(context, 1)
    if not isinstance(dist, DiagGaussian | MixtureDiagGaussian):
        raise CodecError(f"prior {c.prior!r} gives a {type(dist).__name__}; acnkit compress "
                         f"codes priors whose distribution is a DiagGaussian or a "
                         f"MixtureDiagGaussian (see docs/writing-a-plugin.md)")


@torch.no_grad()
def check_causal_decoder(model: Model, images: np.ndarray) -> None:
    """An autoregressive decoder that reads a pixel at or after the one it predicts would
    write a file no receiver can decode, and one whose stepping disagrees with its forward
    pass (or with itself in another batch) a file that is not the model's figure: probed
    on the first images before any coding."""
    if not model.decoder.autoregressive or len(images) == 0:
        return
    x = torch.from_numpy(images[:2]).float().to(model.device)
    z = model.encode(x).mean
    try:
        check_causal(model.decoder, z[:1], x[:1])
        if getattr(model.decoder, "stepping", False):
            check_stepping(model.decoder, z, x)
    except AssertionError as exc:
        raise CodecError(f"{model.plugin('decoder')} cannot be coded: {exc}; a receiver "
                         f"could not decode the file (test the plugin with "
                         f"acnkit.testing.check_decoder)") from None


def not_portable(nets: NetCalls, images: np.ndarray) -> str | None:
    """Why the model of ``nets`` (exact) cannot code portably (the first operation of its
    components with no exact form, :mod:`acnkit.exact`), or None: every network and the
    loss's CDF are run once, under the exact arithmetic, on the first image."""
    model = nets.model
    try:
        with torch.no_grad():
            means, _, codes = nets.posterior(images[:1])
            z = np.round(means * 64) / 64
            nets.prior(codes if model.conditional else None, 1)
            if nets.autoregressive:
                nets.position_cdfs(z, None, _first_level_only)
            else:
                params = nets.independent_params(z)
                for _, cdf in nets.channel_cdfs(params, np.zeros_like(images[:1]), 0):
                    cdf(np.ones((1, math.prod(model.image_shape[1:]), 1), dtype=np.int64))
    except NotPortable as exc:
        return str(exc)
    except _Probed:
        pass
    return None


class _Probed(Exception):
    """The probe of an autoregressive decoder stops after its first subpixel."""


def _first_level_only(i: int, c: int, cdf: Any) -> np.ndarray:
    cdf(np.ones((1, 1, 1), dtype=np.int64))
    raise _Probed


def accepted_shapes(image_shape: tuple[int, ...]) -> list[tuple[int, ...]]:
    """The shapes of one image an input array may have: the model's (C, H, W), (H, W) for
    one channel, (H, W, C) (channels last, as image files hold them) or flat (C*H*W,)."""
    shapes = [tuple(image_shape)]
    if len(image_shape) == 3 and image_shape[0] == 1:
        shapes.append(tuple(image_shape[1:]))
    if len(image_shape) == 3 and image_shape[0] > 1:
        shapes.append((*image_shape[1:], image_shape[0]))
    return list(dict.fromkeys([*shapes, (math.prod(image_shape),)]))


def channels_last(input_shape: tuple[int, ...], image_shape: tuple[int, ...]) -> bool:
    """Whether an array of ``input_shape`` holds images (H, W, C) rather than the model's
    (C, H, W) (the model's own layout wins where the two coincide)."""
    inner = tuple(input_shape[1:])
    return (len(image_shape) == 3 and image_shape[0] > 1 and inner != tuple(image_shape)
            and inner == (*image_shape[1:], image_shape[0]))


def as_images(array: np.ndarray, image_shape: tuple[int, ...], levels: int,
              what: str) -> np.ndarray:
    """Images (N, *image_shape) of uint8 levels from an array of integer levels below
    ``levels`` (bools too for two levels), shaped (N, C, H, W), (N, H, W) (one channel),
    (N, H, W, C) (channels last) or (N, C*H*W)."""
    kind = "0/1 images" if levels == 2 else f"images of levels 0..{levels - 1}"
    if not isinstance(array, np.ndarray) or array.dtype == object:
        raise UsageError(f"{what} is not a numeric array; give {kind} as a .npy array")
    if not (array.dtype == bool and levels == 2) and array.dtype.kind not in "iu":
        # kinds, not issubdtype: numpy counts timedelta64 as an integer type
        how = "binarise them first" if levels == 2 else "round them to levels first"
        raise UsageError(f"{what} has {array.dtype} values; give {kind} as integers ({how})")
    shapes = accepted_shapes(image_shape)
    if array.ndim < 2 or len(array) == 0 or tuple(array.shape[1:]) not in shapes:
        given = " or ".join("(N, " + ", ".join(map(str, s)) + ")" for s in shapes)
        raise UsageError(f"{what} has shape {array.shape}; the model codes images given as "
                         f"{given}")
    if array.dtype != bool:
        low, high = int(array.min()), int(array.max())
        if low < 0 or high >= levels:
            bad = low if low < 0 else high
            where = np.unravel_index(int(np.argmax(array == bad)), array.shape)
            fix = ("binarise the images first" if levels == 2 else
                   f"this run models {levels} levels (--pixels native on its data)")
            raise UsageError(f"{what} holds the value {bad} at index {tuple(map(int, where))}, "
                             f"outside 0..{levels - 1}; {fix}")
    if channels_last(array.shape, image_shape):
        array = array.transpose(0, 3, 1, 2)
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


def _plan_order(nets: NetCalls, q: DiagGaussian,
                mode: str) -> tuple[np.ndarray | None, Grid, float]:
    """The coded order (ACN: the greedy chain; a VAE in order; None when set mode leaves it
    to the stacks), the latent grid, and what a lane's first image costs more than the
    others, in bits (ACN: its KL under the zero-code prior less that under its chain
    neighbour, on average), from the posteriors ``q`` of all images (these are the
    sender's choices, so they need not match the coded steps' floats)."""
    model = nets.model
    priors = [gaussian_rows(q)]
    order: np.ndarray | None
    first_extra = 0.0
    if model.conditional:
        order = greedy_chain(q.mean).numpy()
        context = chain_context(q.mean, torch.from_numpy(order).to(q.mean.device))
        prior = nets.prior(context, len(q.mean))
        with torch.no_grad():
            kl = [model.prior.kl(q, q.mean, c).mean().item()
                  for c in (torch.zeros_like(context), context)]
        first_extra = (kl[0] - kl[1]) / math.log(2)
    else:
        order = None if mode == "set" else np.arange(len(q.mean))
        prior = nets.prior(None, 1)
    if isinstance(prior, DiagGaussian):
        priors.append(gaussian_rows(prior))
    grid = choose_grid(np.concatenate([m for m, _ in priors]),
                       np.concatenate([s for _, s in priors]))
    return order, grid, first_extra


def compress(model: Model, images: np.ndarray, mode: str = "ordered",
             input_dtype: str = "uint8", input_shape: tuple[int, ...] | None = None,
             names: list[str] | None = None, lanes: int | None = None,
             plain_if_smaller: bool = True, modes: list[str] | None = None,
             portable: bool = True, note: Callable[[str], Any] | None = None,
             tiles: list[list[int]] | None = None) -> Compressed:
    """Code ``images`` (N, *image_shape) of uint8 levels (below the model's level count;
    :func:`as_images` makes them from an array) into the bytes of an acnkit file;
    ``names`` (one an image, e.g. their files' relative paths) are kept in ordered mode;
    ``lanes``: how many chains to code in lockstep (default: as many as keep their initial
    words under 0.5 % of the file; never more than a step's level decisions allow,
    :func:`~acnkit.codec.fileformat.max_lanes`); ``plain_if_smaller``: write the images packed plainly
    (:func:`stored`) when that is smaller than the bits-back file; ``modes``: the Pillow
    mode each image's file is written back in (one of
    :data:`~acnkit.codec.fileformat.IMAGE_MODES`), recorded where it is not the run's own;
    ``portable``: code with the exact arithmetic (:mod:`acnkit.exact`), so that the file
    opens on any machine, where every component has an exact form (else the file is bound
    to this kind of machine, and ``note`` is told why in one line); ``tiles``: the
    (height, width) of whole images whose tiles ``images`` are (:func:`acnkit.codec.tiles.cut_all`),
    coded in ordered mode with only their real pixels, ``names`` and ``modes`` then one a
    whole image (format 8)."""
    if mode not in MODES:
        raise UsageError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    if input_dtype not in DTYPES:
        raise UsageError(f"input dtype {input_dtype} cannot be restored; give images as "
                         f"bool or native-order integers ({', '.join(DTYPES)})")
    if lanes is not None and lanes < 1:
        raise UsageError(f"--lanes must be >= 1, got {lanes}")
    if len(images) > MAX_IMAGES:
        raise UsageError(f"{len(images)} images are more than one file holds ({MAX_IMAGES}); "
                         f"compress them in parts")
    check_codable(model)
    if images.dtype != np.uint8 or tuple(images.shape[1:]) != model.image_shape \
            or (len(images) and int(images.max()) >= model.levels):
        raise UsageError(f"compress takes images (N, {', '.join(map(str, model.image_shape))}) "
                         f"of uint8 levels below {model.levels} (acnkit.codec.as_images makes "
                         f"them)")
    check_causal_decoder(model, images)
    extents = None
    if tiles is not None:
        if mode != "ordered":
            raise UsageError("images of other sizes than the model's are coded as tiles, "
                             "whose places set mode would not keep: compress them without "
                             "--set")
        if len(model.image_shape) != 3 or not tiles or sum(
                tile_count((h, w), model.image_shape[1:]) for h, w in tiles) != len(images):
            raise UsageError("tiles must be the tiles of images of the given sizes "
                             "(acnkit.codec.tiles.cut_all makes them)")
        extents = tile_info(tiles, model.image_shape, modes)
        grey = images[extents[:, 2] > 0]
        if not (grey == grey[:, :1]).all():
            raise UsageError("a grey image's tiles must hold its levels in every channel "
                             "(acnkit.codec.tiles.cut_all of the image repeated three times)")
        plain_if_smaller = False  # stored images are whole ones: the tiles' padding would count
    whole = len(tiles) if tiles is not None else len(images)
    if names is not None and (len(names) != whole or not all(map(safe_name, names))):
        raise UsageError("give one plain relative name an image (no '..', no empty parts, "
                         "at most 32 folders deep)")
    if modes is not None and (len(modes) != whole or not all(
            m in IMAGE_MODES for m in modes)):
        raise UsageError(f"give one image mode ({', '.join(IMAGE_MODES)}) an image")
    recorded = file_modes(modes, model.image_shape, model.levels, mode == "ordered")
    if recorded and not modes_fit(recorded, whole, list(model.image_shape),
                                  model.levels, tiles is not None):
        raise UsageError(f"images of shape {model.image_shape} at {model.levels} levels "
                         f"cannot be written in mode {recorded[0]}")
    clash = name_clash(names) if names and mode == "ordered" else None
    if clash:
        raise UsageError(f"{clash}; give each image its own name")
    nets = NetCalls(portable_model(model), exact=True) if portable else NetCalls(model)
    why = not_portable(nets, images) if portable and len(images) else "not asked for"
    if why is None:
        arithmetic = ARITHMETIC
    else:
        nets, arithmetic = NetCalls(model), MACHINE + machine_kind(model.device)
        if portable and note is not None:
            note(f"note: this model has no exact form ({why}); the file opens only on a "
                 f"machine like this one ({arithmetic[len(MACHINE):]})")
    n = len(images)
    with one_thread():
        q = model.encode(torch.from_numpy(images).to(model.device))
        order, grid, first_extra = _plan_order(NetCalls(model), q, mode)
        coded_order = np.arange(n) if order is None else order
        figure_of = _Beside(model_nats, model, images, coded_order, mode, q, shown=False)
        try:
            # the lanes follow the file's size, which the first images' figure tells well enough
            first = coded_order[:LANES_SAMPLE]
            # ACN's lanes from its ordered figure in either mode: its two files then code
            # the same chain in the same lanes (see _set_smaller_by_construction)
            estimate = model_nats(model, images[first], np.arange(len(first)),
                                  "ordered" if model.conditional else mode,
                                  DiagGaussian(q.mean[first], q.log_std[first]), shown=False)
            words = math.ceil((model.latent_dim * math.log2(grid.hi - grid.lo + 1)
                               + 2 * math.log2(n + 1)) / 32) + 2
            most = max_lanes(math.prod(model.image_shape), model.levels)
            layout = Layout.of(n, min(most, lanes or choose_lanes(
                n, n * estimate / math.log(2), words, first_extra,
                math.prod(model.image_shape))))
            stacks = [new_stack(seed_words(words)) for _ in layout.sizes]
            codecs = ExactCodecs(grid) if nets.exact else Codecs(grid)
            if mode == "ordered" and model.conditional and n > 1:
                # the arrangement in input order of the images the chain decodes: pushed first,
                # popped last (once the receiver knows the images)
                push_arrangement(codecs, stacks[0], keys(images))
            order = push_lanes(ImageCoder(nets, codecs), stacks, images, layout, order, extents)
            lane_words = [ans.get_compressed().astype("<u4") for ans in stacks]
        except BaseException:
            figure_of.cancel()
            raise
        figure = figure_of.value()
    if extents is not None and (extents[:, :2] != np.array(model.image_shape[1:])).any():
        figure = math.nan  # the model's figure of padded tiles is not the images'
    header = {
        "format": FORMAT_VERSION, "mode": mode,
        "conditional": model.conditional, "count": n,
        "image_shape": list(images.shape[1:]), "levels": model.levels,
        "input_shape": list(input_shape or images.shape), "input_dtype": input_dtype,
        "grid": {"bits": grid.bits, "lo": grid.lo, "hi": grid.hi}, "seed_words": words,
        "lane_words": [len(w) for w in lane_words],
        "model": model.fingerprint()[:32], "digest": "00" * 16,
        # torch's version matters only where its floats did (the machine's kind, which
        # the arithmetic names, holds it too)
        "acnkit": __version__, "torch": torch.__version__ if why is not None else "",
        "arithmetic": arithmetic,
        "names": list(names or []) if mode == "ordered" else [],
        "modes": recorded, "tiles": [list(map(int, t)) for t in tiles or []],
    }
    header["digest"] = digest(images, mode, covered(header))[:32]
    coded = Compressed(pack(header, b"".join(w.tobytes() for w in lane_words)), header, figure)
    if plain_if_smaller:
        plain = stored(images, header, figure)
        coded = plain if len(plain.data) < len(coded.data) else coded
    if mode == "set" and n > 1 and not coded.header.get("stored") \
            and not _set_smaller_by_construction(model, images):
        # Set mode leaves out the order, at most log2(N!) bits; on few images the coder's
        # rounding and its lanes' initial words can outweigh that. An ordered file gives
        # back the same set, so the smaller of the two is written (compress codes twice).
        ordered = compress(model, images, "ordered", input_dtype, input_shape, None, lanes,
                           plain_if_smaller, modes, portable)
        if len(ordered.data) < len(coded.data):
            if note is not None:
                note(f"note: set mode's file came out {len(coded.data) - len(ordered.data)} "
                     f"bytes larger than ordered mode's (the order it leaves out is worth "
                     f"at most log2({n}!) bits here); wrote the ordered file, which gives "
                     f"back the same images")
            return ordered
    return coded


#: bits of the arrangement from which ACN's set file is the smaller without coding the other
#: (its ANS stack's rounding is within a word either way; four words of margin)
ARRANGEMENT_MARGIN_BITS = 128


def _set_smaller_by_construction(model: Model, images: np.ndarray) -> bool:
    """Whether ACN's set-mode file of ``images`` is smaller than its ordered one without
    coding both: the two code the same greedy chain in the same lanes with the same
    header, and the ordered file pushes the arrangement (log2(N! / prod m_k!) bits, m_k
    copies of image k) onto its first lane besides, so where that is well above a word
    of rounding it is the larger. A VAE's two files code different orders (set mode pops
    one off the stacks): compared by coding."""
    return bool(model.conditional) and \
        log_distinct_orderings(images) / math.log(2) >= ARRANGEMENT_MARGIN_BITS


class _Beside:
    """``work(*args, stop=EVENT, **kwargs)`` in a thread beside the coder. The model's
    figure is only reported, never coded, so it need not be computed in the coder's one
    thread: torch's kernels release the GIL, so on two cores or more it runs while the
    coder codes. The networks are then called from two threads at once, which their
    contract allows (docs/writing-a-plugin.md). Where the coder stops (a signal, an
    error), :meth:`cancel` ends the work at its next batch: a thread left inside torch
    when the interpreter exits ends the process in C++'s "terminate called" and
    SIGABRT."""

    def __init__(self, work: Callable[..., float], *args: Any, **kwargs: Any) -> None:
        self.stop = threading.Event()
        self.result: dict[str, Any] = {}

        def run() -> None:
            try:
                with torch.no_grad():  # per thread, as grad mode is
                    self.result["value"] = work(*args, stop=self.stop, **kwargs)
            except BaseException as error:  # re-raised in the caller's thread
                self.result["error"] = error

        self.thread = threading.Thread(target=run, name="acnkit-figure", daemon=True)
        self.thread.start()

    def value(self) -> float:
        self.thread.join()
        if "error" in self.result:
            raise self.result["error"]
        return float(self.result["value"])

    def cancel(self) -> None:
        self.stop.set()
        self.thread.join()


def stored(images: np.ndarray, header: dict[str, Any], figure: float) -> Compressed:
    """The images packed plainly (:func:`~acnkit.codec.fileformat.level_bits` a subpixel:
    one for 0/1, eight for 256 levels; in input order) under the header of a bits-back
    file: what ``compress`` writes when the model's file would be larger, so that no file
    exceeds the plain packing by more than its header."""
    header = {**header, "stored": True, "grid": {"bits": 0, "lo": 0, "hi": 0},
              "seed_words": 0, "lane_words": [], "arithmetic": ""}
    packed = pack_levels(images.reshape(-1), level_bits(header["levels"]))
    payload = packed.tobytes() + b"\0" * (-len(packed) % 4)
    header["digest"] = digest(images, header["mode"], covered(header))[:32]
    return Compressed(pack(header, payload), header, figure)


#: subpixels packed or unpacked at a time: the bit planes of a block take 8 bytes a bit of
#: each, so a stored file's memory stays near its images' own size
PACK_BLOCK = 1 << 20


def pack_levels(levels: np.ndarray, bits: int) -> np.ndarray:
    """Levels (uint8) packed ``bits`` bits each, least significant bit first, into bytes."""
    if bits == 8:
        return levels.astype(np.uint8)
    step = PACK_BLOCK * 8  # whole bytes a block for any bits
    out = np.empty(-(-len(levels) * bits // 8), dtype=np.uint8)
    for start in range(0, len(levels), step):
        block = levels[start: start + step].astype(np.uint8).reshape(-1, 1)
        planes = np.unpackbits(block, axis=1, count=bits, bitorder="little")
        packed = np.packbits(planes.reshape(-1), bitorder="little")
        out[start * bits // 8: start * bits // 8 + len(packed)] = packed
    return out


def unpack_levels(data: np.ndarray, count: int, bits: int) -> np.ndarray:
    """The first ``count`` levels (uint8) of bytes packed by :func:`pack_levels`."""
    if bits == 8:  # the bytes are the levels: a view, no copy of a file's worth
        return data[:count]
    out = np.empty(count, dtype=np.uint8)
    step = PACK_BLOCK * 8
    for start in range(0, count, step):
        n = min(step, count - start)
        raw = data[start * bits // 8: (start + n) * bits // 8 + 1]
        planes = np.unpackbits(raw, bitorder="little", count=n * bits)
        out[start: start + n] = np.packbits(planes.reshape(-1, bits), axis=1,
                                            bitorder="little")[:, 0]
    return out


def unstored(header: dict[str, Any], words: np.ndarray) -> np.ndarray:
    """The images of a stored file (N, *image_shape) of uint8 levels; a level at or above
    the header's count (a tampered payload) is refused."""
    count, shape, levels = header["count"], tuple(header["image_shape"]), header["levels"]
    images = unpack_levels(words.astype("<u4", copy=False).view(np.uint8), count * math.prod(shape),
                           level_bits(levels))
    if int(images.max()) >= levels:
        raise CodecError(f"a stored image holds level {int(images.max())}, outside the "
                         f"file's 0..{levels - 1}")
    return images.reshape(count, *shape)


def model_nats(model: Model, images: np.ndarray, order: np.ndarray, mode: str,
               q: DiagGaussian | None = None, shown: bool = True,
               stop: threading.Event | None = None) -> float:
    """The model's nats per image for the same images, order and mode (negative ELBO at
    one sample, as :mod:`acnkit.evaluate` reports it); ``q``: their posteriors, when the
    caller has them already; ``shown``: with its progress; ``stop``: see
    :func:`acnkit.evaluate.costs`."""
    x = torch.from_numpy(images).to(model.device)
    q = model.encode(x) if q is None else q
    context = (chain_context(q.mean, torch.from_numpy(order).to(q.mean.device))
               if model.conditional else None)
    # an MLP's figure is fastest in large batches, a convolutional decoder's in small ones
    # that keep its activations in cache (docs/performance.md)
    batch = 32 if model.decoder.autoregressive else 500
    recon, kl = costs(model, x, q, context, batch_size=batch,
                      what="the model's figure" if shown else None, stop=stop)
    nats = (recon.sum() + kl.sum()).item() / len(images)
    if model.conditional:
        # the chain is a set; its arrangement in input order costs log(N! / prod m_k!):
        # equal images need not be told apart
        return nats + (log_distinct_orderings(images) / len(images) if mode == "ordered" else 0)
    if mode == "set":
        # bits back on the order are worth log(N! / prod m_k!): equal images have no order
        return nats - log_distinct_orderings(images) / len(images)
    return modes(nats, len(images), model.conditional)[f"test_nats_{mode}"]


def tile_info(tiles: list[list[int]], shape: tuple[int, ...],
              modes: list[str] | None) -> np.ndarray:
    """What a tiled file codes of each tile before its pixels (N, 3): its real rows and
    columns and whether it is grey (a grey image's tile in a colour file, whose first
    channel alone is coded)."""
    named = modes or [""]  # none recorded: every image in the run's own mode
    each = named if len(named) == len(tiles) else named * len(tiles)
    parts = []
    for (h, w), mode in zip(tiles, each, strict=True):
        grey = mode in ("1", "L") and shape[0] == 3
        ext = tile_extents((h, w), (shape[1], shape[2]))
        parts.append(np.concatenate([ext, np.full((len(ext), 1), int(grey))], 1))
    return np.concatenate(parts).astype(np.int64)


def decompress(model: Model, data: bytes, name: str = "the file",
               warn: Callable[[str], Any] | None = None,
               stats: dict[str, Any] | None = None) -> np.ndarray:
    """The images of an acnkit file, shaped and typed as the input was; raises CodecError
    for a file of another model or one that does not decode to what was coded. ``stats``,
    if given, gets the steps and seconds of an autoregressive decoder's pixel loop."""
    header, words = read_header(data, name)
    exact = header["arithmetic"] == ARITHMETIC and not header["stored"]
    own = model.fingerprint()
    if header["model"] != own[:32]:
        raise CodecError(f"{name} was made with another model (fingerprint "
                         f"{header['model']}, this run's {own[:32]}); "
                         f"give --run the run folder it was compressed with")
    if tuple(header["image_shape"]) != model.image_shape \
            or header["conditional"] != model.conditional or header["levels"] != model.levels:
        raise CodecError(f"{name} is corrupt: it describes images of shape "
                         f"{header['image_shape']} at {header['levels']} levels coded with a "
                         f"{'conditional' if header['conditional'] else 'plain'} prior, and "
                         f"its model codes {list(model.image_shape)} at {model.levels} "
                         f"levels with a {'conditional' if model.conditional else 'plain'} "
                         f"one")
    if header["stored"]:
        images = unstored(header, words)
    else:
        bound = header["arithmetic"][len(MACHINE):]  # machine-bound: the writer's kind
        here = machine_kind(model.device)
        if warn and not exact and (bound != here if bound else (
                header["torch"] != torch.__version__ or header["acnkit"] != __version__)):
            warn(f"warning: {name} {_bound_to(header)}, this machine is {here}; its "
                 f"numbers may differ here and the file may not decode")
        try:
            images = _decode(model, header, words, name, stats, exact)
        except (CodecError, KeyboardInterrupt, SystemExit, GeneratorExit):
            raise
        except BaseException as exc:  # a crafted payload breaks the coder itself (KeyError,
            # or a Rust panic, which derives from BaseException)
            if exact:
                raise CodecError(f"{name} is corrupt: its payload does not decode "
                                 f"({type(exc).__name__})") from None
            raise CodecError(f"{name} did not decode ({type(exc).__name__}): "
                             f"{_why_not(header, model)}") from None
    if digest(images, header["mode"], covered(header))[:32] != header["digest"]:
        if header["stored"]:  # no arithmetic: the bytes changed
            raise CodecError(f"{name} is corrupt: its stored images do not match its digest "
                             f"(the file was damaged after it was written); nothing was "
                             f"written")
        raise CodecError(f"{name} did not decode to the images it was made from "
                         f"({_why_not(header, model)}); nothing was written")
    return restored(images, header, name)


def _bound_to(header: dict[str, Any]) -> str:
    """What a file that is not portable needs, in words."""
    bound = header["arithmetic"][len(MACHINE):]
    if bound:
        return f"was coded with the arithmetic of its machine ({bound}; its model has no " \
               f"exact form)"
    return f"is of format {header['format']}, coded with the arithmetic of its machine " \
           f"(acnkit {header['acnkit']}, torch {header['torch']})"


def _why_not(header: dict[str, Any], model: Model) -> str:
    """Why a file whose payload decoded is not its images: damage, for a portable file
    (its arithmetic is the same everywhere); for another, the machine too."""
    if header["arithmetic"] == ARITHMETIC:
        return "it is corrupt: a portable file decodes alike on every machine"
    return (f"it is damaged, or it {_bound_to(header)} and this machine "
            f"({machine_kind(model.device)}) computes other numbers: decompress it on a "
            f"machine of that kind")


def restored(images: np.ndarray, header: dict[str, Any], name: str = "the file") -> np.ndarray:
    """Decoded images (N, C, H, W) in the layout and dtype of the array they were made
    from (channels last if it held them so)."""
    inp = tuple(header["input_shape"])
    if channels_last(inp, tuple(header["image_shape"])):
        images = images.transpose(0, 2, 3, 1)
    dtype = np.dtype(header["input_dtype"])
    top = 1 if dtype.kind == "b" else int(np.iinfo(dtype).max)
    if len(images) and int(images.max()) > top:  # levels are never negative
        raise CodecError(f"{name} is corrupt: its images' levels do not fit its array type "
                         f"{header['input_dtype']}")
    return np.ascontiguousarray(images.reshape(inp).astype(dtype, copy=False))


def _decode(model: Model, header: dict[str, Any], words: np.ndarray, name: str,
            stats: dict[str, Any] | None, exact: bool) -> np.ndarray:
    """The images of a bits-back payload, in input order (ordered mode) or coded order
    (set mode); raises CodecError where a stack runs dry or does not end on its initial
    words."""
    n, mode, shape = header["count"], header["mode"], tuple(header["image_shape"])
    bounds = np.cumsum([0, *header["lane_words"]])
    stacks = [new_stack(words[a:b]) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    grid = Grid(**header["grid"])
    codecs = ExactCodecs(grid) if exact else Codecs(grid)
    coder = ImageCoder(NetCalls(portable_model(model) if exact else model, exact), codecs)
    as_set = mode == "set" and not model.conditional
    tiles = header.get("tiles") or []
    with one_thread():
        images, found = pop_lanes(coder, stacks, Layout.of(n, len(stacks)), shape, as_set,
                                  tiled=bool(tiles))
        if mode == "ordered" and model.conditional and n > 1:
            arrangement = pop_arrangement(codecs, stacks[0], keys(images))
            images = images[arrangement]
            found = None if found is None else found[arrangement]
    if found is not None and not np.array_equal(
            found, tile_info(tiles, shape, header["modes"] or None)):
        raise CodecError(f"{name} is corrupt: its tiles' sizes do not fit its images'; "
                         f"nothing was written")
    if stats is not None:
        stats.update(pixel_steps=coder.pixel_steps, pixel_loop_seconds=coder.pixel_seconds,
                     lanes=len(stacks))
    seed = seed_words(header["seed_words"])
    if not all(np.array_equal(ans.get_compressed(), seed) for ans in stacks):
        raise CodecError(f"{name} did not decode to the images it was made from (its "
                         f"stacks do not end on their initial words: "
                         f"{_why_not(header, model)}); nothing was written")
    return images
